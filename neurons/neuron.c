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

#include "sim/vexpf.h"

#include <math.h>
#if SNN_HAVE_AVX2_DISPATCH
#include <immintrin.h>
#endif

#include "sim/util.h"
#include "attention/bits.h"
#include <string.h>

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

#if SNN_HAVE_AVX2_DISPATCH
/* hv = the charge of vectors vv, xv (gcc vector arithmetic on __m256 or __m512: charge's IEEE
 * operations lane by lane); mode, recip, tau, rtau and vr in scope. With recip the divides by
 * tau are multiplies by 1 / tau: the same bits (charge_tau_pow2), and the divider no longer
 * bounds the loop. */
#define STEP_CHARGE(hv, vv, xv)                                                                  \
    do {                                                                                         \
        switch (mode) {                                                                          \
        case CHARGE_IF: hv = vv + xv; break;                                                     \
        case CHARGE_DECAY_INPUT0: hv = vv + (recip ? (xv - vv) * rtau : (xv - vv) / tau); break; \
        case CHARGE_DECAY_INPUT:                                                                 \
            hv = vv + (recip ? (xv - (vv - vr)) * rtau : (xv - (vv - vr)) / tau);                \
            break;                                                                               \
        case CHARGE_NO_DECAY0: hv = vv - (recip ? vv * rtau : vv / tau) + xv; break;             \
        default: hv = vv - (recip ? (vv - vr) * rtau : (vv - vr) / tau) + xv; break;             \
        }                                                                                        \
    } while (0)

/* 32 neurons per iteration in AVX2 (no h output): the charge formula with the same IEEE
 * operations per lane (gcc vector arithmetic on __m256), ordered compares (false on NaN, as
 * C's >= and <=), resets by mask, and the int32 spikes packed to bytes with saturating packs
 * (values -1, 0, 1 pass unchanged). Returns the number of neurons done (a multiple of 32); the
 * caller's scalar loop finishes the rest. *nspikes receives their spike count. With nz_bits
 * and neg_bits (else NULL) it also stores each group's 32 nonzero and negative bits at byte
 * i / 8 of them: bits i .. i + 31 of the little-endian planes (x86 is little-endian). */
static inline __attribute__((always_inline)) SNN_AVX2_FN size_t
step_avx2_body(const charge_mode mode, const bool recip, const bool bipolar, const bool soft,
               size_t n, const float *x, float *v, int8_t *s, float tau, float rtau, float vr,
               float th, uint8_t *nz_bits, uint8_t *neg_bits, size_t *nspikes) {
    const __m256 vth = _mm256_set1_ps(th), vnth = _mm256_set1_ps(-th), vvr = _mm256_set1_ps(vr);
    const __m256i one = _mm256_set1_epi32(1);
    const __m256i fix = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);  /* undo the packs' lane mix */
    size_t i = 0, cnt = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i si[4];
        for (int g = 0; g < 4; g++) {
            const __m256 vv = _mm256_loadu_ps(v + i + 8 * g), xv = _mm256_loadu_ps(x + i + 8 * g);
            __m256 hv;
            STEP_CHARGE(hv, vv, xv);
            const __m256 pos = _mm256_cmp_ps(hv, vth, _CMP_GE_OQ);
            const __m256 neg = bipolar ? _mm256_cmp_ps(hv, vnth, _CMP_LE_OQ) : _mm256_setzero_ps();
            const __m256 spk = _mm256_or_ps(pos, neg);
            /* +1 where pos, -1 where neg (all ones: neg wins, as in the scalar loop), else 0 */
            const __m256i sfix = _mm256_or_si256(_mm256_and_si256(_mm256_castps_si256(pos), one),
                                                 _mm256_castps_si256(neg));
            __m256 vn;
            if (soft)
                vn = hv - vth * _mm256_cvtepi32_ps(sfix);
            else
                vn = _mm256_blendv_ps(hv, vvr, spk);
            _mm256_storeu_ps(v + i + 8 * g, vn);
            si[g] = sfix;
        }
        const __m256i b = _mm256_permutevar8x32_epi32(
            _mm256_packs_epi16(_mm256_packs_epi32(si[0], si[1]), _mm256_packs_epi32(si[2], si[3])),
            fix);
        _mm256_storeu_si256((__m256i *)(void *)(s + i), b);
        const uint32_t bz =
            ~(uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(b, _mm256_setzero_si256()));
        cnt += (size_t)__builtin_popcount(bz);
        if (nz_bits) {
            const uint32_t bn = (uint32_t)_mm256_movemask_epi8(b);
            memcpy(nz_bits + i / 8, &bz, sizeof bz);
            memcpy(neg_bits + i / 8, &bn, sizeof bn);
        }
    }
    *nspikes = cnt;
    return i;
}

#if SNN_HAVE_AVX512_DISPATCH
/* step_avx2_body with 64 neurons per iteration in AVX-512 (four 16-float vectors): the same
 * IEEE operations per lane, ordered compares into masks (neg wins, as in the scalar loop), the
 * spikes narrowed to bytes (vpmovdb: -1, 0, 1 pass unchanged), and each group's 64 nonzero and
 * negative bits straight from the masks. The same bits as the AVX2 and scalar loops. */
static inline __attribute__((always_inline)) SNN_AVX512_FN size_t
step_avx512_body(const charge_mode mode, const bool recip, const bool bipolar, const bool soft,
                 size_t n, const float *x, float *v, int8_t *s, float tau, float rtau, float vr,
                 float th, uint8_t *nz_bits, uint8_t *neg_bits, size_t *nspikes) {
    const __m512 vth = _mm512_set1_ps(th), vnth = _mm512_set1_ps(-th), vvr = _mm512_set1_ps(vr);
    const __m512 one = _mm512_set1_ps(1.0f), minus_one = _mm512_set1_ps(-1.0f);
    const __m512i ione = _mm512_set1_epi32(1), iminus_one = _mm512_set1_epi32(-1);
    size_t i = 0, cnt = 0;
    for (; i + 64 <= n; i += 64) {
        uint64_t pz = 0, pn = 0;
        for (int g = 0; g < 4; g++) {
            const __m512 vv = _mm512_loadu_ps(v + i + 16 * g), xv = _mm512_loadu_ps(x + i + 16 * g);
            __m512 hv;
            STEP_CHARGE(hv, vv, xv);
            const __mmask16 pos = _mm512_cmp_ps_mask(hv, vth, _CMP_GE_OQ);
            const __mmask16 neg = bipolar ? _mm512_cmp_ps_mask(hv, vnth, _CMP_LE_OQ) : 0;
            const __mmask16 spk = pos | neg;
            __m512 vn;
            if (soft) /* hv - th S with S = -1 where neg, else 1 where pos, else 0 */
                vn = hv - vth * _mm512_mask_blend_ps(neg, _mm512_maskz_mov_ps(pos, one),
                                                     minus_one);
            else
                vn = _mm512_mask_blend_ps(spk, hv, vvr);
            _mm512_storeu_ps(v + i + 16 * g, vn);
            const __m512i si = _mm512_mask_blend_epi32(neg, _mm512_maskz_mov_epi32(pos, ione),
                                                       iminus_one);
            _mm_storeu_si128((__m128i *)(void *)(s + i + 16 * g), _mm512_cvtepi32_epi8(si));
            pz |= (uint64_t)spk << (16 * g);
            pn |= (uint64_t)neg << (16 * g);
        }
        cnt += (size_t)__builtin_popcountll(pz);
        if (nz_bits) {
            memcpy(nz_bits + i / 8, &pz, sizeof pz);
            memcpy(neg_bits + i / 8, &pn, sizeof pn);
        }
    }
    *nspikes = cnt;
    return i;
}
#endif

/* The key of a neuron's specialised vector loop: (charge, bipolar, soft, 1 / tau as a multiply),
 * and that multiply's *rtau. */
static int step_key(const snn_neuron_params *p, float *rtau) {
    const charge_mode mode = charge_mode_of(p);
    *rtau = 0.0f;
    const bool recip = mode != CHARGE_IF && charge_tau_pow2(p->tau, rtau);
    return ((int)mode * 4 + (p->bipolar ? 2 : 0) + (p->soft_reset ? 1 : 0)) * 2 + recip;
}

/* The switch over step_key's values that returns BODY's count for the key's instance (the
 * shared dispatch of the AVX-512 and AVX2 kernels; p, n, x, v, s, nz, neg, nspikes and rtau in
 * scope). */
#define STEP_VEC_CASE(BODY, m, b, so, r)                                                         \
    case ((int)(m) * 4 + (b) * 2 + (so)) * 2 + (r):                                              \
        return BODY(m, r, b, so, n, x, v, s, p->tau, rtau, p->v_reset, p->v_threshold, nz, neg,  \
                    nspikes);
#define STEP_VEC_CASES2(BODY, m, r)                                                              \
    STEP_VEC_CASE(BODY, m, 0, 0, r) STEP_VEC_CASE(BODY, m, 0, 1, r)                              \
    STEP_VEC_CASE(BODY, m, 1, 0, r) STEP_VEC_CASE(BODY, m, 1, 1, r)
#define STEP_VEC_CASES(BODY, m) STEP_VEC_CASES2(BODY, m, 0) STEP_VEC_CASES2(BODY, m, 1)
#define STEP_VEC_SWITCH(BODY)                                                                    \
    switch (step_key(p, &rtau)) {                                                                \
        STEP_VEC_CASES2(BODY, CHARGE_IF, 0)                                                      \
        STEP_VEC_CASES(BODY, CHARGE_DECAY_INPUT0)                                                \
        STEP_VEC_CASES(BODY, CHARGE_DECAY_INPUT)                                                 \
        STEP_VEC_CASES(BODY, CHARGE_NO_DECAY0)                                                   \
        STEP_VEC_CASES(BODY, CHARGE_NO_DECAY)                                                    \
    }

#if SNN_HAVE_AVX512_DISPATCH
static SNN_AVX512_FN size_t step_avx512(const snn_neuron_params *p, size_t n, const float *x,
                                        float *v, int8_t *s, uint8_t *nz, uint8_t *neg,
                                        size_t *nspikes) {
    float rtau;
    STEP_VEC_SWITCH(step_avx512_body)
    *nspikes = 0;
    return 0;
}
#endif

static SNN_AVX2_FN size_t step_avx2(const snn_neuron_params *p, size_t n, const float *x,
                                    float *v, int8_t *s, uint8_t *nz, uint8_t *neg,
                                    size_t *nspikes) {
#if SNN_HAVE_AVX512_DISPATCH
    /* the widest kernel the CPU has (chosen once: __builtin_cpu_supports reads a table) */
    if (snn_cpu_avx512_popcnt()) return step_avx512(p, n, x, v, s, nz, neg, nspikes);
#endif
    float rtau;
    STEP_VEC_SWITCH(step_avx2_body)
    *nspikes = 0;
    return 0;
}
#undef STEP_CHARGE
#undef STEP_VEC_SWITCH
#undef STEP_VEC_CASES
#undef STEP_VEC_CASES2
#undef STEP_VEC_CASE
#endif

/* Also compiled for AVX2 (SNN_WIDE_FN): it runs for every neuron at every timestep. */
SNN_WIDE_FN SNN_VEC_FN size_t snn_neuron_step(const snn_neuron_params *p, size_t n, const float *x,
                                              float *v, int8_t *s, float *h) {
    const charge_mode mode = charge_mode_of(p);
    const float tau = p->tau;
    const float vr = p->v_reset;
    const float th = p->v_threshold;
    const int key = (int)mode * 4 + (p->bipolar ? 2 : 0) + (p->soft_reset ? 1 : 0);
    size_t nspikes = 0;
#if SNN_HAVE_AVX2_DISPATCH
    /* Without h (inference), the vector kernel takes whole groups of 64 (AVX-512) or 32 (AVX2)
     * neurons first. */
    if (!h && snn_cpu_avx2()) {
        const size_t done = step_avx2(p, n, x, v, s, NULL, NULL, &nspikes);
        x += done;
        v += done;
        s += done;
        n -= done;
    }
#endif
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

size_t snn_neuron_step_planes(const snn_neuron_params *p, size_t n, const float *x, float *v,
                              int8_t *s, uint64_t *nz, uint64_t *neg) {
    size_t done = 0, nspikes = 0;
#if SNN_HAVE_AVX2_DISPATCH
    if (snn_cpu_avx2()) done = step_avx2(p, n, x, v, s, (uint8_t *)nz, (uint8_t *)neg, &nspikes);
#endif
    nspikes += snn_neuron_step(p, n - done, x + done, v + done, s + done, NULL);
    /* The words the vector kernel did not finish, from the spikes (a word it half wrote is
     * rebuilt whole: its first half of s is written too). */
    for (size_t w = done / 64; w < (n + 63) / 64; w++) {
        uint64_t pos;
        snn_pack_planes(s + 64 * w, n - 64 * w < 64 ? (int)(n - 64 * w) : 64, &pos, &neg[w]);
        nz[w] = pos | neg[w];
    }
    return nspikes;
}

/* pi/2 as SpikingJelly writes it (math.pi / 2 in Python double). */
#define SNN_HALF_PI 1.5707963267948966

float snn_surrogate_grad(snn_surrogate_kind kind, float alpha, float x) {
    switch (kind) {
    case SNN_SURROGATE_SIGMOID: {
        /* SJ: sgax = (x * alpha).sigmoid_(); grad = (1 - sgax) * sgax * alpha. The exp is
         * snn_expf_poly (sim/vexpf.h), which the BPTT rows vectorise with the same bits. */
        const float sgax = 1.0f / (1.0f + snn_expf_poly(-(x * alpha)));
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
        return 1.0f / (1.0f + snn_expf_poly(-(x * alpha)));
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
