/*
 * bench.c: measures, for one config,
 *   - latency at batch 1 (one sample at a time, one thread),
 *   - throughput over the whole evaluation set with every thread,
 *   - ACs per second (synaptic events the engine processed),
 *   - the same model run densely (every spike position multiplied, BLAS sgemm) for comparison.
 * Each figure is the best of 3 repetitions (the least disturbed by the rest of the machine).
 */
#include "sim/bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "sim/eval.h"
#include "sim/model.h"
#include "sim/run.h"
#include "sim/train.h"

static double best_eval(const snn_model *m, const snn_dataset *ds, int threads, bool dense,
                        uint64_t *acs, uint64_t *macs, double *acc) {
    double best = 1e300;
    for (int rep = 0; rep < 3; rep++) {
        snn_eval e;
        snn_eval_opts o = {.threads = threads, .dense = dense};
        snn_evaluate(m, ds, &o, &e);
        if (e.wall_seconds < best) best = e.wall_seconds;
        *acs = *macs = 0;
        for (int l = 0; l < m->n_layers; l++) {
            *acs += e.ops[l].n[SNN_OP_AC];
            *macs += e.ops[l].n[SNN_OP_MAC];
        }
        *acc = (double)e.correct / (double)e.n;
        snn_eval_free(&e, m);
    }
    return best;
}

/* Training throughput: forward + backward (no optimizer update, which is per step and tiny)
 * on minibatches of train.batch_size from the evaluation set, best of 3 runs of 4 steps. */
static void bench_training(snn_model *m, const snn_dataset *ds, int threads) {
    const int B = m->cfg->train.batch_size;
    if (ds->n < B) return;
    int32_t *labels = snn_xmalloc((size_t)B * sizeof *labels);
    for (int b = 0; b < B; b++) labels[b] = ds->labels[b];
    float *saved = snn_xmalloc(m->n_params * sizeof *saved);
    memcpy(saved, m->params, m->n_params * sizeof *saved); /* running stats move */
    double rate[2] = {0, 0};
    const int counts[2] = {1, threads};
    for (int c = 0; c < 2; c++) {
#ifdef _OPENMP
        omp_set_num_threads(counts[c]);
#else
        (void)counts;
#endif
        snn_trainer *tr = snn_trainer_new(m, B, false);
        double best = 1e300;
        for (int rep = 0; rep < 3; rep++) {
            double t0 = snn_now();
            for (int s = 0; s < 4; s++) {
                snn_trainer_zero_grads(tr);
                snn_trainer_step(tr, ds->pixels, ds->index, labels, B, true, true, NULL);
            }
            double t = snn_now() - t0;
            if (t < best) best = t;
        }
        rate[c] = 4.0 * B / best;
        if (c == 0)
            printf("  training (fwd+bwd)    : batch %d, %.1f MiB of buffers\n", B,
                   (double)snn_trainer_bytes(tr) / 1048576.0);
        snn_trainer_free(tr);
    }
#ifdef _OPENMP
    omp_set_num_threads(threads);
#endif
    printf("  training throughput   : %8.1f samples/s on %d thread%s (1 thread: %.1f samples/s, "
           "scaling x%.2f)\n", rate[1], threads, threads > 1 ? "s" : "", rate[0], rate[1] / rate[0]);
    memcpy(m->params, saved, m->n_params * sizeof *saved);
    snn_model_fold(m);
    free(saved);
    free(labels);
}

int snn_bench(const snn_config *cfg, int threads, snn_err *err) {
    snn_dataset ds = {0};
    snn_model m;
    if (snn_run_load_data(cfg, &ds, err) != SNN_OK) return SNN_ERR;
    if (snn_model_init(&m, cfg, err) != SNN_OK) {
        snn_dataset_free(&ds);
        return SNN_ERR;
    }
    int all = threads;
#ifdef _OPENMP
    if (all <= 0) all = omp_get_max_threads();
#else
    all = 1;
#endif
    printf("spikesim bench: %s (attention %s, T=%d, N=%d, D=%d, heads=%d, blocks=%d, %zu params, "
           "%lld samples, %s weights)\n",
           cfg->name, snn_attn_kind_name(cfg->model.attention.kind), m.T, m.N, m.D, m.heads, m.L,
           snn_model_param_count(&m), (long long)ds.n, cfg->model.weights ? cfg->model.weights : "random");

    /* Batch 1: a dataset view of the first 200 samples, one thread. */
    snn_dataset one = ds;
    if (one.n > 200) one.n = 200;
    uint64_t acs, macs, acs_d, macs_d;
    double acc, acc_d;
    double t1 = best_eval(&m, &one, 1, false, &acs, &macs, &acc);
    double t1d = best_eval(&m, &one, 1, true, &acs_d, &macs_d, &acc_d);
    printf("  batch 1, 1 thread     : %8.1f samples/s  (%.3f ms/sample); dense: %8.1f samples/s "
           "(%.3f ms/sample); event-driven speed-up x%.2f\n",
           (double)one.n / t1, 1e3 * t1 / (double)one.n, (double)one.n / t1d,
           1e3 * t1d / (double)one.n, t1d / t1);

    double tn1 = best_eval(&m, &ds, 1, false, &acs, &macs, &acc);
    double tn = best_eval(&m, &ds, all, false, &acs, &macs, &acc);
    double tnd = best_eval(&m, &ds, all, true, &acs_d, &macs_d, &acc_d);
    printf("  throughput, %d thread%s: %8.1f samples/s  (1 thread: %.1f samples/s, scaling x%.2f)\n",
           all, all > 1 ? "s" : " ", (double)ds.n / tn, (double)ds.n / tn1, tn1 / tn);
    printf("  synaptic events       : %.3g ACs/sample, %.3g ACs/s; MACs %.3g/sample\n",
           (double)acs / (double)ds.n, (double)acs / tn, (double)macs / (double)ds.n);
    printf("  dense baseline        : %8.1f samples/s, %.3g MACs/sample; event-driven is x%.2f "
           "faster (accuracy %.2f%% event-driven, %.2f%% dense)\n",
           (double)ds.n / tnd, (double)macs_d / (double)ds.n, tnd / tn, 100 * acc, 100 * acc_d);
    if (cfg->model.residual == SNN_RESIDUAL_MS) bench_training(&m, &ds, all);
    snn_model_free(&m);
    snn_dataset_free(&ds);
    return SNN_OK;
}
