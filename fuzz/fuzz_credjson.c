/* fuzz_credjson: the credentials a process or a server hands over (host/aws/credentials.c,
 * credentials_json_parse): what a credential_process prints, and the answers of the
 * container credentials endpoint and of instance metadata. All three come from outside
 * opsline (a command named in a config file, an HTTP server). The first byte picks whether
 * "Version": 1 is required (credential_process) or not (the two endpoints); the rest is the
 * document. Checked beyond "no crash":
 * - a success has a key id and a secret, no error text, and an expiry that is none or later
 *   than now;
 * - a refusal has an error text and leaves nothing in the output;
 * - the error text never quotes a secret of the input (SecretAccessKey, SessionToken,
 *   Token), checked for every such value of at least 8 bytes holding a '/', a byte none of
 *   the messages use;
 * - an Expiration that credentials_parse_time accepts reads back the same after being
 *   written out again in the canonical form (YYYY-MM-DDTHH:MM:SSZ). */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "credentials.h"
#include "opsline/opsline.h"

#define WHAT "credential_process of profile 'fuzz'"

/* The secret strings of doc (an object), at most max of them. */
static size_t secrets_of(const json_t *doc, const char **out, size_t max) {
    static const char *const keys[] = {"SecretAccessKey", "SessionToken", "Token"};
    size_t n = 0;
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]) && n < max; i++) {
        const char *v = json_string_value(json_object_get(doc, keys[i]));
        if (v != NULL && strlen(v) >= 8 && strchr(v, '/') != NULL)
            out[n++] = v;
    }
    return n;
}

static void check_time_round_trip(const char *text) {
    long long t = credentials_parse_time(text);
    if (t < 0)
        return;
    time_t tt = (time_t)t;
    struct tm tm;
    if (gmtime_r(&tt, &tm) == NULL || tm.tm_year + 1900 < 1 || tm.tm_year + 1900 > 9999)
        return; /* outside what four digits of year can write again */
    char canon[32];
    if (strftime(canon, sizeof(canon), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        abort();
    if (credentials_parse_time(canon) != t)
        abort(); /* the canonical form of an accepted time reads back as another time */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    int need_version = data[0] & 1;
    const char *buf = (const char *)data + 1;
    size_t len = size - 1;

    credentials c;
    long long expires = -1;
    char *err = NULL;
    int rc = credentials_json_parse(buf, len, WHAT, need_version, &c, &expires, &err);
    if (rc == OL_ENOMEM) {
        /* nothing to check: the allocation failed, not the input */
    } else if (rc == 0) {
        if (err != NULL || c.access_key_id == NULL || c.access_key_id[0] == '\0' ||
            c.secret_access_key == NULL || c.secret_access_key[0] == '\0' || c.source == NULL ||
            strcmp(c.source, WHAT) != 0 || expires < 0 ||
            (expires != 0 && expires <= (long long)time(NULL)))
            abort();
        if (c.session_token != NULL && c.session_token[0] == '\0')
            abort(); /* an empty token is no token */
    } else {
        if (err == NULL || err[0] == '\0' || c.access_key_id != NULL ||
            c.secret_access_key != NULL || c.session_token != NULL || c.source != NULL)
            abort();
        json_t *doc = json_loadb(buf, len, 0, NULL);
        const char *secrets[3];
        size_t n = json_is_object(doc) ? secrets_of(doc, secrets, 3) : 0;
        for (size_t i = 0; i < n; i++)
            if (strstr(err, secrets[i]) != NULL)
                abort(); /* a refusal quoted a secret */
        json_decref(doc);
    }
    credentials_free(&c);
    free(err);

    /* The same bytes as a time on their own (NUL-terminated copy). */
    char *text = malloc(len + 1);
    if (text == NULL)
        abort();
    memcpy(text, buf, len);
    text[len] = '\0';
    check_time_round_trip(text);
    free(text);
    return 0;
}
