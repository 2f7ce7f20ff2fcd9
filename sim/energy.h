/*
 * energy.h: the energy model and the NeuroBench metrics of a run (spec section 6; research
 * methods.md 7.2, 7.3 and 7.5). Pure computation from the op table (m->layers), the model and
 * the evaluation's counts; no HDF5 (sim/output.c writes the results, docs/hdf5-layout.md
 * documents every figure).
 *
 * Three energy figures, per sample, per layer and per op class:
 *   (a) paper     the spiking-transformer papers' convention,
 *                 E = E_MAC FLOPs_first + E_AC sum_l fr_l T FLOPs_l, with FLOPs_l the layer's
 *                 dense_macs at one timestep and fr_l the firing rate of the layer's INPUT (which
 *                 population feeds which layer: snn_energy_layer_input). The first layer is
 *                 given once (what spikesim computes) and times T (what papers bill).
 *   (b) compute   the counted events times pJ per op class (the NeuroBench rule: a +-1 spike is
 *                 an AC), and beside it the syops rule: a layer whose input tensor holds -1
 *                 values is not "spiking" for syops, so its ACs are billed as MACs.
 *   (c) memory    (b) plus memory traffic at energy.memory_level: one weight read per synaptic
 *                 event, a membrane read and write per neuron update, a spike write per nonzero
 *                 spike (1 bit binary, 2 bits ternary), activations of ANN layers and attention
 *                 maps (written once, read once).
 */
#ifndef SNN_ENERGY_H
#define SNN_ENERGY_H

#include <stdbool.h>
#include <stdint.h>

#include "sim/config.h"
#include "sim/eval.h"
#include "sim/model.h"
#include "sim/ops.h"

/* Memory-traffic classes of figure (c). */
typedef enum snn_mem_class {
    SNN_MEM_WEIGHT_READ,    /* one weight read per synaptic event (AC or MAC of a weight layer) */
    SNN_MEM_MEMBRANE_RW,    /* membrane read + write per neuron update */
    SNN_MEM_SPIKE_WRITE,    /* one write per nonzero spike, 1 bit (binary) or 2 bits (ternary) */
    SNN_MEM_ACTIVATION_RW,  /* non-spike activations and attention maps: written once, read once */
    SNN_MEM__COUNT
} snn_mem_class;

/* "weight_read", "membrane_rw", "spike_write", "activation_rw". */
const char *snn_mem_name(snn_mem_class c);

/* Every constant the energy model uses, resolved from the config (energy.*). */
typedef struct snn_energy_consts {
    double pj[SNN_OP__COUNT];      /* pJ per op, snn_op_class order */
    double weight_bits, membrane_bits, activation_bits;
    double read_pj_per_bit, write_pj_per_bit;
} snn_energy_consts;

/* pJ per op class, in snn_op_class order. */
void snn_energy_costs(const snn_config *cfg, double pj[SNN_OP__COUNT]);
void snn_energy_consts_of(const snn_config *cfg, snn_energy_consts *k);

/* What feeds a layer of the op table. */
typedef enum snn_input_kind {
    SNN_INPUT_NONE,    /* not a synaptic layer (neuron updates, ANN activations) */
    SNN_INPUT_ANALOG,  /* real-valued: pixels (direct encoding), the head's spike mean, ANN layers */
    SNN_INPUT_SPIKES,  /* spikes of the populations listed */
    SNN_INPUT_STREAM   /* a spike stream without its own population (rate-coded pixels, SEW's
                        * integer spike sums): its nonzero share is measured from the layer's
                        * events, (ACs + MACs) / (T dense_macs) */
} snn_input_kind;

/* The populations whose spikes enter layer l, into pops[0..3) (their count is returned), and
 * the kind of input. Membrane shortcut (ms): attn.{q,k,v} <- lif_in, attn.kernel <- q_lif,
 * k_lif, v_lif, attn.o <- attn_lif, mlp.fc1 <- mlp.lif_in, mlp.fc2 <- hidden_lif. SEW: block
 * 0's q, k, v <- lif_in, later blocks' q, k, v and every fc1 <- the stream X. embed: analog
 * (direct) or stream (rate); head: analog (the spike mean over T and tokens). */
int snn_energy_layer_input(const snn_model *m, int l, int pops[3], snn_input_kind *kind);

/* Firing rate of population p: nonzero spikes / (samples T size). */
double snn_energy_pop_rate(const snn_model *m, const snn_eval *e, int p);

/* One op-table row, per sample. */
typedef struct snn_energy_layer {
    snn_input_kind input;
    bool ternary_input;          /* a population feeding it is bipolar ({-1, 0, +1}) */
    /* (a) */
    double input_rate;           /* fr: paper_acs = fr T dense_macs; NaN for MAC or no-FLOP rows */
    double paper_macs, paper_acs;             /* billed ops, first layer once */
    double paper_pj;                          /* first layer once */
    double paper_T_pj;                        /* first layer times T */
    /* (b) */
    double compute_pj[SNN_OP__COUNT];         /* NeuroBench rule (ops x pJ) */
    double syops_pj[SNN_OP__COUNT];           /* syops rule: ternary-input ACs in the MAC column */
    double ternary_acs;                       /* ACs the syops rule re-bills as MACs */
    /* (c) */
    double mem_bits[SNN_MEM__COUNT];          /* bits moved (reads + writes) */
    double mem_pj[SNN_MEM__COUNT];
} snn_energy_layer;

typedef struct snn_energy {
    snn_energy_consts k;
    int n_layers;
    snn_energy_layer *layers;    /* [n_layers] */
    /* totals per sample, pJ */
    double paper_pj, paper_T_pj; /* (a): first layer once / times T */
    double compute_pj;           /* (b), NeuroBench rule */
    double syops_pj;             /* (b), syops rule */
    double memory_pj;            /* (c)'s memory part */
    double memory_aware_pj;      /* (c) = compute_pj + memory_pj */
} snn_energy;

/* Fills out (free with snn_energy_free) from the model's op table and the evaluation counts
 * e->ops, e->pop_t_count and e->n (a zero n is treated as one sample). */
void snn_energy_compute(const snn_model *m, const snn_eval *e, snn_energy *out);
void snn_energy_free(snn_energy *en);

/* NeuroBench's metrics (methods.md 7.3), with their meanings:
 *   Footprint            bytes of every parameter and buffer (BatchNorm statistics, PLIF w),
 *                        at energy.weight_bits per value
 *   ConnectionSparsity   zero weights / all weights of the connection layers (every 2-D
 *                        ".weight" tensor: embed, q, k, v, o, fc1, fc2, head, cat's a, primal's c)
 *   ActivationSparsity   zero activations / all activations over every spiking population,
 *                        timestep and sample = 1 - spikes / neuron updates (NaN for ANN models:
 *                        the dense pass does not count zero activations)
 *   SynapticOperations   per sample, over the connection layers only (embed, linear, head; not
 *                        the attention kernels, which NeuroBench does not see): Effective_MACs,
 *                        Effective_ACs (the counted events; +-1 inputs are ACs) and Dense (every
 *                        position of each executed layer: dense_macs times its executions)
 *   MembraneUpdates      neuron updates per sample
 * Effective counts include synapses whose weight is zero (NeuroBench skips them): the two agree
 * when ConnectionSparsity is 0. */
typedef struct snn_metrics {
    double footprint_bytes;
    uint64_t weights_total, weights_zero;
    double connection_sparsity;
    double activation_sparsity;
    double *activation_sparsity_by_pop;  /* [n_pops] */
    double effective_macs, effective_acs, dense;
    double membrane_updates;
} snn_metrics;

void snn_metrics_compute(const snn_model *m, const snn_eval *e, snn_metrics *out);
void snn_metrics_free(snn_metrics *mt);

#endif
