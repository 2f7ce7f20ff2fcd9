/*
 * config.c: the YAML run configuration (config.h, docs/config.md).
 *
 * One static table, keys[], describes every key: its dotted path, type, offset in snn_config,
 * default (as YAML text), bounds and a one-line doc. Everything else is driven by that table:
 *   - defaults: each default text goes through the same scalar parser as user input, so the
 *     defaults cannot bypass validation and the table is the only place they are written;
 *   - loading: libyaml's document API (yaml_parser_load) builds a node tree whose nodes keep
 *     their 0-based marks; the tree is walked against the table. Sections ("model",
 *     "model.neuron") are the dotted prefixes of key paths, so nesting needs no second table;
 *   - --set key.path=value: the value is parsed as its own YAML document and applied by the same
 *     walk, so quoting, null and even flow mappings (--set 'model.neuron={tau: 3}') behave as
 *     in a file;
 *   - validation: type and range checks per key while applying, then cross-field rules
 *     (check_cross) on keys whose own checks passed;
 *   - emission (snn_config_to_yaml): table order, nesting rebuilt from the paths.
 * Diagnostics are collected rather than reported at the first problem (a YAML syntax error is
 * the exception: libyaml cannot continue past it), sorted by position (file first, then the
 * --set overrides in command-line order) and printed compiler-style at the end.
 */
#include "sim/config.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "sim/util.h"

/* Enum fields are written through an int lvalue (gcc gives these enums an int-sized type). */
_Static_assert(sizeof(snn_data_source) == sizeof(int), "enum storage");
_Static_assert(sizeof(snn_neuron_kind) == sizeof(int), "enum storage");
_Static_assert(sizeof(snn_shiftmax_round) == sizeof(int), "enum storage");

/* ---------------------------------------------------------------------------------------- */
/* The schema                                                                                */
/* ---------------------------------------------------------------------------------------- */

typedef enum key_type {
    T_INT,    /* int, decimal YAML integer */
    T_INT64,  /* int64_t */
    T_UINT64, /* uint64_t */
    T_FLOAT,  /* float; integers accepted */
    T_DOUBLE, /* double; with F_NULL, null is stored as NaN ("from the preset") */
    T_BOOL,   /* bool */
    T_STRING, /* char *; with F_NULL, null is stored as NULL */
    T_ENUM,   /* one of names[]; stored as int index, or see F_AS_BOOL / F_AS_STRING */
    T_AUTO,   /* float, "auto" stored as 0 */
    T_VRESET  /* float v_reset, null sets the bool at aux (soft_reset) instead */
} key_type;

enum {
    F_NULL = 1u << 0,      /* null is a value */
    F_MIN = 1u << 1,       /* value >= min */
    F_MIN_EXCL = 1u << 2,  /* value > min (with F_MIN) */
    F_MAX = 1u << 3,       /* value <= max */
    F_MAX_EXCL = 1u << 4,  /* value < max (with F_MAX) */
    F_AS_BOOL = 1u << 5,   /* T_ENUM stored as bool: index 0 false, 1 true */
    F_AS_STRING = 1u << 6, /* T_ENUM stored as a malloc'd copy of the name */
};
#define F_GT (F_MIN | F_MIN_EXCL)
#define F_GE F_MIN

typedef struct key_spec {
    const char *path;         /* full dotted path as written in YAML */
    key_type type;
    unsigned flags;
    size_t off;               /* offsetof(snn_config, ...) */
    size_t aux;               /* T_VRESET: offset of the soft_reset bool */
    const char *def;          /* default, as YAML scalar text */
    const char *const *names; /* T_ENUM: allowed names, NULL-terminated; index = value */
    double min, max;
    const char *doc;
} key_spec;

static const char *const source_names[] = {"idx", "synthetic", "longseq", NULL};
static const char *const split_names[] = {"test", "train", NULL};
static const char *const encoding_names[] = {"direct", "rate", NULL};
static const char *const residual_names[] = {"ms", "sew", NULL};
static const char *const neuron_names[] = {"lif", "if", "plif", NULL};
static const char *const surrogate_names[] = {"sigmoid", "atan", "triangle", NULL};
static const char *const attn_names[] = {"bsa", "ssa", "sdsa", "softmax", "cat", "primal", NULL};
static const char *const activation_names[] = {"relu", "gelu", NULL};
static const char *const rounding_names[] = {"round", "ceil", NULL};
static const char *const reset_names[] = {"hard", "soft", NULL};
static const char *const preset_names[] = {"horowitz45nm", "fp16", "int8", NULL};
static const char *const memory_level_names[] = {"sram8k", "sram32k", "sram1m", "dram", NULL};

#define OFF(f) offsetof(snn_config, f)

/* Sections must stay contiguous (emission opens each section once; a test checks it). */
static const key_spec keys[] = {
    {"name", T_STRING, 0, OFF(name), 0, "spikesim", NULL, 0, 0,
     "run name; the default output file is runs/<name>.h5"},
    {"seed", T_UINT64, 0, OFF(seed), 0, "0", NULL, 0, 0,
     "seed of every random stream (init, shuffle, rate encoding, synthetic data)"},

    {"data.source", T_ENUM, 0, OFF(data.source), 0, "idx", source_names, 0, 0,
     "dataset: IDX files (Fashion-MNIST layout), generated synthetic images, or the generated "
     "long-range sequence task"},
    {"data.path", T_STRING, 0, OFF(data.path), 0, "/usr/share/datasets/fashion-mnist", NULL, 0,
     0, "directory holding the IDX files (raw or .gz)"},
    {"data.split", T_ENUM, F_AS_STRING, OFF(data.split), 0, "test", split_names, 0, 0,
     "split that is evaluated"},
    {"data.limit", T_INT64, F_GE, OFF(data.limit), 0, "0", NULL, 0, 0,
     "evaluate at most this many samples; 0 = all"},
    {"data.train_limit", T_INT64, F_GE, OFF(data.train_limit), 0, "0", NULL, 0, 0,
     "train on at most this many samples; 0 = all"},
    {"data.shuffle", T_BOOL, 0, OFF(data.shuffle), 0, "false", NULL, 0, 0,
     "seeded shuffle of the evaluation order"},
    {"data.encoding", T_ENUM, 0, OFF(data.encoding), 0, "direct", encoding_names, 0, 0,
     "input coding: pixels as a constant current every step, or Bernoulli rate spikes"},
    {"data.synthetic_samples", T_INT64, F_GE, OFF(data.synthetic_samples), 0, "1024", NULL, 1,
     0, "size of each synthetic (or longseq) split"},
    {"data.seq_symbols", T_INT, F_MIN | F_MAX, OFF(data.seq_symbols), 0, "8", NULL, 3, 64,
     "longseq: symbols a token can carry (channels = seq_symbols + 1)"},

    {"model.image_size", T_INT, F_GE, OFF(model.image_size), 0, "28", NULL, 1, 0,
     "input height = width H"},
    {"model.channels", T_INT, F_GE, OFF(model.channels), 0, "1", NULL, 1, 0,
     "input channels C"},
    {"model.classes", T_INT, F_GE, OFF(model.classes), 0, "10", NULL, 2, 0,
     "output classes"},
    {"model.patch", T_INT, F_GE, OFF(model.patch), 0, "4", NULL, 1, 0,
     "patch size P; tokens N = (image_size / patch)^2"},
    {"model.dim", T_INT, F_GE, OFF(model.dim), 0, "64", NULL, 1, 0, "embedding width D"},
    {"model.heads", T_INT, F_GE, OFF(model.heads), 0, "4", NULL, 1, 0,
     "attention heads h; head width d = dim / heads"},
    {"model.blocks", T_INT, F_GE, OFF(model.blocks), 0, "2", NULL, 1, 0,
     "transformer blocks L"},
    {"model.mlp_ratio", T_INT, F_GE, OFF(model.mlp_ratio), 0, "4", NULL, 1, 0,
     "MLP hidden width = dim * mlp_ratio"},
    {"model.timesteps", T_INT, F_MIN | F_MAX, OFF(model.timesteps), 0, "4", NULL, 1, 1024,
     "simulation timesteps T per sample"},
    {"model.residual", T_ENUM, 0, OFF(model.residual), 0, "ms", residual_names, 0, 0,
     "shortcut: membrane shortcut (MS) or spike-element-wise (SEW)"},
    {"model.weights", T_STRING, F_NULL, OFF(model.weights), 0, "null", NULL, 0, 0,
     "checkpoint to load; null = seeded random init"},
    {"model.init_std", T_FLOAT, F_GT, OFF(model.init_std), 0, "0.02", NULL, 0, 0,
     "std of the truncated-normal init of linear weights"},
    {"model.activation", T_ENUM, 0, OFF(model.activation), 0, "relu", activation_names, 0, 0,
     "ANN models: activation of the MLP hidden layer and the head"},

    {"model.neuron.kind", T_ENUM, 0, OFF(model.neuron.kind), 0, "lif", neuron_names, 0, 0,
     "neuron model of every population"},
    {"model.neuron.tau", T_FLOAT, F_GT, OFF(model.neuron.tau), 0, "2.0", NULL, 1, 0,
     "membrane time constant in steps (LIF, PLIF initial value)"},
    {"model.neuron.v_threshold", T_FLOAT, F_GT, OFF(model.neuron.v_threshold), 0, "1.0", NULL,
     0, 0, "firing threshold"},
    {"model.neuron.v_reset", T_VRESET, 0, OFF(model.neuron.v_reset),
     OFF(model.neuron.soft_reset), "0.0", NULL, 0, 0,
     "hard-reset value; null = soft reset (subtract the threshold)"},
    {"model.neuron.decay_input", T_BOOL, 0, OFF(model.neuron.decay_input), 0, "true", NULL, 0,
     0, "the input is divided by tau too (SpikingJelly decay_input)"},
    {"model.neuron.surrogate", T_ENUM, 0, OFF(model.neuron.surrogate), 0, "sigmoid",
     surrogate_names, 0, 0, "surrogate gradient of the spike function"},
    {"model.neuron.alpha", T_FLOAT, F_GT, OFF(model.neuron.alpha), 0, "4.0", NULL, 0, 0,
     "surrogate sharpness"},
    {"model.neuron.detach_reset", T_BOOL, 0, OFF(model.neuron.detach_reset), 0, "true", NULL,
     0, 0, "no gradient through the reset"},

    {"model.attention.kind", T_ENUM, 0, OFF(model.attention.kind), 0, "bsa", attn_names, 0, 0,
     "spiking: bsa (bipolar, Shiftmax), ssa (Spikformer), sdsa (Spike-driven Transformer); "
     "ANN (T = 1): softmax, cat (circular-convolutional), primal (Primal-Attention)"},
    {"model.attention.scale", T_AUTO, F_GT, OFF(model.attention.scale), 0, "auto", NULL, 0, 0,
     "score scale; bsa: a power of two, auto from the head width; ssa: auto = 0.125"},
    {"model.attention.attn_threshold", T_AUTO, F_GT, OFF(model.attention.attn_threshold), 0,
     "auto", NULL, 0, 0, "threshold of the attention-output neurons; auto = bsa 0.125, ssa and sdsa 0.5"},
    {"model.attention.qk_threshold", T_FLOAT, F_GT, OFF(model.attention.qk_threshold), 0,
     "1.0", NULL, 0, 0, "bsa: threshold of the bipolar Q/K neurons"},
    {"model.attention.qk_reset", T_ENUM, F_AS_BOOL, OFF(model.attention.qk_soft_reset), 0,
     "hard", reset_names, 0, 0, "bsa: reset of the Q/K neurons"},
    {"model.attention.rounding", T_ENUM, 0, OFF(model.attention.rounding), 0, "round",
     rounding_names, 0, 0, "bsa: Shiftmax normaliser r = round or ceil of log2(row sum)"},
    {"model.attention.s", T_INT, F_GE, OFF(model.attention.low_rank), 0, "20", NULL, 1, 0,
     "primal: rank s of the primal representation"},
    {"model.attention.rank_multi", T_INT, F_GE, OFF(model.attention.rank_multi), 0, "10", NULL,
     1, 0, "primal: sampled tokens M = min(N, s * rank_multi)"},
    {"model.attention.eta", T_FLOAT, F_GE, OFF(model.attention.eta), 0, "0.05", NULL, 0, 0,
     "primal: weight of the KSVD regularisation added to the loss"},

    {"train.epochs", T_INT, F_GE, OFF(train.epochs), 0, "0", NULL, 0, 0,
     "training epochs; 0 = evaluate only"},
    {"train.batch_size", T_INT, F_GE, OFF(train.batch_size), 0, "64", NULL, 1, 0,
     "samples per optimiser step"},
    {"train.lr", T_FLOAT, F_GE, OFF(train.lr), 0, "0.001", NULL, 0, 0, "peak AdamW learning rate"},
    {"train.weight_decay", T_FLOAT, F_GE, OFF(train.weight_decay), 0, "0.01", NULL, 0, 0,
     "AdamW weight decay"},
    {"train.warmup_epochs", T_FLOAT, F_GE, OFF(train.warmup_epochs), 0, "0.1", NULL, 0, 0,
     "epochs (may be fractional) of linear warmup before the cosine schedule"},
    {"train.label_smoothing", T_FLOAT, F_MIN | F_MAX | F_MAX_EXCL, OFF(train.label_smoothing),
     0, "0.1", NULL, 0, 1, "label smoothing of the cross-entropy"},
    {"train.grad_clip", T_FLOAT, F_GE, OFF(train.grad_clip), 0, "1.0", NULL, 0, 0,
     "global gradient-norm clip; 0 = off"},
    {"train.val_fraction", T_FLOAT, F_MIN | F_MAX | F_MAX_EXCL, OFF(train.val_fraction), 0,
     "0.1", NULL, 0, 1, "fraction of the training split held out for validation"},
    {"train.resume", T_STRING, F_NULL, OFF(train.resume), 0, "null", NULL, 0, 0,
     "checkpoint to resume training from; null = start fresh"},

    {"record.samples", T_INT64, F_GE, OFF(record.samples), 0, "16", NULL, 0, 0,
     "record spikes of the first this-many evaluated samples"},
    {"record.membrane", T_BOOL, 0, OFF(record.membrane), 0, "false", NULL, 0, 0,
     "also record membrane traces"},

    {"energy.preset", T_ENUM, F_AS_STRING, OFF(energy.preset), 0, "horowitz45nm", preset_names,
     0, 0, "cost table that fills every energy value left null"},
    {"energy.e_mac_pj", T_DOUBLE, F_NULL | F_GE, OFF(energy.e_mac_pj), 0, "null", NULL, 0, 0,
     "pJ per multiply-accumulate"},
    {"energy.e_ac_pj", T_DOUBLE, F_NULL | F_GE, OFF(energy.e_ac_pj), 0, "null", NULL, 0, 0,
     "pJ per accumulate (spike-driven add)"},
    {"energy.e_int_add_pj", T_DOUBLE, F_NULL | F_GE, OFF(energy.e_int_add_pj), 0, "null", NULL,
     0, 0, "pJ per integer add"},
    {"energy.e_shift_pj", T_DOUBLE, F_NULL | F_GE, OFF(energy.e_shift_pj), 0, "null", NULL, 0,
     0, "pJ per shift"},
    {"energy.e_cmp_pj", T_DOUBLE, F_NULL | F_GE, OFF(energy.e_cmp_pj), 0, "null", NULL, 0, 0,
     "pJ per comparison"},
    {"energy.e_exp_pj", T_DOUBLE, F_NULL | F_GE, OFF(energy.e_exp_pj), 0, "null", NULL, 0, 0,
     "pJ per exponential"},
    {"energy.e_div_pj", T_DOUBLE, F_NULL | F_GE, OFF(energy.e_div_pj), 0, "null", NULL, 0, 0,
     "pJ per division"},
    {"energy.e_neuron_pj", T_DOUBLE, F_NULL | F_GE, OFF(energy.e_neuron_pj), 0, "null", NULL, 0,
     0, "pJ per neuron update"},
    {"energy.weight_bits", T_DOUBLE, F_NULL | F_GE, OFF(energy.weight_bits), 0, "null", NULL, 0,
     0, "bits per stored weight (memory-aware energy, footprint)"},
    {"energy.membrane_bits", T_DOUBLE, F_NULL | F_GE, OFF(energy.membrane_bits), 0, "null", NULL,
     0, 0, "bits per membrane potential (memory-aware energy)"},
    {"energy.activation_bits", T_DOUBLE, F_NULL | F_GE, OFF(energy.activation_bits), 0, "null",
     NULL, 0, 0, "bits per non-spike activation and attention-map entry (memory-aware energy)"},
    {"energy.memory_level", T_ENUM, F_AS_STRING, OFF(energy.memory_level), 0, "sram8k",
     memory_level_names, 0, 0, "memory the memory-aware energy reads and writes"},
    {"energy.read_pj_per_bit", T_DOUBLE, F_NULL | F_GE, OFF(energy.read_pj_per_bit), 0, "null",
     NULL, 0, 0, "pJ per bit read"},
    {"energy.write_pj_per_bit", T_DOUBLE, F_NULL | F_GE, OFF(energy.write_pj_per_bit), 0, "null",
     NULL, 0, 0, "pJ per bit written"},

    {"output.path", T_STRING, F_NULL, OFF(output.path), 0, "null", NULL, 0, 0,
     "HDF5 output file; null = runs/<name>.h5"},
    {"output.compression", T_INT, F_MIN | F_MAX, OFF(output.compression), 0, "4", NULL, 0, 9,
     "gzip level of the HDF5 datasets"},
};

#define N_KEYS ((int)(sizeof keys / sizeof keys[0]))

/* Energy presets, in the order of energy_offs (sources in docs/config.md): pJ per op, then
 * bits per weight, membrane and activation. Row i belongs to preset_names[i]. */
enum { N_PRESET_COLS = 11 };
static const size_t energy_offs[N_PRESET_COLS] = {
    OFF(energy.e_mac_pj),    OFF(energy.e_ac_pj),       OFF(energy.e_int_add_pj),
    OFF(energy.e_shift_pj),  OFF(energy.e_cmp_pj),      OFF(energy.e_exp_pj),
    OFF(energy.e_div_pj),    OFF(energy.e_neuron_pj),   OFF(energy.weight_bits),
    OFF(energy.membrane_bits), OFF(energy.activation_bits),
};
static const double energy_presets[3][N_PRESET_COLS] = {
    /*  mac   ac    int_add shift  cmp   exp    div    neuron  w   v   act */
    {4.6, 0.9, 0.1, 0.13, 0.1, 26.27, 26.27, 3.6, 32, 32, 32},     /* horowitz45nm (fp32) */
    {1.5, 0.4, 0.1, 0.13, 0.1, 7.81, 7.81, 1.6, 16, 16, 16},       /* fp16 */
    {0.23, 0.03, 0.03, 0.024, 0.03, 1.42, 1.42, 0.12, 8, 8, 8},    /* int8 */
};

_Static_assert(sizeof energy_presets / sizeof energy_presets[0] ==
                   sizeof preset_names / sizeof preset_names[0] - 1,
               "one energy row per preset name");

/* pJ per bit read and written, per memory level: Horowitz's 64-bit access energies / 64
 * (8 KB SRAM 10 pJ, 32 KB 20 pJ, 1 MB 100 pJ, DRAM 1.3-2.6 nJ: the low end). Horowitz gives
 * reads only; a write is costed as a read (docs/config.md). */
static const double memory_level_pj_per_bit[4] = {10.0 / 64, 20.0 / 64, 100.0 / 64, 1300.0 / 64};

_Static_assert(sizeof memory_level_pj_per_bit / sizeof memory_level_pj_per_bit[0] ==
                   sizeof memory_level_names / sizeof memory_level_names[0] - 1,
               "one pJ-per-bit value per memory level");

int snn_config_key_count(void) { return N_KEYS; }

const char *snn_config_key_path(int i) { return i >= 0 && i < N_KEYS ? keys[i].path : NULL; }

const char *snn_config_key_default(int i) { return i >= 0 && i < N_KEYS ? keys[i].def : NULL; }

const char *snn_config_key_doc(int i) { return i >= 0 && i < N_KEYS ? keys[i].doc : NULL; }

const char *snn_attn_kind_name(snn_attn_kind k) {
    return (unsigned)k < sizeof attn_names / sizeof *attn_names - 1 ? attn_names[k] : "?";
}

const char *snn_neuron_kind_name(snn_neuron_kind k) {
    return (unsigned)k < 3 ? neuron_names[k] : "?";
}

/* ---------------------------------------------------------------------------------------- */
/* Setting one key from one YAML value                                                       */
/* ---------------------------------------------------------------------------------------- */

/* A YAML value reduced to what the setters need. Scalars are NUL-terminated (libyaml does
 * that) but may hold an embedded NUL, hence len. */
typedef enum { V_SCALAR, V_MAPPING, V_SEQUENCE } value_kind;
typedef struct value {
    value_kind kind;
    const char *s;
    size_t len;
    bool plain; /* only plain scalars can be null: name: "null" is the string null */
} value;

static value scalar_value(const char *s, bool plain) {
    return (value){V_SCALAR, s, strlen(s), plain};
}

static value node_value(const yaml_node_t *n) {
    switch (n->type) {
    case YAML_MAPPING_NODE: return (value){V_MAPPING, NULL, 0, false};
    case YAML_SEQUENCE_NODE: return (value){V_SEQUENCE, NULL, 0, false};
    default:
        return (value){V_SCALAR, (const char *)n->data.scalar.value, n->data.scalar.length,
                       n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE};
    }
}

static bool is_null(value v) {
    if (v.kind != V_SCALAR || !v.plain) return false;
    return v.len == 0 || strcmp(v.s, "~") == 0 || strcmp(v.s, "null") == 0 ||
           strcmp(v.s, "Null") == 0 || strcmp(v.s, "NULL") == 0;
}

static bool text_is(value v, const char *word) {
    return v.kind == V_SCALAR && v.len == strlen(word) && memcmp(v.s, word, v.len) == 0;
}

/* Text as diagnostics show it: one line (control characters as '?'), at most 40 bytes with
 * "..." after a cut, which never splits a UTF-8 sequence. */
static void excerpt(const char *s, size_t len, char *buf, size_t n) {
    enum { MAXSHOW = 40 };
    len = strnlen(s, len);
    size_t shown = len;
    if (shown > MAXSHOW) {
        shown = MAXSHOW;
        while (shown > 0 && ((unsigned char)s[shown] & 0xC0) == 0x80) shown--;
    }
    char tmp[MAXSHOW + 1];
    for (size_t i = 0; i < shown; i++) tmp[i] = (unsigned char)s[i] < 0x20 ? '?' : s[i];
    tmp[shown] = '\0';
    snprintf(buf, n, "%s%s", tmp, shown < len ? "..." : "");
}

/* Writes the value as type errors quote it: 'text', a mapping, a sequence, an empty value. */
static void describe(value v, char *buf, size_t n) {
    if (v.kind == V_MAPPING) {
        snprintf(buf, n, "a mapping");
    } else if (v.kind == V_SEQUENCE) {
        snprintf(buf, n, "a sequence");
    } else if (v.len == 0 && v.plain) {
        snprintf(buf, n, "an empty value");
    } else {
        char text[48]; /* 40 bytes, "..." and the NUL */
        excerpt(v.s, v.len, text, sizeof text);
        snprintf(buf, n, "'%s'", text);
    }
}

static bool fail(char *err, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool fail(char *err, size_t n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
    return false;
}

/* "an integer", "one of bsa, ssa", ...: what a key accepts, for type errors. */
static void expected(const key_spec *k, char *buf, size_t n) {
    bool nul = k->flags & F_NULL;
    switch (k->type) {
    case T_INT:
    case T_INT64:
    case T_UINT64: snprintf(buf, n, "an integer"); break;
    case T_FLOAT:
    case T_DOUBLE: snprintf(buf, n, nul ? "a number or null" : "a number"); break;
    case T_BOOL: snprintf(buf, n, "true or false"); break;
    case T_STRING: snprintf(buf, n, nul ? "a string or null" : "a string"); break;
    case T_AUTO: snprintf(buf, n, "a number or auto"); break;
    case T_VRESET: snprintf(buf, n, "a number or null"); break;
    case T_ENUM: {
        size_t used = (size_t)snprintf(buf, n, "one of ");
        for (int i = 0; k->names[i] && used < n; i++)
            used += (size_t)snprintf(buf + used, n - used, "%s%s", i ? ", " : "", k->names[i]);
        break;
    }
    }
}

static bool type_error(const key_spec *k, value v, char *err, size_t n) {
    char want[96], got[64];
    expected(k, want, sizeof want);
    describe(v, got, sizeof got);
    return fail(err, n, "%s: expected %s, got %s", k->path, want, got);
}

typedef enum { NUM_OK, NUM_BAD, NUM_OVER } num_status;

/* Decimal YAML integer: [+-]?[0-9]+. */
static num_status parse_i64(value v, int64_t *out) {
    const char *s = v.s;
    size_t i = (s[0] == '+' || s[0] == '-') ? 1 : 0;
    if (strlen(s) != v.len || v.len == i) return NUM_BAD;
    for (size_t j = i; j < v.len; j++)
        if (!isdigit((unsigned char)s[j])) return NUM_BAD;
    errno = 0;
    long long x = strtoll(s, NULL, 10);
    if (errno == ERANGE) return NUM_OVER;
    *out = (int64_t)x;
    return NUM_OK;
}

/* Decimal or exponent notation; YAML's .inf/.nan and hex floats are refused. */
static num_status parse_double(value v, double *out) {
    bool digit = false;
    if (strlen(v.s) != v.len || v.len == 0) return NUM_BAD;
    for (size_t j = 0; j < v.len; j++) {
        char c = v.s[j];
        if (isdigit((unsigned char)c)) digit = true;
        else if (!strchr("+-.eE", c)) return NUM_BAD;
    }
    if (!digit) return NUM_BAD;
    char *end;
    errno = 0;
    double x = strtod(v.s, &end);
    if (end != v.s + v.len) return NUM_BAD;
    if (!isfinite(x)) return NUM_OVER; /* underflow to 0 or a denormal is accepted */
    *out = x;
    return NUM_OK;
}

static const char *cmp_word(bool excl, bool lower) {
    return lower ? (excl ? ">" : ">=") : (excl ? "<" : "<=");
}

/* Range check from the table bounds; text is the value as written (quoted in the message). */
static bool check_range(const key_spec *k, double x, const char *text, char *err, size_t n) {
    bool has_lo = k->flags & F_MIN, has_hi = k->flags & F_MAX;
    bool lo_ex = k->flags & F_MIN_EXCL, hi_ex = k->flags & F_MAX_EXCL;
    bool lo_ok = !has_lo || (lo_ex ? x > k->min : x >= k->min);
    bool hi_ok = !has_hi || (hi_ex ? x < k->max : x <= k->max);
    if (lo_ok && hi_ok) return true;
    if (has_lo && has_hi && !lo_ex && !hi_ex)
        return fail(err, n, "%s (%s) must be in %g..%g", k->path, text, k->min, k->max);
    if (has_lo && has_hi)
        return fail(err, n, "%s (%s) must be %s %g and %s %g", k->path, text,
                    cmp_word(lo_ex, true), k->min, cmp_word(hi_ex, false), k->max);
    if (!lo_ok)
        return fail(err, n, "%s (%s) must be %s %g", k->path, text, cmp_word(lo_ex, true), k->min);
    return fail(err, n, "%s (%s) must be %s %g", k->path, text, cmp_word(hi_ex, false), k->max);
}

/* Parses a float key's text; the range is checked on the stored (float-rounded) value. */
static bool get_float(const key_spec *k, value v, float *out, char *err, size_t n) {
    double x;
    num_status st = parse_double(v, &x);
    if (st == NUM_BAD) return type_error(k, v, err, n);
    if (st == NUM_OVER || fabs(x) > FLT_MAX)
        return fail(err, n, "%s (%s) is out of range for a 32-bit float", k->path, v.s);
    *out = (float)x;
    return check_range(k, (double)*out, v.s, err, n);
}

static char *xstrndup(const char *s, size_t len) {
    char *p = snn_xmalloc(len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

static void set_string(char **field, char *s) {
    free(*field);
    *field = s;
}

/* Applies one value to one key. On failure writes the diagnostic text (without position) to
 * err and leaves the field unchanged. */
static bool set_value(snn_config *cfg, const key_spec *k, value v, char *err, size_t n) {
    char *field = (char *)cfg + k->off;
    if (v.kind != V_SCALAR || (is_null(v) && !(k->flags & F_NULL) && k->type != T_VRESET))
        return type_error(k, v, err, n);
    switch (k->type) {
    case T_INT:
    case T_INT64: {
        int64_t x = 0;
        num_status st = parse_i64(v, &x);
        if (st == NUM_BAD) return type_error(k, v, err, n);
        bool is32 = k->type == T_INT;
        if (st == NUM_OVER || (is32 && (x < INT_MIN || x > INT_MAX)))
            return fail(err, n, "%s (%s) is out of range for a %s integer", k->path, v.s,
                        is32 ? "32-bit" : "64-bit");
        if (!check_range(k, (double)x, v.s, err, n)) return false;
        if (is32) *(int *)field = (int)x;
        else *(int64_t *)field = x;
        return true;
    }
    case T_UINT64: {
        bool neg = v.s[0] == '-';
        size_t i = (neg || v.s[0] == '+') ? 1 : 0;
        bool digits = strlen(v.s) == v.len && v.len > i;
        for (size_t j = i; j < v.len && digits; j++) digits = isdigit((unsigned char)v.s[j]);
        if (!digits) return type_error(k, v, err, n);
        if (neg && strspn(v.s + 1, "0") != v.len - 1) /* "-0" is still 0 */
            return fail(err, n, "%s (%s) must be >= 0", k->path, v.s);
        errno = 0;
        unsigned long long x = strtoull(v.s + i, NULL, 10);
        if (errno == ERANGE)
            return fail(err, n, "%s (%s) is out of range for a 64-bit unsigned integer", k->path,
                        v.s);
        *(uint64_t *)field = (uint64_t)x;
        return true;
    }
    case T_FLOAT: return get_float(k, v, (float *)field, err, n);
    case T_AUTO:
        if (text_is(v, "auto")) {
            *(float *)field = 0.0f;
            return true;
        }
        return get_float(k, v, (float *)field, err, n);
    case T_VRESET: {
        bool *soft = (bool *)((char *)cfg + k->aux);
        if (is_null(v)) {
            *soft = true;
            *(float *)field = 0.0f; /* unused under a soft reset */
            return true;
        }
        if (!get_float(k, v, (float *)field, err, n)) return false;
        *soft = false;
        return true;
    }
    case T_DOUBLE: {
        if (is_null(v)) {
            *(double *)field = NAN;
            return true;
        }
        double x;
        num_status st = parse_double(v, &x);
        if (st == NUM_BAD) return type_error(k, v, err, n);
        if (st == NUM_OVER) return fail(err, n, "%s (%s) is out of range", k->path, v.s);
        if (!check_range(k, x, v.s, err, n)) return false;
        *(double *)field = x;
        return true;
    }
    case T_BOOL: {
        /* YAML 1.1 booleans, the spellings users bring from PyYAML */
        static const char *const yes[] = {"true", "True", "TRUE", "yes", "Yes", "YES",
                                          "on",   "On",   "ON",   NULL};
        static const char *const no[] = {"false", "False", "FALSE", "no", "No", "NO",
                                         "off",   "Off",   "OFF",   NULL};
        for (int i = 0; yes[i]; i++) {
            if (text_is(v, yes[i]) || text_is(v, no[i])) {
                *(bool *)field = text_is(v, yes[i]);
                return true;
            }
        }
        return type_error(k, v, err, n);
    }
    case T_STRING:
        if (is_null(v)) {
            set_string((char **)field, NULL);
            return true;
        }
        if (strlen(v.s) != v.len)
            return fail(err, n, "%s: strings cannot contain NUL characters", k->path);
        set_string((char **)field, xstrndup(v.s, v.len));
        return true;
    case T_ENUM:
        for (int i = 0; k->names[i]; i++) {
            if (!text_is(v, k->names[i])) continue;
            if (k->flags & F_AS_STRING) set_string((char **)field, snn_xstrdup(k->names[i]));
            else if (k->flags & F_AS_BOOL) *(bool *)field = i != 0;
            else *(int *)field = i;
            return true;
        }
        return type_error(k, v, err, n);
    }
    return false;
}

/* ---------------------------------------------------------------------------------------- */
/* Defaults, presets, free                                                                   */
/* ---------------------------------------------------------------------------------------- */

static void resolve_energy(snn_config *cfg) {
    int p = 0;
    for (int i = 0; preset_names[i]; i++)
        if (cfg->energy.preset && strcmp(cfg->energy.preset, preset_names[i]) == 0) p = i;
    for (int j = 0; j < N_PRESET_COLS; j++) {
        double *e = (double *)((char *)cfg + energy_offs[j]);
        if (isnan(*e)) *e = energy_presets[p][j];
    }
    int ml = 0;
    for (int i = 0; memory_level_names[i]; i++)
        if (cfg->energy.memory_level && strcmp(cfg->energy.memory_level, memory_level_names[i]) == 0)
            ml = i;
    if (isnan(cfg->energy.read_pj_per_bit)) cfg->energy.read_pj_per_bit = memory_level_pj_per_bit[ml];
    if (isnan(cfg->energy.write_pj_per_bit)) cfg->energy.write_pj_per_bit = memory_level_pj_per_bit[ml];
}

/* The table's defaults with the energy values still NaN ("from the preset"): loading resolves
 * them only after the file and the overrides have chosen the preset. */
static void defaults_unresolved(snn_config *cfg) {
    memset(cfg, 0, sizeof *cfg); /* neuron.bipolar and any non-key field stay 0/false */
    for (int i = 0; i < N_KEYS; i++) {
        char err[256];
        bool ok = set_value(cfg, &keys[i], scalar_value(keys[i].def, true), err, sizeof err);
        if (!ok) snn_abort(__FILE__, __LINE__, "bad default in the schema: %s", err);
    }
}

void snn_config_defaults(snn_config *cfg) {
    defaults_unresolved(cfg);
    resolve_energy(cfg);
}

static bool stores_string(const key_spec *k) {
    return k->type == T_STRING || (k->type == T_ENUM && (k->flags & F_AS_STRING));
}

void snn_config_free(snn_config *cfg) {
    if (!cfg) return;
    for (int i = 0; i < N_KEYS; i++) {
        if (!stores_string(&keys[i])) continue;
        char **s = (char **)((char *)cfg + keys[i].off);
        free(*s);
        *s = NULL;
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Schema lookups and did-you-mean                                                           */
/* ---------------------------------------------------------------------------------------- */

static int find_key(const char *path) {
    for (int i = 0; i < N_KEYS; i++)
        if (strcmp(keys[i].path, path) == 0) return i;
    return -1;
}

/* A section is a proper dotted prefix of some key path ("" is the top level). */
static bool is_section(const char *path) {
    size_t n = strlen(path);
    if (n == 0) return true;
    for (int i = 0; i < N_KEYS; i++)
        if (strncmp(keys[i].path, path, n) == 0 && keys[i].path[n] == '.') return true;
    return false;
}

/* Optimal-string-alignment distance (a transposition costs 1), case-insensitive. */
static int edit_distance(const char *a, size_t la, const char *b, size_t lb) {
    enum { MAXLEN = 64 };
    if (la > MAXLEN || lb > MAXLEN) return INT_MAX;
    int d[MAXLEN + 1][MAXLEN + 1];
    for (size_t i = 0; i <= la; i++) d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++) d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            int ca = tolower((unsigned char)a[i - 1]), cb = tolower((unsigned char)b[j - 1]);
            int best = d[i - 1][j - 1] + (ca != cb);
            if (d[i - 1][j] + 1 < best) best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) &&
                tolower((unsigned char)a[i - 2]) == cb && d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[la][lb];
}

/* How close a typo is to a candidate: the edit distance when <= 2, else 3 + length difference
 * when one is a prefix of the other (at least 3 characters shared), else -1 (not close). */
static int closeness(const char *name, const char *cand, size_t cand_len) {
    size_t nl = strlen(name);
    int d = edit_distance(name, nl, cand, cand_len);
    if (d <= 2) return d;
    size_t shorter = nl < cand_len ? nl : cand_len;
    if (shorter >= 3 && strncasecmp(name, cand, shorter) == 0)
        return 3 + (int)(nl > cand_len ? nl - cand_len : cand_len - nl);
    return -1;
}

/* Suggests a replacement for the unknown key `name` inside section `parent` ("" = top level):
 * the closest sibling (written as a sibling name, or as a full path when full_path), else a key
 * or section elsewhere whose last component is exactly name (always a full path). Writes into
 * buf and returns it, or returns NULL when nothing is close. */
static const char *suggest(const char *parent, const char *name, bool full_path, char *buf,
                           size_t n) {
    size_t pl = strlen(parent);
    int best = INT_MAX;
    const char *elsewhere = NULL;
    size_t elsewhere_len = 0;
    for (int i = 0; i < N_KEYS; i++) {
        const char *p = keys[i].path;
        for (size_t s = 0;;) { /* each component p[s..e) */
            size_t e = s;
            while (p[e] && p[e] != '.') e++;
            bool sibling = (pl == 0) ? s == 0 : (s == pl + 1 && strncmp(p, parent, pl) == 0);
            if (sibling) {
                int c = closeness(name, p + s, e - s);
                if (c >= 0 && c < best) {
                    best = c;
                    if (full_path) snprintf(buf, n, "%.*s", (int)e, p);
                    else snprintf(buf, n, "%.*s", (int)(e - s), p + s);
                }
            } else if (!elsewhere && strlen(name) == e - s && strncmp(name, p + s, e - s) == 0) {
                elsewhere = p;
                elsewhere_len = e;
            }
            if (!p[e]) break;
            s = e + 1;
        }
    }
    if (best != INT_MAX) return buf;
    if (elsewhere) {
        snprintf(buf, n, "%.*s", (int)elsewhere_len, elsewhere);
        return buf;
    }
    return NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* Diagnostics                                                                               */
/* ---------------------------------------------------------------------------------------- */

/* Where a value came from: the file (src -1, 1-based line/col) or --set number src. */
typedef struct origin {
    int src;
    int line, col;
} origin;

typedef struct diag_msg {
    origin at;
    int seq;
    char *msg;
} diag_msg;

typedef struct load_ctx {
    snn_config *cfg;
    yaml_document_t *doc; /* document being applied (file or one --set value) */
    int cur_set;          /* -1 while applying the file, else the --set index */
    diag_msg *diags;
    int n_diags, cap_diags;
    bool set_by[N_KEYS];  /* key was assigned explicitly (file or --set) */
    origin where[N_KEYS]; /* ... last there */
    bool bad[N_KEYS];     /* ... and that assignment failed its own checks */
} load_ctx;

static void diag_add(load_ctx *c, origin at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void diag_add(load_ctx *c, origin at, const char *fmt, ...) {
    if (c->n_diags == c->cap_diags) {
        c->cap_diags = c->cap_diags ? 2 * c->cap_diags : 16;
        c->diags = snn_xrealloc(c->diags, (size_t)c->cap_diags * sizeof *c->diags);
    }
    va_list ap;
    va_start(ap, fmt);
    char buf[512];
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    c->diags[c->n_diags] = (diag_msg){at, c->n_diags, snn_xstrdup(buf)};
    c->n_diags++;
}

static origin at_node(const load_ctx *c, const yaml_node_t *n) {
    if (c->cur_set >= 0 || !n) return (origin){c->cur_set, 0, 0};
    return (origin){-1, (int)n->start_mark.line + 1, (int)n->start_mark.column + 1};
}

static int diag_cmp(const void *pa, const void *pb) {
    const diag_msg *a = pa, *b = pb;
    if (a->at.src != b->at.src) return a->at.src < b->at.src ? -1 : 1;
    if (a->at.line != b->at.line) return a->at.line < b->at.line ? -1 : 1;
    if (a->at.col != b->at.col) return a->at.col < b->at.col ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* "problem context" from a failed libyaml parser, with its 1-based position. */
static void yaml_problem(const yaml_parser_t *p, const char *text, size_t len, origin *at,
                         char *buf, size_t n) {
    if (p->error == YAML_READER_ERROR) {
        /* reader errors carry a byte offset, not a mark */
        int line = 1, col = 1;
        for (size_t i = 0; i < p->problem_offset && i < len; i++) {
            if (text[i] == '\n') line++, col = 1;
            else col++;
        }
        at->line = line, at->col = col;
    } else {
        at->line = (int)p->problem_mark.line + 1;
        at->col = (int)p->problem_mark.column + 1;
    }
    const char *problem = p->problem ? p->problem : "invalid YAML";
    if (p->context) snprintf(buf, n, "%s %s", problem, p->context);
    else snprintf(buf, n, "%s", problem);
}

/* ---------------------------------------------------------------------------------------- */
/* Applying a document                                                                       */
/* ---------------------------------------------------------------------------------------- */

static void apply_node(load_ctx *c, const char *path, const yaml_node_t *node);

static void apply_leaf(load_ctx *c, int idx, const yaml_node_t *node, value v) {
    char err[512];
    origin at = at_node(c, node);
    bool ok = set_value(c->cfg, &keys[idx], v, err, sizeof err);
    c->set_by[idx] = true;
    c->where[idx] = at;
    c->bad[idx] = !ok;
    if (!ok) diag_add(c, at, "%s", err);
}

static void apply_mapping(load_ctx *c, const char *section, const yaml_node_t *map) {
    const yaml_node_pair_t *start = map->data.mapping.pairs.start;
    const yaml_node_pair_t *top = map->data.mapping.pairs.top;
    for (const yaml_node_pair_t *pair = start; pair < top; pair++) {
        const yaml_node_t *kn = yaml_document_get_node(c->doc, pair->key);
        const yaml_node_t *vn = yaml_document_get_node(c->doc, pair->value);
        if (kn->type != YAML_SCALAR_NODE) {
            diag_add(c, at_node(c, kn), "expected a key name, got a %s",
                     kn->type == YAML_MAPPING_NODE ? "mapping" : "sequence");
            continue;
        }
        const char *name = (const char *)kn->data.scalar.value;
        size_t len = kn->data.scalar.length;
        char shown[64]; /* the key as diagnostics print it */
        excerpt(name, len, shown, sizeof shown);
        bool dup = false;
        for (const yaml_node_pair_t *q = start; q < pair && !dup; q++) {
            const yaml_node_t *qn = yaml_document_get_node(c->doc, q->key);
            dup = qn->type == YAML_SCALAR_NODE && qn->data.scalar.length == len &&
                  memcmp(qn->data.scalar.value, name, len) == 0;
        }
        if (dup) { /* the first occurrence stays in effect */
            if (*section) diag_add(c, at_node(c, kn), "duplicate key '%s' in '%s'", shown, section);
            else diag_add(c, at_node(c, kn), "duplicate key '%s'", shown);
            continue;
        }
        char *full = *section ? snn_xasprintf("%s.%s", section, name) : snn_xstrdup(name);
        bool simple = strlen(name) == len && !memchr(name, '.', len);
        if (simple && (find_key(full) >= 0 || is_section(full))) {
            apply_node(c, full, vn);
        } else if (!simple && strlen(name) == len && (find_key(full) >= 0 || is_section(full))) {
            /* "model.dim: 96" in a file: nesting is the one spelling, dotted paths are --set's */
            diag_add(c, at_node(c, kn), "unknown key '%s' (nest it: dotted paths are for --set)",
                     shown);
        } else {
            char hint[128];
            const char *s = suggest(section, name, false, hint, sizeof hint);
            char tail[160] = "";
            if (s) snprintf(tail, sizeof tail, " (did you mean '%s'?)", s);
            if (*section)
                diag_add(c, at_node(c, kn), "unknown key '%s' in '%s'%s", shown, section, tail);
            else diag_add(c, at_node(c, kn), "unknown key '%s'%s", shown, tail);
        }
        free(full);
    }
}

/* Applies node to the key or section at path (which must exist). */
static void apply_node(load_ctx *c, const char *path, const yaml_node_t *node) {
    static const yaml_node_t empty = {.type = YAML_SCALAR_NODE,
                                      .data.scalar = {(yaml_char_t *)"", 0,
                                                      YAML_PLAIN_SCALAR_STYLE}};
    const yaml_node_t *n = node ? node : &empty; /* "--set x=" is an empty scalar */
    int idx = find_key(path);
    if (idx >= 0) {
        apply_leaf(c, idx, node, node_value(n));
        return;
    }
    value v = node_value(n);
    if (v.kind == V_MAPPING) {
        apply_mapping(c, path, n);
    } else if (!is_null(v)) { /* "model:" with nothing under it changes nothing */
        char got[64];
        describe(v, got, sizeof got);
        diag_add(c, at_node(c, node), "%s: expected a mapping, got %s", path, got);
    }
}

static void apply_set(load_ctx *c, int i, const char *set) {
    c->cur_set = i;
    origin at = {i, 0, 0};
    const char *eq = strchr(set, '=');
    const char *k0 = set, *k1 = eq ? eq : set;
    while (k0 < k1 && isspace((unsigned char)*k0)) k0++;
    while (k1 > k0 && isspace((unsigned char)k1[-1])) k1--;
    if (!eq || k0 == k1) {
        diag_add(c, at, "expected key.path=value");
        return;
    }
    char *path = xstrndup(k0, (size_t)(k1 - k0));
    const char *text = eq + 1;
    yaml_parser_t parser;
    yaml_document_t doc;
    SNN_ASSERT(yaml_parser_initialize(&parser));
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));
    if (!yaml_parser_load(&parser, &doc)) {
        char msg[256];
        origin in_value; /* a position inside the value is not worth printing */
        yaml_problem(&parser, text, strlen(text), &in_value, msg, sizeof msg);
        diag_add(c, at, "cannot parse the value: %s", msg);
    } else {
        c->doc = &doc;
        if (find_key(path) >= 0 || (is_section(path) && *path)) {
            apply_node(c, path, yaml_document_get_root_node(&doc));
        } else {
            /* suggest among the siblings when the parent exists, else over whole paths */
            char hint[128];
            const char *s = NULL;
            char *dot = strrchr(path, '.');
            char *parent = xstrndup(path, dot ? (size_t)(dot - path) : 0);
            if (is_section(parent))
                s = suggest(parent, dot ? dot + 1 : path, true, hint, sizeof hint);
            free(parent);
            if (!s) {
                int best = 3;
                for (int j = 0; j < N_KEYS; j++) {
                    int d = edit_distance(path, strlen(path), keys[j].path, strlen(keys[j].path));
                    if (d < best) best = d, s = keys[j].path;
                }
            }
            char shown[64];
            excerpt(path, strlen(path), shown, sizeof shown);
            if (s) diag_add(c, at, "unknown key '%s' (did you mean '%s'?)", shown, s);
            else diag_add(c, at, "unknown key '%s'", shown);
        }
        yaml_document_delete(&doc);
        c->doc = NULL;
    }
    yaml_parser_delete(&parser);
    free(path);
}

/* ---------------------------------------------------------------------------------------- */
/* Cross-field rules                                                                         */
/* ---------------------------------------------------------------------------------------- */

static int key_index(const char *path) {
    int i = find_key(path);
    SNN_ASSERT(i >= 0);
    return i;
}

/* Rules involving keys a and b run only when both passed their own checks. */
static bool both_ok(const load_ctx *c, int a, int b) { return !c->bad[a] && !c->bad[b]; }

/* Position of a cross-field diagnostic: the key the user set last (a --set override beats the
 * file, a later override an earlier one: that is the value that broke the rule), else the first
 * key of the message, else the start of the file. */
static origin cross_at(const load_ctx *c, int a, int b) {
    if (c->set_by[a] && c->set_by[b]) return c->where[b].src > c->where[a].src ? c->where[b] : c->where[a];
    if (c->set_by[a]) return c->where[a];
    if (c->set_by[b]) return c->where[b];
    return (origin){-1, 1, 1};
}

static void check_cross(load_ctx *c) {
    const snn_config *cfg = c->cfg;
    int dim = key_index("model.dim"), heads = key_index("model.heads");
    int img = key_index("model.image_size"), patch = key_index("model.patch");
    int vr = key_index("model.neuron.v_reset"), vth = key_index("model.neuron.v_threshold");
    int scale = key_index("model.attention.scale"), kind = key_index("model.attention.kind");

    if (both_ok(c, dim, heads) && cfg->model.dim % cfg->model.heads != 0)
        diag_add(c, cross_at(c, dim, heads), "model.dim (%d) must be divisible by model.heads (%d)",
                 cfg->model.dim, cfg->model.heads);
    if (both_ok(c, img, patch) && cfg->model.image_size % cfg->model.patch != 0)
        diag_add(c, cross_at(c, img, patch),
                 "model.image_size (%d) must be divisible by model.patch (%d)",
                 cfg->model.image_size, cfg->model.patch);
    /* a hard reset at or above the threshold would fire again on the next step forever */
    if (both_ok(c, vr, vth) && !cfg->model.neuron.soft_reset &&
        !(cfg->model.neuron.v_reset < cfg->model.neuron.v_threshold))
        diag_add(c, cross_at(c, vr, vth),
                 "model.neuron.v_reset (%g) must be < model.neuron.v_threshold (%g) with a hard "
                 "reset",
                 (double)cfg->model.neuron.v_reset, (double)cfg->model.neuron.v_threshold);
    /* longseq: a sequence is a grid of 1x1 patches with one channel per symbol plus a marker */
    int src = key_index("data.source"), syms = key_index("data.seq_symbols");
    int chans = key_index("model.channels"), classes = key_index("model.classes");
    if (both_ok(c, src, patch) && cfg->data.source == SNN_DATA_LONGSEQ && cfg->model.patch != 1)
        diag_add(c, cross_at(c, patch, src), "model.patch (%d) must be 1 with data.source longseq "
                 "(one token per sequence position)", cfg->model.patch);
    if (both_ok(c, src, chans) && both_ok(c, syms, chans) && cfg->data.source == SNN_DATA_LONGSEQ &&
        cfg->model.channels != cfg->data.seq_symbols + 1)
        diag_add(c, cross_at(c, chans, syms), "model.channels (%d) must be data.seq_symbols + 1 (%d) "
                 "with data.source longseq", cfg->model.channels, cfg->data.seq_symbols + 1);
    if (both_ok(c, src, classes) && cfg->data.source == SNN_DATA_LONGSEQ && cfg->model.classes != 2)
        diag_add(c, cross_at(c, classes, src), "model.classes (%d) must be 2 with data.source "
                 "longseq (same or different)", cfg->model.classes);
    /* ANN baselines are the same graph evaluated once, without neurons (spec section 2) */
    int steps = key_index("model.timesteps"), resid = key_index("model.residual");
    if (both_ok(c, steps, kind) && snn_attn_is_ann(cfg->model.attention.kind) &&
        cfg->model.timesteps != 1)
        diag_add(c, cross_at(c, steps, kind),
                 "model.timesteps (%d) must be 1 when model.attention.kind is %s (an ANN model)",
                 cfg->model.timesteps, snn_attn_kind_name(cfg->model.attention.kind));
    if (both_ok(c, resid, kind) && snn_attn_is_ann(cfg->model.attention.kind) &&
        cfg->model.residual == SNN_RESIDUAL_SEW)
        diag_add(c, cross_at(c, resid, kind),
                 "model.residual sew needs spikes; model.attention.kind %s is an ANN model",
                 snn_attn_kind_name(cfg->model.attention.kind));
    /* Shiftmax scales scores by shifting, so s must be 2^-k */
    if (both_ok(c, scale, kind) && cfg->model.attention.kind == SNN_ATTN_BSA &&
        cfg->model.attention.scale != 0.0f) {
        int e;
        if (frexpf(cfg->model.attention.scale, &e) != 0.5f)
            diag_add(c, cross_at(c, scale, kind),
                     "model.attention.scale (%g) must be a power of two (2^-k) when "
                     "model.attention.kind is bsa",
                     (double)cfg->model.attention.scale);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Loading                                                                                   */
/* ---------------------------------------------------------------------------------------- */

static void apply_file(load_ctx *c, const char *text, size_t len, bool *syntax_error) {
    yaml_parser_t parser;
    yaml_document_t doc;
    SNN_ASSERT(yaml_parser_initialize(&parser));
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    char msg[256];
    origin at = {-1, 1, 1};
    if (!yaml_parser_load(&parser, &doc)) {
        yaml_problem(&parser, text, len, &at, msg, sizeof msg);
        diag_add(c, at, "%s", msg);
        *syntax_error = true;
        yaml_parser_delete(&parser);
        return;
    }
    c->doc = &doc;
    const yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root) {
        value v = node_value(root);
        if (v.kind == V_MAPPING) {
            apply_mapping(c, "", root);
        } else if (!is_null(v)) {
            char got[64];
            describe(v, got, sizeof got);
            diag_add(c, at_node(c, root), "the top level must be a mapping, got %s", got);
        }
        /* a second document would be silently ignored otherwise */
        yaml_document_t next;
        if (!yaml_parser_load(&parser, &next)) {
            yaml_problem(&parser, text, len, &at, msg, sizeof msg);
            diag_add(c, at, "%s", msg);
            *syntax_error = true;
        } else {
            if (yaml_document_get_root_node(&next))
                diag_add(c,
                         (origin){-1, (int)next.start_mark.line + 1,
                                  (int)next.start_mark.column + 1},
                         "expected a single YAML document");
            yaml_document_delete(&next);
        }
    }
    yaml_document_delete(&doc);
    c->doc = NULL;
    yaml_parser_delete(&parser);
}

static int load_text(snn_config *cfg, const char *text, size_t len, const char *name,
                     const char *const *sets, int n_sets, FILE *diag_out) {
    defaults_unresolved(cfg);
    load_ctx c = {.cfg = cfg, .cur_set = -1};
    bool syntax_error = false;
    apply_file(&c, text, len, &syntax_error);
    for (int i = 0; i < n_sets; i++) apply_set(&c, i, sets[i]);
    if (!syntax_error) check_cross(&c); /* the file was not applied: its rules would mislead */
    resolve_energy(cfg);

    if (c.n_diags > 1) qsort(c.diags, (size_t)c.n_diags, sizeof *c.diags, diag_cmp);
    for (int i = 0; i < c.n_diags; i++) {
        const diag_msg *d = &c.diags[i];
        if (diag_out && d->at.src < 0)
            fprintf(diag_out, "%s:%d:%d: error: %s\n", name, d->at.line, d->at.col, d->msg);
        else if (diag_out)
            fprintf(diag_out, "--set %s: error: %s\n", sets[d->at.src], d->msg);
        free(d->msg);
    }
    free(c.diags);
    return c.n_diags;
}

int snn_config_load_string(snn_config *cfg, const char *text, const char *display_name,
                           const char *const *sets, int n_sets, FILE *diag) {
    return load_text(cfg, text ? text : "", text ? strlen(text) : 0,
                     display_name ? display_name : "<string>", sets, n_sets, diag);
}

int snn_config_load_file(snn_config *cfg, const char *path, const char *const *sets, int n_sets,
                         FILE *diag) {
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int err = 0;
    if (!f) {
        err = errno;
    } else {
        for (;;) {
            if (len + 4096 > cap) {
                cap = cap ? 2 * cap : 8192;
                buf = snn_xrealloc(buf, cap);
            }
            size_t got = fread(buf + len, 1, cap - len, f);
            len += got;
            if (got == 0) break;
        }
        if (ferror(f)) err = errno ? errno : EIO;
        fclose(f);
    }
    if (err) {
        snn_config_defaults(cfg);
        if (diag) fprintf(diag, "%s: error: cannot read config: %s\n", path, strerror(err));
        free(buf);
        return 1;
    }
    int n = load_text(cfg, buf, len, path, sets, n_sets, diag);
    free(buf);
    return n;
}

/* ---------------------------------------------------------------------------------------- */
/* Emission                                                                                  */
/* ---------------------------------------------------------------------------------------- */

typedef struct strbuf {
    char *s;
    size_t len, cap;
} strbuf;

static void sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(strbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = snn_xvasprintf(fmt, ap);
    va_end(ap);
    const size_t n = strlen(s); /* YAML text: no NUL inside */
    if (b->len + n + 1 > b->cap) {
        b->cap = 2 * (b->len + n + 1) + 256;
        b->s = snn_xrealloc(b->s, b->cap);
    }
    memcpy(b->s + b->len, s, n + 1);
    b->len += n;
    free(s);
}

/* Shortest %g text that reads back to the same float/double, always with a '.' or exponent
 * ("2.0", "1.0e-05") so that YAML 1.1 readers such as PyYAML see a float too. */
static void fmt_real(char *buf, size_t n, double x, bool is_float) {
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, n, "%.*g", p, x);
        if (is_float ? strtof(buf, NULL) == (float)x : strtod(buf, NULL) == x) break;
    }
    if (!strchr(buf, '.')) {
        char tail[32] = "";
        char *e = strchr(buf, 'e');
        if (e) {
            snprintf(tail, sizeof tail, "%s", e);
            *e = '\0';
        }
        size_t l = strlen(buf);
        snprintf(buf + l, n - l, ".0%s", tail);
    }
}

/* Plain when unambiguous for any YAML reader, else double-quoted with escapes. */
static void emit_string(strbuf *b, const char *s) {
    static const char *const words[] = {"y", "n", "yes", "no", "true", "false", "on", "off",
                                        "null", "auto", NULL};
    bool plain = isalpha((unsigned char)s[0]) || s[0] == '/' || s[0] == '_';
    for (const char *p = s; *p && plain; p++)
        plain = isalnum((unsigned char)*p) || strchr("_./-+", *p);
    for (int i = 0; words[i] && plain; i++) plain = strcasecmp(s, words[i]) != 0;
    if (plain) {
        sb_printf(b, "%s", s);
        return;
    }
    sb_printf(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') sb_printf(b, "\\%c", *p);
        else if (*p == '\n') sb_printf(b, "\\n");
        else if (*p == '\t') sb_printf(b, "\\t");
        else if (*p < 0x20 || *p == 0x7F) sb_printf(b, "\\x%02X", *p);
        else if (*p == 0xC2 && p[1] >= 0x80 && p[1] <= 0x9F) /* C1 controls, U+0080..U+009F */
            sb_printf(b, "\\x%02X", *++p);
        else sb_printf(b, "%c", *p);
    }
    sb_printf(b, "\"");
}

static void emit_value(strbuf *b, const snn_config *cfg, const key_spec *k) {
    const char *field = (const char *)cfg + k->off;
    char num[64];
    switch (k->type) {
    case T_INT: sb_printf(b, "%d", *(const int *)field); break;
    case T_INT64: sb_printf(b, "%" PRId64, *(const int64_t *)field); break;
    case T_UINT64: sb_printf(b, "%" PRIu64, *(const uint64_t *)field); break;
    case T_BOOL: sb_printf(b, "%s", *(const bool *)field ? "true" : "false"); break;
    case T_AUTO:
    case T_FLOAT:
    case T_VRESET: {
        float x = *(const float *)field;
        if (k->type == T_AUTO && x == 0.0f) sb_printf(b, "auto");
        else if (k->type == T_VRESET && *(const bool *)((const char *)cfg + k->aux))
            sb_printf(b, "null");
        else fmt_real(num, sizeof num, x, true), sb_printf(b, "%s", num);
        break;
    }
    case T_DOUBLE: {
        double x = *(const double *)field;
        if (isnan(x)) sb_printf(b, "null");
        else fmt_real(num, sizeof num, x, false), sb_printf(b, "%s", num);
        break;
    }
    case T_STRING: {
        const char *s = *(char *const *)field;
        if (s) emit_string(b, s);
        else sb_printf(b, "null");
        break;
    }
    case T_ENUM:
        if (k->flags & F_AS_STRING) {
            const char *s = *(char *const *)field;
            if (s) emit_string(b, s);
            else sb_printf(b, "null");
        } else {
            int i = (k->flags & F_AS_BOOL) ? *(const bool *)field : *(const int *)field;
            int count = 0;
            while (k->names[count]) count++;
            SNN_ASSERT(i >= 0 && i < count);
            sb_printf(b, "%s", k->names[i]);
        }
        break;
    }
}

char *snn_config_to_yaml(const snn_config *cfg) {
    strbuf b = {0};
    const char *prev = ""; /* path of the previous key; its section is open */
    for (int i = 0; i < N_KEYS; i++) {
        const char *p = keys[i].path;
        /* components shared with the previous key's section stay open */
        size_t common = 0, depth = 0;
        for (size_t j = 0; p[j] && p[j] == prev[j]; j++)
            if (p[j] == '.') common = j + 1, depth++;
        for (size_t s = common;;) { /* open the remaining sections */
            const char *dot = strchr(p + s, '.');
            if (!dot) {
                sb_printf(&b, "%*s%s: ", (int)(2 * depth), "", p + s);
                break;
            }
            sb_printf(&b, "%*s%.*s:\n", (int)(2 * depth), "", (int)(dot - (p + s)), p + s);
            depth++;
            s = (size_t)(dot - p) + 1;
        }
        emit_value(&b, cfg, &keys[i]);
        sb_printf(&b, "\n");
        prev = p;
    }
    return b.s;
}
