/*
 * test_par.c: two-ended sharing of a loop's items (sim/par.h).
 *
 * What the layers rely on: every item is handed out exactly once, whatever the team size, and
 * nothing is handed out after the last one. What the cache affinity relies on: with two
 * threads, thread 0's items are a prefix taken in increasing order and thread 1's the rest,
 * taken from the back in decreasing order; one thread takes them all in order.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "sim/par.h"
#include "tests/testutil.h"

enum { N_ITEMS = 5000, MAX_TEAM = 4 };

/* Runs the items [0, n) on a team of `threads`: owner[i] = the thread that took item i (-1 if
 * none), order[t][k] = thread t's k-th item, count[t] its number of items; returns the number
 * of items taken twice. Each item does a little work, so that the threads interleave. */
static int share(long n, int threads, int *owner, long (*order)[N_ITEMS], long *count) {
    (void)threads; /* unused without OpenMP: one thread takes every item */
    snn_par_ends ends = snn_par_ends_of(n);
    for (long i = 0; i < n; i++) owner[i] = -1;
    for (int t = 0; t < MAX_TEAM; t++) count[t] = 0;
    int twice = 0;
#pragma omp parallel num_threads(threads) reduction(+ : twice)
    {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        for (long i; (i = snn_par_ends_next(&ends)) >= 0;) {
            volatile double work = 0.0;
            for (int k = 0; k < 200; k++) work += (double)k * (double)i;
            int prev;
#pragma omp atomic capture
            {
                prev = owner[i];
                owner[i] = tid;
            }
            twice += prev != -1;
            order[tid][count[tid]++] = i;
        }
    }
    return twice;
}

static void test_one_thread_takes_every_item_in_order(void **state) {
    (void)state;
    static int owner[N_ITEMS];
    static long order[MAX_TEAM][N_ITEMS];
    long count[MAX_TEAM];
    assert_int_equal(share(N_ITEMS, 1, owner, order, count), 0);
    assert_int_equal(count[0], N_ITEMS);
    for (long i = 0; i < N_ITEMS; i++) assert_int_equal(order[0][i], i);
}

static void test_two_threads_take_the_two_ends(void **state) {
    (void)state;
#ifndef _OPENMP
    skip();
#else
    static int owner[N_ITEMS];
    static long order[MAX_TEAM][N_ITEMS];
    long count[MAX_TEAM];
    for (int rep = 0; rep < 20; rep++) {
        assert_int_equal(share(N_ITEMS, 2, owner, order, count), 0);
        assert_int_equal(count[0] + count[1], N_ITEMS);
        /* thread 0: 0, 1, ..., k - 1; thread 1: n - 1, n - 2, ..., k */
        for (long k = 0; k < count[0]; k++) assert_int_equal(order[0][k], k);
        for (long k = 0; k < count[1]; k++) assert_int_equal(order[1][k], N_ITEMS - 1 - k);
        for (long i = 0; i < N_ITEMS; i++) assert_int_equal(owner[i], i < count[0] ? 0 : 1);
    }
#endif
}

static void test_any_team_takes_every_item_once(void **state) {
    (void)state;
    static int owner[N_ITEMS];
    static long order[MAX_TEAM][N_ITEMS];
    long count[MAX_TEAM];
    const long sizes[] = {0, 1, 2, 3, 7, N_ITEMS};
    for (int threads = 1; threads <= MAX_TEAM; threads++)
        for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
            const long n = sizes[s];
            assert_int_equal(share(n, threads, owner, order, count), 0);
            long total = 0;
            for (int t = 0; t < MAX_TEAM; t++) total += count[t];
            assert_int_equal(total, n);
            for (long i = 0; i < n; i++) assert_true(owner[i] >= 0 && owner[i] < threads);
        }
}

static void test_nothing_after_the_last_item(void **state) {
    (void)state;
    snn_par_ends ends = snn_par_ends_of(2);
    assert_int_equal(snn_par_ends_next(&ends), 0);
    assert_int_equal(snn_par_ends_next(&ends), 1);
    assert_int_equal(snn_par_ends_next(&ends), -1);
    assert_int_equal(snn_par_ends_next(&ends), -1);
    snn_par_ends none = snn_par_ends_of(0);
    assert_int_equal(snn_par_ends_next(&none), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_thread_takes_every_item_in_order),
        cmocka_unit_test(test_two_threads_take_the_two_ends),
        cmocka_unit_test(test_any_team_takes_every_item_once),
        cmocka_unit_test(test_nothing_after_the_last_item),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
