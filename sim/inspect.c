/*
 * inspect.c: `spikesim inspect`, `spikesim raster` and `spikesim rates` (see inspect.h and
 * docs/inspect.md).
 *
 * Why it looks the way it does:
 *   - Read what is there. Run files change (new /summary attributes, new groups), and people
 *     point inspect at checkpoints and golden files too. So the summary formats the keys it
 *     knows and then lists every other root and /summary attribute as it finds it, and every
 *     section is skipped when its group is missing: only "not an HDF5 file" is an error.
 *   - Compact, not abridged. A run has one /nodes group per population with the same inner
 *     layout; the tree expands the first of each layout and prints the others on one line
 *     ("same layout as ...", plus the first shape that differs), so every name is still there.
 *   - Portable HDF5. Links are listed by index (H5Lget_name_by_idx) rather than with
 *     H5Literate, whose callback type changed in 1.12; soft and external links are shown, not
 *     followed, and a hard link back to an ancestor is not followed either (no endless tree).
 *   - Plots are SVG written by hand: no plotting dependency, opens in any browser, diffable.
 *     Marks carry a class ("spike-pos", "spike-neg", "cell") so tests and scripts can count them.
 *     The text is built in memory first and written atomically, like every spikesim output.
 */
#include "sim/inspect.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sim/cli.h"
#include "sim/config.h"
#include "sim/h5io.h"
#include "sim/textout.h"

/* Deeper trees are cut (a file this deep is not a run file; it also bounds recursion). */
#define TREE_MAX_DEPTH 32
/* Attribute arrays longer than this print their first values only. */
#define ATTR_SHOW 8
/* Attributes with more elements than this are described, not read. */
#define ATTR_READ_MAX 4096

/* ---- small helpers -------------------------------------------------------------------------- */

typedef struct strlist {
    char **s;
    int n, cap;
} strlist;

static void strlist_push(strlist *l, char *owned) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        l->s = snn_xrealloc(l->s, (size_t)l->cap * sizeof *l->s);
    }
    l->s[l->n++] = owned;
}

static void strlist_free(strlist *l) {
    for (int i = 0; i < l->n; i++) free(l->s[i]);
    free(l->s);
    *l = (strlist){0};
}

static int strlist_find(const strlist *l, const char *s) {
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->s[i], s)) return i;
    return -1;
}


/* 1 when every link along path (absolute or relative to loc) exists and the object it names
 * opens as the given type. H5Lexists fails rather than answering "no" when an intermediate
 * group is missing, hence the walk. */
static bool has_object(hid_t loc, const char *path, H5I_type_t want) {
    char *buf = snn_xstrdup(path);
    bool ok = true;
    size_t len = strlen(buf), i = 0;
    while (i < len && buf[i] == '/') i++;
    while (ok && i < len) {
        size_t j = i;
        while (j < len && buf[j] != '/') j++;
        char saved = buf[j];
        buf[j] = '\0';
        htri_t e;
        H5E_BEGIN_TRY { e = H5Lexists(loc, buf, H5P_DEFAULT); } H5E_END_TRY;
        buf[j] = saved;
        ok = e > 0;
        i = j;
        while (i < len && buf[i] == '/') i++;
    }
    free(buf);
    if (!ok) return false;
    hid_t obj;
    H5E_BEGIN_TRY { obj = H5Oopen(loc, path, H5P_DEFAULT); } H5E_END_TRY;
    if (obj < 0) return false;
    bool match = H5Iget_type(obj) == want;
    H5Oclose(obj);
    return match;
}

/* Names of the links in group loc, in name order (what h5ls shows). */
static void list_links(hid_t grp, strlist *out) {
    H5G_info_t gi;
    if (H5Gget_info(grp, &gi) < 0) return;
    for (hsize_t i = 0; i < gi.nlinks; i++) {
        ssize_t n = H5Lget_name_by_idx(grp, ".", H5_INDEX_NAME, H5_ITER_INC, i, NULL, 0, H5P_DEFAULT);
        if (n < 0) continue;
        char *name = snn_xmalloc((size_t)n + 1);
        if (H5Lget_name_by_idx(grp, ".", H5_INDEX_NAME, H5_ITER_INC, i, name, (size_t)n + 1,
                               H5P_DEFAULT) < 0) {
            free(name);
            continue;
        }
        strlist_push(out, name);
    }
}

/* "int8", "float64", "string", ...; a number type other than HDF5's standard integers and IEEE
 * floats (never read: snn_h5_is_standard_numeric) says so. */
static void dtype_name(hid_t t, char *buf, size_t n) {
    size_t bits = H5Tget_size(t) * 8;
    const char *odd = snn_h5_is_standard_numeric(t) ? "" : " (non-standard)";
    switch (H5Tget_class(t)) {
    case H5T_INTEGER:
        snprintf(buf, n, "%sint%zu%s", H5Tget_sign(t) == H5T_SGN_NONE ? "u" : "", bits, odd);
        break;
    case H5T_FLOAT: snprintf(buf, n, "float%zu%s", bits, odd); break;
    case H5T_STRING:
        if (H5Tis_variable_str(t) > 0) snprintf(buf, n, "string");
        else snprintf(buf, n, "string[%zu]", H5Tget_size(t));
        break;
    case H5T_COMPOUND: snprintf(buf, n, "compound(%d fields)", H5Tget_nmembers(t)); break;
    case H5T_ENUM: snprintf(buf, n, "enum(%zu bytes)", H5Tget_size(t)); break;
    case H5T_ARRAY: snprintf(buf, n, "array"); break;
    case H5T_VLEN: snprintf(buf, n, "vlen"); break;
    case H5T_OPAQUE: snprintf(buf, n, "opaque"); break;
    case H5T_REFERENCE: snprintf(buf, n, "reference"); break;
    case H5T_BITFIELD: snprintf(buf, n, "bitfield%zu", bits); break;
    case H5T_TIME: snprintf(buf, n, "time"); break;
    default: snprintf(buf, n, "unknown type"); break;
    }
}

/* "[16, 4, 512]", "scalar", "null". */
static void shape_text(hid_t space, char *buf, size_t n) {
    H5S_class_t c = H5Sget_simple_extent_type(space);
    if (c == H5S_SCALAR) {
        snprintf(buf, n, "scalar");
        return;
    }
    if (c != H5S_SIMPLE) {
        snprintf(buf, n, "null");
        return;
    }
    hsize_t dims[H5S_MAX_RANK];
    int r = H5Sget_simple_extent_dims(space, dims, NULL);
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < r && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%llu", i ? ", " : "", (unsigned long long)dims[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

/* Reads n strings (variable or fixed length) from an attribute (is_attr) or dataset into
 * malloc'd copies; NULL on failure. */
static char **read_strings(hid_t obj, bool is_attr, hid_t ftype, size_t n) {
    hid_t mt = H5Tcopy(H5T_C_S1);
    char **out = snn_xcalloc(n ? n : 1, sizeof *out);
    herr_t rc;
    if (H5Tis_variable_str(ftype) > 0) {
        H5Tset_size(mt, H5T_VARIABLE);
        H5Tset_cset(mt, H5Tget_cset(ftype));
        char **raw = snn_xcalloc(n ? n : 1, sizeof *raw);
        rc = is_attr ? H5Aread(obj, mt, raw) : H5Dread(obj, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw);
        for (size_t i = 0; i < n; i++) {
            out[i] = snn_xstrdup(rc >= 0 && raw[i] ? raw[i] : "");
            if (raw[i]) H5free_memory(raw[i]);
        }
        free(raw);
    } else {
        /* One more byte than stored, null-terminated: HDF5 converts null- or space-padded
         * strings into it without cutting the last character. */
        size_t sz = H5Tget_size(ftype) + 1;
        H5Tset_size(mt, sz);
        H5Tset_strpad(mt, H5T_STR_NULLTERM);
        char *raw = snn_xcalloc(n ? n : 1, sz);
        rc = is_attr ? H5Aread(obj, mt, raw) : H5Dread(obj, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw);
        for (size_t i = 0; i < n; i++) {
            char *s = raw + i * sz;
            s[sz - 1] = '\0';
            size_t L = strlen(s);
            while (L && s[L - 1] == ' ') s[--L] = '\0';
            out[i] = snn_xstrdup(s);
        }
        free(raw);
    }
    H5Tclose(mt);
    if (rc < 0) {
        for (size_t i = 0; i < n; i++) free(out[i]);
        free(out);
        return NULL;
    }
    return out;
}

/* The value of an open attribute (is_attr) or dataset that holds exactly one string, as a
 * malloc'd string; NULL when it holds anything else. */
static char *one_string(hid_t obj, bool is_attr) {
    hid_t t = is_attr ? H5Aget_type(obj) : H5Dget_type(obj);
    hid_t s = is_attr ? H5Aget_space(obj) : H5Dget_space(obj);
    char *out = NULL;
    if (H5Tget_class(t) == H5T_STRING && H5Sget_simple_extent_npoints(s) == 1) {
        char **v = read_strings(obj, is_attr, t, 1);
        if (v) {
            out = v[0];
            free(v);
        }
    }
    H5Sclose(s);
    H5Tclose(t);
    return out;
}

/* A scalar (or one-element) string attribute as a malloc'd string; NULL when absent or not a
 * string. */
static char *attr_string(hid_t obj, const char *name) {
    if (H5Aexists(obj, name) <= 0) return NULL;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return NULL;
    char *out = one_string(a, true);
    H5Aclose(a);
    return out;
}

/* Every element of a 1-D string attribute (e.g. /ops `layers`) appended to out. */
static void attr_strings(hid_t obj, const char *name, strlist *out) {
    if (H5Aexists(obj, name) <= 0) return;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return;
    hid_t t = H5Aget_type(a), s = H5Aget_space(a);
    hssize_t n = H5Sget_simple_extent_npoints(s);
    if (H5Tget_class(t) == H5T_STRING && n > 0 && n <= 1 << 20) {
        char **v = read_strings(a, true, t, (size_t)n);
        if (v) {
            for (hssize_t i = 0; i < n; i++) strlist_push(out, v[i]);
            free(v);
        }
    }
    H5Sclose(s);
    H5Tclose(t);
    H5Aclose(a);
}

/* A scalar numeric attribute as double; false when absent or not a number. */
static bool attr_number(hid_t obj, const char *name, double *v) {
    if (H5Aexists(obj, name) <= 0) return false;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return false;
    hid_t t = H5Aget_type(a), s = H5Aget_space(a);
    bool ok = snn_h5_is_standard_numeric(t) && H5Sget_simple_extent_npoints(s) == 1 &&
              H5Aread(a, H5T_NATIVE_DOUBLE, v) >= 0;
    H5Sclose(s);
    H5Tclose(t);
    H5Aclose(a);
    return ok;
}

/* A numeric dataset of any rank, converted to double (malloc'd, *n elements, dims in dims[]
 * when not NULL); NULL when absent, not numeric or unreadable. */
static double *read_doubles(hid_t file, const char *path, size_t *n, int *rank, hsize_t *dims) {
    *n = 0;
    if (!has_object(file, path, H5I_DATASET)) return NULL;
    hid_t d = H5Dopen2(file, path, H5P_DEFAULT);
    if (d < 0) return NULL;
    hid_t t = H5Dget_type(d), s = H5Dget_space(d);
    double *buf = NULL;
    hssize_t np = H5Sget_simple_extent_npoints(s);
    int r = H5Sget_simple_extent_ndims(s);
    if (snn_h5_is_standard_numeric(t) && np > 0 && r >= 0 && r <= H5S_MAX_RANK &&
        (uint64_t)np <= SIZE_MAX / sizeof(double)) {
        hsize_t dd[H5S_MAX_RANK];
        H5Sget_simple_extent_dims(s, dd, NULL);
        buf = snn_xmalloc((size_t)np * sizeof *buf);
        if (H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
            free(buf);
            buf = NULL;
        } else {
            *n = (size_t)np;
            if (rank) *rank = r;
            if (dims)
                for (int i = 0; i < r; i++) dims[i] = dd[i];
        }
    }
    H5Sclose(s);
    H5Tclose(t);
    H5Dclose(d);
    return buf;
}

/* A scalar string dataset (/config) as a malloc'd string, or NULL. */
static char *read_text(hid_t file, const char *path) {
    if (!has_object(file, path, H5I_DATASET)) return NULL;
    hid_t d = H5Dopen2(file, path, H5P_DEFAULT);
    if (d < 0) return NULL;
    char *out = one_string(d, false);
    H5Dclose(d);
    return out;
}

/* Prints s on one line: newlines as "\n", cut after max characters ("... (N chars)"), so a
 * paragraph-long description does not swamp the summary (h5dump -A prints it whole). */
static void put_short(FILE *out, const char *s, size_t max) {
    size_t n = strlen(s);
    for (size_t i = 0; i < n && i < max; i++) {
        if (s[i] == '\n') fputs("\\n", out);
        else if ((unsigned char)s[i] < 0x20) fputc(' ', out);
        else fputc(s[i], out);
    }
    if (n > max) fprintf(out, "... (%zu chars)", n);
}

/* Prints an attribute's value: scalars plainly, arrays as [a, b, ...] (the first ATTR_SHOW). */
static void put_attr_value(FILE *out, hid_t a) {
    hid_t t = H5Aget_type(a), s = H5Aget_space(a);
    H5S_class_t sc = H5Sget_simple_extent_type(s);
    hssize_t n = H5Sget_simple_extent_npoints(s);
    H5T_class_t c = H5Tget_class(t);
    char tn[64];
    dtype_name(t, tn, sizeof tn);
    const bool array = sc == H5S_SIMPLE;
    if (sc == H5S_NULL || n <= 0) {
        fprintf(out, "(empty %s)", tn);
    } else if (n > ATTR_READ_MAX ||
               !(c == H5T_STRING || c == H5T_ENUM || snn_h5_is_standard_numeric(t))) {
        fprintf(out, "<%s, %lld values>", tn, (long long)n);
    } else {
        const size_t cnt = (size_t)n, show = cnt > ATTR_SHOW ? ATTR_SHOW : cnt;
        if (array) fputc('[', out);
        if (c == H5T_STRING) {
            char **v = read_strings(a, true, t, cnt);
            for (size_t i = 0; v && i < show; i++) {
                if (array) fprintf(out, "%s\"", i ? ", " : "");
                put_short(out, v[i], array ? 40 : 100);
                if (array) fputc('"', out);
            }
            if (!v) fputs("(unreadable)", out);
            for (size_t i = 0; v && i < cnt; i++) free(v[i]);
            free(v);
        } else if (c == H5T_ENUM) {
            /* h5py stores bool as an enum: print the member names. */
            size_t sz = H5Tget_size(t);
            unsigned char *raw = snn_xmalloc(cnt * sz);
            if (H5Aread(a, t, raw) >= 0) {
                for (size_t i = 0; i < show; i++) {
                    char nm[64] = "?";
                    H5E_BEGIN_TRY { H5Tenum_nameof(t, raw + i * sz, nm, sizeof nm); } H5E_END_TRY;
                    fprintf(out, "%s%s", i ? ", " : "", nm);
                }
            } else {
                fputs("(unreadable)", out);
            }
            free(raw);
        } else if (c == H5T_FLOAT) {
            double *v = snn_xmalloc(cnt * sizeof *v);
            if (H5Aread(a, H5T_NATIVE_DOUBLE, v) >= 0)
                for (size_t i = 0; i < show; i++) fprintf(out, "%s%.6g", i ? ", " : "", v[i]);
            else fputs("(unreadable)", out);
            free(v);
        } else if (H5Tget_sign(t) == H5T_SGN_NONE) {
            unsigned long long *v = snn_xmalloc(cnt * sizeof *v);
            if (H5Aread(a, H5T_NATIVE_ULLONG, v) >= 0)
                for (size_t i = 0; i < show; i++) fprintf(out, "%s%llu", i ? ", " : "", v[i]);
            else fputs("(unreadable)", out);
            free(v);
        } else {
            long long *v = snn_xmalloc(cnt * sizeof *v);
            if (H5Aread(a, H5T_NATIVE_LLONG, v) >= 0)
                for (size_t i = 0; i < show; i++) fprintf(out, "%s%lld", i ? ", " : "", v[i]);
            else fputs("(unreadable)", out);
            free(v);
        }
        if (cnt > show) fprintf(out, ", ... (%zu values)", cnt);
        if (array) fputc(']', out);
    }
    H5Sclose(s);
    H5Tclose(t);
}

/* ---- populations ---------------------------------------------------------------------------- */

/* The /nodes/<population> groups that hold the dataset `need` (relative to the group), in
 * forward order: the order of the /ops `layers` attribute, which lists every population's
 * neuron updates where the forward pass runs them; groups it does not name (older files,
 * files without /ops) follow in name order. */
static void collect_populations(hid_t file, const char *need, strlist *out) {
    if (!has_object(file, "/nodes", H5I_GROUP)) return;
    hid_t g = H5Gopen2(file, "/nodes", H5P_DEFAULT);
    if (g < 0) return;
    strlist names = {0}, layers = {0};
    list_links(g, &names);
    H5Gclose(g);
    if (has_object(file, "/ops", H5I_GROUP)) {
        hid_t ops = H5Gopen2(file, "/ops", H5P_DEFAULT);
        if (ops >= 0) {
            attr_strings(ops, "layers", &layers);
            H5Gclose(ops);
        }
    }
    bool *taken = snn_xcalloc((size_t)names.n + 1, sizeof *taken);
    for (int i = 0; i < names.n; i++) {
        char *p = snn_xasprintf("/nodes/%s/%s", names.s[i], need);
        if (!has_object(file, p, H5I_DATASET)) taken[i] = true; /* not a population */
        free(p);
    }
    for (int l = 0; l < layers.n; l++) {
        int i = strlist_find(&names, layers.s[l]);
        if (i >= 0 && !taken[i]) {
            strlist_push(out, snn_xstrdup(names.s[i]));
            taken[i] = true;
        }
    }
    for (int i = 0; i < names.n; i++)
        if (!taken[i]) strlist_push(out, snn_xstrdup(names.s[i]));
    free(taken);
    strlist_free(&names);
    strlist_free(&layers);
}

/* ---- the summary ---------------------------------------------------------------------------- */

/* Prints "label        " (13 columns, as in the summary block). */
static void label(FILE *out, const char *l) {
    fprintf(out, "%-13s", l);
}

static bool in_list(const char *const *list, const char *s) {
    for (; *list; list++)
        if (!strcmp(*list, s)) return true;
    return false;
}

/* Lists every attribute of obj not in `shown`, one "name  value" line each (prefix names the
 * object when it is not the root). */
static void other_attributes(FILE *out, hid_t obj, const char *prefix, const char *const *shown) {
    /* By index until the first failure: portable across HDF5 1.10 and 1.12+, where the
     * attribute count moved between H5O_info structs. */
    for (hsize_t i = 0;; i++) {
        hid_t a;
        H5E_BEGIN_TRY {
            a = H5Aopen_by_idx(obj, ".", H5_INDEX_NAME, H5_ITER_INC, i, H5P_DEFAULT, H5P_DEFAULT);
        } H5E_END_TRY;
        if (a < 0) break;
        char name[256];
        if (H5Aget_name(a, sizeof name, name) >= 0 && !in_list(shown, name)) {
            char lab[300];
            snprintf(lab, sizeof lab, "%s%s", prefix, name);
            fprintf(out, "%-28s ", lab);
            put_attr_value(out, a);
            fputc('\n', out);
        }
        H5Aclose(a);
    }
}

static void print_population_table(FILE *out, hid_t file) {
    strlist pops = {0};
    collect_populations(file, "stats/firing_rate_per_step", &pops);
    if (pops.n == 0) {
        strlist_free(&pops);
        return;
    }
    size_t w = 0;
    for (int i = 0; i < pops.n; i++)
        if (strlen(pops.s[i]) > w) w = strlen(pops.s[i]);
    label(out, "populations");
    fprintf(out, "%d, forward order; rate = spikes / neuron / timestep over all evaluated samples\n",
            pops.n);
    for (int i = 0; i < pops.n; i++) {
        char *g = snn_xasprintf("/nodes/%s", pops.s[i]);
        char *p = snn_xasprintf("%s/stats/firing_rate_per_step", g);
        size_t T = 0;
        double *r = read_doubles(file, p, &T, NULL, NULL);
        char *model = NULL;
        double neurons = NAN;
        hid_t gid = H5Gopen2(file, g, H5P_DEFAULT);
        if (gid >= 0) {
            model = attr_string(gid, "neuron_model");
            attr_number(gid, "n_neurons", &neurons);
            H5Gclose(gid);
        }
        double mean = 0.0;
        for (size_t t = 0; t < T; t++) mean += r[t];
        if (T) mean /= (double)T;
        fprintf(out, "  %-*s  %-10s", (int)w, pops.s[i], model ? model : "?");
        if (isfinite(neurons)) fprintf(out, " %7.0f neurons", neurons);
        fprintf(out, "  rate %.4f  per step", mean);
        for (size_t t = 0; t < T && t < 16; t++) fprintf(out, " %.3f", r[t]);
        if (T > 16) fprintf(out, " ... (%zu steps)", T);
        fputc('\n', out);
        free(model);
        free(r);
        free(p);
        free(g);
    }
    strlist_free(&pops);
}

static void print_summary(FILE *out, hid_t file, const char *path) {
    static const char *const root_shown[] = {
        "format", "format_version", "generator", "version", "created", "hostname", "seed",
        "threads", "n_samples", "n_steps", "attention", "__type__", "dt", "dt_units", NULL};
    static const char *const summary_shown[] = {
        "accuracy", "samples_evaluated", "sops_per_sample", "macs_per_sample",
        "energy_pj_per_sample", "firing_rate_mean", "wall_seconds", "parameters", NULL};
    hid_t root = H5Gopen2(file, "/", H5P_DEFAULT);
    struct stat st;
    label(out, "file");
    if (stat(path, &st) == 0 && st.st_size >= (1 << 20))
        fprintf(out, "%s (%.1f MiB)\n", path, (double)st.st_size / (1 << 20));
    else if (stat(path, &st) == 0)
        fprintf(out, "%s (%.1f KiB)\n", path, (double)st.st_size / 1024.0);
    else fprintf(out, "%s\n", path);

    char *format = attr_string(root, "format"), *fver = attr_string(root, "format_version");
    char *gen = attr_string(root, "generator"), *created = attr_string(root, "created");
    char *host = attr_string(root, "hostname"), *type = attr_string(root, "__type__");
    if (format || gen) {
        label(out, format ? "format" : "generator");
        if (format) fprintf(out, "%s %s", format, fver ? fver : "");
        if (type) fprintf(out, " (%s)", type);
        if (gen) fprintf(out, format ? ", written by %s" : "%s", gen);
        if (created) fprintf(out, " at %s", created);
        if (host && *host) fprintf(out, " on %s", host);
        fputc('\n', out);
    }

    /* The model line comes from the resolved config when it parses; else from root attrs. */
    char *yaml = read_text(file, "/config");
    char *attention = attr_string(root, "attention");
    double T_attr = NAN;
    attr_number(root, "n_steps", &T_attr);
    snn_config cfg;
    bool have_cfg = false;
    if (yaml) {
        have_cfg = snn_config_load_string(&cfg, yaml, "/config", NULL, 0, NULL) == 0;
        if (!have_cfg) snn_config_free(&cfg);
    }
    if (have_cfg) {
        label(out, "run");
        fprintf(out, "%s: attention %s, T=%d, N=%d, D=%d, heads=%d, blocks=%d\n", cfg.name,
                snn_attn_kind_name(cfg.model.attention.kind), cfg.model.timesteps,
                snn_config_tokens(&cfg), cfg.model.dim, cfg.model.heads, cfg.model.blocks);
        snn_config_free(&cfg);
    } else if (attention || isfinite(T_attr)) {
        label(out, "run");
        if (attention) fprintf(out, "attention %s", attention);
        if (isfinite(T_attr)) fprintf(out, "%sT=%.0f", attention ? ", " : "", T_attr);
        fputc('\n', out);
    } else if (yaml) {
        label(out, "config");
        fprintf(out, "/config present (not a config this spikesim reads)\n");
    }

    hid_t sum = has_object(file, "/summary", H5I_GROUP) ? H5Gopen2(file, "/summary", H5P_DEFAULT)
                                                        : H5I_INVALID_HID;
    double v, v2;
    /* Parameters: /summary says; a checkpoint has only /parameters, so count its elements. */
    if (sum >= 0 && attr_number(sum, "parameters", &v)) {
        label(out, "parameters");
        fprintf(out, "%.0f\n", v);
    } else if (has_object(file, "/parameters", H5I_GROUP)) {
        hid_t g = H5Gopen2(file, "/parameters", H5P_DEFAULT);
        strlist names = {0};
        list_links(g, &names);
        unsigned long long total = 0;
        for (int i = 0; i < names.n; i++) {
            hid_t d;
            H5E_BEGIN_TRY { d = H5Dopen2(g, names.s[i], H5P_DEFAULT); } H5E_END_TRY;
            if (d < 0) continue;
            hid_t s = H5Dget_space(d);
            hssize_t np = H5Sget_simple_extent_npoints(s);
            if (np > 0) total += (unsigned long long)np;
            H5Sclose(s);
            H5Dclose(d);
        }
        label(out, "parameters");
        fprintf(out, "%llu (%d tensors in /parameters)\n", total, names.n);
        strlist_free(&names);
        H5Gclose(g);
    }

    /* Samples: evaluated, recorded (first dimension of a spike grid), seed and threads. */
    bool have_eval = sum >= 0 && attr_number(sum, "samples_evaluated", &v);
    if (!have_eval) have_eval = attr_number(root, "n_samples", &v);
    if (have_eval) {
        label(out, "samples");
        fprintf(out, "%.0f evaluated", v);
        strlist pops = {0};
        collect_populations(file, "observables/spikes/data", &pops);
        if (pops.n) {
            char *p = snn_xasprintf("/nodes/%s/observables/spikes/data", pops.s[0]);
            hid_t d = H5Dopen2(file, p, H5P_DEFAULT);
            if (d >= 0) {
                hid_t s = H5Dget_space(d);
                hsize_t dims[H5S_MAX_RANK];
                if (H5Sget_simple_extent_dims(s, dims, NULL) >= 1)
                    fprintf(out, ", %llu recorded", (unsigned long long)dims[0]);
                H5Sclose(s);
                H5Dclose(d);
            }
            free(p);
        }
        strlist_free(&pops);
        if (attr_number(root, "seed", &v2)) fprintf(out, ", seed %.0f", v2);
        if (attr_number(root, "threads", &v2)) fprintf(out, ", %.0f threads", v2);
        fputc('\n', out);
    }
    if (sum >= 0 && attr_number(sum, "accuracy", &v)) {
        label(out, "accuracy");
        fprintf(out, "%.2f %%\n", 100.0 * v);
    }
    if (sum >= 0 && attr_number(sum, "firing_rate_mean", &v)) {
        label(out, "firing rate");
        fprintf(out, "%.4f spikes / neuron / timestep (all populations)\n", v);
    }

    /* Ops per sample by class: /ops/per_sample [layers, classes] summed over layers. */
    size_t n_ops = 0;
    int rank = 0;
    hsize_t dims[H5S_MAX_RANK] = {0};
    double *per = read_doubles(file, "/ops/per_sample", &n_ops, &rank, dims);
    strlist classes = {0};
    if (per && rank == 2 && has_object(file, "/ops", H5I_GROUP)) {
        hid_t ops = H5Gopen2(file, "/ops", H5P_DEFAULT);
        attr_strings(ops, "op_classes", &classes);
        H5Gclose(ops);
    }
    if (per && rank == 2 && classes.n == (int)dims[1]) {
        label(out, "ops/sample");
        int printed = 0;
        for (hsize_t c = 0; c < dims[1]; c++) {
            double s = 0.0;
            for (hsize_t l = 0; l < dims[0]; l++) s += per[l * dims[1] + c];
            if (s == 0.0) continue;
            fprintf(out, "%s%.3g %s", printed++ ? ", " : "", s, classes.s[c]);
        }
        fprintf(out, "%s\n", printed ? "" : "none");
    } else if (sum >= 0 && attr_number(sum, "sops_per_sample", &v)) {
        label(out, "ops/sample");
        fprintf(out, "%.3g ac", v);
        if (attr_number(sum, "macs_per_sample", &v2)) fprintf(out, ", %.3g mac", v2);
        fputc('\n', out);
    }
    strlist_free(&classes);
    free(per);

    if (sum >= 0 && attr_number(sum, "energy_pj_per_sample", &v)) {
        label(out, "energy");
        fprintf(out, "%.4g nJ / sample", v / 1000.0);
        char *preset = NULL;
        if (has_object(file, "/energy", H5I_GROUP)) {
            hid_t e = H5Gopen2(file, "/energy", H5P_DEFAULT);
            preset = attr_string(e, "preset");
            H5Gclose(e);
        }
        if (preset) fprintf(out, " (energy preset %s)", preset);
        fputc('\n', out);
        free(preset);
    }
    if (sum >= 0 && attr_number(sum, "wall_seconds", &v)) {
        label(out, "wall time");
        fprintf(out, "%.3g s\n", v);
    }

    /* Training history (run files of trained runs, .best.h5 and .last.h5 checkpoints). */
    size_t n_ep = 0;
    double *val = read_doubles(file, "/training/history/val_accuracy", &n_ep, NULL, NULL);
    if (val && n_ep) {
        size_t best = 0;
        for (size_t i = 1; i < n_ep; i++)
            if (val[i] > val[best]) best = i;
        label(out, "training");
        fprintf(out, "%zu epoch%s, validation accuracy", n_ep, n_ep == 1 ? "" : "s");
        for (size_t i = 0; i < n_ep; i++) {
            if (n_ep > 8 && i == 3) {
                fputs(" ...", out);
                i = n_ep - 3;
            }
            fprintf(out, " %.2f", 100.0 * val[i]);
        }
        fprintf(out, " %% (best %.2f %% at epoch %zu)\n", 100.0 * val[best], best + 1);
    }
    free(val);

    if (root >= 0) other_attributes(out, root, "", root_shown);
    if (sum >= 0) {
        other_attributes(out, sum, "", summary_shown);
        H5Gclose(sum);
    }
    print_population_table(out, file);

    free(yaml);
    free(attention);
    free(format);
    free(fver);
    free(gen);
    free(created);
    free(host);
    free(type);
    if (root >= 0) H5Gclose(root);
}

/* ---- the tree ------------------------------------------------------------------------------- */

/* An object's identity within its file, to notice a hard link back to an ancestor. */
typedef struct obj_key {
    unsigned long fileno;
    unsigned char key[16];
} obj_key;

static bool obj_key_of(hid_t obj, obj_key *k) {
    memset(k, 0, sizeof *k);
#if H5_VERSION_GE(1, 12, 0)
    H5O_info2_t i;
    if (H5Oget_info3(obj, &i, H5O_INFO_BASIC) < 0) return false;
    k->fileno = i.fileno;
    memcpy(k->key, &i.token, sizeof i.token < sizeof k->key ? sizeof i.token : sizeof k->key);
#else
    H5O_info_t i;
    if (H5Oget_info2(obj, &i, H5O_INFO_BASIC) < 0) return false;
    k->fileno = i.fileno;
    memcpy(k->key, &i.addr, sizeof i.addr);
#endif
    return true;
}

/* One printed line: indented name, type and shape, units (collected first, to align columns). */
typedef struct tree_line {
    char *name, *what, *units;
} tree_line;

typedef struct tree {
    tree_line *lines;
    int n, cap;
    obj_key anc[TREE_MAX_DEPTH + 1];
    strlist anc_path;
} tree;

static void tree_add(tree *t, int depth, const char *name, char *what, char *units) {
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 64;
        t->lines = snn_xrealloc(t->lines, (size_t)t->cap * sizeof *t->lines);
    }
    t->lines[t->n++] = (tree_line){snn_xasprintf("%*s%s", 2 * depth, "", name), what, units};
}

/* A group's layout, to find siblings that look alike: every dataset and group below it as
 * "relative/path:kind:dtype:rank", and shapes and units separately (those may differ: a wider
 * population, a bipolar one). */
typedef struct layout {
    strlist sig;     /* one entry per object */
    strlist shapes;  /* "relative/path [dims]" per dataset, same order as sig's datasets */
} layout;

static void layout_of(hid_t grp, const char *rel, int depth, layout *l) {
    if (depth > 8) return;
    strlist names = {0};
    list_links(grp, &names);
    for (int i = 0; i < names.n; i++) {
        char *r = rel[0] ? snn_xasprintf("%s/%s", rel, names.s[i]) : snn_xstrdup(names.s[i]);
        H5L_info_t li;
        hid_t obj = H5I_INVALID_HID;
        if (H5Lget_info(grp, names.s[i], &li, H5P_DEFAULT) >= 0 && li.type == H5L_TYPE_HARD) {
            H5E_BEGIN_TRY { obj = H5Oopen(grp, names.s[i], H5P_DEFAULT); } H5E_END_TRY;
        }
        if (obj < 0) {
            strlist_push(&l->sig, snn_xasprintf("%s:link", r));
        } else if (H5Iget_type(obj) == H5I_GROUP) {
            strlist_push(&l->sig, snn_xasprintf("%s:group", r));
            layout_of(obj, r, depth + 1, l);
        } else if (H5Iget_type(obj) == H5I_DATASET) {
            hid_t t = H5Dget_type(obj), s = H5Dget_space(obj);
            char tn[64], sh[256];
            dtype_name(t, tn, sizeof tn);
            shape_text(s, sh, sizeof sh);
            char *units = attr_string(obj, "units");
            strlist_push(&l->sig, snn_xasprintf("%s:dataset:%s:%d", r, tn, H5Sget_simple_extent_ndims(s)));
            strlist_push(&l->shapes, units ? snn_xasprintf("%s %s %s", r, sh, units) : snn_xasprintf("%s %s", r, sh));
            free(units);
            H5Sclose(s);
            H5Tclose(t);
        } else {
            strlist_push(&l->sig, snn_xasprintf("%s:other", r));
        }
        if (obj >= 0) H5Oclose(obj);
        free(r);
    }
    strlist_free(&names);
}

static bool layout_same(const layout *a, const layout *b) {
    if (a->sig.n != b->sig.n || a->shapes.n == 0) return false;
    for (int i = 0; i < a->sig.n; i++)
        if (strcmp(a->sig.s[i], b->sig.s[i])) return false;
    return true;
}

static void layout_free(layout *l) {
    strlist_free(&l->sig);
    strlist_free(&l->shapes);
}

static void tree_group(tree *t, hid_t grp, const char *path, int depth);

/* Attributes on obj, counted by index (see other_attributes). */
static int count_attributes(hid_t obj) {
    int n = 0;
    for (;; n++) {
        hid_t a;
        H5E_BEGIN_TRY {
            a = H5Aopen_by_idx(obj, ".", H5_INDEX_NAME, H5_ITER_INC, (hsize_t)n, H5P_DEFAULT, H5P_DEFAULT);
        } H5E_END_TRY;
        if (a < 0) break;
        H5Aclose(a);
    }
    return n;
}

static void tree_dataset(tree *t, hid_t d, const char *name, int depth) {
    hid_t ty = H5Dget_type(d), s = H5Dget_space(d);
    char tn[64], sh[256];
    dtype_name(ty, tn, sizeof tn);
    shape_text(s, sh, sizeof sh);
    char *units = attr_string(d, "units");
    tree_add(t, depth, name, snn_xasprintf("%s %s", tn, sh), units ? units : snn_xstrdup(""));
    H5Sclose(s);
    H5Tclose(ty);
}

/* Lists the members of grp at the given depth (grp itself is already printed). */
static void tree_group(tree *t, hid_t grp, const char *path, int depth) {
    if (depth > TREE_MAX_DEPTH) {
        tree_add(t, depth, "...", snn_xstrdup("(deeper levels not shown)"), snn_xstrdup(""));
        return;
    }
    strlist names = {0};
    list_links(grp, &names);
    /* Layouts of the member groups, computed once: sibling i is compacted when an earlier
     * sibling that was printed in full has the same layout. */
    layout *lay = snn_xcalloc((size_t)names.n + 1, sizeof *lay);
    int *exemplar = snn_xcalloc((size_t)names.n + 1, sizeof *exemplar);
    for (int i = 0; i < names.n; i++) exemplar[i] = -1;

    for (int i = 0; i < names.n; i++) {
        const char *nm = names.s[i];
        char *child = strcmp(path, "/") ? snn_xasprintf("%s/%s", path, nm) : snn_xasprintf("/%s", nm);
        H5L_info_t li;
        if (H5Lget_info(grp, nm, &li, H5P_DEFAULT) < 0) {
            tree_add(t, depth, nm, snn_xstrdup("(unreadable link)"), snn_xstrdup(""));
            free(child);
            continue;
        }
        if (li.type == H5L_TYPE_SOFT || li.type == H5L_TYPE_EXTERNAL) {
            size_t sz = li.u.val_size + 1;
            char *val = snn_xcalloc(sz, 1);
            char *what;
            if (H5Lget_val(grp, nm, val, sz, H5P_DEFAULT) < 0) {
                what = snn_xstrdup("link (unreadable)");
            } else if (li.type == H5L_TYPE_SOFT) {
                what = snn_xasprintf("-> %s (soft link, not followed)", val);
            } else {
                const char *f = NULL, *o = NULL;
                unsigned flags = 0;
                if (H5Lunpack_elink_val(val, sz, &flags, &f, &o) >= 0)
                    what = snn_xasprintf("-> %s:%s (external link, not followed)", f, o);
                else what = snn_xstrdup("external link (unreadable)");
            }
            tree_add(t, depth, nm, what, snn_xstrdup(""));
            free(val);
            free(child);
            continue;
        }
        hid_t obj;
        H5E_BEGIN_TRY { obj = H5Oopen(grp, nm, H5P_DEFAULT); } H5E_END_TRY;
        if (obj < 0) {
            tree_add(t, depth, nm, snn_xstrdup("(cannot open)"), snn_xstrdup(""));
            free(child);
            continue;
        }
        H5I_type_t ty = H5Iget_type(obj);
        if (ty == H5I_DATASET) {
            tree_dataset(t, obj, nm, depth);
        } else if (ty == H5I_GROUP) {
            obj_key k;
            int anc = -1;
            if (obj_key_of(obj, &k))
                for (int a = 0; a <= depth && a < t->anc_path.n; a++)
                    if (!memcmp(&k, &t->anc[a], sizeof k)) anc = a;
            char *gname = snn_xasprintf("%s/", nm);
            if (anc >= 0) {
                tree_add(t, depth, gname,
                         snn_xasprintf("hard link to %s (an ancestor, not followed)", t->anc_path.s[anc]),
                         snn_xstrdup(""));
            } else {
                layout_of(obj, "", 0, &lay[i]);
                for (int j = 0; j < i && exemplar[i] < 0; j++)
                    if (exemplar[j] == j && layout_same(&lay[j], &lay[i])) exemplar[i] = j;
                if (exemplar[i] >= 0) {
                    /* Same layout as an earlier sibling: one line, with the first shape that
                     * differs (e.g. a wider population). */
                    const layout *e = &lay[exemplar[i]];
                    const char *diff = NULL;
                    for (int s = 0; s < e->shapes.n && !diff; s++)
                        if (strcmp(e->shapes.s[s], lay[i].shapes.s[s])) diff = lay[i].shapes.s[s];
                    tree_add(t, depth, gname,
                             diff ? snn_xasprintf("same layout as %s, but %s", names.s[exemplar[i]], diff)
                                  : snn_xasprintf("same layout as %s", names.s[exemplar[i]]),
                             snn_xstrdup(""));
                } else {
                    exemplar[i] = i;
                    H5G_info_t gi;
                    int n_attr = 0;
                    if (H5Gget_info(obj, &gi) >= 0 && gi.nlinks == 0) n_attr = count_attributes(obj);
                    tree_add(t, depth, gname,
                             n_attr ? snn_xasprintf("no members, %d attributes", n_attr) : snn_xstrdup(""),
                             snn_xstrdup(""));
                    t->anc[depth] = k; /* depth <= TREE_MAX_DEPTH here */
                    strlist_push(&t->anc_path, snn_xstrdup(child));
                    tree_group(t, obj, child, depth + 1);
                    free(t->anc_path.s[--t->anc_path.n]);
                }
            }
            free(gname);
        } else {
            tree_add(t, depth, nm, snn_xstrdup("named datatype"), snn_xstrdup(""));
        }
        H5Oclose(obj);
        free(child);
    }
    for (int i = 0; i < names.n; i++) layout_free(&lay[i]);
    free(lay);
    free(exemplar);
    strlist_free(&names);
}

static void print_tree(FILE *out, hid_t file) {
    tree t = {0};
    hid_t root = H5Gopen2(file, "/", H5P_DEFAULT);
    if (root < 0) return;
    obj_key_of(root, &t.anc[0]);
    strlist_push(&t.anc_path, snn_xstrdup("/"));
    tree_add(&t, 0, "/", snn_xstrdup(""), snn_xstrdup(""));
    tree_group(&t, root, "/", 1);
    H5Gclose(root);
    /* Columns: name, then type and shape, then units; capped so one long name does not push
     * every line to the right. */
    size_t wn = 0, ww = 0;
    for (int i = 0; i < t.n; i++) {
        size_t a = strlen(t.lines[i].name), b = strlen(t.lines[i].what);
        if (a > wn) wn = a;
        if (t.lines[i].units[0] && b > ww) ww = b;
    }
    if (wn > 56) wn = 56;
    if (ww > 32) ww = 32;
    fprintf(out, "\ntree (dtype [shape], units):\n");
    for (int i = 0; i < t.n; i++) {
        tree_line *l = &t.lines[i];
        if (l->units[0])
            fprintf(out, "%-*s  %-*s  %s\n", (int)wn, l->name, (int)ww, l->what, l->units);
        else if (l->what[0])
            fprintf(out, "%-*s  %s\n", (int)wn, l->name, l->what);
        else
            fprintf(out, "%s\n", l->name);
        free(l->name);
        free(l->what);
        free(l->units);
    }
    free(t.lines);
    strlist_free(&t.anc_path);
}

int snn_inspect_print(const char *path, FILE *out, snn_err *err) {
    hid_t file = snn_h5_open_readonly(path, err);
    if (file < 0) return SNN_ERR;
    print_summary(out, file, path);
    print_tree(out, file);
    H5Fclose(file);
    return SNN_OK;
}

/* ---- SVG output ----------------------------------------------------------------------------- */

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* Finishes an open_memstream SVG and writes it atomically. */
static int finish_svg(FILE *f, char **buf, size_t *len, const char *svg_path, snn_err *err) {
    fputs("</svg>\n", f);
    if (fclose(f) != 0) return snn_err_set(err, "%s: out of memory building the SVG", svg_path);
    int rc = snn_write_file_atomic(svg_path, *buf, *len, err);
    free(*buf);
    *buf = NULL;
    return rc;
}

/* Starts a w x h SVG with its <title> in a memory stream (*buf, *len) for finish_svg; NULL with
 * err set when the stream cannot be opened. */
static FILE *svg_begin(char **buf, size_t *len, double w, double h, const char *title,
                       const char *svg_path, snn_err *err) {
    FILE *f = open_memstream(buf, len);
    if (!f) {
        snn_err_set(err, "%s: cannot build the SVG: %s", svg_path, strerror(errno));
        return NULL;
    }
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
               "viewBox=\"0 0 %.0f %.0f\" font-family=\"DejaVu Sans, Arial, sans-serif\" "
               "font-size=\"12\">\n<title>",
            w, h, w, h);
    snn_xml_text(f, title);
    fprintf(f, "</title>\n<rect x=\"0\" y=\"0\" width=\"%.0f\" height=\"%.0f\" fill=\"#ffffff\"/>\n", w, h);
    return f;
}

/* A round tick step giving at most about `target` ticks over [0, span]. */
static double nice_step(double span, int target) {
    if (span <= 0) return 1;
    double raw = span / target, mag = pow(10.0, floor(log10(raw)));
    const double m[] = {1, 2, 5, 10};
    for (int i = 0; i < 4; i++)
        if (m[i] * mag >= raw) return m[i] * mag;
    return 10 * mag;
}

/* The file's spiking populations as one line ("a, b, c"), for messages. */
static char *population_list(const strlist *pops) {
    size_t n = 1;
    for (int i = 0; i < pops->n; i++) n += strlen(pops->s[i]) + 2;
    char *s = snn_xcalloc(n, 1);
    for (int i = 0; i < pops->n; i++) {
        if (i) strcat(s, ", ");
        strcat(s, pops->s[i]);
    }
    return s;
}

static int no_populations(hid_t file, const char *path, snn_err *err) {
    hid_t root = H5Gopen2(file, "/", H5P_DEFAULT);
    char *att = root >= 0 ? attr_string(root, "attention") : NULL;
    if (root >= 0) H5Gclose(root);
    if (att) snn_err_set(err, "%s: the run has no spiking populations (attention %s; no /nodes/<population> groups)", path, att);
    else snn_err_set(err, "%s: the run has no spiking populations (no /nodes/<population> groups)", path);
    free(att);
    return SNN_ERR;
}

/* ---- raster --------------------------------------------------------------------------------- */

/* Okabe-Ito blue and vermillion: distinguishable with the common colour-vision deficiencies. */
#define COLOR_POS "#0072B2"
#define COLOR_NEG "#D55E00"

int snn_inspect_raster(const char *path, const char *population, long long sample,
                       const char *svg_path, bool *usage_error, snn_err *err) {
    *usage_error = false;
    hid_t file = snn_h5_open_readonly(path, err);
    if (file < 0) return SNN_ERR;
    int rc = SNN_ERR;
    strlist pops = {0};
    int8_t *spk = NULL;
    hid_t d = H5I_INVALID_HID, space = H5I_INVALID_HID, mem = H5I_INVALID_HID;
    char *dpath = NULL, *model = NULL, *units = NULL;

    collect_populations(file, "observables/spikes/data", &pops);
    if (pops.n == 0) {
        no_populations(file, path, err);
        goto done;
    }
    if (strlist_find(&pops, population) < 0) {
        char *list = population_list(&pops);
        snn_err_set(err, "%s: no population '%s'; populations: %s", path, population, list);
        free(list);
        *usage_error = true;
        goto done;
    }
    dpath = snn_xasprintf("/nodes/%s/observables/spikes/data", population);
    d = H5Dopen2(file, dpath, H5P_DEFAULT);
    if (d < 0) {
        snn_err_set(err, "%s: cannot read %s", path, dpath);
        goto done;
    }
    space = H5Dget_space(d);
    hsize_t dims[3];
    hid_t ftype = H5Dget_type(d);
    const bool numeric = snn_h5_is_standard_numeric(ftype);
    H5Tclose(ftype);
    if (!numeric || H5Sget_simple_extent_ndims(space) != 3) {
        snn_err_set(err, "%s: %s is not [samples, timesteps, neurons] integers", path, dpath);
        goto done;
    }
    H5Sget_simple_extent_dims(space, dims, NULL);
    const long long S = (long long)dims[0];
    if (sample < 0 || sample >= S) {
        if (S == 0)
            snn_err_set(err, "%s: sample %lld out of range: %s recorded no samples (record.samples is 0)",
                        path, sample, population);
        else
            snn_err_set(err, "%s: sample %lld out of range: %s recorded samples 0..%lld", path, sample,
                        population, S - 1);
        *usage_error = true;
        goto done;
    }
    const size_t T = (size_t)dims[1], N = (size_t)dims[2];
    if (T == 0 || N == 0 || T > SIZE_MAX / N) {
        snn_err_set(err, "%s: %s has no neurons or no timesteps", path, dpath);
        goto done;
    }
    /* One sample's [T, neurons] slab, not the whole grid. */
    spk = snn_xmalloc(T * N);
    hsize_t start[3] = {(hsize_t)sample, 0, 0}, count[3] = {1, T, N}, mdims[1] = {T * N};
    mem = H5Screate_simple(1, mdims, NULL);
    if (H5Sselect_hyperslab(space, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
        H5Dread(d, H5T_NATIVE_INT8, mem, space, H5P_DEFAULT, spk) < 0) {
        snn_err_set(err, "%s: cannot read %s", path, dpath);
        goto done;
    }
    units = attr_string(d, "units");

    size_t npos = 0, nneg = 0;
    for (size_t i = 0; i < T * N; i++) {
        npos += spk[i] > 0;
        nneg += spk[i] < 0;
    }
    double tokens = NAN, width = NAN;
    {
        char *g = snn_xasprintf("/nodes/%s", population);
        hid_t gid = H5Gopen2(file, g, H5P_DEFAULT);
        if (gid >= 0) {
            model = attr_string(gid, "neuron_model");
            attr_number(gid, "tokens", &tokens);
            attr_number(gid, "width", &width);
            H5Gclose(gid);
        }
        free(g);
    }
    const bool bipolar = (model && !strcmp(model, "BipolarLIF")) || nneg > 0;
    const double rate = (double)(npos + nneg) / ((double)T * (double)N);

    /* Which sample this is: dataset index, label and prediction when /outputs has them. */
    char about[160] = "";
    {
        size_t n1 = 0, n2 = 0, n3 = 0;
        double *idx = read_doubles(file, "/outputs/sample_index", &n1, NULL, NULL);
        double *lab = read_doubles(file, "/outputs/labels", &n2, NULL, NULL);
        double *pred = read_doubles(file, "/outputs/predictions", &n3, NULL, NULL);
        size_t k = 0;
        if (idx && (size_t)sample < n1)
            k += (size_t)snprintf(about + k, sizeof about - k, ", dataset index %.0f", idx[sample]);
        if (lab && (size_t)sample < n2 && k < sizeof about)
            k += (size_t)snprintf(about + k, sizeof about - k, ", label %.0f", lab[sample]);
        if (pred && (size_t)sample < n3 && k < sizeof about)
            snprintf(about + k, sizeof about - k, ", predicted %.0f", pred[sample]);
        free(idx);
        free(lab);
        free(pred);
    }

    /* Layout: one column per timestep (time on x, as SpikingJelly and snnTorch draw rasters),
     * one row per neuron (index on y, 0 at the top). Columns are wide so that T = 4 reads as
     * four clear bands; rows shrink to fit up to 800 units of height. */
    const double col_w = T <= 4 ? 160.0 : fmax(6.0, 640.0 / (double)T);
    const double plot_w = col_w * (double)T;
    const double plot_h = fmin(800.0, fmax(160.0, 8.0 * (double)N));
    const double row_h = plot_h / (double)N;
    const double gap = col_w * 0.06;
    const double L = 78, TOP = 62, R = 190, B = 52;
    const double W = L + plot_w + R, H = TOP + plot_h + B;

    char title[512];
    snprintf(title, sizeof title, "%s, sample %lld: firing rate %.4f", population, sample, rate);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = svg_begin(&buf, &len, W, H, title, svg_path, err);
    if (!f) goto done;
    fprintf(f, "<text x=\"%.1f\" y=\"22\" font-size=\"15\" font-weight=\"bold\">", L);
    snn_xml_text(f, title);
    fputs("</text>\n", f);
    fprintf(f, "<text x=\"%.1f\" y=\"42\" fill=\"#444444\">", L);
    char sub[768];
    snprintf(sub, sizeof sub, "%s, %zu neurons, T=%zu; sample %lld of %lld recorded%s; %s",
             model ? model : "population", N, T, sample, S, about, base_name(path));
    snn_xml_text(f, sub);
    fputs("</text>\n", f);

    /* Timestep bands and token separators, behind the marks. */
    fputs("<g class=\"frame\">\n", f);
    for (size_t t = 0; t < T; t++)
        fprintf(f, "<rect class=\"col-bg\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"%s\"/>\n",
                L + col_w * (double)t, TOP, col_w, plot_h, t % 2 ? "#f4f4f4" : "#fafafa");
    if (isfinite(tokens) && isfinite(width) && tokens >= 2 && tokens <= 64 && width >= 1)
        for (int k = 1; k < (int)tokens; k++)
            fprintf(f, "<line x1=\"%.2f\" x2=\"%.2f\" y1=\"%.2f\" y2=\"%.2f\" stroke=\"#dddddd\" stroke-width=\"0.5\"/>\n",
                    L, L + plot_w, TOP + row_h * width * k, TOP + row_h * width * k);
    fputs("</g>\n", f);

    /* The marks: exactly one rect per nonzero spike. */
    for (int pass = 0; pass < 2; pass++) {
        const int want = pass == 0 ? 1 : -1;
        if ((want > 0 ? npos : nneg) == 0) continue;
        fprintf(f, "<g fill=\"%s\" shape-rendering=\"crispEdges\">\n", want > 0 ? COLOR_POS : COLOR_NEG);
        for (size_t t = 0; t < T; t++)
            for (size_t i = 0; i < N; i++) {
                const int8_t v = spk[t * N + i];
                if ((want > 0 && v > 0) || (want < 0 && v < 0))
                    fprintf(f, "<rect class=\"%s\" x=\"%.2f\" y=\"%.3f\" width=\"%.2f\" height=\"%.3f\"/>\n",
                            want > 0 ? "spike-pos" : "spike-neg", L + col_w * (double)t + gap,
                            TOP + row_h * (double)i, col_w - 2 * gap, row_h);
            }
        fputs("</g>\n", f);
    }

    /* Axes. */
    fprintf(f, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"none\" stroke=\"#333333\"/>\n",
            L, TOP, plot_w, plot_h);
    const size_t tstep = T <= 16 ? 1 : (size_t)nice_step((double)T, 12);
    for (size_t t = 0; t < T; t += tstep)
        fprintf(f, "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\">%zu</text>\n",
                L + col_w * ((double)t + 0.5), TOP + plot_h + 16, t);
    fprintf(f, "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\">timestep</text>\n", L + plot_w / 2,
            TOP + plot_h + 38);
    const double ystep = nice_step((double)N, 8);
    for (double y = 0; y < (double)N; y += ystep) {
        const double yy = TOP + row_h * (y + 0.5);
        fprintf(f, "<line x1=\"%.2f\" x2=\"%.2f\" y1=\"%.2f\" y2=\"%.2f\" stroke=\"#333333\"/>\n", L - 4, L, yy, yy);
        fprintf(f, "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"end\">%.0f</text>\n", L - 7, yy + 4, y);
    }
    char ylab[128];
    if (isfinite(width) && width >= 1)
        snprintf(ylab, sizeof ylab, "neuron (token * %.0f + channel)", width);
    else
        snprintf(ylab, sizeof ylab, "neuron");
    fprintf(f, "<text transform=\"translate(%.2f %.2f) rotate(-90)\" text-anchor=\"middle\">%s</text>\n",
            22.0, TOP + plot_h / 2, ylab);

    /* Legend, right of the plot. */
    const double lx = L + plot_w + 18, ly = TOP + 6;
    fprintf(f, "<rect class=\"legend-pos\" x=\"%.2f\" y=\"%.2f\" width=\"14\" height=\"10\" fill=\"%s\"/>\n",
            lx, ly, COLOR_POS);
    fprintf(f, "<text x=\"%.2f\" y=\"%.2f\">%s (%zu)</text>\n", lx + 20, ly + 9,
            bipolar ? "+1 spike" : "spike", npos);
    if (bipolar) {
        fprintf(f, "<rect class=\"legend-neg\" x=\"%.2f\" y=\"%.2f\" width=\"14\" height=\"10\" fill=\"%s\"/>\n",
                lx, ly + 20, COLOR_NEG);
        fprintf(f, "<text x=\"%.2f\" y=\"%.2f\">-1 spike (%zu)</text>\n", lx + 20, ly + 29, nneg);
    }
    fprintf(f, "<text x=\"%.2f\" y=\"%.2f\" fill=\"#444444\">rate %.4f</text>\n", lx, ly + (bipolar ? 52 : 32), rate);
    fprintf(f, "<text x=\"%.2f\" y=\"%.2f\" fill=\"#444444\">spikes / neuron / step</text>\n", lx,
            ly + (bipolar ? 68 : 48));
    if (units) {
        fprintf(f, "<text x=\"%.2f\" y=\"%.2f\" fill=\"#444444\">values: ", lx, ly + (bipolar ? 84 : 64));
        snn_xml_text(f, units);
        fputs("</text>\n", f);
    }
    rc = finish_svg(f, &buf, &len, svg_path, err);
    free(buf);

done:
    H5E_BEGIN_TRY {
        H5Sclose(mem);
        H5Sclose(space);
        H5Dclose(d);
    } H5E_END_TRY;
    H5Fclose(file);
    free(spk);
    free(dpath);
    free(model);
    free(units);
    strlist_free(&pops);
    return rc;
}

/* ---- rates heatmap -------------------------------------------------------------------------- */

/* viridis at 0, 1/9, ..., 1 (matplotlib): perceptually uniform, readable in greyscale. */
static const unsigned char viridis[10][3] = {
    {0x44, 0x01, 0x54}, {0x48, 0x28, 0x78}, {0x3e, 0x49, 0x89}, {0x31, 0x68, 0x8e},
    {0x26, 0x82, 0x8e}, {0x1f, 0x9e, 0x89}, {0x35, 0xb7, 0x79}, {0x6e, 0xce, 0x58},
    {0xb5, 0xde, 0x2b}, {0xfd, 0xe7, 0x25}};

static void colormap(double x, unsigned char rgb[3]) {
    if (!(x > 0)) x = 0;
    if (x > 1) x = 1;
    double p = x * 9.0;
    int i = (int)p;
    if (i >= 9) i = 8;
    double a = p - i;
    for (int c = 0; c < 3; c++)
        rgb[c] = (unsigned char)lround((1 - a) * viridis[i][c] + a * viridis[i + 1][c]);
}

int snn_inspect_rates(const char *path, const char *svg_path, snn_err *err) {
    hid_t file = snn_h5_open_readonly(path, err);
    if (file < 0) return SNN_ERR;
    strlist pops = {0};
    collect_populations(file, "stats/firing_rate_per_step", &pops);
    if (pops.n == 0) {
        no_populations(file, path, err);
        H5Fclose(file);
        return SNN_ERR;
    }
    double **rate = snn_xcalloc((size_t)pops.n, sizeof *rate);
    size_t *nt = snn_xcalloc((size_t)pops.n, sizeof *nt);
    size_t T = 0, maxlen = 0;
    double vmax = 0;
    int rc = SNN_ERR;
    char *att = NULL;
    for (int p = 0; p < pops.n; p++) {
        char *dp = snn_xasprintf("/nodes/%s/stats/firing_rate_per_step", pops.s[p]);
        rate[p] = read_doubles(file, dp, &nt[p], NULL, NULL);
        if (!rate[p]) {
            snn_err_set(err, "%s: cannot read %s", path, dp);
            free(dp);
            goto done;
        }
        free(dp);
        if (nt[p] > T) T = nt[p];
        for (size_t t = 0; t < nt[p]; t++)
            if (rate[p][t] > vmax) vmax = rate[p][t];
        if (strlen(pops.s[p]) > maxlen) maxlen = strlen(pops.s[p]);
    }
    /* The colour scale runs from 0 to the largest rate, not to 1: firing rates are mostly
     * well below 0.5 and a 0..1 scale would leave every cell the same dark colour. */
    const double vtop = vmax > 0 ? vmax : 1.0;
    double nsamp = NAN;
    {
        hid_t root = H5Gopen2(file, "/", H5P_DEFAULT);
        att = attr_string(root, "attention");
        attr_number(root, "n_samples", &nsamp);
        H5Gclose(root);
    }

    const double cell_w = T <= 16 ? 58.0 : fmax(8.0, 928.0 / (double)T), cell_h = 22;
    const bool values = cell_w >= 40;
    const double L = 20 + 7.3 * (double)maxlen, TOP = 70;
    const double plot_w = cell_w * (double)T, plot_h = cell_h * pops.n;
    const double mean_x = L + plot_w + 12, bar_x = mean_x + 70, bar_h = fmax(plot_h, 120.0);
    const double W = bar_x + 110, H = TOP + fmax(plot_h, bar_h) + 50;

    char title[512], sub[512];
    snprintf(title, sizeof title, "Firing rate per timestep: %s", base_name(path));
    char *buf = NULL;
    size_t len = 0;
    FILE *f = svg_begin(&buf, &len, W, H, title, svg_path, err);
    if (!f) goto done;
    fprintf(f, "<text x=\"12\" y=\"22\" font-size=\"15\" font-weight=\"bold\">");
    snn_xml_text(f, title);
    fputs("</text>\n", f);
    int k = snprintf(sub, sizeof sub, "%d populations in forward order", pops.n);
    if (att) k += snprintf(sub + k, sizeof sub - (size_t)k, ", attention %s", att);
    if (isfinite(nsamp)) snprintf(sub + k, sizeof sub - (size_t)k, ", %.0f samples", nsamp);
    fprintf(f, "<text x=\"12\" y=\"42\" fill=\"#444444\">");
    snn_xml_text(f, sub);
    fputs("; spikes / neuron / timestep</text>\n", f);

    /* Column headers. */
    for (size_t t = 0; t < T; t += T <= 32 ? 1 : (size_t)nice_step((double)T, 16))
        fprintf(f, "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\">%zu</text>\n",
                L + cell_w * ((double)t + 0.5), TOP - 8, t);
    fprintf(f, "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\" font-weight=\"bold\">mean</text>\n",
            mean_x + 28, TOP - 8);
    fprintf(f, "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\">timestep</text>\n", L + plot_w / 2,
            TOP + plot_h + 22);

    for (int p = 0; p < pops.n; p++) {
        const double y = TOP + cell_h * p;
        fprintf(f, "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"end\" font-family=\"DejaVu Sans Mono, monospace\">",
                L - 8, y + cell_h / 2 + 4);
        snn_xml_text(f, pops.s[p]);
        fputs("</text>\n", f);
        double mean = 0;
        for (size_t t = 0; t < nt[p]; t++) {
            const double v = rate[p][t];
            mean += v;
            unsigned char c[3];
            colormap(v / vtop, c);
            const double x = L + cell_w * (double)t;
            fprintf(f, "<rect class=\"cell\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" "
                       "fill=\"#%02x%02x%02x\" stroke=\"#ffffff\" stroke-width=\"1\"><title>",
                    x, y, cell_w, cell_h, c[0], c[1], c[2]);
            snn_xml_text(f, pops.s[p]);
            fprintf(f, ", timestep %zu: %.4f</title></rect>\n", t, v);
            if (values) {
                /* Light text on the dark end of the map, dark text on the light end. */
                const double lum = (0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]) / 255.0;
                fprintf(f, "<text class=\"value\" x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\" font-size=\"11\" fill=\"%s\">%.3f</text>\n",
                        x + cell_w / 2, y + cell_h / 2 + 4, lum < 0.45 ? "#ffffff" : "#000000", v);
            }
        }
        if (nt[p]) mean /= (double)nt[p];
        fprintf(f, "<text class=\"mean\" x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\" font-size=\"11\">%.3f</text>\n",
                mean_x + 28, y + cell_h / 2 + 4, mean);
    }

    /* Colour bar: 0 at the bottom, the largest rate at the top. */
    fputs("<defs><linearGradient id=\"viridis\" x1=\"0\" y1=\"1\" x2=\"0\" y2=\"0\">\n", f);
    for (int i = 0; i < 10; i++)
        fprintf(f, "<stop offset=\"%.4f\" stop-color=\"#%02x%02x%02x\"/>\n", i / 9.0, viridis[i][0],
                viridis[i][1], viridis[i][2]);
    fputs("</linearGradient></defs>\n", f);
    fprintf(f, "<rect x=\"%.2f\" y=\"%.2f\" width=\"16\" height=\"%.2f\" fill=\"url(#viridis)\" stroke=\"#333333\"/>\n",
            bar_x, TOP, bar_h);
    for (int i = 0; i <= 4; i++) {
        const double v = vtop * i / 4.0, y = TOP + bar_h * (1 - i / 4.0);
        fprintf(f, "<line x1=\"%.2f\" x2=\"%.2f\" y1=\"%.2f\" y2=\"%.2f\" stroke=\"#333333\"/>\n", bar_x + 16,
                bar_x + 20, y, y);
        fprintf(f, "<text x=\"%.2f\" y=\"%.2f\">%.3f</text>\n", bar_x + 23, y + 4, v);
    }
    fprintf(f, "<text transform=\"translate(%.2f %.2f) rotate(-90)\" text-anchor=\"middle\" fill=\"#444444\">firing rate</text>\n",
            bar_x + 80, TOP + bar_h / 2);
    rc = finish_svg(f, &buf, &len, svg_path, err);
    free(buf);

done:
    for (int p = 0; p < pops.n; p++) free(rate[p]);
    free(rate);
    free(nt);
    free(att);
    strlist_free(&pops);
    H5Fclose(file);
    return rc;
}

/* ---- command line --------------------------------------------------------------------------- */

int snn_inspect_cli(int argc, char **argv, const char *usage) {
    const char *cmd = argv[1];
    const char *file = NULL, *out = NULL, *pop = NULL, *sample_s = NULL;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--population") && i + 1 < argc) {
            pop = argv[++i];
        } else if (!strncmp(a, "--population=", 13)) {
            pop = a + 13;
        } else if (!strcmp(a, "--sample") && i + 1 < argc) {
            sample_s = argv[++i];
        } else if (!strncmp(a, "--sample=", 9)) {
            sample_s = a + 9;
        } else {
            int rc = snn_cli_single_file_arg(argc, argv, &i, cmd, "RUN.h5", usage, &out, &file);
            if (rc >= 0) return rc;
        }
    }
    const bool is_inspect = !strcmp(cmd, "inspect"), is_raster = !strcmp(cmd, "raster");
    if (!file) {
        fprintf(stderr, "spikesim: error: %s needs a RUN.h5 file\n%s", cmd, usage);
        return SNN_EXIT_USAGE;
    }
    const char *stray = is_inspect ? (out ? "-o" : pop ? "--population" : sample_s ? "--sample" : NULL)
                        : is_raster ? NULL
                                    : (pop ? "--population" : sample_s ? "--sample" : NULL);
    if (stray) {
        fprintf(stderr, "spikesim: error: %s does not take %s\n", cmd, stray);
        return SNN_EXIT_USAGE;
    }
    snn_err err = {{0}};
    if (is_inspect) {
        if (snn_inspect_print(file, stdout, &err) != SNN_OK) {
            fprintf(stderr, "spikesim: error: %s\n", err.msg);
            return SNN_EXIT_RUNTIME;
        }
        return SNN_EXIT_OK;
    }
    if (is_raster && !pop) {
        fprintf(stderr, "spikesim: error: raster needs --population P (spikesim inspect %s lists them)\n%s",
                file, usage);
        return SNN_EXIT_USAGE;
    }
    if (!out) {
        fprintf(stderr, "spikesim: error: %s needs -o FILE.svg\n%s", cmd, usage);
        return SNN_EXIT_USAGE;
    }
    /* Writing the SVG over the run file would lose the run. */
    struct stat si, so;
    if (stat(file, &si) == 0 && stat(out, &so) == 0 && si.st_dev == so.st_dev && si.st_ino == so.st_ino) {
        fprintf(stderr, "spikesim: error: -o %s is the input file\n", out);
        return SNN_EXIT_USAGE;
    }
    long long sample = 0;
    if (sample_s) {
        char *end;
        errno = 0;
        sample = strtoll(sample_s, &end, 10);
        if (!*sample_s || *end || errno || sample < 0) {
            fprintf(stderr, "spikesim: error: --sample expects a non-negative integer, got '%s'\n", sample_s);
            return SNN_EXIT_USAGE;
        }
    }
    bool usage_error = false;
    int rc = is_raster ? snn_inspect_raster(file, pop, sample, out, &usage_error, &err)
                       : snn_inspect_rates(file, out, &err);
    if (rc != SNN_OK) {
        fprintf(stderr, "spikesim: error: %s\n", err.msg);
        return usage_error ? SNN_EXIT_USAGE : SNN_EXIT_RUNTIME;
    }
    return SNN_EXIT_OK;
}
