/* provider: one source of temporary credentials, its cache and its refresh. The state is the
 * current credentials (cur, valid until expires), whether a fetch is under way, and the last
 * fetch's failure. A fetch ends in fetch_done, the one place the state changes after a fetch.
 * Refresh follows botocore's RefreshableCredentials: an advisory window (fetch in the
 * background, keep signing with what is there) and a mandatory one (new requests wait), both
 * scaled down for credentials that live only minutes. */
#include "provider.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "../error.h"
#include "../privfile.h"
#include "../services.h"
#include "aws.h"
#include "sts.h"

#define TOKEN_FILE_MAX 65536
#define IMDS_TOKEN_TTL "21600"
/* After a failed fetch, the source is asked again at the earliest this much later: a
 * failing refresh does not turn into a request storm, and a passing fault heals. */
#define RETRY_AFTER_S 5

struct provider {
    uv_loop_t *loop;
    cred_spec *spec;
    const aws_settings *settings;
    provider_http_fn http;
    long long (*clock)(void *arg); /* seconds since the epoch; NULL: time() */
    void *clock_arg;
    void (*notify)(void *arg);
    void *arg;
    credentials cur;
    int have;
    long long expires;  /* seconds since the epoch; 0: never */
    long long lifetime; /* seconds the current credentials were handed out for */
    int fetching;
    long long next_try; /* after a failure: no new fetch before this (seconds) */
    int err_code;
    char *err;
    unsigned fetches;
    services *svc;   /* credential_process and the MFA prompt; made on first use */
    aws_client *sts; /* AssumeRole / web identity; made on first use */
    int sts_open;
    unsigned ops; /* HTTP requests, programs and work in flight */
    char *mfa_code;
    char *token; /* read by token_work: web identity, container or SSO token */
    char *token_err;
    int token_rc;
    credentials cached; /* assume role: a session read from the AWS CLI's cache */
    long long cached_expires;
    int have_cached;
    long long cache_now; /* the clock when the cache read was queued */
    char *imds_token;    /* between the token step and the credential steps */
    char *imds_role;
    int closing;
    void (*on_closed)(void *arg);
    void *on_closed_arg;
    uv_timer_t closer; /* polls until nothing is in flight, then frees */
};

static void fetch_start(provider *p);

static long long now_of(const provider *p) {
    return p->clock != NULL ? p->clock(p->clock_arg) : (long long)time(NULL);
}

void provider_set_clock(provider *p, long long (*fn)(void *arg), void *arg) {
    p->clock = fn;
    p->clock_arg = arg;
}

int provider_new(uv_loop_t *loop, cred_spec *spec, const aws_settings *settings,
                 provider_http_fn http, void (*notify)(void *arg), void *arg, provider **out) {
    provider *p = calloc(1, sizeof(*p));
    *out = NULL;
    if (p == NULL) {
        credentials_spec_free(spec);
        return OL_ENOMEM;
    }
    p->loop = loop;
    p->spec = spec;
    p->settings = settings;
    p->http = http;
    p->notify = notify;
    p->arg = arg;
    if (spec->kind == CRED_STATIC) {
        int rc = credentials_copy(&p->cur, &spec->creds);
        if (rc != 0) {
            credentials_spec_free(spec);
            free(p);
            return rc;
        }
        p->have = 1;
    }
    *out = p;
    return 0;
}

const char *provider_source(const provider *p) {
    return p->spec->source;
}

unsigned provider_fetches(const provider *p) {
    return p->fetches;
}

/* The windows: mandatory min(10 min, lifetime/6), advisory min(15 min, lifetime/2). A
 * failed fetch is told to every request until RETRY_AFTER_S has passed. */
int provider_get(provider *p, const credentials **out, const char **err) {
    *out = NULL;
    *err = NULL;
    if (p->have && p->expires == 0) {
        *out = &p->cur;
        return 0;
    }
    long long left = p->have ? p->expires - now_of(p) : 0;
    long long life = p->lifetime > 0 ? p->lifetime : 3600;
    long long mandatory = life / 6 < 600 ? life / 6 : 600;
    long long advisory = life / 2 < 900 ? life / 2 : 900;
    if (p->have && left > mandatory) {
        if (left <= advisory && !p->fetching && now_of(p) >= p->next_try)
            fetch_start(p);
        *out = &p->cur;
        return 0;
    }
    if (p->err_code != 0 && !p->fetching && now_of(p) < p->next_try) {
        *err = p->err;
        return p->err_code;
    }
    if (!p->fetching)
        fetch_start(p);
    return 1;
}

/* ---- the end of a fetch ----------------------------------------------------------------- */

/* Takes c (moved) on success; rc != 0 with msg. */
static void fetch_done(provider *p, int rc, credentials *c, long long expires, const char *msg) {
    p->fetching = 0;
    free(p->imds_token);
    free(p->imds_role);
    p->imds_token = p->imds_role = NULL;
    if (p->mfa_code != NULL) {
        OPENSSL_cleanse(p->mfa_code, strlen(p->mfa_code));
        free(p->mfa_code);
        p->mfa_code = NULL;
    }
    if (p->closing) {
        /* The closer (a timer) frees the provider once nothing is in flight. */
        if (c != NULL)
            credentials_free(c);
        return;
    }
    if (rc == 0) {
        credentials_free(&p->cur);
        p->cur = *c;
        memset(c, 0, sizeof(*c));
        p->have = 1;
        p->expires = expires;
        p->lifetime = expires > 0 ? expires - now_of(p) : 0;
        p->err_code = 0;
    } else if (p->spec->kind == CRED_IMDS && p->spec->tried != NULL) {
        /* Instance metadata was the chain's last resort, not a choice: off EC2 this is the
         * "nothing configured" of the SDKs, a configuration error. */
        free(p->err);
        p->err = ol__format("no AWS credentials found. Tried: %s; %s. Run `aws configure` (or "
                            "`aws configure sso`), set AWS_ACCESS_KEY_ID and "
                            "AWS_SECRET_ACCESS_KEY, or add a credential_process or role_arn to "
                            "the profile",
                            p->spec->tried, msg ? msg : ol_strerror(rc));
        p->err_code = OL_ECONFIG;
        p->next_try = now_of(p) + RETRY_AFTER_S;
    } else {
        free(p->err);
        p->err = ol__format("%s", msg ? msg : ol_strerror(rc));
        p->err_code = rc == OL_ECONFIG ? OL_ECONFIG : OL_ECREDS;
        p->next_try = now_of(p) + RETRY_AFTER_S;
        /* Credentials still valid are kept; expired ones are of no use. */
        if (p->have && p->expires > 0 && p->expires <= now_of(p)) {
            credentials_free(&p->cur);
            p->have = 0;
        }
    }
    p->notify(p->arg);
}

static void fetch_failf(provider *p, int rc, const char *fmt, ...) OL_PRINTF(3, 4);
static void fetch_failf(provider *p, int rc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *msg = ol__vformat(fmt, ap);
    va_end(ap);
    fetch_done(p, rc, NULL, 0, msg);
    free(msg);
}

/* ---- credential_process ----------------------------------------------------------------- */

static void on_process(void *arg, const ol_proc_result *res) {
    provider *p = arg;
    const cred_spec *sp = p->spec;
    p->ops--;
    if (res->result == OL_ETIMEDOUT) {
        fetch_failf(p, OL_ECREDS,
                    "the %s did not finish within %u s and was stopped; fix the command or "
                    "allow it longer with OPSLINE_CREDENTIAL_TIMEOUT=SECONDS",
                    sp->source, sp->timeout_ms / 1000);
        return;
    }
    if (res->result != 0 || res->term_signal != 0 || res->exit_status != 0) {
        /* Its error output is its own message to the user; the first line is enough. */
        int n = (int)strcspn(res->err ? res->err : "", "\n");
        if (n > 300)
            n = 300;
        if (res->result != 0)
            fetch_failf(p, OL_ECREDS, "cannot run the %s: %s", sp->source,
                        ol_strerror(res->result));
        else if (res->term_signal != 0)
            fetch_failf(p, OL_ECREDS, "the %s was killed by signal %d", sp->source,
                        res->term_signal);
        else
            fetch_failf(p, OL_ECREDS, "the %s exited with status %d%s%s%.*s", sp->source,
                        res->exit_status, res->exit_status == 127 ? " (command not found)" : "",
                        n > 0 ? ": " : "", n, res->err ? res->err : "");
        return;
    }
    credentials c;
    long long exp = 0;
    char *msg = NULL;
    int rc = credentials_json_parse(res->out, res->out_len, sp->source, 1, &c, &exp, &msg);
    fetch_done(p, rc, rc == 0 ? &c : NULL, exp, msg);
    free(msg);
}

static int ensure_services(provider *p) {
    return p->svc != NULL ? 0 : services_new(p->loop, &p->svc);
}

static void fetch_process(provider *p) {
    const char *argv[] = {"/bin/sh", "-c", p->spec->command, NULL};
    ol_proc_spec ps = {.struct_size = sizeof(ps),
                       .argv = argv,
                       .output_cap = 1024 * 1024,
                       .timeout_ms = p->spec->timeout_ms};
    int rc = ensure_services(p);
    if (rc == 0)
        rc = services_proc_run(p->svc, &ps, on_process, p);
    if (rc != 0) {
        fetch_failf(p, OL_ECREDS, "cannot run the %s: %s", p->spec->source, ol_strerror(rc));
        return;
    }
    p->ops++;
}

/* ---- STS: AssumeRole and AssumeRoleWithWebIdentity -------------------------------------- */

/* A whole small file (a web identity or container token), malloc'd; NULL with *err. */
static char *read_token_file(const char *path, const char *what, char **err) {
    /* A regular file only (links followed: EKS projects the token through them): a FIFO
     * named by mistake is refused instead of blocking a thread of the pool for good. */
    FILE *f = privfile_fopen(path);
    if (f == NULL) {
        ol__fail(err, OL_ECREDS, "cannot read the %s %s: %s", what, path, privfile_strerror(errno));
        return NULL;
    }
    char *buf = calloc(1, TOKEN_FILE_MAX + 1);
    size_t n = buf ? fread(buf, 1, TOKEN_FILE_MAX, f) : 0;
    fclose(f);
    if (buf == NULL)
        return NULL;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    if (n == 0) {
        free(buf);
        ol__fail(err, OL_ECREDS, "the %s %s is empty", what, path);
        return NULL;
    }
    return buf;
}

static void wipe_free(char *s) {
    if (s != NULL) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

/* ---- the AWS CLI's role session cache (credentials_role_cache_read/write) ---------------- */

typedef struct cache_write {
    provider *p;
    const char *path; /* the spec's */
    credentials c;
    long long expires;
} cache_write;

static void cache_write_work(void *arg) {
    cache_write *w = arg;
    (void)credentials_role_cache_write(w->path, &w->c, w->expires); /* a miss next run at worst */
}

static void cache_write_after(void *arg, int status) {
    cache_write *w = arg;
    (void)status;
    w->p->ops--;
    credentials_free(&w->c);
    free(w);
}

/* A session STS just gave is written to the cache on a thread of the pool; the fetch does
 * not wait for it. */
static void cache_store(provider *p, const credentials *c, long long expires) {
    if (p->spec->kind != CRED_ASSUME_ROLE || p->spec->role_cache_file == NULL || expires <= 0 ||
        ensure_services(p) != 0)
        return;
    cache_write *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return;
    w->p = p;
    w->path = p->spec->role_cache_file;
    w->expires = expires;
    if (credentials_copy(&w->c, c) != 0 ||
        services_work(p->svc, cache_write_work, cache_write_after, w) != 0) {
        credentials_free(&w->c);
        free(w);
        return;
    }
    p->ops++;
}

static void on_sts(void *arg, const ol_aws_response *res) {
    provider *p = arg;
    const cred_spec *sp = p->spec;
    int web = sp->kind == CRED_WEB_IDENTITY;
    p->ops--;
    if (res->result != 0) {
        fetch_failf(p, OL_ECREDS, "could not %s %s for %s: %s%s%s (HTTP %ld)",
                    web ? "assume (web identity)" : "assume", sp->role_arn,
                    sp->profile ? sp->profile : "the environment",
                    res->error_code ? res->error_code : ol_strerror(res->result),
                    res->error_message ? ": " : "", res->error_message ? res->error_message : "",
                    res->status);
        return;
    }
    credentials c;
    long long exp = 0;
    int rc = sts_credentials_parse(res->body, res->body_len, web, sp->source, &c, &exp);
    if (rc != 0) {
        fetch_failf(p, OL_ECREDS, "STS gave no credentials for %s (unexpected answer)",
                    sp->role_arn);
        return;
    }
    if (!web)
        cache_store(p, &c, exp);
    fetch_done(p, 0, &c, exp, NULL);
}

static void on_sts_closed(void *arg) {
    provider *p = arg;
    p->sts_open = 0;
}

static void sts_send(provider *p) {
    const cred_spec *sp = p->spec;
    char *err = NULL, *token = NULL;
    int rc = 0;
    if (p->sts == NULL) {
        /* The base spec is owned by the spec; the child client gets a copy it plans itself:
         * the simplest is to move it and keep a NULL, since one child lives as long as we. */
        cred_spec *base = sp->kind == CRED_ASSUME_ROLE ? sp->base : NULL;
        rc = aws_client_new_spec(p->loop, p->settings, base, sp->region, &p->sts, &err);
        if (sp->kind == CRED_ASSUME_ROLE)
            p->spec->base = NULL; /* moved, also on failure */
        if (rc != 0) {
            fetch_failf(p, rc, "%s", err ? err : ol_strerror(rc));
            free(err);
            return;
        }
        p->sts_open = 1;
    }
    if (sp->kind == CRED_WEB_IDENTITY) { /* read by token_work */
        token = p->token;
        p->token = NULL;
    }
    sts_assume_args a = {.role_arn = sp->role_arn,
                         .session_name = sp->session_name,
                         .external_id = sp->external_id,
                         .mfa_serial = sp->mfa_serial,
                         .mfa_code = p->mfa_code,
                         .duration_s = sp->duration_s,
                         .web_identity_token = token};
    rc = sts_assume_role(p->sts, &a, on_sts, p);
    wipe_free(token);
    if (rc != 0) {
        fetch_failf(p, OL_ECREDS, "could not ask STS for %s: %s", sp->role_arn, ol_strerror(rc));
        return;
    }
    p->ops++;
}

/* mfa_serial: the code is asked on the terminal, on a thread of the pool (reading a TTY
 * blocks), each time the role session is renewed, as the AWS CLI does. */
static void mfa_work(void *arg) {
    provider *p = arg;
    char line[64];
    FILE *tty = fopen("/dev/tty", "r+");
    if (tty == NULL)
        return;
    fprintf(tty, "Enter MFA code for %s: ", p->spec->mfa_serial);
    fflush(tty);
    if (fgets(line, sizeof(line), tty) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        p->mfa_code = strdup(line);
    }
    OPENSSL_cleanse(line, sizeof(line));
    fclose(tty);
}

static void mfa_after(void *arg, int status) {
    provider *p = arg;
    p->ops--;
    if (status != 0 || p->closing) {
        fetch_done(p, OL_ECANCELED, NULL, 0, "interrupted");
        return;
    }
    if (p->mfa_code == NULL || p->mfa_code[0] == '\0') {
        fetch_failf(p, OL_ECREDS, "no MFA code was entered for %s (profile '%s')",
                    p->spec->mfa_serial, p->spec->profile);
        return;
    }
    sts_send(p);
}

static void fetch_sts(provider *p) {
    if (p->have_cached) { /* read by token_work: no MFA prompt, no AssumeRole */
        p->have_cached = 0;
        fetch_done(p, 0, &p->cached, p->cached_expires, NULL);
        return;
    }
    if (p->spec->kind != CRED_ASSUME_ROLE || p->spec->mfa_serial == NULL) {
        sts_send(p);
        return;
    }
    int rc = ensure_services(p);
    if (rc == 0)
        rc = services_work(p->svc, mfa_work, mfa_after, p);
    if (rc != 0) {
        fetch_failf(p, OL_ECREDS, "cannot ask for the MFA code: %s", ol_strerror(rc));
        return;
    }
    p->ops++;
}

/* ---- HTTP sources: SSO portal, container endpoint, instance metadata --------------------- */

typedef void (*http_step)(provider *p, const http_response *res);

typedef struct http_op {
    provider *p;
    http_step step;
} http_op;

static void on_http(void *arg, const http_response *res) {
    http_op *op = arg;
    provider *p = op->p;
    http_step step = op->step;
    free(op);
    p->ops--;
    if (res->result == OL_ECANCELED || p->closing) {
        fetch_done(p, OL_ECANCELED, NULL, 0, "interrupted");
        return;
    }
    if (res->result != 0) {
        fetch_failf(p, OL_ECREDS, "no answer from %s: %s", p->spec->source,
                    res->error ? res->error : ol_strerror(res->result));
        return;
    }
    step(p, res);
}

static void http_go(provider *p, const char *method, const char *url, const ol_kv *hdrs, size_t n,
                    http_step step) {
    const http_vtable *vt;
    void *engine;
    http_op *op = malloc(sizeof(*op));
    if (op == NULL) {
        fetch_done(p, OL_ENOMEM, NULL, 0, "out of memory");
        return;
    }
    op->p = p;
    op->step = step;
    p->http(p->arg, &vt, &engine);
    http_request req = {.method = method,
                        .url = url,
                        .headers = hdrs,
                        .n_headers = n,
                        .timeout_ms = p->spec->timeout_ms,
                        .connect_timeout_ms = p->spec->timeout_ms};
    int rc = vt->send(engine, &req, on_http, op);
    if (rc != 0) {
        free(op);
        fetch_failf(p, OL_ECREDS, "could not ask %s: %s", p->spec->source, ol_strerror(rc));
        return;
    }
    p->ops++;
}

/* A JSON credentials document (container endpoint, IMDS). */
static void json_creds_step(provider *p, const http_response *res) {
    if (res->status != 200) {
        fetch_failf(p, OL_ECREDS, "%s answered HTTP %ld", p->spec->source, res->status);
        return;
    }
    credentials c;
    long long exp = 0;
    char *msg = NULL;
    int rc = credentials_json_parse(res->body, res->body_len, p->spec->source, 0, &c, &exp, &msg);
    fetch_done(p, rc, rc == 0 ? &c : NULL, exp, msg);
    free(msg);
}

static void fetch_container(provider *p) {
    const cred_spec *sp = p->spec;
    char *token = NULL;
    if (sp->token_file != NULL) { /* read by token_work */
        token = p->token;
        p->token = NULL;
    } else if (sp->auth_token != NULL && (token = strdup(sp->auth_token)) == NULL) {
        fetch_done(p, OL_ENOMEM, NULL, 0, "out of memory");
        return;
    }
    ol_kv hdrs[2] = {{"Accept", "application/json"}, {"Authorization", token}};
    http_go(p, "GET", sp->url, hdrs, token ? 2 : 1, json_creds_step);
    wipe_free(token);
}

static void imds_get(provider *p, const char *path, http_step step) {
    char *url = ol__format("%s%s", p->spec->url, path);
    if (url == NULL) {
        fetch_done(p, OL_ENOMEM, NULL, 0, "out of memory");
        return;
    }
    ol_kv hdrs[1] = {{"X-aws-ec2-metadata-token", p->imds_token}};
    http_go(p, "GET", url, hdrs, 1, step);
    free(url);
}

static void imds_role_step(provider *p, const http_response *res) {
    if (res->status != 200 || res->body_len == 0) {
        fetch_failf(p, OL_ECREDS,
                    "%s has no instance role (HTTP %ld for iam/security-credentials/); attach "
                    "an instance profile to the instance",
                    p->spec->source, res->status);
        return;
    }
    size_t n = strcspn(res->body, "\r\n");
    char *path = ol__format("/latest/meta-data/iam/security-credentials/%.*s", (int)n, res->body);
    if (path == NULL) {
        fetch_done(p, OL_ENOMEM, NULL, 0, "out of memory");
        return;
    }
    imds_get(p, path, json_creds_step);
    free(path);
}

/* IMDSv2 only: an endpoint that gives no session token (an IMDSv1-only one, or a
 * proxy stripping PUT) is refused rather than asked without one. */
static void imds_token_step(provider *p, const http_response *res) {
    if (res->status != 200 || res->body_len == 0) {
        fetch_failf(p, OL_ECREDS,
                    "%s gave no IMDSv2 session token (HTTP %ld to PUT /latest/api/token); "
                    "opsline uses IMDSv2 only: enable it on the instance (HttpTokens "
                    "optional/required) and allow a hop limit of 2 in containers",
                    p->spec->source, res->status);
        return;
    }
    p->imds_token = strdup(res->body);
    if (p->imds_token == NULL) {
        fetch_done(p, OL_ENOMEM, NULL, 0, "out of memory");
        return;
    }
    imds_get(p, "/latest/meta-data/iam/security-credentials/", imds_role_step);
}

static void fetch_imds(provider *p) {
    char *url = ol__format("%s/latest/api/token", p->spec->url);
    if (url == NULL) {
        fetch_done(p, OL_ENOMEM, NULL, 0, "out of memory");
        return;
    }
    ol_kv hdrs[1] = {{"X-aws-ec2-metadata-token-ttl-seconds", IMDS_TOKEN_TTL}};
    http_go(p, "PUT", url, hdrs, 1, imds_token_step);
    free(url);
}

/* GetRoleCredentials answer: {"roleCredentials": {"accessKeyId", "secretAccessKey",
 * "sessionToken", "expiration": milliseconds since the epoch}} (IAM Identity Center Portal API
 * reference). */
static void sso_step(provider *p, const http_response *res) {
    const cred_spec *sp = p->spec;
    if (res->status == 401 || res->status == 403) {
        fetch_failf(p, OL_ECREDS,
                    "the IAM Identity Center (SSO) login of profile '%s' was refused (HTTP %ld): "
                    "it has expired or lacks role %s in account %s; run `%s`",
                    sp->profile, res->status, sp->sso_role_name, sp->sso_account_id,
                    sp->sso_login_cmd);
        return;
    }
    if (res->status != 200) {
        fetch_failf(p, OL_ECREDS, "the IAM Identity Center portal %s answered HTTP %ld", sp->url,
                    res->status);
        return;
    }
    json_t *j = json_loadb(res->body, res->body_len, 0, NULL);
    json_t *rc_ = json_object_get(j, "roleCredentials");
    const char *ak = json_string_value(json_object_get(rc_, "accessKeyId"));
    json_t *skj = json_object_get(rc_, "secretAccessKey");
    json_t *stj = json_object_get(rc_, "sessionToken");
    json_t *exp = json_object_get(rc_, "expiration");
    credentials c;
    memset(&c, 0, sizeof(c));
    int ok = ak != NULL && json_is_string(skj) && json_is_integer(exp);
    const char *token = json_string_value(stj);
    if (ok) {
        c.access_key_id = strdup(ak);
        c.secret_access_key = strdup(json_string_value(skj));
        c.session_token = token && token[0] ? strdup(token) : NULL;
        c.source = strdup(sp->source);
    }
    long long ms = ok ? (long long)json_integer_value(exp) : 0;
    if (json_is_string(skj))
        OPENSSL_cleanse((char *)json_string_value(skj), json_string_length(skj));
    if (json_is_string(stj))
        OPENSSL_cleanse((char *)json_string_value(stj), json_string_length(stj));
    json_decref(j);
    if (!ok) {
        fetch_failf(p, OL_ECREDS, "the IAM Identity Center portal %s gave no roleCredentials",
                    sp->url);
        return;
    }
    if (!c.access_key_id || !c.secret_access_key || (token && token[0] && !c.session_token) ||
        !c.source) {
        credentials_free(&c);
        fetch_done(p, OL_ENOMEM, NULL, 0, "out of memory");
        return;
    }
    fetch_done(p, 0, &c, ms / 1000, NULL);
}

static void fetch_sso(provider *p) {
    const cred_spec *sp = p->spec;
    /* Read again at each fetch by token_work: `aws sso login` may have renewed it. */
    char *token = p->token;
    p->token = NULL;
    char *role = curl_easy_escape(NULL, sp->sso_role_name, 0);
    char *acct = curl_easy_escape(NULL, sp->sso_account_id, 0);
    size_t n = strlen(sp->url);
    char *url = role && acct ? ol__format("%.*s/federation/credentials?role_name=%s&account_id=%s",
                                          (int)(n > 0 && sp->url[n - 1] == '/' ? n - 1 : n),
                                          sp->url, role, acct)
                             : NULL;
    curl_free(role);
    curl_free(acct);
    if (url == NULL) {
        wipe_free(token);
        fetch_done(p, OL_ENOMEM, NULL, 0, "out of memory");
        return;
    }
    ol_kv hdrs[1] = {{"x-amz-sso_bearer_token", token}};
    http_go(p, "GET", url, hdrs, 1, sso_step);
    free(url);
    wipe_free(token);
}

/* ---- dispatch and close ----------------------------------------------------------------- */

/* The token files (web identity, container authorization, the SSO cache) and the AWS
 * CLI's role session cache are read on a thread of the pool at each fetch: they are rotated
 * by the platform, by `aws sso login` or by the CLI while a run goes on, and a file read has
 * no place on the loop. */
static void token_work(void *arg) {
    provider *p = arg;
    const cred_spec *sp = p->spec;
    p->token_rc = 0;
    if (sp->kind == CRED_ASSUME_ROLE) { /* a miss is no error: the role is assumed */
        p->have_cached = credentials_role_cache_read(sp->role_cache_file, p->cache_now, sp->source,
                                                     &p->cached, &p->cached_expires) == 0;
        return;
    }
    if (sp->kind == CRED_SSO) {
        p->token_rc = credentials_sso_token(sp, &p->token, &p->token_err);
        return;
    }
    p->token = read_token_file(sp->token_file,
                               sp->kind == CRED_WEB_IDENTITY ? "web identity token file"
                                                             : "container authorization token file",
                               &p->token_err);
    if (p->token == NULL)
        p->token_rc = OL_ECREDS;
}

static void dispatch(provider *p);

static void token_after(void *arg, int status) {
    provider *p = arg;
    p->ops--;
    if (status != 0 || p->closing || p->token_rc != 0) {
        wipe_free(p->token);
        p->token = NULL;
        if (p->have_cached) {
            credentials_free(&p->cached);
            p->have_cached = 0;
        }
        fetch_done(p, status != 0 || p->closing ? OL_ECANCELED : p->token_rc, NULL, 0,
                   p->token_err ? p->token_err : "out of memory");
        free(p->token_err);
        p->token_err = NULL;
        return;
    }
    dispatch(p);
}

static int needs_token_file(const cred_spec *sp) {
    return sp->kind == CRED_WEB_IDENTITY || sp->kind == CRED_SSO ||
           (sp->kind == CRED_CONTAINER && sp->token_file != NULL) ||
           (sp->kind == CRED_ASSUME_ROLE && sp->role_cache_file != NULL);
}

static void fetch_start(provider *p) {
    p->fetching = 1;
    p->fetches++;
    if (needs_token_file(p->spec)) {
        p->cache_now = now_of(p);
        int rc = ensure_services(p);
        if (rc == 0)
            rc = services_work(p->svc, token_work, token_after, p);
        if (rc != 0) {
            fetch_failf(p, OL_ECREDS, "cannot read the token of %s: %s", p->spec->source,
                        ol_strerror(rc));
            return;
        }
        p->ops++;
        return;
    }
    dispatch(p);
}

static void dispatch(provider *p) {
    switch (p->spec->kind) {
    case CRED_PROCESS:
        fetch_process(p);
        break;
    case CRED_ASSUME_ROLE:
    case CRED_WEB_IDENTITY:
        fetch_sts(p);
        break;
    case CRED_SSO:
        fetch_sso(p);
        break;
    case CRED_CONTAINER:
        fetch_container(p);
        break;
    case CRED_IMDS:
        fetch_imds(p);
        break;
    case CRED_STATIC:
    default:
        fetch_done(p, OL_ECREDS, NULL, 0, "no credentials");
        break;
    }
}

static void on_closer_closed(uv_handle_t *h) {
    provider *p = h->data;
    void (*cb)(void *) = p->on_closed;
    void *arg = p->on_closed_arg;
    credentials_free(&p->cur);
    if (p->have_cached)
        credentials_free(&p->cached);
    credentials_spec_free(p->spec);
    wipe_free(p->token);
    free(p->token_err);
    free(p->err);
    free(p);
    if (cb)
        cb(arg);
}

static void on_closer(uv_timer_t *h) {
    provider *p = h->data;
    if (p->ops > 0 || p->sts_open || (p->svc != NULL && services_pending(p->svc) > 0))
        return;
    uv_timer_stop(h);
    services_free(p->svc);
    p->svc = NULL;
    uv_close((uv_handle_t *)h, on_closer_closed);
}

void provider_close(provider *p, void (*on_closed)(void *arg), void *arg) {
    p->closing = 1;
    p->on_closed = on_closed;
    p->on_closed_arg = arg;
    if (p->svc != NULL)
        services_cancel_all(p->svc);
    if (p->sts != NULL) {
        aws_client_close(p->sts, on_sts_closed, p);
        p->sts = NULL;
    }
    uv_timer_init(p->loop, &p->closer);
    p->closer.data = p;
    uv_timer_start(&p->closer, on_closer, 0, 10);
}
