/*
 * neuron.h: spiking neuron populations with SpikingJelly semantics (spec section 1).
 *
 * Pure numerics: no I/O, no allocation. A population of n neurons keeps one membrane value per
 * neuron; the caller owns the state buffer and resets it at the start of every sample.
 *
 * Per timestep, with input current x:
 *   charge  LIF, decay_input:  H = V + (X - (V - v_reset)) / tau
 *           LIF, !decay_input: H = V - (V - v_reset) / tau + X
 *           IF:                H = V + X
 *           (soft reset, or v_reset == 0, uses the v_reset-free forms H = V + (X - V) / tau
 *           and H = V - V / tau + X, as SpikingJelly's code does; division by tau, float32)
 *   initial V: v_reset (hard reset) or 0 (soft reset)
 *   fire    binary:  S = 1 if H >= v_threshold else 0                (note >=)
 *           bipolar: S = +1 if H >= v_threshold; -1 if H <= -v_threshold; else 0
 *   reset   hard: V = H where S == 0, V = v_reset where S != 0
 *           soft: V = H - v_threshold * S
 * PLIF is LIF with a learnable tau (one per population); at inference it is a LIF.
 *
 * Laid out for BPTT: the step can store H (the pre-reset membrane), which is all the backward
 * recursion of methods.md section 1.4 needs besides S.
 */
#ifndef SNN_NEURON_H
#define SNN_NEURON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum snn_neuron_kind { SNN_NEURON_LIF, SNN_NEURON_IF, SNN_NEURON_PLIF } snn_neuron_kind;

typedef enum snn_surrogate_kind {
    SNN_SURROGATE_SIGMOID,  /* alpha * sg(alpha x) * (1 - sg(alpha x)) */
    SNN_SURROGATE_ATAN,     /* alpha / (2 (1 + (pi/2 alpha x)^2)) */
    SNN_SURROGATE_TRIANGLE  /* max(0, alpha - alpha^2 |x|) (SpikingJelly PiecewiseQuadratic) */
} snn_surrogate_kind;

typedef struct snn_neuron_params {
    snn_neuron_kind kind;
    float tau;               /* LIF/PLIF time constant in steps (> 1); PLIF: current value */
    float v_threshold;       /* > 0 */
    float v_reset;           /* hard-reset value; ignored when soft_reset */
    bool soft_reset;         /* v_reset: null in the config */
    bool decay_input;
    bool bipolar;            /* ternary spikes {-1, 0, +1} (symmetric thresholds) */
    snn_surrogate_kind surrogate;
    float alpha;             /* surrogate sharpness */
    bool detach_reset;
} snn_neuron_params;

/* SpikingJelly/Spikformer defaults: LIF, tau 2, v_th 1, hard reset to 0, decay_input,
 * sigmoid surrogate alpha 4, detach_reset. */
snn_neuron_params snn_neuron_defaults(void);

/* Initial membrane value: v_reset for hard reset, 0 for soft reset. */
float snn_neuron_v_init(const snn_neuron_params *p);

/* Sets v[0..n) to the initial membrane value. */
void snn_neuron_reset_state(const snn_neuron_params *p, size_t n, float *v);

/* One timestep for n neurons.
 *   x [n]   input current
 *   v [n]   membrane, read and updated in place
 *   s [n]   output spikes, in {0,1} or {-1,0,1}
 *   h [n]   pre-reset membrane H for BPTT or recording; may be NULL
 * Returns the number of nonzero spikes. Does not count ops (the caller adds n NEURON updates
 * and, if it counts them, n CMP threshold tests). No static state: thread-safe. */
size_t snn_neuron_step(const snn_neuron_params *p, size_t n, const float *x, float *v, int8_t *s,
                       float *h);

/* Surrogate derivative g'(x) for x = H - v_threshold (one-sided). Peaks g'(0): sigmoid alpha/4,
 * atan alpha/2, triangle alpha (zero for |x| > 1/alpha). Evaluated in float in SpikingJelly's
 * operation order; expf/atanf may differ from PyTorch's in the last bit. */
float snn_surrogate_grad(snn_surrogate_kind kind, float alpha, float x);

/* Surrogate primitive g(x) (the smooth step whose derivative is snn_surrogate_grad):
 * sigmoid sg(alpha x); atan atan(pi/2 alpha x) / pi + 1/2; triangle 0 for x < -1/alpha,
 * -alpha^2/2 x|x| + alpha x + 1/2 for |x| <= 1/alpha, 1 above. */
float snn_surrogate_primitive(snn_surrogate_kind kind, float alpha, float x);

/* dS/dH of the neuron: g'(H - th) for binary, g'(H - th) + g'(-H - th) for bipolar. */
float snn_neuron_spike_grad(const snn_neuron_params *p, float h);

#endif
