/*
 * test_datasets.c: IDX loading (raw, gzip, limits, every error message), the split loader,
 * real Fashion-MNIST when installed, synthetic data (determinism, learnability), shuffling and
 * the two input encoders.
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
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "datasets/dataset.h"
#include "sim/rng.h"
#include "tests/testutil.h"

#define FASHION_DIR "/usr/share/datasets/fashion-mnist"

/* ---- helpers -------------------------------------------------------------------------- */

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Writes data to path, gzip-compressed through gzopen("wb") when gz is set. */
static void write_bytes(const char *path, const void *data, size_t n, int gz) {
    if (!gz) {
        assert_int_equal(snn_test_write_file(path, data, n), 0);
        return;
    }
    gzFile f = gzopen(path, "wb");
    assert_non_null(f);
    if (n > 0) assert_int_equal(gzwrite(f, data, (unsigned)n), (int)n);
    assert_int_equal(gzclose(f), Z_OK);
}

/* An IDX image file image: header (magic, n, rows, cols) followed by `payload` pixel bytes
 * taken from pixels. Returns a malloc'd buffer of *len bytes. */
static uint8_t *idx_images(uint32_t magic, uint32_t n, uint32_t rows, uint32_t cols,
                           const uint8_t *pixels, size_t payload, size_t *len) {
    *len = 16 + payload;
    uint8_t *b = malloc(*len);
    put_be32(b, magic);
    put_be32(b + 4, n);
    put_be32(b + 8, rows);
    put_be32(b + 12, cols);
    if (payload) memcpy(b + 16, pixels, payload);
    return b;
}

static uint8_t *idx_labels(uint32_t magic, uint32_t n, const uint8_t *labels, size_t payload,
                           size_t *len) {
    *len = 8 + payload;
    uint8_t *b = malloc(*len);
    put_be32(b, magic);
    put_be32(b + 4, n);
    if (payload) memcpy(b + 8, labels, payload);
    return b;
}

/* The small reference set used throughout: 5 images of 3x4, labels with max 7. */
enum { SN = 5, SR = 3, SC = 4 };
static const uint8_t small_labels[SN] = {3, 0, 7, 1, 3};

static void small_pixels(uint8_t *px) {
    for (int i = 0; i < SN * SR * SC; i++) px[i] = (uint8_t)(i * 37 + 11);
}

/* Writes the small set to images/labels paths, optionally gzip-compressed. */
static void write_small(const char *images, const char *labels, int gz) {
    uint8_t px[SN * SR * SC];
    small_pixels(px);
    size_t len;
    uint8_t *b = idx_images(0x803, SN, SR, SC, px, sizeof px, &len);
    write_bytes(images, b, len, gz);
    free(b);
    b = idx_labels(0x801, SN, small_labels, SN, &len);
    write_bytes(labels, b, len, gz);
    free(b);
}

static void assert_small(const snn_dataset *ds, int64_t n) {
    uint8_t px[SN * SR * SC];
    small_pixels(px);
    assert_int_equal(ds->n, n);
    assert_int_equal(ds->channels, 1);
    assert_int_equal(ds->height, SR);
    assert_int_equal(ds->width, SC);
    assert_int_equal(ds->classes, 8); /* 1 + max label over the whole file */
    assert_memory_equal(ds->pixels, px, (size_t)n * SR * SC);
    assert_memory_equal(ds->labels, small_labels, (size_t)n);
    for (int64_t i = 0; i < n; i++) assert_int_equal(ds->index[i], i);
}

static void assert_zeroed(const snn_dataset *ds) {
    snn_dataset zero;
    memset(&zero, 0, sizeof zero);
    assert_memory_equal(ds, &zero, sizeof zero);
}

/* Loads and expects failure with exactly `expected` (or, with prefix_only, a message that
 * starts with it), and a zeroed dataset even though it was filled with junk beforehand. */
static void expect_idx_error(const char *images, const char *labels, int64_t limit,
                             const char *expected, int prefix_only) {
    snn_dataset ds;
    memset(&ds, 0x5A, sizeof ds);
    snn_err err = {{0}};
    assert_int_equal(snn_idx_load(&ds, images, labels, limit, &err), SNN_ERR);
    if (prefix_only) {
        if (strncmp(err.msg, expected, strlen(expected)) != 0)
            fail_msg("got \"%s\", want prefix \"%s\"", err.msg, expected);
    } else
        assert_string_equal(err.msg, expected);
    assert_zeroed(&ds);
}

static void expect_split_error(const char *dir, const char *split, const char *expected) {
    snn_dataset ds;
    memset(&ds, 0x5A, sizeof ds);
    snn_err err = {{0}};
    assert_int_equal(snn_dataset_load_split(&ds, dir, split, 0, &err), SNN_ERR);
    assert_string_equal(err.msg, expected);
    assert_zeroed(&ds);
}

/* A dataset built by hand (for the encoders): n samples of C x H x W. */
static void make_dataset(snn_dataset *ds, int64_t n, int C, int H, int W) {
    memset(ds, 0, sizeof *ds);
    ds->n = n;
    ds->channels = C;
    ds->height = H;
    ds->width = W;
    ds->classes = 1;
    ds->pixels = snn_xcalloc((size_t)n * C * H * W, 1);
    ds->labels = snn_xcalloc((size_t)n, 1);
    ds->index = snn_xcalloc((size_t)n, sizeof *ds->index);
    for (int64_t i = 0; i < n; i++) ds->index[i] = i;
}

/* ---- IDX ------------------------------------------------------------------------------ */

static void test_idx_raw(void **state) {
    (void)state;
    char *img = snn_test_tmp_path("raw-images"), *lab = snn_test_tmp_path("raw-labels");
    write_small(img, lab, 0);
    snn_dataset ds;
    snn_err err = {{0}};
    assert_int_equal(snn_idx_load(&ds, img, lab, 0, &err), SNN_OK);
    assert_small(&ds, SN);
    snn_dataset_free(&ds);
    assert_zeroed(&ds);
    snn_dataset_free(&ds); /* twice is fine */
    unlink(img);
    unlink(lab);
    free(img);
    free(lab);
}

/* Gzip is recognised from the content: these compressed files have no .gz suffix. */
static void test_idx_gzip(void **state) {
    (void)state;
    char *img = snn_test_tmp_path("gz-images"), *lab = snn_test_tmp_path("gz-labels");
    write_small(img, lab, 1);
    FILE *f = fopen(img, "rb");
    assert_non_null(f);
    int b0 = fgetc(f), b1 = fgetc(f);
    fclose(f);
    assert_true(b0 == 0x1f && b1 == 0x8b); /* really compressed */
    snn_dataset ds;
    snn_err err = {{0}};
    assert_int_equal(snn_idx_load(&ds, img, lab, 0, &err), SNN_OK);
    assert_small(&ds, SN);
    snn_dataset_free(&ds);
    unlink(img);
    unlink(lab);
    free(img);
    free(lab);
}

static void test_idx_limit(void **state) {
    (void)state;
    char *img = snn_test_tmp_path("lim-images"), *lab = snn_test_tmp_path("lim-labels");
    write_small(img, lab, 1);
    snn_dataset ds;
    snn_err err = {{0}};
    assert_int_equal(snn_idx_load(&ds, img, lab, 2, &err), SNN_OK);
    assert_small(&ds, 2); /* classes still 8: labels 0 and 3 kept, 7 is in the file */
    snn_dataset_free(&ds);
    assert_int_equal(snn_idx_load(&ds, img, lab, 1000, &err), SNN_OK);
    assert_small(&ds, SN);
    snn_dataset_free(&ds);
    unlink(img);
    unlink(lab);
    free(img);
    free(lab);
}

static void test_idx_errors(void **state) {
    (void)state;
    char *img = snn_test_tmp_path("err-images"), *lab = snn_test_tmp_path("err-labels");
    char *good_img = snn_test_tmp_path("err-good-images");
    char *good_lab = snn_test_tmp_path("err-good-labels");
    char *missing = snn_test_tmp_path("err-missing");
    write_small(good_img, good_lab, 0);
    uint8_t px[SN * SR * SC];
    small_pixels(px);
    char want[2048];
    size_t len;
    uint8_t *b;

    /* missing file */
    snprintf(want, sizeof want, "%s: No such file or directory", missing);
    expect_idx_error(missing, good_lab, 0, want, 0);
    expect_idx_error(good_img, missing, 0, want, 0);

    /* a directory instead of a file */
    snprintf(want, sizeof want, "/tmp: read error: Is a directory");
    expect_idx_error("/tmp", good_lab, 0, want, 0);

    /* bad magic in the images file: a label file given as images */
    snprintf(want, sizeof want,
             "%s: bad magic 0x00000801 (IDX ubyte, 1 dim), expected 0x00000803 (IDX ubyte, 3 dims)",
             good_lab);
    expect_idx_error(good_lab, good_lab, 0, want, 0);

    /* bad magic in the labels file, gzip-compressed */
    b = idx_labels(0x12345678, SN, small_labels, SN, &len);
    write_bytes(lab, b, len, 1);
    free(b);
    snprintf(want, sizeof want,
             "%s: bad magic 0x12345678 (not an IDX file), expected 0x00000801 (IDX ubyte, 1 dim)",
             lab);
    expect_idx_error(good_img, lab, 0, want, 0);

    /* truncated header: 10 of 16 bytes */
    b = idx_images(0x803, SN, SR, SC, px, 0, &len);
    write_bytes(img, b, 10, 0);
    snprintf(want, sizeof want, "%s: truncated: expected a 16-byte IDX header, found 10 bytes",
             img);
    expect_idx_error(img, good_lab, 0, want, 0);
    /* empty file */
    write_bytes(img, b, 0, 0);
    snprintf(want, sizeof want, "%s: truncated: expected a 16-byte IDX header, found 0 bytes",
             img);
    expect_idx_error(img, good_lab, 0, want, 0);
    free(b);
    /* truncated label header: 6 of 8 bytes */
    b = idx_labels(0x801, SN, small_labels, 0, &len);
    write_bytes(lab, b, 6, 0);
    free(b);
    snprintf(want, sizeof want, "%s: truncated: expected a 8-byte IDX header, found 6 bytes",
             lab);
    expect_idx_error(good_img, lab, 0, want, 0);

    /* truncated pixel data, raw and gzip; a limit that only needs the present part loads */
    b = idx_images(0x803, SN, SR, SC, px, 50, &len);
    for (int gz = 0; gz < 2; gz++) {
        write_bytes(img, b, len, gz);
        snprintf(want, sizeof want, "%s: truncated: expected 60 bytes of pixel data, found 50",
                 img);
        expect_idx_error(img, good_lab, 0, want, 0);
        snn_dataset ds;
        snn_err err = {{0}};
        assert_int_equal(snn_idx_load(&ds, img, good_lab, 4, &err), SNN_OK);
        assert_small(&ds, 4);
        snn_dataset_free(&ds);
    }
    free(b);

    /* truncated label data */
    b = idx_labels(0x801, SN, small_labels, 3, &len);
    write_bytes(lab, b, len, 0);
    free(b);
    snprintf(want, sizeof want, "%s: truncated: expected 5 bytes of label data, found 3", lab);
    expect_idx_error(good_img, lab, 0, want, 0);

    /* count mismatch */
    b = idx_labels(0x801, SN - 1, small_labels, SN - 1, &len);
    write_bytes(lab, b, len, 0);
    free(b);
    snprintf(want, sizeof want, "%s: 5 images but %s holds 4 labels", good_img, lab);
    expect_idx_error(good_img, lab, 0, want, 0);

    /* zero and absurd dimensions */
    b = idx_images(0x803, SN, 0, SC, px, sizeof px, &len);
    write_bytes(img, b, len, 0);
    free(b);
    snprintf(want, sizeof want, "%s: bad image size 0x4 (rows and cols must be 1..65535)", img);
    expect_idx_error(img, good_lab, 0, want, 0);
    b = idx_images(0x803, SN, SR, 70000, px, sizeof px, &len);
    write_bytes(img, b, len, 0);
    free(b);
    snprintf(want, sizeof want, "%s: bad image size 3x70000 (rows and cols must be 1..65535)",
             img);
    expect_idx_error(img, good_lab, 0, want, 0);
    b = idx_images(0x803, 0, SR, SC, px, 0, &len);
    write_bytes(img, b, len, 0);
    free(b);
    snprintf(want, sizeof want, "%s: holds 0 images", img);
    expect_idx_error(img, good_lab, 0, want, 0);

    /* a header claiming 4e9 images of 65535x65535 (1.7e19 bytes): reported as truncated,
     * without trying to allocate the claimed size first */
    b = idx_images(0x803, 4000000000u, 65535, 65535, px, sizeof px, &len);
    write_bytes(img, b, len, 0);
    free(b);
    b = idx_labels(0x801, 4000000000u, small_labels, SN, &len);
    write_bytes(lab, b, len, 0);
    free(b);
    snprintf(want, sizeof want, "%s: truncated: expected %zu bytes of pixel data, found 60", img,
             (size_t)4000000000u * 65535 * 65535);
    expect_idx_error(img, lab, 0, want, 0);

    /* label out of range */
    uint8_t bad_labels[SN] = {1, 2, 100, 3, 4};
    b = idx_labels(0x801, SN, bad_labels, SN, &len);
    write_bytes(lab, b, len, 0);
    free(b);
    snprintf(want, sizeof want, "%s: label 100 of sample 2 is out of range (expected 0..99)",
             lab);
    expect_idx_error(good_img, lab, 0, want, 0);

    /* a gzip stream cut in the middle: counts as truncated (how much inflates is zlib's
     * business, so only the message prefix is fixed) */
    enum { BIG_N = 100, BIG_SIDE = 28 };
    uint8_t *big = malloc((size_t)BIG_N * BIG_SIDE * BIG_SIDE);
    for (size_t i = 0; i < (size_t)BIG_N * BIG_SIDE * BIG_SIDE; i++)
        big[i] = (uint8_t)snn_rng_u64(1, 2, i); /* incompressible */
    b = idx_images(0x803, BIG_N, BIG_SIDE, BIG_SIDE, big, (size_t)BIG_N * BIG_SIDE * BIG_SIDE,
                   &len);
    write_bytes(img, b, len, 1);
    free(b);
    free(big);
    struct stat st;
    assert_int_equal(stat(img, &st), 0);
    assert_int_equal(truncate(img, st.st_size / 2), 0);
    uint8_t big_labels[BIG_N] = {0};
    b = idx_labels(0x801, BIG_N, big_labels, BIG_N, &len);
    write_bytes(lab, b, len, 0);
    free(b);
    snprintf(want, sizeof want, "%s: truncated: expected 78400 bytes of pixel data, found ", img);
    expect_idx_error(img, lab, 0, want, 1);

    /* corrupt deflate data after a valid gzip header */
    static const uint8_t corrupt[] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xff, 0xff, 0xff, 0xff,
                                      0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    write_bytes(img, corrupt, sizeof corrupt, 0);
    snprintf(want, sizeof want, "%s: corrupt gzip data: ", img);
    expect_idx_error(img, good_lab, 0, want, 1);

    unlink(img);
    unlink(lab);
    unlink(good_img);
    unlink(good_lab);
    free(img);
    free(lab);
    free(good_img);
    free(good_lab);
    free(missing);
}

/* ---- split loader --------------------------------------------------------------------- */

static char *join(const char *dir, const char *name) { return snn_xasprintf("%s/%s", dir, name); }

static void test_load_split(void **state) {
    (void)state;
    char *dir = snn_test_tmp_path("split");
    assert_int_equal(mkdir(dir, 0700), 0);
    char *tr_img = join(dir, "train-images-idx3-ubyte");
    char *tr_lab = join(dir, "train-labels-idx1-ubyte");
    char *tr_img_gz = join(dir, "train-images-idx3-ubyte.gz");
    char *tr_lab_gz = join(dir, "train-labels-idx1-ubyte.gz");
    char *te_img_gz = join(dir, "t10k-images-idx3-ubyte.gz");
    char *te_lab_gz = join(dir, "t10k-labels-idx1-ubyte.gz");
    char want[2048];
    snn_dataset ds;
    snn_err err = {{0}};

    /* test split: only .gz present, labels missing at first */
    write_small(te_img_gz, te_lab_gz, 1);
    unlink(te_lab_gz);
    snprintf(want, sizeof want, "%s/t10k-labels-idx1-ubyte[.gz]: no such file", dir);
    expect_split_error(dir, "test", want);
    write_small(te_img_gz, te_lab_gz, 1);
    assert_int_equal(snn_dataset_load_split(&ds, dir, "test", 0, &err), SNN_OK);
    assert_small(&ds, SN);
    snn_dataset_free(&ds);

    /* train split: nothing yet */
    snprintf(want, sizeof want, "%s/train-images-idx3-ubyte[.gz]: no such file", dir);
    expect_split_error(dir, "train", want);
    /* raw and .gz both present: the raw files win (the .gz holds other data) */
    write_small(tr_img, tr_lab, 0);
    uint8_t px[SR * SC] = {0};
    size_t len;
    uint8_t *b = idx_images(0x803, 1, SR, SC, px, sizeof px, &len);
    write_bytes(tr_img_gz, b, len, 1);
    free(b);
    b = idx_labels(0x801, 1, px, 1, &len);
    write_bytes(tr_lab_gz, b, len, 1);
    free(b);
    assert_int_equal(snn_dataset_load_split(&ds, dir, "train", 3, &err), SNN_OK);
    assert_small(&ds, 3);
    snn_dataset_free(&ds);
    /* a trailing slash on the directory is fine */
    char *slashed = snn_xasprintf("%s/", dir);
    assert_int_equal(snn_dataset_load_split(&ds, slashed, "train", 0, &err), SNN_OK);
    assert_small(&ds, SN);
    snn_dataset_free(&ds);
    free(slashed);

    /* unknown split, missing directory, a file as directory */
    snprintf(want, sizeof want, "%s: unknown split \"val\" (expected \"train\" or \"test\")",
             dir);
    expect_split_error(dir, "val", want);
    char *nodir = snn_test_tmp_path("no-such-dir");
    snprintf(want, sizeof want, "%s: No such file or directory", nodir);
    expect_split_error(nodir, "train", want);
    snprintf(want, sizeof want, "%s: not a directory", tr_img);
    expect_split_error(tr_img, "train", want);
    free(nodir);

    char *files[] = {tr_img, tr_lab, tr_img_gz, tr_lab_gz, te_img_gz, te_lab_gz};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        unlink(files[i]);
        free(files[i]);
    }
    assert_int_equal(rmdir(dir), 0);
    free(dir);
}

/* The real Fashion-MNIST test split (Debian package dataset-fashion-mnist). The pixel sums
 * were obtained independently with Python's gzip module:
 *   python3 -c "import gzip; d = gzip.open('.../t10k-images-idx3-ubyte.gz').read();
 *               print(sum(d[16:16 + 784]), sum(d[16:]))"
 * which printed 33456 573469082. */
static void test_fashion_mnist(void **state) {
    (void)state;
    struct stat st;
    if (stat(FASHION_DIR, &st) != 0) {
        print_message("skipping: %s not installed (apt-get install dataset-fashion-mnist)\n",
                      FASHION_DIR);
        skip();
    }
    snn_dataset ds;
    snn_err err = {{0}};
    double t0 = snn_now();
    int rc = snn_dataset_load_split(&ds, FASHION_DIR, "test", 0, &err);
    if (rc != SNN_OK) fail_msg("%s", err.msg);
    double t_test = snn_now() - t0;
    assert_int_equal(ds.n, 10000);
    assert_int_equal(ds.channels, 1);
    assert_int_equal(ds.height, 28);
    assert_int_equal(ds.width, 28);
    assert_int_equal(ds.classes, 10);
    assert_int_equal(ds.labels[0], 9); /* ankle boot */
    uint64_t sum0 = 0, sum = 0;
    for (int k = 0; k < 784; k++) sum0 += ds.pixels[k];
    for (size_t k = 0; k < (size_t)ds.n * 784; k++) sum += ds.pixels[k];
    assert_int_equal(sum0, 33456);
    assert_int_equal(sum, 573469082);
    int counts[10] = {0};
    for (int64_t i = 0; i < ds.n; i++) counts[ds.labels[i]]++;
    for (int c = 0; c < 10; c++) assert_int_equal(counts[c], 1000);
    snn_dataset_free(&ds);

    t0 = snn_now();
    rc = snn_dataset_load_split(&ds, FASHION_DIR, "train", 0, &err);
    if (rc != SNN_OK) fail_msg("%s", err.msg);
    double t_train = snn_now() - t0;
    assert_int_equal(ds.n, 60000);
    assert_int_equal(ds.classes, 10);
    snn_dataset_free(&ds);
    print_message("fashion-mnist load: test %.3f s, train %.3f s\n", t_test, t_train);
}

/* ---- synthetic ------------------------------------------------------------------------ */

static void test_synthetic_determinism(void **state) {
    (void)state;
    snn_dataset a, b;
    snn_dataset_synthetic(&a, 42, 0, 50, 3, 12, 10, 7);
    snn_dataset_synthetic(&b, 42, 0, 50, 3, 12, 10, 7);
    assert_int_equal(a.n, 50);
    assert_int_equal(a.channels, 3);
    assert_int_equal(a.height, 12);
    assert_int_equal(a.width, 10);
    assert_int_equal(a.classes, 7);
    size_t size = 3 * 12 * 10;
    assert_memory_equal(a.pixels, b.pixels, 50 * size);
    assert_memory_equal(a.labels, b.labels, 50);
    for (int64_t i = 0; i < 50; i++) {
        assert_int_equal(a.index[i], i);
        assert_true(a.labels[i] < 7);
    }
    /* sample i does not depend on n */
    snn_dataset_free(&b);
    snn_dataset_synthetic(&b, 42, 0, 23, 3, 12, 10, 7);
    assert_memory_equal(a.pixels, b.pixels, 23 * size);
    assert_memory_equal(a.labels, b.labels, 23);
    /* another split or seed gives other samples */
    snn_dataset_free(&b);
    snn_dataset_synthetic(&b, 42, 1, 50, 3, 12, 10, 7);
    for (int64_t i = 0; i < 50; i++)
        assert_memory_not_equal(a.pixels + i * size, b.pixels + i * size, size);
    snn_dataset_free(&b);
    snn_dataset_synthetic(&b, 43, 0, 50, 3, 12, 10, 7);
    assert_memory_not_equal(a.pixels, b.pixels, 50 * size);
    snn_dataset_free(&b);
    /* not degenerate: a spread of intensities */
    uint64_t sum = 0;
    int zeros = 0, full = 0;
    for (size_t k = 0; k < 50 * size; k++) {
        sum += a.pixels[k];
        zeros += a.pixels[k] == 0;
        full += a.pixels[k] == 255;
    }
    double mean = (double)sum / (50.0 * size);
    assert_true(mean > 10.0 && mean < 200.0);
    assert_true(zeros > 0 && zeros < (int)(50 * size / 2));
    assert_true(full < (int)(50 * size / 10));
    snn_dataset_free(&a);
    snn_dataset_free(&a);

    /* balanced labels: every block of `classes` consecutive samples holds each class once */
    snn_dataset_synthetic(&a, 5, 0, 100, 1, 8, 8, 10);
    for (int blk = 0; blk < 10; blk++) {
        int seen[10] = {0};
        for (int k = 0; k < 10; k++) seen[a.labels[blk * 10 + k]]++;
        for (int c = 0; c < 10; c++) assert_int_equal(seen[c], 1);
    }
    snn_dataset_free(&a);
    snn_dataset_synthetic(&a, 5, 0, 0, 1, 8, 8, 10); /* empty is fine */
    assert_int_equal(a.n, 0);
    snn_dataset_free(&a);
}

/* Nearest class mean fitted on split 0 must classify split 1 far above chance (0.1). */
static void test_synthetic_learnable(void **state) {
    (void)state;
    enum { K = 10, S = 16 * 16, NTRAIN = 1000, NTEST = 1000 };
    snn_dataset tr, te;
    snn_dataset_synthetic(&tr, 2024, 0, NTRAIN, 1, 16, 16, K);
    snn_dataset_synthetic(&te, 2024, 1, NTEST, 1, 16, 16, K);
    double mean[K][S] = {{0}}; /* [class, pixel] */
    int count[K] = {0};
    for (int i = 0; i < NTRAIN; i++) {
        count[tr.labels[i]]++;
        for (int k = 0; k < S; k++) mean[tr.labels[i]][k] += tr.pixels[(size_t)i * S + k];
    }
    for (int c = 0; c < K; c++)
        for (int k = 0; k < S; k++) mean[c][k] /= count[c];
    int correct = 0;
    for (int i = 0; i < NTEST; i++) {
        int best = -1;
        double best_d = 0;
        for (int c = 0; c < K; c++) {
            double d = 0;
            for (int k = 0; k < S; k++) {
                double e = te.pixels[(size_t)i * S + k] - mean[c][k];
                d += e * e;
            }
            if (best < 0 || d < best_d) best = c, best_d = d;
        }
        correct += best == te.labels[i];
    }
    double acc = (double)correct / NTEST;
    print_message("synthetic nearest-mean accuracy: %.3f\n", acc);
    assert_true(acc >= 0.8);
    snn_dataset_free(&tr);
    snn_dataset_free(&te);
}

/* ---- shuffle -------------------------------------------------------------------------- */

static void test_shuffle(void **state) {
    (void)state;
    enum { N = 200 };
    const size_t size = 2 * 5 * 6;
    snn_dataset orig, a, b;
    snn_dataset_synthetic(&orig, 9, 0, N, 2, 5, 6, 4);
    snn_dataset_synthetic(&a, 9, 0, N, 2, 5, 6, 4);
    snn_dataset_synthetic(&b, 9, 0, N, 2, 5, 6, 4);
    snn_dataset_shuffle(&a, 77);
    snn_dataset_shuffle(&b, 77);
    assert_memory_equal(a.pixels, b.pixels, N * size);
    assert_memory_equal(a.labels, b.labels, N);
    assert_memory_equal(a.index, b.index, N * sizeof *a.index);
    int seen[N] = {0}, moved = 0;
    for (int64_t i = 0; i < N; i++) {
        int64_t src = a.index[i];
        assert_true(src >= 0 && src < N);
        seen[src]++;
        moved += src != i;
        assert_memory_equal(a.pixels + i * size, orig.pixels + src * size, size);
        assert_int_equal(a.labels[i], orig.labels[src]);
    }
    for (int i = 0; i < N; i++) assert_int_equal(seen[i], 1);
    assert_true(moved > N / 2);
    /* another seed, another order */
    snn_dataset_free(&b);
    snn_dataset_synthetic(&b, 9, 0, N, 2, 5, 6, 4);
    snn_dataset_shuffle(&b, 78);
    assert_memory_not_equal(a.index, b.index, N * sizeof *a.index);
    /* shuffling again composes: the index still names the file position */
    snn_dataset_shuffle(&a, 5);
    for (int64_t i = 0; i < N; i++)
        assert_memory_equal(a.pixels + i * size, orig.pixels + a.index[i] * size, size);
    snn_dataset_free(&a);
    snn_dataset_free(&b);
    snn_dataset_free(&orig);
    /* tiny datasets */
    snn_dataset_synthetic(&a, 1, 0, 1, 1, 2, 2, 2);
    snn_dataset_shuffle(&a, 3);
    assert_int_equal(a.index[0], 0);
    snn_dataset_free(&a);
    snn_dataset_shuffle(&a, 3); /* zeroed: no-op */
}

/* ---- encoders ------------------------------------------------------------------------- */

static void test_encode_direct(void **state) {
    (void)state;
    snn_dataset ds;
    make_dataset(&ds, 2, 1, 16, 16);
    for (int k = 0; k < 256; k++) {
        ds.pixels[k] = (uint8_t)k;
        ds.pixels[256 + k] = (uint8_t)(255 - k);
    }
    float x[256];
    snn_encode_direct(&ds, 0, x);
    /* An independent route: the double quotient rounded to float. Double rounding is
     * harmless for division (53 >= 2 * 24 + 2), so this is the correctly rounded float
     * quotient, which is what float32 division gives. */
    for (int k = 0; k < 256; k++) {
        float want = (float)((double)k / 255.0);
        if (memcmp(&x[k], &want, sizeof want) != 0)
            fail_msg("pixel %d: got %a, want %a", k, (double)x[k], (double)want);
    }
    assert_true(x[0] == 0.0f);
    assert_true(x[255] == 1.0f);
    assert_true(x[1] == 0x1.010102p-8f); /* float32(1) / 255 = 0x3b808081 */
    snn_encode_direct(&ds, 1, x);
    assert_true(x[0] == 1.0f && x[255] == 0.0f);
    snn_dataset_free(&ds);
}

static void test_encode_rate(void **state) {
    (void)state;
    enum { N = 3, S = 256, T = 4000 };
    snn_dataset ds;
    make_dataset(&ds, N, 1, 16, 16);
    for (int i = 0; i < N; i++)
        for (int k = 0; k < S; k++) ds.pixels[i * S + k] = (uint8_t)(k * (i + 1) + i);
    const uint64_t seed = 1234;
    /* [N][T][S] spikes, encoded in forward and in reverse order */
    float(*fwd)[T][S] = snn_xmalloc(sizeof(float[N][T][S]));
    float(*rev)[T][S] = snn_xmalloc(sizeof(float[N][T][S]));
    for (int i = 0; i < N; i++)
        for (int t = 0; t < T; t++) snn_encode_rate(&ds, i, t, seed, fwd[i][t]);
    /* reverse order of samples and timesteps: same bits */
    for (int t = T - 1; t >= 0; t--)
        for (int i = N - 1; i >= 0; i--) snn_encode_rate(&ds, i, t, seed, rev[i][t]);
    assert_memory_equal(fwd, rev, sizeof(float[N][T][S]));
    free(rev);

    /* The documented contract, recomputed through snn_rng_uniform and a double comparison. */
    for (int i = 0; i < N; i++) {
        uint64_t stream = snn_rng_stream("rate") ^ ((uint64_t)i * 0x9E3779B97F4A7C15ull);
        for (int t = 0; t < 50; t++)
            for (int k = 0; k < S; k++) {
                float u = snn_rng_uniform(seed, stream, (uint64_t)t * S + (uint64_t)k);
                float want = (double)u < ds.pixels[i * S + k] / 255.0 ? 1.0f : 0.0f;
                if (fwd[i][t][k] != want)
                    fail_msg("sample %d t %d pixel %d: got %g, want %g", i, t, k,
                             (double)fwd[i][t][k], (double)want);
            }
    }

    /* sample 0 holds every pixel value once: 0 never fires, 255 always, and the firing rate
     * over T = 4000 steps is within 0.04 of p / 255 (the standard deviation of the mean is at
     * most 0.5 / sqrt(4000) = 0.0079, so this is a 5-sigma bound; the draws are fixed by the
     * seed, so the test cannot flake) */
    double max_dev = 0;
    for (int k = 0; k < S; k++) {
        double fires = 0;
        for (int t = 0; t < T; t++) {
            assert_true(fwd[0][t][k] == 0.0f || fwd[0][t][k] == 1.0f);
            fires += fwd[0][t][k];
        }
        if (k == 0) assert_true(fires == 0);
        if (k == 255) assert_true(fires == T);
        double dev = fabs(fires / T - k / 255.0);
        if (dev > max_dev) max_dev = dev;
        assert_true(dev <= 0.04);
    }
    print_message("rate coding: max |rate - p/255| over 256 levels = %.4f\n", max_dev);

    /* different timesteps, samples with the same pixels, and seeds decorrelate */
    assert_memory_not_equal(fwd[0][0], fwd[0][1], sizeof fwd[0][0]);
    float y[S];
    snn_encode_rate(&ds, 0, 0, seed + 1, y);
    assert_memory_not_equal(fwd[0][0], y, sizeof y);

    /* keyed by file index: after reordering, a sample keeps its spikes */
    snn_dataset sh;
    make_dataset(&sh, N, 1, 16, 16);
    for (int i = 0; i < N; i++) {
        int src = N - 1 - i;
        memcpy(sh.pixels + i * S, ds.pixels + src * S, S);
        sh.index[i] = src;
    }
    for (int i = 0; i < N; i++) {
        snn_encode_rate(&sh, i, 17, seed, y);
        assert_memory_equal(y, fwd[N - 1 - i][17], sizeof y);
    }
    snn_dataset_free(&sh);
    snn_dataset_free(&ds);
    free(fwd);
}

static void test_free_zeroed(void **state) {
    (void)state;
    snn_dataset ds;
    memset(&ds, 0, sizeof ds);
    snn_dataset_free(&ds);
    snn_dataset_free(&ds);
    assert_zeroed(&ds);
}

/* The long-range task: one-hot tokens, exactly two markers (first and last quarter), label =
 * marked symbols equal, balanced, deterministic per (seed, split, i) and disjoint splits. */
static void test_longseq_task(void **state) {
    (void)state;
    enum { SIDE = 16, N = SIDE * SIDE, SYMS = 5, C = SYMS + 1, NS = 2000 };
    snn_dataset a, b, t;
    snn_dataset_longseq(&a, 11, 0, NS, SIDE, SYMS);
    snn_dataset_longseq(&b, 11, 0, 7, SIDE, SYMS);   /* a prefix: same samples */
    snn_dataset_longseq(&t, 11, 1, 7, SIDE, SYMS);   /* the other split */
    assert_int_equal(a.channels, C);
    assert_int_equal(a.height, SIDE);
    assert_int_equal(a.classes, 2);
    assert_memory_equal(a.pixels, b.pixels, (size_t)7 * C * N);
    assert_memory_not_equal(a.pixels, t.pixels, (size_t)7 * C * N);
    int64_t ones = 0, near_far_min = N;
    for (int64_t i = 0; i < NS; i++) {
        const uint8_t *x = a.pixels + (size_t)i * C * N;
        int marked[2], nm = 0, sym_of[N];
        for (int p = 0; p < N; p++) {
            int hot = 0;
            for (int s = 0; s < SYMS; s++)
                if (x[(size_t)s * N + p]) {
                    assert_int_equal(x[(size_t)s * N + p], 255);
                    sym_of[p] = s;
                    hot++;
                }
            assert_int_equal(hot, 1); /* one-hot */
            if (x[(size_t)SYMS * N + p]) {
                assert_true(nm < 2);
                marked[nm++] = p;
            }
        }
        assert_int_equal(nm, 2);
        assert_true(marked[0] < N / 4 && marked[1] >= N - N / 4);
        if (marked[1] - marked[0] < near_far_min) near_far_min = marked[1] - marked[0];
        assert_int_equal(a.labels[i], sym_of[marked[0]] == sym_of[marked[1]]);
        ones += a.labels[i];
    }
    assert_true(near_far_min >= N / 2);
    /* balanced: 1000 expected, binomial sd ~22 */
    assert_true(ones > 900 && ones < 1100);
    snn_dataset_free(&a);
    snn_dataset_free(&b);
    snn_dataset_free(&t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idx_raw),
        cmocka_unit_test(test_idx_gzip),
        cmocka_unit_test(test_idx_limit),
        cmocka_unit_test(test_idx_errors),
        cmocka_unit_test(test_load_split),
        cmocka_unit_test(test_fashion_mnist),
        cmocka_unit_test(test_synthetic_determinism),
        cmocka_unit_test(test_synthetic_learnable),
        cmocka_unit_test(test_longseq_task),
        cmocka_unit_test(test_shuffle),
        cmocka_unit_test(test_encode_direct),
        cmocka_unit_test(test_encode_rate),
        cmocka_unit_test(test_free_zeroed),
    };
    return cmocka_run_group_tests_name("datasets", tests, NULL, NULL);
}
