/* bench.h: `spikesim bench CONFIG`: inference speed of the event-driven engine against the
 * same model run densely. Timing only: never part of `make test`. */
#ifndef SNN_BENCH_H
#define SNN_BENCH_H

#include <stdio.h>

#include "sim/config.h"
#include "sim/util.h"

int snn_bench(const snn_config *cfg, int threads, snn_err *err);

/* `spikesim bench-attention`: each attention kernel alone (sim/bench_attn.c) for N = 64, 128,
 * ..., max_n at heads x d, forward and forward + backward times and fitted growth exponents,
 * printed to out. */
int snn_bench_attention(int max_n, int d, int heads, int primal_s, FILE *out);

#endif
