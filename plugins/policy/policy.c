/* policy: the inline IAM user policy stage. It gives the item's IAM user (iam.user) access to
 * the item's bucket (its ARN follows from the item's name and region, so the stage needs
 * only iam and overlaps the bucket stage) with one inline policy: the runbook's fifteen S3
 * actions by default, a preset, or an explicit list checked against the S3 action names
 * IAM knows. For a user the iam stage has just created it writes the policy at once
 * (PutUserPolicy); otherwise it reads the current one (GetUserPolicy), compares it with the
 * wanted one semantically (policy_equal: actions and resources as sets), and writes it only
 * when it is missing or different. Policy JSON is built and parsed with jansson; the
 * URL-encoded document IAM returns is decoded with libcurl. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "opsline/opsline.h"

#include "../arn.h"
#include "policy_lifecycle.h"

/* IAM User Guide, "IAM and AWS STS quotas": the inline policies of a user total at most
 * 2,048 characters, whitespace not counted. */
#define POLICY_MAX_CHARS 2048

/* The S3 action names of the Service Authorization Reference ("Actions defined by Amazon
 * S3"), without the "s3:" prefix: what an explicit `actions` list is checked against. */
static const char *const s3_actions[] = {
    "AbortMultipartUpload",
    "BypassGovernanceRetention",
    "CreateAccessGrant",
    "CreateAccessGrantsInstance",
    "CreateAccessGrantsLocation",
    "CreateAccessPoint",
    "CreateAccessPointForObjectLambda",
    "CreateBucket",
    "CreateJob",
    "CreateMultiRegionAccessPoint",
    "CreateStorageLensGroup",
    "DeleteAccessGrant",
    "DeleteAccessPoint",
    "DeleteAccessPointForObjectLambda",
    "DeleteAccessPointPolicy",
    "DeleteAccessPointPolicyForObjectLambda",
    "DeleteBucket",
    "DeleteBucketOwnershipControls",
    "DeleteBucketPolicy",
    "DeleteBucketWebsite",
    "DeleteJobTagging",
    "DeleteMultiRegionAccessPoint",
    "DeleteObject",
    "DeleteObjectTagging",
    "DeleteObjectVersion",
    "DeleteObjectVersionTagging",
    "DeleteStorageLensConfiguration",
    "DeleteStorageLensConfigurationTagging",
    "DeleteStorageLensGroup",
    "DescribeJob",
    "DescribeMultiRegionAccessPointOperation",
    "GetAccelerateConfiguration",
    "GetAccessGrant",
    "GetAccessPoint",
    "GetAccessPointConfigurationForObjectLambda",
    "GetAccessPointForObjectLambda",
    "GetAccessPointPolicy",
    "GetAccessPointPolicyForObjectLambda",
    "GetAccessPointPolicyStatus",
    "GetAccessPointPolicyStatusForObjectLambda",
    "GetAccountPublicAccessBlock",
    "GetAnalyticsConfiguration",
    "GetBucketAcl",
    "GetBucketCORS",
    "GetBucketLocation",
    "GetBucketLogging",
    "GetBucketMetadataTableConfiguration",
    "GetBucketNotification",
    "GetBucketObjectLockConfiguration",
    "GetBucketOwnershipControls",
    "GetBucketPolicy",
    "GetBucketPolicyStatus",
    "GetBucketPublicAccessBlock",
    "GetBucketRequestPayment",
    "GetBucketTagging",
    "GetBucketVersioning",
    "GetBucketWebsite",
    "GetDataAccess",
    "GetEncryptionConfiguration",
    "GetIntelligentTieringConfiguration",
    "GetInventoryConfiguration",
    "GetJobTagging",
    "GetLifecycleConfiguration",
    "GetMetricsConfiguration",
    "GetMultiRegionAccessPoint",
    "GetMultiRegionAccessPointPolicy",
    "GetMultiRegionAccessPointPolicyStatus",
    "GetObject",
    "GetObjectAcl",
    "GetObjectAttributes",
    "GetObjectLegalHold",
    "GetObjectRetention",
    "GetObjectTagging",
    "GetObjectTorrent",
    "GetObjectVersion",
    "GetObjectVersionAcl",
    "GetObjectVersionAttributes",
    "GetObjectVersionForReplication",
    "GetObjectVersionTagging",
    "GetObjectVersionTorrent",
    "GetReplicationConfiguration",
    "GetStorageLensConfiguration",
    "GetStorageLensConfigurationTagging",
    "GetStorageLensDashboard",
    "GetStorageLensGroup",
    "InitiateReplication",
    "ListAccessGrants",
    "ListAccessPoints",
    "ListAccessPointsForObjectLambda",
    "ListAllMyBuckets",
    "ListBucket",
    "ListBucketMultipartUploads",
    "ListBucketVersions",
    "ListCallerAccessGrants",
    "ListJobs",
    "ListMultiRegionAccessPoints",
    "ListMultipartUploadParts",
    "ListStorageLensConfigurations",
    "ListStorageLensGroups",
    "ListTagsForResource",
    "ObjectOwnerOverrideToBucketOwner",
    "PutAccelerateConfiguration",
    "PutAccessPointConfigurationForObjectLambda",
    "PutAccessPointPolicy",
    "PutAccessPointPolicyForObjectLambda",
    "PutAccessPointPublicAccessBlock",
    "PutAccountPublicAccessBlock",
    "PutAnalyticsConfiguration",
    "PutBucketAcl",
    "PutBucketCORS",
    "PutBucketLogging",
    "PutBucketNotification",
    "PutBucketObjectLockConfiguration",
    "PutBucketOwnershipControls",
    "PutBucketPolicy",
    "PutBucketPublicAccessBlock",
    "PutBucketRequestPayment",
    "PutBucketTagging",
    "PutBucketVersioning",
    "PutBucketWebsite",
    "PutEncryptionConfiguration",
    "PutIntelligentTieringConfiguration",
    "PutInventoryConfiguration",
    "PutJobTagging",
    "PutLifecycleConfiguration",
    "PutMetricsConfiguration",
    "PutMultiRegionAccessPointPolicy",
    "PutObject",
    "PutObjectAcl",
    "PutObjectLegalHold",
    "PutObjectRetention",
    "PutObjectTagging",
    "PutObjectVersionAcl",
    "PutObjectVersionTagging",
    "PutReplicationConfiguration",
    "PutStorageLensConfiguration",
    "PutStorageLensConfigurationTagging",
    "ReplicateDelete",
    "ReplicateObject",
    "ReplicateTags",
    "RestoreObject",
    "TagResource",
    "UntagResource",
    "UpdateJobPriority",
    "UpdateJobStatus",
    "UpdateStorageLensGroup",
};
#define N_S3_ACTIONS (sizeof(s3_actions) / sizeof(s3_actions[0]))

/* S3 API operation names people write where IAM wants an action name, and the action that
 * authorizes them (S3 User Guide, "Required permissions for Amazon S3 API operations"). */
static const char *const api_aliases[][2] = {
    {"ListObjects", "ListBucket"},
    {"ListObjectsV2", "ListBucket"},
    {"HeadBucket", "ListBucket"},
    {"HeadObject", "GetObject"},
    {"CopyObject", "PutObject"},
    {"DeleteObjects", "DeleteObject"},
    {"CreateMultipartUpload", "PutObject"},
    {"UploadPart", "PutObject"},
    {"CompleteMultipartUpload", "PutObject"},
    {"ListMultipartUploads", "ListBucketMultipartUploads"},
    {"ListParts", "ListMultipartUploadParts"},
    {"ListObjectVersions", "ListBucketVersions"},
    {"ListBuckets", "ListAllMyBuckets"},
    {"GetBucketEncryption", "GetEncryptionConfiguration"},
    {"PutBucketEncryption", "PutEncryptionConfiguration"},
    {"GetBucketLifecycleConfiguration", "GetLifecycleConfiguration"},
    {"PutBucketLifecycleConfiguration", "PutLifecycleConfiguration"},
    {"GetPublicAccessBlock", "GetBucketPublicAccessBlock"},
    {"PutPublicAccessBlock", "PutBucketPublicAccessBlock"},
};

/* The runbook's actions, in its order, on the bucket and on its objects. */
static const char *const preset_runbook[] = {
    "s3:ListBucketMultipartUploads",
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
    "s3:GetObjectVersion",
};
static const char *const preset_read_only[] = {
    "s3:ListBucket",
    "s3:GetBucketLocation",
    "s3:GetObject",
    "s3:GetObjectVersion",
};
static const char *const preset_read_write[] = {
    "s3:ListBucket",   "s3:GetBucketLocation",    "s3:ListBucketMultipartUploads",
    "s3:GetObject",    "s3:GetObjectVersion",     "s3:PutObject",
    "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts",
};

typedef struct preset {
    const char *name;
    const char *const *actions;
    size_t n;
} preset;

static const preset presets[] = {
    {"runbook", preset_runbook, sizeof(preset_runbook) / sizeof(preset_runbook[0])},
    {"read-only", preset_read_only, sizeof(preset_read_only) / sizeof(preset_read_only[0])},
    {"read-write", preset_read_write, sizeof(preset_read_write) / sizeof(preset_read_write[0])},
};

/* Per-stage state. The options are bound in init from their declarations (policy_options)
 * and borrowed until fini. actions point into the presets or the option's strings; the
 * array itself is owned. */
typedef struct policy_conf {
    const ol_host *host;
    ol_stage *stage;
    const char *preset;
    ol_list listed;          /* the actions option */
    const char *policy_name; /* NULL: the user name */
    const char **actions;
    size_t n_actions;
    json_t *action_list; /* the actions as a JSON array, shared by every item's document */
    size_t base_len;     /* compact length of the policy for an empty ARN (0: unknown) */
} policy_conf;

/* The states of one apply: read the user's policy, write it when it differs. */
typedef enum policy_state { POLICY_START, POLICY_GET, POLICY_PUT, POLICY_DONE } policy_state;

/* State names; for the request states, the IAM action the state sends. */
static const char *const state_names[] = {[POLICY_START] = "start",
                                          [POLICY_GET] = "GetUserPolicy",
                                          [POLICY_PUT] = "PutUserPolicy",
                                          [POLICY_DONE] = "done"};

/* One apply in flight, freed in finish just before host->done. */
typedef struct policy_op {
    const policy_conf *conf;
    ol_item *item;
    policy_state state;      /* changed only by set_state */
    const char *user;        /* borrowed from the bag */
    const char *policy_name; /* conf->policy_name or user */
    json_t *wanted;
    char *document; /* compact JSON of wanted: the PutUserPolicy body parameter */
    int existed;
} policy_op;

/* ---------------------------------------------------------------------------------------
 * Action names
 * ------------------------------------------------------------------------------------- */

/* IAM action names are case-insensitive (IAM User Guide, "IAM JSON policy elements:
 * Action"); * matches any run of characters and ? any one character. */
static int glob_match(const char *p, const char *s) {
    const char *star = NULL, *resume = NULL;
    while (*s != '\0') {
        if (*p == '*') {
            star = p++;
            resume = s;
        } else if (*p == '?' || tolower((unsigned char)*p) == tolower((unsigned char)*s)) {
            p++;
            s++;
        } else if (star != NULL) {
            p = star + 1;
            s = ++resume;
        } else {
            return 0;
        }
    }
    while (*p == '*')
        p++;
    return *p == '\0';
}

/* How many known actions the name (without "s3:") matches, wildcards included. */
static size_t action_matches(const char *name) {
    size_t n = 0;
    for (size_t i = 0; i < N_S3_ACTIONS; i++)
        n += (size_t)glob_match(name, s3_actions[i]);
    return n;
}

/* The action to suggest for an unknown name (without "s3:"), or NULL. */
static const char *suggest_action(const ol_host *h, const char *name) {
    for (size_t i = 0; i < sizeof(api_aliases) / sizeof(api_aliases[0]); i++)
        if (strcasecmp(name, api_aliases[i][0]) == 0)
            return api_aliases[i][1];
    /* Beyond a third of the name it is a different word, not a typo (max_distance 0). */
    return h->suggest(name, s3_actions, N_S3_ACTIONS, 0);
}

/* Check one action: "s3:<known name>" or an s3: wildcard that matches a known name. */
static int check_action(ol_stage *stage, const ol_host *h, const char *action) {
    if (strncasecmp(action, "s3:", 3) != 0) {
        h->log(stage, NULL, OL_LOG_ERROR,
               "option actions: '%s' is not an S3 action; this stage grants access to the "
               "item's bucket, so every action starts with \"s3:\" (for example "
               "\"s3:GetObject\")%s",
               action,
               strcmp(action, "*") == 0 ? "; write \"s3:*\" if you mean every S3 action" : "");
        return OL_ECONFIG;
    }
    const char *name = action + 3;
    if (action_matches(name) > 0)
        return 0;
    const char *hint = strpbrk(name, "*?") == NULL ? suggest_action(h, name) : NULL;
    if (hint != NULL)
        h->log(stage, NULL, OL_LOG_ERROR,
               "option actions: '%s' is not an S3 action; did you mean 's3:%s'?", action, hint);
    else
        h->log(stage, NULL, OL_LOG_ERROR,
               "option actions: '%s' %s; see \"Actions defined by Amazon S3\" in the AWS "
               "Service Authorization Reference",
               action,
               strpbrk(name, "*?") != NULL ? "matches no S3 action" : "is not an S3 action");
    return OL_ECONFIG;
}

/* Nonzero when any action covers an ACL action (GetObjectAcl, s3:*Acl, s3:*, ...). */
static int grants_acl_actions(const char *const *actions, size_t n) {
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < N_S3_ACTIONS; j++)
            if (strstr(s3_actions[j], "Acl") != NULL && glob_match(actions[i] + 3, s3_actions[j]))
                return 1;
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * Policy documents
 * ------------------------------------------------------------------------------------- */

/* One Allow statement with every action on the bucket and on its objects. The runbook's
 * policy is this one statement; splitting bucket-level and object-level actions would be
 * tighter but no stronger in practice (object actions do not apply to a bucket ARN and
 * vice versa: IAM ignores the mismatched pairs). */
static json_t *policy_build(const policy_conf *c, const char *bucket_arn) {
    /* "O": every document holds a reference to the one action list, never changed. */
    return json_pack("{s:s, s:[{s:s, s:O, s:[s, s+]}]}", "Version", "2012-10-17", "Statement",
                     "Effect", "Allow", "Action", c->action_list, "Resource", bucket_arn,
                     bucket_arn, "/*");
}

/* Compact JSON (no whitespace between tokens): what is sent and what IAM counts. */
static char *policy_compact(const json_t *doc) {
    return json_dumps(doc, JSON_COMPACT);
}

/* The compact length of the policy for arn: built and dumped, or, when arn holds only
 * characters JSON writes as they are, from the length for an empty ARN (the ARN appears
 * twice, the second time followed by a wildcard base_len counts). 0 when out of memory. */
static size_t policy_length(const policy_conf *c, const char *arn) {
    size_t n = 0;
    while (arn[n] >= 0x20 && arn[n] < 0x7f && arn[n] != '"' && arn[n] != '\\')
        n++;
    if (c->base_len > 0 && arn[n] == '\0')
        return c->base_len + 2 * n;
    json_t *doc = policy_build(c, arn);
    char *text = doc != NULL ? policy_compact(doc) : NULL;
    json_decref(doc);
    size_t len = text != NULL ? strlen(text) : 0;
    free(text);
    return len;
}

/* A string or an array of strings as a list; other types give 0 items and *ok = 0. */
static size_t as_list(const json_t *v, const json_t **items, size_t max, int *ok) {
    *ok = 1;
    if (v == NULL)
        return 0;
    if (json_is_string(v)) {
        items[0] = v;
        return 1;
    }
    if (!json_is_array(v) || json_array_size(v) > max) {
        *ok = 0;
        return 0;
    }
    size_t n = json_array_size(v);
    for (size_t i = 0; i < n; i++) {
        items[i] = json_array_get(v, i);
        if (!json_is_string(items[i])) {
            *ok = 0;
            return 0;
        }
    }
    return n;
}

/* Every string of a is in b. */
static int subset(const json_t *const *a, size_t na, const json_t *const *b, size_t nb,
                  int nocase) {
    for (size_t i = 0; i < na; i++) {
        int found = 0;
        for (size_t j = 0; j < nb && !found; j++) {
            const char *x = json_string_value(a[i]), *y = json_string_value(b[j]);
            found = nocase ? strcasecmp(x, y) == 0 : strcmp(x, y) == 0;
        }
        if (!found)
            return 0;
    }
    return 1;
}

/* Same strings, order and repetition ignored (a lone string equals a one-item array). */
static int same_set(const json_t *a, const json_t *b, int nocase) {
    enum { MAX = 512 };
    const json_t **xa = calloc(MAX, sizeof(*xa));
    const json_t **xb = calloc(MAX, sizeof(*xb));
    int ok_a, ok_b, same = 0;
    if (xa != NULL && xb != NULL) {
        size_t na = as_list(a, xa, MAX, &ok_a), nb = as_list(b, xb, MAX, &ok_b);
        same = ok_a && ok_b && subset(xa, na, xb, nb, nocase) && subset(xb, nb, xa, na, nocase);
    }
    free(xa);
    free(xb);
    return same;
}

/* Statements are equal when Effect matches, Action/NotAction (case-insensitive) and
 * Resource/NotResource are the same sets, and every other element (Condition, Principal...)
 * is equal as JSON. Sid is a label and is ignored. */
static int statement_equal(const json_t *a, const json_t *b) {
    static const char *const set_keys[] = {"Action", "NotAction", "Resource", "NotResource"};
    if (!json_is_object(a) || !json_is_object(b))
        return 0;
    for (size_t i = 0; i < 4; i++) {
        const json_t *x = json_object_get(a, set_keys[i]), *y = json_object_get(b, set_keys[i]);
        if ((x == NULL) != (y == NULL))
            return 0;
        if (x != NULL && !same_set(x, y, i < 2))
            return 0;
    }
    const char *key;
    const json_t *v;
    for (int pass = 0; pass < 2; pass++) {
        const json_t *self = pass == 0 ? a : b, *other = pass == 0 ? b : a;
        json_object_foreach((json_t *)self, key, v) {
            int in_set = 0;
            for (size_t i = 0; i < 4; i++)
                in_set |= strcmp(key, set_keys[i]) == 0;
            if (in_set || strcmp(key, "Sid") == 0)
                continue;
            if (!json_equal(v, json_object_get(other, key)))
                return 0;
        }
    }
    return 1;
}

/* A Statement element as an array (IAM accepts a lone object). NULL when malformed. */
static json_t *statements(const json_t *doc) {
    json_t *s = json_object_get(doc, "Statement");
    if (json_is_object(s)) {
        json_t *arr = json_array();
        if (arr != NULL && json_array_append(arr, s) < 0) {
            json_decref(arr);
            return NULL;
        }
        return arr;
    }
    return json_is_array(s) ? json_incref(s) : NULL;
}

/* Two policies grant the same when Version matches and every statement of one has an equal
 * statement in the other (and the counts match). */
static int policy_equal(const json_t *a, const json_t *b) {
    if (!json_is_object(a) || !json_is_object(b) ||
        !json_equal(json_object_get(a, "Version"), json_object_get(b, "Version")))
        return 0;
    json_t *sa = statements(a), *sb = statements(b);
    int equal = sa != NULL && sb != NULL && json_array_size(sa) == json_array_size(sb);
    for (int pass = 0; pass < 2 && equal; pass++) {
        const json_t *x = pass == 0 ? sa : sb, *y = pass == 0 ? sb : sa;
        for (size_t i = 0; i < json_array_size(x) && equal; i++) {
            int found = 0;
            for (size_t j = 0; j < json_array_size(y) && !found; j++)
                found = statement_equal(json_array_get(x, i), json_array_get(y, j));
            equal = found;
        }
    }
    json_decref(sa);
    json_decref(sb);
    return equal;
}

/* IAM API Reference, GetUserPolicy: "The policy document returned in this structure is URL-
 * encoded compliant with RFC 3986". NULL when it does not decode to JSON. */
static json_t *policy_decode(const char *urlencoded) {
    int len = 0;
    char *text = curl_easy_unescape(NULL, urlencoded, 0, &len);
    if (text == NULL)
        return NULL;
    json_t *doc = json_loadb(text, (size_t)len, 0, NULL);
    curl_free(text);
    return doc;
}

/* ---------------------------------------------------------------------------------------
 * Apply: GetUserPolicy [-> PutUserPolicy] -> done. op->state changes only in set_state.
 * ------------------------------------------------------------------------------------- */

static void on_response(void *arg, const ol_aws_response *res);

/* The one transition function: every change of op->state is logged here (curl's mstate()). */
static void set_state(policy_op *op, policy_state next) {
    const policy_conf *c = op->conf;
    c->host->log(c->stage, op->item, OL_LOG_DEBUG, "policy: state %s -> %s", state_names[op->state],
                 state_names[next]);
    op->state = next;
}

static void op_free(policy_op *op) {
    json_decref(op->wanted);
    free(op->document);
    free(op);
}

static void finish(policy_op *op, ol_outcome outcome, const char *reason) {
    const policy_conf *c = op->conf;
    ol_item *item = op->item;
    set_state(op, POLICY_DONE);
    op_free(op);
    c->host->done(c->stage, item, outcome, reason);
}

/* "<action> failed: <code>: <message> (HTTP <status>, request id <id>)", or the transport
 * error, in the host's words. */
static void finish_error(policy_op *op, const ol_aws_response *res) {
    const ol_host *h = op->conf->host;
    char *reason = h->aws_reason(state_names[op->state], res);
    finish(op, OL_OUTCOME_FAILED, reason != NULL ? reason : "out of memory");
    h->free(reason);
}

/* Enters state and sends its request: GetUserPolicy, or PutUserPolicy with the wanted
 * document, which right after CreateUser may see NoSuchEntity until IAM has propagated.
 * Returns aws_send's code; on an error the callback never runs. */
static int send_request(policy_op *op, policy_state state) {
    static const char *const consistency[] = {"NoSuchEntity", NULL};
    set_state(op, state);
    ol_kv params[5] = {{"Action", state_names[state]},
                       {"UserName", op->user},
                       {"PolicyName", op->policy_name},
                       {"Version", IAM_API_VERSION}};
    size_t n = 4;
    if (state == POLICY_PUT)
        params[n++] = (ol_kv){"PolicyDocument", op->document};
    ol_aws_request req = {.struct_size = sizeof(ol_aws_request)};
    req.service = "iam";
    req.method = "POST";
    req.params = params;
    req.n_params = n;
    if (state == POLICY_PUT) {
        req.consistency_codes = consistency;
        req.consistency_ms = IAM_CONSISTENCY_MS;
    }
    return op->conf->host->aws_send(op->item, &req, on_response, op);
}

static void send_put(policy_op *op) {
    int rc = send_request(op, POLICY_PUT);
    if (rc < 0) {
        ol_aws_response refused = {.struct_size = sizeof(ol_aws_response), .result = rc};
        finish_error(op, &refused);
    }
}

static void on_put(policy_op *op, const ol_aws_response *res) {
    if (res->result != 0) {
        finish_error(op, res);
        return;
    }
    finish(op, op->existed ? OL_OUTCOME_UPDATED : OL_OUTCOME_CREATED,
           op->existed ? "the policy differed and was replaced" : NULL);
}

static void on_get(policy_op *op, const ol_aws_response *res) {
    const ol_host *h = op->conf->host;
    if (res->result == OL_EAWS && res->error_code != NULL &&
        strcmp(res->error_code, "NoSuchEntity") == 0) {
        op->existed = 0;
        send_put(op);
        return;
    }
    if (res->result != 0) {
        finish_error(op, res);
        return;
    }
    op->existed = 1;
    ol_xml *doc = h->xml_parse(res->body, res->body_len);
    const char *text =
        doc != NULL
            ? h->xml_text(doc, "GetUserPolicyResponse/GetUserPolicyResult/PolicyDocument", 0)
            : NULL;
    json_t *have = text != NULL ? policy_decode(text) : NULL;
    h->xml_free(doc);
    int same = have != NULL && policy_equal(have, op->wanted);
    if (have == NULL)
        h->log(op->conf->stage, op->item, OL_LOG_WARN,
               "policy '%s' of user '%s' could not be read as JSON; replacing it", op->policy_name,
               op->user);
    json_decref(have);
    if (same)
        finish(op, OL_OUTCOME_UNCHANGED, NULL);
    else
        send_put(op);
}

static void on_response(void *arg, const ol_aws_response *res) {
    policy_op *op = arg;
    if (op->state == POLICY_GET)
        on_get(op, res);
    else
        on_put(op, res);
}

static int policy_apply(ol_stage *stage, ol_item *item, void *state) {
    policy_conf *c = state;
    const ol_host *h = c->host;
    const char *user = h->item_get(item, OL_KEY_IAM_USER);
    if (user == NULL) {
        h->log(stage, item, OL_LOG_ERROR,
               "the item has no %s: the iam stage must run (and succeed) before policy",
               OL_KEY_IAM_USER);
        return OL_ENOENT;
    }
    /* The bucket's ARN follows from the item's name and region: the policy does not wait
     * for the bucket stage, so the S3 and IAM requests of an item overlap. */
    char *arn = arn_s3_bucket(h, h->item_region(item), h->item_name(item));
    if (arn == NULL)
        return OL_ENOMEM;
    policy_op *op = calloc(1, sizeof(*op));
    if (op == NULL) {
        h->free(arn);
        return OL_ENOMEM;
    }
    op->conf = c;
    op->item = item;
    op->user = user;
    op->policy_name = c->policy_name != NULL ? c->policy_name : user;
    op->wanted = policy_build(c, arn);
    h->free(arn);
    op->document = op->wanted != NULL ? policy_compact(op->wanted) : NULL;
    if (op->document == NULL) {
        op_free(op);
        return OL_ENOMEM;
    }
    /* A user the iam stage created in this run has no policy: nothing to read. */
    const char *fresh = h->item_get(item, OL_KEY_IAM_USER_CREATED);
    int rc =
        send_request(op, fresh != NULL && strcmp(fresh, "true") == 0 ? POLICY_PUT : POLICY_GET);
    if (rc < 0) {
        op_free(op); /* the callback never runs: nothing else owns op */
        return rc;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * Init, validate, fini
 * ------------------------------------------------------------------------------------- */

/* IAM API Reference, PutUserPolicy: PolicyName matches [\w+=,.@-]+, 1-128 characters. */
static int check_policy_name(ol_stage *stage, const ol_host *h, const char *name) {
    size_t len = strlen(name);
    int ok = len >= 1 && len <= 128;
    for (size_t i = 0; i < len && ok; i++) {
        unsigned char ch = (unsigned char)name[i];
        ok = ch < 0x80 && (isalnum(ch) || strchr("_+=,.@-", (int)ch) != NULL);
    }
    if (ok)
        return 0;
    h->log(stage, NULL, OL_LOG_ERROR,
           "option policy_name: '%s' is not a valid IAM policy name; use 1 to 128 letters, "
           "digits and _ + = , . @ -",
           name);
    return OL_ECONFIG;
}

/* The explicit `actions` list, each checked, into *list. */
static int listed_actions(ol_stage *stage, const ol_host *h, const policy_conf *c,
                          const char *const **list, size_t *n) {
    if (h->opt_is_set(stage, "preset")) {
        h->log(stage, NULL, OL_LOG_ERROR,
               "options actions and preset are both set; keep one: actions lists the "
               "grants explicitly, preset names a list");
        return OL_ECONFIG;
    }
    if (c->listed.n == 0) {
        h->log(stage, NULL, OL_LOG_ERROR,
               "option actions is empty; list at least one S3 action, or remove it to "
               "use the runbook preset");
        return OL_ECONFIG;
    }
    for (size_t i = 0; i < c->listed.n; i++)
        if (check_action(stage, h, c->listed.items[i]) < 0)
            return OL_ECONFIG;
    *list = c->listed.items;
    *n = c->listed.n;
    return 0;
}

/* The named preset's actions into *list. */
static int preset_actions(ol_stage *stage, const ol_host *h, const char *name,
                          const char *const **list, size_t *n) {
    for (size_t i = 0; i < sizeof(presets) / sizeof(presets[0]); i++) {
        if (strcmp(name, presets[i].name) == 0) {
            *list = presets[i].actions;
            *n = presets[i].n;
            return 0;
        }
    }
    h->log(stage, NULL, OL_LOG_ERROR,
           "option preset: '%s' is not a preset; use \"runbook\", \"read-only\" or "
           "\"read-write\", or list actions explicitly",
           name);
    return OL_ECONFIG;
}

/* Resolve the action list from `actions` or `preset` into c. */
static int resolve_actions(ol_stage *stage, const ol_host *h, policy_conf *c) {
    const char *const *list = NULL;
    size_t n = 0;
    int rc = h->opt_is_set(stage, "actions") ? listed_actions(stage, h, c, &list, &n)
                                             : preset_actions(stage, h, c->preset, &list, &n);
    if (rc < 0)
        return rc;
    c->actions = calloc(n, sizeof(*c->actions));
    if (c->actions == NULL)
        return OL_ENOMEM;
    /* Drop repeats (IAM compares action names without case). */
    for (size_t i = 0; i < n; i++) {
        int dup = 0;
        for (size_t j = 0; j < c->n_actions && !dup; j++)
            dup = strcasecmp(c->actions[j], list[i]) == 0;
        if (!dup)
            c->actions[c->n_actions++] = list[i];
    }
    if ((c->action_list = json_array()) == NULL)
        return OL_ENOMEM;
    for (size_t i = 0; i < c->n_actions; i++)
        if (json_array_append_new(c->action_list, json_string(c->actions[i])) < 0)
            return OL_ENOMEM;
    return 0;
}

static void policy_fini(void *state) {
    policy_conf *c = state;
    if (c == NULL)
        return;
    json_decref(c->action_list);
    free(c->actions);
    free(c);
}

static int policy_init(ol_stage *stage, const ol_host *host, void **state) {
    policy_conf *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return OL_ENOMEM;
    c->host = host;
    c->stage = stage;
    int rc = host->opt_bind(stage, c);
    /* An empty name is written to unset it: the user name is used. */
    if (c->policy_name != NULL && c->policy_name[0] == '\0')
        c->policy_name = NULL;
    if (rc == 0 && c->policy_name != NULL)
        rc = check_policy_name(stage, host, c->policy_name);
    if (rc == 0)
        rc = resolve_actions(stage, host, c);
    if (rc < 0) {
        policy_fini(c);
        return rc;
    }
    /* Every item's policy differs only in its bucket's ARN: validate counts from this. */
    c->base_len = policy_length(c, "");
    if (grants_acl_actions(c->actions, c->n_actions))
        host->log(stage, NULL, OL_LOG_DEBUG,
                  "note: ACL actions (such as s3:PutObjectAcl) have no effect on buckets whose "
                  "ACLs are disabled (Object Ownership \"bucket owner enforced\", the default "
                  "for new buckets since April 2023); they are granted as listed");
    *state = c;
    return 0;
}

/* Reject, before any request, a policy that IAM would refuse for this item's names. */
static int policy_validate(ol_stage *stage, const ol_item *item, void *state) {
    policy_conf *c = state;
    const ol_host *h = c->host;
    /* bucket.arn is not set yet (validate runs before any stage): build the same ARN the
     * bucket stage will publish. */
    char *arn = arn_s3_bucket(h, h->item_region(item), h->item_name(item));
    size_t len = arn != NULL ? policy_length(c, arn) : 0;
    h->free(arn);
    if (len == 0)
        return OL_ENOMEM;
    if (len <= POLICY_MAX_CHARS)
        return 0;
    h->log(stage, item, OL_LOG_ERROR,
           "the policy for '%s' is %zu characters of compact JSON; IAM allows %d for a "
           "user's inline policies. Grant fewer actions or use wildcards such as \"s3:Get*\"",
           h->item_name(item), len, POLICY_MAX_CHARS);
    return OL_ERANGE;
}

static const char *const policy_needs[] = {"iam", NULL};

/* The lifecycle commands live in policy_lifecycle.c. The user is the item's (iam's name). */
static int policy_destroy(ol_stage *stage, ol_item *item, void *state) {
    const policy_conf *c = state;
    return policy_lifecycle_destroy(c->host, stage, item, c->policy_name);
}

static int policy_plan(ol_stage *stage, ol_item *item, void *state) {
    const policy_conf *c = state;
    char *arn = arn_s3_bucket(c->host, c->host->item_region(item), c->host->item_name(item));
    policy_wanted w = {arn ? policy_build(c, arn) : NULL, policy_decode, policy_equal};
    c->host->free(arn);
    return policy_lifecycle_plan(c->host, stage, item, c->policy_name, w);
}

static const ol_option_def policy_options[] = {
    {"preset", OL_OPT_STRING, "runbook",
     "Named action list: \"runbook\" (the runbook's 15 actions), \"read-only\", \"read-write\"",
     OL_BIND(policy_conf, preset)},
    {"actions", OL_OPT_LIST, NULL,
     "Explicit S3 actions (e.g. s3:GetObject, s3:Get*); replaces the preset",
     OL_BIND(policy_conf, listed)},
    {"policy_name", OL_OPT_STRING, NULL, "Inline policy name; unset: the IAM user name",
     OL_BIND(policy_conf, policy_name)},
};

/* Shortcuts: keys of a products-file line (docs/products-file.md). */
static const ol_cli_flag policy_cli_flags[] = {{"policy", "preset"}, {NULL, NULL}};

static const ol_plugin policy_plugin = {
    .abi_major = OL_ABI_MAJOR,
    .abi_minor = OL_ABI_MINOR,
    .struct_size = sizeof(ol_plugin),
    .name = "policy",
    .version = "2.0.0",
    .description = "Inline IAM user policy granting the item's user access to the item's bucket",
    .needs = policy_needs,
    .flags = OL_STAGE_DEFAULT,
    OL_OPTIONS(policy_options),
    .init = policy_init,
    .validate = policy_validate,
    .apply = policy_apply,
    .plan = policy_plan,
    .destroy = policy_destroy,
    .fini = policy_fini,
    .cli_flags = policy_cli_flags,
};

OL_EXPORT const ol_plugin *opsline_plugin(void) {
    return &policy_plugin;
}
