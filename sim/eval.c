/* eval.c: see eval.h. */
#include "sim/eval.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <cblas.h>

#include "sim/train.h"

/* Progress on stderr: a redrawn bar with rate and ETA on a terminal, a plain line every 10%
 * otherwise (logs stay readable). Only thread 0 prints. */
typedef struct progress {
    bool on, tty;
    int64_t total;
    double start, last;
    int last_decile;
} progress;

static void progress_show(progress *p, int64_t done) {
    if (!p->on) return;
    double now = snn_now(), el = now - p->start;
    double rate = el > 0 ? (double)done / el : 0.0;
    double eta = rate > 0 ? (double)(p->total - done) / rate : 0.0;
    if (p->tty) {
        if (now - p->last < 0.1 && done < p->total) return;
        p->last = now;
        int width = 30, fill = p->total ? (int)(width * done / p->total) : width;
        fprintf(stderr, "\r  eval [%.*s%*s] %lld/%lld  %.0f samples/s  ETA %.0fs ", fill,
                "##############################", width - fill, "", (long long)done,
                (long long)p->total, rate, eta);
        if (done == p->total) fputc('\n', stderr);
    } else {
        int decile = p->total ? (int)(10 * done / p->total) : 10;
        if (decile == p->last_decile) return;
        p->last_decile = decile;
        fprintf(stderr, "  eval %lld/%lld samples (%d%%), %.0f samples/s, ETA %.0fs\n",
                (long long)done, (long long)p->total, 10 * decile, rate, eta);
    }
}

/* ANN models (softmax, cat, primal) have no spikes to drive an event-driven pass: they run as
 * the dense graph they are, the training graph in inference mode (BatchNorm with running
 * statistics) over minibatches of `batch` samples, `threads` threads inside each layer. Their
 * operation counts are the dense counts of every layer (snn_model_ann_ops), the same for every
 * sample. */
static void evaluate_ann(const snn_model *m, const snn_dataset *ds, int batch, int threads,
                         snn_eval *out, progress *pg) {
    const int64_t n = ds->n;
    const int B0 = n < batch ? (n > 0 ? (int)n : 1) : batch;
    const size_t pix = (size_t)ds->channels * ds->height * ds->width;
#ifdef _OPENMP
    /* the trainer sizes its per-thread scratch from omp_get_max_threads(): set it first */
    const int saved_threads = omp_get_max_threads();
    omp_set_num_threads(threads);
#else
    (void)threads;
#endif
    /* inference mode writes nothing into the model: no running-statistics update, no gradients */
    snn_trainer *tr = snn_trainer_new_inference((snn_model *)m, B0);
    int32_t *labels = snn_xmalloc((size_t)B0 * sizeof *labels); /* [B0] */
    for (int64_t i0 = 0; i0 < n; i0 += B0) {
        const int B = n - i0 < B0 ? (int)(n - i0) : B0;
        for (int b = 0; b < B; b++) labels[b] = ds->labels[i0 + b];
        snn_trainer_step(tr, ds->pixels + (size_t)i0 * pix, ds->index + i0, labels, B, false,
                         false, NULL);
        memcpy(out->logits + (size_t)i0 * m->classes, snn_trainer_logits(tr),
               (size_t)B * m->classes * sizeof *out->logits);
        progress_show(pg, i0 + B);
    }
    snn_trainer_free(tr);
    free(labels);
#ifdef _OPENMP
    omp_set_num_threads(saved_threads);
#endif
    for (int64_t i = 0; i < n; i++) {
        const float *lg = out->logits + (size_t)i * m->classes;
        int best = 0;
        for (int k = 1; k < m->classes; k++)
            if (lg[k] > lg[best]) best = k;
        out->pred[i] = best;
        out->labels[i] = ds->labels[i];
        out->sample_index[i] = ds->index[i];
        out->correct += best == out->labels[i];
    }
    snn_ops *per = snn_xcalloc((size_t)m->n_layers, sizeof *per);
    snn_model_ann_ops(m, per);
    for (int l = 0; l < m->n_layers; l++)
        for (int c = 0; c < SNN_OP__COUNT; c++) out->ops[l].n[c] = per[l].n[c] * (uint64_t)n;
    free(per);
}

void snn_evaluate(const snn_model *m, const snn_dataset *ds, const snn_eval_opts *opts,
                  snn_eval *out) {
    memset(out, 0, sizeof *out);
    const int64_t n = ds->n;
    const int T = m->T, classes = m->classes;
    out->n = n;
    out->classes = classes;
    out->logits = snn_xcalloc((size_t)n * classes, sizeof *out->logits);
    out->pred = snn_xcalloc((size_t)n, sizeof *out->pred);
    out->labels = snn_xcalloc((size_t)n, sizeof *out->labels);
    out->sample_index = snn_xcalloc((size_t)n, sizeof *out->sample_index);
    out->n_record = opts->n_record < n ? opts->n_record : n;
    if (out->n_record < 0 || m->ann) out->n_record = 0; /* ANN models have no spikes to record */
    const int64_t R = out->n_record;
    out->rec_spikes = snn_xcalloc((size_t)m->n_pops, sizeof *out->rec_spikes);
    if (opts->record_v) out->rec_v = snn_xcalloc((size_t)m->n_pops, sizeof *out->rec_v);
    for (int p = 0; p < m->n_pops; p++) {
        size_t per = (size_t)T * m->pops[p].size;
        out->rec_spikes[p] = snn_xcalloc((size_t)R * per + 1, 1);
        if (out->rec_v) out->rec_v[p] = snn_xcalloc((size_t)R * per + 1, sizeof(float));
    }
    out->rec_embed = snn_xcalloc((size_t)R * m->N * m->D + 1, sizeof *out->rec_embed);
    out->ops = snn_xcalloc((size_t)m->n_layers, sizeof *out->ops);
    out->pop_t_count = snn_xcalloc((size_t)m->n_pops * T, sizeof *out->pop_t_count);
    out->neuron_count = snn_xcalloc(m->state_size, sizeof *out->neuron_count);

    int threads = opts->threads > 0 ? opts->threads : 1;
#ifdef _OPENMP
    if (opts->threads <= 0) threads = omp_get_max_threads();
#else
    threads = 1;
#endif
    out->threads = threads;
    if (m->ann) {
        progress pa = {.on = opts->progress, .tty = isatty(STDERR_FILENO), .total = n,
                       .start = snn_now(), .last_decile = -1};
        double t0 = snn_now();
        evaluate_ann(m, ds, opts->ann_batch > 0 ? opts->ann_batch : 64, threads, out, &pa);
        out->wall_seconds = snn_now() - t0;
        return;
    }
    /* BLAS is only used by the dense baseline, from inside our parallel region. */
    openblas_set_num_threads(1);

    snn_ws *ws = snn_xcalloc((size_t)threads, sizeof *ws);
    for (int i = 0; i < threads; i++) {
        snn_ws_init(&ws[i], m);
        ws[i].dense = opts->dense;
        ws[i].time_syn = opts->time_synaptic;
    }
    progress pg = {.on = opts->progress, .tty = isatty(STDERR_FILENO), .total = n,
                   .start = snn_now(), .last_decile = -1};
    int64_t done = 0;
    const size_t pix = (size_t)ds->channels * ds->height * ds->width;
    const int last_u0 = m->cfg->data.encoding == SNN_ENCODING_RATE ? T - 1 : 0;
    double t0 = snn_now();
    const uint64_t k0 = snn_ticks();

#pragma omp parallel num_threads(threads)
    {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        snn_ws *w = &ws[tid];
        int8_t **spk = snn_xcalloc((size_t)m->n_pops, sizeof *spk);
        float **vv = snn_xcalloc((size_t)m->n_pops, sizeof *vv);
#pragma omp for schedule(dynamic, 1)
        for (int64_t i = 0; i < n; i++) {
            snn_record rec = {0}, *recp = NULL;
            if (i < R) {
                for (int p = 0; p < m->n_pops; p++) {
                    size_t per = (size_t)T * m->pops[p].size;
                    spk[p] = out->rec_spikes[p] + (size_t)i * per;
                    if (out->rec_v) vv[p] = out->rec_v[p] + (size_t)i * per;
                }
                rec.spikes = spk;
                rec.v = out->rec_v ? vv : NULL;
                recp = &rec;
            }
            float *lg = out->logits + (size_t)i * classes;
            snn_model_forward(m, w, ds->pixels + (size_t)i * pix, ds->index[i], lg, recp);
            if (i < R) /* U0 (rate-coded: of the last timestep, u0 [T, N, D]) */
                memcpy(out->rec_embed + (size_t)i * m->N * m->D,
                       w->u0 + (size_t)last_u0 * m->N * m->D, (size_t)m->N * m->D * sizeof(float));
            int best = 0;
            for (int k = 1; k < classes; k++)
                if (lg[k] > lg[best]) best = k;
            out->pred[i] = best;
            out->labels[i] = ds->labels[i];
            out->sample_index[i] = ds->index[i];
            int64_t d;
#pragma omp atomic capture
            d = ++done;
            if (tid == 0) progress_show(&pg, d);
        }
        free(spk);
        free(vv);
    }
    progress_show(&pg, n);
    out->wall_seconds = snn_now() - t0;
    /* the synaptic timer's ticks in seconds, at the rate they ran over the whole evaluation */
    const uint64_t ticks = snn_ticks() - k0;
    const double seconds_per_tick = ticks ? out->wall_seconds / (double)ticks : 0.0;

    /* Reduce per-thread counters (integers: exact in any order; thread order anyway). */
    for (int i = 0; i < threads; i++) {
        for (int l = 0; l < m->n_layers; l++) snn_ops_add(&out->ops[l], &ws[i].ops[l]);
        out->synaptic_seconds += (double)ws[i].syn_ticks * seconds_per_tick;
        for (size_t j = 0; j < (size_t)m->n_pops * T; j++) out->pop_t_count[j] += ws[i].pop_t_count[j];
        snn_ws_flush_counts(&ws[i], m);
        for (size_t j = 0; j < m->state_size; j++) out->neuron_count[j] += ws[i].neuron_count[j];
        snn_ws_free(&ws[i]);
    }
    free(ws);
    for (int64_t i = 0; i < n; i++) out->correct += out->pred[i] == out->labels[i];
}

void snn_eval_free(snn_eval *e, const snn_model *m) {
    for (int p = 0; p < m->n_pops; p++) {
        if (e->rec_spikes) free(e->rec_spikes[p]);
        if (e->rec_v) free(e->rec_v[p]);
    }
    free(e->rec_spikes);
    free(e->rec_v);
    free(e->rec_embed);
    free(e->logits);
    free(e->pred);
    free(e->labels);
    free(e->sample_index);
    free(e->ops);
    free(e->pop_t_count);
    free(e->neuron_count);
    memset(e, 0, sizeof *e);
}
