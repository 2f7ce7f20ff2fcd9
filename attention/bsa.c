/*
 * bsa.c: bipolar spiking self-attention for one head and one timestep
 * (spec/model.md section 3 `bsa`, research/methods.md section 3.3 [PROPOSED], op counts 7.6).
 *
 *   A = Q K^T                 ternary q, k: each coincidence adds +1 (homopolar) or -1
 *                             (heteropolar); integers in [-d, d]
 *   P = Shiftmax_rows(A)      shiftmax.c; every P_ij is a power of two 2^e_ij
 *   O = P V                   binary V: O_ic = sum_j 2^e_ij v_jc, a shift-and-add
 *
 * O is the exact sum rounded once to float. The partial sums are sums of powers of two whose
 * exponents span at most (m - min z) + log2 N bits, so they are exact for the score ranges BSA
 * produces (see shiftmax.c), and the float result is the correctly rounded exact value, whatever
 * order a reference sums in. Rows whose span fits 31 bits sum in uint32 (all channels of a key
 * at once, masked vector adds); wider rows accumulate in double in j order over the set bits.
 *
 * Event-driven, bit-parallel: each ternary row is packed into two uint64 words per 64 channels
 * (bit c of pos/neg set iff the spike is +1/-1). With nz = the pair's common nonzero channels
 * and same = the homopolar ones, A_ij = 2 popcount(same) - popcount(nz) and the AC count is
 * popcount(nz). Chosen at run time (sim/vec.h): where the CPU has AVX-512's vector popcounts
 * (VPOPCNTDQ, BITALG), eight keys per vector, thirty-two when d <= 16; else where it has AVX2
 * and POPCNT, four keys per vector (sixteen when d <= 16) with table-lookup popcounts; the
 * portable instance (SWAR popcount) computes the same integers (make isa-test runs all three).
 *
 * Op counts (spec section 6, exact):
 *   AC       one per (i, j, c) with q_ic != 0 and k_jc != 0 (an add or a subtract)
 *   CMP      N * N   (row maxima)
 *   SHIFT    2 N * N (2^(z - m) and the normalising shift by r)
 *   INT_ADD  N * N (row sums of 2^(z - m)) + one per (i, j, c) with v_jc != 0, i.e. N * nnz(V)
 *
 * Pure numerics: no I/O, no allocation, no static state (called from several OpenMP threads).
 */
#include "attention/attention.h"
#include "attention/bits.h"
#include "sim/vec.h"

#include <math.h>
#include <string.h>
#if SNN_HAVE_AVX2_DISPATCH
#include <immintrin.h>
#endif

/* Keys per stack tile for Q K^T; also the channels per packed word. */
enum { BSA_TILE = 64 };
/* P V walks j in order for each (i, c) and so wants every packed v_j at once: up to this many
 * keys are packed once on the stack (32 KiB); longer sequences repack v_j on the fly (same
 * result, more work). */
enum { BSA_VPACK_MAX = 4096 };


/* Exact 2^t as a double, by building the IEEE-754 binary64 bit pattern (cheaper than ldexp in
 * the inner loop); ldexp handles the subnormal and overflow ranges. */
_Static_assert(sizeof(double) == sizeof(uint64_t), "binary64 double expected");
static inline double pow2i(int32_t t) {
    if (t < -1022 || t > 1023) return ldexp(1.0, t);
    const uint64_t bits = (uint64_t)(t + 1023) << 52;
    double x;
    memcpy(&x, &bits, sizeof x);
    return x;
}

/* P V in integers, up to BSA_PV_MAX keys: with a table of the keys' channel masks, N G vectors
 * of 8 lanes (G = 2, 4, 8 for up to 16, 32, 64 channels), where it fits BSA_PV_MASKS (64 KiB of
 * stack: d = 16 up to N = 1024, d = 64 up to N = 256), else with each mask made from the packed
 * row as it is used (a per-lane shift of its bits). */
enum { BSA_PV_MAX = 4096, BSA_PV_MASKS = 2048 };

/* Mask vectors per key for a block of cn <= 64 channels. */
static inline int bsa_pv_groups(int cn) { return cn <= 16 ? 2 : cn <= 32 ? 4 : 8; }
typedef uint32_t bsa_v8u __attribute__((vector_size(32)));
typedef int32_t bsa_v8i __attribute__((vector_size(32)));
typedef float bsa_v8f __attribute__((vector_size(32)));
typedef float bsa_v8fu __attribute__((vector_size(32), aligned(4))); /* unaligned access */
typedef int32_t bsa_v8iu __attribute__((vector_size(32), aligned(4)));

/* (float)(a 2^-E) per lane, correctly rounded, for E <= 31: the high and low 16 bits convert
 * exactly, hi 2^16 is exact, so the add rounds once; scaling by 2^-E is exact (the result is
 * >= 2^-31, a normal float). The same float as (float)((double)a * 2^-E), without the
 * unsigned-to-double sequence, in registers. A macro: a function returning a 32-byte vector
 * would change the ABI of the portable instance. */
#define BSA_U32_SCALED(a, scale)                                                           \
    ((__builtin_convertvector((bsa_v8i)((a) >> 16), bsa_v8f) * 65536.0f +                     \
      __builtin_convertvector((bsa_v8i)((a) & 0xFFFFu), bsa_v8f)) * (scale))

/* Row i of O = P V in 32-bit integers: with E = -min_j e_ij, every P_ij 2^E = 2^(e_ij + E) is an
 * integer, and when E + ceil(log2 N) <= 31 the sums over j fit uint32 exactly. The double sums
 * of the general path are exact too (sums of powers of two with exponents in [-E, 0], at most
 * N terms: E + log2 N bits < 53), so (float)(acc 2^-E) is the same float. Integer sums do not
 * depend on order, so all channels of a key are added at once: one vector add per 8 channels
 * and key (G vectors: channels 0 .. 8G, masked by vm). Returns 0 (o untouched) when the row is
 * too wide. */
static inline __attribute__((always_inline)) void
bsa_pv_accumulate(int N, const uint32_t *pj, int E, const bsa_v8u *vm, const uint64_t *vb,
                  const int G, int cn, float *oi, bool wide);

static inline __attribute__((always_inline)) int
bsa_pv_row_int(int N, const int32_t *ei, const bsa_v8u *vm, const uint64_t *vb, const int G,
               int cn, float *oi, bool wide) {
    int32_t emin = 0;
    for (int j = 0; j < N; j++) emin = ei[j] < emin ? ei[j] : emin;
    const int lg = N > 1 ? 32 - __builtin_clz((unsigned)(N - 1)) : 0;  /* ceil(log2 N) */
    if (-(int64_t)emin + lg > 31) return 0;
    const int E = -emin;
    uint32_t pj[BSA_PV_MAX];  /* [N] P_ij 2^E */
    for (int j = 0; j < N; j++) pj[j] = (uint32_t)1 << (ei[j] + E);
    bsa_pv_accumulate(N, pj, E, vm, vb, G, cn, oi, wide);
    return 1;
}

/* o_i[c] = (float)(2^-E sum_j pj[j] v_jc) for c < cn: the integer sums of bsa_pv_row_int. wide:
 * the AVX-512 instance (16 lanes; elsewhere gcc would split them through the stack). The masks
 * of key j: vm[j G .. j G + G) (bits false), or lane c all ones iff bit c of vb[j] (bits true):
 * the same masks, so the same sums. */
static inline __attribute__((always_inline)) void
bsa_pv_sums(int N, const uint32_t *pj, const bsa_v8u *vm, const uint64_t *vb, const int G,
            bool wide, const bool bits, bsa_v8u acc[8]) {
    bsa_v8u a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, a4 = {0}, a5 = {0}, a6 = {0}, a7 = {0};
    const bsa_v8i lane8 = {0, 1, 2, 3, 4, 5, 6, 7};
    if (G == 2 && wide) {
        /* 16 channels: a key's two mask vectors as one of 16 lanes (one AVX-512 register), keys
         * alternating between two sums (integers: any order gives the same sums) */
        typedef uint32_t v16u __attribute__((vector_size(64), aligned(32)));
        typedef int32_t v16i __attribute__((vector_size(64)));
        const v16i lane16 = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
        const v16u *m16 = (const v16u *)(const void *)vm;
#define BSA_M16(j)                                                                               \
    (bits ? (v16u)(-((((v16i){0} + (int32_t)(vb[j] & 0xFFFFu)) >> lane16) & 1)) : m16[j])
        v16u s0 = {0}, s1 = {0};
        int j = 0;
        for (; j + 2 <= N; j += 2) {
            s0 += ((v16u){0} + pj[j]) & BSA_M16(j);
            s1 += ((v16u){0} + pj[j + 1]) & BSA_M16(j + 1);
        }
        if (j < N) s0 += ((v16u){0} + pj[j]) & BSA_M16(j);
#undef BSA_M16
        const v16u sum = s0 + s1;
        a0 = __builtin_shufflevector(sum, sum, 0, 1, 2, 3, 4, 5, 6, 7);
        a1 = __builtin_shufflevector(sum, sum, 8, 9, 10, 11, 12, 13, 14, 15);
    } else
#pragma GCC unroll 4
    for (int j = 0; j < N; j++) {
        const bsa_v8u t = (bsa_v8u){0} + pj[j];
        const bsa_v8u *m = bits ? NULL : vm + (long)j * G; /* vm is NULL with bits */
#define BSA_M8(g)                                                                                \
    (bits ? (bsa_v8u)(-((((bsa_v8i){0} + (int32_t)(vb[j] >> (8 * (g)) & 0xFFu)) >> lane8) & 1))  \
          : m[g])
        a0 += t & BSA_M8(0);
        a1 += t & BSA_M8(1);
        if (G > 2) {
            a2 += t & BSA_M8(2);
            a3 += t & BSA_M8(3);
        }
        if (G > 4) {
            a4 += t & BSA_M8(4);
            a5 += t & BSA_M8(5);
            a6 += t & BSA_M8(6);
            a7 += t & BSA_M8(7);
        }
#undef BSA_M8
    }
    acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3;
    acc[4] = a4, acc[5] = a5, acc[6] = a6, acc[7] = a7;
}

static inline __attribute__((always_inline)) void
bsa_pv_accumulate(int N, const uint32_t *pj, int E, const bsa_v8u *vm, const uint64_t *vb,
                  const int G, int cn, float *oi, bool wide) {
    bsa_v8u acc[8];
    if (vm)
        bsa_pv_sums(N, pj, vm, vb, G, wide, false, acc);
    else
        bsa_pv_sums(N, pj, vm, vb, G, wide, true, acc);
    const bsa_v8u a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    const bsa_v8u a4 = acc[4], a5 = acc[5], a6 = acc[6], a7 = acc[7];
    const uint32_t sb = (uint32_t)(127 - E) << 23;  /* 2^-E, a normal float (E <= 31) */
    float scale;
    memcpy(&scale, &sb, sizeof scale);
    float tmp[64];  /* lanes past cn must not reach oi (the next head's channels) */
    bsa_v8fu *dst = cn == 8 * G ? (bsa_v8fu *)oi : (bsa_v8fu *)tmp;
    dst[0] = BSA_U32_SCALED(a0, scale), dst[1] = BSA_U32_SCALED(a1, scale);
    if (G > 2) dst[2] = BSA_U32_SCALED(a2, scale), dst[3] = BSA_U32_SCALED(a3, scale);
    if (G > 4) {
        dst[4] = BSA_U32_SCALED(a4, scale), dst[5] = BSA_U32_SCALED(a5, scale);
        dst[6] = BSA_U32_SCALED(a6, scale), dst[7] = BSA_U32_SCALED(a7, scale);
    }
    if (cn != 8 * G) memcpy(oi, tmp, (size_t)cn * sizeof *oi);
}

#if SNN_HAVE_AVX2_DISPATCH
/* Byte popcounts of a query's coincidences with 32 bytes of key planes at kp, kn, kz (the
 * query's planes broadcast in vqp, vqn; vqz = vqp | vqn): *bnz counts the common nonzero
 * channels (the ACs), *bsm the homopolar ones. AVX2 has no vector popcount: per-nibble table
 * lookups (Mula's method), exact integers like popcnt. Both score kernels sum these bytes per
 * key. */
static inline __attribute__((always_inline)) SNN_AVX2_FN void
bsa_coincidence_bytes(__m256i vqp, __m256i vqn, __m256i vqz, const void *kp, const void *kn,
                      const void *kz, __m256i *bnz, __m256i *bsm) {
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                         0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0f);
    const __m256i p = _mm256_loadu_si256((const __m256i *)kp);
    const __m256i n = _mm256_loadu_si256((const __m256i *)kn);
    const __m256i z = _mm256_loadu_si256((const __m256i *)kz);
    const __m256i nz = _mm256_and_si256(vqz, z);
    const __m256i same = _mm256_or_si256(_mm256_and_si256(vqp, p), _mm256_and_si256(vqn, n));
    *bnz = _mm256_add_epi8(_mm256_shuffle_epi8(lut, _mm256_and_si256(nz, low)),
                           _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(nz, 4), low)));
    *bsm = _mm256_add_epi8(_mm256_shuffle_epi8(lut, _mm256_and_si256(same, low)),
                           _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(same, 4), low)));
}

/* Scores of one query word (planes qp, qn; nonzero qz) against jn packed keys, four keys per
 * vector: ai[jj] = (first ? 0 : ai[jj]) + 2 popcount(same) - popcount(nz) as in the scalar loop;
 * returns the sum of popcount(nz) (the ACs): the coincidence bytes summed per 64-bit lane. */
static SNN_AVX2_FN uint64_t bsa_scores_avx2(int jn, uint64_t qp, uint64_t qn, const uint64_t *kp,
                                            const uint64_t *kn, const uint64_t *kz, int32_t *ai,
                                            int first) {
    const __m256i zero = _mm256_setzero_si256();
    const __m256i vqp = _mm256_set1_epi64x((long long)qp), vqn = _mm256_set1_epi64x((long long)qn);
    const __m256i vqz = _mm256_or_si256(vqp, vqn);
    const __m256i lo32 = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);  /* low halves of 4 lanes */
    __m256i acc = zero;
    int jj = 0;
    for (; jj + 4 <= jn; jj += 4) {
        __m256i bnz, bsm;
        bsa_coincidence_bytes(vqp, vqn, vqz, kp + jj, kn + jj, kz + jj, &bnz, &bsm);
        const __m256i pn = _mm256_sad_epu8(bnz, zero), ps = _mm256_sad_epu8(bsm, zero);
        const __m256i a = _mm256_sub_epi64(_mm256_add_epi64(ps, ps), pn);
        const __m128i a32 = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(a, lo32));
        __m128i *dst = (__m128i *)(void *)(ai + jj);
        _mm_storeu_si128(dst, first ? a32 : _mm_add_epi32(_mm_loadu_si128(dst), a32));
        acc = _mm256_add_epi64(acc, pn);
    }
    uint64_t lanes[4];
    _mm256_storeu_si256((__m256i *)(void *)lanes, acc);
    uint64_t n_ac = lanes[0] + lanes[1] + lanes[2] + lanes[3];
    for (; jj < jn; jj++) {
        const uint64_t nz = (qp | qn) & kz[jj];
        const uint64_t same = (qp & kp[jj]) | (qn & kn[jj]);
        const int pn = __builtin_popcountll(nz);
        const int32_t a = 2 * __builtin_popcountll(same) - pn;
        ai[jj] = first ? a : ai[jj] + a;
        n_ac += (uint64_t)pn;
    }
    return n_ac;
}
#endif

#if SNN_HAVE_AVX2_DISPATCH
/* Scores of a query of d <= 16 channels against jn keys, sixteen keys per vector: the planes are
 * 16-bit words (kp16, kn16, kz16), the byte popcounts of the same table are summed in pairs
 * into 16-bit lanes (maddubs), and ai[jj] = 2 popcount(same) - popcount(nz) is widened to 32
 * bits. Returns the sum of popcount(nz) (the ACs). The same integers as bsa_scores_avx2, four
 * times the keys per instruction at the head width of the bench and Fashion-MNIST models. */
static SNN_AVX2_FN uint64_t bsa_scores16_avx2(int jn, uint16_t qp, uint16_t qn,
                                              const uint16_t *kp, const uint16_t *kn,
                                              const uint16_t *kz, int32_t *ai) {
    const __m256i ones8 = _mm256_set1_epi8(1);
    const __m256i vqp = _mm256_set1_epi16((short)qp), vqn = _mm256_set1_epi16((short)qn);
    const __m256i vqz = _mm256_or_si256(vqp, vqn);
    __m256i acc = _mm256_setzero_si256();  /* 16-bit lanes: at most 16 per key, 4 keys a lane */
    int jj = 0;
    for (; jj + 16 <= jn; jj += 16) {
        __m256i bnz, bsm;
        bsa_coincidence_bytes(vqp, vqn, vqz, kp + jj, kn + jj, kz + jj, &bnz, &bsm);
        const __m256i pn = _mm256_maddubs_epi16(bnz, ones8), ps = _mm256_maddubs_epi16(bsm, ones8);
        const __m256i a = _mm256_sub_epi16(_mm256_add_epi16(ps, ps), pn);
        _mm256_storeu_si256((__m256i *)(void *)(ai + jj),
                            _mm256_cvtepi16_epi32(_mm256_castsi256_si128(a)));
        _mm256_storeu_si256((__m256i *)(void *)(ai + jj + 8),
                            _mm256_cvtepi16_epi32(_mm256_extracti128_si256(a, 1)));
        acc = _mm256_add_epi16(acc, pn);
    }
    uint32_t lanes[8];
    _mm256_storeu_si256((__m256i *)(void *)lanes, _mm256_madd_epi16(acc, _mm256_set1_epi16(1)));
    uint64_t n_ac = 0;
    for (int l = 0; l < 8; l++) n_ac += lanes[l];
    for (; jj < jn; jj++) {
        const int pn = __builtin_popcount((unsigned)((qp | qn) & kz[jj]));
        ai[jj] = 2 * __builtin_popcount((unsigned)((qp & kp[jj]) | (qn & kn[jj]))) - pn;
        n_ac += (uint64_t)pn;
    }
    return n_ac;
}
#endif

#if SNN_HAVE_AVX512_DISPATCH
/* bsa_scores_avx2 with AVX-512's vector popcount of 64-bit lanes (VPOPCNTDQ): eight keys per
 * vector, the last partial vector under a mask (masked-off keys load as zeros and store
 * nothing). The same integers. */
static SNN_AVX512_FN uint64_t bsa_scores_avx512(int jn, uint64_t qp, uint64_t qn,
                                                const uint64_t *kp, const uint64_t *kn,
                                                const uint64_t *kz, int32_t *ai, int first) {
    const __m512i vqp = _mm512_set1_epi64((long long)qp), vqn = _mm512_set1_epi64((long long)qn);
    const __m512i vqz = _mm512_or_si512(vqp, vqn);
    __m512i acc = _mm512_setzero_si512();
    for (int jj = 0; jj < jn; jj += 8) {
        const __mmask8 m = jn - jj >= 8 ? (__mmask8)0xff : (__mmask8)((1u << (jn - jj)) - 1);
        const __m512i p = _mm512_maskz_loadu_epi64(m, kp + jj);
        const __m512i n = _mm512_maskz_loadu_epi64(m, kn + jj);
        const __m512i z = _mm512_maskz_loadu_epi64(m, kz + jj);
        const __m512i pn = _mm512_popcnt_epi64(_mm512_and_si512(vqz, z));
        const __m512i ps = _mm512_popcnt_epi64(
            _mm512_or_si512(_mm512_and_si512(vqp, p), _mm512_and_si512(vqn, n)));
        __m256i a = _mm512_cvtepi64_epi32(_mm512_sub_epi64(_mm512_add_epi64(ps, ps), pn));
        if (!first) a = _mm256_add_epi32(a, _mm256_maskz_loadu_epi32(m, ai + jj));
        _mm256_mask_storeu_epi32(ai + jj, m, a);
        acc = _mm512_add_epi64(acc, pn);
    }
    return (uint64_t)_mm512_reduce_add_epi64(acc);
}

/* bsa_scores16_avx2 with AVX-512's popcount of 16-bit lanes (BITALG): thirty-two keys per
 * vector, the last partial vector under a mask. The same integers. */
static SNN_AVX512_FN uint64_t bsa_scores16_avx512(int jn, uint16_t qp, uint16_t qn,
                                                  const uint16_t *kp, const uint16_t *kn,
                                                  const uint16_t *kz, int32_t *ai) {
    const __m512i vqp = _mm512_set1_epi16((short)qp), vqn = _mm512_set1_epi16((short)qn);
    const __m512i vqz = _mm512_or_si512(vqp, vqn);
    __m512i acc = _mm512_setzero_si512(); /* 16-bit lanes: at most 16 per key, 2 keys a lane */
    for (int jj = 0; jj < jn; jj += 32) {
        const int r = jn - jj;
        const __mmask32 m = r >= 32 ? (__mmask32)0xffffffffu : (__mmask32)((1u << r) - 1);
        const __m512i p = _mm512_maskz_loadu_epi16(m, kp + jj);
        const __m512i n = _mm512_maskz_loadu_epi16(m, kn + jj);
        const __m512i z = _mm512_maskz_loadu_epi16(m, kz + jj);
        const __m512i pn = _mm512_popcnt_epi16(_mm512_and_si512(vqz, z));
        const __m512i ps = _mm512_popcnt_epi16(
            _mm512_or_si512(_mm512_and_si512(vqp, p), _mm512_and_si512(vqn, n)));
        const __m512i a = _mm512_sub_epi16(_mm512_add_epi16(ps, ps), pn);
        _mm512_mask_storeu_epi32(ai + jj, (__mmask16)m,
                                 _mm512_cvtepi16_epi32(_mm512_castsi512_si256(a)));
        _mm512_mask_storeu_epi32(ai + jj + 16, (__mmask16)(m >> 16),
                                 _mm512_cvtepi16_epi32(_mm512_extracti64x4_epi64(a, 1)));
        acc = _mm512_add_epi16(acc, pn);
    }
    return (uint64_t)_mm512_reduce_add_epi32(_mm512_madd_epi16(acc, _mm512_set1_epi16(1)));
}
#endif

/* The kernel body, instantiated once per instruction set (sim/vec.h SNN_AVX2_FN, SNN_AVX512_FN):
 * hw selects the hardware popcount (1: AVX2 + POPCNT, 2: and AVX-512's vector popcounts).
 * Same integers whichever. */
static inline __attribute__((always_inline)) void
bsa_head(int N, int d, const int8_t *q, const int8_t *k, const int8_t *v, int ld, int shift,
         snn_shiftmax_round mode, float *o, int ldo, int32_t *scores, snn_ops *ops, const int hw) {
    uint64_t n_ac = 0;

    /* scores [N, N] row-major: A_ij = sum_c q_ic k_jc over 64-channel words. The first word
     * writes every score (a silent query word writes a row of zeros), later words add. */
    for (int c0 = 0; c0 < d; c0 += 64) {
        const int cn = d - c0 < 64 ? d - c0 : 64;
        for (int j0 = 0; j0 < N; j0 += BSA_TILE) {
            const int jn = N - j0 < BSA_TILE ? N - j0 : BSA_TILE;
            uint64_t kp[BSA_TILE], kn[BSA_TILE], kz[BSA_TILE];  /* k rows j0 .. j0 + jn: planes */
            for (int jj = 0; jj < jn; jj++) {
                snn_pack_planes(k + (long)(j0 + jj) * ld + c0, cn, &kp[jj], &kn[jj]);
                kz[jj] = kp[jj] | kn[jj];
            }
#if SNN_HAVE_AVX2_DISPATCH
            uint16_t kp16[BSA_TILE], kn16[BSA_TILE], kz16[BSA_TILE];  /* the same, d <= 16 */
            const int narrow = hw && d <= 16;
            if (narrow)
                for (int jj = 0; jj < jn; jj++) {
                    kp16[jj] = (uint16_t)kp[jj];
                    kn16[jj] = (uint16_t)kn[jj];
                    kz16[jj] = (uint16_t)kz[jj];
                }
#endif
            for (int i = 0; i < N; i++) {
                uint64_t qp, qn;
                snn_pack_planes(q + (long)i * ld + c0, cn, &qp, &qn);
                const uint64_t qz = qp | qn;
                int32_t *ai = scores + (long)i * N + j0;
                if (!qz) {  /* a silent query word contributes no events */
                    if (c0 == 0) {
                        /* vector stores: the memset gcc makes of a scalar loop is a slow
                         * rep stos at these lengths */
                        int jj = 0;
                        for (; jj + 8 <= jn; jj += 8) *(bsa_v8iu *)(ai + jj) = (bsa_v8i){0};
                        for (; jj < jn; jj++) ai[jj] = 0;
                    }
                    continue;
                }
#if SNN_HAVE_AVX2_DISPATCH
#if SNN_HAVE_AVX512_DISPATCH
                if (hw == 2 && narrow) {
                    n_ac += bsa_scores16_avx512(jn, (uint16_t)qp, (uint16_t)qn, kp16, kn16, kz16,
                                                ai);
                    continue;
                }
                if (hw == 2) {
                    n_ac += bsa_scores_avx512(jn, qp, qn, kp, kn, kz, ai, c0 == 0);
                    continue;
                }
#endif
                if (narrow) {  /* d <= 16: one word, c0 == 0 */
                    n_ac += bsa_scores16_avx2(jn, (uint16_t)qp, (uint16_t)qn, kp16, kn16, kz16, ai);
                    continue;
                }
                if (hw) {
                    n_ac += bsa_scores_avx2(jn, qp, qn, kp, kn, kz, ai, c0 == 0);
                    continue;
                }
#endif
                for (int jj = 0; jj < jn; jj++) {
                    const uint64_t nz = qz & kz[jj];
                    const uint64_t same = (qp & kp[jj]) | (qn & kn[jj]);
                    const int pn = snn_popcount64_sel(nz, hw);
                    const int32_t a = 2 * snn_popcount64_sel(same, hw) - pn;
                    ai[jj] = c0 == 0 ? a : ai[jj] + a;
                    n_ac += (uint64_t)pn;
                }
            }
        }
    }

    /* Shiftmax per row, in place: scores row i now holds the exponents e_ij (all <= 0). With one
     * channel word (d <= 64) and the integer P V path available, it runs row by row inside the
     * P V loop instead, which then takes the row's integer probabilities from it directly. */
    const int fused = d <= 64 && N <= BSA_VPACK_MAX && N <= BSA_PV_MAX;
    if (!fused)
        for (int i = 0; i < N; i++) {
            int32_t *ai = scores + (long)i * N;
            (void)snn_shiftmax_row(N, ai, shift, mode, ai);
        }

    /* o [N, d] at row stride ldo: O_ic = sum_j 2^e_ij v_jc, double accumulators in j order
     * (skipping v_jc = 0 skips additions of +0.0, which change nothing). */
    uint64_t nnz_v = 0;
    const int cached = N <= BSA_VPACK_MAX;
    for (int c0 = 0; c0 < d; c0 += 64) {
        const int cn = d - c0 < 64 ? d - c0 : 64;
        uint64_t vb[BSA_VPACK_MAX];  /* packed v rows 0 .. N, channels c0 .. c0 + cn */
        if (cached) {
            for (int j = 0; j < N; j++) {
                vb[j] = snn_pack_nz(v + (long)j * ld + c0, cn);
                nnz_v += (uint64_t)snn_popcount64_sel(vb[j], hw);
            }
        } else {
            for (int j = 0; j < N; j++)
                nnz_v += (uint64_t)snn_popcount64_sel(snn_pack_nz(v + (long)j * ld + c0, cn), hw);
        }
        /* Channel masks of the packed v rows for the integer path: vm [N, G] vectors of 8
         * lanes, lane c all ones iff v_jc != 0 (lanes past cn stay 0). */
        const int G = bsa_pv_groups(cn);
        const int int_path = cached && N <= BSA_PV_MAX;
        bsa_v8u vm[BSA_PV_MASKS];
        const bsa_v8u *vmask = N * G <= BSA_PV_MASKS ? vm : NULL; /* else masks from vb */
        if (int_path && vmask)
            for (int j = 0; j < N; j++)
                for (int g = 0; g < G; g++)
                    for (int l = 0; l < 8; l++)
                        vm[j * G + g][l] = 0u - (uint32_t)((vb[j] >> (8 * g + l)) & 1u);
        for (int i = 0; i < N; i++) {
            int32_t *ei = scores + (long)i * N;
            float *oi = o + (long)i * ldo + c0;
            if (fused) {
                uint32_t pj[BSA_PV_MAX];  /* [N] P_ij 2^E */
                int E;
                if (snn_shiftmax_row_int(N, ei, shift, mode, pj, &E) >= 0) {
                    if (G == 2) bsa_pv_accumulate(N, pj, E, vmask, vb, 2, cn, oi, hw == 2);
                    if (G == 4) bsa_pv_accumulate(N, pj, E, vmask, vb, 4, cn, oi, hw == 2);
                    if (G == 8) bsa_pv_accumulate(N, pj, E, vmask, vb, 8, cn, oi, hw == 2);
                    continue;
                }
                (void)snn_shiftmax_row(N, ei, shift, mode, ei);
            }
            if (int_path) {
                if (G == 2 && bsa_pv_row_int(N, ei, vmask, vb, 2, cn, oi, hw == 2)) continue;
                if (G == 4 && bsa_pv_row_int(N, ei, vmask, vb, 4, cn, oi, hw == 2)) continue;
                if (G == 8 && bsa_pv_row_int(N, ei, vmask, vb, 8, cn, oi, hw == 2)) continue;
            }
            double acc[64];
            for (int c = 0; c < cn; c++) acc[c] = 0.0;
            for (int j = 0; j < N; j++) {
                uint64_t w = cached ? vb[j] : snn_pack_nz(v + (long)j * ld + c0, cn);
                if (!w) continue;
                const double p = pow2i(ei[j]);  /* P_ij, an exact power of two */
                while (w) {
                    acc[__builtin_ctzll(w)] += p;
                    w &= w - 1;
                }
            }
            for (int c = 0; c < cn; c++) oi[c] = (float)acc[c];
        }
    }

    if (ops) {
        const uint64_t nn = (uint64_t)N * (uint64_t)N;
        ops->n[SNN_OP_AC] += n_ac;
        ops->n[SNN_OP_CMP] += nn;
        ops->n[SNN_OP_SHIFT] += 2 * nn;
        ops->n[SNN_OP_INT_ADD] += nn + (uint64_t)N * nnz_v;
    }
}

#if SNN_HAVE_AVX512_DISPATCH
static SNN_AVX512_FN SNN_VEC_FN void bsa_head_avx512(int N, int d, const int8_t *q,
                                                     const int8_t *k, const int8_t *v, int ld,
                                                     int shift, snn_shiftmax_round mode, float *o,
                                                     int ldo, int32_t *scores, snn_ops *ops) {
    bsa_head(N, d, q, k, v, ld, shift, mode, o, ldo, scores, ops, 2);
}
#endif

#if SNN_HAVE_AVX2_DISPATCH
static SNN_AVX2_FN SNN_VEC_FN void bsa_head_avx2(int N, int d, const int8_t *q, const int8_t *k,
                                                 const int8_t *v, int ld, int shift,
                                                 snn_shiftmax_round mode, float *o, int ldo,
                                                 int32_t *scores, snn_ops *ops) {
    bsa_head(N, d, q, k, v, ld, shift, mode, o, ldo, scores, ops, 1);
}
#endif

static SNN_VEC_FN void bsa_head_portable(int N, int d, const int8_t *q, const int8_t *k,
                                         const int8_t *v, int ld, int shift,
                                         snn_shiftmax_round mode, float *o, int ldo,
                                         int32_t *scores, snn_ops *ops) {
    bsa_head(N, d, q, k, v, ld, shift, mode, o, ldo, scores, ops, 0);
}

void snn_attn_bsa_head(int N, int d, const int8_t *q, const int8_t *k, const int8_t *v, int ld,
                       int shift, snn_shiftmax_round mode, float *o, int ldo, int32_t *scores,
                       snn_ops *ops) {
    if (N <= 0) return;
#if SNN_HAVE_AVX512_DISPATCH
    if (snn_cpu_avx512_popcnt()) {
        bsa_head_avx512(N, d, q, k, v, ld, shift, mode, o, ldo, scores, ops);
        return;
    }
#endif
#if SNN_HAVE_AVX2_DISPATCH
    if (snn_cpu_avx2()) {
        bsa_head_avx2(N, d, q, k, v, ld, shift, mode, o, ldo, scores, ops);
        return;
    }
#endif
    bsa_head_portable(N, d, q, k, v, ld, shift, mode, o, ldo, scores, ops);
}
