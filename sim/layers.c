/*
 * layers.c: dense training layers, forward and backward (see layers.h for the contracts).
 *
 * The PyTorch semantics matched, op by op:
 *   linear         F.linear(x, w, b):              y = x w^T + b, w is [out, in]
 *   BatchNorm1d    F.batch_norm(training=True):    batch mean, biased variance to normalise,
 *                                                  unbiased variance (M / (M - 1)) into the
 *                                                  running estimate, running = (1 - m) running
 *                                                  + m batch; eval mode uses running stats
 *   mean pool      x.mean((0, 2)) over [T, B, N, D]
 *   cross-entropy  F.cross_entropy(label_smoothing=e, reduction='mean'):
 *                  (1 - e) NLL + e * mean over classes of -log p, averaged over the batch
 *
 * Precision: float storage, double accumulation wherever a sum over rows or classes is taken
 * (BatchNorm statistics and parameter gradients, bias gradient, pool, log-sum-exp). The matrix
 * products are snn_gemm (attention/gemm.h: libxsmm's JIT kernels, else OpenBLAS sgemm; float
 * accumulation in the library's order).
 *
 * Parallelism (research/style.md 3.8): every loop runs over a decomposition into chunks that
 * depends only on the sizes; each chunk owns what it writes; no atomics and no OpenMP reductions
 * (but bitwise OR). So the bits do not depend on the thread count, nor on which thread runs a
 * chunk: loops over chunks share them two-ended (sim/par.h: with two threads one takes chunks
 * from the front, the other from the back, so each keeps its end of the rows from loop to loop
 * in its own cache, and a thread slowed down by the system, as a shared or virtual machine
 * takes a core away for milliseconds, does not hold the other back at the join); loops over
 * single elements are `schedule(static)`. BLAS runs single-threaded
 * inside our loops (snn_layers_init).
 */
#include "sim/vec.h"
#include "sim/layers.h"

#include "attention/bits.h"
#include "attention/gemm.h"
#include "attention/transpose.h"

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "sim/dist.h"
#include "sim/par.h"
#include "sim/util.h"

/* BatchNorm channel chunk: one thread sums CH_CHUNK channels over all rows, in row order, so a
 * 64-byte line of each row is read by exactly one thread. */
#define CH_CHUNK 16

/* Below this much work (elements, or multiply-adds for linear) a loop runs on the calling thread
 * alone: a parallel region costs more than it saves, and far more when the machine is
 * oversubscribed. The chunks are the same either way, so this never changes the bits. */
#define PAR_MIN_WORK 32768

void snn_layers_init(void) {
    if (openblas_get_num_threads() != 1) openblas_set_num_threads(1);
}

const char *snn_blas_core(void) { return openblas_get_corename(); }
const char *snn_blas_config(char *buf, size_t n) {
    char jit[96];
    snprintf(buf, n, "%s; %s", openblas_get_config(), snn_gemm_describe(jit, sizeof jit));
    return buf;
}

const char *snn_blas_describe(char *buf, size_t n) {
    const char *coretype = getenv("OPENBLAS_CORETYPE");
    char jit[96];
    snprintf(buf, n, "OpenBLAS %s kernels (OPENBLAS_CORETYPE%s%s); %s", openblas_get_corename(),
             coretype ? "=" : " unset", coretype ? coretype : "",
             snn_gemm_describe(jit, sizeof jit));
    return buf;
}

const char *snn_blas_core_for_cpu(void) {
    if (getenv("OPENBLAS_CORETYPE") || strcmp(openblas_get_corename(), "Prescott") != 0)
        return NULL;
    /* gcc's checks include the OS's support (XCR0) for the AVX and AVX-512 registers. */
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512cd"))
        return __builtin_cpu_supports("avx512bf16") ? "Cooperlake" : "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
    if (__builtin_cpu_supports("avx")) return "Sandybridge";
    return NULL;
}

static int n_chunks(int n, int chunk) { return (n + chunk - 1) / chunk; }

/* Rows per chunk of the linear layer's y and dx: at most SNN_LINEAR_ROW_CHUNK, a multiple of
 * 4 chunks (snn_par_chunk). */
static int linear_rows(int M) { return (int)snn_par_chunk((size_t)M, SNN_LINEAR_ROW_CHUNK, 1); }

/* ---- column sums in row blocks (BatchNorm statistics and gradients, bias gradient) ---------- */

/* BatchNorm work decomposition (fixed by the sizes alone, never by the thread count):
 *   - channels in super-chunks of at most BN_CW (one, for C <= BN_CW);
 *   - rows in BN_BLOCKS row blocks, block b = rows [b M / BN_BLOCKS, (b + 1) M / BN_BLOCKS);
 *     each block streams its rows (whole rows of the super-chunk: contiguous memory) into one
 *     accumulator per channel, and the per-block partial sums are added in block order.
 * A column sum therefore has a fixed order: rows in order inside a block, blocks in order.
 * Reading whole rows matters: a traversal of one channel chunk down all M rows touches one
 * cache line per row at a stride of C floats, which neither the prefetchers nor the TLB follow. */
enum { BN_BLOCKS = 16, BN_CW = 256, BN_SUB = 16 };
/* Rows per work item of the element-wise BatchNorm loops (any fixed size: rows are independent). */
enum { BN_ROWS = 64 };

static inline int bn_row0(int b, int M) { return (int)((long)b * M / BN_BLOCKS); }

/* acc[j] = sum over rows [m0, m1) of x[m, c0 + j] for j < W: runs of BN_SUB rows from m0 summed
 * in float, each run added to the double acc[j] (as BatchNorm's sums). */
static SNN_WIDE_FN SNN_VEC_FN void bn_rows_sum(double *restrict acc, const float *x, int m0, int m1, int C,
                                       int c0, int W) {
    float f[BN_CW];
    for (int j = 0; j < W; j++) acc[j] = 0.0;
    for (int r0 = m0; r0 < m1; r0 += BN_SUB) {
        const int re = m1 - r0 < BN_SUB ? m1 : r0 + BN_SUB;
        for (int j = 0; j < W; j++) f[j] = 0.0f;
        for (int m = r0; m < re; m++) {
            const float *restrict row = x + (size_t)m * C + c0;
            for (int j = 0; j < W; j++) f[j] += row[j];
        }
        for (int j = 0; j < W; j++) acc[j] += (double)f[j];
    }
}

/* s1[j] += sum over rows [m0, m1) of (x[m, c0 + j] - K[j]), s2[j] += the sum of its squares:
 * runs of BN_SUB rows from m0 in float (d = x - K and d d in float, as the backward's sums),
 * each run added to the double s1[j], s2[j]. K is a row of the block (its first), so d is of the
 * order of the column's spread and a run of 16 float sums loses nothing that matters to a
 * variance; float runs take 16 lanes a vector where double took 8. Calls on consecutive row
 * ranges whose lengths are multiples of BN_SUB add the same runs as one call on their union. */
static SNN_WIDE_FN SNN_VEC_FN void bn_rows_shifted(double *restrict s1, double *restrict s2,
                                           const float *x, const float *K, int m0, int m1,
                                           int C, int c0, int W) {
    float f1[BN_CW], f2[BN_CW];
    for (int r0 = m0; r0 < m1; r0 += BN_SUB) {
        const int re = m1 - r0 < BN_SUB ? m1 : r0 + BN_SUB;
        for (int j = 0; j < W; j++) f1[j] = f2[j] = 0.0f;
        for (int m = r0; m < re; m++) {
            const float *restrict row = x + (size_t)m * C + c0;
            for (int j = 0; j < W; j++) {
                const float d = row[j] - K[j];
                f1[j] += d;
                f2[j] += d * d;
            }
        }
        for (int j = 0; j < W; j++) {
            s1[j] += (double)f1[j];
            s2[j] += (double)f2[j];
        }
    }
}

/* The BatchNorm statistics' per-block sums of all C channels (snn_bn_sums_doubles): for block b,
 * s1 at sums[(3 b) C], s2 at sums[(3 b + 1) C], its shift K (the block's first row) at
 * sums[(3 b + 2) C]: the offset of k = 0, 1, 2. */
static inline size_t bn_sums_at(int b, int k, int C) {
    return ((size_t)3 * b + (size_t)k) * (size_t)C;
}

size_t snn_bn_sums_doubles(int C) { return (size_t)3 * BN_BLOCKS * (size_t)C; }

/* Adds rows [r0, r1) of block b (which starts at row m0) of channels [c0, c0 + W) of x [M, C]
 * to the block's sums in a buffer of Cs channels (channel c0 + j at j); the block's first call
 * (r0 == m0) records K and starts the sums at 0. */
static void bn_block_add_rows(double *sums, int Cs, const float *x, int C, int c0, int W, int b,
                              int m0, int r0, int r1) {
    double *s1 = sums + bn_sums_at(b, 0, Cs), *s2 = sums + bn_sums_at(b, 1, Cs);
    double *K = sums + bn_sums_at(b, 2, Cs);
    const float *Kf = x + (size_t)m0 * C + c0;
    if (r0 == m0)
        for (int j = 0; j < W; j++) s1[j] = s2[j] = 0.0, K[j] = (double)Kf[j];
    for (int j0 = 0; j0 < W; j0 += BN_CW)
        bn_rows_shifted(s1 + j0, s2 + j0, x, Kf + j0, r0, r1, C, c0 + j0,
                        W - j0 < BN_CW ? W - j0 : BN_CW);
}

/* sum[j] += the double sum of part[b][j] over the blocks in order, rounded to float once. */
static void add_block_sums(float *sum, double (*part)[BN_CW], int W) {
    for (int j = 0; j < W; j++) {
        double t = 0.0;
        for (int b = 0; b < BN_BLOCKS; b++) t += part[b][j];
        sum[j] += (float)t;
    }
}

/* part[b][j] = bn_rows_sum over the rows of block b. */
static void bn_block_sums(double (*part)[BN_CW], const float *x, int M, int C, int c0, int W,
                          bool par) {
    (void)par; /* unused without OpenMP */
    snn_par_ends ends_b = snn_par_ends_of(BN_BLOCKS); /* par.h */
#pragma omp parallel if (par)
    for (int b; (b = (int)snn_par_ends_next(&ends_b)) >= 0;)
        bn_rows_sum(part[b], x, bn_row0(b, M), bn_row0(b + 1, M), C, c0, W);
}

/* ---- linear -------------------------------------------------------------------------------- */

/* Spike inputs. Every linear layer of the spiking blocks reads a spike matrix: x in {0, 1}, and
 * mostly 0 (firing rates of a few percent). For such an x (every entry 0 or 1, checked; at most
 * SP_MAX_DENSITY of them 1 in the first rows) the products skip the zeros:
 *   y[m, :]  = (sum over the ones x[m, i], i ascending, of w^T[i, :]) + b   (float)
 *   dw^T[i, :] = sum over the rows m with x[m, i] = 1 of dy[m, :]   (float; two fixed parts of
 *                the rows, alternate blocks of rows each, each part summed block by block,
 *                then the parts added)
 * i.e. the float sums of the dense product without its multiplications by 0 and 1, in a fixed
 * order (so the result is the same for any thread count; its bits differ from the dense
 * product's, whose order is its own). Any other x (real inputs, ternary spikes, dense spikes)
 * takes the dense path, and so do layers too large for the stack buffers (in * out > SP_MAX_W)
 * unless the caller gives the bits functions a scratch (snn_linear_spike_scratch_floats) for
 * w^T and the parts of dw^T. */
enum { SP_MAX_IN = 4096, SP_MAX_W = 65536, SP_OB = 64, SP_DW_PARTS = 2 };
#define SP_MAX_DENSITY 0.25

/* Sixteen floats: one AVX-512 register in the AVX-512 clones. The others split them through
 * the stack, so there the 64-column sums take eight vectors of 8 (rows_sum64_narrow; the same
 * lane-wise IEEE additions either way, sim/vec.h snn_wide_avx512). */
typedef float v16f __attribute__((vector_size(64)));
typedef float v16fu __attribute__((vector_size(64), aligned(4))); /* unaligned access */
typedef float v8f __attribute__((vector_size(32)));
typedef float v8fu __attribute__((vector_size(32), aligned(4))); /* unaligned access */

/* s[0..64) = the sum, in t order from 0, of the rows base + off_t stride for t < n, off_t =
 * idx[t] (or idx8[t] when idx is NULL): eight 8-float sums. */
static inline __attribute__((always_inline)) void
rows_sum64_narrow(float *restrict s, const float *base, size_t stride, const int *idx,
                  const uint8_t *idx8, int n) {
    v8f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, a4 = {0}, a5 = {0}, a6 = {0}, a7 = {0};
    for (int t = 0; t < n; t++) {
        const v8fu *r = (const v8fu *)(base + (size_t)(idx ? idx[t] : idx8[t]) * stride);
        a0 += r[0], a1 += r[1], a2 += r[2], a3 += r[3];
        a4 += r[4], a5 += r[5], a6 += r[6], a7 += r[7];
    }
    v8fu *o = (v8fu *)s;
    o[0] = a0, o[1] = a1, o[2] = a2, o[3] = a3, o[4] = a4, o[5] = a5, o[6] = a6, o[7] = a7;
}

/* Every x[t] is 0 or 1 and at most SP_MAX_DENSITY n of them are 1. */
static SNN_WIDE_FN SNN_VEC_FN bool sparse_binary(const float *x, size_t n) {
    uint32_t ones = 0;
    /* in runs of 256 floats, so that a dense input (an ANN's activations) is told apart by its
     * first run: the whole probe took 10-20 us on the one thread before each linear layer */
    for (size_t t0 = 0; t0 < n; t0 += 256) {
        const size_t t1 = n - t0 < 256 ? n : t0 + 256;
        int bad = 0;
        for (size_t t = t0; t < t1; t++) {
            const float v = x[t];
            ones += v != 0.0f;
            bad |= (v != 0.0f) & (v != 1.0f);
        }
        if (bad) return false;
    }
    return (double)ones <= SP_MAX_DENSITY * (double)n;
}

/* Whether to try the spike path: the sizes fit, and the first SP_PROBE_ROWS rows of x are sparse
 * spikes. The kernels then check every nonzero entry (a 1?) and report otherwise, and the caller
 * falls back to the dense product, so a non-spike x anywhere still gets the dense result. */
enum { SP_PROBE_ROWS = 256 };
static bool sparse_sizes(int M, int in, int out, bool scratch) {
    return in <= SP_MAX_IN && (scratch || (size_t)in * out <= SP_MAX_W) && M > 0;
}
static bool sparse_ok(const float *x, int M, int in, int out) {
    return sparse_sizes(M, in, out, false) &&
           sparse_binary(x, (size_t)(M < SP_PROBE_ROWS ? M : SP_PROBE_ROWS) * in);
}

/* Row m of a spike matrix given as bits (layers.h). */
static inline const uint64_t *bit_row(const snn_spike_rows *xb, int m, int in) {
    return xb->nz + (size_t)(m / xb->rows_per_t) * xb->ld +
           (size_t)(m % xb->rows_per_t) * (size_t)(in / 64);
}

/* sparse_ok for bits: the same decision as sparse_ok on the matrix's floats (every entry is 0
 * or 1; the density of the first rows from their popcounts). */
static bool sparse_ok_bits(const snn_spike_rows *xb, int M, int in, int out, bool scratch) {
    if (in % 64 || !sparse_sizes(M, in, out, scratch)) return false;
    const int rows = M < SP_PROBE_ROWS ? M : SP_PROBE_ROWS;
    uint32_t ones = 0;
    for (int m = 0; m < rows; m++) {
        const uint64_t *r = bit_row(xb, m, in);
        for (int w = 0; w < in / 64; w++) ones += (uint32_t)snn_popcount64(r[w]);
    }
    return (double)ones <= SP_MAX_DENSITY * ((double)rows * in);
}

/* The spike matrix of a sparse kernel: floats x [M, in], or bits xb (then x is NULL). */
typedef struct sp_src {
    const float *x;
    const snn_spike_rows *xb;
    int in;
} sp_src;

/* idx[0 .. k) = the columns i0 <= i < i1 of row m holding a nonzero, ascending, minus i0;
 * returns k. Floats: *bad |= some nonzero is not 1 (bits are 1 by construction). */
static inline __attribute__((always_inline)) int sp_row_indices(const sp_src *src, int m, int i0,
                                                               int i1, int *idx, int *bad) {
    if (src->x) {
        const float *xm = src->x + (size_t)m * src->in + i0;
        const int nnz = snn_nonzero_indices(xm, i1 - i0, idx);
        for (int t = 0; t < nnz; t++) *bad |= xm[idx[t]] != 1.0f;
        return nnz;
    }
    const uint64_t *r = bit_row(src->xb, m, src->in);
    int k = 0;
    for (int w = i0 / 64; w * 64 < i1; w++) {
        uint64_t word = r[w];
        const int lo = w * 64 < i0 ? i0 - w * 64 : 0, hi = (w + 1) * 64 > i1 ? i1 - w * 64 : 64;
        if (lo) word &= ~0ull << lo;
        if (hi < 64) word &= (1ull << hi) - 1;
        while (word) {
            idx[k++] = w * 64 + __builtin_ctzll(word) - i0;
            word &= word - 1;
        }
    }
    return k;
}

/* Asks for row m's entries [i0, i1) (a prefetch reads nothing). */
static inline void sp_prefetch_row(const sp_src *src, int m, int i0, int i1) {
    if (src->x)
        for (int t = i0; t < i1; t += 16) __builtin_prefetch(src->x + (size_t)m * src->in + t);
    else
        __builtin_prefetch(bit_row(src->xb, m, src->in) + i0 / 64);
}


/* Rows [m0, m1) of y = x w^T + b for a sparse binary x (see above); wt = w^T [in, out]. */
static inline __attribute__((always_inline)) int
linear_fwd_sparse_body(float *y, const sp_src *src, const float *wt, const float *b, int m0,
                       int m1, int in, int out, const bool wide) {
    int idx[SP_MAX_IN];
    int bad = 0;
    for (int m = m0; m < m1; m++) {
        const int nnz = sp_row_indices(src, m, 0, in, idx, &bad);
        float *ym = y + (size_t)m * out;
        int ob = 0;
        for (; !wide && ob + SP_OB <= out; ob += SP_OB) {
            float a[SP_OB];
            rows_sum64_narrow(a, wt + ob, (size_t)out, idx, NULL, nnz);
            for (int o = 0; o < SP_OB; o++) ym[ob + o] = b ? a[o] + b[ob + o] : a[o];
        }
        for (; ob + SP_OB <= out; ob += SP_OB) {
            v16f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
            for (int t = 0; t < nnz; t++) {
                const v16fu *r = (const v16fu *)(wt + (size_t)idx[t] * out + ob);
                a0 += r[0], a1 += r[1], a2 += r[2], a3 += r[3];
            }
            v16fu *yo = (v16fu *)(ym + ob);
            if (b) {
                const v16fu *bo = (const v16fu *)(b + ob);
                a0 += bo[0], a1 += bo[1], a2 += bo[2], a3 += bo[3];
            }
            yo[0] = a0, yo[1] = a1, yo[2] = a2, yo[3] = a3;
        }
        if (ob < out) {
            float acc[SP_OB];
            const int r = out - ob;
            for (int o = 0; o < r; o++) acc[o] = 0.0f;
            for (int t = 0; t < nnz; t++) {
                const float *wr = wt + (size_t)idx[t] * out + ob;
                for (int o = 0; o < r; o++) acc[o] += wr[o];
            }
            for (int o = 0; o < r; o++) ym[ob + o] = b ? acc[o] + b[ob + o] : acc[o];
        }
    }
    return bad;
}

/* linear_fwd_sparse_body with 16-float vectors (the AVX-512 variant runs this one) and with
 * 8-float ones: two functions, so that the AVX-512 code is what it was alone. */
static SNN_WIDE_FN SNN_VEC_FN int linear_fwd_sparse_wide(float *y, const sp_src *src,
                                                         const float *wt, const float *b, int m0,
                                                         int m1, int in, int out) {
    return linear_fwd_sparse_body(y, src, wt, b, m0, m1, in, out, true);
}
static SNN_WIDE_FN SNN_VEC_FN int linear_fwd_sparse_narrow(float *y, const sp_src *src,
                                                           const float *wt, const float *b,
                                                           int m0, int m1, int in, int out) {
    return linear_fwd_sparse_body(y, src, wt, b, m0, m1, in, out, false);
}
static int linear_fwd_sparse_rows(float *y, const sp_src *src, const float *wt, const float *b,
                                  int m0, int m1, int in, int out) {
    return snn_wide_avx512() ? linear_fwd_sparse_wide(y, src, wt, b, m0, m1, in, out)
                             : linear_fwd_sparse_narrow(y, src, wt, b, m0, m1, in, out);
}

/* y[m, :] += b for rows m < mc: after the product, while its rows are in cache (a bias written
 * into the rows before a product with beta = 1 cost a pass over cold memory, 2.4 % of an ANN
 * training step). */
static SNN_WIDE_FN SNN_VEC_FN void add_bias_rows(float *restrict y, const float *restrict b,
                                                 int mc, int out) {
    for (int m = 0; m < mc; m++)
        for (int o = 0; o < out; o++) y[(size_t)m * out + o] += b[o];
}

/* Rows [m0, m0 + mc) of y = x w^T + b by a dense product, then the bias: x wt with
 * wt = w^T [in, out] when the caller has it (snn_gemm's JIT kernels take no transposed second
 * operand), else x w^T. */
static void linear_fwd_rows_dense(float *y, const float *x, const float *w, const float *wt,
                                  const float *b, int m0, int mc, int in, int out) {
    float *yk = y + (size_t)m0 * out;
    snn_gemm(false, !wt, mc, out, in, 1.0f, x + (size_t)m0 * in, in, wt ? wt : w, wt ? out : in,
             0.0f, yk, out);
    if (b) add_bias_rows(yk, b, mc, out);
}

/* y = x w^T + b with the column sums of y for a training-mode BatchNorm (snn_linear_fwd_sums):
 * over BatchNorm's row blocks, each block's rows in chunks of at most SNN_LINEAR_ROW_CHUNK, each
 * chunk added to its block's sums right after it is written, while it is in cache. The rows come
 * from the spike path (src, wt = w^T) or the dense product (x, with wt when not NULL). Returns
 * false (y and sums garbage) if a spike entry is neither 0 nor 1. */
_Static_assert(SNN_LINEAR_ROW_CHUNK % BN_SUB == 0, "chunks add whole runs of a block's sums");
static void bn_normalise_chunk(const snn_bn_norm *nm, int m0, int m1, int C);
static bool linear_fwd_blocks(float *y, const float *x, const sp_src *src, const float *wt,
                              const float *w, const float *b, int M, int in, int out,
                              double *sums, const snn_bn_norm *x_norm, bool par) {
    (void)par; /* unused without OpenMP */
    int bad = 0;
    /* each thread the same end of the rows in every layer: par.h */
    snn_par_ends ends = snn_par_ends_of(BN_BLOCKS);
#pragma omp parallel if (par) reduction(| : bad)
    for (int bk; (bk = (int)snn_par_ends_next(&ends)) >= 0;) {
        const int m0 = bn_row0(bk, M), m1 = bn_row0(bk + 1, M);
        for (int r0 = m0; r0 < m1; r0 += SNN_LINEAR_ROW_CHUNK) {
            const int r1 = m1 - r0 < SNN_LINEAR_ROW_CHUNK ? m1 : r0 + SNN_LINEAR_ROW_CHUNK;
            if (x_norm) bn_normalise_chunk(x_norm, r0, r1, in); /* x's rows, then the product */
            if (src)
                bad |= linear_fwd_sparse_rows(y, src, wt, b, r0, r1, in, out);
            else
                linear_fwd_rows_dense(y, x, w, wt, b, r0, r1 - r0, in, out);
            bn_block_add_rows(sums, out, y, out, 0, out, bk, m0, r0, r1);
        }
    }
    return !bad;
}

/* wt = w^T: [in, out] from w [out, in] (wt holds in * out floats). */
static void transpose_w(float *wt, const float *w, int in, int out) {
    snn_transpose(out, in, w, in, wt, out, false);
}

/* y = x w^T + b for a sparse binary x (see above), wt = w^T [in, out], with BatchNorm's sums
 * when sums is not NULL (linear_fwd_blocks). Returns false (y garbage) if some entry of x is
 * neither 0 nor 1. */
static bool linear_fwd_sparse(float *y, const sp_src *src, const float *w, const float *wt,
                              const float *b, int M, int in, int out, bool par, double *sums) {
    (void)par; /* unused without OpenMP */
    if (sums) return linear_fwd_blocks(y, NULL, src, wt, w, b, M, in, out, sums, NULL, par);
    const int rows = linear_rows(M), nc = n_chunks(M, rows);
    int bad = 0;
    snn_par_ends ends_k = snn_par_ends_of(nc); /* par.h */
#pragma omp parallel if (par) reduction(| : bad)
    for (int k; (k = (int)snn_par_ends_next(&ends_k)) >= 0;) {
        const int m0 = k * rows;
        const int m1 = M - m0 < rows ? M : m0 + rows;
        bad |= linear_fwd_sparse_rows(y, src, wt, b, m0, m1, in, out);
    }
    return !bad;
}

/* dwt = sum over part `part` of the M rows with x[m, i] = 1 of dy[m, :] (float), dwt = dw^T
 * [in, out] written: rows in blocks of rb = SP_RB (fewer when in * SP_RB passes the list
 * buffer; at least 8, as in <= SP_MAX_IN), part k the blocks k, k + SP_DW_PARTS, ... (rows are
 * (t, b, n): alternate blocks give each part rows of every timestep, whose firing rates
 * differ, where halves of the rows had left one thread waiting on the other); in a block the
 * rows of each feature i are listed (m ascending) and their dy rows summed in registers, then
 * added to dw^T[i, :]; blocks in order. Returns whether an entry was neither 0 nor 1. */
enum { SP_RB = 128, SP_LIST = 32768 };
_Static_assert(SP_LIST / SP_MAX_IN >= 8 && SP_RB <= 256, "blocks of 8 to 256 rows (uint8 lists)");
static inline __attribute__((always_inline)) int
linear_dw_sparse_body(float *dwt, const float *dy, const sp_src *src, int M, int part, int in,
                      int out, const bool wide) {
    for (size_t t = 0; t < (size_t)in * out; t++) dwt[t] = 0.0f;
    const int rb = in * SP_RB <= SP_LIST ? SP_RB : SP_LIST / in;
    int idx[SP_MAX_IN];
    int bad = 0;
    uint8_t lst[SP_LIST]; /* lst[i * rb + t]: t-th row (offset in the block) of feature i */
    uint8_t cnt[SP_MAX_IN];
    const int o32 = out / 32 * 32;
    for (int m0 = part * rb; m0 < M; m0 += SP_DW_PARTS * rb) {
        const int m1 = M - m0 < rb ? M : m0 + rb;
        for (int i = 0; i < in; i++) cnt[i] = 0;
        for (int m = m0; m < m1; m++) {
            /* the x rows, and the dy rows of the block right after: the hardware prefetchers
             * follow neither */
            if (m + 8 < m1) sp_prefetch_row(src, m + 8, 0, in);
            for (int t = 0; t < out; t += 16) __builtin_prefetch(dy + (size_t)m * out + t);
            const int nnz = sp_row_indices(src, m, 0, in, idx, &bad);
            for (int t = 0; t < nnz; t++) {
                const int i = idx[t];
                lst[i * rb + cnt[i]++] = (uint8_t)(m - m0);
            }
        }
        for (int i = 0; i < in; i++) {
            const int c = cnt[i];
            if (!c) continue;
            const uint8_t *l = lst + i * rb;
            const float *dyb = dy + (size_t)m0 * out;
            float *d = dwt + (size_t)i * out;
            int ob = 0;
            for (; !wide && ob + 64 <= o32; ob += 64) {
                float a[64];
                rows_sum64_narrow(a, dyb + ob, (size_t)out, NULL, l, c);
                for (int o = 0; o < 64; o++) d[ob + o] += a[o];
            }
            /* 64 columns a pass (four independent sums: one pair's add latency bound the
             * pass), then 32 */
            for (; ob + 64 <= o32; ob += 64) {
                v16f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
                for (int t = 0; t < c; t++) {
                    const v16fu *r = (const v16fu *)(dyb + (size_t)l[t] * out + ob);
                    a0 += r[0], a1 += r[1], a2 += r[2], a3 += r[3];
                }
                v16fu *dd = (v16fu *)(d + ob);
                dd[0] += a0, dd[1] += a1, dd[2] += a2, dd[3] += a3;
            }
            for (; ob < o32; ob += 32) {
                v16f a0 = {0}, a1 = {0};
                for (int t = 0; t < c; t++) {
                    const v16fu *r = (const v16fu *)(dyb + (size_t)l[t] * out + ob);
                    a0 += r[0], a1 += r[1];
                }
                v16fu *dd = (v16fu *)(d + ob);
                dd[0] += a0, dd[1] += a1;
            }
            if (o32 < out) {
                float acc[32];
                for (int o = o32; o < out; o++) acc[o - o32] = 0.0f;
                for (int t = 0; t < c; t++) {
                    const float *r = dyb + (size_t)l[t] * out;
                    for (int o = o32; o < out; o++) acc[o - o32] += r[o];
                }
                for (int o = o32; o < out; o++) d[o] += acc[o - o32];
            }
        }
    }
    return bad;
}

/* linear_dw_sparse_body with 16-float and with 8-float vectors (see linear_fwd_sparse_rows). */
static SNN_WIDE_FN SNN_VEC_FN int linear_dw_sparse_wide(float *dwt, const float *dy,
                                                        const sp_src *src, int M, int part,
                                                        int in, int out) {
    return linear_dw_sparse_body(dwt, dy, src, M, part, in, out, true);
}
static SNN_WIDE_FN SNN_VEC_FN int linear_dw_sparse_narrow(float *dwt, const float *dy,
                                                          const sp_src *src, int M, int part,
                                                          int in, int out) {
    return linear_dw_sparse_body(dwt, dy, src, M, part, in, out, false);
}
static int linear_dw_sparse_part(float *dwt, const float *dy, const sp_src *src, int M, int part,
                                 int in, int out) {
    return snn_wide_avx512() ? linear_dw_sparse_wide(dwt, dy, src, M, part, in, out)
                             : linear_dw_sparse_narrow(dwt, dy, src, M, part, in, out);
}

/* dw += dy^T x for a sparse binary x (see above): SP_DW_PARTS fixed parts of the rows, each
 * summed into its own dw^T (linear_dw_sparse_part: every x and dy row is read once), then
 * dw += (part 0 + part 1 + ...), the parts added in order. The parts live in scratch
 * (SP_DW_PARTS in out floats) when given, else on the stack (in out <= SP_MAX_W). */
static bool linear_dw_sparse(float *dw, const float *dy, const sp_src *src, int M, int in,
                             int out, bool par, float *scratch) {
    (void)par; /* unused without OpenMP */
    _Static_assert(SP_DW_PARTS == 2, "the parts are added as p0 + p1 below");
    SNN_ASSERT(scratch || (size_t)in * out <= SP_MAX_W);
    float stack[SP_DW_PARTS][SP_MAX_W] __attribute__((aligned(64))); /* dw^T [in, out] sums */
    const size_t n = scratch ? (size_t)in * out : SP_MAX_W; /* floats from a part to the next */
    float *const dwt = scratch ? scratch : stack[0];
    int bad = 0;
    snn_par_ends ends_k = snn_par_ends_of(SP_DW_PARTS); /* par.h */
#pragma omp parallel if (par) reduction(| : bad)
    for (int k; (k = (int)snn_par_ends_next(&ends_k)) >= 0;)
        bad |= linear_dw_sparse_part(dwt + k * n, dy, src, M, k, in, out);
    if (bad) return false; /* dw untouched */
    for (int o = 0; o < out; o++)
        for (int i = 0; i < in; i++)
            dw[(size_t)o * in + i] += dwt[(size_t)i * out + o] + dwt[n + (size_t)i * out + o];
    return true;
}

size_t snn_linear_spike_scratch_floats(int in, int out) {
    return (size_t)SP_DW_PARTS * (size_t)in * (size_t)out;
}

/* An eval-mode BatchNorm run on each chunk of a dense product right after it (z = BatchNorm
 * of y, the per-channel doubles of bn_eval_coefs for all out channels). */
typedef struct bn_eval_epilogue {
    float *z;
    const double *mean, *scale, *shift;
    snn_bn_eval_post post;
} bn_eval_epilogue;
static void bn_eval_chunk(const bn_eval_epilogue *e, const float *y, int m0, int m1, int C);

/* snn_linear_fwd, and snn_linear_fwd_sums when sums is not NULL (with x_norm: x normalised
 * chunk by chunk, snn_linear_fwd_sums_norm); with epi (dense x only): epi's BatchNorm of each
 * chunk of y (snn_linear_bn_eval_fwd). */
static void linear_fwd(float *y, const float *x, const float *w, const float *b, int M, int in,
                       int out, double *sums, const snn_bn_norm *x_norm,
                       const bn_eval_epilogue *epi) {
    SNN_ASSERT(y && x && w && M >= 0 && in > 0 && out > 0);
    SNN_ASSERT(!x_norm || sums);
    snn_layers_init();
    const bool par = (size_t)M * in * out >= PAR_MIN_WORK;
    (void)par; /* unused without OpenMP */
    /* w^T for the spike path, and for snn_gemm's JIT kernels when there are rows enough to pay
     * for the transposition (a strided copy of in * out floats, which at batch 1's 49 rows
     * took as long as the product: ANN inference at batch 1 ran at half speed); otherwise, and
     * past SP_MAX_W, w itself (sgemm) */
    float wt_buf[SP_MAX_W] __attribute__((aligned(64)));
    const float *wt = NULL;
    const bool sparse = !x_norm && sparse_ok(x, M, in, out); /* x_norm: x not written yet */
    SNN_ASSERT(!epi || (!sparse && !sums));
    if ((size_t)in * out <= SP_MAX_W && (sparse || M >= SNN_LINEAR_WT_ROWS)) {
        transpose_w(wt_buf, w, in, out);
        wt = wt_buf;
    }
    const sp_src src = {x, NULL, in};
    if (sparse && linear_fwd_sparse(y, &src, w, wt, b, M, in, out, par, sums)) return;
    if (sums) {
        const bool ok = linear_fwd_blocks(y, x, NULL, wt, w, b, M, in, out, sums, x_norm, par);
        SNN_ASSERT(ok); /* dense rows never fail */
        return;
    }
    const int rows = linear_rows(M), nc = n_chunks(M, rows);
    snn_par_ends ends = snn_par_ends_of(nc);
#pragma omp parallel if (par)
    for (int k; (k = (int)snn_par_ends_next(&ends)) >= 0;) {
        const int m0 = k * rows, mc = M - m0 < rows ? M - m0 : rows;
        linear_fwd_rows_dense(y, x, w, wt, b, m0, mc, in, out);
        if (epi) bn_eval_chunk(epi, y, m0, m0 + mc, out);
    }
}

void snn_linear_fwd(float *y, const float *x, const float *w, const float *b, int M, int in,
                    int out) {
    linear_fwd(y, x, w, b, M, in, out, NULL, NULL, NULL);
}

void snn_linear_fwd_sums(float *y, const float *x, const float *w, const float *b, int M, int in,
                         int out, double *sums) {
    SNN_ASSERT(sums && M >= 1);
    linear_fwd(y, x, w, b, M, in, out, sums, NULL, NULL);
}

void snn_linear_fwd_sums_norm(float *y, const snn_bn_norm *x_norm, const float *w,
                              const float *b, int M, int in, int out, double *sums) {
    SNN_ASSERT(x_norm && x_norm->y && sums && M >= 1);
    linear_fwd(y, x_norm->y, w, b, M, in, out, sums, x_norm, NULL);
}

/* snn_linear_fwd_bits, and snn_linear_fwd_bits_sums when sums is not NULL. */
static bool linear_fwd_bits(float *y, const snn_spike_rows *x, const float *w, const float *b,
                            int M, int in, int out, double *sums, float *scratch) {
    SNN_ASSERT(y && x && x->nz && x->rows_per_t > 0 && w && M >= 0 && in > 0 && out > 0);
    if (!sparse_ok_bits(x, M, in, out, scratch)) return false;
    const sp_src src = {NULL, x, in};
    const bool par = (size_t)M * in * out >= PAR_MIN_WORK;
    float stack[SP_MAX_W] __attribute__((aligned(64)));
    float *const wt = scratch ? scratch : stack; /* w^T [in, out] */
    transpose_w(wt, w, in, out);
    const bool ok = linear_fwd_sparse(y, &src, w, wt, b, M, in, out, par, sums);
    SNN_ASSERT(ok); /* bits are 0 or 1 */
    return true;
}

bool snn_linear_fwd_bits(float *y, const snn_spike_rows *x, const float *w, const float *b, int M,
                         int in, int out, float *scratch) {
    return linear_fwd_bits(y, x, w, b, M, in, out, NULL, scratch);
}

bool snn_linear_fwd_bits_sums(float *y, const snn_spike_rows *x, const float *w, const float *b,
                              int M, int in, int out, double *sums, float *scratch) {
    SNN_ASSERT(sums && M >= 1);
    return linear_fwd_bits(y, x, w, b, M, in, out, sums, scratch);
}

/* Row blocks of the weight gradient's dense path: 1 up to SNN_LINEAR_DW_ROWS rows, else 4, or 8
 * past 4 of them (a multiple of 4, as snn_par_chunk; at most 8, which bounds the scratch).
 * Block k is BatchNorm's row blocks [k BN_BLOCKS / nb, (k + 1) BN_BLOCKS / nb) (dw_row0), so
 * that a BatchNorm backward can hand its input gradient to the products block by block
 * (snn_linear_bn_bwd). */
static int dw_blocks(int M) {
    return M <= SNN_LINEAR_DW_ROWS ? 1 : M <= 4 * SNN_LINEAR_DW_ROWS ? 4 : 8;
}
_Static_assert(BN_BLOCKS % 8 == 0, "weight-gradient blocks are unions of BatchNorm's");
static int dw_row0(int k, int nb, int M) { return bn_row0(k * (BN_BLOCKS / nb), M); }

size_t snn_linear_bwd_scratch_floats(int M, int in, int out) {
    return (size_t)(dw_blocks(M) - 1) * (size_t)in * (size_t)out;
}

/* dw[i] += part[0][i] + part[1][i] + ..., in block order, over [i0, i1). */
static SNN_WIDE_FN SNN_VEC_FN void add_parts(float *dw, const float *part, size_t n, int parts,
                                             size_t i0, size_t i1) {
    for (int k = 0; k < parts; k++) {
        const float *restrict pk = part + (size_t)k * n;
        float *restrict d = dw;
        for (size_t i = i0; i < i1; i++) d[i] += pk[i];
    }
}

/* dx[m, :] (+)= dy[m, :] w for rows [m0, m1), in products of at most SNN_LINEAR_ROW_CHUNK
 * rows (rows are independent: any chunking gives linear_bwd_dx's bytes). */
static void linear_dx_rows(float *dx, const float *dy, const float *w, int m0, int m1, int in,
                           int out, bool add) {
    for (int r0 = m0; r0 < m1; r0 += SNN_LINEAR_ROW_CHUNK) {
        const int rc = m1 - r0 < SNN_LINEAR_ROW_CHUNK ? m1 - r0 : SNN_LINEAR_ROW_CHUNK;
        snn_gemm(false, false, rc, in, out, 1.0f, dy + (size_t)r0 * out, out, w, in,
                 add ? 1.0f : 0.0f, dx + (size_t)r0 * in, in);
    }
}

/* dx += dy w, or dx = dy w when !add (row chunks: rows are independent). */
static void linear_bwd_dx(float *dx, const float *dy, const float *w, int M, int in, int out,
                          bool add, bool par) {
    (void)par; /* unused without OpenMP */
    const int rows = linear_rows(M), nc = n_chunks(M, rows);
    snn_par_ends ends_k = snn_par_ends_of(nc); /* par.h */
#pragma omp parallel if (par)
    for (int k; (k = (int)snn_par_ends_next(&ends_k)) >= 0;) {
        const int m0 = k * rows;
        linear_dx_rows(dx, dy, w, m0, M - m0 < rows ? M : m0 + rows, in, out, add);
    }
}

/* Weight-gradient block k, rows [m0, m1) (dw_row0): block 0 adds its dy^T x to dw, block k > 0
 * writes it into scratch part k - 1 (every block has rows: nb > 1 only past
 * SNN_LINEAR_DW_ROWS rows, where each of the 16 BatchNorm blocks has some). */
static void linear_dw_block(float *dw, const float *dy, const float *x, int m0, int m1, int in,
                            int out, float *scratch, int k) {
    SNN_ASSERT(m1 > m0);
    snn_gemm(true, false, out, in, m1 - m0, 1.0f, dy + (size_t)m0 * out, out, x + (size_t)m0 * in,
             in, k ? 0.0f : 1.0f, k ? scratch + (size_t)(k - 1) * in * out : dw, in);
}

/* dw += the scratch parts of blocks 1 .. nb - 1, in block order. */
static void linear_dw_add_blocks(float *dw, const float *scratch, int nb, int in, int out,
                                 bool par) {
    (void)par; /* unused without OpenMP */
    if (nb == 1) return;
    const size_t n = (size_t)in * out, ch = snn_par_chunk(n, 4096, 16);
    snn_par_ends ends_c = snn_par_ends_of((long)((n + ch - 1) / ch)); /* par.h */
#pragma omp parallel if (par)
    for (long c; (c = snn_par_ends_next(&ends_c)) >= 0;) {
        const size_t i0 = (size_t)c * ch, i1 = n - i0 < ch ? n : i0 + ch;
        add_parts(dw, scratch, n, nb - 1, i0, i1);
    }
}

/* dw += dy^T x by dense products over row blocks. Row block 0 adds its dy^T x straight into dw;
 * blocks 1.. write theirs into scratch, added after in block order. One product per block
 * reads each x row once (with OpenBLAS, chunks of output features packed all of x once per
 * chunk: a sixth of CAT training's sgemm time). */
static void linear_dw_dense(float *dw, const float *dy, const float *x, int M, int in, int out,
                            float *scratch, bool par) {
    (void)par; /* unused without OpenMP */
    const int nb = dw_blocks(M);
    SNN_ASSERT(nb == 1 || scratch);
    snn_par_ends ends_k = snn_par_ends_of(nb); /* par.h */
#pragma omp parallel if (par)
    for (int k; (k = (int)snn_par_ends_next(&ends_k)) >= 0;) {
        const int m0 = dw_row0(k, nb, M), m1 = dw_row0(k + 1, nb, M);
        linear_dw_block(dw, dy, x, m0, m1, in, out, scratch, k);
    }
    linear_dw_add_blocks(dw, scratch, nb, in, out, par);
}

/* db += sum over rows of dy (row blocks and float runs as for BatchNorm, bn_rows_sum). */
static void linear_bwd_db(float *db, const float *dy, int M, int out) {
    const bool par_db = (size_t)M * out >= PAR_MIN_WORK;
    for (int c0 = 0; c0 < out; c0 += BN_CW) {
        const int W = out - c0 < BN_CW ? out - c0 : BN_CW;
        double part[BN_BLOCKS][BN_CW];
        bn_block_sums(part, dy, M, out, c0, W, par_db);
        add_block_sums(db + c0, part, W);
    }
}

void snn_linear_bwd(float *dx, float *dw, float *db, const float *dy, const float *x,
                    const float *w, int M, int in, int out, float *scratch, bool add_dx) {
    SNN_ASSERT(dw && dy && x && M >= 0 && in > 0 && out > 0);
    SNN_ASSERT(!dx || w);
    snn_layers_init();
    const bool par = (size_t)M * in * out >= PAR_MIN_WORK;
    /* forward: y[m,o] = sum_i x[m,i] w[o,i] + b[o], so
     *   dx[m,i] += sum_o dy[m,o] w[o,i]        (dx = dy w)
     *   dw[o,i] += sum_m dy[m,o] x[m,i]        (dw = dy^T x: the spike path, else dense)
     *   db[o]   += sum_m dy[m,o] */
    if (dx) linear_bwd_dx(dx, dy, w, M, in, out, add_dx, par);
    if (M == 0) return;
    const sp_src src = {x, NULL, in};
    if (!sparse_ok(x, M, in, out) || !linear_dw_sparse(dw, dy, &src, M, in, out, par, NULL))
        linear_dw_dense(dw, dy, x, M, in, out, scratch, par);
    if (db) linear_bwd_db(db, dy, M, out);
}

bool snn_linear_bwd_bits(float *dx, float *dw, float *db, const float *dy,
                         const snn_spike_rows *x, const float *w, int M, int in, int out,
                         bool add_dx, float *scratch) {
    SNN_ASSERT(dw && dy && x && x->nz && x->rows_per_t > 0 && M >= 0 && in > 0 && out > 0);
    SNN_ASSERT(!dx || w);
    if (M == 0 || !sparse_ok_bits(x, M, in, out, scratch)) return false;
    snn_layers_init();
    const bool par = (size_t)M * in * out >= PAR_MIN_WORK;
    if (dx) linear_bwd_dx(dx, dy, w, M, in, out, add_dx, par);
    const sp_src src = {NULL, x, in};
    const bool ok = linear_dw_sparse(dw, dy, &src, M, in, out, par, scratch);
    SNN_ASSERT(ok); /* bits are 0 or 1 */
    if (db) linear_bwd_db(db, dy, M, out);
    return true;
}

/* ---- BatchNorm1d --------------------------------------------------------------------------- */

/* xhat of one element: float, as PyTorch (and as the backward recomputes it, bn_xhat_at). */
static inline float bn_xhat(float x, float mean, float rstd) { return (x - mean) * rstd; }

/* Rows [m0, m1) of the training-mode normalisation (see snn_bn_train_fwd); xhat (or NULL: not
 * stored) and y (or NULL); relu: y is max(BatchNorm's output, 0), as a ReLU on it
 * (x > 0 ? x : 0); res (or NULL): y is res + BatchNorm's output, a residual stream's sum.
 * y's xhat is the stored one's value (a register's float is the stored float). */
static SNN_WIDE_FN SNN_VEC_FN void bn_normalise_rows(float *y, float *xhat, const float *x,
                                             const float *mean, const float *rstd,
                                             const float *gamma, const float *beta, int m0,
                                             int m1, int C, bool relu, const float *res) {
    for (int m = m0; m < m1; m++) {
        const float *restrict xm = x + (size_t)m * C;
        float *restrict hm = xhat ? xhat + (size_t)m * C : NULL;
        float *restrict ym = y ? y + (size_t)m * C : NULL;
        if (hm)
            for (int c = 0; c < C; c++) hm[c] = bn_xhat(xm[c], mean[c], rstd[c]);
        if (!ym) continue;
        if (res) {
            const float *restrict rm = res + (size_t)m * C;
            for (int c = 0; c < C; c++)
                ym[c] = rm[c] + (gamma[c] * bn_xhat(xm[c], mean[c], rstd[c]) + beta[c]);
        } else if (relu) {
            for (int c = 0; c < C; c++) {
                const float v = gamma[c] * bn_xhat(xm[c], mean[c], rstd[c]) + beta[c];
                ym[c] = v > 0.0f ? v : 0.0f;
            }
        } else {
            for (int c = 0; c < C; c++)
                ym[c] = gamma[c] * bn_xhat(xm[c], mean[c], rstd[c]) + beta[c];
        }
    }
}

/* Rows [m0, m1) of nm's normalisation, C channels (linear_fwd_blocks' prologue). */
static void bn_normalise_chunk(const snn_bn_norm *nm, int m0, int m1, int C) {
    bn_normalise_rows(nm->y, NULL, nm->x, nm->mean, nm->rstd, nm->gamma, nm->beta, m0, m1, C,
                      nm->relu, nm->res);
}

/* The normalisation pass over M rows (element-wise, rows independent). */
static void bn_normalise(float *y, float *xhat, const float *x, const float *mean,
                         const float *rstd, const float *gamma, const float *beta, int M, int C,
                         bool relu, const float *res) {
    const bool par = (size_t)M * C >= PAR_MIN_WORK;
    (void)par; /* unused without OpenMP */
    const int nr = n_chunks(M, BN_ROWS);
    snn_par_ends ends_k = snn_par_ends_of(nr); /* par.h */
#pragma omp parallel if (par)
    for (int k; (k = (int)snn_par_ends_next(&ends_k)) >= 0;) {
        const int m0 = k * BN_ROWS, m1 = M - m0 < BN_ROWS ? M : m0 + BN_ROWS;
        bn_normalise_rows(y, xhat, x, mean, rstd, gamma, beta, m0, m1, C, relu, res);
    }
}

void snn_bn_train_normalise(float *y, float *xhat, const float *x, const float *mean,
                            const float *rstd, const float *gamma, const float *beta, int M,
                            int C, bool relu, const float *res) {
    SNN_ASSERT(y && x && mean && rstd && gamma && beta && M >= 0 && C > 0);
    SNN_ASSERT(!(relu && res));
    bn_normalise(y, xhat, x, mean, rstd, gamma, beta, M, C, relu, res);
}

/* The batch's shifted sums from every rank's (one collective): rank r's rows shifted by its
 * own first row K_r give s1_r, s2_r; shifted by rank 0's K_0 instead (the batch's first row,
 * as in one process), with d = K_r - K_0,
 *     s1 = sum_r s1_r + M_r d,   s2 = sum_r s2_r + 2 d s1_r + M_r d^2,
 * added in rank order. Every rank puts (M_r, K_r, s1_r, s2_r) in its own slot of a zeroed
 * buffer and the ordered sum adds exact zeros elsewhere: each rank receives the others' values
 * exactly. One rank: d = 0 and the sums are unchanged. On return s1, s2 and K are the batch's. */
static void bn_merge_ranks(double *s1, double *s2, double *K, int M, int W) {
    const int P = snn_dist_size(), me = snn_dist_rank();
    const size_t slot = 1 + 3 * (size_t)W;
    double *all = snn_xcalloc((size_t)P * slot, sizeof *all), *mine = all + (size_t)me * slot;
    mine[0] = (double)M;
    for (int j = 0; j < W; j++) {
        mine[1 + j] = K[j];
        mine[1 + W + j] = s1[j];
        mine[1 + 2 * W + j] = s2[j];
    }
    snn_dist_sum_f64(all, (size_t)P * slot);
    for (int j = 0; j < W; j++) {
        const double K0 = all[1 + j];
        double a = 0.0, b = 0.0;
        for (int r = 0; r < P; r++) {
            const double *v = all + (size_t)r * slot, Mr = v[0], d = v[1 + j] - K0;
            a += v[1 + W + j] + Mr * d;
            b += v[1 + 2 * W + j] + 2.0 * d * v[1 + W + j] + Mr * d * d;
        }
        K[j] = K0;
        s1[j] = a;
        s2[j] = b;
    }
    free(all);
}

/* The batch's statistics of channels [c0, c0 + W) from their per-block sums (a buffer of Cs
 * channels, see bn_sums_at) over this rank's M >= 1 rows; Mg as in bn_train_fwd. The blocks'
 * sums are moved to the shift K_0 of the first block with rows (its first row is row 0) and
 * added in block order, empty blocks skipped: with d = K_b - K_0 (exact in double),
 *     s1 = sum_b s1_b + M_b d,   s2 = sum_b s2_b + 2 d s1_b + M_b d^2,
 * then mean = K_0 + s1 / M and M var = s2 - s1^2 / M (clamped at 0): a constant column gives
 * exactly its value and variance 0. */
static void bn_stats_of_sums(const double *sums, int Cs, int M, long Mg, int c0, int W,
                             float *mean, float *rstd, float *running_mean, float *running_var,
                             float momentum, float eps) {
    const bool dist = Mg > 0;
    const double Md = dist ? (double)Mg : (double)M; /* rows in the batch */
    double s12[2][BN_CW], K[BN_CW]; /* per channel of a super-chunk */
    int b0 = 0; /* the first block with rows (holds row 0): fewer rows than blocks leave some empty */
    while (bn_row0(b0 + 1, M) == bn_row0(b0, M)) b0++;
    double Mb[BN_BLOCKS]; /* rows per block (two integer divisions each: not per channel) */
    for (int b = 0; b < BN_BLOCKS; b++) Mb[b] = (double)(bn_row0(b + 1, M) - bn_row0(b, M));
    for (int j0 = 0; j0 < W; j0 += BN_CW) {
        const int w = W - j0 < BN_CW ? W - j0 : BN_CW;
        for (int j = 0; j < w; j++) {
            K[j] = sums[bn_sums_at(b0, 2, Cs) + j0 + j];
            s12[0][j] = s12[1][j] = 0.0;
        }
        /* blocks in order for every channel, the channels side by side */
        for (int b = 0; b < BN_BLOCKS; b++) {
            if (Mb[b] == 0.0) continue; /* fewer rows than blocks */
            const double *s1b = sums + bn_sums_at(b, 0, Cs) + j0;
            const double *s2b = sums + bn_sums_at(b, 1, Cs) + j0;
            const double *Kb = sums + bn_sums_at(b, 2, Cs) + j0;
            for (int j = 0; j < w; j++) {
                const double d = Kb[j] - K[j];
                s12[0][j] += s1b[j] + Mb[b] * d;
                s12[1][j] += s2b[j] + 2.0 * d * s1b[j] + Mb[b] * d * d;
            }
        }
        if (dist) bn_merge_ranks(s12[0], s12[1], K, M, w);
        for (int j = 0; j < w; j++) {
            const double s1 = s12[0][j], s2 = s12[1][j];
            const int c = c0 + j0 + j;
            const double mu = K[j] + s1 / Md;
            double q = s2 - s1 * s1 / Md; /* sum of squared deviations from the mean */
            if (q < 0.0) q = 0.0;
            const double var = q / Md; /* biased: normalises */
            mean[c] = (float)mu;
            rstd[c] = (float)(1.0 / sqrt(var + (double)eps));
            if (running_mean) {
                const double unbiased = q / (Md - 1.0);
                const double mo = (double)momentum;
                running_mean[c] = (float)((1.0 - mo) * (double)running_mean[c] + mo * mu);
                running_var[c] = (float)((1.0 - mo) * (double)running_var[c] + mo * unbiased);
            }
        }
    }
}

/* The forward over this rank's M rows; Mg = 0: the batch is these rows, else the batch is Mg
 * rows over every rank (snn_bn_train_fwd_dist). sums: the per-block sums of x (gathered by
 * snn_linear_fwd_sums), or NULL to compute them here. */
static void bn_train_fwd(float *y, float *xhat, float *mean, float *rstd, const float *x,
                         const float *gamma, const float *beta, float *running_mean,
                         float *running_var, int M, long Mg, int C, float momentum, float eps,
                         const double *sums) {
    /* y and xhat may each be NULL; both, for the statistics alone */
    SNN_ASSERT(mean && rstd && x && gamma && beta && C > 0);
    const bool dist = Mg > 0;
    /* PyTorch: "Expected more than 1 value per channel when training" */
    SNN_ASSERT(dist ? Mg >= 2 && M >= 1 : M >= 2);
    SNN_ASSERT((running_mean == NULL) == (running_var == NULL));
    const bool par = (size_t)M * C >= PAR_MIN_WORK;
    (void)par; /* unused without OpenMP */
    /* Statistics: per row block (BN_BLOCKS), one pass over the block's rows shifted by its
     * first row (bn_rows_shifted), then the blocks combined in order (bn_stats_of_sums). */
    if (sums) {
        bn_stats_of_sums(sums, C, M, Mg, 0, C, mean, rstd, running_mean, running_var,
                         momentum, eps);
    } else {
        for (int c0 = 0; c0 < C; c0 += BN_CW) {
            const int W = C - c0 < BN_CW ? C - c0 : BN_CW;
            double part[3 * BN_BLOCKS * BN_CW];
            snn_par_ends ends_b = snn_par_ends_of(BN_BLOCKS); /* par.h */
#pragma omp parallel if (par)
            for (int b; (b = (int)snn_par_ends_next(&ends_b)) >= 0;) {
                const int m0 = bn_row0(b, M), m1 = bn_row0(b + 1, M);
                if (m1 > m0) bn_block_add_rows(part, BN_CW, x, C, c0, W, b, m0, m0, m1);
            }
            bn_stats_of_sums(part, BN_CW, M, Mg, c0, W, mean, rstd, running_mean, running_var,
                             momentum, eps);
        }
    }
    /* Normalise: element-wise in float (PyTorch's CPU kernel is float too), rows are
     * independent; the backward sees exactly the forward's xhat, stored or recomputed. */
    if (y || xhat) bn_normalise(y, xhat, x, mean, rstd, gamma, beta, M, C, false, NULL);
}

void snn_bn_train_fwd(float *y, float *xhat, float *mean, float *rstd, const float *x,
                      const float *gamma, const float *beta, float *running_mean,
                      float *running_var, int M, int C, float momentum, float eps) {
    bn_train_fwd(y, xhat, mean, rstd, x, gamma, beta, running_mean, running_var, M, 0, C,
                 momentum, eps, NULL);
}

void snn_bn_train_fwd_sums(float *y, float *xhat, float *mean, float *rstd, const float *x,
                           const float *gamma, const float *beta, float *running_mean,
                           float *running_var, int M, long M_batch, int C, float momentum,
                           float eps, const double *sums) {
    SNN_ASSERT(sums && (M_batch == 0 || M_batch >= M));
    bn_train_fwd(y, xhat, mean, rstd, x, gamma, beta, running_mean, running_var, M, M_batch, C,
                 momentum, eps, sums);
}

void snn_bn_train_fwd_dist(float *y, float *xhat, float *mean, float *rstd, const float *x,
                           const float *gamma, const float *beta, float *running_mean,
                           float *running_var, int M, long M_batch, int C, float momentum,
                           float eps) {
    SNN_ASSERT(M_batch >= M);
    bn_train_fwd(y, xhat, mean, rstd, x, gamma, beta, running_mean, running_var, M, M_batch, C,
                 momentum, eps, NULL);
}

/* xhat at row m, channel c0 + j for the backward: stored (mean NULL: h is xhat), or
 * recomputed from the forward's input (h is x) with the forward's operations (bn_xhat): the
 * same bits. */
static inline __attribute__((always_inline)) float bn_xhat_at(const float *restrict hm,
                                                              const float *mean,
                                                              const float *rstd, int j,
                                                              bool raw) {
    return raw ? bn_xhat(hm[j], mean[j], rstd[j]) : hm[j];
}

/* The gradient on BatchNorm's output at (m, c0 + j) from dym, that on its output or (relu) on
 * the ReLU after it: then dy where the forward's BatchNorm output gamma xhat + beta (computed
 * as bn_normalise_rows does: the same bits) is > 0, else 0, plus 0 (relu_bwd_rows' bytes). */
static inline __attribute__((always_inline)) float bn_dy_at(const float *restrict dym, float xh,
                                                            const float *gamma,
                                                            const float *beta, int j,
                                                            bool relu) {
    if (!relu) return dym[j];
    const float v = gamma[j] * xh + beta[j];
    return 0.0f + (v > 0.0f ? dym[j] : 0.0f);
}

/* Column sums of rows [m0, m1) (see snn_bn_train_bwd): runs of BN_SUB rows in float, each run
 * added to the double ad[j] (sum of dy) and adh[j] (sum of dy xhat); h: xhat, or (raw) x with
 * the forward's mean and rstd of the W channels; relu: dy through the ReLU (bn_dy_at) with
 * gamma, beta of the W channels. */
static inline __attribute__((always_inline)) void
bn_bwd_rows_sum_body(double *restrict ad, double *restrict adh, const float *dy, const float *h,
                     const float *mean, const float *rstd, const float *gamma, const float *beta,
                     int m0, int m1, int C, int c0, int W, bool raw, bool relu) {
    float fs[BN_CW], fsh[BN_CW];
    for (int j = 0; j < W; j++) ad[j] = adh[j] = 0.0;
    for (int r0 = m0; r0 < m1; r0 += BN_SUB) {
        const int re = m1 - r0 < BN_SUB ? m1 : r0 + BN_SUB;
        for (int j = 0; j < W; j++) fs[j] = fsh[j] = 0.0f;
        for (int m = r0; m < re; m++) {
            const float *restrict dym = dy + (size_t)m * C + c0;
            const float *restrict hm = h + (size_t)m * C + c0;
            for (int j = 0; j < W; j++) {
                const float xh = bn_xhat_at(hm, mean, rstd, j, raw);
                const float d = bn_dy_at(dym, xh, gamma, beta, j, relu);
                fs[j] += d;
                fsh[j] += d * xh;
            }
        }
        for (int j = 0; j < W; j++) {
            ad[j] += (double)fs[j];
            adh[j] += (double)fsh[j];
        }
    }
}
static SNN_WIDE_FN SNN_VEC_FN void bn_bwd_rows_sum(double *restrict ad, double *restrict adh,
                                                   const float *dy, const float *xhat, int m0,
                                                   int m1, int C, int c0, int W) {
    bn_bwd_rows_sum_body(ad, adh, dy, xhat, NULL, NULL, NULL, NULL, m0, m1, C, c0, W, false,
                         false);
}
/* The same on x; beta not NULL: through the ReLU (mean, rstd, gamma, beta from channel c0). */
static SNN_WIDE_FN SNN_VEC_FN void bn_bwd_rows_sum_raw(double *restrict ad, double *restrict adh,
                                                       const float *dy, const float *x,
                                                       const float *mean, const float *rstd,
                                                       const float *gamma, const float *beta,
                                                       int m0, int m1, int C, int c0, int W) {
    if (beta)
        bn_bwd_rows_sum_body(ad, adh, dy, x, mean, rstd, gamma, beta, m0, m1, C, c0, W, true,
                             true);
    else
        bn_bwd_rows_sum_body(ad, adh, dy, x, mean, rstd, NULL, NULL, m0, m1, C, c0, W, true,
                             false);
}

/* dx[m, c0 + j] += g[j] (dy - a[j] - xhat bh[j]) for rows [m0, m1), float (= when !add); h,
 * relu as for bn_bwd_rows_sum_body. */
static inline __attribute__((always_inline)) void
bn_bwd_rows_dx_body(float *dx, const float *dy, const float *h, const float *mean,
                    const float *rstd, const float *gamma, const float *beta, const float *g,
                    const float *a, const float *bh, int m0, int m1, int C, int c0, int W,
                    bool add, bool raw, bool relu) {
    for (int m = m0; m < m1; m++) {
        const float *restrict dym = dy + (size_t)m * C + c0;
        const float *restrict hm = h + (size_t)m * C + c0;
        float *restrict dxm = dx + (size_t)m * C + c0;
        for (int j = 0; j < W; j++) {
            const float xh = bn_xhat_at(hm, mean, rstd, j, raw);
            const float v = g[j] * (bn_dy_at(dym, xh, gamma, beta, j, relu) - a[j] - xh * bh[j]);
            dxm[j] = add ? dxm[j] + v : v;
        }
    }
}
static SNN_WIDE_FN SNN_VEC_FN void bn_bwd_rows_dx(float *dx, const float *dy, const float *xhat,
                                                  const float *g, const float *a,
                                                  const float *bh, int m0, int m1, int C, int c0,
                                                  int W, bool add) {
    if (add)
        bn_bwd_rows_dx_body(dx, dy, xhat, NULL, NULL, NULL, NULL, g, a, bh, m0, m1, C, c0, W,
                            true, false, false);
    else
        bn_bwd_rows_dx_body(dx, dy, xhat, NULL, NULL, NULL, NULL, g, a, bh, m0, m1, C, c0, W,
                            false, false, false);
}
/* The same on x; beta not NULL: through the ReLU (as bn_bwd_rows_sum_raw). */
static SNN_WIDE_FN SNN_VEC_FN void bn_bwd_rows_dx_raw(float *dx, const float *dy, const float *x,
                                                      const float *mean, const float *rstd,
                                                      const float *gamma, const float *beta,
                                                      const float *g, const float *a,
                                                      const float *bh, int m0, int m1, int C,
                                                      int c0, int W, bool add) {
    if (beta && !add)
        bn_bwd_rows_dx_body(dx, dy, x, mean, rstd, gamma, beta, g, a, bh, m0, m1, C, c0, W,
                            false, true, true);
    else if (beta)
        bn_bwd_rows_dx_body(dx, dy, x, mean, rstd, gamma, beta, g, a, bh, m0, m1, C, c0, W,
                            true, true, true);
    else if (add)
        bn_bwd_rows_dx_body(dx, dy, x, mean, rstd, NULL, NULL, g, a, bh, m0, m1, C, c0, W,
                            true, true, false);
    else
        bn_bwd_rows_dx_body(dx, dy, x, mean, rstd, NULL, NULL, g, a, bh, m0, m1, C, c0, W,
                            false, true, false);
}

/* bn_bwd_rows_dx of rows [m0, m1), channels [c0, c0 + W), on what bs saved (xhat, or x and
 * its statistics; through the ReLU with relu_beta); g, a, bh from bn_bwd_coefs. */
static void bn_bwd_dx_of(float *dx, const float *dy, const snn_bn_saved *bs, const float *g,
                         const float *a, const float *bh, int m0, int m1, int C, int c0, int W,
                         bool add) {
    if (bs->mean)
        bn_bwd_rows_dx_raw(dx, dy, bs->h, bs->mean + c0, bs->rstd + c0, bs->gamma + c0,
                           bs->relu_beta ? bs->relu_beta + c0 : NULL, g, a, bh, m0, m1, C, c0, W,
                           add);
    else
        bn_bwd_rows_dx(dx, dy, bs->h, g, a, bh, m0, m1, C, c0, W, add);
}

/* The backward's coefficients of channels [c0, c0 + W) (see bn_train_bwd): the column sums of
 * dy and dy xhat over BatchNorm's row blocks, added to dbeta and dgamma (this rank's), summed
 * over the ranks when Mg > 0; then g = gamma rstd, a = sum dy / M, bh = sum dy xhat / M, for
 * dx = g (dy - a - xhat bh). */
static void bn_bwd_coefs(float *g, float *a, float *bh, float *dgamma, float *dbeta,
                         const float *dy, const snn_bn_saved *bs, int M, long Mg, int C, int c0,
                         int W, bool par) {
    (void)par; /* unused without OpenMP */
    const double Md = Mg > 0 ? (double)Mg : (double)M;
    double psd[BN_BLOCKS][BN_CW], psdh[BN_BLOCKS][BN_CW];
    snn_par_ends ends_b = snn_par_ends_of(BN_BLOCKS); /* par.h */
#pragma omp parallel if (par)
    for (int b; (b = (int)snn_par_ends_next(&ends_b)) >= 0;) {
        const int m0 = bn_row0(b, M), m1 = bn_row0(b + 1, M);
        if (bs->mean)
            bn_bwd_rows_sum_raw(psd[b], psdh[b], dy, bs->h, bs->mean + c0, bs->rstd + c0,
                                bs->gamma + c0, bs->relu_beta ? bs->relu_beta + c0 : NULL, m0,
                                m1, C, c0, W);
        else
            bn_bwd_rows_sum(psd[b], psdh[b], dy, bs->h, m0, m1, C, c0, W);
    }
    double s[2 * BN_CW]; /* sum dy [W], then sum dy xhat [W] per channel */
    for (int j = 0; j < W; j++) {
        double sd = 0.0, sdh = 0.0;
        for (int b = 0; b < BN_BLOCKS; b++) {
            sd += psd[b][j];
            sdh += psdh[b][j];
        }
        /* this rank's sums: the gradients are summed over ranks later, with the rest */
        dbeta[c0 + j] += (float)sd;
        dgamma[c0 + j] += (float)sdh;
        s[j] = sd;
        s[W + j] = sdh;
    }
    if (Mg > 0) snn_dist_sum_f64(s, 2 * (size_t)W); /* dx needs the batch's sums */
    for (int j = 0; j < W; j++) {
        g[j] = (float)((double)bs->gamma[c0 + j] * (double)bs->rstd[c0 + j]);
        a[j] = (float)(s[j] / Md);
        bh[j] = (float)(s[W + j] / Md);
    }
}


/* The backward over this rank's M rows; Mg as in bn_train_fwd. dx_sum (with dx written, not
 * added): dx_sum[c] += the column sums of dx, from the dx pass (see snn_bn_train_bwd_sum). */
static void bn_train_bwd(float *dx, float *dgamma, float *dbeta, const float *dy,
                         const snn_bn_saved *bs, int M, long Mg, int C, bool add_dx,
                         float *dx_sum) {
    SNN_ASSERT(dgamma && dbeta && dy && bs->h && bs->rstd && bs->gamma && M >= 1 && C > 0);
    SNN_ASSERT(!bs->relu_beta || bs->mean);
    SNN_ASSERT(!dx_sum || (dx && !add_dx));
    /* forward: xhat = (x - mean) rstd with mean, rstd functions of the whole column;
     *          y = gamma xhat + beta. With g = dy gamma (d loss / d xhat):
     *   dx = rstd (g - mean_m(g) - xhat mean_m(g xhat))
     *      = gamma rstd (dy - sum_m(dy) / M - xhat sum_m(dy xhat) / M)
     * Column sums: per row block (see BN_BLOCKS), runs of BN_SUB rows are summed in float
     * (products dy xhat in float), each run is added to a double accumulator, and the blocks'
     * doubles are added in block order (bn_bwd_coefs). Then dx, element-wise in float. The dx
     * coefficients use this call's sums, not the accumulated dgamma/dbeta. */
    const bool par = (size_t)M * C >= PAR_MIN_WORK;
    (void)par; /* unused without OpenMP */
    for (int c0 = 0; c0 < C; c0 += BN_CW) {
        const int W = C - c0 < BN_CW ? C - c0 : BN_CW;
        float g[BN_CW], a[BN_CW], bh[BN_CW];
        bn_bwd_coefs(g, a, bh, dgamma, dbeta, dy, bs, M, Mg, C, c0, W, par);
        if (!dx) continue;
        if (dx_sum) { /* in row blocks: each block's dx, then its sums while it is in cache
                       * (bn_rows_sum: linear_bwd_db's bytes by construction) */
            double part[BN_BLOCKS][BN_CW];
            snn_par_ends ends_b = snn_par_ends_of(BN_BLOCKS); /* par.h */
#pragma omp parallel if (par)
            for (int b; (b = (int)snn_par_ends_next(&ends_b)) >= 0;) {
                const int m0 = bn_row0(b, M), m1 = bn_row0(b + 1, M);
                bn_bwd_dx_of(dx, dy, bs, g, a, bh, m0, m1, C, c0, W, false);
                bn_rows_sum(part[b], dx, m0, m1, C, c0, W);
            }
            add_block_sums(dx_sum + c0, part, W);
            continue;
        }
        const int nr = n_chunks(M, BN_ROWS);
        snn_par_ends ends_k = snn_par_ends_of(nr); /* par.h */
#pragma omp parallel if (par)
        for (int k; (k = (int)snn_par_ends_next(&ends_k)) >= 0;) {
            const int m0 = k * BN_ROWS, m1 = M - m0 < BN_ROWS ? M : m0 + BN_ROWS;
            bn_bwd_dx_of(dx, dy, bs, g, a, bh, m0, m1, C, c0, W, add_dx);
        }
    }
}

void snn_bn_train_bwd(float *dx, float *dgamma, float *dbeta, const float *dy, const float *xhat,
                      const float *rstd, const float *gamma, int M, int C, bool add_dx) {
    const snn_bn_saved bs = {xhat, NULL, rstd, gamma, NULL};
    bn_train_bwd(dx, dgamma, dbeta, dy, &bs, M, 0, C, add_dx, NULL);
}

void snn_bn_train_bwd_sum(float *dx, float *dx_sum, float *dgamma, float *dbeta,
                          const float *dy, const float *xhat, const float *rstd,
                          const float *gamma, int M, long M_batch, int C) {
    SNN_ASSERT(dx && dx_sum && (M_batch == 0 || M_batch >= M));
    const snn_bn_saved bs = {xhat, NULL, rstd, gamma, NULL};
    bn_train_bwd(dx, dgamma, dbeta, dy, &bs, M, M_batch, C, false, dx_sum);
}

void snn_bn_train_bwd_dist(float *dx, float *dgamma, float *dbeta, const float *dy,
                           const float *xhat, const float *rstd, const float *gamma, int M,
                           long M_batch, int C, bool add_dx) {
    SNN_ASSERT(M_batch >= M);
    const snn_bn_saved bs = {xhat, NULL, rstd, gamma, NULL};
    bn_train_bwd(dx, dgamma, dbeta, dy, &bs, M, M_batch, C, add_dx, NULL);
}

void snn_bn_train_bwd_x(float *dx, float *dx_sum, float *dgamma, float *dbeta, const float *dy,
                        const float *x, const float *mean, const float *rstd, const float *gamma,
                        const float *relu_beta, int M, long M_batch, int C, bool add_dx) {
    SNN_ASSERT(x && mean && M_batch >= 0 && (M_batch == 0 || M_batch >= M));
    SNN_ASSERT(!dx_sum || (dx && !add_dx));
    const snn_bn_saved bs = {x, mean, rstd, gamma, relu_beta};
    bn_train_bwd(dx, dgamma, dbeta, dy, &bs, M, M_batch, C, add_dx, dx_sum);
}

void snn_linear_bn_bwd(float *dx, float *dw, float *db, float *dgamma, float *dbeta,
                       float *dy_lin, const float *dz, const snn_bn_saved *bs, const float *x,
                       const float *w, int M, long M_batch, int in, int out, float *scratch,
                       bool add_dx) {
    SNN_ASSERT(dw && dgamma && dbeta && dy_lin && dz && bs && x && M >= 1 && in > 0 && out > 0);
    SNN_ASSERT(!dx || w);
    SNN_ASSERT(M_batch == 0 || M_batch >= M);
    snn_layers_init();
    const int nb = dw_blocks(M);
    /* one weight-gradient block (small M), channels past one super-chunk, or spikes (the
     * weight gradient's spike path): the two backwards one after the other */
    if (nb == 1 || out > BN_CW || sparse_ok(x, M, in, out)) {
        bn_train_bwd(dy_lin, dgamma, dbeta, dz, bs, M, M_batch, out, false, db);
        snn_linear_bwd(dx, dw, NULL, dy_lin, x, w, M, in, out, scratch, add_dx);
        return;
    }
    SNN_ASSERT(scratch);
    const bool par = (size_t)M * out >= PAR_MIN_WORK;
    float g[BN_CW], a[BN_CW], bh[BN_CW];
    bn_bwd_coefs(g, a, bh, dgamma, dbeta, dz, bs, M, M_batch, out, 0, out, par);
    /* weight-gradient block by block (each a union of BatchNorm's row blocks): its rows of
     * BatchNorm's dx into dy_lin (with their column sums for db, as bn_train_bwd's), then the
     * layer's dx and the block's dw products on them while they are in cache */
    double part[BN_BLOCKS][BN_CW];
    snn_par_ends ends_k = snn_par_ends_of(nb); /* par.h */
#pragma omp parallel if (par)
    for (int k; (k = (int)snn_par_ends_next(&ends_k)) >= 0;) {
        for (int b = k * (BN_BLOCKS / nb); b < (k + 1) * (BN_BLOCKS / nb); b++) {
            const int m0 = bn_row0(b, M), m1 = bn_row0(b + 1, M);
            bn_bwd_dx_of(dy_lin, dz, bs, g, a, bh, m0, m1, out, 0, out, false);
            if (db) bn_rows_sum(part[b], dy_lin, m0, m1, out, 0, out);
        }
        const int m0 = dw_row0(k, nb, M), m1 = dw_row0(k + 1, nb, M);
        if (dx) linear_dx_rows(dx, dy_lin, w, m0, m1, in, out, add_dx);
        linear_dw_block(dw, dy_lin, x, m0, m1, in, out, scratch, k);
    }
    linear_dw_add_blocks(dw, scratch, nb, in, out, par);
    if (db) add_block_sums(db, part, out);
}

bool snn_linear_bn_bwd_bits(float *dx, float *dw, float *db, float *dgamma, float *dbeta,
                            float *dy_lin, const float *dz, const snn_bn_saved *bs,
                            const snn_spike_rows *x, const float *w, int M, long M_batch, int in,
                            int out, bool add_dx, float *scratch) {
    SNN_ASSERT(dw && dgamma && dbeta && dy_lin && dz && bs && x && x->nz && M >= 1 && in > 0 &&
               out > 0);
    SNN_ASSERT(!dx || w);
    SNN_ASSERT(M_batch == 0 || M_batch >= M);
    if (!sparse_ok_bits(x, M, in, out, scratch)) return false; /* nothing written */
    snn_layers_init();
    const sp_src src = {NULL, x, in};
    const bool par = (size_t)M * out >= PAR_MIN_WORK;
    if (out > BN_CW) { /* channels past one super-chunk: the two backwards one after the other */
        bn_train_bwd(dy_lin, dgamma, dbeta, dz, bs, M, M_batch, out, false, db);
        if (dx) linear_bwd_dx(dx, dy_lin, w, M, in, out, add_dx, par);
    } else {
        float g[BN_CW], a[BN_CW], bh[BN_CW];
        bn_bwd_coefs(g, a, bh, dgamma, dbeta, dz, bs, M, M_batch, out, 0, out, par);
        /* BatchNorm's row blocks: their rows of BatchNorm's dx into dy_lin (with their column
         * sums for db, as bn_train_bwd's), then the layer's dx product on them in cache */
        double part[BN_BLOCKS][BN_CW];
        snn_par_ends ends_b = snn_par_ends_of(BN_BLOCKS); /* par.h */
#pragma omp parallel if (par)
        for (int b; (b = (int)snn_par_ends_next(&ends_b)) >= 0;) {
            const int m0 = bn_row0(b, M), m1 = bn_row0(b + 1, M);
            bn_bwd_dx_of(dy_lin, dz, bs, g, a, bh, m0, m1, out, 0, out, false);
            if (db) bn_rows_sum(part[b], dy_lin, m0, m1, out, 0, out);
            if (dx) linear_dx_rows(dx, dy_lin, w, m0, m1, in, out, add_dx);
        }
        if (db) add_block_sums(db, part, out);
    }
    const bool ok = linear_dw_sparse(dw, dy_lin, &src, M, in, out, par, scratch);
    SNN_ASSERT(ok); /* bits are 0 or 1 */
    return true;
}

/* Rows [m0, m1) of the eval-mode BatchNorm over W channels (x, y and res offset to the block),
 * then relu and res (snn_bn_eval_post's). */
static inline __attribute__((always_inline)) void
bn_eval_rows_body(float *y, const float *x, const double *restrict mean,
                  const double *restrict scale, const double *restrict shift, int m0, int m1,
                  int C, int W, const bool relu, const float *res) {
    for (int m = m0; m < m1; m++) {
        const float *restrict xm = x + (size_t)m * C;
        float *ym = y + (size_t)m * C;              /* may be res itself (add3's out = a) */
        const float *rm = res ? res + (size_t)m * C : NULL;
        for (int j = 0; j < W; j++) {
            float v = (float)(((double)xm[j] - mean[j]) * scale[j] + shift[j]);
            if (relu) v = v > 0.0f ? v : 0.0f;
            ym[j] = res ? rm[j] + v : v;
        }
    }
}
static SNN_WIDE_FN SNN_VEC_FN void bn_eval_rows(float *y, const float *x,
                                                const double *restrict mean,
                                                const double *restrict scale,
                                                const double *restrict shift, int m0, int m1,
                                                int C, int W, const snn_bn_eval_post *post,
                                                int c0) {
    if (post->res) /* the block's channels of res, as x and y */
        bn_eval_rows_body(y, x, mean, scale, shift, m0, m1, C, W, false, post->res + c0);
    else if (post->relu)
        bn_eval_rows_body(y, x, mean, scale, shift, m0, m1, C, W, true, NULL);
    else
        bn_eval_rows_body(y, x, mean, scale, shift, m0, m1, C, W, false, NULL);
}

/* The eval-mode BatchNorm's per-channel doubles of channels [c0, c0 + W): the running mean, the
 * scale gamma / sqrt(var + eps) and the shift beta. Hoisted out of the row loops (the same
 * double arithmetic, so the same bits): computed per element it was a double sqrt and divide
 * each, 38 % of an ANN's inference time. */
enum { EVAL_CW = 64 };
static void bn_eval_coefs(double *mean, double *scale, double *shift, const float *gamma,
                          const float *beta, const float *running_mean,
                          const float *running_var, float eps, int c0, int W) {
    for (int j = 0; j < W; j++) {
        mean[j] = (double)running_mean[c0 + j];
        scale[j] = (double)gamma[c0 + j] / sqrt((double)running_var[c0 + j] + (double)eps);
        shift[j] = (double)beta[c0 + j];
    }
}

void snn_bn_eval_fwd(float *y, const float *x, const float *gamma, const float *beta,
                     const float *running_mean, const float *running_var, int M, int C,
                     float eps) {
    snn_bn_eval_fwd_post(y, x, gamma, beta, running_mean, running_var, M, C, eps,
                         &(snn_bn_eval_post){false, NULL});
}

void snn_bn_eval_fwd_post(float *y, const float *x, const float *gamma, const float *beta,
                          const float *running_mean, const float *running_var, int M, int C,
                          float eps, const snn_bn_eval_post *post) {
    SNN_ASSERT(y && x && gamma && beta && running_mean && running_var && M >= 0 && C > 0);
    SNN_ASSERT(!(post->relu && post->res)); /* one post-op: a ReLU slot or a residual add */
    for (int c0 = 0; c0 < C; c0 += EVAL_CW) {
        const int W = C - c0 < EVAL_CW ? C - c0 : EVAL_CW;
        double mean[EVAL_CW], scale[EVAL_CW], shift[EVAL_CW];
        bn_eval_coefs(mean, scale, shift, gamma, beta, running_mean, running_var, eps, c0, W);
        const int rows = linear_rows(M), nc = n_chunks(M, rows);
        snn_par_ends ends_k = snn_par_ends_of(nc); /* par.h */
#pragma omp parallel if ((size_t)M * C >= PAR_MIN_WORK)
        for (int k; (k = (int)snn_par_ends_next(&ends_k)) >= 0;) {
            const int m0 = k * rows;
            const int m1 = M - m0 < rows ? M : m0 + rows;
            bn_eval_rows(y + c0, x + c0, mean, scale, shift, m0, m1, C, W, post, c0);
        }
    }
}

/* Channels snn_linear_bn_eval_fwd keeps the BatchNorm's doubles of on its stack; past them it
 * runs the two passes. */
enum { EVAL_MAX_C = 1024 };

void snn_linear_bn_eval_fwd(float *z, float *y, const float *x, const float *w, const float *b,
                            const float *gamma, const float *beta, const float *running_mean,
                            const float *running_var, int M, int in, int out, float eps) {
    snn_linear_bn_eval_fwd_post(z, y, x, w, b, gamma, beta, running_mean, running_var, M, in,
                                out, eps, &(snn_bn_eval_post){false, NULL});
}

void snn_linear_bn_eval_fwd_post(float *z, float *y, const float *x, const float *w,
                                 const float *b, const float *gamma, const float *beta,
                                 const float *running_mean, const float *running_var, int M,
                                 int in, int out, float eps, const snn_bn_eval_post *post) {
    SNN_ASSERT(z && y && x && w && gamma && beta && running_mean && running_var);
    SNN_ASSERT(M >= 0 && in > 0 && out > 0);
    snn_layers_init();
    /* the spike path, or more channels than the stack holds: the two passes (the same bytes) */
    if (out > EVAL_MAX_C || sparse_ok(x, M, in, out)) {
        snn_linear_fwd(y, x, w, b, M, in, out);
        snn_bn_eval_fwd_post(z, y, gamma, beta, running_mean, running_var, M, out, eps, post);
        return;
    }
    /* linear_fwd's dense path, each chunk's BatchNorm right after its product */
    double mean[EVAL_MAX_C], scale[EVAL_MAX_C], shift[EVAL_MAX_C];
    bn_eval_coefs(mean, scale, shift, gamma, beta, running_mean, running_var, eps, 0, out);
    const bn_eval_epilogue epi = {z, mean, scale, shift, *post};
    linear_fwd(y, x, w, b, M, in, out, NULL, NULL, &epi);
}

static void bn_eval_chunk(const bn_eval_epilogue *e, const float *y, int m0, int m1, int C) {
    for (int c0 = 0; c0 < C; c0 += EVAL_CW)
        bn_eval_rows(e->z + c0, y + c0, e->mean + c0, e->scale + c0, e->shift + c0, m0, m1, C,
                     C - c0 < EVAL_CW ? C - c0 : EVAL_CW, &e->post, c0);
}

/* ---- mean pool ----------------------------------------------------------------------------- */

/* y[b, :] of snn_meanpool_fwd (of max(x, 0) with relu). In its own target clone: the
 * OpenMP region's outlined body does not inherit SNN_VEC_FN. */
static SNN_WIDE_FN SNN_VEC_FN void meanpool_row(float *yb, const float *x, int T, int B, int N,
                                                int D, int b, double inv, bool relu) {
    for (int d0 = 0; d0 < D; d0 += CH_CHUNK) {
        const int dc = D - d0 < CH_CHUNK ? D - d0 : CH_CHUNK;
        double acc[CH_CHUNK] = {0};
        for (int t = 0; t < T; t++) {
            for (int n = 0; n < N; n++) {
                const float *row = x + (((size_t)t * B + b) * N + n) * D + d0;
                if (relu)
                    for (int j = 0; j < dc; j++) acc[j] += (double)(row[j] > 0.0f ? row[j] : 0.0f);
                else
                    for (int j = 0; j < dc; j++) acc[j] += (double)row[j];
            }
        }
        for (int j = 0; j < dc; j++) yb[d0 + j] = (float)(acc[j] * inv);
    }
}

static void meanpool_fwd(float *y, const float *x, int T, int B, int N, int D, bool relu) {
    SNN_ASSERT(y && x && T > 0 && B >= 0 && N > 0 && D > 0);
    const double inv = 1.0 / ((double)T * (double)N);
    /* Each thread owns whole rows y[b, :]; the sum runs over t, then n, in order. */
    snn_par_ends ends_b = snn_par_ends_of(B); /* par.h */
#pragma omp parallel if ((size_t)T * B * N * D >= PAR_MIN_WORK)
    for (int b; (b = (int)snn_par_ends_next(&ends_b)) >= 0;)
        meanpool_row(y + (size_t)b * D, x, T, B, N, D, b, inv, relu);
}

void snn_meanpool_fwd(float *y, const float *x, int T, int B, int N, int D) {
    meanpool_fwd(y, x, T, B, N, D, false);
}

void snn_meanpool_relu_fwd(float *y, const float *x, int T, int B, int N, int D) {
    meanpool_fwd(y, x, T, B, N, D, true);
}

void snn_meanpool_bwd(float *dx, const float *dy, int T, int B, int N, int D) {
    SNN_ASSERT(dx && dy && T > 0 && B >= 0 && N > 0 && D > 0);
    /* forward: y[b,d] = 1/(T N) sum_t sum_n x[t,b,n,d], so dx[t,b,n,d] += dy[b,d] / (T N). */
    const double inv = 1.0 / ((double)T * (double)N);
    const int rows = T * B * N;
#pragma omp parallel for schedule(static) if ((size_t)T * B * N * D >= PAR_MIN_WORK)
    for (int r = 0; r < rows; r++) {
        const int b = (r / N) % B;
        const float *dyb = dy + (size_t)b * D;
        float *dxr = dx + (size_t)r * D;
        for (int d = 0; d < D; d++) dxr[d] += (float)((double)dyb[d] * inv);
    }
}

/* Row r of snn_meanpool_relu_bwd (a target clone of its own, as meanpool_row). */
static SNN_WIDE_FN SNN_VEC_FN void meanpool_relu_bwd_row(float *dxr, const float *dyb,
                                                         const float *xr, int D, double inv) {
    for (int d = 0; d < D; d++)
        dxr[d] = 0.0f + (xr[d] > 0.0f ? (float)((double)dyb[d] * inv) : 0.0f);
}

void snn_meanpool_relu_bwd(float *dx, const float *dy, const float *x, int T, int B, int N,
                           int D) {
    SNN_ASSERT(dx && dy && x && T > 0 && B >= 0 && N > 0 && D > 0);
    const double inv = 1.0 / ((double)T * (double)N);
    const int rows = T * B * N;
#pragma omp parallel for schedule(static) if ((size_t)T * B * N * D >= PAR_MIN_WORK)
    for (int r = 0; r < rows; r++)
        meanpool_relu_bwd_row(dx + (size_t)r * D, dy + (size_t)((r / N) % B) * D,
                              x + (size_t)r * D, D, inv);
}

/* ---- cross-entropy with label smoothing ---------------------------------------------------- */

double snn_cross_entropy_fwd_sum(float *probs, const float *logits, const int32_t *labels, int B,
                                 int C, float smoothing) {
    SNN_ASSERT(probs && logits && labels && B > 0 && C > 0);
    SNN_ASSERT(smoothing >= 0.0f && smoothing < 1.0f);
    const double e = (double)smoothing;
    double total = 0.0; /* batch rows in order: serial (B is small) */
    for (int b = 0; b < B; b++) {
        const float *l = logits + (size_t)b * C;
        float *p = probs + (size_t)b * C;
        const int32_t y = labels[b];
        SNN_ASSERT(y >= 0 && y < C);
        double mx = (double)l[0];
        for (int c = 1; c < C; c++)
            if ((double)l[c] > mx) mx = (double)l[c];
        double z = 0.0;
        for (int c = 0; c < C; c++) z += exp((double)l[c] - mx);
        const double lse = mx + log(z); /* -log p_c = lse - l_c */
        double sum_nll = 0.0;
        for (int c = 0; c < C; c++) {
            p[c] = (float)(exp((double)l[c] - mx) / z);
            sum_nll += lse - (double)l[c];
        }
        total += (1.0 - e) * (lse - (double)l[y]) + e * sum_nll / (double)C;
    }
    return total;
}

float snn_cross_entropy_fwd(float *probs, const float *logits, const int32_t *labels, int B,
                            int C, float smoothing) {
    return (float)(snn_cross_entropy_fwd_sum(probs, logits, labels, B, C, smoothing) / (double)B);
}

void snn_cross_entropy_bwd(float *dlogits, const float *probs, const int32_t *labels, int B,
                           int C, float smoothing, float scale) {
    SNN_ASSERT(dlogits && probs && labels && B > 0 && C > 0);
    /* forward: loss = 1/B sum_b [(1 - e)(lse_b - l[b,y_b]) + e/C sum_c (lse_b - l[b,c])];
     * d lse_b / d l[b,c] = p[b,c], so
     *     d loss / d l[b,c] = (p[b,c] - (1 - e) [c == y_b] - e / C) / B. */
    const double e = (double)smoothing, k = (double)scale / (double)B;
    for (int b = 0; b < B; b++) {
        const float *p = probs + (size_t)b * C;
        float *d = dlogits + (size_t)b * C;
        const int32_t y = labels[b];
        SNN_ASSERT(y >= 0 && y < C);
        for (int c = 0; c < C; c++) {
            const double target = (c == y ? 1.0 - e : 0.0) + e / (double)C;
            d[c] += (float)(k * ((double)p[c] - target));
        }
    }
}
