/* scheduler: items and the DAG of their stages. Items start from a timer, never from
 * inside a stage's callback, so a stage that completes synchronously cannot recurse
 * through the whole batch; a stage runs when its needs are done; each apply has a time
 * limit; the first Ctrl-C lets items in progress finish, the second stops at once. */
#include <string.h>

#include "error.h"
#include "itemlock.h"
#include "run.h"

/* A reason is one line a person reads, and may quote what a server or a program sent:
 * control characters become \xNN so it cannot forge lines or move the cursor. malloc'd. */
static char *escaped_line(const char *text) {
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
        n += *p < 0x20 || *p == 0x7f ? 4 : 1;
    char *out = malloc(n + 1), *o = out;
    if (out == NULL)
        return NULL;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            o += sprintf(o, "\\x%02x", *p);
        else
            *o++ = (char)*p;
    *o = '\0';
    return out;
}

/* ---- scheduling ------------------------------------------------------------------------- */

const char *run_stage_name(const run *r, size_t s) {
    return r->stages[s].ps->plugin->desc->name;
}

ol_stage *run_item_stage(const ol_item *item, size_t s) {
    return item->own != NULL && item->own[s] != NULL ? item->own[s] : &item->run->stages[s];
}

int run_item_uses(const ol_item *item, size_t s) {
    return plan_stage_applies(item->run->plan, item->product_index, s);
}

/* What an item needs while it runs. 0, or OL_ENOMEM. A store its product does not use is
 * done from the start, with no report line: its needers run as if it were absent. */
static int item_start(ol_item *item) {
    run *r = item->run;
    item->stages = calloc(r->plan->n_stages ? r->plan->n_stages : 1, sizeof(stage_run));
    if (item->stages == NULL)
        return OL_ENOMEM;
    item->remaining = r->plan->n_stages;
    for (size_t s = 0; s < r->plan->n_stages; s++) {
        item->stages[s].item = item;
        item->stages[s].index = s;
        if (!run_item_uses(item, s)) {
            item->stages[s].status = ST_DONE;
            item->stages[s].outcome = OL_OUTCOME_UNCHANGED;
            item->remaining--;
        }
    }
    item->started = 1;
    item->start_seq = ++r->starts;
    list_insert_tail(&r->live, &item->live);
    return 0;
}

void scheduler_item_release(ol_item *item) {
    for (size_t s = 0; item->stages != NULL && s < item->run->plan->n_stages; s++) {
        free(item->stages[s].reason);
        free(item->stages[s].verified);
    }
    free(item->stages);
    item->stages = NULL;
}

/* An ended item's last records (its stages' outcomes) only spare a later run some reads:
 * they are fsync'd (off the loop) with the next durable record or about this late, not one
 * fsync each. */
#define SCHEDULER_JOURNAL_SYNC_MS 1000u

/* The item's stages go at the next kick (not here: the stage whose completion ended the
 * item is still on the stack), unless a late completion may still come (keep). */
static void item_finish(ol_item *item) {
    run *r = item->run;
    item->finished = 1;
    if (item->locked) { /* its keys are stored (held-back puts are flushed by now) */
        itemlock_release(r->lock_fd, item->name);
        item->locked = 0;
    }
    if (journal_sync_due(r->journal, SCHEDULER_JOURNAL_SYNC_MS) != 0)
        run_print(r, "warning: could not fsync the journal %s\n", journal_path(r->journal));
    report_item(r->report, item->name, item->product, item->environment, item->region);
    item_bag_free(item);
    journal_forget(r->journal, item->name);
    list_remove(&item->live);
    if (!item->keep && item->find == NULL)
        list_insert_tail(&r->ended, &item->live);
    r->active--;
    r->finished++;
    scheduler_kick(r);
}

/* Nonzero (after logging why) when a completion names an item that has ended: a plugin
 * that completes twice, or after its time limit. */
int scheduler_item_ended(ol_stage *stage, const ol_item *item, const char *what) {
    if (item->stages != NULL)
        return 0;
    run_log(stage, item, OL_LOG_ERROR, "plugin bug: %s for an item that has ended; ignored", what);
    return 1;
}

void scheduler_complete(ol_item *item, size_t s, int status, ol_outcome outcome,
                        const char *reason) {
    run *r = item->run;
    stage_run *sr = &item->stages[s];
    if (sr->timer != NULL) {
        services_timer_stop(sr->timer);
        sr->timer = NULL;
    }
    sr->status = status;
    sr->outcome = outcome;
    free(sr->reason);
    sr->reason = reason ? escaped_line(reason) : NULL;
    if (sr->reason)
        run_mask(r, sr->reason);
    sr->finished = (double)uv_now(&r->loop) / 1000.0;
    item->remaining--;
    const char *sname = run_stage_name(r, s);
    report_stage(r->report, item->name, sname, status == ST_SKIPPED ? 0 : outcome, sr->reason,
                 sr->finished - sr->started);
    int converges = r->plan->mode == OL_MODE_APPLY || r->plan->mode == OL_MODE_ROTATE;
    if (status == ST_DONE && converges &&
        (outcome == OL_OUTCOME_CREATED || outcome == OL_OUTCOME_UPDATED))
        journal_append(r->journal, item->name, sname,
                       outcome == OL_OUTCOME_CREATED ? "stage_created" : "stage_updated", NULL,
                       sr->reason);
    else if (status == ST_DONE && outcome == OL_OUTCOME_DELETED)
        journal_append(r->journal, item->name, sname, "stage_deleted", NULL, sr->reason);
}

void scheduler_done(ol_stage *stage, ol_item *item, ol_outcome outcome, const char *reason) {
    if (stage == NULL || item == NULL || scheduler_item_ended(stage, item, "done()"))
        return;
    if (item->committing) {
        lifecycle_commit_done(stage, item, outcome, reason);
        return;
    }
    stage_run *sr = &item->stages[stage->index];
    if (sr->status != ST_RUNNING) {
        if (sr->status == ST_DONE && sr->outcome == OL_OUTCOME_FAILED) {
            /* Late (its time limit failed it): what the stage did meanwhile is worth knowing,
             * e.g. that it sent nothing more. */
            char *late = reason ? escaped_line(reason) : NULL;
            if (late != NULL)
                run_mask(item->run, late);
            run_log(stage, item, OL_LOG_ERROR,
                    "the stage completed after it had failed (its time limit?)%s%s; the item "
                    "stays failed",
                    late ? ": " : "", late ? late : "");
            free(late);
        } else {
            run_log(stage, item, OL_LOG_ERROR,
                    "plugin bug: done() called for a stage that is not running; ignored");
        }
        return;
    }
    if (outcome < OL_OUTCOME_CREATED || outcome > OL_OUTCOME_ABSENT ||
        ((outcome == OL_OUTCOME_DELETED || outcome == OL_OUTCOME_ABSENT) &&
         item->run->plan->mode != OL_MODE_DESTROY)) {
        outcome = OL_OUTCOME_FAILED;
        reason = "plugin bug: invalid outcome";
    }
    if (outcome == OL_OUTCOME_FAILED && (reason == NULL || *reason == '\0'))
        reason = "failed (the stage gave no reason)";
    scheduler_complete(item, stage->index, ST_DONE, outcome, reason);
    scheduler_advance(item);
}

/* 1: ready; 0: some need is not finished; -1: a need failed or was skipped. A secret store
 * waits for every need to finish but runs unless a key-creating stage failed: a key that
 * was created must be stored even when, say, the bucket stage failed. */
static int needs_state(const ol_item *item, const plan_stage *ps, const char **failed) {
    int ready = 1;
    for (size_t k = 0; k < ps->n_needs; k++) {
        const plan_stage *need = &item->run->plan->stages[ps->needs[k]];
        const stage_run *nr = &item->stages[ps->needs[k]];
        int bad =
            nr->status == ST_SKIPPED || (nr->status == ST_DONE && nr->outcome == OL_OUTCOME_FAILED);
        if (bad && (!ps->is_store || need->creates_secrets)) {
            *failed = need->plugin->desc->name;
            return -1;
        }
        if (nr->status != ST_DONE && nr->status != ST_SKIPPED)
            ready = 0;
    }
    return ready;
}

/* ---- time limits and AWS's rate ------------------------------------------------------------ */

void scheduler_on_rate_wait(void *owner, int waiting, void *arg) {
    ol_item *item = owner;
    run *r = arg;
    uint64_t now = uv_now(&r->loop);
    if (waiting) {
        if (item->rate_waits++ == 0)
            item->rate_wait_since = now;
    } else if (item->rate_waits > 0 && --item->rate_waits == 0) {
        item->rate_wait_ms += now - item->rate_wait_since;
    }
}

uint64_t scheduler_rate_wait_ms(const ol_item *item) {
    uint64_t ms = item->rate_wait_ms;
    if (item->rate_waits > 0)
        ms += uv_now(&item->run->loop) - item->rate_wait_since;
    return ms;
}

/* A stage's time limit is there to catch a hung program or a plugin that never completes.
 * Under throttling the host itself holds the item's requests back (the client-side rate
 * limiter's queue, the backoff after a throttled answer): with a high --concurrency under a
 * low quota that can take minutes per item, and it is not the stage's doing. */
void scheduler_rate_arm(stage_run *sr) {
    sr->rate_base = scheduler_rate_wait_ms(sr->item);
    sr->rate_excluded = 0;
}

uint64_t scheduler_rate_extension(stage_run *sr) {
    uint64_t now = scheduler_rate_wait_ms(sr->item);
    uint64_t more = now > sr->rate_base ? now - sr->rate_base : 0;
    sr->rate_base = now;
    sr->rate_excluded += more;
    return more;
}

static void on_stage_timeout(void *arg, int status) {
    stage_run *sr = arg;
    if (status != 0)
        return;
    sr->timer = NULL;
    ol_item *item = sr->item;
    if (sr->status != ST_RUNNING)
        return;
    uint64_t more = scheduler_rate_extension(sr);
    if (more > 0) {
        run_log(run_item_stage(item, sr->index), item, OL_LOG_DEBUG,
                "time limit extended by %.1f s, the time its AWS requests waited for AWS's rate "
                "(throttling)",
                (double)more / 1000.0);
        services_timer_start(item->run->svc, more, on_stage_timeout, sr, &sr->timer);
        return;
    }
    item->keep = 1; /* the stage may still call done() */
    const plan_stage *ps = &item->run->plan->stages[sr->index];
    char why[320], waited[96] = "";
    if (sr->rate_excluded > 0)
        snprintf(waited, sizeof(waited),
                 " (not counting %.1f s its requests waited for AWS's rate)",
                 (double)sr->rate_excluded / 1000.0);
    snprintf(why, sizeof(why),
             "stage '%s' did not complete within %.1f s%s for item %s; abandoned (a hung program, "
             "or a plugin that never completes); raise its \"timeout\" in the pipeline file if it "
             "needs longer",
             ps->plugin->desc->name, ps->timeout_ms / 1000.0, waited, item->name);
    run_log(run_item_stage(item, sr->index), item, OL_LOG_ERROR, "%s", why);
    scheduler_complete(item, sr->index, ST_DONE, OL_OUTCOME_FAILED, why);
    scheduler_advance(item);
}

/* ---- items --------------------------------------------------------------------------------- */

static void stage_start(ol_item *item, size_t s) {
    run *r = item->run;
    stage_run *sr = &item->stages[s];
    ol_stage *stage = run_item_stage(item, s);
    sr->status = ST_RUNNING;
    if (stage->ps->is_store) {
        if (r->plan->mode == OL_MODE_DESTROY)
            stores_destroy(item, s);
        else if (r->plan->mode == OL_MODE_PLAN || r->plan->mode == OL_MODE_STATUS)
            stores_inspect(item, s);
        else
            stores_apply(item, s);
        return;
    }
    int (*entry)(ol_stage *, ol_item *, void *) = lifecycle_entry(r, s);
    if (entry == NULL) {
        lifecycle_skip(item, s);
        return;
    }
    scheduler_rate_arm(sr);
    services_timer_start(r->svc, stage->ps->timeout_ms, on_stage_timeout, sr, &sr->timer);
    int rc = entry(stage, item, stage->state);
    if (rc < 0 && sr->status == ST_RUNNING) {
        char why[160];
        snprintf(why, sizeof(why), "could not start: %s", ol_strerror(rc));
        scheduler_complete(item, s, ST_DONE, OL_OUTCOME_FAILED, why);
        item->again = 1;
    }
}

void scheduler_advance(ol_item *item) {
    run *r = item->run;
    if (item->advancing) {
        item->again = 1;
        return;
    }
    item->advancing = 1;
    do {
        item->again = 0;
        for (size_t s = 0; s < r->plan->n_stages; s++) {
            stage_run *sr = &item->stages[s];
            const char *failed = NULL;
            if (sr->status != ST_PENDING)
                continue;
            int st = r->plan->mode == OL_MODE_DESTROY ? lifecycle_destroy_ready(item, s, &failed)
                                                      : needs_state(item, r->stages[s].ps, &failed);
            if (st == 0)
                continue;
            sr->started = (double)uv_now(&r->loop) / 1000.0;
            if (st < 0) {
                char why[160];
                snprintf(why, sizeof(why),
                         r->plan->mode == OL_MODE_DESTROY
                             ? "kept: '%s' must be removed first, and was not"
                             : "skipped: needs '%s', which did not succeed",
                         failed);
                scheduler_complete(item, s, ST_SKIPPED, OL_OUTCOME_FAILED, why);
                item->again = 1;
                continue;
            }
            stage_start(item, s);
        }
    } while (item->again);
    item->advancing = 0;
    if (item->remaining == 0 && !item->finished && !lifecycle_commit(item))
        item_finish(item);
    else if (!item->finished && item->store_ops > 0)
        stores_park_if_waiting(item);
}

void scheduler_end_run(run *r) {
    uv_close((uv_handle_t *)&r->kick, NULL);
    uv_close((uv_handle_t *)&r->sigint, NULL);
    uv_close((uv_handle_t *)&r->flush_tick, NULL);
    services_cancel_all(r->svc);
    pipeline_close_clients(r);
}

#define LOCK_RETRY_MS 200

static void item_run(run *r, ol_item *item) {
    if (item_start(item) != 0) {
        fprintf(stderr, "error: out of memory: item %s not run\n", item->name);
        return;
    }
    r->active++;
    scheduler_advance(item);
}

/* Item's lock (itemlock.h): 1 when it may start (held, or no lock is needed), 0 when another
 * opsline process holds it. A lock that cannot be taken at all is reported and not
 * needed: the item runs as it did before item locks. */
static int item_lock(run *r, ol_item *item) {
    if (r->lock_fd < 0 || item->locked)
        return 1;
    char *err = NULL;
    int rc = itemlock_try(r->lock_fd, item->name, &err);
    if (rc == 0)
        item->locked = 1;
    else if (rc < 0)
        run_print(r, "warning: %s; %s runs without it\n", err ? err : ol_strerror(rc), item->name);
    else if (!item->lock_told) {
        item->lock_told = 1;
        run_print(r, "info: %s: another opsline run is working on it; waiting\n", item->name);
    }
    free(err);
    return rc != 1;
}

/* Starts items while the concurrency allows: first those that waited for another process's
 * lock, in order, then new ones. */
static void start_items(run *r) {
    list_node *n, *tmp;
    list_foreach_safe(n, tmp, &r->lock_wait) {
        ol_item *item = list_entry(n, ol_item, live);
        if (r->interrupted || r->active >= r->plan->concurrency || r->parked >= PARK_MAX)
            return;
        if (!item_lock(r, item))
            continue;
        list_remove(n);
        list_init(n);
        item_run(r, item);
    }
    while (!r->interrupted && r->next_item < r->n_items && r->active < r->plan->concurrency &&
           r->parked < PARK_MAX) {
        ol_item *item = &r->items[r->next_item++];
        if (!item_lock(r, item)) {
            list_insert_tail(&r->lock_wait, &item->live);
            continue;
        }
        item_run(r, item);
    }
}

static void on_kick(uv_timer_t *t) {
    run *r = t->data;
    list_node *n, *tmp;
    list_foreach_safe(n, tmp, &r->ended) {
        list_remove(n);
        scheduler_item_release(list_entry(n, ol_item, live));
    }
    if (r->ending)
        return;
    start_items(r);
    int waiting = !r->interrupted && !list_empty(&r->lock_wait);
    if (r->active == 0 && r->parked == 0 && !waiting &&
        (r->next_item == r->n_items || r->interrupted))
        stores_finish_run(r);
    else
        stores_maybe_flush(r);
    if (waiting) /* another process holds some items: look again soon */
        uv_timer_start(&r->kick, on_kick, LOCK_RETRY_MS, 0);
}

void scheduler_kick(run *r) {
    uv_timer_start(&r->kick, on_kick, 0, 0);
}

/* Names what the run still waits for, so a hung stage can be found. */
static void print_waiting(const run *r) {
    size_t shown = 0;
    const list_node *n;
    list_foreach(n, &r->live) {
        const ol_item *it = list_entry(n, ol_item, live);
        for (size_t s = 0; s < r->plan->n_stages; s++)
            if (it->stages[s].status == ST_RUNNING || it->stages[s].op != OP_NONE) {
                if (shown++ < 20)
                    run_print(r, "opsline:   waiting for %s: stage '%s'%s\n", it->name,
                              run_stage_name(r, s), it->stages[s].op != OP_NONE ? " (store)" : "");
            }
    }
    if (shown > 20)
        run_print(r, "opsline:   ... and %zu more\n", shown - 20);
}

/* The first Ctrl-C: items in progress run to their end (stopping one between its stages
 * could leave an access key created whose secret no store holds); no new item starts. */
void scheduler_interrupt(run *r) {
    if (r->interrupted)
        return;
    r->interrupted = 1;
    run_print(r, "opsline: interrupted: finishing the items in progress; no new items "
                 "start (press Ctrl-C again to stop at once)\n");
    print_waiting(r);
    stores_maybe_flush(r);
}

void scheduler_on_sigint(uv_signal_t *h, int signum) {
    run *r = h->data;
    (void)signum;
    if (!r->interrupted) {
        scheduler_interrupt(r);
        return;
    }
    run_print(r, "opsline: stopping now\n");
    print_waiting(r);
    services_cancel_all(r->svc);
    uv_signal_stop(h);
    raise(SIGINT);
}
