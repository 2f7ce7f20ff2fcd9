/*
 * bench_attn.c: `spikesim bench-attention`: every attention kernel alone, one head of width d
 * at a time over h heads, for N = 64, 128, ..., up to max_n tokens; forward time and
 * forward + backward time (the training kernels), and the growth exponent of each kernel fitted
 * by least squares on log(time) against log(N) over the measured N.
 *
 * Inputs are seeded: spike matrices at a 20% firing rate for the spiking kernels (bsa: +1 and
 * -1 at 10% each), Gaussian activations for the ANN kernels. The forward of a spiking kernel is
 * its inference kernel (int8 spikes, what the event-driven engine runs); forward + backward is
 * its training kernel pair (float). Each figure is the best of several repetitions of at least
 * 20 ms. Single-threaded: a kernel's cost, not the machine's parallelism. Timing only: never
 * part of `make test`.
 */
#include "sim/bench.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attention/ann.h"
#include "attention/attention.h"
#include "attention/primal.h"
#include "attention/sdsa.h"
#include "sim/rng.h"

enum { K_BSA, K_SSA, K_SDSA, K_SOFTMAX, K_CAT, K_PRIMAL, K_COUNT };
static const char *const kernel_names[K_COUNT] = {"bsa", "ssa", "sdsa", "softmax", "cat", "primal"};

typedef struct attn_bufs {
    int N, d, h, D, s, M;
    int8_t *sq, *sk, *sv;            /* [N, D] spikes */
    float *q, *k, *v, *x, *g;        /* [N, D] (g: [N, h]) */
    float *o, *dout, *dq, *dk, *dv, *dx, *dg; /* [N, D] (dg [N, h]) */
    int32_t *scores;                 /* [N * N] */
    float *p, *scratch;              /* [N * N] */
    int32_t *mr;                     /* [2 N] */
    double *cat_scratch, *cat_spectra;
    snn_cat_plan *cat;
    float *E, *R, *lambda, *cw, *cb; /* primal, one head's E, R [M, s] */
    float *cache, *dE, *dR, *dcw, *dcb;
    int *idx;
    float *kv, *dkv, *skv_f;         /* sdsa [d] */
    int8_t *skv;
} attn_bufs;

static void fill(float *x, size_t n, uint64_t stream) {
    for (size_t i = 0; i < n; i++) x[i] = (float)snn_rng_normal(7, stream, i);
}

static void spikes(int8_t *s, float *f, size_t n, uint64_t stream, bool bipolar) {
    for (size_t i = 0; i < n; i++) {
        const float u = snn_rng_uniform(7, stream, i);
        s[i] = (int8_t)(u < 0.1f ? 1 : u < 0.2f ? (bipolar ? -1 : 1) : 0);
        f[i] = s[i];
    }
}

static void bufs_init(attn_bufs *b, int N, int d, int h, int s) {
    memset(b, 0, sizeof *b);
    b->N = N, b->d = d, b->h = h, b->D = d * h, b->s = s;
    b->M = snn_primal_num_samples(N, s, 10);
    const size_t ND = (size_t)N * b->D, NN = (size_t)N * N;
    int8_t **sp[3] = {&b->sq, &b->sk, &b->sv};
    float **fl[12] = {&b->q, &b->k, &b->v, &b->x, &b->g, &b->o, &b->dout, &b->dq, &b->dk, &b->dv,
                      &b->dx, &b->dg};
    for (int i = 0; i < 3; i++) *sp[i] = snn_xcalloc(ND, 1);
    for (int i = 0; i < 12; i++) *fl[i] = snn_xcalloc(ND, sizeof(float));
    b->p = snn_xcalloc(NN, sizeof(float));
    const size_t ps = snn_primal_scratch_floats(N, d, s);
    b->scratch = snn_xcalloc(NN > ps ? NN : ps, sizeof(float));
    b->scores = snn_xcalloc(NN, sizeof *b->scores);
    b->mr = snn_xcalloc(2 * (size_t)N, sizeof *b->mr);
    b->cat = snn_cat_plan_new(N, d);
    b->cat_scratch = snn_xaligned(snn_cat_scratch_doubles(N, d) * sizeof(double)); /* FFTW SIMD */
    b->cat_spectra = snn_xaligned(snn_cat_spectra_doubles(N, d) * sizeof(double));
    const size_t Ms = (size_t)b->M * s;
    b->E = snn_xcalloc(Ms, sizeof(float));
    b->R = snn_xcalloc(Ms, sizeof(float));
    b->dE = snn_xcalloc(Ms, sizeof(float));
    b->dR = snn_xcalloc(Ms, sizeof(float));
    b->lambda = snn_xcalloc((size_t)s, sizeof(float));
    b->cw = snn_xcalloc((size_t)d * 2 * s, sizeof(float));
    b->dcw = snn_xcalloc((size_t)d * 2 * s, sizeof(float));
    b->cb = snn_xcalloc((size_t)d, sizeof(float));
    b->dcb = snn_xcalloc((size_t)d, sizeof(float));
    b->cache = snn_xcalloc(snn_primal_cache_floats(N, d, s), sizeof(float));
    b->idx = snn_xcalloc((size_t)b->M, sizeof *b->idx);
    snn_primal_sample_indices(N, b->M, b->idx);
    b->kv = snn_xcalloc((size_t)b->D, sizeof(float));
    b->dkv = snn_xcalloc((size_t)b->D, sizeof(float));
    b->skv_f = snn_xcalloc((size_t)b->D, sizeof(float));
    b->skv = snn_xcalloc((size_t)b->D, 1);
    fill(b->x, ND, 1);
    fill(b->g, (size_t)N * h, 2);
    fill(b->dout, ND, 3);
    fill(b->E, Ms, 4);
    fill(b->R, Ms, 5);
    fill(b->cw, (size_t)d * 2 * s, 6);
    for (int j = 0; j < s; j++) b->lambda[j] = 0.5f;
    for (int c = 0; c < b->D; c++) {
        b->skv[c] = (int8_t)(c % 3 == 0); /* a third of the kv neurons fire */
        b->skv_f[c] = b->skv[c];
    }
}

static void bufs_free(attn_bufs *b) {
    void *all[] = {b->sq, b->sk, b->sv, b->q, b->k, b->v, b->x, b->g, b->o, b->dout, b->dq, b->dk,
                   b->dv, b->dx, b->dg, b->p, b->scratch, b->scores, b->mr, b->cat_scratch,
                   b->cat_spectra, b->E, b->R, b->dE, b->dR, b->lambda, b->cw, b->dcw, b->cb,
                   b->dcb, b->cache, b->idx, b->kv, b->dkv, b->skv_f, b->skv};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
    snn_cat_plan_free(b->cat);
}

/* Sets the kernel's inputs: spikes or Gaussian activations in q, k, v. */
static void set_inputs(attn_bufs *b, int kernel) {
    const size_t ND = (size_t)b->N * b->D;
    if (kernel <= K_SDSA) {
        spikes(b->sq, b->q, ND, 11, kernel == K_BSA);
        spikes(b->sk, b->k, ND, 12, kernel == K_BSA);
        spikes(b->sv, b->v, ND, 13, false);
    } else {
        fill(b->q, ND, 11);
        fill(b->k, ND, 12);
        fill(b->v, ND, 13);
    }
}

/* One pass over the h heads: forward only, or forward + backward. */
static void run_heads(attn_bufs *b, int kernel, bool backward) {
    const int N = b->N, d = b->d, D = b->D, s = b->s;
    const int shift = snn_shiftmax_default_shift(d);
    for (int hh = 0; hh < b->h; hh++) {
        const size_t off = (size_t)hh * d;
        switch (kernel) {
        case K_BSA:
            if (!backward) {
                snn_attn_bsa_head(N, d, b->sq + off, b->sk + off, b->sv + off, D, shift,
                                  SNN_SHIFTMAX_ROUND, b->o + off, D, b->scores, NULL);
            } else {
                snn_attn_bsa_head_train(N, d, b->q + off, b->k + off, b->v + off, D, shift,
                                        SNN_SHIFTMAX_ROUND, false, b->o + off, D, b->p, b->mr, false);
                snn_attn_bsa_head_backward(N, d, b->q + off, b->k + off, b->v + off, D, shift, b->p,
                                           b->dout + off, D, b->dq + off, b->dk + off, b->dv + off,
                                           b->scratch);
            }
            break;
        case K_SSA:
            if (!backward) {
                snn_attn_ssa_head(N, d, b->sq + off, b->sk + off, b->sv + off, D, 0.125f,
                                  b->o + off, D, b->scores, NULL);
            } else {
                snn_attn_ssa_head_train(N, d, b->q + off, b->k + off, b->v + off, D, 0.125f,
                                        b->o + off, D, b->p);
                snn_attn_ssa_head_backward(N, d, b->q + off, b->k + off, b->v + off, D, 0.125f,
                                           b->p, b->dout + off, D, b->dq + off, b->dk + off,
                                           b->dv + off, b->scratch);
            }
            break;
        case K_SDSA: /* the kv sum and the mask; the kv neuron is O(d) and not part of this */
            if (!backward) {
                snn_sdsa_kv_head(1, N, d, b->sk + off, b->sv + off, D, 0, b->kv + off, D, NULL);
                snn_sdsa_mask_head(1, N, d, b->sq + off, D, 0, b->skv + off, D, b->o + off, D, 0);
            } else {
                snn_sdsa_kv_train(1, N, d, b->k + off, b->v + off, D, 0, b->kv + off, D);
                snn_sdsa_mask_train(1, N, d, b->q + off, D, 0, b->skv_f + off, D, b->o + off, D, 0);
                snn_sdsa_mask_backward(1, N, d, b->q + off, D, 0, b->skv_f + off, D, b->dout + off,
                                       D, 0, b->dq + off, b->dkv + off);
                snn_sdsa_kv_backward(1, N, d, b->k + off, b->v + off, D, 0, b->dkv + off, D,
                                     b->dk + off, b->dv + off);
            }
            break;
        case K_SOFTMAX:
            snn_attn_softmax_head_train(N, d, b->q + off, b->k + off, b->v + off, D, b->o + off, D,
                                        b->p);
            if (backward)
                snn_attn_softmax_head_backward(N, d, b->q + off, b->k + off, b->v + off, D, b->p,
                                               b->dout + off, D, b->dq + off, b->dk + off,
                                               b->dv + off, b->scratch);
            break;
        case K_CAT:
            /* training keeps the forward's spectra for the backward (as the trainer does) */
            snn_attn_cat_head_train(b->cat, b->g + hh, b->h, b->v + off, D, b->o + off, D, b->p,
                                    backward ? b->cat_spectra : NULL, b->cat_scratch);
            if (backward)
                snn_attn_cat_head_backward(b->cat, b->g + hh, b->h, b->v + off, D, b->p,
                                           b->dout + off, D, b->dg + hh, b->h, b->dv + off,
                                           b->cat_spectra, b->cat_scratch);
            break;
        default: {
            snn_primal_cache c = snn_primal_cache_bind(b->cache, N, d, s);
            snn_primal_forward(N, d, s, b->M, b->q + off, b->k + off, D, b->x + off, D, b->idx, b->E,
                               b->R, b->cw, b->cb, b->o + off, D, &c, NULL);
            if (backward)
                snn_primal_backward(N, d, s, b->M, D, b->idx, b->E, b->R, b->cw, &c,
                                    b->dout + off, D, 0.0, NULL, b->dq + off, b->dk + off, D,
                                    b->dx + off, b->dE, b->dR, b->dcw, b->dcb, b->scratch);
        }
        }
    }
}

/* Best time of one pass, over repetitions of at least 20 ms (at least 3, at most ~0.6 s). */
static double time_pass(attn_bufs *b, int kernel, bool backward) {
    double best = 1e300, spent = 0.0;
    for (int rep = 0; rep < 3 || (spent < 0.3 && rep < 1000); rep++) {
        int iters = 0;
        const double t0 = snn_now();
        double t;
        do {
            run_heads(b, kernel, backward);
            iters++;
            t = snn_now() - t0;
        } while (t < 0.02);
        if (t / iters < best) best = t / iters;
        spent += t;
    }
    return best;
}

/* Least-squares slope of log t against log N (n <= 16 sizes; NaN for fewer than 2). */
static double fit_exponent(const int *ns, const double *t, int n) {
    if (n < 2) return NAN;
    double x[16], y[16], slope, intercept;
    SNN_ASSERT(n <= 16);
    for (int i = 0; i < n; i++) x[i] = log((double)ns[i]), y[i] = log(t[i]);
    snn_bench_linfit(x, y, n, &slope, &intercept);
    return slope;
}

int snn_bench_attention(int max_n, int d, int heads, int primal_s, FILE *out) {
    enum { MAX_SIZES = 16 };
    int ns[MAX_SIZES], n_sizes = 0;
    for (int N = 64; N <= max_n && n_sizes < MAX_SIZES; N *= 2) ns[n_sizes++] = N;
    double fwd[K_COUNT][MAX_SIZES], both[K_COUNT][MAX_SIZES];
    fprintf(out, "attention kernels alone: %d heads of width d = %d (D = %d), one thread, "
                 "ms per pass over the heads (forward | forward + backward); primal s = %d\n",
            heads, d, heads * d, primal_s);
    fprintf(out, "  %6s", "N");
    for (int k = 0; k < K_COUNT; k++) fprintf(out, " %17s", kernel_names[k]);
    fputc('\n', out);
    for (int i = 0; i < n_sizes; i++) {
        attn_bufs b;
        bufs_init(&b, ns[i], d, heads, primal_s);
        fprintf(out, "  %6d", ns[i]);
        for (int k = 0; k < K_COUNT; k++) {
            set_inputs(&b, k);
            fwd[k][i] = time_pass(&b, k, false);
            /* bsa's training kernel keeps one row of exponents on the stack */
            both[k][i] = k == K_BSA && ns[i] > SNN_ATTN_BSA_TRAIN_MAX_N ? NAN
                                                                        : time_pass(&b, k, true);
            fprintf(out, " %8.3f|%8.3f", 1e3 * fwd[k][i], 1e3 * both[k][i]);
        }
        fputc('\n', out);
        fflush(out);
        bufs_free(&b);
    }
    fprintf(out, "  growth exponent (least squares of log time on log N, N = %d..%d):\n", ns[0],
            ns[n_sizes - 1]);
    for (int k = 0; k < K_COUNT; k++) {
        int nb = 0;
        while (nb < n_sizes && !isnan(both[k][nb])) nb++;
        fprintf(out, "    %-8s forward %.2f   forward+backward %.2f%s\n", kernel_names[k],
                fit_exponent(ns, fwd[k], n_sizes), fit_exponent(ns, both[k], nb),
                nb < n_sizes ? " (training kernel up to N = 1024)" : "");
    }
    int cat_wins_from = -1;
    for (int i = n_sizes - 1; i >= 0 && fwd[K_CAT][i] < fwd[K_SOFTMAX][i]; i--) cat_wins_from = ns[i];
    if (cat_wins_from > 0)
        fprintf(out, "  cat is faster than softmax (forward) from N = %d up\n", cat_wins_from);
    else
        fprintf(out, "  cat is not faster than softmax at the largest N\n");
    return SNN_OK;
}
