/* storejson: jansson trees that may hold secrets (a password manager's file, a secret's
 * value), for the stores that parse JSON. jansson frees without wiping: these overwrite
 * every string first, with host->wipe. */
#ifndef OL_SECRETS_STOREJSON_H
#define OL_SECRETS_STOREJSON_H

#include <jansson.h>

#include "opsline/opsline.h"

/* Overwrites every string value of the tree (keys are names, not secrets). */
void storejson_wipe(const ol_host *h, json_t *v);
/* storejson_wipe, then drops the reference. v may be NULL. */
void storejson_free(const ol_host *h, json_t *v);
/* The string member key of obj, or NULL (obj not an object, no such member, not a string). */
const char *storejson_str(const json_t *obj, const char *key);

#endif
