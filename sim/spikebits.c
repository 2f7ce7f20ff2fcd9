/*
 * spikebits.c: packing and unpacking spike bit planes (spikebits.h).
 *
 * Each word is built or read as two 32-bit halves with fixed 32-iteration loops (compare or
 * select, shift by the lane index, OR reduction), which gcc vectorises: AVX2 variable shifts in
 * the target_clones variant. Only comparisons and exact small integers are involved, so every
 * variant gives the same bits.
 */
#include "sim/spikebits.h"

#include "sim/util.h"
#include "sim/vec.h"

static inline uint32_t pack32_nz(const float *s) {
    uint32_t w = 0;
    for (uint32_t j = 0; j < 32; j++) w |= (uint32_t)(s[j] != 0.0f) << j;
    return w;
}

static inline uint32_t pack32_neg(const float *s) {
    uint32_t w = 0;
    for (uint32_t j = 0; j < 32; j++) w |= (uint32_t)(s[j] < 0.0f) << j;
    return w;
}

SNN_WIDE_FN SNN_VEC_FN void snn_bits_pack(uint64_t *nz, uint64_t *neg, const float *s, size_t n) {
    const size_t full = n / 64;
    for (size_t w = 0; w < full; w++) {
        const float *sw = s + 64 * w;
        nz[w] = (uint64_t)pack32_nz(sw) | (uint64_t)pack32_nz(sw + 32) << 32;
        if (neg) neg[w] = (uint64_t)pack32_neg(sw) | (uint64_t)pack32_neg(sw + 32) << 32;
    }
    if (n % 64) {
        const float *sw = s + 64 * full;
        uint64_t a = 0, b = 0;
        for (size_t j = 0; j < n % 64; j++) {
            a |= (uint64_t)(sw[j] != 0.0f) << j;
            b |= (uint64_t)(sw[j] < 0.0f) << j;
        }
        nz[full] = a;
        if (neg) neg[full] = b;
    }
}

/* 32 spikes of one half word: the nz bit as 0 or 1, negated where the neg bit is set. */
static inline void unpack32(float *s, uint32_t nz, uint32_t neg) {
    for (uint32_t j = 0; j < 32; j++) {
        const int32_t v = (int32_t)((nz >> j) & 1u) - 2 * (int32_t)((neg >> j) & 1u);
        s[j] = (float)v;
    }
}

SNN_WIDE_FN SNN_VEC_FN void snn_bits_unpack(float *s, const uint64_t *nz, const uint64_t *neg,
                                            size_t n) {
    const size_t full = n / 64;
    for (size_t w = 0; w < full; w++) {
        const uint64_t a = nz[w], b = neg ? neg[w] : 0;
        unpack32(s + 64 * w, (uint32_t)a, (uint32_t)b);
        unpack32(s + 64 * w + 32, (uint32_t)(a >> 32), (uint32_t)(b >> 32));
    }
    if (n % 64) {
        const uint64_t a = nz[full], b = neg ? neg[full] : 0;
        for (size_t j = 0; j < n % 64; j++)
            s[64 * full + j] = (float)((int32_t)((a >> j) & 1u) - 2 * (int32_t)((b >> j) & 1u));
    }
}

uint64_t snn_bits_count(const uint64_t *nz, size_t n) {
    uint64_t c = 0;
    for (size_t w = 0; w < n / 64; w++) c += (uint64_t)__builtin_popcountll(nz[w]);
    if (n % 64) c += (uint64_t)__builtin_popcountll(nz[n / 64] & ((UINT64_C(1) << (n % 64)) - 1));
    return c;
}
