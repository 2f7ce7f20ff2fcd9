/*
 * axpy.h: the inner product of ssa_train.c's double-sum products (SSA's forward and BSA's
 * generic backward; softmax, Primal and SSA's backward use float snn_gemm):
 * acc[j] = sum_i a_i B[i ldb + j] for j < n <= SNN_AXPY_MAX_N, i < k in order, where
 * a_i = a[r_i inca] with r_i = rows[i] (a gather) or i when rows is NULL.
 *
 * Exactness: every output is its own double sum in i order (products of floats are exact in
 * double), returned unrounded, so the bits are those of the scalar loop
 *     for i: if (a_i != 0) for j: acc[j] += a_i * (double)B[i ldb + j]
 * a_i == 0 is skipped: each sum starts at +0.0, so it is never -0.0, and x + (+-0.0) == x for
 * every other x (B finite). The outputs are spread over NV 4-lane double vectors held in
 * registers across i (GCC vector extensions: per lane the same IEEE multiply then add, no FMA:
 * -ffp-contract=off), the n % 4 tail in scalars: vectorised across outputs, never within a sum.
 *
 * Always inlined, so each target clone of a caller (sim/vec.h) gets its own vector width: the
 * default clone runs each 4-lane operation as two SSE2 ones, the AVX2 clone as one.
 *
 * Pure numerics: no I/O, no allocation, no static state.
 */
#ifndef SNN_AXPY_H
#define SNN_AXPY_H

#include <string.h>

#include "sim/util.h"

enum { SNN_AXPY_MAX_N = 32 };

typedef double snn_v4d __attribute__((vector_size(32)));
typedef float snn_v4f __attribute__((vector_size(16)));

/* NV = n / 4 is a compile-time constant at each call (the switch in snn_axpy_rows), so the
 * loops over it unroll and the accumulators stay in registers. */
static inline __attribute__((always_inline)) void snn_axpy_rows_nv(const int NV, int k, int n,
                                                                   const float *a, long inca,
                                                                   const int *rows,
                                                                   const float *B, long ldb,
                                                                   double *acc) {
    snn_v4d va[8];
    double ta[3] = {0.0, 0.0, 0.0}; /* the tail: outputs 4 NV .. n - 1 */
    const int nt = n - 4 * NV;
#pragma GCC unroll 8
    for (int v = 0; v < NV; v++) va[v] = (snn_v4d){0.0, 0.0, 0.0, 0.0};
    for (int i = 0; i < k; i++) {
        const double ai = a[(long)(rows ? rows[i] : i) * inca];
        if (ai == 0.0) continue;
        const snn_v4d av = {ai, ai, ai, ai};
        const float *bi = B + (long)i * ldb;
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) {
            snn_v4f b;
            memcpy(&b, bi + 4 * v, sizeof b);
            va[v] += av * __builtin_convertvector(b, snn_v4d);
        }
        for (int t = 0; t < nt; t++) ta[t] += ai * (double)bi[4 * NV + t];
    }
#pragma GCC unroll 8
    for (int v = 0; v < NV; v++) memcpy(acc + 4 * v, &va[v], sizeof va[v]);
    for (int t = 0; t < nt; t++) acc[4 * NV + t] = ta[t];
}

static inline __attribute__((always_inline)) void snn_axpy_rows(int k, int n, const float *a,
                                                                long inca, const int *rows,
                                                                const float *B, long ldb,
                                                                double *acc) {
    SNN_ASSERT(n >= 0 && n <= SNN_AXPY_MAX_N);
    switch (n / 4) {
    case 0: snn_axpy_rows_nv(0, k, n, a, inca, rows, B, ldb, acc); break;
    case 1: snn_axpy_rows_nv(1, k, n, a, inca, rows, B, ldb, acc); break;
    case 2: snn_axpy_rows_nv(2, k, n, a, inca, rows, B, ldb, acc); break;
    case 3: snn_axpy_rows_nv(3, k, n, a, inca, rows, B, ldb, acc); break;
    case 4: snn_axpy_rows_nv(4, k, n, a, inca, rows, B, ldb, acc); break;
    case 5: snn_axpy_rows_nv(5, k, n, a, inca, rows, B, ldb, acc); break;
    case 6: snn_axpy_rows_nv(6, k, n, a, inca, rows, B, ldb, acc); break;
    case 7: snn_axpy_rows_nv(7, k, n, a, inca, rows, B, ldb, acc); break;
    default: snn_axpy_rows_nv(8, k, n, a, inca, rows, B, ldb, acc); break;
    }
}

#endif
