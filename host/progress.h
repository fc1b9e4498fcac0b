/* progress: what a person watching a run sees while it goes on. On a terminal, one status
 * line on stderr (done/total, failed, in flight, requests/s, throttled, ETA) redrawn in
 * place at most ten times a second; every other line printed during the run goes through
 * progress_hide first, so output never tears it. Without a terminal, a plain line every
 * few seconds instead. */
#ifndef OL_PROGRESS_H
#define OL_PROGRESS_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

typedef enum { PROGRESS_NONE = 0, PROGRESS_TTY, PROGRESS_PLAIN } progress_mode;

#define PROGRESS_REDRAW_MS 100u           /* a terminal line: at most 10 redraws a second */
#define PROGRESS_PLAIN_INTERVAL_MS 10000u /* default period of plain lines */

typedef struct progress_counts {
    size_t total, done, failed, in_flight;
    unsigned long requests, throttled;
} progress_counts;

/* Fills *out with the run's counts now. */
typedef void (*progress_count_fn)(void *arg, progress_counts *out);

typedef struct progress progress;

/* The mode for stderr: PROGRESS_TTY on a terminal (TERM not "dumb"), else PROGRESS_PLAIN;
 * PROGRESS_NONE when quiet. *interval_ms: OPSLINE_PROGRESS_INTERVAL (seconds; 0 turns the
 * plain lines off) or the default. */
progress_mode progress_mode_for_stderr(int quiet, uint64_t *interval_ms);

/* Starts the display on loop (its timer does not keep the loop alive). 0, OL_ENOMEM; with
 * PROGRESS_NONE, 0 and *out NULL. Every function below accepts p == NULL. */
int progress_start(uv_loop_t *loop, progress_mode mode, uint64_t interval_ms, progress_count_fn fn,
                   void *arg, progress **out);
/* Erase the status line before writing anything to stdout or stderr; it is redrawn by the
 * next tick. */
void progress_hide(progress *p);
/* Erase the line for good and close the timer; p is freed when the loop closes it. */
void progress_stop(progress *p);

/* The status text for c after elapsed seconds at rate requests/s (no newline); colour:
 * ANSI red for a nonzero failed count. Returns the length written (truncated to n - 1). */
size_t progress_format(const progress_counts *c, double elapsed, double rate, int colour, char *buf,
                       size_t n);

#endif
