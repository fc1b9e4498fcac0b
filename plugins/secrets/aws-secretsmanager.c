/* aws-secretsmanager: the secret store that keeps each item's access key in AWS Secrets
 * Manager, one secret per item (name template, default opsline/{bucket}), whose value is a
 * JSON object {"aws_access_key_id", "aws_secret_access_key", "region", "bucket", "user",
 * "created"}. It speaks the awsJson1_1 protocol through the host's AWS client (signed,
 * retried, throttled by the host): POST / with X-Amz-Target: secretsmanager.<Action>.
 *
 * put: CreateSecret; when the secret exists, GetSecretValue and, only when it holds another
 * key, PutSecretValue (UpdateSecret when a KMS key is configured, so the new version uses
 * it); a secret pending deletion is restored first; TagResource when tags are configured.
 * Every write carries a ClientRequestToken derived from the secret name and the value's
 * non-secret fields, so a write resent after a lost answer never makes a second version
 * (Secrets Manager API reference, ClientRequestToken: "If a version with this value already
 * exists and the version SecretString ... are the same ... the request is ignored").
 * get: GetSecretValue and parse the JSON value. del: DeleteSecret, without recovery unless
 * recovery_days is set.
 *
 * Secrets are never logged; every buffer that held one (request bodies, parsed values) is
 * wiped before it is freed. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "opsline/opsline.h"

#include "lib/storebuf.h"
#include "lib/storejson.h"

#define SM_STORE "aws-secretsmanager"
#define SM_NAME_MAX 512
#define SM_TARGET_PREFIX "secretsmanager."

typedef struct sm_state {
    const ol_host *host;
    const char *name_tmpl;
    const char *description;
    const char *kms_key_id;
    const char *region;
    ol_map tags;
    long long recovery_days;
} sm_state;

static const ol_option_def sm_options[] = {
    {"name", OL_OPT_STRING, "opsline/{bucket}",
     "secret name template: 1-512 of A-Z a-z 0-9 / _ + = . @ -; placeholders {product}, "
     "{environment}, {bucket}, {user}, {region}",
     OL_BIND(sm_state, name_tmpl)},
    {"description", OL_OPT_STRING, "AWS access key of {user} for bucket {bucket} (opsline)",
     "description of a secret opsline creates (template, as name)", OL_BIND(sm_state, description)},
    {"kms_key_id", OL_OPT_STRING, NULL,
     "KMS key (id, ARN or alias) that encrypts the secret; unset: aws/secretsmanager",
     OL_BIND(sm_state, kms_key_id)},
    {"tags", OL_OPT_OBJECT, NULL, "tags of the secret, e.g. {\"team\": \"data\"}",
     OL_BIND(sm_state, tags)},
    {"region", OL_OPT_STRING, NULL, "region of the secrets; unset: the item's region",
     OL_BIND(sm_state, region)},
    {"recovery_days", OL_OPT_INT, "0",
     "when a secret is deleted: 0 deletes it at once, 7-30 keeps it recoverable that long",
     OL_BIND(sm_state, recovery_days)},
};

/* --------------------------------------------------------------------------------------
 * JSON request bodies, in a storebuf (they hold the secret)
 * ------------------------------------------------------------------------------------ */

/* A JSON string literal. '/' stays bare so the host still recognises (and masks) a secret
 * in a logged body. */
static void buf_json_str(storebuf *b, const char *s) {
    static const char hex[] = "0123456789abcdef";
    storebuf_add(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\') {
            char esc[2] = {'\\', (char)*p};
            storebuf_add(b, esc, 2);
        } else if (*p < 0x20) {
            char esc[6] = {'\\', 'u', '0', '0', hex[*p >> 4], hex[*p & 15]};
            storebuf_add(b, esc, 6);
        } else {
            storebuf_add(b, (const char *)p, 1);
        }
    }
    storebuf_add(b, "\"", 1);
}

/* ,"name":"value" (or without the comma for the first member). */
static void buf_member(storebuf *b, int first, const char *name, const char *value) {
    if (!first)
        storebuf_add(b, ",", 1);
    buf_json_str(b, name);
    storebuf_add(b, ":", 1);
    buf_json_str(b, value);
}

/* --------------------------------------------------------------------------------------
 * Pure helpers
 * ------------------------------------------------------------------------------------ */

/* Secret names: 1-512 of [A-Za-z0-9/_+=.@-] (CreateSecret, Name). */
static int sm_name_valid(const char *name) {
    size_t n = strlen(name);
    if (n == 0 || n > SM_NAME_MAX)
        return 0;
    for (const char *p = name; *p != '\0'; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("/_+=.@-", c) != NULL))
            return 0;
    }
    return 1;
}

/* Secrets Manager appends "-" and six random characters to a secret's ARN; a name that
 * itself ends so confuses lookups by partial ARN (CreateSecret, Name). */
static int sm_name_looks_suffixed(const char *name) {
    size_t n = strlen(name);
    return n >= 7 && name[n - 7] == '-';
}

static uint64_t fnv1a(uint64_t h, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* A UUID-formatted ClientRequestToken that is stable for the same (name, fields): two
 * FNV-1a hashes with different seeds over the NUL-separated inputs, laid out as an RFC 9562
 * version 8 (custom) UUID. It only has to tell versions of one secret apart; the secret
 * itself never enters it. */
static void sm_token(const char *const *fields, size_t n, char out[37]) {
    uint64_t h1 = 0xcbf29ce484222325ULL, h2 = fnv1a(0xcbf29ce484222325ULL, "opsline-sm", 10);
    for (size_t i = 0; i < n; i++) {
        const char *f = fields[i] != NULL ? fields[i] : "";
        h1 = fnv1a(h1, f, strlen(f) + 1);
        h2 = fnv1a(h2, f, strlen(f) + 1);
    }
    unsigned char b[16];
    for (int i = 0; i < 8; i++) {
        b[i] = (unsigned char)(h1 >> (56 - 8 * i));
        b[8 + i] = (unsigned char)(h2 >> (56 - 8 * i));
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x80); /* version 8 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* variant 10 */
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = '\0';
}

/* The secret's value: a JSON object with the key id, the secret and where it belongs. */
static char *sm_value_json(const ol_host *h, const ol_secret *s) {
    storebuf b = STOREBUF_INIT(h);
    storebuf_add(&b, "{", 1);
    buf_member(&b, 1, "aws_access_key_id", s->access_key_id);
    buf_member(&b, 0, "aws_secret_access_key", s->secret_access_key);
    if (s->region != NULL)
        buf_member(&b, 0, "region", s->region);
    if (s->bucket != NULL)
        buf_member(&b, 0, "bucket", s->bucket);
    if (s->user != NULL)
        buf_member(&b, 0, "user", s->user);
    if (s->created != NULL)
        buf_member(&b, 0, "created", s->created);
    storebuf_add(&b, "}", 1);
    return storebuf_take(&b, NULL);
}

/* --------------------------------------------------------------------------------------
 * One store operation: a small state machine over AWS requests.
 * ------------------------------------------------------------------------------------ */
typedef enum sm_kind { SM_PUT, SM_GET, SM_DEL } sm_kind;

typedef enum sm_step {
    STEP_CREATE,  /* put: CreateSecret */
    STEP_READ,    /* put: GetSecretValue of an existing secret; get: GetSecretValue */
    STEP_RESTORE, /* put: RestoreSecret of a secret pending deletion */
    STEP_WRITE,   /* put: PutSecretValue / UpdateSecret */
    STEP_TAG,     /* put: TagResource */
    STEP_DELETE   /* del: DeleteSecret */
} sm_step;

typedef struct sm_op {
    ol_stage *stage;
    ol_item *item;
    sm_state *st;
    sm_kind kind;
    sm_step step;
    int restored;
    int started; /* put/get/del has returned: completing now is allowed */
    int deferred_result;
    char *deferred_reason;
    char *name;
    char *body;   /* request in flight (may hold the secret) */
    char *value;  /* put: the secret's JSON value (holds the secret) */
    char *key_id; /* put: the key being stored */
    char *secret; /* put: its secret, to compare with what the secret holds */
    char token[37];
} sm_op;

static void op_free(sm_op *op) {
    const ol_host *h = op->st->host;
    free_wiped_str(h, op->body);
    free_wiped_str(h, op->value);
    free_wiped_str(h, op->secret);
    free(op->key_id);
    free(op->deferred_reason);
    free(op->name);
    free(op);
}

/* Completes the operation exactly once and frees it. */
static void op_finish(sm_op *op, int result, const ol_secret *found, const char *reason) {
    op->st->host->store_done(op->stage, op->item, result, found, reason);
    op_free(op);
}

static const char *step_action(const sm_op *op) {
    switch (op->step) {
    case STEP_CREATE:
        return "CreateSecret";
    case STEP_READ:
        return "GetSecretValue";
    case STEP_RESTORE:
        return "RestoreSecret";
    case STEP_WRITE:
        return op->st->kms_key_id != NULL ? "UpdateSecret" : "PutSecretValue";
    case STEP_TAG:
        return "TagResource";
    case STEP_DELETE:
        return "DeleteSecret";
    }
    return "?";
}

/* Fails the operation with the host's one-line AWS reason, naming the store and secret. */
static void op_fail_aws(sm_op *op, const ol_aws_response *res, const char *hint) {
    const ol_host *h = op->st->host;
    char *action = h->format(SM_STORE ": %s of secret %s", step_action(op), op->name);
    char *why = action != NULL ? h->aws_reason(action, res) : NULL;
    char *reason = why != NULL && hint != NULL ? h->format("%s; %s", why, hint) : NULL;
    int result = res->result != 0 ? res->result : OL_EAWS;
    op_finish(op, result, NULL,
              reason != NULL ? reason
              : why != NULL  ? why
                             : SM_STORE ": request failed");
    h->free(reason);
    h->free(why);
    h->free(action);
}

static const char *access_hint(const ol_aws_response *res) {
    if (res->error_code != NULL && (strcmp(res->error_code, "AccessDeniedException") == 0 ||
                                    strcmp(res->error_code, "AccessDenied") == 0))
        return "grant the caller secretsmanager:CreateSecret, GetSecretValue, PutSecretValue, "
               "UpdateSecret, RestoreSecret, TagResource and DeleteSecret on the secret (and "
               "kms:GenerateDataKey, kms:Decrypt on its KMS key)";
    return NULL;
}

static int code_is(const ol_aws_response *res, const char *code) {
    return res->result == OL_EAWS && res->error_code != NULL && strcmp(res->error_code, code) == 0;
}

/* Secrets Manager refuses most calls on a secret scheduled for deletion with
 * InvalidRequestException ("... marked deleted" / "... marked for deletion"). */
static int is_pending_deletion(const ol_aws_response *res) {
    return code_is(res, "InvalidRequestException") && res->error_message != NULL &&
           strstr(res->error_message, "delet") != NULL;
}

static void op_on_response(void *arg, const ol_aws_response *res);

/* Sends the current step's request with body (owned by op from now on, wiped when done). */
static int op_send(sm_op *op, char *body) {
    const ol_host *h = op->st->host;
    free_wiped_str(h, op->body);
    op->body = body;
    if (body == NULL)
        return OL_ENOMEM;
    char target[64];
    snprintf(target, sizeof(target), SM_TARGET_PREFIX "%s", step_action(op));
    const ol_kv headers[] = {{"X-Amz-Target", target},
                             {"Content-Type", "application/x-amz-json-1.1"}};
    ol_aws_request req = {
        .struct_size = sizeof(ol_aws_request),
        .service = "secretsmanager",
        .method = "POST",
        .region = op->st->region,
        .headers = headers,
        .n_headers = sizeof(headers) / sizeof(headers[0]),
        .body = body,
        .body_len = strlen(body),
    };
    return h->aws_send(op->item, &req, op_on_response, op);
}

/* Completes the operation from a zero-delay timer: for a failure found while the host is
 * still inside put/get/del, which must not complete before returning. Returns 0, or a
 * negative code (op freed, never completed) when even the timer cannot start. */
static void op_on_deferred(void *arg, int status) {
    sm_op *op = arg;
    (void)status; /* canceled or fired: complete either way, once */
    op_finish(op, op->deferred_result, NULL,
              op->deferred_reason != NULL ? op->deferred_reason : SM_STORE ": failed");
}

static int op_fail_later(sm_op *op, int result, const char *reason) {
    const ol_host *h = op->st->host;
    op->deferred_result = result;
    op->deferred_reason = reason != NULL ? strdup(reason) : NULL;
    int rc = h->timer_start(op->stage, 0, op_on_deferred, op, NULL);
    if (rc != 0) {
        h->log(op->stage, op->item, OL_LOG_ERROR, "%s", reason != NULL ? reason : "failed");
        op_free(op);
    }
    return rc;
}

/* Sends the step's request; when that fails, completes the operation (later, when called
 * from put/get/del: the return value is then what they return). */
static int op_step(sm_op *op, sm_step step, char *body) {
    op->step = step;
    int rc = op_send(op, body);
    if (rc == 0)
        return 0;
    const ol_host *h = op->st->host;
    char *reason = h->format(SM_STORE ": cannot send %s for secret %s: %s", step_action(op),
                             op->name, h->strerror(rc));
    const char *why = reason != NULL ? reason : SM_STORE ": cannot send a request";
    if (op->started) {
        op_finish(op, rc, NULL, why);
        rc = 0;
    } else {
        rc = op_fail_later(op, rc, why);
    }
    h->free(reason);
    return rc;
}

static void buf_tags(storebuf *b, const ol_map *tags) {
    storebuf_str(b, ",\"Tags\":[");
    for (size_t i = 0; i < tags->n; i++) {
        storebuf_str(b, i == 0 ? "{" : ",{");
        buf_member(b, 1, "Key", tags->items[i].name);
        buf_member(b, 0, "Value", tags->items[i].value != NULL ? tags->items[i].value : "");
        storebuf_str(b, "}");
    }
    storebuf_str(b, "]");
}

/* A request body's start: {"<member>":"<the secret's name>". */
static storebuf body_start(const sm_op *op, const char *member) {
    storebuf b = STOREBUF_INIT(op->st->host);
    storebuf_str(&b, "{");
    buf_member(&b, 1, member, op->name);
    return b;
}

/* The value to write: its token (the same for a resent write) and the JSON value. */
static void body_value(storebuf *b, const sm_op *op) {
    buf_member(b, 0, "ClientRequestToken", op->token);
    buf_member(b, 0, "SecretString", op->value);
}

/* Closes the body and takes its text (NULL when out of memory). */
static char *body_end(storebuf *b) {
    storebuf_str(b, "}");
    return storebuf_take(b, NULL);
}

static char *body_secret_id(const sm_op *op) {
    storebuf b = body_start(op, "SecretId");
    return body_end(&b);
}

static char *body_create(const sm_op *op) {
    const sm_state *st = op->st;
    const ol_host *h = st->host;
    storebuf b = body_start(op, "Name");
    body_value(&b, op);
    if (st->description != NULL && st->description[0] != '\0') {
        char *desc = NULL, *why = NULL;
        if (h->expand(op->item, st->description, &desc, &why) == 0)
            buf_member(&b, 0, "Description", desc);
        h->free(desc);
        h->free(why);
    }
    if (st->kms_key_id != NULL)
        buf_member(&b, 0, "KmsKeyId", st->kms_key_id);
    if (st->tags.n > 0)
        buf_tags(&b, &st->tags);
    return body_end(&b);
}

static char *body_write(const sm_op *op) {
    storebuf b = body_start(op, "SecretId");
    body_value(&b, op);
    if (op->st->kms_key_id != NULL)
        buf_member(&b, 0, "KmsKeyId", op->st->kms_key_id);
    return body_end(&b);
}

static char *body_tag(const sm_op *op) {
    storebuf b = body_start(op, "SecretId");
    buf_tags(&b, &op->st->tags);
    return body_end(&b);
}

static char *body_delete(const sm_op *op) {
    storebuf b = body_start(op, "SecretId");
    char days[64];
    if (op->st->recovery_days > 0) {
        snprintf(days, sizeof(days), ",\"RecoveryWindowInDays\":%lld", op->st->recovery_days);
        storebuf_str(&b, days);
    } else {
        storebuf_str(&b, ",\"ForceDeleteWithoutRecovery\":true");
    }
    return body_end(&b);
}

/* A GetSecretValue answer, parsed: found points into the trees (value_free frees them). */
typedef struct sm_value {
    json_t *outer, *inner;
    ol_secret found;
    const char *why; /* static: why the secret does not hold opsline's JSON value */
} sm_value;

/* Parses a GetSecretValue answer into v. Returns 0, or OL_EINVAL when the secret does not
 * hold opsline's JSON value (v->why). Free v with value_free either way. */
static int value_parse(const ol_aws_response *res, sm_value *v) {
    *v = (sm_value){.outer = json_loadb(res->body, res->body_len, 0, NULL)};
    const char *str = storejson_str(v->outer, "SecretString");
    if (str == NULL) {
        v->why = "it has no SecretString (a binary secret, or not created by opsline)";
        return OL_EINVAL;
    }
    v->inner = json_loads(str, 0, NULL);
    const char *key_id = storejson_str(v->inner, "aws_access_key_id");
    const char *secret = storejson_str(v->inner, "aws_secret_access_key");
    if (key_id == NULL || secret == NULL) {
        v->why = "its value is not a JSON object with aws_access_key_id and "
                 "aws_secret_access_key";
        return OL_EINVAL;
    }
    v->found = (ol_secret){
        .struct_size = sizeof(ol_secret),
        .access_key_id = key_id,
        .secret_access_key = secret,
        .region = storejson_str(v->inner, "region"),
        .bucket = storejson_str(v->inner, "bucket"),
        .user = storejson_str(v->inner, "user"),
        .created = storejson_str(v->inner, "created"),
    };
    return 0;
}

static void value_free(const ol_host *h, sm_value *v) {
    storejson_free(h, v->inner);
    storejson_free(h, v->outer);
}

/* Fails op with res when it is an error; returns 1 then. */
static int failed(sm_op *op, const ol_aws_response *res) {
    if (res->result == 0)
        return 0;
    op_fail_aws(op, res, access_hint(res));
    return 1;
}

static void on_get(sm_op *op, const ol_aws_response *res) {
    const ol_host *h = op->st->host;
    if (code_is(res, "ResourceNotFoundException") || is_pending_deletion(res)) {
        op_finish(op, OL_ENOENT, NULL, NULL);
        return;
    }
    if (failed(op, res))
        return;
    sm_value v;
    if (value_parse(res, &v) == 0) {
        op_finish(op, 0, &v.found, NULL);
    } else {
        /* Not an entry this store can read back: as if absent, so the host stores the key
         * again (replacing the value) rather than failing every run. */
        h->log(op->stage, op->item, OL_LOG_WARN, "secret %s exists but %s; treated as absent",
               op->name, v.why);
        op_finish(op, OL_ENOENT, NULL, NULL);
    }
    value_free(h, &v);
}

static void put_after_value(sm_op *op) {
    if (op->st->tags.n > 0) {
        op_step(op, STEP_TAG, body_tag(op));
        return;
    }
    op_finish(op, 0, NULL, NULL);
}

/* A secret pending deletion is restored first (once). Returns 1 when that step started. */
static int restore_if_deleted(sm_op *op, const ol_aws_response *res) {
    if (!is_pending_deletion(res) || op->restored)
        return 0;
    op_step(op, STEP_RESTORE, body_secret_id(op));
    return 1;
}

static void log_stored(const sm_op *op) {
    op->st->host->log(op->stage, op->item, OL_LOG_DEBUG, "stored access key %s in secret %s",
                      op->key_id, op->name);
}

/* The secret exists: does it already hold this key? Then nothing is written (no new
 * version); otherwise the new value becomes its current version. */
static void put_on_read(sm_op *op, const ol_aws_response *res) {
    if (restore_if_deleted(op, res) || failed(op, res))
        return;
    sm_value v;
    int same = value_parse(res, &v) == 0 && strcmp(v.found.access_key_id, op->key_id) == 0 &&
               strcmp(v.found.secret_access_key, op->secret) == 0;
    value_free(op->st->host, &v);
    if (same) {
        op->st->host->log(op->stage, op->item, OL_LOG_DEBUG,
                          "secret %s already holds access key %s", op->name, op->key_id);
        put_after_value(op);
        return;
    }
    op_step(op, STEP_WRITE, body_write(op));
}

static void put_on_response(sm_op *op, const ol_aws_response *res) {
    const ol_host *h = op->st->host;
    switch (op->step) {
    case STEP_CREATE:
        if (code_is(res, "ResourceExistsException")) {
            op_step(op, STEP_READ, body_secret_id(op));
            return;
        }
        if (restore_if_deleted(op, res))
            return;
        if (res->result != 0)
            break;
        log_stored(op);
        op_finish(op, 0, NULL, NULL);
        return;
    case STEP_READ:
        put_on_read(op, res);
        return;
    case STEP_RESTORE:
        if (res->result != 0)
            break;
        op->restored = 1;
        h->log(op->stage, op->item, OL_LOG_INFO, "restored secret %s (it was pending deletion)",
               op->name);
        op_step(op, STEP_WRITE, body_write(op));
        return;
    case STEP_WRITE:
        if (restore_if_deleted(op, res))
            return;
        if (res->result != 0)
            break;
        log_stored(op);
        put_after_value(op);
        return;
    case STEP_TAG:
        if (res->result != 0)
            break;
        op_finish(op, 0, NULL, NULL);
        return;
    default:
        break;
    }
    op_fail_aws(op, res, access_hint(res));
}

static void op_on_response(void *arg, const ol_aws_response *res) {
    sm_op *op = arg;
    op->started = 1;
    free_wiped_str(op->st->host, op->body);
    op->body = NULL;
    switch (op->kind) {
    case SM_GET:
        on_get(op, res);
        return;
    case SM_PUT:
        put_on_response(op, res);
        return;
    case SM_DEL:
        if (res->result == 0 || code_is(res, "ResourceNotFoundException"))
            op_finish(op, 0, NULL, NULL);
        else
            op_fail_aws(op, res, access_hint(res));
        return;
    }
}

/* --------------------------------------------------------------------------------------
 * Plugin entry points
 * ------------------------------------------------------------------------------------ */

/* The item's secret name, or NULL with *why (host-allocated, may be NULL). */
static char *sm_item_name(const sm_state *st, const ol_item *item, char **why) {
    const ol_host *h = st->host;
    char *name = NULL, *bad = NULL;
    *why = NULL;
    if (h->expand(item, st->name_tmpl, &name, &bad) != 0) {
        *why = bad != NULL ? h->format("option name: %s", bad)
                           : h->format("option name '%s': invalid template", st->name_tmpl);
        h->free(bad);
        return NULL;
    }
    if (!sm_name_valid(name)) {
        *why = h->format("secret name '%s' (from option name '%s') is not 1-512 of "
                         "A-Z a-z 0-9 / _ + = . @ -",
                         name, st->name_tmpl);
        h->free(name);
        return NULL;
    }
    return name;
}

/* sm_item_name for init and validate (item NULL: stand-in values): NULL after logging why
 * (fallback when there is no reason). */
static char *sm_checked_name(ol_stage *stage, const sm_state *st, const ol_item *item,
                             const char *fallback) {
    char *why = NULL;
    char *name = sm_item_name(st, item, &why);
    if (name == NULL) {
        st->host->log(stage, item, OL_LOG_ERROR, "%s", why != NULL ? why : fallback);
        st->host->free(why);
    }
    return name;
}

/* Starts an operation: allocates it and renders the secret name. Returns 0 with *out set,
 * 0 with *out NULL when the operation already failed (completed later), or a negative code
 * (nothing will complete). */
static int op_new(ol_stage *stage, ol_item *item, sm_state *st, sm_kind kind, sm_op **out) {
    const ol_host *h = st->host;
    *out = NULL;
    sm_op *op = calloc(1, sizeof(*op));
    if (op == NULL)
        return OL_ENOMEM;
    *op = (sm_op){.stage = stage, .item = item, .st = st, .kind = kind};
    char *why = NULL;
    char *name = sm_item_name(st, item, &why);
    if (name == NULL) {
        char *reason = h->format(SM_STORE ": %s", why != NULL ? why : "bad secret name");
        int rc = op_fail_later(op, OL_ECONFIG, reason != NULL ? reason : SM_STORE ": bad name");
        h->free(reason);
        h->free(why);
        return rc;
    }
    op->name = strdup(name);
    h->free(name);
    if (op->name == NULL) {
        free(op);
        return OL_ENOMEM;
    }
    *out = op;
    return 0;
}

static int sm_put(ol_stage *stage, ol_item *item, void *state, const ol_secret *secret) {
    sm_state *st = state;
    if (secret == NULL || secret->access_key_id == NULL || secret->secret_access_key == NULL)
        return OL_EINVAL;
    sm_op *op;
    int rc = op_new(stage, item, st, SM_PUT, &op);
    if (op == NULL)
        return rc;
    ol_secret s = {
        .access_key_id = secret->access_key_id,
        .secret_access_key = secret->secret_access_key,
        .region = secret->region,
        .bucket = secret->bucket,
        .user = secret->user,
        .created = secret->struct_size >= offsetof(ol_secret, created) + sizeof(secret->created)
                       ? secret->created
                       : NULL,
    };
    op->value = sm_value_json(st->host, &s);
    op->key_id = strdup(s.access_key_id);
    op->secret = strdup(s.secret_access_key);
    if (op->value == NULL || op->key_id == NULL || op->secret == NULL) {
        op_free(op);
        return OL_ENOMEM;
    }
    /* Everything in the value but the secret, which is fixed for a key id. */
    const char *fields[] = {op->name, s.access_key_id, s.region, s.bucket, s.user, s.created};
    sm_token(fields, sizeof(fields) / sizeof(fields[0]), op->token);
    return op_step(op, STEP_CREATE, body_create(op));
}

/* get: GetSecretValue; del: DeleteSecret. */
static int read_or_delete(ol_stage *stage, ol_item *item, void *state, sm_kind kind) {
    sm_op *op;
    int rc = op_new(stage, item, state, kind, &op);
    if (op == NULL)
        return rc;
    if (kind == SM_GET)
        return op_step(op, STEP_READ, body_secret_id(op));
    return op_step(op, STEP_DELETE, body_delete(op));
}

static int sm_get(ol_stage *stage, ol_item *item, void *state) {
    return read_or_delete(stage, item, state, SM_GET);
}

static int sm_del(ol_stage *stage, ol_item *item, void *state) {
    return read_or_delete(stage, item, state, SM_DEL);
}

static int sm_check_tags(ol_stage *stage, const sm_state *st) {
    const ol_host *h = st->host;
    if (st->tags.n > 50) {
        h->log(stage, NULL, OL_LOG_ERROR, "option tags: %zu tags, at most 50 allowed", st->tags.n);
        return OL_ECONFIG;
    }
    for (size_t i = 0; i < st->tags.n; i++) {
        const char *k = st->tags.items[i].name, *v = st->tags.items[i].value;
        size_t kn = k != NULL ? strlen(k) : 0, vn = v != NULL ? strlen(v) : 0;
        if (kn == 0 || kn > 128 || vn > 256 || strncmp(k, "aws:", 4) == 0) {
            h->log(stage, NULL, OL_LOG_ERROR,
                   "option tags: tag '%s': keys are 1-128 characters not starting with "
                   "'aws:', values at most 256",
                   k != NULL ? k : "");
            return OL_ECONFIG;
        }
    }
    return 0;
}

static int sm_init(ol_stage *stage, const ol_host *host, void **state) {
    sm_state *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return OL_ENOMEM;
    st->host = host;
    int rc = host->opt_bind(stage, st);
    if (rc != 0) {
        host->log(stage, NULL, OL_LOG_ERROR, "cannot read options: %s", host->strerror(rc));
        goto fail;
    }
    if (st->name_tmpl == NULL)
        st->name_tmpl = "opsline/{bucket}";
    if (st->kms_key_id != NULL && st->kms_key_id[0] == '\0')
        st->kms_key_id = NULL;
    if (st->region != NULL && st->region[0] == '\0')
        st->region = NULL;
    rc = OL_ECONFIG;
    if (st->recovery_days != 0 && (st->recovery_days < 7 || st->recovery_days > 30)) {
        host->log(stage, NULL, OL_LOG_ERROR,
                  "option recovery_days %lld: use 0 (delete at once) or 7 to 30 days",
                  st->recovery_days);
        goto fail;
    }
    if (sm_check_tags(stage, st) != 0)
        goto fail;
    /* Check the templates' syntax and the rendered name's characters now, with stand-in
     * values, so a typo stops the run before any request. */
    char *name = sm_checked_name(stage, st, NULL, "bad option name");
    if (name == NULL)
        goto fail;
    host->free(name);
    char *desc = NULL, *bad = NULL;
    if (st->description != NULL && host->expand(NULL, st->description, &desc, &bad) != 0) {
        if (bad != NULL)
            host->log(stage, NULL, OL_LOG_ERROR, "option description: %s", bad);
        else
            host->log(stage, NULL, OL_LOG_ERROR, "option description '%s': invalid template",
                      st->description);
        host->free(bad);
        goto fail;
    }
    host->free(desc);
    *state = st;
    return 0;
fail:
    free(st);
    return rc;
}

/* Per item, before any request: the name renders to a valid secret name. */
static int sm_validate(ol_stage *stage, const ol_item *item, void *state) {
    const sm_state *st = state;
    const ol_host *h = st->host;
    char *name = sm_checked_name(stage, st, item, "bad secret name");
    if (name == NULL)
        return OL_ECONFIG;
    if (sm_name_looks_suffixed(name))
        h->log(stage, item, OL_LOG_WARN,
               "secret name %s ends with '-' and six characters, like the suffix Secrets "
               "Manager adds to ARNs; lookups by partial ARN may pick the wrong secret",
               name);
    h->free(name);
    return 0;
}

static void sm_fini(void *state) {
    free(state);
}

static const ol_store_ops sm_store = {
    .struct_size = sizeof(ol_store_ops),
    .put = sm_put,
    .get = sm_get,
    .del = sm_del,
};

static const ol_plugin sm_plugin = {
    .abi_major = OL_ABI_MAJOR,
    .abi_minor = OL_ABI_MINOR,
    .struct_size = sizeof(ol_plugin),
    .name = "aws-secretsmanager",
    .version = "1.0.0",
    .description = "store each access key in AWS Secrets Manager (one JSON secret per item)",
    OL_OPTIONS(sm_options),
    .init = sm_init,
    .validate = sm_validate,
    .fini = sm_fini,
    .store = &sm_store,
};

OL_EXPORT const ol_plugin *opsline_plugin(void) {
    return &sm_plugin;
}
