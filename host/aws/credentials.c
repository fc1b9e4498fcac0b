/* credentials: the AWS CLI's way of finding who we are and where we go. It owns the
 * selection of the profile (--profile, AWS_PROFILE, AWS_DEFAULT_PROFILE, "default"), the
 * paths of the shared credentials and config files, the reading of those INI files (the
 * subset botocore's configparser accepts, [sso-session] sections included), the plan of the
 * credential chain (environment variables, role_arn with source_profile chains or
 * credential_source, web identity, SSO and its token cache, credentials file,
 * credential_process, config file, container endpoint, instance metadata) and the region.
 * Fetching what the plan names is provider.c's. Secrets read from files or the environment
 * are wiped with OPENSSL_cleanse and never end up in a message. Reference: "Configuration and
 * credential file settings" (AWS CLI User Guide), "Standardized credential providers" (AWS
 * SDKs and Tools Reference Guide), botocore credentials.py. */
#include "credentials.h"
#include "../error.h"

#include <ctype.h>
#include <errno.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "../privfile.h"
#include "endpoints.h"
#include "opsline/opsline.h"

/* One key of a profile section. prio: a `[profile default]` value beats a `[default]` one
 * in the config file, whatever their order. */
typedef struct ini_kv {
    char *key; /* lowercased, as configparser does */
    char *value;
    int prio;
} ini_kv;

/* The keys of one profile in one file. */
typedef struct ini_section {
    ini_kv *kv;
    size_t n;
    size_t cap;
    int file_missing; /* the file does not exist */
    int found;        /* a section for the profile exists */
} ini_section;

/* ---- small helpers -------------------------------------------------------------------- */

/* An environment variable, with an empty value counting as unset (as in the SDKs). */
static const char *env(const char *name) {
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : NULL;
}

static void wipe_free(char *s) {
    if (s == NULL)
        return;
    OPENSSL_cleanse(s, strlen(s));
    free(s);
}

/* Appends "; part" (or "part" first) to *list; keeps the old list on ENOMEM. */
static void list_add(char **list, const char *part) {
    char *n = *list ? ol__format("%s; %s", *list, part) : ol__format("%s", part);
    if (n == NULL)
        return;
    free(*list);
    *list = n;
}

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

/* is_config value of the `[sso-session NAME]` sections of the config file. */
#define INI_SSO_SESSION 2

/* ---- INI files ------------------------------------------------------------------------ */

static void ini_section_free(ini_section *sec) {
    for (size_t i = 0; i < sec->n; i++) {
        free(sec->kv[i].key);
        wipe_free(sec->kv[i].value);
    }
    free(sec->kv);
    memset(sec, 0, sizeof(*sec));
}

static int ini_set(ini_section *sec, const char *key, const char *value, int prio) {
    for (size_t i = 0; i < sec->n; i++) {
        if (strcmp(sec->kv[i].key, key) != 0)
            continue;
        if (sec->kv[i].prio > prio)
            return 0;
        char *v = strdup(value);
        if (v == NULL)
            return OL_ENOMEM;
        wipe_free(sec->kv[i].value);
        sec->kv[i].value = v;
        sec->kv[i].prio = prio;
        return 0;
    }
    if (sec->n == sec->cap) {
        size_t cap = sec->cap ? sec->cap * 2 : 8;
        ini_kv *kv = realloc(sec->kv, cap * sizeof(*kv));
        if (kv == NULL)
            return OL_ENOMEM;
        sec->kv = kv;
        sec->cap = cap;
    }
    ini_kv *e = &sec->kv[sec->n];
    e->key = strdup(key);
    e->value = strdup(value);
    e->prio = prio;
    if (e->key == NULL || e->value == NULL) {
        free(e->key);
        free(e->value);
        return OL_ENOMEM;
    }
    sec->n++;
    return 0;
}

static const char *ini_value(const ini_section *sec, const char *key) {
    for (size_t i = 0; i < sec->n; i++)
        if (strcasecmp(sec->kv[i].key, key) == 0)
            return sec->kv[i].value[0] != '\0' ? sec->kv[i].value : NULL;
    return NULL;
}

/* Whether header (the text between [ and ]) names profile; -1 if not, else its priority.
 * Config files use `[profile NAME]`, and `[default]` or `[profile default]` for default;
 * credentials files use `[NAME]`. */
static int section_matches(char *header, const char *profile, int is_config) {
    header = trim(header);
    if (!is_config)
        return strcmp(header, profile) == 0 ? 0 : -1;
    if (is_config == INI_SSO_SESSION)
        return strncmp(header, "sso-session", 11) == 0 &&
                       (header[11] == ' ' || header[11] == '\t') &&
                       strcmp(trim(header + 12), profile) == 0
                   ? 0
                   : -1;
    if (strcmp(header, "default") == 0)
        return strcmp(profile, "default") == 0 ? 0 : -1;
    if (strncmp(header, "profile", 7) != 0 || (header[7] != ' ' && header[7] != '\t'))
        return -1;
    return strcmp(trim(header + 8), profile) == 0 ? 1 : -1;
}

/* Where ini_line is in a file: which section, and the last key (for continuation lines). */
typedef struct ini_cursor {
    const char *profile;
    int is_config;
    int in_section; /* section_matches of the current section, -1: another profile's */
    int any_section;
    int have_key;
    size_t key_indent;
} ini_cursor;

/* A `[header]` line (p at '['). Returns 0 or OL_ECONFIG. */
static int ini_header(ini_cursor *cur, char *p, ini_section *sec) {
    char *end = strrchr(p, ']');
    if (end == NULL || end == p + 1)
        return OL_ECONFIG;
    *end = '\0';
    cur->in_section = section_matches(p + 1, cur->profile, cur->is_config);
    if (cur->in_section >= 0)
        sec->found = 1;
    cur->any_section = 1;
    cur->have_key = 0;
    return 0;
}

/* One line of the file (modified in place). Returns 0, OL_ECONFIG or OL_ENOMEM. */
static int ini_line(ini_cursor *cur, char *line, ini_section *sec) {
    char *p = line;
    size_t indent = 0;
    while (*p == ' ' || *p == '\t') {
        p++;
        indent++;
    }
    p = trim(p);
    if (*p == '\0' || *p == '#' || *p == ';')
        return 0;
    /* configparser: a line indented deeper than its key continues that key's value. This is
     * how nested settings (`s3 =` then `  max_concurrent_requests = 20`) are written; none
     * of them matters here. */
    if (cur->have_key && indent > cur->key_indent)
        return 0;
    if (*p == '[')
        return ini_header(cur, p, sec);
    size_t k = strcspn(p, "=:");
    if (p[k] == '\0' || !cur->any_section)
        return OL_ECONFIG;
    char *value = trim(p + k + 1);
    p[k] = '\0';
    char *key = trim(p);
    if (*key == '\0')
        return OL_ECONFIG;
    for (char *c = key; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    cur->have_key = 1;
    cur->key_indent = indent;
    return cur->in_section >= 0 ? ini_set(sec, key, value, cur->in_section) : 0;
}

/* Reads the section(s) of profile from path into sec. A missing file is not an error
 * (sec->file_missing). Returns 0, OL_ENOMEM, OL_EIO (unreadable, with *sys_errno) or
 * OL_ECONFIG with the 1-based number of the malformed line in *bad_line. Lines are wiped
 * after use: the credentials file holds secrets. */
static int ini_read(const char *path, const char *profile, int is_config, ini_section *sec,
                    size_t *bad_line, int *sys_errno) {
    FILE *f = privfile_fopen(path); /* a FIFO at the path must not hang the run */
    memset(sec, 0, sizeof(*sec));
    *bad_line = 0;
    *sys_errno = errno;
    if (f == NULL) {
        if (errno == ENOENT || errno == ENOTDIR) {
            sec->file_missing = 1;
            return 0;
        }
        return OL_EIO;
    }
    ini_cursor cur = {.profile = profile, .is_config = is_config, .in_section = -1};
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    int rc = 0;
    while (rc == 0 && getline(&line, &cap, f) >= 0) {
        lineno++;
        rc = ini_line(&cur, line, sec);
    }
    if (rc == 0 && ferror(f)) {
        *sys_errno = errno;
        rc = OL_EIO;
    }
    if (rc == OL_ECONFIG)
        *bad_line = lineno;
    if (line != NULL)
        OPENSSL_cleanse(line, cap);
    free(line);
    fclose(f);
    if (rc != 0)
        ini_section_free(sec);
    return rc;
}

/* ini_read with a user-facing message for its failures. */
static int ini_load(const char *path, const char *profile, int is_config, ini_section *sec,
                    char **err) {
    size_t bad_line;
    int sys_errno;
    int rc = ini_read(path, profile, is_config, sec, &bad_line, &sys_errno);
    if (rc == OL_EIO) {
        return ol__fail(err, OL_ECONFIG, "cannot read %s: %s", path, privfile_strerror(sys_errno));
    }
    if (rc == OL_ECONFIG) {
        /* The line itself is not shown: in a credentials file it may hold a secret. */
        return ol__fail(err, OL_ECONFIG,
                        "%s line %zu is malformed: expected a [section] header, a `key = value` "
                        "line or a comment (# or ;)",
                        path, bad_line);
    }
    return rc;
}

char *credentials_ini_get(const char *path, const char *profile, int is_config, const char *key) {
    ini_section sec;
    size_t bad_line;
    int sys_errno;
    char *out = NULL;
    if (path == NULL || profile == NULL || key == NULL)
        return NULL;
    if (ini_read(path, profile, is_config, &sec, &bad_line, &sys_errno) != 0)
        return NULL;
    const char *v = ini_value(&sec, key);
    if (v != NULL)
        out = strdup(v);
    ini_section_free(&sec);
    return out;
}

/* ---- settings ------------------------------------------------------------------------- */

static const char *home_dir(void) {
    const char *home = env("HOME");
    if (home != NULL)
        return home;
    const struct passwd *pw = getpwuid(getuid());
    return pw != NULL && pw->pw_dir != NULL ? pw->pw_dir : NULL;
}

/* The path in env var name, else ~/.aws/<leaf>; a leading "~/" is expanded as botocore's
 * os.path.expanduser does. */
static int aws_file_path(const char *name, const char *leaf, char **out, char **err) {
    const char *v = env(name);
    const char *home = home_dir();
    if (v != NULL && strncmp(v, "~/", 2) != 0)
        *out = strdup(v);
    else if (home == NULL)
        *out = NULL;
    else if (v != NULL)
        *out = ol__format("%s/%s", home, v + 2);
    else
        *out = ol__format("%s/.aws/%s", home, leaf);
    if (*out != NULL)
        return 0;
    if (home == NULL) {
        return ol__fail(err, OL_ECONFIG,
                        "cannot find the home directory for ~/.aws/%s: set HOME or %s", leaf, name);
    }
    return OL_ENOMEM;
}

/* The one place the run's region is decided: the override (--region, or the pipeline file's
 * "region", which config.c passes through the plan), else AWS_REGION, AWS_DEFAULT_REGION,
 * the profile's region, else OL_DEFAULT_REGION. Everyone else reads the result
 * (aws_settings.region, through aws_client_settings). */
static int resolve_region(const char *override, const ini_section *cfg, aws_settings *out,
                          char **err) {
    const char *region, *source;
    if (override != NULL && override[0] != '\0') {
        region = override;
        source = "--region";
    } else if ((region = env("AWS_REGION")) != NULL) {
        source = "AWS_REGION";
    } else if ((region = env("AWS_DEFAULT_REGION")) != NULL) {
        source = "AWS_DEFAULT_REGION";
    } else if ((region = ini_value(cfg, "region")) != NULL) {
        source = NULL;
    } else {
        region = OL_DEFAULT_REGION;
        source = "default";
    }
    out->region = strdup(region);
    out->region_source =
        source ? strdup(source) : ol__format("profile '%s' in %s", out->profile, out->config_file);
    if (out->region == NULL || out->region_source == NULL)
        return OL_ENOMEM;
    if (!endpoints_region_valid(region)) {
        return ol__fail(err, OL_ECONFIG,
                        "region '%s' (from %s) is not an AWS region name; use one like eu-north-1 "
                        "or us-east-1",
                        region, out->region_source);
    }
    return 0;
}

/* The selected profile: the override (--profile), else AWS_PROFILE, AWS_DEFAULT_PROFILE,
 * else "default". *named: it was chosen by one of those, not by default. */
static const char *select_profile(const char *profile_override, aws_settings *out, int *named) {
    const char *profile;
    *named = 1;
    if (profile_override != NULL && profile_override[0] != '\0') {
        out->profile_override = 1;
        return profile_override;
    }
    if ((profile = env("AWS_PROFILE")) != NULL || (profile = env("AWS_DEFAULT_PROFILE")) != NULL)
        return profile;
    *named = 0;
    return "default";
}

int credentials_settings(const char *profile_override, const char *region_override,
                         aws_settings *out, char **err) {
    ini_section cfg = {0}, cred = {0};
    int named, rc = OL_ENOMEM;
    memset(out, 0, sizeof(*out));
    *err = NULL;
    const char *profile = select_profile(profile_override, out, &named);
    if ((out->profile = strdup(profile)) == NULL)
        goto fail;
    if ((rc = aws_file_path("AWS_CONFIG_FILE", "config", &out->config_file, err)) != 0 ||
        (rc = aws_file_path("AWS_SHARED_CREDENTIALS_FILE", "credentials", &out->credentials_file,
                            err)) != 0 ||
        (rc = ini_load(out->config_file, profile, 1, &cfg, err)) != 0 ||
        (rc = ini_load(out->credentials_file, profile, 0, &cred, err)) != 0)
        goto fail;
    /* As the CLI's ProfileNotFound: a profile asked for by name must exist; "default" may
     * be absent (environment variables may be all there is). */
    if (named && strcmp(profile, "default") != 0 && !cfg.found && !cred.found) {
        rc = ol__fail(err, OL_ECONFIG,
                      "profile '%s' not found in %s or %s; create it with `aws configure "
                      "--profile %s` or pick another with --profile/AWS_PROFILE",
                      profile, out->credentials_file, out->config_file, profile);
        goto fail;
    }
    if ((rc = resolve_region(region_override, &cfg, out, err)) != 0)
        goto fail;
    const char *ep = ini_value(&cfg, "endpoint_url");
    if (ep != NULL && (out->endpoint_url = strdup(ep)) == NULL) {
        rc = OL_ENOMEM;
        goto fail;
    }
    ini_section_free(&cfg);
    ini_section_free(&cred);
    return 0;
fail:
    if (rc == OL_ENOMEM && *err == NULL)
        *err = ol__format("out of memory");
    ini_section_free(&cfg);
    ini_section_free(&cred);
    credentials_settings_free(out);
    return rc;
}

void credentials_settings_free(aws_settings *s) {
    if (s == NULL)
        return;
    free(s->profile);
    free(s->region);
    free(s->region_source);
    free(s->config_file);
    free(s->credentials_file);
    free(s->endpoint_url);
    memset(s, 0, sizeof(*s));
}

/* ---- credential sources --------------------------------------------------------------- */

static int creds_set(credentials *out, const char *ak, const char *sk, const char *token,
                     char *source) {
    out->access_key_id = strdup(ak);
    out->secret_access_key = strdup(sk);
    out->session_token = token ? strdup(token) : NULL;
    out->source = source;
    if (out->access_key_id == NULL || out->secret_access_key == NULL || out->source == NULL ||
        (token != NULL && out->session_token == NULL)) {
        credentials_free(out);
        return OL_ENOMEM;
    }
    return 0;
}

/* Static keys of a profile section: 0 and *used=1 when both are there, 0 and *used=0 when
 * neither is, OL_ECONFIG naming the missing one otherwise. */
static int from_section(const ini_section *sec, const char *profile, const char *path,
                        credentials *out, int *used, char **err) {
    const char *ak = ini_value(sec, "aws_access_key_id");
    const char *sk = ini_value(sec, "aws_secret_access_key");
    const char *token = ini_value(sec, "aws_session_token");
    *used = 0;
    if (ak == NULL && sk == NULL)
        return 0;
    if (ak == NULL || sk == NULL) {
        return ol__fail(err, OL_ECONFIG,
                        "profile '%s' in %s has %s but no %s; add it (e.g. with `aws configure "
                        "--profile %s`)",
                        profile, path, ak ? "aws_access_key_id" : "aws_secret_access_key",
                        ak ? "aws_secret_access_key" : "aws_access_key_id", profile);
    }
    if (token == NULL)
        token = ini_value(sec, "aws_security_token"); /* legacy name botocore still reads */
    *used = 1;
    return creds_set(out, ak, sk, token, ol__format("profile '%s' in %s", profile, path));
}

/* Seconds since the epoch of an ISO 8601 / RFC 3339 time such as 2024-05-01T12:00:00Z,
 * with optional fraction and a Z (or UTC) or +hh:mm offset; -1 when it is not one. */
long long credentials_parse_time(const char *s) {
    struct tm tm;
    int n = 0, off_h = 0, off_m = 0;
    memset(&tm, 0, sizeof(tm));
    if (sscanf(s, "%4d-%2d-%2d%*[Tt ]%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
               &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6 ||
        n == 0)
        return -1;
    s += n;
    if (*s == '.')
        for (s++; isdigit((unsigned char)*s); s++)
            ;
    long long sign = 0;
    if (*s == 'Z' || *s == 'z') {
        s++;
    } else if (strcmp(s, "UTC") == 0) { /* botocore's role cache: strftime %Z of a UTC time */
        s += 3;
    } else if (*s == '+' || *s == '-') {
        sign = *s == '+' ? 1 : -1;
        int m = 0;
        if (sscanf(s + 1, "%2d:%2d%n", &off_h, &off_m, &m) != 2 &&
            sscanf(s + 1, "%2d%2d%n", &off_h, &off_m, &m) != 2)
            return -1;
        s += 1 + m;
    } else {
        return -1;
    }
    if (*s != '\0' || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 ||
        tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return -1;
    return (long long)t - sign * (off_h * 3600LL + off_m * 60LL);
}

/* jansson frees without wiping; the secret strings are overwritten in place first. */
static void json_wipe_decref(json_t *j) {
    const char *keys[] = {"SecretAccessKey", "SessionToken", "Token", "accessToken"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        json_t *v = json_object_get(j, keys[i]);
        if (json_is_string(v))
            OPENSSL_cleanse((char *)json_string_value(v), json_string_length(v));
    }
    json_decref(j);
}

/* credential_process: "Sourcing credentials with an external process" (AWS CLI User Guide):
 * {"Version": 1, "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"}. Container
 * endpoint and instance metadata: the same keys without Version, "Token" for the session
 * token (ECS task role and IMDS "security-credentials" documents). */
int credentials_json_parse(const char *buf, size_t len, const char *what, int need_version,
                           credentials *out, long long *expires, char **err) {
    json_error_t jerr;
    json_t *j = json_loadb(buf, len, 0, &jerr);
    int rc = OL_ECONFIG;
    memset(out, 0, sizeof(*out));
    *expires = 0;
    if (j == NULL || !json_is_object(j)) {
        /* jerr.text may quote the output, which may hold a secret: position only. */
        if (j != NULL)
            ol__fail(err, rc, "the %s gave JSON that is not an object", what);
        else
            ol__fail(err, rc,
                     "the %s gave invalid JSON (line %d, column %d); it must give "
                     "{%s\"AccessKeyId\": ..., \"SecretAccessKey\": ...}",
                     what, jerr.line, jerr.column, need_version ? "\"Version\": 1, " : "");
        goto done;
    }
    json_t *ver = json_object_get(j, "Version");
    if (need_version && (!json_is_integer(ver) || json_integer_value(ver) != 1)) {
        if (json_is_integer(ver))
            ol__fail(err, rc, "the %s printed Version %lld; only Version 1 is supported", what,
                     (long long)json_integer_value(ver));
        else
            ol__fail(err, rc, "the %s printed no integer Version; Version 1 is required", what);
        goto done;
    }
    const char *ak = json_string_value(json_object_get(j, "AccessKeyId"));
    const char *sk = json_string_value(json_object_get(j, "SecretAccessKey"));
    const char *token = json_string_value(json_object_get(j, "SessionToken"));
    if (token == NULL)
        token = json_string_value(json_object_get(j, "Token"));
    json_t *exp = json_object_get(j, "Expiration");
    if (ak == NULL || ak[0] == '\0' || sk == NULL || sk[0] == '\0') {
        ol__fail(err, rc, "the %s gave no %s", what,
                 ak == NULL || ak[0] == '\0' ? "AccessKeyId" : "SecretAccessKey");
        goto done;
    }
    if (exp != NULL && !json_is_null(exp)) {
        const char *e = json_string_value(exp);
        long long t = e ? credentials_parse_time(e) : -1;
        if (t < 0) {
            ol__fail(err, rc, "the %s gave an Expiration that is not an ISO 8601 time", what);
            goto done;
        }
        if (t <= (long long)time(NULL)) {
            rc = ol__fail(err, OL_ECREDS,
                          "the credentials from the %s expired at %s; renew them (e.g. log in "
                          "again) and retry",
                          what, e);
            goto done;
        }
        *expires = t;
    }
    rc = creds_set(out, ak, sk, token && token[0] ? token : NULL, strdup(what));
done:
    if (j != NULL)
        json_wipe_decref(j);
    return rc;
}

int credentials_copy(credentials *dst, const credentials *c) {
    memset(dst, 0, sizeof(*dst));
    return creds_set(dst, c->access_key_id, c->secret_access_key, c->session_token,
                     c->source ? strdup(c->source) : strdup("?"));
}

/* Why a file-based source gave nothing, for the "tried" list. */
static char *tried_file(const char *what, const char *profile, const char *path,
                        const ini_section *sec) {
    return ol__format("%s of profile '%s' in %s (%s)", what, profile, path,
                      sec->file_missing ? "file not found"
                      : sec->found      ? "not set"
                                        : "no such profile");
}

static int from_env(const aws_settings *s, credentials *out, int *used, char **tried, char **err) {
    const char *ak = env("AWS_ACCESS_KEY_ID");
    const char *sk = env("AWS_SECRET_ACCESS_KEY");
    const char *token = env("AWS_SESSION_TOKEN");
    *used = 0;
    if (s->profile_override) {
        list_add(tried, "environment variables (not used: a profile was given with --profile)");
        return 0;
    }
    if (ak == NULL && sk == NULL) {
        list_add(tried, "environment variables AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                        "(not set)");
        return 0;
    }
    if (ak == NULL || sk == NULL) {
        return ol__fail(err, OL_ECREDS,
                        "%s is set but %s is not; set both, or unset %s to use profile '%s'",
                        ak ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY",
                        ak ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID",
                        ak ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY", s->profile);
    }
    if (token == NULL)
        token = env("AWS_SECURITY_TOKEN"); /* legacy name botocore still reads */
    *used = 1;
    return creds_set(out, ak, sk, token, strdup("environment variables (AWS_ACCESS_KEY_ID)"));
}

/* ---- the plan: which source, with what ------------------------------------------------- */

/* Where the planning of one run is: the settings, the profiles visited (a source_profile
 * loop is refused) and what was tried, for the message when nothing is found. */
typedef struct planner {
    const aws_settings *s;
    const char *visited[16];
    size_t n_visited;
    char *tried;
    char **err;
} planner;

static cred_spec *spec_new(cred_kind kind, const char *profile) {
    cred_spec *sp = calloc(1, sizeof(*sp));
    if (sp == NULL)
        return NULL;
    sp->kind = kind;
    if (profile != NULL && (sp->profile = strdup(profile)) == NULL) {
        free(sp);
        return NULL;
    }
    return sp;
}

void credentials_spec_free(cred_spec *sp) {
    if (sp == NULL)
        return;
    credentials_free(&sp->creds);
    credentials_spec_free(sp->base);
    char *strs[] = {sp->source,        sp->profile,        sp->command,        sp->role_arn,
                    sp->session_name,  sp->external_id,    sp->mfa_serial,     sp->token_file,
                    sp->url,           sp->region,         sp->sso_start_url,  sp->sso_account_id,
                    sp->sso_role_name, sp->sso_session,    sp->sso_cache_file, sp->sso_login_cmd,
                    sp->tried,         sp->role_cache_file};
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
        free(strs[i]);
    wipe_free(sp->auth_token);
    free(sp);
}

/* strdup of v into *dst when v is set; nonzero on allocation failure. */
static int dup_opt(char **dst, const char *v) {
    if (v == NULL)
        return 0;
    *dst = strdup(v);
    return *dst == NULL;
}

/* A profile's sections in both files. */
typedef struct profile_secs {
    const char *name;
    ini_section cfg, cred;
} profile_secs;

static void profile_secs_free(profile_secs *p) {
    ini_section_free(&p->cfg);
    ini_section_free(&p->cred);
}

static int profile_load(planner *pl, const char *name, profile_secs *p) {
    memset(p, 0, sizeof(*p));
    p->name = name;
    int rc = ini_load(pl->s->credentials_file, name, 0, &p->cred, pl->err);
    if (rc == 0)
        rc = ini_load(pl->s->config_file, name, 1, &p->cfg, pl->err);
    return rc;
}

/* A key of the profile: the config file's, else the credentials file's. */
static const char *profile_get(const profile_secs *p, const char *key) {
    const char *v = ini_value(&p->cfg, key);
    return v != NULL ? v : ini_value(&p->cred, key);
}

static int plan_profile(planner *pl, const char *name, int as_source, cred_spec **out);
static int plan_env_web_identity(planner *pl, cred_spec **out);

static unsigned process_timeout_ms(void) {
    const char *v = env("OPSLINE_CREDENTIAL_TIMEOUT");
    long t = v ? atol(v) : 0;
    return t > 0 && t <= 3600 ? (unsigned)t * 1000u : 60000u;
}

/* Container endpoint (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI on ECS, _FULL_URI on EKS Pod
 * Identity / Greengrass), or NULL *out when neither is set. A full URI must be https or point
 * at a loopback / the ECS and EKS link-local hosts ("Container credential provider", AWS
 * SDKs and Tools Reference Guide). */
static int plan_container(planner *pl, const char *profile, cred_spec **out) {
    const char *rel = env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    const char *full = env("AWS_CONTAINER_CREDENTIALS_FULL_URI");
    *out = NULL;
    if (rel == NULL && full == NULL)
        return 0;
    char *url =
        rel ? ol__format("http://169.254.170.2%s%s", rel[0] == '/' ? "" : "/", rel) : strdup(full);
    if (url == NULL)
        return OL_ENOMEM;
    if (rel == NULL) {
        CURLU *u = curl_url();
        char *scheme = NULL, *host = NULL;
        int ok = u != NULL && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
                 curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
                 curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK;
        int allowed =
            ok && (strcmp(scheme, "https") == 0 || strcmp(host, "localhost") == 0 ||
                   strncmp(host, "127.", 4) == 0 || strcmp(host, "[::1]") == 0 ||
                   strcmp(host, "169.254.170.2") == 0 || strcmp(host, "169.254.170.23") == 0 ||
                   strcmp(host, "[fd00:ec2::23]") == 0);
        curl_free(scheme);
        curl_free(host);
        curl_url_cleanup(u);
        if (!allowed) {
            free(url);
            return ol__fail(pl->err, OL_ECONFIG,
                            "AWS_CONTAINER_CREDENTIALS_FULL_URI must be an https URL or point at "
                            "a loopback address (or the ECS/EKS credential hosts)");
        }
    }
    cred_spec *sp = spec_new(CRED_CONTAINER, profile);
    if (sp == NULL) {
        free(url);
        return OL_ENOMEM;
    }
    sp->url = url;
    sp->timeout_ms = 5000;
    int oom = dup_opt(&sp->token_file, env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")) ||
              dup_opt(&sp->auth_token, env("AWS_CONTAINER_AUTHORIZATION_TOKEN")) ||
              (sp->source = ol__format("the container credentials endpoint (%s)",
                                       rel ? "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"
                                           : "AWS_CONTAINER_CREDENTIALS_FULL_URI")) == NULL;
    if (oom) {
        credentials_spec_free(sp);
        return OL_ENOMEM;
    }
    *out = sp;
    return 0;
}

/* EC2 instance metadata, IMDSv2 ("Use the Instance Metadata Service", EC2 User Guide); off
 * with AWS_EC2_METADATA_DISABLED=true; endpoint AWS_EC2_METADATA_SERVICE_ENDPOINT. */
static int plan_imds(planner *pl, const char *profile, cred_spec **out) {
    const char *off = env("AWS_EC2_METADATA_DISABLED");
    const char *ep = env("AWS_EC2_METADATA_SERVICE_ENDPOINT");
    *out = NULL;
    if (off != NULL && strcasecmp(off, "true") == 0) {
        list_add(&pl->tried, "EC2 instance metadata (AWS_EC2_METADATA_DISABLED=true)");
        return 0;
    }
    cred_spec *sp = spec_new(CRED_IMDS, profile);
    if (sp == NULL)
        return OL_ENOMEM;
    size_t n = ep ? strlen(ep) : 0;
    sp->url = ep ? ol__format("%.*s", (int)(n > 0 && ep[n - 1] == '/' ? n - 1 : n), ep)
                 : strdup("http://169.254.169.254");
    sp->timeout_ms = 1000; /* botocore's metadata_service_timeout */
    sp->source = ol__format("EC2 instance metadata (%s)", sp->url ? sp->url : "");
    /* Reached with the default endpoint by falling through the chain, a failure means
     * "nothing configured" (provider.c says so, listing what was tried). */
    if (sp->url == NULL || sp->source == NULL ||
        (ep == NULL && profile == NULL && dup_opt(&sp->tried, pl->tried ? pl->tried : "nothing"))) {
        credentials_spec_free(sp);
        return OL_ENOMEM;
    }
    *out = sp;
    return 0;
}

/* credential_source = Environment | Ec2InstanceMetadata | EcsContainer. */
static int plan_credential_source(planner *pl, const profile_secs *p, const char *src,
                                  cred_spec **out) {
    int used = 0, rc;
    *out = NULL;
    if (strcmp(src, "Environment") == 0) {
        cred_spec *sp = spec_new(CRED_STATIC, p->name);
        if (sp == NULL)
            return OL_ENOMEM;
        aws_settings s2 = *pl->s;
        s2.profile_override = 0;
        char *tried = NULL;
        rc = from_env(&s2, &sp->creds, &used, &tried, pl->err);
        free(tried);
        if (rc == 0 && !used)
            rc = ol__fail(pl->err, OL_ECREDS,
                          "profile '%s' has credential_source = Environment but "
                          "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set",
                          p->name);
        if (rc != 0) {
            credentials_spec_free(sp);
            return rc;
        }
        *out = sp;
        return 0;
    }
    if (strcmp(src, "EcsContainer") == 0) {
        rc = plan_container(pl, p->name, out);
        if (rc == 0 && *out == NULL)
            rc = ol__fail(pl->err, OL_ECREDS,
                          "profile '%s' has credential_source = EcsContainer but neither "
                          "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI nor _FULL_URI is set",
                          p->name);
        return rc;
    }
    if (strcmp(src, "Ec2InstanceMetadata") == 0) {
        rc = plan_imds(pl, p->name, out);
        if (rc == 0 && *out == NULL)
            rc = ol__fail(pl->err, OL_ECREDS,
                          "profile '%s' has credential_source = Ec2InstanceMetadata but "
                          "AWS_EC2_METADATA_DISABLED is true",
                          p->name);
        return rc;
    }
    return ol__fail(pl->err, OL_ECONFIG,
                    "profile '%s' has credential_source = %s; use Environment, "
                    "Ec2InstanceMetadata or EcsContainer",
                    p->name, src);
}

/* duration_seconds: 900 .. 43200 (STS AssumeRole DurationSeconds). */
static int parse_duration(planner *pl, const profile_secs *p, long *out) {
    const char *v = profile_get(p, "duration_seconds");
    char *end;
    *out = 0;
    if (v == NULL)
        return 0;
    long d = strtol(v, &end, 10);
    if (*end != '\0' || d < 900 || d > 43200)
        return ol__fail(pl->err, OL_ECONFIG,
                        "profile '%s': duration_seconds = %s is not a number of seconds from "
                        "900 to 43200",
                        p->name, v);
    *out = d;
    return 0;
}

/* ~/.aws/<dir>/<SHA-1 hex of key>.json: how botocore names its cache files. NULL: no home
 * directory, or out of memory. */
static char *aws_cache_path(const char *dir, const char *key) {
    unsigned char md[SHA_DIGEST_LENGTH];
    char hex[2 * SHA_DIGEST_LENGTH + 1];
    const char *home = home_dir();
    if (home == NULL || SHA1((const unsigned char *)key, strlen(key), md) == NULL)
        return NULL;
    for (size_t i = 0; i < SHA_DIGEST_LENGTH; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return ol__format("%s/.aws/%s/%s.json", home, dir, hex);
}

/* jansson's JSON_ENSURE_ASCII text spelled as Python's json.dumps spells it, in a new
 * string: the hex digits of \u escapes in lower case (\u00e9, jansson writes \u00E9) and
 * DEL escaped (Python escapes everything outside space..tilde; jansson leaves 0x7f
 * as is). The rest is the same in both: short escapes for \b \f \n \r \t, surrogate
 * pairs above U+FFFF, "/" unescaped. NULL: out of memory. */
static char *python_json_spelling(const char *text) {
    size_t dels = 0, len = strlen(text);
    for (const char *p = text; *p != '\0'; p++)
        dels += *p == 0x7f;
    char *out = malloc(len + 5 * dels + 1), *o = out;
    if (out == NULL)
        return NULL;
    for (const char *p = text; *p != '\0'; p++) {
        if (*p == 0x7f) {
            o = stpcpy(o, "\\u007f");
        } else if (*p == '\\' && p[1] != '\0') {
            *o++ = *p++;
            *o++ = *p; /* the escaped character: a backslash here is not an escape's start */
            if (*p == 'u')
                for (int i = 0; i < 4 && p[1] != '\0'; i++)
                    *o++ = (char)tolower((unsigned char)*++p);
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
    return out;
}

/* ~/.aws/cli/cache/<key>.json for an assume-role spec, the key as botocore's
 * BaseAssumeRoleCredentialFetcher._create_cache_key makes it: the SHA-1 of
 * json.dumps(args, sort_keys=True), args being the AssumeRole arguments the profile sets (a
 * generated session name is left out). jansson writes the ", " and ": " separators and
 * sorted keys as Python does; python_json_spelling makes its escapes Python's too, so a
 * role whose settings hold non-ASCII text shares the AWS CLI's cache as well. NULL: no
 * home directory, or out of memory (no cache then). */
static char *role_cache_path(const cred_spec *sp, const char *configured_session) {
    json_t *args = json_object();
    if (args == NULL)
        return NULL;
    int bad = json_object_set_new(args, "RoleArn", json_string(sp->role_arn)) != 0;
    if (configured_session != NULL)
        bad |= json_object_set_new(args, "RoleSessionName", json_string(configured_session));
    if (sp->external_id != NULL)
        bad |= json_object_set_new(args, "ExternalId", json_string(sp->external_id));
    if (sp->mfa_serial != NULL)
        bad |= json_object_set_new(args, "SerialNumber", json_string(sp->mfa_serial));
    if (sp->duration_s > 0)
        bad |= json_object_set_new(args, "DurationSeconds", json_integer(sp->duration_s));
    char *text = bad ? NULL : json_dumps(args, JSON_SORT_KEYS | JSON_ENSURE_ASCII);
    json_decref(args);
    char *key = text != NULL ? python_json_spelling(text) : NULL;
    char *path = key != NULL ? aws_cache_path("cli/cache", key) : NULL;
    free(key);
    free(text);
    return path;
}

/* botocore's expiry window for cached role sessions (CachedCredentialFetcher). */
#define ROLE_CACHE_WINDOW_S 900

/* A JSON file that holds a secret (a cached session, an SSO token): read whole (a regular
 * file only, size-capped), parsed, and the text wiped. Returns privfile_read's code, errno
 * set; on 0, *doc is NULL when the text is not JSON, and *jerr says where. */
static int secret_json_load(const char *path, json_t **doc, json_error_t *jerr) {
    char *text = NULL;
    size_t len = 0;
    *doc = NULL;
    int rc = privfile_read(path, &text, &len);
    if (rc != 0)
        return rc;
    *doc = json_loadb(text, len, 0, jerr);
    OPENSSL_cleanse(text, len);
    free(text);
    return 0;
}

int credentials_role_cache_read(const char *path, long long now, const char *source,
                                credentials *out, long long *expires) {
    memset(out, 0, sizeof(*out));
    *expires = 0;
    json_error_t jerr;
    json_t *j = NULL;
    if (path == NULL || secret_json_load(path, &j, &jerr) != 0)
        return OL_ENOENT;
    json_t *c = json_object_get(j, "Credentials");
    const char *ak = json_string_value(json_object_get(c, "AccessKeyId"));
    const char *sk = json_string_value(json_object_get(c, "SecretAccessKey"));
    const char *token = json_string_value(json_object_get(c, "SessionToken"));
    const char *exp = json_string_value(json_object_get(c, "Expiration"));
    long long t = exp != NULL ? credentials_parse_time(exp) : -1;
    int rc = OL_ENOENT;
    if (ak != NULL && ak[0] != '\0' && sk != NULL && sk[0] != '\0' && token != NULL &&
        token[0] != '\0' && t - now >= ROLE_CACHE_WINDOW_S) {
        char *src = ol__format("%s, a session cached in %s", source ? source : "a role", path);
        rc = src != NULL ? creds_set(out, ak, sk, token, src) : OL_ENOMEM;
        if (rc == 0)
            *expires = t;
    }
    if (c != NULL)
        json_wipe_decref(json_incref(c)); /* wiped; j keeps its reference */
    json_decref(j);
    return rc == 0 ? 0 : rc == OL_ENOMEM ? OL_ENOMEM : OL_ENOENT;
}

int credentials_role_cache_write(const char *path, const credentials *cr, long long expires) {
    if (path == NULL || cr == NULL || cr->access_key_id == NULL || cr->secret_access_key == NULL ||
        cr->session_token == NULL || expires <= 0)
        return OL_EINVAL;
    /* botocore's format for the time: strftime("%Y-%m-%dT%H:%M:%S%Z") of a UTC datetime. */
    char when[32];
    time_t t = (time_t)expires;
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL || strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SUTC", &tm) == 0)
        return OL_EINVAL;
    json_t *doc = json_pack("{s:{s:s, s:s, s:s, s:s}}", "Credentials", "AccessKeyId",
                            cr->access_key_id, "SecretAccessKey", cr->secret_access_key,
                            "SessionToken", cr->session_token, "Expiration", when);
    char *text = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
    if (doc != NULL)
        json_wipe_decref(json_incref(json_object_get(doc, "Credentials")));
    json_decref(doc);
    if (text == NULL)
        return OL_ENOMEM;
    char *dir = strdup(path);
    char *slash = dir != NULL ? strrchr(dir, '/') : NULL;
    int rc = OL_ENOMEM;
    if (slash != NULL) {
        *slash = '\0';
        rc = privfile_mkdirs(dir);
        if (rc == 0)
            rc = privfile_write(path, text, strlen(text));
    }
    free(dir);
    OPENSSL_cleanse(text, strlen(text));
    free(text);
    return rc;
}

/* Whether the role's cache holds a session usable now (planning: no MFA prompt needed). */
static int role_cache_holds_session(const cred_spec *sp) {
    credentials c;
    long long exp;
    if (credentials_role_cache_read(sp->role_cache_file, (long long)time(NULL), NULL, &c, &exp) !=
        0)
        return 0;
    credentials_free(&c);
    return 1;
}

/* Nonzero when a terminal is there to ask for an MFA code. */
static int have_tty(void) {
    FILE *f = fopen("/dev/tty", "r+");
    if (f == NULL)
        return 0;
    fclose(f);
    return 1;
}

/* A role profile may name itself as its source_profile: its own static keys assume it. */
static int plan_self_source(planner *pl, const profile_secs *p, cred_spec **base) {
    int used = 0;
    if ((*base = spec_new(CRED_STATIC, p->name)) == NULL)
        return OL_ENOMEM;
    int rc =
        from_section(&p->cred, p->name, pl->s->credentials_file, &(*base)->creds, &used, pl->err);
    if (rc == 0 && !used)
        rc = from_section(&p->cfg, p->name, pl->s->config_file, &(*base)->creds, &used, pl->err);
    if (rc == 0 && !used)
        rc = ol__fail(pl->err, OL_ECONFIG,
                      "profile '%s' names itself as source_profile but has no "
                      "aws_access_key_id / aws_secret_access_key",
                      p->name);
    return rc;
}

static int plan_role(planner *pl, const profile_secs *p, const char *role_arn, cred_spec **out) {
    const char *src_profile = profile_get(p, "source_profile");
    const char *cred_source = profile_get(p, "credential_source");
    cred_spec *sp = NULL, *base = NULL;
    long duration = 0;
    int rc;
    *out = NULL;
    if ((src_profile == NULL) == (cred_source == NULL))
        return ol__fail(pl->err, OL_ECONFIG,
                        "profile '%s' has role_arn and %s; give exactly one of source_profile "
                        "(the profile whose credentials assume the role) or credential_source",
                        p->name,
                        src_profile ? "both source_profile and credential_source"
                                    : "neither source_profile nor credential_source");
    if ((rc = parse_duration(pl, p, &duration)) != 0)
        return rc;
    if (src_profile != NULL && strcmp(src_profile, p->name) == 0) {
        rc = plan_self_source(pl, p, &base);
    } else if (src_profile != NULL) {
        rc = plan_profile(pl, src_profile, 1, &base);
    } else {
        rc = plan_credential_source(pl, p, cred_source, &base);
    }
    if (rc != 0)
        goto fail;
    rc = OL_ENOMEM;
    if ((sp = spec_new(CRED_ASSUME_ROLE, p->name)) == NULL)
        goto fail;
    sp->base = base;
    base = NULL;
    const char *session = profile_get(p, "role_session_name");
    const char *mfa = profile_get(p, "mfa_serial");
    if (dup_opt(&sp->role_arn, role_arn) ||
        dup_opt(&sp->external_id, profile_get(p, "external_id")) || dup_opt(&sp->mfa_serial, mfa) ||
        dup_opt(&sp->region, pl->s->region))
        goto fail;
    sp->session_name =
        session ? strdup(session) : ol__format("opsline-%lld", (long long)time(NULL));
    sp->source = ol__format("role %s of profile '%s' (assumed with %s)", role_arn, p->name,
                            sp->base->source ? sp->base->source : "?");
    if (sp->session_name == NULL || sp->source == NULL)
        goto fail;
    sp->duration_s = duration;
    sp->role_cache_file = role_cache_path(sp, session);
    if (mfa != NULL && !have_tty() && !role_cache_holds_session(sp)) {
        rc = ol__fail(pl->err, OL_ECREDS,
                      "profile '%s' needs an MFA code (mfa_serial = %s) and there is no terminal "
                      "to ask for it on, nor a session cached in ~/.aws/cli/cache; run opsline "
                      "(or `aws sts get-caller-identity --profile %s`) in a terminal first, or "
                      "use a profile without mfa_serial (e.g. a CI role)",
                      p->name, mfa, p->name);
        goto fail;
    }
    *out = sp;
    return 0;
fail:
    credentials_spec_free(base);
    credentials_spec_free(sp);
    return rc;
}

static int plan_web_identity(planner *pl, const char *profile, const char *role_arn,
                             const char *token_file, const char *session, cred_spec **out) {
    cred_spec *sp = spec_new(CRED_WEB_IDENTITY, profile);
    *out = NULL;
    if (sp == NULL)
        return OL_ENOMEM;
    if (dup_opt(&sp->role_arn, role_arn) || dup_opt(&sp->token_file, token_file) ||
        dup_opt(&sp->region, pl->s->region))
        goto oom;
    sp->session_name =
        session ? strdup(session) : ol__format("opsline-%lld", (long long)time(NULL));
    sp->source =
        profile ? ol__format("role %s of profile '%s' (web identity token %s)", role_arn, profile,
                             token_file)
                : ol__format("role %s (web identity token %s, AWS_ROLE_ARN)", role_arn, token_file);
    if (sp->session_name == NULL || sp->source == NULL)
        goto oom;
    *out = sp;
    return 0;
oom:
    credentials_spec_free(sp);
    return OL_ENOMEM;
}

/* The token cache file of an SSO login: ~/.aws/sso/cache/<sha1 hex of key>.json, the key
 * being the sso_session name, or the start URL for legacy profiles (botocore
 * SSOTokenLoader._generate_cache_key). */
static char *sso_cache_path(const char *key) {
    return aws_cache_path("sso/cache", key);
}

/* The [sso-session NAME] section a profile names: its start URL and region replace the
 * profile's (which may only repeat them). */
static int sso_session_read(planner *pl, const profile_secs *p, const char *session,
                            ini_section *ss, const char **start, const char **region) {
    int rc = ini_load(pl->s->config_file, session, INI_SSO_SESSION, ss, pl->err);
    if (rc != 0)
        return rc;
    if (!ss->found)
        return ol__fail(pl->err, OL_ECONFIG,
                        "profile '%s' names sso_session = %s but %s has no [sso-session %s] "
                        "section; run `aws configure sso --profile %s`",
                        p->name, session, pl->s->config_file, session, p->name);
    const char *s_start = ini_value(ss, "sso_start_url");
    const char *s_region = ini_value(ss, "sso_region");
    if ((*start && s_start && strcmp(*start, s_start) != 0) ||
        (*region && s_region && strcmp(*region, s_region) != 0))
        return ol__fail(pl->err, OL_ECONFIG,
                        "profile '%s' and [sso-session %s] give different sso_start_url or "
                        "sso_region; keep them in the sso-session section only",
                        p->name, session);
    *start = s_start;
    *region = s_region;
    return 0;
}

static int plan_sso(planner *pl, const profile_secs *p, cred_spec **out) {
    const char *session = profile_get(p, "sso_session");
    const char *start = profile_get(p, "sso_start_url");
    const char *region = profile_get(p, "sso_region");
    const char *account = profile_get(p, "sso_account_id");
    const char *role = profile_get(p, "sso_role_name");
    ini_section ss = {0};
    cred_spec *sp = NULL;
    int rc;
    *out = NULL;
    if (session != NULL && (rc = sso_session_read(pl, p, session, &ss, &start, &region)) != 0)
        goto done;
    const char *missing = start == NULL     ? "sso_start_url"
                          : region == NULL  ? "sso_region"
                          : account == NULL ? "sso_account_id"
                          : role == NULL    ? "sso_role_name"
                                            : NULL;
    if (missing != NULL) {
        rc = ol__fail(pl->err, OL_ECONFIG,
                      "profile '%s' is an IAM Identity Center (SSO) profile without %s; run "
                      "`aws configure sso --profile %s`",
                      p->name, missing, p->name);
        goto done;
    }
    rc = OL_ENOMEM;
    if ((sp = spec_new(CRED_SSO, p->name)) == NULL)
        goto done;
    const char *ep = env("AWS_ENDPOINT_URL_SSO");
    if (ep == NULL)
        ep = env("AWS_ENDPOINT_URL");
    sp->url = ep ? strdup(ep) : ol__format("https://portal.sso.%s.amazonaws.com", region);
    sp->sso_cache_file = sso_cache_path(session ? session : start);
    sp->sso_login_cmd = ol__format("aws sso login --profile %s", p->name);
    sp->source = ol__format("IAM Identity Center role %s in account %s (profile '%s')", role,
                            account, p->name);
    sp->timeout_ms = 10000;
    if (sp->url == NULL || sp->sso_cache_file == NULL || sp->sso_login_cmd == NULL ||
        sp->source == NULL || dup_opt(&sp->sso_start_url, start) ||
        dup_opt(&sp->sso_account_id, account) || dup_opt(&sp->sso_role_name, role) ||
        dup_opt(&sp->sso_session, session) || dup_opt(&sp->region, region))
        goto done;
    /* Checked now, so that a run with no login stops before its first request. */
    char *token = NULL;
    rc = credentials_sso_token(sp, &token, pl->err);
    wipe_free(token);
    if (rc != 0)
        goto done;
    *out = sp;
    sp = NULL;
done:
    ini_section_free(&ss);
    credentials_spec_free(sp);
    return rc;
}

int credentials_sso_token(const cred_spec *sp, char **token, char **err) {
    json_error_t jerr;
    *token = NULL;
    /* Read as the secret it is (a regular file only: a FIFO planted in the cache would
     * otherwise block the run; size-capped; the copy wiped), then parsed. A parse error is
     * reported by position only: jansson's text quotes the input, here a token. */
    json_t *j = NULL;
    int read_rc = secret_json_load(sp->sso_cache_file, &j, &jerr);
    if (read_rc != 0 && read_rc != OL_ENOENT)
        return ol__fail(err, OL_ECREDS,
                        "cannot read the IAM Identity Center (SSO) token cache %s of profile "
                        "'%s': %s; remove it and run `%s`",
                        sp->sso_cache_file, sp->profile,
                        read_rc == OL_ERANGE ? "larger than the 64 MiB a token cache can be"
                                             : privfile_strerror(errno),
                        sp->sso_login_cmd);
    const char *tok = j ? json_string_value(json_object_get(j, "accessToken")) : NULL;
    const char *exp = j ? json_string_value(json_object_get(j, "expiresAt")) : NULL;
    long long t = exp ? credentials_parse_time(exp) : -1;
    int rc = 0;
    if (read_rc == 0 && j == NULL)
        rc = ol__fail(err, OL_ECREDS,
                      "the IAM Identity Center (SSO) token cache %s of profile '%s' is not JSON "
                      "(line %d column %d); run `%s` to write it again",
                      sp->sso_cache_file, sp->profile, jerr.line, jerr.column, sp->sso_login_cmd);
    else if (tok == NULL || tok[0] == '\0')
        rc = ol__fail(err, OL_ECREDS,
                      "no IAM Identity Center (SSO) login found for profile '%s' (%s); run `%s`",
                      sp->profile, sp->sso_cache_file, sp->sso_login_cmd);
    else if (t <= (long long)time(NULL))
        rc = ol__fail(err, OL_ECREDS,
                      "the IAM Identity Center (SSO) login of profile '%s' has expired%s%s; run "
                      "`%s`",
                      sp->profile, exp ? " at " : "", exp ? exp : "", sp->sso_login_cmd);
    else if ((*token = strdup(tok)) == NULL)
        rc = OL_ENOMEM;
    if (j != NULL)
        json_wipe_decref(j);
    return rc;
}

/* Static keys, credential_process, or nothing (*out NULL), from one file's section. */
static int plan_section(planner *pl, const profile_secs *p, const ini_section *sec,
                        const char *path, int keys, cred_spec **out) {
    *out = NULL;
    const char *cmd = ini_value(sec, "credential_process");
    if (!keys && cmd != NULL) {
        cred_spec *sp = spec_new(CRED_PROCESS, p->name);
        if (sp == NULL || (sp->command = strdup(cmd)) == NULL ||
            (sp->source = ol__format("credential_process of profile '%s' in %s", p->name, path)) ==
                NULL) {
            credentials_spec_free(sp);
            return OL_ENOMEM;
        }
        sp->timeout_ms = process_timeout_ms();
        *out = sp;
        return 0;
    }
    if (!keys)
        return 0;
    int used = 0;
    cred_spec *sp = spec_new(CRED_STATIC, p->name);
    if (sp == NULL)
        return OL_ENOMEM;
    int rc = from_section(sec, p->name, path, &sp->creds, &used, pl->err);
    if (rc == 0 && used && (sp->source = strdup(sp->creds.source)) == NULL)
        rc = OL_ENOMEM;
    if (rc != 0 || !used) {
        credentials_spec_free(sp);
        return rc;
    }
    *out = sp;
    return 0;
}

/* Enter profile name on the source_profile chain; a loop or a chain too long is refused. */
static int visit(planner *pl, const char *name) {
    for (size_t i = 0; i < pl->n_visited; i++)
        if (strcmp(pl->visited[i], name) == 0)
            return ol__fail(pl->err, OL_ECONFIG,
                            "the source_profile settings of profile '%s' form a loop back to "
                            "'%s'; make the chain end at a profile with keys, SSO or "
                            "credential_source",
                            pl->visited[0], name);
    if (pl->n_visited == sizeof(pl->visited) / sizeof(pl->visited[0]))
        return ol__fail(pl->err, OL_ECONFIG, "the source_profile chain of '%s' is too long",
                        pl->visited[0]);
    pl->visited[pl->n_visited++] = name;
    return 0;
}

/* The profile's own sources, in the SDKs' order; *out NULL when it has none. as_source: the
 * profile is a source_profile (a loop through it is refused). */
static int plan_profile(planner *pl, const char *name, int as_source, cred_spec **out) {
    profile_secs p;
    int rc;
    *out = NULL;
    if ((rc = visit(pl, name)) != 0)
        return rc;
    if ((rc = profile_load(pl, name, &p)) != 0)
        goto done;
    if (as_source && !p.cfg.found && !p.cred.found) {
        rc = ol__fail(pl->err, OL_ECONFIG,
                      "source_profile '%s' (of profile '%s') is in neither %s nor %s", name,
                      pl->visited[pl->n_visited - 2], pl->s->config_file, pl->s->credentials_file);
        goto done;
    }
    const char *role_arn = profile_get(&p, "role_arn");
    const char *wit = profile_get(&p, "web_identity_token_file");
    int sso = profile_get(&p, "sso_session") != NULL || profile_get(&p, "sso_start_url") != NULL ||
              profile_get(&p, "sso_account_id") != NULL;
    if (role_arn != NULL && wit != NULL)
        rc = plan_web_identity(pl, name, role_arn, wit, profile_get(&p, "role_session_name"), out);
    else if (role_arn != NULL)
        rc = plan_role(pl, &p, role_arn, out);
    /* botocore: AWS_ROLE_ARN comes right after the profile's own role settings. */
    if (rc == 0 && *out == NULL && !as_source)
        rc = plan_env_web_identity(pl, out);
    if (rc == 0 && *out == NULL && sso)
        rc = plan_sso(pl, &p, out);
    if (rc != 0 || *out != NULL)
        goto done;
    rc = plan_section(pl, &p, &p.cred, pl->s->credentials_file, 1, out);
    if (rc == 0 && *out == NULL)
        rc = plan_section(pl, &p, &p.cfg, pl->s->config_file, 0, out);
    if (rc == 0 && *out == NULL)
        rc = plan_section(pl, &p, &p.cred, pl->s->credentials_file, 0, out);
    if (rc == 0 && *out == NULL)
        rc = plan_section(pl, &p, &p.cfg, pl->s->config_file, 1, out);
    if (rc == 0 && *out == NULL && as_source)
        rc = ol__fail(pl->err, OL_ECREDS,
                      "source_profile '%s' has no credentials: give it aws_access_key_id and "
                      "aws_secret_access_key, credential_process, SSO settings or a role_arn",
                      name);
    if (rc == 0 && *out == NULL) {
        char *t1 = tried_file("aws_access_key_id", name, pl->s->credentials_file, &p.cred);
        char *t2 = tried_file("role_arn, sso_*, credential_process or aws_access_key_id", name,
                              pl->s->config_file, &p.cfg);
        if (t1 != NULL)
            list_add(&pl->tried, t1);
        if (t2 != NULL)
            list_add(&pl->tried, t2);
        free(t1);
        free(t2);
    }
done:
    pl->n_visited--;
    profile_secs_free(&p);
    return rc;
}

/* Web identity from AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE (EKS IRSA, GitHub Actions). */
static int plan_env_web_identity(planner *pl, cred_spec **out) {
    const char *role = env("AWS_ROLE_ARN");
    const char *file = env("AWS_WEB_IDENTITY_TOKEN_FILE");
    *out = NULL;
    if (role == NULL && file == NULL)
        return 0;
    if (role == NULL || file == NULL)
        return ol__fail(pl->err, OL_ECONFIG, "%s is set but %s is not; set both for web identity",
                        role ? "AWS_ROLE_ARN" : "AWS_WEB_IDENTITY_TOKEN_FILE",
                        role ? "AWS_WEB_IDENTITY_TOKEN_FILE" : "AWS_ROLE_ARN");
    return plan_web_identity(pl, NULL, role, file, env("AWS_ROLE_SESSION_NAME"), out);
}

int credentials_plan(const aws_settings *s, cred_spec **out, char **err) {
    planner pl = {.s = s, .err = err};
    cred_spec *sp = NULL;
    int used = 0, rc;
    *out = NULL;
    *err = NULL;
    if ((sp = spec_new(CRED_STATIC, NULL)) == NULL)
        return OL_ENOMEM;
    rc = from_env(s, &sp->creds, &used, &pl.tried, err);
    if (rc == 0 && used && (sp->source = strdup(sp->creds.source)) == NULL)
        rc = OL_ENOMEM;
    if (rc != 0 || used)
        goto done;
    credentials_spec_free(sp);
    sp = NULL;
    rc = plan_profile(&pl, s->profile, 0, &sp);
    if (rc == 0 && sp == NULL)
        rc = plan_container(&pl, NULL, &sp);
    if (rc == 0 && sp == NULL)
        rc = plan_imds(&pl, NULL, &sp);
    if (rc == 0 && sp == NULL) {
        int named = strcmp(s->profile, "default") != 0;
        rc = ol__fail(err, OL_ECREDS,
                      "no AWS credentials found. Tried: %s. Run `aws configure%s%s` (or `aws "
                      "configure sso`), set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or add "
                      "a credential_process or role_arn to the profile",
                      pl.tried ? pl.tried : "nothing", named ? " --profile " : "",
                      named ? s->profile : "");
    }
done:
    if (rc == OL_ENOMEM && *err == NULL)
        *err = ol__format("out of memory");
    free(pl.tried);
    if (rc != 0) {
        credentials_spec_free(sp);
        return rc;
    }
    *out = sp;
    return 0;
}

const char *credentials_source(const credentials *c) {
    return c != NULL ? c->source : NULL;
}

void credentials_free(credentials *c) {
    if (c == NULL)
        return;
    wipe_free(c->access_key_id);
    wipe_free(c->secret_access_key);
    wipe_free(c->session_token);
    free(c->source);
    memset(c, 0, sizeof(*c));
}
