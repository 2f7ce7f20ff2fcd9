/*
 * attention.h: spiking attention kernels, per head and per timestep (spec section 3).
 *
 * Pure numerics: no I/O, no allocation (the caller passes scratch). Inputs are spike matrices
 * in token-major layout: q, k, v point at the first column of a head inside [N, D] int8 spike
 * matrices whose rows are ld elements apart, so head h of a [N, D] matrix is `m + h * d` with
 * ld = D. The output o is written the same way ([N, d] at row stride ldo).
 *
 * Every kernel adds the operations it performed to *ops (see sim/ops.h); counts are exact
 * integers derived from the spikes actually present, never from firing-rate formulas. ops may
 * be NULL (nothing is counted). The kernels keep no static state: several threads may call them
 * at once, each with its own scores scratch, output and ops.
 */
#ifndef SNN_ATTENTION_H
#define SNN_ATTENTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sim/ops.h"

/* SSA (Spikformer): binary Q, K, V;  O = (Q K^T * scale) V, scale = 0.125 in Spikformer.
 * A = Q K^T holds integer counts; O is computed as scale * (A V) with integer A V (one float
 * multiply per output), so every output is exactly an integer multiple of scale.
 * Spikes are read as binary: any nonzero entry counts as 1 (bit-packed kernel). N d < 2^24.
 *   scores [N * N] int32 scratch (receives A, row-major)
 * Ops: AC per (i, j, c) with q_ic = k_jc = 1 (nnz pairs); INT_ADD per (i, j, c) with A_ij != 0
 * and v_jc = 1; SHIFT per output element (the x0.125 scaling). */
void snn_attn_ssa_head(int N, int d, const int8_t *q, const int8_t *k, const int8_t *v, int ld,
                       float scale, float *o, int ldo, int32_t *scores, snn_ops *ops);

typedef enum snn_shiftmax_round {
    SNN_SHIFTMAX_ROUND, /* r = round(log2 sum): rows sum to [2^-1/2, 2^1/2) */
    SNN_SHIFTMAX_CEIL   /* r = ceil(log2 sum):  rows sum to (1/2, 1] */
} snn_shiftmax_round;

/* Default Shiftmax scale exponent k (s = 2^-k) for head width d: k = floor((log2(d) + 1) / 2),
 * i.e. s = 1/4 for d = 8 or 16, 1/8 for d = 32 or 64. */
int snn_shiftmax_default_shift(int d);

/* Shiftmax of one row of integer scores a[0..n), n >= 1, scale s = 2^-shift (shift >= 0 in
 * practice; a negative shift, s > 1, multiplies exactly, saturating at int32):
 *   z_j = floor(a_j * s) (exact floor division, also for negative a_j), m = max_j z_j,
 *   S = sum_j 2^(z_j - m) (in double, j order; S >= 1),
 *   r = round(log2 S) (exactly: floor(log2 S) + [S >= sqrt(2) 2^floor(log2 S)]) or ceil(log2 S),
 *   p_j = 2^(z_j - m - r).
 * Writes the exponents e_j = z_j - m - r into e[0..n) and returns r. Every e_j <= 0 in both
 * modes, since z_j <= m and r >= 0 (S >= 1). p_j = ldexp(1, e[j]). e may alias a (in place).
 * Exactness limits are documented in attention/shiftmax.c. */
int snn_shiftmax_row(int n, const int32_t *a, int shift, snn_shiftmax_round mode, int32_t *e);

/* snn_shiftmax_row in place on x[0..n) (the same r and exponents), for 0 <= shift < 32 and
 * rows whose exponents span few bits, also giving the row as integers: p[j] = 2^(e_j + E) with
 * E = -min_j e_j (written to *E), so P_j = p[j] 2^-E and sum_j p[j] < 2^32. Returns r, or -1
 * with x, p and *E untouched when the row does not qualify (shift outside [0, 32), or
 * (max z - min z) + 2 ceil(log2 n) > 31); the caller then uses snn_shiftmax_row.
 *   x [n] scores in, exponents out;  p [n] */
int snn_shiftmax_row_int(int n, int32_t *x, int shift, snn_shiftmax_round mode, uint32_t *p,
                         int *E);

/* BSA (bipolar spiking self-attention): ternary Q, K in {-1, 0, +1} (read by sign), binary V
 * (any nonzero entry counts as 1).
 *   A = Q K^T (integers in [-d, d], adds and subtracts only), P = Shiftmax_rows(A), O = P V.
 *   scores [N * N] int32 scratch (receives A, then the exponents e_ij, row-major: on return
 *          P_ij = ldexp(1, scores[i * N + j]))
 * O_ic = sum_j 2^e_ij v_jc accumulated in double in j order, then rounded once to float (the
 * sums of powers of two are exact for BSA's score ranges).
 * Ops: AC per (i, j, c) with q_ic != 0 and k_jc != 0; SHIFT 2 per score (2^z and the
 * normalising shift); INT_ADD per score (row sum of 2^(z - m)) plus one per (i, j, c) with
 * v_jc = 1 (shift-and-add of P V, N * nnz(V) in total); CMP per score (row max). */
void snn_attn_bsa_head(int N, int d, const int8_t *q, const int8_t *k, const int8_t *v, int ld,
                       int shift, snn_shiftmax_round mode, float *o, int ldo, int32_t *scores,
                       snn_ops *ops);

/* ---- Training kernels: float spike matrices, forward and backward ---------------------------
 *
 * Same layout as the int8 kernels (q, k, v and their gradients: [N, d] at row stride ld; o and
 * dout: [N, d] at row stride ldo / lddo), but float values: 0/+-1 spikes in normal mode, reals in
 * the gradient checks. Backward functions ACCUMULATE (+=) into dq, dk, dv (row stride ld) and
 * never touch columns outside the head. No op counting, no allocation, no static state.
 * Sums over keys, queries or channels are accumulated in double and rounded once. */

/* SSA forward (attention/ssa_train.c): A = Q K^T, O = scale * (A V).
 *   scores [N * N] receives A (unscaled, row-major), kept for the backward.
 * On 0/1 spikes o equals snn_attn_ssa_head's output bit for bit (integer sums, one multiply). */
void snn_attn_ssa_head_train(int N, int d, const float *q, const float *k, const float *v, int ld,
                             float scale, float *o, int ldo, float *scores);

/* One head's q, k and v spikes in bit planes (sim/spikebits.h's layout: bit b in word b / 64):
 * spike c of token i is bit pos + i stride + c of its plane's row, nonzero where the nz plane's
 * bit is set, -1 where the neg plane's is too (neg NULL: binary; v is always binary). The heads
 * of the _bits kernels below have N <= 64 and d <= 64. */
typedef struct snn_head_bits {
    const uint64_t *q_nz, *q_neg, *k_nz, *k_neg, *v_nz;
    size_t pos, stride;
} snn_head_bits;

/* snn_attn_ssa_head_train on binary spikes given as bits (q_neg, k_neg NULL): the same o and
 * scores, bit for bit, as on the spikes as floats. */
void snn_attn_ssa_head_train_bits(int N, int d, const snn_head_bits *hb, float scale, float *o,
                                  int ldo, float *scores);

/* Spikes of one head from bit planes into a compact tile s [N, d] (row stride d; s holds
 * N d + 16 floats, the last 16 scratch): s[i d + c] = +1 where bit pos + i stride + c of nz is
 * set, -1 where neg's is too (neg NULL: binary), else 0. N <= 64, d <= 64 (the bits kernels'
 * heads). */
void snn_attn_head_from_bits(int N, int d, const uint64_t *nz, const uint64_t *neg, size_t pos,
                             size_t stride, float *s);

/* SSA backward: differentiates O = scale (Q K^T) V at the forward's scores A, in float
 * (four single-threaded snn_gemm calls, attention/gemm.h):
 *   dV += scale A^T dO,  dA = scale dO V^T,  dQ += dA K,  dK += dA^T Q.
 *   dout [N, d] at row stride lddo;  scratch [N * N] (receives dA). */
void snn_attn_ssa_head_backward(int N, int d, const float *q, const float *k, const float *v,
                                int ld, float scale, const float *scores, const float *dout,
                                int lddo, float *dq, float *dk, float *dv, float *scratch);

/* snn_attn_ssa_head_backward on binary spikes given as bits, dq, dk, dv at row stride ld: the
 * same values. */
void snn_attn_ssa_head_backward_bits(int N, int d, const snn_head_bits *hb, float scale,
                                     const float *scores, const float *dout, int lddo,
                                     float *dq, float *dk, float *dv, int ld, float *scratch);

/* O = scale * (W V) for a row-major W [N, N]: o_ic = scale * (float)(sum_j w_ij v_jc), the sum in
 * double in j order (zero w_ij skipped: they add nothing) and rounded once; v, o at row strides
 * ld, ldo. The forward of SSA (W = A) and softmax (W = P, scale 1). */
void snn_attn_wv_forward(int N, int d, const float *w, const float *v, int ld, float scale,
                         float *o, int ldo);

/* out[i, j] = sum_c a[i, c] b[j, c] (c = 0..d-1 in order, in double, rounded once to float) for
 * i < Ni, j < Nj: every Gram product of the training kernels (A = Q K^T, dO V^T), the same bits
 * as a sequential double dot product per entry. a, b, out at row strides lda, ldb, ldout. */
void snn_attn_gram(int Ni, int Nj, int d, const float *a, int lda, const float *b, int ldb,
                   float *out, int ldout);

/* Longest sequence the BSA training kernel accepts (one row of exponents lives on the stack). */
enum { SNN_ATTN_BSA_TRAIN_MAX_N = 1024 };

/* BSA forward (attention/bsa_train.c), row i of P, with A = Q K^T (double sums) and
 * s = 2^-shift:
 *   normal (smooth = false): z_ij = floor(s A_ij);  m_i, r_i from snn_shiftmax_row on z;
 *       P_ij = 2^(z_ij - m_i - r_i);  O = P V (double sums in j order). On ternary Q, K and
 *       binary V, o equals snn_attn_bsa_head's output bit for bit and P its 2^e.
 *   smooth (gradient checks only): z_ij = s A_ij without the floor; m_i and r_i are the
 *       integers the normal mode would compute (from floor(s A_ij)); P_ij = 2^(z_ij - m_i - r_i)
 *       (exp2 in double), so P is continuous in Q and K but no longer sums to ~1 exactly.
 *   frozen_mr (either mode): m_i, r_i are read from mr instead of computed, so a finite
 *       difference sees them as the constants the backward assumes.
 *   p  [N * N] receives P (float, row-major), kept for the backward
 *   mr [2 N]   int32 pairs (m_i, r_i) at mr[2 i], mr[2 i + 1]: written, or read if frozen_mr
 * N <= SNN_ATTN_BSA_TRAIN_MAX_N; |floor(s A_ij)| < 2^30 is asserted (both modes). */
void snn_attn_bsa_head_train(int N, int d, const float *q, const float *k, const float *v, int ld,
                             int shift, snn_shiftmax_round mode, bool smooth, float *o, int ldo,
                             float *p, int32_t *mr, bool frozen_mr);

/* snn_attn_bsa_head_train (normal mode, m and r computed) on spikes given as bits: the same o,
 * p and mr, bit for bit, as on the spikes as floats. */
void snn_attn_bsa_head_train_bits(int N, int d, const snn_head_bits *hb, int shift,
                                  snn_shiftmax_round mode, float *o, int ldo, float *p,
                                  int32_t *mr);

/* BSA backward with the straight-through rules of spec section 3 (floor is the identity, m_i
 * and r_i are constants), at the forward's P:
 *   dP = dO V^T,  dV += P^T dO,  dz = ln2 P (.) dP,  dA = 2^-shift dz,  dQ += dA K,  dK += dA^T Q.
 * The same function serves both forward modes: it is the exact derivative of the smooth forward
 * with frozen m, r.  dout [N, d] at row stride lddo;  scratch [N * N] (receives dA).
 * Float sums in a fixed order (attention/bsa_train.c), as PyTorch's float32 backward: on finite
 * inputs the result is snn_attn_bsa_head_backward_ref's, bit for bit, for any N and d. */
void snn_attn_bsa_head_backward(int N, int d, const float *q, const float *k, const float *v,
                                int ld, int shift, const float *p, const float *dout, int lddo,
                                float *dq, float *dk, float *dv, float *scratch);

/* snn_attn_bsa_head_backward on spikes given as bits, dq, dk, dv at row stride ld: the same
 * bits. */
void snn_attn_bsa_head_backward_bits(int N, int d, const snn_head_bits *hb, int shift,
                                     const float *p, const float *dout, int lddo, float *dq,
                                     float *dk, float *dv, int ld, float *scratch);

/* snn_attn_bsa_head_backward's definition term by term, for any N <= SNN_ATTN_BSA_TRAIN_MAX_N
 * and d (the kernel's path past its fast sizes, and the tests' reference for the fast one). */
void snn_attn_bsa_head_backward_ref(int N, int d, const float *q, const float *k, const float *v,
                                    int ld, int shift, const float *p, const float *dout,
                                    int lddo, float *dq, float *dk, float *dv, float *scratch);

#endif
