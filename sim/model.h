/*
 * model.h: the spiking transformer of spec section 2, built for event-driven inference.
 *
 * The model owns two views of its weights:
 *   - the parameters, in PyTorch layout and names (spec section 4), one arena: this is what
 *     checkpoints hold and what the run file's /parameters holds;
 *   - the inference weights, derived at load time: BatchNorm folded into the preceding linear
 *     layer and the matrix transposed to [in, out], so that an input spike selects one
 *     contiguous row of synapses ("a synaptic layer touches only the weight rows of inputs that
 *     spiked"; a -1 spike subtracts its row).
 *
 * Forward runs one sample at a time (OpenMP parallelises over samples in sim/eval.c). Between
 * layers, spikes travel as int8 and each synaptic layer reads them as per-token bit planes
 * (nonzero, negative) whose set bits it walks: its work follows the spike count. Every layer counts the operations it performed (sim/ops.h)
 * into the per-layer table of the workspace.
 *
 * Shapes: T timesteps, N tokens, D width, h heads, d = D / h, Hd = D * mlp_ratio hidden width,
 * L blocks, K = C * P * P patch length, C_out classes.
 */
#ifndef SNN_MODEL_H
#define SNN_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sim/config.h"
#include "sim/h5io.h"
#include "sim/ops.h"
#include "sim/util.h"

/* A fully connected layer ready for event-driven use: y = b + sum over input events of
 * sign * wt[i, :]. BatchNorm (if any) is folded in. */
typedef struct snn_linear {
    int in, out;
    float *wt;           /* [in, out] folded weights, transposed */
    float *b;            /* [out] folded bias */
    /* parameter views (PyTorch layout) the folded copy is derived from */
    float *weight;       /* [out, in] */
    float *bias;         /* [out] */
    float *bn_w, *bn_b, *bn_mean, *bn_var; /* [out] each, or NULL without BatchNorm */
    int layer;           /* index into the op table */
} snn_linear;

/* A neuron population: one membrane per (token, channel), N * width neurons. */
typedef struct snn_pop {
    char name[64];       /* spec section 5 name, e.g. "blocks.0.attn.q_lif" */
    snn_neuron_params np;
    int width;           /* channels per token */
    size_t size;         /* N * width */
    size_t state_offset; /* offset of its membrane in the workspace state arena */
    int layer;           /* index into the op table (neuron updates, compares) */
    float *plif_w;       /* PLIF: the learnable w ("<name>.w" parameter), np.tau = 1 + exp(-w);
                          * NULL for other neurons */
} snn_pop;

typedef enum snn_layer_kind {
    SNN_LAYER_EMBED, SNN_LAYER_LINEAR, SNN_LAYER_ATTENTION, SNN_LAYER_NEURON, SNN_LAYER_HEAD,
    SNN_LAYER_ACTIVATION
} snn_layer_kind;

/* Population ids of an ANN model's neuron slots (spec section 2), which hold no neurons: the
 * identity (lif_in, q/k/v, attn, mlp lif_in) or the configured activation (hidden, head).
 * -1 marks a slot that the graph does not have (sew). */
enum { SNN_SLOT_IDENTITY = -2, SNN_SLOT_ACTIVATION = -3 };

/* One row of the per-layer operation table. */
typedef struct snn_layer {
    char name[64];       /* "blocks.0.attn.q", "blocks.0.attn.kernel", "blocks.0.attn.q_lif" */
    snn_layer_kind kind;
    uint64_t dense_macs; /* MACs of the same layer run densely (every position multiplied) */
} snn_layer;

typedef struct snn_block {
    snn_linear q, k, v, o, fc1, fc2;
    int pop_in, pop_q, pop_k, pop_v, pop_attn, pop_mlp_in, pop_hidden;  /* -1 if absent */
    int pop_o, pop_out;                                                  /* sew only */
    int pop_kv;          /* sdsa: the kernel's LIF_0.5 on sum_n K*V, [D] neurons; else -1 */
    int layer_kernel;
    int layer_a;         /* cat: the a projection's op-table row */
    int layer_act;       /* ANN: the hidden activation's op-table row */
    float *a_w;          /* cat: a.weight [h, D] (replaces q and k), else NULL */
    float *E, *R;        /* primal: [h, M, s] each, else NULL */
    float *lambda;       /* primal: [h, s] */
    float *c_w, *c_b;    /* primal: c.weight [d, 2s], c.bias [d] (shared by the heads) */
} snn_block;

typedef struct snn_model {
    const snn_config *cfg;   /* borrowed; must outlive the model */
    int T, N, D, heads, d, Hd, L, C, P, K, classes, img, shift;
    bool ann;                /* softmax, cat, primal: T = 1, no neurons (spec section 2) */
    int primal_s, primal_M;  /* primal: rank s, sampled tokens M = min(N, s * rank_multi) */
    int layer_head_act;      /* ANN: the head activation's op-table row */
    float attn_threshold, ssa_scale;

    float *params;           /* parameter arena (PyTorch layout) */
    size_t n_params;
    snn_tensor *tensors;     /* [n_tensors] named views into params */
    size_t n_tensors;
    char *names;             /* storage for tensor names */

    /* embedding: computed in double precision, once per sample for direct encoding */
    float *embed_w, *embed_b, *pos;                         /* [D, K], [D], [N, D] */
    float *embed_bn_w, *embed_bn_b, *embed_bn_mean, *embed_bn_var;
    double *embed_wt;        /* [K, D] folded embedding (BN in double), transposed */
    double *embed_bias;      /* [D] */
    snn_linear embed_spk;    /* float folded embedding for spike (rate-coded) input */
    int layer_embed;

    snn_block *blocks;       /* [L] */
    snn_linear head;         /* no BatchNorm; input is the spike mean */
    int pop_head;            /* -1 in sew mode */

    snn_pop *pops;           /* [n_pops], in recording order */
    int n_pops;
    size_t state_size;       /* floats of membrane state for all populations */
    snn_layer *layers;       /* [n_layers] */
    int n_layers;

    float *folded;           /* arena of folded float weights */
} snn_model;

/* Builds the model of cfg (borrowed) and fills its parameters: read from cfg->model.weights
 * when set (a missing, extra or misshapen tensor is refused with its name and both shapes),
 * otherwise seeded random initialisation. Folds BatchNorm. */
int snn_model_init(snn_model *m, const snn_config *cfg, snn_err *err);
void snn_model_free(snn_model *m);

/* Recomputes the folded inference weights from the parameters (after loading or training). */
void snn_model_fold(snn_model *m);

size_t snn_model_param_count(const snn_model *m);

/* Weights of one block's attention (block 0): its matrices and tensors of rank >= 2, no biases
 * or BatchNorm: 4 D^2 for q, k, v, o; CAT 2 D^2 + D h (v, o, a); Primal 3 D^2 (q, k, o) + the
 * E, R, lambda and c tensors. */
size_t snn_model_attention_weights(const snn_model *m);
int snn_model_find_pop(const snn_model *m, const char *name);

/* Operations per sample of an ANN model (dense: every layer multiplies everything), per
 * op-table row: linear layers N in out MACs (BatchNorm folded), the attention kernel's own count
 * (attention/ann.h, primal.h) times the heads, ReLU one CMP per element, GELU one EXP (erf) and
 * 3 MACs per element. ops [n_layers], overwritten. */
void snn_model_ann_ops(const snn_model *m, snn_ops *ops);

/* Per-thread workspace: every buffer one sample's forward needs, planned from the model. The
 * forward runs layer by layer over all T timesteps (SpikingJelly's multi-step mode), so the
 * activations hold every timestep. */
typedef struct snn_ws {
    float *x;            /* [T or 1, C*H*W] encoded input */
    float *patches;      /* [N, K] */
    float *u0;           /* [T, N, D] embedding, rate-coded; [N, D] direct (the same every t) */
    float *u;            /* [T, N, D] residual stream */
    float *y;            /* [T, N, max(Hd, 3 D)] linear output (q, k, v: [3, T, N, D]) */
    float *o;            /* [T, N, D] attention output */
    float *state;        /* [largest population] membranes of the population stepping */
    float *hbuf;         /* [max(T N max(D, Hd), N K)] float spikes of the dense baseline */
    int8_t *s_in;        /* [max(T N D, N K)] spikes entering a layer */
    int8_t *sq, *sk, *sv, *sa;  /* [T, N, D] Q, K, V, attention spikes */
    int8_t *sh;          /* [T, N, Hd] hidden spikes */
    int8_t *sx;          /* [T, N, D] sew integer stream (clamped to int8 range) */
    uint64_t *ev_nz;     /* [T N, words(max(D, Hd))] (or [N, words(K)] if larger) spike planes:
                          * bit c set iff spike c != 0 */
    uint64_t *ev_neg;    /* the same shape: bit c set iff spike c < 0 */
    uint8_t *ev_kind;    /* [T N] per token: some -1 spike (1), some spike not in {0, +-1} (2) */
    int32_t *scores;     /* [N, N] attention scores */
    int32_t *head_count; /* [D] head spikes summed over t and n */
    float *head_in;      /* [D] */
    double *embed_acc;   /* [D] */
    float *kv;           /* [T, D] sdsa: sum_n K*V per timestep */
    int8_t *skv;         /* [T, D] sdsa: kv_lif's spikes */
    snn_ops *ops;        /* [n_layers] operation counts of this workspace (accumulate) */
    uint64_t *pop_t_count;   /* [n_pops, T] spikes per population per timestep (accumulate) */
    uint64_t *neuron_count;  /* [state_size] spikes per neuron over t and samples (accumulate;
                              * complete after snn_ws_flush_counts) */
    uint8_t *count8;     /* [state_size] spikes per neuron since the last flush into neuron_count
                          * (at most 255 timesteps: byte counters vectorise 32 to a register) */
    int count8_steps;    /* timesteps counted in count8 since the last flush */
    bool dense;          /* run synaptic layers densely (benchmark baseline) */
    bool time_syn;       /* accumulate the synaptic layers' wall time into syn_ticks
                          * (benchmark; two snn_ticks reads per timed span, none when off) */
    uint64_t syn_ticks;  /* snn_ticks spent in synaptic layers (accumulate) */
} snn_ws;

void snn_ws_init(snn_ws *ws, const snn_model *m);
void snn_ws_free(snn_ws *ws);
/* Adds the byte counters into neuron_count (snn_model_forward does it before a sample that
 * would take them past 255 timesteps, and within a sample of T > 255): call it before reading
 * neuron_count. */
void snn_ws_flush_counts(snn_ws *ws, const snn_model *m);

/* Where to record one sample's spikes and membranes: per population pointers to
 * [T, N * width] buffers, NULL to skip. */
typedef struct snn_record {
    int8_t **spikes;     /* [n_pops] */
    float **v;           /* [n_pops] post-reset membrane, or NULL */
} snn_record;

/* Runs one sample. pixels: [C, H, W] uint8 of the dataset; file_index keys the rate encoder.
 * Writes logits [classes]. Adds op counts and spike statistics into ws. */
void snn_model_forward(const snn_model *m, snn_ws *ws, const uint8_t *pixels, int64_t file_index,
                       float *logits, const snn_record *rec);

/* One synaptic layer on [N, in] spikes s, into y [N, out]. The event-driven form builds the
 * per-token spike bit planes in nz and neg [N, snn_bits_words(in)] (bit c % 64 of word c / 64:
 * spike c is nonzero / negative; sim/spikebits.h) and touches only the weight rows of nonzero
 * inputs; the dense form multiplies every position through BLAS (scratch [N, in] floats). Both
 * add their operations to *ops. */
void snn_linear_forward_events(const snn_linear *lin, int N, const int8_t *s, uint64_t *nz,
                               uint64_t *neg, float *y, snn_ops *ops);
void snn_linear_forward_dense(const snn_linear *lin, int N, const int8_t *s, float *scratch,
                              float *y, snn_ops *ops);
/* snn_linear_forward_events of three layers with the same input width on the same spikes (a
 * block's q, k and v), y[j] [N, lin[j]->out] and ops[j] lin[j]'s: the planes are built once, and
 * where the three have the same shape and every spike is +1 each token's events are walked once
 * for the three (AVX-512). The bytes of three snn_linear_forward_events calls. */
void snn_linear3_forward_events(const snn_linear *const lin[3], int N, const int8_t *s,
                                uint64_t *nz, uint64_t *neg, float *const y[3],
                                snn_ops *const ops[3]);

#endif
