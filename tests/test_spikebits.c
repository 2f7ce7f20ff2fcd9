/*
 * test_spikebits.c: spike bit planes (sim/spikebits.c): packing then unpacking gives back the
 * exact floats (bit patterns compared) for binary and ternary spikes at lengths that are and are
 * not multiples of 64; the planes hold one bit per spike at the documented positions, bits past
 * n are 0, and the count is the number of nonzero spikes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "sim/rng.h"
#include "sim/spikebits.h"
#include "sim/util.h"

/* Lengths around word boundaries, and one past the trainer's chunk (4096 neurons). */
static const size_t lengths[] = {1, 31, 32, 33, 63, 64, 65, 127, 128, 200, 4096 + 37};

/* n random spikes: {0, 1}, or {-1, 0, +1} if ternary, about a third of them nonzero. */
static void random_spikes(float *s, size_t n, bool ternary, uint64_t seed) {
    for (size_t i = 0; i < n; i++) {
        const uint64_t u = snn_rng_u64(seed, 0, i) % 6;
        s[i] = u < 4 ? 0.0f : (ternary && u == 5) ? -1.0f : 1.0f;
    }
}

static void round_trip(bool ternary) {
    for (size_t k = 0; k < sizeof lengths / sizeof *lengths; k++) {
        const size_t n = lengths[k], words = snn_bits_words(n);
        assert_int_equal(words, (n + 63) / 64);
        float *s = snn_xmalloc(n * sizeof *s), *back = snn_xmalloc(n * sizeof *back);
        /* one spare word after each plane: pack must not write it */
        uint64_t *nz = snn_xmalloc((words + 1) * sizeof *nz);
        uint64_t *neg = snn_xmalloc((words + 1) * sizeof *neg);
        for (size_t w = 0; w <= words; w++) nz[w] = neg[w] = ~UINT64_C(0);
        random_spikes(s, n, ternary, 17 + n);
        snn_bits_pack(nz, ternary ? neg : NULL, s, n);
        assert_true(nz[words] == ~UINT64_C(0));
        if (!ternary) assert_true(neg[0] == ~UINT64_C(0)); /* binary: no sign plane written */
        uint64_t nonzero = 0;
        for (size_t i = 0; i < n; i++) {
            nonzero += s[i] != 0.0f;
            assert_int_equal((nz[i / 64] >> (i % 64)) & 1, s[i] != 0.0f);
            if (ternary) assert_int_equal((neg[i / 64] >> (i % 64)) & 1, s[i] < 0.0f);
        }
        if (n % 64) { /* bits past n are 0 */
            assert_true((nz[words - 1] >> (n % 64)) == 0);
            if (ternary) assert_true((neg[words - 1] >> (n % 64)) == 0);
        }
        assert_int_equal(snn_bits_count(nz, n), nonzero);
        if (n >= 32) assert_true(nonzero > 0 && nonzero < n); /* the draw has both kinds */
        memset(back, 0xff, n * sizeof *back); /* NaNs: every element must be written */
        snn_bits_unpack(back, nz, ternary ? neg : NULL, n);
        assert_memory_equal(back, s, n * sizeof *s); /* bit patterns: no -0.0f for 0 */
        free(s);
        free(back);
        free(nz);
        free(neg);
    }
}

static void test_binary_round_trip(void **state) {
    (void)state;
    round_trip(false);
}

static void test_ternary_round_trip(void **state) {
    (void)state;
    round_trip(true);
}

/* The count ignores whatever lies past n in the last word (a smaller minibatch leaves the
 * previous one's bits there). */
static void test_count_ignores_bits_past_n(void **state) {
    (void)state;
    const uint64_t w[2] = {~UINT64_C(0), ~UINT64_C(0)};
    assert_int_equal(snn_bits_count(w, 64), 64);
    assert_int_equal(snn_bits_count(w, 70), 70);
    assert_int_equal(snn_bits_count(w, 5), 5);
    assert_int_equal(snn_bits_count(w, 0), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_binary_round_trip),
        cmocka_unit_test(test_ternary_round_trip),
        cmocka_unit_test(test_count_ignores_bits_past_n),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
