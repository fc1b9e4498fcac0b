/* pipeline: the run of a plan. One libuv loop drives every item; the host API table handed
 * to the stages is implemented here because each of its functions is a view on the run's
 * state (items, stages, journal, AWS client). Items start from a timer, never from inside
 * a stage's callback, so a stage that completes synchronously cannot recurse through the
 * whole batch. */
#include "pipeline.h"

#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aws/aws.h"
#include "aws/xml.h"
#include "bag.h"
#include "error.h"
#include "journal.h"
#include "privfile.h"
#include "report.h"

enum { ST_PENDING = 0, ST_RUNNING, ST_DONE, ST_SKIPPED };

typedef struct stage_run {
    int status;
    ol_outcome outcome;
    char *reason;
    double started, finished;
} stage_run;

struct ol_stage {
    struct run *run;
    const plan_stage *ps;
    size_t index;
    void *state;
    int initialised;
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
};

typedef struct run {
    const plan *plan;
    uv_loop_t loop;
    uv_timer_t kick;
    uv_signal_t sigint;
    aws_client *aws;
    journal *journal;
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

static int host_aws_send(ol_item *item, const ol_aws_request *req, ol_aws_cb cb, void *arg) {
    if (item == NULL || req == NULL)
        return OL_EINVAL;
    ol_aws_request copy = *req;
    if (copy.region == NULL)
        copy.region = item->region;
    return aws_send(item->run->aws, &copy, cb, arg);
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

static int host_secret_stored(ol_item *item, ol_stage *stage, const char *where) {
    const char *key_id = bag_get(&item->bag, OL_KEY_ACCESS_KEY_ID);
    if (key_id == NULL)
        return OL_ENOENT;
    if (reveals_secret(item->run, where)) {
        host_log(stage, item, OL_LOG_ERROR, "plugin bug: refused to journal a secret");
        return OL_ESECRET;
    }
    return journal_append(item->run->journal, item->name, stage_name(stage), "secret_stored",
                          key_id, where);
}

static void host_checkpoint(const ol_item *item, const char *point) {
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
    sr->status = status;
    sr->outcome = outcome;
    free(sr->reason);
    sr->reason = reason ? strdup(reason) : NULL;
    if (sr->reason)
        mask_all(r, sr->reason);
    sr->finished = (double)uv_now(&r->loop) / 1000.0;
    item->remaining--;
    const char *sname = r->stages[s].ps->plugin->desc->name;
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
                 "plugin bug: done() called for a stage that is not running; ignored");
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

/* 1: every need succeeded; 0: some need is not finished; -1: a need failed or was skipped. */
static int needs_state(const ol_item *item, const plan_stage *ps, const char **failed) {
    int ready = 1;
    for (size_t k = 0; k < ps->n_needs; k++) {
        const stage_run *nr = &item->stages[ps->needs[k]];
        if (nr->status == ST_SKIPPED ||
            (nr->status == ST_DONE && nr->outcome == OL_OUTCOME_FAILED)) {
            *failed = item->run->stages[ps->needs[k]].ps->plugin->desc->name;
            return -1;
        }
        if (nr->status != ST_DONE)
            ready = 0;
    }
    return ready;
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
            sr->status = ST_RUNNING;
            ol_stage *stage = &r->stages[s];
            int rc = stage->ps->plugin->desc->apply(stage, item, stage->state);
            if (rc < 0 && sr->status == ST_RUNNING) {
                char why[160];
                snprintf(why, sizeof(why), "could not start: %s", ol_strerror(rc));
                stage_complete(item, s, ST_DONE, OL_OUTCOME_FAILED, why);
                item->again = 1;
            }
        }
    } while (item->again);
    item->advancing = 0;
    if (item->remaining == 0 && !item->finished)
        item_finish(item);
}

static void on_kick(uv_timer_t *t) {
    run *r = t->data;
    while (!r->interrupted && r->next_item < r->n_items && r->active < r->plan->concurrency) {
        ol_item *item = &r->items[r->next_item++];
        item->started = 1;
        r->active++;
        item_advance(item);
    }
    if (r->active == 0 && (r->next_item == r->n_items || r->interrupted)) {
        uv_close((uv_handle_t *)&r->kick, NULL);
        uv_close((uv_handle_t *)&r->sigint, NULL);
        aws_client_stats(r->aws, &r->stats);
        aws_client_close(r->aws, NULL, NULL);
        r->aws = NULL;
    }
}

static void run_kick(run *r) {
    uv_timer_start(&r->kick, on_kick, 0, 0);
}

static void on_sigint(uv_signal_t *h, int signum) {
    run *r = h->data;
    (void)signum;
    if (!r->interrupted) {
        r->interrupted = 1;
        /* Items in progress run to their end: stopping one between its stages could leave
         * an access key created whose secret no stage stored. */
        fprintf(stderr, "opsline: interrupted: finishing the items in progress; no new items "
                        "start (press Ctrl-C again to stop at once)\n");
        return;
    }
    fprintf(stderr, "opsline: stopping now\n");
    uv_signal_stop(h);
    raise(SIGINT);
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
        }
    return 0;
}

static void items_free(run *r) {
    for (size_t i = 0; i < r->n_items; i++) {
        ol_item *it = &r->items[i];
        for (size_t s = 0; it->stages && s < r->plan->n_stages; s++)
            free(it->stages[s].reason);
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
    if (uv_loop_init(&r.loop) != 0) {
        fprintf(stderr, "error: could not start the event loop\n");
        return 2;
    }
    int rc = aws_client_new(&r.loop, p->profile, p->region, &r.aws, &err);
    if (rc != 0) {
        fprintf(stderr, "error: %s\n", err ? err : ol_strerror(rc));
        goto out;
    }
    aws_client_set_logger(r.aws, on_aws_log, &r);
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
    uv_signal_init(&r.loop, &r.sigint);
    r.sigint.data = &r;
    uv_signal_start(&r.sigint, on_sigint, SIGINT);
    ol_kv params[] = {{"Action", "GetCallerIdentity"}, {"Version", "2011-06-15"}};
    ol_aws_request pre = {.service = "sts", .method = "POST", .params = params, .n_params = 2};
    rc = aws_send(r.aws, &pre, on_preflight, &r);
    if (rc != 0) {
        fprintf(stderr, "error: could not start: %s\n", ol_strerror(rc));
        code = 1;
        goto out;
    }
    uv_run(&r.loop, UV_RUN_DEFAULT);

    int failed = report_finish(r.report, &r.stats, r.creds_rejected, r.interrupted);
    code = (failed || r.preflight_failed || r.interrupted) ? 1 : 0;
out:
    free(err);
    if (r.aws) {
        aws_client_close(r.aws, NULL, NULL);
        r.aws = NULL;
    }
    stages_fini(&r);
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
    .secret_stored = host_secret_stored,
    .done = host_done,
    .checkpoint = host_checkpoint,
};
