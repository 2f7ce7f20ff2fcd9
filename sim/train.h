/*
 * train.h: surrogate-gradient BPTT training of the spiking transformer (spec sections 1-4,
 * methods.md 1.4), in C on the CPU.
 *
 * The training graph is the model of sim/model.h evaluated "multi-step" (every layer over all T
 * timesteps of a minibatch at once, tensors [T, B, N, width], as SpikingJelly and Spikformer
 * train), with BatchNorm in training mode, dense products through BLAS, neurons and attention
 * through their backward kernels. It reads and writes the model's own parameter arena, so the
 * event-driven engine evaluates exactly what was trained (after snn_model_fold).
 */
#ifndef SNN_TRAIN_H
#define SNN_TRAIN_H

#include <stdbool.h>
#include <stdio.h>

#include "datasets/dataset.h"
#include "sim/h5io.h"
#include "sim/model.h"
#include "sim/optim.h"

typedef struct snn_trainer snn_trainer;

/* Plans and allocates every buffer for minibatches of up to B samples (nothing is allocated
 * inside a step). smooth: neurons fire S = g(H - th) (gradient checks only). Per-thread scratch
 * is sized for omp_get_max_threads(). Not thread-safe, nor is snn_trainer_free: CAT's FFTW plans
 * are made and destroyed there, and FFTW's planner is not reentrant. */
snn_trainer *snn_trainer_new(snn_model *m, int B, bool smooth);
/* The same for inference alone (ANN evaluation): in eval mode from the start, for steps without
 * gradients or running-statistics updates. Plans the forward's buffers only, one block's worth
 * shared by every block (about a tenth of the training plan), so that the working set stays in
 * cache. Gives the same logits as snn_trainer_new in eval mode, bit for bit. */
snn_trainer *snn_trainer_new_inference(snn_model *m, int B);
void snn_trainer_free(snn_trainer *tr);

/* Bytes held by the trainer's buffers (printed at start). */
size_t snn_trainer_bytes(const snn_trainer *tr);

/* Bytes snn_trainer_new would allocate for m with minibatches of B samples if the model had T
 * timesteps, computed by the same plan, without allocating (at the current OpenMP thread
 * count, which sizes the per-thread attention scratch). BPTT keeps every timestep's
 * activations, so this is a + b T: b is the per-timestep cost (exactly linear when B * N is a
 * multiple of 16, the float buffers' alignment). Per timestep and token row: the pre-reset
 * membrane of every spiking population and the BatchNorm caches (normalised input, output) of
 * every Linear as floats, spikes as bits (1 per binary spike, 2 per ternary one), three float
 * scratch slots of D that hold spikes unpacked for their consumers, the attention scores, the
 * residual stream and the gradient buffers (README, "Training memory", has the figures). */
size_t snn_trainer_bytes_for(snn_model *m, int B, int T);

/* Spikes / neuron updates over every spiking population in the last step's forward (training
 * mode: batch-statistics BatchNorm); 0 for ANN models. */
double snn_trainer_firing_rate(const snn_trainer *tr);

/* One minibatch: images [B, C, H, W] uint8, file indices [B] (rate encoding), labels [B].
 * Forward in training mode (batch statistics; running statistics updated unless
 * update_running is false), loss = cross-entropy with cfg->train.label_smoothing. If grads is
 * true, the backward pass ACCUMULATES parameter gradients into snn_trainer_grads(). Returns the
 * mean loss; *correct receives the number of correct argmax predictions. */
float snn_trainer_step(snn_trainer *tr, const uint8_t *images, const int64_t *file_index,
                       const int32_t *labels, int B, bool update_running, bool grads,
                       int *correct);

/* Inference mode: BatchNorm uses the running statistics (PyTorch's model.eval()); the step's
 * loss and logits are then the evaluated model's. ANN models are evaluated this way. */
void snn_trainer_set_eval(snn_trainer *tr, bool eval);

/* Whether linear layers read spike inputs as bits (true, the default) or from the spikes'
 * floats (written by the neurons for every population): the same bytes either way, so false is
 * the reference the tests compare against (and the baseline of that speed-up). */
void snn_trainer_set_spike_bits(snn_trainer *tr, bool bits);

/* The model the trainer was built for. */
snn_model *snn_trainer_model(snn_trainer *tr);

/* Data parallelism over the ranks of an MPI job (sim/dist.h): from now on the B samples of a
 * step are this rank's share of a batch of B_batch samples (shares in rank order, rank 0 first,
 * every rank stepping together). BatchNorm statistics and the returned loss and correct count
 * are the whole batch's; gradients are this share's contribution to the batch-mean loss, to be
 * summed over ranks (snn_fit_step does). 0: the step's samples are the batch (the default).
 * Not for primal attention, whose K-SVD loss spans the batch. */
void snn_trainer_set_share(snn_trainer *tr, int B_batch);
int snn_trainer_share_of(const snn_trainer *tr);

/* Parameter gradients, laid out like the model's parameter arena ([n_params]). */
float *snn_trainer_grads(snn_trainer *tr);
void snn_trainer_zero_grads(snn_trainer *tr);

/* Logits of the last step ([B, classes]). */
const float *snn_trainer_logits(const snn_trainer *tr);

/* ---- the training loop --------------------------------------------------------------------- */

/* One optimizer step of the loop (what snn_train does per minibatch): zero the gradients,
 * forward + backward in training mode, clip the global gradient norm at train.grad_clip, take
 * the learning rate of `step` (warm-up over `warmup` steps, then cosine to 0 at `total`), AdamW
 * with weight decay where decay_mask is 1. Returns the loss; grad_norm (before clipping), lr and
 * correct may be NULL. When a gradient is not finite nothing is applied and grad_norm is NaN. */
float snn_fit_step(snn_trainer *tr, snn_adamw *opt, const uint8_t *decay_mask,
                   const uint8_t *images, const int64_t *file_index, const int32_t *labels, int B,
                   int64_t step, int64_t total, int64_t warmup, double *grad_norm, double *lr,
                   int *correct);

/* [n_params] 1 for Linear weights (2-D tensors named *.weight), 0 elsewhere: weight decay
 * applies to Linear weights only, as in the PyTorch reference. Caller frees. */
uint8_t *snn_decay_mask(const snn_model *m);

typedef struct snn_history_row {
    int epoch;
    double train_loss, train_accuracy, val_accuracy, lr, seconds;
} snn_history_row;

typedef struct snn_train_result {
    snn_history_row *history;  /* [epochs] */
    int n_history;
    int best_epoch;            /* by validation accuracy */
    double best_val_accuracy;
    float *best_params;        /* [n_params] parameters of the best epoch */
    float *first_losses;       /* losses of the first steps, for tests ([n_first_losses]) */
    int n_first_losses;
    double seconds;
    double samples_per_second;
} snn_train_result;

typedef struct snn_train_opts {
    const char *last_path;     /* checkpoint after every epoch (or NULL) */
    const char *best_path;     /* checkpoint of the best epoch (or NULL) */
    const char *config_yaml;   /* written into checkpoints */
    int threads;
    bool progress;
    FILE *log;
    int max_steps;             /* stop after this many steps (tests); 0 = no limit */
    bool distributed;          /* data parallel over the ranks of an MPI job (sim/dist.h; every
                                * rank calls snn_train); no effect in a one-rank job */
} snn_train_opts;

/* Trains m on train (validating on val after every epoch with the event-driven engine), from
 * scratch or resuming from cfg->train.resume. Leaves the BEST parameters in the model (folded).
 * Returns SNN_OK or SNN_ERR with a one-line message. On SIGINT/SIGTERM (once
 * snn_interrupt_install ran) it saves the state, mid-epoch included, to last_path and returns
 * SNN_INTERRUPTED; resuming from that file continues exactly. A non-finite loss or gradient
 * stops it (SNN_ERR) naming the epoch, the step and the first tensor with a bad gradient,
 * before that step is applied. */
int snn_train(snn_model *m, const snn_dataset *train, const snn_dataset *val,
              const snn_train_opts *opts, snn_train_result *res, snn_err *err);
void snn_train_result_free(snn_train_result *res);

/* Name (spec section 4) of the first parameter tensor of m whose gradient in grads (laid out
 * like the parameter arena) holds a NaN or an infinity; NULL when all are finite. */
const char *snn_first_nonfinite_grad(const snn_model *m, const float *grads);

/* Writes /training/history (one dataset per column, NXdata attributes) into a run file. */
int snn_write_training_history(snn_h5 *h, const snn_history_row *rows, int n, snn_err *err);

/* Splits the training split into train and validation: a seeded permutation, the last
 * round(val_fraction * n) samples go to validation. Both are new datasets (copies). */
void snn_train_split(const snn_dataset *all, uint64_t seed, double val_fraction, snn_dataset *train,
                     snn_dataset *val);

#endif
