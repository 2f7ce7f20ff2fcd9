/*
 * optim.c: AdamW, warm-up + cosine learning rate, gradient-norm clipping (see optim.h).
 *
 * AdamW follows torch.optim.AdamW's single-tensor code (PyTorch 1.13, _single_tensor_adamw)
 * line by line:
 *     step_t += 1
 *     param.mul_(1 - lr * weight_decay)
 *     exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
 *     exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
 *     bias_correction1 = 1 - beta1 ** step;  bias_correction2 = 1 - beta2 ** step
 *     step_size = lr / bias_correction1
 *     denom = (exp_avg_sq.sqrt() / sqrt(bias_correction2)).add_(eps)
 *     param.addcdiv_(exp_avg, denom, value=-step_size)
 * torch computes the scalars in Python doubles and the tensor ops in float with the scalar cast
 * to float; so do we (hence double hyper-parameters in snn_adamw). lr arrives as a float, so
 * it carries a relative rounding of at most 6e-8.
 *
 * clip_grad_norm_ (1.13): total_norm = ||g||_2; clip_coef = max_norm / (total_norm + 1e-6);
 * g *= min(clip_coef, 1). torch takes the norm in float; we take it in double (more accurate,
 * and deterministic by construction), and skip the multiplication by exactly 1.
 */
#include "sim/optim.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "sim/util.h"
#include "sim/vec.h"

/* Element-wise loops and the norm run serially below this size (same bits either way). */
#define PAR_MIN_WORK 32768

void snn_adamw_init(snn_adamw *opt, size_t n, double weight_decay) {
    SNN_ASSERT(opt);
    memset(opt, 0, sizeof *opt);
    opt->n = n;
    opt->m = snn_xcalloc(n ? n : 1, sizeof *opt->m);
    opt->v = snn_xcalloc(n ? n : 1, sizeof *opt->v);
    opt->step = 0;
    opt->beta1 = 0.9;
    opt->beta2 = 0.999;
    opt->eps = 1e-8;
    opt->weight_decay = weight_decay;
}

void snn_adamw_free(snn_adamw *opt) {
    if (!opt) return;
    free(opt->m);
    free(opt->v);
    opt->m = opt->v = NULL;
    opt->n = 0;
}

/* AdamW's per-step scalars, as snn_adamw_step computes them. */
typedef struct adamw_coefs {
    float decay, beta1, beta2, one_m_b1, one_m_b2, bc2_sqrt, eps, neg_step_size;
    int apply_wd;
} adamw_coefs;

/* Parameters per work item: any fixed size (each parameter's update is its own). */
enum { ADAMW_CHUNK = 4096 };

/* The update of parameters [i0, i1), vectorised (sqrt and divide are IEEE operations, exactly
 * rounded in every vector width; the Makefile's -fno-math-errno lets gcc use the vector sqrt):
 * it had run as scalar code, 1.5 % of an ANN's one-thread training step. */
static inline __attribute__((always_inline)) void
adamw_body(const adamw_coefs *k, float *restrict params, float *restrict m, float *restrict v,
           const float *restrict grads, const uint8_t *restrict decay_mask, ptrdiff_t i0,
           ptrdiff_t i1, bool decay_all) {
    const float decay = k->decay, beta1 = k->beta1, beta2 = k->beta2, one_m_b1 = k->one_m_b1;
    const float one_m_b2 = k->one_m_b2, bc2_sqrt = k->bc2_sqrt, eps = k->eps;
    const float neg_step_size = k->neg_step_size;
    for (ptrdiff_t i = i0; i < i1; i++) {
        const float g = grads[i];
        float p = params[i];
        if (decay_all || (decay_mask && decay_mask[i])) p = p * decay;
        const float mi = m[i] * beta1 + one_m_b1 * g;
        const float vi = v[i] * beta2 + one_m_b2 * g * g;
        const float denom = sqrtf(vi) / bc2_sqrt + eps;
        m[i] = mi;
        v[i] = vi;
        params[i] = p + neg_step_size * (mi / denom);
    }
}
static SNN_WIDE_FN SNN_VEC_FN void
adamw_rows(const adamw_coefs *k, float *params, float *m, float *v, const float *grads,
           const uint8_t *decay_mask, ptrdiff_t i0, ptrdiff_t i1) {
    /* one loop per case, so that each has no condition the vectoriser must keep */
    if (!k->apply_wd)
        adamw_body(k, params, m, v, grads, NULL, i0, i1, false);
    else if (!decay_mask)
        adamw_body(k, params, m, v, grads, NULL, i0, i1, true);
    else
        adamw_body(k, params, m, v, grads, decay_mask, i0, i1, false);
}

void snn_adamw_step(snn_adamw *opt, float *params, const float *grads, const uint8_t *decay_mask,
                    float lr) {
    SNN_ASSERT(opt && opt->m && opt->v && params && grads);
    opt->step++;
    const double t = (double)opt->step;
    const double b1 = opt->beta1, b2 = opt->beta2;
    const double bc1 = 1.0 - pow(b1, t), bc2 = 1.0 - pow(b2, t);
    /* torch's scalars (Python doubles), cast to float as its CPU kernels do */
    const float decay = (float)(1.0 - (double)lr * opt->weight_decay);
    const float beta1 = (float)b1, beta2 = (float)b2;
    const float one_m_b1 = (float)(1.0 - b1), one_m_b2 = (float)(1.0 - b2);
    const float bc2_sqrt = (float)sqrt(bc2);
    const float neg_step_size = (float)(-(double)lr / bc1);
    const float eps = (float)opt->eps;
    const int apply_wd = opt->weight_decay != 0.0;
    const adamw_coefs k = {decay,    beta1, beta2,         one_m_b1, one_m_b2,
                           bc2_sqrt, eps,   neg_step_size, apply_wd};
    const ptrdiff_t n = (ptrdiff_t)opt->n;
    const ptrdiff_t nc = (n + ADAMW_CHUNK - 1) / ADAMW_CHUNK;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN_WORK)
    for (ptrdiff_t c = 0; c < nc; c++) {
        const ptrdiff_t i0 = c * ADAMW_CHUNK, i1 = n - i0 < ADAMW_CHUNK ? n : i0 + ADAMW_CHUNK;
        adamw_rows(&k, params, opt->m, opt->v, grads, decay_mask, i0, i1);
    }
}

float snn_lr_cosine(int64_t step, int64_t total_steps, int64_t warmup_steps, float base_lr,
                    float min_lr) {
    SNN_ASSERT(step >= 0 && warmup_steps >= 0);
    const double base = (double)base_lr, lo = (double)min_lr;
    if (step < warmup_steps) return (float)(base * (double)(step + 1) / (double)warmup_steps);
    if (step > total_steps) return min_lr;
    int64_t span = total_steps - warmup_steps;
    if (span < 1) span = 1;
    const double pi = 3.14159265358979323846;
    const double c = 0.5 * (1.0 + cos(pi * (double)(step - warmup_steps) / (double)span));
    return (float)(lo + (base - lo) * c);
}

double snn_grad_norm(const float *g, size_t n) {
    SNN_ASSERT(g || n == 0);
    /* Chunk k covers [k * len, min(n, (k + 1) * len)): fixed by n, whoever sums it. */
    const size_t len = (n + SNN_NORM_CHUNKS - 1) / SNN_NORM_CHUNKS;
    double part[SNN_NORM_CHUNKS];
#pragma omp parallel for schedule(dynamic) if (n >= PAR_MIN_WORK)
    for (int k = 0; k < SNN_NORM_CHUNKS; k++) {
        size_t lo = (size_t)k * len, hi = lo + len;
        if (lo > n) lo = n;
        if (hi > n) hi = n;
        double s = 0.0;
        for (size_t i = lo; i < hi; i++) s += (double)g[i] * (double)g[i];
        part[k] = s;
    }
    double total = 0.0;
    for (int k = 0; k < SNN_NORM_CHUNKS; k++) total += part[k];
    return sqrt(total);
}

double snn_clip_grad_norm(float *g, size_t n, float max_norm) {
    const double norm = snn_grad_norm(g, n);
    const double coef = (double)max_norm / (norm + 1e-6);
    if (coef < 1.0) {
        const float c = (float)coef;
        const ptrdiff_t nn = (ptrdiff_t)n;
#pragma omp parallel for schedule(static) if (nn >= PAR_MIN_WORK)
        for (ptrdiff_t i = 0; i < nn; i++) g[i] *= c;
    }
    return norm;
}
