/*
 * omp_regions.c: where a run's thread time goes, OpenMP loop by loop (a profiling aid, not a
 * test). An LD_PRELOAD library that wraps libgomp's entry points for parallel regions
 * (GOMP_parallel, and the combined `parallel for schedule(dynamic)`), times every thread inside
 * every region, and at exit prints, per region (the compiler's outlined function, by name) and
 * team size: the calls, the threads' busy time summed, and the waste, the time threads spent
 * waiting at the region's end for the slowest one (team size x slowest - sum). Also the wall
 * time inside regions: the rest of the run was serial.
 *
 *   gcc -O2 -shared -fPIC -fopenmp tests/omp_regions.c -ldl -o build/omp_regions.so
 *   LD_PRELOAD=build/omp_regions.so build/spikesim bench configs/bench_cat.yaml --phase train
 *
 * Names come from addr2line on /proc/self/exe (static functions have no dynamic symbol); a
 * region libgomp enters another way (static schedules, reductions with their own entry points)
 * is not counted. docs/benchmarking.md, "Where the time goes, loop by loop".
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { MAX_THREADS = 64, MAX_REGIONS = 512 };

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct region_call {
    void (*fn)(void *);
    void *data;
    double busy[MAX_THREADS]; /* each thread's time inside fn */
} region_call;

typedef struct region_stats {
    void (*fn)(void *);
    int team;
    long calls;
    double busy, waste;
} region_stats;

static region_stats stats[MAX_REGIONS];
static int n_stats;
static double wall_inside;

static void timed(void *arg) {
    region_call *c = arg;
    const double t0 = now();
    c->fn(c->data);
    const int t = omp_get_thread_num();
    if (t < MAX_THREADS) c->busy[t] = now() - t0;
}

/* Regions start from the serial part of the program: no two account at once. */
static void account(const region_call *c, double wall) {
    int team = 0;
    double slowest = 0.0, sum = 0.0;
    for (int t = 0; t < MAX_THREADS; t++)
        if (c->busy[t] > 0.0) {
            team = t + 1;
            sum += c->busy[t];
            slowest = c->busy[t] > slowest ? c->busy[t] : slowest;
        }
    int k = 0;
    while (k < n_stats && !(stats[k].fn == c->fn && stats[k].team == team)) k++;
    if (k == n_stats) {
        if (n_stats == MAX_REGIONS) return;
        stats[n_stats++] = (region_stats){c->fn, team, 0, 0.0, 0.0};
    }
    stats[k].calls++;
    stats[k].busy += sum;
    stats[k].waste += team * slowest - sum;
    wall_inside += wall;
}

void GOMP_parallel(void (*fn)(void *), void *data, unsigned nt, unsigned flags) {
    static void (*real)(void (*)(void *), void *, unsigned, unsigned);
    if (!real) *(void **)&real = dlsym(RTLD_NEXT, "GOMP_parallel");
    region_call c = {fn, data, {0}};
    const double t0 = now();
    real(timed, &c, nt, flags);
    account(&c, now() - t0);
}

void GOMP_parallel_loop_nonmonotonic_dynamic(void (*fn)(void *), void *data, unsigned nt,
                                              long start, long end, long incr, long chunk,
                                              unsigned flags) {
    static void (*real)(void (*)(void *), void *, unsigned, long, long, long, long, unsigned);
    if (!real) *(void **)&real = dlsym(RTLD_NEXT, "GOMP_parallel_loop_nonmonotonic_dynamic");
    region_call c = {fn, data, {0}};
    const double t0 = now();
    real(timed, &c, nt, start, end, incr, chunk, flags);
    account(&c, now() - t0);
}

static int by_busy(const void *a, const void *b) {
    const double x = ((const region_stats *)a)->busy, y = ((const region_stats *)b)->busy;
    return (y > x) - (y < x);
}

/* The region's function name: addr2line on the executable (offset from its load address). */
static void name_of(void (*fn)(void *), char *buf, size_t n) {
    Dl_info info;
    snprintf(buf, n, "?");
    if (!dladdr((void *)(uintptr_t)fn, &info)) return;
    if (info.dli_sname) {
        snprintf(buf, n, "%s", info.dli_sname);
        return;
    }
    char cmd[512];
    snprintf(cmd, sizeof cmd, "addr2line -f -e '%s' 0x%lx 2>/dev/null", info.dli_fname,
             (unsigned long)((uintptr_t)fn - (uintptr_t)info.dli_fbase));
    FILE *p = popen(cmd, "r");
    if (!p) return;
    if (fgets(buf, (int)n, p)) buf[strcspn(buf, "\n")] = '\0';
    pclose(p);
}

__attribute__((destructor)) static void report(void) {
    qsort(stats, (size_t)n_stats, sizeof *stats, by_busy);
    double busy = 0.0, waste = 0.0;
    for (int k = 0; k < n_stats; k++) busy += stats[k].busy, waste += stats[k].waste;
    fprintf(stderr, "omp_regions: %d regions, busy %.3f s, waste %.3f s (%.1f %% of their "
            "thread time), wall time inside regions %.3f s\n", n_stats, busy, waste,
            busy + waste > 0 ? 100.0 * waste / (busy + waste) : 0.0, wall_inside);
    fprintf(stderr, "%10s %10s %8s %5s  %s\n", "busy ms", "waste ms", "calls", "team", "region");
    for (int k = 0; k < n_stats && k < 30; k++) {
        char name[256];
        name_of(stats[k].fn, name, sizeof name);
        fprintf(stderr, "%10.1f %10.1f %8ld %5d  %s\n", 1e3 * stats[k].busy, 1e3 * stats[k].waste,
                stats[k].calls, stats[k].team, name);
    }
}
