/* arn: Amazon Resource Names for the bundled stages (compiled into each stage that needs
 * them: stages link nothing of the host's). */
#ifndef OL_PLUGINS_ARN_H
#define OL_PLUGINS_ARN_H

/* AWS General Reference, "ARNs": the partition of a region ("aws" when NULL). Static. */
const char *arn_partition(const char *region);

/* "arn:<partition>:s3:::<bucket>", malloc'd, or NULL when out of memory. */
char *arn_s3_bucket(const char *region, const char *bucket);

#endif
