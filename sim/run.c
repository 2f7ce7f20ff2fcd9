/* run.c: see run.h. The output file is created (as a temporary) before the simulation, so an
 * unwritable destination fails in a second, not after the work; it is renamed into place only
 * when complete. */
#include "sim/run.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sim/dist.h"
#include "sim/eval.h"
#include "sim/model.h"
#include "sim/train.h"

int snn_run_load_data(const snn_config *cfg, snn_dataset *ds, snn_err *err) {
    if (cfg->data.source == SNN_DATA_SYNTHETIC) {
        int split = strcmp(cfg->data.split, "train") == 0 ? 0 : 1;
        snn_dataset_synthetic(ds, cfg->seed, split, cfg->data.synthetic_samples,
                              cfg->model.channels, cfg->model.image_size, cfg->model.image_size,
                              cfg->model.classes);
        if (cfg->data.limit > 0 && cfg->data.limit < ds->n) ds->n = cfg->data.limit;
    } else if (cfg->data.source == SNN_DATA_LONGSEQ) {
        int split = strcmp(cfg->data.split, "train") == 0 ? 0 : 1;
        snn_dataset_longseq(ds, cfg->seed, split, cfg->data.synthetic_samples,
                            cfg->model.image_size, cfg->data.seq_symbols);
        if (cfg->data.limit > 0 && cfg->data.limit < ds->n) ds->n = cfg->data.limit;
    } else if (snn_dataset_load_split(ds, cfg->data.path, cfg->data.split, cfg->data.limit, err) != SNN_OK) {
        return SNN_ERR;
    }
    if (cfg->data.shuffle) snn_dataset_shuffle(ds, cfg->seed);
    return SNN_OK;
}

/* ---- memory plan ------------------------------------------------------------------------ */

void snn_format_bytes(uint64_t n, char *buf, size_t size) {
    static const char *const unit[] = {"bytes", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    int u = 0;
    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        u++;
    }
    if (u == 0) snprintf(buf, size, "%" PRIu64 " bytes", n);
    else if (v == (double)(uint64_t)v) snprintf(buf, size, "%.0f %s", v, unit[u]);
    else snprintf(buf, size, "%.1f %s", v, unit[u]);
}

/* Samples a split will hold once loaded (limit applied); -1 when unknown before loading. */
static int64_t split_samples(const snn_config *cfg, const char *split, int64_t limit) {
    int64_t n = cfg->data.source == SNN_DATA_IDX ? snn_dataset_split_count(cfg->data.path, split)
                                                 : cfg->data.synthetic_samples;
    if (n >= 0 && limit > 0 && limit < n) n = limit;
    return n;
}

void snn_run_plan_memory(const snn_config *cfg, snn_model *m, snn_mem_plan *p) {
    memset(p, 0, sizeof *p);
    const uint64_t pix = (uint64_t)cfg->model.channels * cfg->model.image_size * cfg->model.image_size;
    const uint64_t per_sample = pix + 1 + sizeof(int64_t); /* pixels, label, file index */
    const uint64_t np = m->n_params;
    p->model = np * sizeof(float) + (uint64_t)m->state_size * (sizeof(float) + 1);
    int64_t n_eval = split_samples(cfg, cfg->data.split, cfg->data.limit);
    if (n_eval > 0) {
        p->datasets += (uint64_t)n_eval * per_sample;
        /* logits, prediction, label, sample index */
        p->recording += (uint64_t)n_eval * ((uint64_t)m->classes * sizeof(float) + 16);
        const uint64_t R = (uint64_t)(cfg->record.samples < n_eval ? cfg->record.samples : n_eval);
        p->recording += R * (uint64_t)m->T * m->state_size * (1 + (cfg->record.membrane ? sizeof(float) : 0));
        p->recording += R * (uint64_t)m->N * m->D * sizeof(float);
    }
    p->recording += (uint64_t)m->state_size * sizeof(uint64_t); /* per-neuron spike counts */
    if (cfg->train.epochs > 0) {
        /* minibatch buffers of every layer (the trainer's own plan), AdamW moments, best
         * parameters, decay mask */
        p->training = snn_trainer_bytes_for(m, cfg->train.batch_size, m->T) + np * (3 * sizeof(float) + 1);
        int64_t n_train = split_samples(cfg, "train", cfg->data.train_limit);
        if (n_train > 0) p->datasets += 2 * (uint64_t)n_train * per_sample; /* split, then copies */
    }
    p->total = p->model + p->training + p->datasets + p->recording;
}

/* MemAvailable of /proc/meminfo in bytes, 0 when unknown. */
static uint64_t mem_available(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    unsigned long long kib = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1) break;
    fclose(f);
    return (uint64_t)kib * 1024u;
}

/* Refuses, with the figures, a run whose plan exceeds --max-memory or MemAvailable. */
static int check_memory(const snn_config *cfg, snn_model *m, const snn_run_opts *opts, snn_err *err) {
    snn_mem_plan p;
    snn_run_plan_memory(cfg, m, &p);
    const uint64_t avail = mem_available();
    const bool over_max = opts->max_memory > 0 && p.total > opts->max_memory;
    if (!over_max && !(avail > 0 && p.total > avail)) return SNN_OK;
    char t[32], a[32], b[32], c[32], d[32], lim[32];
    snn_format_bytes(p.total, t, sizeof t);
    snn_format_bytes(p.model, a, sizeof a);
    snn_format_bytes(p.training, b, sizeof b);
    snn_format_bytes(p.datasets, c, sizeof c);
    snn_format_bytes(p.recording, d, sizeof d);
    snn_format_bytes(over_max ? opts->max_memory : avail, lim, sizeof lim);
    return snn_err_set(err, "%s needs %s (model %s, training buffers %s, datasets %s, outputs %s); %s %s",
                       opts->config_path ? opts->config_path : cfg->name, t, a, b, c, d,
                       over_max ? "--max-memory is" : "available memory (MemAvailable) is", lim);
}

/* Creates the parent directory of the default output path (runs/) when missing. */
static void ensure_parent_dir(const char *path) {
    char *dir = snn_xstrdup(path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        mkdir(dir, 0777);
    }
    free(dir);
}

/* "runs/x.h5" -> "runs/x.<tag>.h5" */
static char *sibling_path(const char *out, const char *tag) {
    size_t n = strlen(out);
    if (n > 3 && strcmp(out + n - 3, ".h5") == 0) n -= 3;
    return snn_xasprintf("%.*s.%s.h5", (int)n, out, tag);
}

/* Trains on the training split (data.train_limit samples, val_fraction held out for model
 * selection), writing <out>.last.h5 after every epoch and <out>.best.h5 at every new best. */
static int train_model(const snn_config *cfg, snn_model *m, const snn_run_opts *opts, const char *out,
                       snn_train_result *res, snn_err *err) {
    snn_dataset all = {0}, train = {0}, val = {0};
    snn_config tcfg = *cfg;
    tcfg.data.split = "train";
    tcfg.data.limit = cfg->data.train_limit;
    tcfg.data.shuffle = false;
    if (snn_run_load_data(&tcfg, &all, err) != SNN_OK) return SNN_ERR;
    snn_train_split(&all, cfg->seed, cfg->train.val_fraction, &train, &val);
    snn_dataset_free(&all);
    char *last = sibling_path(out, "last"), *best = sibling_path(out, "best");
    char *yaml = snn_config_to_yaml(cfg);
    snn_train_opts to = {.last_path = last, .best_path = best, .config_yaml = yaml,
                         .threads = opts->threads, .progress = opts->progress, .log = opts->log,
                         .distributed = opts->distributed};
    int rc = snn_train(m, &train, &val, &to, res, err);
    if (rc == SNN_INTERRUPTED && opts->command) {
        char *msg = snn_xasprintf("%s; resume with: %s --set train.resume=%s", err->msg,
                                  opts->command, last);
        snn_err_set(err, "%s", msg);
        free(msg);
    }
    if (rc == SNN_OK && opts->log)
        fprintf(opts->log, "  trained %d epochs in %.0fs (%.0f samples/s); best validation accuracy "
                "%.2f%% at epoch %d; checkpoints %s, %s\n",
                res->n_history, res->seconds, res->samples_per_second,
                100 * res->best_val_accuracy, res->best_epoch, best, last);
    free(yaml);
    free(last);
    free(best);
    snn_dataset_free(&train);
    snn_dataset_free(&val);
    return rc;
}

int snn_run(const snn_config *cfg, const snn_run_opts *opts, snn_summary *summary,
            bool *is_config_error, snn_err *err) {
    *is_config_error = false;
    /* a rank other than 0 of a distributed run only trains: it writes nothing */
    const bool dist = opts->distributed && snn_dist_size() > 1;
    const bool writer = !dist || snn_dist_rank() == 0;
    char *default_path = NULL;
    const char *out = opts->out_path ? opts->out_path : cfg->output.path;
    if (!out) {
        default_path = snn_xasprintf("runs/%s.h5", cfg->name);
        if (writer) ensure_parent_dir(default_path);
        out = default_path;
    }
    snn_dataset ds = {0};
    snn_model m = {0};
    snn_h5 h = {0};
    snn_eval ev = {0};
    char *yaml = NULL;
    int rc = SNN_ERR;
    bool have_model = false, have_eval = false, have_train = false;
    snn_train_result tres = {0};

    /* The model first (its parameters are small) to plan the rest, and refuse what does not
     * fit before any output file or big buffer exists. The ranks of a distributed run agree on
     * the outcome, so none is left waiting in a collective for one that gave up. */
    int prep = snn_model_init(&m, cfg, err);
    if (prep == SNN_OK) {
        have_model = true;
        prep = check_memory(cfg, &m, opts, err);
    }
    if (prep == SNN_OK && writer) prep = snn_h5_create(&h, out, cfg->output.compression, err);
    const int failed_rank = dist ? snn_dist_first_failed(prep != SNN_OK) : -1;
    if (prep == SNN_OK && failed_rank >= 0) {
        snn_err_set(err, "rank %d could not set up the run (model, memory or %s)", failed_rank, out);
        goto done;
    }
    if (prep != SNN_OK) goto done;
    if (snn_run_load_data(cfg, &ds, err) != SNN_OK) goto done;
    if (ds.channels != cfg->model.channels || ds.height != cfg->model.image_size ||
        ds.width != cfg->model.image_size || ds.classes > cfg->model.classes) {
        snn_err_set(err, "%s: %lldx%dx%d images with %d classes do not fit model.channels (%d), "
                    "model.image_size (%d) and model.classes (%d)",
                    cfg->data.source == SNN_DATA_IDX         ? cfg->data.path
                    : cfg->data.source == SNN_DATA_SYNTHETIC ? "synthetic data"
                                                             : "long-sequence data",
                    (long long)ds.channels, ds.height, ds.width, ds.classes, cfg->model.channels,
                    cfg->model.image_size, cfg->model.classes);
        *is_config_error = true;
        goto done;
    }
    if (opts->log)
        fprintf(opts->log, "spikesim: %s, attention %s, T=%d, N=%d, D=%d, heads=%d, blocks=%d, "
                "%zu parameters (attention weights %zu per block); %lld %s samples\n",
                cfg->name, snn_attn_kind_name(cfg->model.attention.kind), m.T, m.N, m.D, m.heads,
                m.L, snn_model_param_count(&m), snn_model_attention_weights(&m), (long long)ds.n,
                cfg->data.split);
    if (cfg->train.epochs > 0) {
        have_train = true; /* the result owns memory even when training fails */
        int trc = train_model(cfg, &m, opts, out, &tres, err);
        if (trc != SNN_OK) {
            rc = trc; /* SNN_ERR, or SNN_INTERRUPTED with the checkpoint saved */
            goto done;
        }
    } else if (opts->log && !cfg->model.weights) {
        fprintf(opts->log, "  note: model.weights is not set: simulating seeded random weights "
                "(Spikformer init, std %g); expect little activity and chance accuracy\n",
                (double)cfg->model.init_std);
    }

    if (!writer) { /* rank 0 evaluates the trained model and writes the run file */
        rc = SNN_OK;
        goto done;
    }
    snn_eval_opts eo = {.n_record = cfg->record.samples, .record_v = cfg->record.membrane,
                        .dense = opts->dense, .threads = opts->threads, .progress = opts->progress};
    snn_evaluate(&m, &ds, &eo, &ev);
    have_eval = true;
    yaml = snn_config_to_yaml(cfg);
    if (snn_output_write(&h, &m, &ev, yaml, err) != SNN_OK) goto done;
    if (have_train && snn_write_training_history(&h, tres.history, tres.n_history, err) != SNN_OK) goto done;
    if (snn_h5_commit(&h, err) != SNN_OK) goto done;
    snn_summarize(&m, &ev, summary);
    if (opts->log) {
        fprintf(opts->log,
                "  accuracy %.2f%% on %lld samples | %.3g ACs, %.3g MACs, %.4g nJ per sample | "
                "firing rate %.3f | %.2fs on %d threads (%.0f samples/s)\n",
                100.0 * summary->accuracy, (long long)summary->samples, summary->sops_per_sample,
                summary->macs_per_sample, summary->energy_pj_per_sample / 1000.0,
                summary->firing_rate_mean, summary->wall_seconds, ev.threads,
                summary->wall_seconds > 0 ? (double)summary->samples / summary->wall_seconds : 0.0);
        fprintf(opts->log,
                "  energy per sample: paper %.4g nJ (first layer x T %.4g), compute %.4g nJ "
                "(syops rule %.4g), memory-aware %.4g nJ at %s\n",
                summary->paper_pj_per_sample / 1000.0, summary->paper_T_pj_per_sample / 1000.0,
                summary->energy_pj_per_sample / 1000.0, summary->syops_pj_per_sample / 1000.0,
                summary->memory_aware_pj_per_sample / 1000.0, cfg->energy.memory_level);
        fprintf(opts->log, "  wrote %s\n", out);
    }
    rc = SNN_OK;
done:
    if (rc != SNN_OK && writer) snn_h5_abort(&h);
    if (have_eval) snn_eval_free(&ev, &m);
    if (have_train) snn_train_result_free(&tres);
    if (have_model) snn_model_free(&m);
    snn_dataset_free(&ds);
    free(yaml);
    free(default_path);
    return rc;
}
