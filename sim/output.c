/*
 * output.c: writes a run as an HDF5 file that opens everywhere (h5dump, HDFView, h5py, h5web).
 *
 * Layout (docs/hdf5-layout.md): NIRData-compatible root and /nodes (so nir.read_data() can
 * read the spike grids), /config with the resolved YAML, /summary attributes, /outputs,
 * /parameters (every run file is also a checkpoint), /ops and /energy per layer and op class.
 */
#include "sim/output.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TRY(x)                                                                                  \
    do {                                                                                        \
        if ((x) != SNN_OK) return SNN_ERR;                                                      \
    } while (0)

void snn_energy_costs(const snn_config *cfg, double pj[SNN_OP__COUNT]) {
    pj[SNN_OP_AC] = cfg->energy.e_ac_pj;
    pj[SNN_OP_MAC] = cfg->energy.e_mac_pj;
    pj[SNN_OP_SHIFT] = cfg->energy.e_shift_pj;
    pj[SNN_OP_INT_ADD] = cfg->energy.e_int_add_pj;
    pj[SNN_OP_EXP] = cfg->energy.e_exp_pj;
    pj[SNN_OP_DIV] = cfg->energy.e_div_pj;
    pj[SNN_OP_CMP] = cfg->energy.e_cmp_pj;
    pj[SNN_OP_NEURON] = cfg->energy.e_neuron_pj;
}

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
    return describe(h, "/outputs/sample_index", "index", "sample index in the dataset file", err);
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
    return describe(h, "/nodes/embed/observables/u/data", "1",
                    "embedding U0 = BN(patches W^T + b) + pos [sample, 1, token * D + channel] "
                    "(direct encoding: the same every timestep)",
                    err);
}

static int write_ops(snn_h5 *h, const snn_model *m, const snn_eval *e, snn_err *err) {
    const int L = m->n_layers, K = SNN_OP__COUNT;
    const double n = e->n > 0 ? (double)e->n : 1.0;
    double pj[SNN_OP__COUNT];
    snn_energy_costs(m->cfg, pj);
    uint64_t *total = snn_xmalloc((size_t)L * K * sizeof *total);
    double *per = snn_xmalloc((size_t)L * K * sizeof *per);
    double *energy = snn_xmalloc((size_t)L * K * sizeof *energy);
    double *energy_layer = snn_xcalloc((size_t)L, sizeof *energy_layer);
    uint64_t *dense = snn_xmalloc((size_t)L * sizeof *dense);
    const char **lnames = snn_xmalloc((size_t)L * sizeof *lnames);
    const char *cnames[SNN_OP__COUNT];
    for (int c = 0; c < K; c++) cnames[c] = snn_op_name((snn_op_class)c);
    for (int l = 0; l < L; l++) {
        lnames[l] = m->layers[l].name;
        dense[l] = m->layers[l].dense_macs;
        for (int c = 0; c < K; c++) {
            total[l * K + c] = e->ops[l].n[c];
            per[l * K + c] = (double)e->ops[l].n[c] / n;
            energy[l * K + c] = per[l * K + c] * pj[c];
            energy_layer[l] += energy[l * K + c];
        }
    }
    uint64_t d2[2] = {(uint64_t)L, (uint64_t)K}, d1[1] = {(uint64_t)L}, dc[1] = {(uint64_t)K};
    int rc = snn_h5_group(h, "/ops", err);
    if (rc == SNN_OK) rc = snn_h5_attr_str_array(h, "/ops", "layers", L, lnames, err);
    if (rc == SNN_OK) rc = snn_h5_attr_str_array(h, "/ops", "op_classes", K, cnames, err);
    if (rc == SNN_OK) rc = snn_h5_write(h, "/ops/total", SNN_H5_U64, 2, d2, total, err);
    if (rc == SNN_OK) rc = describe(h, "/ops/total", "operations", "operations summed over samples [layer, op class]", err);
    if (rc == SNN_OK) rc = snn_h5_write(h, "/ops/per_sample", SNN_H5_F64, 2, d2, per, err);
    if (rc == SNN_OK) rc = describe(h, "/ops/per_sample", "operations / sample", "operations per sample [layer, op class]", err);
    if (rc == SNN_OK) rc = snn_h5_write(h, "/ops/dense_macs_per_sample", SNN_H5_U64, 1, d1, dense, err);
    if (rc == SNN_OK) rc = describe(h, "/ops/dense_macs_per_sample", "MACs / sample", "MACs of the layer run densely at one timestep [layer]", err);
    if (rc == SNN_OK) rc = snn_h5_group(h, "/energy", err);
    if (rc == SNN_OK) rc = snn_h5_attr_str(h, "/energy", "preset", m->cfg->energy.preset, err);
    if (rc == SNN_OK) rc = snn_h5_attr_str(h, "/energy", "formula", "energy[layer, class] = ops_per_sample[layer, class] * pj[class]", err);
    if (rc == SNN_OK) rc = snn_h5_write(h, "/energy/pj_per_op", SNN_H5_F64, 1, dc, pj, err);
    if (rc == SNN_OK) rc = describe(h, "/energy/pj_per_op", "pJ", "energy per operation [op class]", err);
    if (rc == SNN_OK) rc = snn_h5_write(h, "/energy/per_layer_pj", SNN_H5_F64, 2, d2, energy, err);
    if (rc == SNN_OK) rc = describe(h, "/energy/per_layer_pj", "pJ / sample", "energy per sample [layer, op class]", err);
    if (rc == SNN_OK) rc = snn_h5_write(h, "/energy/layer_total_pj", SNN_H5_F64, 1, d1, energy_layer, err);
    if (rc == SNN_OK) rc = describe(h, "/energy/layer_total_pj", "pJ / sample", "energy per sample [layer]", err);
    for (int c = 0; c < K && rc == SNN_OK; c++) {
        char name[32];
        snprintf(name, sizeof name, "e_%s_pj", cnames[c]);
        rc = snn_h5_attr_f64(h, "/energy", name, pj[c], err);
    }
    free(total);
    free(per);
    free(energy);
    free(energy_layer);
    free(dense);
    free(lnames);
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
    return write_ops(h, m, e, err);
}
