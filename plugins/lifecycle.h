/* lifecycle: what the bundled stages share for destroy, rotate, plan and status: whether a
 * resource is opsline's (its managed-by=opsline tag, or the journal), the refusal message
 * when it is not, and IAM Query requests with the fixed parameters. Compiled into each stage
 * that needs it, like arn.c. */
#ifndef OL_PLUGINS_LIFECYCLE_H
#define OL_PLUGINS_LIFECYCLE_H

#include "opsline/opsline.h"

#include "owner.h"

/* The ownership tag apply puts on the bucket and the user (owner.h). */
#define LIFECYCLE_TAG_KEY OWNER_TAG_MANAGED_BY
#define LIFECYCLE_TAG_VALUE OWNER_MANAGED_BY_VALUE

/* Nonzero when the tags in doc (element paths of the keys and the values) include
 * managed-by=opsline. doc may be NULL (no tags). */
int lifecycle_tagged(const ol_host *h, const ol_xml *doc, const char *key_path,
                     const char *value_path);

/* Nonzero when the journal says one of stages (NULL-terminated names) created or updated
 * something for the item: opsline made it, even if its tag is gone. */
int lifecycle_journaled(const ol_host *h, const ol_item *item, const char *const *stages);

/* The refusal of destroy for a resource opsline did not create (host->format'd). */
char *lifecycle_not_ours(const ol_host *h, const char *what, const char *name);

/* Sends an IAM Query request: Action, Version, then params. consistent: retry NoSuchEntity
 * while IAM propagates. Returns what host->aws_send returns. */
int lifecycle_iam_send(const ol_host *h, ol_item *item, const char *action, const ol_kv *params,
                       size_t n, int consistent, ol_aws_cb cb, void *arg);

/* host->aws_reason for the action printf'd from fmt (host-allocated, or NULL). */
char *lifecycle_aws_reason(const ol_host *h, const ol_aws_response *res, const char *fmt, ...)
    OL_PRINTF(3, 4);

/* Nonzero when res is the AWS error code. */
int lifecycle_is_error(const ol_aws_response *res, const char *code);

#endif
