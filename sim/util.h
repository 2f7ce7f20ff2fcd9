/*
 * util.h: the three error mechanisms, checked allocation and small helpers.
 *
 * spikesim has three kinds of error and one mechanism for each:
 *   - programmer errors (a broken invariant, a shape mismatch between modules): SNN_ASSERT,
 *     always compiled in, prints file:line and aborts;
 *   - config errors: collected diagnostics in sim/config.c, exit code 2;
 *   - I/O and runtime errors: functions return SNN_OK / SNN_ERR and fill an snn_err with one
 *     line that names the file and the reason; the CLI prints it and exits 1.
 * Out-of-memory is treated as fatal (redis zmalloc, llm.c mallocCheck): snn_xmalloc prints the
 * size and the call site and aborts, so no caller checks for NULL.
 */
#ifndef SNN_UTIL_H
#define SNN_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define SNN_VERSION "0.1.0"

/* SNN_INTERRUPTED: stopped by SIGINT/SIGTERM after saving what can be resumed (interrupt.h). */
enum { SNN_OK = 0, SNN_ERR = -1, SNN_INTERRUPTED = -2 };

/* One-line error message for I/O and runtime failures ("file: reason"). */
typedef struct snn_err {
    char msg[1024];
} snn_err;

/* Formats msg into err (if err is not NULL) and returns SNN_ERR, so that call sites can write
 * `return snn_err_set(err, "%s: truncated file", path);`. */
int snn_err_set(snn_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

_Noreturn void snn_abort(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define SNN_ASSERT(x)                                                                           \
    do {                                                                                        \
        if (!(x)) snn_abort(__FILE__, __LINE__, "assertion failed: %s", #x);                    \
    } while (0)

void *snn_xmalloc_at(size_t n, const char *file, int line);
void *snn_xcalloc_at(size_t count, size_t size, const char *file, int line);
void *snn_xrealloc_at(void *p, size_t n, const char *file, int line);
char *snn_xstrdup_at(const char *s, const char *file, int line);
#define snn_xmalloc(n)      snn_xmalloc_at((n), __FILE__, __LINE__)
#define snn_xcalloc(c, s)   snn_xcalloc_at((c), (s), __FILE__, __LINE__)
#define snn_xrealloc(p, n)  snn_xrealloc_at((p), (n), __FILE__, __LINE__)
#define snn_xstrdup(s)      snn_xstrdup_at((s), __FILE__, __LINE__)

/* 64-byte aligned allocation for arenas; free with free(). */
void *snn_xaligned_at(size_t n, const char *file, int line);
#define snn_xaligned(n)     snn_xaligned_at((n), __FILE__, __LINE__)

/* malloc'd printf. */
char *snn_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *snn_xvasprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

/* Monotonic seconds. */
double snn_now(void);

/* A monotonic tick count for timing many short spans: the time-stamp counter on x86-64 (one
 * instruction; invariant, ticking at a constant rate on every core, on CPUs that Linux clocks
 * by it), nanoseconds of CLOCK_MONOTONIC elsewhere. A read costs 13 ns on the bench machine
 * against 36 ns for snn_now, whose cost a timed span includes. Convert to seconds by ticks
 * counted over a span that snn_now also times. */
uint64_t snn_ticks(void);

/* Current UTC time as ISO-8601 "YYYY-MM-DDTHH:MM:SSZ" into buf (at least 32 bytes). */
void snn_utc_iso8601(char *buf, size_t n);

/* Size of the chunks that split n items (rows, elements) for OpenMP: at most max each, and,
 * when there is more than one, a multiple of 4 of them, so that 2 or 4 threads get equal
 * shares (13 chunks on 2 threads left one thread idle 7 % of the time). It depends on n and
 * max alone, never on the thread count: results stay the same for any thread count. The chunk
 * is rounded up to `align` items (a power of two: whole vectors or cache lines). */
static inline size_t snn_par_chunk(size_t n, size_t max, size_t align) {
    if (n <= max) return n > 0 ? n : 1;
    size_t k = (n + max - 1) / max;
    k = (k + 3) / 4 * 4;
    const size_t c = (n + k - 1) / k;
    return (c + align - 1) / align * align;
}

#endif
