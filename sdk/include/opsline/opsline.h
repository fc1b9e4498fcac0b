/* opsline plugin SDK: the only header a stage author needs.
 *
 * A stage is a shared object that exports one symbol, `opsline_plugin`, returning a static
 * descriptor (ol_plugin). The host checks the descriptor's ABI version, validates the
 * stage's declared options, and calls init once per pipeline, apply once per item, and
 * fini once at teardown. The other commands (plan, status, destroy, rotate: ol_mode) call
 * the stage's plan, destroy, rotate and rotate_commit instead of apply (ABI 2.1). Everything a
 * stage may do (read options, read and write the item bag, send AWS requests, log, write private
 * files, record to the journal, run programs, do blocking work off the loop, take timers and locks,
 * complete) goes through the host API table (ol_host) handed to init.
 *
 * A secret store is a stage with store operations (ol_store_ops: put, get, del) instead of
 * apply: the host runs it after the stage that creates access keys, records "stored" per
 * store, fills a store added later from another store that holds the secret, and refuses
 * a pipeline that would create keys and store them nowhere.
 *
 * Rules that hold everywhere:
 * - Functions return 0 or a negative OL_E* code; host->strerror(code) names it.
 * - A function that takes a callback and returns an error never calls that callback.
 * - Pointers the host passes in are borrowed for the duration of the call unless stated.
 * - Handles (ol_item, ol_stage, ol_xml) are opaque; never look inside.
 * - The stage runs on the host's single event loop: it never blocks (no sleep, no waitpid,
 *   no fsync, no network) and never retries AWS requests by hand. Blocking work goes to
 *   host->work_queue, programs to host->proc_run.
 * - Every struct that crosses the ABI starts with (or carries) its size: the descriptor,
 *   the option table's element size (option_size), ol_aws_request, ol_aws_response,
 *   ol_proc_spec, ol_proc_result, ol_secret, ol_store_ops. The ABI is append-only within
 *   a major version: new host functions and fields are added at the end and announced by a
 *   minor bump. Check `struct_size` before using a late field.
 */
#ifndef OPSLINE_OPSLINE_H
#define OPSLINE_OPSLINE_H

#include <stddef.h> /* offsetof, size_t */
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define OL_ABI_MAJOR 2
#define OL_ABI_MINOR 2

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
/* Set by iam to "true" when it created the user in this run (a new user has no policy yet). */
#define OL_KEY_IAM_USER_CREATED "iam.user_created"

/* ---------------------------------------------------------------------------------------
 * Stage outcomes and log levels
 * ------------------------------------------------------------------------------------- */
typedef enum ol_outcome {
    OL_OUTCOME_CREATED = 1,
    OL_OUTCOME_UPDATED = 2,
    OL_OUTCOME_UNCHANGED = 3,
    OL_OUTCOME_FAILED = 4,
    /* 2.1: destroy's outcomes. */
    OL_OUTCOME_DELETED = 5, /* the stage removed what it owns */
    OL_OUTCOME_ABSENT = 6   /* there was nothing to remove */
} ol_outcome;

/* 2.1: what the run does with every item (host->run_mode). Each command runs the same
 * pipeline, stores and journal; a stage implements the ones it can (ol_plugin). */
typedef enum ol_mode {
    OL_MODE_APPLY = 0,   /* create or converge (ol_plugin.apply) */
    OL_MODE_PLAN = 1,    /* read only: what apply would do (ol_plugin.plan) */
    OL_MODE_DESTROY = 2, /* remove what opsline created (ol_plugin.destroy) */
    OL_MODE_ROTATE = 3,  /* replace the access key (ol_plugin.rotate, then rotate_commit) */
    OL_MODE_STATUS = 4   /* read only: what exists and its drift (ol_plugin.plan) */
} ol_mode;

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

enum {
    OL_OPT_SENSITIVE = 1u << 0, /* the value is never printed or logged */
    OL_OPT_BIND = 1u << 1       /* `offset` is valid: host->opt_bind fills that field */
};

/* A bound option's field in the stage's own struct (host->opt_bind), by type:
 * OL_OPT_STRING: const char *; OL_OPT_BOOL: int; OL_OPT_INT: long long;
 * OL_OPT_LIST: ol_list; OL_OPT_OBJECT: ol_map. Borrowed values stay valid until fini. */
typedef struct ol_list {
    const char *const *items;
    size_t n;
} ol_list;

typedef struct ol_map {
    const ol_kv *items;
    size_t n;
} ol_map;

/* Declare one option bound to a field: OL_BIND(my_state, path) in an ol_option_def. */
#define OL_BIND(type, field) (OL_OPT_BIND), offsetof(type, field)

typedef struct ol_option_def {
    const char *name;
    ol_option_type type;
    const char *default_value; /* textual default ("true", "42", "a,b", "k=v,k2=v2"); NULL: unset */
    const char *help;
    unsigned flags; /* OL_OPT_SENSITIVE, OL_OPT_BIND */
    size_t offset;  /* with OL_OPT_BIND: offsetof(stage struct, field) */
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
    uint32_t struct_size; /* sizeof(ol_aws_request): set it, the host refuses 0 */
    const char *service;  /* "s3", "iam", "sts", "secretsmanager", ... */
    const char *method;   /* "GET", "PUT", "POST", "DELETE", "HEAD" */
    const char *bucket;   /* S3: bucket name, or NULL */
    const char *key;      /* S3: object key (raw, not encoded), or NULL */
    const char *region;   /* NULL: the item's region */
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
    /* ---- 2.1 ---- */
    /* Non-NULL: sign with this access key instead of the run's credentials, without a
     * session token (proving that a stored key works). Both borrowed for the call; the
     * host never logs the secret. */
    const char *access_key_id;
    const char *secret_access_key;
} ol_aws_request;

typedef struct ol_aws_response {
    uint32_t struct_size; /* sizeof(ol_aws_response) of the host */
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
 * Host services: what a stage uses instead of blocking the loop. Every one completes on
 * the loop, exactly once, unless the call that started it returned an error. Everything a
 * stage starts is tied to the stage (and item, when given): the host cancels what is still
 * running when the run ends or is stopped, and then still calls the completion, with
 * OL_ECANCELED, so the stage can free its state in one place.
 * ------------------------------------------------------------------------------------- */

/* A program to run (host->proc_run). Secrets go on stdin only: the host refuses
 * (OL_ESECRET) an argv or env entry that holds a secret of an item in progress. */
typedef struct ol_proc_spec {
    uint32_t struct_size;    /* sizeof(ol_proc_spec) */
    const char *const *argv; /* NULL-terminated; argv[0] is looked up in PATH */
    const char *const *env;  /* extra "NAME=value" entries (NULL-terminated) added to the
                                host's environment, or NULL */
    const char *cwd;         /* working directory, or NULL: the host's */
    const char *stdin_data;  /* fed to the program's stdin, then closed; borrowed until the
                                callback; may be NULL (stdin is then empty) */
    size_t stdin_len;
    size_t output_cap;   /* bytes kept of stdout and of stderr each; 0: 1 MiB. Output
                            beyond is read and dropped (the program never blocks). */
    unsigned timeout_ms; /* killed (SIGTERM, then SIGKILL 2 s later, whole process
                            group) after this; 0: 60 s */
} ol_proc_spec;

typedef struct ol_proc_result {
    uint32_t struct_size; /* sizeof(ol_proc_result) of the host */
    /* 0: the program ran and exited or was killed by a signal (see below). OL_ENOENT: the
     * program was not found. OL_ETIMEDOUT: killed after timeout_ms. OL_ECANCELED: killed
     * because the run was stopped. OL_EIO: could not be started. */
    int result;
    int exit_status; /* valid when result is 0 and term_signal is 0 */
    int term_signal; /* nonzero: killed by this signal */
    /* Captured output, NUL-terminated (len excludes the NUL). Borrowed for the callback;
     * the host wipes it afterwards, so stdout may hold a secret (e.g. a read-back). */
    const char *out;
    size_t out_len;
    const char *err;
    size_t err_len;
    int out_truncated, err_truncated;
} ol_proc_result;

typedef void (*ol_proc_cb)(void *arg, const ol_proc_result *res);

/* Off-loop work: work(arg) runs on a thread of the host's pool and may call only the
 * thread-safe host functions (format, free, wipe, read_private_file, write_private_file,
 * create_private_file);
 * after(arg, status) then runs on the loop with status 0, or
 * OL_ECANCELED when the run was stopped before work started (work then never runs). */
typedef void (*ol_work_fn)(void *arg);
typedef void (*ol_after_work_cb)(void *arg, int status);

/* ABI 2.2: host->journal_append_synced's callback, on the loop. status 0: the record is on
 * disk; OL_EIO: it could not be made durable; OL_ECANCELED: the stage stopped running
 * meanwhile (its time limit failed it). Do not send what the record guards unless 0. */
typedef void (*ol_synced_cb)(void *arg, int status);

typedef struct ol_timer ol_timer;
/* Timer callback, on the loop. status 0: it fired; OL_ECANCELED: the run ended first. */
typedef void (*ol_timer_cb)(void *arg, int status);

/* A held shared resource (host->lock_acquire). */
typedef struct ol_lock ol_lock;
/* Called on the loop once the caller holds the resource; release it with
 * host->lock_release, once (the handle is invalid afterwards). status OL_ECANCELED (lock
 * NULL): the run ended while waiting. */
typedef void (*ol_lock_cb)(void *arg, int status, ol_lock *lock);

/* ---------------------------------------------------------------------------------------
 * Secret stores
 * ------------------------------------------------------------------------------------- */

/* One item's access key as a store keeps it. All strings borrowed for the call that gets
 * them; secret_access_key is a secret: never log it, wipe your copies. */
typedef struct ol_secret {
    uint32_t struct_size; /* sizeof(ol_secret) of whoever filled it */
    const char *access_key_id;
    const char *secret_access_key;
    const char *region;
    const char *bucket;
    const char *user;
    const char *created; /* ISO 8601 UTC time the host learned the key, e.g. 2026-12-02T10:00:00Z */
} ol_secret;

/* The operations of a secret-store stage (ol_plugin.store). Each returns 0 and later
 * completes with host->store_done(stage, item, result, found, reason) exactly once, or
 * returns a negative code and never completes. A store may hold a put back until its next
 * flush (one unlock for a batch): the host calls flush when every item in progress waits
 * on stores, at intervals, and at the end of the run.
 * - put: store the item's key, replacing the item's entry (never a second entry for the
 *   same item). Complete with result 0 once it is durable.
 * - get: read the item's entry back. Complete with result 0 and `found` filled, or
 *   OL_ENOENT when the store holds no entry for the item, or another code.
 * - del: remove the item's entry; 0 also when there was none. May be NULL. */
enum {
    /* Reading an entry back is cheap (a local file): the host reads it on every run that
     * lists the user's keys instead of trusting the journal, so an entry removed or changed
     * by hand is restored (from another store's copy, without a new key). */
    OL_STORE_VERIFY = 1u << 0
};

typedef struct ol_store_ops {
    uint32_t struct_size; /* sizeof(ol_store_ops) */
    int (*put)(ol_stage *stage, ol_item *item, void *state, const ol_secret *secret);
    int (*get)(ol_stage *stage, ol_item *item, void *state);
    int (*del)(ol_stage *stage, ol_item *item, void *state);
    unsigned flags; /* OL_STORE_* */
} ol_store_ops;

/* host->secret_find completion: key_id is the user's key whose secret a configured store
 * holds (the bag then has iam.access_key_id and, when some store lacks it, the secret), or
 * NULL when no configured store can give one back. lost (n_lost of them, borrowed for the
 * call) are listed keys whose secret was stored only in configured stores that, read this
 * run, no longer hold it: their secret is gone, so they can be replaced. reason explains a
 * store that could not be read (NULL otherwise; nothing is called lost then). */
typedef void (*ol_find_cb)(void *arg, const char *key_id, const char *const *lost, size_t n_lost,
                           const char *reason);

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

    /* Complete apply for this item: exactly once per apply that returned 0. reason is a
     * one-line text for the user (required for OL_OUTCOME_FAILED, optional otherwise). */
    void (*done)(ol_stage *stage, ol_item *item, ol_outcome outcome, const char *reason);

    /* Test hook: when OPSLINE_TEST_KILL_AT names this point, the host dies on the spot
     * (SIGKILL), the way a crash or power loss would. A no-op otherwise. */
    void (*checkpoint)(const ol_item *item, const char *point);

    /* ---- 2.0: helpers every plugin needs --------------------------------------------- */

    /* printf into a new string; NULL when out of memory. Free with host->free. */
    char *(*format)(const char *fmt, ...)OL_PRINTF(1, 2);
    /* Free memory the host allocated for the plugin (format, read_private_file,
     * aws_reason, expand). */
    void (*free)(void *p);
    /* Overwrite n bytes in a way the compiler cannot elide (secrets, before free). */
    void (*wipe)(void *p, size_t n);
    /* Read a whole regular file (symlinks, FIFOs and devices refused; opened without
     * following the last link and without blocking) of at most max bytes. Returns 0 with
     * *out host-allocated and NUL-terminated (*len excludes the NUL; wipe it if it may hold
     * a secret), OL_ENOENT when absent, OL_ERANGE when larger than max, OL_EINVAL when not
     * a regular file, OL_EIO otherwise. */
    int (*read_private_file)(const char *path, size_t max, char **out, size_t *len);
    /* One line for a user about a failed AWS request: "<action> failed: <code>: <message>
     * (HTTP <status>, request id <id>)", control characters escaped. Host-allocated. */
    char *(*aws_reason)(const char *action, const ol_aws_response *res);
    /* Fill every OL_OPT_BIND option of the stage into the struct at base (see ol_list,
     * ol_map for list and object types). Values are borrowed until fini. */
    int (*opt_bind)(ol_stage *stage, void *base);
    /* Expand {product}, {environment}, {bucket}, {user}, {region} in tmpl for the item
     * ({bucket} and {user} are the item's bag values when set, else the item name). With
     * item NULL, stand-in values check the syntax only. Returns 0 and a host-allocated
     * *out, or OL_EINVAL with a host-allocated *why naming the bad placeholder. */
    int (*expand)(const ol_item *item, const char *tmpl, char **out, char **why);
    /* The stage's name (borrowed, valid until fini). */
    const char *(*stage_name)(const ol_stage *stage);

    /* ---- 2.0: services ----------------------------------------------------------------- */

    /* Run a program (see ol_proc_spec). item may be NULL for run-level work (flush).
     * Returns 0 and calls cb once, or a negative code (OL_ESECRET: a secret in argv/env). */
    int (*proc_run)(ol_stage *stage, const ol_item *item, const ol_proc_spec *spec, ol_proc_cb cb,
                    void *arg);
    /* Blocking work on the host's thread pool (see ol_work_fn). */
    int (*work_queue)(ol_stage *stage, ol_work_fn work, ol_after_work_cb after, void *arg);
    /* One-shot timer after ms milliseconds. *out (may be NULL) can be passed to timer_stop
     * until the callback has run; after timer_stop the callback never runs. */
    int (*timer_start)(ol_stage *stage, uint64_t ms, ol_timer_cb cb, void *arg, ol_timer **out);
    void (*timer_stop)(ol_timer *timer);
    /* Serialise use of a named resource (e.g. a file's absolute path) across items and
     * stages of the run: first come, first served. Holding a lock never blocks the loop. */
    int (*lock_acquire)(ol_stage *stage, const char *resource, ol_lock_cb cb, void *arg);
    void (*lock_release)(ol_lock *lock);

    /* ---- 2.0: secret stores ------------------------------------------------------------ */

    /* Complete a store operation (ol_store_ops). result 0 or a negative code; found: the
     * entry read by get (copied by the host); reason: one line naming what failed, required
     * when result is an error other than OL_ENOENT. */
    void (*store_done)(ol_stage *stage, ol_item *item, int result, const ol_secret *found,
                       const char *reason);
    /* Complete flush (ol_plugin.flush): after every put held back is completed. */
    void (*flush_done)(ol_stage *stage, int result, const char *reason);
    /* Complete prepare (ol_plugin.prepare). A failure stops the run before any request. */
    void (*prepare_done)(ol_stage *stage, int result, const char *reason);
    /* For a stage that creates keys (OL_STAGE_CREATES_SECRETS): which of the user's keys
     * (key_ids, n of them) has a secret that a configured store still holds? Stores known
     * (journal) to hold one are asked first; when every configured store holds it no
     * store is read. Returns 0 and calls cb once, or a negative code. */
    int (*secret_find)(ol_item *item, const char *const *key_ids, size_t n, ol_find_cb cb,
                       void *arg);

    /* journal_append, and the record is on disk (fsync'd) before this returns: for records
     * a crash must not lose, such as "about to create a key" before a non-idempotent
     * request. journal_append's records are flushed when the item ends. */
    int (*journal_append_durable)(ol_item *item, ol_stage *stage, const char *event,
                                  const char *id);

    /* AWS's naming rules, for a stage's validate: kind "s3-bucket" or "iam-user". Returns 0,
     * or OL_EINVAL with *why (host-allocated) naming what is wrong and a fix (a corrected
     * spelling when there is one), or OL_ENOENT for an unknown kind. */
    int (*aws_name_check)(const char *kind, const char *name, char **why);
    /* The same rules for an item's name "<product>-<environment>", for validate: the
     * message names the product and the environment and which of them to change. */
    int (*item_name_check)(const ol_item *item, const char *kind, char **why);

    /* ABI 2.1 (check host->abi_minor >= 1). For "did you mean": the candidate closest to
     * name by case-insensitive edit distance, or NULL when the closest is more than
     * max_distance edits away (0: a third of name's length plus one). */
    const char *(*suggest)(const char *name, const char *const *candidates, size_t n,
                           size_t max_distance);

    /* ---- 2.1: the lifecycle (plan, destroy, rotate, status) ----------------------------- */

    /* The command the run carries out for every item (ol_mode). */
    ol_mode (*run_mode)(const ol_stage *stage);
    /* Nonzero when the command line set this run-wide switch: "adopt" (destroy what opsline
     * did not create), "empty-bucket" (destroy a bucket that holds objects), "keep-old"
     * (rotate leaves the old key inactive). 0 for any other name. */
    int (*run_flag)(const ol_stage *stage, const char *name);
    /* journal_count, counting only the records written by the named stage (NULL: this
     * stage): "did the iam stage create this user?" */
    size_t (*journal_count_stage)(const ol_item *item, const ol_stage *stage,
                                  const char *stage_name, const char *event, const char *id);
    /* Add a fact about the item to the report (status, plan): a line "name: value" under
     * the stage, and a field of the stage's object in --json. Never a secret (masked and
     * refused like the journal). Both copied. */
    int (*report_fact)(ol_stage *stage, ol_item *item, const char *name, const char *value);
    /* Like secret_find for one key, but always reads the stores until one gives the
     * secret back (the bag then holds it): for a stage that must use the stored key (a
     * rotation's proof, verify). Same completion. */
    int (*secret_read)(ol_item *item, const char *key_id, ol_find_cb cb, void *arg);

    /* ---- 2.2 (check host->abi_minor >= 2) ------------------------------------------------ */

    /* journal_append_durable without blocking the loop: the record is written before this
     * returns (a killed process keeps it) and cb(arg, 0) runs once it is on disk, so do the
     * non-idempotent request from cb. The fsync runs on the host's thread pool and one fsync
     * serves every record written before it, so items that reach this point together share
     * it. Returns 0 and calls cb exactly once, never from within this call (OL_EIO when the
     * fsync failed, OL_ECANCELED when the stage's time limit failed it while the fsync ran);
     * or a negative code, and cb is never called: do not send (the record may have been
     * written, without being known on disk). */
    int (*journal_append_synced)(ol_item *item, ol_stage *stage, const char *event, const char *id,
                                 ol_synced_cb cb, void *arg);
    /* write_private_file that only creates: OL_EEXIST when path exists by the time the new
     * file would take its place (an atomic check: rename with RENAME_NOREPLACE, or link),
     * and then nothing is changed. Thread-safe. A store that merges into files other
     * processes may write too can read the file without a lock and, when it was absent,
     * create it this way with no lock held across the fsyncs; on OL_EEXIST (or when the
     * file was there) it takes its lock, reads again and merges with write_private_file,
     * also creating with this function when the file was absent under the lock. */
    int (*create_private_file)(const char *path, const char *data, size_t len);
} ol_host;

/* ---------------------------------------------------------------------------------------
 * The plugin descriptor, returned by the single exported entry point.
 * ------------------------------------------------------------------------------------- */
enum {
    /* The stage creates access keys and sets iam.access_key_id and the secret
     * iam.secret_access_key in the bag (the bundled iam stage). */
    OL_STAGE_CREATES_SECRETS = 1u << 0,
    /* ABI 2.1. The stage belongs to the default pipeline, used when neither --pipeline nor
     * the pipeline file names the stages; a secret store with this flag is a default store
     * (replaced by --secrets). `opsline plugins list` marks these stages. */
    OL_STAGE_DEFAULT = 1u << 1,
    /* ABI 2.1. The stage runs after every secret store of the pipeline (it uses the stored
     * key, e.g. the bundled verify stage). */
    OL_STAGE_AFTER_STORES = 1u << 2
};

/* One command-line flag mapped to an option (ol_plugin.cli_flags). */
typedef struct ol_cli_flag {
    const char *flag;   /* without the dashes, e.g. "env-file" */
    const char *option; /* a declared option of the stage */
} ol_cli_flag;

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
    size_t option_size; /* sizeof(ol_option_def): the host walks options with this stride */
    unsigned flags;     /* OL_STAGE_* */
    /* Longest one apply (or store operation) of this stage may take before the host fails
     * it, naming the stage and the item; 0: 300 s. The pipeline file's per-stage "timeout"
     * overrides it. Time the item's aws_send requests wait on AWS's rate (throttling) does
     * not count. */
    unsigned timeout_ms;

    /* Called once before any item. Stores host (valid until fini) and returns per-stage
     * state in *state. Read secrets from the environment here: after every init, the host
     * wipes secret-named variables (AWS credentials, *_PASSWORD, *_TOKEN, *_SECRET*,
     * *_PASSPHRASE) from its environment, so no child process can see them. A negative return stops
     * the run before any request with the message logged by the stage (e.g. a bad option value).
     * May be NULL. */
    int (*init)(ol_stage *stage, const ol_host *host, void **state);

    /* Called for every item before any request is sent: reject bad input (for example a
     * policy that would exceed a size limit for this item's names). Returns 0, or a
     * negative code after logging why. May be NULL. */
    int (*validate)(ol_stage *stage, const ol_item *item, void *state);

    /* Converge the item. Returns 0 and later calls host->done exactly once, or returns a
     * negative code (host->done is then never called and the stage counts as failed).
     * NULL for a secret store (store != NULL): the host drives its operations. */
    int (*apply)(ol_stage *stage, ol_item *item, void *state);

    /* Release state. May be NULL. */
    void (*fini)(void *state);

    /* Asynchronous check before the first request (a password manager that opens, a
     * program that exists). Returns 0 and later calls host->prepare_done once, or a
     * negative code after logging why. May be NULL. */
    int (*prepare)(ol_stage *stage, void *state);

    /* Run-level hook: make durable what the stage held back (see ol_store_ops). Returns 0
     * and later calls host->flush_done once, or a negative code. May be NULL. */
    int (*flush)(ol_stage *stage, void *state);

    /* Non-NULL: this stage is a secret store (see ol_store_ops). */
    const ol_store_ops *store;

    /* ABI 2.1. Shortcuts that set one of this stage's options, ending with {NULL, NULL};
     * NULL: none. With {"env-file", "path"}, `opsline apply --env-file V` sets option "path"
     * to V on this stage when it is in the pipeline, as `--set STAGE.path=V` would. On the
     * command line the host accepts the flags its `apply --help` lists (today: env-file);
     * every shortcut is also a key of a products-file line ({"product": "x", "tags": ...}),
     * for the stages that are not secret stores. A NULL option makes a boolean flag that
     * adds the stage to the pipeline ({"verify", NULL}: `opsline apply --verify`). */
    const ol_cli_flag *cli_flags;

    /* ---- 2.1: the lifecycle. Each may be NULL; same contract as apply (0 and one
     * host->done, or a negative code). Check struct_size before reading these. ------- */

    /* plan and status (OL_MODE_PLAN, OL_MODE_STATUS): read only, never a write request.
     * Complete with CREATED ("would create"), UPDATED ("would update"; reason names the
     * difference) or UNCHANGED; status also reports facts (host->report_fact). NULL: the
     * stage shows as "unknown". */
    int (*plan)(ol_stage *stage, ol_item *item, void *state);
    /* Remove what this stage created for the item: DELETED, ABSENT (nothing there, which
     * is success), or FAILED (e.g. a resource opsline did not create, without --adopt).
     * Stages are destroyed in the reverse order of their needs; stores delete the item's
     * entry after the key-creating stage removed the keys. NULL: nothing to remove. */
    int (*destroy)(ol_stage *stage, ol_item *item, void *state);
    /* rotate's first step: create the replacement (a new access key, in the bag like
     * apply). The stores then store it, later stages (verify) check it. NULL: the stage
     * takes no part (reported unchanged). */
    int (*rotate)(ol_stage *stage, ol_item *item, void *state);
    /* rotate's last step, once every stage of the item succeeded: retire what was
     * replaced (prove the new key, deactivate and delete the old). Completes with
     * host->done like apply; UPDATED reports "rotated". May be NULL. */
    int (*rotate_commit)(ol_stage *stage, ol_item *item, void *state);
} ol_plugin;

/* Fills options, n_options and option_size of an ol_plugin from a static array. */
#define OL_OPTIONS(array)                                                                          \
    .options = (array), .n_options = sizeof(array) / sizeof((array)[0]),                           \
    .option_size = sizeof(ol_option_def)

/* The one symbol a plugin exports. */
#define OL_PLUGIN_ENTRY "opsline_plugin"
typedef const ol_plugin *(*ol_plugin_entry_fn)(void);

#ifdef __cplusplus
}
#endif
#endif /* OPSLINE_OPSLINE_H */
