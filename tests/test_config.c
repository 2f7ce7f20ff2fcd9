/* test_config.c: the YAML config loader (sim/config.c): defaults, every diagnostic kind with
 * its exact text, line and column, --set overrides, cross-field rules, energy presets, the
 * to_yaml round trip, and that docs/config.md documents every key of the schema. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <errno.h>
#include <glob.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sim/config.h"
#include "tests/testutil.h"

#define NAME "configs/x.yaml"

/* Loads text (as NAME) with the given overrides; returns the error count, and the diagnostics
 * printed (malloc'd) in *diag_text. */
static int load(snn_config *cfg, const char *text, const char *const *sets, int n_sets,
                char **diag_text) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    int n = snn_config_load_string(cfg, text, NAME, sets, n_sets, f);
    assert_int_equal(fclose(f), 0);
    *diag_text = buf;
    return n;
}

/* Asserts the exact diagnostics (one error per line) of loading text with sets. */
static void expect_diags(const char *text, const char *const *sets, int n_sets,
                         const char *want) {
    snn_config cfg;
    char *got;
    int n = load(&cfg, text, sets, n_sets, &got);
    assert_string_equal(got, want);
    assert_int_equal(n, snn_test_count_lines(want));
    free(got);
    snn_config_free(&cfg);
}

/* Loads text that must be valid (no diagnostics at all). */
static void load_ok(snn_config *cfg, const char *text, const char *const *sets, int n_sets) {
    char *got;
    int n = load(cfg, text, sets, n_sets, &got);
    assert_string_equal(got, "");
    assert_int_equal(n, 0);
    free(got);
}

#define NO_SETS NULL, 0
#define SETS(...)                                                                               \
    (const char *const[]){__VA_ARGS__},                                                         \
        (int)(sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *))

static void assert_str_or_null(const char *a, const char *b) {
    if (!a || !b) assert_ptr_equal(a, b);
    else assert_string_equal(a, b);
}

/* Field-by-field equality of two configs; floats compared bit for bit. */
static void assert_config_equal(const snn_config *a, const snn_config *b) {
#define EQ(f) assert_true(a->f == b->f)
#define FEQ(f) assert_memory_equal(&a->f, &b->f, sizeof a->f)
#define SEQ(f) assert_str_or_null(a->f, b->f)
    SEQ(name); EQ(seed);
    EQ(data.source); SEQ(data.path); SEQ(data.split); EQ(data.limit); EQ(data.train_limit);
    EQ(data.shuffle); EQ(data.encoding); EQ(data.synthetic_samples);
    EQ(model.image_size); EQ(model.channels); EQ(model.classes); EQ(model.patch);
    EQ(model.dim); EQ(model.heads); EQ(model.blocks); EQ(model.mlp_ratio);
    EQ(model.timesteps); EQ(model.residual); SEQ(model.weights); FEQ(model.init_std);
    EQ(model.neuron.kind); FEQ(model.neuron.tau); FEQ(model.neuron.v_threshold);
    FEQ(model.neuron.v_reset); EQ(model.neuron.soft_reset); EQ(model.neuron.decay_input);
    EQ(model.neuron.bipolar); EQ(model.neuron.surrogate); FEQ(model.neuron.alpha);
    EQ(model.neuron.detach_reset);
    EQ(model.attention.kind); FEQ(model.attention.scale); FEQ(model.attention.attn_threshold);
    FEQ(model.attention.qk_threshold); EQ(model.attention.qk_soft_reset);
    EQ(model.attention.rounding);
    EQ(train.epochs); EQ(train.batch_size); FEQ(train.lr); FEQ(train.weight_decay);
    FEQ(train.warmup_epochs); FEQ(train.label_smoothing); FEQ(train.grad_clip);
    FEQ(train.val_fraction); SEQ(train.resume);
    EQ(record.samples); EQ(record.membrane);
    SEQ(energy.preset); FEQ(energy.e_mac_pj); FEQ(energy.e_ac_pj); FEQ(energy.e_int_add_pj);
    FEQ(energy.e_shift_pj); FEQ(energy.e_cmp_pj); FEQ(energy.e_exp_pj); FEQ(energy.e_div_pj);
    FEQ(energy.e_neuron_pj); FEQ(energy.weight_bits); FEQ(energy.membrane_bits);
    FEQ(energy.activation_bits); SEQ(energy.memory_level); FEQ(energy.read_pj_per_bit);
    FEQ(energy.write_pj_per_bit);
    SEQ(output.path); EQ(output.compression);
#undef EQ
#undef FEQ
#undef SEQ
}

/* Emits cfg, loads the text back, and checks the result is identical (and re-emits equal). */
static void assert_round_trip(const snn_config *cfg) {
    char *yaml = snn_config_to_yaml(cfg);
    snn_config back;
    load_ok(&back, yaml, NO_SETS);
    assert_config_equal(cfg, &back);
    char *again = snn_config_to_yaml(&back);
    assert_string_equal(yaml, again);
    free(again);
    free(yaml);
    snn_config_free(&back);
}

/* ---------------------------------------------------------------------------------------- */

static void test_defaults_are_the_documented_values(void **state) {
    (void)state;
    snn_config c;
    snn_config_defaults(&c);
    assert_string_equal(c.name, "spikesim");
    assert_true(c.seed == 0);
    assert_int_equal(c.data.source, SNN_DATA_IDX);
    assert_string_equal(c.data.path, "/usr/share/datasets/fashion-mnist");
    assert_string_equal(c.data.split, "test");
    assert_true(c.data.limit == 0 && c.data.train_limit == 0 && !c.data.shuffle);
    assert_int_equal(c.data.encoding, SNN_ENCODING_DIRECT);
    assert_true(c.data.synthetic_samples == 1024);
    assert_int_equal(c.model.image_size, 28);
    assert_int_equal(c.model.channels, 1);
    assert_int_equal(c.model.classes, 10);
    assert_int_equal(c.model.patch, 4);
    assert_int_equal(c.model.dim, 64);
    assert_int_equal(c.model.heads, 4);
    assert_int_equal(c.model.blocks, 2);
    assert_int_equal(c.model.mlp_ratio, 4);
    assert_int_equal(c.model.timesteps, 4);
    assert_int_equal(c.model.residual, SNN_RESIDUAL_MS);
    assert_null(c.model.weights);
    assert_true(c.model.init_std == 0.02f);
    assert_int_equal(c.model.neuron.kind, SNN_NEURON_LIF);
    assert_true(c.model.neuron.tau == 2.0f && c.model.neuron.v_threshold == 1.0f);
    assert_true(c.model.neuron.v_reset == 0.0f && !c.model.neuron.soft_reset);
    assert_true(c.model.neuron.decay_input && !c.model.neuron.bipolar);
    assert_int_equal(c.model.neuron.surrogate, SNN_SURROGATE_SIGMOID);
    assert_true(c.model.neuron.alpha == 4.0f && c.model.neuron.detach_reset);
    assert_int_equal(c.model.attention.kind, SNN_ATTN_BSA);
    assert_true(c.model.attention.scale == 0.0f && c.model.attention.attn_threshold == 0.0f);
    assert_true(c.model.attention.qk_threshold == 1.0f && !c.model.attention.qk_soft_reset);
    assert_int_equal(c.model.attention.rounding, SNN_SHIFTMAX_ROUND);
    assert_int_equal(c.train.epochs, 0);
    assert_int_equal(c.train.batch_size, 64);
    assert_true(c.train.lr == 1e-3f && c.train.weight_decay == 0.01f);
    assert_true(c.train.warmup_epochs == 0.1f);
    assert_true(c.train.label_smoothing == 0.1f && c.train.grad_clip == 1.0f);
    assert_true(c.train.val_fraction == 0.1f);
    assert_null(c.train.resume);
    assert_true(c.record.samples == 16 && !c.record.membrane);
    assert_string_equal(c.energy.preset, "horowitz45nm");
    assert_true(c.energy.e_mac_pj == 4.6 && c.energy.e_ac_pj == 0.9);
    assert_true(c.energy.weight_bits == 32 && c.energy.membrane_bits == 32 &&
                c.energy.activation_bits == 32);
    assert_string_equal(c.energy.memory_level, "sram8k");
    assert_true(c.energy.read_pj_per_bit == 10.0 / 64 && c.energy.write_pj_per_bit == 10.0 / 64);
    assert_null(c.output.path);
    assert_int_equal(c.output.compression, 4);
    assert_int_equal(snn_config_tokens(&c), 49);
    assert_int_equal(snn_config_head_dim(&c), 16);
    snn_config_free(&c);
}

static void test_empty_and_comment_only_files_give_defaults(void **state) {
    (void)state;
    snn_config d;
    snn_config_defaults(&d);
    const char *texts[] = {"", "# nothing but a comment\n\n   # another\n", "---\n", "~\n"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        snn_config c;
        load_ok(&c, texts[i], NO_SETS);
        assert_config_equal(&c, &d);
        snn_config_free(&c);
    }
    snn_config_free(&d);
}

static void test_file_values_are_applied(void **state) {
    (void)state;
    const char *text = "name: tiny\n"
                       "seed: 42\n"
                       "data: {source: synthetic, split: train, limit: 100, shuffle: yes,\n"
                       "       encoding: rate, synthetic_samples: 64}\n"
                       "model:\n"
                       "  image_size: 32\n"
                       "  channels: 3\n"
                       "  dim: 96\n"
                       "  heads: 6\n"
                       "  residual: sew\n"
                       "  weights: ckpt/model.bin\n"
                       "  neuron:\n"
                       "    kind: plif\n"
                       "    tau: 3\n"
                       "    surrogate: atan\n"
                       "    decay_input: False\n"
                       "  attention:\n"
                       "    kind: ssa\n"
                       "    scale: 0.125\n"
                       "    attn_threshold: 0.5\n"
                       "    qk_reset: soft\n"
                       "    rounding: ceil\n"
                       "train:\n"
                       "  epochs: 3\n"
                       "  lr: 5e-4\n"
                       "record:\n"
                       "  membrane: true\n";
    snn_config c;
    load_ok(&c, text, NO_SETS);
    assert_string_equal(c.name, "tiny");
    assert_true(c.seed == 42);
    assert_int_equal(c.data.source, SNN_DATA_SYNTHETIC);
    assert_string_equal(c.data.split, "train");
    assert_true(c.data.limit == 100 && c.data.shuffle && c.data.synthetic_samples == 64);
    assert_int_equal(c.data.encoding, SNN_ENCODING_RATE);
    assert_int_equal(c.model.image_size, 32);
    assert_int_equal(c.model.channels, 3);
    assert_int_equal(c.model.dim, 96);
    assert_int_equal(c.model.heads, 6);
    assert_int_equal(c.model.residual, SNN_RESIDUAL_SEW);
    assert_string_equal(c.model.weights, "ckpt/model.bin");
    assert_int_equal(c.model.neuron.kind, SNN_NEURON_PLIF);
    assert_true(c.model.neuron.tau == 3.0f && !c.model.neuron.decay_input);
    assert_int_equal(c.model.neuron.surrogate, SNN_SURROGATE_ATAN);
    assert_int_equal(c.model.attention.kind, SNN_ATTN_SSA);
    assert_true(c.model.attention.scale == 0.125f && c.model.attention.attn_threshold == 0.5f);
    assert_true(c.model.attention.qk_soft_reset);
    assert_int_equal(c.model.attention.rounding, SNN_SHIFTMAX_CEIL);
    assert_int_equal(c.train.epochs, 3);
    assert_true(c.train.lr == 5e-4f);
    assert_true(c.record.membrane);
    assert_int_equal(c.model.blocks, 2); /* untouched keys keep their defaults */
    snn_config_free(&c);
}

static void test_yaml_syntax_error_points_at_problem_mark(void **state) {
    (void)state;
    expect_diags("model:\n  dim: 64\n heads: [\n", NO_SETS,
                 NAME ":3:2: error: did not find expected key while parsing a block mapping\n");
    expect_diags("a: b: c\n", NO_SETS,
                 NAME ":1:5: error: mapping values are not allowed in this context\n");
    /* a syntax error stops parsing: the bad dim before it is not reported */
    expect_diags("model:\n  dim: abc\n  x: [1, 2\n", NO_SETS,
                 NAME ":4:1: error: did not find expected ',' or ']' while parsing a flow "
                      "sequence\n");
    /* invalid UTF-8 is a reader error, positioned from its byte offset */
    expect_diags("seed: 1\nname: \xff\n", NO_SETS,
                 NAME ":2:7: error: invalid leading UTF-8 octet\n");
}

static void test_unknown_keys_suggest_close_names(void **state) {
    (void)state;
    expect_diags("model:\n  heds: 4\n", NO_SETS,
                 NAME ":2:3: error: unknown key 'heds' in 'model' (did you mean 'heads'?)\n");
    expect_diags("modle:\n  dim: 4\n", NO_SETS,
                 NAME ":1:1: error: unknown key 'modle' (did you mean 'model'?)\n");
    /* a shared prefix counts even beyond edit distance 2 */
    expect_diags("model:\n  neuron:\n    v_thresh: 2\n", NO_SETS,
                 NAME ":3:5: error: unknown key 'v_thresh' in 'model.neuron' (did you mean "
                      "'v_threshold'?)\n");
    /* a key at the wrong level: the hint is its full path */
    expect_diags("heads: 4\n", NO_SETS,
                 NAME ":1:1: error: unknown key 'heads' (did you mean 'model.heads'?)\n");
    /* nothing close: no hint */
    expect_diags("model:\n  zzzz: 1\n", NO_SETS,
                 NAME ":2:3: error: unknown key 'zzzz' in 'model'\n");
    /* key names are printed on one line */
    expect_diags("\"a\\nb\": 1\n", NO_SETS, NAME ":1:1: error: unknown key 'a?b'\n");
    expect_diags("model.dim: 5\n", NO_SETS,
                 NAME ":1:1: error: unknown key 'model.dim' (nest it: dotted paths are for "
                      "--set)\n");
}

static void test_wrong_types_name_the_expected_type(void **state) {
    (void)state;
    const char *text = "model:\n"
                       "  dim: abc\n"
                       "  heads: 1.5\n"
                       "  init_std: big\n"
                       "  residual: [ms]\n"
                       "  weights: {a: 1}\n"
                       "  neuron:\n"
                       "    decay_input: maybe\n"
                       "  attention:\n"
                       "    kind: foo\n"
                       "    scale: big\n"
                       "name: ~\n"
                       "data: 3\n"
                       "seed: null\n"
                       "train:\n"
                       "  epochs:\n";
    expect_diags(text, NO_SETS,
                 NAME ":2:8: error: model.dim: expected an integer, got 'abc'\n"
                 NAME ":3:10: error: model.heads: expected an integer, got '1.5'\n"
                 NAME ":4:13: error: model.init_std: expected a number, got 'big'\n"
                 NAME ":5:13: error: model.residual: expected one of ms, sew, got a sequence\n"
                 NAME ":6:12: error: model.weights: expected a string or null, got a mapping\n"
                 NAME ":8:18: error: model.neuron.decay_input: expected true or false, got "
                      "'maybe'\n"
                 NAME ":10:11: error: model.attention.kind: expected one of bsa, ssa, sdsa, softmax, cat, primal, got 'foo'\n"
                 NAME ":11:12: error: model.attention.scale: expected a number or auto, got "
                      "'big'\n"
                 NAME ":12:7: error: name: expected a string, got '~'\n"
                 NAME ":13:7: error: data: expected a mapping, got '3'\n"
                 NAME ":14:7: error: seed: expected an integer, got 'null'\n"
                 NAME ":16:10: error: train.epochs: expected an integer, got an empty value\n");
    expect_diags("- a\n- b\n", NO_SETS,
                 NAME ":1:1: error: the top level must be a mapping, got a sequence\n");
    expect_diags("hello\n", NO_SETS,
                 NAME ":1:1: error: the top level must be a mapping, got 'hello'\n");
}

static void test_out_of_range_values_are_rejected(void **state) {
    (void)state;
    const char *text = "seed: -1\n"
                       "model:\n"
                       "  dim: 0\n"
                       "  classes: 99999999999\n"
                       "  timesteps: 2000\n"
                       "  neuron:\n"
                       "    tau: 1\n"
                       "  attention:\n"
                       "    attn_threshold: 0\n"
                       "train:\n"
                       "  label_smoothing: 1\n"
                       "  val_fraction: -0.1\n"
                       "energy:\n"
                       "  e_ac_pj: -1\n"
                       "  weight_bits: -8\n"
                       "  memory_level: l2\n"
                       "output:\n"
                       "  compression: 12\n";
    expect_diags(text, NO_SETS,
                 NAME ":1:7: error: seed (-1) must be >= 0\n"
                 NAME ":3:8: error: model.dim (0) must be >= 1\n"
                 NAME ":4:12: error: model.classes (99999999999) is out of range for a 32-bit "
                      "integer\n"
                 NAME ":5:14: error: model.timesteps (2000) must be in 1..1024\n"
                 NAME ":7:10: error: model.neuron.tau (1) must be > 1\n"
                 NAME ":9:21: error: model.attention.attn_threshold (0) must be > 0\n"
                 NAME ":11:20: error: train.label_smoothing (1) must be >= 0 and < 1\n"
                 NAME ":12:17: error: train.val_fraction (-0.1) must be >= 0 and < 1\n"
                 NAME ":14:12: error: energy.e_ac_pj (-1) must be >= 0\n"
                 NAME ":15:16: error: energy.weight_bits (-8) must be >= 0\n"
                 NAME ":16:17: error: energy.memory_level: expected one of sram8k, sram32k, "
                      "sram1m, dram, got 'l2'\n"
                 NAME ":18:16: error: output.compression (12) must be in 0..9\n");
}

static void test_duplicate_keys_are_errors_and_first_wins(void **state) {
    (void)state;
    const char *text = "model:\n  dim: 64\n  dim: 32\nseed: 1\nseed: 2\n";
    snn_config c;
    char *got;
    int n = load(&c, text, NO_SETS, &got);
    assert_string_equal(got, NAME ":3:3: error: duplicate key 'dim' in 'model'\n"
                             NAME ":5:1: error: duplicate key 'seed'\n");
    assert_int_equal(n, 2);
    assert_int_equal(c.model.dim, 64);
    assert_true(c.seed == 1);
    free(got);
    snn_config_free(&c);
}

static void test_all_errors_of_a_file_are_reported_in_file_order(void **state) {
    (void)state;
    /* the cross-field error is found last but printed at its line */
    const char *text = "seeds: 3\n"
                       "model:\n"
                       "  dim: 96\n"
                       "  heads: 5\n"
                       "  blocks: many\n"
                       "  neuron:\n"
                       "    tau: 0.5\n"
                       "output:\n"
                       "  compression: 12\n";
    expect_diags(text, NO_SETS,
                 NAME ":1:1: error: unknown key 'seeds' (did you mean 'seed'?)\n"
                 NAME ":3:8: error: model.dim (96) must be divisible by model.heads (5)\n"
                 NAME ":5:11: error: model.blocks: expected an integer, got 'many'\n"
                 NAME ":7:10: error: model.neuron.tau (0.5) must be > 1\n"
                 NAME ":9:16: error: output.compression (12) must be in 0..9\n");
}

static void test_set_overrides_apply_after_the_file(void **state) {
    (void)state;
    const char *text = "model:\n  dim: 96\n  heads: 8\n  weights: a.bin\n";
    snn_config c;
    load_ok(&c, text,
            SETS("model.heads=6", "model.weights=null", "model.attention.kind=ssa",
                 "name=run 1", "seed=18446744073709551615", "model.neuron.v_reset=null",
                 " train.lr = 0.5", "model.attention={rounding: ceil, qk_reset: soft}",
                 "output.path='null'"));
    assert_int_equal(c.model.dim, 96);
    assert_int_equal(c.model.heads, 6);
    assert_null(c.model.weights);
    assert_int_equal(c.model.attention.kind, SNN_ATTN_SSA);
    assert_string_equal(c.name, "run 1");
    assert_true(c.seed == UINT64_MAX);
    assert_true(c.model.neuron.soft_reset);
    assert_true(c.train.lr == 0.5f);
    assert_int_equal(c.model.attention.rounding, SNN_SHIFTMAX_CEIL);
    assert_true(c.model.attention.qk_soft_reset);
    assert_string_equal(c.output.path, "null"); /* quoted: the string, not null */
    snn_config_free(&c);
}

static void test_bad_set_overrides_are_reported_after_the_file(void **state) {
    (void)state;
    expect_diags("model:\n  heds: 4\n",
                 SETS("foo", "=3", "model.heds=5", "modle.heads=3", "x.y.z=1", "model.dim=abc",
                      "output.compression=12", "model.dim=[1", "name=", "model=5",
                      "model.neuron={tau: 0.5}"),
                 NAME ":2:3: error: unknown key 'heds' in 'model' (did you mean 'heads'?)\n"
                 "--set foo: error: expected key.path=value\n"
                 "--set =3: error: expected key.path=value\n"
                 "--set model.heds=5: error: unknown key 'model.heds' (did you mean "
                 "'model.heads'?)\n"
                 "--set modle.heads=3: error: unknown key 'modle.heads' (did you mean "
                 "'model.heads'?)\n"
                 "--set x.y.z=1: error: unknown key 'x.y.z'\n"
                 "--set model.dim=abc: error: model.dim: expected an integer, got 'abc'\n"
                 "--set output.compression=12: error: output.compression (12) must be in "
                 "0..9\n"
                 "--set model.dim=[1: error: cannot parse the value: did not find expected ',' "
                 "or ']' while parsing a flow sequence\n"
                 "--set name=: error: name: expected a string, got an empty value\n"
                 "--set model=5: error: model: expected a mapping, got '5'\n"
                 "--set model.neuron={tau: 0.5}: error: model.neuron.tau (0.5) must be > 1\n");
}

static void test_cross_field_rules_point_at_the_explicit_key(void **state) {
    (void)state;
    /* both in the file: at the first key of the message */
    expect_diags("model:\n  dim: 96\n  heads: 5\n", NO_SETS,
                 NAME ":2:8: error: model.dim (96) must be divisible by model.heads (5)\n");
    /* only the second key is explicit */
    expect_diags("model:\n  heads: 5\n", NO_SETS,
                 NAME ":2:10: error: model.dim (64) must be divisible by model.heads (5)\n");
    /* first key in the file, second from --set: the override broke the rule, it is named */
    expect_diags("model:\n  dim: 96\n", SETS("model.heads=5"),
                 "--set model.heads=5: error: model.dim (96) must be divisible by model.heads "
                 "(5)\n");
    /* two overrides: the later one is named */
    expect_diags("", SETS("model.heads=5", "model.dim=96"),
                 "--set model.dim=96: error: model.dim (96) must be divisible by model.heads "
                 "(5)\n");
    /* only --set: the override is named */
    expect_diags("", SETS("model.heads=5"),
                 "--set model.heads=5: error: model.dim (64) must be divisible by model.heads "
                 "(5)\n");
    expect_diags("model:\n  patch: 5\n", NO_SETS,
                 NAME ":2:10: error: model.image_size (28) must be divisible by model.patch "
                      "(5)\n");
    expect_diags("model:\n  neuron:\n    v_reset: 1.0\n", NO_SETS,
                 NAME ":3:14: error: model.neuron.v_reset (1) must be < "
                      "model.neuron.v_threshold (1) with a hard reset\n");
    expect_diags("model:\n  attention:\n    scale: 0.3\n", NO_SETS,
                 NAME ":3:12: error: model.attention.scale (0.3) must be a power of two (2^-k) "
                      "when model.attention.kind is bsa\n");
    /* ANN baselines run one step and have no spikes to sum */
    expect_diags("model:\n  attention:\n    kind: softmax\n", NO_SETS,
                 NAME ":3:11: error: model.timesteps (4) must be 1 when model.attention.kind is "
                      "softmax (an ANN model)\n");
    expect_diags("model:\n  timesteps: 1\n  residual: sew\n  attention: {kind: cat}\n", NO_SETS,
                 NAME ":3:13: error: model.residual sew needs spikes; model.attention.kind cat is "
                      "an ANN model\n");
    /* longseq: one token per position, one channel per symbol plus the marker, two classes */
    expect_diags("data: {source: longseq}\nmodel: {patch: 1, channels: 4, classes: 2}\n", NO_SETS,
                 NAME ":2:29: error: model.channels (4) must be data.seq_symbols + 1 (9) with "
                      "data.source longseq\n");
    /* fine: powers of two for bsa, any positive scale for ssa, soft reset above threshold */
    snn_config c;
    load_ok(&c, "model:\n  timesteps: 1\n  attention: {kind: primal, s: 8, eta: 0.1}\n", NO_SETS);
    assert_int_equal(c.model.attention.kind, SNN_ATTN_PRIMAL);
    assert_int_equal(c.model.attention.low_rank, 8);
    assert_int_equal(c.model.attention.rank_multi, 10);
    snn_config_free(&c);
    load_ok(&c, "model:\n  attention: {scale: 0.25}\n", NO_SETS);
    snn_config_free(&c);
    load_ok(&c, "model:\n  attention: {scale: 2}\n", NO_SETS);
    snn_config_free(&c);
    load_ok(&c, "model:\n  attention: {kind: ssa, scale: 0.3}\n", NO_SETS);
    snn_config_free(&c);
    load_ok(&c, "model:\n  neuron: {v_reset: null, v_threshold: 0.5}\n", NO_SETS);
    snn_config_free(&c);
    load_ok(&c, "model:\n  dim: 96\n  heads: 5\n", SETS("model.heads=6"));
    snn_config_free(&c);
}

static void test_cross_field_rules_skip_keys_that_failed(void **state) {
    (void)state;
    expect_diags("model:\n  dim: abc\n  heads: 5\n", NO_SETS,
                 NAME ":2:8: error: model.dim: expected an integer, got 'abc'\n");
    expect_diags("model:\n  patch: 0\n", NO_SETS,
                 NAME ":2:10: error: model.patch (0) must be >= 1\n");
    /* a syntax error means the file was not applied: no cross-field noise from --set */
    expect_diags("a: [\n", SETS("model.heads=5"),
                 NAME ":2:1: error: did not find expected node content while parsing a flow "
                      "node\n");
}

static void test_v_reset_null_means_soft_reset(void **state) {
    (void)state;
    const char *texts[] = {"model: {neuron: {v_reset: null}}\n",
                           "model: {neuron: {v_reset: ~}}\n", "model:\n  neuron:\n    v_reset:\n"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        snn_config c;
        load_ok(&c, texts[i], NO_SETS);
        assert_true(c.model.neuron.soft_reset);
        char *y = snn_config_to_yaml(&c);
        assert_non_null(strstr(y, "\n    v_reset: null\n"));
        free(y);
        assert_round_trip(&c);
        snn_config_free(&c);
    }
    snn_config c;
    load_ok(&c, "model: {neuron: {v_reset: -0.5}}\n", NO_SETS);
    assert_false(c.model.neuron.soft_reset);
    assert_true(c.model.neuron.v_reset == -0.5f);
    snn_config_free(&c);
    expect_diags("model: {neuron: {v_reset: soft}}\n", NO_SETS,
                 NAME ":1:27: error: model.neuron.v_reset: expected a number or null, got "
                      "'soft'\n");
}

static void assert_energy(const snn_config *c, const double want[8]) {
    const double got[8] = {c->energy.e_mac_pj,   c->energy.e_ac_pj,  c->energy.e_int_add_pj,
                           c->energy.e_shift_pj, c->energy.e_cmp_pj, c->energy.e_exp_pj,
                           c->energy.e_div_pj,   c->energy.e_neuron_pj};
    for (int i = 0; i < 8; i++) {
        if (got[i] != want[i])
            fail_msg("energy value %d: got %.17g, want %.17g", i, got[i], want[i]);
    }
}

static void test_energy_presets_fill_null_values(void **state) {
    (void)state;
    static const double h45[8] = {4.6, 0.9, 0.1, 0.13, 0.1, 26.27, 26.27, 3.6};
    static const double fp16[8] = {1.5, 0.4, 0.1, 0.13, 0.1, 7.81, 7.81, 1.6};
    static const double int8[8] = {0.23, 0.03, 0.03, 0.024, 0.03, 1.42, 1.42, 0.12};
    snn_config c;
    load_ok(&c, "", NO_SETS);
    assert_energy(&c, h45);
    snn_config_free(&c);
    load_ok(&c, "energy:\n  preset: fp16\n", NO_SETS);
    assert_energy(&c, fp16);
    snn_config_free(&c);
    load_ok(&c, "energy:\n  preset: int8\n  e_mac_pj: null\n", NO_SETS);
    assert_energy(&c, int8);
    snn_config_free(&c);
    /* one override keeps the rest of the preset */
    load_ok(&c, "energy:\n  preset: fp16\n  e_ac_pj: 0.5\n", NO_SETS);
    const double want[8] = {1.5, 0.5, 0.1, 0.13, 0.1, 7.81, 7.81, 1.6};
    assert_energy(&c, want);
    /* the resolved config shows numbers and loads back to the same values */
    char *y = snn_config_to_yaml(&c);
    assert_non_null(strstr(y, "energy:\n  preset: fp16\n  e_mac_pj: 1.5\n  e_ac_pj: 0.5\n"));
    assert_null(strstr(y, "_pj: null"));
    free(y);
    assert_round_trip(&c);
    snn_config_free(&c);
    load_ok(&c, "", SETS("energy.preset=int8", "energy.e_neuron_pj=2"));
    const double want2[8] = {0.23, 0.03, 0.03, 0.024, 0.03, 1.42, 1.42, 2.0};
    assert_energy(&c, want2);
    snn_config_free(&c);
}

static void test_to_yaml_round_trips_exactly(void **state) {
    (void)state;
    snn_config c;
    snn_config_defaults(&c);
    assert_round_trip(&c);
    snn_config_free(&c);

    /* awkward strings and numbers: every one must come back bit for bit */
    const char *text =
        "name: \"a: b # c\"\n"
        "seed: 18446744073709551615\n"
        "data:\n"
        "  path: '  leading space'\n"
        "  limit: 9223372036854775807\n"
        "  train_limit: 7\n"
        "model:\n"
        "  weights: \"null\"\n"
        "  init_std: 0.1\n"
        "  neuron: {kind: if, tau: 3.3333333, v_reset: -0.0, v_threshold: 1e-7, alpha: 1e30}\n"
        "  attention: {scale: 0.125, attn_threshold: 0.3, qk_threshold: 16777217}\n"
        "train:\n"
        "  lr: 1e-7\n"
        "  resume: \"l1\\nl2\\tt \\\"q\\\" \\\\ \\u00e9 \\u2713 \\x01 \\x80 \\x7f end\"\n"
        "  label_smoothing: 0.999999\n"
        "energy:\n"
        "  e_exp_pj: 0.30000000000000004\n"
        "  e_mac_pj: 1e-300\n"
        "  e_div_pj: 12345678901234567890\n"
        "output:\n"
        "  path: '123'\n"
        "  compression: 0\n";
    load_ok(&c, text, NO_SETS);
    assert_string_equal(c.name, "a: b # c");
    assert_string_equal(c.model.weights, "null");
    assert_string_equal(c.train.resume, "l1\nl2\tt \"q\" \\ \xc3\xa9 \xe2\x9c\x93 \x01 \xc2\x80 "
                                        "\x7f end");
    assert_true(c.energy.e_exp_pj == 0.30000000000000004);
    assert_true(signbit(c.model.neuron.v_reset));
    assert_round_trip(&c);
    snn_config_free(&c);

    /* every string key as null or a YAML keyword */
    load_ok(&c, "name: 'true'\ndata: {path: 'yes', split: train}\noutput: {path: '~'}\n",
            NO_SETS);
    assert_round_trip(&c);
    snn_config_free(&c);
}

static void test_to_yaml_nests_keys_in_table_order(void **state) {
    (void)state;
    snn_config c;
    snn_config_defaults(&c);
    char *y = snn_config_to_yaml(&c);
    const char *head = "name: spikesim\n"
                       "seed: 0\n"
                       "data:\n"
                       "  source: idx\n"
                       "  path: /usr/share/datasets/fashion-mnist\n"
                       "  split: test\n";
    assert_int_equal(strncmp(y, head, strlen(head)), 0);
    assert_non_null(strstr(y, "  weights: null\n  init_std: 0.02\n  activation: relu\n  neuron:\n    kind: lif\n"
                              "    tau: 2.0\n"));
    assert_non_null(strstr(y, "    detach_reset: true\n  attention:\n    kind: bsa\n"
                              "    scale: auto\n    attn_threshold: auto\n"));
    assert_non_null(strstr(y, "    rounding: round\n    s: 20\n    rank_multi: 10\n    eta: 0.05\ntrain:\n  epochs: 0\n"));
    const char *tail = "output:\n  path: null\n  compression: 4\n";
    assert_string_equal(y + strlen(y) - strlen(tail), tail);
    /* one line per key plus one per section header (data, model, model.neuron,
     * model.attention, train, record, energy, output) */
    assert_int_equal(snn_test_count_lines(y), snn_config_key_count() + 8);
    assert_null(strchr(y, '#'));
    free(y);
    snn_config_free(&c);
}

static void test_load_file_names_the_path(void **state) {
    (void)state;
    char *path = snn_test_tmp_path("config.yaml");
    const char *text = "model:\n  dim: 0\n";
    assert_int_equal(snn_test_write_file(path, text, strlen(text)), 0);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    snn_config c;
    int n = snn_config_load_file(&c, path, SETS("model.heads=2"), f);
    fclose(f);
    assert_int_equal(n, 1);
    char want[512];
    snprintf(want, sizeof want, "%s:2:8: error: model.dim (0) must be >= 1\n", path);
    assert_string_equal(buf, want);
    assert_int_equal(c.model.heads, 2);
    free(buf);
    snn_config_free(&c);
    remove(path);

    /* unreadable: one diagnostic, defaults in cfg */
    buf = NULL;
    f = open_memstream(&buf, &len);
    n = snn_config_load_file(&c, path, NO_SETS, f);
    fclose(f);
    assert_int_equal(n, 1);
    char expect[512];
    snprintf(expect, sizeof expect, "%s: error: cannot read config: %s\n", path, strerror(ENOENT));
    assert_string_equal(buf, expect);
    assert_string_equal(c.name, "spikesim");
    free(buf);
    snn_config_free(&c);
    free(path);
}

static void test_free_leaves_the_struct_reusable(void **state) {
    (void)state;
    snn_config c;
    load_ok(&c, "model: {weights: w.bin}\ntrain: {resume: r.bin}\noutput: {path: o.h5}\n",
            NO_SETS);
    snn_config_free(&c);
    assert_null(c.name);
    assert_null(c.data.path);
    assert_null(c.data.split);
    assert_null(c.model.weights);
    assert_null(c.train.resume);
    assert_null(c.energy.preset);
    assert_null(c.output.path);
    snn_config_free(&c); /* twice is harmless */
    load_ok(&c, "seed: 3\n", NO_SETS);
    assert_true(c.seed == 3);
    snn_config_free(&c);
}

static void test_null_and_booleans_follow_yaml(void **state) {
    (void)state;
    const char *nulls[] = {"model: {weights: null}\n", "model: {weights: ~}\n",
                           "model: {weights: NULL}\n", "model:\n  weights:\n"};
    for (size_t i = 0; i < sizeof nulls / sizeof nulls[0]; i++) {
        snn_config c;
        load_ok(&c, nulls[i], SETS("model.weights=x"));
        assert_string_equal(c.model.weights, "x"); /* --set wins over the file */
        snn_config_free(&c);
        load_ok(&c, nulls[i], NO_SETS);
        assert_null(c.model.weights);
        snn_config_free(&c);
    }
    const char *yes[] = {"true", "True", "TRUE", "yes", "Yes", "on"};
    const char *no[] = {"false", "False", "FALSE", "no", "No", "off"};
    for (size_t i = 0; i < 6; i++) {
        char buf[64];
        snn_config c;
        snprintf(buf, sizeof buf, "data: {shuffle: %s}\n", yes[i]);
        load_ok(&c, buf, NO_SETS);
        assert_true(c.data.shuffle);
        snn_config_free(&c);
        snprintf(buf, sizeof buf, "model: {neuron: {detach_reset: %s}}\n", no[i]);
        load_ok(&c, buf, NO_SETS);
        assert_false(c.model.neuron.detach_reset);
        snn_config_free(&c);
    }
    /* float keys take integers; integer keys take no fractions */
    snn_config c;
    load_ok(&c, "model: {neuron: {tau: 3}}\n", NO_SETS);
    assert_true(c.model.neuron.tau == 3.0f);
    snn_config_free(&c);
    expect_diags("model: {timesteps: 4.0}\n", NO_SETS,
                 NAME ":1:20: error: model.timesteps: expected an integer, got '4.0'\n");
    expect_diags("model: {init_std: .inf}\n", NO_SETS,
                 NAME ":1:19: error: model.init_std: expected a number, got '.inf'\n");
}

static void test_multiple_documents_are_rejected(void **state) {
    (void)state;
    expect_diags("seed: 1\n---\nseed: 2\n", NO_SETS,
                 NAME ":2:1: error: expected a single YAML document\n");
}

static void test_enum_names(void **state) {
    (void)state;
    assert_string_equal(snn_attn_kind_name(SNN_ATTN_BSA), "bsa");
    assert_string_equal(snn_attn_kind_name(SNN_ATTN_SSA), "ssa");
    assert_string_equal(snn_attn_kind_name(SNN_ATTN_PRIMAL), "primal");
    assert_string_equal(snn_attn_kind_name((snn_attn_kind)6), "?");
    assert_string_equal(snn_neuron_kind_name(SNN_NEURON_LIF), "lif");
    assert_string_equal(snn_neuron_kind_name(SNN_NEURON_IF), "if");
    assert_string_equal(snn_neuron_kind_name(SNN_NEURON_PLIF), "plif");
}

static bool under(const char *path, const char *section, size_t len) {
    return strncmp(path, section, len) == 0 && path[len] == '.';
}

/* The emitter opens each section once, so the keys of every section must be adjacent. */
static void test_schema_sections_are_contiguous(void **state) {
    (void)state;
    int n = snn_config_key_count();
    assert_true(n > 50);
    assert_null(snn_config_key_path(-1));
    assert_null(snn_config_key_path(n));
    for (int i = 0; i < n; i++) {
        const char *p = snn_config_key_path(i);
        assert_non_null(snn_config_key_default(i));
        assert_non_null(snn_config_key_doc(i));
        for (int j = 0; j < i; j++) assert_true(strcmp(p, snn_config_key_path(j)) != 0);
        for (const char *dot = strchr(p, '.'); dot; dot = strchr(dot + 1, '.')) {
            size_t len = (size_t)(dot - p); /* section p[0..len) */
            int first = n, last = -1;
            for (int j = 0; j < n; j++) {
                if (!under(snn_config_key_path(j), p, len)) continue;
                if (j < first) first = j;
                last = j;
            }
            for (int j = first; j <= last; j++)
                if (!under(snn_config_key_path(j), p, len))
                    fail_msg("section '%.*s' is split by %s", (int)len, p, snn_config_key_path(j));
        }
    }
}

/* docs/config.md must have a table row "| `path` | `default` |" for every key. */
static void test_docs_describe_every_key(void **state) {
    (void)state;
    FILE *f = fopen("docs/config.md", "rb");
    if (!f)
        fail_msg("docs/config.md: %s (run the tests from the repository root)", strerror(errno));
    char *doc = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&doc, &len);
    char chunk[4096];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) fwrite(chunk, 1, got, m);
    fclose(f);
    fclose(m);
    int missing = 0;
    for (int i = 0; i < snn_config_key_count(); i++) {
        char row[256];
        snprintf(row, sizeof row, "| `%s` | `%s` |", snn_config_key_path(i),
                 snn_config_key_default(i));
        if (!strstr(doc, row)) {
            print_error("docs/config.md lacks the row \"%s\"\n", row);
            missing++;
        }
    }
    free(doc);
    assert_int_equal(missing, 0);
}

/* Every run config that README.md or docs/ names (configs/<name>.yaml) exists and loads without
 * a diagnostic, so a documented command never starts with "file not found". Compare configs
 * (configs/compare_*.yaml) have their own schema (test_compare loads them); here they must
 * exist. */
static void test_documented_configs_exist_and_load(void **state) {
    (void)state;
    glob_t g;
    assert_int_equal(glob("docs/*.md", 0, NULL, &g), 0);
    int checked = 0, bad = 0;
    for (size_t f = 0; f <= g.gl_pathc; f++) {
        const char *doc_path = f < g.gl_pathc ? g.gl_pathv[f] : "README.md";
        char *doc = snn_test_read_file(doc_path);
        assert_non_null(doc);
        for (const char *p = doc; (p = strstr(p, "configs/")) != NULL; p++) {
            size_t n = strlen("configs/");
            while (isalnum((unsigned char)p[n]) || p[n] == '_' || p[n] == '-' || p[n] == '.') n++;
            if (n < 14 || strncmp(p + n - 5, ".yaml", 5) != 0) continue; /* a pattern or a dir */
            if (p[n] == ':') continue; /* a diagnostic shown as an example: configs/x.yaml:3:1 */
            char path[256];
            snprintf(path, sizeof path, "%.*s", (int)n, p);
            checked++;
            if (access(path, R_OK) != 0) {
                print_error("%s names %s, which does not exist\n", doc_path, path);
                bad++;
                continue;
            }
            if (!strncmp(path, "configs/compare_", 16)) continue;
            snn_config c;
            int errors = snn_config_load_file(&c, path, NULL, 0, stderr);
            snn_config_free(&c);
            if (errors) {
                print_error("%s names %s, which has %d error(s)\n", doc_path, path, errors);
                bad++;
            }
        }
        free(doc);
    }
    globfree(&g);
    assert_true(checked >= 10); /* README.md and docs/ name more than that */
    assert_int_equal(bad, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_are_the_documented_values),
        cmocka_unit_test(test_empty_and_comment_only_files_give_defaults),
        cmocka_unit_test(test_file_values_are_applied),
        cmocka_unit_test(test_yaml_syntax_error_points_at_problem_mark),
        cmocka_unit_test(test_unknown_keys_suggest_close_names),
        cmocka_unit_test(test_wrong_types_name_the_expected_type),
        cmocka_unit_test(test_out_of_range_values_are_rejected),
        cmocka_unit_test(test_duplicate_keys_are_errors_and_first_wins),
        cmocka_unit_test(test_all_errors_of_a_file_are_reported_in_file_order),
        cmocka_unit_test(test_set_overrides_apply_after_the_file),
        cmocka_unit_test(test_bad_set_overrides_are_reported_after_the_file),
        cmocka_unit_test(test_cross_field_rules_point_at_the_explicit_key),
        cmocka_unit_test(test_cross_field_rules_skip_keys_that_failed),
        cmocka_unit_test(test_v_reset_null_means_soft_reset),
        cmocka_unit_test(test_energy_presets_fill_null_values),
        cmocka_unit_test(test_to_yaml_round_trips_exactly),
        cmocka_unit_test(test_to_yaml_nests_keys_in_table_order),
        cmocka_unit_test(test_load_file_names_the_path),
        cmocka_unit_test(test_free_leaves_the_struct_reusable),
        cmocka_unit_test(test_null_and_booleans_follow_yaml),
        cmocka_unit_test(test_multiple_documents_are_rejected),
        cmocka_unit_test(test_enum_names),
        cmocka_unit_test(test_schema_sections_are_contiguous),
        cmocka_unit_test(test_docs_describe_every_key),
        cmocka_unit_test(test_documented_configs_exist_and_load),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
