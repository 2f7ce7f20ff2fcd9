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
 * Pure numerics: no I/O, no allocation (one row of exponents on the stack), no static state.
 */
#include "attention/attention.h"

#include <math.h>

#include "sim/util.h"

enum { CBLK = 64 };  /* channels per block of double accumulators */

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

void snn_attn_bsa_head_backward(int N, int d, const float *q, const float *k, const float *v,
                                int ld, int shift, const float *p, const float *dout, int lddo,
                                float *dq, float *dk, float *dv, float *scratch) {
    if (N <= 0) return;
    SNN_ASSERT(d >= 0);
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
