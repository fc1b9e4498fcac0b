/* config: turns argv and the pipeline file into a plan. A pipeline file is JSON:
 *
 *   {"environments": ["production", "staging"], "region": "eu-north-1",
 *    "stages": ["bucket", "iam", {"stage": "policy", "options": {"preset": "read-only"}},
 *               {"stage": "dotenv", "options": {"path": "{product}/.env.{environment}"},
 *                "timeout": "30s"}],
 *    "secrets": ["dotenv", "keepassxc"]}
 *
 * "secrets" (or --secrets) selects the secret stores, replacing any listed in "stages"; a
 * store listed in both keeps the options given in "stages". Unknown keys are rejected (a
 * typo must not silently drop a setting). Stores run after the stages that create keys;
 * a pipeline that creates keys and stores them nowhere is refused. */
#include "config.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aws/endpoints.h"
#include "cli.h"
#include "error.h"
#include "identities.h"
#include "names.h"
#include "privfile.h"
#include "products.h"

static int list_add(char ***list, size_t *n, const char *s) {
    for (size_t i = 0; i < *n; i++)
        if (strcmp((*list)[i], s) == 0)
            return 0; /* duplicates collapse: one item each */
    char **l = realloc(*list, (*n + 1) * sizeof(char *));
    if (l == NULL)
        return OL_ENOMEM;
    *list = l;
    l[*n] = strdup(s);
    if (l[*n] == NULL)
        return OL_ENOMEM;
    (*n)++;
    return 0;
}

static int split_add(char ***list, size_t *n, const char *csv) {
    char *copy = strdup(csv), *save = NULL;
    int rc = copy ? 0 : OL_ENOMEM;
    for (char *t = copy ? strtok_r(copy, ",", &save) : NULL; t && rc == 0;
         t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ')
            t++;
        size_t len = strlen(t);
        while (len && t[len - 1] == ' ')
            t[--len] = '\0';
        if (*t)
            rc = list_add(list, n, t);
    }
    free(copy);
    return rc;
}

typedef struct stage_spec {
    const char *name;
    const json_t *options; /* borrowed from the document, or NULL */
    unsigned timeout_ms;   /* 0: the stage's own */
} stage_spec;

int config_pipeline_file_read(const char *path, json_t **doc, char **err) {
    json_error_t je;
    /* Opened here, not by json_load_file: its message for a missing file is "line -1
     * column -1", and a FIFO or device must be refused, not read until it ends. */
    FILE *f = privfile_fopen(path);
    if (f == NULL)
        return ol__fail(err, OL_ECONFIG, "cannot open pipeline file %s: %s", path,
                        privfile_strerror(errno));
    *doc = json_loadf(f, JSON_REJECT_DUPLICATES, &je);
    int read_errno = ferror(f) ? errno : 0;
    fclose(f);
    if (*doc == NULL && read_errno != 0)
        return ol__fail(err, OL_ECONFIG, "cannot read pipeline file %s: %s", path,
                        strerror(read_errno));
    if (*doc == NULL)
        return ol__fail(err, OL_ECONFIG, "pipeline file %s, line %d column %d: %s", path, je.line,
                        je.column, je.text);
    if (!json_is_object(*doc))
        return ol__fail(err, OL_ECONFIG,
                        "pipeline file %s: the top level must be an object such as "
                        "{\"stages\": [\"bucket\", \"iam\", \"policy\", \"dotenv\"]}",
                        path);
    const char *key;
    json_t *v;
    json_object_foreach(*doc, key, v) {
        if (strcmp(key, "stages") && strcmp(key, "environments") && strcmp(key, "region") &&
            strcmp(key, "concurrency") && strcmp(key, "description") && strcmp(key, "secrets") &&
            strcmp(key, "profiles") && strcmp(key, "regions"))
            return ol__fail(err, OL_ECONFIG,
                            "pipeline file %s: unknown key '%s'; allowed: stages, secrets, "
                            "environments, region, regions, profiles, concurrency, description",
                            path, key);
    }
    return 0;
}

/* One entry of "stages": a name, or {"stage": NAME, "options": {...}, "timeout": "90s"}. */
static int stage_spec_from_json(const char *path, const json_t *e, size_t i, stage_spec *sp,
                                char **err) {
    if (json_is_string(e)) {
        sp->name = json_string_value(e);
        return 0;
    }
    const json_t *name = json_object_get(e, "stage");
    if (!json_is_object(e) || !json_is_string(name))
        return ol__fail(err, OL_ECONFIG,
                        "pipeline file %s: stage #%zu must be a name or an object "
                        "{\"stage\": NAME, \"options\": {...}}",
                        path, i + 1);
    sp->name = json_string_value(name);
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)e, key, v) {
        if (strcmp(key, "stage") && strcmp(key, "options") && strcmp(key, "timeout"))
            return ol__fail(err, OL_ECONFIG,
                            "pipeline file %s: stage '%s' has unknown key '%s'; allowed: "
                            "stage, options, timeout",
                            path, sp->name, key);
    }
    const json_t *to = json_object_get(e, "timeout");
    if (to != NULL) {
        unsigned long secs = json_is_string(to) ? cli_parse_duration(json_string_value(to)) : 0;
        if (secs == 0 || secs > 86400)
            return ol__fail(err, OL_ECONFIG,
                            "pipeline file %s: timeout of stage '%s' must be a duration from 1s "
                            "to 1d, e.g. \"90s\" or \"5m\"",
                            path, sp->name);
        sp->timeout_ms = (unsigned)(secs * 1000);
    }
    const json_t *opts = json_object_get(e, "options");
    if (opts && !json_is_object(opts))
        return ol__fail(err, OL_ECONFIG,
                        "pipeline file %s: options of stage '%s' must be an object", path,
                        sp->name);
    sp->options = opts;
    return 0;
}

static int stages_from_doc(const char *path, const json_t *doc, stage_spec **specs, size_t *n,
                           char **err) {
    const json_t *stages = json_object_get(doc, "stages");
    if (!json_is_array(stages) || json_array_size(stages) == 0)
        return ol__fail(err, OL_ECONFIG,
                        "pipeline file %s: \"stages\" must be a non-empty list, e.g. "
                        "[\"bucket\", \"iam\", \"policy\", \"dotenv\"]",
                        path);
    *n = json_array_size(stages);
    *specs = calloc(*n, sizeof(stage_spec));
    if (*specs == NULL)
        return OL_ENOMEM;
    for (size_t i = 0; i < *n; i++) {
        int rc = stage_spec_from_json(path, json_array_get(stages, i), i, &(*specs)[i], err);
        if (rc != 0)
            return rc;
    }
    for (size_t i = 0; i < *n; i++)
        for (size_t j = i + 1; j < *n; j++)
            if (strcmp((*specs)[i].name, (*specs)[j].name) == 0)
                return ol__fail(err, OL_ECONFIG,
                                "pipeline file %s: stage '%s' is listed twice; list each stage "
                                "once",
                                path, (*specs)[i].name);
    return 0;
}

/* ["a", "b"] -> "a,b" (malloc'd); OL_EINVAL when not a list of plain names. */
static int json_list_join(const json_t *list, char **out) {
    size_t len = 1, i;
    json_t *v;
    if (!json_is_array(list))
        return OL_EINVAL;
    json_array_foreach(list, i, v) {
        if (!json_is_string(v) || strchr(json_string_value(v), ',') != NULL)
            return OL_EINVAL;
        len += strlen(json_string_value(v)) + 1;
    }
    if ((*out = calloc(1, len)) == NULL)
        return OL_ENOMEM;
    json_array_foreach(list, i, v) {
        if (i > 0)
            strcat(*out, ",");
        strcat(*out, json_string_value(v));
    }
    return 0;
}

/* The names of the loaded plugins (only the secret stores when stores_only), ", "-separated,
 * into buf; "none" when there are none. Messages list what is loaded rather than what a
 * build bundles: the host knows no stage by name. */
static void loaded_names(const loader *l, int stores_only, char *buf, size_t len) {
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < loader_count(l) && off < len; i++) {
        const ol_plugin *d = loader_at(l, i)->desc;
        if (!stores_only || d->store != NULL)
            off += (size_t)snprintf(buf + off, len - off, "%s%s", off ? ", " : "", d->name);
    }
    if (buf[0] == '\0')
        snprintf(buf, len, "none");
}

static int apply_set(plan *p, const char *set, char **err) {
    const char *dot = strchr(set, '.');
    const char *eq = strchr(set, '=');
    if (dot == NULL || eq == NULL || dot > eq)
        return ol__fail(err, OL_EINVAL,
                        "--set '%s': write STAGE.OPTION=VALUE, e.g. --set "
                        "bucket.versioning=true",
                        set);
    for (size_t s = 0; s < p->n_stages; s++) {
        const char *name = p->stages[s].plugin->desc->name;
        if (strlen(name) == (size_t)(dot - set) && strncmp(name, set, (size_t)(dot - set)) == 0) {
            char opt[128];
            snprintf(opt, sizeof(opt), "%.*s", (int)(eq - dot - 1), dot + 1);
            char *e2 = NULL;
            int rc = options_set_text(p->stages[s].opts, opt, eq + 1, &e2);
            if (rc != 0) {
                ol__fail(err, rc, "--set %.*s: %s", (int)(eq - set), set,
                         e2 ? e2 : "invalid value");
                free(e2);
                return rc;
            }
            return 0;
        }
    }
    return ol__fail(err, OL_EINVAL, "--set '%s': stage '%.*s' is not in the pipeline", set,
                    (int)(dot - set), set);
}

/* What every pipeline needs of its items: product and environment names are tokens of
 * lowercase letters, digits, hyphens and dots (they reach file names, templates, the journal
 * and the item name "<product>-<environment>"). */
static int check_item_names(const plan *p, char **err) {
    for (size_t e = 0; e < p->n_environments; e++)
        if (names_check_environment(p->environments[e], err) != 0)
            return OL_EINVAL;
    for (size_t i = 0; i < p->n_products; i++)
        if (names_check_product(p->products[i], err) != 0)
            return OL_EINVAL;
    return 0;
}

/* What holds for every pipeline: product and environment names are tokens an item name
 * can be made of. Whether "<product>-<environment>" is a valid bucket or IAM user name is
 * for the stages that make those (their validate, before any request). */
static int check_items(const plan *p, char **err) {
    return check_item_names(p, err);
}

/* Keys created must be stored: refuse (before any request) a pipeline whose key-creating
 * stage has no store after it, or that needs a store before keys exist. */
static int check_stores(const loader *l, const plan *p, const char *source, char **err) {
    const char *creator = NULL;
    size_t n_stores = 0;
    for (size_t s = 0; s < p->n_stages; s++) {
        const plan_stage *ps = &p->stages[s];
        n_stores += (size_t)ps->is_store;
        if (ps->creates_secrets && creator == NULL)
            creator = ps->plugin->desc->name;
        if (!ps->creates_secrets)
            continue;
        for (size_t k = 0; k < ps->n_needs; k++)
            if (p->stages[ps->needs[k]].is_store)
                return ol__fail(
                    err, OL_ECONFIG,
                    "%s: stage '%s' creates access keys but needs '%s', a secret store, "
                    "which can only run after keys exist; remove that need",
                    source, ps->plugin->desc->name, p->stages[ps->needs[k]].plugin->desc->name);
    }
    if (creator == NULL || n_stores > 0)
        return 0;
    char stores[1024];
    loaded_names(l, 1, stores, sizeof(stores));
    return ol__fail(err, OL_ECONFIG,
                    "%s: stage '%s' creates access keys but no secret store is in the pipeline, "
                    "so every secret would be lost; add one with --secrets (loaded stores: %s)",
                    source, creator, stores);
}

/* Applies --secrets / "secrets": the named stores replace the store stages of specs. A
 * store also listed in specs keeps its options. */
static int select_stores(const loader *l, const char *list, const char *what, stage_spec **specs,
                         size_t *n, char **err) {
    char **names = NULL;
    size_t n_names = 0;
    int rc = split_add(&names, &n_names, list);
    stage_spec *out = NULL;
    size_t n_out = 0;
    if (rc == 0 && n_names == 0)
        rc = ol__fail(err, OL_EINVAL, "%s: name at least one secret store, e.g. dotenv", what);
    if (rc == 0 && (out = calloc(*n + n_names, sizeof(*out))) == NULL)
        rc = OL_ENOMEM;
    for (size_t i = 0; rc == 0 && i < *n; i++) {
        const loader_plugin *lp = loader_find(l, (*specs)[i].name);
        if (lp == NULL || lp->desc->store == NULL)
            out[n_out++] = (*specs)[i];
    }
    for (size_t j = 0; rc == 0 && j < n_names; j++) {
        const loader_plugin *lp = loader_find(l, names[j]);
        if (lp != NULL && lp->desc->store == NULL) {
            rc = ol__fail(err, OL_EINVAL,
                          "%s: '%s' is a stage but not a secret store; list stores only (see "
                          "`opsline plugins list`)",
                          what, names[j]);
            break;
        }
        stage_spec sp = {.name = NULL};
        for (size_t i = 0; i < *n; i++)
            if (strcmp((*specs)[i].name, names[j]) == 0)
                sp = (*specs)[i];
        if (sp.name == NULL)
            sp.name = lp != NULL ? lp->desc->name : names[j];
        if (lp == NULL) {
            char stores[1024];
            loaded_names(l, 1, stores, sizeof(stores));
            rc = ol__fail(err, OL_ECONFIG,
                          "%s: no plugin provides secret store '%s'; loaded stores: %s (add a "
                          "plugin's directory with --plugin-dir)",
                          what, names[j], stores);
            break;
        }
        out[n_out++] = sp;
    }
    for (size_t j = 0; j < n_names; j++)
        free(names[j]);
    free(names);
    if (rc != 0) {
        free(out);
        return rc;
    }
    free(*specs);
    *specs = out;
    *n = n_out;
    return 0;
}

/* OL_ECONFIG naming a stage no loaded plugin provides, and the stages that are loaded. */
static int fail_unknown_stage(const loader *l, const char *name, const char *source, char **err) {
    char known[1024];
    loaded_names(l, 0, known, sizeof(known));
    return ol__fail(err, OL_ECONFIG,
                    "%s: no plugin provides stage '%s' (loaded: %s); add its directory with "
                    "--plugin-dir or OPSLINE_PLUGIN_PATH",
                    source, name, known);
}

/* The indexes (in plan order, before k) of the stages that stage k needs. */
static int stage_needs_fill(const loader *l, const char *const *names, size_t n, size_t spec,
                            const plan *p, size_t k, plan_stage *ps) {
    const char *needs[64];
    size_t nn = loader_needs(l, names, n, spec, needs, 64);
    ps->needs = calloc(nn ? nn : 1, sizeof(size_t));
    if (ps->needs == NULL)
        return OL_ENOMEM;
    for (size_t j = 0; j < nn; j++)
        for (size_t q = 0; q < k; q++)
            if (strcmp(p->stages[q].plugin->desc->name, needs[j]) == 0)
                ps->needs[ps->n_needs++] = q;
    return 0;
}

/* Fill p->stages[k] from the spec at index spec: plugin, options, flags, time limit, needs. */
static int stage_fill(const loader *l, const char *const *names, size_t n, size_t spec,
                      const stage_spec *sp, const char *source, plan *p, size_t k, char **err) {
    plan_stage *ps = &p->stages[k];
    char label[512];
    ps->plugin = loader_find(l, sp->name);
    snprintf(label, sizeof(label), "stage '%s' in %s", sp->name, source);
    p->n_stages = k + 1;
    int rc = options_parse(ps->plugin->desc, sp->options, label, &ps->opts, err);
    if (rc != 0)
        return rc;
    const ol_plugin *d = ps->plugin->desc;
    ps->is_store = d->store != NULL;
    ps->creates_secrets = (d->flags & OL_STAGE_CREATES_SECRETS) != 0;
    ps->timeout_ms = sp->timeout_ms  ? sp->timeout_ms
                     : d->timeout_ms ? d->timeout_ms
                                     : CONFIG_DEFAULT_STAGE_TIMEOUT_MS;
    return stage_needs_fill(l, names, n, spec, p, k, ps);
}

/* The option of plugin d that command-line flag `flag` sets (ol_plugin.cli_flags), or NULL. */
static const char *option_with_flag(const ol_plugin *d, const char *flag) {
    const ol_cli_flag *f = loader_cli_flag(d, flag);
    return f != NULL ? f->option : NULL;
}

/* --FLAG VALUE (e.g. --env-file): sets the option that declares that flag (ol_option_def.cli)
 * on every stage of the plan that maps it (ol_plugin.cli_flags), as --set would. No such stage: an
 * error naming a loaded stage that would take it. */
static int apply_cli_flag(const loader *l, plan *p, const char *flag, const char *value,
                          char **err) {
    size_t hits = 0;
    int rc = 0;
    for (size_t s = 0; s < p->n_stages && rc == 0; s++) {
        const ol_plugin *d = p->stages[s].plugin->desc;
        const char *opt = option_with_flag(d, flag);
        if (opt == NULL)
            continue;
        char *set = ol__format("%s.%s=%s", d->name, opt, value);
        if (set == NULL)
            return OL_ENOMEM;
        char *e2 = NULL;
        if ((rc = apply_set(p, set, &e2)) != 0)
            ol__fail(err, rc, "--%s %s: %s", flag, value, e2 ? e2 : "invalid");
        free(e2);
        free(set);
        hits++;
    }
    if (rc != 0 || hits > 0)
        return rc;
    for (size_t i = 0; i < loader_count(l); i++) {
        const ol_plugin *d = loader_at(l, i)->desc;
        const char *opt = option_with_flag(d, flag);
        if (opt != NULL)
            return ol__fail(err, OL_EINVAL,
                            "--%s sets option '%s' of stage '%s', which is not in the "
                            "pipeline; add it%s, or use --set STAGE.OPTION=VALUE",
                            flag, opt, d->name,
                            d->store != NULL ? " to the stores (--secrets)" : "");
    }
    return ol__fail(err, OL_EINVAL, "--%s: no loaded stage takes it (see `opsline plugins show`)",
                    flag);
}

/* The plan's stages: every name provided by a plugin, ordered by their needs, options
 * parsed, the stores checked, then --env-file and --set applied. */
static int build_stages(const config_args *a, const loader *l, const stage_spec *specs, size_t n,
                        const char *source, plan *p, char **err) {
    const char **names = calloc(n, sizeof(char *));
    size_t *order = calloc(n, sizeof(size_t));
    int rc = OL_ENOMEM;
    if (names == NULL || order == NULL)
        goto out;
    for (size_t i = 0; i < n; i++) {
        names[i] = specs[i].name;
        if (loader_find(l, names[i]) == NULL) {
            rc = fail_unknown_stage(l, names[i], source, err);
            goto out;
        }
    }
    if ((rc = loader_order(l, names, n, order, err)) != 0)
        goto out;
    if ((p->stages = calloc(n, sizeof(plan_stage))) == NULL) {
        rc = OL_ENOMEM;
        goto out;
    }
    for (size_t k = 0; k < n; k++)
        if ((rc = stage_fill(l, names, n, order[k], &specs[order[k]], source, p, k, err)) != 0)
            goto out;
    if ((rc = check_stores(l, p, source, err)) != 0)
        goto out;
    if (a->env_file && (rc = apply_cli_flag(l, p, "env-file", a->env_file, err)) != 0)
        goto out;
    for (size_t i = 0; i < a->n_sets; i++)
        if ((rc = apply_set(p, a->sets[i], err)) != 0)
            goto out;
    rc = 0;
out:
    free(names);
    free(order);
    return rc;
}

/* The products of the command line, then of --products-file (read into *pf, whose lines
 * are the plan's products from *first on); at least one. */
static int plan_products(const config_args *a, plan *p, products_file *pf, size_t *first,
                         char **err) {
    int rc;
    for (size_t i = 0; i < a->n_products; i++)
        if ((rc = list_add(&p->products, &p->n_products, a->products[i])) != 0)
            return rc;
    *first = p->n_products;
    if (a->products_file && (rc = products_file_read(a->products_file, pf, err)) != 0)
        return rc;
    for (size_t i = 0; i < *first; i++) {
        size_t line = products_file_line_of(pf, p->products[i]);
        if (line > 0)
            return ol__fail(err, OL_EINVAL,
                            "%s:%zu: product '%s' is also given on the command line; name it "
                            "once",
                            pf->path, line, p->products[i]);
    }
    if (pf->n > 0) {
        char **l = realloc(p->products, (p->n_products + pf->n) * sizeof(char *));
        if (l == NULL)
            return OL_ENOMEM;
        p->products = l;
    }
    if (pf->n > 0 && ((p->products_file = strdup(pf->path)) == NULL ||
                      (p->product_lines = calloc(*first + pf->n, sizeof(size_t))) == NULL))
        return OL_ENOMEM;
    for (size_t k = 0; k < pf->n; k++) {
        if ((p->products[p->n_products] = strdup(pf->lines[k].name)) == NULL)
            return OL_ENOMEM;
        p->product_lines[p->n_products++] = pf->lines[k].lineno;
    }
    if (p->n_products == 0)
        return ol__fail(err, OL_EINVAL,
                        "no product given: name at least one, e.g. `opsline apply acme`, or "
                        "use --products-file FILE%s%s",
                        a->products_file ? ", which lists none: " : "",
                        a->products_file ? a->products_file : "");
    return 0;
}

/* The default pipeline: the loaded stages, then the stores, that declare OL_STAGE_DEFAULT.
 * The core names none of them; the bundled ones do. */
static int default_specs(const loader *l, stage_spec **specs, size_t *n, char **err) {
    *n = 0;
    if ((*specs = calloc(loader_count(l) + 1, sizeof(**specs))) == NULL)
        return OL_ENOMEM;
    for (int stores = 0; stores < 2; stores++)
        for (size_t i = 0; i < loader_count(l); i++) {
            const ol_plugin *d = loader_at(l, i)->desc;
            if ((d->flags & OL_STAGE_DEFAULT) && (d->store != NULL) == stores)
                (*specs)[(*n)++].name = d->name;
        }
    if (*n > 0)
        return 0;
    return ol__fail(err, OL_ECONFIG,
                    "no pipeline given and no loaded stage belongs to the default pipeline; "
                    "pass --pipeline FILE naming the stages (see `opsline plugins list`)");
}

/* The stages asked for: the pipeline file's "stages" (*doc holds the file then), else the
 * default pipeline. *source names where they came from, for messages. */
static int stage_specs_read(const config_args *a, const loader *l, json_t **doc, stage_spec **specs,
                            size_t *n, const char **source, char **err) {
    int rc;
    *source = "the default pipeline";
    if (a->pipeline_file) {
        if ((rc = config_pipeline_file_read(a->pipeline_file, doc, err)) != 0)
            return rc;
        if ((rc = stages_from_doc(a->pipeline_file, *doc, specs, n, err)) != 0)
            return rc;
        *source = a->pipeline_file;
        return 0;
    }
    return default_specs(l, specs, n, err);
}

/* --secrets, else the pipeline file's "secrets", replace the stores among specs. */
static int plan_secrets(const config_args *a, const loader *l, const json_t *doc,
                        stage_spec **specs, size_t *n, char **err) {
    const json_t *sec = doc ? json_object_get(doc, "secrets") : NULL;
    if (a->secrets != NULL)
        return select_stores(l, a->secrets, "--secrets", specs, n, err);
    if (sec == NULL)
        return 0;
    char *joined = NULL;
    int rc = json_list_join(sec, &joined);
    if (rc == OL_EINVAL)
        rc = ol__fail(err, OL_ECONFIG,
                      "pipeline file %s: \"secrets\" must be a list of store names, e.g. "
                      "[\"dotenv\", \"keepassxc\"]",
                      a->pipeline_file);
    if (rc == 0)
        rc = select_stores(l, joined, "pipeline file \"secrets\"", specs, n, err);
    free(joined);
    return rc;
}

/* A products-file line's store `name`, not among specs, appended to them: the spec the
 * pipeline file gave it (its options and time limit) when it lists it, else its defaults. */
static int product_store_add(const loader *l, const products_file *pf, const products_line *pl,
                             const char *name, const stage_spec *asked, size_t n_asked,
                             stage_spec *specs, size_t *n, char **err) {
    for (size_t i = 0; i < *n; i++)
        if (strcmp(specs[i].name, name) == 0)
            return 0;
    const loader_plugin *lp = loader_find(l, name);
    char stores[1024];
    loaded_names(l, 1, stores, sizeof(stores));
    if (lp == NULL)
        return ol__fail(err, OL_ECONFIG,
                        "%s:%zu: \"secrets\": no plugin provides secret store '%s'; loaded "
                        "stores: %s (add a plugin's directory with --plugin-dir)",
                        pf->path, pl->lineno, name, stores);
    if (lp->desc->store == NULL)
        return ol__fail(err, OL_EINVAL,
                        "%s:%zu: \"secrets\": '%s' is a stage but not a secret store; list "
                        "stores only (loaded stores: %s)",
                        pf->path, pl->lineno, name, stores);
    stage_spec sp = {.name = lp->desc->name};
    for (size_t i = 0; i < n_asked; i++)
        if (strcmp(asked[i].name, name) == 0)
            sp = asked[i];
    specs[(*n)++] = sp;
    return 0;
}

/* The stores only products-file lines name, appended to specs (the run's stages, its
 * stores selected by plan_secrets) after the first *n_run: with the options and time limit
 * of their entry in the pipeline file's "stages" when it has one. */
static int plan_product_secrets(const config_args *a, const loader *l, const json_t *doc,
                                const products_file *pf, stage_spec **specs, size_t *n,
                                size_t *n_run, char **err) {
    stage_spec *asked = NULL;
    size_t n_asked = 0, n_listed = 0;
    int rc = 0;
    *n_run = *n;
    for (size_t k = 0; k < pf->n; k++)
        n_listed += pf->lines[k].n_secrets;
    if (n_listed == 0)
        return 0;
    if (doc != NULL && a->pipeline_file != NULL)
        rc = stages_from_doc(a->pipeline_file, doc, &asked, &n_asked, err);
    stage_spec *grown = rc == 0 ? realloc(*specs, (*n + n_listed) * sizeof(*grown)) : NULL;
    if (rc == 0 && grown == NULL)
        rc = OL_ENOMEM;
    if (rc == 0)
        *specs = grown;
    for (size_t k = 0; rc == 0 && k < pf->n; k++)
        for (size_t j = 0; rc == 0 && j < pf->lines[k].n_secrets; j++)
            rc = product_store_add(l, pf, &pf->lines[k], pf->lines[k].secrets[j], asked, n_asked,
                                   *specs, n, err);
    free(asked);
    return rc;
}

/* The stores that specs[n_run...] added run only for the products whose lines name them. */
static void mark_listed_only(plan *p, const stage_spec *listed, size_t n_listed) {
    for (size_t s = 0; s < p->n_stages; s++)
        for (size_t i = 0; p->stages[s].is_store && i < n_listed; i++)
            if (strcmp(p->stages[s].plugin->desc->name, listed[i].name) == 0)
                p->stages[s].listed_only = 1;
}

/* A product that uses the run's stores when the run has none, only products' own: its
 * keys would be stored nowhere. */
static int check_product_stores(const plan *p, const char *source, char **err) {
    const char *creator = NULL;
    size_t run_stores = 0;
    for (size_t s = 0; s < p->n_stages; s++) {
        run_stores += (size_t)(p->stages[s].is_store && !p->stages[s].listed_only);
        if (p->stages[s].creates_secrets && creator == NULL)
            creator = p->stages[s].plugin->desc->name;
    }
    for (size_t i = 0; creator != NULL && run_stores == 0 && i < p->n_products; i++) {
        const plan_product *pp = p->product_settings ? &p->product_settings[i] : NULL;
        if (pp != NULL && pp->stores != NULL)
            continue;
        size_t line = p->product_lines ? p->product_lines[i] : 0;
        const char *fix = "has no secret store: the run's stores are none (only products-file "
                          "lines name some); give it \"secrets\" in the products file, or name "
                          "the run's stores with --secrets";
        if (line > 0)
            return ol__fail(err, OL_ECONFIG, "%s:%zu: stage '%s' creates access keys but '%s' %s",
                            p->products_file, line, creator, p->products[i], fix);
        return ol__fail(err, OL_ECONFIG, "%s: stage '%s' creates access keys but product '%s' %s",
                        source, creator, p->products[i], fix);
    }
    return 0;
}

/* The pipeline file's "environments" list into p. */
static int environments_from_doc(const char *path, const json_t *envs, plan *p, char **err) {
    size_t i;
    json_t *v;
    if (!json_is_array(envs))
        return ol__fail(err, OL_ECONFIG,
                        "pipeline file %s: \"environments\" must be a list of names", path);
    json_array_foreach(envs, i, v) {
        if (!json_is_string(v))
            return ol__fail(err, OL_ECONFIG, "pipeline file %s: environment #%zu is not a string",
                            path, i + 1);
        int rc = list_add(&p->environments, &p->n_environments, json_string_value(v));
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* -e, else the pipeline file's "environments", else the default ones; at least one. */
static int plan_environments(const config_args *a, const json_t *doc, plan *p, char **err) {
    const json_t *envs = doc ? json_object_get(doc, "environments") : NULL;
    int rc;
    if (a->environments)
        rc = split_add(&p->environments, &p->n_environments, a->environments);
    else if (envs)
        rc = environments_from_doc(a->pipeline_file, envs, p, err);
    else
        rc = split_add(&p->environments, &p->n_environments, CONFIG_DEFAULT_ENVIRONMENTS);
    if (rc != 0)
        return rc;
    if (p->n_environments == 0)
        return ol__fail(err, OL_EINVAL, "-e: no environment given; e.g. -e production,staging");
    return 0;
}

/* The region the user chose for this run: --region, else the pipeline file's "region";
 * NULL when neither. Either one is an override for credentials_settings, which owns the
 * rest of the decision (AWS_REGION, AWS_DEFAULT_REGION, the profile, the default). */
static int plan_region(const config_args *a, const json_t *doc, plan *p, char **err) {
    const json_t *region = doc ? json_object_get(doc, "region") : NULL;
    const char *r =
        a->region && !identities_is_mapping(a->region) ? a->region : json_string_value(region);
    if (region && !json_is_string(region))
        return ol__fail(err, OL_ECONFIG, "pipeline file %s: \"region\" must be a string",
                        a->pipeline_file);
    if (r && !endpoints_region_valid(r))
        return ol__fail(err, OL_EINVAL,
                        "region '%s' is not an AWS region name (e.g. eu-north-1, us-east-1)", r);
    if (r && (p->region = strdup(r)) == NULL)
        return OL_ENOMEM;
    return 0;
}

/* Profile, state directory, concurrency (the command line's, else the pipeline file's),
 * output switches. */
static int plan_settings(const config_args *a, const json_t *doc, plan *p, char **err) {
    const char *profile = identities_is_mapping(a->profile) ? NULL : a->profile;
    p->profile = profile ? strdup(profile) : NULL;
    p->state_dir = strdup(a->state_dir ? a->state_dir : ".opsline");
    if ((profile && !p->profile) || p->state_dir == NULL)
        return OL_ENOMEM;
    p->concurrency = a->concurrency > 0 ? (size_t)a->concurrency : CONFIG_DEFAULT_CONCURRENCY;
    const json_t *conc = doc ? json_object_get(doc, "concurrency") : NULL;
    if (conc != NULL &&
        (!json_is_integer(conc) || json_integer_value(conc) < 1 || json_integer_value(conc) > 1024))
        return ol__fail(err, OL_ECONFIG,
                        "pipeline file %s: \"concurrency\" must be a number from 1 to 1024, "
                        "e.g. \"concurrency\": 32",
                        a->pipeline_file);
    if (a->concurrency <= 0 && conc != NULL)
        p->concurrency = (size_t)json_integer_value(conc);
    p->json = a->json;
    p->verbose = a->verbose;
    p->quiet = a->quiet;
    return 0;
}

/* --verify: every loaded stage that maps the flag "verify" to no option (ol_plugin.cli_flags:
 * {"verify", NULL}) joins the pipeline, once; none loaded is an error. */
static int plan_verify(const config_args *a, const loader *l, stage_spec **specs, size_t *n,
                       char **err) {
    size_t added = 0;
    for (size_t k = 0; a->verify && k < loader_count(l); k++) {
        const ol_plugin *d = loader_at(l, k)->desc;
        const ol_cli_flag *f = loader_cli_flag(d, "verify");
        int takes = f != NULL && f->option == NULL;
        int listed = 0;
        for (size_t i = 0; takes && i < *n; i++)
            listed |= strcmp((*specs)[i].name, d->name) == 0;
        added += (size_t)takes;
        if (!takes || listed)
            continue;
        stage_spec *more = realloc(*specs, (*n + 1) * sizeof(**specs));
        if (more == NULL)
            return OL_ENOMEM;
        *specs = more;
        more[(*n)++] = (stage_spec){.name = d->name};
    }
    if (a->verify && added == 0)
        return ol__fail(err, OL_EINVAL,
                        "--verify: no loaded stage provides it (see `opsline plugins list`)");
    return 0;
}

int config_build(const config_args *a, const loader *l, plan *p, char **err) {
    json_t *doc = NULL;
    stage_spec *specs = NULL;
    size_t n_specs = 0;
    const char *source = NULL;
    products_file pf = {0};
    size_t first = 0, n_run = 0;
    int rc;
    memset(p, 0, sizeof(*p));
    *err = NULL;
    if ((rc = plan_products(a, p, &pf, &first, err)) == 0 &&
        (rc = stage_specs_read(a, l, &doc, &specs, &n_specs, &source, err)) == 0 &&
        (rc = plan_secrets(a, l, doc, &specs, &n_specs, err)) == 0 &&
        (rc = plan_verify(a, l, &specs, &n_specs, err)) == 0 &&
        (rc = plan_environments(a, doc, p, err)) == 0 && (rc = check_items(p, err)) == 0 &&
        (rc = plan_region(a, doc, p, err)) == 0 && (rc = plan_settings(a, doc, p, err)) == 0 &&
        (rc = identities_plan(a->profile, a->region, doc, a->pipeline_file, p, err)) == 0 &&
        (rc = plan_product_secrets(a, l, doc, &pf, &specs, &n_specs, &n_run, err)) == 0)
        rc = build_stages(a, l, specs, n_specs, source, p, err);
    if (rc == 0)
        mark_listed_only(p, specs + n_run, n_specs - n_run);
    if (rc == 0)
        rc = products_plan(&pf, first, p, err);
    if (rc == 0)
        rc = check_product_stores(p, source, err);
    products_file_free(&pf);
    free(specs);
    json_decref(doc);
    if (rc != 0)
        plan_free(p);
    return rc;
}
