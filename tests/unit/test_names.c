/* Unit tests for names: S3 bucket and IAM user naming rules, product and environment checks,
 * and the messages (input, what is wrong, the fix) users see. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "names.h"
#include "opsline/opsline.h"

/* Assert that check rejects name with a message containing every given fragment. */
#define assert_rejected(check, name, ...)                                                          \
    do {                                                                                           \
        const char *frags_[] = {__VA_ARGS__, NULL};                                                \
        char *err_ = NULL;                                                                         \
        assert_int_equal(check(name, &err_), OL_EINVAL);                                           \
        assert_non_null(err_);                                                                     \
        for (size_t i_ = 0; frags_[i_] != NULL; i_++) {                                            \
            if (strstr(err_, frags_[i_]) == NULL)                                                  \
                fail_msg("message '%s' lacks '%s'", err_, frags_[i_]);                             \
        }                                                                                          \
        free(err_);                                                                                \
    } while (0)

static void assert_accepted(int (*check)(const char *, char **), const char *name) {
    char *err = (char *)"unchanged";
    int rc = check(name, &err);
    if (rc != 0)
        fail_msg("'%s' rejected: %s", name, err != NULL ? err : "(no message)");
    assert_null(err);
}

static void accepts_valid_bucket_names(void **state) {
    (void)state;
    const char *ok[] = {"abc",
                        "acme-production",
                        "my.bucket.name",
                        "a1b2c3",
                        "123",
                        "docexamplebucket1",
                        "a--b",
                        "1.2.3",       /* three groups: not an IP address */
                        "1.2.3.4.5",   /* five groups: not an IP address */
                        "1.2.3.4a",    /* a letter: not an IP address */
                        "xn-abc",      /* only "xn--" is reserved */
                        "abc-s3alia",  /* near a reserved suffix */
                        "s3alias-abc", /* reserved suffix at the start is fine */
                        "abc.mrap1",
                        "sthree",
                        "amzn-s3-demo",
                        "012345678901234567890123456789012345678901234567890123456789012"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        assert_accepted(names_check_bucket, ok[i]);
}

static void rejects_bucket_names_outside_3_to_63_characters(void **state) {
    (void)state;
    assert_rejected(names_check_bucket, "", "bucket name ''", "is empty", "3 to 63");
    assert_rejected(names_check_bucket, NULL, "is empty");
    assert_rejected(names_check_bucket, "ab", "'ab'", "is 2 characters long", "3 to 63");
    assert_rejected(names_check_bucket,
                    "0123456789012345678901234567890123456789012345678901234567890123",
                    "is 64 characters long", "3 to 63",
                    "Use '012345678901234567890123456789012345678901234567890123456789012'.");
}

static void rejects_uppercase_bucket_names_suggesting_lowercase(void **state) {
    (void)state;
    assert_rejected(names_check_bucket, "Acme-production", "bucket name 'Acme-production'",
                    "has uppercase letters",
                    "S3 bucket names use lowercase letters, digits, hyphens and dots",
                    "Use 'acme-production'.");
}

static void rejects_bucket_names_with_other_characters(void **state) {
    (void)state;
    assert_rejected(names_check_bucket, "acme_prod", "has the character '_'", "Use 'acme-prod'.");
    assert_rejected(names_check_bucket, "acme prod", "has the character ' '", "Use 'acme-prod'.");
    assert_rejected(names_check_bucket, "acme/prod", "has the character '/'");
    assert_rejected(names_check_bucket, "caf\xc3\xa9s", "has the byte 0xc3");
    assert_rejected(names_check_bucket, "a\tb", "has the byte 0x09");
}

static void rejects_bucket_names_not_starting_and_ending_with_letter_or_digit(void **state) {
    (void)state;
    assert_rejected(names_check_bucket, "-acme", "starts with '-'", "start and end with a letter",
                    "Use 'acme'.");
    assert_rejected(names_check_bucket, ".acme", "starts with '.'", "Use 'acme'.");
    assert_rejected(names_check_bucket, "acme-", "ends with '-'", "Use 'acme'.");
    assert_rejected(names_check_bucket, "acme.", "ends with '.'");
}

static void rejects_adjacent_dots_and_dots_next_to_hyphens(void **state) {
    (void)state;
    assert_rejected(names_check_bucket, "my..bucket", "two adjacent dots", "Use 'my.bucket'.");
    assert_rejected(names_check_bucket, "my.-bucket", "dot next to a hyphen", "virtual-hosted",
                    "Use 'my-bucket'.");
    assert_rejected(names_check_bucket, "my-.bucket", "dot next to a hyphen", "Use 'my-bucket'.");
}

static void rejects_bucket_names_formatted_as_ip_addresses(void **state) {
    (void)state;
    assert_rejected(names_check_bucket, "192.168.5.4", "formatted as an IP address",
                    "Choose a name");
    assert_rejected(names_check_bucket, "999.999.999.999", "formatted as an IP address");
    assert_rejected(names_check_bucket, "10.0.0.01", "formatted as an IP address");
}

static void rejects_reserved_prefixes_and_suffixes(void **state) {
    (void)state;
    assert_rejected(names_check_bucket, "xn--acme", "starts with 'xn--'", "prefix S3 reserves",
                    "Use 'acme'.");
    assert_rejected(names_check_bucket, "sthree-acme", "starts with 'sthree-'");
    assert_rejected(names_check_bucket, "sthree-configurator", "starts with 'sthree-'");
    assert_rejected(names_check_bucket, "amzn-s3-demo-acme", "starts with 'amzn-s3-demo-'");
    assert_rejected(names_check_bucket, "acme-s3alias", "ends with '-s3alias'",
                    "suffix S3 reserves", "Use 'acme'.");
    assert_rejected(names_check_bucket, "acme--ol-s3", "ends with '--ol-s3'");
    assert_rejected(names_check_bucket, "acme.mrap", "ends with '.mrap'");
    assert_rejected(names_check_bucket, "acme--x-s3", "ends with '--x-s3'");
    assert_rejected(names_check_bucket, "acme--table-s3", "ends with '--table-s3'");
}

static void gives_a_generic_fix_when_no_suggestion_is_valid(void **state) {
    (void)state;
    assert_rejected(names_check_bucket, "--", "starts with '-'", "Choose a name of 3-63");
    assert_rejected(names_check_bucket, "A", "has uppercase", "Choose a name of 3-63");
}

static void accepts_valid_iam_user_names(void **state) {
    (void)state;
    const char *ok[] = {"a", "Acme-Production", "user+tag=x,y.z@example_1-2",
                        "0123456789012345678901234567890123456789012345678901234567890123"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        assert_accepted(names_check_iam_user, ok[i]);
}

static void rejects_iam_user_names_outside_1_to_64_characters(void **state) {
    (void)state;
    assert_rejected(names_check_iam_user, "", "IAM user name ''", "is 0 characters long",
                    "1 to 64");
    assert_rejected(names_check_iam_user,
                    "01234567890123456789012345678901234567890123456789012345678901234",
                    "is 65 characters long", "1 to 64");
}

static void rejects_iam_user_names_with_other_characters(void **state) {
    (void)state;
    assert_rejected(names_check_iam_user, "acme prod", "has the character ' '", "+ = , . @ _ -");
    assert_rejected(names_check_iam_user, "acme/prod", "has the character '/'");
    assert_rejected(names_check_iam_user, "acme#1", "has the character '#'");
    assert_rejected(names_check_iam_user, "caf\xc3\xa9", "has the byte 0xc3");
}

static void accepts_valid_product_and_environment_names(void **state) {
    (void)state;
    assert_accepted(names_check_product, "acme");
    assert_accepted(names_check_product, "acme.web-2");
    assert_accepted(names_check_product, "a");
    assert_accepted(names_check_environment, "production");
    assert_accepted(names_check_environment, "p");
}

static void rejects_product_names_naming_the_input_and_the_fix(void **state) {
    (void)state;
    assert_rejected(names_check_product, "Acme", "product 'Acme' has uppercase letters",
                    "lowercase letters, digits, hyphens and dots", "Use 'acme'.");
    assert_rejected(names_check_product, "", "product '' is empty");
    assert_rejected(names_check_product, NULL, "product '' is empty");
    assert_rejected(names_check_product, "acme_web", "product 'acme_web'", "'_'",
                    "Use 'acme-web'.");
    assert_rejected(names_check_product, "-acme", "starts with '-'", "Use 'acme'.");
    assert_rejected(names_check_product, "a..b", "two adjacent dots", "Use 'a.b'.");
}

static void rejects_environment_names_naming_the_input_and_the_fix(void **state) {
    (void)state;
    assert_rejected(names_check_environment, "Prod", "environment 'Prod' has uppercase",
                    "Use 'prod'.");
    assert_rejected(names_check_environment, "", "environment '' is empty");
    assert_rejected(names_check_environment, "prod!", "environment 'prod!'", "'!'", "Use 'prod'.");
}

static void accepts_valid_items(void **state) {
    (void)state;
    char *err = NULL;
    assert_int_equal(names_check_item_resource(NAMES_S3_BUCKET, "acme", "production", &err), 0);
    assert_null(err);
    assert_int_equal(names_check_item_resource(NAMES_S3_BUCKET, "a", "b", &err),
                     0); /* "a-b" is 3 characters */
    assert_null(err);
}

static void rejects_items_whose_combined_name_breaks_bucket_rules(void **state) {
    (void)state;
    char *err = NULL;
    assert_int_equal(names_check_item_resource(NAMES_S3_BUCKET, "Acme", "production", &err),
                     OL_EINVAL);
    assert_non_null(strstr(err, "product 'Acme' has uppercase letters"));
    assert_non_null(strstr(err, "Use 'acme'."));
    free(err);

    assert_int_equal(names_check_item_resource(NAMES_S3_BUCKET, "acme", "Prod", &err), OL_EINVAL);
    assert_non_null(strstr(err, "environment 'Prod'"));
    free(err);

    char product[61];
    memset(product, 'p', sizeof(product) - 1);
    product[sizeof(product) - 1] = '\0';
    assert_int_equal(names_check_item_resource(NAMES_S3_BUCKET, product, "prod", &err), OL_EINVAL);
    assert_non_null(strstr(err, "is 65 characters long"));
    assert_non_null(strstr(err, "Use a shorter product or environment name."));
    free(err);

    assert_int_equal(names_check_item_resource(NAMES_S3_BUCKET, "xn--acme", "prod", &err),
                     OL_EINVAL);
    assert_non_null(strstr(err, "product 'xn--acme', environment 'prod'"));
    assert_non_null(strstr(err, "starts with 'xn--'"));
    assert_non_null(strstr(err, "product name without that prefix"));
    free(err);

    assert_int_equal(names_check_item_resource(NAMES_S3_BUCKET, "acme", "s3alias", &err),
                     OL_EINVAL);
    assert_non_null(strstr(err, "ends with '-s3alias'"));
    assert_non_null(strstr(err, "environment name without that ending"));
    free(err);
}

static void checks_an_item_name_as_one_kind_of_resource(void **state) {
    (void)state;
    char *err = NULL;
    assert_int_equal(names_check_item_resource(NAMES_S3_BUCKET, "acme", "prod", &err), 0);
    assert_null(err);
    assert_int_equal(names_check_item_resource(NAMES_S3_BUCKET, "xn--acme", "prod", &err),
                     OL_EINVAL);
    assert_string_equal(err, "product 'xn--acme', environment 'prod': bucket name "
                             "'xn--acme-prod' starts with 'xn--', a prefix S3 reserves. Choose a "
                             "product name without that prefix.");
    free(err);
    err = NULL;

    /* 63 characters: too long for no bucket, too long for no IAM user; 64: IAM only. */
    char product[59];
    memset(product, 'p', sizeof(product) - 1);
    product[sizeof(product) - 1] = '\0';
    assert_int_equal(names_check_item_resource(NAMES_IAM_USER, product, "prodd", &err), 0);
    assert_int_equal(names_check_item_resource(NAMES_S3_BUCKET, product, "prodd", &err), OL_EINVAL);
    assert_non_null(strstr(err, "is 64 characters long; S3 bucket names are 3 to 63"));
    assert_non_null(strstr(err, "Use a shorter product or environment name."));
    free(err);
    err = NULL;
    assert_int_equal(names_check_item_resource(NAMES_IAM_USER, product, "proddd", &err), OL_EINVAL);
    assert_non_null(strstr(err, "IAM user name '"));
    assert_non_null(strstr(err, "is 65 characters long; IAM user names are 1 to 64"));
    free(err);
    err = NULL;

    /* The segments' own rules come first. */
    assert_int_equal(names_check_item_resource(NAMES_IAM_USER, "Acme", "prod", &err), OL_EINVAL);
    assert_non_null(strstr(err, "product 'Acme' has uppercase letters"));
    free(err);
    assert_int_equal(names_check_item_resource("sqs-queue", "acme", "prod", NULL), OL_ENOENT);
    assert_int_equal(names_check_item_resource(NULL, "acme", "prod", NULL), OL_ENOENT);
}

static void accepts_null_err_for_verdict_only(void **state) {
    (void)state;
    assert_int_equal(names_check_bucket("Bad", NULL), OL_EINVAL);
    assert_int_equal(names_check_iam_user("", NULL), OL_EINVAL);
    assert_int_equal(names_check_product("", NULL), OL_EINVAL);
    assert_int_equal(names_check_item_resource(NAMES_S3_BUCKET, "acme", "s3alias", NULL),
                     OL_EINVAL);
    assert_int_equal(names_check_item_resource(NAMES_S3_BUCKET, "acme", "prod", NULL), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(accepts_valid_bucket_names),
        cmocka_unit_test(checks_an_item_name_as_one_kind_of_resource),
        cmocka_unit_test(rejects_bucket_names_outside_3_to_63_characters),
        cmocka_unit_test(rejects_uppercase_bucket_names_suggesting_lowercase),
        cmocka_unit_test(rejects_bucket_names_with_other_characters),
        cmocka_unit_test(rejects_bucket_names_not_starting_and_ending_with_letter_or_digit),
        cmocka_unit_test(rejects_adjacent_dots_and_dots_next_to_hyphens),
        cmocka_unit_test(rejects_bucket_names_formatted_as_ip_addresses),
        cmocka_unit_test(rejects_reserved_prefixes_and_suffixes),
        cmocka_unit_test(gives_a_generic_fix_when_no_suggestion_is_valid),
        cmocka_unit_test(accepts_valid_iam_user_names),
        cmocka_unit_test(rejects_iam_user_names_outside_1_to_64_characters),
        cmocka_unit_test(rejects_iam_user_names_with_other_characters),
        cmocka_unit_test(accepts_valid_product_and_environment_names),
        cmocka_unit_test(rejects_product_names_naming_the_input_and_the_fix),
        cmocka_unit_test(rejects_environment_names_naming_the_input_and_the_fix),
        cmocka_unit_test(accepts_valid_items),
        cmocka_unit_test(rejects_items_whose_combined_name_breaks_bucket_rules),
        cmocka_unit_test(accepts_null_err_for_verdict_only),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
