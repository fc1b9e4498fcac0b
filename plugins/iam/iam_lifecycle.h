/* iam_lifecycle: the iam stage's destroy, rotate, rotate_commit and plan/status (the
 * descriptor in iam.c points at thin wrappers of these). Each returns 0 and completes with
 * host->done once, or a negative code. */
#ifndef OL_PLUGINS_IAM_LIFECYCLE_H
#define OL_PLUGINS_IAM_LIFECYCLE_H

#include "opsline/opsline.h"

int iam_lifecycle_destroy(const ol_host *h, ol_stage *stage, ol_item *item);
int iam_lifecycle_rotate(const ol_host *h, ol_stage *stage, ol_item *item);
int iam_lifecycle_commit(const ol_host *h, ol_stage *stage, ol_item *item);
/* What plan compares the user's tags with: apply's wanted tags (the ownership tags, then the
 * option's; the array is malloc'd and taken over by the call, strings borrowed until the
 * item ends) and apply's own comparison (iam.c's iam_user_diff). */
typedef struct iam_plan_want {
    ol_kv *tags;
    size_t n_tags;
    size_t (*diff)(const ol_host *h, const ol_xml *doc, const ol_kv *want, size_t n_want,
                   ol_kv *out);
} iam_plan_want;

int iam_lifecycle_plan(const ol_host *h, ol_stage *stage, ol_item *item, iam_plan_want want);

#endif
