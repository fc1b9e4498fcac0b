/* fake_host: the one ol_host the stage unit tests (test_bucket, test_iam, test_policy) drive
 * a stage through. Options (declared defaults, typed parsing, opt_bind), the item bag, XML,
 * the journal, strerror and format are the host's real modules; what is fake is the world
 * around the stage: one item, AWS requests held for the test to look at and answer (in the
 * order sent with fake_answer, or a chosen one first with fake_pick: a stage may have
 * several in flight), logs, checkpoints and the completion recorded for assertions.
 *
 * Header-only: a test includes it once (its functions are static, unused ones allowed).
 *
 *   fake_start(&bucket_plugin);            in setup: defaults of the stage's declarations
 *   fake_set_opt("encryption", "aws:kms"); as `--set bucket.encryption=aws:kms` would
 *   p->init(NULL, &FH.api, &st);           the stage binds and reads its options
 *   p->apply(NULL, NULL, st);              FH.req is the request, FH.pending is set
 *   fake_answer(&res);                     the stage's callback runs with res, then
 *                                          the journal_append_synced callbacks it caused
 *   fake_stop();                           in teardown */
#ifndef OL_TEST_FAKE_HOST_H
#define OL_TEST_FAKE_HOST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/crypto.h>

#include "aws/xml.h"
#include "bag.h"
#include "error.h"
#include "journal.h"
#include "names.h"
#include "options.h"

#define FAKE_API static __attribute__((unused))
#define FAKE_MAX_PARAMS 128
#define FAKE_MAX_PENDING 16

/* The last request the stage sent; copies, valid until the next send or fake_stop. */
typedef struct fake_request {
    char *service;
    char *method;
    char *bucket; /* NULL when the request named none */
    ol_kv params[FAKE_MAX_PARAMS];
    size_t n_params;
    char *body; /* NUL-terminated copy, or NULL */
    size_t body_len;
    unsigned flags;
    const char *const *consistency_codes; /* the stage's own (static) array */
    unsigned consistency_ms;
    ol_aws_cb cb;
    void *arg;
} fake_request;

typedef struct fake_host {
    ol_host api; /* the table handed to init; a test may replace an entry */
    const ol_plugin *plugin;
    options *opts;
    bag bag;
    journal *journal; /* NULL until fake_use_journal() */
    char journal_dir[64];
    /* The item. */
    const char *product;
    const char *environment;
    const char *name;
    const char *region;
    /* AWS: send_result < 0 makes aws_send refuse with it; on_send sees every request. */
    int send_result;
    void (*on_send)(const ol_aws_request *req);
    fake_request req; /* the oldest unanswered request, or the last answered one */
    int pending;      /* req is unanswered */
    fake_request more[FAKE_MAX_PENDING]; /* unanswered requests after req, in order sent */
    size_t n_more;
    size_t requests;
    /* What the stage reported. */
    int done_calls;
    ol_outcome outcome;
    char reason[1024];
    char logs[16384];  /* "LEVEL text\n" for every line but debug ones */
    char debug[16384]; /* debug lines ("text\n"): what the host shows with -v */
    char last_log[1024];
    ol_log_level last_log_level;
    int n_logs;            /* lines in logs */
    char checkpoints[256]; /* "point;" per host->checkpoint */
    /* journal_append_synced: its callbacks wait here for the end of the current fake_answer
     * (never run from within the call), with sync_result (0: on disk; OL_EIO: the fsync
     * failed). */
    int sync_result;
    ol_synced_cb synced_cb[4];
    void *synced_arg[4];
    size_t n_synced;
} fake_host;

static fake_host FH;

static void fake_append(char *buf, size_t cap, const char *a, const char *b) {
    size_t used = strlen(buf);
    snprintf(buf + used, cap - used, "%s%s\n", a, b);
}

static void fake_log(ol_stage *s, const ol_item *i, ol_log_level level, const char *fmt, ...) {
    static const char *const names[] = {"ERROR ", "WARN ", "INFO ", "DEBUG "};
    (void)s, (void)i;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (level == OL_LOG_DEBUG) {
        fake_append(FH.debug, sizeof(FH.debug), "", line);
        return;
    }
    fake_append(FH.logs, sizeof(FH.logs), names[level], line);
    snprintf(FH.last_log, sizeof(FH.last_log), "%s", line);
    FH.last_log_level = level;
    FH.n_logs++;
}

/* ---- options: the real module ---------------------------------------------------------- */

static const char *fake_opt_string(ol_stage *s, const char *name) {
    (void)s;
    return options_string(FH.opts, name);
}
static int fake_opt_bool(ol_stage *s, const char *name) {
    (void)s;
    return options_bool(FH.opts, name);
}
static long long fake_opt_int(ol_stage *s, const char *name) {
    (void)s;
    return options_int(FH.opts, name);
}
static size_t fake_opt_list(ol_stage *s, const char *name, const char *const **out) {
    (void)s;
    return options_list(FH.opts, name, out);
}
static size_t fake_opt_map(ol_stage *s, const char *name, const ol_kv **out) {
    (void)s;
    return options_map(FH.opts, name, out);
}
static int fake_opt_is_set(ol_stage *s, const char *name) {
    (void)s;
    return options_is_set(FH.opts, name);
}
static int fake_opt_bind(ol_stage *s, void *base) {
    (void)s;
    return options_bind(FH.opts, base);
}

/* ---- the item and its bag: the real bag ------------------------------------------------ */

static const char *fake_item_product(const ol_item *i) {
    (void)i;
    return FH.product;
}
static const char *fake_item_environment(const ol_item *i) {
    (void)i;
    return FH.environment;
}
static const char *fake_item_name(const ol_item *i) {
    (void)i;
    return FH.name;
}
static const char *fake_item_region(const ol_item *i) {
    (void)i;
    return FH.region;
}
static const char *fake_item_get(const ol_item *i, const char *key) {
    (void)i;
    return bag_get(&FH.bag, key);
}
static int fake_item_set(ol_item *i, const char *key, const char *value, unsigned flags) {
    (void)i;
    return bag_set(&FH.bag, key, value, flags);
}

/* ---- AWS ----------------------------------------------------------------------------- */

static void fake_request_free(fake_request *r) {
    free(r->service);
    free(r->method);
    free(r->bucket);
    for (size_t k = 0; k < r->n_params; k++) {
        free((char *)r->params[k].name);
        free((char *)r->params[k].value);
    }
    free(r->body);
    memset(r, 0, sizeof(*r));
}

static char *fake_dup(const char *s) {
    return s != NULL ? strdup(s) : NULL;
}

static int fake_aws_send(ol_item *i, const ol_aws_request *req, ol_aws_cb cb, void *arg) {
    (void)i;
    if (FH.send_result < 0)
        return FH.send_result;
    assert_int_equal(req->struct_size, sizeof(ol_aws_request));
    assert_true(req->n_params <= FAKE_MAX_PARAMS);
    if (FH.on_send != NULL)
        FH.on_send(req);
    fake_request *r = &FH.req;
    if (FH.pending) {
        assert_true(FH.n_more < FAKE_MAX_PENDING);
        r = &FH.more[FH.n_more++];
    }
    fake_request_free(r);
    r->service = fake_dup(req->service);
    r->method = fake_dup(req->method);
    r->bucket = fake_dup(req->bucket);
    for (size_t k = 0; k < req->n_params; k++) {
        r->params[k].name = fake_dup(req->params[k].name);
        r->params[k].value = fake_dup(req->params[k].value);
    }
    r->n_params = req->n_params;
    r->body = req->body != NULL ? strndup(req->body, req->body_len) : NULL;
    r->body_len = req->body_len;
    r->flags = req->flags;
    r->consistency_codes = req->consistency_codes;
    r->consistency_ms = req->consistency_ms;
    r->cb = cb;
    r->arg = arg;
    FH.pending = 1;
    FH.requests++;
    return 0;
}

/* The documented line of host->aws_reason: "<action> failed: <code>: <message> (HTTP
 * <status>, request id <id>)"; a transport error names the code's text instead. */
static char *fake_aws_reason(const char *action, const ol_aws_response *res) {
    const char *what = res->result == OL_EAWS || res->error_code != NULL
                           ? (res->error_code != NULL ? res->error_code : "error")
                           : ol_strerror(res->result);
    char tail[256] = "";
    if (res->status > 0 && res->request_id != NULL)
        snprintf(tail, sizeof(tail), " (HTTP %ld, request id %s)", res->status, res->request_id);
    else if (res->status > 0)
        snprintf(tail, sizeof(tail), " (HTTP %ld)", res->status);
    else if (res->request_id != NULL)
        snprintf(tail, sizeof(tail), " (request id %s)", res->request_id);
    return ol__format("%s failed: %s%s%s%s", action, what, res->error_message ? ": " : "",
                      res->error_message ? res->error_message : "", tail);
}

/* ---- the rest of the table ------------------------------------------------------------ */

static void fake_free(void *p) {
    free(p);
}
static void fake_wipe(void *p, size_t n) {
    OPENSSL_cleanse(p, n);
}
static const char *fake_stage_name(const ol_stage *s) {
    (void)s;
    return FH.plugin->name;
}
static int fake_journal_append(ol_item *i, ol_stage *s, const char *event, const char *id) {
    (void)i;
    if (FH.journal == NULL)
        return OL_EIO;
    return journal_append(FH.journal, FH.name, fake_stage_name(s), event, id, NULL);
}
static int fake_journal_append_durable(ol_item *i, ol_stage *s, const char *event, const char *id) {
    (void)i;
    if (FH.journal == NULL)
        return OL_EIO;
    return journal_append_durable(FH.journal, FH.name, fake_stage_name(s), event, id, NULL);
}
static int fake_journal_append_synced(ol_item *i, ol_stage *s, const char *event, const char *id,
                                      ol_synced_cb cb, void *arg) {
    (void)i;
    if (FH.journal == NULL || cb == NULL)
        return OL_EIO;
    assert_true(FH.n_synced < sizeof(FH.synced_cb) / sizeof(FH.synced_cb[0]));
    int rc = journal_append(FH.journal, FH.name, fake_stage_name(s), event, id, NULL);
    if (rc != 0)
        return rc;
    FH.synced_cb[FH.n_synced] = cb;
    FH.synced_arg[FH.n_synced++] = arg;
    return 0;
}
/* Runs the journal_append_synced callbacks waiting, as the loop does after the fsync. */
FAKE_API void fake_settle(void) {
    while (FH.n_synced > 0) {
        ol_synced_cb cb = FH.synced_cb[0];
        void *arg = FH.synced_arg[0];
        memmove(&FH.synced_cb[0], &FH.synced_cb[1], (FH.n_synced - 1) * sizeof(FH.synced_cb[0]));
        memmove(&FH.synced_arg[0], &FH.synced_arg[1], (FH.n_synced - 1) * sizeof(FH.synced_arg[0]));
        FH.n_synced--;
        int status = FH.sync_result;
        if (status == 0 && journal_flush(FH.journal) != 0)
            status = OL_EIO;
        cb(arg, status);
    }
}
/* The host's own naming rules (names.c), as the real host answers. */
static int fake_aws_name_check(const char *kind, const char *name, char **why) {
    char *err = NULL;
    int rc = strcmp(kind, "s3-bucket") == 0  ? names_check_bucket(name, &err)
             : strcmp(kind, "iam-user") == 0 ? names_check_iam_user(name, &err)
                                             : OL_ENOENT;
    if (rc == OL_ENOENT)
        return rc;
    if (why != NULL)
        *why = err;
    else
        free(err);
    return rc == 0 ? 0 : OL_EINVAL;
}
/* The item here is FH.name: split it at its last '-' as the host would know it. */
static int fake_item_name_check(const ol_item *i, const char *kind, char **why) {
    (void)i;
    char product[256];
    snprintf(product, sizeof(product), "%s", FH.name ? FH.name : "");
    char *dash = strrchr(product, '-');
    const char *environment = "";
    if (dash != NULL) {
        *dash = '\0';
        environment = dash + 1;
    }
    char *err = NULL;
    int rc = names_check_item_resource(kind, product, environment, &err);
    if (rc == 0 || rc == OL_ENOENT) {
        free(err);
        return rc;
    }
    if (why != NULL)
        *why = err;
    else
        free(err);
    return OL_EINVAL;
}
static size_t fake_journal_count(const ol_item *i, const char *event, const char *id) {
    (void)i;
    return FH.journal != NULL ? journal_count(FH.journal, FH.name, event, id) : 0;
}
static void fake_done(ol_stage *s, ol_item *i, ol_outcome outcome, const char *reason) {
    (void)s, (void)i;
    FH.done_calls++;
    FH.outcome = outcome;
    snprintf(FH.reason, sizeof(FH.reason), "%s", reason != NULL ? reason : "");
}
FAKE_API void fake_checkpoint(const ol_item *i, const char *point) {
    (void)i;
    size_t used = strlen(FH.checkpoints);
    snprintf(FH.checkpoints + used, sizeof(FH.checkpoints) - used, "%s;", point);
}

/* ---- what tests call ------------------------------------------------------------------ */

/* Fresh host for plugin p: its options at their declared defaults, an empty bag, the item
 * acme-production in eu-north-1. */
FAKE_API void fake_start(const ol_plugin *p) {
    memset(&FH, 0, sizeof(FH));
    FH.api = (ol_host){
        .struct_size = sizeof(ol_host),
        .abi_major = OL_ABI_MAJOR,
        .abi_minor = OL_ABI_MINOR,
        .strerror = ol_strerror,
        .log = fake_log,
        .opt_string = fake_opt_string,
        .opt_bool = fake_opt_bool,
        .opt_int = fake_opt_int,
        .opt_list = fake_opt_list,
        .opt_map = fake_opt_map,
        .opt_is_set = fake_opt_is_set,
        .item_product = fake_item_product,
        .item_environment = fake_item_environment,
        .item_name = fake_item_name,
        .item_region = fake_item_region,
        .item_get = fake_item_get,
        .item_set = fake_item_set,
        .aws_send = fake_aws_send,
        .xml_parse = xml_parse,
        .xml_count = xml_count,
        .xml_text = xml_text,
        .xml_free = xml_free,
        .journal_append = fake_journal_append,
        .journal_append_durable = fake_journal_append_durable,
        .journal_append_synced = fake_journal_append_synced,
        .aws_name_check = fake_aws_name_check,
        .item_name_check = fake_item_name_check,
        .suggest = ol__suggest,
        .journal_count = fake_journal_count,
        .done = fake_done,
        .checkpoint = fake_checkpoint,
        .format = ol__format,
        .free = fake_free,
        .wipe = fake_wipe,
        .aws_reason = fake_aws_reason,
        .opt_bind = fake_opt_bind,
        .stage_name = fake_stage_name,
    };
    FH.plugin = p;
    FH.product = "acme";
    FH.environment = "production";
    FH.name = "acme-production";
    FH.region = "eu-north-1";
    bag_init(&FH.bag);
    char *err = NULL;
    if (options_parse(p, NULL, p->name, &FH.opts, &err) != 0)
        fail_msg("options of %s: %s", p->name, err != NULL ? err : "out of memory");
}

/* A journal in a fresh temporary directory, removed by fake_stop. */
FAKE_API void fake_use_journal(void) {
    snprintf(FH.journal_dir, sizeof(FH.journal_dir), "/tmp/ol-fake-XXXXXX");
    assert_non_null(mkdtemp(FH.journal_dir));
    char *err = NULL;
    if (journal_open(FH.journal_dir, &FH.journal, &err) != 0)
        fail_msg("journal: %s", err != NULL ? err : "?");
}

FAKE_API void fake_stop(void) {
    fake_request_free(&FH.req);
    for (size_t k = 0; k < FH.n_more; k++)
        fake_request_free(&FH.more[k]);
    options_free(FH.opts);
    bag_free(&FH.bag);
    if (FH.journal != NULL) {
        journal_close(FH.journal);
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", FH.journal_dir);
        assert_int_equal(system(cmd), 0);
    }
    memset(&FH, 0, sizeof(FH));
}

/* Set an option from text, as `--set stage.name=text` does (lists a,b; maps k=v,k2=v2). */
FAKE_API void fake_set_opt(const char *name, const char *text) {
    char *err = NULL;
    if (options_set_text(FH.opts, name, text, &err) != 0)
        fail_msg("option %s=%s: %s", name, text, err != NULL ? err : "out of memory");
}

/* Answer the oldest pending request (FH.req) with res (a test-built response). The next
 * pending one, if any, becomes FH.req before the stage's callback runs. */
FAKE_API void fake_answer(const ol_aws_response *res) {
    assert_true(FH.pending);
    ol_aws_cb cb = FH.req.cb;
    void *arg = FH.req.arg;
    if (FH.n_more > 0) {
        fake_request_free(&FH.req);
        FH.req = FH.more[0];
        memmove(&FH.more[0], &FH.more[1], (FH.n_more - 1) * sizeof(FH.more[0]));
        FH.n_more--;
        memset(&FH.more[FH.n_more], 0, sizeof(FH.more[0]));
    } else {
        FH.pending = 0;
    }
    cb(arg, res);
    fake_settle();
}

/* How many requests are in flight. */
FAKE_API size_t fake_in_flight(void) {
    return FH.pending ? 1 + FH.n_more : 0;
}

/* The value of parameter name of pending request r, or NULL. */
static const char *fake_req_param(const fake_request *r, const char *name) {
    for (size_t k = 0; k < r->n_params; k++)
        if (strcmp(r->params[k].name, name) == 0)
            return r->params[k].value;
    return NULL;
}

/* Make the first pending request with this method (NULL: any) and a parameter name (with
 * value, unless NULL) FH.req, the one fake_answer answers next; the others keep their
 * order. Fails the test when no pending request matches. */
FAKE_API void fake_pick(const char *method, const char *name, const char *value) {
    assert_true(FH.pending);
    for (size_t k = 0; k <= FH.n_more; k++) {
        fake_request *r = k == 0 ? &FH.req : &FH.more[k - 1];
        const char *v = fake_req_param(r, name);
        int hit = (method == NULL || strcmp(r->method, method) == 0) &&
                  (name == NULL || (v != NULL && (value == NULL || strcmp(v, value) == 0)));
        if (!hit)
            continue;
        if (k == 0)
            return;
        fake_request picked = *r;
        memmove(&FH.more[1], &FH.more[0], (k - 1) * sizeof(FH.more[0]));
        FH.more[0] = FH.req;
        FH.req = picked;
        return;
    }
    fail_msg("no pending request %s %s=%s", method ? method : "*", name ? name : "*",
             value ? value : "*");
}

/* The value of the last request's parameter name, or NULL. */
FAKE_API const char *fake_param(const char *name) {
    for (size_t k = 0; k < FH.req.n_params; k++)
        if (strcmp(FH.req.params[k].name, name) == 0)
            return FH.req.params[k].value;
    return NULL;
}

FAKE_API const char *fake_bag(const char *key) {
    return bag_get(&FH.bag, key);
}

#endif
