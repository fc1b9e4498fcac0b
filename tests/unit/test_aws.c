/* Tests for aws: the client with its HTTP layer faked through the http_vtable seam (scripted
 * answers delivered from the loop, no socket), and, where the bytes on the wire are the
 * point, through the real HTTP layer to the scripted server on 127.0.0.1 (reached through
 * AWS_ENDPOINT_URL). Both answer each request with the next canned HTTP/1.1 answer of a
 * script and record what they received. Covers URL and body building (S3 keys with spaces,
 * '+', UTF-8; empty query values), retries, the eventual-consistency window,
 * non-idempotent requests, the S3 region hint, and shutdown with calls in every state:
 * every callback runs exactly once and uv_loop_close finds no handle left open. */
#include <ctype.h>
#include <strings.h>
#include <time.h>

#include "aws.h"
#include "harness.h"
#include "list.h"
#include "scripted_server.h"

#define AKID HARNESS_AKID
#define SECRET HARNESS_SECRET

/* Requests for the bucket "hang" are never answered and use no script entry. */
static const scripted_route hang_route[] = {{"/hang", SCRIPTED_HANG, NULL}};

/* ---- the fake HTTP layer -------------------------------------------------------------- */

/* Script entries that stand for transport failures instead of an HTTP answer. */
#define NET_ERROR_AFTER_SEND "!net-error-after-send"
#define NET_ERROR_BEFORE_SEND "!net-error-before-send"
/* What the real layer reports for a 500 whose body went over its cap (test_http). */
#define TOO_LARGE_500 "!too-large-500"

typedef struct fake_http {
    uv_loop_t *loop;
    uv_timer_t timer; /* answers from the loop, never from inside send */
    const char *const *script;
    size_t n_script, n_answered;
    unsigned n_reqs;
    char *reqs[256];      /* each request written out as it would go on the wire */
    int hold;             /* answers wait until it is cleared (fake_release) */
    unsigned n_delivered; /* answers handed to their callbacks (fake_on_timer) */
    list_node pending;
    int closing;
    void (*on_closed)(void *arg);
    void *closed_arg;
} fake_http;

typedef struct fake_xfer {
    list_node node;
    const char *answer; /* NULL: never answered (bucket "hang") */
    http_cb cb;
    void *arg;
} fake_xfer;

static char *fake_wire_text(const http_request *req) {
    const char *path = strstr(req->url, "://");
    path = path != NULL ? strchr(path + 3, '/') : NULL;
    size_t cap = strlen(req->url) + req->body_len + 64;
    for (size_t i = 0; i < req->n_headers; i++)
        cap += strlen(req->headers[i].name) + strlen(req->headers[i].value) + 4;
    char *out = malloc(cap);
    assert_non_null(out);
    size_t n = (size_t)snprintf(out, cap, "%s %s HTTP/1.1\r\n", req->method, path ? path : "/");
    for (size_t i = 0; i < req->n_headers; i++)
        n += (size_t)snprintf(out + n, cap - n, "%s: %s\r\n", req->headers[i].name,
                              req->headers[i].value);
    n += (size_t)snprintf(out + n, cap - n, "\r\n");
    memcpy(out + n, req->body ? req->body : "", req->body_len);
    out[n + req->body_len] = '\0';
    return out;
}

/* Turns a raw answer ("HTTP/1.1 503 Slow Down\r\nName: value\r\n\r\nbody") into the
 * response the real layer would give: status, lowercase header names, body. */
static void fake_answer(fake_xfer *x, int result) {
    http_response res;
    ol_kv headers[8];
    char names[8][64], values[8][128];
    memset(&res, 0, sizeof(res));
    res.result = result;
    res.body = (char *)"";
    if (result == OL_ECANCELED) {
        res.error = "request canceled";
    } else if (strcmp(x->answer, TOO_LARGE_500) == 0) {
        res.result = OL_ERANGE;
        res.status = 500;
        res.sent = 1;
        res.error = "answer larger than 65536 bytes (HTTP 500): not read further, not retried";
    } else if (strcmp(x->answer, NET_ERROR_AFTER_SEND) == 0 ||
               strcmp(x->answer, NET_ERROR_BEFORE_SEND) == 0) {
        res.result = OL_ENET;
        res.error = "Connection reset by peer";
        res.sent = strcmp(x->answer, NET_ERROR_AFTER_SEND) == 0;
    } else {
        res.sent = 1;
        res.status = strtol(x->answer + 9, NULL, 10);
        const char *line = strstr(x->answer, "\r\n") + 2;
        while (strncmp(line, "\r\n", 2) != 0) {
            assert_true(res.n_headers < 8);
            const char *colon = strchr(line, ':');
            const char *eol = strstr(line, "\r\n");
            size_t k = (size_t)(colon - line);
            snprintf(names[res.n_headers], sizeof(names[0]), "%.*s", (int)k, line);
            for (char *p = names[res.n_headers]; *p; p++)
                *p = (char)tolower((unsigned char)*p);
            snprintf(values[res.n_headers], sizeof(values[0]), "%.*s", (int)(eol - colon - 2),
                     colon + 2);
            headers[res.n_headers].name = names[res.n_headers];
            headers[res.n_headers].value = values[res.n_headers];
            res.n_headers++;
            line = eol + 2;
        }
        res.headers = headers;
        res.body = (char *)line + 2;
        res.body_len = strlen(res.body);
    }
    x->cb(x->arg, &res);
    free(x);
}

static void fake_on_timer(uv_timer_t *t) {
    fake_http *f = t->data;
    list_node *n, *tmp;
    if (f->hold)
        return;
    list_foreach_safe(n, tmp, &f->pending) {
        fake_xfer *x = list_entry(n, fake_xfer, node);
        if (x->answer == NULL)
            continue;
        list_remove(n);
        f->n_delivered++;
        fake_answer(x, 0);
        if (f->closing)
            return;
    }
}

static int fake_send(void *engine, const http_request *req, http_cb cb, void *arg) {
    fake_http *f = engine;
    if (f->closing)
        return OL_ECANCELED;
    fake_xfer *x = calloc(1, sizeof(*x));
    assert_non_null(x);
    x->cb = cb;
    x->arg = arg;
    assert_true(f->n_reqs < 256);
    char *wire = fake_wire_text(req);
    f->reqs[f->n_reqs++] = wire;
    if (strstr(wire, " /hang") != strchr(wire, ' ')) {
        x->answer = f->n_answered < f->n_script ? f->script[f->n_answered]
                                                : "HTTP/1.1 599 Unscripted\r\n\r\n";
        f->n_answered++;
    }
    list_insert_tail(&f->pending, &x->node);
    assert_int_equal(uv_timer_start(&f->timer, fake_on_timer, 0, 0), 0);
    return 0;
}

/* As http_close: what is pending ends with OL_ECANCELED from the loop, then on_closed. */
static void fake_on_timer_closed(uv_handle_t *h) {
    fake_http *f = h->data;
    list_node *n;
    while ((n = list_first(&f->pending)) != NULL) {
        list_remove(n);
        fake_answer(list_entry(n, fake_xfer, node), OL_ECANCELED);
    }
    f->on_closed(f->closed_arg);
}

static void fake_close(void *engine, void (*on_closed)(void *arg), void *arg) {
    fake_http *f = engine;
    if (f->closing)
        return;
    f->closing = 1;
    f->on_closed = on_closed;
    f->closed_arg = arg;
    uv_close((uv_handle_t *)&f->timer, fake_on_timer_closed);
}

static const http_vtable fake_vtable = {fake_send, fake_close};

/* Answers what is pending (and what comes next) again after a hold. */
static void fake_release(fake_http *f) {
    f->hold = 0;
    assert_int_equal(uv_timer_start(&f->timer, fake_on_timer, 0, 0), 0);
}

static void fake_init(fake_http *f, uv_loop_t *loop, const char *const *script, size_t n) {
    memset(f, 0, sizeof(*f));
    f->loop = loop;
    f->script = script;
    f->n_script = n;
    list_init(&f->pending);
    assert_int_equal(uv_timer_init(loop, &f->timer), 0);
    f->timer.data = f;
}

static void fake_free(fake_http *f) {
    for (unsigned i = 0; i < f->n_reqs; i++)
        free(f->reqs[i]);
}

/* ---- fixture -------------------------------------------------------------------------- */

typedef struct fixture {
    uv_loop_t loop;
    uv_timer_t guard; /* wakes UV_RUN_ONCE so a hang fails the test instead of blocking */
    int faked;        /* the fake HTTP layer, else the real one and the scripted server */
    fake_http fake;
    scripted_server srv;
    aws_client *c;
    unsigned done;
    unsigned closed;
    char log[8192];
} fixture;

typedef struct result {
    fixture *fx;
    unsigned called;
    int result;
    long status;
    unsigned attempts;
    char code[64];
    char message[256];
    char body[256];
    int close_client; /* call aws_client_close from this callback */
} result;

/* The backoff's jitter, fixed so that delays are known: the random source is a seam. */
static double half(void *arg) {
    (void)arg;
    return 0.5;
}

static void on_log(void *arg, const char *line) {
    fixture *fx = arg;
    size_t n = strlen(fx->log);
    snprintf(fx->log + n, sizeof(fx->log) - n, "%s\n", line);
}

static void on_client_closed(void *arg) {
    fixture *fx = arg;
    fx->closed++;
}

/* A client on a fresh loop whose HTTP answers come from script: through the real HTTP
 * layer and the scripted server (over_the_wire), else through the fake layer. */
static void fixture_setup(fixture *fx, const char *const *script, size_t n_script,
                          int over_the_wire) {
    char url[64];
    char *err = NULL;
    memset(fx, 0, sizeof(*fx));
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    harness_guard_start(&fx->loop, &fx->guard, 20);
    fx->faked = !over_the_wire;
    if (over_the_wire) {
        fx->srv.routes = hang_route;
        fx->srv.n_routes = 1;
        fx->srv.script = script;
        fx->srv.n_script = n_script;
        scripted_server_start(&fx->srv, &fx->loop);
        snprintf(url, sizeof(url), "http://127.0.0.1:%d", fx->srv.port);
    } else {
        fake_init(&fx->fake, &fx->loop, script, n_script);
        snprintf(url, sizeof(url), "http://127.0.0.1:1"); /* never dialled */
    }
    setenv("AWS_ENDPOINT_URL", url, 1);
    assert_int_equal(aws_client_new(&fx->loop, NULL, "eu-north-1", &fx->c, &err), 0);
    assert_null(err);
    if (fx->faked)
        aws_client_set_http(fx->c, &fake_vtable, &fx->fake);
    aws_client_set_logger(fx->c, on_log, fx);
}

static void fixture_init(fixture *fx, const char *const *script, size_t n_script) {
    fixture_setup(fx, script, n_script, 0);
}

static void fixture_init_wire(fixture *fx, const char *const *script, size_t n_script) {
    fixture_setup(fx, script, n_script, 1);
}

/* What the HTTP layer was asked to send. */
static unsigned n_reqs(const fixture *fx) {
    return fx->faked ? fx->fake.n_reqs : fx->srv.n_reqs;
}

static const char *req_text(const fixture *fx, unsigned i) {
    assert_true(i < n_reqs(fx));
    return fx->faked ? fx->fake.reqs[i] : fx->srv.reqs[i];
}

static const unsigned *n_reqs_counter(const fixture *fx) {
    return fx->faked ? &fx->fake.n_reqs : &fx->srv.n_reqs;
}

static void run_until(fixture *fx, const unsigned *counter, unsigned target) {
    harness_run_until(&fx->loop, counter, target);
}

/* Closes the client (if the test has not), then the server; nothing may be left open. */
static void fixture_finish(fixture *fx) {
    if (fx->c != NULL)
        aws_client_close(fx->c, on_client_closed, fx);
    run_until(fx, &fx->closed, 1);
    assert_int_equal(fx->closed, 1);
    if (fx->faked)
        fake_free(&fx->fake);
    else
        scripted_server_stop(&fx->srv);
    uv_close((uv_handle_t *)&fx->guard, NULL);
    harness_loop_close(&fx->loop);
    assert_null(strstr(fx->log, SECRET));
}

static void on_result(void *arg, const ol_aws_response *res) {
    result *r = arg;
    r->called++;
    r->fx->done++;
    r->result = res->result;
    r->status = res->status;
    r->attempts = res->attempts;
    snprintf(r->code, sizeof(r->code), "%s", res->error_code ? res->error_code : "");
    snprintf(r->message, sizeof(r->message), "%s", res->error_message ? res->error_message : "");
    assert_non_null(res->body);
    snprintf(r->body, sizeof(r->body), "%s", res->body);
    if (r->close_client) {
        aws_client *c = r->fx->c;
        ol_aws_request req = {.service = "s3", .method = "GET"};
        aws_client_close(c, on_client_closed, r->fx);
        r->fx->c = NULL;
        assert_int_equal(aws_send(c, &req, on_result, r), OL_ECANCELED);
    }
}

static void send_and_wait(fixture *fx, const ol_aws_request *req, result *r) {
    unsigned target = fx->done + 1;
    r->fx = fx;
    assert_int_equal(aws_send(fx->c, req, on_result, r), 0);
    assert_int_equal(r->called, 0); /* never from inside aws_send */
    run_until(fx, &fx->done, target);
    assert_int_equal(r->called, 1);
}

static int setup_env(void **state) {
    (void)state;
    harness_aws_env();
    setenv("AWS_MAX_ATTEMPTS", "3", 1);
    setenv("OPSLINE_RETRY_BASE_MS", "1", 1);
    return 0;
}

#define OK_EMPTY "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
#define SLOW_DOWN                                                                                  \
    "HTTP/1.1 503 Slow Down\r\nContent-Length: 71\r\n\r\n"                                         \
    "<Error><Code>SlowDown</Code><Message>Reduce your rate</Message></Error>"
#define NO_SUCH_ENTITY                                                                             \
    "HTTP/1.1 404 Not Found\r\nContent-Type: text/xml\r\nContent-Length: 116\r\n\r\n"              \
    "<ErrorResponse><Error><Code>NoSuchEntity</Code><Message>The user cannot be found."            \
    "</Message></Error></ErrorResponse>\n"
#define INTERNAL_ERROR "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"

/* ---- tests ---------------------------------------------------------------------------- */

static void encodes_s3_key_with_space_plus_and_utf8_once_in_a_path_style_url(void **state) {
    static const char *const script[] = {OK_EMPTY};
    fixture fx;
    result r = {0};
    (void)state;
    fixture_init_wire(&fx, script, 1);
    ol_kv params[] = {{"tagging", ""}};
    ol_aws_request req = {.service = "s3",
                          .method = "PUT",
                          .bucket = "bkt",
                          .key = "dir/a b+c/\xc3\xa9t\xc3\xa9.txt",
                          .params = params,
                          .n_params = 1,
                          .body = "x",
                          .body_len = 1};
    send_and_wait(&fx, &req, &r);
    assert_int_equal(r.result, 0);
    assert_int_equal(n_reqs(&fx), 1);
    assert_true(
        strncmp(req_text(&fx, 0), "PUT /bkt/dir/a%20b%2Bc/%C3%A9t%C3%A9.txt?tagging= HTTP/1.1\r\n",
                strlen("PUT /bkt/dir/a%20b%2Bc/%C3%A9t%C3%A9.txt?tagging= HTTP/1.1\r\n")) == 0);
    assert_non_null(strstr(req_text(&fx, 0), "Credential=" AKID "/"));
    assert_null(strstr(req_text(&fx, 0), SECRET));
    fixture_finish(&fx);
}

static void sends_query_api_params_as_an_encoded_form_body(void **state) {
    static const char *const script[] = {OK_EMPTY};
    fixture fx;
    result r = {0};
    (void)state;
    fixture_init_wire(&fx, script, 1);
    /* A document longer than the first buffer, and names and values that need no escaping
     * (unreserved characters only) next to ones that do. */
    char doc[40 * 10 + 1] = "", want_doc[40 * 28 + 1] = "", want[2048];
    for (int i = 0; i < 40; i++) {
        strcat(doc, "{\"a\":\"/*\"}");
        strcat(want_doc, "%7B%22a%22%3A%22%2F%2A%22%7D");
    }
    ol_kv params[] = {{"Action", "CreateUser"},
                      {"UserName", "a+b c"},
                      {"Path", ""},
                      {"Tags.member.1-_~", "v.a-l_u~e09AZ"},
                      {"Doc", doc}};
    ol_aws_request req = {.service = "iam", .method = "POST", .params = params, .n_params = 5};
    send_and_wait(&fx, &req, &r);
    assert_int_equal(r.result, 0);
    assert_true(strncmp(req_text(&fx, 0), "POST / HTTP/1.1\r\n", 17) == 0);
    assert_non_null(strstr(req_text(&fx, 0), "application/x-www-form-urlencoded"));
    snprintf(want, sizeof want,
             "\r\n\r\nAction=CreateUser&UserName=a%%2Bb%%20c&Path=&Tags.member.1-_~=v.a-l_u~e09AZ"
             "&Doc=%s",
             want_doc);
    assert_string_equal(strstr(req_text(&fx, 0), "\r\n\r\n"), want);
    fixture_finish(&fx);
}

/* A batch touches each S3 bucket for one item: the client keeps the rate of at most 256 idle
 * buckets, not of every bucket it ever used, and never drops one a call still uses. 300
 * buckets one after another leave 256; 300 more at once (each made while others are in
 * flight, under ASan in make asan) all succeed, and the idle ones go again as new buckets
 * come: each new bucket looks at 8 of the least recently used, so it takes a few dozen calls
 * (not a walk of every peer per call), and the count settles at 256. */
static void keeps_at_most_256_idle_bucket_peers(void **state) {
    enum { N = 300, MORE = 60 };
    static const char *script[2 * N + MORE];
    static char bucket[2 * N + MORE][16];
    static result r[2 * N + MORE];
    fixture fx;
    aws_stats st;
    (void)state;
    for (size_t i = 0; i < 2 * N + MORE; i++) {
        script[i] = OK_EMPTY;
        snprintf(bucket[i], sizeof(bucket[i]), "bucket-%04zu", i);
    }
    memset(r, 0, sizeof(r));
    fixture_init_wire(&fx, script, 2 * N + MORE);
    for (size_t i = 0; i < N; i++) {
        ol_aws_request req = {.service = "s3", .method = "PUT", .bucket = bucket[i]};
        send_and_wait(&fx, &req, &r[i]);
        assert_int_equal(r[i].result, 0);
    }
    aws_client_stats(fx.c, &st);
    assert_int_equal(st.bucket_peers, 256);
    for (size_t i = N; i < 2 * N; i++) {
        ol_aws_request req = {.service = "s3", .method = "PUT", .bucket = bucket[i]};
        r[i].fx = &fx;
        assert_int_equal(aws_send(fx.c, &req, on_result, &r[i]), 0);
    }
    run_until(&fx, &fx.done, 2 * N);
    for (size_t i = N; i < 2 * N; i++)
        assert_int_equal(r[i].result, 0);
    aws_client_stats(fx.c, &st);
    assert_true(st.bucket_peers > 256); /* all 300 were in use at once: none could go */
    size_t calls = 0;
    size_t before = st.bucket_peers;
    while (st.bucket_peers > 256) {
        assert_true(calls < MORE);
        ol_aws_request req = {.service = "s3", .method = "PUT", .bucket = bucket[2 * N + calls]};
        send_and_wait(&fx, &req, &r[2 * N + calls]);
        calls++;
        aws_client_stats(fx.c, &st);
        /* 8 looked at, all idle: 7 fewer per call, or down to the limit */
        assert_true(st.bucket_peers == 256 || st.bucket_peers <= before - 7 * calls);
    }
    assert_int_equal(st.bucket_peers, 256);
    fixture_finish(&fx);
}

static void retries_slow_down_up_to_max_attempts_then_reports_the_aws_error(void **state) {
    static const char *const script[] = {SLOW_DOWN, SLOW_DOWN, SLOW_DOWN, OK_EMPTY};
    fixture fx;
    result r = {0};
    (void)state;
    fixture_init(&fx, script, 4);
    ol_aws_request req = {.service = "s3", .method = "GET", .bucket = "bkt"};
    send_and_wait(&fx, &req, &r);
    assert_int_equal(r.result, OL_EAWS);
    assert_int_equal(r.status, 503);
    assert_string_equal(r.code, "SlowDown");
    assert_string_equal(r.message, "Reduce your rate");
    assert_int_equal(r.attempts, 3);
    assert_int_equal(n_reqs(&fx), 3);
    fixture_finish(&fx);
}

/* A 500 whose body is too large would cost a whole download per attempt: one only. */
static void does_not_retry_an_answer_too_large_to_read(void **state) {
    static const char *const script[] = {TOO_LARGE_500, OK_EMPTY};
    fixture fx;
    result r = {0};
    (void)state;
    fixture_init(&fx, script, 2);
    ol_aws_request req = {.service = "s3", .method = "GET", .bucket = "bkt"};
    send_and_wait(&fx, &req, &r);
    assert_int_equal(r.result, OL_ERANGE);
    assert_int_equal(r.attempts, 1);
    assert_int_equal(n_reqs(&fx), 1);
    assert_non_null(strstr(r.message, "answer larger than 65536 bytes"));
    fixture_finish(&fx);
}

static void waits_the_jittered_exponential_backoff_between_retries(void **state) {
    static const char *const script[] = {SLOW_DOWN, SLOW_DOWN, SLOW_DOWN, OK_EMPTY};
    fixture fx;
    result r = {0};
    (void)state;
    setenv("AWS_MAX_ATTEMPTS", "4", 1);
    setenv("OPSLINE_RETRY_BASE_MS", "40", 1);
    fixture_init(&fx, script, 4);
    setenv("AWS_MAX_ATTEMPTS", "3", 1);
    setenv("OPSLINE_RETRY_BASE_MS", "1", 1);
    aws_client_set_random(fx.c, half, NULL);
    ol_aws_request req = {.service = "s3", .method = "GET", .bucket = "bkt"};
    uint64_t start = uv_now(&fx.loop);
    send_and_wait(&fx, &req, &r);
    assert_int_equal(r.result, 0);
    assert_int_equal(r.attempts, 4);
    /* 0.5 x 40 ms x 2^(n-1); timers never fire early, so the run took at least the sum. */
    assert_non_null(strstr(fx.log, "(HTTP 503, attempt 1); next try in 20 ms"));
    assert_non_null(strstr(fx.log, "(HTTP 503, attempt 2); next try in 40 ms"));
    assert_non_null(strstr(fx.log, "(HTTP 503, attempt 3); next try in 80 ms"));
    assert_true(uv_now(&fx.loop) - start >= 20 + 40 + 80);
    fixture_finish(&fx);
}

static void retries_throttling_past_three_attempts_when_max_attempts_is_unset(void **state) {
    static const char *const script[] = {SLOW_DOWN, SLOW_DOWN, SLOW_DOWN, SLOW_DOWN, OK_EMPTY};
    fixture fx;
    result r = {0};
    (void)state;
    unsetenv("AWS_MAX_ATTEMPTS");
    fixture_init(&fx, script, 5);
    setenv("AWS_MAX_ATTEMPTS", "3", 1);
    ol_aws_request req = {.service = "s3", .method = "GET", .bucket = "bkt"};
    send_and_wait(&fx, &req, &r);
    assert_int_equal(r.result, 0);
    assert_int_equal(r.attempts, 5);
    assert_int_equal(n_reqs(&fx), 5);
    fixture_finish(&fx);
}

typedef struct rate_waits {
    void *owner;
    unsigned starts, stops;
    int depth, wrong_owner;
} rate_waits;

static void on_rate_wait(void *owner, int waiting, void *arg) {
    rate_waits *w = arg;
    w->wrong_owner |= owner != w->owner;
    if (waiting) {
        w->starts++;
        w->depth++;
    } else {
        w->stops++;
        w->depth--;
    }
    assert_true(w->depth == 0 || w->depth == 1); /* one call: one wait at a time */
}

/* The host does not count an item's waits on AWS's rate against its stages' time limits:
 * the client tells it when an owned call starts and stops waiting (the backoff after a
 * throttled answer, the rate limiter's queue), in pairs, and never for other calls. */
static void tells_the_rate_wait_hook_when_an_owned_call_waits_on_throttling(void **state) {
    static const char *const script[] = {SLOW_DOWN, SLOW_DOWN,      OK_EMPTY, SLOW_DOWN,
                                         OK_EMPTY,  INTERNAL_ERROR, OK_EMPTY};
    fixture fx;
    result r = {0};
    int tag;
    rate_waits w = {.owner = &tag};
    (void)state;
    fixture_init(&fx, script, 7);
    aws_client_set_random(fx.c, half, NULL);
    aws_client_set_rate_wait_hook(fx.c, on_rate_wait, &w);
    ol_aws_request req = {.service = "s3", .method = "GET", .bucket = "bkt"};
    r.fx = &fx;
    assert_int_equal(aws_send_owned(fx.c, &req, on_result, &r, &tag, 1), 0);
    run_until(&fx, &fx.done, 1);
    assert_int_equal(r.result, 0);
    assert_int_equal(r.attempts, 3);
    assert_true(w.starts >= 2); /* each throttled answer starts a wait */
    assert_int_equal(w.starts, w.stops);
    assert_int_equal(w.depth, 0);
    assert_false(w.wrong_owner);
    /* A call without an owner is not reported, throttled or not. */
    unsigned starts = w.starts;
    r.called = 0;
    send_and_wait(&fx, &req, &r);
    assert_int_equal(r.result, 0);
    assert_int_equal(w.starts, starts);
    /* A 500 is not AWS's rate: its backoff is no such wait. */
    r.called = 0;
    assert_int_equal(aws_send_owned(fx.c, &req, on_result, &r, &tag, 1), 0);
    run_until(&fx, &fx.done, 3);
    assert_int_equal(r.result, 0);
    assert_int_equal(w.starts, w.stops);
    assert_int_equal(w.depth, 0);
    fixture_finish(&fx);
}

/* Sends req n times (results into r[0..n-1]) and runs the loop until nothing more moves
 * without an answer. */
static void send_n_and_settle(fixture *fx, const ol_aws_request *req, result *r, size_t n) {
    for (size_t i = 0; i < n; i++) {
        r[i].fx = fx;
        assert_int_equal(aws_send(fx->c, req, on_result, &r[i]), 0);
    }
    for (int i = 0; i < 10; i++)
        uv_run(&fx->loop, UV_RUN_NOWAIT);
}

/* Before an endpoint's first throttle the rate limiter does not pace it, and every item's
 * first request at once would go in one burst (and, under a quota, come back throttled):
 * at most 64 are in flight, one more after each success. The others wait in the rate
 * limiter's queue (not in the HTTP layer's, where the rate a throttle sets would no longer
 * reach them). */
static void sends_a_fresh_endpoint_at_most_64_requests_at_once_then_more_per_success(void **state) {
    enum { FIRST = 70, SECOND = 100 };
    static const char *script[FIRST + SECOND];
    static result r[FIRST + SECOND];
    fixture fx;
    (void)state;
    for (size_t i = 0; i < FIRST + SECOND; i++)
        script[i] = OK_EMPTY;
    memset(r, 0, sizeof(r));
    fixture_init(&fx, script, FIRST + SECOND);
    ol_aws_request req = {.service = "s3", .method = "PUT", .bucket = "bkt"};
    fx.fake.hold = 1;
    send_n_and_settle(&fx, &req, r, FIRST);
    assert_int_equal(n_reqs(&fx), 64);
    /* 64 successes: the 6 waiting go, and the window is 128. */
    fake_release(&fx.fake);
    run_until(&fx, &fx.done, FIRST);
    assert_int_equal(n_reqs(&fx), FIRST);
    for (size_t i = 0; i < FIRST; i++)
        assert_int_equal(r[i].result, 0);
    fx.fake.hold = 1;
    send_n_and_settle(&fx, &req, r + FIRST, SECOND);
    assert_int_equal(n_reqs(&fx), FIRST + SECOND);
    fake_release(&fx.fake);
    run_until(&fx, &fx.done, FIRST + SECOND);
    for (size_t i = FIRST; i < FIRST + SECOND; i++)
        assert_int_equal(r[i].result, 0);
    fixture_finish(&fx);
}

/* Calls held back by that window end exactly once when the client closes. */
static void close_cancels_calls_held_back_by_the_first_flight_window(void **state) {
    enum { N = 70 };
    static result r[N];
    fixture fx;
    (void)state;
    memset(r, 0, sizeof(r));
    fixture_init(&fx, NULL, 0);
    ol_aws_request hang = {.service = "s3", .method = "GET", .bucket = "hang"};
    send_n_and_settle(&fx, &hang, r, N);
    assert_int_equal(n_reqs(&fx), 64);
    assert_int_equal(fx.done, 0);
    aws_client_close(fx.c, on_client_closed, &fx);
    fx.c = NULL;
    run_until(&fx, &fx.closed, 1);
    for (size_t i = 0; i < N; i++) {
        assert_int_equal(r[i].called, 1);
        assert_int_equal(r[i].result, OL_ECANCELED);
    }
    fixture_finish(&fx);
}

/* Under a quota the calls waiting for a token go lowest rank first (the items started
 * first), whatever order they came in; a retry (rank 0 here: unowned) before them all. */
static void serves_the_token_queue_lowest_rank_first(void **state) {
    static const char *const script[] = {SLOW_DOWN, OK_EMPTY, OK_EMPTY, OK_EMPTY, OK_EMPTY};
    static const uint64_t ranks[] = {30, 10, 20};
    static const char *const keys[] = {"r30", "r10", "r20"};
    fixture fx;
    result first = {0}, r[3];
    int tag;
    (void)state;
    memset(r, 0, sizeof(r));
    fixture_init(&fx, script, 5);
    aws_client_set_random(fx.c, half, NULL);
    ol_aws_request req = {.service = "s3", .method = "GET", .bucket = "bkt", .key = "first"};
    first.fx = &fx;
    assert_int_equal(aws_send(fx.c, &req, on_result, &first), 0);
    /* Its SlowDown turns the bucket's rate limiter on, at about 1.4 tokens a second. */
    run_until(&fx, &fx.fake.n_delivered, 1);
    for (int i = 0; i < 3; i++) {
        ol_aws_request q = {.service = "s3", .method = "GET", .bucket = "bkt", .key = keys[i]};
        r[i].fx = &fx;
        assert_int_equal(aws_send_owned(fx.c, &q, on_result, &r[i], &tag, ranks[i]), 0);
    }
    run_until(&fx, &fx.done, 4);
    assert_int_equal(first.result, 0);
    assert_int_equal(n_reqs(&fx), 5);
    static const char *const order[] = {"/first ", "/first ", "/r10 ", "/r20 ", "/r30 "};
    for (unsigned i = 0; i < 5; i++)
        assert_non_null(strstr(req_text(&fx, i), order[i]));
    fixture_finish(&fx);
}

static void fails_new_calls_to_a_dead_endpoint_at_once_naming_it(void **state) {
    static const char *const script[] = {INTERNAL_ERROR, INTERNAL_ERROR, INTERNAL_ERROR,
                                         INTERNAL_ERROR, INTERNAL_ERROR, INTERNAL_ERROR,
                                         INTERNAL_ERROR, INTERNAL_ERROR, INTERNAL_ERROR};
    fixture fx;
    result r[4];
    (void)state;
    memset(r, 0, sizeof(r));
    fixture_init(&fx, script, 9);
    ol_aws_request req = {.service = "iam", .method = "POST"};
    /* Three calls fail through their three attempts: the third makes the endpoint dead. */
    for (int i = 0; i < 3; i++) {
        send_and_wait(&fx, &req, &r[i]);
        assert_int_equal(r[i].result, OL_EAWS);
        assert_int_equal(r[i].attempts, 3);
    }
    assert_null(strstr(r[1].message, "giving up"));
    assert_non_null(strstr(r[2].message, "http://127.0.0.1:1 answered HTTP 500 InternalError "
                                         "to every one of the last 9 requests"));
    /* The next one is not sent, and says why. */
    send_and_wait(&fx, &req, &r[3]);
    assert_int_equal(n_reqs(&fx), 9);
    assert_int_equal(r[3].attempts, 0);
    assert_int_equal(r[3].status, 500);
    assert_string_equal(r[3].code, "InternalError");
    assert_non_null(strstr(r[3].message, "every one of the last 9 requests"));
    assert_non_null(strstr(r[3].message, "giving up"));
    fixture_finish(&fx);
}

static void retries_a_consistency_code_within_its_window(void **state) {
    static const char *const script[] = {NO_SUCH_ENTITY, OK_EMPTY};
    static const char *const codes[] = {"NoSuchEntity", NULL};
    fixture fx;
    result r = {0};
    (void)state;
    fixture_init(&fx, script, 2);
    ol_kv params[] = {{"Action", "GetUser"}, {"UserName", "u"}};
    ol_aws_request req = {.service = "iam",
                          .method = "POST",
                          .params = params,
                          .n_params = 2,
                          .consistency_codes = codes,
                          .consistency_ms = 5000};
    send_and_wait(&fx, &req, &r);
    assert_int_equal(r.result, 0);
    assert_int_equal(r.attempts, 2);
    assert_non_null(strstr(fx.log, "consistency"));
    fixture_finish(&fx);
}

static void reports_a_consistency_code_without_a_window_at_once(void **state) {
    static const char *const script[] = {NO_SUCH_ENTITY, OK_EMPTY};
    fixture fx;
    result r = {0};
    (void)state;
    fixture_init(&fx, script, 2);
    ol_kv params[] = {{"Action", "GetUser"}, {"UserName", "u"}};
    ol_aws_request req = {.service = "iam", .method = "POST", .params = params, .n_params = 2};
    send_and_wait(&fx, &req, &r);
    assert_int_equal(r.result, OL_EAWS);
    assert_int_equal(r.status, 404);
    assert_string_equal(r.code, "NoSuchEntity");
    assert_int_equal(n_reqs(&fx), 1);
    fixture_finish(&fx);
}

/* CreateAccessKey, the non-idempotent request opsline cares most about. */
static void send_create_access_key(fixture *fx, result *r) {
    ol_kv params[] = {{"Action", "CreateAccessKey"}, {"UserName", "u"}};
    ol_aws_request req = {.service = "iam",
                          .method = "POST",
                          .params = params,
                          .n_params = 2,
                          .flags = OL_AWS_NOT_IDEMPOTENT};
    send_and_wait(fx, &req, r);
}

static void never_resends_a_non_idempotent_request_whose_outcome_is_unknown(void **state) {
    static const char *const script[] = {INTERNAL_ERROR, OK_EMPTY};
    fixture fx;
    result r = {0};
    (void)state;
    fixture_init(&fx, script, 2);
    send_create_access_key(&fx, &r);
    assert_int_equal(r.result, OL_EUNKNOWN);
    assert_int_equal(n_reqs(&fx), 1);
    fixture_finish(&fx);
}

static void reports_a_non_idempotent_request_lost_after_sending_as_unknown(void **state) {
    static const char *const script[] = {NET_ERROR_AFTER_SEND, OK_EMPTY};
    fixture fx;
    result r = {0};
    (void)state;
    fixture_init(&fx, script, 2);
    send_create_access_key(&fx, &r);
    assert_int_equal(r.result, OL_EUNKNOWN);
    assert_string_equal(r.message, "Connection reset by peer");
    assert_int_equal(n_reqs(&fx), 1);
    fixture_finish(&fx);
}

static void retries_a_non_idempotent_request_that_never_left(void **state) {
    static const char *const script[] = {NET_ERROR_BEFORE_SEND, OK_EMPTY};
    fixture fx;
    result r = {0};
    (void)state;
    fixture_init(&fx, script, 2);
    send_create_access_key(&fx, &r);
    assert_int_equal(r.result, 0);
    assert_int_equal(r.attempts, 2);
    assert_int_equal(n_reqs(&fx), 2);
    assert_non_null(strstr(fx.log, "retry: iam POST: no answer"));
    fixture_finish(&fx);
}

static void follows_the_s3_bucket_region_hint_once_and_signs_for_it(void **state) {
    static const char *const script[] = {
        "HTTP/1.1 301 Moved Permanently\r\nx-amz-bucket-region: eu-west-1\r\n"
        "Content-Length: 0\r\n\r\n",
        "HTTP/1.1 301 Moved Permanently\r\nx-amz-bucket-region: us-east-2\r\n"
        "Content-Length: 0\r\n\r\n",
        OK_EMPTY};
    fixture fx;
    result r = {0};
    (void)state;
    fixture_init(&fx, script, 3);
    ol_aws_request req = {.service = "s3", .method = "HEAD", .bucket = "bkt"};
    send_and_wait(&fx, &req, &r);
    assert_int_equal(n_reqs(&fx), 2);
    assert_non_null(strstr(req_text(&fx, 0), "/eu-north-1/s3/aws4_request"));
    assert_non_null(strstr(req_text(&fx, 1), "/eu-west-1/s3/aws4_request"));
    assert_int_equal(r.result, OL_EAWS);
    assert_int_equal(r.status, 301);
    fixture_finish(&fx);
}

static void close_cancels_calls_waiting_and_in_flight_each_exactly_once(void **state) {
    static const char *const script[] = {SLOW_DOWN};
    fixture fx;
    result r[2] = {{0}};
    (void)state;
    setenv("OPSLINE_RETRY_BASE_MS", "60000", 1);
    fixture_init_wire(&fx, script, 1);
    setenv("OPSLINE_RETRY_BASE_MS", "1", 1);
    aws_client_set_random(fx.c, half, NULL); /* 0.5 x the 20 s cap */
    ol_aws_request req = {.service = "s3", .method = "GET", .bucket = "bkt"};
    ol_aws_request hang = {.service = "s3", .method = "GET", .bucket = "hang"};
    for (int i = 0; i < 2; i++) {
        r[i].fx = &fx;
        assert_int_equal(aws_send(fx.c, i ? &hang : &req, on_result, &r[i]), 0);
    }
    /* One call got SlowDown and waits out a long backoff; the other waits for an answer. */
    run_until(&fx, n_reqs_counter(&fx), 2);
    for (int i = 0; i < 5; i++)
        uv_run(&fx.loop, UV_RUN_ONCE);
    assert_int_equal(fx.done, 0);
    assert_int_equal(n_reqs(&fx), 2);
    assert_non_null(strstr(fx.log, "next try in 10000 ms"));
    aws_client_close(fx.c, on_client_closed, &fx);
    fx.c = NULL;
    assert_int_equal(aws_send(NULL, &req, on_result, &r[0]), OL_EINVAL);
    run_until(&fx, &fx.closed, 1);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(r[i].called, 1);
        assert_int_equal(r[i].result, OL_ECANCELED);
    }
    fixture_finish(&fx);
}

static void close_from_a_callback_cancels_the_rest_and_refuses_new_sends(void **state) {
    static const char *const script[] = {OK_EMPTY};
    fixture fx;
    result r[3] = {{0}};
    (void)state;
    fixture_init_wire(&fx, script, 1);
    ol_aws_request req = {.service = "s3", .method = "GET", .bucket = "bkt"};
    ol_aws_request hang = {.service = "s3", .method = "GET", .bucket = "hang"};
    r[0].close_client = 1;
    r[0].fx = r[1].fx = &fx;
    assert_int_equal(aws_send(fx.c, &hang, on_result, &r[1]), 0);
    assert_int_equal(aws_send(fx.c, &req, on_result, &r[0]), 0);
    run_until(&fx, &fx.closed, 1);
    assert_int_equal(r[0].called, 1);
    assert_int_equal(r[0].result, 0);
    assert_int_equal(r[1].called, 1);
    assert_int_equal(r[1].result, OL_ECANCELED);
    fixture_finish(&fx);
}

static void reports_missing_credentials_from_the_loop_without_the_secret(void **state) {
    fixture fx;
    result r = {0};
    (void)state;
    unsetenv("AWS_ACCESS_KEY_ID");
    fixture_init(&fx, NULL, 0);
    setenv("AWS_ACCESS_KEY_ID", AKID, 1);
    ol_aws_request req = {.service = "sts", .method = "POST"};
    send_and_wait(&fx, &req, &r);
    assert_int_equal(r.result, OL_ECREDS);
    assert_true(r.message[0] != '\0');
    assert_null(strstr(r.message, SECRET));
    assert_int_equal(n_reqs(&fx), 0);
    fixture_finish(&fx);
}

/* ---- temporary credentials (the container endpoint as their source) ------------------- */

#define TMP_SECRET "tmpSecretKeyNeverPrintedEXAMPLEKEY00000"
#define TMP_TOKEN "tmpSessionTokenNeverPrintedEXAMPLE"

static long long fake_now;
static long long fake_clock(void *arg) {
    (void)arg;
    return fake_now;
}

/* A container endpoint answer: key id akid, expiring at epoch second exp. */
static const char *container_answer(char *buf, size_t size, const char *akid, long long exp) {
    char when[32], body[384];
    time_t t = (time_t)exp;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    int n = snprintf(body, sizeof(body),
                     "{\"AccessKeyId\": \"%s\", \"SecretAccessKey\": \"" TMP_SECRET
                     "\", \"Token\": \"" TMP_TOKEN "\", \"Expiration\": \"%s\"}",
                     akid, when);
    snprintf(buf, size, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", n, body);
    return buf;
}

/* Credentials from a container endpoint instead of the environment. */
static void container_env(void) {
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:1/creds", 1);
    setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "container-auth-EXAMPLE", 1);
}

static void container_env_end(void) {
    unsetenv("AWS_CONTAINER_CREDENTIALS_FULL_URI");
    unsetenv("AWS_CONTAINER_AUTHORIZATION_TOKEN");
    harness_aws_env();
}

static void refreshes_temporary_credentials_ahead_without_holding_requests(void **state) {
    char c1[512], c2[512], c3[512];
    long long now = (long long)time(NULL);
    const char *script[] = {container_answer(c1, sizeof(c1), "ASIAFIRST", now + 3600),
                            OK_EMPTY,
                            container_answer(c2, sizeof(c2), "ASIASECOND", now + 3600),
                            OK_EMPTY,
                            OK_EMPTY,
                            container_answer(c3, sizeof(c3), "ASIATHIRD", now + 7200),
                            OK_EMPTY};
    fixture fx;
    result r[4] = {{0}};
    ol_aws_request req = {.service = "s3", .method = "GET", .bucket = "bkt"};
    (void)state;
    container_env();
    fixture_init(&fx, script, 7);
    container_env_end();
    fake_now = now;
    aws_client_set_clock(fx.c, fake_clock, NULL);
    /* First request: waits for the first fetch, then goes out signed with it. */
    send_and_wait(&fx, &req, &r[0]);
    assert_int_equal(r[0].result, 0);
    assert_true(strncmp(req_text(&fx, 0), "GET /creds ", 11) == 0);
    assert_non_null(strstr(req_text(&fx, 0), "Authorization: container-auth-EXAMPLE"));
    assert_non_null(strstr(req_text(&fx, 1), "Credential=ASIAFIRST/"));
    assert_non_null(strstr(req_text(&fx, 1), "X-Amz-Security-Token: " TMP_TOKEN));
    /* 800 s left: the advisory window (15 min). A fetch starts in the background and the
     * request is not held: it goes out with the current credentials. */
    fake_now = now + 2800;
    send_and_wait(&fx, &req, &r[1]);
    assert_int_equal(r[1].result, 0);
    assert_true(strncmp(req_text(&fx, 2), "GET /creds ", 11) == 0);
    assert_non_null(strstr(req_text(&fx, 3), "Credential=ASIAFIRST/"));
    send_and_wait(&fx, &req, &r[2]);
    assert_non_null(strstr(req_text(&fx, 4), "Credential=ASIASECOND/"));
    /* 60 s left of an 800 s lifetime: the mandatory window; the request waits for the new
     * set. */
    fake_now = now + 3540;
    send_and_wait(&fx, &req, &r[3]);
    assert_int_equal(r[3].result, 0);
    assert_true(strncmp(req_text(&fx, 5), "GET /creds ", 11) == 0);
    assert_non_null(strstr(req_text(&fx, 6), "Credential=ASIATHIRD/"));
    assert_int_equal(aws_client_creds_fetches(fx.c), 3);
    assert_null(strstr(fx.log, TMP_SECRET));
    assert_null(strstr(fx.log, TMP_TOKEN));
    fixture_finish(&fx);
}

static void tells_a_failed_fetch_to_the_requests_that_waited_for_it(void **state) {
    static const char *const script[] = {INTERNAL_ERROR};
    fixture fx;
    result r[2] = {{0}};
    ol_aws_request req = {.service = "s3", .method = "GET", .bucket = "bkt"};
    (void)state;
    container_env();
    fixture_init(&fx, script, 1);
    container_env_end();
    r[0].fx = r[1].fx = &fx;
    assert_int_equal(aws_send(fx.c, &req, on_result, &r[0]), 0);
    assert_int_equal(aws_send(fx.c, &req, on_result, &r[1]), 0);
    run_until(&fx, &fx.done, 2);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(r[i].result, OL_ECREDS);
        assert_non_null(strstr(r[i].message, "container credentials endpoint"));
        assert_non_null(strstr(r[i].message, "HTTP 500"));
    }
    assert_int_equal(n_reqs(&fx), 1); /* one fetch for both, no AWS request */
    fixture_finish(&fx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(refreshes_temporary_credentials_ahead_without_holding_requests),
        cmocka_unit_test(tells_a_failed_fetch_to_the_requests_that_waited_for_it),
        cmocka_unit_test(encodes_s3_key_with_space_plus_and_utf8_once_in_a_path_style_url),
        cmocka_unit_test(sends_query_api_params_as_an_encoded_form_body),
        cmocka_unit_test(keeps_at_most_256_idle_bucket_peers),
        cmocka_unit_test(retries_slow_down_up_to_max_attempts_then_reports_the_aws_error),
        cmocka_unit_test(waits_the_jittered_exponential_backoff_between_retries),
        cmocka_unit_test(retries_throttling_past_three_attempts_when_max_attempts_is_unset),
        cmocka_unit_test(tells_the_rate_wait_hook_when_an_owned_call_waits_on_throttling),
        cmocka_unit_test(fails_new_calls_to_a_dead_endpoint_at_once_naming_it),
        cmocka_unit_test(sends_a_fresh_endpoint_at_most_64_requests_at_once_then_more_per_success),
        cmocka_unit_test(close_cancels_calls_held_back_by_the_first_flight_window),
        cmocka_unit_test(serves_the_token_queue_lowest_rank_first),
        cmocka_unit_test(retries_a_consistency_code_within_its_window),
        cmocka_unit_test(reports_a_consistency_code_without_a_window_at_once),
        cmocka_unit_test(never_resends_a_non_idempotent_request_whose_outcome_is_unknown),
        cmocka_unit_test(does_not_retry_an_answer_too_large_to_read),
        cmocka_unit_test(reports_a_non_idempotent_request_lost_after_sending_as_unknown),
        cmocka_unit_test(retries_a_non_idempotent_request_that_never_left),
        cmocka_unit_test(follows_the_s3_bucket_region_hint_once_and_signs_for_it),
        cmocka_unit_test(close_cancels_calls_waiting_and_in_flight_each_exactly_once),
        cmocka_unit_test(close_from_a_callback_cancels_the_rest_and_refuses_new_sends),
        cmocka_unit_test(reports_missing_credentials_from_the_loop_without_the_secret),
    };
    return cmocka_run_group_tests(tests, setup_env, NULL);
}
