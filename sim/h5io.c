/*
 * h5io.c: the HDF5 layer (see h5io.h): atomic output files, typed n-d datasets with gzip, text,
 * attributes, and float32 checkpoints under /parameters.
 *
 * Why it looks the way it does:
 *   - Atomicity. A run that dies half way must not leave a truncated run.h5 that viewers choke
 *     on, nor destroy the previous good file. So everything is written to a hidden temporary
 *     name in the destination directory (same filesystem, so rename(2) is atomic), fsync'ed,
 *     renamed over the destination and the directory fsync'ed (the usual
 *     write-fsync-rename-fsync(dir) sequence).
 *   - Errors. HDF5's automatic error-stack printing is switched off; every failure becomes one
 *     line "<file>: cannot write /outputs/logits[: reason]" where the reason, when HDF5 has one
 *     from the operating system (disk full, file too large), is taken from its error stack.
 *     Following the HDF5 library tests (style.md 1.6), every hid starts as H5I_INVALID_HID,
 *     each call is checked, and one cleanup label closes everything inside H5E_BEGIN_TRY.
 *   - Compatibility. Default library version bounds (HDF5 1.10 tools must read our files),
 *     little-endian standard file types, gzip + shuffle only (built into every reader).
 *   - Checkpoints are plain h5py-style files: /parameters/<state_dict name>, float32, so
 *     `f["parameters"][k] = v.numpy()` writes one and a wrong one is refused naming the tensor.
 *   - Failed closes. In HDF5 1.10 a failed flush (e.g. the metadata flush at close hits a full
 *     disk) leaves the metadata cache unusable: the file can then never be closed, and a close
 *     attempt frees it while leaving its id registered, so H5close() and the library's atexit
 *     shutdown crash (HDFFV-11052, fixed in 1.14.1). Hence: snn_h5_init() turns the atexit
 *     shutdown off; after a failed write, snn_h5_abort points the file's descriptor at an
 *     anonymous memory file before closing, so the close's own writes cannot fail (the data is
 *     being thrown away anyway); after a failed flush the id is deliberately leaked (never
 *     closed) and only its descriptor is redirected, so the unlinked temporary file's disk
 *     space is released at once.
 *
 * The only global state is HDF5's own (its library state and the default error stack).
 */
#ifdef __linux__
#define _GNU_SOURCE /* memfd_create, for discard_pending_writes */
#endif
#include "sim/h5io.h"
#include "sim/interrupt.h"

#include <hdf5_hl.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Datasets below this many elements stay contiguous: compressing a few KiB gains nothing and
 * chunk B-trees cost more than they save. */
#define H5IO_COMPRESS_MIN_ELEMS 1024u
/* h5py's guidance: chunks between 10 KiB and 1 MiB. We aim for [64 KiB, 1 MiB]. */
#define H5IO_CHUNK_MAX_BYTES    ((uint64_t)1 << 20)
#define H5IO_CHUNK_MIN_BYTES    ((uint64_t)64 << 10)
#define H5IO_CHUNK_1D_MAX_ELEMS ((uint64_t)262144)
/* snn_h5_read: datasets above this size must have their data in the file, at most this
 * compressed (deflate's limit is ~1032:1). */
#define H5IO_READ_UNCHECKED_BYTES ((uint64_t)1 << 20)
#define H5IO_MAX_GZIP_RATIO       ((uint64_t)1032)

/* ---- small helpers -------------------------------------------------------------------------- */

void snn_h5_init(void) {
    /* H5dont_atexit only has an effect before the library initialises itself, i.e. before any
     * other H5 call; later calls are harmless no-ops (it then returns an error we ignore). */
    (void)H5dont_atexit();
    /* We report one line per failure; HDF5's stack dump on stderr would bury it. */
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

/* Remembers that an HDF5 call writing to h failed, so that snn_h5_abort does not try a normal
 * close (see "Failed closes" at the top). */
static void note_io_error(snn_h5 *h, int level) {
    if (h->io_error < level) h->io_error = level;
}

typedef struct type_info {
    hid_t file;        /* little-endian standard type stored in the file */
    hid_t mem;         /* native type of the caller's buffer */
    size_t size;       /* bytes per element in memory */
} type_info;

static type_info type_of(snn_h5_type t) {
    type_info ti = {H5I_INVALID_HID, H5I_INVALID_HID, 0};
    switch (t) {
    case SNN_H5_F32: ti = (type_info){H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, sizeof(float)}; break;
    case SNN_H5_F64: ti = (type_info){H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, sizeof(double)}; break;
    case SNN_H5_I8: ti = (type_info){H5T_STD_I8LE, H5T_NATIVE_INT8, sizeof(int8_t)}; break;
    case SNN_H5_U8: ti = (type_info){H5T_STD_U8LE, H5T_NATIVE_UINT8, sizeof(uint8_t)}; break;
    case SNN_H5_I32: ti = (type_info){H5T_STD_I32LE, H5T_NATIVE_INT32, sizeof(int32_t)}; break;
    case SNN_H5_I64: ti = (type_info){H5T_STD_I64LE, H5T_NATIVE_INT64, sizeof(int64_t)}; break;
    case SNN_H5_U64: ti = (type_info){H5T_STD_U64LE, H5T_NATIVE_UINT64, sizeof(uint64_t)}; break;
    }
    SNN_ASSERT(ti.size != 0);
    return ti;
}

/* The operating-system reason behind the HDF5 error currently on the default stack, e.g.
 * ": No space left on device", or "" when there is none. HDF5's low-level file driver records
 * "..., errno = 28, error message = 'No space left on device', ..." in the description of the
 * innermost error; that is the only part of the stack a user can act on. Must be called right
 * after the failing call: the next HDF5 API call clears the stack. */
typedef struct h5_reason {
    char text[256];
} h5_reason;

static herr_t reason_walk(unsigned n, const H5E_error2_t *e, void *data) {
    (void)n;
    h5_reason *r = data;
    static const char key[] = "error message = '";
    const char *p = (r->text[0] == '\0' && e->desc) ? strstr(e->desc, key) : NULL;
    if (p) {
        p += sizeof key - 1;
        const char *q = strchr(p, '\'');
        size_t len = q ? (size_t)(q - p) : strlen(p);
        if (len > sizeof r->text - 3) len = sizeof r->text - 3;
        r->text[0] = ':';
        r->text[1] = ' ';
        memcpy(r->text + 2, p, len);
        r->text[len + 2] = '\0';
    }
    return 0;
}

static h5_reason current_reason(void) {
    h5_reason r = {{0}};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, reason_walk, &r);
    return r;
}

/* "[64, 64]" */
static void format_shape(char *buf, size_t n, int rank, const hsize_t *dims) {
    size_t used = 0;
    buf[0] = '\0';
    used += (size_t)snprintf(buf + used, n - used, "[");
    for (int i = 0; i < rank && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s%llu", i ? ", " : "",
                                 (unsigned long long)dims[i]);
    if (used < n) snprintf(buf + used, n - used, "]");
}

/* Link-creation property list that creates missing parent groups, so writers can name
 * "/nodes/blocks.0.lif_in/observables/spikes/data" without making each group first. */
static hid_t make_lcpl(void) {
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    if (lcpl < 0) return H5I_INVALID_HID;
    if (H5Pset_create_intermediate_group(lcpl, 1) < 0) {
        H5Pclose(lcpl);
        return H5I_INVALID_HID;
    }
    return lcpl;
}

/* Variable-length UTF-8 string type, what h5py and NIR write for str. Caller closes it. */
static hid_t make_utf8_type(void) {
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0) return H5I_INVALID_HID;
    if (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
        H5Tclose(t);
        return H5I_INVALID_HID;
    }
    return t;
}

enum { KIND_ERROR = -1, KIND_MISSING = 0, KIND_GROUP, KIND_DATASET, KIND_OTHER };

/* What the absolute or relative path names in loc: checks each prefix with H5Lexists because
 * H5Lexists on "a/b/c" is an error, not "no", when "a" is missing. */
static int object_kind(hid_t loc, const char *path) {
    size_t len = strlen(path);
    char *buf = snn_xmalloc(len + 1);
    memcpy(buf, path, len + 1);
    int kind = KIND_MISSING;
    size_t i = 0;
    while (i < len && buf[i] == '/') i++;
    while (i < len) {
        size_t j = i;
        while (j < len && buf[j] != '/') j++;
        char saved = buf[j];
        buf[j] = '\0';
        htri_t e = H5Lexists(loc, buf, H5P_DEFAULT);
        buf[j] = saved;
        if (e <= 0) {
            free(buf);
            return e < 0 ? KIND_ERROR : KIND_MISSING;
        }
        i = j;
        while (i < len && buf[i] == '/') i++;
    }
    free(buf);
    hid_t obj = H5Oopen(loc, path, H5P_DEFAULT);
    if (obj < 0) return KIND_ERROR;
    switch (H5Iget_type(obj)) {
    case H5I_GROUP: kind = KIND_GROUP; break;
    case H5I_DATASET: kind = KIND_DATASET; break;
    default: kind = KIND_OTHER; break;
    }
    H5Oclose(obj);
    return kind;
}

/* Noun for messages ("a %s"). A named datatype is the only other kind of HDF5 object; a link
 * that cannot be opened is a dangling soft or external link. */
static const char *kind_name(int kind) {
    switch (kind) {
    case KIND_GROUP: return "group";
    case KIND_DATASET: return "dataset";
    case KIND_OTHER: return "datatype";
    default: return "broken link";
    }
}

static int is_live(const snn_h5 *h) {
    return h && h->tmp_path && h->file > 0;
}

/* ---- atomic files --------------------------------------------------------------------------- */

/* Splits path into its directory ("." when there is none) and base name, both malloc'd. */
static void split_path(const char *path, char **dir, char **base) {
    const char *slash = strrchr(path, '/');
    if (!slash) {
        *dir = snn_xstrdup(".");
        *base = snn_xstrdup(path);
    } else if (slash == path) {
        *dir = snn_xstrdup("/");
        *base = snn_xstrdup(slash + 1);
    } else {
        *dir = snn_xasprintf("%.*s", (int)(slash - path), path);
        *base = snn_xstrdup(slash + 1);
    }
}

int snn_h5_create(snn_h5 *h, const char *path, int compression, snn_err *err) {
    SNN_ASSERT(h && path);
    SNN_ASSERT(compression >= 0 && compression <= 9);
    snn_h5_init();
    *h = (snn_h5){.file = H5I_INVALID_HID};

    char *dir = NULL, *base = NULL, *tmp = NULL;
    hid_t fapl = H5I_INVALID_HID, file = H5I_INVALID_HID;
    int rc = SNN_ERR;
    split_path(path, &dir, &base);
    struct stat st;
    if (base[0] == '\0' || strcmp(base, ".") == 0 || strcmp(base, "..") == 0 ||
        (stat(path, &st) == 0 && S_ISDIR(st.st_mode))) {
        /* found now rather than when the commit's rename fails, after the whole run */
        snn_err_set(err, "%s: cannot create output file: %s", path, strerror(EISDIR));
        goto cleanup;
    }

    /* Reserve a unique temporary name with O_EXCL. This also gives the real reason (errno)
     * when the directory is missing or not writable, which HDF5 would not tell us reliably. */
    for (unsigned n = 0;; n++) {
        free(tmp);
        /* "<dir>/.<base>.tmp.<pid>.<n>": same directory, so same filesystem for rename(2). */
        tmp = snn_xasprintf("%.*s.%s.tmp.%ld.%u", (int)(strlen(path) - strlen(base)), path, base,
                            (long)getpid(), n);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0) {
            close(fd);
            unlink(tmp);
            break;
        }
        if (errno != EEXIST || n >= 1000) {
            snn_err_set(err, "%s: cannot create output file: %s", path, strerror(errno));
            goto cleanup;
        }
    }

    /* H5F_CLOSE_STRONG: H5Fclose really closes the file even if an id inside it leaked, so the
     * commit never renames a file that HDF5 may still write to. */
    snn_interrupt_track(tmp); /* a signal from now on removes it (interrupt.h) */
    if ((fapl = H5Pcreate(H5P_FILE_ACCESS)) < 0) goto hdf5_fail;
    if (H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0) goto hdf5_fail;
    if ((file = H5Fcreate(tmp, H5F_ACC_EXCL, H5P_DEFAULT, fapl)) < 0) goto hdf5_fail;

    h->file = file;
    file = H5I_INVALID_HID;
    h->path = snn_xstrdup(path);
    h->tmp_path = tmp;
    tmp = NULL;
    h->compression = compression;
    rc = SNN_OK;
    goto cleanup;

hdf5_fail: {
    h5_reason r = current_reason();
    snn_err_set(err, "%s: cannot create output file: HDF5 could not create %s%s", path, tmp,
                r.text);
}
cleanup:
    H5E_BEGIN_TRY {
        H5Fclose(file);
        H5Pclose(fapl);
    } H5E_END_TRY;
    if (rc != SNN_OK && tmp) unlink(tmp); /* a half-made HDF5 file, if any */
    if (tmp) snn_interrupt_untrack(tmp);
    free(tmp);
    free(dir);
    free(base);
    return rc;
}

/* fsync of a path opened read-only (enough on Linux for both files and directories). */
static int fsync_path(const char *p, int flags) {
    int fd = open(p, O_RDONLY | O_CLOEXEC | flags);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

int snn_h5_commit(snn_h5 *h, snn_err *err) {
    SNN_ASSERT(is_live(h));
    int rc = SNN_ERR;
    char *dir = NULL, *base = NULL;

    if (h->io_error) {
        /* A write already failed: the file is incomplete; never install it. */
        snn_err_set(err, "%s: not written: an earlier write to it failed", h->path);
        goto cleanup;
    }
    /* Flush separately so that a flush failure is known to be one (the file then cannot be
     * closed, see "Failed closes" at the top); after a good flush the close has nothing left
     * to write. */
    if (H5Fflush(h->file, H5F_SCOPE_GLOBAL) < 0) {
        h5_reason r = current_reason();
        note_io_error(h, 2);
        snn_err_set(err, "%s: cannot finish output file%s", h->path, r.text);
        goto cleanup;
    }
    herr_t closed = H5Fclose(h->file);
    h->file = H5I_INVALID_HID; /* after a failed close the id may dangle: never touch it */
    if (closed < 0) {
        h5_reason r = current_reason();
        snn_err_set(err, "%s: cannot finish output file%s", h->path, r.text);
        goto cleanup;
    }
    if (fsync_path(h->tmp_path, 0) != 0) {
        snn_err_set(err, "%s: cannot sync %s: %s", h->path, h->tmp_path, strerror(errno));
        goto cleanup;
    }
    if (rename(h->tmp_path, h->path) != 0) {
        snn_err_set(err, "%s: cannot rename %s over it: %s", h->path, h->tmp_path,
                    strerror(errno));
        goto cleanup;
    }
    snn_interrupt_untrack(h->tmp_path);
    free(h->tmp_path);
    h->tmp_path = NULL; /* renamed: nothing left for abort to remove */

    /* Make the rename itself durable. Some filesystems cannot fsync a directory (EINVAL);
     * the data is already safe there, so that is not an error. */
    split_path(h->path, &dir, &base);
    if (fsync_path(dir, O_DIRECTORY) != 0 && errno != EINVAL && errno != ENOTSUP) {
        snn_err_set(err, "%s: written, but cannot sync directory %s: %s", h->path, dir,
                    strerror(errno));
        goto cleanup;
    }
    rc = SNN_OK;

cleanup:
    free(dir);
    free(base);
    snn_h5_abort(h); /* removes the temporary file on failure; frees the names either way */
    return rc;
}

/* Points the sec2 file descriptor of file at an anonymous memory file, so HDF5's remaining
 * writes (dirty metadata and chunks flushed by H5Fclose) go nowhere and cannot fail on a full
 * disk, and the temporary file's blocks are released. Only for files being discarded. Best
 * effort. NOTE: metadata HDF5 would have to read back during the close now reads as zeros;
 * the cache normally holds everything a close needs, and a failure there is quiet. */
static void discard_pending_writes(hid_t file) {
#ifdef __linux__
    hid_t fapl = H5Fget_access_plist(file);
    if (fapl < 0) return;
    hid_t driver = H5Pget_driver(fapl);
    H5Pclose(fapl);
    void *handle = NULL;
    if (driver != H5FD_SEC2 || H5Fget_vfd_handle(file, H5P_DEFAULT, &handle) < 0 || !handle)
        return;
    int fd = *(int *)handle; /* the sec2 driver hands out a pointer to its descriptor */
    int sink = memfd_create("spikesim-discard", MFD_CLOEXEC);
    if (sink < 0) return;
    if (dup2(sink, fd) >= 0) (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
    close(sink);
#else
    (void)file;
#endif
}

void snn_h5_abort(snn_h5 *h) {
    if (!h) return;
    if (h->tmp_path && h->file > 0) {
        H5E_BEGIN_TRY {
            if (h->io_error == 0) {
                H5Fclose(h->file);
            } else if (h->io_error == 1) {
                discard_pending_writes(h->file);
                H5Fclose(h->file);
            } else {
                discard_pending_writes(h->file); /* leak the unclosable id, free the disk */
            }
        } H5E_END_TRY;
    }
    if (h->tmp_path) {
        unlink(h->tmp_path);
        snn_interrupt_untrack(h->tmp_path);
    }
    free(h->tmp_path);
    free(h->path);
    h->tmp_path = NULL;
    h->path = NULL;
    h->file = H5I_INVALID_HID;
    h->compression = 0;
    h->io_error = 0;
}

/* ---- datasets ------------------------------------------------------------------------------- */

/* Chunk shape for a compressed dataset with all dims >= 1 (see h5io.h):
 *   rank 1: min(n, 262144, 1 MiB / element) elements;
 *   rank >= 2: trailing dims whole and as many leading indices as make ~64 KiB (one leading
 *   index when a row is 64 KiB..1 MiB, so a reader of one sample touches one chunk); a row over
 *   1 MiB keeps leading 1 and shrinks dims 1, 2, ... in turn until the chunk is <= 1 MiB. */
static void choose_chunk(int rank, const hsize_t *dims, size_t esize, hsize_t *chunk) {
    if (rank == 1) {
        uint64_t c = H5IO_CHUNK_MAX_BYTES / esize;
        if (c > H5IO_CHUNK_1D_MAX_ELEMS) c = H5IO_CHUNK_1D_MAX_ELEMS;
        chunk[0] = dims[0] < c ? dims[0] : c;
        return;
    }
    uint64_t row = esize;
    for (int i = 1; i < rank; i++) {
        chunk[i] = dims[i];
        row *= dims[i];
    }
    if (row <= H5IO_CHUNK_MAX_BYTES) {
        uint64_t lead = row >= H5IO_CHUNK_MIN_BYTES ? 1 : H5IO_CHUNK_MIN_BYTES / row;
        chunk[0] = lead < dims[0] ? lead : dims[0];
        return;
    }
    chunk[0] = 1;
    uint64_t bytes = row;
    for (int d = 1; d < rank && bytes > H5IO_CHUNK_MAX_BYTES; d++) {
        uint64_t slice = bytes / chunk[d]; /* bytes of one index along d */
        chunk[d] = slice >= H5IO_CHUNK_MAX_BYTES ? 1 : H5IO_CHUNK_MAX_BYTES / slice;
        bytes = slice * chunk[d];
    }
}

/* Reports a failed write as "<file>: <what>: <why>" when the caller knows why (a name clash, a
 * missing object), else as an I/O failure with HDF5's innermost reason, and marks the file
 * so that it is never committed. */
static void write_failed(snn_h5 *h, const char *why, snn_err *err, const char *what_fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void write_failed(snn_h5 *h, const char *why, snn_err *err, const char *what_fmt, ...) {
    char what[512];
    va_list ap;
    va_start(ap, what_fmt);
    vsnprintf(what, sizeof what, what_fmt, ap);
    va_end(ap);
    if (why) {
        snn_err_set(err, "%s: %s: %s", h->path, what, why);
    } else {
        h5_reason r = current_reason();
        note_io_error(h, 1);
        snn_err_set(err, "%s: %s%s", h->path, what, r.text);
    }
}

/* Creates the dataset path (file type ftype, shape space), writes buf (memory type mtype)
 * unless it is NULL, and closes it; < 0 on failure. Closing writes the chunks still in the
 * chunk cache, so a failed close is a failed write. On failure the dataset is left open in
 * *dset for the caller to close after write_failed: closing it first would clear the HDF5
 * error stack that write_failed reports from. */
static herr_t new_dataset(hid_t file, const char *path, hid_t ftype, hid_t mtype, hid_t space,
                          hid_t lcpl, hid_t dcpl, const void *buf, hid_t *dset) {
    if ((*dset = H5Dcreate2(file, path, ftype, space, lcpl, dcpl, H5P_DEFAULT)) < 0) return -1;
    if (buf && H5Dwrite(*dset, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) return -1;
    herr_t closed = H5Dclose(*dset);
    *dset = H5I_INVALID_HID;
    return closed;
}

int snn_h5_write(snn_h5 *h, const char *path, snn_h5_type type, int rank, const uint64_t *dims,
                 const void *data, snn_err *err) {
    SNN_ASSERT(is_live(h) && path && (dims || rank == 0));
    SNN_ASSERT(rank >= 0 && rank <= 4);  /* rank 0: a scalar (PyTorch 0-d tensor) */
    type_info ti = type_of(type);
    hsize_t hdims[4], chunk[4];
    uint64_t n = 1;
    int overflow = 0;
    for (int i = 0; i < rank; i++) {
        hdims[i] = dims[i];
        if (dims[i] != 0 && n > UINT64_MAX / ti.size / dims[i]) overflow = 1;
        n *= dims[i];
    }
    SNN_ASSERT(n == 0 || data);

    hid_t space = H5I_INVALID_HID, dcpl = H5I_INVALID_HID, lcpl = H5I_INVALID_HID;
    hid_t dset = H5I_INVALID_HID;
    const char *why = NULL;
    int rc = SNN_ERR;

    if (overflow) {
        why = "dataset too large";
        goto cleanup;
    }
    int kind = object_kind(h->file, path);
    if (kind > KIND_MISSING) {
        why = "an object of that name already exists";
        goto cleanup;
    }
    if ((space = rank ? H5Screate_simple(rank, hdims, NULL) : H5Screate(H5S_SCALAR)) < 0)
        goto cleanup;
    if ((dcpl = H5Pcreate(H5P_DATASET_CREATE)) < 0) goto cleanup;
    /* n >= 1024 implies every dim >= 1, so chunk dims are valid (>= 1 and <= dims). Zero-size
     * datasets take the contiguous branch, which HDF5 handles with an empty dataspace. */
    if (h->compression > 0 && n >= H5IO_COMPRESS_MIN_ELEMS) {
        if (H5Zfilter_avail(H5Z_FILTER_DEFLATE) <= 0) {
            why = "this HDF5 library has no gzip (deflate) filter";
            goto cleanup;
        }
        choose_chunk(rank, hdims, ti.size, chunk);
        if (H5Pset_chunk(dcpl, rank, chunk) < 0) goto cleanup;
        if (H5Pset_shuffle(dcpl) < 0) goto cleanup;
        if (H5Pset_deflate(dcpl, (unsigned)h->compression) < 0) goto cleanup;
    }
    if ((lcpl = make_lcpl()) < 0) goto cleanup;
    if (new_dataset(h->file, path, ti.file, ti.mem, space, lcpl, dcpl, n > 0 ? data : NULL, &dset) < 0)
        goto cleanup;
    rc = SNN_OK;

cleanup:
    if (rc != SNN_OK) {
        write_failed(h, why, err, "cannot write %s", path);
    }
    H5E_BEGIN_TRY {
        H5Dclose(dset);
        H5Pclose(lcpl);
        H5Pclose(dcpl);
        H5Sclose(space);
    } H5E_END_TRY;
    return rc;
}

int snn_h5_group(snn_h5 *h, const char *path, snn_err *err) {
    SNN_ASSERT(is_live(h) && path);
    hid_t lcpl = H5I_INVALID_HID, group = H5I_INVALID_HID;
    const char *why = NULL;
    int rc = SNN_ERR;

    int kind = object_kind(h->file, path);
    if (kind == KIND_GROUP || strcmp(path, "/") == 0) return SNN_OK;
    if (kind > KIND_MISSING) {
        why = "a dataset of that name exists";
        goto cleanup;
    }
    if ((lcpl = make_lcpl()) < 0) goto cleanup;
    if ((group = H5Gcreate2(h->file, path, lcpl, H5P_DEFAULT, H5P_DEFAULT)) < 0) goto cleanup;
    rc = SNN_OK;

cleanup:
    if (rc != SNN_OK) {
        write_failed(h, why, err, "cannot create group %s", path);
    }
    H5E_BEGIN_TRY {
        H5Gclose(group);
        H5Pclose(lcpl);
    } H5E_END_TRY;
    return rc;
}

int snn_h5_write_text(snn_h5 *h, const char *path, const char *text, snn_err *err) {
    SNN_ASSERT(is_live(h) && path && text);
    hid_t space = H5I_INVALID_HID, type = H5I_INVALID_HID, lcpl = H5I_INVALID_HID;
    hid_t dset = H5I_INVALID_HID;
    const char *why = NULL;
    int rc = SNN_ERR;

    if (object_kind(h->file, path) > KIND_MISSING) {
        why = "an object of that name already exists";
        goto cleanup;
    }
    if ((space = H5Screate(H5S_SCALAR)) < 0) goto cleanup;
    if ((type = make_utf8_type()) < 0) goto cleanup;
    if ((lcpl = make_lcpl()) < 0) goto cleanup;
    /* A vlen string buffer is an array of char pointers: here, one. */
    if (new_dataset(h->file, path, type, type, space, lcpl, H5P_DEFAULT, &text, &dset) < 0)
        goto cleanup;
    rc = SNN_OK;

cleanup:
    if (rc != SNN_OK) {
        write_failed(h, why, err, "cannot write %s", path);
    }
    H5E_BEGIN_TRY {
        H5Dclose(dset);
        H5Pclose(lcpl);
        H5Tclose(type);
        H5Sclose(space);
    } H5E_END_TRY;
    return rc;
}

/* ---- attributes ----------------------------------------------------------------------------- */

typedef enum attr_kind { ATTR_STR, ATTR_F64, ATTR_I64 } attr_kind;

/* Writes (or replaces) attribute name on the object at path. count < 0 means a scalar,
 * otherwise a 1-D attribute of count elements. buf is what H5Awrite takes: for strings an
 * array of char pointers. */
static int write_attr(snn_h5 *h, const char *path, const char *name, attr_kind ak, int count,
                      const void *buf, snn_err *err) {
    SNN_ASSERT(is_live(h) && path && name);
    hid_t obj = H5I_INVALID_HID, space = H5I_INVALID_HID, strtype = H5I_INVALID_HID;
    hid_t attr = H5I_INVALID_HID;
    hid_t ftype = H5I_INVALID_HID, mtype = H5I_INVALID_HID;
    const char *why = NULL;
    int rc = SNN_ERR;

    if (object_kind(h->file, path) <= KIND_MISSING && strcmp(path, "/") != 0) {
        why = "no such object";
        goto cleanup;
    }
    if ((obj = H5Oopen(h->file, path, H5P_DEFAULT)) < 0) goto cleanup;
    switch (ak) {
    case ATTR_STR:
        if ((strtype = make_utf8_type()) < 0) goto cleanup;
        ftype = mtype = strtype;
        break;
    case ATTR_F64:
        ftype = H5T_IEEE_F64LE;
        mtype = H5T_NATIVE_DOUBLE;
        break;
    case ATTR_I64:
        ftype = H5T_STD_I64LE;
        mtype = H5T_NATIVE_INT64;
        break;
    }
    if (count < 0) {
        space = H5Screate(H5S_SCALAR);
    } else {
        hsize_t d = (hsize_t)count;
        space = H5Screate_simple(1, &d, NULL);
    }
    if (space < 0) goto cleanup;
    /* Replace semantics: attributes cannot be re-created in place, so delete first. */
    htri_t exists = H5Aexists(obj, name);
    if (exists < 0) goto cleanup;
    if (exists > 0 && H5Adelete(obj, name) < 0) goto cleanup;
    if ((attr = H5Acreate2(obj, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT)) < 0) goto cleanup;
    if (count != 0 && H5Awrite(attr, mtype, buf) < 0) goto cleanup;
    rc = SNN_OK;

cleanup:
    if (rc != SNN_OK) {
        write_failed(h, why, err, "cannot write attribute %s on %s", name, path);
    }
    H5E_BEGIN_TRY {
        H5Aclose(attr);
        H5Sclose(space);
        H5Tclose(strtype);
        H5Oclose(obj);
    } H5E_END_TRY;
    return rc;
}

int snn_h5_attr_str(snn_h5 *h, const char *path, const char *name, const char *value,
                    snn_err *err) {
    SNN_ASSERT(value);
    return write_attr(h, path, name, ATTR_STR, -1, &value, err);
}

int snn_h5_attr_f64(snn_h5 *h, const char *path, const char *name, double value, snn_err *err) {
    return write_attr(h, path, name, ATTR_F64, -1, &value, err);
}

int snn_h5_attr_i64(snn_h5 *h, const char *path, const char *name, int64_t value, snn_err *err) {
    return write_attr(h, path, name, ATTR_I64, -1, &value, err);
}

int snn_h5_attr_str_array(snn_h5 *h, const char *path, const char *name, int n,
                          const char *const *values, snn_err *err) {
    SNN_ASSERT(n >= 0 && (n == 0 || values));
    for (int i = 0; i < n; i++) SNN_ASSERT(values[i]);
    return write_attr(h, path, name, ATTR_STR, n, values, err);
}

/* ---- dimension scales ------------------------------------------------------------------------ */

int snn_h5_set_scale(snn_h5 *h, const char *path, const char *label, snn_err *err) {
    SNN_ASSERT(is_live(h) && path && label);
    hid_t d = H5I_INVALID_HID;
    int rc = SNN_ERR;
    if (object_kind(h->file, path) != KIND_DATASET) {
        write_failed(h, "no such dataset", err, "cannot make %s a dimension scale", path);
        return SNN_ERR;
    }
    if ((d = H5Dopen2(h->file, path, H5P_DEFAULT)) >= 0 && H5DSset_scale(d, label) >= 0) rc = SNN_OK;
    if (rc != SNN_OK) write_failed(h, NULL, err, "cannot make %s a dimension scale", path);
    H5E_BEGIN_TRY { H5Dclose(d); } H5E_END_TRY;
    return rc;
}

int snn_h5_attach_scale(snn_h5 *h, const char *path, const char *scale_path, int dim,
                        snn_err *err) {
    SNN_ASSERT(is_live(h) && path && scale_path && dim >= 0);
    hid_t d = H5I_INVALID_HID, s = H5I_INVALID_HID;
    int rc = SNN_ERR;
    if (object_kind(h->file, path) != KIND_DATASET || object_kind(h->file, scale_path) != KIND_DATASET) {
        write_failed(h, "no such dataset", err, "cannot attach scale %s to %s", scale_path, path);
        return SNN_ERR;
    }
    if ((d = H5Dopen2(h->file, path, H5P_DEFAULT)) >= 0 &&
        (s = H5Dopen2(h->file, scale_path, H5P_DEFAULT)) >= 0 &&
        H5DSattach_scale(d, s, (unsigned)dim) >= 0)
        rc = SNN_OK;
    if (rc != SNN_OK) write_failed(h, NULL, err, "cannot attach scale %s to %s", scale_path, path);
    H5E_BEGIN_TRY {
        H5Dclose(s);
        H5Dclose(d);
    } H5E_END_TRY;
    return rc;
}

/* ---- checkpoints: writing ------------------------------------------------------------------- */

int snn_h5_write_parameters(snn_h5 *h, const snn_tensor *tensors, size_t n, snn_err *err) {
    SNN_ASSERT(is_live(h) && (n == 0 || tensors));
    if (snn_h5_group(h, "/parameters", err) != SNN_OK) return SNN_ERR;
    for (size_t i = 0; i < n; i++) {
        const snn_tensor *t = &tensors[i];
        SNN_ASSERT(t->name && t->rank >= 0 && t->rank <= 4);
        /* A '/' would silently turn into nested groups that no state_dict loader finds. */
        if (t->name[0] == '\0' || strchr(t->name, '/') || strcmp(t->name, ".") == 0)
            return snn_err_set(err, "%s: cannot write tensor \"%s\": not a valid tensor name",
                               h->path, t->name);
        uint64_t dims[4];
        for (int d = 0; d < t->rank; d++) {
            SNN_ASSERT(t->dims[d] >= 0);
            dims[d] = (uint64_t)t->dims[d];
        }
        char *path = snn_xasprintf("/parameters/%s", t->name);
        int rc = snn_h5_write(h, path, SNN_H5_F32, t->rank, dims, t->data, err);
        /* viewers label axes and values from these two attributes */
        if (rc == SNN_OK) rc = snn_h5_attr_str(h, path, "units", "1", err);
        if (rc == SNN_OK) {
            char *ln = snn_xasprintf("parameter %s (PyTorch state_dict layout)", t->name);
            rc = snn_h5_attr_str(h, path, "long_name", ln, err);
            free(ln);
        }
        free(path);
        if (rc != SNN_OK) return rc;
    }
    return SNN_OK;
}

/* ---- reading -------------------------------------------------------------------------------- */

hid_t snn_h5_open_readonly(const char *path, snn_err *err) {
    snn_h5_init();
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snn_err_set(err, "%s: cannot open: %s", path, strerror(errno));
        return H5I_INVALID_HID;
    }
    struct stat st;
    int is_dir = fstat(fd, &st) == 0 && S_ISDIR(st.st_mode);
    close(fd);
    if (is_dir) {
        snn_err_set(err, "%s: cannot open: %s", path, strerror(EISDIR));
        return H5I_INVALID_HID;
    }
    if (H5Fis_hdf5(path) <= 0) {
        snn_err_set(err, "%s: not an HDF5 file", path);
        return H5I_INVALID_HID;
    }
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0) {
        h5_reason r = current_reason();
        snn_err_set(err, "%s: cannot open HDF5 file%s", path, r.text);
        return H5I_INVALID_HID;
    }
    return file;
}

int snn_h5_exists(const char *file_path, const char *path) {
    snn_h5_init();
    int found = 0;
    H5E_BEGIN_TRY {
        hid_t file = H5Fopen(file_path, H5F_ACC_RDONLY, H5P_DEFAULT);
        if (file >= 0) {
            found = H5Lexists(file, path, H5P_DEFAULT) > 0;
            H5Fclose(file);
        }
    } H5E_END_TRY;
    return found;
}

static void describe_type(hid_t type, char *buf, size_t n);

/* HDF5's converters trust a type's fields: a corrupt integer type, its precision or offset past
 * its size, made H5T__bit_copy read out of bounds when H5Dread converted it (fuzz_checkpoint).
 * H5Tequal compares every field. */
bool snn_h5_is_standard_numeric(hid_t type) {
    const hid_t std[] = {H5T_STD_I8LE,    H5T_STD_I8BE,    H5T_STD_U8LE,    H5T_STD_U8BE,
                         H5T_STD_I16LE,   H5T_STD_I16BE,   H5T_STD_U16LE,   H5T_STD_U16BE,
                         H5T_STD_I32LE,   H5T_STD_I32BE,   H5T_STD_U32LE,   H5T_STD_U32BE,
                         H5T_STD_I64LE,   H5T_STD_I64BE,   H5T_STD_U64LE,   H5T_STD_U64BE,
                         H5T_IEEE_F32LE,  H5T_IEEE_F32BE,  H5T_IEEE_F64LE,  H5T_IEEE_F64BE};
    for (size_t i = 0; i < sizeof std / sizeof *std; i++)
        if (H5Tequal(type, std[i]) > 0) return true;
    return false;
}

int snn_h5_read(const char *file_path, const char *path, snn_h5_type type, int *rank,
                uint64_t dims[4], void **data, snn_err *err) {
    SNN_ASSERT(file_path && path && rank && dims && data);
    type_info ti = type_of(type);
    *data = NULL;
    *rank = 0;
    hid_t file = H5I_INVALID_HID, dset = H5I_INVALID_HID, space = H5I_INVALID_HID;
    void *buf = NULL;
    int rc = SNN_ERR;

    if ((file = snn_h5_open_readonly(file_path, err)) < 0) return SNN_ERR;
    int kind = object_kind(file, path);
    if (kind != KIND_DATASET) {
        if (kind == KIND_GROUP || kind == KIND_OTHER)
            snn_err_set(err, "%s: %s is a %s, not a dataset", file_path, path, kind_name(kind));
        else snn_err_set(err, "%s: no dataset %s", file_path, path);
        goto cleanup;
    }
    if ((dset = H5Dopen2(file, path, H5P_DEFAULT)) < 0) goto hdf5_fail;
    if ((space = H5Dget_space(dset)) < 0) goto hdf5_fail;
    H5S_class_t cls = H5Sget_simple_extent_type(space);
    int r = H5Sget_simple_extent_ndims(space);
    if (cls == H5S_NULL) {
        snn_err_set(err, "%s: %s has a null dataspace (no data)", file_path, path);
        goto cleanup;
    }
    if (r < 0) goto hdf5_fail;
    if (r > 4) {
        snn_err_set(err, "%s: %s has rank %d, at most 4 is supported", file_path, path, r);
        goto cleanup;
    }
    hsize_t hd[4] = {0, 0, 0, 0};
    if (r > 0 && H5Sget_simple_extent_dims(space, hd, NULL) < 0) goto hdf5_fail;
    uint64_t n = 1;
    for (int i = 0; i < r; i++) {
        if (hd[i] != 0 && n > SIZE_MAX / ti.size / hd[i]) {
            snn_err_set(err, "%s: %s is too large to read into memory", file_path, path);
            goto cleanup;
        }
        n *= hd[i];
    }
    /* A corrupt or hostile file can declare any shape: a chunked dataset of 2^40 elements whose
     * chunks were never written costs a few hundred bytes. Refuse a shape the stored data
     * cannot hold, before allocating for it: gzip (the only compression we write or expect)
     * shrinks data at most ~1032:1, and datasets whose data was never written are not part of
     * any file spikesim reads. Small datasets are exempt (fill values, tiny headers). */
    hid_t ftype = H5Dget_type(dset);
    if (ftype < 0) goto hdf5_fail;
    if (!snn_h5_is_standard_numeric(ftype)) {
        char what[64];
        describe_type(ftype, what, sizeof what);
        H5Tclose(ftype);
        snn_err_set(err, "%s: %s holds %s, not a standard integer or IEEE float (corrupt file?)",
                    file_path, path, what);
        goto cleanup;
    }
    size_t fsize = H5Tget_size(ftype);
    H5Tclose(ftype);
    uint64_t stored = H5Dget_storage_size(dset);
    uint64_t claimed = fsize > 0 && n > UINT64_MAX / fsize ? UINT64_MAX : n * (uint64_t)fsize;
    if (claimed > H5IO_READ_UNCHECKED_BYTES && claimed / H5IO_MAX_GZIP_RATIO > stored) {
        char shape[128];
        format_shape(shape, sizeof shape, r, hd);
        snn_err_set(err, "%s: %s has shape %s but the file stores only %llu bytes of its data "
                    "(corrupt file?)", file_path, path, shape, (unsigned long long)stored);
        goto cleanup;
    }
    buf = snn_xmalloc((size_t)n * ti.size);
    /* HDF5 converts between numeric types (e.g. int32 in the file into double). */
    if (n > 0 && H5Dread(dset, ti.mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) goto hdf5_fail;
    *rank = r;
    for (int i = 0; i < 4; i++) dims[i] = i < r ? hd[i] : 0;
    *data = buf;
    buf = NULL;
    rc = SNN_OK;
    goto cleanup;

hdf5_fail: {
    h5_reason why = current_reason();
    snn_err_set(err, "%s: cannot read %s%s", file_path, path, why.text);
}
cleanup:
    free(buf);
    H5E_BEGIN_TRY {
        H5Sclose(space);
        H5Dclose(dset);
        H5Fclose(file);
    } H5E_END_TRY;
    return rc;
}

/* ---- checkpoints: reading ------------------------------------------------------------------- */

/* Problem classes in the order they are reported: the first problem found in this order is the
 * error line, the rest are counted (and listed in snn_h5_problems when asked for). */
enum { PROB_MISSING, PROB_EXTRA, PROB_SHAPE, PROB_DTYPE, PROB_NONFINITE, PROB__COUNT };

typedef struct problem_list {
    char **line;
    int *cls;
    size_t n, cap;
} problem_list;

static void add_problem(problem_list *pl, int cls, char *line) {
    if (pl->n == pl->cap) {
        pl->cap = pl->cap ? 2 * pl->cap : 16;
        pl->line = snn_xrealloc(pl->line, pl->cap * sizeof *pl->line);
        pl->cls = snn_xrealloc(pl->cls, pl->cap * sizeof *pl->cls);
    }
    pl->line[pl->n] = line;
    pl->cls[pl->n] = cls;
    pl->n++;
}

typedef struct member {
    char *name;
    int kind;
    int matched;
} member;

typedef struct member_list {
    member *v;
    size_t n, cap;
} member_list;

static herr_t collect_member(hid_t group, const char *name, const H5L_info_t *info, void *data) {
    (void)group;
    (void)info;
    member_list *ml = data;
    if (ml->n == ml->cap) {
        ml->cap = ml->cap ? 2 * ml->cap : 64;
        ml->v = snn_xrealloc(ml->v, ml->cap * sizeof *ml->v);
    }
    ml->v[ml->n++] = (member){snn_xstrdup(name), KIND_MISSING, 0};
    return 0;
}

static int member_cmp(const void *a, const void *b) {
    return strcmp(((const member *)a)->name, ((const member *)b)->name);
}

/* "float64", "int32", "uint8", "string", ... for refusal messages. */
static void describe_type(hid_t type, char *buf, size_t n) {
    size_t bits = H5Tget_size(type) * 8;
    switch (H5Tget_class(type)) {
    case H5T_FLOAT: snprintf(buf, n, "float%zu", bits); break;
    case H5T_INTEGER:
        snprintf(buf, n, "%sint%zu", H5Tget_sign(type) == H5T_SGN_NONE ? "u" : "", bits);
        break;
    case H5T_STRING: snprintf(buf, n, "a string"); break;
    case H5T_COMPOUND: snprintf(buf, n, "a compound type"); break;
    case H5T_ENUM: snprintf(buf, n, "an enum"); break;
    case H5T_ARRAY: snprintf(buf, n, "an array type"); break;
    case H5T_VLEN: snprintf(buf, n, "a variable-length type"); break;
    default: snprintf(buf, n, "a non-numeric type"); break;
    }
}

static int is_float32(hid_t type) {
    return H5Tequal(type, H5T_IEEE_F32LE) > 0 || H5Tequal(type, H5T_IEEE_F32BE) > 0;
}

/* Shape of a dataset in group: rank (-1 on error) and up to H5S_MAX_RANK dims. */
static int dataset_shape(hid_t dset, hsize_t *dims) {
    hid_t space = H5Dget_space(dset);
    if (space < 0) return -1;
    int r = H5Sget_simple_extent_ndims(space);
    if (r > 0 && H5Sget_simple_extent_dims(space, dims, NULL) < 0) r = -1;
    H5Sclose(space);
    return r;
}

void snn_h5_problems_free(snn_h5_problems *p) {
    if (!p) return;
    for (size_t i = 0; i < p->n; i++) free(p->lines[i]);
    free(p->lines);
    p->lines = NULL;
    p->n = 0;
}

int snn_h5_read_parameters_ex(const char *path, snn_tensor *tensors, size_t n,
                              snn_h5_problems *all, snn_err *err) {
    SNN_ASSERT(path && (n == 0 || tensors));
    if (all) *all = (snn_h5_problems){NULL, 0};
    hid_t file = H5I_INVALID_HID, group = H5I_INVALID_HID, dset = H5I_INVALID_HID;
    hid_t type = H5I_INVALID_HID;
    member_list ml = {NULL, 0, 0};
    problem_list pl = {NULL, NULL, 0, 0};
    int rc = SNN_ERR;
    char want[128], got[128], tname[64];
    hsize_t fdims[H5S_MAX_RANK];

    if ((file = snn_h5_open_readonly(path, err)) < 0) return SNN_ERR;
    if (object_kind(file, "/parameters") != KIND_GROUP) {
        snn_err_set(err, "%s: no /parameters group (not a spikesim checkpoint)", path);
        goto cleanup;
    }
    if ((group = H5Gopen2(file, "/parameters", H5P_DEFAULT)) < 0) goto hdf5_fail;
    if (H5Literate(group, H5_INDEX_NAME, H5_ITER_INC, NULL, collect_member, &ml) < 0)
        goto hdf5_fail;
    /* Sort ourselves: the name index order of old-style groups is not guaranteed to be strcmp
     * order, and bsearch needs exactly that. */
    qsort(ml.v, ml.n, sizeof *ml.v, member_cmp);
    for (size_t i = 0; i < ml.n; i++) ml.v[i].kind = object_kind(group, ml.v[i].name);

    /* Missing tensors and expected names that are not datasets. */
    for (size_t i = 0; i < n; i++) {
        snn_tensor *t = &tensors[i];
        SNN_ASSERT(t->name && t->rank >= 0 && t->rank <= 4);
        hsize_t wd[4];
        for (int d = 0; d < t->rank; d++) wd[d] = (hsize_t)t->dims[d];
        format_shape(want, sizeof want, t->rank, wd);
        member key = {(char *)t->name, 0, 0};
        member *m = ml.n ? bsearch(&key, ml.v, ml.n, sizeof *ml.v, member_cmp) : NULL;
        if (!m) {
            add_problem(&pl, PROB_MISSING,
                        snn_xasprintf("%s: missing tensor %s %s", path, t->name, want));
            continue;
        }
        m->matched = 1;
        if (m->kind != KIND_DATASET)
            add_problem(&pl, PROB_SHAPE,
                        snn_xasprintf("%s: %s is a %s in the file, the model expects a tensor %s",
                                      path, t->name, kind_name(m->kind), want));
    }
    /* Extra members, in name order. */
    for (size_t i = 0; i < ml.n; i++) {
        member *m = &ml.v[i];
        if (m->matched) continue;
        if (m->kind != KIND_DATASET) {
            add_problem(&pl, PROB_EXTRA,
                        snn_xasprintf("%s: unexpected %s %s in /parameters (not part of this model)",
                                      path, kind_name(m->kind), m->name));
            continue;
        }
        if ((dset = H5Dopen2(group, m->name, H5P_DEFAULT)) < 0) goto hdf5_fail;
        int r = dataset_shape(dset, fdims);
        H5Dclose(dset);
        dset = H5I_INVALID_HID;
        if (r < 0) goto hdf5_fail;
        format_shape(got, sizeof got, r, fdims);
        add_problem(&pl, PROB_EXTRA,
                    snn_xasprintf("%s: unexpected tensor %s %s (not part of this model)", path,
                                  m->name, got));
    }
    /* Shape, dtype and values of every expected tensor that is present. */
    for (size_t i = 0; i < n; i++) {
        snn_tensor *t = &tensors[i];
        member key = {(char *)t->name, 0, 0};
        member *m = ml.n ? bsearch(&key, ml.v, ml.n, sizeof *ml.v, member_cmp) : NULL;
        if (!m || m->kind != KIND_DATASET) continue;
        if ((dset = H5Dopen2(group, t->name, H5P_DEFAULT)) < 0) goto hdf5_fail;
        int r = dataset_shape(dset, fdims);
        if (r < 0) goto hdf5_fail;
        int same = r == t->rank;
        for (int d = 0; same && d < r; d++) same = fdims[d] == (hsize_t)t->dims[d];
        hsize_t wd[4];
        size_t count = 1;
        for (int d = 0; d < t->rank; d++) {
            wd[d] = (hsize_t)t->dims[d];
            count *= (size_t)t->dims[d];
        }
        if (!same) {
            format_shape(want, sizeof want, t->rank, wd);
            format_shape(got, sizeof got, r, fdims);
            add_problem(&pl, PROB_SHAPE,
                        snn_xasprintf("%s: %s has shape %s in the file, the model expects %s",
                                      path, t->name, got, want));
        } else {
            if ((type = H5Dget_type(dset)) < 0) goto hdf5_fail;
            if (!is_float32(type)) {
                describe_type(type, tname, sizeof tname);
                if (strcmp(tname, "float32") == 0) snprintf(tname, sizeof tname, "a non-IEEE float32");
                add_problem(&pl, PROB_DTYPE,
                            snn_xasprintf("%s: %s is %s, expected float32", path, t->name, tname));
            } else if (count > 0) {
                SNN_ASSERT(t->data);
                if (H5Dread(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t->data) < 0)
                    goto hdf5_fail;
                for (size_t k = 0; k < count; k++) {
                    if (!isfinite(t->data[k])) {
                        add_problem(&pl, PROB_NONFINITE,
                                    snn_xasprintf("%s: %s holds a non-finite value at index %zu",
                                                  path, t->name, k));
                        break;
                    }
                }
            }
            H5Tclose(type);
            type = H5I_INVALID_HID;
        }
        H5Dclose(dset);
        dset = H5I_INVALID_HID;
    }

    if (pl.n == 0) {
        rc = SNN_OK;
        goto cleanup;
    }
    /* Order the problems by class (stable: within a class, discovery order). */
    {
        char **ordered = snn_xmalloc(pl.n * sizeof *ordered);
        size_t k = 0;
        for (int c = 0; c < PROB__COUNT; c++)
            for (size_t i = 0; i < pl.n; i++)
                if (pl.cls[i] == c) ordered[k++] = pl.line[i];
        memcpy(pl.line, ordered, pl.n * sizeof *ordered);
        free(ordered);
        if (pl.n == 1) snn_err_set(err, "%s", pl.line[0]);
        else
            snn_err_set(err, "%s (and %zu more problem%s)", pl.line[0], pl.n - 1,
                        pl.n == 2 ? "" : "s");
        if (all) {
            all->lines = pl.line;
            all->n = pl.n;
            pl.line = NULL;
            pl.n = 0;
        }
    }
    goto cleanup;

hdf5_fail: {
    h5_reason why = current_reason();
    snn_err_set(err, "%s: cannot read /parameters%s", path, why.text);
}
cleanup:
    H5E_BEGIN_TRY {
        H5Tclose(type);
        H5Dclose(dset);
        H5Gclose(group);
        H5Fclose(file);
    } H5E_END_TRY;
    for (size_t i = 0; i < ml.n; i++) free(ml.v[i].name);
    free(ml.v);
    for (size_t i = 0; i < pl.n; i++) free(pl.line[i]);
    free(pl.line);
    free(pl.cls);
    return rc;
}

int snn_h5_read_parameters(const char *path, snn_tensor *tensors, size_t n, snn_err *err) {
    return snn_h5_read_parameters_ex(path, tensors, n, NULL, err);
}
