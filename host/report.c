/* report: collects stage outcomes per item in a jansson tree, prints human lines as they
 * come, and at the end either a summary or the whole tree as JSON. */
#include "report.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "aws/aws.h"
#include "opsline/opsline.h"

struct report {
    int json, verbose;
    size_t n_items;
    json_t *items; /* name -> {"stages": [...]} in arrival order */
    json_t *order; /* array of finished item objects */
    int mode;      /* ol_mode */
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

void report_set_mode(report *r, int mode) {
    r->mode = mode;
}

size_t report_changes(const report *r) {
    return r->outcome_count[OL_OUTCOME_CREATED] + r->outcome_count[OL_OUTCOME_UPDATED];
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
    json_t *s = json_pack("{s:s, s:s, s:f}", "stage", stage, "outcome", oname, "seconds", seconds);
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
    if (r->json)
        return;
    FILE *out = outcome == OL_OUTCOME_FAILED ? stderr : stdout;
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

void report_item(report *r, const char *item, const char *product, const char *environment,
                 const char *region) {
    json_t *o = item_obj(r, item);
    if (o == NULL)
        return;
    int ok = 1;
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(o, "stages"), i, s) {
        const char *oc = json_string_value(json_object_get(s, "outcome"));
        if (oc && (strcmp(oc, "failed") == 0 || strcmp(oc, "skipped") == 0))
            ok = 0;
    }
    json_object_del(o, "pending_facts");
    json_object_set_new(o, "product", json_string(product));
    json_object_set_new(o, "environment", json_string(environment));
    json_object_set_new(o, "region", json_string(region));
    json_object_set_new(o, "ok", json_boolean(ok));
    json_array_append(r->order, o);
    if (ok)
        r->items_ok++;
    else
        r->items_failed++;
}

size_t report_finish(report *r, const aws_stats *st, int creds_rejected, int interrupted) {
    double secs = (double)(uv_hrtime() - r->start_ns) / 1e9;
    size_t not_run = r->n_items - r->items_ok - r->items_failed;
    if (r->json) {
        json_t *doc = json_pack(
            "{s:O, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:b, s:f}, "
            "s:{s:I, s:I, s:I, s:I}}",
            "items", r->order, "summary", "items", (json_int_t)r->n_items, "ok",
            (json_int_t)r->items_ok, "failed", (json_int_t)r->items_failed, "not_run",
            (json_int_t)not_run, "created", (json_int_t)r->outcome_count[OL_OUTCOME_CREATED],
            "updated", (json_int_t)r->outcome_count[OL_OUTCOME_UPDATED], "unchanged",
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
        if (doc != NULL && r->mode >= 0 && r->mode <= 4)
            json_object_set_new(doc, "command", json_string(commands[r->mode]));
        if (doc) {
            json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
            fputc('\n', stdout);
            json_decref(doc);
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
        printf("\n%zu item(s): %zu ok, %zu failed%s; stages: %zu created, %zu updated, %zu "
               "unchanged, %zu failed, %zu skipped; %lu AWS requests, %lu retries; %.1f s\n",
               r->n_items, r->items_ok, r->items_failed + not_run, not_run ? " or not run" : "",
               r->outcome_count[OL_OUTCOME_CREATED], r->outcome_count[OL_OUTCOME_UPDATED],
               r->outcome_count[OL_OUTCOME_UNCHANGED], r->outcome_count[OL_OUTCOME_FAILED],
               r->skipped, st->requests, st->retries, secs);
    }
    fflush(stdout);
    return r->items_failed + not_run;
}

void report_free(report *r) {
    if (r == NULL)
        return;
    json_decref(r->items);
    json_decref(r->order);
    free(r);
}
