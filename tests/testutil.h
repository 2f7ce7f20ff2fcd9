/* testutil.h: helpers shared by the cmocka test binaries. Include after <cmocka.h>'s
 * prerequisites (stdarg.h, stddef.h, setjmp.h, stdint.h). */
#ifndef SNN_TESTUTIL_H
#define SNN_TESTUTIL_H

#include <stddef.h>

/* Fails (cmocka fail_msg) unless |a[i] - b[i]| <= atol + rtol * |b[i]| for every i; the message
 * names the label, the first bad index, both values and the largest difference. */
void snn_assert_allclose(const float *a, const float *b, size_t n, double atol, double rtol,
                         const char *label);

/* Path of a scratch file unique to this process ("/tmp/spikesim-test-<pid>-<name>");
 * returned string is malloc'd. */
char *snn_test_tmp_path(const char *name);

/* The whole file at path, NUL-terminated (malloc'd; caller frees), or NULL if unreadable. */
char *snn_test_read_file(const char *path);

/* Writes text to a new file at path; returns 0 on success. */
int snn_test_write_file(const char *path, const void *data, size_t n);

#endif
