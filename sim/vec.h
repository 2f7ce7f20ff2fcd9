/*
 * vec.h: how the hot element-wise loops are compiled (shared by neurons/, attention/, sim/).
 *
 * SNN_VEC_FN: -O2's "very cheap" vectoriser cost model refuses loops of unknown trip count, so
 * hot functions ask for the dynamic model. Vectorising independent element-wise IEEE operations
 * changes no bit.
 * SNN_WIDE_FN: the function is also compiled for AVX2 and the variant chosen at run time (gcc's
 * target_clones). Both run the same IEEE operations in the same order on vectors of different
 * widths (no FMA: none is enabled and -ffp-contract=off), so both give the same bits. Define
 * SNN_NO_CLONES to build the portable variant only.
 */
#ifndef SNN_VEC_H
#define SNN_VEC_H

#if defined(__GNUC__) && !defined(__clang__)
#define SNN_VEC_FN __attribute__((optimize("tree-vectorize", "vect-cost-model=dynamic")))
#else
#define SNN_VEC_FN
#endif

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(SNN_NO_CLONES)
#define SNN_WIDE_FN __attribute__((target_clones("avx2", "default")))
#else
#define SNN_WIDE_FN
#endif

#endif
