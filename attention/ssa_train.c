/*
 * ssa_train.c: Spikformer's spiking self-attention for training, forward and backward, one head
 * and one timestep (spec/model.md section 3 `ssa`, research/methods.md section 2.1).
 *
 *   A = Q K^T            scores [N, N], kept for the backward
 *   O = scale * (A V)    scale = 0.125 in Spikformer
 *
 * Backward (O is trilinear in Q, K, V, so these are exact, not surrogate, gradients):
 *   dV = scale A^T dO          dA = scale dO V^T          dQ = dA K          dK = dA^T Q
 * as four dense float GEMMs (single-threaded snn_gemm, attention/gemm.h, one call per head: the
 * result does not depend on the thread count).
 *
 * Exactness of the forward. Every sum (over channels for A, over keys for A V) is accumulated
 * in double and rounded once to float. On 0/1 spikes A and A V are integers below 2^24, so
 * o = scale * (float)(A V) is exactly what the inference kernel (attention/ssa.c) computes: one
 * float multiply of an exact integer.
 *
 * On spikes (every q, k, v in {0, 1, -1}; N <= 256, d <= 64) the forward sums those integers in
 * int32 vectors, a block of 64 keys at a time (ssa_forward_spikes): the same values, so the same
 * bits. Otherwise straight loops with contiguous inner dimensions (channels); channels are
 * processed in blocks of CBLK with a double accumulator row on the stack, so there is no limit
 * on d.
 *
 * From bit planes (the _bits entry points, the trainer's path; N, d <= 64): the forward builds
 * K^T's rows and V's lane masks from the words themselves (the same integer
 * sums); the backward unpacks the head into compact tiles (snn_attn_head_from_bits) for its
 * GEMMs.
 *
 * Pure numerics: no I/O, no allocation, no static state.
 */
#include "attention/attention.h"
#include "attention/axpy.h"
#include "attention/bits.h"
#include "attention/gemm.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "sim/util.h"
#include "sim/vec.h"

/* Channels per block of double accumulators (snn_axpy_rows' register block). */
enum { CBLK = SNN_AXPY_MAX_N };

/* sum_c a[c] b[c] in double (products of floats are exact in double). */
static inline double dot(const float *a, const float *b, int d) {
    double acc = 0.0;
    for (int c = 0; c < d; c++) acc += (double)a[c] * (double)b[c];
    return acc;
}

/* Columns per block of snn_attn_gram, and the widest d its fast path takes (a [d, GJ] float
 * block of b transposed lives on the stack: 32 KiB). */
enum { GJ = SNN_AXPY_MAX_N, GRAM_MAX_D = 256 };

/* Each entry is dot(a_i, b_j): the same double sum in the same c order, so the same bits. The
 * fast path turns the N_j dot products of a row into axpys over a transposed block of b, which
 * vectorise across j, and skips a_ic == 0 (spikes: most of them), which adds nothing: the
 * accumulator starts at +0.0 and so is never -0.0, and x + (+-0.0) == x for every other x. */
SNN_WIDE_FN SNN_VEC_FN void snn_attn_gram(int Ni, int Nj, int d, const float *a, int lda,
                                          const float *b, int ldb, float *out, int ldout) {
    if (d > GRAM_MAX_D) {
        for (int i = 0; i < Ni; i++)
            for (int j = 0; j < Nj; j++)
                out[(long)i * ldout + j] = (float)dot(a + (long)i * lda, b + (long)j * ldb, d);
        return;
    }
    float bt[GRAM_MAX_D * GJ]; /* [d, jn] block of b^T */
    double acc[GJ];
    for (int j0 = 0; j0 < Nj; j0 += GJ) {
        const int jn = Nj - j0 < GJ ? Nj - j0 : GJ;
        for (int j = 0; j < jn; j++)
            for (int c = 0; c < d; c++) bt[c * GJ + j] = b[(long)(j0 + j) * ldb + c];
        for (int i = 0; i < Ni; i++) {
            snn_axpy_rows(d, jn, a + (long)i * lda, 1, NULL, bt, GJ, acc);
            float *oi = out + (long)i * ldout + j0;
            for (int j = 0; j < jn; j++) oi[j] = (float)acc[j];
        }
    }
}

/* o_ic = scale * (float)(sum_j w_ij v_jc), double accumulators in j order, rounded once. */
SNN_WIDE_FN SNN_VEC_FN void snn_attn_wv_forward(int N, int d, const float *w, const float *v,
                                                int ld, float scale, float *o, int ldo) {
    for (int i = 0; i < N; i++) {
        const float *wi = w + (long)i * N;
        for (int c0 = 0; c0 < d; c0 += CBLK) {
            const int cn = d - c0 < CBLK ? d - c0 : CBLK;
            double acc[CBLK];
            snn_axpy_rows(N, cn, wi, 1, NULL, v + c0, ld, acc); /* w_ij == 0 skipped */
            float *oi = o + (long)i * ldo + c0;
            for (int c = 0; c < cn; c++) oi[c] = scale * (float)acc[c];
        }
    }
}

/* Heads the integer path below takes: N <= FAST_N, d <= FAST_D. Keys go in blocks of KB: a
 * block's scores of a row in KB / 16 vectors of 16 int32 (the last block padded with zero
 * columns); the channels of a value row in one vector (d <= 16, as in every shipped model:
 * D / h = 16) or in a loop. int32 tables on the stack: 128 KiB. */
enum { FAST_N = 256, FAST_D = 64, VW = 16, KB = 64 };
/* The bit-plane entry points take heads of at most TILE_N tokens (the trainer's limit there):
 * one block of keys, three [N, d] tiles of floats on the stack in the backward. */
enum { TILE_N = 64 };
typedef int32_t v16i __attribute__((vector_size(4 * VW)));
typedef int32_t v8i __attribute__((vector_size(32)));
typedef int32_t v8ia __attribute__((vector_size(32), may_alias)); /* halves of a v16i */
typedef uint32_t v16u __attribute__((vector_size(4 * VW)));
typedef float v16f __attribute__((vector_size(4 * VW)));

/* A row of integer scores a (as vectors av, as int32 as) into floats si [N]: whole vectors, then
 * the tail one by one (a copy loop of N floats became rep movs). */
static inline __attribute__((always_inline)) void scores_row(float *si, const v16i *av,
                                                             const int32_t *as, int N) {
    int j = 0;
    for (; j + VW <= N; j += VW) {
        const v16f f = __builtin_convertvector(av[j / VW], v16f);
        memcpy(si + j, &f, sizeof f);
    }
    for (; j < N; j++) si[j] = (float)as[j];
}

/* The forward on spikes (N <= FAST_N, d <= FAST_D): A and A V are integers of magnitude at most
 * d and N d, summed here in int32 vectors, branch-free, a block of KB keys at a time (integer
 * sums: any grouping gives the same values). The double sums of snn_attn_gram and
 * snn_attn_wv_forward are the same integers (every partial sum is exact in double too, and a
 * zero is +0.0 on both paths), each rounded once to float: the same bits. The double path spent
 * its time converting and testing one element at a time. Returns false, having written
 * nothing, for other heads. */
static inline __attribute__((always_inline)) bool ssa_forward_spikes(
    int N, int d, const float *q, const float *k, const float *v, int ld, float scale, float *o,
    int ldo, float *scores, const bool wide) {
    if (N > FAST_N || d > FAST_D || !snn_all_spikes(N, d, q, ld, true) ||
        !snn_all_spikes(N, d, k, ld, true) || !snn_all_spikes(N, d, v, ld, true))
        return false;
    const int nb = (N + KB - 1) / KB; /* key blocks */
    const bool narrow = d <= VW;      /* a value row in one vector */
    /* K^T by blocks: kt[(b d + c) KB / VW + w] holds k_jc for the keys j = b KB + VW w + lane,
     * keys >= N zero */
    v16i kt[FAST_N / VW * FAST_D];
    union {
        struct {
            v16i vp[FAST_N], vn[FAST_N]; /* narrow: V's rows as masks, -1 where v_jc = 1 (vp)
                                          * or -1 (vn), channels >= d zero */
        } m;
        int32_t vt[FAST_N * FAST_D];     /* otherwise: V, row stride d */
    } vtab;
    v16i *vp = vtab.m.vp, *vn = vtab.m.vn;
    for (int t = 0; t < nb * d * (KB / VW); t++) /* every word: the 8-lane sums add all of them */
        kt[t] = (v16i){0};
    for (int j = 0; j < N; j++) {
        if (narrow) vp[j] = vn[j] = (v16i){0};
        v16i *kb = kt + (long)(j / KB) * d * (KB / VW);
        for (int c = 0; c < d; c++) {
            kb[c * (KB / VW) + j % KB / VW][j % VW] = (int32_t)k[(long)j * ld + c];
            const float vjc = v[(long)j * ld + c];
            if (narrow)
                vp[j][c] = -(int32_t)(vjc > 0.0f), vn[j][c] = -(int32_t)(vjc < 0.0f);
            else
                vtab.vt[(long)j * d + c] = (int32_t)vjc;
        }
    }
    for (int i = 0; i < N; i++) {
        const float *qi = q + (long)i * ld;
        float *oi = o + (long)i * ldo;
        int cs[FAST_D];
        const int nq = snn_nonzero_indices(qi, d, cs);
        /* (A V)_i accumulators: one vector (wide, narrow), two 8-lane halves (narrow), or d
         * int32 */
        v16i acc0 = {0}, acc1 = {0};
        v8i lo = {0}, hi = {0};
        int32_t acc[FAST_D] = {0};
        for (int b = 0; b < nb; b++) {
            const int j0 = b * KB, jn = N - j0 < KB ? N - j0 : KB;
            const int nv = (jn + VW - 1) / VW; /* key vectors of this block */
            const v16i *kb = kt + (long)b * d * (KB / VW);
            union {
                v16i v[KB / VW];
                int32_t s[KB];
            } a;
            for (int w = 0; w < KB / VW; w++) a.v[w] = (v16i){0};
            /* A_ij += q_ic (row c of K^T) over the nonzero q_ic in {1, -1}: spikes are sparse,
             * and adding the zero rows cost a third of the kernel */
            if (wide) {
                for (int t = 0; t < nq; t++) {
                    const int c = cs[t];
                    const v16i *kc = kb + c * (KB / VW);
                    if (qi[c] > 0.0f)
                        for (int w = 0; w < nv; w++) a.v[w] += kc[w];
                    else
                        for (int w = 0; w < nv; w++) a.v[w] -= kc[w];
                }
            } else { /* eight 8-lane sums in registers (the AVX2 and portable variants) */
                _Static_assert(KB / 8 == 8, "eight 8-lane words per key block");
                v8i r0 = {0}, r1 = {0}, r2 = {0}, r3 = {0}, r4 = {0}, r5 = {0}, r6 = {0}, r7 = {0};
                for (int t = 0; t < nq; t++) {
                    const int c = cs[t];
                    const v8ia *h = (const v8ia *)(const void *)(kb + c * (KB / VW));
                    if (qi[c] > 0.0f)
                        r0 += h[0], r1 += h[1], r2 += h[2], r3 += h[3], r4 += h[4], r5 += h[5],
                            r6 += h[6], r7 += h[7];
                    else
                        r0 -= h[0], r1 -= h[1], r2 -= h[2], r3 -= h[3], r4 -= h[4], r5 -= h[5],
                            r6 -= h[6], r7 -= h[7];
                }
                const v8i h[8] = {r0, r1, r2, r3, r4, r5, r6, r7};
                memcpy(a.s, h, sizeof h);
            }
            scores_row(scores + (long)i * N + j0, a.v, a.s, jn);
            const v16i *bp = vp + j0, *bn = vn + j0;
            if (narrow && !wide) { /* as below, in two 8-lane halves */
                for (int j = 0; j < jn; j++) {
                    const v8i aj = (v8i){0} + a.s[j];
                    const v8ia *p = (const v8ia *)(const void *)&bp[j];
                    const v8ia *n = (const v8ia *)(const void *)&bn[j];
                    lo += (aj & p[0]) - (aj & n[0]);
                    hi += (aj & p[1]) - (aj & n[1]);
                }
            } else if (narrow) { /* (A V)_i = sum_j A_ij V_j in one vector: A_ij selected by
                                  * V's masks (an and, not an integer multiply with its long
                                  * latency) */
                int j = 0;
                for (; j + 2 <= jn; j += 2) {
                    const v16i a0 = (v16i){0} + a.s[j], a1 = (v16i){0} + a.s[j + 1];
                    acc0 += (a0 & bp[j]) - (a0 & bn[j]);
                    acc1 += (a1 & bp[j + 1]) - (a1 & bn[j + 1]);
                }
                if (j < jn) {
                    const v16i a0 = (v16i){0} + a.s[j];
                    acc0 += (a0 & bp[j]) - (a0 & bn[j]);
                }
            } else {
                for (int j = 0; j < jn; j++)
                    for (int c = 0; c < d; c++)
                        acc[c] += a.s[j] * vtab.vt[(long)(j0 + j) * d + c];
            }
        }
        if (narrow && !wide) {
            for (int c = 0; c < d; c++) oi[c] = scale * (float)(c < 8 ? lo[c] : hi[c - 8]);
        } else if (narrow) {
            const v16i sum = acc0 + acc1;
            for (int c = 0; c < d; c++) oi[c] = scale * (float)sum[c];
        } else {
            for (int c = 0; c < d; c++) oi[c] = scale * (float)acc[c];
        }
    }
    return true;
}

/* ssa_forward_spikes with 16-lane vectors (the AVX-512 variant runs this one) and with 8-lane
 * ones (gcc splits 16-lane vectors through the stack elsewhere; sim/vec.h snn_wide_avx512). */
static SNN_WIDE_FN SNN_VEC_FN bool ssa_spikes_wide(int N, int d, const float *q, const float *k,
                                                   const float *v, int ld, float scale, float *o,
                                                   int ldo, float *scores) {
    return ssa_forward_spikes(N, d, q, k, v, ld, scale, o, ldo, scores, true);
}
static SNN_WIDE_FN SNN_VEC_FN bool ssa_spikes_narrow(int N, int d, const float *q, const float *k,
                                                     const float *v, int ld, float scale,
                                                     float *o, int ldo, float *scores) {
    return ssa_forward_spikes(N, d, q, k, v, ld, scale, o, ldo, scores, false);
}

/* The bits forward: ssa_forward_spikes's integers A and A V from binary spikes as bits
 * (additions of rows of K^T over q's set bits; V's rows as lane masks), so the same floats; a
 * table of K^T from bits is a shift and a mask per channel and 16 keys, where from floats it
 * was a conversion per spike. */
SNN_WIDE_FN SNN_VEC_FN void snn_attn_ssa_head_train_bits(int N, int d, const snn_head_bits *hb,
                                                         float scale, float *o, int ldo,
                                                         float *scores) {
    SNN_ASSERT(N >= 0 && N <= TILE_N && d >= 1 && d <= FAST_D && hb->stride >= (size_t)d);
    SNN_ASSERT(!hb->q_neg && !hb->k_neg);
    const uint64_t *q = hb->q_nz, *k = hb->k_nz, *v = hb->v_nz;
    const size_t pos = hb->pos, stride = hb->stride;
    const int nv = (N + VW - 1) / VW;
    const bool narrow = d <= VW;
    const v16i lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    uint64_t kb[TILE_N], vb[TILE_N];
    for (int j = 0; j < N; j++) {
        kb[j] = snn_bits_field(k, pos + (size_t)j * stride, d);
        vb[j] = snn_bits_field(v, pos + (size_t)j * stride, d);
    }
    for (int j = N; j < nv * VW; j++) kb[j] = 0;
    v16i kt[FAST_D][TILE_N / VW]; /* K^T: row c holds k_jc, j >= N zero */
    for (int w = 0; w < nv; w++) {
        v16i lo, hi; /* bits 0-31 and 32-63 of 16 keys */
        for (int u = 0; u < VW; u++) {
            lo[u] = (int32_t)(uint32_t)kb[w * VW + u];
            hi[u] = (int32_t)(uint32_t)(kb[w * VW + u] >> 32);
        }
        for (int c = 0; c < d && c < 32; c++) kt[c][w] = (v16i)((v16u)lo >> c) & 1;
        for (int c = 32; c < d; c++) kt[c][w] = (v16i)((v16u)hi >> (c - 32)) & 1;
    }
    for (int i = 0; i < N; i++) {
        union {
            v16i v[TILE_N / VW];
            int32_t s[TILE_N];
        } a;
        for (int w = 0; w < nv; w++) a.v[w] = (v16i){0};
        for (uint64_t m = snn_bits_field(q, pos + (size_t)i * stride, d); m; m &= m - 1) {
            const int c = __builtin_ctzll(m);
            for (int w = 0; w < nv; w++) a.v[w] += kt[c][w];
        }
        scores_row(scores + (long)i * N, a.v, a.s, N);
        int j;
        float *oi = o + (long)i * ldo;
        if (narrow) { /* (A V)_i = sum_j A_ij V_j: A_ij under V_j's lane mask */
            v16i acc0 = {0}, acc1 = {0}; /* integer sums: any grouping is exact */
            /* -1 in the lanes of V_j's set bits, by a per-lane shift (a compare into a -1/0
             * vector needs AVX-512DQ, which gcc otherwise emulates lane by lane) */
#define VMASK(j) (-(((v16i){0} + (int32_t)vb[j]) >> lane & 1))
            for (j = 0; j + 2 <= N; j += 2) {
                acc0 += ((v16i){0} + a.s[j]) & VMASK(j);
                acc1 += ((v16i){0} + a.s[j + 1]) & VMASK(j + 1);
            }
            if (j < N) acc0 += ((v16i){0} + a.s[j]) & VMASK(j);
#undef VMASK
            const v16i acc = acc0 + acc1;
            for (int c = 0; c < d; c++) oi[c] = scale * (float)acc[c];
        } else {
            int32_t acc[FAST_D] = {0};
            for (j = 0; j < N; j++)
                for (uint64_t m = vb[j]; m; m &= m - 1) acc[__builtin_ctzll(m)] += a.s[j];
            for (int c = 0; c < d; c++) oi[c] = scale * (float)acc[c];
        }
    }
}

SNN_WIDE_FN SNN_VEC_FN void snn_attn_ssa_head_train(int N, int d, const float *q, const float *k,
                                                    const float *v, int ld, float scale, float *o,
                                                    int ldo, float *scores) {
    if (N <= 0) return;
    SNN_ASSERT(d >= 0);
    /* The next head's rows (the caller walks the heads of a row block in order, as BSA's: its
     * q, k, v are the next d columns of the same rows): a head reads N short runs far apart,
     * which the hardware prefetchers pick up late. A prefetch reads nothing, so the last head's
     * run past the block is harmless. */
    for (int i = 0; i < N; i++) {
        const long r = (long)i * ld + d;
        __builtin_prefetch(q + r), __builtin_prefetch(k + r), __builtin_prefetch(v + r);
        __builtin_prefetch(o + (long)i * ldo + d, 1);
    }
    if ((snn_wide_avx512() ? ssa_spikes_wide : ssa_spikes_narrow)(N, d, q, k, v, ld, scale, o, ldo,
                                                                   scores))
        return;
    /* A = Q K^T:  A_ij = sum_c q_ic k_jc */
    snn_attn_gram(N, N, d, q, ld, k, ld, scores, N);

    /* O = scale * (A V):  o_ic = scale * sum_j A_ij v_jc (the sum rounded once, then scaled) */
    snn_attn_wv_forward(N, d, scores, v, ld, scale, o, ldo);
}

/* snn_attn_ssa_head_backward with q, k, v at row stride ldi and dq, dk, dv at ld. */
static void ssa_backward(int N, int d, const float *q, const float *k, const float *v, int ldi,
                         float scale, const float *scores, const float *dout, int lddo,
                         float *dq, float *dk, float *dv, int ld, float *scratch) {
    if (N <= 0 || d <= 0) return;
    /* Four dense float GEMMs, what PyTorch runs (dO, hence dA, is dense: the double sums that
     * skip zeros, as in the forward, found nothing to skip and were 3x slower).
     * forward: o = scale * (A V)
     *   dV += scale A^T dO;  scratch = dA = scale dO V^T */
    snn_gemm(true, false, N, d, N, scale, scores, N, dout, lddo, 1.0f, dv, ld);
    snn_gemm(false, true, N, N, d, scale, dout, lddo, v, ldi, 0.0f, scratch, N);
    /* forward: A = Q K^T
     *   dQ += dA K;  dK += dA^T Q */
    snn_gemm(false, false, N, d, N, 1.0f, scratch, N, k, ldi, 1.0f, dq, ld);
    snn_gemm(true, false, N, d, N, 1.0f, scratch, N, q, ldi, 1.0f, dk, ld);
}

void snn_attn_ssa_head_backward(int N, int d, const float *q, const float *k, const float *v,
                                int ld, float scale, const float *scores, const float *dout,
                                int lddo, float *dq, float *dk, float *dv, float *scratch) {
    ssa_backward(N, d, q, k, v, ld, scale, scores, dout, lddo, dq, dk, dv, ld, scratch);
}

void snn_attn_ssa_head_backward_bits(int N, int d, const snn_head_bits *hb, float scale,
                                     const float *scores, const float *dout, int lddo,
                                     float *dq, float *dk, float *dv, int ld, float *scratch) {
    SNN_ASSERT(N >= 0 && N <= TILE_N && d >= 1 && d <= FAST_D && hb->stride >= (size_t)d);
    SNN_ASSERT(!hb->q_neg && !hb->k_neg);
    float qt[TILE_N * FAST_D + 16], kt[TILE_N * FAST_D + 16], vt[TILE_N * FAST_D + 16];
    snn_attn_head_from_bits(N, d, hb->q_nz, NULL, hb->pos, hb->stride, qt);
    snn_attn_head_from_bits(N, d, hb->k_nz, NULL, hb->pos, hb->stride, kt);
    snn_attn_head_from_bits(N, d, hb->v_nz, NULL, hb->pos, hb->stride, vt);
    ssa_backward(N, d, qt, kt, vt, d, scale, scores, dout, lddo, dq, dk, dv, ld, scratch);
}
