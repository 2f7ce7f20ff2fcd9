/*
 * layers.h: dense training layers (forward and backward) for the C trainer.
 *
 * Implements: linear, BatchNorm1d (training and eval mode), mean pool over (T, N), and
 * cross-entropy with label smoothing, each matching the PyTorch op named at its declaration.
 *
 * Conventions (llm.c kernels, research/style.md 1.1 and 3.8):
 *   - row-major everywhere; M is the number of rows (T*B*N for token layers);
 *   - arguments are outputs, then inputs, then sizes;
 *   - forward functions write every element of their outputs;
 *   - backward functions ACCUMULATE (+=) into every gradient they produce, so one zeroing of
 *     the gradient arena per step suffices;
 *   - nothing here allocates, prints or touches files: the caller provides every buffer;
 *   - shape mismatches and out-of-range labels are programmer errors (SNN_ASSERT aborts).
 *
 * Determinism: every result is byte-identical for any OpenMP thread count (and with OMP=0).
 * Work is split into chunks whose boundaries depend only on the sizes, never on the thread
 * count, and every reduction runs in a fixed order inside one chunk:
 *   - linear: when the input is a 0/1 spike matrix, the forward and the weight gradient skip
 *     the zeros and sum the selected rows in float in a fixed order; any other input (or a
 *     non-0/1 value met mid-run) takes one dense product (snn_gemm, attention/gemm.h: a libxsmm
 *     kernel, else OpenBLAS sgemm) per fixed chunk (row chunks of at most
 *     SNN_LINEAR_ROW_CHUNK for y and dx, as many as snn_par_chunk gives, row blocks summed in
 *     block order for dw, see snn_linear_bwd_scratch_floats),
 *     run inside our own OpenMP loop with OpenBLAS pinned to one thread. What we rely on: the
 *     same product call on the same arguments returns the same bits whichever thread makes it,
 *     which holds for libxsmm's kernels and for OpenBLAS run single-threaded. The bias
 *     gradient sums BatchNorm's row blocks and runs (below).
 *   - BatchNorm: statistics over 16 fixed row blocks, each in one pass over its rows shifted
 *     by its own first row, 16-row runs in float added into double accumulators, the blocks
 *     combined in block order (the fused snn_linear_fwd_sums gathers the same block sums while
 *     it writes y, in chunks of whole runs); the backward's column sums in the same blocks and
 *     runs; the normalisation and dx are computed in float.
 * Small problems (under 32768 elements or multiply-adds) run on the calling thread alone, over
 * the same chunks.
 * The kernels that call BLAS call snn_layers_init() themselves (cheap after the first time), so
 * OpenBLAS's own thread count is always 1 while they run. NOTE: that is a process-wide setting:
 * code elsewhere that wants threaded OpenBLAS must set it back itself.
 */
#ifndef SNN_LAYERS_H
#define SNN_LAYERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Fixed work decomposition of the linear layer (see above). Changing these changes the bits
 * of the results (not their accuracy); the thread count never does. */
#define SNN_LINEAR_ROW_CHUNK 256
/* Rows per block of the weight gradient's dense path (up to 8 blocks; see snn_linear_bwd). */
#define SNN_LINEAR_DW_ROWS 1024
/* Fewest rows for which a dense forward transposes w for snn_gemm's JIT kernels (below, w goes
 * to sgemm untransposed): transposing costs about as much as 64 rows' products. */
#define SNN_LINEAR_WT_ROWS 256

/* Pins OpenBLAS to one thread (openblas_set_num_threads(1)), so BLAS can be called from our
 * OpenMP threads without oversubscription and with a fixed result. Idempotent. The linear
 * kernels call it too; if they are themselves called from inside a parallel region, call this
 * once before that region (setting the BLAS thread count is not thread-safe). */
void snn_layers_init(void);

/* The kernels OpenBLAS runs on ("Haswell", "SkylakeX", ...: openblas_get_corename()). */
const char *snn_blas_core(void);

/* The dense products' libraries in one line, into buf [n] (returns buf): OpenBLAS's build and
 * kernels (openblas_get_config(): "OpenBLAS 0.3.21 ... Cooperlake ...") and libxsmm's
 * (snn_gemm_describe): the run files' root attribute `blas`. */
const char *snn_blas_config(char *buf, size_t n);

/* "OpenBLAS <core> kernels (OPENBLAS_CORETYPE=<value>)", or "... (OPENBLAS_CORETYPE unset)",
 * then "; libxsmm <version>, JIT for <target>", into buf [n]: what --version and bench report.
 * Returns buf. */
const char *snn_blas_describe(char *buf, size_t n);

/* OpenBLAS picks its kernels once, when it loads, from the CPU's model number. A model newer than
 * the library (Debian 12's 0.3.21 on Sapphire and Emerald Rapids) gets its generic SSE3 kernels,
 * "Prescott", whose sgemm runs at 18 GFLOP/s where the AVX-512 one runs at 90-115 on this
 * product's shapes. Returns the core type the CPU's features support ("Cooperlake", "SkylakeX",
 * "Haswell" or "Sandybridge") when OpenBLAS fell back to Prescott on a CPU that has AVX, and
 * OPENBLAS_CORETYPE (OpenBLAS's documented override) is unset; NULL otherwise. The only way to
 * use it is to start the process again with OPENBLAS_CORETYPE set (sim/main.c). */
const char *snn_blas_core_for_cpu(void);

/* ---- linear (torch.nn.functional.linear) ----------------------------------------------- */

/* y = x w^T + b.
 *   y [M, out]   x [M, in]   w [out, in] (PyTorch layout)   b [out] or NULL (no bias) */
void snn_linear_fwd(float *y, const float *x, const float *w, const float *b, int M, int in,
                    int out);

/* Backward of y = x w^T + b; accumulates:
 *   dx [M, in]   += dy w          (dx may be NULL: input gradient not needed; with add_dx false
 *                                  dx = dy w is written instead: the bytes of adding to zeros,
 *                                  without a zeroing pass or a read of dx)
 *   dw [out, in] += dy^T x
 *   db [out]     += sum over rows of dy   (db may be NULL when the layer has no bias)
 *   dy [M, out], x [M, in], w [out, in] (w may be NULL when dx is NULL) */
void snn_linear_bwd(float *dx, float *dw, float *db, const float *dy, const float *x,
                    const float *w, int M, int in, int out, float *scratch, bool add_dx);

/* A 0/1 spike matrix x [M, in] as bits (in a multiple of 64): row m is the in / 64 words at
 *   nz + (m / rows_per_t) * ld + (m % rows_per_t) * (in / 64),
 * bit i of the row in word i / 64 at bit i % 64 (attention/bits.h): T blocks of rows_per_t
 * rows, ld words apart (a trainer's population kept as bits, [T, Bmax * neurons] with B <=
 * Bmax samples in use). */
typedef struct snn_spike_rows {
    const uint64_t *nz;
    size_t ld;
    int rows_per_t;
} snn_spike_rows;

/* snn_linear_fwd and snn_linear_bwd (without scratch) on such an x, reading its bits: the same
 * bits as the float functions on its floats. They return false, having written nothing, where
 * those would take the dense path (in not a multiple of 64, more than 4096 inputs, or dense
 * first rows: see layers.c); the caller then calls them on the floats. scratch: NULL, or
 * snn_linear_spike_scratch_floats(in, out) floats (w^T, the parts of dw^T): without it a layer
 * of more than 65536 weights (stack buffers) takes the dense path too, with it any size. */
bool snn_linear_fwd_bits(float *y, const snn_spike_rows *x, const float *w, const float *b, int M,
                         int in, int out, float *scratch);
bool snn_linear_bwd_bits(float *dx, float *dw, float *db, const float *dy,
                         const snn_spike_rows *x, const float *w, int M, int in, int out,
                         bool add_dx, float *scratch);
size_t snn_linear_spike_scratch_floats(int in, int out);

/* snn_linear_fwd and snn_linear_fwd_bits that also gather the column sums of y that a
 * training-mode BatchNorm on y needs (snn_bn_train_fwd_sums), each row chunk's right after it is
 * written, while it is in cache: the BatchNorm then makes one pass over y instead of two.
 *   sums [snn_bn_sums_doubles(out)]   M >= 1
 * y's bits are those of snn_linear_fwd(_bits) on the spike path; on the dense path the row
 * chunks follow BatchNorm's row blocks, so the product may round y differently from
 * snn_linear_fwd. scratch as snn_linear_fwd_bits's. */
void snn_linear_fwd_sums(float *y, const float *x, const float *w, const float *b, int M, int in,
                         int out, double *sums);
bool snn_linear_fwd_bits_sums(float *y, const snn_spike_rows *x, const float *w, const float *b,
                              int M, int in, int out, double *sums, float *scratch);

/* A training-mode BatchNorm's normalisation left to the layer that reads its output:
 * snn_bn_train_normalise(y, NULL, x, mean, rstd, gamma, beta, M, C, relu, res)'s arguments. */
typedef struct snn_bn_norm {
    float *y;
    const float *x, *mean, *rstd, *gamma, *beta, *res;
    bool relu;
} snn_bn_norm;

/* snn_linear_fwd_sums on x = x_norm->y, which this call writes first: each row chunk of x is
 * normalised (x_norm, C = in: snn_bn_train_normalise's bytes) right before the chunk's product
 * reads it, while it is in cache, instead of in a pass of its own. The dense path always (x is
 * a BatchNorm's output, never spikes). */
void snn_linear_fwd_sums_norm(float *y, const snn_bn_norm *x_norm, const float *w,
                              const float *b, int M, int in, int out, double *sums);

/* Floats of snn_linear_bwd's scratch for M rows (0 up to SNN_LINEAR_DW_ROWS rows, where it may
 * be NULL; at most 7 in out): the weight gradient of a non-spike input is summed over up to 8
 * row blocks, one product each, block 0 into dw and the others into the scratch, then added in
 * block order. Grows with M, so a plan for the largest M serves every smaller one. */
size_t snn_linear_bwd_scratch_floats(int M, int in, int out);

/* ---- BatchNorm1d over features (F.batch_norm) --------------------------------------------- */

/* Training mode: statistics over the M rows (the (T, B, N) axes flattened), per channel c.
 *   mean[c] = sum_m x[m,c] / M;  var[c] = sum_m (x[m,c] - mean[c])^2 / M   (biased)
 *   rstd[c] = 1 / sqrt(var[c] + eps);  xhat = (x - mean) * rstd;  y = gamma * xhat + beta
 *   running_mean = (1 - momentum) running_mean + momentum mean
 *   running_var  = (1 - momentum) running_var  + momentum var * M / (M - 1)   (unbiased)
 * exactly PyTorch's rule (momentum 0.1, eps 1e-5 in spikesim). Statistics in double, two
 * passes, rows in order. Requires M >= 2 (PyTorch refuses M == 1 in training too).
 *   y, xhat, x [M, C]   mean, rstd [C] (batch statistics, outputs; kept for the backward); y
 *                       may be NULL when the caller applies gamma, beta itself
 *   gamma, beta [C]     running_mean, running_var [C], updated in place; both NULL = do not
 *                       track (e.g. for gradient checks) */
void snn_bn_train_fwd(float *y, float *xhat, float *mean, float *rstd, const float *x,
                      const float *gamma, const float *beta, float *running_mean,
                      float *running_var, int M, int C, float momentum, float eps);

/* The same with the batch spread over the ranks of an MPI job (sim/dist.h): this rank holds M
 * of the batch's M_batch rows, rank 0 the batch's first row. The statistics are the batch's:
 * the per-rank sums (in double) are added in rank order. Every rank must call it. */
void snn_bn_train_fwd_dist(float *y, float *xhat, float *mean, float *rstd, const float *x,
                           const float *gamma, const float *beta, float *running_mean,
                           float *running_var, int M, long M_batch, int C, float momentum,
                           float eps);

/* Doubles of the per-row-block sums of C channels that snn_linear_fwd_sums gathers (a fixed
 * number of row blocks: independent of M). */
size_t snn_bn_sums_doubles(int C);

/* snn_bn_train_fwd (M_batch = 0) or snn_bn_train_fwd_dist (M_batch > 0) on the x whose sums
 * snn_linear_fwd_sums gathered while it wrote x: the same bits, without the statistics' pass
 * over x. xhat NULL: y alone (see snn_bn_train_bwd_x); xhat and y NULL: the statistics alone
 * (mean, rstd, running statistics), for a caller that normalises x itself (a population's
 * snn_neuron_affine with mean and rstd). */
void snn_bn_train_fwd_sums(float *y, float *xhat, float *mean, float *rstd, const float *x,
                           const float *gamma, const float *beta, float *running_mean,
                           float *running_var, int M, long M_batch, int C, float momentum,
                           float eps, const double *sums);

/* Backward of the training-mode forward (batch statistics depend on x); accumulates:
 *   dbeta[c]  += sum_m dy[m,c]
 *   dgamma[c] += sum_m dy[m,c] xhat[m,c]
 *   dx[m,c]   += gamma[c] rstd[c] (dy[m,c] - dbeta_c / M - xhat[m,c] dgamma_c / M)
 * (dbeta_c, dgamma_c: this call's sums). dx may be NULL. add_dx false: dx is written (=), not
 * accumulated, and need not be initialised (the one exception to the += rule above: it saves
 * zeroing a scratch gradient that only this call fills).
 *   dx, dy, xhat [M, C]   dgamma, dbeta, rstd, gamma [C] */
void snn_bn_train_bwd(float *dx, float *dgamma, float *dbeta, const float *dy, const float *xhat,
                      const float *rstd, const float *gamma, int M, int C, bool add_dx);

/* The same for snn_bn_train_fwd_dist's batch: dx uses the batch's sums over every rank;
 * dgamma and dbeta receive this rank's sums only (the caller sums gradients over ranks). */
void snn_bn_train_bwd_dist(float *dx, float *dgamma, float *dbeta, const float *dy,
                           const float *xhat, const float *rstd, const float *gamma, int M,
                           long M_batch, int C, bool add_dx);

/* The normalisation of a training-mode BatchNorm whose statistics were gathered alone
 * (snn_bn_train_fwd_sums with xhat NULL): xhat (NULL: not stored, see snn_bn_train_bwd_x) and
 * y as snn_bn_train_fwd writes them, bit for bit; relu: y = max(y, 0) instead (x > 0 ? x : 0,
 * a ReLU after the BatchNorm in the same pass); res (or NULL): y = res + y instead (a residual
 * stream's sum). Either way BatchNorm's output itself is never stored.
 *   x, y, xhat, res [M, C]   mean, rstd, gamma, beta [C] */
void snn_bn_train_normalise(float *y, float *xhat, const float *x, const float *mean,
                            const float *rstd, const float *gamma, const float *beta, int M,
                            int C, bool relu, const float *res);

/* snn_bn_train_bwd (M_batch = 0) or snn_bn_train_bwd_dist (M_batch > 0) writing dx, that also
 * adds dx's column sums to dx_sum [C]: the bias gradient of a linear layer whose output this
 * BatchNorm normalises, in the dx pass, with the bytes of snn_linear_bwd's db on that dx (the
 * same row blocks and 16-row float runs), without its pass over dx. */
void snn_bn_train_bwd_sum(float *dx, float *dx_sum, float *dgamma, float *dbeta,
                          const float *dy, const float *xhat, const float *rstd,
                          const float *gamma, int M, long M_batch, int C);

/* snn_bn_train_bwd_sum (dx_sum not NULL; then !add_dx) or snn_bn_train_bwd / _dist (dx_sum
 * NULL), M_batch as there, on the forward's input x [M, C] and its mean [C] instead of xhat:
 * the backward normalises x again with the forward's operations ((x - mean) rstd in float), so
 * xhat's bits, and the same results, without a stored xhat (the forward then writes only y:
 * snn_bn_train_normalise or snn_bn_train_fwd_sums with xhat NULL). relu_beta (or NULL): dy is
 * the gradient on max(y, 0) (snn_bn_train_normalise with relu), y = gamma xhat + relu_beta
 * recomputed as the forward computed it: BatchNorm's gradient is dy where y > 0, else 0, the
 * bytes of a ReLU backward on the forward's output, without its pass. */
void snn_bn_train_bwd_x(float *dx, float *dx_sum, float *dgamma, float *dbeta, const float *dy,
                        const float *x, const float *mean, const float *rstd, const float *gamma,
                        const float *relu_beta, int M, long M_batch, int C, bool add_dx);

/* What a training-mode BatchNorm's backward reads of its forward: h = xhat [M, C] (mean NULL),
 * or h = the forward's input x [M, C] with its mean [C] (normalised again, as
 * snn_bn_train_bwd_x); rstd, gamma [C]; relu_beta [C] (with mean) or NULL, as
 * snn_bn_train_bwd_x's. */
typedef struct snn_bn_saved {
    const float *h, *mean, *rstd, *gamma, *relu_beta;
} snn_bn_saved;

/* The backward of z = BatchNorm(x w^T + b) (training mode, BatchNorm's part as bn describes)
 * followed by the linear layer's (snn_linear_bwd): given dz [M, out], accumulates dgamma,
 * dbeta, dw [out, in] and db [out] (or NULL), and dx [M, in] (+= or, !add_dx, =; or NULL).
 * dy_lin [M, out] receives BatchNorm's input gradient (the linear layer's output gradient).
 * Past one weight-gradient block (SNN_LINEAR_DW_ROWS rows) with out <= 256 and a dense x, it
 * runs by weight-gradient blocks: each block's rows of dy_lin are consumed by the dx and dw
 * products while they are in cache, instead of a pass over all of dy_lin and then the two
 * products over all of it. The bytes of snn_bn_train_bwd_sum (or _x) followed by
 * snn_linear_bwd with db summed by BatchNorm's dx pass. M_batch as snn_bn_train_bwd_dist's;
 * scratch: snn_linear_bwd_scratch_floats(M, in, out). */
void snn_linear_bn_bwd(float *dx, float *dw, float *db, float *dgamma, float *dbeta,
                       float *dy_lin, const float *dz, const snn_bn_saved *bn, const float *x,
                       const float *w, int M, long M_batch, int in, int out, float *scratch,
                       bool add_dx);

/* snn_linear_bn_bwd for a spike input read as bits (snn_spike_rows, as snn_linear_bwd_bits):
 * BatchNorm's input gradient row block by row block, each consumed by the layer's dx product
 * while it is in cache, then the weight gradient's spike path. The bytes of BatchNorm's
 * backward followed by snn_linear_bwd_bits. Returns false, having written nothing, where
 * snn_linear_bwd_bits would (spikes too dense for the spike path; scratch as its). */
bool snn_linear_bn_bwd_bits(float *dx, float *dw, float *db, float *dgamma, float *dbeta,
                            float *dy_lin, const float *dz, const snn_bn_saved *bn,
                            const snn_spike_rows *x, const float *w, int M, long M_batch, int in,
                            int out, bool add_dx, float *scratch);

/* Eval mode with running statistics:
 *   y = (x - running_mean) / sqrt(running_var + eps) * gamma + beta   (in double, rounded once)
 *   y, x [M, C]   gamma, beta, running_mean, running_var [C] */
void snn_bn_eval_fwd(float *y, const float *x, const float *gamma, const float *beta,
                     const float *running_mean, const float *running_var, int M, int C,
                     float eps);

/* snn_linear_fwd (y = x w^T + b [M, out], written) followed by snn_bn_eval_fwd of y into z
 * [M, out], with the same bytes: a dense x runs in the linear layer's row chunks, each chunk's
 * BatchNorm right after its product, while the chunk is in cache (a pass over y less). */
void snn_linear_bn_eval_fwd(float *z, float *y, const float *x, const float *w, const float *b,
                            const float *gamma, const float *beta, const float *running_mean,
                            const float *running_var, int M, int in, int out, float eps);

/* What follows an eval-mode BatchNorm in the same pass (the bytes of the separate passes):
 * relu, z = max(z, 0) as x > 0 ? x : 0 (an ANN's ReLU slot); res (not NULL) [M, C], z = res + z
 * (a residual add). */
typedef struct snn_bn_eval_post {
    bool relu;
    const float *res;
} snn_bn_eval_post;

/* snn_bn_eval_fwd and snn_linear_bn_eval_fwd with *post applied to each element as it is
 * written: a pass over z less for the consumer. */
void snn_bn_eval_fwd_post(float *y, const float *x, const float *gamma, const float *beta,
                          const float *running_mean, const float *running_var, int M, int C,
                          float eps, const snn_bn_eval_post *post);
void snn_linear_bn_eval_fwd_post(float *z, float *y, const float *x, const float *w,
                                 const float *b, const float *gamma, const float *beta,
                                 const float *running_mean, const float *running_var, int M,
                                 int in, int out, float eps, const snn_bn_eval_post *post);

/* ---- mean pool over (t, n): the head's input ------------------------------------------- */

/* y[b,d] = 1/(T N) sum_t sum_n x[t,b,n,d]   (sum in double, t then n; rounded once)
 *   y [B, D]   x [T, B, N, D] */
void snn_meanpool_fwd(float *y, const float *x, int T, int B, int N, int D);

/* dx[t,b,n,d] += dy[b,d] / (T N)
 *   dx [T, B, N, D]   dy [B, D] */
void snn_meanpool_bwd(float *dx, const float *dy, int T, int B, int N, int D);

/* The two with a ReLU before the pool, in one pass each (an ANN's head activation):
 *   snn_meanpool_relu_fwd: y = snn_meanpool_fwd of max(x, 0), without writing max(x, 0);
 *   snn_meanpool_relu_bwd: dx = ReLU's backward (on x) of snn_meanpool_bwd's gradient added
 *     to zeros, written (not added): the bytes of those passes, without the gradient between.
 *   y, dy [B, D]   x, dx [T, B, N, D] */
void snn_meanpool_relu_fwd(float *y, const float *x, int T, int B, int N, int D);
void snn_meanpool_relu_bwd(float *dx, const float *dy, const float *x, int T, int B, int N,
                           int D);

/* ---- cross-entropy with label smoothing (F.cross_entropy, reduction 'mean') -------------- */

/* With p = softmax(logits[b]) and e = smoothing:
 *   loss_b = (1 - e) (-log p[b, y_b]) + e / C sum_c (-log p[b, c])
 *   returns sum_b loss_b / B.
 * log-softmax by log-sum-exp with max subtraction, in double.
 *   probs [B, C] (output, softmax, kept for the backward)   logits [B, C]
 *   labels [B] in [0, C)   0 <= smoothing < 1 */
float snn_cross_entropy_fwd(float *probs, const float *logits, const int32_t *labels, int B,
                            int C, float smoothing);

/* The same, returning sum_b loss_b in double (not divided by B): a batch spread over ranks adds
 * the ranks' sums before dividing. */
double snn_cross_entropy_fwd_sum(float *probs, const float *logits, const int32_t *labels, int B,
                                 int C, float smoothing);

/* dlogits[b,c] += scale / B * (p[b,c] - (1 - e) [c == y_b] - e / C)
 * where scale is d(final loss)/d(this mean loss), usually 1.
 *   dlogits, probs [B, C]   labels [B] */
void snn_cross_entropy_bwd(float *dlogits, const float *probs, const int32_t *labels, int B,
                           int C, float smoothing, float scale);

#endif
