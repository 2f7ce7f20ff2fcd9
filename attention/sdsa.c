/*
 * sdsa.c: the two linear pieces of Spike-driven Self-Attention around its LIF (formulas, layout
 * and the op-counting rule in attention/sdsa.h; research/methods.md section 2.5).
 *
 * The token sum kv = sum_n K V runs over rows of a [N, d] slice: the loops keep the channel
 * index innermost (contiguous) with one double accumulator row per block of CBLK channels on
 * the stack, so there is no limit on d. The int8 kernel counts in int32 and converts once.
 *
 * Pure numerics: no I/O, no allocation, no static state.
 */
#include "attention/sdsa.h"

#include "sim/util.h"

/* Channels per block of accumulators. */
enum { CBLK = 64 };

void snn_sdsa_kv_head(int T, int N, int d, const int8_t *k, const int8_t *v, int ld, long ldt,
                      float *kv, int ldkv, snn_ops *ops) {
    SNN_ASSERT(T >= 0 && N >= 0 && d >= 0 && N < (1 << 24));
    uint64_t n_ac = 0;
    for (int t = 0; t < T; t++) {
        const int8_t *kt = k + (long)t * ldt, *vt = v + (long)t * ldt;
        for (int c0 = 0; c0 < d; c0 += CBLK) {
            const int cn = d - c0 < CBLK ? d - c0 : CBLK;
            int32_t cnt[CBLK];
            for (int c = 0; c < cn; c++) cnt[c] = 0;
            for (int n = 0; n < N; n++) {
                const int8_t *kn = kt + (long)n * ld + c0, *vn = vt + (long)n * ld + c0;
                for (int c = 0; c < cn; c++) cnt[c] += (kn[c] != 0) & (vn[c] != 0);
            }
            float *kvt = kv + (long)t * ldkv + c0;
            for (int c = 0; c < cn; c++) {
                kvt[c] = (float)cnt[c];
                n_ac += (uint64_t)cnt[c];  /* one AC per coincidence: exactly the count */
            }
        }
    }
    if (ops) ops->n[SNN_OP_AC] += n_ac;
}

void snn_sdsa_mask_head(int T, int N, int d, const int8_t *q, int ld, long ldt, const int8_t *s,
                        int lds, float *o, int ldo, long ldto) {
    for (int t = 0; t < T; t++) {
        const int8_t *st = s + (long)t * lds;
        for (int n = 0; n < N; n++) {
            const int8_t *qn = q + (long)t * ldt + (long)n * ld;
            float *on = o + (long)t * ldto + (long)n * ldo;
            for (int c = 0; c < d; c++) on[c] = (qn[c] != 0 && st[c] != 0) ? 1.0f : 0.0f;
        }
    }
}

void snn_sdsa_kv_train(int T, int N, int d, const float *k, const float *v, int ld, long ldt,
                       float *kv, int ldkv) {
    for (int t = 0; t < T; t++) {
        const float *kt = k + (long)t * ldt, *vt = v + (long)t * ldt;
        for (int c0 = 0; c0 < d; c0 += CBLK) {
            const int cn = d - c0 < CBLK ? d - c0 : CBLK;
            double acc[CBLK];
            for (int c = 0; c < cn; c++) acc[c] = 0.0;
            for (int n = 0; n < N; n++) {
                const float *kn = kt + (long)n * ld + c0, *vn = vt + (long)n * ld + c0;
                for (int c = 0; c < cn; c++) acc[c] += (double)kn[c] * (double)vn[c];
            }
            float *kvt = kv + (long)t * ldkv + c0;
            for (int c = 0; c < cn; c++) kvt[c] = (float)acc[c];
        }
    }
}

void snn_sdsa_kv_backward(int T, int N, int d, const float *k, const float *v, int ld, long ldt,
                          const float *dkv, int lddkv, float *dk, float *dv) {
    /* kv_tc = sum_n k_tnc v_tnc: each product has a single term, one float multiply (exact
     * for spikes) */
    for (int t = 0; t < T; t++) {
        const float *g = dkv + (long)t * lddkv;
        for (int n = 0; n < N; n++) {
            const long row = (long)t * ldt + (long)n * ld;
            for (int c = 0; c < d; c++) {
                dk[row + c] += g[c] * v[row + c];
                dv[row + c] += g[c] * k[row + c];
            }
        }
    }
}

void snn_sdsa_mask_train(int T, int N, int d, const float *q, int ld, long ldt, const float *s,
                         int lds, float *o, int ldo, long ldto) {
    for (int t = 0; t < T; t++) {
        const float *st = s + (long)t * lds;
        for (int n = 0; n < N; n++) {
            const float *qn = q + (long)t * ldt + (long)n * ld;
            float *on = o + (long)t * ldto + (long)n * ldo;
            for (int c = 0; c < d; c++) on[c] = qn[c] * st[c];
        }
    }
}

void snn_sdsa_mask_backward(int T, int N, int d, const float *q, int ld, long ldt, const float *s,
                            int lds, const float *dout, int lddo, long lddt, float *dq,
                            float *ds) {
    for (int t = 0; t < T; t++) {
        const float *st = s + (long)t * lds;
        for (int c0 = 0; c0 < d; c0 += CBLK) {
            const int cn = d - c0 < CBLK ? d - c0 : CBLK;
            double acc[CBLK];
            for (int c = 0; c < cn; c++) acc[c] = 0.0;
            for (int n = 0; n < N; n++) {
                const long row = (long)t * ldt + (long)n * ld + c0;
                const float *gn = dout + (long)t * lddt + (long)n * lddo + c0;
                for (int c = 0; c < cn; c++) {
                    dq[row + c] += gn[c] * st[c0 + c];
                    acc[c] += (double)gn[c] * (double)q[row + c];
                }
            }
            float *dst = ds + (long)t * lds + c0;
            for (int c = 0; c < cn; c++) dst[c] += (float)acc[c];
        }
    }
}
