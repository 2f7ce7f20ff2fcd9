/*
 * inspect.h: looking at run files without Python (docs/inspect.md).
 *
 *   spikesim inspect RUN.h5                                   summary, populations, tree
 *   spikesim raster RUN.h5 --population P [--sample i] -o FILE.svg   spike raster
 *   spikesim rates RUN.h5 -o FILE.svg                         firing-rate heatmap
 *
 * All three only read the HDF5 file (docs/hdf5-layout.md) and take what is there: inspect
 * works on any HDF5 file (run, checkpoint, golden file), skipping groups that are missing.
 * The SVG files are self-contained (no scripts, no external references) and written
 * atomically: a temporary name in the destination directory, renamed when complete, so a
 * failure leaves no file and an existing one untouched.
 *
 * Errors are one line in snn_err ("run.h5: cannot open: No such file or directory").
 */
#ifndef SNN_INSPECT_H
#define SNN_INSPECT_H

#include <stdbool.h>
#include <stdio.h>

#include "sim/util.h"

/* Prints the summary block (root and /summary attributes, model line from /config, ops per
 * sample by class, training history, one line per population in forward order) and then the
 * tree of the file (shape, dtype and `units` of every dataset) to out. Fails only when the
 * file cannot be opened as HDF5; unreadable objects are noted inline. */
int snn_inspect_print(const char *path, FILE *out, snn_err *err);

/* Writes an SVG raster of /nodes/<population>/observables/spikes/data[sample]: x = timestep
 * (one column per step), y = neuron index, one <rect class="spike-pos"> per +1 spike and one
 * <rect class="spike-neg"> per -1 spike. An unknown population or a sample out of range fails
 * with *usage_error set (exit code 2); a run without populations fails without it. */
int snn_inspect_raster(const char *path, const char *population, long long sample,
                       const char *svg_path, bool *usage_error, snn_err *err);

/* Writes an SVG heatmap of /nodes/<population>/stats/firing_rate_per_step: one row per
 * population in forward order (the order of the /ops `layers` attribute; populations missing
 * from it follow in name order), one <rect class="cell"> per (population, timestep) with its
 * value as text, and a colour bar. A run without populations (ANN) fails. */
int snn_inspect_rates(const char *path, const char *svg_path, snn_err *err);

/* The three commands as the CLI runs them: argv[1] is "inspect", "raster" or "rates". Prints
 * errors as "spikesim: error: ..." and returns the exit code (0 ok, 1 I/O, 2 usage). usage is
 * printed after argument errors and for --help. */
int snn_inspect_cli(int argc, char **argv, const char *usage);

#endif
