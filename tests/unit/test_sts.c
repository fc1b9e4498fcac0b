/* Tests for sts: the GetCallerIdentity answer is read from its one XML path, and a failure
 * reads "AWS rejected ..." only when AWS answered 4xx. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sts.h"

static const char answer[] =
    "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"
    "<GetCallerIdentityResult><Arn>arn:aws:iam::123456789012:user/admin</Arn>"
    "<UserId>AIDAEXAMPLE</UserId><Account>123456789012</Account></GetCallerIdentityResult>"
    "<ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata>"
    "</GetCallerIdentityResponse>";

static void parses_account_arn_and_user_id(void **state) {
    (void)state;
    sts_identity id;
    assert_int_equal(sts_identity_parse(answer, strlen(answer), &id), 0);
    assert_string_equal(id.account, "123456789012");
    assert_string_equal(id.arn, "arn:aws:iam::123456789012:user/admin");
    assert_string_equal(id.user_id, "AIDAEXAMPLE");
    sts_identity_free(&id);
    assert_null(id.arn);
}

static void refuses_an_answer_without_account_or_arn(void **state) {
    (void)state;
    static const char partial[] = "<GetCallerIdentityResponse><GetCallerIdentityResult>"
                                  "<Arn>arn:aws:iam::1:user/x</Arn></GetCallerIdentityResult>"
                                  "</GetCallerIdentityResponse>";
    sts_identity id;
    assert_int_equal(sts_identity_parse(partial, strlen(partial), &id), OL_EAWS);
    assert_string_equal(id.arn, "arn:aws:iam::1:user/x");
    assert_null(id.account);
    sts_identity_free(&id);
    assert_int_equal(sts_identity_parse("not xml", 7, &id), OL_EAWS);
    assert_null(id.arn);
    assert_int_equal(sts_identity_parse(NULL, 0, &id), OL_EAWS);
}

static void says_aws_rejected_the_credentials_on_a_4xx(void **state) {
    (void)state;
    ol_aws_response res = {.struct_size = sizeof(res),
                           .result = OL_EAWS,
                           .status = 403,
                           .error_code = "SignatureDoesNotMatch",
                           .error_message = "bad signature",
                           .request_id = "req-9"};
    assert_true(sts_rejected(&res));
    char *msg = sts_failure_message(&res, "environment variables (AWS_ACCESS_KEY_ID)");
    assert_string_equal(msg, "AWS rejected the credentials from environment variables "
                             "(AWS_ACCESS_KEY_ID): SignatureDoesNotMatch: bad signature "
                             "(HTTP 403, request id req-9)");
    free(msg);
    assert_non_null(strstr(sts_failure_hint(&res), "secret access key"));
}

static void says_it_could_not_check_when_there_was_no_verdict(void **state) {
    (void)state;
    ol_aws_response res = {.struct_size = sizeof(res), .result = OL_ENET};
    assert_false(sts_rejected(&res));
    char *msg = sts_failure_message(&res, NULL);
    assert_string_equal(msg, "could not check with AWS STS the credentials from the environment: "
                             "network error: no usable answer from the endpoint (HTTP 0)");
    free(msg);
    assert_non_null(strstr(sts_failure_hint(&res), "AWS_ENDPOINT_URL_STS"));
    ol_aws_response busy = {
        .struct_size = sizeof(busy), .result = OL_EAWS, .status = 503, .error_code = "X"};
    assert_false(sts_rejected(&busy));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parses_account_arn_and_user_id),
        cmocka_unit_test(refuses_an_answer_without_account_or_arn),
        cmocka_unit_test(says_aws_rejected_the_credentials_on_a_4xx),
        cmocka_unit_test(says_it_could_not_check_when_there_was_no_verdict),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
