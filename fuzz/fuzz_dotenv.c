/* fuzz_dotenv: the .env merger (plugins/secrets/dotenv.c), whose input is whatever .env the
 * user already has. The pure functions are compiled in as the unit test does
 * (tests/unit/test_dotenv.c), so the store itself needs no test-only entry point.
 *
 * Input: the .env text, optionally followed by a NUL and the secret value to store (so
 * quoting of odd secrets is fuzzed too). Checked beyond "no crash", as a dotenv reader
 * would see the result:
 *   - after a merge, each variable reads back (dotenv_lookup) as the value written;
 *   - merging the same values again changes nothing;
 *   - after a removal, none of the variables is left. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../plugins/secrets/dotenv.c"
#include "../plugins/secrets/lib/storebuf.c"
#include "../plugins/secrets/lib/secretdir.c"

extern const ol_host run_host_api;

static void check_merged(const char *text, size_t len, const ol_kv *vars, size_t n) {
    for (size_t v = 0; v < n; v++) {
        char *got = dotenv_lookup(text, len, vars[v].name);
        if (got == NULL || strcmp(got, vars[v].value) != 0)
            abort(); /* the stored value does not read back */
        free(got);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;
    const uint8_t *nul = memchr(data, '\0', size);
    size_t len = nul != NULL ? (size_t)(nul - data) : size;
    char *secret = nul != NULL ? strndup((const char *)nul + 1, size - len - 1) : NULL;
    const ol_kv vars[DOTENV_N_VARS] = {
        {"AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"},
        {"AWS_SECRET_ACCESS_KEY",
         secret != NULL && secret[0] != '\0' ? secret : "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"},
        {"AWS_REGION", "eu-north-1"},
        {"S3_BUCKET", "acme-production"}};
    const char *names[DOTENV_N_VARS];
    for (size_t v = 0; v < DOTENV_N_VARS; v++)
        names[v] = vars[v].name;

    size_t bad_line = 0, out_len = 0;
    size_t check = dotenv_check(text, len, names, DOTENV_N_VARS);
    char *out = dotenv_merge(&run_host_api, text, len, vars, DOTENV_N_VARS, &out_len, &bad_line);
    if ((out == NULL) != (check != 0) || (out == NULL && bad_line != check))
        abort(); /* merge refuses exactly the files check reports, at the same line */
    if (out != NULL) {
        if (strlen(out) != out_len)
            abort();
        check_merged(out, out_len, vars, DOTENV_N_VARS);
        size_t again_len = 0;
        char *again =
            dotenv_merge(&run_host_api, out, out_len, vars, DOTENV_N_VARS, &again_len, NULL);
        if (again == NULL || again_len != out_len || memcmp(again, out, out_len) != 0)
            abort(); /* a second merge of the same values must be a no-op */
        free_wiped(&run_host_api, again, again_len);
        free_wiped(&run_host_api, out, out_len);
    }

    size_t rm_len = 0;
    char *rm = dotenv_remove(&run_host_api, text, len, names, DOTENV_N_VARS, &rm_len);
    if (rm == NULL)
        abort();
    for (size_t v = 0; v < DOTENV_N_VARS; v++) {
        char *left = dotenv_lookup(rm, rm_len, names[v]);
        if (left != NULL)
            abort(); /* a removed variable still reads back */
    }
    free_wiped(&run_host_api, rm, rm_len);
    free(secret);
    return 0;
}
