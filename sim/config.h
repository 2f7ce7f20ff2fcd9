/*
 * config.h: the run configuration, loaded from YAML with libyaml (docs/config.md).
 *
 * Every key has a default; a config file states only what differs. Loading collects every
 * problem (YAML syntax, unknown keys with a did-you-mean, wrong types, out-of-range values,
 * cross-field rules) as compiler-style diagnostics, `file:line:col: error: message`, and the
 * CLI exits with code 2 when there is any. `--set key.path=value` overrides go through the same
 * checks; their diagnostics name `--set key.path=value` instead of a file position.
 *
 * The key paths seed, data.path, model.attention.kind, model.heads, model.timesteps,
 * model.weights, record.samples, train.epochs and train.resume are fixed: users' scripts rely
 * on them.
 */
#ifndef SNN_CONFIG_H
#define SNN_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "neurons/neuron.h"
#include "attention/attention.h"

typedef enum snn_data_source { SNN_DATA_IDX, SNN_DATA_SYNTHETIC, SNN_DATA_LONGSEQ } snn_data_source;
typedef enum snn_encoding { SNN_ENCODING_DIRECT, SNN_ENCODING_RATE } snn_encoding;
/* Spiking kernels first (bsa, ssa, sdsa), then the ANN baselines (softmax, cat, primal), which
 * run the graph with T = 1 and activations in place of neurons (spec section 2). */
typedef enum snn_attn_kind {
    SNN_ATTN_BSA, SNN_ATTN_SSA, SNN_ATTN_SDSA, SNN_ATTN_SOFTMAX, SNN_ATTN_CAT, SNN_ATTN_PRIMAL
} snn_attn_kind;

static inline bool snn_attn_is_ann(snn_attn_kind k) { return k >= SNN_ATTN_SOFTMAX; }

/* Activation of an ANN model's hidden and head slots. */
typedef enum snn_activation { SNN_ACT_RELU, SNN_ACT_GELU } snn_activation;
typedef enum snn_residual { SNN_RESIDUAL_MS, SNN_RESIDUAL_SEW } snn_residual;

typedef struct snn_config {
    char *name;            /* run name, used in default output path */
    uint64_t seed;

    struct {
        snn_data_source source;  /* idx | synthetic */
        char *path;              /* directory of IDX files (raw or .gz) */
        char *split;             /* evaluation split: "test" | "train" */
        int64_t limit;           /* evaluate at most this many samples; 0 = all */
        int64_t train_limit;     /* training samples; 0 = all */
        bool shuffle;            /* seeded shuffle of the evaluation order (default false) */
        snn_encoding encoding;   /* direct | rate */
        int64_t synthetic_samples; /* size of each synthetic (or longseq) split */
        int seq_symbols;         /* longseq: symbols per token */
    } data;

    struct {
        int image_size;          /* H = W */
        int channels;            /* C */
        int classes;             /* C_out */
        int patch;               /* P; N = (image_size / patch)^2 */
        int dim;                 /* D */
        int heads;               /* h; d = D / h */
        int blocks;              /* L */
        int mlp_ratio;           /* hidden width = D * mlp_ratio */
        int timesteps;           /* T */
        snn_residual residual;   /* ms (membrane shortcut) | sew */
        char *weights;           /* checkpoint path or NULL for seeded random init */
        float init_std;          /* trunc-normal std of linear weights (Spikformer: 0.02) */
        snn_neuron_params neuron;/* every LIF population (attention thresholds below) */
        struct {
            snn_attn_kind kind;  /* bsa | ssa | sdsa | softmax | cat | primal */
            float scale;         /* ssa: score scale (0.125); bsa: Shiftmax s, 0 = auto */
            float attn_threshold;/* v_threshold of attn_lif; 0 = auto (bsa 0.125, ssa 0.5) */
            float qk_threshold;  /* bsa: bipolar Q/K threshold */
            bool qk_soft_reset;  /* bsa: Q/K reset soft instead of hard */
            snn_shiftmax_round rounding; /* bsa: round | ceil */
            int low_rank;        /* primal: s */
            int rank_multi;      /* primal: sampled tokens M = min(N, s * rank_multi) */
            float eta;           /* primal: weight of the KSVD loss */
        } attention;
        snn_activation activation; /* ANN models: hidden and head activation */
    } model;

    struct {
        int epochs;
        int batch_size;
        float lr;
        float weight_decay;
        float warmup_epochs;     /* may be fractional */
        float label_smoothing;
        float grad_clip;
        float val_fraction;
        char *resume;            /* checkpoint to resume from or NULL */
    } train;

    struct {
        int64_t samples;         /* record spikes of the first this-many evaluated samples */
        bool membrane;           /* also record membrane traces */
    } record;

    struct {
        char *preset;            /* horowitz45nm | fp16 | int8 */
        /* pJ per op; NaN in a config means "from the preset" and is resolved at load */
        double e_mac_pj, e_ac_pj, e_int_add_pj, e_shift_pj, e_cmp_pj, e_exp_pj, e_div_pj;
        double e_neuron_pj;      /* per neuron update */
        /* memory-aware energy (sim/energy.h); NaN = from the preset / the memory level */
        double weight_bits, membrane_bits, activation_bits;
        char *memory_level;      /* sram8k | sram32k | sram1m | dram */
        double read_pj_per_bit, write_pj_per_bit;
    } energy;

    struct {
        char *path;              /* HDF5 output; default runs/<name>.h5 */
        int compression;         /* gzip level 0..9 */
    } output;
} snn_config;

/* Fills every field with its documented default (strings are malloc'd copies); the energy
 * values are resolved from the default preset. cfg need not be initialised. */
void snn_config_defaults(snn_config *cfg);

/* Loads YAML text over the defaults, then applies overrides "key.path=value" (n_sets of them),
 * then runs the cross-field checks. `display_name` is used in diagnostics ("configs/x.yaml").
 * Every diagnostic is printed to diag (one line each; diag may be NULL). Returns the number of
 * errors; on errors cfg holds defaults/partial values and must still be freed with
 * snn_config_free. cfg need not be initialised (strings it holds are not freed). Energy values
 * left null take the value of energy.preset. */
int snn_config_load_string(snn_config *cfg, const char *text, const char *display_name,
                           const char *const *sets, int n_sets, FILE *diag);

/* Same, reading the file at path (an unreadable file is one diagnostic). */
int snn_config_load_file(snn_config *cfg, const char *path, const char *const *sets, int n_sets,
                         FILE *diag);

/* The fully resolved config as YAML text (malloc'd); loading it back gives the same config. */
char *snn_config_to_yaml(const snn_config *cfg);

void snn_config_free(snn_config *cfg);

/* Derived quantities. */
static inline int snn_config_tokens(const snn_config *c) {
    int g = c->model.image_size / c->model.patch;
    return g * g;
}
static inline int snn_config_head_dim(const snn_config *c) { return c->model.dim / c->model.heads; }

/* The key schema, for tools and for the test that keeps docs/config.md complete: i in
 * [0, snn_config_key_count()) gives the full dotted path ("model.attention.kind"), the default
 * as YAML text ("64", "null", "auto") and a one-line description. Out-of-range i gives NULL. */
int snn_config_key_count(void);
const char *snn_config_key_path(int i);
const char *snn_config_key_default(int i);
const char *snn_config_key_doc(int i);

/* Names for enum values, as written in YAML. */
const char *snn_attn_kind_name(snn_attn_kind k);
const char *snn_neuron_kind_name(snn_neuron_kind k);

#endif
