/* services: programs, off-loop work, timers and named locks for stages (see services.h).
 * State that lives across callbacks is one struct per operation, linked into the services
 * object so a stopped run can find and end it, and freed in the operation's last close
 * callback. */
#include "services.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "error.h"
#include "list.h"

#define PROC_DEFAULT_CAP (1024u * 1024u)
#define PROC_DEFAULT_TIMEOUT_MS 60000u
#define PROC_KILL_GRACE_MS 2000u

extern char **environ;

typedef struct proc proc;
typedef struct work work;
typedef struct lock_waiter lock_waiter;

struct ol_timer {
    services *svc;
    uv_timer_t timer;
    ol_timer_cb cb;
    void *arg;
    list_node node; /* in services.timers */
    int done;       /* fired, stopped or cancelled: the callback will not run (again) */
};

struct ol_lock {
    services *svc;
    char *name;
    int held;
    list_node waiters; /* lock_waiter.node, first come first served */
    list_node node;    /* in services.locks */
};

struct lock_waiter {
    ol_lock *lock;
    ol_lock_cb cb;
    void *arg;
    list_node node; /* in ol_lock.waiters, then in services.grants */
};

typedef struct capture {
    uv_pipe_t pipe;
    char *data;
    size_t len, cap, limit;
    int truncated, open;
} capture;

struct proc {
    services *svc;
    uv_process_t process;
    uv_pipe_t in;
    uv_write_t write_req;
    capture out, err;
    uv_timer_t timer;
    ol_proc_cb cb;
    void *arg;
    int result, exit_status, term_signal;
    int exited, timed_out, cancelled, in_open, timer_open, process_open;
    int64_t exit_code;
    list_node node; /* in services.procs */
};

struct work {
    services *svc;
    uv_work_t req;
    ol_work_fn fn;
    ol_after_work_cb after;
    void *arg;
    list_node node; /* in services.works */
};

struct services {
    uv_loop_t *loop;
    list_node procs, works, timers, locks;
    list_node grants; /* waiters whose lock is granted, to be called from grant_timer */
    uv_timer_t grant_timer;
    int cancelled;
};

static void on_grant(uv_timer_t *t);

int services_new(uv_loop_t *loop, services **out) {
    services *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return OL_ENOMEM;
    s->loop = loop;
    list_init(&s->procs);
    list_init(&s->works);
    list_init(&s->timers);
    list_init(&s->locks);
    list_init(&s->grants);
    uv_timer_init(loop, &s->grant_timer);
    s->grant_timer.data = s;
    uv_unref((uv_handle_t *)&s->grant_timer);
    *out = s;
    return 0;
}

static void free_self(uv_handle_t *h) {
    free(h->data);
}

void services_free(services *s) {
    if (s == NULL)
        return;
    list_node *pos, *tmp;
    list_foreach_safe(pos, tmp, &s->locks) {
        ol_lock *l = list_entry(pos, ol_lock, node);
        list_remove(pos);
        free(l->name);
        free(l);
    }
    s->grant_timer.data = s;
    uv_close((uv_handle_t *)&s->grant_timer, free_self);
}

size_t services_pending(const services *s) {
    size_t n = 0;
    const list_node *pos, *w;
    list_foreach(pos, &s->procs) n++;
    list_foreach(pos, &s->works) n++;
    list_foreach(pos, &s->timers) n++;
    list_foreach(pos, &s->locks) {
        list_foreach(w, &list_entry(pos, ol_lock, node)->waiters) n++;
    }
    return n;
}

int services_env_is_secret(const char *entry) {
    static const char *const exact[] = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                        "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", NULL};
    static const char *const words[] = {"PASSWORD", "PASSPHRASE", "SECRET", "TOKEN", NULL};
    const char *eq = strchr(entry, '=');
    size_t n = eq ? (size_t)(eq - entry) : strlen(entry);
    for (size_t i = 0; exact[i]; i++)
        if (strlen(exact[i]) == n && strncmp(entry, exact[i], n) == 0)
            return 1;
    /* pass's own settings are not secrets. */
    if (strncmp(entry, "PASSWORD_STORE_", 15) == 0)
        return 0;
    for (size_t i = 0; words[i]; i++) {
        size_t wl = strlen(words[i]);
        for (size_t off = 0; off + wl <= n; off++) {
            if (strncmp(entry + off, words[i], wl) != 0)
                continue;
            int start = off == 0 || entry[off - 1] == '_';
            int end = off + wl == n || entry[off + wl] == '_';
            if (start && end)
                return 1;
        }
    }
    return 0;
}

/* ---- programs ------------------------------------------------------------------------- */

static void proc_maybe_finish(proc *p);

static void proc_handle_closed(uv_handle_t *h) {
    proc *p = h->data;
    if (h == (uv_handle_t *)&p->process)
        p->process_open = 0;
    else if (h == (uv_handle_t *)&p->in)
        p->in_open = 0;
    else if (h == (uv_handle_t *)&p->timer)
        p->timer_open = 0;
    else if (h == (uv_handle_t *)&p->out.pipe)
        p->out.open = 0;
    else if (h == (uv_handle_t *)&p->err.pipe)
        p->err.open = 0;
    proc_maybe_finish(p);
}

static void close_if_open(uv_handle_t *h, int open) {
    if (open && !uv_is_closing(h))
        uv_close(h, proc_handle_closed);
}

static void capture_free(capture *c) {
    if (c->data != NULL) {
        OPENSSL_cleanse(c->data, c->cap);
        free(c->data);
    }
}

/* Completes once the process exited and every handle is closed: output is whole then. */
static void proc_maybe_finish(proc *p) {
    if (!p->exited || p->out.open || p->err.open || p->in_open || p->process_open)
        return;
    if (p->timer_open) {
        close_if_open((uv_handle_t *)&p->timer, 1);
        return;
    }
    ol_proc_result res = {.struct_size = sizeof(ol_proc_result)};
    res.result = p->result;
    if (res.result == 0 && p->timed_out)
        res.result = OL_ETIMEDOUT;
    if (res.result == 0 && p->cancelled)
        res.result = OL_ECANCELED;
    res.exit_status = p->exit_status;
    res.term_signal = p->term_signal;
    res.out = p->out.data ? p->out.data : "";
    res.out_len = p->out.len;
    res.err = p->err.data ? p->err.data : "";
    res.err_len = p->err.len;
    res.out_truncated = p->out.truncated;
    res.err_truncated = p->err.truncated;
    list_remove(&p->node);
    p->cb(p->arg, &res);
    capture_free(&p->out);
    capture_free(&p->err);
    free(p);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    static char scratch[65536];
    capture *cap = (capture *)(void *)h; /* the pipe is capture's first member */
    (void)suggested;
    if (cap->len + 1 >= cap->cap && cap->len < cap->limit) {
        size_t ncap = cap->cap ? cap->cap * 2 : 4096;
        while (ncap < cap->len + 65536 && ncap < cap->limit + 1)
            ncap *= 2;
        if (ncap > cap->limit + 1)
            ncap = cap->limit + 1;
        char *d = malloc(ncap);
        if (d != NULL) {
            if (cap->data != NULL) {
                memcpy(d, cap->data, cap->len);
                OPENSSL_cleanse(cap->data, cap->cap);
                free(cap->data);
            }
            d[cap->len] = '\0'; /* an alloc may be followed by no data at all */
            cap->data = d;
            cap->cap = ncap;
        }
    }
    if (cap->data != NULL && cap->len + 1 < cap->cap) {
        *buf = uv_buf_init(cap->data + cap->len, (unsigned)(cap->cap - cap->len - 1));
        return;
    }
    /* Over the cap (or out of memory): read and drop, so the child never blocks. */
    *buf = uv_buf_init(scratch, sizeof(scratch));
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
    capture *cap = (capture *)(void *)st;
    if (n > 0) {
        if (cap->data != NULL && buf->base == cap->data + cap->len) {
            cap->len += (size_t)n;
            cap->data[cap->len] = '\0';
        } else {
            cap->truncated = 1;
            OPENSSL_cleanse(buf->base, (size_t)n);
        }
        return;
    }
    if (n < 0) {
        uv_read_stop(st);
        close_if_open((uv_handle_t *)st, cap->open);
    }
}

static void proc_kill(proc *p, int sig) {
    if (p->exited || p->process.pid <= 0)
        return;
    /* The child leads its own process group (UV_PROCESS_DETACHED): end its children too. */
    if (kill(-p->process.pid, sig) != 0)
        uv_process_kill(&p->process, sig);
}

static void on_proc_timer(uv_timer_t *t) {
    proc *p = t->data;
    if (p->exited)
        return;
    if (!p->timed_out && !p->cancelled) {
        p->timed_out = 1;
        proc_kill(p, SIGTERM);
        uv_timer_start(&p->timer, on_proc_timer, PROC_KILL_GRACE_MS, 0);
        return;
    }
    proc_kill(p, SIGKILL);
}

static void on_proc_exit(uv_process_t *h, int64_t status, int sig) {
    proc *p = h->data;
    p->exited = 1;
    p->exit_status = (int)status;
    p->term_signal = sig;
    uv_timer_stop(&p->timer);
    close_if_open((uv_handle_t *)&p->process, p->process_open);
    proc_maybe_finish(p);
}

static void on_written(uv_write_t *req, int status) {
    proc *p = req->data;
    (void)status;
    close_if_open((uv_handle_t *)&p->in, p->in_open);
}

/* The child's environment: the host's minus its secrets, plus the stage's extras. */
static char **child_env(const char *const *extra) {
    size_t n = 0, k = 0, ne = 0;
    while (environ[n])
        n++;
    while (extra && extra[ne])
        ne++;
    char **env = calloc(n + ne + 1, sizeof(char *));
    if (env == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (services_env_is_secret(environ[i]))
            continue;
        const char *eq = strchr(environ[i], '=');
        size_t nl = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
        int overridden = 0;
        for (size_t j = 0; j < ne && !overridden; j++)
            overridden = strncmp(extra[j], environ[i], nl) == 0 && extra[j][nl] == '=';
        if (!overridden)
            env[k++] = environ[i];
    }
    for (size_t j = 0; j < ne; j++)
        env[k++] = (char *)(uintptr_t)extra[j];
    env[k] = NULL;
    return env;
}

static void capture_init(services *s, capture *c, proc *p, size_t limit) {
    uv_pipe_init(s->loop, &c->pipe, 0);
    c->pipe.data = p;
    c->limit = limit;
    c->open = 1;
}

/* A proc with its handles initialised (not yet spawned), or NULL. */
static proc *proc_new(services *s, const ol_proc_spec *spec, ol_proc_cb cb, void *arg) {
    proc *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->svc = s;
    p->cb = cb;
    p->arg = arg;
    size_t limit = spec->output_cap ? spec->output_cap : PROC_DEFAULT_CAP;
    capture_init(s, &p->out, p, limit);
    capture_init(s, &p->err, p, limit);
    uv_pipe_init(s->loop, &p->in, 0);
    p->in.data = p;
    p->in_open = 1;
    uv_timer_init(s->loop, &p->timer);
    p->timer.data = p;
    p->timer_open = 1;
    p->process.data = p;
    return p;
}

/* uv_spawn failed: the outcome goes through the callback like any other, once the handles
 * libuv initialised are closed. */
static void proc_spawn_failed(proc *p, int uv_err) {
    p->result = uv_err == UV_ENOENT || uv_err == UV_EACCES ? OL_ENOENT : OL_EIO;
    p->exited = 1;
    p->process_open = 1;
    list_insert_head(&p->svc->procs, &p->node);
    close_if_open((uv_handle_t *)&p->process, 1);
    close_if_open((uv_handle_t *)&p->in, 1);
    close_if_open((uv_handle_t *)&p->out.pipe, 1);
    close_if_open((uv_handle_t *)&p->err.pipe, 1);
}

/* Reads both outputs, feeds stdin (then closes it) and arms the time limit. */
static void proc_started(proc *p, const ol_proc_spec *spec) {
    p->process_open = 1;
    list_insert_head(&p->svc->procs, &p->node);
    uv_read_start((uv_stream_t *)&p->out.pipe, on_alloc, on_read);
    uv_read_start((uv_stream_t *)&p->err.pipe, on_alloc, on_read);
    if (spec->stdin_data != NULL && spec->stdin_len > 0) {
        uv_buf_t b = uv_buf_init((char *)(uintptr_t)spec->stdin_data, (unsigned)spec->stdin_len);
        p->write_req.data = p;
        /* libuv may keep pointing at the caller's bytes until the write completes; the
         * contract keeps them valid until the callback, which comes after that. */
        if (uv_write(&p->write_req, (uv_stream_t *)&p->in, &b, 1, on_written) != 0)
            close_if_open((uv_handle_t *)&p->in, 1);
    } else {
        close_if_open((uv_handle_t *)&p->in, 1);
    }
    uv_timer_start(&p->timer, on_proc_timer,
                   spec->timeout_ms ? spec->timeout_ms : PROC_DEFAULT_TIMEOUT_MS, 0);
}

int services_proc_run(services *s, const ol_proc_spec *spec, ol_proc_cb cb, void *arg) {
    if (spec == NULL || cb == NULL ||
        spec->struct_size < offsetof(ol_proc_spec, timeout_ms) + sizeof(spec->timeout_ms) ||
        spec->argv == NULL || spec->argv[0] == NULL)
        return OL_EINVAL;
    if (s->cancelled)
        return OL_ECANCELED;
    char **env = child_env(spec->env);
    proc *p = env != NULL ? proc_new(s, spec, cb, arg) : NULL;
    if (p == NULL) {
        free(env);
        return OL_ENOMEM;
    }
    uv_stdio_container_t stdio[3];
    stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
    stdio[0].data.stream = (uv_stream_t *)&p->in;
    stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[1].data.stream = (uv_stream_t *)&p->out.pipe;
    stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[2].data.stream = (uv_stream_t *)&p->err.pipe;
    /* Its own process group (DETACHED), so the time limit ends the program's children too. */
    uv_process_options_t opt = {.file = spec->argv[0],
                                .args = (char **)(uintptr_t)spec->argv,
                                .env = env,
                                .cwd = spec->cwd,
                                .flags = UV_PROCESS_DETACHED,
                                .stdio_count = 3,
                                .stdio = stdio,
                                .exit_cb = on_proc_exit};
    int rc = uv_spawn(s->loop, &p->process, &opt);
    free(env);
    if (rc != 0)
        proc_spawn_failed(p, rc);
    else
        proc_started(p, spec);
    return 0;
}

/* ---- work ------------------------------------------------------------------------------ */

static void work_run(uv_work_t *req) {
    work *w = req->data;
    w->fn(w->arg);
}

static void work_after(uv_work_t *req, int status) {
    work *w = req->data;
    list_remove(&w->node);
    w->after(w->arg, status == UV_ECANCELED ? OL_ECANCELED : 0);
    free(w);
}

int services_work(services *s, ol_work_fn fn, ol_after_work_cb after, void *arg) {
    if (fn == NULL || after == NULL)
        return OL_EINVAL;
    if (s->cancelled)
        return OL_ECANCELED;
    work *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return OL_ENOMEM;
    w->svc = s;
    w->fn = fn;
    w->after = after;
    w->arg = arg;
    w->req.data = w;
    if (uv_queue_work(s->loop, &w->req, work_run, work_after) != 0) {
        free(w);
        return OL_EIO;
    }
    list_insert_head(&s->works, &w->node);
    return 0;
}

/* ---- timers ----------------------------------------------------------------------------- */

static void timer_closed(uv_handle_t *h) {
    free(h->data);
}

static void timer_end(ol_timer *t, int status) {
    if (t->done)
        return;
    t->done = 1;
    list_remove(&t->node);
    uv_timer_stop(&t->timer);
    uv_close((uv_handle_t *)&t->timer, timer_closed);
    if (status != 1)
        t->cb(t->arg, status);
}

static void on_timer(uv_timer_t *h) {
    timer_end(h->data, 0);
}

int services_timer_start(services *s, uint64_t ms, ol_timer_cb cb, void *arg, ol_timer **out) {
    if (cb == NULL)
        return OL_EINVAL;
    if (s->cancelled)
        return OL_ECANCELED;
    ol_timer *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return OL_ENOMEM;
    t->svc = s;
    t->cb = cb;
    t->arg = arg;
    uv_timer_init(s->loop, &t->timer);
    t->timer.data = t;
    uv_timer_start(&t->timer, on_timer, ms, 0);
    list_insert_head(&s->timers, &t->node);
    if (out != NULL)
        *out = t;
    return 0;
}

void services_timer_stop(ol_timer *t) {
    if (t != NULL)
        timer_end(t, 1); /* 1: silently, no callback */
}

/* ---- locks ------------------------------------------------------------------------------ */

static ol_lock *lock_find(services *s, const char *name, int create) {
    list_node *pos;
    list_foreach(pos, &s->locks) {
        ol_lock *l = list_entry(pos, ol_lock, node);
        if (strcmp(l->name, name) == 0)
            return l;
    }
    if (!create)
        return NULL;
    ol_lock *l = calloc(1, sizeof(*l));
    if (l == NULL || (l->name = strdup(name)) == NULL) {
        free(l);
        return NULL;
    }
    l->svc = s;
    list_init(&l->waiters);
    list_insert_head(&s->locks, &l->node);
    return l;
}

/* Grants go through a zero timer so the callback never runs inside acquire or release. */
static void grant_next(ol_lock *l) {
    list_node *first = list_first(&l->waiters);
    if (l->held || first == NULL)
        return;
    list_remove(first);
    l->held = 1;
    services *s = l->svc;
    list_insert_tail(&s->grants, first);
    uv_ref((uv_handle_t *)&s->grant_timer);
    uv_timer_start(&s->grant_timer, on_grant, 0, 0);
}

static void on_grant(uv_timer_t *t) {
    services *s = t->data;
    uv_unref((uv_handle_t *)&s->grant_timer);
    list_node *first;
    while ((first = list_first(&s->grants)) != NULL) {
        lock_waiter *w = list_entry(first, lock_waiter, node);
        list_remove(first);
        ol_lock *l = w->lock;
        ol_lock_cb cb = w->cb;
        void *arg = w->arg;
        free(w);
        cb(arg, 0, l);
    }
}

int services_lock(services *s, const char *resource, ol_lock_cb cb, void *arg) {
    if (resource == NULL || cb == NULL)
        return OL_EINVAL;
    if (s->cancelled)
        return OL_ECANCELED;
    ol_lock *l = lock_find(s, resource, 1);
    lock_waiter *w = calloc(1, sizeof(*w));
    if (l == NULL || w == NULL) {
        free(w);
        return OL_ENOMEM;
    }
    w->lock = l;
    w->cb = cb;
    w->arg = arg;
    list_insert_tail(&l->waiters, &w->node);
    grant_next(l);
    return 0;
}

void services_unlock(ol_lock *l) {
    if (l == NULL || !l->held)
        return;
    l->held = 0;
    grant_next(l);
    /* A lock nobody holds or waits for goes: a batch takes one per file it writes, and
     * keeping them all would cost memory and a longer search per acquire for every item.
     * Not while cancelling: that walks the list, and services_free frees what is left. */
    if (!l->held && list_empty(&l->waiters) && !l->svc->cancelled) {
        list_remove(&l->node);
        free(l->name);
        free(l);
    }
}

size_t services_lock_count(const services *s) {
    size_t n = 0;
    const list_node *pos;
    list_foreach(pos, &s->locks) n++;
    return n;
}

/* ---- cancel ------------------------------------------------------------------------------ */

void services_cancel_all(services *s) {
    list_node *pos, *tmp;
    s->cancelled = 1;
    list_foreach(pos, &s->procs) {
        proc *p = list_entry(pos, proc, node);
        p->cancelled = 1;
        proc_kill(p, SIGKILL);
    }
    list_foreach(pos, &s->works) {
        uv_cancel((uv_req_t *)&list_entry(pos, work, node)->req);
    }
    list_node *first;
    while ((first = list_first(&s->timers)) != NULL)
        timer_end(list_entry(first, ol_timer, node), OL_ECANCELED);
    list_foreach(pos, &s->locks) {
        ol_lock *l = list_entry(pos, ol_lock, node);
        list_foreach_safe(first, tmp, &l->waiters) {
            lock_waiter *w = list_entry(first, lock_waiter, node);
            list_remove(first);
            w->cb(w->arg, OL_ECANCELED, NULL);
            free(w);
        }
    }
}
