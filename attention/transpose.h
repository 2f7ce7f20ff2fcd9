/*
 * transpose.h: snn_transpose, a float matrix transpose in 4 x 4 register blocks: BSA's training
 * backward (dA, dQ, dK), snn_gemm's transposed second operand, the dense layers' w^T.
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
            const snn_tr_v4f ab0 = __builtin_shufflevector(a, b, 0, 4, 1, 5);
            const snn_tr_v4f ab1 = __builtin_shufflevector(a, b, 2, 6, 3, 7);
            const snn_tr_v4f ef0 = __builtin_shufflevector(e, f, 0, 4, 1, 5);
            const snn_tr_v4f ef1 = __builtin_shufflevector(e, f, 2, 6, 3, 7);
            const snn_tr_v4f t[4] = {__builtin_shufflevector(ab0, ef0, 0, 1, 4, 5),
                                     __builtin_shufflevector(ab0, ef0, 2, 3, 6, 7),
                                     __builtin_shufflevector(ab1, ef1, 0, 1, 4, 5),
                                     __builtin_shufflevector(ab1, ef1, 2, 3, 6, 7)};
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

#endif
