/* policy_lifecycle: the policy stage's destroy and plan/status (policy.c's descriptor points
 * at thin wrappers). Each returns 0 and completes with host->done once, or a negative code. */
#ifndef OL_PLUGINS_POLICY_LIFECYCLE_H
#define OL_PLUGINS_POLICY_LIFECYCLE_H

#include <jansson.h>

#include "opsline/opsline.h"

/* What plan compares: the document apply would write (owned by the callee from the call
 * on), and policy.c's reading of IAM's URL-encoded document and its equality. */
typedef struct policy_wanted {
    json_t *doc;
    json_t *(*decode)(const char *urlencoded);
    int (*equal)(const json_t *a, const json_t *b);
} policy_wanted;

int policy_lifecycle_destroy(const ol_host *h, ol_stage *stage, ol_item *item,
                             const char *policy_name);
int policy_lifecycle_plan(const ol_host *h, ol_stage *stage, ol_item *item, const char *policy_name,
                          policy_wanted wanted);

#endif
