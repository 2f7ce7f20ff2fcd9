/*
 * gemm.h: the dense float matrix products of the training layers and the ANN attention kernels,
 * row-major, as cblas_sgemm with one transposition flag per operand:
 *   C = alpha op(A) op(B) + beta C,   op(A) [M, K], op(B) [K, N], C [M, N] at row stride ldc.
 *
 * Where libxsmm has a JIT kernel for the shape (op(B) = B or a B^T of at most 8192 floats,
 * transposed first; alpha = 1, or any alpha for a C of at most 8192 floats, scaled after: the
 * products spikesim calls), the product is libxsmm's: it multiplies small matrices as they lie
 * in memory, while OpenBLAS packs both operands first (a quarter of its time in ANN training).
 * Otherwise, and where libxsmm cannot generate code, it is OpenBLAS sgemm. Either way one call is
 * single-threaded, and the same shape on the same CPU always runs the same code, so the result
 * does not depend on the thread count or on spikesim's own instruction-set variants (libxsmm
 * picks its code from the CPU, as OpenBLAS picks its kernels). Float accumulation in the
 * library's order: a product over K is not the sequential float sum.
 *
 * Pure numerics: no I/O; at most 64 KiB of stack. libxsmm generates a shape's kernel at its
 * first call and keeps it for the process (thread-safe).
 */
#ifndef SNN_GEMM_H
#define SNN_GEMM_H

#include <stdbool.h>
#include <stddef.h>

void snn_gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A,
              int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* "libxsmm <version>, JIT for <target>" (libxsmm's name for the instruction set it generates
 * code for: "cpx", "skx", "hsw", ...) into buf [n]; returns buf. The last bits of a product
 * depend on the target, as they depend on OpenBLAS's kernels. */
const char *snn_gemm_describe(char *buf, size_t n);

#endif
