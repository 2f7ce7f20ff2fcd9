/* bench.h: `spikesim bench CONFIG`: inference and training speed, memory and synaptic
 * operations of one model (sim/bench.c); `spikesim bench-attention`: every attention kernel
 * alone (sim/bench_attn.c). Timing only: never part of `make test` (the deterministic helpers
 * below are tested in tests/test_bench.c). */
#ifndef SNN_BENCH_H
#define SNN_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "sim/config.h"
#include "sim/util.h"

/* Which figures `spikesim bench` measures: all of them, or only the timings of one phase (what
 * `make bench` repeats, interleaved with the PyTorch reference, to take medians). */
typedef enum snn_bench_phase {
    SNN_BENCH_ALL = 0,
    SNN_BENCH_INFER, /* batch-1 latency and inference throughput (no memory, no levels) */
    SNN_BENCH_TRAIN, /* training throughput (no memory, no levels) */
} snn_bench_phase;

typedef struct snn_bench_opts {
    int threads;           /* 0: OpenMP default (all cores) */
    bool rate_levels;      /* also run the model at two firing-rate levels (spiking models) */
    snn_bench_phase phase; /* SNN_BENCH_ALL unless --phase */
} snn_bench_opts;

/* Prints the benchmark of cfg's model on its dataset to stdout (docs: the comment at the top of
 * sim/bench.c). Returns SNN_OK, or SNN_ERR with a one-line message (data, weights, fork). */
int snn_bench(const snn_config *cfg, const snn_bench_opts *opts, snn_err *err);

/* `spikesim bench-attention`: each attention kernel alone (sim/bench_attn.c) for N = 64, 128,
 * ..., max_n at heads x d, forward and forward + backward times and fitted growth exponents,
 * printed to out. */
int snn_bench_attention(int max_n, int d, int heads, int primal_s, FILE *out);

/* ---- helpers ------------------------------------------------------------------------------ */

/* Least-squares line y = slope * x + intercept through n >= 2 points x [n], y [n] whose x are
 * not all equal. Returns the largest |y - (slope x + intercept)| over the points. */
double snn_bench_linfit(const double *x, const double *y, int n, double *slope,
                        double *intercept);

/* Resets this process's peak resident set size (VmHWM) to its current size, by writing "5" to
 * /proc/self/clear_refs (Linux >= 4.0), so that the next snn_bench_rss peak is that of what
 * runs in between. Returns SNN_OK, or SNN_ERR when the file cannot be written. */
int snn_bench_reset_peak_rss(snn_err *err);

/* This process's resident set size now (VmRSS) and its peak since the start or the last reset
 * (VmHWM), in bytes, from /proc/self/status. Returns SNN_OK, or SNN_ERR if unreadable. */
int snn_bench_rss(size_t *current, size_t *peak, snn_err *err);

/* The number of a "Key:  1234 kB" line in /proc/<pid>/status text, in kB; -1 when no line
 * starts with key followed by ':'. */
int64_t snn_bench_status_kib(const char *status, const char *key);

#endif
