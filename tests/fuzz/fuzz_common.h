/*
 * fuzz_common.h: helpers shared by the libFuzzer targets in tests/fuzz (docs/fuzzing.md).
 *
 * The readers under test take file paths (the IDX loader opens through zlib, the checkpoint
 * reader through libhdf5, which also checks the signature with H5Fis_hdf5 first), so each input
 * goes into a temporary file on tmpfs (/dev/shm, or $FUZZ_TMPDIR) that is removed after the
 * run: the real path-based entry points are fuzzed, and nothing is written to disk. An input
 * that crashes leaves its file (spikesim-fuzz-<pid>-*); tests/fuzz/run.sh points FUZZ_TMPDIR
 * at a directory it removes. (A memfd
 * named /proc/self/fd/N does not do: H5Fopen resolves the link with realpath, which fails.)
 */
#ifndef SNN_FUZZ_COMMON_H
#define SNN_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

typedef struct fuzz_file {
    int fd;
    char path[256];
} fuzz_file;

/* Puts size bytes of data in a new temporary file; aborts on failure (the harness is broken,
 * not the input). fuzz_file_close removes it. */
void fuzz_file_open(fuzz_file *f, const uint8_t *data, size_t size);
void fuzz_file_close(fuzz_file *f);

#endif
