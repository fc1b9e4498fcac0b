/* pipeline: the run of a plan. One libuv loop drives every item; the host API table handed
 * to the stages is implemented here because each of its functions is a view on the run's
 * state (items, stages, journal, AWS client, services). Items start from a timer, never
 * from inside a stage's callback, so a stage that completes synchronously cannot recurse
 * through the whole batch.
 *
 * Secret stores have no apply: the host drives their put/get operations. A store stage
 * puts the item's new secret (or one recovered from another store) unless the journal
 * says the store already holds that key; secret_find recovers a key's secret from a store
 * that holds it so the key-creating stage creates no new key. Stores may hold puts back
 * until flush, which the host calls when every item in progress waits on a store, at
 * intervals, and once at the end. Every stage operation has a time limit. */
#include "pipeline.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "aws/aws.h"
#include "aws/xml.h"
#include "bag.h"
#include "error.h"
#include "journal.h"
#include "options.h"
#include "privfile.h"
#include "report.h"
#include "services.h"

enum { ST_PENDING = 0, ST_RUNNING, ST_DONE, ST_SKIPPED };
enum { OP_NONE = 0, OP_PUT, OP_GET, OP_DEL };

#define FLUSH_TICK_MS 1000u
#define FLUSH_INTERVAL_MS 2000u

typedef struct find_ctx find_ctx;

typedef struct stage_run {
    struct ol_item *item;
    size_t index;
    int status;
    ol_outcome outcome;
    char *reason;
    double started, finished;
    ol_timer *timer; /* the apply's time limit */
    int op;          /* store operation in progress (OP_*) */
    ol_timer *op_timer;
    int replaced;   /* store: held an older key of the item */
    char *verified; /* OL_STORE_VERIFY store: the key id it was read holding, "" none */
} stage_run;

struct ol_stage {
    struct run *run;
    const plan_stage *ps;
    size_t index;
    void *state;
    int initialised;
    size_t ops_pending;  /* store operations started, not completed */
    size_t puts_pending; /* of which puts: what a flush can complete */
    size_t puts_since;   /* puts started since the last flush began: worth a flush */
    uint64_t pending_since;
    int flushing;
    int preparing;
    ol_timer *flush_timer; /* also the time limit of prepare */
};

struct ol_item {
    struct run *run;
    size_t index;
    char *product, *environment, *name, *region;
    bag bag;
    stage_run *stages;
    int started, finished;
    int advancing, again;
    size_t remaining;
    size_t store_ops; /* store operations of this item in progress */
    find_ctx *find;
};

struct find_ctx {
    ol_item *item;
    char **keys;
    size_t n_keys;
    ol_find_cb cb;
    void *arg;
    size_t *order; /* store stage indexes to read, in order: OL_STORE_VERIFY ones first */
    size_t n_order, next, n_verify;
    int checked;  /* the journal's answer was considered after the verify reads */
    char *found;  /* key id found */
    char *reason; /* stores that could not be read */
};

typedef struct run {
    const plan *plan;
    uv_loop_t loop;
    uv_timer_t kick;
    uv_signal_t sigint;
    aws_client *aws;
    journal *journal;
    services *svc;
    uv_timer_t flush_tick;
    size_t prepares_pending;
    int prepare_failed;
    size_t final_flushes; /* end-of-run flushes still running */
    int ending;           /* every item finished: final flushes, then close */
    struct ol_stage *stages;
    struct ol_item *items;
    size_t n_items;
    size_t next_item;
    size_t active;
    size_t finished;
    int interrupted;
    int preflight_failed;
    int creds_rejected;
    aws_stats stats;
    char *region; /* the items' region, owned here: it outlives the AWS client */
    report *report;
} run;

static const ol_host host_api;

/* ---- logging --------------------------------------------------------------------------- */

static const char *level_name(ol_log_level level) {
    switch (level) {
    case OL_LOG_ERROR:
        return "error";
    case OL_LOG_WARN:
        return "warning";
    case OL_LOG_INFO:
        return "info";
    default:
        return "debug";
    }
}

static void mask_all(const run *r, char *text) {
    for (size_t i = 0; i < r->n_items; i++)
        if (r->items[i].started && !r->items[i].finished)
            bag_mask(&r->items[i].bag, text);
}

static void host_log(ol_stage *stage, const ol_item *item, ol_log_level level, const char *fmt,
                     ...) {
    run *r = stage ? stage->run : item ? item->run : NULL;
    va_list ap, ap2;
    if (r != NULL && level == OL_LOG_DEBUG && !r->plan->verbose)
        return;
    /* Format the whole line before masking: a fixed buffer could cut a secret in two, and
     * the cut-off part would no longer match and be printed. */
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (buf != NULL)
        vsnprintf(buf, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    if (buf == NULL)
        return;
    if (r != NULL)
        mask_all(r, buf);
    fprintf(stderr, "%s: %s%s%s%s%s\n", level_name(level), item ? item->name : "", item ? " " : "",
            stage ? stage->ps->plugin->desc->name : "", stage || item ? ": " : "", buf);
    free(buf);
}

/* ---- options and identity ------------------------------------------------------------- */

static const char *host_opt_string(ol_stage *s, const char *name) {
    return options_string(s->ps->opts, name);
}
static int host_opt_bool(ol_stage *s, const char *name) {
    return options_bool(s->ps->opts, name);
}
static long long host_opt_int(ol_stage *s, const char *name) {
    return options_int(s->ps->opts, name);
}
static size_t host_opt_list(ol_stage *s, const char *name, const char *const **out) {
    return options_list(s->ps->opts, name, out);
}
static size_t host_opt_map(ol_stage *s, const char *name, const ol_kv **out) {
    return options_map(s->ps->opts, name, out);
}
static int host_opt_is_set(ol_stage *s, const char *name) {
    return options_is_set(s->ps->opts, name);
}
static const char *host_item_product(const ol_item *i) {
    return i->product;
}
static const char *host_item_environment(const ol_item *i) {
    return i->environment;
}
static const char *host_item_name(const ol_item *i) {
    return i->name;
}
static const char *host_item_region(const ol_item *i) {
    return i->region;
}
static const char *host_item_get(const ol_item *i, const char *key) {
    return bag_get(&i->bag, key);
}
static int host_item_set(ol_item *i, const char *key, const char *value, unsigned flags) {
    return bag_set(&i->bag, key, value, flags);
}

/* ---- AWS ------------------------------------------------------------------------------- */

static void on_aws_log(void *arg, const char *line) {
    run *r = arg;
    if (r->plan->verbose)
        fprintf(stderr, "debug: %s\n", line);
}

#define AWS_REQUEST_V2_0_SIZE                                                                      \
    (offsetof(ol_aws_request, consistency_ms) + sizeof(((ol_aws_request *)0)->consistency_ms))

static int host_aws_send(ol_item *item, const ol_aws_request *req, ol_aws_cb cb, void *arg) {
    if (item == NULL || req == NULL || req->struct_size < AWS_REQUEST_V2_0_SIZE)
        return OL_EINVAL;
    ol_aws_request copy = *req;
    if (copy.region == NULL)
        copy.region = item->region;
    return aws_send(item->run->aws, &copy, cb, arg);
}

/* ---- 2.0 helpers ------------------------------------------------------------------------ */

static char *host_format(const char *fmt, ...) {
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (buf != NULL)
        vsnprintf(buf, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return buf;
}

static void host_free(void *p) {
    free(p);
}

static void host_wipe(void *p, size_t n) {
    if (p != NULL && n > 0)
        OPENSSL_cleanse(p, n);
}

static int host_read_private_file(const char *path, size_t max, char **out, size_t *len) {
    if (path == NULL || out == NULL || len == NULL)
        return OL_EINVAL;
    int rc = privfile_read(path, out, len);
    if (rc == 0 && *len > max) {
        OPENSSL_cleanse(*out, *len);
        free(*out);
        *out = NULL;
        return OL_ERANGE;
    }
    return rc;
}

/* Text a server sent, made safe for one line on a terminal: control characters become
 * \xNN, so an answer cannot forge lines or escape sequences. */
static void put_escaped(char *dst, size_t cap, size_t *off, const char *src) {
    for (const unsigned char *p = (const unsigned char *)src; p && *p && *off + 5 < cap; p++) {
        if (*p < 0x20 || *p == 0x7f)
            *off += (size_t)snprintf(dst + *off, cap - *off, "\\x%02x", *p);
        else
            dst[(*off)++] = (char)*p;
    }
    dst[*off] = '\0';
}

static char *host_aws_reason(const char *action, const ol_aws_response *res) {
    char buf[1024];
    size_t off = 0;
    buf[0] = '\0';
    put_escaped(buf, sizeof(buf), &off, action ? action : "request");
    put_escaped(buf, sizeof(buf), &off, " failed: ");
    if (res == NULL)
        return strdup(buf);
    if (res->result == OL_EAWS || res->error_code != NULL)
        put_escaped(buf, sizeof(buf), &off, res->error_code ? res->error_code : "error");
    else
        put_escaped(buf, sizeof(buf), &off, ol_strerror(res->result));
    if (res->error_message != NULL) {
        put_escaped(buf, sizeof(buf), &off, ": ");
        put_escaped(buf, sizeof(buf), &off, res->error_message);
    }
    char tail[256];
    if (res->status > 0)
        snprintf(tail, sizeof(tail), " (HTTP %ld%s", res->status,
                 res->request_id ? ", request id " : ")");
    else
        snprintf(tail, sizeof(tail), "%s", res->request_id ? " (request id " : "");
    put_escaped(buf, sizeof(buf), &off, tail);
    if (res->request_id != NULL) {
        put_escaped(buf, sizeof(buf), &off, res->request_id);
        put_escaped(buf, sizeof(buf), &off, ")");
    }
    return strdup(buf);
}

static int host_opt_bind(ol_stage *s, void *base) {
    if (s == NULL || base == NULL)
        return OL_EINVAL;
    return options_bind(s->ps->opts, base);
}

static const char *const placeholders[] = {"product", "environment", "bucket", "user", "region"};
#define N_PLACEHOLDERS (sizeof(placeholders) / sizeof(placeholders[0]))

static int host_expand(const ol_item *item, const char *tmpl, char **out, char **why) {
    const char *vals[N_PLACEHOLDERS] = {"p", "e", "b", "u", "r"};
    if (out == NULL || tmpl == NULL)
        return OL_EINVAL;
    *out = NULL;
    if (why)
        *why = NULL;
    if (item != NULL) {
        const char *bucket = bag_get(&item->bag, OL_KEY_BUCKET_NAME);
        const char *user = bag_get(&item->bag, OL_KEY_IAM_USER);
        vals[0] = item->product;
        vals[1] = item->environment;
        vals[2] = bucket ? bucket : item->name;
        vals[3] = user ? user : item->name;
        vals[4] = item->region;
    }
    size_t cap = strlen(tmpl) + 1;
    for (size_t i = 0; i < N_PLACEHOLDERS; i++)
        cap += strlen(vals[i]) * (strlen(tmpl) / 2 + 1);
    char *buf = malloc(cap), *o = buf;
    if (buf == NULL)
        return OL_ENOMEM;
    for (const char *p = tmpl; *p != '\0';) {
        if (*p == '}') {
            if (why)
                *why = host_format("'%s': unbalanced '}'", tmpl);
            goto bad;
        }
        if (*p != '{') {
            *o++ = *p++;
            continue;
        }
        const char *close = strchr(p, '}');
        size_t n = close ? (size_t)(close - p - 1) : 0, i;
        for (i = 0; close && i < N_PLACEHOLDERS; i++)
            if (strlen(placeholders[i]) == n && memcmp(placeholders[i], p + 1, n) == 0)
                break;
        if (close == NULL || i == N_PLACEHOLDERS) {
            if (why)
                *why = close ? host_format("'%s': unknown placeholder {%.*s}; use {product}, "
                                           "{environment}, {bucket}, {user} or {region}",
                                           tmpl, (int)(n < 64 ? n : 64), p + 1)
                             : host_format("'%s': unclosed '{'", tmpl);
            goto bad;
        }
        o += sprintf(o, "%s", vals[i]);
        p = close + 1;
    }
    *o = '\0';
    if (buf[0] == '\0') {
        if (why)
            *why = host_format("'%s' gives an empty path", tmpl);
        goto bad;
    }
    *out = buf;
    return 0;
bad:
    free(buf);
    return OL_EINVAL;
}

static const char *host_stage_name(const ol_stage *s) {
    return s ? s->ps->plugin->desc->name : NULL;
}

/* ---- 2.0 services ----------------------------------------------------------------------- */

static int reveals_secret(const run *r, const char *text);

static int host_proc_run(ol_stage *stage, const ol_item *item, const ol_proc_spec *spec,
                         ol_proc_cb cb, void *arg) {
    if (stage == NULL || spec == NULL || spec->argv == NULL)
        return OL_EINVAL;
    run *r = stage->run;
    for (size_t i = 0; spec->argv[i] != NULL; i++)
        if (reveals_secret(r, spec->argv[i]))
            goto secret;
    for (size_t i = 0; spec->env != NULL && spec->env[i] != NULL; i++)
        if (reveals_secret(r, spec->env[i]))
            goto secret;
    if (r->plan->verbose)
        host_log(stage, item, OL_LOG_DEBUG, "running %s", spec->argv[0]);
    return services_proc_run(r->svc, spec, cb, arg);
secret:
    host_log(stage, item, OL_LOG_ERROR,
             "plugin bug: refused to run %s with a secret on its command line or in its "
             "environment (secrets go on stdin)",
             spec->argv[0]);
    return OL_ESECRET;
}

static int host_work_queue(ol_stage *stage, ol_work_fn work, ol_after_work_cb after, void *arg) {
    return stage ? services_work(stage->run->svc, work, after, arg) : OL_EINVAL;
}

static int host_timer_start(ol_stage *stage, uint64_t ms, ol_timer_cb cb, void *arg,
                            ol_timer **out) {
    return stage ? services_timer_start(stage->run->svc, ms, cb, arg, out) : OL_EINVAL;
}

static int host_lock_acquire(ol_stage *stage, const char *resource, ol_lock_cb cb, void *arg) {
    return stage ? services_lock(stage->run->svc, resource, cb, arg) : OL_EINVAL;
}

/* ---- files and journal ------------------------------------------------------------------ */

static int host_write_private_file(const char *path, const char *data, size_t len) {
    return privfile_write(path, data, len);
}

static const char *stage_name(const ol_stage *s) {
    return s ? s->ps->plugin->desc->name : "host";
}

/* Nonzero when text contains a secret of any item in progress. The journal is a file that
 * outlives the run, so a plugin's mistake must not put a secret there. */
static int reveals_secret(const run *r, const char *text) {
    if (text == NULL)
        return 0;
    char *copy = strdup(text);
    if (copy == NULL)
        return 1;
    int found = 0;
    for (size_t i = 0; i < r->n_items && !found; i++)
        if (r->items[i].started && !r->items[i].finished)
            found = bag_mask(&r->items[i].bag, copy) > 0;
    free(copy); /* masked: it holds no secret any more */
    return found;
}

static int host_journal_append(ol_item *item, ol_stage *stage, const char *event, const char *id) {
    if (item == NULL || event == NULL)
        return OL_EINVAL;
    if (reveals_secret(item->run, event) || reveals_secret(item->run, id)) {
        host_log(stage, item, OL_LOG_ERROR, "plugin bug: refused to journal a secret");
        return OL_ESECRET;
    }
    return journal_append(item->run->journal, item->name, stage_name(stage), event, id, NULL);
}

static size_t host_journal_count(const ol_item *item, const char *event, const char *id) {
    return journal_count(item->run->journal, item->name, event, id);
}

static void run_interrupt(run *r);

/* Test hooks at named points: OPSLINE_TEST_KILL_AT dies there (a crash), and
 * OPSLINE_TEST_INTERRUPT_AT interrupts the run there exactly as a first Ctrl-C does, so a
 * test need not race a signal against the loop. */
static void host_checkpoint(const ol_item *item, const char *point) {
    const char *interrupt_at = getenv("OPSLINE_TEST_INTERRUPT_AT");
    if (item != NULL && point != NULL && interrupt_at != NULL && strcmp(interrupt_at, point) == 0)
        run_interrupt(item->run);
    const char *want = getenv("OPSLINE_TEST_KILL_AT");
    if (want == NULL || point == NULL || strcmp(want, point) != 0)
        return;
    fprintf(stderr, "opsline: test hook: killed at %s (%s)\n", point, item ? item->name : "");
    fflush(NULL);
    raise(SIGKILL);
}

/* ---- scheduling ------------------------------------------------------------------------- */

static void item_advance(ol_item *item);
static void run_kick(run *r);
static void maybe_flush(run *r);

static const char *sname_of(const run *r, size_t s) {
    return r->stages[s].ps->plugin->desc->name;
}

static void item_finish(ol_item *item) {
    run *r = item->run;
    item->finished = 1;
    if (journal_flush(r->journal) != 0)
        fprintf(stderr, "warning: could not fsync the journal %s\n", journal_path(r->journal));
    report_item(r->report, item->name, item->product, item->environment, item->region);
    bag_free(&item->bag);
    r->active--;
    r->finished++;
    run_kick(r);
}

static void stage_complete(ol_item *item, size_t s, int status, ol_outcome outcome,
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
    sr->reason = reason ? strdup(reason) : NULL;
    if (sr->reason)
        mask_all(r, sr->reason);
    sr->finished = (double)uv_now(&r->loop) / 1000.0;
    item->remaining--;
    const char *sname = sname_of(r, s);
    report_stage(r->report, item->name, sname, status == ST_SKIPPED ? 0 : outcome, sr->reason,
                 sr->finished - sr->started);
    if (status == ST_DONE && (outcome == OL_OUTCOME_CREATED || outcome == OL_OUTCOME_UPDATED))
        journal_append(r->journal, item->name, sname,
                       outcome == OL_OUTCOME_CREATED ? "stage_created" : "stage_updated", NULL,
                       sr->reason);
}

static void host_done(ol_stage *stage, ol_item *item, ol_outcome outcome, const char *reason) {
    if (stage == NULL || item == NULL)
        return;
    stage_run *sr = &item->stages[stage->index];
    if (sr->status != ST_RUNNING) {
        host_log(stage, item, OL_LOG_ERROR,
                 sr->status == ST_DONE && sr->outcome == OL_OUTCOME_FAILED
                     ? "done() called after the stage had failed (its time limit?); ignored"
                     : "plugin bug: done() called for a stage that is not running; ignored");
        return;
    }
    if (outcome < OL_OUTCOME_CREATED || outcome > OL_OUTCOME_FAILED) {
        outcome = OL_OUTCOME_FAILED;
        reason = "plugin bug: invalid outcome";
    }
    if (outcome == OL_OUTCOME_FAILED && (reason == NULL || *reason == '\0'))
        reason = "failed (the stage gave no reason)";
    stage_complete(item, stage->index, ST_DONE, outcome, reason);
    item_advance(item);
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

static void on_stage_timeout(void *arg, int status) {
    stage_run *sr = arg;
    if (status != 0)
        return;
    sr->timer = NULL;
    ol_item *item = sr->item;
    if (sr->status != ST_RUNNING)
        return;
    const plan_stage *ps = &item->run->plan->stages[sr->index];
    char why[256];
    snprintf(why, sizeof(why),
             "stage '%s' did not complete within %.1f s for item %s; abandoned (a hung program, or "
             "a plugin that never completes); raise its \"timeout\" in the pipeline file if it "
             "needs longer",
             ps->plugin->desc->name, ps->timeout_ms / 1000.0, item->name);
    host_log(&item->run->stages[sr->index], item, OL_LOG_ERROR, "%s", why);
    stage_complete(item, sr->index, ST_DONE, OL_OUTCOME_FAILED, why);
    item_advance(item);
}

/* ---- secret stores ---------------------------------------------------------------------- */

static void store_op_end(ol_item *item, size_t s, int result, const ol_secret *found,
                         const char *reason);

static void on_op_timeout(void *arg, int status) {
    stage_run *sr = arg;
    if (status != 0)
        return;
    sr->op_timer = NULL;
    const plan_stage *ps = &sr->item->run->plan->stages[sr->index];
    char why[256];
    snprintf(why, sizeof(why), "did not complete within %u s for item %s", ps->timeout_ms / 1000,
             sr->item->name);
    store_op_end(sr->item, sr->index, OL_ETIMEDOUT, NULL, why);
}

/* Starts one store operation; its end (store_done, a time limit, or a refusal to start)
 * always comes through store_op_end. */
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
    maybe_flush(r);
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
    if (result == 0 && key_id != NULL &&
        journal_append(r->journal, item->name, sname_of(r, s), "secret_stored", key_id, NULL) !=
            0) {
        result = OL_EIO;
        reason = "stored, but the journal could not record it";
    }
    if (result == 0) {
        host_log(&r->stages[s], item, OL_LOG_INFO, "stored access key %s", key_id);
        stage_complete(item, s, ST_DONE, sr->replaced ? OL_OUTCOME_UPDATED : OL_OUTCOME_CREATED,
                       NULL);
    } else {
        char why[1024];
        store_reason(why, sizeof(why), sname_of(r, s), reason, result);
        stage_complete(item, s, ST_DONE, OL_OUTCOME_FAILED, why);
    }
    item_advance(item);
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
    if (op == OP_PUT)
        store_put_done(item, s, result, reason);
    else if (op == OP_GET && item->find != NULL)
        find_got(item->find, s, result, found, reason);
    maybe_flush(r);
}

static void host_store_done(ol_stage *stage, ol_item *item, int result, const ol_secret *found,
                            const char *reason) {
    if (stage == NULL || item == NULL)
        return;
    if (item->stages[stage->index].op == OP_NONE) {
        host_log(stage, item, OL_LOG_ERROR,
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
static void store_apply(ol_item *item, size_t s) {
    run *r = item->run;
    stage_run *sr = &item->stages[s];
    const char *name = sname_of(r, s);
    const char *key_id = bag_get(&item->bag, OL_KEY_ACCESS_KEY_ID);
    const char *secret = bag_get(&item->bag, OL_KEY_SECRET_ACCESS_KEY);
    if (key_id == NULL) {
        stage_complete(item, s, ST_DONE, OL_OUTCOME_UNCHANGED, "no access key to store");
        item_advance(item);
        return;
    }
    /* A verify store read this run is believed over the journal. */
    int holds = sr->verified != NULL ? strcmp(sr->verified, key_id) == 0
                                     : journal_count_stage(r->journal, item->name, name,
                                                           "secret_stored", key_id) > 0;
    if (holds) {
        stage_complete(item, s, ST_DONE, OL_OUTCOME_UNCHANGED, NULL);
        item_advance(item);
        return;
    }
    if (secret == NULL) {
        char why[512];
        snprintf(why, sizeof(why),
                 "%s: the secret of access key %s is in no configured store that can give it "
                 "back; add the store that holds it to --secrets, or delete the key (aws iam "
                 "delete-access-key --user-name %s --access-key-id %s) and rerun",
                 name, key_id, item->name, key_id);
        stage_complete(item, s, ST_DONE, OL_OUTCOME_FAILED, why);
        item_advance(item);
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
        size_t n =
            journal_count_stage(r->journal, f->item->name, sname_of(r, s), "secret_stored", id);
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
        f->found == NULL) {
        if (bag_set(&item->bag, OL_KEY_ACCESS_KEY_ID, found->access_key_id, 0) == 0 &&
            bag_set(&item->bag, OL_KEY_SECRET_ACCESS_KEY, found->secret_access_key,
                    OL_BAG_SECRET) == 0) {
            f->found = strdup(found->access_key_id);
            host_log(&r->stages[s], item, OL_LOG_INFO, "read back access key %s",
                     found->access_key_id);
        }
    } else if (result != 0 && result != OL_ENOENT) {
        char one[1024];
        store_reason(one, sizeof(one), sname_of(r, s), reason, result);
        char *more = host_format("%s%s%s", f->reason ? f->reason : "", f->reason ? "; " : "", one);
        if (more != NULL) {
            mask_all(r, more);
            free(f->reason);
            f->reason = more;
        }
    }
    /* This store holds it: its own stage has nothing to write. */
    if (result == 0 && found != NULL && key_listed(f, found->access_key_id) &&
        journal_count_stage(r->journal, item->name, sname_of(r, s), "secret_stored",
                            found->access_key_id) == 0)
        journal_append(r->journal, item->name, sname_of(r, s), "secret_stored",
                       found->access_key_id, "read back");
    if (f->found != NULL && !verifying) {
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
        if (f->found != NULL || f->n_keys == 0)
            f->next = f->n_order;
        else if (f->n_order > f->n_verify) {
            /* Every non-verify store holds a key: enough when no verify store lacks it. */
            const char *held = held_everywhere(f);
            int verify_lacks = 0;
            for (size_t k = 0; held != NULL && k < f->n_verify; k++) {
                const char *v = item->stages[f->order[k]].verified;
                verify_lacks |= v == NULL || strcmp(v, held) != 0;
            }
            if (held != NULL && !verify_lacks) {
                f->found = strdup(held);
                bag_set(&item->bag, OL_KEY_ACCESS_KEY_ID, held, 0);
                f->next = f->n_order;
            }
        }
    }
    if (f->next >= f->n_order || f->found != NULL) {
        services_timer_start(r->svc, 0, find_finish, f, NULL);
        return;
    }
    store_op_start(item, f->order[f->next++], OP_GET, NULL);
}

/* Verify stores first (read on every run), then stores known to hold one of the keys (the
 * likeliest to answer), then the rest. */
static int find_plan(find_ctx *f) {
    run *r = f->item->run;
    f->order = calloc(r->plan->n_stages ? r->plan->n_stages : 1, sizeof(size_t));
    if (f->order == NULL)
        return OL_ENOMEM;
    for (size_t s = 0; s < r->plan->n_stages; s++)
        if (r->plan->stages[s].is_store && store_verifies(r, s))
            f->order[f->n_order++] = s;
    f->n_verify = f->n_order;
    for (int pass = 0; pass < 2; pass++)
        for (size_t s = 0; s < r->plan->n_stages; s++) {
            if (!r->plan->stages[s].is_store || store_verifies(r, s))
                continue;
            int holds = 0;
            for (size_t k = 0; k < f->n_keys && !holds; k++)
                holds = journal_count_stage(r->journal, f->item->name, sname_of(r, s),
                                            "secret_stored", f->keys[k]) > 0;
            if (holds == (pass == 0))
                f->order[f->n_order++] = s;
        }
    return 0;
}

/* The newest key every configured non-verify store is known (journal) to hold, or NULL. */
static const char *held_everywhere(const find_ctx *f) {
    run *r = f->item->run;
    const char *best = NULL;
    long long best_time = -1;
    for (size_t k = 0; k < f->n_keys; k++) {
        int all = 1;
        for (size_t s = 0; s < r->plan->n_stages && all; s++)
            if (r->plan->stages[s].is_store && !store_verifies(r, s))
                all = journal_count_stage(r->journal, f->item->name, sname_of(r, s),
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

static int host_secret_find(ol_item *item, const char *const *key_ids, size_t n, ol_find_cb cb,
                            void *arg) {
    if (item == NULL || cb == NULL || (n > 0 && key_ids == NULL) || item->find != NULL)
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
    if (n == 0)
        f->next = f->n_verify = f->n_order; /* no key: nothing to read */
    services_timer_start(item->run->svc, 0, find_next_cb, f, NULL);
    return 0;
}

/* ---- flush ------------------------------------------------------------------------------ */

static void end_run(run *r);

static void on_flush_timeout(void *arg, int status) {
    ol_stage *st = arg;
    if (status != 0)
        return;
    st->flush_timer = NULL;
    fprintf(stderr, "error: stage '%s': flush did not complete within %u s\n",
            st->ps->plugin->desc->name, st->ps->timeout_ms / 1000);
    st->flushing = 0;
    if (st->run->ending && st->run->final_flushes > 0 && --st->run->final_flushes == 0)
        end_run(st->run);
}

static void stage_flush(ol_stage *st) {
    run *r = st->run;
    st->flushing = 1;
    st->puts_since = 0;
    services_timer_start(r->svc, st->ps->timeout_ms, on_flush_timeout, st, &st->flush_timer);
    int rc = st->ps->plugin->desc->flush(st, st->state);
    if (rc < 0 && st->flushing) {
        fprintf(stderr, "error: stage '%s': flush could not start: %s\n",
                st->ps->plugin->desc->name, ol_strerror(rc));
        services_timer_stop(st->flush_timer);
        st->flush_timer = NULL;
        st->flushing = 0;
        if (r->ending && r->final_flushes > 0 && --r->final_flushes == 0)
            end_run(r);
    }
}

static void host_flush_done(ol_stage *st, int result, const char *reason) {
    if (st == NULL || !st->flushing) {
        host_log(st, NULL, OL_LOG_ERROR, "flush_done() with no flush in progress; ignored");
        return;
    }
    run *r = st->run;
    st->flushing = 0;
    if (st->flush_timer != NULL) {
        services_timer_stop(st->flush_timer);
        st->flush_timer = NULL;
    }
    if (result < 0)
        fprintf(stderr, "error: stage '%s': flush failed: %s\n", st->ps->plugin->desc->name,
                reason ? reason : ol_strerror(result));
    if (r->ending) {
        if (r->final_flushes > 0 && --r->final_flushes == 0)
            end_run(r);
        return;
    }
    /* Not maybe_flush here: a store that completes its flush inside flush() would recurse.
     * The kick looks again on the next loop turn. */
    run_kick(r);
}

/* Held-back store work is flushed when nothing else can move: every item in progress waits
 * on a store and no new item can start. Only puts started since the stage's last flush
 * count: a put still running after a flush was not held back (the store completes it on
 * its own), and flushing again for it would spin the loop. */
static void maybe_flush(run *r) {
    size_t waiting = 0;
    for (size_t i = 0; i < r->next_item; i++)
        waiting +=
            (size_t)(r->items[i].started && !r->items[i].finished && r->items[i].store_ops > 0);
    int stuck = waiting > 0 && waiting == r->active &&
                (r->next_item == r->n_items || r->active >= r->plan->concurrency || r->interrupted);
    for (size_t s = 0; stuck && s < r->plan->n_stages; s++) {
        ol_stage *st = &r->stages[s];
        if (st->ps->plugin->desc->flush != NULL && st->puts_since > 0 && st->puts_pending > 0 &&
            !st->flushing)
            stage_flush(st);
    }
}

static void on_flush_tick(uv_timer_t *t) {
    run *r = t->data;
    uint64_t now = uv_now(&r->loop);
    for (size_t s = 0; s < r->plan->n_stages; s++) {
        ol_stage *st = &r->stages[s];
        if (st->ps->plugin->desc->flush != NULL && st->puts_since > 0 && st->puts_pending > 0 &&
            !st->flushing && now - st->pending_since >= FLUSH_INTERVAL_MS)
            stage_flush(st);
    }
}

/* ---- items --------------------------------------------------------------------------------- */

static void stage_start(ol_item *item, size_t s) {
    run *r = item->run;
    stage_run *sr = &item->stages[s];
    ol_stage *stage = &r->stages[s];
    sr->status = ST_RUNNING;
    if (stage->ps->is_store) {
        store_apply(item, s);
        return;
    }
    services_timer_start(r->svc, stage->ps->timeout_ms, on_stage_timeout, sr, &sr->timer);
    int rc = stage->ps->plugin->desc->apply(stage, item, stage->state);
    if (rc < 0 && sr->status == ST_RUNNING) {
        char why[160];
        snprintf(why, sizeof(why), "could not start: %s", ol_strerror(rc));
        stage_complete(item, s, ST_DONE, OL_OUTCOME_FAILED, why);
        item->again = 1;
    }
}

static void item_advance(ol_item *item) {
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
            int st = needs_state(item, r->stages[s].ps, &failed);
            if (st == 0)
                continue;
            sr->started = (double)uv_now(&r->loop) / 1000.0;
            if (st < 0) {
                char why[160];
                snprintf(why, sizeof(why), "skipped: needs '%s', which did not succeed", failed);
                stage_complete(item, s, ST_SKIPPED, OL_OUTCOME_FAILED, why);
                item->again = 1;
                continue;
            }
            stage_start(item, s);
        }
    } while (item->again);
    item->advancing = 0;
    if (item->remaining == 0 && !item->finished)
        item_finish(item);
}

/* Every item has finished: give each store its end-of-run flush, then close. */
static void run_ending(run *r) {
    r->ending = 1;
    for (size_t s = 0; s < r->plan->n_stages; s++)
        if (r->stages[s].ps->plugin->desc->flush != NULL && !r->stages[s].flushing)
            r->final_flushes++;
    if (r->final_flushes == 0) {
        end_run(r);
        return;
    }
    size_t n = r->final_flushes;
    for (size_t s = 0; s < r->plan->n_stages && n > 0; s++)
        if (r->stages[s].ps->plugin->desc->flush != NULL && !r->stages[s].flushing) {
            n--;
            stage_flush(&r->stages[s]);
        }
}

static void end_run(run *r) {
    uv_close((uv_handle_t *)&r->kick, NULL);
    uv_close((uv_handle_t *)&r->sigint, NULL);
    uv_close((uv_handle_t *)&r->flush_tick, NULL);
    services_cancel_all(r->svc);
    if (r->aws != NULL) {
        aws_client_stats(r->aws, &r->stats);
        aws_client_close(r->aws, NULL, NULL);
        r->aws = NULL;
    }
}

static void on_kick(uv_timer_t *t) {
    run *r = t->data;
    if (r->ending)
        return;
    while (!r->interrupted && r->next_item < r->n_items && r->active < r->plan->concurrency) {
        ol_item *item = &r->items[r->next_item++];
        item->started = 1;
        r->active++;
        item_advance(item);
    }
    if (r->active == 0 && (r->next_item == r->n_items || r->interrupted))
        run_ending(r);
    else
        maybe_flush(r);
}

static void run_kick(run *r) {
    uv_timer_start(&r->kick, on_kick, 0, 0);
}

/* Names what the run still waits for, so a hung stage can be found. */
static void print_waiting(const run *r) {
    size_t shown = 0;
    for (size_t i = 0; i < r->next_item; i++) {
        const ol_item *it = &r->items[i];
        if (!it->started || it->finished)
            continue;
        for (size_t s = 0; s < r->plan->n_stages; s++)
            if (it->stages[s].status == ST_RUNNING || it->stages[s].op != OP_NONE) {
                if (shown++ < 20)
                    fprintf(stderr, "opsline:   waiting for %s: stage '%s'%s\n", it->name,
                            sname_of(r, s), it->stages[s].op != OP_NONE ? " (store)" : "");
            }
    }
    if (shown > 20)
        fprintf(stderr, "opsline:   ... and %zu more\n", shown - 20);
}

/* The first Ctrl-C: items in progress run to their end (stopping one between its stages
 * could leave an access key created whose secret no store holds); no new item starts. */
static void run_interrupt(run *r) {
    if (r->interrupted)
        return;
    r->interrupted = 1;
    fprintf(stderr, "opsline: interrupted: finishing the items in progress; no new items "
                    "start (press Ctrl-C again to stop at once)\n");
    print_waiting(r);
    maybe_flush(r);
}

static void on_sigint(uv_signal_t *h, int signum) {
    run *r = h->data;
    (void)signum;
    if (!r->interrupted) {
        run_interrupt(r);
        return;
    }
    fprintf(stderr, "opsline: stopping now\n");
    print_waiting(r);
    services_cancel_all(r->svc);
    uv_signal_stop(h);
    raise(SIGINT);
}

/* ---- prepare and preflight -------------------------------------------------------------- */

static void on_preflight(void *arg, const ol_aws_response *res);

static void start_preflight(run *r) {
    ol_kv params[] = {{"Action", "GetCallerIdentity"}, {"Version", "2011-06-15"}};
    ol_aws_request pre = {.struct_size = sizeof(ol_aws_request),
                          .service = "sts",
                          .method = "POST",
                          .params = params,
                          .n_params = 2};
    int rc = aws_send(r->aws, &pre, on_preflight, r);
    if (rc != 0) {
        fprintf(stderr, "error: could not start: %s\n", ol_strerror(rc));
        r->preflight_failed = 1;
        r->next_item = r->n_items;
        run_kick(r);
    }
}

static void prepare_settled(run *r) {
    if (r->prepares_pending > 0)
        return;
    if (!r->prepare_failed) {
        start_preflight(r);
        return;
    }
    fprintf(stderr, "Nothing was created: fix what is named above and run again.\n");
    r->preflight_failed = 1;
    r->next_item = r->n_items;
    run_kick(r);
}

static void prepare_end(ol_stage *st, int result, const char *reason) {
    run *r = st->run;
    st->preparing = 0;
    if (st->flush_timer != NULL) {
        services_timer_stop(st->flush_timer);
        st->flush_timer = NULL;
    }
    if (result < 0) {
        const char *name = st->ps->plugin->desc->name;
        const char *text = reason && *reason ? reason : ol_strerror(result);
        int named = strncmp(text, name, strlen(name)) == 0 && text[strlen(name)] == ':';
        char *line = named ? host_format("error: %s\n", text)
                           : host_format("error: stage '%s': %s\n", name, text);
        if (line != NULL) {
            mask_all(r, line);
            fputs(line, stderr);
            free(line);
        }
        r->prepare_failed = 1;
    }
    r->prepares_pending--;
    prepare_settled(r);
}

static void host_prepare_done(ol_stage *st, int result, const char *reason) {
    if (st == NULL || !st->preparing) {
        host_log(st, NULL, OL_LOG_ERROR, "prepare_done() with no prepare in progress; ignored");
        return;
    }
    prepare_end(st, result, reason);
}

static void on_prepare_timeout(void *arg, int status) {
    ol_stage *st = arg;
    if (status != 0)
        return;
    st->flush_timer = NULL;
    char why[128];
    snprintf(why, sizeof(why), "its check (prepare) did not complete within %u s",
             st->ps->timeout_ms / 1000);
    prepare_end(st, OL_ETIMEDOUT, why);
}

/* Every stage's asynchronous check, all at once, then the credentials preflight. */
static void start_prepares(run *r) {
    r->prepares_pending = 1; /* held until every prepare has started */
    for (size_t s = 0; s < r->plan->n_stages; s++) {
        ol_stage *st = &r->stages[s];
        if (st->ps->plugin->desc->prepare == NULL)
            continue;
        st->preparing = 1;
        r->prepares_pending++;
        services_timer_start(r->svc, st->ps->timeout_ms, on_prepare_timeout, st, &st->flush_timer);
        int rc = st->ps->plugin->desc->prepare(st, st->state);
        if (rc < 0 && st->preparing)
            prepare_end(st, rc, "its check (prepare) could not start");
    }
    r->prepares_pending--;
    prepare_settled(r);
}

/* ---- preflight ------------------------------------------------------------------------- */

static void on_preflight(void *arg, const ol_aws_response *res) {
    run *r = arg;
    if (res->result == 0) {
        ol_xml *doc = xml_parse(res->body, res->body_len);
        const char *arn = doc ? xml_text(doc,
                                         "GetCallerIdentityResponse/GetCallerIdentityResult/"
                                         "Arn",
                                         0)
                              : NULL;
        if (r->plan->verbose)
            fprintf(stderr, "debug: acting as %s\n", arn ? arn : "(unknown identity)");
        xml_free(doc);
        run_kick(r);
        return;
    }
    const ol__creds *c = aws_client_creds(r->aws);
    /* Only a 4xx answer is a verdict on the credentials; no answer (endpoint unreachable,
     * timeout) or a 5xx says nothing about them and needs another fix. */
    int rejected = res->result == OL_EAWS && res->status >= 400 && res->status < 500;
    fprintf(stderr, "error: %s %s: %s%s%s (HTTP %ld%s%s)\n",
            rejected ? "AWS rejected the credentials from"
                     : "could not check with AWS STS the credentials from",
            c && c->source ? c->source : "the environment",
            res->error_code ? res->error_code : ol_strerror(res->result),
            res->error_message ? ": " : "", res->error_message ? res->error_message : "",
            res->status, res->request_id ? ", request id " : "",
            res->request_id ? res->request_id : "");
    if (rejected)
        fprintf(stderr, "Nothing was created. Check the access key id and secret access key (for "
                        "example with `aws sts get-caller-identity`), or select another profile "
                        "with --profile.\n");
    else
        fprintf(stderr, "Nothing was created. Check the network, the region and "
                        "AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_STS, then run again.\n");
    r->preflight_failed = 1;
    r->creds_rejected = rejected;
    r->next_item = r->n_items;
    run_kick(r);
}

/* The client holds its own copy of the credentials now. Overwrite them in the process's
 * environment block too: a child between fork and exec still shows that block in
 * /proc/PID/environ, and a core dump would hold it. */
extern char **environ;
static void scrub_credentials_env(void) {
    static const char *const names[] = {"AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                                        "AWS_SECURITY_TOKEN"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char *v = getenv(names[i]);
        if (v != NULL)
            OPENSSL_cleanse(v, strlen(v));
        unsetenv(names[i]);
    }
}

/* ---- set-up and teardown ---------------------------------------------------------------- */

static int items_build(run *r) {
    const plan *p = r->plan;
    r->region = strdup(p->region ? p->region : aws_client_settings(r->aws)->region);
    if (r->region == NULL)
        return OL_ENOMEM;
    r->n_items = p->n_products * p->n_environments;
    r->items = calloc(r->n_items ? r->n_items : 1, sizeof(*r->items));
    if (r->items == NULL)
        return OL_ENOMEM;
    for (size_t i = 0; i < p->n_products; i++)
        for (size_t e = 0; e < p->n_environments; e++) {
            ol_item *it = &r->items[i * p->n_environments + e];
            size_t len = strlen(p->products[i]) + strlen(p->environments[e]) + 2;
            it->run = r;
            it->index = i * p->n_environments + e;
            it->product = p->products[i];
            it->environment = p->environments[e];
            it->region = r->region;
            it->name = malloc(len);
            it->stages = calloc(p->n_stages ? p->n_stages : 1, sizeof(stage_run));
            if (it->name == NULL || it->stages == NULL)
                return OL_ENOMEM;
            snprintf(it->name, len, "%s-%s", p->products[i], p->environments[e]);
            it->remaining = p->n_stages;
            bag_init(&it->bag);
            for (size_t s = 0; s < p->n_stages; s++) {
                it->stages[s].item = it;
                it->stages[s].index = s;
            }
        }
    return 0;
}

static void items_free(run *r) {
    for (size_t i = 0; i < r->n_items; i++) {
        ol_item *it = &r->items[i];
        for (size_t s = 0; it->stages && s < r->plan->n_stages; s++) {
            free(it->stages[s].reason);
            free(it->stages[s].verified);
        }
        free(it->stages);
        free(it->name);
        bag_free(&it->bag);
    }
    free(r->items);
    free(r->region);
}

/* init every stage, then validate every item: all before the first request. */
static int stages_prepare(run *r) {
    const plan *p = r->plan;
    r->stages = calloc(p->n_stages ? p->n_stages : 1, sizeof(*r->stages));
    if (r->stages == NULL)
        return OL_ENOMEM;
    for (size_t s = 0; s < p->n_stages; s++) {
        ol_stage *st = &r->stages[s];
        st->run = r;
        st->ps = &p->stages[s];
        st->index = s;
        const ol_plugin *d = st->ps->plugin->desc;
        if (d->init) {
            int rc = d->init(st, &host_api, &st->state);
            if (rc < 0) {
                fprintf(stderr, "error: stage '%s' (%s) refused its configuration: %s\n", d->name,
                        st->ps->plugin->path, ol_strerror(rc));
                return rc;
            }
        }
        st->initialised = 1;
    }
    for (size_t i = 0; i < r->n_items; i++)
        for (size_t s = 0; s < p->n_stages; s++) {
            ol_stage *st = &r->stages[s];
            const ol_plugin *d = st->ps->plugin->desc;
            if (d->validate == NULL)
                continue;
            int rc = d->validate(st, &r->items[i], st->state);
            if (rc < 0) {
                fprintf(stderr, "error: stage '%s' rejected item '%s': %s\n", d->name,
                        r->items[i].name, ol_strerror(rc));
                return rc;
            }
        }
    return 0;
}

static void stages_fini(run *r) {
    for (size_t s = 0; r->stages && s < r->plan->n_stages; s++) {
        ol_stage *st = &r->stages[s];
        if (st->initialised && st->ps->plugin->desc->fini)
            st->ps->plugin->desc->fini(st->state);
    }
    free(r->stages);
}

static void walk_close(uv_handle_t *h, void *arg) {
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

int pipeline_run(const plan *p) {
    run r;
    char *err = NULL;
    int code = 2;
    memset(&r, 0, sizeof(r));
    r.plan = p;
    if (uv_loop_init(&r.loop) != 0 || services_new(&r.loop, &r.svc) != 0) {
        fprintf(stderr, "error: could not start the event loop\n");
        return 2;
    }
    int rc = aws_client_new(&r.loop, p->profile, p->region, &r.aws, &err);
    if (rc != 0) {
        fprintf(stderr, "error: %s\n", err ? err : ol_strerror(rc));
        goto out;
    }
    aws_client_set_logger(r.aws, on_aws_log, &r);
    scrub_credentials_env();
    const char *cmsg = NULL;
    if (aws_client_creds_error(r.aws, &cmsg) != 0) {
        fprintf(stderr, "error: %s\n", cmsg ? cmsg : "no AWS credentials found");
        goto out;
    }
    rc = journal_open(p->state_dir, &r.journal, &err);
    if (rc != 0) {
        fprintf(stderr, "error: %s\n", err ? err : ol_strerror(rc));
        goto out;
    }
    if (journal_warnings(r.journal) != NULL)
        fprintf(stderr, "warning: %s\n", journal_warnings(r.journal));
    if (items_build(&r) != 0 || stages_prepare(&r) != 0)
        goto out;
    r.report = report_new(p->json, p->verbose, r.n_items);
    if (r.report == NULL)
        goto out;

    uv_timer_init(&r.loop, &r.kick);
    r.kick.data = &r;
    uv_timer_init(&r.loop, &r.flush_tick);
    r.flush_tick.data = &r;
    uv_timer_start(&r.flush_tick, on_flush_tick, FLUSH_TICK_MS, FLUSH_TICK_MS);
    uv_signal_init(&r.loop, &r.sigint);
    r.sigint.data = &r;
    uv_signal_start(&r.sigint, on_sigint, SIGINT);
    start_prepares(&r);
    uv_run(&r.loop, UV_RUN_DEFAULT);

    int failed = report_finish(r.report, &r.stats, r.creds_rejected, r.interrupted);
    code = (failed || r.preflight_failed || r.interrupted) ? 1 : 0;
out:
    free(err);
    if (r.aws) {
        aws_client_close(r.aws, NULL, NULL);
        r.aws = NULL;
    }
    /* Whatever stages started still completes (cancelled) before their state goes. */
    services_cancel_all(r.svc);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    stages_fini(&r);
    services_free(r.svc);
    items_free(&r);
    report_free(r.report);
    if (r.journal)
        journal_close(r.journal);
    uv_walk(&r.loop, walk_close, NULL);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    uv_loop_close(&r.loop);
    return code;
}

void plan_free(plan *p) {
    for (size_t i = 0; i < p->n_products; i++)
        free(p->products[i]);
    free(p->products);
    for (size_t i = 0; i < p->n_environments; i++)
        free(p->environments[i]);
    free(p->environments);
    for (size_t s = 0; s < p->n_stages; s++) {
        options_free(p->stages[s].opts);
        free(p->stages[s].needs);
    }
    free(p->stages);
    free(p->region);
    free(p->profile);
    free(p->state_dir);
    memset(p, 0, sizeof(*p));
}

static const ol_host host_api = {
    .struct_size = sizeof(ol_host),
    .abi_major = OL_ABI_MAJOR,
    .abi_minor = OL_ABI_MINOR,
    .strerror = ol_strerror,
    .log = host_log,
    .opt_string = host_opt_string,
    .opt_bool = host_opt_bool,
    .opt_int = host_opt_int,
    .opt_list = host_opt_list,
    .opt_map = host_opt_map,
    .opt_is_set = host_opt_is_set,
    .item_product = host_item_product,
    .item_environment = host_item_environment,
    .item_name = host_item_name,
    .item_region = host_item_region,
    .item_get = host_item_get,
    .item_set = host_item_set,
    .aws_send = host_aws_send,
    .xml_parse = xml_parse,
    .xml_count = xml_count,
    .xml_text = xml_text,
    .xml_free = xml_free,
    .write_private_file = host_write_private_file,
    .journal_append = host_journal_append,
    .journal_count = host_journal_count,
    .done = host_done,
    .checkpoint = host_checkpoint,
    .format = host_format,
    .free = host_free,
    .wipe = host_wipe,
    .read_private_file = host_read_private_file,
    .aws_reason = host_aws_reason,
    .opt_bind = host_opt_bind,
    .expand = host_expand,
    .stage_name = host_stage_name,
    .proc_run = host_proc_run,
    .work_queue = host_work_queue,
    .timer_start = host_timer_start,
    .timer_stop = services_timer_stop,
    .lock_acquire = host_lock_acquire,
    .lock_release = services_unlock,
    .store_done = host_store_done,
    .flush_done = host_flush_done,
    .prepare_done = host_prepare_done,
    .secret_find = host_secret_find,
};
