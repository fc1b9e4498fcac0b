/* retry: the AWS SDKs' retry behaviour. Classification of failures, capped exponential
 * backoff with full jitter, the retry quota (token bucket of retry "cost"), and the
 * adaptive mode's client-side rate limiter (CUBIC-based token bucket, per service).
 * Pure state machines: the caller supplies time and randomness, so tests are exact. */
#ifndef OL_AWS_RETRY_H
#define OL_AWS_RETRY_H

#include <stddef.h>

typedef enum retry_kind {
    RETRY_NONE = 0,      /* success or a non-retryable error */
    RETRY_TRANSIENT = 1, /* 500/502/503/504, connection reset, truncated body */
    RETRY_TIMEOUT = 2,   /* timeout (costs more quota) */
    RETRY_THROTTLE = 3   /* Throttling, SlowDown, 429, ... */
} retry_kind;

/* Classify one attempt's result. status 0 with transport_error OL_ENET/OL_ETIMEDOUT means no
 * answer. error_code may be NULL. */
retry_kind retry_classify(long status, const char *error_code, int transport_error);

/* Nonzero for AWS throttling error codes (Throttling, ThrottlingException,
 * ThrottledException, RequestThrottledException, TooManyRequestsException,
 * ProvisionedThroughputExceededException, TransactionInProgressException,
 * RequestLimitExceeded, BandwidthLimitExceeded, LimitExceededException,
 * RequestThrottled, SlowDown, PriorRequestNotComplete, EC2ThrottledException). */
int retry_is_throttle_code(const char *code);

typedef enum retry_mode { RETRY_MODE_STANDARD = 0, RETRY_MODE_ADAPTIVE = 1 } retry_mode;

typedef struct retry_config {
    retry_mode mode;
    unsigned max_attempts; /* AWS_MAX_ATTEMPTS, default 3, includes the first attempt */
    int max_attempts_set;  /* AWS_MAX_ATTEMPTS was given: it also bounds throttled attempts */
    double base_s;         /* backoff base, default 1.0 s (OPSLINE_RETRY_BASE_MS overrides) */
    double max_backoff_s;  /* 20 s */
    /* Adaptive mode, AWS_MAX_ATTEMPTS unset: a throttled request is retried up to
     * throttle_max_attempts attempts (25, as Terraform), and only while its endpoint has
     * answered a success within progress_timeout_s (30 s; OPSLINE_PROGRESS_TIMEOUT_S). */
    unsigned throttle_max_attempts;
    double progress_timeout_s;
} retry_config;

/* Reads AWS_RETRY_MODE ("adaptive", the default, or "standard"; "legacy" is treated as
 * standard), AWS_MAX_ATTEMPTS (1..100), OPSLINE_RETRY_BASE_MS and OPSLINE_PROGRESS_TIMEOUT_S
 * (1..3600). Returns 0, or OL_ECONFIG with a malloc'd message in *err naming the variable
 * and the fix. */
int retry_config_from_env(retry_config *cfg, char **err);

/* Delay before retry number `attempt` (1 for the first retry): rand01 * min(base * 2^(attempt-1),
 * max_backoff) — full jitter. rand01 in [0,1). */
double retry_backoff_s(const retry_config *cfg, unsigned attempt, double rand01);

/* The cube root of x (0 for x <= 0 or NaN): libm's cbrt without linking libm. */
double retry_cube_root(double x);

/* Nonzero when a call whose attempt number `attempts` (1 = the first) was answered with an
 * error of kind may be sent again, as far as attempt counts go: standard mode, or an
 * explicit AWS_MAX_ATTEMPTS, counts every attempt; adaptive mode by default gives
 * throttling its own, larger, count (throttled = the call's throttled answers so far). */
int retry_attempts_allow(const retry_config *cfg, retry_kind kind, unsigned attempts,
                         unsigned throttled);

/* Delay before a call's retry number `retries` (1 for the first), `throttled` of its answers
 * so far throttled, this one of kind. Standard mode or an explicit AWS_MAX_ATTEMPTS: the
 * backoff of retry_backoff_s. Otherwise a throttled retry waits at most base (the token
 * bucket, not the backoff, paces a throttled endpoint: the jitter only spreads a burst) and
 * other retries back off by their own count. */
double retry_delay_s(const retry_config *cfg, retry_kind kind, unsigned retries, unsigned throttled,
                     double rand01);

/* Nonzero when a throttled retry is paid from the retry quota: in standard mode only.
 * Adaptive mode slows the client down instead and bounds throttling by progress. */
int retry_throttle_uses_quota(const retry_config *cfg);

/* Retry quota, shared by all requests of one client (standard mode: 500 tokens, a retry
 * costs 5, a timeout retry 10, a success after a retry refunds that cost, a first-try
 * success refunds 1). */
typedef struct retry_quota {
    unsigned capacity;
    unsigned available;
} retry_quota;

void retry_quota_init(retry_quota *q, unsigned capacity);
/* Take the cost of one retry of kind; returns the amount taken (>0) or 0 when the quota
 * cannot pay (then do not retry). */
unsigned retry_quota_acquire(retry_quota *q, retry_kind kind);
/* Record a success: refund `taken` (what the request's last retry took) or, if 0, 1. */
void retry_quota_release(retry_quota *q, unsigned taken);

/* Adaptive mode: client-side rate limiter (the SDKs' CUBIC token bucket). One per
 * service. Times are seconds from any monotonic origin. */
typedef struct retry_rate_limiter {
    int enabled;      /* turns on after the first throttle */
    double fill_rate; /* tokens per second */
    double max_capacity;
    double current_capacity;
    double last_timestamp;
    double measured_tx_rate;
    double last_tx_rate_bucket;
    unsigned request_count;
    double last_max_rate;
    double last_throttle_time;
    double time_window;
    double calculated_rate;
    /* Before the first half-second measurement: requests sent (acquired, even while the
     * limiter is off) since first_time, the first acquire or update. */
    unsigned long sent;
    double first_time;
    int seen_request;
    /* Answers since the last cut (before the first: since first_time), accepted and
     * throttled: when most were throttles the endpoint was saturated, and what it accepted
     * is its rate. */
    double window_start;
    unsigned long window_ok;
    unsigned long window_throttled;
} retry_rate_limiter;

void retry_rate_limiter_init(retry_rate_limiter *rl, double now);
/* 0 when a token is available: it is taken, send now. Otherwise the seconds until one is due;
 * nothing is taken, wait that long and call again (another caller may have come first). */
double retry_rate_limiter_acquire(retry_rate_limiter *rl, double now);
/* After every answer: throttled nonzero when it was a throttling error. Three departures
 * from the SDKs, all against a collapse towards the 0.5/s floor: throttles answered within
 * RETRY_RECOVERY_S of the last cut are one congestion event (cut once, as TCP does per
 * window); a throttle before the first measurement uses the rate sent so far instead of 0;
 * and the first measurement covers the time the counted requests took, at least a
 * half-second, unsmoothed. A fourth against the opposite, a slow descent from far above the
 * quota (a burst of every item at once, 0.7 per cut, one cut per RETRY_RECOVERY_S): when
 * most of at least RETRY_SATURATED_ANSWERS answers since the last cut, over at least a
 * half-second, were throttles, the rate cut from is what the endpoint accepted meanwhile
 * (its quota, since it was saturated), if that is lower. */
void retry_rate_limiter_update(retry_rate_limiter *rl, int throttled, double now);

/* Endpoint health: is an endpoint making progress, or dead? One per endpoint (service and
 * base URL). A call that ends failing with a retryable error (5xx, reset, timeout, throttled
 * past its budget) counts; a success clears everything. RETRY_DEAD_CALLS failed calls in a
 * row with no success make the endpoint dead: further calls fail without being sent, but
 * one probe goes through every RETRY_PROBE_S, and its success revives the endpoint. */
#define RETRY_DEAD_CALLS 3u
#define RETRY_PROBE_S 5.0

typedef struct retry_health {
    double last_success; /* or the creation time, before any success */
    unsigned failed_calls;
    unsigned failed_attempts; /* attempts answered with a retryable error since a success */
    int dead;
    double next_probe;
} retry_health;

void retry_health_init(retry_health *h, double now);
void retry_health_success(retry_health *h, double now);
void retry_health_failed_attempt(retry_health *h);
/* A call ended failing: returns nonzero when this made the endpoint dead. */
int retry_health_failed_call(retry_health *h, double now);
/* Before sending on a dead endpoint: nonzero when this call may go as the probe. */
int retry_health_may_probe(retry_health *h, double now);
/* Seconds without a success (since creation when there never was one). */
double retry_health_stalled_s(const retry_health *h, double now);

#endif
