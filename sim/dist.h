/*
 * dist.h: the processes of an MPI job (data-parallel training, distributed compare), behind
 * a small interface so that no other module needs MPI or #ifdefs.
 *
 * Built with `make MPI=1` (mpicc, -DSNN_MPI) these wrap MPI_COMM_WORLD; the default build has
 * one process: rank 0 of 1, and every collective is the identity. Collectives must be called
 * by every rank in the same order.
 *
 * Sums are ORDERED: every rank gathers every rank's values and adds them in rank order
 * (0, 1, ..., P-1), so the result is the same on every rank and does not depend on the MPI
 * library's reduction algorithm (MPI_Allreduce does not promise either for floating point).
 */
#ifndef SNN_DIST_H
#define SNN_DIST_H

#include <stddef.h>
#include <stdint.h>

/* MPI_Init (once, before anything else in main) and MPI_Finalize; no-ops without MPI. */
void snn_dist_init(int *argc, char ***argv);
void snn_dist_finalize(void);

/* This process's rank and the number of ranks (0 and 1 without MPI). */
int snn_dist_rank(void);
int snn_dist_size(void);

/* In place, on every rank: v[i] = sum over ranks r in rank order of rank r's v[i]. */
void snn_dist_sum_f32(float *v, size_t n);
void snn_dist_sum_f64(double *v, size_t n);
void snn_dist_sum_i64(int64_t *v, size_t n);

/* Copies root's bytes into every rank's buf. */
void snn_dist_bcast(void *buf, size_t bytes, int root);

/* The lowest rank whose flag is nonzero, or -1 when none is (every rank gets the same answer):
 * how the ranks agree that one of them failed and which one's message to report. */
int snn_dist_first_failed(int failed);

/* Rank r's share of n items split over P ranks: [*lo, *hi), contiguous, in rank order, sizes
 * differing by at most one. */
void snn_dist_share(int64_t n, int r, int P, int64_t *lo, int64_t *hi);

#endif
