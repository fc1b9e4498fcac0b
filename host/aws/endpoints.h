/* endpoints: which URL and signing region a service call goes to. AWS_ENDPOINT_URL_<SERVICE>
 * wins over AWS_ENDPOINT_URL, which wins over the profile's endpoint_url; otherwise the
 * real AWS endpoint of the region's partition (aws, aws-cn, aws-us-gov). IAM is global:
 * iam.amazonaws.com signed for us-east-1 (iam.cn-north-1.amazonaws.com.cn in China,
 * iam.us-gov.amazonaws.com signed for us-gov-west-1 in GovCloud). */
#ifndef OL_AWS_ENDPOINTS_H
#define OL_AWS_ENDPOINTS_H

/* All strings malloc'd, freed by endpoints_free. */
typedef struct endpoint {
    char *url;            /* "https://host[:port]" or the custom URL without trailing '/' */
    char *host;           /* host[:port] for the Host header */
    char *signing_region; /* region to sign for */
    char *signing_name;   /* "s3", "iam", "monitoring" (for "cloudwatch"), ... */
    int custom;           /* from an override: S3 uses path-style addressing */
} endpoint;

/* Resolve service in region. profile_endpoint may be NULL. For S3 with a bucket, virtual-
 * hosted style is used on real AWS for DNS-compatible names without dots, path-style
 * otherwise; the bucket part is left to the caller (see endpoints_s3_url). Returns 0 or
 * OL_ECONFIG with a malloc'd *err (e.g. an AWS_ENDPOINT_URL_S3 that is not a URL). */
int endpoints_resolve(const char *service, const char *region, const char *profile_endpoint,
                      endpoint *out, char **err);
void endpoints_free(endpoint *e);

/* Resolve every service of the table in region, so that a malformed custom endpoint (any
 * AWS_ENDPOINT_URL_<SERVICE>, AWS_ENDPOINT_URL, the profile's endpoint_url) is a
 * configuration error before the first request rather than a failure of the items that
 * happen to call that service. Returns 0 or endpoints_resolve's error with *err. */
int endpoints_check_configured(const char *region, const char *profile_endpoint, char **err);

/* Build the URL base and Host for an S3 bucket request on endpoint e: virtual-hosted
 * ("https://bucket.s3.eu-north-1.amazonaws.com", path prefix "") or path-style
 * ("http://127.0.0.1:5000", path prefix "/bucket"; a custom endpoint's own path goes in
 * front: "/minio/bucket"). bucket NULL or "": e's url and host, prefix "". All malloc'd;
 * returns 0 or OL_ENOMEM. */
int endpoints_s3_url(const endpoint *e, const char *bucket, char **base_url, char **host,
                     char **path_prefix);

/* The environment variable suffix for a service id: "s3" -> "S3", "secretsmanager" ->
 * "SECRETS_MANAGER", "iam" -> "IAM", "sts" -> "STS", "logs" -> "CLOUDWATCH_LOGS" (the
 * SDKs' serviceId, uppercased, spaces to '_'). Static string; NULL for a service opsline
 * has no table entry for (endpoints_resolve then uses the id uppercased, '-' to '_'). */
const char *endpoints_env_suffix(const char *service);

/* Partition of a region: "aws", "aws-cn", "aws-us-gov" (also "aws-iso", "aws-iso-b",
 * "aws-iso-e", "aws-iso-f"); and its DNS suffix ("amazonaws.com", "amazonaws.com.cn", ...). */
const char *endpoints_partition(const char *region);
const char *endpoints_dns_suffix(const char *region);

/* Nonzero when region looks like an AWS region name (e.g. eu-north-1, us-gov-west-1). */
int endpoints_region_valid(const char *region);

#endif
