/* sts: owns the GetCallerIdentity request (Query API, version 2011-06-15), the XML path of
 * its answer (GetCallerIdentityResponse/GetCallerIdentityResult/{Account,Arn,UserId}, STS
 * API reference "GetCallerIdentity") and the text a user sees when it fails. */
#include "sts.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "xml.h"

#define STS_RESULT_PATH "GetCallerIdentityResponse/GetCallerIdentityResult/"

int sts_get_caller_identity(aws_client *c, ol_aws_cb cb, void *arg) {
    ol_kv params[] = {{"Action", "GetCallerIdentity"}, {"Version", "2011-06-15"}};
    ol_aws_request req = {.struct_size = sizeof(ol_aws_request),
                          .service = "sts",
                          .method = "POST",
                          .params = params,
                          .n_params = 2};
    return aws_send(c, &req, cb, arg);
}

/* A copy of the text at STS_RESULT_PATH field; *oom set when the copy failed. */
static char *result_field(const ol_xml *doc, const char *field, int *oom) {
    char *path = ol__format("%s%s", STS_RESULT_PATH, field);
    if (path == NULL) {
        *oom = 1;
        return NULL;
    }
    const char *text = xml_text(doc, path, 0);
    free(path);
    char *copy = text != NULL ? strdup(text) : NULL;
    if (text != NULL && copy == NULL)
        *oom = 1;
    return copy;
}

int sts_identity_parse(const char *body, size_t len, sts_identity *out) {
    memset(out, 0, sizeof(*out));
    ol_xml *doc = body != NULL ? xml_parse(body, len) : NULL;
    if (doc == NULL)
        return OL_EAWS;
    int oom = 0;
    out->account = result_field(doc, "Account", &oom);
    out->arn = result_field(doc, "Arn", &oom);
    out->user_id = result_field(doc, "UserId", &oom);
    xml_free(doc);
    if (oom) {
        sts_identity_free(out);
        return OL_ENOMEM;
    }
    return out->account != NULL && out->arn != NULL ? 0 : OL_EAWS;
}

void sts_identity_free(sts_identity *id) {
    free(id->account);
    free(id->arn);
    free(id->user_id);
    memset(id, 0, sizeof(*id));
}

int sts_rejected(const ol_aws_response *res) {
    return res->result == OL_EAWS && res->status >= 400 && res->status < 500;
}

char *sts_failure_message(const ol_aws_response *res, const char *source) {
    return ol__format("%s %s: %s%s%s (HTTP %ld%s%s)",
                      sts_rejected(res) ? "AWS rejected the credentials from"
                                        : "could not check with AWS STS the credentials from",
                      source != NULL ? source : "the environment",
                      res->error_code ? res->error_code : ol_strerror(res->result),
                      res->error_message ? ": " : "", res->error_message ? res->error_message : "",
                      res->status, res->request_id ? ", request id " : "",
                      res->request_id ? res->request_id : "");
}

const char *sts_failure_hint(const ol_aws_response *res) {
    if (sts_rejected(res))
        return "Check the access key id and secret access key (for example with `aws sts "
               "get-caller-identity`), or select another profile with --profile.";
    return "Check the network, the region and AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_STS, then run "
           "again.";
}
