/*
 * test_energy.c: the energy model and the NeuroBench metrics (sim/energy.h) and how the run
 * file presents them (docs/hdf5-layout.md): the three figures on a hand-made op table against
 * hand-computed values, the syops/NeuroBench rule difference on ternary (bipolar) inputs, the
 * layer -> input population map checked against the engine's own event counts, /metrics read
 * back with their NeuroBench meanings, dimension scales, NXdata groups, and units + long_name on
 * every numeric dataset of a run file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <hdf5.h>
#include <hdf5_hl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/energy.h"
#include "sim/eval.h"
#include "sim/model.h"
#include "sim/output.h"
#include "sim/run.h"
#include "tests/testutil.h"

/* N = 16 tokens, K = 16, D = 16, 2 heads, Hd = 32, T = 3, 10 classes. */
#define TINY_T(T, attn)                                                                         \
    "name: en\nseed: 5\n"                                                                       \
    "data: {source: synthetic, synthetic_samples: 10}\n"                                        \
    "model: {image_size: 16, patch: 4, dim: 16, heads: 2, blocks: 1, mlp_ratio: 2, timesteps: " \
    T ", init_std: 0.3, attention: {" attn "}}\n"                                               \
    "record: {samples: 3}\n"
/* bsa with a low q/k threshold, so that the bipolar populations fire (and fire -1) */
#define TINY(kind) TINY_T("3", "kind: " kind ", qk_threshold: 0.25")

static void assert_close(double got, double want, const char *what) {
    if (!(fabs(got - want) <= 1e-9 * fabs(want) + 1e-12))
        fail_msg("%s: got %.17g, want %.17g", what, got, want);
}

static int find_layer(const snn_model *m, const char *name) {
    for (int l = 0; l < m->n_layers; l++)
        if (strcmp(m->layers[l].name, name) == 0) return l;
    fail_msg("no layer %s", name);
    return -1;
}

static int find_pop(const snn_model *m, const char *name) {
    int p = snn_model_find_pop(m, name);
    if (p < 0) fail_msg("no population %s", name);
    return p;
}

static void load(snn_config *cfg, snn_model *m, const char *yaml) {
    snn_err err = {{0}};
    assert_int_equal(snn_config_load_string(cfg, yaml, "inline", NULL, 0, stderr), 0);
    if (snn_model_init(m, cfg, &err) != SNN_OK) fail_msg("%s", err.msg);
}

/* Sets the spikes of population p to `total` over the run, spread evenly over the T steps. */
static void set_spikes(const snn_model *m, snn_eval *e, const char *pop, uint64_t total) {
    const int p = find_pop(m, pop);
    for (int t = 0; t < m->T; t++) e->pop_t_count[(size_t)p * m->T + t] = total / (uint64_t)m->T;
}

/* A hand-made op table on the tiny BSA model, 2 samples, every figure computed by hand. */
static void test_three_figures_on_a_hand_made_op_table(void **state) {
    (void)state;
    snn_config cfg;
    snn_model m;
    load(&cfg, &m, TINY("bsa"));
    assert_true(m.N == 16 && m.K == 16 && m.D == 16 && m.Hd == 32 && m.T == 3 && m.heads == 2);
    snn_eval e = {0};
    e.n = 2;
    e.ops = calloc((size_t)m.n_layers, sizeof *e.ops);
    e.pop_t_count = calloc((size_t)m.n_pops * m.T, sizeof *e.pop_t_count);
    const int embed = find_layer(&m, "embed"), q = find_layer(&m, "blocks.0.attn.q");
    const int kern = find_layer(&m, "blocks.0.attn.kernel"), qlif = find_layer(&m, "blocks.0.attn.q_lif");
    const int head = find_layer(&m, "head");
    e.ops[embed].n[SNN_OP_MAC] = 2 * 4096;   /* N K D per sample */
    e.ops[q].n[SNN_OP_AC] = 1000;
    e.ops[kern].n[SNN_OP_AC] = 2000;         /* Q K^T events: q and k are bipolar */
    e.ops[kern].n[SNN_OP_SHIFT] = 300;
    e.ops[kern].n[SNN_OP_INT_ADD] = 400;
    e.ops[kern].n[SNN_OP_CMP] = 100;
    e.ops[qlif].n[SNN_OP_NEURON] = 1536;     /* 256 neurons x 3 steps x 2 samples */
    e.ops[qlif].n[SNN_OP_CMP] = 3072;
    /* firing rates over 2 samples x 3 steps x 256 neurons = 1536 updates */
    set_spikes(&m, &e, "blocks.0.lif_in", 384);     /* 0.25 */
    set_spikes(&m, &e, "blocks.0.attn.q_lif", 768); /* 0.5, bipolar */
    set_spikes(&m, &e, "blocks.0.attn.k_lif", 384); /* 0.25, bipolar */
    set_spikes(&m, &e, "blocks.0.attn.v_lif", 192); /* 0.125 */

    snn_energy en;
    snn_energy_compute(&m, &e, &en);

    /* (a) FLOPs: q N D D = 4096, kernel 2 N N D = 8192, embed N K D = 4096, head D C = 160 */
    assert_true(en.layers[q].input_rate == 0.25);
    assert_true(en.layers[q].paper_acs == 0.25 * 3 * 4096);                   /* exact: 3072 */
    assert_true(en.layers[kern].input_rate == 0.5 * (0.25 + 0.125));         /* min(fq, fk) + fv */
    assert_true(en.layers[kern].paper_acs == 4608.0);
    assert_true(en.layers[embed].paper_macs == 4096.0 && en.layers[embed].paper_acs == 0.0);
    assert_true(en.layers[head].paper_macs == 160.0);
    assert_true(isnan(en.layers[embed].input_rate));
    assert_close(en.layers[q].paper_pj, 3072 * 0.9, "paper q");
    assert_close(en.layers[embed].paper_T_pj, 3 * 4096 * 4.6, "paper embed x T");
    /* nothing feeds o, fc1, fc2 in this table: attn_lif, mlp.lif_in, hidden_lif are silent */
    assert_true(en.layers[find_layer(&m, "blocks.0.mlp.fc2")].paper_acs == 0.0);
    const double paper = 4096 * 4.6 + 160 * 4.6 + 3 * 3072 * 0.9 + 4608 * 0.9;
    assert_close(en.paper_pj, paper, "paper total");
    assert_close(en.paper_T_pj, paper + 2 * 4096 * 4.6, "paper total, first layer x T");

    /* (b) NeuroBench rule: per sample embed 4096 MAC, q 500 AC, kernel 1000 AC + 150 shift +
     * 200 int add + 50 cmp, q_lif 768 updates + 1536 cmp */
    assert_close(en.layers[q].compute_pj[SNN_OP_AC], 450.0, "compute q");
    assert_close(en.layers[kern].compute_pj[SNN_OP_AC], 900.0, "compute kernel AC");
    const double compute = 4096 * 4.6 + 500 * 0.9 + 1000 * 0.9 + 150 * 0.13 + 200 * 0.1 +
                           50 * 0.1 + 768 * 3.6 + 1536 * 0.1;
    assert_close(en.compute_pj, compute, "compute total");
    /* syops rule: the kernel's input (q, k) is ternary, so its 1000 ACs are billed as MACs;
     * the q layer's input (lif_in) is binary and keeps its ACs */
    assert_true(en.layers[kern].ternary_input && !en.layers[q].ternary_input);
    assert_true(en.layers[kern].ternary_acs == 1000.0);
    assert_true(en.layers[kern].syops_pj[SNN_OP_AC] == 0.0);
    assert_close(en.layers[kern].syops_pj[SNN_OP_MAC], 1000 * 4.6, "syops kernel MAC");
    assert_close(en.layers[q].syops_pj[SNN_OP_AC], 450.0, "syops q");
    assert_close(en.syops_pj, compute + 1000 * (4.6 - 0.9), "syops total");

    /* (c) sram8k: 10/64 pJ per bit read and written, 32-bit weights, membranes, activations:
     * every term below is exact in binary */
    const double b = 10.0 / 64;
    assert_true(en.k.read_pj_per_bit == b && en.k.write_pj_per_bit == b && en.k.weight_bits == 32);
    assert_true(en.layers[q].mem_pj[SNN_MEM_WEIGHT_READ] == 500 * 32 * b);
    assert_true(en.layers[embed].mem_pj[SNN_MEM_WEIGHT_READ] == 4096 * 32 * b);
    assert_true(en.layers[qlif].mem_pj[SNN_MEM_MEMBRANE_RW] == 768 * 32 * 2 * b);
    assert_true(en.layers[qlif].mem_bits[SNN_MEM_MEMBRANE_RW] == 768 * 32 * 2);
    /* spike writes: q_lif is bipolar (2 bits), lif_in and v_lif binary (1 bit) */
    assert_true(en.layers[qlif].mem_pj[SNN_MEM_SPIKE_WRITE] == 384 * 2 * b);
    assert_true(en.layers[find_layer(&m, "blocks.0.lif_in")].mem_pj[SNN_MEM_SPIKE_WRITE] == 192 * b);
    assert_true(en.layers[find_layer(&m, "blocks.0.attn.v_lif")].mem_pj[SNN_MEM_SPIKE_WRITE] == 96 * b);
    /* attention map: h N^2 scores per step, written and read: 2 x 16 x 16 x 3 x 2 x 32 bits */
    assert_true(en.layers[kern].mem_bits[SNN_MEM_ACTIVATION_RW] == 2.0 * 256 * 3 * 2 * 32);
    /* analog embedding: written once, read every step: N D (1 + T) x 32 bits */
    assert_true(en.layers[embed].mem_bits[SNN_MEM_ACTIVATION_RW] == 256.0 * 4 * 32);
    const double memory = (500 + 4096) * 32 * b + 768 * 64 * b + (384 * 2 + 192 * 2 + 192 + 96) * b +
                          (1536.0 * 2 + 1024) * 32 * b;
    assert_true(en.memory_pj == memory);
    assert_close(en.memory_aware_pj, compute + memory, "memory-aware total");

    snn_energy_free(&en);
    free(e.ops);
    free(e.pop_t_count);
    snn_model_free(&m);
    snn_config_free(&cfg);
}

/* Presets and memory levels resolve the new constants; explicit values win. */
static void test_memory_constants_from_config(void **state) {
    (void)state;
    snn_config cfg;
    assert_int_equal(snn_config_load_string(&cfg, "energy: {preset: int8, memory_level: dram}\n",
                                            "inline", NULL, 0, stderr), 0);
    snn_energy_consts k;
    snn_energy_consts_of(&cfg, &k);
    assert_true(k.weight_bits == 8 && k.membrane_bits == 8 && k.activation_bits == 8);
    assert_true(k.read_pj_per_bit == 1300.0 / 64 && k.write_pj_per_bit == 1300.0 / 64);
    assert_true(k.pj[SNN_OP_MAC] == 0.23 && k.pj[SNN_OP_AC] == 0.03);
    snn_config_free(&cfg);
    assert_int_equal(snn_config_load_string(&cfg,
                                            "energy: {preset: fp16, memory_level: sram32k, "
                                            "weight_bits: 4, write_pj_per_bit: 1.5}\n",
                                            "inline", NULL, 0, stderr), 0);
    snn_energy_consts_of(&cfg, &k);
    assert_true(k.weight_bits == 4 && k.membrane_bits == 16);
    assert_true(k.read_pj_per_bit == 20.0 / 64 && k.write_pj_per_bit == 1.5);
    /* the resolved config reloads to the same constants */
    char *yaml = snn_config_to_yaml(&cfg);
    snn_config again;
    assert_int_equal(snn_config_load_string(&again, yaml, "resolved", NULL, 0, stderr), 0);
    assert_true(again.energy.weight_bits == 4 && again.energy.write_pj_per_bit == 1.5);
    assert_string_equal(again.energy.memory_level, "sram32k");
    free(yaml);
    snn_config_free(&again);
    snn_config_free(&cfg);
}

static void evaluate(const snn_config *cfg, const snn_model *m, snn_eval *e) {
    snn_dataset ds = {0};
    snn_err err = {{0}};
    if (snn_run_load_data(cfg, &ds, &err) != SNN_OK) fail_msg("%s", err.msg);
    snn_eval_opts o = {.n_record = cfg->record.samples, .threads = 1};
    snn_evaluate(m, &ds, &o, e);
    snn_dataset_free(&ds);
}

/* The model of yaml simulated on its data, with its energy. */
static void simulate(const char *yaml, snn_config *cfg, snn_model *m, snn_eval *e, snn_energy *en) {
    load(cfg, m, yaml);
    evaluate(cfg, m, e);
    snn_energy_compute(m, e, en);
}

static void release(snn_config *cfg, snn_model *m, snn_eval *e, snn_energy *en) {
    snn_energy_free(en);
    snn_eval_free(e, m);
    snn_model_free(m);
    snn_config_free(cfg);
}

/* A simulated BSA run: its bipolar q/k populations really emit -1 spikes, the kernel is the only
 * ternary-input layer, and the two rules differ by exactly its ACs x (E_MAC - E_AC). SSA has no
 * bipolar population and both rules agree. */
static void test_syops_and_neurobench_rules_on_ternary_spikes(void **state) {
    (void)state;
    snn_config cfg;
    snn_model m;
    snn_eval e;
    snn_energy en;
    simulate(TINY("bsa"), &cfg, &m, &e, &en);
    const int pq = find_pop(&m, "blocks.0.attn.q_lif");
    size_t neg = 0;
    for (size_t i = 0; i < (size_t)e.n_record * m.T * m.pops[pq].size; i++) neg += e.rec_spikes[pq][i] == -1;
    assert_true(neg > 0); /* the test is about -1 spikes: there must be some */
    const int kern = find_layer(&m, "blocks.0.attn.kernel");
    int ternary = 0;
    for (int l = 0; l < m.n_layers; l++) ternary += en.layers[l].ternary_input;
    assert_int_equal(ternary, 1);
    assert_true(en.layers[kern].ternary_input);
    const double acs = (double)e.ops[kern].n[SNN_OP_AC] / (double)e.n;
    assert_true(acs > 0);
    /* NeuroBench: ACs at E_AC; syops: the same events at E_MAC */
    assert_close(en.layers[kern].compute_pj[SNN_OP_AC], acs * 0.9, "neurobench kernel");
    assert_close(en.layers[kern].syops_pj[SNN_OP_MAC], acs * 4.6, "syops kernel");
    assert_close(en.syops_pj - en.compute_pj, acs * (4.6 - 0.9), "rule difference");
    snn_summary s;
    snn_summarize(&m, &e, &s);
    assert_close(s.syops_pj_per_sample, en.syops_pj, "summary syops");
    assert_close(s.energy_pj_per_sample, en.compute_pj, "summary compute");
    release(&cfg, &m, &e, &en);

    simulate(TINY_T("3", "kind: ssa"), &cfg, &m, &e, &en);
    assert_true(en.syops_pj == en.compute_pj);
    assert_true(en.compute_pj > 0);
    release(&cfg, &m, &e, &en);
}

/* The documented input map agrees with what the engine did: an event-driven linear layer does
 * one AC per (input spike, synapse), so its ACs are exactly the feeding population's spikes times
 * the layer's outputs; the paper rate fr T FLOPs is then the same number. */
static void test_input_map_matches_engine_events(void **state) {
    (void)state;
    snn_config cfg;
    snn_model m;
    snn_eval e;
    snn_energy en;
    simulate(TINY("bsa"), &cfg, &m, &e, &en);
    static const char *const layers[6] = {"blocks.0.attn.q", "blocks.0.attn.k", "blocks.0.attn.v",
                                          "blocks.0.attn.o", "blocks.0.mlp.fc1", "blocks.0.mlp.fc2"};
    static const char *const feeds[6] = {"blocks.0.lif_in", "blocks.0.lif_in", "blocks.0.lif_in",
                                         "blocks.0.attn.attn_lif", "blocks.0.mlp.lif_in",
                                         "blocks.0.mlp.hidden_lif"};
    static const int outs[6] = {16, 16, 16, 16, 32, 16};
    for (int j = 0; j < 6; j++) {
        const int l = find_layer(&m, layers[j]), p = find_pop(&m, feeds[j]);
        int pops[3];
        snn_input_kind kind;
        assert_int_equal(snn_energy_layer_input(&m, l, pops, &kind), 1);
        assert_int_equal(kind, SNN_INPUT_SPIKES);
        assert_int_equal(pops[0], p);
        uint64_t spikes = 0;
        for (int t = 0; t < m.T; t++) spikes += e.pop_t_count[(size_t)p * m.T + t];
        assert_true(e.ops[l].n[SNN_OP_AC] == spikes * (uint64_t)outs[j]);
        assert_close(en.layers[l].paper_acs, (double)e.ops[l].n[SNN_OP_AC] / (double)e.n, layers[j]);
    }
    int pops[3];
    snn_input_kind kind;
    assert_int_equal(snn_energy_layer_input(&m, find_layer(&m, "blocks.0.attn.kernel"), pops, &kind), 3);
    assert_int_equal(pops[0], find_pop(&m, "blocks.0.attn.q_lif"));
    assert_int_equal(pops[2], find_pop(&m, "blocks.0.attn.v_lif"));
    assert_int_equal(snn_energy_layer_input(&m, find_layer(&m, "embed"), pops, &kind), 0);
    assert_int_equal(kind, SNN_INPUT_ANALOG);
    assert_int_equal(snn_energy_layer_input(&m, find_layer(&m, "blocks.0.attn.q_lif"), pops, &kind), 0);
    assert_int_equal(kind, SNN_INPUT_NONE);
    release(&cfg, &m, &e, &en);
}

/* ---- the run file ---------------------------------------------------------------------------- */

static double read_scalar(const char *path, const char *obj) {
    int rank;
    uint64_t dims[4];
    double *v = NULL;
    snn_err err = {{0}};
    if (snn_h5_read(path, obj, SNN_H5_F64, &rank, dims, (void **)&v, &err) != SNN_OK) fail_msg("%s", err.msg);
    assert_int_equal(rank, 0);
    double x = v[0];
    free(v);
    return x;
}

/* zero_q: weights of blocks.0.attn.q set to exactly zero before the run (ConnectionSparsity). */
static char *write_run(const char *yaml, const char *name, int zero_q, snn_config *cfg,
                       snn_model *m, snn_eval *e) {
    load(cfg, m, yaml);
    if (zero_q) {
        for (int j = 0; j < zero_q; j++) m->blocks[0].q.weight[3 * j] = 0.0f;
        snn_model_fold(m);
    }
    evaluate(cfg, m, e);
    char *path = snn_test_tmp_path(name);
    snn_err err = {{0}};
    snn_h5 h = {0};
    assert_int_equal(snn_h5_create(&h, path, 4, &err), SNN_OK);
    char *text = snn_config_to_yaml(cfg);
    if (snn_output_write(&h, m, e, text, &err) != SNN_OK) fail_msg("%s", err.msg);
    if (snn_h5_commit(&h, &err) != SNN_OK) fail_msg("%s", err.msg);
    free(text);
    return path;
}

typedef struct walk_state {
    int numeric, described;
    char missing[256];
} walk_state;

static herr_t check_dataset(hid_t obj, const char *name, const H5O_info_t *info, void *data) {
    walk_state *w = data;
    if (info->type != H5O_TYPE_DATASET) return 0;
    hid_t d = H5Dopen2(obj, name, H5P_DEFAULT);
    hid_t t = H5Dget_type(d);
    const H5T_class_t c = H5Tget_class(t);
    if (c == H5T_INTEGER || c == H5T_FLOAT) {
        w->numeric++;
        if (H5Aexists(d, "units") > 0 && H5Aexists(d, "long_name") > 0) w->described++;
        else if (!w->missing[0]) snprintf(w->missing, sizeof w->missing, "%s", name);
    }
    H5Tclose(t);
    H5Dclose(d);
    return 0;
}

static void assert_attached(hid_t f, const char *dset, const char *scale, unsigned dim) {
    hid_t d = H5Dopen2(f, dset, H5P_DEFAULT), s = H5Dopen2(f, scale, H5P_DEFAULT);
    if (d < 0 || s < 0) fail_msg("cannot open %s or %s", dset, scale);
    if (H5DSis_attached(d, s, dim) <= 0) fail_msg("%s is not attached to dim %u of %s", scale, dim, dset);
    assert_true(H5DSis_scale(s) > 0);
    H5Dclose(s);
    H5Dclose(d);
}

static void assert_nxdata(hid_t f, const char *g, const char *signal) {
    char *s = snn_test_attr_str(f, g, "NX_class");
    assert_string_equal(s, "NXdata");
    free(s);
    s = snn_test_attr_str(f, g, "signal");
    assert_string_equal(s, signal);
    char path[256];
    snprintf(path, sizeof path, "%s/%s", g, signal);
    if (H5Lexists(f, path, H5P_DEFAULT) <= 0) fail_msg("NXdata %s: no signal dataset %s", g, path);
    free(s);
}

/* /metrics read back with their NeuroBench meanings, /energy and /summary against the energy
 * model, scales, NXdata, units and long_name everywhere. */
static void test_run_file_metrics_energy_and_viewers(void **state) {
    (void)state;
    snn_config cfg;
    snn_model m;
    snn_eval e;
    /* 10 zero weights in q, so that ConnectionSparsity has something to find */
    char *path = write_run(TINY("bsa"), "energy.h5", 10, &cfg, &m, &e);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);

    /* ActivationSparsity = 1 - spikes / neuron updates, with updates from the op table */
    uint64_t spikes = 0, updates = 0;
    for (size_t j = 0; j < (size_t)m.n_pops * m.T; j++) spikes += e.pop_t_count[j];
    for (int l = 0; l < m.n_layers; l++) updates += e.ops[l].n[SNN_OP_NEURON];
    assert_true(updates == (uint64_t)e.n * 3 * (256 * 7 + 512)); /* 7 pops of N D, hidden N Hd */
    assert_true(spikes > 0 && spikes < updates);
    assert_close(read_scalar(path, "/metrics/ActivationSparsity"), 1.0 - (double)spikes / (double)updates, "ActivationSparsity");
    assert_close(read_scalar(path, "/metrics/MembraneUpdates"), (double)updates / (double)e.n, "MembraneUpdates");
    assert_close(snn_test_attr_f64(f, "/metrics", "ActivationSparsity"), 1.0 - (double)spikes / (double)updates, "attr");
    /* ConnectionSparsity: 2-D weights embed 256 + q k v o 1024 + fc1 fc2 1024 + head 160 */
    snn_metrics mt;
    snn_metrics_compute(&m, &e, &mt);
    assert_true(mt.weights_total == 2464 && mt.weights_zero == 10);
    assert_true(read_scalar(path, "/metrics/ConnectionSparsity") == 10.0 / 2464.0);
    assert_true(read_scalar(path, "/metrics/Footprint") == 4.0 * (double)m.n_params);
    /* SynapticOperations: Dense = embed once + (4 x 4096 + 2 x 8192) x T + head once */
    assert_true(read_scalar(path, "/metrics/SynapticOperations/Dense") == 4096 + 32768.0 * 3 + 160);
    double acs = 0;
    static const char *const conn[8] = {"embed", "blocks.0.attn.q", "blocks.0.attn.k", "blocks.0.attn.v",
                                        "blocks.0.attn.o", "blocks.0.mlp.fc1", "blocks.0.mlp.fc2", "head"};
    for (int j = 0; j < 8; j++) acs += (double)e.ops[find_layer(&m, conn[j])].n[SNN_OP_AC];
    assert_close(read_scalar(path, "/metrics/SynapticOperations/Effective_ACs"), acs / (double)e.n, "Effective_ACs");
    /* the kernel's ACs are not NeuroBench synaptic operations */
    assert_true(e.ops[find_layer(&m, "blocks.0.attn.kernel")].n[SNN_OP_AC] > 0);
    assert_true(read_scalar(path, "/metrics/SynapticOperations/Effective_ACs") * (double)e.n <
                (double)(acs + e.ops[find_layer(&m, "blocks.0.attn.kernel")].n[SNN_OP_AC]));
    assert_close(read_scalar(path, "/metrics/SynapticOperations/Effective_MACs"), 4096 + 160, "Effective_MACs");
    {
        int rank;
        uint64_t dims[4];
        double *by = NULL;
        snn_err err = {{0}};
        assert_int_equal(snn_h5_read(path, "/metrics/ActivationSparsityByLayer", SNN_H5_F64, &rank, dims, (void **)&by, &err), SNN_OK);
        assert_int_equal(dims[0], (uint64_t)m.n_pops);
        for (int p = 0; p < m.n_pops; p++) assert_close(by[p], 1.0 - snn_energy_pop_rate(&m, &e, p), m.pops[p].name);
        free(by);
    }
    snn_metrics_free(&mt);

    /* /summary carries the three figures; the /energy totals agree with the model */
    snn_energy en;
    snn_energy_compute(&m, &e, &en);
    assert_close(snn_test_attr_f64(f, "/summary", "paper_energy_pj_per_sample"), en.paper_pj, "paper");
    assert_close(snn_test_attr_f64(f, "/summary", "paper_energy_first_layer_times_T_pj_per_sample"), en.paper_T_pj, "paper T");
    assert_close(snn_test_attr_f64(f, "/summary", "compute_energy_syops_rule_pj_per_sample"), en.syops_pj, "syops");
    assert_close(snn_test_attr_f64(f, "/summary", "memory_energy_pj_per_sample"), en.memory_pj, "memory");
    assert_close(snn_test_attr_f64(f, "/summary", "memory_aware_energy_pj_per_sample"), en.memory_aware_pj, "memory-aware");
    assert_close(snn_test_attr_f64(f, "/energy/memory", "total_pj_per_sample"), en.memory_pj, "memory attr");
    assert_true(snn_test_attr_f64(f, "/energy", "read_pj_per_bit") == 10.0 / 64);
    assert_true(snn_test_attr_f64(f, "/energy", "weight_bits") == 32);
    assert_true(en.paper_T_pj > en.paper_pj && en.memory_aware_pj > en.compute_pj);
    snn_energy_free(&en);

    /* dimension scales */
    char spk[160], ts[160], ns[160];
    snprintf(spk, sizeof spk, "/nodes/blocks.0.attn.q_lif/observables/spikes/data");
    snprintf(ts, sizeof ts, "/nodes/blocks.0.attn.q_lif/stats/timestep");
    snprintf(ns, sizeof ns, "/nodes/blocks.0.attn.q_lif/stats/neuron");
    assert_attached(f, spk, "/outputs/recorded_sample_index", 0);
    assert_attached(f, spk, ts, 1);
    assert_attached(f, spk, ns, 2);
    assert_attached(f, "/nodes/blocks.0.attn.q_lif/stats/firing_rate_per_step", ts, 0);
    assert_attached(f, "/outputs/logits", "/outputs/sample_index", 0);
    assert_attached(f, "/outputs/logits", "/outputs/class", 1);
    assert_attached(f, "/ops/total", "/ops/layer", 0);
    assert_attached(f, "/ops/total", "/ops/op_class", 1);
    assert_attached(f, "/energy/per_layer_pj", "/energy/layer", 0);
    assert_attached(f, "/energy/memory/per_layer_pj", "/energy/memory/memory_class", 1);
    assert_attached(f, "/energy/paper/layer_total_pj", "/energy/paper/layer", 0);
    assert_attached(f, "/metrics/ActivationSparsityByLayer", "/metrics/population", 0);
    {   /* and not where it does not belong */
        hid_t d = H5Dopen2(f, "/ops/total", H5P_DEFAULT), s = H5Dopen2(f, "/ops/layer", H5P_DEFAULT);
        assert_int_equal(H5DSis_attached(d, s, 1), 0);
        H5Dclose(s);
        H5Dclose(d);
    }
    /* NXdata groups plot on opening */
    assert_nxdata(f, "/ops", "per_sample");
    assert_nxdata(f, "/energy", "layer_total_pj");
    assert_nxdata(f, "/energy/paper", "layer_total_pj");
    assert_nxdata(f, "/energy/syops_rule", "layer_total_pj");
    assert_nxdata(f, "/energy/memory", "layer_total_pj");
    assert_nxdata(f, "/metrics", "ActivationSparsityByLayer");
    assert_nxdata(f, "/nodes/blocks.0.lif_in/stats", "firing_rate_per_step");
    /* every numeric dataset has units and long_name */
    walk_state w = {0};
    assert_true(H5Ovisit(f, H5_INDEX_NAME, H5_ITER_NATIVE, check_dataset, &w) >= 0);
    assert_true(w.numeric > 100);
    if (w.described != w.numeric) fail_msg("%d of %d numeric datasets lack units/long_name, e.g. %s",
                                           w.numeric - w.described, w.numeric, w.missing);
    H5Fclose(f);
    remove(path);
    free(path);
    snn_eval_free(&e, &m);
    snn_model_free(&m);
    snn_config_free(&cfg);
}

/* ANN model: no spikes, the paper convention is E_MAC x dense MACs, ActivationSparsity is NaN,
 * and the file (no populations, no recorded samples) still has described, scaled datasets. */
static void test_ann_run_file(void **state) {
    (void)state;
    snn_config cfg;
    snn_model m;
    snn_eval e;
    char *path = write_run(TINY_T("1", "kind: softmax"), "energy_ann.h5", 0, &cfg, &m, &e);
    assert_true(m.ann && m.n_pops == 0);
    snn_energy en;
    snn_energy_compute(&m, &e, &en);
    double dense = 0;
    for (int l = 0; l < m.n_layers; l++) dense += (double)m.layers[l].dense_macs;
    assert_close(en.paper_pj, dense * 4.6, "ANN paper");
    assert_true(en.paper_T_pj == en.paper_pj && en.syops_pj == en.compute_pj);
    /* ANN layer outputs are activations: fc1 writes and reads N Hd values */
    assert_true(en.layers[find_layer(&m, "blocks.0.mlp.fc1")].mem_bits[SNN_MEM_ACTIVATION_RW] == 2.0 * 16 * 32 * 32);
    snn_energy_free(&en);
    assert_true(isnan(read_scalar(path, "/metrics/ActivationSparsity")));
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    walk_state w = {0};
    assert_true(H5Ovisit(f, H5_INDEX_NAME, H5_ITER_NATIVE, check_dataset, &w) >= 0);
    if (w.described != w.numeric) fail_msg("ANN file: %s lacks units/long_name", w.missing);
    assert_attached(f, "/ops/per_sample", "/ops/op_class", 1);
    H5Fclose(f);
    remove(path);
    free(path);
    snn_eval_free(&e, &m);
    snn_model_free(&m);
    snn_config_free(&cfg);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_three_figures_on_a_hand_made_op_table),
        cmocka_unit_test(test_memory_constants_from_config),
        cmocka_unit_test(test_syops_and_neurobench_rules_on_ternary_spikes),
        cmocka_unit_test(test_input_map_matches_engine_events),
        cmocka_unit_test(test_run_file_metrics_energy_and_viewers),
        cmocka_unit_test(test_ann_run_file),
    };
    return cmocka_run_group_tests_name("energy", tests, NULL, NULL);
}
