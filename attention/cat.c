/*
 * cat.c: CAT, circular-convolutional attention, for training, forward and backward, one head
 * (spec/model.md section 3 `cat`, research/methods.md section 4). The ANN baseline with
 * O(N log N) token mixing.
 *
 *   z = softmax_n(g)                        g: the head's column of X a^T, softmax over tokens
 *   O[i, c] = sum_j z[(i - j) mod N] V[j, c]  circular convolution (methods.md 4.1, "literal"
 *                                           convention: FFT(z) FFT(v), no conjugate)
 *
 * FFT path. With rfft/irfft the unnormalised real DFTs of length exactly N (FFTW r2c / c2r; any
 * N, mixed radix or FFTW's generic/Rader codelets for prime factors, never zero padding, which
 * would make the operator non-circular: methods.md 4.1):
 *   forward    O_c  = irfft(rfft(z / N) rfft(V_c))
 *   backward   dV_c += irfft(conj(rfft(z / N)) rfft(dO_c))        circular correlation
 *              dz   = irfft(sum_c rfft(dO_c) conj(rfft(V_c))) / N  summed over c in frequency
 *              dg  += z (.) (dz - sum_n z_n dz_n)                 softmax backward
 * (for real x, y: the DFT of the correlation sum_i x[i - j] y[i] is conj(X) Y). The 1/N of the
 * inverse transforms is folded into z's time-domain copy (exact for power-of-two N, one
 * rounding of 1/N otherwise) and applied as a division to dz.
 *
 * Precision. Transforms, products and sums run in double; each output is rounded to float once.
 * The FFT's error is a few 1e-16 of the norm of the signal (log N growth), so O differs from the
 * direct double sum (snn_attn_cat_head_direct) by at most about one float ulp of max |V|.
 * Bit-reproducibility: FFTW_ESTIMATE plans involve no timing, so a given machine always builds
 * the same plan and gets the same bits; a machine with other SIMD may pick other codelets and
 * differ in the last double bits (rarely a float bit). Which thread runs a call never matters.
 *
 * Layout of the channel transforms: the d channels go through the FFTs in blocks of cb
 * channels, interleaved within a block (sample i of channel c at [i cb + c]: FFTW stride cb,
 * distance 1), so V, dO, O and dV are copied to and from the token-major head rows with
 * contiguous inner loops. cb is the largest divisor of d whose backward working set (V and dO,
 * real and complex, 32 N cb bytes) fits in 256 KiB, half of a typical L2: without the blocking
 * the long-sequence transforms stream from L3 and the time grows faster than N log N (N = 4096,
 * d = 16 is 2 MiB). At the models' sizes (N <= 512 at d = 16) cb = d: one block, as before.
 *
 * Scratch blocks (doubles, each rounded up to a multiple of 8; H = N/2 + 1 complex bins):
 *   zr N      z / N                     Zc 2H       rfft(z / N)
 *   Vr N cb   V, then the c2r output    Vc 2H cb    rfft(V), then the products (forward)
 *   Dr N cb   dO, then the dV output    Dc 2H cb    rfft(dO), then conj(Zc) rfft(dO)
 *   DZ 2H     sum_c Dc conj(Vc)         dzr N       irfft(DZ)
 * c2r transforms destroy their complex input (FFTW's default for c2r); every complex block is
 * dead after its inverse transform, so that is fine.
 *
 * Pure numerics: no I/O, no static state, no allocation in the kernels (plans at setup only).
 */
#include "attention/ann.h"

#include <fftw3.h>
#include <math.h>
#include <stdlib.h>

#include "sim/util.h"
#include "sim/vec.h"

struct snn_cat_plan {
    int N, d, H, cb; /* cb: channels per block of transforms, a divisor of d */
    fftw_plan r2c1; /* rfft of one signal (z)                         */
    fftw_plan r2cd; /* rfft of cb interleaved signals (V, dO)        */
    fftw_plan c2rd; /* irfft of cb interleaved spectra (O, dV)       */
    fftw_plan c2r1; /* irfft of one spectrum (dz)                     */
    snn_cat_fft_flops fwd, bwd;
};

/* Rounds a block length up to 8 doubles (64 bytes), so every block starts at the alignment the
 * base pointer has: FFTW's SIMD is not relied on (FFTW_UNALIGNED), but cache lines are. */
static size_t blk(size_t n) { return (n + 7) & ~(size_t)7; }

typedef struct cat_scratch {
    double *zr, *Vr, *Dr, *dzr;
    fftw_complex *Zc, *Vc, *Dc, *DZ;
} cat_scratch;

/* The largest divisor of d with 32 N cb bytes <= 256 KiB (at least 1): see the header. */
static int channel_block(int N, int d) {
    int cb = 1;
    for (int c = 1; c <= d; c++)
        if (d % c == 0 && 32.0 * N * c <= 256.0 * 1024.0) cb = c;
    return cb;
}

static cat_scratch carve(int N, int cb, double *s) {
    const size_t n = (size_t)N, H = (size_t)(N / 2 + 1), dd = (size_t)cb;
    cat_scratch c;
    c.zr = s, s += blk(n);
    c.dzr = s, s += blk(n);
    c.Zc = (fftw_complex *)s, s += blk(2 * H);
    c.DZ = (fftw_complex *)s, s += blk(2 * H);
    c.Vr = s, s += blk(n * dd);
    c.Dr = s, s += blk(n * dd);
    c.Vc = (fftw_complex *)s, s += blk(2 * H * dd);
    c.Dc = (fftw_complex *)s;
    return c;
}

size_t snn_cat_scratch_doubles(int N, int d) {
    SNN_ASSERT(N >= 1 && d >= 1);
    const size_t n = (size_t)N, H = (size_t)(N / 2 + 1), dd = (size_t)channel_block(N, d);
    return 2 * blk(n) + 2 * blk(2 * H) + 2 * blk(n * dd) + 2 * blk(2 * H * dd);
}

static snn_cat_fft_flops flops_of(fftw_plan p) {
    snn_cat_fft_flops f = {0.0, 0.0, 0.0};
    fftw_flops(p, &f.add, &f.mul, &f.fma);
    return f;
}

static void flops_acc(snn_cat_fft_flops *dst, snn_cat_fft_flops f, double times) {
    dst->add += times * f.add, dst->mul += times * f.mul, dst->fma += times * f.fma;
}

snn_cat_plan *snn_cat_plan_new(int N, int d) {
    SNN_ASSERT(N >= 1 && d >= 1);
    snn_cat_plan *pl = snn_xcalloc(1, sizeof *pl);
    pl->N = N, pl->d = d, pl->H = N / 2 + 1, pl->cb = channel_block(N, d);
    const int cb = pl->cb;
    /* Planning arrays: FFTW_ESTIMATE never writes them, but it wants real, distinct (out of
     * place, as every execution is) arrays of the planned sizes. */
    const size_t H = (size_t)pl->H;
    double *re = fftw_alloc_real((size_t)N * (size_t)cb);
    fftw_complex *cx = fftw_alloc_complex(H * (size_t)cb);
    SNN_ASSERT(re && cx);
    const unsigned flags = FFTW_ESTIMATE | FFTW_UNALIGNED;
    const int n[1] = {N};
    pl->r2c1 = fftw_plan_dft_r2c_1d(N, re, cx, flags);
    pl->c2r1 = fftw_plan_dft_c2r_1d(N, cx, re, flags);
    /* cb transforms, interleaved: sample i of channel c at [i cb + c], bin k at [k cb + c] */
    pl->r2cd = fftw_plan_many_dft_r2c(1, n, cb, re, NULL, cb, 1, cx, NULL, cb, 1, flags);
    pl->c2rd = fftw_plan_many_dft_c2r(1, n, cb, cx, NULL, cb, 1, re, NULL, cb, 1, flags);
    fftw_free(re);
    fftw_free(cx);
    if (!pl->r2c1 || !pl->c2r1 || !pl->r2cd || !pl->c2rd)
        snn_abort(__FILE__, __LINE__, "FFTW could not plan CAT transforms (N %d, d %d)", N, d);
    /* forward: rfft(z), rfft(V), irfft(O);  backward: rfft(z), rfft(V), rfft(dO), irfft(dV),
     * irfft(dz); the channel transforms once per block of cb channels */
    const double blocks = (double)(d / cb);
    const snn_cat_fft_flops f1 = flops_of(pl->r2c1), fd = flops_of(pl->r2cd);
    const snn_cat_fft_flops i1 = flops_of(pl->c2r1), id = flops_of(pl->c2rd);
    flops_acc(&pl->fwd, f1, 1), flops_acc(&pl->fwd, fd, blocks), flops_acc(&pl->fwd, id, blocks);
    flops_acc(&pl->bwd, f1, 1), flops_acc(&pl->bwd, fd, 2 * blocks);
    flops_acc(&pl->bwd, id, blocks);
    flops_acc(&pl->bwd, i1, 1);
    return pl;
}

void snn_cat_plan_free(snn_cat_plan *pl) {
    if (!pl) return;
    fftw_destroy_plan(pl->r2c1);
    fftw_destroy_plan(pl->c2r1);
    fftw_destroy_plan(pl->r2cd);
    fftw_destroy_plan(pl->c2rd);
    free(pl);
}

int snn_cat_plan_n(const snn_cat_plan *pl) { return pl->N; }
int snn_cat_plan_d(const snn_cat_plan *pl) { return pl->d; }
int snn_cat_plan_channel_block(const snn_cat_plan *pl) { return pl->cb; }
snn_cat_fft_flops snn_cat_plan_forward_flops(const snn_cat_plan *pl) { return pl->fwd; }
snn_cat_fft_flops snn_cat_plan_backward_flops(const snn_cat_plan *pl) { return pl->bwd; }

/* zr[n] = z[n] / N (times the precomputed 1/N), then Zc = rfft(zr). */
static void z_spectrum(const snn_cat_plan *pl, const float *z, const cat_scratch *s) {
    const double inv_n = 1.0 / (double)pl->N;
    for (int t = 0; t < pl->N; t++) s->zr[t] = (double)z[t] * inv_n;
    fftw_execute_dft_r2c(pl->r2c1, s->zr, s->Zc);
}

/* dst[i cb + c] = m[i ld + c] for an [N, cb] block of a head at row stride ld. */
static void gather(int N, int d, const float *m, int ld, double *dst) {
    for (int i = 0; i < N; i++) {
        const float *mi = m + (long)i * ld;
        double *di = dst + (size_t)i * d;
        for (int c = 0; c < d; c++) di[c] = (double)mi[c];
    }
}

SNN_WIDE_FN SNN_VEC_FN void snn_attn_cat_head_train(const snn_cat_plan *pl, const float *g,
                                                    int ldg, const float *v, int ld, float *o,
                                                    int ldo, float *z, double *scratch) {
    const int N = pl->N, d = pl->d, H = pl->H, cb = pl->cb;
    const cat_scratch s = carve(N, cb, scratch);

    /* z = softmax(g): exponentials and their sum in double (zr holds them for a moment) */
    double m = -INFINITY;
    for (int t = 0; t < N; t++)
        if ((double)g[(long)t * ldg] > m) m = g[(long)t * ldg];
    double sum = 0.0;
    for (int t = 0; t < N; t++) {
        s.zr[t] = exp((double)g[(long)t * ldg] - m);
        sum += s.zr[t];
    }
    /* sum >= 1 (the maximum contributes exp(0)) */
    for (int t = 0; t < N; t++) z[t] = (float)(s.zr[t] / sum);

    /* the convolution of the float z the backward will see */
    z_spectrum(pl, z, &s);
    for (int c0 = 0; c0 < d; c0 += cb) {
        gather(N, cb, v + c0, ld, s.Vr);
        fftw_execute_dft_r2c(pl->r2cd, s.Vr, s.Vc);
        for (int kb = 0; kb < H; kb++) {
            const double zr = s.Zc[kb][0], zi = s.Zc[kb][1];
            fftw_complex *vk = s.Vc + (size_t)kb * cb;
            for (int c = 0; c < cb; c++) {
                const double vr = vk[c][0], vi = vk[c][1];
                vk[c][0] = zr * vr - zi * vi;
                vk[c][1] = zr * vi + zi * vr;
            }
        }
        fftw_execute_dft_c2r(pl->c2rd, s.Vc, s.Vr);
        for (int i = 0; i < N; i++) {
            const double *yi = s.Vr + (size_t)i * cb;
            float *oi = o + (long)i * ldo + c0;
            for (int c = 0; c < cb; c++) oi[c] = (float)yi[c];
        }
    }
}

SNN_WIDE_FN SNN_VEC_FN void snn_attn_cat_head_backward(const snn_cat_plan *pl, const float *g,
                                                       int ldg, const float *v, int ld,
                                                       const float *z, const float *dout,
                                                       int lddo, float *dg, int lddg, float *dv,
                                                       double *scratch) {
    (void)g, (void)ldg; /* the softmax backward needs only z */
    const int N = pl->N, d = pl->d, H = pl->H, cb = pl->cb;
    const cat_scratch s = carve(N, cb, scratch);

    z_spectrum(pl, z, &s);
    for (int c0 = 0; c0 < d; c0 += cb) {
        gather(N, cb, v + c0, ld, s.Vr);
        fftw_execute_dft_r2c(pl->r2cd, s.Vr, s.Vc);
        gather(N, cb, dout + c0, lddo, s.Dr);
        fftw_execute_dft_r2c(pl->r2cd, s.Dr, s.Dc);

        for (int kb = 0; kb < H; kb++) {
            const double zr = s.Zc[kb][0], zi = s.Zc[kb][1];
            fftw_complex *vk = s.Vc + (size_t)kb * cb, *dk = s.Dc + (size_t)kb * cb;
            /* dz: DZ_k = sum_c DO_kc conj(V_kc), channels summed in c order across blocks */
            double ar = c0 ? s.DZ[kb][0] : 0.0, ai = c0 ? s.DZ[kb][1] : 0.0;
            for (int c = 0; c < cb; c++) {
                const double dr = dk[c][0], di = dk[c][1], vr = vk[c][0], vi = vk[c][1];
                ar += dr * vr + di * vi;
                ai += di * vr - dr * vi;
            }
            s.DZ[kb][0] = ar, s.DZ[kb][1] = ai;
            /* dV: conj(Z_k / N) DO_kc, in place */
            for (int c = 0; c < cb; c++) {
                const double dr = dk[c][0], di = dk[c][1];
                dk[c][0] = zr * dr + zi * di;
                dk[c][1] = zr * di - zi * dr;
            }
        }

        fftw_execute_dft_c2r(pl->c2rd, s.Dc, s.Dr);
        for (int j = 0; j < N; j++) {
            const double *uj = s.Dr + (size_t)j * cb;
            float *dvj = dv + (long)j * ld + c0;
            for (int c = 0; c < cb; c++) dvj[c] += (float)uj[c];
        }
    }

    fftw_execute_dft_c2r(pl->c2r1, s.DZ, s.dzr);
    /* dz_m = dzr_m / N;  dg_m += z_m (dz_m - sum_n z_n dz_n) */
    double zdz = 0.0;
    for (int t = 0; t < N; t++) {
        s.dzr[t] /= (double)N;
        zdz += (double)z[t] * s.dzr[t];
    }
    for (int t = 0; t < N; t++)
        dg[(long)t * lddg] += (float)((double)z[t] * (s.dzr[t] - zdz));
}

void snn_attn_cat_head_direct(int N, int d, const float *z, const float *v, int ld, float *o,
                              int ldo) {
    if (N <= 0) return;
    SNN_ASSERT(d >= 0);
    for (int i = 0; i < N; i++)
        for (int c = 0; c < d; c++) {
            double acc = 0.0;
            for (int j = 0; j < N; j++) {
                const int t = i - j < 0 ? i - j + N : i - j; /* (i - j) mod N */
                acc += (double)z[t] * (double)v[(long)j * ld + c];
            }
            o[(long)i * ldo + c] = (float)acc;
        }
}

void snn_attn_cat_count(const snn_cat_plan *pl, snn_ops *ops) {
    const uint64_t n = (uint64_t)pl->N, H = (uint64_t)pl->H, d = (uint64_t)pl->d;
    const snn_cat_fft_flops f = pl->fwd;
    const double F = f.add + f.mul + f.fma;
    /* FFTW counts whole operations: the total is an integer (well inside 2^53) */
    SNN_ASSERT(F >= 0.0 && F == floor(F) && F < 0x1p53);
    ops->n[SNN_OP_EXP] += n;
    ops->n[SNN_OP_DIV] += n + 1;
    ops->n[SNN_OP_CMP] += n;
    ops->n[SNN_OP_MAC] += 2 * n + 4 * H * d + (uint64_t)F;
}
