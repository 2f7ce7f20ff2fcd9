/*
 * primal.h: Primal-Attention (Chen et al., NeurIPS 2023), official-code form, with its KSVD
 * regularisation (spec/model.md section 3 `primal`, research/methods.md section 5). Float
 * training kernels: one head of one sample per call (T = 1, ANN mode), forward and backward.
 *
 * Notation: N tokens, d head width, s low rank, M sampled tokens, h heads, B batch.
 * Head h of a [N, D] matrix is `m + h * d` at row stride D (as in attention.h).
 *
 * Forward, per sample and head (methods 5.1):
 *   phi(q)_n = q_n / max(||q_n||_2, 1e-12)           (F.normalize; one division per element)
 *   X~       = x[idx_m, :]^T                          [d, M], idx from snn_primal_sample_indices
 *   We = X~ E,  Wr = X~ R                             [d, s]  (E = E_h, R = R_h, [M, s])
 *   e  = phi(q) We,  r = phi(k) Wr                    [N, s]
 *   o  = [e | r] c_w^T + c_b                          [N, d]  (c_w [d, 2s], c_b [d]: one c for
 *                                                              all heads; no value projection)
 *
 * KSVD loss (methods 5.2, trace_no_x = True: W-bar = mean_h E_h^T R_h, independent of the data;
 * every released LRA script passes --trace_no_x and the CV code always uses it). Per layer l:
 *   J_l   = 1/(2 B h N) sum_{b,h,n,j} lambda_hj^2 (e_bhnj^2 + r_bhnj^2)  -  (1/h) sum_h <E_h, R_h>
 *   L_KSVD = (1/P) sum_l J_l^2   (P = number of Primal layers),  loss = CE + eta L_KSVD
 * (<E, R> = sum_mj E_mj R_mj = Tr(E^T R); the two 1/2-means of the code share the denominator
 * B h N, so they merge into one sum.) Gradients, with g_l = dL/dJ_l = 2 eta J_l / P:
 *   dL/de_bhnj      = g_l / (B h N) lambda_hj^2 e_bhnj          (likewise r)
 *   dL/dlambda_hj   = g_l / (B h N) lambda_hj S_hj,  S_hj = sum_{b,n} (e_bhnj^2 + r_bhnj^2)
 *   dL/dE_h         = -g_l / h R_h,    dL/dR_h = -g_l / h E_h
 * How the model uses the pieces, per Primal layer:
 *   forward:  per (sample, head) snn_primal_forward, then snn_primal_ksvd_accum(e, r) into
 *             S[h * s ..] (double [h, s], zeroed per batch);
 *             after the batch: trace = snn_primal_ksvd_trace(E, R) (all heads),
 *             J = snn_primal_ksvd_J(...), L_KSVD = (1/P) sum_l J_l^2;
 *   backward: g = snn_primal_ksvd_dJ(eta, J, P); coef = g / (B h N);
 *             per (sample, head) snn_primal_backward(..., coef, lambda_h, ...) (adds the
 *             e/r term to the upstream gradient before back-propagating it);
 *             once per layer snn_primal_ksvd_lambda_backward and snn_primal_ksvd_trace_backward.
 *
 * House rules: products are float snn_gemm calls (single-threaded), norms double sums rounded
 * once to float; no allocation (the caller binds a cache and passes scratch); backward
 * functions ACCUMULATE (+=); no static state. Gradients of the
 * shared parameters (E, R, c, lambda) are accumulated across samples: threads need their own
 * accumulators.
 */
#ifndef SNN_PRIMAL_H
#define SNN_PRIMAL_H

#include <stddef.h>

#include "sim/ops.h"

/* The clamp of F.normalize. */
#define SNN_PRIMAL_NORM_EPS 1e-12f

/* M = min(N, s * rank_multi) (the CV code's rule; methods 9.7). */
int snn_primal_num_samples(int N, int s, int rank_multi);

/* The M sampled token indices, 1 <= M <= N, bit for bit what the official code gets from
 * torch.linspace(0, N - 1, M, dtype=int) in torch 1.13 on x86 CPUs without AVX-512 (AVX2 and
 * the no-SIMD build both use 4-wide int64 vectors; verified for every 1 <= M <= N < 600 by
 * tests/reference/primal_ref.py --indices --check). That is NOT trunc(i (N-1)/(M-1)): the int64
 * linspace kernel runs a vectorised arange whose base is truncated per vector. Exactly:
 *   M == 1: idx = {0}.   Otherwise, in double: step = (N - 1) / (M - 1), half = M / 2,
 *   V = 8 floor(M / 8) (the kernel's loop takes two 4-wide vectors per iteration)
 *   for c0 = 0, 4, .., V - 4 (vector chunks):
 *       base = trunc(c0 < half ? step c0 : (N - 1) - step (M - 1 - c0))
 *       idx[c0 + j] = trunc(base + j step),  j = 0..3
 *   for i = V .. M - 1 (scalar tail):
 *       idx[i] = trunc(i < half ? step i : (N - 1) - step (M - 1 - i))
 * When M == N (every configuration with N <= s rank_multi, e.g. N = 49 or 64 with s >= 7)
 * step is 1 and idx = 0, 1, .., N - 1, as in the CV code, which does not sample at all then.
 * Indices are nondecreasing and in [0, N - 1]; they may repeat (the backward accumulates). */
void snn_primal_sample_indices(int N, int M, int *idx);

/* Per-head forward cache, kept from the forward for the backward. Bind it to caller memory of
 * snn_primal_cache_floats(N, d, s) floats with snn_primal_cache_bind. */
typedef struct snn_primal_cache {
    float *qn, *kn;  /* [N, d] phi(q), phi(k) */
    float *nq, *nk;  /* [N] max(||q_n||, eps), max(||k_n||, eps) */
    float *we, *wr;  /* [d, s] */
    float *e, *r;    /* [N, s] */
    float *xs;       /* [M, d] (room for N rows): X~, the sampled rows of x */
} snn_primal_cache;

size_t snn_primal_cache_floats(int N, int d, int s);
snn_primal_cache snn_primal_cache_bind(float *buf, int N, int d, int s);

/* Forward of one head of one sample.
 *   q, k [N, d] at row stride ld (raw projections: the kernel normalises them)
 *   x    [N, d] at row stride ldx: the head's channel slice of the block input
 *   idx  [M]    sampled tokens (snn_primal_sample_indices)
 *   E, R [M, s] row-major (this head's E_h, R_h)
 *   cw   [d, 2s] row-major (PyTorch Linear(2s, d) weight), cb [d]
 *   o    [N, d] written at row stride ldo
 *   cache bound for (N, d, s); receives phi(q), phi(k), the norms, We, Wr, e, r and X~ (the
 *   sampled rows of x)
 * Rounding: the norm is sqrt of a double sum of squares, rounded to float, then clamped; phi
 * is a float division; We, Wr, e, r and o are float snn_gemm products (inputs as stored: e uses
 * the float We). ops (may be NULL): see snn_primal_count. */
void snn_primal_forward(int N, int d, int s, int M, const float *q, const float *k, int ld,
                        const float *x, int ldx, const int *idx, const float *E, const float *R,
                        const float *cw, const float *cb, float *o, int ldo,
                        const snn_primal_cache *cache, snn_ops *ops);

/* Scratch floats snn_primal_backward needs: 2 N s + 2 d s + 2 N d. */
size_t snn_primal_scratch_floats(int N, int d, int s);

/* Backward of one head of one sample, at the forward's cache. All outputs ACCUMULATE (+=):
 *   dout [N, d] at row stride lddo
 *   dq, dk [N, d] at row stride ld;  dx [N, d] at row stride ldx (only the rows idx_m receive
 *        gradient: x enters only through X~, read from the cache; rows sampled twice receive
 *        it twice)
 *   dE, dR [M, s];  dcw [d, 2s];  dcb [d]
 *   ksvd_coef, lambda: the KSVD e/r term. With ksvd_coef != 0, lambda [s] (this head's row of
 *        lambda) is read and the upstream gradient of e and r becomes
 *        de = dout c_w[:, :s] + ksvd_coef lambda^2 (.) e  (snn_primal_ksvd_score_grad),
 *        ksvd_coef = snn_primal_ksvd_dJ(...) / (B h N). With 0, lambda may be NULL.
 *   scratch [snn_primal_scratch_floats(N, d, s)]
 * Formulas (Y = phi(q) etc., n-th row; products in float snn_gemm, <phi_n, dphi_n> in double):
 *   dcb += sum_n dout_n;   dcw[:, :s] += dout^T e;   dcw[:, s:] += dout^T r
 *   de = dout cw[:, :s] (+ KSVD);   dr = dout cw[:, s:] (+ KSVD)
 *   dWe = phi(q)^T de;  dWr = phi(k)^T dr
 *   dE_mj += sum_c x_{idx_m, c} dWe_cj;   dR_mj += sum_c x_{idx_m, c} dWr_cj
 *   dphi(q) = de We^T;  dq_n += (dphi_n - phi_n <phi_n, dphi_n>) / nq_n   if ||q_n|| > eps,
 *                              dphi_n / eps otherwise (the clamp is constant there)
 *   dx_{idx_m, c} += sum_j E_mj dWe_cj + R_mj dWr_cj                                    */
void snn_primal_backward(int N, int d, int s, int M, int ldx, const int *idx,
                         const float *E, const float *R, const float *cw,
                         const snn_primal_cache *cache, const float *dout, int lddo,
                         double ksvd_coef, const float *lambda, float *dq, float *dk, int ld,
                         float *dx, float *dE, float *dR, float *dcw, float *dcb,
                         float *scratch);

/* Operation count of snn_primal_forward for one head (exact, independent of the data):
 *   MAC = 2 N d            (sums of squares of q and k)
 *       + 2 d M s          (We, Wr)
 *       + 2 N d s          (e, r)
 *       + 2 N d s          (c map; the bias add is not counted, as for the linear layers)
 *   DIV = 2 N (d + 1)      (per token of q and of k: d element divisions as F.normalize does,
 *                           and the square root, counted as one DIV: both are iterative
 *                           divider-class operations and ops.h has no SQRT class)
 *   CMP = 2 N              (the clamp max(||.||, eps))
 * Adds to *ops (not NULL). */
void snn_primal_count(int N, int d, int s, int M, snn_ops *ops);

/* ---- KSVD pieces --------------------------------------------------------------------------- */

/* S[j] += sum_n (e_nj^2 + r_nj^2), j < s, in double (e, r [N, s] from the cache). Call once per
 * (sample, head) with S = the head's row of a double [h, s] accumulator zeroed per batch. */
void snn_primal_ksvd_accum(int N, int s, const float *e, const float *r, double *S);

/* sum_n ||lambda (.) e_n||^2 + ||lambda (.) r_n||^2 of one (sample, head) from its S row:
 * sum_j lambda_j^2 S_j (the two per-(sample, head) energies of methods 5.2, summed). */
double snn_primal_ksvd_energy(int s, const float *lambda, const double *S);

/* sum_h <E_h, R_h> = sum_h Tr(E_h^T R_h) over the layer's h heads, E, R [h, M, s], in double. */
double snn_primal_ksvd_trace(int h, int M, int s, const float *E, const float *R);

/* J of one layer: sum_{h,j} lambda_hj^2 S_hj / (2 B h N) - trace / h.
 *   lambda [h, s];  S [h, s] (accumulated over the B samples);  trace from snn_primal_ksvd_trace */
double snn_primal_ksvd_J(int h, int s, const float *lambda, const double *S, double trace, int B,
                         int N);

/* L_KSVD = (1/P) sum_l J_l^2 over the P Primal layers. */
double snn_primal_ksvd_loss(int P, const double *J);

/* g = dL/dJ = 2 eta J / P (loss = CE + eta L_KSVD). */
double snn_primal_ksvd_dJ(double eta, double J, int P);

/* de_nj += coef lambda_j^2 e_nj and dr_nj += coef lambda_j^2 r_nj, [N, s] contiguous, coef =
 * g / (B h N). (snn_primal_backward calls this; exposed for the model and the tests.) */
void snn_primal_ksvd_score_grad(int N, int s, const float *lambda, const float *e,
                                const float *r, double coef, float *de, float *dr);

/* dlambda_hj += g / (B h N) lambda_hj S_hj over [h, s]. */
void snn_primal_ksvd_lambda_backward(int h, int s, const float *lambda, const double *S, int B,
                                     int N, double g, float *dlambda);

/* dE += -g/h R and dR += -g/h E over [h, M, s] (the trace term). */
void snn_primal_ksvd_trace_backward(int h, int M, int s, const float *E, const float *R, double g,
                                    float *dE, float *dR);

#endif
