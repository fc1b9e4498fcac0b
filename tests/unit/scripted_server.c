/* scripted_server: owns the connections of the unit tests' HTTP server. Each connection
 * buffers what it reads until a request is complete, records it, and writes the scripted
 * answer; a connection is freed in its close callback. No cmocka here: the server may run
 * in a thread of its own, so a broken invariant aborts with a message instead. */
#include "scripted_server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CONN_BUF_MAX (4u << 20)
#define UNSCRIPTED "HTTP/1.1 599 Unscripted\r\nContent-Length: 0\r\n\r\n"

#define CHECK(expr)                                                                                \
    do {                                                                                           \
        if (!(expr)) {                                                                             \
            fprintf(stderr, "%s:%d: scripted_server: %s failed\n", __FILE__, __LINE__, #expr);     \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

typedef struct sconn {
    uv_tcp_t tcp;
    scripted_server *srv;
    char *buf;
    size_t len, cap;
    int closing;
    list_node node; /* in srv->conns until closing */
} sconn;

typedef struct swrite {
    uv_write_t req;
    sconn *conn;
    int close_after;
    char data[];
} swrite;

static void conn_closed(uv_handle_t *h) {
    sconn *c = h->data;
    free(c->buf);
    free(c);
}

static void conn_close(sconn *c, int reset) {
    if (c->closing)
        return;
    c->closing = 1;
    list_remove(&c->node);
    if (reset)
        uv_tcp_close_reset(&c->tcp, conn_closed);
    else
        uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

/* A pending write is canceled (status < 0) before the connection's close callback runs,
 * so w->conn is still valid here. */
static void on_written(uv_write_t *req, int status) {
    swrite *w = (swrite *)req;
    if (w->close_after && status == 0)
        conn_close(w->conn, 0);
    free(w);
}

static void conn_write(sconn *c, const char *head, size_t head_len, const char *body,
                       size_t body_len, int close_after) {
    swrite *w = malloc(sizeof(*w) + head_len + body_len);
    CHECK(w != NULL);
    w->conn = c;
    w->close_after = close_after;
    memcpy(w->data, head, head_len);
    if (body_len > 0)
        memcpy(w->data + head_len, body, body_len);
    uv_buf_t buf = uv_buf_init(w->data, (unsigned)(head_len + body_len));
    CHECK(uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, on_written) == 0);
}

const char *scripted_server_find(const char *hay, size_t len, const char *needle) {
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= len; i++)
        if (strncasecmp(hay + i, needle, n) == 0)
            return hay + i;
    return NULL;
}

static void record(scripted_server *s, const char *req, size_t len) {
    if (s->n_reqs == s->reqs_cap) {
        size_t cap = s->reqs_cap ? s->reqs_cap * 2 : 16;
        char **tmp = realloc(s->reqs, cap * sizeof(*tmp));
        CHECK(tmp != NULL);
        s->reqs = tmp;
        s->reqs_cap = cap;
    }
    s->reqs[s->n_reqs] = strndup(req, len);
    CHECK(s->reqs[s->n_reqs] != NULL);
    s->n_reqs++;
}

/* The route for the request line in req ("METHOD /path HTTP/1.1"), or NULL. */
static const scripted_route *route_for(const scripted_server *s, const char *req) {
    const char *path = strchr(req, ' ');
    if (path == NULL)
        return NULL;
    path++;
    for (size_t i = 0; i < s->n_routes; i++) {
        size_t n = strlen(s->routes[i].path);
        if (strncmp(path, s->routes[i].path, n) == 0 && strchr(" /?", path[n]) != NULL)
            return &s->routes[i];
    }
    return NULL;
}

/* Answers the complete request of len bytes at the start of c->buf; returns nonzero when
 * the connection is closing (nothing more is read from it). */
static int serve(sconn *c, size_t len) {
    scripted_server *s = c->srv;
    const scripted_route *r = route_for(s, c->buf);
    scripted_action action = r != NULL ? r->action : SCRIPTED_ANSWER;
    const char *answer = r != NULL ? r->answer : NULL;
    char head[128];

    if (r == NULL) {
        answer = s->n_answered < s->n_script ? s->script[s->n_answered] : s->fallback;
        s->n_answered++;
        if (answer == NULL)
            answer = UNSCRIPTED;
    }
    switch (action) {
    case SCRIPTED_ANSWER: {
        size_t n = strlen(answer);
        const char *end = strstr(answer, "\r\n\r\n");
        if (strncmp(c->buf, "HEAD ", 5) == 0 && end != NULL)
            n = (size_t)(end - answer) + 4; /* a HEAD answer has no body */
        conn_write(c, answer, n, NULL, 0, 0);
        return 0;
    }
    case SCRIPTED_ANSWER_CLOSE:
        uv_read_stop((uv_stream_t *)&c->tcp);
        conn_write(c, answer, strlen(answer), NULL, 0, 1);
        return 1;
    case SCRIPTED_ECHO: {
        int n = snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", len);
        conn_write(c, head, (size_t)n, c->buf, len, 0);
        return 0;
    }
    case SCRIPTED_RESET:
        conn_close(c, 1);
        return 1;
    case SCRIPTED_HANG:
        return 0;
    }
    return 0;
}

static void conn_process(sconn *c) {
    for (;;) {
        const char *end = scripted_server_find(c->buf, c->len, "\r\n\r\n");
        if (end == NULL)
            return;
        size_t hlen = (size_t)(end - c->buf) + 4, blen = 0;
        const char *cl = scripted_server_find(c->buf, hlen, "\r\nContent-Length:");
        if (cl != NULL)
            blen = strtoul(cl + 17, NULL, 10);
        size_t total = hlen + blen;
        if (c->len < total)
            return;
        record(c->srv, c->buf, total);
        if (serve(c, total))
            return;
        memmove(c->buf, c->buf + total, c->len - total);
        c->len -= total;
    }
}

static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    sconn *c = h->data;
    if (c->cap - c->len < suggested && c->cap < CONN_BUF_MAX) {
        char *tmp = realloc(c->buf, c->cap * 2);
        CHECK(tmp != NULL);
        c->buf = tmp;
        c->cap *= 2;
    }
    *buf = uv_buf_init(c->buf + c->len, (unsigned)(c->cap - c->len));
}

static void conn_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
    sconn *c = st->data;
    (void)buf;
    if (n < 0 || c->len + (size_t)n >= CONN_BUF_MAX) {
        conn_close(c, 0);
        return;
    }
    c->len += (size_t)n;
    if (!c->closing)
        conn_process(c);
}

static void on_connection(uv_stream_t *l, int status) {
    scripted_server *s = l->data;
    CHECK(status == 0);
    sconn *c = calloc(1, sizeof(*c));
    CHECK(c != NULL);
    c->srv = s;
    c->cap = 65536;
    c->buf = malloc(c->cap);
    CHECK(c->buf != NULL);
    CHECK(uv_tcp_init(l->loop, &c->tcp) == 0);
    c->tcp.data = c;
    CHECK(uv_accept(l, (uv_stream_t *)&c->tcp) == 0);
    list_insert_head(&s->conns, &c->node);
    s->n_conns++;
    CHECK(uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_read) == 0);
}

/* Closes the connections and the listener (and in thread mode the stop handle), from the
 * thread that runs the server's loop. */
static void close_all(scripted_server *s) {
    list_node *n;
    while ((n = list_first(&s->conns)) != NULL)
        conn_close(list_entry(n, sconn, node), 0);
    uv_close((uv_handle_t *)&s->tcp, NULL);
    if (s->threaded)
        uv_close((uv_handle_t *)&s->stop, NULL);
}

static void on_stop(uv_async_t *a) {
    close_all(a->data);
}

static void server_thread(void *arg) {
    scripted_server *s = arg;
    uv_run(s->loop, UV_RUN_DEFAULT);
}

void scripted_server_start(scripted_server *s, uv_loop_t *loop) {
    struct sockaddr_in addr;
    struct sockaddr_storage ss;
    int len = sizeof(ss);

    list_init(&s->conns);
    s->threaded = loop == NULL;
    s->port = 0;
    s->n_conns = s->n_reqs = 0;
    s->n_answered = 0;
    s->reqs = NULL;
    s->reqs_cap = 0;
    if (s->threaded) {
        CHECK(uv_loop_init(&s->own_loop) == 0);
        loop = &s->own_loop;
    }
    s->loop = loop;
    CHECK(uv_ip4_addr("127.0.0.1", 0, &addr) == 0);
    CHECK(uv_tcp_init(loop, &s->tcp) == 0);
    s->tcp.data = s;
    CHECK(uv_tcp_bind(&s->tcp, (const struct sockaddr *)&addr, 0) == 0);
    CHECK(uv_listen((uv_stream_t *)&s->tcp, 128, on_connection) == 0);
    CHECK(uv_tcp_getsockname(&s->tcp, (struct sockaddr *)&ss, &len) == 0);
    s->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (s->threaded) {
        CHECK(uv_async_init(loop, &s->stop, on_stop) == 0);
        s->stop.data = s;
        CHECK(uv_thread_create(&s->thread, server_thread, s) == 0);
    }
}

void scripted_server_stop(scripted_server *s) {
    if (s->threaded) {
        CHECK(uv_async_send(&s->stop) == 0);
        CHECK(uv_thread_join(&s->thread) == 0);
        CHECK(uv_loop_close(&s->own_loop) == 0);
    } else {
        close_all(s);
    }
    for (size_t i = 0; i < s->n_reqs; i++)
        free(s->reqs[i]);
    free(s->reqs);
    s->reqs = NULL;
    s->reqs_cap = 0;
}
