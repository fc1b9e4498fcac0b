/* Tests for host/services.c: programs (stdin fed, output captured and capped, time limit
 * that kills the whole process group, a missing program, the environment a child gets),
 * off-loop work, timers, first-come-first-served locks, and cancellation when a run stops.
 * Real processes and a real libuv loop; no time bound is asserted except through the
 * service's own time limit. */
#include <unistd.h>

#include "error.h"
#include "harness.h"
#include "services.h"

typedef struct env {
    uv_loop_t loop;
    services *svc;
} env;

static int setup(void **state) {
    env *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    assert_int_equal(uv_loop_init(&e->loop), 0);
    assert_int_equal(services_new(&e->loop, &e->svc), 0);
    *state = e;
    return 0;
}

static int teardown(void **state) {
    env *e = *state;
    uv_run(&e->loop, UV_RUN_DEFAULT);
    assert_int_equal(services_pending(e->svc), 0);
    services_free(e->svc);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    harness_loop_close_all(&e->loop);
    free(e);
    return 0;
}

typedef struct proc_out {
    int calls;
    int result, exit_status, term_signal, out_truncated;
    char out[4096], err[1024];
    size_t out_len;
} proc_out;

static void on_proc(void *arg, const ol_proc_result *res) {
    proc_out *o = arg;
    o->calls++;
    o->result = res->result;
    o->exit_status = res->exit_status;
    o->term_signal = res->term_signal;
    o->out_truncated = res->out_truncated;
    o->out_len = res->out_len;
    snprintf(o->out, sizeof(o->out), "%s", res->out);
    snprintf(o->err, sizeof(o->err), "%s", res->err);
}

static void run_program(env *e, const char *const *argv, const char *in, size_t cap,
                        unsigned timeout_ms, const char *const *extra, proc_out *o) {
    ol_proc_spec spec = {.struct_size = sizeof(spec),
                         .argv = argv,
                         .env = extra,
                         .stdin_data = in,
                         .stdin_len = in ? strlen(in) : 0,
                         .output_cap = cap,
                         .timeout_ms = timeout_ms};
    memset(o, 0, sizeof(*o));
    assert_int_equal(services_proc_run(e->svc, &spec, on_proc, o), 0);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    assert_int_equal(o->calls, 1);
}

static void feeds_stdin_and_captures_both_outputs(void **state) {
    env *e = *state;
    const char *argv[] = {"/bin/sh", "-c", "cat; echo oops >&2; exit 3", NULL};
    proc_out o;
    run_program(e, argv, "line one\nline two\n", 0, 10000, NULL, &o);
    assert_int_equal(o.result, 0);
    assert_int_equal(o.exit_status, 3);
    assert_string_equal(o.out, "line one\nline two\n");
    assert_string_equal(o.err, "oops\n");
}

static void keeps_output_up_to_the_cap_and_drains_the_rest(void **state) {
    env *e = *state;
    /* 1 MB of output through a 100-byte cap: the child must not block on a full pipe. */
    const char *argv[] = {"/bin/sh", "-c", "head -c 1000000 /dev/zero | tr '\\0' x", NULL};
    proc_out o;
    run_program(e, argv, NULL, 100, 10000, NULL, &o);
    assert_int_equal(o.result, 0);
    assert_int_equal(o.exit_status, 0);
    assert_int_equal(o.out_len, 100);
    assert_int_equal(o.out_truncated, 1);
}

static void kills_the_process_group_after_the_time_limit(void **state) {
    env *e = *state;
    char marker[64];
    snprintf(marker, sizeof(marker), "/tmp/opsline-svc-%d", (int)getpid());
    unlink(marker);
    char script[256];
    /* A grandchild that would write the marker if it outlived the kill. */
    snprintf(script, sizeof(script), "(sleep 3; touch %s) & sleep 30", marker);
    const char *argv[] = {"/bin/sh", "-c", script, NULL};
    proc_out o;
    run_program(e, argv, NULL, 0, 200, NULL, &o);
    assert_int_equal(o.result, OL_ETIMEDOUT);
    assert_int_not_equal(o.term_signal, 0);
    sleep(4);
    assert_int_not_equal(access(marker, F_OK), 0);
}

static void says_a_missing_program_was_not_found(void **state) {
    env *e = *state;
    const char *argv[] = {"opsline-no-such-program-here", NULL};
    proc_out o;
    run_program(e, argv, "x", 0, 1000, NULL, &o);
    assert_int_equal(o.result, OL_ENOENT);
}

static void gives_children_no_secrets_from_the_environment(void **state) {
    env *e = *state;
    setenv("OPSLINE_KEEPASSXC_PASSWORD", "hunter2", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI", 1);
    setenv("PASSWORD_STORE_DIR", "/tmp/store", 1);
    const char *extra[] = {"EXTRA_SETTING=yes", NULL};
    const char *argv[] = {"/usr/bin/env", NULL};
    proc_out o;
    run_program(e, argv, NULL, 0, 10000, extra, &o);
    assert_int_equal(o.result, 0);
    assert_null(strstr(o.out, "hunter2"));
    assert_null(strstr(o.out, "wJalrXUtnFEMI"));
    assert_non_null(strstr(o.out, "PASSWORD_STORE_DIR=/tmp/store"));
    assert_non_null(strstr(o.out, "EXTRA_SETTING=yes"));
    unsetenv("OPSLINE_KEEPASSXC_PASSWORD");
    unsetenv("AWS_SECRET_ACCESS_KEY");
}

static void names_secret_variables_as_words_only(void **state) {
    (void)state;
    assert_true(services_env_is_secret("MY_DB_PASSWORD=x"));
    assert_true(services_env_is_secret("GITHUB_TOKEN=x"));
    assert_true(services_env_is_secret("AWS_SESSION_TOKEN=x"));
    assert_true(services_env_is_secret("VAULT_SECRET_ID=x"));
    assert_false(services_env_is_secret("PASSWORD_STORE_DIR=x"));
    assert_false(services_env_is_secret("TOKENIZER=x"));
    assert_false(services_env_is_secret("HOME=/root"));
}

static int g_work_ran, g_after_status, g_after_calls;

static void work_fn(void *arg) {
    (void)arg;
    g_work_ran++;
}

static void after_fn(void *arg, int status) {
    (void)arg;
    g_after_status = status;
    g_after_calls++;
}

static void runs_work_off_the_loop_then_completes_on_it(void **state) {
    env *e = *state;
    g_work_ran = g_after_calls = 0;
    assert_int_equal(services_work(e->svc, work_fn, after_fn, NULL), 0);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    assert_int_equal(g_work_ran, 1);
    assert_int_equal(g_after_calls, 1);
    assert_int_equal(g_after_status, 0);
}

static int g_fired[4];

static void on_fire(void *arg, int status) {
    g_fired[(intptr_t)arg] = status == 0 ? 1 : 2;
}

static void fires_timers_and_never_a_stopped_one(void **state) {
    env *e = *state;
    ol_timer *t = NULL;
    memset(g_fired, 0, sizeof(g_fired));
    assert_int_equal(services_timer_start(e->svc, 10, on_fire, (void *)(intptr_t)0, NULL), 0);
    assert_int_equal(services_timer_start(e->svc, 20, on_fire, (void *)(intptr_t)1, &t), 0);
    services_timer_stop(t);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    assert_int_equal(g_fired[0], 1);
    assert_int_equal(g_fired[1], 0);
}

typedef struct locker {
    int id;
    ol_lock *held;
} locker;

static int g_order[8], g_n_order;

static void on_locked(void *arg, int status, ol_lock *lock) {
    locker *l = arg;
    assert_int_equal(status, 0);
    g_order[g_n_order++] = l->id;
    services_unlock(lock);
}

static void grants_a_lock_first_come_first_served(void **state) {
    env *e = *state;
    locker ls[4] = {{1, NULL}, {2, NULL}, {3, NULL}, {4, NULL}};
    g_n_order = 0;
    for (int i = 0; i < 4; i++)
        assert_int_equal(services_lock(e->svc, "/tmp/one-file", on_locked, &ls[i]), 0);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    assert_int_equal(g_n_order, 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(g_order[i], i + 1);
}

/* A batch takes a lock per file it writes: released locks do not pile up. */
static void frees_a_lock_nobody_holds_or_waits_for(void **state) {
    env *e = *state;
    locker ls[3] = {{1, NULL}, {2, NULL}, {3, NULL}};
    char name[32];
    g_n_order = 0;
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof(name), "/tmp/file-%d", i % 2);
        assert_int_equal(services_lock(e->svc, name, on_locked, &ls[i]), 0);
    }
    assert_int_equal(services_lock_count(e->svc), 2);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    assert_int_equal(g_n_order, 3);
    assert_int_equal(services_lock_count(e->svc), 0);
    /* The same name again: a fresh lock, granted as before. */
    assert_int_equal(services_lock(e->svc, "/tmp/file-0", on_locked, &ls[0]), 0);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    assert_int_equal(g_n_order, 4);
    assert_int_equal(services_lock_count(e->svc), 0);
}

static ol_lock *g_kept;
static int g_waiter_status = 99;

static void keep_lock(void *arg, int status, ol_lock *lock) {
    (void)arg;
    (void)status;
    g_kept = lock;
}

static void waiter(void *arg, int status, ol_lock *lock) {
    (void)arg;
    g_waiter_status = status;
    assert_null(lock);
}

static void cancels_children_waiters_and_timers_when_the_run_stops(void **state) {
    env *e = *state;
    memset(g_fired, 0, sizeof(g_fired));
    assert_int_equal(services_lock(e->svc, "r", keep_lock, NULL), 0);
    uv_run(&e->loop, UV_RUN_NOWAIT);
    assert_non_null(g_kept);
    assert_int_equal(services_lock(e->svc, "r", waiter, NULL), 0);
    assert_int_equal(services_timer_start(e->svc, 60000, on_fire, (void *)(intptr_t)2, NULL), 0);
    const char *argv[] = {"/bin/sleep", "60", NULL};
    ol_proc_spec spec = {.struct_size = sizeof(spec), .argv = argv, .timeout_ms = 60000};
    proc_out o;
    memset(&o, 0, sizeof(o));
    assert_int_equal(services_proc_run(e->svc, &spec, on_proc, &o), 0);
    services_cancel_all(e->svc);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.result, OL_ECANCELED);
    assert_int_equal(g_waiter_status, OL_ECANCELED);
    assert_int_equal(g_fired[2], 2);
    services_unlock(g_kept);
    /* Nothing new starts once cancelled. */
    assert_int_equal(services_proc_run(e->svc, &spec, on_proc, &o), OL_ECANCELED);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(feeds_stdin_and_captures_both_outputs, setup, teardown),
        cmocka_unit_test_setup_teardown(keeps_output_up_to_the_cap_and_drains_the_rest, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(kills_the_process_group_after_the_time_limit, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(says_a_missing_program_was_not_found, setup, teardown),
        cmocka_unit_test_setup_teardown(gives_children_no_secrets_from_the_environment, setup,
                                        teardown),
        cmocka_unit_test(names_secret_variables_as_words_only),
        cmocka_unit_test_setup_teardown(runs_work_off_the_loop_then_completes_on_it, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(fires_timers_and_never_a_stopped_one, setup, teardown),
        cmocka_unit_test_setup_teardown(grants_a_lock_first_come_first_served, setup, teardown),
        cmocka_unit_test_setup_teardown(frees_a_lock_nobody_holds_or_waits_for, setup, teardown),
        cmocka_unit_test_setup_teardown(cancels_children_waiters_and_timers_when_the_run_stops,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
