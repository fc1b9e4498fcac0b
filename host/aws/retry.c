/* retry: owns the AWS SDKs' retry rules as pure functions and small state machines:
 * which failures are retried (and as what), how long to wait (full-jitter capped exponential
 * backoff), when to stop retrying an endpoint that keeps failing (the retry quota, the
 * throttle budget, endpoint health), and the adaptive mode's client-side rate limiter. The rate
 * limiter is the SDKs' CUBIC token bucket (AWS SDKs and Tools Reference Guide, "Retry behavior";
 * botocore retries/adaptive.py, bucket.py, throttling.py), made non-blocking: acquire returns the
 * delay instead of sleeping, and the caller acquires again once it has waited. Time and randomness
 * come from the caller. */
#include "retry.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "opsline/opsline.h"

#define RETRY_DEFAULT_MAX_ATTEMPTS 3u
#define RETRY_MAX_MAX_ATTEMPTS 100u
#define RETRY_DEFAULT_BASE_S 1.0
#define RETRY_MAX_BACKOFF_S 20.0
#define RETRY_MAX_BASE_MS 60000ul
#define RETRY_THROTTLE_MAX_ATTEMPTS 25u
#define RETRY_PROGRESS_TIMEOUT_S 30.0
#define RETRY_MAX_PROGRESS_TIMEOUT_S 3600ul

#define RETRY_COST 5u
#define RETRY_TIMEOUT_COST 10u
#define RETRY_NO_RETRY_INCREMENT 1u

/* CUBIC constants and token bucket floors, as in every AWS SDK's adaptive mode. */
#define CUBIC_BETA 0.7
#define CUBIC_SCALE 0.4
#define RATE_SMOOTHING 0.8
#define RATE_BUCKET_S 0.5
#define MIN_FILL_RATE 0.5
#define MIN_CAPACITY 1.0
/* Throttles answered this soon after a cut were mostly sent before it: one event. */
#define RETRY_RECOVERY_S 0.5
/* Fewest answers since the last cut that can tell a saturated endpoint's rate. */
#define RETRY_SATURATED_ANSWERS 8ul

/* ---- classification ------------------------------------------------------------------- */

int retry_is_throttle_code(const char *code) {
    static const char *const codes[] = {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    };
    size_t i;

    if (code == NULL)
        return 0;
    for (i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (strcmp(code, codes[i]) == 0)
            return 1;
    return 0;
}

static int is_transient_code(const char *code) {
    /* botocore retries/standard.py TransientRetryableChecker (PriorRequestNotComplete is
     * listed there too, but counts as throttling first). */
    return strcmp(code, "RequestTimeout") == 0 || strcmp(code, "RequestTimeoutException") == 0;
}

retry_kind retry_classify(long status, const char *error_code, int transport_error) {
    int has_code = error_code != NULL && error_code[0] != '\0';

    if (transport_error == OL_ETIMEDOUT)
        return RETRY_TIMEOUT;
    if (transport_error == OL_ENET)
        return RETRY_TRANSIENT;
    if (transport_error != 0)
        return RETRY_NONE; /* canceled, out of memory: retrying cannot help */
    if (has_code && retry_is_throttle_code(error_code))
        return RETRY_THROTTLE;
    /* 429 is throttling whatever the body says. A 503 without a code (HEAD has no body)
     * is S3's SlowDown in practice, so it also slows the client down. */
    if (status == 429 || (status == 503 && !has_code))
        return RETRY_THROTTLE;
    if (status >= 200 && status < 300)
        return RETRY_NONE;
    if (has_code && is_transient_code(error_code))
        return RETRY_TRANSIENT;
    if (status == 500 || status == 502 || status == 503 || status == 504)
        return RETRY_TRANSIENT;
    return RETRY_NONE;
}

/* ---- configuration -------------------------------------------------------------------- */

static int config_error(char **err, const char *var, const char *value, const char *allowed) {
    static const char fmt[] = "%s=\"%.64s\" is not valid: use %s";
    int n;
    char *msg;

    if (err == NULL)
        return OL_ECONFIG;
    *err = NULL;
    n = snprintf(NULL, 0, fmt, var, value, allowed);
    if (n < 0)
        return OL_ECONFIG;
    msg = malloc((size_t)n + 1);
    if (msg == NULL)
        return OL_ECONFIG;
    snprintf(msg, (size_t)n + 1, fmt, var, value, allowed);
    *err = msg;
    return OL_ECONFIG;
}

/* A whole decimal number in [lo, hi]: no sign, no spaces, no suffix. */
static int parse_uint(const char *s, unsigned long lo, unsigned long hi, unsigned long *out) {
    char *end;
    unsigned long v;

    if (s[0] < '0' || s[0] > '9')
        return -1;
    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static const char *env_value(const char *name) {
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : NULL;
}

int retry_config_from_env(retry_config *cfg, char **err) {
    retry_config c = {.mode = RETRY_MODE_ADAPTIVE,
                      .max_attempts = RETRY_DEFAULT_MAX_ATTEMPTS,
                      .base_s = RETRY_DEFAULT_BASE_S,
                      .max_backoff_s = RETRY_MAX_BACKOFF_S,
                      .throttle_max_attempts = RETRY_THROTTLE_MAX_ATTEMPTS,
                      .progress_timeout_s = RETRY_PROGRESS_TIMEOUT_S};
    const char *v;
    unsigned long n;

    if (err != NULL)
        *err = NULL;
    if (cfg == NULL)
        return OL_EINVAL;
    v = env_value("AWS_RETRY_MODE");
    if (v != NULL) {
        if (strcasecmp(v, "standard") == 0 || strcasecmp(v, "legacy") == 0)
            c.mode = RETRY_MODE_STANDARD;
        else if (strcasecmp(v, "adaptive") == 0)
            c.mode = RETRY_MODE_ADAPTIVE;
        else
            return config_error(err, "AWS_RETRY_MODE", v,
                                "adaptive (the default), standard or legacy");
    }
    v = env_value("AWS_MAX_ATTEMPTS");
    if (v != NULL) {
        if (parse_uint(v, 1, RETRY_MAX_MAX_ATTEMPTS, &n) != 0)
            return config_error(err, "AWS_MAX_ATTEMPTS", v,
                                "a whole number from 1 to 100 (attempts, counting the first)");
        c.max_attempts = (unsigned)n;
        c.max_attempts_set = 1;
    }
    v = env_value("OPSLINE_RETRY_BASE_MS");
    if (v != NULL) {
        if (parse_uint(v, 0, RETRY_MAX_BASE_MS, &n) != 0)
            return config_error(err, "OPSLINE_RETRY_BASE_MS", v,
                                "a whole number of milliseconds from 0 to 60000");
        c.base_s = (double)n / 1000.0;
    }
    v = env_value("OPSLINE_PROGRESS_TIMEOUT_S");
    if (v != NULL) {
        if (parse_uint(v, 1, RETRY_MAX_PROGRESS_TIMEOUT_S, &n) != 0)
            return config_error(err, "OPSLINE_PROGRESS_TIMEOUT_S", v,
                                "a whole number of seconds from 1 to 3600");
        c.progress_timeout_s = (double)n;
    }
    *cfg = c;
    return 0;
}

/* ---- backoff -------------------------------------------------------------------------- */

double retry_backoff_s(const retry_config *cfg, unsigned attempt, double rand01) {
    double base = cfg != NULL ? cfg->base_s : RETRY_DEFAULT_BASE_S;
    double cap = cfg != NULL ? cfg->max_backoff_s : RETRY_MAX_BACKOFF_S;
    double ceiling;
    unsigned exp;

    if (attempt == 0)
        attempt = 1;
    exp = attempt - 1 > 60 ? 60 : attempt - 1;
    ceiling = base * ldexp(1.0, (int)exp);
    if (ceiling > cap)
        ceiling = cap;
    if (!(rand01 >= 0.0)) /* also NaN */
        rand01 = 0.0;
    if (rand01 >= 1.0)
        rand01 = 1.0 - 0x1p-53; /* the largest double below 1 */
    return rand01 * ceiling;
}

/* ---- attempt budget ------------------------------------------------------------------ */

int retry_attempts_allow(const retry_config *cfg, retry_kind kind, unsigned attempts,
                         unsigned throttled) {
    if (kind == RETRY_NONE)
        return 0;
    if (cfg->mode == RETRY_MODE_STANDARD || cfg->max_attempts_set)
        return attempts < cfg->max_attempts;
    if (kind == RETRY_THROTTLE)
        return throttled < cfg->throttle_max_attempts;
    /* Throttled attempts said nothing about the endpoint's health: only the others count. */
    return attempts - (throttled < attempts ? throttled : attempts) < cfg->max_attempts;
}

double retry_delay_s(const retry_config *cfg, retry_kind kind, unsigned retries, unsigned throttled,
                     double rand01) {
    if (cfg->mode == RETRY_MODE_STANDARD || cfg->max_attempts_set)
        return retry_backoff_s(cfg, retries, rand01);
    if (kind == RETRY_THROTTLE)
        return retry_backoff_s(cfg, 1, rand01);
    return retry_backoff_s(cfg, retries > throttled ? retries - throttled : 1, rand01);
}

int retry_throttle_uses_quota(const retry_config *cfg) {
    return cfg->mode == RETRY_MODE_STANDARD;
}

/* ---- retry quota ---------------------------------------------------------------------- */

void retry_quota_init(retry_quota *q, unsigned capacity) {
    q->capacity = capacity;
    q->available = capacity;
}

unsigned retry_quota_acquire(retry_quota *q, retry_kind kind) {
    unsigned cost = kind == RETRY_TIMEOUT ? RETRY_TIMEOUT_COST : RETRY_COST;

    if (q->available < cost)
        return 0;
    q->available -= cost;
    return cost;
}

void retry_quota_release(retry_quota *q, unsigned taken) {
    unsigned amount = taken != 0 ? taken : RETRY_NO_RETRY_INCREMENT;

    q->available = amount > q->capacity - q->available ? q->capacity : q->available + amount;
}

/* ---- adaptive rate limiter ------------------------------------------------------------ */

/* floor(x) for |x| < 2^63, inline: libm is not linked (see retry_cube_root). */
static double floor_of(double x) {
    double t = (double)(long long)x;
    return t > x ? t - 1.0 : t;
}

void retry_rate_limiter_init(retry_rate_limiter *rl, double now) {
    memset(rl, 0, sizeof *rl);
    /* botocore: TokenBucket(max_rate=1), CubicCalculator(starting_max_rate=0), RateClocker
     * whose first bucket is floor(now). */
    rl->fill_rate = 1.0;
    rl->max_capacity = 1.0;
    rl->current_capacity = 0.0;
    rl->last_timestamp = now;
    rl->last_tx_rate_bucket = floor_of(now);
    rl->last_max_rate = 0.0;
    rl->last_throttle_time = now;
    rl->time_window = 0.0;
}

static void bucket_refill(retry_rate_limiter *rl, double now) {
    double dt = now - rl->last_timestamp;

    if (dt > 0) {
        rl->current_capacity += dt * rl->fill_rate;
        if (rl->current_capacity > rl->max_capacity)
            rl->current_capacity = rl->max_capacity;
    }
    if (now > rl->last_timestamp)
        rl->last_timestamp = now;
}

static void note_first_time(retry_rate_limiter *rl, double now) {
    if (!rl->seen_request) {
        rl->seen_request = 1;
        rl->first_time = now;
        rl->window_start = now;
    }
}

double retry_rate_limiter_acquire(retry_rate_limiter *rl, double now) {
    note_first_time(rl, now);
    if (!rl->enabled) {
        rl->sent++;
        return 0.0;
    }
    bucket_refill(rl, now);
    /* Like botocore's TokenBucket.acquire, a caller that must wait takes nothing and asks
     * again after the wait: the bucket has refilled by then, unless another caller came
     * first, and then it waits again. */
    /* The epsilon absorbs rounding: after waiting exactly the delay returned, the refill may
     * land a hair below 1 and would otherwise ask for an ever tinier wait. */
    if (rl->current_capacity < 1.0 - 1e-9)
        return (1.0 - rl->current_capacity) / rl->fill_rate;
    rl->current_capacity -= 1.0;
    rl->sent++;
    return 0.0;
}

/* Exponentially smoothed send rate over half-second buckets. */
static void update_measured_rate(retry_rate_limiter *rl, double now) {
    double bucket = floor_of(now / RATE_BUCKET_S) * RATE_BUCKET_S;

    note_first_time(rl, now);
    rl->request_count++;
    if (bucket > rl->last_tx_rate_bucket) {
        double current = (double)rl->request_count / (bucket - rl->last_tx_rate_bucket);

        if (rl->measured_tx_rate <= 0.0) {
            /* The first measurement: botocore divides by the time since the whole second
             * before the limiter existed and smooths with 0, so a busy endpoint may first
             * measure a few requests per second, and the 2 x measured cap holds it there.
             * Measure over the time the counted requests took, once it is a bucket long,
             * unsmoothed; until then sent_rate estimates. */
            double since = bucket - rl->first_time;
            if (since < RATE_BUCKET_S)
                return;
            rl->measured_tx_rate = (double)rl->request_count / since;
        } else
            rl->measured_tx_rate =
                current * RATE_SMOOTHING + rl->measured_tx_rate * (1.0 - RATE_SMOOTHING);
        rl->request_count = 0;
        rl->last_tx_rate_bucket = bucket;
    }
}

/* The cube root of x >= 0 by Newton's method from 2^(e/3), where x = m * 2^e: the only
 * function opsline needed from libm, and not linking libm keeps its pages (about 0.4 MB of
 * resident memory, mapped and relocated at start) out of every run. Exact to the last bit
 * or one below; the iteration stops when a step no longer shrinks the value. */
double retry_cube_root(double x) {
    if (!(x > 0.0) || x > 0x1p1000) /* 0, negative, NaN; and no overflow of y * y * y */
        return x > 0.0 ? x : 0.0;
    int e;
    frexp(x, &e);
    double y = ldexp(1.0, e >= 0 ? (e + 2) / 3 : -(-e / 3)); /* at or above the root */
    for (int i = 0; i < 200; i++) {
        double next = y - (y * y * y - x) / (3.0 * y * y);
        if (!(next < y))
            break;
        y = next;
    }
    return y;
}

/* CUBIC's K: the time the curve takes to climb back to the rate of the last throttle. */
static void update_time_window(retry_rate_limiter *rl) {
    rl->time_window = retry_cube_root(rl->last_max_rate * (1.0 - CUBIC_BETA) / CUBIC_SCALE);
}

static void bucket_update_rate(retry_rate_limiter *rl, double new_rate, double now) {
    bucket_refill(rl, now);
    rl->fill_rate = new_rate > MIN_FILL_RATE ? new_rate : MIN_FILL_RATE;
    rl->max_capacity = new_rate > MIN_CAPACITY ? new_rate : MIN_CAPACITY;
    if (rl->current_capacity > rl->max_capacity)
        rl->current_capacity = rl->max_capacity;
}

/* The measured send rate. Before the first half-second bucket has closed it is 0, and
 * botocore would cut to the 0.5/s floor: the requests sent so far (or answered, when more)
 * over the time since the first, at least one bucket long, are what was sent. Counting
 * sends, not answers, matters: the first throttle of a burst is answered while most of the
 * burst is still in flight. */
static double sent_rate(const retry_rate_limiter *rl, double now) {
    double dt = now - rl->first_time;
    double n = (double)(rl->sent > rl->request_count ? rl->sent : rl->request_count);

    if (rl->measured_tx_rate > 0.0)
        return rl->measured_tx_rate;
    return n / (dt > RATE_BUCKET_S ? dt : RATE_BUCKET_S);
}

/* What the endpoint accepted per second since the last cut when most of the answers since
 * then were throttles (it was saturated, so that is its rate); -1 when they were not, or were
 * too few or over less than a bucket to tell. */
static double saturated_rate(const retry_rate_limiter *rl, double now) {
    double span = now - rl->window_start;

    if (span < RATE_BUCKET_S || rl->window_ok + rl->window_throttled < RETRY_SATURATED_ANSWERS ||
        rl->window_throttled <= rl->window_ok)
        return -1.0;
    return (double)rl->window_ok / span;
}

void retry_rate_limiter_update(retry_rate_limiter *rl, int throttled, double now) {
    double new_rate, measured;

    update_measured_rate(rl, now);
    if (throttled)
        rl->window_throttled++;
    else
        rl->window_ok++;
    if (throttled && rl->enabled && now - rl->last_throttle_time < RETRY_RECOVERY_S)
        return; /* the same congestion event as the last cut */
    measured = sent_rate(rl, now);
    if (throttled) {
        double rate = measured, accepted = saturated_rate(rl, now);

        if (rl->enabled && rl->fill_rate < rate)
            rate = rl->fill_rate;
        if (accepted >= 0.0 && accepted < rate)
            rate = accepted;
        rl->window_start = now;
        rl->window_ok = 0;
        rl->window_throttled = 0;
        rl->last_max_rate = rate;
        update_time_window(rl);
        rl->last_throttle_time = now;
        rl->calculated_rate = rate * CUBIC_BETA;
        rl->enabled = 1;
    } else {
        double dt;

        update_time_window(rl);
        dt = now - rl->last_throttle_time - rl->time_window;
        rl->calculated_rate = CUBIC_SCALE * dt * dt * dt + rl->last_max_rate;
    }
    new_rate = rl->calculated_rate;
    if (new_rate > 2.0 * measured)
        new_rate = 2.0 * measured;
    bucket_update_rate(rl, new_rate, now);
}

/* ---- endpoint health ------------------------------------------------------------------ */

void retry_health_init(retry_health *h, double now) {
    memset(h, 0, sizeof *h);
    h->last_success = now;
}

void retry_health_success(retry_health *h, double now) {
    h->last_success = now;
    h->failed_calls = 0;
    h->failed_attempts = 0;
    h->dead = 0;
}

void retry_health_failed_attempt(retry_health *h) {
    h->failed_attempts++;
}

int retry_health_failed_call(retry_health *h, double now) {
    h->failed_calls++;
    if (h->dead || h->failed_calls < RETRY_DEAD_CALLS)
        return 0;
    h->dead = 1;
    h->next_probe = now + RETRY_PROBE_S;
    return 1;
}

int retry_health_may_probe(retry_health *h, double now) {
    if (!h->dead || now < h->next_probe)
        return 0;
    h->next_probe = now + RETRY_PROBE_S;
    return 1;
}

double retry_health_stalled_s(const retry_health *h, double now) {
    return now > h->last_success ? now - h->last_success : 0.0;
}
