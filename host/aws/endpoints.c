/* endpoints: the URL, Host and signing region of every AWS call. It owns the custom
 * endpoint settings (AWS_ENDPOINT_URL_<SERVICE>, AWS_ENDPOINT_URL, the profile's
 * endpoint_url, AWS_IGNORE_CONFIGURED_ENDPOINT_URLS; "Service-specific endpoints", AWS SDKs
 * and Tools Reference Guide), the partitions and their DNS suffixes, the global endpoints
 * (IAM, Route 53) and S3 addressing styles. URLs are parsed by libcurl's URL API. */
#include "endpoints.h"
#include "../error.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "opsline/opsline.h"

typedef struct service_info {
    const char *id;           /* what callers pass */
    const char *env_suffix;   /* serviceId uppercased, spaces to '_' */
    const char *signing_name; /* SigV4 service name */
    const char *host_prefix;  /* first DNS label(s) of the regional endpoint */
} service_info;

/* serviceId and endpointPrefix from the services' API models (botocore data). */
static const service_info services[] = {
    {"s3", "S3", "s3", "s3"},
    {"iam", "IAM", "iam", "iam"},
    {"sts", "STS", "sts", "sts"},
    {"secretsmanager", "SECRETS_MANAGER", "secretsmanager", "secretsmanager"},
    {"ssm", "SSM", "ssm", "ssm"},
    {"kms", "KMS", "kms", "kms"},
    {"dynamodb", "DYNAMODB", "dynamodb", "dynamodb"},
    {"sqs", "SQS", "sqs", "sqs"},
    {"sns", "SNS", "sns", "sns"},
    {"lambda", "LAMBDA", "lambda", "lambda"},
    {"ec2", "EC2", "ec2", "ec2"},
    {"logs", "CLOUDWATCH_LOGS", "logs", "logs"},
    {"cloudwatch", "CLOUDWATCH", "monitoring", "monitoring"},
    {"monitoring", "CLOUDWATCH", "monitoring", "monitoring"},
    {"events", "EVENTBRIDGE", "events", "events"},
    {"ecr", "ECR", "ecr", "api.ecr"},
    {"cloudformation", "CLOUDFORMATION", "cloudformation", "cloudformation"},
    {"acm", "ACM", "acm", "acm"},
    {"kinesis", "KINESIS", "kinesis", "kinesis"},
    {"route53", "ROUTE_53", "route53", "route53"},
};

typedef struct partition_info {
    const char *prefix; /* region name prefix */
    const char *name;
    const char *dns_suffix;
    const char *iam_host;   /* global IAM endpoint; NULL: regional */
    const char *iam_region; /* its signing region */
    const char *r53_host;   /* global Route 53 endpoint; NULL: regional */
    const char *r53_region;
} partition_info;

/* From the SDKs' partitions/endpoints data. The first matching prefix wins, so the ISO
 * variants come before their shorter relatives; "aws" (no prefix) is last. */
static const partition_info partitions[] = {
    {"cn-", "aws-cn", "amazonaws.com.cn", "iam.cn-north-1.amazonaws.com.cn", "cn-north-1",
     "route53.amazonaws.com.cn", "cn-northwest-1"},
    {"us-gov-", "aws-us-gov", "amazonaws.com", "iam.us-gov.amazonaws.com", "us-gov-west-1",
     "route53.us-gov.amazonaws.com", "us-gov-west-1"},
    {"us-isob-", "aws-iso-b", "sc2s.sgov.gov", "iam.us-isob-east-1.sc2s.sgov.gov", "us-isob-east-1",
     NULL, NULL},
    {"us-isof-", "aws-iso-f", "csp.hci.ic.gov", NULL, NULL, NULL, NULL},
    {"eu-isoe-", "aws-iso-e", "cloud.adc-e.uk", NULL, NULL, NULL, NULL},
    {"us-iso-", "aws-iso", "c2s.ic.gov", "iam.us-iso-east-1.c2s.ic.gov", "us-iso-east-1", NULL,
     NULL},
    {"", "aws", "amazonaws.com", "iam.amazonaws.com", "us-east-1", "route53.amazonaws.com",
     "us-east-1"},
};

static const service_info *service_find(const char *service) {
    for (size_t i = 0; i < sizeof(services) / sizeof(services[0]); i++)
        if (strcmp(services[i].id, service) == 0)
            return &services[i];
    return NULL;
}

static const partition_info *partition_find(const char *region) {
    size_t n = sizeof(partitions) / sizeof(partitions[0]);
    for (size_t i = 0; region != NULL && i < n; i++)
        if (strncmp(region, partitions[i].prefix, strlen(partitions[i].prefix)) == 0)
            return &partitions[i];
    return &partitions[n - 1];
}

const char *endpoints_env_suffix(const char *service) {
    const service_info *s = service ? service_find(service) : NULL;
    return s ? s->env_suffix : NULL;
}

const char *endpoints_partition(const char *region) {
    return partition_find(region)->name;
}

const char *endpoints_dns_suffix(const char *region) {
    return partition_find(region)->dns_suffix;
}

static size_t span_lower(const char *s) {
    size_t n = 0;
    while (s[n] >= 'a' && s[n] <= 'z')
        n++;
    return n;
}

/* ^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]+$, e.g. eu-north-1, us-gov-west-1,
 * us-isob-east-1. */
int endpoints_region_valid(const char *region) {
    const char *p = region;
    size_t n;
    if (p == NULL || span_lower(p) != 2 || p[2] != '-')
        return 0;
    p += 3;
    n = span_lower(p);
    if (n == 0 || p[n] != '-')
        return 0;
    /* Either this label is the [a-z]+ before the number, or it is gov/iso* and the next
     * label is. */
    const char *q = p + n + 1;
    if (isdigit((unsigned char)*q)) {
        p = q;
    } else {
        if (!((n == 3 && strncmp(p, "gov", 3) == 0) || strncmp(p, "iso", 3) == 0))
            return 0;
        n = span_lower(q);
        if (n == 0 || q[n] != '-')
            return 0;
        p = q + n + 1;
    }
    if (!isdigit((unsigned char)*p))
        return 0;
    while (isdigit((unsigned char)*p))
        p++;
    return *p == '\0';
}

/* The configured custom endpoint for a service and where it came from, or NULL. */
static const char *custom_url(const service_info *svc, const char *service,
                              const char *profile_endpoint, char *var, size_t var_size) {
    const char *ignore = getenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS");
    if (ignore != NULL && strcasecmp(ignore, "true") == 0)
        return NULL;
    int n = snprintf(var, var_size, "AWS_ENDPOINT_URL_%s", svc ? svc->env_suffix : service);
    if (n > 0 && (size_t)n < var_size) {
        if (svc == NULL)
            for (char *c = var + strlen("AWS_ENDPOINT_URL_"); *c; c++)
                *c = *c == '-' || *c == ' ' ? '_' : (char)toupper((unsigned char)*c);
        const char *v = getenv(var);
        if (v != NULL && v[0] != '\0')
            return v;
    }
    const char *v = getenv("AWS_ENDPOINT_URL");
    snprintf(var, var_size, "AWS_ENDPOINT_URL");
    if (v != NULL && v[0] != '\0')
        return v;
    snprintf(var, var_size, "endpoint_url in the config profile");
    return profile_endpoint != NULL && profile_endpoint[0] != '\0' ? profile_endpoint : NULL;
}

static int part_get(CURLU *u, CURLUPart part, char **out) {
    CURLUcode uc = curl_url_get(u, part, out, 0);
    if (uc == CURLUE_OUT_OF_MEMORY)
        return OL_ENOMEM;
    return uc == CURLUE_OK ? 0 : 1;
}

/* 1 when u has part, 0 when not, OL_ENOMEM. */
static int part_present(CURLU *u, CURLUPart part) {
    char *v = NULL;
    int rc = part_get(u, part, &v);
    curl_free(v);
    return rc < 0 ? rc : rc == 0;
}

/* The problem custom_problem reports for a URL with a user name or password. */
static const char user_info_problem[] = "user info";

/* What makes a custom endpoint URL (parsed into u) unusable: *problem NULL when nothing.
 * Returns 0 or OL_ENOMEM. */
static int custom_problem(CURLU *u, const char **problem) {
    static const struct {
        CURLUPart part;
        const char *problem;
    } forbidden[] = {{CURLUPART_QUERY, "it must not have a query (?...)"},
                     {CURLUPART_FRAGMENT, "it must not have a fragment (#...)"}};
    char *scheme = NULL, *host = NULL;
    *problem = NULL;
    int rc = part_present(u, CURLUPART_USER);
    if (rc != 0) {
        *problem = rc > 0 ? user_info_problem : NULL;
        return rc < 0 ? rc : 0;
    }
    if ((rc = part_get(u, CURLUPART_SCHEME, &scheme)) < 0)
        return rc;
    int scheme_ok = rc == 0 && (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0);
    curl_free(scheme);
    if (!scheme_ok) {
        *problem = "the scheme must be http or https";
        return 0;
    }
    if ((rc = part_get(u, CURLUPART_HOST, &host)) < 0)
        return rc;
    int host_ok = rc == 0 && host[0] != '\0';
    curl_free(host);
    if (!host_ok) {
        *problem = "it has no host";
        return 0;
    }
    for (size_t i = 0; i < sizeof(forbidden) / sizeof(forbidden[0]); i++) {
        if ((rc = part_present(u, forbidden[i].part)) != 0) {
            *problem = rc > 0 ? forbidden[i].problem : NULL;
            return rc < 0 ? rc : 0;
        }
    }
    return 0;
}

/* out->url and out->host rebuilt from the parts of a usable custom endpoint URL. */
static int custom_from_parts(CURLU *u, endpoint *out) {
    char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL;
    int rc = OL_ENOMEM;
    if (part_get(u, CURLUPART_SCHEME, &scheme) != 0 || part_get(u, CURLUPART_HOST, &host) != 0 ||
        part_get(u, CURLUPART_PORT, &port) < 0 || part_get(u, CURLUPART_PATH, &path) < 0)
        goto done;
    if (port != NULL && strcmp(port, strcmp(scheme, "https") == 0 ? "443" : "80") == 0) {
        curl_free(port);
        port = NULL;
    }
    size_t plen = path ? strlen(path) : 0;
    while (plen > 0 && path[plen - 1] == '/')
        path[--plen] = '\0';
    out->host = port ? ol__format("%s:%s", host, port) : strdup(host);
    if (out->host == NULL)
        goto done;
    out->url = ol__format("%s://%s%s", scheme, out->host, path ? path : "");
    if (out->url != NULL)
        rc = 0;
done:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    return rc;
}

/* Fills out->url and out->host from a custom endpoint URL. The URL is checked with libcurl
 * and rebuilt from its parts, so that url and Host agree byte for byte with what libcurl
 * sends (a default port is not in curl's Host header, so not in ours). */
static int parse_custom(const char *url, const char *origin, endpoint *out, char **err) {
    CURLU *u = curl_url();
    if (u == NULL)
        return OL_ENOMEM;
    const char *problem = NULL;
    CURLUcode uc = curl_url_set(u, CURLUPART_URL, url, 0);
    int rc = uc == CURLUE_OUT_OF_MEMORY ? OL_ENOMEM : 0;
    if (rc == 0 && uc != CURLUE_OK)
        problem = curl_url_strerror(uc);
    else if (rc == 0)
        rc = custom_problem(u, &problem);
    if (rc == 0 && problem == user_info_problem) {
        /* The URL may hold a password: it is not repeated. */
        rc = ol__fail(err, OL_ECONFIG,
                      "the endpoint URL from %s must not contain a user name or password; "
                      "opsline signs requests with your AWS credentials",
                      origin);
    } else if (rc == 0 && problem != NULL) {
        rc = ol__fail(err, OL_ECONFIG,
                      "the endpoint URL '%s' (from %s) is not usable: %s; use one like "
                      "http://127.0.0.1:5000 or https://s3.example.com",
                      url, origin, problem);
    } else if (rc == 0) {
        rc = custom_from_parts(u, out);
    }
    curl_url_cleanup(u);
    return rc;
}

/* The real AWS endpoint: global for IAM and Route 53 where the partition has one,
 * <prefix>.<region>.<dns suffix> otherwise (S3 in us-east-1 included: s3.us-east-1 is a
 * valid name for the legacy global endpoint's region). */
static int real_endpoint(const service_info *svc, const char *service, const char *region,
                         endpoint *out) {
    const partition_info *p = partition_find(region);
    const char *host = NULL, *sign = region;
    if (svc != NULL && strcmp(svc->id, "iam") == 0 && p->iam_host != NULL) {
        host = p->iam_host;
        sign = p->iam_region;
    } else if (svc != NULL && strcmp(svc->id, "route53") == 0 && p->r53_host != NULL) {
        host = p->r53_host;
        sign = p->r53_region;
    }
    out->host =
        host ? strdup(host)
             : ol__format("%s.%s.%s", svc ? svc->host_prefix : service, region, p->dns_suffix);
    out->signing_region = strdup(sign);
    if (out->host == NULL || out->signing_region == NULL)
        return OL_ENOMEM;
    out->url = ol__format("https://%s", out->host);
    return out->url ? 0 : OL_ENOMEM;
}

int endpoints_check_configured(const char *region, const char *profile_endpoint, char **err) {
    *err = NULL;
    for (size_t i = 0; i < sizeof(services) / sizeof(services[0]); i++) {
        endpoint e;
        int rc = endpoints_resolve(services[i].id, region, profile_endpoint, &e, err);
        if (rc != 0)
            return rc;
        endpoints_free(&e);
    }
    return 0;
}

int endpoints_resolve(const char *service, const char *region, const char *profile_endpoint,
                      endpoint *out, char **err) {
    char var[128];
    int rc;
    memset(out, 0, sizeof(*out));
    *err = NULL;
    if (service == NULL || service[0] == '\0' || region == NULL || region[0] == '\0') {
        return ol__fail(err, OL_EINVAL, "no %s given for the AWS endpoint",
                        service && service[0] ? "region" : "service");
    }
    const service_info *svc = service_find(service);
    const char *url = custom_url(svc, service, profile_endpoint, var, sizeof(var));
    out->signing_name = strdup(svc ? svc->signing_name : service);
    if (out->signing_name == NULL) {
        rc = OL_ENOMEM;
        goto fail;
    }
    if (url != NULL) {
        out->custom = 1;
        rc = parse_custom(url, var, out, err);
        if (rc == 0 && (out->signing_region = strdup(region)) == NULL)
            rc = OL_ENOMEM;
    } else if (!endpoints_region_valid(region)) {
        rc = ol__fail(err, OL_ECONFIG,
                      "region '%s' is not an AWS region name; use one like eu-north-1", region);
    } else {
        rc = real_endpoint(svc, service, region, out);
    }
    if (rc == 0)
        return 0;
fail:
    if (rc == OL_ENOMEM && *err == NULL)
        *err = ol__format("out of memory");
    endpoints_free(out);
    return rc;
}

void endpoints_free(endpoint *e) {
    if (e == NULL)
        return;
    free(e->url);
    free(e->host);
    free(e->signing_region);
    free(e->signing_name);
    memset(e, 0, sizeof(*e));
}

/* Virtual-hosted style needs a name that is one DNS label: with dots the wildcard TLS
 * certificate *.s3.<region>.amazonaws.com does not match ("Virtual hosting of buckets",
 * Amazon S3 User Guide). */
static int dns_label(const char *b) {
    size_t n = strlen(b);
    if (n < 3 || n > 63 || !isalnum((unsigned char)b[0]) || !isalnum((unsigned char)b[n - 1]))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!(islower((unsigned char)b[i]) || isdigit((unsigned char)b[i]) || b[i] == '-'))
            return 0;
    return 1;
}

int endpoints_s3_url(const endpoint *e, const char *bucket, char **base_url, char **host,
                     char **path_prefix) {
    char *esc = NULL;
    *base_url = *host = *path_prefix = NULL;
    if (bucket == NULL || bucket[0] == '\0') {
        *base_url = strdup(e->url);
        *host = strdup(e->host);
        *path_prefix = strdup("");
    } else if (!e->custom && dns_label(bucket)) {
        *base_url = ol__format("https://%s.%s", bucket, e->host);
        *host = ol__format("%s.%s", bucket, e->host);
        *path_prefix = strdup("");
    } else {
        /* Path-style: the bucket (and a custom endpoint's own path) go into the path, which
         * is what gets signed; the base is scheme://host. */
        const char *after_scheme = strstr(e->url, "://");
        const char *path = after_scheme ? after_scheme + 3 + strlen(e->host) : "";
        size_t base_len = (size_t)(path - e->url);
        esc = curl_easy_escape(NULL, bucket, 0);
        *base_url = malloc(base_len + 1);
        if (*base_url != NULL) {
            memcpy(*base_url, e->url, base_len);
            (*base_url)[base_len] = '\0';
        }
        *host = strdup(e->host);
        *path_prefix = esc ? ol__format("%s/%s", path, esc) : NULL;
    }
    curl_free(esc);
    if (*base_url && *host && *path_prefix)
        return 0;
    free(*base_url);
    free(*host);
    free(*path_prefix);
    *base_url = *host = *path_prefix = NULL;
    return OL_ENOMEM;
}
