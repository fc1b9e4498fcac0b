/* Tests for plugins/secrets/dotenv.c's pure parts: the .env merge (comments kept, in-place
 * replacement, export forms, CRLF), lookups and removal. The store operations run against
 * the real host in the e2e tests (tests/e2e/test_apply.py, test_secrets_*.py). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../plugins/secrets/dotenv.c"
#include "../../plugins/secrets/lib/secretdir.c"
#include "../../plugins/secrets/lib/storebuf.c"

#include "error.h"
#include "options.h"
#include "privfile.h"

/* The host's real table (host/host_api.c): its wipe clears the merge's buffers. */
extern const ol_host run_host_api;

#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"

static char *merge(const char *old, const ol_kv *vars, size_t n) {
    size_t len = 0;
    char *out = dotenv_merge(&run_host_api, old, strlen(old), vars, n, &len, NULL);
    assert_non_null(out);
    assert_int_equal(strlen(out), len);
    return out;
}

static const ol_kv four[] = {{"AWS_ACCESS_KEY_ID", "AKIANEW"},
                             {"AWS_SECRET_ACCESS_KEY", SECRET},
                             {"AWS_REGION", "eu-west-1"},
                             {"S3_BUCKET", "acme-prod"}};

static void merge_into_an_empty_file_appends_all_variables(void **state) {
    (void)state;
    char *out = merge("", four, 4);
    assert_string_equal(out, "AWS_ACCESS_KEY_ID=AKIANEW\n"
                             "AWS_SECRET_ACCESS_KEY=" SECRET "\n"
                             "AWS_REGION=eu-west-1\n"
                             "S3_BUCKET=acme-prod\n");
    free(out);
}

static void merge_keeps_comments_and_replaces_in_place(void **state) {
    (void)state;
    const char *old = "# app settings\n"
                      "DEBUG=1\n"
                      "\n"
                      "AWS_ACCESS_KEY_ID=AKIAOLD # old key\n"
                      "# AWS_REGION=commented-out\n"
                      "AWS_REGION_EXTRA=keep\n"
                      "AWS_SECRET_ACCESS_KEY=\"old/secret\"\n"
                      "TAIL=x\n";
    char *out = merge(old, four, 4);
    assert_string_equal(out, "# app settings\n"
                             "DEBUG=1\n"
                             "\n"
                             "AWS_ACCESS_KEY_ID=AKIANEW # old key\n" /* inline comments are kept */
                             "# AWS_REGION=commented-out\n"
                             "AWS_REGION_EXTRA=keep\n"
                             "AWS_SECRET_ACCESS_KEY=" SECRET "\n"
                             "TAIL=x\n"
                             "AWS_REGION=eu-west-1\n"
                             "S3_BUCKET=acme-prod\n");
    free(out);
}

static void merge_keeps_export_forms_and_indentation(void **state) {
    (void)state;
    const char *old = "export AWS_ACCESS_KEY_ID=AKIAOLD\n"
                      "  export\tAWS_REGION = us-east-1\n"
                      "exportS3_BUCKET=not-an-export\n";
    char *out = merge(old, four, 4);
    assert_string_equal(out, "export AWS_ACCESS_KEY_ID=AKIANEW\n"
                             "  export\tAWS_REGION =eu-west-1\n"
                             "exportS3_BUCKET=not-an-export\n"
                             "AWS_SECRET_ACCESS_KEY=" SECRET "\n"
                             "S3_BUCKET=acme-prod\n");
    free(out);
}

static void merge_keeps_crlf_line_ends(void **state) {
    (void)state;
    const char *old = "# windows\r\nAWS_REGION=us-east-1\r\nOTHER=1\r\n";
    char *out = merge(old, four, 4);
    assert_string_equal(out, "# windows\r\n"
                             "AWS_REGION=eu-west-1\r\n"
                             "OTHER=1\r\n"
                             "AWS_ACCESS_KEY_ID=AKIANEW\r\n"
                             "AWS_SECRET_ACCESS_KEY=" SECRET "\r\n"
                             "S3_BUCKET=acme-prod\r\n");
    free(out);
}

static void merge_ends_an_unterminated_last_line_first(void **state) {
    (void)state;
    char *out = merge("OTHER=1", four, 1);
    assert_string_equal(out, "OTHER=1\nAWS_ACCESS_KEY_ID=AKIANEW\n");
    free(out);
    out = merge("AWS_ACCESS_KEY_ID=old", four, 1);
    assert_string_equal(out, "AWS_ACCESS_KEY_ID=AKIANEW\n");
    free(out);
}

static void merge_replaces_every_duplicate_assignment(void **state) {
    (void)state;
    char *out = merge("AWS_ACCESS_KEY_ID=a\nX=1\nAWS_ACCESS_KEY_ID=b\n", four, 1);
    assert_string_equal(out, "AWS_ACCESS_KEY_ID=AKIANEW\nX=1\nAWS_ACCESS_KEY_ID=AKIANEW\n");
    free(out);
}

static void merge_quotes_values_a_reader_would_misread(void **state) {
    (void)state;
    const ol_kv odd[] = {{"A", "has space"}, {"B", "q\"$`\\"}, {"C", ""}, {"D", "a#b"}};
    char *out = merge("", odd, 4);
    assert_string_equal(out, "A=\"has space\"\n"
                             "B=\"q\\\"\\$\\`\\\\\"\n"
                             "C=\"\"\n"
                             "D=\"a#b\"\n");
    free(out);
}

static void lookup_reads_bare_quoted_and_export_values(void **state) {
    (void)state;
    const char *t = "A=plain # c\nexport B=\"quoted value\"\nC='single'\nA=last\r\nAA=no\n";
    char *v = dotenv_lookup(t, strlen(t), "A");
    assert_string_equal(v, "last");
    free(v);
    v = dotenv_lookup(t, strlen(t), "B");
    assert_string_equal(v, "quoted value");
    free(v);
    v = dotenv_lookup(t, strlen(t), "C");
    assert_string_equal(v, "single");
    free(v);
    assert_null(dotenv_lookup(t, strlen(t), "D"));
}

static void remove_drops_only_the_named_assignments(void **state) {
    (void)state;
    const char *t = "# keep me\nAWS_ACCESS_KEY_ID=AKIA1\nOTHER=1\nexport AWS_SECRET_ACCESS_KEY="
                    "\"" SECRET "\"\nS3_BUCKET=b\n";
    const char *names[] = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "S3_BUCKET"};
    size_t len = 0;
    char *out = dotenv_remove(&run_host_api, t, strlen(t), names, 4, &len);
    assert_non_null(out);
    assert_string_equal(out, "# keep me\nOTHER=1\n");
    assert_int_equal(len, strlen(out));
    free(out);
}

/* The documented defaults, as literals (README, docs/stages.md), read through the host's
 * real option parser: not the plugin's own table compared with itself. */
static void defaults_are_the_documented_names(void **state) {
    (void)state;
    options *o = NULL;
    char *err = NULL;
    assert_int_equal(options_parse(&dotenv_plugin, NULL, "dotenv", &o, &err), 0);
    assert_string_equal(options_string(o, "path"), "{bucket}.env");
    assert_string_equal(options_string(o, "var_access_key_id"), "AWS_ACCESS_KEY_ID");
    assert_string_equal(options_string(o, "var_secret_access_key"), "AWS_SECRET_ACCESS_KEY");
    assert_string_equal(options_string(o, "var_region"), "AWS_REGION");
    assert_string_equal(options_string(o, "var_bucket"), "S3_BUCKET");
    options_free(o);
}

static void merge_replaces_a_multi_line_quoted_value_whole(void **state) {
    (void)state;
    char *out = merge("# top\nAWS_SECRET_ACCESS_KEY=\"multi\nline\"\nOTHER=1\n", four, 4);
    assert_string_equal(out, "# top\nAWS_SECRET_ACCESS_KEY=" SECRET "\nOTHER=1\n"
                             "AWS_ACCESS_KEY_ID=AKIANEW\nAWS_REGION=eu-west-1\n"
                             "S3_BUCKET=acme-prod\n");
    free(out);
}

static void merge_keeps_an_inline_comment(void **state) {
    (void)state;
    char *out = merge("AWS_REGION=us-east-1 # where the app runs\n", four, 4);
    assert_non_null(strstr(out, "AWS_REGION=eu-west-1 # where the app runs\n"));
    free(out);
}

static void merge_refuses_a_quote_that_never_closes(void **state) {
    (void)state;
    const char *old = "A=1\nAWS_SECRET_ACCESS_KEY=\"open\nB=2\n";
    size_t len = 0, bad = 0;
    assert_null(dotenv_merge(&run_host_api, old, strlen(old), four, 4, &len, &bad));
    assert_int_equal(bad, 2);
    const char *names[] = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"};
    assert_int_equal(dotenv_check(old, strlen(old), names, 2), 2);
}

/* Found by fuzz/fuzz_dotenv (corpus/dotenv/unterminated-other.dotenv): another variable's quote
 * that never closes runs to the end of the file, so what the merge appends would be read as
 * part of its value, the secret included, and the key would not read back. */
static void merge_refuses_to_append_inside_another_open_quote(void **state) {
    (void)state;
    const char *old = "OTHER=\"never closed\nX=2\n";
    size_t len = 0, bad = 0;
    assert_null(dotenv_merge(&run_host_api, old, strlen(old), four, 4, &len, &bad));
    assert_int_equal(bad, 1);
    const char *names[] = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"};
    assert_int_equal(dotenv_check(old, strlen(old), names, 2), 1);
}

/* Found by fuzz/fuzz_dotenv (corpus/dotenv/crlf-last-line-without-lf.dotenv): a CRLF file whose
 * last line lost its LF got another CRLF, and the replaced value read back with a CR. */
static void merge_completes_a_last_line_ending_in_cr(void **state) {
    (void)state;
    const ol_kv region[] = {{"AWS_REGION", "eu-west-1"}};
    size_t len = 0;
    const char *old = "A=1\r\nAWS_REGION=us-east-1\r";
    char *out = dotenv_merge(&run_host_api, old, strlen(old), region, 1, &len, NULL);
    assert_string_equal(out, "A=1\r\nAWS_REGION=eu-west-1\r\n");
    char *v = dotenv_lookup(out, len, "AWS_REGION");
    assert_string_equal(v, "eu-west-1");
    free(v);
    run_host_api.free(out);
    out = dotenv_merge(&run_host_api, "A=1\r", 4, region, 1, &len, NULL);
    assert_string_equal(out, "A=1\r\nAWS_REGION=eu-west-1\n");
    run_host_api.free(out);
}

/* Found by fuzz/fuzz_dotenv (corpus/dotenv/quote-runs-on.dotenv): `V='a'b` kept "b" after the
 * replaced value, so the new secret read back with it glued on. */
static void merge_refuses_a_quoted_value_that_runs_on(void **state) {
    (void)state;
    const char *old = "X=1\nAWS_SECRET_ACCESS_KEY='multi\nline's $HOME'\n";
    size_t len = 0, bad = 0;
    assert_null(dotenv_merge(&run_host_api, old, strlen(old), four, 4, &len, &bad));
    assert_int_equal(bad, 2);
    const char *names[] = {"AWS_SECRET_ACCESS_KEY"};
    assert_int_equal(dotenv_check(old, strlen(old), names, 1), 2);
    /* A CR that is not part of a line end runs on too (corpus/dotenv/lone-cr-after-quote.dotenv).
     */
    const char *cr = "AWS_SECRET_ACCESS_KEY=\"x\"\r_S\n";
    assert_int_equal(dotenv_check(cr, strlen(cr), names, 1), 1);
    /* A comment right after the quote ends the value, as after a bare one
     * (corpus/dotenv/comment-glued-to-value.dotenv): merged, and merged again unchanged. */
    const char *glued = "AWS_SECRET_ACCESS_KEY==1# note\r\n";
    const ol_kv odd[] = {{"AWS_SECRET_ACCESS_KEY", "a b"}};
    char *once = dotenv_merge(&run_host_api, glued, strlen(glued), odd, 1, &len, NULL);
    assert_string_equal(once, "AWS_SECRET_ACCESS_KEY=\"a b\"# note\r\n");
    char *twice = dotenv_merge(&run_host_api, once, len, odd, 1, &len, NULL);
    assert_string_equal(twice, once);
    run_host_api.free(once);
    run_host_api.free(twice);
    /* Another variable's is not ours to judge: kept byte for byte. */
    const char *other = "X='a'b\n";
    assert_int_equal(dotenv_check(other, strlen(other), names, 1), 0);
    char *out = merge(other, four, 4);
    assert_memory_equal(out, other, strlen(other));
    free(out);
}

/* When every variable is assigned before it, nothing is appended: the file is merged. */
static void merge_leaves_another_open_quote_after_its_variables(void **state) {
    (void)state;
    const ol_kv two[] = {{"AWS_ACCESS_KEY_ID", "AKIANEW"}, {"AWS_SECRET_ACCESS_KEY", SECRET}};
    const char *names[] = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"};
    const char *old = "AWS_ACCESS_KEY_ID=a\nAWS_SECRET_ACCESS_KEY=b\nA=\"open\n";
    assert_int_equal(dotenv_check(old, strlen(old), names, 2), 0);
    char *out = merge(old, two, 2);
    assert_string_equal(out,
                        "AWS_ACCESS_KEY_ID=AKIANEW\nAWS_SECRET_ACCESS_KEY=" SECRET "\nA=\"open\n");
    free(out);
}

static void lookup_reads_a_multi_line_value_and_escapes(void **state) {
    (void)state;
    const char *t = "A=\"x\ny\"\nB=\"q\\\"r\"\n";
    char *v = dotenv_lookup(t, strlen(t), "A");
    assert_string_equal(v, "x\ny");
    free(v);
    v = dotenv_lookup(t, strlen(t), "B");
    assert_string_equal(v, "q\"r");
    free(v);
}

static void remove_drops_a_multi_line_assignment_whole(void **state) {
    (void)state;
    const char *t = "K=1\nAWS_SECRET_ACCESS_KEY=\"a\nb\"\nL=2\n";
    const char *names[] = {"AWS_SECRET_ACCESS_KEY"};
    size_t len = 0;
    char *out = dotenv_remove(&run_host_api, t, strlen(t), names, 1, &len);
    assert_string_equal(out, "K=1\nL=2\n");
    run_host_api.free(out);
}

/* secretdir (plugins/secrets/lib): the directory a secret file goes to. */
static void secretdir_refuses_world_writable_warns_sticky_accepts_group(void **state) {
    (void)state;
    char dir[] = "/tmp/test_secretdir.XXXXXX", file[128], why[512];
    assert_non_null(mkdtemp(dir));
    snprintf(file, sizeof(file), "%s/missing/deeper/.env", dir);
    assert_int_equal(chmod(dir, 0700), 0);
    assert_int_equal(secretdir_check(file, why, sizeof(why)), 0);
    assert_string_equal(why, "");
    assert_int_equal(chmod(dir, 0770), 0); /* group-writable: a shared deploy directory */
    assert_int_equal(secretdir_check(file, why, sizeof(why)), 0);
    assert_int_equal(chmod(dir, 0777), 0); /* the nearest existing ancestor decides */
    assert_int_equal(secretdir_check(file, why, sizeof(why)), -1);
    assert_non_null(strstr(why, dir));
    assert_non_null(strstr(why, "chmod o-w"));
    assert_int_equal(chmod(dir, 01777), 0);
    assert_int_equal(secretdir_check(file, why, sizeof(why)), 1);
    assert_non_null(strstr(why, "sticky"));
    assert_int_equal(rmdir(dir), 0);
}

/* Every var_* option goes through var_clobbers in init; the list covers the shell's, the
 * loader's and the interpreters' code-running variables, by name and by prefix. */
static void var_names_the_shell_or_loader_rely_on_are_refused(void **state) {
    (void)state;
    static const char *const taken[] = {
        "PATH",     "LD_PRELOAD", "LD_AUDIT",       "DYLD_INSERT_LIBRARIES",
        "LC_ALL",   "BASH_ENV",   "PROMPT_COMMAND", "PYTHONSTARTUP",
        "PERL5OPT", "IFS",        "BASH_FUNC_x%%",  "NODE_OPTIONS"};
    for (size_t i = 0; i < sizeof(taken) / sizeof(taken[0]); i++)
        if (!var_clobbers(taken[i]))
            fail_msg("%s is not refused", taken[i]);
    static const char *const fine[] = {"AWS_ACCESS_KEY_ID", "S3_BUCKET", "PATHS",
                                       "MY_PATH",           "LDAP_URL",  "APP_HOME"};
    for (size_t i = 0; i < sizeof(fine) / sizeof(fine[0]); i++)
        if (var_clobbers(fine[i]))
            fail_msg("%s is refused", fine[i]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(merge_into_an_empty_file_appends_all_variables),
        cmocka_unit_test(merge_keeps_comments_and_replaces_in_place),
        cmocka_unit_test(merge_keeps_export_forms_and_indentation),
        cmocka_unit_test(merge_keeps_crlf_line_ends),
        cmocka_unit_test(merge_ends_an_unterminated_last_line_first),
        cmocka_unit_test(merge_replaces_every_duplicate_assignment),
        cmocka_unit_test(merge_quotes_values_a_reader_would_misread),
        cmocka_unit_test(lookup_reads_bare_quoted_and_export_values),
        cmocka_unit_test(remove_drops_only_the_named_assignments),
        cmocka_unit_test(defaults_are_the_documented_names),
        cmocka_unit_test(merge_replaces_a_multi_line_quoted_value_whole),
        cmocka_unit_test(merge_keeps_an_inline_comment),
        cmocka_unit_test(secretdir_refuses_world_writable_warns_sticky_accepts_group),
        cmocka_unit_test(var_names_the_shell_or_loader_rely_on_are_refused),
        cmocka_unit_test(merge_refuses_a_quote_that_never_closes),
        cmocka_unit_test(merge_refuses_to_append_inside_another_open_quote),
        cmocka_unit_test(merge_leaves_another_open_quote_after_its_variables),
        cmocka_unit_test(merge_completes_a_last_line_ending_in_cr),
        cmocka_unit_test(merge_refuses_a_quoted_value_that_runs_on),
        cmocka_unit_test(lookup_reads_a_multi_line_value_and_escapes),
        cmocka_unit_test(remove_drops_a_multi_line_assignment_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
