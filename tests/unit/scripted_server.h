/* scripted_server: the unit tests' one HTTP/1.1 server. It listens on a free loopback port,
 * on the test's own loop or on a loop in a thread of its own (for code that blocks in its
 * own loop, such as pipeline_run), splits what it reads into requests (header block plus
 * Content-Length bytes), records every request, and answers each with what the test
 * scripted: by path (a route) or else in order (the script), else a fallback. Connections
 * are kept alive, so tests see connection reuse. Not a mock of AWS: answers are bytes the
 * test wrote. */
#ifndef OL_TEST_SCRIPTED_SERVER_H
#define OL_TEST_SCRIPTED_SERVER_H

#include <stddef.h>
#include <uv.h>

#include "list.h"

typedef enum scripted_action {
    SCRIPTED_ANSWER,       /* write answer (raw response bytes); to a HEAD, its head only */
    SCRIPTED_ANSWER_CLOSE, /* write answer, then close (with a short body: a truncation) */
    SCRIPTED_ECHO,         /* 200 whose body is the request as received */
    SCRIPTED_RESET,        /* answer nothing and reset the connection (TCP RST) */
    SCRIPTED_HANG,         /* never answer */
} scripted_action;

/* Matches a request whose path is path, or continues it with '/' or '?'. */
typedef struct scripted_route {
    const char *path;
    scripted_action action;
    const char *answer; /* for SCRIPTED_ANSWER and SCRIPTED_ANSWER_CLOSE */
} scripted_route;

typedef struct scripted_server {
    /* Set by the test before scripted_server_start; borrowed until scripted_server_stop. */
    const scripted_route *routes;
    size_t n_routes;
    const char *const *script; /* answers to requests no route takes, in order */
    size_t n_script;
    const char *fallback; /* after the script; NULL: "599 Unscripted" */

    /* Read by the test (in thread mode only after scripted_server_stop). */
    int port;
    unsigned n_conns;  /* connections accepted */
    unsigned n_reqs;   /* complete requests read */
    size_t n_answered; /* script entries used (including past its end) */
    char **reqs;       /* the n_reqs requests as received, NUL-terminated; freed by stop */

    /* Private. */
    uv_loop_t *loop;
    uv_loop_t own_loop;
    uv_tcp_t tcp;
    uv_async_t stop;
    uv_thread_t thread;
    int threaded;
    size_t reqs_cap;
    list_node conns;
} scripted_server;

/* Starts listening on 127.0.0.1 at a free port (s->port). loop NULL: on a loop of the
 * server's own, run by a thread of its own. Aborts the test program when it cannot. */
void scripted_server_start(scripted_server *s, uv_loop_t *loop);

/* Closes every connection and the listener and frees the recorded requests. On the test's
 * loop the handles are released when that loop next runs (before the test's uv_loop_close);
 * in thread mode the thread is joined and its loop closed before this returns. */
void scripted_server_stop(scripted_server *s);

/* needle in the len bytes at hay, ignoring case (header names), or NULL. */
const char *scripted_server_find(const char *hay, size_t len, const char *needle);

#endif
