/* bucket_lifecycle: the bucket stage's destroy and plan/status (bucket.c's descriptor
 * points at thin wrappers). Each returns 0 and completes with host->done once, or a
 * negative code. */
#ifndef OL_PLUGINS_BUCKET_LIFECYCLE_H
#define OL_PLUGINS_BUCKET_LIFECYCLE_H

#include "opsline/opsline.h"

/* What apply converges the bucket to (bucket.c's options), for plan to compare. Borrowed
 * until the plan completes (the options live until fini). */
typedef struct bucket_plan_want {
    int block_public;
    const char *encryption; /* "AES256" or "aws:kms" */
    const char *kms_key_id; /* NULL: the AWS managed key */
    int versioning;
    const ol_kv *tags; /* the tags option (converged only when set) */
    size_t n_tags;
} bucket_plan_want;

int bucket_lifecycle_destroy(const ol_host *h, ol_stage *stage, ol_item *item);
int bucket_lifecycle_plan(const ol_host *h, ol_stage *stage, ol_item *item,
                          const bucket_plan_want *want);

#endif
