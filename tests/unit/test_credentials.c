/* Tests for credentials: profile selection, the shared credentials and config files (INI
 * details as the AWS CLI reads them), the credential chain (environment, credentials file,
 * credential_process, config file), credential_process output checks, error texts (which
 * name files and profiles and never a secret) and region precedence. Every test runs with
 * HOME set to a fresh temporary directory and the AWS_* variables cleared; the environment
 * is restored and the directory removed afterwards. */
#define _XOPEN_SOURCE 700
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <uv.h>

#include "credentials.h"
#include "opsline/opsline.h"
#include "provider.h"

#define AKID "AKIAIOSFODNN7EXAMPLE"
#define SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define SECRET2 "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY"
#define TOKEN "FwoGZXIvYXdzEXAMPLETOKEN"

static const char *const env_names[] = {
    "HOME",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_EC2_METADATA_DISABLED",
    "AWS_EC2_METADATA_SERVICE_ENDPOINT",
    "AWS_ENDPOINT_URL_SSO",
    "AWS_ENDPOINT_URL",
    "OPSLINE_CREDENTIAL_TIMEOUT",
};
#define N_ENV (sizeof(env_names) / sizeof(env_names[0]))

typedef struct fixture {
    char *saved[N_ENV];
    char dir[64];
    char path[512]; /* scratch for file names */
} fixture;

static fixture *fx; /* the current test's fixture, for the helpers */

static int setup(void **state) {
    fixture *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    for (size_t i = 0; i < N_ENV; i++) {
        const char *v = getenv(env_names[i]);
        if (v != NULL && (f->saved[i] = strdup(v)) == NULL)
            return -1;
        unsetenv(env_names[i]);
    }
    snprintf(f->dir, sizeof(f->dir), "/tmp/ol-creds-XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    setenv("HOME", f->dir, 1);
    /* No test may wait for 169.254.169.254: instance metadata is asked only where a test
     * turns it back on. */
    setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
    snprintf(f->path, sizeof(f->path), "%s/.aws", f->dir);
    if (mkdir(f->path, 0700) != 0)
        return -1;
    fx = f;
    *state = f;
    return 0;
}

static int rm_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw) {
    (void)sb;
    (void)type;
    (void)ftw;
    return remove(path);
}

static int teardown(void **state) {
    fixture *f = *state;
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    for (size_t i = 0; i < N_ENV; i++) {
        if (f->saved[i] != NULL)
            setenv(env_names[i], f->saved[i], 1);
        else
            unsetenv(env_names[i]);
        free(f->saved[i]);
    }
    free(f);
    fx = NULL;
    return 0;
}

/* Writes text to HOME-relative name; returns the full path (valid until the next call). */
static const char *write_file(const char *name, const char *text, mode_t mode) {
    snprintf(fx->path, sizeof(fx->path), "%s/%s", fx->dir, name);
    FILE *f = fopen(fx->path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(fx->path, mode), 0);
    return fx->path;
}

static void write_credentials(const char *text) {
    write_file(".aws/credentials", text, 0600);
}

static void write_config(const char *text) {
    write_file(".aws/config", text, 0600);
}

/* A credential_process script printing json (or failing with status), and a config
 * profile using it. */
static void write_process(const char *profile, const char *json, int status) {
    char script[1024], config[2048];
    snprintf(script, sizeof(script),
             "#!/bin/sh\ncat <<'EOF'\n%s\nEOF\necho 'a message for the user' >&2\nexit %d\n", json,
             status);
    const char *path = write_file("proc.sh", script, 0700);
    snprintf(config, sizeof(config), "[profile %s]\ncredential_process = %s --flag\n", profile,
             path);
    write_config(config);
}

static void assert_contains(const char *s, const char *want) {
    assert_non_null(s);
    if (strstr(s, want) == NULL)
        fail_msg("'%s' not in: %s", want, s);
}

static void assert_no_secret(const char *s) {
    assert_non_null(s);
    if (strstr(s, SECRET) != NULL || strstr(s, SECRET2) != NULL || strstr(s, TOKEN) != NULL)
        fail_msg("a secret leaked into: %s", s);
}

static void no_http(void *arg, const http_vtable **vt, void **engine) {
    (void)arg;
    *vt = NULL;
    *engine = NULL;
    fail_msg("these tests send no HTTP request");
}

static void on_fetched(void *arg) {
    (*(int *)arg)++;
}

static void on_closed(void *arg) {
    (*(int *)arg) = 1;
}

/* The credentials of spec through a provider on a loop of its own (credential_process runs
 * there, off the loop, as in a run). Returns 0 or the fetch's code with *err. */
static int fetch(cred_spec *spec, const aws_settings *s, credentials *c, char **err) {
    uv_loop_t loop;
    provider *p = NULL;
    int notified = 0, closed = 0;
    const credentials *cur = NULL;
    const char *msg = NULL;
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(provider_new(&loop, spec, s, no_http, on_fetched, &notified, &p), 0);
    int rc = provider_get(p, &cur, &msg);
    if (rc == 1) {
        while (notified == 0)
            uv_run(&loop, UV_RUN_ONCE);
        rc = provider_get(p, &cur, &msg);
    }
    if (rc == 0)
        assert_int_equal(credentials_copy(c, cur), 0);
    else
        *err = strdup(msg ? msg : "?");
    provider_close(p, on_closed, &closed);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(closed, 1);
    assert_int_equal(uv_loop_close(&loop), 0);
    return rc;
}

/* Settings, the plan, then the credentials; returns the first failing code, keeping *err. */
static int resolve(const char *profile, aws_settings *s, credentials *c, char **err) {
    cred_spec *spec = NULL;
    *err = NULL;
    memset(c, 0, sizeof(*c));
    int rc = credentials_settings(profile, NULL, s, err);
    if (rc != 0)
        fail_msg("settings failed: %d %s", rc, *err ? *err : "");
    rc = credentials_plan(s, &spec, err);
    return rc != 0 ? rc : fetch(spec, s, c, err);
}

/* The plan of profile, which must succeed. */
static cred_spec *plan_of(const char *profile, aws_settings *s) {
    cred_spec *spec = NULL;
    char *err = NULL;
    assert_int_equal(credentials_settings(profile, NULL, s, &err), 0);
    int rc = credentials_plan(s, &spec, &err);
    if (rc != 0)
        fail_msg("plan failed: %d %s", rc, err ? err : "");
    return spec;
}

static void expect_creds(const char *profile, const char *akid, const char *secret,
                         const char *token, const char *source_part) {
    aws_settings s;
    credentials c;
    char *err = NULL;
    int rc = resolve(profile, &s, &c, &err);
    if (rc != 0)
        fail_msg("resolve failed: %d %s", rc, err ? err : "");
    assert_string_equal(c.access_key_id, akid);
    assert_string_equal(c.secret_access_key, secret);
    if (token == NULL)
        assert_null(c.session_token);
    else
        assert_string_equal(c.session_token, token);
    assert_contains(c.source, source_part);
    assert_no_secret(c.source);
    credentials_free(&c);
    assert_null(c.secret_access_key);
    credentials_settings_free(&s);
}

/* Resolution must fail with code; *err must contain each of the NULL-terminated parts and
 * no secret. */
static void expect_creds_error(const char *profile, int code, ...) {
    aws_settings s;
    credentials c;
    char *err = NULL;
    va_list ap;
    assert_int_equal(resolve(profile, &s, &c, &err), code);
    assert_null(c.access_key_id);
    assert_null(c.secret_access_key);
    assert_no_secret(err);
    va_start(ap, code);
    for (const char *p = va_arg(ap, const char *); p != NULL; p = va_arg(ap, const char *))
        assert_contains(err, p);
    va_end(ap);
    free(err);
    credentials_settings_free(&s);
}

static char *home_path(const char *rel) {
    static char buf[512];
    snprintf(buf, sizeof(buf), "%s/%s", fx->dir, rel);
    return buf;
}

/* ---- profile and files ----------------------------------------------------------------- */

static void default_profile_comes_from_the_credentials_file(void **state) {
    (void)state;
    write_credentials("[default]\naws_access_key_id = " AKID "\naws_secret_access_key = " SECRET
                      "\n");
    expect_creds(NULL, AKID, SECRET, NULL, "profile 'default' in ");
    expect_creds(NULL, AKID, SECRET, NULL, home_path(".aws/credentials"));
}

static void profile_is_chosen_by_override_then_aws_profile_then_default_profile(void **state) {
    (void)state;
    aws_settings s;
    char *err = NULL;
    write_credentials("[a]\naws_access_key_id=A\naws_secret_access_key=" SECRET "\n"
                      "[b]\naws_access_key_id=B\naws_secret_access_key=" SECRET "\n"
                      "[c]\naws_access_key_id=C\naws_secret_access_key=" SECRET "\n");
    setenv("AWS_DEFAULT_PROFILE", "c", 1);
    expect_creds(NULL, "C", SECRET, NULL, "profile 'c'");
    setenv("AWS_PROFILE", "b", 1);
    expect_creds(NULL, "B", SECRET, NULL, "profile 'b'");
    expect_creds("a", "A", SECRET, NULL, "profile 'a'");
    assert_int_equal(credentials_settings("a", NULL, &s, &err), 0);
    assert_string_equal(s.profile, "a");
    assert_true(s.profile_override);
    credentials_settings_free(&s);
    assert_int_equal(credentials_settings(NULL, NULL, &s, &err), 0);
    assert_string_equal(s.profile, "b");
    assert_false(s.profile_override);
    credentials_settings_free(&s);
}

static void file_variables_override_the_home_paths(void **state) {
    (void)state;
    aws_settings s;
    char *err = NULL;
    write_file("creds.ini", "[default]\naws_access_key_id=X\naws_secret_access_key=" SECRET "\n",
               0600);
    write_file("conf.ini", "[default]\nregion = ap-south-1\n", 0600);
    setenv("AWS_SHARED_CREDENTIALS_FILE", home_path("creds.ini"), 1);
    setenv("AWS_CONFIG_FILE", "~/conf.ini", 1);
    assert_int_equal(credentials_settings(NULL, NULL, &s, &err), 0);
    assert_string_equal(s.credentials_file, home_path("creds.ini"));
    assert_string_equal(s.config_file, home_path("conf.ini"));
    assert_string_equal(s.region, "ap-south-1");
    credentials_settings_free(&s);
    expect_creds(NULL, "X", SECRET, NULL, home_path("creds.ini"));
}

static void ini_files_are_read_as_the_cli_reads_them(void **state) {
    (void)state;
    write_config("# a comment\n"
                 "; another\n"
                 "[default]\n"
                 "region=eu-west-1\n"
                 "[dev]\n" /* not a profile in the config file */
                 "region = us-west-1\n"
                 "[profile   dev ]\n"
                 "  s3 =\n"
                 "    max_concurrent_requests = 20\n"
                 "    region = nested-must-not-win\n"
                 "\n"
                 "  Region\t=   eu-central-1  \n"
                 "output: json\n"
                 "[staging]\n"
                 "region = us-east-2\n"
                 "[profile other]\n"
                 "region = sa-east-1\n");
    const char *cfg = home_path(".aws/config");
    char *v = credentials_ini_get(cfg, "dev", 1, "region");
    assert_non_null(v);
    assert_string_equal(v, "eu-central-1");
    free(v);
    v = credentials_ini_get(cfg, "dev", 1, "OUTPUT");
    assert_string_equal(v, "json");
    free(v);
    v = credentials_ini_get(cfg, "default", 1, "region");
    assert_string_equal(v, "eu-west-1");
    free(v);
    assert_null(credentials_ini_get(cfg, "Dev", 1, "region"));
    assert_null(credentials_ini_get(cfg, "dev", 1, "max_concurrent_requests"));
    /* [staging] is not a profile in a config file, only in a credentials file. */
    assert_null(credentials_ini_get(cfg, "staging", 1, "region"));
    v = credentials_ini_get(cfg, "staging", 0, "region");
    assert_string_equal(v, "us-east-2");
    free(v);
    assert_null(credentials_ini_get(home_path("missing"), "dev", 1, "region"));
}

static void profile_default_section_in_config_wins_over_default(void **state) {
    (void)state;
    write_config("[profile default]\nregion = eu-south-1\n[default]\nregion = eu-west-3\n"
                 "output = text\n");
    char *v = credentials_ini_get(home_path(".aws/config"), "default", 1, "region");
    assert_string_equal(v, "eu-south-1");
    free(v);
    v = credentials_ini_get(home_path(".aws/config"), "default", 1, "output");
    assert_string_equal(v, "text");
    free(v);
}

static void named_profile_missing_from_both_files_is_a_config_error(void **state) {
    (void)state;
    aws_settings s;
    char *err = NULL;
    write_credentials("[default]\naws_access_key_id=X\naws_secret_access_key=" SECRET "\n");
    setenv("AWS_ACCESS_KEY_ID", AKID, 1);
    setenv("AWS_SECRET_ACCESS_KEY", SECRET2, 1);
    setenv("AWS_PROFILE", "staging", 1);
    assert_int_equal(credentials_settings(NULL, NULL, &s, &err), OL_ECONFIG);
    assert_contains(err, "profile 'staging' not found in");
    assert_contains(err, home_path(".aws/credentials"));
    assert_contains(err, home_path(".aws/config"));
    assert_no_secret(err);
    assert_null(s.profile);
    free(err);
    err = NULL;
    assert_int_equal(credentials_settings("prod", NULL, &s, &err), OL_ECONFIG);
    assert_contains(err, "'prod'");
    free(err);
}

static void malformed_file_names_file_and_line_but_not_its_text(void **state) {
    (void)state;
    aws_settings s;
    char *err = NULL;
    write_credentials("[default]\naws_access_key_id = " AKID "\n" SECRET "\n");
    assert_int_equal(credentials_settings(NULL, NULL, &s, &err), OL_ECONFIG);
    assert_contains(err, home_path(".aws/credentials"));
    assert_contains(err, "line 3");
    assert_no_secret(err);
    free(err);
    err = NULL;
    write_credentials("aws_secret_access_key = " SECRET "\n");
    assert_int_equal(credentials_settings(NULL, NULL, &s, &err), OL_ECONFIG);
    assert_contains(err, "line 1");
    assert_no_secret(err);
    free(err);
}

/* ---- the chain ------------------------------------------------------------------------- */

static void environment_keys_win_over_profile_from_aws_profile(void **state) {
    (void)state;
    write_credentials("[dev]\naws_access_key_id=FILE\naws_secret_access_key=" SECRET2 "\n");
    setenv("AWS_PROFILE", "dev", 1);
    setenv("AWS_ACCESS_KEY_ID", AKID, 1);
    setenv("AWS_SECRET_ACCESS_KEY", SECRET, 1);
    setenv("AWS_SESSION_TOKEN", TOKEN, 1);
    expect_creds(NULL, AKID, SECRET, TOKEN, "environment variables (AWS_ACCESS_KEY_ID)");
}

static void profile_override_skips_environment_keys(void **state) {
    (void)state;
    write_credentials("[dev]\naws_access_key_id=FILE\naws_secret_access_key=" SECRET2
                      "\naws_session_token=" TOKEN "\n");
    setenv("AWS_ACCESS_KEY_ID", AKID, 1);
    setenv("AWS_SECRET_ACCESS_KEY", SECRET, 1);
    expect_creds("dev", "FILE", SECRET2, TOKEN, "profile 'dev'");
}

static void access_key_without_secret_in_environment_names_the_missing_variable(void **state) {
    (void)state;
    setenv("AWS_ACCESS_KEY_ID", AKID, 1);
    expect_creds_error(NULL, OL_ECREDS, "AWS_SECRET_ACCESS_KEY is not", NULL);
    unsetenv("AWS_ACCESS_KEY_ID");
    setenv("AWS_SECRET_ACCESS_KEY", SECRET, 1);
    expect_creds_error(NULL, OL_ECREDS, "AWS_ACCESS_KEY_ID is not", NULL);
}

static void config_file_keys_are_used_when_the_credentials_file_has_none(void **state) {
    (void)state;
    write_credentials("[other]\naws_access_key_id=O\naws_secret_access_key=" SECRET2 "\n");
    write_config("[profile dev]\nregion = eu-west-1\naws_access_key_id = CFG\n"
                 "aws_secret_access_key = " SECRET "\n");
    expect_creds("dev", "CFG", SECRET, NULL, home_path(".aws/config"));
}

static void credentials_file_wins_over_config_file(void **state) {
    (void)state;
    write_credentials("[dev]\naws_access_key_id=CRED\naws_secret_access_key=" SECRET "\n");
    write_config("[profile dev]\naws_access_key_id = CFG\naws_secret_access_key = " SECRET2 "\n");
    expect_creds("dev", "CRED", SECRET, NULL, home_path(".aws/credentials"));
}

static void half_a_key_pair_in_a_profile_names_the_missing_key(void **state) {
    (void)state;
    write_credentials("[dev]\naws_secret_access_key=" SECRET "\n");
    expect_creds_error("dev", OL_ECONFIG, "profile 'dev'", home_path(".aws/credentials"),
                       "no aws_access_key_id", NULL);
}

static void no_credentials_lists_what_was_tried_and_how_to_fix_it(void **state) {
    (void)state;
    write_config("[profile dev]\nregion = eu-west-1\n");
    setenv("AWS_PROFILE", "dev", 1);
    expect_creds_error(NULL, OL_ECREDS, "AWS_ACCESS_KEY_ID", home_path(".aws/credentials"),
                       "file not found", home_path(".aws/config"), "profile 'dev'",
                       "aws configure --profile dev", NULL);
    write_credentials("[default]\naws_access_key_id=X\naws_secret_access_key=" SECRET "\n");
    expect_creds_error("dev", OL_ECREDS, "no such profile", "not used", NULL);
}

#define ROLE "arn:aws:iam::123456789012:role/deploy"

static void role_profile_is_assumed_with_its_source_profile(void **state) {
    (void)state;
    write_config("[profile deploy]\nrole_arn = " ROLE "\nsource_profile = dev\n"
                 "external_id = ext-1\nrole_session_name = ci-run\nduration_seconds = 900\n");
    write_credentials("[dev]\naws_access_key_id = " AKID "\naws_secret_access_key = " SECRET "\n");
    aws_settings s;
    cred_spec *sp = plan_of("deploy", &s);
    assert_int_equal(sp->kind, CRED_ASSUME_ROLE);
    assert_string_equal(sp->role_arn, ROLE);
    assert_string_equal(sp->external_id, "ext-1");
    assert_string_equal(sp->session_name, "ci-run");
    assert_int_equal(sp->duration_s, 900);
    assert_int_equal(sp->base->kind, CRED_STATIC);
    assert_string_equal(sp->base->creds.secret_access_key, SECRET);
    assert_contains(sp->source, ROLE);
    assert_contains(sp->source, "profile 'dev'");
    assert_no_secret(sp->source);
    /* The AWS CLI's file for these arguments: the SHA-1 of Python's
     * json.dumps({"DurationSeconds": 900, "ExternalId": "ext-1", "RoleArn": ROLE,
     * "RoleSessionName": "ci-run"}, sort_keys=True). */
    snprintf(fx->path, sizeof(fx->path),
             "%s/.aws/cli/cache/87422dd8a15f1866c69ad515139fc1da66cd1885.json", fx->dir);
    assert_string_equal(sp->role_cache_file, fx->path);
    credentials_spec_free(sp);
    credentials_settings_free(&s);

    /* Non-ASCII text, DEL and a literal backslash-u spelled as Python spells them:
     * json.dumps({"ExternalId": "ext-\u00e9\u00c9\U0001F600\x7f\\u00AB", "RoleArn": ROLE},
     * sort_keys=True) is {"ExternalId": "ext-\u00e9\u00c9\ud83d\ude00\u007f\\u00AB", ...}. */
    write_config("[profile deploy]\nrole_arn = " ROLE "\nsource_profile = dev\n"
                 "external_id = ext-\xc3\xa9\xc3\x89\xf0\x9f\x98\x80\x7f\\u00AB\n");
    sp = plan_of("deploy", &s);
    snprintf(fx->path, sizeof(fx->path),
             "%s/.aws/cli/cache/d419c441747a8e35c1a931aa84269186c1a8a038.json", fx->dir);
    assert_string_equal(sp->role_cache_file, fx->path);
    credentials_spec_free(sp);
    credentials_settings_free(&s);
}

/* A role session in the AWS CLI's cache file: written 0600 in a 0700 directory, in
 * botocore's shape; read back while more than 15 minutes are left, and nothing else. */
static void role_session_cache_round_trips_within_botocores_window(void **state) {
    (void)state;
    char path[600], dir[100], other[700];
    snprintf(dir, sizeof(dir), "%s/.aws/cli/cache", fx->dir);
    snprintf(path, sizeof(path), "%s/k.json", dir);
    const long long exp = 1796234400; /* 2026-12-02T18:00:00Z */
    assert_int_equal(credentials_parse_time("2026-12-02T18:00:00UTC"), exp);
    credentials c = {.access_key_id = "ASIAROLESESSION00001",
                     .secret_access_key = "role/session+secret",
                     .session_token = "token-of-the-session"};
    assert_int_equal(credentials_role_cache_write(path, &c, exp), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    json_error_t jerr;
    json_t *doc = json_load_file(path, 0, &jerr);
    assert_non_null(doc);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(doc, "Credentials"), "Expiration")),
        "2026-12-02T18:00:00UTC");
    json_decref(doc);

    credentials got;
    long long got_exp = 0;
    assert_int_equal(credentials_role_cache_read(path, exp - 901, "role R", &got, &got_exp), 0);
    assert_string_equal(got.access_key_id, c.access_key_id);
    assert_string_equal(got.secret_access_key, c.secret_access_key);
    assert_string_equal(got.session_token, c.session_token);
    assert_int_equal(got_exp, exp);
    assert_contains(got.source, "role R");
    assert_contains(got.source, path);
    credentials_free(&got);
    /* Inside the window, or past the end: assumed again. */
    assert_int_equal(credentials_role_cache_read(path, exp - 899, NULL, &got, &got_exp), OL_ENOENT);
    assert_int_equal(credentials_role_cache_read(path, exp + 5, NULL, &got, &got_exp), OL_ENOENT);
    /* Missing, malformed, without a session token, or a FIFO (which must not hang). */
    assert_int_equal(credentials_role_cache_read(NULL, 0, NULL, &got, &got_exp), OL_ENOENT);
    snprintf(other, sizeof(other), "%s/none.json", dir);
    assert_int_equal(credentials_role_cache_read(other, 0, NULL, &got, &got_exp), OL_ENOENT);
    const char *bad[] = {"{not json", "[]", "{\"Credentials\": {\"AccessKeyId\": \"A\"}}",
                         "{\"Credentials\": {\"AccessKeyId\": \"A\", \"SecretAccessKey\": \"S\", "
                         "\"Expiration\": \"2026-12-02T18:00:00UTC\"}}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(bad[i], f);
        fclose(f);
        assert_int_equal(credentials_role_cache_read(path, 0, NULL, &got, &got_exp), OL_ENOENT);
        assert_null(got.access_key_id);
    }
    snprintf(other, sizeof(other), "%s/fifo.json", dir);
    assert_int_equal(mkfifo(other, 0600), 0);
    assert_int_equal(credentials_role_cache_read(other, 0, NULL, &got, &got_exp), OL_ENOENT);
}

static void role_chains_end_at_keys_and_loops_are_refused(void **state) {
    (void)state;
    write_config("[profile top]\nrole_arn = " ROLE "-top\nsource_profile = mid\n"
                 "[profile mid]\nrole_arn = " ROLE "\nsource_profile = dev\n"
                 "[profile a]\nrole_arn = " ROLE "\nsource_profile = b\n"
                 "[profile b]\nrole_arn = " ROLE "\nsource_profile = a\n"
                 "[profile self]\nrole_arn = " ROLE "\nsource_profile = self\n"
                 "aws_access_key_id = " AKID "\naws_secret_access_key = " SECRET "\n");
    write_credentials("[dev]\naws_access_key_id = " AKID "\naws_secret_access_key = " SECRET "\n");
    aws_settings s;
    cred_spec *sp = plan_of("top", &s);
    assert_int_equal(sp->kind, CRED_ASSUME_ROLE);
    assert_int_equal(sp->base->kind, CRED_ASSUME_ROLE);
    assert_int_equal(sp->base->base->kind, CRED_STATIC);
    credentials_spec_free(sp);
    credentials_settings_free(&s);
    sp = plan_of("self", &s);
    assert_int_equal(sp->base->kind, CRED_STATIC);
    credentials_spec_free(sp);
    credentials_settings_free(&s);
    expect_creds_error("a", OL_ECONFIG, "loop", "'a'", NULL);
}

static void role_settings_are_checked_before_any_request(void **state) {
    (void)state;
    write_config("[profile none]\nrole_arn = " ROLE "\n"
                 "[profile bad]\nrole_arn = " ROLE "\ncredential_source = Laptop\n"
                 "[profile short]\nrole_arn = " ROLE "\ncredential_source = Environment\n"
                 "duration_seconds = forever\n"
                 "[profile brief]\nrole_arn = " ROLE "\ncredential_source = Environment\n"
                 "duration_seconds = 60\n"
                 "[profile envsrc]\nrole_arn = " ROLE "\ncredential_source = Environment\n"
                 "[profile gone]\nrole_arn = " ROLE "\nsource_profile = nowhere\n");
    expect_creds_error("none", OL_ECONFIG, "source_profile", "credential_source", NULL);
    expect_creds_error("bad", OL_ECONFIG, "Laptop", "Environment", NULL);
    expect_creds_error("short", OL_ECONFIG, "duration_seconds", NULL);
    expect_creds_error("brief", OL_ECONFIG, "duration_seconds = 60", "900 to 43200", NULL);
    expect_creds_error("envsrc", OL_ECREDS, "credential_source = Environment", NULL);
    expect_creds_error("gone", OL_ECONFIG, "nowhere", NULL);
    setenv("AWS_ACCESS_KEY_ID", AKID, 1);
    setenv("AWS_SECRET_ACCESS_KEY", SECRET, 1);
    aws_settings s;
    cred_spec *sp = plan_of("envsrc", &s);
    assert_int_equal(sp->kind, CRED_ASSUME_ROLE);
    assert_string_equal(sp->base->creds.access_key_id, AKID);
    credentials_spec_free(sp);
    credentials_settings_free(&s);
}

static void mfa_profile_without_a_terminal_is_refused(void **state) {
    (void)state;
    write_config("[profile mfa]\nrole_arn = " ROLE "\nsource_profile = dev\n"
                 "mfa_serial = arn:aws:iam::123456789012:mfa/me\n");
    write_credentials("[dev]\naws_access_key_id = " AKID "\naws_secret_access_key = " SECRET "\n");
    /* In a session of its own the child has no controlling terminal, as under cron or CI,
     * whatever terminal this test runs on. */
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        aws_settings s;
        cred_spec *sp = NULL;
        char *err = NULL;
        if (setsid() < 0 || credentials_settings("mfa", NULL, &s, &err) != 0)
            _exit(10);
        int rc = credentials_plan(&s, &sp, &err);
        if (rc != OL_ECREDS || !err || !strstr(err, "no terminal") || !strstr(err, "MFA") ||
            !strstr(err, "profile 'mfa'"))
            _exit(11);
        /* A session the AWS CLI cached for this role (after its own prompt) is used
         * instead: no code to ask for. */
        char path[600];
        snprintf(path, sizeof(path),
                 "%s/.aws/cli/cache/391a75524b09afcc91e2f38d977d7e9d386fc338.json", fx->dir);
        credentials c = {.access_key_id = "ASIACACHED0000000001",
                         .secret_access_key = "cached-secret",
                         .session_token = "cached-token"};
        if (credentials_role_cache_write(path, &c, (long long)time(NULL) + 3600) != 0)
            _exit(12);
        free(err);
        err = NULL;
        rc = credentials_plan(&s, &sp, &err);
        _exit(rc == 0 && sp != NULL && strcmp(sp->role_cache_file, path) == 0 ? 0 : 13);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void web_identity_comes_from_the_profile_or_the_environment(void **state) {
    (void)state;
    write_config("[profile ci]\nrole_arn = " ROLE "\nweb_identity_token_file = /run/token\n");
    aws_settings s;
    cred_spec *sp = plan_of("ci", &s);
    assert_int_equal(sp->kind, CRED_WEB_IDENTITY);
    assert_string_equal(sp->token_file, "/run/token");
    credentials_spec_free(sp);
    credentials_settings_free(&s);
    setenv("AWS_ROLE_ARN", ROLE, 1);
    setenv("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/oidc", 1);
    sp = plan_of(NULL, &s);
    assert_int_equal(sp->kind, CRED_WEB_IDENTITY);
    assert_string_equal(sp->token_file, "/var/run/oidc");
    assert_contains(sp->source, "AWS_ROLE_ARN");
    credentials_spec_free(sp);
    credentials_settings_free(&s);
    unsetenv("AWS_WEB_IDENTITY_TOKEN_FILE");
    expect_creds_error(NULL, OL_ECONFIG, "AWS_WEB_IDENTITY_TOKEN_FILE", NULL);
}

/* The SHA-1 of the session name (sso_session) or of the start URL (legacy): botocore's
 * cache key. */
#define CORP_CACHE ".aws/sso/cache/ee0bfd2552fbd840c02cc48b6e823320543c450f.json"
#define LEGACY_CACHE ".aws/sso/cache/a7a07f494db7b3ef8d9cffbc80d19104dbe8f51e.json"
#define SSO_TOKEN "aoaAAAAAGNvcnAtc3NvLWJlYXJlci10b2tlbg"

static void sso_profiles_need_a_cached_login(void **state) {
    (void)state;
    write_config("[profile sso]\nsso_session = corp\nsso_account_id = 123456789012\n"
                 "sso_role_name = Admin\n"
                 "[sso-session corp]\nsso_start_url = https://start.example.com/start\n"
                 "sso_region = eu-west-1\n"
                 "[profile legacy]\nsso_start_url = https://start.example.com/start\n"
                 "sso_region = eu-west-1\nsso_account_id = 123456789012\n"
                 "sso_role_name = Admin\n"
                 "[profile half]\nsso_session = corp\nsso_account_id = 123456789012\n");
    expect_creds_error("sso", OL_ECREDS, "aws sso login --profile sso", "no IAM Identity Center",
                       NULL);
    expect_creds_error("legacy", OL_ECREDS, "aws sso login --profile legacy", NULL);
    expect_creds_error("half", OL_ECONFIG, "sso_role_name", "aws configure sso", NULL);
    assert_int_equal(mkdir(home_path(".aws/sso"), 0700), 0);
    assert_int_equal(mkdir(home_path(".aws/sso/cache"), 0700), 0);
    write_file(CORP_CACHE,
               "{\"accessToken\": \"" SSO_TOKEN "\", \"expiresAt\": \"2999-01-01T00:00:00Z\"}",
               0600);
    write_file(LEGACY_CACHE,
               "{\"accessToken\": \"" SSO_TOKEN "\", \"expiresAt\": \"2001-01-01T00:00:00Z\"}",
               0600);
    aws_settings s;
    cred_spec *sp = plan_of("sso", &s);
    assert_int_equal(sp->kind, CRED_SSO);
    assert_string_equal(sp->url, "https://portal.sso.eu-west-1.amazonaws.com");
    assert_string_equal(sp->sso_role_name, "Admin");
    assert_string_equal(sp->sso_account_id, "123456789012");
    credentials_spec_free(sp);
    credentials_settings_free(&s);
    setenv("AWS_ENDPOINT_URL_SSO", "http://127.0.0.1:9", 1);
    sp = plan_of("sso", &s);
    assert_string_equal(sp->url, "http://127.0.0.1:9");
    credentials_spec_free(sp);
    credentials_settings_free(&s);
    aws_settings s2;
    credentials c;
    char *err = NULL;
    assert_int_equal(resolve("legacy", &s2, &c, &err), OL_ECREDS);
    assert_contains(err, "expired");
    assert_contains(err, "aws sso login --profile legacy");
    if (strstr(err, SSO_TOKEN) != NULL)
        fail_msg("the SSO token leaked into: %s", err);
    free(err);
    credentials_settings_free(&s2);

    /* A garbled cache is named as such, by position: jansson's own message would quote
     * the token it choked on. */
    write_file(CORP_CACHE, "{\"accessToken\": \"" SSO_TOKEN "\" \"expiresAt\": 1}", 0600);
    aws_settings s3;
    err = NULL;
    assert_int_equal(resolve("sso", &s3, &c, &err), OL_ECREDS);
    assert_contains(err, "is not JSON (line 1 column");
    assert_contains(err, "aws sso login --profile sso");
    if (strstr(err, SSO_TOKEN) != NULL || strstr(err, "aoaAAAA") != NULL)
        fail_msg("the SSO token leaked into: %s", err);
    free(err);
    credentials_settings_free(&s3);

    /* A FIFO planted where the cache goes is refused at once: reading it would wait for a
     * writer forever. */
    assert_int_equal(unlink(home_path(CORP_CACHE)), 0);
    assert_int_equal(mkfifo(home_path(CORP_CACHE), 0600), 0);
    expect_creds_error("sso", OL_ECREDS, "cannot read the IAM Identity Center (SSO) token cache",
                       "FIFO", "aws sso login --profile sso", NULL);
    assert_int_equal(unlink(home_path(CORP_CACHE)), 0);
}

/* ---- credential_process ------------------------------------------------------------------ */

static void credential_process_output_is_used(void **state) {
    (void)state;
    write_process("proc",
                  "{\"Version\": 1, \"AccessKeyId\": \"" AKID "\", \"SecretAccessKey\": \"" SECRET
                  "\", \"SessionToken\": \"" TOKEN "\", \"Expiration\": "
                  "\"2999-01-01T00:00:00.000Z\"}",
                  0);
    expect_creds("proc", AKID, SECRET, TOKEN, "credential_process of profile 'proc' in ");
    write_process("proc",
                  "{\"Version\": 1, \"AccessKeyId\": \"" AKID "\", \"SecretAccessKey\": \"" SECRET
                  "\", \"Expiration\": \"2999-01-01T00:00:00+02:00\"}",
                  0);
    expect_creds("proc", AKID, SECRET, NULL, home_path(".aws/config"));
}

static void credential_process_with_another_version_is_refused(void **state) {
    (void)state;
    write_process(
        "proc",
        "{\"Version\": 2, \"AccessKeyId\": \"" AKID "\", \"SecretAccessKey\": \"" SECRET "\"}", 0);
    expect_creds_error("proc", OL_ECONFIG, "Version 2", "profile 'proc'", home_path(".aws/config"),
                       NULL);
    write_process("proc", "{\"AccessKeyId\": \"" AKID "\", \"SecretAccessKey\": \"" SECRET "\"}",
                  0);
    expect_creds_error("proc", OL_ECONFIG, "Version", NULL);
}

static void credential_process_with_expired_credentials_is_refused(void **state) {
    (void)state;
    write_process("proc",
                  "{\"Version\": 1, \"AccessKeyId\": \"" AKID "\", \"SecretAccessKey\": \"" SECRET
                  "\", \"SessionToken\": \"" TOKEN "\", \"Expiration\": \"2001-01-01T00:00:00Z\"}",
                  0);
    expect_creds_error("proc", OL_ECREDS, "expired", "2001-01-01T00:00:00Z", "profile 'proc'",
                       NULL);
    write_process("proc",
                  "{\"Version\": 1, \"AccessKeyId\": \"" AKID "\", \"SecretAccessKey\": \"" SECRET
                  "\", \"Expiration\": \"tomorrow\"}",
                  0);
    expect_creds_error("proc", OL_ECONFIG, "Expiration", NULL);
}

static void credential_process_failure_names_profile_and_status(void **state) {
    (void)state;
    write_process(
        "proc",
        "{\"Version\": 1, \"AccessKeyId\": \"" AKID "\", \"SecretAccessKey\": \"" SECRET "\"}", 3);
    expect_creds_error("proc", OL_ECREDS, "credential_process of profile 'proc'",
                       home_path(".aws/config"), "status 3", NULL);
}

static void credential_process_printing_garbage_does_not_echo_it(void **state) {
    (void)state;
    write_process("proc", "AccessKeyId=" AKID " SecretAccessKey=" SECRET, 0);
    expect_creds_error("proc", OL_ECONFIG, "invalid JSON", "profile 'proc'", NULL);
    write_process("proc", "{\"Version\": 1, \"AccessKeyId\": \"" AKID "\"}", 0);
    expect_creds_error("proc", OL_ECONFIG, "no SecretAccessKey", NULL);
}

static void credential_process_that_hangs_is_stopped_after_its_timeout(void **state) {
    (void)state;
    const char *path = write_file("hang.sh", "#!/bin/sh\nsleep 60\n", 0700);
    char config[600];
    snprintf(config, sizeof(config), "[profile proc]\ncredential_process = %s\n", path);
    write_config(config);
    setenv("OPSLINE_CREDENTIAL_TIMEOUT", "1", 1);
    expect_creds_error("proc", OL_ECREDS, "credential_process of profile 'proc'",
                       "did not finish within 1 s", "OPSLINE_CREDENTIAL_TIMEOUT", NULL);
}

/* ---- region -------------------------------------------------------------------------- */

static void expect_region(const char *override, const char *region, const char *source) {
    aws_settings s;
    char *err = NULL;
    int rc = credentials_settings(NULL, override, &s, &err);
    if (rc != 0)
        fail_msg("%d %s", rc, err ? err : "");
    assert_string_equal(s.region, region);
    assert_string_equal(s.region_source, source);
    credentials_settings_free(&s);
}

static void region_comes_from_override_then_env_then_profile_then_default(void **state) {
    (void)state;
    expect_region(NULL, "eu-north-1", "default");
    write_config("[profile dev]\nregion = eu-west-2\nendpoint_url = http://127.0.0.1:5000\n");
    setenv("AWS_PROFILE", "dev", 1);
    char want[600];
    snprintf(want, sizeof(want), "profile 'dev' in %s", home_path(".aws/config"));
    expect_region(NULL, "eu-west-2", want);
    setenv("AWS_DEFAULT_REGION", "us-west-2", 1);
    expect_region(NULL, "us-west-2", "AWS_DEFAULT_REGION");
    setenv("AWS_REGION", "ca-central-1", 1);
    expect_region(NULL, "ca-central-1", "AWS_REGION");
    expect_region("us-gov-west-1", "us-gov-west-1", "--region");

    aws_settings s;
    char *err = NULL;
    assert_int_equal(credentials_settings(NULL, NULL, &s, &err), 0);
    assert_string_equal(s.endpoint_url, "http://127.0.0.1:5000");
    credentials_settings_free(&s);
}

static void invalid_region_is_a_config_error_naming_its_source(void **state) {
    (void)state;
    aws_settings s;
    char *err = NULL;
    setenv("AWS_REGION", "stockholm", 1);
    assert_int_equal(credentials_settings(NULL, NULL, &s, &err), OL_ECONFIG);
    assert_contains(err, "'stockholm'");
    assert_contains(err, "AWS_REGION");
    free(err);
}

static void source_is_read_through_its_accessor(void **state) {
    (void)state;
    setenv("AWS_ACCESS_KEY_ID", AKID, 1);
    setenv("AWS_SECRET_ACCESS_KEY", SECRET, 1);
    aws_settings s;
    credentials c;
    char *err = NULL;
    assert_int_equal(resolve(NULL, &s, &c, &err), 0);
    assert_contains(credentials_source(&c), "environment variables");
    assert_no_secret(credentials_source(&c));
    assert_null(credentials_source(NULL));
    credentials_free(&c);
    credentials_settings_free(&s);
}

int main(void) {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(default_profile_comes_from_the_credentials_file),
        T(source_is_read_through_its_accessor),
        T(profile_is_chosen_by_override_then_aws_profile_then_default_profile),
        T(file_variables_override_the_home_paths),
        T(ini_files_are_read_as_the_cli_reads_them),
        T(profile_default_section_in_config_wins_over_default),
        T(named_profile_missing_from_both_files_is_a_config_error),
        T(malformed_file_names_file_and_line_but_not_its_text),
        T(environment_keys_win_over_profile_from_aws_profile),
        T(profile_override_skips_environment_keys),
        T(access_key_without_secret_in_environment_names_the_missing_variable),
        T(config_file_keys_are_used_when_the_credentials_file_has_none),
        T(credentials_file_wins_over_config_file),
        T(half_a_key_pair_in_a_profile_names_the_missing_key),
        T(no_credentials_lists_what_was_tried_and_how_to_fix_it),
        T(role_profile_is_assumed_with_its_source_profile),
        T(role_chains_end_at_keys_and_loops_are_refused),
        T(role_settings_are_checked_before_any_request),
        T(mfa_profile_without_a_terminal_is_refused),
        T(role_session_cache_round_trips_within_botocores_window),
        T(web_identity_comes_from_the_profile_or_the_environment),
        T(sso_profiles_need_a_cached_login),
        T(credential_process_that_hangs_is_stopped_after_its_timeout),
        T(credential_process_output_is_used),
        T(credential_process_with_another_version_is_refused),
        T(credential_process_with_expired_credentials_is_refused),
        T(credential_process_failure_names_profile_and_status),
        T(credential_process_printing_garbage_does_not_echo_it),
        T(region_comes_from_override_then_env_then_profile_then_default),
        T(invalid_region_is_a_config_error_naming_its_source),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
