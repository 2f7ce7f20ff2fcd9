/*
 * idx.c: the IDX reader (MNIST, Fashion-MNIST, KMNIST...) and the train/test split loader.
 *
 * Files are read through zlib's gz* interface, which passes raw files through unchanged, so a
 * gzip-compressed file is recognised by its content whatever its name. Payloads are read with
 * a few large gzread calls into a buffer that grows with the data actually present: a corrupt
 * header claiming billions of images yields a "truncated" error instead of an allocation the
 * size of the claim.
 *
 * Error policy (sim/util.h): every failure is one line "<path>: <reason>" in err, the function
 * returns SNN_ERR, partial buffers are freed and the dataset is left zeroed.
 */
#include "datasets/dataset.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

enum {
    IDX_MAGIC_IMAGES = 0x00000803, /* ubyte (0x08), 3 dimensions */
    IDX_MAGIC_LABELS = 0x00000801, /* ubyte (0x08), 1 dimension */
    IDX_MAX_SIDE = 65535,          /* larger rows/cols are taken as a corrupt header */
    IDX_MAX_LABEL = 99,            /* class ids above this are taken as corruption */
};

/* First buffer size for a payload; doubled as data keeps arriving. 64 MiB holds the whole
 * Fashion-MNIST train set, so the common case is one allocation and one gzread. */
#define IDX_FIRST_CHUNK ((size_t)64 << 20)
/* gzread takes an unsigned and returns an int, so one call moves at most this much. */
#define IDX_MAX_READ ((size_t)1 << 30)

typedef struct idx_file {
    const char *path;
    gzFile gz;
} idx_file;

static int idx_open(idx_file *f, const char *path, snn_err *err) {
    f->path = path;
    f->gz = NULL;
    /* open() first so that a missing or unreadable file reports errno reliably (gzopen may
     * fail for other reasons with errno untouched). */
    int fd = open(path, O_RDONLY);
    if (fd < 0) return snn_err_set(err, "%s: %s", path, strerror(errno));
    f->gz = gzdopen(fd, "rb");
    if (!f->gz) {
        close(fd);
        return snn_err_set(err, "%s: cannot start gzip reader", path);
    }
    gzbuffer(f->gz, 1u << 20); /* fewer, larger reads: inflate throughput */
    return SNN_OK;
}

static void idx_close(idx_file *f) {
    if (f->gz) gzclose(f->gz);
    f->gz = NULL;
}

/* Reads up to `want` bytes into buf, returning in *got how many arrived before end of file.
 * A read error or corrupt gzip stream is an error; a short file is not (callers report the
 * truncation with their own wording). A gzip stream that is cut short counts as short. */
static int idx_read(idx_file *f, void *buf, size_t want, size_t *got, snn_err *err) {
    *got = 0;
    while (*got < want) {
        size_t chunk = want - *got;
        if (chunk > IDX_MAX_READ) chunk = IDX_MAX_READ;
        int r = gzread(f->gz, (uint8_t *)buf + *got, (unsigned)chunk);
        if (r < 0) break;
        if (r == 0) break;
        *got += (size_t)r;
    }
    int errnum = Z_OK;
    const char *msg = gzerror(f->gz, &errnum);
    if (errnum == Z_ERRNO) return snn_err_set(err, "%s: read error: %s", f->path, strerror(errno));
    if (errnum != Z_OK && errnum != Z_BUF_ERROR) /* Z_BUF_ERROR = gzip stream ends early */
        return snn_err_set(err, "%s: corrupt gzip data: %s", f->path, msg);
    return SNN_OK;
}

/* Reads exactly `want` payload bytes into a new buffer, growing it as data arrives (see the
 * file comment). On a short file the error reads "truncated: expected N bytes of <what>,
 * found M". */
static int idx_read_payload(idx_file *f, size_t want, const char *what, uint8_t **out,
                            snn_err *err) {
    *out = NULL;
    size_t cap = want < IDX_FIRST_CHUNK ? want : IDX_FIRST_CHUNK;
    uint8_t *buf = snn_xmalloc(cap);
    size_t have = 0;
    for (;;) {
        size_t got;
        if (idx_read(f, buf + have, cap - have, &got, err) != SNN_OK) {
            free(buf);
            return SNN_ERR;
        }
        have += got;
        if (have < cap || cap == want) break; /* end of file, or everything wanted */
        cap = cap > want / 2 ? want : cap * 2;
        buf = snn_xrealloc(buf, cap);
    }
    if (have < want) {
        free(buf);
        return snn_err_set(err, "%s: truncated: expected %zu bytes of %s, found %zu", f->path,
                           want, what, have);
    }
    *out = buf;
    return SNN_OK;
}

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* "IDX ubyte, 3 dims" or "not an IDX file" for a magic number, for the bad-magic message. */
static void describe_magic(uint32_t magic, char *buf, size_t n) {
    static const struct { unsigned code; const char *name; } types[] = {
        {0x08, "ubyte"}, {0x09, "byte"},  {0x0B, "short"},
        {0x0C, "int"},   {0x0D, "float"}, {0x0E, "double"},
    };
    const char *type = NULL;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (types[i].code == ((magic >> 8) & 0xFF)) type = types[i].name;
    if ((magic >> 16) != 0 || !type) {
        snprintf(buf, n, "not an IDX file");
        return;
    }
    unsigned dims = magic & 0xFF;
    snprintf(buf, n, "IDX %s, %u dim%s", type, dims, dims == 1 ? "" : "s");
}

/* Reads the header (magic, then ndims big-endian uint32 sizes) and checks the magic. */
static int idx_header(idx_file *f, uint32_t want_magic, uint32_t *dims, int ndims,
                      snn_err *err) {
    uint8_t hdr[16];
    size_t hdr_len = 4 + 4 * (size_t)ndims, got;
    if (idx_read(f, hdr, hdr_len, &got, err) != SNN_OK) return SNN_ERR;
    if (got >= 4 && be32(hdr) != want_magic) {
        char found[64], expected[64];
        describe_magic(be32(hdr), found, sizeof found);
        describe_magic(want_magic, expected, sizeof expected);
        return snn_err_set(err, "%s: bad magic 0x%08x (%s), expected 0x%08x (%s)", f->path,
                           (unsigned)be32(hdr), found, (unsigned)want_magic, expected);
    }
    if (got < hdr_len)
        return snn_err_set(err, "%s: truncated: expected a %zu-byte IDX header, found %zu bytes",
                           f->path, hdr_len, got);
    for (int d = 0; d < ndims; d++) dims[d] = be32(hdr + 4 + 4 * d);
    return SNN_OK;
}

int snn_idx_load(snn_dataset *ds, const char *images_path, const char *labels_path,
                 int64_t limit, snn_err *err) {
    SNN_ASSERT(ds && images_path && labels_path && limit >= 0);
    memset(ds, 0, sizeof *ds);

    idx_file fi = {0}, fl = {0};
    uint8_t *pixels = NULL, *labels = NULL;
    uint32_t idims[3], ldims[1];

    if (idx_open(&fi, images_path, err) != SNN_OK) goto fail;
    if (idx_header(&fi, IDX_MAGIC_IMAGES, idims, 3, err) != SNN_OK) goto fail;
    uint32_t n = idims[0], rows = idims[1], cols = idims[2];
    if (n == 0) {
        snn_err_set(err, "%s: holds 0 images", images_path);
        goto fail;
    }
    if (rows == 0 || cols == 0 || rows > IDX_MAX_SIDE || cols > IDX_MAX_SIDE) {
        snn_err_set(err, "%s: bad image size %ux%u (rows and cols must be 1..%d)", images_path,
                    (unsigned)rows, (unsigned)cols, IDX_MAX_SIDE);
        goto fail;
    }

    if (idx_open(&fl, labels_path, err) != SNN_OK) goto fail;
    if (idx_header(&fl, IDX_MAGIC_LABELS, ldims, 1, err) != SNN_OK) goto fail;
    if (ldims[0] != n) {
        snn_err_set(err, "%s: %u images but %s holds %u labels", images_path, (unsigned)n,
                    labels_path, (unsigned)ldims[0]);
        goto fail;
    }

    int64_t keep = (limit == 0 || limit > (int64_t)n) ? (int64_t)n : limit;
    size_t sample = (size_t)rows * cols; /* <= 65535^2, fits any 64-bit size_t */
    if ((uint64_t)keep > SIZE_MAX / sample) {
        snn_err_set(err, "%s: %lld images of %ux%u do not fit in memory", images_path,
                    (long long)keep, (unsigned)rows, (unsigned)cols);
        goto fail;
    }
    if (idx_read_payload(&fi, (size_t)keep * sample, "pixel data", &pixels, err) != SNN_OK)
        goto fail;

    /* All labels are read and checked, not only the kept ones: the file is small (1 byte per
     * sample) and `classes` then describes the task, not whichever prefix `limit` kept. */
    if (idx_read_payload(&fl, n, "label data", &labels, err) != SNN_OK) goto fail;
    int max_label = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (labels[i] > IDX_MAX_LABEL) {
            snn_err_set(err, "%s: label %u of sample %u is out of range (expected 0..%d)",
                        labels_path, (unsigned)labels[i], (unsigned)i, IDX_MAX_LABEL);
            goto fail;
        }
        if (labels[i] > max_label) max_label = labels[i];
    }
    idx_close(&fi);
    idx_close(&fl);

    if (keep < (int64_t)n) labels = snn_xrealloc(labels, (size_t)keep);
    ds->n = keep;
    ds->channels = 1;
    ds->height = (int)rows;
    ds->width = (int)cols;
    ds->classes = 1 + max_label;
    ds->pixels = pixels;
    ds->labels = labels;
    ds->index = snn_xmalloc((size_t)keep * sizeof *ds->index);
    for (int64_t i = 0; i < keep; i++) ds->index[i] = i;
    return SNN_OK;

fail:
    idx_close(&fi);
    idx_close(&fl);
    free(pixels);
    free(labels);
    memset(ds, 0, sizeof *ds);
    return SNN_ERR;
}

/* Picks "<dir>/<base>" if it exists, else "<dir>/<base>.gz"; NULL if neither does. The raw
 * file wins when both exist (torchvision, for one, keeps both after extracting). Anything
 * other than "does not exist" (e.g. permission denied) selects the path so that the open in
 * snn_idx_load reports the real reason. Returned string is malloc'd. */
static char *pick_file(const char *dir, const char *base) {
    size_t len = strlen(dir);
    const char *sep = (len > 0 && dir[len - 1] == '/') ? "" : "/";
    char *raw = snn_xasprintf("%s%s%s", dir, sep, base);
    struct stat st;
    if (stat(raw, &st) == 0 || errno != ENOENT) return raw;
    char *gz = snn_xasprintf("%s.gz", raw);
    free(raw);
    if (stat(gz, &st) == 0 || errno != ENOENT) return gz;
    free(gz);
    return NULL;
}

int snn_dataset_load_split(snn_dataset *ds, const char *dir, const char *split, int64_t limit,
                           snn_err *err) {
    SNN_ASSERT(ds && dir && split);
    memset(ds, 0, sizeof *ds);

    const char *prefix;
    if (strcmp(split, "train") == 0)
        prefix = "train";
    else if (strcmp(split, "test") == 0)
        prefix = "t10k";
    else
        return snn_err_set(err, "%s: unknown split \"%s\" (expected \"train\" or \"test\")", dir,
                           split);

    /* A missing directory gets its own message rather than "no such file" for a file in it. */
    struct stat st;
    if (stat(dir, &st) != 0) return snn_err_set(err, "%s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return snn_err_set(err, "%s: not a directory", dir);

    char *images_base = snn_xasprintf("%s-images-idx3-ubyte", prefix);
    char *labels_base = snn_xasprintf("%s-labels-idx1-ubyte", prefix);
    char *images = pick_file(dir, images_base);
    char *labels = images ? pick_file(dir, labels_base) : NULL;
    int rc;
    if (!images || !labels) {
        size_t len = strlen(dir);
        const char *sep = (len > 0 && dir[len - 1] == '/') ? "" : "/";
        rc = snn_err_set(err, "%s%s%s[.gz]: no such file", dir, sep,
                         images ? labels_base : images_base);
    } else {
        rc = snn_idx_load(ds, images, labels, limit, err);
    }
    free(images_base);
    free(labels_base);
    free(images);
    free(labels);
    return rc;
}

int64_t snn_dataset_split_count(const char *dir, const char *split) {
    const char *prefix = strcmp(split, "train") == 0 ? "train" : strcmp(split, "test") == 0 ? "t10k" : NULL;
    if (!prefix) return -1;
    char *base = snn_xasprintf("%s-images-idx3-ubyte", prefix);
    char *images = pick_file(dir, base);
    int64_t n = -1;
    idx_file f = {0};
    uint32_t dims[3];
    if (images && idx_open(&f, images, NULL) == SNN_OK &&
        idx_header(&f, IDX_MAGIC_IMAGES, dims, 3, NULL) == SNN_OK)
        n = dims[0];
    idx_close(&f);
    free(images);
    free(base);
    return n;
}
