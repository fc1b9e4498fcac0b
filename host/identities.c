/* identities: the per-environment profile and region mappings of the command line and the
 * pipeline file, checked before anything runs. */
#include "identities.h"

#include <stdlib.h>
#include <string.h>

#include "aws/endpoints.h"
#include "config.h"
#include "error.h"

int identities_is_mapping(const char *arg) {
    return arg != NULL && strchr(arg, '=') != NULL;
}

static long env_index(const plan *p, const char *env, size_t len) {
    for (size_t e = 0; e < p->n_environments; e++)
        if (strlen(p->environments[e]) == len && strncmp(p->environments[e], env, len) == 0)
            return (long)e;
    return -1;
}

static int check_value(const char *what, const char *v, char **err) {
    if (*v == '\0')
        return ol__fail(err, OL_EINVAL, "--%s: an empty name; write ENV=NAME[,ENV=NAME...]", what);
    if (strcmp(what, "region") == 0 && !endpoints_region_valid(v))
        return ol__fail(err, OL_EINVAL,
                        "region '%s' is not an AWS region name (e.g. eu-north-1, us-east-1)", v);
    return 0;
}

/* One "ENV=NAME,ENV=NAME,NAME" argument into map (per environment) and *dflt. */
static int parse_arg(const char *what, const char *arg, plan *p, char **map, char **dflt,
                     char **err) {
    char *copy = strdup(arg), *save = NULL;
    int rc = copy ? 0 : OL_ENOMEM;
    for (char *t = copy ? strtok_r(copy, ",", &save) : NULL; t && rc == 0;
         t = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(t, '=');
        const char *v = eq ? eq + 1 : t;
        if ((rc = check_value(what, v, err)) != 0)
            break;
        if (eq == NULL) {
            free(*dflt);
            rc = (*dflt = strdup(v)) ? 0 : OL_ENOMEM;
            continue;
        }
        long e = env_index(p, t, (size_t)(eq - t));
        if (e < 0) {
            rc = ol__fail(err, OL_EINVAL,
                          "--%s %.*s=%s: '%.*s' is not an environment of this run; the run has "
                          "-e %s%s",
                          what, (int)(eq - t), t, v, (int)(eq - t), t, p->environments[0],
                          p->n_environments > 1 ? ",..." : "");
            break;
        }
        free(map[e]);
        rc = (map[e] = strdup(v)) ? 0 : OL_ENOMEM;
    }
    free(copy);
    return rc;
}

/* The pipeline file's object key ("profiles", "regions") into the entries map leaves NULL. */
static int from_doc(const char *key, const char *what, const json_t *doc, const char *path, plan *p,
                    char **map, char **err) {
    const json_t *obj = doc ? json_object_get(doc, key) : NULL;
    const char *env;
    json_t *v;
    if (obj == NULL)
        return 0;
    if (!json_is_object(obj))
        return ol__fail(err, OL_ECONFIG,
                        "pipeline file %s: \"%s\" must be an object such as {\"production\": "
                        "\"NAME\", \"staging\": \"NAME\"}",
                        path, key);
    json_object_foreach((json_t *)obj, env, v) {
        if (!json_is_string(v) || json_string_length(v) == 0)
            return ol__fail(err, OL_ECONFIG, "pipeline file %s: \"%s\".\"%s\" must be a name", path,
                            key, env);
        int rc = check_value(what, json_string_value(v), err);
        if (rc != 0)
            return rc;
        long e = env_index(p, env, strlen(env));
        if (e < 0 || map[e] != NULL) /* another run's environment, or set on the command line */
            continue;
        if ((map[e] = strdup(json_string_value(v))) == NULL)
            return OL_ENOMEM;
    }
    return 0;
}

static void map_free(char **map, size_t n) {
    for (size_t i = 0; map && i < n; i++)
        free(map[i]);
    free(map);
}

int identities_plan(const char *profile_arg, const char *region_arg, const json_t *doc,
                    const char *doc_path, plan *p, char **err) {
    size_t n = p->n_environments ? p->n_environments : 1;
    char **profiles = calloc(n, sizeof(char *));
    char **regions = calloc(n, sizeof(char *));
    char *dprofile = NULL, *dregion = NULL;
    int rc = profiles && regions ? 0 : OL_ENOMEM;
    if (rc == 0 && identities_is_mapping(profile_arg))
        rc = parse_arg("profile", profile_arg, p, profiles, &dprofile, err);
    if (rc == 0 && identities_is_mapping(region_arg))
        rc = parse_arg("region", region_arg, p, regions, &dregion, err);
    if (rc == 0)
        rc = from_doc("profiles", "profile", doc, doc_path, p, profiles, err);
    if (rc == 0)
        rc = from_doc("regions", "region", doc, doc_path, p, regions, err);
    if (rc != 0) {
        map_free(profiles, n);
        map_free(regions, n);
        free(dprofile);
        free(dregion);
        return rc;
    }
    if (p->profile == NULL)
        p->profile = dprofile;
    else
        free(dprofile);
    if (p->region == NULL)
        p->region = dregion;
    else
        free(dregion);
    p->env_profiles = profiles;
    p->env_regions = regions;
    return 0;
}

void identities_of_item(const plan *p, size_t i, const char *env, const char **profile,
                        const char **region) {
    long e = env_index(p, env, strlen(env));
    (void)i; /* no per-product setting yet */
    *profile = e >= 0 && p->env_profiles && p->env_profiles[e] ? p->env_profiles[e] : p->profile;
    *region = e >= 0 && p->env_regions && p->env_regions[e] ? p->env_regions[e] : p->region;
}

static int add_env(plan *p, const char *name, size_t len) {
    if (env_index(p, name, len) >= 0)
        return 0;
    char **l = realloc(p->environments, (p->n_environments + 1) * sizeof(char *));
    if (l == NULL)
        return OL_ENOMEM;
    p->environments = l;
    if ((l[p->n_environments] = strndup(name, len)) == NULL)
        return OL_ENOMEM;
    p->n_environments++;
    return 0;
}

int identities_environments(const char *profile_arg, const char *region_arg, plan *p) {
    const char *args[2] = {profile_arg, region_arg};
    for (size_t a = 0; a < 2; a++) {
        const char *s = identities_is_mapping(args[a]) ? args[a] : NULL;
        while (s != NULL && *s != '\0') {
            size_t n = strcspn(s, ",");
            const char *eq = memchr(s, '=', n);
            if (eq != NULL && eq > s && add_env(p, s, (size_t)(eq - s)) != 0)
                return OL_ENOMEM;
            s += n + (s[n] == ',');
        }
    }
    return 0;
}

static int envs_from_csv(const char *csv, plan *p) {
    while (*csv != '\0') {
        size_t n = strcspn(csv, ",");
        if (n > 0 && add_env(p, csv, n) != 0)
            return OL_ENOMEM;
        csv += n + (csv[n] == ',');
    }
    return 0;
}

int identities_plan_whoami(const char *profile_arg, const char *region_arg, const char *envs_csv,
                           const char *pipeline_path, plan *p, char **err) {
    json_t *doc = NULL;
    int rc = 0;
    memset(p, 0, sizeof(*p));
    *err = NULL;
    if (pipeline_path != NULL) {
        if ((rc = config_pipeline_file_read(pipeline_path, &doc, err)) != 0) {
            json_decref(doc);
            return rc;
        }
    }
    const json_t *envs = doc ? json_object_get(doc, "environments") : NULL;
    const char *region = doc ? json_string_value(json_object_get(doc, "region")) : NULL;
    if (envs_csv != NULL) {
        rc = envs_from_csv(envs_csv, p);
    } else if (json_is_array(envs)) {
        size_t i;
        json_t *v;
        json_array_foreach(envs, i, v) {
            if (rc == 0 && json_is_string(v))
                rc = add_env(p, json_string_value(v), json_string_length(v));
        }
    }
    if (rc == 0)
        rc = identities_environments(profile_arg, region_arg, p);
    if (rc == 0 && doc != NULL && p->n_environments == 0) /* apply's default environments */
        rc = envs_from_csv("production,staging", p);
    if (rc == 0 && !identities_is_mapping(profile_arg) && profile_arg != NULL)
        rc = (p->profile = strdup(profile_arg)) ? 0 : OL_ENOMEM;
    if (rc == 0 && !identities_is_mapping(region_arg) && (region_arg || region))
        rc = (p->region = strdup(region_arg ? region_arg : region)) ? 0 : OL_ENOMEM;
    if (rc == 0)
        rc = identities_plan(profile_arg, region_arg, doc, pipeline_path, p, err);
    json_decref(doc);
    return rc;
}
