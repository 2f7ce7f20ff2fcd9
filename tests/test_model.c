/*
 * test_model.c: the engine end to end.
 *   - the event-driven synaptic layer equals a dense reference (exactly on a dyadic grid);
 *   - spike-for-spike agreement of every population, and the logits, with the PyTorch
 *     reference (tests/reference/golden_*.h5, made by tests/reference/make_golden.py);
 *   - 1 thread and 2 threads give byte-identical outputs, counts and recordings;
 *   - a checkpoint with a misshapen tensor is refused with its name and both shapes;
 *   - op counts of a synaptic layer are exact (spikes x fan-out).
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

#ifdef _OPENMP
#include <omp.h>
#endif

#include "sim/eval.h"
#include "sim/model.h"
#include "sim/rng.h"
#include "sim/run.h"
#include "sim/spikebits.h"
#include "tests/testmodel.h"
#include "tests/testutil.h"

/* ---- event-driven synaptic layer --------------------------------------------------------- */

static void make_linear(snn_linear *lin, int in, int out, bool dyadic, uint64_t seed) {
    memset(lin, 0, sizeof *lin);
    lin->in = in;
    lin->out = out;
    lin->wt = malloc((size_t)in * out * sizeof(float));
    lin->b = malloc((size_t)out * sizeof(float));
    for (size_t i = 0; i < (size_t)in * out; i++) {
        float u = snn_rng_uniform(seed, 1, i) * 2.0f - 1.0f;
        lin->wt[i] = dyadic ? roundf(u * 64.0f) / 64.0f : u;
    }
    for (int o = 0; o < out; o++) lin->b[o] = dyadic ? (float)(o % 5) / 8.0f : snn_rng_uniform(seed, 2, o);
}

static void free_linear(snn_linear *lin) {
    free(lin->wt);
    free(lin->b);
}

/* Ternary spikes with about 30% nonzero, some +-1 and (for sew streams) a few 2s. */
static void make_spikes(int8_t *s, size_t n, bool with_twos, uint64_t seed) {
    for (size_t i = 0; i < n; i++) {
        float u = snn_rng_uniform(seed, 3, i);
        s[i] = u < 0.15f ? 1 : u < 0.3f ? -1 : (with_twos && u < 0.35f) ? 2 : 0;
    }
}

static void naive_dense(const snn_linear *lin, int N, const int8_t *s, double *y) {
    for (int n = 0; n < N; n++)
        for (int o = 0; o < lin->out; o++) {
            double acc = lin->b[o];
            for (int i = 0; i < lin->in; i++) acc += (double)s[(size_t)n * lin->in + i] * lin->wt[(size_t)i * lin->out + o];
            y[(size_t)n * lin->out + o] = acc;
        }
}

/* Widths 37, 64, 100 and 200: a partial word, one whole word (the AVX2 builder's unit), a whole
 * word with a partial one, three whole words with a partial one. The bit planes are checked
 * directly, then the layer's sums. */
static void test_event_linear_equals_dense_reference(void **state) {
    (void)state;
    enum { N = 7, IN_MAX = 200, W_MAX = 4, out = 23 };
    const int widths[] = {37, 64, 100, 200};
    for (int wi = 0; wi < 4; wi++)
        for (int dyadic = 0; dyadic < 2; dyadic++) {
            const int in = widths[wi], W = (int)snn_bits_words((size_t)in);
            snn_linear lin;
            make_linear(&lin, in, out, dyadic, 11 + dyadic);
            int8_t s[N * IN_MAX];
            make_spikes(s, (size_t)N * in, true, 5 + (uint64_t)wi);
            uint64_t nz[N * W_MAX], neg[N * W_MAX];
            float y[N * out], yd[N * out], scratch[N * IN_MAX];
            double ref[N * out];
            snn_ops ops = {{0}}, ops_dense = {{0}};
            snn_linear_forward_events(&lin, N, s, nz, neg, y, &ops);
            /* bit c % 64 of word c / 64 is spike c's; bits past the width are 0 */
            for (int n = 0; n < N; n++)
                for (int c = 0; c < 64 * W; c++) {
                    const int8_t v = c < in ? s[n * in + c] : 0;
                    assert_int_equal(nz[n * W + c / 64] >> (c % 64) & 1, v != 0);
                    assert_int_equal(neg[n * W + c / 64] >> (c % 64) & 1, v < 0);
                }
            snn_linear_forward_dense(&lin, N, s, scratch, yd, &ops_dense);
            naive_dense(&lin, N, s, ref);
            float reff[N * out];
            for (int i = 0; i < N * out; i++) reff[i] = (float)ref[i];
            /* On the dyadic grid every partial sum is exact: equality. Otherwise float32 sums in
             * a different order: |diff| <= 3e-5 (inputs ~1, at most 100 terms of +-2). */
            snn_assert_allclose(y, reff, (size_t)N * out, dyadic ? 0.0 : 3e-5, 0.0, "events vs reference");
            snn_assert_allclose(yd, reff, (size_t)N * out, dyadic ? 0.0 : 3e-5, 0.0, "dense vs reference");
            /* ACs: one per (+-1 input, synapse); MACs: one per (other integer, synapse). */
            uint64_t pm1 = 0, other = 0;
            for (size_t i = 0; i < (size_t)N * in; i++) {
                pm1 += (s[i] == 1 || s[i] == -1);
                other += (s[i] != 0 && s[i] != 1 && s[i] != -1);
            }
            assert_int_equal(ops.n[SNN_OP_AC], pm1 * out);
            assert_int_equal(ops.n[SNN_OP_MAC], other * out);
            assert_int_equal(ops_dense.n[SNN_OP_MAC], (uint64_t)N * in * out);
            free_linear(&lin);
        }
}

/* ref [N, out] = b + the weight rows of the nonzero spikes of s [N, in], added in channel order
 * in float (what every event-driven path must give bit for bit); returns the events. */
static uint64_t channel_order_sums(const snn_linear *lin, int N, const int8_t *s, float *ref) {
    uint64_t events = 0;
    for (int n = 0; n < N; n++)
        for (int o = 0; o < lin->out; o++) {
            float a = lin->b[o];
            for (int i = 0; i < lin->in; i++)
                if (s[n * lin->in + i]) a += lin->wt[(size_t)i * lin->out + o], events += o == 0;
            ref[n * lin->out + o] = a;
        }
    return events;
}

/* Spikes all 0 or +1 (the layers' usual input, which takes the block-by-block loop when out is
 * a multiple of 64: on AVX-512 128 outputs a pass, then 64, so 192 takes 128 + 64;
 * with VBMI2, 100 and 200 inputs (2 and 4 plane words) take the event-list loop) with weights
 * off the dyadic grid: every output must be the float sum b + w_i1 + w_i2 + ... in channel
 * order, bit for bit; 23 outputs take the general loop. */
static void test_event_linear_binary_sums_in_channel_order(void **state) {
    (void)state;
    enum { N = 9, IN_MAX = 200, W_MAX = 4, OUT_MAX = 256 };
    const int widths[] = {64, 100, 200}, outs[] = {64, 128, 192, 256, 23};
    for (int wi = 0; wi < 3; wi++)
        for (int oi = 0; oi < 5; oi++) {
            const int in = widths[wi], out = outs[oi];
            snn_linear lin;
            make_linear(&lin, in, out, false, 31 + (uint64_t)(3 * wi + oi));
            int8_t s[N * IN_MAX];
            uint64_t ones = 0;
            for (int i = 0; i < N * in; i++) {
                s[i] = snn_rng_uniform(77, (uint64_t)wi, (uint64_t)i) < 0.3f;
                ones += (uint64_t)s[i];
            }
            for (int i = 0; i < in; i++) s[2 * in + i] = 0; /* a token without events */
            uint64_t nz[N * W_MAX], neg[N * W_MAX];
            float y[N * OUT_MAX], ref[N * OUT_MAX];
            snn_ops ops = {{0}};
            snn_linear_forward_events(&lin, N, s, nz, neg, y, &ops);
            const uint64_t acs = channel_order_sums(&lin, N, s, ref) * (uint64_t)out;
            assert_memory_equal(y, ref, (size_t)N * out * sizeof *y);
            assert_int_equal(ops.n[SNN_OP_AC], acs);
            assert_int_equal(ops.n[SNN_OP_MAC], 0);
            assert_true(ones > 0);
            free_linear(&lin);
        }
}

/* Three layers on the same spikes (a block's q, k, v; snn_linear3_forward_events): with every
 * spike 0 or +1 and one shape, each token's events are walked once for the three (AVX-512), and
 * each layer's outputs must still be its own channel-order sums bit for bit, its ACs its own;
 * a third layer of another width, and spikes with -1s, take one layer after the other, with the
 * bytes of three separate calls. */
static void test_event_linear3_equals_three_layers(void **state) {
    (void)state;
    enum { N = 11, IN_MAX = 200, W_MAX = 4, OUT_MAX = 128 };
    const int widths[] = {64, 200};
    for (int wi = 0; wi < 2; wi++)
        for (int variant = 0; variant < 3; variant++) { /* same shape; third wider; +-1 spikes */
            const int in = widths[wi];
            snn_linear lin[3];
            for (int j = 0; j < 3; j++)
                make_linear(&lin[j], in, variant == 1 && j == 2 ? 128 : 64, false,
                            51 + (uint64_t)(10 * wi + 3 * variant + j));
            int8_t s[N * IN_MAX];
            if (variant == 2)
                make_spikes(s, (size_t)N * in, false, 61 + (uint64_t)wi);
            else
                for (int i = 0; i < N * in; i++)
                    s[i] = snn_rng_uniform(79, (uint64_t)wi, (uint64_t)i) < 0.3f;
            for (int i = 0; i < in; i++) s[3 * in + i] = 0; /* a token without events */
            uint64_t nz[N * W_MAX], neg[N * W_MAX];
            float y[3][N * OUT_MAX], one[N * OUT_MAX];
            float *const ys[3] = {y[0], y[1], y[2]};
            snn_ops ops[3] = {{{0}}}, one_ops = {{0}};
            snn_ops *const opp[3] = {&ops[0], &ops[1], &ops[2]};
            const snn_linear *const lp[3] = {&lin[0], &lin[1], &lin[2]};
            snn_linear3_forward_events(lp, N, s, nz, neg, ys, opp);
            for (int j = 0; j < 3; j++) {
                const size_t bytes = (size_t)N * lin[j].out * sizeof(float);
                memset(&one_ops, 0, sizeof one_ops);
                snn_linear_forward_events(&lin[j], N, s, nz, neg, one, &one_ops);
                assert_memory_equal(y[j], one, bytes);
                assert_memory_equal(&ops[j], &one_ops, sizeof one_ops);
                if (variant == 2) continue; /* -1s subtract: the reference below adds */
                const uint64_t events = channel_order_sums(&lin[j], N, s, one);
                assert_memory_equal(y[j], one, bytes);
                assert_int_equal(ops[j].n[SNN_OP_AC], events * (uint64_t)lin[j].out);
                assert_true(events > 0);
            }
            for (int j = 0; j < 3; j++) free_linear(&lin[j]);
        }
}

/* ---- golden files from the PyTorch reference --------------------------------------------- */

static char *read_text(const char *file, const char *path) {
    hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return NULL;
    hid_t d = H5Dopen2(f, path, H5P_DEFAULT);
    hid_t t = H5Dget_type(d);
    char *out = NULL;
    if (H5Tis_variable_str(t) > 0) {
        char *s = NULL;
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5T_VARIABLE);
        H5Tset_cset(mt, H5T_CSET_UTF8);
        if (H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, &s) >= 0 && s) {
            out = strdup(s);
            H5free_memory(s);
        }
        H5Tclose(mt);
    } else {
        size_t n = H5Tget_size(t);
        out = calloc(n + 1, 1);
        H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, out);
    }
    H5Tclose(t);
    H5Dclose(d);
    H5Fclose(f);
    return out;
}

static void check_golden(const char *file) {
    snn_err err = {{0}};
    char *yaml = read_text(file, "/config");
    assert_non_null(yaml);
    snn_config cfg;
    int errors = snn_config_load_string(&cfg, yaml, file, NULL, 0, stderr);
    assert_int_equal(errors, 0);
    free(cfg.model.weights);
    cfg.model.weights = strdup(file);
    snn_model m;
    if (snn_model_init(&m, &cfg, &err) != SNN_OK) fail_msg("%s", err.msg);

    int rank;
    uint64_t dims[4];
    uint8_t *images = NULL;
    float *logits_ref = NULL;
    assert_int_equal(snn_h5_read(file, "/input/images", SNN_H5_U8, &rank, dims, (void **)&images, &err), SNN_OK);
    const int S = (int)dims[0];
    const size_t pix = (size_t)dims[1] * dims[2] * dims[3];
    assert_int_equal(pix, (size_t)m.C * m.img * m.img);
    assert_int_equal(snn_h5_read(file, "/expected/logits", SNN_H5_F32, &rank, dims, (void **)&logits_ref, &err), SNN_OK);
    assert_int_equal(dims[0], (uint64_t)S);
    assert_int_equal(dims[1], (uint64_t)m.classes);

    snn_ws ws;
    snn_ws_init(&ws, &m);
    int8_t **spk = calloc((size_t)m.n_pops, sizeof *spk);
    for (int p = 0; p < m.n_pops; p++) spk[p] = calloc((size_t)m.T * m.pops[p].size, 1);
    snn_record rec = {.spikes = spk};
    float *logits = calloc((size_t)m.classes, sizeof *logits);
    uint64_t compared = 0, nonzero = 0;
    for (int i = 0; i < S; i++) {
        snn_model_forward(&m, &ws, images + (size_t)i * pix, i, logits, &rec);
        for (int p = 0; p < m.n_pops; p++) {
            char path[160];
            snprintf(path, sizeof path, "/expected/nodes/%s/spikes", m.pops[p].name);
            int8_t *ref = NULL;
            if (snn_h5_read(file, path, SNN_H5_I8, &rank, dims, (void **)&ref, &err) != SNN_OK)
                fail_msg("%s: population %s has no golden spikes: %s", file, m.pops[p].name, err.msg);
            assert_int_equal(dims[1], (uint64_t)m.T);
            assert_int_equal(dims[2], (uint64_t)m.pops[p].size);
            const int8_t *r = ref + (size_t)i * m.T * m.pops[p].size;
            for (size_t j = 0; j < (size_t)m.T * m.pops[p].size; j++) {
                if (spk[p][j] != r[j])
                    fail_msg("%s: sample %d, %s, t=%zu, neuron %zu: spikesim %d, PyTorch %d", file, i,
                             m.pops[p].name, j / m.pops[p].size, j % m.pops[p].size, spk[p][j], r[j]);
                nonzero += r[j] != 0;
            }
            compared += (uint64_t)m.T * m.pops[p].size;
            free(ref);
        }
        /* Logits: the head's float32 dot product may sum in another order than PyTorch's. */
        snn_assert_allclose(logits, logits_ref + (size_t)i * m.classes, (size_t)m.classes, 1e-5, 1e-5, "logits");
    }
    /* The comparison must have teeth: the golden model spikes. */
    assert_true(nonzero > compared / 50);
    for (int p = 0; p < m.n_pops; p++) free(spk[p]);
    free(spk);
    free(logits);
    free(images);
    free(logits_ref);
    snn_ws_free(&ws);
    snn_model_free(&m);
    snn_config_free(&cfg);
    free(yaml);
}

/* ANN baselines: the logits of the PyTorch reference (tests/reference/make_golden_ann.py,
 * computed in float64). spikesim evaluates the same weights with float32 activations (BLAS
 * products, FFTW transforms in double, kernels summing in double), so the comparison has a
 * tolerance: 2e-5 absolute + 2e-5 relative, about 100 float32 ulps of logits of size ~1; the
 * PyTorch float32 evaluation itself differs from float64 by up to 1.7e-6. The logits differ
 * between samples by far more than that (checked), so the test has teeth. */
static void check_golden_ann(const char *file) {
    snn_err err = {{0}};
    char *yaml = read_text(file, "/config");
    assert_non_null(yaml);
    snn_config cfg;
    assert_int_equal(snn_config_load_string(&cfg, yaml, file, NULL, 0, stderr), 0);
    free(cfg.model.weights);
    cfg.model.weights = strdup(file);
    snn_model m;
    if (snn_model_init(&m, &cfg, &err) != SNN_OK) fail_msg("%s", err.msg);
    assert_true(m.ann);
    assert_int_equal(m.n_pops, 0);

    int rank;
    uint64_t dims[4];
    snn_dataset ds = {0};
    float *logits_ref = NULL;
    assert_int_equal(snn_h5_read(file, "/input/images", SNN_H5_U8, &rank, dims, (void **)&ds.pixels, &err), SNN_OK);
    ds.n = (int64_t)dims[0];
    ds.channels = (int)dims[1];
    ds.height = (int)dims[2];
    ds.width = (int)dims[3];
    assert_int_equal(snn_h5_read(file, "/input/labels", SNN_H5_U8, &rank, dims, (void **)&ds.labels, &err), SNN_OK);
    ds.index = calloc((size_t)ds.n, sizeof *ds.index);
    for (int64_t i = 0; i < ds.n; i++) ds.index[i] = i;
    assert_int_equal(snn_h5_read(file, "/expected/logits", SNN_H5_F32, &rank, dims, (void **)&logits_ref, &err), SNN_OK);
    assert_int_equal(dims[0], (uint64_t)ds.n);

    snn_eval_opts o = {.threads = 2};
    snn_eval e;
    snn_evaluate(&m, &ds, &o, &e);
    snn_assert_allclose(e.logits, logits_ref, (size_t)ds.n * m.classes, 2e-5, 2e-5, file);
    double spread = 0.0;
    for (int k = 0; k < m.classes; k++)
        spread = fmax(spread, fabs(logits_ref[k] - logits_ref[m.classes + k]));
    assert_true(spread > 1e-2);
    snn_eval_free(&e, &m);
    free(logits_ref);
    snn_dataset_free(&ds);
    snn_model_free(&m);
    snn_config_free(&cfg);
    free(yaml);
}

static void test_golden_softmax_logits(void **state) {
    (void)state;
    check_golden_ann("tests/reference/golden_softmax.h5");
}

static void test_golden_cat_logits(void **state) {
    (void)state;
    check_golden_ann("tests/reference/golden_cat.h5");
}

static void test_golden_primal_logits(void **state) {
    (void)state;
    check_golden_ann("tests/reference/golden_primal.h5");
}

static void test_golden_bsa_spike_for_spike(void **state) {
    (void)state;
    check_golden("tests/reference/golden_bsa.h5");
}

static void test_golden_ssa_spike_for_spike(void **state) {
    (void)state;
    check_golden("tests/reference/golden_ssa.h5");
}

static void test_golden_sdsa_spike_for_spike(void **state) {
    (void)state;
    check_golden("tests/reference/golden_sdsa.h5");
}

static void test_golden_sew_spike_for_spike(void **state) {
    (void)state;
    check_golden("tests/reference/golden_sew.h5");
}

/* ---- threads ----------------------------------------------------------------------------- */

static const char synthetic_yaml[] =
    "name: t\nseed: 3\n"
    "data: {source: synthetic, synthetic_samples: 24}\n"
    "model: {image_size: 16, patch: 4, dim: 32, heads: 2, blocks: 2, mlp_ratio: 2, timesteps: 3,"
    " init_std: 0.3}\n"
    "record: {samples: 5, membrane: true}\n";

static void eval_with_threads(const snn_config *cfg, const snn_dataset *ds, int threads,
                              snn_model *m, snn_eval *e) {
    snn_err err = {{0}};
    if (snn_model_init(m, cfg, &err) != SNN_OK) fail_msg("%s", err.msg);
    snn_eval_opts o = {.n_record = cfg->record.samples, .record_v = true, .threads = threads};
    snn_evaluate(m, ds, &o, e);
}

/* cfg = the synthetic config (tests change it before loading data). */
static void load_synthetic(snn_config *cfg) {
    assert_int_equal(snn_config_load_string(cfg, synthetic_yaml, "inline", NULL, 0, stderr), 0);
}

/* ds = cfg's data; m, e = cfg's model evaluated on it on one thread. */
static void eval_synthetic(const snn_config *cfg, snn_dataset *ds, snn_model *m, snn_eval *e) {
    snn_err err = {{0}};
    assert_int_equal(snn_run_load_data(cfg, ds, &err), SNN_OK);
    eval_with_threads(cfg, ds, 1, m, e);
}

/* Parameter tables per kernel (spec section 4): CAT replaces q and k by a [h, D], so its
 * attention has 2 D^2 + D h weights instead of 4 D^2; Primal has no v and adds E, R [h, M, s],
 * lambda [h, s] and one shared c [d, 2s]. */
static void test_attention_parameter_tables(void **state) {
    (void)state;
    static const struct { const char *attention; size_t weights; } cases[] = {
        {"{kind: bsa}", 4 * 32 * 32},
        {"{kind: sdsa}", 4 * 32 * 32},
        {"{kind: cat}", 2 * 32 * 32 + 32 * 2},
        /* N = 16, s = 3, rank_multi 4: M = 12; q, k, o + E, R (2 x 2 x 12 x 3) + lambda (2 x 3)
         * + c (16 x 6) */
        {"{kind: primal, s: 3, rank_multi: 4}", 3 * 32 * 32 + 2 * 2 * 12 * 3 + 2 * 3 + 16 * 6},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char yaml[512];
        const bool ann = strstr(cases[i].attention, "cat") || strstr(cases[i].attention, "primal");
        snprintf(yaml, sizeof yaml,
                 "data: {source: synthetic}\nmodel: {image_size: 28, patch: 7, dim: 32, heads: 2, "
                 "timesteps: %d, attention: %s}\n", ann ? 1 : 4, cases[i].attention);
        snn_config cfg;
        assert_int_equal(snn_config_load_string(&cfg, yaml, "inline", NULL, 0, stderr), 0);
        snn_model m;
        snn_err err = {{0}};
        assert_int_equal(snn_model_init(&m, &cfg, &err), SNN_OK);
        assert_int_equal(snn_model_attention_weights(&m), cases[i].weights);
        assert_int_equal(m.ann, ann);
        snn_model_free(&m);
        snn_config_free(&cfg);
    }
}

/* Per-neuron spike counts in byte counters: over 100 samples of T = 3 (300 timesteps on one
 * thread, so the counters are widened once before a sample and once at the end) and over 2
 * samples of T = 300 (widened within a sample, population by population): each population's
 * counts add up to its per-timestep totals, and some neuron passes 255 (a lost flush or a byte
 * overflow would show). */
static void test_neuron_counts_survive_many_timesteps(void **state) {
    (void)state;
    static const struct { int samples, T; } cases[] = {{100, 3}, {2, 300}};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        snn_config cfg;
        load_synthetic(&cfg);
        cfg.data.synthetic_samples = cases[k].samples;
        cfg.model.timesteps = cases[k].T;
        cfg.model.neuron.v_threshold = 0.05f; /* busy neurons: some fire on most timesteps */
        snn_dataset ds = {0};
        snn_model m;
        snn_eval e;
        eval_synthetic(&cfg, &ds, &m, &e);
        uint64_t most = 0;
        for (int p = 0; p < m.n_pops; p++) {
            uint64_t by_neuron = 0, by_step = 0;
            for (size_t j = 0; j < m.pops[p].size; j++) {
                const uint64_t c = e.neuron_count[m.pops[p].state_offset + j];
                by_neuron += c;
                most = c > most ? c : most;
            }
            for (int t = 0; t < m.T; t++) by_step += e.pop_t_count[(size_t)p * m.T + t];
            assert_int_equal(by_neuron, by_step);
        }
        fprintf(stderr, "  %lld samples of T = %d, busiest neuron %llu spikes\n", (long long)e.n,
                m.T, (unsigned long long)most);
        assert_true(most > 255 && most <= (uint64_t)e.n * m.T);
        snn_eval_free(&e, &m);
        snn_model_free(&m);
        snn_dataset_free(&ds);
        snn_config_free(&cfg);
    }
}

/* 1 and 2 threads give the same bytes: direct encoding, rate encoding, and a rate-coded
 * embedding wider than every layer of the model (patch 8: K = 64 inputs per token, D = 16,
 * hidden 32), whose spike and plane buffers the workspace must size for it (under `make asan`
 * an undersized one fails here; the step-by-step workspace's, sized by the model's widths
 * alone, were). */
static void test_one_and_two_threads_are_byte_identical(void **state) {
    (void)state;
    for (int run = 0; run < 3; run++) {
        snn_config cfg;
        load_synthetic(&cfg);
        cfg.data.encoding = run ? SNN_ENCODING_RATE : SNN_ENCODING_DIRECT;
        if (run == 2) {
            cfg.model.patch = 8;
            cfg.model.dim = 16;
            cfg.model.mlp_ratio = 2;
        }
        snn_dataset ds = {0};
        snn_err err = {{0}};
        assert_int_equal(snn_run_load_data(&cfg, &ds, &err), SNN_OK);
        snn_model m1, m2;
        snn_eval e1, e2;
        eval_with_threads(&cfg, &ds, 1, &m1, &e1);
        eval_with_threads(&cfg, &ds, 2, &m2, &e2);
#ifdef _OPENMP
        assert_int_equal(e2.threads, 2);
#endif
        assert_memory_equal(e1.logits, e2.logits, (size_t)e1.n * e1.classes * sizeof(float));
        assert_memory_equal(e1.ops, e2.ops, (size_t)m1.n_layers * sizeof(snn_ops));
        assert_memory_equal(e1.pop_t_count, e2.pop_t_count, (size_t)m1.n_pops * m1.T * sizeof(uint64_t));
        assert_memory_equal(e1.neuron_count, e2.neuron_count, m1.state_size * sizeof(uint64_t));
        uint64_t spikes = 0;
        for (int p = 0; p < m1.n_pops; p++) {
            size_t n = (size_t)e1.n_record * m1.T * m1.pops[p].size;
            assert_memory_equal(e1.rec_spikes[p], e2.rec_spikes[p], n);
            assert_memory_equal(e1.rec_v[p], e2.rec_v[p], n * sizeof(float));
            for (size_t j = 0; j < n; j++) spikes += e1.rec_spikes[p][j] != 0;
        }
        assert_true(spikes > 0); /* a silent network would make this test vacuous */
        if (run == 2) { /* the wide embedding ran, on events */
            assert_true(m1.K > m1.D && m1.K > m1.Hd);
            assert_true(e1.ops[m1.layer_embed].n[SNN_OP_AC] > 0);
        }
        snn_eval_free(&e1, &m1);
        snn_eval_free(&e2, &m2);
        snn_model_free(&m1);
        snn_model_free(&m2);
        snn_dataset_free(&ds);
        snn_config_free(&cfg);
    }
}

/* The benchmark's synaptic-layer timer only reads clocks: with it on, every output is the same
 * bytes as with it off (direct and rate encoding, 1 and 2 threads). */
static void test_synaptic_timer_changes_no_output(void **state) {
    (void)state;
    snn_config cfg;
    load_synthetic(&cfg);
    for (int enc = 0; enc < 2; enc++) {
        cfg.data.encoding = enc ? SNN_ENCODING_RATE : SNN_ENCODING_DIRECT;
        snn_dataset ds = {0};
        snn_err err = {{0}};
        assert_int_equal(snn_run_load_data(&cfg, &ds, &err), SNN_OK);
        snn_model m;
        assert_int_equal(snn_model_init(&m, &cfg, &err), SNN_OK);
        snn_eval off, on;
        snn_eval_opts o = {.n_record = cfg.record.samples, .record_v = true, .threads = 1};
        snn_evaluate(&m, &ds, &o, &off);
        assert_true(off.synaptic_seconds == 0.0);
        for (int threads = 1; threads <= 2; threads++) {
            o.threads = threads;
            o.time_synaptic = true;
            snn_evaluate(&m, &ds, &o, &on);
            assert_true(on.synaptic_seconds > 0.0);
            /* layer time is part of the threads' time (monotonic clock) */
            assert_true(on.synaptic_seconds <= on.wall_seconds * on.threads);
            assert_memory_equal(off.logits, on.logits, (size_t)off.n * off.classes * sizeof(float));
            assert_memory_equal(off.ops, on.ops, (size_t)m.n_layers * sizeof(snn_ops));
            assert_memory_equal(off.pop_t_count, on.pop_t_count, (size_t)m.n_pops * m.T * sizeof(uint64_t));
            assert_memory_equal(off.neuron_count, on.neuron_count, m.state_size * sizeof(uint64_t));
            for (int p = 0; p < m.n_pops; p++) {
                size_t n = (size_t)off.n_record * m.T * m.pops[p].size;
                assert_memory_equal(off.rec_spikes[p], on.rec_spikes[p], n);
                assert_memory_equal(off.rec_v[p], on.rec_v[p], n * sizeof(float));
            }
            snn_eval_free(&on, &m);
        }
        snn_eval_free(&off, &m);
        snn_model_free(&m);
        snn_dataset_free(&ds);
    }
    snn_config_free(&cfg);
}

/* A small ANN model of attention `kind` on 18 synthetic samples (free: snn_test_model_free). */
static void ann_case_load(snn_test_model *c, const char *kind) {
    char yaml[512];
    snprintf(yaml, sizeof yaml,
             "name: t\nseed: 3\ndata: {source: synthetic, synthetic_samples: 18}\n"
             "model: {image_size: 16, patch: 4, dim: 32, heads: 2, blocks: 2, mlp_ratio: 2,"
             " timesteps: 1, attention: {kind: %s}}\n", kind);
    assert_int_equal(snn_config_load_string(&c->cfg, yaml, "inline", NULL, 0, stderr), 0);
    snn_test_model_init(c);
}

/* The logits of an ANN model of attention `kind` in minibatches of 4 (five of them, the last
 * one short) on 1 and on 2 threads (both inside each minibatch's layers): the same bytes. */
static void ann_minibatches_thread_bytes(const char *kind) {
    snn_test_model c;
    ann_case_load(&c, kind);
    snn_eval by1, by2;
    snn_eval_opts o4 = {.threads = 1, .ann_batch = 4};
    snn_evaluate(&c.m, &c.ds, &o4, &by1);
    o4.threads = 2;
    snn_evaluate(&c.m, &c.ds, &o4, &by2);
#ifdef _OPENMP
    assert_int_equal(by2.threads, 2);
#endif
    assert_memory_equal(by1.logits, by2.logits, (size_t)c.ds.n * c.m.classes * sizeof *by1.logits);
    assert_int_equal(by1.correct, by2.correct);
    snn_eval_free(&by1, &c.m);
    snn_eval_free(&by2, &c.m);
    snn_test_model_free(&c);
}

/* An ANN model evaluates one sample at a time (ann_batch 1, the benchmark's batch-1 latency) to
 * the logits of minibatches of 64; its thread count applies to that evaluation only (the
 * OpenMP default is restored); 2 threads give 1 thread's bytes (inside one minibatch's
 * layers, and over several minibatches, for every ANN attention). */
static void test_ann_batch_one_and_threads(void **state) {
    (void)state;
    snn_test_model c;
    ann_case_load(&c, "softmax");
    const snn_dataset *ds = &c.ds;
    const snn_model *m = &c.m;
    snn_eval batched, single;
    snn_eval_opts o = {.threads = 2};
    snn_evaluate(m, ds, &o, &batched);
    o.threads = 1;
    o.ann_batch = 1;
#ifdef _OPENMP
    const int before = omp_get_max_threads();
#endif
    snn_evaluate(m, ds, &o, &single);
    assert_int_equal(single.threads, 1);
#ifdef _OPENMP
    assert_int_equal(omp_get_max_threads(), before);
#endif
    snn_assert_allclose(single.logits, batched.logits, (size_t)ds->n * m->classes, 1e-6, 1e-6,
                        "ann batch 1 vs 64");
    assert_memory_equal(single.ops, batched.ops, (size_t)m->n_layers * sizeof(snn_ops));
    assert_int_equal(single.correct, batched.correct);
    /* one minibatch (all 18 samples) on 1 thread: the bytes of 2 threads inside its layers */
    snn_eval one;
    snn_eval_opts o1 = {.threads = 1};
    snn_evaluate(m, ds, &o1, &one);
    assert_memory_equal(one.logits, batched.logits, (size_t)ds->n * m->classes * sizeof *one.logits);
    snn_eval_free(&one, m);
    snn_eval_free(&batched, m);
    snn_eval_free(&single, m);
    snn_test_model_free(&c);
    const char *kinds[] = {"softmax", "cat", "primal"};
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++) ann_minibatches_thread_bytes(kinds[i]);
}

/* ---- checkpoints ------------------------------------------------------------------------- */

static void test_checkpoint_round_trip_and_mismatch(void **state) {
    (void)state;
    snn_config cfg;
    load_synthetic(&cfg);
    snn_err err = {{0}};
    snn_model a;
    assert_int_equal(snn_model_init(&a, &cfg, &err), SNN_OK);
    char *path = snn_test_tmp_path("ckpt.h5");
    snn_h5 h = {0};
    assert_int_equal(snn_h5_create(&h, path, 4, &err), SNN_OK);
    assert_int_equal(snn_h5_write_parameters(&h, a.tensors, a.n_tensors, &err), SNN_OK);
    assert_int_equal(snn_h5_commit(&h, &err), SNN_OK);

    /* Same model: loads, identical parameters. */
    cfg.model.weights = strdup(path);
    snn_model b;
    assert_int_equal(snn_model_init(&b, &cfg, &err), SNN_OK);
    assert_memory_equal(a.params, b.params, a.n_params * sizeof(float));
    snn_model_free(&b);

    /* Wider model: refused, naming the tensor and both shapes. */
    cfg.model.dim = 64;
    cfg.model.heads = 4;
    snn_model c;
    assert_int_equal(snn_model_init(&c, &cfg, &err), SNN_ERR);
    assert_non_null(strstr(err.msg, path));
    assert_non_null(strstr(err.msg, "embed.weight"));
    assert_non_null(strstr(err.msg, "[32, 16]"));
    assert_non_null(strstr(err.msg, "[64, 16]"));
    remove(path);
    free(path);
    snn_model_free(&a);
    snn_config_free(&cfg);
}

/* ---- op counts of a whole forward -------------------------------------------------------- */

static void test_forward_counts_follow_spikes(void **state) {
    (void)state;
    snn_config cfg;
    load_synthetic(&cfg);
    snn_dataset ds = {0};
    snn_model m;
    snn_eval e;
    eval_synthetic(&cfg, &ds, &m, &e);
    /* Every linear layer's ACs = (spikes of the population feeding it) x fan-out. */
    for (int l = 0; l < m.L; l++) {
        const snn_block *b = &m.blocks[l];
        uint64_t in_spikes = 0, attn_spikes = 0, hidden_spikes = 0;
        for (int t = 0; t < m.T; t++) {
            in_spikes += e.pop_t_count[(size_t)b->pop_in * m.T + t];
            attn_spikes += e.pop_t_count[(size_t)b->pop_attn * m.T + t];
            hidden_spikes += e.pop_t_count[(size_t)b->pop_hidden * m.T + t];
        }
        assert_int_equal(e.ops[b->q.layer].n[SNN_OP_AC], in_spikes * (uint64_t)m.D);
        assert_int_equal(e.ops[b->o.layer].n[SNN_OP_AC], attn_spikes * (uint64_t)m.D);
        assert_int_equal(e.ops[b->fc2.layer].n[SNN_OP_AC], hidden_spikes * (uint64_t)m.D);
        assert_int_equal(e.ops[b->q.layer].n[SNN_OP_MAC], 0);
    }
    /* One neuron update per neuron per timestep per sample. */
    for (int p = 0; p < m.n_pops; p++)
        assert_int_equal(e.ops[m.pops[p].layer].n[SNN_OP_NEURON], (uint64_t)e.n * m.T * m.pops[p].size);
    /* Direct encoding: the embedding is computed once per sample. */
    assert_int_equal(e.ops[m.layer_embed].n[SNN_OP_MAC], (uint64_t)e.n * m.N * m.K * m.D);
    snn_eval_free(&e, &m);
    snn_model_free(&m);
    snn_dataset_free(&ds);
    snn_config_free(&cfg);
}

/* ---- event-driven against dense -------------------------------------------------------- */

/* w rounded to a multiple of 2^-6 (|w| < 4 here): sums of up to 128 such weights need at most
 * 15 significant bits, so they are exact in float in any order. */
static void dyadic(float *w, size_t n) {
    for (size_t i = 0; i < n; i++) w[i] = roundf(w[i] * 64.0f) / 64.0f;
}

/* With dyadic synaptic weights every synaptic sum is exact, so the event-driven layers (weight
 * rows added in channel order, from bit planes the neuron step writes: D = 64 and 128 hidden are
 * whole words) and the dense ones (BLAS on float spikes) must give the same bytes: spikes,
 * membranes, counts and logits, for both residual kinds (sew feeds spike sums). */
static void test_event_forward_equals_dense_when_exact(void **state) {
    (void)state;
    for (int sew = 0; sew < 2; sew++) {
        snn_config cfg;
        load_synthetic(&cfg);
        cfg.model.dim = 64;
        cfg.model.neuron.v_threshold = 0.25f; /* lively: most layers see many events */
        if (sew) {
            cfg.model.residual = SNN_RESIDUAL_SEW;
            cfg.model.attention.kind = SNN_ATTN_SDSA;
        }
        snn_dataset ds = {0};
        snn_err err = {{0}};
        assert_int_equal(snn_run_load_data(&cfg, &ds, &err), SNN_OK);
        snn_model m;
        assert_int_equal(snn_model_init(&m, &cfg, &err), SNN_OK);
        for (int l = 0; l < m.L; l++) {
            snn_linear *lins[6] = {&m.blocks[l].q, &m.blocks[l].k, &m.blocks[l].v,
                                   &m.blocks[l].o, &m.blocks[l].fc1, &m.blocks[l].fc2};
            for (int j = 0; j < 6; j++) {
                dyadic(lins[j]->wt, (size_t)lins[j]->in * lins[j]->out);
                dyadic(lins[j]->b, (size_t)lins[j]->out);
            }
        }
        snn_eval ev, de;
        snn_eval_opts o = {.n_record = cfg.record.samples, .record_v = true, .threads = 1};
        snn_evaluate(&m, &ds, &o, &ev);
        o.dense = true;
        snn_evaluate(&m, &ds, &o, &de);
        assert_memory_equal(ev.logits, de.logits, (size_t)ev.n * ev.classes * sizeof(float));
        assert_memory_equal(ev.pop_t_count, de.pop_t_count,
                            (size_t)m.n_pops * m.T * sizeof(uint64_t));
        assert_memory_equal(ev.neuron_count, de.neuron_count, m.state_size * sizeof(uint64_t));
        uint64_t spikes = 0;
        for (int p = 0; p < m.n_pops; p++) {
            const size_t n = (size_t)ev.n_record * m.T * m.pops[p].size;
            assert_memory_equal(ev.rec_spikes[p], de.rec_spikes[p], n);
            assert_memory_equal(ev.rec_v[p], de.rec_v[p], n * sizeof(float));
            for (size_t j = 0; j < n; j++) spikes += ev.rec_spikes[p][j] != 0;
        }
        const uint64_t hidden = ev.pop_t_count[(size_t)m.blocks[1].pop_hidden * m.T + 1];
        fprintf(stderr, "  %s: %llu recorded spikes, block 1 hidden t=1: %llu\n",
                sew ? "sew" : "ms", (unsigned long long)spikes, (unsigned long long)hidden);
        assert_true(hidden > 0); /* the last synaptic layer saw events */
        snn_eval_free(&ev, &m);
        snn_eval_free(&de, &m);
        snn_model_free(&m);
        snn_dataset_free(&ds);
        snn_config_free(&cfg);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_event_linear_equals_dense_reference),
        cmocka_unit_test(test_event_linear_binary_sums_in_channel_order),
        cmocka_unit_test(test_event_linear3_equals_three_layers),
        cmocka_unit_test(test_event_forward_equals_dense_when_exact),
        cmocka_unit_test(test_golden_bsa_spike_for_spike),
        cmocka_unit_test(test_golden_ssa_spike_for_spike),
        cmocka_unit_test(test_golden_sdsa_spike_for_spike),
        cmocka_unit_test(test_golden_softmax_logits),
        cmocka_unit_test(test_golden_cat_logits),
        cmocka_unit_test(test_golden_primal_logits),
        cmocka_unit_test(test_golden_sew_spike_for_spike),
        cmocka_unit_test(test_attention_parameter_tables),
        cmocka_unit_test(test_neuron_counts_survive_many_timesteps),
        cmocka_unit_test(test_one_and_two_threads_are_byte_identical),
        cmocka_unit_test(test_synaptic_timer_changes_no_output),
        cmocka_unit_test(test_ann_batch_one_and_threads),
        cmocka_unit_test(test_checkpoint_round_trip_and_mismatch),
        cmocka_unit_test(test_forward_counts_follow_spikes),
    };
    return cmocka_run_group_tests_name("model", tests, NULL, NULL);
}
