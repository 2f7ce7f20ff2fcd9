/* interrupt.c: see interrupt.h. */
#include "sim/interrupt.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define MAX_TRACKED 16

static volatile sig_atomic_t pending, deferring;
/* Read by the handler; written only by the thread that writes output files. */
static const char *volatile tracked[MAX_TRACKED];

static void say(const char *s) {
    ssize_t r = write(STDERR_FILENO, s, strlen(s));
    (void)r;
}

static void on_signal(int signo) {
    if (deferring && !pending) {
        pending = signo; /* touches no errno: the interrupted code's errno stays valid */
        return;
    }
    for (int i = 0; i < MAX_TRACKED; i++)
        if (tracked[i]) unlink(tracked[i]);
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
    return pending;
}

void snn_interrupt_defer(bool on) {
    deferring = on;
}

void snn_interrupt_track(const char *tmp_path) {
    for (int i = 0; i < MAX_TRACKED; i++) {
        if (!tracked[i]) {
            tracked[i] = tmp_path;
            return;
        }
    }
}

void snn_interrupt_untrack(const char *tmp_path) {
    for (int i = 0; i < MAX_TRACKED; i++)
        if (tracked[i] == tmp_path) tracked[i] = NULL;
}

const char *snn_interrupt_name(int signo) {
    static char buf[32];
    if (signo == SIGINT) return "SIGINT";
    if (signo == SIGTERM) return "SIGTERM";
    snprintf(buf, sizeof buf, "signal %d", signo);
    return buf;
}
