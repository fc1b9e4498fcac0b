/* Unit tests of the command line: duration parsing for presign --expires. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cli.h"

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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(durations_parse_with_units_and_reject_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
