/*
 * run.h: one simulation run, from a resolved config to a committed HDF5 file.
 */
#ifndef SNN_RUN_H
#define SNN_RUN_H

#include <stdbool.h>
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
} snn_run_opts;

/* Loads the evaluation split named by the config (IDX directory or synthetic). */
int snn_run_load_data(const snn_config *cfg, snn_dataset *ds, snn_err *err);

/* Runs the simulation and writes the run file atomically. Returns SNN_OK, or SNN_ERR with a
 * one-line message in err; *is_config_error tells the caller to exit with code 2 rather
 * than 1 (the dataset contradicts the config). */
int snn_run(const snn_config *cfg, const snn_run_opts *opts, snn_summary *summary,
            bool *is_config_error, snn_err *err);

#endif
