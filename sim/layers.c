/*
 * layers.c: dense training layers, forward and backward (see layers.h for the contracts).
 *
 * The PyTorch semantics matched, op by op:
 *   linear         F.linear(x, w, b):              y = x w^T + b, w is [out, in]
 *   BatchNorm1d    F.batch_norm(training=True):    batch mean, biased variance to normalise,
 *                                                  unbiased variance (M / (M - 1)) into the
 *                                                  running estimate, running = (1 - m) running
 *                                                  + m batch; eval mode uses running stats
 *   mean pool      x.mean((0, 2)) over [T, B, N, D]
 *   cross-entropy  F.cross_entropy(label_smoothing=e, reduction='mean'):
 *                  (1 - e) NLL + e * mean over classes of -log p, averaged over the batch
 *
 * Precision: float storage, double accumulation wherever a sum over rows or classes is taken
 * (BatchNorm statistics and parameter gradients, bias gradient, pool, log-sum-exp). The matrix
 * products are OpenBLAS sgemm (float accumulation, BLAS's own order).
 *
 * Parallelism (research/style.md 3.8): every loop is `schedule(static)` over a decomposition
 * that depends only on the sizes; each thread owns what it writes; no atomics and no OpenMP
 * reductions. So the bits do not depend on the thread count. BLAS runs single-threaded inside
 * our loops (snn_layers_init).
 */
#include "sim/layers.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

#include <cblas.h>

#include "sim/util.h"

/* BatchNorm channel chunk: one thread sums CH_CHUNK channels over all rows, in row order, so a
 * 64-byte line of each row is read by exactly one thread. */
#define CH_CHUNK 16

/* Below this much work (elements, or multiply-adds for linear) a loop runs on the calling thread
 * alone: a parallel region costs more than it saves, and far more when the machine is
 * oversubscribed. The chunks are the same either way, so this never changes the bits. */
#define PAR_MIN_WORK 32768

void snn_layers_init(void) {
    if (openblas_get_num_threads() != 1) openblas_set_num_threads(1);
}

static int n_chunks(int n, int chunk) { return (n + chunk - 1) / chunk; }

/* ---- linear -------------------------------------------------------------------------------- */

void snn_linear_fwd(float *y, const float *x, const float *w, const float *b, int M, int in,
                    int out) {
    SNN_ASSERT(y && x && w && M >= 0 && in > 0 && out > 0);
    snn_layers_init();
    const int nc = n_chunks(M, SNN_LINEAR_ROW_CHUNK);
    /* Row chunk k computes y[m0:m1, :] = x[m0:m1, :] w^T (+ b broadcast, pre-filled). */
#pragma omp parallel for schedule(static) if ((size_t)M * in * out >= PAR_MIN_WORK)
    for (int k = 0; k < nc; k++) {
        const int m0 = k * SNN_LINEAR_ROW_CHUNK;
        const int mc = M - m0 < SNN_LINEAR_ROW_CHUNK ? M - m0 : SNN_LINEAR_ROW_CHUNK;
        float *yk = y + (size_t)m0 * out;
        if (b) {
            for (int m = 0; m < mc; m++) memcpy(yk + (size_t)m * out, b, (size_t)out * sizeof *b);
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, mc, out, in, 1.0f,
                    x + (size_t)m0 * in, in, w, in, b ? 1.0f : 0.0f, yk, out);
    }
}

void snn_linear_bwd(float *dx, float *dw, float *db, const float *dy, const float *x,
                    const float *w, int M, int in, int out) {
    SNN_ASSERT(dw && dy && x && M >= 0 && in > 0 && out > 0);
    SNN_ASSERT(!dx || w);
    snn_layers_init();
    /* forward: y[m,o] = sum_i x[m,i] w[o,i] + b[o], so
     *   dx[m,i] += sum_o dy[m,o] w[o,i]        (dx = dy w, row chunks: rows are independent)
     *   dw[o,i] += sum_m dy[m,o] x[m,i]        (dw = dy^T x, chunks of output features o)
     *   db[o]   += sum_m dy[m,o]               (same feature chunks, double, rows in order) */
    if (dx) {
        const int nc = n_chunks(M, SNN_LINEAR_ROW_CHUNK);
#pragma omp parallel for schedule(static) if ((size_t)M * in * out >= PAR_MIN_WORK)
        for (int k = 0; k < nc; k++) {
            const int m0 = k * SNN_LINEAR_ROW_CHUNK;
            const int mc = M - m0 < SNN_LINEAR_ROW_CHUNK ? M - m0 : SNN_LINEAR_ROW_CHUNK;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, mc, in, out, 1.0f,
                        dy + (size_t)m0 * out, out, w, in, 1.0f, dx + (size_t)m0 * in, in);
        }
    }
    if (M == 0) return;
    const int nc = n_chunks(out, SNN_LINEAR_COL_CHUNK);
#pragma omp parallel for schedule(static) if ((size_t)M * in * out >= PAR_MIN_WORK)
    for (int k = 0; k < nc; k++) {
        const int o0 = k * SNN_LINEAR_COL_CHUNK;
        const int oc = out - o0 < SNN_LINEAR_COL_CHUNK ? out - o0 : SNN_LINEAR_COL_CHUNK;
        /* dw[o0:o0+oc, :] += dy[:, o0:o0+oc]^T x   (dy column slice, leading dimension out) */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, oc, in, M, 1.0f, dy + o0, out, x,
                    in, 1.0f, dw + (size_t)o0 * in, in);
        if (db) {
            double acc[SNN_LINEAR_COL_CHUNK] = {0};
            for (int m = 0; m < M; m++) {
                const float *row = dy + (size_t)m * out + o0;
                for (int j = 0; j < oc; j++) acc[j] += (double)row[j];
            }
            for (int j = 0; j < oc; j++) db[o0 + j] += (float)acc[j];
        }
    }
}

/* ---- BatchNorm1d --------------------------------------------------------------------------- */

void snn_bn_train_fwd(float *y, float *xhat, float *mean, float *rstd, const float *x,
                      const float *gamma, const float *beta, float *running_mean,
                      float *running_var, int M, int C, float momentum, float eps) {
    SNN_ASSERT(y && xhat && mean && rstd && x && gamma && beta && C > 0);
    SNN_ASSERT(M >= 2); /* PyTorch: "Expected more than 1 value per channel when training" */
    SNN_ASSERT((running_mean == NULL) == (running_var == NULL));
    const int nc = n_chunks(C, CH_CHUNK);
    /* Statistics per channel chunk: two passes in double, rows in order. */
#pragma omp parallel for schedule(static) if ((size_t)M * C >= PAR_MIN_WORK)
    for (int k = 0; k < nc; k++) {
        const int c0 = k * CH_CHUNK;
        const int cc = C - c0 < CH_CHUNK ? C - c0 : CH_CHUNK;
        double s[CH_CHUNK] = {0}, q[CH_CHUNK] = {0};
        for (int m = 0; m < M; m++) {
            const float *row = x + (size_t)m * C + c0;
            for (int j = 0; j < cc; j++) s[j] += (double)row[j];
        }
        for (int j = 0; j < cc; j++) s[j] /= (double)M; /* mean */
        for (int m = 0; m < M; m++) {
            const float *row = x + (size_t)m * C + c0;
            for (int j = 0; j < cc; j++) {
                const double d = (double)row[j] - s[j];
                q[j] += d * d;
            }
        }
        for (int j = 0; j < cc; j++) {
            const int c = c0 + j;
            const double var = q[j] / (double)M; /* biased: normalises */
            mean[c] = (float)s[j];
            rstd[c] = (float)(1.0 / sqrt(var + (double)eps));
            if (running_mean) {
                const double unbiased = q[j] / (double)(M - 1);
                const double mo = (double)momentum;
                running_mean[c] = (float)((1.0 - mo) * (double)running_mean[c] + mo * s[j]);
                running_var[c] = (float)((1.0 - mo) * (double)running_var[c] + mo * unbiased);
            }
        }
    }
    /* Normalise: element-wise, rows are independent. xhat is rounded to float first and y is
     * computed from the stored xhat, so the backward sees exactly the forward's xhat. */
#pragma omp parallel for schedule(static) if ((size_t)M * C >= PAR_MIN_WORK)
    for (int m = 0; m < M; m++) {
        const float *xm = x + (size_t)m * C;
        float *hm = xhat + (size_t)m * C, *ym = y + (size_t)m * C;
        for (int c = 0; c < C; c++) {
            hm[c] = (float)(((double)xm[c] - (double)mean[c]) * (double)rstd[c]);
            ym[c] = gamma[c] * hm[c] + beta[c];
        }
    }
}

void snn_bn_train_bwd(float *dx, float *dgamma, float *dbeta, const float *dy, const float *xhat,
                      const float *rstd, const float *gamma, int M, int C) {
    SNN_ASSERT(dgamma && dbeta && dy && xhat && rstd && gamma && M >= 1 && C > 0);
    /* forward: xhat = (x - mean) rstd with mean, rstd functions of the whole column;
     *          y = gamma xhat + beta. With g = dy gamma (d loss / d xhat):
     *   dx = rstd (g - mean_m(g) - xhat mean_m(g xhat))
     *      = gamma rstd (dy - sum_m(dy) / M - xhat sum_m(dy xhat) / M)
     * Each thread owns a chunk of channels (their dgamma, dbeta and dx columns): column sums
     * in double, rows in order, then the chunk's dx columns. The dx coefficients use this
     * call's sums, not the accumulated dgamma/dbeta. */
    const int nc = n_chunks(C, CH_CHUNK);
#pragma omp parallel for schedule(static) if ((size_t)M * C >= PAR_MIN_WORK)
    for (int k = 0; k < nc; k++) {
        const int c0 = k * CH_CHUNK;
        const int cc = C - c0 < CH_CHUNK ? C - c0 : CH_CHUNK;
        double sd[CH_CHUNK] = {0}, sdh[CH_CHUNK] = {0};
        for (int m = 0; m < M; m++) {
            const float *dym = dy + (size_t)m * C + c0, *hm = xhat + (size_t)m * C + c0;
            for (int j = 0; j < cc; j++) {
                sd[j] += (double)dym[j];
                sdh[j] += (double)dym[j] * (double)hm[j];
            }
        }
        double g[CH_CHUNK], a[CH_CHUNK], bh[CH_CHUNK];
        for (int j = 0; j < cc; j++) {
            dbeta[c0 + j] += (float)sd[j];
            dgamma[c0 + j] += (float)sdh[j];
            g[j] = (double)gamma[c0 + j] * (double)rstd[c0 + j];
            a[j] = sd[j] / (double)M;
            bh[j] = sdh[j] / (double)M;
        }
        if (!dx) continue;
        for (int m = 0; m < M; m++) {
            const float *dym = dy + (size_t)m * C + c0, *hm = xhat + (size_t)m * C + c0;
            float *dxm = dx + (size_t)m * C + c0;
            for (int j = 0; j < cc; j++)
                dxm[j] += (float)(g[j] * ((double)dym[j] - a[j] - (double)hm[j] * bh[j]));
        }
    }
}

void snn_bn_eval_fwd(float *y, const float *x, const float *gamma, const float *beta,
                     const float *running_mean, const float *running_var, int M, int C,
                     float eps) {
    SNN_ASSERT(y && x && gamma && beta && running_mean && running_var && M >= 0 && C > 0);
#pragma omp parallel for schedule(static) if ((size_t)M * C >= PAR_MIN_WORK)
    for (int m = 0; m < M; m++) {
        const float *xm = x + (size_t)m * C;
        float *ym = y + (size_t)m * C;
        for (int c = 0; c < C; c++) {
            const double scale = (double)gamma[c] / sqrt((double)running_var[c] + (double)eps);
            ym[c] = (float)(((double)xm[c] - (double)running_mean[c]) * scale + (double)beta[c]);
        }
    }
}

/* ---- mean pool ----------------------------------------------------------------------------- */

void snn_meanpool_fwd(float *y, const float *x, int T, int B, int N, int D) {
    SNN_ASSERT(y && x && T > 0 && B >= 0 && N > 0 && D > 0);
    const double inv = 1.0 / ((double)T * (double)N);
    /* Each thread owns whole rows y[b, :]; the sum runs over t, then n, in order. */
#pragma omp parallel for schedule(static) if ((size_t)T * B * N * D >= PAR_MIN_WORK)
    for (int b = 0; b < B; b++) {
        float *yb = y + (size_t)b * D;
        for (int d0 = 0; d0 < D; d0 += CH_CHUNK) {
            const int dc = D - d0 < CH_CHUNK ? D - d0 : CH_CHUNK;
            double acc[CH_CHUNK] = {0};
            for (int t = 0; t < T; t++) {
                for (int n = 0; n < N; n++) {
                    const float *row = x + (((size_t)t * B + b) * N + n) * D + d0;
                    for (int j = 0; j < dc; j++) acc[j] += (double)row[j];
                }
            }
            for (int j = 0; j < dc; j++) yb[d0 + j] = (float)(acc[j] * inv);
        }
    }
}

void snn_meanpool_bwd(float *dx, const float *dy, int T, int B, int N, int D) {
    SNN_ASSERT(dx && dy && T > 0 && B >= 0 && N > 0 && D > 0);
    /* forward: y[b,d] = 1/(T N) sum_t sum_n x[t,b,n,d], so dx[t,b,n,d] += dy[b,d] / (T N). */
    const double inv = 1.0 / ((double)T * (double)N);
    const int rows = T * B * N;
#pragma omp parallel for schedule(static) if ((size_t)T * B * N * D >= PAR_MIN_WORK)
    for (int r = 0; r < rows; r++) {
        const int b = (r / N) % B;
        const float *dyb = dy + (size_t)b * D;
        float *dxr = dx + (size_t)r * D;
        for (int d = 0; d < D; d++) dxr[d] += (float)((double)dyb[d] * inv);
    }
}

/* ---- cross-entropy with label smoothing ---------------------------------------------------- */

float snn_cross_entropy_fwd(float *probs, const float *logits, const int32_t *labels, int B,
                            int C, float smoothing) {
    SNN_ASSERT(probs && logits && labels && B > 0 && C > 0);
    SNN_ASSERT(smoothing >= 0.0f && smoothing < 1.0f);
    const double e = (double)smoothing;
    double total = 0.0; /* batch rows in order: serial (B is small) */
    for (int b = 0; b < B; b++) {
        const float *l = logits + (size_t)b * C;
        float *p = probs + (size_t)b * C;
        const int32_t y = labels[b];
        SNN_ASSERT(y >= 0 && y < C);
        double mx = (double)l[0];
        for (int c = 1; c < C; c++)
            if ((double)l[c] > mx) mx = (double)l[c];
        double z = 0.0;
        for (int c = 0; c < C; c++) z += exp((double)l[c] - mx);
        const double lse = mx + log(z); /* -log p_c = lse - l_c */
        double sum_nll = 0.0;
        for (int c = 0; c < C; c++) {
            p[c] = (float)(exp((double)l[c] - mx) / z);
            sum_nll += lse - (double)l[c];
        }
        total += (1.0 - e) * (lse - (double)l[y]) + e * sum_nll / (double)C;
    }
    return (float)(total / (double)B);
}

void snn_cross_entropy_bwd(float *dlogits, const float *probs, const int32_t *labels, int B,
                           int C, float smoothing, float scale) {
    SNN_ASSERT(dlogits && probs && labels && B > 0 && C > 0);
    /* forward: loss = 1/B sum_b [(1 - e)(lse_b - l[b,y_b]) + e/C sum_c (lse_b - l[b,c])];
     * d lse_b / d l[b,c] = p[b,c], so
     *     d loss / d l[b,c] = (p[b,c] - (1 - e) [c == y_b] - e / C) / B. */
    const double e = (double)smoothing, k = (double)scale / (double)B;
    for (int b = 0; b < B; b++) {
        const float *p = probs + (size_t)b * C;
        float *d = dlogits + (size_t)b * C;
        const int32_t y = labels[b];
        SNN_ASSERT(y >= 0 && y < C);
        for (int c = 0; c < C; c++) {
            const double target = (c == y ? 1.0 - e : 0.0) + e / (double)C;
            d[c] += (float)(k * ((double)p[c] - target));
        }
    }
}
