/* Tests for plugins/iam/iam.c: the apply state machine driven request by request through
 * the shared fake host (tests/unit/fake_host.h: the host's real options, bag, xml and
 * journal modules), answering with IAM's XML, so the lost-key logic is checked against
 * what a rerun would read back from the journal. */
#include "fake_host.h"

#include "../../plugins/iam/iam.c"
#include "../../plugins/owner.c"
#include "../../plugins/iam/iam_lifecycle.c"
#include "../../plugins/lifecycle.c"

#define USER "acme-prod"
#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"

/* The pending request as the tests read it. */
typedef struct sent {
    char action[64];
    char params[1024]; /* "Name=value&..." after Action/Version/UserName, for asserts */
    unsigned flags;
    int consistent;
} sent;

/* Every request is an IAM Query request for the item's user. */
static void check_iam_request(const ol_aws_request *req) {
    assert_string_equal(req->service, "iam");
    assert_string_equal(req->method, "POST");
    assert_true(req->n_params >= 3);
    assert_string_equal(req->params[0].name, "Action");
    assert_string_equal(req->params[1].name, "Version");
    assert_string_equal(req->params[1].value, "2010-05-08");
    assert_string_equal(req->params[2].name, "UserName");
    assert_string_equal(req->params[2].value, FH.name);
}

static void iam_checkpoint(const ol_item *i, const char *point) {
    fake_checkpoint(i, point);
    /* the secret is in the bag before the kill point after the key */
    if (strcmp(point, "iam.after_create_access_key") == 0) {
        assert_non_null(fake_bag(OL_KEY_SECRET_ACCESS_KEY));
        assert_int_equal(journal_count(FH.journal, FH.name, "access_key_created", NULL) > 0, 1);
    }
}

/* The host's answer with one store ("dotenv") whose journal records are the truth: the
 * newest listed key it holds, or none. */
static int journal_secret_find(ol_item *i, const char *const *ids, size_t n, ol_find_cb cb,
                               void *arg) {
    const char *found = NULL;
    for (size_t k = 0; k < n; k++)
        if (journal_count(FH.journal, FH.name, "secret_stored", ids[k]) > 0)
            found = ids[k];
    if (found != NULL)
        FH.api.item_set(i, OL_KEY_ACCESS_KEY_ID, found, 0);
    cb(arg, found, NULL, 0, NULL);
    return 0;
}

static int setup(void **state) {
    fake_start(opsline_plugin());
    fake_use_journal();
    FH.name = USER;
    FH.on_send = check_iam_request;
    FH.api.checkpoint = iam_checkpoint;
    FH.api.secret_find = journal_secret_find;
    *state = &FH;
    return 0;
}

static int teardown(void **state) {
    (void)state;
    fake_stop();
    return 0;
}

/* ---- driving the stage ----------------------------------------------------------------- */

static void *stage_state;

static void start(void) {
    const ol_plugin *p = opsline_plugin();
    assert_int_equal(p->init(NULL, &FH.api, &stage_state), 0);
    assert_int_equal(p->apply(NULL, NULL, stage_state), 0);
}

static void stop(void) {
    assert_false(FH.pending);
    assert_int_equal(FH.done_calls, 1);
    opsline_plugin()->fini(stage_state);
    stage_state = NULL;
}

/* Asserts a pending request is action, makes it the next one answered and returns a copy;
 * the reply is still owed. */
static sent expect(const char *action) {
    assert_true(FH.pending);
    fake_pick("POST", "Action", action);
    sent s = {.flags = FH.req.flags};
    snprintf(s.action, sizeof(s.action), "%s", FH.req.params[0].value);
    for (size_t k = 3; k < FH.req.n_params; k++) {
        size_t used = strlen(s.params);
        snprintf(s.params + used, sizeof(s.params) - used, "%s%s=%s", k > 3 ? "&" : "",
                 FH.req.params[k].name, FH.req.params[k].value);
    }
    s.consistent = FH.req.consistency_codes != NULL && FH.req.consistency_ms > 0 &&
                   strcmp(FH.req.consistency_codes[0], "NoSuchEntity") == 0;
    assert_string_equal(s.action, action);
    return s;
}

static void reply(const char *action, int result, long status, const char *code, const char *body) {
    expect(action);
    ol_aws_response res = {.struct_size = sizeof(ol_aws_response),
                           .result = result,
                           .status = status,
                           .body = body ? body : "",
                           .body_len = body ? strlen(body) : 0,
                           .error_code = code,
                           .error_message = code ? "the message" : NULL,
                           .attempts = 1};
    fake_answer(&res);
}

static void reply_ok(const char *action, const char *body) {
    reply(action, 0, 200, NULL, body);
}

static void reply_error(const char *action, long status, const char *code) {
    reply(action, OL_EAWS, status, code, "<ErrorResponse/>");
}

static const char create_user_body[] =
    "<CreateUserResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><CreateUserResult>"
    "<User><Path>/</Path><UserName>acme-prod</UserName><UserId>AIDA1</UserId>"
    "<Arn>arn:aws:iam::123456789012:user/acme-prod</Arn>"
    "<CreateDate>2024-05-01T10:00:00Z</CreateDate></User></CreateUserResult>"
    "<ResponseMetadata><RequestId>r1</RequestId></ResponseMetadata></CreateUserResponse>";

static const char get_user_body[] =
    "<GetUserResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><GetUserResult>"
    "<User><Path>/</Path><UserName>acme-prod</UserName><UserId>AIDA1</UserId>"
    "<Arn>arn:aws:iam::123456789012:user/acme-prod</Arn>"
    "<CreateDate>2024-05-01T10:00:00Z</CreateDate></User></GetUserResult></GetUserResponse>";

/* A ListAccessKeys answer with the given key ids (NULL-terminated), each a day apart. */
static const char *list_body(const char *const *ids) {
    static char body[2048];
    snprintf(body, sizeof(body),
             "<ListAccessKeysResponse><ListAccessKeysResult>"
             "<AccessKeyMetadata>");
    for (int i = 0; ids[i] != NULL; i++) {
        size_t used = strlen(body);
        snprintf(body + used, sizeof(body) - used,
                 "<member><UserName>acme-prod</UserName><AccessKeyId>%s</AccessKeyId>"
                 "<Status>Active</Status><CreateDate>2024-05-0%dT10:00:00Z</CreateDate>"
                 "</member>",
                 ids[i], i + 1);
    }
    size_t used = strlen(body);
    snprintf(body + used, sizeof(body) - used,
             "</AccessKeyMetadata><IsTruncated>false</IsTruncated></ListAccessKeysResult>"
             "</ListAccessKeysResponse>");
    return body;
}

static const char *create_key_body(const char *id) {
    static char body[1024];
    snprintf(body, sizeof(body),
             "<CreateAccessKeyResponse><CreateAccessKeyResult><AccessKey>"
             "<UserName>acme-prod</UserName><AccessKeyId>%s</AccessKeyId><Status>Active</Status>"
             "<SecretAccessKey>%s</SecretAccessKey><CreateDate>2024-06-01T10:00:00Z</CreateDate>"
             "</AccessKey></CreateAccessKeyResult></CreateAccessKeyResponse>",
             id, SECRET);
    return body;
}

#define OWNED_TAGS                                                                                 \
    "<member><Key>managed-by</Key><Value>opsline</Value></member>"                                 \
    "<member><Key>product</Key><Value>acme</Value></member>"                                       \
    "<member><Key>environment</Key><Value>production</Value></member>"

static const char owned_tags_body[] = "<ListUserTagsResponse><ListUserTagsResult><Tags>" OWNED_TAGS
                                      "</Tags></ListUserTagsResult></ListUserTagsResponse>";

/* The user exists: CreateUser (when the journal does not know the user) says so, then the
 * reads of observe are all in flight at once; the user, its (absent) login profile and its
 * ownership tags are answered, ListAccessKeys is left to the test. */
static void existing_user_without_login_profile(void) {
    if (strcmp(fake_req_param(&FH.req, "Action"), "CreateUser") == 0) {
        reply_error("CreateUser", 409, "EntityAlreadyExists");
        assert_true(expect("ListAccessKeys").consistent); /* IAM may lag behind CreateUser */
    } else {
        assert_false(expect("ListAccessKeys").consistent);
    }
    assert_int_equal(fake_in_flight(), 4);
    reply_ok("GetUser", get_user_body);
    reply_error("GetLoginProfile", 404, "NoSuchEntity");
    reply_ok("ListUserTags", owned_tags_body);
}

static void create_key_ok(const char *id) {
    sent s = expect("CreateAccessKey");
    assert_true(s.flags & OL_AWS_NOT_IDEMPOTENT);
    assert_true(s.consistent);
    reply_ok("CreateAccessKey", create_key_body(id));
}

static size_t jcount(const char *event, const char *id) {
    return journal_count(FH.journal, USER, event, id);
}

static void assert_no_secret_leaked(void) {
    assert_null(strstr(FH.logs, SECRET));
    assert_null(strstr(FH.reason, SECRET));
}

/* ---- tests ------------------------------------------------------------------------------ */

static void creates_user_and_key_and_flags_the_secret(void **state) {
    fake_host *f = *state;
    fake_set_opt("tags", "team=web,cost=42");
    start();
    sent s = expect("CreateUser");
    assert_string_equal(s.params, "Path=/&Tags.member.1.Key=managed-by&Tags.member.1.Value=opsline&"
                                  "Tags.member.2.Key=product&Tags.member.2.Value=acme&"
                                  "Tags.member.3.Key=environment&Tags.member.3.Value=production&"
                                  "Tags.member.4.Key=team&Tags.member.4.Value=web&"
                                  "Tags.member.5.Key=cost&Tags.member.5.Value=42");
    reply_ok("CreateUser", create_user_body);
    /* A new user has no key, no login profile and the tags it was created with: straight to
     * CreateAccessKey, which IAM may not accept until the user has propagated. */
    assert_int_equal(jcount("access_key_requested", NULL), 1);
    assert_int_equal(jcount("user_created", USER), 1);
    assert_string_equal(fake_bag(OL_KEY_IAM_USER_CREATED), "true");
    assert_string_equal(f->checkpoints, "iam.before_create_access_key;");
    create_key_ok("AKIANEW1");
    stop();

    assert_int_equal(f->outcome, OL_OUTCOME_CREATED);
    assert_string_equal(fake_bag(OL_KEY_IAM_USER), USER);
    assert_string_equal(fake_bag(OL_KEY_IAM_USER_ARN), "arn:aws:iam::123456789012:user/acme-prod");
    assert_string_equal(fake_bag(OL_KEY_ACCESS_KEY_ID), "AKIANEW1");
    assert_string_equal(fake_bag(OL_KEY_SECRET_ACCESS_KEY), SECRET);
    assert_true(bag_is_secret(&FH.bag, OL_KEY_SECRET_ACCESS_KEY));
    assert_false(bag_is_secret(&FH.bag, OL_KEY_ACCESS_KEY_ID));
    assert_int_equal(jcount("access_key_created", "AKIANEW1"), 1);
    assert_string_equal(f->checkpoints,
                        "iam.before_create_access_key;iam.after_create_access_key;");
    assert_int_equal(f->requests, 2);
    assert_no_secret_leaked();
}

static void reads_a_known_user_in_parallel_and_writes_nothing(void **state) {
    fake_host *f = *state;
    journal_append(f->journal, USER, "iam", "user_created", USER, NULL);
    journal_append(f->journal, USER, "iam", "access_key_created", "AKIAOK", NULL);
    journal_append(f->journal, USER, "dotenv", "secret_stored", "AKIAOK", "x.env");
    start();
    assert_int_equal(fake_in_flight(), 4); /* GetUser, GetLoginProfile, ListUserTags, keys */
    existing_user_without_login_profile();
    const char *keys[] = {"AKIAOK", NULL};
    reply_ok("ListAccessKeys", list_body(keys));
    stop();
    assert_int_equal(f->outcome, OL_OUTCOME_UNCHANGED);
    assert_int_equal(f->requests, 4);
    assert_null(fake_bag(OL_KEY_IAM_USER_CREATED));
}

static void creates_a_known_user_that_was_deleted(void **state) {
    fake_host *f = *state;
    journal_append(f->journal, USER, "iam", "user_created", USER, NULL);
    start();
    reply_error("GetUser", 404, "NoSuchEntity");
    reply_error("GetLoginProfile", 404, "NoSuchEntity");
    reply_error("ListUserTags", 404, "NoSuchEntity");
    assert_int_equal(f->done_calls, 0);
    reply_error("ListAccessKeys", 404, "NoSuchEntity");
    reply_ok("CreateUser", create_user_body);
    create_key_ok("AKIANEW7");
    stop();
    assert_int_equal(f->outcome, OL_OUTCOME_CREATED);
    assert_non_null(strstr(f->logs, "no longer exists; creating it"));
}

static void fails_after_every_read_answered_naming_the_first_error(void **state) {
    fake_host *f = *state;
    journal_append(f->journal, USER, "iam", "user_created", USER, NULL);
    start();
    reply_error("ListUserTags", 403, "AccessDenied");
    reply_ok("GetUser", get_user_body);
    reply_error("GetLoginProfile", 404, "NoSuchEntity");
    assert_int_equal(f->done_calls, 0);
    const char *none[] = {NULL};
    reply_ok("ListAccessKeys", list_body(none));
    stop();
    assert_int_equal(f->outcome, OL_OUTCOME_FAILED);
    assert_string_equal(f->reason, "ListUserTags for user acme-prod failed: AccessDenied: the "
                                   "message (HTTP 403)");
    assert_int_equal(f->requests, 4);
}

static void rejects_tags_that_would_replace_the_ownership_tags(void **state) {
    (void)state;
    fake_set_opt("tags", "product=other");
    void *st = NULL;
    assert_int_equal(opsline_plugin()->init(NULL, &FH.api, &st), OL_ECONFIG);
    assert_non_null(strstr(FH.logs, "key 'product' is set by opsline itself"));
}

static void keeps_a_stored_key_and_changes_nothing(void **state) {
    fake_host *f = *state;
    journal_append(f->journal, USER, "iam", "access_key_created", "AKIAOK", NULL);
    journal_append(f->journal, USER, "dotenv", "secret_stored", "AKIAOK", "x.env");
    start();
    existing_user_without_login_profile();
    const char *keys[] = {"AKIAOK", NULL};
    reply_ok("ListAccessKeys", list_body(keys));
    stop();
    assert_int_equal(f->outcome, OL_OUTCOME_UNCHANGED);
    assert_string_equal(fake_bag(OL_KEY_ACCESS_KEY_ID), "AKIAOK");
    assert_null(fake_bag(OL_KEY_SECRET_ACCESS_KEY));
    assert_string_equal(fake_bag(OL_KEY_IAM_USER_ARN), "arn:aws:iam::123456789012:user/acme-prod");
    assert_int_equal(f->requests, 4); /* the reads only: no CreateUser, no key written */
    assert_string_equal(f->checkpoints, "");
}

static void replaces_a_key_whose_secret_was_lost(void **state) {
    fake_host *f = *state;
    /* a previous run died after CreateAccessKey, before any secret stage stored it */
    journal_append(f->journal, USER, "iam", "access_key_requested", NULL, NULL);
    journal_append(f->journal, USER, "iam", "access_key_created", "AKIALOST", NULL);
    start();
    existing_user_without_login_profile();
    const char *keys[] = {"AKIALOST", NULL};
    reply_ok("ListAccessKeys", list_body(keys));
    sent s = expect("DeleteAccessKey");
    assert_string_equal(s.params, "AccessKeyId=AKIALOST");
    reply_ok("DeleteAccessKey", "<DeleteAccessKeyResponse/>");
    assert_int_equal(jcount("access_key_deleted", "AKIALOST"), 1);
    create_key_ok("AKIANEW2");
    stop();
    assert_int_equal(f->outcome, OL_OUTCOME_CREATED);
    assert_string_equal(fake_bag(OL_KEY_ACCESS_KEY_ID), "AKIANEW2");
    assert_non_null(strstr(f->logs, "deleted access key AKIALOST"));
    assert_no_secret_leaked();
}

static void deletes_a_key_that_appeared_after_an_unanswered_request(void **state) {
    fake_host *f = *state;
    /* a previous run saw AKIAHUMAN, asked for a key and died before the answer */
    journal_append(f->journal, USER, "iam", "access_key_seen", "AKIAHUMAN", NULL);
    journal_append(f->journal, USER, "iam", "access_key_requested", NULL, NULL);
    start();
    existing_user_without_login_profile();
    const char *keys[] = {"AKIAHUMAN", "AKIAGHOST", NULL};
    reply_ok("ListAccessKeys", list_body(keys));
    sent s = expect("DeleteAccessKey");
    assert_string_equal(s.params, "AccessKeyId=AKIAGHOST");
    reply_ok("DeleteAccessKey", "<DeleteAccessKeyResponse/>");
    assert_int_equal(jcount("access_key_reconciled", NULL), 1);
    create_key_ok("AKIANEW3");
    stop();
    assert_int_equal(f->outcome, OL_OUTCOME_CREATED);
    assert_int_equal(jcount("access_key_deleted", "AKIAHUMAN"), 0);
    assert_non_null(strstr(f->logs, "AKIAHUMAN not created by opsline"));
    /* the request is resolved: a rerun would not treat a new foreign key as ours */
    assert_int_equal(pending_requests(&FH.api, NULL), 0);
}

static void never_touches_keys_it_did_not_create(void **state) {
    fake_host *f = *state;
    start();
    existing_user_without_login_profile();
    const char *keys[] = {"AKIAHUMAN", NULL};
    reply_ok("ListAccessKeys", list_body(keys));
    assert_int_equal(jcount("access_key_seen", "AKIAHUMAN"), 1);
    create_key_ok("AKIANEW4");
    stop();
    assert_int_equal(f->outcome, OL_OUTCOME_CREATED);
    assert_int_equal(jcount("access_key_deleted", NULL), 0);
}

static void refuses_a_third_key(void **state) {
    fake_host *f = *state;
    start();
    existing_user_without_login_profile();
    const char *keys[] = {"AKIAONE", "AKIATWO", NULL};
    reply_ok("ListAccessKeys", list_body(keys));
    stop();
    assert_int_equal(f->outcome, OL_OUTCOME_FAILED);
    assert_non_null(strstr(f->reason, "user acme-prod already has 2 access keys not created by "
                                      "opsline (AKIAONE, AKIATWO); IAM allows 2"));
    assert_non_null(strstr(f->reason, "aws iam delete-access-key"));
    assert_int_equal(jcount("access_key_requested", NULL), 0);
}

static void reconciles_an_unknown_create_outcome_then_creates_once(void **state) {
    fake_host *f = *state;
    start();
    reply_ok("CreateUser", create_user_body);
    reply("CreateAccessKey", OL_EUNKNOWN, 0, NULL, NULL);
    assert_int_equal(jcount("access_key_unknown", NULL), 1);
    const char *keys[] = {"AKIAMAYBE", NULL};
    reply_ok("ListAccessKeys", list_body(keys));
    sent s = expect("DeleteAccessKey");
    assert_string_equal(s.params, "AccessKeyId=AKIAMAYBE");
    reply_error("DeleteAccessKey", 404, "NoSuchEntity"); /* already gone is fine */
    create_key_ok("AKIANEW5");
    stop();
    assert_int_equal(f->outcome, OL_OUTCOME_CREATED);
    assert_int_equal(jcount("access_key_requested", NULL), 2);
    assert_int_equal(pending_requests(&FH.api, NULL), 0);
}

static void gives_up_after_a_second_unknown_outcome(void **state) {
    fake_host *f = *state;
    start();
    reply_ok("CreateUser", create_user_body);
    const char *none[] = {NULL};
    reply("CreateAccessKey", OL_EUNKNOWN, 0, NULL, NULL);
    reply_ok("ListAccessKeys", list_body(none));
    reply("CreateAccessKey", OL_ETIMEDOUT, 0, NULL, NULL);
    stop();
    assert_int_equal(f->outcome, OL_OUTCOME_FAILED);
    assert_non_null(strstr(f->reason, "outcome unknown twice"));
    /* left pending for the next run to reconcile */
    assert_int_equal(pending_requests(&FH.api, NULL), 1);
}

static void warns_about_a_console_password_without_removing_it(void **state) {
    fake_host *f = *state;
    fake_set_opt("create_access_key", "false");
    start();
    reply_error("CreateUser", 409, "EntityAlreadyExists");
    reply_ok("GetUser", get_user_body);
    reply_ok("ListUserTags", owned_tags_body);
    reply_ok("GetLoginProfile", "<GetLoginProfileResponse><GetLoginProfileResult><LoginProfile>"
                                "<UserName>acme-prod</UserName></LoginProfile>"
                                "</GetLoginProfileResult></GetLoginProfileResponse>");
    const char *none[] = {NULL};
    reply_ok("ListAccessKeys", list_body(none));
    stop();
    assert_int_equal(f->outcome, OL_OUTCOME_UNCHANGED);
    assert_non_null(strstr(f->logs, "WARN user acme-prod has a console password (login "
                                    "profile); opsline users are programmatic-only"));
    assert_null(fake_bag(OL_KEY_ACCESS_KEY_ID));
}

static void adds_missing_tags_to_an_existing_user(void **state) {
    fake_host *f = *state;
    fake_set_opt("tags", "team=web,cost=42");
    fake_set_opt("create_access_key", "false");
    start();
    reply_error("CreateUser", 409, "EntityAlreadyExists");
    reply_ok("GetUser", get_user_body);
    reply_error("GetLoginProfile", 404, "NoSuchEntity");
    reply_ok("ListUserTags", "<ListUserTagsResponse><ListUserTagsResult><Tags>" OWNED_TAGS
                             "<member><Key>team</Key><Value>web</Value></member>"
                             "<member><Key>cost</Key><Value>7</Value></member>"
                             "<member><Key>owner</Key><Value>bob</Value></member>"
                             "</Tags></ListUserTagsResult></ListUserTagsResponse>");
    const char *none[] = {NULL};
    reply_ok("ListAccessKeys", list_body(none));
    sent s = expect("TagUser");
    assert_string_equal(s.params, "Tags.member.1.Key=cost&Tags.member.1.Value=42");
    reply_ok("TagUser", "<TagUserResponse/>");
    stop();
    assert_int_equal(f->outcome, OL_OUTCOME_UPDATED);
    assert_string_equal(f->reason, "changed: tags");
}

static void reports_an_aws_error_with_code_and_user(void **state) {
    fake_host *f = *state;
    start();
    reply_error("CreateUser", 403, "AccessDenied");
    stop();
    assert_int_equal(f->outcome, OL_OUTCOME_FAILED);
    assert_string_equal(f->reason, "CreateUser for user acme-prod failed: AccessDenied: the "
                                   "message (HTTP 403)");
}

static void journals_a_refused_create_as_resolved(void **state) {
    fake_host *f = *state;
    start();
    reply_ok("CreateUser", create_user_body);
    reply_error("CreateAccessKey", 409, "LimitExceeded");
    stop();
    assert_int_equal(f->outcome, OL_OUTCOME_FAILED);
    assert_non_null(strstr(f->reason, "LimitExceeded"));
    assert_int_equal(pending_requests(&FH.api, NULL), 0);
}

/* The journal's fsync before CreateAccessKey answers status: the item fails with reason
 * and nothing follows CreateUser. */
static void expect_no_create_key_after_sync(fake_host *f, int status, const char *reason) {
    f->sync_result = status;
    start();
    reply_ok("CreateUser", create_user_body);
    stop();
    assert_int_equal(f->outcome, OL_OUTCOME_FAILED);
    assert_string_equal(f->reason, reason);
    assert_int_equal(f->requests, 1); /* CreateUser only */
    assert_string_equal(f->checkpoints, "");
    assert_int_equal(fake_in_flight(), 0);
}

static void sends_no_create_key_when_the_journal_cannot_reach_the_disk(void **state) {
    expect_no_create_key_after_sync(*state, OL_EIO,
                                    "cannot fsync the journal before the access key request for "
                                    "user acme-prod; no key created");
}

/* OL_ECANCELED: the host's answer for a stage its time limit abandoned meanwhile. */
static void sends_no_create_key_when_the_stage_ended_while_the_journal_synced(void **state) {
    expect_no_create_key_after_sync(*state, OL_ECANCELED,
                                    "the access key request for user acme-prod was not sent (the "
                                    "stage had ended); no key created");
}

/* The user-name rule itself is the host's (tests/unit/test_names.c); validate asks it. */
static void validates_user_names_and_paths(void **state) {
    fake_host *f = *state;
    assert_true(valid_path("/"));
    assert_true(valid_path("/opsline/apps/"));
    assert_false(valid_path("opsline/"));
    assert_false(valid_path("/opsline"));
    assert_false(valid_path("/a b/"));

    void *st = NULL;
    assert_int_equal(opsline_plugin()->init(NULL, &FH.api, &st), 0);
    f->name = "bad name";
    assert_int_equal(opsline_plugin()->validate(NULL, NULL, st), OL_EINVAL);
    assert_non_null(strstr(f->logs, "has the character ' '"));
    f->name = USER;
    assert_int_equal(opsline_plugin()->validate(NULL, NULL, st), 0);
    opsline_plugin()->fini(st);

    fake_set_opt("path", "/no-trailing-slash");
    st = NULL;
    assert_int_equal(opsline_plugin()->init(NULL, &FH.api, &st), OL_ECONFIG);
    assert_null(st);
}

static void logs_every_state_transition_at_debug_level(void **state) {
    fake_host *f = *state;
    assert_string_equal(opsline_plugin()->version, "2.2.1");
    start();
    existing_user_without_login_profile();
    const char *none[] = {NULL};
    reply_ok("ListAccessKeys", list_body(none));
    create_key_ok("AKIANEW6");
    stop();
    assert_string_equal(f->debug, "iam: state start -> CreateUser\n"
                                  "iam: state CreateUser -> observe\n"
                                  "iam: state observe -> secret_find\n"
                                  "iam: state secret_find -> CreateAccessKey\n"
                                  "iam: state CreateAccessKey -> done\n");
}

int main(void) {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(creates_user_and_key_and_flags_the_secret),
        T(reads_a_known_user_in_parallel_and_writes_nothing),
        T(creates_a_known_user_that_was_deleted),
        T(fails_after_every_read_answered_naming_the_first_error),
        T(rejects_tags_that_would_replace_the_ownership_tags),
        T(keeps_a_stored_key_and_changes_nothing),
        T(replaces_a_key_whose_secret_was_lost),
        T(deletes_a_key_that_appeared_after_an_unanswered_request),
        T(never_touches_keys_it_did_not_create),
        T(refuses_a_third_key),
        T(reconciles_an_unknown_create_outcome_then_creates_once),
        T(gives_up_after_a_second_unknown_outcome),
        T(warns_about_a_console_password_without_removing_it),
        T(adds_missing_tags_to_an_existing_user),
        T(reports_an_aws_error_with_code_and_user),
        T(journals_a_refused_create_as_resolved),
        T(sends_no_create_key_when_the_journal_cannot_reach_the_disk),
        T(sends_no_create_key_when_the_stage_ended_while_the_journal_synced),
        T(validates_user_names_and_paths),
        T(logs_every_state_transition_at_debug_level),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
