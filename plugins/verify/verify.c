/* verify: proves that the item's stored access key works, with the key itself: it puts,
 * gets and deletes a probe object in the item's bucket, then checks that a put into another
 * bucket is denied. A new key may not be accepted everywhere at once (IAM propagation), so
 * each request is retried for a bounded time while AWS answers with the errors of a key or
 * a permission not yet visible. A key that does not work fails the item, naming the action
 * (the permission) that was refused. Opt-in: `--verify`, or "verify" in the pipeline. In
 * rotate, it checks the new key before the old one is retired. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opsline/opsline.h"

#define PROBE_BODY "opsline verify probe\n"

typedef struct verify_conf {
    const ol_host *host;
    const char *probe_key;
    const char *denied_bucket;
    long long wait_ms;
} verify_conf;

typedef enum verify_step {
    V_READ,
    V_PUT,
    V_GET,
    V_DELETE,
    V_DENIED,
    V_CLEANUP,
    V_TIDY /* remove the probe after a failed GET, then fail */
} verify_step;

/* The S3 action each step needs, for the reason of a refusal (IAM's permission names). */
static const char *const step_actions[] = {[V_READ] = "",
                                           [V_PUT] = "s3:PutObject",
                                           [V_GET] = "s3:GetObject",
                                           [V_DELETE] = "s3:DeleteObject",
                                           [V_DENIED] = "s3:PutObject",
                                           [V_CLEANUP] = "s3:DeleteObject",
                                           [V_TIDY] = "s3:DeleteObject"};

typedef struct verify_run {
    const verify_conf *c;
    ol_stage *stage;
    ol_item *item;
    verify_step step;
    const char *bucket; /* borrowed from the bag or the item */
    char key_id[129];
    char *note; /* what the denied step found, host-allocated */
} verify_run;

static void verify_finish(verify_run *v, ol_outcome outcome, const char *reason) {
    const ol_host *h = v->c->host;
    h->done(v->stage, v->item, outcome, reason);
    h->free(v->note);
    free(v);
}

static void verify_fail(verify_run *v, const char *fmt, ...) OL_PRINTF(2, 3);
static void verify_fail(verify_run *v, const char *fmt, ...) {
    char reason[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    verify_finish(v, OL_OUTCOME_FAILED, reason);
}

static void on_answer(void *arg, const ol_aws_response *res);

/* Sends step's S3 request signed with the stored key. */
static void verify_send(verify_run *v, verify_step step) {
    /* Until the key and its policy have propagated, AWS answers as if they did not exist. */
    static const char *const not_yet[] = {"InvalidAccessKeyId", "AccessDenied",
                                          "SignatureDoesNotMatch", NULL};
    const ol_host *h = v->c->host;
    int put = step == V_PUT || step == V_DENIED;
    ol_aws_request req = {.struct_size = sizeof(ol_aws_request),
                          .service = "s3",
                          .method = put             ? "PUT"
                                    : step == V_GET ? "GET"
                                                    : "DELETE",
                          .bucket = step == V_DENIED || step == V_CLEANUP ? v->c->denied_bucket
                                                                          : v->bucket,
                          .key = v->c->probe_key,
                          .body = put ? PROBE_BODY : NULL,
                          .body_len = put ? strlen(PROBE_BODY) : 0,
                          .access_key_id = v->key_id,
                          .secret_access_key = h->item_get(v->item, OL_KEY_SECRET_ACCESS_KEY)};
    /* The denied check expects a refusal, the tidying is best effort: no waiting. */
    if (step != V_DENIED && step != V_CLEANUP && step != V_TIDY) {
        req.consistency_codes = not_yet;
        req.consistency_ms = (unsigned)v->c->wait_ms;
    }
    v->step = step;
    int rc = h->aws_send(v->item, &req, on_answer, v);
    if (rc < 0)
        verify_fail(v, "could not send the probe (%s): %s", step_actions[step], h->strerror(rc));
}

/* The key was refused an action its policy should grant. After the probe was put, it is
 * removed (best effort) before the item fails. */
static void verify_refused(verify_run *v, const ol_aws_response *res) {
    const ol_host *h = v->c->host;
    char *what = h->format("%s on arn:aws:s3:::%s/%s with the stored key %s", step_actions[v->step],
                           v->bucket, v->c->probe_key, v->key_id);
    char *reason = h->aws_reason(what ? what : "probe", res);
    int denied = res->error_code != NULL && strcmp(res->error_code, "AccessDenied") == 0;
    v->note =
        h->format("%s%s%s (waited up to %lld s for IAM propagation)", reason ? reason : "refused",
                  denied ? "; the key's policy does not allow " : "",
                  denied ? step_actions[v->step] : "", v->c->wait_ms / 1000);
    h->free(what);
    h->free(reason);
    if (v->step == V_GET) {
        verify_send(v, V_TIDY);
        return;
    }
    verify_fail(v, "%s", v->note ? v->note : "refused");
}

static void verify_done_ok(verify_run *v) {
    char why[512];
    snprintf(why, sizeof(why),
             "stored key %s can put, get and delete in %s and is denied in %s%s%s", v->key_id,
             v->bucket, v->c->denied_bucket, v->note ? "; " : "", v->note ? v->note : "");
    verify_finish(v, OL_OUTCOME_UNCHANGED, why);
}

static void on_answer(void *arg, const ol_aws_response *res) {
    verify_run *v = arg;
    switch (v->step) {
    case V_PUT:
    case V_DELETE:
        if (res->result != 0) {
            verify_refused(v, res);
            return;
        }
        verify_send(v, v->step == V_PUT ? V_GET : V_DENIED);
        return;
    case V_GET:
        if (res->result != 0) {
            verify_refused(v, res);
            return;
        }
        if (res->body_len != strlen(PROBE_BODY) || memcmp(res->body, PROBE_BODY, res->body_len)) {
            verify_fail(v, "the probe object read back from %s differs from what was put",
                        v->bucket);
            return;
        }
        verify_send(v, V_DELETE);
        return;
    case V_DENIED:
        if (res->result == 0) {
            /* Too broad: remove the probe we could write, then fail. */
            verify_send(v, V_CLEANUP);
            return;
        }
        if (res->error_code == NULL || strcmp(res->error_code, "AccessDenied") != 0)
            v->note = v->c->host->format("the other bucket answered %s, not AccessDenied",
                                         res->error_code ? res->error_code : "no error code");
        verify_done_ok(v);
        return;
    case V_CLEANUP:
        verify_fail(v,
                    "the stored key %s may write to bucket %s, which is not the item's: its "
                    "policy is broader than the bucket %s%s",
                    v->key_id, v->c->denied_bucket, v->bucket,
                    res->result == 0 ? ""
                                     : " (the probe object written there could not be removed)");
        return;
    case V_TIDY:
        verify_fail(v, "%s%s", v->note ? v->note : "refused",
                    res->result == 0 ? "" : "; the probe object could not be removed");
        return;
    default:
        verify_fail(v, "verify: an answer arrived in no step");
    }
}

static void on_secret(void *arg, const char *key_id, const char *const *lost, size_t n_lost,
                      const char *reason) {
    verify_run *v = arg;
    (void)lost, (void)n_lost;
    if (key_id == NULL || v->c->host->item_get(v->item, OL_KEY_SECRET_ACCESS_KEY) == NULL) {
        verify_fail(v, "no configured store gives back the secret of access key %s%s%s", v->key_id,
                    reason ? ": " : "", reason ? reason : "");
        return;
    }
    verify_send(v, V_PUT);
}

static int verify_apply(ol_stage *stage, ol_item *item, void *state) {
    const verify_conf *c = state;
    const ol_host *h = c->host;
    const char *id = h->item_get(item, OL_KEY_ACCESS_KEY_ID);
    if (id == NULL) {
        h->log(stage, item, OL_LOG_ERROR, "no access key to verify: the iam stage set none");
        return OL_ENOENT;
    }
    verify_run *v = calloc(1, sizeof(*v));
    if (v == NULL)
        return OL_ENOMEM;
    v->c = c;
    v->stage = stage;
    v->item = item;
    const char *bucket = h->item_get(item, OL_KEY_BUCKET_NAME);
    v->bucket = bucket ? bucket : h->item_name(item);
    snprintf(v->key_id, sizeof(v->key_id), "%s", id);
    if (h->item_get(item, OL_KEY_SECRET_ACCESS_KEY) != NULL) {
        verify_send(v, V_PUT);
        return 0;
    }
    v->step = V_READ;
    int rc = h->secret_read(item, id, on_secret, v);
    if (rc != 0)
        free(v);
    return rc;
}

static int verify_init(ol_stage *stage, const ol_host *host, void **state) {
    if (host->struct_size < offsetof(ol_host, secret_read) + sizeof(host->secret_read) ||
        host->abi_minor < 1)
        return OL_EABI;
    verify_conf *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return OL_ENOMEM;
    c->host = host;
    int rc = host->opt_bind(stage, c);
    if (rc == 0 && (c->wait_ms < 0 || c->wait_ms > 600000)) {
        host->log(stage, NULL, OL_LOG_ERROR, "option wait_ms %lld: give 0 to 600000 milliseconds",
                  c->wait_ms);
        rc = OL_ECONFIG;
    }
    char *why = NULL;
    if (rc == 0 && host->aws_name_check("s3-bucket", c->denied_bucket, &why) != 0) {
        host->log(stage, NULL, OL_LOG_ERROR, "option denied_bucket: %s", why ? why : "invalid");
        host->free(why);
        rc = OL_ECONFIG;
    }
    if (rc != 0) {
        free(c);
        return rc;
    }
    *state = c;
    return 0;
}

static void verify_fini(void *state) {
    free(state);
}

static const ol_option_def verify_options[] = {
    {"probe_key", OL_OPT_STRING, ".opsline-verify-probe",
     "object key of the probe put, read and deleted in the item's bucket",
     OL_BIND(verify_conf, probe_key)},
    {"denied_bucket", OL_OPT_STRING, "opsline-verify-denied-probe",
     "a bucket the key must NOT be able to write to", OL_BIND(verify_conf, denied_bucket)},
    {"wait_ms", OL_OPT_INT, "30000",
     "how long to wait for a new key or policy to propagate in IAM before failing",
     OL_BIND(verify_conf, wait_ms)},
};

static const char *const verify_needs[] = {"iam", "policy", NULL};

/* `opsline apply --verify` adds this stage to the pipeline. */
static const ol_cli_flag verify_cli_flags[] = {{"verify", NULL}, {NULL, NULL}};

static const ol_plugin verify_plugin = {
    .abi_major = OL_ABI_MAJOR,
    .abi_minor = OL_ABI_MINOR,
    .struct_size = sizeof(ol_plugin),
    .name = "verify",
    .version = "2.1.0",
    .description = "proves the stored key works: put, get, delete in its bucket, denied elsewhere",
    .needs = verify_needs,
    OL_OPTIONS(verify_options),
    .flags = OL_STAGE_AFTER_STORES,
    .init = verify_init,
    .apply = verify_apply,
    .fini = verify_fini,
    .rotate = verify_apply,
    .cli_flags = verify_cli_flags,
};

OL_EXPORT const ol_plugin *opsline_plugin(void) {
    return &verify_plugin;
}
