/* lifecycle: ownership checks and IAM Query requests shared by the bundled stages'
 * destroy, rotate, plan and status (see lifecycle.h). */
#include "lifecycle.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "arn.h"

int lifecycle_tagged(const ol_host *h, const ol_xml *doc, const char *key_path,
                     const char *value_path) {
    size_t n = doc != NULL ? h->xml_count(doc, key_path) : 0;
    for (size_t i = 0; i < n; i++) {
        const char *k = h->xml_text(doc, key_path, i);
        const char *v = h->xml_text(doc, value_path, i);
        if (k != NULL && v != NULL && strcmp(k, LIFECYCLE_TAG_KEY) == 0 &&
            strcmp(v, LIFECYCLE_TAG_VALUE) == 0)
            return 1;
    }
    return 0;
}

int lifecycle_journaled(const ol_host *h, const ol_item *item, const char *const *stages) {
    for (size_t i = 0; stages[i] != NULL; i++)
        if (h->journal_count_stage(item, NULL, stages[i], "stage_created", NULL) > 0 ||
            h->journal_count_stage(item, NULL, stages[i], "stage_updated", NULL) > 0)
            return 1;
    return 0;
}

char *lifecycle_not_ours(const ol_host *h, const char *what, const char *name) {
    return h->format("%s %s was not created by opsline (no %s=%s tag and no record in the "
                     "journal); refused: pass --adopt to destroy it anyway",
                     what, name, LIFECYCLE_TAG_KEY, LIFECYCLE_TAG_VALUE);
}

int lifecycle_iam_send(const ol_host *h, ol_item *item, const char *action, const ol_kv *params,
                       size_t n, int consistent, ol_aws_cb cb, void *arg) {
    static const char *const no_such_entity[] = {"NoSuchEntity", NULL};
    ol_kv all[8];
    if (n > sizeof(all) / sizeof(all[0]) - 2)
        return OL_EINVAL;
    all[0] = (ol_kv){"Action", action};
    all[1] = (ol_kv){"Version", IAM_API_VERSION};
    for (size_t i = 0; i < n; i++)
        all[2 + i] = params[i];
    ol_aws_request req = {.struct_size = sizeof(ol_aws_request),
                          .service = "iam",
                          .method = "POST",
                          .params = all,
                          .n_params = 2 + n};
    if (consistent) {
        req.consistency_codes = no_such_entity;
        req.consistency_ms = IAM_CONSISTENCY_MS;
    }
    return h->aws_send(item, &req, cb, arg);
}

int lifecycle_is_error(const ol_aws_response *res, const char *code) {
    return res->result == OL_EAWS && res->error_code != NULL && strcmp(res->error_code, code) == 0;
}

char *lifecycle_aws_reason(const ol_host *h, const ol_aws_response *res, const char *fmt, ...) {
    char action[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(action, sizeof(action), fmt, ap);
    va_end(ap);
    return h->aws_reason(action, res);
}
