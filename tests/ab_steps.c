/*
 * ab_steps.c: two variants of the code timed step by step in one process (a profiling aid, not
 * a test). Put the variant to measure behind `getenv("SNN_AB")` where the code decides (read per
 * call, not cached), build, then run this: it takes training steps of CONFIG with SNN_AB unset
 * (A) and set (B) alternately, PAIRS of each after three warm-up steps, and prints both
 * medians, B/A and how many pairs B won. On a shared machine whose speed drifts by a third
 * within minutes, neighbouring steps see the same spell, so a 1-2 % difference shows in B/A
 * where separate runs of two binaries cannot tell it apart.
 *
 *   gcc -O2 -fopenmp -I. $(pkg-config --cflags hdf5-serial) tests/ab_steps.c build/libspikesim.a \
 *       $(pkg-config --libs hdf5-serial yaml-0.1 zlib openblas fftw3 libxsmm) -lhdf5_hl -lm \
 *       -o build/ab_steps
 *   build/ab_steps configs/bench_cat.yaml 2 150        # CONFIG THREADS PAIRS
 *
 * The order alternates pair by pair (A B, B A, ...). Both variants update the same parameters:
 * what is timed is the step, not training. docs/benchmarking.md, "Two variants, step by step".
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "sim/config.h"
#include "sim/model.h"
#include "sim/optim.h"
#include "sim/run.h"
#include "sim/train.h"
#include "sim/util.h"

static int by_value(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s CONFIG THREADS PAIRS\n", argv[0]);
        return 2;
    }
    snn_config cfg;
    if (snn_config_load_file(&cfg, argv[1], NULL, 0, stderr)) return 2;
    const int threads = atoi(argv[2]), pairs = atoi(argv[3]);
    if (threads < 1 || pairs < 1) {
        fprintf(stderr, "%s: THREADS and PAIRS must be at least 1\n", argv[0]);
        return 2;
    }
    snn_err err;
    snn_dataset ds = {0};
    snn_model m;
    if (snn_run_load_data(&cfg, &ds, &err) || snn_model_init(&m, &cfg, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    omp_set_num_threads(threads); /* before the trainer: it sizes its per-thread scratch */
    const int B = cfg.train.batch_size;
    snn_trainer *tr = snn_trainer_new(&m, B, false);
    snn_adamw opt;
    snn_adamw_init(&opt, m.n_params, cfg.train.weight_decay);
    uint8_t *mask = snn_decay_mask(&m);
    int32_t *labels = malloc((size_t)B * sizeof *labels);
    double *ta = malloc((size_t)pairs * sizeof *ta), *tb = malloc((size_t)pairs * sizeof *tb);
    if (!labels || !ta || !tb) return 1;
    for (int b = 0; b < B; b++) labels[b] = ds.labels[b];
    int64_t step = 0;
    for (int w = 0; w < 3; w++)
        snn_fit_step(tr, &opt, mask, ds.pixels, ds.index, labels, B, step++, 1000, 100, NULL,
                     NULL, NULL);
    int wins = 0;
    for (int p = 0; p < pairs; p++) {
        for (int k = 0; k < 2; k++) {
            const int b_variant = (p + k) & 1;
            if (b_variant)
                setenv("SNN_AB", "1", 1);
            else
                unsetenv("SNN_AB");
            const double t0 = snn_now();
            snn_fit_step(tr, &opt, mask, ds.pixels, ds.index, labels, B, step++, 1000, 100, NULL,
                         NULL, NULL);
            (b_variant ? tb : ta)[p] = snn_now() - t0;
        }
        wins += tb[p] < ta[p];
    }
    qsort(ta, (size_t)pairs, sizeof *ta, by_value);
    qsort(tb, (size_t)pairs, sizeof *tb, by_value);
    printf("%s, %d thread%s, %d pairs: A median %.2f ms, B median %.2f ms, B/A %.3f, B faster "
           "in %d of %d pairs\n",
           argv[1], threads, threads > 1 ? "s" : "", pairs, 1e3 * ta[pairs / 2],
           1e3 * tb[pairs / 2], tb[pairs / 2] / ta[pairs / 2], wins, pairs);
    return 0;
}
