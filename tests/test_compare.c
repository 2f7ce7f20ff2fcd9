/*
 * test_compare.c: `spikesim compare`. The grid expansion (names, order, skipped points, the
 * overrides of each point), the load diagnostics (exact lines, file order), running a tiny
 * comparison and running it again (nothing is run the second time: counters and file mtimes),
 * evaluation from a best checkpoint, and the four report files: summary.csv and summary.json
 * parsed by small parsers written here, every run present with the numbers of its run file,
 * report.html with one scatter circle and one bar group per run and no scripts, report.md with
 * a row and a reproducing command per run. The headless-browser check is tests/html_check.sh.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <hdf5.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sim/compare.h"
#include "sim/h5io.h"
#include "tests/testutil.h"

static char *dir; /* scratch directory of this process */

static char *in_dir(const char *name) { return snn_xasprintf("%s/%s", dir, name); }

static char *write_in_dir(const char *name, const char *text) {
    char *p = in_dir(name);
    assert_int_equal(snn_test_write_file(p, text, strlen(text)), 0);
    return p;
}

static int count(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

/* A tiny synthetic model: 16 samples, D = 16, one block. */
static const char base_cfg[] =
    "name: tiny\nseed: 3\n"
    "data: {source: synthetic, synthetic_samples: 16}\n"
    "model: {image_size: 16, patch: 4, dim: 16, heads: 2, blocks: 1, mlp_ratio: 2, timesteps: 2,"
    " init_std: 1.0}\n"
    "record: {samples: 2}\n";

/* Loads text as a compare config; returns the error count, diagnostics in *diag_text. */
static int load_text(snn_compare *c, const char *name, const char *text, char **diag_text) {
    char *p = write_in_dir(name, text);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    int e = snn_compare_load(c, p, f);
    fclose(f);
    free(p);
    *diag_text = buf;
    return e;
}

/* ---- grid expansion ------------------------------------------------------------------------- */

static void test_grid_expansion(void **state) {
    (void)state;
    char *base = write_in_dir("base.yaml", base_cfg);
    char *other = write_in_dir("other.yaml", "name: other\ndata: {source: synthetic, synthetic_samples: 8}\n"
                                             "model: {image_size: 16, dim: 16, heads: 2, blocks: 1}\n");
    char text[2048];
    snprintf(text, sizeof text,
             "name: g\nbase: %s\nset:\n  record.samples: 1\n  output.path: \"null\"\n"
             "grid:\n  model.attention.kind: [bsa, softmax, ssa]\n  model.timesteps: [1, 2]\n"
             "runs: [%s]\nskip_invalid: yes\n",
             base, other);
    snn_compare c;
    char *d;
    assert_int_equal(load_text(&c, "grid.yaml", text, &d), 0);
    assert_string_equal(d, "");
    assert_string_equal(c.name, "g");
    assert_true(c.skip_invalid);
    static const char *const names[] = {"bsa_T1", "bsa_T2", "softmax_T1", "softmax_T2", "ssa_T1", "ssa_T2", "other"};
    assert_int_equal(c.n_runs, 7);
    for (int i = 0; i < 7; i++) {
        assert_string_equal(c.runs[i].name, names[i]);
        assert_int_equal(c.runs[i].skipped, i == 3);
        assert_string_equal(c.runs[i].config, i < 6 ? base : other);
    }
    assert_string_equal(c.runs[3].skip_reason,
                        "model.timesteps (2) must be 1 when model.attention.kind is softmax (an ANN model)");
    /* `set` first (a quoted value stays a string), then the grid point, first axis first */
    assert_int_equal(c.runs[1].n_sets, 4);
    assert_string_equal(c.runs[1].sets[0], "record.samples=1");
    assert_string_equal(c.runs[1].sets[1], "output.path='null'");
    assert_string_equal(c.runs[1].sets[2], "model.attention.kind=bsa");
    assert_string_equal(c.runs[1].sets[3], "model.timesteps=2");
    assert_string_equal(c.runs[1].point, "model.attention.kind=bsa, model.timesteps=2");
    assert_int_equal(c.runs[6].n_sets, 2);
    assert_null(c.runs[6].point);
    snn_compare_free(&c);
    free(d);

    /* Other axes are named by a short prefix; the compare name defaults to the file stem; a
     * base without a grid is one run named after its config. */
    snprintf(text, sizeof text, "base: %s\ngrid:\n  model.dim: [16, 32]\n  model.neuron.tau: [2.0, 3.5]\n", base);
    assert_int_equal(load_text(&c, "axes.yaml", text, &d), 0);
    assert_string_equal(c.name, "axes");
    assert_int_equal(c.n_runs, 4);
    assert_string_equal(c.runs[0].name, "D16_tau2.0");
    assert_string_equal(c.runs[3].name, "D32_tau3.5");
    snn_compare_free(&c);
    free(d);
    snprintf(text, sizeof text, "base: %s\n", base);
    assert_int_equal(load_text(&c, "single.yaml", text, &d), 0);
    assert_int_equal(c.n_runs, 1);
    assert_string_equal(c.runs[0].name, "tiny");
    snn_compare_free(&c);
    free(d);
    free(base);
    free(other);
}

static void test_load_errors(void **state) {
    (void)state;
    char *base = write_in_dir("base.yaml", base_cfg);
    char text[2048], want[2048];
    snn_compare c;
    char *d;

    /* Every problem, one line each, in file order. */
    snprintf(text, sizeof text,
             "skip_invalid: maybe\nbase: %s\ngrids: 1\ngrid:\n  model.heds: [1]\n  model.timesteps: [1, 1]\n"
             "  model.dim: 16\n",
             base);
    assert_int_equal(load_text(&c, "e1.yaml", text, &d), 5);
    snprintf(want, sizeof want,
             "%s/e1.yaml:1:15: error: skip_invalid: expected true or false, got 'maybe'\n"
             "%s/e1.yaml:3:1: error: unknown key 'grids' (expected name, base, grid, runs, set, skip_invalid)\n"
             "%s/e1.yaml:5:3: error: grid: unknown key 'model.heds' (did you mean 'model.heads'?)\n"
             "%s/e1.yaml:6:24: error: grid: model.timesteps: duplicate value '1'\n"
             "%s/e1.yaml:7:14: error: grid: model.dim: expected a non-empty list of values\n",
             dir, dir, dir, dir, dir);
    assert_string_equal(d, want);
    snn_compare_free(&c);
    free(d);

    /* An invalid grid point is an error unless skip_invalid. */
    snprintf(text, sizeof text, "base: %s\ngrid:\n  model.attention.kind: [ssa, cat]\n  model.timesteps: [1, 4]\n", base);
    assert_int_equal(load_text(&c, "e2.yaml", text, &d), 1);
    snprintf(want, sizeof want,
             "%s/e2.yaml:3:3: error: grid point cat_T4 is invalid: model.timesteps (4) must be 1 when "
             "model.attention.kind is cat (an ANN model) (set `skip_invalid: true` to skip such points)\n",
             dir);
    assert_string_equal(d, want);
    snn_compare_free(&c);
    free(d);

    /* With skip_invalid, a value that is invalid in every point is still an error (a typo). */
    snprintf(text, sizeof text, "base: %s\nskip_invalid: true\ngrid:\n  model.attention.kind: [ssa, sdsaa]\n", base);
    assert_int_equal(load_text(&c, "e3.yaml", text, &d), 1);
    assert_non_null(strstr(d, "e3.yaml:4:31: error: grid: model.attention.kind: value 'sdsaa' is invalid in "
                              "every grid point: model.attention.kind: expected one of"));
    snn_compare_free(&c);
    free(d);

    /* A run config's own diagnostics are shown as they are, before the line naming it; two
     * runs with one name; a grid without base; nothing to compare. */
    char *bad = write_in_dir("bad.yaml", "model:\n  dim: 0\n");
    snprintf(text, sizeof text, "runs: [%s, %s, %s]\n", base, bad, base);
    assert_int_equal(load_text(&c, "e4.yaml", text, &d), 2);
    /* the last two are sorted by position: 1:1 comes first */
    char *first = strstr(d, "two runs are named 'tiny'"), *second = strstr(d, "(1 error above)");
    assert_non_null(first);
    assert_non_null(second);
    assert_true(first < second);
    assert_non_null(strstr(d, "bad.yaml:2:8: error: model.dim (0) must be >= 1\n"));
    snn_compare_free(&c);
    free(d);
    assert_int_equal(load_text(&c, "e5.yaml", "grid: {model.dim: [16]}\n", &d), 1);
    assert_non_null(strstr(d, "e5.yaml:1:7: error: grid needs a base config (`base: FILE`)\n"));
    snn_compare_free(&c);
    free(d);
    assert_int_equal(load_text(&c, "e6.yaml", "name: x\n", &d), 1);
    assert_non_null(strstr(d, "e6.yaml:1:1: error: nothing to compare"));
    snn_compare_free(&c);
    free(d);
    free(bad);
    free(base);
}

/* ---- running, reuse, reports ---------------------------------------------------------------- */

static double mtime_of(const char *p) {
    struct stat st;
    if (stat(p, &st) != 0) return -1;
    return (double)st.st_mtim.tv_sec + 1e-9 * (double)st.st_mtim.tv_nsec;
}

/* /config of an HDF5 file (malloc'd), and its replacement, as h5io writes it: a scalar UTF-8
 * variable-length string. */
static char *checkpoint_config(const char *path) {
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    hid_t d = H5Dopen2(f, "/config", H5P_DEFAULT), t = H5Dget_type(d);
    assert_true(H5Tis_variable_str(t) > 0);
    char *text = NULL;
    assert_true(H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, &text) >= 0);
    char *copy = snn_xstrdup(text);
    H5free_memory(text);
    H5Tclose(t);
    H5Dclose(d);
    H5Fclose(f);
    return copy;
}

static void set_checkpoint_config(const char *path, const char *text) {
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    assert_true(H5Ldelete(f, "/config", H5P_DEFAULT) >= 0);
    hid_t t = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    hid_t d = H5Dcreate2(f, "/config", t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(d >= 0);
    assert_true(H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, &text) >= 0);
    H5Dclose(d);
    H5Sclose(sp);
    H5Tclose(t);
    assert_true(H5Fclose(f) >= 0);
}

/* s with the first `from` replaced by `to` (malloc'd); `from` must occur. */
static char *replace_once(const char *s, const char *from, const char *to) {
    const char *at = strstr(s, from);
    assert_non_null(at);
    return snn_xasprintf("%.*s%s%s", (int)(at - s), s, to, at + strlen(from));
}

static char *tiny_compare(const char *name, const char *extra_set) {
    char *base = write_in_dir("base.yaml", base_cfg);
    char text[2048];
    /* bsa_T2 trains one epoch (checkpoints); the others are evaluated only */
    snprintf(text, sizeof text,
             "name: tiny\nbase: %s\nset: {record.samples: 1%s}\nskip_invalid: true\n"
             "grid:\n  model.attention.kind: [bsa, softmax]\n  model.timesteps: [1, 2]\n",
             base, extra_set);
    free(base);
    return write_in_dir(name, text);
}

static int run_compare(const char *cfg_path, const char *out, snn_compare_stats *st) {
    snn_compare c;
    if (snn_compare_load(&c, cfg_path, stderr)) {
        snn_compare_free(&c);
        return -1;
    }
    snn_compare_opts o = {.dir = out, .threads = 1, .log = NULL};
    snn_err err = {{0}};
    bool ce = false;
    int rc = snn_compare_execute(&c, &o, st, &ce, &err);
    if (rc != SNN_OK) fprintf(stderr, "compare failed: %s\n", err.msg);
    snn_compare_free(&c);
    return rc;
}

/* Drops the run file h5 (an interrupted run), gives its best checkpoint the /config text, and
 * runs the comparison again. */
static void rerun_with_best_config(const char *cfg, const char *out, const char *h5,
                                   const char *best, const char *text, snn_compare_stats *st) {
    assert_int_equal(remove(h5), 0);
    set_checkpoint_config(best, text);
    assert_int_equal(run_compare(cfg, out, st), SNN_OK);
}

static int csv_record(const char **p, char fields[32][512]);
static bool plain_decimal(const char *s, double *v);

static void test_run_reuse_and_checkpoint(void **state) {
    (void)state;
    char *cfg = tiny_compare("run.yaml", "");
    char *out = in_dir("out/nested"); /* created with its parent */
    snn_compare_stats st;
    assert_int_equal(run_compare(cfg, out, &st), SNN_OK);
    assert_int_equal(st.simulated, 3);
    assert_int_equal(st.trained + st.from_checkpoint + st.reused, 0);
    assert_int_equal(st.skipped, 1);
    static const char *const live[] = {"bsa_T1", "bsa_T2", "softmax_T1"};
    double mt[3];
    for (int i = 0; i < 3; i++) {
        char *p = snn_xasprintf("%s/%s.h5", out, live[i]);
        mt[i] = mtime_of(p);
        assert_true(mt[i] > 0);
        free(p);
    }
    char *skipped = snn_xasprintf("%s/softmax_T2.h5", out);
    assert_true(mtime_of(skipped) < 0);
    free(skipped);

    /* Second invocation: nothing runs, no run file is rewritten. */
    sleep(1); /* so that a rewrite would show in the mtime even on coarse clocks */
    assert_int_equal(run_compare(cfg, out, &st), SNN_OK);
    assert_int_equal(st.reused, 3);
    assert_int_equal(st.simulated + st.trained + st.from_checkpoint, 0);
    for (int i = 0; i < 3; i++) {
        char *p = snn_xasprintf("%s/%s.h5", out, live[i]);
        assert_true(mtime_of(p) == mt[i]);
        free(p);
    }

    /* A changed config is not reused: every point runs again. */
    char *cfg2 = tiny_compare("run2.yaml", ", data.limit: 8");
    assert_int_equal(run_compare(cfg2, out, &st), SNN_OK);
    assert_int_equal(st.simulated, 3);
    assert_int_equal(st.reused, 0);

    /* Training: the first invocation trains; with the run file gone but the best checkpoint
     * kept (an interrupted run), the next one evaluates the checkpoint instead of training; the
     * one after that reuses the file. */
    char *cfg3 = tiny_compare("run3.yaml", ", train.epochs: 1, train.batch_size: 4");
    char *out3 = in_dir("out3");
    assert_int_equal(run_compare(cfg3, out3, &st), SNN_OK);
    assert_int_equal(st.trained, 3);
    char *h5 = snn_xasprintf("%s/bsa_T2.h5", out3), *best = snn_xasprintf("%s/bsa_T2.best.h5", out3);
    assert_true(mtime_of(best) > 0);
    double best_mt = mtime_of(best);
    assert_int_equal(remove(h5), 0);
    sleep(1);
    assert_int_equal(run_compare(cfg3, out3, &st), SNN_OK);
    assert_int_equal(st.from_checkpoint, 1);
    assert_int_equal(st.reused, 2);
    assert_int_equal(st.trained, 0);
    assert_true(mtime_of(best) == best_mt); /* not retrained */
    assert_true(mtime_of(h5) > 0);
    /* the report still gives its training time, from the checkpoint's history */
    char *csv_path = snn_xasprintf("%s/summary.csv", out3), *csv = snn_test_read_file(csv_path);
    assert_non_null(csv);
    const char *row_start = strstr(csv, "\nbsa_T2,");
    assert_non_null(row_start);
    const char *p = row_start + 1;
    char fields[32][512];
    assert_int_equal(csv_record(&p, fields), 18);
    double tsec = -1;
    assert_true(plain_decimal(fields[15], &tsec));
    assert_true(tsec > 0);
    free(csv);
    free(csv_path);
    assert_int_equal(run_compare(cfg3, out3, &st), SNN_OK);
    assert_int_equal(st.reused, 3);
    assert_int_equal(st.from_checkpoint + st.trained + st.simulated, 0);

    /* A checkpoint whose training was resumed (its /config names train.resume) is the same
     * training: it is evaluated, not trained again. Any other difference still retrains. */
    char *stored = checkpoint_config(best);
    assert_non_null(strstr(stored, "\n  resume: null\n"));
    char *resumed = replace_once(stored, "\n  resume: null\n", "\n  resume: /elsewhere/x.last.h5\n");
    rerun_with_best_config(cfg3, out3, h5, best, resumed, &st);
    assert_int_equal(st.from_checkpoint, 1);
    assert_int_equal(st.trained, 0);
    char *other = replace_once(resumed, "\n  epochs: 1\n", "\n  epochs: 2\n");
    rerun_with_best_config(cfg3, out3, h5, best, other, &st);
    assert_int_equal(st.trained, 1);
    assert_int_equal(st.from_checkpoint, 0);
    free(other);
    free(resumed);
    free(stored);
    free(h5);
    free(best);
    free(cfg);
    free(cfg2);
    free(cfg3);
    free(out);
    free(out3);
}

/* -- minimal CSV and JSON parsers -- */

/* Splits one CSV record (RFC 4180 quoting) at *p into fields; returns the field count. */
static int csv_record(const char **p, char fields[32][512]) {
    int n = 0;
    const char *s = *p;
    for (;;) {
        char *o = fields[n];
        size_t k = 0;
        if (*s == '"') {
            s++;
            while (*s && !(*s == '"' && s[1] != '"')) {
                if (*s == '"') s++;
                if (k < 511) o[k++] = *s;
                s++;
            }
            assert_true(*s == '"');
            s++;
        } else {
            while (*s && *s != ',' && *s != '\n') {
                if (k < 511) o[k++] = *s;
                s++;
            }
        }
        o[k] = '\0';
        n++;
        assert_true(n < 32);
        if (*s == ',') {
            s++;
            continue;
        }
        assert_true(*s == '\n');
        *p = s + 1;
        return n;
    }
}

/* A plain decimal number: optional '-', digits, optional '.' digits, nothing else. */
static bool plain_decimal(const char *s, double *v) {
    const char *p = s;
    if (*p == '-') p++;
    if (!isdigit((unsigned char)*p)) return false;
    while (isdigit((unsigned char)*p)) p++;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p)) return false;
        while (isdigit((unsigned char)*p)) p++;
    }
    if (*p) return false;
    *v = strtod(s, NULL);
    return true;
}

typedef struct jp {
    const char *s;
    int depth;
    int objects;          /* objects at depth 1 (the array's elements) */
    char names[16][64];   /* their "name" values */
    double acc[16];       /* their "accuracy" values */
    int layer_entries[16];
} jp;

static void ws(jp *j) {
    while (*j->s == ' ' || *j->s == '\n' || *j->s == '\t' || *j->s == '\r') j->s++;
}

static void jstring(jp *j, char *out, size_t n) {
    assert_true(*j->s == '"');
    j->s++;
    size_t k = 0;
    while (*j->s != '"') {
        assert_true(*j->s && (unsigned char)*j->s >= 0x20);
        char ch = *j->s++;
        if (ch == '\\') {
            ch = *j->s++;
            assert_non_null(strchr("\"\\/bfnrtu", ch));
            if (ch == 'u') {
                for (int i = 0; i < 4; i++) assert_true(isxdigit((unsigned char)*j->s++));
                ch = '?';
            }
        }
        if (out && k + 1 < n) out[k++] = ch;
    }
    j->s++;
    if (out) out[k] = '\0';
}

static void jvalue(jp *j, const char *key, int obj);

static void jnumber(jp *j, double *v) {
    char *end;
    double x = strtod(j->s, &end);
    assert_true(end > j->s);
    assert_true(*j->s == '-' || isdigit((unsigned char)*j->s));
    if (v) *v = x;
    j->s = end;
}

static void jvalue(jp *j, const char *key, int obj) {
    ws(j);
    char c = *j->s;
    if (c == '{') {
        j->s++;
        j->depth++;
        int me = j->depth == 2 ? j->objects++ : obj;
        ws(j);
        if (*j->s != '}') {
            for (;;) {
                ws(j);
                char k[64];
                jstring(j, k, sizeof k);
                ws(j);
                assert_true(*j->s == ':');
                j->s++;
                jvalue(j, k, me);
                ws(j);
                if (*j->s == ',') {
                    j->s++;
                    continue;
                }
                break;
            }
        }
        assert_true(*j->s == '}');
        j->s++;
        j->depth--;
    } else if (c == '[') {
        j->s++;
        j->depth++;
        ws(j);
        if (*j->s != ']') {
            for (;;) {
                jvalue(j, NULL, obj);
                if (key && !strcmp(key, "layer_energy_pj_per_sample") && obj >= 0 && obj < 16) j->layer_entries[obj]++;
                ws(j);
                if (*j->s == ',') {
                    j->s++;
                    continue;
                }
                break;
            }
        }
        assert_true(*j->s == ']');
        j->s++;
        j->depth--;
    } else if (c == '"') {
        char buf[64];
        jstring(j, buf, sizeof buf);
        if (j->depth == 2 && key && !strcmp(key, "name") && obj < 16) snprintf(j->names[obj], 64, "%s", buf);
    } else if (!strncmp(j->s, "true", 4) || !strncmp(j->s, "null", 4)) {
        j->s += 4;
    } else if (!strncmp(j->s, "false", 5)) {
        j->s += 5;
    } else {
        double v;
        jnumber(j, &v);
        if (j->depth == 2 && key && !strcmp(key, "accuracy") && obj < 16) j->acc[obj] = v;
    }
}

static double h5_summary_attr(const char *file, const char *name) {
    hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    double v = snn_test_attr_f64(f, "/summary", name);
    H5Fclose(f);
    return v;
}

static void test_reports(void **state) {
    (void)state;
    char *cfg = tiny_compare("rep.yaml", "");
    char *out = in_dir("rep");
    snn_compare_stats st;
    assert_int_equal(run_compare(cfg, out, &st), SNN_OK);
    static const char *const live[] = {"bsa_T1", "bsa_T2", "softmax_T1"};

    /* summary.csv: the header, one row per run in order, plain decimals matching the run file */
    char *path = snn_xasprintf("%s/summary.csv", out), *csv = snn_test_read_file(path);
    free(path);
    assert_non_null(csv);
    const char *p = csv;
    char fields[32][512];
    assert_int_equal(csv_record(&p, fields), 18);
    assert_string_equal(fields[0], "name");
    assert_string_equal(fields[15], "train_seconds");
    assert_string_equal(fields[12], "accuracy");
    assert_string_equal(fields[9], "compute_energy_pj_per_sample");
    assert_string_equal(fields[17], "pareto");
    double energy[3], acc[3];
    bool pareto[3];
    for (int i = 0; i < 3; i++) {
        assert_true(*p);
        assert_int_equal(csv_record(&p, fields), 18);
        assert_string_equal(fields[0], live[i]);
        assert_string_equal(fields[15], ""); /* not trained */
        assert_string_equal(fields[3], i < 2 ? "bsa" : "softmax");
        for (int k = 4; k < 17; k++) {
            if (k == 15) continue;
            double v;
            if (!plain_decimal(fields[k], &v)) fail_msg("%s: field %d '%s' is not a plain decimal", live[i], k, fields[k]);
        }
        plain_decimal(fields[12], &acc[i]);
        plain_decimal(fields[9], &energy[i]);
        double T;
        plain_decimal(fields[4], &T);
        assert_true(T == (i == 1 ? 2 : 1));
        pareto[i] = !strcmp(fields[17], "true");
        assert_true(pareto[i] || !strcmp(fields[17], "false"));
        char *h5 = snn_xasprintf("%s/%s.h5", out, live[i]);
        assert_true(fabs(acc[i] - h5_summary_attr(h5, "accuracy")) <= 1e-9);
        double e = h5_summary_attr(h5, "compute_energy_pj_per_sample");
        assert_true(fabs(energy[i] - e) <= 1e-9 * e);
        free(h5);
    }
    assert_string_equal(p, ""); /* nothing more: the skipped point has no row */
    /* the Pareto flags agree with the numbers */
    for (int i = 0; i < 3; i++) {
        bool dominated = false;
        for (int j = 0; j < 3; j++)
            dominated |= energy[j] <= energy[i] && acc[j] >= acc[i] && (energy[j] < energy[i] || acc[j] > acc[i]);
        assert_int_equal(pareto[i], !dominated);
    }
    free(csv);

    /* summary.json: an array of 3 objects with the same names and numbers, per-layer energy */
    path = snn_xasprintf("%s/summary.json", out);
    char *json = snn_test_read_file(path);
    free(path);
    assert_non_null(json);
    jp j = {.s = json};
    ws(&j);
    assert_true(*j.s == '[');
    jvalue(&j, NULL, -1);
    ws(&j);
    assert_string_equal(j.s, "");
    assert_int_equal(j.objects, 3);
    for (int i = 0; i < 3; i++) {
        assert_string_equal(j.names[i], live[i]);
        assert_true(j.acc[i] == acc[i]);
        assert_true(j.layer_entries[i] > 5);
    }
    free(json);

    /* report.html: self-contained, one circle and one bar group per run, rates for SNNs only */
    path = snn_xasprintf("%s/report.html", out);
    char *html = snn_test_read_file(path);
    free(path);
    assert_non_null(html);
    assert_int_equal(count(html, "<circle class=\"run\""), 3);
    assert_int_equal(count(html, "<g class=\"run\""), 3);
    assert_int_equal(count(html, "<g class=\"rates\""), 2);
    assert_int_equal(count(html, "<polyline class=\"pareto\""), 1);
    assert_int_equal(count(html, "<svg "), 3);
    assert_int_equal(count(html, "</svg>"), 3);
    assert_int_equal(count(html, "<tr class=\"run"), 3);
    assert_int_equal(count(html, "<script"), 0);
    assert_int_equal(count(html, "http"), count(html, "xmlns=\"http://www.w3.org/2000/svg\""));
    assert_int_equal(count(html, "data-pareto=\"true\" cx="), (int)pareto[0] + (int)pareto[1] + (int)pareto[2]);
    for (int i = 0; i < 3; i++) {
        char want[128];
        snprintf(want, sizeof want, "<circle class=\"run\" data-run=\"%s\"", live[i]);
        assert_int_equal(count(html, want), 1);
    }
    assert_non_null(strstr(html, "<ul id=\"skipped\">\n<li><code>softmax_T2</code>: model.timesteps (2) must be 1"));
    free(html);

    /* report.md: a row and a reproducing command per run, the skipped point listed */
    path = snn_xasprintf("%s/report.md", out);
    char *md = snn_test_read_file(path);
    free(path);
    assert_non_null(md);
    for (int i = 0; i < 3; i++) {
        char want[256];
        snprintf(want, sizeof want, "| %s | %s | %d |", live[i], i < 2 ? "bsa" : "softmax", i == 1 ? 2 : 1);
        assert_non_null(strstr(md, want));
        snprintf(want, sizeof want, "--set model.timesteps=%d -o %s/%s.h5\n", i == 1 ? 2 : 1, out, live[i]);
        assert_non_null(strstr(md, want));
    }
    assert_int_equal(count(md, "build/spikesim run "), 3);
    assert_non_null(strstr(md, "- `softmax_T2` (model.attention.kind=softmax, model.timesteps=2): "));
    free(md);

    /* A run file whose accuracy is a 20-bit integer (a corrupt type for libhdf5's converters):
     * the value is not read, the report names what it lacks. */
    char *h5 = snn_xasprintf("%s/bsa_T1.h5", out);
    hid_t f = H5Fopen(h5, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(H5Adelete_by_name(f, "/summary", "accuracy", H5P_DEFAULT) >= 0);
    hid_t i20 = H5Tcopy(H5T_STD_I32LE), scalar = H5Screate(H5S_SCALAR);
    H5Tset_precision(i20, 20);
    hid_t a = H5Acreate_by_name(f, "/summary", "accuracy", i20, scalar, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    const int32_t one = 1;
    H5Awrite(a, H5T_NATIVE_INT32, &one);
    H5Aclose(a);
    H5Sclose(scalar);
    H5Tclose(i20);
    H5Fclose(f);
    snn_compare c;
    assert_int_equal(snn_compare_load(&c, cfg, stderr), SNN_OK);
    snn_err err = {{0}};
    assert_int_equal(snn_compare_report(&c, out, &err), SNN_ERR);
    char *want = snn_xasprintf("%s: /summary lacks accuracy or compute_energy_pj_per_sample", h5);
    assert_string_equal(err.msg, want);
    free(want);
    snn_compare_free(&c);
    free(h5);
    free(cfg);
    free(out);
}

/* ---- the command line ----------------------------------------------------------------------- */

static void test_cli(void **state) {
    (void)state;
    char *cfg = tiny_compare("cli.yaml", "");
    char *out = in_dir("cli");
    snn_test_cli r = {0};
    /* --dry-run writes nothing */
    assert_int_equal(snn_test_cli_run(&r, "compare %s -o %s --dry-run", cfg, out), 0);
    assert_non_null(strstr(r.err, "compare: [2/3] bsa_T2: would be simulated -> "));
    assert_non_null(strstr(r.err, "compare: softmax_T2: skipped: "));
    struct stat sb;
    assert_int_equal(stat(out, &sb), -1);
    /* a real run, then a rerun that reuses everything */
    assert_int_equal(snn_test_cli_run(&r, "compare %s -o %s --threads 1", cfg, out), 0);
    assert_int_equal(snn_test_cli_run(&r, "compare %s -o %s --threads 1", cfg, out), 0);
    assert_non_null(strstr(r.err, "compare: 0 trained, 0 simulated, 0 evaluated from checkpoints, 3 reused, 1 skipped;"));
    /* config and usage errors exit 2 with one line each */
    char *bad = write_in_dir("clibad.yaml", "base: nowhere.yaml\nfoo: 1\n");
    assert_int_equal(snn_test_cli_run(&r, "compare %s", bad), 2);
    char want[1024];
    snprintf(want, sizeof want, "%s:2:1: error: unknown key 'foo' (expected name, base, grid, runs, set, skip_invalid)\n", bad);
    assert_string_equal(r.err, want);
    assert_int_equal(snn_test_cli_run(&r, "compare"), 2);
    assert_int_equal(snn_test_cli_run(&r, "compare %s %s", cfg, cfg), 2);
    assert_int_equal(snn_test_cli_run(&r, "compare %s --bogus", cfg), 2);
    /* an output directory that cannot be created is a runtime error (1) */
    assert_int_equal(snn_test_cli_run(&r, "compare %s -o /proc/nope/x --quiet", cfg), 1);
    snn_test_cli_free(&r);
    free(bad);
    free(cfg);
    free(out);
}

/* The shipped compare configs load and expand as documented. */
static void test_shipped_configs(void **state) {
    (void)state;
    snn_compare c;
    assert_int_equal(snn_compare_load(&c, "configs/compare_quick.yaml", stderr), 0);
    assert_int_equal(c.n_runs, 12);
    int skipped = 0;
    for (int i = 0; i < c.n_runs; i++) skipped += c.runs[i].skipped;
    assert_int_equal(skipped, 3);
    assert_string_equal(c.runs[0].name, "bsa_T1");
    assert_string_equal(c.runs[11].name, "primal_T4");
    assert_true(c.runs[11].skipped);
    snn_compare_free(&c);
    assert_int_equal(snn_compare_load(&c, "configs/compare_attention.yaml", stderr), 0);
    static const char *const names[] = {"fmnist_bsa", "fmnist_ssa", "fmnist_sdsa", "fmnist_softmax", "fmnist_cat", "fmnist_primal"};
    assert_int_equal(c.n_runs, 6);
    for (int i = 0; i < 6; i++) {
        assert_string_equal(c.runs[i].name, names[i]);
        assert_false(c.runs[i].skipped);
    }
    snn_compare_free(&c);
}

static int setup(void **state) {
    (void)state;
    snn_h5_init();
    dir = snn_test_tmp_path("compare");
    mkdir(dir, 0777);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    if (snn_test_remove_tree(dir) != 0) return -1;
    free(dir);
    return 0;
}

int main(int argc, char **argv) {
    (void)argc;
    snn_test_cli_locate(argv[0]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grid_expansion),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_run_reuse_and_checkpoint),
        cmocka_unit_test(test_reports),
        cmocka_unit_test(test_cli),
        cmocka_unit_test(test_shipped_configs),
    };
    return cmocka_run_group_tests_name("compare", tests, setup, teardown);
}
