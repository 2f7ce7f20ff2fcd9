/*
 * output.c: writes a run as an HDF5 file that opens everywhere (h5dump, HDFView, h5py, h5web).
 *
 * Layout (docs/hdf5-layout.md): NIRData-compatible root and /nodes (so nir.read_data() can
 * read the spike grids), /config with the resolved YAML, /summary attributes, /outputs,
 * /parameters (every run file is also a checkpoint), /ops and /energy per layer and op class
 * (the three figures of sim/energy.h), /metrics (NeuroBench's names and meanings).
 *
 * Viewer friendliness: every numeric dataset has units and long_name; dense arrays carry HDF5
 * dimension scales (index datasets: sample, timestep, neuron, layer, op class, ...); statistics
 * groups are h5web NXdata groups (signal, axes) so they plot on opening.
 */
#include "sim/output.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sim/layers.h"

#define TRY(x)                                                                                  \
    do {                                                                                        \
        if ((x) != SNN_OK) return SNN_ERR;                                                      \
    } while (0)

void snn_summarize(const snn_model *m, const snn_eval *e, snn_summary *s) {
    memset(s, 0, sizeof *s);
    double pj[SNN_OP__COUNT];
    snn_energy_costs(m->cfg, pj);
    const double n = e->n > 0 ? (double)e->n : 1.0;
    uint64_t ac = 0, mac = 0, updates = 0, spikes = 0;
    double energy = 0.0;
    for (int l = 0; l < m->n_layers; l++) {
        ac += e->ops[l].n[SNN_OP_AC];
        mac += e->ops[l].n[SNN_OP_MAC];
        updates += e->ops[l].n[SNN_OP_NEURON];
        for (int c = 0; c < SNN_OP__COUNT; c++) energy += (double)e->ops[l].n[c] * pj[c];
    }
    for (size_t j = 0; j < (size_t)m->n_pops * m->T; j++) spikes += e->pop_t_count[j];
    s->samples = e->n;
    s->accuracy = e->n ? (double)e->correct / (double)e->n : 0.0;
    s->sops_per_sample = (double)ac / n;
    s->macs_per_sample = (double)mac / n;
    s->energy_pj_per_sample = energy / n;
    snn_energy en;
    snn_energy_compute(m, e, &en);
    s->paper_pj_per_sample = en.paper_pj;
    s->paper_T_pj_per_sample = en.paper_T_pj;
    s->syops_pj_per_sample = en.syops_pj;
    s->memory_pj_per_sample = en.memory_pj;
    /* (b) + memory with (b) as summed above, so the two headline numbers add up exactly */
    s->memory_aware_pj_per_sample = s->energy_pj_per_sample + en.memory_pj;
    snn_energy_free(&en);
    s->firing_rate_mean = updates ? (double)spikes / (double)updates : 0.0;
    s->wall_seconds = e->wall_seconds;
}

static const char *neuron_model_name(const snn_pop *p) {
    if (p->np.bipolar) return "BipolarLIF";
    switch (p->np.kind) {
    case SNN_NEURON_IF: return "IF";
    case SNN_NEURON_PLIF: return "PLIF";
    default: return "LIF";
    }
}

/* Sets units and long_name, the two attributes every viewer uses for labels. */
static int describe(snn_h5 *h, const char *path, const char *units, const char *long_name,
                    snn_err *err) {
    TRY(snn_h5_attr_str(h, path, "units", units, err));
    return snn_h5_attr_str(h, path, "long_name", long_name, err);
}

/* An index dataset 0..n-1 (int32 [n]) at path, made a dimension scale named label. */
static int index_scale(snn_h5 *h, const char *path, int64_t n, const char *label,
                       const char *long_name, snn_err *err) {
    int32_t *v = snn_xmalloc(((size_t)n + 1) * sizeof *v);
    for (int64_t i = 0; i < n; i++) v[i] = (int32_t)i;
    const uint64_t d[1] = {(uint64_t)n};
    int rc = snn_h5_write(h, path, SNN_H5_I32, 1, d, v, err);
    free(v);
    if (rc == SNN_OK) rc = describe(h, path, "index", long_name, err);
    if (rc == SNN_OK) rc = snn_h5_set_scale(h, path, label, err);
    return rc;
}

/* h5web's NXdata attributes: the group plots its signal against its axes on opening (axes are
 * dataset names inside the group, one per signal dimension). */
static int nxdata(snn_h5 *h, const char *g, const char *signal, int naxes,
                  const char *const *axes, snn_err *err) {
    TRY(snn_h5_attr_str(h, g, "NX_class", "NXdata", err));
    TRY(snn_h5_attr_str(h, g, "signal", signal, err));
    return snn_h5_attr_str_array(h, g, "axes", naxes, axes, err);
}

/* A described float64 dataset of rank 0..2 followed by its scales (scale paths per dimension,
 * NULL to skip one). */
static int write_f64(snn_h5 *h, const char *path, int rank, const uint64_t *dims, const double *data,
                     const char *units, const char *long_name, const char *const *scales,
                     snn_err *err) {
    TRY(snn_h5_write(h, path, SNN_H5_F64, rank, dims, data, err));
    TRY(describe(h, path, units, long_name, err));
    for (int d = 0; d < rank; d++)
        if (scales && scales[d]) TRY(snn_h5_attach_scale(h, path, scales[d], d, err));
    return SNN_OK;
}

static int write_root(snn_h5 *h, const snn_model *m, const snn_eval *e, const char *yaml,
                      snn_err *err) {
    const snn_config *c = m->cfg;
    char created[32], host[256] = "";
    snn_utc_iso8601(created, sizeof created);
    gethostname(host, sizeof host - 1);
    TRY(snn_h5_attr_str(h, "/", "__type__", "NIRGraphData", err));
    TRY(snn_h5_attr_str(h, "/", "format", "spikesim-run", err));
    TRY(snn_h5_attr_str(h, "/", "format_version", "1.0", err));
    TRY(snn_h5_attr_str(h, "/", "generator", "spikesim " SNN_VERSION, err));
    TRY(snn_h5_attr_str(h, "/", "version", SNN_VERSION, err));
    TRY(snn_h5_attr_str(h, "/", "created", created, err));
    TRY(snn_h5_attr_str(h, "/", "hostname", host, err));
    char blas[320];
    TRY(snn_h5_attr_str(h, "/", "blas", snn_blas_config(blas, sizeof blas), err));
    TRY(snn_h5_attr_i64(h, "/", "seed", (int64_t)c->seed, err));
    TRY(snn_h5_attr_i64(h, "/", "threads", e->threads, err));
    TRY(snn_h5_attr_i64(h, "/", "n_samples", e->n, err));
    TRY(snn_h5_attr_i64(h, "/", "n_steps", m->T, err));
    TRY(snn_h5_attr_f64(h, "/", "dt", 1.0, err));
    TRY(snn_h5_attr_str(h, "/", "dt_units", "timestep", err));
    TRY(snn_h5_attr_str(h, "/", "attention", snn_attn_kind_name(c->model.attention.kind), err));
    TRY(snn_h5_write_text(h, "/config", yaml, err));
    return snn_h5_attr_str(h, "/config", "long_name", "resolved configuration (YAML)", err);
}

static int write_summary(snn_h5 *h, const snn_model *m, const snn_eval *e, snn_err *err) {
    snn_summary s;
    snn_summarize(m, e, &s);
    TRY(snn_h5_group(h, "/summary", err));
    TRY(snn_h5_attr_f64(h, "/summary", "accuracy", s.accuracy, err));
    TRY(snn_h5_attr_i64(h, "/summary", "samples_evaluated", s.samples, err));
    TRY(snn_h5_attr_f64(h, "/summary", "sops_per_sample", s.sops_per_sample, err));
    TRY(snn_h5_attr_f64(h, "/summary", "macs_per_sample", s.macs_per_sample, err));
    TRY(snn_h5_attr_f64(h, "/summary", "energy_pj_per_sample", s.energy_pj_per_sample, err));
    TRY(snn_h5_attr_f64(h, "/summary", "paper_energy_pj_per_sample", s.paper_pj_per_sample, err));
    TRY(snn_h5_attr_f64(h, "/summary", "paper_energy_first_layer_times_T_pj_per_sample",
                        s.paper_T_pj_per_sample, err));
    TRY(snn_h5_attr_f64(h, "/summary", "compute_energy_pj_per_sample", s.energy_pj_per_sample, err));
    TRY(snn_h5_attr_f64(h, "/summary", "compute_energy_syops_rule_pj_per_sample",
                        s.syops_pj_per_sample, err));
    TRY(snn_h5_attr_f64(h, "/summary", "memory_energy_pj_per_sample", s.memory_pj_per_sample, err));
    TRY(snn_h5_attr_f64(h, "/summary", "memory_aware_energy_pj_per_sample",
                        s.memory_aware_pj_per_sample, err));
    TRY(snn_h5_attr_str(h, "/summary", "memory_level", m->cfg->energy.memory_level, err));
    TRY(snn_h5_attr_f64(h, "/summary", "firing_rate_mean", s.firing_rate_mean, err));
    TRY(snn_h5_attr_f64(h, "/summary", "wall_seconds", s.wall_seconds, err));
    TRY(snn_h5_attr_i64(h, "/summary", "parameters", (int64_t)m->n_params, err));
    /* Papers bill the direct-encoded embedding T times; spikesim computes it once. */
    const double embed_macs = (double)m->N * m->K * m->D;
    TRY(snn_h5_attr_f64(h, "/summary", "embed_macs_per_sample", embed_macs, err));
    return snn_h5_attr_f64(h, "/summary", "embed_macs_times_T_per_sample", embed_macs * m->T, err);
}

static int write_outputs(snn_h5 *h, const snn_model *m, const snn_eval *e, snn_err *err) {
    uint64_t dims[2] = {(uint64_t)e->n, (uint64_t)m->classes};
    TRY(snn_h5_write(h, "/outputs/logits", SNN_H5_F32, 2, dims, e->logits, err));
    TRY(describe(h, "/outputs/logits", "1", "logits [sample, class]", err));
    TRY(snn_h5_write(h, "/outputs/labels", SNN_H5_I32, 1, dims, e->labels, err));
    TRY(describe(h, "/outputs/labels", "class", "true label", err));
    TRY(snn_h5_write(h, "/outputs/predictions", SNN_H5_I32, 1, dims, e->pred, err));
    TRY(describe(h, "/outputs/predictions", "class", "predicted label (argmax of logits)", err));
    TRY(snn_h5_write(h, "/outputs/sample_index", SNN_H5_I64, 1, dims, e->sample_index, err));
    TRY(describe(h, "/outputs/sample_index", "index", "sample index in the dataset file", err));
    /* scales: the sample axis is labelled by the dataset index, the class axis by 0..C-1 */
    TRY(snn_h5_set_scale(h, "/outputs/sample_index", "sample", err));
    TRY(index_scale(h, "/outputs/class", m->classes, "class", "class index", err));
    TRY(snn_h5_attach_scale(h, "/outputs/logits", "/outputs/sample_index", 0, err));
    TRY(snn_h5_attach_scale(h, "/outputs/logits", "/outputs/class", 1, err));
    TRY(snn_h5_attach_scale(h, "/outputs/labels", "/outputs/sample_index", 0, err));
    TRY(snn_h5_attach_scale(h, "/outputs/predictions", "/outputs/sample_index", 0, err));
    /* the recorded spike grids hold the first n_record evaluated samples */
    uint64_t dr[1] = {(uint64_t)e->n_record};
    TRY(snn_h5_write(h, "/outputs/recorded_sample_index", SNN_H5_I64, 1, dr, e->sample_index, err));
    TRY(describe(h, "/outputs/recorded_sample_index", "index",
                 "dataset index of each recorded sample (axis 0 of the spike grids)", err));
    return snn_h5_set_scale(h, "/outputs/recorded_sample_index", "recorded sample", err);
}

static int write_node(snn_h5 *h, const snn_model *m, const snn_eval *e, int p, snn_err *err) {
    const snn_pop *pop = &m->pops[p];
    const int T = m->T;
    char g[160], path[224];
    snprintf(g, sizeof g, "/nodes/%s", pop->name);
    TRY(snn_h5_group(h, g, err));
    TRY(snn_h5_attr_str(h, g, "__type__", "NIRNodeData", err));
    TRY(snn_h5_attr_str(h, g, "neuron_model", neuron_model_name(pop), err));
    TRY(snn_h5_attr_i64(h, g, "n_neurons", (int64_t)pop->size, err));
    TRY(snn_h5_attr_i64(h, g, "tokens", (int64_t)(pop->size / (size_t)pop->width), err));
    TRY(snn_h5_attr_i64(h, g, "width", pop->width, err));
    TRY(snn_h5_attr_f64(h, g, "v_threshold", pop->np.v_threshold, err));
    TRY(snn_h5_attr_f64(h, g, "tau", pop->np.tau, err));
    TRY(snn_h5_attr_str(h, g, "reset", pop->np.soft_reset ? "subtract" : "to_v_reset", err));

    uint64_t dims[3] = {(uint64_t)e->n_record, (uint64_t)T, (uint64_t)pop->size};
    snprintf(path, sizeof path, "%s/observables/spikes", g);
    TRY(snn_h5_group(h, path, err));
    TRY(snn_h5_attr_str(h, path, "__type__", "TimeGriddedData", err));
    TRY(snn_h5_attr_f64(h, path, "dt", 1.0, err));
    snprintf(path, sizeof path, "%s/observables/spikes/data", g);
    TRY(snn_h5_write(h, path, SNN_H5_I8, 3, dims, e->rec_spikes[p], err));
    TRY(describe(h, path, pop->np.bipolar ? "spike (-1, 0, +1)" : "spike (0, 1)",
                 "spikes [sample, timestep, token * width + channel]", err));
    if (e->rec_v) {
        snprintf(path, sizeof path, "%s/observables/v_mem", g);
        TRY(snn_h5_group(h, path, err));
        TRY(snn_h5_attr_str(h, path, "__type__", "TimeGriddedData", err));
        TRY(snn_h5_attr_f64(h, path, "dt", 1.0, err));
        snprintf(path, sizeof path, "%s/observables/v_mem/data", g);
        TRY(snn_h5_write(h, path, SNN_H5_F32, 3, dims, e->rec_v[p], err));
        TRY(describe(h, path, "membrane (v_threshold units)",
                     "membrane after reset [sample, timestep, neuron]", err));
    }

    /* Statistics over every evaluated sample, laid out for h5web (NXdata). */
    const double n = e->n > 0 ? (double)e->n : 1.0;
    uint64_t *cnt_t = e->pop_t_count + (size_t)p * T;
    const uint64_t *cnt_n = e->neuron_count + pop->state_offset;
    double *rate_t = snn_xmalloc((size_t)T * sizeof *rate_t);
    double *rate_n = snn_xmalloc(pop->size * sizeof *rate_n);
    int32_t *steps = snn_xmalloc((size_t)T * sizeof *steps);
    for (int t = 0; t < T; t++) {
        rate_t[t] = (double)cnt_t[t] / (n * (double)pop->size);
        steps[t] = t;
    }
    for (size_t i = 0; i < pop->size; i++) rate_n[i] = (double)cnt_n[i] / (n * T);
    snprintf(path, sizeof path, "%s/stats", g);
    int rc = snn_h5_group(h, path, err);
    const char *axes[1] = {"timestep"};
    uint64_t dt1[1] = {(uint64_t)T}, dn1[1] = {(uint64_t)pop->size};
    if (rc == SNN_OK) rc = snn_h5_attr_str(h, path, "NX_class", "NXdata", err);
    if (rc == SNN_OK) rc = snn_h5_attr_str(h, path, "signal", "firing_rate_per_step", err);
    if (rc == SNN_OK) rc = snn_h5_attr_str_array(h, path, "axes", 1, axes, err);
#define STAT(name, type, dims, data, units, long_name)                                          \
    if (rc == SNN_OK) {                                                                         \
        snprintf(path, sizeof path, "%s/stats/" name, g);                                       \
        rc = snn_h5_write(h, path, type, 1, dims, data, err);                                   \
        if (rc == SNN_OK) rc = describe(h, path, units, long_name, err);                        \
    }
    STAT("timestep", SNN_H5_I32, dt1, steps, "timestep", "timestep");
    STAT("spike_count_per_step", SNN_H5_U64, dt1, cnt_t, "spikes",
         "nonzero spikes per timestep, summed over samples and neurons");
    STAT("firing_rate_per_step", SNN_H5_F64, dt1, rate_t, "spikes / neuron / timestep",
         "firing rate per timestep");
    STAT("spike_count_per_neuron", SNN_H5_U64, dn1, cnt_n, "spikes",
         "nonzero spikes per neuron, summed over samples and timesteps");
    STAT("firing_rate_per_neuron", SNN_H5_F64, dn1, rate_n, "spikes / timestep",
         "firing rate per neuron [token * width + channel]");
#undef STAT
    /* dimension scales: stats/timestep and stats/neuron label every array of the population */
    char ts[224], ns[224];
    snprintf(ts, sizeof ts, "%s/stats/timestep", g);
    snprintf(ns, sizeof ns, "%s/stats/neuron", g);
    if (rc == SNN_OK) rc = snn_h5_set_scale(h, ts, "timestep", err);
    if (rc == SNN_OK) rc = index_scale(h, ns, (int64_t)pop->size, "neuron", "neuron index (token * width + channel)", err);
    static const char *const per_step[2] = {"spike_count_per_step", "firing_rate_per_step"};
    static const char *const per_neuron[2] = {"spike_count_per_neuron", "firing_rate_per_neuron"};
    for (int j = 0; j < 2 && rc == SNN_OK; j++) {
        snprintf(path, sizeof path, "%s/stats/%s", g, per_step[j]);
        rc = snn_h5_attach_scale(h, path, ts, 0, err);
        snprintf(path, sizeof path, "%s/stats/%s", g, per_neuron[j]);
        if (rc == SNN_OK) rc = snn_h5_attach_scale(h, path, ns, 0, err);
    }
    static const char *const grids[2] = {"spikes", "v_mem"};
    for (int j = 0; j < 2 && rc == SNN_OK; j++) {
        if (j == 1 && !e->rec_v) break;
        snprintf(path, sizeof path, "%s/observables/%s/data", g, grids[j]);
        rc = snn_h5_attach_scale(h, path, "/outputs/recorded_sample_index", 0, err);
        if (rc == SNN_OK) rc = snn_h5_attach_scale(h, path, ts, 1, err);
        if (rc == SNN_OK) rc = snn_h5_attach_scale(h, path, ns, 2, err);
    }
    free(rate_t);
    free(rate_n);
    free(steps);
    return rc;
}

/* The analog embedding has no neurons: record U0, the stream every block starts from. */
static int write_embed_node(snn_h5 *h, const snn_model *m, const snn_eval *e, snn_err *err) {
    TRY(snn_h5_group(h, "/nodes/embed", err));
    TRY(snn_h5_attr_str(h, "/nodes/embed", "__type__", "NIRNodeData", err));
    TRY(snn_h5_attr_str(h, "/nodes/embed", "neuron_model", "none (analog stream)", err));
    TRY(snn_h5_group(h, "/nodes/embed/observables/u", err));
    TRY(snn_h5_attr_str(h, "/nodes/embed/observables/u", "__type__", "TimeGriddedData", err));
    TRY(snn_h5_attr_f64(h, "/nodes/embed/observables/u", "dt", 1.0, err));
    uint64_t dims[3] = {(uint64_t)e->n_record, 1, (uint64_t)m->N * m->D};
    TRY(snn_h5_write(h, "/nodes/embed/observables/u/data", SNN_H5_F32, 3, dims, e->rec_embed, err));
    TRY(describe(h, "/nodes/embed/observables/u/data", "1",
                 "embedding U0 = BN(patches W^T + b) + pos [sample, 1, token * D + channel] "
                 "(direct encoding: the same every timestep)",
                 err));
    TRY(index_scale(h, "/nodes/embed/observables/u/neuron", (int64_t)m->N * m->D, "neuron",
                    "embedding index (token * D + channel)", err));
    TRY(snn_h5_attach_scale(h, "/nodes/embed/observables/u/data", "/outputs/recorded_sample_index", 0, err));
    return snn_h5_attach_scale(h, "/nodes/embed/observables/u/data", "/nodes/embed/observables/u/neuron", 2, err);
}

/* /ops: the counted operations per layer and op class, an NXdata heatmap [layer, op class]. */
static int write_ops(snn_h5 *h, const snn_model *m, const snn_eval *e, snn_err *err) {
    const int L = m->n_layers, K = SNN_OP__COUNT;
    const double n = e->n > 0 ? (double)e->n : 1.0;
    uint64_t *total = snn_xmalloc((size_t)L * K * sizeof *total + 1);
    double *per = snn_xmalloc((size_t)L * K * sizeof *per + 1);
    uint64_t *dense = snn_xmalloc((size_t)L * sizeof *dense + 1);
    const char **lnames = snn_xmalloc((size_t)L * sizeof *lnames + 1);
    const char *cnames[SNN_OP__COUNT];
    for (int c = 0; c < K; c++) cnames[c] = snn_op_name((snn_op_class)c);
    for (int l = 0; l < L; l++) {
        lnames[l] = m->layers[l].name;
        dense[l] = m->layers[l].dense_macs;
        for (int c = 0; c < K; c++) {
            total[l * K + c] = e->ops[l].n[c];
            per[l * K + c] = (double)e->ops[l].n[c] / n;
        }
    }
    static const char *const axes[2] = {"layer", "op_class"};
    const char *sc[2] = {"/ops/layer", "/ops/op_class"};
    uint64_t d2[2] = {(uint64_t)L, (uint64_t)K}, d1[1] = {(uint64_t)L};
    int rc = snn_h5_group(h, "/ops", err);
    if (rc == SNN_OK) rc = snn_h5_attr_str_array(h, "/ops", "layers", L, lnames, err);
    if (rc == SNN_OK) rc = snn_h5_attr_str_array(h, "/ops", "op_classes", K, cnames, err);
    if (rc == SNN_OK) rc = nxdata(h, "/ops", "per_sample", 2, axes, err);
    if (rc == SNN_OK) rc = index_scale(h, sc[0], L, "layer", "layer index (names: attribute layers)", err);
    if (rc == SNN_OK) rc = index_scale(h, sc[1], K, "op class", "op class index (names: attribute op_classes)", err);
    if (rc == SNN_OK) rc = snn_h5_write(h, "/ops/total", SNN_H5_U64, 2, d2, total, err);
    if (rc == SNN_OK) rc = describe(h, "/ops/total", "operations", "operations summed over samples [layer, op class]", err);
    if (rc == SNN_OK) rc = snn_h5_attach_scale(h, "/ops/total", sc[0], 0, err);
    if (rc == SNN_OK) rc = snn_h5_attach_scale(h, "/ops/total", sc[1], 1, err);
    if (rc == SNN_OK) rc = write_f64(h, "/ops/per_sample", 2, d2, per, "operations / sample", "operations per sample [layer, op class]", sc, err);
    if (rc == SNN_OK) rc = snn_h5_write(h, "/ops/dense_macs_per_sample", SNN_H5_U64, 1, d1, dense, err);
    if (rc == SNN_OK) rc = describe(h, "/ops/dense_macs_per_sample", "MACs / sample", "MACs of the layer run densely at one timestep [layer]", err);
    if (rc == SNN_OK) rc = snn_h5_attach_scale(h, "/ops/dense_macs_per_sample", sc[0], 0, err);
    free(total);
    free(per);
    free(dense);
    free(lnames);
    return rc;
}

/* Input description of every layer for (a): "blocks.0.attn.q_lif+blocks.0.attn.k_lif", "analog",
 * "stream", or "" (no FLOPs). */
static char *input_label(const snn_model *m, int l) {
    int pops[3];
    snn_input_kind kind;
    const int np = snn_energy_layer_input(m, l, pops, &kind);
    char buf[256] = "";
    if (kind == SNN_INPUT_ANALOG) snprintf(buf, sizeof buf, "analog");
    if (kind == SNN_INPUT_STREAM) snprintf(buf, sizeof buf, "stream");
    for (int j = 0; j < np; j++) {
        size_t u = strlen(buf);
        snprintf(buf + u, sizeof buf - u, "%s%s", j ? "+" : "", m->pops[pops[j]].name);
    }
    return snn_xstrdup(buf);
}

/* /energy: the three figures of sim/energy.h, per sample, per layer and per op class, with
 * every constant they use as attributes. */
static int write_energy(snn_h5 *h, const snn_model *m, const snn_eval *e, snn_err *err) {
    const int L = m->n_layers, K = SNN_OP__COUNT, M = SNN_MEM__COUNT;
    snn_energy en;
    snn_energy_compute(m, e, &en);
    const snn_energy_consts *k = &en.k;
    double *a2 = snn_xcalloc((size_t)L * K + 1, sizeof *a2);   /* [L, K] scratch */
    double *b2 = snn_xcalloc((size_t)L * K + 1, sizeof *b2);   /* [L, K] scratch */
    double *c1 = snn_xcalloc((size_t)L + 1, sizeof *c1);       /* [L] scratch */
    double *d1 = snn_xcalloc((size_t)L + 1, sizeof *d1);
    double *f1 = snn_xcalloc((size_t)L + 1, sizeof *f1);
    char **inputs = snn_xcalloc((size_t)L + 1, sizeof *inputs);
    const char *cnames[SNN_OP__COUNT], *mnames[SNN_MEM__COUNT];
    for (int c = 0; c < K; c++) cnames[c] = snn_op_name((snn_op_class)c);
    for (int c = 0; c < M; c++) mnames[c] = snn_mem_name((snn_mem_class)c);
    for (int l = 0; l < L; l++) inputs[l] = input_label(m, l);
    uint64_t dL[1] = {(uint64_t)L}, dLK[2] = {(uint64_t)L, (uint64_t)K}, dK[1] = {(uint64_t)K};
    uint64_t dLM[2] = {(uint64_t)L, (uint64_t)M};
    const char *sE[2] = {"/energy/layer", "/energy/op_class"};
    const char *sP[2] = {"/energy/paper/layer", "/energy/paper/op_class"};
    const char *sS[2] = {"/energy/syops_rule/layer", "/energy/syops_rule/op_class"};
    const char *sM[2] = {"/energy/memory/layer", "/energy/memory/memory_class"};
    int rc = SNN_OK;
#define OK(x) if (rc == SNN_OK) rc = (x)

    /* (b) at /energy itself (its historical place), plus every constant */
    OK(snn_h5_group(h, "/energy", err));
    OK(nxdata(h, "/energy", "layer_total_pj", 1, (const char *const[]){"layer"}, err));
    OK(snn_h5_attr_str(h, "/energy", "preset", m->cfg->energy.preset, err));
    OK(snn_h5_attr_str(h, "/energy", "formula", "energy[layer, class] = ops_per_sample[layer, class] * pj[class]", err));
    OK(snn_h5_attr_str(h, "/energy", "ac_rule", "neurobench: an input spike of +1 or -1 drives ACs (add or subtract)", err));
    for (int c = 0; c < K && rc == SNN_OK; c++) {
        char name[32];
        snprintf(name, sizeof name, "e_%s_pj", cnames[c]);
        rc = snn_h5_attr_f64(h, "/energy", name, k->pj[c], err);
    }
    OK(snn_h5_attr_str(h, "/energy", "memory_level", m->cfg->energy.memory_level, err));
    OK(snn_h5_attr_f64(h, "/energy", "read_pj_per_bit", k->read_pj_per_bit, err));
    OK(snn_h5_attr_f64(h, "/energy", "write_pj_per_bit", k->write_pj_per_bit, err));
    OK(snn_h5_attr_f64(h, "/energy", "weight_bits", k->weight_bits, err));
    OK(snn_h5_attr_f64(h, "/energy", "membrane_bits", k->membrane_bits, err));
    OK(snn_h5_attr_f64(h, "/energy", "activation_bits", k->activation_bits, err));
    OK(snn_h5_attr_f64(h, "/energy", "spike_bits_binary", 1.0, err));
    OK(snn_h5_attr_f64(h, "/energy", "spike_bits_ternary", 2.0, err));
    OK(snn_h5_attr_f64(h, "/energy", "total_pj_per_sample", en.compute_pj, err));
    OK(index_scale(h, sE[0], L, "layer", "layer index (names: /ops attribute layers)", err));
    OK(index_scale(h, sE[1], K, "op class", "op class index (names: /ops attribute op_classes)", err));
    for (int l = 0; l < L; l++) {
        c1[l] = 0.0;
        for (int c = 0; c < K; c++) {
            a2[l * K + c] = en.layers[l].compute_pj[c];
            c1[l] += a2[l * K + c];
        }
    }
    OK(write_f64(h, "/energy/pj_per_op", 1, dK, k->pj, "pJ", "energy per operation [op class]", sE + 1, err));
    OK(write_f64(h, "/energy/per_layer_pj", 2, dLK, a2, "pJ / sample", "compute energy per sample, NeuroBench AC rule [layer, op class]", sE, err));
    OK(write_f64(h, "/energy/layer_total_pj", 1, dL, c1, "pJ / sample", "compute energy per sample [layer]", sE, err));

    /* (a) the paper convention */
    OK(snn_h5_group(h, "/energy/paper", err));
    OK(nxdata(h, "/energy/paper", "layer_total_pj", 1, (const char *const[]){"layer"}, err));
    OK(snn_h5_attr_str(h, "/energy/paper", "formula",
                       "E = E_MAC * FLOPs_first + E_AC * sum_l fr_l * T * FLOPs_l; FLOPs_l = dense_macs "
                       "of layer l at one timestep, fr_l = nonzero share of the layer's input "
                       "(attribute input_populations); analog-input layers (direct embedding, head) are MACs "
                       "computed once; the kernel's two halves are billed at min(fr_q, fr_k) and fr_v "
                       "(sdsa: min(fr_k, fr_v) and fr_q); ANN models: E_MAC * dense MACs", err));
    OK(snn_h5_attr_str_array(h, "/energy/paper", "input_populations", L, (const char *const *)inputs, err));
    OK(snn_h5_attr_f64(h, "/energy/paper", "total_pj_per_sample", en.paper_pj, err));
    OK(snn_h5_attr_f64(h, "/energy/paper", "total_first_layer_times_T_pj_per_sample", en.paper_T_pj, err));
    OK(index_scale(h, sP[0], L, "layer", "layer index (names: /ops attribute layers)", err));
    OK(index_scale(h, sP[1], K, "op class", "op class index (names: /ops attribute op_classes)", err));
    for (int l = 0; l < L; l++) {
        const snn_energy_layer *r = &en.layers[l];
        for (int c = 0; c < K; c++) a2[l * K + c] = 0.0;
        a2[l * K + SNN_OP_MAC] = r->paper_macs * k->pj[SNN_OP_MAC];
        a2[l * K + SNN_OP_AC] = r->paper_acs * k->pj[SNN_OP_AC];
        c1[l] = r->paper_pj;
        d1[l] = r->paper_T_pj;
        f1[l] = r->input_rate;
    }
    OK(write_f64(h, "/energy/paper/input_firing_rate", 1, dL, f1, "spikes / neuron / timestep", "firing rate fr of the layer's input (NaN: MAC layer or no FLOPs) [layer]", sP, err));
    for (int l = 0; l < L; l++) f1[l] = en.layers[l].paper_macs;
    OK(write_f64(h, "/energy/paper/macs_per_sample", 1, dL, f1, "MACs / sample", "MACs billed: FLOPs of analog-input layers, first layer once [layer]", sP, err));
    for (int l = 0; l < L; l++) f1[l] = en.layers[l].paper_acs;
    OK(write_f64(h, "/energy/paper/acs_per_sample", 1, dL, f1, "ACs / sample", "ACs billed: fr * T * FLOPs [layer]", sP, err));
    OK(write_f64(h, "/energy/paper/per_layer_pj", 2, dLK, a2, "pJ / sample", "paper-convention energy per sample, first layer once [layer, op class]", sP, err));
    OK(write_f64(h, "/energy/paper/layer_total_pj", 1, dL, c1, "pJ / sample", "paper-convention energy per sample, first layer once [layer]", sP, err));
    OK(write_f64(h, "/energy/paper/layer_total_first_layer_times_T_pj", 1, dL, d1, "pJ / sample", "paper-convention energy per sample, first layer times T [layer]", sP, err));

    /* (b) under the syops rule */
    OK(snn_h5_group(h, "/energy/syops_rule", err));
    OK(nxdata(h, "/energy/syops_rule", "layer_total_pj", 1, (const char *const[]){"layer"}, err));
    OK(snn_h5_attr_str(h, "/energy/syops_rule", "rule",
                       "syops-counter: a layer input counts as spikes only if every value is in {0, 1}; "
                       "a layer fed by a bipolar population ({-1, 0, +1}) has its ACs billed as MACs "
                       "(at the counted event numbers)", err));
    OK(snn_h5_attr_f64(h, "/energy/syops_rule", "total_pj_per_sample", en.syops_pj, err));
    OK(snn_h5_attr_f64(h, "/energy/syops_rule", "neurobench_rule_total_pj_per_sample", en.compute_pj, err));
    OK(index_scale(h, sS[0], L, "layer", "layer index (names: /ops attribute layers)", err));
    OK(index_scale(h, sS[1], K, "op class", "op class index (names: /ops attribute op_classes)", err));
    for (int l = 0; l < L; l++) {
        c1[l] = 0.0;
        for (int c = 0; c < K; c++) {
            a2[l * K + c] = en.layers[l].syops_pj[c];
            c1[l] += a2[l * K + c];
        }
        f1[l] = en.layers[l].ternary_acs;
    }
    OK(write_f64(h, "/energy/syops_rule/rebilled_acs_per_sample", 1, dL, f1, "ACs / sample", "ACs of ternary-input layers, billed as MACs by the syops rule [layer]", sS, err));
    OK(write_f64(h, "/energy/syops_rule/per_layer_pj", 2, dLK, a2, "pJ / sample", "compute energy per sample, syops rule [layer, op class]", sS, err));
    OK(write_f64(h, "/energy/syops_rule/layer_total_pj", 1, dL, c1, "pJ / sample", "compute energy per sample, syops rule [layer]", sS, err));

    /* (c) memory-aware */
    OK(snn_h5_group(h, "/energy/memory", err));
    OK(nxdata(h, "/energy/memory", "layer_total_pj", 1, (const char *const[]){"layer"}, err));
    OK(snn_h5_attr_str_array(h, "/energy/memory", "memory_classes", M, mnames, err));
    OK(snn_h5_attr_str(h, "/energy/memory", "formula",
                       "weight_read = (ACs + MACs of embed, linear, head) * weight_bits * read; "
                       "membrane_rw = neuron updates * membrane_bits * (read + write); "
                       "spike_write = nonzero spikes * (1 binary, 2 ternary) * write; "
                       "activation_rw = attention-map entries (every model), layer outputs (ANN models) "
                       "and the analog embedding U0 (SNN: written once, read every timestep), "
                       "* activation_bits, written once and read once; memory_aware = compute (NeuroBench rule) + memory", err));
    OK(snn_h5_attr_str(h, "/energy/memory", "memory_level", m->cfg->energy.memory_level, err));
    OK(snn_h5_attr_f64(h, "/energy/memory", "read_pj_per_bit", k->read_pj_per_bit, err));
    OK(snn_h5_attr_f64(h, "/energy/memory", "write_pj_per_bit", k->write_pj_per_bit, err));
    OK(snn_h5_attr_f64(h, "/energy/memory", "total_pj_per_sample", en.memory_pj, err));
    OK(snn_h5_attr_f64(h, "/energy/memory", "memory_aware_total_pj_per_sample", en.memory_aware_pj, err));
    OK(index_scale(h, sM[0], L, "layer", "layer index (names: /ops attribute layers)", err));
    OK(index_scale(h, sM[1], M, "memory class", "memory class index (names: attribute memory_classes)", err));
    for (int l = 0; l < L; l++) {
        c1[l] = 0.0;
        for (int c = 0; c < M; c++) {
            a2[l * M + c] = en.layers[l].mem_bits[c];
            b2[l * M + c] = en.layers[l].mem_pj[c];
            c1[l] += b2[l * M + c];
        }
        d1[l] = c1[l];
        for (int c = 0; c < K; c++) d1[l] += en.layers[l].compute_pj[c];
    }
    OK(write_f64(h, "/energy/memory/bits_per_sample", 2, dLM, a2, "bits / sample", "bits moved (reads + writes) per sample [layer, memory class]", sM, err));
    OK(write_f64(h, "/energy/memory/per_layer_pj", 2, dLM, b2, "pJ / sample", "memory energy per sample [layer, memory class]", sM, err));
    OK(write_f64(h, "/energy/memory/layer_total_pj", 1, dL, c1, "pJ / sample", "memory energy per sample [layer]", sM, err));
    OK(write_f64(h, "/energy/memory/memory_aware_layer_total_pj", 1, dL, d1, "pJ / sample", "compute + memory energy per sample [layer]", sM, err));
#undef OK
    for (int l = 0; l < L; l++) free(inputs[l]);
    free(inputs);
    free(a2);
    free(b2);
    free(c1);
    free(d1);
    free(f1);
    snn_energy_free(&en);
    return rc;
}

/* /metrics: NeuroBench's metric names with their meanings (sim/energy.h). Scalar datasets (with
 * units) and the same values as group attributes, so dict(f["metrics"].attrs) reads like
 * NeuroBench's results dict. */
static int write_metrics(snn_h5 *h, const snn_model *m, const snn_eval *e, snn_err *err) {
    snn_metrics mt;
    snn_metrics_compute(m, e, &mt);
    int rc = SNN_OK;
#define OK(x) if (rc == SNN_OK) rc = (x)
#define SCALAR(name, value, units, long_name)                                                    \
    OK(write_f64(h, "/metrics/" name, 0, NULL, &(double){value}, units, long_name, NULL, err));   \
    OK(snn_h5_attr_f64(h, "/metrics", strrchr("/" name, '/') + 1, value, err))
    OK(snn_h5_group(h, "/metrics", err));
    OK(snn_h5_attr_str(h, "/metrics", "definitions", "NeuroBench v2.3 (docs/hdf5-layout.md, /metrics)", err));
    SCALAR("Footprint", mt.footprint_bytes, "bytes", "bytes of all parameters and buffers at energy.weight_bits");
    SCALAR("ConnectionSparsity", mt.connection_sparsity, "1", "zero weights / all weights of the connection layers");
    SCALAR("ActivationSparsity", mt.activation_sparsity, "1", "1 - spikes / neuron updates over every population, timestep and sample (NaN: ANN model)");
    SCALAR("MembraneUpdates", mt.membrane_updates, "updates / sample", "membrane-potential updates per sample");
    SCALAR("SynapticOperations/Effective_MACs", mt.effective_macs, "MACs / sample", "MACs of the connection layers per sample (real-valued or non-ternary input)");
    SCALAR("SynapticOperations/Effective_ACs", mt.effective_acs, "ACs / sample", "ACs of the connection layers per sample (inputs in {-1, 0, 1}, nonzero only)");
    SCALAR("SynapticOperations/Dense", mt.dense, "operations / sample", "every position of every executed connection layer per sample");
#undef SCALAR
    OK(snn_h5_attr_f64(h, "/metrics/SynapticOperations", "Effective_MACs", mt.effective_macs, err));
    OK(snn_h5_attr_f64(h, "/metrics/SynapticOperations", "Effective_ACs", mt.effective_acs, err));
    OK(snn_h5_attr_f64(h, "/metrics/SynapticOperations", "Dense", mt.dense, err));
    const char **pnames = snn_xmalloc(((size_t)m->n_pops + 1) * sizeof *pnames);
    for (int p = 0; p < m->n_pops; p++) pnames[p] = m->pops[p].name;
    uint64_t dp[1] = {(uint64_t)m->n_pops};
    OK(snn_h5_write(h, "/metrics/ActivationSparsityByLayer", SNN_H5_F64, 1, dp, mt.activation_sparsity_by_pop, err));
    OK(describe(h, "/metrics/ActivationSparsityByLayer", "1", "1 - spikes / neuron updates [population]", err));
    OK(snn_h5_attr_str_array(h, "/metrics/ActivationSparsityByLayer", "populations", m->n_pops, pnames, err));
    if (m->n_pops > 0) {
        OK(index_scale(h, "/metrics/population", m->n_pops, "population", "population index (names: ActivationSparsityByLayer attribute populations)", err));
        OK(snn_h5_attach_scale(h, "/metrics/ActivationSparsityByLayer", "/metrics/population", 0, err));
        OK(nxdata(h, "/metrics", "ActivationSparsityByLayer", 1, (const char *const[]){"population"}, err));
    }
#undef OK
    free(pnames);
    snn_metrics_free(&mt);
    return rc;
}

int snn_output_write(snn_h5 *h, const snn_model *m, const snn_eval *e, const char *config_yaml,
                     snn_err *err) {
    TRY(write_root(h, m, e, config_yaml, err));
    TRY(write_summary(h, m, e, err));
    TRY(write_outputs(h, m, e, err));
    TRY(snn_h5_write_parameters(h, m->tensors, m->n_tensors, err));
    TRY(write_embed_node(h, m, e, err));
    for (int p = 0; p < m->n_pops; p++) TRY(write_node(h, m, e, p, err));
    TRY(write_ops(h, m, e, err));
    TRY(write_energy(h, m, e, err));
    return write_metrics(h, m, e, err);
}
