/*
 * test_cli.c: the spikesim command line as a user meets it: exit codes, one-line errors, and
 * bad input that loses nothing (no partial output file, an existing output left untouched).
 * Runs the built binary (BUILD/spikesim, found next to this test's directory).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sim/layers.h"
#include "tests/testutil.h"

static const char good_cfg[] =
    "name: cli\nseed: 1\n"
    "data: {source: synthetic, synthetic_samples: 8}\n"
    "model: {image_size: 16, patch: 4, dim: 16, heads: 2, blocks: 1, mlp_ratio: 2, timesteps: 2}\n"
    "record: {samples: 2}\n";

static char *write_cfg(const char *name, const char *text) {
    char *p = snn_test_tmp_path(name);
    assert_int_equal(snn_test_write_file(p, text, strlen(text)), 0);
    return p;
}

static void test_version_and_help(void **state) {
    (void)state;
    snn_test_cli r = {0};
    snn_test_cli_run(&r, "--version");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "spikesim 0."));
    /* The binary runs on the kernels this process would ask OpenBLAS for (the same library and
     * CPU), or on this process's own when OpenBLAS knew the CPU: never on the generic fallback
     * where the CPU has better (sim/main.c restarts itself with OPENBLAS_CORETYPE set). */
    const char *want = snn_blas_core_for_cpu();
    char line[128];
    snprintf(line, sizeof line, "OpenBLAS %s kernels", want ? want : snn_blas_core());
    assert_non_null(strstr(r.out, line));
    snn_test_cli_run(&r, "--help");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "usage: spikesim run CONFIG"));
    snn_test_cli_run(&r, "frobnicate");
    assert_int_equal(r.status, 2);
    snn_test_cli_run(&r, "run");
    assert_int_equal(r.status, 2);
    snn_test_cli_free(&r);
}

static void test_validate_reports_every_error_and_exits_2(void **state) {
    (void)state;
    char *good = write_cfg("good.yaml", good_cfg);
    char *bad = write_cfg("bad.yaml", "model:\n  dim: 30\n  heads: 4\n  heds: 2\n");
    snn_test_cli r = {0};
    snn_test_cli_run(&r, "validate %s", good);
    assert_int_equal(r.status, 0);
    snn_test_cli_run(&r, "validate %s", bad);
    assert_int_equal(r.status, 2);
    char expect[600];
    snprintf(expect, sizeof expect, "%s:4:3: error: unknown key 'heds' in 'model' (did you mean 'heads'?)", bad);
    assert_non_null(strstr(r.err, expect));
    assert_non_null(strstr(r.err, "must be divisible by model.heads"));
    /* an override is validated like the file */
    snn_test_cli_run(&r, "validate %s --set model.heads=5", good);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "--set model.heads=5: error:"));
    snn_test_cli_free(&r);
    remove(good);
    remove(bad);
    free(good);
    free(bad);
}

static void test_run_writes_file_and_bad_input_loses_nothing(void **state) {
    (void)state;
    char *cfg = write_cfg("run.yaml", good_cfg);
    char *out = snn_test_tmp_path("run.h5");
    snn_test_cli r = {0};
    remove(out);

    /* A bad config: exit 2, no file. */
    snn_test_cli_run(&r, "run %s -o %s --set model.heads=3", cfg, out);
    assert_int_equal(r.status, 2);
    assert_false(snn_test_exists(out));

    /* A good run: exit 0, the file opens in h5dump. */
    snn_test_cli_run(&r, "run %s -o %s --quiet", cfg, out);
    if (r.status != 0) fail_msg("run failed: %s", r.err);
    assert_true(snn_test_exists(out));
    if (access("/usr/bin/h5dump", X_OK) == 0) {
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "/usr/bin/h5dump -A %s >/dev/null 2>&1", out);
        assert_int_equal(system(cmd), 0);
    }
    struct stat before;
    assert_int_equal(stat(out, &before), 0);

    /* Missing dataset directory: exit 1, one line, the existing output untouched. */
    snn_test_cli_run(&r, "run %s -o %s --set data.source=idx --set data.path=/nonexistent/fmnist", cfg, out);
    assert_int_equal(r.status, 1);
    assert_int_equal(snn_test_count_lines(r.err), 1);
    assert_non_null(strstr(r.err, "/nonexistent/fmnist"));

    /* A checkpoint that is not an HDF5 file: exit 1, existing output untouched. */
    snn_test_cli_run(&r, "run %s -o %s --set model.weights=%s", cfg, out, cfg);
    assert_int_equal(r.status, 1);
    assert_int_equal(snn_test_count_lines(r.err), 1);
    struct stat after;
    assert_int_equal(stat(out, &after), 0);
    assert_int_equal(before.st_ino, after.st_ino);
    assert_int_equal(before.st_size, after.st_size);
    assert_int_equal(before.st_mtime, after.st_mtime);

    /* An unwritable destination: exit 1 before any work. */
    snn_test_cli_run(&r, "run %s -o /nonexistent/dir/x.h5", cfg);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "/nonexistent/dir/x.h5"));

    /* The run file is a checkpoint: running from it gives the same logits. */
    char *out2 = snn_test_tmp_path("run2.h5");
    snn_test_cli_run(&r, "run %s -o %s --quiet --set model.weights=%s", cfg, out2, out);
    if (r.status != 0) fail_msg("run from checkpoint failed: %s", r.err);
    snn_test_cli_free(&r);
    char cmd[2048], *d1 = snn_test_tmp_path("l1"), *d2 = snn_test_tmp_path("l2");
    snprintf(cmd, sizeof cmd, "/usr/bin/h5dump -d /outputs/logits -y %s | tail -n +2 > %s; "
             "/usr/bin/h5dump -d /outputs/logits -y %s | tail -n +2 > %s; cmp -s %s %s",
             out, d1, out2, d2, d1, d2);
    if (access("/usr/bin/h5dump", X_OK) == 0) assert_int_equal(system(cmd), 0);
    remove(d1);
    remove(d2);
    free(d1);
    free(d2);
    remove(out2);
    free(out2);
    remove(out);
    remove(cfg);
    free(out);
    free(cfg);
}

int main(int argc, char **argv) {
    (void)argc;
    snn_test_cli_locate(argv[0]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version_and_help),
        cmocka_unit_test(test_validate_reports_every_error_and_exits_2),
        cmocka_unit_test(test_run_writes_file_and_bad_input_loses_nothing),
    };
    return cmocka_run_group_tests_name("cli", tests, NULL, NULL);
}
