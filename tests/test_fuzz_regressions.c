/*
 * test_fuzz_regressions.c: every input under tests/fuzz/regressions/ that once made a fuzz
 * target fail in spikesim code, run through the same entry points and shown to give the clean
 * error of the fix (tests/fuzz/regressions/README.md, docs/fuzzing.md).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sim/config.h"
#include "sim/h5io.h"
#include "sim/model.h"
#include "sim/util.h"
#include "tests/testutil.h"

#define REGRESSIONS "tests/fuzz/regressions"

/* checkpoint/hollow-optimizer-m.h5: /optimizer/m declares 2^40 floats and stores none.
 * snn_h5_read used to allocate 4 TiB for it and abort; resuming from it used to kill the run. */
static void test_hollow_optimizer_dataset_is_refused_not_allocated(void **state) {
    (void)state;
    const char *file = REGRESSIONS "/checkpoint/hollow-optimizer-m.h5";
    const char *want = REGRESSIONS "/checkpoint/hollow-optimizer-m.h5: /optimizer/m has shape "
                       "[1099511627776] but the file stores only 0 bytes of its data (corrupt "
                       "file?)";
    snn_err err = {{0}};
    int rank;
    uint64_t dims[4];
    void *data = NULL;
    assert_int_equal(snn_h5_read(file, "/optimizer/m", SNN_H5_F32, &rank, dims, &data, &err),
                     SNN_ERR);
    assert_string_equal(err.msg, want);
    assert_null(data);

    /* The rest of the checkpoint is intact: its parameters load into the model it was trained
     * for, so a resume gets as far as the optimizer state. */
    snn_config cfg;
    assert_int_equal(snn_config_load_file(&cfg, "tests/fuzz/checkpoint.yaml", NULL, 0, stderr), 0);
    snn_model m;
    assert_int_equal(snn_model_init(&m, &cfg, &err), SNN_OK);
    assert_int_equal(snn_h5_read_parameters(file, m.tensors, m.n_tensors, &err), SNN_OK);
    snn_model_free(&m);
    snn_config_free(&cfg);

    /* The whole program: a clean I/O error (exit 1) naming the dataset, before any training. */
    char *out = snn_test_tmp_path("hollow-run.h5");
    snn_test_cli r = {0};
    snn_test_cli_run(&r, "run tests/fuzz/checkpoint.yaml --set train.resume=%s -o %s --threads 1",
                     file, out);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, want));
    snn_test_cli_free(&r);
    unlink(out);
    free(out);
}

int main(int argc, char **argv) {
    (void)argc;
    snn_test_cli_locate(argv[0]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hollow_optimizer_dataset_is_refused_not_allocated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
