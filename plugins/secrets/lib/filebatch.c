/* filebatch: the held-puts, one-write-per-flush machinery of the stores that rewrite one
 * local file (see filebatch.h). */
#include "filebatch.h"
#include "secretdir.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* One read-(merge-write) of the file for a batch of operations. */
typedef struct fb_job {
    filebatch *fb;
    fb_op *ops;
    int flush; /* complete a flush at the end */
    ol_lock *lock;
    int result; /* file-level outcome, for flush_done */
    char *reason;
} fb_job;

/* --------------------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------------------ */

static char *dup_or_null(const char *s) {
    return s != NULL ? strdup(s) : NULL;
}

static void list_init(fb_list *l) {
    l->head = NULL;
    l->tail = &l->head;
}

static void list_push(fb_list *l, fb_op *op) {
    op->next = NULL;
    *l->tail = op;
    l->tail = &op->next;
}

static fb_op *list_take(fb_list *l) {
    fb_op *head = l->head;
    list_init(l);
    return head;
}

static void op_free(const ol_host *h, fb_op *op) {
    free(op->name);
    free(op->group);
    free(op->uri);
    h->free(op->notes);
    free(op->key_id);
    free_wiped_str(h, op->secret);
    free(op->region);
    free(op->bucket);
    free(op->user);
    free(op->created);
    h->free(op->reason);
    free(op);
}

static void op_finish(fb_op *op, int result, char *reason) {
    op->done = 1;
    op->result = result;
    op->reason = reason;
}

/* Text for an OL_E* code about the file, usable off the loop (host->strerror is not among
 * the thread-safe functions). */
static const char *code_text(int rc) {
    switch (rc) {
    case OL_ENOENT:
        return "no such file";
    case OL_ERANGE:
        return "larger than 64 MiB";
    case OL_EINVAL:
        return "not a regular file (symbolic links are refused)";
    case OL_ENOMEM:
        return "out of memory";
    case OL_ECANCELED:
        return "the run was interrupted";
    default:
        return "input/output error";
    }
}

static void errno_text(int err, char *buf, size_t size) {
    if (strerror_r(err, buf, size) != 0)
        snprintf(buf, size, "error %d", err);
}

/* Makes path absolute (relative to the working directory, "~/" from $HOME) and removes
 * "." and ".." components and repeated slashes, so one file has one lock name. */
static char *path_absolute(const char *file) {
    char cwd[4096];
    const char *base = "";
    if (file[0] == '~' && file[1] == '/' && getenv("HOME") != NULL) {
        base = getenv("HOME");
        file += 2;
    } else if (file[0] != '/') {
        if (getcwd(cwd, sizeof(cwd)) == NULL)
            return NULL;
        base = cwd;
    }
    size_t n = strlen(base) + strlen(file) + 3;
    char *raw = malloc(n), *out = malloc(n);
    if (raw == NULL || out == NULL) {
        free(raw);
        free(out);
        return NULL;
    }
    snprintf(raw, n, "%s/%s", base, file);
    size_t len = 0;
    for (char *seg = raw; *seg != '\0';) {
        char *end = strchr(seg, '/');
        size_t sl = end != NULL ? (size_t)(end - seg) : strlen(seg);
        if (sl == 2 && seg[0] == '.' && seg[1] == '.') {
            while (len > 0 && out[len - 1] != '/')
                len--;
            if (len > 0)
                len--; /* the slash before the dropped component */
        } else if (sl > 0 && !(sl == 1 && seg[0] == '.')) {
            out[len++] = '/';
            memcpy(out + len, seg, sl);
            len += sl;
        }
        seg += sl + (end != NULL ? 1 : 0);
    }
    if (len == 0)
        out[len++] = '/';
    out[len] = '\0';
    free(raw);
    return out;
}

/* --------------------------------------------------------------------------------------
 * The file: checks, load, write (off the loop)
 * ------------------------------------------------------------------------------------ */

/* Is the file writable for us? The owner's write bit is checked too, because root passes
 * access(2) on a file its owner made read-only, and the atomic rename would replace it. */
static int file_writable(const char *path, const struct stat *sb) {
    return (sb->st_mode & S_IWUSR) != 0 && access(path, W_OK) == 0;
}

/* Checks that the file can be created or replaced: its directory (or the nearest existing
 * ancestor, since write_private_file creates the missing ones) is writable, and an existing
 * file is a writable regular file. Returns 0 or OL_EIO with *why. */
static int file_check_writable(const filebatch *fb, char **why) {
    const ol_host *h = fb->host;
    struct stat sb;
    char err[128];
    if (lstat(fb->path, &sb) == 0) {
        if (!S_ISREG(sb.st_mode)) {
            *why = h->format("%s is not a regular file: set %s.file to a regular file", fb->path,
                             fb->fmt->store);
            return OL_EINVAL;
        }
        if (!file_writable(fb->path, &sb)) {
            *why = h->format("%s is read-only: make it writable (chmod u+w) or set %s.file to "
                             "another file",
                             fb->path, fb->fmt->store);
            return OL_EIO;
        }
    } else if (errno != ENOENT) {
        errno_text(errno, err, sizeof(err));
        *why = h->format("cannot access %s: %s", fb->path, err);
        return OL_EIO;
    }
    char *dir = strdup(fb->path);
    if (dir == NULL)
        return OL_ENOMEM;
    int rc = 0;
    for (;;) {
        char *slash = strrchr(dir, '/');
        if (slash == dir)
            slash[1] = '\0';
        else
            *slash = '\0';
        if (stat(dir, &sb) == 0) {
            if (!S_ISDIR(sb.st_mode) || access(dir, W_OK | X_OK) != 0) {
                *why = h->format("cannot write %s: directory %s is not writable", fb->path, dir);
                rc = OL_EIO;
            }
            break;
        }
        if (errno != ENOENT || strcmp(dir, "/") == 0) {
            errno_text(errno, err, sizeof(err));
            *why = h->format("cannot write %s: %s: %s", fb->path, dir, err);
            rc = OL_EIO;
            break;
        }
    }
    free(dir);
    return rc;
}

/* Reads and parses the file (an absent one is a new, empty document). With for_write the
 * file must also be replaceable. Returns 0 and *doc, or a code and *why. */
static int file_load(const filebatch *fb, int for_write, void **doc, char **why) {
    const ol_host *h = fb->host;
    char *text = NULL;
    size_t len = 0;
    *doc = NULL;
    if (for_write) {
        int rc = file_check_writable(fb, why);
        if (rc != 0)
            return rc;
    }
    int rc = h->read_private_file(fb->path, FB_MAX_FILE, &text, &len);
    if (rc == OL_ENOENT) {
        *doc = fb->fmt->doc_new(fb);
        return *doc != NULL ? 0 : OL_ENOMEM;
    }
    if (rc != 0) {
        *why = h->format("cannot read %s: %s", fb->path, code_text(rc));
        return rc;
    }
    return fb->fmt->doc_parse(fb, text, len, doc, why);
}

static int file_write(const filebatch *fb, const void *doc, char **why) {
    const ol_host *h = fb->host;
    storebuf b = STOREBUF_INIT(h);
    int rc = fb->fmt->doc_write(fb, doc, &b);
    if (rc == 0 && b.failed)
        rc = OL_ENOMEM;
    if (rc == 0)
        rc = h->write_private_file(fb->path, b.data, b.len);
    if (rc != 0)
        *why = h->format("cannot write %s: %s", fb->path, code_text(rc));
    storebuf_wipe(&b);
    return rc;
}

/* --------------------------------------------------------------------------------------
 * prepare: the file parses and can be written, before any request
 * ------------------------------------------------------------------------------------ */

typedef struct fb_prepare_req {
    filebatch *fb;
    int result;
    char *reason;
    int dir_warn;      /* dir_why is a warning to log on the loop */
    char dir_why[512]; /* secretdir_check's text */
} fb_prepare_req;

static void prepare_work(void *arg) {
    fb_prepare_req *p = arg;
    int d = secretdir_check(p->fb->path, p->dir_why, sizeof(p->dir_why));
    if (d < 0) {
        p->result = OL_EINVAL;
        p->reason = p->fb->host->format("%s", p->dir_why);
        return;
    }
    p->dir_warn = d > 0;
    void *doc = NULL;
    p->result = file_load(p->fb, 1, &doc, &p->reason);
    p->fb->fmt->doc_free(p->fb, doc);
}

static void prepare_after(void *arg, int status) {
    fb_prepare_req *p = arg;
    const ol_host *h = p->fb->host;
    if (status != 0 && p->result == 0) {
        p->result = status;
        p->reason = h->format("%s was not checked: %s", p->fb->path, code_text(status));
    }
    if (p->result != 0 && p->reason == NULL)
        p->reason = h->format("cannot use %s: %s", p->fb->path, code_text(p->result));
    if (p->dir_warn)
        h->log(p->fb->stage, NULL, OL_LOG_WARN, "%s", p->dir_why);
    h->prepare_done(p->fb->stage, p->result, p->reason);
    h->free(p->reason);
    free(p);
}

int filebatch_prepare(ol_stage *stage, void *state) {
    filebatch *fb = state;
    fb_prepare_req *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return OL_ENOMEM;
    p->fb = fb;
    int rc = fb->host->work_queue(stage, prepare_work, prepare_after, p);
    if (rc != 0)
        free(p);
    return rc;
}

/* --------------------------------------------------------------------------------------
 * Jobs: one batch of operations against the file, under its lock
 * ------------------------------------------------------------------------------------ */

static void job_work(void *arg) {
    fb_job *job = arg;
    const filebatch *fb = job->fb;
    const fb_format *fmt = fb->fmt;
    const ol_host *h = fb->host;
    int for_write = 0, changed = 0;
    for (const fb_op *op = job->ops; op != NULL; op = op->next)
        if (!op->done && op->kind != FB_GET)
            for_write = 1;
    void *doc = NULL;
    char *why = NULL;
    int rc = file_load(fb, for_write, &doc, &why);
    for (fb_op *op = job->ops; rc == 0 && op != NULL; op = op->next) {
        if (op->done)
            continue;
        if (op->kind == FB_GET) {
            int r = fmt->doc_get(fb, doc, op);
            op_finish(op, r,
                      r != 0 && r != OL_ENOENT
                          ? h->format("cannot read %s: %s", fb->path, code_text(r))
                          : NULL);
        } else if (op->kind == FB_DEL) {
            changed |= fmt->doc_del(fb, doc, op->name);
        } else {
            int r = fmt->doc_put(fb, doc, op);
            if (r != 0)
                op_finish(op, r,
                          h->format("cannot add %s to %s: %s", op->name, fb->path, code_text(r)));
            else
                changed = 1;
        }
    }
    if (rc == 0 && changed)
        rc = file_write(fb, doc, &why);
    for (fb_op *op = job->ops; op != NULL; op = op->next)
        if (!op->done)
            op_finish(op, rc, rc != 0 ? h->format("%s", why) : NULL);
    job->result = rc;
    job->reason = why;
    fmt->doc_free(fb, doc);
}

static void kick(filebatch *fb);

/* Completes ops (each with its own outcome, or result and reason when it has none) and,
 * for a flush, the flush. Takes ownership of ops and reason. */
static void ops_complete(filebatch *fb, fb_op *ops, int flush, int result, char *reason) {
    const ol_host *h = fb->host;
    while (ops != NULL) {
        fb_op *op = ops;
        ops = op->next;
        if (!op->done)
            op_finish(op, result, h->format("%s", reason != NULL ? reason : "failed"));
        if (op->kind == FB_GET && op->result == 0) {
            const ol_secret found = {.struct_size = sizeof(ol_secret),
                                     .access_key_id = op->key_id,
                                     .secret_access_key = op->secret,
                                     .region = op->region,
                                     .bucket = op->bucket,
                                     .user = op->user,
                                     .created = op->created};
            h->store_done(fb->stage, op->item, 0, &found, NULL);
        } else {
            h->store_done(fb->stage, op->item, op->result, NULL, op->reason);
        }
        op_free(h, op);
    }
    if (flush)
        h->flush_done(fb->stage, result, result != 0 ? reason : NULL);
    h->free(reason);
    kick(fb);
}

/* Releases the file, frees the job and completes its operations. status: why the work did
 * not run (0 when it did). */
static void job_finish(fb_job *job, int status) {
    filebatch *fb = job->fb;
    const ol_host *h = fb->host;
    fb_op *ops = job->ops;
    int flush = job->flush, result = job->result;
    char *reason = job->reason;
    if (status != 0 && result == 0) {
        result = status;
        reason = h->format("%s was not written: %s", fb->path, code_text(status));
    }
    if (job->lock != NULL)
        h->lock_release(job->lock);
    if (!flush)
        fb->busy = 0;
    free(job);
    ops_complete(fb, ops, flush, result, reason);
}

static void job_after(void *arg, int status) {
    job_finish(arg, status);
}

static void job_locked(void *arg, int status, ol_lock *lock) {
    fb_job *job = arg;
    if (status != 0) {
        job_finish(job, status);
        return;
    }
    job->lock = lock;
    int rc = job->fb->host->work_queue(job->fb->stage, job_work, job_after, job);
    if (rc != 0)
        job_finish(job, rc);
}

static void job_start(filebatch *fb, fb_op *ops, int flush) {
    fb_job *job = calloc(1, sizeof(*job));
    if (job == NULL) {
        if (!flush)
            fb->busy = 0;
        ops_complete(fb, ops, flush, OL_ENOMEM, fb->host->format("out of memory"));
        return;
    }
    job->fb = fb;
    job->ops = ops;
    job->flush = flush;
    int rc = fb->host->lock_acquire(fb->stage, fb->path, job_locked, job);
    if (rc != 0)
        job_finish(job, rc);
}

/* Starts a job for the queued operations unless one is running: the ones that arrive
 * meanwhile share the next read of the file. */
static void kick(filebatch *fb) {
    if (fb->busy || fb->queued.head == NULL)
        return;
    fb->busy = 1;
    job_start(fb, list_take(&fb->queued), 0);
}

/* --------------------------------------------------------------------------------------
 * Store operations
 * ------------------------------------------------------------------------------------ */

/* The entry's notes: what the key is for, where, and since when. Host-allocated. */
static char *notes_new(const ol_host *h, const ol_secret *secret, const char *name) {
    return h->format("AWS access key written by opsline\nbucket: %s\nIAM user: %s\nregion: %s\n"
                     "created: %s",
                     secret->bucket != NULL ? secret->bucket : name,
                     secret->user != NULL ? secret->user : "-",
                     secret->region != NULL ? secret->region : "-",
                     secret->created != NULL ? secret->created : "-");
}

static fb_op *op_new(fb_kind kind, ol_item *item) {
    fb_op *op = calloc(1, sizeof(*op));
    if (op != NULL) {
        op->kind = kind;
        op->item = item;
    }
    return op;
}

/* Expands tmpl for the item into a malloc'd *out. On failure finishes op with a reason
 * naming the option. */
static int expand_into(const filebatch *fb, fb_op *op, const char *option, const char *tmpl,
                       char **out) {
    const ol_host *h = fb->host;
    char *s = NULL, *why = NULL;
    int rc = h->expand(op->item, tmpl, &s, &why);
    if (rc == 0 && (s == NULL || s[0] == '\0'))
        rc = OL_EINVAL;
    if (rc == 0 && (*out = strdup(s)) == NULL)
        rc = OL_ENOMEM;
    if (rc != 0 && why != NULL)
        op_finish(op, rc, h->format("option %s.%s: %s", fb->fmt->store, option, why));
    else if (rc != 0)
        op_finish(op, rc,
                  h->format("option %s.%s '%s': %s", fb->fmt->store, option, tmpl,
                            rc == OL_ENOMEM ? "out of memory" : "expands to an empty text"));
    h->free(s);
    h->free(why);
    return rc;
}

/* Queues op for the next job (gets, deletes, and puts that failed before reaching the
 * file). */
static int queue_now(filebatch *fb, fb_op *op) {
    list_push(&fb->queued, op);
    kick(fb);
    return 0;
}

static int fb_put(ol_stage *stage, ol_item *item, void *state, const ol_secret *secret) {
    filebatch *fb = state;
    const ol_host *h = fb->host;
    (void)stage;
    fb_op *op = op_new(FB_PUT, item);
    if (op == NULL)
        return OL_ENOMEM;
    if (expand_into(fb, op, fb->fmt->name_option, fb->name_tmpl, &op->name) != 0 ||
        expand_into(fb, op, fb->fmt->uri_option, fb->uri_tmpl, &op->uri) != 0)
        return queue_now(fb, op);
    if (fb->group_tmpl != NULL &&
        expand_into(fb, op, fb->group_option, fb->group_tmpl, &op->group) != 0)
        return queue_now(fb, op);
    if (secret == NULL || secret->access_key_id == NULL || secret->secret_access_key == NULL) {
        op_finish(op, OL_EINVAL, h->format("no access key to store for %s", op->name));
        return queue_now(fb, op);
    }
    op->key_id = strdup(secret->access_key_id);
    op->secret = strdup(secret->secret_access_key);
    op->region = dup_or_null(secret->region);
    op->bucket = dup_or_null(secret->bucket);
    op->user = dup_or_null(secret->user);
    op->created = dup_or_null(secret->created);
    op->notes = notes_new(h, secret, op->name);
    if (op->key_id == NULL || op->secret == NULL || op->notes == NULL) {
        op_finish(op, OL_ENOMEM, h->format("out of memory"));
        return queue_now(fb, op);
    }
    list_push(&fb->held, op);
    return 0;
}

static int read_or_del(filebatch *fb, ol_item *item, fb_kind kind) {
    fb_op *op = op_new(kind, item);
    if (op == NULL)
        return OL_ENOMEM;
    expand_into(fb, op, fb->fmt->name_option, fb->name_tmpl, &op->name);
    return queue_now(fb, op);
}

static int fb_get(ol_stage *stage, ol_item *item, void *state) {
    (void)stage;
    return read_or_del(state, item, FB_GET);
}

static int fb_del(ol_stage *stage, ol_item *item, void *state) {
    (void)stage;
    return read_or_del(state, item, FB_DEL);
}

const ol_store_ops filebatch_store = {
    .struct_size = sizeof(ol_store_ops),
    .put = fb_put,
    .get = fb_get,
    .del = fb_del,
};

static void flush_empty(void *arg, int status) {
    filebatch *fb = arg;
    fb->host->flush_done(fb->stage, status == OL_ECANCELED ? 0 : status, NULL);
}

int filebatch_flush(ol_stage *stage, void *state) {
    filebatch *fb = state;
    fb_op *ops = list_take(&fb->held);
    if (ops == NULL)
        return fb->host->timer_start(stage, 0, flush_empty, fb, NULL);
    /* Queued gets and deletes ride along: the batch is read once. */
    fb_op *last = ops;
    while (last->next != NULL)
        last = last->next;
    last->next = list_take(&fb->queued);
    job_start(fb, ops, 1);
    return 0;
}

/* --------------------------------------------------------------------------------------
 * Life cycle
 * ------------------------------------------------------------------------------------ */

static int check_template(const filebatch *fb, const char *option, const char *tmpl) {
    const ol_host *h = fb->host;
    char *out = NULL, *why = NULL;
    if (tmpl == NULL)
        return 0;
    int rc = h->expand(NULL, tmpl, &out, &why);
    if (rc != 0)
        h->log(fb->stage, NULL, OL_LOG_ERROR, "option %s.%s: %s", fb->fmt->store, option,
               why != NULL ? why : "invalid template");
    h->free(out);
    h->free(why);
    return rc != 0 ? OL_ECONFIG : 0;
}

static int config_check(filebatch *fb) {
    const fb_format *fmt = fb->fmt;
    if (fb->file == NULL || fb->file[0] == '\0') {
        fb->host->log(fb->stage, NULL, OL_LOG_ERROR,
                      "option %s.file is required: the %s to write, e.g. --set %s.file=%s",
                      fmt->store, fmt->file_kind, fmt->store, fmt->file_example);
        return OL_ECONFIG;
    }
    if (fmt->check != NULL && fmt->check(fb) != 0)
        return OL_ECONFIG;
    if (check_template(fb, fmt->name_option, fb->name_tmpl) != 0 ||
        check_template(fb, fmt->uri_option, fb->uri_tmpl) != 0 ||
        check_template(fb, fb->group_option, fb->group_tmpl) != 0)
        return OL_ECONFIG;
    return 0;
}

/* Binds the options into state (which starts with fb), checks them and resolves the file.
 * Returns 0, or a code after logging why. */
static int init(filebatch *fb, ol_stage *stage, const ol_host *host, const fb_format *fmt) {
    fb->host = host;
    fb->stage = stage;
    fb->fmt = fmt;
    list_init(&fb->held);
    list_init(&fb->queued);
    int rc = host->opt_bind(stage, fb);
    if (rc != 0) {
        host->log(stage, NULL, OL_LOG_ERROR, "cannot read options: %s", host->strerror(rc));
        return rc;
    }
    if (fb->name_tmpl == NULL)
        fb->name_tmpl = "{bucket}";
    if (fb->uri_tmpl == NULL)
        fb->uri_tmpl = "s3://{bucket}";
    rc = config_check(fb);
    if (rc != 0)
        return rc;
    fb->path = path_absolute(fb->file);
    if (fb->path == NULL) {
        host->log(stage, NULL, OL_LOG_ERROR, "cannot resolve %s.file '%s'", fmt->store, fb->file);
        return OL_ECONFIG;
    }
    return 0;
}

int filebatch_new(size_t size, ol_stage *stage, const ol_host *host, const fb_format *fmt,
                  void **state) {
    filebatch *fb = calloc(1, size);
    if (fb == NULL)
        return OL_ENOMEM;
    int rc = init(fb, stage, host, fmt);
    if (rc != 0) {
        filebatch_free(fb);
        return rc;
    }
    *state = fb;
    return 0;
}

void filebatch_free(void *state) {
    filebatch *fb = state;
    if (fb == NULL)
        return;
    /* The host completes every operation before fini; anything left was never started. */
    fb_op *lists[2] = {list_take(&fb->held), list_take(&fb->queued)};
    for (size_t i = 0; i < 2; i++)
        while (lists[i] != NULL) {
            fb_op *op = lists[i];
            lists[i] = op->next;
            op_free(fb->host, op);
        }
    free(fb->path);
    free(fb);
}
