/*
 * encode.c: input encoders (spec section 2), turning a sample's uint8 pixels into the C*H*W
 * float input of one timestep.
 *
 * Both are pure functions of their arguments so that any thread may encode any
 * (sample, timestep) in any order and get the same bits.
 */
#include "datasets/dataset.h"

#include "sim/rng.h"

/* x = pixel / 255, computed as (float)p / 255.0f: uint8 -> float32, then a float32 division,
 * exactly what the PyTorch reference does (x.float() / 255), so the inputs are bit-identical. */
void snn_encode_direct_pixels(const uint8_t *p, size_t size, float *x) {
    for (size_t k = 0; k < size; k++) x[k] = (float)p[k] / 255.0f;
}

void snn_encode_direct(const snn_dataset *ds, int64_t i, float *x) {
    SNN_ASSERT(ds && x && i >= 0 && i < ds->n);
    size_t size = (size_t)ds->channels * ds->height * ds->width; /* C*H*W */
    snn_encode_direct_pixels(ds->pixels + (size_t)i * size, size, x);
}

/*
 * Bernoulli rate coding. The reproducibility contract (a reference implementation must do
 * exactly this to get the same spikes):
 *
 *   size    = C * H * W
 *   stream  = snn_rng_stream("rate") ^ (uint64)file_index * 0x9E3779B97F4A7C15   (mod 2^64)
 *   counter = (uint64)t * size + k            for pixel k in [0, size) of the sample
 *   u24     = snn_rng_u64(seed, stream, counter) >> 40                 (24 random bits)
 *   x[k]    = 1.0f if u24 * 255 < pixel * 2^24 else 0.0f              (64-bit integers)
 *
 * file_index is ds->index[i], the sample's position in its source file, so a sample's spikes
 * do not change when the dataset is shuffled or limited. The integer test is exactly
 * "u24 / 2^24 < pixel / 255" with no rounding anywhere; it equals
 * snn_rng_uniform(seed, stream, counter) < pixel / 255.0 evaluated in double (p / 255 is
 * never within 1e-10 of a multiple of 2^-24 except at 0 and 1). Pixel 0 never fires and
 * pixel 255 always fires.
 */
void snn_encode_rate(const snn_dataset *ds, int64_t i, int t, uint64_t seed, float *x) {
    SNN_ASSERT(ds && x && i >= 0 && i < ds->n && t >= 0);
    size_t size = (size_t)ds->channels * ds->height * ds->width; /* C*H*W */
    snn_encode_rate_pixels(ds->pixels + (size_t)i * size, size, ds->index[i], t, seed, x);
}

void snn_encode_rate_pixels(const uint8_t *p, size_t size, int64_t file_index, int t,
                            uint64_t seed, float *x) {
    SNN_ASSERT(p && x && t >= 0);
    uint64_t stream = snn_rng_stream("rate") ^ ((uint64_t)file_index * 0x9E3779B97F4A7C15ull);
    uint64_t base = (uint64_t)t * size;
    for (size_t k = 0; k < size; k++) {
        uint64_t u24 = snn_rng_u64(seed, stream, base + k) >> 40;
        x[k] = u24 * 255u < (uint64_t)p[k] << 24 ? 1.0f : 0.0f;
    }
}
