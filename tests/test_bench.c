/*
 * test_bench.c: the deterministic helpers of `spikesim bench` (sim/bench.h). The benchmark's
 * figures are timings and are never tested; what is tested here is arithmetic, parsing and
 * memory accounting:
 *   - the least-squares line (exact on a line, the known solution off it, the largest residual);
 *   - reading "Key: n kB" lines of /proc/self/status;
 *   - the peak resident set: touching 64 MiB raises it by at least 64 MiB, and a reset after
 *     unmapping them brings it back down.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <sys/mman.h>

#include "sim/bench.h"

static void test_linfit_exact_line(void **state) {
    (void)state;
    /* trainer bytes are a + b T: large values, exact fit expected */
    const double x[4] = {1, 2, 4, 8};
    double y[4], slope, icpt;
    for (int i = 0; i < 4; i++) y[i] = 92020736.0 * x[i] + 503808.0;
    const double resid = snn_bench_linfit(x, y, 4, &slope, &icpt);
    assert_true(fabs(slope - 92020736.0) < 1e-6);
    assert_true(fabs(icpt - 503808.0) < 1e-6);
    assert_true(resid < 1e-6);
}

static void test_linfit_least_squares(void **state) {
    (void)state;
    /* (0, 0), (1, 1), (2, 1): slope 1/2, intercept 1/6, residuals -1/6, 1/3, -1/6 */
    const double x[3] = {0, 1, 2}, y[3] = {0, 1, 1};
    double slope, icpt;
    const double resid = snn_bench_linfit(x, y, 3, &slope, &icpt);
    assert_true(fabs(slope - 0.5) < 1e-15);
    assert_true(fabs(icpt - 1.0 / 6.0) < 1e-15);
    assert_true(fabs(resid - 1.0 / 3.0) < 1e-15);
    /* two points: the line through them; the order of the points does not matter */
    const double x2[2] = {3, -1}, y2[2] = {7, -1};
    assert_true(snn_bench_linfit(x2, y2, 2, &slope, &icpt) < 1e-15);
    assert_true(fabs(slope - 2.0) < 1e-15 && fabs(icpt - 1.0) < 1e-15);
}

static void test_status_lines(void **state) {
    (void)state;
    const char status[] = "Name:\tspikesim\n"
                          "VmPeak:\t  500000 kB\n"
                          "VmHWM:\t   12345 kB\n"
                          "VmRSS:\t    2048 kB\n"
                          "Threads:\t2\n";
    assert_int_equal(snn_bench_status_kib(status, "VmHWM"), 12345);
    assert_int_equal(snn_bench_status_kib(status, "VmRSS"), 2048);
    assert_int_equal(snn_bench_status_kib(status, "Threads"), 2);
    assert_int_equal(snn_bench_status_kib(status, "VmSwap"), -1); /* absent */
    assert_int_equal(snn_bench_status_kib(status, "Vm"), -1);     /* a prefix is not a key */
    assert_int_equal(snn_bench_status_kib(status, "Name"), -1);   /* not a number */
    assert_int_equal(snn_bench_status_kib("", "VmRSS"), -1);
    assert_int_equal(snn_bench_status_kib("VmRSS:\t 7 kB", "VmRSS"), 7); /* no final newline */
}

static void test_peak_rss_follows_touched_memory(void **state) {
    (void)state;
    snn_err err = {{0}};
    size_t now0, peak0, now1, peak1, now2, peak2;
    assert_int_equal(snn_bench_rss(&now0, &peak0, &err), SNN_OK);
    assert_true(now0 > 0 && peak0 >= now0);
    assert_int_equal(snn_bench_reset_peak_rss(&err), SNN_OK);
    const size_t big = (size_t)64 << 20;
    /* mmap, not malloc: an allocator may keep freed memory (AddressSanitizer's quarantine does) */
    unsigned char *p = mmap(NULL, big, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(p != MAP_FAILED);
    memset(p, 1, big);
    assert_int_equal(snn_bench_rss(&now1, &peak1, &err), SNN_OK);
    assert_true(peak1 >= now0 + big);
    assert_int_equal(munmap(p, big), 0);
    assert_int_equal(snn_bench_reset_peak_rss(&err), SNN_OK);
    assert_int_equal(snn_bench_rss(&now2, &peak2, &err), SNN_OK);
    assert_true(peak2 + big / 2 < peak1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linfit_exact_line),
        cmocka_unit_test(test_linfit_least_squares),
        cmocka_unit_test(test_status_lines),
        cmocka_unit_test(test_peak_rss_follows_touched_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
