/*
 * gemm.c: snn_gemm (see gemm.h).
 *
 * libxsmm's kernels are column-major: C' = A' B' with C' [m, n] at leading dimension ldc. A
 * row-major [M, N] matrix is the column-major [N, M] one, so the row-major C = op(A) B is the
 * column-major C^T = B^T op(A)^T: m = N, n = M, k = K, libxsmm's A the caller's B and libxsmm's
 * B the caller's A, transposed (LIBXSMM_GEMM_FLAG_TRANS_B) when trans_a. libxsmm 1.17 generates
 * no code for a transposed first operand (our trans_b): a small B is transposed into a stack
 * buffer first (attention's Q K^T, [N, d] K of a head: a copy of N d floats against N^2 d
 * multiply-adds), a larger one goes to sgemm; nor for alpha != 1 or beta other than 0 and 1: a
 * small product is computed into a stack buffer and scaled, a larger one goes to sgemm. Products
 * with a large weight-sized operand go to sgemm too (GEMM_JIT_MAX_W).
 */
#include "attention/gemm.h"
#include "attention/transpose.h"

#include <cblas.h>
#include <libxsmm.h>
#include <stdio.h>
#include <stdlib.h>

#include "sim/util.h"

/* libxsmm's kernels return with the upper halves of the vector registers dirty (no vzeroupper):
 * every SSE instruction after them (glibc's exp, FFTW, this project's baseline code) then waits
 * on the upper state, which made CAT's 49 exponentials per head 7 % of its training step instead
 * of 0.5 %. vzeroupper, on a CPU with AVX (the only kind libxsmm emits AVX code for), clears it;
 * this file is baseline code, so no value of ours lives in an upper half. */
static void leave_avx_state(void) {
#if defined(__x86_64__) || defined(__i386__)
    if (__builtin_cpu_supports("avx")) __asm__ volatile("vzeroupper" ::: "memory");
#endif
}

/* Largest op(B) transposed, and largest product scaled, on the stack (32 KiB each). */
enum { GEMM_MAX_BT = 8192, GEMM_MAX_T = 8192 };
/* Largest weight-sized operand (B, or a weight gradient's C) a JIT kernel takes: libxsmm's
 * kernels block for registers, not for caches, and past it OpenBLAS's packed sgemm was faster
 * (training steps of softmax models, A/B pairs: D = 256 -9 to -12 %, D = 384 -21 to -23 %;
 * with 16384 instead, D = 128's 128 x 512 layers +6 %). Every product of the D = 64 models
 * stays on the JIT kernels. */
enum { GEMM_JIT_MAX_W = 65536 };

/* The last kernels this thread dispatched, by their shape: the attention kernels make a few
 * shapes of small product per head, thousands of times a step, and libxsmm's dispatch (a
 * descriptor, a hash, a registry lookup) cost about a tenth of such a product. A cache of
 * function pointers: which kernel runs does not change, so neither do the results. */
enum { GEMM_CACHE = 8 };
typedef struct gemm_key {
    int M, N, K, lda, ldb, ldc, trans_a, beta_one;
} gemm_key;
static _Thread_local struct {
    gemm_key key[GEMM_CACHE];
    libxsmm_smmfunction f[GEMM_CACHE];
    int n, next;
} gemm_cache;

static libxsmm_smmfunction dispatch(bool trans_a, int M, int N, int K, int lda, int ldb,
                                    float beta, int ldc) {
    const gemm_key key = {M, N, K, lda, ldb, ldc, trans_a, beta != 0.0f};
    for (int i = 0; i < gemm_cache.n; i++) {
        const gemm_key *k = &gemm_cache.key[i];
        if (k->M == M && k->N == N && k->K == K && k->lda == lda && k->ldb == ldb &&
            k->ldc == ldc && k->trans_a == key.trans_a && k->beta_one == key.beta_one)
            return gemm_cache.f[i];
    }
    const float one = 1.0f;
    const int flags = trans_a ? LIBXSMM_GEMM_FLAG_TRANS_B : LIBXSMM_GEMM_FLAG_NONE;
    const libxsmm_blasint la = ldb, lb = lda, lc = ldc;
    const libxsmm_smmfunction f =
        libxsmm_smmdispatch(N, M, K, &la, &lb, &lc, &one, &beta, &flags, NULL);
    if (f) { /* replaced in turn */
        int i = gemm_cache.n;
        if (i < GEMM_CACHE)
            gemm_cache.n++;
        else
            i = gemm_cache.next, gemm_cache.next = (i + 1) % GEMM_CACHE;
        gemm_cache.key[i] = key;
        gemm_cache.f[i] = f;
    }
    return f;
}

/* C = op(A) B + beta C (beta 0 or 1) by a JIT kernel; false, C untouched, if there is none. */
static bool jit_gemm(bool trans_a, int M, int N, int K, const float *A, int lda, const float *B,
                     int ldb, float beta, float *C, int ldc) {
    const libxsmm_smmfunction f = dispatch(trans_a, M, N, K, lda, ldb, beta, ldc);
    if (!f) return false;
    f(B, A, C);
    leave_avx_state();
    return true;
}

/* C = alpha op(A) B^T + beta C for a small B [N, K] (K N <= GEMM_MAX_BT): B^T on this
 * frame's stack, then the product without a transposition (a frame of its own, so that the
 * common call does not set up its buffers). */
static __attribute__((noinline)) void gemm_small_bt(bool trans_a, int M, int N, int K,
                                                    float alpha, const float *A, int lda,
                                                    const float *B, int ldb, float beta,
                                                    float *C, int ldc) {
    float bt[GEMM_MAX_BT]; /* op(B) = B^T [K, N] */
    snn_transpose(N, K, B, ldb, bt, N, false);
    snn_gemm(trans_a, false, M, N, K, alpha, A, lda, bt, N, beta, C, ldc);
}

/* alpha != 1 (SSA's scale) with M N <= GEMM_MAX_T: the product into this frame's stack, then
 * C = alpha t + beta C as sgemm rounds it (alpha times the product, beta times C, their sum:
 * each rounded once). False when libxsmm has no kernel. */
static __attribute__((noinline)) bool gemm_small_scaled(bool trans_a, int M, int N, int K,
                                                        float alpha, const float *A, int lda,
                                                        const float *B, int ldb, float beta,
                                                        float *C, int ldc) {
    float t[GEMM_MAX_T]; /* op(A) op(B) [M, N] */
    if (!jit_gemm(trans_a, M, N, K, A, lda, B, ldb, 0.0f, t, N)) return false;
    for (int i = 0; i < M; i++) {
        float *ci = C + (size_t)i * ldc;
        const float *ti = t + (size_t)i * N;
        if (beta == 0.0f)
            for (int j = 0; j < N; j++) ci[j] = alpha * ti[j];
        else
            for (int j = 0; j < N; j++) ci[j] = alpha * ti[j] + beta * ci[j];
    }
    return true;
}

void snn_gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A,
              int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    SNN_ASSERT(M >= 0 && N >= 0 && K >= 0 && A && B && C);
    if (M == 0 || N == 0) return;
    if (trans_b && (size_t)K * N <= GEMM_MAX_BT) {
        gemm_small_bt(trans_a, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    /* the weight-sized operand: B [K, N], or C [M, N] of a weight gradient dy^T x (trans_a) */
    const size_t w = trans_a ? (size_t)M * N : (size_t)N * K;
    if (!trans_b && K > 0 && w <= GEMM_JIT_MAX_W) {
        if (alpha == 1.0f && jit_gemm(trans_a, M, N, K, A, lda, B, ldb, beta, C, ldc)) return;
        if (alpha != 1.0f && (size_t)M * N <= GEMM_MAX_T &&
            gemm_small_scaled(trans_a, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc))
            return;
    }
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, beta, C,
                ldc);
}

const char *snn_gemm_describe(char *buf, size_t n) {
    const char *forced = getenv("LIBXSMM_TARGET");
    snprintf(buf, n, "libxsmm %s, JIT for %s%s", LIBXSMM_VERSION,
             forced && *forced ? forced : libxsmm_cpuid_name(libxsmm_cpuid()),
             forced && *forced ? " (LIBXSMM_TARGET)" : "");
    return buf;
}
