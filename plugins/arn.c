/* arn: partitions and S3 bucket ARNs, shared by the bucket stage (which publishes
 * bucket.arn) and the policy stage (which must size its policy before that exists). */
#include "arn.h"

#include <string.h>

const char *arn_partition(const char *region) {
    if (region == NULL)
        return "aws";
    if (strncmp(region, "cn-", 3) == 0)
        return "aws-cn";
    if (strncmp(region, "us-gov-", 7) == 0)
        return "aws-us-gov";
    if (strncmp(region, "us-isob-", 8) == 0)
        return "aws-iso-b";
    if (strncmp(region, "us-iso-", 7) == 0)
        return "aws-iso";
    return "aws";
}

char *arn_s3_bucket(const ol_host *host, const char *region, const char *bucket) {
    return host->format("arn:%s:s3:::%s", arn_partition(region), bucket);
}
