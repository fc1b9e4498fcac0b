/* 1password: the secret store that keeps access keys in a 1Password CSV import file, for
 * the desktop app (File > Import) or 1Password.com's import page. It owns the merge of login
 * rows into that file: a header row with the columns 1Password's importer documents (title,
 * website, username, password, notes) and one row per item, titled by 1password.title;
 * rows of other titles and other columns are kept (byte for byte while the header does not
 * change). Puts are held back until flush, so a batch costs one read-merge-write of the
 * file, done off the loop under the host lock on the file's absolute path; gets and deletes
 * that arrive together share one read. A file that is not valid CSV, has no header row or
 * is read-only is refused in prepare, before any request, and is never touched.
 *
 * Secrets are never logged; every field read from the file and every output buffer is wiped
 * before it is freed. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "opsline/opsline.h"

#define PW_MAX_FILE (64u * 1024 * 1024) /* larger is not an import file we should rewrite */

typedef struct pw_state pw_state;

typedef enum pw_kind { PW_PUT = 1, PW_GET, PW_DEL } pw_kind;

/* One store operation, from the call that starts it to store_done. */
typedef struct pw_op {
    struct pw_op *next;
    pw_kind kind;
    ol_item *item;
    char *name;  /* the row's title (1password.title expanded) */
    char *uri;   /* put: the website column */
    char *notes; /* put */
    /* put: the key to store; get: the key found. secret is wiped before it is freed. */
    char *key_id, *secret, *region, *bucket, *user, *created;
    int done; /* result and reason are final */
    int result;
    char *reason; /* host-allocated, or NULL */
} pw_op;

typedef struct pw_list {
    pw_op *head;
    pw_op **tail;
} pw_list;

struct pw_state {
    const ol_host *host;
    ol_stage *stage;
    /* Options (host->opt_bind). */
    const char *file;
    const char *name;
    const char *uri;
    char *path;     /* file, absolute and normalised: the lock's name */
    pw_list held;   /* puts waiting for flush */
    pw_list queued; /* gets, deletes and refused puts waiting for the file */
    int busy;       /* a job for the queued list is running */
};

/* One read-(merge-write) of the file for a batch of operations. */
typedef struct pw_job {
    pw_state *st;
    pw_op *ops;
    int flush; /* complete a flush at the end */
    ol_lock *lock;
    int result; /* file-level outcome, for flush_done */
    char *reason;
} pw_job;

static const ol_option_def pw_options[] = {
    {"file", OL_OPT_STRING, NULL,
     "the 1Password CSV import file to write (required); rows of other titles are kept",
     OL_BIND(pw_state, file)},
    {"title", OL_OPT_STRING, "{bucket}",
     "row title; placeholders {product}, {environment}, {bucket}, {user}, {region}",
     OL_BIND(pw_state, name)},
    {"website", OL_OPT_STRING, "s3://{bucket}", "the website column (template)",
     OL_BIND(pw_state, uri)},
};

/* --------------------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------------------ */

static char *dup_or_null(const char *s) {
    return s != NULL ? strdup(s) : NULL;
}

static void free_secret(const ol_host *h, char *s) {
    if (s == NULL)
        return;
    h->wipe(s, strlen(s));
    free(s);
}

static void list_init(pw_list *l) {
    l->head = NULL;
    l->tail = &l->head;
}

static void list_push(pw_list *l, pw_op *op) {
    op->next = NULL;
    *l->tail = op;
    l->tail = &op->next;
}

static pw_op *list_take(pw_list *l) {
    pw_op *head = l->head;
    list_init(l);
    return head;
}

static void op_free(const ol_host *h, pw_op *op) {
    free(op->name);
    free(op->uri);
    free(op->notes);
    free(op->key_id);
    free_secret(h, op->secret);
    free(op->region);
    free(op->bucket);
    free(op->user);
    free(op->created);
    h->free(op->reason);
    free(op);
}

/* Text for an OL_E* code, usable off the loop (host->strerror is not among the thread-safe
 * functions). */
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
 * CSV (RFC 4180): fields separated by commas, records by CRLF or LF; a field holding a
 * comma, a quote, CR or LF is quoted and its quotes doubled. The reader also takes bare
 * CR line ends and, like most readers, a quote inside an unquoted field literally.
 * ------------------------------------------------------------------------------------ */

typedef struct csv_row {
    char **f;
    size_t n;
    const char *raw; /* the record as read (without its line end), or NULL when new */
    size_t raw_len;
    int dirty; /* written from f, not raw */
} csv_row;

/* The file: rows[0] is the header. */
typedef struct csv_doc {
    csv_row *rows;
    size_t n, cap;
    char *text; /* the file as read: raw rows point into it */
    size_t text_len;
    int bom;            /* the file started with a UTF-8 byte order mark */
    const char *eol;    /* the file's line end: "\r\n" or "\n" */
    int header_changed; /* columns were added: every row is rewritten */
    size_t col[5];      /* title, website, username, password, notes */
} csv_doc;

enum { COL_TITLE, COL_WEBSITE, COL_USERNAME, COL_PASSWORD, COL_NOTES, N_COLS };

static const char *const col_names[N_COLS] = {"title", "website", "username", "password", "notes"};

static void row_clear(const ol_host *h, csv_row *r) {
    for (size_t i = 0; i < r->n; i++)
        free_secret(h, r->f[i]);
    free(r->f);
    r->f = NULL;
    r->n = 0;
}

static void doc_free(const ol_host *h, csv_doc *doc) {
    if (doc == NULL)
        return;
    for (size_t i = 0; i < doc->n; i++)
        row_clear(h, &doc->rows[i]);
    free(doc->rows);
    if (doc->text != NULL) {
        h->wipe(doc->text, doc->text_len);
        h->free(doc->text);
    }
    free(doc);
}

static csv_row *doc_add_row(csv_doc *doc) {
    if (doc->n == doc->cap) {
        size_t cap = doc->cap == 0 ? 64 : doc->cap * 2;
        csv_row *rows = realloc(doc->rows, cap * sizeof(*rows));
        if (rows == NULL)
            return NULL;
        doc->rows = rows;
        doc->cap = cap;
    }
    csv_row *r = &doc->rows[doc->n++];
    memset(r, 0, sizeof(*r));
    return r;
}

static int row_add_field(csv_row *r, const char *s, size_t n) {
    char **f = realloc(r->f, (r->n + 1) * sizeof(*f));
    if (f == NULL)
        return OL_ENOMEM;
    r->f = f;
    if ((f[r->n] = strndup(s, n)) == NULL)
        return OL_ENOMEM;
    r->n++;
    return 0;
}

/* Sets field i of the row (extending it with empty fields), copying value. */
static int row_set(const ol_host *h, csv_row *r, size_t i, const char *value) {
    while (r->n <= i)
        if (row_add_field(r, "", 0) != 0)
            return OL_ENOMEM;
    char *v = strdup(value != NULL ? value : "");
    if (v == NULL)
        return OL_ENOMEM;
    free_secret(h, r->f[i]);
    r->f[i] = v;
    r->dirty = 1;
    return 0;
}

/* Reads one field at *pos (quoted or bare) into the row. Returns 0, or OL_EINVAL with
 * *why a static text. *line counts the line ends inside quoted fields. */
static int csv_field(const char *s, size_t len, size_t *pos, size_t *line, csv_row *r,
                     const char **why) {
    size_t p = *pos;
    if (p < len && s[p] == '"') {
        /* Copy with doubled quotes undone, into a buffer as large as the rest. */
        char *buf = malloc(len - p + 1);
        size_t n = 0;
        if (buf == NULL)
            return OL_ENOMEM;
        for (p++;; p++) {
            if (p >= len) {
                free(buf);
                *why = "a quoted field is not closed";
                return OL_EINVAL;
            }
            if (s[p] == '"') {
                if (p + 1 < len && s[p + 1] == '"') {
                    buf[n++] = '"';
                    p++;
                    continue;
                }
                p++;
                break;
            }
            if (s[p] == '\n' || (s[p] == '\r' && (p + 1 >= len || s[p + 1] != '\n')))
                (*line)++;
            buf[n++] = s[p];
        }
        int rc = row_add_field(r, buf, n);
        memset(buf, 0, n);
        free(buf);
        if (rc != 0)
            return rc;
        if (p < len && s[p] != ',' && s[p] != '\r' && s[p] != '\n') {
            *why = "a character follows a closing quote (quotes inside a field are doubled)";
            return OL_EINVAL;
        }
    } else {
        size_t start = p;
        while (p < len && s[p] != ',' && s[p] != '\r' && s[p] != '\n')
            p++;
        int rc = row_add_field(r, s + start, p - start);
        if (rc != 0)
            return rc;
    }
    *pos = p;
    return 0;
}

static int name_is(const char *field, const char *name) {
    while (*field == ' ' || *field == '\t')
        field++;
    size_t n = strlen(field);
    while (n > 0 && (field[n - 1] == ' ' || field[n - 1] == '\t'))
        n--;
    return n == strlen(name) && strncasecmp(field, name, n) == 0;
}

/* Finds (or, when absent, appends to the header) the five columns. 1Password's own export
 * calls the website column "url". Returns 0, OL_EINVAL when there is no title column (a
 * file without a header row), or OL_ENOMEM. */
static int doc_columns(const ol_host *h, csv_doc *doc) {
    csv_row *hdr = &doc->rows[0];
    for (size_t c = 0; c < N_COLS; c++) {
        size_t i;
        for (i = 0; i < hdr->n; i++)
            if (name_is(hdr->f[i], col_names[c]) || (c == COL_WEBSITE && name_is(hdr->f[i], "url")))
                break;
        if (i == hdr->n) {
            if (c == COL_TITLE)
                return OL_EINVAL;
            if (row_set(h, hdr, hdr->n, col_names[c]) != 0)
                return OL_ENOMEM;
            doc->header_changed = 1;
        }
        doc->col[c] = i;
    }
    return 0;
}

static csv_doc *doc_new(const ol_host *h) {
    csv_doc *doc = calloc(1, sizeof(*doc));
    csv_row *hdr = doc != NULL ? doc_add_row(doc) : NULL;
    if (hdr == NULL) {
        doc_free(h, doc);
        return NULL;
    }
    doc->eol = "\r\n";
    for (size_t c = 0; c < N_COLS; c++) {
        if (row_set(h, hdr, c, col_names[c]) != 0) {
            doc_free(h, doc);
            return NULL;
        }
        doc->col[c] = c;
    }
    return doc;
}

/* Parses the file's text (taking ownership of it: a host-allocated buffer). Returns 0 and
 * *out, or a code and *why (host-allocated) naming the file, the line and the fix. An empty
 * file (or blank lines only) is a new document. */
static int doc_parse(const pw_state *st, char *text, size_t len, csv_doc **out, char **why) {
    const ol_host *h = st->host;
    const char *problem = NULL;
    size_t pos = 0, line = 1, bad_line = 0;
    int rc = 0;
    csv_doc *doc = calloc(1, sizeof(*doc));
    *out = NULL;
    if (doc == NULL) {
        h->wipe(text, len);
        h->free(text);
        return OL_ENOMEM;
    }
    doc->text = text;
    doc->text_len = len;
    doc->eol = "\r\n";
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) {
        doc->bom = 1;
        pos = 3;
    }
    while (rc == 0 && pos < len) {
        if (text[pos] == '\r' || text[pos] == '\n') { /* a blank line: no record */
            pos += text[pos] == '\r' && pos + 1 < len && text[pos + 1] == '\n' ? 2 : 1;
            line++;
            continue;
        }
        csv_row *r = doc_add_row(doc);
        if (r == NULL) {
            rc = OL_ENOMEM;
            break;
        }
        r->raw = text + pos;
        bad_line = line;
        for (;;) {
            rc = csv_field(text, len, &pos, &line, r, &problem);
            if (rc != 0 || pos >= len || text[pos] != ',')
                break;
            pos++;
        }
        r->raw_len = (size_t)(text + pos - r->raw);
        if (rc == 0 && pos < len) {
            int crlf = text[pos] == '\r' && pos + 1 < len && text[pos + 1] == '\n';
            if (doc->n == 1)
                doc->eol = crlf || text[pos] == '\r' ? "\r\n" : "\n";
            pos += crlf ? 2 : 1;
            line++;
        }
    }
    if (rc == 0 && doc->n == 0) {
        doc_free(h, doc);
        doc = doc_new(h);
        if (doc == NULL)
            return OL_ENOMEM;
    } else if (rc == 0) {
        rc = doc_columns(h, doc);
        if (rc == OL_EINVAL)
            *why = h->format("%s has no header row naming a title column: the "
                             "first line must be title,website,username,password,notes; fix "
                             "it or set 1password.file to another file; opsline left it "
                             "untouched",
                             st->path);
    } else if (rc == OL_EINVAL) {
        *why = h->format("%s is not valid CSV (record starting on line %zu: %s): "
                         "fix it or set 1password.file to another file; opsline left it "
                         "untouched",
                         st->path, bad_line, problem);
    }
    if (rc != 0) {
        doc_free(h, doc);
        return rc;
    }
    *out = doc;
    return 0;
}

static const char *row_get(const csv_row *r, size_t i) {
    return i < r->n ? r->f[i] : "";
}

/* Index of the first data row titled name, or (size_t)-1. */
static size_t doc_find(const csv_doc *doc, const char *name) {
    for (size_t i = 1; i < doc->n; i++)
        if (strcmp(row_get(&doc->rows[i], doc->col[COL_TITLE]), name) == 0)
            return i;
    return (size_t)-1;
}

static void doc_remove(const ol_host *h, csv_doc *doc, size_t i) {
    row_clear(h, &doc->rows[i]);
    memmove(&doc->rows[i], &doc->rows[i + 1], (doc->n - i - 1) * sizeof(doc->rows[0]));
    doc->n--;
}

/* Removes every row titled name after row first. */
static void doc_drop_after(const ol_host *h, csv_doc *doc, size_t first, const char *name) {
    for (size_t i = doc->n; i-- > first + 1;)
        if (strcmp(row_get(&doc->rows[i], doc->col[COL_TITLE]), name) == 0)
            doc_remove(h, doc, i);
}

/* Stores op's key: replaces the row of the same title (other columns kept) or appends
 * one; later rows of the same title are removed so there is never a duplicate. */
static int doc_put(const pw_state *st, csv_doc *doc, const pw_op *op) {
    const ol_host *h = st->host;
    size_t at = doc_find(doc, op->name);
    csv_row *r;
    if (at != (size_t)-1) {
        doc_drop_after(h, doc, at, op->name);
        r = &doc->rows[at];
    } else if ((r = doc_add_row(doc)) == NULL) {
        return OL_ENOMEM;
    }
    const char *values[N_COLS] = {op->name, op->uri, op->key_id, op->secret, op->notes};
    for (size_t c = 0; c < N_COLS; c++)
        if (row_set(h, r, doc->col[c], values[c]) != 0)
            return OL_ENOMEM;
    return 0;
}

/* Removes every row titled name. Returns 1 when the document changed. */
static int doc_del(const ol_host *h, csv_doc *doc, const char *name) {
    size_t at = doc_find(doc, name);
    if (at == (size_t)-1)
        return 0;
    doc_drop_after(h, doc, at, name);
    doc_remove(h, doc, at);
    return 1;
}

/* The value after "label: " on a line of the notes, malloc'd, or NULL. */
static char *notes_value(const char *notes, const char *label) {
    size_t n = strlen(label);
    for (const char *p = notes; p != NULL && *p != '\0';) {
        const char *end = strchr(p, '\n');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        if (len > n + 1 && strncmp(p, label, n) == 0 && p[n] == ':') {
            const char *v = p + n + 1;
            while (*v == ' ')
                v++;
            size_t vl = len - (size_t)(v - p);
            if (vl > 0 && v[vl - 1] == '\r')
                vl--;
            return vl > 0 && !(vl == 1 && v[0] == '-') ? strndup(v, vl) : NULL;
        }
        p = end != NULL ? end + 1 : NULL;
    }
    return NULL;
}

/* Reads op's row into op. Returns 0, OL_ENOENT (no row of that title, or one without
 * username and password), or OL_ENOMEM. */
static int doc_get(const csv_doc *doc, pw_op *op) {
    size_t at = doc_find(doc, op->name);
    if (at == (size_t)-1)
        return OL_ENOENT;
    const csv_row *r = &doc->rows[at];
    const char *key_id = row_get(r, doc->col[COL_USERNAME]);
    const char *secret = row_get(r, doc->col[COL_PASSWORD]);
    const char *notes = row_get(r, doc->col[COL_NOTES]);
    if (key_id[0] == '\0' || secret[0] == '\0')
        return OL_ENOENT;
    op->key_id = strdup(key_id);
    op->secret = strdup(secret);
    op->region = notes_value(notes, "region");
    op->user = notes_value(notes, "IAM user");
    op->created = notes_value(notes, "created");
    op->bucket = notes_value(notes, "bucket");
    return op->key_id != NULL && op->secret != NULL ? 0 : OL_ENOMEM;
}

/* A growable output buffer that never leaves an unwiped copy behind when it grows. */
typedef struct pw_buf {
    const ol_host *host;
    char *data;
    size_t len, cap;
    int failed;
} pw_buf;

static void buf_add(pw_buf *b, const char *s, size_t n) {
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap == 0 ? 4096 : b->cap;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *d = malloc(cap);
        if (d == NULL) {
            b->failed = 1;
            return;
        }
        if (b->len > 0)
            memcpy(d, b->data, b->len);
        if (b->data != NULL) {
            b->host->wipe(b->data, b->cap);
            free(b->data);
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void buf_field(pw_buf *b, const char *f) {
    size_t n = strlen(f);
    int quote = n > 0 && (f[0] == ' ' || f[0] == '\t' || f[n - 1] == ' ' || f[n - 1] == '\t');
    if (strpbrk(f, ",\"\r\n") != NULL)
        quote = 1;
    if (!quote) {
        buf_add(b, f, n);
        return;
    }
    buf_add(b, "\"", 1);
    for (const char *q; (q = strchr(f, '"')) != NULL; f = q + 1) {
        buf_add(b, f, (size_t)(q - f));
        buf_add(b, "\"\"", 2);
    }
    buf_add(b, f, strlen(f));
    buf_add(b, "\"", 1);
}

static void buf_row(pw_buf *b, const csv_doc *doc, const csv_row *r) {
    if (r->raw != NULL && !r->dirty && !doc->header_changed) {
        buf_add(b, r->raw, r->raw_len);
    } else {
        size_t n = r->n > doc->rows[0].n ? r->n : doc->rows[0].n;
        for (size_t i = 0; i < n; i++) {
            if (i > 0)
                buf_add(b, ",", 1);
            buf_field(b, row_get(r, i));
        }
    }
    buf_add(b, doc->eol, strlen(doc->eol));
}

static int doc_write(const pw_state *st, const csv_doc *doc, char **why) {
    const ol_host *h = st->host;
    pw_buf b = {.host = h};
    int rc = OL_ENOMEM;
    if (doc->bom)
        buf_add(&b, "\xEF\xBB\xBF", 3);
    for (size_t i = 0; i < doc->n; i++)
        buf_row(&b, doc, &doc->rows[i]);
    if (!b.failed)
        rc = h->write_private_file(st->path, b.data, b.len);
    if (rc != 0)
        *why = h->format("cannot write %s: %s", st->path, code_text(rc));
    if (b.data != NULL) {
        h->wipe(b.data, b.cap);
        free(b.data);
    }
    return rc;
}

/* --------------------------------------------------------------------------------------
 * The file: checks, load (both off the loop)
 * ------------------------------------------------------------------------------------ */

/* Is the file writable for us? The owner's write bit is checked too, because root passes
 * access(2) on a file its owner made read-only, and the atomic rename would replace it. */
static int file_writable(const char *path, const struct stat *sb) {
    return (sb->st_mode & S_IWUSR) != 0 && access(path, W_OK) == 0;
}

/* Checks that the file can be created or replaced: its directory (or the nearest existing
 * ancestor, since write_private_file creates the missing ones) is writable, and an existing
 * file is a writable regular file. Returns 0 or OL_EIO with *why. */
static int file_check_writable(const pw_state *st, char **why) {
    const ol_host *h = st->host;
    struct stat sb;
    char err[128];
    if (lstat(st->path, &sb) == 0) {
        if (!S_ISREG(sb.st_mode)) {
            *why = h->format("%s is not a regular file: set 1password.file to a "
                             "regular file",
                             st->path);
            return OL_EINVAL;
        }
        if (!file_writable(st->path, &sb)) {
            *why = h->format("%s is read-only: make it writable (chmod u+w) or set "
                             "1password.file to another file",
                             st->path);
            return OL_EIO;
        }
    } else if (errno != ENOENT) {
        errno_text(errno, err, sizeof(err));
        *why = h->format("cannot access %s: %s", st->path, err);
        return OL_EIO;
    }
    char *dir = strdup(st->path);
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
                *why = h->format("cannot write %s: directory %s is not writable", st->path, dir);
                rc = OL_EIO;
            }
            break;
        }
        if (errno != ENOENT || strcmp(dir, "/") == 0) {
            errno_text(errno, err, sizeof(err));
            *why = h->format("cannot write %s: %s: %s", st->path, dir, err);
            rc = OL_EIO;
            break;
        }
    }
    free(dir);
    return rc;
}

/* Reads and parses the file (an absent one is a new, empty document). With for_write the
 * file must also be replaceable. Returns 0 and *doc, or a code and *why. */
static int file_load(const pw_state *st, int for_write, csv_doc **doc, char **why) {
    const ol_host *h = st->host;
    char *text = NULL;
    size_t len = 0;
    *doc = NULL;
    if (for_write) {
        int rc = file_check_writable(st, why);
        if (rc != 0)
            return rc;
    }
    int rc = h->read_private_file(st->path, PW_MAX_FILE, &text, &len);
    if (rc == OL_ENOENT) {
        *doc = doc_new(h);
        return *doc != NULL ? 0 : OL_ENOMEM;
    }
    if (rc != 0) {
        *why = h->format("cannot read %s: %s", st->path, code_text(rc));
        return rc;
    }
    return doc_parse(st, text, len, doc, why);
}

/* --------------------------------------------------------------------------------------
 * prepare: the file parses and can be written, before any request
 * ------------------------------------------------------------------------------------ */

typedef struct pw_prepare_req {
    pw_state *st;
    int result;
    char *reason;
} pw_prepare_req;

static void prepare_work(void *arg) {
    pw_prepare_req *p = arg;
    csv_doc *doc = NULL;
    p->result = file_load(p->st, 1, &doc, &p->reason);
    doc_free(p->st->host, doc);
}

static void prepare_after(void *arg, int status) {
    pw_prepare_req *p = arg;
    const ol_host *h = p->st->host;
    if (status != 0 && p->result == 0) {
        p->result = status;
        p->reason = h->format("%s was not checked: %s", p->st->path, code_text(status));
    }
    if (p->result != 0 && p->reason == NULL)
        p->reason = h->format("cannot use %s: %s", p->st->path, code_text(p->result));
    h->prepare_done(p->st->stage, p->result, p->reason);
    h->free(p->reason);
    free(p);
}

static int pw_prepare(ol_stage *stage, void *state) {
    pw_state *st = state;
    pw_prepare_req *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return OL_ENOMEM;
    p->st = st;
    int rc = st->host->work_queue(stage, prepare_work, prepare_after, p);
    if (rc != 0)
        free(p);
    return rc;
}

/* --------------------------------------------------------------------------------------
 * Jobs: one batch of operations against the file, under its lock
 * ------------------------------------------------------------------------------------ */

static void op_finish(pw_op *op, int result, char *reason) {
    op->done = 1;
    op->result = result;
    op->reason = reason;
}

static void job_work(void *arg) {
    pw_job *job = arg;
    const pw_state *st = job->st;
    const ol_host *h = st->host;
    int for_write = 0, changed = 0;
    for (const pw_op *op = job->ops; op != NULL; op = op->next)
        if (!op->done && op->kind != PW_GET)
            for_write = 1;
    csv_doc *doc = NULL;
    char *why = NULL;
    int rc = file_load(st, for_write, &doc, &why);
    for (pw_op *op = job->ops; rc == 0 && op != NULL; op = op->next) {
        if (op->done)
            continue;
        if (op->kind == PW_GET) {
            int r = doc_get(doc, op);
            op_finish(op, r,
                      r != 0 && r != OL_ENOENT
                          ? h->format("cannot read %s: %s", st->path, code_text(r))
                          : NULL);
        } else if (op->kind == PW_DEL) {
            changed |= doc_del(h, doc, op->name);
        } else {
            int r = doc_put(st, doc, op);
            if (r != 0)
                op_finish(op, r,
                          h->format("cannot add %s to %s: %s", op->name, st->path, code_text(r)));
            else
                changed = 1;
        }
    }
    if (rc == 0 && changed)
        rc = doc_write(st, doc, &why);
    for (pw_op *op = job->ops; op != NULL; op = op->next)
        if (!op->done)
            op_finish(op, rc, rc != 0 ? h->format("%s", why) : NULL);
    job->result = rc;
    job->reason = why;
    doc_free(h, doc);
}

static void pw_kick(pw_state *st);

/* Completes ops (each with its own outcome, or result and reason when it has none) and,
 * for a flush, the flush. Takes ownership of ops and reason. */
static void ops_complete(pw_state *st, pw_op *ops, int flush, int result, char *reason) {
    const ol_host *h = st->host;
    while (ops != NULL) {
        pw_op *op = ops;
        ops = op->next;
        if (!op->done)
            op_finish(op, result, h->format("%s", reason != NULL ? reason : "failed"));
        if (op->kind == PW_GET && op->result == 0) {
            const ol_secret found = {.struct_size = sizeof(ol_secret),
                                     .access_key_id = op->key_id,
                                     .secret_access_key = op->secret,
                                     .region = op->region,
                                     .bucket = op->bucket,
                                     .user = op->user,
                                     .created = op->created};
            h->store_done(st->stage, op->item, 0, &found, NULL);
        } else {
            h->store_done(st->stage, op->item, op->result, NULL, op->reason);
        }
        op_free(h, op);
    }
    if (flush)
        h->flush_done(st->stage, result, result != 0 ? reason : NULL);
    h->free(reason);
    pw_kick(st);
}

/* Releases the file, frees the job and completes its operations. status: why the work did
 * not run (0 when it did). */
static void job_finish(pw_job *job, int status) {
    pw_state *st = job->st;
    const ol_host *h = st->host;
    pw_op *ops = job->ops;
    int flush = job->flush, result = job->result;
    char *reason = job->reason;
    if (status != 0 && result == 0) {
        result = status;
        reason = h->format("%s was not written: %s", st->path, code_text(status));
    }
    if (job->lock != NULL)
        h->lock_release(job->lock);
    if (!flush)
        st->busy = 0;
    free(job);
    ops_complete(st, ops, flush, result, reason);
}

static void job_after(void *arg, int status) {
    job_finish(arg, status);
}

static void job_locked(void *arg, int status, ol_lock *lock) {
    pw_job *job = arg;
    if (status != 0) {
        job_finish(job, status);
        return;
    }
    job->lock = lock;
    int rc = job->st->host->work_queue(job->st->stage, job_work, job_after, job);
    if (rc != 0)
        job_finish(job, rc);
}

static void job_start(pw_state *st, pw_op *ops, int flush) {
    pw_job *job = calloc(1, sizeof(*job));
    if (job == NULL) {
        if (!flush)
            st->busy = 0;
        ops_complete(st, ops, flush, OL_ENOMEM, st->host->format("out of memory"));
        return;
    }
    job->st = st;
    job->ops = ops;
    job->flush = flush;
    int rc = st->host->lock_acquire(st->stage, st->path, job_locked, job);
    if (rc != 0)
        job_finish(job, rc);
}

/* Starts a job for the queued operations unless one is running: the ones that arrive
 * meanwhile share the next read of the file. */
static void pw_kick(pw_state *st) {
    if (st->busy || st->queued.head == NULL)
        return;
    st->busy = 1;
    job_start(st, list_take(&st->queued), 0);
}

/* --------------------------------------------------------------------------------------
 * Store operations
 * ------------------------------------------------------------------------------------ */

/* The login's notes: what the key is for, where, and since when. malloc'd. */
static char *notes_new(const ol_secret *secret, const char *name) {
    const char *fmt = "AWS access key written by opsline\nbucket: %s\nIAM user: %s\nregion: %s\n"
                      "created: %s";
    const char *bucket = secret->bucket != NULL ? secret->bucket : name;
    const char *user = secret->user != NULL ? secret->user : "-";
    const char *region = secret->region != NULL ? secret->region : "-";
    const char *created = secret->created != NULL ? secret->created : "-";
    int n = snprintf(NULL, 0, fmt, bucket, user, region, created);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s != NULL)
        snprintf(s, (size_t)n + 1, fmt, bucket, user, region, created);
    return s;
}

static pw_op *op_new(pw_kind kind, ol_item *item) {
    pw_op *op = calloc(1, sizeof(*op));
    if (op != NULL) {
        op->kind = kind;
        op->item = item;
    }
    return op;
}

/* Expands tmpl for the item into a malloc'd *out. On failure finishes op with a reason
 * naming the option. */
static int expand_into(const pw_state *st, pw_op *op, const char *option, const char *tmpl,
                       char **out) {
    const ol_host *h = st->host;
    char *s = NULL, *why = NULL;
    int rc = h->expand(op->item, tmpl, &s, &why);
    if (rc == 0 && (s == NULL || s[0] == '\0'))
        rc = OL_EINVAL;
    if (rc == 0 && (*out = strdup(s)) == NULL)
        rc = OL_ENOMEM;
    if (rc != 0 && why != NULL)
        op_finish(op, rc, h->format("option 1password.%s: %s", option, why));
    else if (rc != 0)
        op_finish(op, rc,
                  h->format("option 1password.%s '%s': %s", option, tmpl,
                            rc == OL_ENOMEM ? "out of memory" : "expands to an empty text"));
    h->free(s);
    h->free(why);
    return rc;
}

/* Queues op for the next job (gets, deletes, and puts that failed before reaching the
 * file). */
static int queue_now(pw_state *st, pw_op *op) {
    list_push(&st->queued, op);
    pw_kick(st);
    return 0;
}

static int pw_put(ol_stage *stage, ol_item *item, void *state, const ol_secret *secret) {
    pw_state *st = state;
    const ol_host *h = st->host;
    (void)stage;
    pw_op *op = op_new(PW_PUT, item);
    if (op == NULL)
        return OL_ENOMEM;
    if (expand_into(st, op, "title", st->name, &op->name) != 0 ||
        expand_into(st, op, "website", st->uri, &op->uri) != 0)
        return queue_now(st, op);
    if (secret == NULL || secret->access_key_id == NULL || secret->secret_access_key == NULL) {
        op_finish(op, OL_EINVAL, h->format("no access key to store for %s", op->name));
        return queue_now(st, op);
    }
    op->key_id = strdup(secret->access_key_id);
    op->secret = strdup(secret->secret_access_key);
    op->region = dup_or_null(secret->region);
    op->bucket = dup_or_null(secret->bucket);
    op->user = dup_or_null(secret->user);
    op->created = dup_or_null(secret->created);
    op->notes = notes_new(secret, op->name);
    if (op->key_id == NULL || op->secret == NULL || op->notes == NULL) {
        op_finish(op, OL_ENOMEM, h->format("out of memory"));
        return queue_now(st, op);
    }
    list_push(&st->held, op);
    return 0;
}

static int pw_read_or_del(pw_state *st, ol_item *item, pw_kind kind) {
    pw_op *op = op_new(kind, item);
    if (op == NULL)
        return OL_ENOMEM;
    expand_into(st, op, "title", st->name, &op->name);
    return queue_now(st, op);
}

static int pw_get(ol_stage *stage, ol_item *item, void *state) {
    (void)stage;
    return pw_read_or_del(state, item, PW_GET);
}

static int pw_del(ol_stage *stage, ol_item *item, void *state) {
    (void)stage;
    return pw_read_or_del(state, item, PW_DEL);
}

static void flush_empty(void *arg, int status) {
    pw_state *st = arg;
    st->host->flush_done(st->stage, status == OL_ECANCELED ? 0 : status, NULL);
}

static int pw_flush(ol_stage *stage, void *state) {
    pw_state *st = state;
    pw_op *ops = list_take(&st->held);
    if (ops == NULL)
        return st->host->timer_start(stage, 0, flush_empty, st, NULL);
    /* Queued gets and deletes ride along: the batch is read once. */
    pw_op *last = ops;
    while (last->next != NULL)
        last = last->next;
    last->next = list_take(&st->queued);
    job_start(st, ops, 1);
    return 0;
}

/* --------------------------------------------------------------------------------------
 * Life cycle
 * ------------------------------------------------------------------------------------ */

static int check_template(ol_stage *stage, const ol_host *host, const char *option,
                          const char *tmpl) {
    char *out = NULL, *why = NULL;
    if (tmpl == NULL)
        return 0;
    int rc = host->expand(NULL, tmpl, &out, &why);
    if (rc != 0)
        host->log(stage, NULL, OL_LOG_ERROR, "option 1password.%s: %s", option,
                  why != NULL ? why : "invalid template");
    host->free(out);
    host->free(why);
    return rc != 0 ? OL_ECONFIG : 0;
}

static int pw_config_check(ol_stage *stage, const pw_state *st) {
    const ol_host *h = st->host;
    if (st->file == NULL || st->file[0] == '\0') {
        h->log(stage, NULL, OL_LOG_ERROR,
               "option 1password.file is required: the CSV import file to write, e.g. "
               "--set 1password.file=1password.csv");
        return OL_ECONFIG;
    }
    if (check_template(stage, h, "title", st->name) != 0 ||
        check_template(stage, h, "website", st->uri) != 0)
        return OL_ECONFIG;
    return 0;
}

static int pw_init(ol_stage *stage, const ol_host *host, void **state) {
    pw_state *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return OL_ENOMEM;
    st->host = host;
    st->stage = stage;
    list_init(&st->held);
    list_init(&st->queued);
    int rc = host->opt_bind(stage, st);
    if (rc != 0) {
        host->log(stage, NULL, OL_LOG_ERROR, "cannot read options: %s", host->strerror(rc));
        goto fail;
    }
    if (st->name == NULL)
        st->name = "{bucket}";
    if (st->uri == NULL)
        st->uri = "s3://{bucket}";
    rc = pw_config_check(stage, st);
    if (rc != 0)
        goto fail;
    st->path = path_absolute(st->file);
    if (st->path == NULL) {
        host->log(stage, NULL, OL_LOG_ERROR, "cannot resolve 1password.file '%s'", st->file);
        rc = OL_ECONFIG;
        goto fail;
    }
    *state = st;
    return 0;
fail:
    free(st);
    return rc;
}

static void pw_fini(void *state) {
    pw_state *st = state;
    if (st == NULL)
        return;
    /* The host completes every operation before fini; anything left was never started. */
    pw_op *lists[2] = {list_take(&st->held), list_take(&st->queued)};
    for (size_t i = 0; i < 2; i++)
        while (lists[i] != NULL) {
            pw_op *op = lists[i];
            lists[i] = op->next;
            op_free(st->host, op);
        }
    free(st->path);
    free(st);
}

static const ol_store_ops pw_store = {
    .struct_size = sizeof(ol_store_ops),
    .put = pw_put,
    .get = pw_get,
    .del = pw_del,
};

static const ol_plugin pw_plugin = {
    .abi_major = OL_ABI_MAJOR,
    .abi_minor = OL_ABI_MINOR,
    .struct_size = sizeof(ol_plugin),
    .name = "1password",
    .version = "1.0.0",
    .description = "store access keys as logins in a 1Password CSV import file (0600, merged)",
    OL_OPTIONS(pw_options),
    .init = pw_init,
    .fini = pw_fini,
    .prepare = pw_prepare,
    .flush = pw_flush,
    .store = &pw_store,
};

OL_EXPORT const ol_plugin *opsline_plugin(void) {
    return &pw_plugin;
}
