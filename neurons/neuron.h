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

/* PLIF parametrisation (SpikingJelly ParametricLIFNode): tau = 1 / sigmoid(w) = 1 + exp(-w), so
 * every real w gives tau > 1; snn_plif_w is the inverse, w = -log(tau - 1) (tau > 1). Evaluated
 * in double and rounded once. d tau / d w = -(tau - 1). */
float snn_plif_tau(float w);
float snn_plif_w(float tau);

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

/* snn_neuron_step without h, and the spikes' bit planes, the event representation a synaptic
 * layer reads (attention/bits.h's layout):
 *   nz  [ceil(n / 64)]  bit i % 64 of word i / 64 set iff s[i] != 0
 *   neg [ceil(n / 64)]  bit i % 64 of word i / 64 set iff s[i] < 0
 * bits past n zero. The AVX2 kernel takes the bits from the compare it makes anyway, so the
 * planes cost no second pass over s. Same spikes, membranes and return value as
 * snn_neuron_step. */
size_t snn_neuron_step_planes(const snn_neuron_params *p, size_t n, const float *x, float *v,
                              int8_t *s, uint64_t *nz, uint64_t *neg);

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

/* ---- Training: multi-step forward and BPTT backward (neurons/bptt.c) ------------------------
 *
 * Layout: row t of every [T, *] buffer starts at t * ld; a call handles neurons [0, n) of every
 * row (n <= ld), so threads can share one [T, ld] buffer by slices of neurons (pass the slice's
 * base pointers). The membrane starts at snn_neuron_v_init(p). No allocation, no static state. */

/* T timesteps of n neurons.
 *   x [T, ld]  input current
 *   s [T, ld]  output spikes as float
 *   h [T, ld]  output pre-reset membrane H (kept for the backward); may be NULL
 * smooth = false: exactly snn_neuron_step, T times (bit-identical spikes and membranes).
 * smooth = true (finite-difference gradient checks only): with g = snn_surrogate_primitive,
 *   binary  S = g(H - th)                       hard V = H (1 - S) + v_reset S;  soft V = H - th S
 *   bipolar S = g(H - th) - g(-H - th), a = g(H - th) + g(-H - th)
 *                                               hard V = H (1 - a) + v_reset a;  soft V = H - th S
 * (charge unchanged). With detach_reset = false, snn_neuron_backward_seq_smooth is the exact
 * derivative of this forward. */
void snn_neuron_forward_seq(const snn_neuron_params *p, int T, size_t n, size_t ld,
                            const float *x, float *s, float *h, bool smooth);

/* A per-channel affine map of a forward's input: neuron i of a row charges with
 * gamma[c] x + beta[c] (a float multiply, then an add: BatchNorm's output from its normalised
 * input, bit for bit), c = (c0 + i) % width. With mean and rstd, x is BatchNorm's input instead:
 * the neuron first normalises it, xhat = (x - mean[c]) rstd[c] (float, BatchNorm's operations),
 * and charges with gamma[c] xhat + beta[c]: BatchNorm's normalisation pass done while the
 * neurons read x (BatchNorm's backward normalises x again: nothing is stored). */
typedef struct snn_neuron_affine {
    const float *gamma, *beta; /* [width] */
    size_t width, c0;
    const float *mean, *rstd;  /* [width], or both NULL: x is already normalised */
} snn_neuron_affine;

/* snn_neuron_forward_seq (normal mode) that also writes the spikes as bit planes (sim/
 * spikebits.h's layout), packed while each row is in cache: row t of nz, neg [T, wld] words
 * holds neurons [0, n), nz the bits of S != 0 and neg (bipolar only, else NULL) of S < 0; bits
 * past n in a row's last word are 0. s [T, ld] may be NULL: a caller that keeps the spikes as
 * bits then never writes them as floats. af (or NULL): the input current is af's map of x, so
 * a caller need not store a BatchNorm's output. The same spikes and H as snn_neuron_forward_seq
 * on that input; h may be NULL (snn_neuron_backward_seq_affine recomputes H). */
void snn_neuron_forward_seq_bits(const snn_neuron_params *p, int T, size_t n, size_t ld,
                                 const float *x, const snn_neuron_affine *af, float *s,
                                 uint64_t *nz, uint64_t *neg, size_t wld, float *h);

/* Exact BPTT of snn_neuron_forward_seq (smooth = false) with the surrogate gradient,
 * methods.md 1.4, t = T-1 .. 0 (no gradient arrives on the final membrane):
 *   psi   = g'(H - th)   (bipolar: g'(H - th) + g'(-H - th))
 *   gamma = dV/dH: hard: detach 1 - |S|, else 1 - |S| + (v_reset - H) g'_s, with g'_s = psi for
 *           binary, g'(H - th) - g'(-H - th) for bipolar;  soft: detach 1, else 1 - th psi
 *   dH[t] = dS[t] psi + dH[t+1] (dH[t+1]/dV[t]) gamma,  dH[t+1]/dV[t] = 1 - 1/tau (LIF, PLIF;
 *           both decay_input modes) or 1 (IF)
 *   dX[t] = dH[t] / tau (LIF/PLIF with decay_input) or dH[t]
 *   x, h [T, ld]     the forward's input and H; its spikes are recomputed from H (S = [H >= th],
 *                    bipolar -1 where H <= -th: the forward's comparisons, so the same S), and
 *                    need not be kept
 *   ds [T, ld]       gradient on S
 *   dx [T, ld]       ACCUMULATES (+=) the gradient on X
 *   dtau             if not NULL, ACCUMULATES dL/dtau summed over the n neurons and T steps (LIF
 *                    and PLIF; IF adds nothing). dH/dtau = -(X - (V[t-1] - vr)) / tau^2 with
 *                    decay_input, (V[t-1] - vr) / tau^2 without, vr = 0 for soft reset; V[t-1]
 *                    is recomputed from H[t-1], S[t-1]. This is d/dtau: a PLIF parametrised as
 *                    tau = 1 / sigmoid(w) (SpikingJelly) multiplies by dtau/dw = -tau (tau - 1).
 * The recursion runs in float (SpikingJelly's CUDA kernel's float path); the dtau sum in double. */
void snn_neuron_backward_seq(const snn_neuron_params *p, int T, size_t n, size_t ld,
                             const float *x, const float *h, const float *ds, float *dx,
                             float *dtau);

/* snn_neuron_backward_seq that writes dx instead of accumulating: the bytes of accumulating into
 * a zeroed dx (+0 + dX), without reading dx, so the caller need not zero it. */
void snn_neuron_backward_seq_into(const snn_neuron_params *p, int T, size_t n, size_t ld,
                                  const float *x, const float *h, const float *ds, float *dx,
                                  float *dtau);

/* Timesteps up to which snn_neuron_backward_seq_affine recomputes H (config's maximum T): it
 * keeps a tile's H on the stack, narrower tiles for more timesteps. */
#define SNN_NEURON_RECOMPUTE_MAX_T 1024

/* snn_neuron_backward_seq (acc) or _into (!acc), without dtau, of a normal-mode forward that
 * read its input x [T, ld] through af (snn_neuron_forward_seq_bits): H is not read but
 * recomputed, tile by tile, by the forward's own operations on x and af (the forward's bits),
 * so that forward need not store h. A normalising map's xhat may be given instead, as x with
 * af's mean and rstd NULL (the same bits: the map's first step is that normalisation).
 * T <= SNN_NEURON_RECOMPUTE_MAX_T. */
void snn_neuron_backward_seq_affine(const snn_neuron_params *p, int T, size_t n, size_t ld,
                                    const float *x, const snn_neuron_affine *af,
                                    const float *ds, float *dx, bool acc);

/* The same recursion for a smooth = true forward, whose spikes s [T, ld] are not a function of
 * H's sign and are read: identical to snn_neuron_backward_seq except that a bipolar hard reset's
 * reset amount |S| is the smooth a = g(H - th) + g(-H - th) (in gamma and in the recomputed
 * V[t-1]), which cannot be read off S. With detach_reset = false it
 * is the exact derivative of the smooth forward (gradient checks). */
void snn_neuron_backward_seq_smooth(const snn_neuron_params *p, int T, size_t n, size_t ld,
                                    const float *x, const float *h, const float *s,
                                    const float *ds, float *dx, float *dtau);

#endif
