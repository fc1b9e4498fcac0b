/* http: many HTTP requests in flight on one thread. libcurl's multi-socket API driven by
 * the libuv loop (uv_poll per socket, one uv_timer), connections reused, TLS verification
 * always on. No retries here: one call, one attempt. */
#ifndef OL_AWS_HTTP_H
#define OL_AWS_HTTP_H

#include <stddef.h>
#include <uv.h>

#include "opsline/opsline.h"

typedef struct http_engine http_engine;

typedef struct http_request {
    const char *method; /* "GET", "PUT", "POST", "DELETE", "HEAD" */
    const char *url;    /* complete URL, already encoded */
    const ol_kv *headers;
    size_t n_headers;
    const char *body; /* copied by http_send; may be NULL */
    size_t body_len;
    long timeout_ms;         /* whole-request timeout; 0: 60000 */
    long connect_timeout_ms; /* 0: 10000 */
    /* The request must never reach the server twice (non-idempotent: CreateAccessKey). On a
     * reused connection that turns out dead without a byte of answer, libcurl silently
     * resends a request once, which for CreateAccessKey could create a key nobody hears
     * about. A request with a body therefore sends it through a read callback that cannot
     * rewind: that resend then fails (CURLE_SEND_FAIL_REWIND, reported as sent) unless no
     * byte of the body had left, when the server cannot have acted on it. Without a body the
     * request goes on a new connection, closed afterwards. */
    int send_once;
    /* The host (authority: host[:port]) the URL names, or NULL. At most 64 requests to one
     * host are in flight at once; the rest wait in the engine's queue, in order. */
    const char *host;
} http_request;

typedef struct http_response {
    /* 0 when an HTTP answer arrived complete (any status). OL_ETIMEDOUT, or OL_ENET for
     * connection failures, resets and truncated bodies. OL_ERANGE when the body went over
     * its cap (4 MiB, or 64 KiB for a status of 300 and up) and was abandoned there: status
     * is set, body holds at most the cap, error says "answer larger than N bytes". */
    int result;
    long status;
    char *body; /* NUL-terminated, owned by the engine, valid during the callback */
    size_t body_len;
    void *easy; /* the transfer's curl handle, for http_header; NULL when none ran */
    /* Without a curl handle (an engine of its own, such as a test double): the headers,
     * names lowercased, for http_header. */
    const ol_kv *headers;
    size_t n_headers;
    const char *error; /* curl's text for a transport failure, else NULL */
    int sent; /* nonzero when the request may have reached the server (for unknown outcome) */
} http_response;

typedef void (*http_cb)(void *arg, const http_response *res);

/* Create an engine on loop. Returns NULL on allocation or curl init failure. */
http_engine *http_new(uv_loop_t *loop);

/* Start a request; cb runs exactly once from the loop (never from inside http_send), or
 * http_send returns a negative code and cb never runs. */
int http_send(http_engine *eng, const http_request *req, http_cb cb, void *arg);

/* The value of the final answer's header name (any case), or NULL; valid during the
 * callback. libcurl keeps the headers of a transfer, so they are looked up there, not
 * copied for every answer. */
const char *http_header(const http_response *res, const char *name);

/* Requests holding a curl handle now (at most 128), and requests queued for one. */
unsigned http_active(const http_engine *eng);
unsigned http_queued(const http_engine *eng);

/* Abort every request in flight, clean curl up, and close the engine's handles. The aborted
 * requests' callbacks run with OL_ECANCELED from the loop after http_close has returned, all
 * of them before on_closed, which runs once everything is released (may be NULL); the
 * engine is freed just before on_closed. From the call on, http_send returns OL_ECANCELED.
 * May be called from a response callback; a second call is ignored. The loop must keep
 * running until on_closed. */
void http_close(http_engine *eng, void (*on_closed)(void *arg), void *arg);

/* The HTTP layer as the AWS client sees it, a function table (aws-c-auth's function_table is
 * the model): tests give the client a fake layer that answers from a script, with no socket.
 * engine is the layer's own handle; each function keeps the contract of http_send and
 * http_close above. */
typedef struct http_vtable {
    int (*send)(void *engine, const http_request *req, http_cb cb, void *arg);
    void (*close)(void *engine, void (*on_closed)(void *arg), void *arg);
} http_vtable;

/* This file's engine: http_send and http_close. */
extern const http_vtable http_default_vtable;

/* Environment read once by http_new: OPSLINE_CA_BUNDLE (extra CA file, test knob) and
 * no_proxy/NO_PROXY. Proxies (https_proxy, HTTPS_PROXY, http_proxy) are honoured as curl
 * and the AWS CLI do, except for localhost, 127.0.0.1 and ::1, which are always direct. */

#endif
