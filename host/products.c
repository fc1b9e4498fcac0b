/* products: reads the --products-file. A line is one of
 *
 *   acme                       a product name (a trailing "# comment" is allowed)
 *   {"product": "shop", "environments": ["production"], "region": "eu-west-1",
 *    "tags": {"team": "web"}, "versioning": true, "policy": "read-only",
 *    "set": {"bucket.kms_key_id": "alias/shop"}, "secrets": ["dotenv", "pass"]}
 *
 * blank lines and lines starting with '#' are skipped; a "# comment" may follow a name or
 * an object. A JSON line is parsed by jansson. Its other keys ("tags", "versioning",
 * "policy", ...) are the shortcuts the pipeline's stages declare in ol_plugin.cli_flags,
 * resolved once the stages are known: the host names no stage. Every error carries
 * PATH:LINE. */
#include "products.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aws/endpoints.h"
#include "error.h"
#include "loader.h"
#include "names.h"

static void line_free(products_line *l) {
    free(l->name);
    for (size_t i = 0; i < l->n_environments; i++)
        free(l->environments[i]);
    free(l->environments);
    free(l->region);
    for (size_t i = 0; i < l->n_secrets; i++)
        free(l->secrets[i]);
    free(l->secrets);
    json_decref(l->options);
    json_decref(l->shortcuts);
}

void products_file_free(products_file *pf) {
    for (size_t i = 0; i < pf->n; i++)
        line_free(&pf->lines[i]);
    free(pf->lines);
    json_decref(pf->seen);
    memset(pf, 0, sizeof(*pf));
}

size_t products_file_line_of(const products_file *pf, const char *product) {
    return (size_t)json_integer_value(json_object_get(pf->seen, product));
}

/* ---- checks with the line's position -------------------------------------------------- */

typedef struct where {
    const char *path;
    size_t lineno;
} where;

static int fail_at(const where *w, char **err, int code, const char *what) {
    return ol__fail(err, code, "%s:%zu: %s", w->path, w->lineno, what);
}

/* A names_check_* verdict, with the position in front. */
static int check_name(const where *w, int (*check)(const char *, char **), const char *name,
                      char **err) {
    char *why = NULL;
    int rc = check(name, &why);
    if (rc == 0)
        return 0;
    rc = fail_at(w, err, rc == OL_ENOMEM ? OL_ENOMEM : OL_EINVAL, why ? why : "invalid name");
    free(why);
    return rc;
}

static int set_option(const where *w, json_t *opts, const char *stage, const char *option,
                      json_t *value, const char *given_as, char **err) {
    json_t *st = json_object_get(opts, stage);
    if (st == NULL && json_object_set_new(opts, stage, st = json_object()) != 0)
        return OL_ENOMEM;
    if (json_object_get(st, option) != NULL) {
        char *msg = ol__format("%s sets %s.%s, which this line already sets; set it once", given_as,
                               stage, option);
        int rc = fail_at(w, err, OL_EINVAL, msg ? msg : "an option is set twice");
        free(msg);
        return rc;
    }
    return json_object_set(st, option, value) == 0 ? 0 : OL_ENOMEM;
}

/* "set": {"stage.option": value, ...} into opts. */
static int line_set(const where *w, const json_t *set, json_t *opts, char **err) {
    const char *key;
    json_t *v;
    if (!json_is_object(set))
        return fail_at(w, err, OL_EINVAL,
                       "\"set\" must be an object such as {\"bucket.versioning\": true}");
    json_object_foreach((json_t *)set, key, v) {
        const char *dot = strchr(key, '.');
        if (dot == NULL || dot == key || dot[1] == '\0') {
            char *msg =
                ol__format("\"set\": '%s' is not STAGE.OPTION, e.g. \"bucket.versioning\"", key);
            int rc = fail_at(w, err, OL_EINVAL, msg ? msg : "bad \"set\" key");
            free(msg);
            return rc;
        }
        char stage[128];
        snprintf(stage, sizeof(stage), "%.*s", (int)(dot - key), key);
        char *given = ol__format("\"set\" key '%s'", key);
        int rc = given ? set_option(w, opts, stage, dot + 1, v, given, err) : OL_ENOMEM;
        free(given);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* A non-empty list of distinct names ("environments", "secrets") into *out. */
static int line_names(const where *w, const char *key, const json_t *list, const char *example,
                      int (*check)(const char *, char **), char ***out, size_t *n, char **err) {
    size_t i;
    json_t *v;
    char *msg = NULL;
    int rc = 0;
    if (!json_is_array(list) || json_array_size(list) == 0)
        msg = ol__format("\"%s\" must be a non-empty list such as %s", key, example);
    else if ((*out = calloc(json_array_size(list), sizeof(char *))) == NULL)
        return OL_ENOMEM;
    json_array_foreach(list, i, v) {
        if (msg != NULL || rc != 0)
            break;
        const char *name = json_string_value(v);
        if (name == NULL || *name == '\0') {
            msg = ol__format("\"%s\" must list names (non-empty strings)", key);
            break;
        }
        if (check != NULL && (rc = check_name(w, check, name, err)) != 0)
            return rc;
        for (size_t k = 0; k < *n && msg == NULL; k++)
            if (strcmp((*out)[k], name) == 0)
                msg = ol__format("\"%s\" lists '%s' twice; list each once", key, name);
        if (msg == NULL && ((*out)[*n] = strdup(name)) == NULL)
            return OL_ENOMEM;
        *n += msg == NULL;
    }
    if (msg == NULL)
        return rc;
    rc = fail_at(w, err, OL_EINVAL, msg);
    free(msg);
    return rc;
}

static int line_environments(const where *w, const json_t *envs, products_line *l, char **err) {
    return line_names(w, "environments", envs, "[\"production\"]", names_check_environment,
                      &l->environments, &l->n_environments, err);
}

/* The product's secret stores, checked against the loaded stores by config_build. An empty
 * list is refused: a key must be stored somewhere. */
static int line_secrets(const where *w, const json_t *list, products_line *l, char **err) {
    return line_names(w, "secrets", list, "[\"dotenv\", \"pass\"]", NULL, &l->secrets,
                      &l->n_secrets, err);
}

static int line_region(const where *w, const json_t *region, products_line *l, char **err) {
    const char *r = json_string_value(region);
    if (r == NULL || !endpoints_region_valid(r)) {
        char *msg = ol__format("\"region\" must be an AWS region name such as \"eu-west-1\"%s%s%s",
                               r ? ", not '" : "", r ? r : "", r ? "'" : "");
        int rc = fail_at(w, err, OL_EINVAL, msg ? msg : "bad \"region\"");
        free(msg);
        return rc;
    }
    return (l->region = strdup(r)) != NULL ? 0 : OL_ENOMEM;
}

/* One key of a JSON line besides "product". */
static int line_key(const where *w, const char *key, json_t *v, products_line *l, char **err) {
    if (strcmp(key, "environments") == 0)
        return line_environments(w, v, l, err);
    if (strcmp(key, "region") == 0)
        return line_region(w, v, l, err);
    if (strcmp(key, "set") == 0)
        return line_set(w, v, l->options, err);
    if (strcmp(key, "secrets") == 0)
        return line_secrets(w, v, l, err);
    /* Hook for per-product credentials (a profile or identity per item): read the value
     * into products_line here, carry it in plan_product, and let items_build give the item
     * its own client settings. Until then it is refused, never ignored. */
    if (strcmp(key, "profile") == 0)
        return fail_at(w, err, OL_EINVAL,
                       "\"profile\": per-product credentials are not supported; use --profile "
                       "for the run");
    /* A stage's shortcut (ol_plugin.cli_flags), checked in products_plan. */
    if (l->shortcuts == NULL && (l->shortcuts = json_object()) == NULL)
        return OL_ENOMEM;
    return json_object_set(l->shortcuts, key, v) == 0 ? 0 : OL_ENOMEM;
}

static int line_from_json(const where *w, const char *text, size_t len, products_line *l,
                          char **err) {
    json_error_t je;
    json_t *o = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DISABLE_EOF_CHECK, &je);
    int rc = 0;
    size_t end = o != NULL ? (size_t)je.position : len;
    while (end < len && (text[end] == ' ' || text[end] == '\t'))
        end++;
    if (o != NULL && json_is_object(o) && end < len && text[end] != '#') {
        json_decref(o);
        return fail_at(w, err, OL_EINVAL,
                       "text after the JSON object; put one object on a line, and start a "
                       "comment with #");
    }
    if (o == NULL || !json_is_object(o)) {
        char *msg = o == NULL ? ol__format("not valid JSON (column %d: %s)", je.column, je.text)
                              : ol__format("a JSON line must be an object {\"product\": ...}");
        rc = fail_at(w, err, OL_EINVAL, msg ? msg : "not valid JSON");
        free(msg);
        json_decref(o);
        return rc;
    }
    const json_t *name = json_object_get(o, "product");
    if (!json_is_string(name))
        rc = fail_at(w, err, OL_EINVAL,
                     "the object has no \"product\" name, e.g. {\"product\": \"acme\"}");
    else if ((l->name = strdup(json_string_value(name))) == NULL ||
             (l->options = json_object()) == NULL)
        rc = OL_ENOMEM;
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        if (rc == 0 && strcmp(key, "product") != 0)
            rc = line_key(w, key, v, l, err);
    }
    json_decref(o);
    return rc;
}

/* A plain line: one name, then perhaps a comment. */
static int line_from_text(const where *w, char *s, products_line *l, char **err) {
    char *hash = strchr(s, '#');
    if (hash)
        *hash = '\0';
    size_t len = strlen(s);
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        s[--len] = '\0';
    if (strchr(s, ',') || strchr(s, ';')) { /* a CSV row; names never hold either */
        char *msg = ol__format(
            "'%s' looks like CSV, which the products file does not read: write one product "
            "name per line, or one JSON object per line for a product's own settings, e.g. "
            "{\"product\": \"shop\", \"environments\": [\"production\"], \"versioning\": true}",
            s);
        int rc = fail_at(w, err, OL_EINVAL, msg ? msg : "a CSV row is not a product name");
        free(msg);
        return rc;
    }
    if (strchr(s, ' ') || strchr(s, '\t')) {
        char *msg = ol__format("'%s' is not one product name; write one per line", s);
        int rc = fail_at(w, err, OL_EINVAL, msg ? msg : "more than one name on a line");
        free(msg);
        return rc;
    }
    return (l->name = strdup(s)) != NULL ? 0 : OL_ENOMEM;
}

/* ---- the file ------------------------------------------------------------------------ */

/* Opens path for reading when it is a regular file of acceptable size. O_NONBLOCK: opening
 * a FIFO must not wait for a writer before it can be refused. */
static int open_regular(const char *path, FILE **out, char **err) {
    struct stat st;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return ol__fail(err, OL_ECONFIG, "--products-file %s: %s", path, strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > PRODUCTS_FILE_MAX_BYTES) {
        int is_dir = S_ISDIR(st.st_mode);
        close(fd);
        if (is_dir)
            return ol__fail(err, OL_ECONFIG,
                            "--products-file %s is a directory; give a file with one product per "
                            "line",
                            path);
        if (S_ISREG(st.st_mode))
            return ol__fail(err, OL_ECONFIG,
                            "--products-file %s is larger than %u MiB; split it into several runs",
                            path, PRODUCTS_FILE_MAX_BYTES >> 20);
        return ol__fail(err, OL_ECONFIG,
                        "--products-file %s is not a regular file (a device, FIFO or socket); "
                        "write the list to a file first",
                        path);
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    if ((*out = fdopen(fd, "r")) == NULL) {
        close(fd);
        return OL_ENOMEM;
    }
    return 0;
}

/* 1 when l's product is on an earlier line (then *err says which). */
static int duplicate(const products_file *pf, const where *w, const products_line *l, int *rc,
                     char **err) {
    size_t first = products_file_line_of(pf, l->name);
    if (first == 0)
        return 0;
    char *msg =
        ol__format("product '%s' is already on line %zu; list each product once", l->name, first);
    *rc = fail_at(w, err, OL_EINVAL, msg ? msg : "duplicate product");
    free(msg);
    return 1;
}

/* One line (without its newline) into pf; blank and comment lines are skipped. */
static int products_line_add(products_file *pf, const where *w, char *s, size_t len, char **err) {
    while (*s == ' ' || *s == '\t')
        s++, len--;
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\r'))
        s[--len] = '\0';
    if (len == 0 || *s == '#')
        return 0;
    products_line l = {.lineno = w->lineno};
    int rc = *s == '{' ? line_from_json(w, s, len, &l, err) : line_from_text(w, s, &l, err);
    if (rc == 0 && l.name != NULL && *l.name == '\0')
        rc = fail_at(w, err, OL_EINVAL, "the product name is empty");
    if (rc == 0)
        rc = check_name(w, names_check_product, l.name, err);
    if (rc == 0 && duplicate(pf, w, &l, &rc, err) == 0) {
        size_t cap = pf->n < pf->cap ? pf->cap : pf->cap * 2 + 16;
        products_line *grown =
            cap == pf->cap ? pf->lines : realloc(pf->lines, cap * sizeof(*grown));
        if (grown != NULL)
            pf->lines = grown, pf->cap = cap;
        if (grown != NULL &&
            json_object_set_new(pf->seen, l.name, json_integer((json_int_t)l.lineno)) == 0) {
            pf->lines[pf->n++] = l;
            return 0;
        }
        rc = OL_ENOMEM;
    }
    line_free(&l);
    return rc;
}

int products_file_read(const char *path, products_file *pf, char **err) {
    FILE *f = NULL;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    where w = {.path = path};
    memset(pf, 0, sizeof(*pf));
    pf->path = path;
    int rc = (pf->seen = json_object()) != NULL ? open_regular(path, &f, err) : OL_ENOMEM;
    while (rc == 0 && (len = getline(&line, &cap, f)) >= 0) {
        char *text = line;
        w.lineno++;
        if (len > 0 && line[len - 1] == '\n')
            line[--len] = '\0';
        if (w.lineno == 1 && len >= 3 && memcmp(line, "\xef\xbb\xbf", 3) == 0)
            text += 3, len -= 3; /* a UTF-8 byte order mark, as spreadsheets write */
        if ((size_t)len > PRODUCTS_LINE_MAX_BYTES)
            rc = fail_at(&w, err, OL_EINVAL, "the line is longer than 65536 bytes");
        else if (memchr(text, '\0', (size_t)len) != NULL)
            rc = fail_at(&w, err, OL_EINVAL,
                         "the line holds a NUL byte; is this a text file? Write one product per "
                         "line");
        else
            rc = products_line_add(pf, &w, text, (size_t)len, err);
    }
    if (rc == 0 && f != NULL && ferror(f))
        rc = ol__fail(err, OL_ECONFIG, "--products-file %s: %s", path, strerror(errno));
    free(line);
    if (f != NULL)
        fclose(f);
    if (rc != 0)
        products_file_free(pf);
    return rc;
}

/* ---- into the plan -------------------------------------------------------------------- */

static size_t stage_index(const plan *p, const char *name) {
    size_t s;
    for (s = 0; s < p->n_stages && strcmp(p->stages[s].plugin->desc->name, name) != 0; s++)
        ;
    return s;
}

/* Line l's options of one stage over the plan's: the stage's own instance for product pp. */
static int stage_override(const where *w, const plan *p, plan_product *pp, const char *stage,
                          const json_t *values, char **err) {
    size_t s = stage_index(p, stage);
    if (s == p->n_stages || p->stages[s].is_store) {
        char *msg =
            s == p->n_stages
                ? ol__format("sets options of stage '%s', which is not in the pipeline", stage)
                : ol__format("stage '%s' is a secret store: its options apply to the whole run "
                             "(--set or the pipeline file), not per product",
                             stage);
        int rc = fail_at(w, err, OL_EINVAL, msg ? msg : "bad stage");
        free(msg);
        return rc;
    }
    if (pp->stages == NULL && (pp->stages = calloc(p->n_stages, sizeof(plan_stage))) == NULL)
        return OL_ENOMEM;
    char *label = ol__format("%s:%zu: stage '%s'", w->path, w->lineno, stage);
    plan_stage *ps = &pp->stages[s];
    *ps = p->stages[s];
    ps->opts = NULL;
    int rc = label ? options_clone(p->stages[s].opts, label, &ps->opts) : OL_ENOMEM;
    free(label);
    return rc == 0 ? options_apply_json(ps->opts, values, err) : rc;
}

/* The plan's stages' shortcuts, ", "-separated into buf, for a message. */
static void shortcut_names(const plan *p, char *buf, size_t len) {
    size_t off = 0;
    buf[0] = '\0';
    for (size_t s = 0; s < p->n_stages && off < len; s++) {
        const ol_cli_flag *f = loader_cli_flags(p->stages[s].plugin->desc);
        for (size_t i = 0; f != NULL && f[i].flag != NULL && off < len; i++)
            if (!p->stages[s].is_store && f[i].option != NULL && strstr(buf, f[i].flag) == NULL)
                off += (size_t)snprintf(buf + off, len - off, ", %s", f[i].flag);
    }
}

/* The line's shortcuts into l->options: each sets its option on every stage of the plan
 * (not a store: their options are the run's) that maps it in cli_flags. */
static int resolve_shortcuts(const where *w, const plan *p, products_line *l, char **err) {
    const char *key;
    json_t *v;
    json_object_foreach(l->shortcuts, key, v) {
        size_t hits = 0;
        for (size_t s = 0; s < p->n_stages; s++) {
            const ol_plugin *d = p->stages[s].plugin->desc;
            const ol_cli_flag *f = loader_cli_flag(d, key);
            if (p->stages[s].is_store || f == NULL || f->option == NULL)
                continue;
            char given[96];
            snprintf(given, sizeof(given), "\"%s\"", key);
            int rc = set_option(w, l->options, d->name, f->option, v, given, err);
            if (rc != 0)
                return rc;
            hits++;
        }
        if (hits > 0)
            continue;
        char names[512];
        shortcut_names(p, names, sizeof(names));
        char *msg = ol__format(
            "unknown key '%s'; allowed: product, environments, region, secrets, set%s", key, names);
        int rc = fail_at(w, err, OL_EINVAL, msg ? msg : "unknown key");
        free(msg);
        return rc;
    }
    return 0;
}

/* The line's "secrets" as the product's stores: each a store stage of p (config_build
 * added those only products name). */
static int product_stores(const where *w, const plan *p, const products_line *l, plan_product *pp,
                          char **err) {
    if ((pp->stores = calloc(p->n_stages ? p->n_stages : 1, 1)) == NULL)
        return OL_ENOMEM;
    for (size_t i = 0; i < l->n_secrets; i++) {
        size_t s = stage_index(p, l->secrets[i]);
        if (s == p->n_stages || !p->stages[s].is_store) {
            char *msg = ol__format("\"secrets\": '%s' is not a secret store of the pipeline",
                                   l->secrets[i]);
            int rc = fail_at(w, err, OL_EINVAL, msg ? msg : "not a secret store");
            free(msg);
            return rc;
        }
        pp->stores[s] = 1;
    }
    return 0;
}

int products_plan(products_file *pf, size_t first, plan *p, char **err) {
    for (size_t k = 0; k < pf->n; k++) {
        products_line *l = &pf->lines[k];
        where w = {pf->path, l->lineno};
        int rc0 = l->shortcuts != NULL ? resolve_shortcuts(&w, p, l, err) : 0;
        if (rc0 != 0)
            return rc0;
        if (l->options != NULL && json_object_size(l->options) == 0) {
            json_decref(l->options);
            l->options = NULL;
        }
        if (l->environments == NULL && l->region == NULL && l->options == NULL &&
            l->secrets == NULL)
            continue;
        if (p->product_settings == NULL &&
            (p->product_settings = calloc(p->n_products, sizeof(plan_product))) == NULL)
            return OL_ENOMEM;
        plan_product *pp = &p->product_settings[first + k];
        int rc1 = l->secrets != NULL ? product_stores(&w, p, l, pp, err) : 0;
        if (rc1 != 0)
            return rc1;
        pp->environments = l->environments;
        pp->n_environments = l->n_environments;
        pp->region = l->region;
        l->environments = NULL, l->n_environments = 0, l->region = NULL;
        const char *stage;
        json_t *values;
        json_object_foreach(l->options, stage, values) {
            int rc = stage_override(&w, p, pp, stage, values, err);
            if (rc != 0)
                return rc;
        }
    }
    return 0;
}
