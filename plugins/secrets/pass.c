/* pass: the secret store that keeps each item's access key in a password store of the
 * standard unix password manager (https://www.passwordstore.org/): one gpg-encrypted file
 * per entry, encrypted to the recipients of the nearest `.gpg-id`, committed when the store
 * is a git repository. The entry holds the secret on its first line, then
 * `aws_access_key_id:`, `region:`, `bucket:`, `user:` and `created:` lines, the layout
 * pass's own tools (`pass show -c`, browser plugins) expect.
 *
 * Writing does what `pass insert` does, with two differences that matter here: the file is
 * written atomically (gpg's own -o truncates the old entry first) and, in a git repository,
 * entries are committed in groups (concurrent `pass insert`s there fight over git's index
 * lock and leave entries uncommitted). So a put finds the entry's recipients and repository
 * (nearest .gpg-id and .git up the tree, as pass does; off the loop), runs gpg with the entry
 * on stdin and the ciphertext on stdout, writes the file with host->write_private_file, and
 * in a repository joins the next `git add` + `git commit` (pass's message), which run under
 * host->lock_acquire on the store's path. With PASSWORD_STORE_SIGNING_KEY set (a signed
 * .gpg-id) puts go through `pass insert` itself, which checks the signature. Reading and
 * removing always go through `pass show` and `pass rm` (under the same lock in a git store,
 * as pass commits the removal). prepare checks before any request that pass and gpg are
 * installed, the store is initialised and gpg can encrypt to every recipient.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "opsline/opsline.h"

#include "lib/storebuf.h"

#define PASS_DEFAULT_PATH "aws/{bucket}"
#define PASS_GPG_ID_MAX (64 * 1024)
#define PASS_WALK_MAX_DIRS 10000
#define PASS_WALK_MAX_DEPTH 8
#define PASS_MAX_RECIPIENTS 256
#define PASS_PATH_MAX 1024
#define PASS_OUTPUT_CAP (256 * 1024)
#define PASS_RUN_TIMEOUT_MS 60000
#define PASS_SHOW_TIMEOUT_MS 120000 /* gpg-agent may ask the user for a passphrase */
#define PASS_CHECK_TIMEOUT_MS 30000
#define PASS_REASON_MAX 1024

/* Whether a struct filled by someone else is large enough to carry a field. */
#define PASS_HAS(s, field) ((s)->struct_size >= offsetof(ol_secret, field) + sizeof((s)->field))

typedef struct pass_state pass_state;
typedef struct pass_op pass_op;
typedef struct run_req run_req;
typedef void (*run_cb)(void *arg, const ol_proc_result *res);

/* One program to run; queued when max_running children are already running. */
struct run_req {
    run_req *next;
    pass_state *st;
    const ol_item *item;
    char **argv; /* NULL-terminated, owned */
    char *input; /* owned; may hold a secret: wiped before free */
    size_t input_len;
    const char *const *env;
    unsigned timeout_ms;
    run_cb cb;
    void *arg;
};

typedef enum { OP_PUT, OP_GET, OP_DEL } op_kind;

/* One store operation of one item, from the call to store_done. */
struct pass_op {
    pass_op *next; /* in st->ops, from the call until store_done */
    pass_state *st;
    ol_item *item;
    op_kind kind;
    char *path;   /* entry name inside the store */
    char *key_id; /* put: the key being stored (not secret) */
    ol_lock *lock;
    char *input; /* put: the entry until gpg or pass gets it (a secret: wiped) */
    size_t input_len;
    /* put written directly: found off the loop, then gpg's output */
    char *file;    /* absolute path of the .gpg file */
    char *repo;    /* the git repository the file is in, or NULL */
    char *id_file; /* the .gpg-id giving the recipients (or PASSWORD_STORE_KEY) */
    char **recips; /* NULL-terminated */
    char *cipher;  /* gpg's output */
    size_t cipher_len;
    int held;      /* written, waiting for its commit */
    int in_commit; /* part of the commit under way */
    char *reason;  /* a failure completed from a timer */
    int result;
};

typedef struct pass_prep pass_prep;

/* One recipient's check: the callback's argument. */
typedef struct prep_check {
    pass_prep *p;
    size_t i;
} prep_check;

/* prepare, step by step. */
struct pass_prep {
    pass_state *st;
    int rc;
    char reason[PASS_REASON_MAX];
    /* filled by the scan (off the loop) */
    char *recipients[PASS_MAX_RECIPIENTS];
    char *sources[PASS_MAX_RECIPIENTS]; /* the .gpg-id (or PASSWORD_STORE_KEY) naming it */
    size_t n;
    int has_git;
    /* recipient checks */
    prep_check checks[PASS_MAX_RECIPIENTS];
    size_t pending;
    char failures[PASS_REASON_MAX];
    size_t n_failed;
};

struct pass_state {
    const char *dir_opt;   /* bound: dir */
    const char *path_tmpl; /* bound: path */
    const ol_host *host;
    ol_stage *stage;
    char *dir;                /* the store, absolute, no trailing '/' */
    char *env_dir;            /* PASSWORD_STORE_DIR=<dir> */
    const char *env_plain[2]; /* PASSWORD_STORE_DIR, so pass.dir wins */
    char *store_key;          /* PASSWORD_STORE_KEY: recipients that override .gpg-id */
    char **gpg_opts;          /* PASSWORD_STORE_GPG_OPTS, split on blanks, NULL-terminated */
    int git;                  /* the store holds a git repository: pass commands take turns */
    int via_pass;             /* PASSWORD_STORE_SIGNING_KEY: puts through `pass insert` */
    /* the group commit under way */
    int committing, commit_sign;
    size_t commit_n;
    char *commit_repo;
    ol_lock *commit_lock;
    /* children */
    size_t running, max_running;
    run_req *queue_head, *queue_tail;
    /* operations in progress */
    pass_op *ops;
    pass_prep *prep;
};

static const ol_option_def pass_options[] = {
    {"dir", OL_OPT_STRING, NULL,
     "the password store (a directory initialised with `pass init`); default "
     "$PASSWORD_STORE_DIR, else ~/.password-store",
     OL_BIND(pass_state, dir_opt)},
    {"path", OL_OPT_STRING, PASS_DEFAULT_PATH,
     "entry name inside the store (as given to `pass show`); placeholders {product}, "
     "{environment}, {bucket}, {user}, {region}",
     OL_BIND(pass_state, path_tmpl)},
};

/* --------------------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------------------ */

static void free_strv(char **v) {
    if (v == NULL)
        return;
    for (char **p = v; *p != NULL; p++)
        free(*p);
    free(v);
}

/* Appends printf output to a fixed buffer, truncating with "..." when full. */
static void OL_PRINTF(3, 4) appendf(char *buf, size_t cap, const char *fmt, ...) {
    size_t len = strlen(buf);
    if (len + 4 >= cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + len, cap - len, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n >= cap - len)
        memcpy(buf + cap - 4, "...", 4);
}

/* A program's stderr as one line: lines joined with "; ", control characters dropped. */
static void summarise(const char *err, size_t len, char *out, size_t cap) {
    size_t o = 0;
    int sep = 0;
    if (cap == 0)
        return;
    for (size_t i = 0; i < len && err != NULL && o + 4 < cap; i++) {
        unsigned char c = (unsigned char)err[i];
        if (c == '\n' || c == '\r') {
            sep = o > 0;
            continue;
        }
        if (c < 0x20 || c == 0x7f)
            c = ' ';
        if (sep) {
            out[o++] = ';';
            out[o++] = ' ';
            sep = 0;
        }
        out[o++] = (char)c;
    }
    while (o > 0 && out[o - 1] == ' ')
        o--;
    out[o] = '\0';
    if (o == 0)
        snprintf(out, cap, "no error output");
}

/* pass refuses "sneaky" paths; we also refuse absolute and empty components, which would
 * put the entry somewhere the user did not mean. Returns NULL or why. */
static const char *path_check(const char *p) {
    size_t n = strlen(p);
    if (n == 0)
        return "the entry name is empty";
    if (n >= PASS_PATH_MAX)
        return "the entry name is too long";
    if (p[0] == '/')
        return "the entry name must be relative to the store (no leading '/')";
    if (p[0] == '-')
        return "the entry name must not start with '-'";
    if (p[n - 1] == '/')
        return "the entry name must not end with '/'";
    for (const char *s = p; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return "the entry name holds a control character";
    for (const char *c = p; c != NULL;) {
        const char *slash = strchr(c, '/');
        size_t len = slash != NULL ? (size_t)(slash - c) : strlen(c);
        if (len == 0)
            return "the entry name has an empty component ('//')";
        if ((len == 1 && c[0] == '.') || (len == 2 && c[0] == '.' && c[1] == '.'))
            return "the entry name has a '.' or '..' component";
        if (len == 4 && memcmp(c, ".git", 4) == 0)
            return "the entry name must not go into .git";
        c = slash != NULL ? slash + 1 : NULL;
    }
    return NULL;
}

/* The directory part of the template that holds no placeholder ("aws" for "aws/{bucket}",
 * "" for "{product}/x"): where the store's entries go. Malloc'd. */
static char *template_prefix(const char *tmpl) {
    size_t n = strcspn(tmpl, "{");
    while (n > 0 && tmpl[n - 1] != '/')
        n--;
    while (n > 0 && tmpl[n - 1] == '/')
        n--;
    return strndup(tmpl, n);
}

static char **split_blanks(const char *s) {
    size_t cap = 1;
    for (const char *p = s; p != NULL && *p != '\0'; p++)
        cap++;
    char **v = calloc(cap, sizeof(*v));
    if (v == NULL)
        return NULL;
    size_t n = 0;
    for (const char *p = s; p != NULL && *p != '\0';) {
        p += strspn(p, " \t\n");
        size_t len = strcspn(p, " \t\n");
        if (len == 0)
            break;
        v[n] = strndup(p, len);
        if (v[n++] == NULL) {
            free_strv(v);
            return NULL;
        }
        p += len;
    }
    return v;
}

static char *concat(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    char *s = malloc(na + nb + 1);
    if (s != NULL) {
        memcpy(s, a, na);
        memcpy(s + na, b, nb + 1);
    }
    return s;
}

/* Reads one .gpg-id as pass does: one id per line, '#' starts a comment, blanks around it
 * dropped. Returns a NULL-terminated malloc'd list (maybe empty), or NULL when the file
 * cannot be read or memory runs out. Blocking: off the loop only. */
static char **gpg_id_read(const char *path) {
    /* Missing, or not a regular file: NULL. Opened without blocking and checked before
     * reading, so a FIFO in the file's place cannot block a thread of the pool. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    struct stat sb;
    if (fd < 0)
        return NULL;
    int fl = fcntl(fd, F_GETFL);
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || fl < 0 ||
        fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
        close(fd);
        return NULL;
    }
    FILE *f = fdopen(fd, "r");
    if (f == NULL) {
        close(fd);
        return NULL;
    }
    size_t n = 0, cap = 8, total = 0;
    char **ids = calloc(cap + 1, sizeof(*ids));
    char line[1024];
    if (ids == NULL)
        goto fail;
    while (fgets(line, sizeof(line), f) != NULL && total < PASS_GPG_ID_MAX) {
        total += strlen(line);
        line[strcspn(line, "#\r\n")] = '\0';
        char *s = line + strspn(line, " \t");
        size_t len = strlen(s);
        while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
            len--;
        if (len == 0 || n == PASS_MAX_RECIPIENTS)
            continue;
        if (n == cap) {
            char **more = realloc(ids, (2 * cap + 1) * sizeof(*ids));
            if (more == NULL)
                goto fail;
            ids = more;
            cap *= 2;
        }
        if ((ids[n] = strndup(s, len)) == NULL)
            goto fail;
        ids[++n] = NULL;
    }
    fclose(f);
    return ids;
fail:
    fclose(f);
    free_strv(ids);
    return NULL;
}

/* Blocking: off the loop only. */
static int file_exists(const char *path, int want_dir) {
    struct stat sb;
    if (stat(path, &sb) != 0)
        return 0;
    return want_dir ? S_ISDIR(sb.st_mode) : S_ISREG(sb.st_mode);
}

static int stderr_has(const ol_proc_result *res, const char *needle) {
    return res->err != NULL && strstr(res->err, needle) != NULL;
}

/* `pass show` or `pass rm` failed because the store has no such entry. */
static int not_in_store(const ol_proc_result *res) {
    return res->term_signal == 0 && res->exit_status != 0 &&
           stderr_has(res, "is not in the password store");
}

/* --------------------------------------------------------------------------------------
 * Children: at most max_running at once, the rest queued first come first served
 * ------------------------------------------------------------------------------------ */

static void run_free(run_req *req) {
    free_strv(req->argv);
    free_wiped(req->st->host, req->input, req->input_len);
    free(req);
}

static void run_pump(pass_state *st);

static void run_done(void *arg, const ol_proc_result *res) {
    run_req *req = arg;
    pass_state *st = req->st;
    st->running--;
    req->cb(req->arg, res);
    run_free(req);
    run_pump(st);
}

static int run_start(run_req *req) {
    pass_state *st = req->st;
    ol_proc_spec spec = {
        .struct_size = sizeof(ol_proc_spec),
        .argv = (const char *const *)req->argv,
        .env = req->env,
        .stdin_data = req->input,
        .stdin_len = req->input_len,
        .output_cap = PASS_OUTPUT_CAP,
        .timeout_ms = req->timeout_ms,
    };
    int rc = st->host->proc_run(st->stage, req->item, &spec, run_done, req);
    if (rc == 0)
        st->running++;
    return rc;
}

static void run_pump(pass_state *st) {
    while (st->running < st->max_running && st->queue_head != NULL) {
        run_req *req = st->queue_head;
        st->queue_head = req->next;
        if (st->queue_head == NULL)
            st->queue_tail = NULL;
        int rc = run_start(req);
        if (rc != 0) {
            ol_proc_result res = {.struct_size = sizeof(res), .result = rc, .out = "", .err = ""};
            req->cb(req->arg, &res);
            run_free(req);
        }
    }
}

/* Runs argv (copied) with input (owned from now on, also on failure) on stdin. Returns 0
 * and calls cb once, or a negative code without calling it. */
static int run(pass_state *st, const ol_item *item, const char *const *argv, const char *const *env,
               char *input, size_t input_len, unsigned timeout_ms, run_cb cb, void *arg) {
    run_req *req = calloc(1, sizeof(*req));
    size_t n = 0;
    while (argv[n] != NULL)
        n++;
    if (req == NULL || (req->argv = calloc(n + 1, sizeof(char *))) == NULL)
        goto nomem;
    for (size_t i = 0; i < n; i++)
        if ((req->argv[i] = strdup(argv[i])) == NULL)
            goto nomem;
    req->st = st;
    req->item = item;
    req->input = input;
    req->input_len = input_len;
    req->env = env;
    req->timeout_ms = timeout_ms;
    req->cb = cb;
    req->arg = arg;
    if (st->queue_head == NULL && st->running < st->max_running) {
        int rc = run_start(req);
        if (rc != 0)
            run_free(req);
        return rc;
    }
    if (st->queue_tail != NULL)
        st->queue_tail->next = req;
    else
        st->queue_head = req;
    st->queue_tail = req;
    return 0;
nomem:
    if (req != NULL) {
        free_strv(req->argv);
        free(req);
    }
    free_wiped(st->host, input, input_len);
    return OL_ENOMEM;
}

/* --------------------------------------------------------------------------------------
 * Operations
 * ------------------------------------------------------------------------------------ */

static void op_free(pass_op *op) {
    for (pass_op **p = &op->st->ops; *p != NULL; p = &(*p)->next)
        if (*p == op) {
            *p = op->next;
            break;
        }
    free_wiped(op->st->host, op->input, op->input_len);
    free(op->file);
    free(op->repo);
    free(op->id_file);
    free_strv(op->recips);
    free(op->cipher);
    free(op->path);
    free(op->key_id);
    free(op->reason);
    free(op);
}

static void OL_PRINTF(3, 4) op_finish(pass_op *op, int result, const char *fmt, ...) {
    pass_state *st = op->st;
    char reason[PASS_REASON_MAX];
    reason[0] = '\0';
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(reason, sizeof(reason), fmt, ap);
        va_end(ap);
    }
    if (op->lock != NULL)
        st->host->lock_release(op->lock);
    op->lock = NULL;
    st->host->store_done(st->stage, op->item, result, NULL, fmt != NULL ? reason : NULL);
    op_free(op);
}

/* Completes op and returns 1 when the program could not run at all ("pass: could not run
 * <what>: <error>", what from fmt); returns 0 when it ran. */
static int OL_PRINTF(3, 4) not_run(pass_op *op, const ol_proc_result *res, const char *fmt, ...) {
    if (res->result == 0)
        return 0;
    char what[PASS_REASON_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    op_finish(op, res->result, "pass: could not run %s: %s", what,
              op->st->host->strerror(res->result));
    return 1;
}

static void op_fail_fired(void *arg, int status) {
    pass_op *op = arg;
    (void)status;
    op_finish(op, op->result, "%s", op->reason);
}

/* A failure found before anything ran: completed from a timer, so store_done never runs
 * inside put/get/del. Returns what the operation returns. */
static int OL_PRINTF(3, 4) op_fail_later(pass_op *op, int result, const char *fmt, ...) {
    pass_state *st = op->st;
    char reason[PASS_REASON_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    op->result = result;
    op->reason = strdup(reason);
    if (op->reason != NULL && st->host->timer_start(st->stage, 0, op_fail_fired, op, NULL) == 0)
        return 0;
    st->host->log(st->stage, op->item, OL_LOG_ERROR, "%s", reason);
    op_free(op);
    return result;
}

/* The entry name for the item; NULL with why filled. Malloc'd. */
static char *item_path(pass_state *st, const ol_item *item, char *why, size_t why_cap) {
    const ol_host *h = st->host;
    char *out = NULL, *bad = NULL;
    if (h->expand(item, st->path_tmpl, &out, &bad) != 0) {
        snprintf(why, why_cap, "pass: option pass.path '%s': %s", st->path_tmpl,
                 bad != NULL ? bad : "invalid template");
        h->free(bad);
        return NULL;
    }
    const char *bad_path = path_check(out);
    char *path = bad_path == NULL ? strdup(out) : NULL;
    if (bad_path != NULL)
        snprintf(why, why_cap, "pass: option pass.path '%s' gives '%s': %s", st->path_tmpl, out,
                 bad_path);
    else if (path == NULL)
        snprintf(why, why_cap, "pass: out of memory");
    h->free(out);
    return path;
}

static pass_op *op_new(pass_state *st, ol_item *item, op_kind kind) {
    pass_op *op = calloc(1, sizeof(*op));
    if (op == NULL)
        return NULL;
    op->st = st;
    op->item = item;
    op->kind = kind;
    op->next = st->ops;
    st->ops = op;
    return op;
}

/* Sets op->path or completes the op with the reason later. Returns 0 when op->path is set;
 * otherwise *ret is what the operation returns. */
/* A new operation with its entry path, or NULL with *ret what put, get or del returns then
 * (OL_ENOMEM, or the path's failure, completed later). */
static pass_op *op_start(pass_state *st, ol_item *item, op_kind kind, int *ret) {
    char why[PASS_REASON_MAX];
    pass_op *op = op_new(st, item, kind);
    *ret = OL_ENOMEM;
    if (op == NULL)
        return NULL;
    op->path = item_path(op->st, op->item, why, sizeof(why));
    if (op->path != NULL)
        return op;
    *ret = op_fail_later(op, OL_ECONFIG, "%s", why);
    return NULL;
}

static void put_done(void *arg, const ol_proc_result *res);
static void del_done(void *arg, const ol_proc_result *res);

static const char *op_verb(const pass_op *op) {
    return op->kind == OP_PUT ? "insert" : "rm";
}

/* Runs the pass command that changes the store. Returns run's code. */
static int op_command(pass_op *op) {
    pass_state *st = op->st;
    if (op->kind == OP_PUT) {
        const char *argv[] = {"pass", "insert", "--multiline", "--force", "--", op->path, NULL};
        char *input = op->input; /* run owns it from now on */
        op->input = NULL;
        return run(st, op->item, argv, st->env_plain, input, op->input_len, PASS_RUN_TIMEOUT_MS,
                   put_done, op);
    }
    const char *argv[] = {"pass", "rm", "--force", "--", op->path, NULL};
    return run(st, op->item, argv, st->env_plain, NULL, 0, PASS_RUN_TIMEOUT_MS, del_done, op);
}

static void op_locked(void *arg, int status, ol_lock *lock) {
    pass_op *op = arg;
    if (status != 0) {
        op_finish(op, status, "pass: `pass %s %s` not run: %s", op_verb(op), op->path,
                  op->st->host->strerror(status));
        return;
    }
    op->lock = lock;
    int rc = op_command(op);
    if (rc != 0)
        op_finish(op, rc, "pass: could not run `pass %s %s`: %s", op_verb(op), op->path,
                  op->st->host->strerror(rc));
}

/* Starts a put or del: at once, or in a git store when the store's previous pass command
 * (and its commit) is over. Returns what the operation returns. */
static int op_begin(pass_op *op) {
    pass_state *st = op->st;
    int rc = st->git ? st->host->lock_acquire(st->stage, st->dir, op_locked, op) : op_command(op);
    if (rc != 0)
        return op_fail_later(op, rc, "pass: could not run `pass %s %s`: %s", op_verb(op), op->path,
                             st->host->strerror(rc));
    return 0;
}

/* ---- put ----------------------------------------------------------------------------- */

static int value_ok(const char *v) {
    return v == NULL || strpbrk(v, "\r\n") == NULL;
}

/* The entry as pass users expect it: the secret first, then key: value lines. Malloc'd;
 * the caller (run) wipes it. */
static char *entry_text(const ol_host *h, const ol_secret *s, size_t *len) {
    const char *names[4] = {"region", "bucket", "user", "created"};
    const char *values[4] = {
        PASS_HAS(s, region) ? s->region : NULL, PASS_HAS(s, bucket) ? s->bucket : NULL,
        PASS_HAS(s, user) ? s->user : NULL, PASS_HAS(s, created) ? s->created : NULL};
    storebuf b = STOREBUF_INIT(h);
    storebuf_str(&b, s->secret_access_key);
    storebuf_str(&b, "\naws_access_key_id: ");
    storebuf_str(&b, s->access_key_id);
    storebuf_str(&b, "\n");
    for (int i = 0; i < 4; i++)
        if (values[i] != NULL && values[i][0] != '\0') {
            storebuf_str(&b, names[i]);
            storebuf_str(&b, ": ");
            storebuf_str(&b, values[i]);
            storebuf_str(&b, "\n");
        }
    return storebuf_take(&b, len);
}

/* `pass insert` (with PASSWORD_STORE_SIGNING_KEY) has run. */
static void put_done(void *arg, const ol_proc_result *res) {
    pass_op *op = arg;
    pass_state *st = op->st;
    char err[PASS_REASON_MAX / 2];
    if (not_run(op, res, "`pass insert` for %s in %s", op->path, st->dir))
        return;
    if (res->term_signal != 0 || res->exit_status != 0) {
        summarise(res->err, res->err_len, err, sizeof(err));
        op_finish(op, OL_EIO, "pass: `pass insert %s` failed in %s: %s", op->path, st->dir, err);
        return;
    }
    st->host->log(st->stage, op->item, OL_LOG_DEBUG, "wrote %s (%s) for key %s", op->path, st->dir,
                  op->key_id);
    op_finish(op, 0, NULL);
}

static void put_scan_work(void *arg);
static void put_scan_after(void *arg, int status);

static int pass_put(ol_stage *stage, ol_item *item, void *state, const ol_secret *secret) {
    pass_state *st = state;
    (void)stage;
    int ret;
    pass_op *op = op_start(st, item, OP_PUT, &ret);
    if (op == NULL)
        return ret;
    if (secret == NULL || secret->access_key_id == NULL || secret->secret_access_key == NULL ||
        secret->secret_access_key[0] == '\0')
        return op_fail_later(op, OL_EINVAL, "pass: no access key to store in %s", op->path);
    if (!value_ok(secret->access_key_id) || !value_ok(secret->secret_access_key) ||
        (PASS_HAS(secret, region) && !value_ok(secret->region)) ||
        (PASS_HAS(secret, bucket) && !value_ok(secret->bucket)) ||
        (PASS_HAS(secret, user) && !value_ok(secret->user)) ||
        (PASS_HAS(secret, created) && !value_ok(secret->created)))
        return op_fail_later(op, OL_EINVAL, "pass: the key for %s holds a line break: not stored",
                             op->path);
    op->key_id = strdup(secret->access_key_id);
    size_t len = 0;
    char *text = entry_text(st->host, secret, &len);
    if (op->key_id == NULL || text == NULL) {
        free_wiped(st->host, text, len);
        return op_fail_later(op, OL_ENOMEM, "pass: out of memory storing %s", op->path);
    }
    op->input = text;
    op->input_len = len;
    if (st->via_pass)
        return op_begin(op);
    int rc = st->host->work_queue(st->stage, put_scan_work, put_scan_after, op);
    if (rc != 0)
        return op_fail_later(op, rc, "pass: cannot write %s: %s", op->path, st->host->strerror(rc));
    return 0;
}

/* ---- put, written directly ---------------------------------------------------------- */

static void commit_kick(pass_state *st);

/* Off the loop: the file, its recipients (PASSWORD_STORE_KEY, else the nearest .gpg-id from
 * the entry's directory up to the store) and its repository (the nearest .git up to the
 * store), as pass finds them. Failure: op->result and op->reason. */
static void put_scan_work(void *arg) {
    pass_op *op = arg;
    const pass_state *st = op->st;
    char cur[PATH_MAX], path[PATH_MAX];
    size_t root_len = strlen(st->dir);
    struct stat sb;
    if ((size_t)snprintf(cur, sizeof(cur), "%s/%s", st->dir, op->path) >= sizeof(cur) - 8) {
        op->result = OL_ERANGE;
        op->reason = strdup("pass: the entry's path is too long");
        return;
    }
    op->file = concat(cur, ".gpg");
    *strrchr(cur, '/') = '\0'; /* the entry's directory; path holds a '/' after the store */
    if (st->store_key != NULL) {
        op->recips = split_blanks(st->store_key);
        op->id_file = strdup("PASSWORD_STORE_KEY");
    }
    for (;;) {
        if (op->recips == NULL &&
            (size_t)snprintf(path, sizeof(path), "%s/.gpg-id", cur) < sizeof(path) &&
            (op->recips = gpg_id_read(path)) != NULL)
            op->id_file = strdup(path);
        if (op->repo == NULL &&
            (size_t)snprintf(path, sizeof(path), "%s/.git", cur) < sizeof(path) &&
            stat(path, &sb) == 0)
            op->repo = strdup(cur);
        char *slash = strrchr(cur, '/');
        if (strlen(cur) <= root_len || slash == NULL || (size_t)(slash - cur) < root_len)
            break;
        *slash = '\0';
    }
    if (op->file == NULL || (op->recips != NULL && op->id_file == NULL)) {
        op->result = OL_ENOMEM;
        op->reason = strdup("pass: out of memory");
    } else if (op->recips == NULL || op->recips[0] == NULL) {
        op->result = OL_ECONFIG;
        char why[PASS_REASON_MAX];
        snprintf(why, sizeof(why),
                 "pass: no gpg key for %s: no .gpg-id in %s or above (or it is empty): run "
                 "`PASSWORD_STORE_DIR=%s pass init KEYID...`",
                 op->path, st->dir, st->dir);
        op->reason = strdup(why);
    }
}

static void put_write_work(void *arg) {
    pass_op *op = arg;
    op->result = op->st->host->write_private_file(op->file, op->cipher, op->cipher_len);
}

static void put_write_after(void *arg, int status) {
    pass_op *op = arg;
    pass_state *st = op->st;
    if (status != 0 || op->result != 0) {
        int rc = status != 0 ? status : op->result;
        op_finish(op, rc, "pass: cannot write %s: %s (is the store writable?)", op->file,
                  st->host->strerror(rc));
        return;
    }
    if (op->repo == NULL) {
        st->host->log(st->stage, op->item, OL_LOG_DEBUG, "wrote %s (%s) for key %s", op->path,
                      st->dir, op->key_id);
        op_finish(op, 0, NULL);
        return;
    }
    op->held = 1; /* completed by its commit */
    commit_kick(st);
}

static void put_encrypted(void *arg, const ol_proc_result *res) {
    pass_op *op = arg;
    pass_state *st = op->st;
    char err[PASS_REASON_MAX / 2];
    if (not_run(op, res, "gpg to encrypt %s", op->path))
        return;
    if (res->term_signal != 0 || res->exit_status != 0) {
        summarise(res->err, res->err_len, err, sizeof(err));
        op_finish(op, OL_EIO, "pass: gpg could not encrypt %s to the keys of %s: %s", op->path,
                  op->id_file, err);
        return;
    }
    if (res->out_truncated || res->out_len == 0 || (op->cipher = malloc(res->out_len)) == NULL) {
        op_finish(op, OL_EIO, "pass: gpg gave no usable output for %s", op->path);
        return;
    }
    memcpy(op->cipher, res->out, res->out_len);
    op->cipher_len = res->out_len;
    int rc = st->host->work_queue(st->stage, put_write_work, put_write_after, op);
    if (rc != 0)
        op_finish(op, rc, "pass: cannot write %s: %s", op->file, st->host->strerror(rc));
}

/* What pass runs (its GPG_OPTS and -e -r ...), to stdout, never fetching a key. */
static void put_scan_after(void *arg, int status) {
    pass_op *op = arg;
    pass_state *st = op->st;
    if (status != 0 || op->result != 0) {
        op_finish(op, status != 0 ? status : op->result, "%s",
                  status != 0 || op->reason == NULL ? "pass: interrupted before the entry was "
                                                      "written"
                                                    : op->reason);
        return;
    }
    const char *head[] = {
        "--quiet",           "--yes", "--batch",  "--compress-algo=none", "--no-encrypt-to",
        "--auto-key-locate", "local", "--encrypt"};
    size_t n_opts = 0, n_recips = 0, n_head = sizeof(head) / sizeof(head[0]), a = 0;
    while (st->gpg_opts[n_opts] != NULL)
        n_opts++;
    while (op->recips[n_recips] != NULL)
        n_recips++;
    const char **argv = calloc(1 + n_opts + n_head + 2 * n_recips + 3, sizeof(*argv));
    if (argv == NULL) {
        op_finish(op, OL_ENOMEM, "pass: out of memory writing %s", op->path);
        return;
    }
    argv[a++] = "gpg";
    for (size_t i = 0; i < n_opts; i++)
        argv[a++] = st->gpg_opts[i];
    for (size_t i = 0; i < n_head; i++)
        argv[a++] = head[i];
    for (size_t i = 0; i < n_recips; i++) {
        argv[a++] = "--recipient";
        argv[a++] = op->recips[i];
    }
    argv[a++] = "--output";
    argv[a++] = "-";
    char *input = op->input; /* run owns it from now on */
    op->input = NULL;
    int rc = run(st, op->item, argv, st->env_plain, input, op->input_len, PASS_RUN_TIMEOUT_MS,
                 put_encrypted, op);
    free(argv);
    if (rc != 0)
        op_finish(op, rc, "pass: could not run gpg to encrypt %s: %s", op->path,
                  st->host->strerror(rc));
}

/* --------------------------------------------------------------------------------------
 * git: entries written directly are committed in groups, one repository at a time
 * ------------------------------------------------------------------------------------ */

/* Completes the puts of the commit; their entries are in the store whether or not git took
 * them (as with pass, whose insert succeeds when its commit fails). */
static void commit_end(pass_state *st, int result, const char *reason) {
    if (st->commit_lock != NULL)
        st->host->lock_release(st->commit_lock);
    st->commit_lock = NULL;
    pass_op *op;
    for (;;) {
        for (op = st->ops; op != NULL && !op->in_commit; op = op->next)
            ;
        if (op == NULL)
            break;
        op->in_commit = 0;
        if (result == 0) {
            st->host->log(st->stage, op->item, OL_LOG_DEBUG, "wrote %s (%s) for key %s, committed",
                          op->path, st->dir, op->key_id);
            op_finish(op, 0, NULL);
        } else {
            op_finish(op, result, "%s", reason);
        }
    }
    free(st->commit_repo);
    st->commit_repo = NULL;
    st->committing = 0;
    if (result != OL_ECANCELED)
        commit_kick(st);
}

/* Runs git in the commit's repository: words, then the files of the commit's puts. */
static void commit_run(pass_state *st, const char *const *words, run_cb cb) {
    size_t nw = 0, a = 0;
    while (words[nw] != NULL)
        nw++;
    const char **argv = calloc(3 + nw + st->commit_n + 1, sizeof(*argv));
    int rc = OL_ENOMEM;
    if (argv != NULL) {
        argv[a++] = "git";
        argv[a++] = "-C";
        argv[a++] = st->commit_repo;
        for (size_t i = 0; i < nw; i++)
            argv[a++] = words[i];
        for (pass_op *op = st->ops; op != NULL; op = op->next)
            if (op->in_commit)
                argv[a++] = op->file;
        rc = run(st, NULL, argv, st->env_plain, NULL, 0, PASS_RUN_TIMEOUT_MS, cb, st);
        free(argv);
    }
    if (rc != 0) {
        ol_proc_result r = {.struct_size = sizeof(r), .result = rc, .out = "", .err = ""};
        cb(st, &r);
    }
}

static int commit_failed(pass_state *st, const ol_proc_result *res, const char *what) {
    char err[PASS_REASON_MAX / 2];
    if (res->result == OL_ECANCELED) {
        commit_end(st, OL_ECANCELED, "pass: run interrupted before the git commit");
        return 1;
    }
    if (res->result == 0 && res->term_signal == 0 && res->exit_status == 0)
        return 0;
    if (res->out != NULL && strstr(res->out, "nothing to commit") != NULL)
        return 0;
    summarise(res->err, res->err_len, err, sizeof(err));
    st->host->log(st->stage, NULL, OL_LOG_WARN,
                  "pass: %zu entries are stored in %s but `git %s` failed: %s; commit them by "
                  "hand (git -C %s commit)",
                  st->commit_n, st->commit_repo, what,
                  res->result != 0 ? st->host->strerror(res->result) : err, st->commit_repo);
    commit_end(st, 0, NULL);
    return 1;
}

static void commit_done(void *arg, const ol_proc_result *res) {
    pass_state *st = arg;
    if (commit_failed(st, res, "commit"))
        return;
    st->host->log(st->stage, NULL, OL_LOG_DEBUG, "committed %zu entries in %s", st->commit_n,
                  st->commit_repo);
    commit_end(st, 0, NULL);
}

static void commit_signed(void *arg, const ol_proc_result *res) {
    pass_state *st = arg;
    /* pass signs its commits when the repository says pass.signcommits=true */
    st->commit_sign = res->result == 0 && res->exit_status == 0 && res->out != NULL &&
                      strncmp(res->out, "true", 4) == 0;
    char subject[PASS_PATH_MAX + 64];
    pass_op *one = st->ops;
    while (one != NULL && !one->in_commit)
        one = one->next;
    if (st->commit_n == 1 && one != NULL) /* pass's own message */
        snprintf(subject, sizeof(subject), "Add given password for %s to store.", one->path);
    else
        snprintf(subject, sizeof(subject), "Add given passwords for %zu entries to store.",
                 st->commit_n);
    const char *words[] = {"commit",
                           "--quiet",
                           "-m",
                           subject,
                           "-m",
                           "Written by opsline.",
                           st->commit_sign ? "-S" : "--",
                           st->commit_sign ? "--" : NULL,
                           NULL};
    commit_run(st, words, commit_done);
}

static void commit_added(void *arg, const ol_proc_result *res) {
    pass_state *st = arg;
    if (commit_failed(st, res, "add"))
        return;
    const char *argv[] = {"git",    "-C",    st->commit_repo,    "config",
                          "--bool", "--get", "pass.signcommits", NULL};
    int rc = run(st, NULL, argv, st->env_plain, NULL, 0, PASS_RUN_TIMEOUT_MS, commit_signed, st);
    if (rc != 0) {
        ol_proc_result r = {.struct_size = sizeof(r), .result = rc, .out = "", .err = ""};
        commit_signed(st, &r);
    }
}

static void commit_locked(void *arg, int status, ol_lock *lock) {
    pass_state *st = arg;
    if (status != 0) {
        commit_end(st, status, "pass: run interrupted before the git commit");
        return;
    }
    st->commit_lock = lock;
    const char *words[] = {"add", "--", NULL};
    commit_run(st, words, commit_added);
}

/* Commits the written puts of one repository, unless a commit is under way (its end calls
 * this again). */
static void commit_kick(pass_state *st) {
    if (st->committing)
        return;
    const char *repo = NULL;
    st->commit_n = 0;
    for (pass_op *op = st->ops; op != NULL; op = op->next)
        if (op->held && !op->in_commit && (repo == NULL || strcmp(repo, op->repo) == 0)) {
            repo = op->repo;
            op->in_commit = 1;
            st->commit_n++;
        }
    if (st->commit_n == 0)
        return;
    st->committing = 1;
    st->commit_repo = strdup(repo);
    int rc = st->commit_repo != NULL ? st->host->lock_acquire(st->stage, st->dir, commit_locked, st)
                                     : OL_ENOMEM;
    if (rc != 0) {
        char reason[PASS_REASON_MAX];
        snprintf(reason, sizeof(reason), "pass: cannot commit in %s: %s", st->dir,
                 st->host->strerror(rc));
        commit_end(st, rc, reason);
    }
}

/* ---- get ----------------------------------------------------------------------------- */

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

/* Splits a decrypted entry in place into s. Returns 0, or OL_EINVAL when it has no secret
 * or no aws_access_key_id line. */
static int entry_parse(char *text, ol_secret *s) {
    *s = (ol_secret){.struct_size = sizeof(ol_secret)};
    int first = 1;
    for (char *line = text; line != NULL;) {
        char *nl = strchr(line, '\n');
        if (nl != NULL)
            *nl = '\0';
        if (first) {
            size_t n = strlen(line);
            if (n > 0 && line[n - 1] == '\r')
                line[n - 1] = '\0';
            s->secret_access_key = line;
            first = 0;
        } else {
            char *colon = strchr(line, ':');
            if (colon != NULL) {
                *colon = '\0';
                const char *name = trim(line);
                char *value = trim(colon + 1);
                if (strcmp(name, "aws_access_key_id") == 0)
                    s->access_key_id = value;
                else if (strcmp(name, "region") == 0)
                    s->region = value;
                else if (strcmp(name, "bucket") == 0)
                    s->bucket = value;
                else if (strcmp(name, "user") == 0)
                    s->user = value;
                else if (strcmp(name, "created") == 0)
                    s->created = value;
            }
        }
        line = nl != NULL ? nl + 1 : NULL;
    }
    if (s->secret_access_key == NULL || s->secret_access_key[0] == '\0' ||
        s->access_key_id == NULL || s->access_key_id[0] == '\0')
        return OL_EINVAL;
    return 0;
}

static void get_done(void *arg, const ol_proc_result *res) {
    pass_op *op = arg;
    pass_state *st = op->st;
    if (not_run(op, res, "`pass show %s`", op->path))
        return;
    if (not_in_store(res)) {
        st->host->store_done(st->stage, op->item, OL_ENOENT, NULL, NULL);
        op_free(op);
        return;
    }
    if (res->term_signal != 0 || res->exit_status != 0) {
        char err[PASS_REASON_MAX / 2];
        summarise(res->err, res->err_len, err, sizeof(err));
        op_finish(op, OL_EIO,
                  "pass: `pass show %s` failed in %s: %s (can this user's gpg key decrypt it?)",
                  op->path, st->dir, err);
        return;
    }
    size_t len = res->out_len;
    char *text = malloc(len + 1);
    if (text == NULL) {
        op_finish(op, OL_ENOMEM, "pass: out of memory reading %s", op->path);
        return;
    }
    memcpy(text, res->out, len);
    text[len] = '\0';
    ol_secret found;
    if (res->out_truncated || entry_parse(text, &found) != 0) {
        free_wiped(st->host, text, len + 1);
        op_finish(op, OL_EINVAL,
                  "pass: entry %s in %s is not an access key (no secret on the first line or "
                  "no aws_access_key_id line): move it away or choose another pass.path",
                  op->path, st->dir);
        return;
    }
    st->host->store_done(st->stage, op->item, 0, &found, NULL);
    free_wiped(st->host, text, len + 1);
    op_free(op);
}

static int pass_get(ol_stage *stage, ol_item *item, void *state) {
    pass_state *st = state;
    (void)stage;
    int ret;
    pass_op *op = op_start(st, item, OP_GET, &ret);
    if (op == NULL)
        return ret;
    const char *argv[] = {"pass", "show", "--", op->path, NULL};
    int rc = run(st, item, argv, st->env_plain, NULL, 0, PASS_SHOW_TIMEOUT_MS, get_done, op);
    if (rc != 0)
        return op_fail_later(op, rc, "pass: could not run `pass show %s`: %s", op->path,
                             st->host->strerror(rc));
    return 0;
}

/* ---- del ----------------------------------------------------------------------------- */

static void del_done(void *arg, const ol_proc_result *res) {
    pass_op *op = arg;
    pass_state *st = op->st;
    if (not_run(op, res, "`pass rm %s`", op->path))
        return;
    if (res->term_signal == 0 && (res->exit_status == 0 || not_in_store(res))) {
        st->host->log(st->stage, op->item, OL_LOG_INFO, "removed %s (%s)", op->path, st->dir);
        op_finish(op, 0, NULL);
    } else {
        char err[PASS_REASON_MAX / 2];
        summarise(res->err, res->err_len, err, sizeof(err));
        op_finish(op, OL_EIO, "pass: `pass rm %s` failed in %s: %s", op->path, st->dir, err);
    }
}

static int pass_del(ol_stage *stage, ol_item *item, void *state) {
    pass_state *st = state;
    (void)stage;
    int ret;
    pass_op *op = op_start(st, item, OP_DEL, &ret);
    if (op == NULL)
        return ret;
    return op_begin(op);
}

/* --------------------------------------------------------------------------------------
 * prepare: pass and gpg installed, store initialised, every recipient usable
 * ------------------------------------------------------------------------------------ */

static void prep_free(pass_prep *p) {
    for (size_t i = 0; i < p->n; i++) {
        free(p->recipients[i]);
        free(p->sources[i]);
    }
    free(p);
}

/* reason may point into p: it is used before p is freed. */
static void prep_end(pass_prep *p, int rc, const char *reason) {
    pass_state *st = p->st;
    st->prep = NULL;
    st->host->prepare_done(st->stage, rc, rc != 0 ? reason : NULL);
    prep_free(p);
}

static void prep_add_recipient(pass_prep *p, const char *r, size_t len, const char *source) {
    for (size_t i = 0; i < p->n; i++)
        if (strlen(p->recipients[i]) == len && memcmp(p->recipients[i], r, len) == 0)
            return;
    if (p->n == PASS_MAX_RECIPIENTS)
        return;
    p->recipients[p->n] = strndup(r, len);
    p->sources[p->n] = strdup(source);
    if (p->recipients[p->n] == NULL || p->sources[p->n] == NULL) {
        free(p->recipients[p->n]);
        free(p->sources[p->n]);
        return;
    }
    p->n++;
}

static void prep_add_recipients(pass_prep *p, char **ids, const char *source) {
    for (size_t i = 0; ids != NULL && ids[i] != NULL; i++)
        prep_add_recipient(p, ids[i], strlen(ids[i]), source);
}

/* Reads one .gpg-id into the recipients; -1 when it cannot be read. */
static int prep_read_gpg_id(pass_prep *p, const char *path) {
    char **ids = gpg_id_read(path);
    if (ids == NULL)
        return -1;
    prep_add_recipients(p, ids, path);
    free_strv(ids);
    return 0;
}

/* Every .gpg-id below dir: entries there are encrypted to those instead. */
static void prep_walk(pass_prep *p, const char *dir, int depth, size_t *budget) {
    if (depth > PASS_WALK_MAX_DEPTH || *budget == 0)
        return;
    (*budget)--;
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".git") == 0)
            p->has_git = 1; /* a repository in a sub-folder: pass commits there too */
        if (e->d_name[0] == '.')
            continue; /* ., .., .git, .extensions */
        char sub[PATH_MAX];
        if ((size_t)snprintf(sub, sizeof(sub), "%s/%s", dir, e->d_name) >= sizeof(sub))
            continue;
        if (!file_exists(sub, 1))
            continue;
        char id[PATH_MAX];
        if ((size_t)snprintf(id, sizeof(id), "%s/.gpg-id", sub) < sizeof(id))
            prep_read_gpg_id(p, id); /* none there: nothing added */
        prep_walk(p, sub, depth + 1, budget);
    }
    closedir(d);
}

/* PASSWORD_STORE_KEY: the recipients instead of any .gpg-id. */
static void prep_add_store_keys(pass_prep *p, const char *store_key) {
    char **keys = split_blanks(store_key);
    for (size_t i = 0; keys != NULL && keys[i] != NULL; i++)
        prep_add_recipient(p, keys[i], strlen(keys[i]), "PASSWORD_STORE_KEY");
    free_strv(keys);
}

/* From start up to the store's root, as pass looks it up: reads the nearest .gpg-id (its
 * path into id_path) and notes a repository on the way. Returns whether it found one. */
static int prep_climb(pass_prep *p, const char *start, char id_path[PATH_MAX]) {
    size_t root_len = strlen(p->st->dir);
    char cur[PATH_MAX], path[PATH_MAX];
    struct stat sb;
    snprintf(cur, sizeof(cur), "%s", start);
    int found = 0;
    for (;;) {
        if (!found && (size_t)snprintf(path, sizeof(path), "%s/.gpg-id", cur) < sizeof(path) &&
            prep_read_gpg_id(p, path) == 0) {
            found = 1;
            memcpy(id_path, path, PATH_MAX);
        }
        /* pass commits into the nearest repository above the entry, up to the store */
        if ((size_t)snprintf(path, sizeof(path), "%s/.git", cur) < sizeof(path) &&
            stat(path, &sb) == 0)
            p->has_git = 1;
        if (strlen(cur) <= root_len)
            break;
        char *slash = strrchr(cur, '/');
        if (slash == NULL || (size_t)(slash - cur) < root_len)
            break;
        *slash = '\0';
    }
    return found;
}

/* Off the loop: the store exists, and who its entries are encrypted to. */
static void prep_scan_work(void *arg) {
    pass_prep *p = arg;
    pass_state *st = p->st;
    char path[PATH_MAX];
    if (!file_exists(st->dir, 1)) {
        p->rc = OL_ECONFIG;
        snprintf(p->reason, sizeof(p->reason),
                 "pass: the password store %s does not exist: create it with "
                 "`PASSWORD_STORE_DIR=%s pass init KEYID...` (the team's gpg keys), or set "
                 "pass.dir",
                 st->dir, st->dir);
        return;
    }
    snprintf(path, sizeof(path), "%s/.git", st->dir);
    struct stat sb;
    p->has_git = stat(path, &sb) == 0;
    if (st->store_key != NULL) {
        prep_add_store_keys(p, st->store_key);
        return;
    }
    /* The nearest .gpg-id from where the entries go, up to the store's root, as pass
     * looks it up; then every .gpg-id below that directory. */
    char *prefix = template_prefix(st->path_tmpl);
    if (prefix == NULL) {
        p->rc = OL_ENOMEM;
        snprintf(p->reason, sizeof(p->reason), "pass: out of memory");
        return;
    }
    char start[PATH_MAX];
    snprintf(start, sizeof(start), "%s%s%s", st->dir, prefix[0] ? "/" : "", prefix);
    free(prefix);
    char id_path[PATH_MAX];
    if (!prep_climb(p, start, id_path)) {
        p->rc = OL_ECONFIG;
        snprintf(p->reason, sizeof(p->reason),
                 "pass: the password store %s is not initialised (no .gpg-id): run "
                 "`PASSWORD_STORE_DIR=%s pass init KEYID...` with the team's gpg keys",
                 st->dir, st->dir);
        return;
    }
    size_t budget = PASS_WALK_MAX_DIRS;
    if (file_exists(start, 1))
        prep_walk(p, start, 0, &budget);
    if (p->n == 0) {
        p->rc = OL_ECONFIG;
        snprintf(p->reason, sizeof(p->reason),
                 "pass: %.400s names no gpg key: run `PASSWORD_STORE_DIR=%s pass init KEYID...`",
                 id_path, st->dir);
    }
}

static void prep_settle(pass_prep *p) {
    pass_state *st = p->st;
    if (--p->pending > 0)
        return;
    if (p->n_failed > 0) {
        char reason[PASS_REASON_MAX + 128];
        snprintf(reason, sizeof(reason), "pass: password store %s: %s", st->dir, p->failures);
        prep_end(p, OL_ECONFIG, reason);
        return;
    }
    st->host->log(st->stage, NULL, OL_LOG_DEBUG, "store %s: %zu recipient(s), git %s", st->dir,
                  p->n, st->git ? "yes" : "no");
    prep_end(p, 0, NULL);
}

static void prep_recipient_done(void *arg, const ol_proc_result *res) {
    prep_check *c = arg;
    pass_prep *p = c->p;
    const char *who = p->recipients[c->i], *from = p->sources[c->i];
    const char *sep = p->failures[0] != '\0' ? "; " : "";
    char err[PASS_REASON_MAX / 2];
    if (res->result == 0 && res->term_signal == 0 && res->exit_status == 0) {
        prep_settle(p);
        return;
    }
    p->n_failed++;
    summarise(res->err, res->err_len, err, sizeof(err));
    if (res->result != 0)
        appendf(p->failures, sizeof(p->failures), "%scould not run gpg for '%s': %s", sep, who,
                p->st->host->strerror(res->result));
    else if (stderr_has(res, "No public key") || stderr_has(res, "No name"))
        appendf(p->failures, sizeof(p->failures),
                "%sno public gpg key for recipient '%s' (listed in %s): import it "
                "(gpg --import KEYFILE) or create it, or re-initialise the store without it "
                "(pass init)",
                sep, who, from);
    else if (stderr_has(res, "no assurance") || stderr_has(res, "Unusable public key"))
        appendf(p->failures, sizeof(p->failures),
                "%sgpg will not encrypt to recipient '%s' (listed in %s): %s: trust the key "
                "(gpg --edit-key %s trust, or sign it); an expired or revoked key must be "
                "renewed or replaced",
                sep, who, from, err, who);
    else
        appendf(p->failures, sizeof(p->failures), "%sgpg cannot encrypt to recipient '%s' (%s): %s",
                sep, who, from, err);
    prep_settle(p);
}

/* Runs, per recipient, what pass runs to encrypt, in batch mode and without looking keys
 * up on the network: it fails the way a `pass insert` would, before any key is created. */
static void prep_check_recipients(pass_prep *p) {
    pass_state *st = p->st;
    size_t n_opts = 0;
    while (st->gpg_opts[n_opts] != NULL)
        n_opts++;
    const char *tail[] = {
        "--batch",           "--quiet", "--yes",     "--no-encrypt-to", "--compress-algo=none",
        "--auto-key-locate", "local",   "--encrypt", "--output",        "/dev/null",
        "--recipient"};
    size_t n_tail = sizeof(tail) / sizeof(tail[0]);
    const char **argv = calloc(1 + n_opts + n_tail + 2, sizeof(*argv));
    if (argv == NULL) {
        prep_end(p, OL_ENOMEM, "pass: out of memory");
        return;
    }
    argv[0] = "gpg";
    memcpy(argv + 1, st->gpg_opts, n_opts * sizeof(*argv));
    memcpy(argv + 1 + n_opts, tail, n_tail * sizeof(*argv));
    p->pending = p->n + 1; /* + 1 until every check has started */
    for (size_t i = 0; i < p->n; i++) {
        p->checks[i] = (prep_check){p, i};
        argv[1 + n_opts + n_tail] = p->recipients[i];
        int rc = run(st, NULL, argv, st->env_plain, NULL, 0, PASS_CHECK_TIMEOUT_MS,
                     prep_recipient_done, &p->checks[i]);
        if (rc != 0) {
            ol_proc_result r = {.struct_size = sizeof(r), .result = rc, .out = "", .err = ""};
            prep_recipient_done(&p->checks[i], &r);
        }
    }
    free(argv);
    prep_settle(p);
}

static void prep_scan_after(void *arg, int status) {
    pass_prep *p = arg;
    pass_state *st = p->st;
    if (status != 0) {
        prep_end(p, status, "pass: interrupted");
        return;
    }
    if (p->rc != 0) {
        prep_end(p, p->rc, p->reason);
        return;
    }
    st->git = p->has_git;
    prep_check_recipients(p);
}

static void prep_tool_done(void *arg, const ol_proc_result *res, const char *tool,
                           const char *package, void (*next)(pass_prep *)) {
    pass_prep *p = arg;
    char reason[PASS_REASON_MAX];
    if (res->result == OL_ENOENT) {
        snprintf(reason, sizeof(reason),
                 "pass: `%s` is not installed: install it (Debian: apt-get install %s) or "
                 "remove pass from --secrets",
                 tool, package);
        prep_end(p, OL_ECONFIG, reason);
        return;
    }
    if (res->result != 0 || res->term_signal != 0 || res->exit_status != 0) {
        char err[PASS_REASON_MAX / 2];
        summarise(res->err, res->err_len, err, sizeof(err));
        snprintf(reason, sizeof(reason), "pass: `%s --version` does not run: %s", tool,
                 res->result != 0 ? p->st->host->strerror(res->result) : err);
        prep_end(p, OL_ECONFIG, reason);
        return;
    }
    next(p);
}

static void prep_scan(pass_prep *p) {
    int rc = p->st->host->work_queue(p->st->stage, prep_scan_work, prep_scan_after, p);
    if (rc != 0)
        prep_end(p, rc, "pass: cannot queue the store check");
}

static void prep_gpg_done(void *arg, const ol_proc_result *res) {
    prep_tool_done(arg, res, "gpg", "gnupg", prep_scan);
}

static void prep_gpg(pass_prep *p) {
    const char *argv[] = {"gpg", "--version", NULL};
    int rc =
        run(p->st, NULL, argv, p->st->env_plain, NULL, 0, PASS_CHECK_TIMEOUT_MS, prep_gpg_done, p);
    if (rc != 0) {
        ol_proc_result r = {.struct_size = sizeof(r), .result = rc, .out = "", .err = ""};
        prep_gpg_done(p, &r);
    }
}

static void prep_pass_done(void *arg, const ol_proc_result *res) {
    prep_tool_done(arg, res, "pass", "pass", prep_gpg);
}

static int pass_prepare(ol_stage *stage, void *state) {
    pass_state *st = state;
    (void)stage;
    pass_prep *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return OL_ENOMEM;
    p->st = st;
    st->prep = p;
    const char *argv[] = {"pass", "version", NULL};
    int rc = run(st, NULL, argv, st->env_plain, NULL, 0, PASS_CHECK_TIMEOUT_MS, prep_pass_done, p);
    if (rc != 0) {
        st->host->log(st->stage, NULL, OL_LOG_ERROR, "pass: cannot run `pass version`: %s",
                      st->host->strerror(rc));
        st->prep = NULL;
        free(p);
    }
    return rc;
}

/* --------------------------------------------------------------------------------------
 * init, validate, fini
 * ------------------------------------------------------------------------------------ */

/* The store's absolute path: pass.dir, else $PASSWORD_STORE_DIR, else ~/.password-store;
 * a leading "~/" is the home directory. Malloc'd, or NULL with why set. */
static char *store_dir(const char *opt, const char **why) {
    const char *home = getenv("HOME");
    const char *env = getenv("PASSWORD_STORE_DIR");
    char *dir = NULL;
    if (opt != NULL && opt[0] != '\0') {
        if (opt[0] == '~' && (opt[1] == '/' || opt[1] == '\0')) {
            if (home == NULL || home[0] == '\0') {
                *why = "pass.dir starts with '~' but HOME is not set";
                return NULL;
            }
            size_t len = strlen(home) + strlen(opt) + 1;
            if ((dir = malloc(len)) != NULL)
                snprintf(dir, len, "%s%s", home, opt + 1);
        } else {
            dir = strdup(opt);
        }
    } else if (env != NULL && env[0] != '\0') {
        dir = strdup(env);
    } else {
        if (home == NULL || home[0] == '\0') {
            *why = "neither pass.dir, PASSWORD_STORE_DIR nor HOME is set";
            return NULL;
        }
        size_t len = strlen(home) + sizeof("/.password-store");
        if ((dir = malloc(len)) != NULL)
            snprintf(dir, len, "%s/.password-store", home);
    }
    if (dir == NULL) {
        *why = "out of memory";
        return NULL;
    }
    if (dir[0] != '/') {
        char cwd[PATH_MAX];
        if (getcwd(cwd, sizeof(cwd)) == NULL) {
            free(dir);
            *why = "cannot read the working directory";
            return NULL;
        }
        char *rel = dir;
        dir = malloc(strlen(cwd) + strlen(rel) + 2);
        if (dir != NULL)
            sprintf(dir, "%s/%s", cwd, rel);
        free(rel);
        if (dir == NULL) {
            *why = "out of memory";
            return NULL;
        }
    }
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        dir[--n] = '\0';
    return dir;
}

static void pass_fini(void *state) {
    pass_state *st = state;
    if (st == NULL)
        return;
    while (st->queue_head != NULL) {
        run_req *req = st->queue_head;
        st->queue_head = req->next;
        run_free(req);
    }
    while (st->ops != NULL)
        op_free(st->ops);
    if (st->prep != NULL)
        prep_free(st->prep);
    free(st->dir);
    free(st->env_dir);
    free(st->store_key);
    free(st->commit_repo);
    free_strv(st->gpg_opts);
    free(st);
}

static int pass_init(ol_stage *stage, const ol_host *host, void **state) {
    pass_state *st = calloc(1, sizeof(*st));
    const char *why = NULL;
    if (st == NULL)
        return OL_ENOMEM;
    st->host = host;
    st->stage = stage;
    int rc = host->opt_bind(stage, st);
    if (rc != 0) {
        host->log(stage, NULL, OL_LOG_ERROR, "pass: cannot read options: %s", host->strerror(rc));
        goto fail;
    }
    if (st->path_tmpl == NULL || st->path_tmpl[0] == '\0')
        st->path_tmpl = PASS_DEFAULT_PATH;
    char *out = NULL, *bad = NULL;
    if (host->expand(NULL, st->path_tmpl, &out, &bad) != 0) {
        host->log(stage, NULL, OL_LOG_ERROR, "pass: option pass.path '%s': %s", st->path_tmpl,
                  bad != NULL ? bad : "invalid template");
        host->free(bad);
        rc = OL_ECONFIG;
        goto fail;
    }
    const char *bad_path = path_check(out);
    if (bad_path != NULL) {
        host->log(stage, NULL, OL_LOG_ERROR, "pass: option pass.path '%s': %s", st->path_tmpl,
                  bad_path);
        host->free(out);
        rc = OL_ECONFIG;
        goto fail;
    }
    host->free(out);
    st->dir = store_dir(st->dir_opt, &why);
    if (st->dir == NULL) {
        host->log(stage, NULL, OL_LOG_ERROR, "pass: no password store: %s", why);
        rc = OL_ECONFIG;
        goto fail;
    }
    st->env_dir = concat("PASSWORD_STORE_DIR=", st->dir);
    const char *signing = getenv("PASSWORD_STORE_SIGNING_KEY");
    st->via_pass = signing != NULL && signing[0] != '\0';
    const char *key = getenv("PASSWORD_STORE_KEY");
    st->store_key = key != NULL && key[0] != '\0' ? strdup(key) : NULL;
    st->gpg_opts = split_blanks(getenv("PASSWORD_STORE_GPG_OPTS"));
    if (st->env_dir == NULL || st->gpg_opts == NULL ||
        (key != NULL && key[0] != '\0' && st->store_key == NULL))
        goto nomem;
    st->env_plain[0] = st->env_dir;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    st->max_running = cpus < 2 ? 4 : cpus > 16 ? 32 : (size_t)cpus * 2;
    *state = st;
    return 0;
nomem:
    host->log(stage, NULL, OL_LOG_ERROR, "pass: out of memory");
    rc = OL_ENOMEM;
fail:
    pass_fini(st);
    return rc;
}

static int pass_validate(ol_stage *stage, const ol_item *item, void *state) {
    pass_state *st = state;
    char why[PASS_REASON_MAX];
    char *path = item_path(st, item, why, sizeof(why));
    if (path == NULL) {
        st->host->log(stage, item, OL_LOG_ERROR, "%s", why);
        return OL_ECONFIG;
    }
    free(path);
    return 0;
}

static const ol_store_ops pass_store = {
    .struct_size = sizeof(ol_store_ops),
    .put = pass_put,
    .get = pass_get,
    .del = pass_del,
};

static const ol_plugin pass_plugin = {
    .abi_major = OL_ABI_MAJOR,
    .abi_minor = OL_ABI_MINOR,
    .struct_size = sizeof(ol_plugin),
    .name = "pass",
    .version = "1.0.0",
    .description = "store access keys in a pass password store (gpg-encrypted entries, "
                   "committed when the store is a git repository)",
    OL_OPTIONS(pass_options),
    .init = pass_init,
    .validate = pass_validate,
    .fini = pass_fini,
    .prepare = pass_prepare,
    .store = &pass_store,
};

OL_EXPORT const ol_plugin *opsline_plugin(void) {
    return &pass_plugin;
}
