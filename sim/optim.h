/*
 * optim.h: AdamW, the learning-rate schedule and gradient-norm clipping for the C trainer.
 *
 * Implements torch.optim.AdamW (PyTorch 1.13, single-tensor path, amsgrad off, maximize off),
 * torch.nn.utils.clip_grad_norm_ (2-norm, one global norm over all parameters), and the
 * warm-up + cosine schedule of tests/reference/train_ref.py.
 *
 * All three work on one flat parameter / gradient arena of n floats. Element-wise loops are
 * OpenMP-parallel; the one reduction (the gradient norm) runs over a fixed decomposition, so
 * every result is byte-identical for any thread count and with OMP=0.
 */
#ifndef SNN_OPTIM_H
#define SNN_OPTIM_H

#include <stddef.h>
#include <stdint.h>

/* AdamW state. m, v [n] are owned (snn_adamw_init / snn_adamw_free). step counts the calls to
 * snn_adamw_step so far (torch's state['step']); the hyper-parameters may be changed between
 * steps. To checkpoint and resume, save and restore m, v and step.
 * NOTE: the hyper-parameters are double, as torch's (Python floats): with beta2 stored as
 * float, 1 - 0.999f is 0.00099998713, 1.3e-5 away from torch's 1 - 0.999, which would move v
 * and the bias correction by that much. */
typedef struct snn_adamw {
    size_t n;
    float *m, *v;                 /* [n] first and second moments, zero at init */
    int64_t step;
    double beta1, beta2, eps;     /* 0.9, 0.999, 1e-8 */
    double weight_decay;          /* decoupled (AdamW), applied where decay_mask[i] is 1 */
} snn_adamw;

/* Zeroed moments, step 0, torch defaults beta1 0.9, beta2 0.999, eps 1e-8. Aborts on OOM. */
void snn_adamw_init(snn_adamw *opt, size_t n, double weight_decay);

/* One AdamW step, torch.optim.AdamW's update, per element i with t = ++opt->step:
 *   p  = p * (1 - lr * wd)                     only where decay_mask[i] (or everywhere if NULL)
 *   m  = beta1 m + (1 - beta1) g
 *   v  = beta2 v + (1 - beta2) g^2
 *   p  = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
 * Scalar coefficients are computed in double and applied in float, in torch's operation order.
 *   params [n] (updated)   grads [n]   decay_mask [n]: 1 = decay (Linear weights), 0 = no decay
 *   (biases, BN affine parameters, pos); NULL = decay everything */
void snn_adamw_step(snn_adamw *opt, float *params, const float *grads, const uint8_t *decay_mask,
                    float lr);

/* Frees m and v; accepts a zeroed struct and is safe to call twice. */
void snn_adamw_free(snn_adamw *opt);

/* Learning rate for optimiser step `step` (0-based) of total_steps, with W = warmup_steps:
 *   step < W:            base_lr * (step + 1) / W                   (linear, base/W .. base)
 *   W <= step <= total:  min_lr + (base_lr - min_lr) * 0.5 * (1 + cos(pi * (step - W) / D)),
 *                        D = max(1, total_steps - W)
 *   step > total:        min_lr
 * With min_lr = 0 this is the formula of tests/reference/train_ref.py's lr_at(i), which the C
 * trainer is checked against (here in double, rounded to float once). Compared with timm's
 * CosineLRScheduler (warmup_lr_init 0, warmup_prefix True, t_initial total - W, per-step
 * updates) the cosine part is the same and the warm-up is shifted by one step: it starts at
 * base/W instead of 0, so no step runs at lr 0. */
float snn_lr_cosine(int64_t step, int64_t total_steps, int64_t warmup_steps, float base_lr,
                    float min_lr);

/* Global 2-norm sqrt(sum g^2), in double. The sum is split into SNN_NORM_CHUNKS chunks fixed by
 * n alone, each summed in index order, then the partial sums are added in chunk order:
 * identical for any thread count. g [n] */
#define SNN_NORM_CHUNKS 256
double snn_grad_norm(const float *g, size_t n);

/* torch.nn.utils.clip_grad_norm_(max_norm, norm_type=2): with N = snn_grad_norm(g, n),
 * coef = max_norm / (N + 1e-6); if coef < 1, g *= (float)coef. Returns N (before clipping).
 * A non-finite N leaves g unchanged (torch would scale by NaN): check the returned norm.
 * g [n] (updated) */
double snn_clip_grad_norm(float *g, size_t n, float max_norm);

#endif
