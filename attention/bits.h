/* bits.h: bit tricks shared by the spiking kernels (pure numerics). */
#ifndef SNN_BITS_H
#define SNN_BITS_H

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

#endif
