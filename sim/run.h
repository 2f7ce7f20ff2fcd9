/*
 * run.h: one simulation run, from a resolved config to a committed HDF5 file.
 */
#ifndef SNN_RUN_H
#define SNN_RUN_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "datasets/dataset.h"
#include "sim/config.h"
#include "sim/output.h"

typedef struct snn_run_opts {
    const char *out_path;    /* NULL: cfg->output.path, else runs/<name>.h5 */
    int threads;             /* 0: OpenMP default */
    bool dense;              /* benchmark baseline */
    bool progress;
    FILE *log;               /* human-readable summary; NULL for silence */
    bool distributed;        /* every rank of an MPI job calls snn_run: training is data
                              * parallel over them (snn_train_opts), rank 0 alone evaluates
                              * and writes files; no effect in a one-rank job */
    const char *command;     /* the command line, for the resume hint after an interrupt */
    const char *config_path; /* named in the memory refusal (NULL: the config's name) */
    uint64_t max_memory;     /* --max-memory in bytes; 0: only MemAvailable limits */
} snn_run_opts;

/* The bytes a run will allocate, planned from the config and the initialised model before
 * anything big is allocated: the model (parameters, neuron state), the training buffers (the
 * trainer's minibatch plan, gradients, AdamW moments, best parameters), the datasets (pixels,
 * labels, indices; the training split twice: loaded, then split) and the outputs (logits,
 * recordings, counts). Small per-thread workspaces and the libraries are not counted. */
typedef struct snn_mem_plan {
    uint64_t model, training, datasets, recording, total;
} snn_mem_plan;

void snn_run_plan_memory(const snn_config *cfg, snn_model *m, snn_mem_plan *p);

/* "512 bytes", "88.2 MiB", "2 GiB" (binary units). */
void snn_format_bytes(uint64_t n, char *buf, size_t size);

/* Loads the evaluation split named by the config (IDX directory or synthetic). */
int snn_run_load_data(const snn_config *cfg, snn_dataset *ds, snn_err *err);

/* Runs the simulation and writes the run file atomically. First refuses (SNN_ERR, nothing
 * written) a run whose snn_mem_plan exceeds max_memory or MemAvailable:
 *   "fmnist.yaml needs 1.9 GiB (model 5 MiB, training buffers 1.2 GiB, datasets 0.5 GiB,
 *    outputs 12 MiB); --max-memory is 1 GiB"
 * Returns SNN_OK, or SNN_ERR with a one-line message in err; *is_config_error tells the caller to exit with code 2 rather
 * than 1 (the dataset contradicts the config). SNN_INTERRUPTED: training was stopped by
 * SIGINT/SIGTERM, a resumable checkpoint is saved, err says how to resume, no run file. */
int snn_run(const snn_config *cfg, const snn_run_opts *opts, snn_summary *summary,
            bool *is_config_error, snn_err *err);

#endif
