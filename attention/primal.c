/*
 * primal.c: Primal-Attention, one head of one sample, forward and backward, and the KSVD
 * regularisation pieces (formulas in attention/primal.h; research/methods.md section 5).
 *
 * Every product below is a small dense float matrix product, one single-threaded snn_gemm
 * (attention/gemm.h: libxsmm, else OpenBLAS pinned to one thread by sim/layers.c), as PyTorch
 * computes them: the sampled rows of x are gathered once into the cache (X~) so that
 * We = X~^T E is a plain product.
 * Intermediates that PyTorch keeps as float tensors (phi, We, Wr, e, r, de, dWe, dphi) are float
 * here too, so the kernel has PyTorch's structure, not only its formula. Norms and the
 * normalisation's inner products are double sums rounded once.
 *
 * Pure numerics: no I/O, no allocation, no static state.
 */
#include "attention/primal.h"
#include "attention/gemm.h"

#include <math.h>
#include <stdbool.h>

#include "sim/util.h"
#include "sim/vec.h"

/* sum_i a[i] b[i] in double (products of floats are exact in double). */
static inline double dot(const float *a, const float *b, int n) {
    double acc = 0.0;
    for (int i = 0; i < n; i++) acc += (double)a[i] * (double)b[i];
    return acc;
}

/* C [m, n] (= if beta 0, += if beta 1) op(A) op(B) with op(A) [m, k], op(B) [k, n], row-major. */
static void gemm(bool ta, bool tb, int m, int n, int k, const float *A, int lda, const float *B,
                 int ldb, float beta, float *C, int ldc) {
    snn_gemm(ta, tb, m, n, k, 1.0f, A, lda, B, ldb, beta, C, ldc);
}

int snn_primal_num_samples(int N, int s, int rank_multi) {
    SNN_ASSERT(N >= 1 && s >= 1 && rank_multi >= 1);
    const long sm = (long)s * rank_multi;
    return sm < N ? (int)sm : N;
}

void snn_primal_sample_indices(int N, int M, int *idx) {
    SNN_ASSERT(N >= 1 && M >= 1 && M <= N);
    if (M == 1) {  /* torch.linspace with steps = 1 returns start (it never divides by 0) */
        idx[0] = 0;
        return;
    }
    /* torch 1.13 linspace_kernel for int64: start = 0, end = N - 1 (int64), step in double;
     * cpu_serial_kernel_vec runs the vector lambda on two 4-wide vectors per iteration over
     * the first 8 floor(M / 8) elements, Vectorized<int64_t>::arange(base, step) with the base
     * converted to int64 first (truncated), then the scalar lambda on the rest. */
    const double end = (double)(N - 1);
    const double step = end / (double)(M - 1);
    const int half = M / 2, V = M / 8 * 8;
    for (int c0 = 0; c0 < V; c0 += 4) {
        const double b = c0 < half ? step * (double)c0 : end - step * (double)(M - 1 - c0);
        const long long base = (long long)b;
        for (int j = 0; j < 4; j++) idx[c0 + j] = (int)(long long)((double)base + (double)j * step);
    }
    for (int i = V; i < M; i++)
        idx[i] = (int)(long long)(i < half ? step * (double)i : end - step * (double)(M - 1 - i));
}

size_t snn_primal_cache_floats(int N, int d, int s) {
    return 3 * (size_t)N * d + 2 * (size_t)N + 2 * (size_t)d * s + 2 * (size_t)N * s;
}

snn_primal_cache snn_primal_cache_bind(float *buf, int N, int d, int s) {
    snn_primal_cache c;
    c.qn = buf, buf += (size_t)N * d;
    c.kn = buf, buf += (size_t)N * d;
    c.nq = buf, buf += N;
    c.nk = buf, buf += N;
    c.we = buf, buf += (size_t)d * s;
    c.wr = buf, buf += (size_t)d * s;
    c.e = buf, buf += (size_t)N * s;
    c.r = buf, buf += (size_t)N * s;
    c.xs = buf;
    return c;
}

void snn_primal_count(int N, int d, int s, int M, snn_ops *ops) {
    const uint64_t n = (uint64_t)N, dd = (uint64_t)d, ss = (uint64_t)s, m = (uint64_t)M;
    ops->n[SNN_OP_MAC] += 2 * n * dd + 2 * dd * m * ss + 4 * n * dd * ss;
    ops->n[SNN_OP_DIV] += 2 * n * (dd + 1);
    ops->n[SNN_OP_CMP] += 2 * n;
}

/* phi rows: nrm_n = max((float)sqrt(sum_c v_nc^2), eps) (F.normalize's clamp_min), then the
 * float division v_nc / nrm_n, one per element, as F.normalize computes it. */
static inline __attribute__((always_inline)) void normalise_rows(int N, int d, const float *v,
                                                                 int ld, float *phi, float *nrm) {
    for (int n = 0; n < N; n++) {
        const float *vn = v + (long)n * ld;
        float nr = (float)sqrt(dot(vn, vn, d));
        if (!(nr > SNN_PRIMAL_NORM_EPS)) nr = SNN_PRIMAL_NORM_EPS;
        nrm[n] = nr;
        float *pn = phi + (long)n * d;
        for (int c = 0; c < d; c++) pn[c] = vn[c] / nr;
    }
}

SNN_WIDE_FN SNN_VEC_FN void snn_primal_forward(int N, int d, int s, int M, const float *q,
                                               const float *k, int ld, const float *x, int ldx,
                                               const int *idx, const float *E, const float *R,
                                               const float *cw, const float *cb, float *o,
                                               int ldo, const snn_primal_cache *cache,
                                               snn_ops *ops) {
    SNN_ASSERT(N >= 1 && d >= 1 && s >= 1 && M >= 1 && M <= N);
    normalise_rows(N, d, q, ld, cache->qn, cache->nq);
    normalise_rows(N, d, k, ld, cache->kn, cache->nk);

    /* X~ [M, d]: the sampled rows of x;  We = X~^T E, Wr = X~^T R  [d, s] */
    for (int m = 0; m < M; m++)
        for (int c = 0; c < d; c++) cache->xs[(long)m * d + c] = x[(long)idx[m] * ldx + c];
    gemm(true, false, d, s, M, cache->xs, d, E, s, 0.0f, cache->we, s);
    gemm(true, false, d, s, M, cache->xs, d, R, s, 0.0f, cache->wr, s);
    /* e = phi(q) We, r = phi(k) Wr  [N, s] */
    gemm(false, false, N, s, d, cache->qn, d, cache->we, s, 0.0f, cache->e, s);
    gemm(false, false, N, s, d, cache->kn, d, cache->wr, s, 0.0f, cache->r, s);
    /* o = cb + e cw[:, :s]^T + r cw[:, s:]^T */
    for (int n = 0; n < N; n++)
        for (int c = 0; c < d; c++) o[(long)n * ldo + c] = cb[c];
    gemm(false, true, N, d, s, cache->e, s, cw, 2 * s, 1.0f, o, ldo);
    gemm(false, true, N, d, s, cache->r, s, cw + s, 2 * s, 1.0f, o, ldo);
    if (ops) snn_primal_count(N, d, s, M, ops);
}

size_t snn_primal_scratch_floats(int N, int d, int s) {
    return 2 * (size_t)N * s + 2 * (size_t)d * s + 2 * (size_t)N * d;
}

/* Back through phi = v / max(||v||, eps), row by row, given dphi = dY W^T computed here:
 *   dphi [N, d] = dY W^T (float, a tensor in PyTorch),
 *   dv_n += (dphi_n - phi_n <phi_n, dphi_n>) / nrm_n  if nrm_n > eps, else dphi_n / eps. */
static inline __attribute__((always_inline)) void
normalise_backward(int N, int d, int s, const float *phi, const float *nrm, const float *W,
                   const float *dY, float *dv, int ld, float *dphi) {
    gemm(false, true, N, d, s, dY, s, W, s, 0.0f, dphi, d);
    for (int n = 0; n < N; n++) {
        const float *pn = phi + (long)n * d, *dpn = dphi + (long)n * d;
        float *dvn = dv + (long)n * ld;
        const double nr = nrm[n];
        if (nrm[n] > SNN_PRIMAL_NORM_EPS) {
            /* ||v|| = nrm here, and d(v/||v||) = (I - phi phi^T) / ||v|| */
            const double pd = dot(pn, dpn, d);
            for (int c = 0; c < d; c++)
                dvn[c] += (float)(((double)dpn[c] - (double)pn[c] * pd) / nr);
        } else {
            for (int c = 0; c < d; c++) dvn[c] += (float)((double)dpn[c] / nr);
        }
    }
}

SNN_WIDE_FN SNN_VEC_FN void snn_primal_backward(int N, int d, int s, int M, int ldx,
                                                const int *idx, const float *E, const float *R,
                                                const float *cw, const snn_primal_cache *cache,
                                                const float *dout, int lddo, double ksvd_coef,
                                                const float *lambda, float *dq, float *dk,
                                                int ld, float *dx, float *dE, float *dR,
                                                float *dcw, float *dcb, float *scratch) {
    SNN_ASSERT(N >= 1 && d >= 1 && s >= 1 && M >= 1 && M <= N);
    SNN_ASSERT(ksvd_coef == 0.0 || lambda != NULL);
    float *de = scratch, *dr = de + (size_t)N * s;
    float *dwe = dr + (size_t)N * s, *dwr = dwe + (size_t)d * s;
    float *dphi = dwr + (size_t)d * s, *dxs = dphi + (size_t)N * d;
    const int s2 = 2 * s;

    /* o = [e | r] cw^T + cb:  dcb += sum_n dout_n;  dcw[:, :s] += dout^T e, dcw[:, s:] += dout^T r */
    for (int c = 0; c < d; c++) {
        double acc = 0.0;
        for (int n = 0; n < N; n++) acc += (double)dout[(long)n * lddo + c];
        dcb[c] += (float)acc;
    }
    gemm(true, false, d, s, N, dout, lddo, cache->e, s, 1.0f, dcw, s2);
    gemm(true, false, d, s, N, dout, lddo, cache->r, s, 1.0f, dcw + s, s2);
    /* de = dout cw[:, :s], dr = dout cw[:, s:]  [N, s] */
    gemm(false, false, N, s, d, dout, lddo, cw, s2, 0.0f, de, s);
    gemm(false, false, N, s, d, dout, lddo, cw + s, s2, 0.0f, dr, s);
    if (ksvd_coef != 0.0)
        snn_primal_ksvd_score_grad(N, s, lambda, cache->e, cache->r, ksvd_coef, de, dr);

    /* e = phi(q) We:  dWe = phi(q)^T de [d, s];  dphi(q) = de We^T (then through phi) */
    gemm(true, false, d, s, N, cache->qn, d, de, s, 0.0f, dwe, s);
    gemm(true, false, d, s, N, cache->kn, d, dr, s, 0.0f, dwr, s);
    normalise_backward(N, d, s, cache->qn, cache->nq, cache->we, de, dq, ld, dphi);
    normalise_backward(N, d, s, cache->kn, cache->nk, cache->wr, dr, dk, ld, dphi);

    /* We = X~^T E:  dE += X~ dWe, dR += X~ dWr  [M, s];
     *   dX~ = E dWe^T + R dWr^T [M, d], added to the rows idx_m of dx */
    gemm(false, false, M, s, d, cache->xs, d, dwe, s, 1.0f, dE, s);
    gemm(false, false, M, s, d, cache->xs, d, dwr, s, 1.0f, dR, s);
    gemm(false, true, M, d, s, E, s, dwe, s, 0.0f, dxs, d);
    gemm(false, true, M, d, s, R, s, dwr, s, 1.0f, dxs, d);
    for (int m = 0; m < M; m++) {
        float *dxm = dx + (long)idx[m] * ldx;
        const float *g = dxs + (long)m * d;
        for (int c = 0; c < d; c++) dxm[c] += g[c];
    }
}

/* ---- KSVD ----------------------------------------------------------------------------------- */

SNN_WIDE_FN SNN_VEC_FN void snn_primal_ksvd_accum(int N, int s, const float *e, const float *r,
                                                  double *S) {
    for (int n = 0; n < N; n++) {
        const float *en = e + (long)n * s, *rn = r + (long)n * s;
        for (int j = 0; j < s; j++)
            S[j] += (double)en[j] * en[j] + (double)rn[j] * rn[j];
    }
}

double snn_primal_ksvd_energy(int s, const float *lambda, const double *S) {
    double acc = 0.0;
    for (int j = 0; j < s; j++) acc += (double)lambda[j] * lambda[j] * S[j];
    return acc;
}

double snn_primal_ksvd_trace(int h, int M, int s, const float *E, const float *R) {
    return dot(E, R, h * M * s);
}

double snn_primal_ksvd_J(int h, int s, const float *lambda, const double *S, double trace, int B,
                         int N) {
    SNN_ASSERT(h >= 1 && B >= 1 && N >= 1);
    const double energy = snn_primal_ksvd_energy(h * s, lambda, S);
    return energy / (2.0 * B * h * N) - trace / h;
}

double snn_primal_ksvd_loss(int P, const double *J) {
    SNN_ASSERT(P >= 1);
    double acc = 0.0;
    for (int l = 0; l < P; l++) acc += J[l] * J[l];
    return acc / P;
}

double snn_primal_ksvd_dJ(double eta, double J, int P) {
    SNN_ASSERT(P >= 1);
    return 2.0 * eta * J / P;
}

SNN_WIDE_FN SNN_VEC_FN void snn_primal_ksvd_score_grad(int N, int s, const float *lambda,
                                                       const float *e, const float *r,
                                                       double coef, float *de, float *dr) {
    for (int n = 0; n < N; n++)
        for (int j = 0; j < s; j++) {
            const double w = coef * (double)lambda[j] * lambda[j];
            const long t = (long)n * s + j;
            de[t] = (float)((double)de[t] + w * e[t]);
            dr[t] = (float)((double)dr[t] + w * r[t]);
        }
}

void snn_primal_ksvd_lambda_backward(int h, int s, const float *lambda, const double *S, int B,
                                     int N, double g, float *dlambda) {
    const double f = g / ((double)B * h * N);
    for (int t = 0; t < h * s; t++) dlambda[t] += (float)(f * lambda[t] * S[t]);
}

void snn_primal_ksvd_trace_backward(int h, int M, int s, const float *E, const float *R, double g,
                                    float *dE, float *dR) {
    const double f = -g / h;
    for (long t = 0; t < (long)h * M * s; t++) {
        dE[t] += (float)(f * R[t]);
        dR[t] += (float)(f * E[t]);
    }
}
