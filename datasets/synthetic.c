/*
 * synthetic.c: seeded synthetic image classification data, and the dataset shuffle.
 *
 * The synthetic task exists so that the simulator can be trained and tested without any
 * download. Each class has a prototype of a few Gaussian blobs; a sample is its class's
 * prototype shifted by up to 2 pixels, scaled in brightness and covered in Gaussian noise.
 * Every random number comes from the counter-based generator (sim/rng.h), keyed so that a
 * sample depends only on (seed, split, sample index): the n of the call, the thread that
 * computes it and the other samples never matter, and splits share prototypes but not
 * samples.
 *
 * Random streams and counters (part of the reproducibility contract):
 *   prototypes: stream "synthetic.prototype", counter class << 32 | candidate << 24 |
 *               blob << 16 | parameter (0 = row, 1 = col, 2 = width, 3 + ch = amplitude of
 *               channel ch); candidates are explained at make_prototypes;
 *   labels:     stream "synthetic.label" ^ split, counter block * classes + step (see
 *               make_labels);
 *   sample i:   its own stream snn_rng_u64(seed, "synthetic.sample" ^ split, i); counters
 *               0 = row shift, 1 = col shift, 2 = brightness; noise of pixel k is
 *               snn_rng_normal(counter 2 + k), which uses raw counters 4 + 2k and 5 + 2k.
 * The stored value is round-half-up of the clipped real value; it goes through exp, log and
 * cos, so it is bit-stable on one libm but may differ by one level on another.
 */
#include "datasets/dataset.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sim/rng.h"

enum {
    SYN_BLOBS = 3,       /* Gaussian blobs per class prototype */
    SYN_CANDIDATES = 16, /* prototype candidates per class (best-candidate sampling) */
    SYN_SHIFT = 2,       /* max |shift| of a sample, in pixels, each axis */
};
#define SYN_BORDER 0.05      /* blob centres avoid this fraction of each side */
#define SYN_SIGMA_MIN 0.08   /* blob width, as a fraction of min(H, W): uniform in */
#define SYN_SIGMA_MAX 0.16   /*   [SYN_SIGMA_MIN, SYN_SIGMA_MAX] */
#define SYN_MIN_SCALE 0.7    /* brightness scale is uniform in [SYN_MIN_SCALE, 1] */
#define SYN_NOISE_SD 20.0    /* per-pixel Gaussian noise, in pixel levels (of 255) */

/* Draws candidate `attempt` of class c's prototype into p [C, PH, PW] (padded grid). */
static void draw_prototype(float *p, uint64_t seed, int c, int attempt, int C, int H, int W) {
    const uint64_t stream = snn_rng_stream("synthetic.prototype");
    const int PH = H + 2 * SYN_SHIFT, PW = W + 2 * SYN_SHIFT;
    const double side = H < W ? H : W;
    const uint64_t base = (uint64_t)c << 32 | (uint64_t)attempt << 24;
    double cy[SYN_BLOBS], cx[SYN_BLOBS], inv2s2[SYN_BLOBS];
    for (int b = 0; b < SYN_BLOBS; b++) {
        uint64_t key = base | (uint64_t)b << 16;
        /* centres kept off the very border so that most of a blob is visible */
        double uy = snn_rng_uniform(seed, stream, key + 0);
        double ux = snn_rng_uniform(seed, stream, key + 1);
        double us = snn_rng_uniform(seed, stream, key + 2);
        cy[b] = (H - 1) * (SYN_BORDER + (1 - 2 * SYN_BORDER) * uy);
        cx[b] = (W - 1) * (SYN_BORDER + (1 - 2 * SYN_BORDER) * ux);
        double sigma = side * (SYN_SIGMA_MIN + (SYN_SIGMA_MAX - SYN_SIGMA_MIN) * us);
        if (sigma < 0.5) sigma = 0.5;
        inv2s2[b] = 1.0 / (2.0 * sigma * sigma);
    }
    for (int ch = 0; ch < C; ch++) {
        double amp[SYN_BLOBS];
        for (int b = 0; b < SYN_BLOBS; b++) {
            uint64_t key = base | (uint64_t)b << 16;
            amp[b] = 0.6 + 0.4 * snn_rng_uniform(seed, stream, key + 3 + (uint64_t)ch);
        }
        float *q = p + (size_t)ch * PH * PW;
        for (int y = 0; y < PH; y++) {
            for (int x = 0; x < PW; x++) {
                double fy = y - SYN_SHIFT, fx = x - SYN_SHIFT, v = 0.0;
                for (int b = 0; b < SYN_BLOBS; b++) {
                    double dy = fy - cy[b], dx = fx - cx[b];
                    v += amp[b] * exp(-(dy * dy + dx * dx) * inv2s2[b]);
                }
                q[(size_t)y * PW + x] = (float)(v < 1.0 ? v : 1.0);
            }
        }
    }
}

/* Fills protos [classes, C, PH, PW] with prototype intensities in [0, 1]. Independent random
 * blob layouts often nearly coincide for two classes on small images (nearest-class-mean
 * accuracy at 16x16 drops to ~0.6 for some seeds), so class c > 0 takes the best of
 * SYN_CANDIDATES candidates ("best candidate" sampling): the one farthest, in squared L2, from
 * its nearest among classes 0..c-1. Prototype c thus depends on (seed, c, C, H, W) but not on
 * `classes`, so a task with more classes extends one with fewer. */
static void make_prototypes(float *protos, uint64_t seed, int classes, int C, int H, int W) {
    const size_t psize = (size_t)C * (H + 2 * SYN_SHIFT) * (W + 2 * SYN_SHIFT);
    float *cand = snn_xmalloc(psize * sizeof *cand); /* [C, PH, PW] */
    for (int c = 0; c < classes; c++) {
        float *p = protos + (size_t)c * psize;
        double best = -1.0;
        for (int a = 0; a < (c == 0 ? 1 : SYN_CANDIDATES); a++) {
            draw_prototype(cand, seed, c, a, C, H, W);
            double nearest = INFINITY;
            for (int o = 0; o < c; o++) {
                const float *q = protos + (size_t)o * psize;
                double d = 0.0;
                for (size_t k = 0; k < psize; k++) {
                    double e = (double)cand[k] - q[k];
                    d += e * e;
                }
                if (d < nearest) nearest = d;
            }
            if (nearest > best) {
                best = nearest;
                memcpy(p, cand, psize * sizeof *cand);
            }
        }
    }
    free(cand);
}

/* Labels are balanced: each block of `classes` consecutive samples holds every class once,
 * in an order drawn per block (Fisher-Yates), so a prefix of any length is near-balanced and
 * sample i's label depends only on (seed, split, i). */
static void make_labels(uint8_t *labels, uint64_t seed, int split, int64_t n, int classes) {
    const uint64_t stream = snn_rng_stream("synthetic.label") ^ (uint64_t)split;
    uint8_t perm[256];
    for (int64_t start = 0; start < n; start += classes) {
        uint64_t block = (uint64_t)(start / classes);
        for (int k = 0; k < classes; k++) perm[k] = (uint8_t)k;
        for (int k = classes - 1; k > 0; k--) {
            uint64_t u = snn_rng_u64(seed, stream, block * (uint64_t)classes + (uint64_t)k);
            int j = (int)(u % (uint64_t)(k + 1));
            uint8_t tmp = perm[k];
            perm[k] = perm[j];
            perm[j] = tmp;
        }
        for (int k = 0; k < classes && start + k < n; k++) labels[start + k] = perm[k];
    }
}

void snn_dataset_synthetic(snn_dataset *ds, uint64_t seed, int split, int64_t n, int channels,
                           int height, int width, int classes) {
    SNN_ASSERT(ds && n >= 0 && channels >= 1 && height >= 1 && width >= 1);
    SNN_ASSERT(classes >= 1 && classes <= 256);
    SNN_ASSERT(channels <= 65532); /* amplitude counters 3 + ch fit in 16 bits (file comment) */
    const int C = channels, H = height, W = width;
    const int PH = H + 2 * SYN_SHIFT, PW = W + 2 * SYN_SHIFT;
    const size_t size = (size_t)C * H * W;

    memset(ds, 0, sizeof *ds);
    ds->n = n;
    ds->channels = C;
    ds->height = H;
    ds->width = W;
    ds->classes = classes;
    ds->pixels = snn_xmalloc((size_t)n * size);                 /* [n, C, H, W] */
    ds->labels = snn_xmalloc((size_t)n);                        /* [n] */
    ds->index = snn_xmalloc((size_t)n * sizeof *ds->index);     /* [n] */

    float *protos = snn_xmalloc((size_t)classes * C * PH * PW * sizeof *protos);
    make_prototypes(protos, seed, classes, C, H, W);
    make_labels(ds->labels, seed, split, n, classes);

    const uint64_t sample_stream = snn_rng_stream("synthetic.sample") ^ (uint64_t)split;
    /* Samples are independent (counter-based keys), so any schedule gives the same bytes. */
#ifdef _OPENMP
#pragma omp parallel for schedule(static)
#endif
    for (int64_t i = 0; i < n; i++) {
        uint64_t s = snn_rng_u64(seed, sample_stream, (uint64_t)i);
        int dy = (int)(snn_rng_u64(seed, s, 0) % (2 * SYN_SHIFT + 1)) - SYN_SHIFT;
        int dx = (int)(snn_rng_u64(seed, s, 1) % (2 * SYN_SHIFT + 1)) - SYN_SHIFT;
        double scale = 255.0 * (SYN_MIN_SCALE + (1.0 - SYN_MIN_SCALE) *
                                                    snn_rng_uniform(seed, s, 2));
        const float *proto = protos + (size_t)ds->labels[i] * C * PH * PW;
        uint8_t *out = ds->pixels + (size_t)i * size;
        size_t k = 0;
        for (int ch = 0; ch < C; ch++) {
            const float *p = proto + (size_t)ch * PH * PW;
            for (int y = 0; y < H; y++) {
                /* content moves by (dy, dx): pixel (y, x) shows prototype (y - dy, x - dx) */
                const float *row = p + (size_t)(y - dy + SYN_SHIFT) * PW + SYN_SHIFT - dx;
                for (int x = 0; x < W; x++, k++) {
                    double v = scale * row[x] + SYN_NOISE_SD * snn_rng_normal(seed, s, 2 + k);
                    v = v < 0.0 ? 0.0 : v > 255.0 ? 255.0 : v;
                    out[k] = (uint8_t)(v + 0.5);
                }
            }
        }
        ds->index[i] = i;
    }
    free(protos);
}

/* Fisher-Yates from the back: step k (n-1 down to 1) swaps sample k with sample
 * j = snn_rng_u64(seed, snn_rng_stream("shuffle"), k) % (k + 1). The modulo bias is below
 * n / 2^64, far beneath anything measurable. Pixels, labels and index move together. */
void snn_dataset_shuffle(snn_dataset *ds, uint64_t seed) {
    SNN_ASSERT(ds);
    if (ds->n < 2) return;
    const uint64_t stream = snn_rng_stream("shuffle");
    const size_t size = (size_t)ds->channels * ds->height * ds->width;
    uint8_t *tmp = snn_xmalloc(size); /* [C, H, W] one sample */
    for (int64_t k = ds->n - 1; k > 0; k--) {
        int64_t j = (int64_t)(snn_rng_u64(seed, stream, (uint64_t)k) % (uint64_t)(k + 1));
        if (j == k) continue;
        uint8_t *a = ds->pixels + (size_t)k * size, *b = ds->pixels + (size_t)j * size;
        memcpy(tmp, a, size);
        memcpy(a, b, size);
        memcpy(b, tmp, size);
        uint8_t l = ds->labels[k];
        ds->labels[k] = ds->labels[j];
        ds->labels[j] = l;
        int64_t ix = ds->index[k];
        ds->index[k] = ds->index[j];
        ds->index[j] = ix;
    }
    free(tmp);
}
