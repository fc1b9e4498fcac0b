/* policy_lifecycle: destroy removes the item user's inline policy (when the user is
 * opsline's: its managed-by=opsline tag or the journal, or --adopt); plan and status read
 * the policy and name the actions apply would add or remove. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opsline/opsline.h"

#include "../lifecycle.h"
#include "policy_lifecycle.h"

typedef enum pl_state { PL_GET, PL_TAGS, PL_DELETE } pl_state;

static const char *const pl_names[] = {
    [PL_GET] = "GetUserPolicy", [PL_TAGS] = "ListUserTags", [PL_DELETE] = "DeleteUserPolicy"};

typedef struct pl_run {
    const ol_host *h;
    ol_stage *stage;
    ol_item *item;
    const char *user;
    char *name; /* the policy's */
    int mode;
    pl_state state;
    policy_wanted wanted;
} pl_run;

static void pl_finish(pl_run *r, ol_outcome outcome, const char *reason) {
    r->h->done(r->stage, r->item, outcome, reason);
    json_decref(r->wanted.doc);
    free(r->name);
    free(r);
}

static void pl_fail_aws(pl_run *r, const ol_aws_response *res) {
    const ol_host *h = r->h;
    char *reason =
        lifecycle_aws_reason(h, res, "%s %s of user %s", pl_names[r->state], r->name, r->user);
    pl_finish(r, OL_OUTCOME_FAILED, reason ? reason : "out of memory");
    h->free(reason);
}

static void on_answer(void *arg, const ol_aws_response *res);

static void pl_send(pl_run *r, pl_state state) {
    ol_kv params[] = {{"UserName", r->user}, {"PolicyName", r->name}};
    r->state = state;
    int rc = lifecycle_iam_send(r->h, r->item, pl_names[state], params, state == PL_TAGS ? 1 : 2, 0,
                                on_answer, r);
    if (rc < 0) {
        ol_aws_response refused = {.struct_size = sizeof(ol_aws_response), .result = rc};
        pl_fail_aws(r, &refused);
    }
}

/* The Action values of every statement of doc, as a JSON array of strings. */
static json_t *actions_of(const json_t *doc) {
    json_t *out = json_array(), *st = json_object_get(doc, "Statement");
    json_t *one = json_is_object(st) ? json_pack("[O]", st) : json_incref(st);
    size_t i, j;
    json_t *s, *a;
    json_array_foreach(one, i, s) {
        json_t *act = json_object_get(s, "Action");
        if (json_is_string(act))
            json_array_append(out, act);
        json_array_foreach(act, j, a) json_array_append(out, a);
    }
    json_decref(one);
    return out;
}

static int has_string(const json_t *list, const char *v) {
    size_t i;
    json_t *x;
    json_array_foreach(list, i, x) if (json_is_string(x) &&
                                       strcasecmp(json_string_value(x), v) == 0) return 1;
    return 0;
}

/* "would add s3:A, s3:B; would remove s3:C": the actions that differ; other differences
 * (resources, conditions) as a plain "would replace". */
static void describe_difference(const json_t *have, const json_t *want, char *buf, size_t size) {
    json_t *ha = actions_of(have), *wa = actions_of(want);
    size_t i, off = 0;
    json_t *x;
    const char *sep = "would add ";
    buf[0] = '\0';
    json_array_foreach(wa, i, x) if (!has_string(ha, json_string_value(x))) {
        off += (size_t)snprintf(buf + off, off < size ? size - off : 0, "%s%s", sep,
                                json_string_value(x));
        sep = ", ";
    }
    sep = off ? "; would remove " : "would remove ";
    json_array_foreach(ha, i, x) if (json_is_string(x) && !has_string(wa, json_string_value(x))) {
        off += (size_t)snprintf(buf + off, off < size ? size - off : 0, "%s%s", sep,
                                json_string_value(x));
        sep = ", ";
    }
    if (off == 0)
        snprintf(buf, size, "would replace the policy (its resources or conditions differ)");
    json_decref(ha);
    json_decref(wa);
}

static void on_plan(pl_run *r, const ol_aws_response *res) {
    if (lifecycle_is_error(res, "NoSuchEntity")) {
        pl_finish(r, OL_OUTCOME_CREATED, "would create the inline policy");
        return;
    }
    if (res->result != 0) {
        pl_fail_aws(r, res);
        return;
    }
    ol_xml *doc = r->h->xml_parse(res->body, res->body_len);
    const char *text =
        doc ? r->h->xml_text(doc, "GetUserPolicyResponse/GetUserPolicyResult/PolicyDocument", 0)
            : NULL;
    json_t *have = text ? r->wanted.decode(text) : NULL;
    if (doc != NULL)
        r->h->xml_free(doc);
    char why[1024];
    if (have == NULL) {
        pl_finish(r, OL_OUTCOME_UPDATED, "would replace the policy (not readable as JSON)");
        return;
    }
    if (r->wanted.equal(have, r->wanted.doc)) {
        json_decref(have);
        pl_finish(r, OL_OUTCOME_UNCHANGED, NULL);
        return;
    }
    describe_difference(have, r->wanted.doc, why, sizeof(why));
    json_decref(have);
    pl_finish(r, OL_OUTCOME_UPDATED, why);
}

static void on_destroy(pl_run *r, const ol_aws_response *res) {
    static const char *const owners[] = {"iam", "policy", NULL};
    int gone = lifecycle_is_error(res, "NoSuchEntity");
    if (gone && r->state != PL_TAGS) {
        pl_finish(r, r->state == PL_GET ? OL_OUTCOME_ABSENT : OL_OUTCOME_DELETED, NULL);
        return;
    }
    if (res->result != 0) {
        pl_fail_aws(r, res);
        return;
    }
    if (r->state == PL_GET) {
        pl_send(r, PL_TAGS);
        return;
    }
    if (r->state == PL_DELETE) {
        pl_finish(r, OL_OUTCOME_DELETED, NULL);
        return;
    }
    ol_xml *doc = r->h->xml_parse(res->body, res->body_len);
    int ours =
        lifecycle_tagged(r->h, doc, "ListUserTagsResponse/ListUserTagsResult/Tags/member/Key",
                         "ListUserTagsResponse/ListUserTagsResult/Tags/member/Value") ||
        lifecycle_journaled(r->h, r->item, owners);
    if (doc != NULL)
        r->h->xml_free(doc);
    if (!ours && !r->h->run_flag(r->stage, "adopt")) {
        const ol_host *h = r->h;
        char *what = h->format("inline policy %s of IAM user", r->name);
        char *why = what ? lifecycle_not_ours(h, what, r->user) : NULL;
        pl_finish(r, OL_OUTCOME_FAILED, why ? why : "not created by opsline");
        h->free(what);
        h->free(why);
        return;
    }
    pl_send(r, PL_DELETE);
}

static void on_answer(void *arg, const ol_aws_response *res) {
    pl_run *r = arg;
    if (r->mode == OL_MODE_DESTROY)
        on_destroy(r, res);
    else
        on_plan(r, res);
}

static pl_run *pl_new(const ol_host *h, ol_stage *stage, ol_item *item, const char *name) {
    pl_run *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->h = h;
    r->stage = stage;
    r->item = item;
    r->user = h->item_name(item);
    r->mode = h->run_mode(stage);
    r->name = strdup(name ? name : r->user);
    if (r->name == NULL) {
        free(r);
        return NULL;
    }
    return r;
}

int policy_lifecycle_destroy(const ol_host *h, ol_stage *stage, ol_item *item,
                             const char *policy_name) {
    pl_run *r = pl_new(h, stage, item, policy_name);
    if (r == NULL)
        return OL_ENOMEM;
    pl_send(r, PL_GET);
    return 0;
}

int policy_lifecycle_plan(const ol_host *h, ol_stage *stage, ol_item *item, const char *policy_name,
                          policy_wanted wanted) {
    pl_run *r = wanted.doc ? pl_new(h, stage, item, policy_name) : NULL;
    if (r == NULL) {
        json_decref(wanted.doc);
        return OL_ENOMEM;
    }
    r->wanted = wanted;
    pl_send(r, PL_GET);
    return 0;
}
