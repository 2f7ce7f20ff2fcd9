/* charge.h (private to neurons/): the five charge formulas of spec section 1, chosen once per
 * call. Shared by the inference step (neuron.c) and the training forward/backward (bptt.c), which
 * must pick the same formula to give the same bits. */
#ifndef SNN_CHARGE_H
#define SNN_CHARGE_H

#include <math.h>
#include <stdbool.h>

#include "neurons/neuron.h"

typedef enum charge_mode {
    CHARGE_IF,            /* H = V + X */
    CHARGE_DECAY_INPUT0,  /* H = V + (X - V) / tau */
    CHARGE_DECAY_INPUT,   /* H = V + (X - (V - v_reset)) / tau */
    CHARGE_NO_DECAY0,     /* H = V - V / tau + X */
    CHARGE_NO_DECAY       /* H = V - (V - v_reset) / tau + X */
} charge_mode;

static inline charge_mode charge_mode_of(const snn_neuron_params *p) {
    if (p->kind == SNN_NEURON_IF) return CHARGE_IF;
    /* SJ uses the v_reset-free branch for soft reset (v_reset None) and for v_reset == 0. */
    const bool zero_reset = p->soft_reset || p->v_reset == 0.0f;
    if (p->decay_input) return zero_reset ? CHARGE_DECAY_INPUT0 : CHARGE_DECAY_INPUT;
    return zero_reset ? CHARGE_NO_DECAY0 : CHARGE_NO_DECAY;
}

/* Whether dividing by tau can be a multiply by *rtau = 1 / tau, bit for bit: tau a power of two
 * whose reciprocal is a normal float (then x / tau and x (1 / tau) are the same real number,
 * rounded once). The default tau = 2 is one. */
static inline bool charge_tau_pow2(float tau, float *rtau) {
    int e;
    if (!(tau > 0.0f) || frexpf(tau, &e) != 0.5f || e > 126 || e < -124) return false;
    *rtau = 1.0f / tau;
    return true;
}

/* H from V and X by the formula of mode, in the spec's operation order. mode is a compile-time
 * constant at every call site, so the switch folds away inside the vectorised loops. */
static inline __attribute__((always_inline)) float charge(const charge_mode mode, float v, float x,
                                                          float tau, float vr) {
    switch (mode) {
    case CHARGE_IF: return v + x;
    case CHARGE_DECAY_INPUT0: return v + (x - v) / tau;
    case CHARGE_DECAY_INPUT: return v + (x - (v - vr)) / tau;
    case CHARGE_NO_DECAY0: return v - v / tau + x;
    default: return v - (v - vr) / tau + x;
    }
}

#endif
