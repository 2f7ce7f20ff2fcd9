/*
 * par.h: two-ended sharing of a loop's items among an OpenMP team.
 *
 *     snn_par_ends ends = snn_par_ends_of(n);
 *     #pragma omp parallel if (par)
 *     for (long i; (i = snn_par_ends_next(&ends)) >= 0;)
 *         ... item i ...
 *
 * With two threads, thread 0 takes the items from the front and thread 1 from the back until
 * they meet. Consecutive loops over the same rows (a layer's output, then the next layer's
 * input; the linear layers, then the attention over the same samples) so give each thread the
 * same end of the rows every time, which its own L2 still holds from the loop before, while
 * either thread can take up the other's slack. schedule(dynamic) hands out the next item to
 * whichever thread asks, so a row written on one core is read on the other; schedule(static)
 * keeps the rows but waits for the slower thread, which this VM stalls often (CAT inference,
 * docs/performance.md, twenty-first session). With more threads, even-numbered threads take
 * from the front and odd-numbered ones from the back.
 *
 * Which thread runs an item must never change what the item computes: results then do not
 * depend on the thread count or on who took what.
 */
#ifndef SNN_PAR_H
#define SNN_PAR_H

#include <stdatomic.h>
#include <stdint.h>

#include "sim/util.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* The items not taken yet: [front, back), front in the low 32 bits, back in the high 32. */
typedef struct snn_par_ends {
    _Atomic uint64_t ends;
} snn_par_ends;

/* Items [0, n), none taken yet (an initialiser: the value is copied before any thread runs). */
static inline snn_par_ends snn_par_ends_of(long n) {
    SNN_ASSERT(n >= 0 && n <= (long)INT32_MAX);
    snn_par_ends e;
    atomic_init(&e.ends, (uint64_t)n << 32);
    return e;
}

/* The calling thread's next item, or -1 when none is left. */
static inline long snn_par_ends_next(snn_par_ends *e) {
#ifdef _OPENMP
    const int from_back = omp_get_thread_num() & 1;
#else
    const int from_back = 0;
#endif
    uint64_t old = atomic_load_explicit(&e->ends, memory_order_relaxed);
    for (;;) {
        const uint32_t front = (uint32_t)old, back = (uint32_t)(old >> 32);
        if (front >= back) return -1;
        const uint32_t item = from_back ? back - 1 : front;
        const uint64_t taken =
            from_back ? ((uint64_t)item << 32) | front : ((uint64_t)back << 32) | (item + 1);
        if (atomic_compare_exchange_weak_explicit(&e->ends, &old, taken, memory_order_relaxed,
                                                  memory_order_relaxed))
            return (long)item;
    }
}

#endif
