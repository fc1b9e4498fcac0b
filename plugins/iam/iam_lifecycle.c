/* iam_lifecycle: the iam stage's destroy, rotate (and its commit) and plan/status. Each is
 * a small state machine like apply's: one IAM request (or the host's secret_find /
 * secret_read) in flight, its answer handled by the state's handler.
 *
 * rotate is crash-safe through the journal. Before CreateAccessKey it records durably
 * "rotate_begun" (id: the old key) and apply's own records (access_key_seen,
 * access_key_requested), so a rerun tells the pieces apart: a new key that no store holds
 * is deleted and made again; a new key a store already holds resumes the rotation (prove
 * it, retire the old key); "rotate_done" (id: the old key) closes it. The old key is
 * deactivated before it is deleted, and only once the new key has been proven to work. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "opsline/opsline.h"

#include "../arn.h"
#include "../lifecycle.h"
#include "iam_lifecycle.h"

#define LC_MAX_KEYS 8
#define KEY_PROOF_MS 60000u /* IAM propagation of a new key: bounded wait */
#define BAG_OLD_KEY "iam.rotate_old_key"

typedef enum lc_state {
    LC_START,
    LC_GET_USER,
    LC_LIST_TAGS,
    LC_LIST_KEYS,
    LC_FIND,
    LC_DELETE_KEY,
    LC_LIST_POLICIES,
    LC_DELETE_POLICY,
    LC_DELETE_USER,
    LC_CREATE_KEY,
    LC_LAST_USED,
    LC_READ_SECRET,
    LC_PROVE,
    LC_DEACTIVATE,
    LC_DELETE_OLD,
    LC_DONE
} lc_state;

static const char *const lc_names[] = {
    [LC_START] = "start",
    [LC_GET_USER] = "GetUser",
    [LC_LIST_TAGS] = "ListUserTags",
    [LC_LIST_KEYS] = "ListAccessKeys",
    [LC_FIND] = "secret_find",
    [LC_DELETE_KEY] = "DeleteAccessKey",
    [LC_LIST_POLICIES] = "ListUserPolicies",
    [LC_DELETE_POLICY] = "DeleteUserPolicy",
    [LC_DELETE_USER] = "DeleteUser",
    [LC_CREATE_KEY] = "CreateAccessKey",
    [LC_LAST_USED] = "GetAccessKeyLastUsed",
    [LC_READ_SECRET] = "secret_read",
    [LC_PROVE] = "GetCallerIdentity",
    [LC_DEACTIVATE] = "UpdateAccessKey",
    [LC_DELETE_OLD] = "DeleteAccessKey",
    [LC_DONE] = "done",
};

typedef struct lc_key {
    char id[129];
    char status[16];      /* Active / Inactive */
    char create_date[40]; /* ISO 8601 */
    int doomed;           /* to delete before anything else (lost, or an old rotated key) */
} lc_key;

typedef struct lc_run {
    const ol_host *h;
    ol_stage *stage;
    ol_item *item;
    const char *user;
    int mode; /* ol_mode */
    int commit;
    lc_state state;
    lc_key keys[LC_MAX_KEYS];
    size_t n_keys, next;
    char stored[129]; /* the key a store holds, "" none */
    char old[129];    /* rotate: the key being replaced, "" none */
    char **policies;
    size_t n_policies;
    int tagged;
    int changed;
    iam_plan_want want; /* plan: apply's wanted tags (owned) and its comparison */
    char drift[512];    /* plan/status: what apply would change, "" nothing */
} lc_run;

static void lc_free(lc_run *r) {
    free(r->want.tags);
    for (size_t i = 0; i < r->n_policies; i++)
        free(r->policies[i]);
    free(r->policies);
    free(r);
}

static void lc_finish(lc_run *r, ol_outcome outcome, const char *reason) {
    r->state = LC_DONE;
    r->h->done(r->stage, r->item, outcome, reason);
    lc_free(r);
}

static void lc_fail(lc_run *r, const char *fmt, ...) OL_PRINTF(2, 3);
static void lc_fail(lc_run *r, const char *fmt, ...) {
    char reason[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    lc_finish(r, OL_OUTCOME_FAILED, reason);
}

static void lc_fail_aws(lc_run *r, const ol_aws_response *res) {
    const ol_host *h = r->h;
    char *reason = lifecycle_aws_reason(h, res, "%s for user %s", lc_names[r->state], r->user);
    lc_finish(r, OL_OUTCOME_FAILED, reason ? reason : "out of memory");
    h->free(reason);
}

static void on_answer(void *arg, const ol_aws_response *res);

/* Enters state and sends its IAM request with UserName and extra parameters. */
static void lc_send(lc_run *r, lc_state state, const ol_kv *extra, size_t n, int consistent) {
    ol_kv params[6];
    params[0] = (ol_kv){"UserName", r->user};
    for (size_t i = 0; i < n && i < 5; i++)
        params[1 + i] = extra[i];
    r->state = state;
    r->h->log(r->stage, r->item, OL_LOG_DEBUG, "iam: %s", lc_names[state]);
    int rc =
        lifecycle_iam_send(r->h, r->item, lc_names[state], params, 1 + n, consistent, on_answer, r);
    if (rc < 0) {
        ol_aws_response refused = {.struct_size = sizeof(ol_aws_response), .result = rc};
        lc_fail_aws(r, &refused);
    }
}

static void lc_send_key(lc_run *r, lc_state state, const char *key_id) {
    ol_kv extra[] = {{"AccessKeyId", key_id}, {"Status", "Inactive"}};
    lc_send(r, state, extra, state == LC_DEACTIVATE ? 2 : 1, 0);
}

static ol_xml *lc_parse(lc_run *r, const ol_aws_response *res) {
    ol_xml *doc = r->h->xml_parse(res->body, res->body_len);
    if (doc == NULL)
        lc_fail(r, "%s for user %s: unreadable answer", lc_names[r->state], r->user);
    return doc;
}

/* ListAccessKeys' answer into r->keys. 0, or the run failed. */
static int lc_take_keys(lc_run *r, const ol_aws_response *res) {
    static const char base[] = "ListAccessKeysResponse/ListAccessKeysResult/AccessKeyMetadata/"
                               "member/";
    ol_xml *doc = lc_parse(r, res);
    if (doc == NULL)
        return -1;
    char p_id[128], p_st[128], p_date[128];
    snprintf(p_id, sizeof(p_id), "%sAccessKeyId", base);
    snprintf(p_st, sizeof(p_st), "%sStatus", base);
    snprintf(p_date, sizeof(p_date), "%sCreateDate", base);
    size_t n = r->h->xml_count(doc, p_id);
    r->n_keys = 0;
    for (size_t i = 0; i < n && r->n_keys < LC_MAX_KEYS; i++) {
        lc_key *k = &r->keys[r->n_keys++];
        const char *id = r->h->xml_text(doc, p_id, i);
        const char *st = r->h->xml_text(doc, p_st, i);
        const char *date = r->h->xml_text(doc, p_date, i);
        snprintf(k->id, sizeof(k->id), "%s", id ? id : "");
        snprintf(k->status, sizeof(k->status), "%s", st ? st : "");
        snprintf(k->create_date, sizeof(k->create_date), "%s", date ? date : "");
        k->doomed = 0;
    }
    r->h->xml_free(doc);
    return 0;
}

static size_t lc_journal(const lc_run *r, const char *event, const char *id) {
    return r->h->journal_count(r->item, event, id);
}

/* opsline created this key (any run, any command). */
static int key_ours(const lc_run *r, const char *id) {
    return lc_journal(r, "access_key_created", id) > 0 || lc_journal(r, "secret_stored", id) > 0;
}

/* How many CreateAccessKey requests of the item have no known result (as iam.c counts). */
static size_t lc_pending_requests(const lc_run *r) {
    size_t requested = lc_journal(r, "access_key_requested", NULL);
    size_t resolved = lc_journal(r, "access_key_created", NULL) +
                      lc_journal(r, "access_key_create_failed", NULL) +
                      lc_journal(r, "access_key_reconciled", NULL);
    return requested > resolved ? requested - resolved : 0;
}

/* A rotation that stored its new key but did not retire the old one. */
static int rotation_open(const lc_run *r, const char *old) {
    return lc_journal(r, "rotate_begun", old) > lc_journal(r, "rotate_done", old);
}

/* ListAccessKeys answered: ask the host which listed key a store holds (cb). */
static void lc_keys_then_find(lc_run *r, const ol_aws_response *res, ol_find_cb cb) {
    if (lc_take_keys(r, res) != 0)
        return;
    const char *ids[LC_MAX_KEYS];
    for (size_t i = 0; i < r->n_keys; i++)
        ids[i] = r->keys[i].id;
    r->state = LC_FIND;
    int rc = r->h->secret_find(r->item, ids, r->n_keys, cb, r);
    if (rc != 0)
        lc_fail(r, "cannot ask the stores about user %s's keys: %s", r->user, r->h->strerror(rc));
}

/* ---- destroy ------------------------------------------------------------------------------ */

static void destroy_next_key(lc_run *r) {
    if (r->next < r->n_keys) {
        lc_send_key(r, LC_DELETE_KEY, r->keys[r->next].id);
        return;
    }
    lc_send(r, LC_LIST_POLICIES, NULL, 0, 0);
}

static void destroy_next_policy(lc_run *r) {
    if (r->next < r->n_policies) {
        ol_kv extra[] = {{"PolicyName", r->policies[r->next]}};
        lc_send(r, LC_DELETE_POLICY, extra, 1, 0);
        return;
    }
    lc_send(r, LC_DELETE_USER, NULL, 0, 0);
}

static int take_policies(lc_run *r, const ol_aws_response *res) {
    static const char p[] = "ListUserPoliciesResponse/ListUserPoliciesResult/PolicyNames/member";
    ol_xml *doc = lc_parse(r, res);
    if (doc == NULL)
        return -1;
    size_t n = r->h->xml_count(doc, p);
    r->policies = calloc(n ? n : 1, sizeof(char *));
    for (size_t i = 0; r->policies != NULL && i < n; i++) {
        const char *name = r->h->xml_text(doc, p, i);
        if ((r->policies[r->n_policies] = strdup(name ? name : "")) != NULL)
            r->n_policies++;
    }
    r->h->xml_free(doc);
    if (r->policies == NULL) {
        lc_fail(r, "out of memory");
        return -1;
    }
    return 0;
}

/* The user is ours (ownership tag, the journal, or --adopt): 0, else the item failed. */
static int destroy_check_owner(lc_run *r, const ol_aws_response *res) {
    static const char *const owners[] = {"iam", NULL};
    ol_xml *doc = lc_parse(r, res);
    if (doc == NULL)
        return -1;
    r->tagged =
        lifecycle_tagged(r->h, doc, "ListUserTagsResponse/ListUserTagsResult/Tags/member/Key",
                         "ListUserTagsResponse/ListUserTagsResult/Tags/member/Value");
    r->h->xml_free(doc);
    if (r->tagged || lifecycle_journaled(r->h, r->item, owners) ||
        r->h->run_flag(r->stage, "adopt"))
        return 0;
    char *why = lifecycle_not_ours(r->h, "IAM user", r->user);
    const ol_host *h = r->h;
    lc_finish(r, OL_OUTCOME_FAILED, why ? why : "not created by opsline");
    h->free(why);
    return -1;
}

static void on_destroy(lc_run *r, const ol_aws_response *res) {
    int gone = lifecycle_is_error(res, "NoSuchEntity");
    if (res->result != 0 && !(gone && r->state != LC_LIST_TAGS && r->state != LC_LIST_KEYS &&
                              r->state != LC_LIST_POLICIES)) {
        lc_fail_aws(r, res);
        return;
    }
    switch (r->state) {
    case LC_GET_USER:
        if (gone) {
            lc_finish(r, OL_OUTCOME_ABSENT, NULL);
            return;
        }
        lc_send(r, LC_LIST_TAGS, NULL, 0, 0);
        return;
    case LC_LIST_TAGS:
        if (destroy_check_owner(r, res) == 0)
            lc_send(r, LC_LIST_KEYS, NULL, 0, 0);
        return;
    case LC_LIST_KEYS:
        if (lc_take_keys(r, res) != 0)
            return;
        r->next = 0;
        destroy_next_key(r);
        return;
    case LC_DELETE_KEY:
        r->h->journal_append(r->item, r->stage, "access_key_deleted", r->keys[r->next].id);
        r->h->log(r->stage, r->item, OL_LOG_INFO, "deleted access key %s of user %s",
                  r->keys[r->next].id, r->user);
        r->next++;
        destroy_next_key(r);
        return;
    case LC_LIST_POLICIES:
        if (take_policies(r, res) != 0)
            return;
        r->next = 0;
        destroy_next_policy(r);
        return;
    case LC_DELETE_POLICY:
        r->next++;
        destroy_next_policy(r);
        return;
    case LC_DELETE_USER:
        r->h->journal_append(r->item, r->stage, "user_deleted", r->user);
        lc_finish(r, OL_OUTCOME_DELETED, NULL);
        return;
    default:
        lc_fail(r, "iam: an answer arrived in state %s", lc_names[r->state]);
    }
}

/* DeleteUser refuses a user with attached managed policies, groups, a console password,
 * MFA devices, certificates or SSH keys: say so instead of AWS's bare DeleteConflict. */
static void destroy_conflict(lc_run *r, const ol_aws_response *res) {
    lc_fail(r,
            "DeleteUser for user %s: DeleteConflict: %s; the user still has something opsline "
            "did not create (attached managed policies, groups, a console password, MFA "
            "devices, signing certificates or SSH keys): remove it and rerun destroy",
            r->user, res->error_message ? res->error_message : "");
}

/* ---- rotate ---------------------------------------------------------------------------------- */

static void rotate_next_delete(lc_run *r);

/* The first key (not the stored one) with an open rotation: the run that stored the new key
 * died before retiring this one. */
static const lc_key *open_rotation(const lc_run *r) {
    for (size_t i = 0; r->stored[0] && i < r->n_keys; i++)
        if (strcmp(r->keys[i].id, r->stored) != 0 && rotation_open(r, r->keys[i].id))
            return &r->keys[i];
    return NULL;
}

/* Which keys go before the new one is made (IAM allows two): lost ones (opsline created
 * them and no store ever held the secret, or every store that held it lost it, or the
 * unseen result of a pending request) and opsline's retired keys (inactive: a previous
 * --keep-old). An active key whose secret may live in a store not configured now, and a
 * key opsline never had, stay. */
static void rotate_classify(lc_run *r, const char *const *lost, size_t n_lost) {
    size_t pending = lc_pending_requests(r);
    for (size_t i = 0; i < r->n_keys; i++) {
        lc_key *k = &r->keys[i];
        if (strcmp(k->id, r->stored) == 0)
            continue;
        int is_lost = 0;
        for (size_t j = 0; j < n_lost; j++)
            is_lost |= strcmp(lost[j], k->id) == 0;
        int never_stored = lc_journal(r, "access_key_created", k->id) > 0 &&
                           lc_journal(r, "secret_stored", k->id) == 0;
        int retired = key_ours(r, k->id) && strcmp(k->status, "Inactive") == 0;
        k->doomed = is_lost || never_stored || retired ||
                    (pending > 0 && lc_journal(r, "access_key_seen", k->id) == 0);
    }
}

static void rotate_found(void *arg, const char *key_id, const char *const *lost, size_t n_lost,
                         const char *reason) {
    lc_run *r = arg;
    if (reason != NULL)
        r->h->log(r->stage, r->item, OL_LOG_WARN, "could not read back every store: %s", reason);
    snprintf(r->stored, sizeof(r->stored), "%s", key_id ? key_id : "");
    const lc_key *o = open_rotation(r);
    if (o != NULL) {
        /* Resume: the new key is stored; the commit retires the old one. */
        snprintf(r->old, sizeof(r->old), "%s", o->id);
        if (r->h->item_set(r->item, BAG_OLD_KEY, r->old, 0) != 0) {
            lc_fail(r, "out of memory");
            return;
        }
        char why[400];
        snprintf(why, sizeof(why),
                 "resuming an interrupted rotation: new key %s is stored, old key %s is retired "
                 "next",
                 r->stored, r->old);
        lc_finish(r, OL_OUTCOME_UPDATED, why);
        return;
    }
    rotate_classify(r, lost, n_lost);
    snprintf(r->old, sizeof(r->old), "%s", r->stored);
    r->next = 0;
    rotate_next_delete(r);
}

static void rotate_journaled(void *arg, int status);

static void rotate_create(lc_run *r) {
    const char *kept[LC_MAX_KEYS];
    size_t n_kept = 0;
    for (size_t i = 0; i < r->n_keys; i++)
        if (!r->keys[i].doomed)
            kept[n_kept++] = r->keys[i].id;
    if (n_kept >= 2) {
        lc_fail(r,
                "user %s has two access keys opsline may not delete (%s, %s: a key it did not "
                "create, or an active key whose secret no configured store holds); IAM allows "
                "two: delete the one not in use (aws iam delete-access-key --user-name %s "
                "--access-key-id ...) and rerun rotate",
                r->user, kept[0], kept[1], r->user);
        return;
    }
    if (lc_pending_requests(r) > 0 &&
        r->h->journal_append(r->item, r->stage, "access_key_reconciled", NULL) != 0) {
        lc_fail(r, "cannot journal the reconciliation of user %s's keys", r->user);
        return;
    }
    for (size_t i = 0; i < r->n_keys; i++)
        if (!r->keys[i].doomed && lc_journal(r, "access_key_seen", r->keys[i].id) == 0)
            r->h->journal_append(r->item, r->stage, "access_key_seen", r->keys[i].id);
    /* One fsync (off the loop) puts both records on disk before the request goes. */
    if ((r->old[0] && r->h->journal_append(r->item, r->stage, "rotate_begun", r->old) != 0) ||
        r->h->journal_append_synced(r->item, r->stage, "access_key_requested", NULL,
                                    rotate_journaled, r) != 0)
        lc_fail(r, "cannot journal the rotation of user %s; nothing was changed", r->user);
}

/* rotate_begun and access_key_requested are on disk: the new key may be requested. */
static void rotate_journaled(void *arg, int status) {
    lc_run *r = arg;
    if (status == OL_ECANCELED) { /* the stage was abandoned (its time limit) meanwhile */
        lc_fail(r,
                "the new access key for user %s was not requested (the stage had ended); "
                "nothing was changed",
                r->user);
        return;
    }
    if (status != 0) {
        lc_fail(r, "cannot fsync the journal before rotating user %s's key; nothing was changed",
                r->user);
        return;
    }
    r->h->checkpoint(r->item, "iam.before_create_access_key");
    r->state = LC_CREATE_KEY;
    ol_kv params[] = {{"UserName", r->user}};
    ol_aws_request req = {.struct_size = sizeof(ol_aws_request),
                          .service = "iam",
                          .method = "POST",
                          .flags = OL_AWS_NOT_IDEMPOTENT};
    ol_kv all[] = {{"Action", "CreateAccessKey"}, {"Version", IAM_API_VERSION}, params[0]};
    req.params = all;
    req.n_params = 3;
    int rc = r->h->aws_send(r->item, &req, on_answer, r);
    if (rc < 0)
        lc_fail(r, "CreateAccessKey for user %s could not be sent: %s", r->user,
                r->h->strerror(rc));
}

static void rotate_next_delete(lc_run *r) {
    while (r->next < r->n_keys && !r->keys[r->next].doomed)
        r->next++;
    if (r->next < r->n_keys) {
        lc_send_key(r, LC_DELETE_KEY, r->keys[r->next].id);
        return;
    }
    rotate_create(r);
}

static void rotate_created(lc_run *r, const ol_aws_response *res) {
    static const char idp[] = "CreateAccessKeyResponse/CreateAccessKeyResult/AccessKey/AccessKeyId";
    static const char secp[] =
        "CreateAccessKeyResponse/CreateAccessKeyResult/AccessKey/SecretAccessKey";
    if (res->result == OL_EAWS) {
        r->h->journal_append(r->item, r->stage, "access_key_create_failed", NULL);
        lc_fail_aws(r, res);
        return;
    }
    ol_xml *doc = res->result == 0 ? r->h->xml_parse(res->body, res->body_len) : NULL;
    const char *id = doc ? r->h->xml_text(doc, idp, 0) : NULL;
    const char *secret = doc ? r->h->xml_text(doc, secp, 0) : NULL;
    if (id == NULL || secret == NULL || !*id || !*secret) {
        if (doc != NULL)
            r->h->xml_free(doc);
        r->h->journal_append_durable(r->item, r->stage, "access_key_unknown", NULL);
        lc_fail(r,
                "CreateAccessKey for user %s: outcome unknown (%s); the old key stays; rerun "
                "rotate to remove any unstored key and rotate again",
                r->user, r->h->strerror(res->result ? res->result : OL_EUNKNOWN));
        return;
    }
    int rc = r->h->journal_append(r->item, r->stage, "access_key_created", id);
    if (rc == 0)
        rc = r->h->item_set(r->item, OL_KEY_ACCESS_KEY_ID, id, 0);
    if (rc == 0)
        rc = r->h->item_set(r->item, OL_KEY_SECRET_ACCESS_KEY, secret, OL_BAG_SECRET);
    if (rc == 0 && r->old[0])
        rc = r->h->item_set(r->item, BAG_OLD_KEY, r->old, 0);
    char why[300];
    snprintf(why, sizeof(why), "new access key %s%s%s", id, r->old[0] ? " replaces " : "", r->old);
    r->h->wipe((char *)secret, strlen(secret));
    r->h->xml_free(doc);
    if (rc != 0) {
        lc_fail(r, "created a key for user %s but could not record it; rerun rotate", r->user);
        return;
    }
    r->h->checkpoint(r->item, "iam.after_create_access_key");
    lc_finish(r, OL_OUTCOME_CREATED, why);
}

static void on_rotate(lc_run *r, const ol_aws_response *res) {
    if (r->state == LC_CREATE_KEY) {
        rotate_created(r, res);
        return;
    }
    if (r->state == LC_DELETE_KEY) {
        if (res->result != 0 && !lifecycle_is_error(res, "NoSuchEntity")) {
            lc_fail_aws(r, res);
            return;
        }
        r->h->journal_append(r->item, r->stage, "access_key_deleted", r->keys[r->next].id);
        r->h->log(r->stage, r->item, OL_LOG_INFO,
                  "deleted access key %s of user %s (lost, or retired by an earlier rotation)",
                  r->keys[r->next].id, r->user);
        r->keys[r->next].doomed = 1;
        r->next++;
        rotate_next_delete(r);
        return;
    }
    if (lifecycle_is_error(res, "NoSuchEntity")) {
        lc_fail(r, "user %s does not exist: nothing to rotate; run `opsline apply` first", r->user);
        return;
    }
    if (res->result != 0) {
        lc_fail_aws(r, res);
        return;
    }
    lc_keys_then_find(r, res, rotate_found);
}

/* ---- rotate's commit: prove the new key, deactivate the old, delete it ------------------- */

static void commit_done(lc_run *r) {
    char why[400];
    int keep = r->h->run_flag(r->stage, "keep-old");
    r->h->journal_append_durable(r->item, r->stage, "rotate_done", r->old);
    snprintf(why, sizeof(why), "access key %s is active and stored; old key %s %s",
             r->h->item_get(r->item, OL_KEY_ACCESS_KEY_ID), r->old,
             keep ? "is inactive (kept: --keep-old; the next rotate deletes it)" : "deleted");
    lc_finish(r, OL_OUTCOME_UPDATED, why);
}

static void commit_prove(lc_run *r) {
    static const char *const not_yet[] = {"InvalidClientTokenId", "SignatureDoesNotMatch",
                                          "AccessDenied", NULL};
    const char *id = r->h->item_get(r->item, OL_KEY_ACCESS_KEY_ID);
    const char *secret = r->h->item_get(r->item, OL_KEY_SECRET_ACCESS_KEY);
    ol_kv params[] = {{"Action", "GetCallerIdentity"}, {"Version", "2011-06-15"}};
    ol_aws_request req = {.struct_size = sizeof(ol_aws_request),
                          .service = "sts",
                          .method = "POST",
                          .params = params,
                          .n_params = 2,
                          .consistency_codes = not_yet,
                          .consistency_ms = KEY_PROOF_MS,
                          .access_key_id = id,
                          .secret_access_key = secret};
    r->state = LC_PROVE;
    int rc = r->h->aws_send(r->item, &req, on_answer, r);
    if (rc < 0)
        lc_fail(r, "could not prove the new key of user %s: %s", r->user, r->h->strerror(rc));
}

static void commit_read(void *arg, const char *key_id, const char *const *lost, size_t n_lost,
                        const char *reason) {
    lc_run *r = arg;
    (void)lost, (void)n_lost;
    if (key_id == NULL || r->h->item_get(r->item, OL_KEY_SECRET_ACCESS_KEY) == NULL) {
        lc_fail(r,
                "no configured store gives back the secret of the new key %s of user %s%s%s; "
                "the old key %s stays active",
                r->h->item_get(r->item, OL_KEY_ACCESS_KEY_ID), r->user, reason ? ": " : "",
                reason ? reason : "", r->old);
        return;
    }
    commit_prove(r);
}

static void on_commit(lc_run *r, const ol_aws_response *res) {
    int gone = lifecycle_is_error(res, "NoSuchEntity");
    switch (r->state) {
    case LC_PROVE:
        if (res->result != 0) {
            char *reason = r->h->aws_reason("the new key: GetCallerIdentity", res);
            const ol_host *h = r->h;
            lc_fail(r,
                    "%s; the new key does not work, so the old key %s stays active: rerun "
                    "rotate",
                    reason ? reason : "refused", r->old);
            h->free(reason);
            return;
        }
        r->h->checkpoint(r->item, "iam.rotate.before_deactivate");
        lc_send_key(r, LC_DEACTIVATE, r->old);
        return;
    case LC_DEACTIVATE:
        if (res->result != 0 && !gone) {
            lc_fail_aws(r, res);
            return;
        }
        r->h->journal_append(r->item, r->stage, "access_key_deactivated", r->old);
        r->h->checkpoint(r->item, "iam.rotate.before_delete");
        if (gone || r->h->run_flag(r->stage, "keep-old")) {
            commit_done(r);
            return;
        }
        lc_send_key(r, LC_DELETE_OLD, r->old);
        return;
    case LC_DELETE_OLD:
        if (res->result != 0 && !gone) {
            lc_fail_aws(r, res);
            return;
        }
        r->h->journal_append(r->item, r->stage, "access_key_deleted", r->old);
        r->h->checkpoint(r->item, "iam.rotate.after_delete");
        commit_done(r);
        return;
    default:
        lc_fail(r, "iam: an answer arrived in state %s", lc_names[r->state]);
    }
}

/* ---- plan and status ----------------------------------------------------------------------- */

static void drift_add(lc_run *r, const char *what) {
    size_t n = strlen(r->drift);
    snprintf(r->drift + n, sizeof(r->drift) - n, "%s%s", n ? "; " : "", what);
}

/* "2026-12-02T10:00:00Z" -> days before now, or -1. */
static long days_since(const char *iso) {
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    if (iso == NULL || sscanf(iso, "%d-%d-%dT%d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                              &tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t t = timegm(&tm);
    return (long)((time(NULL) - t) / 86400);
}

static void plan_finish(lc_run *r) {
    if (r->drift[0])
        lc_finish(r, OL_OUTCOME_UPDATED, r->drift);
    else
        lc_finish(r, OL_OUTCOME_UNCHANGED, NULL);
}

static void plan_next_last_used(lc_run *r) {
    if (r->mode != OL_MODE_STATUS || r->next >= r->n_keys) {
        plan_finish(r);
        return;
    }
    ol_kv extra[] = {{"AccessKeyId", r->keys[r->next].id}};
    r->state = LC_LAST_USED;
    ol_kv params[] = {{"Action", "GetAccessKeyLastUsed"}, {"Version", IAM_API_VERSION}, extra[0]};
    ol_aws_request req = {.struct_size = sizeof(ol_aws_request),
                          .service = "iam",
                          .method = "POST",
                          .params = params,
                          .n_params = 3};
    int rc = r->h->aws_send(r->item, &req, on_answer, r);
    if (rc < 0)
        lc_fail(r, "GetAccessKeyLastUsed could not be sent: %s", r->h->strerror(rc));
}

static void plan_key_fact(lc_run *r, const ol_aws_response *res) {
    static const char base[] = "GetAccessKeyLastUsedResponse/GetAccessKeyLastUsedResult/"
                               "AccessKeyLastUsed/";
    const lc_key *k = &r->keys[r->next];
    ol_xml *doc = res->result == 0 ? r->h->xml_parse(res->body, res->body_len) : NULL;
    char p_date[160], p_svc[160], used[160] = "never used";
    snprintf(p_date, sizeof(p_date), "%sLastUsedDate", base);
    snprintf(p_svc, sizeof(p_svc), "%sServiceName", base);
    const char *date = doc ? r->h->xml_text(doc, p_date, 0) : NULL;
    const char *svc = doc ? r->h->xml_text(doc, p_svc, 0) : NULL;
    if (date != NULL && *date)
        snprintf(used, sizeof(used), "last used %s (%s)", date,
                 svc && *svc && strcmp(svc, "N/A") != 0 ? svc : "service unknown");
    else if (res->result != 0)
        snprintf(used, sizeof(used), "last use unknown");
    if (doc != NULL)
        r->h->xml_free(doc);
    char name[160], value[400];
    snprintf(name, sizeof(name), "key %s", k->id);
    snprintf(value, sizeof(value), "%s, created %s (%ld days ago), %s%s", k->status, k->create_date,
             days_since(k->create_date), used, strcmp(k->id, r->stored) == 0 ? ", stored" : "");
    r->h->report_fact(r->stage, r->item, name, value);
    r->next++;
    plan_next_last_used(r);
}

static void plan_found(void *arg, const char *key_id, const char *const *lost, size_t n_lost,
                       const char *reason) {
    lc_run *r = arg;
    snprintf(r->stored, sizeof(r->stored), "%s", key_id ? key_id : "");
    if (reason != NULL)
        drift_add(r, reason);
    if (key_id == NULL)
        drift_add(r, "would create an access key (no store holds a key of the user)");
    for (size_t i = 0; i < r->n_keys; i++) {
        int is_lost = 0;
        for (size_t j = 0; j < n_lost; j++)
            is_lost |= strcmp(lost[j], r->keys[i].id) == 0;
        if (strcmp(r->keys[i].id, r->stored) != 0 &&
            (is_lost || (lc_journal(r, "access_key_created", r->keys[i].id) > 0 &&
                         lc_journal(r, "secret_stored", r->keys[i].id) == 0))) {
            char what[200];
            snprintf(what, sizeof(what), "would delete lost access key %s", r->keys[i].id);
            drift_add(r, what);
        }
    }
    r->next = 0;
    plan_next_last_used(r);
}

/* The tags apply would add or correct, by apply's own comparison. */
static void plan_tags(lc_run *r, const ol_xml *doc) {
    ol_kv *missing = r->want.n_tags ? calloc(r->want.n_tags, sizeof(*missing)) : NULL;
    size_t n = missing && r->want.diff
                   ? r->want.diff(r->h, doc, r->want.tags, r->want.n_tags, missing)
                   : 0;
    for (size_t i = 0; i < n; i++) {
        char what[400];
        snprintf(what, sizeof(what), "would set tag %.128s=%.256s", missing[i].name,
                 missing[i].value ? missing[i].value : "");
        drift_add(r, what);
    }
    free(missing);
}

static void on_plan(lc_run *r, const ol_aws_response *res) {
    if (r->state == LC_LAST_USED) {
        plan_key_fact(r, res);
        return;
    }
    if (r->state == LC_GET_USER && lifecycle_is_error(res, "NoSuchEntity")) {
        r->h->report_fact(r->stage, r->item, "user", "absent");
        lc_finish(r, OL_OUTCOME_CREATED, "would create the user and an access key");
        return;
    }
    if (res->result != 0) {
        lc_fail_aws(r, res);
        return;
    }
    if (r->state == LC_GET_USER) {
        r->h->report_fact(r->stage, r->item, "user", r->user);
        lc_send(r, LC_LIST_TAGS, NULL, 0, 0);
        return;
    }
    if (r->state == LC_LIST_TAGS) {
        ol_xml *doc = lc_parse(r, res);
        if (doc == NULL)
            return;
        r->tagged =
            lifecycle_tagged(r->h, doc, "ListUserTagsResponse/ListUserTagsResult/Tags/member/Key",
                             "ListUserTagsResponse/ListUserTagsResult/Tags/member/Value");
        plan_tags(r, doc);
        r->h->xml_free(doc);
        r->h->report_fact(r->stage, r->item, "owner",
                          r->tagged                                   ? "opsline (tag)"
                          : lc_journal(r, "access_key_created", NULL) ? "opsline (journal)"
                                                                      : "not opsline");
        lc_send(r, LC_LIST_KEYS, NULL, 0, 0);
        return;
    }
    lc_keys_then_find(r, res, plan_found);
}

/* ---- entry points ---------------------------------------------------------------------------- */

static void on_answer(void *arg, const ol_aws_response *res) {
    lc_run *r = arg;
    if (r->commit)
        on_commit(r, res);
    else if (r->mode == OL_MODE_DESTROY && r->state == LC_DELETE_USER &&
             lifecycle_is_error(res, "DeleteConflict"))
        destroy_conflict(r, res);
    else if (r->mode == OL_MODE_DESTROY)
        on_destroy(r, res);
    else if (r->mode == OL_MODE_ROTATE)
        on_rotate(r, res);
    else
        on_plan(r, res);
}

static lc_run *lc_new(const ol_host *h, ol_stage *stage, ol_item *item) {
    lc_run *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->h = h;
    r->stage = stage;
    r->item = item;
    r->user = h->item_name(item);
    r->mode = h->run_mode(stage);
    return r;
}

int iam_lifecycle_destroy(const ol_host *h, ol_stage *stage, ol_item *item) {
    lc_run *r = lc_new(h, stage, item);
    if (r == NULL)
        return OL_ENOMEM;
    lc_send(r, LC_GET_USER, NULL, 0, 0);
    return 0;
}

int iam_lifecycle_rotate(const ol_host *h, ol_stage *stage, ol_item *item) {
    lc_run *r = lc_new(h, stage, item);
    if (r == NULL)
        return OL_ENOMEM;
    if (h->item_set(item, OL_KEY_IAM_USER, r->user, 0) != 0) {
        lc_free(r);
        return OL_ENOMEM;
    }
    lc_send(r, LC_LIST_KEYS, NULL, 0, 0);
    return 0;
}

int iam_lifecycle_commit(const ol_host *h, ol_stage *stage, ol_item *item) {
    lc_run *r = lc_new(h, stage, item);
    if (r == NULL)
        return OL_ENOMEM;
    r->commit = 1;
    const char *old = h->item_get(item, BAG_OLD_KEY);
    const char *id = h->item_get(item, OL_KEY_ACCESS_KEY_ID);
    if (old == NULL || id == NULL) {
        lc_finish(r, OL_OUTCOME_UPDATED, "no old key to retire");
        return 0;
    }
    snprintf(r->old, sizeof(r->old), "%s", old);
    if (h->item_get(item, OL_KEY_SECRET_ACCESS_KEY) != NULL) {
        commit_prove(r);
        return 0;
    }
    r->state = LC_READ_SECRET;
    int rc = h->secret_read(item, id, commit_read, r);
    if (rc != 0)
        lc_fail(r, "cannot read the new key back from the stores: %s", h->strerror(rc));
    return 0;
}

int iam_lifecycle_plan(const ol_host *h, ol_stage *stage, ol_item *item, iam_plan_want want) {
    lc_run *r = lc_new(h, stage, item);
    if (r == NULL) {
        free(want.tags);
        return OL_ENOMEM;
    }
    r->want = want;
    lc_send(r, LC_GET_USER, NULL, 0, 0);
    return 0;
}
