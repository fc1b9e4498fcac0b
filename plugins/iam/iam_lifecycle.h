/* iam_lifecycle: the iam stage's destroy, rotate, rotate_commit and plan/status (the
 * descriptor in iam.c points at thin wrappers of these). Each returns 0 and completes with
 * host->done once, or a negative code. */
#ifndef OL_PLUGINS_IAM_LIFECYCLE_H
#define OL_PLUGINS_IAM_LIFECYCLE_H

#include "opsline/opsline.h"

int iam_lifecycle_destroy(const ol_host *h, ol_stage *stage, ol_item *item);
int iam_lifecycle_rotate(const ol_host *h, ol_stage *stage, ol_item *item);
int iam_lifecycle_commit(const ol_host *h, ol_stage *stage, ol_item *item);
/* tags: the iam stage's tags option (borrowed until fini), compared in plan. */
int iam_lifecycle_plan(const ol_host *h, ol_stage *stage, ol_item *item, const ol_map *tags);

#endif
