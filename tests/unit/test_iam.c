/* Tests for plugins/iam/iam.c: the apply state machine driven request by request through a
 * fake host that answers with IAM's XML (parsed by the real xml module) and records to the
 * real journal, so the lost-key logic is checked against what a rerun would read back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../plugins/iam/iam.c"

#include "aws/xml.h"
#include "error.h"
#include "journal.h"

#define USER "acme-prod"
#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"

typedef struct sent {
    char action[64];
    char params[1024]; /* "Name=value&..." after Action/Version/UserName, for asserts */
    unsigned flags;
    int consistent;
    ol_aws_cb cb;
    void *arg;
} sent;

typedef struct bag_entry {
    char key[64];
    char value[256];
    unsigned flags;
} bag_entry;

typedef struct fake {
    char dir[64];
    journal *j;
    sent pending;
    int has_pending;
    int n_sent;
    bag_entry bag[8];
    size_t n_bag;
    int done_calls;
    ol_outcome outcome;
    char reason[1024];
    char logs[8192];
    char checkpoints[256];
    const char *user;
    int create_access_key;
    const ol_kv *tags;
    size_t n_tags;
    const char *path;
} fake;

static fake *F;

static void fake_log(ol_stage *s, const ol_item *i, ol_log_level l, const char *fmt, ...) {
    (void)s, (void)i;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    const char *lv[] = {"ERROR", "WARN", "INFO", "DEBUG"};
    size_t used = strlen(F->logs);
    snprintf(F->logs + used, sizeof(F->logs) - used, "%s %s\n", lv[l], line);
}

static const char *fake_opt_string(ol_stage *s, const char *name) {
    (void)s;
    return strcmp(name, "path") == 0 ? F->path : NULL;
}
static int fake_opt_bool(ol_stage *s, const char *name) {
    (void)s;
    return strcmp(name, "create_access_key") == 0 ? F->create_access_key : 0;
}
static size_t fake_opt_map(ol_stage *s, const char *name, const ol_kv **out) {
    (void)s;
    *out = F->tags;
    return strcmp(name, "tags") == 0 ? F->n_tags : 0;
}
static const char *fake_item_name(const ol_item *i) {
    (void)i;
    return F->user;
}

static bag_entry *bag_find(const char *key) {
    for (size_t i = 0; i < F->n_bag; i++)
        if (strcmp(F->bag[i].key, key) == 0)
            return &F->bag[i];
    return NULL;
}
static const char *fake_get(const ol_item *i, const char *key) {
    (void)i;
    bag_entry *e = bag_find(key);
    return e ? e->value : NULL;
}
static int fake_set(ol_item *i, const char *key, const char *value, unsigned flags) {
    (void)i;
    bag_entry *e = bag_find(key);
    if (e == NULL) {
        assert_true(F->n_bag < 8);
        e = &F->bag[F->n_bag++];
    }
    snprintf(e->key, sizeof(e->key), "%s", key);
    snprintf(e->value, sizeof(e->value), "%s", value);
    e->flags = flags;
    return 0;
}

static int fake_send(ol_item *i, const ol_aws_request *req, ol_aws_cb cb, void *arg) {
    (void)i;
    assert_false(F->has_pending); /* one request at a time */
    assert_string_equal(req->service, "iam");
    assert_string_equal(req->method, "POST");
    assert_true(req->n_params >= 3);
    assert_string_equal(req->params[0].name, "Action");
    assert_string_equal(req->params[1].name, "Version");
    assert_string_equal(req->params[1].value, "2010-05-08");
    assert_string_equal(req->params[2].name, "UserName");
    assert_string_equal(req->params[2].value, F->user);
    sent *s = &F->pending;
    memset(s, 0, sizeof(*s));
    snprintf(s->action, sizeof(s->action), "%s", req->params[0].value);
    for (size_t k = 3; k < req->n_params; k++) {
        size_t used = strlen(s->params);
        snprintf(s->params + used, sizeof(s->params) - used, "%s%s=%s", k > 3 ? "&" : "",
                 req->params[k].name, req->params[k].value);
    }
    s->flags = req->flags;
    s->consistent = req->consistency_codes != NULL && req->consistency_ms > 0 &&
                    strcmp(req->consistency_codes[0], "NoSuchEntity") == 0;
    s->cb = cb;
    s->arg = arg;
    F->has_pending = 1;
    F->n_sent++;
    return 0;
}

static int fake_journal_append(ol_item *i, ol_stage *s, const char *event, const char *id) {
    (void)i, (void)s;
    return journal_append(F->j, F->user, "iam", event, id, NULL);
}
static size_t fake_journal_count(const ol_item *i, const char *event, const char *id) {
    (void)i;
    return journal_count(F->j, F->user, event, id);
}
static void fake_done(ol_stage *s, ol_item *i, ol_outcome o, const char *reason) {
    (void)s, (void)i;
    F->done_calls++;
    F->outcome = o;
    snprintf(F->reason, sizeof(F->reason), "%s", reason ? reason : "");
}
static void fake_checkpoint(const ol_item *i, const char *point) {
    (void)i;
    size_t used = strlen(F->checkpoints);
    snprintf(F->checkpoints + used, sizeof(F->checkpoints) - used, "%s;", point);
    /* the secret is in the bag before the kill point after the key */
    if (strcmp(point, "iam.after_create_access_key") == 0) {
        bag_entry *e = bag_find(OL_KEY_SECRET_ACCESS_KEY);
        assert_non_null(e);
        assert_int_equal(journal_count(F->j, F->user, "access_key_created", NULL) > 0, 1);
    }
}

/* The host's answer with one store ("dotenv") whose journal records are the truth: the
 * newest listed key it holds, or none. */
static int fake_secret_find(ol_item *i, const char *const *ids, size_t n, ol_find_cb cb,
                            void *arg) {
    const char *found = NULL;
    for (size_t k = 0; k < n; k++)
        if (journal_count(F->j, F->user, "secret_stored", ids[k]) > 0)
            found = ids[k];
    if (found != NULL)
        fake_set(i, OL_KEY_ACCESS_KEY_ID, found, 0);
    cb(arg, found, NULL, 0, NULL);
    return 0;
}

static const ol_host fake_host = {
    .struct_size = sizeof(ol_host),
    .abi_major = OL_ABI_MAJOR,
    .abi_minor = OL_ABI_MINOR,
    .strerror = ol_strerror,
    .log = fake_log,
    .opt_string = fake_opt_string,
    .opt_bool = fake_opt_bool,
    .opt_map = fake_opt_map,
    .item_name = fake_item_name,
    .item_get = fake_get,
    .item_set = fake_set,
    .aws_send = fake_send,
    .xml_parse = xml_parse,
    .xml_count = xml_count,
    .xml_text = xml_text,
    .xml_free = xml_free,
    .journal_append = fake_journal_append,
    .journal_count = fake_journal_count,
    .done = fake_done,
    .checkpoint = fake_checkpoint,
    .secret_find = fake_secret_find,
};

static int setup(void **state) {
    fake *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/ol-iam-XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    char *err = NULL;
    if (journal_open(f->dir, &f->j, &err) != 0) {
        free(err);
        free(f);
        return -1;
    }
    f->user = USER;
    f->create_access_key = 1;
    f->path = "/";
    F = f;
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fake *f = *state;
    journal_close(f->j);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    int rc = system(cmd);
    free(f);
    F = NULL;
    return rc == 0 ? 0 : -1;
}

/* ---- driving the stage ----------------------------------------------------------------- */

static void *stage_state;

static void start(void) {
    const ol_plugin *p = opsline_plugin();
    assert_int_equal(p->init(NULL, &fake_host, &stage_state), 0);
    assert_int_equal(p->apply(NULL, NULL, stage_state), 0);
}

static void stop(void) {
    assert_false(F->has_pending);
    assert_int_equal(F->done_calls, 1);
    opsline_plugin()->fini(stage_state);
    stage_state = NULL;
}

/* Asserts the pending request is action and returns a copy; the reply is still owed. */
static sent expect(const char *action) {
    assert_true(F->has_pending);
    assert_string_equal(F->pending.action, action);
    return F->pending;
}

static void reply(const char *action, int result, long status, const char *code, const char *body) {
    sent s = expect(action);
    F->has_pending = 0;
    ol_aws_response res = {.result = result,
                           .status = status,
                           .body = body ? body : "",
                           .body_len = body ? strlen(body) : 0,
                           .error_code = code,
                           .error_message = code ? "the message" : NULL,
                           .attempts = 1};
    s.cb(s.arg, &res);
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

static void existing_user_without_login_profile(void) {
    reply_error("CreateUser", 409, "EntityAlreadyExists");
    reply_ok("GetUser", get_user_body);
    reply_error("GetLoginProfile", 404, "NoSuchEntity");
}

static void create_key_ok(const char *id) {
    sent s = expect("CreateAccessKey");
    assert_true(s.flags & OL_AWS_NOT_IDEMPOTENT);
    assert_true(s.consistent);
    reply_ok("CreateAccessKey", create_key_body(id));
}

static size_t jcount(const char *event, const char *id) {
    return journal_count(F->j, USER, event, id);
}

static void assert_no_secret_leaked(void) {
    assert_null(strstr(F->logs, SECRET));
    assert_null(strstr(F->reason, SECRET));
}

/* ---- tests ------------------------------------------------------------------------------ */

static void creates_user_and_key_and_flags_the_secret(void **state) {
    fake *f = *state;
    static const ol_kv tags[] = {{"team", "web"}, {"cost", "42"}};
    f->tags = tags;
    f->n_tags = 2;
    start();
    sent s = expect("CreateUser");
    assert_string_equal(s.params, "Path=/&Tags.member.1.Key=team&Tags.member.1.Value=web&"
                                  "Tags.member.2.Key=cost&Tags.member.2.Value=42");
    reply_ok("CreateUser", create_user_body);
    s = expect("ListAccessKeys");
    assert_true(s.consistent); /* IAM may not know the new user yet */
    const char *none[] = {NULL};
    reply_ok("ListAccessKeys", list_body(none));
    assert_int_equal(jcount("access_key_requested", NULL), 1);
    assert_string_equal(f->checkpoints, "iam.before_create_access_key;");
    create_key_ok("AKIANEW1");
    stop();

    assert_int_equal(f->outcome, OL_OUTCOME_CREATED);
    assert_string_equal(fake_get(NULL, OL_KEY_IAM_USER), USER);
    assert_string_equal(fake_get(NULL, OL_KEY_IAM_USER_ARN),
                        "arn:aws:iam::123456789012:user/acme-prod");
    assert_string_equal(fake_get(NULL, OL_KEY_ACCESS_KEY_ID), "AKIANEW1");
    bag_entry *e = bag_find(OL_KEY_SECRET_ACCESS_KEY);
    assert_non_null(e);
    assert_string_equal(e->value, SECRET);
    assert_int_equal(e->flags, OL_BAG_SECRET);
    assert_int_equal(bag_find(OL_KEY_ACCESS_KEY_ID)->flags, 0);
    assert_int_equal(jcount("access_key_created", "AKIANEW1"), 1);
    assert_string_equal(f->checkpoints,
                        "iam.before_create_access_key;iam.after_create_access_key;");
    assert_no_secret_leaked();
}

static void keeps_a_stored_key_and_changes_nothing(void **state) {
    fake *f = *state;
    journal_append(f->j, USER, "iam", "access_key_created", "AKIAOK", NULL);
    journal_append(f->j, USER, "dotenv", "secret_stored", "AKIAOK", "x.env");
    start();
    existing_user_without_login_profile();
    const char *keys[] = {"AKIAOK", NULL};
    reply_ok("ListAccessKeys", list_body(keys));
    stop();
    assert_int_equal(f->outcome, OL_OUTCOME_UNCHANGED);
    assert_string_equal(fake_get(NULL, OL_KEY_ACCESS_KEY_ID), "AKIAOK");
    assert_null(fake_get(NULL, OL_KEY_SECRET_ACCESS_KEY));
    assert_string_equal(fake_get(NULL, OL_KEY_IAM_USER_ARN),
                        "arn:aws:iam::123456789012:user/acme-prod");
    assert_int_equal(f->n_sent, 4); /* no CreateAccessKey, no DeleteAccessKey */
    assert_string_equal(f->checkpoints, "");
}

static void replaces_a_key_whose_secret_was_lost(void **state) {
    fake *f = *state;
    /* a previous run died after CreateAccessKey, before any secret stage stored it */
    journal_append(f->j, USER, "iam", "access_key_requested", NULL, NULL);
    journal_append(f->j, USER, "iam", "access_key_created", "AKIALOST", NULL);
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
    assert_string_equal(fake_get(NULL, OL_KEY_ACCESS_KEY_ID), "AKIANEW2");
    assert_non_null(strstr(f->logs, "deleted access key AKIALOST"));
    assert_no_secret_leaked();
}

static void deletes_a_key_that_appeared_after_an_unanswered_request(void **state) {
    fake *f = *state;
    /* a previous run saw AKIAHUMAN, asked for a key and died before the answer */
    journal_append(f->j, USER, "iam", "access_key_seen", "AKIAHUMAN", NULL);
    journal_append(f->j, USER, "iam", "access_key_requested", NULL, NULL);
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
    assert_int_equal(pending_requests(&fake_host, NULL), 0);
}

static void never_touches_keys_it_did_not_create(void **state) {
    fake *f = *state;
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
    fake *f = *state;
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
    fake *f = *state;
    start();
    reply_ok("CreateUser", create_user_body);
    const char *none[] = {NULL};
    reply_ok("ListAccessKeys", list_body(none));
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
    assert_int_equal(pending_requests(&fake_host, NULL), 0);
}

static void gives_up_after_a_second_unknown_outcome(void **state) {
    fake *f = *state;
    start();
    reply_ok("CreateUser", create_user_body);
    const char *none[] = {NULL};
    reply_ok("ListAccessKeys", list_body(none));
    reply("CreateAccessKey", OL_EUNKNOWN, 0, NULL, NULL);
    reply_ok("ListAccessKeys", list_body(none));
    reply("CreateAccessKey", OL_ETIMEDOUT, 0, NULL, NULL);
    stop();
    assert_int_equal(f->outcome, OL_OUTCOME_FAILED);
    assert_non_null(strstr(f->reason, "outcome unknown twice"));
    /* left pending for the next run to reconcile */
    assert_int_equal(pending_requests(&fake_host, NULL), 1);
}

static void warns_about_a_console_password_without_removing_it(void **state) {
    fake *f = *state;
    f->create_access_key = 0;
    start();
    reply_error("CreateUser", 409, "EntityAlreadyExists");
    reply_ok("GetUser", get_user_body);
    reply_ok("GetLoginProfile", "<GetLoginProfileResponse><GetLoginProfileResult><LoginProfile>"
                                "<UserName>acme-prod</UserName></LoginProfile>"
                                "</GetLoginProfileResult></GetLoginProfileResponse>");
    const char *none[] = {NULL};
    reply_ok("ListAccessKeys", list_body(none));
    stop();
    assert_int_equal(f->outcome, OL_OUTCOME_UNCHANGED);
    assert_non_null(strstr(f->logs, "WARN user acme-prod has a console password (login "
                                    "profile); opsline users are programmatic-only"));
    assert_null(fake_get(NULL, OL_KEY_ACCESS_KEY_ID));
}

static void adds_missing_tags_to_an_existing_user(void **state) {
    fake *f = *state;
    static const ol_kv tags[] = {{"team", "web"}, {"cost", "42"}};
    f->tags = tags;
    f->n_tags = 2;
    f->create_access_key = 0;
    start();
    existing_user_without_login_profile();
    reply_ok("ListUserTags", "<ListUserTagsResponse><ListUserTagsResult><Tags>"
                             "<member><Key>team</Key><Value>web</Value></member>"
                             "<member><Key>cost</Key><Value>7</Value></member>"
                             "<member><Key>owner</Key><Value>bob</Value></member>"
                             "</Tags></ListUserTagsResult></ListUserTagsResponse>");
    sent s = expect("TagUser");
    assert_string_equal(s.params, "Tags.member.1.Key=cost&Tags.member.1.Value=42");
    reply_ok("TagUser", "<TagUserResponse/>");
    const char *none[] = {NULL};
    reply_ok("ListAccessKeys", list_body(none));
    stop();
    assert_int_equal(f->outcome, OL_OUTCOME_UPDATED);
}

static void reports_an_aws_error_with_code_and_user(void **state) {
    fake *f = *state;
    start();
    reply_error("CreateUser", 403, "AccessDenied");
    stop();
    assert_int_equal(f->outcome, OL_OUTCOME_FAILED);
    assert_string_equal(f->reason, "CreateUser for user acme-prod failed: AccessDenied: the "
                                   "message");
}

static void journals_a_refused_create_as_resolved(void **state) {
    fake *f = *state;
    start();
    reply_ok("CreateUser", create_user_body);
    const char *none[] = {NULL};
    reply_ok("ListAccessKeys", list_body(none));
    reply_error("CreateAccessKey", 409, "LimitExceeded");
    stop();
    assert_int_equal(f->outcome, OL_OUTCOME_FAILED);
    assert_non_null(strstr(f->reason, "LimitExceeded"));
    assert_int_equal(pending_requests(&fake_host, NULL), 0);
}

static void validates_user_names_and_paths(void **state) {
    fake *f = *state;
    assert_true(valid_user_name("acme-prod"));
    assert_true(valid_user_name("a+b=c,d.e@f_g-h"));
    assert_false(valid_user_name(""));
    assert_false(valid_user_name("has space"));
    assert_false(valid_user_name("slash/no"));
    char long_name[66];
    memset(long_name, 'a', 65);
    long_name[65] = '\0';
    assert_false(valid_user_name(long_name));
    long_name[64] = '\0';
    assert_true(valid_user_name(long_name));
    assert_true(valid_path("/"));
    assert_true(valid_path("/opsline/apps/"));
    assert_false(valid_path("opsline/"));
    assert_false(valid_path("/opsline"));
    assert_false(valid_path("/a b/"));

    void *st = NULL;
    assert_int_equal(opsline_plugin()->init(NULL, &fake_host, &st), 0);
    f->user = "bad name";
    assert_int_equal(opsline_plugin()->validate(NULL, NULL, st), OL_EINVAL);
    assert_non_null(strstr(f->logs, "'bad name' is not a valid IAM user name"));
    f->user = USER;
    assert_int_equal(opsline_plugin()->validate(NULL, NULL, st), 0);
    opsline_plugin()->fini(st);

    f->path = "/no-trailing-slash";
    st = NULL;
    assert_int_equal(opsline_plugin()->init(NULL, &fake_host, &st), OL_ECONFIG);
    assert_null(st);
}

int main(void) {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(creates_user_and_key_and_flags_the_secret),
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
        T(validates_user_names_and_paths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
