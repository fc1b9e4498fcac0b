/* credentials: where AWS credentials, region and profile settings come from, resolved the
 * way the AWS SDKs and CLI do: environment variables, then the shared credentials and
 * config files for the selected profile (static keys, then credential_process). The
 * region comes from AWS_REGION, AWS_DEFAULT_REGION, the profile, else eu-north-1. Temporary
 * credentials (roles, SSO, web identity, container, instance) are planned here and fetched by
 * provider.c. */
#ifndef OL_AWS_CREDENTIALS_H
#define OL_AWS_CREDENTIALS_H

#include <stddef.h>

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

/* Resolve profile, region and file paths. profile/region overrides (from the command line)
 * win when non-NULL. Returns 0, or OL_ECONFIG with a malloc'd message in *err: a profile
 * named by --profile/AWS_PROFILE/AWS_DEFAULT_PROFILE (other than "default") that is in
 * neither file, a region that is not an AWS region name, an unreadable or malformed file.
 * On failure *out is zeroed (credentials_settings_free on it is harmless). */
int credentials_settings(const char *profile_override, const char *region_override,
                         aws_settings *out, char **err);
void credentials_settings_free(aws_settings *s);

/* Where a profile's credentials come from, decided from the environment and the files alone
 * (credentials_plan) and fetched later, asynchronously, by provider.c. Every value a source
 * needs is copied here when the plan is made: the run scrubs secret-named variables
 * (AWS_SECRET_ACCESS_KEY, AWS_CONTAINER_AUTHORIZATION_TOKEN, ...) from its environment. */
typedef enum cred_kind {
    CRED_STATIC = 0,   /* keys from the environment or a profile: creds */
    CRED_PROCESS,      /* credential_process: command */
    CRED_ASSUME_ROLE,  /* sts:AssumeRole with the credentials of base */
    CRED_WEB_IDENTITY, /* sts:AssumeRoleWithWebIdentity with token_file */
    CRED_SSO,          /* IAM Identity Center: sso_* and the token cache */
    CRED_CONTAINER,    /* ECS/EKS container credentials endpoint: url */
    CRED_IMDS,         /* EC2 instance metadata (IMDSv2): url */
} cred_kind;

typedef struct cred_spec {
    cred_kind kind;
    char *source;      /* for messages, e.g. "role arn:... assumed from profile 'dev'"; no secret */
    char *profile;     /* the profile this source belongs to, or NULL (environment) */
    credentials creds; /* CRED_STATIC */
    char *command;     /* CRED_PROCESS */
    unsigned timeout_ms;    /* CRED_PROCESS, CRED_CONTAINER, CRED_IMDS, CRED_SSO: per attempt */
    char *role_arn;         /* CRED_ASSUME_ROLE, CRED_WEB_IDENTITY */
    char *session_name;     /* CRED_ASSUME_ROLE, CRED_WEB_IDENTITY */
    char *external_id;      /* CRED_ASSUME_ROLE, or NULL */
    char *mfa_serial;       /* CRED_ASSUME_ROLE, or NULL */
    long duration_s;        /* CRED_ASSUME_ROLE, CRED_WEB_IDENTITY: 0 = STS default */
    struct cred_spec *base; /* CRED_ASSUME_ROLE: the source credentials (owned) */
    char *token_file;       /* CRED_WEB_IDENTITY; CRED_CONTAINER: the token file, or NULL */
    char *auth_token;       /* CRED_CONTAINER: AWS_CONTAINER_AUTHORIZATION_TOKEN, or NULL */
    char *url;              /* CRED_CONTAINER, CRED_IMDS (the endpoint), CRED_SSO (portal) */
    char *region;           /* CRED_ASSUME_ROLE/WEB_IDENTITY: STS region; CRED_SSO: sso_region */
    char *sso_start_url, *sso_account_id, *sso_role_name, *sso_session; /* CRED_SSO */
    char *sso_cache_file;  /* CRED_SSO: ~/.aws/sso/cache/<sha1>.json */
    char *role_cache_file; /* CRED_ASSUME_ROLE: ~/.aws/cli/cache/<sha1>.json, or NULL */
    char *sso_login_cmd;   /* CRED_SSO: "aws sso login --profile NAME" */
    char *tried;           /* CRED_IMDS reached by falling through: what was tried before */
} cred_spec;

/* Decide where the credentials of settings s come from, the AWS SDKs' default chain:
 * environment keys (not with --profile), then the profile's role_arn (source_profile chains,
 * a loop refused; credential_source), web identity (the profile's web_identity_token_file,
 * else AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE), SSO (sso_session or legacy sso_*; the
 * token cache is checked now), the credentials file's keys, credential_process, the config
 * file's keys, the container endpoint (AWS_CONTAINER_CREDENTIALS_*_URI), else instance
 * metadata (unless AWS_EC2_METADATA_DISABLED=true). Returns 0 with a malloc'd *out, or
 * OL_ECREDS / OL_ECONFIG with *err saying what to do (never a secret). */
int credentials_plan(const aws_settings *s, cred_spec **out, char **err);
void credentials_spec_free(cred_spec *spec);

/* Read and check an SSO token cache file: 0 with the malloc'd bearer token in *token (wipe
 * it), or OL_ECREDS with *err saying it is missing/expired and to run login_cmd. */
int credentials_sso_token(const cred_spec *spec, char **token, char **err);

/* The AWS CLI's cache of assumed-role sessions, shared with it: one file per role
 * configuration in ~/.aws/cli/cache, named by the SHA-1 of the AssumeRole arguments as
 * botocore names it (RoleArn, and RoleSessionName, ExternalId, SerialNumber and
 * DurationSeconds when the profile sets them; json.dumps with sorted keys), holding
 * {"Credentials": {AccessKeyId, SecretAccessKey, SessionToken, Expiration}}. A session the
 * CLI cached (after its MFA prompt) serves opsline, and the other way round, until 15 minutes
 * before it expires, botocore's window. */

/* 0 and the session in *out (free with credentials_free; its source names source and the
 * file) and *expires when the file holds one with at least 15 minutes left at now;
 * OL_ENOENT otherwise (missing, unreadable, not a regular file, malformed or about to
 * expire: the role is assumed again), or OL_ENOMEM. */
int credentials_role_cache_read(const char *path, long long now, const char *source,
                                credentials *out, long long *expires);

/* Store a session (0600, atomically, the directory made 0700 if missing). 0 or a negative
 * code; a failure only costs the next run an AssumeRole. */
int credentials_role_cache_write(const char *path, const credentials *c, long long expires);

/* Parse the JSON credentials of a process / container endpoint / instance metadata answer:
 * fields AccessKeyId, SecretAccessKey, SessionToken (or Token), Expiration (ISO 8601,
 * optional); with need_version, "Version": 1 is required (credential_process). what names the
 * source in messages. *expires: seconds since the epoch, 0 when none. Never quotes the text. */
int credentials_json_parse(const char *buf, size_t len, const char *what, int need_version,
                           credentials *out, long long *expires, char **err);

/* Seconds since the epoch of an ISO 8601 time (2024-05-01T12:00:00Z, fraction, offset), or
 * -1 when it is not one. */
long long credentials_parse_time(const char *s);

/* Copy of c (source included), 0 or OL_ENOMEM. */
int credentials_copy(credentials *dst, const credentials *c);

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
