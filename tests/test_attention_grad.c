/*
 * test_attention_grad.c: the training attention kernels (attention/ssa_train.c, bsa_train.c)
 * against the inference kernels, naive double references and finite differences
 * (spec/model.md section 3, research/methods.md 2.1 and 3.3, style.md 3.10).
 *
 *   - forward on spikes == snn_attn_ssa_head / snn_attn_bsa_head bit for bit (ld > d, head offset)
 *   - SSA's and BSA's forwards and backwards from bit planes == theirs from floats, byte for byte
 *   - backward == a naive double evaluation of the documented formulas (accumulates, stays in
 *     the head's columns)
 *   - finite differences of every q, k, v entry: SSA on real inputs (trilinear: a central
 *     difference is exact up to rounding), BSA in smooth mode with frozen m, r
 *   - the STE: on spikes whose scaled scores are integers the normal and smooth forwards give the
 *     same P, and the normal-mode backward equals the finite difference of the smooth forward
 *
 * Tolerances: forward comparisons are exact (==). References: 1e-5 relative (BSA's kernel sums
 * in double and rounds its outputs and dA to float once; SSA's backward is float sgemm, whose
 * error for these sizes, at most (N + d) 2^-24 ~ 1e-5 of the sum of |terms| and in practice far
 * less, also stays within it). Finite differences, loss in
 * double: eps 1e-3, relative 1e-2 or absolute 1e-4 (o is float: its rounding, ~3e-8 per output,
 * summed over the up to N d outputs one entry touches and divided by 2 eps, is a noise of a few
 * 1e-5); SSA again with eps 0.25, relative 1e-4 or absolute 1e-6 (o is linear in each single
 * entry, so a large step has no truncation error and 250 times less rounding noise).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attention/attention.h"
#include "sim/rng.h"
#include "tests/testutil.h"

/* ---- helpers ------------------------------------------------------------------------------ */

typedef struct trng {
    uint64_t seed, ctr;
} trng;

static double trng_unif(trng *r) {
    return (double)(snn_rng_u64(r->seed, 13, r->ctr++) >> 11) * 0x1p-53;
}

static const float JUNK = 77.0f;      /* columns outside the head: must never be read */
static const float SENTINEL = -555.0f; /* output columns outside the head: never written */

enum { SPIKE_BINARY, SPIKE_TERNARY, REAL };

/* [rows, ld] float matrix: columns [off, off + d) get binary/ternary spikes (nonzero with
 * probability pr) or reals uniform in [-amp, amp]; every other column gets JUNK. */
static void fill(trng *r, float *m, int rows, int ld, int off, int d, int kind, double pr,
                 double amp) {
    for (int i = 0; i < rows; i++)
        for (int c = 0; c < ld; c++) {
            float val = JUNK;
            if (c >= off && c < off + d) {
                if (kind == REAL) {
                    val = (float)(amp * (2.0 * trng_unif(r) - 1.0));
                } else {
                    val = 0.0f;
                    if (trng_unif(r) < pr)
                        val = (kind == SPIKE_TERNARY && trng_unif(r) < 0.5) ? -1.0f : 1.0f;
                }
            }
            m[(size_t)i * ld + c] = val;
        }
}

static void to_int8(const float *m, int8_t *out, size_t n) {
    for (size_t t = 0; t < n; t++) out[t] = (int8_t)(m[t] == JUNK ? 2 : m[t]);
}

static void set_all(float *m, size_t n, float val) {
    for (size_t t = 0; t < n; t++) m[t] = val;
}

/* Checks out[i * ldx + c], c < d, against want[i * d + c] (double) within rel (plus a tiny
 * absolute floor), and that columns outside [off, off + d) still hold `outside`. */
static void check_grad(const float *got, int rows, int ld, int off, int d, const double *want,
                       double rel, float outside, const char *label) {
    for (int i = 0; i < rows; i++)
        for (int c = 0; c < ld; c++) {
            const double g = got[(size_t)i * ld + c];
            if (c < off || c >= off + d) {
                if (g != outside) fail_msg("%s: column %d outside the head written", label, c);
                continue;
            }
            const double w = want[(size_t)i * d + (c - off)];
            if (fabs(g - w) > 1e-6 + rel * fabs(w))
                fail_msg("%s[%d][%d] = %.9g, reference %.9g", label, i, c - off, g, w);
        }
}

/* ---- forward equality with the inference kernels ------------------------------------------ */

static const int SIZES[][2] = {{1, 1},   {2, 3},   {5, 8},  {17, 3},
                               {16, 16}, {64, 64}, {9, 70}, {33, 65}};
enum { N_SIZES = sizeof SIZES / sizeof SIZES[0] };
/* The forwards' exact comparisons also take the shipped head, {49, 16}, one past SSA's fast
 * paths' N (64), {70, 16}, a 14 x 14 grid of patches, {196, 16}, BSA's largest fast head at
 * d = 64, {256, 64}, one past it, {257, 64}, and a long one, {520, 16}; {9, 70} and {33, 65}
 * are past both fast paths' d. (The backward tests' relative tolerance does not allow for the
 * cancellation of longer sums.) */
static const int FWD_SIZES[][2] = {{1, 1},    {2, 3},    {5, 8},    {17, 3},   {16, 16},
                                   {49, 16},  {64, 64},  {70, 16},  {196, 16}, {256, 64},
                                   {257, 64}, {520, 16}, {9, 70},   {33, 65}};
enum { N_FWD_SIZES = sizeof FWD_SIZES / sizeof FWD_SIZES[0] };

static void test_ssa_forward_matches_inference(void **state) {
    (void)state;
    for (int sz = 0; sz < N_FWD_SIZES; sz++) {
        const int N = FWD_SIZES[sz][0], d = FWD_SIZES[sz][1];
        const int ld = 3 * d + 1, off = d, ldo = d + 2;
        const size_t nm = (size_t)N * ld;
        float *q = malloc(nm * sizeof *q), *k = malloc(nm * sizeof *k), *v = malloc(nm * sizeof *v);
        int8_t *q8 = malloc(nm), *k8 = malloc(nm), *v8 = malloc(nm);
        float *o = malloc((size_t)N * ldo * sizeof *o), *o8 = malloc((size_t)N * ldo * sizeof *o8);
        float *sc = malloc((size_t)N * N * sizeof *sc);
        int32_t *sc8 = malloc((size_t)N * N * sizeof *sc8);
        for (int rep = 0; rep < 3; rep++) {
            trng r = {(uint64_t)(sz * 10 + rep), 0};
            const double pr = rep == 0 ? 0.1 : rep == 1 ? 0.4 : 0.9;
            fill(&r, q, N, ld, off, d, SPIKE_BINARY, pr, 0);
            fill(&r, k, N, ld, off, d, SPIKE_BINARY, pr, 0);
            fill(&r, v, N, ld, off, d, SPIKE_BINARY, pr, 0);
            to_int8(q, q8, nm), to_int8(k, k8, nm), to_int8(v, v8, nm);
            set_all(o, (size_t)N * ldo, SENTINEL);
            set_all(o8, (size_t)N * ldo, SENTINEL);
            snn_attn_ssa_head_train(N, d, q + off, k + off, v + off, ld, 0.125f, o, ldo, sc);
            snn_attn_ssa_head(N, d, q8 + off, k8 + off, v8 + off, ld, 0.125f, o8, ldo, sc8, NULL);
            assert_memory_equal(o, o8, (size_t)N * ldo * sizeof *o);
            for (long t = 0; t < (long)N * N; t++) assert_true(sc[t] == (float)sc8[t]);
        }
        free(q), free(k), free(v), free(q8), free(k8), free(v8), free(o), free(o8), free(sc);
        free(sc8);
    }
}

/* Bit planes of m [N, ld] from bit pos (m[e] at bit pos + e): nz set where m != 0, neg where
 * m < 0 (columns outside the head hold JUNK: set in nz, as other heads' spikes would be); every
 * bit before pos and past the rows set in both planes. */
static void pack_bits(const float *m, size_t nm, size_t pos, uint64_t *nz, uint64_t *neg,
                      size_t words) {
    memset(nz, 0xff, words * 8), memset(neg, 0xff, words * 8);
    for (size_t e = 0; e < nm; e++) {
        const size_t b = pos + e;
        const uint64_t bit = UINT64_C(1) << (b % 64);
        if (m[e] == 0.0f) nz[b / 64] &= ~bit;
        if (!(m[e] < 0.0f)) neg[b / 64] &= ~bit;
    }
}

/* Heads of the bits kernels' tests: within their limits (N, d <= 64), with d past 16 (SSA's
 * lane-mask path) and past 32 (the high half of the keys' words). */
static const int BITS_SIZES[][2] = {{1, 1},   {2, 3},   {5, 8},   {17, 3}, {16, 16},
                                    {49, 16}, {20, 17}, {30, 33}, {64, 64}};
enum { N_BITS_SIZES = sizeof BITS_SIZES / sizeof BITS_SIZES[0] };

/* The forward from bits (snn_attn_ssa_head_train_bits) gives the float forward's o and scores
 * byte for byte: the spikes packed into bit-plane rows starting at bit 37 (fields straddle
 * words), ld bits per token, every bit outside the head set (as other heads' spikes would be),
 * over BITS_SIZES. */
static void test_ssa_bits_forward_matches_floats(void **state) {
    (void)state;
    for (int sz = 0; sz < N_BITS_SIZES; sz++) {
        const int N = BITS_SIZES[sz][0], d = BITS_SIZES[sz][1];
        const int ld = 3 * d + 1, off = d, ldo = d + 2;
        const size_t nm = (size_t)N * ld, pos = 37;
        const size_t words = (pos + nm + 63) / 64;
        float *q = malloc(nm * sizeof *q), *k = malloc(nm * sizeof *k), *v = malloc(nm * sizeof *v);
        uint64_t *qb = malloc(words * 8), *kb = malloc(words * 8), *vb = malloc(words * 8);
        uint64_t *neg = malloc(words * 8);
        float *o = malloc((size_t)N * ldo * sizeof *o), *ob = malloc((size_t)N * ldo * sizeof *ob);
        float *sc = malloc((size_t)N * N * sizeof *sc), *scb = malloc((size_t)N * N * sizeof *scb);
        for (int rep = 0; rep < 3; rep++) {
            trng r = {(uint64_t)(500 + sz * 10 + rep), 0};
            const double pr = rep == 0 ? 0.1 : rep == 1 ? 0.4 : 0.9;
            fill(&r, q, N, ld, off, d, SPIKE_BINARY, pr, 0);
            fill(&r, k, N, ld, off, d, SPIKE_BINARY, pr, 0);
            fill(&r, v, N, ld, off, d, SPIKE_BINARY, pr, 0);
            pack_bits(q, nm, pos, qb, neg, words), pack_bits(k, nm, pos, kb, neg, words);
            pack_bits(v, nm, pos, vb, neg, words);
            set_all(o, (size_t)N * ldo, SENTINEL), set_all(ob, (size_t)N * ldo, SENTINEL);
            snn_attn_ssa_head_train(N, d, q + off, k + off, v + off, ld, 0.125f, o, ldo, sc);
            const snn_head_bits hb = {qb, NULL, kb, NULL, vb, pos + (size_t)off, (size_t)ld};
            snn_attn_ssa_head_train_bits(N, d, &hb, 0.125f, ob, ldo, scb);
            assert_memory_equal(o, ob, (size_t)N * ldo * sizeof *o);
            assert_memory_equal(sc, scb, (size_t)N * N * sizeof *sc);
        }
        free(q), free(k), free(v), free(qb), free(kb), free(vb), free(o), free(ob), free(sc);
        free(scb), free(neg);
    }
}

/* BSA's forward from bits (snn_attn_bsa_head_train_bits: ternary q, k in two planes each, v
 * binary) gives the float forward's o, P, m and r byte for byte, packed as in the SSA test
 * above, over BITS_SIZES, shifts and both rounding modes. */
static void test_bsa_bits_forward_matches_floats(void **state) {
    (void)state;
    for (int sz = 0; sz < N_BITS_SIZES; sz++) {
        const int N = BITS_SIZES[sz][0], d = BITS_SIZES[sz][1];
        const int ld = 2 * d + 3, off = d + 1, ldo = d + 1;
        const size_t nm = (size_t)N * ld, nn = (size_t)N * N, pos = 29;
        const size_t words = (pos + nm + 63) / 64;
        float *q = malloc(nm * sizeof *q), *k = malloc(nm * sizeof *k), *v = malloc(nm * sizeof *v);
        uint64_t *qz = malloc(words * 8), *qn = malloc(words * 8), *kz = malloc(words * 8);
        uint64_t *kn = malloc(words * 8), *vz = malloc(words * 8), *vn = malloc(words * 8);
        float *o = malloc((size_t)N * ldo * sizeof *o), *ob = malloc((size_t)N * ldo * sizeof *ob);
        float *P = malloc(nn * sizeof *P), *Pb = malloc(nn * sizeof *Pb);
        int32_t *mr = malloc(2 * (size_t)N * sizeof *mr), *mrb = malloc(2 * (size_t)N * sizeof *mrb);
        for (int shift = 0; shift < 4; shift++)
            for (int mode = 0; mode < 2; mode++) {
                const snn_shiftmax_round rm = mode ? SNN_SHIFTMAX_CEIL : SNN_SHIFTMAX_ROUND;
                trng r = {(uint64_t)(3000 + sz * 100 + shift * 10 + mode), 0};
                const double pr = 0.2 + 0.2 * shift;
                fill(&r, q, N, ld, off, d, SPIKE_TERNARY, pr, 0);
                fill(&r, k, N, ld, off, d, SPIKE_TERNARY, pr, 0);
                fill(&r, v, N, ld, off, d, SPIKE_BINARY, 0.5, 0);
                pack_bits(q, nm, pos, qz, qn, words), pack_bits(k, nm, pos, kz, kn, words);
                pack_bits(v, nm, pos, vz, vn, words);
                set_all(o, (size_t)N * ldo, SENTINEL), set_all(ob, (size_t)N * ldo, SENTINEL);
                snn_attn_bsa_head_train(N, d, q + off, k + off, v + off, ld, shift, rm, false, o,
                                        ldo, P, mr, false);
                const snn_head_bits hb = {qz, qn, kz, kn, vz, pos + (size_t)off, (size_t)ld};
                snn_attn_bsa_head_train_bits(N, d, &hb, shift, rm, ob, ldo, Pb, mrb);
                assert_memory_equal(o, ob, (size_t)N * ldo * sizeof *o);
                assert_memory_equal(P, Pb, nn * sizeof *P);
                assert_memory_equal(mr, mrb, 2 * (size_t)N * sizeof *mr);
            }
        free(q), free(k), free(v), free(qz), free(qn), free(kz), free(kn), free(vz), free(vn);
        free(o), free(ob), free(P), free(Pb), free(mr), free(mrb);
    }
}

static int32_t floor_div(int32_t a, int shift) {
    return (int32_t)floor(ldexp((double)a, -shift));
}

static void test_bsa_forward_matches_inference(void **state) {
    (void)state;
    static const int shifts[] = {0, 1, 2, 3, -1};
    for (int sz = 0; sz < N_FWD_SIZES; sz++) {
        const int N = FWD_SIZES[sz][0], d = FWD_SIZES[sz][1];
        const int ld = 2 * d + 3, off = d + 1, ldo = d + 1;
        const size_t nm = (size_t)N * ld, nn = (size_t)N * N;
        float *q = malloc(nm * sizeof *q), *k = malloc(nm * sizeof *k), *v = malloc(nm * sizeof *v);
        int8_t *q8 = malloc(nm), *k8 = malloc(nm), *v8 = malloc(nm);
        float *o = malloc((size_t)N * ldo * sizeof *o), *o8 = malloc((size_t)N * ldo * sizeof *o8);
        float *o2 = malloc((size_t)N * ldo * sizeof *o2);
        float *P = malloc(nn * sizeof *P), *P2 = malloc(nn * sizeof *P2);
        int32_t *e8 = malloc(nn * sizeof *e8), *mr = malloc(2 * (size_t)N * sizeof *mr);
        for (int si = 0; si < 5; si++)
            for (int mode = 0; mode < 2; mode++) {
                const int shift = shifts[si];
                const snn_shiftmax_round rm = mode ? SNN_SHIFTMAX_CEIL : SNN_SHIFTMAX_ROUND;
                trng r = {(uint64_t)(1000 + sz * 100 + si * 10 + mode), 0};
                const double pr = 0.2 + 0.15 * si;
                fill(&r, q, N, ld, off, d, SPIKE_TERNARY, pr, 0);
                fill(&r, k, N, ld, off, d, SPIKE_TERNARY, pr, 0);
                fill(&r, v, N, ld, off, d, SPIKE_BINARY, 0.5, 0);
                to_int8(q, q8, nm), to_int8(k, k8, nm), to_int8(v, v8, nm);
                set_all(o, (size_t)N * ldo, SENTINEL);
                set_all(o8, (size_t)N * ldo, SENTINEL);
                snn_attn_bsa_head_train(N, d, q + off, k + off, v + off, ld, shift, rm, false, o,
                                        ldo, P, mr, false);
                snn_attn_bsa_head(N, d, q8 + off, k8 + off, v8 + off, ld, shift, rm, o8, ldo, e8,
                                  NULL);
                assert_memory_equal(o, o8, (size_t)N * ldo * sizeof *o);
                for (size_t t = 0; t < nn; t++) assert_true(P[t] == ldexpf(1.0f, e8[t]));
                /* m_i = max_j floor(s A_ij) from a naive integer A; r_i = -max_j e_ij */
                for (int i = 0; i < N; i++) {
                    int32_t m = INT32_MIN, emax = INT32_MIN;
                    for (int j = 0; j < N; j++) {
                        int32_t a = 0;
                        for (int c = 0; c < d; c++)
                            a += (int32_t)q8[(size_t)i * ld + off + c] *
                                 k8[(size_t)j * ld + off + c];
                        if (floor_div(a, shift) > m) m = floor_div(a, shift);
                        if (e8[(size_t)i * N + j] > emax) emax = e8[(size_t)i * N + j];
                    }
                    assert_int_equal(mr[2 * i], m);
                    assert_int_equal(mr[2 * i + 1], -emax);
                }
                /* frozen with the same m, r: the same forward */
                snn_attn_bsa_head_train(N, d, q + off, k + off, v + off, ld, shift, rm, false, o2,
                                        ldo, P2, mr, true);
                for (int i = 0; i < N; i++)
                    assert_memory_equal(o2 + (size_t)i * ldo, o + (size_t)i * ldo,
                                        (size_t)d * sizeof *o);
                assert_memory_equal(P2, P, nn * sizeof *P);
            }
        free(q), free(k), free(v), free(q8), free(k8), free(v8), free(o), free(o8), free(o2);
        free(P), free(P2), free(e8), free(mr);
    }
}

/* ---- backward against naive double references --------------------------------------------- */

typedef struct head_bufs {
    int N, d, ld, off, lddo;
    float *q, *k, *v, *dout, *dq, *dk, *dv, *w, *scratch, *o;
    int32_t *mr;
    double *rq, *rk, *rv;  /* references [N, d] */
} head_bufs;

static head_bufs hb_new(int N, int d, int ld, int off, int lddo) {
    head_bufs b = {.N = N, .d = d, .ld = ld, .off = off, .lddo = lddo};
    const size_t nm = (size_t)N * ld, nn = (size_t)N * N;
    b.q = malloc(nm * sizeof(float)), b.k = malloc(nm * sizeof(float));
    b.v = malloc(nm * sizeof(float)), b.dq = malloc(nm * sizeof(float));
    b.dk = malloc(nm * sizeof(float)), b.dv = malloc(nm * sizeof(float));
    b.dout = malloc((size_t)N * lddo * sizeof(float));
    b.o = malloc((size_t)N * lddo * sizeof(float));
    b.w = malloc(nn * sizeof(float)), b.scratch = malloc(nn * sizeof(float));
    b.mr = malloc(2 * (size_t)N * sizeof(int32_t));
    b.rq = malloc((size_t)N * d * sizeof(double)), b.rk = malloc((size_t)N * d * sizeof(double));
    b.rv = malloc((size_t)N * d * sizeof(double));
    return b;
}

static void hb_free(head_bufs *b) {
    free(b->q), free(b->k), free(b->v), free(b->dq), free(b->dk), free(b->dv), free(b->dout);
    free(b->o), free(b->w), free(b->scratch), free(b->mr), free(b->rq), free(b->rk), free(b->rv);
}

#define AT(m, i, c) ((double)(m)[(size_t)(i) * b->ld + b->off + (c)])

/* References from W (A for SSA, P for BSA) and dW -> dA factor g(i, j) = dA_ij / (dO V^T)_ij:
 *   dV = wscale W^T dO;  dA_ij = fac_ij (dO V^T)_ij;  dQ = dA K;  dK = dA^T Q (all +0.5 prefill) */
static void reference_backward(const head_bufs *b, double wscale, const double *fac) {
    const int N = b->N, d = b->d;
    double *da = malloc((size_t)N * N * sizeof *da);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            double acc = 0;
            for (int c = 0; c < d; c++)
                acc += (double)b->dout[(size_t)i * b->lddo + c] * AT(b->v, j, c);
            da[(size_t)i * N + j] = fac[(size_t)i * N + j] * acc;
        }
    for (int j = 0; j < N; j++)
        for (int c = 0; c < d; c++) {
            double acc = 0;
            for (int i = 0; i < N; i++)
                acc += (double)b->w[(size_t)i * N + j] * b->dout[(size_t)i * b->lddo + c];
            b->rv[(size_t)j * d + c] = 0.5 + wscale * acc;
        }
    for (int i = 0; i < N; i++)
        for (int c = 0; c < d; c++) {
            double aq = 0, ak = 0;
            for (int j = 0; j < N; j++) {
                aq += da[(size_t)i * N + j] * AT(b->k, j, c);
                ak += da[(size_t)j * N + i] * AT(b->q, j, c);
            }
            b->rq[(size_t)i * d + c] = 0.5 + aq;
            b->rk[(size_t)i * d + c] = 0.5 + ak;
        }
    free(da);
}

static void prefill_grads(head_bufs *b) {
    const size_t nm = (size_t)b->N * b->ld;
    set_all(b->dq, nm, 0.5f), set_all(b->dk, nm, 0.5f), set_all(b->dv, nm, 0.5f);
    /* outside the head the gradient buffers hold SENTINEL, which must survive */
    for (size_t t = 0; t < nm; t++) {
        const int c = (int)(t % (size_t)b->ld);
        if (c < b->off || c >= b->off + b->d) b->dq[t] = b->dk[t] = b->dv[t] = SENTINEL;
    }
}

static void check_all(const head_bufs *b, double rel, const char *what) {
    char label[64];
    snprintf(label, sizeof label, "%s dQ", what);
    check_grad(b->dq, b->N, b->ld, b->off, b->d, b->rq, rel, SENTINEL, label);
    snprintf(label, sizeof label, "%s dK", what);
    check_grad(b->dk, b->N, b->ld, b->off, b->d, b->rk, rel, SENTINEL, label);
    snprintf(label, sizeof label, "%s dV", what);
    check_grad(b->dv, b->N, b->ld, b->off, b->d, b->rv, rel, SENTINEL, label);
}

static void test_ssa_backward_matches_reference(void **state) {
    (void)state;
    for (int sz = 0; sz < N_SIZES; sz++) {
        const int N = SIZES[sz][0], d = SIZES[sz][1];
        head_bufs hb = hb_new(N, d, 2 * d + 1, d, d + 3);
        head_bufs *b = &hb;
        for (int kind = 0; kind < 2; kind++) {  /* spikes, then reals */
            trng r = {(uint64_t)(2000 + sz * 2 + kind), 0};
            const int sk = kind == 0 ? SPIKE_BINARY : REAL;
            fill(&r, b->q, N, b->ld, b->off, d, sk, 0.4, 1.0);
            fill(&r, b->k, N, b->ld, b->off, d, sk, 0.4, 1.0);
            fill(&r, b->v, N, b->ld, b->off, d, sk, 0.4, 1.0);
            fill(&r, b->dout, N, b->lddo, 0, d, REAL, 0, 1.0);
            snn_attn_ssa_head_train(N, d, b->q + b->off, b->k + b->off, b->v + b->off, b->ld,
                                    0.125f, b->o, b->lddo, b->w);
            prefill_grads(b);
            snn_attn_ssa_head_backward(N, d, b->q + b->off, b->k + b->off, b->v + b->off, b->ld,
                                       0.125f, b->w, b->dout, b->lddo, b->dq + b->off,
                                       b->dk + b->off, b->dv + b->off, b->scratch);
            double *fac = malloc((size_t)N * N * sizeof *fac);
            for (size_t t = 0; t < (size_t)N * N; t++) fac[t] = 0.125;
            reference_backward(b, 0.125, fac);
            free(fac);
            check_all(b, 1e-5, kind == 0 ? "ssa spikes" : "ssa reals");
        }
        hb_free(&hb);
    }
}

/* Random q, k, v (spikes with density pr, or reals for smooth) and dout, and the BSA forward
 * (P into b->w). */
static void bsa_head_forward(head_bufs *b, trng *r, bool smooth, int shift, double pr) {
    const int N = b->N, d = b->d;
    fill(r, b->q, N, b->ld, b->off, d, smooth ? REAL : SPIKE_TERNARY, pr, 1.0);
    fill(r, b->k, N, b->ld, b->off, d, smooth ? REAL : SPIKE_TERNARY, pr, 1.0);
    fill(r, b->v, N, b->ld, b->off, d, smooth ? REAL : SPIKE_BINARY, pr, 1.0);
    fill(r, b->dout, N, b->lddo, 0, d, REAL, 0, 1.0);
    snn_attn_bsa_head_train(N, d, b->q + b->off, b->k + b->off, b->v + b->off, b->ld, shift,
                            SNN_SHIFTMAX_ROUND, smooth, b->o, b->lddo, b->w, b->mr, false);
}

/* The backwards from bits (snn_attn_{ssa,bsa}_head_backward_bits: the head unpacked into
 * compact tiles) give the float backwards' dq, dk, dv byte for byte, accumulated into 0.5, with
 * the gradient buffers' columns outside the head untouched; spikes packed as in
 * test_ssa_bits_forward_matches_floats. */
static void test_backward_bits_equals_floats(void **state) {
    (void)state;
    static const int sizes[][2] = {{1, 1}, {5, 8}, {17, 3}, {16, 16}, {49, 16}, {20, 17}, {64, 64}};
    for (size_t sz = 0; sz < sizeof sizes / sizeof *sizes; sz++)
        for (int bsa = 0; bsa < 2; bsa++) {
            const int N = sizes[sz][0], d = sizes[sz][1];
            head_bufs hb = hb_new(N, d, 2 * d + 3, d + 1, d + 2);
            head_bufs *b = &hb;
            const size_t nm = (size_t)N * b->ld, pos = 11, words = (pos + nm + 63) / 64;
            uint64_t *qz = malloc(words * 8), *qn = malloc(words * 8), *kz = malloc(words * 8);
            uint64_t *kn = malloc(words * 8), *vz = malloc(words * 8), *vn = malloc(words * 8);
            float *g[3] = {malloc(nm * sizeof(float)), malloc(nm * sizeof(float)),
                           malloc(nm * sizeof(float))};
            trng r = {(uint64_t)(4000 + sz * 2 + bsa), 0};
            if (bsa) {
                bsa_head_forward(b, &r, false, 2, 0.4);
            } else {
                fill(&r, b->q, N, b->ld, b->off, d, SPIKE_BINARY, 0.4, 0);
                fill(&r, b->k, N, b->ld, b->off, d, SPIKE_BINARY, 0.4, 0);
                fill(&r, b->v, N, b->ld, b->off, d, SPIKE_BINARY, 0.4, 0);
                fill(&r, b->dout, N, b->lddo, 0, d, REAL, 0, 1.0);
                snn_attn_ssa_head_train(N, d, b->q + b->off, b->k + b->off, b->v + b->off,
                                        b->ld, 0.125f, b->o, b->lddo, b->w);
            }
            pack_bits(b->q, nm, pos, qz, qn, words), pack_bits(b->k, nm, pos, kz, kn, words);
            pack_bits(b->v, nm, pos, vz, vn, words);
            prefill_grads(b);
            memcpy(g[0], b->dq, nm * sizeof(float)), memcpy(g[1], b->dk, nm * sizeof(float));
            memcpy(g[2], b->dv, nm * sizeof(float));
            /* ssa's kernels take binary q, k: no neg planes */
            const snn_head_bits bits = {qz, bsa ? qn : NULL, kz, bsa ? kn : NULL,
                                        vz, pos + (size_t)b->off, (size_t)b->ld};
            if (bsa) {
                snn_attn_bsa_head_backward(N, d, b->q + b->off, b->k + b->off, b->v + b->off,
                                           b->ld, 2, b->w, b->dout, b->lddo, b->dq + b->off,
                                           b->dk + b->off, b->dv + b->off, b->scratch);
                snn_attn_bsa_head_backward_bits(N, d, &bits, 2, b->w, b->dout, b->lddo,
                                                g[0] + b->off, g[1] + b->off, g[2] + b->off,
                                                b->ld, b->scratch);
            } else {
                snn_attn_ssa_head_backward(N, d, b->q + b->off, b->k + b->off, b->v + b->off,
                                           b->ld, 0.125f, b->w, b->dout, b->lddo,
                                           b->dq + b->off, b->dk + b->off, b->dv + b->off,
                                           b->scratch);
                snn_attn_ssa_head_backward_bits(N, d, &bits, 0.125f, b->w, b->dout, b->lddo,
                                                g[0] + b->off, g[1] + b->off, g[2] + b->off,
                                                b->ld, b->scratch);
            }
            assert_memory_equal(b->dq, g[0], nm * sizeof(float));
            assert_memory_equal(b->dk, g[1], nm * sizeof(float));
            assert_memory_equal(b->dv, g[2], nm * sizeof(float));
            free(qz), free(qn), free(kz), free(kn), free(vz), free(vn);
            free(g[0]), free(g[1]), free(g[2]);
            hb_free(&hb);
        }
}


static void test_bsa_backward_matches_reference(void **state) {
    (void)state;
    for (int sz = 0; sz < N_SIZES; sz++) {
        const int N = SIZES[sz][0], d = SIZES[sz][1];
        head_bufs hb = hb_new(N, d, 2 * d + 2, d + 1, d);
        head_bufs *b = &hb;
        for (int smooth = 0; smooth < 2; smooth++) {
            const int shift = smooth ? 1 : snn_shiftmax_default_shift(d);
            trng r = {(uint64_t)(3000 + sz * 2 + smooth), 0};
            bsa_head_forward(b, &r, smooth, shift, 0.5);
            prefill_grads(b);
            snn_attn_bsa_head_backward(N, d, b->q + b->off, b->k + b->off, b->v + b->off, b->ld,
                                       shift, b->w, b->dout, b->lddo, b->dq + b->off,
                                       b->dk + b->off, b->dv + b->off, b->scratch);
            /* dA = 2^-shift ln2 P (.) dP */
            double *fac = malloc((size_t)N * N * sizeof *fac);
            for (size_t t = 0; t < (size_t)N * N; t++)
                fac[t] = ldexp(log(2.0), -shift) * (double)b->w[t];
            reference_backward(b, 1.0, fac);
            free(fac);
            check_all(b, 1e-5, smooth ? "bsa smooth" : "bsa normal");
        }
        hb_free(&hb);
    }
}

/* The fast backward (d <= 64, N d <= 16384) equals snn_attn_bsa_head_backward_ref bit for bit: on
 * spikes (normal forward), on reals (smooth forward) and with some P_ij = 0 (whose dV terms both
 * skip). A changed sum order or a wrong skipped term changes low bits of some gradient. */
static void test_bsa_backward_fast_equals_ref(void **state) {
    (void)state;
    static const int sizes[][2] = {{1, 1},   {5, 8},   {17, 3},  {16, 16},  {49, 16},
                                   {64, 64}, {33, 20}, {99, 16}, {196, 16}, {256, 64},
                                   {300, 50}, {1024, 16}};
    for (size_t sz = 0; sz < sizeof sizes / sizeof *sizes; sz++) {
        const int N = sizes[sz][0], d = sizes[sz][1];
        head_bufs fast = hb_new(N, d, 2 * d + 3, d + 1, d + 2);
        head_bufs ref = hb_new(N, d, 2 * d + 3, d + 1, d + 2);
        const size_t nm = (size_t)N * fast.ld, nn = (size_t)N * N;
        for (int variant = 0; variant < 3; variant++) {
            const bool smooth = variant == 1;
            const int shift = smooth ? 1 : snn_shiftmax_default_shift(d);
            trng r = {(uint64_t)(3500 + sz * 3 + variant), 0};
            head_bufs *b = &fast;
            bsa_head_forward(b, &r, smooth, shift, 0.3);
            if (variant == 2)
                for (size_t t = 0; t < nn; t += 3) b->w[t] = 0.0f;
            prefill_grads(b);
            memcpy(ref.q, b->q, nm * sizeof(float)), memcpy(ref.k, b->k, nm * sizeof(float));
            memcpy(ref.v, b->v, nm * sizeof(float)), memcpy(ref.w, b->w, nn * sizeof(float));
            memcpy(ref.dout, b->dout, (size_t)N * b->lddo * sizeof(float));
            prefill_grads(&ref);
            snn_attn_bsa_head_backward(N, d, b->q + b->off, b->k + b->off, b->v + b->off, b->ld,
                                       shift, b->w, b->dout, b->lddo, b->dq + b->off,
                                       b->dk + b->off, b->dv + b->off, b->scratch);
            snn_attn_bsa_head_backward_ref(N, d, ref.q + ref.off, ref.k + ref.off,
                                           ref.v + ref.off, ref.ld, shift, ref.w, ref.dout,
                                           ref.lddo, ref.dq + ref.off, ref.dk + ref.off,
                                           ref.dv + ref.off, ref.scratch);
            if (memcmp(b->dq, ref.dq, nm * sizeof(float)) ||
                memcmp(b->dk, ref.dk, nm * sizeof(float)) ||
                memcmp(b->dv, ref.dv, nm * sizeof(float)) ||
                memcmp(b->scratch, ref.scratch, nn * sizeof(float)))
                fail_msg("bsa backward N %d d %d variant %d: fast and reference differ", N, d,
                         variant);
        }
        hb_free(&fast), hb_free(&ref);
    }
}

/* ---- finite differences -------------------------------------------------------------------- */

typedef enum { K_SSA, K_BSA_SMOOTH_FROZEN } fd_kernel;

typedef struct fd_case {
    fd_kernel kernel;
    int shift;
    const float *r;  /* [N, lddo] loss weights */
} fd_case;

/* L = sum_ic r_ic o_ic in double. */
static double fd_loss(head_bufs *b, const fd_case *fc) {
    if (fc->kernel == K_SSA)
        snn_attn_ssa_head_train(b->N, b->d, b->q + b->off, b->k + b->off, b->v + b->off, b->ld,
                                0.125f, b->o, b->lddo, b->w);
    else
        snn_attn_bsa_head_train(b->N, b->d, b->q + b->off, b->k + b->off, b->v + b->off, b->ld,
                                fc->shift, SNN_SHIFTMAX_ROUND, true, b->o, b->lddo, b->w, b->mr,
                                true);
    double L = 0.0;
    for (int i = 0; i < b->N; i++)
        for (int c = 0; c < b->d; c++)
            L += (double)fc->r[(size_t)i * b->lddo + c] * b->o[(size_t)i * b->lddo + c];
    return L;
}

/* Central differences of every in-head entry of q, k and v against the analytic gradients
 * (dq, dk, dv, accumulated from 0); returns the largest relative error among derivatives of
 * magnitude >= 1e-2 (for the record). */
static double fd_check_all(head_bufs *b, const fd_case *fc, double eps, double rel,
                           double abs_floor, const char *label) {
    float *const mats[3] = {b->q, b->k, b->v};
    const float *const grads[3] = {b->dq, b->dk, b->dv};
    static const char *const names[3] = {"q", "k", "v"};
    double worst = 0.0;
    for (int mi = 0; mi < 3; mi++)
        for (int i = 0; i < b->N; i++)
            for (int c = 0; c < b->d; c++) {
                const size_t at = (size_t)i * b->ld + b->off + c;
                float *m = mats[mi];
                const float x0 = m[at], xp = (float)(x0 + eps), xm = (float)(x0 - eps);
                m[at] = xp;
                const double Lp = fd_loss(b, fc);
                m[at] = xm;
                const double Lm = fd_loss(b, fc);
                m[at] = x0;
                const double num = (Lp - Lm) / ((double)xp - xm);
                const double a = grads[mi][at];
                const double diff = fabs(a - num);
                const double re = diff / fmax(fmax(fabs(a), fabs(num)), 1e-30);
                if (!(diff < abs_floor || re < rel))
                    fail_msg("%s: d%s[%d][%d]: backward %.9g, finite difference %.9g", label,
                             names[mi], i, c, a, num);
                if (fmax(fabs(a), fabs(num)) >= 1e-2 && re > worst) worst = re;
            }
    return worst;
}

static void test_ssa_finite_differences(void **state) {
    (void)state;
    static const int cases[][2] = {{6, 5}, {4, 9}, {1, 3}};
    double worst = 0.0, worst2 = 0.0;
    for (int ci = 0; ci < 3; ci++) {
        const int N = cases[ci][0], d = cases[ci][1];
        head_bufs hb = hb_new(N, d, 2 * d + 1, d + 1, d + 1);
        head_bufs *b = &hb;
        trng r = {(uint64_t)(4000 + ci), 0};
        fill(&r, b->q, N, b->ld, b->off, d, REAL, 0, 1.0);
        fill(&r, b->k, N, b->ld, b->off, d, REAL, 0, 1.0);
        fill(&r, b->v, N, b->ld, b->off, d, REAL, 0, 1.0);
        float *rw = malloc((size_t)N * b->lddo * sizeof *rw);
        fill(&r, rw, N, b->lddo, 0, d, REAL, 0, 1.0);
        const fd_case fc = {K_SSA, 0, rw};
        fd_loss(b, &fc);  /* forward at the base point: scores */
        set_all(b->dq, (size_t)N * b->ld, 0.0f), set_all(b->dk, (size_t)N * b->ld, 0.0f);
        set_all(b->dv, (size_t)N * b->ld, 0.0f);
        snn_attn_ssa_head_backward(N, d, b->q + b->off, b->k + b->off, b->v + b->off, b->ld,
                                   0.125f, b->w, rw, b->lddo, b->dq + b->off, b->dk + b->off,
                                   b->dv + b->off, b->scratch);
        double w = fd_check_all(b, &fc, 1e-3, 1e-2, 1e-4, "ssa eps 1e-3");
        if (w > worst) worst = w;
        /* O is linear in each single entry: a large step is exact up to rounding */
        w = fd_check_all(b, &fc, 0.25, 1e-4, 1e-6, "ssa eps 0.25");
        if (w > worst2) worst2 = w;
        free(rw);
        hb_free(&hb);
    }
    print_message("ssa finite differences: max relative error (|grad| >= 1e-2) %.2e (eps 1e-3), "
                  "%.2e (eps 0.25)\n", worst, worst2);
}

/* BSA smooth, frozen m, r (taken from an unfrozen smooth forward at the base point). */
static void test_bsa_smooth_finite_differences(void **state) {
    (void)state;
    static const int cases[][3] = {{6, 5, 1}, {5, 8, 2}, {4, 4, 0}, {3, 7, 3}};
    double worst = 0.0;
    for (int ci = 0; ci < 4; ci++) {
        const int N = cases[ci][0], d = cases[ci][1], shift = cases[ci][2];
        head_bufs hb = hb_new(N, d, 2 * d + 1, d, d + 2);
        head_bufs *b = &hb;
        trng r = {(uint64_t)(5000 + ci), 0};
        fill(&r, b->q, N, b->ld, b->off, d, REAL, 0, 1.5);
        fill(&r, b->k, N, b->ld, b->off, d, REAL, 0, 1.5);
        fill(&r, b->v, N, b->ld, b->off, d, REAL, 0, 1.0);
        float *rw = malloc((size_t)N * b->lddo * sizeof *rw);
        fill(&r, rw, N, b->lddo, 0, d, REAL, 0, 1.0);
        snn_attn_bsa_head_train(N, d, b->q + b->off, b->k + b->off, b->v + b->off, b->ld, shift,
                                SNN_SHIFTMAX_ROUND, true, b->o, b->lddo, b->w, b->mr, false);
        const fd_case fc = {K_BSA_SMOOTH_FROZEN, shift, rw};
        fd_loss(b, &fc);
        set_all(b->dq, (size_t)N * b->ld, 0.0f), set_all(b->dk, (size_t)N * b->ld, 0.0f);
        set_all(b->dv, (size_t)N * b->ld, 0.0f);
        snn_attn_bsa_head_backward(N, d, b->q + b->off, b->k + b->off, b->v + b->off, b->ld,
                                   shift, b->w, rw, b->lddo, b->dq + b->off, b->dk + b->off,
                                   b->dv + b->off, b->scratch);
        const double w = fd_check_all(b, &fc, 1e-3, 1e-2, 1e-4, "bsa smooth");
        if (w > worst) worst = w;
        free(rw);
        hb_free(&hb);
    }
    print_message("bsa smooth finite differences: max relative error (|grad| >= 1e-2) %.2e\n",
                  worst);
}

/* The STE. On spikes whose scaled scores s A are integers (shift 0; or shift 2 with every
 * channel repeated 4 times, so A is a multiple of 4) floor is the identity at this point: the
 * normal forward and the smooth forward with the normal forward's m, r give the same P and O bit
 * for bit, and the normal-mode backward (a function of P only) equals the finite difference of
 * the smooth forward, i.e. the straight-through gradient is what is implemented. */
static void test_bsa_normal_backward_is_ste(void **state) {
    (void)state;
    for (int ci = 0; ci < 2; ci++) {
        const int N = 7, d = ci == 0 ? 5 : 8, shift = ci == 0 ? 0 : 2;
        head_bufs hb = hb_new(N, d, d + 2, 1, d);
        head_bufs *b = &hb;
        trng r = {(uint64_t)(6000 + ci), 0};
        fill(&r, b->q, N, b->ld, b->off, d, SPIKE_TERNARY, 0.6, 0);
        fill(&r, b->k, N, b->ld, b->off, d, SPIKE_TERNARY, 0.6, 0);
        fill(&r, b->v, N, b->ld, b->off, d, SPIKE_BINARY, 0.5, 0);
        if (shift == 2)  /* channels 0..3 copy channel 0, 4..7 channel 4: A = 4 (q0 k0 + q4 k4) */
            for (int i = 0; i < N; i++)
                for (int c = 0; c < d; c++) {
                    const size_t base = (size_t)i * b->ld + b->off;
                    b->q[base + c] = b->q[base + c / 4 * 4];
                    b->k[base + c] = b->k[base + c / 4 * 4];
                }
        float *rw = malloc((size_t)N * b->lddo * sizeof *rw);
        fill(&r, rw, N, b->lddo, 0, d, REAL, 0, 1.0);
        float *Pn = malloc((size_t)N * N * sizeof *Pn), *On = malloc((size_t)N * d * sizeof *On);

        /* normal forward: P, m, r */
        snn_attn_bsa_head_train(N, d, b->q + b->off, b->k + b->off, b->v + b->off, b->ld, shift,
                                SNN_SHIFTMAX_ROUND, false, b->o, b->lddo, b->w, b->mr, false);
        memcpy(Pn, b->w, (size_t)N * N * sizeof *Pn);
        memcpy(On, b->o, (size_t)N * d * sizeof *On);
        /* smooth, frozen at those m, r: the same P and O */
        const fd_case fc = {K_BSA_SMOOTH_FROZEN, shift, rw};
        fd_loss(b, &fc);
        assert_memory_equal(b->w, Pn, (size_t)N * N * sizeof *Pn);
        assert_memory_equal(b->o, On, (size_t)N * d * sizeof *On);
        /* the scores are not all equal (the check would be vacuous otherwise) */
        bool varied = false;
        for (int t = 1; t < N * N; t++) varied |= Pn[t] != Pn[0];
        assert_true(varied);

        set_all(b->dq, (size_t)N * b->ld, 0.0f), set_all(b->dk, (size_t)N * b->ld, 0.0f);
        set_all(b->dv, (size_t)N * b->ld, 0.0f);
        snn_attn_bsa_head_backward(N, d, b->q + b->off, b->k + b->off, b->v + b->off, b->ld,
                                   shift, Pn, rw, b->lddo, b->dq + b->off, b->dk + b->off,
                                   b->dv + b->off, b->scratch);
        /* with repeated channels, perturbing one copy leaves s A off the integers: fine, the
         * smooth forward has no floor */
        fd_check_all(b, &fc, 1e-3, 1e-2, 1e-4, shift == 0 ? "bsa ste shift 0" : "bsa ste shift 2");
        free(rw), free(Pn), free(On);
        hb_free(&hb);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ssa_forward_matches_inference),
        cmocka_unit_test(test_ssa_bits_forward_matches_floats),
        cmocka_unit_test(test_bsa_bits_forward_matches_floats),
        cmocka_unit_test(test_bsa_forward_matches_inference),
        cmocka_unit_test(test_ssa_backward_matches_reference),
        cmocka_unit_test(test_bsa_backward_matches_reference),
        cmocka_unit_test(test_backward_bits_equals_floats),
        cmocka_unit_test(test_bsa_backward_fast_equals_ref),
        cmocka_unit_test(test_ssa_finite_differences),
        cmocka_unit_test(test_bsa_smooth_finite_differences),
        cmocka_unit_test(test_bsa_normal_backward_is_ste),
    };
    return cmocka_run_group_tests_name("attention_grad", tests, NULL, NULL);
}
