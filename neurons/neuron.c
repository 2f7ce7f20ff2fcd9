/*
 * neuron.c: LIF / IF / PLIF populations with SpikingJelly semantics (spec/model.md section 1,
 * research/methods.md sections 1.1, 1.3, 1.5; SpikingJelly 0.0.0.0.12 neuron.py, surrogate.py).
 *
 * Per neuron and timestep (float32, in exactly this operation order so that results match a
 * PyTorch/SpikingJelly run bit for bit; the Makefile forbids FP contraction):
 *   charge  LIF, decay_input:   H = V + (X - V) / tau                 (soft reset or v_reset == 0)
 *                               H = V + (X - (V - v_reset)) / tau     (otherwise)
 *           LIF, !decay_input:  H = V - V / tau + X                   (soft reset or v_reset == 0)
 *                               H = V - (V - v_reset) / tau + X       (otherwise)
 *           IF:                 H = V + X
 *           PLIF:               as LIF with the current tau (inference only)
 *   fire    binary  S = [H >= th];  bipolar S = +1 if H >= th, -1 if H <= -th, else 0
 *   reset   hard V = (S != 0) ? v_reset : H;  soft V = H - th * S
 * The two charge branches mirror LIFNode.neuronal_charge, which tests `v_reset is None or
 * v_reset == 0` and then drops the v_reset term; we divide by tau as that code does. (SJ's fused
 * CUDA kernel multiplies by 1/tau instead; for tau = 2, the default, the two are identical.)
 *
 * Surrogates (methods 1.3, x = H - th): SJ's backward formulas, evaluated in float in SJ's order.
 *
 * Pure numerics: no I/O, no allocation, no static state (called from several threads at once).
 */
#include "neurons/charge.h"
#include "sim/vec.h"
#include "neurons/neuron.h"

#include <math.h>

#include "sim/util.h"

snn_neuron_params snn_neuron_defaults(void) {
    snn_neuron_params p = {
        .kind = SNN_NEURON_LIF,
        .tau = 2.0f,
        .v_threshold = 1.0f,
        .v_reset = 0.0f,
        .soft_reset = false,
        .decay_input = true,
        .bipolar = false,
        .surrogate = SNN_SURROGATE_SIGMOID,
        .alpha = 4.0f,
        .detach_reset = true,
    };
    return p;
}

float snn_plif_tau(float w) { return (float)(1.0 + exp(-(double)w)); }

float snn_plif_w(float tau) {
    SNN_ASSERT(tau > 1.0f);
    return (float)-log((double)tau - 1.0);
}

float snn_neuron_v_init(const snn_neuron_params *p) {
    return p->soft_reset ? 0.0f : p->v_reset;
}

SNN_WIDE_FN SNN_VEC_FN void snn_neuron_reset_state(const snn_neuron_params *p, size_t n,
                                                  float *v) {
    const float v0 = snn_neuron_v_init(p);
    for (size_t i = 0; i < n; i++) v[i] = v0;
}

static inline __attribute__((always_inline)) SNN_VEC_FN uint32_t
step_loop(const charge_mode mode, const bool bipolar, const bool soft, const bool has_h, size_t n,
          const float *restrict x, float *restrict v, int8_t *restrict s, float *restrict h,
          float tau, float vr, float th) {
    const float neg_th = -th;
    uint32_t nspikes = 0;
    for (size_t i = 0; i < n; i++) {
        const float hi = charge(mode, v[i], x[i], tau, vr);

        /* >= on both sides: a membrane exactly at threshold fires (SJ heaviside(x) = x >= 0). */
        int32_t si = hi >= th ? 1 : 0;
        if (bipolar) si = hi <= neg_th ? -1 : si;

        float vn;
        if (soft)
            vn = hi - th * (float)si;  /* SJ: v = v - spike * v_threshold; S = -1 adds th back */
        else
            vn = si != 0 ? vr : hi;
        v[i] = vn;
        s[i] = (int8_t)si;
        if (has_h) h[i] = hi;
        nspikes += si != 0;
    }
    return nspikes;
}

/* Also compiled for AVX2 (SNN_WIDE_FN): it runs for every neuron at every timestep. */
SNN_WIDE_FN SNN_VEC_FN size_t snn_neuron_step(const snn_neuron_params *p, size_t n, const float *x,
                                              float *v, int8_t *s, float *h) {
    const charge_mode mode = charge_mode_of(p);
    const float tau = p->tau;
    const float vr = p->v_reset;
    const float th = p->v_threshold;
    const int key = (int)mode * 4 + (p->bipolar ? 2 : 0) + (p->soft_reset ? 1 : 0);
    size_t nspikes = 0;
    /* chunks of 2^20 neurons: the spike count of one chunk fits the loop's 32-bit counter */
    for (size_t i0 = 0; i0 < n; i0 += (size_t)1 << 20) {
        const size_t c = n - i0 < ((size_t)1 << 20) ? n - i0 : (size_t)1 << 20;
        const float *xc = x + i0;
        float *vc = v + i0, *hc = h ? h + i0 : NULL;
        int8_t *sc = s + i0;
        switch (key) {
#define STEP_CASE(m, b, so)                                                                      \
    case (int)(m) * 4 + (b) * 2 + (so):                                                            \
        nspikes += hc ? step_loop(m, b, so, true, c, xc, vc, sc, hc, tau, vr, th)                 \
                      : step_loop(m, b, so, false, c, xc, vc, sc, NULL, tau, vr, th);             \
        break;
#define STEP_CASES(m) STEP_CASE(m, 0, 0) STEP_CASE(m, 0, 1) STEP_CASE(m, 1, 0) STEP_CASE(m, 1, 1)
            STEP_CASES(CHARGE_IF)
            STEP_CASES(CHARGE_DECAY_INPUT0)
            STEP_CASES(CHARGE_DECAY_INPUT)
            STEP_CASES(CHARGE_NO_DECAY0)
            STEP_CASES(CHARGE_NO_DECAY)
#undef STEP_CASES
#undef STEP_CASE
        }
    }
    return nspikes;
}

/* pi/2 as SpikingJelly writes it (math.pi / 2 in Python double). */
#define SNN_HALF_PI 1.5707963267948966

float snn_surrogate_grad(snn_surrogate_kind kind, float alpha, float x) {
    switch (kind) {
    case SNN_SURROGATE_SIGMOID: {
        /* SJ: sgax = (x * alpha).sigmoid_(); grad = (1 - sgax) * sgax * alpha */
        const float sgax = 1.0f / (1.0f + expf(-(x * alpha)));
        return (1.0f - sgax) * sgax * alpha;
    }
    case SNN_SURROGATE_ATAN: {
        /* SJ: alpha / 2 / (1 + (pi / 2 * alpha * x)^2); the scalar factors are Python doubles
         * rounded once to float when they meet the float tensor. */
        const float c = (float)(SNN_HALF_PI * (double)alpha);
        const float t = c * x;
        return (float)((double)alpha / 2.0) / (1.0f + t * t);
    }
    case SNN_SURROGATE_TRIANGLE: {
        /* SJ PiecewiseQuadratic: (-(alpha^2) * |x| + alpha), zeroed where |x| > 1/alpha. */
        const float ax = fabsf(x);
        if (ax > (float)(1.0 / (double)alpha)) return 0.0f;
        return (float)(-((double)alpha * (double)alpha)) * ax + alpha;
    }
    }
    return 0.0f;
}

float snn_surrogate_primitive(snn_surrogate_kind kind, float alpha, float x) {
    switch (kind) {
    case SNN_SURROGATE_SIGMOID:
        return 1.0f / (1.0f + expf(-(x * alpha)));
    case SNN_SURROGATE_ATAN: {
        const float c = (float)(SNN_HALF_PI * (double)alpha);
        return atanf(c * x) / (float)M_PI + 0.5f;
    }
    case SNN_SURROGATE_TRIANGLE: {
        /* 0 below -1/alpha, 1 above 1/alpha, and in between the quadratic
         * -alpha^2/2 * x|x| + alpha x + 1/2, whose derivative is alpha - alpha^2 |x|. */
        const float inv = (float)(1.0 / (double)alpha);
        if (x < -inv) return 0.0f;
        if (x > inv) return 1.0f;
        const float a2h = (float)((double)alpha * (double)alpha / 2.0);
        return -a2h * x * fabsf(x) + alpha * x + 0.5f;
    }
    }
    return 0.0f;
}

float snn_neuron_spike_grad(const snn_neuron_params *p, float h) {
    const float th = p->v_threshold;
    const float g = snn_surrogate_grad(p->surrogate, p->alpha, h - th);
    if (!p->bipolar) return g;
    /* S = Theta(H - th) - Theta(-H - th): the negative side contributes the mirrored term with
     * the same sign (d/dH of -Theta(-H - th) is +g'(-H - th)). Methods 3.3(a). */
    return g + snn_surrogate_grad(p->surrogate, p->alpha, -h - th);
}
