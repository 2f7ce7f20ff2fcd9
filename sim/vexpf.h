/*
 * vexpf.h: two exponentials.
 *   snn_expf_row: expf over a row of floats, vectorised, with exactly glibc expf's bits (the
 *     softmax attention rows, attention/softmax.c: part of the model's forward).
 *   snn_expf_poly: a branch-free float exp (Cephes' expf polynomial, within 2 ulp of expf on
 *     [-87, 88]) that the compiler vectorises 8 wide: the sigmoid surrogate gradient
 *     (neurons/), a heuristic in itself, where the exact row cost an eighth of BPTT.
 * Always inlined, so each target clone of a caller (sim/vec.h) gets its own vector width; both
 * run the same IEEE operations in every clone (no FMA: -ffp-contract=off), so scalar and vector
 * code give the same bits.
 * Pure numerics: no I/O, no allocation, no static state.
 */
#ifndef SNN_VEXPF_H
#define SNN_VEXPF_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "sim/vec.h"

enum { SNN_EXPF_CHUNK = 256 };

/* out[i] = expf(a[i]) for i < n <= SNN_EXPF_CHUNK, bit for bit, vectorised.
 *
 * For |x| <= 87 (a normal float result) a double approximation y of e^x is formed: x = k ln2 + r
 * with k = round(x / ln2), |r| <= ln2 / 2, e^r by a polynomial of degree 8 (approximation error
 * below 2^-39 relative, rounding a few 2^-53), times 2^k built from the exponent bits; so
 * |y - e^x| < 2^-38 y. Rounding y to float gives the correctly rounded e^x unless e^x lies
 * within that error of a rounding boundary (a midpoint between adjacent floats). The libm expf
 * is itself accurate to well below 2^-31 before its final rounding (glibc documents 1.69 2^-34
 * relative for its double polynomial, 0.502 ulp after rounding), so whenever y is at least
 * 2^-31 y away from every midpoint, y, the libm's internal value and e^x all lie strictly between
 * the same two midpoints and round to the same float: expf's result. The remaining cases (y that
 * close to a midpoint, about 0.4% of them, and |x| > 87) call expf itself. The low 29 bits of the
 * double's significand locate y between two floats; the midpoint is 2^28 there, and 2^22 units
 * of 2^-52 are at least 2^-31 relative. (Checked on every float |x| <= 88 against glibc's
 * expf: identical.) */
static inline __attribute__((always_inline)) SNN_VEC_FN void snn_expf_chunk(size_t n, const float *restrict a, float *restrict out) {
    const double inv_ln2 = 0x1.71547652b82fep0, ln2 = 0x1.62e42fefa39efp-1, shift = 0x1.8p52;
    uint8_t slow[SNN_EXPF_CHUNK] __attribute__((aligned(8)));
    for (size_t i = 0; i < n; i++) {
        const double x = (double)a[i];
        double kd = x * inv_ln2 + shift; /* round(x / ln2) in the low bits */
        uint64_t kb;
        memcpy(&kb, &kd, sizeof kb);
        kd -= shift;
        const double r = x - kd * ln2;
        /* e^r, |r| <= 0.3467: degree-8 Chebyshev fit (relative error 1.1e-12 = 2^-39.8),
         * Estrin's scheme (short dependency chains) */
        const double r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;
        const double p01 = 0x1.0000000000000p+0 + 0x1.ffffffffd36adp-1 * r;
        const double p23 = 0x1.fffffffff7165p-2 + 0x1.555555a29931ep-3 * r;
        const double p45 = 0x1.555555743a253p-5 + 0x1.1110807802124p-7 * r;
        const double p67 = 0x1.6c164dc9135e4p-10 + 0x1.a1aaca0181670p-13 * r;
        const double p = (p01 + p23 * r2) + (p45 + p67 * r2) * r4 + 0x1.a15a8b818f713p-16 * r8;
        const uint64_t sb = (kb - 0x4338000000000000ull + 1023) << 52; /* 2^k */
        double s;
        memcpy(&s, &sb, sizeof s);
        const double y = p * s;
        uint64_t yb;
        memcpy(&yb, &y, sizeof yb);
        const uint32_t low = (uint32_t)yb & 0x1FFFFFFFu;
        slow[i] = (uint8_t)((!(fabs(x) <= 87.0)) |
                            ((uint32_t)(low - (0x10000000u - 0x400000u)) < 0x800000u));
        out[i] = (float)y;
    }
    for (size_t i = n; i < (n + 7) / 8 * 8; i++) slow[i] = 0;
    for (size_t i0 = 0; i0 < n; i0 += 8) {
        uint64_t w;
        memcpy(&w, slow + i0, sizeof w);
        if (!w) continue;
        for (size_t i = i0; i < i0 + 8 && i < n; i++)
            if (slow[i]) out[i] = expf(a[i]);
    }
}

/* out[i] = expf(a[i]) for every i < n (chunks of SNN_EXPF_CHUNK); a and out do not overlap. */
static inline __attribute__((always_inline)) SNN_VEC_FN void snn_expf_row(size_t n,
                                                                          const float *restrict a,
                                                                          float *restrict out) {
    for (size_t i0 = 0; i0 < n; i0 += SNN_EXPF_CHUNK)
        snn_expf_chunk(n - i0 < SNN_EXPF_CHUNK ? n - i0 : SNN_EXPF_CHUNK, a + i0, out + i0);
}

/* e^x in float for any x (no branch: selects only). x is clamped to [-87.33, 88.37] (the
 * results there are 2^-126 and 2^127.5: e^x below and above them is not needed by a surrogate);
 * x = n ln2 + r with n = round(x log2 e) by the 1.5 2^23 shift, ln2 in two parts (Cody-Waite);
 * e^r by Cephes' degree-7 expf polynomial; times 2^n from the exponent bits. */
static inline __attribute__((always_inline)) float snn_expf_poly(float x) {
    x = x < -87.3365447505531f ? -87.3365447505531f : x;
    x = x > 88.3762626647949f ? 88.3762626647949f : x;
    const float shift = 12582912.0f; /* 1.5 2^23: adding it rounds to an integer */
    const float fn = (x * 1.44269504088896341f + shift) - shift;
    float r = x - fn * 0.693359375f;
    r = r - fn * -2.12194440e-4f;
    const float z = r * r;
    float y = 1.9875691500e-4f;
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * z + r + 1.0f;
    const int32_t n = (int32_t)fn;
    const uint32_t bits = (uint32_t)(n + 127) << 23;
    float p2;
    memcpy(&p2, &bits, sizeof p2);
    return y * p2;
}

#endif
