/* sigv4: AWS Signature Version 4 for requests as they go on the wire: canonical request,
 * string to sign, Authorization header value, and presigned (query) URLs. Pure functions
 * over strings; OpenSSL supplies SHA-256, HMAC and MD5. */
#ifndef OL_AWS_SIGV4_H
#define OL_AWS_SIGV4_H

#include <stddef.h>
#include <time.h>

#include "opsline/opsline.h"

/* Credentials used for signing. Borrowed. */
typedef struct sigv4_creds {
    const char *access_key_id;
    const char *secret_access_key;
    const char *session_token; /* NULL when none */
} sigv4_creds;

/* A request as sent on the wire. */
typedef struct sigv4_request {
    const char *method;
    const char *path;     /* percent-encoded once as sent, e.g. "/my%20key"; "/" at least */
    const char *query;    /* as sent, without '?'; NULL or "" when none */
    const ol_kv *headers; /* every header to sign as sent, including Host and X-Amz-Date */
    size_t n_headers;
    const char *payload_hash; /* hex SHA-256 of the body, or "UNSIGNED-PAYLOAD" */
} sigv4_request;

typedef struct sigv4_scope {
    const char *region;
    const char *service;  /* signing name: "s3", "iam", "sts", ... */
    const char *amz_date; /* "20150830T123600Z" */
    /* S3 rules: the path is used as sent (encoded once, no dot-segment normalisation).
     * Other services: the path is normalised (RFC 3986 remove_dot_segments, duplicate
     * slashes folded, a trailing slash kept) and each segment encoded a second time.
     * Only the canonical URI depends on this flag; it is the test suite's normalize=false. */
    int s3;
} sigv4_scope;

/* Canonical request text (malloc'd into *out) and the signed-headers list (malloc'd into
 * *signed_headers, may be NULL to skip). Every header in req->headers is signed: names
 * lowercased, values trimmed with whitespace runs (folded lines too) made one space,
 * duplicates merged with ',' in order. The query is decoded from its wire form ('+' is a
 * literal plus) and re-encoded. Returns 0 or OL_EINVAL / OL_ENOMEM; free the strings. */
int sigv4_canonical_request(const sigv4_request *req, const sigv4_scope *scope, char **out,
                            char **signed_headers);

/* String to sign for a canonical request text. */
int sigv4_string_to_sign(const sigv4_scope *scope, const char *canonical_request, char **out);

/* Hex signature (65 bytes with NUL) for a string to sign. The derived signing key is kept
 * (a few slots, keyed by the secret's SHA-256, the day, region and service) for the next
 * request of the same scope; sigv4_forget_keys drops and wipes them. Thread-safe. */
int sigv4_signature(const sigv4_scope *scope, const char *secret_access_key,
                    const char *string_to_sign, char out[65]);
void sigv4_forget_keys(void);

/* Full Authorization header value:
 * "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/service/aws4_request,
 *  SignedHeaders=host;x-amz-date, Signature=...". The caller has already put X-Amz-Date,
 * X-Amz-Security-Token (when a session token is used) and, for S3, X-Amz-Content-Sha256
 * into req->headers. */
int sigv4_authorization(const sigv4_request *req, const sigv4_scope *scope,
                        const sigv4_creds *creds, char **out);

/* Presigning (query authentication). req->query holds the request's own parameters (may
 * be empty); req->headers at least Host. The X-Amz-* parameters (Algorithm, Credential,
 * Date, Expires, Security-Token when creds->session_token is set, SignedHeaders) are
 * appended, the request is signed with payload hash "UNSIGNED-PAYLOAD" when
 * scope->service is "s3" or req->payload_hash is NULL (the request's payload_hash
 * otherwise), and the complete query string to send, ending in X-Amz-Signature, is
 * malloc'd into *query_out. expires is in seconds, 1..604800, else OL_ERANGE. A service
 * that wants the token added after signing (unsigned) gets creds without it, and the
 * caller appends it. */
int sigv4_presign(const sigv4_request *req, const sigv4_scope *scope, const sigv4_creds *creds,
                  unsigned long expires, char **query_out);

/* Same as sigv4_presign but also returns the canonical request and the string to sign it
 * produced (for tests; either may be NULL). */
int sigv4_presign_debug(const sigv4_request *req, const sigv4_scope *scope,
                        const sigv4_creds *creds, unsigned long expires, char **query_out,
                        char **canonical_out, char **string_to_sign_out);

/* Helpers. */
void sigv4_sha256_hex(const void *data, size_t len, char out[65]);
/* base64 of the MD5 of data (Content-MD5 header), 25 bytes with NUL. */
void sigv4_content_md5(const void *data, size_t len, char out[25]);
/* "20150830T123600Z" for t (UTC). */
void sigv4_amz_date(time_t t, char out[17]);
/* URI-encode per SigV4 (unreserved A-Z a-z 0-9 - _ . ~ kept, everything else %XX uppercase);
 * keep_slash keeps '/'. Returns a malloc'd string or NULL. */
char *sigv4_uri_encode(const char *s, size_t len, int keep_slash);
/* How many of s's first len bytes are unreserved (A-Z a-z 0-9 - _ . ~) before the first
 * that is not: encoding leaves such a run as it is. */
size_t sigv4_unreserved_span(const char *s, size_t len);

#endif
