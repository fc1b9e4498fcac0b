/* Tests for aws: the client against an in-process libuv TCP server on 127.0.0.1 (reached
 * through AWS_ENDPOINT_URL) that answers each request with the next canned HTTP/1.1 answer
 * of a script and records what it received. Covers URL and body building (S3 keys with
 * spaces, '+', UTF-8; empty query values), retries, the eventual-consistency window,
 * non-idempotent requests, the S3 region hint, and shutdown with calls in every state:
 * every callback runs exactly once and uv_loop_close finds no handle left open. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>
#include <uv.h>

#include "aws.h"

#define AKID "AKIDEXAMPLETEST00001"
#define SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY1"
#define MAX_REQS 16

/* ---- scripted server ------------------------------------------------------------------ */

typedef struct sconn sconn;
typedef struct server {
    uv_tcp_t tcp;
    int port;
    const char *const *script; /* answers in order */
    size_t n_script;
    size_t n_answered; /* script position */
    unsigned n_reqs;
    char *reqs[MAX_REQS]; /* request head and body as received */
    sconn *conns;
} server;

struct sconn {
    uv_tcp_t tcp;
    server *srv;
    char *buf;
    size_t len, cap;
    int closing;
    sconn *prev, *next;
};

typedef struct swrite {
    uv_write_t req;
    char data[];
} swrite;

static void conn_closed(uv_handle_t *h) {
    sconn *c = h->data;
    free(c->buf);
    free(c);
}

static void conn_close(sconn *c) {
    if (c->closing)
        return;
    c->closing = 1;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        c->srv->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

static void on_written(uv_write_t *req, int status) {
    (void)status;
    free(req);
}

static const char *find(const char *hay, size_t len, const char *needle) {
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= len; i++)
        if (strncasecmp(hay + i, needle, n) == 0)
            return hay + i;
    return NULL;
}

static void conn_answer(sconn *c, const char *answer) {
    size_t n = strlen(answer);
    swrite *w = malloc(sizeof(*w) + n);
    assert_non_null(w);
    memcpy(w->data, answer, n);
    uv_buf_t buf = uv_buf_init(w->data, (unsigned)n);
    assert_int_equal(uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, on_written), 0);
}

static void conn_process(sconn *c) {
    for (;;) {
        const char *end = find(c->buf, c->len, "\r\n\r\n");
        if (end == NULL)
            return;
        size_t hlen = (size_t)(end - c->buf) + 4, blen = 0;
        const char *cl = find(c->buf, hlen, "\r\nContent-Length:");
        if (cl != NULL)
            blen = strtoul(cl + 17, NULL, 10);
        if (c->len < hlen + blen)
            return;
        server *s = c->srv;
        assert_true(s->n_reqs < MAX_REQS);
        s->reqs[s->n_reqs] = strndup(c->buf, hlen + blen);
        assert_non_null(s->reqs[s->n_reqs]);
        const char *rq = s->reqs[s->n_reqs++];
        /* Requests for the bucket "hang" are never answered and use no script entry. */
        if (strstr(rq, " /hang") != strchr(rq, ' ')) {
            const char *answer = s->n_answered < s->n_script ? s->script[s->n_answered] : NULL;
            s->n_answered++;
            conn_answer(c,
                        answer ? answer : "HTTP/1.1 599 Unscripted\r\nContent-Length: 0\r\n\r\n");
        }
        memmove(c->buf, c->buf + hlen + blen, c->len - hlen - blen);
        c->len -= hlen + blen;
    }
}

static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    sconn *c = h->data;
    if (c->cap - c->len < suggested) {
        char *tmp = realloc(c->buf, c->cap * 2);
        assert_non_null(tmp);
        c->buf = tmp;
        c->cap *= 2;
    }
    *buf = uv_buf_init(c->buf + c->len, (unsigned)(c->cap - c->len));
}

static void conn_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
    sconn *c = st->data;
    (void)buf;
    if (n < 0) {
        conn_close(c);
        return;
    }
    c->len += (size_t)n;
    conn_process(c);
}

static void on_connection(uv_stream_t *l, int status) {
    server *srv = l->data;
    assert_int_equal(status, 0);
    sconn *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->srv = srv;
    c->cap = 65536;
    c->buf = malloc(c->cap);
    assert_non_null(c->buf);
    assert_int_equal(uv_tcp_init(l->loop, &c->tcp), 0);
    c->tcp.data = c;
    assert_int_equal(uv_accept(l, (uv_stream_t *)&c->tcp), 0);
    c->next = srv->conns;
    if (srv->conns != NULL)
        srv->conns->prev = c;
    srv->conns = c;
    assert_int_equal(uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_read), 0);
}

static void server_start(uv_loop_t *loop, server *srv) {
    struct sockaddr_in addr;
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    memset(srv, 0, sizeof(*srv));
    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &addr), 0);
    assert_int_equal(uv_tcp_init(loop, &srv->tcp), 0);
    srv->tcp.data = srv;
    assert_int_equal(uv_tcp_bind(&srv->tcp, (const struct sockaddr *)&addr, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&srv->tcp, 128, on_connection), 0);
    assert_int_equal(uv_tcp_getsockname(&srv->tcp, (struct sockaddr *)&ss, &len), 0);
    srv->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void server_close(server *srv) {
    while (srv->conns != NULL)
        conn_close(srv->conns);
    uv_close((uv_handle_t *)&srv->tcp, NULL);
    for (size_t i = 0; i < srv->n_reqs; i++)
        free(srv->reqs[i]);
}

/* ---- fixture -------------------------------------------------------------------------- */

typedef struct fixture {
    uv_loop_t loop;
    uv_timer_t guard; /* wakes UV_RUN_ONCE so a hang fails the test instead of blocking */
    server srv;
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

static void on_guard(uv_timer_t *t) {
    (void)t;
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

static void fixture_init(fixture *fx, const char *const *script, size_t n_script) {
    char url[64];
    char *err = NULL;
    memset(fx, 0, sizeof(*fx));
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    assert_int_equal(uv_timer_init(&fx->loop, &fx->guard), 0);
    assert_int_equal(uv_timer_start(&fx->guard, on_guard, 20, 20), 0);
    server_start(&fx->loop, &fx->srv);
    fx->srv.script = script;
    fx->srv.n_script = n_script;
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", fx->srv.port);
    setenv("AWS_ENDPOINT_URL", url, 1);
    assert_int_equal(aws_client_new(&fx->loop, NULL, "eu-north-1", &fx->c, &err), 0);
    assert_null(err);
    aws_client_set_logger(fx->c, on_log, fx);
}

static void run_until(fixture *fx, const unsigned *counter, unsigned target) {
    uint64_t start = uv_now(&fx->loop);
    while (*counter < target) {
        assert_true(uv_now(&fx->loop) - start < 20000);
        uv_run(&fx->loop, UV_RUN_ONCE);
    }
}

/* Closes the client (if the test has not), then the server; nothing may be left open. */
static void fixture_finish(fixture *fx) {
    if (fx->c != NULL)
        aws_client_close(fx->c, on_client_closed, fx);
    run_until(fx, &fx->closed, 1);
    assert_int_equal(fx->closed, 1);
    server_close(&fx->srv);
    uv_close((uv_handle_t *)&fx->guard, NULL);
    assert_int_equal(uv_run(&fx->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&fx->loop), 0);
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
    setenv("AWS_ACCESS_KEY_ID", AKID, 1);
    setenv("AWS_SECRET_ACCESS_KEY", SECRET, 1);
    unsetenv("AWS_SESSION_TOKEN");
    unsetenv("AWS_PROFILE");
    unsetenv("AWS_DEFAULT_PROFILE");
    unsetenv("AWS_RETRY_MODE");
    setenv("AWS_CONFIG_FILE", "/nonexistent/opsline-test-config", 1);
    setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/opsline-test-credentials", 1);
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
    fixture_init(&fx, script, 1);
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
    assert_int_equal(fx.srv.n_reqs, 1);
    assert_true(
        strncmp(fx.srv.reqs[0], "PUT /bkt/dir/a%20b%2Bc/%C3%A9t%C3%A9.txt?tagging= HTTP/1.1\r\n",
                strlen("PUT /bkt/dir/a%20b%2Bc/%C3%A9t%C3%A9.txt?tagging= HTTP/1.1\r\n")) == 0);
    assert_non_null(strstr(fx.srv.reqs[0], "Credential=" AKID "/"));
    assert_null(strstr(fx.srv.reqs[0], SECRET));
    fixture_finish(&fx);
}

static void sends_query_api_params_as_an_encoded_form_body(void **state) {
    static const char *const script[] = {OK_EMPTY};
    fixture fx;
    result r = {0};
    (void)state;
    fixture_init(&fx, script, 1);
    ol_kv params[] = {{"Action", "CreateUser"}, {"UserName", "a+b c"}, {"Path", ""}};
    ol_aws_request req = {.service = "iam", .method = "POST", .params = params, .n_params = 3};
    send_and_wait(&fx, &req, &r);
    assert_int_equal(r.result, 0);
    assert_true(strncmp(fx.srv.reqs[0], "POST / HTTP/1.1\r\n", 17) == 0);
    assert_non_null(strstr(fx.srv.reqs[0], "application/x-www-form-urlencoded"));
    assert_non_null(strstr(fx.srv.reqs[0], "\r\n\r\nAction=CreateUser&UserName=a%2Bb%20c&Path="));
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
    assert_int_equal(fx.srv.n_reqs, 3);
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
    assert_int_equal(fx.srv.n_reqs, 1);
    fixture_finish(&fx);
}

static void never_resends_a_non_idempotent_request_whose_outcome_is_unknown(void **state) {
    static const char *const script[] = {INTERNAL_ERROR, OK_EMPTY};
    fixture fx;
    result r = {0};
    (void)state;
    fixture_init(&fx, script, 2);
    ol_kv params[] = {{"Action", "CreateAccessKey"}, {"UserName", "u"}};
    ol_aws_request req = {.service = "iam",
                          .method = "POST",
                          .params = params,
                          .n_params = 2,
                          .flags = OL_AWS_NOT_IDEMPOTENT};
    send_and_wait(&fx, &req, &r);
    assert_int_equal(r.result, OL_EUNKNOWN);
    assert_int_equal(fx.srv.n_reqs, 1);
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
    assert_int_equal(fx.srv.n_reqs, 2);
    assert_non_null(strstr(fx.srv.reqs[0], "/eu-north-1/s3/aws4_request"));
    assert_non_null(strstr(fx.srv.reqs[1], "/eu-west-1/s3/aws4_request"));
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
    fixture_init(&fx, script, 1);
    setenv("OPSLINE_RETRY_BASE_MS", "1", 1);
    aws_client_set_random(fx.c, half, NULL); /* 0.5 x the 20 s cap */
    ol_aws_request req = {.service = "s3", .method = "GET", .bucket = "bkt"};
    ol_aws_request hang = {.service = "s3", .method = "GET", .bucket = "hang"};
    for (int i = 0; i < 2; i++) {
        r[i].fx = &fx;
        assert_int_equal(aws_send(fx.c, i ? &hang : &req, on_result, &r[i]), 0);
    }
    /* One call got SlowDown and waits out a long backoff; the other waits for an answer. */
    while (fx.srv.n_reqs < 2)
        uv_run(&fx.loop, UV_RUN_ONCE);
    for (int i = 0; i < 5; i++)
        uv_run(&fx.loop, UV_RUN_ONCE);
    assert_int_equal(fx.done, 0);
    assert_int_equal(fx.srv.n_reqs, 2);
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
    fixture_init(&fx, script, 1);
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
    assert_int_equal(fx.srv.n_reqs, 0);
    fixture_finish(&fx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(encodes_s3_key_with_space_plus_and_utf8_once_in_a_path_style_url),
        cmocka_unit_test(sends_query_api_params_as_an_encoded_form_body),
        cmocka_unit_test(retries_slow_down_up_to_max_attempts_then_reports_the_aws_error),
        cmocka_unit_test(waits_the_jittered_exponential_backoff_between_retries),
        cmocka_unit_test(retries_a_consistency_code_within_its_window),
        cmocka_unit_test(reports_a_consistency_code_without_a_window_at_once),
        cmocka_unit_test(never_resends_a_non_idempotent_request_whose_outcome_is_unknown),
        cmocka_unit_test(follows_the_s3_bucket_region_hint_once_and_signs_for_it),
        cmocka_unit_test(close_cancels_calls_waiting_and_in_flight_each_exactly_once),
        cmocka_unit_test(close_from_a_callback_cancels_the_rest_and_refuses_new_sends),
        cmocka_unit_test(reports_missing_credentials_from_the_loop_without_the_secret),
    };
    return cmocka_run_group_tests(tests, setup_env, NULL);
}
