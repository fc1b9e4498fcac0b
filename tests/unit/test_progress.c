/* Unit tests of the progress display: the status text (counts, rate, ETA, colour only on a
 * nonzero failed count) and the plain periodic lines written to stderr by the loop's timer,
 * which never keeps the loop alive. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "progress.h"

static void status_text_has_counts_rate_and_eta(void **state) {
    (void)state;
    char buf[256];
    progress_counts c = {
        .total = 40, .done = 10, .failed = 1, .in_flight = 8, .requests = 500, .throttled = 3};
    progress_format(&c, 30.0, 12.34, 0, buf, sizeof(buf));
    /* 30 remaining items at 10 per 30 s: 90 s */
    assert_string_equal(buf,
                        "10/40 done, 1 failed, 8 in flight, 12.3 req/s, 3 throttled, ETA 1:30");
    c.done = 0;
    progress_format(&c, 30.0, 0, 0, buf, sizeof(buf));
    assert_non_null(strstr(buf, "ETA --"));
    c.done = 1;
    c.total = 10000;
    progress_format(&c, 10.0, 0, 0, buf, sizeof(buf));
    assert_non_null(strstr(buf, "ETA 27:46:30"));
}

static void colour_marks_failures_only(void **state) {
    (void)state;
    char buf[256];
    progress_counts c = {.total = 2, .done = 1, .failed = 1};
    progress_format(&c, 1.0, 0, 1, buf, sizeof(buf));
    assert_non_null(strstr(buf, "\033[31m1 failed\033[0m"));
    c.failed = 0;
    progress_format(&c, 1.0, 0, 1, buf, sizeof(buf));
    assert_null(strchr(buf, '\033'));
}

static void text_is_cut_to_the_buffer(void **state) {
    (void)state;
    char buf[16];
    progress_counts c = {.total = 2, .done = 1};
    assert_int_equal(progress_format(&c, 1.0, 0, 0, buf, sizeof(buf)), 15);
    assert_int_equal(strlen(buf), 15);
}

typedef struct counter {
    size_t calls;
    uv_loop_t *loop;
} counter;

/* Counts 1/3, 2/3, then stops the loop. */
static void count(void *arg, progress_counts *out) {
    counter *k = arg;
    memset(out, 0, sizeof(*out));
    out->total = 3;
    out->done = ++k->calls;
    if (k->calls == 2)
        uv_stop(k->loop);
}

static void on_idle(uv_timer_t *t) {
    (void)t; /* only keeps the loop running until the display has ticked twice */
}

/* Plain mode: a line per period; the timer is unreferenced, so a loop with nothing else to
 * do ends at once. */
static void plain_lines_come_from_the_timer_and_do_not_hold_the_loop(void **state) {
    (void)state;
    uv_loop_t loop;
    uv_timer_t keep;
    counter k = {0, &loop};
    progress *p = NULL;
    FILE *tmp = tmpfile();
    int saved = dup(STDERR_FILENO);
    assert_non_null(tmp);
    assert_int_equal(uv_loop_init(&loop), 0);
    fflush(stderr);
    assert_true(dup2(fileno(tmp), STDERR_FILENO) >= 0);
    assert_int_equal(progress_start(&loop, PROGRESS_PLAIN, 10, count, &k, &p), 0);
    assert_non_null(p);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0); /* nothing referenced: returns */
    uv_timer_init(&loop, &keep);
    uv_timer_start(&keep, on_idle, 60000, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    progress_stop(p);
    uv_close((uv_handle_t *)&keep, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    fflush(stderr);
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
    char text[4096] = {0};
    rewind(tmp);
    size_t n = fread(text, 1, sizeof(text) - 1, tmp);
    fclose(tmp);
    assert_true(n > 0);
    assert_int_equal(k.calls, 2);
    assert_non_null(strstr(text, "progress: 1/3 done, 0 failed"));
    assert_non_null(strstr(text, "\nprogress: 2/3 done, 0 failed"));
    assert_null(strchr(text, '\r')); /* plain lines: no terminal control */
    assert_int_equal(progress_start(&loop, PROGRESS_NONE, 10, count, &k, &p), 0);
    assert_null(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(status_text_has_counts_rate_and_eta),
        cmocka_unit_test(colour_marks_failures_only),
        cmocka_unit_test(text_is_cut_to_the_buffer),
        cmocka_unit_test(plain_lines_come_from_the_timer_and_do_not_hold_the_loop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
