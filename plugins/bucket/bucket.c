/* bucket: the S3 bucket stage. It converges one bucket per item, named after the item
 * ("<product>-<environment>"), with the settings the stage manages (Block Public Access,
 * default encryption, versioning, server access logging, tags, among them the ownership
 * tags managed-by=opsline, product, environment). A bucket the journal does not know is
 * created and then only written, each setting once, in parallel; a known bucket is read
 * with its five GETs in parallel, compared with the options (bucket_diff) and written only
 * where it differs. The item's outcome is created, updated (naming what changed) or
 * unchanged, or failed with the operation, the AWS error and its request id. It sets
 * bucket.name and bucket.arn in the item bag. */
#include <stdlib.h>
#include <string.h>

#include "opsline/opsline.h"

#include "../arn.h"
#include "../owner.h"
#include "bucket_lifecycle.h"

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

/* The settings the stage converges: each is read by one GET and written by one PUT on its
 * sub-resource. */
typedef enum bucket_setting {
    SET_PAB,
    SET_ENC,
    SET_VER,
    SET_LOG,
    SET_TAGS,
    N_SETTINGS
} bucket_setting;

typedef struct setting_api {
    const char *subresource;
    const char *get; /* S3 operation names, for messages */
    const char *put;
    const char *missing; /* the GET's error code for "not configured", or NULL */
    const char *label;   /* what changed, for the user */
} setting_api;

static const setting_api settings[N_SETTINGS] = {
    [SET_PAB] = {"publicAccessBlock", "GetPublicAccessBlock", "PutPublicAccessBlock",
                 "NoSuchPublicAccessBlockConfiguration", "public access block"},
    [SET_ENC] = {"encryption", "GetBucketEncryption", "PutBucketEncryption",
                 "ServerSideEncryptionConfigurationNotFoundError", "encryption"},
    [SET_VER] = {"versioning", "GetBucketVersioning", "PutBucketVersioning", NULL, "versioning"},
    [SET_LOG] = {"logging", "GetBucketLogging", "PutBucketLogging", NULL, "logging"},
    [SET_TAGS] = {"tagging", "GetBucketTagging", "PutBucketTagging", "NoSuchTagSet", "tags"},
};

/* What is known of one setting of the bucket. */
typedef enum seen_state {
    SEEN_UNKNOWN, /* not read (a bucket just created): written whatever the options say */
    SEEN_ABSENT,  /* S3 has no such configuration */
    SEEN_PRESENT  /* read: the answer is in doc */
} seen_state;

/* What observe found, per setting. A bucket just created is "unknown" for the settings
 * whose defaults S3 has changed over time or that vary by partition (public access block,
 * encryption, tags are then written) and "absent" for versioning and logging, which a new
 * bucket never has. */
typedef struct bucket_observed {
    seen_state state[N_SETTINGS];
    ol_xml *doc[N_SETTINGS]; /* SEEN_PRESENT: the parsed answer, owned */
} bucket_observed;

/* What the bucket of one item should be: the options, resolved for its name. */
typedef struct bucket_want {
    int block_public;
    const char *encryption;
    const char *kms_key_id;
    int versioning;
    const char *log_bucket; /* NULL: logging off */
    char *log_prefix;       /* host-allocated: the option, or "<bucket>/" */
    ol_kv *tags;            /* malloc'd: the ownership tags, then the option's (borrowed) */
    size_t n_tags;
    int tags_exact; /* the tags option is set: the tag set is made exactly tags; otherwise
                       tags not named here are kept */
} bucket_want;

/* What bucket_diff decided. */
typedef struct bucket_change {
    unsigned writes;        /* 1u << bucket_setting, for each setting to PUT */
    const char *versioning; /* with SET_VER: "Enabled" or "Suspended" */
    ol_kv *tags; /* with SET_TAGS: the whole tag set to write (malloc'd array; strings borrowed
                    from the want and from the observed tagging document) */
    size_t n_tags;
} bucket_change;

/* The phases of apply; each but the last waits for the requests it sent. */
typedef enum bucket_phase {
    PHASE_START,
    PHASE_HEAD,    /* HeadBucket (us-east-1, no journal record) */
    PHASE_CREATE,  /* CreateBucket */
    PHASE_OBSERVE, /* the five GETs, in parallel */
    PHASE_WRITE,   /* the PUTs bucket_diff asked for, in parallel */
    PHASE_END
} bucket_phase;

static const char *const phase_names[] = {
    [PHASE_START] = "start",     [PHASE_HEAD] = "HeadBucket", [PHASE_CREATE] = "CreateBucket",
    [PHASE_OBSERVE] = "observe", [PHASE_WRITE] = "write",     [PHASE_END] = "done",
};

struct bucket_op;

/* One request in flight, the argument of its callback. */
typedef struct bucket_req {
    struct bucket_op *op;
    int setting; /* bucket_setting, or -1 for HeadBucket and CreateBucket */
    int write;
    char *body; /* borrowed by the host until the callback has run; freed in finish */
} bucket_req;

/* One apply in flight. Owned by apply; freed in finish just before host->done, which runs
 * only when no request is in flight. */
typedef struct bucket_op {
    const bucket_conf *conf;
    ol_item *item;
    const char *name;   /* the bucket, = item name; borrowed until the item ends */
    const char *region; /* borrowed until the item ends */
    bucket_phase phase;
    bucket_want want;
    bucket_observed seen;
    bucket_change change;
    bucket_req reqs[N_SETTINGS]; /* per setting: its GET, then its PUT */
    bucket_req single;           /* HeadBucket or CreateBucket */
    size_t inflight;
    int sending; /* a batch is being sent: completion waits for its end */
    int created;
    int create_tried;
    int gone;      /* a GET answered NoSuchBucket */
    int planning;  /* plan or status: observe and diff, never write (bucket_lifecycle.c) */
    int refused;   /* the code of the last request the host refused to send */
    char *failure; /* host-allocated reason of the first failure, or NULL */
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

/* The value of tag key in a GetBucketTagging answer, or NULL when the bucket lacks it. */
static const char *tag_value(const ol_host *h, const ol_xml *doc, const char *key) {
    size_t have = doc != NULL ? h->xml_count(doc, "Tagging/TagSet/Tag") : (size_t)0;
    for (size_t j = 0; j < have; j++) {
        const char *k = h->xml_text(doc, "Tagging/TagSet/Tag/Key", j);
        if (k != NULL && strcmp(k, key) == 0) {
            const char *v = h->xml_text(doc, "Tagging/TagSet/Tag/Value", j);
            return v != NULL ? v : "";
        }
    }
    return NULL;
}

/* Every wanted tag is on the bucket with its value. */
static int tags_include(const ol_host *h, const ol_xml *doc, const ol_kv *want, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const char *have = tag_value(h, doc, want[i].name);
        if (have == NULL || strcmp(have, want[i].value != NULL ? want[i].value : "") != 0)
            return 0;
    }
    return 1;
}

/* Tag sets are equal when they have the same keys with the same values (order is not
 * significant; keys are unique on both sides). */
static int tags_match(const ol_host *h, const ol_xml *doc, const ol_kv *want, size_t n) {
    size_t have = doc != NULL ? h->xml_count(doc, "Tagging/TagSet/Tag") : (size_t)0;
    return have == n && tags_include(h, doc, want, n);
}

/* The tag set to write into c, or nothing when the bucket's tags are right. Exact: the
 * wanted set. Otherwise the wanted tags plus those of the bucket they do not name (tags
 * someone set by hand are kept; PutBucketTagging replaces the whole set). */
static int tags_diff(const ol_host *h, const bucket_want *w, seen_state state, const ol_xml *doc,
                     bucket_change *c) {
    int same = state != SEEN_UNKNOWN && (w->tags_exact ? tags_match(h, doc, w->tags, w->n_tags)
                                                       : tags_include(h, doc, w->tags, w->n_tags));
    if (same)
        return 0;
    size_t have = doc != NULL ? h->xml_count(doc, "Tagging/TagSet/Tag") : (size_t)0;
    size_t extra = w->tags_exact ? 0 : have;
    c->tags = calloc(w->n_tags + extra + 1, sizeof(*c->tags));
    if (c->tags == NULL)
        return OL_ENOMEM;
    for (size_t i = 0; i < w->n_tags; i++)
        c->tags[c->n_tags++] = w->tags[i];
    for (size_t j = 0; j < extra; j++) {
        const char *k = h->xml_text(doc, "Tagging/TagSet/Tag/Key", j);
        const char *v = h->xml_text(doc, "Tagging/TagSet/Tag/Value", j);
        int named = 0;
        for (size_t i = 0; i < w->n_tags && !named && k != NULL; i++)
            named = strcmp(k, w->tags[i].name) == 0;
        if (k != NULL && !named)
            c->tags[c->n_tags++] = (ol_kv){k, v != NULL ? v : ""};
    }
    c->writes |= 1u << SET_TAGS;
    return 0;
}

/* The one comparison of the stage: what must be written to make the observed bucket what
 * w describes. Pure (no request, no log): apply acts on it, and a plan can print it.
 * Returns 0 or OL_ENOMEM; free c->tags. */
static int bucket_diff(const ol_host *h, const bucket_want *w, const bucket_observed *o,
                       bucket_change *c) {
    memset(c, 0, sizeof(*c));
    const ol_xml *const *doc = (const ol_xml *const *)o->doc;
    if (o->state[SET_PAB] == SEEN_UNKNOWN || !pab_matches(h, doc[SET_PAB], w->block_public))
        c->writes |= 1u << SET_PAB;
    if (o->state[SET_ENC] == SEEN_UNKNOWN ||
        !encryption_matches(h, doc[SET_ENC], w->encryption, w->kms_key_id))
        c->writes |= 1u << SET_ENC;
    c->versioning = versioning_change(versioning_status(h, doc[SET_VER]), w->versioning);
    if (c->versioning != NULL)
        c->writes |= 1u << SET_VER;
    if (o->state[SET_LOG] == SEEN_UNKNOWN ||
        !logging_matches(h, doc[SET_LOG], w->log_bucket, w->log_prefix))
        c->writes |= 1u << SET_LOG;
    return tags_diff(h, w, o->state[SET_TAGS], doc[SET_TAGS], c);
}

/* A bucket CreateBucket has just made: nothing read. */
static void observed_new(bucket_observed *o) {
    memset(o, 0, sizeof(*o));
    o->state[SET_PAB] = SEEN_UNKNOWN;
    o->state[SET_ENC] = SEEN_UNKNOWN;
    o->state[SET_VER] = SEEN_ABSENT;
    o->state[SET_LOG] = SEEN_ABSENT;
    o->state[SET_TAGS] = SEEN_UNKNOWN;
}

static void observed_free(const ol_host *h, bucket_observed *o) {
    for (size_t s = 0; s < N_SETTINGS; s++) {
        if (o->doc[s] != NULL)
            h->xml_free(o->doc[s]);
        o->doc[s] = NULL;
        o->state[s] = SEEN_UNKNOWN;
    }
}

/* The PUT body of setting s for change c. NULL when out of memory. */
static char *body_for(const bucket_want *w, const bucket_change *c, bucket_setting s) {
    switch (s) {
    case SET_PAB:
        return body_public_access_block(w->block_public);
    case SET_ENC:
        return body_encryption(w->encryption, w->kms_key_id);
    case SET_VER:
        return body_versioning(c->versioning);
    case SET_LOG:
        return body_logging(w->log_bucket, w->log_prefix);
    default:
        return body_tagging(c->tags, c->n_tags);
    }
}

/* ---------------------------------------------------------------------------------------
 * Apply: observe -> bucket_diff -> act. A bucket the journal does not know is created
 * first (CreateBucket; BucketAlreadyOwnedByYou: it is observed instead), then only written:
 * nothing of a new bucket needs reading. A known bucket is observed with its five GETs in
 * parallel, and only what differs is written, in parallel. op->phase changes only in
 * set_phase.
 * ------------------------------------------------------------------------------------- */

static void on_single(void *arg, const ol_aws_response *res);
static void on_setting(void *arg, const ol_aws_response *res);
static void observe(bucket_op *op);

/* The one transition function: every change of op->phase is logged here (curl's mstate()). */
static void set_phase(bucket_op *op, bucket_phase next) {
    const bucket_conf *c = op->conf;
    c->host->log(c->stage, op->item, OL_LOG_DEBUG, "bucket: state %s -> %s", phase_names[op->phase],
                 phase_names[next]);
    op->phase = next;
}

static void finish(bucket_op *op, ol_outcome outcome, const char *reason) {
    const bucket_conf *conf = op->conf;
    const ol_host *h = conf->host;
    ol_item *item = op->item;
    set_phase(op, PHASE_END);
    observed_free(h, &op->seen);
    h->free(op->want.log_prefix);
    free(op->want.tags);
    free(op->change.tags);
    for (size_t s = 0; s < N_SETTINGS; s++)
        free(op->reqs[s].body);
    free(op->single.body);
    h->free(op->failure);
    free(op);
    h->done(conf->stage, item, outcome, reason);
}

/* Fails op with a host-formatted reason (freed here), or for want of memory. */
static void finish_failed(bucket_op *op, char *reason) {
    const ol_host *h = op->conf->host;
    finish(op, OL_OUTCOME_FAILED, reason != NULL ? reason : "out of memory");
    h->free(reason);
}

/* Keeps the first failure of a phase (host-allocated reason, taken over); the phase ends
 * when its last request has answered. */
static void note_failure(bucket_op *op, char *reason) {
    const ol_host *h = op->conf->host;
    if (op->failure == NULL)
        op->failure = reason != NULL ? reason : h->format("out of memory");
    else
        h->free(reason);
}

/* Fails op with the phase's first failure (op->failure, taken over). */
static void finish_refused(bucket_op *op) {
    char *reason = op->failure;
    op->failure = NULL;
    finish_failed(op, reason);
}

/* "<operation> failed: <AWS code>: <message> (HTTP <status>, request id <id>)", or the
 * transport error, in the host's words. */
static void note_aws_error(bucket_op *op, const char *operation, const ol_aws_response *res) {
    note_failure(op, op->conf->host->aws_reason(operation, res));
}

/* Sends one request of a batch; body (malloc'd or NULL) is owned by req from here on. A
 * request the host refuses is a failure of the phase. */
static void send_request(bucket_op *op, bucket_req *req, const char *method,
                         const char *subresource, char *body, unsigned flags,
                         const char *operation) {
    const ol_host *h = op->conf->host;
    ol_kv param = {subresource, ""};
    ol_aws_request r = {.struct_size = sizeof(ol_aws_request)};
    r.service = "s3";
    r.method = method;
    r.bucket = op->name;
    r.params = subresource != NULL ? &param : NULL;
    r.n_params = subresource != NULL ? 1 : 0;
    r.body = body;
    r.body_len = body != NULL ? strlen(body) : 0;
    r.flags = flags;
    free(req->body);
    req->body = body;
    req->op = op;
    op->inflight++;
    int rc = h->aws_send(op->item, &r, req->setting < 0 ? on_single : on_setting, req);
    if (rc < 0) {
        op->inflight--;
        op->refused = rc;
        ol_aws_response refused = {.struct_size = sizeof(ol_aws_response), .result = rc};
        note_aws_error(op, operation, &refused);
    }
}

/* "changed: public access block, tags" for an updated bucket. Host-allocated. */
static char *describe_change(const ol_host *h, unsigned writes) {
    char text[160] = "changed:";
    const char *sep = " ";
    for (size_t s = 0; s < N_SETTINGS; s++) {
        if (!(writes & (1u << s)))
            continue;
        strncat(text, sep, sizeof(text) - strlen(text) - 1);
        strncat(text, settings[s].label, sizeof(text) - strlen(text) - 1);
        sep = ", ";
    }
    return h->format("%s", text);
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
    if (op->created) {
        finish(op, OL_OUTCOME_CREATED, NULL);
        return;
    }
    if (op->change.writes == 0) {
        finish(op, OL_OUTCOME_UNCHANGED, NULL);
        return;
    }
    char *reason = describe_change(h, op->change.writes);
    finish(op, OL_OUTCOME_UPDATED, reason);
    h->free(reason);
}

/* The journal's word on the bucket: created or found by an earlier run of this state
 * directory, and not deleted since. It only picks the cheaper first request: a known
 * bucket that is gone is created, a new name that exists is observed. */
static int bucket_known(const bucket_op *op) {
    const ol_host *h = op->conf->host;
    size_t seen = h->journal_count(op->item, "bucket_created", op->name) +
                  h->journal_count(op->item, "bucket_seen", op->name);
    return seen > h->journal_count(op->item, "bucket_deleted", op->name);
}

static void record(bucket_op *op, const char *event) {
    const bucket_conf *c = op->conf;
    /* A lost record only costs the next run one request: not a failure. */
    if (c->host->journal_append(op->item, c->stage, event, op->name) != 0)
        c->host->log(c->stage, op->item, OL_LOG_WARN, "could not journal %s for bucket '%s'", event,
                     op->name);
}

/* Write what bucket_diff says, all in parallel; the observed answers are freed once the
 * bodies are built (the tag set borrows from them). */
static void plan_report(bucket_op *op);

static void act(bucket_op *op) {
    const ol_host *h = op->conf->host;
    char *bodies[N_SETTINGS] = {0};
    if (op->planning) {
        plan_report(op);
        return;
    }
    int rc = bucket_diff(h, &op->want, &op->seen, &op->change);
    for (size_t s = 0; s < N_SETTINGS && rc == 0; s++)
        if (op->change.writes & (1u << s))
            rc = (bodies[s] = body_for(&op->want, &op->change, (bucket_setting)s)) ? 0 : OL_ENOMEM;
    observed_free(h, &op->seen);
    free(op->change.tags);
    op->change.tags = NULL;
    if (rc != 0) {
        for (size_t s = 0; s < N_SETTINGS; s++)
            free(bodies[s]);
        finish(op, OL_OUTCOME_FAILED, "out of memory");
        return;
    }
    if (op->change.writes == 0) {
        succeed(op);
        return;
    }
    if (op->change.versioning != NULL && strcmp(op->change.versioning, "Suspended") == 0)
        h->log(op->conf->stage, op->item, OL_LOG_WARN,
               "bucket '%s' has versioning enabled and the versioning option is false: "
               "suspending it (existing object versions are kept; a bucket never returns to "
               "unversioned)",
               op->name);
    set_phase(op, PHASE_WRITE);
    op->sending = 1;
    for (size_t s = 0; s < N_SETTINGS; s++) {
        if (!(op->change.writes & (1u << s)))
            continue;
        op->reqs[s].setting = (int)s;
        op->reqs[s].write = 1;
        /* S3 requires Content-MD5 on these configuration PUTs. */
        send_request(op, &op->reqs[s], "PUT", settings[s].subresource, bodies[s],
                     OL_AWS_CONTENT_MD5, settings[s].put);
    }
    op->sending = 0;
    if (op->inflight == 0)
        finish_refused(op);
}

/* The starts of the phases return 0, or a negative code when the host refused every
 * request (nothing is in flight; op->failure says why). */
static int start_head(bucket_op *op) {
    set_phase(op, PHASE_HEAD);
    op->single.setting = -1;
    send_request(op, &op->single, "HEAD", NULL, NULL, 0, "HeadBucket");
    return op->inflight > 0 ? 0 : op->refused;
}

static int start_create(bucket_op *op) {
    char *body = NULL;
    if (body_create_bucket(op->region, &body) < 0)
        return OL_ENOMEM;
    op->create_tried = 1;
    set_phase(op, PHASE_CREATE);
    op->single.setting = -1;
    send_request(op, &op->single, "PUT", NULL, body, 0, "CreateBucket");
    return op->inflight > 0 ? 0 : op->refused;
}

static int start_observe(bucket_op *op) {
    set_phase(op, PHASE_OBSERVE);
    observed_free(op->conf->host, &op->seen);
    op->gone = 0;
    op->sending = 1;
    for (size_t s = 0; s < N_SETTINGS; s++) {
        op->reqs[s].setting = (int)s;
        op->reqs[s].write = 0;
        send_request(op, &op->reqs[s], "GET", settings[s].subresource, NULL, 0, settings[s].get);
    }
    op->sending = 0;
    return op->inflight > 0 ? 0 : op->refused;
}

static void create(bucket_op *op) {
    int rc = start_create(op);
    if (rc == OL_ENOMEM && op->failure == NULL)
        finish(op, OL_OUTCOME_FAILED, "out of memory");
    else if (rc != 0)
        finish_refused(op);
}

static void observe(bucket_op *op) {
    if (start_observe(op) != 0)
        finish_refused(op);
}

/* Every request of the phase has answered. */
static void phase_complete(bucket_op *op) {
    if (op->failure != NULL) {
        finish_refused(op);
        return;
    }
    if (op->phase == PHASE_WRITE) {
        succeed(op);
        return;
    }
    if (!op->gone) {
        act(op);
        return;
    }
    if (op->planning) {
        finish(op, OL_OUTCOME_CREATED, "would create the bucket");
        return;
    }
    if (op->create_tried) {
        finish_failed(
            op, op->conf->host->format(
                    "bucket '%s' was deleted while opsline was converging it; rerun", op->name));
        return;
    }
    /* The journal knew the bucket, but it is gone (deleted outside opsline): create it. */
    observed_free(op->conf->host, &op->seen);
    op->conf->host->log(op->conf->stage, op->item, OL_LOG_INFO,
                        "bucket '%s' is recorded in the journal but no longer exists; "
                        "creating it",
                        op->name);
    create(op);
}

static void on_head(bucket_op *op, const ol_aws_response *res) {
    const ol_host *h = op->conf->host;
    if (op->planning && res->result == 0) {
        observe(op); /* nothing journaled: plan writes nothing */
        return;
    }
    if (op->planning) {
        int absent = res->result == OL_EAWS && res->status == 404;
        if (absent)
            h->report_fact(op->conf->stage, op->item, "bucket", "absent");
        if (absent)
            finish(op, OL_OUTCOME_CREATED, "would create the bucket");
        else
            finish_failed(op, h->aws_reason("HeadBucket", res));
        return;
    }
    if (res->result == 0) {
        if (op->create_tried)
            h->log(op->conf->stage, op->item, OL_LOG_INFO,
                   "bucket '%s' already exists in another region than %s; converging it there",
                   op->name, op->region != NULL ? op->region : "us-east-1");
        h->free(op->failure); /* CreateBucket's refusal, explained */
        op->failure = NULL;
        record(op, "bucket_seen");
        observe(op);
        return;
    }
    if (op->create_tried) {
        finish_refused(op); /* CreateBucket's own error is the one to report */
        return;
    }
    /* 404: no such bucket. 403: it exists but this account may not see it; CreateBucket
     * then tells BucketAlreadyExists (someone else's) from AccessDenied. */
    if (res->result == OL_EAWS && (res->status == 404 || res->status == 403)) {
        create(op);
        return;
    }
    finish_failed(op, op->conf->host->aws_reason("HeadBucket", res));
}

static void on_create(bucket_op *op, const ol_aws_response *res) {
    const char *code = res->error_code != NULL ? res->error_code : "";
    if (res->result == 0) {
        op->created = 1;
        record(op, "bucket_created");
        observed_new(&op->seen);
        act(op);
    } else if (res->result == OL_EAWS && strcmp(code, "BucketAlreadyOwnedByYou") == 0) {
        record(op, "bucket_seen"); /* made by an earlier run or by hand: converge it */
        observe(op);
    } else if (res->result == OL_EAWS && strcmp(code, "IllegalLocationConstraintException") == 0) {
        /* The request went to another region's endpoint, which happens when the name is
         * already a bucket there (S3 redirected us) or when the endpoint is wrong: ask
         * HeadBucket, which tells the two apart. */
        note_aws_error(op, "CreateBucket", res);
        if (start_head(op) != 0)
            finish_refused(op);
    } else if (res->result == OL_EAWS && strcmp(code, "BucketAlreadyExists") == 0) {
        finish_failed(op, op->conf->host->format(
                              "CreateBucket: bucket name '%s' is taken by another AWS account; "
                              "S3 names are global: choose another product name "
                              "(BucketAlreadyExists, HTTP %ld, request id %s)",
                              op->name, res->status,
                              res->request_id != NULL ? res->request_id : "none"));
    } else {
        finish_failed(op, op->conf->host->aws_reason("CreateBucket", res));
    }
}

/* HeadBucket or CreateBucket answered: the only request in flight. */
static void on_single(void *arg, const ol_aws_response *res) {
    bucket_req *req = arg;
    bucket_op *op = req->op;
    op->inflight--;
    if (op->phase == PHASE_HEAD)
        on_head(op, res);
    else
        on_create(op, res);
}

/* A GET answered: the setting is absent (its "no such configuration" code), present (the
 * parsed answer), the bucket is gone, or the phase fails. */
static void on_read(bucket_op *op, bucket_setting s, const ol_aws_response *res) {
    const ol_host *h = op->conf->host;
    const char *code = res->result == OL_EAWS && res->error_code != NULL ? res->error_code : "";
    if (strcmp(code, "NoSuchBucket") == 0) {
        op->gone = 1;
    } else if (settings[s].missing != NULL && strcmp(code, settings[s].missing) == 0) {
        op->seen.state[s] = SEEN_ABSENT;
    } else if (res->result != 0) {
        note_aws_error(op, settings[s].get, res);
    } else if ((op->seen.doc[s] = h->xml_parse(res->body, res->body_len)) != NULL) {
        op->seen.state[s] = SEEN_PRESENT;
    } else {
        note_failure(op, h->format("%s: S3 sent an answer that is not valid XML (HTTP %ld, "
                                   "request id %s)",
                                   settings[s].get, res->status,
                                   res->request_id != NULL ? res->request_id : "none"));
    }
}

static void on_setting(void *arg, const ol_aws_response *res) {
    bucket_req *req = arg;
    bucket_op *op = req->op;
    op->inflight--;
    if (!req->write)
        on_read(op, (bucket_setting)req->setting, res);
    else if (res->result != 0)
        note_aws_error(op, settings[req->setting].put, res);
    if (op->inflight == 0 && !op->sending)
        phase_complete(op);
}

/* The wanted state for op's item. Returns 0 or OL_ENOMEM. */
static int want_init(bucket_op *op) {
    const bucket_conf *c = op->conf;
    const ol_host *h = c->host;
    bucket_want *w = &op->want;
    w->block_public = c->block_public;
    w->encryption = c->encryption;
    w->kms_key_id = c->kms_key_id;
    w->versioning = c->versioning;
    w->log_bucket = c->log_bucket;
    w->log_prefix =
        c->log_prefix != NULL ? h->format("%s", c->log_prefix) : h->format("%s/", op->name);
    w->tags_exact = c->tags_managed;
    if (w->log_prefix == NULL)
        return OL_ENOMEM;
    return owner_merge(h, op->item, c->tags.items, c->tags.n, &w->tags, &w->n_tags);
}

/* ---------------------------------------------------------------------------------------
 * Plugin entry points.
 * ------------------------------------------------------------------------------------- */

/* Tag rules from the S3 User Guide ("Categorizing your storage using tags") and the Tagging
 * API: at most 50, keys 1-128 characters, values up to 256, the aws: prefix is AWS's. */
static int check_tags(ol_stage *stage, const ol_host *h, const ol_kv *tags, size_t n) {
    if (n > MAX_TAGS - OWNER_N_TAGS) {
        h->log(stage, NULL, OL_LOG_ERROR,
               "option tags: %zu tags given; S3 allows at most %d "
               "per bucket and opsline adds its %d ownership tags. Remove some.",
               n, MAX_TAGS, OWNER_N_TAGS);
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
    int rc = owner_check_option(stage, h, c->tags.items, c->tags.n);
    return rc == 0 ? check_tags(stage, h, c->tags.items, c->tags.n) : rc;
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

/* A new op for the item with its wanted state, or NULL when out of memory. */
static bucket_op *op_new(const bucket_conf *c, ol_item *item) {
    bucket_op *op = calloc(1, sizeof(*op));
    if (op == NULL)
        return NULL;
    op->conf = c;
    op->item = item;
    op->name = c->host->item_name(item);
    op->region = c->host->item_region(item);
    if (want_init(op) != 0) {
        c->host->free(op->want.log_prefix);
        free(op->want.tags);
        free(op);
        return NULL;
    }
    return op;
}

/* The first request could not be sent: nothing in flight, no done; returns rc. */
static int op_discard(bucket_op *op, int rc) {
    const ol_host *h = op->conf->host;
    h->free(op->failure);
    h->free(op->want.log_prefix);
    free(op->want.tags);
    free(op->single.body);
    free(op);
    return rc;
}

static int bucket_apply(ol_stage *stage, ol_item *item, void *state) {
    (void)stage;
    bucket_op *op = op_new(state, item);
    if (op == NULL)
        return OL_ENOMEM;
    int rc;
    if (bucket_known(op))
        rc = start_observe(op);
    else if (op->region == NULL || strcmp(op->region, "us-east-1") == 0)
        /* S3 API Reference, CreateBucket: in us-east-1 a bucket you already own answers
         * 200 OK, not BucketAlreadyOwnedByYou, so a success there does not prove the bucket
         * is new: ask HeadBucket first (one read more, in that region only). */
        rc = start_head(op);
    else
        rc = start_create(op);
    return rc != 0 ? op_discard(op, rc) : 0;
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
     "Bucket tags (key: value); when set, the bucket's tag set is made exactly this plus the "
     "ownership tags; unset: other tags are left alone",
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

/* Shortcuts: keys of a products-file line (docs/products-file.md). */
static const ol_cli_flag bucket_cli_flags[] = {
    {"tags", "tags"}, {"versioning", "versioning"}, {NULL, NULL}};

/* The lifecycle commands live in bucket_lifecycle.c. */
static int bucket_destroy(ol_stage *stage, ol_item *item, void *state) {
    return bucket_lifecycle_destroy(((const bucket_conf *)state)->host, stage, item);
}

/* plan and status: the same observe and bucket_diff as apply, starting with HeadBucket
 * (never CreateBucket) and ending with the differences named instead of written. */
static int bucket_plan(ol_stage *stage, ol_item *item, void *state) {
    (void)stage;
    bucket_op *op = op_new(state, item);
    if (op == NULL)
        return OL_ENOMEM;
    op->planning = 1;
    int rc = start_head(op);
    return rc != 0 ? op_discard(op, rc) : 0;
}

static void plan_report(bucket_op *op) {
    const ol_host *h = op->conf->host;
    char reason[1024];
    int rc = bucket_diff(h, &op->want, &op->seen, &op->change);
    if (rc != 0) {
        finish(op, OL_OUTCOME_FAILED, "out of memory");
        return;
    }
    bucket_plan_diff d = {
        .writes_pab = (op->change.writes >> SET_PAB) & 1u,
        .writes_enc = (op->change.writes >> SET_ENC) & 1u,
        .writes_ver = (op->change.writes >> SET_VER) & 1u,
        .writes_log = (op->change.writes >> SET_LOG) & 1u,
        .writes_tags = (op->change.writes >> SET_TAGS) & 1u,
        .pab_doc = op->seen.doc[SET_PAB],
        .enc_doc = op->seen.doc[SET_ENC],
        .tags_doc = op->seen.doc[SET_TAGS],
        .block_public = op->want.block_public,
        .encryption = op->want.encryption,
        .versioning = op->change.versioning,
        .log_bucket = op->want.log_bucket,
        .tags = op->change.tags,
        .n_tags = op->change.n_tags,
    };
    int drift = bucket_lifecycle_explain(h, op->conf->stage, op->item, &d, reason, sizeof(reason));
    finish(op, drift ? OL_OUTCOME_UPDATED : OL_OUTCOME_UNCHANGED, drift ? reason : NULL);
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
    .cli_flags = bucket_cli_flags,
    .plan = bucket_plan,
    .destroy = bucket_destroy,
};

OL_EXPORT const ol_plugin *opsline_plugin(void) {
    return &bucket_plugin;
}
