/*
 * primal.c: Primal-Attention, one head of one sample, forward and backward, and the KSVD
 * regularisation pieces (formulas in attention/primal.h; research/methods.md section 5).
 *
 * Every product below is a small dense matrix product; they all go through axpy_rows (a row
 * vector times a matrix, double accumulators for up to JBLK columns in vector registers, each
 * output its own sum in order: vectorised across outputs, never within one sum), by way of
 * vecmat or tvec (a dot product per output, against a stack transpose), or through dot when a
 * shape is too large for the stack transpose. Each output element is one double sum rounded
 * once to float;
 * intermediates that PyTorch keeps as float tensors (phi, We, Wr, e, r, de, dWe, dphi) are
 * rounded to float here too, so the kernel has PyTorch's structure, not only its formula.
 *
 * Pure numerics: no I/O, no allocation, no static state.
 */
#include "attention/primal.h"
#include "attention/axpy.h"

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

/* snn_axpy_rows (attention/axpy.h) instantiated once per target clone. */
SNN_WIDE_FN static void axpy_rows(int k, int n, const float *a, long inca, const int *rows,
                                  const float *B, long ldb, double *acc) {
    snn_axpy_rows(k, n, a, inca, rows, B, ldb, acc);
}

/* Output columns per axpy_rows call (its register block). */
enum { JBLK = SNN_AXPY_MAX_N };

/* out[j] (= or +=) sum_i a_i B[i ldb + j] for j < n, i < k (a_i as in axpy_rows). One double
 * sum per output, rounded once (accumulate: the rounded sum is added to out[j]). */
static void vecmat(int k, int n, const float *a, long inca, const int *rows, const float *B,
                   long ldb, float *out, bool accumulate) {
    for (int j0 = 0; j0 < n; j0 += JBLK) {
        const int jn = n - j0 < JBLK ? n - j0 : JBLK;
        double acc[JBLK];
        axpy_rows(k, jn, a, inca, rows, B + j0, ldb, acc);
        float *oj = out + j0;
        if (accumulate)
            for (int j = 0; j < jn; j++) oj[j] += (float)acc[j];
        else
            for (int j = 0; j < jn; j++) oj[j] = (float)acc[j];
    }
}

/* The widest product tvec takes from a stack transpose: a [k, n] float block with k n <= TMAX
 * (64 KiB) and n <= TMAX_N (the double accumulator row); larger shapes take the scalar dots. */
enum { TMAX = 16384, TMAX_N = 256 };

/* bt[j ldbt + c] = b[c ldb + j] for c < n, j < k: b [n, k] transposed into bt [k, n]. */
static void transpose(int n, int k, const float *b, long ldb, float *bt, int ldbt) {
    for (int c = 0; c < n; c++)
        for (int j = 0; j < k; j++) bt[(long)j * ldbt + c] = b[(long)c * ldb + j];
}

/* acc[c] = sum_j x[j] bt[j ldbt + c] for c < n, j < k in order: acc[c] is dot(x, b_c, k) for
 * the b that bt transposes, the same double sum in the same order (so the same bits),
 * vectorised across the outputs c (axpy_rows; x_j == 0 skipped). */
static void tvec(int k, int n, const float *x, const float *bt, int ldbt, double *acc) {
    for (int c0 = 0; c0 < n; c0 += JBLK)
        axpy_rows(k, n - c0 < JBLK ? n - c0 : JBLK, x, 1, NULL, bt + c0, ldbt, acc + c0);
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
    return 2 * (size_t)N * d + 2 * (size_t)N + 2 * (size_t)d * s + 2 * (size_t)N * s;
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
    c.r = buf;
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
static void normalise_rows(int N, int d, const float *v, int ld, float *phi, float *nrm) {
    for (int n = 0; n < N; n++) {
        const float *vn = v + (long)n * ld;
        float nr = (float)sqrt(dot(vn, vn, d));
        if (!(nr > SNN_PRIMAL_NORM_EPS)) nr = SNN_PRIMAL_NORM_EPS;
        nrm[n] = nr;
        float *pn = phi + (long)n * d;
        for (int c = 0; c < d; c++) pn[c] = vn[c] / nr;
    }
}

void snn_primal_forward(int N, int d, int s, int M, const float *q, const float *k, int ld,
                        const float *x, int ldx, const int *idx, const float *E, const float *R,
                        const float *cw, const float *cb, float *o, int ldo,
                        const snn_primal_cache *cache, snn_ops *ops) {
    SNN_ASSERT(N >= 1 && d >= 1 && s >= 1 && M >= 1 && M <= N);
    normalise_rows(N, d, q, ld, cache->qn, cache->nq);
    normalise_rows(N, d, k, ld, cache->kn, cache->nk);

    /* We_cj = sum_m x_{idx_m, c} E_mj, Wr likewise: column c of x gathered at the sampled rows */
    for (int c = 0; c < d; c++) {
        vecmat(M, s, x + c, ldx, idx, E, s, cache->we + (long)c * s, false);
        vecmat(M, s, x + c, ldx, idx, R, s, cache->wr + (long)c * s, false);
    }
    /* e_n = phi(q)_n We, r_n = phi(k)_n Wr */
    for (int n = 0; n < N; n++) {
        vecmat(d, s, cache->qn + (long)n * d, 1, NULL, cache->we, s, cache->e + (long)n * s, false);
        vecmat(d, s, cache->kn + (long)n * d, 1, NULL, cache->wr, s, cache->r + (long)n * s, false);
    }
    /* o_nc = cb_c + sum_j cw_{c, j} e_nj + cw_{c, s + j} r_nj: one sum, rounded once */
    if (d <= TMAX_N && 2 * (long)s * d <= TMAX) {
        float cwt[TMAX]; /* [2s, d]: cw transposed */
        double a1[TMAX_N], a2[TMAX_N];
        transpose(d, 2 * s, cw, 2 * s, cwt, d);
        for (int n = 0; n < N; n++) {
            tvec(s, d, cache->e + (long)n * s, cwt, d, a1);
            tvec(s, d, cache->r + (long)n * s, cwt + (long)s * d, d, a2);
            float *on = o + (long)n * ldo;
            for (int c = 0; c < d; c++) on[c] = (float)((double)cb[c] + a1[c] + a2[c]);
        }
    } else for (int n = 0; n < N; n++) {
        const float *en = cache->e + (long)n * s, *rn = cache->r + (long)n * s;
        float *on = o + (long)n * ldo;
        for (int c = 0; c < d; c++) {
            const float *wc = cw + (long)c * 2 * s;
            on[c] = (float)((double)cb[c] + dot(wc, en, s) + dot(wc + s, rn, s));
        }
    }
    if (ops) snn_primal_count(N, d, s, M, ops);
}

size_t snn_primal_scratch_floats(int N, int d, int s) {
    return 2 * (size_t)N * s + 2 * (size_t)d * s + (size_t)d;
}

/* Back through phi = v / max(||v||, eps), row by row, given dphi = dY W^T computed here:
 *   dphi_nc = sum_j dY_nj W_cj (rounded to float, a tensor in PyTorch),
 *   dv_n += (dphi_n - phi_n <phi_n, dphi_n>) / nrm_n  if nrm_n > eps, else dphi_n / eps. */
static void normalise_backward(int N, int d, int s, const float *phi, const float *nrm,
                               const float *W, const float *dY, float *dv, int ld, float *dphi) {
    const bool fast = d <= TMAX_N && (long)s * d <= TMAX;
    float wt[TMAX]; /* [s, d]: W transposed, for the fast path */
    double acc[TMAX_N];
    if (fast) transpose(d, s, W, s, wt, d);
    for (int n = 0; n < N; n++) {
        const float *dyn = dY + (long)n * s, *pn = phi + (long)n * d;
        if (fast) {
            tvec(s, d, dyn, wt, d, acc);
            for (int c = 0; c < d; c++) dphi[c] = (float)acc[c];
        } else {
            for (int c = 0; c < d; c++) dphi[c] = (float)dot(dyn, W + (long)c * s, s);
        }
        float *dvn = dv + (long)n * ld;
        const double nr = nrm[n];
        if (nrm[n] > SNN_PRIMAL_NORM_EPS) {
            /* ||v|| = nrm here, and d(v/||v||) = (I - phi phi^T) / ||v|| */
            const double pd = dot(pn, dphi, d);
            for (int c = 0; c < d; c++)
                dvn[c] += (float)(((double)dphi[c] - (double)pn[c] * pd) / nr);
        } else {
            for (int c = 0; c < d; c++) dvn[c] += (float)((double)dphi[c] / nr);
        }
    }
}

void snn_primal_backward(int N, int d, int s, int M, const float *x, int ldx, const int *idx,
                         const float *E, const float *R, const float *cw,
                         const snn_primal_cache *cache, const float *dout, int lddo,
                         double ksvd_coef, const float *lambda, float *dq, float *dk, int ld,
                         float *dx, float *dE, float *dR, float *dcw, float *dcb,
                         float *scratch) {
    SNN_ASSERT(N >= 1 && d >= 1 && s >= 1 && M >= 1 && M <= N);
    SNN_ASSERT(ksvd_coef == 0.0 || lambda != NULL);
    float *de = scratch, *dr = de + (size_t)N * s;
    float *dwe = dr + (size_t)N * s, *dwr = dwe + (size_t)d * s;
    float *dphi = dwr + (size_t)d * s;
    const int s2 = 2 * s;

    /* o = [e | r] cw^T + cb:  dcb += sum_n dout_n;  dcw_{c, j} += sum_n dout_nc [e | r]_nj */
    for (int c = 0; c < d; c++) {
        double acc = 0.0;
        for (int n = 0; n < N; n++) acc += (double)dout[(long)n * lddo + c];
        dcb[c] += (float)acc;
        vecmat(N, s, dout + c, lddo, NULL, cache->e, s, dcw + (long)c * s2, true);
        vecmat(N, s, dout + c, lddo, NULL, cache->r, s, dcw + (long)c * s2 + s, true);
    }
    /* de_n = dout_n cw[:, :s], dr_n = dout_n cw[:, s:] */
    for (int n = 0; n < N; n++) {
        vecmat(d, s, dout + (long)n * lddo, 1, NULL, cw, s2, de + (long)n * s, false);
        vecmat(d, s, dout + (long)n * lddo, 1, NULL, cw + s, s2, dr + (long)n * s, false);
    }
    if (ksvd_coef != 0.0)
        snn_primal_ksvd_score_grad(N, s, lambda, cache->e, cache->r, ksvd_coef, de, dr);

    /* e = phi(q) We:  dWe_cj = sum_n phi(q)_nc de_nj;  dphi(q) = de We^T (then through phi) */
    for (int c = 0; c < d; c++) {
        vecmat(N, s, cache->qn + c, d, NULL, de, s, dwe + (long)c * s, false);
        vecmat(N, s, cache->kn + c, d, NULL, dr, s, dwr + (long)c * s, false);
    }
    normalise_backward(N, d, s, cache->qn, cache->nq, cache->we, de, dq, ld, dphi);
    normalise_backward(N, d, s, cache->kn, cache->nk, cache->wr, dr, dk, ld, dphi);

    /* We = X~ E with X~_cm = x_{idx_m, c}:
     *   dE_mj += sum_c x_{idx_m, c} dWe_cj;   dx_{idx_m, c} += sum_j E_mj dWe_cj + R_mj dWr_cj */
    const bool fast = d <= TMAX_N && 2 * (long)s * d <= TMAX;
    float dwt[TMAX]; /* [2s, d]: dWe transposed, then dWr transposed, for the fast path */
    double a1[TMAX_N], a2[TMAX_N];
    if (fast) {
        transpose(d, s, dwe, s, dwt, d);
        transpose(d, s, dwr, s, dwt + (long)s * d, d);
    }
    for (int m = 0; m < M; m++) {
        const float *xm = x + (long)idx[m] * ldx;
        vecmat(d, s, xm, 1, NULL, dwe, s, dE + (long)m * s, true);
        vecmat(d, s, xm, 1, NULL, dwr, s, dR + (long)m * s, true);
        float *dxm = dx + (long)idx[m] * ldx;
        const float *Em = E + (long)m * s, *Rm = R + (long)m * s;
        if (fast) {
            tvec(s, d, Em, dwt, d, a1);
            tvec(s, d, Rm, dwt + (long)s * d, d, a2);
            for (int c = 0; c < d; c++) dxm[c] += (float)(a1[c] + a2[c]);
        } else {
            for (int c = 0; c < d; c++)
                dxm[c] += (float)(dot(Em, dwe + (long)c * s, s) + dot(Rm, dwr + (long)c * s, s));
        }
    }
}

/* ---- KSVD ----------------------------------------------------------------------------------- */

void snn_primal_ksvd_accum(int N, int s, const float *e, const float *r, double *S) {
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

void snn_primal_ksvd_score_grad(int N, int s, const float *lambda, const float *e,
                                const float *r, double coef, float *de, float *dr) {
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
