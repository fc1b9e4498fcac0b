/* arn: the AWS facts the bundled stages share: Amazon Resource Names (bucket and policy)
 * and the IAM Query API's version and consistency window (iam and policy). Compiled into
 * each stage that needs it: stages link nothing of the host's. */
#ifndef OL_PLUGINS_ARN_H
#define OL_PLUGINS_ARN_H

#include "opsline/opsline.h"

/* IAM API Reference, "Common parameters": the Version every IAM Query request sends. */
#define IAM_API_VERSION "2010-05-08"

/* IAM is eventually consistent: a user created a moment ago may still be unknown to the
 * next call (IAM User Guide, "Changes that I make are not always immediately visible").
 * Requests that may follow CreateUser retry NoSuchEntity for this long. */
#define IAM_CONSISTENCY_MS 30000u

/* AWS General Reference, "ARNs": the partition of a region ("aws" when NULL). Static. */
const char *arn_partition(const char *region);

/* "arn:<partition>:s3:::<bucket>", allocated with host->format (free with host->free), or
 * NULL when out of memory. */
char *arn_s3_bucket(const ol_host *host, const char *region, const char *bucket);

#endif
