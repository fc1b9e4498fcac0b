/* report: what a run tells its user. One line per item and stage as they finish (human),
 * a summary, or a single JSON document on stdout with --json. Never holds secrets: it only
 * receives names, outcomes and reasons the host has already masked. */
#ifndef OL_REPORT_H
#define OL_REPORT_H

#include <stddef.h>

#include <uv.h>

#include "progress.h"

struct aws_stats; /* aws/aws.h: the AWS client's request counters */

typedef struct report report;

/* A stage outcome the host reports on its own: rotate's commit step succeeded. */
#define REPORT_ROTATED 7

report *report_new(int json, int verbose, size_t n_items);
/* --quiet: no line for a stage that succeeded, no progress display; failures and the
 * summary still print. */
void report_set_quiet(report *r, int quiet);
/* Starts the progress display for stderr (progress_mode_for_stderr); fn counts the run. */
int report_progress_start(report *r, uv_loop_t *loop, progress_count_fn fn, void *arg);
/* Writes one whole line (with its newline) to stderr without tearing the status line. r may
 * be NULL (before the report exists). */
void report_log(report *r, const char *line);
/* Items that finished and failed so far. */
size_t report_failed(const report *r);
/* seconds rounded to milliseconds, as --json prints durations. */
double report_round_ms(double seconds);
/* The command (ol_mode) whose outcomes are reported: plan says "would create", destroy
 * "deleted" / "absent", status "missing" / "drift" / "ok". Default: apply. */
void report_set_mode(report *r, int mode);
/* A fact about the item (status): shown under the stage's next line, and in --json as the
 * stage's "facts" object. Copied. */
void report_fact(report *r, const char *item, const char *stage, const char *name,
                 const char *value);
/* plan and status: how many stages would change (created or updated outcomes). */
size_t report_changes(const report *r);
/* outcome 0: the stage was skipped (reason says why). seconds: how long it ran. */
void report_stage(report *r, const char *item, const char *stage, int outcome, const char *reason,
                  double seconds);
void report_item(report *r, const char *item, const char *product, const char *environment,
                 const char *region);
/* Stop the progress display, then print the summary (or the JSON document). creds_rejected: AWS
 * refused the run's credentials at the preflight (the JSON summary's "credentials_rejected").
 * Returns the number of items that failed or did not run. */
size_t report_finish(report *r, const struct aws_stats *stats, int creds_rejected, int interrupted);
void report_free(report *r);

#endif
