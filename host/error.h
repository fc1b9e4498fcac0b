/* error: texts for the OL_E* codes of the SDK header. */
#ifndef OL_ERROR_H
#define OL_ERROR_H

#include "opsline/opsline.h"

/* A static, never-NULL text for code: one per OL_E* code (and OL_OK), "unknown error" for
 * anything else. This is the host->strerror of the plugin API. */
const char *ol_strerror(int code);

/* A malloc'd printf-formatted string (for error messages and paths), NULL on allocation
 * failure. The one place the host formats into fresh memory. */
char *ol__format(const char *fmt, ...) OL_PRINTF(1, 2);

#endif
