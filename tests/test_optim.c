/*
 * test_optim.c: AdamW, the warm-up + cosine schedule and gradient-norm clipping (sim/optim.c).
 *
 * AdamW is checked against an independent double-precision transcription of
 * torch.optim.AdamW's update (written out in adamw_reference below), and against two closed
 * forms that need no reference at all: the first step moves every parameter by lr * sign(g)
 * (bias corrections cancel: m1 / (1 - beta1) = g, sqrt(v1 / (1 - beta2)) = |g|), and a
 * parameter whose gradient is always 0 only decays: p_t = p_0 prod_i (1 - lr_i wd).
 * Tolerance for the float implementation against the double reference: |diff| <= 4e-7 |ref|,
 * about 3 float ulps (worst seen: 1 ulp, on a parameter).
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

#include "sim/optim.h"
#include "sim/rng.h"
#include "tests/testutil.h"

/* ---- AdamW ------------------------------------------------------------------------------ */

enum { NP = 6, NSTEPS = 3 };

/* params: 0..3 general, 4 and 5 never get a gradient (4 decays, 5 does not) */
static const float k_p0[NP] = {0.5f, -0.3f, 1.2f, 0.0f, 1.0f, 1.0f};
static const float k_g[NSTEPS][NP] = {
    {0.1f, -0.2f, 0.05f, 0.3f, 0.0f, 0.0f},
    {-0.05f, 0.1f, 0.2f, -0.1f, 0.0f, 0.0f},
    {0.3f, 0.0f, -0.4f, 0.05f, 0.0f, 0.0f},
};
static const float k_lr[NSTEPS] = {1e-2f, 2e-2f, 5e-3f};
static const uint8_t k_mask[NP] = {1, 0, 1, 0, 1, 0};
static const double k_wd = 0.1;

/* torch.optim.AdamW, in double, for step t = 1, 2, ...:
 *     p  <- p (1 - lr wd)                    (only where decayed)
 *     m  <- 0.9 m + 0.1 g
 *     v  <- 0.999 v + 0.001 g^2
 *     mhat = m / (1 - 0.9^t),  p <- p - lr mhat / (sqrt(v) / sqrt(1 - 0.999^t) + 1e-8) */
static void adamw_reference(double *p, double *m, double *v, const uint8_t *mask, double wd) {
    for (int i = 0; i < NP; i++) {
        p[i] = k_p0[i];
        m[i] = v[i] = 0.0;
    }
    for (int s = 0; s < NSTEPS; s++) {
        const int t = s + 1;
        const double lr = k_lr[s];
        for (int i = 0; i < NP; i++) {
            const double g = k_g[s][i];
            if (!mask || mask[i]) p[i] *= 1.0 - lr * wd;
            m[i] = 0.9 * m[i] + 0.1 * g;
            v[i] = 0.999 * v[i] + 0.001 * g * g;
            const double mhat = m[i] / (1.0 - pow(0.9, t));
            const double den = sqrt(v[i]) / sqrt(1.0 - pow(0.999, t)) + 1e-8;
            p[i] -= lr * mhat / den;
        }
    }
}

static void run_adamw(float *p, snn_adamw *opt, const uint8_t *mask) {
    memcpy(p, k_p0, sizeof k_p0);
    snn_adamw_init(opt, NP, k_wd);
    for (int s = 0; s < NSTEPS; s++) snn_adamw_step(opt, p, k_g[s], mask, k_lr[s]);
}

static void to_float(float *out, const double *in, int n) {
    for (int i = 0; i < n; i++) out[i] = (float)in[i];
}

static void test_adamw_three_steps_match_torch_formulas(void **state) {
    (void)state;
    const uint8_t *masks[2] = {k_mask, NULL};
    for (int k = 0; k < 2; k++) {
        double pr[NP], mr[NP], vr[NP];
        float p[NP], ref[NP];
        snn_adamw opt;
        adamw_reference(pr, mr, vr, masks[k], k_wd);
        run_adamw(p, &opt, masks[k]);
        assert_int_equal(opt.step, NSTEPS);
        to_float(ref, pr, NP);
        snn_assert_allclose(p, ref, NP, 0, 4e-7, k ? "adamw params (no mask)" : "adamw params");
        to_float(ref, mr, NP);
        snn_assert_allclose(opt.m, ref, NP, 0, 4e-7, "adamw m");
        to_float(ref, vr, NP);
        snn_assert_allclose(opt.v, ref, NP, 0, 4e-7, "adamw v");

        /* closed form for the gradient-free parameters */
        const double decay = (1.0 - 1e-2 * k_wd) * (1.0 - 2e-2 * k_wd) * (1.0 - 5e-3 * k_wd);
        assert_float_equal(p[4], (float)decay, 1e-7f);
        if (masks[k]) assert_true(p[5] == 1.0f); /* masked: untouched, bit for bit */
        else assert_float_equal(p[5], (float)decay, 1e-7f);
        snn_adamw_free(&opt);
        snn_adamw_free(&opt); /* safe twice */
        assert_null(opt.m);
    }
}

/* Step 1 without decay moves each parameter by -lr g / (|g| + eps): lr sign(g) up to 1e-7 lr. */
static void test_adamw_first_step_is_lr_times_sign(void **state) {
    (void)state;
    snn_adamw opt;
    float p[NP];
    memcpy(p, k_p0, sizeof p);
    snn_adamw_init(&opt, NP, 0.0f);
    snn_adamw_step(&opt, p, k_g[0], NULL, 1e-2f);
    for (int i = 0; i < NP; i++) {
        const float g = k_g[0][i];
        const float want = k_p0[i] - (g > 0 ? 1e-2f : g < 0 ? -1e-2f : 0.0f);
        assert_float_equal(p[i], want, 2e-7f);
    }
    snn_adamw_free(&opt);
}

/* ---- schedule ---------------------------------------------------------------------------- */

/* base 1e-3, min 1e-5, 100 steps, 10 warm-up:
 *   step 0: 1e-3 * 1/10 = 1e-4;  step 4 (mid warm-up): 5e-4;  step 9 (last warm-up): 1e-3
 *   step 10 (cosine start): 1e-3;  step 40 (cos(pi/3)): 1e-5 + 0.99e-3 * 0.75 = 7.525e-4
 *   step 55 (halfway): 1e-5 + 0.99e-3 * 0.5 = 5.05e-4;  step 100 (end): 1e-5;  after: 1e-5 */
static void test_lr_cosine_values(void **state) {
    (void)state;
    const struct {
        int64_t step;
        double want;
    } cases[] = {{0, 1e-4},       {4, 5e-4},     {9, 1e-3},  {10, 1e-3}, {40, 7.525e-4},
                 {55, 5.05e-4},   {100, 1e-5},   {150, 1e-5}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const float got = snn_lr_cosine(cases[i].step, 100, 10, 1e-3f, 1e-5f);
        if (fabs((double)got - cases[i].want) > 1e-6 * cases[i].want + 1e-12)
            fail_msg("lr at step %lld: got %.9g, expected %.9g", (long long)cases[i].step,
                     (double)got, cases[i].want);
    }
    /* no warm-up: starts at base; train_ref.py's min_lr = 0 ends at 0 */
    assert_float_equal(snn_lr_cosine(0, 50, 0, 2e-3f, 0.0f), 2e-3f, 0.0f);
    assert_float_equal(snn_lr_cosine(50, 50, 0, 2e-3f, 0.0f), 0.0f, 1e-12f);
    /* warm-up as long as the run: the cosine span is clamped to 1 (train_ref.py's max(1, .)) */
    assert_float_equal(snn_lr_cosine(9, 10, 10, 2e-3f, 0.0f), 2e-3f, 0.0f);
    assert_float_equal(snn_lr_cosine(10, 10, 10, 2e-3f, 0.0f), 2e-3f, 0.0f);
    assert_float_equal(snn_lr_cosine(11, 10, 10, 2e-3f, 0.0f), 0.0f, 0.0f);
}

/* ---- gradient norm and clipping ---------------------------------------------------------- */

/* [3, 4]: norm 5. max_norm 1 scales by 1 / (5 + 1e-6); max_norm 10 leaves g bit for bit. */
static void test_clip_grad_norm_scales_like_torch(void **state) {
    (void)state;
    float g[2] = {3.0f, 4.0f};
    assert_true(snn_grad_norm(g, 2) == 5.0);
    assert_true(snn_clip_grad_norm(g, 2, 10.0f) == 5.0);
    assert_true(g[0] == 3.0f && g[1] == 4.0f);
    assert_true(snn_clip_grad_norm(g, 2, 1.0f) == 5.0);
    const double coef = 1.0 / (5.0 + 1e-6);
    assert_float_equal(g[0], (float)(3.0 * coef), 1e-7f);
    assert_float_equal(g[1], (float)(4.0 * coef), 1e-7f);
    assert_float_equal(g[0], 0.6f, 2e-7f);
    assert_float_equal((float)snn_grad_norm(g, 2), 1.0f, 1e-6f);
    assert_true(snn_grad_norm(g, 0) == 0.0);
}

/* Against a plain double loop, for n below, at and above the chunk count (256), relative
 * 1e-13 (different summation order, double). */
static void test_grad_norm_matches_naive_sum(void **state) {
    (void)state;
    const size_t sizes[] = {1, 3, 255, 256, 257, 1000, 100003};
    float *g = malloc(100003 * sizeof *g);
    assert_non_null(g);
    for (size_t i = 0; i < 100003; i++) g[i] = 2.0f * snn_rng_uniform(81, 1, i) - 1.0f;
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        double s = 0.0;
        for (size_t i = 0; i < sizes[k]; i++) s += (double)g[i] * g[i];
        const double want = sqrt(s), got = snn_grad_norm(g, sizes[k]);
        if (fabs(got - want) > 1e-13 * want)
            fail_msg("n = %zu: norm %.17g, expected %.17g", sizes[k], got, want);
    }
    free(g);
}

/* grad_norm, clipping and AdamW give the same bits for 1, 2 and 3 threads (n = 1,000,003:
 * every thread gets several chunks). Without OpenMP this compares two serial runs. */
static void test_optim_identical_for_1_2_3_threads(void **state) {
    (void)state;
    const size_t n = 1000003;
    float *g = malloc(n * sizeof *g), *gc = malloc(n * sizeof *gc), *p = malloc(n * sizeof *p);
    float *gc1 = malloc(n * sizeof *gc1), *p1 = malloc(n * sizeof *p1);
    uint8_t *mask = malloc(n);
    assert_true(g && gc && p && gc1 && p1 && mask);
    for (size_t i = 0; i < n; i++) {
        g[i] = 2.0f * snn_rng_uniform(91, 1, i) - 1.0f;
        mask[i] = (uint8_t)(i % 3 != 0);
    }
    double norm1 = 0.0;
#ifdef _OPENMP
    const int saved = omp_get_max_threads();
#endif
    for (int threads = 1; threads <= 3; threads++) {
#ifdef _OPENMP
        omp_set_num_threads(threads);
#endif
        const double norm = snn_grad_norm(g, n);
        memcpy(gc, g, n * sizeof *g);
        const double norm_c = snn_clip_grad_norm(gc, n, 1.0f);
        assert_memory_equal(&norm, &norm_c, sizeof norm);
        for (size_t i = 0; i < n; i++) p[i] = 0.5f * g[(i * 7) % n];
        snn_adamw opt;
        snn_adamw_init(&opt, n, 0.05f);
        snn_adamw_step(&opt, p, gc, mask, 1e-3f);
        snn_adamw_step(&opt, p, g, mask, 2e-3f);
        snn_adamw_free(&opt);
        if (threads == 1) {
            norm1 = norm;
            memcpy(gc1, gc, n * sizeof *gc);
            memcpy(p1, p, n * sizeof *p);
        } else {
            if (memcmp(&norm, &norm1, sizeof norm) != 0)
                fail_msg("grad norm differs: %.17g (1 thread) vs %.17g (%d)", norm1, norm, threads);
            if (memcmp(gc, gc1, n * sizeof *gc) != 0) fail_msg("clipped grads differ (%d)", threads);
            if (memcmp(p, p1, n * sizeof *p) != 0) fail_msg("adamw params differ (%d)", threads);
        }
    }
#ifdef _OPENMP
    omp_set_num_threads(saved);
#endif
    free(g);
    free(gc);
    free(p);
    free(gc1);
    free(p1);
    free(mask);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adamw_three_steps_match_torch_formulas),
        cmocka_unit_test(test_adamw_first_step_is_lr_times_sign),
        cmocka_unit_test(test_lr_cosine_values),
        cmocka_unit_test(test_clip_grad_norm_scales_like_torch),
        cmocka_unit_test(test_grad_norm_matches_naive_sum),
        cmocka_unit_test(test_optim_identical_for_1_2_3_threads),
    };
    return cmocka_run_group_tests_name("optim", tests, NULL, NULL);
}
