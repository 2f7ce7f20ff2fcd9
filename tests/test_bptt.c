/*
 * test_bptt.c: multi-step neuron forward and BPTT backward (neurons/bptt.c) against the
 * inference step, a hand-worked example, finite differences and a double-precision reference
 * (spec/model.md section 1, research/methods.md 1.3-1.4, style.md 3.10).
 *
 *   (a) forward_seq (normal mode) == snn_neuron_step T times, bit for bit, every neuron kind
 *   (b) the exact BPTT of one LIF on a three-step example worked by hand (closed form, double)
 *   (c) finite differences of the smooth forward (detach_reset = false) on every x and on tau
 *   (d) detach_reset = true differs from false exactly by the reset path
 *   (e) the normal-mode backward on populations larger than a tile against a double reference
 *
 * Tolerances: (a) exact; (b), (d) 1e-6 (the float recursion rounds a handful of operations of
 * values below 4); (c) |a - n| < 1e-4 or relative < 1e-2 (the smooth forward runs in float, so
 * a central difference with eps 1e-3 carries ~1e-5 of rounding noise); (e) 1e-5 relative.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "neurons/neuron.h"
#include "sim/rng.h"
#include "tests/testutil.h"

/* ---- helpers ------------------------------------------------------------------------------ */

typedef struct trng {
    uint64_t seed, ctr;
} trng;

static double trng_unif(trng *r) {
    return (double)(snn_rng_u64(r->seed, 11, r->ctr++) >> 11) * 0x1p-53;
}

static float trng_range(trng *r, double lo, double hi) {
    return (float)(lo + (hi - lo) * trng_unif(r));
}

static const float SENTINEL = 12345.0f;

typedef struct ncfg {
    char name[96];
    snn_neuron_params p;
} ncfg;

/* Input range that keeps H near the threshold for this neuron (bipolar: random sign). */
static float draw_x(trng *r, const snn_neuron_params *p) {
    float lo, hi;
    if (p->kind == SNN_NEURON_IF) {
        lo = -0.4f, hi = 0.9f;
    } else if (p->decay_input) {
        lo = 0.3f * p->tau / 2.0f, hi = 3.0f * p->tau / 2.0f;
    } else {
        lo = 0.2f, hi = 1.4f;
    }
    float x = trng_range(r, lo, hi);
    if (p->bipolar && trng_unif(r) < 0.5) x = -x;
    return x;
}

/* Every combination: kind {LIF, IF, PLIF, bipolar LIF} x reset {hard 0, hard -0.2, soft} x
 * decay_input x surrogate (sigmoid alpha 4, atan 2, triangle 1). Returns the count. */
static int all_configs(ncfg *out, bool detach) {
    static const char *const kinds[4] = {"LIF", "IF", "PLIF", "bipolarLIF"};
    static const char *const resets[3] = {"hard0", "hard-0.2", "soft"};
    static const char *const surrs[3] = {"sigmoid", "atan", "triangle"};
    int n = 0;
    for (int kd = 0; kd < 4; kd++)
        for (int rs = 0; rs < 3; rs++)
            for (int di = 0; di < 2; di++)
                for (int sg = 0; sg < 3; sg++) {
                    snn_neuron_params p = snn_neuron_defaults();
                    p.kind = kd == 1 ? SNN_NEURON_IF : kd == 2 ? SNN_NEURON_PLIF : SNN_NEURON_LIF;
                    if (kd == 2) p.tau = 3.0f;  /* non-dyadic 1/tau */
                    p.bipolar = kd == 3;
                    p.soft_reset = rs == 2;
                    p.v_reset = rs == 1 ? -0.2f : 0.0f;
                    p.decay_input = di == 0;
                    p.surrogate = sg == 0   ? SNN_SURROGATE_SIGMOID
                                  : sg == 1 ? SNN_SURROGATE_ATAN
                                            : SNN_SURROGATE_TRIANGLE;
                    p.alpha = sg == 0 ? 4.0f : sg == 1 ? 2.0f : 1.0f;
                    p.detach_reset = detach;
                    out[n].p = p;
                    snprintf(out[n].name, sizeof out[n].name, "%s %s %s %s %s", kinds[kd],
                             resets[rs], di == 0 ? "decay_input" : "no_decay_input", surrs[sg],
                             detach ? "detach" : "no_detach");
                    n++;
                }
    return n;
}
enum { N_CONFIGS = 72 };

/* ---- (a) forward_seq == T calls of snn_neuron_step ----------------------------------------- */

static void check_forward_matches_step(const snn_neuron_params *p, const char *name, size_t n,
                                       size_t ld, int T, uint64_t seed) {
    trng r = {seed, 0};
    const size_t tot = (size_t)T * ld;
    float *x = malloc(tot * sizeof *x), *s = malloc(tot * sizeof *s);
    float *h = malloc(tot * sizeof *h), *href = malloc(n * sizeof *href);
    float *v = malloc(n * sizeof *v);
    int8_t *sref = malloc(n);
    for (size_t t = 0; t < tot; t++) {
        x[t] = draw_x(&r, p);
        s[t] = SENTINEL;
        h[t] = SENTINEL;
    }
    /* exactly-at-threshold inputs: a LIF at rest with decay_input reaches H = th = 1 from X = 2 */
    for (size_t i = 0; i < n; i += 5) x[i] = 2.0f;
    snn_neuron_forward_seq(p, T, n, ld, x, s, h, false);

    snn_neuron_reset_state(p, n, v);
    for (int t = 0; t < T; t++) {
        const size_t row = (size_t)t * ld;
        snn_neuron_step(p, n, x + row, v, sref, href);
        for (size_t i = 0; i < n; i++) {
            if (s[row + i] != (float)sref[i])
                fail_msg("%s: S[%d][%zu] = %g, step gives %d", name, t, i, (double)s[row + i],
                         sref[i]);
        }
        if (memcmp(h + row, href, n * sizeof *href) != 0)
            fail_msg("%s: H row %d differs from snn_neuron_step", name, t);
        for (size_t c = n; c < ld; c++)
            if (s[row + c] != SENTINEL || h[row + c] != SENTINEL)
                fail_msg("%s: column %zu >= n written", name, c);
    }
    free(x), free(s), free(h), free(href), free(v), free(sref);
}

static void test_forward_seq_matches_step(void **state) {
    (void)state;
    ncfg cfg[N_CONFIGS];
    const int nc = all_configs(cfg, true);
    for (int c = 0; c < nc; c++) {
        if (cfg[c].p.surrogate != SNN_SURROGATE_SIGMOID) continue;  /* irrelevant forward */
        check_forward_matches_step(&cfg[c].p, cfg[c].name, 37, 40, 7, 100 + (uint64_t)c);
        check_forward_matches_step(&cfg[c].p, cfg[c].name, 300, 301, 5, 200 + (uint64_t)c);
        check_forward_matches_step(&cfg[c].p, cfg[c].name, 3, 3, 4, 300 + (uint64_t)c);
    }
}

/* snn_neuron_forward_seq_bits gives snn_neuron_forward_seq's H (and its floats, when asked) and
 * their bits: bit i of row t's words is S != 0, the neg plane S < 0, bits past n are 0, words
 * past the row untouched (wld > the row's words). Sizes: whole and partial words and tiles.
 * With an affine input (width 48 from channel 5: tiles start mid-row) it equals the forward on
 * gamma[c] x + beta[c] computed beforehand, as BatchNorm writes it; with a normalising one, the
 * forward on gamma[c] ((x - mean[c]) rstd[c]) + beta[c], byte for byte. */
static void test_forward_seq_bits_matches_floats(void **state) {
    (void)state;
    ncfg cfg[N_CONFIGS];
    const int nc = all_configs(cfg, true);
    static const size_t ns[] = {1, 64, 100, 256, 300, 640};
    enum { T = 4, WLD = 12 };
    for (int c = 0; c < nc; c++) {
        const snn_neuron_params *p = &cfg[c].p;
        if (p->surrogate != SNN_SURROGATE_SIGMOID) continue; /* irrelevant forward */
        for (size_t k = 0; k < sizeof ns / sizeof *ns; k++) {
            const size_t n = ns[k], ld = n + 3;
            float *x = malloc(T * ld * sizeof *x), *s = malloc(T * ld * sizeof *s);
            float *h = malloc(T * ld * sizeof *h), *s2 = malloc(T * ld * sizeof *s2);
            float *h2 = malloc(T * ld * sizeof *h2), *xz = malloc(T * ld * sizeof *xz);
            uint64_t nz[T * WLD], neg[T * WLD];
            enum { W = 48, C0 = 5 };
            float gamma[W], beta[W], mean[W], rstd[W];
            trng r = {1300 + (uint64_t)c * 16 + k, 0};
            for (size_t t = 0; t < T * ld; t++) x[t] = draw_x(&r, p);
            for (int w = 0; w < W; w++) {
                gamma[w] = trng_range(&r, 0.5, 1.5);
                beta[w] = trng_range(&r, -0.3, 0.3);
                mean[w] = trng_range(&r, -0.2, 0.2);
                rstd[w] = trng_range(&r, 0.7, 1.4);
            }
            float *xh = malloc(T * ld * sizeof *xh), *xzn = malloc(T * ld * sizeof *xzn);
            const snn_neuron_affine af = {gamma, beta, W, C0, NULL, NULL};
            const snn_neuron_affine afn = {gamma, beta, W, C0, mean, rstd};
            for (size_t t = 0; t < T; t++)
                for (size_t i = 0; i < n; i++) {
                    const size_t ch = (C0 + i) % W, e = t * ld + i;
                    xz[e] = gamma[ch] * x[e] + beta[ch];
                    xh[e] = (x[e] - mean[ch]) * rstd[ch]; /* as BatchNorm normalises */
                    xzn[e] = gamma[ch] * xh[e] + beta[ch];
                }
            /* variants: bits only; with floats; affine input; normalising affine input */
            for (int variant = 0; variant < 4; variant++) {
                const bool with_floats = variant == 1, affine = variant == 2, norm = variant == 3;
                memset(nz, 0xAB, sizeof nz), memset(neg, 0xAB, sizeof neg);
                snn_neuron_forward_seq(p, T, n, ld, affine ? xz : norm ? xzn : x, s, h, false);
                snn_neuron_forward_seq_bits(p, T, n, ld, x, affine ? &af : norm ? &afn : NULL,
                                            with_floats ? s2 : NULL, nz, p->bipolar ? neg : NULL,
                                            WLD, h2);
                for (int t = 0; t < T; t++) {
                    const size_t row = (size_t)t * ld;
                    assert_memory_equal(h + row, h2 + row, n * sizeof *h);
                    if (with_floats) assert_memory_equal(s + row, s2 + row, n * sizeof *s);
                    for (size_t w = 0; w < WLD; w++) {
                        uint64_t want_nz = 0, want_neg = 0;
                        for (size_t b = 0; b < 64 && 64 * w + b < n; b++) {
                            const float sv = s[row + 64 * w + b];
                            want_nz |= (uint64_t)(sv != 0.0f) << b;
                            want_neg |= (uint64_t)(sv < 0.0f) << b;
                        }
                        if (64 * w >= n) want_nz = want_neg = 0xABABABABABABABABull;
                        assert_true(nz[t * WLD + w] == want_nz);
                        if (p->bipolar) assert_true(neg[t * WLD + w] == want_neg);
                    }
                }
            }
            free(x), free(s), free(h), free(s2), free(h2), free(xz), free(xh);
            free(xzn);
        }
    }
}

/* ---- (b), (d) the hand-worked example ------------------------------------------------------ */

/*
 * One LIF, tau 2, v_th 1, v_reset 0 (or soft), decay_input, sigmoid alpha 4, three steps,
 * X = [1.5, 2.5, 1.0], upstream gradient dS = [0.25, -0.5, 1].
 *
 * Forward (exact in float: every value is dyadic):
 *   t0: H0 = 0 + (1.5 - 0) / 2 = 0.75     S0 = 0    V0 = 0.75
 *   t1: H1 = 0.75 + (2.5 - 0.75) / 2 = 1.625     S1 = 1    V1 = 0 (hard), 0.625 (soft)
 *   t2: H2 = V1 + (1 - V1) / 2 = 0.5 (hard), 0.8125 (soft)     S2 = 0
 *
 * Backward (methods 1.4), psi_t = 4 sg(4 (H_t - 1)) (1 - sg(4 (H_t - 1))), dH[t+1]/dV[t] = 1/2:
 *   dH2 = dS2 psi2
 *   dH1 = dS1 psi1 + dH2 (1/2) gamma1
 *   dH0 = dS0 psi0 + dH1 (1/2) gamma0
 *   dX_t = dH_t / 2
 * with gamma_t = dV_t/dH_t:
 *   hard, detach:     gamma0 = 1 - S0 = 1                 gamma1 = 1 - S1 = 0
 *   hard, no detach:  gamma0 = 1 + (0 - 0.75) psi0        gamma1 = 0 + (0 - 1.625) psi1
 *   soft, detach:     gamma0 = 1                          gamma1 = 1
 *   soft, no detach:  gamma0 = 1 - psi0                   gamma1 = 1 - psi1
 * so the reset path (d) is the (v_reset - H) psi or -th psi term of gamma, nothing else: the
 * no-detach minus detach difference is
 *   dX2: 0
 *   dX1: (1/2) dH2 (1/2) [gamma1' - gamma1]
 *   dX0: (1/2) (1/2) [dH1' gamma0' - dH1 gamma0]          (primes: no detach)
 *
 * dL/dtau (PLIF), V[-1] = 0: dH_t/dtau = -(X_t - V[t-1]) / tau^2 = -(X_t - V[t-1]) / 4:
 *   t0: -(1.5 - 0) / 4    t1: -(2.5 - 0.75) / 4    t2: -(1 - V1) / 4,  V1 = 0 (hard), 0.625 (soft)
 *   dtau = sum_t dH_t dH_t/dtau
 */
typedef struct hand {
    double dx[3], dtau;
} hand;

static double sig(double x) { return 1.0 / (1.0 + exp(-x)); }
static double psi_sig4(double h) {
    return 4.0 * sig(4.0 * (h - 1.0)) * (1.0 - sig(4.0 * (h - 1.0)));
}

static hand hand_expected(bool soft, bool detach) {
    const double X[3] = {1.5, 2.5, 1.0}, dS[3] = {0.25, -0.5, 1.0};
    const double V1 = soft ? 0.625 : 0.0;
    const double H[3] = {0.75, 1.625, soft ? 0.8125 : 0.5};
    const double Vprev[3] = {0.0, 0.75, V1};
    const double p0 = psi_sig4(H[0]), p1 = psi_sig4(H[1]), p2 = psi_sig4(H[2]);
    double g0, g1;
    if (!soft) {
        g0 = detach ? 1.0 : 1.0 + (0.0 - H[0]) * p0;
        g1 = detach ? 0.0 : 0.0 + (0.0 - H[1]) * p1;
    } else {
        g0 = detach ? 1.0 : 1.0 - p0;
        g1 = detach ? 1.0 : 1.0 - p1;
    }
    const double dH2 = dS[2] * p2;
    const double dH1 = dS[1] * p1 + dH2 * 0.5 * g1;
    const double dH0 = dS[0] * p0 + dH1 * 0.5 * g0;
    const double dH[3] = {dH0, dH1, dH2};
    hand e = {{dH0 / 2, dH1 / 2, dH2 / 2}, 0.0};
    for (int t = 0; t < 3; t++) e.dtau += dH[t] * (-(X[t] - Vprev[t]) / 4.0);
    return e;
}

static void run_hand(bool soft, bool detach, float dx[3], float *dtau) {
    snn_neuron_params p = snn_neuron_defaults();
    p.kind = SNN_NEURON_PLIF;  /* a LIF whose dtau we want */
    p.soft_reset = soft;
    p.detach_reset = detach;
    const float x[3] = {1.5f, 2.5f, 1.0f}, ds[3] = {0.25f, -0.5f, 1.0f};
    float s[3], h[3];
    snn_neuron_forward_seq(&p, 3, 1, 1, x, s, h, false);
    const float h_want[3] = {0.75f, 1.625f, soft ? 0.8125f : 0.5f};
    const float s_want[3] = {0.0f, 1.0f, 0.0f};
    assert_memory_equal(h, h_want, sizeof h);
    assert_memory_equal(s, s_want, sizeof s);
    dx[0] = dx[1] = dx[2] = 0.0f;
    *dtau = 0.0f;
    snn_neuron_backward_seq(&p, 3, 1, 1, x, h, ds, dx, dtau);
}

static void test_hand_example(void **state) {
    (void)state;
    for (int soft = 0; soft < 2; soft++)
        for (int detach = 0; detach < 2; detach++) {
            float dx[3], dtau;
            run_hand(soft, detach, dx, &dtau);
            const hand e = hand_expected(soft, detach);
            for (int t = 0; t < 3; t++)
                if (fabs((double)dx[t] - e.dx[t]) > 1e-6)
                    fail_msg("%s %s: dX[%d] = %.9g, hand %.9g", soft ? "soft" : "hard",
                             detach ? "detach" : "no detach", t, (double)dx[t], e.dx[t]);
            if (fabs((double)dtau - e.dtau) > 1e-6)
                fail_msg("%s %s: dtau = %.9g, hand %.9g", soft ? "soft" : "hard",
                         detach ? "detach" : "no detach", (double)dtau, e.dtau);
        }
    /* Spot values for the default (hard, detach): psi(0.75) = 4 sg(-1)(1 - sg(-1)),
     * dX1 = -0.5 psi(1.625) / 2 (gamma1 = 0 cuts the path from t2), written out:
     * sg(2.5) = 0.924141820, psi1 = 4 * 0.924141820 * 0.075858180 = 0.280414866 */
    float dx[3], dtau;
    run_hand(false, true, dx, &dtau);
    assert_true(fabs((double)dx[1] - (-0.5 * 0.280414866 / 2.0)) < 1e-7);
}

/* (d): no detach minus detach is the reset path, term by term (see the derivation above). */
static void test_detach_differs_by_reset_path(void **state) {
    (void)state;
    for (int soft = 0; soft < 2; soft++) {
        float dxd[3], dxn[3], td, tn;
        run_hand(soft, true, dxd, &td);
        run_hand(soft, false, dxn, &tn);
        /* the last step's reset never matters: bit-identical */
        assert_true(dxd[2] == dxn[2]);
        const double H0 = 0.75, H1 = 1.625, H2 = soft ? 0.8125 : 0.5;
        const double p0 = psi_sig4(H0), p1 = psi_sig4(H1), p2 = psi_sig4(H2);
        const double dH2 = 1.0 * p2;
        /* reset-path terms of gamma: (v_reset - H) psi (hard), -th psi (soft) */
        const double rp0 = soft ? -p0 : (0.0 - H0) * p0;
        const double rp1 = soft ? -p1 : (0.0 - H1) * p1;
        const double g0d = 1.0, g1d = soft ? 1.0 : 0.0;  /* detached gammas */
        const double dH1d = -0.5 * p1 + dH2 * 0.5 * g1d;
        const double dH1n = -0.5 * p1 + dH2 * 0.5 * (g1d + rp1);
        const double want1 = 0.5 * dH2 * 0.5 * rp1;
        const double want0 = 0.5 * 0.5 * (dH1n * (g0d + rp0) - dH1d * g0d);
        if (fabs(((double)dxn[1] - dxd[1]) - want1) > 1e-6)
            fail_msg("%s: dX1 difference %.9g, reset path %.9g", soft ? "soft" : "hard",
                     (double)dxn[1] - dxd[1], want1);
        if (fabs(((double)dxn[0] - dxd[0]) - want0) > 1e-6)
            fail_msg("%s: dX0 difference %.9g, reset path %.9g", soft ? "soft" : "hard",
                     (double)dxn[0] - dxd[0], want0);
    }
}

/* (d), structural: with a detached hard reset no gradient crosses a spike, so wherever S[t] != 0
 * dX[t] is the local term dS psi / tau alone, bit for bit; and dX[T-1] never depends on
 * detach_reset. Random populations, every hard-reset configuration. */
static void test_detached_hard_reset_cuts_at_spikes(void **state) {
    (void)state;
    ncfg cfg[N_CONFIGS];
    const int nc = all_configs(cfg, true);
    const int T = 6;
    const size_t n = 50, ld = 50;
    float x[6 * 50], s[6 * 50], h[6 * 50], ds[6 * 50], dx[6 * 50], dx2[6 * 50];
    size_t cut = 0;
    for (int c = 0; c < nc; c++) {
        snn_neuron_params p = cfg[c].p;
        trng r = {900 + (uint64_t)c, 0};
        for (size_t t = 0; t < (size_t)T * ld; t++) {
            x[t] = draw_x(&r, &p);
            ds[t] = trng_range(&r, -1.0, 1.0);
            dx[t] = dx2[t] = 0.0f;
        }
        snn_neuron_forward_seq(&p, T, n, ld, x, s, h, false);
        snn_neuron_backward_seq(&p, T, n, ld, x, h, ds, dx, NULL);
        p.detach_reset = false;
        snn_neuron_backward_seq(&p, T, n, ld, x, h, ds, dx2, NULL);
        const size_t last = (size_t)(T - 1) * ld;
        assert_memory_equal(dx + last, dx2 + last, n * sizeof *dx);
        if (p.soft_reset) continue;
        const bool x_over_tau = p.kind != SNN_NEURON_IF && p.decay_input;
        for (size_t t = 0; t < (size_t)T * ld; t++) {
            if (s[t] == 0.0f) continue;
            const float psi = snn_neuron_spike_grad(&p, h[t]);
            const float local = ds[t] * psi + 0.0f;
            const float want = x_over_tau ? local / p.tau : local;
            if (dx[t] != want)
                fail_msg("%s: dX at a spike = %.9g, local term %.9g", cfg[c].name, (double)dx[t],
                         (double)want);
            cut++;
        }
    }
    assert_true(cut > 100);
}

/* ---- (c) finite differences of the smooth forward ------------------------------------------ */

/* L = sum_t sum_i r[t, i] S[t, i] in double, smooth forward. */
static double smooth_loss(const snn_neuron_params *p, int T, size_t n, size_t ld, const float *x,
                          const float *r, float *s, float *h) {
    snn_neuron_forward_seq(p, T, n, ld, x, s, h, true);
    double L = 0.0;
    for (int t = 0; t < T; t++)
        for (size_t i = 0; i < n; i++) L += (double)r[(size_t)t * ld + i] * s[(size_t)t * ld + i];
    return L;
}

/* Within 3 eps of a kink of the triangle surrogate (x = 0 or |x| = 1/alpha) on either side. */
static bool near_kink(const snn_neuron_params *p, float hv, double eps) {
    if (p->surrogate != SNN_SURROGATE_TRIANGLE) return false;
    const double inv = 1.0 / p->alpha;
    for (int side = 0; side < (p->bipolar ? 2 : 1); side++) {
        const double xx = side == 0 ? (double)hv - p->v_threshold : -(double)hv - p->v_threshold;
        if (fabs(xx) < 3 * eps || fabs(fabs(xx) - inv) < 3 * eps) return true;
    }
    return false;
}

typedef struct fdstat {
    size_t checked, skipped;
    double max_rel;
} fdstat;

static void fd_compare(double a, double num, const char *name, const char *what, int t, size_t i,
                       fdstat *st) {
    const double diff = fabs(a - num);
    const double rel = diff / fmax(fmax(fabs(a), fabs(num)), 1e-30);
    if (!(diff < 1e-4 || rel < 1e-2))
        fail_msg("%s: d%s[%d][%zu]: backward %.9g, finite difference %.9g", name, what, t, i, a,
                 num);
    if (fmax(fabs(a), fabs(num)) >= 1e-2 && rel > st->max_rel) st->max_rel = rel;
    st->checked++;
}

static void test_fd_smooth(void **state) {
    (void)state;
    ncfg cfg[N_CONFIGS];
    const int nc = all_configs(cfg, false);
    enum { T = 6, NN = 4, LD = 5 };
    const double eps = 1e-3;
    fdstat st = {0, 0, 0.0};
    float x[T * LD], r[T * LD], s[T * LD], h[T * LD], dx[T * LD], hb[T * LD];
    for (int c = 0; c < nc; c++) {
        const snn_neuron_params p = cfg[c].p;
        trng rg = {5000 + (uint64_t)c, 0};
        for (int t = 0; t < T * LD; t++) {
            x[t] = draw_x(&rg, &p);
            r[t] = trng_range(&rg, -1.0, 1.0);
            dx[t] = 0.0f;
        }
        /* analytic: backward with dS = r */
        smooth_loss(&p, T, NN, LD, x, r, s, hb);
        float dtau = 0.0f;
        snn_neuron_backward_seq_smooth(&p, T, NN, LD, x, hb, s, r, dx, &dtau);

        for (int t = 0; t < T; t++)
            for (size_t i = 0; i < NN; i++) {
                bool kink = false;
                for (int u = t; u < T; u++) kink |= near_kink(&p, hb[(size_t)u * LD + i], eps);
                if (kink) {
                    st.skipped++;
                    continue;
                }
                const size_t at = (size_t)t * LD + i;
                const float x0 = x[at];
                const float xp = (float)(x0 + eps), xm = (float)(x0 - eps);
                x[at] = xp;
                const double Lp = smooth_loss(&p, T, NN, LD, x, r, s, h);
                x[at] = xm;
                const double Lm = smooth_loss(&p, T, NN, LD, x, r, s, h);
                x[at] = x0;
                fd_compare(dx[at], (Lp - Lm) / ((double)xp - xm), cfg[c].name, "X", t, i, &st);
            }

        if (p.kind == SNN_NEURON_IF) {
            assert_true(dtau == 0.0f);  /* IF has no tau: nothing accumulated */
            continue;
        }
        bool kink = false;
        for (int t = 0; t < T * LD; t++) kink |= (t % LD) < NN && near_kink(&p, hb[t], eps);
        if (kink) {
            st.skipped++;
            continue;
        }
        snn_neuron_params pp = p, pm = p;
        pp.tau = (float)(p.tau + eps);
        pm.tau = (float)(p.tau - eps);
        const double Lp = smooth_loss(&pp, T, NN, LD, x, r, s, h);
        const double Lm = smooth_loss(&pm, T, NN, LD, x, r, s, h);
        fd_compare(dtau, (Lp - Lm) / ((double)pp.tau - pm.tau), cfg[c].name, "tau", 0, 0, &st);
    }
    /* the kink filter must leave most coordinates checked */
    assert_true(st.checked > 4 * st.skipped);
    print_message("fd smooth: %zu derivatives checked (%zu skipped near triangle kinks), "
                  "max relative error (|grad| >= 1e-2) %.2e\n",
                  st.checked, st.skipped, st.max_rel);
}

/* On a normal forward's H and S the two backward entry points agree bit for bit except for the
 * bipolar hard reset, whose smooth reset amount g(H - th) + g(-H - th) is not |S|: so the spikes
 * the normal entry recomputes from H are the forward's (the smooth entry reads them). */
static void test_smooth_backward_differs_only_for_bipolar_hard(void **state) {
    (void)state;
    ncfg cfg[N_CONFIGS];
    const int nc = all_configs(cfg, false);
    enum { T = 5, NN = 8 };
    float x[T * NN], s[T * NN], h[T * NN], ds[T * NN], dx1[T * NN], dx2[T * NN];
    for (int c = 0; c < nc; c++) {
        const snn_neuron_params p = cfg[c].p;
        trng rg = {7000 + (uint64_t)c, 0};
        for (int t = 0; t < T * NN; t++) {
            x[t] = draw_x(&rg, &p);
            ds[t] = trng_range(&rg, -1.0, 1.0);
            dx1[t] = dx2[t] = 0.0f;
        }
        snn_neuron_forward_seq(&p, T, NN, NN, x, s, h, false);
        float t1 = 0.0f, t2 = 0.0f;
        snn_neuron_backward_seq(&p, T, NN, NN, x, h, ds, dx1, &t1);
        snn_neuron_backward_seq_smooth(&p, T, NN, NN, x, h, s, ds, dx2, &t2);
        const bool same = memcmp(dx1, dx2, sizeof dx1) == 0 && t1 == t2;
        if (p.bipolar && !p.soft_reset) {
            /* the triangle with alpha th >= 1 has g(H - th) g(-H - th) = 0 everywhere, so there
             * a = |S| and both agree; the sigmoid and atan tails overlap */
            if (same && p.surrogate != SNN_SURROGATE_TRIANGLE)
                fail_msg("%s: smooth reset amount had no effect", cfg[c].name);
        } else if (!same) {
            fail_msg("%s: backward entry points differ", cfg[c].name);
        }
    }
}

/* snn_neuron_backward_seq_into writes what snn_neuron_backward_seq accumulates into zeros, byte
 * for byte (dtau too), without reading dx (prefilled with NaN); columns >= n untouched. */
static void test_backward_into_equals_accumulating_into_zeros(void **state) {
    (void)state;
    ncfg cfg[N_CONFIGS];
    const int nc = all_configs(cfg, true);
    enum { T = 5, NN = 300, LD = 303 };
    float *x = malloc(T * LD * sizeof *x), *s = malloc(T * LD * sizeof *s);
    float *h = malloc(T * LD * sizeof *h), *ds = malloc(T * LD * sizeof *ds);
    float *dx1 = malloc(T * LD * sizeof *dx1), *dx2 = malloc(T * LD * sizeof *dx2);
    for (int c = 0; c < nc; c++) {
        const snn_neuron_params *p = &cfg[c].p;
        trng rg = {1500 + (uint64_t)c, 0};
        for (int t = 0; t < T * LD; t++) {
            x[t] = draw_x(&rg, p);
            ds[t] = t % 7 == 0 ? -0.0f : trng_range(&rg, -1.0, 1.0);
            dx1[t] = 0.0f;
            dx2[t] = (t % LD) < NN ? NAN : 0.0f;
        }
        snn_neuron_forward_seq(p, T, NN, LD, x, s, h, false);
        float t1 = 0.25f, t2 = 0.25f;
        snn_neuron_backward_seq(p, T, NN, LD, x, h, ds, dx1, &t1);
        snn_neuron_backward_seq_into(p, T, NN, LD, x, h, ds, dx2, &t2);
        if (memcmp(dx1, dx2, T * LD * sizeof *dx1) != 0 || memcmp(&t1, &t2, sizeof t1) != 0)
            fail_msg("%s: writing differs from accumulating into zeros", cfg[c].name);
    }
    free(x), free(s), free(h), free(ds), free(dx1), free(dx2);
}

/* A forward through a normalising affine input that stores no H, then the backward that
 * recomputes H (snn_neuron_backward_seq_affine) from the raw input (the forward's own map,
 * normalising again) or from xhat as BatchNorm normalises (a map without statistics), gives
 * the stored-H backward's dx byte for byte, accumulating and writing, for every configuration
 * (PLIF's tau 3 included; with and without detach_reset, where gamma reads H): n = 300 over
 * two tiles, width 48 from channel 5 (tiles start mid-row), T = 5, T = 100 (tiles of 160
 * neurons: H [T, tile] must fit the stack buffer) and T at the limit (16 neurons). The
 * forward's spikes are the same with and without h. */
static void test_backward_recomputing_h_equals_stored(void **state) {
    (void)state;
    ncfg cfg[2 * N_CONFIGS];
    const int nc = all_configs(cfg, true) + all_configs(cfg + N_CONFIGS, false);
    enum { NN = 300, LD = 303, W = 48, C0 = 5, WLD = 5 };
    const int Ts[] = {5, 100, SNN_NEURON_RECOMPUTE_MAX_T};
    for (size_t ti = 0; ti < sizeof Ts / sizeof *Ts; ti++) {
        const int T = Ts[ti];
        const size_t tot = (size_t)T * LD;
        float *x = malloc(tot * sizeof *x), *h = malloc(tot * sizeof *h);
        float *xh = malloc(tot * sizeof *xh);
        float *ds = malloc(tot * sizeof *ds), *dx1 = malloc(tot * sizeof *dx1);
        float *dx2 = malloc(tot * sizeof *dx2);
        uint64_t *nz = malloc((size_t)T * WLD * 8), *nz2 = malloc((size_t)T * WLD * 8);
        uint64_t *ng = malloc((size_t)T * WLD * 8), *ng2 = malloc((size_t)T * WLD * 8);
        for (int c = 0; c < nc; c++) {
            const snn_neuron_params *p = &cfg[c].p;
            float gamma[W], beta[W], mean[W], rstd[W];
            trng rg = {1700 + (uint64_t)c + 100 * ti, 0};
            for (int w = 0; w < W; w++) {
                gamma[w] = trng_range(&rg, 0.5, 1.5);
                beta[w] = trng_range(&rg, -0.3, 0.3);
                mean[w] = trng_range(&rg, -0.2, 0.2);
                rstd[w] = trng_range(&rg, 0.7, 1.4);
            }
            for (size_t e = 0; e < tot; e++) {
                x[e] = draw_x(&rg, p);
                ds[e] = e % 7 == 0 ? -0.0f : trng_range(&rg, -1.0, 1.0);
            }
            /* the forward's map, and the recompute's map of xhat [T, LD] */
            const snn_neuron_affine of_x = {gamma, beta, W, C0, mean, rstd};
            const snn_neuron_affine of_xhat = {gamma, beta, W, C0, NULL, NULL};
            for (int t = 0; t < T; t++)
                for (int i = 0; i < NN; i++) {
                    const size_t e = (size_t)t * LD + (size_t)i, ch = (C0 + (size_t)i) % W;
                    xh[e] = (x[e] - mean[ch]) * rstd[ch]; /* as BatchNorm normalises */
                }
            memset(nz2, 0, (size_t)T * WLD * 8), memset(ng2, 0, (size_t)T * WLD * 8);
            memset(nz, 0, (size_t)T * WLD * 8), memset(ng, 0, (size_t)T * WLD * 8);
            snn_neuron_forward_seq_bits(p, T, NN, LD, x, &of_x, NULL, nz, p->bipolar ? ng : NULL,
                                        WLD, h);
            snn_neuron_forward_seq_bits(p, T, NN, LD, x, &of_x, NULL, nz2,
                                        p->bipolar ? ng2 : NULL, WLD, NULL);
            assert_memory_equal(nz, nz2, (size_t)T * WLD * 8);
            assert_memory_equal(ng, ng2, (size_t)T * WLD * 8);
            for (int acc = 0; acc < 2; acc++)
                for (int raw = 0; raw < 2; raw++) {
                    /* writing reads nothing of dx: NaN there would show */
                    for (size_t e = 0; e < tot; e++) dx1[e] = dx2[e] = acc ? 0.5f : NAN;
                    (acc ? snn_neuron_backward_seq : snn_neuron_backward_seq_into)(
                        p, T, NN, LD, NULL, h, ds, dx1, NULL);
                    snn_neuron_backward_seq_affine(p, T, NN, LD, raw ? x : xh,
                                                   raw ? &of_x : &of_xhat, ds, dx2, acc);
                    for (int t = 0; t < T; t++)
                        if (memcmp(dx1 + (size_t)t * LD, dx2 + (size_t)t * LD,
                                   NN * sizeof *dx1))
                            fail_msg("%s, T = %d, %s, from %s: recomputed H gives other dx at "
                                     "row %d",
                                     cfg[c].name, T, acc ? "accumulating" : "writing",
                                     raw ? "x" : "xhat", t);
                }
        }
        free(x), free(h), free(xh), free(ds), free(dx1), free(dx2);
        free(nz), free(nz2), free(ng), free(ng2);
    }
}

/* ---- (e) normal-mode backward against a double reference ---------------------------------- */

/* methods 1.4 in double, one neuron, column i of [T, ld] buffers. */
static void ref_backward(const snn_neuron_params *p, int T, size_t ld, size_t i, const float *x,
                         const float *h, const float *s, const float *ds, double *dx,
                         double *dtau) {
    const bool is_if = p->kind == SNN_NEURON_IF;
    const double tau = p->tau, th = p->v_threshold, vr = p->v_reset;
    const double vrc = p->soft_reset ? 0.0 : vr;
    double gh = 0.0;
    for (int t = T - 1; t >= 0; t--) {
        const size_t a = (size_t)t * ld + i;
        const double H = h[a], S = s[a];
        const double gp = snn_surrogate_grad(p->surrogate, p->alpha, h[a] - p->v_threshold);
        const double gn =
            p->bipolar ? snn_surrogate_grad(p->surrogate, p->alpha, -h[a] - p->v_threshold) : 0;
        const double psi = gp + gn;
        double gamma;
        if (p->soft_reset)
            gamma = p->detach_reset ? 1.0 : 1.0 - th * psi;
        else
            gamma = 1.0 - fabs(S) + (p->detach_reset ? 0.0 : (vr - H) * (gp - gn));
        const double dH = ds[a] * psi + gh * (is_if ? 1.0 : 1.0 - 1.0 / tau) * gamma;
        dx[t] = (!is_if && p->decay_input) ? dH / tau : dH;
        if (!is_if) {
            double vp = p->soft_reset ? 0.0 : vr;
            if (t > 0) {
                const double Hp = h[a - ld], Sp = s[a - ld];
                vp = p->soft_reset ? Hp - th * Sp : (Sp != 0.0 ? vr : Hp);
            }
            *dtau += dH * (p->decay_input ? -(x[a] - (vp - vrc)) : (vp - vrc)) / (tau * tau);
        }
        gh = dH;
    }
}

static void test_backward_matches_double_reference(void **state) {
    (void)state;
    ncfg cfg[2 * N_CONFIGS];
    int nc = all_configs(cfg, true);
    nc += all_configs(cfg + nc, false);
    const int T = 5;
    const size_t n = 300, ld = 302;  /* more than one 256-neuron tile, ld > n */
    const size_t tot = (size_t)T * ld;
    float *x = malloc(tot * sizeof *x), *s = malloc(tot * sizeof *s), *h = malloc(tot * sizeof *h);
    float *ds = malloc(tot * sizeof *ds), *dx = malloc(tot * sizeof *dx);
    for (int c = 0; c < nc; c++) {
        const snn_neuron_params *p = &cfg[c].p;
        trng rg = {11000 + (uint64_t)c, 0};
        for (size_t t = 0; t < tot; t++) {
            x[t] = draw_x(&rg, p);
            ds[t] = trng_range(&rg, -1.0, 1.0);
            dx[t] = 0.5f;  /* the backward accumulates */
        }
        snn_neuron_forward_seq(p, T, n, ld, x, s, h, false);
        float dtau = 0.25f;
        snn_neuron_backward_seq(p, T, n, ld, x, h, ds, dx, &dtau);
        double dtau_ref = 0.0;
        for (size_t i = 0; i < ld; i++) {
            double dxr[5];
            if (i < n) ref_backward(p, T, ld, i, x, h, s, ds, dxr, &dtau_ref);
            for (int t = 0; t < T; t++) {
                const double got = dx[(size_t)t * ld + i];
                const double want = i < n ? 0.5 + dxr[t] : 0.5;  /* columns >= n untouched */
                if (fabs(got - want) > 1e-6 + 1e-5 * fabs(want))
                    fail_msg("%s: dX[%d][%zu] = %.9g, reference %.9g", cfg[c].name, t, i, got,
                             want);
            }
        }
        const double want = p->kind == SNN_NEURON_IF ? 0.25 : 0.25 + dtau_ref;
        if (fabs((double)dtau - want) > 1e-5 + 1e-5 * fabs(want))
            fail_msg("%s: dtau = %.9g, reference %.9g", cfg[c].name, (double)dtau, want);
    }
    free(x), free(s), free(h), free(ds), free(dx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_seq_matches_step),
        cmocka_unit_test(test_forward_seq_bits_matches_floats),
        cmocka_unit_test(test_hand_example),
        cmocka_unit_test(test_detach_differs_by_reset_path),
        cmocka_unit_test(test_detached_hard_reset_cuts_at_spikes),
        cmocka_unit_test(test_fd_smooth),
        cmocka_unit_test(test_smooth_backward_differs_only_for_bipolar_hard),
        cmocka_unit_test(test_backward_into_equals_accumulating_into_zeros),
        cmocka_unit_test(test_backward_recomputing_h_equals_stored),
        cmocka_unit_test(test_backward_matches_double_reference),
    };
    return cmocka_run_group_tests_name("bptt", tests, NULL, NULL);
}
