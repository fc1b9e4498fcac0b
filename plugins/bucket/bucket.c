/* bucket: the S3 bucket stage. It converges one bucket per item, named after the item
 * ("<product>-<environment>"): created when missing, then each setting the stage manages
 * (Block Public Access, default encryption, versioning, server access logging, tags) is
 * read, compared with the options, and written only when it differs. Requests run one after
 * another on the host's asynchronous AWS client; the item's outcome is created, updated or
 * unchanged, or failed with the step, the AWS error and its request id. It sets bucket.name
 * and bucket.arn in the item bag for the stages that come after it (policy). */
#include <stdlib.h>
#include <string.h>

#include "opsline/opsline.h"

#include "../arn.h"

#define S3_XMLNS "http://s3.amazonaws.com/doc/2006-03-01/"
#define MAX_TAGS 50       /* S3 User Guide, "Tagging": up to 50 tags per bucket */
#define MAX_TAG_KEY 128   /* characters */
#define MAX_TAG_VALUE 256 /* characters */

/* Options, bound in init from their declarations (bucket_options). Strings are borrowed
 * from the host until fini. */
typedef struct bucket_conf {
    const ol_host *host;
    ol_stage *stage;
    int block_public;
    const char *encryption; /* "AES256" or "aws:kms" */
    const char *kms_key_id; /* NULL: the AWS managed key (aws/s3) */
    int versioning;
    const char *log_bucket; /* NULL: logging disabled */
    const char *log_prefix; /* NULL: "<bucket>/" */
    ol_map tags;
    int tags_managed; /* the tags option was set: converge tags */
} bucket_conf;

/* The states of apply, in order. Each GET is followed by its PUT only when needed. */
typedef enum bucket_step {
    STEP_START,
    STEP_HEAD,
    STEP_CREATE,
    STEP_GET_PAB,
    STEP_PUT_PAB,
    STEP_GET_ENC,
    STEP_PUT_ENC,
    STEP_GET_VER,
    STEP_PUT_VER,
    STEP_GET_LOG,
    STEP_PUT_LOG,
    STEP_GET_TAGS,
    STEP_PUT_TAGS,
    STEP_DELETE_TAGS,
    STEP_END
} bucket_step;

/* State names; for the request states, the S3 operation the state sends. */
static const char *const step_names[] = {
    [STEP_START] = "start",
    [STEP_HEAD] = "HeadBucket",
    [STEP_CREATE] = "CreateBucket",
    [STEP_GET_PAB] = "GetPublicAccessBlock",
    [STEP_PUT_PAB] = "PutPublicAccessBlock",
    [STEP_GET_ENC] = "GetBucketEncryption",
    [STEP_PUT_ENC] = "PutBucketEncryption",
    [STEP_GET_VER] = "GetBucketVersioning",
    [STEP_PUT_VER] = "PutBucketVersioning",
    [STEP_GET_LOG] = "GetBucketLogging",
    [STEP_PUT_LOG] = "PutBucketLogging",
    [STEP_GET_TAGS] = "GetBucketTagging",
    [STEP_PUT_TAGS] = "PutBucketTagging",
    [STEP_DELETE_TAGS] = "DeleteBucketTagging",
    [STEP_END] = "done",
};

/* One apply in flight. Owned by apply; freed in finish just before host->done. */
typedef struct bucket_op {
    const bucket_conf *conf;
    ol_item *item;
    const char *name;   /* the bucket, = item name; borrowed until the item ends */
    const char *region; /* borrowed until the item ends */
    bucket_step step;
    int created;
    int changed;
    char *body; /* body of the request in flight (borrowed by the host until its callback) */
} bucket_op;

/* ---------------------------------------------------------------------------------------
 * A growable string for request bodies and messages. Writing XML is concatenation plus
 * escaping of the five XML special characters; parsing stays with the host (expat).
 * ------------------------------------------------------------------------------------- */
typedef struct strbuf {
    char *s;
    size_t len;
    size_t cap;
    int failed; /* an allocation failed: s is unusable */
} strbuf;

static void sb_add_n(strbuf *b, const char *s, size_t n) {
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap != 0 ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->s, cap);
        if (p == NULL) {
            b->failed = 1;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void sb_add(strbuf *b, const char *s) {
    sb_add_n(b, s, strlen(s));
}

/* Character data: & < > " ' become entities (XML 1.0, section 2.4). */
static void sb_add_escaped(strbuf *b, const char *s) {
    for (; *s != '\0'; s++) {
        switch (*s) {
        case '&':
            sb_add(b, "&amp;");
            break;
        case '<':
            sb_add(b, "&lt;");
            break;
        case '>':
            sb_add(b, "&gt;");
            break;
        case '"':
            sb_add(b, "&quot;");
            break;
        case '\'':
            sb_add(b, "&apos;");
            break;
        default:
            sb_add_n(b, s, 1);
        }
    }
}

/* <name>escaped text</name> */
static void sb_element(strbuf *b, const char *name, const char *text) {
    sb_add(b, "<");
    sb_add(b, name);
    sb_add(b, ">");
    sb_add_escaped(b, text);
    sb_add(b, "</");
    sb_add(b, name);
    sb_add(b, ">");
}

/* The built string (caller frees), or NULL when an allocation failed. */
static char *sb_take(strbuf *b) {
    if (b->failed || b->s == NULL) {
        free(b->s);
        return NULL;
    }
    return b->s;
}

/* ---------------------------------------------------------------------------------------
 * Request bodies.
 * ------------------------------------------------------------------------------------- */

/* S3 API Reference, CreateBucket: "If you don't specify a Region, the bucket is created in
 * US East (N. Virginia)"; sending LocationConstraint=us-east-1 is rejected
 * (InvalidLocationConstraint), so us-east-1 sends no body at all. */
static int body_create_bucket(const char *region, char **out) {
    *out = NULL;
    if (region == NULL || strcmp(region, "us-east-1") == 0)
        return 0;
    strbuf b = {0};
    sb_add(&b, "<CreateBucketConfiguration xmlns=\"" S3_XMLNS "\">");
    sb_element(&b, "LocationConstraint", region);
    sb_add(&b, "</CreateBucketConfiguration>");
    *out = sb_take(&b);
    return *out != NULL ? 0 : OL_ENOMEM;
}

static char *body_public_access_block(int block) {
    static const char *const fields[] = {"BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy",
                                         "RestrictPublicBuckets"};
    strbuf b = {0};
    sb_add(&b, "<PublicAccessBlockConfiguration xmlns=\"" S3_XMLNS "\">");
    for (size_t i = 0; i < 4; i++)
        sb_element(&b, fields[i], block ? "true" : "false");
    sb_add(&b, "</PublicAccessBlockConfiguration>");
    return sb_take(&b);
}

static char *body_encryption(const char *algorithm, const char *kms_key_id) {
    strbuf b = {0};
    sb_add(&b, "<ServerSideEncryptionConfiguration xmlns=\"" S3_XMLNS "\"><Rule>"
               "<ApplyServerSideEncryptionByDefault>");
    sb_element(&b, "SSEAlgorithm", algorithm);
    if (kms_key_id != NULL)
        sb_element(&b, "KMSMasterKeyID", kms_key_id);
    sb_add(&b, "</ApplyServerSideEncryptionByDefault></Rule></ServerSideEncryptionConfiguration>");
    return sb_take(&b);
}

static char *body_versioning(const char *status) {
    strbuf b = {0};
    sb_add(&b, "<VersioningConfiguration xmlns=\"" S3_XMLNS "\">");
    sb_element(&b, "Status", status);
    sb_add(&b, "</VersioningConfiguration>");
    return sb_take(&b);
}

/* S3 API Reference, PutBucketLogging: an empty BucketLoggingStatus disables logging. */
static char *body_logging(const char *target_bucket, const char *target_prefix) {
    strbuf b = {0};
    sb_add(&b, "<BucketLoggingStatus xmlns=\"" S3_XMLNS "\">");
    if (target_bucket != NULL) {
        sb_add(&b, "<LoggingEnabled>");
        sb_element(&b, "TargetBucket", target_bucket);
        sb_element(&b, "TargetPrefix", target_prefix);
        sb_add(&b, "</LoggingEnabled>");
    }
    sb_add(&b, "</BucketLoggingStatus>");
    return sb_take(&b);
}

static char *body_tagging(const ol_kv *tags, size_t n) {
    strbuf b = {0};
    sb_add(&b, "<Tagging xmlns=\"" S3_XMLNS "\"><TagSet>");
    for (size_t i = 0; i < n; i++) {
        sb_add(&b, "<Tag>");
        sb_element(&b, "Key", tags[i].name);
        sb_element(&b, "Value", tags[i].value != NULL ? tags[i].value : "");
        sb_add(&b, "</Tag>");
    }
    sb_add(&b, "</TagSet></Tagging>");
    return sb_take(&b);
}

/* ---------------------------------------------------------------------------------------
 * Comparisons of what S3 has with what the options ask for. doc may be NULL: the setting
 * does not exist on the bucket (S3 answered its "no such configuration" error).
 * ------------------------------------------------------------------------------------- */

static const char *text_or_empty(const ol_host *h, const ol_xml *doc, const char *path) {
    const char *t = doc != NULL ? h->xml_text(doc, path, 0) : NULL;
    return t != NULL ? t : "";
}

/* No configuration blocks nothing, so it matches block=0. */
static int pab_matches(const ol_host *h, const ol_xml *doc, int block) {
    static const char *const paths[] = {"PublicAccessBlockConfiguration/BlockPublicAcls",
                                        "PublicAccessBlockConfiguration/IgnorePublicAcls",
                                        "PublicAccessBlockConfiguration/BlockPublicPolicy",
                                        "PublicAccessBlockConfiguration/RestrictPublicBuckets"};
    for (size_t i = 0; i < 4; i++) {
        int on = strcmp(text_or_empty(h, doc, paths[i]), "true") == 0;
        if (on != (block != 0))
            return 0;
    }
    return 1;
}

static int encryption_matches(const ol_host *h, const ol_xml *doc, const char *algorithm,
                              const char *kms_key_id) {
#define SSE_DEFAULT "ServerSideEncryptionConfiguration/Rule/ApplyServerSideEncryptionByDefault/"
    if (doc == NULL || h->xml_count(doc, "ServerSideEncryptionConfiguration/Rule") != 1)
        return 0;
    if (strcmp(text_or_empty(h, doc, SSE_DEFAULT "SSEAlgorithm"), algorithm) != 0)
        return 0;
    if (strcmp(algorithm, "aws:kms") != 0)
        return 1;
    const char *have = text_or_empty(h, doc, SSE_DEFAULT "KMSMasterKeyID");
    return strcmp(have, kms_key_id != NULL ? kms_key_id : "") == 0;
#undef SSE_DEFAULT
}

/* What PutBucketVersioning must send, or NULL when nothing changes. A bucket that was never
 * versioned has no Status; it must not be "Suspended" (S3 User Guide, "Using versioning":
 * a bucket can be unversioned, versioning-enabled or versioning-suspended, and once enabled
 * never returns to unversioned). */
static const char *versioning_change(const char *status, int want_enabled) {
    int enabled = status != NULL && strcmp(status, "Enabled") == 0;
    if (want_enabled)
        return enabled ? NULL : "Enabled";
    return enabled ? "Suspended" : NULL;
}

/* S3 answers <VersioningConfiguration><Status>; moto 5 names the root
 * GetBucketVersioningResponse. Either root is read, so the stage converges on both. */
static const char *versioning_status(const ol_host *h, const ol_xml *doc) {
    const char *status = doc != NULL ? h->xml_text(doc, "VersioningConfiguration/Status", 0) : NULL;
    if (status == NULL && doc != NULL)
        status = h->xml_text(doc, "GetBucketVersioningResponse/Status", 0);
    return status;
}

static int logging_matches(const ol_host *h, const ol_xml *doc, const char *target_bucket,
                           const char *target_prefix) {
    size_t enabled =
        doc != NULL ? h->xml_count(doc, "BucketLoggingStatus/LoggingEnabled") : (size_t)0;
    if (target_bucket == NULL)
        return enabled == 0;
    if (enabled == 0)
        return 0;
    return strcmp(text_or_empty(h, doc, "BucketLoggingStatus/LoggingEnabled/TargetBucket"),
                  target_bucket) == 0 &&
           strcmp(text_or_empty(h, doc, "BucketLoggingStatus/LoggingEnabled/TargetPrefix"),
                  target_prefix) == 0;
}

/* Tag sets are equal when they have the same keys with the same values (order is not
 * significant; keys are unique on both sides). */
static int tags_match(const ol_host *h, const ol_xml *doc, const ol_kv *want, size_t n) {
    size_t have = doc != NULL ? h->xml_count(doc, "Tagging/TagSet/Tag") : (size_t)0;
    if (have != n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        const char *value = want[i].value != NULL ? want[i].value : "";
        int found = 0;
        for (size_t j = 0; j < have && !found; j++) {
            const char *k = h->xml_text(doc, "Tagging/TagSet/Tag/Key", j);
            const char *v = h->xml_text(doc, "Tagging/TagSet/Tag/Value", j);
            found = k != NULL && strcmp(k, want[i].name) == 0 && strcmp(v ? v : "", value) == 0;
        }
        if (!found)
            return 0;
    }
    return 1;
}

/* ---------------------------------------------------------------------------------------
 * The apply state machine: HeadBucket [-> CreateBucket] -> (Get -> [Put]) for public
 * access, encryption, versioning, logging, then tags when managed -> done. op->step
 * changes only in set_state.
 * ------------------------------------------------------------------------------------- */

static void on_response(void *arg, const ol_aws_response *res);

/* The one transition function: every change of op->step is logged here (curl's mstate()). */
static void set_state(bucket_op *op, bucket_step next) {
    const bucket_conf *c = op->conf;
    c->host->log(c->stage, op->item, OL_LOG_DEBUG, "bucket: state %s -> %s", step_names[op->step],
                 step_names[next]);
    op->step = next;
}

static void finish(bucket_op *op, ol_outcome outcome, const char *reason) {
    const bucket_conf *conf = op->conf;
    ol_item *item = op->item;
    set_state(op, STEP_END);
    free(op->body);
    free(op);
    conf->host->done(conf->stage, item, outcome, reason);
}

static void finish_nomem(bucket_op *op) {
    finish(op, OL_OUTCOME_FAILED, "out of memory");
}

/* Fails op with a host-formatted reason (freed here), or for want of memory. */
static void finish_failed(bucket_op *op, char *reason) {
    const ol_host *h = op->conf->host;
    finish(op, OL_OUTCOME_FAILED, reason != NULL ? reason : "out of memory");
    h->free(reason);
}

/* "<step> failed: <AWS code>: <message> (HTTP <status>, request id <id>)", or the
 * transport error, in the host's words. */
static void finish_aws_error(bucket_op *op, const ol_aws_response *res) {
    finish_failed(op, op->conf->host->aws_reason(step_names[op->step], res));
}

/* Send the request of op->step. body (malloc'd or NULL) is owned by op from here on.
 * Returns aws_send's code; on an error the callback never runs. */
static int send_request(bucket_op *op, const char *method, const char *subresource, char *body,
                        unsigned flags) {
    const ol_host *h = op->conf->host;
    ol_kv param = {subresource, ""};
    ol_aws_request req = {.struct_size = sizeof(ol_aws_request)};
    req.service = "s3";
    req.method = method;
    req.bucket = op->name;
    req.params = subresource != NULL ? &param : NULL;
    req.n_params = subresource != NULL ? 1 : 0;
    req.body = body;
    req.body_len = body != NULL ? strlen(body) : 0;
    req.flags = flags;
    free(op->body);
    op->body = body;
    return h->aws_send(op->item, &req, on_response, op);
}

/* Enter step and send its request, or fail op when the host refuses to send it. */
static void send_step(bucket_op *op, bucket_step step, const char *method, const char *subresource,
                      char *body, unsigned flags) {
    set_state(op, step);
    int rc = send_request(op, method, subresource, body, flags);
    if (rc < 0) {
        ol_aws_response refused = {.struct_size = sizeof(ol_aws_response), .result = rc};
        finish_aws_error(op, &refused);
    }
}

/* Send a configuration PUT (S3 requires Content-MD5 on these) or fail for want of memory. */
static void send_put(bucket_op *op, bucket_step step, const char *subresource, char *body) {
    if (body == NULL) {
        finish_nomem(op);
        return;
    }
    op->changed = 1;
    send_step(op, step, "PUT", subresource, body, OL_AWS_CONTENT_MD5);
}

static void send_get(bucket_op *op, bucket_step step, const char *subresource) {
    send_step(op, step, "GET", subresource, NULL, 0);
}

static void succeed(bucket_op *op) {
    const ol_host *h = op->conf->host;
    char *arn = arn_s3_bucket(h, op->region, op->name);
    if (arn == NULL || h->item_set(op->item, OL_KEY_BUCKET_NAME, op->name, 0) < 0 ||
        h->item_set(op->item, OL_KEY_BUCKET_ARN, arn, 0) < 0) {
        h->free(arn);
        finish(op, OL_OUTCOME_FAILED, "recording bucket.name and bucket.arn: out of memory");
        return;
    }
    h->free(arn);
    finish(op,
           op->created   ? OL_OUTCOME_CREATED
           : op->changed ? OL_OUTCOME_UPDATED
                         : OL_OUTCOME_UNCHANGED,
           NULL);
}

/* Parse a GET answer into *doc, or NULL when the setting does not exist (S3 answered
 * missing_code; NULL: no such code for this setting). Returns -1
 * (and has finished op) on an error or an unparsable answer. */
static int read_config(bucket_op *op, const ol_aws_response *res, const char *missing_code,
                       ol_xml **doc) {
    const ol_host *h = op->conf->host;
    *doc = NULL;
    if (res->result == OL_EAWS && missing_code != NULL && res->error_code != NULL &&
        strcmp(res->error_code, missing_code) == 0)
        return 0;
    if (res->result != 0) {
        finish_aws_error(op, res);
        return -1;
    }
    *doc = h->xml_parse(res->body, res->body_len);
    if (*doc == NULL) {
        finish_failed(op, h->format("%s: S3 sent an answer that is not valid XML (HTTP %ld, "
                                    "request id %s)",
                                    step_names[op->step], res->status,
                                    res->request_id != NULL ? res->request_id : "none"));
        return -1;
    }
    return 0;
}

static void next_after_pab(bucket_op *op) {
    send_get(op, STEP_GET_ENC, "encryption");
}

static void next_after_enc(bucket_op *op) {
    send_get(op, STEP_GET_VER, "versioning");
}

static void next_after_ver(bucket_op *op) {
    send_get(op, STEP_GET_LOG, "logging");
}

static void next_after_log(bucket_op *op) {
    if (op->conf->tags_managed)
        send_get(op, STEP_GET_TAGS, "tagging");
    else
        succeed(op);
}

static void on_head(bucket_op *op, const ol_aws_response *res) {
    if (res->result == 0) {
        send_get(op, STEP_GET_PAB, "publicAccessBlock");
        return;
    }
    /* 404: no such bucket. 403: it exists but this account may not see it; CreateBucket
     * then tells BucketAlreadyExists (someone else's) from AccessDenied. */
    if (res->result == OL_EAWS && (res->status == 404 || res->status == 403)) {
        char *body = NULL;
        if (body_create_bucket(op->region, &body) < 0) {
            finish_nomem(op);
            return;
        }
        send_step(op, STEP_CREATE, "PUT", NULL, body, 0);
        return;
    }
    finish_aws_error(op, res);
}

static void on_create(bucket_op *op, const ol_aws_response *res) {
    const char *code = res->error_code != NULL ? res->error_code : "";
    if (res->result == 0) {
        op->created = 1;
    } else if (res->result == OL_EAWS && strcmp(code, "BucketAlreadyOwnedByYou") == 0) {
        op->created = 0; /* created meanwhile by another run of ours: converge it */
    } else if (res->result == OL_EAWS && strcmp(code, "BucketAlreadyExists") == 0) {
        finish_failed(op, op->conf->host->format(
                              "CreateBucket: bucket name '%s' is taken by another AWS account; "
                              "S3 names are global: choose another product name "
                              "(BucketAlreadyExists, HTTP %ld, request id %s)",
                              op->name, res->status,
                              res->request_id != NULL ? res->request_id : "none"));
        return;
    } else {
        finish_aws_error(op, res);
        return;
    }
    send_get(op, STEP_GET_PAB, "publicAccessBlock");
}

static void on_get_pab(bucket_op *op, const ol_aws_response *res) {
    const ol_host *h = op->conf->host;
    ol_xml *doc;
    if (read_config(op, res, "NoSuchPublicAccessBlockConfiguration", &doc) < 0)
        return;
    int same = pab_matches(h, doc, op->conf->block_public);
    h->xml_free(doc);
    if (same)
        next_after_pab(op);
    else
        send_put(op, STEP_PUT_PAB, "publicAccessBlock",
                 body_public_access_block(op->conf->block_public));
}

static void on_get_enc(bucket_op *op, const ol_aws_response *res) {
    const ol_host *h = op->conf->host;
    const bucket_conf *c = op->conf;
    ol_xml *doc;
    if (read_config(op, res, "ServerSideEncryptionConfigurationNotFoundError", &doc) < 0)
        return;
    int same = encryption_matches(h, doc, c->encryption, c->kms_key_id);
    h->xml_free(doc);
    if (same)
        next_after_enc(op);
    else
        send_put(op, STEP_PUT_ENC, "encryption", body_encryption(c->encryption, c->kms_key_id));
}

static void on_get_ver(bucket_op *op, const ol_aws_response *res) {
    const ol_host *h = op->conf->host;
    ol_xml *doc;
    if (read_config(op, res, NULL, &doc) < 0)
        return;
    const char *status = versioning_status(h, doc);
    const char *change = versioning_change(status, op->conf->versioning);
    h->xml_free(doc);
    if (change == NULL) {
        next_after_ver(op);
        return;
    }
    if (strcmp(change, "Suspended") == 0)
        h->log(op->conf->stage, op->item, OL_LOG_WARN,
               "bucket '%s' has versioning enabled and the versioning option is false: "
               "suspending it (existing object versions are kept; a bucket never returns to "
               "unversioned)",
               op->name);
    send_put(op, STEP_PUT_VER, "versioning", body_versioning(change));
}

/* The logging prefix: the option, or "<bucket>/". Host-allocated. */
static char *log_prefix(const bucket_op *op) {
    const ol_host *h = op->conf->host;
    if (op->conf->log_prefix != NULL)
        return h->format("%s", op->conf->log_prefix);
    return h->format("%s/", op->name);
}

static void on_get_log(bucket_op *op, const ol_aws_response *res) {
    const ol_host *h = op->conf->host;
    const bucket_conf *c = op->conf;
    ol_xml *doc;
    if (read_config(op, res, NULL, &doc) < 0)
        return;
    char *prefix = log_prefix(op);
    if (prefix == NULL) {
        h->xml_free(doc);
        finish_nomem(op);
        return;
    }
    int same = logging_matches(h, doc, c->log_bucket, prefix);
    h->xml_free(doc);
    if (same)
        next_after_log(op);
    else
        send_put(op, STEP_PUT_LOG, "logging", body_logging(c->log_bucket, prefix));
    h->free(prefix);
}

static void on_get_tags(bucket_op *op, const ol_aws_response *res) {
    const ol_host *h = op->conf->host;
    const bucket_conf *c = op->conf;
    ol_xml *doc;
    if (read_config(op, res, "NoSuchTagSet", &doc) < 0)
        return;
    int same = tags_match(h, doc, c->tags.items, c->tags.n);
    h->xml_free(doc);
    if (same) {
        succeed(op);
    } else if (c->tags.n == 0) {
        /* S3 rejects an empty TagSet; removing every tag is DeleteBucketTagging. */
        op->changed = 1;
        send_step(op, STEP_DELETE_TAGS, "DELETE", "tagging", NULL, 0);
    } else {
        send_put(op, STEP_PUT_TAGS, "tagging", body_tagging(c->tags.items, c->tags.n));
    }
}

/* A PUT or DELETE answered: on to the next setting. */
static void on_written(bucket_op *op, const ol_aws_response *res) {
    if (res->result != 0) {
        finish_aws_error(op, res);
        return;
    }
    switch (op->step) {
    case STEP_PUT_PAB:
        next_after_pab(op);
        return;
    case STEP_PUT_ENC:
        next_after_enc(op);
        return;
    case STEP_PUT_VER:
        next_after_ver(op);
        return;
    case STEP_PUT_LOG:
        next_after_log(op);
        return;
    default:
        succeed(op);
        return;
    }
}

static void on_response(void *arg, const ol_aws_response *res) {
    bucket_op *op = arg;
    switch (op->step) {
    case STEP_HEAD:
        on_head(op, res);
        return;
    case STEP_CREATE:
        on_create(op, res);
        return;
    case STEP_GET_PAB:
        on_get_pab(op, res);
        return;
    case STEP_GET_ENC:
        on_get_enc(op, res);
        return;
    case STEP_GET_VER:
        on_get_ver(op, res);
        return;
    case STEP_GET_LOG:
        on_get_log(op, res);
        return;
    case STEP_GET_TAGS:
        on_get_tags(op, res);
        return;
    default:
        on_written(op, res);
        return;
    }
}

/* ---------------------------------------------------------------------------------------
 * Plugin entry points.
 * ------------------------------------------------------------------------------------- */

/* Tag rules from the S3 User Guide ("Categorizing your storage using tags") and the Tagging
 * API: at most 50, keys 1-128 characters, values up to 256, the aws: prefix is AWS's. */
static int check_tags(ol_stage *stage, const ol_host *h, const ol_kv *tags, size_t n) {
    if (n > MAX_TAGS) {
        h->log(stage, NULL, OL_LOG_ERROR,
               "option tags: %zu tags given; S3 allows at most %d "
               "per bucket. Remove some.",
               n, MAX_TAGS);
        return OL_ECONFIG;
    }
    for (size_t i = 0; i < n; i++) {
        const char *k = tags[i].name, *v = tags[i].value != NULL ? tags[i].value : "";
        if (k[0] == '\0' || strlen(k) > MAX_TAG_KEY) {
            h->log(stage, NULL, OL_LOG_ERROR,
                   "option tags: key '%s' is %zu bytes; tag keys "
                   "are 1 to %d characters.",
                   k, strlen(k), MAX_TAG_KEY);
            return OL_ECONFIG;
        }
        if (strlen(v) > MAX_TAG_VALUE) {
            h->log(stage, NULL, OL_LOG_ERROR,
                   "option tags: the value of '%s' is %zu bytes; "
                   "tag values are at most %d characters.",
                   k, strlen(v), MAX_TAG_VALUE);
            return OL_ECONFIG;
        }
        if (strncmp(k, "aws:", 4) == 0) {
            h->log(stage, NULL, OL_LOG_ERROR,
                   "option tags: key '%s' uses the prefix 'aws:', "
                   "which AWS reserves. Rename the tag.",
                   k);
            return OL_ECONFIG;
        }
    }
    return 0;
}

/* Checks the combination of bound options; a message for each way it can be wrong. */
static int check_options(ol_stage *stage, const ol_host *h, const bucket_conf *c) {
    if (strcmp(c->encryption, "AES256") != 0 && strcmp(c->encryption, "aws:kms") != 0) {
        /* S3 stopped allowing unencrypted buckets in January 2023: there is no "none". */
        h->log(stage, NULL, OL_LOG_ERROR,
               "option encryption: '%s' is not supported; use "
               "\"AES256\" (SSE-S3) or \"aws:kms\" (SSE-KMS). S3 encrypts every bucket, so "
               "there is no \"none\".",
               c->encryption);
        return OL_ECONFIG;
    }
    if (c->kms_key_id != NULL && strcmp(c->encryption, "aws:kms") != 0) {
        h->log(stage, NULL, OL_LOG_ERROR,
               "option kms_key_id is set but encryption is '%s'; "
               "set encryption to \"aws:kms\" or remove kms_key_id.",
               c->encryption);
        return OL_ECONFIG;
    }
    if (c->log_prefix != NULL && c->log_bucket == NULL) {
        h->log(stage, NULL, OL_LOG_ERROR,
               "option logging_target_prefix is set but "
               "logging_target_bucket is not; set logging_target_bucket to enable logging.");
        return OL_ECONFIG;
    }
    if (c->tags_managed)
        return check_tags(stage, h, c->tags.items, c->tags.n);
    return 0;
}

static int read_options(ol_stage *stage, const ol_host *h, bucket_conf *c) {
    int rc = h->opt_bind(stage, c);
    if (rc < 0)
        return rc;
    c->tags_managed = h->opt_is_set(stage, "tags");
    /* An empty string is written to unset an option that has no default. */
    if (c->kms_key_id != NULL && c->kms_key_id[0] == '\0')
        c->kms_key_id = NULL;
    if (c->log_bucket != NULL && c->log_bucket[0] == '\0')
        c->log_bucket = NULL;
    rc = check_options(stage, h, c);
    if (rc < 0)
        return rc;
    if (!c->block_public)
        h->log(stage, NULL, OL_LOG_WARN,
               "block_public_access is false: each bucket's Block Public Access settings are "
               "turned off. Objects become public only through a bucket policy or ACL you add, "
               "and the account-level Block Public Access setting still applies.");
    return 0;
}

static int bucket_init(ol_stage *stage, const ol_host *host, void **state) {
    bucket_conf *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return OL_ENOMEM;
    c->host = host;
    c->stage = stage;
    int rc = read_options(stage, host, c);
    if (rc < 0) {
        free(c);
        return rc;
    }
    *state = c;
    return 0;
}

static int bucket_apply(ol_stage *stage, ol_item *item, void *state) {
    bucket_conf *c = state;
    (void)stage;
    bucket_op *op = calloc(1, sizeof(*op));
    if (op == NULL)
        return OL_ENOMEM;
    op->conf = c;
    op->item = item;
    op->name = c->host->item_name(item);
    op->region = c->host->item_region(item);
    set_state(op, STEP_HEAD);
    int rc = send_request(op, "HEAD", NULL, NULL, 0);
    if (rc < 0) {
        free(op); /* the callback never runs: nothing else owns op */
        return rc;
    }
    return 0;
}

static void bucket_fini(void *state) {
    free(state);
}

static const ol_option_def bucket_options[] = {
    {"block_public_access", OL_OPT_BOOL, "true",
     "Turn on all four S3 Block Public Access settings of the bucket; false turns them off "
     "(for content served without login)",
     OL_BIND(bucket_conf, block_public)},
    {"encryption", OL_OPT_STRING, "AES256",
     "Default encryption: \"AES256\" (SSE-S3) or \"aws:kms\" (SSE-KMS)",
     OL_BIND(bucket_conf, encryption)},
    {"kms_key_id", OL_OPT_STRING, NULL,
     "KMS key id or ARN for aws:kms; unset: the AWS managed key aws/s3",
     OL_BIND(bucket_conf, kms_key_id)},
    {"versioning", OL_OPT_BOOL, "false",
     "Keep object versions; false suspends versioning on a bucket that has it",
     OL_BIND(bucket_conf, versioning)},
    {"logging_target_bucket", OL_OPT_STRING, NULL,
     "Bucket that receives server access logs; unset: logging off",
     OL_BIND(bucket_conf, log_bucket)},
    {"logging_target_prefix", OL_OPT_STRING, NULL,
     "Prefix of the access log objects; unset: \"<bucket>/\"", OL_BIND(bucket_conf, log_prefix)},
    {"tags", OL_OPT_OBJECT, NULL,
     "Bucket tags (key: value); when set, the bucket's tag set is made exactly this; unset: "
     "tags are left alone",
     OL_BIND(bucket_conf, tags)},
};

/* S3's bucket-name rules are AWS's: the host owns them (aws_name_check). */
static int bucket_validate(ol_stage *stage, const ol_item *item, void *state) {
    const ol_host *h = ((const bucket_conf *)state)->host;
    char *why = NULL;
    if (h->item_name_check(item, "s3-bucket", &why) == 0)
        return 0;
    h->log(stage, item, OL_LOG_ERROR, "%s", why ? why : "invalid S3 bucket name");
    h->free(why);
    return OL_EINVAL;
}

static const ol_plugin bucket_plugin = {
    .abi_major = OL_ABI_MAJOR,
    .abi_minor = OL_ABI_MINOR,
    .struct_size = sizeof(ol_plugin),
    .name = "bucket",
    .version = "2.0.0",
    .description = "S3 bucket named after the item, with public access, encryption, "
                   "versioning, logging and tags converged",
    .needs = NULL,
    .flags = OL_STAGE_DEFAULT,
    OL_OPTIONS(bucket_options),
    .init = bucket_init,
    .validate = bucket_validate,
    .apply = bucket_apply,
    .fini = bucket_fini,
};

OL_EXPORT const ol_plugin *opsline_plugin(void) {
    return &bucket_plugin;
}
