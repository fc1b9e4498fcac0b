/* owner: the ownership tags apply puts on what it creates (the bucket, the IAM user), so
 * that destroy, status and plan can tell opsline's resources from others' even without
 * the journal: managed-by=opsline, product=<product>, environment=<environment>. Compiled
 * into each stage that tags (bucket, iam). */
#ifndef OL_PLUGINS_OWNER_H
#define OL_PLUGINS_OWNER_H

#include "opsline/opsline.h"

#define OWNER_TAG_MANAGED_BY "managed-by"
#define OWNER_MANAGED_BY_VALUE "opsline"
#define OWNER_TAG_PRODUCT "product"
#define OWNER_TAG_ENVIRONMENT "environment"
#define OWNER_N_TAGS 3

/* The item's ownership tags into out (strings borrowed from the host until the item ends). */
void owner_tags(const ol_host *host, const ol_item *item, ol_kv out[OWNER_N_TAGS]);

/* Nonzero when key is an ownership tag's key: a stage's tags option may not set it. */
int owner_tag_reserved(const char *key);

/* Checks a stage's tags option against the ownership tags: 0, or OL_ECONFIG after logging
 * which key is reserved and what to do. */
int owner_check_option(ol_stage *stage, const ol_host *host, const ol_kv *tags, size_t n);

/* The wanted tag set into a malloc'd array (*out, *n_out): the ownership tags, then the
 * configured ones. Strings are borrowed. Returns 0 or OL_ENOMEM. */
int owner_merge(const ol_host *host, const ol_item *item, const ol_kv *tags, size_t n, ol_kv **out,
                size_t *n_out);

#endif
