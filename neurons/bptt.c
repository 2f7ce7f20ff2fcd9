/*
 * bptt.c: multi-step forward and exact BPTT backward of a neuron population, for training
 * (spec/model.md section 1; research/methods.md 1.3 surrogates, 1.4 the BPTT recursion, 3.3(a)
 * the bipolar neuron; SpikingJelly 0.0.0.0.12 MultiStepLIFNodePTT's fused kernel).
 *
 * Layout: row t of every [T, *] buffer starts at t * ld; a call handles columns [0, n) of each
 * row (n <= ld), so the caller can give slices of neurons of one [T, ld] buffer to threads.
 *
 * Forward (normal mode): snn_neuron_step's operations in its order, T times, on stack tiles of
 * TILE neurons (fwd_row: one branch-free vectorised loop per neuron configuration), so spikes
 * and membranes are bit-identical to the inference engine.
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
 * Speed (backward_fast: every configuration except the dtau sum and the smooth bipolar hard
 * reset, which keep the generic loop): per tile and timestep, the surrogate derivatives of the
 * row (surrogate_row; for the sigmoid, snn_expf_poly of sim/vexpf.h, as the scalar surrogate),
 * then one branch-free element-wise loop per configuration (bwd_row), the same float operations
 * in the same order as the generic loop: the same bits. After a forward that read its input
 * through an affine map (snn_neuron_backward_seq_affine), the tile's H is not read but
 * recomputed first by the forward's own tile on the same input and map (fwd_tile_of): the same
 * H, so a caller keeps the input (BatchNorm's, which its backward needs anyway) and not H.
 *
 * Pure numerics: no I/O, no allocation (fixed stack tiles), no static state.
 */
#include "neurons/charge.h"
#include "sim/vec.h"
#include "sim/vexpf.h"
#include "neurons/neuron.h"

#include <math.h>
#include <string.h>

#include "sim/spikebits.h"
#include "sim/util.h"

/* Neurons per stack tile (state, spikes, H and carried gradient of one tile). */
enum { TILE = 256 };
_Static_assert(TILE % 64 == 0, "tiles start on a bit-plane word");
/* Floats of H a backward that recomputes it keeps per tile (64 KiB of stack): 64 timesteps of a
 * whole tile, and 16 neurons at SNN_NEURON_RECOMPUTE_MAX_T. */
enum { RC_FLOATS = 64 * TILE };
_Static_assert(RC_FLOATS / SNN_NEURON_RECOMPUTE_MAX_T >= 16, "recompute tiles of >= 16");

#define INLINE_VEC static inline __attribute__((always_inline)) SNN_VEC_FN

/* One timestep of n neurons, normal mode: snn_neuron_step's operations in its order (charge,
 * fire with >=, reset by select or by H - th S), spikes written as float. mode, bipolar and soft
 * are compile-time constants at every call site (the dispatch below), so each instance is one
 * branch-free vectorised loop; the bits are snn_neuron_step's. */
INLINE_VEC void fwd_row(const charge_mode mode, const bool bipolar, const bool soft, size_t n,
                        const float *restrict x, float *restrict v, float *restrict s,
                        float *restrict h, float tau, float vr, float th) {
    const float neg_th = -th;
    for (size_t i = 0; i < n; i++) {
        const float hi = charge(mode, v[i], x[i], tau, vr);
        float si = hi >= th ? 1.0f : 0.0f;
        if (bipolar) si = hi <= neg_th ? -1.0f : si;
        v[i] = soft ? hi - th * si : (si != 0.0f ? vr : hi);
        s[i] = si;
        h[i] = hi;
    }
}

/* Requests the rows of the next tile, [i0, i0 + cn) of every timestep of a [T, ld] buffer: a
 * tile reads T short runs far apart, which the hardware prefetchers pick up late. (A prefetch
 * reads nothing: columns >= n are never used.) */
static inline void prefetch_tile(const float *a, int T, size_t ld, size_t i0, size_t cn) {
    for (int t = 0; t < T; t++)
        for (size_t i = 0; i < cn; i += 16) __builtin_prefetch(a + (size_t)t * ld + i0 + i);
}

/* Where the forward writes its spikes: floats s [T, ld] (or NULL), and bit planes nz, neg
 * [T, wld] (or NULL: snn_neuron_forward_seq_bits). */
typedef struct spike_out {
    float *s;
    uint64_t *nz, *neg;
    size_t wld;
} spike_out;

/* T timesteps of one tile of cn <= TILE neurons (normal mode) whose first neuron is neuron i0 of
 * the call; o's bit planes start at the tile's first word. af: the input is affine's of x. */
INLINE_VEC void fwd_tile(const charge_mode mode, const bool bipolar, const bool soft, int T,
                         size_t cn, size_t ld, const float *x, const snn_neuron_affine *af,
                         size_t i0, const spike_out *o, float *h, size_t hld, float v0, float tau,
                         float vr, float th) {
    float v[TILE], hb[TILE], sb[TILE], g[TILE], b[TILE], mu[TILE], rs[TILE], xa[TILE];
    for (size_t i = 0; i < cn; i++) v[i] = v0;
    const bool norm = af && af->mean;
    if (af) /* channel c0 + i0 + i (mod width), in runs of consecutive channels: a division per
             * neuron cost more than the T timesteps of the tile together, and a scalar copy
             * per neuron a sixth of them */
        for (size_t i = 0, c = (af->c0 + i0) % af->width; i < cn; c = 0) {
            const size_t run = af->width - c < cn - i ? af->width - c : cn - i;
            for (size_t u = 0; u < run; u++) g[i + u] = af->gamma[c + u];
            for (size_t u = 0; u < run; u++) b[i + u] = af->beta[c + u];
            if (norm) {
                for (size_t u = 0; u < run; u++) mu[i + u] = af->mean[c + u];
                for (size_t u = 0; u < run; u++) rs[i + u] = af->rstd[c + u];
            }
            i += run;
        }
    for (int t = 0; t < T; t++) {
        const size_t row = (size_t)t * ld;
        float *st = o->s ? o->s + row : sb;
        const float *xt = x + row;
        if (norm) { /* BatchNorm's normalisation, then its output */
            for (size_t i = 0; i < cn; i++) {
                const float xh = (xt[i] - mu[i]) * rs[i];
                xa[i] = g[i] * xh + b[i];
            }
            xt = xa;
        } else if (af) { /* BatchNorm's output: the same multiply, then add */
            for (size_t i = 0; i < cn; i++) xa[i] = g[i] * xt[i] + b[i];
            xt = xa;
        }
        fwd_row(mode, bipolar, soft, cn, xt, v, st, h ? h + (size_t)t * hld : hb, tau, vr, th);
        if (o->nz) /* packed while the row is in cache */
            snn_bits_pack(o->nz + (size_t)t * o->wld, o->neg ? o->neg + (size_t)t * o->wld : NULL,
                          st, cn);
    }
}

/* One tile of the normal-mode forward in its configuration's instance of fwd_tile (one
 * specialised loop per charge, bipolar, soft); h (or NULL) rows hld apart. */
SNN_WIDE_FN SNN_VEC_FN static void fwd_tile_of(const snn_neuron_params *p, int T, size_t cn,
                                               size_t ld, const float *x,
                                               const snn_neuron_affine *af, size_t i0,
                                               const spike_out *o, float *h, size_t hld) {
    const charge_mode mode = charge_mode_of(p);
    const float tau = p->tau, vr = p->v_reset, th = p->v_threshold;
    const float v0 = snn_neuron_v_init(p);
    switch ((int)mode * 4 + (p->bipolar ? 2 : 0) + (p->soft_reset ? 1 : 0)) {
#define FWD_CASE(m, b, so)                                                                     \
    case (int)(m) * 4 + (b) * 2 + (so):                                                          \
        fwd_tile(m, b, so, T, cn, ld, x, af, i0, o, h, hld, v0, tau, vr, th);                  \
        break;
#define FWD_CASES(m) FWD_CASE(m, 0, 0) FWD_CASE(m, 0, 1) FWD_CASE(m, 1, 0) FWD_CASE(m, 1, 1)
        FWD_CASES(CHARGE_IF)
        FWD_CASES(CHARGE_DECAY_INPUT0)
        FWD_CASES(CHARGE_DECAY_INPUT)
        FWD_CASES(CHARGE_NO_DECAY0)
        FWD_CASES(CHARGE_NO_DECAY)
#undef FWD_CASES
#undef FWD_CASE
    default: SNN_ASSERT(0);
    }
}

/* Normal-mode forward of neurons [0, n), tile by tile. */
static void forward_fast(const snn_neuron_params *p, int T, size_t n, size_t ld, const float *x,
                         const snn_neuron_affine *af, const spike_out *out, float *h) {
    for (size_t i0 = 0; i0 < n; i0 += TILE) {
        const size_t cn = n - i0 < TILE ? n - i0 : TILE;
        /* the tile's outputs: floats from column i0, or bits from word i0 / 64 (TILE % 64 == 0) */
        const spike_out ot = {out->s ? out->s + i0 : NULL, out->nz ? out->nz + i0 / 64 : NULL,
                              out->neg ? out->neg + i0 / 64 : NULL, out->wld};
        if (i0 + TILE < n)
            prefetch_tile(x, T, ld, i0 + TILE, n - i0 - TILE < TILE ? n - i0 - TILE : TILE);
        fwd_tile_of(p, T, cn, ld, x + i0, af, i0, &ot, h ? h + i0 : NULL, ld);
    }
}

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
    if (!smooth) {
        const spike_out out = {s, NULL, NULL, 0};
        forward_fast(p, T, n, ld, x, NULL, &out, h);
        return;
    }
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

/* pi/2 as SpikingJelly writes it (the same constant as neurons/neuron.c). */
#define HALF_PI 1.5707963267948966

/* g[i] = snn_surrogate_grad(kind, alpha, sign H[i] - th) for i < n (sign = +1 or -1), bit for
 * bit: the same float operations in the same order (for the sigmoid, the same snn_expf_poly). */
SNN_WIDE_FN SNN_VEC_FN static void surrogate_row(snn_surrogate_kind kind, float alpha, size_t n,
                                 const float *restrict h, float sign, float th,
                                 float *restrict g) {
    float u[TILE];  /* the surrogate's argument x = H - th or -H - th */
    if (sign > 0.0f)
        for (size_t i = 0; i < n; i++) u[i] = h[i] - th;
    else
        for (size_t i = 0; i < n; i++) u[i] = -h[i] - th;
    switch (kind) {
    case SNN_SURROGATE_SIGMOID: {
        /* sgax = 1 / (1 + exp(-(x alpha))); g = (1 - sgax) sgax alpha */
        for (size_t i = 0; i < n; i++) {
            const float sgax = 1.0f / (1.0f + snn_expf_poly(-(u[i] * alpha)));
            g[i] = (1.0f - sgax) * sgax * alpha;
        }
        break;
    }
    case SNN_SURROGATE_ATAN: {
        const float c = (float)(HALF_PI * (double)alpha);
        const float k = (float)((double)alpha / 2.0);
        for (size_t i = 0; i < n; i++) {
            const float t = c * u[i];
            g[i] = k / (1.0f + t * t);
        }
        break;
    }
    case SNN_SURROGATE_TRIANGLE: {
        const float lim = (float)(1.0 / (double)alpha);
        const float m = (float)(-((double)alpha * (double)alpha));
        for (size_t i = 0; i < n; i++) {
            const float ax = fabsf(u[i]);
            g[i] = ax > lim ? 0.0f : m * ax + alpha;
        }
        break;
    }
    default:
        for (size_t i = 0; i < n; i++) g[i] = snn_surrogate_grad(kind, alpha, sign * h[i] - th);
    }
}

void snn_neuron_forward_seq_bits(const snn_neuron_params *p, int T, size_t n, size_t ld,
                                 const float *x, const snn_neuron_affine *af, float *s,
                                 uint64_t *nz, uint64_t *neg, size_t wld, float *h) {
    SNN_ASSERT(T >= 0 && (n <= ld || T <= 1) && nz && (neg != NULL) == p->bipolar);
    SNN_ASSERT(T <= 1 || snn_bits_words(n) <= wld);
    SNN_ASSERT(!af || (af->gamma && af->beta && af->width > 0));
    SNN_ASSERT(!af || (af->mean != NULL) == (af->rstd != NULL));
    const spike_out out = {s, nz, neg, wld};
    forward_fast(p, T, n, ld, x, af, &out, h);
}

/* The normal forward's spikes from its pre-reset membranes: fwd_row's comparisons on the same
 * H, so the same S (the backward needs no stored spikes). */
INLINE_VEC void spikes_of_row(const bool bipolar, size_t n, const float *restrict h, float th,
                              float *restrict s) {
    const float neg_th = -th;
    if (bipolar)
        for (size_t i = 0; i < n; i++) s[i] = h[i] <= neg_th ? -1.0f : h[i] >= th ? 1.0f : 0.0f;
    else
        for (size_t i = 0; i < n; i++) s[i] = h[i] >= th ? 1.0f : 0.0f;
}

/* The spike of one neuron at pre-reset membrane hv: the stored one (smooth mode) or
 * spikes_of_row's. */
static inline float spike_at(const snn_neuron_params *p, const float *s, size_t k, float hv) {
    if (s) return s[k];
    const float th = p->v_threshold, neg_th = -th;
    const float si = hv >= th ? 1.0f : 0.0f;
    return p->bipolar && hv <= neg_th ? -1.0f : si;
}

/* One timestep of the recursion for n neurons (see the header comment), given the surrogate
 * derivatives gp = g'(H - th) and, for bipolar, gn = g'(-H - th). The flags are compile-time
 * constants at every call site; the operations and their order are those of backward_generic
 * below, so both give the same bits. */
INLINE_VEC void bwd_row(const bool bipolar, const bool soft, const bool detach,
                        const bool x_over_tau, const bool acc, size_t n, const float *restrict ht,
                        const float *restrict st, const float *restrict dst,
                        const float *restrict gp, const float *restrict gn,
                        float *restrict dxt, float *restrict gh, float th, float vr, float tau,
                        float dh_dv) {
    for (size_t i = 0; i < n; i++) {
        const float hv = ht[i], sv = st[i];
        const float gpd = gp[i];
        const float gnd = bipolar ? gn[i] : 0.0f;
        const float psi = gpd + gnd;
        float gamma;
        if (soft) {
            gamma = detach ? 1.0f : 1.0f - th * psi;
        } else {
            const float a = bipolar ? fabsf(sv) : sv;
            gamma = 1.0f - a;
            if (!detach) gamma += (vr - hv) * (gpd - gnd);
        }
        const float dhv = dst[i] * psi + gh[i] * dh_dv * gamma;
        /* written: +0 + dX, the bytes of accumulating into a zeroed dx (-0 becomes +0) */
        dxt[i] = (acc ? dxt[i] : 0.0f) + (x_over_tau ? dhv / tau : dhv);
        gh[i] = dhv;
    }
}

/* The recursion without the dtau sum and without the smooth bipolar hard reset (whose reset
 * amount is recomputed from H): per tile, per timestep, the surrogate derivatives of the row,
 * then one specialised element-wise loop. */
SNN_WIDE_FN SNN_VEC_FN static void backward_fast(const snn_neuron_params *p, int T, size_t n,
                                         size_t ld, const float *x, const float *h,
                                         const snn_neuron_affine *rc, const float *s,
                                         const float *ds, float *dx, bool acc) {
    const bool is_if = p->kind == SNN_NEURON_IF;
    const float tau = p->tau, th = p->v_threshold, vr = p->v_reset;
    const float dh_dv = is_if ? 1.0f : 1.0f - 1.0f / tau;
    const bool x_over_tau = !is_if && p->decay_input;
    const int key = (p->bipolar ? 8 : 0) + (p->soft_reset ? 4 : 0) + (p->detach_reset ? 2 : 0) +
                    (x_over_tau ? 1 : 0);
    /* rc: tiles narrow enough that their H [T, tile] fits hr (T <= 1024: 16 neurons or more) */
    const size_t tile =
        rc && (size_t)T * TILE > RC_FLOATS ? RC_FLOATS / (size_t)T / 16 * 16 : TILE;
    float hr[RC_FLOATS]; /* rc: the tile's H [T, tile] */
    for (size_t i0 = 0; i0 < n; i0 += tile) {
        const size_t cn = n - i0 < tile ? n - i0 : tile;
        float gh[TILE], gp[TILE], gn[TILE], sb[TILE];
        for (size_t i = 0; i < cn; i++) gh[i] = 0.0f;
        if (rc) { /* the forward's operations on its input x: its H, bit for bit */
            const spike_out none = {NULL, NULL, NULL, 0};
            fwd_tile_of(p, T, cn, ld, x + i0, rc, i0, &none, hr, tile);
        }
        if (i0 + tile < n) {
            const size_t nn = n - i0 - tile < tile ? n - i0 - tile : tile;
            prefetch_tile(rc ? x : h, T, ld, i0 + tile, nn);
            if (s) prefetch_tile(s, T, ld, i0 + tile, nn);
            prefetch_tile(ds, T, ld, i0 + tile, nn);
            if (acc) prefetch_tile(dx, T, ld, i0 + tile, nn);
        }
        for (int t = T - 1; t >= 0; t--) {
            const size_t row = (size_t)t * ld + i0;
            const float *ht = rc ? hr + (size_t)t * tile : h + row, *st = s ? s + row : sb;
            const float *dst = ds + row;
            float *dxt = dx + row;
            if (!s) spikes_of_row(p->bipolar, cn, ht, th, sb);
            surrogate_row(p->surrogate, p->alpha, cn, ht, 1.0f, th, gp);
            if (p->bipolar) surrogate_row(p->surrogate, p->alpha, cn, ht, -1.0f, th, gn);
            switch (key) {
#define BWD_CASE(b, so, de, xt)                                                                \
    case (b) * 8 + (so) * 4 + (de) * 2 + (xt):                                                   \
        if (acc)                                                                                 \
            bwd_row(b, so, de, xt, true, cn, ht, st, dst, gp, gn, dxt, gh, th, vr, tau, dh_dv);  \
        else                                                                                     \
            bwd_row(b, so, de, xt, false, cn, ht, st, dst, gp, gn, dxt, gh, th, vr, tau, dh_dv); \
        break;
#define BWD_CASES(b, so) BWD_CASE(b, so, 0, 0) BWD_CASE(b, so, 0, 1) BWD_CASE(b, so, 1, 0)      \
    BWD_CASE(b, so, 1, 1)
                BWD_CASES(0, 0)
                BWD_CASES(0, 1)
                BWD_CASES(1, 0)
                BWD_CASES(1, 1)
#undef BWD_CASES
#undef BWD_CASE
            default: SNN_ASSERT(0);
            }
        }
    }
}

/* s: the smooth forward's spikes; NULL in normal mode, where they are recomputed from H.
 * acc: dx += the gradient, else dx = +0 + the gradient. */
static void backward_seq(const snn_neuron_params *p, int T, size_t n, size_t ld, const float *x,
                         const float *h, const snn_neuron_affine *rc, const float *s,
                         const float *ds, float *dx, float *dtau, bool smooth, bool acc) {
    SNN_ASSERT(T >= 0 && (n <= ld || T <= 1) && (s != NULL) == smooth);
    SNN_ASSERT((h != NULL) != (rc != NULL));
    if ((dtau == NULL || p->kind == SNN_NEURON_IF) && !(smooth && p->bipolar && !p->soft_reset)) {
        backward_fast(p, T, n, ld, x, h, rc, s, ds, dx, acc);
        return;
    }
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
            const float *ht = h + row, *dst = ds + row;
            float *dxt = dx + row;
            for (size_t i = 0; i < cn; i++) {
                const float hv = ht[i], sv = spike_at(p, s, row + i, hv);
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
                dxt[i] = (acc ? dxt[i] : 0.0f) + (x_over_tau ? dhv / tau : dhv);
                if (want_dtau) {
                    float vprev = v0;
                    if (t > 0) {
                        const size_t pr = row - ld + i;
                        const float hp = h[pr], sp = spike_at(p, s, pr, hp);
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
                             const float *x, const float *h, const float *ds, float *dx,
                             float *dtau) {
    backward_seq(p, T, n, ld, x, h, NULL, NULL, ds, dx, dtau, false, true);
}

void snn_neuron_backward_seq_into(const snn_neuron_params *p, int T, size_t n, size_t ld,
                                  const float *x, const float *h, const float *ds, float *dx,
                                  float *dtau) {
    backward_seq(p, T, n, ld, x, h, NULL, NULL, ds, dx, dtau, false, false);
}

void snn_neuron_backward_seq_smooth(const snn_neuron_params *p, int T, size_t n, size_t ld,
                                    const float *x, const float *h, const float *s,
                                    const float *ds, float *dx, float *dtau) {
    backward_seq(p, T, n, ld, x, h, NULL, s, ds, dx, dtau, true, true);
}

void snn_neuron_backward_seq_affine(const snn_neuron_params *p, int T, size_t n, size_t ld,
                                    const float *x, const snn_neuron_affine *af,
                                    const float *ds, float *dx, bool acc) {
    SNN_ASSERT(x && af && T <= SNN_NEURON_RECOMPUTE_MAX_T);
    SNN_ASSERT(af->gamma && af->beta && af->width > 0 && (af->mean != NULL) == (af->rstd != NULL));
    backward_seq(p, T, n, ld, x, NULL, af, NULL, ds, dx, NULL, false, acc);
}
