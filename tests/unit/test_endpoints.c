/* Tests for endpoints: real endpoints per partition (IAM and Route 53 global), the
 * precedence of AWS_ENDPOINT_URL_<SERVICE>, AWS_ENDPOINT_URL and the profile's endpoint_url
 * and AWS_IGNORE_CONFIGURED_ENDPOINT_URLS, custom URL validation, S3 addressing styles and
 * region name checks. The environment is saved before and restored after every test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "endpoints.h"
#include "opsline/opsline.h"

static const char *const env_names[] = {
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_IAM",
    "AWS_ENDPOINT_URL_SECRETS_MANAGER",
    "AWS_ENDPOINT_URL_STS",
    "AWS_ENDPOINT_URL_APPCONFIG",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
};
#define N_ENV (sizeof(env_names) / sizeof(env_names[0]))

typedef struct env_state {
    char *saved[N_ENV];
} env_state;

static int env_setup(void **state) {
    env_state *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -1;
    for (size_t i = 0; i < N_ENV; i++) {
        const char *v = getenv(env_names[i]);
        if (v != NULL && (s->saved[i] = strdup(v)) == NULL)
            return -1;
        unsetenv(env_names[i]);
    }
    *state = s;
    return 0;
}

static int env_teardown(void **state) {
    env_state *s = *state;
    for (size_t i = 0; i < N_ENV; i++) {
        if (s->saved[i] != NULL)
            setenv(env_names[i], s->saved[i], 1);
        else
            unsetenv(env_names[i]);
        free(s->saved[i]);
    }
    free(s);
    return 0;
}

/* Resolves and checks url, host, signing region and name in one go. */
static void expect_endpoint(const char *service, const char *region, const char *profile_ep,
                            const char *url, const char *host, const char *signing_region,
                            const char *signing_name, int custom) {
    endpoint e;
    char *err = NULL;
    int rc = endpoints_resolve(service, region, profile_ep, &e, &err);
    if (rc != 0)
        fail_msg("%s in %s: %d %s", service, region, rc, err ? err : "");
    assert_null(err);
    assert_string_equal(e.url, url);
    assert_string_equal(e.host, host);
    assert_string_equal(e.signing_region, signing_region);
    assert_string_equal(e.signing_name, signing_name);
    assert_int_equal(e.custom, custom);
    endpoints_free(&e);
}

/* endpoints_resolve must fail with OL_ECONFIG and a message containing want (and not
 * avoid, when given). */
static void expect_bad(const char *service, const char *profile_ep, const char *want,
                       const char *avoid) {
    endpoint e;
    char *err = NULL;
    assert_int_equal(endpoints_resolve(service, "eu-north-1", profile_ep, &e, &err), OL_ECONFIG);
    assert_non_null(err);
    if (strstr(err, want) == NULL)
        fail_msg("'%s' not in: %s", want, err);
    if (avoid != NULL && strstr(err, avoid) != NULL)
        fail_msg("'%s' must not be in: %s", avoid, err);
    assert_null(e.url);
    assert_null(e.signing_name);
    free(err);
}

static void s3_is_regional_in_each_partition(void **state) {
    (void)state;
    expect_endpoint("s3", "eu-north-1", NULL, "https://s3.eu-north-1.amazonaws.com",
                    "s3.eu-north-1.amazonaws.com", "eu-north-1", "s3", 0);
    expect_endpoint("s3", "us-east-1", NULL, "https://s3.us-east-1.amazonaws.com",
                    "s3.us-east-1.amazonaws.com", "us-east-1", "s3", 0);
    expect_endpoint("s3", "cn-north-1", NULL, "https://s3.cn-north-1.amazonaws.com.cn",
                    "s3.cn-north-1.amazonaws.com.cn", "cn-north-1", "s3", 0);
    expect_endpoint("s3", "us-gov-west-1", NULL, "https://s3.us-gov-west-1.amazonaws.com",
                    "s3.us-gov-west-1.amazonaws.com", "us-gov-west-1", "s3", 0);
}

static void iam_is_global_per_partition(void **state) {
    (void)state;
    expect_endpoint("iam", "eu-north-1", NULL, "https://iam.amazonaws.com", "iam.amazonaws.com",
                    "us-east-1", "iam", 0);
    expect_endpoint("iam", "cn-northwest-1", NULL, "https://iam.cn-north-1.amazonaws.com.cn",
                    "iam.cn-north-1.amazonaws.com.cn", "cn-north-1", "iam", 0);
    expect_endpoint("iam", "us-gov-east-1", NULL, "https://iam.us-gov.amazonaws.com",
                    "iam.us-gov.amazonaws.com", "us-gov-west-1", "iam", 0);
}

static void sts_and_other_services_are_regional(void **state) {
    (void)state;
    expect_endpoint("sts", "eu-west-1", NULL, "https://sts.eu-west-1.amazonaws.com",
                    "sts.eu-west-1.amazonaws.com", "eu-west-1", "sts", 0);
    expect_endpoint(
        "secretsmanager", "cn-north-1", NULL, "https://secretsmanager.cn-north-1.amazonaws.com.cn",
        "secretsmanager.cn-north-1.amazonaws.com.cn", "cn-north-1", "secretsmanager", 0);
    expect_endpoint("cloudwatch", "eu-north-1", NULL, "https://monitoring.eu-north-1.amazonaws.com",
                    "monitoring.eu-north-1.amazonaws.com", "eu-north-1", "monitoring", 0);
    expect_endpoint("appconfig", "eu-north-1", NULL, "https://appconfig.eu-north-1.amazonaws.com",
                    "appconfig.eu-north-1.amazonaws.com", "eu-north-1", "appconfig", 0);
}

static void service_variable_wins_over_generic_over_profile(void **state) {
    (void)state;
    const char *prof = "http://profile.example:1000";
    expect_endpoint("s3", "eu-north-1", prof, "http://profile.example:1000", "profile.example:1000",
                    "eu-north-1", "s3", 1);
    setenv("AWS_ENDPOINT_URL", "http://generic.example:2000", 1);
    expect_endpoint("s3", "eu-north-1", prof, "http://generic.example:2000", "generic.example:2000",
                    "eu-north-1", "s3", 1);
    setenv("AWS_ENDPOINT_URL_S3", "http://s3.example:3000", 1);
    expect_endpoint("s3", "eu-north-1", prof, "http://s3.example:3000", "s3.example:3000",
                    "eu-north-1", "s3", 1);
    /* IAM is not touched by the S3 variable; a custom IAM endpoint signs for the region. */
    expect_endpoint("iam", "eu-north-1", prof, "http://generic.example:2000",
                    "generic.example:2000", "eu-north-1", "iam", 1);
}

static void secrets_manager_variable_uses_the_sdk_service_id(void **state) {
    (void)state;
    assert_string_equal(endpoints_env_suffix("secretsmanager"), "SECRETS_MANAGER");
    assert_string_equal(endpoints_env_suffix("s3"), "S3");
    assert_string_equal(endpoints_env_suffix("iam"), "IAM");
    assert_string_equal(endpoints_env_suffix("sts"), "STS");
    assert_string_equal(endpoints_env_suffix("logs"), "CLOUDWATCH_LOGS");
    assert_null(endpoints_env_suffix("appconfig"));
    setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://127.0.0.1:4566", 1);
    expect_endpoint("secretsmanager", "eu-north-1", NULL, "http://127.0.0.1:4566", "127.0.0.1:4566",
                    "eu-north-1", "secretsmanager", 1);
    setenv("AWS_ENDPOINT_URL_APPCONFIG", "http://127.0.0.1:4567", 1);
    expect_endpoint("appconfig", "eu-north-1", NULL, "http://127.0.0.1:4567", "127.0.0.1:4567",
                    "eu-north-1", "appconfig", 1);
}

static void ignore_configured_endpoint_urls_disables_all_three(void **state) {
    (void)state;
    setenv("AWS_ENDPOINT_URL", "http://generic.example:2000", 1);
    setenv("AWS_ENDPOINT_URL_S3", "http://s3.example:3000", 1);
    setenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "TRUE", 1);
    expect_endpoint("s3", "eu-north-1", "http://profile.example",
                    "https://s3.eu-north-1.amazonaws.com", "s3.eu-north-1.amazonaws.com",
                    "eu-north-1", "s3", 0);
    expect_endpoint("iam", "eu-north-1", "http://profile.example", "https://iam.amazonaws.com",
                    "iam.amazonaws.com", "us-east-1", "iam", 0);
    setenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "false", 1);
    expect_endpoint("s3", "eu-north-1", NULL, "http://s3.example:3000", "s3.example:3000",
                    "eu-north-1", "s3", 1);
}

static void custom_url_is_normalised(void **state) {
    (void)state;
    expect_endpoint("s3", "eu-north-1", "http://127.0.0.1:5000/", "http://127.0.0.1:5000",
                    "127.0.0.1:5000", "eu-north-1", "s3", 1);
    /* curl leaves a default port out of Host, so must we or the signature breaks. */
    expect_endpoint("s3", "eu-north-1", "https://minio.example:443", "https://minio.example",
                    "minio.example", "eu-north-1", "s3", 1);
    expect_endpoint("iam", "eu-north-1", "http://[::1]:5000", "http://[::1]:5000", "[::1]:5000",
                    "eu-north-1", "iam", 1);
    expect_endpoint("s3", "eu-north-1", "http://gw.example:9000/minio//",
                    "http://gw.example:9000/minio", "gw.example:9000", "eu-north-1", "s3", 1);
}

static void bad_endpoint_urls_are_config_errors_naming_their_source(void **state) {
    (void)state;
    setenv("AWS_ENDPOINT_URL_S3", "ftp://files.example", 1);
    expect_bad("s3", NULL, "'ftp://files.example' (from AWS_ENDPOINT_URL_S3)", NULL);
    expect_bad("s3", NULL, "http or https", NULL);
    unsetenv("AWS_ENDPOINT_URL_S3");
    setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5000/?x=1", 1);
    expect_bad("iam", NULL, "'http://127.0.0.1:5000/?x=1' (from AWS_ENDPOINT_URL)", NULL);
    expect_bad("iam", NULL, "query", NULL);
    unsetenv("AWS_ENDPOINT_URL");
    expect_bad("s3", "not a url", "'not a url' (from endpoint_url in the config profile)", NULL);
    expect_bad("s3", "127.0.0.1:5000", "127.0.0.1:5000", NULL);
    expect_bad("s3", "http://127.0.0.1:5000/#frag", "fragment", NULL);
    expect_bad("s3", "http://admin:hunter2@127.0.0.1:5000", "user name or password", "hunter2");
}

static void invalid_region_is_rejected_for_real_endpoints(void **state) {
    (void)state;
    endpoint e;
    char *err = NULL;
    assert_int_equal(endpoints_resolve("s3", "Europe", NULL, &e, &err), OL_ECONFIG);
    assert_non_null(strstr(err, "'Europe'"));
    free(err);
    err = NULL;
    assert_int_equal(endpoints_resolve("s3", NULL, NULL, &e, &err), OL_EINVAL);
    assert_non_null(err);
    free(err);
}

static void expect_s3_url(const endpoint *e, const char *bucket, const char *base, const char *host,
                          const char *prefix) {
    char *b = NULL, *h = NULL, *p = NULL;
    assert_int_equal(endpoints_s3_url(e, bucket, &b, &h, &p), 0);
    assert_string_equal(b, base);
    assert_string_equal(h, host);
    assert_string_equal(p, prefix);
    free(b);
    free(h);
    free(p);
}

static void s3_uses_virtual_hosts_on_aws_and_path_style_otherwise(void **state) {
    (void)state;
    endpoint e;
    char *err = NULL;
    assert_int_equal(endpoints_resolve("s3", "eu-north-1", NULL, &e, &err), 0);
    expect_s3_url(&e, "acme-production", "https://acme-production.s3.eu-north-1.amazonaws.com",
                  "acme-production.s3.eu-north-1.amazonaws.com", "");
    /* Dots break the wildcard certificate: path-style. */
    expect_s3_url(&e, "acme.production", "https://s3.eu-north-1.amazonaws.com",
                  "s3.eu-north-1.amazonaws.com", "/acme.production");
    expect_s3_url(&e, NULL, "https://s3.eu-north-1.amazonaws.com", "s3.eu-north-1.amazonaws.com",
                  "");
    endpoints_free(&e);

    assert_int_equal(endpoints_resolve("s3", "eu-north-1", "http://127.0.0.1:5000", &e, &err), 0);
    expect_s3_url(&e, "acme-production", "http://127.0.0.1:5000", "127.0.0.1:5000",
                  "/acme-production");
    endpoints_free(&e);

    assert_int_equal(
        endpoints_resolve("s3", "eu-north-1", "http://gw.example:9000/minio/", &e, &err), 0);
    expect_s3_url(&e, "acme", "http://gw.example:9000", "gw.example:9000", "/minio/acme");
    endpoints_free(&e);
    assert_null(err);
}

static void partitions_and_dns_suffixes_follow_the_region(void **state) {
    (void)state;
    assert_string_equal(endpoints_partition("eu-north-1"), "aws");
    assert_string_equal(endpoints_partition("cn-northwest-1"), "aws-cn");
    assert_string_equal(endpoints_partition("us-gov-west-1"), "aws-us-gov");
    assert_string_equal(endpoints_partition("us-isob-east-1"), "aws-iso-b");
    assert_string_equal(endpoints_dns_suffix("eu-north-1"), "amazonaws.com");
    assert_string_equal(endpoints_dns_suffix("cn-north-1"), "amazonaws.com.cn");
    assert_string_equal(endpoints_dns_suffix("us-gov-east-1"), "amazonaws.com");
}

static void region_names_are_checked(void **state) {
    (void)state;
    const char *good[] = {"eu-north-1",    "us-east-1",     "ap-southeast-2", "cn-north-1",
                          "us-gov-west-1", "us-iso-east-1", "us-isob-east-1", "il-central-1",
                          "me-south-1",    "ca-west-1",     "eu-isoe-west-1", "us-gov-1"};
    const char *bad[] = {"",           "eu-north",    "eu-north-",     "eu_north_1",
                         "EU-NORTH-1", "europe-1",    "e-north-1",     "eu-north-1a",
                         "eu--1",      "eu-north-1 ", "us-foo-east-1", "eu-north-x"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        if (!endpoints_region_valid(good[i]))
            fail_msg("%s should be valid", good[i]);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (endpoints_region_valid(bad[i]))
            fail_msg("'%s' should be invalid", bad[i]);
    assert_false(endpoints_region_valid(NULL));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(s3_is_regional_in_each_partition, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(iam_is_global_per_partition, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(sts_and_other_services_are_regional, env_setup,
                                        env_teardown),
        cmocka_unit_test_setup_teardown(service_variable_wins_over_generic_over_profile, env_setup,
                                        env_teardown),
        cmocka_unit_test_setup_teardown(secrets_manager_variable_uses_the_sdk_service_id, env_setup,
                                        env_teardown),
        cmocka_unit_test_setup_teardown(ignore_configured_endpoint_urls_disables_all_three,
                                        env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(custom_url_is_normalised, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(bad_endpoint_urls_are_config_errors_naming_their_source,
                                        env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(invalid_region_is_rejected_for_real_endpoints, env_setup,
                                        env_teardown),
        cmocka_unit_test_setup_teardown(s3_uses_virtual_hosts_on_aws_and_path_style_otherwise,
                                        env_setup, env_teardown),
        cmocka_unit_test(partitions_and_dns_suffixes_follow_the_region),
        cmocka_unit_test(region_names_are_checked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
