/*
 * ssa.c: Spikformer's spiking self-attention for one head and one timestep
 * (spec/model.md section 3 `ssa`, research/methods.md section 2.1, op counts section 7.6).
 *
 *   A = Q K^T            integer counts of coincident spikes, A_ij in [0, d]
 *   O = scale * (A V)    A V is an integer matrix, multiplied once by scale (0.125 in Spikformer)
 *
 * This is the CIFAR ("N x N") product order of the official code; with binary Q, K, V and a
 * power-of-two scale the result equals PyTorch's (Q @ K^T * 0.125) @ V exactly, because every
 * intermediate is an integer multiple of 0.125 far below 2^24.
 *
 * Event-driven, bit-parallel: spike rows are packed 64 channels to a uint64 word (bit c set iff
 * the spike is nonzero), so A_ij is a popcount of q_i AND k_j (hardware popcount where the CPU
 * has AVX2 + POPCNT, chosen at run time, four keys per vector; SWAR otherwise), and A V adds
 * A_ij under the channel mask of v_j, 8 channels per vector, skipping A_ij = 0 and silent v_j.
 * The packed words and masks live in small fixed stack tiles, so the kernel needs no scratch
 * beyond `scores` and has no limit on N or d. The integer sums A V are exact in float (asserted: N d < 2^24), so their
 * order (tile by tile) changes no bit.
 *
 * Op counts (spec section 6, exact, from the spikes present):
 *   AC       one per (i, j, c) with q_ic != 0 and k_jc != 0 (a coincidence adds one to A_ij)
 *   INT_ADD  one per (i, j, c) with A_ij != 0 and v_jc != 0 (A_ij is an integer, not a spike)
 *   SHIFT    one per output element (the x0.125 scaling is a shift for a power-of-two scale)
 *
 * Pure numerics: no I/O, no allocation, no static state (called from several OpenMP threads).
 */
#include "attention/attention.h"
#include "attention/bits.h"
#include "sim/vec.h"

#include <string.h>
#if SNN_HAVE_AVX2_DISPATCH
#include <immintrin.h>
#endif

#include "sim/util.h"

/* Keys per stack tile; also the channels per packed word. */
enum { SSA_TILE = 64 };


typedef float ssa_v8f __attribute__((vector_size(32)));
typedef float ssa_v8fu __attribute__((vector_size(32), aligned(4))); /* unaligned access */
typedef uint32_t ssa_v8u __attribute__((vector_size(32)));

#if SNN_HAVE_AVX2_DISPATCH
/* Scores of one query word qb (nonzero) against jn packed keys, four keys per vector:
 * ai[jj] = (first ? 0 : ai[jj]) + popcount(qb & kb[jj]); returns the sum of the popcounts (the
 * ACs). AVX2 has no vector popcount: per-nibble table lookups and byte sums (Mula's method),
 * exact integers like popcnt. */
static SNN_AVX2_FN uint64_t ssa_scores_avx2(int jn, uint64_t qb, const uint64_t *kb, int32_t *ai,
                                            int first) {
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                         0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0f), zero = _mm256_setzero_si256();
    const __m256i vq = _mm256_set1_epi64x((long long)qb);
    const __m256i lo32 = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);  /* low halves of 4 lanes */
    __m256i acc = zero;
    int jj = 0;
    for (; jj + 4 <= jn; jj += 4) {
        const __m256i x = _mm256_and_si256(
            vq, _mm256_loadu_si256((const __m256i *)(const void *)(kb + jj)));
        const __m256i b = _mm256_add_epi8(
            _mm256_shuffle_epi8(lut, _mm256_and_si256(x, low)),
            _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(x, 4), low)));
        const __m256i pc = _mm256_sad_epu8(b, zero);
        const __m128i p32 = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(pc, lo32));
        __m128i *dst = (__m128i *)(void *)(ai + jj);
        _mm_storeu_si128(dst, first ? p32 : _mm_add_epi32(_mm_loadu_si128(dst), p32));
        acc = _mm256_add_epi64(acc, pc);
    }
    uint64_t lanes[4];
    _mm256_storeu_si256((__m256i *)(void *)lanes, acc);
    uint64_t n_ac = lanes[0] + lanes[1] + lanes[2] + lanes[3];
    for (; jj < jn; jj++) {
        const int pc = __builtin_popcountll(qb & kb[jj]);
        ai[jj] = first ? pc : ai[jj] + pc;
        n_ac += (uint64_t)pc;
    }
    return n_ac;
}
#endif

/* The kernel body, instantiated twice (sim/vec.h SNN_AVX2_FN): hw selects the hardware
 * popcount, for the instance compiled for AVX2 + POPCNT. Same integers and floats either way. */
static inline __attribute__((always_inline)) void
ssa_head(int N, int d, const int8_t *q, const int8_t *k, const int8_t *v, int ld, float scale,
         float *o, int ldo, int32_t *scores, snn_ops *ops, const int hw) {
    SNN_ASSERT(d >= 0 && (int64_t)N * d < (1 << 24));
    uint64_t n_ac = 0, n_add = 0;

    /* scores [N, N] row-major: A_ij = popcount(q_i & k_j), summed over 64-channel words. The
     * first word writes every score (a silent query word writes zeros), later words add. */
    for (int c0 = 0; c0 < d; c0 += 64) {
        const int cn = d - c0 < 64 ? d - c0 : 64;
        for (int j0 = 0; j0 < N; j0 += SSA_TILE) {
            const int jn = N - j0 < SSA_TILE ? N - j0 : SSA_TILE;
            uint64_t kb[SSA_TILE];  /* packed k rows j0 .. j0 + jn, channels c0 .. c0 + cn */
            for (int jj = 0; jj < jn; jj++) kb[jj] = snn_pack_nz(k + (long)(j0 + jj) * ld + c0, cn);
            for (int i = 0; i < N; i++) {
                const uint64_t qb = snn_pack_nz(q + (long)i * ld + c0, cn);
                int32_t *ai = scores + (long)i * N + j0;
                if (!qb) {  /* a silent query word contributes no events */
                    if (c0 == 0)
                        for (int jj = 0; jj < jn; jj++) ai[jj] = 0;
                    continue;
                }
#if SNN_HAVE_AVX2_DISPATCH
                if (hw) {
                    n_ac += ssa_scores_avx2(jn, qb, kb, ai, c0 == 0);
                    continue;
                }
#endif
                for (int jj = 0; jj < jn; jj++) {
                    const int pc = snn_popcount64_sel(qb & kb[jj], hw);
                    ai[jj] = c0 == 0 ? pc : ai[jj] + pc;
                    n_ac += (uint64_t)pc;
                }
            }
        }
    }

    /* o [N, d] at row stride ldo: first the integer A V, accumulated exactly in float (integers
     * below 2^24: any order gives the same sums), then one multiply by scale. Per 8 channels,
     * one masked vector add of A_ij per key j; the op count stays one add per (j, c) with
     * A_ij != 0 and v_jc != 0. */
    for (int c0 = 0; c0 < d; c0 += 64) {
        const int cn = d - c0 < 64 ? d - c0 : 64;
        const int G = (cn + 7) / 8;
        for (int j0 = 0; j0 < N; j0 += SSA_TILE) {
            const int jn = N - j0 < SSA_TILE ? N - j0 : SSA_TILE;
            ssa_v8u vm[SSA_TILE * 8];  /* [jn, G] lane c all ones iff v_jc != 0 */
            int vcount[SSA_TILE];
            for (int jj = 0; jj < jn; jj++) {
                const uint64_t w = snn_pack_nz(v + (long)(j0 + jj) * ld + c0, cn);
                vcount[jj] = snn_popcount64_sel(w, hw);
                for (int g = 0; g < G; g++)
                    for (int l = 0; l < 8; l++)
                        vm[jj * G + g][l] = 0u - (uint32_t)((w >> (8 * g + l)) & 1u);
            }
            for (int i = 0; i < N; i++) {
                const int32_t *ai = scores + (long)i * N + j0;
                float acc[64];  /* lanes c0 .. c0 + 8G: this tile's A V, then added to o */
                for (int c = 0; c < 8 * G; c++) acc[c] = 0.0f;
                for (int jj = 0; jj < jn; jj++) {
                    const int32_t a = ai[jj];
                    if (a == 0 || vcount[jj] == 0) continue;
                    n_add += (uint64_t)vcount[jj];
                    const float af = (float)a;
                    uint32_t abits;
                    memcpy(&abits, &af, sizeof abits);
                    const ssa_v8u fa = (ssa_v8u){0} + abits;  /* A_ij in every lane */
                    for (int g = 0; g < G; g++) {
                        ssa_v8fu *ag = (ssa_v8fu *)(acc + 8 * g);
                        *ag += (ssa_v8f)(fa & vm[jj * G + g]);
                    }
                }
                float *oi = o + (long)i * ldo + c0;
                if (j0 == 0)
                    for (int c = 0; c < cn; c++) oi[c] = acc[c];
                else
                    for (int c = 0; c < cn; c++) oi[c] += acc[c];
            }
        }
    }
    for (int i = 0; i < N; i++) {
        float *oi = o + (long)i * ldo;
        for (int c = 0; c < d; c++) oi[c] = scale * oi[c];
    }

    if (ops) {
        ops->n[SNN_OP_AC] += n_ac;
        ops->n[SNN_OP_INT_ADD] += n_add;
        ops->n[SNN_OP_SHIFT] += (uint64_t)N * (uint64_t)d;
    }
}

#if SNN_HAVE_AVX2_DISPATCH
static SNN_AVX2_FN SNN_VEC_FN void ssa_head_avx2(int N, int d, const int8_t *q, const int8_t *k,
                                                 const int8_t *v, int ld, float scale, float *o,
                                                 int ldo, int32_t *scores, snn_ops *ops) {
    ssa_head(N, d, q, k, v, ld, scale, o, ldo, scores, ops, 1);
}
#endif

static SNN_VEC_FN void ssa_head_portable(int N, int d, const int8_t *q, const int8_t *k,
                                         const int8_t *v, int ld, float scale, float *o, int ldo,
                                         int32_t *scores, snn_ops *ops) {
    ssa_head(N, d, q, k, v, ld, scale, o, ldo, scores, ops, 0);
}

void snn_attn_ssa_head(int N, int d, const int8_t *q, const int8_t *k, const int8_t *v, int ld,
                       float scale, float *o, int ldo, int32_t *scores, snn_ops *ops) {
    if (N <= 0) return;
#if SNN_HAVE_AVX2_DISPATCH
    if (snn_cpu_avx2()) {
        ssa_head_avx2(N, d, q, k, v, ld, scale, o, ldo, scores, ops);
        return;
    }
#endif
    ssa_head_portable(N, d, q, k, v, ld, scale, o, ldo, scores, ops);
}
