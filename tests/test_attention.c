/*
 * test_attention.c: SSA, Shiftmax and BSA kernels (attention/ssa.c, shiftmax.c, bsa.c) against
 * independent naive references and the hand-computed vectors of research/methods.md 3.2.
 *
 * Every comparison here is exact (==): SSA outputs are integer multiples of 0.125 and BSA outputs
 * are sums of powers of two, both exact in double for the sizes used, so the float results have
 * a single correctly rounded value whatever order a reference sums in. The Shiftmax reference
 * works in exact integers (S as a uint64 multiple of 2^min z, sqrt(2) as a 64-bit fixed-point
 * constant) instead of the kernel's double arithmetic; it is used only where S fits in 62 bits.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <math.h>
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
    return (double)(snn_rng_u64(r->seed, 7, r->ctr++) >> 11) * 0x1p-53;
}

static int trng_int(trng *r, int lo, int hi) { /* uniform in [lo, hi] */
    return lo + (int)(snn_rng_u64(r->seed, 7, r->ctr++) % (uint64_t)(hi - lo + 1));
}

/* Fills a [rows, ld] int8 matrix: columns [off, off + d) get spikes (binary or ternary with
 * nonzero probability p), every other column gets junk (+-1, 2) that a kernel must never read. */
static void fill_spikes(trng *r, int8_t *m, int rows, int ld, int off, int d, double p,
                        int ternary) {
    for (int i = 0; i < rows; i++) {
        for (int c = 0; c < ld; c++) {
            int8_t val;
            if (c >= off && c < off + d) {
                val = 0;
                if (trng_unif(r) < p) val = (int8_t)((ternary && trng_unif(r) < 0.5) ? -1 : 1);
            } else {
                val = (int8_t)(c % 3 == 0 ? -1 : (c % 3 == 1 ? 2 : 1));
            }
            m[(size_t)i * ld + c] = val;
        }
    }
}

static void assert_ops(const snn_ops *got, const snn_ops *want) {
    for (int c = 0; c < SNN_OP__COUNT; c++) {
        if (got->n[c] != want->n[c])
            fail_msg("op count %s: got %llu, expected %llu", snn_op_name((snn_op_class)c),
                     (unsigned long long)got->n[c], (unsigned long long)want->n[c]);
    }
}

/* Output buffer [N, ldo] with the head at column offset ooff; everything else is a sentinel
 * that must survive the kernel. */
static const float k_sentinel = -12345.0f;

static void check_sentinels(const float *o, int N, int ldo, int ooff, int d) {
    for (int i = 0; i < N; i++)
        for (int c = 0; c < ldo; c++)
            if ((c < ooff || c >= ooff + d) && o[(size_t)i * ldo + c] != k_sentinel)
                fail_msg("kernel wrote outside its head at (%d, %d)", i, c);
}

/* ---- SSA ---------------------------------------------------------------------------------- */

/* N = 2, d = 3:
 *   q = [1 0 1]   k = [1 1 1]   v = [1 0 0]
 *       [0 0 0]       [0 0 1]       [1 1 0]
 *   A = [2 1]   AC = 3: (i0 j0 c0), (i0 j0 c2), (i0 j1 c2)
 *       [0 0]
 *   A V = [2 * (1 0 0) + 1 * (1 1 0)] = [3 1 0] ;  row 1 is 0.
 *   INT_ADD = 3: i0 j0 (A = 2) meets v_00; i0 j1 (A = 1) meets v_10 and v_11; row 1 has A = 0.
 *   O = 0.125 * [3 1 0; 0 0 0];  SHIFT = N * d = 6. */
static void test_ssa_hand(void **state) {
    (void)state;
    const int8_t q[6] = {1, 0, 1, 0, 0, 0};
    const int8_t k[6] = {1, 1, 1, 0, 0, 1};
    const int8_t v[6] = {1, 0, 0, 1, 1, 0};
    float o[6];
    int32_t scores[4];
    snn_ops ops = {{0}};
    snn_attn_ssa_head(2, 3, q, k, v, 3, 0.125f, o, 3, scores, &ops);
    const int32_t a_want[4] = {2, 1, 0, 0};
    assert_memory_equal(scores, a_want, sizeof a_want);
    const float o_want[6] = {0.375f, 0.125f, 0.0f, 0.0f, 0.0f, 0.0f};
    snn_assert_allclose(o, o_want, 6, 0.0, 0.0, "SSA hand O");
    snn_ops want = {{0}};
    want.n[SNN_OP_AC] = 3;
    want.n[SNN_OP_INT_ADD] = 3;
    want.n[SNN_OP_SHIFT] = 6;
    assert_ops(&ops, &want);
    /* counts accumulate, and ops may be NULL */
    snn_attn_ssa_head(2, 3, q, k, v, 3, 0.125f, o, 3, scores, &ops);
    assert_int_equal(ops.n[SNN_OP_AC], 6);
    snn_attn_ssa_head(2, 3, q, k, v, 3, 0.125f, o, 3, scores, NULL);
    snn_assert_allclose(o, o_want, 6, 0.0, 0.0, "SSA hand O (ops NULL)");
}

static void test_ssa_random(void **state) {
    (void)state;
    static const int sizes[][2] = {{1, 1}, {2, 3}, {7, 13}, {16, 8}, {17, 33},
                                   {64, 64}, {9, 130}, {31, 1}};
    static const double dens[] = {0.05, 0.3, 0.8};
    trng r = {0x55A, 0};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        for (size_t di = 0; di < sizeof dens / sizeof dens[0]; di++) {
            const int N = sizes[si][0], d = sizes[si][1];
            const int off = 5, ld = d + 9, ooff = 2, ldo = d + 3;
            int8_t *q = malloc((size_t)N * ld), *k = malloc((size_t)N * ld);
            int8_t *v = malloc((size_t)N * ld);
            fill_spikes(&r, q, N, ld, off, d, dens[di], 0);
            fill_spikes(&r, k, N, ld, off, d, dens[(di + 1) % 3], 0);
            fill_spikes(&r, v, N, ld, off, d, dens[di], 0);
            float *o = malloc(sizeof(float) * (size_t)N * ldo);
            for (int i = 0; i < N * ldo; i++) o[i] = k_sentinel;
            int32_t *scores = malloc(sizeof(int32_t) * (size_t)N * N);
            snn_ops ops = {{0}};
            snn_attn_ssa_head(N, d, q + off, k + off, v + off, ld, 0.125f, o + ooff, ldo,
                              scores, &ops);

            /* naive double reference in PyTorch's order: (Q K^T * 0.125) V */
            double *s = malloc(sizeof(double) * (size_t)N * N);
            snn_ops want = {{0}};
            for (int i = 0; i < N; i++)
                for (int j = 0; j < N; j++) {
                    double a = 0.0;
                    for (int c = 0; c < d; c++) {
                        const int8_t qa = q[(size_t)i * ld + off + c];
                        const int8_t kb = k[(size_t)j * ld + off + c];
                        a += (double)qa * (double)kb;
                        want.n[SNN_OP_AC] += (qa != 0 && kb != 0);
                    }
                    if ((double)scores[(size_t)i * N + j] != a) fail_msg("SSA A(%d,%d)", i, j);
                    s[(size_t)i * N + j] = a * 0.125;
                }
            for (int i = 0; i < N; i++)
                for (int c = 0; c < d; c++) {
                    double acc = 0.0;
                    for (int j = 0; j < N; j++) {
                        const int8_t vb = v[(size_t)j * ld + off + c];
                        acc += s[(size_t)i * N + j] * (double)vb;
                        want.n[SNN_OP_INT_ADD] += (s[(size_t)i * N + j] != 0.0 && vb != 0);
                    }
                    const float got = o[(size_t)i * ldo + ooff + c];
                    if (got != (float)acc)
                        fail_msg("SSA N=%d d=%d O(%d,%d): got %.9g, expected %.9g", N, d, i, c,
                                 (double)got, acc);
                    /* every output is an integer multiple of 0.125 */
                    const double eighths = (double)got * 8.0;
                    assert_true(eighths == floor(eighths) && got >= 0.0f);
                }
            want.n[SNN_OP_SHIFT] = (uint64_t)N * d;
            assert_ops(&ops, &want);
            check_sentinels(o, N, ldo, ooff, d);
            free(q), free(k), free(v), free(o), free(scores), free(s);
        }
    }
}

/* ---- Shiftmax ----------------------------------------------------------------------------- */

static double row_sum(int n, const int32_t *e) {
    double s = 0.0;
    for (int j = 0; j < n; j++) s += ldexp(1.0, e[j]);
    return s;
}

/* Methods 3.2 vectors. */
static void test_shiftmax_vectors(void **state) {
    (void)state;
    const int32_t a[4] = {3, 1, 0, -2};
    int32_t e[4];
    /* S = 1 + 1/4 + 1/8 + 1/32 = 1.40625 < sqrt(2) = 1.41421: round(log2 S) = 0 */
    assert_int_equal(snn_shiftmax_row(4, a, 0, SNN_SHIFTMAX_ROUND, e), 0);
    const int32_t e_round[4] = {0, -2, -3, -5};  /* p = 1, 0.25, 0.125, 0.03125 */
    assert_memory_equal(e, e_round, sizeof e);
    assert_true(row_sum(4, e) == 1.40625);
    assert_int_equal(snn_shiftmax_row(4, a, 0, SNN_SHIFTMAX_CEIL, e), 1);
    const int32_t e_ceil[4] = {-1, -3, -4, -6};  /* p halved */
    assert_memory_equal(e, e_ceil, sizeof e);
    assert_true(row_sum(4, e) == 0.703125);

    /* [0, 0, 0]: S = 3, log2 3 = 1.58 -> r = 2 in both modes, p = 0.25 each, row sum 0.75 */
    const int32_t z3[3] = {0, 0, 0};
    int32_t e3[3];
    const int32_t e3_want[3] = {-2, -2, -2};
    assert_int_equal(snn_shiftmax_row(3, z3, 0, SNN_SHIFTMAX_ROUND, e3), 2);
    assert_memory_equal(e3, e3_want, sizeof e3);
    assert_true(row_sum(3, e3) == 0.75);
    assert_int_equal(snn_shiftmax_row(3, z3, 0, SNN_SHIFTMAX_CEIL, e3), 2);
    assert_memory_equal(e3, e3_want, sizeof e3);

    /* a single element: p = 1 */
    const int32_t one = -7;
    int32_t e1;
    assert_int_equal(snn_shiftmax_row(1, &one, 3, SNN_SHIFTMAX_ROUND, &e1), 0);
    assert_int_equal(e1, 0);

    /* S a power of two: both modes agree, r = log2 S (two equal maxima: S = 2, r = 1) */
    const int32_t two[2] = {5, 5};
    int32_t e2[2];
    assert_int_equal(snn_shiftmax_row(2, two, 0, SNN_SHIFTMAX_ROUND, e2), 1);
    assert_int_equal(snn_shiftmax_row(2, two, 0, SNN_SHIFTMAX_CEIL, e2), 1);

    /* the scale: [3, 1, 0, -2] with shift 1 -> z = [1, 0, 0, -1], S = 1 + 0.5 + 0.5 + 0.25 = 2.25
     * round: log2 2.25 = 1.17 -> r = 1; ceil -> r = 2 */
    assert_int_equal(snn_shiftmax_row(4, a, 1, SNN_SHIFTMAX_ROUND, e), 1);
    const int32_t e_s1[4] = {-1, -2, -2, -3};
    assert_memory_equal(e, e_s1, sizeof e);
    assert_int_equal(snn_shiftmax_row(4, a, 1, SNN_SHIFTMAX_CEIL, e), 2);

    /* s = 2 (shift -1, a power of two the config accepts): z = [6, 2, 0, -4],
     * S = 1 + 2^-4 + 2^-6 + 2^-10 = 1.079: round r = 0, ceil r = 1 */
    assert_int_equal(snn_shiftmax_row(4, a, -1, SNN_SHIFTMAX_ROUND, e), 0);
    const int32_t e_sm1[4] = {0, -4, -6, -10};
    assert_memory_equal(e, e_sm1, sizeof e);
    assert_int_equal(snn_shiftmax_row(4, a, -1, SNN_SHIFTMAX_CEIL, e), 1);
    /* saturation far outside BSA's range stays defined: z = [INT32_MAX, INT32_MIN] */
    const int32_t big[2] = {3, -3};
    int32_t eb[2];
    assert_int_equal(snn_shiftmax_row(2, big, -40, SNN_SHIFTMAX_ROUND, eb), 0);
    assert_int_equal(eb[0], 0);
    assert_int_equal(eb[1], INT32_MIN);
}

/* In place (e == a) gives the same exponents as separate buffers. */
static void test_shiftmax_in_place(void **state) {
    (void)state;
    int32_t a[6] = {4, -3, 0, 9, -9, 9};
    int32_t e[6];
    const int r1 = snn_shiftmax_row(6, a, 2, SNN_SHIFTMAX_ROUND, e);
    const int r2 = snn_shiftmax_row(6, a, 2, SNN_SHIFTMAX_ROUND, a);
    assert_int_equal(r1, r2);
    assert_memory_equal(a, e, sizeof e);
}

/* z = floor(a / 2^shift), including negative a (row [0, a]: e_1 - e_0 = z(a) - z(0) = z(a)). */
static void test_shiftmax_floor_division(void **state) {
    (void)state;
    int32_t row[2], e[2];
    for (int shift = 0; shift <= 8; shift++) {
        for (int a = -70; a <= 70; a++) {
            row[0] = 0;
            row[1] = a;
            snn_shiftmax_row(2, row, shift, SNN_SHIFTMAX_ROUND, e);
            const double want = floor(ldexp((double)a, -shift));
            if ((double)e[1] - (double)e[0] != want)
                fail_msg("floor(%d / 2^%d): got %d, expected %g", a, shift, e[1] - e[0], want);
        }
    }
    /* extremes: large shifts and int32 limits (no shift of a negative int, no overflow) */
    static const int shifts[] = {0, 1, 30, 31, 32, 40, 62, 100};
    static const int32_t vals[] = {INT32_MIN, INT32_MIN + 1, -1, 0, 1, INT32_MAX};
    for (size_t si = 0; si < sizeof shifts / sizeof shifts[0]; si++) {
        for (size_t vi = 0; vi < sizeof vals / sizeof vals[0]; vi++) {
            row[0] = 0;
            row[1] = vals[vi];
            snn_shiftmax_row(2, row, shifts[si], SNN_SHIFTMAX_ROUND, e);
            const double want = floor(ldexp((double)vals[vi], -shifts[si]));
            assert_true((double)((int64_t)e[1] - (int64_t)e[0]) == want);
            assert_true(e[0] <= 0 && e[1] <= 0);
        }
    }
}

/* floor(sqrt(2) * 2^63). */
#define SQRT2_Q63 0xB504F333F9DE6484ull

/* Exact integer reference for r, given the integer exponents z[0..n): S = S_int 2^(zmin - m)
 * with S_int = sum_j 2^(z_j - zmin). Requires m - zmin + log2 n <= 62. */
static int64_t ref_r(int n, const int64_t *z, snn_shiftmax_round mode) {
    int64_t m = z[0], zmin = z[0];
    for (int j = 1; j < n; j++) {
        if (z[j] > m) m = z[j];
        if (z[j] < zmin) zmin = z[j];
    }
    uint64_t s = 0;
    for (int j = 0; j < n; j++) s += 1ull << (z[j] - zmin);
    int kk = 63;
    while (!(s >> kk)) kk--;  /* floor(log2 S_int) */
    const int64_t k = kk + zmin - m;
    if (mode == SNN_SHIFTMAX_CEIL) return k + (s != (1ull << kk));
    /* S_int >= sqrt(2) 2^kk  <=>  S_int > floor(sqrt(2) 2^kk) (sqrt(2) 2^kk is irrational) */
    return k + (s > (SQRT2_Q63 >> (63 - kk)));
}

/* The integer fast path of snn_shiftmax_row (0 <= shift < 32, spread m - min z plus
 * ceil(log2 n) at most 52) and the double path past that limit both give the exact r and
 * e_j = z_j - m - r, in place and out of place. */
static void test_shiftmax_fast_path_limit(void **state) {
    (void)state;
    static const int ns[] = {2, 3, 49};
    for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
        const int n = ns[ni];
        int lg = 0;
        while ((1 << lg) < n) lg++;
        for (int spread = 50 - lg; spread <= 54 - lg; spread++) {
            if (n > 3 && spread + lg > 52) continue; /* wide random rows may round in double */
            for (int shift = 0; shift <= 2; shift++) {
                int32_t a[49], e[49];
                int64_t z[49];
                for (int j = 0; j < n; j++) {
                    const int32_t zj = j == 0   ? 0
                                       : j == 1 ? -spread
                                                : -(int32_t)((j * 7919) % (spread + 1));
                    a[j] = zj * (1 << shift) + (j % (1 << shift)); /* floor(a / 2^shift) = zj */
                    z[j] = zj;
                }
                const int r = snn_shiftmax_row(n, a, shift, SNN_SHIFTMAX_ROUND, e);
                assert_int_equal(r, ref_r(n, z, SNN_SHIFTMAX_ROUND));
                for (int j = 0; j < n; j++) assert_int_equal(e[j], z[j] - r);
                assert_int_equal(snn_shiftmax_row(n, a, shift, SNN_SHIFTMAX_ROUND, a), r);
                assert_memory_equal(a, e, (size_t)n * sizeof *e);
            }
        }
    }
}

/* snn_shiftmax_row_int gives snn_shiftmax_row's r and exponents, p_j = 2^(e_j + E) with
 * E = -min e_j, and declines (-1, row untouched) rows too wide for 32-bit sums. */
static void test_shiftmax_row_int(void **state) {
    (void)state;
    enum { NMAX = 70 };
    uint64_t seed = 12345;
    for (int trial = 0; trial < 400; trial++) {
        const int n = 1 + trial % NMAX, shift = trial % 5, span = 1 + trial % 90;
        int32_t a[NMAX], x[NMAX], e[NMAX];
        uint32_t p[NMAX];
        for (int j = 0; j < n; j++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            a[j] = (int32_t)((seed >> 33) % (uint64_t)(2 * span + 1)) - span;
            x[j] = a[j];
        }
        for (int mode = 0; mode < 2; mode++) {
            const snn_shiftmax_round md = mode ? SNN_SHIFTMAX_CEIL : SNN_SHIFTMAX_ROUND;
            memcpy(x, a, sizeof x);
            const int r = snn_shiftmax_row(n, a, shift, md, e);
            int E = -1;
            const int ri = snn_shiftmax_row_int(n, x, shift, md, p, &E);
            if (ri < 0) {
                assert_int_equal(E, -1);
                assert_memory_equal(x, a, (size_t)n * sizeof *x);
                continue;
            }
            assert_int_equal(ri, r);
            assert_memory_equal(x, e, (size_t)n * sizeof *x);
            int32_t emin = 0;
            for (int j = 0; j < n; j++) emin = e[j] < emin ? e[j] : emin;
            assert_int_equal(E, -emin);
            for (int j = 0; j < n; j++) assert_int_equal(p[j], (uint32_t)1 << (e[j] + E));
        }
    }
}

/* The rounding boundary itself: rows whose S is one of the two doubles adjacent to sqrt(2).
 * Each set mantissa bit at position p (below the leading one) becomes a score -p, so S is that
 * double exactly (53 significant bits: beyond the 26-bit "x*x is exact" range). This is the
 * check that x * x >= 2.0 decides S >= sqrt(2) correctly for every double. */
static void test_shiftmax_sqrt2_boundary(void **state) {
    (void)state;
    const double lo = 0x1.6a09e667f3bccp+0, hi = 0x1.6a09e667f3bcdp+0;
    assert_true(nextafter(lo, 2.0) == hi && lo * lo < 2.0 && hi * hi >= 2.0);
    const double xs[2] = {lo, hi};
    for (int t = 0; t < 2; t++) {
        uint64_t bits;
        memcpy(&bits, &xs[t], sizeof bits);
        const uint64_t mant = (bits & ((1ull << 52) - 1)) | (1ull << 52);
        int32_t row[53], e[53];
        int n = 0;
        for (int p = 0; p <= 52; p++)
            if (mant >> (52 - p) & 1) row[n++] = -p;
        assert_int_equal(snn_shiftmax_row(n, row, 0, SNN_SHIFTMAX_ROUND, e), t);
        assert_int_equal(snn_shiftmax_row(n, row, 0, SNN_SHIFTMAX_CEIL, e), 1);
        assert_true(row_sum(n, row) == xs[t]);
    }
    /* ceil at S = 1 exactly and at S = 1 + 2^-52 */
    const int32_t r1[2] = {0, -52};
    int32_t e[2];
    assert_int_equal(snn_shiftmax_row(1, r1, 0, SNN_SHIFTMAX_CEIL, e), 0);
    assert_int_equal(snn_shiftmax_row(2, r1, 0, SNN_SHIFTMAX_CEIL, e), 1);
    assert_int_equal(snn_shiftmax_row(2, r1, 0, SNN_SHIFTMAX_ROUND, e), 0);
}

/* Random rows: exponents <= 0 with max -r, r >= 0, row sums in [2^-1/2, 2^1/2) (round) or
 * (1/2, 1] (ceil), and r equal to the exact integer reference where that applies. The bounds
 * are checked exactly: p sums to 2^-r times the kernel's S (a power-of-two scaling, exact), and
 * sum * sum compares correctly with 1/2 and 2 for every double (test_shiftmax_sqrt2_boundary). */
static void test_shiftmax_properties(void **state) {
    (void)state;
    static const int ranges[] = {0, 1, 3, 8, 16, 64, 300};
    trng r = {0xB5A, 0};
    int32_t a[256], e[256];
    int64_t z[256];
    int checked_ref = 0;
    for (int iter = 0; iter < 4000; iter++) {
        const int n = trng_int(&r, 1, 256);
        const int R = ranges[trng_int(&r, 0, 6)];
        const int shift = trng_int(&r, 0, 6);
        const int bias = trng_int(&r, -R, R);
        for (int j = 0; j < n; j++) a[j] = bias + trng_int(&r, -R, R);
        for (int mi = 0; mi < 2; mi++) {
            const snn_shiftmax_round mode = mi ? SNN_SHIFTMAX_CEIL : SNN_SHIFTMAX_ROUND;
            const int rr = snn_shiftmax_row(n, a, shift, mode, e);
            assert_true(rr >= 0);
            int32_t emax = INT32_MIN;
            for (int j = 0; j < n; j++) {
                assert_true(e[j] <= 0);
                if (e[j] > emax) emax = e[j];
            }
            assert_int_equal(emax, -rr);
            const double s = row_sum(n, e);
            if (mode == SNN_SHIFTMAX_ROUND) {
                if (!(s * s >= 0.5 && s * s < 2.0))
                    fail_msg("round row sum %.17g outside [2^-1/2, 2^1/2)", s);
            } else {
                if (!(s > 0.5 && s <= 1.0)) fail_msg("ceil row sum %.17g outside (1/2, 1]", s);
            }
            /* exact reference where S_int fits */
            int64_t zmin = INT64_MAX, zmax = INT64_MIN;
            for (int j = 0; j < n; j++) {
                z[j] = (int64_t)floor(ldexp((double)a[j], -shift));
                if (z[j] < zmin) zmin = z[j];
                if (z[j] > zmax) zmax = z[j];
            }
            if (zmax - zmin <= 52 - 8) {
                const int64_t want = ref_r(n, z, mode);
                if (rr != want) fail_msg("r = %d, exact reference %lld", rr, (long long)want);
                for (int j = 0; j < n; j++) assert_true(e[j] == z[j] - zmax - want);
                checked_ref++;
            }
        }
    }
    assert_true(checked_ref > 2000);
}

static void test_shiftmax_default_shift(void **state) {
    (void)state;
    static const int table[][2] = {{1, 0},  {2, 1},  {3, 1},  {4, 1},   {5, 1},   {8, 2},
                                   {12, 2}, {16, 2}, {24, 2}, {32, 3},  {64, 3},  {100, 3},
                                   {128, 4}, {256, 4}, {512, 5}, {1024, 5}};
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (snn_shiftmax_default_shift(table[i][0]) != table[i][1])
            fail_msg("default_shift(%d) = %d, expected %d", table[i][0],
                     snn_shiftmax_default_shift(table[i][0]), table[i][1]);
    /* and the real-valued definition floor((log2 d + 1) / 2) for every d up to 5000 */
    for (int dd = 1; dd <= 5000; dd++)
        assert_int_equal(snn_shiftmax_default_shift(dd), (int)floor((log2((double)dd) + 1) / 2));
}

/* ---- BSA ---------------------------------------------------------------------------------- */

/* N = 2, d = 2, shift 0:
 *   q = [ 1  1]   k = [ 1  1]   v = [1 0]
 *       [ 1 -1]       [-1 -1]       [1 1]
 *   A = [2 -2]   (row 0 / key 1: two heteropolar pairs, -2)   AC = 8 (every product nonzero)
 *       [0  0]   (row 1: one homopolar and one heteropolar pair per key)
 *   row 0: z = [2 -2], m = 2, S = 1 + 2^-4 = 1.0625: round r = 0 (e = [0 -4]),
 *                                                    ceil  r = 1 (e = [-1 -5])
 *   row 1: z = [0 0], S = 2, r = 1 in both modes (e = [-1 -1])
 *   O round = [1 + 1/16, 1/16; 1/2 + 1/2, 1/2] = [1.0625 0.0625; 1 0.5]
 *   O ceil  = [0.53125 0.03125; 1 0.5]
 *   CMP = N^2 = 4, SHIFT = 2 N^2 = 8, INT_ADD = N^2 + N nnz(V) = 4 + 2 * 3 = 10 */
static void test_bsa_hand(void **state) {
    (void)state;
    const int8_t q[4] = {1, 1, 1, -1};
    const int8_t k[4] = {1, 1, -1, -1};
    const int8_t v[4] = {1, 0, 1, 1};
    float o[4];
    int32_t scores[4];
    snn_ops ops = {{0}};
    snn_attn_bsa_head(2, 2, q, k, v, 2, 0, SNN_SHIFTMAX_ROUND, o, 2, scores, &ops);
    const int32_t e_round[4] = {0, -4, -1, -1};
    assert_memory_equal(scores, e_round, sizeof e_round);
    const float o_round[4] = {1.0625f, 0.0625f, 1.0f, 0.5f};
    snn_assert_allclose(o, o_round, 4, 0.0, 0.0, "BSA hand round");
    snn_ops want = {{0}};
    want.n[SNN_OP_AC] = 8;
    want.n[SNN_OP_CMP] = 4;
    want.n[SNN_OP_SHIFT] = 8;
    want.n[SNN_OP_INT_ADD] = 10;
    assert_ops(&ops, &want);

    snn_attn_bsa_head(2, 2, q, k, v, 2, 0, SNN_SHIFTMAX_CEIL, o, 2, scores, NULL);
    const int32_t e_ceil[4] = {-1, -5, -1, -1};
    assert_memory_equal(scores, e_ceil, sizeof e_ceil);
    const float o_ceil[4] = {0.53125f, 0.03125f, 1.0f, 0.5f};
    snn_assert_allclose(o, o_ceil, 4, 0.0, 0.0, "BSA hand ceil");
}

/* Heteropolar pairs give negative scores, homopolar (-,-) pairs positive ones. Key 0 is silent
 * (A_i0 = 0), so with shift 0 the exponent difference e_i1 - e_i0 is the score A_i1. */
static void test_bsa_signs(void **state) {
    (void)state;
    /* query 0 = [1 -1 1 0], query 1 = [-1 -1 0 0]; key 1 = [-1 1 -1 -1] */
    const int8_t q[8] = {1, -1, 1, 0, -1, -1, 0, 0};
    const int8_t k[8] = {0, 0, 0, 0, -1, 1, -1, -1};
    const int8_t v[8] = {0};
    float o[8];
    int32_t s[4];
    snn_ops ops = {{0}};
    snn_attn_bsa_head(2, 4, q, k, v, 4, 0, SNN_SHIFTMAX_ROUND, o, 4, s, &ops);
    assert_int_equal(s[1] - s[0], -3);  /* three heteropolar pairs */
    assert_int_equal(s[3] - s[2], 0);   /* (-,-) +1 and (-,+) -1 cancel */
    assert_int_equal(ops.n[SNN_OP_AC], 5);
    assert_int_equal(ops.n[SNN_OP_INT_ADD], 4);  /* N^2, no V spikes */
    for (int i = 0; i < 8; i++) assert_true(o[i] == 0.0f);

    /* pure homopolar negative pairs: query 0 = [-1 -1], key 1 = [-1 -1] -> A_01 = +2 */
    const int8_t q2[4] = {-1, -1, 0, 0};
    const int8_t k2[4] = {0, 0, -1, -1};
    const int8_t v2[4] = {0};
    int32_t s2[4];
    float o2[4];
    snn_attn_bsa_head(2, 2, q2, k2, v2, 2, 0, SNN_SHIFTMAX_ROUND, o2, 2, s2, NULL);
    assert_int_equal(s2[1] - s2[0], 2);
}

/* Independent BSA reference: A as (#homopolar - #heteropolar) pairs, z by floating floor,
 * r from the exact integer reference, P by pow(2, .), O = P V as a float64 product (j
 * descending for each (i, c)). Exact whenever the exponent spread fits double (checked by the
 * caller). Row by row (O(N) scratch), so that it can check a head of more than 4096 keys. */
static void bsa_reference(int N, int d, const int8_t *q, const int8_t *k, const int8_t *v, int ld,
                          int shift, snn_shiftmax_round mode, int32_t *e_out, double *o_ref,
                          snn_ops *ops) {
    int64_t *zi = malloc(sizeof(int64_t) * (size_t)N); /* [N] row i of z */
    double *P = malloc(sizeof(double) * (size_t)N);     /* [N] row i of P */
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < N; j++) {
            int hom = 0, het = 0;
            for (int c = 0; c < d; c++) {
                const int a = q[(size_t)i * ld + c], b = k[(size_t)j * ld + c];
                hom += (a == b && a != 0);
                het += (a == -b && a != 0);
            }
            ops->n[SNN_OP_AC] += (uint64_t)(hom + het);
            zi[j] = (int64_t)floor((double)(hom - het) / ldexp(1.0, shift));
        }
        int64_t m = zi[0];
        for (int j = 1; j < N; j++) m = zi[j] > m ? zi[j] : m;
        const int64_t r = ref_r(N, zi, mode);
        for (int j = 0; j < N; j++) {
            e_out[(size_t)i * N + j] = (int32_t)(zi[j] - m - r);
            P[j] = pow(2.0, (double)(zi[j] - m - r));
        }
        for (int c = 0; c < d; c++) {
            double acc = 0.0;
            for (int j = N - 1; j >= 0; j--) acc += P[j] * v[(size_t)j * ld + c];
            o_ref[(size_t)i * d + c] = acc;
        }
    }
    uint64_t nnz_v = 0;
    for (int j = 0; j < N; j++)
        for (int c = 0; c < d; c++) nnz_v += v[(size_t)j * ld + c] != 0;
    ops->n[SNN_OP_CMP] += (uint64_t)N * N;
    ops->n[SNN_OP_SHIFT] += 2 * (uint64_t)N * N;
    ops->n[SNN_OP_INT_ADD] += (uint64_t)N * N + (uint64_t)N * nnz_v;
    free(zi);
    free(P);
}

/* Runs the kernel on one random head slice (ld > d, junk outside the slice, sentinels around
 * the output) and compares exponents, outputs and op counts with bsa_reference, all exactly. */
static void bsa_compare(trng *r, int N, int d, int shift, snn_shiftmax_round mode, double pq,
                        double pk, double pv) {
    const int off = 3, ld = 2 * d + 5, ooff = 1, ldo = d + 2;
    int8_t *q = malloc((size_t)N * ld), *k = malloc((size_t)N * ld);
    int8_t *v = malloc((size_t)N * ld);
    fill_spikes(r, q, N, ld, off, d, pq, 1);
    fill_spikes(r, k, N, ld, off, d, pk, 1);
    fill_spikes(r, v, N, ld, off, d, pv, 0);
    float *o = malloc(sizeof(float) * (size_t)N * ldo);
    for (int i = 0; i < N * ldo; i++) o[i] = k_sentinel;
    int32_t *scores = malloc(sizeof(int32_t) * (size_t)N * N);
    int32_t *e_ref = malloc(sizeof(int32_t) * (size_t)N * N);
    double *o_ref = malloc(sizeof(double) * (size_t)N * d);
    snn_ops ops = {{0}}, want = {{0}};
    snn_attn_bsa_head(N, d, q + off, k + off, v + off, ld, shift, mode, o + ooff, ldo, scores,
                      &ops);
    bsa_reference(N, d, q + off, k + off, v + off, ld, shift, mode, e_ref, o_ref, &want);
    for (int i = 0; i < N * N; i++)
        if (scores[i] != e_ref[i])
            fail_msg("BSA N=%d d=%d shift=%d mode=%d: e[%d] = %d, expected %d", N, d, shift,
                     (int)mode, i, scores[i], e_ref[i]);
    for (int i = 0; i < N; i++)
        for (int c = 0; c < d; c++) {
            const float got = o[(size_t)i * ldo + ooff + c];
            const float exp = (float)o_ref[(size_t)i * d + c];
            if (got != exp)
                fail_msg("BSA N=%d d=%d shift=%d mode=%d: O(%d,%d) = %.9g, expected %.9g", N, d,
                         shift, (int)mode, i, c, (double)got, (double)exp);
        }
    assert_ops(&ops, &want);
    check_sentinels(o, N, ldo, ooff, d);
    free(q), free(k), free(v), free(o), free(scores), free(e_ref), free(o_ref);
}

static void test_bsa_random(void **state) {
    (void)state;
    static const int sizes[][2] = {{1, 4},  {2, 1},   {5, 7},   {16, 16}, {33, 20},
                                   {64, 64}, {40, 9}, {13, 70}, {64, 16}, {65, 130}, {100, 8},
                                   {196, 16}, {300, 30}, {256, 64}, {257, 64}};
    static const double dens_qk[] = {0.1, 0.45, 0.95};
    static const double dens_v[] = {0.2, 0.7};
    trng r = {0xB5A2, 0};
    int compared = 0;
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        const int N = sizes[si][0], d = sizes[si][1];
        const int shifts[5] = {0, 1, 2, 3, snn_shiftmax_default_shift(d)};
        for (int shi = 0; shi < 5; shi++) {
            const int shift = shifts[shi];
            /* exponent spread <= 2d / 2^shift + 1, plus log2 N <= 9 and r for the sums: keep
             * the reference exact (< 53 bits) */
            if ((2 * d >> shift) + 1 + 10 > 52) continue;
            for (int mi = 0; mi < 2; mi++) {
                const snn_shiftmax_round mode = mi ? SNN_SHIFTMAX_CEIL : SNN_SHIFTMAX_ROUND;
                bsa_compare(&r, N, d, shift, mode, dens_qk[(si + shi + mi) % 3],
                            dens_qk[(si + shi) % 3], dens_v[(si + mi) % 2]);
                compared++;
            }
        }
    }
    assert_true(compared >= 60);
}

/* Long heads: N past the integer P V's mask table (its masks made from the packed rows: 1030
 * keys at d <= 16, 600 at d = 40), and N above the kernel's 4096-key packing cache (the
 * on-the-fly repacking path). */
static void test_bsa_long_sequence(void **state) {
    (void)state;
    trng r = {0x10E6, 0};
    bsa_compare(&r, 1030, 3, 0, SNN_SHIFTMAX_ROUND, 0.6, 0.6, 0.3);
    bsa_compare(&r, 1030, 5, 1, SNN_SHIFTMAX_CEIL, 0.6, 0.3, 0.5);
    bsa_compare(&r, 600, 40, 3, SNN_SHIFTMAX_ROUND, 0.3, 0.3, 0.4);
    bsa_compare(&r, 4100, 2, 0, SNN_SHIFTMAX_ROUND, 0.5, 0.5, 0.4);
}

/* Wide score ranges (d = 64, shift 0: exponent spread up to 129 bits) are beyond the exact
 * reference; the kernel must still give normalised rows: the output of an all-ones V column is
 * the row sum, which lies in [2^-1/2, 2^1/2) up to the float rounding of the result. */
static void test_bsa_wide_rows(void **state) {
    (void)state;
    enum { N = 48, d = 64 };
    trng r = {0xF00D, 0};
    int8_t *q = malloc(N * d), *k = malloc(N * d), *v = malloc(N * d);
    fill_spikes(&r, q, N, d, 0, d, 0.9, 1);
    fill_spikes(&r, k, N, d, 0, d, 0.9, 1);
    for (int i = 0; i < N * d; i++) v[i] = 1;
    float *o = malloc(sizeof(float) * N * d);
    int32_t *scores = malloc(sizeof(int32_t) * N * N);
    snn_attn_bsa_head(N, d, q, k, v, d, 0, SNN_SHIFTMAX_ROUND, o, d, scores, NULL);
    for (int i = 0; i < N; i++) {
        const double s = row_sum(N, scores + (size_t)i * N);
        assert_true(s * s >= 0.5 && s * s < 2.0);
        for (int c = 0; c < d; c++) assert_true(o[(size_t)i * d + c] == (float)s);
    }
    free(q), free(k), free(v), free(o), free(scores);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ssa_hand),
        cmocka_unit_test(test_ssa_random),
        cmocka_unit_test(test_shiftmax_vectors),
        cmocka_unit_test(test_shiftmax_in_place),
        cmocka_unit_test(test_shiftmax_floor_division),
        cmocka_unit_test(test_shiftmax_sqrt2_boundary),
        cmocka_unit_test(test_shiftmax_fast_path_limit),
        cmocka_unit_test(test_shiftmax_row_int),
        cmocka_unit_test(test_shiftmax_properties),
        cmocka_unit_test(test_shiftmax_default_shift),
        cmocka_unit_test(test_bsa_hand),
        cmocka_unit_test(test_bsa_signs),
        cmocka_unit_test(test_bsa_random),
        cmocka_unit_test(test_bsa_long_sequence),
        cmocka_unit_test(test_bsa_wide_rows),
    };
    return cmocka_run_group_tests_name("attention", tests, NULL, NULL);
}
