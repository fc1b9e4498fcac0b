/* Tests for xml.c: path lookups over real AWS response shapes, namespaces, hostile input,
 * and the AWS error styles (S3, Query, EC2, JSON). */
#include "harness.h"
#include "xml.h"

static ol_xml *parse_str(const char *s) {
    return xml_parse(s, strlen(s));
}

/* From the IAM API reference, ListAccessKeys "Examples". */
static const char list_access_keys[] =
    "<ListAccessKeysResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\">\n"
    "  <ListAccessKeysResult>\n"
    "    <UserName>Bob</UserName>\n"
    "    <AccessKeyMetadata>\n"
    "      <member>\n"
    "        <UserName>Bob</UserName>\n"
    "        <AccessKeyId>AKIAIOSFODNN7EXAMPLE</AccessKeyId>\n"
    "        <Status>Active</Status>\n"
    "        <CreateDate>2023-01-02T03:04:05Z</CreateDate>\n"
    "      </member>\n"
    "      <member>\n"
    "        <UserName>Bob</UserName>\n"
    "        <AccessKeyId>AKIAI44QH8DHBEXAMPLE</AccessKeyId>\n"
    "        <Status>Inactive</Status>\n"
    "      </member>\n"
    "    </AccessKeyMetadata>\n"
    "    <IsTruncated>false</IsTruncated>\n"
    "  </ListAccessKeysResult>\n"
    "  <ResponseMetadata>\n"
    "    <RequestId>7a62c49f-347e-4fc4-9331-6e8eEXAMPLE</RequestId>\n"
    "  </ResponseMetadata>\n"
    "</ListAccessKeysResponse>\n";

static void reads_iam_list_access_keys_by_path_and_index(void **state) {
    const char *keys = "ListAccessKeysResponse/ListAccessKeysResult/AccessKeyMetadata/member";
    char path[256];
    ol_xml *doc = parse_str(list_access_keys);

    (void)state;
    assert_non_null(doc);
    assert_string_equal(xml_root_name(doc), "ListAccessKeysResponse");
    snprintf(path, sizeof(path), "%s/AccessKeyId", keys);
    assert_int_equal(xml_count(doc, keys), 2);
    assert_int_equal(xml_count(doc, path), 2);
    assert_string_equal(xml_text(doc, path, 0), "AKIAIOSFODNN7EXAMPLE");
    assert_string_equal(xml_text(doc, path, 1), "AKIAI44QH8DHBEXAMPLE");
    assert_null(xml_text(doc, path, 2));
    snprintf(path, sizeof(path), "%s/Status", keys);
    assert_string_equal(xml_text(doc, path, 1), "Inactive");
    /* Only the first member has a CreateDate: indexes count matches, not members. */
    snprintf(path, sizeof(path), "%s/CreateDate", keys);
    assert_int_equal(xml_count(doc, path), 1);
    assert_string_equal(xml_text(doc, path, 0), "2023-01-02T03:04:05Z");
    assert_string_equal(xml_text(doc, "ListAccessKeysResponse/ListAccessKeysResult/IsTruncated", 0),
                        "false");
    assert_string_equal(xml_text(doc, "ListAccessKeysResponse/ResponseMetadata/RequestId", 0),
                        "7a62c49f-347e-4fc4-9331-6e8eEXAMPLE");
    /* The user name directly under the result is not one of the members' names. */
    assert_int_equal(xml_count(doc, "ListAccessKeysResponse/ListAccessKeysResult/UserName"), 1);
    xml_free(doc);
}

static void reads_s3_get_bucket_encryption(void **state) {
    static const char body[] =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<ServerSideEncryptionConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
        "<Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>aws:kms</SSEAlgorithm>"
        "<KMSMasterKeyID>arn:aws:kms:us-east-1:111122223333:key/1234abcd</KMSMasterKeyID>"
        "</ApplyServerSideEncryptionByDefault><BucketKeyEnabled>true</BucketKeyEnabled></Rule>"
        "</ServerSideEncryptionConfiguration>";
    const char *rule = "ServerSideEncryptionConfiguration/Rule";
    char path[256];
    ol_xml *doc = parse_str(body);

    (void)state;
    assert_non_null(doc);
    assert_int_equal(xml_count(doc, rule), 1);
    snprintf(path, sizeof(path), "%s/ApplyServerSideEncryptionByDefault/SSEAlgorithm", rule);
    assert_string_equal(xml_text(doc, path, 0), "aws:kms");
    snprintf(path, sizeof(path), "%s/ApplyServerSideEncryptionByDefault/KMSMasterKeyID", rule);
    assert_string_equal(xml_text(doc, path, 0), "arn:aws:kms:us-east-1:111122223333:key/1234abcd");
    snprintf(path, sizeof(path), "%s/BucketKeyEnabled", rule);
    assert_string_equal(xml_text(doc, path, 0), "true");
    xml_free(doc);
}

static void reads_s3_get_public_access_block(void **state) {
    static const char body[] =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<PublicAccessBlockConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\n"
        "  <BlockPublicAcls>true</BlockPublicAcls>\n"
        "  <IgnorePublicAcls>true</IgnorePublicAcls>\n"
        "  <BlockPublicPolicy>false</BlockPublicPolicy>\n"
        "  <RestrictPublicBuckets>true</RestrictPublicBuckets>\n"
        "</PublicAccessBlockConfiguration>\n";
    ol_xml *doc = parse_str(body);

    (void)state;
    assert_non_null(doc);
    assert_string_equal(xml_root_name(doc), "PublicAccessBlockConfiguration");
    assert_string_equal(xml_text(doc, "PublicAccessBlockConfiguration/BlockPublicAcls", 0), "true");
    assert_string_equal(xml_text(doc, "PublicAccessBlockConfiguration/BlockPublicPolicy", 0),
                        "false");
    assert_string_equal(xml_text(doc, "PublicAccessBlockConfiguration/RestrictPublicBuckets", 0),
                        "true");
    xml_free(doc);
}

static void ignores_the_default_namespace_in_sts_get_caller_identity(void **state) {
    static const char body[] =
        "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n"
        "  <GetCallerIdentityResult>\n"
        "    <Arn>arn:aws:iam::123456789012:user/Alice</Arn>\n"
        "    <UserId>AIDACKCEVSQ6C2EXAMPLE</UserId>\n"
        "    <Account>123456789012</Account>\n"
        "  </GetCallerIdentityResult>\n"
        "  <ResponseMetadata>\n"
        "    <RequestId>01234567-89ab-cdef-0123-456789abcdef</RequestId>\n"
        "  </ResponseMetadata>\n"
        "</GetCallerIdentityResponse>\n";
    ol_xml *doc = parse_str(body);

    (void)state;
    assert_non_null(doc);
    assert_string_equal(xml_root_name(doc), "GetCallerIdentityResponse");
    assert_string_equal(
        xml_text(doc, "GetCallerIdentityResponse/GetCallerIdentityResult/Account", 0),
        "123456789012");
    assert_string_equal(xml_text(doc, "GetCallerIdentityResponse/GetCallerIdentityResult/Arn", 0),
                        "arn:aws:iam::123456789012:user/Alice");
    xml_free(doc);
}

static void ignores_namespace_prefixes(void **state) {
    static const char body[] = "<s3:ListAllMyBucketsResult xmlns:s3=\"urn:x\" xmlns:o=\"urn:o\">"
                               "<s3:Owner><o:ID>abc</o:ID></s3:Owner>"
                               "<Buckets><s3:Bucket><Name>one</Name></s3:Bucket>"
                               "<o:Bucket><Name>two</Name></o:Bucket></Buckets>"
                               "</s3:ListAllMyBucketsResult>";
    ol_xml *doc = parse_str(body);

    (void)state;
    assert_non_null(doc);
    assert_string_equal(xml_root_name(doc), "ListAllMyBucketsResult");
    assert_string_equal(xml_text(doc, "ListAllMyBucketsResult/Owner/ID", 0), "abc");
    assert_int_equal(xml_count(doc, "ListAllMyBucketsResult/Buckets/Bucket/Name"), 2);
    assert_string_equal(xml_text(doc, "ListAllMyBucketsResult/Buckets/Bucket/Name", 1), "two");
    assert_int_equal(xml_count(doc, "s3:ListAllMyBucketsResult/Owner"), 0);
    xml_free(doc);
}

static void counts_nothing_for_missing_or_odd_paths(void **state) {
    ol_xml *doc = parse_str("<A><B><C>x</C></B><B><C>y</C><C>z</C></B></A>");

    (void)state;
    assert_non_null(doc);
    assert_int_equal(xml_count(doc, "A"), 1);
    assert_int_equal(xml_count(doc, "A/B"), 2);
    assert_int_equal(xml_count(doc, "A/B/C"), 3);
    assert_string_equal(xml_text(doc, "A/B/C", 2), "z");
    assert_null(xml_text(doc, "A/B/C", 3));
    assert_null(xml_text(doc, "A/B/C", SIZE_MAX));
    assert_int_equal(xml_count(doc, "B/C"), 0);  /* the first segment is the root */
    assert_int_equal(xml_count(doc, "A/C"), 0);  /* no descendant search */
    assert_int_equal(xml_count(doc, "A/B/"), 0); /* empty segment */
    assert_int_equal(xml_count(doc, "A//B"), 0);
    assert_int_equal(xml_count(doc, ""), 0);
    assert_int_equal(xml_count(doc, "A/BB"), 0); /* whole names only */
    assert_int_equal(xml_count(doc, "A/b"), 0);  /* case matters */
    assert_int_equal(xml_count(doc, NULL), 0);
    assert_int_equal(xml_count(NULL, "A"), 0);
    assert_null(xml_text(NULL, "A", 0));
    assert_null(xml_root_name(NULL));
    xml_free(doc);
    xml_free(NULL);
}

static void returns_empty_text_for_an_empty_element_and_decodes_entities(void **state) {
    ol_xml *doc = parse_str("<R><E/><F></F><G>a &amp; b &lt;c&gt; &#x41;<![CDATA[<d>]]></G></R>");

    (void)state;
    assert_non_null(doc);
    assert_string_equal(xml_text(doc, "R/E", 0), "");
    assert_string_equal(xml_text(doc, "R/F", 0), "");
    assert_string_equal(xml_text(doc, "R/G", 0), "a & b <c> A<d>");
    xml_free(doc);
}

/* Texts arrive in pieces (around entities, around child elements) and grow past the first
 * block of a document: each element keeps exactly its own characters, in order. */
static void keeps_texts_that_arrive_in_pieces_and_outgrow_a_block(void **state) {
    enum { PARTS = 3000 };
    size_t cap = 64 + PARTS * 16;
    char *body = malloc(cap), *want = malloc(PARTS * 2 + 1);
    size_t n = (size_t)snprintf(body, cap, "<R>x<C>c1</C>y<L>");
    (void)state;
    assert_non_null(body);
    assert_non_null(want);
    for (int i = 0; i < PARTS; i++) {
        n += (size_t)snprintf(body + n, cap - n, "%c&amp;", 'a' + i % 26);
        want[2 * i] = (char)('a' + i % 26);
        want[2 * i + 1] = '&';
    }
    want[2 * PARTS] = '\0';
    n += (size_t)snprintf(body + n, cap - n, "</L>z<C>c2</C></R>");
    ol_xml *doc = xml_parse(body, n);
    assert_non_null(doc);
    assert_string_equal(xml_text(doc, "R", 0), "xyz");
    assert_string_equal(xml_text(doc, "R/C", 0), "c1");
    assert_string_equal(xml_text(doc, "R/C", 1), "c2");
    assert_string_equal(xml_text(doc, "R/L", 0), want);
    xml_free(doc);
    free(body);
    free(want);
}

static void parses_only_the_given_length(void **state) {
    static const char body[] = "<A>1</A><garbage";
    ol_xml *doc = xml_parse(body, 8);

    (void)state;
    assert_non_null(doc);
    assert_string_equal(xml_text(doc, "A", 0), "1");
    xml_free(doc);
    assert_null(xml_parse(body, sizeof(body) - 1));
}

static void returns_null_for_malformed_xml(void **state) {
    static const char *const bad[] = {
        "",
        "not xml at all",
        "<A>",
        "<A></B>",
        "<A><B></A></B>",
        "<A/><B/>",
        "<A>&undefined;</A>",
        "<p:A>unbound prefix</p:A>",
        "{\"json\": true}",
        "<A>\xff\xfe</A>",
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_null(parse_str(bad[i]));
    assert_null(xml_parse(NULL, 0));
}

static char *nested(size_t depth) {
    char *s = malloc(depth * 7 + 1);
    size_t i;
    char *p = s;

    assert_non_null(s);
    for (i = 0; i < depth; i++) {
        memcpy(p, "<a>", 3);
        p += 3;
    }
    for (i = 0; i < depth; i++) {
        memcpy(p, "</a>", 4);
        p += 4;
    }
    *p = '\0';
    return s;
}

static void limits_nesting_depth_to_64(void **state) {
    char *ok = nested(64);
    char *deep = nested(65);
    char *hostile = nested(100000);
    ol_xml *doc;

    (void)state;
    doc = parse_str(ok);
    assert_non_null(doc);
    assert_int_equal(xml_count(doc, "a/a/a"), 1);
    xml_free(doc);
    assert_null(parse_str(deep));
    assert_null(parse_str(hostile));
    free(ok);
    free(deep);
    free(hostile);
}

static void limits_the_number_of_elements(void **state) {
    size_t n = 200001;
    char *s = malloc(n * 4 + 16);
    char *p = s;
    size_t i;
    ol_xml *doc;

    (void)state;
    assert_non_null(s);
    p += sprintf(p, "<r>");
    for (i = 0; i < n - 2; i++) {
        memcpy(p, "<b/>", 4);
        p += 4;
    }
    strcpy(p, "</r>");
    doc = parse_str(s); /* root + 199999 = 200000 elements: the limit */
    assert_non_null(doc);
    assert_int_equal(xml_count(doc, "r/b"), n - 2);
    xml_free(doc);
    memcpy(p, "<b/></r>", 9);
    assert_null(parse_str(s));
    free(s);
}

static void refuses_any_doctype(void **state) {
    static const char laughs[] = "<?xml version=\"1.0\"?>\n"
                                 "<!DOCTYPE lolz [<!ENTITY lol \"lol\">"
                                 "<!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">"
                                 "<!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">]>"
                                 "<lolz>&lol3;</lolz>";
    static const char external[] = "<!DOCTYPE r SYSTEM \"file:///etc/passwd\"><r>x</r>";

    (void)state;
    assert_null(parse_str(laughs));
    assert_null(parse_str(external));
}

static void refuses_input_over_16_mib(void **state) {
    size_t len = (size_t)16 * 1024 * 1024 + 1;
    char *s = malloc(len);

    (void)state;
    assert_non_null(s);
    memset(s, ' ', len);
    memcpy(s, "<A>", 3);
    memcpy(s + len - 4, "</A>", 4);
    assert_null(xml_parse(s, len));
    free(s);
}

/* ---------------------------------------------------------------------------------- */

static int decode(const char *body, xml_aws_error *e) {
    return xml_aws_error_decode(body, strlen(body), e);
}

static void decodes_an_s3_error_with_region(void **state) {
    static const char body[] =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<Error><Code>AuthorizationHeaderMalformed</Code>"
        "<Message>The authorization header is malformed; the region 'us-east-1' is wrong; "
        "expecting 'eu-west-1'</Message><Region>eu-west-1</Region>"
        "<RequestId>4442587FB7D0A2F9</RequestId><HostId>abc=</HostId></Error>";
    xml_aws_error e;

    (void)state;
    assert_int_equal(decode(body, &e), 0);
    assert_string_equal(e.code, "AuthorizationHeaderMalformed");
    assert_non_null(strstr(e.message, "expecting 'eu-west-1'"));
    assert_string_equal(e.request_id, "4442587FB7D0A2F9");
    assert_string_equal(e.region, "eu-west-1");
    xml_aws_error_free(&e);
    assert_null(e.code);
}

static void decodes_an_s3_error_without_region(void **state) {
    static const char body[] = "<Error><Code>NoSuchBucket</Code>"
                               "<Message>The specified bucket does not exist</Message>"
                               "<BucketName>acme</BucketName><RequestId>R1</RequestId></Error>";
    xml_aws_error e;

    (void)state;
    assert_int_equal(decode(body, &e), 0);
    assert_string_equal(e.code, "NoSuchBucket");
    assert_string_equal(e.message, "The specified bucket does not exist");
    assert_string_equal(e.request_id, "R1");
    assert_null(e.region);
    xml_aws_error_free(&e);
}

static void decodes_an_iam_query_error_response(void **state) {
    static const char body[] =
        "<ErrorResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\">\n"
        "  <Error>\n"
        "    <Type>Sender</Type>\n"
        "    <Code>NoSuchEntity</Code>\n"
        "    <Message>The user with name acme-production cannot be found.</Message>\n"
        "  </Error>\n"
        "  <RequestId>8c2b3a4e-1111-2222-3333-444455556666</RequestId>\n"
        "</ErrorResponse>\n";
    xml_aws_error e;

    (void)state;
    assert_int_equal(decode(body, &e), 0);
    assert_string_equal(e.code, "NoSuchEntity");
    assert_string_equal(e.message, "The user with name acme-production cannot be found.");
    assert_string_equal(e.request_id, "8c2b3a4e-1111-2222-3333-444455556666");
    assert_null(e.region);
    xml_aws_error_free(&e);
}

static void decodes_an_sts_error_response(void **state) {
    static const char body[] =
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error>"
        "<Type>Sender</Type><Code>InvalidClientTokenId</Code>"
        "<Message>The security token included in the request is invalid.</Message></Error>"
        "<RequestId>abcd</RequestId></ErrorResponse>";
    xml_aws_error e;

    (void)state;
    assert_int_equal(decode(body, &e), 0);
    assert_string_equal(e.code, "InvalidClientTokenId");
    assert_string_equal(e.request_id, "abcd");
    xml_aws_error_free(&e);
}

static void decodes_an_ec2_style_errors_response(void **state) {
    static const char body[] = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                               "<Response><Errors><Error><Code>RequestLimitExceeded</Code>"
                               "<Message>Request limit exceeded.</Message></Error></Errors>"
                               "<RequestID>ea966190-f9aa-478e-9ede-example</RequestID></Response>";
    xml_aws_error e;

    (void)state;
    assert_int_equal(decode(body, &e), 0);
    assert_string_equal(e.code, "RequestLimitExceeded");
    assert_string_equal(e.message, "Request limit exceeded.");
    assert_string_equal(e.request_id, "ea966190-f9aa-478e-9ede-example");
    xml_aws_error_free(&e);
}

/* What moto answers when it enforces signatures and IAM policies (moto/core/exceptions.py). */
static void decodes_mixed_error_response_with_errors_list(void **state) {
    static const char body[] =
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
        "<ErrorResponse><Errors><Error><Code>AccessDenied</Code>"
        "<Message>User: arn:aws:iam::123456789012:user/acme is not authorized to perform: "
        "s3:PutObject</Message><Type>Sender</Type></Error></Errors></ErrorResponse>";
    xml_aws_error e;

    (void)state;
    assert_int_equal(decode(body, &e), 0);
    assert_string_equal(e.code, "AccessDenied");
    assert_non_null(strstr(e.message, "not authorized to perform: s3:PutObject"));
    assert_null(e.request_id);
    xml_aws_error_free(&e);
}

static void decodes_a_json_error_type_after_the_hash(void **state) {
    static const char body[] =
        "{\"__type\": \"com.amazonaws.secretsmanager#ResourceNotFoundException\","
        " \"message\": \"Secrets Manager can't find the specified secret.\"}";
    xml_aws_error e;

    (void)state;
    assert_int_equal(decode(body, &e), 0);
    assert_string_equal(e.code, "ResourceNotFoundException");
    assert_string_equal(e.message, "Secrets Manager can't find the specified secret.");
    assert_null(e.request_id);
    assert_null(e.region);
    xml_aws_error_free(&e);
}

static void decodes_a_json_error_type_before_the_colon(void **state) {
    static const char body[] =
        " \n{\"__type\": \"aws.protocoltests.restjson#FooError:http://internal.amazon.com/"
        "coral/com.amazon.coral.validate/\", \"Message\": \"capital M\"}";
    static const char plain[] = "{\"__type\": \"ThrottlingException\"}";
    xml_aws_error e;

    (void)state;
    assert_int_equal(decode(body, &e), 0);
    assert_string_equal(e.code, "FooError");
    assert_string_equal(e.message, "capital M");
    xml_aws_error_free(&e);
    assert_int_equal(decode(plain, &e), 0);
    assert_string_equal(e.code, "ThrottlingException");
    assert_null(e.message);
    xml_aws_error_free(&e);
}

static void reports_enoent_when_no_code_is_found(void **state) {
    static const char *const bodies[] = {
        "",
        "<html><body>502 Bad Gateway</body></html>",
        "<Error><Message>no code</Message></Error>",
        "<Error><Code></Code></Error>",
        "{\"__type\": \"com.amazonaws#\"}",
        "[1, 2]",
        "{broken json",
        "<Error><Code>Unclosed</Code>",
        "<GetCallerIdentityResponse><Code>x</Code></GetCallerIdentityResponse>",
    };
    xml_aws_error e;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        assert_int_equal(decode(bodies[i], &e), OL_ENOENT);
        assert_null(e.code);
        xml_aws_error_free(&e);
    }
    assert_int_equal(xml_aws_error_decode(NULL, 0, &e), OL_ENOENT);
    assert_null(e.code);
}

static void keeps_the_message_when_the_code_is_missing(void **state) {
    xml_aws_error e;

    (void)state;
    assert_int_equal(decode("{\"message\": \"Missing Authentication Token\"}", &e), OL_ENOENT);
    assert_null(e.code);
    assert_string_equal(e.message, "Missing Authentication Token");
    xml_aws_error_free(&e);
    assert_null(e.message);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(reads_iam_list_access_keys_by_path_and_index),
        cmocka_unit_test(reads_s3_get_bucket_encryption),
        cmocka_unit_test(reads_s3_get_public_access_block),
        cmocka_unit_test(ignores_the_default_namespace_in_sts_get_caller_identity),
        cmocka_unit_test(ignores_namespace_prefixes),
        cmocka_unit_test(counts_nothing_for_missing_or_odd_paths),
        cmocka_unit_test(returns_empty_text_for_an_empty_element_and_decodes_entities),
        cmocka_unit_test(keeps_texts_that_arrive_in_pieces_and_outgrow_a_block),
        cmocka_unit_test(parses_only_the_given_length),
        cmocka_unit_test(returns_null_for_malformed_xml),
        cmocka_unit_test(limits_nesting_depth_to_64),
        cmocka_unit_test(limits_the_number_of_elements),
        cmocka_unit_test(refuses_any_doctype),
        cmocka_unit_test(refuses_input_over_16_mib),
        cmocka_unit_test(decodes_an_s3_error_with_region),
        cmocka_unit_test(decodes_an_s3_error_without_region),
        cmocka_unit_test(decodes_an_iam_query_error_response),
        cmocka_unit_test(decodes_an_sts_error_response),
        cmocka_unit_test(decodes_an_ec2_style_errors_response),
        cmocka_unit_test(decodes_mixed_error_response_with_errors_list),
        cmocka_unit_test(decodes_a_json_error_type_after_the_hash),
        cmocka_unit_test(decodes_a_json_error_type_before_the_colon),
        cmocka_unit_test(reports_enoent_when_no_code_is_found),
        cmocka_unit_test(keeps_the_message_when_the_code_is_missing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
