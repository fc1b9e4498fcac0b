/* aws: the asynchronous AWS client every stage uses through the host API. It owns the
 * resolved settings and credentials, the HTTP engine, the retry quota and what it knows of
 * each endpoint (rate limiter with its queue of waiting calls, health); it turns an ol_aws_request
 * into a signed HTTP request to the right endpoint, retries it the way the AWS SDKs do, follows S3
 * wrong-region answers once, and decodes AWS errors. */
#ifndef OL_AWS_AWS_H
#define OL_AWS_AWS_H

#include <uv.h>

#include "credentials.h"
#include "http.h"
#include "opsline/opsline.h"

typedef struct aws_client aws_client;

/* Resolve settings (profile, region), credentials, retry configuration; create the HTTP
 * engine on loop. profile and region override the environment when non-NULL. Returns 0, or
 * OL_ECONFIG / OL_ECREDS / OL_ENOMEM with a malloc'd user message in *err (never a
 * secret). */
int aws_client_new(uv_loop_t *loop, const char *profile, const char *region, aws_client **out,
                   char **err);

/* Where the credentials come from is decided by aws_client_new (credentials_plan); temporary
 * ones are fetched at the first request and refreshed before they expire, requests waiting
 * meanwhile. A plan that found nothing is reported at the first request, or by this function:
 * returns 0 or the plan's error with its message in *msg (borrowed). */
int aws_client_creds_error(const aws_client *c, const char **msg);

/* A client for settings (copied; region overrides theirs when non-NULL) whose credentials
 * come from spec (owned, also on failure), or an anonymous one sending unsigned requests when
 * spec is NULL (AssumeRoleWithWebIdentity). The provider of a role uses it. */
int aws_client_new_spec(uv_loop_t *loop, const aws_settings *settings, cred_spec *spec,
                        const char *region, aws_client **out, char **err);

const aws_settings *aws_client_settings(const aws_client *c);

/* Where the client's credentials come from, for messages (never a secret), or NULL. */
const char *aws_client_source(const aws_client *c);

/* How many times the credentials were fetched (temporary credentials: once, then at every
 * refresh; static keys: 0). */
unsigned aws_client_creds_fetches(const aws_client *c);

/* Send req. region NULL: req->region, else the client's region. cb runs exactly once from
 * the loop, or a negative code is returned and cb never runs. */
int aws_send(aws_client *c, const ol_aws_request *req, ol_aws_cb cb, void *arg);

/* aws_send on behalf of owner (the host passes the item): the client tells the rate-wait
 * hook when a call of owner starts and stops waiting on AWS's rate, that is for a token of
 * the client-side rate limiter or in the backoff after a throttled answer. Calls waiting for
 * a token go in order of rank, lowest first (first come first served among equals; aws_send
 * ranks 0): the host ranks an item's calls by when the item started, so that under a quota
 * the items started first finish first instead of all of them advancing together. */
int aws_send_owned(aws_client *c, const ol_aws_request *req, ol_aws_cb cb, void *arg, void *owner,
                   uint64_t rank);

/* The rate-wait hook: fn(owner, 1, arg) when a call of owner starts waiting on AWS's rate,
 * fn(owner, 0, arg) when it stops (it is sent, or it ends), once each per wait; never for a
 * call without an owner, never after aws_client_close. fn NULL turns it off. */
void aws_client_set_rate_wait_hook(aws_client *c, void (*fn)(void *owner, int waiting, void *arg),
                                   void *arg);

/* A presigned URL for an S3 object (SigV4 query auth), malloc'd into *url.
 * expires in seconds: 1..604800 (7 days), else OL_ERANGE. Returns 1 (nothing in *url or *err)
 * while temporary credentials are being fetched: run the loop and call again. */
int aws_presign_s3(aws_client *c, const char *method, const char *bucket, const char *key,
                   unsigned long expires, char **url, char **err);

/* Optional debug logger: one line per retry, redirect and consistency wait (never a secret).
 * fn may be NULL to turn it off. */
void aws_client_set_logger(aws_client *c, void (*fn)(void *arg, const char *line), void *arg);

/* The jitter of the retry backoff: fn returns a number in [0,1) for each retry (default:
 * OpenSSL's RAND_bytes). A seam for tests, which need a known delay; fn NULL restores the
 * default. */
void aws_client_set_random(aws_client *c, double (*fn)(void *arg), void *arg);

/* A seam for tests: the wall clock (seconds since the epoch) on which the expiry of
 * temporary credentials is judged; fn NULL restores time(). */
void aws_client_set_clock(aws_client *c, long long (*fn)(void *arg), void *arg);

/* A seam for tests: send every request through vt with engine (both borrowed until the
 * client is closed) instead of the engine aws_client_new made, which is closed. Call before
 * the first aws_send. */
void aws_client_set_http(aws_client *c, const http_vtable *vt, void *engine);

/* Counters for reports and tests. */
typedef struct aws_stats {
    unsigned long requests; /* logical requests */
    unsigned long attempts; /* HTTP attempts, retries included */
    unsigned long retries;
    unsigned long throttled;
    unsigned long quota_exhausted;
    unsigned long bucket_peers; /* S3 buckets whose rate the client tracks now (a gauge) */
} aws_stats;
void aws_client_stats(const aws_client *c, aws_stats *out);

/* Cancel what is in flight (callbacks run with OL_ECANCELED), free everything; on_closed
 * runs when the loop has released all handles. */
void aws_client_close(aws_client *c, void (*on_closed)(void *arg), void *arg);

#endif
