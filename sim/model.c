/*
 * model.c: parameters, BatchNorm folding and the event-driven forward pass (spec section 2).
 *
 * Forward, per sample (direct encoding; rate encoding re-embeds the spike image each step):
 *
 *     U0 = BN_embed(patches @ embed.weight^T + embed.bias) + pos    once, in double, then float
 *     for t in 0..T-1:
 *         U = U0
 *         for each block (membrane shortcut):
 *             S  = lif_in(U)                         events
 *             Q, K, V = N(BN(S @ W^T + b))           event-driven linear, folded BN
 *             O  = kernel(Q, K, V) per head          attention/ (ssa or bsa)
 *             A  = attn_lif(O)
 *             U += BN_o(A @ o^T + b)
 *             S2 = mlp.lif_in(U)
 *             Hh = hidden_lif(BN_fc1(S2 @ fc1^T + b))
 *             U += BN_fc2(Hh @ fc2^T + b)
 *         head counts += head_lif(U)
 *     logits = (counts / (T N)) @ head^T + head.bias
 *
 * SEW residual (option, Spikformer): the stream X holds spike sums; block 0 starts from
 * lif_in(U0), branch outputs pass through o_lif / out_lif and are added to X, and the head
 * averages X directly. Synaptic inputs that are not +-1 (X >= 2) are billed as MACs.
 *
 * Numerics: float32 everywhere except the embedding, whose dot products run in double and are
 * rounded once, so the result does not depend on summation order (and matches the PyTorch
 * reference, which computes it in float64). Everything after it is float32 in a fixed order.
 */
#include "sim/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "attention/attention.h"
#include "attention/bits.h"
#include "sim/vec.h"
#if SNN_HAVE_AVX2_DISPATCH
#include <immintrin.h>
#endif
#include "datasets/dataset.h"
#include "attention/ann.h"
#include "attention/primal.h"
#include "attention/sdsa.h"
#include "neurons/neuron.h"
#include "sim/rng.h"
#include "sim/spikebits.h"

/* ---- parameter table --------------------------------------------------------------------- */

typedef struct tensor_list {
    snn_tensor *t;
    size_t n, cap;
    size_t total;        /* floats */
    size_t *offset;      /* [n] offsets into the arena, resolved to pointers at the end */
} tensor_list;

static size_t tl_add(tensor_list *tl, int rank, int64_t d0, int64_t d1, int64_t d2,
                     const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static size_t tl_add(tensor_list *tl, int rank, int64_t d0, int64_t d1, int64_t d2,
                     const char *fmt, ...) {
    if (tl->n == tl->cap) {
        tl->cap = tl->cap ? 2 * tl->cap : 64;
        tl->t = snn_xrealloc(tl->t, tl->cap * sizeof *tl->t);
        tl->offset = snn_xrealloc(tl->offset, tl->cap * sizeof *tl->offset);
    }
    char name[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    snn_tensor *t = &tl->t[tl->n];
    memset(t, 0, sizeof *t);
    t->name = snn_xstrdup(name);
    t->rank = rank;
    int64_t dims[3] = {d0, d1, d2};
    size_t count = 1;
    for (int i = 0; i < rank; i++) {
        t->dims[i] = dims[i];
        count *= (size_t)dims[i];
    }
    tl->offset[tl->n] = tl->total;
    tl->total += count;
    return tl->n++;
}

/* Indices of a linear layer's tensors: weight, bias and optionally 4 BatchNorm tensors. */
typedef struct linear_ids {
    size_t w, b, bn[4];
    bool has_bn;
    bool present;        /* false: the kernel has no such layer (cat: q, k; primal: v) */
} linear_ids;

static linear_ids add_linear(tensor_list *tl, const char *prefix, const char *bn_prefix, int in,
                             int out) {
    linear_ids id = {.present = true};
    id.w = tl_add(tl, 2, out, in, 0, "%s.weight", prefix);
    id.b = tl_add(tl, 1, out, 0, 0, "%s.bias", prefix);
    if (bn_prefix) {
        static const char *const bn_names[4] = {"weight", "bias", "running_mean", "running_var"};
        for (int i = 0; i < 4; i++) id.bn[i] = tl_add(tl, 1, out, 0, 0, "%s.%s", bn_prefix, bn_names[i]);
        id.has_bn = true;
    }
    return id;
}

static void bind_linear(snn_linear *lin, const tensor_list *tl, float *arena, linear_ids id) {
    if (!id.present) return;
    lin->out = (int)tl->t[id.w].dims[0];
    lin->in = (int)tl->t[id.w].dims[1];
    lin->weight = arena + tl->offset[id.w];
    lin->bias = arena + tl->offset[id.b];
    if (id.has_bn) {
        lin->bn_w = arena + tl->offset[id.bn[0]];
        lin->bn_b = arena + tl->offset[id.bn[1]];
        lin->bn_mean = arena + tl->offset[id.bn[2]];
        lin->bn_var = arena + tl->offset[id.bn[3]];
    }
}

/* ---- op table and populations ------------------------------------------------------------ */

static int add_layer(snn_model *m, snn_layer_kind kind, uint64_t dense_macs, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int add_layer(snn_model *m, snn_layer_kind kind, uint64_t dense_macs, const char *fmt, ...) {
    m->layers = snn_xrealloc(m->layers, (size_t)(m->n_layers + 1) * sizeof *m->layers);
    snn_layer *l = &m->layers[m->n_layers];
    memset(l, 0, sizeof *l);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->name, sizeof l->name, fmt, ap);
    va_end(ap);
    l->kind = kind;
    l->dense_macs = dense_macs;
    return m->n_layers++;
}

/* A population of tokens * width neurons (tokens = N, or 1 for sdsa's per-channel kv_lif). */
static int add_pop_tokens(snn_model *m, snn_neuron_params np, int tokens, int width,
                          const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int add_pop_tokens(snn_model *m, snn_neuron_params np, int tokens, int width,
                          const char *fmt, ...) {
    m->pops = snn_xrealloc(m->pops, (size_t)(m->n_pops + 1) * sizeof *m->pops);
    snn_pop *p = &m->pops[m->n_pops];
    memset(p, 0, sizeof *p);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->name, sizeof p->name, fmt, ap);
    va_end(ap);
    p->np = np;
    p->width = width;
    p->size = (size_t)tokens * (size_t)width;
    p->state_offset = m->state_size;
    m->state_size += p->size;
    p->layer = add_layer(m, SNN_LAYER_NEURON, 0, "%s", p->name);
    return m->n_pops++;
}

int snn_model_find_pop(const snn_model *m, const char *name) {
    for (int i = 0; i < m->n_pops; i++)
        if (strcmp(m->pops[i].name, name) == 0) return i;
    return -1;
}

/* ---- initialisation ---------------------------------------------------------------------- */

/* trunc_normal_(std) as timm and Spikformer call it: bounds a = -2, b = 2 are absolute, so for
 * std 0.02 this is a normal distribution in practice. Rejection sampling on successive
 * counters of the tensor's own stream: independent of thread count and of the order tensors
 * are initialised in. */
static void init_trunc_normal(float *x, size_t n, double std, uint64_t seed, const char *name) {
    uint64_t stream = snn_rng_stream(name), counter = 0;
    for (size_t i = 0; i < n; i++) {
        double z;
        do z = snn_rng_normal(seed, stream, counter++) * std;
        while (fabs(z) > 2.0);
        x[i] = (float)z;
    }
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Primal's E_h, R_h [M, s]: orthonormal columns (the official code initialises them
 * orthogonally), by modified Gram-Schmidt on Gaussian columns in double; with M < s the first
 * M columns are orthonormal and the rest are their normalised residuals (zero). */
static void init_orthonormal_columns(float *x, int H, int M, int S, uint64_t seed,
                                     const char *name) {
    const uint64_t stream = snn_rng_stream(name);
    double *a = snn_xmalloc((size_t)M * S * sizeof *a);
    for (int h = 0; h < H; h++) {
        for (size_t i = 0; i < (size_t)M * S; i++)
            a[i] = snn_rng_normal(seed, stream, (uint64_t)h * M * S + i);
        for (int j = 0; j < S; j++) {
            for (int k = 0; k < j && k < M; k++) {
                double dot = 0.0;
                for (int i = 0; i < M; i++) dot += a[(size_t)i * S + j] * a[(size_t)i * S + k];
                for (int i = 0; i < M; i++) a[(size_t)i * S + j] -= dot * a[(size_t)i * S + k];
            }
            double nrm = 0.0;
            for (int i = 0; i < M; i++) nrm += a[(size_t)i * S + j] * a[(size_t)i * S + j];
            nrm = j < M && nrm > 0.0 ? 1.0 / sqrt(nrm) : 0.0;
            for (int i = 0; i < M; i++) a[(size_t)i * S + j] *= nrm;
        }
        for (size_t i = 0; i < (size_t)M * S; i++) x[(size_t)h * M * S + i] = (float)a[i];
    }
    free(a);
}

/* Spikformer's scheme: linear weights and pos ~ trunc_normal(init_std), biases 0, BatchNorm
 * weight 1 and bias 0, running statistics (0, 1). Primal: E, R orthonormal columns, lambda
 * ~ U(0, 1) (the official code's choices). */
static void init_random(snn_model *m) {
    const snn_config *c = m->cfg;
    for (size_t i = 0; i < m->n_tensors; i++) {
        snn_tensor *t = &m->tensors[i];
        size_t n = 1;
        for (int r = 0; r < t->rank; r++) n *= (size_t)t->dims[r];
        bool is_bn = strstr(t->name, "_bn.") != NULL;
        if (ends_with(t->name, "running_var") || (is_bn && ends_with(t->name, ".weight"))) {
            for (size_t j = 0; j < n; j++) t->data[j] = 1.0f;
        } else if (t->rank == 3 && (ends_with(t->name, ".E") || ends_with(t->name, ".R"))) {
            init_orthonormal_columns(t->data, (int)t->dims[0], (int)t->dims[1], (int)t->dims[2],
                                     c->seed, t->name);
        } else if (ends_with(t->name, ".lambda")) {
            const uint64_t stream = snn_rng_stream(t->name);
            for (size_t j = 0; j < n; j++) t->data[j] = snn_rng_uniform(c->seed, stream, j);
        } else if (t->rank == 0 && ends_with(t->name, ".w")) {
            t->data[0] = snn_plif_w(c->model.neuron.tau);  /* PLIF starts at the configured tau */
        } else if (!is_bn && (ends_with(t->name, ".weight") || strcmp(t->name, "pos") == 0)) {
            init_trunc_normal(t->data, n, c->model.init_std, c->seed, t->name);
        } else {
            memset(t->data, 0, n * sizeof *t->data);
        }
    }
}

/* ---- build ------------------------------------------------------------------------------- */

/* MACs of one attention kernel (all heads, one timestep) run densely: what a dense accelerator
 * would multiply (the op table's dense_macs column). */
static uint64_t kernel_dense_macs(const snn_model *m, snn_attn_kind kind) {
    const uint64_t N = (uint64_t)m->N, D = (uint64_t)m->D, d = (uint64_t)m->d;
    const uint64_t s = (uint64_t)m->primal_s, M = (uint64_t)m->primal_M;
    switch (kind) {
    case SNN_ATTN_SDSA: return 2 * N * D;                 /* K*V, then Q*kv */
    case SNN_ATTN_CAT: return N * N * D;                  /* the circulant product, directly */
    case SNN_ATTN_PRIMAL:                                 /* We, Wr; e, r; the c map */
        return (uint64_t)m->heads * (2 * M * d * s + 2 * N * d * s + N * 2 * s * d);
    default: return 2 * N * N * D;                        /* Q K^T and A V */
    }
}

/* Carves a linear layer's folded [in, out] matrix and [out] bias from the folded arena. */
static void place_folded(snn_linear *lin, float **cursor) {
    if (!lin->weight) return; /* absent in this kernel */
    lin->wt = *cursor;
    *cursor += (size_t)lin->in * lin->out;
    lin->b = *cursor;
    *cursor += lin->out;
}

int snn_model_init(snn_model *m, const snn_config *cfg, snn_err *err) {
    memset(m, 0, sizeof *m);
    m->cfg = cfg;
    m->T = cfg->model.timesteps;
    m->N = snn_config_tokens(cfg);
    m->D = cfg->model.dim;
    m->heads = cfg->model.heads;
    m->d = m->D / m->heads;
    m->Hd = m->D * cfg->model.mlp_ratio;
    m->L = cfg->model.blocks;
    m->C = cfg->model.channels;
    m->P = cfg->model.patch;
    m->K = m->C * m->P * m->P;
    m->classes = cfg->model.classes;
    m->img = cfg->model.image_size;
    const snn_attn_kind kind = cfg->model.attention.kind;
    const bool bsa = kind == SNN_ATTN_BSA, ann = snn_attn_is_ann(kind);
    const bool sew = cfg->model.residual == SNN_RESIDUAL_SEW;
    m->ann = ann;
    m->primal_s = cfg->model.attention.low_rank;
    m->primal_M = m->N < m->primal_s * cfg->model.attention.rank_multi
                      ? m->N : m->primal_s * cfg->model.attention.rank_multi;
    m->attn_threshold = cfg->model.attention.attn_threshold > 0 ? cfg->model.attention.attn_threshold
                        : bsa                                  ? 0.125f
                                                               : 0.5f;
    m->ssa_scale = cfg->model.attention.scale > 0 ? cfg->model.attention.scale : 0.125f;
    if (bsa && cfg->model.attention.scale > 0)
        m->shift = (int)lround(-log2((double)cfg->model.attention.scale));
    else
        m->shift = snn_shiftmax_default_shift(m->d);

    const int N = m->N, D = m->D, Hd = m->Hd;
    m->blocks = snn_xcalloc((size_t)m->L, sizeof *m->blocks);
    tensor_list tl = {0};
    linear_ids embed = add_linear(&tl, "embed", "embed_bn", m->K, D);
    size_t pos_id = tl_add(&tl, 2, N, D, 0, "pos");
    linear_ids *blk = snn_xcalloc((size_t)m->L, 6 * sizeof *blk);
    size_t *extra = snn_xcalloc((size_t)m->L, 5 * sizeof *extra); /* cat: a; primal: E R lambda c */
    static const char *const attn_names[4] = {"q", "k", "v", "o"};
    const bool has_qk = kind != SNN_ATTN_CAT, has_v = kind != SNN_ATTN_PRIMAL;
    const int Hh = m->heads, d = m->d, M = m->primal_M, S = m->primal_s;
    for (int l = 0; l < m->L; l++) {
        char p[64], bp[64];
        for (int j = 0; j < 4; j++) {
            if ((j < 2 && !has_qk) || (j == 2 && !has_v)) continue;
            snprintf(p, sizeof p, "blocks.%d.attn.%s", l, attn_names[j]);
            snprintf(bp, sizeof bp, "blocks.%d.attn.%s_bn", l, attn_names[j]);
            blk[6 * l + j] = add_linear(&tl, p, bp, D, D);
        }
        if (kind == SNN_ATTN_CAT) extra[5 * l] = tl_add(&tl, 2, Hh, D, 0, "blocks.%d.attn.a.weight", l);
        if (kind == SNN_ATTN_PRIMAL) {
            extra[5 * l + 0] = tl_add(&tl, 3, Hh, M, S, "blocks.%d.attn.E", l);
            extra[5 * l + 1] = tl_add(&tl, 3, Hh, M, S, "blocks.%d.attn.R", l);
            extra[5 * l + 2] = tl_add(&tl, 2, Hh, S, 0, "blocks.%d.attn.lambda", l);
            extra[5 * l + 3] = tl_add(&tl, 2, d, 2 * S, 0, "blocks.%d.attn.c.weight", l);
            extra[5 * l + 4] = tl_add(&tl, 1, d, 0, 0, "blocks.%d.attn.c.bias", l);
        }
        snprintf(p, sizeof p, "blocks.%d.mlp.fc1", l);
        snprintf(bp, sizeof bp, "blocks.%d.mlp.fc1_bn", l);
        blk[6 * l + 4] = add_linear(&tl, p, bp, D, Hd);
        snprintf(p, sizeof p, "blocks.%d.mlp.fc2", l);
        snprintf(bp, sizeof bp, "blocks.%d.mlp.fc2_bn", l);
        blk[6 * l + 5] = add_linear(&tl, p, bp, Hd, D);
    }
    linear_ids head = add_linear(&tl, "head", NULL, D, m->classes);

    /* Populations and the op table, in forward order. */
    snn_neuron_params np = cfg->model.neuron;
    np.bipolar = false;
    snn_neuron_params np_attn = np;
    np_attn.v_threshold = m->attn_threshold;
    snn_neuron_params np_qk = np;
    if (bsa) {
        np_qk.bipolar = true;
        np_qk.v_threshold = cfg->model.attention.qk_threshold;
        np_qk.soft_reset = cfg->model.attention.qk_soft_reset;
        if (np_qk.soft_reset) np_qk.v_reset = 0.0f;
    }
    /* ANN models: the neuron slots of spec section 2 are identities or the activation */
    const int id_slot = SNN_SLOT_IDENTITY;
    const uint64_t dNN = (uint64_t)N;
    m->layer_embed = add_layer(m, SNN_LAYER_EMBED, dNN * (uint64_t)m->K * (uint64_t)D, "embed");
    for (int l = 0; l < m->L; l++) {
        snn_block *b = &m->blocks[l];
        b->pop_in = b->pop_mlp_in = b->pop_o = b->pop_out = b->pop_kv = -1;
        b->pop_q = b->pop_k = b->pop_v = -1;
        if (ann) b->pop_in = id_slot;
        else if (!sew || l == 0) b->pop_in = add_pop_tokens(m, np, N, D, "blocks.%d.lif_in", l);
        if (has_qk) {
            b->q.layer = add_layer(m, SNN_LAYER_LINEAR, dNN * D * D, "blocks.%d.attn.q", l);
            b->k.layer = add_layer(m, SNN_LAYER_LINEAR, dNN * D * D, "blocks.%d.attn.k", l);
        }
        if (kind == SNN_ATTN_CAT)
            b->layer_a = add_layer(m, SNN_LAYER_LINEAR, dNN * D * m->heads, "blocks.%d.attn.a", l);
        if (has_v) b->v.layer = add_layer(m, SNN_LAYER_LINEAR, dNN * D * D, "blocks.%d.attn.v", l);
        if (ann) {
            b->pop_q = b->pop_k = b->pop_v = id_slot;
        } else {
            b->pop_q = add_pop_tokens(m, np_qk, N, D, "blocks.%d.attn.q_lif", l);
            b->pop_k = add_pop_tokens(m, np_qk, N, D, "blocks.%d.attn.k_lif", l);
            b->pop_v = add_pop_tokens(m, np, N, D, "blocks.%d.attn.v_lif", l);
        }
        b->layer_kernel = add_layer(m, SNN_LAYER_ATTENTION, kernel_dense_macs(m, kind),
                                    "blocks.%d.attn.kernel", l);
        if (kind == SNN_ATTN_SDSA) {
            /* the kernel's own LIF_0.5 on sum_n K*V: one neuron per channel, not per token */
            snn_neuron_params np_kv = np;
            np_kv.v_threshold = 0.5f;
            b->pop_kv = add_pop_tokens(m, np_kv, 1, D, "blocks.%d.attn.kv_lif", l);
        }
        b->pop_attn = ann ? id_slot : add_pop_tokens(m, np_attn, N, D, "blocks.%d.attn.attn_lif", l);
        b->o.layer = add_layer(m, SNN_LAYER_LINEAR, dNN * D * D, "blocks.%d.attn.o", l);
        if (sew) b->pop_o = add_pop_tokens(m, np, N, D, "blocks.%d.attn.o_lif", l);
        if (ann) b->pop_mlp_in = id_slot;
        else if (!sew) b->pop_mlp_in = add_pop_tokens(m, np, N, D, "blocks.%d.mlp.lif_in", l);
        b->fc1.layer = add_layer(m, SNN_LAYER_LINEAR, dNN * D * Hd, "blocks.%d.mlp.fc1", l);
        if (ann) {
            b->pop_hidden = SNN_SLOT_ACTIVATION;
            b->layer_act = add_layer(m, SNN_LAYER_ACTIVATION, 0, "blocks.%d.mlp.act", l);
        } else {
            b->pop_hidden = add_pop_tokens(m, np, N, Hd, "blocks.%d.mlp.hidden_lif", l);
        }
        b->fc2.layer = add_layer(m, SNN_LAYER_LINEAR, dNN * Hd * D, "blocks.%d.mlp.fc2", l);
        if (sew) b->pop_out = add_pop_tokens(m, np, N, D, "blocks.%d.mlp.out_lif", l);
    }
    if (ann) {
        m->pop_head = SNN_SLOT_ACTIVATION;
        m->layer_head_act = add_layer(m, SNN_LAYER_ACTIVATION, 0, "head_act");
    } else {
        m->pop_head = sew ? -1 : add_pop_tokens(m, np, N, D, "head_lif");
    }
    m->head.layer = add_layer(m, SNN_LAYER_HEAD, (uint64_t)D * m->classes, "head");

    /* PLIF: one learnable w per population, tau = 1 + exp(-w) (SpikingJelly's ParametricLIFNode,
     * tau = 1 / sigmoid(w)), a 0-d tensor named "<population>.w" like its state_dict entry. */
    size_t *plif_ids = NULL;
    if (cfg->model.neuron.kind == SNN_NEURON_PLIF) {
        plif_ids = snn_xcalloc((size_t)m->n_pops, sizeof *plif_ids);
        for (int p = 0; p < m->n_pops; p++)
            plif_ids[p] = tl_add(&tl, 0, 0, 0, 0, "%s.w", m->pops[p].name);
    }

    m->n_params = tl.total;
    m->params = snn_xaligned(m->n_params * sizeof *m->params);
    m->tensors = tl.t;
    m->n_tensors = tl.n;
    for (size_t i = 0; i < tl.n; i++) m->tensors[i].data = m->params + tl.offset[i];

    /* Parameter views. */
    snn_linear emb = {0};
    bind_linear(&emb, &tl, m->params, embed);
    m->embed_w = emb.weight;
    m->embed_b = emb.bias;
    m->embed_bn_w = emb.bn_w;
    m->embed_bn_b = emb.bn_b;
    m->embed_bn_mean = emb.bn_mean;
    m->embed_bn_var = emb.bn_var;
    emb.layer = m->layer_embed;
    m->embed_spk = emb;
    m->pos = m->params + tl.offset[pos_id];
    for (int l = 0; l < m->L; l++) {
        snn_block *b = &m->blocks[l];
        snn_linear *lins[6] = {&b->q, &b->k, &b->v, &b->o, &b->fc1, &b->fc2};
        for (int j = 0; j < 6; j++) bind_linear(lins[j], &tl, m->params, blk[6 * l + j]);
        if (kind == SNN_ATTN_CAT) b->a_w = m->params + tl.offset[extra[5 * l]];
        if (kind == SNN_ATTN_PRIMAL) {
            float **views[5] = {&b->E, &b->R, &b->lambda, &b->c_w, &b->c_b};
            for (int j = 0; j < 5; j++) *views[j] = m->params + tl.offset[extra[5 * l + j]];
        }
    }
    bind_linear(&m->head, &tl, m->params, head);
    for (int p = 0; plif_ids && p < m->n_pops; p++) m->pops[p].plif_w = m->params + tl.offset[plif_ids[p]];
    free(plif_ids);
    free(extra);
    free(blk);
    free(tl.offset);

    /* Folded weights: one arena for every linear layer's [in, out] matrix and bias. */
    size_t folded = (size_t)m->K * D + D;
    for (int l = 0; l < m->L; l++) {
        snn_block *b = &m->blocks[l];
        snn_linear *lins[6] = {&b->q, &b->k, &b->v, &b->o, &b->fc1, &b->fc2};
        for (int j = 0; j < 6; j++) folded += (size_t)lins[j]->in * lins[j]->out + lins[j]->out;
    }
    folded += (size_t)D * m->classes + m->classes;
    m->folded = snn_xaligned(folded * sizeof *m->folded);
    float *f = m->folded;
    place_folded(&m->embed_spk, &f);
    for (int l = 0; l < m->L; l++) {
        snn_block *b = &m->blocks[l];
        snn_linear *lins[6] = {&b->q, &b->k, &b->v, &b->o, &b->fc1, &b->fc2};
        for (int j = 0; j < 6; j++) place_folded(lins[j], &f);
    }
    place_folded(&m->head, &f);
    SNN_ASSERT((size_t)(f - m->folded) == folded);
    m->embed_wt = snn_xaligned((size_t)m->K * D * sizeof *m->embed_wt);
    m->embed_bias = snn_xaligned((size_t)D * sizeof *m->embed_bias);

    if (cfg->model.weights) {
        if (snn_h5_read_parameters(cfg->model.weights, m->tensors, m->n_tensors, err) != SNN_OK) {
            snn_model_free(m);
            return SNN_ERR;
        }
    } else {
        init_random(m);
    }
    snn_model_fold(m);
    return SNN_OK;
}

void snn_model_free(snn_model *m) {
    for (size_t i = 0; i < m->n_tensors; i++) free((char *)m->tensors[i].name);
    free(m->tensors);
    free(m->params);
    free(m->blocks);
    free(m->pops);
    free(m->layers);
    free(m->folded);
    free(m->embed_wt);
    free(m->embed_bias);
    memset(m, 0, sizeof *m);
}

size_t snn_model_param_count(const snn_model *m) { return m->n_params; }

size_t snn_model_attention_weights(const snn_model *m) {
    size_t n = 0;
    for (size_t i = 0; i < m->n_tensors; i++) {
        const snn_tensor *t = &m->tensors[i];
        if (t->rank < 2 || strncmp(t->name, "blocks.0.attn.", 14) != 0 || strstr(t->name, "_bn."))
            continue;
        size_t c = 1;
        for (int r = 0; r < t->rank; r++) c *= (size_t)t->dims[r];
        n += c;
    }
    return n;
}

void snn_model_ann_ops(const snn_model *m, snn_ops *ops) {
    SNN_ASSERT(m->ann);
    memset(ops, 0, (size_t)m->n_layers * sizeof *ops);
    const snn_attn_kind kind = m->cfg->model.attention.kind;
    snn_ops kernel = {{0}};
    if (kind == SNN_ATTN_SOFTMAX) {
        snn_attn_softmax_count(m->N, m->d, &kernel);
    } else if (kind == SNN_ATTN_CAT) {
        snn_cat_plan *pl = snn_cat_plan_new(m->N, m->d);
        snn_attn_cat_count(pl, &kernel);
        snn_cat_plan_free(pl);
    } else {
        snn_primal_count(m->N, m->d, m->primal_s, m->primal_M, &kernel);
    }
    const bool gelu = m->cfg->model.activation == SNN_ACT_GELU;
    for (int l = 0; l < m->n_layers; l++) {
        const snn_layer *ly = &m->layers[l];
        snn_ops *o = &ops[l];
        switch (ly->kind) {
        case SNN_LAYER_ATTENTION:
            for (int c = 0; c < SNN_OP__COUNT; c++) o->n[c] = kernel.n[c] * (uint64_t)m->heads;
            break;
        case SNN_LAYER_ACTIVATION: {
            const uint64_t elems = (uint64_t)m->N * (l == m->layer_head_act ? m->D : m->Hd);
            if (gelu) {
                o->n[SNN_OP_EXP] = elems;
                o->n[SNN_OP_MAC] = 3 * elems;
            } else {
                o->n[SNN_OP_CMP] = elems;
            }
            break;
        }
        case SNN_LAYER_NEURON: break; /* an ANN model has none */
        default: o->n[SNN_OP_MAC] = ly->dense_macs;
        }
    }
}

/* ---- BatchNorm folding ------------------------------------------------------------------- */

/* PyTorch's BatchNorm1d at inference: y = (x - mean) / sqrt(var + eps) * weight + bias.
 * Folded into the linear layer: wt[i, o] = W[o, i] * a_o, b_o = (bias_o - mean_o) * a_o + beta_o
 * with a_o = weight_o / sqrt(var_o + eps), all in float32. */
static void fold_linear(snn_linear *lin) {
    if (!lin->weight) return;
    for (int o = 0; o < lin->out; o++) {
        float a = 1.0f, shift = lin->bias[o];
        if (lin->bn_w) {
            a = lin->bn_w[o] / sqrtf(lin->bn_var[o] + 1e-5f);
            shift = (lin->bias[o] - lin->bn_mean[o]) * a + lin->bn_b[o];
        }
        for (int i = 0; i < lin->in; i++) lin->wt[(size_t)i * lin->out + o] = lin->weight[(size_t)o * lin->in + i] * a;
        lin->b[o] = shift;
    }
}

void snn_model_fold(snn_model *m) {
    for (int p = 0; p < m->n_pops; p++)
        if (m->pops[p].plif_w) m->pops[p].np.tau = snn_plif_tau(*m->pops[p].plif_w);
    fold_linear(&m->embed_spk);
    for (int l = 0; l < m->L; l++) {
        snn_block *b = &m->blocks[l];
        fold_linear(&b->q);
        fold_linear(&b->k);
        fold_linear(&b->v);
        fold_linear(&b->o);
        fold_linear(&b->fc1);
        fold_linear(&b->fc2);
    }
    fold_linear(&m->head);
    /* The analog embedding in double: a_o = w_o / sqrt(var_o + eps) with eps = 1e-5 in double,
     * as PyTorch evaluates BatchNorm on float64 tensors (the reference does). */
    for (int o = 0; o < m->D; o++) {
        double a = (double)m->embed_bn_w[o] / sqrt((double)m->embed_bn_var[o] + 1e-5);
        for (int k = 0; k < m->K; k++)
            m->embed_wt[(size_t)k * m->D + o] = (double)m->embed_w[(size_t)o * m->K + k] * a;
        m->embed_bias[o] = ((double)m->embed_b[o] - (double)m->embed_bn_mean[o]) * a + (double)m->embed_bn_b[o];
    }
}

/* ---- workspace --------------------------------------------------------------------------- */

void snn_ws_init(snn_ws *ws, const snn_model *m) {
    memset(ws, 0, sizeof *ws);
    const size_t N = (size_t)m->N, D = (size_t)m->D, Hd = (size_t)m->Hd, K = (size_t)m->K;
    const size_t T = (size_t)m->T, TN = T * N;
    const size_t wmax = Hd > D ? Hd : D;
    /* a synaptic layer's input: T N tokens of at most wmax spikes, or (rate-coded embedding)
     * N tokens of K */
    const size_t in_max = TN * wmax > N * K ? TN * wmax : N * K;
    const size_t words_max = TN * snn_bits_words(wmax) > N * snn_bits_words(K)
                                 ? TN * snn_bits_words(wmax) : N * snn_bits_words(K);
    const size_t pix = (size_t)m->C * m->img * m->img;
    ws->x = snn_xaligned(pix * sizeof *ws->x);
    ws->patches = snn_xaligned(N * K * sizeof *ws->patches);
    const bool rate = m->cfg->data.encoding == SNN_ENCODING_RATE;
    ws->u0 = snn_xaligned((rate ? TN : N) * D * sizeof *ws->u0);
    ws->u = snn_xaligned(TN * D * sizeof *ws->u);
    ws->y = snn_xaligned(TN * (wmax > 3 * D ? wmax : 3 * D) * sizeof *ws->y);
    ws->o = snn_xaligned(TN * D * sizeof *ws->o);
    size_t pop_max = 0; /* multi-step: one population's membranes are live at a time */
    for (int p = 0; p < m->n_pops; p++)
        if (m->pops[p].size > pop_max) pop_max = m->pops[p].size;
    ws->state = snn_xaligned(pop_max * sizeof *ws->state);
    ws->hbuf = snn_xaligned(in_max * sizeof *ws->hbuf);
    ws->s_in = snn_xaligned(TN * D > N * K ? TN * D : N * K);
    ws->sq = snn_xaligned(TN * D);
    ws->sk = snn_xaligned(TN * D);
    ws->sv = snn_xaligned(TN * D);
    ws->sa = snn_xaligned(TN * D);
    ws->sh = snn_xaligned(TN * Hd);
    ws->sx = snn_xaligned(TN * D);
    ws->ev_nz = snn_xaligned(words_max * sizeof *ws->ev_nz);
    ws->ev_neg = snn_xaligned(words_max * sizeof *ws->ev_neg);
    ws->ev_kind = snn_xaligned(TN * sizeof *ws->ev_kind);
    ws->scores = snn_xaligned(N * N * sizeof *ws->scores);
    ws->head_count = snn_xaligned(D * sizeof *ws->head_count);
    ws->head_in = snn_xaligned(D * sizeof *ws->head_in);
    ws->embed_acc = snn_xaligned(D * sizeof *ws->embed_acc);
    ws->kv = snn_xaligned(T * D * sizeof *ws->kv);
    ws->skv = snn_xaligned(T * D * sizeof *ws->skv);
    ws->ops = snn_xcalloc((size_t)m->n_layers, sizeof *ws->ops);
    ws->pop_t_count = snn_xcalloc((size_t)m->n_pops * m->T, sizeof *ws->pop_t_count);
    ws->neuron_count = snn_xcalloc(m->state_size, sizeof *ws->neuron_count);
    ws->count8 = snn_xcalloc(m->state_size, sizeof *ws->count8);
}

void snn_ws_free(snn_ws *ws) {
    void *bufs[] = {ws->x,  ws->patches, ws->u0, ws->u,  ws->y,    ws->o,      ws->state,
                    ws->hbuf, ws->s_in,  ws->sq, ws->sk, ws->sv,   ws->sa,     ws->sh,
                    ws->sx, ws->ev_nz,   ws->ev_neg, ws->scores, ws->head_count, ws->head_in, ws->embed_acc,
                    ws->kv, ws->skv, ws->ops, ws->pop_t_count, ws->neuron_count,
                    ws->count8, ws->ev_kind};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(bufs[i]);
    memset(ws, 0, sizeof *ws);
}

/* ---- forward ----------------------------------------------------------------------------- */

/* Spike bit planes of a [N, width] spike matrix, the synaptic layers' event representation:
 * per token W = snn_bits_words(width) words of nz (bit c % 64 of word c / 64: spike c is
 * nonzero) and of neg (spike c is negative), zero past width. kind (NULL: not wanted) receives
 * per token EV_NEG if some spike is -1 and EV_OTHER if some is neither 0 nor +-1, so the
 * synaptic layer need not inspect its events one by one. A layer walks the set bits of nz: one
 * step per event and no index list written first (building lists cost the same at any firing
 * rate, which kept halving the rate from nearly halving the time). On x86 a compare tests
 * thirty-two spikes where the CPU has AVX2 (chosen at run time), sixteen otherwise (SSE2 is part
 * of x86-64); the portable loop gives the same bits and kinds. */
enum { EV_NEG = 1, EV_OTHER = 2 };

/* One word of a row's planes from spikes p[0..n), n <= 64 (the portable builder, and the part of
 * a row past its whole words): attention/bits.h's planes, with the check for SEW spike sums. */
static inline void word_planes(const int8_t *p, int n, uint64_t *wz, uint64_t *wn, int *other) {
    uint64_t pos;
    snn_pack_planes(p, n, &pos, wn);
    *wz = pos | *wn;
    int oth = 0;
    for (int c = 0; c < n; c++) oth |= p[c] > 1 || p[c] < -1;
    *other |= oth;
}

#if SNN_HAVE_AVX2_DISPATCH
/* The row's whole words with AVX2, 32 spikes per compare; returns the words done. */
__attribute__((target("avx2"))) static int row_planes_avx2(const int8_t *row, int width,
                                                           uint64_t *wz, uint64_t *wn, int *other) {
    const __m256i z = _mm256_setzero_si256(), p1 = _mm256_set1_epi8(1), m1 = _mm256_set1_epi8(-1);
    __m256i othv = z;
    int w = 0;
    for (; 64 * w + 64 <= width; w++) {
        const __m256i lo = _mm256_loadu_si256((const __m256i *)(const void *)(row + 64 * w));
        const __m256i hi = _mm256_loadu_si256((const __m256i *)(const void *)(row + 64 * w + 32));
        othv = _mm256_or_si256(othv, _mm256_or_si256(_mm256_cmpgt_epi8(lo, p1), _mm256_cmpgt_epi8(m1, lo)));
        othv = _mm256_or_si256(othv, _mm256_or_si256(_mm256_cmpgt_epi8(hi, p1), _mm256_cmpgt_epi8(m1, hi)));
        const uint64_t zlo = (uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(lo, z));
        const uint64_t zhi = (uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(hi, z));
        wz[w] = ~(zlo | zhi << 32);
        wn[w] = (uint64_t)(uint32_t)_mm256_movemask_epi8(lo) |
                (uint64_t)(uint32_t)_mm256_movemask_epi8(hi) << 32;
    }
    *other |= !_mm256_testz_si256(othv, othv);
    return w;
}
#endif

static void build_planes(int N, int width, const int8_t *s, uint64_t *nz, uint64_t *neg,
                         uint8_t *kind) {
    const int W = (int)snn_bits_words((size_t)width);
#if SNN_HAVE_AVX2_DISPATCH
    const int wide = snn_cpu_avx2();
#endif
    for (int n = 0; n < N; n++) {
        const int8_t *row = s + (size_t)n * width;
        uint64_t *wz = nz + (size_t)n * W, *wn = neg + (size_t)n * W;
        int w = 0, other = 0;
#if SNN_HAVE_AVX2_DISPATCH
        if (wide) w = row_planes_avx2(row, width, wz, wn, &other);
#endif
        for (; w < W; w++) {
            const int c0 = 64 * w;
            word_planes(row + c0, width - c0 < 64 ? width - c0 : 64, wz + w, wn + w, &other);
        }
        if (kind) {
            uint64_t any_neg = 0;
            for (w = 0; w < W; w++) any_neg |= wn[w];
            kind[n] = (uint8_t)((any_neg ? EV_NEG : 0) | (other ? EV_OTHER : 0));
        }
    }
}

static void linear_events(const snn_linear *lin, int N, const int8_t *s, const uint64_t *nz,
                          const uint64_t *neg, const uint8_t *kind, float *y, snn_ops *ops);

/* Event-driven synaptic layer: y[n, :] = b + sum over events (n, i) of s[n, i] * wt[i, :].
 * A +1 spike adds its weight row and a -1 spike subtracts it: one AC per (event, synapse).
 * Any other integer (SEW spike sums) multiplies the row: one MAC per synapse. Rows are
 * accumulated in channel order, so the result does not depend on threads. */
void snn_linear_forward_events(const snn_linear *lin, int N, const int8_t *s, uint64_t *nz,
                               uint64_t *neg, float *y, snn_ops *ops) {
    uint8_t *kind = snn_xmalloc((size_t)N); /* [N] */
    build_planes(N, lin->in, s, nz, neg, kind);
    linear_events(lin, N, s, nz, neg, kind, y, ops);
    free(kind);
}

/* Output columns per register block: the accumulators of one block (4 vectors of 16 floats:
 * AVX-512 registers, or 8 AVX2 ones in that clone) stay in registers while the token's events
 * stream through, so y is written once per token instead of once per event. */
enum { LIN_BLOCK = 64 };
typedef float lin_v8f __attribute__((vector_size(32)));
typedef float lin_v8fu __attribute__((vector_size(32), aligned(4))); /* unaligned access */
typedef uint32_t lin_v8u __attribute__((vector_size(32)));
typedef float lin_v16f __attribute__((vector_size(64)));
typedef float lin_v16fu __attribute__((vector_size(64), aligned(4))); /* unaligned access */
typedef uint32_t lin_v16u __attribute__((vector_size(64)));

/* One token's block of 64 outputs with 16-float vectors (the AVX-512 variant; four named
 * accumulators, which an array would put on the stack): yn[0..64) = bias + sum over the set
 * bits c of nz[0..W) of +-wt[c * out + 0..64), the sign (sgn) from bit c of neg. The bias is the
 * caller's copy in vectors (a local that y cannot alias), so a caller can keep it in registers
 * across tokens; by pointer, as 64-byte vectors passed by value change the ABI of non-AVX-512
 * code. */
static inline __attribute__((always_inline)) void
block64_wide(float *restrict yn, const lin_v16f *bias, const float *restrict wt, int out,
             const uint64_t *nz, const uint64_t *neg, int W, const bool sgn) {
#define LIN_LD(p, j) *(const lin_v16fu *)((p) + 16 * (j))
    lin_v16f a0 = bias[0], a1 = bias[1], a2 = bias[2], a3 = bias[3];
    for (int w = 0; w < W; w++) {
        const float *base = wt + (size_t)64 * w * out;
        for (uint64_t m = nz[w]; m; m &= m - 1) {
            const int c = __builtin_ctzll(m);
            const float *src = base + (size_t)c * out;
            if (sgn) {
                const lin_v16u f = (lin_v16u){0} + ((uint32_t)(neg[w] >> c) << 31);
                a0 += (lin_v16f)((lin_v16u)LIN_LD(src, 0) ^ f);
                a1 += (lin_v16f)((lin_v16u)LIN_LD(src, 1) ^ f);
                a2 += (lin_v16f)((lin_v16u)LIN_LD(src, 2) ^ f);
                a3 += (lin_v16f)((lin_v16u)LIN_LD(src, 3) ^ f);
            } else {
                a0 += LIN_LD(src, 0);
                a1 += LIN_LD(src, 1);
                a2 += LIN_LD(src, 2);
                a3 += LIN_LD(src, 3);
            }
        }
    }
    lin_v16fu *dst = (lin_v16fu *)yn;
    dst[0] = a0, dst[1] = a1, dst[2] = a2, dst[3] = a3;
#undef LIN_LD
}

/* K = 2 or 3 blocks of 64 outputs, binary spikes, walking each token's events once for all of
 * them (4 K accumulators of the 32 AVX-512 registers): block k's outputs y[k][0..64) = bias[4 k
 * ..] + the rows of weights w[k] (row stride out). Three layers' blocks on the same spikes (q,
 * k and v), or one layer's 128 outputs (w[1] = w[0] + 64). Each output's sum is block64_wide's:
 * the same additions in the same order. */
static inline __attribute__((always_inline)) void
blocks64_wide(float *const y[3], const lin_v16f *bias, const float *const w[3], int out,
              const uint64_t *nz, int W, const int K) {
#define LIN_LD(p, j) *(const lin_v16fu *)((p) + 16 * (j))
    lin_v16f a0 = bias[0], a1 = bias[1], a2 = bias[2], a3 = bias[3];
    lin_v16f b0 = bias[4], b1 = bias[5], b2 = bias[6], b3 = bias[7];
    lin_v16f c0 = {0}, c1 = {0}, c2 = {0}, c3 = {0};
    if (K > 2) c0 = bias[8], c1 = bias[9], c2 = bias[10], c3 = bias[11];
    for (int wd = 0; wd < W; wd++) {
        const size_t base = (size_t)64 * wd * out;
        for (uint64_t m = nz[wd]; m; m &= m - 1) {
            const size_t r = base + (size_t)__builtin_ctzll(m) * out;
            const float *s0 = w[0] + r, *s1 = w[1] + r;
            a0 += LIN_LD(s0, 0), a1 += LIN_LD(s0, 1), a2 += LIN_LD(s0, 2), a3 += LIN_LD(s0, 3);
            b0 += LIN_LD(s1, 0), b1 += LIN_LD(s1, 1), b2 += LIN_LD(s1, 2), b3 += LIN_LD(s1, 3);
            if (K > 2) {
                const float *s2 = w[2] + r;
                c0 += LIN_LD(s2, 0), c1 += LIN_LD(s2, 1), c2 += LIN_LD(s2, 2);
                c3 += LIN_LD(s2, 3);
            }
        }
    }
    lin_v16fu *d0 = (lin_v16fu *)y[0], *d1 = (lin_v16fu *)y[1];
    d0[0] = a0, d0[1] = a1, d0[2] = a2, d0[3] = a3;
    d1[0] = b0, d1[1] = b1, d1[2] = b2, d1[3] = b3;
    if (K > 2) {
        lin_v16fu *d2 = (lin_v16fu *)y[2];
        d2[0] = c0, d2[1] = c1, d2[2] = c2, d2[3] = c3;
    }
#undef LIN_LD
}

/* block64_wide with 8-float vectors (the AVX2 and portable variants: 8 named accumulators, AVX2's
 * registers; the portable variant spills some), the bias read from b[0..64): the same sums. */
static inline __attribute__((always_inline)) void
block64_narrow(float *restrict yn, const float *restrict b, const float *restrict wt, int out,
               const uint64_t *nz, const uint64_t *neg, int W, const bool sgn) {
#define LIN_LD8(p, j) *(const lin_v8fu *)((p) + 8 * (j))
    lin_v8f a0 = LIN_LD8(b, 0), a1 = LIN_LD8(b, 1), a2 = LIN_LD8(b, 2), a3 = LIN_LD8(b, 3),
            a4 = LIN_LD8(b, 4), a5 = LIN_LD8(b, 5), a6 = LIN_LD8(b, 6), a7 = LIN_LD8(b, 7);
    for (int w = 0; w < W; w++) {
        const float *base = wt + (size_t)64 * w * out;
        for (uint64_t m = nz[w]; m; m &= m - 1) {
            const int c = __builtin_ctzll(m);
            const float *src = base + (size_t)c * out;
            const lin_v8u f = (lin_v8u){0} + (sgn ? (uint32_t)(neg[w] >> c) << 31 : 0u);
#define LIN_ADD8(a, j) a += (lin_v8f)((lin_v8u)LIN_LD8(src, j) ^ f)
            LIN_ADD8(a0, 0), LIN_ADD8(a1, 1), LIN_ADD8(a2, 2), LIN_ADD8(a3, 3);
            LIN_ADD8(a4, 4), LIN_ADD8(a5, 5), LIN_ADD8(a6, 6), LIN_ADD8(a7, 7);
#undef LIN_ADD8
        }
    }
    lin_v8fu *dst = (lin_v8fu *)yn;
    dst[0] = a0, dst[1] = a1, dst[2] = a2, dst[3] = a3;
    dst[4] = a4, dst[5] = a5, dst[6] = a6, dst[7] = a7;
#undef LIN_LD8
}

/* yn[0..out) = b + sum over the set bits c of nz[0..W) of +-wt[c, :], for a token whose spikes
 * are all +1 (sgn = false) or +-1 (sgn = true; the sign is bit c of neg). Each output is summed
 * in channel order, as the scalar loop does: vector lanes run the same IEEE additions, and
 * x - w is x + (-w) exactly (IEEE 754 defines subtraction so), which is what flipping the sign
 * bit computes. */
static inline __attribute__((always_inline)) void
accumulate_rows(float *restrict yn, const float *restrict b, const float *restrict wt, int out,
                const uint64_t *nz, const uint64_t *neg, int W, const bool sgn, bool wide) {
    int o0 = 0;
    for (; o0 + LIN_BLOCK <= out; o0 += LIN_BLOCK)
        if (wide) {
            const lin_v16f bias[4] = {*(const lin_v16fu *)(b + o0), *(const lin_v16fu *)(b + o0 + 16),
                                      *(const lin_v16fu *)(b + o0 + 32),
                                      *(const lin_v16fu *)(b + o0 + 48)};
            block64_wide(yn + o0, bias, wt + o0, out, nz, neg, W, sgn);
        } else {
            block64_narrow(yn + o0, b + o0, wt + o0, out, nz, neg, W, sgn);
        }
    for (; o0 + 8 <= out; o0 += 8) {
        lin_v8f a = *(const lin_v8fu *)(b + o0);
        for (int w = 0; w < W; w++)
            for (uint64_t m = nz[w]; m; m &= m - 1) {
                const int c = __builtin_ctzll(m);
                const lin_v8f v = *(const lin_v8fu *)(wt + ((size_t)64 * w + c) * out + o0);
                if (sgn)
                    a += (lin_v8f)((lin_v8u)v ^ ((lin_v8u){0} + ((uint32_t)(neg[w] >> c) << 31)));
                else
                    a += v;
            }
        *(lin_v8fu *)(yn + o0) = a;
    }
    for (; o0 < out; o0++) {
        float a = b[o0];
        for (int w = 0; w < W; w++)
            for (uint64_t m = nz[w]; m; m &= m - 1) {
                const int c = __builtin_ctzll(m);
                const float v = wt[((size_t)64 * w + c) * out + o0];
                a = sgn && (neg[w] >> c & 1) ? a - v : a + v;
            }
        yn[o0] = a;
    }
}

/* linear_events' common case: every spike +1 (all kinds 0), out a multiple of LIN_BLOCK. One
 * block of 64 outputs at a time over all tokens: its bias stays in registers and its weight
 * columns ([in, 64], 16 KB for 64 inputs) in L1, and the loop does nothing per token but walk
 * its events and write its sums (the general loop's per-token tests and spilled state were
 * most of the layers' cost when few neurons fired). The same additions in the same order as
 * accumulate_rows. */
static SNN_WIDE_FN void linear_events_binary(const snn_linear *lin, int N, const uint64_t *nz,
                                             float *y, bool wide) {
    const int out = lin->out, W = (int)snn_bits_words((size_t)lin->in);
    int o0 = 0;
    if (wide) /* 128 outputs a pass while they last (fc1's 256) */
        for (; o0 + 2 * LIN_BLOCK <= out; o0 += 2 * LIN_BLOCK) {
            const float *b = lin->b + o0, *wt = lin->wt + o0;
            lin_v16f bias[8];
            for (int j = 0; j < 8; j++) bias[j] = *(const lin_v16fu *)(b + 16 * j);
            const float *const w2[3] = {wt, wt + LIN_BLOCK, NULL};
            for (int n = 0; n < N; n++) {
                float *const yn = y + (size_t)n * out + o0;
                float *const ys[3] = {yn, yn + LIN_BLOCK, NULL};
                blocks64_wide(ys, bias, w2, out, nz + (size_t)n * W, W, 2);
            }
        }
    for (; o0 < out; o0 += LIN_BLOCK) {
        const float *b = lin->b + o0, *wt = lin->wt + o0;
        if (wide) {
            const lin_v16f bias[4] = {*(const lin_v16fu *)b, *(const lin_v16fu *)(b + 16),
                                      *(const lin_v16fu *)(b + 32), *(const lin_v16fu *)(b + 48)};
            for (int n = 0; n < N; n++)
                block64_wide(y + (size_t)n * out + o0, bias, wt, out, nz + (size_t)n * W, NULL,
                             W, false);
        } else { /* the bias read per token (AVX2 has 16 registers) */
            for (int n = 0; n < N; n++)
                block64_narrow(y + (size_t)n * out + o0, b, wt, out, nz + (size_t)n * W, NULL, W,
                               false);
        }
    }
}

#if SNN_HAVE_AVX512_DISPATCH
#define LIN_VBMI2_FN __attribute__((target("avx2,popcnt,avx512f,avx512bw,avx512vl,avx512vbmi2")))
/* Inputs a token's event list takes (byte indices). */
enum { LIN_LIST_MAX = 256 };

/* linear_events_binary for inputs of 65 to 256 (2 to 4 plane words: fc2's 256), with AVX-512
 * VBMI2's byte compress: each token's events become one list of input indices, one compress
 * per word (no branch), walked by one loop. The loops over each word's bits had cost a
 * mispredicted exit per word, 4 per token at 256 inputs: most of the layer's cost that does not
 * follow the spikes. The same additions in the same order: the same bits. */
static LIN_VBMI2_FN void linear_events_binary_list(const snn_linear *lin, int N,
                                                   const uint64_t *nz, float *y) {
    const int out = lin->out, W = (int)snn_bits_words((size_t)lin->in);
    SNN_ASSERT(W <= LIN_LIST_MAX / 64 && out % LIN_BLOCK == 0);
    uint8_t list[LIN_LIST_MAX + 64]; /* the token's input indices (a compress stores 64 bytes) */
    __m512i iota = _mm512_set_epi8(63, 62, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49,
                                   48, 47, 46, 45, 44, 43, 42, 41, 40, 39, 38, 37, 36, 35, 34,
                                   33, 32, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19,
                                   18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2,
                                   1, 0);
    for (int n = 0; n < N; n++) {
        const uint64_t *z = nz + (size_t)n * W;
        int events = 0;
        __m512i at = iota;
        for (int w = 0; w < W; w++) {
            _mm512_storeu_si512(list + events, _mm512_maskz_compress_epi8(z[w], at));
            events += (int)_mm_popcnt_u64(z[w]);
            at = _mm512_add_epi8(at, _mm512_set1_epi8(64));
        }
        for (int o0 = 0; o0 < out; o0 += LIN_BLOCK) {
            const float *wt = lin->wt + o0, *b = lin->b + o0;
            __m512 a0 = _mm512_loadu_ps(b), a1 = _mm512_loadu_ps(b + 16);
            __m512 a2 = _mm512_loadu_ps(b + 32), a3 = _mm512_loadu_ps(b + 48);
            for (int e = 0; e < events; e++) {
                const float *src = wt + (size_t)list[e] * out;
                a0 = _mm512_add_ps(a0, _mm512_loadu_ps(src));
                a1 = _mm512_add_ps(a1, _mm512_loadu_ps(src + 16));
                a2 = _mm512_add_ps(a2, _mm512_loadu_ps(src + 32));
                a3 = _mm512_add_ps(a3, _mm512_loadu_ps(src + 48));
            }
            float *yn = y + (size_t)n * out + o0;
            _mm512_storeu_ps(yn, a0), _mm512_storeu_ps(yn + 16, a1);
            _mm512_storeu_ps(yn + 32, a2), _mm512_storeu_ps(yn + 48, a3);
        }
    }
}

static int lin_cpu_vbmi2(void) {
    return snn_cpu_avx512_popcnt() && __builtin_cpu_supports("avx512vbmi2");
}
#endif

/* Whether every token's spikes are 0 or +1 (kinds all 0). */
static bool tokens_binary(const uint8_t *kind, int N) {
    uint8_t any = 0;
    for (int n = 0; n < N; n++) any |= kind[n];
    return !any;
}

/* Events of N W plane words (the layer's ACs, counted apart from the walk): with the CPU's
 * popcount, vectorised where it has AVX-512's (the open-coded one had been 2 % of the bsa
 * forward, 6 % of its synaptic layers' time, at any firing rate). The same integer. */
static inline __attribute__((always_inline)) uint64_t count_events_body(const uint64_t *nz,
                                                                        size_t words, const int hw) {
    uint64_t events = 0;
    for (size_t i = 0; i < words; i++) events += (uint64_t)snn_popcount64_sel(nz[i], hw);
    return events;
}
#if SNN_HAVE_AVX512_DISPATCH
static SNN_AVX512_FN SNN_VEC_FN uint64_t count_events_avx512(const uint64_t *nz, size_t words) {
    return count_events_body(nz, words, 1);
}
#endif
#if SNN_HAVE_AVX2_DISPATCH
static SNN_AVX2_FN uint64_t count_events_avx2(const uint64_t *nz, size_t words) {
    return count_events_body(nz, words, 1);
}
#endif
static uint64_t count_events(const uint64_t *nz, size_t words) {
#if SNN_HAVE_AVX512_DISPATCH
    if (snn_cpu_avx512_popcnt()) return count_events_avx512(nz, words);
#endif
#if SNN_HAVE_AVX2_DISPATCH
    if (snn_cpu_avx2()) return count_events_avx2(nz, words);
#endif
    return count_events_body(nz, words, 0);
}

/* linear_events_binary for three layers of the same shape on the same spikes (q, k and v),
 * AVX-512 only (twelve accumulators of its 32 registers): each token's events walked once for
 * the three layers' 64-output blocks, where three passes each waited on one block's chain of
 * additions. The same additions in the same order: the same bits. */
static SNN_WIDE_FN void linear_events3_binary(const snn_linear *const lin[3], int N,
                                              const uint64_t *nz, float *const y[3]) {
    const int out = lin[0]->out, W = (int)snn_bits_words((size_t)lin[0]->in);
    for (int o0 = 0; o0 < out; o0 += LIN_BLOCK) {
        lin_v16f bias[12]; /* [layer, 4 vectors] */
        for (int j = 0; j < 3; j++)
            for (int u = 0; u < 4; u++)
                bias[4 * j + u] = *(const lin_v16fu *)(lin[j]->b + o0 + 16 * u);
        const float *const w3[3] = {lin[0]->wt + o0, lin[1]->wt + o0, lin[2]->wt + o0};
        for (int n = 0; n < N; n++) {
            const size_t at = (size_t)n * out + o0;
            float *const yn[3] = {y[0] + at, y[1] + at, y[2] + at};
            blocks64_wide(yn, bias, w3, out, nz + (size_t)n * W, W, 3);
        }
    }
}

static SNN_WIDE_FN void linear_events(const snn_linear *lin, int N, const int8_t *s,
                                      const uint64_t *nz, const uint64_t *neg, const uint8_t *kind,
                                      float *y, snn_ops *ops) {
    const int out = lin->out, W = (int)snn_bits_words((size_t)lin->in);
    const bool wide = snn_wide_avx512();
    if (kind && out % LIN_BLOCK == 0 && tokens_binary(kind, N)) {
        ops->n[SNN_OP_AC] += count_events(nz, (size_t)N * W) * (uint64_t)out;
#if SNN_HAVE_AVX512_DISPATCH
        if (W >= 2 && W <= LIN_LIST_MAX / 64 && lin_cpu_vbmi2()) {
            linear_events_binary_list(lin, N, nz, y);
            return;
        }
#endif
        linear_events_binary(lin, N, nz, y, wide);
        return;
    }
    uint64_t ac = 0, mac = 0;
    for (int n = 0; n < N; n++) {
        float *yn = y + (size_t)n * out;
        const int8_t *sn = s + (size_t)n * lin->in;
        const uint64_t *zn = nz + (size_t)n * W, *gn = neg + (size_t)n * W;
        uint64_t ne = 0;
        for (int w = 0; w < W; w++) ne += (uint64_t)snn_popcount64(zn[w]);
        /* What the token's spikes are: all +1 (the usual case), +-1, or other integers. */
        int negs = 0, other = 0;
        if (kind) {
            negs = kind[n] & EV_NEG;
            other = kind[n] & EV_OTHER;
        } else {
            for (int w = 0; w < W; w++) {
                negs |= gn[w] != 0;
                for (uint64_t m = zn[w]; m; m &= m - 1) {
                    const int8_t v = sn[64 * w + __builtin_ctzll(m)];
                    other |= v != 1 && v != -1;
                }
            }
        }
        if (!other) {
            if (negs)
                accumulate_rows(yn, lin->b, lin->wt, out, zn, gn, W, true, wide);
            else
                accumulate_rows(yn, lin->b, lin->wt, out, zn, gn, W, false, wide);
            ac += ne * (uint64_t)out;
            continue;
        }
        /* SEW spike sums: one event at a time, in channel order. */
        memcpy(yn, lin->b, (size_t)out * sizeof *yn);
        for (int w = 0; w < W; w++)
            for (uint64_t m = zn[w]; m; m &= m - 1) {
                const int i = 64 * w + __builtin_ctzll(m);
                const float *wr = lin->wt + (size_t)i * out;
                const int8_t v = sn[i];
                if (v == 1) {
                    for (int o = 0; o < out; o++) yn[o] += wr[o];
                    ac += (uint64_t)out;
                } else if (v == -1) {
                    for (int o = 0; o < out; o++) yn[o] -= wr[o];
                    ac += (uint64_t)out;
                } else {
                    const float fv = (float)v;
                    for (int o = 0; o < out; o++) yn[o] += fv * wr[o];
                    mac += (uint64_t)out;
                }
            }
    }
    ops->n[SNN_OP_AC] += ac;
    ops->n[SNN_OP_MAC] += mac;
}

/* linear_events for three layers of the same shape on the same spikes and planes, y[j] the
 * output of lin[j]: the fused walk where every spike is +1 on AVX-512, else one layer after
 * the other. */
static void linear_events3(const snn_linear *const lin[3], int N, const int8_t *s,
                           const uint64_t *nz, const uint64_t *neg, const uint8_t *kind,
                           float *const y[3], snn_ops *const ops[3]) {
    const int out = lin[0]->out, in = lin[0]->in;
    const bool same = lin[1]->out == out && lin[2]->out == out && lin[1]->in == in &&
                      lin[2]->in == in;
    if (same && snn_wide_avx512() && kind && out % LIN_BLOCK == 0 && tokens_binary(kind, N)) {
        const uint64_t acs = count_events(nz, (size_t)N * snn_bits_words((size_t)in)) *
                             (uint64_t)out;
        for (int j = 0; j < 3; j++) ops[j]->n[SNN_OP_AC] += acs;
        linear_events3_binary(lin, N, nz, y);
        return;
    }
    for (int j = 0; j < 3; j++) linear_events(lin[j], N, s, nz, neg, kind, y[j], ops[j]);
}

void snn_linear3_forward_events(const snn_linear *const lin[3], int N, const int8_t *s,
                                uint64_t *nz, uint64_t *neg, float *const y[3],
                                snn_ops *const ops[3]) {
    SNN_ASSERT(lin[1]->in == lin[0]->in && lin[2]->in == lin[0]->in);
    uint8_t *kind = snn_xmalloc((size_t)N); /* [N] */
    build_planes(N, lin[0]->in, s, nz, neg, kind);
    linear_events3(lin, N, s, nz, neg, kind, y, ops);
    free(kind);
}

/* The benchmark baseline: the same layer run densely, every (input, synapse) position
 * multiplied, through BLAS. */
void snn_linear_forward_dense(const snn_linear *lin, int N, const int8_t *s, float *sf, float *y,
                              snn_ops *ops) {
    const size_t n_in = (size_t)N * lin->in;
    for (size_t i = 0; i < n_in; i++) sf[i] = (float)s[i];
    for (int n = 0; n < N; n++) memcpy(y + (size_t)n * lin->out, lin->b, (size_t)lin->out * sizeof *y);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, lin->out, lin->in, 1.0f, sf,
                lin->in, lin->wt, lin->out, 1.0f, y, lin->out);
    ops->n[SNN_OP_MAC] += (uint64_t)N * lin->in * lin->out;
}

/* Synaptic-layer timer (benchmark only, ws->time_syn): the start tick, or 0 without a read
 * when the workspace does not time. */
typedef uint64_t syn_mark;
static syn_mark syn_start(const snn_ws *ws) { return ws->time_syn ? snn_ticks() : 0; }
static void syn_stop(snn_ws *ws, syn_mark t0) {
    if (ws->time_syn) ws->syn_ticks += snn_ticks() - t0;
}

/* The synaptic layer lin on rows [rows, lin->in] of spikes s (T N tokens; N for a rate-coded
 * embedding, one timestep at a time); planes_ready: the population that fired s wrote their bit
 * planes already (pop_step_planes). */
static void linear_forward(snn_ws *ws, const snn_linear *lin, int rows, const int8_t *s,
                           bool planes_ready, float *y) {
    snn_ops *ops = &ws->ops[lin->layer];
    const syn_mark t0 = syn_start(ws);
    if (ws->dense) {
        snn_linear_forward_dense(lin, rows, s, ws->hbuf, y, ops);
    } else {
        if (!planes_ready) build_planes(rows, lin->in, s, ws->ev_nz, ws->ev_neg, ws->ev_kind);
        linear_events(lin, rows, s, ws->ev_nz, ws->ev_neg, ws->ev_kind, y, ops);
    }
    syn_stop(ws, t0);
}

/* cnt[i] += (s[i] != 0) for i < n: the per-neuron spike counts, in bytes (it runs for every
 * population at every timestep; flush_counts widens them once per sample). */
static SNN_WIDE_FN SNN_VEC_FN void count_spikes(uint8_t *restrict cnt, const int8_t *restrict s,
                                                size_t n) {
    for (size_t i = 0; i < n; i++) cnt[i] = (uint8_t)(cnt[i] + (s[i] != 0));
}

/* total[i] += cnt[i], cnt[i] = 0 for i < n. */
static SNN_WIDE_FN SNN_VEC_FN void flush_counts(uint64_t *restrict total, uint8_t *restrict cnt,
                                                size_t n) {
    for (size_t i = 0; i < n; i++) {
        total[i] += cnt[i];
        cnt[i] = 0;
    }
}

void snn_ws_flush_counts(snn_ws *ws, const snn_model *m) {
    flush_counts(ws->neuron_count, ws->count8, m->state_size);
    ws->count8_steps = 0;
}

/* Population p over every timestep (SpikingJelly's multi-step mode: a layer runs all T steps
 * before the next layer starts, so its weights and membranes stay in cache for T steps). x [T,
 * size] input currents, s [T, size] spikes; with planes_nz (else NULL), the spikes' flat bit
 * planes into planes_nz, planes_neg [T * size / 64] (size a multiple of 64). Counts one neuron
 * update and one threshold compare per neuron and step (two for bipolar), records if asked. */
static void pop_update(const snn_model *m, snn_ws *ws, int p, const float *x, int8_t *s,
                       uint64_t *planes_nz, uint64_t *planes_neg, const snn_record *rec) {
    const snn_pop *pop = &m->pops[p];
    const size_t size = pop->size;
    float *v = ws->state; /* the population's membranes live while it runs its T steps */
    snn_neuron_reset_state(&pop->np, size, v);
    uint8_t *cnt = ws->count8 + pop->state_offset;
    snn_ops *ops = &ws->ops[pop->layer];
    for (int t = 0; t < m->T; t++) {
        const float *xt = x + (size_t)t * size;
        int8_t *st = s + (size_t)t * size;
        const size_t nz = planes_nz ? snn_neuron_step_planes(&pop->np, size, xt, v, st,
                                                             planes_nz + (size_t)t * size / 64,
                                                             planes_neg + (size_t)t * size / 64)
                                    : snn_neuron_step(&pop->np, size, xt, v, st, NULL);
        ws->pop_t_count[(size_t)p * m->T + t] += nz;
        if (nz) count_spikes(cnt, st, size);
        /* more than 255 steps in one sample: widen this population's byte counters in time
         * (snn_model_forward flushed them all before the sample) */
        if (m->T > 255 && (t + 1) % 255 == 0)
            flush_counts(ws->neuron_count + pop->state_offset, cnt, size);
        if (rec && rec->v && rec->v[p]) memcpy(rec->v[p] + (size_t)t * size, v, size * sizeof *v);
    }
    ops->n[SNN_OP_NEURON] += (uint64_t)m->T * size;
    ops->n[SNN_OP_CMP] += (uint64_t)m->T * size * (pop->np.bipolar ? 2u : 1u);
    if (rec && rec->spikes && rec->spikes[p]) memcpy(rec->spikes[p], s, (size_t)m->T * size);
}

static void pop_step(const snn_model *m, snn_ws *ws, int p, const float *x, int8_t *s,
                     const snn_record *rec) {
    pop_update(m, ws, p, x, s, NULL, NULL, rec);
}

/* pop_step for a population whose spikes a synaptic layer reads next: where a token's spikes
 * fill whole 64-bit words (width a multiple of 64), the population's flat bit planes are the
 * layer's per-token planes, so the neuron step writes them (from the compare it makes anyway)
 * and the layer skips build_planes. Returns whether it did. Only binary populations feed
 * synaptic layers (bipolar ones, Q and K, feed the attention kernel): every event is a +1, so
 * every token's kind is 0; a bipolar one takes the general path. */
static bool pop_step_planes(const snn_model *m, snn_ws *ws, int p, const float *x, int8_t *s,
                            int width, const snn_record *rec) {
    SNN_ASSERT(m->pops[p].size == (size_t)m->N * width);
    if (ws->dense || width % 64 || m->pops[p].np.bipolar) {
        pop_step(m, ws, p, x, s, rec);
        return false;
    }
    pop_update(m, ws, p, x, s, ws->ev_nz, ws->ev_neg, rec);
    memset(ws->ev_kind, 0, (size_t)m->T * m->N);
    return true;
}

/* q, k and v read the same input x [T, N, D]: its bit planes are built once, the three layers
 * run back to back (one timed span) into ws->y [3, T, N, D], then their populations fire. */
static void qkv_forward(const snn_model *m, snn_ws *ws, const snn_block *b, const int8_t *x,
                        bool planes_ready, const snn_record *rec) {
    const snn_linear *qkv[3] = {&b->q, &b->k, &b->v};
    int8_t *out[3] = {ws->sq, ws->sk, ws->sv};
    const int pops[3] = {b->pop_q, b->pop_k, b->pop_v};
    const int TN = m->T * m->N;
    const size_t TND = (size_t)TN * m->D;
    const syn_mark t0 = syn_start(ws);
    if (!ws->dense && !planes_ready) build_planes(TN, m->D, x, ws->ev_nz, ws->ev_neg, ws->ev_kind);
    float *const ys[3] = {ws->y, ws->y + TND, ws->y + 2 * TND};
    snn_ops *const ops[3] = {&ws->ops[b->q.layer], &ws->ops[b->k.layer], &ws->ops[b->v.layer]};
    if (ws->dense)
        for (int j = 0; j < 3; j++) snn_linear_forward_dense(qkv[j], TN, x, ws->hbuf, ys[j], ops[j]);
    else
        linear_events3(qkv, TN, x, ws->ev_nz, ws->ev_neg, ws->ev_kind, ys, ops);
    syn_stop(ws, t0);
    for (int j = 0; j < 3; j++) pop_step(m, ws, pops[j], ws->y + j * TND, out[j], rec);
}

/* Spec section 2 patch order: patch (gy, gx) row-major; inside a patch channel, then row,
 * then column (PyTorch x.unfold(1,P,P).unfold(2,P,P).permute(1,2,0,3,4)). */
static void patchify(const snn_model *m, const float *x, float *patches) {
    const int P = m->P, G = m->img / P, H = m->img;
    for (int gy = 0; gy < G; gy++)
        for (int gx = 0; gx < G; gx++) {
            float *dst = patches + (size_t)(gy * G + gx) * m->K;
            for (int c = 0; c < m->C; c++)
                for (int r = 0; r < P; r++)
                    for (int q = 0; q < P; q++)
                        *dst++ = x[((size_t)c * H + gy * P + r) * H + gx * P + q];
        }
}

/* acc[o] += xk w[o] for o < D: one output per lane, so each output's sum keeps its k order
 * (vectorised, the same bits as the scalar loop, which gcc left scalar: 5 % of the bsa forward). */
static SNN_WIDE_FN SNN_VEC_FN void embed_axpy(int D, double xk, const double *restrict w,
                                              double *restrict acc) {
    for (int o = 0; o < D; o++) acc[o] += xk * w[o];
}

/* u[o] = (float)acc[o] + pos[o] for o < D (vectorised: gcc left the scalar loop, 1.5 % of the
 * bsa forward; the same roundings). */
static SNN_WIDE_FN SNN_VEC_FN void embed_round(int D, const double *restrict acc,
                                               const float *restrict pos, float *restrict u) {
    for (int o = 0; o < D; o++) u[o] = (float)acc[o] + pos[o];
}

/* Analog embedding U0 = BN(patches @ W^T + b) + pos: dot products in double, rounded once. */
static void embed_analog(const snn_model *m, snn_ws *ws) {
    const int N = m->N, D = m->D, K = m->K;
    double *acc = ws->embed_acc;
    for (int n = 0; n < N; n++) {
        const float *x = ws->patches + (size_t)n * K;
        memcpy(acc, m->embed_bias, (size_t)D * sizeof *acc);
        for (int k = 0; k < K; k++) {
            const double xk = x[k];
            if (xk == 0.0) continue; /* a zero pixel contributes exactly nothing */
            embed_axpy(D, xk, m->embed_wt + (size_t)k * D, acc);
        }
        embed_round(D, acc, m->pos + (size_t)n * D, ws->u0 + (size_t)n * D);
    }
    ws->ops[m->layer_embed].n[SNN_OP_MAC] += (uint64_t)N * K * D;
}

/* Rate-coded embedding of timestep t: the input is a spike image, so the embedding is an
 * event-driven synaptic layer (ACs) evaluated every timestep, into u0 [T, N, D] row t. */
static void embed_spikes(const snn_model *m, snn_ws *ws, int t) {
    const int N = m->N, D = m->D, K = m->K;
    int8_t *s = ws->s_in;
    float *u0 = ws->u0 + (size_t)t * N * D;
    for (size_t i = 0; i < (size_t)N * K; i++) s[i] = (int8_t)(ws->patches[i] != 0.0f);
    linear_forward(ws, &m->embed_spk, N, s, false, u0);
    for (size_t i = 0; i < (size_t)N * D; i++) u0[i] += m->pos[i];
}

/* Block l's attention kernel on ws->sq, sk, sv [T, N, D] into ws->o [T, N, D], timestep by
 * timestep. */
static void attention(const snn_model *m, snn_ws *ws, int l, const snn_record *rec) {
    const snn_block *b = &m->blocks[l];
    snn_ops *ops = &ws->ops[b->layer_kernel];
    const int N = m->N, D = m->D, d = m->d, T = m->T;
    const size_t ND = (size_t)N * D;
    const snn_attn_kind kind = m->cfg->model.attention.kind;
    if (kind == SNN_ATTN_SDSA) {
        /* per t: kv = sum_n K*V per channel, into ws->kv [T, D]; kv_lif (one neuron per
         * channel, state across t) fires ws->skv [T, D]; then O = Q masked by its spikes
         * (attention/sdsa.h) */
        for (int t = 0; t < T; t++)
            for (int h = 0; h < m->heads; h++)
                snn_sdsa_kv_head(1, N, d, ws->sk + t * ND + h * d, ws->sv + t * ND + h * d, D, 0,
                                 ws->kv + (size_t)t * D + h * d, D, ops);
        pop_step(m, ws, b->pop_kv, ws->kv, ws->skv, rec);
        for (int t = 0; t < T; t++)
            for (int h = 0; h < m->heads; h++)
                snn_sdsa_mask_head(1, N, d, ws->sq + t * ND + h * d, D, 0,
                                   ws->skv + (size_t)t * D + h * d, D, ws->o + t * ND + h * d, D,
                                   0);
        return;
    }
    for (int t = 0; t < T; t++)
        for (int h = 0; h < m->heads; h++) {
            const size_t off = t * ND + (size_t)h * d;
            if (kind == SNN_ATTN_BSA)
                snn_attn_bsa_head(N, d, ws->sq + off, ws->sk + off, ws->sv + off, D, m->shift,
                                  m->cfg->model.attention.rounding, ws->o + off, D, ws->scores,
                                  ops);
            else
                snn_attn_ssa_head(N, d, ws->sq + off, ws->sk + off, ws->sv + off, D, m->ssa_scale,
                                  ws->o + off, D, ws->scores, ops);
        }
}

static SNN_WIDE_FN SNN_VEC_FN void add_into(float *restrict u, const float *restrict y, size_t n) {
    for (size_t i = 0; i < n; i++) u[i] += y[i];
}

/* SEW stream update X += spikes (spike sums stay small: at most 1 + 2L). */
static void add_spikes(int8_t *x, const int8_t *s, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = (int8_t)(x[i] + s[i]);
}

/* Block l over all T timesteps: every buffer is [T, N, width]. */
static void block_ms(const snn_model *m, snn_ws *ws, int l, const snn_record *rec) {
    const snn_block *b = &m->blocks[l];
    const int D = m->D, Hd = b->fc1.out, TN = m->T * m->N;
    const size_t TND = (size_t)TN * D;
    bool ready = pop_step_planes(m, ws, b->pop_in, ws->u, ws->s_in, D, rec);
    qkv_forward(m, ws, b, ws->s_in, ready, rec);
    attention(m, ws, l, rec);
    ready = pop_step_planes(m, ws, b->pop_attn, ws->o, ws->sa, D, rec);
    linear_forward(ws, &b->o, TN, ws->sa, ready, ws->y);
    add_into(ws->u, ws->y, TND);
    ready = pop_step_planes(m, ws, b->pop_mlp_in, ws->u, ws->s_in, D, rec);
    linear_forward(ws, &b->fc1, TN, ws->s_in, ready, ws->y);
    ready = pop_step_planes(m, ws, b->pop_hidden, ws->y, ws->sh, Hd, rec);
    linear_forward(ws, &b->fc2, TN, ws->sh, ready, ws->y);
    add_into(ws->u, ws->y, TND);
}

static void block_sew(const snn_model *m, snn_ws *ws, int l, const snn_record *rec) {
    const snn_block *b = &m->blocks[l];
    const int D = m->D, Hd = b->fc1.out, TN = m->T * m->N;
    const size_t TND = (size_t)TN * D;
    /* the stream sx is a sum of spikes from block 1 on: its planes are built from it */
    bool ready = false;
    if (l == 0) ready = pop_step_planes(m, ws, b->pop_in, ws->u, ws->sx, D, rec);
    qkv_forward(m, ws, b, ws->sx, ready, rec);
    attention(m, ws, l, rec);
    ready = pop_step_planes(m, ws, b->pop_attn, ws->o, ws->sa, D, rec);
    linear_forward(ws, &b->o, TN, ws->sa, ready, ws->y);
    pop_step(m, ws, b->pop_o, ws->y, ws->s_in, rec);
    add_spikes(ws->sx, ws->s_in, TND);
    linear_forward(ws, &b->fc1, TN, ws->sx, false, ws->y);
    ready = pop_step_planes(m, ws, b->pop_hidden, ws->y, ws->sh, Hd, rec);
    linear_forward(ws, &b->fc2, TN, ws->sh, ready, ws->y);
    pop_step(m, ws, b->pop_out, ws->y, ws->s_in, rec);
    add_spikes(ws->sx, ws->s_in, TND);
}

/* count[o] += sum_n hs[n, o] over the head's spikes hs [N, D]; returns the number of nonzero
 * spikes (one integer add each). Branch-free so that it vectorises: adding a 0 changes nothing. */
static SNN_WIDE_FN SNN_VEC_FN uint64_t head_accumulate(int32_t *restrict count,
                                                       const int8_t *restrict hs, int N, int D) {
    uint32_t adds = 0;  /* at most N D per call */
    for (int n = 0; n < N; n++) {
        const int8_t *row = hs + (size_t)n * D;
        for (int o = 0; o < D; o++) {
            count[o] += row[o];
            adds += row[o] != 0;
        }
    }
    return adds;
}

void snn_model_forward(const snn_model *m, snn_ws *ws, const uint8_t *pixels, int64_t file_index,
                       float *logits, const snn_record *rec) {
    const snn_config *c = m->cfg;
    const int N = m->N, D = m->D, T = m->T;
    const size_t ND = (size_t)N * D, pix = (size_t)m->C * m->img * m->img;
    const bool rate = c->data.encoding == SNN_ENCODING_RATE;
    const bool sew = c->model.residual == SNN_RESIDUAL_SEW;

    memset(ws->head_count, 0, (size_t)D * sizeof *ws->head_count);
    /* byte counters hold at most 255 timesteps: widen them first when this sample's T would
     * overflow them. Flushing once per 255 timesteps, not once per sample, matters: the
     * counters are every neuron's (60,000 for bench_bsa), and a per-sample flush was 4 % of
     * inference. */
    if (ws->count8_steps + T > 255) snn_ws_flush_counts(ws, m);
    ws->count8_steps += T;

    /* the residual stream u [T, N, D] starts as the embedding of each timestep */
    if (!rate) {
        snn_encode_direct_pixels(pixels, pix, ws->x);
        patchify(m, ws->x, ws->patches);
        embed_analog(m, ws);
        for (int t = 0; t < T; t++) memcpy(ws->u + t * ND, ws->u0, ND * sizeof *ws->u);
    } else {
        for (int t = 0; t < T; t++) {
            snn_encode_rate_pixels(pixels, pix, file_index, t, c->seed, ws->x);
            patchify(m, ws->x, ws->patches);
            embed_spikes(m, ws, t);
        }
        memcpy(ws->u, ws->u0, (size_t)T * ND * sizeof *ws->u);
    }
    if (sew) memset(ws->sx, 0, (size_t)T * ND);
    for (int l = 0; l < m->L; l++) {
        if (sew)
            block_sew(m, ws, l, rec);
        else
            block_ms(m, ws, l, rec);
    }
    const int8_t *hs = ws->sx;
    if (!sew) {
        pop_step(m, ws, m->pop_head, ws->u, ws->s_in, rec);
        hs = ws->s_in;
    }
    for (int t = 0; t < T; t++)
        ws->ops[m->head.layer].n[SNN_OP_INT_ADD] +=
            head_accumulate(ws->head_count, hs + t * ND, N, D);
    /* logits = mean_t mean_n spikes @ head^T + bias; the mean is exact integer / (T N). */
    const float denom = (float)(T * N);
    for (int o = 0; o < D; o++) ws->head_in[o] = (float)ws->head_count[o] / denom;
    for (int k = 0; k < m->classes; k++) {
        float acc = m->head.bias[k];
        const float *w = m->head.weight + (size_t)k * D;
        for (int o = 0; o < D; o++) acc += ws->head_in[o] * w[o];
        logits[k] = acc;
    }
    ws->ops[m->head.layer].n[SNN_OP_MAC] += (uint64_t)D * m->classes;
}
