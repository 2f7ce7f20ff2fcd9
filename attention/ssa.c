/*
 * ssa.c: Spikformer's spiking self-attention for one head and one timestep
 * (spec/model.md section 3 `ssa`, research/methods.md section 2.1, op counts section 7.6).
 *
 *   A = Q K^T            integer counts of coincident spikes, A_ij in [0, d]
 *   O = scale * (A V)    A V is an integer matrix, multiplied once by scale (0.125 in Spikformer)
 *
 * This is the CIFAR ("N x N") product order of the official code; with binary Q, K, V and a
 * power-of-two scale the result equals PyTorch's (Q @ K^T * 0.125) @ V exactly, because every
 * intermediate is an integer multiple of 0.125 far below 2^24.
 *
 * Event-driven, bit-parallel: spike rows are packed 64 channels to a uint64 word (bit c set iff
 * the spike is nonzero), so A_ij is a popcount of q_i AND k_j, and A V visits only the set bits
 * of each packed v_j. The packed words live in small fixed stack tiles, so the kernel needs no
 * scratch beyond `scores` and has no limit on N or d. The integer sums A V are accumulated in
 * the float output itself: integers below 2^24 add exactly in float (asserted: N d < 2^24).
 *
 * Op counts (spec section 6, exact, from the spikes present):
 *   AC       one per (i, j, c) with q_ic != 0 and k_jc != 0 (a coincidence adds one to A_ij)
 *   INT_ADD  one per (i, j, c) with A_ij != 0 and v_jc != 0 (A_ij is an integer, not a spike)
 *   SHIFT    one per output element (the x0.125 scaling is a shift for a power-of-two scale)
 *
 * Pure numerics: no I/O, no allocation, no static state (called from several OpenMP threads).
 */
#include "attention/attention.h"
#include "attention/bits.h"

#include "sim/util.h"

/* Keys per stack tile; also the channels per packed word. */
enum { SSA_TILE = 64 };


/* Bit c of the result is set iff p[c] != 0, for c < n <= 64. */
static inline uint64_t pack_nz(const int8_t *p, int n) {
    uint64_t w = 0;
    for (int c = 0; c < n; c++) w |= (uint64_t)(p[c] != 0) << c;
    return w;
}

void snn_attn_ssa_head(int N, int d, const int8_t *q, const int8_t *k, const int8_t *v, int ld,
                       float scale, float *o, int ldo, int32_t *scores, snn_ops *ops) {
    if (N <= 0) return;
    SNN_ASSERT(d >= 0 && (int64_t)N * d < (1 << 24));
    uint64_t n_ac = 0, n_add = 0;

    /* scores [N, N] row-major: A_ij = popcount(q_i & k_j), summed over 64-channel words. */
    for (long t = 0; t < (long)N * N; t++) scores[t] = 0;
    for (int c0 = 0; c0 < d; c0 += 64) {
        const int cn = d - c0 < 64 ? d - c0 : 64;
        for (int j0 = 0; j0 < N; j0 += SSA_TILE) {
            const int jn = N - j0 < SSA_TILE ? N - j0 : SSA_TILE;
            uint64_t kb[SSA_TILE];  /* packed k rows j0 .. j0 + jn, channels c0 .. c0 + cn */
            for (int jj = 0; jj < jn; jj++) kb[jj] = pack_nz(k + (long)(j0 + jj) * ld + c0, cn);
            for (int i = 0; i < N; i++) {
                const uint64_t qb = pack_nz(q + (long)i * ld + c0, cn);
                if (!qb) continue;  /* a silent query word contributes no events */
                int32_t *ai = scores + (long)i * N + j0;
                for (int jj = 0; jj < jn; jj++) {
                    const int pc = snn_popcount64(qb & kb[jj]);
                    ai[jj] += pc;
                    n_ac += (uint64_t)pc;
                }
            }
        }
    }

    /* o [N, d] at row stride ldo: first the integer A V, accumulated exactly in float, one add
     * of A_ij per (j, c) with A_ij != 0 and v_jc != 0; then one multiply by scale. */
    for (int i = 0; i < N; i++)
        for (int c = 0; c < d; c++) o[(long)i * ldo + c] = 0.0f;
    for (int c0 = 0; c0 < d; c0 += 64) {
        const int cn = d - c0 < 64 ? d - c0 : 64;
        for (int j0 = 0; j0 < N; j0 += SSA_TILE) {
            const int jn = N - j0 < SSA_TILE ? N - j0 : SSA_TILE;
            uint64_t vb[SSA_TILE];  /* packed v rows j0 .. j0 + jn */
            int vcount[SSA_TILE];
            for (int jj = 0; jj < jn; jj++) {
                vb[jj] = pack_nz(v + (long)(j0 + jj) * ld + c0, cn);
                vcount[jj] = snn_popcount64(vb[jj]);
            }
            for (int i = 0; i < N; i++) {
                const int32_t *ai = scores + (long)i * N + j0;
                float *oi = o + (long)i * ldo + c0;
                for (int jj = 0; jj < jn; jj++) {
                    const int32_t a = ai[jj];
                    uint64_t w = vb[jj];
                    if (a == 0 || w == 0) continue;
                    const float fa = (float)a;
                    n_add += (uint64_t)vcount[jj];
                    while (w) {
                        oi[__builtin_ctzll(w)] += fa;
                        w &= w - 1;
                    }
                }
            }
        }
    }
    for (int i = 0; i < N; i++) {
        float *oi = o + (long)i * ldo;
        for (int c = 0; c < d; c++) oi[c] = scale * oi[c];
    }

    if (ops) {
        ops->n[SNN_OP_AC] += n_ac;
        ops->n[SNN_OP_INT_ADD] += n_add;
        ops->n[SNN_OP_SHIFT] += (uint64_t)N * (uint64_t)d;
    }
}
