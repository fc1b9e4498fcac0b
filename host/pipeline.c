/* pipeline: one run of a plan: the event loop, the AWS client, the journal, the services;
 * every stage's init and per-item validate before any request, then the stages' prepare
 * checks, the STS preflight, the items (scheduler.c), and teardown in one place. */
#include "pipeline.h"

#include <openssl/crypto.h>
#include <string.h>

#include "aws/sts.h"
#include "error.h"
#include "run.h"

static void on_aws_log(void *arg, const char *line) {
    run *r = arg;
    if (r->plan->verbose)
        fprintf(stderr, "debug: %s\n", line);
}

/* ---- prepare and preflight -------------------------------------------------------------- */

static void on_preflight(void *arg, const ol_aws_response *res);

static void start_preflight(run *r) {
    int rc = sts_get_caller_identity(r->aws, on_preflight, r);
    if (rc != 0) {
        fprintf(stderr, "error: could not start: %s\n", ol_strerror(rc));
        r->preflight_failed = 1;
        r->next_item = r->n_items;
        scheduler_kick(r);
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
    scheduler_kick(r);
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
        char *line = named ? ol__format("error: %s\n", text)
                           : ol__format("error: stage '%s': %s\n", name, text);
        if (line != NULL) {
            run_mask(r, line);
            fputs(line, stderr);
            free(line);
        }
        r->prepare_failed = 1;
    }
    r->prepares_pending--;
    prepare_settled(r);
}

void pipeline_prepare_done(ol_stage *st, int result, const char *reason) {
    if (st == NULL || !st->preparing) {
        run_log(st, NULL, OL_LOG_ERROR, "prepare_done() with no prepare in progress; ignored");
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
        sts_identity id;
        sts_identity_parse(res->body, res->body_len, &id);
        if (r->plan->verbose)
            fprintf(stderr, "debug: acting as %s\n", id.arn ? id.arn : "(unknown identity)");
        sts_identity_free(&id);
        scheduler_kick(r);
        return;
    }
    char *msg = sts_failure_message(res, credentials_source(aws_client_creds(r->aws)));
    fprintf(stderr, "error: %s\n", msg ? msg : ol_strerror(res->result));
    fprintf(stderr, "Nothing was created. %s\n", sts_failure_hint(res));
    free(msg);
    r->preflight_failed = 1;
    r->creds_rejected = sts_rejected(res);
    r->next_item = r->n_items;
    scheduler_kick(r);
}

/* The client holds its own copy of the credentials, and every stage has read what it
 * needs from the environment in init. Overwrite every secret-named variable (services.h's
 * rule: AWS credentials, *_PASSWORD, *_TOKEN, ...) in the process's environment block too:
 * a child between fork and exec still shows that block in /proc/PID/environ, and a core
 * dump would hold it. */
extern char **environ;
static void scrub_secret_env(void) {
    for (char **e = environ; e != NULL && *e != NULL;) {
        if (!services_env_is_secret(*e)) {
            e++;
            continue;
        }
        char *eq = strchr(*e, '=');
        size_t n = eq ? (size_t)(eq - *e) : strlen(*e);
        char name[256];
        if (eq != NULL)
            OPENSSL_cleanse(eq + 1, strlen(eq + 1));
        if (n >= sizeof(name)) {
            e++;
            continue;
        }
        memcpy(name, *e, n);
        name[n] = '\0';
        unsetenv(name); /* shifts the entries down: look at *e again */
    }
}

/* ---- set-up and teardown ---------------------------------------------------------------- */

static int items_build(run *r) {
    const plan *p = r->plan;
    /* The client's settings own the region decision (credentials_settings), --region and
     * the pipeline file's "region" included. */
    r->region = strdup(aws_client_settings(r->aws)->region);
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
            if (it->name == NULL)
                return OL_ENOMEM;
            snprintf(it->name, len, "%s-%s", p->products[i], p->environments[e]);
            bag_init(&it->bag);
            list_init(&it->live);
        }
    return 0;
}

static void items_free(run *r) {
    for (size_t i = 0; i < r->n_items; i++) {
        ol_item *it = &r->items[i];
        scheduler_item_release(it);
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
            int rc = d->init(st, &run_host_api, &st->state);
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

void pipeline_loop_close(uv_loop_t *loop) {
    uv_walk(loop, walk_close, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
}

/* Everything that can refuse the run before the first request: the AWS client and its
 * credentials, the items, every stage's init and validate, then the journal (so refused
 * input leaves nothing behind, not even a state directory) and the report. 0, or the
 * message was printed. */
static int run_setup(run *r) {
    const plan *p = r->plan;
    char *err = NULL;
    int rc = aws_client_new(&r->loop, p->profile, p->region, &r->aws, &err);
    if (rc != 0) {
        fprintf(stderr, "error: %s\n", err ? err : ol_strerror(rc));
        free(err);
        return rc;
    }
    aws_client_set_logger(r->aws, on_aws_log, r);
    const char *cmsg = NULL;
    if (aws_client_creds_error(r->aws, &cmsg) != 0) {
        fprintf(stderr, "error: %s\n", cmsg ? cmsg : "no AWS credentials found");
        return OL_ECREDS;
    }
    rc = items_build(r);
    if (rc == 0)
        rc = stages_prepare(r);
    scrub_secret_env();
    if (rc != 0)
        return rc;
    if ((rc = journal_open(p->state_dir, &r->journal, &err)) != 0) {
        fprintf(stderr, "error: %s\n", err ? err : ol_strerror(rc));
        free(err);
        return rc;
    }
    if (journal_warnings(r->journal) != NULL)
        fprintf(stderr, "warning: %s\n", journal_warnings(r->journal));
    r->report = report_new(p->json, p->verbose, r->n_items);
    return r->report != NULL ? 0 : OL_ENOMEM;
}

/* The loop's own handles: the item kick, the flush tick and Ctrl-C. */
static void run_handles_start(run *r) {
    uv_timer_init(&r->loop, &r->kick);
    r->kick.data = r;
    uv_timer_init(&r->loop, &r->flush_tick);
    r->flush_tick.data = r;
    uv_timer_start(&r->flush_tick, stores_on_flush_tick, FLUSH_TICK_MS, FLUSH_TICK_MS);
    uv_signal_init(&r->loop, &r->sigint);
    r->sigint.data = r;
    uv_signal_start(&r->sigint, scheduler_on_sigint, SIGINT);
}

/* Teardown in one place: what stages started still completes (cancelled) before their
 * state goes, then the stages, the services, the items and the loop. */
static void run_teardown(run *r) {
    if (r->aws) {
        aws_client_close(r->aws, NULL, NULL);
        r->aws = NULL;
    }
    services_cancel_all(r->svc);
    uv_run(&r->loop, UV_RUN_DEFAULT);
    stages_fini(r);
    services_free(r->svc);
    items_free(r);
    report_free(r->report);
    if (r->journal)
        journal_close(r->journal);
    pipeline_loop_close(&r->loop);
}

int pipeline_run(const plan *p) {
    run r;
    int code = 2;
    memset(&r, 0, sizeof(r));
    r.plan = p;
    list_init(&r.live);
    list_init(&r.ended);
    if (uv_loop_init(&r.loop) != 0 || services_new(&r.loop, &r.svc) != 0) {
        fprintf(stderr, "error: could not start the event loop\n");
        return 2;
    }
    if (run_setup(&r) == 0) {
        run_handles_start(&r);
        start_prepares(&r);
        uv_run(&r.loop, UV_RUN_DEFAULT);
        int failed = report_finish(r.report, &r.stats, r.creds_rejected, r.interrupted);
        code = (failed || r.preflight_failed || r.interrupted) ? 1 : 0;
    }
    run_teardown(&r);
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
