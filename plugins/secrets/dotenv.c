/* dotenv: the secret store that keeps an item's access key in a .env file. It owns the merge
 * of four variables (key id, secret, region, bucket) into an existing file: every other
 * line and comment is kept byte for byte, existing assignments (also `export VAR=` forms)
 * are replaced in place, missing ones appended; the file is written 0600 and atomically.
 * put, get (read back) and del run off the loop (host->work_queue) under a host lock on
 * the file's absolute path, so items sharing a file never interleave their
 * read-merge-write; other processes are kept out by a flock on the file's directory, except
 * while a file that does not exist yet is created (host->create_private_file: only where
 * none is, so the fsyncs of a batch's new files do not wait for one another). The secret is never
 * logged and every buffer that held it is wiped.
 *
 * Values are written bare when they only hold characters that every dotenv reader (shell
 * `source`, docker --env-file, python-dotenv, node dotenv) takes literally, which covers
 * AWS key ids, secrets ([A-Za-z0-9/+]), regions and bucket names; anything else is put in
 * double quotes with \, ", $ and ` escaped. */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "opsline/opsline.h"

#include "lib/secretdir.h"
#include "lib/storebuf.h"

#define DOTENV_MAX_FILE (1024 * 1024) /* a .env larger than this is not one we should edit */
#define DOTENV_N_VARS 4

typedef struct dotenv_state {
    const ol_host *host;
    const char *path_template;
    const char *var[DOTENV_N_VARS]; /* key id, secret, region, bucket */
    /* validate: every item's target (absolute path) and the item writing it, so two items
     * never share a file (the second secret would be lost). */
    char **targets, **target_items;
    size_t n_targets, cap_targets;
} dotenv_state;

enum { VAR_KEY_ID, VAR_SECRET, VAR_REGION, VAR_BUCKET };

static const ol_option_def dotenv_options[] = {
    {"path", OL_OPT_STRING, "{bucket}.env",
     "file to write, relative to the working directory; placeholders {product}, "
     "{environment}, {bucket}, {user}, {region}",
     OL_BIND(dotenv_state, path_template)},
    {"var_access_key_id", OL_OPT_STRING, "AWS_ACCESS_KEY_ID", "variable for the key id",
     OL_BIND(dotenv_state, var[VAR_KEY_ID])},
    {"var_secret_access_key", OL_OPT_STRING, "AWS_SECRET_ACCESS_KEY",
     "variable for the secret access key", OL_BIND(dotenv_state, var[VAR_SECRET])},
    {"var_region", OL_OPT_STRING, "AWS_REGION", "variable for the region",
     OL_BIND(dotenv_state, var[VAR_REGION])},
    {"var_bucket", OL_OPT_STRING, "S3_BUCKET", "variable for the bucket name",
     OL_BIND(dotenv_state, var[VAR_BUCKET])},
};

static const char *const var_options[DOTENV_N_VARS] = {"var_access_key_id", "var_secret_access_key",
                                                       "var_region", "var_bucket"};

/* --------------------------------------------------------------------------------------
 * Pure helpers (unit-tested)
 * ------------------------------------------------------------------------------------ */

static int valid_var_name(const char *name) {
    if (name == NULL || *name == '\0' || (*name >= '0' && *name <= '9'))
        return 0;
    for (const char *p = name; *p != '\0'; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return 0;
    }
    return 1;
}

static int is_blank(char c) {
    return c == ' ' || c == '\t';
}

/* Recognises `[blanks][export blanks]NAME[blanks]=` on one line (without its line end).
 * Returns 1 and the name's span and the offset just after '=', or 0 (comment, blank line,
 * anything else). */
static int parse_assignment(const char *line, size_t len, size_t *name_off, size_t *name_len,
                            size_t *value_off) {
    size_t i = 0;
    while (i < len && is_blank(line[i]))
        i++;
    if (i + 7 < len && memcmp(line + i, "export", 6) == 0 && is_blank(line[i + 6])) {
        i += 6;
        while (i < len && is_blank(line[i]))
            i++;
    }
    size_t start = i;
    while (i < len &&
           (line[i] == '_' || (line[i] >= 'a' && line[i] <= 'z') ||
            (line[i] >= 'A' && line[i] <= 'Z') || (i > start && line[i] >= '0' && line[i] <= '9')))
        i++;
    if (i == start)
        return 0;
    size_t end = i;
    while (i < len && is_blank(line[i]))
        i++;
    if (i == len || line[i] != '=')
        return 0;
    *name_off = start;
    *name_len = end - start;
    *value_off = i + 1;
    return 1;
}

/* Characters every dotenv reader takes literally outside quotes. */
static int bare_ok(const char *v) {
    if (*v == '\0')
        return 0;
    for (const char *p = v; *p != '\0'; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("_-./+:@,%", c) != NULL))
            return 0;
    }
    return 1;
}

static void buf_value(storebuf *b, const char *v) {
    if (bare_ok(v)) {
        storebuf_str(b, v);
        return;
    }
    storebuf_add(b, "\"", 1);
    for (const char *p = v; *p != '\0'; p++) {
        if (strchr("\\\"$`", *p) != NULL)
            storebuf_add(b, "\\", 1);
        storebuf_add(b, p, 1);
    }
    storebuf_add(b, "\"", 1);
}

/* One entry of a .env text: text[start, next). For an assignment, the name's span and the
 * value's, absolute; a quoted value may run over several lines (as shells read it), and
 * text[value_end, next) is the rest of its last line: an inline comment and the line end. */
typedef struct env_entry {
    size_t start, next;
    int assignment;
    size_t name_off, name_len;
    size_t value_off, value_end;
    int unterminated; /* a quote that never closes */
    int runs_on;      /* text right after the closing quote: readers disagree on the value */
    size_t line;      /* 1-based line number of start */
} env_entry;

/* Reads the entry at pos (pos < len). */
static void env_entry_at(const char *text, size_t len, size_t pos, size_t line, env_entry *e) {
    const char *nl = memchr(text + pos, '\n', len - pos);
    size_t end = nl != NULL ? (size_t)(nl - text) : len;
    size_t text_end = end > pos && text[end - 1] == '\r' ? end - 1 : end;
    size_t noff, nlen, voff;
    *e = (env_entry){.start = pos, .next = nl != NULL ? end + 1 : len, .line = line};
    if (!parse_assignment(text + pos, text_end - pos, &noff, &nlen, &voff))
        return;
    e->assignment = 1;
    e->name_off = pos + noff;
    e->name_len = nlen;
    e->value_off = pos + voff;
    size_t i = e->value_off;
    while (i < text_end && is_blank(text[i]))
        i++;
    if (i < text_end && (text[i] == '"' || text[i] == '\'')) {
        char q = text[i++];
        while (i < len && text[i] != q)
            i += q == '"' && text[i] == '\\' && i + 1 < len ? 2 : 1;
        if (i >= len) {
            e->unterminated = 1;
            e->value_end = e->next = len;
            return;
        }
        e->value_end = i + 1;
        const char *last_nl = memchr(text + i, '\n', len - i);
        e->next = last_nl != NULL ? (size_t)(last_nl - text) + 1 : len;
        /* '#' ends a value here as it ends a bare one (below): a merge writes either. A CR
         * ends it only as part of a line end. */
        size_t a = i + 1;
        if (a < len && text[a] == '\r')
            a++;
        e->runs_on =
            a < len && text[a] != '\n' && (a > i + 1 || (!is_blank(text[a]) && text[a] != '#'));
        return;
    }
    while (i < text_end && !is_blank(text[i]) && text[i] != '#')
        i++;
    e->value_end = i;
}

/* Calls visit for every entry of text; stops and returns its nonzero answer. */
static int env_each(const char *text, size_t len,
                    int (*visit)(const char *, const env_entry *, void *), void *arg) {
    size_t line = 1;
    for (size_t pos = 0; pos < len;) {
        env_entry e;
        env_entry_at(text, len, pos, line, &e);
        int rc = visit(text, &e, arg);
        if (rc != 0)
            return rc;
        for (size_t i = pos; i < e.next; i++)
            line += text[i] == '\n';
        pos = e.next;
    }
    return 0;
}

static int entry_is(const char *text, const env_entry *e, const char *name) {
    return e->assignment && strlen(name) == e->name_len &&
           memcmp(text + e->name_off, name, e->name_len) == 0;
}

typedef struct merge_ctx {
    storebuf *b;
    const ol_kv *vars;
    size_t n_vars;
    int found[DOTENV_N_VARS];
    size_t open_line; /* another variable's quote that never closes: it runs to the end */
} merge_ctx;

static int merge_entry(const char *text, const env_entry *e, void *arg) {
    merge_ctx *m = arg;
    size_t v = 0;
    while (v < m->n_vars && !entry_is(text, e, m->vars[v].name))
        v++;
    if (v == m->n_vars) {
        if (e->unterminated)
            m->open_line = e->line;
        storebuf_add(m->b, text + e->start, e->next - e->start);
        return 0;
    }
    if (e->unterminated || e->runs_on)
        return (int)e->line;
    /* Keep indentation, `export`, the spelling up to '=', an inline comment and the line
     * end; replace the whole value, however many lines it took. */
    storebuf_add(m->b, text + e->start, e->value_off - e->start);
    buf_value(m->b, m->vars[v].value);
    storebuf_add(m->b, text + e->value_end, e->next - e->value_end);
    m->found[v] = 1;
    return 0;
}

/* Merges vars (name/value pairs, values may be secret) into the text of an existing file.
 * Returns a NUL-terminated text (host-allocated: wipe and free it) and its length in
 * *out_len, or NULL when out of memory or when an assignment of one of the vars has a quote
 * that never closes or text right after its closing quote (`V='a'b`: the new value would
 * be glued to that text), or another one has a quote that never closes and a var must be
 * appended (a reader would take the
 * appended lines as part of that value) (*bad_line, if given, says where; such a file is not
 * sourced the same by any two readers). Line ends are kept; new lines use the file's style
 * (CRLF when its first line ends so). */
static char *dotenv_merge(const ol_host *h, const char *old, size_t old_len, const ol_kv *vars,
                          size_t n_vars, size_t *out_len, size_t *bad_line) {
    storebuf b = STOREBUF_INIT(h);
    merge_ctx m = {.b = &b, .vars = vars, .n_vars = n_vars};
    if (n_vars > DOTENV_N_VARS)
        return NULL;
    const char *first_nl = memchr(old, '\n', old_len);
    const char *eol = first_nl != NULL && first_nl > old && first_nl[-1] == '\r' ? "\r\n" : "\n";
    int bad = env_each(old, old_len, merge_entry, &m);
    for (size_t v = 0; v < n_vars && bad == 0 && m.open_line != 0; v++)
        if (!m.found[v])
            bad = (int)m.open_line;
    if (bad != 0) {
        if (bad_line != NULL)
            *bad_line = (size_t)bad;
        storebuf_wipe(&b);
        return NULL;
    }
    /* A last line ending in a lone CR is a CRLF line short of its LF: completing it with
     * another CRLF would leave a CR in its value for readers. */
    if (old_len > 0 && old[old_len - 1] == '\r')
        storebuf_str(&b, "\n");
    else if (old_len > 0 && old[old_len - 1] != '\n')
        storebuf_str(&b, eol);
    for (size_t v = 0; v < n_vars; v++) {
        if (m.found[v])
            continue;
        storebuf_str(&b, vars[v].name);
        storebuf_add(&b, "=", 1);
        buf_value(&b, vars[v].value);
        storebuf_str(&b, eol);
    }
    return storebuf_take(&b, out_len);
}

typedef struct lookup_ctx {
    const char *name;
    char *found;
} lookup_ctx;

static int lookup_entry(const char *text, const env_entry *e, void *arg) {
    lookup_ctx *l = arg;
    if (!entry_is(text, e, l->name) || e->unterminated)
        return 0;
    size_t s = e->value_off, end = e->value_end;
    while (s < end && is_blank(text[s]))
        s++;
    char q = s < end ? text[s] : 0;
    int quoted = (q == '"' || q == '\'') && end - s >= 2;
    char *v = quoted ? malloc(end - s) : strndup(text + s, end - s);
    if (v == NULL)
        return 0;
    if (quoted) {
        size_t k = 0;
        for (size_t i = s + 1; i < end - 1; i++) {
            if (q == '"' && text[i] == '\\' && i + 1 < end - 1)
                i++;
            v[k++] = text[i];
        }
        v[k] = '\0';
    }
    free(l->found);
    l->found = v;
    return 0;
}

/* The value of the last assignment of name, as a dotenv reader takes it (quotes removed,
 * backslash escapes of double quotes undone, a bare value ends at blanks or a comment),
 * malloc'd, or NULL. */
static char *dotenv_lookup(const char *text, size_t len, const char *name) {
    lookup_ctx l = {.name = name};
    env_each(text, len, lookup_entry, &l);
    return l.found;
}

typedef struct remove_ctx {
    storebuf *b;
    const char *const *names;
    size_t n;
} remove_ctx;

static int remove_entry(const char *text, const env_entry *e, void *arg) {
    remove_ctx *r = arg;
    for (size_t v = 0; v < r->n; v++)
        if (entry_is(text, e, r->names[v]))
            return 0;
    storebuf_add(r->b, text + e->start, e->next - e->start);
    return 0;
}

/* Removes every assignment of the vars (names), whole, from text: the entry of a store whose
 * item is destroyed. Returns a host-allocated text (wipe and free it) or NULL when out of
 * memory. */
static char *dotenv_remove(const ol_host *h, const char *old, size_t old_len,
                           const char *const *names, size_t n, size_t *out_len) {
    storebuf b = STOREBUF_INIT(h);
    remove_ctx r = {.b = &b, .names = names, .n = n};
    env_each(old, old_len, remove_entry, &r);
    if (b.failed) {
        storebuf_wipe(&b);
        return NULL;
    }
    if (b.data == NULL && (b.data = calloc(1, 1)) == NULL)
        return NULL;
    *out_len = b.len;
    return b.data;
}

typedef struct check_ctx {
    const char *const *names;
    size_t n;
    size_t seen; /* how many of names are assigned before this entry */
    int is_seen[DOTENV_N_VARS];
} check_ctx;

static int check_entry(const char *text, const env_entry *e, void *arg) {
    check_ctx *c = arg;
    size_t v = 0;
    while (v < c->n && !entry_is(text, e, c->names[v]))
        v++;
    if ((e->unterminated && (v < c->n || c->seen < c->n)) || (e->runs_on && v < c->n))
        return (int)e->line;
    if (v < c->n && !c->is_seen[v]) {
        c->is_seen[v] = 1;
        c->seen++;
    }
    return 0;
}

/* 0, or the line of a quote dotenv_merge would refuse: one that never closes or is followed
 * by more text in an assignment of one of names (at most DOTENV_N_VARS), or one that never
 * closes in another assignment before which not all of names are assigned (the merge would
 * append them inside that value). */
static size_t dotenv_check(const char *text, size_t len, const char *const *names, size_t n) {
    check_ctx c = {.names = names, .n = n < DOTENV_N_VARS ? n : DOTENV_N_VARS};
    return (size_t)env_each(text, len, check_entry, &c);
}

/* --------------------------------------------------------------------------------------
 * Plugin entry points
 * ------------------------------------------------------------------------------------ */

/* One store operation: prepared on the loop, run off it, completed on it. */
typedef struct dotenv_op {
    const dotenv_state *st;
    ol_stage *stage;
    ol_item *item;
    int kind;      /* OP_PUT, OP_GET, OP_DEL */
    char *path;    /* host-allocated */
    char *abspath; /* the lock's name */
    ol_lock *lock;
    char *key_id, *secret, *region, *bucket; /* put: what to write (secret wiped) */
    /* results, set off the loop */
    int rc;
    int existed;
    char *found_id, *found_secret; /* get */
    char why[512];
} dotenv_op;

enum { OP_PUT = 1, OP_GET, OP_DEL };

static void op_free(dotenv_op *op) {
    const ol_host *h = op->st->host;
    free_wiped_str(h, op->secret);
    free_wiped_str(h, op->found_secret);
    free(op->key_id);
    free(op->region);
    free(op->bucket);
    free(op->found_id);
    free(op->abspath);
    h->free(op->path);
    free(op);
}

static int op_read(dotenv_op *op, char **text, size_t *len) {
    int rc = op->st->host->read_private_file(op->path, DOTENV_MAX_FILE, text, len);
    op->existed = rc == 0;
    if (rc == OL_ENOENT) {
        *text = NULL;
        *len = 0;
        return 0;
    }
    if (rc != 0)
        snprintf(op->why, sizeof(op->why), "cannot read %s: %s", op->path,
                 rc == OL_ERANGE   ? "larger than 1 MiB"
                 : rc == OL_EINVAL ? "not a regular file (a link, FIFO, directory or device "
                                     "appeared there): remove it and rerun"
                                   : op->st->host->strerror(rc));
    return rc;
}

/* Read, merge, write. Without the directory lock (locked 0) only a file that does not exist
 * yet is written: created where nothing is, so no lock needs to be held across its fsyncs;
 * op->rc OL_EEXIST (and no message) says the file is there, or appeared meanwhile, and the
 * caller takes the lock and calls again. Under the lock a file that is absent is created
 * the same way, since a writer without the lock may create it at any time. */
static void op_put(dotenv_op *op, int locked) {
    const ol_host *h = op->st->host;
    const dotenv_state *st = op->st;
    char *old = NULL, *text = NULL;
    size_t old_len = 0, len = 0;
    if ((op->rc = op_read(op, &old, &old_len)) != 0)
        return;
    if (!locked && op->existed) {
        op->rc = OL_EEXIST;
    } else {
        ol_kv vars[DOTENV_N_VARS] = {{st->var[VAR_KEY_ID], op->key_id},
                                     {st->var[VAR_SECRET], op->secret},
                                     {st->var[VAR_REGION], op->region},
                                     {st->var[VAR_BUCKET], op->bucket}};
        size_t bad_line = 0;
        text = dotenv_merge(h, old ? old : "", old_len, vars, DOTENV_N_VARS, &len, &bad_line);
        if (text == NULL) {
            op->rc = bad_line ? OL_EINVAL : OL_ENOMEM;
            if (bad_line)
                snprintf(op->why, sizeof(op->why),
                         "%s line %zu: a quoted value never closes or runs on after its closing "
                         "quote; fix the file and rerun",
                         op->path, bad_line);
            else
                snprintf(op->why, sizeof(op->why), "out of memory merging %s", op->path);
        } else {
            op->rc = op->existed ? h->write_private_file(op->path, text, len)
                                 : h->create_private_file(op->path, text, len);
            if (op->rc != 0 && op->rc != OL_EEXIST)
                snprintf(op->why, sizeof(op->why), "cannot write %s: %s", op->path,
                         h->strerror(op->rc));
        }
    }
    free_wiped(h, text, len);
    if (old != NULL) {
        h->wipe(old, old_len);
        h->free(old);
    }
}

static void op_get(dotenv_op *op) {
    const ol_host *h = op->st->host;
    char *text = NULL;
    size_t len = 0;
    if ((op->rc = op_read(op, &text, &len)) != 0)
        return;
    if (text != NULL) {
        op->found_id = dotenv_lookup(text, len, op->st->var[VAR_KEY_ID]);
        op->found_secret = dotenv_lookup(text, len, op->st->var[VAR_SECRET]);
        h->wipe(text, len);
        h->free(text);
    }
    if (op->found_id == NULL || op->found_secret == NULL || op->found_secret[0] == '\0')
        op->rc = OL_ENOENT;
}

/* Remove the file, durably: its directory is fsync'd after the unlink. Pool thread. */
static int remove_file(dotenv_op *op) {
    if (unlink(op->path) != 0 && errno != ENOENT) {
        int e = errno;
        snprintf(op->why, sizeof(op->why), "cannot remove %s: %s", op->path, strerror(e));
        return OL_EIO;
    }
    char *dir = secretdir_parent(op->path);
    int fd = dir != NULL ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    free(dir);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    return 0;
}

static void op_del(dotenv_op *op) {
    const ol_host *h = op->st->host;
    char *text = NULL, *out = NULL;
    size_t len = 0, out_len = 0;
    if ((op->rc = op_read(op, &text, &len)) != 0 || text == NULL)
        return;
    out = dotenv_remove(h, text, len, op->st->var, DOTENV_N_VARS, &out_len);
    if (out == NULL)
        op->rc = OL_ENOMEM;
    else if (out_len == 0 && len > 0) /* it held only the item's variables: it goes */
        op->rc = remove_file(op);
    else if (out_len != len && (op->rc = h->write_private_file(op->path, out, out_len)) != 0)
        snprintf(op->why, sizeof(op->why), "cannot write %s: %s", op->path, h->strerror(op->rc));
    free_wiped(h, out, out_len);
    h->wipe(text, len);
    h->free(text);
}

/* Another opsline run (another state directory, another machine's NFS client) may merge
 * into the same file: hold an exclusive flock on its directory for the whole
 * read-merge-write of a file that exists (a new one is created without it: op_put). A
 * directory that does not exist yet has no one to race with. Runs on a pool thread, where
 * blocking is allowed. */
static int lock_directory(const char *path) {
    char *dir = secretdir_parent(path);
    if (dir == NULL)
        return -1;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(dir);
    if (fd >= 0 && flock(fd, LOCK_EX) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static void op_work(void *arg) {
    dotenv_op *op = arg;
    if (op->kind == OP_GET) {
        op_get(op);
        return;
    }
    /* A new file (the usual case: one per item) is created without the directory lock, so
     * the writes of a batch do not wait for one another's fsyncs on a slow disk. */
    if (op->kind == OP_PUT) {
        op_put(op, 0);
        if (op->rc != OL_EEXIST)
            return;
    }
    int fd = lock_directory(op->path);
    if (op->kind == OP_PUT) {
        /* Under the lock only a writer without it can still create the file, once. */
        for (int tries = 0; tries < 3; tries++) {
            op_put(op, 1);
            if (op->rc != OL_EEXIST)
                break;
        }
        if (op->rc == OL_EEXIST)
            snprintf(op->why, sizeof(op->why),
                     "cannot write %s: it keeps being created and removed by another program; "
                     "rerun when it is done",
                     op->path);
    } else {
        op_del(op);
    }
    if (fd >= 0)
        close(fd); /* releases the flock */
}

static void op_after(void *arg, int status) {
    dotenv_op *op = arg;
    const ol_host *h = op->st->host;
    if (op->lock != NULL)
        h->lock_release(op->lock);
    if (status != 0) {
        op->rc = status;
        snprintf(op->why, sizeof(op->why), "%s: %s", op->path, h->strerror(status));
    }
    if (op->rc == 0 && op->kind == OP_GET) {
        ol_secret found = {.struct_size = sizeof(ol_secret),
                           .access_key_id = op->found_id,
                           .secret_access_key = op->found_secret};
        h->store_done(op->stage, op->item, 0, &found, NULL);
    } else if (op->rc == 0 && op->kind == OP_PUT) {
        h->log(op->stage, op->item, OL_LOG_DEBUG, "wrote %s", op->path);
        h->store_done(op->stage, op->item, 0, NULL, NULL);
    } else {
        h->store_done(op->stage, op->item, op->rc, NULL,
                      op->rc == OL_ENOENT ? NULL
                      : op->why[0]        ? op->why
                                          : h->strerror(op->rc));
    }
    op_free(op);
}

static void on_locked(void *arg, int status, ol_lock *lock) {
    dotenv_op *op = arg;
    op->lock = lock;
    int rc = status != 0 ? status : op->st->host->work_queue(op->stage, op_work, op_after, op);
    if (rc != 0)
        op_after(op, rc);
}

static char *absolute(const char *path) {
    if (path[0] == '/')
        return strdup(path);
    char cwd[4096];
    if (getcwd(cwd, sizeof(cwd)) == NULL)
        return NULL;
    size_t len = strlen(cwd) + strlen(path) + 2;
    char *out = malloc(len);
    if (out != NULL)
        snprintf(out, len, "%s/%s", cwd, path);
    return out;
}

static int op_start(const dotenv_state *st, ol_stage *stage, ol_item *item, int kind,
                    const ol_secret *secret) {
    const ol_host *h = st->host;
    dotenv_op *op = calloc(1, sizeof(*op));
    if (op == NULL)
        return OL_ENOMEM;
    op->st = st;
    op->stage = stage;
    op->item = item;
    op->kind = kind;
    char *why = NULL;
    int rc = h->expand(item, st->path_template, &op->path, &why);
    if (rc != 0) {
        h->log(stage, item, OL_LOG_ERROR, "option path %s", why ? why : "is invalid");
        h->free(why);
        free(op);
        return rc;
    }
    op->abspath = absolute(op->path);
    if (secret != NULL) {
        op->key_id = strdup(secret->access_key_id);
        op->secret = strdup(secret->secret_access_key);
        op->region = strdup(secret->region ? secret->region : "");
        op->bucket = strdup(secret->bucket ? secret->bucket : "");
    }
    if (op->abspath == NULL ||
        (secret != NULL && (!op->key_id || !op->secret || !op->region || !op->bucket))) {
        op_free(op);
        return OL_ENOMEM;
    }
    rc = h->lock_acquire(stage, op->abspath, on_locked, op);
    if (rc != 0)
        op_free(op);
    return rc;
}

/* Why path cannot be a .env target, or NULL: checked for every item before any request,
 * so no key is created whose secret then has nowhere to go. */
static const char *target_problem(const char *path) {
    struct stat st;
    size_t len = strlen(path);
    if (len == 0 || path[len - 1] == '/')
        return "names a directory, not a file";
    if (lstat(path, &st) == 0) {
        if (S_ISLNK(st.st_mode))
            return "is a symbolic link; opsline replaces .env files and never writes through a "
                   "link: point --env-file at the real file";
        if (S_ISDIR(st.st_mode))
            return "is a directory: point --env-file at a file";
        if (!S_ISREG(st.st_mode))
            return S_ISFIFO(st.st_mode)
                       ? "is a FIFO (named pipe), not a regular file: remove it or point "
                         "--env-file at a regular file"
                       : "is a socket or device, not a regular file: point --env-file at a "
                         "regular file";
        if (st.st_size > DOTENV_MAX_FILE)
            return "is larger than 1 MiB, not a .env file opsline should edit";
    }
    return NULL;
}

static int remember_target(dotenv_state *st, char *abs, const char *item) {
    if (st->n_targets == st->cap_targets) {
        size_t cap = st->cap_targets ? st->cap_targets * 2 : 64;
        char **t = realloc(st->targets, cap * sizeof(char *));
        if (t == NULL)
            return OL_ENOMEM;
        st->targets = t;
        char **n = realloc(st->target_items, cap * sizeof(char *));
        if (n == NULL)
            return OL_ENOMEM;
        st->target_items = n;
        st->cap_targets = cap;
    }
    st->targets[st->n_targets] = abs;
    st->target_items[st->n_targets++] = strdup(item);
    return 0;
}

static int dotenv_validate(ol_stage *stage, const ol_item *item, void *state) {
    dotenv_state *st = state;
    const ol_host *h = st->host;
    char *path = NULL, *why = NULL;
    if (h->expand(item, st->path_template, &path, &why) != 0) {
        h->log(stage, item, OL_LOG_ERROR, "option path %s", why ? why : "is invalid");
        h->free(why);
        return OL_EINVAL;
    }
    const char *problem = target_problem(path);
    char dirwhy[512];
    int dirrc = problem == NULL ? secretdir_check(path, dirwhy, sizeof(dirwhy)) : 0;
    if (dirrc > 0)
        h->log(stage, item, OL_LOG_WARN, "%s", dirwhy);
    else if (dirrc < 0)
        problem = dirwhy;
    char *text = NULL;
    size_t len = 0, bad_line = 0;
    if (problem == NULL && h->read_private_file(path, DOTENV_MAX_FILE, &text, &len) == 0) {
        bad_line = dotenv_check(text, len, st->var, DOTENV_N_VARS);
        h->wipe(text, len);
        h->free(text);
    }
    if (bad_line != 0) {
        h->log(stage, item, OL_LOG_ERROR,
               "%s line %zu: a quoted value never closes or runs on after its closing "
               "quote, so readers disagree on the variables opsline writes; fix the file "
               "(close the quote, or quote the whole value) and rerun",
               path, bad_line);
        h->free(path);
        return OL_EINVAL;
    }
    char *abs = problem == NULL ? absolute(path) : NULL;
    int rc = problem != NULL ? OL_EINVAL : abs == NULL ? OL_ENOMEM : 0;
    if (problem == dirwhy)
        h->log(stage, item, OL_LOG_ERROR, "%s", problem);
    else if (problem != NULL)
        h->log(stage, item, OL_LOG_ERROR, "%s %s", path, problem);
    for (size_t i = 0; rc == 0 && i < st->n_targets; i++)
        if (strcmp(st->targets[i], abs) == 0) {
            h->log(stage, item, OL_LOG_ERROR,
                   "items %s and %s would both write %s, and one secret would be lost; give "
                   "each item its own file, e.g. --env-file '{product}/.env.{environment}'",
                   st->target_items[i] ? st->target_items[i] : "?", h->item_name(item), path);
            rc = OL_EINVAL;
        }
    if (rc == 0)
        rc = remember_target(st, abs, h->item_name(item));
    if (rc != 0)
        free(abs);
    h->free(path);
    return rc;
}

static int dotenv_put(ol_stage *stage, ol_item *item, void *state, const ol_secret *secret) {
    return op_start(state, stage, item, OP_PUT, secret);
}

static int dotenv_get(ol_stage *stage, ol_item *item, void *state) {
    return op_start(state, stage, item, OP_GET, NULL);
}

static int dotenv_del(ol_stage *stage, ol_item *item, void *state) {
    return op_start(state, stage, item, OP_DEL, NULL);
}

/* Names a sourced .env must not set: the shell's and the loader's own, and the variables
 * through which an interpreter or the dynamic loader runs code of someone's choosing. */
static int var_clobbers(const char *name) {
    static const char *const taken[] = {"PATH",
                                        "HOME",
                                        "IFS",
                                        "SHELL",
                                        "USER",
                                        "LOGNAME",
                                        "PWD",
                                        "OLDPWD",
                                        "ENV",
                                        "BASH_ENV",
                                        "CDPATH",
                                        "PS1",
                                        "PS2",
                                        "PS3",
                                        "PS4",
                                        "TMPDIR",
                                        "LANG",
                                        "TERM",
                                        "PROMPT_COMMAND",
                                        "SHELLOPTS",
                                        "BASHOPTS",
                                        "GLOBIGNORE",
                                        "HISTFILE",
                                        "MAIL",
                                        "MAILPATH",
                                        "PYTHONPATH",
                                        "PYTHONHOME",
                                        "PYTHONSTARTUP",
                                        "NODE_OPTIONS",
                                        "NODE_PATH",
                                        "PERL5LIB",
                                        "PERL5OPT",
                                        "RUBYLIB",
                                        "RUBYOPT",
                                        "JAVA_TOOL_OPTIONS",
                                        "GCONV_PATH",
                                        "HOSTALIASES",
                                        "LOCALDOMAIN",
                                        "RES_OPTIONS",
                                        "NLSPATH",
                                        NULL};
    for (size_t i = 0; taken[i] != NULL; i++)
        if (strcmp(name, taken[i]) == 0)
            return 1;
    /* LD_PRELOAD, LD_LIBRARY_PATH, LD_AUDIT...; macOS's DYLD_*; locales; exported shell
     * functions. */
    static const char *const prefixes[] = {"LD_", "DYLD_", "LC_", "BASH_FUNC_", NULL};
    for (size_t i = 0; prefixes[i] != NULL; i++)
        if (strncmp(name, prefixes[i], strlen(prefixes[i])) == 0)
            return 1;
    return 0;
}

static int dotenv_init(ol_stage *stage, const ol_host *host, void **state) {
    dotenv_state *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return OL_ENOMEM;
    st->host = host;
    host->opt_bind(stage, st);
    for (size_t i = 0; i < DOTENV_N_VARS; i++) {
        if (!valid_var_name(st->var[i])) {
            host->log(stage, NULL, OL_LOG_ERROR,
                      "option %s '%s' is not a variable name: use letters, digits and '_', "
                      "not starting with a digit",
                      var_options[i], st->var[i] ? st->var[i] : "");
            goto fail;
        }
        if (var_clobbers(st->var[i])) {
            host->log(stage, NULL, OL_LOG_ERROR,
                      "option %s '%s' would replace a variable the shell or the system relies "
                      "on when the file is sourced; choose another name",
                      var_options[i], st->var[i]);
            goto fail;
        }
        for (size_t k = 0; k < i; k++)
            if (strcmp(st->var[k], st->var[i]) == 0) {
                host->log(stage, NULL, OL_LOG_ERROR, "options %s and %s both name %s",
                          var_options[k], var_options[i], st->var[i]);
                goto fail;
            }
    }
    /* Check the template's syntax now so a typo stops the run before any request. */
    char *p = NULL, *why = NULL;
    if (host->expand(NULL, st->path_template, &p, &why) != 0) {
        host->log(stage, NULL, OL_LOG_ERROR, "option path %s", why ? why : "is invalid");
        host->free(why);
        goto fail;
    }
    host->free(p);
    *state = st;
    return 0;
fail:
    free(st);
    return OL_ECONFIG;
}

static void dotenv_fini(void *state) {
    dotenv_state *st = state;
    for (size_t i = 0; i < st->n_targets; i++) {
        free(st->targets[i]);
        free(st->target_items[i]);
    }
    free(st->targets);
    free(st->target_items);
    free(st);
}

static const ol_store_ops dotenv_store = {
    .struct_size = sizeof(ol_store_ops),
    .put = dotenv_put,
    .get = dotenv_get,
    .del = dotenv_del,
    .flags = OL_STORE_VERIFY, /* a file read: check it on every run */
};

static const ol_cli_flag dotenv_cli_flags[] = {{"env-file", "path"}, {NULL, NULL}};

static const ol_plugin dotenv_plugin = {
    .abi_major = OL_ABI_MAJOR,
    .abi_minor = OL_ABI_MINOR,
    .struct_size = sizeof(ol_plugin),
    .name = "dotenv",
    .version = "2.0.0",
    .description = "secret store: a .env file per item (0600, atomic, other lines kept)",
    .flags = OL_STAGE_DEFAULT,
    OL_OPTIONS(dotenv_options),
    .init = dotenv_init,
    .validate = dotenv_validate,
    .fini = dotenv_fini,
    .store = &dotenv_store,
    .cli_flags = dotenv_cli_flags,
};

OL_EXPORT const ol_plugin *opsline_plugin(void) {
    return &dotenv_plugin;
}
