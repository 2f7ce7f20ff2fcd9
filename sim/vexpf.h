/*
 * vexpf.h: snn_expf_poly, a branch-free float exp (Cephes' expf polynomial, within 2 ulp of
 * expf on [-87, 88]) that the compiler vectorises: the sigmoid surrogate gradient (neurons/),
 * where an exactly rounded exp cost an eighth of BPTT, and the softmax attention's rows
 * (attention/softmax.c), where it cost half the kernel. PyTorch's own CPU exp (Sleef) is not
 * exactly rounded either.
 * Always inlined, so each target clone of a caller (sim/vec.h) gets its own vector width; it
 * runs the same IEEE operations in every clone (no FMA: -ffp-contract=off), so scalar and
 * vector code give the same bits.
 * Pure numerics: no I/O, no allocation, no static state.
 */
#ifndef SNN_VEXPF_H
#define SNN_VEXPF_H

#include <stdint.h>
#include <string.h>

#include "sim/vec.h"

/* e^x in float for any x (no branch: selects only). x is clamped to [-87.33, 88.37] (the
 * results there are 2^-126 and 2^127.5: e^x below and above them is not needed by a surrogate,
 * nor by a softmax row, whose sum is >= 1);
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
