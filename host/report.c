/* report: collects stage outcomes per item in progress in a jansson tree, prints human lines
 * as they come (through the progress display, so they never tear its status line), and at
 * the end either a summary table with each failed item's reason or, with --json, one
 * document whose items were streamed as they finished. An item leaves memory when it is
 * reported (a failed one stays in human mode, for the summary), so a batch of thousands
 * costs what its items in progress cost. */
#include "report.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "aws/aws.h"
#include "opsline/opsline.h"

/* Durations in --json are rounded to milliseconds and printed with at most 15 significant
 * digits, so 0.102 reads 0.102 (not 0.10199999999997544). */
#define REPORT_JSON_FLAGS (JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15))

/* Items by their outcome: failed if a stage failed or was skipped, else created if a stage
 * created something, else updated, else unchanged. */
enum { ITEM_CREATED, ITEM_UPDATED, ITEM_UNCHANGED, ITEM_FAILED, ITEM_OUTCOMES };
static const char *const item_outcome_names[ITEM_OUTCOMES] = {"created", "updated", "unchanged",
                                                              "failed"};

struct report {
    int json, verbose, quiet;
    progress *progress;
    size_t item_count[ITEM_OUTCOMES];
    size_t n_items;
    json_t *items;     /* name -> {"stages": [...]}: the items in progress */
    json_t *order;     /* array of finished item objects not yet printed (human: failed ones) */
    size_t json_items; /* items already streamed to stdout (--json) */
    int mode;          /* ol_mode */
    size_t outcome_count[8];
    size_t skipped;
    size_t items_ok, items_failed;
    uint64_t start_ns;
};

static const char *outcome_name(int mode, int outcome) {
    static const char *const plan_names[] = {"skipped",   "would create", "would update",
                                             "no change", "failed",       "would delete",
                                             "absent",    "would rotate"};
    static const char *const status_names[] = {"skipped", "missing", "drift",  "ok",
                                               "failed",  "deleted", "absent", "rotated"};
    static const char *const names[] = {"skipped", "created", "updated", "unchanged",
                                        "failed",  "deleted", "absent",  "rotated"};
    if (outcome < 0 || outcome > 7)
        outcome = 0;
    if (mode == OL_MODE_PLAN)
        return plan_names[outcome];
    if (mode == OL_MODE_STATUS)
        return status_names[outcome];
    return names[outcome];
}

void report_set_mode(report *r, int mode) {
    r->mode = mode;
}

size_t report_changes(const report *r) {
    return r->outcome_count[OL_OUTCOME_CREATED] + r->outcome_count[OL_OUTCOME_UPDATED];
}

void report_set_quiet(report *r, int quiet) {
    r->quiet = quiet;
}

report *report_new(int json, int verbose, size_t n_items) {
    report *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->json = json;
    r->verbose = verbose;
    r->n_items = n_items;
    r->items = json_object();
    r->order = json_array();
    r->start_ns = uv_hrtime();
    if (r->items == NULL || r->order == NULL) {
        report_free(r);
        return NULL;
    }
    return r;
}

static json_t *item_obj(report *r, const char *item) {
    json_t *o = json_object_get(r->items, item);
    if (o == NULL) {
        o = json_pack("{s:s, s:[]}", "name", item, "stages");
        json_object_set_new(r->items, item, o);
    }
    return o;
}

void report_stage(report *r, const char *item, const char *stage, int outcome, const char *reason,
                  double seconds) {
    json_t *o = item_obj(r, item);
    const char *oname = outcome_name(r->mode, outcome);
    json_t *s = json_pack("{s:s, s:s, s:f}", "stage", stage, "outcome", oname, "seconds",
                          report_round_ms(seconds));
    if (o == NULL || s == NULL) {
        json_decref(s);
        return;
    }
    if (reason)
        json_object_set_new(s, "reason", json_string(reason));
    json_t *pending = json_object_get(o, "pending_facts");
    json_t *facts = pending ? json_object_get(pending, stage) : NULL;
    if (facts != NULL) {
        json_object_set(s, "facts", facts);
        json_object_del(pending, stage);
    }
    json_array_append_new(json_object_get(o, "stages"), s);
    if (outcome >= 1 && outcome <= 7)
        r->outcome_count[outcome]++;
    else
        r->skipped++;
    if (r->json || (r->quiet && outcome != OL_OUTCOME_FAILED))
        return;
    FILE *out = outcome == OL_OUTCOME_FAILED ? stderr : stdout;
    progress_hide(r->progress);
    if (reason)
        fprintf(out, "%-32s %-10s %-9s  %s\n", item, stage, oname, reason);
    else
        fprintf(out, "%-32s %-10s %s\n", item, stage, oname);
    const char *name;
    json_t *v;
    json_object_foreach(facts, name, v) {
        fprintf(out, "%-32s %-10s   %s: %s\n", "", "", name, json_string_value(v));
    }
    fflush(out);
}

void report_fact(report *r, const char *item, const char *stage, const char *name,
                 const char *value) {
    json_t *o = item_obj(r, item);
    if (o == NULL)
        return;
    json_t *pending = json_object_get(o, "pending_facts");
    if (pending == NULL) {
        pending = json_object();
        json_object_set_new(o, "pending_facts", pending);
    }
    json_t *facts = json_object_get(pending, stage);
    if (facts == NULL) {
        facts = json_object();
        json_object_set_new(pending, stage, facts);
    }
    json_object_set_new(facts, name, json_string(value));
}

/* jansson has no streaming writer: every value below is jansson's, only the punctuation of
 * the document around them is written here. A value is printed indented as
 * json_dumpf(doc, JSON_INDENT(2)) prints it at that depth: JSON strings hold no raw newline,
 * so each line break gets the depth's spaces. The prefix and the value go out in one fputs
 * (stdout is line-buffered: a character at a time would be a write per line). */
static void json_put(const char *prefix, const json_t *v, int depth) {
    char *text = json_dumps(v, REPORT_JSON_FLAGS);
    if (text == NULL)
        return;
    size_t lines = 0, len = strlen(prefix);
    for (const char *p = text; *p != '\0'; p++, len++)
        lines += *p == '\n';
    char *out = malloc(len + lines * 2 * (size_t)depth + 1);
    if (out != NULL) {
        char *o = stpcpy(out, prefix);
        for (const char *p = text; *p != '\0'; p++) {
            *o++ = *p;
            if (*p == '\n') {
                memset(o, ' ', 2 * (size_t)depth);
                o += 2 * (size_t)depth;
            }
        }
        *o = '\0';
        fputs(out, stdout);
        free(out);
    } else { /* out of memory: the same document, less indented */
        fputs(prefix, stdout);
        fputs(text, stdout);
    }
    free(text);
}

/* The document's head with the first item, then each item as it finishes. */
static void json_stream_item(report *r, const json_t *item) {
    json_put(r->json_items++ == 0 ? "{\n  \"items\": [\n    " : ",\n    ", item, 2);
}

void report_item(report *r, const char *item, const char *product, const char *environment,
                 const char *region) {
    json_t *o = item_obj(r, item);
    if (o == NULL)
        return;
    int created = 0, updated = 0, failed = 0;
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(o, "stages"), i, s) {
        const char *oc = json_string_value(json_object_get(s, "outcome"));
        failed |= oc && (strcmp(oc, "failed") == 0 || strcmp(oc, "skipped") == 0);
        created |= oc && strcmp(oc, "created") == 0;
        updated |= oc && strcmp(oc, "updated") == 0;
    }
    json_object_del(o, "pending_facts");
    int outcome = failed    ? ITEM_FAILED
                  : created ? ITEM_CREATED
                  : updated ? ITEM_UPDATED
                            : ITEM_UNCHANGED;
    json_object_set_new(o, "product", json_string(product));
    json_object_set_new(o, "environment", json_string(environment));
    json_object_set_new(o, "region", json_string(region));
    json_object_set_new(o, "ok", json_boolean(!failed));
    json_object_set_new(o, "outcome", json_string(item_outcome_names[outcome]));
    r->item_count[outcome]++;
    if (!failed)
        r->items_ok++;
    else
        r->items_failed++;
    json_incref(o);
    json_object_del(r->items, item);
    if (r->json)
        json_stream_item(r, o);
    else if (failed)
        json_array_append(r->order, o);
    json_decref(o);
}

double report_round_ms(double seconds) {
    if (!(seconds > 0.0) || seconds > 1e12) /* negative, NaN, absurd: as they are */
        return seconds > 0.0 ? seconds : 0.0;
    return (double)(long long)(seconds * 1000.0 + 0.5) / 1000.0;
}

size_t report_failed(const report *r) {
    return r->items_failed;
}

int report_progress_start(report *r, uv_loop_t *loop, progress_count_fn fn, void *arg) {
    uint64_t interval_ms;
    progress_mode mode = progress_mode_for_stderr(r->quiet, &interval_ms);
    return progress_start(loop, mode, interval_ms, fn, arg, &r->progress);
}

void report_log(report *r, const char *line) {
    if (r != NULL)
        progress_hide(r->progress);
    fputs(line, stderr);
    fflush(stderr);
}

/* The first failed stage's reason, else the first skipped one's (an item failed). */
static void failed_reason(const json_t *item, const char **stage, const char **reason) {
    size_t i;
    json_t *s;
    *stage = *reason = NULL;
    json_array_foreach(json_object_get(item, "stages"), i, s) {
        const char *oc = json_string_value(json_object_get(s, "outcome"));
        int is_failed = oc && strcmp(oc, "failed") == 0;
        if (oc && (is_failed || (strcmp(oc, "skipped") == 0 && *stage == NULL))) {
            *stage = json_string_value(json_object_get(s, "stage"));
            *reason = json_string_value(json_object_get(s, "reason"));
            if (is_failed)
                return;
        }
    }
}

/* The human summary: a table of items and stages by outcome, then each failed item with
 * its reason. */
static void print_summary(const report *r, const aws_stats *st, size_t not_run, double secs) {
    const size_t stage_count[ITEM_OUTCOMES] = {
        r->outcome_count[OL_OUTCOME_CREATED], r->outcome_count[OL_OUTCOME_UPDATED],
        r->outcome_count[OL_OUTCOME_UNCHANGED], r->outcome_count[OL_OUTCOME_FAILED]};
    printf("\nSummary: %zu item(s) in %.1f s; %lu AWS requests, %lu retries, %lu throttled\n",
           r->n_items, secs, st->requests, st->retries, st->throttled);
    printf("  %-10s %7s %7s\n", "outcome", "items", "stages");
    for (int k = 0; k < ITEM_OUTCOMES; k++)
        printf("  %-10s %7zu %7zu\n", item_outcome_names[k], r->item_count[k], stage_count[k]);
    printf("  %-10s %7s %7zu\n", "skipped", "-", r->skipped);
    if (not_run > 0)
        printf("  %-10s %7zu %7s\n", "not run", not_run, "-");
    if (r->items_failed == 0)
        return;
    printf("Failed items:\n");
    size_t i;
    json_t *o;
    json_array_foreach(r->order, i, o) {
        if (json_is_true(json_object_get(o, "ok")))
            continue;
        const char *stage, *reason;
        failed_reason(o, &stage, &reason);
        printf("  %-32s %s: %s\n", json_string_value(json_object_get(o, "name")),
               stage ? stage : "?", reason ? reason : "failed");
    }
}

size_t report_finish(report *r, const aws_stats *st, int creds_rejected, int interrupted) {
    double secs = report_round_ms((double)(uv_hrtime() - r->start_ns) / 1e9);
    size_t not_run = r->n_items - r->items_ok - r->items_failed;
    progress_stop(r->progress);
    r->progress = NULL;
    if (r->json) {
        json_t *doc = json_pack(
            "{s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:b, s:f}, "
            "s:{s:I, s:I, s:I, s:I}}",
            "summary", "items", (json_int_t)r->n_items, "ok", (json_int_t)r->items_ok, "failed",
            (json_int_t)r->items_failed, "not_run", (json_int_t)not_run, "created",
            (json_int_t)r->outcome_count[OL_OUTCOME_CREATED], "updated",
            (json_int_t)r->outcome_count[OL_OUTCOME_UPDATED], "unchanged",
            (json_int_t)r->outcome_count[OL_OUTCOME_UNCHANGED], "stage_failed",
            (json_int_t)r->outcome_count[OL_OUTCOME_FAILED], "skipped", (json_int_t)r->skipped,
            "credentials_rejected", creds_rejected, "interrupted", interrupted, "seconds", secs,
            "aws", "requests", (json_int_t)st->requests, "attempts", (json_int_t)st->attempts,
            "retries", (json_int_t)st->retries, "throttled", (json_int_t)st->throttled);
        static const char *const commands[] = {"apply", "plan", "destroy", "rotate", "status"};
        json_t *sum = doc ? json_object_get(doc, "summary") : NULL;
        for (int o = OL_OUTCOME_DELETED; sum != NULL && r->mode == OL_MODE_DESTROY && o <= 6; o++)
            json_object_set_new(sum, outcome_name(r->mode, o),
                                json_integer((json_int_t)r->outcome_count[o]));
        if (sum != NULL && r->mode == OL_MODE_ROTATE)
            json_object_set_new(sum, "rotated",
                                json_integer((json_int_t)r->outcome_count[REPORT_ROTATED]));
        if (sum != NULL && r->mode == OL_MODE_PLAN)
            json_object_set_new(sum, "changes", json_integer((json_int_t)report_changes(r)));
        if (doc) {
            json_put(r->json_items == 0 ? "{\n  \"items\": [],\n  \"summary\": "
                                        : "\n  ],\n  \"summary\": ",
                     json_object_get(doc, "summary"), 1);
            json_put(",\n  \"aws\": ", json_object_get(doc, "aws"), 1);
            if (r->mode >= 0 && r->mode <= 4)
                fprintf(stdout, ",\n  \"command\": \"%s\"", commands[r->mode]);
            fputs("\n}\n", stdout);
            json_decref(doc);
        } else if (r->json_items > 0) {
            fputs("\n  ]\n}\n", stdout); /* out of memory: at least a whole document */
        }
    } else if (r->mode != OL_MODE_APPLY) {
        printf("\n%zu item(s): %zu ok, %zu failed%s; stages:", r->n_items, r->items_ok,
               r->items_failed + not_run, not_run ? " or not run" : "");
        const char *sep = " ";
        for (int o = 1; o <= 7; o++)
            if (r->outcome_count[o] > 0) {
                printf("%s%zu %s", sep, r->outcome_count[o], outcome_name(r->mode, o));
                sep = ", ";
            }
        printf("%s%zu skipped; %lu AWS requests, %lu retries; %.1f s\n", sep, r->skipped,
               st->requests, st->retries, secs);
    } else {
        print_summary(r, st, not_run, secs);
    }
    fflush(stdout);
    return r->items_failed + not_run;
}

void report_free(report *r) {
    if (r == NULL)
        return;
    progress_stop(r->progress);
    json_decref(r->items);
    json_decref(r->order);
    free(r);
}
