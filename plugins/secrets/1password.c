/* 1password: the secret store that keeps access keys in a 1Password CSV import file, for
 * the desktop app (File > Import) or 1Password.com's import page. It owns the merge of login
 * rows into that file: a header row with the columns 1Password's importer documents (title,
 * website, username, password, notes) and one row per item, titled by 1password.title;
 * rows of other titles and other columns are kept (byte for byte while the header does not
 * change). The batching (puts held until flush, one read-merge-write of the file off the
 * loop under the host lock on its absolute path) is lib/filebatch.c's; this file is the
 * format. A file that is not valid CSV, has no header row or is read-only is refused in
 * prepare, before any request, and is never touched.
 *
 * Secrets are never logged; every field read from the file and every output buffer is wiped
 * before it is freed. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "opsline/opsline.h"

#include "lib/filebatch.h"

/* The state is the filebatch alone: every option binds into it. */
static const ol_option_def pw_options[] = {
    {"file", OL_OPT_STRING, NULL,
     "the 1Password CSV import file to write (required); rows of other titles are kept",
     OL_BIND(filebatch, file)},
    {"title", OL_OPT_STRING, "{bucket}",
     "row title; placeholders {product}, {environment}, {bucket}, {user}, {region}",
     OL_BIND(filebatch, name_tmpl)},
    {"website", OL_OPT_STRING, "s3://{bucket}", "the website column (template)",
     OL_BIND(filebatch, uri_tmpl)},
};

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
        free_wiped_str(h, r->f[i]);
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
    free_wiped_str(h, r->f[i]);
    r->f[i] = v;
    r->dirty = 1;
    return 0;
}

/* Reads one field at *pos (quoted or bare) into the row. Returns 0, or OL_EINVAL with
 * *why a static text. *line counts the line ends inside quoted fields. */
static int csv_field(const ol_host *h, const char *s, size_t len, size_t *pos, size_t *line,
                     csv_row *r, const char **why) {
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
        free_wiped(h, buf, n);
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

/* One record from *pos into a new row of doc, and its line end; the first record's line end
 * is the document's. */
static int doc_parse_record(const ol_host *h, csv_doc *doc, size_t *pos, size_t *line,
                            const char **problem) {
    const char *text = doc->text;
    size_t len = doc->text_len;
    csv_row *r = doc_add_row(doc);
    if (r == NULL)
        return OL_ENOMEM;
    r->raw = text + *pos;
    int rc;
    for (;;) {
        rc = csv_field(h, text, len, pos, line, r, problem);
        if (rc != 0 || *pos >= len || text[*pos] != ',')
            break;
        (*pos)++;
    }
    r->raw_len = (size_t)(text + *pos - r->raw);
    if (rc == 0 && *pos < len) {
        int crlf = text[*pos] == '\r' && *pos + 1 < len && text[*pos + 1] == '\n';
        if (doc->n == 1)
            doc->eol = crlf || text[*pos] == '\r' ? "\r\n" : "\n";
        *pos += crlf ? 2 : 1;
        (*line)++;
    }
    return rc;
}

/* Every record of doc's text from pos; on a bad one, *bad_line is the line it starts on. */
static int doc_parse_records(const ol_host *h, csv_doc *doc, size_t pos, size_t *bad_line,
                             const char **problem) {
    const char *text = doc->text;
    size_t len = doc->text_len, line = 1;
    int rc = 0;
    while (rc == 0 && pos < len) {
        if (text[pos] == '\r' || text[pos] == '\n') { /* a blank line: no record */
            pos += text[pos] == '\r' && pos + 1 < len && text[pos + 1] == '\n' ? 2 : 1;
            line++;
            continue;
        }
        *bad_line = line;
        rc = doc_parse_record(h, doc, &pos, &line, problem);
    }
    return rc;
}

/* Parses the file's text (taking ownership of it: a host-allocated buffer). Returns 0 and
 * *out, or a code and *why (host-allocated) naming the file, the line and the fix. An empty
 * file (or blank lines only) is a new document. */
static int pw_doc_parse(const filebatch *fb, char *text, size_t len, void **out, char **why) {
    const ol_host *h = fb->host;
    const char *problem = NULL;
    size_t bad_line = 0;
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
    int bom = len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0;
    doc->bom = bom;
    int rc = doc_parse_records(h, doc, bom ? 3 : 0, &bad_line, &problem);
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
                             fb->path);
    } else if (rc == OL_EINVAL) {
        *why = h->format("%s is not valid CSV (record starting on line %zu: %s): "
                         "fix it or set 1password.file to another file; opsline left it "
                         "untouched",
                         fb->path, bad_line, problem);
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
static int pw_doc_put(const filebatch *fb, void *out, const fb_op *op) {
    const ol_host *h = fb->host;
    csv_doc *doc = out;
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
static int pw_doc_del(const filebatch *fb, void *doc, const char *name) {
    const ol_host *h = fb->host;
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
static int pw_doc_get(const filebatch *fb, const void *in, fb_op *op) {
    const csv_doc *doc = in;
    (void)fb;
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

static void buf_field(storebuf *b, const char *f) {
    size_t n = strlen(f);
    int quote = n > 0 && (f[0] == ' ' || f[0] == '\t' || f[n - 1] == ' ' || f[n - 1] == '\t');
    if (strpbrk(f, ",\"\r\n") != NULL)
        quote = 1;
    if (!quote) {
        storebuf_add(b, f, n);
        return;
    }
    storebuf_add(b, "\"", 1);
    for (const char *q; (q = strchr(f, '"')) != NULL; f = q + 1) {
        storebuf_add(b, f, (size_t)(q - f));
        storebuf_add(b, "\"\"", 2);
    }
    storebuf_str(b, f);
    storebuf_add(b, "\"", 1);
}

static void buf_row(storebuf *b, const csv_doc *doc, const csv_row *r) {
    if (r->raw != NULL && !r->dirty && !doc->header_changed) {
        storebuf_add(b, r->raw, r->raw_len);
    } else {
        size_t n = r->n > doc->rows[0].n ? r->n : doc->rows[0].n;
        for (size_t i = 0; i < n; i++) {
            if (i > 0)
                storebuf_add(b, ",", 1);
            buf_field(b, row_get(r, i));
        }
    }
    storebuf_str(b, doc->eol);
}

static int pw_doc_write(const filebatch *fb, const void *in, storebuf *out) {
    const csv_doc *doc = in;
    (void)fb;
    if (doc->bom)
        storebuf_add(out, "\xEF\xBB\xBF", 3);
    for (size_t i = 0; i < doc->n; i++)
        buf_row(out, doc, &doc->rows[i]);
    return 0;
}

static void *pw_doc_new(const filebatch *fb) {
    return doc_new(fb->host);
}

static void pw_doc_free(const filebatch *fb, void *doc) {
    doc_free(fb->host, doc);
}

/* --------------------------------------------------------------------------------------
 * Life cycle
 * ------------------------------------------------------------------------------------ */

static const fb_format pw_format = {
    .store = "1password",
    .file_kind = "CSV import file",
    .file_example = "1password.csv",
    .name_option = "title",
    .uri_option = "website",
    .doc_new = pw_doc_new,
    .doc_parse = pw_doc_parse,
    .doc_get = pw_doc_get,
    .doc_put = pw_doc_put,
    .doc_del = pw_doc_del,
    .doc_write = pw_doc_write,
    .doc_free = pw_doc_free,
};

static int pw_init(ol_stage *stage, const ol_host *host, void **state) {
    return filebatch_new(sizeof(filebatch), stage, host, &pw_format, state);
}

static const ol_plugin pw_plugin = {
    .abi_major = OL_ABI_MAJOR,
    .abi_minor = OL_ABI_MINOR,
    .struct_size = sizeof(ol_plugin),
    .name = "1password",
    .version = "1.0.0",
    .description = "store access keys as logins in a 1Password CSV import file (0600, merged)",
    OL_OPTIONS(pw_options),
    .init = pw_init,
    .fini = filebatch_free,
    .prepare = filebatch_prepare,
    .flush = filebatch_flush,
    .store = &filebatch_store,
};

OL_EXPORT const ol_plugin *opsline_plugin(void) {
    return &pw_plugin;
}
