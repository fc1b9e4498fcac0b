/* http: owns the engine that runs many HTTP requests on the libuv loop. libcurl's
 * multi-socket API tells us which sockets to watch (one uv_poll per socket, a context struct
 * each, kept from curl's opening of the socket to its closing, so a kept-alive connection is
 * not re-registered with libuv for every request) and when to call it back (one uv_timer); we
 * report socket readiness and timer expiry back with curl_multi_socket_action and drain finished
 * transfers after every call. The multi handle keeps the connection cache, so connections are
 * reused across requests. Modelled on curl's docs/examples/multi-uv.c, without its pitfalls: no
 * re-entrant curl calls from CURLMOPT_TIMERFUNCTION, polling stopped synchronously before curl
 * closes a socket, poll errors reported as CURL_CSELECT_ERR, curl cleaned up before the loop ends.
 */
#include "http.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>

#include "../list.h"

#define HTTP_DEFAULT_TIMEOUT_MS 60000L
#define HTTP_DEFAULT_CONNECT_TIMEOUT_MS 10000L
/* The largest answer read: an AWS XML or JSON answer opsline asks for is a few KiB
 * (ListAttachedUserPolicies, ListAccessKeys, a bucket policy of at most 20 KiB), so 4 MiB is
 * far above any real one and keeps a hostile or broken endpoint from filling memory. An
 * error answer (status 300 and up) is an <Error> document of a few hundred bytes: 64 KiB. A
 * larger answer is abandoned at the cap (OL_ERANGE, never retried), so a 500 with a 100 MB
 * body costs one bounded download, not three whole ones. */
#define HTTP_MAX_BODY ((size_t)4 * 1024 * 1024)
#define HTTP_MAX_ERROR_BODY ((size_t)64 * 1024)
/* Enough parallelism for a thousand items against one endpoint. The engine sends at most
 * this many requests to one host at once and queues the rest itself (see http_host): a
 * request curl has to park for a free connection costs it a whole connection setup (URL
 * parsed, connection made and dropped) each time it looks again, 11% of the instructions of
 * a 100-item run against a single endpoint. curl's own cap stays as a backstop. */
#define HTTP_MAX_HOST_CONNECTIONS 64L
/* curl's receive buffer, one per handle (128 at most). An AWS answer opsline reads is a
 * status line, a few hundred bytes of headers and a body of well under 2 KiB, so one read
 * takes it whole; a larger one (a page of object versions) just takes more reads. */
#define HTTP_RECV_BUFFER 2048L
/* curl's buffer for a body read through a callback (send_once), its minimum. */
#define HTTP_UPLOAD_BUFFER 16384L
/* Requests with a curl handle at once; later ones wait in the engine's queue, holding only
 * their copied request (a few hundred bytes), and get a handle as earlier ones finish. A
 * curl handle with its connection state and buffers is about 10 KiB, so the cap bounds the
 * memory of a run whatever its --concurrency, and is above what 32 items in flight ask
 * (about 3.5 requests each at their widest). */
#define HTTP_MAX_ACTIVE 128u

typedef struct http_socket http_socket;
typedef struct http_xfer http_xfer;
typedef struct http_host http_host;

/* A host (http_request.host) with requests alive: its queue and how many are in flight.
 * Freed with its last request. Each host queues its own requests, so a request that may
 * start is found without walking past those of a host at its cap (thousands, when every
 * item of a large --concurrency waits for IAM). */
struct http_host {
    list_node node;    /* in eng->hosts (not the engine's entry for unnamed requests) */
    list_node waiting; /* http_xfer: its requests waiting for a slot, oldest first */
    list_node ready;   /* in eng->waiting_hosts while waiting is not empty */
    char *name;        /* NULL: eng->unnamed, the requests that name no host (no cap) */
    unsigned refs;     /* requests alive that name it */
    unsigned active;   /* in flight (in eng->xfers) */
    unsigned queued;   /* in waiting */
};

/* One socket curl asked us to watch. Freed in its uv_close callback. */
struct http_socket {
    uv_poll_t poll;
    http_engine *eng;
    curl_socket_t fd;
    int events; /* UV_READABLE | UV_WRITABLE being polled, 0 when stopped */
    int idle;   /* curl no longer watches it (CURL_POLL_REMOVE), the connection is kept */
};

/* One request in flight. Freed after its callback ran. */
struct http_xfer {
    http_engine *eng;
    http_host *host; /* NULL when the request named none */
    CURL *easy;      /* NULL while queued */
    struct curl_slist *req_headers;
    char *url, *method;
    long timeout_ms, connect_timeout_ms;
    int send_once, has_body;
    char *req_body;
    size_t req_body_len;
    size_t req_body_sent; /* send_once bodies: read by libcurl so far (never rewound) */
    char *body;
    size_t body_len, body_cap;
    int oom;
    size_t too_large; /* the cap an answer went over (abandoned), else 0 */
    char why[128];    /* the text for too_large */
    char errbuf[CURL_ERROR_SIZE];
    http_cb cb;
    void *arg;
    uint64_t seq;   /* order of queueing: the oldest waiting request of any host goes first */
    list_node node; /* in its host's waiting, then eng->xfers, then eng->canceled */
};

struct http_engine {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    http_socket **by_fd; /* watched sockets not yet closing, by descriptor (n_by_fd slots) */
    size_t n_by_fd;
    list_node waiting_hosts; /* http_host: those with requests waiting for a slot */
    http_host unnamed;       /* the queue of requests that name no host */
    uint64_t next_seq;       /* http_xfer.seq of the next request queued */
    unsigned n_queued;       /* requests waiting, all hosts */
    list_node xfers;         /* http_xfer: requests added to the multi handle, oldest first */
    unsigned active;         /* in xfers */
    list_node hosts;         /* http_host: hosts of the requests alive */
    list_node canceled;      /* http_xfer: aborted by http_close, callbacks still due */
    /* Curl handles of finished requests, options cleared (curl_easy_reset), for the next
     * ones: a handle keeps its allocations (its state, its receive buffer) across requests
     * instead of making and freeing them each time. At most HTTP_MAX_ACTIVE, the most that
     * are ever in use at once, so keeping them never raises the peak. */
    CURL *spare[HTTP_MAX_ACTIVE];
    unsigned n_spare;
    char *ca_bundle;
    char *no_proxy;
    unsigned open_handles;
    int closing;
    void (*on_closed)(void *arg);
    void *closed_arg;
};

/* A handle done with (out of the multi handle) back to the spares, or freed when the
 * engine closes or has enough. */
static void easy_release(http_engine *eng, CURL *easy) {
    if (eng->closing || eng->n_spare >= HTTP_MAX_ACTIVE) {
        curl_easy_cleanup(easy);
        return;
    }
    curl_easy_reset(easy);
    /* Reset turned signals back on: freeing the handle later would ignore and restore
     * SIGPIPE around its cleanup, three sigactions per handle. */
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    eng->spare[eng->n_spare++] = easy;
}

/* The record of name, made on its first request; NULL when out of memory. */
static http_host *host_get(http_engine *eng, const char *name) {
    list_node *n;
    list_foreach(n, &eng->hosts) {
        http_host *h = list_entry(n, http_host, node);
        if (strcmp(h->name, name) == 0) {
            h->refs++;
            return h;
        }
    }
    http_host *h = calloc(1, sizeof *h);
    if (h == NULL || (h->name = strdup(name)) == NULL) {
        free(h);
        return NULL;
    }
    h->refs = 1;
    list_init(&h->waiting);
    list_init(&h->ready);
    list_insert_tail(&eng->hosts, &h->node);
    return h;
}

static void host_put(http_host *h) {
    if (h != NULL && --h->refs == 0) {
        list_remove(&h->node);
        free(h->name);
        free(h);
    }
}

/* Whether one more request to host h may go in flight now. */
static int host_has_room(const http_engine *eng, const http_host *h) {
    return h == &eng->unnamed || h->active < (unsigned)HTTP_MAX_HOST_CONNECTIONS;
}

/* The queue x waits in: its host's, or the engine's for requests naming none. */
static http_host *queue_of(http_xfer *x) {
    return x->host != NULL ? x->host : &x->eng->unnamed;
}

static void enqueue(http_engine *eng, http_xfer *x) {
    http_host *h = queue_of(x);
    x->seq = eng->next_seq++;
    list_insert_tail(&h->waiting, &x->node);
    if (h->queued++ == 0)
        list_insert_tail(&eng->waiting_hosts, &h->ready);
    eng->n_queued++;
}

/* The oldest waiting request among the hosts that have room (all hosts when any_host),
 * taken out of its queue; NULL when there is none. One look at each waiting host's first
 * request: a handful of hosts (IAM, STS, S3), or the buckets in flight with virtual-hosted
 * S3, however many requests wait. */
static http_xfer *dequeue_oldest(http_engine *eng, int any_host) {
    http_xfer *best = NULL;
    list_node *n;
    list_foreach(n, &eng->waiting_hosts) {
        http_host *h = list_entry(n, http_host, ready);
        if (!any_host && !host_has_room(eng, h))
            continue;
        http_xfer *x = list_entry(list_first(&h->waiting), http_xfer, node);
        if (best == NULL || x->seq < best->seq)
            best = x;
    }
    if (best != NULL) {
        http_host *h = queue_of(best);
        list_remove(&best->node);
        if (--h->queued == 0)
            list_remove(&h->ready);
        eng->n_queued--;
    }
    return best;
}

static void xfer_free(http_xfer *x) {
    host_put(x->host);
    if (x->easy != NULL)
        easy_release(x->eng, x->easy);
    curl_slist_free_all(x->req_headers);
    free(x->url);
    free(x->method);
    free(x->req_body);
    free(x->body);
    free(x);
}

/* ---- engine teardown ------------------------------------------------------------------ */

static void engine_handle_closed(http_engine *eng) {
    if (--eng->open_handles > 0 || !eng->closing)
        return;
    void (*on_closed)(void *) = eng->on_closed;
    void *arg = eng->closed_arg;
    free(eng->ca_bundle);
    free(eng->no_proxy);
    free(eng->by_fd);
    free(eng);
    curl_global_cleanup();
    if (on_closed != NULL)
        on_closed(arg);
}

static void on_socket_closed(uv_handle_t *h) {
    http_socket *s = h->data;
    http_engine *eng = s->eng;

    free(s);
    engine_handle_closed(eng);
}

/* Stop polling at once: curl closes the descriptor right after telling us, and libuv must
 * not watch a closed descriptor. The context lives until its close callback. */
static void socket_close(http_socket *s) {
    uv_poll_stop(&s->poll);
    s->eng->by_fd[s->fd] = NULL;
    uv_close((uv_handle_t *)&s->poll, on_socket_closed);
}

/* ---- completion ----------------------------------------------------------------------- */

/* Errors that happen before a request byte can have left this machine. */
static int is_before_send(CURLcode code) {
    switch (code) {
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
        return 1;
    default:
        return 0;
    }
}

static void xfer_complete(http_xfer *x, CURLcode code, int result) {
    http_response res;
    long request_size = 0;
    static char empty[1];

    memset(&res, 0, sizeof res);
    if (x->easy != NULL) {
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &res.status);
        curl_easy_getinfo(x->easy, CURLINFO_REQUEST_SIZE, &request_size);
    }
    if (result == 0 && code != CURLE_OK) {
        if (code == CURLE_FILESIZE_EXCEEDED || (code == CURLE_WRITE_ERROR && x->too_large))
            result = OL_ERANGE;
        else if (code == CURLE_OPERATION_TIMEDOUT)
            result = OL_ETIMEDOUT;
        else if (code == CURLE_OUT_OF_MEMORY || (code == CURLE_WRITE_ERROR && x->oom))
            result = OL_ENOMEM;
        else
            result = OL_ENET;
        res.error = x->errbuf[0] != '\0' ? x->errbuf : curl_easy_strerror(code);
        if (result == OL_ERANGE) {
            snprintf(x->why, sizeof x->why,
                     "answer larger than %zu bytes (HTTP %ld): not read further, not retried",
                     x->too_large ? x->too_large : HTTP_MAX_BODY, res.status);
            res.error = x->why;
        }
        /* CURLINFO_REQUEST_SIZE counts request bytes written to the connection: with none
         * written the server cannot have acted on it, so a non-idempotent call can be
         * retried safely. Any failure after that leaves the outcome unknown. */
        res.sent = request_size > 0 || (!is_before_send(code) && code != CURLE_OPERATION_TIMEDOUT);
    } else if (result == 0) {
        res.sent = 1;
    } else if (result == OL_ECANCELED) {
        res.sent = request_size > 0;
        res.error = "request canceled";
    }
    res.result = result;
    res.body = x->body != NULL ? x->body : empty;
    res.body_len = x->body_len;
    res.easy = x->easy;
    x->cb(x->arg, &res);
    xfer_free(x);
}

static void start_queued(http_engine *eng);

/* Deliver every finished transfer. A callback may call http_close; then the multi handle is
 * gone and the remaining transfers were handed to the cancel path, so stop at once. */
static void check_multi_info(http_engine *eng) {
    CURLMsg *msg;
    int pending;

    while (!eng->closing && (msg = curl_multi_info_read(eng->multi, &pending)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURLcode code = msg->data.result;
        char *priv = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
        http_xfer *x = (http_xfer *)priv;
        list_remove(&x->node);
        eng->active--;
        if (x->host != NULL)
            x->host->active--;
        curl_multi_remove_handle(eng->multi, x->easy);
        /* Its headers stay with the handle until its next transfer (http_header). */
        xfer_complete(x, code, 0);
    }
    start_queued(eng);
}

/* ---- curl <-> libuv glue -------------------------------------------------------------- */

static void on_timeout(uv_timer_t *t) {
    http_engine *eng = t->data;
    int running;

    if (eng->closing)
        return;
    curl_multi_socket_action(eng->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_multi_info(eng);
}

/* CURLMOPT_TIMERFUNCTION. Never calls curl: a 0 ms timeout becomes a 0 ms uv timer, so
 * curl_multi_socket_action runs from the loop, not re-entrantly from inside curl. */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp) {
    http_engine *eng = userp;

    (void)multi;
    if (eng->closing)
        return 0;
    if (timeout_ms < 0)
        return uv_timer_stop(&eng->timer) == 0 ? 0 : -1;
    return uv_timer_start(&eng->timer, on_timeout, (uint64_t)timeout_ms, 0) == 0 ? 0 : -1;
}

static void on_poll(uv_poll_t *p, int status, int events) {
    http_socket *s = p->data;
    http_engine *eng = s->eng;
    int flags = 0, running;

    if (eng->closing)
        return;
    if (s->idle) {
        /* A kept-alive connection curl does not watch: the server closed it, or sent what
         * nobody asked for. curl finds out when it next looks at the connection; until then
         * the event would only come back at every turn of the loop. */
        uv_poll_stop(&s->poll);
        s->events = 0;
        return;
    }
    if (status < 0) {
        flags = CURL_CSELECT_ERR;
    } else {
        if (events & UV_READABLE)
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    /* May close s (CURL_POLL_REMOVE): s is not used after this. */
    curl_multi_socket_action(eng->multi, s->fd, flags, &running);
    check_multi_info(eng);
}

static http_socket *socket_new(http_engine *eng, curl_socket_t fd) {
    if (fd < 0)
        return NULL;
    if ((size_t)fd >= eng->n_by_fd) {
        size_t n = (size_t)fd + 64;
        http_socket **tmp = realloc(eng->by_fd, n * sizeof *tmp);
        if (tmp == NULL)
            return NULL;
        memset(tmp + eng->n_by_fd, 0, (n - eng->n_by_fd) * sizeof *tmp);
        eng->by_fd = tmp;
        eng->n_by_fd = n;
    }
    http_socket *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    if (uv_poll_init_socket(eng->loop, &s->poll, fd) != 0) {
        free(s);
        return NULL;
    }
    s->poll.data = s;
    s->eng = eng;
    s->fd = fd;
    eng->by_fd[fd] = s;
    eng->open_handles++;
    return s;
}

/* The context of a descriptor curl opened, or NULL. A context outlives CURL_POLL_REMOVE: a
 * kept-alive connection keeps its poll handle from one request to the next, and loses it
 * only when curl closes the descriptor (on_close_socket). */
static http_socket *socket_find(const http_engine *eng, curl_socket_t fd) {
    return fd >= 0 && (size_t)fd < eng->n_by_fd ? eng->by_fd[fd] : NULL;
}

/* CURLOPT_OPENSOCKETFUNCTION: a new descriptor, close-on-exec. Should a context still sit on its
 * number (a close that bypassed on_close_socket), its cached events no longer describe what epoll
 * watches: cleared, the next uv_poll_start registers the new socket. */
static curl_socket_t on_open_socket(void *clientp, curlsocktype purpose,
                                    struct curl_sockaddr *addr) {
    (void)purpose;
    /* Close-on-exec: the password managers' programs a store runs get no connection. */
    curl_socket_t fd = socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
    http_socket *s = socket_find(clientp, fd);
    if (s != NULL)
        s->events = 0;
    return fd;
}

/* CURLOPT_CLOSESOCKETFUNCTION: the poll handle goes before the descriptor closes. */
static int on_close_socket(void *clientp, curl_socket_t fd) {
    http_socket *s = socket_find(clientp, fd);
    if (s != NULL)
        socket_close(s);
    return close(fd);
}

/* CURLMOPT_SOCKETFUNCTION. */
static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
    http_engine *eng = userp;
    http_socket *s = socketp;
    int events = 0;

    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        /* Left polled as it is: curl's next request on this kept-alive connection almost
         * always asks for the same events, and every uv_poll_start costs two epoll_ctl
         * calls. An event while idle stops the poll (on_poll); curl closing the descriptor
         * removes it (on_close_socket). */
        if (s == NULL)
            s = socket_find(eng, fd);
        if (s != NULL && !s->idle) {
            s->idle = 1;
            uv_unref((uv_handle_t *)&s->poll); /* a kept connection holds no loop open */
        }
        return 0;
    }
    if (eng->closing)
        return 0;
    if (s == NULL) {
        s = socket_find(eng, fd);
        if (s == NULL && (s = socket_new(eng, fd)) == NULL)
            return -1;
        curl_multi_assign(eng->multi, fd, s);
    }
    if (s->idle) {
        s->idle = 0;
        uv_ref((uv_handle_t *)&s->poll);
    }
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        events |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        events |= UV_WRITABLE;
    if (events == s->events)
        return 0;
    if (uv_poll_start(&s->poll, events, on_poll) != 0)
        return -1;
    s->events = events;
    return 0;
}

/* ---- requests ------------------------------------------------------------------------- */

/* The cap for this answer, by its status (known once the body starts). */
static size_t body_limit(const http_xfer *x) {
    long status = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    return status >= 300 ? HTTP_MAX_ERROR_BODY : HTTP_MAX_BODY;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userp) {
    http_xfer *x = userp;
    size_t n = size * nmemb;
    size_t limit = body_limit(x);

    /* CURLOPT_MAXFILESIZE_LARGE stops a declared length over the success cap before any
     * byte; this stops a chunked answer, and an error answer, as it crosses its cap. */
    curl_off_t declared = -1;
    curl_easy_getinfo(x->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &declared);
    if (n > limit - x->body_len || (x->body_len == 0 && declared > (curl_off_t)limit)) {
        x->too_large = limit;
        return 0; /* curl abandons the transfer: CURLE_WRITE_ERROR */
    }

    if (n > SIZE_MAX - 1 - x->body_len) {
        x->oom = 1;
        return 0;
    }
    if (x->body_len + n + 1 > x->body_cap) {
        /* Under 1 KiB: glibc consolidates its free lists before every larger request. */
        size_t cap = x->body_cap ? x->body_cap : 1000;
        while (cap < x->body_len + n + 1)
            cap = cap > SIZE_MAX / 2 ? x->body_len + n + 1 : cap * 2;
        char *tmp = realloc(x->body, cap);
        if (tmp == NULL) {
            x->oom = 1;
            return 0;
        }
        x->body = tmp;
        x->body_cap = cap;
    }
    memcpy(x->body + x->body_len, data, n);
    x->body_len += n;
    x->body[x->body_len] = '\0';
    return n;
}

static int append_header(struct curl_slist **list, const char *name, const char *value) {
    size_t nlen = strlen(name), vlen = strlen(value);
    char small[512]; /* curl copies the line: most fit here, longer ones are malloc'd */
    char *line = nlen + vlen + 3 <= sizeof(small) ? small : malloc(nlen + vlen + 3);
    if (line == NULL)
        return OL_ENOMEM;
    memcpy(line, name, nlen);
    if (vlen == 0) {
        /* curl drops "Name:" with no value; "Name;" sends it empty. */
        memcpy(line + nlen, ";", 2);
    } else {
        memcpy(line + nlen, ": ", 2);
        memcpy(line + nlen + 2, value, vlen + 1);
    }
    struct curl_slist *tmp = curl_slist_append(*list, line);
    if (line != small)
        free(line);
    if (tmp == NULL)
        return OL_ENOMEM;
    *list = tmp;
    return 0;
}

static int build_headers(http_xfer *x, const http_request *req) {
    int has_type = 0;
    for (size_t i = 0; i < req->n_headers; i++) {
        const ol_kv *h = &req->headers[i];
        if (h->name == NULL || h->name[0] == '\0' || h->value == NULL ||
            strpbrk(h->name, ":\r\n") != NULL || strpbrk(h->value, "\r\n") != NULL)
            return OL_EINVAL;
        if (strcasecmp(h->name, "Content-Type") == 0)
            has_type = 1;
        if (append_header(&x->req_headers, h->name, h->value) != 0)
            return OL_ENOMEM;
    }
    /* A request body makes curl add "Expect: 100-continue" (a round trip AWS does not need)
     * and "Content-Type: application/x-www-form-urlencoded"; an empty value removes them. */
    struct curl_slist *tmp = curl_slist_append(x->req_headers, "Expect:");
    if (tmp == NULL)
        return OL_ENOMEM;
    x->req_headers = tmp;
    if (!has_type) {
        tmp = curl_slist_append(x->req_headers, "Content-Type:");
        if (tmp == NULL)
            return OL_ENOMEM;
        x->req_headers = tmp;
    }
    return 0;
}

#define SETOPT(easy, opt, val)                                                                     \
    do {                                                                                           \
        if (curl_easy_setopt((easy), (opt), (val)) != CURLE_OK)                                    \
            goto fail;                                                                             \
    } while (0)

/* A send_once request with a body that libcurl cannot resend: it may use a kept-alive
 * connection (see http_request.send_once). */
static int body_by_callback(const http_xfer *x) {
    return x->send_once && x->has_body && x->req_body_len > 0;
}

/* CURLOPT_READFUNCTION of body_by_callback requests: the body once, front to back. */
static size_t read_body_once(char *buf, size_t size, size_t nitems, void *arg) {
    http_xfer *x = arg;
    size_t n = x->req_body_len - x->req_body_sent;
    if (n > size * nitems)
        n = size * nitems;
    memcpy(buf, x->req_body + x->req_body_sent, n);
    x->req_body_sent += n;
    return n;
}

static int configure(http_engine *eng, http_xfer *x) {
    CURL *e = x->easy;

    SETOPT(e, CURLOPT_URL, x->url);
    /* S3 keys may hold "." and ".." segments: curl must not squash them (the signature and
     * the object would no longer match). */
    SETOPT(e, CURLOPT_PATH_AS_IS, 1L);
    SETOPT(e, CURLOPT_PRIVATE, (void *)x);
    SETOPT(e, CURLOPT_ERRORBUFFER, x->errbuf);
    SETOPT(e, CURLOPT_NOSIGNAL, 1L);
    SETOPT(e, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    SETOPT(e, CURLOPT_OPENSOCKETDATA, (void *)eng);
    SETOPT(e, CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
    SETOPT(e, CURLOPT_CLOSESOCKETDATA, (void *)eng);
    SETOPT(e, CURLOPT_PROTOCOLS_STR, "http,https");
    SETOPT(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    SETOPT(e, CURLOPT_SSL_VERIFYPEER, 1L);
    SETOPT(e, CURLOPT_SSL_VERIFYHOST, 2L);
    SETOPT(e, CURLOPT_TCP_KEEPALIVE, 1L);
    SETOPT(e, CURLOPT_BUFFERSIZE, HTTP_RECV_BUFFER);
    SETOPT(e, CURLOPT_TIMEOUT_MS, x->timeout_ms);
    if (x->send_once && !body_by_callback(x)) {
        SETOPT(e, CURLOPT_FRESH_CONNECT, 1L);
        SETOPT(e, CURLOPT_FORBID_REUSE, 1L);
    }
    SETOPT(e, CURLOPT_CONNECTTIMEOUT_MS, x->connect_timeout_ms);
    /* Proxies come from the environment as with the AWS CLI (HTTPS_PROXY, ...); the loopback
     * exception keeps local emulators reachable behind a corporate proxy. */
    SETOPT(e, CURLOPT_NOPROXY, eng->no_proxy);
    if (eng->ca_bundle != NULL)
        SETOPT(e, CURLOPT_CAINFO, eng->ca_bundle);
    SETOPT(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)HTTP_MAX_BODY);
    SETOPT(e, CURLOPT_WRITEFUNCTION, on_body);
    SETOPT(e, CURLOPT_WRITEDATA, (void *)x);
    SETOPT(e, CURLOPT_HTTPHEADER, x->req_headers);

    if (strcmp(x->method, "HEAD") == 0) {
        SETOPT(e, CURLOPT_NOBODY, 1L);
    } else if (strcmp(x->method, "GET") != 0 || x->has_body) {
        if (x->has_body) {
            /* PUT and POST always carry Content-Length (0 when empty): S3 answers 411
             * MissingContentLength otherwise. */
            SETOPT(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->req_body_len);
            if (body_by_callback(x)) {
                /* POST reads the body from the callback; CUSTOMREQUEST sets the method. No
                 * SEEKFUNCTION, on purpose (see http_request.send_once). */
                SETOPT(e, CURLOPT_POST, 1L);
                /* The smallest libcurl takes (16 KiB) instead of its 64 KiB default: the body
                 * is one small form, and a handle keeps the buffer while it lives. */
                SETOPT(e, CURLOPT_UPLOAD_BUFFERSIZE, HTTP_UPLOAD_BUFFER);
                SETOPT(e, CURLOPT_READFUNCTION, read_body_once);
                SETOPT(e, CURLOPT_READDATA, (void *)x);
            } else {
                SETOPT(e, CURLOPT_POSTFIELDS, x->req_body);
            }
        }
        SETOPT(e, CURLOPT_CUSTOMREQUEST, x->method);
    }
    return 0;

fail:
    return OL_ENOMEM;
}

/* Give x a curl handle and add it to the multi handle. 0, or OL_ENOMEM (x untouched but
 * for its handle, which is gone again). */
static int xfer_start(http_engine *eng, http_xfer *x) {
    x->easy = eng->n_spare > 0 ? eng->spare[--eng->n_spare] : curl_easy_init();
    if (x->easy != NULL && configure(eng, x) == 0 &&
        curl_multi_add_handle(eng->multi, x->easy) == CURLM_OK) {
        list_insert_tail(&eng->xfers, &x->node);
        eng->active++;
        if (x->host != NULL)
            x->host->active++;
        return 0;
    }
    if (x->easy != NULL)
        curl_easy_cleanup(x->easy);
    x->easy = NULL;
    return OL_ENOMEM;
}

/* Start queued requests while slots are free. One that cannot start is told so at once
 * (from the loop: never from inside http_send). */
static void start_queued(http_engine *eng) {
    /* Oldest first, passing over hosts at their cap. A callback run here (a request that
     * cannot start) may queue more, or close the engine: each turn looks afresh. */
    http_xfer *x;
    while (!eng->closing && eng->active < HTTP_MAX_ACTIVE && (x = dequeue_oldest(eng, 0)) != NULL)
        if (xfer_start(eng, x) != 0)
            xfer_complete(x, CURLE_OUT_OF_MEMORY, OL_ENOMEM);
}

int http_send(http_engine *eng, const http_request *req, http_cb cb, void *arg) {
    if (eng == NULL || req == NULL || cb == NULL || req->url == NULL || req->method == NULL ||
        req->method[0] == '\0' || (req->n_headers > 0 && req->headers == NULL) ||
        (req->body == NULL && req->body_len > 0))
        return OL_EINVAL;
    if (eng->closing)
        return OL_ECANCELED;
    http_xfer *x = calloc(1, sizeof *x);
    if (x == NULL)
        return OL_ENOMEM;
    x->eng = eng;
    x->cb = cb;
    x->arg = arg;
    list_init(&x->node);
    x->timeout_ms = req->timeout_ms > 0 ? req->timeout_ms : HTTP_DEFAULT_TIMEOUT_MS;
    x->connect_timeout_ms =
        req->connect_timeout_ms > 0 ? req->connect_timeout_ms : HTTP_DEFAULT_CONNECT_TIMEOUT_MS;
    x->send_once = req->send_once;
    x->has_body =
        req->body != NULL || strcmp(req->method, "PUT") == 0 || strcmp(req->method, "POST") == 0;
    x->req_body_len = req->body_len;
    int rc = OL_ENOMEM;
    x->url = strdup(req->url);
    x->method = strdup(req->method);
    x->req_body = malloc(req->body_len + 1);
    if (x->url == NULL || x->method == NULL || x->req_body == NULL)
        goto fail;
    if (req->body_len > 0)
        memcpy(x->req_body, req->body, req->body_len);
    x->req_body[req->body_len] = '\0';
    rc = build_headers(x, req);
    if (rc != 0)
        goto fail;
    if (req->host != NULL && (x->host = host_get(eng, req->host)) == NULL) {
        rc = OL_ENOMEM;
        goto fail;
    }
    /* Queued when the engine or the host is at its cap, or behind requests to the same host
     * (or, naming none, behind others naming none) that wait: each host's requests keep
     * their order, and no request waits for another host's. */
    if (eng->active >= HTTP_MAX_ACTIVE || !host_has_room(eng, queue_of(x)) ||
        queue_of(x)->queued > 0) {
        enqueue(eng, x);
        return 0;
    }
    /* Only arms the timer: the transfer starts, and completes, from the loop. */
    rc = xfer_start(eng, x);
    if (rc != 0)
        goto fail;
    return 0;

fail:
    xfer_free(x);
    return rc;
}

unsigned http_active(const http_engine *eng) {
    return eng != NULL ? eng->active : 0;
}

unsigned http_queued(const http_engine *eng) {
    return eng != NULL ? eng->n_queued : 0;
}

const char *http_header(const http_response *res, const char *name) {
    struct curl_header *h = NULL;
    if (res == NULL || name == NULL)
        return NULL;
    if (res->easy == NULL) {
        for (size_t i = 0; i < res->n_headers; i++)
            if (strcasecmp(res->headers[i].name, name) == 0)
                return res->headers[i].value;
        return NULL;
    }
    /* request -1: the final answer's headers, not those of a 1xx or an earlier hop. */
    if (curl_easy_header(res->easy, name, 0, CURLH_HEADER, -1, &h) != CURLHE_OK || h == NULL)
        return NULL;
    return h->value != NULL ? h->value : "";
}

/* ---- engine lifecycle ----------------------------------------------------------------- */

/* NO_PROXY from the environment (curl reads no_proxy first), plus the loopback names:
 * CURLOPT_NOPROXY replaces the variable, so both are kept. */
static char *make_no_proxy(void) {
    static const char loopback[] = "localhost,127.0.0.1,::1";
    const char *env = getenv("no_proxy");
    if (env == NULL || env[0] == '\0')
        env = getenv("NO_PROXY");
    if (env == NULL || env[0] == '\0')
        return strdup(loopback);
    if (strcmp(env, "*") == 0)
        return strdup(env);
    size_t len = strlen(env);
    char *s = malloc(len + 1 + sizeof loopback);
    if (s == NULL)
        return NULL;
    memcpy(s, env, len);
    s[len] = ',';
    memcpy(s + len + 1, loopback, sizeof loopback);
    return s;
}

http_engine *http_new(uv_loop_t *loop) {
    if (loop == NULL)
        return NULL;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return NULL;
    http_engine *eng = calloc(1, sizeof *eng);
    if (eng == NULL)
        goto fail_global;
    eng->loop = loop;
    list_init(&eng->waiting_hosts);
    list_init(&eng->unnamed.node);
    list_init(&eng->unnamed.waiting);
    list_init(&eng->unnamed.ready);
    list_init(&eng->xfers);
    list_init(&eng->canceled);
    list_init(&eng->hosts);
    eng->no_proxy = make_no_proxy();
    if (eng->no_proxy == NULL)
        goto fail;
    const char *ca = getenv("OPSLINE_CA_BUNDLE");
    if (ca != NULL && ca[0] != '\0') {
        /* CURLOPT_CAINFO replaces the bundle file; the system CA directory (CAPATH) stays,
         * so this adds an emulator's CA without losing the public roots. */
        eng->ca_bundle = strdup(ca);
        if (eng->ca_bundle == NULL)
            goto fail;
    }
    eng->multi = curl_multi_init();
    if (eng->multi == NULL)
        goto fail;
    if (curl_multi_setopt(eng->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket) != CURLM_OK ||
        curl_multi_setopt(eng->multi, CURLMOPT_SOCKETDATA, eng) != CURLM_OK ||
        curl_multi_setopt(eng->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer) != CURLM_OK ||
        curl_multi_setopt(eng->multi, CURLMOPT_TIMERDATA, eng) != CURLM_OK ||
        curl_multi_setopt(eng->multi, CURLMOPT_MAX_HOST_CONNECTIONS, HTTP_MAX_HOST_CONNECTIONS) !=
            CURLM_OK)
        goto fail;
    if (uv_timer_init(loop, &eng->timer) != 0)
        goto fail;
    eng->timer.data = eng;
    eng->open_handles = 1;
    return eng;

fail:
    if (eng->multi != NULL)
        curl_multi_cleanup(eng->multi);
    free(eng->ca_bundle);
    free(eng->no_proxy);
    free(eng->by_fd);
    free(eng);
fail_global:
    curl_global_cleanup();
    return NULL;
}

/* The timer is the last curl-facing handle to close: canceled requests are told here, from
 * the loop, and on_closed follows once the socket handles are closed too. */
static void on_timer_closed(uv_handle_t *h) {
    http_engine *eng = h->data;

    list_node *n;
    while ((n = list_first(&eng->canceled)) != NULL) {
        http_xfer *x = list_entry(n, http_xfer, node);
        list_remove(n);
        xfer_complete(x, CURLE_OK, OL_ECANCELED);
    }
    engine_handle_closed(eng);
}

void http_close(http_engine *eng, void (*on_closed)(void *arg), void *arg) {
    if (eng == NULL || eng->closing)
        return;
    eng->closing = 1;
    eng->on_closed = on_closed;
    eng->closed_arg = arg;
    list_node *n;
    while ((n = list_first(&eng->xfers)) != NULL) {
        curl_multi_remove_handle(eng->multi, list_entry(n, http_xfer, node)->easy);
        list_remove(n);
        list_insert_tail(&eng->canceled, n);
    }
    eng->active = 0;
    http_xfer *x;
    while ((x = dequeue_oldest(eng, 1)) != NULL) /* never sent; told in the order queued */
        list_insert_tail(&eng->canceled, &x->node);
    /* Closes the cached connections; curl may still report CURL_POLL_REMOVE meanwhile. */
    curl_multi_cleanup(eng->multi);
    eng->multi = NULL;
    while (eng->n_spare > 0)
        curl_easy_cleanup(eng->spare[--eng->n_spare]);
    for (size_t fd = 0; fd < eng->n_by_fd; fd++)
        if (eng->by_fd[fd] != NULL)
            socket_close(eng->by_fd[fd]);
    uv_timer_stop(&eng->timer);
    uv_close((uv_handle_t *)&eng->timer, on_timer_closed);
}

static int vtable_send(void *engine, const http_request *req, http_cb cb, void *arg) {
    return http_send(engine, req, cb, arg);
}

static void vtable_close(void *engine, void (*on_closed)(void *arg), void *arg) {
    http_close(engine, on_closed, arg);
}

const http_vtable http_default_vtable = {vtable_send, vtable_close};
