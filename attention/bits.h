/* bits.h: bit tricks shared by the bit-packed spiking kernels (pure numerics). */
#ifndef SNN_BITS_H
#define SNN_BITS_H

#include <stdint.h>

/* Population count. Open-coded (SWAR) because the x86-64 baseline has no popcnt instruction and
 * __builtin_popcountll would become a libgcc call in the innermost loop. */
static inline int snn_popcount64(uint64_t w) {
    w = w - ((w >> 1) & 0x5555555555555555ull);
    w = (w & 0x3333333333333333ull) + ((w >> 2) & 0x3333333333333333ull);
    w = (w + (w >> 4)) & 0x0F0F0F0F0F0F0F0Full;
    return (int)((w * 0x0101010101010101ull) >> 56);
}

#endif
