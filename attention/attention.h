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

#endif
