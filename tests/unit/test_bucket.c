/* Unit tests for the bucket stage: request bodies, comparisons, option checks, and the
 * apply sequence driven step by step through the shared fake host (tests/unit/fake_host.h:
 * the host's real options, bag and XML modules; AWS answers given by each test). The
 * plugin source is included so its static functions can be tested. */
#include "fake_host.h"

#include "../../plugins/arn.c"
#include "../../plugins/owner.c"
#include "../../plugins/bucket/bucket.c"
#include "../../plugins/bucket/bucket_lifecycle.c"
#include "../../plugins/lifecycle.c"

/* Every request of this stage is an S3 request on the item's bucket. */
static void check_s3_request(const ol_aws_request *req) {
    assert_string_equal(req->service, "s3");
    assert_string_equal(req->bucket, "acme-production");
}

static int setup(void **state) {
    (void)state;
    fake_start(&bucket_plugin);
    fake_use_journal();
    FH.on_send = check_s3_request;
    return 0;
}

static int teardown(void **state) {
    (void)state;
    fake_stop();
    return 0;
}

static void set_opt(const char *name, const char *value) {
    fake_set_opt(name, value);
}

/* Answer the pending request: code NULL is success, otherwise an AWS error. */
static void respond(long status, const char *code, const char *body) {
    ol_aws_response res = {.struct_size = sizeof(ol_aws_response)};
    res.result = code != NULL || status >= 300 ? OL_EAWS : 0;
    res.status = status;
    res.body = body != NULL ? body : "";
    res.body_len = strlen(res.body);
    res.error_code = code;
    res.error_message = code != NULL ? "AWS says no" : NULL;
    res.request_id = "REQ123";
    fake_answer(&res);
}

static void expect_request(const char *method, const char *subresource) {
    assert_true(FH.pending);
    assert_string_equal(FH.req.method, method);
    assert_string_equal(FH.req.n_params > 0 ? FH.req.params[0].name : "", subresource);
}

/* A bucket the journal does not know: apply sends CreateBucket and nothing else. */
static void *start_new(void) {
    void *st = NULL;
    assert_int_equal(bucket_init(NULL, &FH.api, &st), 0);
    assert_int_equal(bucket_apply(NULL, NULL, st), 0);
    expect_request("PUT", "");
    assert_int_equal(fake_in_flight(), 1);
    return st;
}

/* A bucket an earlier run created: apply sends its five reads at once. */
static void *start_known(void) {
    void *st = NULL;
    assert_int_equal(journal_append(FH.journal, FH.name, "bucket", "bucket_created", FH.name, NULL),
                     0);
    assert_int_equal(bucket_init(NULL, &FH.api, &st), 0);
    assert_int_equal(bucket_apply(NULL, NULL, st), 0);
    assert_int_equal(fake_in_flight(), 5);
    for (size_t i = 0; i < fake_in_flight(); i++)
        assert_string_equal(i == 0 ? FH.req.method : FH.more[i - 1].method, "GET");
    return st;
}

/* Answer the pending request method ?subresource (any order of sending). */
static void answer(const char *method, const char *subresource, long status, const char *code,
                   const char *body) {
    fake_pick(method, subresource, NULL);
    respond(status, code, body);
}

/* Answer a pending PUT with 200 after checking its body holds fragment and its MD5 flag. */
static void answer_expecting(const char *method, const char *subresource, const char *fragment) {
    fake_pick(method, subresource, NULL);
    assert_true(FH.req.flags & OL_AWS_CONTENT_MD5);
    if (strstr(FH.req.body, fragment) == NULL)
        fail_msg("%s ?%s body '%s' lacks '%s'", method, subresource, FH.req.body, fragment);
    respond(200, NULL, NULL);
}

/* Answer every pending request with 200 and no body. */
static void answer_all_ok(void) {
    while (FH.pending) {
        assert_string_equal(FH.req.method, "PUT");
        respond(200, NULL, NULL);
    }
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
#define OWNED_TAGS                                                                                 \
    "<Tag><Key>managed-by</Key><Value>opsline</Value></Tag>"                                       \
    "<Tag><Key>product</Key><Value>acme</Value></Tag>"                                             \
    "<Tag><Key>environment</Key><Value>production</Value></Tag>"
#define TAGS_OWNED "<Tagging><TagSet>" OWNED_TAGS "</TagSet></Tagging>"

/* Answer the reads still pending as a bucket matching the default options would. */
static void answer_matching_reads(void) {
    static const char *const bodies[N_SETTINGS] = {PAB_ALL("true"), ENC("AES256"), VER_NEVER,
                                                   LOG_OFF, TAGS_OWNED};
    while (FH.pending && strcmp(FH.req.method, "GET") == 0) {
        const char *sub = FH.req.params[0].name;
        size_t s = 0;
        while (s < N_SETTINGS && strcmp(settings[s].subresource, sub) != 0)
            s++;
        assert_true(s < N_SETTINGS);
        respond(200, NULL, bodies[s]);
    }
}

static void respond_matching_defaults(void) {
    assert_int_equal(fake_in_flight(), 5);
    answer_matching_reads();
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
    char *arn = arn_s3_bucket(&FH.api, "cn-north-1", "acme-production");
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
    assert_true(tags_match(&FH.api, doc, tags, 2));
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
        assert_string_equal(versioning_status(&FH.api, doc), "Enabled");
        xml_free(doc);
    }
    ol_xml *doc = xml_parse(VER_NEVER, strlen(VER_NEVER));
    assert_null(versioning_status(&FH.api, doc));
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
    assert_true(tags_match(&FH.api, doc, same, 2));
    assert_false(tags_match(&FH.api, doc, other_value, 2));
    assert_false(tags_match(&FH.api, doc, fewer, 1));
    assert_true(tags_match(&FH.api, NULL, NULL, 0));
    assert_false(tags_match(&FH.api, NULL, same, 2));
    xml_free(doc);
}

/* ---------------------------------------------------------------------------------------
 * Options
 * ------------------------------------------------------------------------------------- */

static void expect_init_rejected(const char *fragment) {
    void *st = NULL;
    assert_int_equal(bucket_init(NULL, &FH.api, &st), OL_ECONFIG);
    assert_null(st);
    assert_int_equal(FH.last_log_level, OL_LOG_ERROR);
    if (strstr(FH.last_log, fragment) == NULL)
        fail_msg("log '%s' lacks '%s'", FH.last_log, fragment);
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
    set_opt("tags", "aws:owner=x");
    expect_init_rejected("key 'aws:owner' uses the prefix 'aws:'");

    set_opt("tags", "managed-by=me");
    expect_init_rejected("key 'managed-by' is set by opsline itself");

    char many[48 * 8] = "";
    for (size_t i = 0; i < 48; i++)
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "%sk%zu=v", i ? "," : "", i);
    set_opt("tags", many);
    expect_init_rejected("48 tags given; S3 allows at most 50 per bucket and opsline adds its 3");

    char big[2 + 300] = "k=";
    memset(big + 2, 'v', 299);
    big[2 + 299] = '\0';
    set_opt("tags", big);
    expect_init_rejected("the value of 'k' is 299 bytes");
}

static void warns_once_when_public_access_is_allowed(void **state) {
    (void)state;
    set_opt("block_public_access", "false");
    void *st = NULL;
    assert_int_equal(bucket_init(NULL, &FH.api, &st), 0);
    assert_int_equal(FH.n_logs, 1);
    assert_int_equal(FH.last_log_level, OL_LOG_WARN);
    assert_non_null(strstr(FH.last_log, "account-level Block Public Access"));
    bucket_fini(st);
}

/* ---------------------------------------------------------------------------------------
 * bucket_diff
 * ------------------------------------------------------------------------------------- */

static bucket_want default_want(void) {
    static ol_kv owner[OWNER_N_TAGS];
    owner_tags(&FH.api, NULL, owner);
    bucket_want w = {.block_public = 1, .encryption = "AES256", .log_prefix = NULL};
    w.tags = owner;
    w.n_tags = OWNER_N_TAGS;
    return w;
}

static void diff_of_a_new_bucket_writes_each_runbook_setting_once(void **state) {
    (void)state;
    bucket_want w = default_want();
    bucket_observed o;
    observed_new(&o);
    bucket_change c;
    assert_int_equal(bucket_diff(&FH.api, &w, &o, &c), 0);
    assert_int_equal(c.writes, (1u << SET_PAB) | (1u << SET_ENC) | (1u << SET_TAGS));
    assert_int_equal(c.n_tags, OWNER_N_TAGS);
    free(c.tags);
    w.versioning = 1;
    w.log_bucket = "logs";
    w.log_prefix = (char *)"acme-production/";
    assert_int_equal(bucket_diff(&FH.api, &w, &o, &c), 0);
    assert_int_equal(c.writes, (1u << N_SETTINGS) - 1);
    assert_string_equal(c.versioning, "Enabled");
    free(c.tags);
}

static void diff_keeps_tags_set_by_hand_unless_the_tags_option_is_set(void **state) {
    (void)state;
    bucket_want w = default_want();
    const char *have = "<Tagging><TagSet><Tag><Key>team</Key><Value>web</Value></Tag>"
                       "<Tag><Key>product</Key><Value>old</Value></Tag></TagSet></Tagging>";
    bucket_observed o = {0};
    o.state[SET_PAB] = o.state[SET_ENC] = o.state[SET_VER] = o.state[SET_LOG] = SEEN_ABSENT;
    o.state[SET_TAGS] = SEEN_PRESENT;
    o.doc[SET_TAGS] = xml_parse(have, strlen(have));
    bucket_change c;
    assert_int_equal(bucket_diff(&FH.api, &w, &o, &c), 0);
    assert_int_equal(c.writes, (1u << SET_PAB) | (1u << SET_ENC) | (1u << SET_TAGS));
    assert_int_equal(c.n_tags, OWNER_N_TAGS + 1); /* product corrected, team kept */
    assert_string_equal(c.tags[1].value, "acme");
    assert_string_equal(c.tags[OWNER_N_TAGS].name, "team");
    free(c.tags);
    w.tags_exact = 1;
    assert_int_equal(bucket_diff(&FH.api, &w, &o, &c), 0);
    assert_int_equal(c.n_tags, OWNER_N_TAGS); /* exactly the wanted set */
    free(c.tags);
    xml_free(o.doc[SET_TAGS]);
}

/* ---------------------------------------------------------------------------------------
 * Apply
 * ------------------------------------------------------------------------------------- */

static void creates_a_new_bucket_then_writes_only_in_parallel(void **state) {
    (void)state;
    void *st = start_new();
    assert_non_null(strstr(FH.req.body, "<LocationConstraint>eu-north-1</LocationConstraint>"));
    respond(200, NULL, NULL);
    /* Nothing of a new bucket is read: the three writes are in flight together. */
    assert_int_equal(fake_in_flight(), 3);
    answer_expecting("PUT", "publicAccessBlock", "<BlockPublicAcls>true</BlockPublicAcls>");
    answer_expecting("PUT", "tagging", "<Key>managed-by</Key><Value>opsline</Value>");
    assert_int_equal(FH.done_calls, 0);
    answer_expecting("PUT", "encryption", "<SSEAlgorithm>AES256</SSEAlgorithm>");
    assert_int_equal(FH.done_calls, 1);
    assert_int_equal(FH.outcome, OL_OUTCOME_CREATED);
    assert_int_equal(FH.requests, 4);
    assert_false(FH.pending);
    assert_string_equal(fake_bag(OL_KEY_BUCKET_NAME), "acme-production");
    assert_string_equal(fake_bag(OL_KEY_BUCKET_ARN), "arn:aws:s3:::acme-production");
    assert_int_equal(journal_count(FH.journal, FH.name, "bucket_created", FH.name), 1);
    bucket_fini(st);
}

static void tags_a_new_bucket_with_its_owner_and_the_tags_option(void **state) {
    (void)state;
    set_opt("tags", "team=web");
    void *st = start_new();
    respond(200, NULL, NULL);
    fake_pick("PUT", "tagging", NULL);
    assert_true(FH.req.flags & OL_AWS_CONTENT_MD5);
    assert_non_null(strstr(FH.req.body, "<Key>product</Key><Value>acme</Value>"));
    assert_non_null(strstr(FH.req.body, "<Key>environment</Key><Value>production</Value>"));
    assert_non_null(strstr(FH.req.body, "<Key>team</Key><Value>web</Value>"));
    answer_all_ok();
    assert_int_equal(FH.outcome, OL_OUTCOME_CREATED);
    bucket_fini(st);
}

static void writes_versioning_and_logging_of_a_new_bucket_only_when_asked(void **state) {
    (void)state;
    set_opt("versioning", "true");
    set_opt("logging_target_bucket", "central-logs");
    void *st = start_new();
    respond(200, NULL, NULL);
    assert_int_equal(fake_in_flight(), 5);
    answer_expecting("PUT", "versioning", "<Status>Enabled</Status>");
    answer_expecting("PUT", "logging",
                     "<TargetBucket>central-logs</TargetBucket><TargetPrefix>acme-production/"
                     "</TargetPrefix>");
    answer_all_ok();
    assert_int_equal(FH.outcome, OL_OUTCOME_CREATED);
    assert_int_equal(FH.requests, 6);
    bucket_fini(st);
}

static void asks_head_bucket_first_in_us_east_1_and_sends_no_create_body(void **state) {
    (void)state;
    FH.region = "us-east-1";
    void *st = NULL;
    assert_int_equal(bucket_init(NULL, &FH.api, &st), 0);
    assert_int_equal(bucket_apply(NULL, NULL, st), 0);
    expect_request("HEAD", "");
    respond(404, NULL, NULL);
    expect_request("PUT", "");
    assert_null(FH.req.body);
    respond(200, NULL, NULL);
    assert_int_equal(fake_in_flight(), 3);
    answer_all_ok();
    assert_int_equal(FH.outcome, OL_OUTCOME_CREATED);
    bucket_fini(st);

    /* HeadBucket finds it: observed, not created (CreateBucket would answer 200 there). */
    teardown(NULL);
    setup(NULL);
    FH.region = "us-east-1";
    assert_int_equal(bucket_init(NULL, &FH.api, &st), 0);
    assert_int_equal(bucket_apply(NULL, NULL, st), 0);
    respond(200, NULL, NULL);
    respond_matching_defaults();
    assert_int_equal(FH.outcome, OL_OUTCOME_UNCHANGED);
    assert_int_equal(FH.requests, 6);
    assert_int_equal(journal_count(FH.journal, FH.name, "bucket_seen", FH.name), 1);
    bucket_fini(st);
}

static void reports_a_matching_bucket_unchanged_with_reads_only(void **state) {
    (void)state;
    void *st = start_known();
    respond_matching_defaults();
    assert_int_equal(FH.done_calls, 1);
    assert_int_equal(FH.outcome, OL_OUTCOME_UNCHANGED);
    assert_int_equal(FH.requests, 5);
    assert_string_equal(fake_bag(OL_KEY_BUCKET_ARN), "arn:aws:s3:::acme-production");
    bucket_fini(st);
}

static void fixes_a_public_access_block_turned_off_with_one_write(void **state) {
    (void)state;
    void *st = start_known();
    answer("GET", "publicAccessBlock", 200, NULL, PAB_ALL("false"));
    answer("GET", "encryption", 200, NULL, ENC("AES256"));
    answer("GET", "versioning", 200, NULL, VER_NEVER);
    answer("GET", "logging", 200, NULL, LOG_OFF);
    answer("GET", "tagging", 200, NULL, TAGS_OWNED);
    assert_int_equal(fake_in_flight(), 1);
    answer_expecting("PUT", "publicAccessBlock", "<BlockPublicAcls>true</BlockPublicAcls>");
    assert_int_equal(FH.outcome, OL_OUTCOME_UPDATED);
    assert_string_equal(FH.reason, "changed: public access block");
    assert_int_equal(FH.requests, 6);
    bucket_fini(st);
}

static void suspends_enabled_versioning_with_a_warning(void **state) {
    (void)state;
    void *st = start_known();
    answer("GET", "versioning", 200, NULL, VER("Enabled"));
    answer_matching_reads();
    fake_pick("PUT", "versioning", NULL);
    assert_non_null(strstr(FH.req.body, "<Status>Suspended</Status>"));
    assert_int_equal(FH.last_log_level, OL_LOG_WARN);
    assert_non_null(strstr(FH.last_log, "suspending"));
    respond(200, NULL, NULL);
    assert_int_equal(FH.outcome, OL_OUTCOME_UPDATED);
    bucket_fini(st);
}

static void turns_public_access_block_off_when_asked(void **state) {
    (void)state;
    set_opt("block_public_access", "false");
    void *st = start_known();
    answer_matching_reads();
    answer_expecting("PUT", "publicAccessBlock",
                     "<RestrictPublicBuckets>false</RestrictPublicBuckets>");
    assert_int_equal(FH.outcome, OL_OUTCOME_UPDATED);
    bucket_fini(st);
}

static void treats_a_missing_public_access_block_as_unblocked(void **state) {
    (void)state;
    set_opt("block_public_access", "false");
    void *st = start_known();
    answer("GET", "publicAccessBlock", 404, "NoSuchPublicAccessBlockConfiguration", NULL);
    answer_matching_reads();
    assert_int_equal(FH.outcome, OL_OUTCOME_UNCHANGED);
    bucket_fini(st);
}

static void switches_encryption_to_kms_with_the_given_key(void **state) {
    (void)state;
    set_opt("encryption", "aws:kms");
    set_opt("kms_key_id", "key-1");
    void *st = start_known();
    answer_matching_reads();
    answer_expecting("PUT", "encryption", "<KMSMasterKeyID>key-1</KMSMasterKeyID>");
    assert_int_equal(FH.outcome, OL_OUTCOME_UPDATED);
    assert_string_equal(FH.reason, "changed: encryption");
    bucket_fini(st);
}

static void enables_logging_with_the_default_prefix_and_disables_it_when_unset(void **state) {
    (void)state;
    set_opt("logging_target_bucket", "central-logs");
    void *st = start_known();
    answer_matching_reads();
    answer_expecting("PUT", "logging",
                     "<TargetBucket>central-logs</TargetBucket>"
                     "<TargetPrefix>acme-production/</TargetPrefix>");
    assert_int_equal(FH.outcome, OL_OUTCOME_UPDATED);
    bucket_fini(st);

    teardown(NULL);
    setup(NULL);
    st = start_known();
    answer("GET", "logging", 200, NULL,
           "<BucketLoggingStatus><LoggingEnabled><TargetBucket>old</TargetBucket>"
           "<TargetPrefix>p/</TargetPrefix></LoggingEnabled></BucketLoggingStatus>");
    answer_matching_reads();
    fake_pick("PUT", "logging", NULL);
    assert_null(strstr(FH.req.body, "LoggingEnabled"));
    respond(200, NULL, NULL);
    assert_int_equal(FH.outcome, OL_OUTCOME_UPDATED);
    bucket_fini(st);
}

static void converges_tags_exactly_when_the_option_is_set(void **state) {
    (void)state;
    set_opt("tags", "team=web,cost=42");
    void *st = start_known();
    answer("GET", "tagging", 404, "NoSuchTagSet", NULL);
    answer_matching_reads();
    answer_expecting("PUT", "tagging", "<Key>cost</Key><Value>42</Value>");
    assert_int_equal(FH.outcome, OL_OUTCOME_UPDATED);
    assert_string_equal(FH.reason, "changed: tags");
    bucket_fini(st);

    /* Same tags in another order: unchanged. */
    teardown(NULL);
    setup(NULL);
    set_opt("tags", "team=web,cost=42");
    st = start_known();
    answer("GET", "tagging", 200, NULL,
           "<Tagging><TagSet><Tag><Key>cost</Key><Value>42</Value></Tag>"
           "<Tag><Key>team</Key><Value>web</Value></Tag>" OWNED_TAGS "</TagSet></Tagging>");
    answer_matching_reads();
    assert_int_equal(FH.outcome, OL_OUTCOME_UNCHANGED);
    bucket_fini(st);

    /* An empty set leaves only the ownership tags. */
    teardown(NULL);
    setup(NULL);
    set_opt("tags", "");
    st = start_known();
    answer("GET", "tagging", 200, NULL,
           "<Tagging><TagSet><Tag><Key>a</Key><Value>b</Value></Tag>" OWNED_TAGS
           "</TagSet></Tagging>");
    answer_matching_reads();
    fake_pick("PUT", "tagging", NULL);
    assert_null(strstr(FH.req.body, "<Key>a</Key>"));
    assert_non_null(strstr(FH.req.body, "<Key>managed-by</Key>"));
    respond(200, NULL, NULL);
    assert_int_equal(FH.outcome, OL_OUTCOME_UPDATED);
    bucket_fini(st);
}

static void adds_missing_ownership_tags_and_keeps_tags_set_by_hand(void **state) {
    (void)state;
    void *st = start_known();
    answer("GET", "tagging", 200, NULL,
           "<Tagging><TagSet><Tag><Key>team</Key><Value>web</Value></Tag></TagSet></Tagging>");
    answer_matching_reads();
    fake_pick("PUT", "tagging", NULL);
    assert_non_null(strstr(FH.req.body, "<Key>team</Key><Value>web</Value>"));
    assert_non_null(strstr(FH.req.body, "<Key>managed-by</Key><Value>opsline</Value>"));
    respond(200, NULL, NULL);
    assert_int_equal(FH.outcome, OL_OUTCOME_UPDATED);
    bucket_fini(st);

    teardown(NULL);
    setup(NULL);
    st = start_known();
    answer("GET", "tagging", 200, NULL,
           "<Tagging><TagSet><Tag><Key>team</Key><Value>web</Value></Tag>" OWNED_TAGS
           "</TagSet></Tagging>");
    answer_matching_reads();
    assert_int_equal(FH.outcome, OL_OUTCOME_UNCHANGED);
    bucket_fini(st);
}

static void converges_a_bucket_already_owned_by_you(void **state) {
    (void)state;
    void *st = start_new();
    respond(409, "BucketAlreadyOwnedByYou", NULL);
    assert_int_equal(fake_in_flight(), 5);
    respond_matching_defaults();
    assert_int_equal(FH.outcome, OL_OUTCOME_UNCHANGED);
    assert_int_equal(journal_count(FH.journal, FH.name, "bucket_seen", FH.name), 1);
    bucket_fini(st);
}

static void creates_a_known_bucket_that_was_deleted(void **state) {
    (void)state;
    void *st = start_known();
    answer("GET", "publicAccessBlock", 200, NULL, PAB_ALL("true")); /* read before it went */
    for (size_t i = 1; i < N_SETTINGS; i++) {
        fake_pick("GET", settings[i].subresource, NULL);
        respond(404, "NoSuchBucket", NULL);
    }
    expect_request("PUT", "");
    respond(200, NULL, NULL);
    answer_all_ok();
    assert_int_equal(FH.outcome, OL_OUTCOME_CREATED);
    assert_non_null(strstr(FH.logs, "no longer exists; creating it"));
    bucket_fini(st);
}

static void converges_a_bucket_of_ours_in_another_region(void **state) {
    (void)state;
    void *st = start_new();
    respond(400, "IllegalLocationConstraintException", NULL); /* redirected: it exists */
    expect_request("HEAD", "");
    respond(200, NULL, NULL);
    respond_matching_defaults();
    assert_int_equal(FH.outcome, OL_OUTCOME_UNCHANGED);
    assert_non_null(strstr(FH.logs, "already exists in another region than eu-north-1"));
    bucket_fini(st);

    /* HeadBucket does not find it: the endpoint is wrong; CreateBucket's error is reported. */
    teardown(NULL);
    setup(NULL);
    st = start_new();
    respond(400, "IllegalLocationConstraintException", NULL);
    respond(404, NULL, NULL);
    assert_int_equal(FH.outcome, OL_OUTCOME_FAILED);
    assert_non_null(strstr(FH.reason, "CreateBucket failed: IllegalLocationConstraintException"));
    assert_int_equal(FH.requests, 2);
    bucket_fini(st);
}

static void fails_when_another_account_owns_the_name(void **state) {
    (void)state;
    void *st = start_new();
    respond(409, "BucketAlreadyExists", NULL);
    assert_int_equal(FH.done_calls, 1);
    assert_int_equal(FH.outcome, OL_OUTCOME_FAILED);
    assert_string_equal(FH.reason,
                        "CreateBucket: bucket name 'acme-production' is taken by another AWS "
                        "account; S3 names are global: choose another product name "
                        "(BucketAlreadyExists, HTTP 409, request id REQ123)");
    assert_null(fake_bag(OL_KEY_BUCKET_ARN));
    bucket_fini(st);
}

static void fails_once_all_reads_answered_naming_the_first_error(void **state) {
    (void)state;
    void *st = start_known();
    answer("GET", "encryption", 403, "AccessDenied", NULL);
    answer("GET", "tagging", 403, "AccessDenied", NULL);
    assert_int_equal(FH.done_calls, 0); /* three reads still in flight */
    answer_matching_reads();
    assert_int_equal(FH.done_calls, 1);
    assert_int_equal(FH.outcome, OL_OUTCOME_FAILED);
    assert_string_equal(FH.reason, "GetBucketEncryption failed: AccessDenied: AWS says no (HTTP "
                                   "403, request id REQ123)");
    assert_int_equal(FH.requests, 5); /* nothing written */
    bucket_fini(st);
}

static void reports_transport_failures_with_the_host_text(void **state) {
    (void)state;
    void *st = start_new();
    ol_aws_response res = {.struct_size = sizeof(ol_aws_response),
                           .result = OL_ENET,
                           .error_message = "connection refused"};
    fake_answer(&res);
    assert_int_equal(FH.outcome, OL_OUTCOME_FAILED);
    assert_string_equal(FH.reason,
                        "CreateBucket failed: network error: no usable answer from the endpoint: "
                        "connection refused");
    bucket_fini(st);
}

static void fails_apply_synchronously_without_calling_done(void **state) {
    (void)state;
    void *st = NULL;
    assert_int_equal(bucket_init(NULL, &FH.api, &st), 0);
    FH.send_result = OL_ECANCELED;
    assert_int_equal(bucket_apply(NULL, NULL, st), OL_ECANCELED);
    assert_int_equal(FH.done_calls, 0);
    journal_append(FH.journal, FH.name, "bucket", "bucket_created", FH.name, NULL);
    assert_int_equal(bucket_apply(NULL, NULL, st), OL_ECANCELED);
    assert_int_equal(FH.done_calls, 0);
    bucket_fini(st);
}

static void fails_once_when_later_sends_are_refused(void **state) {
    (void)state;
    void *st = start_new();
    FH.send_result = OL_ECANCELED;
    respond(200, NULL, NULL);
    assert_int_equal(FH.done_calls, 1);
    assert_int_equal(FH.outcome, OL_OUTCOME_FAILED);
    assert_string_equal(FH.reason, "PutPublicAccessBlock failed: operation canceled");
    bucket_fini(st);
}

static void exports_a_descriptor_matching_the_abi(void **state) {
    (void)state;
    const ol_plugin *p = opsline_plugin();
    assert_int_equal(p->abi_major, OL_ABI_MAJOR);
    assert_int_equal(p->struct_size, sizeof(ol_plugin));
    assert_string_equal(p->name, "bucket");
    assert_string_equal(p->version, "2.0.0");
    assert_null(p->needs);
    assert_int_equal(p->n_options, 7);
}

static void logs_every_state_transition_at_debug_level(void **state) {
    (void)state;
    void *st = start_new();
    respond(200, NULL, NULL);
    answer_all_ok();
    assert_string_equal(FH.debug, "bucket: state start -> CreateBucket\n"
                                  "bucket: state CreateBucket -> write\n"
                                  "bucket: state write -> done\n");
    assert_int_equal(FH.n_logs, 0); /* debug lines only: shown with -v */
    bucket_fini(st);
}

static void validate_refuses_a_bucket_name_s3_does_not_allow(void **state) {
    (void)state;
    void *st = NULL;
    assert_int_equal(bucket_init(NULL, &FH.api, &st), 0);
    FH.name = "xn--acme-production";
    assert_int_equal(bucket_plugin.validate(NULL, NULL, st), OL_EINVAL);
    assert_non_null(strstr(FH.logs, "xn--"));
    FH.name = "acme-production";
    assert_int_equal(bucket_plugin.validate(NULL, NULL, st), 0);
    bucket_fini(st);
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
        T(diff_of_a_new_bucket_writes_each_runbook_setting_once),
        T(diff_keeps_tags_set_by_hand_unless_the_tags_option_is_set),
        T(creates_a_new_bucket_then_writes_only_in_parallel),
        T(tags_a_new_bucket_with_its_owner_and_the_tags_option),
        T(writes_versioning_and_logging_of_a_new_bucket_only_when_asked),
        T(asks_head_bucket_first_in_us_east_1_and_sends_no_create_body),
        T(reports_a_matching_bucket_unchanged_with_reads_only),
        T(fixes_a_public_access_block_turned_off_with_one_write),
        T(suspends_enabled_versioning_with_a_warning),
        T(turns_public_access_block_off_when_asked),
        T(treats_a_missing_public_access_block_as_unblocked),
        T(switches_encryption_to_kms_with_the_given_key),
        T(enables_logging_with_the_default_prefix_and_disables_it_when_unset),
        T(converges_tags_exactly_when_the_option_is_set),
        T(adds_missing_ownership_tags_and_keeps_tags_set_by_hand),
        T(converges_a_bucket_already_owned_by_you),
        T(creates_a_known_bucket_that_was_deleted),
        T(converges_a_bucket_of_ours_in_another_region),
        T(fails_when_another_account_owns_the_name),
        T(fails_once_all_reads_answered_naming_the_first_error),
        T(reports_transport_failures_with_the_host_text),
        T(fails_apply_synchronously_without_calling_done),
        T(fails_once_when_later_sends_are_refused),
        T(exports_a_descriptor_matching_the_abi),
        T(logs_every_state_transition_at_debug_level),
        T(validate_refuses_a_bucket_name_s3_does_not_allow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
