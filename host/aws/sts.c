/* sts: owns the GetCallerIdentity, AssumeRole and AssumeRoleWithWebIdentity requests (Query
 * API, version 2011-06-15), the XML paths of their answers (STS API reference:
 * GetCallerIdentityResult/{Account,Arn,UserId}, AssumeRoleResult/Credentials/{AccessKeyId,
 * SecretAccessKey,SessionToken,Expiration}) and the text a user sees when they fail. */
#include "sts.h"

#include <openssl/crypto.h>
#include <stdio.h>
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
    /* The credentials could not be had at all (a role, SSO login or process that failed):
     * their own message says which and what to do. */
    if ((res->result == OL_ECREDS || res->result == OL_ECONFIG) && res->error_message != NULL)
        return ol__format("%s", res->error_message);
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
    if (res->result == OL_ECREDS || res->result == OL_ECONFIG)
        return "Fix the credentials source named above, or select another profile with "
               "--profile, then run again.";
    if (sts_rejected(res))
        return "Check the access key id and secret access key (for example with `aws sts "
               "get-caller-identity`), or select another profile with --profile.";
    return "Check the network, the region and AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_STS, then run "
           "again.";
}

int sts_assume_role(aws_client *c, const sts_assume_args *a, ol_aws_cb cb, void *arg) {
    ol_kv params[9];
    size_t n = 0;
    char dur[24];
    int web = a->web_identity_token != NULL;
    params[n++] = (ol_kv){"Action", web ? "AssumeRoleWithWebIdentity" : "AssumeRole"};
    params[n++] = (ol_kv){"Version", "2011-06-15"};
    params[n++] = (ol_kv){"RoleArn", a->role_arn};
    params[n++] = (ol_kv){"RoleSessionName", a->session_name};
    if (a->duration_s > 0) {
        snprintf(dur, sizeof(dur), "%ld", a->duration_s);
        params[n++] = (ol_kv){"DurationSeconds", dur};
    }
    if (web)
        params[n++] = (ol_kv){"WebIdentityToken", a->web_identity_token};
    if (!web && a->external_id)
        params[n++] = (ol_kv){"ExternalId", a->external_id};
    if (!web && a->mfa_serial && a->mfa_code) {
        params[n++] = (ol_kv){"SerialNumber", a->mfa_serial};
        params[n++] = (ol_kv){"TokenCode", a->mfa_code};
    }
    ol_aws_request req = {.struct_size = sizeof(ol_aws_request),
                          .service = "sts",
                          .method = "POST",
                          .params = params,
                          .n_params = n};
    return aws_send(c, &req, cb, arg);
}

int sts_credentials_parse(const char *body, size_t len, int web_identity, const char *source,
                          credentials *out, long long *expires) {
    const char *root = web_identity
                           ? "AssumeRoleWithWebIdentityResponse/AssumeRoleWithWebIdentityResult/"
                           : "AssumeRoleResponse/AssumeRoleResult/";
    char path[160];
    const char *v[4];
    const char *names[4] = {"AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"};
    memset(out, 0, sizeof(*out));
    *expires = 0;
    ol_xml *doc = body != NULL ? xml_parse(body, len) : NULL;
    if (doc == NULL)
        return OL_EAWS;
    for (size_t i = 0; i < 4; i++) {
        snprintf(path, sizeof(path), "%sCredentials/%s", root, names[i]);
        v[i] = xml_text(doc, path, 0);
    }
    int rc = OL_EAWS;
    long long t = v[3] ? credentials_parse_time(v[3]) : -1;
    if (v[0] && v[1] && v[2] && t > 0) {
        out->access_key_id = strdup(v[0]);
        out->secret_access_key = strdup(v[1]);
        out->session_token = strdup(v[2]);
        out->source = strdup(source);
        rc = out->access_key_id && out->secret_access_key && out->session_token && out->source
                 ? 0
                 : OL_ENOMEM;
        *expires = t;
    }
    /* The parsed document holds the secret and the token: wipe the text before freeing. */
    for (size_t i = 1; i < 3; i++)
        if (v[i] != NULL)
            OPENSSL_cleanse((char *)v[i], strlen(v[i]));
    xml_free(doc);
    if (rc != 0)
        credentials_free(out);
    return rc;
}
