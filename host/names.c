/* names: owns the naming rules of S3 buckets and IAM users and the checks of product and
 * environment names that feed them. Rules follow the AWS documentation:
 * - S3 User Guide, "General purpose bucket naming rules": 3-63 characters; lowercase
 *   letters, digits, dots and hyphens; begin and end with a letter or digit; no two adjacent
 *   periods; not formatted as an IP address; reserved prefixes xn--, sthree-, amzn-s3-demo-
 *   and suffixes -s3alias, --ol-s3, .mrap, --x-s3, --table-s3.
 *   A dot next to a hyphen was invalid under the older DNS-compliant rules and still breaks
 *   virtual-hosted-style addressing, so it is rejected too.
 * - IAM User Guide, "IAM object quotas / names": user names are 1-64 characters of
 *   alphanumerics and + = , . @ _ -
 * Every failure message names the input, says what is wrong and what to use instead. */
#include "names.h"
#include "error.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opsline/opsline.h"

#define BUCKET_MIN 3
#define BUCKET_MAX 63
#define IAM_USER_MAX 64

static const char *const reserved_prefixes[] = {"xn--", "sthree-", "amzn-s3-demo-", NULL};
static const char *const reserved_suffixes[] = {"-s3alias", "--ol-s3",    ".mrap",
                                                "--x-s3",   "--table-s3", NULL};

static int is_lower_alnum(char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static int starts_with(const char *s, const char *prefix) {
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Describe one character for a message: 'c' when printable, else its byte value. */
static void describe_char(char c, char *out, size_t n) {
    unsigned char u = (unsigned char)c;
    if (isprint(u))
        snprintf(out, n, "the character '%c'", c);
    else
        snprintf(out, n, "the byte 0x%02x", u);
}

/* Four groups of digits separated by dots: what S3 calls "formatted as an IP address". */
static int looks_like_ipv4(const char *s) {
    int groups = 0;
    size_t digits = 0;
    for (;; s++) {
        if (*s >= '0' && *s <= '9') {
            digits++;
        } else if (*s == '.' || *s == '\0') {
            if (digits == 0)
                return 0;
            groups++;
            digits = 0;
            if (*s == '\0')
                break;
        } else {
            return 0;
        }
    }
    return groups == 4;
}

/* The character-level rules shared by bucket names and the product/environment names they
 * are made of. Writes "has ...; <rule>" to why and returns nonzero on a violation. */
static int charset_problem(const char *s, const char *rule_subject, char *why, size_t n) {
    char what[32];
    size_t len = strlen(s);
    for (size_t i = 0; i < len; i++) {
        if (isupper((unsigned char)s[i])) {
            snprintf(why, n,
                     "has uppercase letters; %s use lowercase letters, digits, hyphens "
                     "and dots",
                     rule_subject);
            return 1;
        }
    }
    for (size_t i = 0; i < len; i++) {
        if (!is_lower_alnum(s[i]) && s[i] != '-' && s[i] != '.') {
            describe_char(s[i], what, sizeof(what));
            snprintf(why, n, "has %s; %s use only lowercase letters, digits, hyphens and dots",
                     what, rule_subject);
            return 1;
        }
    }
    if (!is_lower_alnum(s[0]) || !is_lower_alnum(s[len - 1])) {
        int first = !is_lower_alnum(s[0]);
        snprintf(why, n, "%s with '%c'; %s start and end with a letter or digit",
                 first ? "starts" : "ends", first ? s[0] : s[len - 1], rule_subject);
        return 1;
    }
    if (strstr(s, "..") != NULL) {
        snprintf(why, n, "has two adjacent dots; %s cannot contain '..'", rule_subject);
        return 1;
    }
    if (strstr(s, ".-") != NULL || strstr(s, "-.") != NULL) {
        snprintf(why, n,
                 "has a dot next to a hyphen; %s cannot contain '.-' or '-.' (such names do not "
                 "work with virtual-hosted-style S3 addresses)",
                 rule_subject);
        return 1;
    }
    return 0;
}

/* Which bucket rule a name breaks. */
enum { PROBLEM_NONE, PROBLEM_CHARS, PROBLEM_LENGTH, PROBLEM_IP, PROBLEM_PREFIX, PROBLEM_SUFFIX };

/* All bucket rules. Writes the reason to why and returns the PROBLEM_* broken. */
static int bucket_problem(const char *name, char *why, size_t n) {
    static const char subject[] = "S3 bucket names";
    size_t len = strlen(name);
    if (len == 0) {
        snprintf(why, n, "is empty; %s are 3 to 63 characters", subject);
        return PROBLEM_LENGTH;
    }
    if (charset_problem(name, subject, why, n))
        return PROBLEM_CHARS;
    if (len < BUCKET_MIN || len > BUCKET_MAX) {
        snprintf(why, n, "is %zu characters long; %s are 3 to 63 characters", len, subject);
        return PROBLEM_LENGTH;
    }
    if (looks_like_ipv4(name)) {
        snprintf(why, n, "is formatted as an IP address; %s cannot be", subject);
        return PROBLEM_IP;
    }
    for (size_t i = 0; reserved_prefixes[i] != NULL; i++) {
        if (starts_with(name, reserved_prefixes[i])) {
            snprintf(why, n, "starts with '%s', a prefix S3 reserves", reserved_prefixes[i]);
            return PROBLEM_PREFIX;
        }
    }
    for (size_t i = 0; reserved_suffixes[i] != NULL; i++) {
        if (ends_with(name, reserved_suffixes[i])) {
            snprintf(why, n, "ends with '%s', a suffix S3 reserves", reserved_suffixes[i]);
            return PROBLEM_SUFFIX;
        }
    }
    return PROBLEM_NONE;
}

/* A corrected spelling: lowercase, other characters turned into hyphens, '..', '.-' and
 * '-.' collapsed, reserved prefixes and suffixes removed, trimmed to max characters that
 * start and end with a letter or digit. malloc'd; NULL when nothing usable is left. */
static char *suggest(const char *s, size_t max) {
    size_t len = strlen(s);
    char *out = malloc(len + 1);
    if (out == NULL)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        char c = (char)tolower((unsigned char)s[i]);
        if (!is_lower_alnum(c) && c != '.')
            c = '-';
        if (k > 0 && (c == '.' || c == '-') && (out[k - 1] == '.' || out[k - 1] == '-') &&
            (c == '.' || out[k - 1] == '.')) {
            if (c == '-') /* ".-" and "-." become "-", ".." stays "." */
                out[k - 1] = '-';
            continue;
        }
        out[k++] = c;
    }
    out[k] = '\0';
    for (size_t i = 0; reserved_prefixes[i] != NULL; i++) {
        if (starts_with(out, reserved_prefixes[i])) {
            size_t m = strlen(reserved_prefixes[i]);
            memmove(out, out + m, k - m + 1);
            k -= m;
        }
    }
    for (size_t i = 0; reserved_suffixes[i] != NULL; i++) {
        if (ends_with(out, reserved_suffixes[i])) {
            k -= strlen(reserved_suffixes[i]);
            out[k] = '\0';
        }
    }
    if (k > max)
        k = max;
    while (k > 0 && !is_lower_alnum(out[k - 1]))
        k--;
    out[k] = '\0';
    size_t start = 0;
    while (start < k && !is_lower_alnum(out[start]))
        start++;
    memmove(out, out + start, k - start + 1);
    if (out[0] == '\0') {
        free(out);
        return NULL;
    }
    return out;
}

/* Store a message built from subject, value, reason and fix into *err. */
static int fail(char **err, const char *subject, const char *value, const char *why,
                const char *fix) {
    int rc = ol__fail(err, OL_EINVAL, "%s '%s' %s. %s", subject, value, why, fix);
    return err != NULL && *err == NULL ? OL_ENOMEM : rc;
}

/* fail() with "Use '<suggestion>'." when a valid suggestion exists, else fallback. */
static int fail_suggesting(char **err, const char *subject, const char *value, const char *why,
                           char *suggestion, int suggestion_valid, const char *fallback) {
    int rc;
    if (suggestion != NULL && suggestion_valid && strcmp(suggestion, value) != 0) {
        char *fix = ol__format("Use '%s'.", suggestion);
        rc = fix != NULL ? fail(err, subject, value, why, fix) : OL_ENOMEM;
        free(fix);
    } else {
        rc = fail(err, subject, value, why, fallback);
    }
    free(suggestion);
    return rc;
}

int names_check_bucket(const char *name, char **err) {
    char why[256];
    if (err != NULL)
        *err = NULL;
    if (name == NULL)
        name = "";
    if (!bucket_problem(name, why, sizeof(why)))
        return 0;
    char *s = suggest(name, BUCKET_MAX);
    char tmp[256];
    int ok = s != NULL && !bucket_problem(s, tmp, sizeof(tmp));
    return fail_suggesting(err, "bucket name", name, why, s, ok,
                           "Choose a name of 3-63 lowercase letters, digits, hyphens and dots.");
}

int names_check_iam_user(const char *name, char **err) {
    static const char allowed[] = "+=,.@_-";
    char why[256], what[32];
    if (err != NULL)
        *err = NULL;
    if (name == NULL)
        name = "";
    size_t len = strlen(name);
    if (len == 0 || len > IAM_USER_MAX) {
        snprintf(why, sizeof(why), "is %zu characters long; IAM user names are 1 to 64 characters",
                 len);
        return fail(err, "IAM user name", name, why, "Use a shorter product or environment name.");
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c < 0x80 && (isalnum(c) || strchr(allowed, (int)c) != NULL))
            continue;
        describe_char(name[i], what, sizeof(what));
        snprintf(why, sizeof(why),
                 "has %s; IAM user names use letters, digits and the characters + = , . @ _ -",
                 what);
        return fail(err, "IAM user name", name, why, "Remove or replace that character.");
    }
    return 0;
}

/* Product and environment names: the character rules of bucket names, without length. */
static int check_segment(const char *kind, const char *value, char **err) {
    char why[256];
    char subject[64];
    if (err != NULL)
        *err = NULL;
    if (value == NULL || value[0] == '\0')
        return fail(err, kind, value != NULL ? value : "", "is empty",
                    "Give a name of lowercase letters, digits, hyphens and dots.");
    snprintf(subject, sizeof(subject), "%s names (part of S3 bucket names)", kind);
    if (!charset_problem(value, subject, why, sizeof(why)))
        return 0;
    char *s = suggest(value, BUCKET_MAX);
    char tmp[256];
    int ok = s != NULL && !charset_problem(s, subject, tmp, sizeof(tmp));
    return fail_suggesting(err, kind, value, why, s, ok,
                           "Use lowercase letters, digits, hyphens and dots.");
}

int names_check_product(const char *product, char **err) {
    return check_segment("product", product, err);
}

int names_check_environment(const char *environment, char **err) {
    return check_segment("environment", environment, err);
}

/* What is wrong with an item's name "<product>-<environment>" as a name of kind (its
 * segments already passed the character rules): the reason goes to why and the fix, a
 * different product or environment rather than a different resource name, is returned;
 * NULL when the name is fine. */
static const char *item_name_problem(int bucket, const char *name, char *why, size_t n) {
    if (!bucket) {
        if (names_check_iam_user(name, NULL) == 0)
            return NULL;
        snprintf(why, n, "is %zu characters long; IAM user names are 1 to 64 characters",
                 strlen(name));
        return "Use a shorter product or environment name.";
    }
    switch (bucket_problem(name, why, n)) {
    case PROBLEM_NONE:
        return NULL;
    case PROBLEM_PREFIX:
        return "Choose a product name without that prefix.";
    case PROBLEM_SUFFIX:
        return "Choose an environment name without that ending.";
    default:
        return "Use a shorter product or environment name.";
    }
}

/* OL_EINVAL with "product 'P', environment 'E': <label> 'N' <why>. <fix>" (OL_ENOMEM when
 * that message cannot be made). */
static int fail_item(char **err, const char *product, const char *environment, const char *label,
                     const char *name, const char *why, const char *fix) {
    int rc = ol__fail(err, OL_EINVAL, "product '%s', environment '%s': %s '%s' %s. %s", product,
                      environment, label, name, why, fix);
    return err != NULL && *err == NULL ? OL_ENOMEM : rc;
}

/* Checks product and environment, then builds the item's name "<product>-<environment>"
 * into *name (malloc'd). Returns 0, the segment check's code, or OL_ENOMEM. */
static int item_name(const char *product, const char *environment, char **name, char **err) {
    int rc = names_check_product(product, err);
    if (rc == 0)
        rc = names_check_environment(environment, err);
    if (rc != 0)
        return rc;
    *name = ol__format("%s-%s", product, environment);
    return *name != NULL ? 0 : OL_ENOMEM;
}

int names_check_item_resource(const char *kind, const char *product, const char *environment,
                              char **err) {
    int bucket = kind != NULL && strcmp(kind, NAMES_S3_BUCKET) == 0;
    if (!bucket && (kind == NULL || strcmp(kind, NAMES_IAM_USER) != 0))
        return OL_ENOENT;
    char *name = NULL;
    int rc = item_name(product, environment, &name, err);
    if (rc != 0)
        return rc;
    char why[256];
    const char *fix = item_name_problem(bucket, name, why, sizeof(why));
    if (fix != NULL)
        rc = fail_item(err, product, environment, bucket ? "bucket name" : "IAM user name", name,
                       why, fix);
    free(name);
    return rc;
}
