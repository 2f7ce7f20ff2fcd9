/*
 * spikebits.h: spikes stored as bits for the backward pass of BPTT (sim/train.c).
 *
 * A spiking population's spikes over [T, n] are kept between the forward and the backward pass
 * as bit planes of uint64 words, bit j of word w holding element 64 w + j of a row:
 *   - binary spikes {0, 1}: one plane, nz (1 bit per spike);
 *   - ternary spikes {-1, 0, +1} (bipolar neurons, BSA's Nq and Nk): nz (S != 0) and neg
 *     (S < 0), 2 bits per spike.
 * Unpacking gives back exactly the floats 0.0f, 1.0f and -1.0f the neurons wrote, so everything
 * computed from the unpacked floats is bit-identical to computing it from the originals.
 * Bits past n in a row's last word are written as 0.
 */
#ifndef SNN_SPIKEBITS_H
#define SNN_SPIKEBITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Words holding n bits. */
static inline size_t snn_bits_words(size_t n) { return (n + 63) / 64; }

/* nz[0, words(n)) = the bits of s[i] != 0; neg (NULL for binary spikes) the bits of s[i] < 0.
 * s holds n spikes in {0, 1} (neg NULL) or {-1, 0, +1}. */
void snn_bits_pack(uint64_t *nz, uint64_t *neg, const float *s, size_t n);

/* s[0, n) = the spikes of nz and neg (neg NULL: binary): 0.0f, 1.0f or -1.0f. */
void snn_bits_unpack(float *s, const uint64_t *nz, const uint64_t *neg, size_t n);

/* Set bits among the first n of nz (nonzero spikes). */
uint64_t snn_bits_count(const uint64_t *nz, size_t n);

#endif
