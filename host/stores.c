/* stores: secret stores driven by the host. A store stage puts the item's secret (new, or
 * recovered from another store) unless it is known to hold that key; secret_find reads
 * stores back before the key-creating stage would create a new key; stores may hold puts
 * back until flush, called when every item in progress waits on a store, at intervals,
 * and once at the end. Every operation has a time limit. */
#include <string.h>

#include "error.h"
#include "run.h"

/* ---- secret stores ---------------------------------------------------------------------- */

static void store_op_end(ol_item *item, size_t s, int result, const ol_secret *found,
                         const char *reason);

static void on_op_timeout(void *arg, int status) {
    stage_run *sr = arg;
    if (status != 0)
        return;
    sr->op_timer = NULL;
    uint64_t more = scheduler_rate_extension(sr); /* a store that calls AWS: see there */
    if (more > 0) {
        services_timer_start(sr->item->run->svc, more, on_op_timeout, sr, &sr->op_timer);
        return;
    }
    sr->item->keep = 1; /* the store may still call store_done() */
    const plan_stage *ps = &sr->item->run->plan->stages[sr->index];
    char why[256];
    snprintf(why, sizeof(why), "did not complete within %u s for item %s", ps->timeout_ms / 1000,
             sr->item->name);
    store_op_end(sr->item, sr->index, OL_ETIMEDOUT, NULL, why);
}

/* Starts one store operation; its end (store_done, a time limit, or a refusal to start)
 * always comes through store_op_end. */
/* An item whose put a store may hold until its next flush, and that has nothing else left
 * to run, gives its concurrency slot to the next item: a batch can then grow beyond
 * --concurrency, so a password database is unlocked once for many items. */
static void maybe_park(ol_item *item, size_t s) {
    run *r = item->run;
    if (r->stages[s].ps->plugin->desc->flush == NULL || item->parked || r->parked >= PARK_MAX)
        return;
    for (size_t k = 0; k < r->plan->n_stages; k++)
        if (!r->plan->stages[k].is_store && item->stages[k].status != ST_DONE &&
            item->stages[k].status != ST_SKIPPED)
            return;
    item->parked = 1;
    r->parked++;
    r->active--;
    scheduler_kick(r);
}

void stores_park_if_waiting(ol_item *item) {
    run *r = item->run;
    for (size_t s = 0; s < r->plan->n_stages && !item->parked; s++)
        if (r->plan->stages[s].is_store && item->stages[s].op == OP_PUT)
            maybe_park(item, s);
}

static void unpark(ol_item *item) {
    if (!item->parked)
        return;
    item->parked = 0;
    item->run->parked--;
    item->run->active++;
}

static void store_op_start(ol_item *item, size_t s, int op, const ol_secret *secret) {
    run *r = item->run;
    ol_stage *st = &r->stages[s];
    stage_run *sr = &item->stages[s];
    const ol_store_ops *ops = st->ps->plugin->desc->store;
    sr->op = op;
    st->ops_pending++;
    if (op == OP_PUT && st->puts_pending++ == 0)
        st->pending_since = uv_now(&r->loop);
    st->puts_since += op == OP_PUT;
    item->store_ops++;
    if (op == OP_PUT)
        maybe_park(item, s);
    scheduler_rate_arm(sr);
    services_timer_start(r->svc, st->ps->timeout_ms, on_op_timeout, sr, &sr->op_timer);
    int rc = OL_EINVAL;
    if (op == OP_PUT)
        rc = ops->put(st, item, st->state, secret);
    else if (op == OP_GET)
        rc = ops->get(st, item, st->state);
    else if (op == OP_DEL && ops->del != NULL)
        rc = ops->del(st, item, st->state);
    if (rc < 0 && sr->op == op) {
        char why[160];
        snprintf(why, sizeof(why), "could not start: %s", ol_strerror(rc));
        store_op_end(item, s, rc, NULL, why);
        return;
    }
    stores_maybe_flush(r);
}

static void find_next(find_ctx *f);
static void find_got(find_ctx *f, size_t s, int result, const ol_secret *found, const char *reason);

/* "<store>: <reason>", without naming the store twice when the reason already does. */
static void store_reason(char *buf, size_t size, const char *name, const char *reason, int result) {
    const char *text = reason && *reason ? reason : ol_strerror(result);
    size_t nl = strlen(name);
    int named = strncmp(text, name, nl) == 0 && text[nl] == ':';
    snprintf(buf, size, "%s%s%s", named ? "" : name, named ? "" : ": ", text);
}

static void store_put_done(ol_item *item, size_t s, int result, const char *reason) {
    run *r = item->run;
    stage_run *sr = &item->stages[s];
    if (sr->status != ST_RUNNING)
        return;
    const char *key_id = bag_get(&item->bag, OL_KEY_ACCESS_KEY_ID);
    /* Not fsync'd on its own: the store made the secret durable, and a record a power loss
     * takes away only costs a later run a read-back (secret_find finds the key in the store
     * and keeps it; a store that cannot give it back gets a new key, never an orphan, since
     * access_key_requested was fsync'd). The next durable record or flush carries it. */
    if (result == 0 && key_id != NULL &&
        journal_append(r->journal, item->name, run_stage_name(r, s), "secret_stored", key_id,
                       NULL) != 0) {
        result = OL_EIO;
        reason = "stored, but the journal could not record it";
    }
    if (result == 0) {
        run_checkpoint(item, "store.after_put");
        run_log(&r->stages[s], item, OL_LOG_INFO, "stored access key %s", key_id);
        scheduler_complete(item, s, ST_DONE, sr->replaced ? OL_OUTCOME_UPDATED : OL_OUTCOME_CREATED,
                           NULL);
    } else {
        char why[1024];
        store_reason(why, sizeof(why), run_stage_name(r, s), reason, result);
        scheduler_complete(item, s, ST_DONE, OL_OUTCOME_FAILED, why);
    }
    scheduler_advance(item);
}

/* ---- destroy, plan and status ----------------------------------------------------------- */

static void store_fail(ol_item *item, size_t s, int result, const char *reason) {
    char why[1024];
    store_reason(why, sizeof(why), run_stage_name(item->run, s), reason, result);
    scheduler_complete(item, s, ST_DONE, OL_OUTCOME_FAILED, why);
    scheduler_advance(item);
}

/* destroy: the entry was read (is there one?); delete it, or report it absent. */
static void destroy_got(ol_item *item, size_t s, int result, const char *reason) {
    if (item->stages[s].status != ST_RUNNING)
        return;
    if (result == OL_ENOENT) {
        scheduler_complete(item, s, ST_DONE, OL_OUTCOME_ABSENT, NULL);
        scheduler_advance(item);
    } else if (result != 0) {
        store_fail(item, s, result, reason);
    } else {
        store_op_start(item, s, OP_DEL, NULL);
    }
}

static void destroy_deleted(ol_item *item, size_t s, int result, const char *reason) {
    run *r = item->run;
    if (item->stages[s].status != ST_RUNNING)
        return;
    if (result != 0 && result != OL_ENOENT) {
        store_fail(item, s, result, reason);
        return;
    }
    /* Written now, fsync'd off the loop: a power loss that takes the record away only has
     * the next run find the entry gone when it reads it. */
    journal_append(r->journal, item->name, run_stage_name(r, s), "secret_deleted", NULL, NULL);
    journal_sync_soon(r->journal);
    run_log(&r->stages[s], item, OL_LOG_INFO, "deleted the item's entry");
    scheduler_complete(item, s, ST_DONE, OL_OUTCOME_DELETED, NULL);
    scheduler_advance(item);
}

/* plan and status: does the store hold the item's current key (iam.access_key_id, set by
 * the key-creating stage's plan)? */
static void inspect_got(ol_item *item, size_t s, int result, const ol_secret *found,
                        const char *reason) {
    run *r = item->run;
    if (item->stages[s].status != ST_RUNNING)
        return;
    if (result != 0 && result != OL_ENOENT) {
        store_fail(item, s, result, reason);
        return;
    }
    const char *want = bag_get(&item->bag, OL_KEY_ACCESS_KEY_ID);
    const char *have = result == 0 && found != NULL ? found->access_key_id : NULL;
    char why[256];
    ol_outcome outcome = OL_OUTCOME_UNCHANGED;
    if (have == NULL) {
        outcome = OL_OUTCOME_CREATED;
        snprintf(why, sizeof(why), "holds no secret for the item%s%s", want ? "; would store " : "",
                 want ? want : "");
    } else if (want == NULL || strcmp(want, have) != 0) {
        outcome = OL_OUTCOME_UPDATED;
        snprintf(why, sizeof(why), "holds access key %s, %s%s", have,
                 want ? "not the user's current key " : "a key the user no longer has",
                 want ? want : "");
    } else {
        snprintf(why, sizeof(why), "holds access key %s", have);
    }
    report_fact(r->report, item->name, run_stage_name(r, s), "holds", have ? have : "nothing");
    scheduler_complete(item, s, ST_DONE, outcome, why);
    scheduler_advance(item);
}

void stores_destroy(ol_item *item, size_t s) {
    if (item->run->plan->stages[s].plugin->desc->store->del == NULL) {
        scheduler_complete(item, s, ST_DONE, OL_OUTCOME_FAILED,
                           "this store cannot delete entries (its plugin has no del); remove "
                           "the item's entry by hand");
        scheduler_advance(item);
        return;
    }
    store_op_start(item, s, OP_GET, NULL);
}

void stores_inspect(ol_item *item, size_t s) {
    store_op_start(item, s, OP_GET, NULL);
}

static void store_op_end(ol_item *item, size_t s, int result, const ol_secret *found,
                         const char *reason) {
    run *r = item->run;
    ol_stage *st = &r->stages[s];
    stage_run *sr = &item->stages[s];
    int op = sr->op;
    if (op == OP_NONE)
        return;
    sr->op = OP_NONE;
    if (sr->op_timer != NULL) {
        services_timer_stop(sr->op_timer);
        sr->op_timer = NULL;
    }
    st->ops_pending--;
    if (op == OP_PUT)
        st->puts_pending--;
    item->store_ops--;
    unpark(item);
    if (op == OP_PUT)
        store_put_done(item, s, result, reason);
    else if (op == OP_GET && item->find != NULL)
        find_got(item->find, s, result, found, reason);
    else if (op == OP_GET && r->plan->mode == OL_MODE_DESTROY)
        destroy_got(item, s, result, reason);
    else if (op == OP_GET)
        inspect_got(item, s, result, found, reason);
    else if (op == OP_DEL)
        destroy_deleted(item, s, result, reason);
    stores_maybe_flush(r);
}

void stores_done(ol_stage *stage, ol_item *item, int result, const ol_secret *found,
                 const char *reason) {
    if (stage == NULL || item == NULL || scheduler_item_ended(stage, item, "store_done()"))
        return;
    if (item->stages[stage->index].op == OP_NONE) {
        run_log(stage, item, OL_LOG_ERROR,
                "store_done() for no operation in progress (after its time limit?); ignored");
        return;
    }
    if (found != NULL && found->struct_size < offsetof(ol_secret, secret_access_key) +
                                                  sizeof(found->secret_access_key))
        found = NULL;
    store_op_end(item, stage->index, result, found, reason);
}

static void iso_now(char *buf, size_t len) {
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* A store stage's turn: unchanged when the journal says it holds the item's key, else put
 * the secret the bag holds (new, or recovered from another store). */
void stores_apply(ol_item *item, size_t s) {
    run *r = item->run;
    stage_run *sr = &item->stages[s];
    const char *name = run_stage_name(r, s);
    const char *key_id = bag_get(&item->bag, OL_KEY_ACCESS_KEY_ID);
    const char *secret = bag_get(&item->bag, OL_KEY_SECRET_ACCESS_KEY);
    if (key_id == NULL) {
        scheduler_complete(item, s, ST_DONE, OL_OUTCOME_UNCHANGED, "no access key to store");
        scheduler_advance(item);
        return;
    }
    /* A verify store read this run is believed over the journal. */
    int holds = sr->verified != NULL ? strcmp(sr->verified, key_id) == 0
                                     : journal_count_stage(r->journal, item->name, name,
                                                           "secret_stored", key_id) > 0;
    if (holds) {
        scheduler_complete(item, s, ST_DONE, OL_OUTCOME_UNCHANGED, NULL);
        scheduler_advance(item);
        return;
    }
    if (secret == NULL) {
        char why[512];
        snprintf(why, sizeof(why),
                 "%s: the secret of access key %s is in no configured store that can give it "
                 "back; add the store that holds it to --secrets, or delete the key (aws iam "
                 "delete-access-key --user-name %s --access-key-id %s) and rerun",
                 name, key_id, item->name, key_id);
        scheduler_complete(item, s, ST_DONE, OL_OUTCOME_FAILED, why);
        scheduler_advance(item);
        return;
    }
    sr->replaced = journal_count_stage(r->journal, item->name, name, "secret_stored", NULL) > 0;
    const char *bucket = bag_get(&item->bag, OL_KEY_BUCKET_NAME);
    const char *user = bag_get(&item->bag, OL_KEY_IAM_USER);
    char created[32];
    iso_now(created, sizeof(created));
    ol_secret sec = {.struct_size = sizeof(ol_secret),
                     .access_key_id = key_id,
                     .secret_access_key = secret,
                     .region = item->region,
                     .bucket = bucket ? bucket : item->name,
                     .user = user ? user : item->name,
                     .created = created};
    store_op_start(item, s, OP_PUT, &sec);
}

/* ---- secret_find ------------------------------------------------------------------------ */

static int store_verifies(const run *r, size_t s) {
    const ol_store_ops *ops = r->plan->stages[s].plugin->desc->store;
    return ops != NULL && ops->struct_size >= offsetof(ol_store_ops, flags) + sizeof(ops->flags) &&
           (ops->flags & OL_STORE_VERIFY);
}

static void find_free(find_ctx *f) {
    for (size_t i = 0; i < f->n_keys; i++)
        free(f->keys[i]);
    free(f->keys);
    free(f->order);
    free(f->found);
    free(f->newer);
    free(f->reason);
    free(f);
}

/* A listed key is lost when every store that ever recorded it is configured and was read
 * this run without finding it, and no store failed to answer. */
static int key_lost(const find_ctx *f, const char *id) {
    run *r = f->item->run;
    if (f->reason != NULL || (f->found != NULL && strcmp(f->found, id) == 0) ||
        journal_count(r->journal, f->item->name, "secret_stored", id) == 0)
        return 0;
    size_t held_configured = 0;
    for (size_t s = 0; s < r->plan->n_stages; s++) {
        if (!r->plan->stages[s].is_store)
            continue;
        size_t n = journal_count_stage(r->journal, f->item->name, run_stage_name(r, s),
                                       "secret_stored", id);
        held_configured += n;
        if (n > 0 && !(store_verifies(r, s) && f->item->stages[s].verified != NULL &&
                       strcmp(f->item->stages[s].verified, id) != 0))
            return 0; /* a store that may still hold it, unread or not a verify store */
    }
    /* Records from stores not in this pipeline: the secret may live there. */
    return held_configured == journal_count(r->journal, f->item->name, "secret_stored", id);
}

static void find_finish(void *arg, int status) {
    find_ctx *f = arg;
    const char *lost[8];
    size_t n_lost = 0;
    for (size_t k = 0; status == 0 && k < f->n_keys && n_lost < 8; k++)
        if (key_lost(f, f->keys[k]))
            lost[n_lost++] = f->keys[k];
    f->item->find = NULL;
    f->cb(f->arg, status == 0 ? f->found : NULL, lost, n_lost, f->reason);
    find_free(f);
}

static int key_listed(const find_ctx *f, const char *id) {
    for (size_t i = 0; id != NULL && i < f->n_keys; i++)
        if (strcmp(f->keys[i], id) == 0)
            return 1;
    return 0;
}

/* A key of the user that opsline created after found and that a store took (malloc'd), or
 * NULL. The store that gave found missed the newest key (a run died between two stores'
 * puts, or ran with fewer stores): another store may give the newer one, which a rerun must
 * prefer, since the rotation that made it retires found. */
static char *newer_stored_key(const find_ctx *f, const char *found) {
    const run *r = f->item->run;
    const char *item = f->item->name;
    size_t mine = journal_last_seq(r->journal, item, "access_key_created", found);
    for (size_t k = 0; k < f->n_keys; k++) {
        const char *id = f->keys[k];
        if (strcmp(id, found) != 0 &&
            journal_last_seq(r->journal, item, "access_key_created", id) > mine &&
            journal_count(r->journal, item, "secret_stored", id) > 0)
            return strdup(id);
    }
    return NULL;
}

/* A key is in hand and no store is known to hold a newer one: reading more stores is
 * not needed. */
static int find_settled(const find_ctx *f) {
    return f->found != NULL && f->newer == NULL;
}

static void find_got(find_ctx *f, size_t s, int result, const ol_secret *found,
                     const char *reason) {
    ol_item *item = f->item;
    run *r = item->run;
    int verifying = store_verifies(r, s);
    if (verifying) {
        free(item->stages[s].verified);
        item->stages[s].verified =
            strdup(result == 0 && found && found->access_key_id ? found->access_key_id : "");
    }
    if (result == 0 && found != NULL && key_listed(f, found->access_key_id) &&
        found->secret_access_key != NULL && found->secret_access_key[0] != '\0' &&
        (f->found == NULL || (f->newer != NULL && strcmp(found->access_key_id, f->newer) == 0))) {
        if (item_bag_set(item, OL_KEY_ACCESS_KEY_ID, found->access_key_id, 0) == 0 &&
            item_bag_set(item, OL_KEY_SECRET_ACCESS_KEY, found->secret_access_key, OL_BAG_SECRET) ==
                0) {
            free(f->found);
            f->found = strdup(found->access_key_id);
            free(f->newer);
            f->newer = newer_stored_key(f, found->access_key_id);
            run_log(&r->stages[s], item, OL_LOG_DEBUG, "read back access key %s%s%s",
                    found->access_key_id, f->newer ? "; looking for the newer key " : "",
                    f->newer ? f->newer : "");
        }
    } else if (result != 0 && result != OL_ENOENT) {
        char one[1024];
        store_reason(one, sizeof(one), run_stage_name(r, s), reason, result);
        char *more = ol__format("%s%s%s", f->reason ? f->reason : "", f->reason ? "; " : "", one);
        if (more != NULL) {
            run_mask(r, more);
            free(f->reason);
            f->reason = more;
        }
    }
    /* This store holds it: its own stage has nothing to write. */
    if (result == 0 && found != NULL && key_listed(f, found->access_key_id) &&
        journal_count_stage(r->journal, item->name, run_stage_name(r, s), "secret_stored",
                            found->access_key_id) == 0)
        /* fsync'd off the loop; lost in a power loss, it costs the next run this read. */
        if (journal_append(r->journal, item->name, run_stage_name(r, s), "secret_stored",
                           found->access_key_id, "read back") == 0)
            journal_sync_soon(r->journal);
    if (find_settled(f) && !verifying) {
        services_timer_start(r->svc, 0, find_finish, f, NULL);
        return;
    }
    find_next(f);
}

static const char *held_everywhere(const find_ctx *f);

/* Reads the verify stores (all of them), then, unless a key's secret is already in hand or
 * the journal says every other store holds one, the other stores until one gives it. */
static void find_next(find_ctx *f) {
    ol_item *item = f->item;
    run *r = item->run;
    if (f->next < f->n_verify) {
        store_op_start(item, f->order[f->next++], OP_GET, NULL);
        return;
    }
    if (!f->checked) {
        f->checked = 1;
        if (f->force)
            ; /* secret_read: the secret itself is wanted, not the journal's word */
        else if (find_settled(f) || f->n_keys == 0)
            f->next = f->n_order;
        else if (f->found == NULL && f->n_order > f->n_verify) {
            /* Every non-verify store holds a key: enough when no verify store lacks it and
             * no store took a newer one. */
            const char *held = held_everywhere(f);
            int verify_lacks = 0;
            for (size_t k = 0; held != NULL && k < f->n_verify; k++) {
                const char *v = item->stages[f->order[k]].verified;
                verify_lacks |= v == NULL || strcmp(v, held) != 0;
            }
            char *newer = held != NULL ? newer_stored_key(f, held) : NULL;
            verify_lacks |= newer != NULL;
            free(newer);
            if (held != NULL && !verify_lacks) {
                f->found = strdup(held);
                item_bag_set(item, OL_KEY_ACCESS_KEY_ID, held, 0);
                f->next = f->n_order;
            }
        }
    }
    if (f->next >= f->n_order || find_settled(f)) {
        services_timer_start(r->svc, 0, find_finish, f, NULL);
        return;
    }
    store_op_start(item, f->order[f->next++], OP_GET, NULL);
}

/* Verify stores first (read on every run), then stores known to hold one of the keys (the
 * likeliest to answer), then the rest. A store the item's product does not use is read
 * only when the journal says it holds one of the keys (the product moved to other stores):
 * it can give the secret to the item's stores. */
static int find_plan(find_ctx *f) {
    run *r = f->item->run;
    f->order = calloc(r->plan->n_stages ? r->plan->n_stages : 1, sizeof(size_t));
    if (f->order == NULL)
        return OL_ENOMEM;
    for (size_t s = 0; s < r->plan->n_stages; s++)
        if (r->plan->stages[s].is_store && store_verifies(r, s) && run_item_uses(f->item, s))
            f->order[f->n_order++] = s;
    f->n_verify = f->n_order;
    for (int pass = 0; pass < 2; pass++)
        for (size_t s = 0; s < r->plan->n_stages; s++) {
            int used = run_item_uses(f->item, s);
            if (!r->plan->stages[s].is_store || (used && store_verifies(r, s)))
                continue;
            int holds = 0;
            for (size_t k = 0; k < f->n_keys && !holds; k++)
                holds = journal_count_stage(r->journal, f->item->name, run_stage_name(r, s),
                                            "secret_stored", f->keys[k]) > 0;
            if (holds == (pass == 0) && (used || holds))
                f->order[f->n_order++] = s;
        }
    return 0;
}

/* The newest key every non-verify store of the item is known (journal) to hold, or NULL. */
static const char *held_everywhere(const find_ctx *f) {
    run *r = f->item->run;
    const char *best = NULL;
    long long best_time = -1;
    for (size_t k = 0; k < f->n_keys; k++) {
        int all = 1;
        for (size_t s = 0; s < r->plan->n_stages && all; s++)
            if (r->plan->stages[s].is_store && !store_verifies(r, s) && run_item_uses(f->item, s))
                all = journal_count_stage(r->journal, f->item->name, run_stage_name(r, s),
                                          "secret_stored", f->keys[k]) > 0;
        long long t = journal_last_time(r->journal, f->item->name, "secret_stored", f->keys[k]);
        if (all && t > best_time) {
            best = f->keys[k];
            best_time = t;
        }
    }
    return best;
}

static void find_next_cb(void *arg, int status) {
    find_ctx *f = arg;
    if (status != 0) {
        f->next = f->n_order;
        free(f->found);
        f->found = NULL;
        find_finish(f, status);
        return;
    }
    find_next(f);
}

static int secret_find_start(ol_item *item, const char *const *key_ids, size_t n, ol_find_cb cb,
                             void *arg, int force);

int stores_secret_find(ol_item *item, const char *const *key_ids, size_t n, ol_find_cb cb,
                       void *arg) {
    return secret_find_start(item, key_ids, n, cb, arg, 0);
}

/* Every store is read (verify stores first) until one gives the key's secret back. */
int stores_secret_read(ol_item *item, const char *key_id, ol_find_cb cb, void *arg) {
    if (key_id == NULL)
        return OL_EINVAL;
    const char *bag_id = bag_get(&item->bag, OL_KEY_ACCESS_KEY_ID);
    if (bag_id != NULL && strcmp(bag_id, key_id) == 0 &&
        bag_get(&item->bag, OL_KEY_SECRET_ACCESS_KEY) != NULL)
        return secret_find_start(item, &key_id, 1, cb, arg, 2); /* in hand: read nothing */
    return secret_find_start(item, &key_id, 1, cb, arg, 1);
}

static int secret_find_start(ol_item *item, const char *const *key_ids, size_t n, ol_find_cb cb,
                             void *arg, int force) {
    if (item == NULL || cb == NULL || (n > 0 && key_ids == NULL) || item->find != NULL ||
        item->stages == NULL) /* the item has ended */
        return OL_EINVAL;
    find_ctx *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return OL_ENOMEM;
    f->item = item;
    f->cb = cb;
    f->arg = arg;
    f->keys = calloc(n ? n : 1, sizeof(char *));
    int rc = f->keys ? 0 : OL_ENOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if ((f->keys[i] = strdup(key_ids[i] ? key_ids[i] : "")) == NULL)
            rc = OL_ENOMEM;
        f->n_keys = i + 1;
    }
    if (rc == 0)
        rc = find_plan(f);
    if (rc != 0) {
        find_free(f);
        return rc;
    }
    item->find = f;
    f->force = force;
    if (force == 2) {
        f->found = strdup(key_ids[0]);
        f->next = f->n_verify = f->n_order;
        f->checked = 1;
    }
    if (n == 0)
        f->next = f->n_verify = f->n_order; /* no key: nothing to read */
    services_timer_start(item->run->svc, 0, find_next_cb, f, NULL);
    return 0;
}

/* ---- flush ------------------------------------------------------------------------------ */

static void on_flush_timeout(void *arg, int status) {
    ol_stage *st = arg;
    if (status != 0)
        return;
    st->flush_timer = NULL;
    run_print(st->run, "error: stage '%s': flush did not complete within %u s\n",
              st->ps->plugin->desc->name, st->ps->timeout_ms / 1000);
    st->flushing = 0;
    if (st->run->ending && st->run->final_flushes > 0 && --st->run->final_flushes == 0)
        scheduler_end_run(st->run);
}

static void stage_flush(ol_stage *st) {
    run *r = st->run;
    st->flushing = 1;
    st->puts_since = 0;
    services_timer_start(r->svc, st->ps->timeout_ms, on_flush_timeout, st, &st->flush_timer);
    int rc = st->ps->plugin->desc->flush(st, st->state);
    if (rc < 0 && st->flushing) {
        run_print(r, "error: stage '%s': flush could not start: %s\n", st->ps->plugin->desc->name,
                  ol_strerror(rc));
        services_timer_stop(st->flush_timer);
        st->flush_timer = NULL;
        st->flushing = 0;
        if (r->ending && r->final_flushes > 0 && --r->final_flushes == 0)
            scheduler_end_run(r);
    }
}

void stores_flush_done(ol_stage *st, int result, const char *reason) {
    if (st == NULL || !st->flushing) {
        run_log(st, NULL, OL_LOG_ERROR, "flush_done() with no flush in progress; ignored");
        return;
    }
    run *r = st->run;
    st->flushing = 0;
    if (st->flush_timer != NULL) {
        services_timer_stop(st->flush_timer);
        st->flush_timer = NULL;
    }
    if (result < 0)
        run_print(r, "error: stage '%s': flush failed: %s\n", st->ps->plugin->desc->name,
                  reason ? reason : ol_strerror(result));
    if (r->ending) {
        if (r->final_flushes > 0 && --r->final_flushes == 0)
            scheduler_end_run(r);
        return;
    }
    /* Not stores_maybe_flush here: a store that completes its flush inside flush() would recurse.
     * The kick looks again on the next loop turn. */
    scheduler_kick(r);
}

/* Held-back store work is flushed when nothing else can move: every item in progress waits
 * on a store and no new item can start. Only puts started since the stage's last flush
 * count: a put still running after a flush was not held back (the store completes it on
 * its own), and flushing again for it would spin the loop. */
/* Whether stage st has held-back puts that a flush would complete. */
static int flush_would_help(const ol_stage *st) {
    return st->ps->plugin->desc->flush != NULL && st->puts_since > 0 && st->puts_pending > 0 &&
           !st->flushing;
}

void stores_maybe_flush(run *r) {
    /* Most runs have no store that holds puts back (dotenv writes at once): then there is
     * nothing to flush, and no need to look at every item in progress. */
    int any = 0;
    for (size_t s = 0; s < r->plan->n_stages && !any; s++)
        any = flush_would_help(&r->stages[s]);
    if (!any)
        return;
    size_t waiting = 0;
    const list_node *n;
    list_foreach(n, &r->live) {
        const ol_item *it = list_entry(n, ol_item, live);
        waiting += (size_t)(!it->parked && it->store_ops > 0);
    }
    int stuck = (waiting > 0 || r->parked > 0) && waiting == r->active &&
                (r->next_item == r->n_items || r->active >= r->plan->concurrency ||
                 r->parked >= PARK_MAX || r->interrupted);
    for (size_t s = 0; stuck && s < r->plan->n_stages; s++)
        if (flush_would_help(&r->stages[s]))
            stage_flush(&r->stages[s]);
}

void stores_on_flush_tick(uv_timer_t *t) {
    run *r = t->data;
    uint64_t now = uv_now(&r->loop);
    for (size_t s = 0; s < r->plan->n_stages; s++) {
        ol_stage *st = &r->stages[s];
        if (st->ps->plugin->desc->flush != NULL && st->puts_since > 0 && st->puts_pending > 0 &&
            !st->flushing && now - st->pending_since >= FLUSH_INTERVAL_MS)
            stage_flush(st);
    }
}

/* Every item has finished: give each store its end-of-run flush, then close. */
void stores_finish_run(run *r) {
    r->ending = 1;
    for (size_t s = 0; s < r->plan->n_stages; s++)
        if (r->stages[s].ps->plugin->desc->flush != NULL && !r->stages[s].flushing)
            r->final_flushes++;
    if (r->final_flushes == 0) {
        scheduler_end_run(r);
        return;
    }
    size_t n = r->final_flushes;
    for (size_t s = 0; s < r->plan->n_stages && n > 0; s++)
        if (r->stages[s].ps->plugin->desc->flush != NULL && !r->stages[s].flushing) {
            n--;
            stage_flush(&r->stages[s]);
        }
}
