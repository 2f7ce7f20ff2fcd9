/*
 * bsa_train.c: bipolar spiking self-attention for training, forward and backward, one head and
 * one timestep (spec/model.md section 3 `bsa`, research/methods.md section 3.3 [PROPOSED]).
 *
 * Forward, row i (s = 2^-shift):
 *   A_ij = sum_c q_ic k_jc                   double sums; integers in [-d, d] on ternary spikes
 *   z_ij = floor(s A_ij)                      normal mode
 *        = s A_ij                             smooth mode (gradient checks): no floor
 *   m_i  = max_j floor(s A_ij)                integers, in both modes: snn_shiftmax_row run on
 *   r_i  = round|ceil(log2 sum_j 2^(z - m))   the floored row (shift 0), i.e. the inference code
 *   P_ij = 2^(z_ij - m_i - r_i)               exact powers of two in normal mode
 *   O    = P V                                double sums in j order, rounded once
 * With frozen_mr, m_i and r_i are read from mr instead (either mode).
 *
 * Bit-identity with snn_attn_bsa_head (attention/bsa.c) on ternary Q, K and binary V: A is an
 * exact integer, floor(s A) in double equals the kernel's integer floor division (s A is exact),
 * the Shiftmax row is the same function, and O sums the same powers of two in the same j order
 * in double (a 0 * P term adds +0, which changes nothing). P is stored as float: exact down to
 * 2^-149, far below BSA's exponents (O itself is summed from the double P).
 *
 * Backward, straight-through (spec section 3): floor is the identity, m_i and r_i constants.
 *   O = P V                   dV += P^T dO,   dP = dO V^T
 *   P = 2^(z - m - r)         dz = ln2 P (.) dP
 *   z = floor(s A)            dA = s dz
 *   A = Q K^T                 dQ += dA K,     dK += dA^T Q
 * This is the exact derivative of the smooth forward with frozen m, r, and, in normal mode, the
 * STE: the backward depends on the forward only through P. Its sums are float, in a fixed order
 * (snn_attn_bsa_head_backward_ref), as PyTorch's float32 backward: on spikes every product is
 * exact (P a power of two, q, k, v in {-1, 0, 1}), so only the float sums round. (They were
 * double until the float layout measured 18 % faster per head.)
 *
 * Fast paths (fast_head: d <= 64 and N d <= 16384; the common case), same results bit for bit
 * (the forward checked against the generic code and the inference kernel, the backward against
 * snn_attn_bsa_head_backward_ref, on random heads: tests/test_attention_grad.c):
 *   forward, normal mode on spikes (ternary Q, K, binary V, 0 <= shift <= 30, m and r computed):
 *     A in int32 from the nonzero q_ic (rows of K^T added or subtracted: exact); the Shiftmax row
 *     with the same integers as snn_shiftmax_row (shiftmax_row_small); P = 2^e from the exponent
 *     bits; O = P V in float over the rows of V with a one: every partial sum of row i is a
 *     multiple of 2^min_j(e_ij) below N, so when N 2^-min(e) <= 2^24 the float sums are exact,
 *     whatever their grouping, and equal the generic code's double sums (other rows take the
 *     generic double sums in j order).
 *   backward, any finite inputs: the reference's products summed in its order (so the same
 *     bits), laid out for contiguous inner loops (see bsa_backward_fast).
 *   Both ask for the next head's rows (prefetch; the caller walks the heads of a row block in
 *   order), since the activations of a whole batch do not stay in cache between the passes.
 * From bit planes (the _bits entry points, the trainer's path): the head's spikes unpacked into
 * compact [N, d] tiles on the stack (snn_attn_head_from_bits, which SSA's backward uses too),
 * then the kernels above on them: their results do not depend on the input's row stride.
 *
 * Pure numerics: no I/O, no allocation (fixed stack buffers), no static state.
 */
#include "sim/vec.h"
#include "attention/attention.h"
#include "attention/bits.h"
#include "attention/transpose.h"

#include <math.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "sim/util.h"

enum { CBLK = 64 };  /* channels per block of stack accumulators (forward and reference) */

/* Heads the fast paths take: N <= FAST_N, d <= FAST_D and N d <= FAST_ND (their buffers live on
 * the stack: one [d, N] array each, 64 KiB, and a few rows of N). So d = 64 up to N = 256 (a
 * 14 x 14 grid of patches is N = 196), d = 16 up to the kernel's limit. The bit-plane entry
 * points unpack the head into three tiles of at most TILE_N tokens, the trainer's limit there. */
enum { FAST_N = SNN_ATTN_BSA_TRAIN_MAX_N, FAST_D = 64, FAST_ND = 256 * 64, TILE_N = 64 };

static inline bool fast_head(int N, int d) {
    return N <= FAST_N && d <= FAST_D && N * d <= FAST_ND;
}

/* SNN_VEC_FN (sim/vec.h) plus no loop distribution: these loops must not be split into
 * memset/memcpy calls. Vectorising independent element-wise operations changes no bit. */
#if defined(__GNUC__) && !defined(__clang__)
#define VEC_FN                                                                                  \
    __attribute__((optimize("tree-vectorize", "vect-cost-model=dynamic",                         \
                            "no-tree-loop-distribute-patterns")))
#else
#define VEC_FN
#endif

/* 2^e as a float, exactly as (float)ldexp(1.0, e): built from the exponent bits when normal. */
static inline float pow2f(int32_t e) {
    if (e < -126 || e > 127) return (float)ldexp(1.0, e < -2000 ? -2000 : e > 2000 ? 2000 : e);
    const uint32_t bits = (uint32_t)(e + 127) << 23;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}


/* Q and K ternary ({-1, 0, 1}) and V binary ({0, 1}): the spike matrices of normal mode. */
static inline __attribute__((always_inline)) bool spikes_qkv(int n, int d, const float *q,
                                                             const float *k, const float *v,
                                                             int ld) {
    return snn_all_spikes(n, d, q, ld, true) && snn_all_spikes(n, d, k, ld, true) &&
           snn_all_spikes(n, d, v, ld, false);
}

/* snn_shiftmax_row (attention/shiftmax.c) on one row of integer scores |a_j| <= amax_abs with
 * 0 <= shift <= 30, the same r and exponents e_j (in place), computed faster when its double row
 * sum is exact: z_j = floor(a_j 2^-shift) exactly (integer shift of a non-negative value), and
 * when the spread of z plus log2 n is at most 52 bits the sum S = sum_j 2^(z_j - m), which
 * shiftmax.c adds exactly in double, is formed exactly here too (as a float sum of powers of two
 * when it stays below 2^24, else as an integer), and floor(log2 S) and the rounding test are
 * read off it the way shiftmax.c reads them off its double. Wider rows call snn_shiftmax_row.
 * Returns r; *m_out = max_j z_j, *emin_out = min_j e_j. */
static inline __attribute__((always_inline)) int32_t shiftmax_row_small(
    int n, int32_t *a, int shift, snn_shiftmax_round mode, int32_t amax_abs, int32_t *m_out,
    int32_t *emin_out) {
    /* z = floor(a / 2^shift) = ((a + K 2^shift) >> shift) - K with a + K 2^shift >= 0 */
    const int32_t K = (amax_abs >> shift) + 1;
    const uint32_t bias = (uint32_t)K << shift;
    int32_t zmax = INT32_MIN, zmin = INT32_MAX;
    for (int j = 0; j < n; j++) {
        const int32_t z = (int32_t)(((uint32_t)a[j] + bias) >> shift) - K;
        a[j] = z;
        zmax = z > zmax ? z : zmax;
        zmin = z < zmin ? z : zmin;
    }
    *m_out = zmax;
    int nbits = 0;
    while ((1 << nbits) < n) nbits++;
    const int64_t spread = (int64_t)zmax - zmin;
    if (spread + nbits > 52) {
        /* the general code, on the floored row (shift 0 keeps it) */
        const int32_t r = snn_shiftmax_row(n, a, 0, mode, a);
        int32_t emin = 0;
        for (int j = 0; j < n; j++) emin = a[j] < emin ? a[j] : emin;
        *emin_out = emin;
        return r;
    }
    /* s = S 2^(m - zmin) = sum_j 2^(z_j - zmin), an exact integer below 2^53 */
    uint64_t s;
    if (spread + nbits <= 24) {
        /* below 2^24 (each term at most 2^spread, at most 2^nbits of them): an integer sum in
         * uint32, which vectorises (a float sum in j order was a chain of n dependent adds, a
         * fifth of the forward) */
        uint32_t si = 0;
        for (int j = 0; j < n; j++) si += (uint32_t)1 << (a[j] - zmin);
        s = si;
    } else {
        s = 0;
        for (int j = 0; j < n; j++) s += (uint64_t)1 << (a[j] - zmin);
    }
    const int kb = 63 - __builtin_clzll(s);                     /* floor(log2 s), s >= 1 */
    const int k = kb + (zmin - zmax);                           /* floor(log2 S) */
    const double x = (double)s / (double)((uint64_t)1 << kb); /* S 2^-k in [1, 2), exact */
    const int32_t r = mode == SNN_SHIFTMAX_CEIL ? k + (x != 1.0) : k + (x * x >= 2.0);
    const int32_t off = zmax + r;
    for (int j = 0; j < n; j++) a[j] -= off;
    *emin_out = zmin - off;
    return r;
}

typedef float v8f __attribute__((vector_size(32)));
typedef float v8fu __attribute__((vector_size(32), aligned(4))); /* unaligned loads */
/* 16 floats: one AVX-512 register */
typedef float v16f __attribute__((vector_size(64)));
typedef float v16fu __attribute__((vector_size(64), aligned(4)));
/* The AVX-512 variants take 16-float vectors; the others 8-float ones (gcc splits 16-float
 * vectors through the stack there; sim/vec.h snn_wide_avx512): the same lane-wise operations,
 * so the same bits. Each kernel below is a body with a constant `wide`, instantiated twice. */

/* Normal-mode forward on spikes (see the header comment); returns false, having written
 * nothing, when the head is outside the fast path's domain. Row by row: A_i in int32 from the
 * nonzero q_ic, the Shiftmax row, P_i = 2^e from the exponent bits. Then O = P V: where exact
 * (every partial sum of row i is a multiple of 2^min_j(e_ij) below N, so N 2^-min(e) <= 2^24
 * suffices) in float over the rows j of V with a one, in any grouping (exact sums do not depend
 * on it); other rows in double in j order as the generic code sums. */
static inline __attribute__((always_inline)) bool
bsa_forward_body(int N, int d, const float *q, const float *k, const float *v, int ld, int shift,
                 snn_shiftmax_round mode, float *o, int ldo, float *p, int32_t *mr,
                 const bool wide) {
    if (!fast_head(N, d) || shift < 0 || shift > 30) return false;
    /* the next head's rows (see bsa_backward_fast) */
    for (int i = 0; i < N; i++) {
        const long r = (long)i * ld + d;
        __builtin_prefetch(q + r), __builtin_prefetch(k + r), __builtin_prefetch(v + r);
        __builtin_prefetch(o + (long)i * ldo + d, 1);
    }
    if (!spikes_qkv(N, d, q, k, v, ld)) return false;
    int32_t kt[FAST_ND]; /* K^T as integers, row stride N */
    for (int j = 0; j < N; j++)
        for (int c = 0; c < d; c++) kt[(long)c * N + j] = (int32_t)k[(long)j * ld + c];
    uint8_t exact[FAST_N];
    for (int i = 0; i < N; i++) {
        /* A_ij = sum_c q_ic k_jc: add or subtract row c of K^T for each nonzero q_ic */
        const float *qi = q + (long)i * ld;
        int qc[FAST_D];
        const int nq = snn_nonzero_indices(qi, d, qc); /* |A_ij| <= nq, the number of nonzero q_ic */
        int32_t a[FAST_N];
        for (int j = 0; j < N; j++) a[j] = 0;
        for (int t = 0; t < nq; t++) {
            const int32_t *kr = kt + (long)qc[t] * N;
            if (qi[qc[t]] > 0.0f)
                for (int j = 0; j < N; j++) a[j] += kr[j];
            else
                for (int j = 0; j < N; j++) a[j] -= kr[j];
        }
        /* Shiftmax: e_ij = floor(s A_ij) - m_i - r_i (in place) */
        int32_t m, emin;
        const int32_t r = shiftmax_row_small(N, a, shift, mode, nq, &m, &emin);
        mr[2 * i] = m;
        mr[2 * i + 1] = r;
        float *pi = p + (long)i * N;
        if (emin >= -126) {
            for (int j = 0; j < N; j++) {
                const uint32_t bits = (uint32_t)(a[j] + 127) << 23;
                memcpy(&pi[j], &bits, sizeof bits);
            }
        } else {
            for (int j = 0; j < N; j++) pi[j] = pow2f(a[j]);
        }
        exact[i] = emin >= -24 && ((int64_t)N << -emin) <= ((int64_t)1 << 24);
    }

    /* O = P V */
    int lj[FAST_N], nl = 0; /* rows of V with a one */
    for (int j = 0; j < N; j++) {
        const float *vr = v + (long)j * ld;
        int any = 0;
        for (int c = 0; c < d; c++) any |= vr[c] != 0.0f;
        lj[nl] = j;
        nl += any;
    }
    const int d16 = d / 16 * 16;
    for (int i = 0; i < N; i++) {
        float *oi = o + (long)i * ldo;
        const float *pi = p + (long)i * N;
        if (!exact[i]) {
            double acc[FAST_D];
            for (int c = 0; c < d; c++) acc[c] = 0.0;
            for (int j = 0; j < N; j++) {
                const double pj = (double)pi[j];
                const float *vr = v + (long)j * ld;
                for (int c = 0; c < d; c++) acc[c] += pj * (double)vr[c];
            }
            for (int c = 0; c < d; c++) oi[c] = (float)acc[c];
            continue;
        }
        const bool two = i + 1 < N && exact[i + 1];
        const float *pi1 = two ? pi + N : pi;
        float *oi1 = two ? oi + ldo : oi;
        for (int c0 = 0; wide && c0 < d16; c0 += 16) {
            v16f a = {0}, b = {0};
            for (int t = 0; t < nl; t++) {
                const v16f V = *(const v16fu *)(v + (long)lj[t] * ld + c0);
                a += pi[lj[t]] * V;
                if (two) b += pi1[lj[t]] * V;
            }
            *(v16fu *)(oi + c0) = a;
            if (two) *(v16fu *)(oi1 + c0) = b;
        }
        for (int c0 = 0; !wide && c0 < d16; c0 += 16) {
            v8f a0 = {0}, a1 = {0}, b0 = {0}, b1 = {0};
            for (int t = 0; t < nl; t++) {
                const float *vr = v + (long)lj[t] * ld + c0;
                const v8f V0 = *(const v8fu *)vr, V1 = *(const v8fu *)(vr + 8);
                a0 += pi[lj[t]] * V0, a1 += pi[lj[t]] * V1;
                if (two) b0 += pi1[lj[t]] * V0, b1 += pi1[lj[t]] * V1;
            }
            *(v8fu *)(oi + c0) = a0, *(v8fu *)(oi + c0 + 8) = a1;
            if (two) *(v8fu *)(oi1 + c0) = b0, *(v8fu *)(oi1 + c0 + 8) = b1;
        }
        for (int u = 0; u < (two ? 2 : 1); u++) {
            const float *pu = pi + (long)u * N;
            float *ou = oi + (long)u * ldo;
            for (int c = d16; c < d; c++) {
                float acc = 0.0f;
                for (int t = 0; t < nl; t++) acc += pu[lj[t]] * v[(long)lj[t] * ld + c];
                ou[c] = acc;
            }
        }
        if (two) i++;
    }
    return true;
}

SNN_WIDE_FN VEC_FN static bool bsa_forward_wide(int N, int d, const float *q, const float *k,
                                                const float *v, int ld, int shift,
                                                snn_shiftmax_round mode, float *o, int ldo,
                                                float *p, int32_t *mr) {
    return bsa_forward_body(N, d, q, k, v, ld, shift, mode, o, ldo, p, mr, true);
}
SNN_WIDE_FN VEC_FN static bool bsa_forward_narrow(int N, int d, const float *q, const float *k,
                                                  const float *v, int ld, int shift,
                                                  snn_shiftmax_round mode, float *o, int ldo,
                                                  float *p, int32_t *mr) {
    return bsa_forward_body(N, d, q, k, v, ld, shift, mode, o, ldo, p, mr, false);
}
static bool bsa_forward_fast(int N, int d, const float *q, const float *k, const float *v,
                             int ld, int shift, snn_shiftmax_round mode, float *o, int ldo,
                             float *p, int32_t *mr) {
    return snn_wide_avx512()
               ? bsa_forward_wide(N, d, q, k, v, ld, shift, mode, o, ldo, p, mr)
               : bsa_forward_narrow(N, d, q, k, v, ld, shift, mode, o, ldo, p, mr);
}

static inline double dot(const float *a, const float *b, int d) {
    double acc = 0.0;
    for (int c = 0; c < d; c++) acc += (double)a[c] * (double)b[c];
    return acc;
}

void snn_attn_bsa_head_train(int N, int d, const float *q, const float *k, const float *v, int ld,
                             int shift, snn_shiftmax_round mode, bool smooth, float *o, int ldo,
                             float *p, int32_t *mr, bool frozen_mr) {
    if (N <= 0) return;
    SNN_ASSERT(d >= 0 && N <= SNN_ATTN_BSA_TRAIN_MAX_N);
    if (!smooth && !frozen_mr && bsa_forward_fast(N, d, q, k, v, ld, shift, mode, o, ldo, p, mr))
        return;
    const double s = ldexp(1.0, -shift);
    int32_t e[SNN_ATTN_BSA_TRAIN_MAX_N];   /* floor(z_ij), then the exponents z - m - r */
    double pd[SNN_ATTN_BSA_TRAIN_MAX_N];   /* s A_ij, then P_ij in double */

    for (int i = 0; i < N; i++) {
        /* A_ij = sum_c q_ic k_jc;  z_ij = floor(s A_ij) (normal) or s A_ij (smooth) */
        int32_t m = INT32_MIN;
        for (int j = 0; j < N; j++) {
            const double z = s * dot(q + (long)i * ld, k + (long)j * ld, d);
            const double zf = floor(z);
            SNN_ASSERT(fabs(zf) < 1073741824.0);  /* 2^30: integer exponents stay in range */
            e[j] = (int32_t)zf;
            pd[j] = z;
            if (e[j] > m) m = e[j];
        }

        /* m_i = max_j floor(z_ij);  r_i = round|ceil(log2 sum_j 2^(floor(z_ij) - m_i)) */
        int32_t r;
        if (frozen_mr) {
            m = mr[2 * i];
            r = mr[2 * i + 1];
        } else {
            /* shift 0: the row is already floor(s A); e becomes floor(z) - m - r */
            r = snn_shiftmax_row(N, e, 0, mode, e);
            mr[2 * i] = m;
            mr[2 * i + 1] = r;
        }

        /* P_ij = 2^(z_ij - m_i - r_i) */
        float *pi = p + (long)i * N;
        for (int j = 0; j < N; j++) {
            double pj;
            if (smooth) {
                pj = exp2(pd[j] - (double)m - (double)r);
            } else {
                int64_t ej = frozen_mr ? (int64_t)e[j] - m - r : e[j];
                if (ej < -2000) ej = -2000;  /* 2^-2000 is 0 in double either way */
                if (ej > 2000) ej = 2000;
                pj = ldexp(1.0, (int)ej);
            }
            pd[j] = pj;
            pi[j] = (float)pj;
        }

        /* O = P V:  o_ic = sum_j P_ij v_jc, double, j order */
        for (int c0 = 0; c0 < d; c0 += CBLK) {
            const int cn = d - c0 < CBLK ? d - c0 : CBLK;
            double acc[CBLK];
            for (int c = 0; c < cn; c++) acc[c] = 0.0;
            for (int j = 0; j < N; j++) {
                const double pj = pd[j];
                const float *vj = v + (long)j * ld + c0;
                for (int c = 0; c < cn; c++) acc[c] += pj * (double)vj[c];
            }
            float *oi = o + (long)i * ldo + c0;
            for (int c = 0; c < cn; c++) oi[c] = (float)acc[c];
        }
    }
}

/* Sixteen spikes a vector from lane masks; a row's last vector may run past d into the next row,
 * which is written after it, and the last row's into the tile's padding. */
typedef int32_t v16i __attribute__((vector_size(64)));
SNN_WIDE_FN VEC_FN void snn_attn_head_from_bits(int N, int d, const uint64_t *nz,
                                                const uint64_t *neg, size_t pos, size_t stride,
                                                float *s) {
    /* lane c takes bit c by a per-lane shift (a compare into a -1/0 vector needs AVX-512DQ,
     * which gcc otherwise emulates lane by lane) */
    const v16i lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    for (int i = 0; i < N; i++) {
        const size_t at = pos + (size_t)i * stride;
        const uint64_t z = snn_bits_field(nz, at, d), n = neg ? snn_bits_field(neg, at, d) : 0;
        for (int c0 = 0; c0 < d; c0 += 16) {
            const v16i zc = ((v16i){0} + (int32_t)(z >> c0 & 0xffff)) >> lane & 1;
            const v16i nc = ((v16i){0} + (int32_t)(n >> c0 & 0xffff)) >> lane & 1;
            const v16f f = __builtin_convertvector(zc - 2 * (zc & nc), v16f); /* 1, -1, 0 */
            memcpy(s + (long)i * d + c0, &f, sizeof f);
        }
    }
}

/* q, k, v [N, d] compact tiles (TILE_N FAST_D + 16 floats each) of hb's head. */
static void head_tiles(int N, int d, const snn_head_bits *hb, float *q, float *k, float *v) {
    SNN_ASSERT(N >= 0 && N <= TILE_N && d >= 1 && d <= FAST_D && hb->stride >= (size_t)d);
    snn_attn_head_from_bits(N, d, hb->q_nz, hb->q_neg, hb->pos, hb->stride, q);
    snn_attn_head_from_bits(N, d, hb->k_nz, hb->k_neg, hb->pos, hb->stride, k);
    snn_attn_head_from_bits(N, d, hb->v_nz, NULL, hb->pos, hb->stride, v);
}

void snn_attn_bsa_head_train_bits(int N, int d, const snn_head_bits *hb, int shift,
                                  snn_shiftmax_round mode, float *o, int ldo, float *p,
                                  int32_t *mr) {
    /* the head as compact spike tiles [N, d]: the kernel's results do not depend on the row
     * stride, and the tiles stay in L1 where the floats of a whole batch did not */
    float q[TILE_N * FAST_D + 16], k[TILE_N * FAST_D + 16], v[TILE_N * FAST_D + 16];
    head_tiles(N, d, hb, q, k, v);
    snn_attn_bsa_head_train(N, d, q, k, v, d, shift, mode, false, o, ldo, p, mr, false);
}

/* Four floats (unaligned access through v4fu). */
typedef float v4f __attribute__((vector_size(16)));
typedef float v4fu __attribute__((vector_size(16), aligned(4)));

/* The backward's sums (see the header comment), float accumulators from +0 in a fixed order:
 *   dv_jc += sum_i P_ij do_ic     i order       dP_ij = sum_c do_ic v_jc    c order
 *   dq_ic += sum_j dA_ij k_jc     j order       dk_jc += sum_i dA_ij q_ic   i order
 * with dA_ij = (float)(2^-shift ln2 P_ij dP_ij) in double. A term whose P, v, k or q factor is
 * 0 is skipped: such a term is +-0, and adding +-0 to an accumulator that started at +0 changes
 * no bit (it is never -0: +0 + -0 = +0, and an exact cancellation gives +0). */

/* out_rc += sum_s a[r rs + s cs] x_sc (s order; x_sc = 0 skipped) for r < N, c < d: dQ from the
 * rows of dA (rs = N, cs = 1) and K, dK from its columns (rs = 1, cs = N) and Q. */
static void add_da_rows(int N, int d, const float *a, long rs, long cs, const float *x, int ld,
                        float *out) {
    for (int r = 0; r < N; r++)
        for (int c0 = 0; c0 < d; c0 += CBLK) {
            const int cn = d - c0 < CBLK ? d - c0 : CBLK;
            float acc[CBLK];
            for (int c = 0; c < cn; c++) acc[c] = 0.0f;
            for (int t = 0; t < N; t++) {
                const float at = a[r * rs + t * cs], *xt = x + (long)t * ld + c0;
                for (int c = 0; c < cn; c++)
                    if (xt[c] != 0.0f) acc[c] += at * xt[c];
            }
            float *o = out + (long)r * ld + c0;
            for (int c = 0; c < cn; c++) o[c] += acc[c];
        }
}

/* Any N <= SNN_ATTN_BSA_TRAIN_MAX_N and d: the sums above term by term. */
void snn_attn_bsa_head_backward_ref(int N, int d, const float *q, const float *k, const float *v,
                                    int ld, int shift, const float *p, const float *dout,
                                    int lddo, float *dq, float *dk, float *dv, float *scratch) {
    SNN_ASSERT(d >= 0 && N <= SNN_ATTN_BSA_TRAIN_MAX_N);
    for (int j = 0; j < N; j++) /* dV */
        for (int c0 = 0; c0 < d; c0 += CBLK) {
            const int cn = d - c0 < CBLK ? d - c0 : CBLK;
            float acc[CBLK];
            for (int c = 0; c < cn; c++) acc[c] = 0.0f;
            for (int i = 0; i < N; i++) {
                const float w = p[(long)i * N + j];
                if (w == 0.0f) continue;
                const float *g = dout + (long)i * lddo + c0;
                for (int c = 0; c < cn; c++) acc[c] += w * g[c];
            }
            float *dvj = dv + (long)j * ld + c0;
            for (int c = 0; c < cn; c++) dvj[c] += acc[c];
        }
    const double cst = ldexp(M_LN2, -shift);
    for (int i = 0; i < N; i++) /* dP, then dA into scratch */
        for (int j = 0; j < N; j++) {
            const float *g = dout + (long)i * lddo, *vj = v + (long)j * ld;
            float acc = 0.0f;
            for (int c = 0; c < d; c++)
                if (vj[c] != 0.0f) acc += g[c] * vj[c];
            scratch[(long)i * N + j] = (float)(cst * (double)p[(long)i * N + j] * (double)acc);
        }
    /* dQ: row i of dA against K;  dK: column j of dA against Q */
    add_da_rows(N, d, scratch, N, 1, k, ld, dq);
    add_da_rows(N, d, scratch, 1, N, q, ld, dk);
}

/* dv[j + u, c0 .. c0 + 16) += sum_i P_i,j+u do_ic (i order) for u < NJ (1 or 4): every P_ij is
 * nonzero here, so no term is skipped. Four named accumulators: an array of them lived on the
 * stack, a load, add and store per term (the loop ran at the store-forwarding latency). */
static inline __attribute__((always_inline)) void dv_block16(int NJ, int N, const float *p, int j,
                                                               const float *dout, int lddo,
                                                               int c0, float *dv, int ld,
                                                               const bool wide) {
    if (!wide) { /* two 8-float halves */
        for (int h = 0; h < 16; h += 8) {
            v8f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
            for (int i = 0; i < N; i++) {
                const v8f g = *(const v8fu *)(dout + (long)i * lddo + c0 + h);
                const float *pi = p + (long)i * N + j;
                a0 += pi[0] * g;
                if (NJ == 4) a1 += pi[1] * g, a2 += pi[2] * g, a3 += pi[3] * g;
            }
            *(v8fu *)(dv + (long)j * ld + c0 + h) += a0;
            if (NJ == 4) {
                *(v8fu *)(dv + (long)(j + 1) * ld + c0 + h) += a1;
                *(v8fu *)(dv + (long)(j + 2) * ld + c0 + h) += a2;
                *(v8fu *)(dv + (long)(j + 3) * ld + c0 + h) += a3;
            }
        }
        return;
    }
    v16f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
    for (int i = 0; i < N; i++) {
        const v16f g = *(const v16fu *)(dout + (long)i * lddo + c0);
        const float *pi = p + (long)i * N + j;
        a0 += pi[0] * g;
        if (NJ == 4) a1 += pi[1] * g, a2 += pi[2] * g, a3 += pi[3] * g;
    }
    *(v16fu *)(dv + (long)j * ld + c0) += a0;
    if (NJ == 4) {
        *(v16fu *)(dv + (long)(j + 1) * ld + c0) += a1;
        *(v16fu *)(dv + (long)(j + 2) * ld + c0) += a2;
        *(v16fu *)(dv + (long)(j + 3) * ld + c0) += a3;
    }
}

/* out[r, c] += sum_s a[s, r] x[s, c] for r < N, c < d (s ascending; rows s with live[s] == 0,
 * when live is given, skipped: their a rows are 0): rows of out^T in work [d, N] from the
 * nonzero x_sc (row stride ldx) and the rows of a [N, N], then out^T added to out (row stride
 * ld). dQ from dA^T and K, dK from dA and Q. */
static inline __attribute__((always_inline)) void
add_rows_transposed(int N, int d, const float *a, const float *x, int ldx, const uint8_t *live,
                    float *work, float *out, int ld) {
    for (int t = 0; t < d * N; t++) work[t] = 0.0f;
    for (int s = 0; s < N; s++) {
        if (live && !live[s]) continue;
        const float *xs = x + (long)s * ldx;
        const float *as = a + (long)s * N;
        int cs[FAST_D];
        const int nc = snn_nonzero_indices(xs, d, cs);
        for (int t = 0; t < nc; t++) {
            const float xv = xs[cs[t]];
            float *row = work + (long)cs[t] * N;
            for (int r = 0; r < N; r++) row[r] += as[r] * xv;
        }
    }
    snn_transpose(d, N, work, N, out, ld, true);
}

/* Backward for fast_head(N, d): snn_attn_bsa_head_backward_ref's sums, term for term
 * and in its order, without the zero terms (see above), laid out for contiguous inner loops with
 * the head's own sizes (row strides N and d) so that they stay in L1 (up to N = 64; in L2
 * beyond): dV dense over blocks of 16 columns, dP^T and dA^T rows (into scratch) from the
 * nonzero v_jc, dQ^T rows from the nonzero k_jc, dA = (dA^T)^T in place, dK^T rows from the
 * rows of dA and the nonzero q_ic. */
static inline __attribute__((always_inline)) void
bsa_backward_body(int N, int d, const float *q, const float *k, const float *v, int ldi,
                  int shift, const float *p, const float *dout, int lddo, float *dq, float *dk,
                  float *dv, int ld, float *scratch, const bool wide) {
    /* The caller walks the heads of a [N, heads * d] row block in order: the next head's rows
     * are the next d columns of the same rows. Ask for them now (a prefetch reads nothing: no
     * value outside this head's columns is used, and no address is dereferenced). */
    for (int i = 0; i < N; i++) {
        const long r = (long)i * ld + d, ri = (long)i * ldi + d;
        __builtin_prefetch(q + ri), __builtin_prefetch(k + ri), __builtin_prefetch(v + ri);
        __builtin_prefetch(dq + r, 1), __builtin_prefetch(dk + r, 1), __builtin_prefetch(dv + r, 1);
        __builtin_prefetch(dout + (long)i * lddo + d);
    }
    /* whether some P_ij is 0 (those terms of dV are skipped) */
    bool anyzero = false;
    {
        typedef int32_t v8i __attribute__((vector_size(32)));
        v8i zero8 = {0};
        const int nn = N * N, nn8 = nn / 8 * 8;
        for (int t = 0; t < nn8; t += 8) zero8 |= *(const v8fu *)(p + t) == 0.0f;
        for (int t = 0; t < 8; t++) anyzero |= zero8[t] != 0;
        for (int t = nn8; t < nn; t++) anyzero |= p[t] == 0.0f;
    }

    /* dV:  dv_jc += sum_i P_ij do_ic: blocks of 16 columns, 4 or 1 j at a time */
    const int d16 = anyzero ? 0 : d / 16 * 16, N4 = N / 4 * 4;
    for (int c0 = 0; c0 < d16; c0 += 16) {
        for (int j = 0; j < N4; j += 4) dv_block16(4, N, p, j, dout, lddo, c0, dv, ld, wide);
        for (int j = N4; j < N; j++) dv_block16(1, N, p, j, dout, lddo, c0, dv, ld, wide);
    }
    if (d16 < d)
        for (int j = 0; j < N; j++) {
            float acc[FAST_D];
            for (int c = d16; c < d; c++) acc[c] = 0.0f;
            for (int i = 0; i < N; i++) {
                const float w = p[(long)i * N + j];
                if (w == 0.0f) continue;
                const float *g = dout + (long)i * lddo;
                for (int c = d16; c < d; c++) acc[c] += w * g[c];
            }
            float *dvj = dv + (long)j * ld;
            for (int c = d16; c < d; c++) dvj[c] += acc[c];
        }

    /* One [d, N] array (row stride N), in turn dO^T, dQ^T and dK^T. */
    float work[FAST_ND];
    /* dO^T */
    for (int i = 0; i < N; i++)
        for (int c = 0; c < d; c++) work[(long)c * N + i] = dout[(long)i * lddo + c];
    /* dP^T:  dP_ij = sum_c do_ic v_jc;  dA^T:  dA_ij = (float)(2^-shift ln2 P_ij dP_ij) (row j of
     * scratch, transposed in place below). Rows j without a nonzero v_jc have dP = dA = 0
     * ("dead": zero rows, skipped below). */
    const double cst = ldexp(M_LN2, -shift);
    uint8_t live[FAST_N];
    for (int j = 0; j < N; j++) {
        const float *vj = v + (long)j * ldi;
        float *dj = scratch + (long)j * N;
        int cs[FAST_D];
        const int nc = snn_nonzero_indices(vj, d, cs);
        live[j] = nc > 0;
        if (!nc) {
            for (int i = 0; i < N; i++) dj[i] = 0.0f;
            continue;
        }
        float acc[FAST_N];
        for (int i = 0; i < N; i++) acc[i] = 0.0f;
        for (int t = 0; t < nc; t++) {
            const float vv = vj[cs[t]];
            const float *g = work + (long)cs[t] * N;
            for (int i = 0; i < N; i++) acc[i] += g[i] * vv;
        }
        for (int i = 0; i < N; i++)
            dj[i] = (float)(cst * (double)p[(long)i * N + j] * (double)acc[i]);
    }

    /* dQ:  dq_ic += sum_j dA_ij k_jc: rows of dQ^T from the rows of dA^T */
    add_rows_transposed(N, d, scratch, k, ldi, live, work, dq, ld);

    /* scratch = dA, row-major (the documented side output; dK reads it) */
    snn_transpose_square_inplace(N, scratch, N);

    /* dK:  dk_jc += sum_i dA_ij q_ic: rows of dK^T from the rows of dA */
    add_rows_transposed(N, d, scratch, q, ldi, NULL, work, dk, ld);
}

SNN_WIDE_FN VEC_FN static void bsa_backward_wide(int N, int d, const float *q, const float *k,
                                                 const float *v, int ldi, int shift,
                                                 const float *p, const float *dout, int lddo,
                                                 float *dq, float *dk, float *dv, int ld,
                                                 float *scratch) {
    bsa_backward_body(N, d, q, k, v, ldi, shift, p, dout, lddo, dq, dk, dv, ld, scratch, true);
}
SNN_WIDE_FN VEC_FN static void bsa_backward_narrow(int N, int d, const float *q, const float *k,
                                                   const float *v, int ldi, int shift,
                                                   const float *p, const float *dout, int lddo,
                                                   float *dq, float *dk, float *dv, int ld,
                                                   float *scratch) {
    bsa_backward_body(N, d, q, k, v, ldi, shift, p, dout, lddo, dq, dk, dv, ld, scratch, false);
}

void snn_attn_bsa_head_backward_bits(int N, int d, const snn_head_bits *hb, int shift,
                                     const float *p, const float *dout, int lddo, float *dq,
                                     float *dk, float *dv, int ld, float *scratch) {
    float q[TILE_N * FAST_D + 16], k[TILE_N * FAST_D + 16], v[TILE_N * FAST_D + 16];
    head_tiles(N, d, hb, q, k, v);
    (snn_wide_avx512() ? bsa_backward_wide : bsa_backward_narrow)(N, d, q, k, v, d, shift, p,
                                                                   dout, lddo, dq, dk, dv, ld,
                                                                   scratch);
}

void snn_attn_bsa_head_backward(int N, int d, const float *q, const float *k, const float *v,
                                int ld, int shift, const float *p, const float *dout, int lddo,
                                float *dq, float *dk, float *dv, float *scratch) {
    if (N <= 0) return;
    SNN_ASSERT(d >= 0 && N <= SNN_ATTN_BSA_TRAIN_MAX_N);
    if (fast_head(N, d))
        (snn_wide_avx512() ? bsa_backward_wide : bsa_backward_narrow)(
            N, d, q, k, v, ld, shift, p, dout, lddo, dq, dk, dv, ld, scratch);
    else
        snn_attn_bsa_head_backward_ref(N, d, q, k, v, ld, shift, p, dout, lddo, dq, dk, dv,
                                       scratch);
}
