/* opsline plugin SDK: the only header a stage author needs.
 *
 * A stage is a shared object that exports one symbol, `opsline_plugin`, returning a static
 * descriptor (ol_plugin). The host checks the descriptor's ABI version, validates the
 * stage's declared options, and calls init once per pipeline, apply once per item, and
 * fini once at teardown. Everything a stage may do (read options, read and write the item
 * bag, send AWS requests, log, write private files, record to the journal, complete) goes
 * through the host API table (ol_host) handed to init.
 *
 * Rules that hold everywhere:
 * - Functions return 0 or a negative OL_E* code; host->strerror(code) names it.
 * - A function that takes a callback and returns an error never calls that callback.
 * - Pointers the host passes in are borrowed for the duration of the call unless stated.
 * - Handles (ol_item, ol_stage, ol_xml) are opaque; never look inside.
 * - The ABI is append-only: new host functions and descriptor fields are added at the end
 *   and announced by a minor version bump. Check `struct_size` before using a late field.
 */
#ifndef OPSLINE_OPSLINE_H
#define OPSLINE_OPSLINE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define OL_ABI_MAJOR 1
#define OL_ABI_MINOR 0

#if defined(__GNUC__)
#define OL_EXPORT __attribute__((visibility("default")))
#define OL_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define OL_EXPORT
#define OL_PRINTF(a, b)
#endif

/* Error codes. Every code has a text: host->strerror(code). */
enum {
    OL_OK = 0,
    OL_EINVAL = -1,    /* invalid argument or input */
    OL_ENOMEM = -2,    /* out of memory */
    OL_EIO = -3,       /* local I/O failed (file, fsync, rename) */
    OL_ENOENT = -4,    /* no such thing (option, bag key, profile, file) */
    OL_EEXIST = -5,    /* already exists */
    OL_EAWS = -6,      /* AWS answered with an error (see the response) */
    OL_ENET = -7,      /* no usable answer: connection refused, reset, truncated */
    OL_ETIMEDOUT = -8, /* the request timed out */
    OL_ECANCELED = -9, /* the run was interrupted */
    OL_EABI = -10,     /* plugin ABI mismatch */
    OL_ECONFIG = -11,  /* configuration error */
    OL_ECREDS = -12,   /* no usable credentials */
    OL_EQUOTA = -13,   /* retry quota exhausted: the endpoint keeps failing */
    OL_ERANGE = -14,   /* value out of range */
    OL_EUNKNOWN = -15, /* outcome of a non-idempotent request is unknown */
    OL_ESECRET = -16,  /* refused: would expose a secret */
    OL_ELAST = -16
};

/* Opaque handles. */
typedef struct ol_item ol_item;   /* one unit of work: product x environment */
typedef struct ol_stage ol_stage; /* one stage instance in a pipeline */
typedef struct ol_xml ol_xml;     /* a parsed XML document */

/* A name/value pair. Both strings are borrowed. */
typedef struct ol_kv {
    const char *name;
    const char *value;
} ol_kv;

/* Well-known item bag keys set by the bundled stages. */
#define OL_KEY_BUCKET_NAME "bucket.name"                 /* set by bucket */
#define OL_KEY_BUCKET_ARN "bucket.arn"                   /* set by bucket */
#define OL_KEY_IAM_USER "iam.user"                       /* set by iam */
#define OL_KEY_IAM_USER_ARN "iam.user_arn"               /* set by iam */
#define OL_KEY_ACCESS_KEY_ID "iam.access_key_id"         /* set by iam */
#define OL_KEY_SECRET_ACCESS_KEY "iam.secret_access_key" /* secret; only when a key was created */

/* ---------------------------------------------------------------------------------------
 * Stage outcomes and log levels
 * ------------------------------------------------------------------------------------- */
typedef enum ol_outcome {
    OL_OUTCOME_CREATED = 1,
    OL_OUTCOME_UPDATED = 2,
    OL_OUTCOME_UNCHANGED = 3,
    OL_OUTCOME_FAILED = 4
} ol_outcome;

typedef enum ol_log_level {
    OL_LOG_ERROR = 0,
    OL_LOG_WARN = 1,
    OL_LOG_INFO = 2,
    OL_LOG_DEBUG = 3 /* shown with -v */
} ol_log_level;

/* ---------------------------------------------------------------------------------------
 * Options a stage declares. The host parses the pipeline file against these, applies
 * defaults, rejects unknown names and ill-typed values before any request, and prints them
 * in `opsline plugins show NAME`.
 * ------------------------------------------------------------------------------------- */
typedef enum ol_option_type {
    OL_OPT_STRING = 1,
    OL_OPT_BOOL = 2,
    OL_OPT_INT = 3,
    OL_OPT_LIST = 4,  /* list of strings (JSON array, or comma-separated on the CLI) */
    OL_OPT_OBJECT = 5 /* string map (JSON object of strings), e.g. tags */
} ol_option_type;

typedef struct ol_option_def {
    const char *name;
    ol_option_type type;
    const char *default_value; /* textual default ("true", "42", "a,b", "k=v,k2=v2"); NULL: unset */
    const char *help;
    int sensitive; /* nonzero: value is never printed or logged */
} ol_option_def;

/* ---------------------------------------------------------------------------------------
 * AWS requests through the host's client: signed (SigV4), retried (standard or adaptive
 * mode), redirected across S3 regions, and throttled by the host. A stage never retries
 * by hand.
 * ------------------------------------------------------------------------------------- */
enum {
    /* Add Content-MD5 of the body (S3 configuration PUTs that require it). */
    OL_AWS_CONTENT_MD5 = 1u << 0,
    /* The request is not idempotent (e.g. IAM CreateAccessKey): when its outcome is unknown
     * (timeout, reset, truncated answer, or a 500/502/504 after which AWS may have acted) it
     * is NOT resent; the callback receives result OL_EUNKNOWN and the stage must reconcile.
     * Throttling is still retried because AWS did not perform the action. */
    OL_AWS_NOT_IDEMPOTENT = 1u << 1
};

typedef struct ol_aws_request {
    const char *service; /* "s3", "iam", "sts", "secretsmanager", ... */
    const char *method;  /* "GET", "PUT", "POST", "DELETE", "HEAD" */
    const char *bucket;  /* S3: bucket name, or NULL */
    const char *key;     /* S3: object key (raw, not encoded), or NULL */
    const char *region;  /* NULL: the item's region */
    /* Raw (unencoded) parameters. For POST with body == NULL they are sent as an
     * application/x-www-form-urlencoded body (Query APIs such as IAM and STS: Action=...,
     * Version=...); otherwise as the URL query string (S3 sub-resources: "encryption" with
     * an empty value gives "?encryption="). */
    const ol_kv *params;
    size_t n_params;
    const ol_kv *headers; /* extra headers (e.g. X-Amz-Target, Content-Type) */
    size_t n_headers;
    const char *body; /* borrowed until the callback has run; may be NULL */
    size_t body_len;
    unsigned flags; /* OL_AWS_* */
    /* Eventual consistency: error codes (NULL-terminated) to retry for up to
     * consistency_ms milliseconds, e.g. IAM's "NoSuchEntity" right after CreateUser. */
    const char *const *consistency_codes;
    unsigned consistency_ms;
} ol_aws_request;

typedef struct ol_aws_response {
    /* 0: HTTP 2xx. OL_EAWS: AWS answered an error (status, error_code, error_message,
     * request_id set). OL_ENET / OL_ETIMEDOUT: no usable answer after all attempts.
     * OL_EQUOTA: retries stopped by the retry quota. OL_EUNKNOWN: see
     * OL_AWS_NOT_IDEMPOTENT. OL_ECANCELED: the run was interrupted. */
    int result;
    long status;      /* HTTP status, 0 when there was no answer */
    const char *body; /* NUL-terminated for convenience; body_len excludes the NUL */
    size_t body_len;
    const char *error_code;    /* e.g. "NoSuchEntity"; NULL on success */
    const char *error_message; /* AWS's message, or a transport error text */
    const char *request_id;    /* x-amz-request-id / RequestId, or NULL */
    unsigned attempts;         /* how many times the request was sent */
} ol_aws_response;

/* The response and all its strings are borrowed for the duration of the callback. */
typedef void (*ol_aws_cb)(void *arg, const ol_aws_response *res);

/* ---------------------------------------------------------------------------------------
 * The host API table. Size-prefixed and append-only: never reorder, only append.
 * ------------------------------------------------------------------------------------- */
enum {
    OL_BAG_SECRET = 1u << 0 /* value is a secret: never logged, journaled, or reported */
};

typedef struct ol_host {
    uint32_t struct_size; /* sizeof(ol_host) of the host that built it */
    uint32_t abi_major;
    uint32_t abi_minor;

    /* Static text for an OL_E* code. */
    const char *(*strerror)(int code);

    /* Log a line tagged with the stage and item (item may be NULL). Never pass secrets:
     * the host also masks every value flagged OL_BAG_SECRET it finds in the text. */
    void (*log)(ol_stage *stage, const ol_item *item, ol_log_level level, const char *fmt, ...)
        OL_PRINTF(4, 5);

    /* Options, already validated against the stage's declarations. Strings are borrowed and
     * stay valid until fini. An option with no value and no default reads as NULL / 0. */
    const char *(*opt_string)(ol_stage *stage, const char *name);
    int (*opt_bool)(ol_stage *stage, const char *name);
    long long (*opt_int)(ol_stage *stage, const char *name);
    /* List (OL_OPT_LIST) or map (OL_OPT_OBJECT, as name/value pairs) options: returns the
     * count and sets *out to a borrowed array valid until fini. */
    size_t (*opt_list)(ol_stage *stage, const char *name, const char *const **out);
    size_t (*opt_map)(ol_stage *stage, const char *name, const ol_kv **out);
    /* Nonzero when the user set the option explicitly (not only by default). */
    int (*opt_is_set)(ol_stage *stage, const char *name);

    /* Item identity. Borrowed, valid until the item ends. */
    const char *(*item_product)(const ol_item *item);
    const char *(*item_environment)(const ol_item *item);
    const char *(*item_name)(const ol_item *item); /* "<product>-<environment>" */
    const char *(*item_region)(const ol_item *item);

    /* The item bag. get returns a borrowed string valid until the item ends or the key is
     * set again, or NULL. set copies key and value; OL_BAG_SECRET marks a secret, which the
     * host wipes from memory when the item ends. */
    const char *(*item_get)(const ol_item *item, const char *key);
    int (*item_set)(ol_item *item, const char *key, const char *value, unsigned flags);

    /* Send an AWS request on behalf of the item. Returns 0 and later calls cb exactly once,
     * or returns a negative code and never calls cb. The request struct and its strings
     * are copied; body is borrowed until cb has run. */
    int (*aws_send)(ol_item *item, const ol_aws_request *req, ol_aws_cb cb, void *arg);

    /* XML helpers over AWS responses. Paths are element names separated by '/', matched
     * from the document root, namespaces ignored ("ListAccessKeysResult/AccessKeyMetadata/
     * member/AccessKeyId" under the root "ListAccessKeysResponse" is written
     * "ListAccessKeysResponse/ListAccessKeysResult/AccessKeyMetadata/member/AccessKeyId").
     * xml_text returns the index-th match's text (borrowed until xml_free) or NULL. */
    ol_xml *(*xml_parse)(const char *buf, size_t len);
    size_t (*xml_count)(const ol_xml *doc, const char *path);
    const char *(*xml_text)(const ol_xml *doc, const char *path, size_t index);
    void (*xml_free)(ol_xml *doc);

    /* Write a file readable only by its owner (0600), atomically: temp file in the same
     * directory, fsync, rename, fsync of the directory. Parent directories are created
     * 0700. On error the old file, if any, is untouched. */
    int (*write_private_file)(const char *path, const char *data, size_t len);

    /* The journal: an append-only, fsync'd record per item. Never give it secrets.
     * append records event (e.g. "access_key_created") with an optional resource id;
     * count returns how many records of this item match event and id (id NULL: any). */
    int (*journal_append)(ol_item *item, ol_stage *stage, const char *event, const char *id);
    size_t (*journal_count)(const ol_item *item, const char *event, const char *id);

    /* A secret-store stage calls this after it durably stored the item's
     * iam.secret_access_key; the host journals "secret_stored" for iam.access_key_id with
     * `where` (a path or store name, not the secret). */
    int (*secret_stored)(ol_item *item, ol_stage *stage, const char *where);

    /* Complete apply for this item: exactly once per apply that returned 0. reason is a
     * one-line text for the user (required for OL_OUTCOME_FAILED, optional otherwise). */
    void (*done)(ol_stage *stage, ol_item *item, ol_outcome outcome, const char *reason);

    /* Test hook: when OPSLINE_TEST_KILL_AT names this point, the host dies on the spot
     * (SIGKILL), the way a crash or power loss would. A no-op otherwise. */
    void (*checkpoint)(const ol_item *item, const char *point);
} ol_host;

/* ---------------------------------------------------------------------------------------
 * The plugin descriptor, returned by the single exported entry point.
 * ------------------------------------------------------------------------------------- */
typedef struct ol_plugin {
    uint32_t abi_major;   /* OL_ABI_MAJOR the plugin was built with */
    uint32_t abi_minor;   /* OL_ABI_MINOR the plugin was built with */
    uint32_t struct_size; /* sizeof(ol_plugin) the plugin was built with */

    const char *name;         /* stage name: [a-z0-9_-]+, unique across loaded plugins */
    const char *version;      /* the plugin's own version */
    const char *description;  /* one line */
    const char *const *needs; /* NULL-terminated stage names this stage runs after, or NULL */
    const ol_option_def *options;
    size_t n_options;

    /* Called once before any item. Stores host (valid until fini) and returns per-stage
     * state in *state. A negative return stops the run before any request with the
     * message logged by the stage (e.g. a bad option value). May be NULL. */
    int (*init)(ol_stage *stage, const ol_host *host, void **state);

    /* Called for every item before any request is sent: reject bad input (for example a
     * policy that would exceed a size limit for this item's names). Returns 0, or a
     * negative code after logging why. May be NULL. */
    int (*validate)(ol_stage *stage, const ol_item *item, void *state);

    /* Converge the item. Returns 0 and later calls host->done exactly once, or returns a
     * negative code (host->done is then never called and the stage counts as failed). */
    int (*apply)(ol_stage *stage, ol_item *item, void *state);

    /* Release state. May be NULL. */
    void (*fini)(void *state);
} ol_plugin;

/* The one symbol a plugin exports. */
#define OL_PLUGIN_ENTRY "opsline_plugin"
typedef const ol_plugin *(*ol_plugin_entry_fn)(void);

#ifdef __cplusplus
}
#endif
#endif /* OPSLINE_OPSLINE_H */
