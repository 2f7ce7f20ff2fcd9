/*
 * transpose.h: snn_transpose, a float matrix transpose in 4 x 4 register blocks: BSA's training
 * backward (dQ, dK; dA in place, snn_transpose_square_inplace), snn_gemm's transposed second
 * operand, the dense layers' w^T.
 *
 * Always inlined, so each target clone of a caller (sim/vec.h) gets its own instructions; a
 * copy (or one float addition per element, add) whatever the instructions: the same bytes in
 * every variant.
 * Pure numerics: no I/O, no allocation, no static state.
 */
#ifndef SNN_TRANSPOSE_H
#define SNN_TRANSPOSE_H

#include <stdbool.h>

typedef float snn_tr_v4f __attribute__((vector_size(16)));
typedef float snn_tr_v4fu __attribute__((vector_size(16), aligned(4))); /* unaligned access */

/* The 4 x 4 transpose of rows a, b, e, f into t[0..4): t[u] is column u. */
static inline __attribute__((always_inline)) void snn_transpose4(snn_tr_v4f a, snn_tr_v4f b,
                                                                 snn_tr_v4f e, snn_tr_v4f f,
                                                                 snn_tr_v4f t[4]) {
    const snn_tr_v4f ab0 = __builtin_shufflevector(a, b, 0, 4, 1, 5);
    const snn_tr_v4f ab1 = __builtin_shufflevector(a, b, 2, 6, 3, 7);
    const snn_tr_v4f ef0 = __builtin_shufflevector(e, f, 0, 4, 1, 5);
    const snn_tr_v4f ef1 = __builtin_shufflevector(e, f, 2, 6, 3, 7);
    t[0] = __builtin_shufflevector(ab0, ef0, 0, 1, 4, 5);
    t[1] = __builtin_shufflevector(ab0, ef0, 2, 3, 6, 7);
    t[2] = __builtin_shufflevector(ab1, ef1, 0, 1, 4, 5);
    t[3] = __builtin_shufflevector(ab1, ef1, 2, 3, 6, 7);
}

/* dst[c * ldd + r] = src[r * lds + c] (or +=, add) for src [rows, cols]: 4 x 4 blocks, then the
 * edges. */
static inline __attribute__((always_inline)) void snn_transpose(int rows, int cols,
                                                                const float *src, int lds,
                                                                float *dst, int ldd, bool add) {
    const int r4 = rows / 4 * 4, c4 = cols / 4 * 4;
    for (int r = 0; r < r4; r += 4)
        for (int c = 0; c < c4; c += 4) {
            const snn_tr_v4f a = *(const snn_tr_v4fu *)(src + (long)r * lds + c);
            const snn_tr_v4f b = *(const snn_tr_v4fu *)(src + (long)(r + 1) * lds + c);
            const snn_tr_v4f e = *(const snn_tr_v4fu *)(src + (long)(r + 2) * lds + c);
            const snn_tr_v4f f = *(const snn_tr_v4fu *)(src + (long)(r + 3) * lds + c);
            snn_tr_v4f t[4];
            snn_transpose4(a, b, e, f, t);
            for (int u = 0; u < 4; u++) {
                snn_tr_v4fu *o = (snn_tr_v4fu *)(dst + (long)(c + u) * ldd + r);
                *o = add ? *o + t[u] : t[u];
            }
        }
    for (int r = 0; r < rows; r++)
        for (int c = (r < r4 ? c4 : 0); c < cols; c++) {
            float *o = dst + (long)c * ldd + r;
            *o = add ? *o + src[(long)r * lds + c] : src[(long)r * lds + c];
        }
}

/* a = a^T in place for a square a [n, n] at row stride ld: 4 x 4 blocks swapped with their
 * mirror blocks (each transposed in registers), then the edges. A copy: the same bytes. */
static inline __attribute__((always_inline)) void snn_transpose_square_inplace(int n, float *a,
                                                                               int ld) {
    const int n4 = n / 4 * 4;
#define SNN_TR_ROW(r, c) (*(snn_tr_v4fu *)(a + (long)(r) * ld + (c)))
    for (int r = 0; r < n4; r += 4)
        for (int c = r; c < n4; c += 4) {
            snn_tr_v4f x[4], y[4];
            snn_transpose4(SNN_TR_ROW(r, c), SNN_TR_ROW(r + 1, c), SNN_TR_ROW(r + 2, c),
                           SNN_TR_ROW(r + 3, c), x);
            snn_transpose4(SNN_TR_ROW(c, r), SNN_TR_ROW(c + 1, r), SNN_TR_ROW(c + 2, r),
                           SNN_TR_ROW(c + 3, r), y);
            for (int u = 0; u < 4; u++) SNN_TR_ROW(c + u, r) = x[u]; /* block (r, c)^T */
            if (c != r)
                for (int u = 0; u < 4; u++) SNN_TR_ROW(r + u, c) = y[u];
        }
#undef SNN_TR_ROW
    for (int r = 0; r < n; r++)
        for (int c = (r < n4 ? n4 : r + 1); c < n; c++) {
            const float t = a[(long)r * ld + c];
            a[(long)r * ld + c] = a[(long)c * ld + r];
            a[(long)c * ld + r] = t;
        }
}

#endif
