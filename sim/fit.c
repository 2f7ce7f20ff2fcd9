/*
 * fit.c: the training loop around snn_trainer (train.h): epochs of seeded minibatches, AdamW
 * with a warm-up + cosine schedule, gradient clipping, validation with the event-driven engine
 * after every epoch, best/last checkpoints, and exact resume.
 *
 * Reproducibility: the order of epoch e is a Fisher-Yates permutation drawn from the
 * counter-based generator keyed by (seed, "epoch", e), so a run resumed at an epoch boundary
 * sees exactly the batches an uninterrupted run sees. Checkpoints hold everything else the
 * continuation needs: parameters (BN running statistics included), AdamW moments and step,
 * the history and the best parameters so far. A checkpoint written on SIGINT/SIGTERM in the
 * middle of an epoch also holds the step within the epoch and the epoch's partial sums, so the
 * resumed run continues with the next minibatch of the same permutation, bit for bit.
 *
 * Divergence: a step whose loss or gradient is not finite is not applied; training stops
 * naming the first parameter tensor (spec section 4 name) with a non-finite gradient, and the
 * checkpoints of earlier epochs stay as they were.
 *
 * Checkpoint file (HDF5; also loadable by model.weights since /parameters is the model):
 *   /parameters/<name>          float32, spec section 4
 *   /config                     resolved YAML
 *   /optimizer/m, /optimizer/v  float32 [n_params] AdamW moments (parameter-arena order)
 *   /training/state             int64 [3]: epochs done, optimizer steps, best epoch
 *   /training/best_val_accuracy float64 [1]
 *   /training/best_parameters   float32 [n_params]
 *   /training/history/<column>  [epochs done]: epoch, train_loss, train_accuracy, val_accuracy,
 *                               lr, seconds
 *   /training/partial           int64 [3], only mid-epoch (interrupted): steps done in the
 *                               epoch after "epochs done", correct predictions, samples seen
 *   /training/partial_loss      float64 [1], only mid-epoch: the sum of those steps' losses
 * Checkpoints without /training/partial (all older ones) resume at the epoch boundary.
 *
 * Data parallelism (opts->distributed, under mpirun): every rank holds the model, the
 * optimizer and the data, draws the same permutation, and steps on its contiguous share of
 * every batch (snn_dist_share; snn_trainer_set_share gives BatchNorm the batch's statistics).
 * The gradients are summed over ranks in rank order, so every rank takes the same AdamW step
 * and the parameters stay identical on every rank. Validation splits the validation set over
 * the ranks and adds the correct counts. Only rank 0 logs and writes checkpoints.
 */
#include "sim/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "sim/dist.h"
#include "sim/eval.h"
#include "sim/h5io.h"
#include "sim/interrupt.h"
#include "sim/optim.h"
#include "sim/rng.h"

#define TRY(x)                                                                                  \
    do {                                                                                        \
        if ((x) != SNN_OK) return SNN_ERR;                                                      \
    } while (0)

/* ---- data -------------------------------------------------------------------------------- */

static void permutation(int64_t *perm, int64_t n, uint64_t seed, uint64_t stream, uint64_t key) {
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(snn_rng_u64(seed, stream ^ key, (uint64_t)i) % (uint64_t)(i + 1));
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

static void subset(const snn_dataset *all, const int64_t *idx, int64_t n, snn_dataset *out) {
    const size_t pix = (size_t)all->channels * all->height * all->width;
    memset(out, 0, sizeof *out);
    out->n = n;
    out->channels = all->channels;
    out->height = all->height;
    out->width = all->width;
    out->classes = all->classes;
    out->pixels = snn_xmalloc((size_t)n * pix + 1);
    out->labels = snn_xmalloc((size_t)n + 1);
    out->index = snn_xmalloc((size_t)n * sizeof *out->index + 1);
    for (int64_t i = 0; i < n; i++) {
        memcpy(out->pixels + (size_t)i * pix, all->pixels + (size_t)idx[i] * pix, pix);
        out->labels[i] = all->labels[idx[i]];
        out->index[i] = all->index[idx[i]];
    }
}

static int cmp_i64(const void *x, const void *y) {
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return (a > b) - (a < b);
}

void snn_train_split(const snn_dataset *all, uint64_t seed, double val_fraction, snn_dataset *train,
                     snn_dataset *val) {
    int64_t *perm = snn_xmalloc((size_t)all->n * sizeof *perm + 1);
    permutation(perm, all->n, seed, snn_rng_stream("validation split"), 0);
    int64_t n_val = (int64_t)llround(val_fraction * (double)all->n);
    if (n_val >= all->n) n_val = all->n - 1;
    /* Keep both halves in file order: easier to reason about, same information. */
    int64_t n_train = all->n - n_val;
    int64_t *a = perm, *b = perm + n_train;
    qsort(a, (size_t)n_train, sizeof *a, cmp_i64);
    qsort(b, (size_t)n_val, sizeof *b, cmp_i64);
    subset(all, a, n_train, train);
    subset(all, b, n_val, val);
    free(perm);
}


/* ---- checkpoints ------------------------------------------------------------------------- */

typedef struct fit_state {
    int epochs_done;
    int64_t step;
    int best_epoch;
    double best_val;
    float *best_params;          /* [n_params] */
    snn_history_row *history;    /* [epochs] */
    snn_adamw opt;
    /* Mid-epoch (interrupted) state of epoch epochs_done + 1; epoch_step 0 at a boundary. */
    int64_t epoch_step, part_correct, part_seen;
    double part_loss;
} fit_state;

static int write_history(snn_h5 *h, const char *group, const snn_history_row *rows, int n,
                         snn_err *err) {
    double *col = snn_xmalloc(((size_t)n + 1) * sizeof *col);
    int32_t *ep = snn_xmalloc(((size_t)n + 1) * sizeof *ep);
    uint64_t dims[1] = {(uint64_t)n};
    char path[160];
    int rc = snn_h5_group(h, group, err);
    const char *axes[1] = {"epoch"};
    if (rc == SNN_OK) rc = snn_h5_attr_str(h, group, "NX_class", "NXdata", err);
    if (rc == SNN_OK) rc = snn_h5_attr_str(h, group, "signal", "val_accuracy", err);
    if (rc == SNN_OK) rc = snn_h5_attr_str_array(h, group, "axes", 1, axes, err);
    for (int i = 0; i < n; i++) ep[i] = rows[i].epoch;
    snprintf(path, sizeof path, "%s/epoch", group);
    if (rc == SNN_OK) rc = snn_h5_write(h, path, SNN_H5_I32, 1, dims, ep, err);
    if (rc == SNN_OK) rc = snn_h5_attr_str(h, path, "units", "epoch", err);
    if (rc == SNN_OK) rc = snn_h5_attr_str(h, path, "long_name", "epoch (1-based)", err);
    char epoch_path[160];
    snprintf(epoch_path, sizeof epoch_path, "%s", path);
    if (rc == SNN_OK) rc = snn_h5_set_scale(h, epoch_path, "epoch", err);
    static const char *const names[5] = {"train_loss", "train_accuracy", "val_accuracy", "lr", "seconds"};
    static const char *const units[5] = {"nats", "fraction", "fraction", "1", "s"};
    static const char *const long_names[5] = {
        "mean training cross-entropy of the epoch", "training accuracy (minibatches, BatchNorm in training mode)",
        "validation accuracy (event-driven engine)", "learning rate at the epoch's last step",
        "wall time of the epoch"};
    for (int c = 0; c < 5 && rc == SNN_OK; c++) {
        for (int i = 0; i < n; i++) {
            const snn_history_row *r = &rows[i];
            const double v[5] = {r->train_loss, r->train_accuracy, r->val_accuracy, r->lr, r->seconds};
            col[i] = v[c];
        }
        snprintf(path, sizeof path, "%s/%s", group, names[c]);
        rc = snn_h5_write(h, path, SNN_H5_F64, 1, dims, col, err);
        if (rc == SNN_OK) rc = snn_h5_attr_str(h, path, "units", units[c], err);
        if (rc == SNN_OK) rc = snn_h5_attr_str(h, path, "long_name", long_names[c], err);
        if (rc == SNN_OK) rc = snn_h5_attach_scale(h, path, epoch_path, 0, err);
    }
    free(col);
    free(ep);
    return rc;
}

int snn_write_training_history(snn_h5 *h, const snn_history_row *rows, int n, snn_err *err) {
    return write_history(h, "/training/history", rows, n, err);
}

static int save_checkpoint(const char *path, const snn_model *m, const fit_state *s,
                           const char *yaml, int compression, snn_err *err) {
    snn_h5 h = {0};
    TRY(snn_h5_create(&h, path, compression, err));
    const uint64_t np[1] = {(uint64_t)m->n_params}, d3[1] = {3}, d1[1] = {1};
    const int64_t state[3] = {s->epochs_done, s->step, s->best_epoch};
    int rc = snn_h5_write_parameters(&h, m->tensors, m->n_tensors, err);
    if (rc == SNN_OK && yaml) rc = snn_h5_write_text(&h, "/config", yaml, err);
    if (rc == SNN_OK) rc = snn_h5_write(&h, "/optimizer/m", SNN_H5_F32, 1, np, s->opt.m, err);
    if (rc == SNN_OK) rc = snn_h5_write(&h, "/optimizer/v", SNN_H5_F32, 1, np, s->opt.v, err);
    if (rc == SNN_OK) rc = snn_h5_write(&h, "/training/state", SNN_H5_I64, 1, d3, state, err);
    if (rc == SNN_OK) rc = snn_h5_write(&h, "/training/best_val_accuracy", SNN_H5_F64, 1, d1, &s->best_val, err);
    if (rc == SNN_OK) rc = snn_h5_write(&h, "/training/best_parameters", SNN_H5_F32, 1, np, s->best_params, err);
    if (rc == SNN_OK) rc = write_history(&h, "/training/history", s->history, s->epochs_done, err);
    if (s->epoch_step > 0) {
        const int64_t part[3] = {s->epoch_step, s->part_correct, s->part_seen};
        if (rc == SNN_OK) rc = snn_h5_write(&h, "/training/partial", SNN_H5_I64, 1, d3, part, err);
        if (rc == SNN_OK) rc = snn_h5_write(&h, "/training/partial_loss", SNN_H5_F64, 1, d1, &s->part_loss, err);
    }
    if (rc == SNN_OK) rc = snn_h5_commit(&h, err);
    if (rc != SNN_OK) snn_h5_abort(&h);
    return rc;
}

static int read_exact(const char *path, const char *obj, snn_h5_type type, uint64_t n, void *dst,
                      size_t elem, snn_err *err) {
    int rank;
    uint64_t dims[4];
    void *data = NULL;
    TRY(snn_h5_read(path, obj, type, &rank, dims, &data, err));
    uint64_t count = 1;
    for (int i = 0; i < rank; i++) count *= dims[i];
    if (count != n) {
        free(data);
        return snn_err_set(err, "%s: %s holds %llu values, expected %llu (a checkpoint of another model?)",
                           path, obj, (unsigned long long)count, (unsigned long long)n);
    }
    memcpy(dst, data, (size_t)n * elem);
    free(data);
    return SNN_OK;
}

static int load_checkpoint(const char *path, snn_model *m, fit_state *s, int max_epochs,
                           int64_t steps_per_epoch, int batch, snn_err *err) {
    TRY(snn_h5_read_parameters(path, m->tensors, m->n_tensors, err));
    const uint64_t np = m->n_params;
    int64_t state[3];
    TRY(read_exact(path, "/optimizer/m", SNN_H5_F32, np, s->opt.m, sizeof(float), err));
    TRY(read_exact(path, "/optimizer/v", SNN_H5_F32, np, s->opt.v, sizeof(float), err));
    TRY(read_exact(path, "/training/state", SNN_H5_I64, 3, state, sizeof(int64_t), err));
    TRY(read_exact(path, "/training/best_val_accuracy", SNN_H5_F64, 1, &s->best_val, sizeof(double), err));
    TRY(read_exact(path, "/training/best_parameters", SNN_H5_F32, np, s->best_params, sizeof(float), err));
    if (state[0] < 0 || state[0] > max_epochs)
        return snn_err_set(err, "%s: checkpoint has %lld epochs done, train.epochs is %d", path,
                           (long long)state[0], max_epochs);
    s->epochs_done = (int)state[0];
    s->step = state[1];
    s->best_epoch = (int)state[2];
    s->opt.step = state[1];
    if (snn_h5_exists(path, "/training/partial")) {
        int64_t part[3];
        TRY(read_exact(path, "/training/partial", SNN_H5_I64, 3, part, sizeof(int64_t), err));
        TRY(read_exact(path, "/training/partial_loss", SNN_H5_F64, 1, &s->part_loss, sizeof(double), err));
        if (s->epochs_done >= max_epochs || part[0] < 0 || part[0] >= steps_per_epoch || part[1] < 0 ||
            part[2] != part[0] * batch)
            return snn_err_set(err, "%s: /training/partial (step %lld of epoch %d) does not fit "
                               "train.epochs %d, %lld steps per epoch, batch %d", path,
                               (long long)part[0], s->epochs_done + 1, max_epochs,
                               (long long)steps_per_epoch, batch);
        s->epoch_step = part[0];
        s->part_correct = part[1];
        s->part_seen = part[2];
    }
    static const char *const names[6] = {"epoch", "train_loss", "train_accuracy", "val_accuracy", "lr", "seconds"};
    for (int c = 0; c < 6 && s->epochs_done > 0; c++) {
        char obj[96];
        snprintf(obj, sizeof obj, "/training/history/%s", names[c]);
        double *col = snn_xmalloc((size_t)s->epochs_done * sizeof *col);
        if (read_exact(path, obj, SNN_H5_F64, (uint64_t)s->epochs_done, col, sizeof *col, err) != SNN_OK) {
            free(col);
            return SNN_ERR;
        }
        for (int i = 0; i < s->epochs_done; i++) {
            snn_history_row *r = &s->history[i];
            double *f[6] = {NULL, &r->train_loss, &r->train_accuracy, &r->val_accuracy, &r->lr, &r->seconds};
            if (c == 0) r->epoch = (int)col[i];
            else *f[c] = col[i];
        }
        free(col);
    }
    return SNN_OK;
}

/* ---- progress ---------------------------------------------------------------------------- */

static void progress(const snn_train_opts *o, int epoch, int epochs, int64_t step, int64_t steps,
                     double loss, double rate, double eta, bool final) {
    if (!o->progress) return;
    static double last = 0; /* only the training thread prints */
    bool tty = isatty(STDERR_FILENO);
    double now = snn_now();
    if (tty) {
        if (!final && now - last < 0.2) return;
        last = now;
        fprintf(stderr, "\r  epoch %d/%d  step %lld/%lld  loss %.4f  %.0f samples/s  ETA %.0fs   ",
                epoch, epochs, (long long)step, (long long)steps, loss, rate, eta);
        if (final) fputc('\n', stderr);
    } else if (final) {
        fprintf(stderr, "  epoch %d/%d  loss %.4f  %.0f samples/s  ETA %.0fs\n", epoch, epochs, loss,
                rate, eta);
    }
}

/* ---- loop -------------------------------------------------------------------------------- */

/* Validation accuracy with the event-driven engine; with P ranks each evaluates its share of
 * the samples and the correct counts (integers: exact) are added. */
static double validate(const snn_model *m, const snn_dataset *val, int threads, int rank, int P) {
    int64_t lo, hi;
    snn_dist_share(val->n, rank, P, &lo, &hi);
    const size_t pix = (size_t)val->channels * val->height * val->width;
    snn_dataset part = *val; /* a view of samples [lo, hi): not freed */
    part.n = hi - lo;
    part.pixels = val->pixels + (size_t)lo * pix;
    part.labels = val->labels + lo;
    part.index = val->index + lo;
    int64_t counts[2] = {0, 0}; /* correct, evaluated */
    if (part.n > 0) {
        snn_eval ev;
        snn_eval_opts eo = {.threads = threads};
        snn_evaluate(m, &part, &eo, &ev);
        counts[0] = ev.correct;
        counts[1] = ev.n;
        snn_eval_free(&ev, m);
    }
    if (P > 1) snn_dist_sum_i64(counts, 2);
    return counts[1] ? (double)counts[0] / (double)counts[1] : 0.0;
}

uint8_t *snn_decay_mask(const snn_model *m) {
    uint8_t *mask = snn_xcalloc(m->n_params, 1);
    for (size_t i = 0; i < m->n_tensors; i++) {
        const snn_tensor *t = &m->tensors[i];
        size_t len = strlen(t->name), n = 1;
        for (int r = 0; r < t->rank; r++) n *= (size_t)t->dims[r];
        bool weight = t->rank == 2 && len > 7 && strcmp(t->name + len - 7, ".weight") == 0;
        if (weight) memset(mask + (t->data - m->params), 1, n);
    }
    return mask;
}

float snn_fit_step(snn_trainer *tr, snn_adamw *opt, const uint8_t *decay_mask,
                   const uint8_t *images, const int64_t *file_index, const int32_t *labels, int B,
                   int64_t step, int64_t total, int64_t warmup, double *grad_norm, double *lr,
                   int *correct) {
    const snn_config *cfg = snn_trainer_model(tr)->cfg;
    snn_trainer_zero_grads(tr);
    float loss = snn_trainer_step(tr, images, file_index, labels, B, true, true, correct);
    float *g = snn_trainer_grads(tr);
    const size_t n = snn_trainer_model(tr)->n_params;
    if (snn_trainer_share_of(tr)) snn_dist_sum_f32(g, n); /* the batch's gradient, on every rank */
    /* A non-finite gradient would poison every parameter through AdamW: leave the parameters
     * as they are and let the caller name the tensor (snn_first_nonfinite_grad). */
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(g[i])) {
            if (grad_norm) *grad_norm = NAN;
            if (lr) *lr = snn_lr_cosine(step, total, warmup, cfg->train.lr, 0.0f);
            return loss;
        }
    }
    double norm = cfg->train.grad_clip > 0 ? snn_clip_grad_norm(g, n, cfg->train.grad_clip)
                                           : snn_grad_norm(g, n);
    double rate = snn_lr_cosine(step, total, warmup, cfg->train.lr, 0.0f);
    snn_adamw_step(opt, snn_trainer_model(tr)->params, g, decay_mask, (float)rate);
    if (grad_norm) *grad_norm = norm;
    if (lr) *lr = rate;
    return loss;
}

const char *snn_first_nonfinite_grad(const snn_model *m, const float *grads) {
    for (size_t i = 0; i < m->n_tensors; i++) {
        const snn_tensor *t = &m->tensors[i];
        size_t n = 1;
        for (int r = 0; r < t->rank; r++) n *= (size_t)t->dims[r];
        const float *g = grads + (t->data - m->params);
        for (size_t k = 0; k < n; k++)
            if (!isfinite(g[k])) return t->name;
    }
    return NULL;
}

/* A signal arrived (interrupt.h). The ranks of a distributed run agree, so that all of them
 * stop before the same step (a rank left alone in a collective would wait for ever). */
static bool stop_requested(bool dist) {
    const bool pending = snn_interrupt_pending() != 0;
    return dist ? snn_dist_first_failed(pending) >= 0 : pending;
}

/* The loop saw a signal (interrupt.h): saves the state to the last checkpoint and returns
 * SNN_INTERRUPTED with the one-line message. */
static int stop_interrupted(const snn_model *m, const snn_train_opts *opts, fit_state *s, int epochs,
                            int64_t steps_per_epoch, snn_err *err) {
    const char *sig = snn_interrupt_name(snn_interrupt_pending());
    if (!opts->last_path) {
        snn_err_set(err, "interrupted by %s at epoch %d after step %lld of %lld (no checkpoint path)", sig,
                    s->epochs_done + 1, (long long)s->epoch_step, (long long)steps_per_epoch);
        return SNN_INTERRUPTED;
    }
    if (save_checkpoint(opts->last_path, m, s, opts->config_yaml, m->cfg->output.compression, err) != SNN_OK)
        return SNN_ERR;
    if (s->epochs_done >= epochs)
        snn_err_set(err, "interrupted by %s after the last epoch; checkpoint %s", sig, opts->last_path);
    else
        snn_err_set(err, "interrupted by %s at epoch %d after step %lld of %lld; resumable checkpoint %s",
                    sig, s->epochs_done + 1, (long long)s->epoch_step, (long long)steps_per_epoch,
                    opts->last_path);
    return SNN_INTERRUPTED;
}

int snn_train(snn_model *m, const snn_dataset *train, const snn_dataset *val,
              const snn_train_opts *opts, snn_train_result *res, snn_err *err) {
    const snn_config *cfg = m->cfg;
    memset(res, 0, sizeof *res);
    const int B = cfg->train.batch_size, epochs = cfg->train.epochs;
    if (train->n < B)
        return snn_err_set(err, "training set has %lld samples, fewer than train.batch_size (%d)",
                           (long long)train->n, B);
    /* data parallel over P ranks: this rank steps on samples [lo, hi) of every batch */
    const bool dist = opts->distributed && snn_dist_size() > 1;
    const int P = dist ? snn_dist_size() : 1, rank = dist ? snn_dist_rank() : 0;
    if (dist && B < P)
        return snn_err_set(err, "train.batch_size (%d) is smaller than the number of MPI ranks (%d)",
                           B, P);
    if (dist && cfg->model.attention.kind == SNN_ATTN_PRIMAL)
        return snn_err_set(err, "primal attention cannot train over several MPI ranks (its K-SVD "
                           "loss spans the whole batch); run it in one process");
    int64_t lo = 0, hi = B;
    snn_dist_share(B, rank, P, &lo, &hi);
    snn_train_opts me = *opts; /* what this rank does: only rank 0 logs and writes */
    if (rank != 0) me = (snn_train_opts){.threads = opts->threads, .max_steps = opts->max_steps};
    opts = &me;
    const int64_t steps_per_epoch = train->n / B, total = steps_per_epoch * epochs;
    const int64_t warmup = llround(cfg->train.warmup_epochs * (double)steps_per_epoch);
    const size_t pix = (size_t)train->channels * train->height * train->width;

#ifdef _OPENMP
    /* The trainer sizes its per-thread scratch from omp_get_max_threads(). */
    if (opts->threads > 0) omp_set_num_threads(opts->threads);
#endif
    snn_trainer *tr = snn_trainer_new(m, (int)(hi - lo), false);
    if (dist) snn_trainer_set_share(tr, B);
    fit_state s = {0};
    s.best_epoch = -1;
    s.best_val = -1.0;
    s.best_params = snn_xmalloc(m->n_params * sizeof(float));
    memcpy(s.best_params, m->params, m->n_params * sizeof(float));
    s.history = snn_xcalloc((size_t)epochs + 1, sizeof *s.history);
    snn_adamw_init(&s.opt, m->n_params, cfg->train.weight_decay);
    uint8_t *mask = snn_decay_mask(m);
    uint8_t *images = snn_xmalloc((size_t)B * pix);
    int64_t *fidx = snn_xmalloc((size_t)B * sizeof *fidx);
    int32_t *labels = snn_xmalloc((size_t)B * sizeof *labels);
    int64_t *perm = snn_xmalloc((size_t)train->n * sizeof *perm);
    int rc = SNN_OK;

    if (cfg->train.resume) {
        rc = load_checkpoint(cfg->train.resume, m, &s, epochs, steps_per_epoch, B, err);
        /* every rank reads it (each node needs the file): all go on, or all stop */
        if (dist && snn_dist_first_failed(rc != SNN_OK) >= 0 && rc == SNN_OK)
            rc = snn_err_set(err, "another MPI rank could not read %s", cfg->train.resume);
        if (rc != SNN_OK) goto done;
        if (opts->log && s.epoch_step > 0)
            fprintf(opts->log, "  resuming from %s at epoch %d step %lld (step %lld)\n",
                    cfg->train.resume, s.epochs_done + 1, (long long)s.epoch_step, (long long)s.step);
        else if (opts->log)
            fprintf(opts->log, "  resuming from %s after epoch %d (step %lld)\n", cfg->train.resume,
                    s.epochs_done, (long long)s.step);
    }
    if (opts->log)
        fprintf(opts->log, "  training: %lld train / %lld validation samples, batch %d, %d epochs "
                "(%lld steps), %.1f MiB of training buffers\n",
                (long long)train->n, (long long)val->n, B, epochs, (long long)total,
                (double)snn_trainer_bytes(tr) / 1048576.0);

    res->n_first_losses = 0;
    res->first_losses = snn_xcalloc(16, sizeof(float));
    const double t_start = snn_now();
    int64_t samples_done = 0;
    /* From here the first SIGINT/SIGTERM only sets a flag, polled before every step. */
    snn_interrupt_defer(true);
    for (int e = s.epochs_done; e < epochs; e++) {
        const double t_epoch = snn_now();
        permutation(perm, train->n, cfg->seed, snn_rng_stream("epoch"), (uint64_t)e);
        /* a mid-epoch checkpoint continues its epoch's sums (zero at a boundary) */
        double loss_sum = s.part_loss;
        int64_t correct = s.part_correct, seen = s.part_seen;
        double lr = 0.0;
        for (int64_t st = s.epoch_step; st < steps_per_epoch; st++) {
            if (stop_requested(dist)) {
                s.epoch_step = st;
                s.part_loss = loss_sum;
                s.part_correct = correct;
                s.part_seen = seen;
                rc = stop_interrupted(m, opts, &s, epochs, steps_per_epoch, err);
                goto done;
            }
            for (int b = 0; b < (int)(hi - lo); b++) {
                const int64_t i = perm[st * B + lo + b];
                memcpy(images + (size_t)b * pix, train->pixels + (size_t)i * pix, pix);
                fidx[b] = train->index[i];
                labels[b] = train->labels[i];
            }
            int ok = 0;
            double gnorm = 0.0;
            float loss = snn_fit_step(tr, &s.opt, mask, images, fidx, labels, (int)(hi - lo), s.step,
                                      total, warmup, &gnorm, &lr, &ok);
            if (!isfinite(loss) || !isfinite(gnorm)) {
                const char *bad = snn_first_nonfinite_grad(m, snn_trainer_grads(tr));
                char kept[640];
                if (opts->last_path && access(opts->last_path, F_OK) == 0)
                    snprintf(kept, sizeof kept, "last good checkpoint %s (after epoch %d)",
                             opts->last_path, s.epochs_done);
                else
                    snprintf(kept, sizeof kept, "no checkpoint written yet");
                rc = snn_err_set(err, "training diverged at epoch %d step %lld of %lld: loss %g, %s%s; "
                                 "step not applied; %s", e + 1, (long long)st + 1,
                                 (long long)steps_per_epoch, (double)loss,
                                 bad ? "first non-finite gradient in " : "gradients finite",
                                 bad ? bad : "", kept);
                goto done;
            }
            s.step++;
            if (res->n_first_losses < 16) res->first_losses[res->n_first_losses++] = loss;
            loss_sum += loss;
            correct += ok;
            seen += B;
            samples_done += B;
            double el = snn_now() - t_start, rate = (double)samples_done / el;
            double eta = rate > 0 ? (double)((total - s.step) * B) / rate : 0;
            progress(opts, e + 1, epochs, st + 1, steps_per_epoch, loss_sum / (double)(st + 1), rate, eta, false);
            if (opts->max_steps && s.step >= opts->max_steps) break;
        }
        s.epoch_step = 0;
        s.part_loss = 0.0;
        s.part_correct = s.part_seen = 0;
        /* Validate with the event-driven engine on the folded weights. */
        snn_model_fold(m);
        double val_acc = validate(m, val, opts->threads, rank, P);
        snn_history_row *row = &s.history[e];
        row->epoch = e + 1;
        row->train_loss = loss_sum / (double)(seen / B ? seen / B : 1);
        row->train_accuracy = seen ? (double)correct / (double)seen : 0.0;
        row->val_accuracy = val_acc;
        row->lr = lr;
        row->seconds = snn_now() - t_epoch;
        s.epochs_done = e + 1;
        progress(opts, e + 1, epochs, steps_per_epoch, steps_per_epoch, row->train_loss,
                 (double)samples_done / (snn_now() - t_start), 0, true);
        if (opts->log)
            fprintf(opts->log, "  epoch %d: train loss %.4f, train accuracy %.2f%%, validation accuracy "
                    "%.2f%%, lr %.2e, %.0fs\n", e + 1, row->train_loss, 100 * row->train_accuracy,
                    100 * val_acc, lr, row->seconds);
        if (val_acc > s.best_val) {
            s.best_val = val_acc;
            s.best_epoch = e + 1;
            memcpy(s.best_params, m->params, m->n_params * sizeof(float));
            if (opts->best_path)
                rc = save_checkpoint(opts->best_path, m, &s, opts->config_yaml, cfg->output.compression, err);
        }
        if (rc == SNN_OK && opts->last_path)
            rc = save_checkpoint(opts->last_path, m, &s, opts->config_yaml, cfg->output.compression, err);
        if (dist && snn_dist_first_failed(rc != SNN_OK) >= 0 && rc == SNN_OK)
            rc = snn_err_set(err, "rank 0 could not write a checkpoint");
        if (rc != SNN_OK) goto done;
        if (opts->max_steps && s.step >= opts->max_steps) break;
    }
    if (stop_requested(dist)) { /* arrived during the last validation or checkpoint */
        rc = stop_interrupted(m, opts, &s, epochs, steps_per_epoch, err);
        goto done;
    }
    res->seconds = snn_now() - t_start;
    res->samples_per_second = res->seconds > 0 ? (double)samples_done / res->seconds : 0.0;
    /* Leave the best parameters in the model. */
    if (s.best_epoch > 0) memcpy(m->params, s.best_params, m->n_params * sizeof(float));
    snn_model_fold(m);
    res->best_epoch = s.best_epoch;
    res->best_val_accuracy = s.best_val;
    res->history = s.history;
    res->n_history = s.epochs_done;
    res->best_params = s.best_params;
    s.history = NULL;
    s.best_params = NULL;
done:
    snn_interrupt_defer(false);
    free(s.history);
    free(s.best_params);
    snn_adamw_free(&s.opt);
    free(mask);
    free(images);
    free(fidx);
    free(labels);
    free(perm);
    snn_trainer_free(tr);
    return rc;
}

void snn_train_result_free(snn_train_result *res) {
    free(res->history);
    free(res->best_params);
    free(res->first_losses);
    memset(res, 0, sizeof *res);
}
