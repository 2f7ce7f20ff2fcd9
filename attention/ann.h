/*
 * ann.h: training kernels (forward and backward, float) of the two ANN attention baselines of
 * spec/model.md section 3, one head at a time: `softmax` (attention/softmax.c) and `cat`, the
 * circular-convolutional attention (attention/cat.c, FFTW).
 *
 * Vocabulary: T timesteps (1 for ANN models), B batch, N tokens, D model width, h heads, d = D / h
 * head width. Layout as in attention/attention.h: token-major [N, D] activations; a head is the
 * pointer to its first column, `m + h * d`, with row stride ld (ld = D for a whole [N, D] matrix,
 * 3D for a fused qkv buffer, ...). Outputs o [N, d] at row stride ldo, incoming gradients dout
 * [N, d] at row stride lddo.
 *
 * Pure numerics: no I/O, no static state, no allocation inside the kernels (the caller passes
 * scratch; the only allocations are snn_cat_plan_new's, at setup). Sums are accumulated in double
 * and rounded once to float. Backward functions ACCUMULATE (+=) into their gradient outputs and
 * never touch columns outside the head. Several threads may run the kernels at once, each with
 * its own outputs and scratch (for CAT also sharing one plan).
 *
 * Op counts (sim/ops.h classes) are separate functions of the shapes: both kernels do the same
 * work whatever the values, so the count is a formula (softmax) or the FFT plan's own exact
 * count (CAT), not something measured per call. They count the forward pass (inference cost).
 */
#ifndef SNN_ANN_H
#define SNN_ANN_H

#include <stddef.h>

#include "sim/ops.h"

/* ---- softmax attention (attention/softmax.c; research/methods.md section 6) ----------------- */

/* Longest sequence the softmax kernel accepts (P is [N, N] per head: 64 MiB at this N). */
enum { SNN_ATTN_SOFTMAX_MAX_N = 4096 };

/* Softmax forward, one head, in float (each product one single-threaded snn_gemm,
 * attention/gemm.h):
 *   A = Q K^T,  P = softmax_rows(A / sqrt(d)) with the row maximum subtracted
 *   (P_ij = exp((A_ij - m_i) / sqrt(d)) / sum_j exp(...), the row sum in double),
 *   O = P V (of the float P).
 *   q, k, v [N, d] at row stride ld;  o [N, d] at row stride ldo;
 *   p [N * N] row-major, receives P (float), kept for the backward.
 * 1 <= N <= SNN_ATTN_SOFTMAX_MAX_N (N <= 0 does nothing), d >= 1. */
void snn_attn_softmax_head_train(int N, int d, const float *q, const float *k, const float *v,
                                 int ld, float *o, int ldo, float *p);

/* Softmax backward at the forward's P (the exact gradient of the forward, P read as float):
 *   dV += P^T dO;  dP = dO V^T;  dS_ij = P_ij (dP_ij - sum_j' dP_ij' P_ij');  dA = dS / sqrt(d);
 *   dQ += dA K;  dK += dA^T Q.
 *   dout [N, d] at row stride lddo;  dq, dk, dv [N, d] at row stride ld (accumulated);
 *   scratch [N * N] float (receives dP, then dA). */
void snn_attn_softmax_head_backward(int N, int d, const float *q, const float *k, const float *v,
                                    int ld, const float *p, const float *dout, int lddo,
                                    float *dq, float *dk, float *dv, float *scratch);

/* Adds the forward's operations, one head, to *ops (what snn_attn_softmax_head_train does):
 *   MAC  2 N^2 d + N^2   Q K^T and P V (N^2 d each), plus the N^2 row-sum accumulations of exp
 *   EXP  N^2             one per score; forming its argument (A_ij - m_i) / sqrt(d) is part of it
 *   DIV  N^2             P_ij = e_ij / (row i sum): a true division per score, not 1/sum + MAC
 *   CMP  N^2             row maxima (N compares per row, the first against -inf)
 * N, d >= 0. */
void snn_attn_softmax_count(int N, int d, snn_ops *ops);

/* ---- CAT: circular-convolutional attention (attention/cat.c; methods.md section 4) ---------
 *
 * Per head, with g [N] the head's column of the token logits X a^T (a.weight [h, D]; g is read
 * at stride ldg, so the column of head h in an [N, h] logits matrix is `G + h` with ldg = h):
 *   z = softmax over the N tokens of g (max subtracted, double)
 *   O[i, c] = sum_j z[(i - j) mod N] V[j, c]   (circular convolution, methods.md 4.1 "literal"
 *                                               convention, not ccatten's correlation)
 * computed by FFTs of length exactly N (any N >= 1, no padding): O_c = ifft(rfft(z) fft(V_c))
 * / N, in double, rounded once to float; the value channels as complex signals, two channels
 * each (cat.c).
 */

/* An FFTW plan set for one (N, d): a real-to-complex and a complex-to-real transform of length
 * N for z and dz, and forward and inverse complex transforms of length N for the value
 * channels packed two per complex signal, ceil(cb / 2) signals at once (V, dO, O, dV).
 * Immutable after creation. */
typedef struct snn_cat_plan snn_cat_plan;

/* Makes the plans, ONCE, at setup: FFTW's planner is not thread-safe, so create (and free)
 * plans single-threaded, before any parallel region. FFTW_ESTIMATE (no timing runs: quick, and
 * the same plan, hence the same bits, on every run on a given machine), for 64-byte aligned
 * data, so FFTW may use its SIMD codelets: the kernels' scratch must be 64-byte aligned. The
 * kernels execute the plans with the new-array functions (fftw_execute_dft, _r2c, _c2r), which
 * are thread-safe: several threads may share one plan, each with its own scratch. N >= 1,
 * d >= 1; aborts if FFTW cannot make a plan. */
snn_cat_plan *snn_cat_plan_new(int N, int d);
void snn_cat_plan_free(snn_cat_plan *pl); /* NULL is fine; not thread-safe either */

int snn_cat_plan_n(const snn_cat_plan *pl);
int snn_cat_plan_d(const snn_cat_plan *pl);
/* Channels per block of FFTs (a divisor of d; d itself unless N d is large: cat.c). */
int snn_cat_plan_channel_block(const snn_cat_plan *pl);

/* Scratch one call of either CAT kernel needs, in doubles, a multiple of 8 (the same size
 * serves forward and backward): 2 N + 4 N + 4 (2 N P) with P = ceil(cb / 2) complex signals per
 * channel block, each block rounded up to 8 doubles. It must be 64-byte aligned (asserted; e.g.
 * snn_xaligned, or consecutive per-thread slices of an aligned arena). The caller allocates it
 * (e.g. per thread) and may reuse it freely: nothing is kept in it between calls. */
size_t snn_cat_scratch_doubles(int N, int d);

/* The forward's spectra a training step may keep for the backward, in doubles (a multiple of
 * 8): rfft(z / N) on all N bins and fft of the packed value channels, 2 N + 2 N d' with d' = d
 * rounded up to even per channel block (each part rounded up to 8 doubles). At N = 49, d = 16:
 * 7 KiB a head, against the backward's transforms of z and V (a fifth of its work) saved. */
size_t snn_cat_spectra_doubles(int N, int d);

/* CAT forward, one head:
 *   g [N] at stride ldg;  v [N, d] at row stride ld;  o [N, d] at row stride ldo;
 *   z [N] receives softmax(g) (float), kept for the backward; the convolution uses these float
 *   values, so o is the convolution of exactly the z the backward sees;
 *   spectra: NULL, or snn_cat_spectra_doubles(N, d) doubles, 64-byte aligned, receiving the
 *   spectra for the backward;
 *   scratch: snn_cat_scratch_doubles(N, d) doubles. */
void snn_attn_cat_head_train(const snn_cat_plan *pl, const float *g, int ldg, const float *v,
                             int ld, float *o, int ldo, float *z, double *spectra,
                             double *scratch);

/* CAT backward at the forward's z (the exact gradient of the forward, z read as float):
 *   dV[j, c] += sum_i z[(i - j) mod N] dO[i, c]        (circular correlation, by FFT)
 *   dz[m]     = sum_i sum_c dO[i, c] V[(i - m) mod N, c]  (by FFT, summed over c in frequency)
 *   dg[m]    += z[m] (dz[m] - sum_n z[n] dz[n])        (softmax backward)
 *   g is not read (z carries everything) and may be NULL; it is in the signature so the call
 *   mirrors the forward's. dout [N, d] at row stride lddo; dg [N] at stride lddg (accumulated);
 *   dv [N, d] at row stride ld (accumulated); spectra: the forward's (then v is not read), or
 *   NULL (the transforms are made again: the same bits); scratch as for the forward. */
void snn_attn_cat_head_backward(const snn_cat_plan *pl, const float *g, int ldg, const float *v,
                                int ld, const float *z, const float *dout, int lddo, float *dg,
                                int lddg, float *dv, const double *spectra, double *scratch);

/* Direct O(N^2 d) reference of the forward's mixing step, from a given z:
 *   o[i, c] = sum_j z[(i - j) mod N] v[j, c]   (double sums in j order, rounded once).
 * For tests, and as the definition the FFT path must reproduce. N >= 1 (N <= 0 does nothing). */
void snn_attn_cat_head_direct(int N, int d, const float *z, const float *v, int ld, float *o,
                              int ldo);

/* FFTW's own exact operation counts (fftw_flops) of the transforms one call executes, as
 * scalar operations (counted on the same transforms planned without SIMD: cat.c): the
 * forward runs rfft(z), then per channel block fft(V) and ifft (P complex signals each); the
 * backward runs rfft(z), per block fft(V), fft(dO) and ifft for dV, and irfft for dz (1);
 * with the forward's spectra kept it skips rfft(z) and fft(V). Integer-valued. */
typedef struct snn_cat_fft_flops {
    double add, mul, fma;
} snn_cat_fft_flops;

snn_cat_fft_flops snn_cat_plan_forward_flops(const snn_cat_plan *pl);
snn_cat_fft_flops snn_cat_plan_backward_flops(const snn_cat_plan *pl);

/* Adds the forward's operations, one head, to *ops (what snn_attn_cat_head_train does), with
 * S = (d / cb) ceil(cb / 2) complex signals (d / 2 for even cb: two channels each):
 *   EXP  N                   softmax over tokens (forming the argument g - m is part of it)
 *   DIV  N + 1               z_n = e_n / sum (N), and the one 1/N of the inverse transform
 *   CMP  N                   the maximum of g (N compares, the first against -inf)
 *   MAC  N + N + 4 N S + F   softmax sum accumulations (N); z scaled by 1/N (N); the spectrum
 *                            products Z fft(x_p) (one complex multiply = 4 real MACs, per bin
 *                            and signal); F = add + mul + fma of snn_cat_plan_forward_flops:
 *                            rule: every FFTW arithmetic instruction is one MAC-class op (an
 *                            fma is one MAC; a lone mul or add occupies the same float unit;
 *                            sim/ops.h has no float-add class, and INT_ADD would be wrong for
 *                            floats), so F slightly over-counts energy, an upper bound.
 * The FFT runs in double; the count is of operations, not of their width. */
void snn_attn_cat_count(const snn_cat_plan *pl, snn_ops *ops);

#endif
