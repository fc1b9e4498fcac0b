/* Tests for retry: classification, backoff bounds, the retry quota, the adaptive rate
 * limiter (driven with simulated time) and configuration from the environment. */
#include <float.h>
#include <math.h>

#include "harness.h"
#include "opsline/opsline.h"
#include "retry.h"

/* ---- classification ------------------------------------------------------------------- */

typedef struct classify_case {
    long status;
    const char *code;
    int transport;
    retry_kind want;
} classify_case;

static void classifies_failures_as_the_sdks_do(void **state) {
    static const classify_case cases[] = {
        /* throttling, by code whatever the status */
        {400, "Throttling", 0, RETRY_THROTTLE},
        {400, "ThrottlingException", 0, RETRY_THROTTLE},
        {400, "RequestLimitExceeded", 0, RETRY_THROTTLE},
        {503, "SlowDown", 0, RETRY_THROTTLE},
        {409, "PriorRequestNotComplete", 0, RETRY_THROTTLE},
        /* throttling, by status */
        {429, NULL, 0, RETRY_THROTTLE},
        {429, "", 0, RETRY_THROTTLE},
        {429, "SomethingElse", 0, RETRY_THROTTLE},
        {503, NULL, 0, RETRY_THROTTLE},
        {503, "", 0, RETRY_THROTTLE},
        /* transient server faults */
        {500, NULL, 0, RETRY_TRANSIENT},
        {500, "InternalError", 0, RETRY_TRANSIENT},
        {502, NULL, 0, RETRY_TRANSIENT},
        {503, "ServiceUnavailable", 0, RETRY_TRANSIENT},
        {504, NULL, 0, RETRY_TRANSIENT},
        {400, "RequestTimeout", 0, RETRY_TRANSIENT},
        {408, "RequestTimeoutException", 0, RETRY_TRANSIENT},
        /* no answer */
        {0, NULL, OL_ENET, RETRY_TRANSIENT},
        {0, NULL, OL_ETIMEDOUT, RETRY_TIMEOUT},
        {200, NULL, OL_ENET, RETRY_TRANSIENT}, /* truncated body after a 200 status line */
        /* not retried */
        {200, NULL, 0, RETRY_NONE},
        {204, NULL, 0, RETRY_NONE},
        {400, "ValidationError", 0, RETRY_NONE},
        {403, "AccessDenied", 0, RETRY_NONE},
        {404, "NoSuchEntity", 0, RETRY_NONE},
        {409, "BucketAlreadyExists", 0, RETRY_NONE},
        {501, "NotImplemented", 0, RETRY_NONE},
        {400, "throttling", 0, RETRY_NONE}, /* codes are case-sensitive */
        {0, NULL, OL_ECANCELED, RETRY_NONE},
        {0, NULL, OL_ENOMEM, RETRY_NONE},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const classify_case *c = &cases[i];
        retry_kind got = retry_classify(c->status, c->code, c->transport);
        if (got != c->want)
            fail_msg("case %zu: status %ld code %s transport %d: got %d, want %d", i, c->status,
                     c->code ? c->code : "(null)", c->transport, (int)got, (int)c->want);
    }
}

static void recognises_every_documented_throttle_code(void **state) {
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

    (void)state;
    for (i = 0; i < sizeof codes / sizeof codes[0]; i++)
        assert_true(retry_is_throttle_code(codes[i]));
    assert_false(retry_is_throttle_code(NULL));
    assert_false(retry_is_throttle_code(""));
    assert_false(retry_is_throttle_code("Throttlin"));
    assert_false(retry_is_throttle_code("ThrottlingExceptionX"));
    assert_false(retry_is_throttle_code("AccessDenied"));
}

/* ---- backoff -------------------------------------------------------------------------- */

static const retry_config default_cfg = {
    .mode = RETRY_MODE_STANDARD, .max_attempts = 3, .base_s = 1.0, .max_backoff_s = 20.0};

static void backoff_is_zero_with_zero_random(void **state) {
    unsigned attempt;

    (void)state;
    for (attempt = 1; attempt <= 40; attempt++)
        assert_true(retry_backoff_s(&default_cfg, attempt, 0.0) == 0.0);
}

static void backoff_doubles_up_to_the_ceiling_with_random_near_one(void **state) {
    const double r = 0.999999;
    static const double ceilings[] = {1, 2, 4, 8, 16, 20, 20, 20};
    unsigned attempt;

    (void)state;
    for (attempt = 1; attempt <= 8; attempt++) {
        double d = retry_backoff_s(&default_cfg, attempt, r);
        assert_true(d < ceilings[attempt - 1]);
        assert_true(d > ceilings[attempt - 1] * 0.9999);
    }
}

static void backoff_is_capped_at_twenty_seconds(void **state) {
    unsigned attempts[] = {6, 10, 64, 1000, 4000000000u};
    size_t i;

    (void)state;
    for (i = 0; i < sizeof attempts / sizeof attempts[0]; i++) {
        double d = retry_backoff_s(&default_cfg, attempts[i], 0.999999);
        assert_true(isfinite(d));
        assert_true(d <= 20.0);
        assert_true(d > 19.99);
    }
    /* rand01 is [0,1): 1.0 and beyond are clamped below the cap, garbage to zero. */
    assert_true(retry_backoff_s(&default_cfg, 30, 1.0) < 20.0);
    assert_true(retry_backoff_s(&default_cfg, 30, 7.0) < 20.0);
    assert_true(retry_backoff_s(&default_cfg, 30, -1.0) == 0.0);
    assert_true(retry_backoff_s(&default_cfg, 30, NAN) == 0.0);
}

static void backoff_scales_with_the_configured_base(void **state) {
    const retry_config cfg = {
        .mode = RETRY_MODE_STANDARD, .max_attempts = 3, .base_s = 0.01, .max_backoff_s = 20.0};

    (void)state;
    assert_true(fabs(retry_backoff_s(&cfg, 1, 0.5) - 0.005) < 1e-12);
    assert_true(fabs(retry_backoff_s(&cfg, 3, 0.5) - 0.02) < 1e-12);
    assert_true(fabs(retry_backoff_s(&default_cfg, 3, 0.5) - 2.0) < 1e-12);
    /* attempt 0 is treated as the first retry */
    assert_true(fabs(retry_backoff_s(&default_cfg, 0, 0.5) - 0.5) < 1e-12);
}

/* ---- retry quota ---------------------------------------------------------------------- */

static void quota_allows_one_hundred_retries_then_refuses(void **state) {
    retry_quota q;
    unsigned i;

    (void)state;
    retry_quota_init(&q, 500);
    for (i = 0; i < 100; i++)
        assert_int_equal(retry_quota_acquire(&q, RETRY_TRANSIENT), 5);
    assert_int_equal(q.available, 0);
    assert_int_equal(retry_quota_acquire(&q, RETRY_THROTTLE), 0);
    assert_int_equal(retry_quota_acquire(&q, RETRY_TIMEOUT), 0);
    assert_int_equal(q.available, 0);
}

static void quota_charges_ten_for_timeouts(void **state) {
    retry_quota q;
    unsigned i;

    (void)state;
    retry_quota_init(&q, 500);
    for (i = 0; i < 49; i++)
        assert_int_equal(retry_quota_acquire(&q, RETRY_TIMEOUT), 10);
    assert_int_equal(q.available, 10);
    assert_int_equal(retry_quota_acquire(&q, RETRY_TIMEOUT), 10);
    assert_int_equal(retry_quota_acquire(&q, RETRY_TIMEOUT), 0);
    /* 5 left is enough for an ordinary retry but not for a timeout retry */
    retry_quota_release(&q, 5);
    assert_int_equal(retry_quota_acquire(&q, RETRY_TIMEOUT), 0);
    assert_int_equal(retry_quota_acquire(&q, RETRY_TRANSIENT), 5);
}

static void quota_refunds_retry_cost_or_one_up_to_capacity(void **state) {
    retry_quota q;
    unsigned taken;

    (void)state;
    retry_quota_init(&q, 500);
    taken = retry_quota_acquire(&q, RETRY_TIMEOUT);
    assert_int_equal(q.available, 490);
    retry_quota_release(&q, taken); /* success after a retry: its cost comes back */
    assert_int_equal(q.available, 500);
    retry_quota_release(&q, 0); /* first-try success when full: stays at capacity */
    assert_int_equal(q.available, 500);
    retry_quota_acquire(&q, RETRY_THROTTLE);
    retry_quota_acquire(&q, RETRY_THROTTLE);
    assert_int_equal(q.available, 490);
    retry_quota_release(&q, 0); /* first-try success refunds 1 */
    assert_int_equal(q.available, 491);
    retry_quota_release(&q, 10);
    assert_int_equal(q.available, 500);
}

/* ---- adaptive rate limiter ------------------------------------------------------------ */

/* Tries to send `rps` requests a second from t0 to t1, each answered at once with
 * `throttled`, honouring the limiter's delays. Returns the time after the last answer and
 * counts the requests sent in *n. */
static double drive(retry_rate_limiter *rl, double t0, double t1, double rps, int throttled,
                    unsigned *n) {
    double t = t0, wait;

    *n = 0;
    while (t < t1) {
        unsigned waits = 0;
        while ((wait = retry_rate_limiter_acquire(rl, t)) > 0.0) {
            /* A single caller gets its token after at most one wait. */
            assert_true(++waits == 1);
            t += wait;
        }
        if (t >= t1)
            break;
        retry_rate_limiter_update(rl, throttled, t);
        (*n)++;
        t += 1.0 / rps;
    }
    return t;
}

static void rate_limiter_stays_off_until_the_first_throttle(void **state) {
    retry_rate_limiter rl;
    unsigned n;
    int i;

    (void)state;
    retry_rate_limiter_init(&rl, 100.0);
    drive(&rl, 100.0, 105.0, 50.0, 0, &n);
    assert_in_range(n, 249, 251);
    assert_false(rl.enabled);
    for (i = 0; i < 100; i++)
        assert_true(retry_rate_limiter_acquire(&rl, 105.0) == 0.0);
}

static void rate_limiter_slows_down_after_throttles(void **state) {
    retry_rate_limiter rl;
    double t, wmax, delay, prev = 0.0;
    unsigned n;
    int i;

    (void)state;
    retry_rate_limiter_init(&rl, 0.0);
    t = drive(&rl, 0.0, 10.0, 20.0, 0, &n);
    assert_in_range(n, 199, 201);

    retry_rate_limiter_update(&rl, 1, t);
    assert_true(rl.enabled);
    /* Wmax is the measured send rate (about 20/s); CUBIC cuts it by beta 0.7. */
    wmax = rl.last_max_rate;
    assert_true(fabs(wmax - rl.measured_tx_rate) < 1e-9);
    assert_true(wmax > 15.0 && wmax < 25.0);
    assert_true(fabs(rl.fill_rate - 0.7 * wmax) < 1e-9);

    /* A burst at one instant: the tokens in the bucket (at most max_capacity) go at once;
     * the others are told when the next token is due and take nothing. */
    n = 0;
    for (i = 0; i < 40; i++) {
        delay = retry_rate_limiter_acquire(&rl, t);
        if (delay == 0.0) {
            n++;
            continue;
        }
        assert_true(delay > 0.0 && delay <= 1.0 / rl.fill_rate + 1e-9);
        if (prev > 0.0)
            assert_true(delay == prev);
        prev = delay;
    }
    assert_true(n >= 1 && n <= rl.max_capacity);
    assert_true(prev > 0.0);
    /* After that wait exactly one more token is there; the next one is 1/fill_rate later. */
    t += prev;
    assert_true(retry_rate_limiter_acquire(&rl, t) == 0.0);
    delay = retry_rate_limiter_acquire(&rl, t);
    assert_true(fabs(delay - 1.0 / rl.fill_rate) < 1e-9);
    assert_true(retry_rate_limiter_acquire(&rl, t + delay) == 0.0);

    /* More throttles push the rate further down, never below the floor of 0.5/s. */
    for (i = 0; i < 30; i++) {
        t += 1.0;
        retry_rate_limiter_update(&rl, 1, t);
    }
    assert_true(rl.fill_rate < 0.7 * wmax);
    assert_true(rl.fill_rate >= 0.5);
    assert_true(rl.max_capacity >= 1.0);
}

static void rate_limiter_recovers_after_throttles_stop(void **state) {
    retry_rate_limiter rl;
    double t, wmax;
    unsigned n;

    (void)state;
    retry_rate_limiter_init(&rl, 0.0);
    t = drive(&rl, 0.0, 10.0, 20.0, 0, &n);
    retry_rate_limiter_update(&rl, 1, t);
    wmax = rl.last_max_rate;

    /* Trying 100/s right after the throttle: held near the throttled rate... */
    t = drive(&rl, t, t + 1.0, 100.0, 0, &n);
    assert_true(n < 50);
    assert_true(rl.fill_rate < wmax);
    /* ...until the curve has climbed past Wmax and the client runs at the rate it wants. */
    t = drive(&rl, t, t + 20.0, 100.0, 0, &n);
    t = drive(&rl, t, t + 1.0, 100.0, 0, &n);
    assert_true(n >= 95);
    assert_true(rl.fill_rate > wmax);
    assert_true(rl.measured_tx_rate > 90.0);
}

/* retry_cube_root against libm's cbrt (the test links libm; opsline does not). */
static void cube_root_matches_libm(void **state) {
    (void)state;
    static const double xs[] = {1e-300, 1e-9, 0.001, 0.3,    0.5,       0.75, 1.0,  2.0,
                                7.5,    8.0,  27.0,  1000.0, 12345.678, 1e9,  1e300};
    for (size_t i = 0; i < sizeof(xs) / sizeof(xs[0]); i++) {
        double got = retry_cube_root(xs[i]), want = cbrt(xs[i]);
        assert_true(fabs(got - want) <= 2.0 * DBL_EPSILON * want);
    }
    for (double x = 0.01; x < 500.0; x *= 1.37)
        assert_true(fabs(retry_cube_root(x) - cbrt(x)) <= 2.0 * DBL_EPSILON * cbrt(x));
    assert_true(retry_cube_root(0.0) == 0.0);
    assert_true(retry_cube_root(-8.0) == 0.0);
    assert_true(retry_cube_root(NAN) == 0.0);
}

static void cubic_curve_returns_to_the_throttled_rate_after_its_time_window(void **state) {
    retry_rate_limiter rl;
    double k;

    (void)state;
    retry_rate_limiter_init(&rl, 0.0);
    /* A measured rate of 10/s by hand: the cap 2 x measured then does not bind. */
    rl.measured_tx_rate = 10.0;
    rl.last_tx_rate_bucket = 1000.0; /* keep the measurement still */
    retry_rate_limiter_update(&rl, 1, 500.0);
    assert_true(fabs(rl.calculated_rate - 7.0) < 1e-9);
    k = cbrt(10.0 * (1.0 - 0.7) / 0.4);
    assert_true(fabs(rl.time_window - k) < 1e-9);
    retry_rate_limiter_update(&rl, 0, 500.0 + k);
    assert_true(fabs(rl.calculated_rate - 10.0) < 1e-9);
    assert_true(fabs(rl.fill_rate - 10.0) < 1e-9);
    /* 0.4 * (dt - K)^3 + Wmax one second later */
    retry_rate_limiter_update(&rl, 0, 501.0 + k);
    assert_true(fabs(rl.calculated_rate - 10.4) < 1e-9);
    /* Once enabled, a throttle starts from the lower of measured rate and allowed rate. */
    rl.measured_tx_rate = 50.0;
    retry_rate_limiter_update(&rl, 1, 502.0 + k);
    assert_true(fabs(rl.last_max_rate - 10.4) < 1e-9);
    assert_true(fabs(rl.fill_rate - 0.7 * 10.4) < 1e-9);
}

/* ---- throttle budget ------------------------------------------------------------------ */

static const retry_config adaptive_cfg = {.mode = RETRY_MODE_ADAPTIVE,
                                          .max_attempts = 3,
                                          .base_s = 1.0,
                                          .max_backoff_s = 20.0,
                                          .throttle_max_attempts = 25,
                                          .progress_timeout_s = 30.0};

static void adaptive_mode_retries_throttling_beyond_max_attempts_up_to_its_cap(void **state) {
    (void)state;
    /* 24 throttled answers: a 25th attempt is allowed; the 25th throttle ends it. */
    assert_true(retry_attempts_allow(&adaptive_cfg, RETRY_THROTTLE, 24, 24));
    assert_false(retry_attempts_allow(&adaptive_cfg, RETRY_THROTTLE, 25, 25));
    /* A 500 after 10 throttles is the call's first real failure: two more attempts. */
    assert_true(retry_attempts_allow(&adaptive_cfg, RETRY_TRANSIENT, 11, 10));
    assert_true(retry_attempts_allow(&adaptive_cfg, RETRY_TRANSIENT, 12, 10));
    assert_false(retry_attempts_allow(&adaptive_cfg, RETRY_TRANSIENT, 13, 10));
    assert_false(retry_attempts_allow(&adaptive_cfg, RETRY_NONE, 1, 0));
    assert_false(retry_throttle_uses_quota(&adaptive_cfg));
}

static void standard_mode_or_explicit_max_attempts_bound_every_attempt(void **state) {
    retry_config std = adaptive_cfg, set = adaptive_cfg;

    (void)state;
    std.mode = RETRY_MODE_STANDARD;
    set.max_attempts_set = 1;
    assert_true(retry_attempts_allow(&std, RETRY_THROTTLE, 2, 2));
    assert_false(retry_attempts_allow(&std, RETRY_THROTTLE, 3, 3));
    assert_false(retry_attempts_allow(&set, RETRY_THROTTLE, 3, 3));
    assert_false(retry_attempts_allow(&set, RETRY_TRANSIENT, 3, 2));
    assert_true(retry_throttle_uses_quota(&std));
    assert_false(retry_throttle_uses_quota(&set));
    /* ...and back off as the SDKs do. */
    assert_true(fabs(retry_delay_s(&set, RETRY_THROTTLE, 5, 5, 0.5) - 8.0) < 1e-12);
}

static void throttled_retries_wait_at_most_the_base_in_adaptive_mode(void **state) {
    (void)state;
    assert_true(fabs(retry_delay_s(&adaptive_cfg, RETRY_THROTTLE, 1, 1, 0.5) - 0.5) < 1e-12);
    assert_true(fabs(retry_delay_s(&adaptive_cfg, RETRY_THROTTLE, 20, 20, 0.5) - 0.5) < 1e-12);
    /* A 500 after 20 throttles backs off as a first retry. */
    assert_true(fabs(retry_delay_s(&adaptive_cfg, RETRY_TRANSIENT, 21, 20, 0.5) - 0.5) < 1e-12);
    assert_true(fabs(retry_delay_s(&adaptive_cfg, RETRY_TRANSIENT, 23, 20, 0.5) - 2.0) < 1e-12);
}

static void a_burst_of_throttles_cuts_the_rate_once(void **state) {
    retry_rate_limiter rl;
    double t, after_first;
    unsigned n;
    int i;

    (void)state;
    retry_rate_limiter_init(&rl, 0.0);
    t = drive(&rl, 0.0, 10.0, 20.0, 0, &n);
    retry_rate_limiter_update(&rl, 1, t);
    after_first = rl.fill_rate;
    /* Twenty more throttles answered within the recovery window: no further cut. */
    for (i = 0; i < 20; i++)
        retry_rate_limiter_update(&rl, 1, t + 0.01 * i);
    assert_true(fabs(rl.fill_rate - after_first) < 1e-9);
    /* A throttle after the window is a new event. */
    retry_rate_limiter_update(&rl, 1, t + 0.6);
    assert_true(rl.fill_rate < after_first);
}

static void a_throttle_before_any_measurement_keeps_the_rate_seen_so_far(void **state) {
    retry_rate_limiter rl;
    int i;

    (void)state;
    retry_rate_limiter_init(&rl, 100.0);
    /* 30 answers within 0.2 s of the start, in the first half-second bucket, then a
     * throttle: 30 requests over at least 0.5 s, 60/s, cut to 42/s (botocore: 0.5/s). */
    for (i = 0; i < 30; i++)
        retry_rate_limiter_update(&rl, 0, 100.0 + 0.2 * i / 30.0);
    retry_rate_limiter_update(&rl, 1, 100.2);
    assert_true(rl.enabled);
    assert_true(fabs(rl.fill_rate - 0.7 * 31.0 / 0.5) < 1e-9);

    /* A burst of 40 sent at once, whose first answer is a throttle: the 40 sent count, not
     * the one answered (80/s over the half-second floor, cut to 56/s). */
    retry_rate_limiter_init(&rl, 200.0);
    for (i = 0; i < 40; i++)
        assert_true(retry_rate_limiter_acquire(&rl, 200.0) == 0.0);
    retry_rate_limiter_update(&rl, 1, 200.1);
    assert_true(fabs(rl.fill_rate - 0.7 * 40.0 / 0.5) < 1e-9);
}

/* Every item started at once: the first cut starts from the rate sent (far above the quota),
 * and 0.7 per half-second would take seconds to come down, each of them spent mostly on
 * throttled requests. When most answers since the last cut were throttles, the next cut
 * starts from what the endpoint accepted meanwhile. */
static void a_saturated_endpoint_is_cut_to_what_it_accepted(void **state) {
    retry_rate_limiter rl;
    double t = 300.0;
    int i;

    (void)state;
    retry_rate_limiter_init(&rl, t);
    for (i = 0; i < 200; i++)
        assert_true(retry_rate_limiter_acquire(&rl, t) == 0.0);
    retry_rate_limiter_update(&rl, 1, t + 0.1); /* 200 over the half-second floor */
    assert_true(fabs(rl.last_max_rate - 400.0) < 1e-9);
    /* The next half-second: 5 accepted and 60 throttled answers. */
    for (i = 0; i < 65; i++)
        retry_rate_limiter_update(&rl, i % 13 == 0 ? 0 : 1, t + 0.1 + 0.49 * i / 65.0);
    assert_true(fabs(rl.last_max_rate - 400.0) < 1e-9); /* all within the recovery window */
    retry_rate_limiter_update(&rl, 1, t + 0.7);
    /* 5 accepted over the 0.6 s since the cut: 8.3/s, cut by beta. The plain rule would
     * have cut from min(280, measured) to 196/s. */
    assert_true(fabs(rl.last_max_rate - 5.0 / 0.6) < 1e-9);
    assert_true(fabs(rl.fill_rate - 0.7 * 5.0 / 0.6) < 1e-9);

    /* Mostly accepted answers (30 of 40, within the recovery window so that none cuts):
     * the plain rule, from the rate allowed. */
    for (i = 0; i < 40; i++)
        retry_rate_limiter_update(&rl, i % 4 == 0, t + 0.7 + 0.012 * (i + 1));
    double before = rl.fill_rate;
    retry_rate_limiter_update(&rl, 1, t + 1.25);
    assert_true(fabs(rl.last_max_rate - before) < 1e-9);
    assert_true(fabs(rl.fill_rate - 0.7 * before) < 1e-9);

    /* Too few answers to tell (7, all throttled): the plain rule too. */
    for (i = 0; i < 6; i++)
        retry_rate_limiter_update(&rl, 1, t + 1.26 + 0.05 * i);
    before = rl.fill_rate;
    retry_rate_limiter_update(&rl, 1, t + 1.8);
    assert_true(fabs(rl.last_max_rate - before) < 1e-9);
    assert_true(rl.last_max_rate > 0.5);
}

static void first_measurement_covers_the_time_its_requests_took(void **state) {
    retry_rate_limiter rl;
    int i;

    (void)state;
    /* Made at 100.49, answers from 100.51: botocore would measure 1 request over the half
     * second since 100.0 (2/s, smoothed to 1.6/s) at the 100.5 edge. */
    retry_rate_limiter_init(&rl, 100.49);
    retry_rate_limiter_update(&rl, 0, 100.49);
    for (i = 1; i <= 20; i++)
        retry_rate_limiter_update(&rl, 0, 100.49 + 0.025 * i);
    assert_true(rl.measured_tx_rate == 0.0); /* less than half a second: not yet */
    retry_rate_limiter_update(&rl, 0, 101.01);
    /* 22 requests over 101.0 - 100.49 s */
    assert_true(fabs(rl.measured_tx_rate - 22.0 / 0.51) < 1e-9);
}

static void health_declares_an_endpoint_dead_after_failed_calls_and_probes_it(void **state) {
    retry_health h;

    (void)state;
    retry_health_init(&h, 10.0);
    assert_true(retry_health_stalled_s(&h, 12.0) == 2.0);
    retry_health_failed_attempt(&h);
    assert_false(retry_health_failed_call(&h, 11.0));
    assert_false(retry_health_failed_call(&h, 11.0));
    assert_false(h.dead);
    /* A success in between starts the count again. */
    retry_health_success(&h, 11.5);
    assert_int_equal(h.failed_attempts, 0);
    assert_false(retry_health_failed_call(&h, 12.0));
    assert_false(retry_health_failed_call(&h, 12.0));
    assert_true(retry_health_failed_call(&h, 12.0));
    assert_true(h.dead);
    assert_false(retry_health_failed_call(&h, 12.0)); /* dead once */
    /* No call goes until the probe interval has passed, then one does. */
    assert_false(retry_health_may_probe(&h, 12.0 + RETRY_PROBE_S - 0.1));
    assert_true(retry_health_may_probe(&h, 12.0 + RETRY_PROBE_S));
    assert_false(retry_health_may_probe(&h, 12.0 + RETRY_PROBE_S));
    retry_health_success(&h, 18.0);
    assert_false(h.dead);
    assert_false(retry_health_may_probe(&h, 100.0));
}

/* ---- configuration -------------------------------------------------------------------- */

static int clear_env(void **state) {
    (void)state;
    unsetenv("AWS_RETRY_MODE");
    unsetenv("AWS_MAX_ATTEMPTS");
    unsetenv("OPSLINE_RETRY_BASE_MS");
    unsetenv("OPSLINE_PROGRESS_TIMEOUT_S");
    return 0;
}

static void config_defaults_to_adaptive_three_attempts_and_a_throttle_budget(void **state) {
    retry_config cfg;
    char *err = (char *)"untouched";

    (void)state;
    assert_int_equal(retry_config_from_env(&cfg, &err), 0);
    assert_null(err);
    assert_int_equal(cfg.mode, RETRY_MODE_ADAPTIVE);
    assert_int_equal(cfg.max_attempts, 3);
    assert_false(cfg.max_attempts_set);
    assert_int_equal(cfg.throttle_max_attempts, 25);
    assert_true(cfg.progress_timeout_s == 30.0);
    assert_true(cfg.base_s == 1.0);
    assert_true(cfg.max_backoff_s == 20.0);
    /* empty values count as unset */
    setenv("AWS_RETRY_MODE", "", 1);
    setenv("AWS_MAX_ATTEMPTS", "", 1);
    assert_int_equal(retry_config_from_env(&cfg, &err), 0);
    assert_int_equal(cfg.max_attempts, 3);
}

static void config_reads_mode_attempts_and_base(void **state) {
    retry_config cfg;
    char *err = NULL;

    (void)state;
    setenv("AWS_RETRY_MODE", "adaptive", 1);
    setenv("AWS_MAX_ATTEMPTS", "7", 1);
    setenv("OPSLINE_RETRY_BASE_MS", "25", 1);
    assert_int_equal(retry_config_from_env(&cfg, &err), 0);
    assert_null(err);
    assert_int_equal(cfg.mode, RETRY_MODE_ADAPTIVE);
    assert_int_equal(cfg.max_attempts, 7);
    assert_true(cfg.max_attempts_set);
    assert_true(fabs(cfg.base_s - 0.025) < 1e-12);
    assert_true(cfg.max_backoff_s == 20.0);

    setenv("AWS_RETRY_MODE", "legacy", 1);
    setenv("AWS_MAX_ATTEMPTS", "1", 1);
    setenv("OPSLINE_RETRY_BASE_MS", "0", 1);
    assert_int_equal(retry_config_from_env(&cfg, &err), 0);
    assert_int_equal(cfg.mode, RETRY_MODE_STANDARD);
    assert_int_equal(cfg.max_attempts, 1);
    assert_true(cfg.base_s == 0.0);

    setenv("AWS_RETRY_MODE", "Standard", 1);
    setenv("AWS_MAX_ATTEMPTS", "100", 1);
    assert_int_equal(retry_config_from_env(&cfg, &err), 0);
    assert_int_equal(cfg.mode, RETRY_MODE_STANDARD);
    assert_int_equal(cfg.max_attempts, 100);
}

static void config_reads_the_progress_timeout(void **state) {
    retry_config cfg;
    char *err = NULL;

    (void)state;
    setenv("OPSLINE_PROGRESS_TIMEOUT_S", "5", 1);
    assert_int_equal(retry_config_from_env(&cfg, &err), 0);
    assert_true(cfg.progress_timeout_s == 5.0);
    setenv("OPSLINE_PROGRESS_TIMEOUT_S", "0", 1);
    assert_int_equal(retry_config_from_env(&cfg, &err), OL_ECONFIG);
    assert_non_null(strstr(err, "OPSLINE_PROGRESS_TIMEOUT_S"));
    free(err);
}

static void expect_config_error(const char *var, const char *value, const char *hint) {
    retry_config cfg = {
        .mode = RETRY_MODE_ADAPTIVE, .max_attempts = 42, .base_s = 9.0, .max_backoff_s = 9.0};
    char *err = NULL;

    clear_env(NULL);
    setenv(var, value, 1);
    assert_int_equal(retry_config_from_env(&cfg, &err), OL_ECONFIG);
    assert_non_null(err);
    if (strstr(err, var) == NULL || strstr(err, value) == NULL || strstr(err, hint) == NULL)
        fail_msg("message \"%s\" should name %s, \"%s\" and \"%s\"", err, var, value, hint);
    free(err);
    /* the caller's config is left alone */
    assert_int_equal(cfg.mode, RETRY_MODE_ADAPTIVE);
    assert_int_equal(cfg.max_attempts, 42);
    /* a NULL err is allowed */
    assert_int_equal(retry_config_from_env(&cfg, NULL), OL_ECONFIG);
}

static void config_rejects_unknown_retry_mode(void **state) {
    (void)state;
    expect_config_error("AWS_RETRY_MODE", "fast", "standard");
    expect_config_error("AWS_RETRY_MODE", "fast", "adaptive");
    expect_config_error("AWS_RETRY_MODE", "adaptive ", "legacy");
}

static void config_rejects_bad_max_attempts(void **state) {
    static const char *const bad[] = {
        "0", "-1", "+3", " 3", "3 ", "3x", "abc", "101", "99999999999999999999999"};
    size_t i;

    (void)state;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_config_error("AWS_MAX_ATTEMPTS", bad[i], "1 to 100");
}

static void config_rejects_bad_base_ms(void **state) {
    (void)state;
    expect_config_error("OPSLINE_RETRY_BASE_MS", "-5", "milliseconds");
    expect_config_error("OPSLINE_RETRY_BASE_MS", "1.5", "milliseconds");
    expect_config_error("OPSLINE_RETRY_BASE_MS", "60001", "milliseconds");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(classifies_failures_as_the_sdks_do),
        cmocka_unit_test(recognises_every_documented_throttle_code),
        cmocka_unit_test(backoff_is_zero_with_zero_random),
        cmocka_unit_test(backoff_doubles_up_to_the_ceiling_with_random_near_one),
        cmocka_unit_test(backoff_is_capped_at_twenty_seconds),
        cmocka_unit_test(backoff_scales_with_the_configured_base),
        cmocka_unit_test(quota_allows_one_hundred_retries_then_refuses),
        cmocka_unit_test(quota_charges_ten_for_timeouts),
        cmocka_unit_test(quota_refunds_retry_cost_or_one_up_to_capacity),
        cmocka_unit_test(rate_limiter_stays_off_until_the_first_throttle),
        cmocka_unit_test(rate_limiter_slows_down_after_throttles),
        cmocka_unit_test(rate_limiter_recovers_after_throttles_stop),
        cmocka_unit_test(cubic_curve_returns_to_the_throttled_rate_after_its_time_window),
        cmocka_unit_test(cube_root_matches_libm),
        cmocka_unit_test(adaptive_mode_retries_throttling_beyond_max_attempts_up_to_its_cap),
        cmocka_unit_test(standard_mode_or_explicit_max_attempts_bound_every_attempt),
        cmocka_unit_test(throttled_retries_wait_at_most_the_base_in_adaptive_mode),
        cmocka_unit_test(a_burst_of_throttles_cuts_the_rate_once),
        cmocka_unit_test(a_throttle_before_any_measurement_keeps_the_rate_seen_so_far),
        cmocka_unit_test(first_measurement_covers_the_time_its_requests_took),
        cmocka_unit_test(a_saturated_endpoint_is_cut_to_what_it_accepted),
        cmocka_unit_test(health_declares_an_endpoint_dead_after_failed_calls_and_probes_it),
        cmocka_unit_test_setup_teardown(config_reads_the_progress_timeout, clear_env, clear_env),
        cmocka_unit_test_setup_teardown(
            config_defaults_to_adaptive_three_attempts_and_a_throttle_budget, clear_env, clear_env),
        cmocka_unit_test_setup_teardown(config_reads_mode_attempts_and_base, clear_env, clear_env),
        cmocka_unit_test_setup_teardown(config_rejects_unknown_retry_mode, clear_env, clear_env),
        cmocka_unit_test_setup_teardown(config_rejects_bad_max_attempts, clear_env, clear_env),
        cmocka_unit_test_setup_teardown(config_rejects_bad_base_ms, clear_env, clear_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
