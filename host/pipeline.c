/* pipeline: one run of a plan: the event loop, the AWS client, the journal, the services;
 * every stage's init and per-item validate before any request, then the stages' prepare
 * checks, the STS preflight, the items (scheduler.c), and teardown in one place. */
#include "pipeline.h"

#include <openssl/crypto.h>
#include <string.h>
#include <unistd.h>

#include "aws/sts.h"
#include "error.h"
#include "identities.h"
#include "itemlock.h"
#include "run.h"

static void on_aws_log(void *arg, const char *line) {
    run *r = arg;
    if (r->plan->verbose)
        run_print(r, "debug: %s\n", line);
}

/* ---- prepare and preflight -------------------------------------------------------------- */

static void on_preflight(void *arg, const ol_aws_response *res);

/* One answer less to wait for; with the last, the items start, or the run ends. */
static void preflight_settled(run *r) {
    if (--r->preflights_pending > 0)
        return;
    if (r->preflight_failed)
        r->next_item = r->n_items;
    scheduler_kick(r);
}

/* GetCallerIdentity for every identity of the run: each one is checked before any write. */
static void start_preflight(run *r) {
    r->preflights_pending = 1; /* held until every check has started */
    for (size_t i = 0; i < r->n_idents; i++) {
        r->preflights_pending++;
        int rc = sts_get_caller_identity(r->idents[i].aws, on_preflight, &r->idents[i]);
        if (rc != 0) {
            run_print(r, "error: could not start: %s\n", ol_strerror(rc));
            r->preflight_failed = 1;
            r->preflights_pending--;
        }
    }
    preflight_settled(r);
}

static void prepare_settled(run *r) {
    if (r->prepares_pending > 0)
        return;
    if (!r->prepare_failed) {
        start_preflight(r);
        return;
    }
    run_print(r, "Nothing was created: fix what is named above and run again.\n");
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
            report_log(r->report, line);
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

static void prepare_one(run *r, ol_stage *st) {
    if (st->ps->plugin->desc->prepare == NULL)
        return;
    st->preparing = 1;
    r->prepares_pending++;
    services_timer_start(r->svc, st->ps->timeout_ms, on_prepare_timeout, st, &st->flush_timer);
    int rc = st->ps->plugin->desc->prepare(st, st->state);
    if (rc < 0 && st->preparing)
        prepare_end(st, rc, "its check (prepare) could not start");
}

/* Every stage's asynchronous check (products' own instances too), all at once, then the
 * credentials preflight. */
static void start_prepares(run *r) {
    r->prepares_pending = 1; /* held until every prepare has started */
    for (size_t s = 0; s < r->plan->n_stages; s++)
        prepare_one(r, &r->stages[s]);
    for (size_t i = 0; r->product_stages && i < r->plan->n_products; i++)
        for (size_t s = 0; r->product_stages[i] && s < r->plan->n_stages; s++)
            if (r->product_stages[i][s] != NULL)
                prepare_one(r, r->product_stages[i][s]);
    r->prepares_pending--;
    prepare_settled(r);
}

/* ---- preflight ------------------------------------------------------------------------- */

static void on_preflight(void *arg, const ol_aws_response *res) {
    run_identity *id = arg;
    run *r = id->run;
    if (res->result == 0) {
        sts_identity sid;
        sts_identity_parse(res->body, res->body_len, &sid);
        if (r->plan->verbose)
            run_print(r, "debug: acting as %s for %s (%s, %s)\n",
                      sid.arn ? sid.arn : "(unknown identity)", id->envs,
                      aws_client_source(id->aws) ? aws_client_source(id->aws) : "?", id->region);
        sts_identity_free(&sid);
        preflight_settled(r);
        return;
    }
    char *msg = sts_failure_message(res, aws_client_source(id->aws));
    if (msg != NULL)
        run_mask(r, msg);
    if (r->n_idents > 1)
        run_print(r, "error: %s: %s\n", id->envs, msg ? msg : ol_strerror(res->result));
    else
        run_print(r, "error: %s\n", msg ? msg : ol_strerror(res->result));
    if (!r->preflight_failed)
        run_print(r, "Nothing was created. %s\n", sts_failure_hint(res));
    free(msg);
    r->preflight_failed = 1;
    r->preflight_config |= res->result == OL_ECONFIG;
    r->creds_rejected |= sts_rejected(res);
    preflight_settled(r);
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

/* Without p->only every product x environment is an item. */
static int item_selected(const plan *p, const char *product, const char *environment) {
    size_t pl = strlen(product);
    for (size_t k = 0; k < p->n_only; k++)
        if (strncmp(p->only[k], product, pl) == 0 && p->only[k][pl] == '-' &&
            strcmp(p->only[k] + pl + 1, environment) == 0)
            return 1;
    return p->only == NULL;
}

static int same(const char *a, const char *b) {
    return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* The identity of profile, a new one (its AWS client made, in the run's region) the first
 * time. 0, or the message was printed. */
static int identity_for(run *r, const char *profile, const char *env, run_identity **out) {
    for (size_t i = 0; i < r->n_idents; i++) {
        run_identity *id = &r->idents[i];
        if (!same(id->profile, profile))
            continue;
        *out = id;
        if (strstr(id->envs, env) != NULL) /* a cheap check; duplicates only cost text */
            return 0;
        char *envs = ol__format("%s, %s", id->envs, env);
        if (envs == NULL)
            return OL_ENOMEM;
        free(id->envs);
        id->envs = envs;
        return 0;
    }
    run_identity *id = &r->idents[r->n_idents];
    char *err = NULL;
    id->run = r;
    id->profile = profile;
    int rc = aws_client_new(&r->loop, profile, r->plan->region, &id->aws, &err);
    if (rc != 0) {
        if (r->plan->env_profiles && profile != NULL && r->plan->n_environments > 1)
            fprintf(stderr, "error: environment %s: %s\n", env, err ? err : ol_strerror(rc));
        else
            fprintf(stderr, "error: %s\n", err ? err : ol_strerror(rc));
        free(err);
        return rc;
    }
    r->n_idents++;
    aws_client_set_logger(id->aws, on_aws_log, r);
    aws_client_set_rate_wait_hook(id->aws, scheduler_on_rate_wait, r);
    const char *cmsg = NULL;
    if (aws_client_creds_error(id->aws, &cmsg) != 0) {
        fprintf(stderr, "error: %s\n", cmsg ? cmsg : "no AWS credentials found");
        return OL_ECREDS;
    }
    /* The client's settings own the region decision (credentials_settings), --region and
     * the pipeline file's "region" included. */
    id->region = strdup(aws_client_settings(id->aws)->region);
    id->envs = strdup(env);
    if (id->region == NULL || id->envs == NULL)
        return OL_ENOMEM;
    *out = id;
    return 0;
}

static size_t items_count(const plan *p) {
    size_t n = 0;
    for (size_t i = 0; i < p->n_products; i++) {
        char *const *envs;
        n += plan_product_environments(p, i, &envs);
    }
    return n;
}

/* Item it of product (index into the plan) in environment: its identity (profile) and
 * region: a products-file line's region, else the environment's, else the profile's. */
static int item_init(run *r, ol_item *it, size_t product, const char *environment) {
    const plan *p = r->plan;
    const plan_product *pp = p->product_settings ? &p->product_settings[product] : NULL;
    size_t len = strlen(p->products[product]) + strlen(environment) + 2;
    const char *profile, *region;
    it->run = r; /* first: item_bag_free tells a built item by it */
    identities_of_item(p, product, environment, &profile, &region);
    int rc = identity_for(r, profile, environment, &it->ident);
    if (rc != 0)
        return rc;
    it->product = p->products[product];
    it->product_index = product;
    it->environment = (char *)environment;
    it->region = pp && pp->region ? pp->region
                 : region != NULL ? (char *)region
                                  : it->ident->region;
    it->name = malloc(len);
    if (it->name == NULL)
        return OL_ENOMEM;
    snprintf(it->name, len, "%s-%s", p->products[product], environment);
    bag_init(&it->bag);
    list_init(&it->live); /* its stages come when it starts (scheduler.c) */
    return 0;
}

static int items_build(run *r) {
    const plan *p = r->plan;
    r->n_items = items_count(p);
    r->items = calloc(r->n_items ? r->n_items : 1, sizeof(*r->items));
    r->idents = calloc(r->n_items ? r->n_items : 1, sizeof(*r->idents));
    if (r->items == NULL || r->idents == NULL)
        return OL_ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < p->n_products; i++) {
        char *const *envs;
        size_t n_envs = plan_product_environments(p, i, &envs);
        for (size_t e = 0; e < n_envs; e++) {
            if (!item_selected(p, p->products[i], envs[e]))
                continue;
            r->items[k].index = k;
            int rc = item_init(r, &r->items[k], i, envs[e]);
            k++;
            if (rc != 0)
                return rc;
        }
    }
    r->n_items = k;
    return 0;
}

/* Adds client c's counters to *to. */
static void stats_add(aws_stats *to, const aws_client *c) {
    aws_stats st;
    aws_client_stats(c, &st);
    to->requests += st.requests;
    to->attempts += st.attempts;
    to->retries += st.retries;
    to->throttled += st.throttled;
    to->quota_exhausted += st.quota_exhausted;
}

void pipeline_close_clients(run *r) {
    for (size_t i = 0; i < r->n_idents; i++) {
        run_identity *id = &r->idents[i];
        if (id->aws == NULL)
            continue;
        stats_add(&r->stats, id->aws);
        aws_client_close(id->aws, NULL, NULL);
        id->aws = NULL;
    }
}

static void items_free(run *r) {
    for (size_t i = 0; i < r->n_items; i++) {
        ol_item *it = &r->items[i];
        if (it->locked) /* an item interrupted before it ended */
            itemlock_release(r->lock_fd, it->name);
        scheduler_item_release(it);
        free(it->name);
        item_bag_free(it);
    }
    free(r->items);
    for (size_t i = 0; r->idents && i < r->n_idents; i++) {
        free(r->idents[i].region);
        free(r->idents[i].envs);
    }
    free(r->idents);
    if (r->lock_fd >= 0)
        close(r->lock_fd); /* drops every item lock still held */
}

static int stage_init(run *r, ol_stage *st, const plan_stage *ps, size_t s) {
    st->run = r;
    st->ps = ps;
    st->index = s;
    const ol_plugin *d = ps->plugin->desc;
    if (d->init) {
        int rc = d->init(st, &run_host_api, &st->state);
        if (rc < 0) {
            fprintf(stderr, "error: stage '%s' (%s) refused its configuration: %s\n", d->name,
                    ps->plugin->path, ol_strerror(rc));
            return rc;
        }
    }
    st->initialised = 1;
    return 0;
}

/* The stage instances of products with their own options (products file), and each
 * item's pointer to its product's. */
static int product_stages_init(run *r) {
    const plan *p = r->plan;
    if (p->product_settings == NULL)
        return 0;
    if ((r->product_stages = calloc(p->n_products, sizeof(*r->product_stages))) == NULL)
        return OL_ENOMEM;
    for (size_t i = 0; i < p->n_products; i++) {
        const plan_product *pp = &p->product_settings[i];
        if (pp->stages == NULL)
            continue;
        if ((r->product_stages[i] = calloc(p->n_stages, sizeof(ol_stage *))) == NULL)
            return OL_ENOMEM;
        for (size_t s = 0; s < p->n_stages; s++) {
            if (pp->stages[s].opts == NULL)
                continue;
            if ((r->product_stages[i][s] = calloc(1, sizeof(ol_stage))) == NULL)
                return OL_ENOMEM;
            int rc = stage_init(r, r->product_stages[i][s], &pp->stages[s], s);
            if (rc != 0)
                return rc;
        }
    }
    for (size_t i = 0, k = 0; i < p->n_products; i++) { /* items_build's order */
        char *const *envs;
        for (size_t e = plan_product_environments(p, i, &envs); e > 0; e--)
            r->items[k++].own = r->product_stages[i];
    }
    return 0;
}

/* The products-file line of item's product, 0 when it came from the command line. */
static size_t item_line(const run *r, const ol_item *item) {
    const plan *p = r->plan;
    for (size_t i = 0; p->product_lines != NULL && i < p->n_products; i++)
        if (p->products[i] == item->product)
            return p->product_lines[i];
    return 0;
}

/* init every stage, then validate every item: all before the first request. */
static int stages_prepare(run *r) {
    const plan *p = r->plan;
    r->stages = calloc(p->n_stages ? p->n_stages : 1, sizeof(*r->stages));
    if (r->stages == NULL)
        return OL_ENOMEM;
    for (size_t s = 0; s < p->n_stages; s++) {
        int rc = stage_init(r, &r->stages[s], &p->stages[s], s);
        if (rc != 0)
            return rc;
    }
    int rc = product_stages_init(r);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < r->n_items; i++)
        for (size_t s = 0; s < p->n_stages; s++) {
            ol_stage *st = run_item_stage(&r->items[i], s);
            const ol_plugin *d = st->ps->plugin->desc;
            if (d->validate == NULL || !plan_stage_applies(p, r->items[i].product_index, s))
                continue;
            rc = d->validate(st, &r->items[i], st->state);
            if (rc < 0) {
                size_t line = item_line(r, &r->items[i]);
                fprintf(stderr, "error: stage '%s' rejected item '%s'", d->name, r->items[i].name);
                if (line > 0)
                    fprintf(stderr, " (%s:%zu)", p->products_file, line);
                fprintf(stderr, ": %s\n", ol_strerror(rc));
                return rc;
            }
        }
    return 0;
}

static void stage_fini(ol_stage *st) {
    if (st->initialised && st->ps->plugin->desc->fini)
        st->ps->plugin->desc->fini(st->state);
}

static void stages_fini(run *r) {
    for (size_t i = 0; r->product_stages && i < r->plan->n_products; i++) {
        for (size_t s = 0; r->product_stages[i] && s < r->plan->n_stages; s++)
            if (r->product_stages[i][s] != NULL) {
                stage_fini(r->product_stages[i][s]);
                free(r->product_stages[i][s]);
            }
        free(r->product_stages[i]);
    }
    free(r->product_stages);
    for (size_t s = 0; r->stages && s < r->plan->n_stages; s++)
        stage_fini(&r->stages[s]);
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
    int rc = items_build(r);
    if (rc == OL_ENOMEM)
        fprintf(stderr, "error: out of memory\n");
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
    journal_attach_loop(r->journal, &r->loop);
    if (journal_warnings(r->journal) != NULL)
        fprintf(stderr, "warning: %s\n", journal_warnings(r->journal));
    /* Commands that change things run each item alone across opsline processes. */
    char *lock_dir = NULL;
    if (p->mode != OL_MODE_PLAN && p->mode != OL_MODE_STATUS &&
        ((rc = itemlock_dir(&lock_dir, &err)) != 0 ||
         (rc = itemlock_open(lock_dir, &r->lock_fd, &err)) != 0)) {
        free(lock_dir);
        fprintf(stderr, "error: %s\n", err ? err : ol_strerror(rc));
        free(err);
        return rc;
    }
    free(lock_dir);
    r->report = report_new(p->json, p->verbose, r->n_items);
    if (r->report == NULL)
        return OL_ENOMEM;
    report_set_mode(r->report, p->mode);
    report_set_quiet(r->report, p->quiet);
    return 0;
}

/* The progress display's counts: items from the scheduler, requests from the AWS client. */
static void run_count(void *arg, progress_counts *c) {
    run *r = arg;
    aws_stats st = r->stats;
    for (size_t i = 0; r->idents != NULL && i < r->n_idents; i++)
        if (r->idents[i].aws != NULL) /* closed: its figures are in r->stats */
            stats_add(&st, r->idents[i].aws);
    c->total = r->n_items;
    c->done = r->finished;
    c->failed = report_failed(r->report);
    c->in_flight = r->active + r->parked;
    c->requests = st.requests;
    c->throttled = st.throttled;
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
    if (report_progress_start(r->report, &r->loop, run_count, r) != 0)
        run_print(r, "warning: no progress display (out of memory)\n");
}

/* Teardown in one place: what stages started still completes (cancelled) before their
 * state goes, then the stages, the services, the items and the loop. */
static void run_teardown(run *r) {
    pipeline_close_clients(r);
    services_cancel_all(r->svc);
    uv_run(&r->loop, UV_RUN_DEFAULT);
    stages_fini(r);
    services_free(r->svc);
    items_free(r);
    masker_free(&r->masker);
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
    r.lock_fd = -1;
    list_init(&r.live);
    masker_init(&r.masker);
    list_init(&r.ended);
    list_init(&r.lock_wait);
    if (uv_loop_init(&r.loop) != 0 || services_new(&r.loop, &r.svc) != 0) {
        fprintf(stderr, "error: could not start the event loop\n");
        return 2;
    }
    if (run_setup(&r) == 0) {
        run_handles_start(&r);
        start_prepares(&r);
        uv_run(&r.loop, UV_RUN_DEFAULT);
        int failed = report_finish(r.report, &r.stats, r.creds_rejected, r.interrupted);
        code = r.preflight_config ? 2 : (failed || r.preflight_failed || r.interrupted) ? 1 : 0;
        if (code == 0 && p->mode == OL_MODE_PLAN && report_changes(r.report) > 0)
            code = PIPELINE_EXIT_CHANGES;
    }
    run_teardown(&r);
    return code;
}

size_t plan_product_environments(const plan *p, size_t i, char *const **out) {
    const plan_product *pp = p->product_settings ? &p->product_settings[i] : NULL;
    if (pp != NULL && pp->environments != NULL) {
        *out = pp->environments;
        return pp->n_environments;
    }
    *out = p->environments;
    return p->n_environments;
}

int plan_stage_applies(const plan *p, size_t i, size_t s) {
    const plan_product *pp = p->product_settings ? &p->product_settings[i] : NULL;
    if (!p->stages[s].is_store)
        return 1;
    return pp != NULL && pp->stores != NULL ? pp->stores[s] : !p->stages[s].listed_only;
}

static void plan_product_free(plan_product *pp, size_t n_stages) {
    for (size_t e = 0; e < pp->n_environments; e++)
        free(pp->environments[e]);
    free(pp->environments);
    free(pp->region);
    for (size_t s = 0; pp->stages != NULL && s < n_stages; s++)
        options_free(pp->stages[s].opts);
    free(pp->stages);
    free(pp->stores);
}

void plan_free(plan *p) {
    for (size_t i = 0; i < p->n_products; i++) {
        free(p->products[i]);
        if (p->product_settings != NULL)
            plan_product_free(&p->product_settings[i], p->n_stages);
    }
    free(p->product_settings);
    free(p->product_lines);
    free(p->products_file);
    free(p->products);
    for (size_t i = 0; i < p->n_environments; i++)
        free(p->environments[i]);
    free(p->environments);
    for (size_t s = 0; s < p->n_stages; s++) {
        options_free(p->stages[s].opts);
        free(p->stages[s].needs);
    }
    free(p->stages);
    for (size_t e = 0; e < p->n_environments; e++) {
        free(p->env_profiles ? p->env_profiles[e] : NULL);
        free(p->env_regions ? p->env_regions[e] : NULL);
    }
    free(p->env_profiles);
    free(p->env_regions);
    free(p->region);
    free(p->profile);
    free(p->state_dir);
    for (size_t i = 0; i < p->n_only; i++)
        free(p->only[i]);
    free(p->only);
    memset(p, 0, sizeof(*p));
}
