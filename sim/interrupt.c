/* interrupt.c: see interrupt.h. */
#include "sim/interrupt.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define MAX_TRACKED 16

/* The kernel may run the handler on any thread (an OpenMP worker, OpenBLAS's pool), so the
 * state it shares with the main thread is atomic; lock-free atomics are async-signal-safe
 * (asserted below). tracked is written only by the thread that writes output files. */
static atomic_int pending, deferring;
static _Atomic(const char *) tracked[MAX_TRACKED];
_Static_assert(ATOMIC_INT_LOCK_FREE == 2 && ATOMIC_POINTER_LOCK_FREE == 2,
               "the signal handler needs lock-free atomics");

static void say(const char *s) {
    ssize_t r = write(STDERR_FILENO, s, strlen(s));
    (void)r;
}

static void on_signal(int signo) {
    int none = 0;
    /* the first signal while deferring only records itself (touches no errno) */
    if (atomic_load(&deferring) && atomic_compare_exchange_strong(&pending, &none, signo)) return;
    for (int i = 0; i < MAX_TRACKED; i++) {
        const char *path = atomic_load(&tracked[i]);
        if (path) unlink(path);
    }
    say("spikesim: interrupted by ");
    say(signo == SIGINT ? "SIGINT" : signo == SIGTERM ? "SIGTERM" : "a signal");
    say("; no output written\n");
    _exit(128 + signo);
}

void snn_interrupt_install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGINT);
    sigaddset(&sa.sa_mask, SIGTERM);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int snn_interrupt_pending(void) {
    return atomic_load(&pending);
}

void snn_interrupt_defer(bool on) {
    atomic_store(&deferring, on);
}

void snn_interrupt_track(const char *tmp_path) {
    for (int i = 0; i < MAX_TRACKED; i++) {
        if (!atomic_load(&tracked[i])) {
            atomic_store(&tracked[i], tmp_path);
            return;
        }
    }
}

void snn_interrupt_untrack(const char *tmp_path) {
    for (int i = 0; i < MAX_TRACKED; i++)
        if (atomic_load(&tracked[i]) == tmp_path) atomic_store(&tracked[i], NULL);
}

const char *snn_interrupt_name(int signo) {
    static char buf[32];
    if (signo == SIGINT) return "SIGINT";
    if (signo == SIGTERM) return "SIGTERM";
    snprintf(buf, sizeof buf, "signal %d", signo);
    return buf;
}
