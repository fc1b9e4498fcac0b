/* Tests for pipeline: pipeline_run over plans of in-process test stages (static ol_plugin
 * descriptors, no dlopen), with the STS preflight and the stages' AWS calls answered by a
 * scripted server running its own libuv loop in a second thread (pipeline_run blocks in
 * its own loop). stderr is captured to check what the user sees: secrets masked, the
 * preflight's message, the interrupt. */
#include <signal.h>
#include <unistd.h>

#include "harness.h"
#include "loader.h"
#include "options.h"
#include "pipeline.h"
#include "scripted_server.h"

#define SECRET HARNESS_SECRET
#define ITEM_SECRET "ItemSecretValue0123456789abcdefghijklmnop"

/* ---- the scripted server, in its own thread: every request gets STS_OK ---------------- */

#define STS_OK                                                                                     \
    "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 202\r\n\r\n"                     \
    "<GetCallerIdentityResponse><GetCallerIdentityResult><Arn>arn:aws:iam::123456789012:user/"     \
    "t</Arn><UserId>AIDA</UserId><Account>123456789012</Account></GetCallerIdentityResult>"        \
    "</GetCallerIdentityResponse>\n"

/* ---- test stages ---------------------------------------------------------------------- */

static const ol_host *g_host;
static unsigned g_applied[8]; /* apply calls per stage id */
static unsigned g_completed;  /* aws callbacks that completed a stage */

typedef struct op {
    ol_stage *stage;
    ol_item *item;
} op;

static int st_init(ol_stage *stage, const ol_host *host, void **state) {
    (void)stage;
    g_host = host;
    *state = NULL;
    return 0;
}

/* secret: stores a secret in the bag and completes synchronously, inside apply. */
static int secret_apply(ol_stage *stage, ol_item *item, void *state) {
    (void)state;
    g_applied[0]++;
    g_host->item_set(item, "iam.secret_access_key", ITEM_SECRET, OL_BAG_SECRET);
    g_host->done(stage, item, OL_OUTCOME_CREATED, NULL);
    return 0;
}

static void on_aws(void *arg, const ol_aws_response *res) {
    op *o = arg;
    g_completed++;
    g_host->done(o->stage, o->item, res->result == 0 ? OL_OUTCOME_UNCHANGED : OL_OUTCOME_FAILED,
                 res->result == 0 ? NULL : "AWS call failed");
    free(o);
}

static int send_sts(ol_stage *stage, ol_item *item) {
    static const ol_kv params[] = {{"Action", "GetCallerIdentity"}, {"Version", "2011-06-15"}};
    ol_aws_request req = {.struct_size = sizeof(req),
                          .service = "sts",
                          .method = "POST",
                          .params = params,
                          .n_params = 2};
    op *o = malloc(sizeof(*o));
    if (o == NULL)
        return OL_ENOMEM;
    o->stage = stage;
    o->item = item;
    int rc = g_host->aws_send(item, &req, on_aws, o);
    if (rc != 0)
        free(o);
    return rc;
}

/* logger: logs a long line whose secret straddles 2048 bytes, then completes from an AWS
 * callback. With g_interrupt set, the first item's apply also raises SIGINT. */
static int g_interrupt;
static int logger_apply(ol_stage *stage, ol_item *item, void *state) {
    (void)state;
    g_applied[1]++;
    g_host->log(stage, item, OL_LOG_WARN, "%2030s|%s|", "pad",
                g_host->item_get(item, "iam.secret_access_key"));
    if (g_interrupt && g_applied[1] == 1)
        g_host->checkpoint(item, "test.interrupt"); /* a first Ctrl-C, right here */
    return send_sts(stage, item);
}

/* store: needs logger; completes synchronously. It stands for a secret store stage. */
static int store_apply(ol_stage *stage, ol_item *item, void *state) {
    (void)state;
    g_applied[2]++;
    g_host->done(stage, item, OL_OUTCOME_CREATED, NULL);
    return 0;
}

/* sloppy: calls done and then returns an error (a plugin bug the host must absorb). */
static int sloppy_apply(ol_stage *stage, ol_item *item, void *state) {
    (void)state;
    g_applied[3]++;
    g_host->done(stage, item, OL_OUTCOME_UNCHANGED, NULL);
    g_host->done(stage, item, OL_OUTCOME_FAILED, "second done");
    return OL_EINVAL;
}

/* leaky: tries to journal the item's secret (a plugin bug the host must refuse). */
static int g_leak_rc[3];
static int leaky_apply(ol_stage *stage, ol_item *item, void *state) {
    (void)state;
    g_applied[4]++;
    g_host->item_set(item, OL_KEY_ACCESS_KEY_ID, "AKIAEXAMPLE", 0);
    g_leak_rc[0] = g_host->journal_append(item, stage, "key", ITEM_SECRET);
    const char *argv[] = {"echo", "--key=" ITEM_SECRET, NULL};
    ol_proc_spec spec = {.struct_size = sizeof(spec), .argv = argv};
    g_leak_rc[1] = g_host->proc_run(stage, item, &spec, NULL, NULL);
    g_leak_rc[2] = g_host->journal_append(item, stage, "harmless", "AKIAEXAMPLE");
    g_host->done(stage, item, OL_OUTCOME_UNCHANGED, NULL);
    return 0;
}

static const char *const needs_secret[] = {"secret", NULL};
static const char *const needs_logger[] = {"logger", NULL};

#define STAGE(nm, ap, nd)                                                                          \
    {                                                                                              \
        .abi_major = OL_ABI_MAJOR, .abi_minor = OL_ABI_MINOR, .struct_size = sizeof(ol_plugin),    \
        .name = nm, .version = "1", .description = "test", .needs = nd, .init = st_init,           \
        .apply = ap                                                                                \
    }

static const ol_plugin p_secret = STAGE("secret", secret_apply, NULL);
static const ol_plugin p_logger = STAGE("logger", logger_apply, needs_secret);
static const ol_plugin p_store = STAGE("store", store_apply, needs_logger);
static const ol_plugin p_sloppy = STAGE("sloppy", sloppy_apply, NULL);
static const ol_plugin p_leaky = STAGE("leaky", leaky_apply, needs_secret);

/* hang: starts and never completes (a plugin bug or a hung program). */
static int hang_apply(ol_stage *stage, ol_item *item, void *state) {
    (void)stage;
    (void)item;
    (void)state;
    g_applied[5]++;
    return 0;
}
static const ol_plugin p_hang = STAGE("hang", hang_apply, NULL);

/* late: completes from a timer g_late_ms after apply; with g_late_twice the first item also
 * completes at once, so its timer's done() comes after it has ended (while the next item,
 * whose timer started later, still runs). */
static unsigned g_late_ms;
static int g_late_twice;
static void late_done(void *arg, int status) {
    op *o = arg;
    if (status == 0) {
        g_completed++;
        g_host->done(o->stage, o->item, OL_OUTCOME_CREATED, NULL);
    }
    free(o);
}
static int late_apply(ol_stage *stage, ol_item *item, void *state) {
    (void)state;
    g_applied[6]++;
    op *o = malloc(sizeof(*o));
    if (o == NULL)
        return OL_ENOMEM;
    o->stage = stage;
    o->item = item;
    int rc = g_host->timer_start(stage, g_late_ms, late_done, o, NULL);
    if (rc != 0) {
        free(o);
        return rc;
    }
    if (g_late_twice && g_applied[6] == 1)
        g_host->done(stage, item, OL_OUTCOME_UNCHANGED, NULL);
    return 0;
}
static const ol_plugin p_late = STAGE("late", late_apply, NULL);

/* forger: fails with a reason holding what a hostile server might send. */
static int forger_apply(ol_stage *stage, ol_item *item, void *state) {
    (void)state;
    g_host->done(stage, item, OL_OUTCOME_FAILED, "denied\nerror: forged line\x1b[2J");
    return 0;
}
static const ol_plugin p_forger = STAGE("forger", forger_apply, NULL);

/* labelled: an option "label" read in init; apply records what its instance holds. */
typedef struct labelled_state {
    const char *label;
} labelled_state;
static unsigned g_inits;
static char g_seen[8][96]; /* "item region label" per apply */
static int labelled_init(ol_stage *stage, const ol_host *host, void **state) {
    labelled_state *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return OL_ENOMEM;
    g_host = host;
    g_inits++;
    host->opt_bind(stage, st);
    *state = st;
    return 0;
}
static int labelled_apply(ol_stage *stage, ol_item *item, void *state) {
    labelled_state *st = state;
    if (g_applied[6] < 8)
        snprintf(g_seen[g_applied[6]], sizeof(g_seen[0]), "%s %s %s", g_host->item_name(item),
                 g_host->item_region(item), st->label);
    g_applied[6]++;
    g_host->done(stage, item, OL_OUTCOME_UNCHANGED, NULL);
    return 0;
}
static void labelled_fini(void *state) {
    free(state);
}
static const ol_option_def labelled_options[] = {
    {"label", OL_OPT_STRING, "shared", "a label", OL_OPT_BIND, offsetof(labelled_state, label)},
};
static const ol_plugin p_labelled = {.abi_major = OL_ABI_MAJOR,
                                     .abi_minor = OL_ABI_MINOR,
                                     .struct_size = sizeof(ol_plugin),
                                     .name = "labelled",
                                     .version = "1",
                                     .description = "test",
                                     .init = labelled_init,
                                     .apply = labelled_apply,
                                     .fini = labelled_fini,
                                     OL_OPTIONS(labelled_options)};

/* ---- fixture -------------------------------------------------------------------------- */

typedef struct fixture {
    scripted_server srv;
    char dir[64];
    char err_path[96];
    loader_plugin lp[4];
    plan p;
    char *stderr_text;
} fixture;

static void fixture_init(fixture *fx, const ol_plugin *const *stages, size_t n_stages,
                         size_t n_products) {
    char url[64];
    memset(fx, 0, sizeof(*fx));
    memset(g_applied, 0, sizeof(g_applied));
    g_completed = 0;
    g_interrupt = 0;
    fx->srv.fallback = STS_OK;
    scripted_server_start(&fx->srv, NULL);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", fx->srv.port);
    setenv("AWS_ENDPOINT_URL", url, 1);
    harness_tmpdir(fx->dir, sizeof(fx->dir), "pipeline");
    snprintf(fx->err_path, sizeof(fx->err_path), "%s/stderr", fx->dir);

    plan *p = &fx->p;
    p->n_products = n_products;
    p->products = calloc(n_products, sizeof(char *));
    assert_non_null(p->products);
    for (size_t i = 0; i < n_products; i++) {
        char name[32];
        snprintf(name, sizeof(name), "prod%zu", i);
        p->products[i] = strdup(name);
    }
    p->n_environments = 1;
    p->environments = calloc(1, sizeof(char *));
    assert_non_null(p->environments);
    p->environments[0] = strdup("dev");
    p->stages = calloc(n_stages, sizeof(plan_stage));
    assert_non_null(p->stages);
    p->n_stages = n_stages;
    for (size_t s = 0; s < n_stages; s++) {
        char *err = NULL;
        fx->lp[s].desc = stages[s];
        fx->lp[s].path = (char *)"(built in)";
        p->stages[s].plugin = &fx->lp[s];
        assert_int_equal(options_parse(stages[s], NULL, stages[s]->name, &p->stages[s].opts, &err),
                         0);
        p->stages[s].timeout_ms = 60000;
        p->stages[s].needs = calloc(1, sizeof(size_t));
        assert_non_null(p->stages[s].needs);
        /* In these plans a stage needs at most its predecessor. */
        if (stages[s]->needs != NULL && s > 0) {
            p->stages[s].needs[0] = s - 1;
            p->stages[s].n_needs = 1;
        }
    }
    p->concurrency = 1;
    p->state_dir = strdup(fx->dir);
}

/* Runs the plan with stderr captured into fx->stderr_text. */
static int fixture_run(fixture *fx) {
    /* A run scrubs the credentials from the environment once the client has read them. */
    setenv("AWS_ACCESS_KEY_ID", HARNESS_AKID, 1);
    setenv("AWS_SECRET_ACCESS_KEY", SECRET, 1);
    fflush(stderr);
    int saved = dup(2);
    FILE *f = fopen(fx->err_path, "w+");
    assert_non_null(f);
    dup2(fileno(f), 2);
    int code = pipeline_run(&fx->p);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    long n = ftell(f);
    fx->stderr_text = calloc(1, (size_t)n + 1);
    assert_non_null(fx->stderr_text);
    rewind(f);
    assert_int_equal(fread(fx->stderr_text, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    return code;
}

static void fixture_finish(fixture *fx) {
    scripted_server_stop(&fx->srv);
    plan_free(&fx->p);
    free(fx->stderr_text);
    harness_rmtree(fx->dir);
}

static int setup_env(void **state) {
    (void)state;
    /* A shell starts background jobs with SIGINT ignored; the interrupt test needs it. */
    signal(SIGINT, SIG_DFL);
    harness_aws_env();
    setenv("AWS_REGION", "eu-north-1", 1);
    setenv("AWS_MAX_ATTEMPTS", "1", 1);
    setenv("OPSLINE_RETRY_BASE_MS", "1", 1);
    return 0;
}

/* ---- tests ---------------------------------------------------------------------------- */

static void runs_a_dag_of_synchronous_and_asynchronous_stages_for_every_item(void **state) {
    setenv("OPSLINE_TEST_DB_PASSWORD", "hunter2", 1);
    static const ol_plugin *const stages[] = {&p_secret, &p_logger, &p_store};
    fixture fx;
    (void)state;
    fixture_init(&fx, stages, 3, 3);
    assert_int_equal(fixture_run(&fx), 0);
    assert_int_equal(g_applied[0], 3);
    assert_int_equal(g_applied[1], 3);
    assert_int_equal(g_applied[2], 3);
    assert_int_equal(g_completed, 3);
    /* The secret left the environment block once the client had it, and so did every
     * other secret-named variable. */
    assert_null(getenv("AWS_SECRET_ACCESS_KEY"));
    assert_null(getenv("OPSLINE_TEST_DB_PASSWORD"));
    fixture_finish(&fx);
}

static void masks_a_secret_in_a_log_line_longer_than_any_buffer(void **state) {
    static const ol_plugin *const stages[] = {&p_secret, &p_logger};
    fixture fx;
    (void)state;
    fixture_init(&fx, stages, 2, 1);
    assert_int_equal(fixture_run(&fx), 0);
    /* Not the secret, nor any long piece of it. */
    assert_null(strstr(fx.stderr_text, "ItemSecretValue"));
    assert_null(strstr(fx.stderr_text, "abcdefghijklmnop"));
    assert_non_null(strstr(fx.stderr_text, "|****"));
    assert_null(strstr(fx.stderr_text, SECRET));
    fixture_finish(&fx);
}

static void absorbs_a_stage_that_completes_twice_and_then_returns_an_error(void **state) {
    static const ol_plugin *const stages[] = {&p_sloppy};
    fixture fx;
    (void)state;
    fixture_init(&fx, stages, 1, 2);
    assert_int_equal(fixture_run(&fx), 0);
    assert_int_equal(g_applied[3], 2);
    assert_non_null(strstr(fx.stderr_text, "plugin bug"));
    fixture_finish(&fx);
}

static void refuses_to_journal_a_secret(void **state) {
    static const ol_plugin *const stages[] = {&p_secret, &p_leaky};
    fixture fx;
    char path[128], buf[4096];
    (void)state;
    fixture_init(&fx, stages, 2, 1);
    assert_int_equal(fixture_run(&fx), 0);
    assert_int_equal(g_applied[4], 1);
    assert_int_equal(g_leak_rc[0], OL_ESECRET);
    assert_int_equal(g_leak_rc[1], OL_ESECRET);
    assert_int_equal(g_leak_rc[2], 0);
    snprintf(path, sizeof(path), "%s/journal.jsonl", fx.dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    assert_non_null(strstr(buf, "harmless"));
    assert_null(strstr(buf, ITEM_SECRET));
    fixture_finish(&fx);
}

static void finishes_the_item_in_progress_on_interrupt_and_starts_no_other(void **state) {
    static const ol_plugin *const stages[] = {&p_secret, &p_logger, &p_store};
    fixture fx;
    (void)state;
    fixture_init(&fx, stages, 3, 3);
    g_interrupt = 1;
    setenv("OPSLINE_TEST_INTERRUPT_AT", "test.interrupt", 1);
    int code = fixture_run(&fx);
    unsetenv("OPSLINE_TEST_INTERRUPT_AT");
    g_interrupt = 0;
    assert_non_null(strstr(fx.stderr_text, "interrupted"));
    /* ... and it names what it still waits for. */
    assert_non_null(strstr(fx.stderr_text, "waiting for prod0-dev: stage 'logger'"));
    assert_int_equal(code, 1);
    /* The first item ran to its end: its secret reached the store stage. */
    assert_int_equal(g_applied[1], 1);
    assert_int_equal(g_applied[2], 1);
    fixture_finish(&fx);
}

static void fails_a_stage_that_never_completes_naming_it_and_the_item(void **state) {
    static const ol_plugin *const stages[] = {&p_hang};
    fixture fx;
    (void)state;
    fixture_init(&fx, stages, 1, 2);
    fx.p.stages[0].timeout_ms = 100;
    assert_int_equal(fixture_run(&fx), 1);
    assert_int_equal(g_applied[5], 2); /* the second item ran after the first was abandoned */
    assert_non_null(strstr(fx.stderr_text, "stage 'hang' did not complete within 0.1 s"));
    assert_non_null(strstr(fx.stderr_text, "for item prod0-"));
    fixture_finish(&fx);
}

/* The item ends when its stage times out; the stage's own late done() still finds it (its
 * state is kept) and is only logged. */
static void ignores_a_done_that_comes_after_the_time_limit_and_the_items_end(void **state) {
    static const ol_plugin *const stages[] = {&p_late};
    fixture fx;
    (void)state;
    fixture_init(&fx, stages, 1, 3);
    fx.p.stages[0].timeout_ms = 100;
    g_late_ms = 250;
    g_late_twice = 0;
    assert_int_equal(fixture_run(&fx), 1);
    assert_int_equal(g_applied[6], 3);
    assert_true(g_completed >= 1); /* at least the first item's late done() ran */
    assert_non_null(strstr(fx.stderr_text, "did not complete within 0.1 s"));
    assert_non_null(
        strstr(fx.stderr_text, "the stage completed after it had failed (its time limit?)"));
    fixture_finish(&fx);
}

/* A stage that completes again once its item has ended (its state freed): logged, ignored,
 * no use of freed memory (ASan). */
static void ignores_a_second_done_once_the_item_has_ended(void **state) {
    static const ol_plugin *const stages[] = {&p_late};
    fixture fx;
    (void)state;
    fixture_init(&fx, stages, 1, 3);
    g_late_ms = 20;
    g_late_twice = 1;
    assert_int_equal(fixture_run(&fx), 0);
    assert_int_equal(g_applied[6], 3);
    assert_true(g_completed >= 1);
    assert_non_null(strstr(fx.stderr_text, "done() for an item that has ended; ignored"));
    g_late_twice = 0;
    fixture_finish(&fx);
}

static void escapes_control_characters_in_a_reason(void **state) {
    static const ol_plugin *const stages[] = {&p_forger};
    fixture fx;
    (void)state;
    fixture_init(&fx, stages, 1, 1);
    assert_int_equal(fixture_run(&fx), 1);
    assert_null(strstr(fx.stderr_text, "\nerror: forged line"));
    assert_null(strstr(fx.stderr_text, "\x1b"));
    assert_non_null(strstr(fx.stderr_text, "denied\\x0aerror: forged line\\x1b[2J"));
    fixture_finish(&fx);
}

static void says_sts_was_unreachable_rather_than_credentials_rejected(void **state) {
    static const ol_plugin *const stages[] = {&p_secret};
    fixture fx;
    char url[64];
    (void)state;
    fixture_init(&fx, stages, 1, 1);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", harness_unused_port());
    setenv("AWS_ENDPOINT_URL", url, 1);

    assert_int_equal(fixture_run(&fx), 1);
    assert_int_equal(g_applied[0], 0);
    assert_null(strstr(fx.stderr_text, "rejected"));
    assert_non_null(strstr(fx.stderr_text, "could not check"));
    fixture_finish(&fx);
}

/* A product with its own settings (products file) gets its environments, its region and
 * its own instance of a stage whose options it sets; the others share the run's. */
static void a_product_with_its_own_settings_runs_its_own_stage_instance(void **state) {
    static const ol_plugin *const stages[] = {&p_labelled};
    fixture fx;
    char *err = NULL;
    (void)state;
    fixture_init(&fx, stages, 1, 3);
    g_inits = 0;
    plan *p = &fx.p;
    p->product_settings = calloc(3, sizeof(plan_product));
    assert_non_null(p->product_settings);
    plan_product *own = &p->product_settings[1];
    own->n_environments = 2;
    own->environments = calloc(2, sizeof(char *));
    assert_non_null(own->environments);
    own->environments[0] = strdup("blue");
    own->environments[1] = strdup("green");
    own->region = strdup("us-east-1");
    own->stages = calloc(1, sizeof(plan_stage));
    assert_non_null(own->stages);
    own->stages[0] = p->stages[0];
    own->stages[0].opts = NULL;
    assert_int_equal(options_clone(p->stages[0].opts, "line 2", &own->stages[0].opts), 0);
    json_t *o = json_pack("{s:s}", "label", "own");
    assert_int_equal(options_apply_json(own->stages[0].opts, o, &err), 0);
    json_decref(o);

    assert_int_equal(fixture_run(&fx), 0);
    assert_int_equal(g_inits, 2);
    assert_int_equal(g_applied[6], 4);
    assert_string_equal(g_seen[0], "prod0-dev eu-north-1 shared");
    assert_string_equal(g_seen[1], "prod1-blue us-east-1 own");
    assert_string_equal(g_seen[2], "prod1-green us-east-1 own");
    assert_string_equal(g_seen[3], "prod2-dev eu-north-1 shared");
    /* the plan's options are the run's: the clone did not change them */
    assert_string_equal(options_string(p->stages[0].opts, "label"), "shared");
    fixture_finish(&fx);
}

/* ---- the lifecycle commands: which entry point runs, in which order -------------------- */

static char g_order[256];         /* "<mode letter>:<stage> " per call, in call order */
static const char *g_fail_rotate; /* this stage's rotate fails */

static int lc_record(ol_stage *stage, ol_item *item, const char *what, ol_outcome outcome) {
    size_t n = strlen(g_order);
    snprintf(g_order + n, sizeof(g_order) - n, "%s:%s ", what, g_host->stage_name(stage));
    g_host->done(stage, item, outcome, outcome == OL_OUTCOME_FAILED ? "refused" : NULL);
    return 0;
}
static int lc_destroy(ol_stage *stage, ol_item *item, void *state) {
    (void)state;
    return lc_record(stage, item, "d", OL_OUTCOME_DELETED);
}
static int lc_rotate(ol_stage *stage, ol_item *item, void *state) {
    (void)state;
    int fail = g_fail_rotate && strcmp(g_fail_rotate, g_host->stage_name(stage)) == 0;
    return lc_record(stage, item, "r", fail ? OL_OUTCOME_FAILED : OL_OUTCOME_CREATED);
}
static int lc_commit(ol_stage *stage, ol_item *item, void *state) {
    (void)state;
    return lc_record(stage, item, "c", OL_OUTCOME_UPDATED);
}
static int lc_plan(ol_stage *stage, ol_item *item, void *state) {
    (void)state;
    g_host->report_fact(stage, item, "seen", "yes");
    return lc_record(stage, item, "p", OL_OUTCOME_UPDATED);
}

#define LC_STAGE(nm, nd, cm)                                                                       \
    {                                                                                              \
        .abi_major = OL_ABI_MAJOR, .abi_minor = OL_ABI_MINOR, .struct_size = sizeof(ol_plugin),    \
        .name = nm, .version = "1", .description = "test", .needs = nd, .init = st_init,           \
        .apply = store_apply, .plan = lc_plan, .destroy = lc_destroy, .rotate = lc_rotate,         \
        .rotate_commit = cm                                                                        \
    }

static const char *const needs_one[] = {"one", NULL};
static const char *const needs_two[] = {"two", NULL};
static const ol_plugin p_one = LC_STAGE("one", NULL, lc_commit);
static const ol_plugin p_two = LC_STAGE("two", needs_one, NULL);
static const ol_plugin p_three = LC_STAGE("three", needs_two, lc_commit);

static int lc_run(int mode, const char *fail_rotate) {
    static const ol_plugin *const stages[] = {&p_one, &p_two, &p_three, &p_secret};
    fixture fx;
    g_order[0] = '\0';
    g_fail_rotate = fail_rotate;
    fixture_init(&fx, stages, 4, 1);
    fx.p.mode = mode;
    int code = fixture_run(&fx);
    fixture_finish(&fx);
    return code;
}

static void destroy_runs_the_stages_in_the_reverse_order_of_their_needs(void **state) {
    (void)state;
    /* "secret" has no destroy: absent, at once, in its own place. */
    assert_int_equal(lc_run(OL_MODE_DESTROY, NULL), 0);
    assert_string_equal(g_order, "d:three d:two d:one ");
}

static void rotate_commits_in_order_once_every_stage_succeeded(void **state) {
    (void)state;
    assert_int_equal(lc_run(OL_MODE_ROTATE, NULL), 0);
    /* "secret" has no rotate: it takes no part */
    assert_string_equal(g_order, "r:one r:two r:three c:one c:three ");
    assert_int_equal(lc_run(OL_MODE_ROTATE, "three"), 1);
    assert_string_equal(g_order, "r:one r:two r:three ");
}

static void plan_calls_plan_and_exits_3_when_changes_are_pending(void **state) {
    (void)state;
    assert_int_equal(lc_run(OL_MODE_PLAN, NULL), PIPELINE_EXIT_CHANGES);
    assert_string_equal(g_order, "p:one p:two p:three ");
    assert_int_equal(g_applied[0] + g_applied[2], 0); /* no apply ran */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_product_with_its_own_settings_runs_its_own_stage_instance),
        cmocka_unit_test(destroy_runs_the_stages_in_the_reverse_order_of_their_needs),
        cmocka_unit_test(rotate_commits_in_order_once_every_stage_succeeded),
        cmocka_unit_test(plan_calls_plan_and_exits_3_when_changes_are_pending),
        cmocka_unit_test(runs_a_dag_of_synchronous_and_asynchronous_stages_for_every_item),
        cmocka_unit_test(masks_a_secret_in_a_log_line_longer_than_any_buffer),
        cmocka_unit_test(absorbs_a_stage_that_completes_twice_and_then_returns_an_error),
        cmocka_unit_test(refuses_to_journal_a_secret),
        cmocka_unit_test(finishes_the_item_in_progress_on_interrupt_and_starts_no_other),
        cmocka_unit_test(fails_a_stage_that_never_completes_naming_it_and_the_item),
        cmocka_unit_test(ignores_a_done_that_comes_after_the_time_limit_and_the_items_end),
        cmocka_unit_test(ignores_a_second_done_once_the_item_has_ended),
        cmocka_unit_test(escapes_control_characters_in_a_reason),
        cmocka_unit_test(says_sts_was_unreachable_rather_than_credentials_rejected),
    };
    if (getenv("TEST_FILTER") != NULL) /* run one test: a failed one leaves its server up */
        cmocka_set_test_filter(getenv("TEST_FILTER"));
    return cmocka_run_group_tests(tests, setup_env, NULL);
}
