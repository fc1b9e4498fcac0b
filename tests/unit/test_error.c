/* Tests for error.c: every OL_E* code has its own text; messages are formatted into fresh
 * memory and handed over through ol__fail. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "error.h"

static void names_every_code_with_a_distinct_text(void **state) {
    int a;
    int b;

    (void)state;
    for (a = OL_ELAST; a <= 0; a++) {
        const char *t = ol_strerror(a);

        assert_non_null(t);
        assert_true(strlen(t) > 0);
        assert_string_not_equal(t, "unknown error");
        for (b = OL_ELAST; b < a; b++)
            assert_string_not_equal(t, ol_strerror(b));
    }
}

static void calls_codes_outside_the_range_unknown(void **state) {
    (void)state;
    assert_string_equal(ol_strerror(OL_ELAST - 1), "unknown error");
    assert_string_equal(ol_strerror(1), "unknown error");
    assert_string_equal(ol_strerror(INT32_MIN), "unknown error");
}

static void formats_a_message_longer_than_any_fixed_buffer(void **state) {
    (void)state;
    char big[5000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    char *s = ol__format("<%s>", big);
    assert_non_null(s);
    assert_int_equal(strlen(s), sizeof(big) + 1);
    assert_true(s[0] == '<' && s[1] == 'x' && s[sizeof(big) - 1] == 'x' && s[sizeof(big)] == '>');
    free(s);
    /* Either side of the stack buffer a short message is formatted in (256 bytes). */
    for (size_t len = 250; len <= 260; len++) {
        big[len] = '\0';
        s = ol__format("%s%d", big, 7);
        assert_non_null(s);
        assert_int_equal(strlen(s), len + 1);
        assert_true(s[len - 1] == 'x' && s[len] == '7');
        free(s);
        big[len] = 'x';
    }
    s = ol__format("%s", "");
    assert_string_equal(s, "");
    free(s);
}

static void fail_sets_the_message_and_returns_the_code(void **state) {
    (void)state;
    char *err = NULL;
    assert_int_equal(ol__fail(&err, OL_ECONFIG, "file %s, line %d", "p.json", 3), OL_ECONFIG);
    assert_string_equal(err, "file p.json, line 3");
    free(err);
}

static void fail_replaces_an_earlier_message(void **state) {
    (void)state;
    char *err = NULL;
    ol__fail(&err, OL_EINVAL, "first");
    assert_int_equal(ol__fail(&err, OL_EIO, "second %d", 2), OL_EIO);
    assert_string_equal(err, "second 2");
    free(err);
}

static void fail_without_a_place_for_the_message_returns_the_code(void **state) {
    (void)state;
    assert_int_equal(ol__fail(NULL, OL_EABI, "ignored %s", "text"), OL_EABI);
}

static void fail_keeps_messages_of_any_length(void **state) {
    (void)state;
    char big[3000];
    memset(big, 'y', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    char *err = NULL;
    ol__fail(&err, OL_EINVAL, "%s!", big);
    assert_int_equal(strlen(err), sizeof(big));
    assert_int_equal(err[sizeof(big) - 1], '!');
    free(err);
}

static void suggest_picks_the_nearest_candidate_within_the_distance(void **state) {
    (void)state;
    const char *const words[] = {"versioning", "logging", "tags", NULL};
    assert_string_equal(ol__suggest("versoning", words, 3, 0), "versioning");
    assert_string_equal(ol__suggest("LOGGING", words, 3, 0), "logging"); /* case-insensitive */
    assert_null(ol__suggest("encryption", words, 3, 0));                 /* not a typo */
    assert_string_equal(ol__suggest("tag", words, 3, 1), "tags");
    assert_null(ol__suggest("logg", words, 3, 1));                 /* 3 edits > 1 */
    assert_null(ol__suggest("x", words, 0, 0));                    /* no candidates */
    assert_string_equal(ol__suggest("tags", words, 4, 0), "tags"); /* a NULL entry is skipped */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(names_every_code_with_a_distinct_text),
        cmocka_unit_test(calls_codes_outside_the_range_unknown),
        cmocka_unit_test(formats_a_message_longer_than_any_fixed_buffer),
        cmocka_unit_test(fail_sets_the_message_and_returns_the_code),
        cmocka_unit_test(fail_replaces_an_earlier_message),
        cmocka_unit_test(fail_without_a_place_for_the_message_returns_the_code),
        cmocka_unit_test(fail_keeps_messages_of_any_length),
        cmocka_unit_test(suggest_picks_the_nearest_candidate_within_the_distance),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
