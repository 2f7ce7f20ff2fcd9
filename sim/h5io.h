/*
 * h5io.h: HDF5 writing and reading helpers, atomic output files and checkpoints.
 *
 * All files are written to a temporary name in the destination directory and renamed over the
 * destination only when complete (snn_h5_commit), so an interrupted or failed run leaves either
 * no file or the previous complete one. Datasets larger than a few KiB are chunked and
 * compressed with shuffle + gzip (deflate is built into every HDF5 reader: h5dump, HDFView,
 * h5py, h5web). Library version bounds are left at their defaults so HDF5 1.10 tools read the
 * files. HDF5's own error stack printing is switched off; failures come back as one line in
 * snn_err naming the file and object.
 *
 * Paths given to the writers are absolute inside the file ("/outputs/logits"); missing
 * intermediate groups are created.
 */
#ifndef SNN_H5IO_H
#define SNN_H5IO_H

#include <hdf5.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sim/util.h"

typedef struct snn_h5 {
    hid_t file;          /* H5I_INVALID_HID when closed */
    char *path;          /* final destination */
    char *tmp_path;      /* where the file is being written */
    int compression;     /* gzip level 0..9 used by snn_h5_write */
    int io_error;        /* internal: 1 after a failed HDF5 write, 2 after a failed flush */
} snn_h5;

/* Call once at program start, before any other HDF5 call (sim/main.c does). Switches off
 * HDF5's automatic error printing and its atexit shutdown: in HDF5 1.10 a file whose final
 * flush failed (full disk) cannot be closed, and the atexit shutdown would then crash the
 * process (segfault) after we have already reported the error. Every entry point below calls
 * it as well, which is enough when the first HDF5 use of the process goes through this module.
 * Idempotent. */
void snn_h5_init(void);

/* Creates a new HDF5 file at a temporary name next to path ("<dir>/.<base>.tmp.<pid>.<n>").
 * Fails (without touching path) if the directory is missing or not writable:
 *   "<path>: cannot create output file: No such file or directory".
 * compression is the gzip level 0..9 (0: no filters). */
int snn_h5_create(snn_h5 *h, const char *path, int compression, snn_err *err);
/* Flushes, closes and fsyncs the temporary file, renames it over path and fsyncs the directory.
 * Refused ("<path>: not written: an earlier write to it failed") after any failed HDF5 write
 * to this file. Either way the snn_h5 is finished afterwards (on failure the temporary file is removed and
 * an existing file at path is left as it was, unless the rename already happened); calling
 * snn_h5_abort after it is harmless. */
int snn_h5_commit(snn_h5 *h, snn_err *err);
/* Closes and removes the temporary file; safe on a zeroed or already closed snn_h5. */
void snn_h5_abort(snn_h5 *h);

typedef enum snn_h5_type {
    SNN_H5_F32, SNN_H5_F64, SNN_H5_I8, SNN_H5_U8, SNN_H5_I32, SNN_H5_I64, SNN_H5_U64
} snn_h5_type;

/* Writes an n-dimensional dataset (rank 1..4) at path; dims may be 0 (an empty dataset, data
 * may then be NULL). Chunked + shuffle + gzip when it holds at least 1024 elements and
 * compression > 0, contiguous otherwise. Chunks are at most ~1 MiB: rank 1 up to 262144
 * elements; rank >= 2 keeps the trailing dims whole with one leading index per chunk when a
 * row is 64 KiB..1 MiB (smaller rows are grouped to ~64 KiB, larger ones split along dim 1,
 * 2, ...). Writing over an existing object fails:
 *   "<file>: cannot write /outputs/logits: an object of that name already exists"
 * and HDF5 failures read "<file>: cannot write /outputs/logits[: OS reason]". */
int snn_h5_write(snn_h5 *h, const char *path, snn_h5_type type, int rank, const uint64_t *dims,
                 const void *data, snn_err *err);

/* Opens path read-only, refusing with one line when it is missing, a directory, unreadable or
 * not HDF5 ("run.h5: not an HDF5 file"). Returns the file id (the caller closes it with
 * H5Fclose) or H5I_INVALID_HID. */
hid_t snn_h5_open_readonly(const char *path, snn_err *err);

/* Whether a file datatype is one of HDF5's standard integers (8-64 bits, either sign and byte
 * order) or IEEE floats (32, 64 bits): the only numeric types any reader here lets libhdf5
 * convert (H5Dread / H5Aread into a native type). A corrupt file's other numeric types can make
 * the conversion read out of bounds. */
bool snn_h5_is_standard_numeric(hid_t type);

/* Creates the group at path (and its parents) if missing. */
int snn_h5_group(snn_h5 *h, const char *path, snn_err *err);

/* Scalar variable-length UTF-8 string dataset (used for /config). */
int snn_h5_write_text(snn_h5 *h, const char *path, const char *text, snn_err *err);

/* Attributes on the object (group or dataset) at path ("/" for the root); an existing
 * attribute of that name is replaced. Strings are variable-length UTF-8 scalars; numbers are
 * scalars (float64, int64); *_array attributes are 1-D. A missing object fails with
 *   "<file>: cannot write attribute units on /x: no such object". */
int snn_h5_attr_str(snn_h5 *h, const char *path, const char *name, const char *value,
                    snn_err *err);
int snn_h5_attr_f64(snn_h5 *h, const char *path, const char *name, double value, snn_err *err);
int snn_h5_attr_i64(snn_h5 *h, const char *path, const char *name, int64_t value, snn_err *err);
int snn_h5_attr_str_array(snn_h5 *h, const char *path, const char *name, int n,
                          const char *const *values, snn_err *err);

/* Dimension scales (HDF5 Dimension Scales, hdf5_hl; h5py exposes them as dset.dims):
 * snn_h5_set_scale makes the dataset at path a scale named label; snn_h5_attach_scale attaches
 * the scale at scale_path to dimension dim of the dataset at path. A scale cannot carry scales
 * itself. Errors name the file and both objects. */
int snn_h5_set_scale(snn_h5 *h, const char *path, const char *label, snn_err *err);
int snn_h5_attach_scale(snn_h5 *h, const char *path, const char *scale_path, int dim,
                        snn_err *err);

/* ---- checkpoints (spec section 4) ----------------------------------------------------------
 * Parameters live under /parameters/<name>, float32, PyTorch shapes, names exactly as a
 * PyTorch state_dict ("blocks.0.attn.q.weight"). */

typedef struct snn_tensor {
    const char *name;    /* state_dict name */
    int rank;            /* 1..4 */
    int64_t dims[4];
    float *data;         /* prod(dims) floats, owned by the caller */
} snn_tensor;

/* Writes every tensor under /parameters. */
int snn_h5_write_parameters(snn_h5 *h, const snn_tensor *tensors, size_t n, snn_err *err);

/* Reads /parameters of the checkpoint at path into tensors[i].data. The file must hold exactly
 * these names, float32, with these shapes. Refusals are one line naming the file; when there
 * are several problems the first in this order is reported and the others counted:
 *   "ckpt.h5: cannot open: No such file or directory"
 *   "ckpt.h5: not an HDF5 file"
 *   "ckpt.h5: no /parameters group (not a spikesim checkpoint)"
 *   "ckpt.h5: missing tensor blocks.0.attn.q.weight [64, 64]"
 *   "ckpt.h5: unexpected tensor blocks.9.attn.q.weight [64, 64] (not part of this model)"
 *   "ckpt.h5: blocks.0.attn.q.weight has shape [32, 64] in the file, the model expects [64, 64]"
 *   "ckpt.h5: blocks.0.attn.q.weight is float64, expected float32"
 *   "ckpt.h5: blocks.0.attn.q.weight holds a non-finite value at index 17"
 *   "... (and 3 more problems)"
 * On error nothing useful is left in data. */
int snn_h5_read_parameters(const char *path, snn_tensor *tensors, size_t n, snn_err *err);

/* Every problem of a refused checkpoint, one full line each, in the order above (for a
 * "--verbose" listing). Free with snn_h5_problems_free. */
typedef struct snn_h5_problems {
    char **lines;
    size_t n;
} snn_h5_problems;

/* snn_h5_read_parameters that also returns all problems in *all (when all is not NULL; it is
 * left empty on success and on errors that are not tensor mismatches). */
int snn_h5_read_parameters_ex(const char *path, snn_tensor *tensors, size_t n,
                              snn_h5_problems *all, snn_err *err);
void snn_h5_problems_free(snn_h5_problems *p);

/* ---- reading helpers (tests, inspection, golden files) ------------------------------------ */

/* 1 when the HDF5 file at file_path holds an object at path (its parent groups must exist or
 * the answer is 0), 0 when not or when the file cannot be opened. */
int snn_h5_exists(const char *file_path, const char *path);

/* Reads a whole dataset (rank 0..4) into a malloc'd buffer (free()), converting to the given
 * memory type; rank and dims are returned (unused dims set to 0; a scalar has rank 0 and one
 * element). Errors: "<file>: no dataset /x", "<file>: cannot read /x[: reason]", the open
 * errors of snn_h5_read_parameters, and for a dataset over 1 MiB that declares more data than
 * the file can hold even at gzip's best ratio (a corrupt file must not cost a huge allocation):
 * "<file>: /x has shape [1099511627776] but the file stores only 0 bytes of its data (corrupt
 * file?)". */
int snn_h5_read(const char *file_path, const char *path, snn_h5_type type, int *rank,
                uint64_t dims[4], void **data, snn_err *err);

#endif
