/* lifecycle: what differs between the commands (apply, plan, destroy, rotate, status) in
 * running an item through the same pipeline: which entry point of a stage runs, the
 * reverse order of destroy, and rotate's commit phase (each stage's rotate_commit, in
 * pipeline order, once every stage of the item succeeded). */
#include <string.h>

#include "error.h"
#include "run.h"

int (*lifecycle_entry(const run *r, size_t s))(ol_stage *, ol_item *, void *) {
    const ol_plugin *d = r->plan->stages[s].plugin->desc;
    switch (r->plan->mode) {
    case OL_MODE_PLAN:
    case OL_MODE_STATUS:
        return DESC_FIELD(d, plan);
    case OL_MODE_DESTROY:
        return DESC_FIELD(d, destroy);
    case OL_MODE_ROTATE:
        return DESC_FIELD(d, rotate);
    default:
        return d->apply;
    }
}

void lifecycle_skip(ol_item *item, size_t s) {
    const char *why = NULL;
    ol_outcome outcome = OL_OUTCOME_UNCHANGED;
    switch (item->run->plan->mode) {
    case OL_MODE_PLAN:
    case OL_MODE_STATUS:
        why = "unknown: the stage cannot plan (its plugin has no plan)";
        break;
    case OL_MODE_DESTROY:
        outcome = OL_OUTCOME_ABSENT;
        why = "the stage creates nothing to remove (its plugin has no destroy)";
        break;
    default:
        break; /* rotate: the stage takes no part */
    }
    scheduler_complete(item, s, ST_DONE, outcome, why);
    item->again = 1;
}

static int stage_bad(const stage_run *sr) {
    return sr->status == ST_SKIPPED || (sr->status == ST_DONE && sr->outcome == OL_OUTCOME_FAILED);
}

/* Reverse order: s runs after every non-store stage that needs it, and only when they
 * succeeded (a user keeps its policy until the policy is gone). The key-creating stage runs
 * after every other non-store stage succeeded: a bucket refused for its objects (or its
 * owner) keeps the user, its keys and their secret, so nothing the data needs is lost
 * while the data stays. A store deletes the item's entry last, once the key-creating stage
 * removed the keys: a failed destroy never leaves a live key whose secret was thrown
 * away. */
int lifecycle_destroy_ready(const ol_item *item, size_t s, const char **failed) {
    const plan *p = item->run->plan;
    int ready = 1;
    for (size_t t = 0; t < p->n_stages; t++) {
        if (t == s || p->stages[t].is_store)
            continue;
        int depends = p->stages[s].is_store ||
                      (p->stages[s].creates_secrets && !p->stages[t].creates_secrets);
        for (size_t k = 0; !depends && k < p->stages[t].n_needs; k++)
            depends = p->stages[t].needs[k] == s;
        if (!depends)
            continue;
        const stage_run *tr = &item->stages[t];
        if (stage_bad(tr) && (!p->stages[s].is_store || p->stages[t].creates_secrets)) {
            *failed = run_stage_name(item->run, t);
            return -1;
        }
        if (tr->status != ST_DONE && tr->status != ST_SKIPPED)
            ready = 0;
    }
    return ready;
}

/* ---- rotate's commit phase -------------------------------------------------------------- */

static void commit_start(ol_item *item, size_t s) {
    run *r = item->run;
    ol_stage *stage = run_item_stage(item, s); /* a product's own instance, if it has one */
    stage_run *sr = &item->stages[s];
    sr->started = (double)uv_now(&r->loop) / 1000.0;
    int rc = DESC_FIELD(stage->ps->plugin->desc, rotate_commit)(stage, item, stage->state);
    if (rc < 0 && item->committing && item->commit_next == s + 1) {
        char why[160];
        snprintf(why, sizeof(why), "could not start: %s", ol_strerror(rc));
        lifecycle_commit_done(stage, item, OL_OUTCOME_FAILED, why);
    }
}

int lifecycle_commit(ol_item *item) {
    run *r = item->run;
    if (r->plan->mode != OL_MODE_ROTATE)
        return 0;
    if (item->committing)
        return 1;
    for (size_t s = 0; item->commit_next == 0 && s < r->plan->n_stages; s++)
        if (stage_bad(&item->stages[s]))
            return 0; /* something failed: the old key stays, a rerun resumes */
    while (item->commit_next < r->plan->n_stages) {
        size_t s = item->commit_next++;
        if (r->plan->stages[s].is_store ||
            DESC_FIELD(r->plan->stages[s].plugin->desc, rotate_commit) == NULL)
            continue;
        item->committing = 1;
        item->stages[s].status = ST_RUNNING;
        commit_start(item, s);
        return 1;
    }
    return 0;
}

void lifecycle_commit_done(ol_stage *stage, ol_item *item, ol_outcome outcome, const char *reason) {
    stage_run *sr = &item->stages[stage->index];
    if (sr->status != ST_RUNNING || item->commit_next != stage->index + 1) {
        run_log(stage, item, OL_LOG_ERROR, "plugin bug: done() for no rotate_commit in progress");
        return;
    }
    if (outcome < OL_OUTCOME_CREATED || outcome > OL_OUTCOME_ABSENT)
        outcome = OL_OUTCOME_FAILED, reason = "plugin bug: invalid outcome";
    if (outcome == OL_OUTCOME_FAILED && (reason == NULL || *reason == '\0'))
        reason = "failed (the stage gave no reason)";
    item->committing = 0;
    item->remaining++; /* scheduler_complete counts the step down again */
    scheduler_complete(item, stage->index, ST_DONE,
                       outcome == OL_OUTCOME_UPDATED ? REPORT_ROTATED : outcome, reason);
    if (outcome == OL_OUTCOME_FAILED)
        item->commit_next = item->run->plan->n_stages; /* later steps keep what they have */
    scheduler_advance(item);
}
