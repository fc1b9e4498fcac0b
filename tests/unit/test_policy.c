/* Unit tests for the policy stage: action checks and suggestions, presets, the policy
 * document, semantic comparison, the size limit, and apply driven through the shared fake
 * host (tests/unit/fake_host.h: the host's real options, bag and XML modules; IAM answers
 * given by each test). The plugin source is included so its static functions can be
 * tested. */
#include "fake_host.h"

#include "../../plugins/arn.c"
#include "../../plugins/policy/policy.c"
#include "../../plugins/policy/policy_lifecycle.c"
#include "../../plugins/lifecycle.c"

#define RUNBOOK_JSON                                                                               \
    "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":["                \
    "\"s3:ListBucketMultipartUploads\",\"s3:GetObjectRetention\",\"s3:DeleteObjectVersion\","      \
    "\"s3:RestoreObject\",\"s3:ListBucket\",\"s3:ListMultipartUploadParts\",\"s3:PutObject\","     \
    "\"s3:GetObjectAcl\",\"s3:GetObject\",\"s3:PutObjectRetention\",\"s3:PutObjectVersionAcl\","   \
    "\"s3:GetObjectVersionAcl\",\"s3:DeleteObject\",\"s3:PutObjectAcl\","                          \
    "\"s3:GetObjectVersion\"],\"Resource\":[\"arn:aws:s3:::acme-production\","                     \
    "\"arn:aws:s3:::acme-production/*\"]}]}"

/* Every request is an IAM Query request with its parameters in the form body. */
static void check_iam_request(const ol_aws_request *req) {
    assert_string_equal(req->service, "iam");
    assert_string_equal(req->method, "POST");
    assert_null(req->body);
    assert_true(req->n_params <= 8);
}

/* What the bucket and iam stages left in the bag (NULL: that stage did not run). */
static void set_bag(const char *user, const char *arn) {
    bag_free(&FH.bag);
    bag_init(&FH.bag);
    if (user != NULL)
        assert_int_equal(bag_set(&FH.bag, OL_KEY_IAM_USER, user, 0), 0);
    if (arn != NULL)
        assert_int_equal(bag_set(&FH.bag, OL_KEY_BUCKET_ARN, arn, 0), 0);
}

static int setup(void **state) {
    (void)state;
    fake_start(&policy_plugin);
    FH.on_send = check_iam_request;
    set_bag("acme-production", "arn:aws:s3:::acme-production");
    return 0;
}

static int teardown(void **state) {
    (void)state;
    fake_stop();
    return 0;
}

/* The actions option, as `--set policy.actions=a,b` gives it. */
static void set_actions(const char *const *actions, size_t n) {
    size_t len = 1;
    for (size_t i = 0; i < n; i++)
        len += strlen(actions[i]) + 1;
    char *text = calloc(1, len);
    assert_non_null(text);
    for (size_t i = 0; i < n; i++) {
        strcat(text, i > 0 ? "," : "");
        strcat(text, actions[i]);
    }
    fake_set_opt("actions", text);
    free(text);
}

static void respond(long status, const char *code, const char *body) {
    ol_aws_response res = {.struct_size = sizeof(ol_aws_response)};
    res.result = code != NULL ? OL_EAWS : 0;
    res.status = status;
    res.body = body != NULL ? body : "";
    res.body_len = strlen(res.body);
    res.error_code = code;
    res.error_message = code != NULL ? "IAM says no" : NULL;
    res.request_id = "RID9";
    fake_answer(&res);
}

static void *init_ok(void) {
    void *st = NULL;
    assert_int_equal(policy_init(NULL, &FH.api, &st), 0);
    assert_non_null(st);
    return st;
}

static void expect_init_rejected(const char *fragment) {
    void *st = NULL;
    assert_int_equal(policy_init(NULL, &FH.api, &st), OL_ECONFIG);
    assert_null(st);
    assert_int_equal(FH.last_log_level, OL_LOG_ERROR);
    if (strstr(FH.last_log, fragment) == NULL)
        fail_msg("log '%s' lacks '%s'", FH.last_log, fragment);
}

/* ---------------------------------------------------------------------------------------
 * Actions
 * ------------------------------------------------------------------------------------- */

static void knows_the_runbook_actions_and_over_a_hundred_others(void **state) {
    (void)state;
    assert_true(N_S3_ACTIONS >= 100);
    for (size_t i = 0; i < sizeof(preset_runbook) / sizeof(preset_runbook[0]); i++)
        assert_int_equal(action_matches(preset_runbook[i] + 3), 1);
    for (size_t p = 0; p < sizeof(presets) / sizeof(presets[0]); p++)
        for (size_t i = 0; i < presets[p].n; i++)
            assert_int_equal(action_matches(presets[p].actions[i] + 3), 1);
}

static void matches_actions_case_insensitively_with_wildcards(void **state) {
    (void)state;
    assert_true(glob_match("getobject", "GetObject"));
    assert_true(glob_match("Get*", "GetObject"));
    assert_true(glob_match("*", "PutObject"));
    assert_true(glob_match("Get?bject", "GetObject"));
    assert_true(glob_match("*Object*Acl", "PutObjectVersionAcl"));
    assert_false(glob_match("Get*", "PutObject"));
    assert_false(glob_match("GetObject", "GetObjectAcl"));
    assert_false(glob_match("GetObject?", "GetObject"));
    assert_true(action_matches("GetObject*") > 5);
    assert_int_equal(action_matches("Frobnicate*"), 0);
}

static void suggests_the_nearest_action_for_a_typo(void **state) {
    (void)state;
    assert_string_equal(suggest_action(&FH.api, "GetObjet"), "GetObject");
    assert_string_equal(suggest_action(&FH.api, "PutObjects"), "PutObject");
    assert_string_equal(suggest_action(&FH.api, "ListBuckett"), "ListBucket");
    assert_null(suggest_action(&FH.api, "Frobnicate"));
}

static void maps_api_operation_names_to_their_actions(void **state) {
    (void)state;
    assert_string_equal(suggest_action(&FH.api, "ListObjectsV2"), "ListBucket");
    assert_string_equal(suggest_action(&FH.api, "HeadObject"), "GetObject");
    assert_string_equal(suggest_action(&FH.api, "GetBucketEncryption"),
                        "GetEncryptionConfiguration");
}

static void accepts_known_and_wildcard_actions(void **state) {
    (void)state;
    const char *const actions[] = {"s3:GetObject", "S3:putobject", "s3:Get*", "s3:*"};
    set_actions(actions, 4);
    void *st = init_ok();
    policy_conf *c = st;
    assert_int_equal(c->n_actions, 4);
    policy_fini(st);
}

static void rejects_unknown_actions_with_a_suggestion(void **state) {
    (void)state;
    const char *const typo[] = {"s3:GetObject", "s3:GetObjet"};
    set_actions(typo, 2);
    expect_init_rejected("option actions: 's3:GetObjet' is not an S3 action; did you mean "
                         "'s3:GetObject'?");
    const char *const api[] = {"s3:ListObjectsV2"};
    set_actions(api, 1);
    expect_init_rejected("did you mean 's3:ListBucket'?");
    const char *const nothing[] = {"s3:Frob*"};
    set_actions(nothing, 1);
    expect_init_rejected("'s3:Frob*' matches no S3 action");
    const char *const other[] = {"iam:CreateUser"};
    set_actions(other, 1);
    expect_init_rejected("'iam:CreateUser' is not an S3 action");
    const char *const star[] = {"*"};
    set_actions(star, 1);
    expect_init_rejected("write \"s3:*\" if you mean every S3 action");
    set_actions(NULL, 0);
    expect_init_rejected("option actions is empty");
}

static void drops_repeated_actions(void **state) {
    (void)state;
    const char *const actions[] = {"s3:GetObject", "s3:getobject", "s3:PutObject"};
    set_actions(actions, 3);
    policy_conf *c = init_ok();
    assert_int_equal(c->n_actions, 2);
    policy_fini(c);
}

/* The presets written out here, not read from the module's tables: the runbook's 15 actions
 * in its order, and the two smaller presets of docs/stages.md. */
static void assert_actions(const policy_conf *c, const char *const *want, size_t n) {
    assert_int_equal(c->n_actions, n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(c->actions[i], want[i]);
}

static void resolves_presets_and_rejects_unknown_ones(void **state) {
    (void)state;
    static const char *const runbook[] = {"s3:ListBucketMultipartUploads",
                                          "s3:GetObjectRetention",
                                          "s3:DeleteObjectVersion",
                                          "s3:RestoreObject",
                                          "s3:ListBucket",
                                          "s3:ListMultipartUploadParts",
                                          "s3:PutObject",
                                          "s3:GetObjectAcl",
                                          "s3:GetObject",
                                          "s3:PutObjectRetention",
                                          "s3:PutObjectVersionAcl",
                                          "s3:GetObjectVersionAcl",
                                          "s3:DeleteObject",
                                          "s3:PutObjectAcl",
                                          "s3:GetObjectVersion"};
    static const char *const read_only[] = {"s3:ListBucket", "s3:GetBucketLocation", "s3:GetObject",
                                            "s3:GetObjectVersion"};
    static const char *const read_write[] = {
        "s3:ListBucket",   "s3:GetBucketLocation",    "s3:ListBucketMultipartUploads",
        "s3:GetObject",    "s3:GetObjectVersion",     "s3:PutObject",
        "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"};
    policy_conf *c = init_ok();
    assert_actions(c, runbook, 15);
    policy_fini(c);
    fake_set_opt("preset", "read-only");
    c = init_ok();
    assert_actions(c, read_only, 4);
    policy_fini(c);
    fake_set_opt("preset", "read-write");
    c = init_ok();
    assert_actions(c, read_write, 9);
    policy_fini(c);
    fake_set_opt("preset", "admin");
    expect_init_rejected("'admin' is not a preset; use \"runbook\", \"read-only\"");
    fake_set_opt("preset", "read-write");
    const char *const actions[] = {"s3:GetObject"};
    set_actions(actions, 1);
    expect_init_rejected("actions and preset are both set");
}

/* Once per run, and only with -v (a debug line): it is advice, not a warning. */
static void notes_once_that_acl_actions_are_inert(void **state) {
    (void)state;
    policy_conf *c = init_ok();
    assert_int_equal(FH.n_logs, 0);
    assert_non_null(strstr(FH.debug, "bucket owner enforced"));
    policy_fini(c);
    FH.debug[0] = '\0';
    fake_set_opt("preset", "read-only");
    c = init_ok();
    assert_null(strstr(FH.debug, "bucket owner enforced"));
    policy_fini(c);
}

static void rejects_invalid_policy_names(void **state) {
    (void)state;
    fake_set_opt("policy_name", "my policy");
    expect_init_rejected("'my policy' is not a valid IAM policy name");
    fake_set_opt("policy_name", "acme_s3+rw@x");
    policy_fini(init_ok());
}

/* ---------------------------------------------------------------------------------------
 * Documents
 * ------------------------------------------------------------------------------------- */

static void builds_the_runbook_policy_as_one_statement(void **state) {
    (void)state;
    policy_conf *c = init_ok(); /* the runbook preset */
    assert_int_equal(c->n_actions, sizeof(preset_runbook) / sizeof(preset_runbook[0]));
    json_t *doc = policy_build(c, "arn:aws:s3:::acme-production");
    char *text = policy_compact(doc);
    assert_string_equal(text, RUNBOOK_JSON);
    free(text);
    /* Documents share the action list: a second one, built before the first is freed, is
     * the same but for its ARN. */
    json_t *other = policy_build(c, "arn:aws:s3:::acme-staging");
    json_decref(doc);
    text = policy_compact(other);
    assert_non_null(strstr(text, "\"arn:aws:s3:::acme-staging\",\"arn:aws:s3:::acme-staging/*\""));
    assert_int_equal(strlen(text),
                     strlen(RUNBOOK_JSON) - 2 * strlen("production") + 2 * strlen("staging"));
    free(text);
    json_decref(other);
    policy_fini(c);
}

static json_t *parse(const char *text) {
    json_t *doc = json_loads(text, 0, NULL);
    assert_non_null(doc);
    return doc;
}

static void compares_policies_semantically(void **state) {
    (void)state;
    json_t *want = parse(RUNBOOK_JSON);
    const char *const cases_equal[] = {
        RUNBOOK_JSON,
        /* reordered, recased actions, a Sid, a lone Statement object, resources reversed */
        "{\"Version\":\"2012-10-17\",\"Statement\":{\"Sid\":\"x\",\"Effect\":\"Allow\","
        "\"Resource\":[\"arn:aws:s3:::acme-production/*\",\"arn:aws:s3:::acme-production\"],"
        "\"Action\":[\"s3:getobjectversion\",\"s3:ListBucketMultipartUploads\","
        "\"s3:GetObjectRetention\",\"s3:DeleteObjectVersion\",\"s3:RestoreObject\","
        "\"s3:ListBucket\",\"s3:ListMultipartUploadParts\",\"s3:PutObject\",\"s3:GetObjectAcl\","
        "\"s3:GetObject\",\"s3:PutObjectRetention\",\"s3:PutObjectVersionAcl\","
        "\"s3:GetObjectVersionAcl\",\"s3:DeleteObject\",\"s3:PutObjectAcl\"]}}",
    };
    for (size_t i = 0; i < sizeof(cases_equal) / sizeof(cases_equal[0]); i++) {
        json_t *have = parse(cases_equal[i]);
        assert_true(policy_equal(have, want));
        assert_true(policy_equal(want, have));
        json_decref(have);
    }
    const char *const cases_differ[] = {
        /* one action fewer */
        "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":"
        "[\"s3:GetObject\"],\"Resource\":[\"arn:aws:s3:::acme-production\","
        "\"arn:aws:s3:::acme-production/*\"]}]}",
        /* other version */
        "{\"Version\":\"2008-10-17\",\"Statement\":[]}",
        /* Deny */
        "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Deny\",\"Action\":\"s3:*\","
        "\"Resource\":\"*\"}]}",
        /* not an object */
        "[]",
    };
    for (size_t i = 0; i < sizeof(cases_differ) / sizeof(cases_differ[0]); i++) {
        json_t *have = parse(cases_differ[i]);
        assert_false(policy_equal(have, want));
        assert_false(policy_equal(want, have));
        json_decref(have);
    }
    json_decref(want);
}

static void treats_conditions_and_extra_statements_as_differences(void **state) {
    (void)state;
    json_t *a = parse("{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\","
                      "\"Action\":\"s3:GetObject\",\"Resource\":\"arn:aws:s3:::b/*\"}]}");
    json_t *cond = parse("{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\","
                         "\"Action\":\"s3:GetObject\",\"Resource\":\"arn:aws:s3:::b/*\","
                         "\"Condition\":{\"Bool\":{\"aws:SecureTransport\":\"true\"}}}]}");
    json_t *two = parse("{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\","
                        "\"Action\":\"s3:GetObject\",\"Resource\":\"arn:aws:s3:::b/*\"},"
                        "{\"Effect\":\"Allow\",\"Action\":\"s3:PutObject\",\"Resource\":"
                        "\"arn:aws:s3:::b/*\"}]}");
    json_t *lone = parse("{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\","
                         "\"Action\":[\"s3:GetObject\"],\"Resource\":[\"arn:aws:s3:::b/*\"]}]}");
    assert_false(policy_equal(a, cond));
    assert_false(policy_equal(cond, a));
    assert_false(policy_equal(a, two));
    assert_true(policy_equal(a, lone));
    json_decref(a);
    json_decref(cond);
    json_decref(two);
    json_decref(lone);
}

static void decodes_the_url_encoded_document_iam_returns(void **state) {
    (void)state;
    json_t *doc =
        policy_decode("%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%5D%7D");
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "Version")), "2012-10-17");
    json_decref(doc);
    assert_null(policy_decode("%7Bnot json"));
}

static void accepts_the_runbook_policy_within_the_size_limit(void **state) {
    (void)state;
    policy_conf *c = init_ok();
    assert_int_equal(policy_validate(NULL, NULL, c), 0);
    policy_fini(c);
}

static void rejects_a_policy_over_2048_characters_with_its_size(void **state) {
    (void)state;
    /* Every known action spelled out: far beyond the limit. */
    const char **all = calloc(N_S3_ACTIONS, sizeof(*all));
    char(*names)[64] = calloc(N_S3_ACTIONS, sizeof(*names));
    assert_non_null(all);
    assert_non_null(names);
    for (size_t i = 0; i < N_S3_ACTIONS; i++) {
        snprintf(names[i], sizeof(names[i]), "s3:%s", s3_actions[i]);
        all[i] = names[i];
    }
    set_actions(all, N_S3_ACTIONS);
    policy_conf *c = init_ok();
    assert_int_equal(policy_validate(NULL, NULL, c), OL_ERANGE);
    assert_non_null(strstr(FH.last_log, "characters of compact JSON; IAM allows 2048"));
    assert_non_null(strstr(FH.last_log, "the policy for 'acme-production' is "));
    policy_fini(c);
    free(all);
    free(names);
}

static void counts_the_size_with_the_items_own_names(void **state) {
    (void)state;
    /* The runbook policy is 471 characters for the 15-character "acme-production"; the name
     * appears twice, so a name of n characters gives 441 + 2n: 2047 for 803, 2049 for 804. */
    static char name[805];
    memset(name, 'a', 803);
    FH.name = name;
    policy_conf *c = init_ok();
    assert_int_equal(policy_validate(NULL, NULL, c), 0);
    name[803] = 'a';
    assert_int_equal(policy_validate(NULL, NULL, c), OL_ERANGE);
    assert_non_null(strstr(FH.last_log, "is 2049 characters"));
    FH.name = "acme-production";
    FH.region = "cn-north-1";
    assert_int_equal(policy_validate(NULL, NULL, c), 0);
    policy_fini(c);
}

static void counts_every_arns_length_as_the_dumped_document_has_it(void **state) {
    (void)state;
    policy_conf *c = init_ok();
    assert_true(c->base_len > 0);
    /* Plain ARNs take the arithmetic; the rest (quote, backslash, control character,
     * UTF-8) are built and dumped. Both must give what apply sends. */
    const char *arns[] = {"",
                          "arn:aws:s3:::acme-production",
                          "arn:aws-cn:s3:::a.b-c",
                          "arn:aws-us-gov:s3:::x",
                          "arn:aws:s3:::has\"quote",
                          "arn:aws:s3:::back\\slash",
                          "arn:aws:s3:::tab\there",
                          "arn:aws:s3:::caf\xc3\xa9",
                          "arn:aws:s3:::slash/in/it"};
    for (size_t i = 0; i < sizeof(arns) / sizeof(arns[0]); i++) {
        json_t *doc = policy_build(c, arns[i]);
        char *text = policy_compact(doc);
        assert_non_null(text);
        assert_int_equal(policy_length(c, arns[i]), strlen(text));
        free(text);
        json_decref(doc);
    }
    policy_fini(c);
}

/* ---------------------------------------------------------------------------------------
 * Apply
 * ------------------------------------------------------------------------------------- */

static void *start(void) {
    void *st = init_ok();
    assert_int_equal(policy_apply(NULL, NULL, st), 0);
    assert_true(FH.pending);
    assert_string_equal(fake_param("Action"), "GetUserPolicy");
    assert_string_equal(fake_param("UserName"), "acme-production");
    assert_string_equal(fake_param("PolicyName"), "acme-production");
    assert_string_equal(fake_param("Version"), "2010-05-08");
    return st;
}

static void creates_a_missing_policy_retrying_until_the_user_is_visible(void **state) {
    (void)state;
    void *st = start();
    respond(404, "NoSuchEntity", NULL);
    assert_true(FH.pending);
    assert_string_equal(fake_param("Action"), "PutUserPolicy");
    assert_string_equal(fake_param("PolicyDocument"), RUNBOOK_JSON);
    assert_non_null(FH.req.consistency_codes);
    assert_string_equal(FH.req.consistency_codes[0], "NoSuchEntity");
    assert_null(FH.req.consistency_codes[1]);
    assert_true(FH.req.consistency_ms >= 10000);
    assert_int_equal(FH.req.consistency_ms, IAM_CONSISTENCY_MS); /* the iam stage's window */
    respond(200, NULL, "<PutUserPolicyResponse/>");
    assert_int_equal(FH.done_calls, 1);
    assert_int_equal(FH.outcome, OL_OUTCOME_CREATED);
    policy_fini(st);
}

static void writes_the_policy_of_a_user_created_in_this_run_without_reading(void **state) {
    (void)state;
    set_bag("acme-production", NULL); /* the bucket stage has not run: not needed */
    assert_int_equal(bag_set(&FH.bag, OL_KEY_IAM_USER_CREATED, "true", 0), 0);
    void *st = init_ok();
    assert_int_equal(policy_apply(NULL, NULL, st), 0);
    assert_string_equal(fake_param("Action"), "PutUserPolicy");
    assert_string_equal(fake_param("PolicyDocument"), RUNBOOK_JSON);
    assert_string_equal(FH.req.consistency_codes[0], "NoSuchEntity");
    respond(200, NULL, "<PutUserPolicyResponse/>");
    assert_int_equal(FH.outcome, OL_OUTCOME_CREATED);
    assert_int_equal(FH.requests, 1);
    policy_fini(st);
}

static void names_the_bucket_by_the_arn_of_the_items_region(void **state) {
    (void)state;
    set_bag("acme-production", NULL);
    FH.region = "cn-north-1";
    void *st = start();
    respond(404, "NoSuchEntity", NULL);
    assert_non_null(strstr(fake_param("PolicyDocument"), "\"arn:aws-cn:s3:::acme-production/*\""));
    respond(200, NULL, NULL);
    policy_fini(st);
}

static char *get_user_policy_body(const char *json) {
    char *enc = curl_easy_escape(NULL, json, 0);
    assert_non_null(enc);
    char *body = ol__format("<GetUserPolicyResponse xmlns=\"https://iam.amazonaws.com/doc/"
                            "2010-05-08/\"><GetUserPolicyResult><PolicyName>acme-production"
                            "</PolicyName><UserName>acme-production</UserName><PolicyDocument>%s"
                            "</PolicyDocument></GetUserPolicyResult></GetUserPolicyResponse>",
                            enc);
    curl_free(enc);
    return body;
}

static void leaves_an_equal_policy_unchanged(void **state) {
    (void)state;
    void *st = start();
    char *body = get_user_policy_body(RUNBOOK_JSON);
    respond(200, NULL, body);
    free(body);
    assert_int_equal(FH.done_calls, 1);
    assert_int_equal(FH.outcome, OL_OUTCOME_UNCHANGED);
    assert_int_equal(FH.requests, 1);
    policy_fini(st);
}

static void replaces_a_different_policy(void **state) {
    (void)state;
    void *st = start();
    char *body = get_user_policy_body("{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":"
                                      "\"Allow\",\"Action\":\"s3:*\",\"Resource\":\"*\"}]}");
    respond(200, NULL, body);
    free(body);
    assert_string_equal(fake_param("Action"), "PutUserPolicy");
    respond(200, NULL, NULL);
    assert_int_equal(FH.outcome, OL_OUTCOME_UPDATED);
    policy_fini(st);
}

static void uses_the_policy_name_option(void **state) {
    (void)state;
    fake_set_opt("policy_name", "runbook-s3");
    void *st = init_ok();
    assert_int_equal(policy_apply(NULL, NULL, st), 0);
    assert_string_equal(fake_param("PolicyName"), "runbook-s3");
    respond(404, "NoSuchEntity", NULL);
    assert_string_equal(fake_param("PolicyName"), "runbook-s3");
    respond(200, NULL, NULL);
    policy_fini(st);
}

static void reports_iam_errors_with_step_code_and_request_id(void **state) {
    (void)state;
    void *st = start();
    respond(403, "AccessDenied", NULL);
    assert_int_equal(FH.outcome, OL_OUTCOME_FAILED);
    assert_string_equal(FH.reason, "GetUserPolicy failed: AccessDenied: IAM says no (HTTP 403, "
                                   "request id RID9)");
    policy_fini(st);

    teardown(NULL);
    setup(NULL);
    st = start();
    respond(404, "NoSuchEntity", NULL);
    respond(409, "LimitExceeded", NULL);
    assert_int_equal(FH.done_calls, 1);
    assert_string_equal(FH.reason, "PutUserPolicy failed: LimitExceeded: IAM says no (HTTP 409, "
                                   "request id RID9)");
    policy_fini(st);
}

static void refuses_to_apply_without_the_user_in_the_bag(void **state) {
    (void)state;
    void *st = init_ok();
    set_bag(NULL, "arn:aws:s3:::acme-production");
    assert_int_equal(policy_apply(NULL, NULL, st), OL_ENOENT);
    assert_non_null(strstr(FH.last_log, "the iam stage must run"));
    assert_int_equal(FH.done_calls, 0);
    assert_int_equal(FH.requests, 0);
    policy_fini(st);
}

static void fails_apply_synchronously_without_calling_done(void **state) {
    (void)state;
    void *st = init_ok();
    FH.send_result = OL_ECANCELED;
    assert_int_equal(policy_apply(NULL, NULL, st), OL_ECANCELED);
    assert_int_equal(FH.done_calls, 0);
    policy_fini(st);
}

static void exports_a_descriptor_needing_only_iam(void **state) {
    (void)state;
    const ol_plugin *p = opsline_plugin();
    assert_string_equal(p->name, "policy");
    assert_string_equal(p->version, "2.0.0");
    assert_int_equal(p->abi_major, OL_ABI_MAJOR);
    /* Not the bucket stage: the policy names the bucket by its ARN, which follows from the
     * item, so the S3 and IAM requests of an item overlap. */
    assert_string_equal(p->needs[0], "iam");
    assert_null(p->needs[1]);
    assert_non_null(p->validate);
}

static void logs_every_state_transition_at_debug_level(void **state) {
    (void)state;
    void *st = start();
    respond(404, "NoSuchEntity", NULL);
    respond(200, NULL, "<PutUserPolicyResponse/>");
    assert_non_null(strstr(FH.debug, "policy: state start -> GetUserPolicy\n"
                                     "policy: state GetUserPolicy -> PutUserPolicy\n"
                                     "policy: state PutUserPolicy -> done\n"));
    policy_fini(st);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(knows_the_runbook_actions_and_over_a_hundred_others),
        T(matches_actions_case_insensitively_with_wildcards),
        T(suggests_the_nearest_action_for_a_typo),
        T(maps_api_operation_names_to_their_actions),
        T(accepts_known_and_wildcard_actions),
        T(rejects_unknown_actions_with_a_suggestion),
        T(drops_repeated_actions),
        T(resolves_presets_and_rejects_unknown_ones),
        T(notes_once_that_acl_actions_are_inert),
        T(rejects_invalid_policy_names),
        T(builds_the_runbook_policy_as_one_statement),
        T(compares_policies_semantically),
        T(treats_conditions_and_extra_statements_as_differences),
        T(decodes_the_url_encoded_document_iam_returns),
        T(accepts_the_runbook_policy_within_the_size_limit),
        T(rejects_a_policy_over_2048_characters_with_its_size),
        T(counts_every_arns_length_as_the_dumped_document_has_it),
        T(counts_the_size_with_the_items_own_names),
        T(creates_a_missing_policy_retrying_until_the_user_is_visible),
        T(writes_the_policy_of_a_user_created_in_this_run_without_reading),
        T(names_the_bucket_by_the_arn_of_the_items_region),
        T(leaves_an_equal_policy_unchanged),
        T(replaces_a_different_policy),
        T(uses_the_policy_name_option),
        T(reports_iam_errors_with_step_code_and_request_id),
        T(refuses_to_apply_without_the_user_in_the_bag),
        T(fails_apply_synchronously_without_calling_done),
        T(exports_a_descriptor_needing_only_iam),
        T(logs_every_state_transition_at_debug_level),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
