/*
 * sdsa.h: Spike-driven Self-Attention (Spike-driven Transformer, NeurIPS 2023; spec/model.md
 * section 3 `sdsa`, research/methods.md section 2.5), one head of one sample over T timesteps:
 *
 *   kv[t, c] = sum_n K[t, n, c] V[t, n, c]          (binary spikes: an integer count, <= N)
 *   S[t, c]  = LIF_{v_th = 0.5}(kv[t, :])[c]        (a multi-step LIF over t: run by the model
 *                                                    with neurons/neuron.h, not here)
 *   O[t, n, c] = Q[t, n, c] S[t, c]                 (a channel mask on Q)
 *
 * This header provides the two linear pieces around the neuron; the model runs the neuron
 * between them (inference: snn_neuron_step per t on kv; training: snn_neuron_forward_seq /
 * snn_neuron_backward_seq on the [T, d] kv of the head), because the neuron's parameters,
 * state, recording and op counting (NEURON, CMP) already live in the model for every other
 * population, and the attention neuron here is one more [T, d] population per head.
 *
 * Layout: q, k, v (and dq, dk, dv) are a head's [N, d] slice of timestep t at
 * `m + t * ldt + h * d`, rows ld elements apart; o the same at row stride ldo and time stride
 * ldto. kv, S (and their gradients) are [T, d] at row stride ldkv / lds.
 *
 * Op counting rule (int8 kernels, exact from the spikes present, ops may be NULL):
 *   AC   one per (t, n, c) with K[t,n,c] != 0 and V[t,n,c] != 0. The AND selects the event,
 *        the count adds one to the kv accumulator: the same rule as SSA's Q K^T, which also
 *        counts a coincidence of two spikes as one AC (attention/ssa.c; methods 7.6, SDSA row).
 *   The Q mask counts nothing: Q AND S is a gate, no arithmetic (methods 7.6: "AND, ~0 cost"),
 *   and spike tests are not counted anywhere else in the engine either.
 * Spikes are read as binary: any nonzero int8 counts as 1.
 *
 * Training (float) pieces: same layout, float values (0/1 spikes in normal use, reals in the
 * gradient checks); sums over tokens in double, rounded once; backward ACCUMULATES (+=) and
 * never touches columns outside the head. On 0/1 spikes the float kv equals the int8 count and
 * the float O the int8 O exactly. No allocation, no static state.
 */
#ifndef SNN_SDSA_H
#define SNN_SDSA_H

#include <stdint.h>

#include "sim/ops.h"

/* Inference: kv[t, c] = #{n : k[t,n,c] != 0 and v[t,n,c] != 0}, written as float (exact
 * integers, N < 2^24). Adds AC as documented above. */
void snn_sdsa_kv_head(int T, int N, int d, const int8_t *k, const int8_t *v, int ld, long ldt,
                      float *kv, int ldkv, snn_ops *ops);

/* Inference: o[t, n, c] = 1 if q[t,n,c] != 0 and s[t,c] != 0, else 0 (float spikes).
 * Counts nothing (see above). */
void snn_sdsa_mask_head(int T, int N, int d, const int8_t *q, int ld, long ldt, const int8_t *s,
                        int lds, float *o, int ldo, long ldto);

/* Training forward: kv[t, c] = sum_n k[t,n,c] v[t,n,c] (double, rounded once). */
void snn_sdsa_kv_train(int T, int N, int d, const float *k, const float *v, int ld, long ldt,
                       float *kv, int ldkv);

/* Training backward of kv: dk[t,n,c] += dkv[t,c] v[t,n,c];  dv[t,n,c] += dkv[t,c] k[t,n,c]. */
void snn_sdsa_kv_backward(int T, int N, int d, const float *k, const float *v, int ld, long ldt,
                          const float *dkv, int lddkv, float *dk, float *dv);

/* Training forward: o[t,n,c] = q[t,n,c] s[t,c]. */
void snn_sdsa_mask_train(int T, int N, int d, const float *q, int ld, long ldt, const float *s,
                         int lds, float *o, int ldo, long ldto);

/* Training backward of the mask: dq[t,n,c] += dout[t,n,c] s[t,c];
 * ds[t,c] += sum_n dout[t,n,c] q[t,n,c] (double, rounded once).
 *   dout at row stride lddo, time stride lddt;  dq like q;  ds [T, d] at row stride lds. */
void snn_sdsa_mask_backward(int T, int N, int d, const float *q, int ld, long ldt, const float *s,
                            int lds, const float *dout, int lddo, long lddt, float *dq,
                            float *ds);

#endif
