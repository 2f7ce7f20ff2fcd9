/* bits.h: bit tricks shared by the spiking kernels (pure numerics). */
#ifndef SNN_BITS_H
#define SNN_BITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* Population count. Open-coded (SWAR) because the x86-64 baseline has no popcnt instruction and
 * __builtin_popcountll would become a libgcc call in the innermost loop. */
static inline int snn_popcount64(uint64_t w) {
    w = w - ((w >> 1) & 0x5555555555555555ull);
    w = (w & 0x3333333333333333ull) + ((w >> 2) & 0x3333333333333333ull);
    w = (w + (w >> 4)) & 0x0F0F0F0F0F0F0F0Full;
    return (int)((w * 0x0101010101010101ull) >> 56);
}

/* The d bits of a spike row at bit pos of a bit-plane row, bit b in word b / 64 (d <= 64; a
 * field may straddle two words, and the second word is read only then). */
static inline uint64_t snn_bits_field(const uint64_t *row, size_t pos, int d) {
    const size_t w = pos / 64;
    const int sh = (int)(pos % 64);
    uint64_t f = row[w] >> sh;
    if (sh + d > 64) f |= row[w + 1] << (64 - sh);
    return d == 64 ? f : f & ((UINT64_C(1) << d) - 1);
}

/* Population count, hardware when hw: callers instantiate their bodies twice (sim/vec.h
 * SNN_AVX2_FN), with hw = true only inside a function compiled for a POPCNT target, where
 * __builtin_popcountll is one instruction (elsewhere it would be a libgcc call). Same integer. */
static inline __attribute__((always_inline)) int snn_popcount64_sel(uint64_t w, const int hw) {
    return hw ? __builtin_popcountll(w) : snn_popcount64(w);
}

/* Bit planes of a spike row p[0..n), n <= 64: bit c of *pos / *neg set iff p[c] > 0 / p[c] < 0.
 * On x86 sixteen spikes per compare; the portable tail gives the same bits. */
static inline __attribute__((always_inline)) void snn_pack_planes(const int8_t *p, int n,
                                                                  uint64_t *pos, uint64_t *neg) {
    uint64_t wp = 0, wn = 0;
    int c = 0;
#if defined(__SSE2__)
    const __m128i z = _mm_setzero_si128();
    for (; c + 16 <= n; c += 16) {
        const __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(p + c));
        wp |= (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpgt_epi8(x, z)) << c;
        wn |= (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmplt_epi8(x, z)) << c;
    }
#endif
    for (; c < n; c++) {
        wp |= (uint64_t)(p[c] > 0) << c;
        wn |= (uint64_t)(p[c] < 0) << c;
    }
    *pos = wp;
    *neg = wn;
}

/* Bit c set iff p[c] != 0, for c < n <= 64 (the single plane of a binary spike row). */
static inline __attribute__((always_inline)) uint64_t snn_pack_nz(const int8_t *p, int n) {
    uint64_t w = 0;
    int c = 0;
#if defined(__SSE2__)
    const __m128i z = _mm_setzero_si128();
    for (; c + 16 <= n; c += 16) {
        const __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(p + c));
        w |= (uint64_t)(~(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, z)) & 0xFFFFu) << c;
    }
#endif
    for (; c < n; c++) w |= (uint64_t)(p[c] != 0) << c;
    return w;
}

/* Indices of the nonzero entries of x[0..n), ascending, into idx; returns their count. On x86
 * (SSE2 is part of x86-64) sixteen entries are tested at once; the portable loop gives the same
 * list. Always inlined so that callers compiled for several targets get their own copy. */
static inline __attribute__((always_inline)) int snn_nonzero_indices(const float *x, int n,
                                                                     int *idx) {
    int k = 0, i = 0;
#if defined(__SSE2__)
    const __m128 z = _mm_setzero_ps();
    for (; i + 16 <= n; i += 16) {
        unsigned msk = (unsigned)_mm_movemask_ps(_mm_cmpneq_ps(_mm_loadu_ps(x + i), z)) |
                       (unsigned)_mm_movemask_ps(_mm_cmpneq_ps(_mm_loadu_ps(x + i + 4), z)) << 4 |
                       (unsigned)_mm_movemask_ps(_mm_cmpneq_ps(_mm_loadu_ps(x + i + 8), z)) << 8 |
                       (unsigned)_mm_movemask_ps(_mm_cmpneq_ps(_mm_loadu_ps(x + i + 12), z)) << 12;
        while (msk) {
            idx[k++] = i + __builtin_ctz(msk);
            msk &= msk - 1;
        }
    }
#endif
    for (; i < n; i++) {
        idx[k] = i;
        k += x[i] != 0.0f;
    }
    return k;
}

/* Whether every x[i ld + c], i < n, c < d, is 0 or 1, or also -1 when ternary: spikes, which the
 * training kernels' exact integer paths take. */
static inline __attribute__((always_inline)) bool snn_all_spikes(int n, int d, const float *x,
                                                                 int ld, bool ternary) {
    int bad = 0;
    for (int i = 0; i < n; i++) {
        const float *xi = x + (long)i * ld;
        for (int c = 0; c < d; c++)
            bad |= !(xi[c] == 0.0f || xi[c] == 1.0f || (ternary && xi[c] == -1.0f));
    }
    return !bad;
}

#endif
