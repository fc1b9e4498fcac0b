/* Tests for sigv4: the AWS SigV4 signing test suite (shared/conformance/sigv4, header and
 * query signing for every case), the worked examples AWS publishes for S3 and IAM, and the
 * helpers (Content-MD5, URI encoding, X-Amz-Date, presign expiry range). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "harness.h"
#include "sigv4.h"

#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define MAX_FIXTURE_HEADERS 16

#ifdef OPSLINE_SHARED_DIR
#define SIGV4_SUITE_DIR OPSLINE_SHARED_DIR "/conformance/sigv4"
#else
#define SIGV4_SUITE_DIR NULL
#endif

/* ---------------------------------------------------------------------------------------
 * Fixture reading: request.txt is a raw HTTP request (request line, header lines with
 * continuation lines, blank line, body). Names and values are kept as written: the
 * signer does the trimming and folding under test. */

typedef struct fixture_request {
    char *text; /* the file, cut in place */
    char *method;
    char *path;
    char *query; /* NULL when none */
    ol_kv headers[MAX_FIXTURE_HEADERS];
    char *values[MAX_FIXTURE_HEADERS]; /* malloc'd values (continuations joined) */
    size_t n_headers;
    const char *body;
    size_t body_len;
} fixture_request;

/* "dir/name" into out; 0, or -1 when it does not fit. */
static int join_path(char *out, size_t size, const char *dir, const char *name) {
    int n = snprintf(out, size, "%s/%s", dir, name);
    return n < 0 || (size_t)n >= size ? -1 : 0;
}

static char *read_text(const char *dir, const char *name, size_t *len_out) {
    char path[4096];
    if (join_path(path, sizeof(path), dir, name) != 0)
        return NULL;
    return harness_read_file(path, len_out);
}

/* Expected outputs, without a trailing line break should an editor have added one. */
static char *read_expected(const char *dir, const char *name) {
    size_t len = 0;
    char *s = read_text(dir, name, &len);
    while (s != NULL && len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r'))
        s[--len] = '\0';
    return s;
}

static void fixture_request_free(fixture_request *r) {
    for (size_t i = 0; i < r->n_headers; i++)
        free(r->values[i]);
    free(r->text);
    memset(r, 0, sizeof(*r));
}

/* Appends a continuation line to the last header's value, keeping the line break. */
static int append_continuation(fixture_request *r, const char *line) {
    char *prev = r->values[r->n_headers - 1];
    size_t a = strlen(prev), b = strlen(line);
    char *v = realloc(prev, a + b + 2);
    if (v == NULL)
        return -1;
    v[a] = '\n';
    memcpy(v + a + 1, line, b + 1);
    r->values[r->n_headers - 1] = v;
    r->headers[r->n_headers - 1].value = v;
    return 0;
}

static int parse_request(const char *dir, fixture_request *r) {
    size_t len = 0;
    memset(r, 0, sizeof(*r));
    r->text = read_text(dir, "request.txt", &len);
    if (r->text == NULL)
        return -1;

    char *line = r->text;
    char *nl = strchr(line, '\n');
    char *end = r->text + len;
    if (nl != NULL)
        *nl = '\0';
    /* "METHOD target HTTP/1.1"; the target may hold spaces (get-space-*). */
    char *sp1 = strchr(line, ' ');
    char *sp2 = strrchr(line, ' ');
    if (sp1 == NULL || sp2 == sp1)
        return -1;
    *sp1 = '\0';
    *sp2 = '\0';
    r->method = line;
    r->path = sp1 + 1;
    char *qm = strchr(r->path, '?');
    if (qm != NULL) {
        *qm = '\0';
        r->query = qm + 1;
    }

    r->body = "";
    for (line = nl ? nl + 1 : end; line < end; line = nl ? nl + 1 : end) {
        nl = strchr(line, '\n');
        if (nl != NULL)
            *nl = '\0';
        if (line[0] == '\0') {
            r->body = nl ? nl + 1 : end;
            r->body_len = (size_t)(end - r->body);
            break;
        }
        if ((line[0] == ' ' || line[0] == '\t') && r->n_headers > 0) {
            if (append_continuation(r, line) != 0)
                return -1;
            continue;
        }
        char *colon = strchr(line, ':');
        if (colon == NULL || r->n_headers == MAX_FIXTURE_HEADERS)
            return -1;
        *colon = '\0';
        r->values[r->n_headers] = strdup(colon + 1);
        if (r->values[r->n_headers] == NULL)
            return -1;
        r->headers[r->n_headers].name = line;
        r->headers[r->n_headers].value = r->values[r->n_headers];
        r->n_headers++;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * One conformance case. */

typedef struct fixture_context {
    json_t *root;
    sigv4_creds creds;
    sigv4_scope scope;
    char amz_date[17];
    unsigned long expires;
    int sign_body;
    int omit_session_token;
} fixture_context;

static int parse_context(const char *dir, fixture_context *c) {
    char path[4096];
    json_error_t err;
    const char *timestamp = NULL;
    int normalize = 1;
    json_int_t expires = 0;
    struct tm tm;

    memset(c, 0, sizeof(*c));
    if (join_path(path, sizeof(path), dir, "context.json") != 0)
        return -1;
    c->root = json_load_file(path, 0, &err);
    if (c->root == NULL)
        return -1;
    if (json_unpack_ex(c->root, &err, 0, "{s:{s:s, s:s, s?s}, s:s, s:s, s:s, s?b, s?I, s?b, s?b}",
                       "credentials", "access_key_id", &c->creds.access_key_id, "secret_access_key",
                       &c->creds.secret_access_key, "token", &c->creds.session_token, "region",
                       &c->scope.region, "service", &c->scope.service, "timestamp", &timestamp,
                       "normalize", &normalize, "expiration_in_seconds", &expires, "sign_body",
                       &c->sign_body, "omit_session_token", &c->omit_session_token) != 0) {
        fprintf(stderr, "%s: %s\n", path, err.text);
        return -1;
    }
    memset(&tm, 0, sizeof(tm));
    if (sscanf(timestamp, "%d-%d-%dT%d:%d:%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec) != 6)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    sigv4_amz_date(timegm(&tm), c->amz_date);
    c->scope.amz_date = c->amz_date;
    /* normalize=false is the S3 rule: the path is signed as it goes on the wire. */
    c->scope.s3 = !normalize;
    c->expires = (unsigned long)expires;
    return 0;
}

static int same(const char *name, const char *what, const char *expected, const char *got) {
    if (expected != NULL && got != NULL && strcmp(expected, got) == 0)
        return 1;
    fprintf(stderr, "[%s] %s differs\n--- expected\n%s\n--- got\n%s\n", name, what,
            expected ? expected : "(missing)", got ? got : "(null)");
    return 0;
}

/* The Authorization line from header-signed-request.txt. */
static char *expected_authorization(const char *dir) {
    char *text = read_expected(dir, "header-signed-request.txt");
    char *found = NULL;
    if (text == NULL)
        return NULL;
    for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        if (strncmp(line, "Authorization:", 14) == 0) {
            found = strdup(line + 14);
            break;
        }
    }
    free(text);
    return found;
}

/* Header signing. The caller adds X-Amz-Date, X-Amz-Content-Sha256 when the body is
 * signed, and X-Amz-Security-Token unless the case adds the token after signing. */
static int check_header_signing(const char *name, const char *dir, const fixture_request *fr,
                                const sigv4_request *base, const fixture_context *c) {
    ol_kv headers[MAX_FIXTURE_HEADERS + 3];
    sigv4_request req = *base;
    char *canonical = NULL, *sts = NULL, *auth = NULL;
    char sig[65] = "";
    int ok = 0;

    size_t n = fr->n_headers;
    memcpy(headers, fr->headers, n * sizeof(ol_kv));
    headers[n++] = (ol_kv){"X-Amz-Date", c->amz_date};
    if (c->sign_body)
        headers[n++] = (ol_kv){"X-Amz-Content-Sha256", base->payload_hash};
    if (c->creds.session_token != NULL && !c->omit_session_token)
        headers[n++] = (ol_kv){"X-Amz-Security-Token", c->creds.session_token};
    req.headers = headers;
    req.n_headers = n;

    char *want_cr = read_expected(dir, "header-canonical-request.txt");
    char *want_sts = read_expected(dir, "header-string-to-sign.txt");
    char *want_sig = read_expected(dir, "header-signature.txt");
    char *want_auth = expected_authorization(dir);

    if (sigv4_canonical_request(&req, &c->scope, &canonical, NULL) == 0 &&
        sigv4_string_to_sign(&c->scope, canonical, &sts) == 0 &&
        sigv4_signature(&c->scope, c->creds.secret_access_key, sts, sig) == 0 &&
        sigv4_authorization(&req, &c->scope, &c->creds, &auth) == 0)
        ok = 1;
    ok = same(name, "header canonical request", want_cr, canonical) & ok;
    ok = same(name, "header string to sign", want_sts, sts) & ok;
    ok = same(name, "header signature", want_sig, sig) & ok;
    ok = same(name, "Authorization", want_auth, auth) & ok;
    free(want_cr);
    free(want_sts);
    free(want_sig);
    free(want_auth);
    free(canonical);
    free(sts);
    free(auth);
    return ok;
}

/* Query signing (presigning). A token added after signing (omit_session_token) is simply
 * not given to the signer; the caller appends it to the finished query. */
static int check_query_signing(const char *name, const char *dir, const sigv4_request *req,
                               const fixture_context *c) {
    sigv4_creds creds = c->creds;
    char *query = NULL, *canonical = NULL, *sts = NULL;
    int ok = 0;

    if (c->omit_session_token)
        creds.session_token = NULL;
    char *want_cr = read_expected(dir, "query-canonical-request.txt");
    char *want_sts = read_expected(dir, "query-string-to-sign.txt");
    char *want_sig = read_expected(dir, "query-signature.txt");

    if (sigv4_presign_debug(req, &c->scope, &creds, c->expires, &query, &canonical, &sts) == 0)
        ok = 1;
    ok = same(name, "query canonical request", want_cr, canonical) & ok;
    ok = same(name, "query string to sign", want_sts, sts) & ok;
    const char *got_sig = query ? strstr(query, "&X-Amz-Signature=") : NULL;
    ok = same(name, "query signature", want_sig, got_sig ? got_sig + 17 : NULL) & ok;
    free(want_cr);
    free(want_sts);
    free(want_sig);
    free(query);
    free(canonical);
    free(sts);
    return ok;
}

static int run_case(const char *suite, const char *name) {
    char dir[4096];
    fixture_request fr;
    fixture_context c;
    char payload_hash[65];
    char *wire_path = NULL;
    sigv4_request req;
    int ok = 0;

    memset(&c, 0, sizeof(c));
    memset(&fr, 0, sizeof(fr));
    if (join_path(dir, sizeof(dir), suite, name) != 0 || parse_request(dir, &fr) != 0 ||
        parse_context(dir, &c) != 0) {
        fprintf(stderr, "[%s] cannot read the fixture\n", name);
        goto done;
    }
    /* The fixtures write the path unencoded. With normalisation (double encoding) the
     * signer encodes it once more itself; under the S3 rule it signs the path exactly as
     * sent, so give it the once-encoded form a client puts on the wire. */
    wire_path = c.scope.s3 ? sigv4_uri_encode(fr.path, strlen(fr.path), 1) : strdup(fr.path);
    if (wire_path == NULL)
        goto done;
    sigv4_sha256_hex(fr.body, fr.body_len, payload_hash);
    req = (sigv4_request){
        .method = fr.method,
        .path = wire_path,
        .query = fr.query,
        .headers = fr.headers,
        .n_headers = fr.n_headers,
        .payload_hash = payload_hash,
    };
    ok = check_header_signing(name, dir, &fr, &req, &c);
    ok = check_query_signing(name, dir, &req, &c) & ok;
done:
    free(wire_path);
    fixture_request_free(&fr);
    json_decref(c.root);
    return ok;
}

static int name_cmp(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void signs_every_case_of_the_aws_sigv4_test_suite(void **state) {
    (void)state;
    const char *suite = SIGV4_SUITE_DIR;
    char *names[256];
    size_t n = 0, passed = 0;
    struct dirent *de;
    DIR *d = suite ? opendir(suite) : NULL;
    if (d == NULL) {
        print_message("%s not found: skipping the SigV4 test suite\n",
                      suite ? suite : "OPSLINE_SHARED_DIR/conformance/sigv4");
        skip();
        return;
    }
    while ((de = readdir(d)) != NULL && n < 256) {
        char dir[4096], path[4096];
        struct stat st;
        if (de->d_name[0] != '.' && join_path(dir, sizeof(dir), suite, de->d_name) == 0 &&
            join_path(path, sizeof(path), dir, "request.txt") == 0 && stat(path, &st) == 0) {
            names[n] = strdup(de->d_name);
            assert_non_null(names[n]);
            n++;
        }
    }
    closedir(d);
    qsort(names, n, sizeof(*names), name_cmp);
    for (size_t i = 0; i < n; i++) {
        passed += (size_t)run_case(suite, names[i]);
        free(names[i]);
    }
    print_message("SigV4 test suite: %zu of %zu cases pass (header and query signing)\n", passed,
                  n);
    assert_true(n > 0);
    assert_int_equal(passed, n);
}

/* ---------------------------------------------------------------------------------------
 * AWS's published examples. S3: "Signature Calculations for the Authorization Header:
 * Transferring Payload in a Single Chunk" and "Authenticating Requests: Using Query
 * Parameters"; IAM: the ListUsers example of "Create a signed AWS API request". */

static const sigv4_creds s3_doc_creds = {"AKIAIOSFODNN7EXAMPLE",
                                         "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", NULL};
static const sigv4_scope s3_doc_scope = {"us-east-1", "s3", "20130524T000000Z", 1};

static void assert_s3_doc_signature(const sigv4_request *req, const char *signed_headers,
                                    const char *signature) {
    char *auth = NULL;
    char want[512];
    int n = snprintf(want, sizeof(want),
                     "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/"
                     "aws4_request, SignedHeaders=%s, Signature=%s",
                     signed_headers, signature);
    assert_true(n > 0 && (size_t)n < sizeof(want));
    assert_int_equal(sigv4_authorization(req, &s3_doc_scope, &s3_doc_creds, &auth), 0);
    assert_string_equal(auth, want);
    free(auth);
}

static void signs_s3_get_object_with_range_header(void **state) {
    (void)state;
    const ol_kv headers[] = {
        {"Host", "examplebucket.s3.amazonaws.com"},
        {"Range", "bytes=0-9"},
        {"x-amz-content-sha256", EMPTY_SHA256},
        {"x-amz-date", "20130524T000000Z"},
    };
    const sigv4_request req = {"GET", "/test.txt", NULL, headers, 4, EMPTY_SHA256};
    char *canonical = NULL, *sts = NULL;

    assert_int_equal(sigv4_canonical_request(&req, &s3_doc_scope, &canonical, NULL), 0);
    assert_string_equal(canonical, "GET\n/test.txt\n\n"
                                   "host:examplebucket.s3.amazonaws.com\n"
                                   "range:bytes=0-9\n"
                                   "x-amz-content-sha256:" EMPTY_SHA256 "\n"
                                   "x-amz-date:20130524T000000Z\n\n"
                                   "host;range;x-amz-content-sha256;x-amz-date\n" EMPTY_SHA256);
    assert_int_equal(sigv4_string_to_sign(&s3_doc_scope, canonical, &sts), 0);
    assert_string_equal(sts, "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/"
                             "aws4_request\n"
                             "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972");
    free(canonical);
    free(sts);
    assert_s3_doc_signature(&req, "host;range;x-amz-content-sha256;x-amz-date",
                            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

static void signs_s3_put_object_with_payload_hash(void **state) {
    (void)state;
    const char body[] = "Welcome to Amazon S3.";
    char hash[65];
    sigv4_sha256_hex(body, strlen(body), hash);
    assert_string_equal(hash, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
    const ol_kv headers[] = {
        {"Host", "examplebucket.s3.amazonaws.com"},
        {"Date", "Fri, 24 May 2013 00:00:00 GMT"},
        {"x-amz-date", "20130524T000000Z"},
        {"x-amz-storage-class", "REDUCED_REDUNDANCY"},
        {"x-amz-content-sha256", hash},
    };
    /* The key "test$file.text" goes on the wire encoded once, and S3 signs it as sent. */
    const sigv4_request req = {"PUT", "/test%24file.text", NULL, headers, 5, hash};
    assert_s3_doc_signature(&req, "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
                            "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
}

static void signs_s3_get_bucket_lifecycle_with_valueless_parameter(void **state) {
    (void)state;
    const ol_kv headers[] = {
        {"Host", "examplebucket.s3.amazonaws.com"},
        {"x-amz-date", "20130524T000000Z"},
        {"x-amz-content-sha256", EMPTY_SHA256},
    };
    const sigv4_request req = {"GET", "/", "lifecycle", headers, 3, EMPTY_SHA256};
    char *canonical = NULL;
    assert_int_equal(sigv4_canonical_request(&req, &s3_doc_scope, &canonical, NULL), 0);
    assert_non_null(strstr(canonical, "GET\n/\nlifecycle=\nhost:"));
    free(canonical);
    assert_s3_doc_signature(&req, "host;x-amz-content-sha256;x-amz-date",
                            "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
}

static void signs_s3_list_objects_with_sorted_query(void **state) {
    (void)state;
    const ol_kv headers[] = {
        {"Host", "examplebucket.s3.amazonaws.com"},
        {"x-amz-date", "20130524T000000Z"},
        {"x-amz-content-sha256", EMPTY_SHA256},
    };
    const sigv4_request req = {"GET", "/", "prefix=J&max-keys=2", headers, 3, EMPTY_SHA256};
    char *canonical = NULL;
    assert_int_equal(sigv4_canonical_request(&req, &s3_doc_scope, &canonical, NULL), 0);
    assert_non_null(strstr(canonical, "GET\n/\nmax-keys=2&prefix=J\nhost:"));
    free(canonical);
    assert_s3_doc_signature(&req, "host;x-amz-content-sha256;x-amz-date",
                            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
}

static void presigns_s3_get_object_url_as_documented(void **state) {
    (void)state;
    const ol_kv headers[] = {{"Host", "examplebucket.s3.amazonaws.com"}};
    /* The request's payload hash is ignored: S3 presigned URLs sign UNSIGNED-PAYLOAD. */
    const sigv4_request req = {"GET", "/test.txt", NULL, headers, 1, EMPTY_SHA256};
    char *query = NULL, *canonical = NULL, *sts = NULL;

    assert_int_equal(
        sigv4_presign_debug(&req, &s3_doc_scope, &s3_doc_creds, 86400, &query, &canonical, &sts),
        0);
    assert_string_equal(canonical,
                        "GET\n/test.txt\n"
                        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%"
                        "2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&"
                        "X-Amz-Expires=86400&X-Amz-SignedHeaders=host\n"
                        "host:examplebucket.s3.amazonaws.com\n\nhost\nUNSIGNED-PAYLOAD");
    assert_string_equal(sts, "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/"
                             "aws4_request\n"
                             "3bfa292879f6447bbcda7001decf97f4a54dc650c8942174ae0a9121cf58ad04");
    assert_string_equal(
        query, "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%"
               "2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&"
               "X-Amz-SignedHeaders=host&X-Amz-Signature="
               "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404");
    free(query);
    free(canonical);
    free(sts);
}

static void signs_iam_list_users_as_documented(void **state) {
    (void)state;
    const sigv4_creds creds = {"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", NULL};
    const sigv4_scope scope = {"us-east-1", "iam", "20150830T123600Z", 0};
    const ol_kv headers[] = {
        {"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"},
        {"Host", "iam.amazonaws.com"},
        {"X-Amz-Date", "20150830T123600Z"},
    };
    const sigv4_request req = {"GET",   "/", "Action=ListUsers&Version=2010-05-08",
                               headers, 3,   EMPTY_SHA256};
    char *canonical = NULL, *sts = NULL, *auth = NULL;
    char hash[65];

    assert_int_equal(sigv4_canonical_request(&req, &scope, &canonical, NULL), 0);
    sigv4_sha256_hex(canonical, strlen(canonical), hash);
    assert_string_equal(hash, "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59");
    assert_int_equal(sigv4_string_to_sign(&scope, canonical, &sts), 0);
    assert_int_equal(sigv4_authorization(&req, &scope, &creds, &auth), 0);
    assert_string_equal(auth, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/"
                              "aws4_request, SignedHeaders=content-type;host;x-amz-date, "
                              "Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b59"
                              "24a6f2b5d7");
    free(canonical);
    free(sts);
    free(auth);
}

/* The signature computed the long way, with nothing kept between calls: OpenSSL's one-shot
 * HMAC, five times. */
static void reference_signature(const char *secret, const sigv4_scope *scope, const char *sts,
                                char out[65]) {
    unsigned char k[32];
    unsigned int n = 0;
    char first[128];

    snprintf(first, sizeof(first), "AWS4%s", secret);
    HMAC(EVP_sha256(), first, (int)strlen(first), (const unsigned char *)scope->amz_date, 8, k, &n);
    HMAC(EVP_sha256(), k, 32, (const unsigned char *)scope->region, strlen(scope->region), k, &n);
    HMAC(EVP_sha256(), k, 32, (const unsigned char *)scope->service, strlen(scope->service), k, &n);
    HMAC(EVP_sha256(), k, 32, (const unsigned char *)"aws4_request", 12, k, &n);
    HMAC(EVP_sha256(), k, 32, (const unsigned char *)sts, strlen(sts), k, &n);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", k[i]);
}

/* The derived keys are kept between requests: a kept key must never serve another secret,
 * day, region or service. 16 scopes (more than the slots kept, so some are evicted), each
 * signed three times in different orders and after the keys are forgotten, must each give
 * the signature computed from scratch. The string signed changes from round to round: a
 * kept key's context must start afresh for each signature. */
static void kept_signing_keys_never_serve_another_scope(void **state) {
    (void)state;
    const char *secrets[] = {"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "another/secret+key"};
    const char *dates[] = {"20150830T123600Z", "20150831T000000Z"};
    const char *regions[] = {"us-east-1", "eu-north-1"};
    const char *services[] = {"iam", "s3"};
    char sts[] = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/iam/aws4_request\n"
                 "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a5?";

    for (int round = 0; round < 3; round++) {
        if (round == 2)
            sigv4_forget_keys();
        for (int j = 0; j < 16; j++) {
            sts[sizeof(sts) - 2] = (char)('a' + (round * 16 + j) % 26);
            int i = round == 1 ? 15 - j : j; /* the second round walks backwards */
            const char *secret = secrets[i & 1];
            sigv4_scope scope = {regions[(i >> 2) & 1], services[(i >> 3) & 1], dates[(i >> 1) & 1],
                                 0};
            char want[65], got[65];
            reference_signature(secret, &scope, sts, want);
            assert_int_equal(sigv4_signature(&scope, secret, sts, got), 0);
            assert_string_equal(got, want);
        }
    }
    sigv4_forget_keys();
}

/* ---------------------------------------------------------------------------------------
 * Helpers and edge cases. */

/* The date is kept from one call to the next within a second: a new second, or a return
 * to an earlier one, must still format its own. */
static void formats_each_seconds_amz_date(void **state) {
    (void)state;
    const time_t times[] = {1440938160, 1440938160, 1440938161, 0, 1440938160, 4102444799};
    const char *want[] = {"20150830T123600Z", "20150830T123600Z", "20150830T123601Z",
                          "19700101T000000Z", "20150830T123600Z", "20991231T235959Z"};
    for (size_t i = 0; i < sizeof(times) / sizeof(times[0]); i++) {
        char out[17];
        sigv4_amz_date(times[i], out);
        assert_string_equal(out, want[i]);
    }
}

static void computes_content_md5_of_known_strings(void **state) {
    (void)state;
    char md5[25];
    sigv4_content_md5("", 0, md5);
    assert_string_equal(md5, "1B2M2Y8AsgTpgAmY7PhCfg==");
    const char fox[] = "The quick brown fox jumps over the lazy dog";
    sigv4_content_md5(fox, strlen(fox), md5);
    assert_string_equal(md5, "nhB9nTcrtoJr2B01QqQZ1g==");
}

static void uri_encodes_reserved_unreserved_and_utf8_bytes(void **state) {
    (void)state;
    const char unreserved[] = "AZaz09-_.~";
    const char mixed[] = "a b/c~d+e=f&g\xe1\x88\xb4";
    assert_int_equal(sigv4_unreserved_span(unreserved, strlen(unreserved)), 10);
    assert_int_equal(sigv4_unreserved_span("AZaz09-_.~/x", 12), 10);
    assert_int_equal(sigv4_unreserved_span("ab\xe1", 3), 2);
    assert_int_equal(sigv4_unreserved_span("@`[{", 4), 0); /* the neighbours of A-Z, a-z */
    assert_int_equal(sigv4_unreserved_span("abc", 2), 2);
    char *e = sigv4_uri_encode(unreserved, strlen(unreserved), 0);
    assert_string_equal(e, unreserved);
    free(e);
    e = sigv4_uri_encode(mixed, strlen(mixed), 0);
    assert_string_equal(e, "a%20b%2Fc~d%2Be%3Df%26g%E1%88%B4");
    free(e);
    e = sigv4_uri_encode(mixed, strlen(mixed), 1);
    assert_string_equal(e, "a%20b/c~d%2Be%3Df%26g%E1%88%B4");
    free(e);
    e = sigv4_uri_encode("//a//", 5, 1);
    assert_string_equal(e, "//a//");
    free(e);
    e = sigv4_uri_encode("", 0, 1);
    assert_string_equal(e, "");
    free(e);
    /* An embedded NUL byte is data like any other when a length is given. */
    e = sigv4_uri_encode("a\0b", 3, 0);
    assert_string_equal(e, "a%00b");
    free(e);
}

static void canonical_query_treats_plus_as_literal_and_sorts_by_encoded_name(void **state) {
    (void)state;
    const ol_kv headers[] = {{"Host", "example.amazonaws.com"}};
    const sigv4_scope scope = {"us-east-1", "service", "20150830T123600Z", 0};
    const sigv4_request req = {"GET", "/", "b=x+y&a=%7e&a=%41&c&B=1", headers, 1, EMPTY_SHA256};
    char *canonical = NULL;
    assert_int_equal(sigv4_canonical_request(&req, &scope, &canonical, NULL), 0);
    assert_non_null(strstr(canonical, "\nB=1&a=A&a=~&b=x%2By&c=\n"));
    free(canonical);
}

static void double_encodes_the_path_except_for_s3(void **state) {
    (void)state;
    const ol_kv headers[] = {{"Host", "example.amazonaws.com"}};
    sigv4_scope scope = {"us-east-1", "service", "20150830T123600Z", 0};
    const sigv4_request req = {"GET", "/a/./b/../my%20key//", NULL, headers, 1, EMPTY_SHA256};
    char *canonical = NULL;
    assert_int_equal(sigv4_canonical_request(&req, &scope, &canonical, NULL), 0);
    assert_memory_equal(canonical, "GET\n/a/my%2520key/\n", 19);
    free(canonical);
    scope.s3 = 1;
    assert_int_equal(sigv4_canonical_request(&req, &scope, &canonical, NULL), 0);
    assert_memory_equal(canonical, "GET\n/a/./b/../my%20key//\n", 25);
    free(canonical);
}

static void presign_rejects_expiry_outside_one_second_to_seven_days(void **state) {
    (void)state;
    const ol_kv headers[] = {{"Host", "examplebucket.s3.amazonaws.com"}};
    const sigv4_request req = {"GET", "/test.txt", NULL, headers, 1, NULL};
    char *query = NULL;
    assert_int_equal(sigv4_presign(&req, &s3_doc_scope, &s3_doc_creds, 0, &query), OL_ERANGE);
    assert_null(query);
    assert_int_equal(sigv4_presign(&req, &s3_doc_scope, &s3_doc_creds, 604801, &query), OL_ERANGE);
    assert_null(query);
    assert_int_equal(sigv4_presign(&req, &s3_doc_scope, &s3_doc_creds, 604800, &query), 0);
    assert_non_null(strstr(query, "&X-Amz-Expires=604800&"));
    free(query);
    assert_int_equal(sigv4_presign(&req, &s3_doc_scope, &s3_doc_creds, 1, &query), 0);
    assert_non_null(strstr(query, "&X-Amz-Expires=1&"));
    free(query);
}

static void presign_signs_session_token_and_keeps_own_parameters(void **state) {
    (void)state;
    const sigv4_creds creds = {"AKID", "secret", "tok/en+="};
    const ol_kv headers[] = {{"Host", "examplebucket.s3.amazonaws.com"}};
    const sigv4_request req = {"GET", "/k", "versionId=1", headers, 1, NULL};
    char *query = NULL, *canonical = NULL;
    assert_int_equal(sigv4_presign_debug(&req, &s3_doc_scope, &creds, 60, &query, &canonical, NULL),
                     0);
    assert_memory_equal(query, "versionId=1&X-Amz-Algorithm=", 28);
    assert_non_null(strstr(query, "&X-Amz-Security-Token=tok%2Fen%2B%3D&"));
    assert_non_null(strstr(canonical, "&X-Amz-Security-Token=tok%2Fen%2B%3D&"));
    assert_non_null(strstr(canonical, "&versionId=1\n"));
    free(query);
    free(canonical);
}

static void formats_amz_date_in_utc(void **state) {
    (void)state;
    char date[17];
    sigv4_amz_date((time_t)1440938160, date);
    assert_string_equal(date, "20150830T123600Z");
    sigv4_amz_date((time_t)0, date);
    assert_string_equal(date, "19700101T000000Z");
}

static void rejects_requests_it_cannot_sign(void **state) {
    (void)state;
    const ol_kv headers[] = {{"Host", "example.amazonaws.com"}};
    const sigv4_scope bad_date = {"us-east-1", "iam", "2015-08-30", 0};
    sigv4_request req = {"GET", "/", NULL, headers, 1, EMPTY_SHA256};
    char *out = (char *)"untouched";
    assert_int_equal(sigv4_canonical_request(&req, &bad_date, &out, NULL), OL_EINVAL);
    req.n_headers = 0;
    assert_int_equal(sigv4_canonical_request(&req, &s3_doc_scope, &out, NULL), OL_EINVAL);
    assert_null(out);
    req.n_headers = 1;
    req.payload_hash = NULL;
    assert_int_equal(sigv4_canonical_request(&req, &s3_doc_scope, &out, NULL), OL_EINVAL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(signs_every_case_of_the_aws_sigv4_test_suite),
        cmocka_unit_test(signs_s3_get_object_with_range_header),
        cmocka_unit_test(signs_s3_put_object_with_payload_hash),
        cmocka_unit_test(signs_s3_get_bucket_lifecycle_with_valueless_parameter),
        cmocka_unit_test(signs_s3_list_objects_with_sorted_query),
        cmocka_unit_test(presigns_s3_get_object_url_as_documented),
        cmocka_unit_test(signs_iam_list_users_as_documented),
        cmocka_unit_test(formats_each_seconds_amz_date),
        cmocka_unit_test(computes_content_md5_of_known_strings),
        cmocka_unit_test(uri_encodes_reserved_unreserved_and_utf8_bytes),
        cmocka_unit_test(canonical_query_treats_plus_as_literal_and_sorts_by_encoded_name),
        cmocka_unit_test(double_encodes_the_path_except_for_s3),
        cmocka_unit_test(presign_rejects_expiry_outside_one_second_to_seven_days),
        cmocka_unit_test(presign_signs_session_token_and_keeps_own_parameters),
        cmocka_unit_test(formats_amz_date_in_utc),
        cmocka_unit_test(kept_signing_keys_never_serve_another_scope),
        cmocka_unit_test(rejects_requests_it_cannot_sign),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
