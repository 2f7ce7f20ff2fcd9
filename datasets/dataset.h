/*
 * dataset.h: image datasets (MNIST-family IDX files, seeded synthetic images) and encoders.
 *
 * A dataset holds raw uint8 pixels in [n, C, H, W] order, labels, and for every sample its
 * index in the file it came from (after limits and shuffling), so outputs can name samples.
 * Pixels map to [0, 1] as pixel / 255 (spec section 2).
 */
#ifndef SNN_DATASET_H
#define SNN_DATASET_H

#include <stdbool.h>
#include <stdint.h>

#include "sim/util.h"

typedef struct snn_dataset {
    int64_t n;           /* samples */
    int channels;        /* C (1 for IDX files) */
    int height, width;   /* H, W */
    int classes;         /* 1 + max label (IDX) or the synthetic class count */
    uint8_t *pixels;     /* [n, C, H, W] */
    uint8_t *labels;     /* [n] */
    int64_t *index;      /* [n] index of each sample in its source file */
} snn_dataset;

/* Reads an IDX image file (magic 0x00000803, ubyte, [n, rows, cols]) and an IDX label file
 * (magic 0x00000801, [n]); either may be gzip-compressed (detected from the content, not the
 * name). Keeps the first `limit` samples (0 = all). Errors (missing file, bad magic, truncated
 * data, image/label count mismatch, ...) are one line naming the file and the reason. */
int snn_idx_load(snn_dataset *ds, const char *images_path, const char *labels_path,
                 int64_t limit, snn_err *err);

/* Loads split "train" or "test" from a directory holding the standard MNIST-family names
 * (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
 * t10k-labels-idx1-ubyte), each raw or with a .gz suffix. */
int snn_dataset_load_split(snn_dataset *ds, const char *dir, const char *split, int64_t limit,
                           snn_err *err);

/* Number of images of a split from its image file's header alone (for the memory plan before
 * loading), or -1 when the file is missing or not readable (loading then says why). */
int64_t snn_dataset_split_count(const char *dir, const char *split);

/* Seeded synthetic images: `classes` class prototypes (smooth random blobs) plus per-sample
 * noise, values in 0..255. Deterministic in (seed, split id, sample index), so split 0 and
 * split 1 are disjoint samples of the same task. Learnable by a small model. */
void snn_dataset_synthetic(snn_dataset *ds, uint64_t seed, int split, int64_t n, int channels,
                           int height, int width, int classes);

/* Seeded long-range sequence task (datasets/longseq.c): n sequences of N = side^2 tokens as
 * [symbols + 1, side, side] grids (one-hot symbol channels plus a marker channel); label 1 when
 * the two marked tokens (first and last quarter of the sequence) carry the same symbol, else 0.
 * Deterministic in (seed, split, sample index). */
void snn_dataset_longseq(snn_dataset *ds, uint64_t seed, int split, int64_t n, int side,
                         int symbols);

/* Seeded Fisher-Yates shuffle of samples (pixels, labels and index move together). */
void snn_dataset_shuffle(snn_dataset *ds, uint64_t seed);

void snn_dataset_free(snn_dataset *ds);

/* Input encoders (spec section 2): writes the C*H*W input of sample i at timestep t into x.
 *   direct: x = pixel / 255, the same every timestep;
 *   rate:   x = 1 with probability pixel / 255, else 0; the Bernoulli draw uses the
 *           counter-based generator keyed by (seed, sample's file index, pixel, t), so the
 *           result does not depend on thread count or evaluation order. */
void snn_encode_direct(const snn_dataset *ds, int64_t i, float *x);
void snn_encode_rate(const snn_dataset *ds, int64_t i, int t, uint64_t seed, float *x);

/* The same on raw pixels [size] of a sample whose position in its file is file_index. */
void snn_encode_direct_pixels(const uint8_t *pixels, size_t size, float *x);
void snn_encode_rate_pixels(const uint8_t *pixels, size_t size, int64_t file_index, int t,
                            uint64_t seed, float *x);

#endif
