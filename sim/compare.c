/*
 * compare.c: `spikesim compare` (see compare.h and docs/compare.md).
 *
 *   - The compare config has its own small key table (name, base, runs, grid, set,
 *     skip_invalid), read with libyaml's document API like sim/config.c, with the same
 *     collected `file:line:col: error: message` diagnostics.
 *   - Grid values become `--set key=value` overrides, so a grid point is checked by exactly the
 *     code that checks `spikesim validate CONFIG --set ...`.
 *   - Reports are built from the run files only (read back with HDF5), never from in-memory
 *     results, so a reused run and a fresh one are reported the same way.
 */
#include "sim/compare.h"

#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

#include "sim/cli.h"
#include "sim/config.h"
#include "sim/dist.h"
#include "sim/h5io.h"
#include "sim/interrupt.h"
#include "sim/run.h"
#include "sim/textout.h"

/* ---- loading -------------------------------------------------------------------------------- */

/* Diagnostics are collected and printed in file order at the end, like sim/config.c's. */
typedef struct diag_line {
    size_t line, col, seq;
    char *text; /* whole line(s), newline-terminated */
} diag_line;

typedef struct diag_ctx {
    const char *file;
    FILE *out;
    int errors;
    diag_line *lines;
    size_t n;
} diag_ctx;

static void diag_push(diag_ctx *d, const yaml_node_t *n, char *text) {
    d->lines = snn_xrealloc(d->lines, (d->n + 1) * sizeof *d->lines);
    d->lines[d->n] = (diag_line){n ? n->start_mark.line + 1 : 0, n ? n->start_mark.column + 1 : 0, d->n, text};
    d->n++;
}

static void diag(diag_ctx *d, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void diag(diag_ctx *d, const yaml_node_t *n, const char *fmt, ...) {
    d->errors++;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    SNN_ASSERT(f);
    if (n)
        fprintf(f, "%s:%zu:%zu: error: ", d->file, n->start_mark.line + 1, n->start_mark.column + 1);
    else
        fprintf(f, "%s: error: ", d->file);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fputc('\n', f);
    fclose(f);
    diag_push(d, n, buf);
}

/* Another file's diagnostics (a run config's), shown where the compare config names it. */
static void diag_raw(diag_ctx *d, const yaml_node_t *n, const char *text) {
    diag_push(d, n, snn_xstrdup(text));
}

static int diag_cmp(const void *pa, const void *pb) {
    const diag_line *a = pa, *b = pb;
    if (a->line != b->line) return a->line < b->line ? -1 : 1;
    if (a->col != b->col) return a->col < b->col ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static void diag_flush(diag_ctx *d) {
    if (d->n) qsort(d->lines, d->n, sizeof *d->lines, diag_cmp);
    for (size_t i = 0; i < d->n; i++) {
        if (d->out) fputs(d->lines[i].text, d->out);
        free(d->lines[i].text);
    }
    free(d->lines);
    d->lines = NULL;
    d->n = 0;
}

static const char *scalar(const yaml_node_t *n) {
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static bool is_plain(const yaml_node_t *n) { return n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE; }

static bool is_null_node(const yaml_node_t *n) {
    if (n->type != YAML_SCALAR_NODE || !is_plain(n)) return false;
    const char *s = scalar(n);
    return !*s || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL") || !strcmp(s, "~");
}

static int parse_bool(const yaml_node_t *n) {
    static const char *const t[] = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"};
    static const char *const f[] = {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"};
    const char *s = scalar(n);
    if (!s || !is_plain(n)) return -1;
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        if (!strcmp(s, t[i])) return 1;
        if (!strcmp(s, f[i])) return 0;
    }
    return -1;
}

/* The value text of an override: plain scalars as written, quoted ones re-quoted so that the
 * config loader reads the same string back. */
static char *set_text(const char *key, const yaml_node_t *v) {
    const char *s = scalar(v);
    if (is_plain(v)) return snn_xasprintf("%s=%s", key, s);
    size_t n = strlen(s), k = 0;
    char *q = snn_xmalloc(2 * n + 3);
    q[k++] = '\'';
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\'') q[k++] = '\'';
        q[k++] = s[i];
    }
    q[k++] = '\'';
    q[k] = '\0';
    char *out = snn_xasprintf("%s=%s", key, q);
    free(q);
    return out;
}

static bool known_key(const char *path) {
    for (int i = 0; i < snn_config_key_count(); i++)
        if (!strcmp(snn_config_key_path(i), path)) return true;
    return false;
}

/* The config loader's message for an override, without its "--set ...: error: " prefix: used
 * for unknown keys (with the loader's did-you-mean) and as a skip reason. */
static char *first_message(const char *diag_text) {
    const char *e = strstr(diag_text, "error: ");
    const char *s = e ? e + 7 : diag_text;
    size_t n = strcspn(s, "\n");
    char *out = snn_xmalloc(n + 1);
    memcpy(out, s, n);
    out[n] = '\0';
    return out;
}

/* Why ks is not a config key: the config loader's own message (with its did-you-mean), or a
 * note that a section is not a key path. malloc'd. */
static char *unknown_key_message(const char *ks) {
    char *set = snn_xasprintf("%s=null", ks);
    snn_config tmp;
    char *buf = NULL;
    size_t len = 0;
    FILE *mf = open_memstream(&buf, &len);
    SNN_ASSERT(mf);
    snn_config_load_string(&tmp, "", "x", (const char *const *)&set, 1, mf);
    snn_config_free(&tmp);
    fclose(mf);
    char *msg = *buf ? first_message(buf)
                     : snn_xasprintf("'%s' is not a config key (give a full key path such as "
                                     "model.attention.kind)", ks);
    free(buf);
    free(set);
    return msg;
}

/* Loads config + sets; returns the error count and the diagnostics text (malloc'd). */
static int try_config(const char *config, char *const *sets, int n_sets, char **diag_text,
                      char **name) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    SNN_ASSERT(f);
    snn_config cfg;
    int errors = snn_config_load_file(&cfg, config, (const char *const *)sets, n_sets, f);
    if (name) *name = errors ? NULL : snn_xstrdup(cfg.name);
    snn_config_free(&cfg);
    fclose(f);
    *diag_text = buf;
    return errors;
}

static void name_part(char *buf, size_t n, const char *key, const char *value) {
    const char *prefix;
    if (!strcmp(key, "model.attention.kind")) prefix = "";
    else if (!strcmp(key, "model.timesteps")) prefix = "T";
    else if (!strcmp(key, "model.dim")) prefix = "D";
    else if (!strcmp(key, "model.heads")) prefix = "h";
    else if (!strcmp(key, "model.blocks")) prefix = "L";
    else {
        const char *dot = strrchr(key, '.');
        prefix = dot ? dot + 1 : key;
    }
    snprintf(buf, n, "%s%s", prefix, value);
    for (char *p = buf; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '.' || *p == '-' || *p == '_'))
            *p = '-';
}

typedef struct axis {
    const char *key;
    const yaml_node_t *key_node;
    const yaml_node_t **values;
    int n;
    int *valid_count; /* per value: valid grid points it appears in */
} axis;

static void add_run(snn_compare *c, snn_compare_run r) {
    c->runs = snn_xrealloc(c->runs, (size_t)(c->n_runs + 1) * sizeof *c->runs);
    c->runs[c->n_runs++] = r;
}

static char **copy_sets(char **sets, int n, int extra) {
    char **out = snn_xcalloc((size_t)(n + extra) + 1, sizeof *out);
    for (int i = 0; i < n; i++) out[i] = snn_xstrdup(sets[i]);
    return out;
}

static char *stem_of(const char *path) {
    const char *s = strrchr(path, '/');
    s = s ? s + 1 : path;
    size_t n = strlen(s);
    if (n > 5 && !strcmp(s + n - 5, ".yaml")) n -= 5;
    else if (n > 4 && !strcmp(s + n - 4, ".yml")) n -= 4;
    return snn_xasprintf("%.*s", (int)n, s);
}

int snn_compare_load(snn_compare *c, const char *path, FILE *diag_out) {
    *c = (snn_compare){0};
    c->path = snn_xstrdup(path);
    diag_ctx d = {.file = path, .out = diag_out};
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (diag_out) fprintf(diag_out, "%s: error: cannot read compare config: %s\n", path, strerror(errno));
        return 1;
    }
    yaml_parser_t parser;
    yaml_document_t doc;
    SNN_ASSERT(yaml_parser_initialize(&parser));
    yaml_parser_set_input_file(&parser, f);
    if (!yaml_parser_load(&parser, &doc)) {
        if (diag_out)
            fprintf(diag_out, "%s:%zu:%zu: error: %s\n", path, parser.problem_mark.line + 1,
                    parser.problem_mark.column + 1, parser.problem ? parser.problem : "YAML syntax error");
        yaml_parser_delete(&parser);
        fclose(f);
        return 1;
    }
    yaml_parser_delete(&parser);
    fclose(f);

    const yaml_node_t *root = yaml_document_get_root_node(&doc);
    const yaml_node_t *runs_node = NULL, *grid_node = NULL, *set_node = NULL, *base_node = NULL;
    char **common = NULL;
    int n_common = 0;
    axis *axes = NULL;
    int n_axes = 0;
    char **explicit = NULL;
    const yaml_node_t **explicit_nodes = NULL;
    int n_explicit = 0;

    if (!root) {
        diag(&d, NULL, "empty compare config: it needs `base` and `grid`, or `runs`");
        goto out;
    }
    if (root->type != YAML_MAPPING_NODE) {
        diag(&d, root, "the top level must be a mapping");
        goto out;
    }
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
        const yaml_node_t *k = yaml_document_get_node(&doc, p->key);
        const yaml_node_t *v = yaml_document_get_node(&doc, p->value);
        const char *ks = scalar(k);
        if (!ks) {
            diag(&d, k, "keys must be scalars");
            continue;
        }
        bool dup = false;
        for (yaml_node_pair_t *q = root->data.mapping.pairs.start; q < p; q++) {
            const char *qs = scalar(yaml_document_get_node(&doc, q->key));
            if (qs && !strcmp(qs, ks)) dup = true;
        }
        if (dup) {
            diag(&d, k, "duplicate key '%s'", ks);
            continue;
        }
        if (!strcmp(ks, "name")) {
            if (!scalar(v) || is_null_node(v) || !*scalar(v)) diag(&d, v, "name: expected a non-empty string");
            else c->name = snn_xstrdup(scalar(v));
        } else if (!strcmp(ks, "base")) {
            if (!scalar(v) || is_null_node(v)) diag(&d, v, "base: expected a config file path");
            else base_node = v;
        } else if (!strcmp(ks, "skip_invalid")) {
            int b = parse_bool(v);
            if (b < 0) diag(&d, v, "skip_invalid: expected true or false, got '%s'", scalar(v) ? scalar(v) : "a collection");
            else c->skip_invalid = b;
        } else if (!strcmp(ks, "runs")) {
            if (v->type != YAML_SEQUENCE_NODE) diag(&d, v, "runs: expected a list of config files");
            else runs_node = v;
        } else if (!strcmp(ks, "grid")) {
            if (v->type != YAML_MAPPING_NODE) diag(&d, v, "grid: expected a mapping of config key to a list of values");
            else grid_node = v;
        } else if (!strcmp(ks, "set")) {
            if (v->type != YAML_MAPPING_NODE) diag(&d, v, "set: expected a mapping of config key to value");
            else set_node = v;
        } else {
            const char *hint = !strcmp(ks, "config") || !strcmp(ks, "configs") ? "runs"
                             : !strcmp(ks, "overrides") || !strcmp(ks, "sets") ? "set"
                             : !strcmp(ks, "skip") ? "skip_invalid" : NULL;
            if (hint) diag(&d, k, "unknown key '%s' (did you mean '%s'?)", ks, hint);
            else diag(&d, k, "unknown key '%s' (expected name, base, grid, runs, set, skip_invalid)", ks);
        }
    }

    /* set: common overrides, checked against the config key table */
    if (set_node) {
        common = snn_xcalloc((size_t)(set_node->data.mapping.pairs.top - set_node->data.mapping.pairs.start) + 1,
                             sizeof *common);
        for (yaml_node_pair_t *p = set_node->data.mapping.pairs.start; p < set_node->data.mapping.pairs.top; p++) {
            const yaml_node_t *k = yaml_document_get_node(&doc, p->key);
            const yaml_node_t *v = yaml_document_get_node(&doc, p->value);
            const char *ks = scalar(k);
            if (!ks || !known_key(ks)) {
                char *msg = ks ? unknown_key_message(ks) : snn_xstrdup("keys must be scalars");
                diag(&d, k, "set: %s", msg);
                free(msg);
                continue;
            }
            if (v->type != YAML_SCALAR_NODE) {
                diag(&d, v, "set: %s: expected a scalar value", ks);
                continue;
            }
            common[n_common++] = set_text(ks, v);
        }
    }

    /* grid axes */
    if (grid_node) {
        size_t na = (size_t)(grid_node->data.mapping.pairs.top - grid_node->data.mapping.pairs.start);
        axes = snn_xcalloc(na ? na : 1, sizeof *axes);
        for (yaml_node_pair_t *p = grid_node->data.mapping.pairs.start; p < grid_node->data.mapping.pairs.top; p++) {
            const yaml_node_t *k = yaml_document_get_node(&doc, p->key);
            const yaml_node_t *v = yaml_document_get_node(&doc, p->value);
            const char *ks = scalar(k);
            bool bad = false;
            if (!ks || !known_key(ks)) {
                char *msg = ks ? unknown_key_message(ks) : snn_xstrdup("keys must be scalars");
                diag(&d, k, "grid: %s", msg);
                free(msg);
                continue;
            }
            for (int a = 0; a < n_axes; a++)
                if (!strcmp(axes[a].key, ks)) {
                    diag(&d, k, "grid: duplicate key '%s'", ks);
                    bad = true;
                }
            if (bad) continue;
            if (v->type != YAML_SEQUENCE_NODE || v->data.sequence.items.top == v->data.sequence.items.start) {
                diag(&d, v, "grid: %s: expected a non-empty list of values", ks);
                continue;
            }
            axis ax = {.key = ks, .key_node = k};
            size_t nv = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
            ax.values = snn_xcalloc(nv, sizeof *ax.values);
            ax.valid_count = snn_xcalloc(nv, sizeof *ax.valid_count);
            for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
                const yaml_node_t *vn = yaml_document_get_node(&doc, *it);
                if (vn->type != YAML_SCALAR_NODE) {
                    diag(&d, vn, "grid: %s: values must be scalars", ks);
                    bad = true;
                    continue;
                }
                for (int j = 0; j < ax.n; j++)
                    if (!strcmp(scalar(ax.values[j]), scalar(vn))) {
                        diag(&d, vn, "grid: %s: duplicate value '%s'", ks, scalar(vn));
                        bad = true;
                    }
                ax.values[ax.n++] = vn;
            }
            if (bad) {
                free(ax.values);
                free(ax.valid_count);
                continue;
            }
            axes[n_axes++] = ax;
        }
    }

    if (runs_node) {
        size_t nr = (size_t)(runs_node->data.sequence.items.top - runs_node->data.sequence.items.start);
        explicit = snn_xcalloc(nr + 1, sizeof *explicit);
        explicit_nodes = snn_xcalloc(nr + 1, sizeof *explicit_nodes);
        for (yaml_node_item_t *it = runs_node->data.sequence.items.start; it < runs_node->data.sequence.items.top; it++) {
            const yaml_node_t *vn = yaml_document_get_node(&doc, *it);
            if (!scalar(vn) || is_null_node(vn)) {
                diag(&d, vn, "runs: expected a config file path");
                continue;
            }
            explicit_nodes[n_explicit] = vn;
            explicit[n_explicit++] = snn_xstrdup(scalar(vn));
        }
    }
    if (grid_node && !base_node) diag(&d, grid_node, "grid needs a base config (`base: FILE`)");
    if (!base_node && !runs_node && d.errors == 0)
        diag(&d, root, "nothing to compare: give `base` (with an optional `grid`) or `runs`");
    if (d.errors) goto out;
    if (!c->name) c->name = stem_of(path);
    if (base_node) c->base = snn_xstrdup(scalar(base_node));

    /* The base config alone (with `set`) must be valid: its own diagnostics are printed as is. */
    if (c->base) {
        char *dt = NULL;
        int e = try_config(c->base, common, n_common, &dt, NULL);
        if (e) {
            diag_raw(&d, base_node, dt);
            diag(&d, base_node, "base config %s (with `set`) is invalid (%d error%s above)", c->base, e,
                 e == 1 ? "" : "s");
        }
        free(dt);
        if (d.errors) goto out;
    }

    /* Grid expansion: first axis outermost (row-major), like nested for loops in file order. */
    if (c->base) {
        int total = 1;
        for (int a = 0; a < n_axes; a++) total *= axes[a].n;
        int *idx = snn_xcalloc((size_t)(n_axes ? n_axes : 1), sizeof *idx);
        int first_grid = c->n_runs;
        for (int p = 0; p < total; p++) {
            int rem = p;
            for (int a = n_axes - 1; a >= 0; a--) {
                idx[a] = rem % axes[a].n;
                rem /= axes[a].n;
            }
            snn_compare_run r = {0};
            r.config = snn_xstrdup(c->base);
            r.sets = copy_sets(common, n_common, n_axes);
            r.n_sets = n_common;
            char name[256] = "", part[96];
            char *point = snn_xstrdup("");
            for (int a = 0; a < n_axes; a++) {
                const yaml_node_t *vn = axes[a].values[idx[a]];
                r.sets[r.n_sets++] = set_text(axes[a].key, vn);
                name_part(part, sizeof part, axes[a].key, scalar(vn));
                if (a) strncat(name, "_", sizeof name - strlen(name) - 1);
                strncat(name, part, sizeof name - strlen(name) - 1);
                char *np = snn_xasprintf("%s%s%s=%s", point, a ? ", " : "", axes[a].key, scalar(vn));
                free(point);
                point = np;
            }
            char *dt = NULL, *cfg_name = NULL;
            int e = try_config(r.config, r.sets, r.n_sets, &dt, &cfg_name);
            r.name = n_axes ? snn_xstrdup(name) : snn_xstrdup(cfg_name ? cfg_name : "base");
            r.point = n_axes ? point : NULL;
            if (!n_axes) free(point);
            if (e) {
                if (c->skip_invalid) {
                    r.skipped = true;
                    r.skip_reason = first_message(dt);
                } else {
                    char *msg = first_message(dt);
                    diag(&d, grid_node, "grid point %s is invalid: %s (set `skip_invalid: true` to skip "
                         "such points)", r.name, msg);
                    free(msg);
                }
            } else {
                for (int a = 0; a < n_axes; a++) axes[a].valid_count[idx[a]]++;
            }
            free(dt);
            free(cfg_name);
            add_run(c, r);
        }
        /* A value valid in no grid point is a mistake (a typo), not a point to skip. */
        if (c->skip_invalid && d.errors == 0) {
            for (int a = 0; a < n_axes; a++)
                for (int j = 0; j < axes[a].n; j++)
                    if (!axes[a].valid_count[j]) {
                        char *msg = NULL;
                        for (int q = first_grid; q < c->n_runs && !msg; q++) {
                            char *want = set_text(axes[a].key, axes[a].values[j]);
                            for (int s = 0; s < c->runs[q].n_sets; s++)
                                if (!strcmp(c->runs[q].sets[s], want)) msg = c->runs[q].skip_reason;
                            free(want);
                        }
                        diag(&d, axes[a].values[j], "grid: %s: value '%s' is invalid in every grid point: %s",
                             axes[a].key, scalar(axes[a].values[j]), msg ? msg : "?");
                    }
        }
        free(idx);
    }

    for (int i = 0; i < n_explicit; i++) {
        char *dt = NULL, *cfg_name = NULL;
        int e = try_config(explicit[i], common, n_common, &dt, &cfg_name);
        if (e) {
            diag_raw(&d, explicit_nodes[i], dt);
            diag(&d, explicit_nodes[i], "runs: %s (with `set`) is invalid (%d error%s above)", explicit[i], e,
                 e == 1 ? "" : "s");
        } else {
            snn_compare_run r = {0};
            r.config = snn_xstrdup(explicit[i]);
            r.sets = copy_sets(common, n_common, 0);
            r.n_sets = n_common;
            r.name = snn_xstrdup(cfg_name);
            add_run(c, r);
        }
        free(dt);
        free(cfg_name);
    }

    /* Run names are file names in DIR: they must be unique. */
    for (int i = 0; i < c->n_runs; i++)
        for (int j = 0; j < i; j++)
            if (!strcmp(c->runs[i].name, c->runs[j].name)) {
                diag(&d, root, "two runs are named '%s' (run names come from the grid point, or from the "
                     "config's `name` for `runs` entries)", c->runs[i].name);
                break;
            }
    int live = 0;
    for (int i = 0; i < c->n_runs; i++) live += !c->runs[i].skipped;
    if (d.errors == 0 && live == 0) diag(&d, root, "every run was skipped as invalid: nothing to compare");

out:
    for (int i = 0; i < n_common; i++) free(common[i]);
    free(common);
    for (int a = 0; a < n_axes; a++) {
        free(axes[a].values);
        free(axes[a].valid_count);
    }
    free(axes);
    for (int i = 0; i < n_explicit; i++) free(explicit[i]);
    free(explicit);
    free(explicit_nodes);
    yaml_document_delete(&doc);
    diag_flush(&d);
    return d.errors;
}

void snn_compare_free(snn_compare *c) {
    for (int i = 0; i < c->n_runs; i++) {
        snn_compare_run *r = &c->runs[i];
        free(r->name);
        free(r->config);
        for (int s = 0; s < r->n_sets; s++) free(r->sets[s]);
        free(r->sets);
        free(r->point);
        free(r->skip_reason);
    }
    free(c->runs);
    free(c->path);
    free(c->name);
    free(c->base);
    *c = (snn_compare){0};
}

/* ---- executing ------------------------------------------------------------------------------ */

static bool file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int mkdir_p(const char *dir, snn_err *err) {
    char *p = snn_xstrdup(dir);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST) {
            snn_err_set(err, "%s: cannot create directory: %s", p, strerror(errno));
            free(p);
            return SNN_ERR;
        }
        *s = '/';
    }
    int rc = SNN_OK;
    if (mkdir(p, 0777) != 0 && errno != EEXIST) rc = snn_err_set(err, "%s: cannot create directory: %s", p, strerror(errno));
    struct stat st;
    if (rc == SNN_OK && (stat(p, &st) != 0 || !S_ISDIR(st.st_mode)))
        rc = snn_err_set(err, "%s: not a directory", p);
    free(p);
    return rc;
}

static hid_t open_quiet(const char *path) {
    snn_h5_init();
    hid_t f;
    H5E_BEGIN_TRY {
        f = H5Fis_hdf5(path) > 0 ? H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT) : H5I_INVALID_HID;
    } H5E_END_TRY;
    return f;
}

static bool link_exists(hid_t loc, const char *path) {
    htri_t e;
    H5E_BEGIN_TRY { e = H5Lexists(loc, path, H5P_DEFAULT); } H5E_END_TRY;
    return e > 0;
}

/* Variable-length string reads (every string spikesim writes is one). */
static char **read_vlen_strings(hid_t obj, bool is_attr, size_t *n_out) {
    *n_out = 0;
    hid_t t = is_attr ? H5Aget_type(obj) : H5Dget_type(obj);
    hid_t s = is_attr ? H5Aget_space(obj) : H5Dget_space(obj);
    hssize_t n = H5Sget_simple_extent_npoints(s);
    char **out = NULL;
    if (H5Tget_class(t) == H5T_STRING && H5Tis_variable_str(t) > 0 && n > 0 && n < (1 << 20)) {
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5T_VARIABLE);
        H5Tset_cset(mt, H5Tget_cset(t));
        char **raw = snn_xcalloc((size_t)n, sizeof *raw);
        herr_t rc = is_attr ? H5Aread(obj, mt, raw) : H5Dread(obj, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw);
        if (rc >= 0) {
            out = snn_xcalloc((size_t)n, sizeof *out);
            for (hssize_t i = 0; i < n; i++) out[i] = snn_xstrdup(raw[i] ? raw[i] : "");
            *n_out = (size_t)n;
        }
        for (hssize_t i = 0; i < n; i++)
            if (raw[i]) H5free_memory(raw[i]);
        free(raw);
        H5Tclose(mt);
    }
    H5Sclose(s);
    H5Tclose(t);
    return out;
}

static void free_strings(char **v, size_t n) {
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

static char *read_text(hid_t f, const char *path) {
    if (!link_exists(f, path)) return NULL;
    hid_t d;
    H5E_BEGIN_TRY { d = H5Dopen2(f, path, H5P_DEFAULT); } H5E_END_TRY;
    if (d < 0) return NULL;
    size_t n;
    char **v = read_vlen_strings(d, false, &n);
    H5Dclose(d);
    char *out = NULL;
    if (v && n == 1) {
        out = v[0];
        v[0] = NULL;
    }
    free_strings(v, n);
    return out;
}

static char **attr_strings(hid_t f, const char *obj, const char *name, size_t *n) {
    *n = 0;
    htri_t e;
    H5E_BEGIN_TRY { e = H5Aexists_by_name(f, obj, name, H5P_DEFAULT); } H5E_END_TRY;
    if (e <= 0) return NULL;
    hid_t a = H5Aopen_by_name(f, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0) return NULL;
    char **v = read_vlen_strings(a, true, n);
    H5Aclose(a);
    return v;
}

static double attr_num(hid_t f, const char *obj, const char *name) {
    double v = NAN;
    htri_t e;
    H5E_BEGIN_TRY { e = H5Aexists_by_name(f, obj, name, H5P_DEFAULT); } H5E_END_TRY;
    if (e <= 0) return NAN;
    hid_t a = H5Aopen_by_name(f, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0) return NAN;
    hid_t s = H5Aget_space(a), t = H5Aget_type(a);
    if (!snn_h5_is_standard_numeric(t) || H5Sget_simple_extent_npoints(s) != 1 ||
        H5Aread(a, H5T_NATIVE_DOUBLE, &v) < 0)
        v = NAN;
    H5Tclose(t);
    H5Sclose(s);
    H5Aclose(a);
    return v;
}

static double *read_f64(hid_t f, const char *path, size_t *n) {
    *n = 0;
    if (!link_exists(f, path)) return NULL;
    hid_t d;
    H5E_BEGIN_TRY { d = H5Dopen2(f, path, H5P_DEFAULT); } H5E_END_TRY;
    if (d < 0) return NULL;
    hid_t s = H5Dget_space(d), t = H5Dget_type(d);
    hssize_t np = H5Sget_simple_extent_npoints(s);
    double *buf = NULL;
    if (snn_h5_is_standard_numeric(t) && np > 0 && np < (1 << 26)) {
        buf = snn_xmalloc((size_t)np * sizeof *buf);
        if (H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
            free(buf);
            buf = NULL;
        } else {
            *n = (size_t)np;
        }
    }
    H5Tclose(t);
    H5Sclose(s);
    H5Dclose(d);
    return buf;
}

/* /config of an HDF5 file, or NULL when there is no such readable file. */
static char *file_config(const char *path) {
    if (!file_exists(path)) return NULL;
    hid_t f = open_quiet(path);
    if (f < 0) return NULL;
    char *t = read_text(f, "/config");
    H5Fclose(f);
    return t;
}

/* A checkpoint's /config names the training that wrote it. A training resumed from a .last.h5
 * checkpoint is the same training as an uninterrupted one (resuming is exact), so train.resume
 * is not part of the match. */
static bool same_training(const char *stored, const char *yaml) {
    if (!strcmp(stored, yaml)) return true;
    snn_config c;
    bool same = false;
    if (snn_config_load_string(&c, stored, "checkpoint /config", NULL, 0, NULL) == 0 && c.train.resume) {
        free(c.train.resume);
        c.train.resume = NULL;
        char *t = snn_config_to_yaml(&c);
        same = !strcmp(t, yaml);
        free(t);
    }
    snn_config_free(&c);
    return same;
}

static char *run_path(const char *dir, const char *name, const char *tag) {
    return tag ? snn_xasprintf("%s/%s.%s.h5", dir, name, tag) : snn_xasprintf("%s/%s.h5", dir, name);
}

/* After every rank has run its runs: when one failed, every rank takes the message and
 * config-error flag of the lowest failing rank. Returns the agreed status. */
static int agree(int rc, bool *is_config_error, snn_err *err) {
    const int first = snn_dist_first_failed(rc != SNN_OK);
    if (first < 0) return SNN_OK;
    struct {
        snn_err e;
        int config_error;
    } f = {.config_error = *is_config_error};
    if (err) f.e = *err;
    snn_dist_bcast(&f, sizeof f, first);
    if (err) *err = f.e;
    *is_config_error = f.config_error;
    return SNN_ERR;
}

int snn_compare_execute(const snn_compare *c, const snn_compare_opts *o, snn_compare_stats *st,
                        bool *is_config_error, snn_err *err) {
    *st = (snn_compare_stats){0};
    *is_config_error = false;
    /* several ranks: live run k goes to rank k mod P; rank 0 makes the directory and writes the
     * reports (a dry run is rank 0's alone) */
    if (o->distributed && o->dry_run && snn_dist_rank() != 0) return SNN_OK;
    const bool dist = o->distributed && !o->dry_run && snn_dist_size() > 1;
    const int P = dist ? snn_dist_size() : 1, rank = dist ? snn_dist_rank() : 0;
    int rc = SNN_OK;
    if (!o->dry_run && rank == 0) rc = mkdir_p(o->dir, err);
    if (dist) rc = agree(rc, is_config_error, err);
    if (rc != SNN_OK) return SNN_ERR;
    int live = 0, k = 0;
    for (int i = 0; i < c->n_runs; i++) live += !c->runs[i].skipped;
    for (int i = 0; i < c->n_runs && rc == SNN_OK; i++) {
        const snn_compare_run *r = &c->runs[i];
        if (r->skipped) {
            if (rank != 0) continue;
            st->skipped++;
            if (o->log) fprintf(o->log, "compare: %s: skipped: %s\n", r->name, r->skip_reason);
            continue;
        }
        k++;
        if ((k - 1) % P != rank) continue;
        snn_config cfg;
        if (snn_config_load_file(&cfg, r->config, (const char *const *)r->sets, r->n_sets, o->log)) {
            snn_config_free(&cfg);
            *is_config_error = true;
            rc = snn_err_set(err, "%s: config %s is no longer valid", r->name, r->config);
            break;
        }
        char *out = run_path(o->dir, r->name, NULL), *best = run_path(o->dir, r->name, "best");
        char *yaml = snn_config_to_yaml(&cfg), *ckpt_yaml = NULL;
        snn_config from_best = cfg; /* shares cfg's strings; never freed itself */
        from_best.model.weights = best;
        from_best.train.epochs = 0;
        if (cfg.train.epochs > 0) ckpt_yaml = snn_config_to_yaml(&from_best);
        char *have = file_config(out);
        const char *what;
        double t0 = snn_now();
        if (have && (!strcmp(have, yaml) || (ckpt_yaml && !strcmp(have, ckpt_yaml)))) {
            st->reused++;
            what = "reused";
        } else {
            char *best_cfg = cfg.train.epochs > 0 ? file_config(best) : NULL;
            const snn_config *use = &cfg;
            if (best_cfg && same_training(best_cfg, yaml)) {
                use = &from_best;
                what = "evaluated from its best checkpoint";
                st->from_checkpoint++;
            } else if (cfg.train.epochs > 0) {
                what = "trained and simulated";
                st->trained++;
            } else {
                what = "simulated";
                st->simulated++;
            }
            free(best_cfg);
            if (o->dry_run) {
                if (o->log) fprintf(o->log, "compare: [%d/%d] %s: would be %s -> %s\n", k, live, r->name, what, out);
                goto next;
            }
            if (o->log) fprintf(o->log, "compare: [%d/%d] %s: running (%s)...\n", k, live, r->name,
                                use == &cfg && cfg.train.epochs > 0 ? "training" : "evaluation");
            snn_run_opts ro = {.out_path = out, .threads = o->threads, .progress = false, .log = NULL};
            snn_summary s;
            bool cerr = false;
            rc = snn_run(use, &ro, &s, &cerr, err);
            if (rc != SNN_OK) {
                *is_config_error = cerr;
                char msg[sizeof err->msg];
                snprintf(msg, sizeof msg, "%s", err->msg);
                snn_err_set(err, "run %s: %s", r->name, msg);
            }
        }
        if (rc == SNN_OK && o->log)
            fprintf(o->log, "compare: [%d/%d] %s: %s%s (%.1f s) -> %s\n", k, live, r->name,
                    o->dry_run ? "would be " : "", what, snn_now() - t0, out);
    next:
        free(have);
        free(yaml);
        free(ckpt_yaml);
        free(out);
        free(best);
        snn_config_free(&cfg);
    }
    if (dist) {
        rc = agree(rc, is_config_error, err);
        int64_t n[5] = {st->trained, st->simulated, st->from_checkpoint, st->reused, st->skipped};
        snn_dist_sum_i64(n, 5);
        *st = (snn_compare_stats){(int)n[0], (int)n[1], (int)n[2], (int)n[3], (int)n[4]};
    }
    if (rc != SNN_OK || o->dry_run) return rc;
    if (rank == 0) rc = snn_compare_report(c, o->dir, err);
    return dist ? agree(rc, is_config_error, err) : rc;
}

/* ---- reports -------------------------------------------------------------------------------- */

typedef struct row {
    const snn_compare_run *run;
    char *attention;
    double T, params, acs, macs, e_paper, e_compute, e_syops, e_memory, acc, fr, wall, samples;
    double train_seconds; /* sum of /training/history/seconds; NaN when never trained */
    size_t n_layers, n_pops;
    char **layers, **pops;
    double *layer_pj; /* figure (b) per layer, pJ / sample */
    double *pop_rate; /* mean firing rate per population */
    bool pareto;
} row;

/* Sum of /training/history/seconds of the file at path; NaN without a history. */
static double train_seconds_of(const char *path) {
    hid_t f = open_quiet(path);
    if (f < 0) return NAN;
    size_t n = 0;
    double *sec = link_exists(f, "/training") && link_exists(f, "/training/history")
                      ? read_f64(f, "/training/history/seconds", &n)
                      : NULL;
    double sum = sec ? 0 : NAN;
    for (size_t i = 0; i < n; i++) sum += sec[i];
    free(sec);
    H5Fclose(f);
    return sum;
}

static int read_row(const char *path, row *w, snn_err *err) {
    hid_t f = open_quiet(path);
    if (f < 0) return snn_err_set(err, "%s: cannot open run file", path);
    if (!link_exists(f, "/summary")) {
        H5Fclose(f);
        return snn_err_set(err, "%s: no /summary (not a spikesim run file)", path);
    }
    size_t n;
    char **att = attr_strings(f, "/", "attention", &n);
    w->attention = att && n == 1 ? snn_xstrdup(att[0]) : snn_xstrdup("?");
    free_strings(att, n);
    w->T = attr_num(f, "/", "n_steps");
    w->params = attr_num(f, "/summary", "parameters");
    w->acs = attr_num(f, "/summary", "sops_per_sample");
    w->macs = attr_num(f, "/summary", "macs_per_sample");
    w->e_paper = attr_num(f, "/summary", "paper_energy_pj_per_sample");
    w->e_compute = attr_num(f, "/summary", "compute_energy_pj_per_sample");
    w->e_syops = attr_num(f, "/summary", "compute_energy_syops_rule_pj_per_sample");
    w->e_memory = attr_num(f, "/summary", "memory_aware_energy_pj_per_sample");
    w->acc = attr_num(f, "/summary", "accuracy");
    w->fr = attr_num(f, "/summary", "firing_rate_mean");
    w->wall = attr_num(f, "/summary", "wall_seconds");
    w->samples = attr_num(f, "/summary", "samples_evaluated");
    size_t nl = 0, ne = 0;
    char **layers = attr_strings(f, "/ops", "layers", &nl);
    double *pj = read_f64(f, "/energy/layer_total_pj", &ne);
    if (layers && pj && ne == nl) {
        w->layers = layers;
        w->layer_pj = pj;
        w->n_layers = nl;
        w->pops = snn_xcalloc(nl, sizeof *w->pops);
        w->pop_rate = snn_xcalloc(nl, sizeof *w->pop_rate);
        bool has_nodes = link_exists(f, "/nodes");
        for (size_t i = 0; i < nl && has_nodes; i++) {
            char *g = snn_xasprintf("/nodes/%s", layers[i]);
            char *ds = snn_xasprintf("/nodes/%s/stats/firing_rate_per_step", layers[i]);
            size_t nt = 0;
            double *rate = link_exists(f, g) ? read_f64(f, ds, &nt) : NULL;
            if (rate && nt > 0) {
                double sum = 0;
                for (size_t t = 0; t < nt; t++) sum += rate[t];
                w->pops[w->n_pops] = snn_xstrdup(layers[i]);
                w->pop_rate[w->n_pops++] = sum / (double)nt;
            }
            free(rate);
            free(g);
            free(ds);
        }
    } else {
        free_strings(layers, nl);
        free(pj);
    }
    H5Fclose(f);
    if (!isfinite(w->acc) || !isfinite(w->e_compute))
        return snn_err_set(err, "%s: /summary lacks accuracy or compute_energy_pj_per_sample", path);
    return SNN_OK;
}

static void row_free(row *w) {
    free(w->attention);
    free_strings(w->layers, w->n_layers);
    free_strings(w->pops, w->n_pops);
    free(w->layer_pj);
    free(w->pop_rate);
}

/* Plain decimal with about 10 significant digits, no exponent, trailing zeros trimmed;
 * "" for a non-finite value. */
static const char *num(char *buf, size_t n, double x) {
    if (!isfinite(x)) {
        buf[0] = '\0';
        return buf;
    }
    if (x == 0) {
        snprintf(buf, n, "0");
        return buf;
    }
    int prec = 9 - (int)floor(log10(fabs(x)));
    if (prec < 0) prec = 0;
    if (prec > 20) prec = 20;
    snprintf(buf, n, "%.*f", prec, x);
    if (strchr(buf, '.')) {
        char *e = buf + strlen(buf) - 1;
        while (*e == '0') *e-- = '\0';
        if (*e == '.') *e = '\0';
    }
    return buf;
}

/* Short human number: 3 significant digits, plain decimal for 0.001..1e7. */
static const char *short_num(char *buf, size_t n, double x) {
    if (!isfinite(x)) snprintf(buf, n, "-");
    else if (x != 0 && (fabs(x) >= 1e7 || fabs(x) < 1e-3)) snprintf(buf, n, "%.3g", x);
    else if (fabs(x) >= 100) snprintf(buf, n, "%.0f", x);
    else snprintf(buf, n, "%.3g", x);
    return buf;
}

static void csv_field(FILE *f, const char *s) {
    if (!strpbrk(s, ",\"\n\r")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') fprintf(f, "\\%c", ch);
        else if (ch == '\n') fputs("\\n", f);
        else if (ch < 0x20) fprintf(f, "\\u%04x", ch);
        else fputc(ch, f);
    }
    fputc('"', f);
}

static void json_num(FILE *f, double x) {
    char b[64];
    fputs(isfinite(x) ? num(b, sizeof b, x) : "null", f);
}

/* The elements of a JSON list of {"<key>": names[i], "<value_key>": values[i]} objects. */
static void json_named_values(FILE *f, const char *key, char *const *names, const char *value_key,
                              const double *values, size_t n) {
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "%s{\"%s\": ", i ? ", " : "", key);
        json_str(f, names[i]);
        fprintf(f, ", \"%s\": ", value_key);
        json_num(f, values[i]);
        fputc('}', f);
    }
}

/* The columns of summary.csv and summary.json, in order. */
#define N_COLS 17
static const char *const col_names[N_COLS] = {
    "name", "config", "overrides", "attention", "timesteps", "parameters", "acs_per_sample",
    "macs_per_sample", "paper_energy_pj_per_sample", "compute_energy_pj_per_sample",
    "compute_energy_syops_rule_pj_per_sample", "memory_aware_energy_pj_per_sample", "accuracy",
    "firing_rate_mean", "wall_seconds", "train_seconds", "samples"};

static double col_value(const row *w, int c) {
    const double v[N_COLS] = {0, 0, 0, 0, w->T, w->params, w->acs, w->macs, w->e_paper, w->e_compute,
                              w->e_syops, w->e_memory, w->acc, w->fr, w->wall, w->train_seconds,
                              w->samples};
    return v[c];
}

/* The overrides of a run as one string: "a=1 b=2" (the --set values, space separated). */
static char *overrides_text(const snn_compare_run *r) {
    char *s = snn_xstrdup("");
    for (int i = 0; i < r->n_sets; i++) {
        char *n = snn_xasprintf("%s%s%s", s, i ? " " : "", r->sets[i]);
        free(s);
        s = n;
    }
    return s;
}

static void write_csv(FILE *f, const row *rows, int n) {
    for (int c = 0; c < N_COLS; c++) fprintf(f, "%s,", col_names[c]);
    fputs("pareto\n", f);
    for (int i = 0; i < n; i++) {
        char b[64];
        char *ov = overrides_text(rows[i].run);
        csv_field(f, rows[i].run->name);
        fputc(',', f);
        csv_field(f, rows[i].run->config);
        fputc(',', f);
        csv_field(f, ov);
        fputc(',', f);
        csv_field(f, rows[i].attention);
        for (int c = 4; c < N_COLS; c++) fprintf(f, ",%s", num(b, sizeof b, col_value(&rows[i], c)));
        fprintf(f, ",%s\n", rows[i].pareto ? "true" : "false");
        free(ov);
    }
}

static void write_json(FILE *f, const row *rows, int n) {
    fputs("[", f);
    for (int i = 0; i < n; i++) {
        const row *w = &rows[i];
        char *ov = overrides_text(w->run);
        fputs(i ? ",\n  {" : "\n  {", f);
        const char *strs[4] = {w->run->name, w->run->config, ov, w->attention};
        for (int c = 0; c < 4; c++) {
            fprintf(f, "%s\"%s\": ", c ? ", " : "", col_names[c]);
            json_str(f, strs[c]);
        }
        for (int c = 4; c < N_COLS; c++) {
            fprintf(f, ", \"%s\": ", col_names[c]);
            json_num(f, col_value(w, c));
        }
        fprintf(f, ", \"pareto\": %s,\n   \"layer_energy_pj_per_sample\": [", w->pareto ? "true" : "false");
        json_named_values(f, "layer", w->layers, "compute_energy_pj", w->layer_pj, w->n_layers);
        fputs("],\n   \"firing_rate_per_population\": [", f);
        json_named_values(f, "population", w->pops, "firing_rate", w->pop_rate, w->n_pops);
        fputs("]}", f);
        free(ov);
    }
    fputs("\n]\n", f);
}

/* A shell word: quoted when it holds anything but safe characters. */
static void sh_word(FILE *f, const char *s) {
    if (*s && strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-/=:,+") == strlen(s)) {
        fputs(s, f);
        return;
    }
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputs("'\\''", f);
        else fputc(*s, f);
    }
    fputc('\'', f);
}

static const char *const table_head[] = {
    "run", "attention", "T", "params", "ACs / sample", "MACs / sample", "E paper (nJ)",
    "E compute (nJ)", "E syops rule (nJ)", "E memory-aware (nJ)", "accuracy (%)",
    "firing rate", "wall (s)", "train (s)", "Pareto"};
#define N_TABLE ((int)(sizeof table_head / sizeof *table_head))

/* The table cells of a row as text (shared by report.md and report.html). */
static void table_cells(const row *w, char cells[N_TABLE][64]) {
    snprintf(cells[0], 64, "%s", w->run->name);
    snprintf(cells[1], 64, "%s", w->attention);
    short_num(cells[2], 64, w->T);
    snprintf(cells[3], 64, "%.0f", w->params);
    short_num(cells[4], 64, w->acs);
    short_num(cells[5], 64, w->macs);
    short_num(cells[6], 64, w->e_paper / 1000);
    short_num(cells[7], 64, w->e_compute / 1000);
    short_num(cells[8], 64, w->e_syops / 1000);
    short_num(cells[9], 64, w->e_memory / 1000);
    snprintf(cells[10], 64, "%.2f", 100 * w->acc);
    if (w->n_pops) snprintf(cells[11], 64, "%.4f", w->fr);
    else snprintf(cells[11], 64, "-"); /* no spiking population (ANN) */
    snprintf(cells[12], 64, "%.2f", w->wall);
    if (isfinite(w->train_seconds)) snprintf(cells[13], 64, "%.1f", w->train_seconds);
    else snprintf(cells[13], 64, "-");
    snprintf(cells[14], 64, "%s", w->pareto ? "yes" : "");
}

static const char figures_note[] =
    "Energies are per sample. Paper: figure (a), the papers' convention (E_MAC x first-layer "
    "FLOPs + E_AC x firing rate x T x FLOPs). Compute: figure (b), the counted operations x pJ "
    "(NeuroBench's rule: a +-1 spike drives an AC). Syops rule: figure (b) with ternary-input ACs "
    "billed as MACs. Memory-aware: figure (c), compute plus memory traffic "
    "(docs/hdf5-layout.md). The Pareto front is over accuracy (higher is better) and compute "
    "energy (lower is better). Wall time is the simulation of the evaluation split; training "
    "time (the epochs' wall time, from /training/history) is given apart.";

static void write_md(FILE *f, const snn_compare *c, const char *dir, const row *rows, int n) {
    fprintf(f, "# Comparison: %s\n\n", c->name);
    fprintf(f, "%d run%s from `%s`, written by spikesim %s.\n\n", n, n == 1 ? "" : "s", c->path, SNN_VERSION);
    for (int h = 0; h < N_TABLE; h++) fprintf(f, "| %s ", table_head[h]);
    fputs("|\n", f);
    for (int h = 0; h < N_TABLE; h++) fputs(h < 2 ? "|---" : "|---:", f);
    fputs("|\n", f);
    for (int i = 0; i < n; i++) {
        char cells[N_TABLE][64];
        table_cells(&rows[i], cells);
        for (int h = 0; h < N_TABLE; h++) {
            fputs("| ", f);
            for (const char *s = cells[h]; *s; s++) {
                if (*s == '|') fputc('\\', f);
                fputc(*s, f);
            }
            fputc(' ', f);
        }
        fputs("|\n", f);
    }
    fprintf(f, "\n%s\n", figures_note);
    bool any_skipped = false;
    for (int i = 0; i < c->n_runs; i++) any_skipped |= c->runs[i].skipped;
    if (any_skipped) {
        fputs("\n## Skipped grid points\n\nThe config validator rejects these (`skip_invalid: true`):\n\n", f);
        for (int i = 0; i < c->n_runs; i++)
            if (c->runs[i].skipped)
                fprintf(f, "- `%s` (%s): %s\n", c->runs[i].name, c->runs[i].point ? c->runs[i].point : "",
                        c->runs[i].skip_reason);
    }
    fputs("\n## Reproduce\n\n```sh\n", f);
    fputs("build/spikesim compare ", f);
    sh_word(f, c->path);
    fputs(" -o ", f);
    sh_word(f, dir);
    fputs("\n# or run by run (a run with train.epochs > 0 trains first):\n", f);
    for (int i = 0; i < n; i++) {
        const snn_compare_run *r = rows[i].run;
        fputs("build/spikesim run ", f);
        sh_word(f, r->config);
        for (int s = 0; s < r->n_sets; s++) {
            fputs(" --set ", f);
            sh_word(f, r->sets[s]);
        }
        char *out = run_path(dir, r->name, NULL);
        fputs(" -o ", f);
        sh_word(f, out);
        fputc('\n', f);
        free(out);
    }
    fputs("```\n", f);
}

/* ---- report.html: inline CSS and SVG, no scripts ------------------------------------------- */

static const char *const run_colors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                         "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
#define N_RUN_COLORS 10

/* Per-layer energy bars are coloured by the kind of layer. */
static const char *const cat_names[] = {"embedding", "attention projections", "attention kernel",
                                        "MLP", "neuron updates", "head", "other"};
static const char *const cat_colors[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                                         "#edc948", "#b07aa1"};
#define N_CATS 7

static int layer_category(const char *l) {
    size_t n = strlen(l);
    if (n > 4 && !strcmp(l + n - 4, "_lif")) return 4;
    if (!strcmp(l, "embed")) return 0;
    if (!strncmp(l, "head", 4)) return 5;
    if (strstr(l, ".attn.kernel")) return 2;
    if (strstr(l, ".attn.")) return 1;
    if (strstr(l, ".mlp.")) return 3;
    return 6;
}

static double nice_step(double span, int target) {
    if (span <= 0) return 1;
    double raw = span / target, mag = pow(10.0, floor(log10(raw)));
    double r = raw / mag;
    return (r <= 1 ? 1 : r <= 2 ? 2 : r <= 5 ? 5 : 10) * mag;
}

static void svg_begin(FILE *f, const char *id, double w, double h, const char *title) {
    fprintf(f, "<svg id=\"%s\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
               "viewBox=\"0 0 %.0f %.0f\" role=\"img\"><title>", id, w, h, w, h);
    snn_xml_text(f, title);
    fputs("</title>\n", f);
}

static void scatter(FILE *f, const row *rows, int n) {
    const double W = 720, H = 420, L = 80, R = 30, T = 20, B = 60;
    double emin = INFINITY, emax = 0, amin = 100, amax = 0;
    for (int i = 0; i < n; i++) {
        double e = rows[i].e_compute / 1000, a = 100 * rows[i].acc;
        if (e > 0 && e < emin) emin = e;
        if (e > emax) emax = e;
        if (a < amin) amin = a;
        if (a > amax) amax = a;
    }
    bool logx = emin > 0 && isfinite(emin) && emax / emin > 20;
    double x0, x1;
    if (logx) {
        x0 = floor(log10(emin));
        x1 = ceil(log10(emax));
        if (x1 <= x0) x1 = x0 + 1;
    } else {
        x0 = 0;
        x1 = emax > 0 ? emax * 1.1 : 1;
    }
    double y0 = floor(amin / 10) * 10, y1 = ceil(amax / 10) * 10;
    if (y1 <= y0) y1 = y0 + 10;
    if (y1 > 100) y1 = 100;
    if (y0 < 0) y0 = 0;
    if (y1 <= y0) y0 = y1 - 10;
#define SX(e) (L + ((logx ? log10((e) > 0 ? (e) : pow(10, x0)) : (e)) - x0) / (x1 - x0) * (W - L - R))
#define SY(a) (H - B - ((a) - y0) / (y1 - y0) * (H - T - B))
    svg_begin(f, "accuracy-energy", W, H, "Accuracy against compute energy per sample");
    fprintf(f, "<rect class=\"frame\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"/>\n", L, T,
            W - L - R, H - T - B);
    /* x ticks */
    if (logx) {
        for (double d = x0; d <= x1 + 1e-9; d++) {
            double x = L + (d - x0) / (x1 - x0) * (W - L - R);
            fprintf(f, "<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
                       "<text class=\"tick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n",
                    x, T, x, H - B, x, H - B + 16, pow(10, d));
        }
    } else {
        double st = nice_step(x1 - x0, 6);
        for (double v = 0; v <= x1 + 1e-12; v += st) {
            double x = SX(v);
            fprintf(f, "<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
                       "<text class=\"tick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n",
                    x, T, x, H - B, x, H - B + 16, v);
        }
    }
    double yst = nice_step(y1 - y0, 5);
    for (double v = y0; v <= y1 + 1e-9; v += yst) {
        double y = SY(v);
        fprintf(f, "<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
                   "<text class=\"tick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n",
                L, y, W - R, y, L - 6, y + 4, v);
    }
    fprintf(f, "<text class=\"axis\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">compute energy per sample, "
               "nJ (figure b%s)</text>\n", (L + W - R) / 2, H - 18, logx ? ", log scale" : "");
    fprintf(f, "<text class=\"axis\" transform=\"translate(18 %.1f) rotate(-90)\" text-anchor=\"middle\">"
               "accuracy (%%)</text>\n", (T + H - B) / 2);
    /* Pareto front: the non-dominated runs by increasing energy. */
    int *order = snn_xmalloc((size_t)(n ? n : 1) * sizeof *order);
    int m = 0;
    for (int i = 0; i < n; i++)
        if (rows[i].pareto) order[m++] = i;
    for (int a = 1; a < m; a++)
        for (int b = a; b > 0 && rows[order[b]].e_compute < rows[order[b - 1]].e_compute; b--) {
            int t = order[b];
            order[b] = order[b - 1];
            order[b - 1] = t;
        }
    fputs("<polyline class=\"pareto\" points=\"", f);
    for (int a = 0; a < m; a++)
        fprintf(f, "%s%.1f,%.1f", a ? " " : "", SX(rows[order[a]].e_compute / 1000), SY(100 * rows[order[a]].acc));
    fputs("\"/>\n", f);
    free(order);
    for (int i = 0; i < n; i++) {
        double x = SX(rows[i].e_compute / 1000), y = SY(100 * rows[i].acc);
        char b1[32];
        fprintf(f, "<circle class=\"run\" data-run=\"");
        snn_xml_text(f, rows[i].run->name);
        fprintf(f, "\" data-pareto=\"%s\" cx=\"%.1f\" cy=\"%.1f\" r=\"%d\" fill=\"%s\"><title>",
                rows[i].pareto ? "true" : "false", x, y, rows[i].pareto ? 7 : 5, run_colors[i % N_RUN_COLORS]);
        snn_xml_text(f, rows[i].run->name);
        fprintf(f, ": accuracy %.2f%%, %s nJ per sample%s</title></circle>\n", 100 * rows[i].acc,
                short_num(b1, sizeof b1, rows[i].e_compute / 1000), rows[i].pareto ? " (Pareto front)" : "");
        fprintf(f, "<text class=\"label\" x=\"%.1f\" y=\"%.1f\">", x + 9, y - 6);
        snn_xml_text(f, rows[i].run->name);
        fputs("</text>\n", f);
    }
    fputs("</svg>\n", f);
#undef SX
#undef SY
}

static void energy_bars(FILE *f, const row *rows, int n) {
    const double W = 720, L = 130, R = 30, T = 20, bar = 22, gap = 10;
    double plot_h = n * (bar + gap), H = T + plot_h + 50 + 22 * ((N_CATS + 2) / 3);
    double emax = 0;
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (size_t l = 0; l < rows[i].n_layers; l++)
            if (rows[i].layer_pj[l] > 0) s += rows[i].layer_pj[l];
        if (s / 1000 > emax) emax = s / 1000;
    }
    if (emax <= 0) emax = 1;
    double st = nice_step(emax, 6), xmax = ceil(emax / st) * st;
    svg_begin(f, "layer-energy", W, H, "Compute energy per sample by layer (figure b)");
    for (double v = 0; v <= xmax + 1e-12; v += st) {
        double x = L + v / xmax * (W - L - R);
        fprintf(f, "<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
                   "<text class=\"tick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n",
                x, T, x, T + plot_h, x, T + plot_h + 16, v);
    }
    fprintf(f, "<text class=\"axis\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">compute energy per sample, nJ "
               "(stacked by layer)</text>\n", (L + W - R) / 2, T + plot_h + 34);
    for (int i = 0; i < n; i++) {
        double y = T + i * (bar + gap) + gap / 2, x = L;
        fputs("<g class=\"run\" data-run=\"", f);
        snn_xml_text(f, rows[i].run->name);
        fprintf(f, "\"><text class=\"label\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">", L - 6, y + bar * 0.7);
        snn_xml_text(f, rows[i].run->name);
        fputs("</text>\n", f);
        for (size_t l = 0; l < rows[i].n_layers; l++) {
            double e = rows[i].layer_pj[l] / 1000;
            if (!(e > 0)) continue;
            double w = e / xmax * (W - L - R);
            char b[32];
            fprintf(f, "<rect class=\"layer\" x=\"%.2f\" y=\"%.1f\" width=\"%.2f\" height=\"%.1f\" fill=\"%s\"><title>",
                    x, y, w, bar, cat_colors[layer_category(rows[i].layers[l])]);
            snn_xml_text(f, rows[i].run->name);
            fputs(" ", f);
            snn_xml_text(f, rows[i].layers[l]);
            fprintf(f, ": %s nJ</title></rect>\n", short_num(b, sizeof b, e));
            x += w;
        }
        fputs("</g>\n", f);
    }
    for (int c = 0; c < N_CATS; c++) {
        double lx = L + (c % 3) * 190, ly = T + plot_h + 50 + (c / 3) * 22;
        fprintf(f, "<rect class=\"key\" x=\"%.1f\" y=\"%.1f\" width=\"12\" height=\"12\" fill=\"%s\"/>"
                   "<text class=\"tick\" x=\"%.1f\" y=\"%.1f\">%s</text>\n",
                lx, ly, cat_colors[c], lx + 16, ly + 10, cat_names[c]);
    }
    fputs("</svg>\n", f);
}

static void rate_chart(FILE *f, const row *rows, int n) {
    /* x axis: every population of any run, in first-seen forward order */
    char **names = NULL;
    int np = 0, spiking = 0;
    for (int i = 0; i < n; i++) {
        spiking += rows[i].n_pops > 0;
        int after = -1; /* where this run's previous population sits on the axis */
        for (size_t p = 0; p < rows[i].n_pops; p++) {
            int at = -1;
            for (int q = 0; q < np && at < 0; q++)
                if (!strcmp(names[q], rows[i].pops[p])) at = q;
            if (at < 0) { /* a new population goes right after its predecessor in this run */
                names = snn_xrealloc(names, (size_t)(np + 1) * sizeof *names);
                at = after + 1;
                memmove(names + at + 1, names + at, (size_t)(np - at) * sizeof *names);
                names[at] = rows[i].pops[p];
                np++;
            }
            after = at;
        }
    }
    const double L = 70, R = 30, T = 20, B = 170, step = 34;
    double W = L + R + (np > 1 ? np : 1) * step + 160, H = 420;
    if (W < 720) W = 720;
    double rmax = 0;
    for (int i = 0; i < n; i++)
        for (size_t p = 0; p < rows[i].n_pops; p++)
            if (rows[i].pop_rate[p] > rmax) rmax = rows[i].pop_rate[p];
    if (rmax <= 0) rmax = 0.1;
    double yst = nice_step(rmax, 5), ymax = ceil(rmax / yst) * yst;
    svg_begin(f, "firing-rate", W, H, "Mean firing rate per population");
    if (!spiking) {
        fputs("<text class=\"axis\" x=\"20\" y=\"40\">No spiking populations: every run is an ANN "
              "baseline.</text>\n</svg>\n", f);
        free(names);
        return;
    }
    double pw = np * step;
#define PX(q) (L + step / 2 + (q) * step)
#define PY(v) (T + (H - T - B) * (1 - (v) / ymax))
    for (double v = 0; v <= ymax + 1e-12; v += yst)
        fprintf(f, "<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
                   "<text class=\"tick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n",
                L, PY(v), L + pw, PY(v), L - 6, PY(v) + 4, v);
    for (int q = 0; q < np; q++) {
        fprintf(f, "<text class=\"tick\" transform=\"translate(%.1f %.1f) rotate(-55)\" text-anchor=\"end\">",
                PX(q) + 4, H - B + 14);
        snn_xml_text(f, names[q]);
        fputs("</text>\n", f);
    }
    fprintf(f, "<text class=\"axis\" transform=\"translate(18 %.1f) rotate(-90)\" text-anchor=\"middle\">"
               "firing rate (spikes / neuron / step)</text>\n", (T + H - B) / 2);
    int li = 0;
    for (int i = 0; i < n; i++) {
        if (!rows[i].n_pops) continue;
        const char *col = run_colors[i % N_RUN_COLORS];
        fputs("<g class=\"rates\" data-run=\"", f);
        snn_xml_text(f, rows[i].run->name);
        fprintf(f, "\"><polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", col);
        for (size_t p = 0; p < rows[i].n_pops; p++) {
            int q = 0;
            while (q < np && strcmp(names[q], rows[i].pops[p])) q++;
            fprintf(f, "%s%.1f,%.1f", p ? " " : "", PX(q), PY(rows[i].pop_rate[p]));
        }
        fputs("\"/>\n", f);
        for (size_t p = 0; p < rows[i].n_pops; p++) {
            int q = 0;
            while (q < np && strcmp(names[q], rows[i].pops[p])) q++;
            fprintf(f, "<circle class=\"rate\" cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"><title>", PX(q),
                    PY(rows[i].pop_rate[p]), col);
            snn_xml_text(f, rows[i].run->name);
            fputs(" ", f);
            snn_xml_text(f, rows[i].pops[p]);
            fprintf(f, ": %.4f</title></circle>\n", rows[i].pop_rate[p]);
        }
        double lx = L + pw + 20, ly = T + 10 + li++ * 18;
        fprintf(f, "<rect class=\"key\" x=\"%.1f\" y=\"%.1f\" width=\"12\" height=\"12\" fill=\"%s\"/>"
                   "<text class=\"tick\" x=\"%.1f\" y=\"%.1f\">", lx, ly, col, lx + 16, ly + 10);
        snn_xml_text(f, rows[i].run->name);
        fputs("</text></g>\n", f);
    }
    fputs("</svg>\n", f);
    free(names);
#undef PX
#undef PY
}

static const char html_css[] =
    "body{font-family:DejaVu Sans,Arial,sans-serif;margin:24px;color:#222;max-width:1100px}"
    "h1{font-size:22px}h2{font-size:17px;margin-top:28px}p.note{font-size:13px;color:#444}"
    "table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #ccc;padding:3px 7px}"
    "td.n{text-align:right}tr.pareto td{background:#eef6ee}"
    "svg{display:block;margin:8px 0;font-size:12px}svg .frame{fill:none;stroke:#999}"
    "svg .grid{stroke:#e4e4e4}svg .tick{fill:#444;font-size:11px}svg .axis{fill:#222;font-size:12px}"
    "svg .label{fill:#222;font-size:11px}svg .pareto{fill:none;stroke:#d62728;stroke-width:1.5;"
    "stroke-dasharray:5 3}svg circle.run{stroke:#222;stroke-width:1}"
    "svg circle.run[data-pareto=\"true\"]{stroke:#d62728;stroke-width:2.5}";

static void write_html(FILE *f, const snn_compare *c, const row *rows, int n) {
    fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>spikesim compare: ", f);
    snn_xml_text(f, c->name);
    fprintf(f, "</title>\n<style>%s</style>\n</head>\n<body>\n<h1>Comparison: ", html_css);
    snn_xml_text(f, c->name);
    fprintf(f, "</h1>\n<p class=\"note\">%d run%s from <code>", n, n == 1 ? "" : "s");
    snn_xml_text(f, c->path);
    fprintf(f, "</code>, written by spikesim %s. ", SNN_VERSION);
    snn_xml_text(f, figures_note);
    fputs("</p>\n<h2>Accuracy against energy</h2>\n", f);
    scatter(f, rows, n);
    fputs("<h2>Energy per layer</h2>\n", f);
    energy_bars(f, rows, n);
    fputs("<h2>Firing rate per population</h2>\n", f);
    rate_chart(f, rows, n);
    fputs("<h2>Runs</h2>\n<table id=\"runs\">\n<tr>", f);
    for (int h = 0; h < N_TABLE; h++) fprintf(f, "<th>%s</th>", table_head[h]);
    fputs("</tr>\n", f);
    for (int i = 0; i < n; i++) {
        char cells[N_TABLE][64];
        table_cells(&rows[i], cells);
        fprintf(f, "<tr class=\"run%s\">", rows[i].pareto ? " pareto" : "");
        for (int h = 0; h < N_TABLE; h++) {
            fputs(h < 2 ? "<td>" : "<td class=\"n\">", f);
            snn_xml_text(f, cells[h]);
            fputs("</td>", f);
        }
        fputs("</tr>\n", f);
    }
    fputs("</table>\n", f);
    bool any = false;
    for (int i = 0; i < c->n_runs; i++) any |= c->runs[i].skipped;
    if (any) {
        fputs("<h2>Skipped grid points</h2>\n<ul id=\"skipped\">\n", f);
        for (int i = 0; i < c->n_runs; i++) {
            if (!c->runs[i].skipped) continue;
            fputs("<li><code>", f);
            snn_xml_text(f, c->runs[i].name);
            fputs("</code>: ", f);
            snn_xml_text(f, c->runs[i].skip_reason);
            fputs("</li>\n", f);
        }
        fputs("</ul>\n", f);
    }
    fputs("</body>\n</html>\n", f);
}

typedef void (*writer_fn)(FILE *f, const snn_compare *c, const char *dir, const row *rows, int n);

static void w_csv(FILE *f, const snn_compare *c, const char *dir, const row *rows, int n) {
    (void)c, (void)dir;
    write_csv(f, rows, n);
}
static void w_json(FILE *f, const snn_compare *c, const char *dir, const row *rows, int n) {
    (void)c, (void)dir;
    write_json(f, rows, n);
}
static void w_md(FILE *f, const snn_compare *c, const char *dir, const row *rows, int n) {
    write_md(f, c, dir, rows, n);
}
static void w_html(FILE *f, const snn_compare *c, const char *dir, const row *rows, int n) {
    (void)dir;
    write_html(f, c, rows, n);
}

int snn_compare_report(const snn_compare *c, const char *dir, snn_err *err) {
    if (mkdir_p(dir, err) != SNN_OK) return SNN_ERR;
    row *rows = snn_xcalloc((size_t)(c->n_runs ? c->n_runs : 1), sizeof *rows);
    int n = 0, rc = SNN_OK;
    for (int i = 0; i < c->n_runs && rc == SNN_OK; i++) {
        if (c->runs[i].skipped) continue;
        char *p = run_path(dir, c->runs[i].name, NULL);
        rows[n].run = &c->runs[i];
        rc = read_row(p, &rows[n], err);
        /* a run evaluated from its best checkpoint: the training is in the checkpoint */
        rows[n].train_seconds = train_seconds_of(p);
        if (!isfinite(rows[n].train_seconds)) {
            char *b = run_path(dir, c->runs[i].name, "best");
            rows[n].train_seconds = train_seconds_of(b);
            free(b);
        }
        n++;
        free(p);
    }
    for (int i = 0; i < n && rc == SNN_OK; i++) {
        rows[i].pareto = true;
        for (int j = 0; j < n; j++) {
            const row *a = &rows[i], *b = &rows[j];
            if (b->e_compute <= a->e_compute && b->acc >= a->acc && (b->e_compute < a->e_compute || b->acc > a->acc))
                rows[i].pareto = false;
        }
    }
    static const char *const files[] = {"summary.csv", "summary.json", "report.md", "report.html"};
    const writer_fn writers[] = {w_csv, w_json, w_md, w_html};
    for (int k = 0; k < 4 && rc == SNN_OK; k++) {
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        SNN_ASSERT(f);
        writers[k](f, c, dir, rows, n);
        fclose(f);
        char *path = snn_xasprintf("%s/%s", dir, files[k]);
        rc = snn_write_file_atomic(path, buf, len, err);
        free(path);
        free(buf);
    }
    for (int i = 0; i < n; i++) row_free(&rows[i]);
    free(rows);
    return rc;
}

/* ---- command line --------------------------------------------------------------------------- */

int snn_compare_cli(int argc, char **argv, const char *usage) {
    const char *file = NULL, *dir = NULL;
    int threads = 0;
    bool quiet = false, dry = false;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--threads") && i + 1 < argc) {
            if ((threads = snn_cli_threads(argv[++i])) < 0) return SNN_EXIT_USAGE;
        } else if (!strcmp(a, "--quiet")) {
            quiet = true;
        } else if (!strcmp(a, "--dry-run")) {
            dry = true;
        } else {
            int rc = snn_cli_single_file_arg(argc, argv, &i, "compare", "CONFIG", usage, &dir, &file);
            if (rc >= 0) return rc;
        }
    }
    if (!file) {
        fprintf(stderr, "spikesim: error: compare needs a CONFIG\n%s", usage);
        return SNN_EXIT_USAGE;
    }
    /* under mpirun: every rank runs its share of the runs; rank 0 alone prints diagnostics,
     * the summary and errors */
    const bool root = snn_dist_rank() == 0;
    snn_compare c;
    if (snn_compare_load(&c, file, root ? stderr : NULL)) {
        snn_compare_free(&c);
        return SNN_EXIT_USAGE;
    }
    quiet = quiet || (dry && !root);
    char *def = dir ? NULL : snn_xasprintf("runs/%s", c.name);
    snn_compare_opts o = {.dir = dir ? dir : def, .threads = threads, .dry_run = dry,
                          .log = quiet ? NULL : stderr, .distributed = true};
    snn_compare_stats st;
    snn_err err = {{0}};
    bool cfg_err = false;
    int rc = snn_compare_execute(&c, &o, &st, &cfg_err, &err);
    if (rc == SNN_INTERRUPTED) {
        /* A training run saved its .last.h5; compare itself restarts an unfinished training but
         * reuses every finished run when run again. */
        if (root)
            fprintf(stderr, "spikesim: %s; finished runs are reused when compare runs again\n",
                    err.msg);
        snn_compare_free(&c);
        free(def);
        return 128 + snn_interrupt_pending();
    } else if (rc != SNN_OK) {
        if (root) fprintf(stderr, "spikesim: error: %s\n", err.msg); /* every rank's outcome */
    } else if (dry) {
        if (!quiet) fprintf(stderr, "compare: %s: ok (dry run: nothing was run or written)\n", file);
    } else if (!quiet && root) {
        fprintf(stderr, "compare: %d trained, %d simulated, %d evaluated from checkpoints, %d reused, %d skipped; "
                "wrote %s/report.html, report.md, summary.csv, summary.json\n", st.trained, st.simulated,
                st.from_checkpoint, st.reused, st.skipped, o.dir);
    }
    snn_compare_free(&c);
    free(def);
    return rc == SNN_OK ? SNN_EXIT_OK : cfg_err ? SNN_EXIT_USAGE : SNN_EXIT_RUNTIME;
}
