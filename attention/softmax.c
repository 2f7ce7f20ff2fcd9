/*
 * softmax.c: vanilla softmax attention for training, forward and backward, one head
 * (spec/model.md section 3 `softmax`, research/methods.md section 6). The ANN baseline.
 *
 *   A = Q K^T                                   float, one single-threaded snn_gemm
 *   P_ij = exp((A_ij - m_i) s) (1 / sum_j' exp(...))   m_i = max_j A_ij, s = 1/sqrt(d) > 0
 *   O = P V                                     float, one snn_gemm of the float P
 *
 * The three products of the forward and the four of the backward are dense float GEMMs, what
 * PyTorch runs: snn_gemm (libxsmm's kernels, else OpenBLAS pinned to one thread) does them 5-10x
 * faster than double sums at N = 49, d = 16, and every call is one thread's, so results do not
 * depend on the thread count. Subtracting the maximum of the unscaled row and scaling inside the exponent is the same
 * softmax as softmax(A s) (s > 0 keeps the argmax), with every exponent <= 0: no overflow, and
 * the row sum is >= 1. The row sum is a double sum in a fixed order (row_dot); O is summed from
 * the float P that the backward receives, so the forward is exactly O = P V of that P (up to
 * float rounding).
 *
 * Backward (exact, not surrogate):
 *   O = P V                dV += P^T dO,  dP = dO V^T
 *   P = softmax_rows(S)    dS_ij = P_ij (dP_ij - r_i),  r_i = sum_j dP_ij P_ij (double, row_dot)
 *   S = s A                dA = s dS
 *   A = Q K^T              dQ += dA K,  dK += dA^T Q
 *
 * Pure numerics: no I/O, no allocation, no static state.
 */
#include "attention/ann.h"
#include "attention/gemm.h"

#include <math.h>

#include "sim/util.h"
#include "sim/vec.h"
#include "sim/vexpf.h"

/* The row loops below were serial chains (one max or one double add waiting for the last: a
 * third of the kernel's own time); these take them in lanes the vectoriser keeps in registers. */
enum { ROW_LANES = 8 };
_Static_assert(ROW_LANES == 8, "row_dot adds its lanes in a tree written for 8");

/* max_j x[j] over the x[j] that are not NaN (-INFINITY if none). Maximum is exact, so the lanes
 * give the value a single chain gives. */
static inline float row_max(const float *x, int n) {
    float m[ROW_LANES];
    for (int l = 0; l < ROW_LANES; l++) m[l] = -INFINITY;
    int j = 0;
    for (; j + ROW_LANES <= n; j += ROW_LANES)
        for (int l = 0; l < ROW_LANES; l++) m[l] = x[j + l] > m[l] ? x[j + l] : m[l];
    for (int l = 0; j + l < n; l++) m[l] = x[j + l] > m[l] ? x[j + l] : m[l];
    float r = m[0];
    for (int l = 1; l < ROW_LANES; l++) r = m[l] > r ? m[l] : r;
    return r;
}

/* sum_j x[j] y[j] (y NULL: sum_j x[j]) in double: lane l sums the j = l mod ROW_LANES in j order,
 * then the lanes are added in a fixed tree. The same order on every ISA and thread count. */
static inline double row_dot(const float *x, const float *y, int n) {
    double a[ROW_LANES] = {0};
    int j = 0;
    for (; j + ROW_LANES <= n; j += ROW_LANES)
        for (int l = 0; l < ROW_LANES; l++) a[l] += (double)x[j + l] * (y ? (double)y[j + l] : 1.0);
    for (int l = 0; j + l < n; l++) a[l] += (double)x[j + l] * (y ? (double)y[j + l] : 1.0);
    return ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
}

SNN_WIDE_FN SNN_VEC_FN void snn_attn_softmax_head_train(int N, int d, const float *q,
                                                        const float *k, const float *v, int ld,
                                                        float *o, int ldo, float *p) {
    if (N <= 0) return;
    SNN_ASSERT(d >= 1 && N <= SNN_ATTN_SOFTMAX_MAX_N);
    const float s = (float)(1.0 / sqrt((double)d));
    /* p = A = Q K^T */
    snn_gemm(false, true, N, N, d, 1.0f, q, ld, k, ld, 0.0f, p, N);
    for (int i = 0; i < N; i++) {
        float *pi = p + (long)i * N;
        const float m = row_max(pi, N);
        for (int j = 0; j < N; j++) pi[j] = (pi[j] - m) * s;
    }
    /* p = exp(p) by snn_expf_poly (within 2 ulp of expf, vectorised 16 wide; PyTorch's CPU
     * softmax takes Sleef's vectorised exp, within 1 ulp): exactly rounded exponentials, in
     * double, had cost the kernel twice its present time. Over the whole map at once: row by
     * row, each row's last N mod 16 went through the polynomial as scalars (a quarter of the
     * work at N = 49); the same operations on the same floats, the same bits. */
    for (long t = 0; t < (long)N * N; t++) p[t] = snn_expf_poly(p[t]);
    for (int i = 0; i < N; i++) {
        float *pi = p + (long)i * N;
        const double sum = row_dot(pi, NULL, N);
        /* sum >= 1 (the maximum contributes exp(0) = 1). Times the float reciprocal of the sum,
         * as PyTorch's CPU softmax (x * (1 / sum)): a multiply where a divide cost a third of
         * the row */
        const float inv = 1.0f / (float)sum;
        for (int j = 0; j < N; j++) pi[j] *= inv;
    }
    /* O = P V */
    snn_gemm(false, false, N, d, N, 1.0f, p, N, v, ld, 0.0f, o, ldo);
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
    snn_gemm(true, false, N, d, N, 1.0f, p, N, dout, lddo, 1.0f, dv, ld);
    snn_gemm(false, true, N, N, d, 1.0f, dout, lddo, v, ld, 0.0f, scratch, N);
    /* P = softmax_rows(s A):  dA_ij = s P_ij (dP_ij - sum_j' dP_ij' P_ij'), in place */
    for (int i = 0; i < N; i++) {
        const float *pi = p + (long)i * N;
        float *gi = scratch + (long)i * N;
        const double r = row_dot(gi, pi, N);
        const float rf = (float)r, sf = (float)s;
        for (int j = 0; j < N; j++) gi[j] = sf * (pi[j] * (gi[j] - rf));
    }
    /* A = Q K^T:  dQ += dA K;  dK += dA^T Q */
    snn_gemm(false, false, N, d, N, 1.0f, scratch, N, k, ld, 1.0f, dq, ld);
    snn_gemm(true, false, N, d, N, 1.0f, scratch, N, q, ld, 1.0f, dk, ld);
}

void snn_attn_softmax_count(int N, int d, snn_ops *ops) {
    SNN_ASSERT(N >= 0 && d >= 0);
    const uint64_t nn = (uint64_t)N * (uint64_t)N;
    ops->n[SNN_OP_MAC] += 2 * nn * (uint64_t)d + nn;
    ops->n[SNN_OP_EXP] += nn;
    ops->n[SNN_OP_DIV] += nn;
    ops->n[SNN_OP_CMP] += nn;
}
