/*
 * longseq.c: a seeded long-range sequence-classification task ("marked pair"), for comparing
 * attention kernels where attention matters (issue: long sequences).
 *
 * A sample is a sequence of N = side * side tokens. Every token carries one of `symbols`
 * symbols, one-hot (255 in channel sym, 0 elsewhere); exactly two tokens also carry a marker
 * (255 in channel `symbols`): token a in the first quarter of the sequence and token b in the
 * last quarter, so at least N/2 positions apart. The label is 1 when the two marked tokens carry
 * the same symbol and 0 otherwise (half the samples each, in expectation).
 *
 * Why attention matters: spikesim's head is a linear map of the token mean of per-token
 * features. Without mixing between tokens, the pooled vector is a sum of f(token) terms, and no
 * linear function of f(sym_a) + f(sym_b) (+ the distractors' sum) tells "equal" from
 * "different" for 3 or more symbols, so a model without token mixing stays near chance; the
 * marked tokens must exchange information, which only the attention kernel does.
 *
 * Layout: the sequence is the row-major order of a [side, side] grid, an image of C = symbols+1
 * channels, so with model.patch = 1 the model's token n is sequence position n (spec section 2
 * patch order). N up to 4096 (side 64).
 *
 * Random streams (reproducibility contract): sample i of split s uses stream
 * snn_rng_stream("longseq") ^ (s + 1), counters 4 i + 0 (position a), 4 i + 1 (position b),
 * 4 i + 2 (equal or not, and sym_a), 4 i + 3 (sym_b); distractor symbol of position p is
 * counter 2^40 + i * N + p. A sample depends only on (seed, split, i, side, symbols).
 */
#include "datasets/dataset.h"

#include <string.h>

#include "sim/rng.h"

/* Uniform integer in [0, n) from one 64-bit draw (n small: the modulo bias is < 2^-50). */
static int draw_below(uint64_t seed, uint64_t stream, uint64_t counter, int n) {
    return (int)(snn_rng_u64(seed, stream, counter) % (uint64_t)n);
}

void snn_dataset_longseq(snn_dataset *ds, uint64_t seed, int split, int64_t n, int side,
                         int symbols) {
    SNN_ASSERT(side >= 2 && symbols >= 2 && n >= 0);
    const int N = side * side, C = symbols + 1;
    const size_t per = (size_t)C * N;
    memset(ds, 0, sizeof *ds);
    ds->n = n;
    ds->channels = C;
    ds->height = ds->width = side;
    ds->classes = 2;
    ds->pixels = snn_xcalloc((size_t)n * per + 1, 1);
    ds->labels = snn_xcalloc((size_t)n + 1, 1);
    ds->index = snn_xcalloc((size_t)n + 1, sizeof *ds->index);
    const uint64_t stream = snn_rng_stream("longseq") ^ (uint64_t)(split + 1);
    const int quarter = N / 4 > 0 ? N / 4 : 1;
    for (int64_t i = 0; i < n; i++) {
        uint8_t *x = ds->pixels + (size_t)i * per;  /* [C, N] */
        const uint64_t c0 = 4 * (uint64_t)i;
        const int a = draw_below(seed, stream, c0 + 0, quarter);
        const int b = N - 1 - draw_below(seed, stream, c0 + 1, quarter);
        const uint64_t r = snn_rng_u64(seed, stream, c0 + 2);
        const bool equal = r & 1;
        const int sym_a = (int)((r >> 1) % (uint64_t)symbols);
        /* a different symbol: one of the other symbols - 1, uniformly */
        const int sym_b = equal ? sym_a
                                : (sym_a + 1 + draw_below(seed, stream, c0 + 3, symbols - 1)) % symbols;
        for (int p = 0; p < N; p++) {
            int sym = draw_below(seed, stream, (1ull << 40) + (uint64_t)i * N + (uint64_t)p, symbols);
            if (p == a) sym = sym_a;
            if (p == b) sym = sym_b;
            x[(size_t)sym * N + p] = 255;
        }
        x[(size_t)symbols * N + a] = 255;
        x[(size_t)symbols * N + b] = 255;
        ds->labels[i] = equal;
        ds->index[i] = i;
    }
}
