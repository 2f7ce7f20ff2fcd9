/*
 * softmax.c: vanilla softmax attention for training, forward and backward, one head
 * (spec/model.md section 3 `softmax`, research/methods.md section 6). The ANN baseline.
 *
 *   A = Q K^T                                   double sums over channels
 *   P_ij = exp((A_ij - m_i) s) / sum_j' exp(...)   m_i = max_j A_ij, s = 1/sqrt(d) > 0
 *   O = P V                                     double sums over keys of the float P
 *
 * Subtracting the maximum of the unscaled row and scaling inside the exponent is the same
 * softmax as softmax(A s) (s > 0 keeps the argmax), with every exponent <= 0: no overflow, and
 * the row sum is >= 1. A row of A, its exponentials and their sum stay in double (a stack row of
 * SNN_ATTN_SOFTMAX_MAX_N doubles), so each P_ij is rounded to float exactly once; O is summed
 * from that float P, so the forward is exactly O = P V with the P the backward receives.
 *
 * Backward (exact, not surrogate):
 *   O = P V                dV += P^T dO,  dP = dO V^T           (snn_attn_wv_backward)
 *   P = softmax_rows(S)    dS_ij = P_ij (dP_ij - r_i),  r_i = sum_j dP_ij P_ij
 *   S = s A                dA = s dS
 *   A = Q K^T              dQ += dA K,  dK += dA^T Q            (snn_attn_qk_backward)
 * dP is rounded to float once by snn_attn_wv_backward (it lands in the float scratch), r_i and
 * dA_ij are formed in double from it and dA rounded once more: two float roundings on the way to
 * dQ, dK, relative 1e-7 each, far below what float training notices.
 *
 * Pure numerics: no I/O, no allocation (a fixed stack row and a 64 KiB stack transpose of K), no
 * static state.
 */
#include "attention/ann.h"
#include "attention/attention.h"
#include "attention/axpy.h"

#include <math.h>
#include <stdbool.h>

#include "sim/util.h"
#include "sim/vec.h"

/* sum_c a[c] b[c] in double (products of floats are exact in double). */
static inline double dot(const float *a, const float *b, int d) {
    double acc = 0.0;
    for (int c = 0; c < d; c++) acc += (double)a[c] * (double)b[c];
    return acc;
}

/* Keys per snn_axpy_rows call (its register block), and the stack transpose of K: all of it,
 * [d, N], when d N <= KT_FLOATS (64 KiB), else one [d, SJ] block at a time (d <= KT_FLOATS / SJ);
 * wider heads take the scalar dots. */
enum { SJ = SNN_AXPY_MAX_N, KT_FLOATS = 16384 };

SNN_WIDE_FN SNN_VEC_FN void snn_attn_softmax_head_train(int N, int d, const float *q,
                                                        const float *k, const float *v, int ld,
                                                        float *o, int ldo, float *p) {
    if (N <= 0) return;
    SNN_ASSERT(d >= 1 && N <= SNN_ATTN_SOFTMAX_MAX_N);
    const double s = 1.0 / sqrt((double)d);
    double row[SNN_ATTN_SOFTMAX_MAX_N];
    /* A = Q K^T into p as float would round twice: the scores of a row stay in double.
     * row[j] = dot(q_i, k_j, d) from K transposed: each lane is one key's double sum over c in
     * order, the same bits as dot (q_ic == 0 skipped: adds of +-0 change nothing), vectorised
     * across keys. */
    float kt[KT_FLOATS]; /* [d, ldt]: K (whole) or a block of SJ keys of it, transposed */
    const bool whole = (long)d * N <= KT_FLOATS, blocked = !whole && d * SJ <= KT_FLOATS;
    const int ldt = whole ? N : SJ;
    if (whole)
        for (int j = 0; j < N; j++)
            for (int c = 0; c < d; c++) kt[(long)c * N + j] = k[(long)j * ld + c];
    for (int i = 0; i < N; i++) {
        const float *qi = q + (long)i * ld;
        double m = -INFINITY;
        if (whole || blocked) {
            for (int j0 = 0; j0 < N; j0 += SJ) {
                const int jn = N - j0 < SJ ? N - j0 : SJ;
                if (blocked)
                    for (int j = 0; j < jn; j++)
                        for (int c = 0; c < d; c++) kt[c * SJ + j] = k[(long)(j0 + j) * ld + c];
                snn_axpy_rows(d, jn, qi, 1, NULL, whole ? kt + j0 : kt, ldt, row + j0);
            }
            for (int j = 0; j < N; j++)
                if (row[j] > m) m = row[j];
        } else {
            for (int j = 0; j < N; j++) {
                row[j] = dot(qi, k + (long)j * ld, d);
                if (row[j] > m) m = row[j];
            }
        }
        double sum = 0.0;
        for (int j = 0; j < N; j++) {
            row[j] = exp((row[j] - m) * s);
            sum += row[j];
        }
        /* sum >= 1 (the maximum contributes exp(0) = 1): the divisions are safe */
        float *pi = p + (long)i * N;
        for (int j = 0; j < N; j++) pi[j] = (float)(row[j] / sum);
    }

    /* O = P V:  o_ic = sum_j p_ij v_jc, double accumulators in j order, rounded once (a
     * scale of 1 changes no bit; underflowed weights are skipped, adding +0 is nothing) */
    snn_attn_wv_forward(N, d, p, v, ld, 1.0f, o, ldo);
}

SNN_WIDE_FN SNN_VEC_FN void snn_attn_softmax_head_backward(int N, int d, const float *q, const float *k, const float *v,
                                    int ld, const float *p, const float *dout, int lddo,
                                    float *dq, float *dk, float *dv, float *scratch) {
    if (N <= 0) return;
    SNN_ASSERT(d >= 1);
    const double s = 1.0 / sqrt((double)d);
    /* O = P V:  dV += P^T dO;  scratch = dP = dO V^T */
    snn_attn_wv_backward(N, d, p, 1.0, v, ld, dout, lddo, dv, scratch);
    /* P = softmax_rows(s A):  dA_ij = s P_ij (dP_ij - sum_j' dP_ij' P_ij'), in place */
    for (int i = 0; i < N; i++) {
        const float *pi = p + (long)i * N;
        float *gi = scratch + (long)i * N;
        double r = 0.0;
        for (int j = 0; j < N; j++) r += (double)gi[j] * (double)pi[j];
        for (int j = 0; j < N; j++) gi[j] = (float)(s * ((double)pi[j] * ((double)gi[j] - r)));
    }
    /* A = Q K^T:  dQ += dA K;  dK += dA^T Q */
    snn_attn_qk_backward(N, d, q, k, ld, scratch, dq, dk);
}

void snn_attn_softmax_count(int N, int d, snn_ops *ops) {
    SNN_ASSERT(N >= 0 && d >= 0);
    const uint64_t nn = (uint64_t)N * (uint64_t)N;
    ops->n[SNN_OP_MAC] += 2 * nn * (uint64_t)d + nn;
    ops->n[SNN_OP_EXP] += nn;
    ops->n[SNN_OP_DIV] += nn;
    ops->n[SNN_OP_CMP] += nn;
}
