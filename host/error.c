/* error: owns the one table that names every OL_E* code, and the formatting of error
 * messages into fresh memory (ol__format, ol__fail). The texts are written for users (they
 * end up in messages like "storing the key: <text>"), so they say what happened, not which
 * constant it was. */
#include "error.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *ol_strerror(int code) {
    switch (code) {
    case OL_OK:
        return "success";
    case OL_EINVAL:
        return "invalid argument or input";
    case OL_ENOMEM:
        return "out of memory";
    case OL_EIO:
        return "local input/output error";
    case OL_ENOENT:
        return "no such entry";
    case OL_EEXIST:
        return "already exists";
    case OL_EAWS:
        return "AWS returned an error";
    case OL_ENET:
        return "network error: no usable answer from the endpoint";
    case OL_ETIMEDOUT:
        return "request timed out";
    case OL_ECANCELED:
        return "operation canceled";
    case OL_EABI:
        return "plugin ABI version mismatch";
    case OL_ECONFIG:
        return "configuration error";
    case OL_ECREDS:
        return "no usable AWS credentials";
    case OL_EQUOTA:
        return "retry quota exhausted: the endpoint keeps failing";
    case OL_ERANGE:
        return "value out of range";
    case OL_EUNKNOWN:
        return "outcome unknown: the request may or may not have taken effect";
    case OL_ESECRET:
        return "refused: would expose a secret";
    default:
        return "unknown error";
    }
}

char *ol__vformat(const char *fmt, va_list ap) {
    /* Formatted once into the stack when it fits (most messages and names do), twice
     * (measure, then write) only when it does not. */
    char small[256];
    va_list copy;
    va_copy(copy, ap);
    int n = vsnprintf(small, sizeof(small), fmt, copy);
    va_end(copy);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s != NULL && (size_t)n < sizeof(small))
        memcpy(s, small, (size_t)n + 1);
    else if (s != NULL)
        vsnprintf(s, (size_t)n + 1, fmt, ap);
    /* A line may hold a secret until the caller masks it: leave no copy on the stack. */
    explicit_bzero(small, sizeof(small));
    return s;
}

char *ol__format(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = ol__vformat(fmt, ap);
    va_end(ap);
    return s;
}

int ol__fail(char **err, int code, const char *fmt, ...) {
    if (err == NULL)
        return code;
    va_list ap;
    va_start(ap, fmt);
    char *msg = ol__vformat(fmt, ap);
    va_end(ap);
    free(*err);
    *err = msg;
    return code;
}

/* Levenshtein distance with two rows, case-insensitive; SIZE_MAX on allocation failure. */
static size_t edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    size_t *prev = calloc(lb + 1, sizeof(*prev));
    size_t *cur = calloc(lb + 1, sizeof(*cur));
    size_t d = SIZE_MAX;
    if (prev == NULL || cur == NULL)
        goto out;
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            int same = tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 1]);
            size_t sub = prev[j - 1] + (size_t)!same;
            size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        size_t *t = prev;
        prev = cur;
        cur = t;
    }
    d = prev[lb];
out:
    free(prev);
    free(cur);
    return d;
}

const char *ol__suggest(const char *name, const char *const *candidates, size_t n,
                        size_t max_distance) {
    if (name == NULL || candidates == NULL)
        return NULL;
    if (max_distance == 0)
        max_distance = strlen(name) / 3 + 1;
    const char *best = NULL;
    size_t best_d = SIZE_MAX;
    for (size_t i = 0; i < n; i++) {
        size_t d = candidates[i] != NULL ? edit_distance(name, candidates[i]) : SIZE_MAX;
        if (d < best_d) {
            best_d = d;
            best = candidates[i];
        }
    }
    return best_d <= max_distance ? best : NULL;
}
