/* testutil.h: helpers shared by the cmocka test binaries. Include after <cmocka.h>'s
 * prerequisites (stdarg.h, stddef.h, setjmp.h, stdint.h). */
#ifndef SNN_TESTUTIL_H
#define SNN_TESTUTIL_H

#include <stdbool.h>
#include <stddef.h>

#include <hdf5.h>

/* Fails (cmocka fail_msg) unless |a[i] - b[i]| <= atol + rtol * |b[i]| for every i; the message
 * names the label, the first bad index, both values and the largest difference. */
void snn_assert_allclose(const float *a, const float *b, size_t n, double atol, double rtol,
                         const char *label);

/* Path of a scratch file unique to this process ("/tmp/spikesim-test-<pid>-<name>");
 * returned string is malloc'd. */
char *snn_test_tmp_path(const char *name);

/* The whole file at path, NUL-terminated (malloc'd; caller frees), or NULL if unreadable. */
char *snn_test_read_file(const char *path);
/* The same, binary: the whole file (NUL-terminated too) and its length; NULL when missing. */
char *snn_test_read_file_n(const char *path, size_t *len);
/* Whether path exists (any type). */
bool snn_test_exists(const char *path);
/* Newlines in s. */
int snn_test_count_lines(const char *s);

/* Writes text to a new file at path; returns 0 on success. */
int snn_test_write_file(const char *path, const void *data, size_t n);

/* Attribute name of the object at path obj in the open file f, as a double or as a malloc'd
 * copy of a variable-length UTF-8 string; fails the test when it is missing or unreadable. */
double snn_test_attr_f64(hid_t f, const char *obj, const char *name);
char *snn_test_attr_str(hid_t f, const char *obj, const char *name);

/* Removes a scratch directory and everything in it (rm -rf); returns 0 on success. */
int snn_test_remove_tree(const char *path);

/* One run of the built spikesim binary: its exit status (-1 when it did not exit) and its
 * whole stdout and stderr (malloc'd, never NULL after a run). */
typedef struct snn_test_cli {
    int status;
    char *out, *err;
} snn_test_cli;

/* Remembers where the binary is: BUILD/spikesim, next to the directory of this test binary
 * (argv0 is BUILD/tests/test_x). Call once from main before snn_test_cli_run. */
void snn_test_cli_locate(const char *argv0);

/* Runs `spikesim ARGS` through the shell (ARGS formatted like printf; stdin /dev/null) and
 * returns its status. r starts zeroed ({0}); each run frees what the previous one captured, so
 * one snn_test_cli_free at the end suffices. */
int snn_test_cli_run(snn_test_cli *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void snn_test_cli_free(snn_test_cli *r);

/* Starts `spikesim ARGS` (formatted like printf; run through `sh -c exec`, so the pid is
 * spikesim's own) in a child with stdin and stdout on /dev/null and stderr into the file
 * err_path. fsize_limit > 0 sets RLIMIT_FSIZE in the child with SIGXFSZ ignored, so a write past
 * that many bytes fails with EFBIG as on a full disk. Returns the pid. */
int snn_test_cli_spawn(const char *err_path, long fsize_limit, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Polls err_path until it contains needle (returns 0) or the child exits or timeout_s passes
 * (returns -1). */
int snn_test_cli_await(int pid, const char *err_path, const char *needle, double timeout_s);

/* Waits for the child: r->status is its exit code, or 256 + signo when a signal killed it;
 * r->err the whole of err_path (r->out ""). */
void snn_test_cli_reap(int pid, const char *err_path, snn_test_cli *r);

#endif
