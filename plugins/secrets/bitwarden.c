/* bitwarden: the secret store that keeps access keys in a Bitwarden unencrypted JSON import
 * file, for `bw import bitwardenjson FILE` or the web vault's import page. It owns the merge
 * of login items into that file: one login (type 1) per item, named by bitwarden.name, in a
 * folder or an organization collection when asked; every other item, folder, collection and
 * top-level member is kept as the JSON value it was. Puts are held back until flush, so a
 * batch costs one read-merge-write of the file, done off the loop under the host lock on the
 * file's absolute path; gets and deletes that arrive together share one read. A file that is
 * not valid JSON, is an encrypted export or is read-only is refused in prepare, before any
 * request, and is never touched.
 *
 * The layout is what Bitwarden's importer (BitwardenJsonImporter.parseDecrypted) reads:
 * {"encrypted": false, "folders": [{"id", "name"}], "items": [...]} for a personal vault;
 * with an organization, "collections": [{"id", "organizationId", "name", "externalId"}] and
 * each item's "collectionIds". The importer indexes folders (or collections) by id and fails
 * when an item names one while the array is absent, so the array is always written.
 *
 * JSON goes through jansson only. Secrets are never logged; every string of the parsed
 * document and every output buffer is wiped before it is freed. */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "opsline/opsline.h"

#define BW_MAX_FILE (64u * 1024 * 1024) /* larger is not an import file we should rewrite */

typedef struct bw_state bw_state;

typedef enum bw_kind { BW_PUT = 1, BW_GET, BW_DEL } bw_kind;

/* One store operation, from the call that starts it to store_done. */
typedef struct bw_op {
    struct bw_op *next;
    bw_kind kind;
    ol_item *item;
    char *name;  /* the entry's name (bitwarden.name expanded) */
    char *group; /* put: folder or collection name, or NULL */
    char *uri;   /* put */
    char *notes; /* put */
    /* put: the key to store; get: the key found. secret is wiped before it is freed. */
    char *key_id, *secret, *region, *bucket, *user, *created;
    int done; /* result and reason are final */
    int result;
    char *reason; /* host-allocated, or NULL */
} bw_op;

typedef struct bw_list {
    bw_op *head;
    bw_op **tail;
} bw_list;

struct bw_state {
    const ol_host *host;
    ol_stage *stage;
    /* Options (host->opt_bind). */
    const char *file;
    const char *name;
    const char *uri;
    const char *folder;
    const char *organization_id;
    const char *collection;
    char *path;     /* file, absolute and normalised: the lock's name */
    bw_list held;   /* puts waiting for flush */
    bw_list queued; /* gets, deletes and refused puts waiting for the file */
    int busy;       /* a job for the queued list is running */
};

/* One read-(merge-write) of the file for a batch of operations. */
typedef struct bw_job {
    bw_state *st;
    bw_op *ops;
    int flush; /* complete a flush at the end */
    ol_lock *lock;
    int result; /* file-level outcome, for flush_done */
    char *reason;
} bw_job;

static const ol_option_def bw_options[] = {
    {"file", OL_OPT_STRING, NULL,
     "the Bitwarden unencrypted JSON import file to write (required); other items are kept",
     OL_BIND(bw_state, file)},
    {"name", OL_OPT_STRING, "{bucket}",
     "item name; placeholders {product}, {environment}, {bucket}, {user}, {region}",
     OL_BIND(bw_state, name)},
    {"uri", OL_OPT_STRING, "s3://{bucket}", "the login's URI (template)", OL_BIND(bw_state, uri)},
    {"folder", OL_OPT_STRING, NULL,
     "folder for the items (template, '/' nests), e.g. AWS/{product}; personal vault only",
     OL_BIND(bw_state, folder)},
    {"organization_id", OL_OPT_STRING, NULL,
     "organization the file is imported into (bw import --organizationid); needs collection",
     OL_BIND(bw_state, organization_id)},
    {"collection", OL_OPT_STRING, NULL,
     "organization collection for the items (template), with organization_id",
     OL_BIND(bw_state, collection)},
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

static void list_init(bw_list *l) {
    l->head = NULL;
    l->tail = &l->head;
}

static void list_push(bw_list *l, bw_op *op) {
    op->next = NULL;
    *l->tail = op;
    l->tail = &op->next;
}

static bw_op *list_take(bw_list *l) {
    bw_op *head = l->head;
    list_init(l);
    return head;
}

static void op_free(const ol_host *h, bw_op *op) {
    free(op->name);
    free(op->group);
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

/* A random (version 4) UUID: ids of new folders, collections and items. */
static int uuid_new(char out[37]) {
    unsigned char b[16];
    size_t got = 0;
    while (got < sizeof(b)) {
        ssize_t n = getrandom(b + got, sizeof(b) - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return OL_EIO;
        }
        got += (size_t)n;
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
    return 0;
}

/* --------------------------------------------------------------------------------------
 * The document
 * ------------------------------------------------------------------------------------ */

static const char *obj_str(const json_t *obj, const char *key) {
    return json_string_value(json_object_get(obj, key));
}

/* Overwrites every string value of the tree (the file holds other logins' passwords too)
 * before jansson frees it. */
static void json_wipe(const ol_host *h, json_t *v) {
    if (json_is_string(v)) {
        h->wipe((char *)json_string_value(v), json_string_length(v));
    } else if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++)
            json_wipe(h, json_array_get(v, i));
    } else if (json_is_object(v)) {
        const char *key;
        json_t *member;
        json_object_foreach(v, key, member) json_wipe(h, member);
    }
}

static void doc_free(const ol_host *h, json_t *doc) {
    if (doc == NULL)
        return;
    json_wipe(h, doc);
    json_decref(doc);
}

/* The array member key of doc, created (empty) when absent or null. NULL: not an array. */
static json_t *doc_array(json_t *doc, const char *key) {
    json_t *a = json_object_get(doc, key);
    if (a == NULL || json_is_null(a)) {
        a = json_array();
        if (a == NULL || json_object_set_new(doc, key, a) != 0)
            return NULL;
    }
    return json_is_array(a) ? a : NULL;
}

/* An empty import file for this store. */
static json_t *doc_new(const bw_state *st) {
    const char *group = st->organization_id != NULL ? "collections" : "folders";
    return json_pack("{s:b, s:[], s:[]}", "encrypted", 0, group, "items");
}

/* What makes a parsed file unusable, or NULL. */
static const char *doc_problem(const json_t *doc) {
    if (!json_is_object(doc))
        return "the top level is not a JSON object";
    if (json_is_true(json_object_get(doc, "encrypted")))
        return "it is an encrypted export (use a file exported as unencrypted JSON, or a "
               "new file)";
    static const char *const arrays[][2] = {{"items", "\"items\" is not an array"},
                                            {"folders", "\"folders\" is not an array"},
                                            {"collections", "\"collections\" is not an array"}};
    for (size_t i = 0; i < sizeof(arrays) / sizeof(arrays[0]); i++) {
        const json_t *a = json_object_get(doc, arrays[i][0]);
        if (a != NULL && !json_is_null(a) && !json_is_array(a))
            return arrays[i][1];
    }
    return NULL;
}

static int only_blanks(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return 0;
    return 1;
}

/* Parses the file's text. Returns 0 and *doc, or a code and *why (host-allocated) naming
 * the file and the fix. A file of blanks only counts as empty. */
static int doc_parse(const bw_state *st, const char *text, size_t len, json_t **doc, char **why) {
    const ol_host *h = st->host;
    json_error_t err;
    *doc = NULL;
    if (only_blanks(text, len)) {
        *doc = doc_new(st);
        return *doc != NULL ? 0 : OL_ENOMEM;
    }
    json_t *d = json_loadb(text, len, JSON_ALLOW_NUL, &err);
    if (d == NULL) {
        *why = h->format("%s is not valid JSON (line %d, column %d: %s): fix it or "
                         "set bitwarden.file to another file; opsline left it untouched",
                         st->path, err.line, err.column, err.text);
        return OL_EINVAL;
    }
    const char *problem = doc_problem(d);
    if (problem != NULL) {
        *why = h->format("%s is not a Bitwarden JSON import file opsline can merge "
                         "into: %s; opsline left it untouched",
                         st->path, problem);
        doc_free(h, d);
        return OL_EINVAL;
    }
    *doc = d;
    return 0;
}

static int is_login_named(const json_t *it, const char *name) {
    const char *n = obj_str(it, "name");
    return json_is_object(it) && json_integer_value(json_object_get(it, "type")) == 1 &&
           n != NULL && strcmp(n, name) == 0;
}

/* Index of the first login named name, or (size_t)-1. */
static size_t doc_find(const json_t *items, const char *name) {
    for (size_t i = 0; i < json_array_size(items); i++)
        if (is_login_named(json_array_get(items, i), name))
            return i;
    return (size_t)-1;
}

/* Removes every login named name after index first. */
static void doc_drop_after(const ol_host *h, json_t *items, size_t first, const char *name) {
    for (size_t i = json_array_size(items); i-- > first + 1;)
        if (is_login_named(json_array_get(items, i), name)) {
            json_wipe(h, json_array_get(items, i));
            json_array_remove(items, i);
        }
}

/* The id of the folder (or, with org set, the collection) named name, created when absent.
 * Borrowed from doc. NULL when out of memory or the array is not one. */
static const char *doc_group_id(json_t *doc, const char *name, const char *org) {
    json_t *groups = doc_array(doc, org != NULL ? "collections" : "folders");
    if (groups == NULL)
        return NULL;
    for (size_t i = 0; i < json_array_size(groups); i++) {
        const json_t *g = json_array_get(groups, i);
        const char *n = obj_str(g, "name"), *id = obj_str(g, "id");
        const char *gorg = obj_str(g, "organizationId");
        if (n != NULL && id != NULL && strcmp(n, name) == 0 &&
            (org == NULL || gorg == NULL || strcmp(gorg, org) == 0))
            return id;
    }
    char id[37];
    if (uuid_new(id) != 0)
        return NULL;
    json_t *g = org != NULL ? json_pack("{s:s, s:s, s:s, s:n}", "id", id, "organizationId", org,
                                        "name", name, "externalId")
                            : json_pack("{s:s, s:s}", "id", id, "name", name);
    if (g == NULL || json_array_append_new(groups, g) != 0)
        return NULL;
    return obj_str(g, "id");
}

/* Appends a text custom field (type 0) when value is set. */
static int fields_add(json_t *fields, const char *name, const char *value) {
    if (value == NULL)
        return 0;
    json_t *f =
        json_pack("{s:s, s:s, s:i, s:n}", "name", name, "value", value, "type", 0, "linkedId");
    return f != NULL ? json_array_append_new(fields, f) : -1;
}

static json_t *entry_new(const bw_state *st, const bw_op *op, const char *id, const char *folder_id,
                         const char *collection_id) {
    json_t *fields = json_array();
    if (fields == NULL || fields_add(fields, "region", op->region) != 0 ||
        fields_add(fields, "bucket", op->bucket) != 0 ||
        fields_add(fields, "iam_user", op->user) != 0 ||
        fields_add(fields, "created", op->created) != 0) {
        json_decref(fields);
        return NULL;
    }
    json_t *collections = collection_id != NULL ? json_pack("[s]", collection_id) : json_null();
    json_t *login = json_pack("{s:[{s:n, s:s}], s:s, s:s, s:n}", "uris", "match", "uri", op->uri,
                              "username", op->key_id, "password", op->secret, "totp");
    if (collections == NULL || login == NULL) {
        json_decref(fields);
        json_decref(collections);
        doc_free(st->host, login);
        return NULL;
    }
    /* json_pack steals the "o" references, also when it fails. */
    return json_pack("{s:s, s:s?, s:s?, s:i, s:i, s:s, s:s, s:b, s:o, s:o, s:o, s:s?, s:s?}", "id",
                     id, "organizationId", st->organization_id, "folderId", folder_id, "type", 1,
                     "reprompt", 0, "name", op->name, "notes", op->notes, "favorite", 0, "fields",
                     fields, "login", login, "collectionIds", collections, "creationDate",
                     op->created, "revisionDate", op->created);
}

/* Stores op's key in doc: replaces the login of the same name (keeping its id) or appends
 * one; later logins of the same name are removed so there is never a duplicate. */
static int doc_put(const bw_state *st, json_t *doc, const bw_op *op) {
    json_t *items = doc_array(doc, "items");
    const char *org = st->organization_id;
    const char *group_id = NULL;
    if (items == NULL)
        return OL_ENOMEM;
    if (op->group != NULL && (group_id = doc_group_id(doc, op->group, org)) == NULL)
        return OL_ENOMEM;
    size_t at = doc_find(items, op->name);
    char id[37];
    const char *old_id = at != (size_t)-1 ? obj_str(json_array_get(items, at), "id") : NULL;
    if (old_id != NULL && strlen(old_id) < sizeof(id))
        memcpy(id, old_id, strlen(old_id) + 1);
    else if (uuid_new(id) != 0)
        return OL_EIO;
    json_t *entry =
        entry_new(st, op, id, org == NULL ? group_id : NULL, org != NULL ? group_id : NULL);
    if (entry == NULL)
        return OL_ENOMEM;
    if (at == (size_t)-1)
        return json_array_append_new(items, entry) == 0 ? 0 : OL_ENOMEM;
    doc_drop_after(st->host, items, at, op->name);
    json_wipe(st->host, json_array_get(items, at));
    return json_array_set_new(items, at, entry) == 0 ? 0 : OL_ENOMEM;
}

/* Removes every login named name. Returns 1 when the document changed. */
static int doc_del(const ol_host *h, json_t *doc, const char *name) {
    json_t *items = json_object_get(doc, "items");
    size_t at = doc_find(items, name);
    if (at == (size_t)-1)
        return 0;
    doc_drop_after(h, items, at, name);
    json_wipe(h, json_array_get(items, at));
    json_array_remove(items, at);
    return 1;
}

static const char *field_value(const json_t *entry, const char *name) {
    const json_t *fields = json_object_get(entry, "fields");
    for (size_t i = 0; i < json_array_size(fields); i++) {
        const json_t *f = json_array_get(fields, i);
        const char *n = obj_str(f, "name");
        if (n != NULL && strcmp(n, name) == 0)
            return obj_str(f, "value");
    }
    return NULL;
}

/* Reads op's entry into op. Returns 0, OL_ENOENT (no login of that name, or one without
 * username and password), or OL_ENOMEM. */
static int doc_get(const json_t *doc, bw_op *op) {
    const json_t *items = json_object_get(doc, "items");
    size_t at = doc_find(items, op->name);
    if (at == (size_t)-1)
        return OL_ENOENT;
    const json_t *entry = json_array_get(items, at);
    const json_t *login = json_object_get(entry, "login");
    const char *key_id = obj_str(login, "username"), *secret = obj_str(login, "password");
    if (key_id == NULL || secret == NULL || key_id[0] == '\0' || secret[0] == '\0')
        return OL_ENOENT;
    op->key_id = strdup(key_id);
    op->secret = strdup(secret);
    op->region = dup_or_null(field_value(entry, "region"));
    op->bucket = dup_or_null(field_value(entry, "bucket"));
    op->user = dup_or_null(field_value(entry, "iam_user"));
    op->created = dup_or_null(field_value(entry, "created"));
    return op->key_id != NULL && op->secret != NULL ? 0 : OL_ENOMEM;
}

/* A growable output buffer that never leaves an unwiped copy behind when it grows. */
typedef struct bw_buf {
    const ol_host *host;
    char *data;
    size_t len, cap;
} bw_buf;

static int buf_add(const char *s, size_t n, void *arg) {
    bw_buf *b = arg;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap == 0 ? 4096 : b->cap;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *d = malloc(cap);
        if (d == NULL)
            return -1;
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
    return 0;
}

static int doc_write(const bw_state *st, const json_t *doc, char **why) {
    const ol_host *h = st->host;
    bw_buf b = {.host = h};
    int rc = OL_ENOMEM;
    if (json_dump_callback(doc, buf_add, &b, JSON_INDENT(2)) == 0 && buf_add("\n", 1, &b) == 0)
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
static int file_check_writable(const bw_state *st, char **why) {
    const ol_host *h = st->host;
    struct stat sb;
    char err[128];
    if (lstat(st->path, &sb) == 0) {
        if (!S_ISREG(sb.st_mode)) {
            *why = h->format("%s is not a regular file: set bitwarden.file to a "
                             "regular file",
                             st->path);
            return OL_EINVAL;
        }
        if (!file_writable(st->path, &sb)) {
            *why = h->format("%s is read-only: make it writable (chmod u+w) or set "
                             "bitwarden.file to another file",
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
static int file_load(const bw_state *st, int for_write, json_t **doc, char **why) {
    const ol_host *h = st->host;
    char *text = NULL;
    size_t len = 0;
    *doc = NULL;
    if (for_write) {
        int rc = file_check_writable(st, why);
        if (rc != 0)
            return rc;
    }
    int rc = h->read_private_file(st->path, BW_MAX_FILE, &text, &len);
    if (rc == OL_ENOENT) {
        *doc = doc_new(st);
        return *doc != NULL ? 0 : OL_ENOMEM;
    }
    if (rc != 0) {
        *why = h->format("cannot read %s: %s", st->path, code_text(rc));
        return rc;
    }
    rc = doc_parse(st, text, len, doc, why);
    h->wipe(text, len);
    h->free(text);
    return rc;
}

/* --------------------------------------------------------------------------------------
 * prepare: the file parses and can be written, before any request
 * ------------------------------------------------------------------------------------ */

typedef struct bw_prepare_req {
    bw_state *st;
    int result;
    char *reason;
} bw_prepare_req;

static void prepare_work(void *arg) {
    bw_prepare_req *p = arg;
    json_t *doc = NULL;
    p->result = file_load(p->st, 1, &doc, &p->reason);
    doc_free(p->st->host, doc);
}

static void prepare_after(void *arg, int status) {
    bw_prepare_req *p = arg;
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

static int bw_prepare(ol_stage *stage, void *state) {
    bw_state *st = state;
    bw_prepare_req *p = calloc(1, sizeof(*p));
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

static void op_finish(bw_op *op, int result, char *reason) {
    op->done = 1;
    op->result = result;
    op->reason = reason;
}

static void job_work(void *arg) {
    bw_job *job = arg;
    const bw_state *st = job->st;
    const ol_host *h = st->host;
    int for_write = 0, changed = 0;
    for (const bw_op *op = job->ops; op != NULL; op = op->next)
        if (!op->done && op->kind != BW_GET)
            for_write = 1;
    json_t *doc = NULL;
    char *why = NULL;
    int rc = file_load(st, for_write, &doc, &why);
    for (bw_op *op = job->ops; rc == 0 && op != NULL; op = op->next) {
        if (op->done)
            continue;
        if (op->kind == BW_GET) {
            int r = doc_get(doc, op);
            op_finish(op, r,
                      r != 0 && r != OL_ENOENT
                          ? h->format("cannot read %s: %s", st->path, code_text(r))
                          : NULL);
        } else if (op->kind == BW_DEL) {
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
    for (bw_op *op = job->ops; op != NULL; op = op->next)
        if (!op->done)
            op_finish(op, rc, rc != 0 ? h->format("%s", why) : NULL);
    job->result = rc;
    job->reason = why;
    doc_free(h, doc);
}

static void bw_kick(bw_state *st);

/* Completes ops (each with its own outcome, or result and reason when it has none) and,
 * for a flush, the flush. Takes ownership of ops and reason. */
static void ops_complete(bw_state *st, bw_op *ops, int flush, int result, char *reason) {
    const ol_host *h = st->host;
    while (ops != NULL) {
        bw_op *op = ops;
        ops = op->next;
        if (!op->done)
            op_finish(op, result, h->format("%s", reason != NULL ? reason : "failed"));
        if (op->kind == BW_GET && op->result == 0) {
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
    bw_kick(st);
}

/* Releases the file, frees the job and completes its operations. status: why the work did
 * not run (0 when it did). */
static void job_finish(bw_job *job, int status) {
    bw_state *st = job->st;
    const ol_host *h = st->host;
    bw_op *ops = job->ops;
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
    bw_job *job = arg;
    if (status != 0) {
        job_finish(job, status);
        return;
    }
    job->lock = lock;
    int rc = job->st->host->work_queue(job->st->stage, job_work, job_after, job);
    if (rc != 0)
        job_finish(job, rc);
}

static void job_start(bw_state *st, bw_op *ops, int flush) {
    bw_job *job = calloc(1, sizeof(*job));
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
static void bw_kick(bw_state *st) {
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

static bw_op *op_new(bw_kind kind, ol_item *item) {
    bw_op *op = calloc(1, sizeof(*op));
    if (op != NULL) {
        op->kind = kind;
        op->item = item;
    }
    return op;
}

/* Expands tmpl for the item into a malloc'd *out. On failure finishes op with a reason
 * naming the option. */
static int expand_into(const bw_state *st, bw_op *op, const char *option, const char *tmpl,
                       char **out) {
    const ol_host *h = st->host;
    char *s = NULL, *why = NULL;
    int rc = h->expand(op->item, tmpl, &s, &why);
    if (rc == 0 && (s == NULL || s[0] == '\0'))
        rc = OL_EINVAL;
    if (rc == 0 && (*out = strdup(s)) == NULL)
        rc = OL_ENOMEM;
    if (rc != 0 && why != NULL)
        op_finish(op, rc, h->format("option bitwarden.%s: %s", option, why));
    else if (rc != 0)
        op_finish(op, rc,
                  h->format("option bitwarden.%s '%s': %s", option, tmpl,
                            rc == OL_ENOMEM ? "out of memory" : "expands to an empty text"));
    h->free(s);
    h->free(why);
    return rc;
}

/* Queues op for the next job (gets, deletes, and puts that failed before reaching the
 * file). */
static int queue_now(bw_state *st, bw_op *op) {
    list_push(&st->queued, op);
    bw_kick(st);
    return 0;
}

static int bw_put(ol_stage *stage, ol_item *item, void *state, const ol_secret *secret) {
    bw_state *st = state;
    const ol_host *h = st->host;
    (void)stage;
    bw_op *op = op_new(BW_PUT, item);
    if (op == NULL)
        return OL_ENOMEM;
    if (expand_into(st, op, "name", st->name, &op->name) != 0 ||
        expand_into(st, op, "uri", st->uri, &op->uri) != 0)
        return queue_now(st, op);
    const char *group_opt = st->organization_id != NULL ? "collection" : "folder";
    const char *group = st->organization_id != NULL ? st->collection : st->folder;
    if (group != NULL && expand_into(st, op, group_opt, group, &op->group) != 0)
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

static int bw_read_or_del(bw_state *st, ol_item *item, bw_kind kind) {
    bw_op *op = op_new(kind, item);
    if (op == NULL)
        return OL_ENOMEM;
    expand_into(st, op, "name", st->name, &op->name);
    return queue_now(st, op);
}

static int bw_get(ol_stage *stage, ol_item *item, void *state) {
    (void)stage;
    return bw_read_or_del(state, item, BW_GET);
}

static int bw_del(ol_stage *stage, ol_item *item, void *state) {
    (void)stage;
    return bw_read_or_del(state, item, BW_DEL);
}

static void flush_empty(void *arg, int status) {
    bw_state *st = arg;
    st->host->flush_done(st->stage, status == OL_ECANCELED ? 0 : status, NULL);
}

static int bw_flush(ol_stage *stage, void *state) {
    bw_state *st = state;
    bw_op *ops = list_take(&st->held);
    if (ops == NULL)
        return st->host->timer_start(stage, 0, flush_empty, st, NULL);
    /* Queued gets and deletes ride along: the batch is read once. */
    bw_op *last = ops;
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
        host->log(stage, NULL, OL_LOG_ERROR, "option bitwarden.%s: %s", option,
                  why != NULL ? why : "invalid template");
    host->free(out);
    host->free(why);
    return rc != 0 ? OL_ECONFIG : 0;
}

static int bw_config_check(ol_stage *stage, const bw_state *st) {
    const ol_host *h = st->host;
    if (st->file == NULL || st->file[0] == '\0') {
        h->log(stage, NULL, OL_LOG_ERROR,
               "option bitwarden.file is required: the JSON import file to write, e.g. "
               "--set bitwarden.file=bitwarden.json");
        return OL_ECONFIG;
    }
    if ((st->organization_id != NULL) != (st->collection != NULL)) {
        h->log(stage, NULL, OL_LOG_ERROR,
               "options bitwarden.organization_id and bitwarden.collection go together: an "
               "organization import puts items in a collection");
        return OL_ECONFIG;
    }
    if (st->organization_id != NULL && st->folder != NULL) {
        h->log(stage, NULL, OL_LOG_ERROR,
               "option bitwarden.folder cannot be used with bitwarden.organization_id: "
               "Bitwarden ignores folders in an organization import; use bitwarden.collection");
        return OL_ECONFIG;
    }
    if (check_template(stage, h, "name", st->name) != 0 ||
        check_template(stage, h, "uri", st->uri) != 0 ||
        check_template(stage, h, "folder", st->folder) != 0 ||
        check_template(stage, h, "collection", st->collection) != 0)
        return OL_ECONFIG;
    return 0;
}

static int bw_init(ol_stage *stage, const ol_host *host, void **state) {
    bw_state *st = calloc(1, sizeof(*st));
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
    rc = bw_config_check(stage, st);
    if (rc != 0)
        goto fail;
    st->path = path_absolute(st->file);
    if (st->path == NULL) {
        host->log(stage, NULL, OL_LOG_ERROR, "cannot resolve bitwarden.file '%s'", st->file);
        rc = OL_ECONFIG;
        goto fail;
    }
    *state = st;
    return 0;
fail:
    free(st);
    return rc;
}

static void bw_fini(void *state) {
    bw_state *st = state;
    if (st == NULL)
        return;
    /* The host completes every operation before fini; anything left was never started. */
    bw_op *lists[2] = {list_take(&st->held), list_take(&st->queued)};
    for (size_t i = 0; i < 2; i++)
        while (lists[i] != NULL) {
            bw_op *op = lists[i];
            lists[i] = op->next;
            op_free(st->host, op);
        }
    free(st->path);
    free(st);
}

static const ol_store_ops bw_store = {
    .struct_size = sizeof(ol_store_ops),
    .put = bw_put,
    .get = bw_get,
    .del = bw_del,
};

static const ol_plugin bw_plugin = {
    .abi_major = OL_ABI_MAJOR,
    .abi_minor = OL_ABI_MINOR,
    .struct_size = sizeof(ol_plugin),
    .name = "bitwarden",
    .version = "1.0.0",
    .description = "store access keys as logins in a Bitwarden JSON import file (0600, merged)",
    OL_OPTIONS(bw_options),
    .init = bw_init,
    .fini = bw_fini,
    .prepare = bw_prepare,
    .flush = bw_flush,
    .store = &bw_store,
};

OL_EXPORT const ol_plugin *opsline_plugin(void) {
    return &bw_plugin;
}
