/* Unit tests for the policy stage: action checks and suggestions, presets, the policy
 * document, semantic comparison, the size limit, and apply driven through a scripted host
 * (real XML parsing from the host's xml module; IAM answers given by each test). The plugin
 * source is included so its static functions can be tested. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../plugins/arn.c"
#include "../../plugins/policy/policy.c"

#include "xml.h"

#define RUNBOOK_JSON                                                                               \
    "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":["                \
    "\"s3:ListBucketMultipartUploads\",\"s3:GetObjectRetention\",\"s3:DeleteObjectVersion\","      \
    "\"s3:RestoreObject\",\"s3:ListBucket\",\"s3:ListMultipartUploadParts\",\"s3:PutObject\","     \
    "\"s3:GetObjectAcl\",\"s3:GetObject\",\"s3:PutObjectRetention\",\"s3:PutObjectVersionAcl\","   \
    "\"s3:GetObjectVersionAcl\",\"s3:DeleteObject\",\"s3:PutObjectAcl\","                          \
    "\"s3:GetObjectVersion\"],\"Resource\":[\"arn:aws:s3:::acme-production\","                     \
    "\"arn:aws:s3:::acme-production/*\"]}]}"

/* ---------------------------------------------------------------------------------------
 * A scripted host
 * ------------------------------------------------------------------------------------- */
typedef struct fake {
    const char *preset;
    const char *policy_name;
    const char *const *actions;
    size_t n_actions;
    int actions_set;
    int preset_set;
    const char *item_name;
    const char *region;
    const char *bag_user;
    const char *bag_arn;
    int send_result;
    int pending;
    ol_kv params[8];
    char *param_values[8];
    size_t n_params;
    const char *const *consistency_codes;
    unsigned consistency_ms;
    size_t requests;
    ol_aws_cb cb;
    void *cb_arg;
    int done_calls;
    ol_outcome outcome;
    char reason[512];
    char last_log[1024];
    ol_log_level last_log_level;
    int logs;
} fake;

static fake F;

static const char *fake_strerror(int code) {
    (void)code;
    return "some error";
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

static const char *fake_opt_string(ol_stage *s, const char *name) {
    (void)s;
    if (strcmp(name, "preset") == 0)
        return F.preset != NULL ? F.preset : "runbook";
    if (strcmp(name, "policy_name") == 0)
        return F.policy_name;
    return NULL;
}

static size_t fake_opt_list(ol_stage *s, const char *name, const char *const **out) {
    (void)s;
    assert_string_equal(name, "actions");
    *out = F.actions;
    return F.n_actions;
}

static int fake_opt_is_set(ol_stage *s, const char *name) {
    (void)s;
    if (strcmp(name, "actions") == 0)
        return F.actions_set;
    if (strcmp(name, "preset") == 0)
        return F.preset_set;
    return 0;
}

static const char *fake_item_name(const ol_item *item) {
    (void)item;
    return F.item_name;
}

static const char *fake_item_region(const ol_item *item) {
    (void)item;
    return F.region;
}

static const char *fake_item_get(const ol_item *item, const char *key) {
    (void)item;
    if (strcmp(key, OL_KEY_IAM_USER) == 0)
        return F.bag_user;
    if (strcmp(key, OL_KEY_BUCKET_ARN) == 0)
        return F.bag_arn;
    return NULL;
}

static void clear_params(void) {
    for (size_t i = 0; i < F.n_params; i++)
        free(F.param_values[i]);
    F.n_params = 0;
}

static int fake_aws_send(ol_item *item, const ol_aws_request *req, ol_aws_cb cb, void *arg) {
    (void)item;
    if (F.send_result < 0)
        return F.send_result;
    assert_false(F.pending);
    assert_string_equal(req->service, "iam");
    assert_string_equal(req->method, "POST");
    assert_null(req->body);
    assert_true(req->n_params <= 8);
    clear_params();
    for (size_t i = 0; i < req->n_params; i++) {
        F.param_values[i] = strdup(req->params[i].value);
        F.params[i].name = req->params[i].name; /* static strings in the plugin */
        F.params[i].value = F.param_values[i];
    }
    F.n_params = req->n_params;
    F.consistency_codes = req->consistency_codes;
    F.consistency_ms = req->consistency_ms;
    F.cb = cb;
    F.cb_arg = arg;
    F.pending = 1;
    F.requests++;
    return 0;
}

static const char *param(const char *name) {
    for (size_t i = 0; i < F.n_params; i++)
        if (strcmp(F.params[i].name, name) == 0)
            return F.params[i].value;
    return NULL;
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
    .opt_list = fake_opt_list,
    .opt_is_set = fake_opt_is_set,
    .item_name = fake_item_name,
    .item_region = fake_item_region,
    .item_get = fake_item_get,
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
    F.item_name = "acme-production";
    F.region = "eu-north-1";
    F.bag_user = "acme-production";
    F.bag_arn = "arn:aws:s3:::acme-production";
    return 0;
}

static int teardown(void **state) {
    (void)state;
    clear_params();
    return 0;
}

static void set_actions(const char *const *actions, size_t n) {
    F.actions = actions;
    F.n_actions = n;
    F.actions_set = 1;
}

static void respond(long status, const char *code, const char *body) {
    assert_true(F.pending);
    F.pending = 0;
    ol_aws_response res = {0};
    res.result = code != NULL ? OL_EAWS : 0;
    res.status = status;
    res.body = body != NULL ? body : "";
    res.body_len = strlen(res.body);
    res.error_code = code;
    res.error_message = code != NULL ? "IAM says no" : NULL;
    res.request_id = "RID9";
    F.cb(F.cb_arg, &res);
}

static void *init_ok(void) {
    void *st = NULL;
    assert_int_equal(policy_init(NULL, &host, &st), 0);
    assert_non_null(st);
    return st;
}

static void expect_init_rejected(const char *fragment) {
    void *st = NULL;
    assert_int_equal(policy_init(NULL, &host, &st), OL_EINVAL);
    assert_null(st);
    assert_int_equal(F.last_log_level, OL_LOG_ERROR);
    if (strstr(F.last_log, fragment) == NULL)
        fail_msg("log '%s' lacks '%s'", F.last_log, fragment);
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
    assert_string_equal(suggest_action("GetObjet"), "GetObject");
    assert_string_equal(suggest_action("PutObjects"), "PutObject");
    assert_string_equal(suggest_action("ListBuckett"), "ListBucket");
    assert_null(suggest_action("Frobnicate"));
}

static void maps_api_operation_names_to_their_actions(void **state) {
    (void)state;
    assert_string_equal(suggest_action("ListObjectsV2"), "ListBucket");
    assert_string_equal(suggest_action("HeadObject"), "GetObject");
    assert_string_equal(suggest_action("GetBucketEncryption"), "GetEncryptionConfiguration");
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
    F.preset = "read-only";
    c = init_ok();
    assert_actions(c, read_only, 4);
    policy_fini(c);
    F.preset = "read-write";
    c = init_ok();
    assert_actions(c, read_write, 9);
    policy_fini(c);
    F.preset = "admin";
    expect_init_rejected("'admin' is not a preset; use \"runbook\", \"read-only\"");
    F.preset = "read-write";
    F.preset_set = 1;
    const char *const actions[] = {"s3:GetObject"};
    set_actions(actions, 1);
    expect_init_rejected("actions and preset are both set");
}

static void notes_once_that_acl_actions_are_inert(void **state) {
    (void)state;
    policy_conf *c = init_ok();
    assert_int_equal(F.logs, 1);
    assert_int_equal(F.last_log_level, OL_LOG_INFO);
    assert_non_null(strstr(F.last_log, "bucket owner enforced"));
    policy_fini(c);
    F.logs = 0;
    F.preset = "read-only";
    c = init_ok();
    assert_int_equal(F.logs, 0);
    policy_fini(c);
}

static void rejects_invalid_policy_names(void **state) {
    (void)state;
    F.policy_name = "my policy";
    expect_init_rejected("'my policy' is not a valid IAM policy name");
    F.policy_name = "acme_s3+rw@x";
    policy_fini(init_ok());
}

/* ---------------------------------------------------------------------------------------
 * Documents
 * ------------------------------------------------------------------------------------- */

static void builds_the_runbook_policy_as_one_statement(void **state) {
    (void)state;
    json_t *doc = policy_build(preset_runbook, 15, "arn:aws:s3:::acme-production");
    char *text = policy_compact(doc);
    assert_string_equal(text, RUNBOOK_JSON);
    free(text);
    json_decref(doc);
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
    assert_non_null(strstr(F.last_log, "characters of compact JSON; IAM allows 2048"));
    assert_non_null(strstr(F.last_log, "the policy for 'acme-production' is "));
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
    F.item_name = name;
    policy_conf *c = init_ok();
    assert_int_equal(policy_validate(NULL, NULL, c), 0);
    name[803] = 'a';
    assert_int_equal(policy_validate(NULL, NULL, c), OL_ERANGE);
    assert_non_null(strstr(F.last_log, "is 2049 characters"));
    F.item_name = "acme-production";
    F.region = "cn-north-1";
    assert_int_equal(policy_validate(NULL, NULL, c), 0);
    policy_fini(c);
}

/* ---------------------------------------------------------------------------------------
 * Apply
 * ------------------------------------------------------------------------------------- */

static void *start(void) {
    void *st = init_ok();
    assert_int_equal(policy_apply(NULL, NULL, st), 0);
    assert_true(F.pending);
    assert_string_equal(param("Action"), "GetUserPolicy");
    assert_string_equal(param("UserName"), "acme-production");
    assert_string_equal(param("PolicyName"), "acme-production");
    assert_string_equal(param("Version"), "2010-05-08");
    return st;
}

static void creates_a_missing_policy_retrying_until_the_user_is_visible(void **state) {
    (void)state;
    void *st = start();
    respond(404, "NoSuchEntity", NULL);
    assert_true(F.pending);
    assert_string_equal(param("Action"), "PutUserPolicy");
    assert_string_equal(param("PolicyDocument"), RUNBOOK_JSON);
    assert_non_null(F.consistency_codes);
    assert_string_equal(F.consistency_codes[0], "NoSuchEntity");
    assert_null(F.consistency_codes[1]);
    assert_true(F.consistency_ms >= 10000);
    respond(200, NULL, "<PutUserPolicyResponse/>");
    assert_int_equal(F.done_calls, 1);
    assert_int_equal(F.outcome, OL_OUTCOME_CREATED);
    policy_fini(st);
}

static char *get_user_policy_body(const char *json) {
    char *enc = curl_easy_escape(NULL, json, 0);
    assert_non_null(enc);
    char *body = reasonf("<GetUserPolicyResponse xmlns=\"https://iam.amazonaws.com/doc/"
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
    assert_int_equal(F.done_calls, 1);
    assert_int_equal(F.outcome, OL_OUTCOME_UNCHANGED);
    assert_int_equal(F.requests, 1);
    policy_fini(st);
}

static void replaces_a_different_policy(void **state) {
    (void)state;
    void *st = start();
    char *body = get_user_policy_body("{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":"
                                      "\"Allow\",\"Action\":\"s3:*\",\"Resource\":\"*\"}]}");
    respond(200, NULL, body);
    free(body);
    assert_string_equal(param("Action"), "PutUserPolicy");
    respond(200, NULL, NULL);
    assert_int_equal(F.outcome, OL_OUTCOME_UPDATED);
    policy_fini(st);
}

static void uses_the_policy_name_option(void **state) {
    (void)state;
    F.policy_name = "runbook-s3";
    void *st = init_ok();
    assert_int_equal(policy_apply(NULL, NULL, st), 0);
    assert_string_equal(param("PolicyName"), "runbook-s3");
    respond(404, "NoSuchEntity", NULL);
    assert_string_equal(param("PolicyName"), "runbook-s3");
    respond(200, NULL, NULL);
    policy_fini(st);
}

static void reports_iam_errors_with_step_code_and_request_id(void **state) {
    (void)state;
    void *st = start();
    respond(403, "AccessDenied", NULL);
    assert_int_equal(F.outcome, OL_OUTCOME_FAILED);
    assert_string_equal(F.reason, "GetUserPolicy: AccessDenied IAM says no (HTTP 403, request "
                                  "id RID9)");
    policy_fini(st);

    teardown(NULL);
    setup(NULL);
    st = start();
    respond(404, "NoSuchEntity", NULL);
    respond(409, "LimitExceeded", NULL);
    assert_int_equal(F.done_calls, 1);
    assert_string_equal(F.reason, "PutUserPolicy: LimitExceeded IAM says no (HTTP 409, request "
                                  "id RID9)");
    policy_fini(st);
}

static void refuses_to_apply_without_the_bucket_and_user_in_the_bag(void **state) {
    (void)state;
    void *st = init_ok();
    F.bag_arn = NULL;
    assert_int_equal(policy_apply(NULL, NULL, st), OL_ENOENT);
    assert_non_null(strstr(F.last_log, "the bucket stage must run"));
    F.bag_arn = "arn:aws:s3:::acme-production";
    F.bag_user = NULL;
    assert_int_equal(policy_apply(NULL, NULL, st), OL_ENOENT);
    assert_non_null(strstr(F.last_log, "the iam stage must run"));
    assert_int_equal(F.done_calls, 0);
    assert_int_equal(F.requests, 0);
    policy_fini(st);
}

static void fails_apply_synchronously_without_calling_done(void **state) {
    (void)state;
    void *st = init_ok();
    F.send_result = OL_ECANCELED;
    assert_int_equal(policy_apply(NULL, NULL, st), OL_ECANCELED);
    assert_int_equal(F.done_calls, 0);
    policy_fini(st);
}

static void exports_a_descriptor_needing_bucket_and_iam(void **state) {
    (void)state;
    const ol_plugin *p = opsline_plugin();
    assert_string_equal(p->name, "policy");
    assert_int_equal(p->abi_major, OL_ABI_MAJOR);
    assert_string_equal(p->needs[0], "bucket");
    assert_string_equal(p->needs[1], "iam");
    assert_null(p->needs[2]);
    assert_non_null(p->validate);
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
        T(counts_the_size_with_the_items_own_names),
        T(creates_a_missing_policy_retrying_until_the_user_is_visible),
        T(leaves_an_equal_policy_unchanged),
        T(replaces_a_different_policy),
        T(uses_the_policy_name_option),
        T(reports_iam_errors_with_step_code_and_request_id),
        T(refuses_to_apply_without_the_bucket_and_user_in_the_bag),
        T(fails_apply_synchronously_without_calling_done),
        T(exports_a_descriptor_needing_bucket_and_iam),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
