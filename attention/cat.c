/*
 * cat.c: CAT, circular-convolutional attention, for training, forward and backward, one head
 * (spec/model.md section 3 `cat`, research/methods.md section 4). The ANN baseline with
 * O(N log N) token mixing.
 *
 *   z = softmax_n(g)                        g: the head's column of X a^T, softmax over tokens
 *   O[i, c] = sum_j z[(i - j) mod N] V[j, c]  circular convolution (methods.md 4.1, "literal"
 *                                           convention: FFT(z) FFT(v), no conjugate)
 *
 * FFT path: unnormalised DFTs of length exactly N (FFTW; any N, mixed radix or FFTW's
 * generic/Rader codelets for prime factors, never zero padding, which would make the operator
 * non-circular: methods.md 4.1). The value channels go through COMPLEX transforms two at a
 * time, channel 2p as the real part and 2p + 1 as the imaginary part of signal p (the classic
 * two-real-signals-in-one-complex-FFT packing). Because z is real, convolving with it is a real
 * linear operator, so the real and imaginary parts of the result are the two channels'
 * convolutions, with no unpacking step:
 *   forward    x_p = V_2p + i V_2p+1;   O_2p + i O_2p+1 = ifft(Z fft(x_p))       Z = rfft(z / N)
 *   backward   y_p = dO_2p + i dO_2p+1; dV_2p + i dV_2p+1 += ifft(conj(Z) fft(y_p))  correlation
 *              dz = Re ifft(sum_p fft(y_p) conj(fft(x_p))) / N
 *              dg += z (.) (dz - sum_n z_n dz_n)                 softmax backward
 * (for complex a, b the DFT of the correlation sum_i a[i] conj(b[i - m]) is A conj(B); its real
 * part is sum_i Re a[i] Re b[i - m] + Im a[i] Im b[i - m], the two channels' correlations
 * summed, which is what dz sums over c.) Z's bins above N/2 are conj(Z[N - k]) (z is real). The
 * real part of dz's inverse transform is the inverse real transform (c2r) of the spectrum's
 * Hermitian part (S_k + conj(S_(N-k))) / 2. The 1/N of the inverse transforms is folded into
 * z's time-domain copy (exact for power-of-two N, one rounding of 1/N otherwise) and applied as
 * a division to dz. An odd channel count leaves the last signal's imaginary part zero.
 *
 * Why complex: FFTW's real-data transforms have no SIMD codelets, its complex ones do (AVX
 * here), and the packing halves the number of transforms: at N = 49 (7 x 7), 16 channels, an
 * rfft + irfft of every channel took 10 us, the 8 complex pairs' fft + ifft 2.4-3.7 us.
 * SIMD codelets want aligned data, so the kernels take 64-byte aligned scratch (asserted) and
 * the plans are made without FFTW_UNALIGNED.
 *
 * Precision. Transforms, products and sums run in double; each output is rounded to float once.
 * The FFT's error is a few 1e-16 of the norm of the signal (log N growth), so O differs from the
 * direct double sum (snn_attn_cat_head_direct) by at most about one float ulp of max |V|.
 * Bit-reproducibility: FFTW_ESTIMATE plans involve no timing, so a given machine always builds
 * the same plan and gets the same bits; a machine with other SIMD may pick other codelets and
 * differ in the last double bits (rarely a float bit). Which thread runs a call never matters.
 *
 * Layout of the channel transforms: the d channels go through the FFTs in blocks of cb
 * channels, P = ceil(cb / 2) complex signals per block, interleaved (sample i of signal p at
 * [i P + p]: FFTW stride P, distance 1), which as doubles is the block's channels in order (a
 * zero after the last if cb is odd): V, dO, O and dV are copied to and from the token-major head
 * rows with contiguous inner loops. cb is the largest divisor of d whose backward working set
 * (four N x P complex blocks, 64 N P bytes) fits in 256 KiB, half of a typical L2: without the
 * blocking the long-sequence transforms stream from L3 and the time grows faster than N log N
 * (N = 4096, d = 16 is 2 MiB). At the models' sizes (N <= 512 at d = 16) cb = d: one block.
 *
 * Scratch blocks (doubles, each rounded up to a multiple of 8; H = N/2 + 1):
 *   zr N      z / N                  Zf 2N      rfft(z / N), extended to all N bins
 *   Vt 2NP    x_p, then O (forward)   Vf 2NP    fft(x_p), then Z fft(x_p) (forward)
 *   Dt 2NP    y_p, then dV            Df 2NP    fft(y_p), then conj(Z) fft(y_p)
 *   S  2N     sum_p fft(y_p) conj(fft(x_p)), then its Hermitian part (H bins)
 *   dzr N     dz (N times)
 * FFTW's c2r destroys its input (S, dead after it); the complex transforms are out of place.
 * Training may keep the forward's Z and fft(x_p) (snn_cat_spectra_doubles per head): the
 * backward then skips rfft(z) and the value transforms, a fifth of its transforms, and reads
 * no V; kept or made again, they are the same transforms of the same data, the same bits.
 *
 * Pure numerics: no I/O, no static state, no allocation in the kernels (plans at setup only).
 */
#include "attention/ann.h"

#include <fftw3.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "sim/util.h"
#include "sim/vec.h"

struct snn_cat_plan {
    int N, d, H, cb, P; /* cb: channels per block, a divisor of d; P = ceil(cb / 2) signals */
    fftw_plan r2c1;     /* rfft of one signal (z)                          */
    fftw_plan c2r1;     /* irfft of one spectrum (dz)                      */
    fftw_plan fwdP;     /* fft of P interleaved complex signals (V, dO)   */
    fftw_plan bwdP;     /* inverse fft of P interleaved spectra (O, dV)   */
    snn_cat_fft_flops fwd, bwd;
};

/* Rounds a block length up to 8 doubles (64 bytes), so every block keeps the 64-byte alignment
 * of the base pointer, which FFTW's SIMD codelets need (the plans are made for aligned data). */
static size_t blk(size_t n) { return (n + 7) & ~(size_t)7; }

typedef struct cat_scratch {
    double *zr, *dzr, *Vt, *Dt;
    fftw_complex *Zf, *S, *Vf, *Df;
} cat_scratch;

/* Complex signals in a block of c channels. */
static int signals(int c) { return (c + 1) / 2; }

/* The largest divisor of d with 64 N P bytes <= 256 KiB (at least 1): see the header. */
static int channel_block(int N, int d) {
    int cb = 1;
    for (int c = 1; c <= d; c++)
        if (d % c == 0 && 64.0 * N * signals(c) <= 256.0 * 1024.0) cb = c;
    return cb;
}

static cat_scratch carve(int N, int P, double *s) {
    SNN_ASSERT(((uintptr_t)s & 63) == 0); /* the plans' SIMD codelets need it: see the header */
    const size_t n = (size_t)N, np = n * (size_t)P;
    cat_scratch c;
    c.zr = s, s += blk(n);
    c.dzr = s, s += blk(n);
    c.Zf = (fftw_complex *)s, s += blk(2 * n);
    c.S = (fftw_complex *)s, s += blk(2 * n);
    c.Vt = s, s += blk(2 * np);
    c.Dt = s, s += blk(2 * np);
    c.Vf = (fftw_complex *)s, s += blk(2 * np);
    c.Df = (fftw_complex *)s;
    return c;
}

size_t snn_cat_scratch_doubles(int N, int d) {
    SNN_ASSERT(N >= 1 && d >= 1);
    const size_t n = (size_t)N, np = n * (size_t)signals(channel_block(N, d));
    return 2 * blk(n) + 2 * blk(2 * n) + 4 * blk(2 * np);
}

static snn_cat_fft_flops flops_of(fftw_plan p) {
    snn_cat_fft_flops f = {0.0, 0.0, 0.0};
    fftw_flops(p, &f.add, &f.mul, &f.fma);
    return f;
}

static void flops_acc(snn_cat_fft_flops *dst, snn_cat_fft_flops f, double times) {
    dst->add += times * f.add, dst->mul += times * f.mul, dst->fma += times * f.fma;
}

/* The four plans for (N, P) with the given flags, in the order r2c1, c2r1, fwdP, bwdP; NULL
 * where FFTW cannot plan. Planning arrays: FFTW_ESTIMATE never writes them, but it wants
 * distinct (out of place, as every execution is) arrays of the planned sizes, aligned as the
 * scratch blocks are (fftw_malloc's alignment divides 64). */
static void make_plans(int N, int P, unsigned flags, fftw_plan out[4]) {
    const size_t np = (size_t)N * (size_t)P;
    fftw_complex *a = fftw_alloc_complex(np), *b = fftw_alloc_complex(np);
    double *re = fftw_alloc_real((size_t)N);
    SNN_ASSERT(a && b && re);
    const int n[1] = {N};
    out[0] = fftw_plan_dft_r2c_1d(N, re, a, flags);
    out[1] = fftw_plan_dft_c2r_1d(N, a, re, flags);
    /* P transforms, interleaved: sample (or bin) i of signal p at [i P + p] */
    out[2] = fftw_plan_many_dft(1, n, P, a, NULL, P, 1, b, NULL, P, 1, FFTW_FORWARD, flags);
    out[3] = fftw_plan_many_dft(1, n, P, b, NULL, P, 1, a, NULL, P, 1, FFTW_BACKWARD, flags);
    fftw_free(a), fftw_free(b), fftw_free(re);
}

snn_cat_plan *snn_cat_plan_new(int N, int d) {
    SNN_ASSERT(N >= 1 && d >= 1);
    snn_cat_plan *pl = snn_xcalloc(1, sizeof *pl);
    pl->N = N, pl->d = d, pl->H = N / 2 + 1, pl->cb = channel_block(N, d);
    pl->P = signals(pl->cb);
    fftw_plan run[4], count[4];
    make_plans(N, pl->P, FFTW_ESTIMATE, run);
    /* fftw_flops counts a SIMD codelet's vector instructions (4 doubles each with AVX), so the
     * operation counts come from the same transforms planned without SIMD (FFTW_UNALIGNED
     * admits only the scalar codelets): scalar operations, whatever the machine's vectors. */
    make_plans(N, pl->P, FFTW_ESTIMATE | FFTW_UNALIGNED, count);
    pl->r2c1 = run[0], pl->c2r1 = run[1], pl->fwdP = run[2], pl->bwdP = run[3];
    for (int i = 0; i < 4; i++)
        if (!run[i] || !count[i])
            snn_abort(__FILE__, __LINE__, "FFTW could not plan CAT transforms (N %d, d %d)", N, d);
    /* forward: rfft(z), fft(x) and ifft per block;  backward: rfft(z), fft(x), fft(y) and ifft
     * per block, irfft(dz) */
    const double blocks = (double)(d / pl->cb);
    const snn_cat_fft_flops f1 = flops_of(count[0]), i1 = flops_of(count[1]);
    const snn_cat_fft_flops fP = flops_of(count[2]), iP = flops_of(count[3]);
    for (int i = 0; i < 4; i++) fftw_destroy_plan(count[i]);
    flops_acc(&pl->fwd, f1, 1), flops_acc(&pl->fwd, fP, blocks), flops_acc(&pl->fwd, iP, blocks);
    flops_acc(&pl->bwd, f1, 1), flops_acc(&pl->bwd, fP, 2 * blocks);
    flops_acc(&pl->bwd, iP, blocks);
    flops_acc(&pl->bwd, i1, 1);
    return pl;
}

void snn_cat_plan_free(snn_cat_plan *pl) {
    if (!pl) return;
    fftw_destroy_plan(pl->r2c1);
    fftw_destroy_plan(pl->c2r1);
    fftw_destroy_plan(pl->fwdP);
    fftw_destroy_plan(pl->bwdP);
    free(pl);
}

int snn_cat_plan_n(const snn_cat_plan *pl) { return pl->N; }
int snn_cat_plan_d(const snn_cat_plan *pl) { return pl->d; }
int snn_cat_plan_channel_block(const snn_cat_plan *pl) { return pl->cb; }
snn_cat_fft_flops snn_cat_plan_forward_flops(const snn_cat_plan *pl) { return pl->fwd; }
snn_cat_fft_flops snn_cat_plan_backward_flops(const snn_cat_plan *pl) { return pl->bwd; }

/* zr[n] = z[n] / N (times the precomputed 1/N), Zf = rfft(zr) on bins 0..N/2, and the bins
 * above by Hermitian symmetry, Zf[k] = conj(Zf[N - k]) (exact: z is real). */
static inline __attribute__((always_inline)) void z_spectrum(const snn_cat_plan *pl,
                                                             const float *z,
                                                             const cat_scratch *s,
                                                             fftw_complex *Zf) {
    const int N = pl->N;
    const double inv_n = 1.0 / (double)N;
    for (int t = 0; t < N; t++) s->zr[t] = (double)z[t] * inv_n;
    fftw_execute_dft_r2c(pl->r2c1, s->zr, Zf);
    for (int k = pl->H; k < N; k++) {
        Zf[k][0] = Zf[N - k][0];
        Zf[k][1] = -Zf[N - k][1];
    }
}

size_t snn_cat_spectra_doubles(int N, int d) {
    SNN_ASSERT(N >= 1 && d >= 1);
    const int cb = channel_block(N, d);
    const size_t n = (size_t)N;
    return blk(2 * n) + (size_t)(d / cb) * blk(2 * n * (size_t)signals(cb));
}

/* The forward's spectra kept for the backward: Z (all N bins, at the start), then fft(x_p) of
 * each channel block: block `block`'s offset in doubles. */
static size_t spectra_v_offset(const snn_cat_plan *pl, int block) {
    const size_t n = (size_t)pl->N;
    return blk(2 * n) + (size_t)block * blk(2 * n * (size_t)pl->P);
}

/* dst[i 2P + c] = m[i ld + c] for an [N, cb] block of a head at row stride ld, as doubles: the
 * block's P complex signals, interleaved; an odd cb's last imaginary part is 0. Inlined, like
 * z_spectrum, so it is compiled for the calling kernel's target clone. */
static inline __attribute__((always_inline)) void gather(int N, int cb, int P, const float *m,
                                                         int ld, double *dst) {
    for (int i = 0; i < N; i++) {
        const float *mi = m + (long)i * ld;
        double *di = dst + (size_t)i * 2 * P;
        for (int c = 0; c < cb; c++) di[c] = (double)mi[c];
        if (cb & 1) di[cb] = 0.0;
    }
}

SNN_WIDE_FN SNN_VEC_FN void snn_attn_cat_head_train(const snn_cat_plan *pl, const float *g,
                                                    int ldg, const float *v, int ld, float *o,
                                                    int ldo, float *z, double *spectra,
                                                    double *scratch) {
    const int N = pl->N, d = pl->d, cb = pl->cb, P = pl->P;
    const cat_scratch s = carve(N, P, scratch);
    SNN_ASSERT(((uintptr_t)spectra & 63) == 0);

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

    /* the convolution of the float z the backward will see; the spectra go where the
     * backward will find them, or into scratch */
    fftw_complex *const Zf = spectra ? (fftw_complex *)spectra : s.Zf;
    z_spectrum(pl, z, &s, Zf);
    for (int c0 = 0; c0 < d; c0 += cb) {
        fftw_complex *const Vf =
            spectra ? (fftw_complex *)(spectra + spectra_v_offset(pl, c0 / cb)) : s.Vf;
        gather(N, cb, P, v + c0, ld, s.Vt);
        fftw_execute_dft(pl->fwdP, (fftw_complex *)s.Vt, Vf);
        /* s.Vf = Z fft(x_p) (in place when Vf is s.Vf: each bin read, then written) */
        for (int k = 0; k < N; k++) {
            const double zr = Zf[k][0], zi = Zf[k][1];
            fftw_complex *vk = Vf + (size_t)k * P, *yk = s.Vf + (size_t)k * P;
            for (int p = 0; p < P; p++) {
                const double vr = vk[p][0], vi = vk[p][1];
                yk[p][0] = zr * vr - zi * vi;
                yk[p][1] = zr * vi + zi * vr;
            }
        }
        fftw_execute_dft(pl->bwdP, s.Vf, (fftw_complex *)s.Vt);
        for (int i = 0; i < N; i++) {
            const double *yi = s.Vt + (size_t)i * 2 * P;
            float *oi = o + (long)i * ldo + c0;
            for (int c = 0; c < cb; c++) oi[c] = (float)yi[c];
        }
    }
}

SNN_WIDE_FN SNN_VEC_FN void snn_attn_cat_head_backward(const snn_cat_plan *pl, const float *g,
                                                       int ldg, const float *v, int ld,
                                                       const float *z, const float *dout,
                                                       int lddo, float *dg, int lddg, float *dv,
                                                       const double *spectra, double *scratch) {
    (void)g, (void)ldg; /* the softmax backward needs only z */
    const int N = pl->N, d = pl->d, H = pl->H, cb = pl->cb, P = pl->P;
    const cat_scratch s = carve(N, P, scratch);

    /* the forward's spectra (read only: fftw_complex * for C's array-qualifier rules), or the
     * same transforms again (the same bits either way) */
    double *const kept = (double *)(uintptr_t)spectra;
    fftw_complex *Zf = s.Zf;
    if (kept)
        Zf = (fftw_complex *)kept;
    else
        z_spectrum(pl, z, &s, s.Zf);
    for (int c0 = 0; c0 < d; c0 += cb) {
        fftw_complex *Vf = s.Vf;
        if (kept) {
            Vf = (fftw_complex *)(kept + spectra_v_offset(pl, c0 / cb));
        } else {
            gather(N, cb, P, v + c0, ld, s.Vt);
            fftw_execute_dft(pl->fwdP, (fftw_complex *)s.Vt, s.Vf);
        }
        gather(N, cb, P, dout + c0, lddo, s.Dt);
        fftw_execute_dft(pl->fwdP, (fftw_complex *)s.Dt, s.Df);

        for (int k = 0; k < N; k++) {
            const double zr = Zf[k][0], zi = Zf[k][1];
            fftw_complex *vk = Vf + (size_t)k * P, *dk = s.Df + (size_t)k * P;
            /* dz: S_k = sum_p Y_kp conj(X_kp), signals summed in p order across blocks */
            double ar = c0 ? s.S[k][0] : 0.0, ai = c0 ? s.S[k][1] : 0.0;
            for (int p = 0; p < P; p++) {
                const double dr = dk[p][0], di = dk[p][1], vr = vk[p][0], vi = vk[p][1];
                ar += dr * vr + di * vi;
                ai += di * vr - dr * vi;
            }
            s.S[k][0] = ar, s.S[k][1] = ai;
            /* dV: conj(Z_k / N) Y_kp, in place */
            for (int p = 0; p < P; p++) {
                const double dr = dk[p][0], di = dk[p][1];
                dk[p][0] = zr * dr + zi * di;
                dk[p][1] = zr * di - zi * dr;
            }
        }

        fftw_execute_dft(pl->bwdP, s.Df, (fftw_complex *)s.Dt);
        for (int j = 0; j < N; j++) {
            const double *uj = s.Dt + (size_t)j * 2 * P;
            float *dvj = dv + (long)j * ld + c0;
            for (int c = 0; c < cb; c++) dvj[c] += (float)uj[c];
        }
    }

    /* Re ifft(S) = irfft of S's Hermitian part, in place in S's first H bins: bin k reads only
     * bins k and N - k >= k, so ascending k never reads a bin already overwritten */
    for (int k = 0; k < H; k++) {
        const int r = k ? N - k : 0;
        const double hr = 0.5 * (s.S[k][0] + s.S[r][0]), hi = 0.5 * (s.S[k][1] - s.S[r][1]);
        s.S[k][0] = hr, s.S[k][1] = hi;
    }
    fftw_execute_dft_c2r(pl->c2r1, s.S, s.dzr);
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
    const uint64_t n = (uint64_t)pl->N, signals_all = (uint64_t)(pl->d / pl->cb * pl->P);
    const snn_cat_fft_flops f = pl->fwd;
    const double F = f.add + f.mul + f.fma;
    /* FFTW counts whole operations: the total is an integer (well inside 2^53) */
    SNN_ASSERT(F >= 0.0 && F == floor(F) && F < 0x1p53);
    ops->n[SNN_OP_EXP] += n;
    ops->n[SNN_OP_DIV] += n + 1;
    ops->n[SNN_OP_CMP] += n;
    ops->n[SNN_OP_MAC] += 2 * n + 4 * n * signals_all + (uint64_t)F;
}
