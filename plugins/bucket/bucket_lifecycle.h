/* bucket_lifecycle: the bucket stage's destroy and plan/status (bucket.c's descriptor
 * points at thin wrappers). Each returns 0 and completes with host->done once, or a
 * negative code. */
#ifndef OL_PLUGINS_BUCKET_LIFECYCLE_H
#define OL_PLUGINS_BUCKET_LIFECYCLE_H

#include "opsline/opsline.h"

int bucket_lifecycle_destroy(const ol_host *h, ol_stage *stage, ol_item *item);
int bucket_lifecycle_plan(const ol_host *h, ol_stage *stage, ol_item *item);

#endif
