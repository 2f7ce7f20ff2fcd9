/* dist.c: see dist.h. The only file that includes <mpi.h>. */
#include "sim/dist.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "sim/util.h"

void snn_dist_share(int64_t n, int r, int P, int64_t *lo, int64_t *hi) {
    SNN_ASSERT(n >= 0 && P >= 1 && r >= 0 && r < P);
    *lo = n * r / P;
    *hi = n * (r + 1) / P;
}

#ifdef SNN_MPI
#include <mpi.h>

/* Values per gather round: bounds the scratch at P * CHUNK_BYTES however large v is. */
enum { CHUNK_BYTES = 1 << 22 };

void snn_dist_init(int *argc, char ***argv) {
    int provided;
    /* only the main thread calls MPI; OpenMP threads never do */
    MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
}

void snn_dist_finalize(void) { MPI_Finalize(); }

/* A program that never called snn_dist_init (the cmocka tests in an MPI=1 build) is one
 * process. */
static bool initialized(void) {
    int yes = 0;
    MPI_Initialized(&yes);
    return yes;
}

int snn_dist_rank(void) {
    int r = 0;
    if (initialized()) MPI_Comm_rank(MPI_COMM_WORLD, &r);
    return r;
}

int snn_dist_size(void) {
    int p = 1;
    if (initialized()) MPI_Comm_size(MPI_COMM_WORLD, &p);
    return p;
}

/* Ordered sum of n values of elem bytes with add(acc, x, n): gather every rank's chunk, then
 * add the ranks' chunks in rank order. */
static void ordered_sum(void *v, size_t n, size_t elem, MPI_Datatype type,
                        void (*add)(void *acc, const void *x, size_t n)) {
    const int P = snn_dist_size();
    if (P == 1 || n == 0) return;
    const size_t per = CHUNK_BYTES / elem;
    char *all = snn_xmalloc((size_t)P * (n < per ? n : per) * elem);
    for (size_t off = 0; off < n; off += per) {
        const size_t k = n - off < per ? n - off : per;
        char *mine = (char *)v + off * elem;
        MPI_Allgather(mine, (int)k, type, all, (int)k, type, MPI_COMM_WORLD);
        memcpy(mine, all, k * elem);
        for (int r = 1; r < P; r++) add(mine, all + (size_t)r * k * elem, k);
    }
    free(all);
}

static void add_f32(void *acc, const void *x, size_t n) {
    float *a = acc;
    const float *b = x;
    for (size_t i = 0; i < n; i++) a[i] += b[i];
}

static void add_f64(void *acc, const void *x, size_t n) {
    double *a = acc;
    const double *b = x;
    for (size_t i = 0; i < n; i++) a[i] += b[i];
}

static void add_i64(void *acc, const void *x, size_t n) {
    int64_t *a = acc;
    const int64_t *b = x;
    for (size_t i = 0; i < n; i++) a[i] += b[i];
}

void snn_dist_sum_f32(float *v, size_t n) { ordered_sum(v, n, sizeof *v, MPI_FLOAT, add_f32); }
void snn_dist_sum_f64(double *v, size_t n) { ordered_sum(v, n, sizeof *v, MPI_DOUBLE, add_f64); }
void snn_dist_sum_i64(int64_t *v, size_t n) { ordered_sum(v, n, sizeof *v, MPI_INT64_T, add_i64); }

void snn_dist_bcast(void *buf, size_t bytes, int root) {
    if (snn_dist_size() == 1) return;
    SNN_ASSERT(bytes <= (size_t)INT32_MAX);
    MPI_Bcast(buf, (int)bytes, MPI_BYTE, root, MPI_COMM_WORLD);
}

int snn_dist_first_failed(int failed) {
    int me = failed ? snn_dist_rank() : snn_dist_size(), first;
    if (snn_dist_size() == 1) return failed ? 0 : -1;
    MPI_Allreduce(&me, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    return first < snn_dist_size() ? first : -1;
}

#else /* one process */

void snn_dist_init(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
}

void snn_dist_finalize(void) {}
int snn_dist_rank(void) { return 0; }
int snn_dist_size(void) { return 1; }

void snn_dist_sum_f32(float *v, size_t n) {
    (void)v;
    (void)n;
}

void snn_dist_sum_f64(double *v, size_t n) {
    (void)v;
    (void)n;
}

void snn_dist_sum_i64(int64_t *v, size_t n) {
    (void)v;
    (void)n;
}

void snn_dist_bcast(void *buf, size_t bytes, int root) {
    (void)buf;
    (void)bytes;
    SNN_ASSERT(root == 0);
}

int snn_dist_first_failed(int failed) { return failed ? 0 : -1; }

#endif
