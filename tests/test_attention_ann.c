/*
 * test_attention_ann.c: the ANN attention baselines' training kernels (attention/softmax.c,
 * attention/cat.c; spec/model.md section 3 `softmax` and `cat`, research/methods.md 4 and 6)
 * against naive double references, the direct O(N^2) CAT, finite differences and FFTW's own
 * operation counts.
 *
 *   softmax: P and O == a naive double evaluation (rows of P sum to 1, also with logits large
 *     enough to overflow exp without the max subtraction); backward == the documented formulas in
 *     double (accumulates, stays in the head's columns); central differences of every q, k, v
 *     entry.
 *   CAT: forward == snn_attn_cat_head_direct (and a double loop) for N = 49, 64, 1, 2, 7, 3, 12
 *     with ld > d, a nonzero head offset, a strided g; the convention test vector of methods.md
 *     4.1; backward == a direct O(N^2) double evaluation; central differences of every g and v
 *     entry; the backward accumulates (twice gives exactly 2x) and writes nothing outside the head;
 *     one plan used by two threads at once (one with scratch that is only 8-byte aligned) gives
 *     the sequential bits.
 *   op counts: the softmax formula; CAT's count from FFTW's own numbers (recomputed from the
 *     test's own plans), exact literals for N = 1 and 2, and N log N growth (N = 64 vs 4096).
 *
 * Tolerances (why):
 *   softmax P: relative, a float error bound per row (p_tolerance: the float scores' rounding
 *     moves exp's argument by about d 2^-24 s max_j sum_c |q_ic k_jc|; 1e-6 + 1e-12 absolute
 *     for small scores and underflowed entries; at amp 40 the bound is ~1e-3, the observed error
 *     ~1e-5, as float PyTorch would have). Row sums of the float P: within 1e-6 of 1 (each entry
 *     is rounded once, the row sum once).
 *   softmax O: (row P tolerance + (N + 2) 2^-24) of max|V| (the float P V sgemm's own rounding).
 *   softmax backward vs reference: relative 1e-5 plus 1e-6 of the largest |gradient| of the
 *     matrix (the kernel rounds dP to float before dP - r, a cancellation: its error is relative
 *     to |dP|, not to the difference; and dA is rounded once more).
 *   CAT forward vs direct: 1e-6 of max|V| (|O| <= max|V| since z sums to 1; the double FFT's error
 *     is ~1e-15 of that, so the two differ by float rounding, about one ulp; the worst is printed).
 *   CAT backward vs direct: 1e-6 of the largest |reference| of each gradient, plus 1e-7 (the
 *     accumulation into the prefilled 0.25 rounds once more).
 *   Finite differences, loss L = sum r_ic o_ic in double with fixed random r: eps 1e-2, pass if
 *     |analytic - numeric| < 5e-5 or relative < 1e-3. Truncation error of a central difference is
 *     eps^2/6 |L'''| (~1e-6 here: softmax derivatives of inputs in [-1, 1]); the noise is o's float
 *     rounding, up to ~6e-8 per output summed over the N d outputs one entry touches, divided by
 *     2 eps: ~1e-5 at worst for these sizes. Observed: largest |difference| ~5e-6, largest relative
 *     error among |gradient| >= 1e-2 ~2e-4 (both printed).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fftw3.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attention/ann.h"
#include "attention/attention.h"
#include "attention/gemm.h"
#include "sim/rng.h"
#include "tests/testutil.h"

/* ---- helpers ------------------------------------------------------------------------------ */

typedef struct trng {
    uint64_t seed, ctr;
} trng;

static double trng_unif(trng *r) {
    return (double)(snn_rng_u64(r->seed, 17, r->ctr++) >> 11) * 0x1p-53;
}

static const float JUNK = 77.0f;       /* input columns outside the head: must never be read */
static const float SENTINEL = -555.0f; /* output columns outside the head: never written */

/* [rows, ld] float matrix: columns [off, off + d) uniform in [-amp, amp], the others JUNK. */
static void fill(trng *r, float *m, int rows, int ld, int off, int d, double amp) {
    for (int i = 0; i < rows; i++)
        for (int c = 0; c < ld; c++)
            m[(size_t)i * ld + c] =
                (c >= off && c < off + d) ? (float)(amp * (2.0 * trng_unif(r) - 1.0)) : JUNK;
}

static void set_all(float *m, size_t n, float val) {
    for (size_t t = 0; t < n; t++) m[t] = val;
}

static void set_nan(double *m, size_t n) {
    for (size_t t = 0; t < n; t++) m[t] = NAN;
}

/* In-head columns get `in`, the others SENTINEL. */
static void prefill(float *m, int rows, int ld, int off, int d, float in) {
    for (int i = 0; i < rows; i++)
        for (int c = 0; c < ld; c++)
            m[(size_t)i * ld + c] = (c >= off && c < off + d) ? in : SENTINEL;
}

static double max_abs_head(const float *m, int rows, int ld, int off, int d) {
    double mx = 0.0;
    for (int i = 0; i < rows; i++)
        for (int c = 0; c < d; c++) mx = fmax(mx, fabs((double)m[(size_t)i * ld + off + c]));
    return mx;
}

static double max_abs(const double *x, size_t n, double minus) {
    double mx = 0.0;
    for (size_t t = 0; t < n; t++) mx = fmax(mx, fabs(x[t] - minus));
    return mx;
}

/* Checks got[i * ld + off + c] against want[i * d + c] within atol + rtol |want|, and that every
 * column outside [off, off + d) still holds `outside`. Returns the largest |difference|. */
static double check_head(const float *got, int rows, int ld, int off, int d, const double *want,
                         double atol, double rtol, float outside, const char *label) {
    double worst = 0.0;
    for (int i = 0; i < rows; i++)
        for (int c = 0; c < ld; c++) {
            const double g = got[(size_t)i * ld + c];
            if (c < off || c >= off + d) {
                if (g != outside)
                    fail_msg("%s: row %d column %d outside the head written", label, i, c);
                continue;
            }
            const double w = want[(size_t)i * d + (c - off)];
            const double diff = fabs(g - w);
            if (!(diff <= atol + rtol * fabs(w)))
                fail_msg("%s[%d][%d] = %.9g, reference %.9g (atol %.3g)", label, i, c - off, g, w,
                         atol);
            worst = fmax(worst, diff);
        }
    return worst;
}

/* ---- softmax: references ------------------------------------------------------------------- */

/* Naive double softmax attention: S = Q K^T / sqrt(d) (scaled first), P = softmax_rows(S),
 * O = P V with the double P. P [N * N], O [N * d]. Returns max |S|. */
static double softmax_ref(int N, int d, const float *q, const float *k, const float *v, int ld,
                        double *P, double *O) {
    const double s = 1.0 / sqrt((double)d);
    double smax = 0.0;
    for (int i = 0; i < N; i++) {
        double *Pi = P + (size_t)i * N, m = -INFINITY, sum = 0.0;
        for (int j = 0; j < N; j++) {
            double a = 0.0;
            for (int c = 0; c < d; c++) a += (double)q[(size_t)i * ld + c] * k[(size_t)j * ld + c];
            Pi[j] = a * s;
            m = fmax(m, Pi[j]);
            smax = fmax(smax, fabs(Pi[j]));
        }
        for (int j = 0; j < N; j++) sum += Pi[j] = exp(Pi[j] - m);
        for (int j = 0; j < N; j++) Pi[j] /= sum;
        for (int c = 0; c < d; c++) {
            double acc = 0.0;
            for (int j = 0; j < N; j++) acc += Pi[j] * v[(size_t)j * ld + c];
            O[(size_t)i * d + c] = acc;
        }
    }
    return smax;
}

/* The backward's formulas in double at the float P: pre + the gradient for dq, dk, dv. */
static void softmax_backward_ref(int N, int d, const float *q, const float *k, const float *v,
                                 int ld, const float *p, const float *dout, int lddo, double pre,
                                 double *rq, double *rk, double *rv) {
    const double s = 1.0 / sqrt((double)d);
    double *dA = malloc((size_t)N * N * sizeof *dA);
    for (int i = 0; i < N; i++) {
        double r = 0.0;
        for (int j = 0; j < N; j++) {
            double dp = 0.0;
            for (int c = 0; c < d; c++)
                dp += (double)dout[(size_t)i * lddo + c] * v[(size_t)j * ld + c];
            dA[(size_t)i * N + j] = dp;
            r += dp * p[(size_t)i * N + j];
        }
        for (int j = 0; j < N; j++)
            dA[(size_t)i * N + j] = s * p[(size_t)i * N + j] * (dA[(size_t)i * N + j] - r);
    }
    for (int a = 0; a < N; a++)
        for (int c = 0; c < d; c++) {
            double av = 0.0, aq = 0.0, ak = 0.0;
            for (int b = 0; b < N; b++) {
                av += (double)p[(size_t)b * N + a] * dout[(size_t)b * lddo + c];
                aq += dA[(size_t)a * N + b] * k[(size_t)b * ld + c];
                ak += dA[(size_t)b * N + a] * q[(size_t)b * ld + c];
            }
            rv[(size_t)a * d + c] = pre + av;
            rq[(size_t)a * d + c] = pre + aq;
            rk[(size_t)a * d + c] = pre + ak;
        }
    free(dA);
}

static const int SM_SIZES[][2] = {{1, 1}, {2, 3}, {5, 8}, {17, 3}, {16, 16}, {64, 64}, {9, 70}};
enum { N_SM_SIZES = sizeof SM_SIZES / sizeof SM_SIZES[0] };

/* Relative tolerance of row i of the kernel's P against the double reference. The kernel forms
 * A = Q K^T in float (sgemm, FMA or not): |dA_ij| <= (d + 1) u sum_c |q_ic k_jc| with u = 2^-24;
 * exp's argument (A_ij - m_i) s then moves by at most s (|dA_ij| + |dA_im|) plus two roundings of
 * the argument, 2 u |argument|; P_ij = e_ij / sum moves by that relative error twice (its own
 * exponential and the row sum's), plus 4 u for expf, the sum and the division. Bounded over the
 * row by its largest sum_c |q_ic k_jc| = G_i: rel_i = 2 (2 s (d + 1) u G_i + 2 u s 2 G_i) + 4 u,
 * plus 1e-6 of slack for exp's own error against libm's double exp. */
static double p_tolerance(int N, int d, const float *q, const float *k, int ld, int i) {
    const double u = 0x1p-24, s = 1.0 / sqrt((double)d);
    double G = 0.0;
    for (int j = 0; j < N; j++) {
        double g = 0.0;
        for (int c = 0; c < d; c++) g += fabs((double)q[(size_t)i * ld + c] * k[(size_t)j * ld + c]);
        G = fmax(G, g);
    }
    return 2.0 * (2.0 * s * (d + 1) * u * G + 4.0 * u * s * G) + 4.0 * u + 1e-6;
}

/* ---- softmax: forward ---------------------------------------------------------------------- */

static void test_softmax_forward_reference(void **state) {
    (void)state;
    double worst_o = 0.0, worst_score = 0.0;
    for (int sz = 0; sz < N_SM_SIZES; sz++)
        for (int big = 0; big < 2; big++) {
            const int N = SM_SIZES[sz][0], d = SM_SIZES[sz][1];
            const int ld = 2 * d + 1, off = d, ldo = d + 2;
            /* amp 40: scaled scores of several hundreds to thousands, beyond exp's overflow at
             * 709 without the max subtraction (asserted below) */
            const double amp = big ? 40.0 : 1.0;
            const size_t nm = (size_t)N * ld, nn = (size_t)N * N;
            float *q = malloc(nm * sizeof *q), *k = malloc(nm * sizeof *k);
            float *v = malloc(nm * sizeof *v), *o = malloc((size_t)N * ldo * sizeof *o);
            float *p = malloc(nn * sizeof *p);
            double *P = malloc(nn * sizeof *P), *O = malloc((size_t)N * d * sizeof *O);
            trng r = {(uint64_t)(100 + 2 * sz + big), 0};
            fill(&r, q, N, ld, off, d, amp);
            fill(&r, k, N, ld, off, d, amp);
            fill(&r, v, N, ld, off, d, 1.0);
            set_all(o, (size_t)N * ldo, SENTINEL);
            /* o's last two columns lie outside the head (ldo = d + 2): check_head sees them */
            snn_attn_softmax_head_train(N, d, q + off, k + off, v + off, ld, o, ldo, p);
            const double smax = softmax_ref(N, d, q + off, k + off, v + off, ld, P, O);
            if (big) worst_score = fmax(worst_score, smax);
            double worst_rel = 0.0; /* largest relative P tolerance of the head */
            for (int i = 0; i < N; i++) {
                double sum = 0.0, pmin = INFINITY, pmax = -INFINITY;
                const double rel = p_tolerance(N, d, q + off, k + off, ld, i);
                worst_rel = fmax(worst_rel, rel);
                for (int j = 0; j < N; j++) {
                    const double got = p[(size_t)i * N + j], want = P[(size_t)i * N + j];
                    if (!(fabs(got - want) <= 1e-12 + rel * want))
                        fail_msg("softmax N %d d %d amp %g: P[%d][%d] = %.9g, reference %.9g", N, d,
                                 amp, i, j, got, want);
                    sum += got, pmin = fmin(pmin, got), pmax = fmax(pmax, got);
                }
                if (!(fabs(sum - 1.0) <= 1e-6)) fail_msg("softmax row %d sums to %.12g", i, sum);
                /* random real scores: the rows are not uniform (else P could be anything 1/N) */
                if (N > 1) assert_true(pmax > pmin);
            }
            const double vmax = max_abs_head(v, N, ld, off, d);
            const double w =
                check_head(o, N, ldo, 0, d, O, (worst_rel + (N + 2) * 0x1p-24) * vmax, 0.0,
                           SENTINEL, "softmax O");
            worst_o = fmax(worst_o, w / vmax);
            free(q), free(k), free(v), free(o), free(p), free(P), free(O);
        }
    print_message("softmax forward: max |O - reference| / max|V| = %.2e; largest scaled score "
                  "%.0f\n", worst_o, worst_score);
    assert_true(worst_score > 1000.0); /* exp(1000) overflows: the max subtraction was needed */
}

/* ---- shared products (attention/ssa_train.c): bit-exact against scalar loops --------------- */

/* Each output one double sum in order, rounded once: the loops the vectorised kernels replace.
 * Inputs carry zeros (spike-like sparsity) so the zero skips are exercised. */
static void fill_sparse(trng *r, float *m, size_t n) {
    for (size_t t = 0; t < n; t++) {
        const double u = trng_unif(r);
        m[t] = u < 0.4 ? 0.0f : (float)(2.0 * trng_unif(r) - 1.0);
    }
}

static void test_shared_products_bit_exact(void **state) {
    (void)state;
    static const int NS[] = {1, 7, 49, 67}, DS[] = {1, 5, 16, 33, 70, 300};
    for (size_t a = 0; a < sizeof NS / sizeof NS[0]; a++)
        for (size_t b = 0; b < sizeof DS / sizeof DS[0]; b++) {
            const int N = NS[a], d = DS[b], ld = d + 2;
            const size_t nm = (size_t)N * ld, nn = (size_t)N * N;
            float *q = malloc(nm * sizeof *q), *k = malloc(nm * sizeof *k);
            float *v = malloc(nm * sizeof *v), *w = malloc(nn * sizeof *w);
            float *x1 = malloc(nm * sizeof *x1), *x2 = malloc(nm * sizeof *x2);
            float *g1 = malloc(nn * sizeof *g1), *g2 = malloc(nn * sizeof *g2);
            trng r = {(uint64_t)(700 + 10 * a + b), 0};
            fill_sparse(&r, q, nm), fill_sparse(&r, k, nm), fill_sparse(&r, v, nm);
            fill_sparse(&r, w, nn);
            /* gram: g = q k^T */
            snn_attn_gram(N, N, d, q, ld, k, ld, g1, N);
            for (int i = 0; i < N; i++)
                for (int j = 0; j < N; j++) {
                    double acc = 0.0;
                    for (int c = 0; c < d; c++)
                        acc += (double)q[(size_t)i * ld + c] * k[(size_t)j * ld + c];
                    g2[(size_t)i * N + j] = (float)acc;
                }
            if (memcmp(g1, g2, nn * sizeof *g1) != 0) fail_msg("gram N %d d %d", N, d);
            /* wv_forward: o = 0.125 (float)(w v) */
            set_all(x1, nm, 1.0f), set_all(x2, nm, 1.0f);
            snn_attn_wv_forward(N, d, w, v, ld, 0.125f, x1, ld);
            for (int i = 0; i < N; i++)
                for (int c = 0; c < d; c++) {
                    double acc = 0.0;
                    for (int j = 0; j < N; j++)
                        acc += (double)w[(size_t)i * N + j] * v[(size_t)j * ld + c];
                    x2[(size_t)i * ld + c] = 0.125f * (float)acc;
                }
            if (memcmp(x1, x2, nm * sizeof *x1) != 0) fail_msg("wv_forward N %d d %d", N, d);
            free(q), free(k), free(v), free(w), free(x1), free(x2), free(g1), free(g2);
        }
}

/* ---- softmax: backward against the formulas ---------------------------------------------- */

static void test_softmax_backward_reference(void **state) {
    (void)state;
    for (int sz = 0; sz < N_SM_SIZES; sz++) {
        const int N = SM_SIZES[sz][0], d = SM_SIZES[sz][1];
        const int ld = 2 * d + 3, off = d + 1, lddo = d + 1;
        const size_t nm = (size_t)N * ld, nn = (size_t)N * N, nd = (size_t)N * d;
        float *q = malloc(nm * sizeof *q), *k = malloc(nm * sizeof *k), *v = malloc(nm * sizeof *v);
        float *dq = malloc(nm * sizeof *dq), *dk = malloc(nm * sizeof *dk);
        float *dv = malloc(nm * sizeof *dv), *o = malloc((size_t)N * lddo * sizeof *o);
        float *dout = malloc((size_t)N * lddo * sizeof *dout), *p = malloc(nn * sizeof *p);
        float *scratch = malloc(nn * sizeof *scratch);
        double *rq = malloc(nd * sizeof *rq), *rk = malloc(nd * sizeof *rk);
        double *rv = malloc(nd * sizeof *rv);
        trng r = {(uint64_t)(200 + sz), 0};
        fill(&r, q, N, ld, off, d, 3.0 / sqrt(sqrt((double)d)));
        fill(&r, k, N, ld, off, d, 3.0 / sqrt(sqrt((double)d)));
        fill(&r, v, N, ld, off, d, 1.0);
        fill(&r, dout, N, lddo, 0, d, 1.0);
        snn_attn_softmax_head_train(N, d, q + off, k + off, v + off, ld, o, lddo, p);
        prefill(dq, N, ld, off, d, 0.5f), prefill(dk, N, ld, off, d, 0.5f);
        prefill(dv, N, ld, off, d, 0.5f);
        set_all(scratch, nn, NAN); /* written before it is read */
        snn_attn_softmax_head_backward(N, d, q + off, k + off, v + off, ld, p, dout, lddo, dq + off,
                                       dk + off, dv + off, scratch);
        softmax_backward_ref(N, d, q + off, k + off, v + off, ld, p, dout, lddo, 0.5, rq, rk, rv);
        check_head(dq, N, ld, off, d, rq, 1e-6 * max_abs(rq, nd, 0.5) + 1e-7, 1e-5, SENTINEL,
                   "softmax dQ");
        check_head(dk, N, ld, off, d, rk, 1e-6 * max_abs(rk, nd, 0.5) + 1e-7, 1e-5, SENTINEL,
                   "softmax dK");
        check_head(dv, N, ld, off, d, rv, 1e-6 * max_abs(rv, nd, 0.5) + 1e-7, 1e-5, SENTINEL,
                   "softmax dV");
        /* not vacuous: for N > 1 the score gradients are not all zero */
        if (N > 1) assert_true(max_abs(rq, nd, 0.5) > 1e-3 && max_abs(rk, nd, 0.5) > 1e-3);
        free(q), free(k), free(v), free(dq), free(dk), free(dv), free(o), free(dout), free(p);
        free(scratch), free(rq), free(rk), free(rv);
    }
}

/* ---- finite differences (both kernels) -------------------------------------------------- */

static const double FD_EPS = 1e-2, FD_ABS = 5e-5, FD_REL = 1e-3;
static double fd_worst_abs; /* largest |analytic - numeric| seen (printed) */

/* One FD comparison; returns the relative error if |gradient| >= 1e-2 (else 0). */
static double fd_compare(double analytic, double numeric, const char *label, const char *what,
                         int i, int c) {
    const double diff = fabs(analytic - numeric);
    const double re = diff / fmax(fmax(fabs(analytic), fabs(numeric)), 1e-30);
    if (!(diff < FD_ABS || re < FD_REL))
        fail_msg("%s: d%s[%d][%d]: backward %.9g, finite difference %.9g", label, what, i, c,
                 analytic, numeric);
    if (diff > fd_worst_abs) fd_worst_abs = diff;
    return fmax(fabs(analytic), fabs(numeric)) >= 1e-2 ? re : 0.0;
}

/* L = sum_ic r_ic o_ic in double; r and o [N, d] at row stride ldo. */
static double weighted_sum(const float *r, const float *o, int N, int d, int ldo) {
    double L = 0.0;
    for (int i = 0; i < N; i++)
        for (int c = 0; c < d; c++) L += (double)r[(size_t)i * ldo + c] * o[(size_t)i * ldo + c];
    return L;
}

static void test_softmax_finite_differences(void **state) {
    (void)state;
    fd_worst_abs = 0.0;
    static const int cases[][2] = {{6, 5}, {4, 9}, {1, 3}, {7, 4}};
    double worst = 0.0;
    for (int ci = 0; ci < 4; ci++) {
        const int N = cases[ci][0], d = cases[ci][1];
        const int ld = 2 * d + 1, off = d + 1, ldo = d + 1;
        const size_t nm = (size_t)N * ld, nn = (size_t)N * N;
        float *q = malloc(nm * sizeof *q), *k = malloc(nm * sizeof *k), *v = malloc(nm * sizeof *v);
        float *dq = calloc(nm, sizeof *dq), *dk = calloc(nm, sizeof *dk);
        float *dv = calloc(nm, sizeof *dv), *o = malloc((size_t)N * ldo * sizeof *o);
        float *rw = malloc((size_t)N * ldo * sizeof *rw), *p = malloc(nn * sizeof *p);
        float *scratch = malloc(nn * sizeof *scratch);
        trng r = {(uint64_t)(300 + ci), 0};
        fill(&r, q, N, ld, off, d, 1.0), fill(&r, k, N, ld, off, d, 1.0);
        fill(&r, v, N, ld, off, d, 1.0), fill(&r, rw, N, ldo, 0, d, 1.0);
        snn_attn_softmax_head_train(N, d, q + off, k + off, v + off, ld, o, ldo, p);
        snn_attn_softmax_head_backward(N, d, q + off, k + off, v + off, ld, p, rw, ldo, dq + off,
                                       dk + off, dv + off, scratch);
        float *const mats[3] = {q, k, v};
        const float *const grads[3] = {dq, dk, dv};
        static const char *const names[3] = {"q", "k", "v"};
        bool nonzero = false;
        for (int mi = 0; mi < 3; mi++)
            for (int i = 0; i < N; i++)
                for (int c = 0; c < d; c++) {
                    const size_t at = (size_t)i * ld + off + c;
                    float *m = mats[mi];
                    const float x0 = m[at], xp = (float)(x0 + FD_EPS), xm = (float)(x0 - FD_EPS);
                    m[at] = xp;
                    snn_attn_softmax_head_train(N, d, q + off, k + off, v + off, ld, o, ldo, p);
                    const double Lp = weighted_sum(rw, o, N, d, ldo);
                    m[at] = xm;
                    snn_attn_softmax_head_train(N, d, q + off, k + off, v + off, ld, o, ldo, p);
                    const double Lm = weighted_sum(rw, o, N, d, ldo);
                    m[at] = x0;
                    const double num = (Lp - Lm) / ((double)xp - xm);
                    const double re = fd_compare(grads[mi][at], num, "softmax fd", names[mi], i, c);
                    worst = fmax(worst, re);
                    if (mi < 2 && fabs(num) > 1e-2) nonzero = true;
                }
        if (N > 1) assert_true(nonzero); /* the q, k derivatives were really exercised */
        free(q), free(k), free(v), free(dq), free(dk), free(dv), free(o), free(rw), free(p);
        free(scratch);
    }
    print_message("softmax finite differences: max relative error (|grad| >= 1e-2) %.2e, max "
                  "|difference| %.2e\n", worst, fd_worst_abs);
}

/* ---- CAT: references ----------------------------------------------------------------------- */

static void softmax_vec_ref(int N, const float *g, int ldg, double *z) {
    double m = -INFINITY, sum = 0.0;
    for (int t = 0; t < N; t++) m = fmax(m, (double)g[(size_t)t * ldg]);
    for (int t = 0; t < N; t++) sum += z[t] = exp((double)g[(size_t)t * ldg] - m);
    for (int t = 0; t < N; t++) z[t] /= sum;
}

static int modn(int a, int N) { return ((a % N) + N) % N; }

/* o[i, c] = sum_j z[(i - j) mod N] v[j, c] in double, [N * d]. */
static void cat_forward_ref(int N, int d, const float *z, const float *v, int ld, double *o) {
    for (int i = 0; i < N; i++)
        for (int c = 0; c < d; c++) {
            double acc = 0.0;
            for (int j = 0; j < N; j++) acc += (double)z[modn(i - j, N)] * v[(size_t)j * ld + c];
            o[(size_t)i * d + c] = acc;
        }
}

/* Direct O(N^2 d) backward at the float z: pre + dV [N * d], pre + dg [N]. */
static void cat_backward_ref(int N, int d, const float *z, const float *v, int ld,
                             const float *dout, int lddo, double pre, double *rv, double *rg) {
    double *dz = malloc((size_t)N * sizeof *dz), zdz = 0.0;
    for (int j = 0; j < N; j++)
        for (int c = 0; c < d; c++) {
            double acc = 0.0;
            for (int i = 0; i < N; i++)
                acc += (double)z[modn(i - j, N)] * dout[(size_t)i * lddo + c];
            rv[(size_t)j * d + c] = pre + acc;
        }
    for (int m = 0; m < N; m++) {
        double acc = 0.0;
        for (int i = 0; i < N; i++)
            for (int c = 0; c < d; c++)
                acc += (double)dout[(size_t)i * lddo + c] * v[(size_t)modn(i - m, N) * ld + c];
        dz[m] = acc;
        zdz += (double)z[m] * acc;
    }
    for (int m = 0; m < N; m++) rg[m] = pre + (double)z[m] * (dz[m] - zdz);
    free(dz);
}

typedef struct cat_bufs {
    int N, d, ld, off, ldo, ldg, goff;
    float *g, *v, *o, *z, *dout, *dv, *dg;
    double *scratch;
    double *spectra; /* NULL: the backward makes the transforms again */
    snn_cat_plan *pl;
} cat_bufs;

/* g: [N, ldg] with the head's logits in column goff (JUNK elsewhere); v, dv: [N, ld], head at
 * column off; o, dout: [N, ldo]; dg: [N, ldg] like g. */
static cat_bufs cb_new(int N, int d, uint64_t seed, double gamp) {
    cat_bufs b = {.N = N, .d = d, .ld = 3 * d + 2, .off = d + 1, .ldo = d + 3, .ldg = 3, .goff = 1};
    const size_t nm = (size_t)N * b.ld;
    b.g = malloc((size_t)N * b.ldg * sizeof *b.g);
    b.dg = malloc((size_t)N * b.ldg * sizeof *b.dg);
    b.v = malloc(nm * sizeof *b.v), b.dv = malloc(nm * sizeof *b.dv);
    b.o = malloc((size_t)N * b.ldo * sizeof *b.o);
    b.dout = malloc((size_t)N * b.ldo * sizeof *b.dout);
    b.z = malloc((size_t)N * sizeof *b.z);
    b.pl = snn_cat_plan_new(N, d);
    b.scratch = aligned_alloc(64, snn_cat_scratch_doubles(N, d) * sizeof *b.scratch);
    set_nan(b.scratch, snn_cat_scratch_doubles(N, d)); /* nothing is read before written */
    trng r = {seed, 0};
    fill(&r, b.g, N, b.ldg, b.goff, 1, gamp);
    fill(&r, b.v, N, b.ld, b.off, d, 1.0);
    fill(&r, b.dout, N, b.ldo, 0, d, 1.0);
    set_all(b.o, (size_t)N * b.ldo, SENTINEL);
    return b;
}

static void cb_free(cat_bufs *b) {
    free(b->g), free(b->dg), free(b->v), free(b->dv), free(b->o), free(b->dout), free(b->z);
    free(b->scratch);
    snn_cat_plan_free(b->pl);
}

static void cb_forward(cat_bufs *b) {
    snn_attn_cat_head_train(b->pl, b->g + b->goff, b->ldg, b->v + b->off, b->ld, b->o, b->ldo, b->z,
                            b->spectra, b->scratch);
}

static void cb_backward(cat_bufs *b) {
    snn_attn_cat_head_backward(b->pl, b->g + b->goff, b->ldg, b->v + b->off, b->ld, b->z, b->dout,
                               b->ldo, b->dg + b->goff, b->ldg, b->dv + b->off, b->spectra,
                               b->scratch);
}

/* The last three sizes make the transforms run in several channel blocks (cat.c: 2 blocks of
 * 6 channels, 2 of 2, and 3 of 3: an odd block, whose second complex signal has a zero
 * imaginary part, summed into dz across blocks); the others in one. Odd d (5, 3, 1) leave a
 * channel alone in its complex signal too. */
static const int CAT_SIZES[][2] = {{49, 5}, {64, 16}, {1, 3},      {2, 4},     {7, 6},
                                   {3, 1},  {12, 2},  {1000, 12}, {2500, 4}, {1500, 9}};
enum { N_CAT_SIZES = sizeof CAT_SIZES / sizeof CAT_SIZES[0] };

/* ---- CAT: forward ---------------------------------------------------------------------------- */

static void test_cat_forward_matches_direct(void **state) {
    (void)state;
    double worst = 0.0;
    for (int sz = 0; sz < N_CAT_SIZES; sz++) {
        const int N = CAT_SIZES[sz][0], d = CAT_SIZES[sz][1];
        cat_bufs cb = cb_new(N, d, (uint64_t)(400 + sz), 2.0);
        cat_bufs *b = &cb;
        assert_int_equal(snn_cat_plan_n(b->pl), N);
        assert_int_equal(snn_cat_plan_d(b->pl), d);
        assert_int_equal(d % snn_cat_plan_channel_block(b->pl), 0);
        if (N >= 1000) assert_true(snn_cat_plan_channel_block(b->pl) < d);
        if (N == 1500) assert_int_equal(snn_cat_plan_channel_block(b->pl), 3); /* odd, 3 blocks */
        if (N <= 64) assert_int_equal(snn_cat_plan_channel_block(b->pl), d);
        cb_forward(b);

        /* z = softmax(g) */
        double *zr = malloc((size_t)N * sizeof *zr), zsum = 0.0;
        softmax_vec_ref(N, b->g + b->goff, b->ldg, zr);
        for (int t = 0; t < N; t++) {
            if (!(fabs(b->z[t] - zr[t]) <= 1e-12 + 1e-6 * zr[t]))
                fail_msg("cat N %d: z[%d] = %.9g, reference %.9g", N, t, (double)b->z[t], zr[t]);
            zsum += b->z[t];
        }
        assert_true(fabs(zsum - 1.0) <= 1e-6);
        if (N > 1) assert_true(max_abs(zr, (size_t)N, 1.0 / N) > 1e-3); /* z is not uniform */

        /* the direct kernel is the double loop of the reference, same order: the same double,
         * rounded once */
        float *od = malloc((size_t)N * b->ldo * sizeof *od);
        double *ref = malloc((size_t)N * d * sizeof *ref);
        double *ref32 = malloc((size_t)N * d * sizeof *ref32);
        set_all(od, (size_t)N * b->ldo, SENTINEL);
        snn_attn_cat_head_direct(N, d, b->z, b->v + b->off, b->ld, od, b->ldo);
        cat_forward_ref(N, d, b->z, b->v + b->off, b->ld, ref);
        for (size_t t = 0; t < (size_t)N * d; t++) ref32[t] = (float)ref[t];
        check_head(od, N, b->ldo, 0, d, ref32, 0.0, 0.0, SENTINEL, "cat direct");

        /* FFT path vs direct */
        const double vmax = max_abs_head(b->v, N, b->ld, b->off, d);
        const double w =
            check_head(b->o, N, b->ldo, 0, d, ref, 1e-6 * vmax, 0.0, SENTINEL, "cat O");
        worst = fmax(worst, w / vmax);
        if (N == 1) /* z = [1]: O = V exactly */
            for (int c = 0; c < d; c++) assert_true(b->o[c] == b->v[b->off + c]);
        free(zr), free(od), free(ref), free(ref32);
        cb_free(&cb);
    }
    print_message("cat forward (FFT) vs direct: max |diff| / max|V| = %.2e\n", worst);
}

/* methods.md 4.1: z = [.5, .25, .125, .125], v = [1, 2, 3, 4]: convolution [2.125, 2.125, 2.625,
 * 3.125] (the correlation convention would give [1.875, 2.375, 2.875, 2.875]). */
static void test_cat_convention_vector(void **state) {
    (void)state;
    const float z[4] = {0.5f, 0.25f, 0.125f, 0.125f}, v[4] = {1, 2, 3, 4};
    const float want[4] = {2.125f, 2.125f, 2.625f, 3.125f};
    float o[4], of[4], zf[4], g[4];
    snn_attn_cat_head_direct(4, 1, z, v, 1, o, 1);
    assert_memory_equal(o, want, sizeof o);
    for (int t = 0; t < 4; t++) g[t] = (float)log((double)z[t]);
    snn_cat_plan *pl = snn_cat_plan_new(4, 1);
    double *scratch = aligned_alloc(64, snn_cat_scratch_doubles(4, 1) * sizeof *scratch);
    snn_attn_cat_head_train(pl, g, 1, v, 1, of, 1, zf, NULL, scratch);
    for (int t = 0; t < 4; t++) {
        assert_true(fabs(zf[t] - z[t]) <= 1e-6);
        assert_true(fabs(of[t] - want[t]) <= 1e-6 * 4);
    }
    free(scratch);
    snn_cat_plan_free(pl);
}

/* ---- CAT: backward ------------------------------------------------------------------------- */

static void test_cat_backward_matches_direct(void **state) {
    (void)state;
    for (int sz = 0; sz < N_CAT_SIZES; sz++) {
        const int N = CAT_SIZES[sz][0], d = CAT_SIZES[sz][1];
        cat_bufs cb = cb_new(N, d, (uint64_t)(500 + sz), 2.0);
        cat_bufs *b = &cb;
        cb_forward(b);
        prefill(b->dv, N, b->ld, b->off, d, 0.25f);
        prefill(b->dg, N, b->ldg, b->goff, 1, 0.25f);
        set_nan(b->scratch, snn_cat_scratch_doubles(N, d)); /* the forward's leftovers unused */
        cb_backward(b);
        double *rv = malloc((size_t)N * d * sizeof *rv), *rg = malloc((size_t)N * sizeof *rg);
        cat_backward_ref(N, d, b->z, b->v + b->off, b->ld, b->dout, b->ldo, 0.25, rv, rg);
        check_head(b->dv, N, b->ld, b->off, d, rv, 1e-6 * max_abs(rv, (size_t)N * d, 0.25) + 1e-7,
                   0.0, SENTINEL, "cat dV");
        check_head(b->dg, N, b->ldg, b->goff, 1, rg, 1e-6 * max_abs(rg, (size_t)N, 0.25) + 1e-7,
                   0.0, SENTINEL, "cat dg");
        if (N > 1) assert_true(max_abs(rg, (size_t)N, 0.25) > 1e-3); /* dg really exercised */
        else assert_true(b->dg[b->goff] == 0.25f); /* N = 1: z = [1] whatever g, dg = 0 */
        free(rv), free(rg);
        cb_free(&cb);
    }
}

/* Twice gives exactly 2x (x + x is exact in float), the forward is repeatable bit for bit, and
 * nothing outside the head (nor g, v, dout) changes. */
static void test_cat_backward_accumulates(void **state) {
    (void)state;
    const int N = 49, d = 5;
    cat_bufs cb = cb_new(N, d, 600, 2.0);
    cat_bufs *b = &cb;
    const size_t nm = (size_t)N * b->ld, ng = (size_t)N * b->ldg, no = (size_t)N * b->ldo;
    cb_forward(b);
    float *o1 = malloc(no * sizeof *o1), *z1 = malloc((size_t)N * sizeof *z1);
    memcpy(o1, b->o, no * sizeof *o1), memcpy(z1, b->z, (size_t)N * sizeof *z1);
    cb_forward(b);
    assert_memory_equal(o1, b->o, no * sizeof *o1);
    assert_memory_equal(z1, b->z, (size_t)N * sizeof *z1);

    float *g0 = malloc(ng * sizeof *g0), *v0 = malloc(nm * sizeof *v0);
    float *d0 = malloc(no * sizeof *d0);
    memcpy(g0, b->g, ng * sizeof *g0), memcpy(v0, b->v, nm * sizeof *v0);
    memcpy(d0, b->dout, no * sizeof *d0);
    prefill(b->dv, N, b->ld, b->off, d, 0.0f), prefill(b->dg, N, b->ldg, b->goff, 1, 0.0f);
    cb_backward(b);
    float *dv1 = malloc(nm * sizeof *dv1), *dg1 = malloc(ng * sizeof *dg1);
    memcpy(dv1, b->dv, nm * sizeof *dv1), memcpy(dg1, b->dg, ng * sizeof *dg1);
    cb_backward(b);
    int nonzero = 0;
    for (size_t t = 0; t < nm; t++) {
        const bool in = (int)(t % b->ld) >= b->off && (int)(t % b->ld) < b->off + d;
        assert_true(b->dv[t] == (in ? 2.0f * dv1[t] : SENTINEL));
        nonzero += in && dv1[t] != 0.0f;
    }
    for (size_t t = 0; t < ng; t++) {
        const bool in = (int)(t % b->ldg) == b->goff;
        assert_true(b->dg[t] == (in ? 2.0f * dg1[t] : SENTINEL));
        nonzero += in && dg1[t] != 0.0f;
    }
    assert_true(nonzero > N * d / 2); /* the gradients are not (mostly) zero */
    assert_memory_equal(g0, b->g, ng * sizeof *g0);
    assert_memory_equal(v0, b->v, nm * sizeof *v0);
    assert_memory_equal(d0, b->dout, no * sizeof *d0);
    free(o1), free(z1), free(g0), free(v0), free(d0), free(dv1), free(dg1);
    cb_free(&cb);
}

/* The forward's spectra kept (snn_cat_spectra_doubles) give the backward of the transforms made
 * again, byte for byte, at every size (one and several channel blocks, odd and even), and the
 * forward's own outputs unchanged; with them the backward reads no v (NaN there after the
 * forward). */
static void test_cat_kept_spectra_same_bytes(void **state) {
    (void)state;
    for (int sz = 0; sz < N_CAT_SIZES; sz++) {
        const int N = CAT_SIZES[sz][0], d = CAT_SIZES[sz][1];
        cat_bufs cb = cb_new(N, d, (uint64_t)(650 + sz), 2.0);
        cat_bufs *b = &cb;
        const size_t nm = (size_t)N * b->ld, ng = (size_t)N * b->ldg, no = (size_t)N * b->ldo;
        float *ref[4], *got[4]; /* o, z, dv, dg */
        const size_t n[4] = {no, (size_t)N, nm, ng};
        for (int way = 0; way < 2; way++) {
            float **r = way ? got : ref;
            const size_t ns = snn_cat_spectra_doubles(N, d);
            assert_int_equal(ns % 8, 0);
            b->spectra = way ? aligned_alloc(64, ns * sizeof *b->spectra) : NULL;
            if (way) set_nan(b->spectra, ns);
            float *v0 = malloc(nm * sizeof *v0);
            memcpy(v0, b->v, nm * sizeof *v0);
            set_all(b->o, no, SENTINEL);
            prefill(b->dv, N, b->ld, b->off, d, 0.25f), prefill(b->dg, N, b->ldg, b->goff, 1, 0.5f);
            cb_forward(b);
            if (way) set_all(b->v, nm, NAN); /* not read by the backward with spectra */
            cb_backward(b);
            memcpy(b->v, v0, nm * sizeof *v0);
            free(v0);
            const float *src[4] = {b->o, b->z, b->dv, b->dg};
            for (int q = 0; q < 4; q++) {
                r[q] = malloc(n[q] * sizeof *r[q]);
                memcpy(r[q], src[q], n[q] * sizeof *r[q]);
            }
            free(b->spectra);
            b->spectra = NULL;
        }
        for (int q = 0; q < 4; q++) {
            assert_memory_equal(ref[q], got[q], n[q] * sizeof *ref[q]);
            free(ref[q]), free(got[q]);
        }
        cb_free(&cb);
    }
}

static void test_cat_finite_differences(void **state) {
    (void)state;
    fd_worst_abs = 0.0;
    static const int cases[][2] = {{7, 3}, {8, 4}, {2, 2}, {1, 3}, {12, 2}, {5, 1}};
    double worst = 0.0;
    for (int ci = 0; ci < 6; ci++) {
        const int N = cases[ci][0], d = cases[ci][1];
        cat_bufs cb = cb_new(N, d, (uint64_t)(700 + ci), 1.0);
        cat_bufs *b = &cb;
        float *rw = b->dout; /* the loss weights are dO */
        cb_forward(b);
        prefill(b->dv, N, b->ld, b->off, d, 0.0f), prefill(b->dg, N, b->ldg, b->goff, 1, 0.0f);
        cb_backward(b);
        bool nonzero = false;
        for (int mi = 0; mi < 2; mi++) /* g, then v */
            for (int i = 0; i < N; i++)
                for (int c = 0; c < (mi == 0 ? 1 : d); c++) {
                    float *m = mi == 0 ? b->g : b->v;
                    const size_t at = mi == 0 ? (size_t)i * b->ldg + b->goff
                                              : (size_t)i * b->ld + b->off + c;
                    const float x0 = m[at], xp = (float)(x0 + FD_EPS), xm = (float)(x0 - FD_EPS);
                    m[at] = xp;
                    cb_forward(b);
                    const double Lp = weighted_sum(rw, b->o, N, d, b->ldo);
                    m[at] = xm;
                    cb_forward(b);
                    const double Lm = weighted_sum(rw, b->o, N, d, b->ldo);
                    m[at] = x0;
                    const double num = (Lp - Lm) / ((double)xp - xm);
                    const double a = mi == 0 ? b->dg[at] : b->dv[at];
                    worst = fmax(worst, fd_compare(a, num, "cat fd", mi == 0 ? "g" : "v", i, c));
                    if (mi == 0 && fabs(num) > 1e-2) nonzero = true;
                }
        if (N > 1) assert_true(nonzero);
        cb_free(&cb);
    }
    print_message("cat finite differences: max relative error (|grad| >= 1e-2) %.2e, max "
                  "|difference| %.2e\n", worst, fd_worst_abs);
}

/* ---- CAT: one plan, several threads -------------------------------------------------------- */

typedef struct thread_job {
    const snn_cat_plan *pl;
    const cat_bufs *in;          /* g, v, dout (read only) */
    const float *o_ref, *z_ref, *dv_ref, *dg_ref;
    double *scratch;             /* this thread's own */
    int reps, mismatches;
} thread_job;

/* Forward and backward `reps` times with the shared plan; counts results that differ in any
 * bit from the sequential run (no cmocka calls here: they are not thread-safe). */
static void *thread_run(void *arg) {
    thread_job *j = arg;
    const cat_bufs *b = j->in;
    const int N = b->N, d = b->d;
    const size_t nm = (size_t)N * b->ld, ng = (size_t)N * b->ldg, no = (size_t)N * b->ldo;
    float *o = malloc(no * sizeof *o), *z = malloc((size_t)N * sizeof *z);
    float *dv = malloc(nm * sizeof *dv), *dg = malloc(ng * sizeof *dg);
    for (int rep = 0; rep < j->reps; rep++) {
        set_all(o, no, SENTINEL);
        prefill(dv, N, b->ld, b->off, d, 0.0f), prefill(dg, N, b->ldg, b->goff, 1, 0.0f);
        snn_attn_cat_head_train(j->pl, b->g + b->goff, b->ldg, b->v + b->off, b->ld, o, b->ldo, z,
                                NULL, j->scratch);
        snn_attn_cat_head_backward(j->pl, b->g + b->goff, b->ldg, b->v + b->off, b->ld, z, b->dout,
                                   b->ldo, dg + b->goff, b->ldg, dv + b->off, NULL, j->scratch);
        j->mismatches += memcmp(o, j->o_ref, no * sizeof *o) != 0 ||
                         memcmp(z, j->z_ref, (size_t)N * sizeof *z) != 0 ||
                         memcmp(dv, j->dv_ref, nm * sizeof *dv) != 0 ||
                         memcmp(dg, j->dg_ref, ng * sizeof *dg) != 0;
    }
    free(o), free(z), free(dv), free(dg);
    return NULL;
}

static void test_cat_plan_shared_by_threads(void **state) {
    (void)state;
    const int N = 49, d = 8;
    cat_bufs cb = cb_new(N, d, 800, 2.0);
    cat_bufs *b = &cb;
    const size_t nsc = snn_cat_scratch_doubles(N, d);
    cb_forward(b);
    prefill(b->dv, N, b->ld, b->off, d, 0.0f), prefill(b->dg, N, b->ldg, b->goff, 1, 0.0f);
    cb_backward(b);
    /* sanity: the sequential result is the direct one (else identical garbage would pass) */
    double *ref = malloc((size_t)N * d * sizeof *ref);
    cat_forward_ref(N, d, b->z, b->v + b->off, b->ld, ref);
    check_head(b->o, N, b->ldo, 0, d, ref, 1e-6, 0.0, SENTINEL, "cat O (threads)");

    /* two scratch buffers of the 64-byte alignment the kernels require, the second at an odd
     * multiple of 64 bytes (the size is a multiple of 8 doubles, so slices of an arena are) */
    assert_int_equal(nsc % 8, 0);
    double *s1 = aligned_alloc(64, nsc * sizeof *s1);
    double *s2raw = aligned_alloc(64, (nsc + 8) * sizeof *s2raw), *s2 = s2raw + 8;
    set_nan(s1, nsc), set_nan(s2, nsc);
    thread_job jobs[2];
    for (int t = 0; t < 2; t++)
        jobs[t] = (thread_job){b->pl, b, b->o, b->z, b->dv, b->dg, t ? s2 : s1, 40, 0};
    pthread_t th[2];
    for (int t = 0; t < 2; t++)
        assert_int_equal(pthread_create(&th[t], NULL, thread_run, &jobs[t]), 0);
    for (int t = 0; t < 2; t++) assert_int_equal(pthread_join(th[t], NULL), 0);
    assert_int_equal(jobs[0].mismatches, 0);
    assert_int_equal(jobs[1].mismatches, 0);
    free(ref), free(s1), free(s2raw);
    cb_free(&cb);
}

/* ---- op counts ---------------------------------------------------------------------------- */

static void test_softmax_count(void **state) {
    (void)state;
    snn_ops ops;
    for (int c = 0; c < SNN_OP__COUNT; c++) ops.n[c] = 3; /* it adds, it does not overwrite */
    snn_attn_softmax_count(7, 5, &ops);
    /* MAC 2 N^2 d + N^2 = 490 + 49; EXP, DIV, CMP N^2 = 49 */
    assert_int_equal(ops.n[SNN_OP_MAC], 3 + 539);
    assert_int_equal(ops.n[SNN_OP_EXP], 3 + 49);
    assert_int_equal(ops.n[SNN_OP_DIV], 3 + 49);
    assert_int_equal(ops.n[SNN_OP_CMP], 3 + 49);
    assert_int_equal(ops.n[SNN_OP_AC], 3);
    assert_int_equal(ops.n[SNN_OP_SHIFT], 3);
    assert_int_equal(ops.n[SNN_OP_INT_ADD], 3);
    assert_int_equal(ops.n[SNN_OP_NEURON], 3);
    memset(&ops, 0, sizeof ops);
    snn_attn_softmax_count(64, 16, &ops); /* 2 * 4096 * 16 + 4096 */
    assert_int_equal(ops.n[SNN_OP_MAC], 135168);
    assert_int_equal(ops.n[SNN_OP_EXP], 4096);
}

static snn_cat_fft_flops plan_flops(fftw_plan p, double times) {
    snn_cat_fft_flops f = {0, 0, 0};
    fftw_flops(p, &f.add, &f.mul, &f.fma);
    f.add *= times, f.mul *= times, f.fma *= times;
    return f;
}

static double flops_total(snn_cat_fft_flops f) { return f.add + f.mul + f.fma; }

static void test_cat_count(void **state) {
    (void)state;
    /* literals: a length-1 DFT is a copy (no flops); a length-2 real DFT is x0 + x1, x0 - x1
     * (2 adds), a complex one the same on both parts (4 adds); d = 3 channels make 2 complex
     * signals (the second with a zero imaginary part) */
    static const struct { int N, d; uint64_t mac; } lit[] = {
        {1, 3, 2 * 1 + 4 * 1 * 2 + 0},                       /* 10 */
        {2, 3, 2 * 2 + 4 * 2 * 2 + (2 + 2 * 4 + 2 * 4)},     /* 38 */
    };
    for (int t = 0; t < 2; t++) {
        snn_cat_plan *pl = snn_cat_plan_new(lit[t].N, lit[t].d);
        snn_ops ops;
        for (int c = 0; c < SNN_OP__COUNT; c++) ops.n[c] = 5;
        snn_attn_cat_count(pl, &ops);
        const uint64_t N = (uint64_t)lit[t].N;
        assert_int_equal(ops.n[SNN_OP_MAC], 5 + lit[t].mac);
        assert_int_equal(ops.n[SNN_OP_EXP], 5 + N);
        assert_int_equal(ops.n[SNN_OP_DIV], 5 + N + 1);
        assert_int_equal(ops.n[SNN_OP_CMP], 5 + N);
        assert_int_equal(ops.n[SNN_OP_AC], 5);
        assert_int_equal(ops.n[SNN_OP_INT_ADD], 5);
        snn_cat_plan_free(pl);
    }
    /* general N: 2N + 4 N S + FFTW's count of the forward's transforms, recomputed from the
     * test's own plans (same sizes, strides and flags), S = ceil(d / 2) complex signals (one
     * channel block at these sizes) */
    static const int sizes[][2] = {{7, 6}, {49, 5}, {64, 16}};
    for (int t = 0; t < 3; t++) {
        const int N = sizes[t][0], d = sizes[t][1], S = (d + 1) / 2;
        double *re = fftw_alloc_real((size_t)N);
        fftw_complex *a = fftw_alloc_complex((size_t)N * S), *c = fftw_alloc_complex((size_t)N * S);
        const unsigned fl = FFTW_ESTIMATE | FFTW_UNALIGNED; /* scalar counts (cat.c) */
        const int n[1] = {N};
        fftw_plan r1 = fftw_plan_dft_r2c_1d(N, re, a, fl);
        fftw_plan i1 = fftw_plan_dft_c2r_1d(N, a, re, fl);
        fftw_plan fd = fftw_plan_many_dft(1, n, S, a, NULL, S, 1, c, NULL, S, 1, FFTW_FORWARD, fl);
        fftw_plan id = fftw_plan_many_dft(1, n, S, c, NULL, S, 1, a, NULL, S, 1, FFTW_BACKWARD, fl);
        const double fwd = flops_total(plan_flops(r1, 1)) + flops_total(plan_flops(fd, 1)) +
                           flops_total(plan_flops(id, 1));
        const double bwd = fwd + flops_total(plan_flops(fd, 1)) + flops_total(plan_flops(i1, 1));
        snn_cat_plan *pl = snn_cat_plan_new(N, d);
        assert_int_equal(snn_cat_plan_channel_block(pl), d);
        assert_true(flops_total(snn_cat_plan_forward_flops(pl)) == fwd);
        assert_true(flops_total(snn_cat_plan_backward_flops(pl)) == bwd);
        assert_true(fwd > 0 && fwd == floor(fwd) && bwd > fwd);
        snn_ops ops;
        memset(&ops, 0, sizeof ops);
        snn_attn_cat_count(pl, &ops);
        assert_int_equal(ops.n[SNN_OP_MAC], (uint64_t)(2 * N + 4 * N * S) + (uint64_t)fwd);
        assert_int_equal(ops.n[SNN_OP_EXP], N);
        assert_int_equal(ops.n[SNN_OP_DIV], N + 1);
        snn_cat_plan_free(pl);
        fftw_destroy_plan(r1), fftw_destroy_plan(i1), fftw_destroy_plan(fd), fftw_destroy_plan(id);
        fftw_free(re), fftw_free(a), fftw_free(c);
    }
}

/* O(N log N): from N = 64 to 4096 (x64) CAT's MACs grow between x64 (linear) and
 * x64 * (log 4096 / log 64) * 2 = x256; softmax's, quadratic, grow about x4096. */
static void test_cat_count_n_log_n(void **state) {
    (void)state;
    const int d = 8;
    uint64_t mac[2], smac[2];
    for (int t = 0; t < 2; t++) {
        const int N = t ? 4096 : 64;
        snn_cat_plan *pl = snn_cat_plan_new(N, d);
        snn_ops ops, sops;
        memset(&ops, 0, sizeof ops), memset(&sops, 0, sizeof sops);
        snn_attn_cat_count(pl, &ops);
        snn_attn_softmax_count(N, d, &sops);
        mac[t] = ops.n[SNN_OP_MAC], smac[t] = sops.n[SNN_OP_MAC];
        const snn_cat_fft_flops f = snn_cat_plan_forward_flops(pl);
        print_message("cat N %d d %d: forward FFT flops add %.0f mul %.0f fma %.0f; MAC %llu "
                      "(softmax %llu)\n", N, d, f.add, f.mul, f.fma, (unsigned long long)mac[t],
                      (unsigned long long)smac[t]);
        snn_cat_plan_free(pl);
    }
    const double ratio = (double)mac[1] / (double)mac[0];
    print_message("cat MAC ratio N 4096 / N 64 = %.1f (softmax %.1f)\n", ratio,
                  (double)smac[1] / (double)smac[0]);
    assert_true(ratio >= 64.0 && ratio <= 256.0);
    assert_true((double)smac[1] / (double)smac[0] > 4000.0);
}

/* ---- snn_gemm (attention/gemm.h) ---------------------------------------------------------- */

/* C = alpha op(A) op(B) + beta C against a double loop, every (trans_a, trans_b, alpha, beta)
 * combination (the JIT kernels take trans_b = false with alpha = 1, sgemm the rest), shapes from
 * 1x1x1 to the training's, leading dimensions wider than the matrices (pad entries must never be
 * read: NaN there, or written: SENTINEL there). beta = 0 must ignore C's old value (NaN).
 * Tolerance per entry: (K + 2) 2^-24 sum_k |alpha a_ik b_kj| + 2^-24 |beta c_ij| (float sums
 * of K products in any order, the beta term rounded once more). */
static void test_gemm_matches_double_reference(void **state) {
    (void)state;
    /* the last two past the JIT kernels' weight-sized operand (sgemm): B of 384 x 192, and
     * the 192 x 384 C of a weight gradient */
    static const int SIZES[][3] = {{1, 1, 1},     {7, 5, 3},      {49, 16, 49},  {49, 49, 16},
                                   {300, 64, 256}, {64, 64, 392}, {256, 64, 64}, {40, 192, 384},
                                   {192, 384, 40}};
    trng r = {11, 0};
    for (size_t z = 0; z < sizeof SIZES / sizeof SIZES[0]; z++)
        for (int mode = 0; mode < 16; mode++) {
            const int M = SIZES[z][0], N = SIZES[z][1], K = SIZES[z][2];
            const bool ta = mode & 1, tb = mode & 2;
            const float alpha = (mode & 4) ? 0.5f : 1.0f, beta = (mode & 8) ? 1.0f : 0.0f;
            const int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
            const int lda = ac + 3, ldb = bc + 1, ldc = N + 2;
            float *A = malloc((size_t)ar * lda * sizeof *A);
            float *B = malloc((size_t)br * ldb * sizeof *B);
            float *C = malloc((size_t)M * ldc * sizeof *C);
            float *C0 = malloc((size_t)M * ldc * sizeof *C0);
            assert_non_null(A), assert_non_null(B), assert_non_null(C), assert_non_null(C0);
            for (int i = 0; i < ar; i++)
                for (int c = 0; c < lda; c++)
                    A[(size_t)i * lda + c] = c < ac ? (float)(2.0 * trng_unif(&r) - 1.0) : NAN;
            for (int i = 0; i < br; i++)
                for (int c = 0; c < ldb; c++)
                    B[(size_t)i * ldb + c] = c < bc ? (float)(2.0 * trng_unif(&r) - 1.0) : NAN;
            for (int i = 0; i < M; i++)
                for (int c = 0; c < ldc; c++)
                    C0[(size_t)i * ldc + c] =
                        c >= N ? SENTINEL : beta != 0.0f ? (float)(2.0 * trng_unif(&r) - 1.0) : NAN;
            memcpy(C, C0, (size_t)M * ldc * sizeof *C);
            snn_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
            for (int i = 0; i < M; i++) {
                for (int j = 0; j < N; j++) {
                    double ref = 0.0, mag = 0.0;
                    for (int k = 0; k < K; k++) {
                        const double a = ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                        const double b = tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                        ref += alpha * a * b;
                        mag += fabs(alpha * a * b);
                    }
                    const double c0 = beta != 0.0f ? C0[(size_t)i * ldc + j] : 0.0;
                    ref += beta * c0;
                    const double tol = (K + 2) * 0x1p-24 * mag + 0x1p-24 * fabs(c0);
                    const double got = C[(size_t)i * ldc + j];
                    if (!(fabs(got - ref) <= tol))
                        fail_msg("M %d N %d K %d ta %d tb %d alpha %g beta %g: C[%d][%d] = %.9g, "
                                 "reference %.9g", M, N, K, ta, tb, alpha, beta, i, j, got, ref);
                }
                for (int c = N; c < ldc; c++) assert_true(C[(size_t)i * ldc + c] == SENTINEL);
            }
            free(A), free(B), free(C), free(C0);
        }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm_matches_double_reference),
        cmocka_unit_test(test_softmax_forward_reference),
        cmocka_unit_test(test_shared_products_bit_exact),
        cmocka_unit_test(test_softmax_backward_reference),
        cmocka_unit_test(test_softmax_finite_differences),
        cmocka_unit_test(test_cat_forward_matches_direct),
        cmocka_unit_test(test_cat_convention_vector),
        cmocka_unit_test(test_cat_backward_matches_direct),
        cmocka_unit_test(test_cat_backward_accumulates),
        cmocka_unit_test(test_cat_kept_spectra_same_bytes),
        cmocka_unit_test(test_cat_finite_differences),
        cmocka_unit_test(test_cat_plan_shared_by_threads),
        cmocka_unit_test(test_softmax_count),
        cmocka_unit_test(test_cat_count),
        cmocka_unit_test(test_cat_count_n_log_n),
    };
    return cmocka_run_group_tests_name("attention_ann", tests, NULL, NULL);
}
