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
 * STE: the backward depends on the forward only through P.
 *
 * Fast paths (N <= FAST_N, d <= FAST_D; the common case), same results bit for bit:
 *   forward, normal mode on spikes (ternary Q, K, binary V, shift >= 0, m and r computed): A in
 *     int32 from the nonzero q_ic (rows of K^T added or subtracted: exact), the Shiftmax row by
 *     snn_shiftmax_row itself, P = 2^e built from the exponent bits, and O^T[c] += P^T[j] for
 *     every v_jc = 1 in float: every partial sum is a multiple of 2^min(e) below N 2^-min(e), so
 *     when N 2^-min(e) <= 2^24 the float sums are exact, equal to the double sums of the generic
 *     code (otherwise the head takes the double P V of the generic code).
 *   backward, any inputs: the generic formulas with the same products summed in the same order
 *     (so the same bits), but skipping the zero terms (adding +-0 to a nonzero-or-+0 double
 *     accumulator changes nothing) and laid out for contiguous inner loops: dP^T rows from the
 *     nonzero v_jc, dQ^T rows from the nonzero k_jc, dK from the nonzero q_ic, dV dense.
 *
 * Pure numerics: no I/O, no allocation (fixed stack buffers), no static state.
 */
#include "attention/attention.h"

#include <math.h>
#include <string.h>

#include "sim/util.h"

enum { CBLK = 64 };  /* channels per block of double accumulators */

/* Largest head handled by the fast paths (their buffers live on the stack). */
enum { FAST_N = 64, FAST_D = 64 };
_Static_assert(FAST_N <= 256 && FAST_D <= 256, "uint8_t indices");

/* Element-wise loops over contiguous rows, vectorised by gcc (see neurons/bptt.c): vectorising
 * independent element-wise operations changes no bit. */
#if defined(__GNUC__) && !defined(__clang__)
#define VEC_FN                                                                                  \
    __attribute__((optimize("tree-vectorize", "vect-cost-model=dynamic",                         \
                            "no-tree-loop-distribute-patterns")))
#else
#define VEC_FN
#endif

/* The fast kernels are also compiled for AVX2, chosen at run time (see neurons/bptt.c): the same
 * element-wise IEEE operations on wider vectors, so the same bits. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(SNN_NO_CLONES)
#define WIDE_FN __attribute__((target_clones("avx2", "default")))
#else
#define WIDE_FN
#endif

/* Two doubles, for the dense dV product (element-wise IEEE operations, like the scalar code). */
typedef double v2d __attribute__((vector_size(16)));

/* 2^e as a float, exactly as (float)ldexp(1.0, e): built from the exponent bits when normal. */
static inline float pow2f(int32_t e) {
    if (e < -126 || e > 127) return (float)ldexp(1.0, e < -2000 ? -2000 : e > 2000 ? 2000 : e);
    const uint32_t bits = (uint32_t)(e + 127) << 23;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Every entry of the [n, d] matrix (row stride ld) is in {0, 1} (lo = 0) or {-1, 0, 1} (lo = -1). */
VEC_FN static bool all_spikes(int n, int d, const float *m, int ld, float lo) {
    for (int i = 0; i < n; i++) {
        const float *r = m + (long)i * ld;
        int bad = 0;
        for (int c = 0; c < d; c++) bad |= !(r[c] == 0.0f || r[c] == 1.0f || r[c] == lo);
        if (bad) return false;
    }
    return true;
}

/* snn_shiftmax_row (attention/shiftmax.c) on one row of integer scores |a_j| <= amax_abs with
 * 0 <= shift <= 30, returning the same r and exponents e_j (in place) whenever its double row
 * sum is exact, which is checked here: the spread of z = floor(a 2^-shift) plus log2 n is at most
 * 52 bits. Then the sum S = sum_j 2^(z_j - m) is computed exactly as an integer instead, and
 * floor(log2 S) and the rounding test are read off it exactly as shiftmax.c reads them off its
 * double. Otherwise it calls snn_shiftmax_row itself. Returns r; *m_out = max_j z_j. */
VEC_FN static int32_t shiftmax_row_small(int n, int32_t *a, int shift, snn_shiftmax_round mode,
                                         int32_t amax_abs, int32_t *m_out) {
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
    if ((int64_t)zmax - zmin + nbits > 52) {
        /* the general code, on the floored row (shift 0 keeps it) */
        return snn_shiftmax_row(n, a, 0, mode, a);
    }
    /* S 2^(m - zmin) = sum_j 2^(z_j - zmin), an exact integer below 2^53 */
    uint64_t s = 0;
    for (int j = 0; j < n; j++) s += (uint64_t)1 << (a[j] - zmin);
    const int kb = 63 - __builtin_clzll(s);            /* floor(log2 s), s >= 1 */
    const int k = kb + (zmin - zmax);                  /* floor(log2 S) */
    const double x = (double)s / (double)((uint64_t)1 << kb); /* S 2^-k in [1, 2), exact */
    const int32_t r = mode == SNN_SHIFTMAX_CEIL ? k + (x != 1.0) : k + (x * x >= 2.0);
    const int32_t off = zmax + r;
    for (int j = 0; j < n; j++) a[j] -= off;
    return r;
}

/* Normal-mode forward on spikes (see the header comment); returns false, having written
 * nothing, when the head is outside the fast path's domain. Row by row: A_i in int32 from the
 * nonzero q_ic, the Shiftmax row, P_i = 2^e from the exponent bits, then
 * O_ic = sum over the j with v_jc = 1 of P_ij: in float when exact (every partial sum is a
 * multiple of 2^min_j(e_ij) below N, so N 2^-min(e) <= 2^24 suffices), else in double in j
 * order as the generic code sums. */
WIDE_FN VEC_FN static bool bsa_forward_fast(int N, int d, const float *q, const float *k, const float *v,
                                    int ld, int shift, snn_shiftmax_round mode, float *o, int ldo,
                                    float *p, int32_t *mr) {
    if (N > FAST_N || d > FAST_D || shift < 0 || shift > 30) return false;
    if (!all_spikes(N, d, q, ld, -1.0f) || !all_spikes(N, d, k, ld, -1.0f) ||
        !all_spikes(N, d, v, ld, 0.0f))
        return false;
    int32_t kt[FAST_D][FAST_N]; /* K^T as integers */
    for (int j = 0; j < N; j++)
        for (int c = 0; c < d; c++) kt[c][j] = (int32_t)k[(long)j * ld + c];
    /* the ones of V by channel: vj[vs[c] .. vs[c + 1]) are the j with v_jc = 1, ascending */
    uint8_t vj[FAST_N * FAST_D];
    int vs[FAST_D + 1];
    {
        int t = 0;
        for (int c = 0; c < d; c++) {
            vs[c] = t;
            for (int j = 0; j < N; j++)
                if (v[(long)j * ld + c] != 0.0f) vj[t++] = (uint8_t)j;
        }
        vs[d] = t;
    }
    for (int i = 0; i < N; i++) {
        /* A_ij = sum_c q_ic k_jc: add or subtract row c of K^T for each nonzero q_ic */
        int32_t a[FAST_N];
        for (int j = 0; j < N; j++) a[j] = 0;
        const float *qi = q + (long)i * ld;
        int32_t nq = 0; /* |A_ij| <= number of nonzero q_ic */
        for (int c = 0; c < d; c++) {
            if (qi[c] > 0.0f) {
                for (int j = 0; j < N; j++) a[j] += kt[c][j];
                nq++;
            } else if (qi[c] < 0.0f) {
                for (int j = 0; j < N; j++) a[j] -= kt[c][j];
                nq++;
            }
        }
        /* Shiftmax: e_ij = floor(s A_ij) - m_i - r_i (in place) */
        int32_t m;
        const int32_t r = shiftmax_row_small(N, a, shift, mode, nq, &m);
        mr[2 * i] = m;
        mr[2 * i + 1] = r;
        float *pi = p + (long)i * N;
        int32_t emin = 0;
        for (int j = 0; j < N; j++) emin = a[j] < emin ? a[j] : emin;
        if (emin >= -126) {
            for (int j = 0; j < N; j++) {
                const uint32_t bits = (uint32_t)(a[j] + 127) << 23;
                memcpy(&pi[j], &bits, sizeof bits);
            }
        } else {
            for (int j = 0; j < N; j++) pi[j] = pow2f(a[j]);
        }
        float *oi = o + (long)i * ldo;
        if (emin >= -24 && ((int64_t)N << -emin) <= ((int64_t)1 << 24)) {
            for (int c = 0; c < d; c++) {
                float acc = 0.0f;
                for (int t = vs[c]; t < vs[c + 1]; t++) acc += pi[vj[t]];
                oi[c] = acc;
            }
        } else {
            double acc[FAST_D];
            for (int c = 0; c < d; c++) acc[c] = 0.0;
            for (int j = 0; j < N; j++) {
                const double pj = (double)pi[j];
                const float *vr = v + (long)j * ld;
                for (int c = 0; c < d; c++) acc[c] += pj * (double)vr[c];
            }
            for (int c = 0; c < d; c++) oi[c] = (float)acc[c];
        }
    }
    return true;
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

/* Backward for N <= FAST_N, d <= FAST_D, any inputs: the generic code's sums, term for term and
 * in its order, without the zero terms (see the header comment). */
WIDE_FN VEC_FN static void bsa_backward_fast(int N, int d, const float *q, const float *k, const float *v,
                                     int ld, int shift, const float *p, const float *dout,
                                     int lddo, float *dq, float *dk, float *dv, float *scratch) {
    /* dO in double, row-major (dV) and transposed (dP^T) */
    double dod[FAST_N][FAST_D] __attribute__((aligned(16)));
    double dot_[FAST_D][FAST_N];
    for (int i = 0; i < N; i++)
        for (int c = 0; c < d; c++) {
            const double g = (double)dout[(long)i * lddo + c];
            dod[i][c] = g;
            dot_[c][i] = g;
        }

    /* dV:  dv_jc += sum_i P_ij do_ic  (i order, double; P_ij = 0 skipped) */
    const int d8 = d / 8 * 8;
    for (int j = 0; j < N; j++) {
        float *dvj = dv + (long)j * ld;
        for (int c0 = 0; c0 < d8; c0 += 8) {
            v2d a0 = {0.0, 0.0}, a1 = a0, a2 = a0, a3 = a0;
            for (int i = 0; i < N; i++) {
                const double w = (double)p[(long)i * N + j];
                if (w == 0.0) continue;
                const v2d wv = {w, w};
                const v2d *g = (const v2d *)&dod[i][c0];
                a0 += wv * g[0];
                a1 += wv * g[1];
                a2 += wv * g[2];
                a3 += wv * g[3];
            }
            const double acc[8] = {a0[0], a0[1], a1[0], a1[1], a2[0], a2[1], a3[0], a3[1]};
            for (int c = 0; c < 8; c++) dvj[c0 + c] += (float)acc[c];
        }
        if (d8 < d) {
            double acc[8] = {0};
            for (int i = 0; i < N; i++) {
                const double w = (double)p[(long)i * N + j];
                if (w == 0.0) continue;
                for (int c = d8; c < d; c++) acc[c - d8] += w * dod[i][c];
            }
            for (int c = d8; c < d; c++) dvj[c] += (float)acc[c - d8];
        }
    }

    /* dP^T:  dP_ij = sum_c do_ic v_jc (c order, double), rounded to float;
     * dA^T:  dA_ij = (float)(2^-shift ln2 P_ij dP_ij), kept as double. Rows j with no nonzero
     * v_jc have dP = dA = 0 and are skipped below. */
    const double cst = ldexp(M_LN2, -shift);
    double dat[FAST_N][FAST_N];
    bool live[FAST_N];
    for (int j = 0; j < N; j++) {
        const float *vj = v + (long)j * ld;
        double acc[FAST_N];
        bool any = false;
        for (int c = 0; c < d; c++) {
            const double vv = (double)vj[c];
            if (vv == 0.0) continue;
            if (!any) {
                for (int i = 0; i < N; i++) acc[i] = 0.0;
                any = true;
            }
            for (int i = 0; i < N; i++) acc[i] += dot_[c][i] * vv;
        }
        live[j] = any;
        if (!any) continue;
        for (int i = 0; i < N; i++)
            dat[j][i] = (double)(float)(cst * (double)p[(long)i * N + j] * (double)(float)acc[i]);
    }
    /* the documented side output: scratch = dA, row-major, as float */
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) scratch[(long)i * N + j] = live[j] ? (float)dat[j][i] : 0.0f;

    /* dQ:  dq_ic += sum_j dA_ij k_jc (j order, double): rows of dQ^T */
    {
        double dqt[FAST_D][FAST_N];
        for (int c = 0; c < d; c++)
            for (int i = 0; i < N; i++) dqt[c][i] = 0.0;
        for (int j = 0; j < N; j++) {
            if (!live[j]) continue;
            const float *kj = k + (long)j * ld;
            for (int c = 0; c < d; c++) {
                const double kv = (double)kj[c];
                if (kv == 0.0) continue;
                for (int i = 0; i < N; i++) dqt[c][i] += dat[j][i] * kv;
            }
        }
        for (int i = 0; i < N; i++)
            for (int c = 0; c < d; c++) dq[(long)i * ld + c] += (float)dqt[c][i];
    }

    /* dK:  dk_jc += sum_i dA_ij q_ic (i order, double), over the nonzero q_ic */
    {
        uint8_t nz_i[FAST_N * FAST_D], nz_c[FAST_N * FAST_D];
        float nz_v[FAST_N * FAST_D];
        int nnz = 0;
        for (int i = 0; i < N; i++)
            for (int c = 0; c < d; c++) {
                const float qv = q[(long)i * ld + c];
                if (qv == 0.0f) continue;
                nz_i[nnz] = (uint8_t)i;
                nz_c[nnz] = (uint8_t)c;
                nz_v[nnz] = qv;
                nnz++;
            }
        for (int j = 0; j < N; j++) {
            double acc[FAST_D];
            for (int c = 0; c < d; c++) acc[c] = 0.0;
            if (live[j])
                for (int t = 0; t < nnz; t++) acc[nz_c[t]] += dat[j][nz_i[t]] * (double)nz_v[t];
            float *dkj = dk + (long)j * ld;
            for (int c = 0; c < d; c++) dkj[c] += (float)acc[c];
        }
    }
}

void snn_attn_bsa_head_backward(int N, int d, const float *q, const float *k, const float *v,
                                int ld, int shift, const float *p, const float *dout, int lddo,
                                float *dq, float *dk, float *dv, float *scratch) {
    if (N <= 0) return;
    SNN_ASSERT(d >= 0);
    if (N <= FAST_N && d <= FAST_D) {
        bsa_backward_fast(N, d, q, k, v, ld, shift, p, dout, lddo, dq, dk, dv, scratch);
        return;
    }
    /* forward: O = P V
     *   dV += P^T dO;  scratch = dP = dO V^T */
    snn_attn_wv_backward(N, d, p, 1.0, v, ld, dout, lddo, dv, scratch);
    /* forward: P = 2^(z - m - r), z = floor(2^-shift A) (STE; m, r constants)
     *   dz = ln2 P (.) dP;  dA = 2^-shift dz */
    const double c = ldexp(M_LN2, -shift);
    for (long t = 0; t < (long)N * N; t++) scratch[t] = (float)(c * (double)p[t] * scratch[t]);
    /* forward: A = Q K^T
     *   dQ += dA K;  dK += dA^T Q */
    snn_attn_qk_backward(N, d, q, k, ld, scratch, dq, dk);
}
