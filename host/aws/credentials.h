/* credentials: where AWS credentials, region and profile settings come from, resolved the
 * way the AWS SDKs and CLI do: environment variables, then the shared credentials and
 * config files for the selected profile (static keys, then credential_process). The
 * region comes from AWS_REGION, AWS_DEFAULT_REGION, the profile, else eu-north-1. */
#ifndef OL_AWS_CREDENTIALS_H
#define OL_AWS_CREDENTIALS_H

#define OL_DEFAULT_REGION "eu-north-1"

/* Strings are malloc'd; secrets are wiped (OPENSSL_cleanse) by credentials_free. */
typedef struct credentials {
    char *access_key_id;
    char *secret_access_key;
    char *session_token; /* NULL when none */
    /* Human text of where they came from, for messages, e.g. "environment variables
     * (AWS_ACCESS_KEY_ID)", "profile 'dev' in /root/.aws/credentials",
     * "credential_process of profile 'sso' in /root/.aws/config". Never a secret. */
    char *source;
} credentials;

typedef struct aws_settings {
    char *profile; /* selected profile name ("default" unless AWS_PROFILE or --profile) */
    char *region;  /* resolved region, never NULL after credentials_settings */
    /* "--region", "AWS_REGION", "AWS_DEFAULT_REGION", "profile 'x' in FILE", "default" */
    char *region_source;
    char *config_file; /* resolved paths (env overrides or ~/.aws/...) */
    char *credentials_file;
    char *endpoint_url; /* endpoint_url of the profile in the config file, or NULL */
    /* Nonzero when the profile came from the profile override (--profile): as with the AWS
     * CLI's --profile, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are then not used. A profile
     * from AWS_PROFILE leaves the environment keys first, as in the CLI. */
    int profile_override;
} aws_settings;

/* Transitional spellings for aws.c and aws.h (issue 10: ol__ names only error.c's
 * cross-cutting helpers); they go when those files use the names above. */
typedef credentials ol__creds;
typedef aws_settings ol__aws_settings;

/* Resolve profile, region and file paths. profile/region overrides (from the command line)
 * win when non-NULL. Returns 0, or OL_ECONFIG with a malloc'd message in *err: a profile
 * named by --profile/AWS_PROFILE/AWS_DEFAULT_PROFILE (other than "default") that is in
 * neither file, a region that is not an AWS region name, an unreadable or malformed file.
 * On failure *out is zeroed (credentials_settings_free on it is harmless). */
int credentials_settings(const char *profile_override, const char *region_override,
                         aws_settings *out, char **err);
void credentials_settings_free(aws_settings *s);

/* Resolve credentials for settings s. Returns 0; OL_ECREDS with *err saying which sources
 * were tried and what to do (also: only one of AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY set,
 * a role_arn/SSO/web-identity profile, credential_process failing or expired); OL_ECONFIG
 * for malformed files or credential_process output. *err is malloc'd and never contains a
 * secret. credential_process runs synchronously via /bin/sh -c, its stderr passed through.
 * On failure *out is zeroed. */
int credentials_resolve(const aws_settings *s, credentials *out, char **err);
void credentials_free(credentials *c);

/* Where c came from, for messages (c->source), or NULL when c is NULL or says nothing. The
 * one field of the credentials code outside host/aws/ may read: never a secret. */
const char *credentials_source(const credentials *c);

/* Read one key of a profile from an INI-style AWS file: `[name]` sections (config uses
 * `[profile name]` except for default), `key = value`, comments with # or ;. Keys match
 * case-insensitively, profile names exactly (as the CLI's configparser). Returns a
 * malloc'd value, or NULL when absent, unreadable or malformed. is_config selects the
 * config-file section naming. */
char *credentials_ini_get(const char *path, const char *profile, int is_config, const char *key);

#endif
