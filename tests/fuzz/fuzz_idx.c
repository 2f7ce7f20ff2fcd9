/*
 * fuzz_idx.c: libFuzzer target for the IDX reader (datasets/idx.c, snn_idx_load).
 *
 * Input layout: byte 0 is the sample limit (0 = all), bytes 1..2 the length L of the image
 * file (little-endian), then L bytes of image file and the rest is the label file; either may
 * be gzip-compressed. A load that succeeds must describe its buffers consistently (checked
 * here, and ASan checks the encoders stay inside them).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/dataset.h"
#include "tests/fuzz/fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3) return 0;
    int64_t limit = data[0];
    size_t img_len = (size_t)data[1] | (size_t)data[2] << 8;
    data += 3;
    size -= 3;
    if (img_len > size) img_len = size;

    fuzz_file fi, fl;
    fuzz_file_open(&fi, data, img_len);
    fuzz_file_open(&fl, data + img_len, size - img_len);
    snn_dataset ds;
    snn_err err;
    if (snn_idx_load(&ds, fi.path, fl.path, limit, &err) == SNN_OK) {
        if (ds.n <= 0 || (limit && ds.n > limit) || ds.channels != 1 || ds.height <= 0 ||
            ds.width <= 0 || ds.classes < 1 || ds.classes > 100) {
            fprintf(stderr, "inconsistent dataset: n %lld, %dx%dx%d, %d classes\n",
                    (long long)ds.n, ds.channels, ds.height, ds.width, ds.classes);
            abort();
        }
        size_t sample = (size_t)ds.height * (size_t)ds.width;
        float *x = malloc(sample * sizeof *x);
        if (!x) abort();
        for (int64_t i = 0; i < ds.n; i += ds.n - 1 > 0 ? ds.n - 1 : 1) {
            if (ds.labels[i] >= ds.classes || ds.index[i] != i) abort();
            snn_encode_direct(&ds, i, x);
            snn_encode_rate(&ds, i, 0, 1, x);
        }
        free(x);
        snn_dataset_free(&ds);
    }
    fuzz_file_close(&fi);
    fuzz_file_close(&fl);
    return 0;
}
