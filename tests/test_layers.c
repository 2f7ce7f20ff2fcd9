/*
 * test_layers.c: dense training layers (sim/layers.c): linear, BatchNorm1d, mean pool and
 * cross-entropy, forward against naive double references and hand-computed PyTorch numbers,
 * every backward against central finite differences, and byte-identical results for 1, 2 and
 * 3 OpenMP threads.
 *
 * Finite-difference checks (research/style.md 3.10): the scalar loss is L = sum_i r_i y_i for a
 * fixed random r (cross-entropy: the loss itself), summed in double from the kernel's float
 * outputs. Each input coordinate p is perturbed by +-FD_EPS in float and
 *     numeric = (L(p + eps) - L(p - eps)) / ((double)fl(p + eps) - (double)fl(p - eps)),
 * (the actual float step, so the rounding of p +- eps does not count as error). A coordinate
 * passes if |analytic - numeric| <= atol + rtol |numeric|; atol and rtol are stated per test.
 * Linear layers, mean pool and the running-stat-free BN affine part are linear in the
 * perturbed coordinate, so only float rounding of the forward (about 1e-7 |L| / 2 eps) is
 * left; BN in x and cross-entropy add an O(eps^2) truncation term.
 * Every backward is called on gradient buffers pre-filled with GRAD_FILL, and the analytic
 * gradient is (result - GRAD_FILL): this also checks that backward accumulates (+=).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "sim/layers.h"
#include "sim/rng.h"
#include "tests/testutil.h"

#define FD_EPS    1e-2f
#define GRAD_FILL 0.375f

/* ---- helpers ------------------------------------------------------------------------------ */

static float *fvec(size_t n) {
    float *p = calloc(n ? n : 1, sizeof *p);
    assert_non_null(p);
    return p;
}

/* Uniform in [lo, hi) from (seed, stream), counter = index. */
static void fill_uniform(float *p, size_t n, uint64_t seed, uint64_t stream, float lo, float hi) {
    for (size_t i = 0; i < n; i++) p[i] = lo + (hi - lo) * snn_rng_uniform(seed, stream, i);
}

static void fill_const(float *p, size_t n, float v) {
    for (size_t i = 0; i < n; i++) p[i] = v;
}

/* out[i] = a[i] - GRAD_FILL: the part a backward added to a GRAD_FILL-filled buffer. */
static void unfill(float *out, const float *a, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = a[i] - GRAD_FILL;
}

static double dot_rd(const float *y, const float *r, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)r[i] * (double)y[i];
    return s;
}

typedef double (*loss_fn)(void *ctx);

/* Central differences of loss over every coordinate of p[0..n), against analytic[0..n). */
static void gradcheck(const char *label, float *p, size_t n, const float *analytic, loss_fn loss,
                      void *ctx, double atol, double rtol) {
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        const float v = p[i];
        p[i] = v + FD_EPS;
        const float vp = p[i];
        const double lp = loss(ctx);
        p[i] = v - FD_EPS;
        const float vm = p[i];
        const double lm = loss(ctx);
        p[i] = v;
        const double num = (lp - lm) / ((double)vp - (double)vm);
        const double err = fabs((double)analytic[i] - num);
        const double bound = atol + rtol * fabs(num);
        if (err / bound > worst) worst = err / bound;
        if (!(err <= bound))
            fail_msg("%s: coordinate %zu: analytic %.9g, numeric %.9g (|diff| %.3g > %.3g)", label,
                     i, (double)analytic[i], num, err, bound);
    }
    if (getenv("SNN_TEST_VERBOSE"))
        print_message("%s: %zu coordinates, worst |diff| / bound = %.3g\n", label, n, worst);
}

/* ---- linear -------------------------------------------------------------------------------- */

typedef struct lin_ctx {
    float *x, *w, *b, *y, *r;
    int M, in, out;
} lin_ctx;

static double lin_loss(void *p) {
    lin_ctx *c = p;
    snn_linear_fwd(c->y, c->x, c->w, c->b, c->M, c->in, c->out);
    return dot_rd(c->y, c->r, (size_t)c->M * c->out);
}

/* Naive double reference of y = x w^T + b and of the three gradients for dy = r. */
static void lin_reference(const lin_ctx *c, double *y, double *dx, double *dw, double *db) {
    const int M = c->M, in = c->in, out = c->out;
    for (int m = 0; m < M; m++)
        for (int o = 0; o < out; o++) {
            double s = c->b ? (double)c->b[o] : 0.0;
            for (int i = 0; i < in; i++) s += (double)c->x[m * in + i] * (double)c->w[o * in + i];
            y[m * out + o] = s;
        }
    for (int m = 0; m < M; m++)
        for (int i = 0; i < in; i++) {
            double s = 0.0;
            for (int o = 0; o < out; o++) s += (double)c->r[m * out + o] * (double)c->w[o * in + i];
            dx[m * in + i] = s;
        }
    for (int o = 0; o < out; o++) {
        double sb = 0.0;
        for (int i = 0; i < in; i++) {
            double s = 0.0;
            for (int m = 0; m < M; m++) s += (double)c->r[m * out + o] * (double)c->x[m * in + i];
            dw[o * in + i] = s;
        }
        for (int m = 0; m < M; m++) sb += (double)c->r[m * out + o];
        db[o] = sb;
    }
}

static void lin_alloc(lin_ctx *c, int M, int in, int out, uint64_t seed) {
    c->M = M;
    c->in = in;
    c->out = out;
    c->x = fvec((size_t)M * in);
    c->w = fvec((size_t)out * in);
    c->b = fvec((size_t)out);
    c->y = fvec((size_t)M * out);
    c->r = fvec((size_t)M * out);
    fill_uniform(c->x, (size_t)M * in, seed, 1, -1.0f, 1.0f);
    fill_uniform(c->w, (size_t)out * in, seed, 2, -0.5f, 0.5f);
    fill_uniform(c->b, (size_t)out, seed, 3, -0.5f, 0.5f);
    fill_uniform(c->r, (size_t)M * out, seed, 4, -1.0f, 1.0f);
}

static void lin_free(lin_ctx *c) {
    free(c->x);
    free(c->w);
    free(c->b);
    free(c->y);
    free(c->r);
}

/* y, dx, dw, db against double loops, at sizes that cross the row chunk (256, with a partial
 * last chunk) and the weight gradient's row blocks: M = 300 (one block), 2500 (4) and 4500 (8).
 * Tolerance: float sgemm with K <= M terms of size <= 1: atol 2e-7 M (1e-4 at M = 500) + rtol
 * 1e-5. */
static void test_linear_matches_naive_reference_across_chunks(void **state) {
    (void)state;
    const int Ms[] = {300, 2500, 4500};
    for (int mi = 0; mi < 3; mi++) {
    lin_ctx c;
    const int M = Ms[mi], in = 13, out = 21;
    const double atol = 2e-7 * M;
    lin_alloc(&c, M, in, out, 11);
    double *y = calloc((size_t)M * out, sizeof *y), *dx = calloc((size_t)M * in, sizeof *dx);
    double *dw = calloc((size_t)out * in, sizeof *dw), *db = calloc((size_t)out, sizeof *db);
    lin_reference(&c, y, dx, dw, db);
    float *yf = fvec((size_t)M * out), *ref = fvec((size_t)M * (in > out ? in : out));
    float *gx = fvec((size_t)M * in), *gw = fvec((size_t)out * in), *gb = fvec((size_t)out);
    snn_linear_fwd(yf, c.x, c.w, c.b, M, in, out);
    for (int i = 0; i < M * out; i++) ref[i] = (float)y[i];
    snn_assert_allclose(yf, ref, (size_t)M * out, 1e-5, 1e-5, "linear y");
    float *scratch = fvec(snn_linear_bwd_scratch_floats(M, in, out) + 1);
    snn_linear_bwd(gx, gw, gb, c.r, c.x, c.w, M, in, out, scratch, true);
    for (int i = 0; i < M * in; i++) ref[i] = (float)dx[i];
    snn_assert_allclose(gx, ref, (size_t)M * in, 1e-5, 1e-5, "linear dx");
    for (int i = 0; i < out * in; i++) ref[i] = (float)dw[i];
    snn_assert_allclose(gw, ref, (size_t)out * in, atol, 1e-5, "linear dw");
    for (int i = 0; i < out; i++) ref[i] = (float)db[i];
    snn_assert_allclose(gb, ref, (size_t)out, atol, 1e-5, "linear db");

    /* No bias: y = x w^T exactly the reference minus b; db = NULL and dx = NULL are allowed
     * and leave dw unchanged. */
    snn_linear_fwd(yf, c.x, c.w, NULL, M, in, out);
    for (int m = 0; m < M; m++)
        for (int o = 0; o < out; o++) ref[m * out + o] = (float)(y[m * out + o] - (double)c.b[o]);
    snn_assert_allclose(yf, ref, (size_t)M * out, 1e-5, 1e-5, "linear y (no bias)");
    float *gw2 = fvec((size_t)out * in);
    snn_linear_bwd(NULL, gw2, NULL, c.r, c.x, NULL, M, in, out, scratch, true);
    assert_memory_equal(gw, gw2, (size_t)out * in * sizeof *gw);
    /* add_dx false writes dx (the NaN it held is never read): the bytes of adding to zeros */
    float *gx2 = fvec((size_t)M * in);
    fill_const(gx2, (size_t)M * in, NAN);
    snn_linear_bwd(gx2, gw2, NULL, c.r, c.x, c.w, M, in, out, scratch, false);
    assert_memory_equal(gx, gx2, (size_t)M * in * sizeof *gx);
    free(gx2);

    free(gw2);
    free(scratch);
    free(yf);
    free(ref);
    free(gx);
    free(gw);
    free(gb);
    free(y);
    free(dx);
    free(dw);
    free(db);
    lin_free(&c);
    }
}

/* The linear layer on spikes given as bits (snn_linear_fwd_bits, snn_linear_bwd_bits) gives
 * the float functions' bytes on the same spikes: rows laid out as a trainer's population (T
 * blocks of rows_per_t rows, ld words apart, ld > the rows' words), widths 64 .. 1024 (the
 * weight gradient's list path and its long-row path), outputs not a multiple of 32; every other
 * shape with the caller's scratch instead of the stack buffers. Where the float functions would
 * take sgemm (dense spikes, in not a multiple of 64) the bit functions decline and write
 * nothing. */
static void test_linear_bits_equal_floats(void **state) {
    (void)state;
    static const int shapes[][4] = {/* in, out, T, rows_per_t */
                                    {64, 64, 3, 50},  {256, 64, 4, 700}, {64, 256, 2, 33},
                                    {128, 40, 5, 17}, {1024, 48, 2, 300}, {192, 24, 1, 9}};
    for (int si = 0; si < 6; si++)
        for (int dense = 0; dense < 2; dense++) {
            const int in = shapes[si][0], out = shapes[si][1], T = shapes[si][2];
            const int rpt = shapes[si][3], M = T * rpt, wpr = in / 64;
            const size_t ld = (size_t)(rpt + 3) * wpr + 1; /* words per timestep (B < Bmax) */
            uint64_t *nz = calloc((size_t)T * ld, sizeof *nz);
            float *x = fvec((size_t)M * in), *w = fvec((size_t)out * in), *b = fvec(out);
            float *dy = fvec((size_t)M * out);
            const double pr = dense ? 0.5 : 0.12;
            for (int m = 0; m < M; m++)
                for (int i = 0; i < in; i++) {
                    const bool on = snn_rng_uniform(40 + si, 1 + dense, (uint64_t)m * in + i) < pr;
                    x[(size_t)m * in + i] = on ? 1.0f : 0.0f;
                    if (on)
                        nz[(size_t)(m / rpt) * ld + (size_t)(m % rpt) * wpr + i / 64] |=
                            1ull << (i % 64);
                }
            fill_uniform(w, (size_t)out * in, 41, si, -1.0f, 1.0f);
            fill_uniform(b, (size_t)out, 42, si, -1.0f, 1.0f);
            fill_uniform(dy, (size_t)M * out, 43, si, -1.0f, 1.0f);
            const snn_spike_rows xb = {nz, ld, rpt};
            float *y1 = fvec((size_t)M * out), *y2 = fvec((size_t)M * out);
            float *dx1 = fvec((size_t)M * in), *dx2 = fvec((size_t)M * in);
            float *dw1 = fvec((size_t)out * in), *dw2 = fvec((size_t)out * in);
            float *db1 = fvec(out), *db2 = fvec(out);
            fill_const(y2, (size_t)M * out, GRAD_FILL);
            fill_const(dx1, (size_t)M * in, GRAD_FILL), fill_const(dx2, (size_t)M * in, GRAD_FILL);
            fill_const(dw1, (size_t)out * in, GRAD_FILL);
            fill_const(dw2, (size_t)out * in, GRAD_FILL);
            fill_const(db1, out, GRAD_FILL), fill_const(db2, out, GRAD_FILL);
            float *scratch = fvec(snn_linear_bwd_scratch_floats(M, in, out) + 1);
            snn_linear_fwd(y1, x, w, b, M, in, out);
            snn_linear_bwd(dx1, dw1, db1, dy, x, w, M, in, out, scratch, true);
            float *sp = si % 2 ? fvec(snn_linear_spike_scratch_floats(in, out)) : NULL;
            const bool fwd = snn_linear_fwd_bits(y2, &xb, w, b, M, in, out, sp);
            const bool bwd = snn_linear_bwd_bits(dx2, dw2, db2, dy, &xb, w, M, in, out, true, sp);
            free(sp);
            assert_int_equal(fwd, !dense);
            assert_int_equal(bwd, !dense);
            if (dense) {
                /* declined: nothing written */
                for (size_t t = 0; t < (size_t)M * out; t++) assert_true(y2[t] == GRAD_FILL);
                for (size_t t = 0; t < (size_t)out * in; t++) assert_true(dw2[t] == GRAD_FILL);
                for (size_t t = 0; t < (size_t)M * in; t++) assert_true(dx2[t] == GRAD_FILL);
            } else {
                assert_memory_equal(y1, y2, (size_t)M * out * sizeof *y1);
                assert_memory_equal(dx1, dx2, (size_t)M * in * sizeof *dx1);
                assert_memory_equal(dw1, dw2, (size_t)out * in * sizeof *dw1);
                assert_memory_equal(db1, db2, (size_t)out * sizeof *db1);
            }
            free(nz), free(x), free(w), free(b), free(dy), free(y1), free(y2), free(dx1);
            free(dx2), free(dw1), free(dw2), free(db1), free(db2), free(scratch);
        }
}

/* A layer past the stack buffers (384 x 256 = 98304 weights > 65536, as q, k, v at D = 384):
 * the bit functions decline without scratch and write nothing; with it they take the spike path
 * (y = the sum of the weight rows of the ones in input order, plus b; dw from the listed rows),
 * whose results agree with the float functions' dense products to float rounding. */
static void test_linear_bits_large_layer(void **state) {
    (void)state;
    enum { in = 384, out = 256, T = 2, rpt = 70, M = T * rpt, wpr = in / 64 };
    const size_t ld = (size_t)rpt * wpr;
    uint64_t *nz = calloc((size_t)T * ld, sizeof *nz);
    float *x = fvec((size_t)M * in), *w = fvec((size_t)out * in), *b = fvec(out);
    float *dy = fvec((size_t)M * out);
    for (int m = 0; m < M; m++)
        for (int i = 0; i < in; i++) {
            const bool on = snn_rng_uniform(90, 1, (uint64_t)m * in + i) < 0.1;
            x[(size_t)m * in + i] = on ? 1.0f : 0.0f;
            if (on) nz[(size_t)(m / rpt) * ld + (size_t)(m % rpt) * wpr + i / 64] |= 1ull << (i % 64);
        }
    fill_uniform(w, (size_t)out * in, 91, 0, -1.0f, 1.0f);
    fill_uniform(b, (size_t)out, 92, 0, -1.0f, 1.0f);
    fill_uniform(dy, (size_t)M * out, 93, 0, -1.0f, 1.0f);
    const snn_spike_rows xb = {nz, ld, rpt};
    float *y1 = fvec((size_t)M * out), *y2 = fvec((size_t)M * out);
    float *dx1 = fvec((size_t)M * in), *dx2 = fvec((size_t)M * in);
    float *dw1 = fvec((size_t)out * in), *dw2 = fvec((size_t)out * in);
    float *db1 = fvec(out), *db2 = fvec(out);
    fill_const(y2, (size_t)M * out, GRAD_FILL), fill_const(dw2, (size_t)out * in, GRAD_FILL);
    assert_false(snn_linear_fwd_bits(y2, &xb, w, b, M, in, out, NULL));
    assert_false(snn_linear_bwd_bits(dx2, dw2, db2, dy, &xb, w, M, in, out, false, NULL));
    for (size_t t = 0; t < (size_t)M * out; t++) assert_true(y2[t] == GRAD_FILL);
    for (size_t t = 0; t < (size_t)out * in; t++) assert_true(dw2[t] == GRAD_FILL);
    float *sp = fvec(snn_linear_spike_scratch_floats(in, out));
    float *scratch = fvec(snn_linear_bwd_scratch_floats(M, in, out) + 1);
    fill_const(dw1, (size_t)out * in, 0.0f), fill_const(dw2, (size_t)out * in, 0.0f);
    fill_const(db1, out, 0.0f), fill_const(db2, out, 0.0f);
    snn_linear_fwd(y1, x, w, b, M, in, out);
    snn_linear_bwd(dx1, dw1, db1, dy, x, w, M, in, out, scratch, false);
    assert_true(snn_linear_fwd_bits(y2, &xb, w, b, M, in, out, sp));
    assert_true(snn_linear_bwd_bits(dx2, dw2, db2, dy, &xb, w, M, in, out, false, sp));
    /* the spike path's y, exactly: input order, from +0, then the bias */
    for (int m = 0; m < M; m += 13)
        for (int o = 0; o < out; o += 7) {
            float acc = 0.0f;
            for (int i = 0; i < in; i++)
                if (x[(size_t)m * in + i] != 0.0f) acc += w[(size_t)o * in + i];
            assert_true(y2[(size_t)m * out + o] == acc + b[o]);
        }
    snn_assert_allclose(y2, y1, (size_t)M * out, 1e-5, 1e-5, "large layer y");
    snn_assert_allclose(dw2, dw1, (size_t)out * in, 1e-5, 1e-5, "large layer dw");
    assert_memory_equal(dx2, dx1, (size_t)M * in * sizeof *dx1); /* both dense: dy w */
    assert_memory_equal(db2, db1, (size_t)out * sizeof *db1);
    free(nz), free(x), free(w), free(b), free(dy), free(y1), free(y2), free(dx1), free(dx2);
    free(dw1), free(dw2), free(db1), free(db2), free(sp), free(scratch);
}

/* The linear forward that gathers BatchNorm's sums (snn_linear_fwd_sums, _bits_sums) followed
 * by snn_bn_train_fwd_sums gives the bytes of the separate passes: on spikes (floats and bits)
 * y equals snn_linear_fwd's, and on real inputs (sgemm) the BatchNorm outputs equal
 * snn_bn_train_fwd's on the y it wrote; so do the statistics alone followed by
 * snn_bn_train_normalise (with its ReLU, the ReLU of them; with a residual, their sum with it). Sizes: fewer rows than BatchNorm's 16 row blocks
 * (M = 5: empty blocks), blocks longer than a row chunk (M = 4800: 300-row blocks, chunks of 256
 * and 44), more channels than one super-chunk (out = 300), and a column far from 0 (the shift). */
static void test_linear_bn_sums_equal_separate_passes(void **state) {
    (void)state;
    static const int shapes[][3] = {/* M, in, out */ {5, 64, 24}, {4800, 64, 64}, {700, 128, 300}};
    for (int si = 0; si < 3; si++)
        for (int spikes = 0; spikes < 2; spikes++) {
            const int M = shapes[si][0], in = shapes[si][1], out = shapes[si][2];
            const size_t MI = (size_t)M * in, MO = (size_t)M * out;
            float *x = fvec(MI), *w = fvec((size_t)out * in), *b = fvec(out);
            uint64_t *nz = calloc(MI / 64 + 1, sizeof *nz);
            for (size_t t = 0; t < MI; t++) {
                const double u = snn_rng_uniform(60 + si, 1, t);
                x[t] = spikes ? (u < 0.15 ? 1.0f : 0.0f) : (float)(2.0 * u - 1.0);
                if (spikes && x[t] != 0.0f) nz[t / 64] |= 1ull << (t % 64);
            }
            fill_uniform(w, (size_t)out * in, 61, si, -1.0f, 1.0f);
            fill_uniform(b, (size_t)out, 62, si, -1.0f, 1.0f);
            b[0] = 1000.0f; /* channel 0 far from 0: the statistics' shift matters */
            float *y1 = fvec(MO), *y2 = fvec(MO), *y3 = fvec(MO);
            double *sums = calloc(snn_bn_sums_doubles(out), sizeof *sums);
            snn_linear_fwd(y1, x, w, b, M, in, out);
            snn_linear_fwd_sums(y2, x, w, b, M, in, out, sums);
            if (spikes) {
                assert_memory_equal(y1, y2, MO * sizeof *y1);
                const snn_spike_rows xb = {nz, MI / 64 + 1, M}; /* one block of M rows */
                double *sums3 = calloc(snn_bn_sums_doubles(out), sizeof *sums3);
                assert_true(snn_linear_fwd_bits_sums(y3, &xb, w, b, M, in, out, sums3, NULL));
                assert_memory_equal(y1, y3, MO * sizeof *y1);
                assert_memory_equal(sums, sums3, snn_bn_sums_doubles(out) * sizeof *sums);
                free(sums3);
            }
            float *g = fvec(out), *be = fvec(out), *o1 = fvec(MO), *o2 = fvec(MO), *h1 = fvec(MO);
            float *h2 = fvec(MO), *mu1 = fvec(out), *mu2 = fvec(out), *r1 = fvec(out);
            float *r2 = fvec(out), *rm1 = fvec(out), *rm2 = fvec(out), *rv1 = fvec(out);
            float *rv2 = fvec(out);
            fill_uniform(g, (size_t)out, 63, si, 0.5f, 1.5f);
            fill_uniform(be, (size_t)out, 64, si, -0.5f, 0.5f);
            fill_const(rv1, out, 1.0f), fill_const(rv2, out, 1.0f);
            snn_bn_train_fwd(o1, h1, mu1, r1, y2, g, be, rm1, rv1, M, out, 0.1f, 1e-5f);
            snn_bn_train_fwd_sums(o2, h2, mu2, r2, y2, g, be, rm2, rv2, M, 0, out, 0.1f, 1e-5f,
                                  sums);
            assert_memory_equal(o1, o2, MO * sizeof *o1);
            assert_memory_equal(h1, h2, MO * sizeof *h1);
            assert_memory_equal(mu1, mu2, (size_t)out * sizeof *mu1);
            assert_memory_equal(r1, r2, (size_t)out * sizeof *r1);
            assert_memory_equal(rm1, rm2, (size_t)out * sizeof *rm1);
            assert_memory_equal(rv1, rv2, (size_t)out * sizeof *rv1);
            /* the statistics alone, then the normalisation (as a population or a fused ReLU
             * slot runs them): the same bytes; with the ReLU, max(y, 0) of them */
            float *o3 = fvec(MO), *h3 = fvec(MO), *mu3 = fvec(out), *r3 = fvec(out);
            float *rm3 = fvec(out), *rv3 = fvec(out);
            fill_const(rv3, out, 1.0f);
            snn_bn_train_fwd_sums(NULL, NULL, mu3, r3, y2, g, be, rm3, rv3, M, 0, out, 0.1f, 1e-5f,
                                  sums);
            assert_memory_equal(mu1, mu3, (size_t)out * sizeof *mu1);
            assert_memory_equal(rv1, rv3, (size_t)out * sizeof *rv1);
            for (int variant = 0; variant < 3; variant++) { /* plain, ReLU, residual */
                const bool relu = variant == 1;
                const float *res = variant == 2 ? y1 : NULL; /* any [M, out] stream */
                snn_bn_train_normalise(o3, h3, y2, mu3, r3, g, be, M, out, relu, res);
                assert_memory_equal(h1, h3, MO * sizeof *h1);
                for (size_t t = 0; t < MO; t++)
                    o2[t] = relu ? (o1[t] > 0.0f ? o1[t] : 0.0f) : res ? res[t] + o1[t] : o1[t];
                assert_memory_equal(o2, o3, MO * sizeof *o1);
                /* without storing xhat (snn_bn_train_bwd_x's forward): the same output */
                fill_const(o3, MO, NAN);
                snn_bn_train_normalise(o3, NULL, y2, mu3, r3, g, be, M, out, relu, res);
                assert_memory_equal(o2, o3, MO * sizeof *o1);
            }
            free(o3), free(h3), free(mu3), free(r3), free(rm3), free(rv3);
            /* and the statistics are right: channel 0's mean against a double sum */
            double sum = 0.0;
            for (int m = 0; m < M; m++) sum += y2[(size_t)m * out];
            assert_float_equal(mu1[0], sum / M, 1e-3);
            free(x), free(w), free(b), free(nz), free(y1), free(y2), free(y3), free(sums);
            free(g), free(be), free(o1), free(o2), free(h1), free(h2), free(mu1), free(mu2);
            free(r1), free(r2), free(rm1), free(rm2), free(rv1), free(rv2);
        }
}

/* A linear layer that runs the normalisation of its input's BatchNorm chunk by chunk
 * (snn_linear_fwd_sums_norm) gives the bytes of snn_bn_train_normalise followed by
 * snn_linear_fwd_sums: the input it writes, its output and BatchNorm's sums, plain, with a
 * ReLU and with a residual stream; sizes with empty row blocks (5 rows), 300-row blocks of two
 * chunks (4800), 256 input channels. */
static void test_linear_fwd_norm_equals_separate(void **state) {
    (void)state;
    static const int shapes[][3] = {/* M, in, out */ {5, 24, 64}, {4800, 64, 64}, {700, 256, 64}};
    for (int si = 0; si < 3; si++)
        for (int variant = 0; variant < 3; variant++) { /* plain, ReLU, residual */
            const int M = shapes[si][0], in = shapes[si][1], out = shapes[si][2];
            const size_t MI = (size_t)M * in, MO = (size_t)M * out;
            float *xb = fvec(MI), *res = fvec(MI), *mu = fvec(in), *rs = fvec(in), *g = fvec(in);
            float *be = fvec(in), *w = fvec((size_t)out * in), *b = fvec(out);
            fill_uniform(xb, MI, 101, si, -2.0f, 2.0f);
            fill_uniform(res, MI, 102, si, -1.0f, 1.0f);
            fill_uniform(mu, (size_t)in, 103, si, -0.5f, 0.5f);
            fill_uniform(rs, (size_t)in, 104, si, 0.5f, 2.0f);
            fill_uniform(g, (size_t)in, 105, si, 0.5f, 1.5f);
            fill_uniform(be, (size_t)in, 106, si, -0.5f, 0.5f);
            fill_uniform(w, (size_t)out * in, 107, si, -0.5f, 0.5f);
            fill_uniform(b, (size_t)out, 108, si, -0.5f, 0.5f);
            const bool relu = variant == 1;
            const float *r = variant == 2 ? res : NULL;
            float *x1 = fvec(MI), *x2 = fvec(MI), *y1 = fvec(MO), *y2 = fvec(MO);
            const size_t ns = snn_bn_sums_doubles(out);
            double *s1 = calloc(ns, sizeof *s1), *s2 = calloc(ns, sizeof *s2);
            fill_const(x2, MI, NAN); /* written by the call */
            snn_bn_train_normalise(x1, NULL, xb, mu, rs, g, be, M, in, relu, r);
            snn_linear_fwd_sums(y1, x1, w, b, M, in, out, s1);
            const snn_bn_norm nm = {x2, xb, mu, rs, g, be, r, relu};
            snn_linear_fwd_sums_norm(y2, &nm, w, b, M, in, out, s2);
            assert_memory_equal(x1, x2, MI * sizeof *x1);
            assert_memory_equal(y1, y2, MO * sizeof *y1);
            assert_memory_equal(s1, s2, ns * sizeof *s1);
            free(xb), free(res), free(mu), free(rs), free(g), free(be), free(w), free(b);
            free(x1), free(x2), free(y1), free(y2), free(s1), free(s2);
        }
}

/* BatchNorm's backward that also sums its dx for the bias before it (snn_bn_train_bwd_sum)
 * writes snn_bn_train_bwd's dx, dgamma and dbeta, and its dx sums are snn_linear_bwd's bias
 * gradient on that dx, byte for byte: M = 5 (empty row blocks), 3000 rows, 300 channels (two
 * channel super-chunks). */
static void test_bn_backward_sum_equals_linear_db(void **state) {
    (void)state;
    static const int shapes[][2] = {{5, 24}, {3000, 64}, {700, 300}};
    for (int si = 0; si < 3; si++) {
        const int M = shapes[si][0], C = shapes[si][1], in = 3;
        const size_t MC = (size_t)M * C;
        float *dy = fvec(MC), *xh = fvec(MC), *rs = fvec(C), *g = fvec(C), *x = fvec((size_t)M * in);
        fill_uniform(dy, MC, 71, si, -1.0f, 1.0f);
        fill_uniform(xh, MC, 72, si, -2.0f, 2.0f);
        fill_uniform(rs, (size_t)C, 73, si, 0.5f, 2.0f);
        fill_uniform(g, (size_t)C, 74, si, 0.5f, 1.5f);
        fill_uniform(x, (size_t)M * in, 75, si, -1.0f, 1.0f);
        float *dx1 = fvec(MC), *dx2 = fvec(MC), *dg1 = fvec(C), *dg2 = fvec(C), *db1 = fvec(C);
        float *db2 = fvec(C), *dbias1 = fvec(C), *dbias2 = fvec(C), *dw = fvec((size_t)C * in);
        fill_const(dx2, MC, NAN); /* written, never read */
        fill_const(dbias1, C, 0.25f), fill_const(dbias2, C, 0.25f); /* both add */
        snn_bn_train_bwd(dx1, dg1, db1, dy, xh, rs, g, M, C, false);
        float *scratch = fvec(snn_linear_bwd_scratch_floats(M, in, C) + 1);
        snn_linear_bwd(NULL, dw, dbias1, dx1, x, NULL, M, in, C, scratch, true);
        snn_bn_train_bwd_sum(dx2, dbias2, dg2, db2, dy, xh, rs, g, M, 0, C);
        assert_memory_equal(dx1, dx2, MC * sizeof *dx1);
        assert_memory_equal(dg1, dg2, (size_t)C * sizeof *dg1);
        assert_memory_equal(db1, db2, (size_t)C * sizeof *db1);
        assert_memory_equal(dbias1, dbias2, (size_t)C * sizeof *dbias1);
        free(dy), free(xh), free(rs), free(g), free(x), free(dx1), free(dx2), free(dg1);
        free(dg2), free(db1), free(db2), free(dbias1), free(dbias2), free(dw), free(scratch);
    }
}

/* BatchNorm's backward on the forward's input x and mean (snn_bn_train_bwd_x, which normalises
 * x again) gives the bytes of the backward on the stored xhat, in every mode: dx written or
 * added, with the bias sums (snn_bn_train_bwd_sum) or without; and through a ReLU (relu_beta)
 * the bytes of a ReLU backward on the forward's output (dy where it is > 0, plus 0) followed by
 * the backward on xhat. Shapes as above; channel 0 is far from 0 (x - mean cancels most of its
 * bits); 300 channels: two super-chunks, where the offset into mean, rstd, gamma, beta
 * matters. */
static void test_bn_backward_on_x_equals_on_xhat(void **state) {
    (void)state;
    static const int shapes[][2] = {{5, 24}, {3000, 64}, {700, 300}};
    for (int si = 0; si < 3; si++) {
        const int M = shapes[si][0], C = shapes[si][1];
        const size_t MC = (size_t)M * C;
        float *x = fvec(MC), *xh = fvec(MC), *y = fvec(MC), *mu = fvec(C), *rs = fvec(C);
        float *g = fvec(C), *be = fvec(C), *dy = fvec(MC);
        fill_uniform(x, MC, 81, si, -3.0f, 3.0f);
        for (int m = 0; m < M; m++) x[(size_t)m * C] += 500.0f;
        fill_uniform(g, (size_t)C, 82, si, 0.5f, 1.5f);
        fill_uniform(be, (size_t)C, 83, si, -0.5f, 0.5f);
        fill_uniform(dy, MC, 84, si, -1.0f, 1.0f);
        snn_bn_train_fwd(y, xh, mu, rs, x, g, be, NULL, NULL, M, C, 0.1f, 1e-5f);
        float *yr = fvec(MC), *dyr = fvec(MC); /* the ReLU's output; dy through it */
        snn_bn_train_normalise(yr, NULL, x, mu, rs, g, be, M, C, true, NULL);
        size_t pos = 0;
        for (size_t t = 0; t < MC; t++) {
            dyr[t] = 0.0f + (yr[t] > 0.0f ? dy[t] : 0.0f);
            pos += yr[t] > 0.0f;
        }
        assert_true(pos > MC / 4 && pos < 3 * MC / 4); /* the mask cuts */
        for (int mode = 0; mode < 6; mode++) { /* written, added, with the bias sums; ReLU */
            const bool add = mode % 3 == 1, sums = mode % 3 == 2, relu = mode >= 3;
            float *dx1 = fvec(MC), *dx2 = fvec(MC), *dg1 = fvec(C), *dg2 = fvec(C);
            float *db1 = fvec(C), *db2 = fvec(C), *ds1 = fvec(C), *ds2 = fvec(C);
            fill_uniform(dx1, MC, 85, si, -1.0f, 1.0f); /* added to, or overwritten */
            memcpy(dx2, dx1, MC * sizeof *dx1);
            fill_const(dg1, C, 0.5f), fill_const(dg2, C, 0.5f), fill_const(db1, C, -0.5f);
            fill_const(db2, C, -0.5f), fill_const(ds1, C, 0.25f), fill_const(ds2, C, 0.25f);
            const float *d = relu ? dyr : dy;
            if (sums)
                snn_bn_train_bwd_sum(dx1, ds1, dg1, db1, d, xh, rs, g, M, 0, C);
            else
                snn_bn_train_bwd(dx1, dg1, db1, d, xh, rs, g, M, C, add);
            snn_bn_train_bwd_x(dx2, sums ? ds2 : NULL, dg2, db2, dy, x, mu, rs, g,
                               relu ? be : NULL, M, 0, C, add);
            assert_memory_equal(dx1, dx2, MC * sizeof *dx1);
            assert_memory_equal(dg1, dg2, (size_t)C * sizeof *dg1);
            assert_memory_equal(db1, db2, (size_t)C * sizeof *db1);
            assert_memory_equal(ds1, ds2, (size_t)C * sizeof *ds1);
            free(dx1), free(dx2), free(dg1), free(dg2), free(db1), free(db2), free(ds1), free(ds2);
        }
        free(x), free(xh), free(y), free(mu), free(rs), free(g), free(be), free(dy), free(yr);
        free(dyr);
    }
}

/* The fused Linear + BatchNorm backward (snn_linear_bn_bwd) gives the bytes of BatchNorm's
 * backward (on xhat with the bias sums, snn_bn_train_bwd_sum; or on x, snn_bn_train_bwd_x)
 * followed by snn_linear_bwd: dx written and added, with and without a bias, through a ReLU,
 * at sizes that take the fused path (3136 rows: 4 weight-gradient blocks; 5000: 8; 256
 * channels) and the fallbacks (700 rows: one block; 300 channels; a 0/1 spike input). */
static void test_linear_bn_backward_fused_equals_separate(void **state) {
    (void)state;
    static const int shapes[][4] = {/* M, in, out, spikes */ {3136, 64, 64, 0}, {3136, 64, 256, 0},
                                    {5000, 48, 64, 0},     {700, 64, 64, 0},
                                    {1200, 32, 300, 0},    {3136, 64, 64, 1}};
    for (int si = 0; si < 6; si++)
        for (int mode = 0; mode < 4; mode++) { /* xhat; x; x through a ReLU; xhat, no bias */
            const int M = shapes[si][0], in = shapes[si][1], out = shapes[si][2];
            const size_t MI = (size_t)M * in, MO = (size_t)M * out, WN = (size_t)in * out;
            const bool raw = mode == 1 || mode == 2, relu = mode == 2, bias = mode != 3;
            const bool add = (si + mode) % 2 == 1;
            float *x = fvec(MI), *w = fvec(WN), *xb = fvec(MO), *xh = fvec(MO), *y = fvec(MO);
            float *mu = fvec(out), *rs = fvec(out), *g = fvec(out), *be = fvec(out);
            float *dz = fvec(MO);
            fill_uniform(x, MI, 91, si, -1.0f, 1.0f);
            if (shapes[si][3])
                for (size_t t = 0; t < MI; t++) x[t] = x[t] > 0.8f ? 1.0f : 0.0f;
            fill_uniform(w, WN, 92, si, -0.5f, 0.5f);
            fill_uniform(xb, MO, 93, si, -2.0f, 2.0f); /* BatchNorm's input */
            fill_uniform(g, (size_t)out, 94, si, 0.5f, 1.5f);
            fill_uniform(be, (size_t)out, 95, si, -0.5f, 0.5f);
            fill_uniform(dz, MO, 96, si, -1.0f, 1.0f);
            snn_bn_train_fwd(y, xh, mu, rs, xb, g, be, NULL, NULL, M, out, 0.1f, 1e-5f);
            const snn_bn_saved bs = {raw ? xb : xh, raw ? mu : NULL, rs, g, relu ? be : NULL};
            float *r[2][6]; /* per way: dx, dw, db, dgamma, dbeta, dy_lin */
            const size_t sz[6] = {MI, WN, (size_t)out, (size_t)out, (size_t)out, MO};
            float *scratch = fvec(snn_linear_bwd_scratch_floats(M, in, out) + 1);
            for (int way = 0; way < 2; way++) {
                for (int q = 0; q < 6; q++) r[way][q] = fvec(sz[q]);
                fill_uniform(r[way][0], MI, 97, si, -1.0f, 1.0f); /* added to, or overwritten */
                for (int q = 1; q < 5; q++) fill_const(r[way][q], sz[q], 0.125f * (float)q);
                fill_const(r[way][5], MO, NAN); /* written before it is read */
                float *db = bias ? r[way][2] : NULL;
                if (way == 0) {
                    if (raw)
                        snn_bn_train_bwd_x(r[0][5], db, r[0][3], r[0][4], dz, xb, mu, rs, g,
                                           relu ? be : NULL, M, 0, out, false);
                    else if (bias)
                        snn_bn_train_bwd_sum(r[0][5], db, r[0][3], r[0][4], dz, xh, rs, g, M, 0,
                                             out);
                    else
                        snn_bn_train_bwd(r[0][5], r[0][3], r[0][4], dz, xh, rs, g, M, out, false);
                    snn_linear_bwd(r[0][0], r[0][1], NULL, r[0][5], x, w, M, in, out, scratch,
                                   add);
                } else {
                    snn_linear_bn_bwd(r[1][0], r[1][1], db, r[1][3], r[1][4], r[1][5], dz, &bs, x,
                                      w, M, 0, in, out, scratch, add);
                }
            }
            for (int q = 0; q < 6; q++)
                assert_memory_equal(r[0][q], r[1][q], sz[q] * sizeof(float));
            for (int way = 0; way < 2; way++)
                for (int q = 0; q < 6; q++) free(r[way][q]);
            free(x), free(w), free(xb), free(xh), free(y), free(mu), free(rs), free(g), free(be);
            free(dz), free(scratch);
        }
}

/* The Linear + BatchNorm backward on spikes as bits (snn_linear_bn_bwd_bits) gives the bytes
 * of BatchNorm's backward followed by snn_linear_bwd_bits: on xhat with the bias sums and on x
 * without a bias, dx written and added; rows laid out as a trainer's population; 64 and 256
 * outputs (one channel super-chunk) and 300 (the fallback). Dense spikes: it declines and
 * writes nothing. */
static void test_linear_bn_backward_bits_equals_separate(void **state) {
    (void)state;
    static const int shapes[][4] = {/* in, out, T, rows_per_t */
                                    {64, 64, 4, 800}, {256, 64, 2, 500}, {64, 256, 3, 300},
                                    {128, 300, 2, 100}};
    for (int si = 0; si < 5; si++)
        for (int mode = 0; mode < 2; mode++) { /* xhat and a bias; x and no bias */
            const bool dense = si == 4;
            const int *sh = shapes[dense ? 0 : si];
            const int in = sh[0], out = sh[1], T = sh[2], rpt = sh[3], M = T * rpt;
            const int wpr = in / 64;
            const size_t ld = (size_t)(rpt + 2) * wpr, MO = (size_t)M * out, MI = (size_t)M * in;
            const size_t WN = (size_t)in * out;
            uint64_t *nz = calloc((size_t)T * ld, sizeof *nz);
            for (int m = 0; m < M; m++)
                for (int i = 0; i < in; i++)
                    if (snn_rng_uniform(111 + si, 1, (uint64_t)m * in + i) < (dense ? 0.5 : 0.1))
                        nz[(size_t)(m / rpt) * ld + (size_t)(m % rpt) * wpr + i / 64] |=
                            1ull << (i % 64);
            const snn_spike_rows xs = {nz, ld, rpt};
            float *w = fvec(WN), *xb = fvec(MO), *xh = fvec(MO), *y = fvec(MO), *mu = fvec(out);
            float *rs = fvec(out), *g = fvec(out), *be = fvec(out), *dz = fvec(MO);
            fill_uniform(w, WN, 112, si, -0.5f, 0.5f);
            fill_uniform(xb, MO, 113, si, -2.0f, 2.0f);
            fill_uniform(g, (size_t)out, 114, si, 0.5f, 1.5f);
            fill_uniform(be, (size_t)out, 115, si, -0.5f, 0.5f);
            fill_uniform(dz, MO, 116, si, -1.0f, 1.0f);
            snn_bn_train_fwd(y, xh, mu, rs, xb, g, be, NULL, NULL, M, out, 0.1f, 1e-5f);
            const bool raw = mode == 1, bias = mode == 0, add = (si + mode) % 2 == 0;
            const snn_bn_saved bs = {raw ? xb : xh, raw ? mu : NULL, rs, g, NULL};
            float *r[2][6]; /* per way: dx, dw, db, dgamma, dbeta, dy_lin */
            const size_t sz[6] = {MI, WN, (size_t)out, (size_t)out, (size_t)out, MO};
            for (int way = 0; way < 2; way++) {
                for (int q = 0; q < 6; q++) r[way][q] = fvec(sz[q]);
                fill_uniform(r[way][0], MI, 117, si, -1.0f, 1.0f);
                for (int q = 1; q < 5; q++) fill_const(r[way][q], sz[q], 0.125f * (float)q);
                fill_const(r[way][5], MO, 0.5f);
            }
            float *db0 = bias ? r[0][2] : NULL, *db1 = bias ? r[1][2] : NULL;
            const bool ok = snn_linear_bn_bwd_bits(r[1][0], r[1][1], db1, r[1][3], r[1][4],
                                                   r[1][5], dz, &bs, &xs, w, M, 0, in, out, add,
                                                   NULL);
            assert_int_equal(ok, !dense);
            if (!dense) {
                if (raw)
                    snn_bn_train_bwd_x(r[0][5], db0, r[0][3], r[0][4], dz, xb, mu, rs, g, NULL, M,
                                       0, out, false);
                else
                    snn_bn_train_bwd_sum(r[0][5], db0, r[0][3], r[0][4], dz, xh, rs, g, M, 0, out);
                assert_true(snn_linear_bwd_bits(r[0][0], r[0][1], NULL, r[0][5], &xs, w, M, in,
                                                out, add, NULL));
            }
            for (int q = 0; q < 6; q++) /* dense: both untouched */
                assert_memory_equal(r[0][q], r[1][q], sz[q] * sizeof(float));
            for (int way = 0; way < 2; way++)
                for (int q = 0; q < 6; q++) free(r[way][q]);
            free(nz), free(w), free(xb), free(xh), free(y), free(mu), free(rs), free(g), free(be);
            free(dz);
        }
}

/* dx, dw, db by central differences (M=6, in=5, out=4). L is linear in every coordinate, so the
 * only error is float rounding of y: atol 1e-5, rtol 1e-4 (worst seen: 8% of that bound). */
static void test_linear_backward_matches_finite_differences(void **state) {
    (void)state;
    lin_ctx c;
    const int M = 6, in = 5, out = 4;
    lin_alloc(&c, M, in, out, 21);
    float *dx = fvec((size_t)M * in), *dw = fvec((size_t)out * in), *db = fvec((size_t)out);
    float *a = fvec((size_t)M * in + (size_t)out * in + out);
    fill_const(dx, (size_t)M * in, GRAD_FILL);
    fill_const(dw, (size_t)out * in, GRAD_FILL);
    fill_const(db, (size_t)out, GRAD_FILL);
    snn_linear_bwd(dx, dw, db, c.r, c.x, c.w, M, in, out, NULL, true); /* M <= 1024: no scratch */
    unfill(a, dx, (size_t)M * in);
    gradcheck("linear dx", c.x, (size_t)M * in, a, lin_loss, &c, 1e-5, 1e-4);
    unfill(a, dw, (size_t)out * in);
    gradcheck("linear dw", c.w, (size_t)out * in, a, lin_loss, &c, 1e-5, 1e-4);
    unfill(a, db, (size_t)out);
    gradcheck("linear db", c.b, (size_t)out, a, lin_loss, &c, 1e-5, 1e-4);
    free(a);
    free(dx);
    free(dw);
    free(db);
    lin_free(&c);
}

/* ---- BatchNorm ---------------------------------------------------------------------------- */

typedef struct bn_ctx {
    float *x, *gamma, *beta, *y, *xhat, *mean, *rstd, *r;
    int M, C;
} bn_ctx;

static double bn_loss(void *p) {
    bn_ctx *c = p;
    snn_bn_train_fwd(c->y, c->xhat, c->mean, c->rstd, c->x, c->gamma, c->beta, NULL, NULL, c->M,
                     c->C, 0.1f, 1e-5f);
    return dot_rd(c->y, c->r, (size_t)c->M * c->C);
}

static void bn_alloc(bn_ctx *c, int M, int C, uint64_t seed) {
    const size_t MC = (size_t)M * C;
    c->M = M;
    c->C = C;
    c->x = fvec(MC);
    c->y = fvec(MC);
    c->xhat = fvec(MC);
    c->r = fvec(MC);
    c->gamma = fvec((size_t)C);
    c->beta = fvec((size_t)C);
    c->mean = fvec((size_t)C);
    c->rstd = fvec((size_t)C);
    /* per-channel offset and spread, so channels differ: x = off_c + s_c u */
    for (int m = 0; m < M; m++)
        for (int ch = 0; ch < C; ch++)
            c->x[(size_t)m * C + ch] = (float)(0.3 * ch - 0.5) +
                                       (1.0f + 0.25f * (float)(ch % 3)) *
                                           (2.0f * snn_rng_uniform(seed, 1, (size_t)m * C + ch) - 1.0f);
    fill_uniform(c->gamma, (size_t)C, seed, 2, 0.5f, 1.5f);
    fill_uniform(c->beta, (size_t)C, seed, 3, -0.5f, 0.5f);
    fill_uniform(c->r, MC, seed, 4, -1.0f, 1.0f);
}

static void bn_free(bn_ctx *c) {
    free(c->x);
    free(c->y);
    free(c->xhat);
    free(c->r);
    free(c->gamma);
    free(c->beta);
    free(c->mean);
    free(c->rstd);
}

/* PyTorch's numbers worked by hand: one channel, x = [1, 2, 3, 4], running stats (0, 1):
 * batch mean 2.5, biased var 1.25, unbiased var 5/3;
 * running_mean = 0.9*0 + 0.1*2.5 = 0.25; running_var = 0.9*1 + 0.1*5/3 = 1.0666667;
 * xhat = (x - 2.5) / sqrt(1.25 + 1e-5). A second call compounds: running_mean 0.475,
 * running_var 0.9*1.0666667 + 0.1*5/3 = 1.1266667. */
static void test_bn_running_stats_match_pytorch_rule(void **state) {
    (void)state;
    const float x[4] = {1, 2, 3, 4}; /* M = 4, C = 1 */
    float y[4], xhat[4], mean, rstd, rm = 0.0f, rv = 1.0f;
    const float gamma = 2.0f, beta = 0.5f;
    snn_bn_train_fwd(y, xhat, &mean, &rstd, x, &gamma, &beta, &rm, &rv, 4, 1, 0.1f, 1e-5f);
    assert_float_equal(mean, 2.5f, 0.0f);
    assert_float_equal(rstd, (float)(1.0 / sqrt(1.25 + 1e-5)), 0.0f);
    assert_float_equal(rm, 0.25f, 1e-7f);
    assert_float_equal(rv, 1.0666667f, 1e-7f);
    for (int i = 0; i < 4; i++) {
        const double h = ((double)x[i] - 2.5) / sqrt(1.25 + 1e-5);
        assert_float_equal(xhat[i], (float)h, 1e-7f);
        assert_float_equal(y[i], (float)(2.0 * h + 0.5), 2e-7f);
    }
    snn_bn_train_fwd(y, xhat, &mean, &rstd, x, &gamma, &beta, &rm, &rv, 4, 1, 0.1f, 1e-5f);
    assert_float_equal(rm, 0.475f, 1e-7f);
    assert_float_equal(rv, 1.1266667f, 2e-7f);
}

/* Forward against a naive double reference (M=50, C=37: three channel chunks, the last one
 * partial). atol 1e-6 / rtol 1e-6 on normalised values of size <= 4. */
static void test_bn_forward_matches_naive_reference(void **state) {
    (void)state;
    bn_ctx c;
    const int M = 50, C = 37;
    bn_alloc(&c, M, C, 31);
    float *rm = fvec((size_t)C), *rv = fvec((size_t)C), *ref = fvec((size_t)M * C);
    float *rmr = fvec((size_t)C), *rvr = fvec((size_t)C), *meanr = fvec((size_t)C);
    float *rstdr = fvec((size_t)C), *xhatr = fvec((size_t)M * C);
    fill_uniform(rm, (size_t)C, 5, 5, -1.0f, 1.0f);
    fill_uniform(rv, (size_t)C, 5, 6, 0.5f, 2.0f);
    for (int ch = 0; ch < C; ch++) {
        double s = 0.0, q = 0.0;
        for (int m = 0; m < M; m++) s += c.x[m * C + ch];
        const double mu = s / M;
        for (int m = 0; m < M; m++) q += (c.x[m * C + ch] - mu) * (c.x[m * C + ch] - mu);
        const double var = q / M, rs = 1.0 / sqrt(var + 1e-5);
        meanr[ch] = (float)mu;
        rstdr[ch] = (float)rs;
        rmr[ch] = (float)(0.9 * rm[ch] + 0.1 * mu);
        rvr[ch] = (float)(0.9 * rv[ch] + 0.1 * q / (M - 1));
        for (int m = 0; m < M; m++) {
            const double h = (c.x[m * C + ch] - mu) * rs;
            xhatr[m * C + ch] = (float)h;
            ref[m * C + ch] = (float)(c.gamma[ch] * h + c.beta[ch]);
        }
    }
    snn_bn_train_fwd(c.y, c.xhat, c.mean, c.rstd, c.x, c.gamma, c.beta, rm, rv, M, C, 0.1f, 1e-5f);
    snn_assert_allclose(c.y, ref, (size_t)M * C, 1e-6, 1e-6, "bn y");
    snn_assert_allclose(c.xhat, xhatr, (size_t)M * C, 1e-6, 1e-6, "bn xhat");
    snn_assert_allclose(c.mean, meanr, (size_t)C, 1e-7, 1e-6, "bn mean");
    snn_assert_allclose(c.rstd, rstdr, (size_t)C, 0, 1e-6, "bn rstd");
    snn_assert_allclose(rm, rmr, (size_t)C, 1e-7, 1e-6, "bn running_mean");
    snn_assert_allclose(rv, rvr, (size_t)C, 0, 1e-6, "bn running_var");
    free(rm);
    free(rv);
    free(ref);
    free(rmr);
    free(rvr);
    free(meanr);
    free(rstdr);
    free(xhatr);
    bn_free(&c);
}

/* dx, dgamma, dbeta by central differences, training mode (the batch statistics move with x),
 * M = 12 rows, C = 3 channels. dgamma, dbeta: L is linear in them, atol 1e-5, rtol 1e-4.
 * dx: float rounding plus the O(eps^2) truncation term: atol 1e-4, rtol 1e-3 (worst seen: 10%
 * of that bound). */
static void test_bn_backward_matches_finite_differences(void **state) {
    (void)state;
    bn_ctx c;
    const int M = 12, C = 3;
    const size_t MC = (size_t)M * C;
    bn_alloc(&c, M, C, 41);
    float *dx = fvec(MC), *dg = fvec((size_t)C), *dbt = fvec((size_t)C), *a = fvec(MC);
    fill_const(dx, MC, GRAD_FILL);
    fill_const(dg, (size_t)C, GRAD_FILL);
    fill_const(dbt, (size_t)C, GRAD_FILL);
    bn_loss(&c); /* xhat, rstd at the unperturbed point */
    snn_bn_train_bwd(dx, dg, dbt, c.r, c.xhat, c.rstd, c.gamma, M, C, true);
    /* the dx-free call gives the same dgamma, dbeta */
    float *dg2 = fvec((size_t)C), *dbt2 = fvec((size_t)C);
    fill_const(dg2, (size_t)C, GRAD_FILL);
    fill_const(dbt2, (size_t)C, GRAD_FILL);
    snn_bn_train_bwd(NULL, dg2, dbt2, c.r, c.xhat, c.rstd, c.gamma, M, C, true);
    assert_memory_equal(dg, dg2, (size_t)C * sizeof *dg);
    assert_memory_equal(dbt, dbt2, (size_t)C * sizeof *dbt);
    /* add_dx false writes dx over whatever it held (NaN here): the accumulated dx into zeros */
    float *dx0 = fvec(MC), *dxw = fvec(MC);
    fill_const(dx0, MC, 0.0f);
    fill_const(dxw, MC, NAN);
    snn_bn_train_bwd(dx0, dg2, dbt2, c.r, c.xhat, c.rstd, c.gamma, M, C, true);
    snn_bn_train_bwd(dxw, dg2, dbt2, c.r, c.xhat, c.rstd, c.gamma, M, C, false);
    assert_memory_equal(dx0, dxw, MC * sizeof *dx0);
    free(dx0);
    free(dxw);

    unfill(a, dx, MC);
    gradcheck("bn dx", c.x, MC, a, bn_loss, &c, 1e-4, 1e-3);
    unfill(a, dg, (size_t)C);
    gradcheck("bn dgamma", c.gamma, (size_t)C, a, bn_loss, &c, 1e-5, 1e-4);
    unfill(a, dbt, (size_t)C);
    gradcheck("bn dbeta", c.beta, (size_t)C, a, bn_loss, &c, 1e-5, 1e-4);
    free(dg2);
    free(dbt2);
    free(dx);
    free(dg);
    free(dbt);
    free(a);
    bn_free(&c);
}

/* Eval mode by hand: x = 2, running mean 1, running var 3, gamma 2, beta 0.5:
 * y = (2 - 1) / sqrt(3 + 1e-5) * 2 + 0.5 = 1.6546986... ; and x = -1 gives 0.5 - 2*2/sqrt(3+1e-5). */
static void test_bn_eval_uses_running_stats(void **state) {
    (void)state;
    const float x[2] = {2.0f, -1.0f}, g = 2.0f, b = 0.5f, rm = 1.0f, rv = 3.0f;
    float y[2];
    snn_bn_eval_fwd(y, x, &g, &b, &rm, &rv, 2, 1, 1e-5f);
    assert_float_equal(y[0], (float)(2.0 / sqrt(3.0 + 1e-5) + 0.5), 1e-7f);
    assert_float_equal(y[1], (float)(0.5 - 4.0 / sqrt(3.0 + 1e-5)), 1e-7f);
    assert_float_equal(y[0], 1.6546986f, 2e-7f);
}

/* Over several channel blocks (C = 150 is 64 + 64 + 22) and M rows, every element equals the
 * per-element double formula bit for bit: the hoisted per-channel scale changes no bits. */
static void test_bn_eval_blocks_match_formula(void **state) {
    (void)state;
    enum { M = 37, C = 150 };
    float x[M * C], y[M * C], g[C], b[C], rm[C], rv[C];
    fill_uniform(x, M * C, 7, 0, -2.0f, 2.0f);
    fill_uniform(g, C, 7, 1, 0.5f, 1.5f);
    fill_uniform(b, C, 7, 2, -0.5f, 0.5f);
    fill_uniform(rm, C, 7, 3, -0.5f, 0.5f);
    fill_uniform(rv, C, 7, 4, 0.1f, 2.1f);
    snn_bn_eval_fwd(y, x, g, b, rm, rv, M, C, 1e-5f);
    for (int m = 0; m < M; m++)
        for (int c = 0; c < C; c++) {
            const double scale = (double)g[c] / sqrt((double)rv[c] + 1e-5);
            const float want = (float)(((double)x[m * C + c] - rm[c]) * scale + b[c]);
            assert_memory_equal(&y[m * C + c], &want, sizeof want);
        }
}

/* snn_linear_bn_eval_fwd against snn_linear_fwd then snn_bn_eval_fwd: y and z the same bytes,
 * and with a post-op (snn_bn_eval_post: ReLU, residual add, in place) the bytes of its pass,
 * for M below and above the rows where the product takes w^T and over several row chunks, out
 * within one channel block, over several (150 = 64 + 64 + 22) and past the stack's 1024
 * channels, with and without a bias, and for a sparse spike x (there the spike path runs,
 * two passes; on 0/1 inputs its sums are the dense product's, so the bytes cannot tell which
 * ran). z is filled with NaN first, so a row or channel the fused pass skips fails it; so does
 * a chunk's BatchNorm with another block's coefficients. */
static void test_linear_bn_eval_fused(void **state) {
    (void)state;
    const int shapes[][3] = {{37, 16, 64}, {300, 64, 150}, {3136, 64, 256}, {700, 256, 64},
                             {260, 8, 1030}, {513, 64, 64}};
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++)
        for (int variant = 0; variant < 3; variant++) { /* bias, no bias, spikes */
            const int M = shapes[si][0], in = shapes[si][1], out = shapes[si][2];
            const size_t nx = (size_t)M * in, ny = (size_t)M * out;
            float *x = fvec(nx), *w = fvec((size_t)out * in), *b = fvec((size_t)out);
            float *g = fvec((size_t)out), *be = fvec((size_t)out), *rm = fvec((size_t)out);
            float *rv = fvec((size_t)out);
            float *y0 = fvec(ny), *z0 = fvec(ny), *y1 = fvec(ny), *z1 = fvec(ny);
            fill_uniform(x, nx, 53, (uint64_t)si, -1.0f, 1.0f);
            if (variant == 2) /* sparse spikes: every 9th entry 1 */
                for (size_t i = 0; i < nx; i++) x[i] = i % 9 == 0 ? 1.0f : 0.0f;
            fill_uniform(w, (size_t)out * in, 53, 100 + si, -0.5f, 0.5f);
            fill_uniform(b, (size_t)out, 53, 200 + si, -0.5f, 0.5f);
            fill_uniform(g, (size_t)out, 53, 300 + si, 0.5f, 1.5f);
            fill_uniform(be, (size_t)out, 53, 400 + si, -0.5f, 0.5f);
            fill_uniform(rm, (size_t)out, 53, 500 + si, -0.5f, 0.5f);
            fill_uniform(rv, (size_t)out, 53, 600 + si, 0.1f, 2.1f);
            const float *bias = variant == 1 ? NULL : b;
            snn_linear_fwd(y0, x, w, bias, M, in, out);
            snn_bn_eval_fwd(z0, y0, g, be, rm, rv, M, out, 1e-5f);
            fill_const(z1, ny, NAN);
            snn_linear_bn_eval_fwd(z1, y1, x, w, bias, g, be, rm, rv, M, in, out, 1e-5f);
            assert_memory_equal(y0, y1, ny * sizeof *y0);
            assert_memory_equal(z0, z1, ny * sizeof *z0);
            /* the post-ops against their own passes: the ReLU slot's x > 0 ? x : 0, and the
             * residual add res + z, also in place (z = res, as a block's stream may be) */
            float *res = fvec(ny), *want = fvec(ny);
            fill_uniform(res, ny, 53, 700 + si, -1.0f, 1.0f);
            for (int post = 0; post < 3; post++) {
                for (size_t i = 0; i < ny; i++)
                    want[i] = post == 0 ? (z0[i] > 0.0f ? z0[i] : 0.0f) : res[i] + z0[i];
                float *z = z1;
                if (post == 2) {
                    memcpy(z1, res, ny * sizeof *z1);
                } else {
                    fill_const(z1, ny, NAN);
                }
                const snn_bn_eval_post pp = {post == 0, post == 0 ? NULL : post == 2 ? z : res};
                snn_linear_bn_eval_fwd_post(z, y1, x, w, bias, g, be, rm, rv, M, in, out, 1e-5f,
                                            &pp);
                assert_memory_equal(want, z1, ny * sizeof *z1);
                fill_const(z1, ny, NAN);
                snn_bn_eval_fwd_post(z1, y0, g, be, rm, rv, M, out, 1e-5f,
                                     &(snn_bn_eval_post){post == 0, post == 0 ? NULL : res});
                assert_memory_equal(want, z1, ny * sizeof *z1);
            }
            size_t relu_zeros = 0;
            for (size_t i = 0; i < ny; i++) relu_zeros += z0[i] <= 0.0f;
            assert_true(relu_zeros > 0 && relu_zeros < ny); /* the ReLU cut some, not all */
            free(res), free(want);
            free(x), free(w), free(b), free(g), free(be), free(rm), free(rv);
            free(y0), free(z0), free(y1), free(z1);
        }
}

/* ---- mean pool ---------------------------------------------------------------------------- */

typedef struct pool_ctx {
    float *x, *y, *r;
    int T, B, N, D;
} pool_ctx;

static double pool_loss(void *p) {
    pool_ctx *c = p;
    snn_meanpool_fwd(c->y, c->x, c->T, c->B, c->N, c->D);
    return dot_rd(c->y, c->r, (size_t)c->B * c->D);
}

/* Forward by hand on a [T=2, B=2, N=2, D=1] ramp x = 0..7: y[0] = (0+1+4+5)/4 = 2.5,
 * y[1] = (2+3+6+7)/4 = 4.5; then dx by central differences at T=2, B=3, N=4, D=19 (two
 * feature chunks), atol 1e-6, rtol 1e-4 (L linear in x). */
static void test_meanpool_forward_and_backward(void **state) {
    (void)state;
    const float ramp[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    float y2[2];
    snn_meanpool_fwd(y2, ramp, 2, 2, 2, 1);
    assert_float_equal(y2[0], 2.5f, 0.0f);
    assert_float_equal(y2[1], 4.5f, 0.0f);

    pool_ctx c = {.T = 2, .B = 3, .N = 4, .D = 19};
    const size_t nx = (size_t)c.T * c.B * c.N * c.D, ny = (size_t)c.B * c.D;
    c.x = fvec(nx);
    c.y = fvec(ny);
    c.r = fvec(ny);
    fill_uniform(c.x, nx, 51, 1, -1.0f, 1.0f);
    fill_uniform(c.r, ny, 51, 2, -1.0f, 1.0f);
    float *dx = fvec(nx), *a = fvec(nx);
    fill_const(dx, nx, GRAD_FILL);
    snn_meanpool_bwd(dx, c.r, c.T, c.B, c.N, c.D);
    unfill(a, dx, nx);
    gradcheck("meanpool dx", c.x, nx, a, pool_loss, &c, 1e-6, 1e-4);
    free(dx);
    free(a);
    free(c.x);
    free(c.y);
    free(c.r);
}

/* The ReLU inside the pool, against the two passes it replaces (ReLU into a buffer, then the
 * pool; the pool's backward added to zeros, then ReLU's backward written on x): the same bytes,
 * at T=2, B=3, N=5, D=37 (three channel chunks, one partial) with x holding +0, -0, ties at 0
 * and negatives, and dy holding -0 (whose pooled gradient is -0: added to zeros it is +0). A
 * mask on x >= 0 or a gradient not added to zero (-0 kept) fails it. */
static void test_meanpool_relu_fused(void **state) {
    (void)state;
    const int T = 2, B = 3, N = 5, D = 37;
    const size_t nx = (size_t)T * B * N * D, ny = (size_t)B * D;
    float *x = fvec(nx), *r = fvec(nx), *dy = fvec(ny), *y0 = fvec(ny), *y1 = fvec(ny);
    float *dr = fvec(nx), *dx0 = fvec(nx), *dx1 = fvec(nx);
    fill_uniform(x, nx, 52, 1, -1.0f, 1.0f);
    fill_uniform(dy, ny, 52, 2, -1.0f, 1.0f);
    for (size_t i = 0; i < nx; i += 7) x[i] = 0.0f;
    for (size_t i = 3; i < nx; i += 11) x[i] = -0.0f;
    for (size_t i = 0; i < ny; i += 5) dy[i] = -0.0f;
    /* the two passes: ReLU (as the trainer's slot: x > 0 ? x : 0), then the pool */
    for (size_t i = 0; i < nx; i++) r[i] = x[i] > 0.0f ? x[i] : 0.0f;
    snn_meanpool_fwd(y0, r, T, B, N, D);
    snn_meanpool_relu_fwd(y1, x, T, B, N, D);
    assert_memory_equal(y0, y1, ny * sizeof *y0);
    fill_const(dr, nx, 0.0f);
    snn_meanpool_bwd(dr, dy, T, B, N, D);
    for (size_t i = 0; i < nx; i++) dx0[i] = 0.0f + (x[i] > 0.0f ? dr[i] : 0.0f);
    fill_const(dx1, nx, GRAD_FILL); /* written, not added */
    snn_meanpool_relu_bwd(dx1, dy, x, T, B, N, D);
    assert_memory_equal(dx0, dx1, nx * sizeof *dx0);
    int passed = 0; /* the mask does something: some x > 0 pass, some x <= 0 stop */
    for (size_t i = 0; i < nx; i++) passed += dx1[i] != 0.0f;
    assert_true(passed > 0 && passed < (int)nx);
    free(x), free(r), free(dy), free(y0), free(y1), free(dr), free(dx0), free(dx1);
}

/* ---- cross-entropy ------------------------------------------------------------------------ */

typedef struct ce_ctx {
    float *logits, *probs;
    int32_t *labels;
    int B, C;
    float smoothing;
} ce_ctx;

static double ce_loss(void *p) {
    ce_ctx *c = p;
    return (double)snn_cross_entropy_fwd(c->probs, c->logits, c->labels, c->B, c->C, c->smoothing);
}

/* logits [0, 0, ln 2], label 2: p = [1/4, 1/4, 1/2], NLL = ln 2; with smoothing 0.1,
 * loss = 0.9 ln 2 + 0.1 (ln 4 + ln 4 + ln 2) / 3 = (0.9 + 0.5/3) ln 2 = 0.73935694;
 * gradient p - (0.9 onehot + 0.1/3) = [0.2166667, 0.2166667, -0.4333333].
 * Shifting the logits by 1000 changes nothing (max subtraction). */
static void test_cross_entropy_hand_values(void **state) {
    (void)state;
    const double ln2 = log(2.0);
    float logits[3] = {0.0f, 0.0f, (float)ln2}, probs[3], d[3] = {0};
    const int32_t label = 2;
    const float l0 = snn_cross_entropy_fwd(probs, logits, &label, 1, 3, 0.0f);
    assert_float_equal(l0, 0.69314718f, 2e-7f);
    assert_float_equal(probs[0], 0.25f, 1e-7f);
    assert_float_equal(probs[2], 0.5f, 1e-7f);
    const float l1 = snn_cross_entropy_fwd(probs, logits, &label, 1, 3, 0.1f);
    assert_float_equal(l1, 0.73935694f, 2e-7f);
    snn_cross_entropy_bwd(d, probs, &label, 1, 3, 0.1f, 1.0f);
    assert_float_equal(d[0], 0.21666667f, 1e-7f);
    assert_float_equal(d[1], 0.21666667f, 1e-7f);
    assert_float_equal(d[2], -0.43333333f, 1e-7f);

    float big[3] = {1002.0f, 1001.0f, 1000.0f}, small[3] = {2.0f, 1.0f, 0.0f}, pb[3], ps[3];
    const int32_t lab0 = 0;
    const float lb = snn_cross_entropy_fwd(pb, big, &lab0, 1, 3, 0.1f);
    const float ls = snn_cross_entropy_fwd(ps, small, &lab0, 1, 3, 0.1f);
    assert_true(isfinite(lb));
    assert_float_equal(lb, ls, 0.0f);
    assert_memory_equal(pb, ps, sizeof pb);
}

/* dlogits by central differences, B=4, C=5, logits in [-2, 2], without and with smoothing 0.1;
 * the loss is returned in float (|L| ~ 2: rounding 1e-7 / 2 eps ~ 1e-5 per coordinate) plus
 * O(eps^2) curvature: atol 5e-5, rtol 2e-3 (worst seen: 16% of that bound). The scale
 * argument multiplies the gradient. */
static void test_cross_entropy_backward_matches_finite_differences(void **state) {
    (void)state;
    const int B = 4, C = 5;
    int32_t labels[4] = {0, 3, 4, 1};
    ce_ctx c = {.B = B, .C = C, .labels = labels};
    c.logits = fvec((size_t)B * C);
    c.probs = fvec((size_t)B * C);
    fill_uniform(c.logits, (size_t)B * C, 61, 1, -2.0f, 2.0f);
    float *d = fvec((size_t)B * C), *a = fvec((size_t)B * C), *d2 = fvec((size_t)B * C);
    const float smooth[2] = {0.0f, 0.1f};
    for (int s = 0; s < 2; s++) {
        c.smoothing = smooth[s];
        ce_loss(&c);
        fill_const(d, (size_t)B * C, GRAD_FILL);
        snn_cross_entropy_bwd(d, c.probs, labels, B, C, c.smoothing, 1.0f);
        unfill(a, d, (size_t)B * C);
        gradcheck(s ? "cross-entropy (smoothing 0.1)" : "cross-entropy", c.logits,
                  (size_t)B * C, a, ce_loss, &c, 5e-5, 2e-3);
        ce_loss(&c); /* probs at the unperturbed logits again */
        memset(d2, 0, (size_t)B * C * sizeof *d2);
        snn_cross_entropy_bwd(d2, c.probs, labels, B, C, c.smoothing, 2.5f);
        for (int i = 0; i < B * C; i++) a[i] *= 2.5f;
        snn_assert_allclose(d2, a, (size_t)B * C, 1e-6, 1e-5, "cross-entropy scale");
    }
    free(d);
    free(d2);
    free(a);
    free(c.logits);
    free(c.probs);
}

/* ---- determinism across thread counts ----------------------------------------------------- */

typedef struct det_out {
    float *y, *dx, *dw, *db;                /* linear */
    float *by, *bxhat, *bmean, *brstd, *brm, *brv, *bdx, *bdg, *bdb; /* BN */
    float *py, *pdx;                         /* mean pool */
} det_out;

/* every size above the kernels' 32768-element threshold for going parallel */
enum { DM = 1500, DIN = 40, DOUT = 50, BM = 800, BC = 50, PT = 4, PB = 8, PN = 48, PD = 24 };

static void det_run(det_out *o, const lin_ctx *l, const bn_ctx *b, const float *px,
                    const float *pdy) {
    snn_linear_fwd(o->y, l->x, l->w, l->b, DM, DIN, DOUT);
    fill_const(o->dx, (size_t)DM * DIN, GRAD_FILL);
    fill_const(o->dw, (size_t)DOUT * DIN, GRAD_FILL);
    fill_const(o->db, DOUT, GRAD_FILL);
    float *scratch = fvec(snn_linear_bwd_scratch_floats(DM, DIN, DOUT)); /* 4 row blocks */
    snn_linear_bwd(o->dx, o->dw, o->db, l->r, l->x, l->w, DM, DIN, DOUT, scratch, true);
    free(scratch);
    fill_const(o->brm, BC, 0.0f);
    fill_const(o->brv, BC, 1.0f);
    snn_bn_train_fwd(o->by, o->bxhat, o->bmean, o->brstd, b->x, b->gamma, b->beta, o->brm,
                     o->brv, BM, BC, 0.1f, 1e-5f);
    fill_const(o->bdx, (size_t)BM * BC, GRAD_FILL);
    fill_const(o->bdg, BC, GRAD_FILL);
    fill_const(o->bdb, BC, GRAD_FILL);
    snn_bn_train_bwd(o->bdx, o->bdg, o->bdb, b->r, o->bxhat, o->brstd, b->gamma, BM, BC, true);
    snn_meanpool_fwd(o->py, px, PT, PB, PN, PD);
    fill_const(o->pdx, (size_t)PT * PB * PN * PD, GRAD_FILL);
    snn_meanpool_bwd(o->pdx, pdy, PT, PB, PN, PD);
}

static void det_alloc(det_out *o) {
    o->y = fvec((size_t)DM * DOUT);
    o->dx = fvec((size_t)DM * DIN);
    o->dw = fvec((size_t)DOUT * DIN);
    o->db = fvec(DOUT);
    o->by = fvec((size_t)BM * BC);
    o->bxhat = fvec((size_t)BM * BC);
    o->bmean = fvec(BC);
    o->brstd = fvec(BC);
    o->brm = fvec(BC);
    o->brv = fvec(BC);
    o->bdx = fvec((size_t)BM * BC);
    o->bdg = fvec(BC);
    o->bdb = fvec(BC);
    o->py = fvec((size_t)PB * PD);
    o->pdx = fvec((size_t)PT * PB * PN * PD);
}

static void det_free(det_out *o) {
    float *all[] = {o->y,    o->dx,  o->dw,  o->db,  o->by,  o->bxhat, o->bmean, o->brstd,
                    o->brm,  o->brv, o->bdx, o->bdg, o->bdb, o->py,    o->pdx};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
}

static void det_compare(const det_out *a, const det_out *b, int threads) {
#define DET_EQ(f, n)                                                                            \
    do {                                                                                        \
        if (memcmp(a->f, b->f, (size_t)(n) * sizeof(float)) != 0)                               \
            fail_msg("%s differs between 1 and %d threads", #f, threads);                     \
    } while (0)
    DET_EQ(y, DM * DOUT);
    DET_EQ(dx, DM * DIN);
    DET_EQ(dw, DOUT * DIN);
    DET_EQ(db, DOUT);
    DET_EQ(by, BM * BC);
    DET_EQ(bxhat, BM * BC);
    DET_EQ(bmean, BC);
    DET_EQ(brstd, BC);
    DET_EQ(brm, BC);
    DET_EQ(brv, BC);
    DET_EQ(bdx, BM * BC);
    DET_EQ(bdg, BC);
    DET_EQ(bdb, BC);
    DET_EQ(py, PB * PD);
    DET_EQ(pdx, PT * PB * PN * PD);
#undef DET_EQ
}

/* Sizes that split: linear 3 row chunks x 4 feature chunks, BN 4 channel chunks, pool 8 rows.
 * Without OpenMP this compares two serial runs. */
static void test_layers_identical_for_1_2_3_threads(void **state) {
    (void)state;
    lin_ctx l;
    bn_ctx b;
    lin_alloc(&l, DM, DIN, DOUT, 71);
    bn_alloc(&b, BM, BC, 72);
    const size_t npx = (size_t)PT * PB * PN * PD;
    float *px = fvec(npx), *pdy = fvec((size_t)PB * PD);
    fill_uniform(px, npx, 73, 1, 0.0f, 1.0f);
    fill_uniform(pdy, (size_t)PB * PD, 73, 2, -1.0f, 1.0f);
    det_out ref, got;
    det_alloc(&ref);
    det_alloc(&got);
#ifdef _OPENMP
    const int saved = omp_get_max_threads();
    omp_set_num_threads(1);
#endif
    det_run(&ref, &l, &b, px, pdy);
    for (int threads = 2; threads <= 3; threads++) {
#ifdef _OPENMP
        omp_set_num_threads(threads);
#endif
        det_run(&got, &l, &b, px, pdy);
        det_compare(&ref, &got, threads);
    }
#ifdef _OPENMP
    omp_set_num_threads(saved);
#endif
    det_free(&ref);
    det_free(&got);
    free(px);
    free(pdy);
    lin_free(&l);
    bn_free(&b);
}

/* OpenBLAS's generic fallback is replaced only when the CPU has better, and never against a
 * user's OPENBLAS_CORETYPE. */
static void test_blas_core_for_cpu(void **state) {
    (void)state;
    const char *saved = getenv("OPENBLAS_CORETYPE");
    char keep[64] = "";
    if (saved) snprintf(keep, sizeof keep, "%s", saved);
    unsetenv("OPENBLAS_CORETYPE");
    const char *core = snn_blas_core_for_cpu();
    if (strcmp(snn_blas_core(), "Prescott") == 0 && __builtin_cpu_supports("avx2") &&
        __builtin_cpu_supports("fma"))
        assert_true(core && (!strcmp(core, "Haswell") || !strcmp(core, "SkylakeX") ||
                             !strcmp(core, "Cooperlake")));
    if (strcmp(snn_blas_core(), "Prescott") != 0 || !__builtin_cpu_supports("avx"))
        assert_null(core);
    setenv("OPENBLAS_CORETYPE", "Haswell", 1);
    assert_null(snn_blas_core_for_cpu());
    if (saved)
        setenv("OPENBLAS_CORETYPE", keep, 1);
    else
        unsetenv("OPENBLAS_CORETYPE");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear_matches_naive_reference_across_chunks),
        cmocka_unit_test(test_linear_backward_matches_finite_differences),
        cmocka_unit_test(test_linear_bits_equal_floats),
        cmocka_unit_test(test_linear_bits_large_layer),
        cmocka_unit_test(test_linear_bn_sums_equal_separate_passes),
        cmocka_unit_test(test_bn_running_stats_match_pytorch_rule),
        cmocka_unit_test(test_bn_forward_matches_naive_reference),
        cmocka_unit_test(test_bn_backward_matches_finite_differences),
        cmocka_unit_test(test_linear_fwd_norm_equals_separate),
        cmocka_unit_test(test_bn_backward_sum_equals_linear_db),
        cmocka_unit_test(test_bn_backward_on_x_equals_on_xhat),
        cmocka_unit_test(test_linear_bn_backward_fused_equals_separate),
        cmocka_unit_test(test_linear_bn_backward_bits_equals_separate),
        cmocka_unit_test(test_bn_eval_uses_running_stats),
        cmocka_unit_test(test_bn_eval_blocks_match_formula),
        cmocka_unit_test(test_linear_bn_eval_fused),
        cmocka_unit_test(test_meanpool_forward_and_backward),
        cmocka_unit_test(test_meanpool_relu_fused),
        cmocka_unit_test(test_cross_entropy_hand_values),
        cmocka_unit_test(test_cross_entropy_backward_matches_finite_differences),
        cmocka_unit_test(test_layers_identical_for_1_2_3_threads),
        cmocka_unit_test(test_blas_core_for_cpu),
    };
    return cmocka_run_group_tests_name("layers", tests, NULL, NULL);
}
