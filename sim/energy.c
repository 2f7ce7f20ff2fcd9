/* energy.c: see energy.h. */
#include "sim/energy.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sim/util.h"

const char *snn_mem_name(snn_mem_class c) {
    static const char *const names[SNN_MEM__COUNT] = {"weight_read", "membrane_rw", "spike_write",
                                                      "activation_rw"};
    return names[c];
}

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

void snn_energy_consts_of(const snn_config *cfg, snn_energy_consts *k) {
    memset(k, 0, sizeof *k);
    snn_energy_costs(cfg, k->pj);
    k->weight_bits = cfg->energy.weight_bits;
    k->membrane_bits = cfg->energy.membrane_bits;
    k->activation_bits = cfg->energy.activation_bits;
    k->read_pj_per_bit = cfg->energy.read_pj_per_bit;
    k->write_pj_per_bit = cfg->energy.write_pj_per_bit;
}

/* The linear layer behind op-table row l, or NULL (neurons, kernels, activations, cat's a). */
static const snn_linear *linear_of(const snn_model *m, int l) {
    if (l == m->layer_embed) return &m->embed_spk;
    if (l == m->head.layer) return &m->head;
    for (int i = 0; i < m->L; i++) {
        const snn_block *b = &m->blocks[i];
        const snn_linear *lins[6] = {&b->q, &b->k, &b->v, &b->o, &b->fc1, &b->fc2};
        for (int j = 0; j < 6; j++)
            if (lins[j]->weight && lins[j]->layer == l) return lins[j];
    }
    return NULL;
}

int snn_energy_layer_input(const snn_model *m, int l, int pops[3], snn_input_kind *kind) {
    const snn_layer_kind lk = m->layers[l].kind;
    const bool sew = m->cfg->model.residual == SNN_RESIDUAL_SEW;
    *kind = SNN_INPUT_NONE;
    if (lk == SNN_LAYER_NEURON || lk == SNN_LAYER_ACTIVATION) return 0;
    if (m->ann) {
        *kind = SNN_INPUT_ANALOG;
        return 0;
    }
    if (l == m->layer_embed) {
        *kind = m->cfg->data.encoding == SNN_ENCODING_RATE ? SNN_INPUT_STREAM : SNN_INPUT_ANALOG;
        return 0;
    }
    if (l == m->head.layer) {
        *kind = SNN_INPUT_ANALOG;
        return 0;
    }
    for (int i = 0; i < m->L; i++) {
        const snn_block *b = &m->blocks[i];
        int n = 0;
        if (l == b->layer_kernel) {
            const int qkv[3] = {b->pop_q, b->pop_k, b->pop_v};
            for (int j = 0; j < 3; j++)
                if (qkv[j] >= 0) pops[n++] = qkv[j];
            *kind = SNN_INPUT_SPIKES;
            return n;
        }
        const bool is_qkv = (b->q.weight && l == b->q.layer) || (b->k.weight && l == b->k.layer) ||
                            (b->v.weight && l == b->v.layer);
        if (is_qkv) {
            if (sew && i > 0) {
                *kind = SNN_INPUT_STREAM;
                return 0;
            }
            pops[0] = b->pop_in;
            *kind = SNN_INPUT_SPIKES;
            return 1;
        }
        if (l == b->o.layer) {
            pops[0] = b->pop_attn;
            *kind = SNN_INPUT_SPIKES;
            return 1;
        }
        if (l == b->fc1.layer) {
            if (sew) {
                *kind = SNN_INPUT_STREAM;
                return 0;
            }
            pops[0] = b->pop_mlp_in;
            *kind = SNN_INPUT_SPIKES;
            return 1;
        }
        if (l == b->fc2.layer) {
            pops[0] = b->pop_hidden;
            *kind = SNN_INPUT_SPIKES;
            return 1;
        }
    }
    return 0;
}

double snn_energy_pop_rate(const snn_model *m, const snn_eval *e, int p) {
    const double n = e->n > 0 ? (double)e->n : 1.0;
    uint64_t spikes = 0;
    for (int t = 0; t < m->T; t++) spikes += e->pop_t_count[(size_t)p * m->T + t];
    const double updates = n * m->T * (double)m->pops[p].size;
    return updates > 0 ? (double)spikes / updates : 0.0;
}

/* Attention-map entries one kernel writes per timestep (all heads): the scores of ssa, bsa and
 * softmax [h, N, N]; CAT's token logits [h, N] (the circulant is never built); Primal's
 * projections e and r [h, 2, N, s]; SDSA's column sums [D]. */
static double attention_map_elems(const snn_model *m) {
    const double N = m->N, h = m->heads;
    switch (m->cfg->model.attention.kind) {
    case SNN_ATTN_CAT: return N * h;
    case SNN_ATTN_PRIMAL: return 2.0 * N * m->primal_s * h;
    case SNN_ATTN_SDSA: return m->D;
    default: return N * N * h;
    }
}

/* Non-spike values layer l writes per sample (each also read once), for figure (c):
 * the attention maps of every model; every layer output of an ANN model; the analog embedding
 * U0 of an SNN (written once, or every step with rate coding; read every step: see reads). */
static void activation_traffic(const snn_model *m, int l, double *writes, double *reads) {
    const snn_layer *ly = &m->layers[l];
    const double N = m->N, T = m->T;
    *writes = *reads = 0.0;
    if (ly->kind == SNN_LAYER_ATTENTION) {
        double el = attention_map_elems(m) * T;
        if (m->ann) el += N * m->D; /* the kernel's output O, an ANN activation */
        *writes = *reads = el;
        return;
    }
    if (!m->ann) {
        if (l == m->layer_embed) {
            const bool rate = m->cfg->data.encoding == SNN_ENCODING_RATE;
            *writes = N * m->D * (rate ? T : 1.0);
            *reads = N * m->D * T;
        }
        return; /* synaptic outputs feed a membrane directly: the membrane term covers them */
    }
    double el = 0.0;
    if (ly->kind == SNN_LAYER_ACTIVATION) {
        el = N * (l == m->layer_head_act ? m->D : m->Hd);
    } else if (l == m->head.layer) {
        el = m->classes;
    } else if (m->cfg->model.attention.kind == SNN_ATTN_CAT && ly->kind == SNN_LAYER_LINEAR &&
               !linear_of(m, l)) {
        el = N * m->heads; /* cat's a projection */
    } else {
        const snn_linear *lin = linear_of(m, l);
        if (lin) el = N * lin->out;
    }
    *writes = *reads = el;
}

void snn_energy_compute(const snn_model *m, const snn_eval *e, snn_energy *out) {
    memset(out, 0, sizeof *out);
    snn_energy_consts_of(m->cfg, &out->k);
    const snn_energy_consts *k = &out->k;
    const int L = m->n_layers;
    const double n = e->n > 0 ? (double)e->n : 1.0, T = m->T;
    const snn_attn_kind akind = m->cfg->model.attention.kind;
    out->n_layers = L;
    out->layers = snn_xcalloc((size_t)L, sizeof *out->layers);
    for (int l = 0; l < L; l++) {
        snn_energy_layer *r = &out->layers[l];
        const snn_layer *ly = &m->layers[l];
        const snn_ops *ops = &e->ops[l];
        const double dense = (double)ly->dense_macs;
        int pops[3];
        const int np = snn_energy_layer_input(m, l, pops, &r->input);
        for (int j = 0; j < np; j++)
            if (m->pops[pops[j]].np.bipolar) r->ternary_input = true;

        /* (a) the paper convention */
        r->input_rate = NAN;
        if (m->ann) {
            r->paper_macs = dense; /* no spikes: every layer is MACs, T = 1 */
        } else if (r->input == SNN_INPUT_ANALOG) {
            r->paper_macs = dense; /* computed once per sample (direct embedding, head) */
        } else if (r->input == SNN_INPUT_STREAM) {
            r->input_rate = dense > 0 ? (double)(ops->n[SNN_OP_AC] + ops->n[SNN_OP_MAC]) / (n * T * dense) : 0.0;
            r->paper_acs = r->input_rate * T * dense;
        } else if (r->input == SNN_INPUT_SPIKES && ly->kind == SNN_LAYER_ATTENTION) {
            /* The two halves of dense_macs: Q K^T (SDSA: K*V), billed at the sparser operand's
             * rate (Spikingformer's min rule for a spike-spike product), and the product with
             * the remaining spike operand (A V at fr_v; SDSA's Q mask at fr_q). */
            const double fq = snn_energy_pop_rate(m, e, pops[0]), fk = snn_energy_pop_rate(m, e, pops[1]);
            const double fv = snn_energy_pop_rate(m, e, pops[2]);
            const double rate = akind == SNN_ATTN_SDSA ? 0.5 * (fmin(fk, fv) + fq) : 0.5 * (fmin(fq, fk) + fv);
            r->input_rate = rate;
            r->paper_acs = rate * T * dense;
        } else if (r->input == SNN_INPUT_SPIKES) {
            r->input_rate = snn_energy_pop_rate(m, e, pops[0]);
            r->paper_acs = r->input_rate * T * dense;
        }
        r->paper_pj = r->paper_macs * k->pj[SNN_OP_MAC] + r->paper_acs * k->pj[SNN_OP_AC];
        r->paper_T_pj = r->paper_pj;
        if (!m->ann && l == m->layer_embed && r->input == SNN_INPUT_ANALOG)
            r->paper_T_pj = T * r->paper_macs * k->pj[SNN_OP_MAC];

        /* (b) counted events x pJ; the syops rule moves a ternary-input layer's ACs to MACs */
        for (int c = 0; c < SNN_OP__COUNT; c++) {
            r->compute_pj[c] = (double)ops->n[c] / n * k->pj[c];
            r->syops_pj[c] = r->compute_pj[c];
        }
        if (r->ternary_input) {
            r->ternary_acs = (double)ops->n[SNN_OP_AC] / n;
            r->syops_pj[SNN_OP_AC] = 0.0;
            r->syops_pj[SNN_OP_MAC] += r->ternary_acs * k->pj[SNN_OP_MAC];
        }

        /* (c) memory traffic */
        const double rd = k->read_pj_per_bit, wr = k->write_pj_per_bit;
        if (ly->kind == SNN_LAYER_EMBED || ly->kind == SNN_LAYER_LINEAR || ly->kind == SNN_LAYER_HEAD) {
            const double events = (double)(ops->n[SNN_OP_AC] + ops->n[SNN_OP_MAC]) / n;
            r->mem_bits[SNN_MEM_WEIGHT_READ] = events * k->weight_bits;
            r->mem_pj[SNN_MEM_WEIGHT_READ] = events * k->weight_bits * rd;
        }
        const double updates = (double)ops->n[SNN_OP_NEURON] / n;
        r->mem_bits[SNN_MEM_MEMBRANE_RW] = 2.0 * updates * k->membrane_bits;
        r->mem_pj[SNN_MEM_MEMBRANE_RW] = updates * k->membrane_bits * (rd + wr);
        double aw, ar;
        activation_traffic(m, l, &aw, &ar);
        r->mem_bits[SNN_MEM_ACTIVATION_RW] = (aw + ar) * k->activation_bits;
        r->mem_pj[SNN_MEM_ACTIVATION_RW] = k->activation_bits * (aw * wr + ar * rd);
    }
    /* spike writes, on the population's own row */
    for (int p = 0; p < m->n_pops; p++) {
        const snn_pop *pop = &m->pops[p];
        uint64_t spikes = 0;
        for (int t = 0; t < m->T; t++) spikes += e->pop_t_count[(size_t)p * m->T + t];
        const double bits = (double)spikes / n * (pop->np.bipolar ? 2.0 : 1.0);
        snn_energy_layer *r = &out->layers[pop->layer];
        r->mem_bits[SNN_MEM_SPIKE_WRITE] += bits;
        r->mem_pj[SNN_MEM_SPIKE_WRITE] += bits * k->write_pj_per_bit;
    }
    for (int l = 0; l < L; l++) {
        const snn_energy_layer *r = &out->layers[l];
        out->paper_pj += r->paper_pj;
        out->paper_T_pj += r->paper_T_pj;
        for (int c = 0; c < SNN_OP__COUNT; c++) {
            out->compute_pj += r->compute_pj[c];
            out->syops_pj += r->syops_pj[c];
        }
        for (int c = 0; c < SNN_MEM__COUNT; c++) out->memory_pj += r->mem_pj[c];
    }
    out->memory_aware_pj = out->compute_pj + out->memory_pj;
}

void snn_energy_free(snn_energy *en) {
    free(en->layers);
    memset(en, 0, sizeof *en);
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

void snn_metrics_compute(const snn_model *m, const snn_eval *e, snn_metrics *out) {
    memset(out, 0, sizeof *out);
    const double n = e->n > 0 ? (double)e->n : 1.0;
    out->footprint_bytes = (double)m->n_params * m->cfg->energy.weight_bits / 8.0;
    for (size_t i = 0; i < m->n_tensors; i++) {
        const snn_tensor *t = &m->tensors[i];
        if (t->rank != 2 || !ends_with(t->name, ".weight")) continue;
        const size_t cnt = (size_t)t->dims[0] * (size_t)t->dims[1];
        out->weights_total += cnt;
        for (size_t j = 0; j < cnt; j++) out->weights_zero += t->data[j] == 0.0f;
    }
    out->connection_sparsity =
        out->weights_total ? (double)out->weights_zero / (double)out->weights_total : 0.0;

    out->activation_sparsity_by_pop = snn_xcalloc((size_t)m->n_pops + 1, sizeof(double));
    uint64_t spikes = 0, updates = 0; /* integers: the ratio is rounded once */
    for (int p = 0; p < m->n_pops; p++) {
        out->activation_sparsity_by_pop[p] = 1.0 - snn_energy_pop_rate(m, e, p);
        for (int t = 0; t < m->T; t++) spikes += e->pop_t_count[(size_t)p * m->T + t];
        updates += (uint64_t)(e->n > 0 ? e->n : 1) * (uint64_t)m->T * m->pops[p].size;
    }
    out->activation_sparsity = updates ? 1.0 - (double)spikes / (double)updates : NAN;

    const bool rate_coded = m->cfg->data.encoding == SNN_ENCODING_RATE;
    for (int l = 0; l < m->n_layers; l++) {
        const snn_layer *ly = &m->layers[l];
        if (ly->kind != SNN_LAYER_EMBED && ly->kind != SNN_LAYER_LINEAR && ly->kind != SNN_LAYER_HEAD)
            continue;
        out->effective_acs += (double)e->ops[l].n[SNN_OP_AC] / n;
        out->effective_macs += (double)e->ops[l].n[SNN_OP_MAC] / n;
        /* executions per sample: the head and the direct embedding run once, the rest every step */
        const bool once = m->ann || ly->kind == SNN_LAYER_HEAD ||
                          (ly->kind == SNN_LAYER_EMBED && !rate_coded);
        out->dense += (double)ly->dense_macs * (once ? 1.0 : (double)m->T);
    }
    for (int l = 0; l < m->n_layers; l++) out->membrane_updates += (double)e->ops[l].n[SNN_OP_NEURON] / n;
}

void snn_metrics_free(snn_metrics *mt) {
    free(mt->activation_sparsity_by_pop);
    memset(mt, 0, sizeof *mt);
}
