/*
 * output.h: the run file (docs/hdf5-layout.md documents every path with its units).
 */
#ifndef SNN_OUTPUT_H
#define SNN_OUTPUT_H

#include "sim/config.h"
#include "sim/energy.h"
#include "sim/eval.h"
#include "sim/h5io.h"
#include "sim/model.h"

/* Headline figures of a run, also printed by the CLI. */
typedef struct snn_summary {
    double accuracy;             /* fraction */
    int64_t samples;
    double sops_per_sample;      /* ACs */
    double macs_per_sample;
    double energy_pj_per_sample; /* (b): sum over layers and op classes of counts x pJ */
    /* the other energy figures of sim/energy.h, pJ / sample */
    double paper_pj_per_sample;        /* (a), first layer once */
    double paper_T_pj_per_sample;      /* (a), first layer times T */
    double syops_pj_per_sample;        /* (b) under the syops rule (ternary-input ACs as MACs) */
    double memory_pj_per_sample;       /* (c)'s memory traffic */
    double memory_aware_pj_per_sample; /* (c) = (b) + memory traffic */
    double firing_rate_mean;     /* spikes / neuron updates over every population */
    double wall_seconds;
} snn_summary;

void snn_summarize(const snn_model *m, const snn_eval *e, snn_summary *s);

/* Writes the whole run into h (created by the caller with snn_h5_create; the caller commits or
 * aborts). config_yaml is the resolved config text. */
int snn_output_write(snn_h5 *h, const snn_model *m, const snn_eval *e, const char *config_yaml,
                     snn_err *err);

#endif
