/* sigv4: AWS Signature Version 4, computed from a request as it goes on the wire. It owns
 * the canonical request (method, canonical URI, canonical query, canonical headers, signed
 * headers, payload hash), the string to sign, the signing-key derivation, the
 * Authorization header value and presigned (query-authenticated) URLs. Reference: "Create a
 * signed AWS API request" (IAM User Guide) and "Authenticating Requests (AWS Signature
 * Version 4)" (Amazon S3 API Reference). OpenSSL does the hashing, HMAC and base64, libcurl
 * the percent-encoding; derived keys are wiped with OPENSSL_cleanse. */
#include "sigv4.h"

#include <ctype.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#define ALGORITHM "AWS4-HMAC-SHA256"
#define UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"
#define MAX_EXPIRES 604800UL /* seven days: the longest a presigned URL may live */

/* Derived signing keys kept: one per (secret, day, region, service) in use. A batch signs
 * every request of a day with the same few keys, so each request costs one HMAC instead of
 * five. An entry holds an HMAC context already keyed with kSigning (re-initialised per
 * request with the key it holds, so not even the key schedule is redone) and the SHA-256 of the
 * secret it came from, not the secret itself. */
#define KEY_CACHE_SLOTS 8

typedef struct key_slot {
    int used;
    unsigned char secret_fp[32];
    char date[9];
    char region[64];
    char service[64];
    EVP_MAC_CTX *mac; /* keyed with kSigning */
} key_slot;

static struct {
    pthread_once_t once;
    pthread_mutex_t lock;
    EVP_MD *sha256;    /* fetched once: OpenSSL 3's implicit fetch per call costs more than */
    EVP_MD *md5;       /* the hashing of a short request */
    EVP_MAC_CTX *hmac; /* HMAC-SHA256 with no key yet, dup'd for each key */
    key_slot slot[KEY_CACHE_SLOTS];
    unsigned next;
} crypto = {PTHREAD_ONCE_INIT, PTHREAD_MUTEX_INITIALIZER, NULL, NULL, NULL, {{0}}, 0};

static void crypto_init(void) {
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                           OSSL_PARAM_construct_end()};

    crypto.sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    crypto.md5 = EVP_MD_fetch(NULL, "MD5", NULL);
    crypto.hmac = mac ? EVP_MAC_CTX_new(mac) : NULL;
    if (crypto.hmac != NULL && !EVP_MAC_CTX_set_params(crypto.hmac, params)) {
        EVP_MAC_CTX_free(crypto.hmac);
        crypto.hmac = NULL;
    }
    EVP_MAC_free(mac); /* the context holds its own reference */
}

static int crypto_ready(void) {
    pthread_once(&crypto.once, crypto_init);
    return crypto.sha256 != NULL && crypto.md5 != NULL && crypto.hmac != NULL;
}

/* SHA-256 (or MD5 with md5 set) of data into out, which holds want bytes. */
static int digest(int md5, const void *data, size_t len, unsigned char *out, unsigned int want) {
    unsigned int got = 0;
    return crypto_ready() &&
           EVP_Digest(data, len, out, &got, md5 ? crypto.md5 : crypto.sha256, NULL) && got == want;
}

/* A growing NUL-terminated string. `failed` sticks so callers check once at the end. */
typedef struct strbuf {
    char *p;
    size_t len;
    size_t cap;
    int failed;
} strbuf;

typedef struct query_pair {
    char *name; /* encoded, malloc'd */
    char *value;
} query_pair;

typedef struct header_entry {
    char *name;  /* lowercased */
    char *value; /* trimmed, inner whitespace folded */
    size_t order;
} header_entry;

static void sb_add(strbuf *b, const char *s, size_t n) {
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024; /* one allocation for most requests */
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_adds(strbuf *b, const char *s) {
    sb_add(b, s, strlen(s));
}

/* Hands the string over to the caller, or frees it and returns NULL on failure. */
static char *sb_take(strbuf *b) {
    char *p = b->p;
    b->p = NULL;
    if (b->failed) {
        free(p);
        return NULL;
    }
    return p != NULL ? p : calloc(1, 1);
}

static void hex_encode(const unsigned char *in, size_t n, char *out) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0x0f];
    }
    out[2 * n] = '\0';
}

void sigv4_sha256_hex(const void *data, size_t len, char out[65]) {
    unsigned char md[32];
    if (!digest(0, data, len, md, sizeof(md))) {
        out[0] = '\0';
        return;
    }
    hex_encode(md, sizeof(md), out);
}

void sigv4_content_md5(const void *data, size_t len, char out[25]) {
    unsigned char md[16];
    if (!digest(1, data, len, md, sizeof(md))) {
        out[0] = '\0';
        return;
    }
    EVP_EncodeBlock((unsigned char *)out, md, (int)sizeof(md));
}

void sigv4_amz_date(time_t t, char out[17]) {
    /* Every request of a second has the same date: formatted once per second and thread. */
    static __thread time_t last_t;
    static __thread char last[17];
    struct tm tm;
    if (last[0] != '\0' && t == last_t) {
        memcpy(out, last, 17);
        return;
    }
    if (gmtime_r(&t, &tm) == NULL || strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm) != 16) {
        out[0] = '\0';
        return;
    }
    memcpy(last, out, 17);
    last_t = t;
}

size_t sigv4_unreserved_span(const char *s, size_t len) {
    size_t n = 0;
    for (; n < len; n++) {
        unsigned char c = (unsigned char)s[n];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.' || c == '~'))
            break;
    }
    return n;
}

/* Percent-encodes one piece with libcurl, whose rule is exactly SigV4's: unreserved
 * A-Z a-z 0-9 - _ . ~ kept, every other byte %XX with uppercase hex. */
static int escape_into(strbuf *b, const char *s, size_t len) {
    if (len == 0) /* curl_easy_escape would take strlen() of a zero length */
        return 0;
    if (sigv4_unreserved_span(s, len) == len) { /* nothing to encode: no call, no copy */
        sb_add(b, s, len);
        return b->failed ? OL_ENOMEM : 0;
    }
    if (len > INT_MAX)
        return OL_EINVAL;
    char *e = curl_easy_escape(NULL, s, (int)len);
    if (e == NULL)
        return OL_ENOMEM;
    sb_adds(b, e);
    curl_free(e);
    return b->failed ? OL_ENOMEM : 0;
}

char *sigv4_uri_encode(const char *s, size_t len, int keep_slash) {
    strbuf b = {0};
    size_t start = 0;
    if (s == NULL)
        return NULL;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && !(keep_slash && s[i] == '/'))
            continue;
        if (escape_into(&b, s + start, i - start) != 0)
            goto fail;
        if (i < len)
            sb_add(&b, "/", 1);
        start = i + 1;
    }
    return sb_take(&b);
fail:
    free(b.p);
    return NULL;
}

/* Canonical URI for services other than S3: RFC 3986 remove_dot_segments with empty
 * segments dropped, then every segment encoded again (the path as sent is already encoded
 * once, so non-S3 services sign it double-encoded: see "Create a canonical request"). */
static char *normalized_uri(const char *path) {
    size_t n = strlen(path);
    size_t *starts = NULL, *lens = NULL;
    size_t depth = 0;
    int trailing = 0;
    strbuf b = {0};
    char *out = NULL;

    starts = malloc((n + 1) * sizeof(*starts));
    lens = malloc((n + 1) * sizeof(*lens));
    if (starts == NULL || lens == NULL)
        goto done;
    for (size_t i = 0; i < n;) {
        while (i < n && path[i] == '/')
            i++;
        size_t s = i;
        while (i < n && path[i] != '/')
            i++;
        size_t len = i - s;
        /* A path ending in "/", "/." or "/.." names a directory: keep its trailing slash. */
        trailing = len == 0 || (len == 1 && path[s] == '.') ||
                   (len == 2 && path[s] == '.' && path[s + 1] == '.');
        if (len == 0 || (len == 1 && path[s] == '.'))
            continue;
        if (len == 2 && path[s] == '.' && path[s + 1] == '.') {
            if (depth > 0)
                depth--;
            continue;
        }
        starts[depth] = s;
        lens[depth] = len;
        depth++;
    }
    for (size_t d = 0; d < depth; d++) {
        sb_add(&b, "/", 1);
        if (escape_into(&b, path + starts[d], lens[d]) != 0)
            goto done;
    }
    if (depth == 0 || trailing)
        sb_add(&b, "/", 1);
    out = sb_take(&b);
done:
    free(b.p);
    free(starts);
    free(lens);
    return out;
}

static int pair_cmp(const void *a, const void *b) {
    const query_pair *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c != 0 ? c : strcmp(x->value, y->value);
}

/* Decodes a name or value from its wire form and encodes it the SigV4 way. '+' stays a
 * literal '+' (encoded %2B): SigV4 query strings are not form-encoded. */
static char *reencode(const char *s, size_t len) {
    if (len == 0)
        return calloc(1, 1);
    if (len > INT_MAX)
        return NULL;
    int dlen = 0;
    char *d = curl_easy_unescape(NULL, s, (int)len, &dlen);
    if (d == NULL)
        return NULL;
    char *e = sigv4_uri_encode(d, (size_t)dlen, 0);
    curl_free(d);
    return e;
}

/* "Create a canonical query string": each name and value URI-encoded, sorted by name then
 * value, joined with '&'; a parameter without '=' has an empty value. */
static int canonical_query(const char *query, strbuf *out) {
    query_pair *pairs = NULL;
    size_t n = 0, cap = 0;
    int rc = OL_ENOMEM;

    for (const char *p = query; p != NULL && *p != '\0';) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        if (len > 0) {
            const char *eq = memchr(p, '=', len);
            size_t nlen = eq ? (size_t)(eq - p) : len;
            if (n == cap) {
                size_t ncap = cap ? cap * 2 : 8;
                query_pair *np = realloc(pairs, ncap * sizeof(*np));
                if (np == NULL)
                    goto done;
                pairs = np;
                cap = ncap;
            }
            pairs[n].name = reencode(p, nlen);
            pairs[n].value = eq ? reencode(eq + 1, len - nlen - 1) : calloc(1, 1);
            n++;
            if (pairs[n - 1].name == NULL || pairs[n - 1].value == NULL)
                goto done;
        }
        p = amp ? amp + 1 : NULL;
    }
    if (n > 0)
        qsort(pairs, n, sizeof(*pairs), pair_cmp);
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            sb_add(out, "&", 1);
        sb_adds(out, pairs[i].name);
        sb_add(out, "=", 1);
        sb_adds(out, pairs[i].value);
    }
    rc = out->failed ? OL_ENOMEM : 0;
done:
    for (size_t i = 0; i < n; i++) {
        free(pairs[i].name);
        free(pairs[i].value);
    }
    free(pairs);
    return rc;
}

static int is_space(char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Trims the value and folds every run of whitespace (including the line breaks of an
 * obsolete folded multi-line value) into one space, as "Create a canonical request" asks:
 * written to out (strlen(v) + 1 bytes); returns the end of what it wrote. */
static char *canonical_header_value(const char *v, char *out) {
    int pending_space = 0;
    char *o = out;
    for (; *v != '\0'; v++) {
        if (is_space(*v)) {
            pending_space = o > out;
            continue;
        }
        if (pending_space)
            *o++ = ' ';
        pending_space = 0;
        *o++ = *v;
    }
    *o = '\0';
    return o + 1;
}

/* name trimmed and lowercased into out (strlen(name) + 1 bytes); returns out's end. */
static char *lowercase_name(const char *name, char *out) {
    while (is_space(*name))
        name++;
    size_t n = strlen(name);
    while (n > 0 && is_space(name[n - 1]))
        n--;
    for (size_t i = 0; i < n; i++)
        out[i] = (char)tolower((unsigned char)name[i]);
    out[n] = '\0';
    return out + n + 1;
}

static int header_cmp(const void *a, const void *b) {
    const header_entry *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c != 0)
        return c;
    return x->order < y->order ? -1 : (x->order > y->order ? 1 : 0);
}

/* Canonical headers ("name:value\n" each, sorted, duplicates merged with ',' in the order
 * they appear) into *hdrs and the signed-headers list into *signed_list. */
static int canonical_headers(const ol_kv *headers, size_t n, strbuf *hdrs, strbuf *signed_list) {
    header_entry *e = NULL;
    char *text = NULL, *at;
    size_t size = 0;
    int rc = OL_ENOMEM;

    if (n == 0)
        return OL_EINVAL; /* Host is always signed */
    for (size_t i = 0; i < n; i++) {
        if (headers[i].name == NULL || headers[i].value == NULL)
            return OL_EINVAL;
        size += strlen(headers[i].name) + strlen(headers[i].value) + 2;
    }
    /* The entries and every name and value in two blocks, not two allocations a header. */
    e = calloc(n, sizeof(*e));
    at = text = malloc(size);
    if (e == NULL || text == NULL)
        goto done;
    for (size_t i = 0; i < n; i++) {
        e[i].order = i;
        e[i].name = at;
        at = lowercase_name(headers[i].name, at);
        e[i].value = at;
        at = canonical_header_value(headers[i].value, at);
        if (e[i].name[0] == '\0') {
            rc = OL_EINVAL;
            goto done;
        }
    }
    qsort(e, n, sizeof(*e), header_cmp);
    for (size_t i = 0; i < n; i++) {
        int same = i > 0 && strcmp(e[i].name, e[i - 1].name) == 0;
        if (same) {
            sb_add(hdrs, ",", 1);
        } else {
            if (i > 0) {
                sb_add(hdrs, "\n", 1);
                sb_add(signed_list, ";", 1);
            }
            sb_adds(hdrs, e[i].name);
            sb_add(hdrs, ":", 1);
            sb_adds(signed_list, e[i].name);
        }
        sb_adds(hdrs, e[i].value);
    }
    sb_add(hdrs, "\n", 1);
    rc = hdrs->failed || signed_list->failed ? OL_ENOMEM : 0;
done:
    free(text);
    free(e);
    return rc;
}

static int scope_valid(const sigv4_scope *scope) {
    return scope != NULL && scope->region != NULL && scope->service != NULL &&
           scope->amz_date != NULL && strlen(scope->amz_date) == 16 && scope->region[0] != '\0' &&
           scope->service[0] != '\0';
}

static int request_valid(const sigv4_request *req) {
    return req != NULL && req->method != NULL && req->method[0] != '\0' && req->path != NULL &&
           (req->headers != NULL || req->n_headers == 0);
}

int sigv4_canonical_request(const sigv4_request *req, const sigv4_scope *scope, char **out,
                            char **signed_headers) {
    strbuf b = {0}, hdrs = {0}, signed_list = {0};
    char *uri = NULL;
    int rc;

    if (out == NULL || !request_valid(req) || !scope_valid(scope) || req->payload_hash == NULL)
        return OL_EINVAL;
    *out = NULL;
    if (signed_headers != NULL)
        *signed_headers = NULL;

    const char *path = req->path[0] != '\0' ? req->path : "/";
    /* "Each path segment must be URI-encoded twice ... except for Amazon S3 which only gets
     * URI-encoded once" and S3 object keys are signed as sent, dot segments included. */
    uri = scope->s3 ? strdup(path) : normalized_uri(path);
    if (uri == NULL)
        return OL_ENOMEM;

    sb_adds(&b, req->method);
    sb_add(&b, "\n", 1);
    sb_adds(&b, uri);
    sb_add(&b, "\n", 1);
    rc = canonical_query(req->query, &b);
    if (rc != 0)
        goto fail;
    sb_add(&b, "\n", 1);
    rc = canonical_headers(req->headers, req->n_headers, &hdrs, &signed_list);
    if (rc != 0)
        goto fail;
    sb_add(&b, hdrs.p, hdrs.len);
    sb_add(&b, "\n", 1);
    sb_add(&b, signed_list.p, signed_list.len);
    sb_add(&b, "\n", 1);
    sb_adds(&b, req->payload_hash);
    rc = OL_ENOMEM;
    if (b.failed)
        goto fail;
    if (signed_headers != NULL) {
        *signed_headers = sb_take(&signed_list);
        if (*signed_headers == NULL)
            goto fail;
    }
    *out = sb_take(&b);
    rc = 0;
fail:
    free(b.p);
    free(hdrs.p);
    free(signed_list.p);
    free(uri);
    return rc;
}

/* "20150830/us-east-1/iam/aws4_request" */
static int credential_scope(const sigv4_scope *scope, strbuf *b) {
    sb_add(b, scope->amz_date, 8);
    sb_add(b, "/", 1);
    sb_adds(b, scope->region);
    sb_add(b, "/", 1);
    sb_adds(b, scope->service);
    sb_adds(b, "/aws4_request");
    return b->failed ? OL_ENOMEM : 0;
}

int sigv4_string_to_sign(const sigv4_scope *scope, const char *canonical_request, char **out) {
    strbuf b = {0};
    char hash[65];

    if (out == NULL || !scope_valid(scope) || canonical_request == NULL)
        return OL_EINVAL;
    *out = NULL;
    sigv4_sha256_hex(canonical_request, strlen(canonical_request), hash);
    if (hash[0] == '\0')
        return OL_ENOMEM;
    sb_adds(&b, ALGORITHM "\n");
    sb_adds(&b, scope->amz_date);
    sb_add(&b, "\n", 1);
    credential_scope(scope, &b);
    sb_add(&b, "\n", 1);
    sb_adds(&b, hash);
    *out = sb_take(&b);
    return *out ? 0 : OL_ENOMEM;
}

/* HMAC-SHA256 of data under a context keyed already (the context is consumed: finalized). */
static int mac_finish(EVP_MAC_CTX *ctx, const void *data, size_t len, unsigned char out[32]) {
    size_t out_len = 0;
    return EVP_MAC_update(ctx, data, len) && EVP_MAC_final(ctx, out, &out_len, 32) && out_len == 32
               ? 0
               : OL_ENOMEM;
}

/* A fresh HMAC-SHA256 context keyed with key, or NULL. */
static EVP_MAC_CTX *mac_keyed(const void *key, size_t key_len) {
    EVP_MAC_CTX *ctx = crypto_ready() ? EVP_MAC_CTX_dup(crypto.hmac) : NULL;
    if (ctx != NULL && !EVP_MAC_init(ctx, key, key_len, NULL)) {
        EVP_MAC_CTX_free(ctx);
        ctx = NULL;
    }
    return ctx;
}

static int hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                       unsigned char out[32]) {
    EVP_MAC_CTX *ctx = mac_keyed(key, key_len);
    int rc = ctx ? mac_finish(ctx, data, len, out) : OL_ENOMEM;
    EVP_MAC_CTX_free(ctx);
    return rc;
}

/* kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request"),
 * as an HMAC context keyed with it. Every intermediate key is wiped. */
static EVP_MAC_CTX *derive_signing_mac(const sigv4_scope *scope, const char *secret_access_key) {
    unsigned char k1[32], k2[32];
    size_t secret_len = strlen(secret_access_key) + 4;
    char *secret = malloc(secret_len + 1);
    EVP_MAC_CTX *mac = NULL;

    if (secret == NULL)
        return NULL;
    memcpy(secret, "AWS4", 4);
    memcpy(secret + 4, secret_access_key, secret_len - 4 + 1);
    if (hmac_sha256(secret, secret_len, scope->amz_date, 8, k1) == 0 &&
        hmac_sha256(k1, 32, scope->region, strlen(scope->region), k2) == 0 &&
        hmac_sha256(k2, 32, scope->service, strlen(scope->service), k1) == 0 &&
        hmac_sha256(k1, 32, "aws4_request", 12, k2) == 0)
        mac = mac_keyed(k2, 32);
    OPENSSL_cleanse(secret, secret_len);
    OPENSSL_cleanse(k1, sizeof(k1));
    OPENSSL_cleanse(k2, sizeof(k2));
    free(secret);
    return mac;
}

static int slot_matches(const key_slot *k, const unsigned char fp[32], const sigv4_scope *scope) {
    return k->used && CRYPTO_memcmp(k->secret_fp, fp, 32) == 0 &&
           strncmp(k->date, scope->amz_date, 8) == 0 && strcmp(k->region, scope->region) == 0 &&
           strcmp(k->service, scope->service) == 0;
}

/* HMAC(kSigning, data) into sig with the cached key of the scope, if one is cached: the
 * slot's context is re-initialised with the key it holds (EVP_MAC_init with no key keeps the
 * key schedule), under the lock. OL_ENOENT when no slot has the key. */
static int cached_mac(const unsigned char fp[32], const sigv4_scope *scope, const char *data,
                      unsigned char sig[32]) {
    int rc = OL_ENOENT;
    pthread_mutex_lock(&crypto.lock);
    for (unsigned i = 0; i < KEY_CACHE_SLOTS; i++) {
        if (slot_matches(&crypto.slot[i], fp, scope)) {
            EVP_MAC_CTX *mac = crypto.slot[i].mac;
            rc = EVP_MAC_init(mac, NULL, 0, NULL) ? mac_finish(mac, data, strlen(data), sig)
                                                  : OL_ENOMEM;
            break;
        }
    }
    pthread_mutex_unlock(&crypto.lock);
    return rc;
}

/* A context keyed with the scope's signing key, derived, and cached (a copy) when the names
 * fit a slot. NULL when out of memory. */
static EVP_MAC_CTX *signing_mac(const unsigned char fp[32], const sigv4_scope *scope,
                                const char *secret_access_key) {
    EVP_MAC_CTX *fresh = derive_signing_mac(scope, secret_access_key);
    if (fresh == NULL || strlen(scope->region) >= sizeof(crypto.slot[0].region) ||
        strlen(scope->service) >= sizeof(crypto.slot[0].service))
        return fresh;
    pthread_mutex_lock(&crypto.lock);
    key_slot *k = &crypto.slot[crypto.next++ % KEY_CACHE_SLOTS];
    EVP_MAC_CTX_free(k->mac); /* EVP_MAC_CTX_free wipes the key it held */
    k->mac = EVP_MAC_CTX_dup(fresh);
    k->used = k->mac != NULL;
    memcpy(k->secret_fp, fp, 32);
    memcpy(k->date, scope->amz_date, 8);
    k->date[8] = '\0';
    strcpy(k->region, scope->region);
    strcpy(k->service, scope->service);
    pthread_mutex_unlock(&crypto.lock);
    return fresh;
}

void sigv4_forget_keys(void) {
    pthread_mutex_lock(&crypto.lock);
    for (unsigned i = 0; i < KEY_CACHE_SLOTS; i++) {
        EVP_MAC_CTX_free(crypto.slot[i].mac);
        OPENSSL_cleanse(&crypto.slot[i], sizeof(crypto.slot[i]));
    }
    pthread_mutex_unlock(&crypto.lock);
}

/* The signature is HMAC(kSigning, string to sign). */
int sigv4_signature(const sigv4_scope *scope, const char *secret_access_key,
                    const char *string_to_sign, char out[65]) {
    unsigned char sig[32], fp[32];
    EVP_MAC_CTX *mac;
    int rc;

    if (out == NULL)
        return OL_EINVAL;
    out[0] = '\0';
    if (!scope_valid(scope) || secret_access_key == NULL || string_to_sign == NULL)
        return OL_EINVAL;
    if (!digest(0, secret_access_key, strlen(secret_access_key), fp, sizeof(fp)))
        return OL_ENOMEM;
    rc = cached_mac(fp, scope, string_to_sign, sig);
    if (rc == OL_ENOENT) {
        if ((mac = signing_mac(fp, scope, secret_access_key)) == NULL)
            return OL_ENOMEM;
        rc = mac_finish(mac, string_to_sign, strlen(string_to_sign), sig);
        EVP_MAC_CTX_free(mac);
    }
    if (rc == 0)
        hex_encode(sig, sizeof(sig), out);
    OPENSSL_cleanse(sig, sizeof(sig));
    return rc;
}

static int creds_valid(const sigv4_creds *creds) {
    return creds != NULL && creds->access_key_id != NULL && creds->access_key_id[0] != '\0' &&
           creds->secret_access_key != NULL;
}

/* Canonical request -> string to sign -> signature, with the intermediates optionally kept. */
static int sign(const sigv4_request *req, const sigv4_scope *scope, const char *secret,
                char sig[65], char **signed_headers, char **canonical_out, char **sts_out) {
    char *canonical = NULL, *sts = NULL;
    int rc = sigv4_canonical_request(req, scope, &canonical, signed_headers);
    if (rc != 0)
        return rc;
    rc = sigv4_string_to_sign(scope, canonical, &sts);
    if (rc == 0)
        rc = sigv4_signature(scope, secret, sts, sig);
    if (rc == 0 && canonical_out != NULL) {
        *canonical_out = canonical;
        canonical = NULL;
    }
    if (rc == 0 && sts_out != NULL) {
        *sts_out = sts;
        sts = NULL;
    }
    if (rc != 0 && signed_headers != NULL) {
        free(*signed_headers);
        *signed_headers = NULL;
    }
    free(canonical);
    free(sts);
    return rc;
}

int sigv4_authorization(const sigv4_request *req, const sigv4_scope *scope,
                        const sigv4_creds *creds, char **out) {
    char sig[65];
    char *signed_headers = NULL;
    strbuf b = {0};
    int rc;

    if (out == NULL || !creds_valid(creds))
        return OL_EINVAL;
    *out = NULL;
    rc = sign(req, scope, creds->secret_access_key, sig, &signed_headers, NULL, NULL);
    if (rc != 0)
        return rc;
    sb_adds(&b, ALGORITHM " Credential=");
    sb_adds(&b, creds->access_key_id);
    sb_add(&b, "/", 1);
    credential_scope(scope, &b);
    sb_adds(&b, ", SignedHeaders=");
    sb_adds(&b, signed_headers);
    sb_adds(&b, ", Signature=");
    sb_adds(&b, sig);
    free(signed_headers);
    *out = sb_take(&b);
    return *out ? 0 : OL_ENOMEM;
}

/* The signed-headers list alone, for X-Amz-SignedHeaders, which is signed itself. */
static char *signed_header_list(const sigv4_request *req) {
    strbuf hdrs = {0}, list = {0};
    int rc = canonical_headers(req->headers, req->n_headers, &hdrs, &list);
    free(hdrs.p);
    if (rc != 0) {
        free(list.p);
        return NULL;
    }
    return sb_take(&list);
}

static int add_param(strbuf *b, const char *name, const char *value) {
    if (b->len > 0)
        sb_add(b, "&", 1);
    sb_adds(b, name);
    sb_add(b, "=", 1);
    return escape_into(b, value, strlen(value));
}

/* The presigned query: the request's own parameters as sent, then the X-Amz-* ones in the
 * order AWS's S3 presigned-URL example shows them (the canonical query sorts them anyway).
 * 0 or OL_ENOMEM. */
static int presign_query(strbuf *q, const sigv4_request *req, const sigv4_scope *scope,
                         const sigv4_creds *creds, unsigned long expires, const char *signed_list) {
    strbuf cred = {0};
    char expires_text[24];
    int rc = OL_ENOMEM;
    sb_adds(&cred, creds->access_key_id);
    sb_add(&cred, "/", 1);
    credential_scope(scope, &cred);
    int n = snprintf(expires_text, sizeof(expires_text), "%lu", expires);
    if (cred.failed || n < 0 || (size_t)n >= sizeof(expires_text))
        goto out;
    if (req->query != NULL)
        sb_adds(q, req->query);
    if (add_param(q, "X-Amz-Algorithm", ALGORITHM) != 0 ||
        add_param(q, "X-Amz-Credential", cred.p) != 0 ||
        add_param(q, "X-Amz-Date", scope->amz_date) != 0 ||
        add_param(q, "X-Amz-Expires", expires_text) != 0)
        goto out;
    if (creds->session_token != NULL &&
        add_param(q, "X-Amz-Security-Token", creds->session_token) != 0)
        goto out;
    if (add_param(q, "X-Amz-SignedHeaders", signed_list) != 0)
        goto out;
    rc = 0;
out:
    free(cred.p);
    return rc;
}

static void free_debug_outputs(char **canonical_out, char **string_to_sign_out) {
    if (canonical_out != NULL) {
        free(*canonical_out);
        *canonical_out = NULL;
    }
    if (string_to_sign_out != NULL) {
        free(*string_to_sign_out);
        *string_to_sign_out = NULL;
    }
}

int sigv4_presign_debug(const sigv4_request *req, const sigv4_scope *scope,
                        const sigv4_creds *creds, unsigned long expires, char **query_out,
                        char **canonical_out, char **string_to_sign_out) {
    if (query_out == NULL || !request_valid(req) || !scope_valid(scope) || !creds_valid(creds))
        return OL_EINVAL;
    *query_out = NULL;
    if (canonical_out != NULL)
        *canonical_out = NULL;
    if (string_to_sign_out != NULL)
        *string_to_sign_out = NULL;
    /* "Minimum value you can set is 1, and the maximum is 604800 (seven days)". */
    if (expires < 1 || expires > MAX_EXPIRES)
        return OL_ERANGE;
    char *signed_list = signed_header_list(req);
    if (signed_list == NULL)
        return req->n_headers == 0 ? OL_EINVAL : OL_ENOMEM;
    strbuf q = {0};
    char sig[65];
    int rc = presign_query(&q, req, scope, creds, expires, signed_list);
    if (rc == 0) {
        sigv4_request signed_req = *req;
        signed_req.query = q.p;
        /* S3 cannot know the payload of a presigned request in advance ("Authenticating
         * Requests: Using Query Parameters"), so it is always UNSIGNED-PAYLOAD there. */
        if (strcmp(scope->service, "s3") == 0 || signed_req.payload_hash == NULL)
            signed_req.payload_hash = UNSIGNED_PAYLOAD;
        rc = sign(&signed_req, scope, creds->secret_access_key, sig, NULL, canonical_out,
                  string_to_sign_out);
    }
    if (rc == 0) {
        sb_adds(&q, "&X-Amz-Signature=");
        sb_adds(&q, sig);
        *query_out = sb_take(&q);
        rc = *query_out ? 0 : OL_ENOMEM;
    }
    if (rc != 0)
        free_debug_outputs(canonical_out, string_to_sign_out);
    free(q.p);
    free(signed_list);
    return rc;
}

int sigv4_presign(const sigv4_request *req, const sigv4_scope *scope, const sigv4_creds *creds,
                  unsigned long expires, char **query_out) {
    return sigv4_presign_debug(req, scope, creds, expires, query_out, NULL, NULL);
}
