/*
 * softmax.c: vanilla softmax attention for training, forward and backward, one head
 * (spec/model.md section 3 `softmax`, research/methods.md section 6). The ANN baseline.
 *
 *   A = Q K^T                                   float, one single-threaded sgemm
 *   P_ij = exp((A_ij - m_i) s) / sum_j' exp(...)   m_i = max_j A_ij, s = 1/sqrt(d) > 0
 *   O = P V                                     float, one sgemm of the float P
 *
 * The three products of the forward and the four of the backward are dense float GEMMs, what
 * PyTorch runs: OpenBLAS (pinned to one thread, sim/layers.c) does them 5-10x faster than double
 * sums at N = 49, d = 16, and every call is one thread's, so results do not depend on the thread
 * count. Subtracting the maximum of the unscaled row and scaling inside the exponent is the same
 * softmax as softmax(A s) (s > 0 keeps the argmax), with every exponent <= 0: no overflow, and
 * the row sum is >= 1. The row sum is a double sum in j order; O is summed from the float P that
 * the backward receives, so the forward is exactly O = P V of that P (up to float rounding).
 *
 * Backward (exact, not surrogate):
 *   O = P V                dV += P^T dO,  dP = dO V^T
 *   P = softmax_rows(S)    dS_ij = P_ij (dP_ij - r_i),  r_i = sum_j dP_ij P_ij (double)
 *   S = s A                dA = s dS
 *   A = Q K^T              dQ += dA K,  dK += dA^T Q
 *
 * Pure numerics: no I/O, no allocation, no static state.
 */
#include "attention/ann.h"

#include <cblas.h>
#include <math.h>

#include "sim/util.h"
#include "sim/vec.h"
#include "sim/vexpf.h"

SNN_WIDE_FN SNN_VEC_FN void snn_attn_softmax_head_train(int N, int d, const float *q,
                                                        const float *k, const float *v, int ld,
                                                        float *o, int ldo, float *p) {
    if (N <= 0) return;
    SNN_ASSERT(d >= 1 && N <= SNN_ATTN_SOFTMAX_MAX_N);
    const float s = (float)(1.0 / sqrt((double)d));
    /* p = A = Q K^T */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, N, d, 1.0f, q, ld, k, ld, 0.0f, p, N);
    for (int i = 0; i < N; i++) {
        float *pi = p + (long)i * N;
        float m = -INFINITY;
        for (int j = 0; j < N; j++) m = pi[j] > m ? pi[j] : m;
        /* pi[j] = expf((pi[j] - m) s), vectorised with expf's bits, a stack chunk at a time */
        float arg[SNN_EXPF_CHUNK];
        for (int j0 = 0; j0 < N; j0 += SNN_EXPF_CHUNK) {
            const int jn = N - j0 < SNN_EXPF_CHUNK ? N - j0 : SNN_EXPF_CHUNK;
            for (int j = 0; j < jn; j++) arg[j] = (pi[j0 + j] - m) * s;
            snn_expf_row((size_t)jn, arg, pi + j0);
        }
        double sum = 0.0;
        for (int j = 0; j < N; j++) sum += pi[j];
        /* sum >= 1 (the maximum contributes exp(0) = 1): the divisions are safe */
        const float sf = (float)sum;
        for (int j = 0; j < N; j++) pi[j] /= sf;
    }
    /* O = P V */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, d, N, 1.0f, p, N, v, ld, 0.0f, o,
                ldo);
}

SNN_WIDE_FN SNN_VEC_FN void snn_attn_softmax_head_backward(int N, int d, const float *q,
                                                           const float *k, const float *v, int ld,
                                                           const float *p, const float *dout,
                                                           int lddo, float *dq, float *dk,
                                                           float *dv, float *scratch) {
    if (N <= 0) return;
    SNN_ASSERT(d >= 1);
    const double s = 1.0 / sqrt((double)d);
    /* O = P V:  dV += P^T dO;  scratch = dP = dO V^T */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, d, N, 1.0f, p, N, dout, lddo, 1.0f, dv,
                ld);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, N, d, 1.0f, dout, lddo, v, ld, 0.0f,
                scratch, N);
    /* P = softmax_rows(s A):  dA_ij = s P_ij (dP_ij - sum_j' dP_ij' P_ij'), in place */
    for (int i = 0; i < N; i++) {
        const float *pi = p + (long)i * N;
        float *gi = scratch + (long)i * N;
        double r = 0.0;
        for (int j = 0; j < N; j++) r += (double)gi[j] * (double)pi[j];
        const float rf = (float)r, sf = (float)s;
        for (int j = 0; j < N; j++) gi[j] = sf * (pi[j] * (gi[j] - rf));
    }
    /* A = Q K^T:  dQ += dA K;  dK += dA^T Q */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, d, N, 1.0f, scratch, N, k, ld, 1.0f,
                dq, ld);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, d, N, 1.0f, scratch, N, q, ld, 1.0f,
                dk, ld);
}

void snn_attn_softmax_count(int N, int d, snn_ops *ops) {
    SNN_ASSERT(N >= 0 && d >= 0);
    const uint64_t nn = (uint64_t)N * (uint64_t)N;
    ops->n[SNN_OP_MAC] += 2 * nn * (uint64_t)d + nn;
    ops->n[SNN_OP_EXP] += nn;
    ops->n[SNN_OP_DIV] += nn;
    ops->n[SNN_OP_CMP] += nn;
}
