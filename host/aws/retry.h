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
    double base_s;         /* backoff base, default 1.0 s (OPSLINE_RETRY_BASE_MS overrides) */
    double max_backoff_s;  /* 20 s */
} retry_config;

/* Reads AWS_RETRY_MODE ("standard"|"adaptive"; "legacy" is treated as standard),
 * AWS_MAX_ATTEMPTS (1..100) and OPSLINE_RETRY_BASE_MS. Returns 0, or OL_ECONFIG with a
 * malloc'd message in *err naming the variable and the fix. */
int retry_config_from_env(retry_config *cfg, char **err);

/* Delay before retry number `attempt` (1 for the first retry): rand01 * min(base * 2^(attempt-1),
 * max_backoff) — full jitter. rand01 in [0,1). */
double retry_backoff_s(const retry_config *cfg, unsigned attempt, double rand01);

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
} retry_rate_limiter;

void retry_rate_limiter_init(retry_rate_limiter *rl, double now);
/* 0 when a token is available: it is taken, send now. Otherwise the seconds until one is due;
 * nothing is taken, wait that long and call again (another caller may have come first). */
double retry_rate_limiter_acquire(retry_rate_limiter *rl, double now);
/* After every answer: throttled nonzero when it was a throttling error. */
void retry_rate_limiter_update(retry_rate_limiter *rl, int throttled, double now);

#endif
