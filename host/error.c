/* error: owns the one table that names every OL_E* code, and the formatting of error
 * messages into fresh memory (ol__format, ol__fail). The texts are written for users (they
 * end up in messages like "storing the key: <text>"), so they say what happened, not which
 * constant it was. */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

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
    va_list copy;
    va_copy(copy, ap);
    int n = vsnprintf(NULL, 0, fmt, copy);
    va_end(copy);
    if (n < 0)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (s != NULL)
        vsnprintf(s, (size_t)n + 1, fmt, ap);
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
