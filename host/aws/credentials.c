/* credentials: the AWS CLI's way of finding who we are and where we go. It owns the
 * selection of the profile (--profile, AWS_PROFILE, AWS_DEFAULT_PROFILE, "default"), the
 * paths of the shared credentials and config files, the reading of those INI files (the
 * subset botocore's configparser accepts), the credential chain (environment variables,
 * credentials file, credential_process, config file) and the region. Secrets read from
 * files, environment or credential_process are wiped with OPENSSL_cleanse and never end up
 * in a message. Reference: "Configuration and credential file settings" and "Sourcing
 * credentials with an external process" (AWS CLI User Guide), botocore credentials.py. */
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "../privfile.h"
#include "endpoints.h"
#include "opsline/opsline.h"

#define MAX_PROCESS_OUTPUT (1024 * 1024)

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
 * with optional fraction and a Z or +hh:mm offset; -1 when it is not one. */
static long long parse_iso8601(const char *s) {
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

/* Runs cmd through /bin/sh -c (stderr goes to ours, so its prompts and errors are seen)
 * and returns its stdout in *buf. */
static int process_run(const char *cmd, const char *what, char **buf, size_t *len, char **err) {
    size_t cap = 4096;
    char *b = malloc(cap);
    *buf = NULL;
    *len = 0;
    if (b == NULL)
        return OL_ENOMEM;
    fflush(NULL);
    FILE *p = popen(cmd, "r");
    if (p == NULL) {
        int e = errno;
        free(b);
        return ol__fail(err, OL_ECREDS, "cannot run the %s: %s", what, strerror(e));
    }
    size_t n = 0, got;
    int rc = 0;
    while ((got = fread(b + n, 1, cap - n - 1, p)) > 0) {
        n += got;
        if (n + 1 < cap)
            continue;
        if (cap >= MAX_PROCESS_OUTPUT) {
            rc = OL_ECONFIG;
            break;
        }
        char *nb = malloc(cap * 2);
        if (nb == NULL) {
            rc = OL_ENOMEM;
            break;
        }
        memcpy(nb, b, n);
        OPENSSL_cleanse(b, cap);
        free(b);
        b = nb;
        cap *= 2;
    }
    b[n] = '\0';
    int status = pclose(p);
    if (rc == 0 && status == -1) {
        rc = ol__fail(err, OL_ECREDS, "cannot wait for the %s: %s", what, strerror(errno));
    } else if (rc == 0 && WIFSIGNALED(status)) {
        rc = ol__fail(err, OL_ECREDS, "the %s was killed by signal %d", what, WTERMSIG(status));
    } else if (rc == 0 && WIFEXITED(status) && WEXITSTATUS(status) != 0) {
        rc = ol__fail(
            err, OL_ECREDS, "the %s exited with status %d%s; its error output, if any, is above",
            what, WEXITSTATUS(status), WEXITSTATUS(status) == 127 ? " (command not found)" : "");
    } else if (rc == OL_ECONFIG) {
        ol__fail(err, rc, "the %s printed more than %d bytes", what, MAX_PROCESS_OUTPUT);
    }
    if (rc != 0) {
        OPENSSL_cleanse(b, cap);
        free(b);
        return rc;
    }
    *buf = b;
    *len = n;
    return 0;
}

/* jansson frees without wiping; the secret strings are overwritten in place first. */
static void json_wipe_decref(json_t *j) {
    const char *keys[] = {"SecretAccessKey", "SessionToken"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        json_t *v = json_object_get(j, keys[i]);
        if (json_is_string(v))
            OPENSSL_cleanse((char *)json_string_value(v), json_string_length(v));
    }
    json_decref(j);
}

/* Output format: "Sourcing credentials with an external process" (AWS CLI User Guide):
 * {"Version": 1, "AccessKeyId": ..., "SecretAccessKey": ..., "SessionToken": ...,
 *  "Expiration": "ISO8601"}. */
static int process_parse(const char *buf, size_t len, const char *what, credentials *out,
                         char *source, char **err) {
    json_error_t jerr;
    json_t *j = json_loadb(buf, len, 0, &jerr);
    int rc = OL_ECONFIG;
    if (j == NULL || !json_is_object(j)) {
        /* jerr.text may quote the output, which may hold a secret: position only. */
        if (j != NULL)
            ol__fail(err, rc, "the %s printed JSON that is not an object", what);
        else
            ol__fail(err, rc,
                     "the %s printed invalid JSON (line %d, column %d); it must print "
                     "{\"Version\": 1, \"AccessKeyId\": ..., \"SecretAccessKey\": ...}",
                     what, jerr.line, jerr.column);
        goto done;
    }
    json_t *ver = json_object_get(j, "Version");
    if (!json_is_integer(ver) || json_integer_value(ver) != 1) {
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
    json_t *exp = json_object_get(j, "Expiration");
    if (ak == NULL || ak[0] == '\0' || sk == NULL || sk[0] == '\0') {
        ol__fail(err, rc, "the %s printed no %s", what,
                 ak == NULL || ak[0] == '\0' ? "AccessKeyId" : "SecretAccessKey");
        goto done;
    }
    if (exp != NULL && !json_is_null(exp)) {
        const char *e = json_string_value(exp);
        long long t = e ? parse_iso8601(e) : -1;
        if (t < 0) {
            ol__fail(err, rc, "the %s printed an Expiration that is not an ISO 8601 time", what);
            goto done;
        }
        if (t <= (long long)time(NULL)) {
            rc = ol__fail(err, OL_ECREDS,
                          "the credentials from the %s expired at %s; renew them (e.g. log in "
                          "again) and retry",
                          what, e);
            goto done;
        }
    }
    rc = creds_set(out, ak, sk, token && token[0] ? token : NULL, source);
    source = NULL;
done:
    free(source);
    if (j != NULL)
        json_wipe_decref(j);
    return rc;
}

static int from_process(const char *cmd, const char *profile, const char *path, credentials *out,
                        char **err) {
    char *what = ol__format("credential_process of profile '%s' in %s", profile, path);
    char *buf = NULL;
    size_t len = 0;
    int rc;
    if (what == NULL)
        return OL_ENOMEM;
    rc = process_run(cmd, what, &buf, &len, err);
    if (rc == 0) {
        char *source = strdup(what);
        rc = source ? process_parse(buf, len, what, out, source, err) : OL_ENOMEM;
        OPENSSL_cleanse(buf, len);
    }
    free(buf);
    free(what);
    return rc;
}

/* role_arn, web identity and SSO profiles need STS/SSO calls opsline does not make. */
static int unsupported(const ini_section *sec, const char *profile, const char *path, char **err) {
    const char *what = NULL;
    for (size_t i = 0; i < sec->n && what == NULL; i++) {
        const char *k = sec->kv[i].key;
        if (strcmp(k, "role_arn") == 0 || strcmp(k, "web_identity_token_file") == 0 ||
            strncmp(k, "sso_", 4) == 0)
            what = k;
    }
    if (what == NULL)
        return 0;
    return ol__fail(
        err, OL_ECREDS,
        "profile '%s' in %s uses %s, which opsline does not support yet; give the "
        "profile a credential_process instead, e.g. `credential_process = aws configure "
        "export-credentials --profile OTHER --format process` (AWS CLI v2), or set "
        "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        profile, path, what);
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

/* The chain of botocore's default resolver, minus what needs a network call: environment,
 * [assume role, web identity, SSO: refused], credentials file, credential_process, config
 * file. */
/* OL_ECREDS with the message for a chain that found nothing: every source tried (tried
 * holds the environment's; the files' are added) and what to do. */
static int fail_none_found(const aws_settings *s, const ini_section *cred, const ini_section *cfg,
                           char **tried, char **err) {
    char *t1 = tried_file("aws_access_key_id", s->profile, s->credentials_file, cred);
    char *t2 =
        tried_file("credential_process or aws_access_key_id", s->profile, s->config_file, cfg);
    if (t1 != NULL)
        list_add(tried, t1);
    if (t2 != NULL)
        list_add(tried, t2);
    free(t1);
    free(t2);
    int named = strcmp(s->profile, "default") != 0;
    return ol__fail(err, OL_ECREDS,
                    "no AWS credentials found. Tried: %s. Run `aws configure%s%s`, set "
                    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or add a credential_process "
                    "to the profile",
                    *tried ? *tried : "nothing", named ? " --profile " : "",
                    named ? s->profile : "");
}

int credentials_resolve(const aws_settings *s, credentials *out, char **err) {
    ini_section cfg = {0}, cred = {0};
    char *tried = NULL;
    int used = 0, rc;

    memset(out, 0, sizeof(*out));
    *err = NULL;
    rc = from_env(s, out, &used, &tried, err);
    if (rc != 0 || used)
        goto done;
    rc = ini_load(s->credentials_file, s->profile, 0, &cred, err);
    if (rc == 0)
        rc = ini_load(s->config_file, s->profile, 1, &cfg, err);
    if (rc == 0)
        rc = unsupported(&cfg, s->profile, s->config_file, err);
    if (rc == 0)
        rc = unsupported(&cred, s->profile, s->credentials_file, err);
    if (rc != 0)
        goto done;
    rc = from_section(&cred, s->profile, s->credentials_file, out, &used, err);
    if (rc != 0 || used)
        goto done;
    const char *cmd = ini_value(&cfg, "credential_process");
    if (cmd != NULL) {
        rc = from_process(cmd, s->profile, s->config_file, out, err);
        goto done;
    }
    if ((cmd = ini_value(&cred, "credential_process")) != NULL) {
        rc = from_process(cmd, s->profile, s->credentials_file, out, err);
        goto done;
    }
    rc = from_section(&cfg, s->profile, s->config_file, out, &used, err);
    if (rc == 0 && !used)
        rc = fail_none_found(s, &cred, &cfg, &tried, err);
done:
    if (rc == OL_ENOMEM && *err == NULL)
        *err = ol__format("out of memory");
    if (rc != 0)
        credentials_free(out);
    free(tried);
    ini_section_free(&cfg);
    ini_section_free(&cred);
    return rc;
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
