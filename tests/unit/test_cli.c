/* Unit tests of the command line: duration parsing for presign --expires, and usage errors
 * that end the run with exit code 2 before anything is loaded or sent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

/* Runs cli_main with argv (NULL-terminated) and returns its exit code; stderr's text goes to
 * err (at most n bytes). */
static int run_cli(const char *const *argv, char *err, size_t n) {
    char *args[160];
    int argc = 0;
    FILE *tmp = tmpfile();
    int saved, code;
    size_t got;
    assert_non_null(tmp);
    while (argv[argc] != NULL) {
        assert_true(argc < 159);
        args[argc] = (char *)argv[argc];
        argc++;
    }
    args[argc] = NULL;
    fflush(stderr);
    saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fileno(tmp), STDERR_FILENO) >= 0);
    code = cli_main(argc, args);
    fflush(stderr);
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
    rewind(tmp);
    got = fread(err, 1, n - 1, tmp);
    err[got] = '\0';
    fclose(tmp);
    return code;
}

static void durations_parse_with_units_and_reject_garbage(void **state) {
    (void)state;
    assert_int_equal(cli_parse_duration("15m"), 900);
    assert_int_equal(cli_parse_duration("3600"), 3600);
    assert_int_equal(cli_parse_duration("30s"), 30);
    assert_int_equal(cli_parse_duration("2h"), 7200);
    assert_int_equal(cli_parse_duration("7d"), 604800);
    assert_int_equal(cli_parse_duration("0"), 0);
    assert_int_equal(cli_parse_duration("1w"), 0);
    assert_int_equal(cli_parse_duration("-5"), 0);
    assert_int_equal(cli_parse_duration("m"), 0);
    assert_int_equal(cli_parse_duration(""), 0);
}

static void concurrency_outside_1_to_1024_or_not_a_number_is_a_usage_error(void **state) {
    (void)state;
    const char *const bad[] = {"0", "1025", "-3", "abc", "4x", ""};
    char err[1024];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *const argv[] = {"opsline", "apply", "acme", "--concurrency", bad[i], NULL};
        assert_int_equal(run_cli(argv, err, sizeof(err)), 2);
        assert_non_null(strstr(err, "--concurrency"));
        assert_non_null(strstr(err, "from 1 to 1024"));
    }
}

static void more_than_64_sets_is_a_usage_error(void **state) {
    (void)state;
    const char *argv[2 + 1 + 2 * 65 + 1];
    size_t n = 0;
    char err[1024];
    argv[n++] = "opsline";
    argv[n++] = "apply";
    argv[n++] = "acme";
    for (int i = 0; i < 65; i++) {
        argv[n++] = "--set";
        argv[n++] = "bucket.versioning=true";
    }
    argv[n] = NULL;
    assert_true(n < 160);
    assert_int_equal(run_cli(argv, err, sizeof(err)), 2);
    assert_non_null(strstr(err, "too many --set options (64 at most)"));
}

static void a_switch_of_another_command_is_a_usage_error(void **state) {
    (void)state;
    char err[2048];
    const char *const keep[] = {"opsline", "destroy", "acme", "--keep-old", NULL};
    assert_int_equal(run_cli(keep, err, sizeof(err)), 2);
    assert_non_null(strstr(err, "--keep-old is not an option of `opsline destroy`"));
    const char *const adopt[] = {"opsline", "plan", "acme", "--adopt", NULL};
    assert_int_equal(run_cli(adopt, err, sizeof(err)), 2);
    assert_non_null(strstr(err, "--adopt is not an option of `opsline plan`"));
    const char *const yes[] = {"opsline", "rotate", "acme", "--yes", NULL};
    assert_int_equal(run_cli(yes, err, sizeof(err)), 2);
    assert_non_null(strstr(err, "--yes is not an option of `opsline rotate`"));
}

static void unknown_commands_and_options_are_usage_errors(void **state) {
    (void)state;
    char err[2048];
    const char *const cmd[] = {"opsline", "frobnicate", "acme", NULL};
    assert_int_equal(run_cli(cmd, err, sizeof(err)), 2);
    assert_non_null(strstr(err, "frobnicate"));
    const char *const opt[] = {"opsline", "apply", "acme", "--colour", NULL};
    assert_int_equal(run_cli(opt, err, sizeof(err)), 2);
    assert_non_null(strstr(err, "colour"));
    const char *const none[] = {"opsline", NULL};
    assert_int_equal(run_cli(none, err, sizeof(err)), 2);
    assert_non_null(strstr(err, "apply"));
}

/* presign checks the bucket as apply does, whole (never cut), and the key's length, before
 * any credential or request. */
static void presign_refuses_bucket_names_s3_cannot_have_and_overlong_keys(void **state) {
    (void)state;
    char long_bucket[5 + 300 + 3], long_key[5 + 3 + 1 + 1025 + 1], err[2048];
    memcpy(long_bucket, "s3://", 5);
    memset(long_bucket + 5, 'a', 300);
    memcpy(long_bucket + 305, "/k", 3);
    snprintf(long_key, sizeof(long_key), "s3://abc/%01025d", 0);
    const struct {
        const char *target, *want;
    } cases[] = {
        {"s3://UPPER/k", "bucket name 'UPPER'"},
        {"s3://a..b/k", "bucket name 'a..b'"},
        {"s3://192.168.1.1/k", "bucket name '192.168.1.1'"},
        {"s3://ab/k", "bucket name 'ab'"},
        {"s3://xn--abc/k", "bucket name 'xn--abc'"},
        {long_bucket, "is 300 characters long"}, /* whole, not cut to 255 */
        {long_key, "longer than 1024 bytes"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *const argv[] = {"opsline", "presign", cases[i].target, NULL};
        assert_int_equal(run_cli(argv, err, sizeof(err)), 2);
        if (strstr(err, cases[i].want) == NULL)
            fail_msg("presign %s: \"%s\" lacks \"%s\"", cases[i].target, err, cases[i].want);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(presign_refuses_bucket_names_s3_cannot_have_and_overlong_keys),
        cmocka_unit_test(durations_parse_with_units_and_reject_garbage),
        cmocka_unit_test(concurrency_outside_1_to_1024_or_not_a_number_is_a_usage_error),
        cmocka_unit_test(more_than_64_sets_is_a_usage_error),
        cmocka_unit_test(unknown_commands_and_options_are_usage_errors),
        cmocka_unit_test(a_switch_of_another_command_is_a_usage_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
