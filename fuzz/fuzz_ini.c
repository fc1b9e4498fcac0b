/* fuzz_ini: the shared AWS credentials and config files (host/aws/credentials.c), read the
 * way `opsline` reads them: through credentials_ini_get and credentials_settings, with
 * AWS_SHARED_CREDENTIALS_FILE and AWS_CONFIG_FILE naming the input. The first byte picks
 * the profile; the rest is the file. Checked beyond "no crash": values come back trimmed,
 * keys match in any case, and every refusal says why. credentials_resolve is not called: a fuzzed
 * credential_process would run arbitrary shell commands. */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "credentials.h"
#include "fuzz_input.h"
#include "opsline/opsline.h"

static const char *const profiles[] = {"default", "dev", "prod", "sso", "profile dev", ""};
static const char *const keys[] = {"aws_access_key_id",
                                   "aws_secret_access_key",
                                   "aws_session_token",
                                   "region",
                                   "credential_process",
                                   "endpoint_url",
                                   "sso_start_url",
                                   "role_arn",
                                   "s3"};

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    static const char *const unset[] = {
        "AWS_ACCESS_KEY_ID",  "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",   "AWS_REGION",
        "AWS_DEFAULT_REGION", "AWS_PROFILE",           "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL"};
    for (size_t i = 0; i < sizeof(unset) / sizeof(unset[0]); i++)
        unsetenv(unset[i]);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    const char *profile = profiles[data[0] % (sizeof(profiles) / sizeof(profiles[0]))];
    const char *path = fuzz_input_file(data + 1, size - 1);
    for (int is_config = 0; is_config <= 1; is_config++)
        for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
            char *v = credentials_ini_get(path, profile, is_config, keys[k]);
            size_t n = v != NULL ? strlen(v) : 0;
            if (v != NULL &&
                (n == 0 || v[0] == ' ' || v[0] == '\t' || isspace((unsigned char)v[n - 1])))
                abort(); /* values are trimmed, and an empty one counts as absent */
            free(v);
        }
    /* Keys match case-insensitively, as in botocore's configparser. */
    char *lower = credentials_ini_get(path, profile, 1, "region");
    char *upper = credentials_ini_get(path, profile, 1, "REGION");
    if ((lower == NULL) != (upper == NULL) || (lower != NULL && strcmp(lower, upper) != 0))
        abort();
    free(lower);
    free(upper);

    setenv("AWS_SHARED_CREDENTIALS_FILE", path, 1);
    setenv("AWS_CONFIG_FILE", path, 1);
    aws_settings s;
    char *err = NULL;
    int rc = credentials_settings(data[0] & 0x80 ? profile : NULL, NULL, &s, &err);
    if (rc == 0 && (s.region == NULL || s.profile == NULL || err != NULL))
        abort(); /* success leaves a region and a profile and no message */
    if (rc != 0 && err == NULL && rc != OL_ENOMEM)
        abort(); /* every refusal says why */
    free(err);
    credentials_settings_free(&s);
    return 0;
}
