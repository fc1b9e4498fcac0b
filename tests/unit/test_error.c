/* Tests for error.c: every OL_E* code has its own text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(names_every_code_with_a_distinct_text),
        cmocka_unit_test(calls_codes_outside_the_range_unknown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
