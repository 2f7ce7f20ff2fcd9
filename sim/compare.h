/*
 * compare.h: `spikesim compare CONFIG [-o DIR]`, several runs side by side (docs/compare.md).
 *
 * A compare config (YAML) lists runs: explicit run configs (`runs`), and/or one `base` config
 * with a `grid` of overrides whose cartesian product gives one run per point. `set` overrides
 * apply to every run. Loading expands the grid and validates every run's config exactly as
 * `spikesim validate` would; with `skip_invalid: true` grid points the validator rejects are
 * kept in the list, marked skipped with the reason, and reported instead of being errors.
 *
 * Executing runs every non-skipped run into DIR/<name>.h5 (training when its train.epochs > 0),
 * reusing what is already there:
 *   1. DIR/<name>.h5 exists and its /config is the run's resolved config (or the resolved
 *      config of rule 2's evaluation): reused, nothing is run;
 *   2. train.epochs > 0 and DIR/<name>.best.h5 exists with /config equal to the run's resolved
 *      config (a training that was interrupted, or whose evaluation was): the best checkpoint is
 *      evaluated (model.weights = it, train.epochs = 0), no training;
 *   3. otherwise the run is simulated (and trained) from scratch.
 * Then it reads every run file back and writes DIR/summary.csv, DIR/summary.json,
 * DIR/report.md and DIR/report.html (each atomically).
 */
#ifndef SNN_COMPARE_H
#define SNN_COMPARE_H

#include <stdbool.h>
#include <stdio.h>

#include "sim/util.h"

typedef struct snn_compare_run {
    char *name;          /* run name: file DIR/<name>.h5 */
    char *config;        /* the run config file (base or an entry of `runs`) */
    char **sets;         /* "key.path=value" overrides: `set` first, then the grid point */
    int n_sets;
    char *point;         /* grid point as "key=value, key=value" (NULL for explicit runs) */
    bool skipped;        /* rejected by the validator, skip_invalid: true */
    char *skip_reason;   /* the validator's first message */
} snn_compare_run;

typedef struct snn_compare {
    char *path;          /* the compare config file */
    char *name;          /* compare name (default: the file name without .yaml) */
    char *base;          /* NULL when there is no base */
    bool skip_invalid;
    snn_compare_run *runs;  /* grid points (first axis outermost), then explicit runs */
    int n_runs;             /* including skipped ones */
} snn_compare;

/* Loads and expands the compare config at path. Every problem is printed to diag (may be NULL)
 * as one line, `file:line:col: error: message` (a run config's own diagnostics keep their
 * form); returns the number of errors. c must be freed with snn_compare_free either way. */
int snn_compare_load(snn_compare *c, const char *path, FILE *diag);
void snn_compare_free(snn_compare *c);

typedef struct snn_compare_opts {
    const char *dir;     /* output directory (created when missing) */
    int threads;         /* 0: OpenMP default */
    bool dry_run;        /* decide and log what each run would do; run and write nothing */
    FILE *log;           /* one line per run; NULL for silence */
    bool distributed;    /* every rank of an MPI job calls snn_compare_execute: live run k
                          * (0-based, skipped runs not counted) runs on rank k mod P, each
                          * in one process, into DIR (which every rank must see: a shared
                          * file system across nodes); rank 0 makes DIR, writes the reports
                          * and does a dry run alone. No effect in a one-rank job */
} snn_compare_opts;

/* What executing did (or, in a dry run, would do), per rule above. */
typedef struct snn_compare_stats {
    int trained, simulated, from_checkpoint, reused, skipped;
} snn_compare_stats;

/* Runs (or reuses) every run, then writes the reports. Stops at the first failing run
 * (runs finished before it stay and are reused next time). *is_config_error as in snn_run. */
int snn_compare_execute(const snn_compare *c, const snn_compare_opts *o, snn_compare_stats *st,
                        bool *is_config_error, snn_err *err);

/* Reads DIR/<name>.h5 of every non-skipped run and writes the four report files. */
int snn_compare_report(const snn_compare *c, const char *dir, snn_err *err);

/* `spikesim compare CONFIG [-o DIR] [--threads N] [--quiet] [--dry-run]` as the CLI runs it (argv[1] is
 * "compare"); returns the exit code (0 ok, 1 runtime or I/O, 2 usage or config). */
int snn_compare_cli(int argc, char **argv, const char *usage);

#endif
