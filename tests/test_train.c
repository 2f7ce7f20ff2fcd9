/*
 * test_train.c: the training graph end to end.
 *   - finite-difference gradient check of the WHOLE network (every parameter tensor sampled)
 *     in smooth-spike mode, where the forward is differentiable and its exact derivative is
 *     what the backward computes (detach_reset off), for SSA, BSA and the SEW residual;
 *   - training with 1 and 2 threads gives identical losses and parameters;
 *   - a run stopped after one epoch and resumed from its checkpoint ends bit-identical to an
 *     uninterrupted run;
 *   - the loss falls on a learnable task;
 *   - the first 10 training losses of a tiny model match the PyTorch reference
 *     (tests/reference/golden_train_*.h5, made by make_golden_train.py);
 *   - the trainer's buffers grow exactly linearly in T; a step's firing rate is the engine's;
 *   - spikes kept for the backward pass take 1 bit (binary) or 2 bits (ternary) each, and a
 *     minibatch smaller than the planned one (bit rows not a whole number of words) gives the
 *     same loss and gradients as a trainer planned for exactly that minibatch;
 *   - linear layers reading their spike inputs as bits give the bytes of reading floats.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <hdf5.h>

#include "sim/h5io.h"
#include "sim/layers.h"
#include "sim/run.h"
#include "sim/train.h"
#include "tests/testmodel.h"
#include "tests/testutil.h"

static const char tiny_yaml[] =
    "name: tiny\nseed: 5\n"
    "data: {source: synthetic, synthetic_samples: 96}\n"
    "model: {image_size: 8, patch: 4, dim: 8, heads: 2, blocks: 1, mlp_ratio: 2, timesteps: 2,"
    " init_std: 0.3, neuron: {detach_reset: false}, attention: %s}\n"
    "train: {epochs: 2, batch_size: 8, lr: 0.01, label_smoothing: 0.1, val_fraction: 0.25}\n";

/* kind: an attention kind ("bsa") or a whole attention mapping ("{kind: primal, s: 3}");
 * extra: NULL or --set overrides separated by ';' */
static void load_cfg(snn_config *cfg, const char *kind, const char *extra) {
    char text[1024], attention[256], buf[256];
    snprintf(attention, sizeof attention, kind[0] == '{' ? "%s" : "{kind: %s}", kind);
    snprintf(text, sizeof text, tiny_yaml, attention);
    const char *sets[4];
    int n = 0;
    snprintf(buf, sizeof buf, "%s", extra ? extra : "");
    for (char *tok = strtok(buf, ";"); tok && n < 4; tok = strtok(NULL, ";")) sets[n++] = tok;
    assert_int_equal(snn_config_load_string(cfg, text, "tiny", sets, n, stderr), 0);
}

/* The tiny config of kind (load_cfg), its synthetic data and its model; tiny_free releases them. */
typedef snn_test_model tiny;

static void tiny_load(tiny *t, const char *kind, const char *extra) {
    load_cfg(&t->cfg, kind, extra);
    snn_test_model_init(t);
}

static void tiny_free(tiny *t) { snn_test_model_free(t); }

/* ---- whole-network gradient check ---------------------------------------------------------- */

static double loss_at(snn_trainer *tr, const snn_dataset *ds, int B) {
    int32_t labels[16];
    for (int b = 0; b < B; b++) labels[b] = ds->labels[b];
    return snn_trainer_step(tr, ds->pixels, ds->index, labels, B, false, false, NULL);
}

static void gradcheck(const char *kind, const char *extra) {
    tiny tc;
    tiny_load(&tc, kind, extra);
    snn_model *const m = &tc.m;
    const snn_dataset *const ds = &tc.ds;
    const int B = 6;
    snn_trainer *tr = snn_trainer_new(m, B, true);
    int32_t labels[16];
    for (int b = 0; b < B; b++) labels[b] = ds->labels[b];
    snn_trainer_zero_grads(tr);
    snn_trainer_step(tr, ds->pixels, ds->index, labels, B, false, true, NULL);
    float *g = snn_xmalloc(m->n_params * sizeof *g);
    memcpy(g, snn_trainer_grads(tr), m->n_params * sizeof *g);

    /* Up to 3 coordinates of every tensor; central differences with the loss in float. The
     * step is large enough that float rounding of the loss (~1e-7) stays far below the signal
     * and small enough for the curvature of the smooth network. */
    const double eps = 2e-3;
    int checked = 0, bad = 0;
    double worst = 0.0;
    for (size_t i = 0; i < m->n_tensors; i++) {
        const snn_tensor *t = &m->tensors[i];
        size_t n = 1;
        for (int r = 0; r < t->rank; r++) n *= (size_t)t->dims[r];
        if (strstr(t->name, "running_")) continue; /* buffers, not parameters */
        for (int s = 0; s < 3 && (size_t)s < n; s++) {
            size_t j = (size_t)s * 7919 % n;
            float *p = t->data + j;
            const float saved = *p;
            *p = saved + (float)eps;
            double lp = loss_at(tr, ds, B);
            *p = saved - (float)eps;
            double lm = loss_at(tr, ds, B);
            *p = saved;
            double num = (lp - lm) / (2 * eps);
            double ana = g[t->data - m->params + j];
            double err_abs = fabs(num - ana), tol = 2e-4 + 2e-2 * fabs(num);
            if (err_abs > tol) {
                bad++;
                fprintf(stderr, "  %s[%zu]: analytic %.6g, numeric %.6g\n", t->name, j, ana, num);
            }
            if (fabs(num) > 1e-3 && err_abs / fabs(num) > worst) worst = err_abs / fabs(num);
            checked++;
        }
    }
    fprintf(stderr, "  %s: %d coordinates checked, worst relative error %.2e\n", kind, checked, worst);
    assert_true(checked > 40);
    assert_int_equal(bad, 0);
    free(g);
    snn_trainer_free(tr);
    tiny_free(&tc);
}

static void test_whole_network_gradients_ssa(void **state) {
    (void)state;
    gradcheck("ssa", NULL);
}

static void test_whole_network_gradients_bsa(void **state) {
    (void)state;
    gradcheck("bsa", NULL);
}

static void test_whole_network_gradients_sew(void **state) {
    (void)state;
    gradcheck("bsa", "model.residual=sew");
}

/* The other kernels of spec section 3: sdsa (spiking, smooth mode) and the ANN baselines (T = 1,
 * identity and activation slots). primal's loss includes eta * L_KSVD, so lambda, E and R get
 * the KSVD gradient too; it runs with GELU, whose smoothness the check needs there: primal's
 * outputs are large enough that ReLU kinks sit within the 2e-3 step (its central differences
 * converge to the analytic gradient only below that step, at float noise). */
static void test_whole_network_gradients_sdsa(void **state) {
    (void)state;
    gradcheck("sdsa", NULL);
}

static void test_whole_network_gradients_softmax(void **state) {
    (void)state;
    gradcheck("softmax", "model.timesteps=1");
}

static void test_whole_network_gradients_cat(void **state) {
    (void)state;
    gradcheck("cat", "model.timesteps=1");
}

static void test_whole_network_gradients_primal(void **state) {
    (void)state;
    gradcheck("{kind: primal, s: 3, rank_multi: 2, eta: 0.5}", "model.timesteps=1;model.activation=gelu");
}

/* PLIF: every population gets a learnable 0-d "<population>.w" (tau = 1 + exp(-w)), starting at
 * the configured tau; the whole-network check above covers its gradient (one coordinate per
 * population), and training moves it. */
static void test_plif_tau_is_a_trained_parameter(void **state) {
    (void)state;
    gradcheck("bsa", "model.neuron.kind=plif");

    snn_config cfg;
    load_cfg(&cfg, "bsa", "model.neuron.kind=plif");
    snn_err err = {{0}};
    snn_model m;
    assert_int_equal(snn_model_init(&m, &cfg, &err), SNN_OK);
    int found = 0;
    for (int p = 0; p < m.n_pops; p++) {
        char name[96];
        snprintf(name, sizeof name, "%s.w", m.pops[p].name);
        for (size_t i = 0; i < m.n_tensors; i++) {
            if (strcmp(m.tensors[i].name, name) != 0) continue;
            assert_int_equal(m.tensors[i].rank, 0);
            assert_ptr_equal(m.tensors[i].data, m.pops[p].plif_w);
            /* w = -log(tau - 1): tau 2 gives w = 0 */
            assert_true(m.tensors[i].data[0] == 0.0f);
            assert_true(m.pops[p].np.tau == 2.0f);
            found++;
        }
    }
    assert_int_equal(found, m.n_pops);

    /* the gradient reaches every w (so the check above compared something nonzero) */
    snn_dataset ds = {0};
    assert_int_equal(snn_run_load_data(&cfg, &ds, &err), SNN_OK);
    snn_trainer *tr = snn_trainer_new(&m, 6, false);
    int32_t labels[6];
    for (int b = 0; b < 6; b++) labels[b] = ds.labels[b];
    snn_trainer_zero_grads(tr);
    snn_trainer_step(tr, ds.pixels, ds.index, labels, 6, false, true, NULL);
    int nonzero = 0;
    for (int p = 0; p < m.n_pops; p++)
        nonzero += fabsf(snn_trainer_grads(tr)[m.pops[p].plif_w - m.params]) > 1e-6f;
    fprintf(stderr, "  PLIF: %d of %d populations have |dL/dw| > 1e-6\n", nonzero, m.n_pops);
    assert_true(nonzero >= m.n_pops / 2);
    snn_trainer_free(tr);
    snn_dataset_free(&ds);
    snn_model_free(&m);
    snn_config_free(&cfg);
}

/* ---- training runs ------------------------------------------------------------------------ */

typedef struct run_out {
    snn_model m;
    snn_train_result res;
} run_out;

static void train_run(snn_config *cfg, int threads, const char *last, int max_steps, run_out *o) {
    snn_err err = {{0}};
    snn_dataset all = {0}, train = {0}, val = {0};
    assert_int_equal(snn_run_load_data(cfg, &all, &err), SNN_OK);
    snn_train_split(&all, cfg->seed, cfg->train.val_fraction, &train, &val);
#ifdef _OPENMP
    omp_set_num_threads(threads);
#else
    (void)threads;
#endif
    assert_int_equal(snn_model_init(&o->m, cfg, &err), SNN_OK);
    snn_train_opts to = {.last_path = last, .threads = threads, .max_steps = max_steps};
    if (snn_train(&o->m, &train, &val, &to, &o->res, &err) != SNN_OK) fail_msg("%s", err.msg);
#ifdef _OPENMP
    omp_set_num_threads(2);
#endif
    snn_dataset_free(&all);
    snn_dataset_free(&train);
    snn_dataset_free(&val);
}

static void run_free(run_out *o) {
    snn_train_result_free(&o->res);
    snn_model_free(&o->m);
}

static void test_one_and_two_threads_train_identically(void **state) {
    (void)state;
    snn_config cfg;
    load_cfg(&cfg, "bsa", "model.neuron.detach_reset=true");
    run_out a, b;
    train_run(&cfg, 1, NULL, 0, &a);
    train_run(&cfg, 2, NULL, 0, &b);
    assert_true(a.res.n_first_losses >= 10);
    assert_memory_equal(a.res.first_losses, b.res.first_losses, (size_t)a.res.n_first_losses * sizeof(float));
    assert_memory_equal(a.m.params, b.m.params, a.m.n_params * sizeof(float));
    run_free(&a);
    run_free(&b);
    snn_config_free(&cfg);
}

static void test_resume_equals_uninterrupted(void **state) {
    (void)state;
    snn_config cfg;
    load_cfg(&cfg, "bsa", "model.neuron.detach_reset=true");
    char *last = snn_test_tmp_path("last.h5");
    run_out full, first, second;
    train_run(&cfg, 2, NULL, 0, &full);
    assert_int_equal(full.res.n_history, 2);
    /* stop after the first epoch (its steps), then resume from its checkpoint */
    const int steps_per_epoch = (int)((96 - 24) / 8);
    train_run(&cfg, 2, last, steps_per_epoch, &first);
    assert_int_equal(first.res.n_history, 1);
    cfg.train.resume = strdup(last);
    train_run(&cfg, 2, NULL, 0, &second);
    assert_int_equal(second.res.n_history, 2);
    assert_memory_equal(full.m.params, second.m.params, full.m.n_params * sizeof(float));
    for (int e = 0; e < 2; e++) {
        assert_true(full.res.history[e].train_loss == second.res.history[e].train_loss);
        assert_true(full.res.history[e].val_accuracy == second.res.history[e].val_accuracy);
    }
    remove(last);
    free(last);
    run_free(&full);
    run_free(&first);
    run_free(&second);
    snn_config_free(&cfg);
}

static void test_loss_falls_on_a_learnable_task(void **state) {
    (void)state;
    snn_config cfg;
    assert_int_equal(snn_config_load_string(&cfg,
        "name: learn\nseed: 2\n"
        "data: {source: synthetic, synthetic_samples: 640}\n"
        "model: {image_size: 16, patch: 4, dim: 32, heads: 2, blocks: 1, mlp_ratio: 2, timesteps: 4}\n"
        "train: {epochs: 6, batch_size: 32, lr: 0.01, val_fraction: 0.2, warmup_epochs: 1,"
        " label_smoothing: 0}\n",
        "learn", NULL, 0, stderr), 0);
    run_out o;
    train_run(&cfg, 2, NULL, 0, &o);
    const snn_history_row *h = o.res.history;
    const int last = o.res.n_history - 1;
    fprintf(stderr, "  train loss %.4f -> %.4f, train accuracy %.3f -> %.3f, best validation %.3f\n",
            h[0].train_loss, h[last].train_loss, h[0].train_accuracy, h[last].train_accuracy,
            o.res.best_val_accuracy);
    /* 10 classes: chance is 0.1 and a loss of ln 10 = 2.30 */
    assert_true(h[last].train_loss < h[0].train_loss - 0.5);
    assert_true(o.res.best_val_accuracy > 0.25); /* 2.5x chance, measured by the event-driven engine */
    run_free(&o);
    snn_config_free(&cfg);
}

/* ---- PyTorch reference losses ------------------------------------------------------------ */

static char *read_text(const char *file, const char *path) {
    hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    hid_t d = H5Dopen2(f, path, H5P_DEFAULT);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    char *v = NULL, *out = NULL;
    assert_true(H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, &v) >= 0);
    out = strdup(v);
    H5free_memory(v);
    H5Tclose(t);
    H5Dclose(d);
    H5Fclose(f);
    return out;
}

static void *read_all(const char *file, const char *path, snn_h5_type type, uint64_t *count) {
    int rank;
    uint64_t dims[4];
    void *data = NULL;
    snn_err err = {{0}};
    if (snn_h5_read(file, path, type, &rank, dims, &data, &err) != SNN_OK) fail_msg("%s", err.msg);
    *count = 1;
    for (int i = 0; i < rank; i++) *count *= dims[i];
    return data;
}

/* Tolerances (measured, tests/reference/README.md): step 0 starts from identical parameters,
 * so loss and gradient norm agree to float rounding (measured 0 and 2e-8; bound 1e-5). Step 1
 * still agrees to 5e-7 (bound 1e-5), and would move by 7e-3 with a wrong warm-up, 7e-4 with L2
 * instead of decoupled decay. Later steps drift by float rounding amplified through AdamW's
 * update of zero-gradient biases (PyTorch drifts as much against itself with 2 threads), so
 * they are held only to 2e-2. */
static void check_golden_train(const char *file) {
    snn_config cfg;
    char *yaml = read_text(file, "/config");
    assert_int_equal(snn_config_load_string(&cfg, yaml, file, NULL, 0, stderr), 0);
    free(cfg.model.weights);
    cfg.model.weights = strdup(file);
    snn_err err = {{0}};
    snn_model m;
    if (snn_model_init(&m, &cfg, &err) != SNN_OK) fail_msg("%s", err.msg);
    uint64_t n_img, n_lab, n_idx, n_sched, n_loss, n_norm;
    uint8_t *images = read_all(file, "/batches/images", SNN_H5_U8, &n_img);
    int32_t *labels = read_all(file, "/batches/labels", SNN_H5_I32, &n_lab);
    int64_t *fidx = read_all(file, "/batches/file_index", SNN_H5_I64, &n_idx);
    int64_t *sched = read_all(file, "/schedule", SNN_H5_I64, &n_sched);
    float *losses = read_all(file, "/expected/losses", SNN_H5_F32, &n_loss);
    float *norms = read_all(file, "/expected/grad_norm", SNN_H5_F32, &n_norm);
    const int S = (int)n_loss, B = cfg.train.batch_size;
    const size_t pix = (size_t)m.C * m.img * m.img;
    assert_int_equal(n_lab, (uint64_t)S * B);
    assert_int_equal(n_img, (uint64_t)S * B * pix);
    snn_trainer *tr = snn_trainer_new(&m, B, false);
    snn_adamw opt;
    snn_adamw_init(&opt, m.n_params, cfg.train.weight_decay);
    uint8_t *mask = snn_decay_mask(&m);
    for (int s = 0; s < S; s++) {
        double norm;
        float loss = snn_fit_step(tr, &opt, mask, images + (size_t)s * B * pix, fidx + (size_t)s * B,
                                  labels + (size_t)s * B, B, s, sched[0], sched[1], &norm, NULL, NULL);
        double tol = s < 2 ? 1e-5 : 2e-2;
        fprintf(stderr, "  %s step %d: loss %.7f (PyTorch %.7f), grad norm %.7f (PyTorch %.7f)\n",
                cfg.name, s, (double)loss, (double)losses[s], norm, (double)norms[s]);
        if (fabs((double)loss - (double)losses[s]) > tol)
            fail_msg("step %d: loss %.7f, PyTorch %.7f (tolerance %g)", s, (double)loss, (double)losses[s], tol);
        if (s == 0 && fabs(norm - (double)norms[0]) > 1e-5)
            fail_msg("step 0: gradient norm %.7f, PyTorch %.7f", norm, (double)norms[0]);
    }
    free(mask);
    snn_adamw_free(&opt);
    snn_trainer_free(tr);
    free(images);
    free(labels);
    free(fidx);
    free(sched);
    free(losses);
    free(norms);
    free(yaml);
    snn_model_free(&m);
    snn_config_free(&cfg);
}

/* ---- memory per timestep and the firing rate of a step ------------------------------------ */

/* BPTT stores every timestep's activations: the trainer's buffers are a + b T, exactly (B * N =
 * 32 keeps every buffer a multiple of the 16-float alignment), with b > 0 and a > 0 (the
 * parameter gradients at least); snn_trainer_bytes_for(m, B, m->T) is what the trainer holds. */
static void test_trainer_bytes_are_linear_in_T(void **state) {
    (void)state;
    const char *kinds[] = {"bsa", "ssa", "sdsa", "softmax", "cat", "{kind: primal, s: 3}"};
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++)
        for (int sew = 0; sew < 2; sew++) {
            if (sew && k != 0) continue;
            snn_config cfg;
            const bool ann = k == 3 || k == 4 || k == 5;
            load_cfg(&cfg, kinds[k], sew ? "model.residual=sew" : ann ? "model.timesteps=1" : NULL);
            snn_model m;
            snn_err err = {{0}};
            assert_int_equal(snn_model_init(&m, &cfg, &err), SNN_OK);
            const int B = 8;
            snn_trainer *tr = snn_trainer_new(&m, B, false);
            assert_int_equal(snn_trainer_bytes_for(&m, B, m.T), snn_trainer_bytes(tr));
            snn_trainer_free(tr);
            const size_t b1 = snn_trainer_bytes_for(&m, B, 1), b2 = snn_trainer_bytes_for(&m, B, 2);
            const size_t per_t = b2 - b1;
            assert_true(b2 > b1);
            assert_true(b1 > per_t); /* a = b1 - per_t > 0 */
            assert_true(b1 - per_t >= m.n_params * sizeof(float));
            for (int T = 3; T <= 8; T++)
                assert_int_equal(snn_trainer_bytes_for(&m, B, T), b1 + (size_t)(T - 1) * per_t);
            /* twice the batch: every per-timestep buffer scales with B */
            const size_t per_t2 = snn_trainer_bytes_for(&m, 2 * B, 2) - snn_trainer_bytes_for(&m, 2 * B, 1);
            assert_int_equal(per_t2, 2 * per_t);
            snn_model_free(&m);
            snn_config_free(&cfg);
        }
}

/* The planner's 64-byte alignment of float buffers, in bytes. */
static size_t float_bytes(size_t n) { return (n + 15) / 16 * 16 * sizeof(float); }

/* Spikes kept for the backward pass are bits: smooth mode keeps every spiking population's
 * (real-valued) spikes as floats and needs no scratch slots, so its trainer minus the normal one
 * is exactly, with every term computed here from the model's populations:
 *   sum over populations of (T n floats - T words(n) 8 bytes per bit plane) - scratch slots
 *   + the BatchNorm outputs normal mode does not store
 *   + the H of the populations after those BatchNorms, which normal mode recomputes,
 * n = B * size, one plane for binary spikes and two for ternary (bipolar) ones; the slots are
 * the float views of q_lif, k_lif and v_lif [M, D] (and sdsa's kv_lif [T, B, D]) and the spike
 * path's scratch of the widest layer (snn_linear_spike_scratch_floats). B = 5 makes the rows of
 * bits end inside a word. */
static void test_spikes_are_stored_as_bits(void **state) {
    (void)state;
    const char *kinds[] = {"bsa", "ssa", "sdsa", "bsa"};
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
        snn_config cfg;
        load_cfg(&cfg, kinds[k], k == 3 ? "model.residual=sew;model.blocks=2" : NULL);
        snn_model m;
        snn_err err = {{0}};
        assert_int_equal(snn_model_init(&m, &cfg, &err), SNN_OK);
        const int B = 5;
        const size_t T = (size_t)m.T, M = T * B * m.N;
        snn_trainer *bits = snn_trainer_new(&m, B, false), *floats = snn_trainer_new(&m, B, true);
        assert_int_equal(snn_trainer_bytes_for(&m, B, m.T), snn_trainer_bytes(bits));
        size_t float_spikes = 0, bit_spikes = 0, ternary = 0;
        for (int p = 0; p < m.n_pops; p++) {
            const size_t n = (size_t)B * m.pops[p].size, np = m.pops[p].np.bipolar ? 2 : 1;
            float_spikes += float_bytes(T * n);
            bit_spikes += T * ((n + 63) / 64) * sizeof(uint64_t) * np;
            ternary += np == 2;
        }
        size_t slots = 3 * float_bytes(M * (size_t)m.D);
        if (cfg.model.attention.kind == SNN_ATTN_SDSA) slots += float_bytes(T * B * (size_t)m.D);
        const size_t sp_dd = snn_linear_spike_scratch_floats(m.D, m.D);
        const size_t sp_dh = snn_linear_spike_scratch_floats(m.D, m.Hd);
        slots += float_bytes(sp_dd > sp_dh ? sp_dd : sp_dh);
        /* BatchNorm outputs that only a population reads, or that only the residual stream
         * adds, are not stored in normal mode (the neurons normalise and apply gamma, beta; the
         * stream's sum is written in BatchNorm's pass): q, k, v, o, fc1 and fc2's, with SEW or
         * without */
        const size_t fused = (size_t)m.L * (5 * float_bytes(M * (size_t)m.D) +
                                            float_bytes(M * (size_t)m.Hd));
        /* populations after them: q, k, v and hidden_lif, with SEW o_lif and out_lif too
         * (their backward recomputes H from BatchNorm's xhat) */
        const size_t recomputed = (size_t)m.L * ((k == 3 ? 5 : 3) * float_bytes(M * (size_t)m.D) +
                                                 float_bytes(M * (size_t)m.Hd));
        fprintf(stderr, "  %s%s: %d populations (%zu ternary), spikes %zu bytes as floats, %zu as "
                "bits; trainer %zu -> %zu bytes\n", kinds[k], k == 3 ? " sew" : "", m.n_pops,
                ternary, float_spikes, bit_spikes, snn_trainer_bytes(floats),
                snn_trainer_bytes(bits));
        assert_int_equal(ternary, strcmp(kinds[k], "bsa") == 0 ? 2 * (size_t)m.L : 0);
        assert_int_equal(snn_trainer_bytes(floats) - snn_trainer_bytes(bits),
                         float_spikes - bit_spikes - slots + fused + recomputed);
        snn_trainer_free(bits);
        snn_trainer_free(floats);
        snn_model_free(&m);
        snn_config_free(&cfg);
    }
}

/* A minibatch of B = 5 in a trainer planned for 8, right after a step at 8 (whose bits stay past
 * each row's end), gives the loss and gradients of a trainer planned for exactly 5, bit for bit:
 * rows of spike bits are read at the planned stride and only up to the minibatch's length. */
static void test_smaller_minibatch_equals_exact_plan(void **state) {
    (void)state;
    const char *kinds[] = {"bsa", "sdsa", "bsa"};
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
        tiny t;
        tiny_load(&t, kinds[k], k == 2 ? "model.residual=sew;model.blocks=2" : NULL);
        snn_model *const m = &t.m;
        const snn_dataset *const ds = &t.ds;
        int32_t labels[8];
        for (int b = 0; b < 8; b++) labels[b] = ds->labels[b];
        snn_trainer *big = snn_trainer_new(m, 8, false), *exact = snn_trainer_new(m, 5, false);
        snn_trainer_zero_grads(big);
        snn_trainer_step(big, ds->pixels + 8 * (size_t)m->C * m->img * m->img, ds->index + 8, labels,
                         8, false, true, NULL);
        snn_trainer_zero_grads(big);
        snn_trainer_zero_grads(exact);
        const float lb = snn_trainer_step(big, ds->pixels, ds->index, labels, 5, false, true, NULL);
        const float le = snn_trainer_step(exact, ds->pixels, ds->index, labels, 5, false, true, NULL);
        assert_memory_equal(&lb, &le, sizeof lb);
        assert_memory_equal(snn_trainer_grads(big), snn_trainer_grads(exact),
                            m->n_params * sizeof(float));
        /* the gradients are not all zero (the comparison means something) */
        const float *g = snn_trainer_grads(exact);
        size_t nonzero = 0;
        for (size_t i = 0; i < m->n_params; i++) nonzero += g[i] != 0.0f;
        assert_true(nonzero > m->n_params / 2);
        snn_trainer_free(big);
        snn_trainer_free(exact);
        tiny_free(&t);
    }
}

/* Linear layers (and SSA's attention forward) reading spike inputs as bits give the bytes of
 * reading their floats: loss and every gradient of a step, for BSA, SSA and the SEW residual at
 * D = 64 and hidden 256 (rows of
 * whole words, so the bit path runs: the step's firing rate is well under the spike path's 25 %
 * density limit), with a minibatch smaller than the plan (bit rows ld words apart, wider than a
 * timestep's rows). */
static void test_spike_bits_equal_floats(void **state) {
    (void)state;
    const char *kinds[] = {"bsa", "ssa", "bsa"};
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
        tiny t;
        tiny_load(&t, kinds[k],
                  k == 2 ? "model.dim=64;model.mlp_ratio=4;model.residual=sew;model.blocks=2"
                         : "model.dim=64;model.mlp_ratio=4");
        snn_model *const m = &t.m;
        const snn_dataset *const ds = &t.ds;
        int32_t labels[8];
        for (int b = 0; b < 8; b++) labels[b] = ds->labels[b];
        snn_trainer *bits = snn_trainer_new(m, 8, false), *floats = snn_trainer_new(m, 8, false);
        snn_trainer_set_spike_bits(floats, false);
        snn_trainer_zero_grads(bits);
        snn_trainer_zero_grads(floats);
        const float lb =
            snn_trainer_step(bits, ds->pixels, ds->index, labels, 6, false, true, NULL);
        const float lf =
            snn_trainer_step(floats, ds->pixels, ds->index, labels, 6, false, true, NULL);
        assert_memory_equal(&lb, &lf, sizeof lb);
        assert_memory_equal(snn_trainer_grads(bits), snn_trainer_grads(floats),
                            m->n_params * sizeof(float));
        const double rate = snn_trainer_firing_rate(bits);
        assert_true(rate > 0.01 && rate < 0.2);
        snn_trainer_free(bits);
        snn_trainer_free(floats);
        tiny_free(&t);
    }
}

/* The inference plan (one block's buffers shared by every block, the stream alternating between
 * two buffers) gives the training plan's eval-mode logits bit for bit, for every attention kind
 * and both residuals, over 3 blocks (so that the alternation wraps), after one training step has
 * moved the running statistics; and it is less than half the size (2.4-4x here). */
static void test_inference_plan_equals_training_plan(void **state) {
    (void)state;
    const char *kinds[] = {"softmax", "cat", "{kind: primal, s: 3}", "bsa", "bsa", "ssa", "sdsa"};
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
        /* spiking models: a low threshold, so that spikes reach the head at initialisation */
        const char *sets = k < 3    ? "model.blocks=3;model.timesteps=1"
                           : k == 4 ? "model.residual=sew;model.blocks=3;model.neuron.v_threshold=0.2"
                                    : "model.blocks=3;model.neuron.v_threshold=0.2";
        tiny t;
        tiny_load(&t, kinds[k], sets);
        snn_model *const m = &t.m;
        const snn_dataset *const ds = &t.ds;
        int32_t labels[8];
        for (int b = 0; b < 8; b++) labels[b] = ds->labels[b];
        snn_trainer *train = snn_trainer_new(m, 8, false);
        snn_trainer_step(train, ds->pixels, ds->index, labels, 8, true, false, NULL);
        snn_trainer_set_eval(train, true);
        snn_trainer *infer = snn_trainer_new_inference(m, 8);
        const size_t pix = (size_t)m->C * m->img * m->img;
        const float lt = snn_trainer_step(train, ds->pixels + 8 * pix, ds->index + 8, labels, 7,
                                          false, false, NULL);
        const float li = snn_trainer_step(infer, ds->pixels + 8 * pix, ds->index + 8, labels, 7,
                                          false, false, NULL);
        assert_memory_equal(&lt, &li, sizeof lt);
        assert_memory_equal(snn_trainer_logits(train), snn_trainer_logits(infer),
                            7 * (size_t)m->classes * sizeof(float));
        /* the logits are not all equal (the comparison means something) */
        const float *lg = snn_trainer_logits(infer);
        size_t differ = 0;
        for (size_t i = 1; i < 7 * (size_t)m->classes; i++) differ += lg[i] != lg[0];
        fprintf(stderr, "  %s (%s): %zu of %zu logits differ from the first; plans %zu, %zu "
                "bytes\n", kinds[k], sets, differ, 7 * (size_t)m->classes - 1,
                snn_trainer_bytes(infer), snn_trainer_bytes(train));
        assert_true(differ > 0);
        assert_true(2 * snn_trainer_bytes(infer) < snn_trainer_bytes(train));
        snn_trainer_free(train);
        snn_trainer_free(infer);
        tiny_free(&t);
    }
}

/* The firing rate of a step in inference mode (running BatchNorm statistics) is the event-driven
 * engine's on the same samples, up to float summation order; ANN models have none. */
static void test_trainer_firing_rate_matches_engine(void **state) {
    (void)state;
    const char *kinds[] = {"bsa", "ssa", "softmax"};
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
        /* a model with weights large enough to fire (the tiny one is nearly silent) */
        char yaml[512];
        snprintf(yaml, sizeof yaml,
                 "name: t\nseed: 3\ndata: {source: synthetic, synthetic_samples: 24}\n"
                 "model: {image_size: 16, patch: 4, dim: 32, heads: 2, blocks: 2, mlp_ratio: 2,"
                 " timesteps: %d, init_std: 1.0, attention: {kind: %s}}\n",
                 k == 2 ? 1 : 3, kinds[k]);
        snn_config cfg;
        assert_int_equal(snn_config_load_string(&cfg, yaml, "inline", NULL, 0, stderr), 0);
        snn_err err = {{0}};
        snn_dataset ds = {0};
        assert_int_equal(snn_run_load_data(&cfg, &ds, &err), SNN_OK);
        snn_model m;
        assert_int_equal(snn_model_init(&m, &cfg, &err), SNN_OK);
        const int B = 16;
        int32_t labels[16];
        for (int b = 0; b < B; b++) labels[b] = ds.labels[b];
        snn_trainer *tr = snn_trainer_new(&m, B, false);
        snn_trainer_set_eval(tr, true);
        snn_trainer_step(tr, ds.pixels, ds.index, labels, B, false, false, NULL);
        const double rate = snn_trainer_firing_rate(tr);
        snn_trainer_free(tr);
        snn_dataset view = ds;
        view.n = B;
        snn_eval e;
        snn_eval_opts o = {.threads = 1};
        snn_evaluate(&m, &view, &o, &e);
        uint64_t spikes = 0, updates = 0;
        for (size_t j = 0; j < (size_t)m.n_pops * m.T; j++) spikes += e.pop_t_count[j];
        for (int l = 0; l < m.n_layers; l++) updates += e.ops[l].n[SNN_OP_NEURON];
        if (m.ann) {
            assert_true(rate == 0.0);
            assert_int_equal(updates, 0);
        } else {
            const double engine = (double)spikes / (double)updates;
            fprintf(stderr, "  %s: trainer %.6f, engine %.6f\n", kinds[k], rate, engine);
            assert_true(engine > 0.01);
            assert_true(fabs(rate - engine) <= 1e-3);
        }
        snn_eval_free(&e, &m);
        snn_model_free(&m);
        snn_dataset_free(&ds);
        snn_config_free(&cfg);
    }
}

static void test_first_losses_match_pytorch_bsa(void **state) {
    (void)state;
    check_golden_train("tests/reference/golden_train_bsa.h5");
}

static void test_first_losses_match_pytorch_ssa(void **state) {
    (void)state;
    check_golden_train("tests/reference/golden_train_ssa.h5");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole_network_gradients_ssa),
        cmocka_unit_test(test_whole_network_gradients_bsa),
        cmocka_unit_test(test_whole_network_gradients_sew),
        cmocka_unit_test(test_whole_network_gradients_sdsa),
        cmocka_unit_test(test_whole_network_gradients_softmax),
        cmocka_unit_test(test_whole_network_gradients_cat),
        cmocka_unit_test(test_whole_network_gradients_primal),
        cmocka_unit_test(test_plif_tau_is_a_trained_parameter),
        cmocka_unit_test(test_one_and_two_threads_train_identically),
        cmocka_unit_test(test_resume_equals_uninterrupted),
        cmocka_unit_test(test_loss_falls_on_a_learnable_task),
        cmocka_unit_test(test_trainer_bytes_are_linear_in_T),
        cmocka_unit_test(test_trainer_firing_rate_matches_engine),
        cmocka_unit_test(test_spikes_are_stored_as_bits),
        cmocka_unit_test(test_smaller_minibatch_equals_exact_plan),
        cmocka_unit_test(test_spike_bits_equal_floats),
        cmocka_unit_test(test_inference_plan_equals_training_plan),
        cmocka_unit_test(test_first_losses_match_pytorch_bsa),
        cmocka_unit_test(test_first_losses_match_pytorch_ssa),
    };
    return cmocka_run_group_tests_name("train", tests, NULL, NULL);
}
