/* error: texts for the OL_E* codes of the SDK header, and the host's one way of handing an
 * error message to a caller (a malloc'd `char **err`, set by ol__fail). */
#ifndef OL_ERROR_H
#define OL_ERROR_H

#include <stdarg.h>

#include "opsline/opsline.h"

/* A static, never-NULL text for code: one per OL_E* code (and OL_OK), "unknown error" for
 * anything else. This is the host->strerror of the plugin API. */
const char *ol_strerror(int code);

/* A malloc'd printf-formatted string (for error messages and paths), NULL on allocation
 * failure. The one place the host formats into fresh memory. */
char *ol__format(const char *fmt, ...) OL_PRINTF(1, 2);
/* The same with a va_list (the caller va_end's it). */
char *ol__vformat(const char *fmt, va_list ap);

/* The one way a host function hands an error message to its caller: replaces *err (NULL or
 * malloc'd; the old message is freed) with a malloc'd printf-formatted message and returns
 * code, so a failure reads `return ol__fail(err, OL_EINVAL, "...", ...);`. err may be NULL
 * when the caller wants only the code. On allocation failure *err is NULL and code is still
 * returned: the caller prints ol_strerror(code) then. */
int ol__fail(char **err, int code, const char *fmt, ...) OL_PRINTF(3, 4);

/* For "did you mean": the candidate closest to name by case-insensitive Levenshtein
 * distance, or NULL when it is more than max_distance edits away (0: a third of name's
 * length plus one) or on allocation failure. host->suggest of the plugin API. */
const char *ol__suggest(const char *name, const char *const *candidates, size_t n,
                        size_t max_distance);

#endif
