/* iam: the IAM user stage. Converges one programmatic user per item (named after the item)
 * and, unless told otherwise, one access key whose secret some secret stage has stored.
 * The journal is what tells a key opsline created and stored from one whose secret was
 * lost (a crash between CreateAccessKey and the secret stage): lost keys are deleted and
 * replaced, keys opsline did not create are never touched, and a third key is never
 * attempted (IAM allows two per user). Sets iam.user, iam.user_arn, iam.access_key_id and,
 * only when it created a key in this run, the secret iam.secret_access_key.
 *
 * Journal events written here (never a secret): access_key_seen (id: a key that existed
 * before a CreateAccessKey request), access_key_requested (just before CreateAccessKey),
 * access_key_created (id), access_key_create_failed (AWS refused: nothing was created),
 * access_key_unknown (the request's outcome is unknown), access_key_reconciled (the keys
 * were listed and cleaned after an unresolved request), access_key_deleted (id). The host
 * writes secret_stored (id) per store when a store holds the key, and secret_find says
 * which listed key a configured store can still give back: that key is kept, and no new
 * key is created for a user whose key a store holds. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opsline/opsline.h"

#include "../arn.h"
#include "../owner.h"
#include "iam_lifecycle.h"

#define IAM_MAX_TAGS 50 /* IAM quota: tags per user */
#define IAM_MAX_KEYS 2  /* IAM quota: access keys per user */

/* Options, bound in init from their declarations (iam_options); borrowed until fini. */
typedef struct iam_conf {
    const ol_host *host;
    const char *path;
    ol_map tags;
    int create_access_key;
} iam_conf;

typedef struct iam_key {
    char *id;
    char *create_date; /* ISO 8601 as IAM sends it; compares like time */
    int stored;        /* its secret was stored by a secret stage */
    int orphan;        /* created by opsline, secret lost: delete */
} iam_key;

/* The states of one apply. Each but the first and the last waits for one answer: an IAM
 * request named like the state, or the host's secret_find. */
typedef enum iam_state {
    IAM_START,
    IAM_OBSERVE, /* the user's reads, in parallel (iam_observe) */
    IAM_CREATE_USER,
    IAM_TAG_USER,
    IAM_LIST_KEYS,
    IAM_FIND_SECRET,
    IAM_DELETE_KEY,
    IAM_CREATE_KEY,
    IAM_DONE
} iam_state;

/* State names; for the request states, the IAM action the state sends. */
static const char *const state_names[] = {
    [IAM_START] = "start",
    [IAM_OBSERVE] = "observe",
    [IAM_CREATE_USER] = "CreateUser",
    [IAM_TAG_USER] = "TagUser",
    [IAM_LIST_KEYS] = "ListAccessKeys",
    [IAM_FIND_SECRET] = "secret_find",
    [IAM_DELETE_KEY] = "DeleteAccessKey",
    [IAM_CREATE_KEY] = "CreateAccessKey",
    [IAM_DONE] = "done",
};

/* The reads that observe an existing user, sent together. */
typedef enum iam_read { READ_USER, READ_LOGIN, READ_TAGS, READ_KEYS, N_READS } iam_read;

static const char *const read_actions[N_READS] = {"GetUser", "GetLoginProfile", "ListUserTags",
                                                  "ListAccessKeys"};

struct iam_run;

/* One read in flight: the argument of its callback. */
typedef struct iam_read_req {
    struct iam_run *r;
    iam_read what;
} iam_read_req;

/* One apply, alive from apply() to the single host->done(). */
typedef struct iam_run {
    const iam_conf *st;
    ol_stage *stage;
    ol_item *item;
    const char *user;     /* borrowed: item name, valid until the item ends */
    iam_state state;      /* changed only by set_state */
    int created;          /* the user or a key was created: outcome "created" */
    int updated;          /* orphan keys deleted, tags changed */
    int tags_changed;     /* TagUser was sent */
    int keys_deleted;     /* a lost key was deleted */
    int unknown_attempts; /* CreateAccessKey answers with an unknown outcome */
    iam_key *keys;
    size_t n_keys;
    size_t next_delete;
    ol_kv *want_tags; /* malloc'd: the ownership tags, then the option's (borrowed) */
    size_t n_want_tags;
    ol_kv *tags_to_set; /* borrowed strings from want_tags */
    size_t n_tags_to_set;
    iam_read_req reads[N_READS];
    size_t inflight;  /* reads in flight (observe) */
    int sending;      /* the reads are being sent: completion waits for the last one */
    int gone;         /* a read answered NoSuchEntity: no such user */
    int create_tried; /* CreateUser was sent in this run */
    char *failure;    /* host-allocated reason of the first failed read, or NULL */
} iam_run;

static const char *const no_such_entity[] = {"NoSuchEntity", NULL};

/* --------------------------------------------------------------------------------------
 * Pure helpers (unit-tested)
 * ------------------------------------------------------------------------------------ */

/* IAM paths: "/" or "/a/b/", at most 512 printable ASCII characters (CreateUser: Path). */
static int valid_path(const char *path) {
    /* Begins with '/' and ends with one: nothing follows the last '/'. */
    if (path[0] != '/' || strlen(path) > 512 || strrchr(path, '/')[1] != '\0')
        return 0;
    for (const char *p = path; *p != '\0'; p++)
        if (*p < '!' || *p > '~')
            return 0;
    return 1;
}

/* How many CreateAccessKey requests of this item have no known result yet: the run that
 * sent them died, or the answer was lost. A key that appeared after such a request and
 * that nobody stored is the lost result. */
static size_t pending_requests(const ol_host *host, const ol_item *item) {
    size_t requested = host->journal_count(item, "access_key_requested", NULL);
    size_t resolved = host->journal_count(item, "access_key_created", NULL) +
                      host->journal_count(item, "access_key_create_failed", NULL) +
                      host->journal_count(item, "access_key_reconciled", NULL);
    return requested > resolved ? requested - resolved : 0;
}

/* Decide for every listed key from the journal: orphan (opsline created it and no store
 * ever held its secret: delete) or not. Which key is stored, that is, has a secret some
 * configured store can still give back, the host's secret_find says afterwards. A key
 * with no record is opsline's lost one only when a request is pending and the key was not
 * seen before that request (the journal records the keys present before each request). */
static void classify_keys(const ol_host *host, const ol_item *item, iam_key *keys, size_t n) {
    size_t pending = pending_requests(host, item);
    for (size_t i = 0; i < n; i++) {
        iam_key *k = &keys[i];
        k->stored = 0;
        k->orphan = 0;
        if (host->journal_count(item, "secret_stored", k->id) > 0)
            continue;
        if (host->journal_count(item, "access_key_created", k->id) > 0)
            k->orphan = 1;
        else if (pending > 0 && host->journal_count(item, "access_key_seen", k->id) == 0)
            k->orphan = 1;
    }
}

/* The newest stored key (the one a secret stage has): NULL when none. */
static const iam_key *newest_stored(const iam_key *keys, size_t n) {
    const iam_key *best = NULL;
    for (size_t i = 0; i < n; i++) {
        if (!keys[i].stored)
            continue;
        if (best == NULL || strcmp(keys[i].create_date, best->create_date) > 0)
            best = &keys[i];
    }
    return best;
}

static size_t count_kept(const iam_key *keys, size_t n) {
    size_t kept = 0;
    for (size_t i = 0; i < n; i++)
        kept += (size_t)!keys[i].orphan;
    return kept;
}

static void keys_free(iam_run *r) {
    for (size_t i = 0; i < r->n_keys; i++) {
        free(r->keys[i].id);
        free(r->keys[i].create_date);
    }
    free(r->keys);
    r->keys = NULL;
    r->n_keys = 0;
}

/* --------------------------------------------------------------------------------------
 * The apply state machine: CreateUser [-> GetUser -> GetLoginProfile -> ListUserTags ->
 * TagUser] -> ListAccessKeys -> secret_find -> DeleteAccessKey* -> CreateAccessKey ->
 * done. r->state changes only in set_state; every answer goes through on_response.
 * ------------------------------------------------------------------------------------ */

static void on_response(void *arg, const ol_aws_response *res);
static void step_list_keys(iam_run *r);
static void step_delete_next(iam_run *r);
static void step_after_cleanup(iam_run *r);

/* The one transition function: every change of r->state is logged here (curl's mstate()). */
static void set_state(iam_run *r, iam_state next) {
    r->st->host->log(r->stage, r->item, OL_LOG_DEBUG, "iam: state %s -> %s", state_names[r->state],
                     state_names[next]);
    r->state = next;
}

static void run_free(iam_run *r) {
    keys_free(r);
    free(r->tags_to_set);
    free(r->want_tags);
    r->st->host->free(r->failure);
    free(r);
}

static void finish(iam_run *r, ol_outcome outcome, const char *reason) {
    set_state(r, IAM_DONE);
    r->st->host->done(r->stage, r->item, outcome, reason);
    run_free(r);
}

/* Done: created, or updated naming what changed ("changed: tags, lost key deleted"), or
 * unchanged. */
static void finish_ok(iam_run *r, const char *reason) {
    char what[96] = "";
    ol_outcome o = OL_OUTCOME_UNCHANGED;
    if (r->created) {
        o = OL_OUTCOME_CREATED;
    } else if (r->updated) {
        o = OL_OUTCOME_UPDATED;
        snprintf(what, sizeof(what), "changed: %s%s%s", r->tags_changed ? "tags" : "",
                 r->tags_changed && r->keys_deleted ? ", " : "",
                 r->keys_deleted ? "lost key deleted" : "");
        if (reason == NULL)
            reason = what;
    }
    finish(r, o, reason);
}

static void run_fail(iam_run *r, const char *fmt, ...) OL_PRINTF(2, 3);

static void run_fail(iam_run *r, const char *fmt, ...) {
    char reason[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    finish(r, OL_OUTCOME_FAILED, reason);
}

/* A failed request of the current state, in the host's words: "<action> for user <user>
 * failed: <code>: <message> (HTTP <status>, request id <id>)". Never secret: IAM does not
 * echo secrets in errors. */
static void run_fail_aws(iam_run *r, const ol_aws_response *res) {
    const ol_host *h = r->st->host;
    char *action = h->format("%s for user %s", state_names[r->state], r->user);
    char *reason = action != NULL ? h->aws_reason(action, res) : NULL;
    h->free(action);
    finish(r, OL_OUTCOME_FAILED, reason != NULL ? reason : "out of memory");
    h->free(reason);
}

static int is_error(const ol_aws_response *res, const char *code) {
    return res->result == OL_EAWS && res->error_code != NULL && strcmp(res->error_code, code) == 0;
}

/* Sends the current state's Query API request: Action, Version, UserName, then extra
 * params. consistent: retry NoSuchEntity while IAM propagates a new user. */
static int send_action(iam_run *r, const char *action, const ol_kv *extra, size_t n_extra,
                       unsigned flags, int consistent, ol_aws_cb cb, void *arg) {
    ol_kv params[3 + 2 * IAM_MAX_TAGS + 2];
    if (n_extra > sizeof(params) / sizeof(params[0]) - 3)
        return OL_EINVAL;
    params[0] = (ol_kv){"Action", action};
    params[1] = (ol_kv){"Version", IAM_API_VERSION};
    params[2] = (ol_kv){"UserName", r->user};
    for (size_t i = 0; i < n_extra; i++)
        params[3 + i] = extra[i];
    ol_aws_request req = {.struct_size = sizeof(ol_aws_request),
                          .service = "iam",
                          .method = "POST",
                          .params = params,
                          .n_params = 3 + n_extra,
                          .flags = flags};
    if (consistent) {
        req.consistency_codes = no_such_entity;
        req.consistency_ms = IAM_CONSISTENCY_MS;
    }
    return r->st->host->aws_send(r->item, &req, cb, arg);
}

/* The request of the current state, answered through on_response. */
static int send_iam(iam_run *r, const ol_kv *extra, size_t n_extra, unsigned flags,
                    int consistent) {
    return send_action(r, state_names[r->state], extra, n_extra, flags, consistent, on_response, r);
}

/* Enters state and sends its request, or fails the run when the host refused to send. */
static void send_step(iam_run *r, iam_state state, const ol_kv *extra, size_t n_extra,
                      unsigned flags, int consistent) {
    set_state(r, state);
    int rc = send_iam(r, extra, n_extra, flags, consistent);
    if (rc < 0) {
        ol_aws_response refused = {.struct_size = sizeof(ol_aws_response), .result = rc};
        run_fail_aws(r, &refused);
    }
}

/* Tag parameters "Tags.member.N.Key" / ".Value"; names live in the caller's buffer. */
static size_t tag_params(const ol_kv *tags, size_t n, ol_kv *out, char (*names)[32]) {
    for (size_t i = 0; i < n; i++) {
        snprintf(names[2 * i], 32, "Tags.member.%u.Key", (unsigned)(i + 1) % 1000u);
        snprintf(names[2 * i + 1], 32, "Tags.member.%u.Value", (unsigned)(i + 1) % 1000u);
        out[2 * i] = (ol_kv){names[2 * i], tags[i].name};
        out[2 * i + 1] = (ol_kv){names[2 * i + 1], tags[i].value};
    }
    return 2 * n;
}

/* Sets iam.user and iam.user_arn from a CreateUser/GetUser answer. */
static int take_user(iam_run *r, const ol_aws_response *res, const char *arn_path) {
    const ol_host *h = r->st->host;
    ol_xml *doc = h->xml_parse(res->body, res->body_len);
    const char *arn = doc ? h->xml_text(doc, arn_path, 0) : NULL;
    int rc = arn == NULL ? OL_EINVAL : 0;
    if (rc == 0)
        rc = h->item_set(r->item, OL_KEY_IAM_USER, r->user, 0);
    if (rc == 0)
        rc = h->item_set(r->item, OL_KEY_IAM_USER_ARN, arn, 0);
    if (doc != NULL)
        h->xml_free(doc);
    return rc;
}

static int parse_keys(iam_run *r, const ol_aws_response *res);
static void keys_decide(iam_run *r);

static void on_tag_user(iam_run *r, const ol_aws_response *res) {
    if (res->result != 0) {
        run_fail_aws(r, res);
        return;
    }
    r->updated = 1;
    r->tags_changed = 1;
    r->st->host->log(r->stage, r->item, OL_LOG_INFO, "updated %zu tag(s) of user %s",
                     r->n_tags_to_set, r->user);
    keys_decide(r);
}

/* The one comparison for the user itself: into out (room for n_want), the wanted tags the
 * user lacks or has with another value, from a ListUserTags answer. Tags the user has and
 * that are not wanted are kept (TagUser adds and overwrites only). Pure: no request, no
 * log. Returns how many go into out. */
static size_t iam_user_diff(const ol_host *h, const ol_xml *doc, const ol_kv *want, size_t n_want,
                            ol_kv *out) {
    static const char kp[] = "ListUserTagsResponse/ListUserTagsResult/Tags/member/Key";
    static const char vp[] = "ListUserTagsResponse/ListUserTagsResult/Tags/member/Value";
    size_t n_have = h->xml_count(doc, kp), n = 0;
    for (size_t i = 0; i < n_want; i++) {
        int same = 0;
        for (size_t k = 0; k < n_have && !same; k++) {
            const char *key = h->xml_text(doc, kp, k);
            const char *val = h->xml_text(doc, vp, k);
            same = key && strcmp(key, want[i].name) == 0 &&
                   strcmp(val ? val : "", want[i].value ? want[i].value : "") == 0;
        }
        if (!same)
            out[n++] = want[i];
    }
    return n;
}

/* Keeps the first failure of the reads (host-allocated, taken over). */
static void note_failure(iam_run *r, char *reason) {
    const ol_host *h = r->st->host;
    if (r->failure == NULL)
        r->failure = reason != NULL ? reason : h->format("out of memory");
    else
        h->free(reason);
}

static void note_aws_error(iam_run *r, const char *action, const ol_aws_response *res) {
    const ol_host *h = r->st->host;
    char *what = h->format("%s for user %s", action, r->user);
    note_failure(r, what != NULL ? h->aws_reason(what, res) : NULL);
    h->free(what);
}

static void read_user(iam_run *r, const ol_aws_response *res) {
    const ol_host *h = r->st->host;
    if (take_user(r, res, "GetUserResponse/GetUserResult/User/Arn") != 0) {
        note_failure(r, h->format("GetUser for user %s: no ARN in the answer", r->user));
        return;
    }
    ol_xml *doc = h->xml_parse(res->body, res->body_len);
    const char *path = doc ? h->xml_text(doc, "GetUserResponse/GetUserResult/User/Path", 0) : NULL;
    if (path != NULL && strcmp(path, r->st->path) != 0)
        h->log(r->stage, r->item, OL_LOG_WARN,
               "user %s exists with path %s, not %s; left as it is (aws iam update-user "
               "--user-name %s --new-path %s moves it)",
               r->user, path, r->st->path, r->user, r->st->path);
    if (doc != NULL)
        h->xml_free(doc);
}

static void read_tags(iam_run *r, const ol_aws_response *res) {
    const ol_host *h = r->st->host;
    ol_xml *doc = h->xml_parse(res->body, res->body_len);
    if (doc == NULL) {
        note_failure(r, h->format("ListUserTags for user %s: unreadable answer", r->user));
        return;
    }
    r->n_tags_to_set = iam_user_diff(h, doc, r->want_tags, r->n_want_tags, r->tags_to_set);
    h->xml_free(doc);
}

static void observe_complete(iam_run *r);

/* One read of observe answered. NoSuchEntity from any but GetLoginProfile: no such user. */
static void on_observed(void *arg, const ol_aws_response *res) {
    iam_read_req *rr = arg;
    iam_run *r = rr->r;
    const ol_host *h = r->st->host;
    r->inflight--;
    if (is_error(res, "NoSuchEntity")) {
        if (rr->what != READ_LOGIN)
            r->gone = 1;
    } else if (res->result != 0) {
        note_aws_error(r, read_actions[rr->what], res);
    } else if (rr->what == READ_USER) {
        read_user(r, res);
    } else if (rr->what == READ_LOGIN) {
        h->log(r->stage, r->item, OL_LOG_WARN,
               "user %s has a console password (login profile); opsline users are "
               "programmatic-only — remove it with aws iam delete-login-profile "
               "--user-name %s",
               r->user, r->user);
    } else if (rr->what == READ_TAGS) {
        read_tags(r, res);
    } else {
        int rc = parse_keys(r, res);
        if (rc != 0)
            note_failure(r, h->format("ListAccessKeys for user %s: unreadable answer (%s)", r->user,
                                      h->strerror(rc)));
    }
    if (r->inflight == 0 && !r->sending)
        observe_complete(r);
}

/* Reads the user, its login profile, its tags and its keys in parallel. consistent: the
 * user was just reported to exist (EntityAlreadyExists), so NoSuchEntity may only mean IAM
 * has not propagated it yet. Returns 0, or a negative code when the host refused every
 * read (nothing in flight; r->failure says why). */
static int iam_observe(iam_run *r, int consistent) {
    set_state(r, IAM_OBSERVE);
    r->gone = 0;
    r->sending = 1;
    int refused = 0;
    for (size_t i = 0; i < N_READS; i++) {
        r->reads[i] = (iam_read_req){r, (iam_read)i};
        r->inflight++;
        /* GetLoginProfile's NoSuchEntity is the normal answer: never retried. */
        int rc = send_action(r, read_actions[i], NULL, 0, 0, consistent && i != READ_LOGIN,
                             on_observed, &r->reads[i]);
        if (rc < 0) {
            r->inflight--;
            refused = rc;
            ol_aws_response no = {.struct_size = sizeof(ol_aws_response), .result = rc};
            note_aws_error(r, read_actions[i], &no);
        }
    }
    r->sending = 0;
    return r->inflight > 0 ? 0 : refused;
}

static void fail_with_failure(iam_run *r) {
    const ol_host *h = r->st->host;
    char *reason = r->failure;
    r->failure = NULL;
    finish(r, OL_OUTCOME_FAILED, reason != NULL ? reason : "out of memory");
    h->free(reason);
}

static void create_user(iam_run *r);

/* The reads have answered: act on what differs (tags, then keys). */
static void observe_complete(iam_run *r) {
    if (r->failure != NULL) {
        fail_with_failure(r);
        return;
    }
    if (r->gone) {
        if (r->create_tried) {
            run_fail(r, "user %s was deleted while opsline was converging it; rerun", r->user);
            return;
        }
        r->st->host->log(r->stage, r->item, OL_LOG_INFO,
                         "user %s is recorded in the journal but no longer exists; creating it",
                         r->user);
        keys_free(r);
        r->n_tags_to_set = 0;
        create_user(r);
        return;
    }
    if (r->n_tags_to_set == 0) {
        keys_decide(r);
        return;
    }
    ol_kv extra[2 * IAM_MAX_TAGS];
    char names[2 * IAM_MAX_TAGS][32];
    size_t n = tag_params(r->tags_to_set, r->n_tags_to_set, extra, names);
    send_step(r, IAM_TAG_USER, extra, n, 0, 1);
}

static void record(iam_run *r, const char *event) {
    const ol_host *h = r->st->host;
    /* A lost record costs the next run one request, never a key: not a failure. */
    if (h->journal_append(r->item, r->stage, event, r->user) != 0)
        h->log(r->stage, r->item, OL_LOG_WARN, "could not journal %s for user %s", event, r->user);
}

static void on_create_user(iam_run *r, const ol_aws_response *res) {
    const ol_host *h = r->st->host;
    if (is_error(res, "EntityAlreadyExists")) {
        record(r, "user_seen");
        if (iam_observe(r, 1) != 0)
            fail_with_failure(r);
        return;
    }
    if (res->result != 0) {
        run_fail_aws(r, res);
        return;
    }
    if (take_user(r, res, "CreateUserResponse/CreateUserResult/User/Arn") != 0) {
        run_fail(r, "CreateUser for user %s: no ARN in the answer", r->user);
        return;
    }
    r->created = 1;
    record(r, "user_created");
    if (h->item_set(r->item, OL_KEY_IAM_USER_CREATED, "true", 0) != 0) {
        run_fail(r, "out of memory");
        return;
    }
    h->log(r->stage, r->item, OL_LOG_INFO, "created user %s", r->user);
    /* A new user has no login profile, exactly the tags it was created with, and no key:
     * nothing to read. */
    keys_free(r);
    step_after_cleanup(r);
}

/* CreateUser with its path and every wanted tag in the same request. */
static int send_create_user(iam_run *r) {
    ol_kv extra[1 + 2 * IAM_MAX_TAGS];
    char names[2 * IAM_MAX_TAGS][32];
    extra[0] = (ol_kv){"Path", r->st->path};
    size_t n = 1 + tag_params(r->want_tags, r->n_want_tags, extra + 1, names);
    r->create_tried = 1;
    set_state(r, IAM_CREATE_USER);
    return send_iam(r, extra, n, 0, 0);
}

static void create_user(iam_run *r) {
    int rc = send_create_user(r);
    if (rc < 0) {
        ol_aws_response refused = {.struct_size = sizeof(ol_aws_response), .result = rc};
        run_fail_aws(r, &refused);
    }
}

/* The journal's word on the user: created or found by an earlier run (or given a key by
 * one), and not deleted since. It only picks the cheaper first request: a known user that
 * is gone is created, a new name that exists is observed. */
static int user_known(const iam_run *r) {
    const ol_host *h = r->st->host;
    size_t seen = h->journal_count(r->item, "user_created", r->user) +
                  h->journal_count(r->item, "user_seen", r->user) +
                  h->journal_count(r->item, "access_key_created", NULL);
    return seen > h->journal_count(r->item, "user_deleted", r->user);
}

static int parse_keys(iam_run *r, const ol_aws_response *res) {
    static const char idp[] =
        "ListAccessKeysResponse/ListAccessKeysResult/AccessKeyMetadata/member/AccessKeyId";
    static const char datep[] =
        "ListAccessKeysResponse/ListAccessKeysResult/AccessKeyMetadata/member/CreateDate";
    const ol_host *h = r->st->host;
    keys_free(r);
    ol_xml *doc = h->xml_parse(res->body, res->body_len);
    if (doc == NULL)
        return OL_EINVAL;
    int rc = 0;
    size_t n = h->xml_count(doc, idp);
    if (n > 0) {
        r->keys = calloc(n, sizeof(*r->keys));
        if (r->keys == NULL)
            rc = OL_ENOMEM;
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const char *id = h->xml_text(doc, idp, i);
        const char *date = h->xml_text(doc, datep, i);
        iam_key *k = &r->keys[r->n_keys++];
        k->id = strdup(id ? id : "");
        k->create_date = strdup(date ? date : "");
        if (k->id == NULL || k->create_date == NULL)
            rc = OL_ENOMEM;
    }
    h->xml_free(doc);
    return rc;
}

/* The host found (or not) the key whose secret a configured store holds: that key is the
 * user's working key, whatever the journal said about it. */
static void on_secret_found(void *arg, const char *key_id, const char *const *lost, size_t n_lost,
                            const char *reason) {
    iam_run *r = arg;
    if (reason != NULL)
        r->st->host->log(r->stage, r->item, OL_LOG_WARN, "could not read back every store: %s",
                         reason);
    for (size_t i = 0; i < r->n_keys; i++) {
        iam_key *k = &r->keys[i];
        if (key_id != NULL && strcmp(k->id, key_id) == 0) {
            k->stored = 1;
            k->orphan = 0;
        }
        /* Created by opsline, and every store that held its secret has lost it: replace. */
        for (size_t j = 0; j < n_lost && !k->stored; j++)
            if (strcmp(k->id, lost[j]) == 0 &&
                r->st->host->journal_count(r->item, "access_key_created", k->id) > 0)
                k->orphan = 1;
    }
    r->next_delete = 0;
    step_delete_next(r);
}

/* The keys are listed (r->keys): decide from the journal which are opsline's lost ones,
 * then ask the host which one a configured store holds (on_secret_found). */
static void keys_decide(iam_run *r) {
    const ol_host *h = r->st->host;
    classify_keys(h, r->item, r->keys, r->n_keys);
    const char *ids[IAM_MAX_KEYS * 4];
    size_t n = 0;
    for (size_t i = 0; i < r->n_keys && n < sizeof(ids) / sizeof(ids[0]); i++)
        ids[n++] = r->keys[i].id;
    set_state(r, IAM_FIND_SECRET);
    int rc = h->secret_find(r->item, ids, n, on_secret_found, r);
    if (rc != 0)
        run_fail(r, "cannot ask the secret stores about the keys of user %s: %s", r->user,
                 h->strerror(rc));
}

static void on_list_keys(iam_run *r, const ol_aws_response *res) {
    const ol_host *h = r->st->host;
    if (res->result != 0) {
        run_fail_aws(r, res);
        return;
    }
    int rc = parse_keys(r, res);
    if (rc != 0) {
        run_fail(r, "ListAccessKeys for user %s: unreadable answer (%s)", r->user, h->strerror(rc));
        return;
    }
    keys_decide(r);
}

static void step_list_keys(iam_run *r) {
    send_step(r, IAM_LIST_KEYS, NULL, 0, 0, 1);
}

static void on_delete_key(iam_run *r, const ol_aws_response *res) {
    const ol_host *h = r->st->host;
    const iam_key *k = &r->keys[r->next_delete];
    /* Already gone is as good as deleted. */
    if (res->result != 0 && !is_error(res, "NoSuchEntity")) {
        run_fail_aws(r, res);
        return;
    }
    if (h->journal_append(r->item, r->stage, "access_key_deleted", k->id) != 0) {
        run_fail(r, "deleted access key %s of user %s but could not journal it", k->id, r->user);
        return;
    }
    h->log(r->stage, r->item, OL_LOG_WARN,
           "deleted access key %s of user %s: opsline created it and no store holds its secret "
           "(lost key); a new key replaces it",
           k->id, r->user);
    r->updated = 1;
    r->keys_deleted = 1;
    r->next_delete++;
    step_delete_next(r);
}

static void step_delete_next(iam_run *r) {
    while (r->next_delete < r->n_keys && !r->keys[r->next_delete].orphan)
        r->next_delete++;
    if (r->next_delete == r->n_keys) {
        step_after_cleanup(r);
        return;
    }
    ol_kv extra[] = {{"AccessKeyId", r->keys[r->next_delete].id}};
    /* No consistency retries: the key was just listed, and NoSuchEntity means it is gone. */
    send_step(r, IAM_DELETE_KEY, extra, 1, 0, 0);
}

/* The request is on disk: now it may go. */
static void on_request_journaled(void *arg, int status) {
    iam_run *r = arg;
    if (status == OL_ECANCELED) { /* the stage was abandoned (its time limit) meanwhile */
        run_fail(r,
                 "the access key request for user %s was not sent (the stage had ended); no "
                 "key created",
                 r->user);
        return;
    }
    if (status != 0) {
        run_fail(r,
                 "cannot fsync the journal before the access key request for user %s; no "
                 "key created",
                 r->user);
        return;
    }
    r->st->host->checkpoint(r->item, "iam.before_create_access_key");
    /* Never resent on an unknown outcome: a second key could be created unseen. */
    send_step(r, IAM_CREATE_KEY, NULL, 0, OL_AWS_NOT_IDEMPOTENT, 1);
}

/* Records the keys present before the request, then the request itself, on disk before the
 * request is sent (on_request_journaled): a key that shows up later and that nobody stored
 * can then only be this request's lost result. */
static void step_create_key(iam_run *r) {
    const ol_host *h = r->st->host;
    int rc = 0;
    for (size_t i = 0; i < r->n_keys && rc == 0; i++)
        if (!r->keys[i].orphan && h->journal_count(r->item, "access_key_seen", r->keys[i].id) == 0)
            rc = h->journal_append(r->item, r->stage, "access_key_seen", r->keys[i].id);
    if (rc != 0 || h->journal_append_synced(r->item, r->stage, "access_key_requested", NULL,
                                            on_request_journaled, r) != 0)
        run_fail(r, "cannot journal the access key request for user %s; no key created", r->user);
}

/* Fails the run: the user already has IAM's maximum of keys, none of them opsline's. */
static void fail_too_many_keys(iam_run *r, size_t kept) {
    const char *ids[IAM_MAX_KEYS] = {"", ""};
    for (size_t i = 0, n = 0; i < r->n_keys && n < IAM_MAX_KEYS; i++)
        if (!r->keys[i].orphan)
            ids[n++] = r->keys[i].id;
    run_fail(r,
             "user %s already has %zu access keys not created by opsline (%s, %s); IAM allows "
             "%d; delete one (aws iam delete-access-key --user-name %s --access-key-id %s) "
             "and rerun",
             r->user, kept, ids[0], ids[1], IAM_MAX_KEYS, r->user, ids[0]);
}

static void step_after_cleanup(iam_run *r) {
    const ol_host *h = r->st->host;
    if (pending_requests(h, r->item) > 0 &&
        h->journal_append(r->item, r->stage, "access_key_reconciled", NULL) != 0) {
        run_fail(r, "cannot journal the access key reconciliation for user %s", r->user);
        return;
    }
    const iam_key *stored = newest_stored(r->keys, r->n_keys);
    for (size_t i = 0; i < r->n_keys; i++)
        if (!r->keys[i].orphan && !r->keys[i].stored)
            h->log(r->stage, r->item, OL_LOG_INFO,
                   "user %s has access key %s not created by opsline; left as it is", r->user,
                   r->keys[i].id);
    if (stored != NULL) {
        if (h->item_set(r->item, OL_KEY_ACCESS_KEY_ID, stored->id, 0) != 0) {
            run_fail(r, "out of memory");
            return;
        }
        finish_ok(r, NULL);
        return;
    }
    if (!r->st->create_access_key) {
        finish_ok(r, NULL);
        return;
    }
    size_t kept = count_kept(r->keys, r->n_keys);
    if (kept >= IAM_MAX_KEYS) {
        fail_too_many_keys(r, kept);
        return;
    }
    step_create_key(r);
}

/* CreateAccessKey gave no usable key and no proof that none was made: list the keys again
 * to remove one whose secret never arrived, once; a second time, leave it to a rerun. */
static void on_create_key_unknown(iam_run *r, const ol_aws_response *res) {
    const ol_host *h = r->st->host;
    (void)h->journal_append_durable(r->item, r->stage, "access_key_unknown", NULL);
    if (res->result == OL_ECANCELED) {
        run_fail(r,
                 "CreateAccessKey for user %s: interrupted; rerun opsline to remove any "
                 "unstored key and create one",
                 r->user);
        return;
    }
    if (++r->unknown_attempts > 1) {
        run_fail(r,
                 "CreateAccessKey for user %s: outcome unknown twice (%s); rerun opsline to "
                 "remove any unstored key and create one",
                 r->user, h->strerror(res->result == 0 ? OL_EUNKNOWN : res->result));
        return;
    }
    h->log(r->stage, r->item, OL_LOG_WARN,
           "CreateAccessKey for user %s: outcome unknown; listing keys to remove a key "
           "whose secret never arrived",
           r->user);
    step_list_keys(r);
}

/* A key was created: journal its id, publish it and the secret, wipe the parsed answer's
 * copy of the secret (doc is freed here). */
static void key_created(iam_run *r, ol_xml *doc, const char *id, const char *secret) {
    const ol_host *h = r->st->host;
    /* The id first: if anything below fails or we die, the next run finds and deletes it. */
    int rc = h->journal_append(r->item, r->stage, "access_key_created", id);
    if (rc == 0)
        rc = h->item_set(r->item, OL_KEY_ACCESS_KEY_ID, id, 0);
    if (rc == 0)
        rc = h->item_set(r->item, OL_KEY_SECRET_ACCESS_KEY, secret, OL_BAG_SECRET);
    char key_id[128];
    snprintf(key_id, sizeof(key_id), "%s", id);
    /* The parsed answer is this stage's only copy of the secret (the bag has its own, wiped
     * by the host when the item ends): wipe it before handing the memory back. */
    h->wipe((char *)(uintptr_t)secret, strlen(secret));
    h->xml_free(doc);
    if (rc != 0) {
        run_fail(r,
                 "created access key %s for user %s but could not record it (%s); rerun to "
                 "replace it",
                 key_id, r->user, h->strerror(rc));
        return;
    }
    h->log(r->stage, r->item, OL_LOG_INFO, "created access key %s for user %s", key_id, r->user);
    h->checkpoint(r->item, "iam.after_create_access_key");
    r->created = 1;
    finish_ok(r, NULL);
}

static void on_create_key(iam_run *r, const ol_aws_response *res) {
    static const char idp[] = "CreateAccessKeyResponse/CreateAccessKeyResult/AccessKey/AccessKeyId";
    static const char secp[] =
        "CreateAccessKeyResponse/CreateAccessKeyResult/AccessKey/SecretAccessKey";
    const ol_host *h = r->st->host;
    /* Only an error answer from AWS proves no key was made; anything else (no answer, a
     * timeout, an interrupted run) may hide a created key. */
    if (res->result == OL_EAWS) {
        (void)h->journal_append(r->item, r->stage, "access_key_create_failed", NULL);
        run_fail_aws(r, res);
        return;
    }
    ol_xml *doc = res->result == 0 ? h->xml_parse(res->body, res->body_len) : NULL;
    const char *id = doc ? h->xml_text(doc, idp, 0) : NULL;
    const char *secret = doc ? h->xml_text(doc, secp, 0) : NULL;
    /* 2xx without a readable key: AWS made one we cannot use; reconcile it away. */
    if (id == NULL || secret == NULL || *id == '\0' || *secret == '\0') {
        if (doc != NULL)
            h->xml_free(doc);
        on_create_key_unknown(r, res);
        return;
    }
    key_created(r, doc, id, secret);
}

static void on_response(void *arg, const ol_aws_response *res) {
    iam_run *r = arg;
    switch (r->state) {
    case IAM_CREATE_USER:
        on_create_user(r, res);
        return;
    case IAM_TAG_USER:
        on_tag_user(r, res);
        return;
    case IAM_LIST_KEYS:
        on_list_keys(r, res);
        return;
    case IAM_DELETE_KEY:
        on_delete_key(r, res);
        return;
    case IAM_CREATE_KEY:
        on_create_key(r, res);
        return;
    default:
        /* No request is in flight in the other states: the host broke its contract. */
        run_fail(r, "iam: an answer arrived in state %s", state_names[r->state]);
        return;
    }
}

/* --------------------------------------------------------------------------------------
 * Plugin entry points
 * ------------------------------------------------------------------------------------ */

/* Checks the bound options: an IAM path, and tags IAM accepts. */
static int check_options(ol_stage *stage, const ol_host *host, const iam_conf *st) {
    if (!valid_path(st->path)) {
        host->log(stage, NULL, OL_LOG_ERROR,
                  "option path '%s' is not an IAM path: it must begin and end with '/' and "
                  "hold at most 512 printable characters (e.g. \"/opsline/\")",
                  st->path);
        return OL_ECONFIG;
    }
    if (st->tags.n > IAM_MAX_TAGS - OWNER_N_TAGS) {
        host->log(stage, NULL, OL_LOG_ERROR,
                  "option tags has %zu tags; IAM allows %d per user and opsline adds its %d "
                  "ownership tags",
                  st->tags.n, IAM_MAX_TAGS, OWNER_N_TAGS);
        return OL_ECONFIG;
    }
    if (owner_check_option(stage, host, st->tags.items, st->tags.n) != 0)
        return OL_ECONFIG;
    for (size_t i = 0; i < st->tags.n; i++) {
        size_t kl = strlen(st->tags.items[i].name), vl = strlen(st->tags.items[i].value);
        if (kl == 0 || kl > 128 || vl > 256) {
            host->log(stage, NULL, OL_LOG_ERROR,
                      "option tags: tag '%.40s' is invalid; IAM tag keys have 1-128 characters "
                      "and values at most 256",
                      st->tags.items[i].name);
            return OL_ECONFIG;
        }
    }
    return 0;
}

static int iam_init(ol_stage *stage, const ol_host *host, void **state) {
    iam_conf *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return OL_ENOMEM;
    st->host = host;
    int rc = host->opt_bind(stage, st);
    if (rc == 0)
        rc = check_options(stage, host, st);
    if (rc < 0) {
        free(st);
        return rc;
    }
    *state = st;
    return 0;
}

/* The IAM user-name rule is AWS's: the host owns it (aws_name_check). */
static int iam_validate(ol_stage *stage, const ol_item *item, void *state) {
    const iam_conf *st = state;
    const ol_host *h = st->host;
    char *why = NULL;
    if (h->item_name_check(item, "iam-user", &why) == 0)
        return 0;
    h->log(stage, item, OL_LOG_ERROR, "%s", why ? why : "invalid IAM user name");
    h->free(why);
    return OL_EINVAL;
}

static int iam_apply(ol_stage *stage, ol_item *item, void *state) {
    const iam_conf *st = state;
    iam_run *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return OL_ENOMEM;
    r->st = st;
    r->stage = stage;
    r->item = item;
    r->user = st->host->item_name(item);
    int rc =
        owner_merge(st->host, item, st->tags.items, st->tags.n, &r->want_tags, &r->n_want_tags);
    if (rc == 0) {
        r->tags_to_set = calloc(r->n_want_tags, sizeof(*r->tags_to_set));
        rc = r->tags_to_set != NULL ? 0 : OL_ENOMEM;
    }
    if (rc == 0)
        rc = user_known(r) ? iam_observe(r, 0) : send_create_user(r);
    if (rc < 0)
        run_free(r); /* nothing in flight: no callback runs, nothing else owns r */
    return rc;
}

static void iam_fini(void *state) {
    free(state);
}

/* The lifecycle commands live in iam_lifecycle.c. */
static int iam_destroy(ol_stage *stage, ol_item *item, void *state) {
    return iam_lifecycle_destroy(((const iam_conf *)state)->host, stage, item);
}
static int iam_rotate(ol_stage *stage, ol_item *item, void *state) {
    return iam_lifecycle_rotate(((const iam_conf *)state)->host, stage, item);
}
static int iam_rotate_commit(ol_stage *stage, ol_item *item, void *state) {
    return iam_lifecycle_commit(((const iam_conf *)state)->host, stage, item);
}
static int iam_plan(ol_stage *stage, ol_item *item, void *state) {
    const iam_conf *c = state;
    iam_plan_want w = {.diff = iam_user_diff};
    int rc = owner_merge(c->host, item, c->tags.items, c->tags.n, &w.tags, &w.n_tags);
    return rc != 0 ? rc : iam_lifecycle_plan(c->host, stage, item, w);
}

static const ol_option_def iam_options[] = {
    {"path", OL_OPT_STRING, "/", "IAM path of the user (must begin and end with '/')",
     OL_BIND(iam_conf, path)},
    {"tags", OL_OPT_OBJECT, NULL,
     "tags for the user (key -> value), added to the ownership tags; set on create, kept "
     "(missing or changed ones are set again, others left alone)",
     OL_BIND(iam_conf, tags)},
    {"create_access_key", OL_OPT_BOOL, "true",
     "create an access key when the user has none whose secret was stored",
     OL_BIND(iam_conf, create_access_key)},
};

static const char *const iam_needs[] = {NULL};

/* Shortcuts: keys of a products-file line (docs/products-file.md). */
static const ol_cli_flag iam_cli_flags[] = {{"tags", "tags"}, {NULL, NULL}};

static const ol_plugin iam_plugin = {
    .abi_major = OL_ABI_MAJOR,
    .abi_minor = OL_ABI_MINOR,
    .struct_size = sizeof(ol_plugin),
    .name = "iam",
    .version = "2.2.1",
    .description = "IAM user (programmatic only) and an access key whose secret is never lost",
    .needs = iam_needs,
    OL_OPTIONS(iam_options),
    .flags = OL_STAGE_CREATES_SECRETS | OL_STAGE_DEFAULT,
    .init = iam_init,
    .validate = iam_validate,
    .apply = iam_apply,
    .fini = iam_fini,
    .cli_flags = iam_cli_flags,
    .plan = iam_plan,
    .destroy = iam_destroy,
    .rotate = iam_rotate,
    .rotate_commit = iam_rotate_commit,
};

OL_EXPORT const ol_plugin *opsline_plugin(void) {
    return &iam_plugin;
}
