/*
 * test_output.c: the HDF5 run file, read back path by path (docs/hdf5-layout.md): root and
 * summary attributes, outputs, parameters (a run file is a checkpoint), NIRData spike grids
 * equal to what the engine recorded, statistics, op counts and energy arithmetic.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/eval.h"
#include "sim/layers.h"
#include "sim/model.h"
#include "sim/output.h"
#include "sim/run.h"
#include "tests/testutil.h"

static const char cfg_yaml[] =
    "name: out\nseed: 9\n"
    "data: {source: synthetic, synthetic_samples: 12}\n"
    "model: {image_size: 16, patch: 4, dim: 16, heads: 2, blocks: 1, mlp_ratio: 2, timesteps: 3,"
    " init_std: 0.3, attention: {kind: bsa}}\n"
    "record: {samples: 4}\n";

static void test_run_file_layout(void **state) {
    (void)state;
    snn_config cfg;
    assert_int_equal(snn_config_load_string(&cfg, cfg_yaml, "inline", NULL, 0, stderr), 0);
    char *path = snn_test_tmp_path("layout.h5");
    snn_err err = {{0}};

    /* Evaluate directly (to know what must be in the file), then write. */
    snn_dataset ds = {0};
    assert_int_equal(snn_run_load_data(&cfg, &ds, &err), SNN_OK);
    snn_model m;
    assert_int_equal(snn_model_init(&m, &cfg, &err), SNN_OK);
    snn_eval e;
    snn_eval_opts o = {.n_record = cfg.record.samples, .threads = 1};
    snn_evaluate(&m, &ds, &o, &e);
    snn_h5 h = {0};
    assert_int_equal(snn_h5_create(&h, path, 4, &err), SNN_OK);
    char *yaml = snn_config_to_yaml(&cfg);
    if (snn_output_write(&h, &m, &e, yaml, &err) != SNN_OK) fail_msg("%s", err.msg);
    assert_int_equal(snn_h5_commit(&h, &err), SNN_OK);

    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    char *s = snn_test_attr_str(f, "/", "__type__");
    assert_string_equal(s, "NIRGraphData");
    free(s);
    s = snn_test_attr_str(f, "/", "generator");
    assert_non_null(strstr(s, "spikesim"));
    free(s);
    s = snn_test_attr_str(f, "/", "blas"); /* the kernels the dense products ran on */
    assert_non_null(strstr(s, "OpenBLAS"));
    assert_non_null(strstr(s, snn_blas_core()));
    assert_non_null(strstr(s, "; libxsmm "));
    free(s);
    s = snn_test_attr_str(f, "/", "created");
    assert_int_equal(strlen(s), 20); /* YYYY-MM-DDTHH:MM:SSZ */
    assert_int_equal(s[19], 'Z');
    free(s);

    /* summary */
    snn_summary sum;
    snn_summarize(&m, &e, &sum);
    assert_true(fabs(snn_test_attr_f64(f, "/summary", "accuracy") - (double)e.correct / (double)e.n) < 1e-12);
    assert_true(snn_test_attr_f64(f, "/summary", "sops_per_sample") == sum.sops_per_sample);
    assert_true(snn_test_attr_f64(f, "/summary", "energy_pj_per_sample") == sum.energy_pj_per_sample);
    assert_true(sum.sops_per_sample > 0);
    /* energy = sum of counts x pJ, recomputed here by hand */
    double pj[SNN_OP__COUNT];
    snn_energy_costs(&cfg, pj);
    assert_true(pj[SNN_OP_AC] == 0.9 && pj[SNN_OP_MAC] == 4.6 && pj[SNN_OP_INT_ADD] == 0.1);
    double energy = 0;
    for (int l = 0; l < m.n_layers; l++)
        for (int c = 0; c < SNN_OP__COUNT; c++) energy += (double)e.ops[l].n[c] * pj[c];
    assert_true(fabs(energy / (double)e.n - sum.energy_pj_per_sample) <= 1e-9 * energy);
    H5Fclose(f);

    /* config text round-trips */
    char *text = NULL;
    {
        hid_t ff = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
        hid_t d = H5Dopen2(ff, "/config", H5P_DEFAULT);
        hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, H5T_VARIABLE);
        H5Tset_cset(t, H5T_CSET_UTF8);
        char *v = NULL;
        assert_true(H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, &v) >= 0);
        text = strdup(v);
        H5free_memory(v);
        H5Tclose(t);
        H5Dclose(d);
        H5Fclose(ff);
    }
    assert_string_equal(text, yaml);

    /* outputs */
    int rank;
    uint64_t dims[4];
    float *logits = NULL;
    assert_int_equal(snn_h5_read(path, "/outputs/logits", SNN_H5_F32, &rank, dims, (void **)&logits, &err), SNN_OK);
    assert_int_equal(rank, 2);
    assert_int_equal(dims[0], (uint64_t)e.n);
    assert_memory_equal(logits, e.logits, (size_t)e.n * m.classes * sizeof(float));
    int64_t *idx = NULL;
    assert_int_equal(snn_h5_read(path, "/outputs/sample_index", SNN_H5_I64, &rank, dims, (void **)&idx, &err), SNN_OK);
    for (int64_t i = 0; i < e.n; i++) assert_int_equal(idx[i], i);

    /* spikes of every population equal the recording; stats shapes */
    for (int p = 0; p < m.n_pops; p++) {
        char dp[200];
        snprintf(dp, sizeof dp, "/nodes/%s/observables/spikes/data", m.pops[p].name);
        int8_t *spk = NULL;
        assert_int_equal(snn_h5_read(path, dp, SNN_H5_I8, &rank, dims, (void **)&spk, &err), SNN_OK);
        assert_int_equal(rank, 3);
        assert_int_equal(dims[0], 4);
        assert_int_equal(dims[1], (uint64_t)m.T);
        assert_int_equal(dims[2], (uint64_t)m.pops[p].size);
        assert_memory_equal(spk, e.rec_spikes[p], 4 * (size_t)m.T * m.pops[p].size);
        free(spk);
        snprintf(dp, sizeof dp, "/nodes/%s/stats/firing_rate_per_neuron", m.pops[p].name);
        double *rate = NULL;
        assert_int_equal(snn_h5_read(path, dp, SNN_H5_F64, &rank, dims, (void **)&rate, &err), SNN_OK);
        assert_int_equal(dims[0], (uint64_t)m.pops[p].size);
        for (size_t j = 0; j < m.pops[p].size; j++) assert_true(rate[j] >= 0.0 && rate[j] <= 1.0);
        free(rate);
    }

    /* ops table */
    uint64_t *total = NULL;
    assert_int_equal(snn_h5_read(path, "/ops/total", SNN_H5_U64, &rank, dims, (void **)&total, &err), SNN_OK);
    assert_int_equal(dims[0], (uint64_t)m.n_layers);
    assert_int_equal(dims[1], SNN_OP__COUNT);
    assert_memory_equal(total, e.ops, (size_t)m.n_layers * SNN_OP__COUNT * sizeof(uint64_t));

    /* the run file is a checkpoint */
    snn_config cfg2;
    assert_int_equal(snn_config_load_string(&cfg2, cfg_yaml, "inline", NULL, 0, stderr), 0);
    cfg2.model.weights = strdup(path);
    snn_model m2;
    if (snn_model_init(&m2, &cfg2, &err) != SNN_OK) fail_msg("%s", err.msg);
    assert_memory_equal(m2.params, m.params, m.n_params * sizeof(float));
    snn_model_free(&m2);
    snn_config_free(&cfg2);

    free(total);
    free(idx);
    free(logits);
    free(text);
    free(yaml);
    snn_eval_free(&e, &m);
    snn_model_free(&m);
    snn_dataset_free(&ds);
    snn_config_free(&cfg);
    remove(path);
    free(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run_file_layout),
    };
    return cmocka_run_group_tests_name("output", tests, NULL, NULL);
}
