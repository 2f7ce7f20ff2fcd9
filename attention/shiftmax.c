/*
 * shiftmax.c: Shiftmax, the shift-only softmax of BSA (spec/model.md section 3 `bsa`,
 * research/methods.md sections 3.2 and 3.3(c); BrainChip quantizeml's float Shiftmax).
 * The formulation is [PROPOSED] (the BSA paper's equations are not public): see methods 3.3.
 *
 * One row of integer scores a_j, scale s = 2^-shift (shift >= 0 in every default; a negative
 * shift, s > 1, is accepted and multiplies exactly):
 *   z_j = floor(a_j / 2^shift)          exact integer floor division (also for negative a_j)
 *   m   = max_j z_j
 *   S   = sum_j 2^(z_j - m)             in double, in j order; S >= 1 (the maximum contributes 1)
 *   k   = floor(log2 S)                 read off the double's exponent (exact)
 *   r   = k + [S >= sqrt(2) 2^k]        ROUND: round(log2 S), rows sum to [2^-1/2, 2^1/2)
 *   r   = k + [S != 2^k]                CEIL:  ceil(log2 S),  rows sum to (1/2, 1]
 *   e_j = z_j - m - r  (<= 0)           P_j = 2^e_j
 *
 * Exactness. The test S >= sqrt(2) 2^k is done as x * x >= 2.0 with x = S 2^-k in [1, 2). It is
 * trivially exact while S has at most 26 significant bits (x * x is then exact); it is in fact
 * exact for every double x, because the product is correctly rounded and monotone, and the two
 * doubles adjacent to sqrt(2) square to 0x1.ffffffffffffep+0 (< 2) and 0x1.0000000000001p+1
 * (>= 2) (checked in tests/test_attention.c). S itself is the exact real sum while
 * (m - min_j z_j) + ceil(log2 n) <= 53; for wider rows the tiny terms are rounded away in the
 * double additions, deterministically (j order), and r can differ from the real-number r only
 * when S lies within that rounding of a rounding boundary. BSA scores lie in [-d, d], so the
 * spread is at most 2d / 2^shift + 1: exact for d = 64 with the default shift 3.
 *
 * Pure numerics: no I/O, no allocation, no static state.
 */
#include "attention/attention.h"
#include "sim/vec.h"

#include <limits.h>
#include <math.h>
#include <string.h>

#include "sim/util.h"

int snn_shiftmax_default_shift(int d) {
    SNN_ASSERT(d >= 1);
    /* floor((log2 d + 1) / 2) == floor((floor(log2 d) + 1) / 2) for every d >= 1, so integers
     * suffice: d = 1 -> 0, 2 and 4 -> 1, 8 and 16 -> 2, 32 and 64 -> 3. */
    int lg = 0;
    while ((d >> lg) > 1) lg++;
    return (lg + 1) / 2;
}

/* floor(a / 2^shift) for shift >= 0 without shifting a negative int (implementation-defined in
 * C11), without division (slow) and without overflow: shift the magnitude, which is
 * non-negative, and for a < 0 use floor(a / 2^s) = -ceil(-a / 2^s). */
static inline int32_t floor_div_pow2(int32_t a, int shift) {
    if (shift < 0) {
        /* s = 2^-shift > 1 (allowed by the config: any power of two): z = a 2^-shift exactly,
         * saturated to int32 (only reachable with |a| 2^-shift >= 2^31, far outside BSA's
         * [-d, d] scores). */
        if (a == 0) return 0;
        if (shift <= -32) return a < 0 ? INT32_MIN : INT32_MAX;
        const int64_t z = (int64_t)a * ((int64_t)1 << -shift);
        return z > INT32_MAX ? INT32_MAX : z < INT32_MIN ? INT32_MIN : (int32_t)z;
    }
    if (shift >= 32) return a < 0 ? -1 : 0;
    const int64_t x = a;
    if (x >= 0) return (int32_t)(x >> shift);
    return (int32_t)-((-x + ((int64_t)1 << shift) - 1) >> shift);
}

/* Exact 2^t as a double for t <= 0, by building the IEEE-754 binary64 bit pattern (cheaper than
 * ldexp per element); ldexp handles the subnormal range. */
_Static_assert(sizeof(double) == sizeof(uint64_t), "binary64 double expected");
static inline double pow2_nonpos(int64_t t) {
    if (t < -1022) return t < -1100 ? 0.0 : ldexp(1.0, (int)t);
    const uint64_t bits = (uint64_t)(t + 1023) << 52;
    double x;
    memcpy(&x, &bits, sizeof x);
    return x;
}

/* floor(a / 2^shift) + 2^(31 - shift) for 0 <= shift < 32, as (a + 2^31) >> shift on the
 * unsigned 32-bit value a + 2^31 (the offset is a multiple of 2^shift, so the floor commutes
 * with it; no negative value is shifted). The offset cancels in every difference below. */
static inline uint32_t floor_shift_biased(int32_t a, int shift) {
    return ((uint32_t)a + 0x80000000u) >> shift;
}

/* Fast path for 0 <= shift < 32 (every BSA default), in place on x[0..n) (scores in, exponents
 * out). Returns -1, with x untouched, when the row is too wide for it. When the spread
 * m - min z plus ceil(log2 n) is at most 52, the double sum of the general path is exact (see
 * above), so it equals ldexp(Si, min z - m) with the integer Si = sum_j 2^(z_j - min z) < 2^53:
 * the same S, hence the same r and the same exponents. 32-bit lanes, branch-free: the loops
 * vectorise (sim/vec.h). */

/* 1 when log2(Si) rounds up past kk = floor(log2 Si) (mode ceil: Si is not a power of two;
 * round: the mantissa x = Si 2^-kk in [1, 2) has x^2 >= 2). x is an exact scaling of the exact
 * double Si (< 2^53), so no libm call is needed. */
static inline int round_up_log2(uint64_t si, int kk, snn_shiftmax_round mode) {
    const uint64_t scale_bits = (uint64_t)(1023 - kk) << 52;  /* 2^-kk, a normal double */
    double scale;
    memcpy(&scale, &scale_bits, sizeof scale);
    const double xs = (double)si * scale;  /* [1, 2) */
    return mode == SNN_SHIFTMAX_CEIL ? xs != 1.0 : xs * xs >= 2.0;
}

/* The biased maximum and minimum of z_j = floor(x_j 2^-shift) over a row. */
static inline void biased_range(int n, const int32_t *restrict x, int shift, uint32_t *m_out,
                                uint32_t *lo_out) {
    uint32_t m = 0, lo = UINT32_MAX;
    for (int j = 0; j < n; j++) {
        const uint32_t z = floor_shift_biased(x[j], shift);
        m = z > m ? z : m;
        lo = z < lo ? z : lo;
    }
    *m_out = m, *lo_out = lo;
}

static SNN_WIDE_FN SNN_VEC_FN int shiftmax_row_fast(int n, int32_t *restrict x, int shift,
                                                    snn_shiftmax_round mode) {
    uint32_t m, lo;  /* biased max and min of z */
    biased_range(n, x, shift, &m, &lo);
    const int lg = n > 1 ? 32 - __builtin_clz((unsigned)(n - 1)) : 0;  /* ceil(log2 n) */
    if ((uint64_t)(m - lo) + (uint64_t)lg > 52) return -1;  /* before narrowing the spread */
    const int spread = (int)(m - lo);
    uint64_t si = 0;
    if (spread + lg <= 31) {  /* BSA's rows: 32-bit lanes (the AVX2 clone shifts 8 at once) */
        uint32_t s32 = 0;
        for (int j = 0; j < n; j++) s32 += (uint32_t)1 << (floor_shift_biased(x[j], shift) - lo);
        si = s32;
    } else {
        for (int j = 0; j < n; j++) si += (uint64_t)1 << (floor_shift_biased(x[j], shift) - lo);
    }
    /* r from S = Si 2^(lo - m) without libm: kk = floor(log2 Si), so k = kk + lo - m, and
     * x = S 2^-k = Si 2^-kk, an exact scaling of the exact double Si (< 2^53). */
    const int kk = 63 - __builtin_clzll(si);
    const int r = kk - spread + round_up_log2(si, kk, mode);
    /* e_j = z_j - m - r, with m - z_j in [0, 52] */
    for (int j = 0; j < n; j++) x[j] = -(int32_t)(m - floor_shift_biased(x[j], shift)) - r;
    return r;
}

SNN_WIDE_FN SNN_VEC_FN int snn_shiftmax_row_int(int n, int32_t *restrict x, int shift,
                                                 snn_shiftmax_round mode, uint32_t *restrict p,
                                                 int *E) {
    SNN_ASSERT(n >= 1);
    if (shift < 0 || shift >= 32) return -1;
    uint32_t m, lo;  /* biased max and min of z */
    biased_range(n, x, shift, &m, &lo);
    const int lg = n > 1 ? 32 - __builtin_clz((unsigned)(n - 1)) : 0;  /* ceil(log2 n) */
    /* r <= lg (S <= n), so E = spread + r <= spread + lg, and the sums of p need lg more bits */
    if ((uint64_t)(m - lo) + 2 * (uint64_t)lg > 31) return -1;  /* before narrowing the spread */
    const int spread = (int)(m - lo);
    /* p_j = 2^(e_j + E) = 2^(z_j - m - r + m - lo + r) = 2^(z_j - lo); S = sum_j p_j 2^(lo - m),
     * exact (as in shiftmax_row_fast) */
    uint32_t si = 0;
    for (int j = 0; j < n; j++) {
        p[j] = (uint32_t)1 << (floor_shift_biased(x[j], shift) - lo);
        si += p[j];
    }
    const int kk = 31 - __builtin_clz(si);
    const int r = kk - spread + round_up_log2(si, kk, mode);
    for (int j = 0; j < n; j++) x[j] = -(int32_t)(m - floor_shift_biased(x[j], shift)) - r;
    *E = spread + r;
    return r;
}

int snn_shiftmax_row(int n, const int32_t *a, int shift, snn_shiftmax_round mode, int32_t *e) {
    SNN_ASSERT(n >= 1);
    if (shift >= 0 && shift < 32) {
        if (e != a) memmove(e, a, (size_t)n * sizeof *e);
        const int r = shiftmax_row_fast(n, e, shift, mode);
        if (r >= 0) return r;
        a = e;  /* untouched copy of the scores */
    }

    /* Pass 1: z_j into e (e may alias a: a[j] is read before e[j] is written) and the maximum. */
    int32_t m = INT32_MIN;
    for (int j = 0; j < n; j++) {
        const int32_t z = floor_div_pow2(a[j], shift);
        e[j] = z;
        if (z > m) m = z;
    }

    /* Pass 2: S = sum_j 2^(z_j - m) in j order (>= 1: the maximum contributes 2^0). */
    double sum = 0.0;
    for (int j = 0; j < n; j++) sum += pow2_nonpos((int64_t)e[j] - m);

    /* k = floor(log2 S): S >= 1 is a normal double, so ilogb is exact. */
    const int k = ilogb(sum);
    const double x = ldexp(sum, -k);  /* [1, 2) */
    int r;
    if (mode == SNN_SHIFTMAX_CEIL)
        r = k + (x != 1.0);
    else
        r = k + (x * x >= 2.0);

    /* Pass 3: exponents e_j = z_j - m - r (<= 0). */
    for (int j = 0; j < n; j++) {
        int64_t ej = (int64_t)e[j] - m - r;
        if (ej < INT32_MIN) ej = INT32_MIN;  /* only for pathological int32 scores */
        e[j] = (int32_t)ej;
    }
    return r;
}
