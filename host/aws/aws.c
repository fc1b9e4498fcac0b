/* aws: the asynchronous AWS client. One aws_call per logical request owns copies of the
 * request, its retry state and a uv_timer for backoff; it is freed in that timer's close
 * callback, the one place a call ends. Each attempt is built from scratch (endpoint, URL,
 * date, signature), so a retry after a long backoff is never sent with a stale signature. */
#include "aws.h"

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "../error.h"
#include "../list.h"
#include "endpoints.h"
#include "http.h"
#include "provider.h"
#include "retry.h"
#include "sigv4.h"
#include "xml.h"

#define DEFAULT_TIMEOUT_MS 30000
/* Delay between eventual-consistency retries: IAM usually converges within seconds. */
#define CONSISTENCY_DELAY_MS 500

/* A peer: what the client knows of one endpoint: its adaptive rate limiter with the FIFO of calls
 * waiting for a token, and its health. Keyed by service and base URL; S3 calls on a bucket
 * get their own rate key (S3 scales and throttles per bucket prefix: "Best practices design
 * patterns: optimizing Amazon S3 performance"), while their health is the endpoint's. */
typedef struct peer {
    list_node node;      /* in c->peers */
    struct peer *hnext;  /* in its chain of c->peer_index */
    uint64_t hash;       /* of service, url and bucket (peer_hash) */
    list_node pace_node; /* in c->paced while calls wait for a token */
    /* What it is found by: the service, the base URL (also for messages) and, for an S3
     * bucket's own state, the bucket (NULL otherwise). */
    char *service;
    char *url;
    char *bucket;
    retry_rate_limiter rl;
    retry_health health;
    list_node
        waiting;    /* aws_call.wait_node: lowest rank first, then first come (queue_for_token) */
    unsigned users; /* calls pointing at it (rate_ep, health_ep) */
    /* Before its first throttle (the rate limiter off) at most `window` requests are in
     * flight (see FIRST_FLIGHT_WINDOW); in_flight counts those of the calls whose rate_ep it
     * is. */
    unsigned in_flight, window;
    long last_status;
    char last_code[64];
    char last_error[160]; /* "HTTP 500 InternalError", "no answer (Connection refused)" */
} peer;

struct aws_client {
    uv_loop_t *loop;
    const http_vtable *http_vt; /* http_default_vtable but in tests */
    void *http;                 /* the engine behind http_vt */
    aws_settings settings;
    provider *prov; /* NULL: anonymous (unsigned requests), or the plan failed */
    int prov_open;  /* the provider's close has not completed */
    int anonymous;
    char *creds_err; /* credentials_plan's failure, reported at the first request */
    int creds_code;
    retry_config rcfg;
    retry_quota quota;
    list_node peers;     /* peer, most recently used first */
    size_t bucket_peers; /* how many of them are an S3 bucket's */
    /* The peers by peer_hash, chained (n_index chains, a power of two, at least n_peers):
     * a call finds its peer at once among the hundreds of buckets in flight. */
    peer **peer_index;
    size_t n_index, n_peers;
    list_node resolved; /* resolved: each service and region's endpoint, resolved once */
    list_node paced;    /* peer.pace_node: those with calls waiting for a token */
    uv_timer_t pace_timer;
    int pacing, pace_again;
    aws_stats stats;
    long timeout_ms;
    list_node calls; /* aws_call: live calls, newest first */
    size_t live;
    int closing;
    unsigned http_open; /* engines whose close has not completed */
    void (*log_fn)(void *arg, const char *line);
    void *log_arg;
    void (*rate_wait_fn)(void *owner, int waiting, void *arg);
    void *rate_wait_arg;
    double (*rand_fn)(void *arg); /* NULL: rand01() */
    void *rand_arg;
    double fixed_jitter; /* OPSLINE_TEST_RETRY_JITTER */
    void (*on_closed)(void *arg);
    void *on_closed_arg;
};

typedef struct aws_call {
    aws_client *c;
    list_node node; /* in c->calls until the user callback runs */
    char *service, *method, *bucket, *key, *region;
    ol_kv *params;
    size_t n_params;
    ol_kv *headers;
    size_t n_headers;
    const char *body;
    size_t body_len;
    char *form_body;
    unsigned flags;
    char *as_key_id, *as_secret; /* sign with this key instead of the client's (2.1) */
    char **consistency_codes;
    uint64_t consistency_deadline; /* uv_now ms */
    unsigned attempts;             /* HTTP attempts sent */
    unsigned retries;              /* retries counted against max_attempts */
    unsigned quota_taken;
    unsigned throttled; /* throttled answers */
    int stalled;        /* a throttled retry refused: the endpoint made no progress */
    peer *rate_ep, *health_ep;
    list_node wait_node; /* in rate_ep->waiting while waiting for a token */
    int redirected;
    int in_http;      /* an HTTP attempt is in flight (counted in rate_ep->in_flight) */
    int waiting;      /* waits for the provider's credentials */
    int completed;    /* the user callback has run */
    void *owner;      /* aws_send_owned's, for the rate-wait hook */
    uint64_t rank;    /* its place in a token queue: lowest first (aws_send_owned) */
    int rate_waiting; /* waits on AWS's rate: for a token, or after a throttled answer */
    uv_timer_t timer;
    ol_aws_cb cb;
    void *arg;
} aws_call;

static void call_send(aws_call *call);
static void on_timer_resend(uv_timer_t *t);
static const char *status_code_text(long status);

static char *dupstr(const char *s) {
    return s ? strdup(s) : NULL;
}

static double now_s(const aws_client *c) {
    return (double)uv_now(c->loop) / 1000.0;
}

static double rand01(void) {
    uint32_t r = 0;
    if (RAND_bytes((unsigned char *)&r, sizeof(r)) != 1)
        r = (uint32_t)rand();
    return (double)r / 4294967296.0;
}

static double fixed_jitter(void *arg) {
    return *(const double *)arg;
}

/* OPSLINE_TEST_RETRY_JITTER=J (0 <= J < 1) makes every backoff J x its cap, so that tests of
 * the opsline binary can check the delays a server sees. Not for production use. */
static int jitter_from_env(aws_client *c, char **err) {
    const char *v = getenv("OPSLINE_TEST_RETRY_JITTER");
    char *end;
    if (v == NULL || *v == '\0')
        return 0;
    c->fixed_jitter = strtod(v, &end);
    if (*end != '\0' || !(c->fixed_jitter >= 0.0 && c->fixed_jitter < 1.0)) {
        *err = ol__format("OPSLINE_TEST_RETRY_JITTER='%s' is not valid: use a number from 0 "
                          "up to (not including) 1, or unset it",
                          v);
        return OL_ECONFIG;
    }
    aws_client_set_random(c, fixed_jitter, &c->fixed_jitter);
    return 0;
}

typedef struct resolved {
    list_node node;
    char *service, *region;
    endpoint ep;
} resolved;

/* The endpoint of service in region, resolved on first use and kept for the client's life:
 * the settings and the variables it reads do not change during a run. Returns 0 with *out,
 * or endpoints_resolve's error with *err. */
static int client_endpoint(aws_client *c, const char *service, const char *region,
                           const endpoint **out, char **err) {
    list_node *n;
    resolved *r;
    int rc;

    *out = NULL;
    *err = NULL;
    if (service == NULL || region == NULL) { /* endpoints_resolve says what is missing */
        endpoint none;
        rc = endpoints_resolve(service, region, c->settings.endpoint_url, &none, err);
        endpoints_free(&none);
        return rc != 0 ? rc : OL_EINVAL;
    }
    list_foreach(n, &c->resolved) {
        r = list_entry(n, resolved, node);
        if (strcmp(r->service, service) == 0 && strcmp(r->region, region) == 0) {
            *out = &r->ep;
            return 0;
        }
    }
    if ((r = calloc(1, sizeof(*r))) == NULL)
        return OL_ENOMEM;
    rc = endpoints_resolve(service, region, c->settings.endpoint_url, &r->ep, err);
    if (rc == 0 && ((r->service = strdup(service)) == NULL || (r->region = strdup(region)) == NULL))
        rc = OL_ENOMEM;
    if (rc != 0) {
        endpoints_free(&r->ep);
        free(r->service);
        free(r);
        return rc;
    }
    list_insert_head(&c->resolved, &r->node);
    *out = &r->ep;
    return 0;
}

static void resolved_free_all(aws_client *c) {
    list_node *n, *tmp;
    list_foreach_safe(n, tmp, &c->resolved) {
        resolved *r = list_entry(n, resolved, node);
        list_remove(n);
        endpoints_free(&r->ep);
        free(r->service);
        free(r->region);
        free(r);
    }
}

/* S3 bucket peers kept beyond those in use: a batch touches each bucket for one item, so a
 * peer per bucket ever used would grow with the batch (10,000 of them, about 6 MB and a
 * linear search each, in a 5,000-product run). The least recently used idle ones go; a
 * bucket seen again starts afresh, as a new endpoint does. */
#define BUCKET_PEERS_KEPT 256

/* An endpoint's first flight: before its first throttle, when the rate limiter does not
 * pace it yet, at most this many requests in flight, one more after each success (doubling
 * every round trip, as TCP's slow start). Every item at once (--concurrency 1024) would
 * otherwise send its first request in one burst, and under IAM's quota nearly all of them
 * come back throttled, to be sent again. The default --concurrency (32) never reaches it. */
#define FIRST_FLIGHT_WINDOW 64u

/* FNV-1a over service, url and bucket, each with its terminating NUL (bucket NULL: none). */
static uint64_t peer_hash(const char *service, const char *url, const char *bucket) {
    uint64_t h = 1469598103934665603u;
    const char *parts[3] = {service, url, bucket};
    for (size_t i = 0; i < 3; i++)
        for (const char *s = parts[i]; s != NULL; s++) {
            h = (h ^ (unsigned char)*s) * 1099511628211u;
            if (*s == '\0')
                break;
        }
    return h;
}

static peer **peer_chain(const aws_client *c, uint64_t hash) {
    return &c->peer_index[hash & (c->n_index - 1)];
}

/* Room for one more peer in the index: twice the chains once every chain holds one. */
static int peer_index_reserve(aws_client *c) {
    if (c->n_peers < c->n_index)
        return 0;
    size_t n = c->n_index ? c->n_index * 2 : 64;
    peer **idx = calloc(n, sizeof *idx);
    if (idx == NULL)
        return OL_ENOMEM;
    for (size_t i = 0; i < c->n_index; i++)
        for (peer *e = c->peer_index[i], *next; e != NULL; e = next) {
            next = e->hnext;
            e->hnext = idx[e->hash & (n - 1)];
            idx[e->hash & (n - 1)] = e;
        }
    free(c->peer_index);
    c->peer_index = idx;
    c->n_index = n;
    return 0;
}

static void peer_free(aws_client *c, peer *e) {
    list_remove(&e->node);
    for (peer **p = peer_chain(c, e->hash); *p != NULL; p = &(*p)->hnext)
        if (*p == e) {
            *p = e->hnext;
            c->n_peers--;
            break;
        }
    if (e->bucket != NULL)
        c->bucket_peers--;
    free(e->service);
    free(e->url);
    free(e->bucket);
    free(e);
}

static int peer_is(const peer *e, const char *service, const char *url, const char *bucket) {
    return (bucket == NULL ? e->bucket == NULL
                           : e->bucket != NULL && strcmp(e->bucket, bucket) == 0) &&
           strcmp(e->url, url) == 0 && strcmp(e->service, service) == 0;
}

/* Peers looked at per trim: with hundreds of buckets in flight, none of them idle, a walk
 * of the whole list for every new bucket would cost as much as the search the index saves. */
#define PEERS_TRIM_LOOK 8

/* Frees least recently used bucket peers nobody points at while over the limit. One in use
 * is in use now: it goes to the front (recently used), so the next trim looks at others.
 * Each trim looks at a few; a new bucket peer makes one, so idle ones go as fast as new
 * ones come. */
static void peers_trim(aws_client *c) {
    for (size_t look = 0; c->bucket_peers > BUCKET_PEERS_KEPT && look < PEERS_TRIM_LOOK; look++) {
        peer *e = list_entry(c->peers.prev, peer, node);
        if (e->bucket != NULL && e->users == 0 && list_empty(&e->waiting) &&
            list_empty(&e->pace_node)) {
            peer_free(c, e);
        } else {
            list_remove(&e->node);
            list_insert_head(&c->peers, &e->node);
        }
    }
}

/* The peer of service and url, or of an S3 bucket there (bucket NULL: the endpoint's own),
 * made on first use and held for the caller (see call_drop_peers); NULL without memory. */
static peer *peer_get(aws_client *c, const char *service, const char *url, const char *bucket) {
    uint64_t hash = peer_hash(service, url, bucket);
    for (peer *e = c->n_index ? *peer_chain(c, hash) : NULL; e != NULL; e = e->hnext)
        if (e->hash == hash && peer_is(e, service, url, bucket)) {
            /* Most recently used first: the least recently used idle buckets are the ones
             * forgotten (peers_trim). */
            list_remove(&e->node);
            list_insert_head(&c->peers, &e->node);
            e->users++;
            return e;
        }
    if (peer_index_reserve(c) != 0)
        return NULL;
    peer *e = calloc(1, sizeof(*e));
    if (e == NULL || (e->service = strdup(service)) == NULL || (e->url = strdup(url)) == NULL ||
        (bucket != NULL && (e->bucket = strdup(bucket)) == NULL)) {
        if (e != NULL) {
            free(e->service);
            free(e->url);
        }
        free(e);
        return NULL;
    }
    e->users = 1;
    e->window = FIRST_FLIGHT_WINDOW;
    list_init(&e->pace_node);
    list_init(&e->waiting);
    retry_rate_limiter_init(&e->rl, now_s(c));
    retry_health_init(&e->health, now_s(c));
    list_insert_head(&c->peers, &e->node);
    e->hash = hash;
    e->hnext = *peer_chain(c, hash);
    *peer_chain(c, hash) = e;
    c->n_peers++;
    if (bucket != NULL && ++c->bucket_peers > BUCKET_PEERS_KEPT)
        peers_trim(c);
    return e;
}

/* The call no longer points at its peers. */
static void call_drop_peers(aws_call *call) {
    if (call->rate_ep != NULL)
        call->rate_ep->users--;
    if (call->health_ep != NULL)
        call->health_ep->users--;
    call->rate_ep = call->health_ep = NULL;
}

static void peers_free_all(aws_client *c) {
    list_node *n, *tmp;
    list_foreach_safe(n, tmp, &c->peers) {
        peer_free(c, list_entry(n, peer, node));
    }
    free(c->peer_index);
    c->peer_index = NULL;
    c->n_index = 0;
}

/* Which endpoint a call's next attempt goes to (the region may have changed by a redirect).
 * A call whose endpoint cannot be resolved gets no peer: building the attempt reports why. */
static void call_find_peers(aws_call *call) {
    aws_client *c = call->c;
    const endpoint *ep;
    char *err = NULL;
    call_drop_peers(call);
    if (client_endpoint(c, call->service, call->region, &ep, &err) == 0) {
        int per_bucket = strcmp(call->service, "s3") == 0 && call->bucket != NULL;
        call->health_ep = peer_get(c, call->service, ep->url, NULL);
        call->rate_ep =
            per_bucket ? peer_get(c, call->service, ep->url, call->bucket) : call->health_ep;
        if (!per_bucket && call->rate_ep != NULL)
            call->rate_ep->users++; /* one use per pointer: call_drop_peers drops both */
    }
    free(err);
}

/* ---- client lifetime ------------------------------------------------------------------ */

static void on_creds_fetched(void *arg);

static void client_http(void *arg, const http_vtable **vt, void **engine) {
    const aws_client *c = arg;
    *vt = c->http_vt;
    *engine = c->http;
}

static int settings_copy(aws_settings *dst, const aws_settings *src, const char *region) {
    memset(dst, 0, sizeof(*dst));
    dst->profile = dupstr(src->profile);
    dst->region = dupstr(region ? region : src->region);
    dst->region_source = dupstr(src->region_source);
    dst->config_file = dupstr(src->config_file);
    dst->credentials_file = dupstr(src->credentials_file);
    dst->endpoint_url = dupstr(src->endpoint_url);
    dst->profile_override = src->profile_override;
    if ((src->profile && !dst->profile) || !dst->region ||
        (src->region_source && !dst->region_source) || (src->config_file && !dst->config_file) ||
        (src->credentials_file && !dst->credentials_file) ||
        (src->endpoint_url && !dst->endpoint_url)) {
        credentials_settings_free(dst);
        return OL_ENOMEM;
    }
    return 0;
}

/* Everything but the settings and the credentials plan, which the caller set. spec (owned)
 * NULL with anonymous: unsigned requests. */
static int client_finish(aws_client *c, cred_spec *spec, char **err) {
    int rc = endpoints_check_configured(c->settings.region, c->settings.endpoint_url, err);
    if (rc == 0)
        rc = retry_config_from_env(&c->rcfg, err);
    if (rc == 0)
        rc = jitter_from_env(c, err);
    if (rc != 0) {
        credentials_spec_free(spec);
        return rc;
    }
    retry_quota_init(&c->quota, 500);
    c->timeout_ms = DEFAULT_TIMEOUT_MS;
    const char *t = getenv("OPSLINE_TIMEOUT_MS");
    if (t != NULL && atol(t) > 0)
        c->timeout_ms = atol(t);
    c->http = http_new(c->loop);
    if (c->http == NULL) {
        credentials_spec_free(spec);
        return OL_ENOMEM;
    }
    c->http_vt = &http_default_vtable;
    c->http_open = 1;
    if (spec != NULL) {
        rc = provider_new(c->loop, spec, &c->settings, client_http, on_creds_fetched, c, &c->prov);
        if (rc != 0) {
            c->http_vt->close(c->http, NULL, NULL);
            return rc;
        }
        c->prov_open = 1;
    }
    uv_timer_init(c->loop, &c->pace_timer); /* last: a failure above leaves no handle behind */
    c->pace_timer.data = c;
    return 0;
}

/* What both constructors set first: the loop and the empty lists. */
static void client_init_lists(aws_client *c, uv_loop_t *loop) {
    c->loop = loop;
    list_init(&c->calls);
    list_init(&c->peers);
    list_init(&c->resolved);
    list_init(&c->paced);
}

static void client_free_early(aws_client *c) {
    credentials_settings_free(&c->settings);
    free(c->creds_err);
    free(c);
}

int aws_client_new(uv_loop_t *loop, const char *profile, const char *region, aws_client **out,
                   char **err) {
    aws_client *c = calloc(1, sizeof(*c));
    cred_spec *spec = NULL;
    int rc;
    *out = NULL;
    *err = NULL;
    if (c == NULL)
        return OL_ENOMEM;
    client_init_lists(c, loop);
    rc = credentials_settings(profile, region, &c->settings, err);
    if (rc != 0)
        goto fail;
    /* Where the credentials come from is decided now; a failure is kept for the first request
     * so that commands that need none (presign --help, plugins) still work. */
    c->creds_code = credentials_plan(&c->settings, &spec, &c->creds_err);
    if ((rc = client_finish(c, spec, err)) != 0)
        goto fail;
    *out = c;
    return 0;
fail:
    client_free_early(c);
    return rc;
}

int aws_client_new_spec(uv_loop_t *loop, const aws_settings *settings, cred_spec *spec,
                        const char *region, aws_client **out, char **err) {
    aws_client *c = calloc(1, sizeof(*c));
    *out = NULL;
    *err = NULL;
    if (c == NULL || settings_copy(&c->settings, settings, region) != 0) {
        free(c);
        credentials_spec_free(spec);
        return OL_ENOMEM;
    }
    client_init_lists(c, loop);
    c->anonymous = spec == NULL;
    int rc = client_finish(c, spec, err);
    if (rc != 0) {
        client_free_early(c);
        return rc;
    }
    *out = c;
    return 0;
}

const aws_settings *aws_client_settings(const aws_client *c) {
    return &c->settings;
}

const char *aws_client_source(const aws_client *c) {
    return c->prov != NULL ? provider_source(c->prov) : NULL;
}

void aws_client_set_clock(aws_client *c, long long (*fn)(void *arg), void *arg) {
    if (c->prov != NULL)
        provider_set_clock(c->prov, fn, arg);
}

unsigned aws_client_creds_fetches(const aws_client *c) {
    return c->prov != NULL ? provider_fetches(c->prov) : 0;
}

int aws_client_creds_error(const aws_client *c, const char **msg) {
    *msg = c->creds_err;
    return c->prov != NULL || c->anonymous ? 0 : c->creds_code ? c->creds_code : OL_ECREDS;
}

void aws_client_set_logger(aws_client *c, void (*fn)(void *arg, const char *line), void *arg) {
    c->log_fn = fn;
    c->log_arg = arg;
}

void aws_client_set_rate_wait_hook(aws_client *c, void (*fn)(void *owner, int waiting, void *arg),
                                   void *arg) {
    c->rate_wait_fn = fn;
    c->rate_wait_arg = arg;
}

void aws_client_set_random(aws_client *c, double (*fn)(void *arg), void *arg) {
    c->rand_fn = fn;
    c->rand_arg = arg;
}

static void call_log(const aws_call *call, const char *what, const char *code, long status,
                     double delay_s) {
    char line[512];
    const aws_client *c = call->c;
    if (c->log_fn == NULL)
        return;
    snprintf(line, sizeof(line), "%s: %s %s%s%s: %s (HTTP %ld, attempt %u); next try in %.0f ms",
             what, call->service, call->method, call->bucket ? " " : "",
             call->bucket ? call->bucket : "",
             code     ? code
             : status ? status_code_text(status)
                      : "no answer",
             status, call->attempts, delay_s * 1000.0);
    c->log_fn(c->log_arg, line);
}

static void on_http_closed(void *arg);

void aws_client_set_http(aws_client *c, const http_vtable *vt, void *engine) {
    c->http_vt->close(c->http, on_http_closed, c);
    c->http_vt = vt;
    c->http = engine;
    c->http_open++;
}

void aws_client_stats(const aws_client *c, aws_stats *out) {
    *out = c->stats;
    out->bucket_peers = c->bucket_peers;
}

static void client_maybe_closed(aws_client *c) {
    if (!c->closing || c->http_open > 0 || c->live > 0 || c->prov_open)
        return;
    void (*cb)(void *) = c->on_closed;
    void *arg = c->on_closed_arg;
    peers_free_all(c);
    resolved_free_all(c);
    credentials_settings_free(&c->settings);
    free(c->creds_err);
    free(c);
    sigv4_forget_keys();
    if (cb)
        cb(arg);
}

static void on_http_closed(void *arg) {
    aws_client *c = arg;
    c->http_open--;
    client_maybe_closed(c);
}

static void on_pace_closed(uv_handle_t *h) {
    on_http_closed(h->data);
}

/* ---- call lifetime -------------------------------------------------------------------- */

static void call_free_cb(uv_handle_t *h) {
    aws_call *call = h->data;
    aws_client *c = call->c;
    call_drop_peers(call);
    free(call->service);
    free(call->method);
    free(call->bucket);
    free(call->key);
    free(call->region);
    free(call->params);  /* one block with its strings (copy_kv) */
    free(call->headers); /* the same */
    free(call->form_body);
    free(call->as_key_id);
    if (call->as_secret != NULL) {
        OPENSSL_cleanse(call->as_secret, strlen(call->as_secret));
        free(call->as_secret);
    }
    if (call->consistency_codes) {
        for (char **p = call->consistency_codes; *p; p++)
            free(*p);
        free(call->consistency_codes);
    }
    free(call);
    c->live--;
    client_maybe_closed(c);
}

/* The call starts (on 1) or stops (0) waiting on AWS's rate: tell the hook. */
static void call_rate_wait(aws_call *call, int on) {
    if (call->rate_waiting == on)
        return;
    call->rate_waiting = on;
    aws_client *c = call->c;
    if (call->owner != NULL && c->rate_wait_fn != NULL)
        c->rate_wait_fn(call->owner, on, c->rate_wait_arg);
}

/* Run the user's callback once, unlink the call and release it. */
static void call_finish(aws_call *call, const ol_aws_response *res) {
    if (call->completed)
        return;
    call_rate_wait(call, 0);
    call->completed = 1;
    list_remove(&call->node);
    list_remove(&call->wait_node);
    uv_timer_stop(&call->timer);
    call->cb(call->arg, res);
    uv_close((uv_handle_t *)&call->timer, call_free_cb);
}

static void call_fail(aws_call *call, int result, const char *message) {
    ol_aws_response res;
    memset(&res, 0, sizeof(res));
    res.struct_size = sizeof(res);
    res.result = result;
    res.body = "";
    res.error_message = message;
    res.attempts = call->attempts;
    call_finish(call, &res);
}

/* A copy of the n pairs and their strings in one block (one free releases it all). */
static ol_kv *copy_kv(const ol_kv *src, size_t n) {
    if (n == 0)
        return NULL;
    size_t size = n * sizeof(ol_kv);
    for (size_t i = 0; i < n; i++)
        size +=
            strlen(src[i].name ? src[i].name : "") + strlen(src[i].value ? src[i].value : "") + 2;
    ol_kv *dst = malloc(size);
    if (dst == NULL)
        return NULL;
    char *at = (char *)(dst + n);
    for (size_t i = 0; i < n; i++) {
        const char *name = src[i].name ? src[i].name : "";
        const char *value = src[i].value ? src[i].value : "";
        dst[i].name = at;
        at = stpcpy(at, name) + 1;
        dst[i].value = at;
        at = stpcpy(at, value) + 1;
    }
    return dst;
}

/* s percent-encoded by libcurl, or s itself when it holds only unreserved characters, which
 * encoding leaves as they are: names such as "Tags.member.1.Key" and most values need no
 * call. *len is its length. */
static const char *escaped(const char *s, size_t *len, char **owned) {
    size_t n = strlen(s);
    *owned = NULL;
    if (sigv4_unreserved_span(s, n) == n) {
        *len = n;
        return s;
    }
    *owned = curl_easy_escape(NULL, s, 0);
    *len = *owned != NULL ? strlen(*owned) : 0;
    return *owned;
}

/* name=value pairs joined with '&', names and values percent-encoded by libcurl (which
 * keeps exactly the unreserved set SigV4 keeps). */
static char *encode_pairs(const ol_kv *kv, size_t n) {
    size_t cap = 256, len = 0;
    char *out = malloc(cap);
    if (out == NULL)
        return NULL;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        char *ko, *vo;
        size_t kl, vl;
        const char *k = escaped(kv[i].name, &kl, &ko);
        const char *v = escaped(kv[i].value, &vl, &vo);
        size_t need = len + kl + vl + 3;
        if (k == NULL || v == NULL || need > cap) {
            char *n2 = k != NULL && v != NULL ? realloc(out, need * 2) : NULL;
            if (n2 == NULL) {
                curl_free(ko);
                curl_free(vo);
                free(out);
                return NULL;
            }
            out = n2;
            cap = need * 2;
        }
        if (i > 0)
            out[len++] = '&';
        memcpy(out + len, k, kl);
        len += kl;
        out[len++] = '=';
        memcpy(out + len, v, vl);
        len += vl;
        out[len] = '\0';
        curl_free(ko);
        curl_free(vo);
    }
    return out;
}

/* Copies what call needs of req (it outlives the caller's request). Nonzero: out of memory. */
static int call_copy_request(aws_call *call, const ol_aws_request *req) {
    aws_client *c = call->c;
    call->flags = req->flags;
    call->body = req->body;
    call->body_len = req->body_len;
    call->service = dupstr(req->service);
    call->method = dupstr(req->method);
    call->bucket = dupstr(req->bucket);
    call->key = dupstr(req->key);
    call->region = dupstr(req->region ? req->region : c->settings.region);
    call->params = copy_kv(req->params, req->n_params);
    call->n_params = call->params ? req->n_params : 0;
    call->headers = copy_kv(req->headers, req->n_headers);
    call->n_headers = call->headers ? req->n_headers : 0;
    if (req->struct_size >=
            offsetof(ol_aws_request, secret_access_key) + sizeof(req->secret_access_key) &&
        req->access_key_id != NULL && req->secret_access_key != NULL) {
        call->as_key_id = dupstr(req->access_key_id);
        call->as_secret = dupstr(req->secret_access_key);
        if (call->as_key_id == NULL || call->as_secret == NULL)
            req = NULL; /* reported as out of memory below */
    }
    int oom = req == NULL || !call->service || !call->method || !call->region ||
              (req->bucket && !call->bucket) || (req->key && !call->key) ||
              (req->n_params && !call->params) || (req->n_headers && !call->headers);
    if (!oom && req->consistency_codes) {
        size_t n = 0;
        while (req->consistency_codes[n])
            n++;
        call->consistency_codes = calloc(n + 1, sizeof(char *));
        oom = call->consistency_codes == NULL;
        for (size_t i = 0; !oom && i < n; i++) {
            call->consistency_codes[i] = strdup(req->consistency_codes[i]);
            oom = call->consistency_codes[i] == NULL;
        }
        call->consistency_deadline = uv_now(c->loop) + req->consistency_ms;
    }
    if (!oom && strcmp(call->method, "POST") == 0 && req->body == NULL && call->n_params) {
        call->form_body = encode_pairs(call->params, call->n_params);
        oom = call->form_body == NULL;
    }
    return oom;
}

int aws_send(aws_client *c, const ol_aws_request *req, ol_aws_cb cb, void *arg) {
    return aws_send_owned(c, req, cb, arg, NULL, 0);
}

int aws_send_owned(aws_client *c, const ol_aws_request *req, ol_aws_cb cb, void *arg, void *owner,
                   uint64_t rank) {
    if (c == NULL || req == NULL || cb == NULL || req->service == NULL || req->method == NULL)
        return OL_EINVAL;
    if (c->closing)
        return OL_ECANCELED;
    aws_call *call = calloc(1, sizeof(*call));
    if (call == NULL)
        return OL_ENOMEM;
    call->c = c;
    list_init(&call->node);
    list_init(&call->wait_node);
    call->cb = cb;
    call->arg = arg;
    call->owner = owner;
    call->rank = rank;
    int oom = call_copy_request(call, req);
    uv_timer_init(c->loop, &call->timer);
    call->timer.data = call;
    c->live++;
    if (oom) {
        /* Never call cb when returning an error: release the call through its timer. */
        call->completed = 1;
        uv_close((uv_handle_t *)&call->timer, call_free_cb);
        return OL_ENOMEM;
    }
    list_insert_head(&c->calls, &call->node);
    c->stats.requests++;
    /* Start from the loop, never from inside aws_send, so callers see one code path. */
    uv_timer_start(&call->timer, on_timer_resend, 0, 0);
    return 0;
}

/* ---- building and sending one attempt ------------------------------------------------- */

typedef struct attempt {
    const endpoint *ep; /* the client's, not the attempt's */
    char *url;
    char *host;
    char *path;  /* wire path */
    char *query; /* wire query, may be "" */
    ol_kv hdrs[40];
    size_t n;
    char amz_date[17];
    char payload_hash[65];
    char md5[25];
    char *auth;
} attempt;

static void attempt_free(attempt *a) {
    free(a->url);
    free(a->host);
    free(a->path);
    free(a->query);
    free(a->auth);
}

static int is_s3(const aws_call *call) {
    return strcmp(call->service, "s3") == 0;
}

/* The body sent: a Query API call's encoded parameters, else the caller's body. */
static const char *call_body(const aws_call *call, size_t *len) {
    *len = call->form_body ? strlen(call->form_body) : call->body_len;
    return call->form_body ? call->form_body : call->body;
}

/* Endpoint, Host, wire path and query, and the URL of one attempt. */
static int attempt_url(aws_call *call, attempt *a, char **err) {
    aws_client *c = call->c;
    char *base = NULL, *prefix = NULL;
    int rc = client_endpoint(c, call->service, call->region, &a->ep, err);
    if (rc != 0)
        return rc;
    if (is_s3(call) && call->bucket) {
        rc = endpoints_s3_url(a->ep, call->bucket, &base, &a->host, &prefix);
        if (rc != 0)
            return rc;
    } else {
        base = strdup(a->ep->url);
        a->host = strdup(a->ep->host);
        prefix = strdup("");
        if (!base || !a->host || !prefix) {
            free(base);
            free(prefix);
            return OL_ENOMEM;
        }
    }
    char *ekey = call->key ? sigv4_uri_encode(call->key, strlen(call->key), 1) : strdup("");
    size_t plen = strlen(prefix) + (ekey ? strlen(ekey) : 0) + 3;
    a->path = malloc(plen);
    if (ekey == NULL || a->path == NULL) {
        free(ekey);
        free(base);
        free(prefix);
        return OL_ENOMEM;
    }
    if (call->key)
        snprintf(a->path, plen, "%s/%s", prefix, ekey);
    else
        snprintf(a->path, plen, "%s/", prefix);
    free(ekey);
    free(prefix);
    a->query = call->form_body ? strdup("") : encode_pairs(call->params, call->n_params);
    size_t ulen = strlen(base) + strlen(a->path) + (a->query ? strlen(a->query) : 0) + 2;
    a->url = malloc(ulen);
    if (a->query == NULL || a->url == NULL) {
        free(base);
        return OL_ENOMEM;
    }
    snprintf(a->url, ulen, "%s%s%s%s", base, a->path, a->query[0] ? "?" : "", a->query);
    free(base);
    return 0;
}

/* The headers of one attempt, dated now, and their SigV4 Authorization. */
static int attempt_sign(aws_call *call, attempt *a, const credentials *cr) {
    size_t body_len;
    const char *body = call_body(call, &body_len);
    sigv4_amz_date(time(NULL), a->amz_date);
    sigv4_sha256_hex(body ? body : "", body_len, a->payload_hash);
    a->hdrs[a->n++] = (ol_kv){"Host", a->host};
    a->hdrs[a->n++] = (ol_kv){"X-Amz-Date", a->amz_date};
    if (is_s3(call))
        a->hdrs[a->n++] = (ol_kv){"X-Amz-Content-Sha256", a->payload_hash};
    /* A request signed with a given key (2.1: proving a stored key) sends no token. */
    const char *token = call->as_key_id == NULL && cr != NULL ? cr->session_token : NULL;
    if (token)
        a->hdrs[a->n++] = (ol_kv){"X-Amz-Security-Token", token};
    if (call->form_body)
        a->hdrs[a->n++] =
            (ol_kv){"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"};
    if (call->flags & OL_AWS_CONTENT_MD5) {
        sigv4_content_md5(body ? body : "", body_len, a->md5);
        a->hdrs[a->n++] = (ol_kv){"Content-MD5", a->md5};
    }
    for (size_t i = 0; i < call->n_headers && a->n < 38; i++)
        a->hdrs[a->n++] = call->headers[i];

    if (cr == NULL && call->as_key_id == NULL) /* anonymous: AssumeRoleWithWebIdentity */
        return 0;
    sigv4_request sreq = {call->method, a->path, a->query, a->hdrs, a->n, a->payload_hash};
    sigv4_scope scope = {a->ep->signing_region, a->ep->signing_name, a->amz_date, is_s3(call)};
    sigv4_creds screds = {call->as_key_id, call->as_secret, NULL};
    if (call->as_key_id == NULL)
        screds = (sigv4_creds){cr->access_key_id, cr->secret_access_key, cr->session_token};
    int rc = sigv4_authorization(&sreq, &scope, &screds, &a->auth);
    if (rc != 0)
        return rc;
    a->hdrs[a->n++] = (ol_kv){"Authorization", a->auth};
    return 0;
}

/* Built from scratch for every attempt: a retry after a long backoff gets a fresh date
 * and signature, a redirect the other region's endpoint. */
static int attempt_build(aws_call *call, attempt *a, const credentials *cr, char **err) {
    int rc = attempt_url(call, a, err);
    return rc != 0 ? rc : attempt_sign(call, a, cr);
}

static void on_http_done(void *arg, const http_response *res);

/* "http://host answered HTTP 500 InternalError to every one of the last 9 requests (no
 * success for 3 s); giving up" */
static void peer_dead_note(const peer *e, double now, char *buf, size_t size) {
    snprintf(buf, size,
             "%s answered %s to every one of the last %u requests (no success for %.0f s); "
             "giving up",
             e->url, e->last_error[0] ? e->last_error : "errors", e->health.failed_attempts,
             retry_health_stalled_s(&e->health, now));
}

/* A call to a dead endpoint ends without being sent, with the endpoint's last error. */
static void call_fail_dead(aws_call *call) {
    const peer *e = call->health_ep;
    char note[512];
    ol_aws_response res;
    peer_dead_note(e, now_s(call->c), note, sizeof(note));
    memset(&res, 0, sizeof(res));
    res.struct_size = sizeof(res);
    res.result = e->last_code[0] ? OL_EAWS : OL_ENET;
    res.status = e->last_status;
    res.error_code = e->last_code[0] ? e->last_code : NULL;
    res.body = "";
    res.error_message = note;
    res.attempts = call->attempts;
    call_finish(call, &res);
}

static void call_transmit(aws_call *call);
static void pace_run(aws_client *c);

static void on_pace_timer(uv_timer_t *t) {
    pace_run(t->data);
}

/* Before the endpoint's first throttle: as many requests in flight as its window allows. */
static int first_flight_full(const peer *e) {
    return !e->rl.enabled && e->in_flight >= e->window;
}

/* Sends what the token buckets allow, in each endpoint's queue order, and arms the
 * one pacing timer for the earliest token still due. A callback run from here may send
 * again: that only marks another pass. */
static void pace_run(aws_client *c) {
    list_node *n, *tmp;
    if (c->pacing) {
        c->pace_again = 1;
        return;
    }
    c->pacing = 1;
    do {
        double next = -1.0;
        c->pace_again = 0;
        list_foreach_safe(n, tmp, &c->paced) {
            peer *e = list_entry(n, peer, pace_node);
            list_node *w;
            while ((w = list_first(&e->waiting)) != NULL && !c->closing) {
                if (first_flight_full(e))
                    break; /* an answer makes room (on_http_done arms the timer) */
                double wait = retry_rate_limiter_acquire(&e->rl, now_s(c));
                if (wait > 0) {
                    if (next < 0 || wait < next)
                        next = wait;
                    break;
                }
                list_remove(w);
                call_transmit(list_entry(w, aws_call, wait_node));
            }
            if (list_empty(&e->waiting))
                list_remove(&e->pace_node);
        }
        if (next > 0 && !c->closing)
            uv_timer_start(&c->pace_timer, on_pace_timer, (uint64_t)(next * 1000.0) + 1, 0);
        else
            uv_timer_stop(&c->pace_timer);
    } while (c->pace_again);
    c->pacing = 0;
}

/* Into the endpoint's token queue, behind every call of the same or a lower rank. Searched
 * from the back: calls mostly arrive in rank order, or nearly. */
static void queue_for_token(peer *e, aws_call *call) {
    list_node *at = e->waiting.prev;
    while (at != &e->waiting && list_entry(at, aws_call, wait_node)->rank > call->rank)
        at = at->prev;
    list_insert_head(at, &call->wait_node);
}

/* Send now, or queue for a token of the endpoint's rate limiter behind the calls already
 * waiting; a dead endpoint fails a new call at once, but for one probe now and then. */
/* The credentials to sign call with (NULL for an anonymous client). 0, or the call was
 * parked until the provider has them (on_creds_fetched sends it again) or failed. */
static int call_creds(aws_call *call, const credentials **cr) {
    aws_client *c = call->c;
    *cr = NULL;
    if (c->anonymous)
        return 0;
    const char *cmsg = c->creds_err;
    int st = c->prov != NULL ? provider_get(c->prov, cr, &cmsg) : c->creds_code;
    if (st > 0) {
        call->waiting = 1;
        return 1;
    }
    if (st < 0) {
        call_fail(call, st, cmsg ? cmsg : "no AWS credentials found");
        return -1;
    }
    return 0;
}

static void call_send(aws_call *call) {
    aws_client *c = call->c;
    if (c->closing) {
        call_fail(call, OL_ECANCELED, "interrupted");
        return;
    }
    const credentials *cr = NULL;
    if (call_creds(call, &cr) != 0)
        return;
    call_find_peers(call);
    /* A retry already paid for (quota, backoff) still goes: only new calls stop. */
    if (call->retries == 0 && call->health_ep != NULL && call->health_ep->health.dead &&
        !retry_health_may_probe(&call->health_ep->health, now_s(c))) {
        call_fail_dead(call);
        return;
    }
    peer *e = call->rate_ep;
    if (c->rcfg.mode == RETRY_MODE_ADAPTIVE && e != NULL &&
        (!list_empty(&e->waiting) || first_flight_full(e) ||
         retry_rate_limiter_acquire(&e->rl, now_s(c)) > 0)) {
        queue_for_token(e, call);
        call_rate_wait(call, 1);
        if (list_empty(&e->pace_node))
            list_insert_tail(&c->paced, &e->pace_node);
        pace_run(c);
        return;
    }
    call_transmit(call);
}

static void call_transmit(aws_call *call) {
    aws_client *c = call->c;
    call_rate_wait(call, 0);
    char *err = NULL;
    attempt a;
    const credentials *cr = NULL;
    /* Again at sending time: a call paced by the rate limiter may have waited past a refresh. */
    if (call_creds(call, &cr) != 0)
        return;
    memset(&a, 0, sizeof(a));
    int rc = attempt_build(call, &a, cr, &err);
    if (rc != 0) {
        call_fail(call, rc, err ? err : "could not build the request");
        free(err);
        attempt_free(&a);
        return;
    }
    http_request hreq = {
        .method = call->method,
        .url = a.url,
        .headers = a.hdrs,
        .n_headers = a.n,
        .timeout_ms = c->timeout_ms,
        .connect_timeout_ms = 0,
        .send_once = (call->flags & OL_AWS_NOT_IDEMPOTENT) != 0,
        .host = a.host,
    };
    hreq.body = call_body(call, &hreq.body_len);
    rc = c->http_vt->send(c->http, &hreq, on_http_done, call);
    attempt_free(&a);
    if (rc != 0) {
        call_fail(call, rc, "could not start the HTTP request");
        return;
    }
    call->in_http = 1;
    if (call->rate_ep != NULL)
        call->rate_ep->in_flight++; /* rate_ep stays while in_http (call_send sets it) */
    call->attempts++;
    c->stats.attempts++;
}

static void on_timer_resend(uv_timer_t *t) {
    call_send(t->data);
}

/* A fetch ended: what waited is sent (or fails with the fetch's message), from the loop. */
static void on_creds_fetched(void *arg) {
    aws_client *c = arg;
    list_node *n;
    list_foreach(n, &c->calls) {
        aws_call *call = list_entry(n, aws_call, node);
        if (!call->waiting)
            continue;
        call->waiting = 0;
        uv_timer_start(&call->timer, on_timer_resend, 0, 0);
    }
}

static void schedule_resend(aws_call *call, double delay_s) {
    /* The backoff counts from now, not from the loop's cached time, which is as old as this
     * loop iteration (milliseconds under a sanitizer or a busy machine): a retry must not
     * leave earlier than its delay after the failure. */
    uv_update_time(call->timer.loop);
    uv_timer_start(&call->timer, on_timer_resend, (uint64_t)(delay_s * 1000.0), 0);
}

/* ---- answers -------------------------------------------------------------------------- */

static int is_consistency_code(const aws_call *call, const char *code) {
    if (call->consistency_codes == NULL || code == NULL)
        return 0;
    for (char **p = call->consistency_codes; *p; p++)
        if (strcmp(*p, code) == 0)
            return 1;
    return 0;
}

/* S3 answers a request sent to the wrong region with 301 (PermanentRedirect), 307, or 400
 * AuthorizationHeaderMalformed / IllegalLocationConstraintException, and names the right
 * region in x-amz-bucket-region or <Region> (S3 API reference, "Error responses"). */
static const char *s3_redirect_region(const aws_call *call, const http_response *res,
                                      const xml_aws_error *e) {
    if (!is_s3(call) || call->redirected || call->bucket == NULL)
        return NULL;
    /* A HEAD answer has no body: its 400 carries the hint in x-amz-bucket-region only. */
    int wrong =
        res->status == 301 || res->status == 307 ||
        (res->status == 400 && e->code &&
         (strcmp(e->code, "AuthorizationHeaderMalformed") == 0 ||
          strcmp(e->code, "IllegalLocationConstraintException") == 0)) ||
        (res->status == 400 && e->code == NULL && http_header(res, "x-amz-bucket-region") != NULL);
    if (!wrong)
        return NULL;
    const char *r = http_header(res, "x-amz-bucket-region");
    if (r == NULL || *r == '\0')
        r = e->region;
    if (r == NULL || *r == '\0' || strcmp(r, call->region) == 0)
        return NULL;
    return r;
}

static const char *status_code_text(long status) {
    switch (status) {
    case 301:
        return "PermanentRedirect";
    case 400:
        return "BadRequest";
    case 403:
        return "Forbidden";
    case 404:
        return "NotFound";
    case 409:
        return "Conflict";
    case 429:
        return "TooManyRequests";
    case 500:
        return "InternalError";
    case 503:
        return "ServiceUnavailable";
    default:
        return "HttpError";
    }
}

static void complete_with(aws_call *call, const http_response *res, int result,
                          const xml_aws_error *e, const char *note) {
    ol_aws_response out;
    memset(&out, 0, sizeof(out));
    out.struct_size = sizeof(out);
    out.result = result;
    out.status = res->status;
    out.body = res->body ? res->body : "";
    out.body_len = res->body ? res->body_len : 0;
    out.attempts = call->attempts;
    char quota_msg[1024];
    if (result != 0) {
        out.error_code = e && e->code ? e->code : NULL;
        out.error_message = e && e->message ? e->message : res->error;
        if (result == OL_EQUOTA)
            note = "not retried: the retry quota is used up, this endpoint keeps failing";
        if (note != NULL) {
            snprintf(quota_msg, sizeof(quota_msg), "%s [%s]",
                     out.error_message ? out.error_message : "request failed", note);
            out.error_message = quota_msg;
        }
        if (out.error_code == NULL && res->status >= 300)
            out.error_code = status_code_text(res->status);
    }
    out.request_id = e && e->request_id ? e->request_id : NULL;
    if (out.request_id == NULL)
        out.request_id = http_header(res, "x-amz-request-id");
    if (out.request_id == NULL)
        out.request_id = http_header(res, "x-amzn-requestid");
    call_finish(call, &out);
}

/* A throttled call is retried without paying the retry quota (adaptive mode) while its
 * endpoint has made progress lately; it then sets call->stalled and is not retried. */
static int throttle_may_retry(aws_call *call) {
    aws_client *c = call->c;
    const peer *e = call->health_ep;
    if (e == NULL || retry_health_stalled_s(&e->health, now_s(c)) < c->rcfg.progress_timeout_s)
        return 1;
    call->stalled = 1;
    return 0;
}

/* Decide whether to try again; returns nonzero when a resend was scheduled. */
static int maybe_retry(aws_call *call, retry_kind kind, const char *code, long status,
                       int *quota_refused) {
    aws_client *c = call->c;
    *quota_refused = 0;
    if (kind == RETRY_THROTTLE)
        call->throttled++;
    if (!retry_attempts_allow(&c->rcfg, kind, call->retries + 1, call->throttled))
        return 0;
    unsigned taken = 0;
    if (kind == RETRY_THROTTLE && !retry_throttle_uses_quota(&c->rcfg)) {
        if (!throttle_may_retry(call))
            return 0;
    } else {
        taken = retry_quota_acquire(&c->quota, kind);
        if (taken == 0) {
            *quota_refused = 1;
            c->stats.quota_exhausted++;
            return 0;
        }
        call->quota_taken = taken;
    }
    call->retries++;
    c->stats.retries++;
    double jitter = c->rand_fn ? c->rand_fn(c->rand_arg) : rand01();
    double delay = retry_delay_s(&c->rcfg, kind, call->retries, call->throttled, jitter);
    call_log(call, "retry", code, status, delay);
    if (kind == RETRY_THROTTLE)
        call_rate_wait(call, 1);
    schedule_resend(call, delay);
    return 1;
}

/* Non-idempotent requests whose fate is unknown: the server may have acted on them. */
static int outcome_unknown(const aws_call *call, const http_response *res) {
    if (!(call->flags & OL_AWS_NOT_IDEMPOTENT))
        return 0;
    if (res->result != 0)
        return res->sent;
    return res->status == 500 || res->status == 502 || res->status == 504;
}

/* An answer that is neither a success nor a cancellation, on its way through the rules. */
typedef struct answer {
    aws_call *call;
    const http_response *res;
    xml_aws_error e; /* decoded from an HTTP answer's body; empty for a transport failure */
    retry_kind kind;
    int quota_refused; /* set by rule_retry */
} answer;

/* S3 names the bucket's region: resend there, once (a failed copy falls through). */
static int rule_redirect(answer *a) {
    const char *region = a->res->result == 0 ? s3_redirect_region(a->call, a->res, &a->e) : NULL;
    char *r = region != NULL ? strdup(region) : NULL;
    if (r == NULL)
        return 0;
    free(a->call->region);
    a->call->region = r;
    a->call->redirected = 1;
    call_log(a->call, "redirect", region, a->res->status, 0);
    schedule_resend(a->call, 0);
    return 1;
}

/* An error the caller expects while a change propagates: wait and resend in the window. */
static int rule_consistency(answer *a) {
    aws_call *call = a->call;
    if (a->res->result != 0 || !is_consistency_code(call, a->e.code) ||
        uv_now(call->c->loop) >= call->consistency_deadline)
        return 0;
    call_log(call, "consistency", a->e.code, a->res->status, CONSISTENCY_DELAY_MS / 1000.0);
    schedule_resend(call, CONSISTENCY_DELAY_MS / 1000.0);
    return 1;
}

/* A non-idempotent request the server may have acted on is never resent. A throttle
 * answer says it was not acted on. */
static int rule_unknown_outcome(answer *a) {
    if (a->kind == RETRY_THROTTLE || !outcome_unknown(a->call, a->res))
        return 0;
    complete_with(a->call, a->res, OL_EUNKNOWN, &a->e, NULL);
    return 1;
}

static int rule_retry(answer *a) {
    return maybe_retry(a->call, a->kind, a->e.code, a->res->status, &a->quota_refused);
}

/* Last rule: report the failure (OL_EQUOTA when only the retry quota stopped a retry). A
 * call that ran out of retries counts against its endpoint's health, and once the endpoint
 * is dead, the failure says so. */
static int rule_fail(answer *a) {
    aws_call *call = a->call;
    peer *e = call->health_ep;
    double now = now_s(call->c);
    int result = a->res->result != 0 ? a->res->result : OL_EAWS;
    char note[512];
    const char *why = NULL;
    if (a->quota_refused)
        result = OL_EQUOTA;
    if (e != NULL && a->kind != RETRY_NONE) {
        retry_health_failed_call(&e->health, now);
        if (call->stalled) {
            snprintf(note, sizeof(note),
                     "%s throttled every request for %.0f s (no success within "
                     "OPSLINE_PROGRESS_TIMEOUT_S=%.0f s); giving up",
                     e->url, retry_health_stalled_s(&e->health, now),
                     call->c->rcfg.progress_timeout_s);
            why = note;
        } else if (e->health.dead && !a->quota_refused) {
            peer_dead_note(e, now, note, sizeof(note));
            why = note;
        }
    }
    complete_with(call, a->res, result, &a->e, why);
    return 1;
}

/* Remember an endpoint's last retryable failure, for the message that gives up on it. */
static void peer_note_failure(peer *e, const answer *a) {
    const http_response *res = a->res;
    if (a->kind != RETRY_THROTTLE)
        retry_health_failed_attempt(&e->health);
    e->last_status = res->result == 0 ? res->status : 0;
    snprintf(e->last_code, sizeof(e->last_code), "%s",
             res->result == 0 ? (a->e.code ? a->e.code : status_code_text(res->status)) : "");
    if (res->result == 0)
        snprintf(e->last_error, sizeof(e->last_error), "HTTP %ld %s", res->status, e->last_code);
    else
        snprintf(e->last_error, sizeof(e->last_error), "no answer (%s)",
                 res->error ? res->error : ol_strerror(res->result));
}

/* The decision ladder for a failed answer, first match wins; every rule either completes
 * the call or schedules a resend when it returns 1. */
static int (*const answer_rules[])(answer *a) = {
    rule_redirect, rule_consistency, rule_unknown_outcome, rule_retry, rule_fail,
};

static void on_http_done(void *arg, const http_response *res) {
    aws_call *call = arg;
    aws_client *c = call->c;
    call->in_http = 0;
    peer *e = call->rate_ep;
    if (e != NULL) {
        e->in_flight--;
        if (!e->rl.enabled && res->result == 0 && res->status >= 200 && res->status < 300 &&
            e->window < UINT_MAX)
            e->window++;
        /* Room for a call held back: paced from the loop, not from inside this answer
         * (whose own callbacks come next). */
        if (!list_empty(&e->waiting) && !c->closing)
            uv_timer_start(&c->pace_timer, on_pace_timer, 0, 0);
    }
    if (res->result == OL_ECANCELED || c->closing) {
        call_fail(call, OL_ECANCELED, "interrupted");
        return;
    }
    if (res->result == 0 && res->status >= 200 && res->status < 300) {
        retry_quota_release(&c->quota, call->quota_taken);
        if (c->rcfg.mode == RETRY_MODE_ADAPTIVE && call->rate_ep != NULL)
            retry_rate_limiter_update(&call->rate_ep->rl, 0, now_s(c));
        if (call->health_ep != NULL)
            retry_health_success(&call->health_ep->health, now_s(c));
        complete_with(call, res, 0, NULL, NULL);
        return;
    }
    answer a = {.call = call, .res = res};
    if (res->result == 0)
        xml_aws_error_decode(res->body, res->body_len, &a.e);
    a.kind = retry_classify(res->status, a.e.code, res->result);
    if (a.kind == RETRY_THROTTLE)
        c->stats.throttled++;
    if (c->rcfg.mode == RETRY_MODE_ADAPTIVE && call->rate_ep != NULL)
        retry_rate_limiter_update(&call->rate_ep->rl, a.kind == RETRY_THROTTLE, now_s(c));
    if (a.kind != RETRY_NONE && call->health_ep != NULL)
        peer_note_failure(call->health_ep, &a);
    for (size_t i = 0; !answer_rules[i](&a); i++)
        ;
    xml_aws_error_free(&a.e);
}

/* ---- presigning ----------------------------------------------------------------------- */

int aws_presign_s3(aws_client *c, const char *method, const char *bucket, const char *key,
                   unsigned long expires, char **url, char **err) {
    endpoint ep;
    char *base = NULL, *host = NULL, *prefix = NULL, *ekey = NULL, *path = NULL, *q = NULL;
    char amz_date[17];
    int rc;
    *url = NULL;
    *err = NULL;
    memset(&ep, 0, sizeof(ep));
    if (expires < 1 || expires > 604800) {
        *err = strdup("expiry must be between 1 second and 7 days (604800 s)");
        return OL_ERANGE;
    }
    const credentials *cr = NULL;
    const char *cmsg = c->creds_err;
    rc = c->prov != NULL ? provider_get(c->prov, &cr, &cmsg) : c->creds_code;
    if (rc != 0) {
        *err = strdup(rc > 0 ? "the credentials are not fetched yet (aws_client_ready first)"
                      : cmsg ? cmsg
                             : "no AWS credentials found");
        return rc > 0 ? OL_ECREDS : rc;
    }
    rc = endpoints_resolve("s3", c->settings.region, c->settings.endpoint_url, &ep, err);
    if (rc != 0)
        goto done;
    rc = endpoints_s3_url(&ep, bucket, &base, &host, &prefix);
    if (rc != 0)
        goto done;
    ekey = sigv4_uri_encode(key, strlen(key), 1);
    rc = OL_ENOMEM;
    if (ekey == NULL)
        goto done;
    size_t plen = strlen(prefix) + strlen(ekey) + 2;
    path = malloc(plen);
    if (path == NULL)
        goto done;
    snprintf(path, plen, "%s/%s", prefix, ekey);
    sigv4_amz_date(time(NULL), amz_date);
    ol_kv hdrs[1] = {{"Host", host}};
    sigv4_request sreq = {method, path, "", hdrs, 1, "UNSIGNED-PAYLOAD"};
    sigv4_scope scope = {ep.signing_region, "s3", amz_date, 1};
    sigv4_creds screds = {cr->access_key_id, cr->secret_access_key, cr->session_token};
    rc = sigv4_presign(&sreq, &scope, &screds, expires, &q);
    if (rc != 0)
        goto done;
    size_t ulen = strlen(base) + strlen(path) + strlen(q) + 2;
    *url = malloc(ulen);
    if (*url == NULL) {
        rc = OL_ENOMEM;
        goto done;
    }
    snprintf(*url, ulen, "%s%s?%s", base, path, q);
    rc = 0;
done:
    endpoints_free(&ep);
    free(base);
    free(host);
    free(prefix);
    free(ekey);
    free(path);
    free(q);
    return rc;
}

/* ---- shutdown ------------------------------------------------------------------------- */

static void on_prov_closed(void *arg) {
    aws_client *c = arg;
    c->prov_open = 0;
    client_maybe_closed(c);
}

void aws_client_close(aws_client *c, void (*on_closed)(void *arg), void *arg) {
    c->closing = 1;
    c->rate_wait_fn = NULL; /* the owners may go once the close starts */
    c->on_closed = on_closed;
    c->on_closed_arg = arg;
    /* Calls waiting on a timer end now; calls inside HTTP end through http_close, which
     * runs their callbacks with OL_ECANCELED. */
    list_node waiting, *n, *tmp;
    list_init(&waiting);
    list_foreach_safe(n, tmp, &c->calls) {
        if (!list_entry(n, aws_call, node)->in_http) {
            list_remove(n);
            list_insert_tail(&waiting, n);
        }
    }
    /* A callback may do anything, so take the head each time; call_finish unlinks it. */
    while ((n = list_first(&waiting)) != NULL)
        call_fail(list_entry(n, aws_call, node), OL_ECANCELED, "interrupted");
    if (c->prov != NULL)
        provider_close(c->prov, on_prov_closed, c);
    c->prov = NULL;
    c->http_open++; /* the pacing timer: one more handle to see closed */
    uv_close((uv_handle_t *)&c->pace_timer, on_pace_closed);
    c->http_vt->close(c->http, on_http_closed, c);
}
