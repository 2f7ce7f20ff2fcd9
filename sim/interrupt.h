/*
 * interrupt.h: SIGINT and SIGTERM. A signal must never leave a partial output file behind, and
 * must not throw away hours of training:
 *   - by default (simulation, evaluation, compare, raster, ...) the handler removes every
 *     temporary output file still being written (the ones registered with snn_interrupt_track),
 *     prints "spikesim: interrupted by SIGINT; no output written" and _exits with 128 + signo
 *     (130 for SIGINT, 143 for SIGTERM); finished outputs were renamed into place and stay;
 *   - while training (snn_interrupt_defer(true)) the first signal only sets a flag, which the
 *     training loop polls between steps to write a resumable checkpoint and stop; a second
 *     signal takes the default path at once.
 * The handler only calls async-signal-safe functions (unlink, write, _exit).
 */
#ifndef SNN_INTERRUPT_H
#define SNN_INTERRUPT_H

#include <stdbool.h>

/* Installs the handlers for SIGINT and SIGTERM (sim/main.c does, once). Library users that do
 * not call it keep the default signal behaviour; tracking and polling then do nothing. */
void snn_interrupt_install(void);

/* The signal number received while deferring (0 when none). */
int snn_interrupt_pending(void);

/* Turns deferral on (training) or off. Turning it off does not clear a pending signal. */
void snn_interrupt_defer(bool on);

/* Registers a temporary output file for removal by the handler; untrack it before freeing the
 * string (after its rename or unlink). At most 16 at once; more are silently not tracked. */
void snn_interrupt_track(const char *tmp_path);
void snn_interrupt_untrack(const char *tmp_path);

/* "SIGINT", "SIGTERM" or "signal N" for the message lines. */
const char *snn_interrupt_name(int signo);

#endif
