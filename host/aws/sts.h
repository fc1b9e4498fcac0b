/* sts: the STS calls opsline makes: GetCallerIdentity, which says whose credentials a run
 * holds before anything is created (the apply preflight, `opsline whoami`), and AssumeRole /
 * AssumeRoleWithWebIdentity, which turn a profile's role_arn into temporary credentials. */
#ifndef OL_AWS_STS_H
#define OL_AWS_STS_H

#include <stddef.h>

#include "aws.h"
#include "opsline/opsline.h"

/* Send GetCallerIdentity through c. As aws_send: cb runs exactly once from the loop, or a
 * negative code is returned and cb never runs. */
int sts_get_caller_identity(aws_client *c, ol_aws_cb cb, void *arg);

/* The identity in a GetCallerIdentity answer; strings malloc'd, NULL when the answer lacks
 * them. sts_identity_free frees them and resets the struct. */
typedef struct sts_identity {
    char *account;
    char *arn;
    char *user_id;
} sts_identity;

/* Parse a GetCallerIdentity answer body (len bytes, need not be NUL-terminated) into *out.
 * Returns 0 when it names at least the account and the ARN; OL_EAWS when the body is not
 * such an answer (*out then holds what was found); OL_ENOMEM. *out is always initialised. */
int sts_identity_parse(const char *body, size_t len, sts_identity *out);
void sts_identity_free(sts_identity *id);

/* Only a 4xx answer is a verdict on the credentials; no answer (endpoint unreachable,
 * timeout) or a 5xx says nothing about them and needs another fix. */
int sts_rejected(const ol_aws_response *res);

/* The one-line message for a failed GetCallerIdentity with the credentials from source
 * (OL_ECREDS: the credentials could not be fetched; their own message)
 * (credentials_source; NULL: "the environment"): "AWS rejected the credentials from SOURCE:
 * CODE: MESSAGE (HTTP 403, request id ID)" when sts_rejected(res), else "could not check
 * with AWS STS the credentials from SOURCE: ...". malloc'd; NULL on allocation failure. The
 * server's text is passed as it came: the caller masks or escapes it as it does any. */
char *sts_failure_message(const ol_aws_response *res, const char *source);

/* What to do about that failure, one sentence (static). */
const char *sts_failure_hint(const ol_aws_response *res);

/* AssumeRole (signed with c's credentials) or, when web_identity_token is set,
 * AssumeRoleWithWebIdentity (c is then an anonymous client: the call is unsigned, as in the
 * SDKs). Optional fields may be NULL / 0. As aws_send for cb. */
typedef struct sts_assume_args {
    const char *role_arn;
    const char *session_name;
    const char *external_id;
    const char *mfa_serial;
    const char *mfa_code;
    long duration_s;
    const char *web_identity_token; /* borrowed until the call returns (it is copied) */
} sts_assume_args;
int sts_assume_role(aws_client *c, const sts_assume_args *a, ol_aws_cb cb, void *arg);

/* The credentials in an AssumeRole / AssumeRoleWithWebIdentity answer: 0 with *out filled
 * (source: malloc'd copy of source) and *expires (seconds since the epoch), else OL_EAWS. */
int sts_credentials_parse(const char *body, size_t len, int web_identity, const char *source,
                          credentials *out, long long *expires);

#endif
