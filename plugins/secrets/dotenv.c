/* dotenv: the secret stage that stores a new access key in a .env file. It owns the merge of
 * four variables (key id, secret, region, bucket) into an existing file: every other line
 * and comment is kept byte for byte, existing assignments (also `export VAR=` forms) are
 * replaced in place, missing ones appended; the file is written 0600 and atomically by the
 * host, then reported with host->secret_stored so the iam stage knows the key is safe.
 * When no key was created in this run the file is left alone. The secret is never logged
 * and every buffer that held it is wiped before it is freed.
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
#include <string.h>

#include "opsline/opsline.h"

#define DOTENV_MAX_FILE (1024 * 1024) /* a .env larger than this is not one we should edit */
#define DOTENV_N_VARS 4

typedef struct dotenv_state {
    const ol_host *host;
    const char *path_template;
    const char *var[DOTENV_N_VARS]; /* key id, secret, region, bucket */
} dotenv_state;

enum { VAR_KEY_ID, VAR_SECRET, VAR_REGION, VAR_BUCKET };

static const ol_option_def dotenv_options[] = {
    {"path", OL_OPT_STRING, "{bucket}.env",
     "file to write, relative to the working directory; placeholders {product}, "
     "{environment}, {bucket}, {user}, {region}",
     0},
    {"var_access_key_id", OL_OPT_STRING, "AWS_ACCESS_KEY_ID", "variable for the key id", 0},
    {"var_secret_access_key", OL_OPT_STRING, "AWS_SECRET_ACCESS_KEY",
     "variable for the secret access key", 0},
    {"var_region", OL_OPT_STRING, "AWS_REGION", "variable for the region", 0},
    {"var_bucket", OL_OPT_STRING, "S3_BUCKET", "variable for the bucket name", 0},
};

static const char *const var_options[DOTENV_N_VARS] = {"var_access_key_id", "var_secret_access_key",
                                                       "var_region", "var_bucket"};

/* --------------------------------------------------------------------------------------
 * Pure helpers (unit-tested)
 * ------------------------------------------------------------------------------------ */

static void wipe(void *p, size_t n) {
    volatile unsigned char *v = p;
    while (n-- > 0)
        *v++ = 0;
}

/* Frees a buffer that may have held a secret. */
static void free_wiped(char *p, size_t n) {
    if (p == NULL)
        return;
    wipe(p, n);
    free(p);
}

/* A growable byte buffer; on allocation failure it stays failed and further appends are
 * no-ops, so callers check once at the end. Grows by copying so no secret is left behind
 * in memory realloc would release unwiped. */
typedef struct buf {
    char *data;
    size_t len;
    size_t cap;
    int failed;
} buf;

static void buf_add(buf *b, const char *s, size_t n) {
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap == 0 ? 256 : b->cap;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *d = malloc(cap);
        if (d == NULL) {
            b->failed = 1;
            return;
        }
        if (b->len > 0)
            memcpy(d, b->data, b->len);
        free_wiped(b->data, b->cap);
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void buf_str(buf *b, const char *s) {
    buf_add(b, s, strlen(s));
}

static void buf_wipe(buf *b) {
    free_wiped(b->data, b->cap);
    *b = (buf){0};
}

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

static int name_is(const char *line, size_t off, size_t n, const char *name) {
    return strlen(name) == n && memcmp(line + off, name, n) == 0;
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

static void buf_value(buf *b, const char *v) {
    if (bare_ok(v)) {
        buf_str(b, v);
        return;
    }
    buf_add(b, "\"", 1);
    for (const char *p = v; *p != '\0'; p++) {
        if (strchr("\\\"$`", *p) != NULL)
            buf_add(b, "\\", 1);
        buf_add(b, p, 1);
    }
    buf_add(b, "\"", 1);
}

/* Merges vars (name/value pairs, values may be secret) into the text of an existing file.
 * Returns a malloc'd NUL-terminated text and its length in *out_len, or NULL when out of
 * memory. The caller wipes and frees it. Line ends are kept; new lines use the file's
 * style (CRLF when its first line ends so). */
static char *dotenv_merge(const char *old, size_t old_len, const ol_kv *vars, size_t n_vars,
                          size_t *out_len) {
    buf b = {0};
    int found[DOTENV_N_VARS] = {0};
    if (n_vars > DOTENV_N_VARS)
        return NULL;
    const char *first_nl = memchr(old, '\n', old_len);
    const char *eol = first_nl != NULL && first_nl > old && first_nl[-1] == '\r' ? "\r\n" : "\n";

    size_t pos = 0;
    while (pos < old_len) {
        const char *nl = memchr(old + pos, '\n', old_len - pos);
        size_t end = nl != NULL ? (size_t)(nl - old) : old_len; /* line without '\n' */
        size_t text_end = end > pos && old[end - 1] == '\r' ? end - 1 : end;
        size_t next = nl != NULL ? end + 1 : old_len;
        const char *line = old + pos;
        size_t noff, nlen, voff;
        size_t v = n_vars;
        if (parse_assignment(line, text_end - pos, &noff, &nlen, &voff))
            for (v = 0; v < n_vars && !name_is(line, noff, nlen, vars[v].name); v++)
                ;
        if (v < n_vars) {
            /* Keep indentation, `export` and the spelling up to '='; replace the value. */
            buf_add(&b, line, voff);
            buf_value(&b, vars[v].value);
            buf_add(&b, old + text_end, next - text_end); /* the line's own end, if any */
            found[v] = 1;
        } else {
            buf_add(&b, line, next - pos);
        }
        pos = next;
    }
    if (old_len > 0 && old[old_len - 1] != '\n')
        buf_str(&b, eol);
    for (size_t v = 0; v < n_vars; v++) {
        if (found[v])
            continue;
        buf_str(&b, vars[v].name);
        buf_add(&b, "=", 1);
        buf_value(&b, vars[v].value);
        buf_str(&b, eol);
    }
    if (b.failed || b.data == NULL) {
        buf_wipe(&b);
        return NULL;
    }
    *out_len = b.len;
    return b.data; /* capacity beyond len holds nothing: every growth wiped the old block */
}

/* The value of the last assignment of name (as a dotenv reader would take it: quotes
 * removed, a bare value ends at blanks or a comment), malloc'd, or NULL. Enough to compare
 * key ids. */
static char *dotenv_lookup(const char *text, size_t len, const char *name) {
    char *found = NULL;
    size_t pos = 0;
    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl != NULL ? (size_t)(nl - text) : len;
        const char *line = text + pos;
        size_t llen = end - pos, noff, nlen, voff;
        if (parse_assignment(line, llen, &noff, &nlen, &voff) && name_is(line, noff, nlen, name)) {
            size_t s = voff, e;
            while (s < llen && is_blank(line[s]))
                s++;
            if (s < llen && (line[s] == '"' || line[s] == '\'')) {
                char q = line[s++];
                for (e = s; e < llen && line[e] != q; e++)
                    ;
            } else {
                for (e = s; e < llen && !is_blank(line[e]) && line[e] != '#' && line[e] != '\r';
                     e++)
                    ;
            }
            char *v = strndup(line + s, e - s);
            if (v != NULL) {
                free(found);
                found = v;
            }
        }
        pos = nl != NULL ? end + 1 : len;
    }
    return found;
}

/* Expands {product}, {environment}, {bucket}, {user}, {region}. values[i] may be NULL for a
 * placeholder with no value yet (error). Returns a malloc'd path, or NULL with *why set to
 * a static text naming the problem (*bad to the placeholder, if any). */
static const char *const placeholders[] = {"product", "environment", "bucket", "user", "region"};
#define N_PLACEHOLDERS (sizeof(placeholders) / sizeof(placeholders[0]))

static char *dotenv_expand(const char *tmpl, const char *const values[N_PLACEHOLDERS],
                           const char **why, char *bad, size_t bad_size) {
    buf b = {0};
    *why = NULL;
    if (bad_size > 0)
        bad[0] = '\0';
    for (const char *p = tmpl; *p != '\0';) {
        if (*p != '{') {
            if (*p == '}') {
                *why = "unbalanced '}'";
                goto fail;
            }
            buf_add(&b, p++, 1);
            continue;
        }
        const char *close = strchr(p, '}');
        if (close == NULL) {
            *why = "unclosed '{'";
            goto fail;
        }
        size_t n = (size_t)(close - p - 1), i;
        snprintf(bad, bad_size, "%.*s", (int)(n < 64 ? n : 64), p + 1);
        for (i = 0; i < N_PLACEHOLDERS; i++)
            if (strlen(placeholders[i]) == n && memcmp(placeholders[i], p + 1, n) == 0)
                break;
        if (i == N_PLACEHOLDERS) {
            *why = "unknown placeholder (use {product}, {environment}, {bucket}, {user}, "
                   "{region})";
            goto fail;
        }
        if (values[i] == NULL || values[i][0] == '\0') {
            *why = "placeholder has no value for this item";
            goto fail;
        }
        buf_str(&b, values[i]);
        p = close + 1;
    }
    if (b.len == 0) {
        *why = "empty path";
        goto fail;
    }
    if (b.failed) {
        *why = "out of memory";
        goto fail;
    }
    return b.data;
fail:
    buf_wipe(&b);
    return NULL;
}

/* Reads a whole file. Returns 0 (*out malloc'd, NUL-terminated), OL_ENOENT when it does not
 * exist, OL_EIO or OL_ERANGE (too large). */
static int read_file(const char *path, char **out, size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return errno == ENOENT ? OL_ENOENT : OL_EIO;
    buf b = {0};
    char chunk[4096];
    size_t n;
    int rc = 0;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        buf_add(&b, chunk, n);
        if (b.len > DOTENV_MAX_FILE) {
            rc = OL_ERANGE;
            break;
        }
    }
    wipe(chunk, sizeof(chunk));
    if (rc == 0 && ferror(f))
        rc = OL_EIO;
    if (rc == 0 && b.failed)
        rc = OL_ENOMEM;
    fclose(f);
    if (rc != 0) {
        buf_wipe(&b);
        return rc;
    }
    if (b.data == NULL) {
        b.data = calloc(1, 1);
        if (b.data == NULL)
            return OL_ENOMEM;
    }
    *out = b.data;
    *out_len = b.len;
    return 0;
}

/* --------------------------------------------------------------------------------------
 * Plugin entry points
 * ------------------------------------------------------------------------------------ */

static char *item_path(const dotenv_state *st, const ol_item *item, char *why_out,
                       size_t why_size) {
    const ol_host *h = st->host;
    const char *values[N_PLACEHOLDERS] = {h->item_product(item), h->item_environment(item),
                                          h->item_get(item, OL_KEY_BUCKET_NAME),
                                          h->item_get(item, OL_KEY_IAM_USER), h->item_region(item)};
    const char *why = NULL;
    char bad[80];
    char *path = dotenv_expand(st->path_template, values, &why, bad, sizeof(bad));
    if (path == NULL)
        snprintf(why_out, why_size, "option path '%s': %s%s%s%s", st->path_template, why,
                 bad[0] ? " {" : "", bad, bad[0] ? "}" : "");
    return path;
}

static int dotenv_init(ol_stage *stage, const ol_host *host, void **state) {
    dotenv_state *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return OL_ENOMEM;
    st->host = host;
    st->path_template = host->opt_string(stage, "path");
    if (st->path_template == NULL)
        st->path_template = "{bucket}.env";
    for (size_t i = 0; i < DOTENV_N_VARS; i++) {
        st->var[i] = host->opt_string(stage, var_options[i]);
        if (!valid_var_name(st->var[i])) {
            host->log(stage, NULL, OL_LOG_ERROR,
                      "option %s '%s' is not a variable name: use letters, digits and '_', "
                      "not starting with a digit",
                      var_options[i], st->var[i] ? st->var[i] : "");
            goto fail;
        }
        for (size_t k = 0; k < i; k++)
            if (strcmp(st->var[k], st->var[i]) == 0) {
                host->log(stage, NULL, OL_LOG_ERROR, "options %s and %s both name %s",
                          var_options[k], var_options[i], st->var[i]);
                goto fail;
            }
    }
    /* Check the template's syntax now, with stand-in values, so a typo stops the run before
     * any request. */
    const char *dummy[N_PLACEHOLDERS] = {"p", "e", "b", "u", "r"};
    const char *why = NULL;
    char bad[80];
    char *p = dotenv_expand(st->path_template, dummy, &why, bad, sizeof(bad));
    if (p == NULL) {
        host->log(stage, NULL, OL_LOG_ERROR, "option path '%s': %s%s%s%s", st->path_template, why,
                  bad[0] ? " {" : "", bad, bad[0] ? "}" : "");
        goto fail;
    }
    free(p);
    *state = st;
    return 0;
fail:
    free(st);
    return OL_ECONFIG;
}

/* No new key this run: the secret, if any, was stored earlier; the file is not touched. */
static int apply_without_secret(ol_stage *stage, ol_item *item, const dotenv_state *st,
                                const char *path) {
    const ol_host *h = st->host;
    const char *key_id = h->item_get(item, OL_KEY_ACCESS_KEY_ID);
    char *text = NULL;
    size_t len = 0;
    char *have = NULL;
    if (read_file(path, &text, &len) == 0)
        have = dotenv_lookup(text, len, st->var[VAR_KEY_ID]);
    free_wiped(text, len);
    if (key_id != NULL && have != NULL && strcmp(have, key_id) == 0) {
        h->done(stage, item, OL_OUTCOME_UNCHANGED, NULL);
    } else {
        char reason[512];
        snprintf(reason, sizeof(reason), "no new key; %s kept", path);
        if (key_id != NULL)
            h->log(stage, item, OL_LOG_INFO,
                   "%s does not hold access key %s; its secret was stored elsewhere by an "
                   "earlier run",
                   path, key_id);
        h->done(stage, item, OL_OUTCOME_UNCHANGED, reason);
    }
    free(have);
    return 0;
}

static int dotenv_apply(ol_stage *stage, ol_item *item, void *state) {
    const dotenv_state *st = state;
    const ol_host *h = st->host;
    char why[512];
    char *path = item_path(st, item, why, sizeof(why));
    if (path == NULL) {
        h->done(stage, item, OL_OUTCOME_FAILED, why);
        return 0;
    }
    const char *secret = h->item_get(item, OL_KEY_SECRET_ACCESS_KEY);
    if (secret == NULL) {
        int rc = apply_without_secret(stage, item, st, path);
        free(path);
        return rc;
    }

    const char *key_id = h->item_get(item, OL_KEY_ACCESS_KEY_ID);
    const char *bucket = h->item_get(item, OL_KEY_BUCKET_NAME);
    const char *region = h->item_region(item);
    char *old = NULL, *text = NULL;
    size_t old_len = 0, len = 0;
    int rc = read_file(path, &old, &old_len);
    int existed = rc == 0;
    if (rc != 0 && rc != OL_ENOENT) {
        snprintf(why, sizeof(why), "cannot read %s: %s", path,
                 rc == OL_ERANGE ? "larger than 1 MiB" : h->strerror(rc));
        goto fail;
    }
    if (key_id == NULL) {
        snprintf(why, sizeof(why), "the bag has a secret but no %s", OL_KEY_ACCESS_KEY_ID);
        goto fail;
    }
    ol_kv vars[DOTENV_N_VARS] = {{st->var[VAR_KEY_ID], key_id},
                                 {st->var[VAR_SECRET], secret},
                                 {st->var[VAR_REGION], region ? region : ""},
                                 {st->var[VAR_BUCKET], bucket ? bucket : ""}};
    /* Without a bucket stage value there is nothing true to write for it. */
    size_t n_vars = bucket != NULL ? 4 : 3;
    text = dotenv_merge(existed ? old : "", old_len, vars, n_vars, &len);
    if (text == NULL) {
        snprintf(why, sizeof(why), "out of memory merging %s", path);
        goto fail;
    }
    rc = h->write_private_file(path, text, len);
    if (rc != 0) {
        snprintf(why, sizeof(why), "cannot write %s: %s", path, h->strerror(rc));
        goto fail;
    }
    rc = h->secret_stored(item, stage, path);
    if (rc != 0) {
        snprintf(why, sizeof(why), "wrote %s but could not journal it: %s", path, h->strerror(rc));
        goto fail;
    }
    h->log(stage, item, OL_LOG_INFO, "stored access key %s in %s", key_id, path);
    free_wiped(text, len);
    free_wiped(old, old_len);
    h->done(stage, item, existed ? OL_OUTCOME_UPDATED : OL_OUTCOME_CREATED, NULL);
    free(path);
    return 0;
fail:
    free_wiped(text, len);
    free_wiped(old, old_len);
    h->done(stage, item, OL_OUTCOME_FAILED, why);
    free(path);
    return 0;
}

static void dotenv_fini(void *state) {
    free(state);
}

static const char *const dotenv_needs[] = {"iam", "bucket", NULL};

static const ol_plugin dotenv_plugin = {
    .abi_major = OL_ABI_MAJOR,
    .abi_minor = OL_ABI_MINOR,
    .struct_size = sizeof(ol_plugin),
    .name = "dotenv",
    .version = "1.0.0",
    .description = "store a new access key in a .env file (0600, other lines kept)",
    .needs = dotenv_needs,
    .options = dotenv_options,
    .n_options = sizeof(dotenv_options) / sizeof(dotenv_options[0]),
    .init = dotenv_init,
    .apply = dotenv_apply,
    .fini = dotenv_fini,
};

OL_EXPORT const ol_plugin *opsline_plugin(void) {
    return &dotenv_plugin;
}
