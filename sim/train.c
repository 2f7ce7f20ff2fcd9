/*
 * train.c: BPTT training of the spiking transformer (train.h).
 *
 * Forward, per minibatch, every layer over all T timesteps at once; rows of every token tensor
 * are ordered (t, b, n), M = T * B * N:
 *
 *     U0 = BN_embed(patches @ embed^T + b) + pos          patches repeated over t (direct)
 *     block: S = lif_in(U); Q, K, V = N(BN(Linear(S))); A = attn_lif(kernel(Q, K, V))
 *            U = U + BN_o(o(A)); U = U + BN_fc2(fc2(hidden_lif(BN_fc1(fc1(mlp.lif_in(U))))))
 *     logits = meanpool_{t,n}(head_lif(U)) @ head^T + b;  loss = CE(logits, labels, smoothing)
 *
 * Backward walks the same list in reverse. Every backward ACCUMULATES (+=) into its input
 * gradient, so the residual stream's gradient d_u simply collects the contributions of both
 * paths; a population whose input gradient nothing else writes writes it instead (pop_bwd_into:
 * the bytes of adding to zeros, without the zeroing pass). Neurons: snn_neuron_backward_seq
 * (methods.md 1.4), which recomputes the spikes from H; attention: the straight-through rules of
 * the spec (attention/ssa_train.c, bsa_train.c); linear and BatchNorm: sim/layers.c (BLAS).
 *
 * Memory: one arena planned up front (plan()); for the backward pass every spiking population
 * keeps its pre-reset membrane as floats and its spikes as bit planes (sim/spikebits.h), which
 * the neurons write from their tiles. Linear layers read spike inputs as bits (layers.h
 * snn_spike_rows: the same bytes as from floats), so a population that feeds only a linear
 * layer never writes floats; the others write them into a few scratch slots (SP_X below), and
 * the bits are unpacked there for the float consumers of the backward (attention, and a linear
 * layer whose spikes are too dense for the spike path).
 *
 * Parallelism: BLAS for the products; OpenMP over neuron slices, over (t, b, head) for
 * attention, over channels for BatchNorm. Each chunk or job owns what it writes and every
 * reduction runs in a fixed order, so losses are identical for any thread count; chunks go to
 * threads dynamically (layers.c says why). Over MPI ranks
 * (snn_trainer_set_share) each rank holds a share of the batch's samples; the only couplings
 * between samples, BatchNorm's statistics and the mean loss, are summed over the ranks in rank
 * order (one collective per BatchNorm pass, one for the loss).
 */
#include "sim/train.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "attention/ann.h"
#include "attention/attention.h"
#include "attention/primal.h"
#include "attention/sdsa.h"
#include "neurons/neuron.h"
#include "sim/dist.h"
#include "sim/eval.h"
#include "sim/layers.h"
#include "sim/optim.h"
#include "sim/par.h"
#include "sim/rng.h"
#include "sim/spikebits.h"
#include "sim/vec.h"

/* Neurons per parallel chunk of a population (and per PLIF dL/dtau partial sum). Small enough
 * that static scheduling splits a population evenly: at 4096, B N D = 200704 neurons made 49
 * chunks, 25 for one thread and 24 for the other, and perf showed the second thread idle for 15%
 * of its time; at 1024 (196 chunks) half that. A whole number of 64-bit words: a chunk writes
 * and unpacks whole words of the bit planes. */
enum { POP_CHUNK = 1024 };
_Static_assert(POP_CHUNK % 64 == 0, "neuron chunks own whole bit-plane words");

/* Elementwise passes over large buffers run in chunks of ELEM_CHUNK floats, one thread per
 * chunk: serial, they were a tenth of an ANN's training step and capped its 2-thread speed-up.
 * Elementwise work gives the same bits for any split. */
enum { ELEM_CHUNK = 16384 };

/* The chunk of such a pass over n floats: at most ELEM_CHUNK, balanced (snn_par_chunk), whole
 * 64-byte lines. */
static size_t elem_chunk(size_t n) { return snn_par_chunk(n, ELEM_CHUNK, 16); }

static long elem_chunks(size_t n, size_t ch) { return (long)((n + ch - 1) / ch); }

/* x [n] = 0, in parallel (the backward's gradient buffers, zeroed before they accumulate). */
static void zero_floats(float *x, size_t n) {
    const size_t ch = elem_chunk(n);
    snn_par_ends ends_c = snn_par_ends_of(elem_chunks(n, ch)); /* par.h */
#pragma omp parallel if (n >= 2 * ELEM_CHUNK)
    for (long c; (c = snn_par_ends_next(&ends_c)) >= 0;) {
        const size_t i0 = (size_t)c * ch, i1 = n - i0 < ch ? n : i0 + ch;
        memset(x + i0, 0, (i1 - i0) * sizeof *x);
    }
}

typedef struct lin_act {       /* a Linear followed by BatchNorm in training mode */
    float *x;                  /* [M, out] the linear layer's output, BatchNorm's input, kept
                                * for the backward, which normalises it again
                                * (snn_bn_train_bwd_x, snn_neuron_backward_seq_affine: the bits
                                * of a stored xhat, whose write this saves); eval mode, fused:
                                * BatchNorm's output (bn_eval_out). NULL at inference. */
    bool relu;                 /* fused with an ANN's ReLU slot: BatchNorm's pass applies
                                * the ReLU, and BatchNorm's backward takes the gradient on the
                                * ReLU's output (snn_bn_train_bwd_x with relu_beta) */
    float *mean, *rstd;        /* [out] batch statistics */
    float *z;                  /* [M, out] BN output; NULL when fused */
    bool fused;                /* a population (or the next product, or the residual sum)
                                * normalises x and applies BN's gamma, beta itself (bn_out,
                                * bn_norm_of), so z is never stored */
} lin_act;

/* A population's outputs kept for the backward pass, [T, n] with n = B * neurons per sample.
 * Spiking populations keep their pre-reset membrane h as floats and their spikes as bit planes
 * (spikebits.h), unpacked into a scratch slot when a consumer needs floats; in smooth mode
 * (gradient checks) spikes are real numbers and stay floats in s. ANN slots: an activation keeps
 * its output in s; an identity keeps nothing, its output is its input x (a buffer the forward
 * keeps anyway). */
typedef struct pop_act {
    float *h;                  /* [T, n] pre-reset membrane (spiking populations); NULL if */
    bool recompute;            /* the population follows a fused BN: its backward recomputes */
    snn_neuron_affine rc;      /* H from BN's input rc_x, statistics, gamma, beta */
    const float *rc_x;         /* [T, n] (plan_pop_bn) */
    float *s;                  /* [T, n] outputs as floats (activation slots, smooth mode) */
    uint64_t *nz, *neg;        /* [T, ld] spike bits: S != 0 and (bipolar only) S < 0 */
    size_t ld;                 /* words per timestep row of nz and neg */
    const float *x;            /* identity slot: its input, set by the forward */
} pop_act;

/* Scratch slots holding a population's spikes as floats while the forward or backward uses them
 * (the float view of the bit planes). Forward: a population's spikes are written to its slot by
 * the neurons (with the bits), and read from the slot until the slot's next population
 * overwrites it; backward: unpacked into the slot right before use. Lifetimes within a block:
 *   SP_X   [M, W]  lif_in (the block input x_in: q, k, v and attention read it), then hidden_lif
 *   SP_Q   [M, D]  q_lif until the attention; then attn_lif, o_lif, mlp.lif_in, out_lif, head_lif
 *   SP_K, SP_V     k_lif and v_lif until the attention (the backward: until their own backward)
 *   SP_KV  [T, B, D] sdsa's kv_lif
 * SP_X owns no memory: it is d_s in the forward (gradients are not live yet) and y in the
 * backward (y only holds a linear output inside lin_bn_fwd). */
enum { SP_X, SP_Q, SP_K, SP_V, SP_KV, SP_SLOTS };

typedef struct block_act {
    float *u_in;               /* [M, D] stream entering the block */
    pop_act in;                /* lif_in */
    lin_act q, k, v;
    pop_act pq, pk, pv;
    float *o;                  /* [M, D] attention output */
    float *att;                /* [T, B, h, att_job_floats]: ssa scores, bsa's or softmax's P
                                * [N, N]; cat's z [N] and spectra */
    int32_t *mr;               /* [T, B, h, 2N] bsa row max and normaliser */
    pop_act pa;                /* attn_lif */
    lin_act proj;              /* o and o_bn */
    float *u_mid;              /* [M, D] after the attention residual */
    pop_act pm;                /* mlp.lif_in */
    lin_act fc1;
    pop_act ph;                /* hidden_lif */
    lin_act fc2;
    float *u_out;              /* [M, D] after the MLP residual */
    pop_act po, pout;          /* sew: attn.o_lif and mlp.out_lif */
    float *g;                  /* cat: [M, h] token logits X a^T */
    float *pcache;             /* primal: [B, h, snn_primal_cache_floats] forward caches */
    double *ksvd_S;            /* primal: [h, s] sum over b, n of e^2 + r^2 */
    double ksvd_J;             /* primal: this layer's J */
    float *kv;                 /* sdsa: [T, B, D] sum_n K*V */
    pop_act pkv;               /* sdsa: kv_lif over [T, B*D] */
} block_act;

/* Primal's backward runs a head's jobs in PRIMAL_SPLITS chunks of consecutive samples, each
 * chunk's jobs in order accumulating into the chunk's own gradient block of the shared
 * parameters; the blocks are then summed in chunk order. A fixed split of the jobs, so the
 * sums do not depend on the thread count; few blocks, so they stay in cache (a block per job,
 * 10 KiB each, had been 5.3 MB to zero, write and read back per step at batch 64). */
enum { PRIMAL_SPLITS = 8 };

struct snn_trainer {
    snn_model *m;
    int Bmax, B, T, N, D, Hd, K, C;
    bool smooth;
    bool sew;                  /* Spikformer's spike-sum residual instead of the membrane one */
    float *arena;              /* every float buffer below */
    size_t arena_floats;
    int32_t *iarena;
    size_t iarena_ints;
    uint64_t *warena;          /* spike bit planes, packed without padding */
    size_t warena_words;

    float *patches;            /* [M, K] */
    lin_act embed;             /* embed and embed_bn */
    float *u0;                 /* [M, D] */
    block_act *blocks;         /* [L] */
    pop_act head;              /* head_lif over [M, D] */
    float *pooled;             /* [B, D] */
    float *logits, *probs;     /* [B, C] */
    int32_t *labels;           /* [B] */

    float *y;                  /* [M, Wmax] linear output (forward scratch) */
    float *sp[SP_SLOTS];       /* spikes as floats (see SP_X); NULL where unused */
    float *d_u;                /* [M, D] gradient of the stream */
    float *d_s;                /* [M, Wmax] gradient on spikes */
    float *d_x;                /* [M, Wmax] gradient on neuron inputs */
    float *d_y;                /* [M, Wmax] gradient on linear outputs */
    float *d_o, *d_q, *d_k, *d_v; /* [M, D] */
    float *d_pooled;           /* [B, D] */
    float *dw_scratch;         /* [snn_linear_bwd_scratch_floats of the widest Linear] */
    float *spike_scratch;      /* [snn_linear_spike_scratch_floats of the widest Linear]: w^T
                                * and dw^T of the spike path, for layers of any size */
    double *bn_sums;           /* [snn_bn_sums_doubles(widest Linear + BN output)]: the
                                * BatchNorm sums a Linear gathers for the BN after it */
    float *d_logits;           /* [B, C] */
    float *att_scratch;        /* [threads, att_scratch_floats] */
    float *pix_scratch;        /* [threads, C img img]: one image's encoded pixels */
    size_t att_scratch_floats; /* per thread: N*N, or the cat/primal backward's need */
    snn_attn_kind kind;
    bool eval;                 /* inference: BatchNorm with running statistics */
    bool float_spikes;         /* linear layers read floats (snn_trainer_set_spike_bits) */
    bool infer_only;           /* snn_trainer_new_inference: forward buffers only, shared by
                                * the blocks (see plan) */
    snn_cat_plan *cat_plan;    /* cat: FFTW plans of length N, made once */
    double *cat_scratch;       /* cat: [threads, snn_cat_scratch_doubles] */
    size_t cat_scratch_doubles;
    size_t att_job_floats;     /* a job's share of a block's att (N N; cat: z and spectra) */
    int *primal_idx;           /* primal: [M] sampled tokens */
    size_t primal_cache_floats;
    float *primal_dgrad;       /* primal: [h, PRIMAL_SPLITS, 2 M s + 2 d s + d] dE dR dcw dcb
                                * per chunk of jobs (attn_bwd) */
    double *ksvd_job;          /* primal: [B, h, s] per-job S rows, summed in job order */
    float *d_g;                /* cat: [M, h] */
    float *d_kv, *d_kvs;       /* sdsa: [T, B, D] gradients on kv and on kv_lif's spikes */
    double *dtau;              /* [max chunks of a population] PLIF dL/dtau per neuron chunk */
    snn_bn_norm pending;       /* a BatchNorm normalisation not run yet (y NULL: none): an ANN
                                * block's fc2 with the residual sum, which the next block's
                                * first q, k or v product runs chunk by chunk (lin_bn_fwd) */
    int n_threads;

    float *grads;              /* [n_params], laid out like the parameter arena */
    int B_batch;               /* > 0: the step's B samples are this rank's share of a batch of
                                * B_batch samples over the ranks (snn_trainer_set_share) */
};

/* ---- planning ---------------------------------------------------------------------------- */

typedef struct planner {
    size_t floats, ints, words;
    bool place;
    float *fbase;
    int32_t *ibase;
    uint64_t *wbase;
} planner;

static float *take(planner *p, size_t n) {
    n = (n + 15) / 16 * 16; /* keep every buffer 64-byte aligned */
    float *r = p->place ? p->fbase + p->floats : NULL;
    p->floats += n;
    return r;
}

static int32_t *take_i(planner *p, size_t n) {
    n = (n + 15) / 16 * 16;
    int32_t *r = p->place ? p->ibase + p->ints : NULL;
    p->ints += n;
    return r;
}

/* Bit-plane words: no padding, so a population's planes ([T, ld]) cost exactly T ld words. */
static uint64_t *take_w(planner *p, size_t n) {
    uint64_t *r = p->place ? p->wbase + p->words : NULL;
    p->words += n;
    return r;
}

/* Whether the Linear + BN feeding population p need not store its output: a spiking population
 * in normal mode normalises the linear layer's output and applies BN's gamma, beta as it charges
 * (snn_neuron_affine, the same bits); an ANN's ReLU slot is applied with BN's normalisation,
 * inside the next layer's product (lin_bn_fwd_norm), and its backward inside BN's (the mask
 * recomputed from x, lin_act.relu); without a population (p = -1: ms blocks' o and fc2) the
 * normalisation writes the residual stream's sum (residual_add, or inside the next product).
 * Not for inference (eval-mode BN writes only its output), smooth mode, identity or GELU
 * slots, or a PLIF (whose backward reads its input for dL/dtau). */
static bool fusable(const snn_trainer *tr, int p) {
    if (tr->infer_only || tr->smooth) return false;
    if (p == SNN_SLOT_ACTIVATION) return tr->m->cfg->model.activation != SNN_ACT_GELU;
    if (p == -1) return true; /* no population: the output goes to the residual stream */
    return p >= 0 && !tr->m->pops[p].plif_w;
}

/* Inference keeps only z: eval-mode BatchNorm writes nothing else. A fused Linear + BN keeps no
 * z (fusable). */
static void plan_lin(const snn_trainer *tr, planner *p, lin_act *a, size_t M, size_t out,
                     bool fused) {
    a->fused = fused;
    a->z = fused ? NULL : take(p, M * out);
    if (tr->infer_only) return;
    a->x = take(p, M * out);
    a->mean = take(p, out);
    a->rstd = take(p, out);
}

static size_t pop_per_sample(const snn_trainer *tr, int p, size_t width);
static bool head_relu(const snn_trainer *tr);

/* Storage of population p (or slot; -1: absent) over [T, Bmax * neurons per sample]. H only
 * for a backward that reads it: inference keeps none (a float write per neuron and timestep
 * less). */
static void plan_pop(const snn_trainer *tr, planner *p, pop_act *a, int pop, size_t width) {
    if (pop == -1 || pop == SNN_SLOT_IDENTITY) return;
    const size_t n = (size_t)tr->Bmax * pop_per_sample(tr, pop, width), T = (size_t)tr->T;
    if (pop < 0 || tr->smooth) a->s = take(p, T * n);
    if (pop < 0) return;
    if (!a->recompute && !tr->infer_only) a->h = take(p, T * n);
    if (tr->smooth) return;
    a->ld = snn_bits_words(n);
    a->nz = take_w(p, T * a->ld);
    if (tr->m->pops[pop].np.bipolar) a->neg = take_w(p, T * a->ld);
}

/* plan_pop for population pop fed by the Linear + BN lin (activations la, planned): after a
 * fused BN in normal mode the population keeps no H; its backward recomputes H from BN's input
 * (kept for BN's backward) with the forward's operations (the same bits), which saves a [T, n]
 * float buffer and its write. */
static void plan_pop_bn(const snn_trainer *tr, planner *p, pop_act *a, int pop, size_t width,
                        const lin_act *la, const snn_linear *lin) {
    a->recompute = pop >= 0 && la->fused && !tr->smooth && tr->T <= SNN_NEURON_RECOMPUTE_MAX_T;
    a->rc = (snn_neuron_affine){lin->bn_w, lin->bn_b, (size_t)lin->out, 0, la->mean, la->rstd};
    a->rc_x = la->x;
    plan_pop(tr, p, a, pop, width);
}

static void plan(snn_trainer *tr, planner *p) {
    const size_t M = (size_t)tr->T * tr->Bmax * tr->N, D = tr->D, Hd = tr->Hd;
    const size_t W = Hd > D ? Hd : D;
    const size_t att = (size_t)tr->T * tr->Bmax * tr->m->heads * tr->att_job_floats;
    tr->patches = take(p, M * tr->K);
    plan_lin(tr, p, &tr->embed, M, D, false);
    tr->u0 = take(p, M * D);
    /* Inference plans block 0 only; every block then runs in block 0's buffers (nothing is
     * kept for a backward pass), the stream alternating between u_out and u0: block l reads
     * u_in = block l-1's u_out and writes the other one. The forward's working set is then one
     * block's (about 10 MiB for bench_softmax), where the training plan streams 80 MiB. */
    const int L_planned = tr->infer_only ? 1 : tr->m->L;
    for (int l = 0; l < L_planned; l++) {
        block_act *b = &tr->blocks[l];
        const snn_block *mb = &tr->m->blocks[l];
        b->u_in = l == 0 ? tr->u0 : tr->blocks[l - 1].u_out;
        plan_pop(tr, p, &b->in, mb->pop_in, D);
        plan_lin(tr, p, &b->q, M, D, fusable(tr, mb->pop_q));
        plan_lin(tr, p, &b->k, M, D, fusable(tr, mb->pop_k));
        plan_lin(tr, p, &b->v, M, D, fusable(tr, mb->pop_v));
        /* cat has no q, k and primal no v: their populations never run */
        plan_pop_bn(tr, p, &b->pq, mb->q.weight ? mb->pop_q : -1, D, &b->q, &mb->q);
        plan_pop_bn(tr, p, &b->pk, mb->k.weight ? mb->pop_k : -1, D, &b->k, &mb->k);
        plan_pop_bn(tr, p, &b->pv, mb->v.weight ? mb->pop_v : -1, D, &b->v, &mb->v);
        b->o = take(p, M * D);
        b->att = take(p, att);
        b->mr = take_i(p, (size_t)tr->T * tr->Bmax * tr->m->heads * 2 * tr->N);
        plan_pop(tr, p, &b->pa, mb->pop_attn, D);
        /* o and fc2 feed the residual stream (ms: z is added to it) or a population (sew) */
        plan_lin(tr, p, &b->proj, M, D, fusable(tr, mb->pop_o));
        b->u_mid = take(p, M * D);
        plan_pop(tr, p, &b->pm, mb->pop_mlp_in, D);
        plan_lin(tr, p, &b->fc1, M, Hd, fusable(tr, mb->pop_hidden));
        b->fc1.relu = b->fc1.fused && mb->pop_hidden == SNN_SLOT_ACTIVATION;
        plan_pop_bn(tr, p, &b->ph, mb->pop_hidden, Hd, &b->fc1, &mb->fc1);
        plan_lin(tr, p, &b->fc2, M, D, fusable(tr, mb->pop_out));
        b->u_out = take(p, M * D);
        plan_pop_bn(tr, p, &b->po, mb->pop_o, D, &b->proj, &mb->o);
        plan_pop_bn(tr, p, &b->pout, mb->pop_out, D, &b->fc2, &mb->fc2);
        const size_t TBH = (size_t)tr->T * tr->Bmax * tr->m->heads;
        if (tr->kind == SNN_ATTN_CAT) b->g = take(p, M * tr->m->heads);
        if (tr->kind == SNN_ATTN_PRIMAL) {
            b->pcache = take(p, TBH * tr->primal_cache_floats);
            b->ksvd_S = (double *)take(p, 2 * (size_t)tr->m->heads * tr->m->primal_s);
        }
        if (tr->kind == SNN_ATTN_SDSA) {
            b->kv = take(p, (size_t)tr->T * tr->Bmax * D);
            plan_pop(tr, p, &b->pkv, mb->pop_kv, D);
        }
    }
    for (int l = L_planned; l < tr->m->L; l++) {
        tr->blocks[l] = tr->blocks[0];
        tr->blocks[l].u_in = tr->blocks[l - 1].u_out;
        tr->blocks[l].u_out = l % 2 ? tr->u0 : tr->blocks[0].u_out;
    }
    if (!head_relu(tr)) plan_pop(tr, p, &tr->head, tr->m->pop_head, D); /* else nothing kept */
    tr->pooled = take(p, (size_t)tr->Bmax * D);
    tr->logits = take(p, (size_t)tr->Bmax * tr->C);
    tr->probs = take(p, (size_t)tr->Bmax * tr->C);
    tr->labels = take_i(p, (size_t)tr->Bmax);
    tr->y = take(p, M * W);
    if (!tr->m->ann && !tr->smooth) {
        tr->sp[SP_Q] = take(p, M * D);
        tr->sp[SP_K] = take(p, M * D);
        tr->sp[SP_V] = take(p, M * D);
        if (tr->kind == SNN_ATTN_SDSA) tr->sp[SP_KV] = take(p, (size_t)tr->T * tr->Bmax * D);
        /* the layers that read spikes: q, k, v, o [D, D], fc1 [D, Hd], fc2 [Hd, D] */
        const size_t dd = snn_linear_spike_scratch_floats(tr->D, tr->D);
        const size_t dh = snn_linear_spike_scratch_floats(tr->D, tr->Hd);
        tr->spike_scratch = take(p, dd > dh ? dd : dh);
    }
    tr->d_s = take(p, M * W); /* also the forward's SP_X */
    tr->att_scratch = take(p, (size_t)tr->n_threads * tr->att_scratch_floats);
    tr->pix_scratch = take(p, (size_t)tr->n_threads * tr->m->C * tr->m->img * tr->m->img);
    const size_t TBH = (size_t)tr->T * tr->Bmax * tr->m->heads;
    if (tr->kind == SNN_ATTN_CAT)
        tr->cat_scratch = (double *)take(p, 2 * tr->n_threads * tr->cat_scratch_doubles);
    if (tr->kind == SNN_ATTN_PRIMAL) {
        tr->ksvd_job = (double *)take(p, 2 * TBH * tr->m->primal_s);
        tr->primal_idx = take_i(p, (size_t)tr->m->primal_M);
    }
    if (tr->infer_only) return; /* the rest is the backward's */
    tr->d_u = take(p, M * D);
    tr->d_x = take(p, M * W);
    tr->d_y = take(p, M * W);
    tr->d_o = take(p, M * D);
    tr->d_q = take(p, M * D);
    tr->d_k = take(p, M * D);
    tr->d_v = take(p, M * D);
    tr->d_pooled = take(p, (size_t)tr->Bmax * D);
    {
        /* sized for any M (the most row blocks), so that it does not depend on T: the plan
         * stays exactly a + b T */
        const int K = tr->K, Di = tr->D, Hdi = tr->Hd, H = tr->m->heads;
        const int shapes[][2] = {{Di, tr->C}, {K, Di}, {Di, Di}, {Di, Hdi}, {Hdi, Di}, {Di, H}};
        size_t need = 0;
        for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
            const size_t f = snn_linear_bwd_scratch_floats(INT_MAX, shapes[i][0], shapes[i][1]);
            need = f > need ? f : need;
        }
        tr->dw_scratch = take(p, need);
        /* doubles in a 64-byte aligned float buffer */
        tr->bn_sums = (double *)take(p, 2 * snn_bn_sums_doubles(Di > Hdi ? Di : Hdi));
    }
    tr->d_logits = take(p, (size_t)tr->Bmax * tr->C);
    const size_t Ms = (size_t)tr->m->primal_M * tr->m->primal_s;
    const size_t ds = (size_t)tr->m->d * tr->m->primal_s;
    if (tr->kind == SNN_ATTN_CAT) tr->d_g = take(p, M * tr->m->heads);
    if (tr->kind == SNN_ATTN_PRIMAL)
        tr->primal_dgrad =
            take(p, (size_t)tr->m->heads * PRIMAL_SPLITS * (2 * Ms + 2 * ds + tr->m->d));
    if (tr->kind == SNN_ATTN_SDSA) {
        tr->d_kv = take(p, (size_t)tr->T * tr->Bmax * D);
        tr->d_kvs = take(p, (size_t)tr->T * tr->Bmax * D);
    }
    tr->grads = take(p, tr->m->n_params);
    /* doubles, two floats each; chunks of POP_CHUNK neurons over the widest population */
    const size_t widest = (size_t)tr->Bmax * tr->N * (tr->Hd > tr->D ? tr->Hd : tr->D);
    tr->dtau = (double *)take(p, 2 * ((widest + POP_CHUNK - 1) / POP_CHUNK));
}

/* The sizes plan() reads, for minibatches of up to B samples over T timesteps (no allocation
 * but tr->blocks). */
/* cat: a job's att share is z [N], rounded up to 16 floats (64 bytes) so that the spectra
 * after it are aligned for FFTW, then the spectra (cat_spectra). */
static size_t cat_z_floats(int N) { return ((size_t)N + 15) / 16 * 16; }

static void setup(snn_trainer *tr, snn_model *m, int B, int T, bool smooth) {
    tr->m = m;
    tr->Bmax = tr->B = B;
    tr->T = T;
    tr->N = m->N;
    tr->D = m->D;
    tr->Hd = m->Hd;
    tr->K = m->K;
    tr->C = m->classes;
    tr->smooth = smooth;
    tr->n_threads = 1;
#ifdef _OPENMP
    tr->n_threads = omp_get_max_threads();
#endif
    tr->sew = m->cfg->model.residual == SNN_RESIDUAL_SEW;
    tr->kind = m->cfg->model.attention.kind;
    tr->att_scratch_floats = (size_t)m->N * m->N;
    tr->att_job_floats = (size_t)m->N * m->N;
    if (tr->kind == SNN_ATTN_CAT) {
        tr->cat_scratch_doubles = snn_cat_scratch_doubles(m->N, m->d);
        /* z, then the spectra (a multiple of 8 doubles: every job's share stays aligned) */
        tr->att_job_floats = cat_z_floats(m->N) + 2 * snn_cat_spectra_doubles(m->N, m->d);
    }
    if (tr->kind == SNN_ATTN_PRIMAL) {
        tr->primal_cache_floats = snn_primal_cache_floats(m->N, m->d, m->primal_s);
        tr->att_scratch_floats = snn_primal_scratch_floats(m->N, m->d, m->primal_s);
    }
    tr->blocks = snn_xcalloc((size_t)m->L, sizeof *tr->blocks);
}

static size_t planned_bytes(const planner *p) {
    return p->floats * sizeof(float) + p->ints * sizeof(int32_t) + p->words * sizeof(uint64_t);
}

size_t snn_trainer_bytes_for(snn_model *m, int B, int T) {
    SNN_ASSERT(B >= 1 && T >= 1);
    snn_trainer tr = {0};
    setup(&tr, m, B, T, false);
    planner p = {0};
    plan(&tr, &p);
    free(tr.blocks);
    return planned_bytes(&p);
}

static snn_trainer *trainer_new(snn_model *m, int B, bool smooth, bool infer_only) {
    snn_layers_init(); /* pins BLAS to one thread, before any parallel region */
    snn_trainer *tr = snn_xcalloc(1, sizeof *tr);
    setup(tr, m, B, m->T, smooth);
    tr->infer_only = tr->eval = infer_only;
    if (tr->kind == SNN_ATTN_CAT) tr->cat_plan = snn_cat_plan_new(m->N, m->d);
    planner p = {0};
    plan(tr, &p);
    tr->arena_floats = p.floats;
    tr->iarena_ints = p.ints;
    tr->warena_words = p.words;
    tr->arena = snn_xaligned(p.floats * sizeof(float));
    tr->iarena = snn_xaligned(p.ints * sizeof(int32_t));
    tr->warena = snn_xaligned(p.words * sizeof(uint64_t));
    memset(tr->arena, 0, p.floats * sizeof(float));
    memset(tr->iarena, 0, p.ints * sizeof(int32_t));
    memset(tr->warena, 0, p.words * sizeof(uint64_t));
    planner q = {.place = true, .fbase = tr->arena, .ibase = tr->iarena, .wbase = tr->warena};
    plan(tr, &q);
    if (tr->kind == SNN_ATTN_PRIMAL) snn_primal_sample_indices(m->N, m->primal_M, tr->primal_idx);
    return tr;
}

snn_trainer *snn_trainer_new(snn_model *m, int B, bool smooth) {
    return trainer_new(m, B, smooth, false);
}

snn_trainer *snn_trainer_new_inference(snn_model *m, int B) { return trainer_new(m, B, false, true); }

void snn_trainer_free(snn_trainer *tr) {
    if (!tr) return;
    snn_cat_plan_free(tr->cat_plan);
    free(tr->arena);
    free(tr->iarena);
    free(tr->warena);
    free(tr->blocks);
    free(tr);
}

size_t snn_trainer_bytes(const snn_trainer *tr) {
    return planned_bytes(&(planner){.floats = tr->arena_floats, .ints = tr->iarena_ints,
                                    .words = tr->warena_words});
}

float *snn_trainer_grads(snn_trainer *tr) { return tr->grads; }

void snn_trainer_set_share(snn_trainer *tr, int B_batch) {
    SNN_ASSERT(B_batch >= 0 && (B_batch == 0 || B_batch >= snn_dist_size()));
    SNN_ASSERT(B_batch == 0 || tr->kind != SNN_ATTN_PRIMAL); /* batch-wide K-SVD loss */
    tr->B_batch = B_batch;
}

int snn_trainer_share_of(const snn_trainer *tr) { return tr->B_batch; }
void snn_trainer_set_eval(snn_trainer *tr, bool eval) {
    SNN_ASSERT(eval || !tr->infer_only); /* an inference trainer has no training caches */
    tr->eval = eval;
}
void snn_trainer_set_spike_bits(snn_trainer *tr, bool bits) { tr->float_spikes = !bits; }
snn_model *snn_trainer_model(snn_trainer *tr) { return tr->m; }
const float *snn_trainer_logits(const snn_trainer *tr) { return tr->logits; }

void snn_trainer_zero_grads(snn_trainer *tr) {
    SNN_ASSERT(!tr->infer_only); /* an inference trainer plans no gradients */
    memset(tr->grads, 0, tr->m->n_params * sizeof *tr->grads);
}

/* Gradient buffer of a parameter view (same offset in the gradient arena). */
static float *grad_of(snn_trainer *tr, const float *param) {
    return tr->grads + (param - tr->m->params);
}

/* ---- layers ------------------------------------------------------------------------------ */

/* Rows of the whole batch when it is spread over ranks (M counts this rank's rows). */
static long batch_rows(const snn_trainer *tr) { return (long)tr->T * tr->B_batch * tr->N; }

/* Where an eval-mode BatchNorm writes its output: bn_out reads it there. */
static float *bn_eval_out(const lin_act *a) { return a->fused ? a->x : a->z; }

/* The training-mode BatchNorm of a linear layer whose output is x (a->x, whose sums the linear
 * layer gathered in tr->bn_sums): writes the statistics and, unless fused (whose consumer
 * normalises x itself: bn_out, bn_norm_of), z. Eval mode runs lin_bn_eval_fwd instead. */
static void bn_fwd(snn_trainer *tr, const snn_linear *lin, const float *x, int M, lin_act *a,
                   bool update_running) {
    SNN_ASSERT(!tr->eval);
    snn_bn_train_fwd_sums(a->fused ? NULL : a->z, NULL, a->mean, a->rstd, x, lin->bn_w,
                          lin->bn_b, lin->bn_mean, lin->bn_var, M,
                          tr->B_batch ? batch_rows(tr) : 0, lin->out,
                          update_running ? 0.1f : 0.0f, 1e-5f, tr->bn_sums);
}

/* What a population reads from a Linear + BN: its output z, or (fused) the linear layer's
 * output x with BN's statistics, gamma and beta in *af: the neurons normalise it and charge
 * with BN's output (*afp = af; NULL when the input is read as it is). */
static const float *bn_out(const snn_trainer *tr, const snn_linear *lin, const lin_act *a,
                           snn_neuron_affine *af, const snn_neuron_affine **afp) {
    *afp = NULL;
    if (!a->fused) return a->z;
    if (tr->eval) return bn_eval_out(a);
    *af = (snn_neuron_affine){lin->bn_w, lin->bn_b, (size_t)lin->out, 0, a->mean, a->rstd};
    *afp = af;
    return a->x;
}

/* The input of a linear layer: floats x, or population p's spikes (a, width; x their floats or
 * NULL, slot where to unpack them). */
typedef struct lin_in {
    const float *x;
    int p;
    const pop_act *a;
    size_t width;
    int slot;
} lin_in;

static lin_in floats_in(const float *x) { return (lin_in){.x = x, .p = -1}; }
static lin_in spikes_in(int p, const pop_act *a, size_t width, int slot, const float *x) {
    return (lin_in){.x = x, .p = p, .a = a, .width = width, .slot = slot};
}

/* Population p's spikes as the bits of the [T B N, width] input matrix of a linear layer
 * (layers.h snn_spike_rows): a binary population of tokens whose rows fill whole words. */
static bool in_rows(const snn_trainer *tr, const lin_in *in, snn_spike_rows *xb) {
    if (tr->float_spikes || in->p < 0 || !in->a->nz || in->a->neg || in->width % 64 ||
        pop_per_sample(tr, in->p, in->width) != (size_t)tr->N * in->width)
        return false;
    *xb = (snn_spike_rows){in->a->nz, in->a->ld, tr->B * tr->N};
    return true;
}

static const float *pop_out(snn_trainer *tr, int p, const pop_act *a, size_t width, int slot);

/* The input as floats: x, or the spikes unpacked into their slot. */
static const float *in_floats(snn_trainer *tr, const lin_in *in) {
    return in->x ? in->x : pop_out(tr, in->p, in->a, in->width, in->slot);
}

/* The normalisation of a's fused BatchNorm (lin's, training mode) into y: plus res, or its
 * ReLU (snn_bn_train_normalise's arguments). */
static snn_bn_norm bn_norm_of(const snn_linear *lin, const lin_act *a, float *y, const float *res,
                              bool relu) {
    SNN_ASSERT(a->fused);
    return (snn_bn_norm){y, a->x, a->mean, a->rstd, lin->bn_w, lin->bn_b, res, relu};
}

/* lin_bn_fwd (training mode) on x_norm->y, the output of a BatchNorm whose normalisation this
 * layer's product runs chunk by chunk (snn_linear_fwd_sums_norm): x is then read in cache. */
static void lin_bn_fwd_norm(snn_trainer *tr, const snn_linear *lin, const snn_bn_norm *x_norm,
                            int M, lin_act *a, bool update_running) {
    SNN_ASSERT(!tr->eval);
    snn_linear_fwd_sums_norm(a->x, x_norm, lin->weight, lin->bias, M, lin->in, lin->out,
                             tr->bn_sums);
    bn_fwd(tr, lin, a->x, M, a, update_running);
}

/* Eval mode: z = post(BN(in w^T + b)) (snn_bn_eval_post: an ANN's ReLU slot or the residual
 * add, in the same pass). Spikes are read as bits where the linear layer can; floats run the
 * BatchNorm inside the product's row chunks. */
static void lin_bn_eval_fwd(snn_trainer *tr, const snn_linear *lin, lin_in in, int M, float *z,
                            const snn_bn_eval_post *post) {
    SNN_ASSERT(tr->eval);
    snn_spike_rows xb;
    if (in_rows(tr, &in, &xb) &&
        snn_linear_fwd_bits(tr->y, &xb, lin->weight, lin->bias, M, lin->in, lin->out,
                            tr->spike_scratch)) {
        snn_bn_eval_fwd_post(z, tr->y, lin->bn_w, lin->bn_b, lin->bn_mean, lin->bn_var, M,
                             lin->out, 1e-5f, post);
        return;
    }
    snn_linear_bn_eval_fwd_post(z, tr->y, in_floats(tr, &in), lin->weight, lin->bias, lin->bn_w,
                                lin->bn_b, lin->bn_mean, lin->bn_var, M, lin->in, lin->out,
                                1e-5f, post);
}

/* Linear layer and BatchNorm: z = BN(in w^T + b). Spikes are read as bits where the linear layer
 * can (the same bytes as from their floats). */
static void lin_bn_fwd(snn_trainer *tr, const snn_linear *lin, lin_in in, int M, lin_act *a,
                       bool update_running) {
    snn_spike_rows xb;
    if (tr->eval) {
        lin_bn_eval_fwd(tr, lin, in, M, bn_eval_out(a), &(snn_bn_eval_post){false, NULL});
        return;
    }
    if (tr->pending.y && in.x == tr->pending.y) { /* x is a normalisation still to run */
        const snn_bn_norm nm = tr->pending;
        tr->pending.y = NULL;
        lin_bn_fwd_norm(tr, lin, &nm, M, a, update_running);
        return;
    }
    /* training mode: the linear layer gathers BatchNorm's sums while it writes its output */
    if (!in_rows(tr, &in, &xb) ||
        !snn_linear_fwd_bits_sums(a->x, &xb, lin->weight, lin->bias, M, lin->in, lin->out,
                                  tr->bn_sums, tr->spike_scratch))
        snn_linear_fwd_sums(a->x, in_floats(tr, &in), lin->weight, lin->bias, M, lin->in,
                            lin->out, tr->bn_sums);
    bn_fwd(tr, lin, a->x, M, a, update_running);
}

/* What a's BatchNorm (lin's) backward reads of its forward: x and its statistics; with the
 * ReLU's beta when a ReLU follows it. */
static snn_bn_saved bn_saved_of(const snn_linear *lin, const lin_act *a) {
    return (snn_bn_saved){a->x, a->mean, a->rstd, lin->bn_w, a->relu ? lin->bn_b : NULL};
}

/* Given dz = dL/d(BN output) [M, out] (a->relu: dL/d(its ReLU's output)), accumulates
 * parameter gradients and dx += dL/dx, or writes dx = dL/dx when !add_dx (spikes as bits where
 * the linear layer can read them, as in lin_bn_fwd). */
static void lin_bn_bwd(snn_trainer *tr, const snn_linear *lin, lin_in in, const float *dz, int M,
                       const lin_act *a, float *dx, bool add_dx) {
    /* the linear layer's bias gradient is summed by BatchNorm's dx pass (the same bytes);
     * both backwards by row blocks, BatchNorm's input gradient (d_y) consumed in cache */
    float *db = lin->bias ? grad_of(tr, lin->bias) : NULL;
    const snn_bn_saved bs = bn_saved_of(lin, a);
    const long Mb = tr->B_batch ? batch_rows(tr) : 0;
    snn_spike_rows xb;
    if (in_rows(tr, &in, &xb) &&
        snn_linear_bn_bwd_bits(dx, grad_of(tr, lin->weight), db, grad_of(tr, lin->bn_w),
                               grad_of(tr, lin->bn_b), tr->d_y, dz, &bs, &xb, lin->weight, M, Mb,
                               lin->in, lin->out, add_dx, tr->spike_scratch))
        return;
    snn_linear_bn_bwd(dx, grad_of(tr, lin->weight), db, grad_of(tr, lin->bn_w),
                      grad_of(tr, lin->bn_b), tr->d_y, dz, &bs, in_floats(tr, &in), lin->weight,
                      M, Mb, lin->in, lin->out, tr->dw_scratch, add_dx);
}

/* The population's neuron parameters at the current parameter values: a PLIF's tau follows
 * its learnable w (the model's copy is refreshed only by snn_model_fold). */
static snn_neuron_params pop_params(const snn_pop *pop) {
    snn_neuron_params np = pop->np;
    if (pop->plif_w) np.tau = snn_plif_tau(*pop->plif_w);
    return np;
}

/* Neurons of population p (or slot) per sample: tokens * width (sdsa's kv_lif has 1 token). */
static size_t pop_per_sample(const snn_trainer *tr, int p, size_t width) {
    return p >= 0 ? tr->m->pops[p].size : (size_t)tr->N * width;
}

/* GELU, exact erf form (PyTorch's default), and its derivative. */
static float gelu(float x) { return (float)(0.5 * x * (1.0 + erf(x * M_SQRT1_2))); }
static float gelu_grad(float x) {
    const double cdf = 0.5 * (1.0 + erf(x * M_SQRT1_2));
    return (float)(cdf + x * exp(-0.5 * (double)x * x) * (0.5 * M_2_SQRTPI * M_SQRT1_2));
}

/* An ANN model's slot (spec section 2): identity or the configured activation, elementwise,
 * over [i0, i1). Separate functions, so that each loop is vectorised in its own target clone
 * (an OpenMP region's outlined body does not inherit SNN_VEC_FN). */
SNN_WIDE_FN SNN_VEC_FN static void relu_rows(const float *x, float *y, size_t i0, size_t i1) {
    for (size_t i = i0; i < i1; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}
/* The backward loops add to dx (acc) or write +0 + the gradient: the bytes of adding to zeros. */
SNN_WIDE_FN SNN_VEC_FN static void add_rows(const float *dy, float *dx, size_t i0, size_t i1,
                                            bool acc) {
    if (acc)
        for (size_t i = i0; i < i1; i++) dx[i] += dy[i];
    else
        for (size_t i = i0; i < i1; i++) dx[i] = 0.0f + dy[i];
}
SNN_WIDE_FN SNN_VEC_FN static void relu_bwd_rows(const float *x, const float *dy, float *dx,
                                                 size_t i0, size_t i1, bool acc) {
    if (acc)
        for (size_t i = i0; i < i1; i++) dx[i] += x[i] > 0.0f ? dy[i] : 0.0f;
    else
        for (size_t i = i0; i < i1; i++) dx[i] = 0.0f + (x[i] > 0.0f ? dy[i] : 0.0f);
}

typedef enum { SLOT_IDENTITY, SLOT_GELU, SLOT_RELU } slot_kind;

static slot_kind slot_kind_of(const snn_trainer *tr, int p) {
    if (p == SNN_SLOT_IDENTITY) return SLOT_IDENTITY;
    return tr->m->cfg->model.activation == SNN_ACT_GELU ? SLOT_GELU : SLOT_RELU;
}

/* Positions per work item of the position embedding's gradient. */
enum { POS_CHUNK = 512 };

/* dpos[i] += the double sum over tb in order of d_u[tb, i], for i in [i0, i1): the samples in
 * the outer loop, so each pass reads a contiguous run of d_u (one position down all samples at
 * a stride of N D floats was a cache miss per add); the same sums, in the same order. */
SNN_WIDE_FN SNN_VEC_FN static void pos_grad_rows(float *dpos, const float *d_u, long ND,
                                                 long TB, long i0, long i1) {
    double acc[POS_CHUNK];
    for (long i = i0; i < i1; i++) acc[i - i0] = 0.0;
    for (long tb = 0; tb < TB; tb++) {
        const float *row = d_u + (size_t)tb * ND;
        for (long i = i0; i < i1; i++) acc[i - i0] += (double)row[i];
    }
    for (long i = i0; i < i1; i++) dpos[i] += (float)acc[i - i0];
}

/* Whether head_lif is an ANN's ReLU slot: then the mean pool applies it (snn_meanpool_relu_fwd,
 * _bwd: the bytes of the slot's pass and the pool's, without the activations between). */
static bool head_relu(const snn_trainer *tr) {
    const int p = tr->m->pop_head;
    return !tr->sew && p < 0 && slot_kind_of(tr, p) == SLOT_RELU;
}

static void slot_fwd(const snn_trainer *tr, int p, const float *x, float *y, size_t n) {
    const slot_kind kind = slot_kind_of(tr, p);
    const size_t ch = elem_chunk(n);
    snn_par_ends ends_c = snn_par_ends_of(elem_chunks(n, ch)); /* par.h */
#pragma omp parallel if (n >= 2 * ELEM_CHUNK)
    for (long c; (c = snn_par_ends_next(&ends_c)) >= 0;) {
        const size_t i0 = (size_t)c * ch, i1 = n - i0 < ch ? n : i0 + ch;
        if (kind == SLOT_IDENTITY)
            memcpy(y + i0, x + i0, (i1 - i0) * sizeof *y);
        else if (kind == SLOT_GELU)
            for (size_t i = i0; i < i1; i++) y[i] = gelu(x[i]);
        else
            relu_rows(x, y, i0, i1);
    }
}

static void slot_bwd(const snn_trainer *tr, int p, const float *x, const float *dy, float *dx,
                     size_t n, bool acc) {
    const slot_kind kind = slot_kind_of(tr, p);
    const size_t ch = elem_chunk(n);
    snn_par_ends ends_c = snn_par_ends_of(elem_chunks(n, ch)); /* par.h */
#pragma omp parallel if (n >= 2 * ELEM_CHUNK)
    for (long c; (c = snn_par_ends_next(&ends_c)) >= 0;) {
        const size_t i0 = (size_t)c * ch, i1 = n - i0 < ch ? n : i0 + ch;
        if (kind == SLOT_IDENTITY)
            add_rows(dy, dx, i0, i1, acc);
        else if (kind == SLOT_GELU)
            for (size_t i = i0; i < i1; i++) dx[i] = (acc ? dx[i] : 0.0f) + dy[i] * gelu_grad(x[i]);
        else
            relu_bwd_rows(x, dy, dx, i0, i1, acc);
    }
}

/* Unpacks a's bit planes into spikes s [T, n], parallel over (t, chunk of POP_CHUNK neurons: a
 * whole number of words). */
static void pop_unpack(const snn_trainer *tr, const pop_act *a, float *s, size_t n) {
    const size_t chunk = POP_CHUNK;
    const long n_chunks = (long)((n + chunk - 1) / chunk);
    snn_par_ends ends_j = snn_par_ends_of((long)tr->T * n_chunks); /* par.h */
#pragma omp parallel
    for (long j; (j = snn_par_ends_next(&ends_j)) >= 0;) {
        const size_t t = (size_t)(j / n_chunks), off = (size_t)(j % n_chunks) * chunk;
        const size_t len = n - off < chunk ? n - off : chunk, w = t * a->ld + off / 64;
        snn_bits_unpack(s + t * n + off, a->nz + w, a->neg ? a->neg + w : NULL, len);
    }
}

/* Neuron population over [T, n] (n = B * neurons per sample), parallel over chunks of neurons;
 * an ANN slot elementwise. Returns the outputs as floats [T, n]: for a population kept as bits,
 * scratch slot `slot`, valid until the slot's next use; the bits are written from the neurons'
 * tiles. floats = false (a population kept as bits whose outputs are read only as bits): no
 * floats are written and NULL is returned. */
static const float *pop_fwd_to(snn_trainer *tr, int p, const float *x,
                               const snn_neuron_affine *af, pop_act *a, size_t width, int slot,
                               bool floats) {
    const size_t n = (size_t)tr->B * pop_per_sample(tr, p, width), chunk = POP_CHUNK;
    if (p == SNN_SLOT_IDENTITY) {
        a->x = x;
        return x;
    }
    if (p < 0) {
        slot_fwd(tr, p, x, a->s, (size_t)tr->T * n);
        return a->s;
    }
    /* a->nz: normal mode */
    float *s = !a->nz ? a->s : floats || tr->float_spikes ? tr->sp[slot] : NULL;
    const snn_neuron_params np = pop_params(&tr->m->pops[p]);
    const long n_chunks = (long)((n + chunk - 1) / chunk);
    snn_par_ends ends_c = snn_par_ends_of(n_chunks); /* par.h */
#pragma omp parallel
    for (long c; (c = snn_par_ends_next(&ends_c)) >= 0;) {
        size_t off = (size_t)c * chunk, len = n - off < chunk ? n - off : chunk;
        if (a->nz) { /* chunks start on a word: POP_CHUNK % 64 == 0 */
            snn_neuron_affine ac;
            if (af) { /* rows are width wide */
                ac = *af, ac.c0 = (af->c0 + off) % af->width;
            }
            snn_neuron_forward_seq_bits(&np, tr->T, len, n, x + off, af ? &ac : NULL,
                                        s ? s + off : NULL, a->nz + off / 64,
                                        a->neg ? a->neg + off / 64 : NULL, a->ld,
                                        a->h ? a->h + off : NULL);
        } else {
            SNN_ASSERT(!af); /* only normal-mode populations read a fused BatchNorm */
            snn_neuron_forward_seq(&np, tr->T, len, n, x + off, s + off, a->h + off, tr->smooth);
        }
    }
    return s;
}

static const float *pop_fwd(snn_trainer *tr, int p, const float *x, pop_act *a, size_t width,
                            int slot) {
    return pop_fwd_to(tr, p, x, NULL, a, width, slot, true);
}

/* pop_fwd on the output of a Linear + BN (bn_out). */
static const float *pop_fwd_bn(snn_trainer *tr, int p, const snn_linear *lin, const lin_act *la,
                               pop_act *a, size_t width, int slot, bool floats) {
    /* a ReLU fused into the BatchNorm runs inside the next layer's product (lin_bn_fwd_norm) */
    SNN_ASSERT(!(la->fused && !tr->eval && p == SNN_SLOT_ACTIVATION));
    snn_neuron_affine af;
    const snn_neuron_affine *afp;
    const float *x = bn_out(tr, lin, la, &af, &afp);
    return pop_fwd_to(tr, p, x, afp, a, width, slot, floats);
}

/* The outputs of population p as floats [T, n] for the backward: spikes kept as bits are
 * unpacked into scratch slot `slot` (valid until the slot's next use). */
static const float *pop_out(snn_trainer *tr, int p, const pop_act *a, size_t width, int slot) {
    if (p == SNN_SLOT_IDENTITY) return a->x;
    if (!a->nz) return a->s;
    float *s = tr->sp[slot];
    pop_unpack(tr, a, s, (size_t)tr->B * pop_per_sample(tr, p, width));
    return s;
}

/* Backward of population p (or slot) over [T, n] given ds, the gradient on its outputs: dx +=
 * (acc) or dx = the gradient (the bytes of adding to zeros, without reading or zeroing dx).
 * Normal mode recomputes the spikes from H; smooth mode reads them from a->s. */
static void pop_bwd_to(snn_trainer *tr, int p, const float *x, const pop_act *a, const float *ds,
                       float *dx, size_t width, bool acc) {
    const size_t n = (size_t)tr->B * pop_per_sample(tr, p, width), chunk = POP_CHUNK;
    if (p < 0) {
        slot_bwd(tr, p, x, ds, dx, (size_t)tr->T * n, acc);
        return;
    }
    if (!acc && tr->smooth) { /* the smooth backward only accumulates */
        zero_floats(dx, (size_t)tr->T * n);
        acc = true;
    }
    const snn_pop *pop = &tr->m->pops[p];
    const snn_neuron_params np = pop_params(pop);
    const long n_chunks = (long)((n + chunk - 1) / chunk);
    snn_par_ends ends_c = snn_par_ends_of(n_chunks); /* par.h */
#pragma omp parallel
    for (long c; (c = snn_par_ends_next(&ends_c)) >= 0;) {
        size_t off = (size_t)c * chunk, len = n - off < chunk ? n - off : chunk;
        float dtau = 0.0f;
        /* normal mode recomputes the spikes from H; smooth mode's are not a function of H */
        if (tr->smooth) {
            snn_neuron_backward_seq_smooth(&np, tr->T, len, n, x + off, a->h + off, a->s + off,
                                           ds + off, dx + off, pop->plif_w ? &dtau : NULL);
        } else if (a->recompute) { /* H from the fused BN's input (plan_pop_bn) */
            snn_neuron_affine ac = a->rc;
            ac.c0 = (a->rc.c0 + off) % a->rc.width;
            snn_neuron_backward_seq_affine(&np, tr->T, len, n, a->rc_x + off, &ac, ds + off,
                                           dx + off, acc);
        } else {
            (acc ? snn_neuron_backward_seq : snn_neuron_backward_seq_into)(
                &np, tr->T, len, n, x ? x + off : NULL, a->h + off, ds + off, dx + off,
                pop->plif_w ? &dtau : NULL); /* x (NULL after a fused BN) only for dtau */
        }
        tr->dtau[c] = dtau;
    }
    if (pop->plif_w) {
        /* chunk sums in chunk order (thread-count independent); d tau / d w = -(tau - 1) */
        double dtau = 0.0;
        for (long c = 0; c < n_chunks; c++) dtau += tr->dtau[c];
        *grad_of(tr, pop->plif_w) += (float)(dtau * -((double)np.tau - 1.0));
    }
}

static void pop_bwd(snn_trainer *tr, int p, const float *x, const pop_act *a, const float *ds,
                    float *dx, size_t width) {
    pop_bwd_to(tr, p, x, a, ds, dx, width, true);
}

/* pop_bwd into a dx nothing else has written yet: dx = the gradient. */
static void pop_bwd_into(snn_trainer *tr, int p, const float *x, const pop_act *a,
                         const float *ds, float *dx, size_t width) {
    pop_bwd_to(tr, p, x, a, ds, dx, width, false);
}

/* Whether the attention kernel reads the block input x_in itself (cat's token logits, primal's
 * sampled tokens), forward and backward, as floats. */
static bool attn_reads_x(const snn_trainer *tr) {
    return tr->kind == SNN_ATTN_CAT || tr->kind == SNN_ATTN_PRIMAL;
}

static int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* sdsa (spec section 3): kv = sum_n K*V per (t, b, channel), kv_lif over t, O = Q * S_kv.
 * Jobs own one (sample, head) over all T. */
static void sdsa_fwd(snn_trainer *tr, int l, const float *sq, const float *sk, const float *sv) {
    const snn_model *m = tr->m;
    block_act *b = &tr->blocks[l];
    const int N = tr->N, D = tr->D, d = m->d, H = m->heads, B = tr->B, T = tr->T;
    const long ldt = (long)B * N * D;
    /* a sample's H jobs together, shared two-ended: par.h */
    snn_par_ends ends_kv = snn_par_ends_of(B);
#pragma omp parallel
    for (long bs; (bs = snn_par_ends_next(&ends_kv)) >= 0;)
    for (long j = bs * H; j < (bs + 1) * H; j++) {
        const size_t off = (size_t)(j / H) * N * D + (size_t)(j % H) * d;
        snn_sdsa_kv_train(T, N, d, sk + off, sv + off, D, ldt,
                          b->kv + (size_t)(j / H) * D + (size_t)(j % H) * d, B * D);
    }
    const float *skv = pop_fwd(tr, m->blocks[l].pop_kv, b->kv, &b->pkv, (size_t)D, SP_KV);
    /* a sample's H jobs together, shared two-ended: par.h */
    snn_par_ends ends_mask = snn_par_ends_of(B);
#pragma omp parallel
    for (long bs; (bs = snn_par_ends_next(&ends_mask)) >= 0;)
    for (long j = bs * H; j < (bs + 1) * H; j++) {
        const size_t off = (size_t)(j / H) * N * D + (size_t)(j % H) * d;
        snn_sdsa_mask_train(T, N, d, sq + off, D, ldt,
                            skv + (size_t)(j / H) * D + (size_t)(j % H) * d, B * D,
                            b->o + off, D, ldt);
    }
}

static void sdsa_bwd(snn_trainer *tr, int l, const float *sq, const float *sk, const float *sv) {
    const snn_model *m = tr->m;
    block_act *b = &tr->blocks[l];
    const int N = tr->N, D = tr->D, d = m->d, H = m->heads, B = tr->B, T = tr->T;
    const long ldt = (long)B * N * D;
    const size_t TBD = (size_t)T * B * D;
    zero_floats(tr->d_kvs, TBD);
    const int pop_kv = m->blocks[l].pop_kv;
    const float *skv = pop_out(tr, pop_kv, &b->pkv, (size_t)D, SP_KV);
    /* a sample's H jobs together, shared two-ended: par.h */
    snn_par_ends ends_mask = snn_par_ends_of(B);
#pragma omp parallel
    for (long bs; (bs = snn_par_ends_next(&ends_mask)) >= 0;)
    for (long j = bs * H; j < (bs + 1) * H; j++) {
        const size_t off = (size_t)(j / H) * N * D + (size_t)(j % H) * d;
        const size_t koff = (size_t)(j / H) * D + (size_t)(j % H) * d;
        snn_sdsa_mask_backward(T, N, d, sq + off, D, ldt, skv + koff, B * D,
                               tr->d_o + off, D, ldt, tr->d_q + off, tr->d_kvs + koff);
    }
    zero_floats(tr->d_kv, TBD);
    pop_bwd(tr, pop_kv, b->kv, &b->pkv, tr->d_kvs, tr->d_kv, (size_t)D);
    /* a sample's H jobs together, shared two-ended: par.h */
    snn_par_ends ends_kv = snn_par_ends_of(B);
#pragma omp parallel
    for (long bs; (bs = snn_par_ends_next(&ends_kv)) >= 0;)
    for (long j = bs * H; j < (bs + 1) * H; j++) {
        const size_t off = (size_t)(j / H) * N * D + (size_t)(j % H) * d;
        const size_t koff = (size_t)(j / H) * D + (size_t)(j % H) * d;
        snn_sdsa_kv_backward(T, N, d, sk + off, sv + off, D, ldt, tr->d_kv + koff,
                             B * D, tr->d_k + off, tr->d_v + off);
    }
}

/* Gradient block of primal's shared parameters: dE [M s], dR [M s], dcw [d 2s], dcb [d]. */
static size_t primal_dgrad_floats(const snn_model *m) {
    return 2 * (size_t)m->primal_M * m->primal_s + 2 * (size_t)m->d * m->primal_s + (size_t)m->d;
}

/* cat: a job's spectra, after its z in its att share, kept by the forward for the backward;
 * NULL for an inference plan (nothing to keep them for). */
static double *cat_spectra(const snn_trainer *tr, const float *att) {
    return tr->infer_only ? NULL : (double *)(uintptr_t)(att + cat_z_floats(tr->N));
}

/* Whether block l's attention kernel reads q_lif, k_lif and v_lif's spikes from their bits (the
 * forward then writes no floats of them): ssa on binary populations, bsa (v binary), heads
 * within the bits kernels' limits, normal mode, the bits path (snn_trainer_set_spike_bits). */
static bool attn_reads_bits(const snn_trainer *tr, int l) {
    const snn_block *mb = &tr->m->blocks[l];
    const bool bsa = tr->kind == SNN_ATTN_BSA;
    if ((tr->kind != SNN_ATTN_SSA && !bsa) || tr->smooth || tr->float_spikes || tr->N > 64 ||
        tr->m->d > 64)
        return false;
    const int pops[3] = {mb->pop_q, mb->pop_k, mb->pop_v};
    for (int j = 0; j < 3; j++) /* ssa: binary; bsa: any q, k, binary v */
        if (pops[j] < 0 || (tr->m->pops[pops[j]].np.bipolar && (!bsa || j == 2))) return false;
    return true;
}

/* Head h of sample-timestep tb's q_lif, k_lif and v_lif spikes in block b's bit planes: row
 * t = tb / B of the planes, token (b, 0) of head h at bit b N D + h d (attn_reads_bits). */
static snn_head_bits head_bits(const snn_trainer *tr, const block_act *b, long tb, int h) {
    const size_t t = (size_t)tb / tr->B, D = tr->D;
    const pop_act *pq = &b->pq, *pk = &b->pk;
    return (snn_head_bits){pq->nz + t * pq->ld, pq->neg ? pq->neg + t * pq->ld : NULL,
                           pk->nz + t * pk->ld, pk->neg ? pk->neg + t * pk->ld : NULL,
                           b->pv.nz + t * b->pv.ld,
                           (size_t)(tb % tr->B) * tr->N * D + (size_t)h * tr->m->d, D};
}

/* The attention kernel of block l on its (t, b, h) jobs; x_in is the block input [M, D] (cat's
 * projection and primal's sampled tokens read it), sq, sk, sv the outputs of q_lif, k_lif,
 * v_lif [M, D] (NULL where the kind has none, or where the kernel reads their bits:
 * attn_reads_bits). */
static void attn_fwd(snn_trainer *tr, int l, const float *x_in, const float *sq,
                     const float *sk, const float *sv) {
    const snn_model *m = tr->m;
    const snn_block *mb = &m->blocks[l];
    block_act *b = &tr->blocks[l];
    const int N = tr->N, D = tr->D, d = m->d, H = m->heads;
    const long jobs = (long)tr->T * tr->B * H;
    const int M = tr->T * tr->B * N;
    if (tr->kind == SNN_ATTN_SDSA) {
        sdsa_fwd(tr, l, sq, sk, sv);
        return;
    }
    if (tr->kind == SNN_ATTN_CAT) snn_linear_fwd(b->g, x_in, mb->a_w, NULL, M, D, H);
    const int S = m->primal_s, Mp = m->primal_M;
    /* a sample's H jobs to one thread (here and in the other per-head loops): a head's rows
     * are one cache line of each token's row, and the adjacent-line prefetch brings its
     * neighbour's, which the next job then finds in cache (split between the threads, the
     * attention kernels took 16 % more time); each thread the same end of the samples as in
     * the linear layers (par.h) */
    snn_par_ends ends = snn_par_ends_of(jobs / H);
#pragma omp parallel
    for (long tb; (tb = snn_par_ends_next(&ends)) >= 0;)
    for (long j = tb * H; j < (tb + 1) * H; j++) {
        const int h = (int)(j % H);
        const size_t off = (size_t)tb * N * D + (size_t)h * d;
        float *att = b->att + (size_t)j * tr->att_job_floats;
        switch (tr->kind) {
        case SNN_ATTN_BSA:
            if (!sq) { /* bits */
                const snn_head_bits hb = head_bits(tr, b, tb, h);
                snn_attn_bsa_head_train_bits(N, d, &hb, m->shift,
                                             m->cfg->model.attention.rounding, b->o + off, D,
                                             att, b->mr + (size_t)j * 2 * N);
                break;
            }
            snn_attn_bsa_head_train(N, d, sq + off, sk + off, sv + off, D, m->shift,
                                    m->cfg->model.attention.rounding, tr->smooth, b->o + off, D,
                                    att, b->mr + (size_t)j * 2 * N, false);
            break;
        case SNN_ATTN_SSA:
            if (!sq) {
                const snn_head_bits hb = head_bits(tr, b, tb, h);
                snn_attn_ssa_head_train_bits(N, d, &hb, m->ssa_scale, b->o + off, D, att);
                break;
            }
            snn_attn_ssa_head_train(N, d, sq + off, sk + off, sv + off, D,
                                    m->ssa_scale, b->o + off, D, att);
            break;
        case SNN_ATTN_SOFTMAX:
            snn_attn_softmax_head_train(N, d, sq + off, sk + off, sv + off, D,
                                        b->o + off, D, att);
            break;
        case SNN_ATTN_CAT:
            snn_attn_cat_head_train(tr->cat_plan, b->g + (size_t)tb * N * H + h, H, sv + off,
                                    D, b->o + off, D, att, cat_spectra(tr, att),
                                    tr->cat_scratch + (size_t)thread_id() * tr->cat_scratch_doubles);
            break;
        case SNN_ATTN_PRIMAL: {
            snn_primal_cache c = snn_primal_cache_bind(b->pcache + (size_t)j * tr->primal_cache_floats,
                                                       N, d, S);
            snn_primal_forward(N, d, S, Mp, sq + off, sk + off, D, x_in + off, D,
                               tr->primal_idx, mb->E + (size_t)h * Mp * S,
                               mb->R + (size_t)h * Mp * S, mb->c_w, mb->c_b, b->o + off, D, &c,
                               NULL);
            double *Sj = tr->ksvd_job + (size_t)j * S;
            for (int k = 0; k < S; k++) Sj[k] = 0.0;
            snn_primal_ksvd_accum(N, S, c.e, c.r, Sj);
            break;
        }
        default: SNN_ASSERT(!"unreachable attention kind");
        }
    }
    if (tr->kind == SNN_ATTN_PRIMAL) {
        /* S[h] = sum over the batch in job order; J of this layer (primal.h) */
        memset(b->ksvd_S, 0, (size_t)H * S * sizeof *b->ksvd_S);
        for (long j = 0; j < jobs; j++)
            for (int k = 0; k < S; k++) b->ksvd_S[(size_t)(j % H) * S + k] += tr->ksvd_job[(size_t)j * S + k];
        const double trace = snn_primal_ksvd_trace(H, Mp, S, mb->E, mb->R);
        b->ksvd_J = snn_primal_ksvd_J(H, S, mb->lambda, b->ksvd_S, trace, tr->T * tr->B, N);
    }
}

/* x[i ld + c] = 0 for i < N, c < d: one head's rows of a [rows, ld] gradient. Sixteen floats a
 * store, down the rows (gcc turns a loop along a row into a memset call per row, which cost
 * more than the stores). */
SNN_WIDE_FN SNN_VEC_FN static void zero_head(float *x, int N, int d, int ld) {
    typedef float v16fu __attribute__((vector_size(64), aligned(4)));
    const int d16 = d / 16 * 16;
    for (int c = 0; c < d16; c += 16)
        for (int i = 0; i < N; i++) *(v16fu *)(x + (size_t)i * ld + c) = (v16fu){0};
    for (int c = d16; c < d; c++)
        for (int i = 0; i < N; i++) x[(size_t)i * ld + c] = 0.0f;
}

/* Backward of attn_fwd: dQ, dK, dV into tr->d_q, d_k, d_v; gradients on x_in (cat's projection,
 * primal's sampled tokens) are added to d_in [M, D]. */
static void attn_bwd(snn_trainer *tr, int l, const float *x_in, const float *sq,
                     const float *sk, const float *sv, float *d_in) {
    const snn_model *m = tr->m;
    const snn_block *mb = &m->blocks[l];
    block_act *b = &tr->blocks[l];
    const int N = tr->N, D = tr->D, d = m->d, H = m->heads;
    const long jobs = (long)tr->T * tr->B * H;
    const int M = tr->T * tr->B * N;
    if (tr->kind == SNN_ATTN_SDSA) {
        sdsa_bwd(tr, l, sq, sk, sv);
        return;
    }
    const int S = m->primal_s, Mp = m->primal_M;
    const size_t pg = tr->kind == SNN_ATTN_PRIMAL ? primal_dgrad_floats(m) : 0;
    double ksvd_g = 0.0, ksvd_coef = 0.0;
    if (tr->kind == SNN_ATTN_PRIMAL) {
        ksvd_g = snn_primal_ksvd_dJ(m->cfg->model.attention.eta, b->ksvd_J, m->L);
        ksvd_coef = ksvd_g / ((double)tr->T * tr->B * H * N);
    }
    if (tr->kind == SNN_ATTN_CAT) zero_floats(tr->d_g, (size_t)M * H);
    /* which of dq, dk, dv the kernel accumulates into (the others are not used) */
    const bool has_qk = tr->kind != SNN_ATTN_CAT, has_v = tr->kind != SNN_ATTN_PRIMAL;
    /* work items: one job each, or primal's chunks: PRIMAL_SPLITS per head, chunk c = head
     * c / PRIMAL_SPLITS over its share of the samples, jobs j = tb H + h in tb order */
    const bool chunked = tr->kind == SNN_ATTN_PRIMAL;
    const long TB = jobs / H, items = chunked ? (long)H * PRIMAL_SPLITS : jobs;
    /* a sample's H jobs together (or one primal chunk), shared two-ended (par.h) */
    const long group = chunked ? 1 : H;
    snn_par_ends ends = snn_par_ends_of(items / group);
#pragma omp parallel
    for (long gi; (gi = snn_par_ends_next(&ends)) >= 0;)
    for (long item = gi * group; item < (gi + 1) * group; item++) {
        const long split = item % PRIMAL_SPLITS, tb0 = split * TB / PRIMAL_SPLITS;
        const long first = chunked ? tb0 * H + item / PRIMAL_SPLITS : item;
        const long count = chunked ? (split + 1) * TB / PRIMAL_SPLITS - tb0 : 1;
        float *const dgrad = chunked ? tr->primal_dgrad + (size_t)item * pg : NULL;
        if (chunked) memset(dgrad, 0, pg * sizeof *dgrad);
        const int tid = thread_id();
        float *scratch = tr->att_scratch + (size_t)tid * tr->att_scratch_floats;
        for (long n = 0; n < count; n++) {
            const long j = first + n * H;
            const long tb = j / H;
            const int h = (int)(j % H);
            const size_t off = (size_t)tb * N * D + (size_t)h * d;
            const float *att = b->att + (size_t)j * tr->att_job_floats;
            /* the kernels accumulate: zero this head's rows of their outputs here, where the
             * kernel finds them in cache (a zeroing pass over the buffers cost a write and a
             * read of each from memory) */
            if (has_qk) zero_head(tr->d_q + off, N, d, D), zero_head(tr->d_k + off, N, d, D);
            if (has_v) zero_head(tr->d_v + off, N, d, D);
            switch (tr->kind) {
            case SNN_ATTN_BSA:
                if (!sq) { /* bits, as attn_fwd */
                    const snn_head_bits hb = head_bits(tr, b, tb, h);
                    snn_attn_bsa_head_backward_bits(N, d, &hb, m->shift, att, tr->d_o + off, D,
                                                    tr->d_q + off, tr->d_k + off,
                                                    tr->d_v + off, D, scratch);
                    break;
                }
                snn_attn_bsa_head_backward(N, d, sq + off, sk + off, sv + off, D,
                                           m->shift, att, tr->d_o + off, D, tr->d_q + off,
                                           tr->d_k + off, tr->d_v + off, scratch);
                break;
            case SNN_ATTN_SSA:
                if (!sq) {
                    const snn_head_bits hb = head_bits(tr, b, tb, h);
                    snn_attn_ssa_head_backward_bits(N, d, &hb, m->ssa_scale, att, tr->d_o + off,
                                                    D, tr->d_q + off, tr->d_k + off,
                                                    tr->d_v + off, D, scratch);
                    break;
                }
                snn_attn_ssa_head_backward(N, d, sq + off, sk + off, sv + off, D,
                                           m->ssa_scale, att, tr->d_o + off, D, tr->d_q + off,
                                           tr->d_k + off, tr->d_v + off, scratch);
                break;
            case SNN_ATTN_SOFTMAX:
                snn_attn_softmax_head_backward(N, d, sq + off, sk + off, sv + off, D, att,
                                               tr->d_o + off, D, tr->d_q + off,
                                               tr->d_k + off, tr->d_v + off, scratch);
                break;
            case SNN_ATTN_CAT:
                snn_attn_cat_head_backward(
                    tr->cat_plan, b->g + (size_t)tb * N * H + h, H, sv + off, D, att,
                    tr->d_o + off, D, tr->d_g + (size_t)tb * N * H + h, H, tr->d_v + off,
                    cat_spectra(tr, att), tr->cat_scratch + (size_t)tid * tr->cat_scratch_doubles);
                break;
            case SNN_ATTN_PRIMAL: {
                snn_primal_cache c = snn_primal_cache_bind(
                    b->pcache + (size_t)j * tr->primal_cache_floats, N, d, S);
                float *dE = dgrad, *dR = dE + (size_t)Mp * S, *dcw = dR + (size_t)Mp * S;
                float *dcb = dcw + (size_t)d * 2 * S;
                snn_primal_backward(N, d, S, Mp, D, tr->primal_idx, mb->E + (size_t)h * Mp * S,
                                    mb->R + (size_t)h * Mp * S, mb->c_w, &c, tr->d_o + off, D,
                                    ksvd_coef, mb->lambda + (size_t)h * S, tr->d_q + off,
                                    tr->d_k + off, D, d_in + off, dE, dR, dcw, dcb, scratch);
                break;
            }
            default: SNN_ASSERT(!"unreachable attention kind");
            }
        }
    }
    if (tr->kind == SNN_ATTN_CAT)
        snn_linear_bwd(d_in, grad_of(tr, mb->a_w), NULL, tr->d_g, x_in, mb->a_w, M, D, H,
                       tr->dw_scratch, true);
    if (tr->kind == SNN_ATTN_PRIMAL) {
        /* shared-parameter gradients: the chunks' blocks summed in chunk order, in parallel over
         * ranges of a block's entries (each entry's sum in chunk order: any thread count) */
        float *gE = grad_of(tr, mb->E), *gR = grad_of(tr, mb->R);
        float *gcw = grad_of(tr, mb->c_w), *gcb = grad_of(tr, mb->c_b);
        const size_t MS = (size_t)Mp * S, CW = (size_t)d * 2 * S;
        const size_t start[5] = {0, MS, 2 * MS, 2 * MS + CW, pg}; /* E, R, c_w, c_b in a block */
        enum { ENTRIES = 256 }; /* entries of a block per work item */
        snn_par_ends ends_c = snn_par_ends_of((long)((pg + ENTRIES - 1) / ENTRIES)); /* par.h */
#pragma omp parallel
        for (long c; (c = snn_par_ends_next(&ends_c)) >= 0;) {
            const size_t i0 = (size_t)c * ENTRIES, i1 = pg - i0 < ENTRIES ? pg : i0 + ENTRIES;
            for (long it = 0; it < items; it++) {
                const float *g = tr->primal_dgrad + (size_t)it * pg;
                const size_t h = (size_t)(it / PRIMAL_SPLITS);
                float *const base[4] = {gE + h * MS, gR + h * MS, gcw, gcb};
                for (int p = 0; p < 4; p++) { /* the range's piece in each part */
                    const size_t lo = i0 > start[p] ? i0 : start[p];
                    const size_t hi = i1 < start[p + 1] ? i1 : start[p + 1];
                    for (size_t i = lo; i < hi; i++) base[p][i - start[p]] += g[i];
                }
            }
        }
        snn_primal_ksvd_lambda_backward(H, S, mb->lambda, b->ksvd_S, tr->T * tr->B, N, ksvd_g,
                                        grad_of(tr, mb->lambda));
        snn_primal_ksvd_trace_backward(H, Mp, S, mb->E, mb->R, ksvd_g, gE, gR);
    }
}

/* out = a + b over [i0, i1) (vectorised in its own clone, as relu_rows). */
SNN_WIDE_FN SNN_VEC_FN static void add3_rows(float *out, const float *a, const float *b,
                                             size_t i0, size_t i1) {
    for (size_t i = i0; i < i1; i++) out[i] = a[i] + b[i];
}

/* out [n] = a + b, in parallel chunks (the residual adds: serial, they were 4 % of an ANN's
 * inference, all of it on one thread). */
static void add3(float *out, const float *a, const float *b, size_t n) {
    const size_t ch = elem_chunk(n);
    snn_par_ends ends_c = snn_par_ends_of(elem_chunks(n, ch)); /* par.h */
#pragma omp parallel if (n >= 2 * ELEM_CHUNK)
    for (long c; (c = snn_par_ends_next(&ends_c)) >= 0;) {
        const size_t i0 = (size_t)c * ch, i1 = n - i0 < ch ? n : i0 + ch;
        add3_rows(out, a, b, i0, i1);
    }
}

/* Training mode: out = stream + the output of a Linear + BN (ms blocks' o and fc2): when
 * fused, in the BatchNorm's normalisation pass (its output is never stored; the same bytes as
 * the sum). Eval mode adds in the BatchNorm's own pass (lin_bn_eval_fwd). */
static void residual_add(snn_trainer *tr, const snn_linear *lin, const lin_act *la, float *out,
                         const float *stream, size_t MD) {
    SNN_ASSERT(!tr->eval);
    if (la->fused)
        snn_bn_train_normalise(out, NULL, la->x, la->mean, la->rstd, lin->bn_w, lin->bn_b,
                               tr->T * tr->B * tr->N, lin->out, false, stream);
    else
        add3(out, stream, la->z, MD);
}

/* Patch rows (t, b, n) of the minibatch; direct encoding repeats t = 0. */
static void make_patches(snn_trainer *tr, const uint8_t *images, const int64_t *file_index) {
    const snn_model *m = tr->m;
    const int P = m->P, G = m->img / P, H = m->img, B = tr->B;
    const size_t pix = (size_t)m->C * H * H, per_t = (size_t)B * tr->N * tr->K;
    const bool rate = m->cfg->data.encoding == SNN_ENCODING_RATE;
    const int Te = rate ? tr->T : 1;
    /* a sample to a thread (every pixel's encoding is its own: the same bytes) */
#pragma omp parallel for schedule(static) if (Te * B > 1)
    for (int tb = 0; tb < Te * B; tb++) {
        const int t = tb / B, b = tb % B;
        float *x = tr->pix_scratch + (size_t)thread_id() * pix;
        const uint8_t *img = images + (size_t)b * pix;
        if (rate)
            snn_encode_rate_pixels(img, pix, file_index[b], t, m->cfg->seed, x);
        else
            snn_encode_direct_pixels(img, pix, x);
        float *dst = tr->patches + (size_t)t * per_t + (size_t)b * tr->N * tr->K;
        for (int gy = 0; gy < G; gy++)
            for (int gx = 0; gx < G; gx++)
                for (int c = 0; c < m->C; c++)
                    for (int r = 0; r < P; r++)
                        for (int q = 0; q < P; q++)
                            *dst++ = x[((size_t)c * H + gy * P + r) * H + gx * P + q];
    }
    if (!rate)
        for (int t = 1; t < tr->T; t++) memcpy(tr->patches + (size_t)t * per_t, tr->patches, per_t * sizeof(float));
}

/* Nonzero spikes of a population over [T, B * per_sample] (none if it never ran: cat's q_lif
 * and k_lif, which count as silent neurons). */
static uint64_t count_spikes(const snn_trainer *tr, int p, const pop_act *a, size_t width,
                             uint64_t *neurons) {
    if (p < 0) return 0; /* absent, or an ANN slot */
    const size_t n = (size_t)tr->B * pop_per_sample(tr, p, width);
    uint64_t c = 0;
    for (size_t t = 0; t < (size_t)tr->T; t++) {
        if (a->nz) c += snn_bits_count(a->nz + t * a->ld, n);
        if (a->s)
            for (size_t i = 0; i < n; i++) c += a->s[t * n + i] != 0.0f;
    }
    *neurons += (size_t)tr->T * n;
    return c;
}

double snn_trainer_firing_rate(const snn_trainer *tr) {
    const snn_model *m = tr->m;
    const size_t D = (size_t)tr->D, Hd = (size_t)tr->Hd;
    uint64_t spikes = 0, neurons = 0;
    for (int l = 0; l < m->L; l++) {
        const snn_block *mb = &m->blocks[l];
        const block_act *b = &tr->blocks[l];
        const int ids[9] = {mb->pop_in, mb->pop_q, mb->pop_k, mb->pop_v, mb->pop_attn,
                            mb->pop_mlp_in, mb->pop_o, mb->pop_out, mb->pop_kv};
        const pop_act *acts[9] = {&b->in, &b->pq, &b->pk, &b->pv, &b->pa, &b->pm, &b->po, &b->pout,
                                  &b->pkv};
        for (int j = 0; j < 9; j++) spikes += count_spikes(tr, ids[j], acts[j], D, &neurons);
        spikes += count_spikes(tr, mb->pop_hidden, &b->ph, Hd, &neurons);
    }
    spikes += count_spikes(tr, m->pop_head, &tr->head, D, &neurons);
    return neurons ? (double)spikes / (double)neurons : 0.0;
}

/* ---- step -------------------------------------------------------------------------------- */

float snn_trainer_step(snn_trainer *tr, const uint8_t *images, const int64_t *file_index,
                       const int32_t *labels, int B, bool update_running, bool grads,
                       int *correct) {
    snn_model *m = tr->m;
    SNN_ASSERT(B >= 1 && B <= tr->Bmax);
    SNN_ASSERT(!tr->infer_only || (!grads && !update_running));
    tr->B = B;
    const int T = tr->T, N = tr->N, D = tr->D, Hd = tr->Hd, C = tr->C;
    const int M = T * B * N;
    const size_t MD = (size_t)M * D;
    memcpy(tr->labels, labels, (size_t)B * sizeof *labels);

    /* ---- forward ---- */
    tr->sp[SP_X] = tr->d_s;
    make_patches(tr, images, file_index);
    lin_bn_fwd(tr, &m->embed_spk, floats_in(tr->patches), M, &tr->embed, update_running);
    /* u0 [T*B, N*D] = BN_embed(...) + pos [N*D], one sample (t, b) per iteration */
    const size_t ND = (size_t)N * D;
    snn_par_ends ends_tb = snn_par_ends_of((long)T * B); /* par.h */
#pragma omp parallel if (MD >= 2 * ELEM_CHUNK)
    for (long tb; (tb = snn_par_ends_next(&ends_tb)) >= 0;)
        add3_rows(tr->u0 + (size_t)tb * ND, tr->embed.z + (size_t)tb * ND, m->pos, 0, ND);
    for (int l = 0; l < m->L; l++) {
        const snn_block *mb = &m->blocks[l];
        block_act *b = &tr->blocks[l];
        /* input of q, k, v: lif_in's spikes (ms), or the spike-sum stream (sew) */
        const bool stream_in = tr->sew && l > 0;
        /* x_in's floats: sew's residual and attn_reads_x's kernels read them; q, k, v read the
         * bits where they can (lin_bn_fwd) */
        const bool x_floats = tr->sew || attn_reads_x(tr);
        const float *x_in =
            stream_in ? tr->blocks[l - 1].u_out
                      : pop_fwd_to(tr, mb->pop_in, b->u_in, NULL, &b->in, (size_t)D, SP_X,
                                   x_floats);
        const lin_in qkv_in =
            stream_in ? floats_in(x_in) : spikes_in(mb->pop_in, &b->in, (size_t)D, SP_X, x_in);
        const snn_linear *lins[3] = {&mb->q, &mb->k, &mb->v};
        lin_act *acts[3] = {&b->q, &b->k, &b->v};
        pop_act *pops[3] = {&b->pq, &b->pk, &b->pv};
        const int pop_ids[3] = {mb->pop_q, mb->pop_k, mb->pop_v}, slots[3] = {SP_Q, SP_K, SP_V};
        const float *qkv[3] = {NULL, NULL, NULL};
        const bool qkv_floats = !attn_reads_bits(tr, l);
        for (int j = 0; j < 3; j++) {
            if (!lins[j]->weight) continue; /* cat has no q, k; primal no v */
            lin_bn_fwd(tr, lins[j], qkv_in, M, acts[j], update_running);
            qkv[j] = pop_fwd_bn(tr, pop_ids[j], lins[j], acts[j], pops[j], (size_t)D, slots[j],
                                qkv_floats);
        }
        attn_fwd(tr, l, x_in, qkv[0], qkv[1], qkv[2]);
        /* attn_lif, mlp.lif_in and hidden_lif feed one linear layer each: bits only */
        const float *sa =
            pop_fwd_to(tr, mb->pop_attn, b->o, NULL, &b->pa, (size_t)D, SP_Q, false);
        const lin_in o_in = spikes_in(mb->pop_attn, &b->pa, (size_t)D, SP_Q, sa);
        /* eval, ms blocks: the residual adds (u_mid = u_in + BN_o, u_out = u_mid + BN_fc2) and
         * an ANN's ReLU after fc1 run in their BatchNorm's pass (lin_bn_eval_fwd) */
        const bool eval_ms = tr->eval && !tr->sew;
        const bool eval_relu = eval_ms && mb->pop_hidden < 0 &&
                               slot_kind_of(tr, mb->pop_hidden) == SLOT_RELU;
        if (eval_ms)
            lin_bn_eval_fwd(tr, &mb->o, o_in, M, b->u_mid, &(snn_bn_eval_post){false, b->u_in});
        else
            lin_bn_fwd(tr, &mb->o, o_in, M, &b->proj, update_running);
        if (tr->sew) {
            const float *so =
                pop_fwd_bn(tr, mb->pop_o, &mb->o, &b->proj, &b->po, (size_t)D, SP_Q, true);
            add3(b->u_mid, x_in, so, MD);
            lin_bn_fwd(tr, &mb->fc1, floats_in(b->u_mid), M, &b->fc1, update_running);
        } else if (!tr->eval && b->proj.fused && mb->pop_mlp_in == SNN_SLOT_IDENTITY) {
            /* fc1 reads u_mid = u_in + BN_o(...) itself: its product normalises each chunk */
            const snn_bn_norm nm = bn_norm_of(&mb->o, &b->proj, b->u_mid, b->u_in, false);
            pop_fwd_to(tr, mb->pop_mlp_in, b->u_mid, NULL, &b->pm, (size_t)D, SP_Q, false);
            lin_bn_fwd_norm(tr, &mb->fc1, &nm, M, &b->fc1, update_running);
        } else {
            if (!eval_ms) residual_add(tr, &mb->o, &b->proj, b->u_mid, b->u_in, MD);
            const float *sm =
                pop_fwd_to(tr, mb->pop_mlp_in, b->u_mid, NULL, &b->pm, (size_t)D, SP_Q, false);
            const lin_in fc1_in = spikes_in(mb->pop_mlp_in, &b->pm, (size_t)D, SP_Q, sm);
            if (eval_relu) /* the ReLU slot's output, as slot_fwd writes it */
                lin_bn_eval_fwd(tr, &mb->fc1, fc1_in, M, b->ph.s, &(snn_bn_eval_post){true, NULL});
            else
                lin_bn_fwd(tr, &mb->fc1, fc1_in, M, &b->fc1, update_running);
        }
        if (!tr->eval && b->fc1.relu) { /* fc2 applies fc1's BatchNorm and ReLU chunk by chunk */
            const snn_bn_norm nm = bn_norm_of(&mb->fc1, &b->fc1, b->ph.s, NULL, true);
            lin_bn_fwd_norm(tr, &mb->fc2, &nm, M, &b->fc2, update_running);
        } else {
            const float *sh = eval_relu ? b->ph.s
                                        : pop_fwd_bn(tr, mb->pop_hidden, &mb->fc1, &b->fc1,
                                                     &b->ph, (size_t)Hd, SP_X, false);
            const lin_in fc2_in = spikes_in(mb->pop_hidden, &b->ph, (size_t)Hd, SP_X, sh);
            if (eval_ms)
                lin_bn_eval_fwd(tr, &mb->fc2, fc2_in, M, b->u_out,
                                &(snn_bn_eval_post){false, b->u_mid});
            else
                lin_bn_fwd(tr, &mb->fc2, fc2_in, M, &b->fc2, update_running);
        }
        if (tr->sew) {
            const float *sout =
                pop_fwd_bn(tr, mb->pop_out, &mb->fc2, &b->fc2, &b->pout, (size_t)D, SP_Q, true);
            add3(b->u_out, b->u_mid, sout, MD);
        } else if (!tr->eval && b->fc2.fused && l + 1 < m->L &&
                   m->blocks[l + 1].pop_in == SNN_SLOT_IDENTITY) {
            /* u_out = u_mid + BN_fc2(...): left to the next block's first product */
            tr->pending = bn_norm_of(&mb->fc2, &b->fc2, b->u_out, b->u_mid, false);
        } else if (!eval_ms) {
            residual_add(tr, &mb->fc2, &b->fc2, b->u_out, b->u_mid, MD);
        }
    }
    SNN_ASSERT(!tr->pending.y); /* every block's first product ran its input's normalisation */
    const float *u_last = tr->blocks[m->L - 1].u_out;
    /* head input: head_lif's spikes (ms) or the spike-sum stream itself (sew); an ANN's ReLU
     * inside the pool (head_relu) */
    if (head_relu(tr)) {
        snn_meanpool_relu_fwd(tr->pooled, u_last, T, B, N, D);
    } else {
        const float *head_in = u_last;
        if (!tr->sew) head_in = pop_fwd(tr, m->pop_head, u_last, &tr->head, (size_t)D, SP_Q);
        snn_meanpool_fwd(tr->pooled, head_in, T, B, N, D);
    }
    snn_linear_fwd(tr->logits, tr->pooled, m->head.weight, m->head.bias, B, D, C);
    int ok = 0;
    for (int b = 0; b < B; b++) {
        const float *lg = tr->logits + (size_t)b * C;
        int best = 0;
        for (int k = 1; k < C; k++)
            if (lg[k] > lg[best]) best = k;
        ok += best == labels[b];
    }
    float loss;
    if (tr->B_batch) {
        /* a share: the batch's mean loss, the ranks' sums added in rank order, and the batch's
         * correct count (exact in double) in the same collective */
        double v[2] = {snn_cross_entropy_fwd_sum(tr->probs, tr->logits, tr->labels, B, C,
                                                 m->cfg->train.label_smoothing), ok};
        snn_dist_sum_f64(v, 2);
        loss = (float)(v[0] / (double)tr->B_batch);
        ok = (int)v[1];
    } else {
        loss = snn_cross_entropy_fwd(tr->probs, tr->logits, tr->labels, B, C,
                                     m->cfg->train.label_smoothing);
    }
    if (tr->kind == SNN_ATTN_PRIMAL) {
        /* loss = CE + eta L_KSVD, L_KSVD = mean over the primal layers of J^2 (primal.h) */
        double ksvd = 0.0;
        for (int l = 0; l < m->L; l++) ksvd += tr->blocks[l].ksvd_J * tr->blocks[l].ksvd_J;
        loss += (float)(m->cfg->model.attention.eta * ksvd / m->L);
    }
    if (correct) *correct = ok;
    if (!grads) return loss;

    /* ---- backward ---- */
    tr->sp[SP_X] = tr->y;
    zero_floats(tr->d_logits, (size_t)B * C);
    /* d(batch mean)/d(this share's mean) = B / B_batch */
    const float ce_scale = tr->B_batch ? (float)((double)B / (double)tr->B_batch) : 1.0f;
    snn_cross_entropy_bwd(tr->d_logits, tr->probs, tr->labels, B, C, m->cfg->train.label_smoothing,
                          ce_scale);
    snn_linear_bwd(tr->d_pooled, grad_of(tr, m->head.weight), grad_of(tr, m->head.bias), tr->d_logits,
                   tr->pooled, m->head.weight, B, D, C, tr->dw_scratch, false);
    if (head_relu(tr)) {
        snn_meanpool_relu_bwd(tr->d_u, tr->d_pooled, u_last, T, B, N, D);
    } else if (tr->sew) {
        zero_floats(tr->d_u, MD);
        snn_meanpool_bwd(tr->d_u, tr->d_pooled, T, B, N, D);
    } else {
        zero_floats(tr->d_s, MD);
        snn_meanpool_bwd(tr->d_s, tr->d_pooled, T, B, N, D);
        pop_bwd_into(tr, m->pop_head, u_last, &tr->head, tr->d_s, tr->d_u, (size_t)D);
    }

    for (int l = m->L - 1; l >= 0; l--) {
        const snn_block *mb = &m->blocks[l];
        block_act *b = &tr->blocks[l];
        /* ms: u_out = u_mid + BN_fc2(fc2(hidden)); sew: u_out = u_mid + out_lif(BN_fc2(...)).
         * d_u flows to both terms. */
        const float *d_fc2 = tr->d_u;
        if (tr->sew) {
            pop_bwd_into(tr, mb->pop_out, b->fc2.z, &b->pout, tr->d_u, tr->d_x, (size_t)D);
            d_fc2 = tr->d_x;
        }
        lin_bn_bwd(tr, &mb->fc2, spikes_in(mb->pop_hidden, &b->ph, (size_t)Hd, SP_X, NULL), d_fc2,
                   M, &b->fc2, tr->d_s, false);
        /* a ReLU fused into fc1's BatchNorm: its backward too (lin_bn_bwd on d_s) */
        const float *d_fc1 = tr->d_x;
        if (b->fc1.relu)
            d_fc1 = tr->d_s;
        else
            pop_bwd_into(tr, mb->pop_hidden, b->fc1.z, &b->ph, tr->d_s, tr->d_x, (size_t)Hd);
        if (tr->sew) {
            lin_bn_bwd(tr, &mb->fc1, floats_in(b->u_mid), d_fc1, M, &b->fc1, tr->d_u, true);
        } else if (mb->pop_mlp_in == SNN_SLOT_IDENTITY) { /* fc1's dx adds to the stream's */
            lin_bn_bwd(tr, &mb->fc1, spikes_in(mb->pop_mlp_in, &b->pm, (size_t)D, SP_Q, NULL),
                       d_fc1, M, &b->fc1, tr->d_u, true);
        } else {
            lin_bn_bwd(tr, &mb->fc1, spikes_in(mb->pop_mlp_in, &b->pm, (size_t)D, SP_Q, NULL),
                       d_fc1, M, &b->fc1, tr->d_s, false);
            pop_bwd(tr, mb->pop_mlp_in, b->u_mid, &b->pm, tr->d_s, tr->d_u, (size_t)D);
        }
        /* ms: u_mid = u_in + BN_o(o(A)); sew: u_mid = x_in + o_lif(BN_o(o(A))) */
        const float *d_proj = tr->d_u;
        if (tr->sew) {
            pop_bwd_into(tr, mb->pop_o, b->proj.z, &b->po, tr->d_u, tr->d_x, (size_t)D);
            d_proj = tr->d_x;
        }
        /* an identity slot (ANN models) passes its gradient on: o's dx is d_o itself */
        const bool attn_id = mb->pop_attn == SNN_SLOT_IDENTITY;
        lin_bn_bwd(tr, &mb->o, spikes_in(mb->pop_attn, &b->pa, (size_t)D, SP_Q, NULL), d_proj, M,
                   &b->proj, attn_id ? tr->d_o : tr->d_s, false);
        if (!attn_id) pop_bwd_into(tr, mb->pop_attn, b->o, &b->pa, tr->d_s, tr->d_o, (size_t)D);
        if (tr->kind == SNN_ATTN_SDSA) { /* the other kinds: attn_bwd zeroes each head's rows */
            zero_floats(tr->d_q, MD);
            zero_floats(tr->d_k, MD);
            zero_floats(tr->d_v, MD);
        }
        /* q, k and v (and cat's a, primal's sampled tokens) all read x_in: their input gradients
         * add up (in d_s for ms, where x_in is lif_in's spikes; straight into the stream's
         * gradient for sew blocks after the first, and where lif_in is an identity slot) */
        const bool stream_in = tr->sew && l > 0, in_id = mb->pop_in == SNN_SLOT_IDENTITY;
        const bool into_stream = stream_in || in_id;
        float *d_in = into_stream ? tr->d_u : tr->d_s;
        /* d_in holds gradients to add to: the stream's, or zeros for attention kernels that
         * accumulate into it; otherwise the first of q, k, v writes it */
        bool d_in_add = into_stream || attn_reads_x(tr);
        if (!into_stream && attn_reads_x(tr)) zero_floats(tr->d_s, MD);
        lin_in qkv_in = stream_in ? floats_in(tr->blocks[l - 1].u_out)
                                  : spikes_in(mb->pop_in, &b->in, (size_t)D, SP_X, NULL);
        /* q, k, v read the bits where they can */
        if (attn_reads_x(tr)) qkv_in.x = in_floats(tr, &qkv_in);
        const snn_linear *lins[3] = {&mb->q, &mb->k, &mb->v};
        const lin_act *acts[3] = {&b->q, &b->k, &b->v};
        const pop_act *pops[3] = {&b->pq, &b->pk, &b->pv};
        const int pop_ids[3] = {mb->pop_q, mb->pop_k, mb->pop_v}, slots[3] = {SP_Q, SP_K, SP_V};
        const float *qkv[3] = {NULL, NULL, NULL};
        const bool qkv_bits = attn_reads_bits(tr, l); /* the kernels unpack each head */
        for (int j = 0; j < 3; j++)
            if (lins[j]->weight && !qkv_bits)
                qkv[j] = pop_out(tr, pop_ids[j], pops[j], (size_t)D, slots[j]);
        attn_bwd(tr, l, qkv_in.x, qkv[0], qkv[1], qkv[2], d_in);
        float *dsp[3] = {tr->d_q, tr->d_k, tr->d_v};
        for (int j = 0; j < 3; j++) {
            if (!lins[j]->weight) continue;
            const float *dz = dsp[j]; /* an identity slot's gradient is its input's */
            if (pop_ids[j] != SNN_SLOT_IDENTITY) {
                pop_bwd_into(tr, pop_ids[j], acts[j]->z, pops[j], dsp[j], tr->d_x, (size_t)D);
                dz = tr->d_x;
            }
            lin_bn_bwd(tr, lins[j], qkv_in, dz, M, acts[j], d_in, d_in_add);
            d_in_add = true;
        }
        if (!tr->sew) {
            if (!in_id) pop_bwd(tr, mb->pop_in, b->u_in, &b->in, tr->d_s, tr->d_u, (size_t)D);
        } else if (l == 0) {
            /* x_0 = lif_in(U0): its spikes receive the stream's gradient plus q, k, v's */
            add3(tr->d_s, tr->d_s, tr->d_u, MD);
            pop_bwd_into(tr, mb->pop_in, b->u_in, &b->in, tr->d_s, tr->d_u, (size_t)D);
        }
    }
    /* u0 = BN_embed(embed(patches)) + pos */
    float *dpos = grad_of(tr, m->pos);
    const long n_pos = (long)ND, n_pc = (n_pos + POS_CHUNK - 1) / POS_CHUNK;
#pragma omp parallel for schedule(static)
    for (long c = 0; c < n_pc; c++)
        pos_grad_rows(dpos, tr->d_u, n_pos, (long)T * B, c * POS_CHUNK,
                      n_pos - c * POS_CHUNK < POS_CHUNK ? n_pos : (c + 1) * POS_CHUNK);
    const snn_bn_saved bs = bn_saved_of(&m->embed_spk, &tr->embed);
    snn_linear_bn_bwd(NULL, grad_of(tr, m->embed_w), grad_of(tr, m->embed_b),
                      grad_of(tr, m->embed_bn_w), grad_of(tr, m->embed_bn_b), tr->d_y, tr->d_u,
                      &bs, tr->patches, m->embed_w, M, tr->B_batch ? batch_rows(tr) : 0, tr->K,
                      D, tr->dw_scratch, false);
    return loss;
}
