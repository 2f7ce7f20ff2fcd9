/* bench.h: `spikesim bench CONFIG`: inference speed of the event-driven engine against the
 * same model run densely. Timing only: never part of `make test`. */
#ifndef SNN_BENCH_H
#define SNN_BENCH_H

#include "sim/config.h"
#include "sim/util.h"

int snn_bench(const snn_config *cfg, int threads, snn_err *err);

#endif
