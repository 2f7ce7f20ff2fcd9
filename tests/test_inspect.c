/*
 * test_inspect.c: `spikesim inspect`, `raster` and `rates` as a user meets them. A tiny BSA
 * run and an ANN run are simulated once (snn_run on inline synthetic configs); the built
 * binary is then run on them and its output checked against what the test reads from the
 * same file itself: summary numbers, every population, one SVG mark per nonzero spike, one
 * heatmap cell per (population, timestep), well-formed XML, exact one-line errors with their
 * exit codes, and failed commands that leave no file and keep an existing one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <dirent.h>
#include <hdf5.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sim/config.h"
#include "sim/h5io.h"
#include "sim/inspect.h"
#include "sim/run.h"
#include "tests/testutil.h"

static char *bsa_run, *ann_run, *dir;

/* T = 3, 4 recorded samples; init_std 1.0 so that every population fires (9 to 18 % of
 * neurons per step) and the bipolar q/k populations emit -1 spikes. */
static const char bsa_cfg[] =
    "name: insp\nseed: 9\n"
    "data: {source: synthetic, synthetic_samples: 12}\n"
    "model: {image_size: 16, patch: 4, dim: 16, heads: 2, blocks: 1, mlp_ratio: 2, timesteps: 3,"
    " init_std: 1.0, attention: {kind: bsa}}\n"
    "record: {samples: 4}\n";
static const char ann_cfg[] =
    "name: insp_ann\nseed: 9\n"
    "data: {source: synthetic, synthetic_samples: 8}\n"
    "model: {image_size: 16, patch: 4, dim: 16, heads: 2, blocks: 1, mlp_ratio: 2, timesteps: 1,"
    " attention: {kind: softmax}}\n";

/* ---- helpers -------------------------------------------------------------------------------- */

static int count_str(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = strstr(s, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

/* True when one line of s contains a and, after it, b (column padding in between varies). */
static bool line_has(const char *s, const char *a, const char *b) {
    for (const char *p = strstr(s, a); p; p = strstr(p + 1, a)) {
        const char *eol = strchr(p + strlen(a), '\n'), *q = strstr(p + strlen(a), b);
        if (q && (!eol || q < eol)) return true;
    }
    return false;
}

/* The population groups of /nodes (those with stats: not the analog embed), in the forward
 * order of the /ops `layers` attribute, read here independently of sim/inspect.c. */
static int populations(const char *path, char names[][64], int max) {
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    hid_t a = H5Aopen_by_name(f, "/ops", "layers", H5P_DEFAULT, H5P_DEFAULT);
    assert_true(a >= 0);
    hid_t s = H5Aget_space(a);
    int n = (int)H5Sget_simple_extent_npoints(s);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    char **layers = calloc((size_t)n, sizeof *layers);
    assert_true(H5Aread(a, t, layers) >= 0);
    int k = 0;
    for (int i = 0; i < n; i++) {
        char g[128], st[160];
        snprintf(g, sizeof g, "/nodes/%s", layers[i]);
        snprintf(st, sizeof st, "%s/stats", g);
        if (H5Lexists(f, "/nodes", H5P_DEFAULT) > 0 && H5Lexists(f, g, H5P_DEFAULT) > 0 &&
            H5Lexists(f, st, H5P_DEFAULT) > 0) {
            assert_true(k < max);
            snprintf(names[k++], 64, "%s", layers[i]);
        }
        H5free_memory(layers[i]);
    }
    free(layers);
    H5Tclose(t);
    H5Sclose(s);
    H5Aclose(a);
    H5Fclose(f);
    return k;
}

/* Dataset dp of the run file at path, of the given rank, as type (malloc'd; shape in dims),
 * read here independently of sim/inspect.c. */
static void *read_data(const char *path, const char *dp, snn_h5_type type, int rank, uint64_t *dims) {
    int r;
    void *data;
    snn_err err = {{0}};
    if (snn_h5_read(path, dp, type, &r, dims, &data, &err) != SNN_OK) fail_msg("%s", err.msg);
    assert_int_equal(r, rank);
    return data;
}

/* /nodes/<pop>/stats/firing_rate_per_step of the BSA run (T = 3 values, malloc'd). */
static double *rate_per_step(const char *pop) {
    char dp[160];
    snprintf(dp, sizeof dp, "/nodes/%.63s/stats/firing_rate_per_step", pop);
    uint64_t dims[4];
    double *rate = read_data(bsa_run, dp, SNN_H5_F64, 1, dims);
    assert_int_equal(dims[0], 3);
    return rate;
}

/* Nonzero spikes of one recorded sample of a population, read from the file. */
static void spike_counts(const char *path, const char *pop, int sample, int *pos, int *neg) {
    char p[256];
    snprintf(p, sizeof p, "/nodes/%s/observables/spikes/data", pop);
    uint64_t dims[4];
    int8_t *data = read_data(path, p, SNN_H5_I8, 3, dims);
    const int8_t *s = data + (size_t)sample * dims[1] * dims[2];
    *pos = *neg = 0;
    for (size_t i = 0; i < dims[1] * dims[2]; i++) {
        *pos += s[i] > 0;
        *neg += s[i] < 0;
    }
    free(data);
}

/* A minimal XML well-formedness check (what an SVG viewer's parser insists on): one root
 * element, tags nested and closed in order, attribute values quoted and unique per element,
 * no raw '<' in values, '&' only as a character or predefined entity reference. Skips the
 * prolog, comments and declarations. Returns NULL when well-formed, else what is wrong;
 * *elements counts the elements. */
static const char *xml_check(const char *s, int *elements) {
    static char why[160];
    char stack[64][64];
    int depth = 0, roots = 0;
    *elements = 0;
#define BAD(...) do { snprintf(why, sizeof why, __VA_ARGS__); return why; } while (0)
#define NAMECH(c) (isalnum((unsigned char)(c)) || (c) == '_' || (c) == ':' || (c) == '-' || (c) == '.')
    for (const char *p = s; *p;) {
        if (*p == '&') {
            const char *semi = strchr(p, ';');
            if (!semi || semi - p > 10) BAD("bare '&' at offset %ld", (long)(p - s));
            if (strncmp(p, "&amp;", 5) && strncmp(p, "&lt;", 4) && strncmp(p, "&gt;", 4) &&
                strncmp(p, "&quot;", 6) && strncmp(p, "&apos;", 6) && strncmp(p, "&#", 2))
                BAD("unknown entity at offset %ld", (long)(p - s));
            p = semi + 1;
            continue;
        }
        if (*p != '<') {
            if (depth == 0 && !isspace((unsigned char)*p)) BAD("text outside the root at offset %ld", (long)(p - s));
            p++;
            continue;
        }
        if (!strncmp(p, "<?", 2)) {
            const char *e = strstr(p, "?>");
            if (!e) BAD("unterminated <?");
            p = e + 2;
        } else if (!strncmp(p, "<!--", 4)) {
            const char *e = strstr(p, "-->");
            if (!e) BAD("unterminated comment");
            p = e + 3;
        } else if (!strncmp(p, "<!", 2)) {
            const char *e = strchr(p, '>');
            if (!e) BAD("unterminated declaration");
            p = e + 1;
        } else if (p[1] == '/') {
            const char *n = p + 2, *e = n;
            while (NAMECH(*e)) e++;
            if (depth == 0) BAD("close tag </%.*s> with nothing open", (int)(e - n), n);
            if ((size_t)(e - n) != strlen(stack[depth - 1]) || strncmp(n, stack[depth - 1], (size_t)(e - n)))
                BAD("</%.*s> closes <%.60s>", (int)(e - n), n, stack[depth - 1]);
            while (isspace((unsigned char)*e)) e++;
            if (*e != '>') BAD("malformed close tag");
            depth--;
            p = e + 1;
        } else {
            const char *n = p + 1, *e = n;
            if (!isalpha((unsigned char)*n) && *n != '_') BAD("bad tag name at offset %ld", (long)(p - s));
            while (NAMECH(*e)) e++;
            if (depth == 0 && roots++) BAD("second root element");
            (*elements)++;
            char name[64];
            snprintf(name, sizeof name, "%.*s", (int)(e - n), n);
            char attrs[64][48];
            int na = 0;
            for (;;) {
                const char *ws = e;
                while (isspace((unsigned char)*e)) e++;
                if (*e == '>' || (*e == '/' && e[1] == '>')) break;
                if (e == ws) BAD("no space before attribute in <%s>", name);
                const char *an = e;
                while (NAMECH(*e)) e++;
                if (e == an) BAD("bad attribute in <%s>", name);
                for (int i = 0; i < na; i++)
                    if ((size_t)(e - an) == strlen(attrs[i]) && !strncmp(an, attrs[i], (size_t)(e - an)))
                        BAD("duplicate attribute %s in <%s>", attrs[i], name);
                if (na < 64) snprintf(attrs[na++], 48, "%.*s", (int)(e - an), an);
                if (*e++ != '=') BAD("attribute without '=' in <%s>", name);
                char q = *e++;
                if (q != '"' && q != '\'') BAD("unquoted attribute value in <%s>", name);
                while (*e && *e != q) {
                    if (*e == '<') BAD("'<' in an attribute of <%s>", name);
                    if (*e == '&' && strncmp(e, "&amp;", 5) && strncmp(e, "&lt;", 4) && strncmp(e, "&gt;", 4) &&
                        strncmp(e, "&quot;", 6) && strncmp(e, "&apos;", 6) && strncmp(e, "&#", 2))
                        BAD("bare '&' in an attribute of <%s>", name);
                    e++;
                }
                if (!*e) BAD("unterminated attribute value in <%s>", name);
                e++;
            }
            if (*e == '/') {
                p = e + 2;
            } else {
                if (depth == 64) BAD("nesting too deep");
                snprintf(stack[depth++], 64, "%s", name);
                p = e + 1;
            }
        }
    }
    if (depth) BAD("<%s> never closed", stack[depth - 1]);
    if (!roots) BAD("no root element");
    return NULL;
#undef BAD
#undef NAMECH
}

static void assert_well_formed(const char *svg) {
    int n;
    const char *why = xml_check(svg, &n);
    if (why) fail_msg("SVG is not well-formed XML: %s", why);
    assert_true(n > 10);
    assert_non_null(strstr(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\""));
    /* Self-contained: nothing a viewer would fetch or run. */
    assert_null(strstr(svg, "<script"));
    assert_null(strstr(svg, "href"));
    assert_null(strstr(svg, "<image"));
}

/* Temporary files a failed write could have left in dir. */
static int leftovers(const char *d) {
    DIR *dp = opendir(d);
    assert_non_null(dp);
    int n = 0;
    for (struct dirent *e; (e = readdir(dp));) n += strstr(e->d_name, ".tmp.") != NULL;
    closedir(dp);
    return n;
}

static char *in_dir(const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* ---- fixtures ------------------------------------------------------------------------------- */

static void make_run(const char *yaml, const char *path) {
    snn_config cfg;
    assert_int_equal(snn_config_load_string(&cfg, yaml, "inline", NULL, 0, stderr), 0);
    snn_run_opts o = {.out_path = path, .threads = 1};
    snn_summary s;
    snn_err err = {{0}};
    bool cfg_err = false;
    if (snn_run(&cfg, &o, &s, &cfg_err, &err) != SNN_OK) fail_msg("%s", err.msg);
    snn_config_free(&cfg);
}

static int setup(void **state) {
    (void)state;
    snn_h5_init();
    dir = snn_test_tmp_path("inspect");
    mkdir(dir, 0777);
    bsa_run = in_dir("bsa.h5");
    ann_run = in_dir("ann.h5");
    make_run(bsa_cfg, bsa_run);
    make_run(ann_cfg, ann_run);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    if (snn_test_remove_tree(dir) != 0) return -1;
    free(bsa_run);
    free(ann_run);
    free(dir);
    return 0;
}

/* ---- inspect -------------------------------------------------------------------------------- */

static void test_inspect_summary_and_populations(void **state) {
    (void)state;
    char want[512];
    snn_test_cli r = {0};
    snn_test_cli_run(&r, "inspect %s", bsa_run);
    if (r.status != 0) fail_msg("inspect failed: %s", r.err);
    assert_string_equal(r.err, "");

    /* The summary numbers, read back from the file and formatted as docs/inspect.md says. */
    hid_t f = H5Fopen(bsa_run, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
#define WANT(fmt, v)                                                                            \
    do {                                                                                        \
        snprintf(want, sizeof want, fmt, v);                                                    \
        if (!strstr(r.out, want)) fail_msg("inspect output lacks '%s'", want);                  \
    } while (0)
    WANT("accuracy     %.2f %%\n", 100 * snn_test_attr_f64(f, "/summary", "accuracy"));
    WANT("parameters   %.0f\n", snn_test_attr_f64(f, "/summary", "parameters"));
    WANT("samples      %.0f evaluated, 4 recorded", snn_test_attr_f64(f, "/summary", "samples_evaluated"));
    WANT("firing rate  %.4f spikes / neuron / timestep", snn_test_attr_f64(f, "/summary", "firing_rate_mean"));
    /* ops by class are summed from /ops/per_sample; the ac sum must equal /summary's SOPs */
    WANT("ops/sample   %.3g ac, ", snn_test_attr_f64(f, "/summary", "sops_per_sample"));
    WANT(" %.3g mac, ", snn_test_attr_f64(f, "/summary", "macs_per_sample"));
    WANT("wall time    %.3g s\n", snn_test_attr_f64(f, "/summary", "wall_seconds"));
    WANT("energy       %.4g nJ / sample (energy preset horowitz45nm)\n",
         snn_test_attr_f64(f, "/summary", "energy_pj_per_sample") / 1000);
#undef WANT
    /* Attributes inspect has no special line for still show up, with their values. */
    snprintf(want, sizeof want, " %.0f\n", snn_test_attr_f64(f, "/summary", "embed_macs_per_sample"));
    assert_true(line_has(r.out, "\nembed_macs_per_sample ", want));
    H5Fclose(f);
    assert_non_null(strstr(r.out, "run          insp: attention bsa, T=3, N=16, D=16, heads=2, blocks=1\n"));
    /* The summary comes before the tree. */
    assert_true(strstr(r.out, "accuracy") < strstr(r.out, "\ntree "));

    /* Every population, once in the table (forward order, with its per-step rates) and once
     * in the tree. */
    char pops[32][64];
    int n = populations(bsa_run, pops, 32);
    assert_int_equal(n, 8); /* lif_in, q, k, v, attn, mlp.lif_in, hidden, head */
    snprintf(want, sizeof want, "populations  %d, forward order", n);
    assert_non_null(strstr(r.out, want));
    const char *prev = r.out;
    for (int i = 0; i < n; i++) {
        snprintf(want, sizeof want, "\n  %.63s ", pops[i]);
        const char *at = strstr(r.out, want);
        if (!at) fail_msg("population %s missing from the table", pops[i]);
        assert_true(at > prev); /* in forward order */
        prev = at;
        double *rate = rate_per_step(pops[i]);
        snprintf(want, sizeof want, "per step %.3f %.3f %.3f\n", rate[0], rate[1], rate[2]);
        const char *eol = strchr(at + 1, '\n');
        const char *hit = strstr(at, want);
        if (!hit || hit > eol) fail_msg("%s: table lacks '%s'", pops[i], want);
        free(rate);
        /* expanded ("name/" alone) or compacted ("name/  same layout as ...") */
        char want2[512];
        snprintf(want, sizeof want, "\n    %.63s/ ", pops[i]);
        snprintf(want2, sizeof want2, "\n    %.63s/\n", pops[i]);
        if (!strstr(r.out, want) && !strstr(r.out, want2))
            fail_msg("population %s missing from the tree", pops[i]);
    }
    /* Bipolar q/k spikes are told apart in the tree even where the layout is compacted. */
    assert_non_null(strstr(r.out, "blocks.0.attn.q_lif/"));
    assert_int_equal(count_str(r.out, "spike (-1, 0, +1)"), 2);
    /* Datasets show dtype, shape and units. */
    assert_true(line_has(r.out, "  data ", "int8 [4, 3, 256]"));
    assert_true(line_has(r.out, "int8 [4, 3, 256]", " spike (0, 1)\n"));
    assert_true(line_has(r.out, "    logits ", "float32 [12, 10]"));
    snn_test_cli_free(&r);
}

/* Anything HDF5: the ANN run (no populations), a golden file, and a file with every odd
 * object the tree has to cope with. */
static void test_inspect_any_hdf5(void **state) {
    (void)state;
    snn_test_cli r = {0};
    snn_test_cli_run(&r, "inspect %s", ann_run);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "attention softmax, T=1"));
    assert_null(strstr(r.out, "\npopulations  "));

    snn_test_cli_run(&r, "inspect tests/reference/golden_bsa.h5");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "run          golden_bsa: attention bsa"));
    assert_non_null(strstr(r.out, "tensors in /parameters)"));
    assert_non_null(strstr(r.out, "  expected/\n"));
    snn_test_cli_free(&r);

    char *odd = in_dir("odd.h5");
    hid_t f = H5Fcreate(odd, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t g = H5Gcreate2(f, "/loop", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(H5Lcreate_hard(f, "/loop", g, "back", H5P_DEFAULT, H5P_DEFAULT) >= 0);
    assert_true(H5Lcreate_soft("/nowhere", f, "dangling", H5P_DEFAULT, H5P_DEFAULT) >= 0);
    assert_true(H5Lcreate_external("other.h5", "/x", f, "ext", H5P_DEFAULT, H5P_DEFAULT) >= 0);
    hsize_t d5[5] = {1, 2, 3, 4, 5}, d1[1] = {20};
    hid_t s5 = H5Screate_simple(5, d5, NULL), s1 = H5Screate_simple(1, d1, NULL);
    hid_t ds = H5Dcreate2(f, "/five_d", H5T_NATIVE_FLOAT, s5, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t ct = H5Tcreate(H5T_COMPOUND, 16);
    H5Tinsert(ct, "a", 0, H5T_NATIVE_DOUBLE);
    H5Tinsert(ct, "b", 8, H5T_NATIVE_INT64);
    hid_t dc = H5Dcreate2(f, "/compound", ct, s1, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, 6);
    H5Tset_strpad(st, H5T_STR_SPACEPAD);
    hid_t scalar = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, "fixed", st, scalar, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, st, "ab    ");
    H5Aclose(a);
    int64_t many[20];
    for (int i = 0; i < 20; i++) many[i] = i * 10;
    a = H5Acreate2(f, "many", H5T_STD_I64LE, s1, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, many);
    H5Aclose(a);
    /* A 20-bit integer (a corrupt type for libhdf5's converters): named, never read. */
    hid_t i20 = H5Tcopy(H5T_STD_I32LE);
    H5Tset_precision(i20, 20);
    a = H5Acreate2(f, "odd20", i20, scalar, H5P_DEFAULT, H5P_DEFAULT);
    const int32_t seven = 7;
    H5Awrite(a, H5T_NATIVE_INT32, &seven);
    H5Aclose(a);
    H5Tclose(i20);
    hid_t sn = H5Screate(H5S_NULL);
    a = H5Acreate2(f, "nothing", H5T_NATIVE_INT, sn, H5P_DEFAULT, H5P_DEFAULT);
    H5Aclose(a);
    H5Sclose(sn);
    H5Sclose(scalar);
    H5Tclose(st);
    H5Tclose(ct);
    H5Dclose(dc);
    H5Dclose(ds);
    H5Sclose(s1);
    H5Sclose(s5);
    H5Gclose(g);
    H5Fclose(f);
    snn_test_cli_run(&r, "inspect %s", odd);
    if (r.status != 0) fail_msg("inspect of an odd file failed: %s", r.err);
    assert_non_null(strstr(r.out, "float32 [1, 2, 3, 4, 5]"));
    assert_non_null(strstr(r.out, "compound(2 fields) [20]"));
    assert_true(line_has(r.out, "  dangling ", " -> /nowhere (soft link, not followed)\n"));
    assert_true(line_has(r.out, "  ext ", " -> other.h5:/x (external link, not followed)\n"));
    assert_true(line_has(r.out, "    back/ ", " hard link to /loop (an ancestor, not followed)\n"));
    assert_true(line_has(r.out, "\nfixed ", " ab\n")); /* space padding stripped */
    assert_true(line_has(r.out, "\nmany ", " [0, 10, 20, 30, 40, 50, 60, 70, ... (20 values)]\n"));
    assert_true(line_has(r.out, "\nnothing ", " (empty int32)\n"));
    assert_true(line_has(r.out, "\nodd20 ", " <int32 (non-standard), 1 values>\n"));
    assert_int_equal(count_str(r.out, "loop/"), 1);
    snn_test_cli_free(&r);
    free(odd);
}

/* ---- raster --------------------------------------------------------------------------------- */

static void check_raster(const char *pop, int sample, bool bipolar) {
    char *svg = in_dir("raster.svg");
    snn_test_cli r = {0};
    snn_test_cli_run(&r, "raster %s --population %s --sample %d -o %s", bsa_run, pop, sample, svg);
    if (r.status != 0) fail_msg("raster failed: %s", r.err);
    char *text = snn_test_read_file(svg);
    assert_non_null(text);
    assert_well_formed(text);
    int pos, neg;
    spike_counts(bsa_run, pop, sample, &pos, &neg);
    assert_true(pos > 0);
    if (bipolar) assert_true(neg > 0);
    else assert_int_equal(neg, 0);
    /* Exactly one mark per nonzero spike, by class. */
    assert_int_equal(count_str(text, "class=\"spike-pos\""), pos);
    assert_int_equal(count_str(text, "class=\"spike-neg\""), neg);
    /* Title, legend and axes. */
    char want[256];
    snprintf(want, sizeof want, "%s, sample %d: firing rate %.4f</text>", pop, sample,
             (double)(pos + neg) / (3.0 * 256.0));
    if (!strstr(text, want)) fail_msg("SVG lacks '%s'", want);
    snprintf(want, sizeof want, ">%s (%d)</text>", bipolar ? "+1 spike" : "spike", pos);
    assert_non_null(strstr(text, want));
    snprintf(want, sizeof want, ">-1 spike (%d)</text>", neg);
    if (bipolar) assert_non_null(strstr(text, want));
    else assert_null(strstr(text, "-1 spike"));
    assert_non_null(strstr(text, ">timestep</text>"));
    assert_non_null(strstr(text, ">neuron (token * 16 + channel)</text>"));
    assert_int_equal(count_str(text, "class=\"col-bg\""), 3);
    free(text);
    snn_test_cli_free(&r);
    remove(svg);
    free(svg);
}

static void test_raster_one_mark_per_spike(void **state) {
    (void)state;
    check_raster("blocks.0.attn.q_lif", 1, true);  /* BipolarLIF: two classes */
    check_raster("blocks.0.attn.k_lif", 3, true);
    check_raster("blocks.0.lif_in", 0, false);
}

/* ---- rates ---------------------------------------------------------------------------------- */

static void test_rates_one_cell_per_population_and_step(void **state) {
    (void)state;
    char *svg = in_dir("rates.svg");
    snn_test_cli r = {0};
    snn_test_cli_run(&r, "rates %s -o %s", bsa_run, svg);
    if (r.status != 0) fail_msg("rates failed: %s", r.err);
    char *text = snn_test_read_file(svg);
    assert_non_null(text);
    assert_well_formed(text);
    char pops[32][64];
    int n = populations(bsa_run, pops, 32);
    assert_int_equal(count_str(text, "class=\"cell\""), n * 3);
    assert_int_equal(count_str(text, "class=\"value\""), n * 3);
    const char *prev = text;
    for (int i = 0; i < n; i++) {
        char want[256];
        snprintf(want, sizeof want, ">%.63s</text>", pops[i]);
        const char *at = strstr(text, want);
        if (!at) fail_msg("row label %s missing", pops[i]);
        assert_true(at > prev); /* rows in forward order */
        prev = at;
        double *rate = rate_per_step(pops[i]);
        for (int t = 0; t < 3; t++) {
            snprintf(want, sizeof want, "<title>%.63s, timestep %d: %.4f</title>", pops[i], t, rate[t]);
            if (!strstr(text, want)) fail_msg("SVG lacks the cell '%s'", want);
        }
        free(rate);
    }
    assert_non_null(strstr(text, "fill=\"url(#viridis)\""));
    free(text);
    snn_test_cli_free(&r);
    remove(svg);
    free(svg);
}

/* ---- errors --------------------------------------------------------------------------------- */

/* Runs args (which write -o keep.svg) and checks the exit code, the exact stderr, and that the
 * existing keep.svg is untouched and no temporary file is left. */
static void expect_fail(const char *args, int status, const char *err_line) {
    char *keep = in_dir("keep.svg");
    assert_int_equal(snn_test_write_file(keep, "keep me\n", 8), 0);
    struct stat before, after;
    assert_int_equal(stat(keep, &before), 0);
    snn_test_cli r = {0};
    snn_test_cli_run(&r, "%s", args);
    if (r.status != status) fail_msg("'%s': exit %d, expected %d (%s)", args, r.status, status, r.err);
    if (strcmp(r.err, err_line)) fail_msg("'%s':\n got  %s\n want %s", args, r.err, err_line);
    char *text = snn_test_read_file(keep);
    assert_string_equal(text, "keep me\n");
    assert_int_equal(stat(keep, &after), 0);
    assert_int_equal(before.st_ino, after.st_ino);
    assert_int_equal(leftovers(dir), 0);
    free(text);
    snn_test_cli_free(&r);
    free(keep);
}

static void test_errors_are_one_line_and_lose_nothing(void **state) {
    (void)state;
    char *keep = in_dir("keep.svg"), *junk = in_dir("junk.txt");
    assert_int_equal(snn_test_write_file(junk, "not hdf5\n", 9), 0);
    char args[2048], want[2048];

    char pops[32][64], list[1024] = "";
    int n = populations(bsa_run, pops, 32);
    for (int i = 0; i < n; i++) {
        if (i) strcat(list, ", ");
        strcat(list, pops[i]);
    }
    snprintf(args, sizeof args, "raster %s --population nope -o %s", bsa_run, keep);
    snprintf(want, sizeof want, "spikesim: error: %s: no population 'nope'; populations: %s\n", bsa_run, list);
    expect_fail(args, 2, want);

    snprintf(args, sizeof args, "raster %s --population blocks.0.lif_in --sample 4 -o %s", bsa_run, keep);
    snprintf(want, sizeof want,
             "spikesim: error: %s: sample 4 out of range: blocks.0.lif_in recorded samples 0..3\n", bsa_run);
    expect_fail(args, 2, want);

    snprintf(args, sizeof args, "raster %s --population blocks.0.lif_in --sample -1 -o %s", bsa_run, keep);
    expect_fail(args, 2, "spikesim: error: --sample expects a non-negative integer, got '-1'\n");

    snprintf(args, sizeof args, "rates %s -o %s", ann_run, keep);
    snprintf(want, sizeof want,
             "spikesim: error: %s: the run has no spiking populations (attention softmax; no "
             "/nodes/<population> groups)\n", ann_run);
    expect_fail(args, 1, want);
    snprintf(args, sizeof args, "raster %s --population head_lif -o %s", ann_run, keep);
    expect_fail(args, 1, want);

    for (int c = 0; c < 2; c++) {
        const char *cmd = c ? "raster" : "rates", *opt = c ? "--population head_lif" : "";
        snprintf(args, sizeof args, "%s /nonexistent/run.h5 %s -o %s", cmd, opt, keep);
        expect_fail(args, 1, "spikesim: error: /nonexistent/run.h5: cannot open: No such file or directory\n");
        snprintf(args, sizeof args, "%s %s %s -o %s", cmd, junk, opt, keep);
        snprintf(want, sizeof want, "spikesim: error: %s: not an HDF5 file\n", junk);
        expect_fail(args, 1, want);
    }
    snn_test_cli r = {0};
    snn_test_cli_run(&r, "inspect /nonexistent/run.h5");
    assert_int_equal(r.status, 1);
    assert_string_equal(r.err, "spikesim: error: /nonexistent/run.h5: cannot open: No such file or directory\n");
    assert_string_equal(r.out, "");
    snn_test_cli_run(&r, "inspect %s", junk);
    assert_int_equal(r.status, 1);
    snprintf(want, sizeof want, "spikesim: error: %s: not an HDF5 file\n", junk);
    assert_string_equal(r.err, want);

    /* An output directory that does not exist: exit 1 before anything is written. */
    snn_test_cli_run(&r, "rates %s -o /nonexistent/dir/r.svg", bsa_run);
    assert_int_equal(r.status, 1);
    assert_string_equal(r.err, "spikesim: error: /nonexistent/dir/r.svg: cannot create output file: No such file or directory\n");

    /* Usage errors: exit 2, and the run file is never the output. */
    snn_test_cli_run(&r, "rates %s -o %s", bsa_run, bsa_run);
    assert_int_equal(r.status, 2);
    snprintf(want, sizeof want, "spikesim: error: -o %s is the input file\n", bsa_run);
    assert_string_equal(r.err, want);
    snn_test_cli_run(&r, "raster %s -o %s", bsa_run, keep);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "raster needs --population P"));
    snn_test_cli_run(&r, "rates %s", bsa_run);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "rates needs -o FILE.svg"));
    snn_test_cli_run(&r, "inspect %s --population x", bsa_run);
    assert_int_equal(r.status, 2);
    assert_string_equal(r.err, "spikesim: error: inspect does not take --population\n");
    snn_test_cli_run(&r, "inspect");
    assert_int_equal(r.status, 2);
    snn_test_cli_free(&r);

    /* Success replaces an existing file in one step and leaves no temporary behind. */
    assert_int_equal(snn_test_write_file(keep, "old\n", 4), 0);
    snn_test_cli_run(&r, "rates %s -o %s", bsa_run, keep);
    assert_int_equal(r.status, 0);
    char *text = snn_test_read_file(keep);
    assert_non_null(strstr(text, "<svg"));
    assert_int_equal(leftovers(dir), 0);
    free(text);
    snn_test_cli_free(&r);

    /* Spikes stored as a 20-bit integer (a corrupt type for libhdf5's converters) are refused,
     * not converted. */
    char *odd = in_dir("odd_spikes.h5");
    hid_t f = H5Fcreate(odd, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hsize_t d3[3] = {1, 2, 3};
    hid_t s3 = H5Screate_simple(3, d3, NULL), i20 = H5Tcopy(H5T_STD_I32LE);
    H5Tset_precision(i20, 20);
    hid_t ds = H5Dcreate2(f, "/nodes/p/observables/spikes/data", i20, s3, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(ds >= 0);
    const int32_t spikes[6] = {1, 0, 1, 0, 0, 1};
    H5Dwrite(ds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, spikes);
    H5Dclose(ds);
    H5Tclose(i20);
    H5Sclose(s3);
    H5Pclose(lcpl);
    H5Fclose(f);
    snprintf(args, sizeof args, "raster %s --population p -o %s", odd, keep);
    snprintf(want, sizeof want, "spikesim: error: %s: /nodes/p/observables/spikes/data is not "
             "[samples, timesteps, neurons] integers\n", odd);
    expect_fail(args, 1, want);
    remove(odd);
    free(odd);

    /* The library reports which failures are usage errors (exit 2). */
    bool usage = true;
    snn_err err = {{0}};
    assert_int_equal(snn_inspect_raster(ann_run, "x", 0, keep, &usage, &err), SNN_ERR);
    assert_false(usage);
    assert_int_equal(snn_inspect_raster(bsa_run, "x", 0, keep, &usage, &err), SNN_ERR);
    assert_true(usage);
    remove(keep);
    remove(junk);
    free(keep);
    free(junk);
}

int main(int argc, char **argv) {
    (void)argc;
    snn_test_cli_locate(argv[0]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inspect_summary_and_populations),
        cmocka_unit_test(test_inspect_any_hdf5),
        cmocka_unit_test(test_raster_one_mark_per_spike),
        cmocka_unit_test(test_rates_one_cell_per_population_and_step),
        cmocka_unit_test(test_errors_are_one_line_and_lose_nothing),
    };
    return cmocka_run_group_tests_name("inspect", tests, setup, teardown);
}
