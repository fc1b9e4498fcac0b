/* credentials: where AWS credentials, region and profile settings come from, resolved the
 * way the AWS SDKs and CLI do: environment variables, then the shared credentials and
 * config files for the selected profile (static keys, then credential_process). The
 * region comes from AWS_REGION, AWS_DEFAULT_REGION, the profile, else eu-north-1. */
#ifndef OL_AWS_CREDENTIALS_H
#define OL_AWS_CREDENTIALS_H

#define OL_DEFAULT_REGION "eu-north-1"

/* Strings are malloc'd; secrets are wiped (OPENSSL_cleanse) by credentials_free. */
typedef struct ol__creds {
    char *access_key_id;
    char *secret_access_key;
    char *session_token; /* NULL when none */
    /* Human text of where they came from, for messages, e.g. "environment variables
     * (AWS_ACCESS_KEY_ID)", "profile 'dev' in /root/.aws/credentials",
     * "credential_process of profile 'sso' in /root/.aws/config". Never a secret. */
    char *source;
} ol__creds;

typedef struct ol__aws_settings {
    char *profile;       /* selected profile name ("default" unless AWS_PROFILE or --profile) */
    char *region;        /* resolved region, never NULL after credentials_settings */
    char *region_source; /* "AWS_REGION", "AWS_DEFAULT_REGION", "profile 'x' in FILE", "default" */
    char *config_file;   /* resolved paths (env overrides or ~/.aws/...) */
    char *credentials_file;
    char *endpoint_url;  /* endpoint_url of the profile in the config file, or NULL */
} ol__aws_settings;

/* Resolve profile, region and file paths. profile/region overrides (from the command line)
 * win when non-NULL. Returns 0, or OL_ECONFIG with a malloc'd message in *err. */
int credentials_settings(const char *profile_override, const char *region_override,
                         ol__aws_settings *out, char **err);
void credentials_settings_free(ol__aws_settings *s);

/* Resolve credentials for settings s. Returns 0; OL_ECREDS with *err saying which sources
 * were tried and what to do; OL_ECONFIG for malformed files or credential_process output.
 * *err is malloc'd and never contains a secret. */
int credentials_resolve(const ol__aws_settings *s, ol__creds *out, char **err);
void credentials_free(ol__creds *c);

/* Read one key of a profile from an INI-style AWS file: `[name]` sections (config uses
 * `[profile name]` except for default), `key = value`, comments with # or ;. Returns a
 * malloc'd value or NULL. is_config selects the config-file section naming. */
char *credentials_ini_get(const char *path, const char *profile, int is_config, const char *key);

#endif
