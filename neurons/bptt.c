/*
 * bptt.c: multi-step forward and exact BPTT backward of a neuron population, for training
 * (spec/model.md section 1; research/methods.md 1.3 surrogates, 1.4 the BPTT recursion, 3.3(a)
 * the bipolar neuron; SpikingJelly 0.0.0.0.12 MultiStepLIFNodePTT's fused kernel).
 *
 * Layout: row t of every [T, *] buffer starts at t * ld; a call handles columns [0, n) of each
 * row (n <= ld), so the caller can give slices of neurons of one [T, ld] buffer to threads.
 *
 * Forward (normal mode): snn_neuron_step itself, T times, on stack tiles of TILE neurons, so
 * spikes and membranes are bit-identical to the inference engine by construction.
 * Forward (smooth mode, gradient checks only): the same charge (snn_neuron_step computes H; its
 * Heaviside spike and reset are then replaced), with g = snn_surrogate_primitive:
 *   binary   S = g(H - th)                        reset amount a = S
 *   bipolar  S = g(H - th) - g(-H - th)           reset amount a = g(H - th) + g(-H - th)
 *   hard     V = H (1 - a) + v_reset a            soft  V = H - th S
 *
 * Backward (methods 1.4), per neuron, t = T-1 .. 0, with dH[T] = 0 (no gradient on the final V):
 *   psi[t]   = dS/dH = g'(H - th)                 bipolar: g'(H - th) + g'(-H - th)
 *   gamma[t] = dV[t]/dH[t]
 *              hard, detach_reset:   1 - a
 *              hard, !detach_reset:  1 - a + (v_reset - H) da/dH,  da/dH = psi (binary),
 *                                    g'(H - th) - g'(-H - th) (bipolar: a = |S|)
 *              soft, detach_reset:   1
 *              soft, !detach_reset:  1 - th psi
 *   dH[t]    = dS[t] psi[t] + dH[t+1] (dH[t+1]/dV[t]) gamma[t]
 *              dH[t+1]/dV[t] = 1 - 1/tau (LIF, PLIF; both decay_input modes), 1 (IF)
 *   dX[t]   += dH[t] / tau (LIF, PLIF with decay_input), dH[t] otherwise
 *   dtau    += sum_t dH[t] dH[t]/dtau  (V[t-1] and X[t] held fixed)
 *              decay_input:  H = V + (X - (V - vr)) / tau  ->  -(X - (V[t-1] - vr)) / tau^2
 *              !decay_input: H = V - (V - vr) / tau + X    ->   (V[t-1] - vr) / tau^2
 *              vr = v_reset for a hard reset, 0 for soft (the charge's v_reset-free branch);
 *              V[t-1] is recomputed from H[t-1] and S[t-1] (reset_value: bit-identical to
 *              the forward's V in both modes).
 * In normal mode a = |S|; in smooth mode the bipolar hard reset's a must be recomputed from H
 * (it is not a function of S), which is the only difference between the two backward entry
 * points. detach_reset drops exactly the (v_reset - H) da/dH and -th psi terms.
 *
 * Precision: the recursion keeps one float dH per neuron and runs in float, in the operation
 * order written above (that of SpikingJelly's CUDA kernel's float path, except dH / tau where
 * the kernel multiplies by 1/tau: identical for the default tau = 2); T is small and nothing is
 * summed over many terms. The dtau reduction over n T terms is accumulated in double and added
 * once to *dtau.
 *
 * Pure numerics: no I/O, no allocation (fixed stack tiles), no static state.
 */
#include "neurons/neuron.h"

#include <math.h>
#include <string.h>

#include "sim/util.h"

/* Neurons per stack tile (state, spikes, H and carried gradient of one tile). */
enum { TILE = 256 };

/* Smooth spike and reset amount of one neuron at pre-reset membrane hv (forward and backward
 * call this same function, so the backward sees the forward's values bit for bit). */
static inline void smooth_fire(const snn_neuron_params *p, float hv, float *s, float *a) {
    const float th = p->v_threshold;
    const float gp = snn_surrogate_primitive(p->surrogate, p->alpha, hv - th);
    if (!p->bipolar) {
        *s = gp;
        *a = gp;
        return;
    }
    const float gn = snn_surrogate_primitive(p->surrogate, p->alpha, -hv - th);
    *s = gp - gn;
    *a = gp + gn;
}

/* Membrane after the reset, from the pre-reset H, the spike S and the reset amount a (|S|, or
 * the smooth bipolar a). The soft line is snn_neuron_step's; the hard line is the smooth
 * forward's, and for a in {0, 1} it gives snn_neuron_step's select (S != 0 ? v_reset : H) bit for
 * bit: H * 1 + v_reset * 0 = H and H * 0 + v_reset * 1 = v_reset exactly (finite H). */
static inline float reset_value(const snn_neuron_params *p, float hv, float sv, float a) {
    if (p->soft_reset) return hv - p->v_threshold * sv;
    return hv * (1.0f - a) + p->v_reset * a;
}

void snn_neuron_forward_seq(const snn_neuron_params *p, int T, size_t n, size_t ld,
                            const float *x, float *s, float *h, bool smooth) {
    SNN_ASSERT(T >= 0 && (n <= ld || T <= 1));
    for (size_t i0 = 0; i0 < n; i0 += TILE) {
        const size_t cn = n - i0 < TILE ? n - i0 : TILE;
        float v[TILE], hb[TILE];
        int8_t sb[TILE];
        snn_neuron_reset_state(p, cn, v);
        for (int t = 0; t < T; t++) {
            const size_t row = (size_t)t * ld + i0;
            /* charge, fire, reset: the inference step (its H is the smooth mode's H too) */
            (void)snn_neuron_step(p, cn, x + row, v, sb, hb);
            float *st = s + row;
            if (!smooth) {
                for (size_t i = 0; i < cn; i++) st[i] = (float)sb[i];
            } else {
                /* replace the Heaviside spike and its reset by the smooth ones */
                for (size_t i = 0; i < cn; i++) {
                    float a;
                    smooth_fire(p, hb[i], &st[i], &a);
                    v[i] = reset_value(p, hb[i], st[i], a);
                }
            }
            if (h) memcpy(h + row, hb, cn * sizeof *hb);
        }
    }
}

static void backward_seq(const snn_neuron_params *p, int T, size_t n, size_t ld, const float *x,
                         const float *h, const float *s, const float *ds, float *dx, float *dtau,
                         bool smooth) {
    SNN_ASSERT(T >= 0 && (n <= ld || T <= 1));
    const bool is_if = p->kind == SNN_NEURON_IF;
    const bool detach = p->detach_reset;
    const snn_surrogate_kind sk = p->surrogate;
    const float alpha = p->alpha;
    const float tau = p->tau;
    const float th = p->v_threshold;
    const float vr = p->v_reset;
    /* H = V + (X - V) / tau:  dH/dV = 1 - 1/tau;  H = V - V / tau + X: the same;  IF: 1 */
    const float dh_dv = is_if ? 1.0f : 1.0f - 1.0f / tau;
    /* H = V + (X - ...) / tau:  dH/dX = 1/tau;  H = ... + X:  1 */
    const bool x_over_tau = !is_if && p->decay_input;
    const bool want_dtau = dtau != NULL && !is_if;
    const double vr_charge = p->soft_reset ? 0.0 : (double)vr;
    const double tau2 = (double)tau * (double)tau;
    const float v0 = snn_neuron_v_init(p);
    double dtau_acc = 0.0;

    for (size_t i0 = 0; i0 < n; i0 += TILE) {
        const size_t cn = n - i0 < TILE ? n - i0 : TILE;
        float gh[TILE];  /* dH[t+1] per neuron of the tile */
        for (size_t i = 0; i < cn; i++) gh[i] = 0.0f;
        for (int t = T - 1; t >= 0; t--) {
            const size_t row = (size_t)t * ld + i0;
            const float *ht = h + row, *st = s + row, *dst = ds + row;
            float *dxt = dx + row;
            for (size_t i = 0; i < cn; i++) {
                const float hv = ht[i], sv = st[i];
                /* fire: S = Theta(H - th) [- Theta(-H - th)], surrogate derivative psi */
                const float gpd = snn_surrogate_grad(sk, alpha, hv - th);
                const float gnd = p->bipolar ? snn_surrogate_grad(sk, alpha, -hv - th) : 0.0f;
                const float psi = gpd + gnd;
                /* reset, gamma = dV/dH */
                float gamma;
                if (p->soft_reset) {
                    /* V = H - th S */
                    gamma = detach ? 1.0f : 1.0f - th * psi;
                } else {
                    /* V = H (1 - a) + v_reset a, a = reset amount (|S| unless smooth bipolar) */
                    float a = p->bipolar ? fabsf(sv) : sv;  /* binary: a = S in both modes */
                    if (smooth && p->bipolar) {
                        float s_unused;
                        smooth_fire(p, hv, &s_unused, &a);
                    }
                    gamma = 1.0f - a;
                    if (!detach) gamma += (vr - hv) * (gpd - gnd);
                }
                /* dH[t] = dS psi + (dH[t+1] dH[t+1]/dV[t]) gamma */
                const float dhv = dst[i] * psi + gh[i] * dh_dv * gamma;
                dxt[i] += x_over_tau ? dhv / tau : dhv;
                if (want_dtau) {
                    float vprev = v0;
                    if (t > 0) {
                        const size_t pr = row - ld + i;
                        const float hp = h[pr], sp = s[pr];
                        float ap = p->bipolar ? fabsf(sp) : sp;
                        if (smooth && p->bipolar) {
                            float s_unused;
                            smooth_fire(p, hp, &s_unused, &ap);
                        }
                        vprev = reset_value(p, hp, sp, ap);
                    }
                    const double dv = (double)vprev - vr_charge;
                    const double dh_dtau =
                        p->decay_input ? -((double)x[row + i] - dv) / tau2 : dv / tau2;
                    dtau_acc += (double)dhv * dh_dtau;
                }
                gh[i] = dhv;
            }
        }
    }
    if (want_dtau) *dtau += (float)dtau_acc;
}

void snn_neuron_backward_seq(const snn_neuron_params *p, int T, size_t n, size_t ld,
                             const float *x, const float *h, const float *s, const float *ds,
                             float *dx, float *dtau) {
    backward_seq(p, T, n, ld, x, h, s, ds, dx, dtau, false);
}

void snn_neuron_backward_seq_smooth(const snn_neuron_params *p, int T, size_t n, size_t ld,
                                    const float *x, const float *h, const float *s,
                                    const float *ds, float *dx, float *dtau) {
    backward_seq(p, T, n, ld, x, h, s, ds, dx, dtau, true);
}
