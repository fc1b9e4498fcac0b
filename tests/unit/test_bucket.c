/* Unit tests for the bucket stage: request bodies, comparisons, option checks, and the
 * apply sequence driven step by step through a scripted host (real XML parsing from the
 * host's xml module; AWS answers given by each test). The plugin source is included so its
 * static functions can be tested. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../plugins/arn.c"
#include "../../plugins/bucket/bucket.c"

#include "xml.h"

/* ---------------------------------------------------------------------------------------
 * A scripted host: options from a table, one item, the last request kept for inspection,
 * and the test answers it with respond().
 * ------------------------------------------------------------------------------------- */
#define MAX_OPTS 16
#define MAX_BAG 8

typedef struct fake {
    const char *opt_names[MAX_OPTS];
    const char *opt_values[MAX_OPTS];
    size_t n_opts;
    const ol_kv *tags;
    size_t n_tags;
    int tags_set;
    const char *region;
    int send_result;
    /* last request */
    int pending;
    char method[8];
    char subresource[32];
    char *body;
    unsigned flags;
    size_t requests;
    ol_aws_cb cb;
    void *cb_arg;
    /* completion */
    int done_calls;
    ol_outcome outcome;
    char reason[512];
    char last_log[512];
    ol_log_level last_log_level;
    int logs;
    char *bag_keys[MAX_BAG];
    char *bag_values[MAX_BAG];
    size_t n_bag;
} fake;

static fake F;

static const char *fake_strerror(int code) {
    return code == OL_ENET ? "network error" : "some error";
}

static void fake_log(ol_stage *stage, const ol_item *item, ol_log_level level, const char *fmt,
                     ...) {
    (void)stage;
    (void)item;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(F.last_log, sizeof(F.last_log), fmt, ap);
    va_end(ap);
    F.last_log_level = level;
    F.logs++;
}

static const char *opt_find(const char *name) {
    for (size_t i = 0; i < F.n_opts; i++)
        if (strcmp(F.opt_names[i], name) == 0)
            return F.opt_values[i];
    return NULL;
}

/* Defaults as the host applies them from the option declarations. */
static const char *opt_or_default(const char *name) {
    const char *v = opt_find(name);
    if (v != NULL)
        return v;
    for (size_t i = 0; i < bucket_plugin.n_options; i++)
        if (strcmp(bucket_plugin.options[i].name, name) == 0)
            return bucket_plugin.options[i].default_value;
    return NULL;
}

static const char *fake_opt_string(ol_stage *s, const char *name) {
    (void)s;
    return opt_or_default(name);
}

static int fake_opt_bool(ol_stage *s, const char *name) {
    (void)s;
    const char *v = opt_or_default(name);
    return v != NULL && strcmp(v, "true") == 0;
}

static size_t fake_opt_map(ol_stage *s, const char *name, const ol_kv **out) {
    (void)s;
    (void)name;
    *out = F.tags;
    return F.n_tags;
}

static int fake_opt_is_set(ol_stage *s, const char *name) {
    (void)s;
    if (strcmp(name, "tags") == 0)
        return F.tags_set;
    return opt_find(name) != NULL;
}

static const char *fake_item_name(const ol_item *item) {
    (void)item;
    return "acme-production";
}

static const char *fake_item_region(const ol_item *item) {
    (void)item;
    return F.region;
}

static int fake_item_set(ol_item *item, const char *key, const char *value, unsigned flags) {
    (void)item;
    (void)flags;
    assert_true(F.n_bag < MAX_BAG);
    F.bag_keys[F.n_bag] = strdup(key);
    F.bag_values[F.n_bag] = strdup(value);
    F.n_bag++;
    return 0;
}

static const char *bag(const char *key) {
    for (size_t i = 0; i < F.n_bag; i++)
        if (strcmp(F.bag_keys[i], key) == 0)
            return F.bag_values[i];
    return NULL;
}

static int fake_aws_send(ol_item *item, const ol_aws_request *req, ol_aws_cb cb, void *arg) {
    (void)item;
    if (F.send_result < 0)
        return F.send_result;
    assert_false(F.pending);
    assert_string_equal(req->service, "s3");
    assert_string_equal(req->bucket, "acme-production");
    snprintf(F.method, sizeof(F.method), "%s", req->method);
    snprintf(F.subresource, sizeof(F.subresource), "%s",
             req->n_params > 0 ? req->params[0].name : "");
    free(F.body);
    F.body = req->body != NULL ? strndup(req->body, req->body_len) : NULL;
    F.flags = req->flags;
    F.cb = cb;
    F.cb_arg = arg;
    F.pending = 1;
    F.requests++;
    return 0;
}

static void fake_done(ol_stage *stage, ol_item *item, ol_outcome outcome, const char *reason) {
    (void)stage;
    (void)item;
    F.done_calls++;
    F.outcome = outcome;
    snprintf(F.reason, sizeof(F.reason), "%s", reason != NULL ? reason : "");
}

static const ol_host host = {
    .struct_size = sizeof(ol_host),
    .abi_major = OL_ABI_MAJOR,
    .abi_minor = OL_ABI_MINOR,
    .strerror = fake_strerror,
    .log = fake_log,
    .opt_string = fake_opt_string,
    .opt_bool = fake_opt_bool,
    .opt_map = fake_opt_map,
    .opt_is_set = fake_opt_is_set,
    .item_name = fake_item_name,
    .item_region = fake_item_region,
    .item_set = fake_item_set,
    .aws_send = fake_aws_send,
    .xml_parse = xml_parse,
    .xml_count = xml_count,
    .xml_text = xml_text,
    .xml_free = xml_free,
    .done = fake_done,
};

static int setup(void **state) {
    (void)state;
    memset(&F, 0, sizeof(F));
    F.region = "eu-north-1";
    return 0;
}

static int teardown(void **state) {
    (void)state;
    free(F.body);
    for (size_t i = 0; i < F.n_bag; i++) {
        free(F.bag_keys[i]);
        free(F.bag_values[i]);
    }
    return 0;
}

static void set_opt(const char *name, const char *value) {
    F.opt_names[F.n_opts] = name;
    F.opt_values[F.n_opts] = value;
    F.n_opts++;
}

/* Answer the pending request: code NULL is success, otherwise an AWS error. */
static void respond(long status, const char *code, const char *body) {
    assert_true(F.pending);
    F.pending = 0;
    ol_aws_response res = {0};
    res.result = code != NULL || status >= 300 ? OL_EAWS : 0;
    res.status = status;
    res.body = body != NULL ? body : "";
    res.body_len = strlen(res.body);
    res.error_code = code;
    res.error_message = code != NULL ? "AWS says no" : NULL;
    res.request_id = "REQ123";
    F.cb(F.cb_arg, &res);
}

static void expect_request(const char *method, const char *subresource) {
    assert_true(F.pending);
    assert_string_equal(F.method, method);
    assert_string_equal(F.subresource, subresource);
}

static void *start(void) {
    void *st = NULL;
    assert_int_equal(bucket_init(NULL, &host, &st), 0);
    assert_int_equal(bucket_apply(NULL, NULL, st), 0);
    expect_request("HEAD", "");
    return st;
}

#define PAB_ALL(v)                                                                                 \
    "<PublicAccessBlockConfiguration><BlockPublicAcls>" v "</BlockPublicAcls>"                     \
    "<IgnorePublicAcls>" v "</IgnorePublicAcls><BlockPublicPolicy>" v "</BlockPublicPolicy>"       \
    "<RestrictPublicBuckets>" v "</RestrictPublicBuckets></PublicAccessBlockConfiguration>"
#define ENC(alg)                                                                                   \
    "<ServerSideEncryptionConfiguration><Rule><ApplyServerSideEncryptionByDefault>"                \
    "<SSEAlgorithm>" alg "</SSEAlgorithm></ApplyServerSideEncryptionByDefault>"                    \
    "<BucketKeyEnabled>false</BucketKeyEnabled></Rule></ServerSideEncryptionConfiguration>"
#define VER(status) "<VersioningConfiguration><Status>" status "</Status></VersioningConfiguration>"
#define VER_NEVER "<VersioningConfiguration/>"
#define LOG_OFF "<BucketLoggingStatus/>"

/* Answer the five reads of an existing bucket that matches the default options. */
static void respond_matching_defaults(void) {
    expect_request("GET", "publicAccessBlock");
    respond(200, NULL, PAB_ALL("true"));
    expect_request("GET", "encryption");
    respond(200, NULL, ENC("AES256"));
    expect_request("GET", "versioning");
    respond(200, NULL, VER_NEVER);
    expect_request("GET", "logging");
    respond(200, NULL, LOG_OFF);
}

/* ---------------------------------------------------------------------------------------
 * Pure helpers
 * ------------------------------------------------------------------------------------- */

static void derives_the_arn_partition_from_the_region(void **state) {
    (void)state;
    assert_string_equal(arn_partition("eu-north-1"), "aws");
    assert_string_equal(arn_partition("us-east-1"), "aws");
    assert_string_equal(arn_partition("cn-north-1"), "aws-cn");
    assert_string_equal(arn_partition("cn-northwest-1"), "aws-cn");
    assert_string_equal(arn_partition("us-gov-west-1"), "aws-us-gov");
    assert_string_equal(arn_partition("us-iso-east-1"), "aws-iso");
    assert_string_equal(arn_partition("us-isob-east-1"), "aws-iso-b");
    assert_string_equal(arn_partition(NULL), "aws");
    char *arn = arn_s3_bucket("cn-north-1", "acme-production");
    assert_string_equal(arn, "arn:aws-cn:s3:::acme-production");
    free(arn);
}

static void omits_the_create_body_in_us_east_1_only(void **state) {
    (void)state;
    char *body = (char *)"x";
    assert_int_equal(body_create_bucket("us-east-1", &body), 0);
    assert_null(body);
    assert_int_equal(body_create_bucket("eu-north-1", &body), 0);
    assert_string_equal(body, "<CreateBucketConfiguration xmlns=\"" S3_XMLNS
                              "\"><LocationConstraint>eu-north-1</LocationConstraint>"
                              "</CreateBucketConfiguration>");
    free(body);
}

static void writes_configuration_bodies(void **state) {
    (void)state;
    char *b = body_public_access_block(0);
    assert_non_null(strstr(b, "<BlockPublicAcls>false</BlockPublicAcls><IgnorePublicAcls>false"
                              "</IgnorePublicAcls><BlockPublicPolicy>false</BlockPublicPolicy>"
                              "<RestrictPublicBuckets>false</RestrictPublicBuckets>"));
    free(b);
    b = body_encryption("aws:kms", "arn:aws:kms:eu-north-1:111122223333:key/abc");
    assert_non_null(strstr(b, "<SSEAlgorithm>aws:kms</SSEAlgorithm><KMSMasterKeyID>arn:aws:kms:"
                              "eu-north-1:111122223333:key/abc</KMSMasterKeyID>"));
    free(b);
    b = body_encryption("AES256", NULL);
    assert_null(strstr(b, "KMSMasterKeyID"));
    free(b);
    b = body_versioning("Suspended");
    assert_non_null(strstr(b, "<Status>Suspended</Status>"));
    free(b);
    b = body_logging(NULL, "x/");
    assert_string_equal(b, "<BucketLoggingStatus xmlns=\"" S3_XMLNS "\"></BucketLoggingStatus>");
    free(b);
    b = body_logging("logs", "acme-production/");
    assert_non_null(strstr(b, "<LoggingEnabled><TargetBucket>logs</TargetBucket><TargetPrefix>"
                              "acme-production/</TargetPrefix></LoggingEnabled>"));
    free(b);
}

static void escapes_xml_special_characters_in_tags(void **state) {
    (void)state;
    const ol_kv tags[] = {{"team", "R&D <core>"}, {"quote", "it's \"x\""}};
    char *b = body_tagging(tags, 2);
    assert_non_null(strstr(b, "<Tag><Key>team</Key><Value>R&amp;D &lt;core&gt;</Value></Tag>"));
    assert_non_null(strstr(b, "<Value>it&apos;s &quot;x&quot;</Value>"));
    /* What we write parses back to the original values. */
    ol_xml *doc = xml_parse(b, strlen(b));
    assert_non_null(doc);
    assert_string_equal(xml_text(doc, "Tagging/TagSet/Tag/Value", 0), "R&D <core>");
    assert_true(tags_match(&host, doc, tags, 2));
    xml_free(doc);
    free(b);
}

static void never_suspends_a_bucket_that_was_never_versioned(void **state) {
    (void)state;
    assert_null(versioning_change(NULL, 0));
    assert_null(versioning_change("Suspended", 0));
    assert_string_equal(versioning_change("Enabled", 0), "Suspended");
    assert_null(versioning_change("Enabled", 1));
    assert_string_equal(versioning_change(NULL, 1), "Enabled");
    assert_string_equal(versioning_change("Suspended", 1), "Enabled");
}

static void reads_versioning_status_under_either_root(void **state) {
    (void)state;
    const char *const bodies[] = {VER("Enabled"),
                                  "<GetBucketVersioningResponse xmlns=\"" S3_XMLNS "\">"
                                  "<Status>Enabled</Status></GetBucketVersioningResponse>"};
    for (size_t i = 0; i < 2; i++) {
        ol_xml *doc = xml_parse(bodies[i], strlen(bodies[i]));
        assert_string_equal(versioning_status(&host, doc), "Enabled");
        xml_free(doc);
    }
    ol_xml *doc = xml_parse(VER_NEVER, strlen(VER_NEVER));
    assert_null(versioning_status(&host, doc));
    xml_free(doc);
}

static void compares_tags_as_sets(void **state) {
    (void)state;
    const char *have = "<Tagging><TagSet><Tag><Key>b</Key><Value>2</Value></Tag>"
                       "<Tag><Key>a</Key><Value>1</Value></Tag></TagSet></Tagging>";
    ol_xml *doc = xml_parse(have, strlen(have));
    const ol_kv same[] = {{"a", "1"}, {"b", "2"}};
    const ol_kv other_value[] = {{"a", "1"}, {"b", "3"}};
    const ol_kv fewer[] = {{"a", "1"}};
    assert_true(tags_match(&host, doc, same, 2));
    assert_false(tags_match(&host, doc, other_value, 2));
    assert_false(tags_match(&host, doc, fewer, 1));
    assert_true(tags_match(&host, NULL, NULL, 0));
    assert_false(tags_match(&host, NULL, same, 2));
    xml_free(doc);
}

/* ---------------------------------------------------------------------------------------
 * Options
 * ------------------------------------------------------------------------------------- */

static void expect_init_rejected(const char *fragment) {
    void *st = NULL;
    assert_int_equal(bucket_init(NULL, &host, &st), OL_EINVAL);
    assert_null(st);
    assert_int_equal(F.last_log_level, OL_LOG_ERROR);
    if (strstr(F.last_log, fragment) == NULL)
        fail_msg("log '%s' lacks '%s'", F.last_log, fragment);
}

static void rejects_unsupported_encryption(void **state) {
    (void)state;
    set_opt("encryption", "none");
    expect_init_rejected("'none' is not supported; use \"AES256\" (SSE-S3) or \"aws:kms\"");
}

static void rejects_kms_key_without_aws_kms(void **state) {
    (void)state;
    set_opt("kms_key_id", "abc");
    expect_init_rejected("kms_key_id is set but encryption is 'AES256'");
}

static void rejects_logging_prefix_without_target_bucket(void **state) {
    (void)state;
    set_opt("logging_target_prefix", "logs/");
    expect_init_rejected("logging_target_bucket is not");
}

static void rejects_reserved_and_oversized_tags(void **state) {
    (void)state;
    const ol_kv reserved[] = {{"aws:owner", "x"}};
    F.tags = reserved;
    F.n_tags = 1;
    F.tags_set = 1;
    expect_init_rejected("key 'aws:owner' uses the prefix 'aws:'");

    static ol_kv many[51];
    for (size_t i = 0; i < 51; i++)
        many[i] = (ol_kv){"k", "v"};
    F.tags = many;
    F.n_tags = 51;
    expect_init_rejected("51 tags given; S3 allows at most 50");

    char longv[300];
    memset(longv, 'v', sizeof(longv) - 1);
    longv[sizeof(longv) - 1] = '\0';
    const ol_kv big[] = {{"k", longv}};
    F.tags = big;
    F.n_tags = 1;
    expect_init_rejected("the value of 'k' is 299 bytes");
}

static void warns_once_when_public_access_is_allowed(void **state) {
    (void)state;
    set_opt("block_public_access", "false");
    void *st = NULL;
    assert_int_equal(bucket_init(NULL, &host, &st), 0);
    assert_int_equal(F.logs, 1);
    assert_int_equal(F.last_log_level, OL_LOG_WARN);
    assert_non_null(strstr(F.last_log, "account-level Block Public Access"));
    bucket_fini(st);
}

/* ---------------------------------------------------------------------------------------
 * Apply
 * ------------------------------------------------------------------------------------- */

static void creates_a_missing_bucket_with_its_region_and_settings(void **state) {
    (void)state;
    void *st = start();
    respond(404, "NotFound", NULL);
    expect_request("PUT", "");
    assert_non_null(strstr(F.body, "<LocationConstraint>eu-north-1</LocationConstraint>"));
    respond(200, NULL, NULL);
    expect_request("GET", "publicAccessBlock");
    respond(404, "NoSuchPublicAccessBlockConfiguration", NULL);
    expect_request("PUT", "publicAccessBlock");
    assert_true(F.flags & OL_AWS_CONTENT_MD5);
    assert_non_null(strstr(F.body, "<BlockPublicAcls>true</BlockPublicAcls>"));
    respond(200, NULL, NULL);
    expect_request("GET", "encryption");
    respond(404, "ServerSideEncryptionConfigurationNotFoundError", NULL);
    expect_request("PUT", "encryption");
    assert_true(F.flags & OL_AWS_CONTENT_MD5);
    assert_non_null(strstr(F.body, "<SSEAlgorithm>AES256</SSEAlgorithm>"));
    respond(200, NULL, NULL);
    expect_request("GET", "versioning");
    respond(200, NULL, VER_NEVER);
    expect_request("GET", "logging");
    respond(200, NULL, LOG_OFF);
    assert_int_equal(F.done_calls, 1);
    assert_int_equal(F.outcome, OL_OUTCOME_CREATED);
    assert_false(F.pending);
    assert_string_equal(bag(OL_KEY_BUCKET_NAME), "acme-production");
    assert_string_equal(bag(OL_KEY_BUCKET_ARN), "arn:aws:s3:::acme-production");
    bucket_fini(st);
}

static void sends_no_create_body_in_us_east_1(void **state) {
    (void)state;
    F.region = "us-east-1";
    void *st = start();
    respond(404, NULL, NULL);
    expect_request("PUT", "");
    assert_null(F.body);
    respond(200, NULL, NULL);
    respond_matching_defaults();
    assert_int_equal(F.outcome, OL_OUTCOME_CREATED);
    bucket_fini(st);
}

static void reports_a_matching_bucket_unchanged_without_writing(void **state) {
    (void)state;
    void *st = start();
    respond(200, NULL, NULL);
    respond_matching_defaults();
    assert_int_equal(F.done_calls, 1);
    assert_int_equal(F.outcome, OL_OUTCOME_UNCHANGED);
    assert_int_equal(F.requests, 5);
    assert_string_equal(bag(OL_KEY_BUCKET_ARN), "arn:aws:s3:::acme-production");
    bucket_fini(st);
}

static void suspends_enabled_versioning_with_a_warning(void **state) {
    (void)state;
    void *st = start();
    respond(200, NULL, NULL);
    respond(200, NULL, PAB_ALL("true"));
    respond(200, NULL, ENC("AES256"));
    expect_request("GET", "versioning");
    respond(200, NULL, VER("Enabled"));
    expect_request("PUT", "versioning");
    assert_non_null(strstr(F.body, "<Status>Suspended</Status>"));
    assert_int_equal(F.last_log_level, OL_LOG_WARN);
    assert_non_null(strstr(F.last_log, "suspending"));
    respond(200, NULL, NULL);
    respond(200, NULL, LOG_OFF);
    assert_int_equal(F.outcome, OL_OUTCOME_UPDATED);
    bucket_fini(st);
}

static void turns_public_access_block_off_when_asked(void **state) {
    (void)state;
    set_opt("block_public_access", "false");
    void *st = start();
    respond(200, NULL, NULL);
    expect_request("GET", "publicAccessBlock");
    respond(200, NULL, PAB_ALL("true"));
    expect_request("PUT", "publicAccessBlock");
    assert_non_null(strstr(F.body, "<RestrictPublicBuckets>false</RestrictPublicBuckets>"));
    respond(200, NULL, NULL);
    respond(200, NULL, ENC("AES256"));
    respond(200, NULL, VER_NEVER);
    respond(200, NULL, LOG_OFF);
    assert_int_equal(F.outcome, OL_OUTCOME_UPDATED);
    bucket_fini(st);
}

static void treats_a_missing_public_access_block_as_unblocked(void **state) {
    (void)state;
    set_opt("block_public_access", "false");
    void *st = start();
    respond(200, NULL, NULL);
    respond(404, "NoSuchPublicAccessBlockConfiguration", NULL);
    expect_request("GET", "encryption");
    respond(200, NULL, ENC("AES256"));
    respond(200, NULL, VER_NEVER);
    respond(200, NULL, LOG_OFF);
    assert_int_equal(F.outcome, OL_OUTCOME_UNCHANGED);
    bucket_fini(st);
}

static void switches_encryption_to_kms_with_the_given_key(void **state) {
    (void)state;
    set_opt("encryption", "aws:kms");
    set_opt("kms_key_id", "key-1");
    void *st = start();
    respond(200, NULL, NULL);
    respond(200, NULL, PAB_ALL("true"));
    respond(200, NULL, ENC("AES256"));
    expect_request("PUT", "encryption");
    assert_non_null(strstr(F.body, "<KMSMasterKeyID>key-1</KMSMasterKeyID>"));
    respond(200, NULL, NULL);
    respond(200, NULL, VER_NEVER);
    respond(200, NULL, LOG_OFF);
    assert_int_equal(F.outcome, OL_OUTCOME_UPDATED);
    bucket_fini(st);
}

static void enables_logging_with_the_default_prefix_and_disables_it_when_unset(void **state) {
    (void)state;
    set_opt("logging_target_bucket", "central-logs");
    void *st = start();
    respond(200, NULL, NULL);
    respond(200, NULL, PAB_ALL("true"));
    respond(200, NULL, ENC("AES256"));
    respond(200, NULL, VER_NEVER);
    expect_request("GET", "logging");
    respond(200, NULL, LOG_OFF);
    expect_request("PUT", "logging");
    assert_non_null(strstr(F.body, "<TargetBucket>central-logs</TargetBucket>"
                                   "<TargetPrefix>acme-production/</TargetPrefix>"));
    respond(200, NULL, NULL);
    assert_int_equal(F.outcome, OL_OUTCOME_UPDATED);
    bucket_fini(st);

    teardown(NULL);
    setup(NULL);
    st = start();
    respond(200, NULL, NULL);
    respond(200, NULL, PAB_ALL("true"));
    respond(200, NULL, ENC("AES256"));
    respond(200, NULL, VER_NEVER);
    respond(200, NULL,
            "<BucketLoggingStatus><LoggingEnabled><TargetBucket>old</TargetBucket>"
            "<TargetPrefix>p/</TargetPrefix></LoggingEnabled></BucketLoggingStatus>");
    expect_request("PUT", "logging");
    assert_null(strstr(F.body, "LoggingEnabled"));
    respond(200, NULL, NULL);
    assert_int_equal(F.outcome, OL_OUTCOME_UPDATED);
    bucket_fini(st);
}

static void converges_tags_only_when_the_option_is_set(void **state) {
    (void)state;
    const ol_kv tags[] = {{"team", "web"}, {"cost", "42"}};
    F.tags = tags;
    F.n_tags = 2;
    F.tags_set = 1;
    void *st = start();
    respond(200, NULL, NULL);
    respond_matching_defaults();
    expect_request("GET", "tagging");
    respond(404, "NoSuchTagSet", NULL);
    expect_request("PUT", "tagging");
    assert_true(F.flags & OL_AWS_CONTENT_MD5);
    assert_non_null(strstr(F.body, "<Key>cost</Key><Value>42</Value>"));
    respond(200, NULL, NULL);
    assert_int_equal(F.outcome, OL_OUTCOME_UPDATED);
    bucket_fini(st);

    /* Same tags in another order: unchanged. */
    teardown(NULL);
    setup(NULL);
    F.tags = tags;
    F.n_tags = 2;
    F.tags_set = 1;
    st = start();
    respond(200, NULL, NULL);
    respond_matching_defaults();
    respond(200, NULL,
            "<Tagging><TagSet><Tag><Key>cost</Key><Value>42</Value></Tag>"
            "<Tag><Key>team</Key><Value>web</Value></Tag></TagSet></Tagging>");
    assert_int_equal(F.outcome, OL_OUTCOME_UNCHANGED);
    bucket_fini(st);

    /* An empty set removes the tags with DeleteBucketTagging. */
    teardown(NULL);
    setup(NULL);
    F.tags_set = 1;
    st = start();
    respond(200, NULL, NULL);
    respond_matching_defaults();
    respond(200, NULL,
            "<Tagging><TagSet><Tag><Key>a</Key><Value>b</Value></Tag></TagSet>"
            "</Tagging>");
    expect_request("DELETE", "tagging");
    respond(204, NULL, NULL);
    assert_int_equal(F.outcome, OL_OUTCOME_UPDATED);
    bucket_fini(st);
}

static void converges_a_bucket_already_owned_by_you(void **state) {
    (void)state;
    void *st = start();
    respond(403, NULL, NULL);
    expect_request("PUT", "");
    respond(409, "BucketAlreadyOwnedByYou", NULL);
    respond_matching_defaults();
    assert_int_equal(F.outcome, OL_OUTCOME_UNCHANGED);
    bucket_fini(st);
}

static void fails_when_another_account_owns_the_name(void **state) {
    (void)state;
    void *st = start();
    respond(403, NULL, NULL);
    respond(409, "BucketAlreadyExists", NULL);
    assert_int_equal(F.done_calls, 1);
    assert_int_equal(F.outcome, OL_OUTCOME_FAILED);
    assert_string_equal(F.reason,
                        "CreateBucket: bucket name 'acme-production' is taken by another AWS "
                        "account; S3 names are global: choose another product name "
                        "(BucketAlreadyExists, HTTP 409, request id REQ123)");
    assert_null(bag(OL_KEY_BUCKET_ARN));
    bucket_fini(st);
}

static void reports_the_step_code_status_and_request_id_on_failure(void **state) {
    (void)state;
    void *st = start();
    respond(200, NULL, NULL);
    respond(200, NULL, PAB_ALL("true"));
    respond(403, "AccessDenied", NULL);
    assert_int_equal(F.outcome, OL_OUTCOME_FAILED);
    assert_string_equal(F.reason, "GetBucketEncryption: AccessDenied AWS says no (HTTP 403, "
                                  "request id REQ123)");
    bucket_fini(st);
}

static void reports_transport_failures_with_the_host_text(void **state) {
    (void)state;
    void *st = start();
    F.pending = 0;
    ol_aws_response res = {.result = OL_ENET, .error_message = "connection refused"};
    F.cb(F.cb_arg, &res);
    assert_int_equal(F.outcome, OL_OUTCOME_FAILED);
    assert_string_equal(F.reason, "HeadBucket: network error: connection refused");
    bucket_fini(st);
}

static void fails_apply_synchronously_without_calling_done(void **state) {
    (void)state;
    void *st = NULL;
    assert_int_equal(bucket_init(NULL, &host, &st), 0);
    F.send_result = OL_ECANCELED;
    assert_int_equal(bucket_apply(NULL, NULL, st), OL_ECANCELED);
    assert_int_equal(F.done_calls, 0);
    bucket_fini(st);
}

static void fails_once_when_a_later_send_is_refused(void **state) {
    (void)state;
    void *st = start();
    F.send_result = OL_ECANCELED;
    respond(200, NULL, NULL);
    assert_int_equal(F.done_calls, 1);
    assert_int_equal(F.outcome, OL_OUTCOME_FAILED);
    assert_string_equal(F.reason, "GetPublicAccessBlock: some error");
    bucket_fini(st);
}

static void exports_a_descriptor_matching_the_abi(void **state) {
    (void)state;
    const ol_plugin *p = opsline_plugin();
    assert_int_equal(p->abi_major, OL_ABI_MAJOR);
    assert_int_equal(p->struct_size, sizeof(ol_plugin));
    assert_string_equal(p->name, "bucket");
    assert_null(p->needs);
    assert_int_equal(p->n_options, 7);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(derives_the_arn_partition_from_the_region),
        T(omits_the_create_body_in_us_east_1_only),
        T(writes_configuration_bodies),
        T(escapes_xml_special_characters_in_tags),
        T(never_suspends_a_bucket_that_was_never_versioned),
        T(reads_versioning_status_under_either_root),
        T(compares_tags_as_sets),
        T(rejects_unsupported_encryption),
        T(rejects_kms_key_without_aws_kms),
        T(rejects_logging_prefix_without_target_bucket),
        T(rejects_reserved_and_oversized_tags),
        T(warns_once_when_public_access_is_allowed),
        T(creates_a_missing_bucket_with_its_region_and_settings),
        T(sends_no_create_body_in_us_east_1),
        T(reports_a_matching_bucket_unchanged_without_writing),
        T(suspends_enabled_versioning_with_a_warning),
        T(turns_public_access_block_off_when_asked),
        T(treats_a_missing_public_access_block_as_unblocked),
        T(switches_encryption_to_kms_with_the_given_key),
        T(enables_logging_with_the_default_prefix_and_disables_it_when_unset),
        T(converges_tags_only_when_the_option_is_set),
        T(converges_a_bucket_already_owned_by_you),
        T(fails_when_another_account_owns_the_name),
        T(reports_the_step_code_status_and_request_id_on_failure),
        T(reports_transport_failures_with_the_host_text),
        T(fails_apply_synchronously_without_calling_done),
        T(fails_once_when_a_later_send_is_refused),
        T(exports_a_descriptor_matching_the_abi),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
