/*
 * vec.h: how the hot element-wise loops are compiled (shared by neurons/, attention/, sim/).
 *
 * SNN_VEC_FN: -O2's "very cheap" vectoriser cost model refuses loops of unknown trip count, so
 * hot functions ask for the dynamic model. Vectorising independent element-wise IEEE operations
 * changes no bit. (The Makefile's -fno-trapping-math lets a float select, x < c ? c : x, be
 * vectorised as a blend: it changes no value, only whether FP exceptions are guaranteed, and
 * nothing reads them. Set for every file: gcc does not inline across different settings.)
 * SNN_WIDE_FN: the function is also compiled for AVX-512 (F: 16 floats a vector) and for AVX2,
 * and the variant chosen at run time (gcc's target_clones). All run the same IEEE operations in
 * the same order on vectors of different widths (no FMA contraction: -ffp-contract=off), so all
 * give the same bits (make isa-test). Define SNN_NO_CLONES to build the portable variant only,
 * SNN_NO_AVX512_CLONES to leave out the AVX-512 one.
 */
#ifndef SNN_VEC_H
#define SNN_VEC_H

#if defined(__GNUC__) && !defined(__clang__)
#define SNN_VEC_FN __attribute__((optimize("tree-vectorize", "vect-cost-model=dynamic")))
#else
#define SNN_VEC_FN
#endif

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(SNN_NO_CLONES)
#if defined(SNN_NO_AVX512_CLONES)
#define SNN_WIDE_FN __attribute__((target_clones("avx2", "default")))
#else
#define SNN_WIDE_FN __attribute__((target_clones("avx512f", "avx2", "default")))
#define SNN_HAVE_AVX512_CLONES 1
#endif
#else
#define SNN_WIDE_FN
#endif

/* Whether the SNN_WIDE_FN variant running is the AVX-512 one (gcc's resolver picks it exactly
 * when the CPU has AVX-512F). Vectors of 16 floats suit it; in the AVX2 and portable variants
 * gcc splits them through the stack (the AVX2 variant's event-driven layers ran 5.5x, its BSA
 * kernel 7x slower than with 8-float vectors), so kernels that use them test this first. */
static inline int snn_wide_avx512(void) {
#if defined(SNN_HAVE_AVX512_CLONES)
    return __builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}

/* SNN_AVX2_FN / snn_cpu_avx2(): explicit run-time dispatch for kernels that want AVX2 and POPCNT
 * (the hardware popcount; gcc's target("avx2") implies it). The kernel body is an always-inline
 * function instantiated twice, once inside an SNN_AVX2_FN wrapper and once in a portable one;
 * snn_cpu_avx2() picks the wrapper. Both run the same integer and IEEE operations in the same
 * order, so both give the same bits. SNN_NO_CLONES disables this too (portable only). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(SNN_NO_CLONES)
#define SNN_AVX2_FN __attribute__((target("avx2,popcnt")))
#define SNN_HAVE_AVX2_DISPATCH 1
static inline int snn_cpu_avx2(void) {
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt");
}
#else
#define SNN_HAVE_AVX2_DISPATCH 0
#endif

/* SNN_AVX512_FN / snn_cpu_avx512_popcnt(): the same for kernels that want the AVX-512 vector
 * popcounts (VPOPCNTDQ for 64-bit lanes, BITALG for 16-bit ones, with BW and VL). Integer
 * kernels only, so they give the bits of the AVX2 and portable instances. SNN_NO_CLONES and
 * SNN_NO_AVX512_CLONES leave it out. */
#if SNN_HAVE_AVX2_DISPATCH && !defined(SNN_NO_AVX512_CLONES)
#define SNN_AVX512_FN                                                                              \
    __attribute__((target("avx2,popcnt,avx512f,avx512bw,avx512vl,avx512vpopcntdq,avx512bitalg")))
#define SNN_HAVE_AVX512_DISPATCH 1
static inline int snn_cpu_avx512_popcnt(void) {
    return snn_cpu_avx2() && __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512vpopcntdq") && __builtin_cpu_supports("avx512bitalg");
}
#else
#define SNN_HAVE_AVX512_DISPATCH 0
#endif

#endif
