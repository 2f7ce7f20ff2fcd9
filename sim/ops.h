/*
 * ops.h: operation classes counted by the engine (spec section 6).
 *
 * Counts are what the event-driven engine actually did, per sample, per layer:
 *   AC          one per (nonzero input spike, outgoing synapse); a -1 spike subtracts, still an AC
 *   MAC         one per multiply-accumulate with a real-valued operand
 *   SHIFT       power-of-two scalings (Shiftmax exponentials and normalisation, SSA's x0.125)
 *   INT_ADD     integer additions (Shiftmax row sums, P.V shift-and-add, SSA A.V)
 *   EXP, DIV    exponentials and divisions (ANN softmax baselines)
 *   CMP         comparisons (threshold tests, row maxima)
 *   NEURON      neuron updates: one per neuron per timestep
 */
#ifndef SNN_OPS_H
#define SNN_OPS_H

#include <stdint.h>

typedef enum snn_op_class {
    SNN_OP_AC,
    SNN_OP_MAC,
    SNN_OP_SHIFT,
    SNN_OP_INT_ADD,
    SNN_OP_EXP,
    SNN_OP_DIV,
    SNN_OP_CMP,
    SNN_OP_NEURON,
    SNN_OP__COUNT
} snn_op_class;

typedef struct snn_ops {
    uint64_t n[SNN_OP__COUNT];
} snn_ops;

static inline void snn_ops_add(snn_ops *dst, const snn_ops *src) {
    for (int i = 0; i < SNN_OP__COUNT; i++) dst->n[i] += src->n[i];
}

/* Dataset-friendly names: "ac", "mac", "shift", "int_add", "exp", "div", "cmp", "neuron_update". */
static inline const char *snn_op_name(snn_op_class c) {
    static const char *const names[SNN_OP__COUNT] = {"ac",  "mac", "shift", "int_add",
                                                     "exp", "div", "cmp",   "neuron_update"};
    return names[c];
}

#endif
