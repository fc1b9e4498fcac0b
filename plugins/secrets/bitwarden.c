/* bitwarden: the secret store that keeps access keys in a Bitwarden unencrypted JSON import
 * file, for `bw import bitwardenjson FILE` or the web vault's import page. It owns the merge
 * of login items into that file: one login (type 1) per item, named by bitwarden.name, in a
 * folder or an organization collection when asked; every other item, folder, collection and
 * top-level member is kept as the JSON value it was. The batching (puts held until flush,
 * one read-merge-write of the file off the loop under the host lock on its absolute path)
 * is lib/filebatch.c's; this file is the format. A file that is not valid JSON, is an
 * encrypted export or is read-only is refused in prepare, before any request, and is never
 * touched.
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
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <jansson.h>

#include "opsline/opsline.h"

#include "lib/filebatch.h"
#include "lib/storejson.h"

typedef struct bw_state {
    filebatch fb; /* first: the store operations are filebatch's */
    /* Options (host->opt_bind) besides fb.file, fb.name_tmpl and fb.uri_tmpl. */
    const char *folder;
    const char *organization_id;
    const char *collection;
} bw_state;

static const ol_option_def bw_options[] = {
    {"file", OL_OPT_STRING, NULL,
     "the Bitwarden unencrypted JSON import file to write (required); other items are kept",
     OL_BIND(bw_state, fb.file)},
    {"name", OL_OPT_STRING, "{bucket}",
     "item name; placeholders {product}, {environment}, {bucket}, {user}, {region}",
     OL_BIND(bw_state, fb.name_tmpl)},
    {"uri", OL_OPT_STRING, "s3://{bucket}", "the login's URI (template)",
     OL_BIND(bw_state, fb.uri_tmpl)},
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

/* Every string is wiped before the tree is freed: the file holds other logins' passwords. */
static void bw_doc_free(const filebatch *fb, void *doc) {
    storejson_free(fb->host, doc);
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
static void *bw_doc_new(const filebatch *fb) {
    const bw_state *st = (const bw_state *)fb;
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
static int doc_parse(const filebatch *fb, const char *text, size_t len, void **doc, char **why) {
    const ol_host *h = fb->host;
    json_error_t err;
    *doc = NULL;
    if (only_blanks(text, len)) {
        *doc = bw_doc_new(fb);
        return *doc != NULL ? 0 : OL_ENOMEM;
    }
    json_t *d = json_loadb(text, len, JSON_ALLOW_NUL, &err);
    if (d == NULL) {
        *why = h->format("%s is not valid JSON (line %d, column %d: %s): fix it or "
                         "set bitwarden.file to another file; opsline left it untouched",
                         fb->path, err.line, err.column, err.text);
        return OL_EINVAL;
    }
    const char *problem = doc_problem(d);
    if (problem != NULL) {
        *why = h->format("%s is not a Bitwarden JSON import file opsline can merge "
                         "into: %s; opsline left it untouched",
                         fb->path, problem);
        storejson_free(h, d);
        return OL_EINVAL;
    }
    *doc = d;
    return 0;
}

/* doc_parse, then the text (which holds every login's password) wiped and freed. */
static int bw_doc_parse(const filebatch *fb, char *text, size_t len, void **doc, char **why) {
    int rc = doc_parse(fb, text, len, doc, why);
    fb->host->wipe(text, len);
    fb->host->free(text);
    return rc;
}

static int is_login_named(const json_t *it, const char *name) {
    const char *n = storejson_str(it, "name");
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
            storejson_wipe(h, json_array_get(items, i));
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
        const char *n = storejson_str(g, "name"), *id = storejson_str(g, "id");
        const char *gorg = storejson_str(g, "organizationId");
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
    return storejson_str(g, "id");
}

/* Appends a text custom field (type 0) when value is set. */
static int fields_add(json_t *fields, const char *name, const char *value) {
    if (value == NULL)
        return 0;
    json_t *f =
        json_pack("{s:s, s:s, s:i, s:n}", "name", name, "value", value, "type", 0, "linkedId");
    return f != NULL ? json_array_append_new(fields, f) : -1;
}

static json_t *entry_new(const bw_state *st, const fb_op *op, const char *id, const char *folder_id,
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
        storejson_free(st->fb.host, login);
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
static int bw_doc_put(const filebatch *fb, void *doc, const fb_op *op) {
    const bw_state *st = (const bw_state *)fb;
    json_t *items = doc_array(doc, "items");
    const char *org = st->organization_id;
    const char *group_id = NULL;
    if (items == NULL)
        return OL_ENOMEM;
    if (op->group != NULL && (group_id = doc_group_id(doc, op->group, org)) == NULL)
        return OL_ENOMEM;
    size_t at = doc_find(items, op->name);
    char id[37];
    const char *old_id = at != (size_t)-1 ? storejson_str(json_array_get(items, at), "id") : NULL;
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
    doc_drop_after(fb->host, items, at, op->name);
    storejson_wipe(fb->host, json_array_get(items, at));
    return json_array_set_new(items, at, entry) == 0 ? 0 : OL_ENOMEM;
}

/* Removes every login named name. Returns 1 when the document changed. */
static int bw_doc_del(const filebatch *fb, void *doc, const char *name) {
    const ol_host *h = fb->host;
    json_t *items = json_object_get(doc, "items");
    size_t at = doc_find(items, name);
    if (at == (size_t)-1)
        return 0;
    doc_drop_after(h, items, at, name);
    storejson_wipe(h, json_array_get(items, at));
    json_array_remove(items, at);
    return 1;
}

static const char *field_value(const json_t *entry, const char *name) {
    const json_t *fields = json_object_get(entry, "fields");
    for (size_t i = 0; i < json_array_size(fields); i++) {
        const json_t *f = json_array_get(fields, i);
        const char *n = storejson_str(f, "name");
        if (n != NULL && strcmp(n, name) == 0)
            return storejson_str(f, "value");
    }
    return NULL;
}

/* Reads op's entry into op. Returns 0, OL_ENOENT (no login of that name, or one without
 * username and password), or OL_ENOMEM. */
static int bw_doc_get(const filebatch *fb, const void *doc, fb_op *op) {
    (void)fb;
    const json_t *items = json_object_get(doc, "items");
    size_t at = doc_find(items, op->name);
    if (at == (size_t)-1)
        return OL_ENOENT;
    const json_t *entry = json_array_get(items, at);
    const json_t *login = json_object_get(entry, "login");
    const char *key_id = storejson_str(login, "username"),
               *secret = storejson_str(login, "password");
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

static int dump_add(const char *s, size_t n, void *arg) {
    storebuf *b = arg;
    storebuf_add(b, s, n);
    return b->failed ? -1 : 0;
}

static int bw_doc_write(const filebatch *fb, const void *doc, storebuf *out) {
    (void)fb;
    if (json_dump_callback(doc, dump_add, out, JSON_INDENT(2)) != 0)
        return OL_ENOMEM;
    storebuf_add(out, "\n", 1);
    return 0;
}

/* --------------------------------------------------------------------------------------
 * Life cycle
 * ------------------------------------------------------------------------------------ */

/* The organization options; the folder or collection is the group template of a put. */
static int bw_check(filebatch *fb) {
    const bw_state *st = (const bw_state *)fb;
    const ol_host *h = fb->host;
    if ((st->organization_id != NULL) != (st->collection != NULL)) {
        h->log(fb->stage, NULL, OL_LOG_ERROR,
               "options bitwarden.organization_id and bitwarden.collection go together: an "
               "organization import puts items in a collection");
        return OL_ECONFIG;
    }
    if (st->organization_id != NULL && st->folder != NULL) {
        h->log(fb->stage, NULL, OL_LOG_ERROR,
               "option bitwarden.folder cannot be used with bitwarden.organization_id: "
               "Bitwarden ignores folders in an organization import; use bitwarden.collection");
        return OL_ECONFIG;
    }
    fb->group_option = st->organization_id != NULL ? "collection" : "folder";
    fb->group_tmpl = st->organization_id != NULL ? st->collection : st->folder;
    return 0;
}

static const fb_format bw_format = {
    .store = "bitwarden",
    .file_kind = "JSON import file",
    .file_example = "bitwarden.json",
    .name_option = "name",
    .uri_option = "uri",
    .check = bw_check,
    .doc_new = bw_doc_new,
    .doc_parse = bw_doc_parse,
    .doc_get = bw_doc_get,
    .doc_put = bw_doc_put,
    .doc_del = bw_doc_del,
    .doc_write = bw_doc_write,
    .doc_free = bw_doc_free,
};

static int bw_init(ol_stage *stage, const ol_host *host, void **state) {
    return filebatch_new(sizeof(bw_state), stage, host, &bw_format, state);
}

static const ol_plugin bw_plugin = {
    .abi_major = OL_ABI_MAJOR,
    .abi_minor = OL_ABI_MINOR,
    .struct_size = sizeof(ol_plugin),
    .name = "bitwarden",
    .version = "1.0.0",
    .description = "store access keys as logins in a Bitwarden JSON import file (0600, merged)",
    OL_OPTIONS(bw_options),
    .init = bw_init,
    .fini = filebatch_free,
    .prepare = filebatch_prepare,
    .flush = filebatch_flush,
    .store = &filebatch_store,
};

OL_EXPORT const ol_plugin *opsline_plugin(void) {
    return &bw_plugin;
}
