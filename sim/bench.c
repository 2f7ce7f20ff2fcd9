/*
 * bench.c: `spikesim bench CONFIG`: what one model costs on this machine, one figure per line:
 *   - peak resident memory (RSS) of inference and of training: this process's VmHWM, reset
 *     before each phase, so each peak counts what the process holds (binary, libraries, data,
 *     model) plus what the phase adds;
 *   - latency at batch 1 (one sample at a time, one thread); for spiking models also with the
 *     synaptic layers run densely through BLAS, the event-driven engine's baseline;
 *   - inference throughput with every thread and with one (the scaling ratio);
 *   - synaptic operations per second: NeuroBench's SynapticOperations, Effective_ACs for a
 *     spiking model, Effective_MACs for an ANN, per sample times the throughput;
 *   - training throughput (snn_fit_step: forward, backward, clipping, AdamW, as a training run
 *     does) at one and at every thread;
 *   - the training buffers as a function of T: BPTT keeps every timestep's activations, so they
 *     are a + b T; b and a are fitted over T = 1, 2, 4, 8 from the trainer's own plan;
 *   - with --rate-levels (spiking models): the model at its firing rate, at half of it and with
 *     no spike, the time of its synaptic layers at each, and the line through them (time
 *     against ACs: what the layers pay whatever the rate, and per event).
 * Every spiking figure carries the firing rate (spikes / neuron updates over every population) of
 * the run it comes from: with random weights that is not a trained model's rate, and the
 * event-driven engine's speed follows it.
 * Each time is the best of a few repetitions (the least disturbed by the rest of the machine);
 * the output states the repetitions and sample counts. `--phase infer` or `--phase train`
 * measures only that phase's timings, which `make bench` (tests/bench.sh) repeats in rounds
 * interleaved with the PyTorch reference's, so that a slow spell of the machine lands on both.
 */
#include "sim/bench.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "sim/energy.h"
#include "sim/eval.h"
#include "sim/layers.h"
#include "sim/model.h"
#include "sim/optim.h"
#include "sim/run.h"
#include "sim/train.h"

/* Sample counts and repetitions: small enough that `make bench` over five models stays within
 * minutes on two cores, large enough that each timed run lasts about a second or more. */
enum {
    BATCH1_SAMPLES = 200,  /* batch-1 latency */
    RSS_SAMPLES = 200,     /* the inference phase of the memory measurement */
    LEVEL_SAMPLES = 250,   /* each firing-rate level */
    SEARCH_SAMPLES = 200,  /* each step of the search for the lower level */
    REPS = 3,              /* repetitions of a throughput run (2000 samples) */
    REPS_SHORT = 3,        /* repetitions of a short run (batch 1, training) */
    REPS_LEVELS = 15,      /* rounds of the three firing-rate levels, interleaved: many short
                            * rounds, so that each level's best meets a quiet spell */
    TRAIN_MIN_STEPS = 2,   /* optimizer steps per timed training run: at least, */
    TRAIN_MAX_STEPS = 40,  /* at most, and enough to last about TRAIN_RUN_SECONDS */
};
static const double TRAIN_RUN_SECONDS = 1.0;
/* The firing-rate levels' third gain: thresholds x100, where bsa fires no spike (0 ACs). */
static const double G_SILENT = 0.01;

static double mib(double bytes) { return bytes / 1048576.0; }

static void set_threads(int threads) {
#ifdef _OPENMP
    omp_set_num_threads(threads);
#else
    (void)threads;
#endif
}

/* ---- helpers (bench.h) ------------------------------------------------------------------- */

double snn_bench_linfit(const double *x, const double *y, int n, double *slope,
                        double *intercept) {
    SNN_ASSERT(n >= 2);
    /* centred sums: no cancellation when x or y are large (bytes) */
    double mx = 0.0, my = 0.0;
    for (int i = 0; i < n; i++) mx += x[i], my += y[i];
    mx /= n, my /= n;
    double sxx = 0.0, sxy = 0.0;
    for (int i = 0; i < n; i++) sxx += (x[i] - mx) * (x[i] - mx), sxy += (x[i] - mx) * (y[i] - my);
    SNN_ASSERT(sxx > 0.0);
    *slope = sxy / sxx;
    *intercept = my - *slope * mx;
    double worst = 0.0;
    for (int i = 0; i < n; i++) worst = fmax(worst, fabs(y[i] - (*slope * x[i] + *intercept)));
    return worst;
}

int snn_bench_reset_peak_rss(snn_err *err) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return snn_err_set(err, "/proc/self/clear_refs: cannot open for writing");
    const bool ok = fputs("5", f) >= 0;
    if (fclose(f) != 0 || !ok) return snn_err_set(err, "/proc/self/clear_refs: write refused");
    return SNN_OK;
}

int snn_bench_rss(size_t *current, size_t *peak, snn_err *err) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return snn_err_set(err, "/proc/self/status: cannot open");
    char buf[16384];
    const size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const int64_t rss = snn_bench_status_kib(buf, "VmRSS");
    const int64_t hwm = snn_bench_status_kib(buf, "VmHWM");
    if (rss < 0 || hwm < 0) return snn_err_set(err, "/proc/self/status: no VmRSS or VmHWM line");
    *current = (size_t)rss * 1024u;
    *peak = (size_t)hwm * 1024u;
    return SNN_OK;
}

int64_t snn_bench_status_kib(const char *status, const char *key) {
    const size_t n = strlen(key);
    for (const char *line = status; *line;) {
        if (strncmp(line, key, n) == 0 && line[n] == ':') {
            char *end;
            const long long v = strtoll(line + n + 1, &end, 10);
            return end == line + n + 1 ? -1 : (int64_t)v;
        }
        const char *nl = strchr(line, '\n');
        if (!nl) break;
        line = nl + 1;
    }
    return -1;
}

/* ---- inference --------------------------------------------------------------------------- */

typedef struct run_stats {
    double seconds;      /* best wall time of one pass */
    double syn_seconds;  /* best synaptic-layer time of one pass (time_synaptic), else 0 */
    double rate;         /* firing rate: spikes / neuron updates over every population */
    double acs, macs;    /* NeuroBench SynapticOperations Effective_ACs, Effective_MACs / sample */
    double accuracy;
} run_stats;

static run_stats best_eval(const snn_model *m, const snn_dataset *ds, const snn_eval_opts *o,
                           int reps) {
    run_stats r = {.seconds = 1e300, .syn_seconds = 1e300};
    for (int rep = 0; rep < reps; rep++) {
        snn_eval e;
        snn_evaluate(m, ds, o, &e);
        r.seconds = fmin(r.seconds, e.wall_seconds);
        r.syn_seconds = fmin(r.syn_seconds, e.synaptic_seconds);
        if (rep == 0) { /* the counts are the same every repetition */
            uint64_t spikes = 0, updates = 0;
            for (size_t j = 0; j < (size_t)m->n_pops * m->T; j++) spikes += e.pop_t_count[j];
            for (int l = 0; l < m->n_layers; l++) updates += e.ops[l].n[SNN_OP_NEURON];
            r.rate = updates ? (double)spikes / (double)updates : 0.0;
            snn_metrics mt;
            snn_metrics_compute(m, &e, &mt);
            r.acs = mt.effective_acs;
            r.macs = mt.effective_macs;
            snn_metrics_free(&mt);
            r.accuracy = e.n ? (double)e.correct / (double)e.n : 0.0;
        }
        snn_eval_free(&e, m);
    }
    return r;
}

/* "fr 0.159" for a spiking model, "" for an ANN (whose cost does not depend on activity). */
static const char *fr_text(const snn_model *m, double rate, char *buf, size_t n) {
    if (m->ann)
        buf[0] = '\0';
    else
        snprintf(buf, n, ", fr %.3f", rate);
    return buf;
}

/* ---- training ---------------------------------------------------------------------------- */

/* A timed training setup at one thread count: snn_fit_step on minibatches of train.batch_size
 * (the first samples of ds). The learning rate is the warm-up's first steps, so the parameters
 * barely move; the caller restores them anyway. */
typedef struct train_timer {
    int threads, steps, B;
    snn_trainer *tr;
    snn_adamw opt;
    uint8_t *mask;
    int32_t *labels; /* [B] */
    int64_t step;
    double best;     /* best seconds of a run of `steps` steps so far */
} train_timer;

static void train_timer_step(train_timer *t, const snn_dataset *ds) {
    snn_fit_step(t->tr, &t->opt, t->mask, ds->pixels, ds->index, t->labels, t->B, t->step++, 1000,
                 100, NULL, NULL, NULL);
}

/* Sets up the trainer, optimizer and labels for `threads`. */
static void train_timer_open(train_timer *t, snn_model *m, const snn_dataset *ds, int threads) {
    memset(t, 0, sizeof *t);
    t->threads = threads;
    t->B = m->cfg->train.batch_size;
    t->best = 1e300;
    set_threads(threads); /* the trainer sizes its per-thread scratch from it */
    t->tr = snn_trainer_new(m, t->B, false);
    snn_adamw_init(&t->opt, m->n_params, m->cfg->train.weight_decay);
    t->mask = snn_decay_mask(m);
    t->labels = snn_xmalloc((size_t)t->B * sizeof *t->labels);
    for (int b = 0; b < t->B; b++) t->labels[b] = ds->labels[b];
}

/* train_timer_open, one warm-up step (whose page faults are the buffers' first touch, not
 * training), then one timed step: a run takes as many steps as last about TRAIN_RUN_SECONDS
 * (TRAIN_MIN_STEPS to TRAIN_MAX_STEPS), since a run of 2 steps of 60 ms is at the mercy of one
 * scheduler hiccup. */
static void train_timer_init(train_timer *t, snn_model *m, const snn_dataset *ds, int threads) {
    train_timer_open(t, m, ds, threads);
    train_timer_step(t, ds);
    const double t0 = snn_now();
    train_timer_step(t, ds);
    const double t_step = snn_now() - t0;
    int steps = t_step > 0.0 ? (int)ceil(TRAIN_RUN_SECONDS / t_step) : TRAIN_MAX_STEPS;
    t->steps = steps < TRAIN_MIN_STEPS   ? TRAIN_MIN_STEPS
               : steps > TRAIN_MAX_STEPS ? TRAIN_MAX_STEPS
                                         : steps;
}

/* One timed run of t->steps steps; keeps the best. */
static void train_timer_run(train_timer *t, const snn_dataset *ds) {
    set_threads(t->threads);
    const double t0 = snn_now();
    for (int s = 0; s < t->steps; s++) train_timer_step(t, ds);
    t->best = fmin(t->best, snn_now() - t0);
}

static double train_timer_rate(const train_timer *t) { return (double)t->steps * t->B / t->best; }

static void train_timer_free(train_timer *t) {
    free(t->labels);
    free(t->mask);
    snn_adamw_free(&t->opt);
    snn_trainer_free(t->tr);
}

/* ---- peak memory ------------------------------------------------------------------------- */

typedef struct phase_ctx {
    snn_model *m;
    const snn_dataset *ds;
    int threads;
} phase_ctx;

static void phase_infer(const phase_ctx *c) {
    snn_eval e;
    snn_eval_opts o = {.threads = c->threads};
    snn_evaluate(c->m, c->ds, &o, &e);
    snn_eval_free(&e, c->m);
}

/* One training step as a training run takes it: trainer, optimizer state, forward, backward,
 * update. The parameters (and BatchNorm running statistics) are restored afterwards. */
static void phase_train(const phase_ctx *c) {
    float *saved = snn_xmalloc(c->m->n_params * sizeof *saved); /* [n_params] */
    memcpy(saved, c->m->params, c->m->n_params * sizeof *saved);
    train_timer t;
    train_timer_open(&t, c->m, c->ds, c->threads);
    train_timer_step(&t, c->ds);
    train_timer_free(&t);
    memcpy(c->m->params, saved, c->m->n_params * sizeof *saved);
    snn_model_fold(c->m);
    free(saved);
}

/* ---- firing-rate levels ------------------------------------------------------------------ */

/* Every neuron's input current times g, applied as thresholds / g: for LIF with v_reset 0 (the
 * default) and for soft reset the two give the same spikes, since the membrane scales with the
 * input. th0 [n_pops] holds the model's own thresholds. */
static void set_gain(snn_model *m, const float *th0, double g) {
    for (int p = 0; p < m->n_pops; p++) m->pops[p].np.v_threshold = (float)(th0[p] / g);
}

static double rate_at_gain(snn_model *m, const float *th0, const snn_dataset *ds, int threads,
                           double g) {
    set_gain(m, th0, g);
    snn_eval_opts o = {.threads = threads};
    const run_stats r = best_eval(m, ds, &o, 1);
    set_gain(m, th0, 1.0);
    return r.rate;
}

static void bench_rate_levels(snn_model *m, const snn_dataset *ds, int all) {
    float *th0 = snn_xmalloc((size_t)m->n_pops * sizeof *th0); /* [n_pops] */
    for (int p = 0; p < m->n_pops; p++) th0[p] = m->pops[p].np.v_threshold;
    snn_dataset search = *ds, level = *ds;
    if (search.n > SEARCH_SAMPLES) search.n = SEARCH_SAMPLES;
    if (level.n > LEVEL_SAMPLES) level.n = LEVEL_SAMPLES;

    /* Scaling the pixels is the obvious way to lower the rate: measure what it does. */
    const size_t pix = (size_t)ds->channels * ds->height * ds->width;
    snn_dataset dim = search;
    dim.pixels = snn_xmalloc((size_t)search.n * pix); /* [search.n, C, H, W] */
    for (size_t i = 0; i < (size_t)search.n * pix; i++)
        dim.pixels[i] = (uint8_t)((ds->pixels[i] + 1) / 2); /* round(p / 2) */
    snn_eval_opts o = {.threads = all};
    const double fr_full = best_eval(m, &search, &o, 1).rate;
    const double fr_dim = best_eval(m, &dim, &o, 1).rate;
    free(dim.pixels);

    /* The lower level: the gain whose rate is closest to half the model's, by bisection. */
    const double target = fr_full / 2;
    double lo = 0.2, hi = 1.0, g_half = 1.0, closest = 1e300;
    for (int it = 0; it < 7; it++) {
        const double g = (lo + hi) / 2, fr = rate_at_gain(m, th0, &search, all, g);
        if (fabs(fr - target) < closest) closest = fabs(fr - target), g_half = g;
        if (fr > target)
            hi = g;
        else
            lo = g;
    }
    printf("  firing-rate levels    : pixels x0.5 move the rate from %.3f to %.3f (%d samples), so "
           "the levels scale every neuron's input current by a gain g (as thresholds / g); "
           "g for half the rate found by bisection; %lld samples, 1 thread, best of %d rounds "
           "(each round runs all three levels, so a slow spell of the machine hits all)\n",
           fr_full, fr_dim, (int)search.n, (long long)level.n, REPS_LEVELS);
    /* and a third with (almost) no spike: what the layers cost whatever the rate */
    const double gains[3] = {1.0, g_half, G_SILENT};
    run_stats timed[3], plain[3];
    /* timed and untimed runs alternate, and so do the levels */
    snn_eval_opts ot = {.threads = 1, .time_synaptic = true}, op = {.threads = 1};
    for (int rep = 0; rep < REPS_LEVELS; rep++)
        for (int i = 0; i < 3; i++) {
            set_gain(m, th0, gains[i]);
            const run_stats a = best_eval(m, &level, &ot, 1), b = best_eval(m, &level, &op, 1);
            if (rep == 0) timed[i] = a, plain[i] = b;
            timed[i].seconds = fmin(timed[i].seconds, a.seconds);
            timed[i].syn_seconds = fmin(timed[i].syn_seconds, a.syn_seconds);
            plain[i].seconds = fmin(plain[i].seconds, b.seconds);
        }
    const double n = (double)level.n;
    for (int i = 0; i < 3; i++) {
        printf("    g = %.3f: fr %.3f, %.3g ACs/sample, synaptic layers %.3f ms/sample of %.3f "
               "ms/sample (untimed run: %.3f ms/sample)\n",
               gains[i], timed[i].rate, timed[i].acs, 1e3 * timed[i].syn_seconds / n,
               1e3 * timed[i].seconds / n, 1e3 * plain[i].seconds / n);
    }
    set_gain(m, th0, 1.0);
    /* The timer's cost: two snn_ticks reads per timed span (model.c, multi-step: q, k and v
     * together, o, fc1, fc2 once per block over all T timesteps, and a rate-coded embedding
     * per timestep). */
    const bool rate_coded = m->cfg->data.encoding == SNN_ENCODING_RATE;
    const int reads = 2 * (4 * m->L + (rate_coded ? m->T : 0));
    volatile uint64_t sink; /* keeps the calls */
    const double c0 = snn_now();
    for (int i = 0; i < 100000; i++) sink = snn_ticks();
    (void)sink;
    const double per_read = (snn_now() - c0) / 100000;
    const double spikes = timed[1].acs / timed[0].acs;
    const double syn = timed[1].syn_seconds / timed[0].syn_seconds;
    printf("    lower level / model : fr x%.2f, ACs x%.2f, synaptic-layer time x%.2f (%.1f%% less; "
           "time ratio / ACs ratio %.2f), whole forward x%.2f\n",
           timed[1].rate / timed[0].rate, spikes, syn, 100 * (1 - syn), syn / spikes,
           timed[1].seconds / timed[0].seconds);
    /* How the time follows the spike count: a line through the three levels. Its intercept is
     * what the layers pay per token whatever the rate (each token's output row written), which
     * no fall in the rate removes: halving the spikes cuts the time by at most half the rest. */
    double acs[3], syn_ms[3], slope, fixed;
    for (int i = 0; i < 3; i++) acs[i] = timed[i].acs, syn_ms[i] = 1e3 * timed[i].syn_seconds / n;
    const double resid = snn_bench_linfit(acs, syn_ms, 3, &slope, &fixed);
    printf("    time against ACs    : synaptic layers = %.4f ms/sample + %.1f us per million ACs "
           "(least squares over the three levels, largest residual %.1f us/sample); the fixed "
           "part, paid with no spike, is %.0f%% of the model's level\n",
           fixed, 1e9 * slope, 1e3 * resid, 100 * fixed / syn_ms[0]);
    printf("    synaptic layers = weight-row accumulation of q, k, v, o, fc1, fc2 over spike bit "
           "planes (written by the neuron step where a token's spikes fill whole 64-bit words, "
           "else built by the layer); the timer reads the tick counter %d times per sample at "
           "%.0f ns = %.2f%% of the untimed forward (the timed runs' best total differs from the "
           "untimed one by %+.1f%% at g = 1)\n",
           reads, 1e9 * per_read, 100 * reads * per_read / (plain[0].seconds / (double)level.n),
           100 * (timed[0].seconds / plain[0].seconds - 1));
    free(th0);
}

/* ---- the benchmark ----------------------------------------------------------------------- */

/* ---- the phases of snn_bench ------------------------------------------------------------- */

/* Peak memory of one inference pass and one training step (before the timed runs leave anything
 * allocated). */
static void bench_memory(snn_model *m, const snn_dataset *ds, int all) {
    const int B = m->cfg->train.batch_size;
    snn_dataset few = *ds;
    if (few.n > RSS_SAMPLES) few.n = RSS_SAMPLES;
    phase_ctx pc = {.m = m, .ds = &few, .threads = all};
    size_t base = 0, peak_inf = 0, peak_train = 0, now = 0;
    snn_err rss_err = {{0}};
    bool rss_ok = snn_bench_rss(&base, &peak_inf, &rss_err) == SNN_OK &&
                  snn_bench_reset_peak_rss(&rss_err) == SNN_OK;
    if (rss_ok) {
        phase_infer(&pc);
        rss_ok = snn_bench_rss(&now, &peak_inf, &rss_err) == SNN_OK &&
                 snn_bench_reset_peak_rss(&rss_err) == SNN_OK;
    }
    if (rss_ok && ds->n >= B) {
        phase_train(&pc);
        rss_ok = snn_bench_rss(&now, &peak_train, &rss_err) == SNN_OK;
    }
    set_threads(all);
    if (rss_ok)
        printf("  peak RSS              : inference %.1f MiB (%d samples, %d thread%s), training "
               "%.1f MiB (one step, batch %d, %d thread%s); VmHWM reset before each phase, from "
               "%.1f MiB before them (binary, libraries, data, model)\n",
               mib((double)peak_inf), (int)few.n, all, all > 1 ? "s" : "", mib((double)peak_train),
               B, all, all > 1 ? "s" : "", mib((double)base));
    else
        printf("  peak RSS              : not measured (%s)\n", rss_err.msg);
}

/* Batch-1 latency, inference throughput on every thread and on one, synaptic operations. */
static void bench_inference(snn_model *m, const snn_dataset *ds, int all) {
    char fr[64];
    /* Batch 1: one sample at a time on one thread (an ANN runs minibatches of 1). */
    snn_dataset one = *ds;
    if (one.n > BATCH1_SAMPLES) one.n = BATCH1_SAMPLES;
    const double n1 = (double)one.n, n = (double)ds->n;
    snn_eval_opts o1 = {.threads = 1, .ann_batch = 1};
    const run_stats b1 = best_eval(m, &one, &o1, REPS_SHORT);
    printf("  batch 1, 1 thread     : %.3f ms/sample (%.1f samples/s; %d samples, best of %d%s)",
           1e3 * b1.seconds / n1, n1 / b1.seconds, (int)one.n, REPS_SHORT,
           fr_text(m, b1.rate, fr, sizeof fr));
    if (!m->ann) {
        snn_eval_opts od = {.threads = 1, .dense = true};
        const run_stats b1d = best_eval(m, &one, &od, REPS_SHORT);
        printf("; dense synaptic layers: %.3f ms/sample, event-driven x%.2f", 1e3 * b1d.seconds / n1,
               b1d.seconds / b1.seconds);
    }
    printf("\n");

    /* Throughput over the whole set: every thread and one, alternating run by run (as for
     * training). */
    snn_eval_opts on = {.threads = all}, o1t = {.threads = 1};
    run_stats tn = best_eval(m, ds, &on, 1), t1 = best_eval(m, ds, &o1t, 1);
    for (int rep = 1; rep < REPS; rep++) {
        tn.seconds = fmin(tn.seconds, best_eval(m, ds, &on, 1).seconds);
        t1.seconds = fmin(t1.seconds, best_eval(m, ds, &o1t, 1).seconds);
    }
    printf("  throughput, %d thread%s: %.1f samples/s (1 thread: %.1f samples/s, scaling x%.2f; "
           "%lld samples, best of %d%s%s, accuracy %.2f%%)\n",
           all, all > 1 ? "s" : " ", n / tn.seconds, n / t1.seconds, t1.seconds / tn.seconds,
           (long long)ds->n, REPS, m->ann ? ", minibatches of 64" : "",
           fr_text(m, tn.rate, fr, sizeof fr), 100 * tn.accuracy);
    if (m->ann)
        printf("  synaptic operations   : %.3g MACs/s on %d thread%s (NeuroBench SynapticOperations: "
               "an ANN's are MACs, Effective_MACs %.3g/sample)\n",
               tn.macs * n / tn.seconds, all, all > 1 ? "s" : "", tn.macs);
    else
        printf("  synaptic operations   : %.3g ACs/s on %d thread%s (NeuroBench SynapticOperations: "
               "a spiking model's are ACs, Effective_ACs %.3g/sample%s; besides, Effective_MACs "
               "%.3g/sample: the analog embedding and the head)\n",
               tn.acs * n / tn.seconds, all, all > 1 ? "s" : "", tn.acs,
               fr_text(m, tn.rate, fr, sizeof fr), tn.macs);
}

/* Training throughput on one thread and on every thread, and the training buffers (a + b T). */
static void bench_training(snn_model *m, const snn_dataset *ds, int all) {
    const int B = m->cfg->train.batch_size;
    float *saved = snn_xmalloc(m->n_params * sizeof *saved); /* [n_params] */
    memcpy(saved, m->params, m->n_params * sizeof *saved);
    /* 1 thread and every thread alternate run by run, so that a slow spell of the machine
     * lands on both and the scaling ratio compares like with like */
    train_timer t1, tn;
    train_timer_init(&t1, m, ds, 1);
    train_timer_init(&tn, m, ds, all);
    for (int rep = 0; rep < REPS_SHORT; rep++) {
        train_timer_run(&t1, ds);
        train_timer_run(&tn, ds);
    }
    const double r1 = train_timer_rate(&t1), rn = train_timer_rate(&tn);
    const int steps1 = t1.steps, stepsn = tn.steps;
    const double frn = snn_trainer_firing_rate(tn.tr);
    train_timer_free(&t1);
    train_timer_free(&tn);
    set_threads(all);
    memcpy(m->params, saved, m->n_params * sizeof *saved);
    snn_model_fold(m);
    free(saved);
    char trfr[64] = "";
    if (!m->ann) snprintf(trfr, sizeof trfr, "; training-mode fr %.3f", frn);
    printf("  training, batch %-5d : %.1f samples/s on %d thread%s (1 thread: %.1f samples/s, "
           "scaling x%.2f; forward, backward, clipping, AdamW; best of %d runs of %d steps, "
           "%d on 1 thread%s)\n",
           B, rn, all, all > 1 ? "s" : "", r1, rn / r1, REPS_SHORT, stepsn, steps1, trfr);
    if (m->ann) {
        printf("  training buffers      : %.1f MiB (batch %d; T = 1: an ANN has no timesteps)\n",
               mib((double)snn_trainer_bytes_for(m, B, 1)), B);
    } else {
        const double Ts[4] = {1, 2, 4, 8};
        double bytes[4], slope, icpt;
        for (int i = 0; i < 4; i++) bytes[i] = (double)snn_trainer_bytes_for(m, B, (int)Ts[i]);
        const double resid = snn_bench_linfit(Ts, bytes, 4, &slope, &icpt);
        printf("  training buffers      : %.1f MiB at T=%d (batch %d) = %.2f MiB per timestep x T "
               "+ %.2f MiB (least squares over T = 1, 2, 4, 8 of the trainer's plan; largest "
               "residual %.0f bytes: %s)\n",
               mib((double)snn_trainer_bytes_for(m, B, m->T)), m->T, B, mib(slope), mib(icpt),
               resid, resid < 1.0 ? "linear in T" : "NOT linear in T");
    }
}

int snn_bench(const snn_config *cfg, const snn_bench_opts *opts, snn_err *err) {
    snn_dataset ds = {0};
    snn_model m;
    if (snn_run_load_data(cfg, &ds, err) != SNN_OK) return SNN_ERR;
    if (snn_model_init(&m, cfg, err) != SNN_OK) {
        snn_dataset_free(&ds);
        return SNN_ERR;
    }
    int all = opts->threads;
#ifdef _OPENMP
    if (all <= 0) all = omp_get_max_threads();
#else
    all = 1;
#endif
    const int B = cfg->train.batch_size;
    const bool can_train = ds.n >= B;
    char w[600];
    if (cfg->model.weights)
        snprintf(w, sizeof w, "weights %s", cfg->model.weights);
    else
        snprintf(w, sizeof w, "random weights (seed %llu)", (unsigned long long)cfg->seed);
    printf("spikesim bench: %s (attention %s, %s, T=%d, N=%d, D=%d, heads=%d, blocks=%d, %zu params, "
           "%lld samples, %s)\n",
           cfg->name, snn_attn_kind_name(cfg->model.attention.kind), m.ann ? "ANN" : "spiking", m.T,
           m.N, m.D, m.heads, m.L, snn_model_param_count(&m), (long long)ds.n, w);

    char blas[256];
    printf("  dense products        : %s, one BLAS thread per OpenMP thread\n",
           snn_blas_describe(blas, sizeof blas));

    const bool all_phases = opts->phase == SNN_BENCH_ALL;
    const bool infer = all_phases || opts->phase == SNN_BENCH_INFER;
    const bool train = all_phases || opts->phase == SNN_BENCH_TRAIN;
    if (all_phases) bench_memory(&m, &ds, all);
    if (infer) bench_inference(&m, &ds, all);
    if (train) {
        if (can_train)
            bench_training(&m, &ds, all);
        else
            printf("  training              : skipped (%lld samples, fewer than "
                   "train.batch_size %d)\n", (long long)ds.n, B);
    }
    /* the levels are inference timings: `make bench` runs them with --phase infer every round */
    if (infer && opts->rate_levels) {
        if (m.ann)
            printf("  firing-rate levels    : skipped (an ANN has no spikes)\n");
        else
            bench_rate_levels(&m, &ds, all);
    }
    snn_model_free(&m);
    snn_dataset_free(&ds);
    return SNN_OK;
}
