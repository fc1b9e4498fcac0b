/* Tests for http: real libcurl transfers against the scripted server on 127.0.0.1, in the
 * same loop, whose answers are chosen by path (/ok, /echo, /reset, /truncated, /hang, /drop).
 * Every test closes the engine and the server and checks that uv_loop_close finds no handle
 * left open. */
#include "harness.h"
#include "http.h"
#include "scripted_server.h"

static const scripted_route routes[] = {
    {"/ok", SCRIPTED_ANSWER,
     "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Mixed-Case: Value\r\n"
     "x-amz-request-id: req-1\r\n\r\nhello"},
    {"/echo", SCRIPTED_ECHO, NULL},
    {"/reset", SCRIPTED_RESET, NULL},
    {"/truncated", SCRIPTED_ANSWER_CLOSE, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort"},
    {"/hang", SCRIPTED_HANG, NULL},
    {"/drop", SCRIPTED_ANSWER_CLOSE, ""}, /* reads the request, closes (FIN) unanswered */
    /* a whole answer, then the server closes the connection curl means to keep */
    {"/bye", SCRIPTED_ANSWER_CLOSE, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nbye"},
};

/* ---- fixture -------------------------------------------------------------------------- */

typedef struct fixture {
    uv_loop_t loop;
    uv_timer_t guard; /* wakes UV_RUN_ONCE so a hang fails the test instead of blocking */
    scripted_server srv;
    http_engine *eng;
    int in_send;
    unsigned done;
    unsigned closed;
    unsigned done_at_close; /* callbacks that had run when on_closed ran */
} fixture;

typedef struct result {
    fixture *fx;
    int called;
    int result;
    long status;
    int sent;
    int in_send;
    int error_set;
    char error[160];
    char *body;
    size_t body_len;
    char *mixed, *request_id;
    int any_case;
    int has_missing;
    int resend; /* sequential chain: send the next request from this callback */
} result;

static void fixture_init_routes(fixture *fx, const scripted_route *r, size_t n) {
    memset(fx, 0, sizeof *fx);
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    harness_guard_start(&fx->loop, &fx->guard, 50);
    fx->srv.routes = r;
    fx->srv.n_routes = n;
    fx->srv.fallback = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
    scripted_server_start(&fx->srv, &fx->loop);
    fx->eng = http_new(&fx->loop);
    assert_non_null(fx->eng);
}

static void fixture_init(fixture *fx) {
    fixture_init_routes(fx, routes, sizeof(routes) / sizeof(routes[0]));
}

static void run_until(fixture *fx, const unsigned *counter, unsigned target) {
    harness_run_until(&fx->loop, counter, target);
}

static void on_engine_closed(void *arg) {
    fixture *fx = arg;
    fx->closed++;
    fx->done_at_close = fx->done;
}

/* Closes the engine, then the server, and checks nothing is left open. */
static void fixture_finish(fixture *fx) {
    http_close(fx->eng, on_engine_closed, fx);
    run_until(fx, &fx->closed, 1);
    assert_int_equal(fx->closed, 1);
    scripted_server_stop(&fx->srv);
    uv_close((uv_handle_t *)&fx->guard, NULL);
    harness_loop_close(&fx->loop);
}

static void result_free(result *r) {
    free(r->body);
    free(r->mixed);
    free(r->request_id);
}

static int send_req(fixture *fx, const char *method, const char *url, const ol_kv *headers,
                    size_t n_headers, const char *body, size_t body_len, long timeout_ms,
                    result *r);

static void on_response(void *arg, const http_response *res) {
    result *r = arg;

    r->called++;
    r->fx->done++;
    r->in_send = r->fx->in_send;
    r->result = res->result;
    r->status = res->status;
    r->sent = res->sent;
    r->error_set = res->error != NULL;
    snprintf(r->error, sizeof r->error, "%s", res->error ? res->error : "");
    r->body_len = res->body_len;
    r->body = malloc(res->body_len + 1);
    assert_non_null(r->body);
    memcpy(r->body, res->body, res->body_len + 1);
    r->mixed = http_header(res, "x-mixed-case") ? strdup(http_header(res, "x-mixed-case")) : NULL;
    r->request_id =
        http_header(res, "x-amz-request-id") ? strdup(http_header(res, "x-amz-request-id")) : NULL;
    r->has_missing = http_header(res, "x-not-there") != NULL;
    /* Any case finds a header, and the same value. */
    r->any_case = http_header(res, "X-MIXED-CASE") != NULL && r->mixed != NULL &&
                  strcmp(http_header(res, "X-MIXED-CASE"), r->mixed) == 0;
    if (r->resend > 0) {
        char url[64];
        r[1].resend = r->resend - 1;
        snprintf(url, sizeof url, "http://127.0.0.1:%d/ok", r->fx->srv.port);
        assert_int_equal(send_req(r->fx, "GET", url, NULL, 0, NULL, 0, 0, &r[1]), 0);
    }
}

static int send_req(fixture *fx, const char *method, const char *url, const ol_kv *headers,
                    size_t n_headers, const char *body, size_t body_len, long timeout_ms,
                    result *r) {
    http_request req;
    int rc;

    memset(&req, 0, sizeof req);
    req.method = method;
    req.url = url;
    req.headers = headers;
    req.n_headers = n_headers;
    req.body = body;
    req.body_len = body_len;
    req.timeout_ms = timeout_ms;
    r->fx = fx;
    fx->in_send = 1;
    rc = http_send(fx->eng, &req, on_response, r);
    fx->in_send = 0;
    return rc;
}

static void url_for(const fixture *fx, const char *path, char *out, size_t size) {
    snprintf(out, size, "http://127.0.0.1:%d%s", fx->srv.port, path);
}

/* A GET of path on the fixture server in req (url is its buffer). */
static void get_request(const fixture *fx, const char *path, char *url, size_t size,
                        http_request *req) {
    url_for(fx, path, url, size);
    memset(req, 0, sizeof *req);
    req->method = "GET";
    req->url = url;
}

/* One request against the fixture server, run to completion. */
static void fetch(fixture *fx, const char *method, const char *path, const ol_kv *headers,
                  size_t n_headers, const char *body, size_t body_len, long timeout_ms, result *r) {
    char url[128];
    unsigned target = fx->done + 1;

    url_for(fx, path, url, sizeof url);
    assert_int_equal(send_req(fx, method, url, headers, n_headers, body, body_len, timeout_ms, r),
                     0);
    run_until(fx, &fx->done, target);
    assert_int_equal(r->called, 1);
    assert_false(r->in_send);
}

/* n GET /ok requests sent at once, each answered into r[i]. */
static void send_gets(fixture *fx, result *r, size_t n) {
    char url[128];

    url_for(fx, "/ok", url, sizeof url);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(send_req(fx, "GET", url, NULL, 0, NULL, 0, 0, &r[i]), 0);
}

/* Runs until the n requests of send_gets are answered, checks each got 200 "hello" from
 * the loop (not inside http_send), that the server saw n, and frees the results. */
static void expect_all_hello(fixture *fx, result *r, size_t n) {
    run_until(fx, &fx->done, (unsigned)n);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(r[i].called, 1);
        assert_false(r[i].in_send);
        assert_int_equal(r[i].result, 0);
        assert_int_equal(r[i].status, 200);
        assert_string_equal(r[i].body, "hello");
        result_free(&r[i]);
    }
    assert_int_equal(fx->srv.n_reqs, n);
}

/* ---- tests ---------------------------------------------------------------------------- */

static void completes_one_hundred_concurrent_requests_over_fewer_connections(void **state) {
    fixture fx;
    result *r = calloc(100, sizeof *r);

    (void)state;
    assert_non_null(r);
    fixture_init(&fx);
    send_gets(&fx, r, 100);
    expect_all_hello(&fx, r, 100);
    /* At most 64 connections per host: the rest waited for a free one and reused it. */
    assert_true(fx.srv.n_conns <= 64);
    fixture_finish(&fx);
    free(r);
}

/* Past 128 requests in flight the engine queues the rest without a curl handle (so the
 * memory of a run has a bound whatever its --concurrency) and starts them, in order, as
 * earlier ones finish. */
static void queues_requests_past_the_in_flight_cap_and_completes_them_all(void **state) {
    enum { N = 300 };
    fixture fx;
    result *r = calloc(N, sizeof *r);

    (void)state;
    assert_non_null(r);
    fixture_init(&fx);
    send_gets(&fx, r, N);
    assert_int_equal(http_active(fx.eng), 128);
    assert_int_equal(http_queued(fx.eng), N - 128);
    expect_all_hello(&fx, r, N);
    assert_int_equal(http_active(fx.eng), 0);
    assert_int_equal(http_queued(fx.eng), 0);
    fixture_finish(&fx);
    free(r);
}

/* At most 64 requests to one host are in flight; the rest wait in the engine's queue, where
 * they do not hold up requests to another host, nor requests naming none. Host names are
 * labels the caller gives (the aws layer passes the authority it signs): here two labels
 * for the one test server. */
static void caps_requests_to_one_host_at_64_and_lets_other_hosts_pass(void **state) {
    enum { N1 = 100, N2 = 30 };
    fixture fx;
    result *r = calloc(N1 + N2 + 1, sizeof *r);
    char url[128];
    http_request req;

    (void)state;
    assert_non_null(r);
    fixture_init(&fx);
    url_for(&fx, "/ok", url, sizeof url);
    memset(&req, 0, sizeof req);
    req.method = "GET";
    req.url = url;
    for (size_t i = 0; i < N1 + N2; i++) {
        req.host = i < N1 ? "one.example" : "two.example";
        r[i].fx = &fx;
        assert_int_equal(http_send(fx.eng, &req, on_response, &r[i]), 0);
    }
    assert_int_equal(http_active(fx.eng), 64 + N2);
    assert_int_equal(http_queued(fx.eng), N1 - 64);
    req.host = NULL;
    r[N1 + N2].fx = &fx;
    assert_int_equal(http_send(fx.eng, &req, on_response, &r[N1 + N2]), 0);
    assert_int_equal(http_active(fx.eng), 64 + N2 + 1);
    assert_int_equal(http_queued(fx.eng), N1 - 64);
    expect_all_hello(&fx, r, N1 + N2 + 1);
    assert_int_equal(http_active(fx.eng), 0);
    assert_int_equal(http_queued(fx.eng), 0);
    fixture_finish(&fx);
    free(r);
}

typedef struct queued_ctx {
    unsigned *done;
    int called, result, sent;
} queued_ctx;

static void on_queued_done(void *arg, const http_response *res) {
    queued_ctx *c = arg;
    c->called++;
    c->result = res->result;
    c->sent = res->sent;
    (*c->done)++;
}

/* Closing the engine cancels queued requests too, and says they were never sent. */
static void close_cancels_queued_requests_as_unsent(void **state) {
    enum { N = 200 };
    fixture fx;
    queued_ctx c[N];
    char url[128];
    http_request req;
    size_t i, unsent = 0;

    (void)state;
    memset(c, 0, sizeof c);
    fixture_init(&fx);
    get_request(&fx, "/hang", url, sizeof url, &req);
    for (i = 0; i < N; i++) {
        c[i].done = &fx.done;
        assert_int_equal(http_send(fx.eng, &req, on_queued_done, &c[i]), 0);
    }
    assert_int_equal(http_queued(fx.eng), N - 128);
    run_until(&fx, &fx.srv.n_reqs, 64); /* one host: 64 connections, all hanging */
    http_close(fx.eng, on_engine_closed, &fx);
    run_until(&fx, &fx.closed, 1);
    for (i = 0; i < N; i++) {
        assert_int_equal(c[i].called, 1);
        assert_int_equal(c[i].result, OL_ECANCELED);
        unsent += !c[i].sent;
    }
    assert_true(unsent >= N - 128);
    assert_int_equal(fx.done_at_close, N);
    scripted_server_stop(&fx.srv);
    uv_close((uv_handle_t *)&fx.guard, NULL);
    harness_loop_close(&fx.loop);
}

typedef struct order_ctx {
    unsigned *done;
    unsigned at; /* this callback's place among all (1-based) */
    int result, sent;
} order_ctx;

static void on_order_done(void *arg, const http_response *res) {
    order_ctx *c = arg;
    c->at = ++*c->done;
    c->result = res->result;
    c->sent = res->sent;
}

/* Each host queues its own requests; closing the engine still tells the queued ones in the
 * order they were queued, whatever their host, after those in flight. */
static void close_tells_queued_requests_of_every_host_in_the_order_queued(void **state) {
    enum { N = 128, Q = 5 };
    static const char *const q_host[Q] = {"c.example", "a.example", NULL, "c.example", "d.example"};
    fixture fx;
    order_ctx c[N + Q];
    char url[128];
    http_request req;

    (void)state;
    memset(c, 0, sizeof c);
    fixture_init(&fx);
    get_request(&fx, "/hang", url, sizeof url, &req);
    for (size_t i = 0; i < N + Q; i++) {
        req.host = i < 64 ? "a.example" : i < N ? "b.example" : q_host[i - N];
        c[i].done = &fx.done;
        assert_int_equal(http_send(fx.eng, &req, on_order_done, &c[i]), 0);
    }
    assert_int_equal(http_active(fx.eng), N);
    assert_int_equal(http_queued(fx.eng), Q);
    run_until(&fx, &fx.srv.n_reqs, 64);
    http_close(fx.eng, on_engine_closed, &fx);
    run_until(&fx, &fx.closed, 1);
    for (size_t i = 0; i < N; i++)
        assert_true(c[i].at >= 1 && c[i].at <= N);
    for (size_t i = 0; i < Q; i++) {
        assert_int_equal(c[N + i].at, N + 1 + i);
        assert_int_equal(c[N + i].result, OL_ECANCELED);
        assert_false(c[N + i].sent);
    }
    scripted_server_stop(&fx.srv);
    uv_close((uv_handle_t *)&fx.guard, NULL);
    harness_loop_close(&fx.loop);
}

static void reuses_one_connection_for_sequential_requests(void **state) {
    fixture fx;
    result r[6];
    char url[128];
    size_t i;

    (void)state;
    memset(r, 0, sizeof r);
    fixture_init(&fx);
    url_for(&fx, "/ok", url, sizeof url);
    r[0].resend = 5; /* each callback sends the next request */
    assert_int_equal(send_req(&fx, "GET", url, NULL, 0, NULL, 0, 0, &r[0]), 0);
    run_until(&fx, &fx.done, 6);
    for (i = 0; i < 6; i++) {
        assert_int_equal(r[i].result, 0);
        assert_int_equal(r[i].status, 200);
        result_free(&r[i]);
    }
    assert_int_equal(fx.srv.n_reqs, 6);
    assert_int_equal(fx.srv.n_conns, 1);
    fixture_finish(&fx);
}

/* uv_walk: poll handles (the engine's sockets) by state. */
typedef struct poll_census {
    unsigned polls, holding; /* holding: active and referenced, so keeping uv_run going */
} poll_census;

static void count_poll(uv_handle_t *h, void *arg) {
    poll_census *c = arg;
    if (h->type != UV_POLL || uv_is_closing(h))
        return;
    c->polls++;
    if (uv_is_active(h) && uv_has_ref(h))
        c->holding++;
}

static void kept_connection_holds_the_loop_open_only_while_in_use(void **state) {
    fixture fx;
    result r[2];
    poll_census c = {0, 0};

    (void)state;
    memset(r, 0, sizeof r);
    fixture_init(&fx);
    fetch(&fx, "GET", "/ok", NULL, 0, NULL, 0, 0, &r[0]);
    assert_int_equal(r[0].status, 200);
    /* The connection is kept, and stays watched for the next request, but a run with
     * nothing left to do must still end. */
    uv_walk(&fx.loop, count_poll, &c);
    assert_int_equal(c.polls, 1);
    assert_int_equal(c.holding, 0);
    fetch(&fx, "GET", "/ok", NULL, 0, NULL, 0, 0, &r[1]);
    assert_int_equal(r[1].status, 200);
    assert_int_equal(fx.srv.n_conns, 1);
    result_free(&r[0]);
    result_free(&r[1]);
    fixture_finish(&fx);
}

static void on_window_end(uv_timer_t *t) {
    *(int *)t->data = 1;
}

static void on_turn(uv_check_t *h) {
    (*(unsigned *)h->data)++;
}

static void
drops_a_kept_connection_the_server_closed_and_reconnects_without_spinning(void **state) {
    fixture fx;
    result r[2];
    uv_timer_t window;
    uv_check_t check;
    int window_over = 0;
    unsigned turns = 0;

    (void)state;
    memset(r, 0, sizeof r);
    fixture_init(&fx);
    fetch(&fx, "GET", "/bye", NULL, 0, NULL, 0, 0, &r[0]);
    assert_int_equal(r[0].status, 200);
    assert_string_equal(r[0].body, "bye");
    /* The server's FIN makes the idle socket readable for good: 300 ms of the loop must
     * not turn once per event (the guard alone turns it every 50 ms). */
    assert_int_equal(uv_timer_init(&fx.loop, &window), 0);
    window.data = &window_over;
    assert_int_equal(uv_timer_start(&window, on_window_end, 300, 0), 0);
    assert_int_equal(uv_check_init(&fx.loop, &check), 0);
    check.data = &turns;
    assert_int_equal(uv_check_start(&check, on_turn), 0);
    while (!window_over)
        uv_run(&fx.loop, UV_RUN_ONCE);
    uv_check_stop(&check);
    uv_close((uv_handle_t *)&check, NULL);
    uv_close((uv_handle_t *)&window, NULL);
    assert_in_range(turns, 1, 40);
    /* curl finds the connection dead and opens another. */
    fetch(&fx, "GET", "/ok", NULL, 0, NULL, 0, 0, &r[1]);
    assert_int_equal(r[1].result, 0);
    assert_int_equal(r[1].status, 200);
    assert_int_equal(fx.srv.n_conns, 2);
    result_free(&r[0]);
    result_free(&r[1]);
    fixture_finish(&fx);
}

static void finds_response_headers_whatever_their_case(void **state) {
    fixture fx;
    result r;

    (void)state;
    memset(&r, 0, sizeof r);
    fixture_init(&fx);
    fetch(&fx, "GET", "/ok", NULL, 0, NULL, 0, 0, &r);
    assert_int_equal(r.result, 0);
    assert_true(r.any_case);
    assert_non_null(r.mixed);
    assert_string_equal(r.mixed, "Value");
    assert_non_null(r.request_id);
    assert_string_equal(r.request_id, "req-1");
    assert_false(r.has_missing);
    result_free(&r);
    fixture_finish(&fx);
}

static void sends_put_body_with_length_and_without_expect_or_default_content_type(void **state) {
    fixture fx;
    result r;
    /* A header longer than the stack buffer lines are built in (a session token's is). */
    char token[1500], want[1600];
    memset(token, 't', sizeof token - 1);
    token[sizeof token - 1] = '\0';
    snprintf(want, sizeof want, "\r\nX-Amz-Security-Token: %s\r\n", token);
    const ol_kv headers[] = {
        {"X-Amz-Date", "20240101T000000Z"}, {"X-Empty", ""}, {"X-Amz-Security-Token", token}};

    (void)state;
    memset(&r, 0, sizeof r);
    fixture_init(&fx);
    fetch(&fx, "PUT", "/echo", headers, 3, "abc", 3, 0, &r);
    assert_int_equal(r.result, 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "PUT /echo HTTP/1.1\r\n"));
    assert_non_null(strstr(r.body, "\r\nContent-Length: 3\r\n"));
    assert_non_null(strstr(r.body, "\r\nX-Amz-Date: 20240101T000000Z\r\n"));
    assert_non_null(strstr(r.body, "\r\nX-Empty:"));
    assert_non_null(strstr(r.body, want));
    assert_null(scripted_server_find(r.body, r.body_len, "Expect:"));
    assert_null(scripted_server_find(r.body, r.body_len, "Content-Type:"));
    assert_true(r.body_len > 7);
    assert_string_equal(r.body + r.body_len - 7, "\r\n\r\nabc");
    result_free(&r);
    fixture_finish(&fx);
}

/* curl asks for "Expect: 100-continue" on bodies over 1 MiB, which costs a round trip (or a
 * one-second wait) per upload. */
static void sends_large_put_without_expect_continue(void **state) {
    fixture fx;
    result r;
    const size_t len = 1536u * 1024u;
    char *body = malloc(len);

    (void)state;
    assert_non_null(body);
    memset(body, 'a', len);
    memset(&r, 0, sizeof r);
    fixture_init(&fx);
    fetch(&fx, "PUT", "/echo", NULL, 0, body, len, 0, &r);
    free(body); /* http_send copied it; the transfer is over anyway */
    assert_int_equal(r.result, 0);
    assert_int_equal(r.status, 200);
    assert_true(r.body_len > len);
    assert_null(scripted_server_find(r.body, r.body_len - len, "Expect:"));
    assert_non_null(strstr(r.body, "\r\nContent-Length: 1572864\r\n"));
    result_free(&r);
    fixture_finish(&fx);
}

static void sends_empty_put_with_zero_content_length(void **state) {
    fixture fx;
    result r;

    (void)state;
    memset(&r, 0, sizeof r);
    fixture_init(&fx);
    fetch(&fx, "PUT", "/echo", NULL, 0, NULL, 0, 0, &r);
    assert_int_equal(r.result, 0);
    assert_non_null(strstr(r.body, "PUT /echo HTTP/1.1\r\n"));
    assert_non_null(strstr(r.body, "\r\nContent-Length: 0\r\n"));
    assert_null(scripted_server_find(r.body, r.body_len, "Content-Type:"));
    result_free(&r);
    fixture_finish(&fx);
}

static void sends_post_with_the_callers_content_type_only(void **state) {
    fixture fx;
    result r;
    const ol_kv headers[] = {{"Content-Type", "application/x-amz-json-1.1"}};
    const char *first;

    (void)state;
    memset(&r, 0, sizeof r);
    fixture_init(&fx);
    fetch(&fx, "POST", "/echo", headers, 1, "{}", 2, 0, &r);
    assert_int_equal(r.result, 0);
    assert_non_null(strstr(r.body, "POST /echo HTTP/1.1\r\n"));
    first = scripted_server_find(r.body, r.body_len, "Content-Type:");
    assert_non_null(first);
    assert_non_null(strstr(r.body, "\r\nContent-Type: application/x-amz-json-1.1\r\n"));
    assert_null(scripted_server_find(first + 1, r.body_len - (size_t)(first + 1 - r.body),
                                     "Content-Type:"));
    result_free(&r);
    fixture_finish(&fx);
}

static void sends_head_and_delete_without_a_body(void **state) {
    fixture fx;
    result head, del, after;

    (void)state;
    memset(&head, 0, sizeof head);
    memset(&del, 0, sizeof del);
    memset(&after, 0, sizeof after);
    fixture_init(&fx);
    fetch(&fx, "HEAD", "/ok", NULL, 0, NULL, 0, 0, &head);
    assert_int_equal(head.result, 0);
    assert_int_equal(head.status, 200);
    assert_int_equal(head.body_len, 0);
    assert_string_equal(head.mixed, "Value");
    fetch(&fx, "DELETE", "/echo", NULL, 0, NULL, 0, 0, &del);
    assert_int_equal(del.result, 0);
    assert_non_null(strstr(del.body, "DELETE /echo HTTP/1.1\r\n"));
    assert_null(scripted_server_find(del.body, del.body_len, "Content-Length:"));
    /* The connection is still in step after a bodiless HEAD answer. */
    fetch(&fx, "GET", "/ok", NULL, 0, NULL, 0, 0, &after);
    assert_int_equal(after.result, 0);
    assert_string_equal(after.body, "hello");
    assert_int_equal(fx.srv.n_conns, 1);
    result_free(&head);
    result_free(&del);
    result_free(&after);
    fixture_finish(&fx);
}

static void reports_connection_reset_as_network_error_after_send(void **state) {
    fixture fx;
    result r;

    (void)state;
    memset(&r, 0, sizeof r);
    fixture_init(&fx);
    fetch(&fx, "POST", "/reset", NULL, 0, "x", 1, 0, &r);
    assert_int_equal(r.result, OL_ENET);
    assert_true(r.sent);
    assert_true(r.error_set);
    result_free(&r);
    fixture_finish(&fx);
}

/* A send_once request (CreateAccessKey) rides a kept-alive connection. When that connection
 * dies after taking the request, without a byte of answer, libcurl's silent resend is
 * refused: the server reads the request once and the caller hears "sent" (the outcome is
 * unknown, the stage reconciles). An ordinary POST in the same spot is resent by libcurl:
 * the server reads it twice, which is what send_once exists to prevent. */
static void send_once_reuses_a_connection_but_is_never_resent(void **state) {
    fixture fx;
    result warm1, once, warm2, plain;
    http_request req;
    char url[128];
    const char body[] = "Action=CreateAccessKey&UserName=u&Version=2010-05-08";

    (void)state;
    memset(&warm1, 0, sizeof warm1);
    memset(&once, 0, sizeof once);
    memset(&warm2, 0, sizeof warm2);
    memset(&plain, 0, sizeof plain);
    fixture_init(&fx);
    fetch(&fx, "GET", "/ok", NULL, 0, NULL, 0, 0, &warm1);
    assert_int_equal(warm1.status, 200);

    memset(&req, 0, sizeof req);
    url_for(&fx, "/drop", url, sizeof url);
    req.method = "POST";
    req.url = url;
    req.body = body;
    req.body_len = strlen(body);
    req.send_once = 1;
    once.fx = &fx;
    assert_int_equal(http_send(fx.eng, &req, on_response, &once), 0);
    run_until(&fx, &fx.done, 2);
    assert_int_equal(once.result, OL_ENET);
    assert_true(once.sent);
    /* It went whole on the kept-alive connection and was not sent again: libcurl opened a
     * connection for its resend, found the body could not be rewound, and sent nothing. */
    assert_int_equal(fx.srv.n_reqs, 2);
    assert_non_null(strstr(fx.srv.reqs[1], body));
    assert_int_equal(fx.srv.n_conns, 2);

    fetch(&fx, "GET", "/ok", NULL, 0, NULL, 0, 0, &warm2);
    fetch(&fx, "POST", "/drop", NULL, 0, body, strlen(body), 0, &plain);
    assert_int_equal(plain.result, OL_ENET);
    assert_int_equal(fx.srv.n_reqs, 5); /* GET, POST and libcurl's resend of the POST */
    assert_int_equal(fx.srv.n_conns, 4);
    result_free(&warm1);
    result_free(&once);
    result_free(&warm2);
    result_free(&plain);
    fixture_finish(&fx);
}

static void reports_truncated_body_as_network_error(void **state) {
    fixture fx;
    result r;

    (void)state;
    memset(&r, 0, sizeof r);
    fixture_init(&fx);
    fetch(&fx, "GET", "/truncated", NULL, 0, NULL, 0, 0, &r);
    assert_int_equal(r.result, OL_ENET);
    assert_true(r.sent);
    assert_true(r.error_set);
    result_free(&r);
    fixture_finish(&fx);
}

static void reports_unanswered_request_as_timed_out(void **state) {
    fixture fx;
    result r;

    (void)state;
    memset(&r, 0, sizeof r);
    fixture_init(&fx);
    fetch(&fx, "POST", "/hang", NULL, 0, "x", 1, 300, &r);
    assert_int_equal(r.result, OL_ETIMEDOUT);
    assert_true(r.sent);
    assert_true(r.error_set);
    result_free(&r);
    fixture_finish(&fx);
}

static void reports_refused_connection_as_unsent_network_error(void **state) {
    fixture fx;
    result r;
    char url[128];

    (void)state;
    memset(&r, 0, sizeof r);
    fixture_init(&fx);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/ok", harness_unused_port());
    assert_int_equal(send_req(&fx, "POST", url, NULL, 0, "x", 1, 0, &r), 0);
    run_until(&fx, &fx.done, 1);
    assert_int_equal(r.result, OL_ENET);
    assert_false(r.sent);
    assert_false(r.in_send);
    result_free(&r);
    fixture_finish(&fx);
}

static void fails_unsupported_scheme_from_the_loop_not_inside_send(void **state) {
    fixture fx;
    result r;

    (void)state;
    memset(&r, 0, sizeof r);
    fixture_init(&fx);
    assert_int_equal(send_req(&fx, "GET", "ftp://127.0.0.1/x", NULL, 0, NULL, 0, 0, &r), 0);
    assert_int_equal(r.called, 0);
    run_until(&fx, &fx.done, 1);
    assert_int_equal(r.called, 1);
    assert_false(r.in_send);
    assert_int_equal(r.result, OL_ENET);
    assert_false(r.sent);
    result_free(&r);
    fixture_finish(&fx);
}

static void rejects_invalid_requests_without_calling_back(void **state) {
    fixture fx;
    result r;
    char url[128];
    const ol_kv bad_name[] = {{"X-Bad\r\nInjected", "1"}};
    const ol_kv bad_value[] = {{"X-Bad", "1\r\nInjected: 1"}};

    (void)state;
    memset(&r, 0, sizeof r);
    fixture_init(&fx);
    url_for(&fx, "/ok", url, sizeof url);
    assert_int_equal(send_req(&fx, "GET", NULL, NULL, 0, NULL, 0, 0, &r), OL_EINVAL);
    assert_int_equal(send_req(&fx, NULL, url, NULL, 0, NULL, 0, 0, &r), OL_EINVAL);
    assert_int_equal(send_req(&fx, "GET", url, bad_name, 1, NULL, 0, 0, &r), OL_EINVAL);
    assert_int_equal(send_req(&fx, "GET", url, bad_value, 1, NULL, 0, 0, &r), OL_EINVAL);
    assert_int_equal(send_req(&fx, "PUT", url, NULL, 0, NULL, 5, 0, &r), OL_EINVAL);
    /* Give a wrongly scheduled callback the chance to run. */
    uv_run(&fx.loop, UV_RUN_NOWAIT);
    assert_int_equal(r.called, 0);
    assert_int_equal(fx.srv.n_reqs, 0);
    fixture_finish(&fx);
}

typedef struct cancel_ctx {
    result r;
    int resend_rc;
} cancel_ctx;

static void on_canceled(void *arg, const http_response *res) {
    cancel_ctx *c = arg;
    http_request req;

    on_response(&c->r, res);
    /* A closing engine refuses new work and never calls back for it. */
    memset(&req, 0, sizeof req);
    req.method = "GET";
    req.url = "http://127.0.0.1:1/";
    c->resend_rc = http_send(c->r.fx->eng, &req, on_response, &c->r);
}

static void close_cancels_requests_in_flight_and_releases_all_handles(void **state) {
    fixture fx;
    cancel_ctx c[10];
    char url[128];
    http_request req;
    size_t i;

    (void)state;
    memset(c, 0, sizeof c);
    fixture_init(&fx);
    get_request(&fx, "/hang", url, sizeof url, &req);
    for (i = 0; i < 10; i++) {
        c[i].r.fx = &fx;
        assert_int_equal(http_send(fx.eng, &req, on_canceled, &c[i]), 0);
    }
    run_until(&fx, &fx.srv.n_reqs, 10); /* all ten are on the wire, unanswered */
    assert_int_equal(fx.done, 0);
    http_close(fx.eng, on_engine_closed, &fx);
    assert_int_equal(fx.done, 0); /* callbacks come from the loop, not from http_close */
    run_until(&fx, &fx.closed, 1);
    for (i = 0; i < 10; i++) {
        assert_int_equal(c[i].r.called, 1);
        assert_int_equal(c[i].r.result, OL_ECANCELED);
        assert_true(c[i].r.sent);
        assert_int_equal(c[i].resend_rc, OL_ECANCELED);
        result_free(&c[i].r);
    }
    assert_int_equal(fx.done_at_close, 10); /* every callback ran before on_closed */
    assert_int_equal(fx.closed, 1);
    scripted_server_stop(&fx.srv);
    uv_close((uv_handle_t *)&fx.guard, NULL);
    harness_loop_close(&fx.loop);
}

static void on_response_then_close(void *arg, const http_response *res) {
    result *r = arg;

    on_response(r, res);
    http_close(r->fx->eng, on_engine_closed, r->fx);
}

static void close_from_a_completion_callback_cancels_the_rest(void **state) {
    fixture fx;
    result first, hung;
    char ok[128], hang[128];
    http_request req;

    (void)state;
    memset(&first, 0, sizeof first);
    memset(&hung, 0, sizeof hung);
    fixture_init(&fx);
    url_for(&fx, "/hang", hang, sizeof hang);
    url_for(&fx, "/ok", ok, sizeof ok);
    assert_int_equal(send_req(&fx, "GET", hang, NULL, 0, NULL, 0, 0, &hung), 0);
    run_until(&fx, &fx.srv.n_reqs, 1);
    memset(&req, 0, sizeof req);
    req.method = "GET";
    req.url = ok;
    first.fx = &fx;
    assert_int_equal(http_send(fx.eng, &req, on_response_then_close, &first), 0);
    run_until(&fx, &fx.closed, 1);
    assert_int_equal(first.result, 0);
    assert_int_equal(first.status, 200);
    assert_int_equal(hung.called, 1);
    assert_int_equal(hung.result, OL_ECANCELED);
    assert_int_equal(fx.done_at_close, 2);
    result_free(&first);
    result_free(&hung);
    scripted_server_stop(&fx.srv);
    uv_close((uv_handle_t *)&fx.guard, NULL);
    harness_loop_close(&fx.loop);
}

static void close_right_after_send_cancels_unsent_request(void **state) {
    fixture fx;
    result r;
    char url[128];

    (void)state;
    memset(&r, 0, sizeof r);
    fixture_init(&fx);
    url_for(&fx, "/ok", url, sizeof url);
    assert_int_equal(send_req(&fx, "POST", url, NULL, 0, "x", 1, 0, &r), 0);
    fixture_finish(&fx);
    assert_int_equal(r.called, 1);
    assert_int_equal(r.result, OL_ECANCELED);
    assert_false(r.sent);
    assert_int_equal(fx.done_at_close, 1);
    result_free(&r);
}

static void ignores_proxy_environment_for_loopback(void **state) {
    fixture fx;
    result r;

    (void)state;
    memset(&r, 0, sizeof r);
    /* A proxy that refuses every connection: the request only works if it is bypassed. */
    assert_int_equal(setenv("http_proxy", "http://127.0.0.1:1", 1), 0);
    assert_int_equal(setenv("no_proxy", "example.invalid", 1), 0);
    fixture_init(&fx);
    fetch(&fx, "GET", "/ok", NULL, 0, NULL, 0, 0, &r);
    unsetenv("http_proxy");
    unsetenv("no_proxy");
    assert_int_equal(r.result, 0);
    assert_int_equal(r.status, 200);
    result_free(&r);
    fixture_finish(&fx);
}

/* ---- answers too large to read -------------------------------------------------------- */

#define MIB ((size_t)1024 * 1024)

/* head followed by body_len 'x' bytes, then tail (malloc'd). */
static char *big_answer(const char *head, size_t body_len, const char *tail) {
    size_t hl = strlen(head), tl = strlen(tail);
    char *a = malloc(hl + body_len + tl + 1);
    assert_non_null(a);
    memcpy(a, head, hl);
    memset(a + hl, 'x', body_len);
    memcpy(a + hl + body_len, tail, tl + 1);
    return a;
}

/* One GET of path on a server whose only route answers answer (then closes). */
static void fetch_answer(const char *answer, result *r) {
    fixture fx;
    scripted_route route = {"/big", SCRIPTED_ANSWER_CLOSE, answer};
    memset(r, 0, sizeof *r);
    fixture_init_routes(&fx, &route, 1);
    fetch(&fx, "GET", "/big", NULL, 0, NULL, 0, 0, r);
    fixture_finish(&fx);
}

static void abandons_an_answer_whose_declared_length_is_over_4_mib_before_reading_it(void **s) {
    (void)s;
    char *a = big_answer("HTTP/1.1 200 OK\r\nContent-Length: 104857600\r\n\r\n", 4096, "");
    result r;
    fetch_answer(a, &r);
    assert_int_equal(r.result, OL_ERANGE);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 0);
    assert_non_null(strstr(r.error, "answer larger than 4194304 bytes"));
    result_free(&r);
    free(a);
}

static void abandons_a_chunked_answer_as_it_crosses_4_mib(void **s) {
    (void)s;
    /* One 5 MiB chunk, no Content-Length: only the write callback can stop it. */
    char *a = big_answer("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n500000\r\n", 5 * MIB,
                         "\r\n0\r\n\r\n");
    result r;
    fetch_answer(a, &r);
    assert_int_equal(r.result, OL_ERANGE);
    assert_true(r.body_len <= 4 * MIB);
    assert_non_null(strstr(r.error, "larger than 4194304"));
    result_free(&r);
    free(a);
}

static void reads_an_answer_of_exactly_4_mib_whole(void **s) {
    (void)s;
    char *a = big_answer("HTTP/1.1 200 OK\r\nContent-Length: 4194304\r\n\r\n", 4 * MIB, "");
    result r;
    fetch_answer(a, &r);
    assert_int_equal(r.result, 0);
    assert_int_equal(r.body_len, 4 * MIB);
    result_free(&r);
    free(a);
}

static void caps_an_error_answer_at_64_kib(void **s) {
    (void)s;
    char *a = big_answer("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 70000\r\n\r\n",
                         70000, "");
    result r;
    fetch_answer(a, &r);
    assert_int_equal(r.result, OL_ERANGE);
    assert_int_equal(r.status, 500);
    assert_true(r.sent);
    assert_non_null(strstr(r.error, "answer larger than 65536 bytes (HTTP 500)"));
    result_free(&r);
    free(a);
    /* A chunked error answer is stopped too. */
    a = big_answer("HTTP/1.1 503 Slow Down\r\nTransfer-Encoding: chunked\r\n\r\n20000\r\n", 0x20000,
                   "\r\n0\r\n\r\n");
    fetch_answer(a, &r);
    assert_int_equal(r.result, OL_ERANGE);
    assert_int_equal(r.status, 503);
    result_free(&r);
    free(a);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(completes_one_hundred_concurrent_requests_over_fewer_connections),
        cmocka_unit_test(queues_requests_past_the_in_flight_cap_and_completes_them_all),
        cmocka_unit_test(caps_requests_to_one_host_at_64_and_lets_other_hosts_pass),
        cmocka_unit_test(close_cancels_queued_requests_as_unsent),
        cmocka_unit_test(close_tells_queued_requests_of_every_host_in_the_order_queued),
        cmocka_unit_test(kept_connection_holds_the_loop_open_only_while_in_use),
        cmocka_unit_test(drops_a_kept_connection_the_server_closed_and_reconnects_without_spinning),
        cmocka_unit_test(reuses_one_connection_for_sequential_requests),
        cmocka_unit_test(finds_response_headers_whatever_their_case),
        cmocka_unit_test(sends_put_body_with_length_and_without_expect_or_default_content_type),
        cmocka_unit_test(sends_large_put_without_expect_continue),
        cmocka_unit_test(sends_empty_put_with_zero_content_length),
        cmocka_unit_test(sends_post_with_the_callers_content_type_only),
        cmocka_unit_test(sends_head_and_delete_without_a_body),
        cmocka_unit_test(reports_connection_reset_as_network_error_after_send),
        cmocka_unit_test(send_once_reuses_a_connection_but_is_never_resent),
        cmocka_unit_test(reports_truncated_body_as_network_error),
        cmocka_unit_test(reports_unanswered_request_as_timed_out),
        cmocka_unit_test(reports_refused_connection_as_unsent_network_error),
        cmocka_unit_test(fails_unsupported_scheme_from_the_loop_not_inside_send),
        cmocka_unit_test(rejects_invalid_requests_without_calling_back),
        cmocka_unit_test(close_cancels_requests_in_flight_and_releases_all_handles),
        cmocka_unit_test(close_from_a_completion_callback_cancels_the_rest),
        cmocka_unit_test(close_right_after_send_cancels_unsent_request),
        cmocka_unit_test(ignores_proxy_environment_for_loopback),
        cmocka_unit_test(abandons_an_answer_whose_declared_length_is_over_4_mib_before_reading_it),
        cmocka_unit_test(abandons_a_chunked_answer_as_it_crosses_4_mib),
        cmocka_unit_test(reads_an_answer_of_exactly_4_mib_whole),
        cmocka_unit_test(caps_an_error_answer_at_64_kib),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
