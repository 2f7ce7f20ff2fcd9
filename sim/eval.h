/*
 * eval.h: evaluation of a model over a dataset, with spike recording and statistics.
 *
 * Samples are independent, so OpenMP parallelises over them: each thread owns a workspace and
 * writes only its samples' rows of the outputs. Counters are integers summed in thread order,
 * so every output is byte-identical for any thread count.
 */
#ifndef SNN_EVAL_H
#define SNN_EVAL_H

#include <stdbool.h>
#include <stdint.h>

#include "datasets/dataset.h"
#include "sim/model.h"

typedef struct snn_eval_opts {
    int64_t n_record;    /* record spikes of the first n_record samples */
    bool record_v;       /* also record post-reset membranes */
    bool dense;          /* run synaptic layers densely (benchmark baseline) */
    int threads;         /* 0 = OpenMP default; ANN models: threads inside each layer */
    bool progress;       /* progress on stderr */
    int ann_batch;       /* ANN models: minibatch size (0 = 64); spiking models always run one
                          * sample at a time per thread */
    bool time_synaptic;  /* accumulate the wall time of the event-driven synaptic layers into
                          * synaptic_seconds (benchmark; off: no clock is read) */
} snn_eval_opts;

typedef struct snn_eval {
    int64_t n;               /* samples evaluated */
    int classes;
    float *logits;           /* [n, classes] */
    int32_t *pred;           /* [n] argmax of logits (first maximum) */
    int32_t *labels;         /* [n] */
    int64_t *sample_index;   /* [n] index in the dataset file */
    int64_t correct;
    int64_t n_record;        /* samples actually recorded */
    int8_t **rec_spikes;     /* [n_pops] -> [n_record, T, size] */
    float **rec_v;           /* [n_pops] -> [n_record, T, size], or NULL */
    float *rec_embed;        /* [n_record, N, D] embedding U0 (direct encoding) */
    snn_ops *ops;            /* [n_layers] summed over samples */
    uint64_t *pop_t_count;   /* [n_pops, T] spikes summed over samples */
    uint64_t *neuron_count;  /* [state_size] spikes per neuron over t and samples */
    double wall_seconds;
    double synaptic_seconds; /* time_synaptic: seconds in the synaptic layers (bit planes and
                              * row accumulation of q k v o fc1 fc2, and of a rate-coded
                              * embedding), summed over threads; else 0 */
    int threads;
} snn_eval;

void snn_evaluate(const snn_model *m, const snn_dataset *ds, const snn_eval_opts *opts,
                  snn_eval *out);
void snn_eval_free(snn_eval *e, const snn_model *m);

#endif
