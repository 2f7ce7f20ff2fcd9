/*
 * test_dist.c: the process layer of an MPI job in the default (one-process) build.
 *   - one process is rank 0 of 1; its ordered sums, broadcast and failure agreement are the
 *     identity (values bit for bit unchanged);
 *   - snn_dist_share splits n items into contiguous rank-ordered shares that cover [0, n) once,
 *     sizes differing by at most one;
 *   - the distributed code paths reduce exactly to the one-process ones with one rank:
 *     BatchNorm forward and backward over "the batch over every rank", the cross-entropy sum,
 *     and a trainer step on a share that is the whole batch (same loss, correct count and
 *     gradients, bit for bit), so `spikesim run` in a one-rank job trains as before.
 * (Two ranks need mpirun: tests/mpi_test.sh, `make mpi-test`.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "sim/dist.h"
#include "sim/layers.h"
#include "sim/run.h"
#include "sim/train.h"
#include "tests/testutil.h"

static void test_one_process_collectives_are_identity(void **state) {
    (void)state;
    assert_int_equal(snn_dist_rank(), 0);
    assert_int_equal(snn_dist_size(), 1);
    float f[3] = {1.5f, -0.0f, 3e-38f}, f0[3];
    double d[2] = {0.1, -7.25}, d0[2];
    int64_t i[2] = {INT64_MAX, -3}, i0[2];
    memcpy(f0, f, sizeof f);
    memcpy(d0, d, sizeof d);
    memcpy(i0, i, sizeof i);
    snn_dist_sum_f32(f, 3);
    snn_dist_sum_f64(d, 2);
    snn_dist_sum_i64(i, 2);
    snn_dist_bcast(d, sizeof d, 0);
    assert_memory_equal(f, f0, sizeof f);
    assert_memory_equal(d, d0, sizeof d);
    assert_memory_equal(i, i0, sizeof i);
    assert_int_equal(snn_dist_first_failed(0), -1);
    assert_int_equal(snn_dist_first_failed(1), 0);
}

static void test_shares_partition_in_rank_order(void **state) {
    (void)state;
    const int64_t ns[] = {0, 1, 7, 64, 1001};
    for (size_t a = 0; a < sizeof ns / sizeof *ns; a++) {
        for (int P = 1; P <= 9; P++) {
            int64_t next = 0, smallest = INT64_MAX, largest = 0;
            for (int r = 0; r < P; r++) {
                int64_t lo, hi;
                snn_dist_share(ns[a], r, P, &lo, &hi);
                assert_int_equal(lo, next); /* contiguous, in rank order */
                assert_true(hi >= lo);
                next = hi;
                if (hi - lo < smallest) smallest = hi - lo;
                if (hi - lo > largest) largest = hi - lo;
            }
            assert_int_equal(next, ns[a]);
            assert_true(largest - smallest <= 1);
        }
    }
}

/* Deterministic data with an offset, so that the shifted sums matter. */
static void fill(float *x, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        x[i] = 3.0f + (float)((seed >> 8) & 0xffff) / 65536.0f - 0.5f;
    }
}

static void test_batchnorm_over_one_rank_is_batchnorm(void **state) {
    (void)state;
    enum { M = 300, C = 300 }; /* C > 256: two channel blocks */
    float *x = snn_xmalloc(M * C * sizeof *x), *dy = snn_xmalloc(M * C * sizeof *dy);
    float gamma[C], beta[C];
    fill(x, M * C, 1);
    fill(dy, M * C, 2);
    fill(gamma, C, 3);
    fill(beta, C, 4);
    float *y[2], *xh[2], *dx[2], mean[2][C], rstd[2][C], rm[2][C], rv[2][C], dg[2][C], db[2][C];
    for (int k = 0; k < 2; k++) {
        y[k] = snn_xmalloc(M * C * sizeof(float));
        xh[k] = snn_xmalloc(M * C * sizeof(float));
        dx[k] = snn_xcalloc(M * C, sizeof(float));
        for (int c = 0; c < C; c++) {
            rm[k][c] = 0.0f;
            rv[k][c] = 1.0f;
            dg[k][c] = db[k][c] = 0.0f;
        }
    }
    snn_bn_train_fwd(y[0], xh[0], mean[0], rstd[0], x, gamma, beta, rm[0], rv[0], M, C, 0.1f, 1e-5f);
    snn_bn_train_fwd_dist(y[1], xh[1], mean[1], rstd[1], x, gamma, beta, rm[1], rv[1], M, M, C,
                          0.1f, 1e-5f);
    snn_bn_train_bwd(dx[0], dg[0], db[0], dy, xh[0], rstd[0], gamma, M, C, true);
    snn_bn_train_bwd_dist(dx[1], dg[1], db[1], dy, xh[1], rstd[1], gamma, M, M, C, true);
    assert_memory_equal(y[0], y[1], M * C * sizeof(float));
    assert_memory_equal(xh[0], xh[1], M * C * sizeof(float));
    assert_memory_equal(mean[0], mean[1], sizeof mean[0]);
    assert_memory_equal(rstd[0], rstd[1], sizeof rstd[0]);
    assert_memory_equal(rm[0], rm[1], sizeof rm[0]);
    assert_memory_equal(rv[0], rv[1], sizeof rv[0]);
    assert_memory_equal(dx[0], dx[1], M * C * sizeof(float));
    assert_memory_equal(dg[0], dg[1], sizeof dg[0]);
    assert_memory_equal(db[0], db[1], sizeof db[0]);
    for (int k = 0; k < 2; k++) {
        free(y[k]);
        free(xh[k]);
        free(dx[k]);
    }
    free(x);
    free(dy);
}

static void test_cross_entropy_sum_is_B_times_mean(void **state) {
    (void)state;
    enum { B = 5, C = 4 };
    float logits[B * C], probs[B * C];
    int32_t labels[B] = {0, 3, 1, 2, 3};
    fill(logits, B * C, 9);
    const float mean = snn_cross_entropy_fwd(probs, logits, labels, B, C, 0.1f);
    const double sum = snn_cross_entropy_fwd_sum(probs, logits, labels, B, C, 0.1f);
    assert_true(mean == (float)(sum / B));
    assert_true(sum > 0.0);
}

static const char tiny_yaml[] =
    "name: tiny\nseed: 5\n"
    "data: {source: synthetic, synthetic_samples: 32}\n"
    "model: {image_size: 8, patch: 4, dim: 8, heads: 2, blocks: 1, mlp_ratio: 2, timesteps: 2,"
    " init_std: 0.3, attention: {kind: %s}}\n"
    "train: {epochs: 1, batch_size: 8, lr: 0.01, label_smoothing: 0.1}\n";

/* One step of a fresh trainer, as the whole batch (share 0) or as a one-rank share of it. */
static float step(const char *kind, int share, float *grads, size_t *n_params, int *correct) {
    char text[1024];
    snprintf(text, sizeof text, tiny_yaml, kind);
    snn_config cfg;
    assert_int_equal(snn_config_load_string(&cfg, text, "tiny", NULL, 0, stderr), 0);
    snn_err err = {{0}};
    snn_dataset ds = {0};
    assert_int_equal(snn_run_load_data(&cfg, &ds, &err), SNN_OK);
    snn_model m;
    assert_int_equal(snn_model_init(&m, &cfg, &err), SNN_OK);
    const int B = 8;
    snn_trainer *tr = snn_trainer_new(&m, B, false);
    snn_trainer_set_share(tr, share);
    assert_int_equal(snn_trainer_share_of(tr), share);
    int32_t labels[8];
    for (int b = 0; b < B; b++) labels[b] = ds.labels[b];
    snn_trainer_zero_grads(tr);
    float loss = snn_trainer_step(tr, ds.pixels, ds.index, labels, B, true, true, correct);
    assert_true(m.n_params <= 4096);
    *n_params = m.n_params;
    memcpy(grads, snn_trainer_grads(tr), m.n_params * sizeof *grads);
    snn_trainer_free(tr);
    snn_model_free(&m);
    snn_dataset_free(&ds);
    snn_config_free(&cfg);
    return loss;
}

static void share_is_batch(const char *kind) {
    float g0[4096], g1[4096];
    size_t n0 = 0, n1 = 1;
    int c0 = -1, c1 = -2;
    const float l0 = step(kind, 0, g0, &n0, &c0), l1 = step(kind, 8, g1, &n1, &c1);
    assert_true(l0 > 0.0f);
    assert_true(l0 == l1);
    assert_int_equal(c0, c1);
    assert_int_equal(n0, n1);
    assert_memory_equal(g0, g1, n0 * sizeof *g0);
}

static void test_trainer_share_of_one_rank_is_the_batch_bsa(void **state) {
    (void)state;
    share_is_batch("bsa");
}

static void test_trainer_share_of_one_rank_is_the_batch_ssa(void **state) {
    (void)state;
    share_is_batch("ssa");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_process_collectives_are_identity),
        cmocka_unit_test(test_shares_partition_in_rank_order),
        cmocka_unit_test(test_batchnorm_over_one_rank_is_batchnorm),
        cmocka_unit_test(test_cross_entropy_sum_is_B_times_mean),
        cmocka_unit_test(test_trainer_share_of_one_rank_is_the_batch_bsa),
        cmocka_unit_test(test_trainer_share_of_one_rank_is_the_batch_ssa),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
