/*
 * rng.h: counter-based random numbers.
 *
 * Every random number is a pure function of (seed, stream, counter): a neuron, pixel or weight
 * gets the same number whichever thread computes it and in whatever order, so results are
 * byte-identical for any thread count. The mixer is SplitMix64's finaliser applied to a
 * combination of the three keys (a "hash of the counter" generator in the spirit of
 * Random123/Philox, cheap and statistically adequate for initialisation and Bernoulli coding).
 */
#ifndef SNN_RNG_H
#define SNN_RNG_H

#include <math.h>
#include <stdint.h>

static inline uint64_t snn_mix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform 64-bit value for (seed, stream, counter). */
static inline uint64_t snn_rng_u64(uint64_t seed, uint64_t stream, uint64_t counter) {
    return snn_mix64(snn_mix64(snn_mix64(seed) ^ stream) ^ counter);
}

/* Uniform in [0, 1) with 24 random bits (exactly representable as float). */
static inline float snn_rng_uniform(uint64_t seed, uint64_t stream, uint64_t counter) {
    return (float)(snn_rng_u64(seed, stream, counter) >> 40) * (1.0f / 16777216.0f);
}

/* Standard normal by Box-Muller on two counters (2*counter and 2*counter+1). */
static inline double snn_rng_normal(uint64_t seed, uint64_t stream, uint64_t counter) {
    double u1 = ((double)(snn_rng_u64(seed, stream, 2 * counter) >> 11) + 1.0) * 0x1.0p-53;
    double u2 = (double)(snn_rng_u64(seed, stream, 2 * counter + 1) >> 11) * 0x1.0p-53;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* Stable stream id for a name (FNV-1a), e.g. a parameter's checkpoint name. */
static inline uint64_t snn_rng_stream(const char *name) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *name; name++) h = (h ^ (uint8_t)*name) * 0x100000001b3ull;
    return h;
}

#endif
