/* names: the naming rules of the resources opsline creates. An item's name
 * ("<product>-<environment>") becomes an S3 bucket name and an IAM user name, so product and
 * environment names are checked before any request, with messages that say which input is
 * wrong, what is wrong with it and what to use instead. */
#ifndef OL_NAMES_H
#define OL_NAMES_H

/* Each check returns 0, or OL_EINVAL with a malloc'd one-line message in *err (the caller
 * frees it), or OL_ENOMEM. err may be NULL when only the verdict is wanted. */

/* S3 general purpose bucket naming rules: 3-63 characters of lowercase letters, digits,
 * hyphens and dots; starts and ends with a letter or digit; no two adjacent dots and no dot
 * next to a hyphen; not an IPv4 address; none of the prefixes and suffixes S3 reserves. */
int names_check_bucket(const char *name, char **err);

/* IAM user names: 1-64 characters of letters, digits and + = , . @ _ - */
int names_check_iam_user(const char *name, char **err);

/* Product and environment names: non-empty, lowercase letters, digits, hyphens and dots,
 * starting and ending with a letter or digit, so that the item name can be a bucket name. */
int names_check_product(const char *product, char **err);
int names_check_environment(const char *environment, char **err);

/* The kinds of names names_check_item_resource knows (the kinds of the host API's
 * aws_name_check). */
#define NAMES_S3_BUCKET "s3-bucket"
#define NAMES_IAM_USER "iam-user"

/* The rules of one kind of AWS name applied to an item's name "<product>-<environment>",
 * for a stage's validate: the message names the product and the environment and says which
 * of them to change, e.g. "product 'xn--acme', environment 'production': bucket name
 * 'xn--acme-production' starts with 'xn--', a prefix S3 reserves. Choose a product name
 * without that prefix." OL_ENOENT for a kind it does not know. */
int names_check_item_resource(const char *kind, const char *product, const char *environment,
                              char **err);

#endif
