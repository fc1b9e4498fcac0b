/* options: the values of one stage instance's options. Each declared option starts from its
 * textual default, then takes values from the pipeline file (JSON, via jansson) and from
 * the command line (text). Types are checked on the way in, so a stage reads typed values
 * without any checking of its own. Values of sensitive options never appear in messages. */
#include "options.h"
#include "error.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SUGGEST_MAX_DISTANCE 2

typedef struct value {
    const ol_option_def *def;
    int has_value;
    int is_set;   /* set by the user, not only by default */
    char *str;    /* OL_OPT_STRING */
    int b;        /* OL_OPT_BOOL */
    long long i;  /* OL_OPT_INT */
    char **list;  /* OL_OPT_LIST */
    ol_kv *map;   /* OL_OPT_OBJECT; names and values are owned */
    size_t count; /* entries of list or map */
} value;

struct options {
    const ol_plugin *plugin;
    char *label;
    value *values; /* one per declared option, in declaration order */
    size_t n;
};

static const char *type_name(ol_option_type t) {
    switch (t) {
    case OL_OPT_STRING:
        return "string";
    case OL_OPT_BOOL:
        return "bool";
    case OL_OPT_INT:
        return "int";
    case OL_OPT_LIST:
        return "list";
    case OL_OPT_OBJECT:
        return "object";
    }
    return "?";
}

/* What a value of each type looks like, for messages. */
static const char *type_expect(ol_option_type t, int json) {
    switch (t) {
    case OL_OPT_STRING:
        return "a string";
    case OL_OPT_BOOL:
        return json ? "a boolean (true or false)" : "true, false, yes, no, on, off, 1 or 0";
    case OL_OPT_INT:
        return json ? "an integer" : "a decimal integer";
    case OL_OPT_LIST:
        return json ? "an array of strings" : "a comma-separated list (a,b,c)";
    case OL_OPT_OBJECT:
        return json ? "an object of strings" : "comma-separated key=value pairs (k=v,k2=v2)";
    }
    return "?";
}

static const char *json_type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "?";
}

static void clear_value(value *v) {
    free(v->str);
    v->str = NULL;
    for (size_t k = 0; v->list != NULL && k < v->count; k++)
        free(v->list[k]);
    free(v->list);
    v->list = NULL;
    for (size_t k = 0; v->map != NULL && k < v->count; k++) {
        free((char *)v->map[k].name);
        free((char *)v->map[k].value);
    }
    free(v->map);
    v->map = NULL;
    v->count = 0;
    v->b = 0;
    v->i = 0;
    v->has_value = 0;
}

void options_free(options *o) {
    if (o == NULL)
        return;
    for (size_t k = 0; k < o->n; k++)
        clear_value(&o->values[k]);
    free(o->values);
    free(o->label);
    free(o);
}

/* ---- text parsing ------------------------------------------------------------------- */

static int parse_bool(const char *text, int *out) {
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t k = 0; k < sizeof(yes) / sizeof(yes[0]); k++) {
        if (strcasecmp(text, yes[k]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(text, no[k]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return OL_EINVAL;
}

static int parse_int(const char *text, long long *out) {
    char *end = NULL;
    errno = 0;
    long long n = strtoll(text, &end, 10);
    if (end == text || *end != '\0' || isspace((unsigned char)text[0]))
        return OL_EINVAL;
    if (errno == ERANGE)
        return OL_ERANGE;
    *out = n;
    return 0;
}

/* Copy [s, s+len) without surrounding blanks. */
static char *dup_trimmed(const char *s, size_t len) {
    while (len > 0 && isspace((unsigned char)*s)) {
        s++;
        len--;
    }
    while (len > 0 && isspace((unsigned char)s[len - 1]))
        len--;
    return strndup(s, len);
}

/* Split a comma-separated text; "" is an empty list, an empty item is an error. */
static int split_commas(const char *text, char ***out, size_t *count) {
    *out = NULL;
    *count = 0;
    if (text[0] == '\0')
        return 0;
    size_t n = 1;
    for (const char *c = text; *c; c++)
        n += *c == ',';
    char **items = calloc(n, sizeof(*items));
    if (items == NULL)
        return OL_ENOMEM;
    const char *start = text;
    int rc = 0;
    for (size_t k = 0; k < n; k++) {
        const char *end = strchr(start, ',');
        size_t len = end != NULL ? (size_t)(end - start) : strlen(start);
        items[k] = dup_trimmed(start, len);
        if (items[k] == NULL) {
            rc = OL_ENOMEM;
            goto fail;
        }
        if (items[k][0] == '\0') {
            rc = OL_EINVAL;
            goto fail;
        }
        start = end != NULL ? end + 1 : start + len;
    }
    *out = items;
    *count = n;
    return 0;
fail:
    for (size_t k = 0; k < n; k++)
        free(items[k]);
    free(items);
    return rc;
}

/* k=v,k2=v2: keys non-empty and unique; a value may be empty and may contain '='. */
static int text_to_map(value *v, const char *text) {
    char **pairs = NULL;
    size_t n = 0;
    int rc = split_commas(text, &pairs, &n);
    if (rc < 0)
        return rc;
    if (n > 0) {
        v->map = calloc(n, sizeof(*v->map));
        if (v->map == NULL) {
            rc = OL_ENOMEM;
            goto out;
        }
    }
    for (size_t k = 0; k < n; k++) {
        char *eq = strchr(pairs[k], '=');
        if (eq == NULL || eq == pairs[k]) {
            rc = OL_EINVAL;
            goto out;
        }
        char *key = dup_trimmed(pairs[k], (size_t)(eq - pairs[k]));
        char *val = dup_trimmed(eq + 1, strlen(eq + 1));
        v->map[k].name = key;
        v->map[k].value = val;
        v->count = k + 1;
        if (key == NULL || val == NULL) {
            rc = OL_ENOMEM;
            goto out;
        }
        for (size_t j = 0; j < k; j++)
            if (strcmp(v->map[j].name, key) == 0) {
                rc = OL_EINVAL;
                goto out;
            }
    }
out:
    for (size_t k = 0; k < n; k++)
        free(pairs[k]);
    free(pairs);
    return rc;
}

/* Fills v from text; on error v may be half filled (the caller clears it). */
static int text_to_value(value *v, const char *text) {
    switch (v->def->type) {
    case OL_OPT_STRING:
        v->str = strdup(text);
        return v->str != NULL ? 0 : OL_ENOMEM;
    case OL_OPT_BOOL:
        return parse_bool(text, &v->b);
    case OL_OPT_INT:
        return parse_int(text, &v->i);
    case OL_OPT_LIST:
        return split_commas(text, &v->list, &v->count);
    case OL_OPT_OBJECT:
        return text_to_map(v, text);
    }
    return OL_EINVAL;
}

/* ---- JSON --------------------------------------------------------------------------- */

static int json_to_list(value *v, const json_t *j) {
    size_t n = json_array_size(j);
    if (n == 0)
        return 0;
    v->list = calloc(n, sizeof(*v->list));
    if (v->list == NULL)
        return OL_ENOMEM;
    for (size_t k = 0; k < n; k++) {
        const json_t *e = json_array_get(j, k);
        if (!json_is_string(e))
            return OL_EINVAL;
        v->list[k] = strdup(json_string_value(e));
        v->count = k + 1;
        if (v->list[k] == NULL)
            return OL_ENOMEM;
    }
    return 0;
}

static int json_to_map(value *v, const json_t *j) {
    size_t n = json_object_size(j);
    if (n == 0)
        return 0;
    v->map = calloc(n, sizeof(*v->map));
    if (v->map == NULL)
        return OL_ENOMEM;
    const char *key;
    const json_t *e;
    size_t k = 0;
    /* jansson's iteration macro takes a non-const object but does not modify it. */
    json_object_foreach((json_t *)j, key, e) {
        if (!json_is_string(e))
            return OL_EINVAL;
        v->map[k].name = strdup(key);
        v->map[k].value = strdup(json_string_value(e));
        v->count = ++k;
        if (v->map[k - 1].name == NULL || v->map[k - 1].value == NULL)
            return OL_ENOMEM;
    }
    return 0;
}

static int json_to_value(value *v, const json_t *j) {
    switch (v->def->type) {
    case OL_OPT_STRING:
        if (!json_is_string(j))
            return OL_EINVAL;
        v->str = strdup(json_string_value(j));
        return v->str != NULL ? 0 : OL_ENOMEM;
    case OL_OPT_BOOL:
        if (!json_is_boolean(j))
            return OL_EINVAL;
        v->b = json_is_true(j);
        return 0;
    case OL_OPT_INT:
        if (!json_is_integer(j))
            return OL_EINVAL;
        v->i = json_integer_value(j);
        return 0;
    case OL_OPT_LIST:
        return json_is_array(j) ? json_to_list(v, j) : OL_EINVAL;
    case OL_OPT_OBJECT:
        return json_is_object(j) ? json_to_map(v, j) : OL_EINVAL;
    }
    return OL_EINVAL;
}

/* ---- lookup and suggestions --------------------------------------------------------- */

static value *find_value(const options *o, const char *name) {
    for (size_t k = 0; k < o->n; k++)
        if (strcmp(o->values[k].def->name, name) == 0)
            return &o->values[k];
    return NULL;
}

/* The names of p's options, ", "-separated (malloc'd), or NULL on allocation failure. */
static char *option_names(const ol_plugin *p) {
    size_t names_len = 1;
    for (size_t k = 0; k < p->n_options; k++)
        names_len += strlen(options_def(p, k)->name) + 2;
    char *names = malloc(names_len);
    if (names == NULL)
        return NULL;
    names[0] = '\0';
    for (size_t k = 0; k < p->n_options; k++) {
        if (k > 0)
            strcat(names, ", ");
        strcat(names, options_def(p, k)->name);
    }
    return names;
}

/* OL_EINVAL with a message naming the option, the closest declared one and all of them. */
static int fail_unknown_option(const options *o, const char *name, char **err) {
    const ol_plugin *p = o->plugin;
    if (p->n_options == 0)
        return ol__fail(err, OL_EINVAL, "%s: unknown option '%s'; this stage takes no options",
                        o->label, name);
    const char **declared = calloc(p->n_options, sizeof(*declared));
    if (declared == NULL)
        return OL_ENOMEM;
    for (size_t k = 0; k < p->n_options; k++)
        declared[k] = options_def(p, k)->name;
    const char *best = ol__suggest(name, declared, p->n_options, SUGGEST_MAX_DISTANCE);
    free(declared);
    char *names = option_names(p);
    if (names == NULL)
        return ol__fail(err, OL_EINVAL, "%s: unknown option '%s'", o->label, name);
    if (best != NULL)
        ol__fail(err, OL_EINVAL, "%s: unknown option '%s'; did you mean '%s'? Valid options: %s",
                 o->label, name, best, names);
    else
        ol__fail(err, OL_EINVAL, "%s: unknown option '%s'; valid options: %s", o->label, name,
                 names);
    free(names);
    return OL_EINVAL;
}

/* OL_EINVAL with the message for a value that did not parse (rc: the parser's code).
 * Sensitive values are never quoted. */
static int fail_bad_value(const options *o, const value *v, const char *text, const json_t *j,
                          int rc, char **err) {
    const ol_option_def *d = v->def;
    int json = j != NULL;
    if (rc == OL_ERANGE)
        return ol__fail(err, OL_EINVAL, "%s: option '%s' is out of range for a 64-bit integer",
                        o->label, d->name);
    if (json && ((d->type == OL_OPT_LIST && json_is_array(j)) ||
                 (d->type == OL_OPT_OBJECT && json_is_object(j))))
        return ol__fail(err, rc, "%s: option '%s' must be %s; one of its values is not a string",
                        o->label, d->name, type_expect(d->type, 1));
    if (json)
        return ol__fail(err, rc, "%s: option '%s' must be %s, got %s", o->label, d->name,
                        type_expect(d->type, 1), json_type_name(j));
    if ((d->flags & OL_OPT_SENSITIVE))
        return ol__fail(err, rc, "%s: option '%s' must be %s (value not shown: sensitive)",
                        o->label, d->name, type_expect(d->type, 0));
    return ol__fail(err, rc, "%s: option '%s' must be %s, got '%s'", o->label, d->name,
                    type_expect(d->type, 0), text);
}

/* Parse into a scratch value and swap it in only on success, so a failed set leaves the
 * previous value (or default) intact. */
static int assign(options *o, value *v, const char *text, const json_t *j, char **err) {
    value tmp = {.def = v->def};
    int rc = j != NULL ? json_to_value(&tmp, j) : text_to_value(&tmp, text);
    if (rc < 0) {
        clear_value(&tmp);
        if (rc == OL_ENOMEM)
            return rc;
        return fail_bad_value(o, v, text, j, rc, err);
    }
    clear_value(v);
    *v = tmp;
    v->has_value = 1;
    return 0;
}

static int apply_defaults(options *o, char **err) {
    for (size_t k = 0; k < o->n; k++) {
        value *v = &o->values[k];
        if (v->def->default_value == NULL)
            continue;
        char *why = NULL;
        int rc = assign(o, v, v->def->default_value, NULL, &why);
        if (rc == OL_ENOMEM)
            return rc;
        if (rc < 0) {
            free(why);
            return ol__fail(err, OL_EINVAL,
                            "%s: option '%s' has a malformed default (expected %s); "
                            "this is a bug in the plugin",
                            o->label, v->def->name, type_expect(v->def->type, 0));
        }
    }
    return 0;
}

static int apply_json(options *o, const json_t *obj, char **err) {
    if (!json_is_object(obj))
        return ol__fail(err, OL_EINVAL, "%s: options must be a JSON object, got %s", o->label,
                        json_type_name(obj));
    const char *key;
    const json_t *j;
    json_object_foreach((json_t *)obj, key, j) {
        value *v = find_value(o, key);
        if (v == NULL)
            return fail_unknown_option(o, key, err);
        int rc = assign(o, v, NULL, j, err);
        if (rc < 0)
            return rc;
        v->is_set = 1;
    }
    return 0;
}

int options_parse(const ol_plugin *p, const json_t *obj, const char *stage_label, options **out,
                  char **err) {
    *out = NULL;
    options *o = calloc(1, sizeof(*o));
    if (o == NULL)
        return OL_ENOMEM;
    int rc = OL_ENOMEM;
    o->plugin = p;
    o->label = strdup(stage_label != NULL ? stage_label : p->name);
    if (o->label == NULL)
        goto fail;
    o->n = p->n_options;
    if (o->n > 0) {
        o->values = calloc(o->n, sizeof(*o->values));
        if (o->values == NULL)
            goto fail;
    }
    for (size_t k = 0; k < o->n; k++)
        o->values[k].def = options_def(p, k);
    rc = apply_defaults(o, err);
    if (rc == 0 && obj != NULL)
        rc = apply_json(o, obj, err);
    if (rc < 0)
        goto fail;
    *out = o;
    return 0;
fail:
    options_free(o);
    return rc;
}

int options_set_text(options *o, const char *name, const char *text, char **err) {
    value *v = find_value(o, name);
    if (v == NULL)
        return fail_unknown_option(o, name, err);
    int rc = assign(o, v, text, NULL, err);
    if (rc == 0)
        v->is_set = 1;
    return rc;
}

int options_apply_json(options *o, const json_t *obj, char **err) {
    return apply_json(o, obj, err);
}

static char *dup_or_null(const char *s, int *oom) {
    char *d = s != NULL ? strdup(s) : NULL;
    *oom |= s != NULL && d == NULL;
    return d;
}

/* A deep copy of v's parsed value into *d (d->def already set). */
static int copy_value(value *d, const value *v) {
    int oom = 0;
    *d = *v;
    d->str = dup_or_null(v->str, &oom);
    d->list = v->list ? calloc(v->count ? v->count : 1, sizeof(char *)) : NULL;
    d->map = v->map ? calloc(v->count ? v->count : 1, sizeof(ol_kv)) : NULL;
    oom |= (v->list && !d->list) || (v->map && !d->map);
    for (size_t k = 0; !oom && k < v->count; k++) {
        if (d->list)
            d->list[k] = dup_or_null(v->list[k], &oom);
        if (d->map) {
            d->map[k].name = dup_or_null(v->map[k].name, &oom);
            d->map[k].value = dup_or_null(v->map[k].value, &oom);
        }
    }
    return oom ? OL_ENOMEM : 0;
}

int options_clone(const options *o, const char *label, options **out) {
    options *c = calloc(1, sizeof(*c));
    *out = NULL;
    if (c == NULL)
        return OL_ENOMEM;
    c->plugin = o->plugin;
    c->n = o->n;
    c->label = strdup(label != NULL ? label : o->label);
    c->values = calloc(o->n ? o->n : 1, sizeof(*c->values));
    int rc = c->label && c->values ? 0 : OL_ENOMEM;
    for (size_t k = 0; rc == 0 && k < o->n; k++)
        rc = copy_value(&c->values[k], &o->values[k]);
    if (rc != 0) {
        options_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

/* ---- getters ------------------------------------------------------------------------ */

static const value *typed(const options *o, const char *name, ol_option_type t) {
    const value *v = find_value(o, name);
    return v != NULL && v->def->type == t && v->has_value ? v : NULL;
}

const char *options_string(const options *o, const char *name) {
    const value *v = typed(o, name, OL_OPT_STRING);
    return v != NULL ? v->str : NULL;
}

int options_bool(const options *o, const char *name) {
    const value *v = typed(o, name, OL_OPT_BOOL);
    return v != NULL ? v->b : 0;
}

long long options_int(const options *o, const char *name) {
    const value *v = typed(o, name, OL_OPT_INT);
    return v != NULL ? v->i : 0;
}

size_t options_list(const options *o, const char *name, const char *const **out) {
    const value *v = typed(o, name, OL_OPT_LIST);
    *out = v != NULL ? (const char *const *)v->list : NULL;
    return v != NULL ? v->count : 0;
}

size_t options_map(const options *o, const char *name, const ol_kv **out) {
    const value *v = typed(o, name, OL_OPT_OBJECT);
    *out = v != NULL ? v->map : NULL;
    return v != NULL ? v->count : 0;
}

const ol_option_def *options_def(const ol_plugin *p, size_t i) {
    return (const ol_option_def *)(const void *)((const char *)p->options + i * p->option_size);
}

int options_bind(const options *o, void *base) {
    for (size_t k = 0; k < o->n; k++) {
        const value *v = &o->values[k];
        const ol_option_def *d = v->def;
        if (!(d->flags & OL_OPT_BIND))
            continue;
        char *field = (char *)base + d->offset;
        switch (d->type) {
        case OL_OPT_STRING: {
            const char *s = v->has_value ? v->str : NULL;
            memcpy(field, &s, sizeof(s));
            break;
        }
        case OL_OPT_BOOL: {
            int b = v->has_value ? v->b : 0;
            memcpy(field, &b, sizeof(b));
            break;
        }
        case OL_OPT_INT: {
            long long i = v->has_value ? v->i : 0;
            memcpy(field, &i, sizeof(i));
            break;
        }
        case OL_OPT_LIST: {
            ol_list l = {v->has_value ? (const char *const *)v->list : NULL,
                         v->has_value ? v->count : 0};
            memcpy(field, &l, sizeof(l));
            break;
        }
        case OL_OPT_OBJECT: {
            ol_map m = {v->has_value ? v->map : NULL, v->has_value ? v->count : 0};
            memcpy(field, &m, sizeof(m));
            break;
        }
        default:
            return OL_EINVAL;
        }
    }
    return 0;
}

int options_is_set(const options *o, const char *name) {
    const value *v = find_value(o, name);
    return v != NULL && v->is_set;
}

/* ---- description -------------------------------------------------------------------- */

/* The default column: strings quoted, sensitive ones masked. malloc'd, NULL if no memory. */
static char *default_text(const ol_option_def *d) {
    if (d->default_value == NULL)
        return strdup("(no default)");
    if ((d->flags & OL_OPT_SENSITIVE))
        return strdup("default (hidden)");
    if (d->type == OL_OPT_BOOL || d->type == OL_OPT_INT)
        return ol__format("default %s", d->default_value);
    return ol__format("default \"%s\"", d->default_value);
}

void options_describe(const ol_plugin *p, const char *path, FILE *out) {
    fprintf(out, "%s %s", p->name, p->version != NULL ? p->version : "(no version)");
    if (p->description != NULL && p->description[0] != '\0')
        fprintf(out, " \xe2\x80\x94 %s", p->description); /* em dash */
    fprintf(out, "\nfile: %s\nneeds: ", path != NULL ? path : "(built in)");
    if (p->needs == NULL || p->needs[0] == NULL)
        fputs("(none)", out);
    for (size_t k = 0; p->needs != NULL && p->needs[k] != NULL; k++)
        fprintf(out, "%s%s", k > 0 ? ", " : "", p->needs[k]);
    fputc('\n', out);
    if (p->store != NULL)
        fprintf(out,
                "kind: secret store (runs after the stages that create access keys; select "
                "it with --secrets %s or \"secrets\" in the pipeline file)\n",
                p->name);
    else if (p->flags & OL_STAGE_CREATES_SECRETS)
        fputs("kind: creates access keys (a pipeline with it needs a secret store)\n", out);
    if (p->flags & OL_STAGE_DEFAULT)
        fprintf(out, "default pipeline: yes (runs when no --pipeline names the stages%s)\n",
                p->store != NULL ? "; --secrets replaces the default stores" : "");
    if (p->timeout_ms != 0)
        fprintf(out, "time limit: %u s per item\n", p->timeout_ms / 1000);
    if (p->n_options > 0)
        fprintf(out,
                "set an option with --set %s.OPTION=VALUE, or in the pipeline file's "
                "\"options\"\n",
                p->name);
    if (p->n_options == 0) {
        fputs("options: (none)\n", out);
        return;
    }
    size_t name_w = 14, def_w = 0;
    char **defaults = calloc(p->n_options, sizeof(*defaults));
    if (defaults == NULL)
        return;
    for (size_t k = 0; k < p->n_options; k++) {
        size_t len = strlen(options_def(p, k)->name);
        name_w = len > name_w ? len : name_w;
        defaults[k] = default_text(options_def(p, k));
        len = defaults[k] != NULL ? strlen(defaults[k]) : 0;
        def_w = len > def_w ? len : def_w;
    }
    fputs("options:\n", out);
    for (size_t k = 0; k < p->n_options; k++) {
        const ol_option_def *d = options_def(p, k);
        int has_help = (d->flags & OL_OPT_SENSITIVE) || (d->help != NULL && d->help[0] != '\0');
        fprintf(out, "  %-*s  %-6s  %-*s", (int)name_w, d->name, type_name(d->type),
                has_help ? (int)def_w : 0, defaults[k] != NULL ? defaults[k] : "");
        if (has_help)
            fprintf(out, "   %s%s", (d->flags & OL_OPT_SENSITIVE) ? "(sensitive) " : "",
                    d->help != NULL ? d->help : "");
        fputc('\n', out);
        free(defaults[k]);
    }
    free(defaults);
}
