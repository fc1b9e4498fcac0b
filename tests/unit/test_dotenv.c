/* Tests for plugins/secrets/dotenv.c: the .env merge (comments kept, in-place replacement,
 * export forms, CRLF), lookups, path templates, and apply against a fake host that writes
 * with the real privfile module. */
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

#include "error.h"
#include "privfile.h"

#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"

static char *merge(const char *old, const ol_kv *vars, size_t n) {
    size_t len = 0;
    char *out = dotenv_merge(old, strlen(old), vars, n, &len);
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
                             "AWS_ACCESS_KEY_ID=AKIANEW\n"
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

static void expands_every_placeholder(void **state) {
    (void)state;
    const char *values[N_PLACEHOLDERS] = {"acme", "prod", "acme-prod", "u", "eu-west-1"};
    const char *why = NULL;
    char bad[80];
    char *p = dotenv_expand("env/{product}/{environment}-{region}/{user}/{bucket}.env", values,
                            &why, bad, sizeof(bad));
    assert_non_null(p);
    assert_string_equal(p, "env/acme/prod-eu-west-1/u/acme-prod.env");
    free(p);
}

static void rejects_bad_templates_naming_the_placeholder(void **state) {
    (void)state;
    const char *values[N_PLACEHOLDERS] = {"acme", "prod", NULL, "u", "r"};
    const char *why = NULL;
    char bad[80];
    assert_null(dotenv_expand("{produkt}.env", values, &why, bad, sizeof(bad)));
    assert_non_null(strstr(why, "unknown placeholder"));
    assert_string_equal(bad, "produkt");
    assert_null(dotenv_expand("{product.env", values, &why, bad, sizeof(bad)));
    assert_non_null(strstr(why, "unclosed"));
    assert_null(dotenv_expand("x}.env", values, &why, bad, sizeof(bad)));
    assert_null(dotenv_expand("{bucket}.env", values, &why, bad, sizeof(bad)));
    assert_non_null(strstr(why, "no value"));
    assert_null(dotenv_expand("", values, &why, bad, sizeof(bad)));
}

/* ---- apply against a fake host ------------------------------------------------------- */

typedef struct fake {
    char dir[64];
    char path[128];
    const char *secret; /* NULL: no new key this run */
    const char *key_id;
    int done_calls;
    ol_outcome outcome;
    char reason[512];
    int stored_calls;
    char stored_where[256];
    char logs[4096];
    const char *opt_path;
} fake;

static fake *F;

static void fake_log(ol_stage *s, const ol_item *i, ol_log_level l, const char *fmt, ...) {
    (void)s, (void)i, (void)l;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    strncat(F->logs, line, sizeof(F->logs) - strlen(F->logs) - 2);
    strcat(F->logs, "\n");
}

static const char *fake_opt_string(ol_stage *s, const char *name) {
    (void)s;
    if (strcmp(name, "path") == 0)
        return F->opt_path;
    for (size_t i = 0; i < sizeof(dotenv_options) / sizeof(dotenv_options[0]); i++)
        if (strcmp(dotenv_options[i].name, name) == 0)
            return dotenv_options[i].default_value;
    return NULL;
}

static const char *fake_product(const ol_item *i) {
    (void)i;
    return "acme";
}
static const char *fake_environment(const ol_item *i) {
    (void)i;
    return "prod";
}
static const char *fake_region(const ol_item *i) {
    (void)i;
    return "eu-west-1";
}

static const char *fake_get(const ol_item *i, const char *key) {
    (void)i;
    if (strcmp(key, OL_KEY_SECRET_ACCESS_KEY) == 0)
        return F->secret;
    if (strcmp(key, OL_KEY_ACCESS_KEY_ID) == 0)
        return F->key_id;
    if (strcmp(key, OL_KEY_BUCKET_NAME) == 0)
        return "acme-prod";
    if (strcmp(key, OL_KEY_IAM_USER) == 0)
        return "acme-prod";
    return NULL;
}

static int fake_secret_stored(ol_item *i, ol_stage *s, const char *where) {
    (void)i, (void)s;
    F->stored_calls++;
    snprintf(F->stored_where, sizeof(F->stored_where), "%s", where);
    return 0;
}

static void fake_done(ol_stage *s, ol_item *i, ol_outcome o, const char *reason) {
    (void)s, (void)i;
    F->done_calls++;
    F->outcome = o;
    snprintf(F->reason, sizeof(F->reason), "%s", reason ? reason : "");
}

static const ol_host fake_host = {
    .struct_size = sizeof(ol_host),
    .abi_major = OL_ABI_MAJOR,
    .abi_minor = OL_ABI_MINOR,
    .strerror = ol_strerror,
    .log = fake_log,
    .opt_string = fake_opt_string,
    .item_product = fake_product,
    .item_environment = fake_environment,
    .item_region = fake_region,
    .item_get = fake_get,
    .write_private_file = privfile_write,
    .secret_stored = fake_secret_stored,
    .done = fake_done,
};

static int setup(void **state) {
    fake *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/ol-dotenv-XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof(f->path), "%s/{bucket}.env", f->dir);
    f->opt_path = f->path;
    f->secret = SECRET;
    f->key_id = "AKIANEW";
    F = f;
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fake *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    int rc = system(cmd);
    free(f);
    F = NULL;
    return rc == 0 ? 0 : -1;
}

static void run_apply(void) {
    void *st = NULL;
    const ol_plugin *p = opsline_plugin();
    assert_int_equal(p->init(NULL, &fake_host, &st), 0);
    F->done_calls = 0;
    assert_int_equal(p->apply(NULL, NULL, st), 0);
    assert_int_equal(F->done_calls, 1);
    p->fini(st);
}

static char *slurp(const char *path) {
    char *data = NULL;
    size_t len = 0;
    assert_int_equal(privfile_read(path, &data, &len), 0);
    return data;
}

static void apply_creates_a_private_file_and_reports_the_secret_stored(void **state) {
    fake *f = *state;
    run_apply();
    char file[160];
    snprintf(file, sizeof(file), "%s/acme-prod.env", f->dir);
    assert_int_equal(f->outcome, OL_OUTCOME_CREATED);
    assert_int_equal(f->stored_calls, 1);
    assert_string_equal(f->stored_where, file);
    struct stat st;
    assert_int_equal(stat(file, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char *text = slurp(file);
    assert_string_equal(text, "AWS_ACCESS_KEY_ID=AKIANEW\n"
                              "AWS_SECRET_ACCESS_KEY=" SECRET "\n"
                              "AWS_REGION=eu-west-1\n"
                              "S3_BUCKET=acme-prod\n");
    free(text);
    assert_null(strstr(f->logs, SECRET));
}

static void apply_updates_an_existing_file_keeping_its_lines(void **state) {
    fake *f = *state;
    char file[160];
    snprintf(file, sizeof(file), "%s/acme-prod.env", f->dir);
    FILE *fp = fopen(file, "w");
    assert_non_null(fp);
    fputs("# mine\nPORT=8080\nexport AWS_ACCESS_KEY_ID=AKIAOLD\n", fp);
    fclose(fp);
    run_apply();
    assert_int_equal(f->outcome, OL_OUTCOME_UPDATED);
    char *text = slurp(file);
    assert_string_equal(text, "# mine\nPORT=8080\nexport AWS_ACCESS_KEY_ID=AKIANEW\n"
                              "AWS_SECRET_ACCESS_KEY=" SECRET "\n"
                              "AWS_REGION=eu-west-1\n"
                              "S3_BUCKET=acme-prod\n");
    free(text);
    struct stat st;
    assert_int_equal(stat(file, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
}

static void apply_without_a_new_key_leaves_the_file_alone(void **state) {
    fake *f = *state;
    run_apply(); /* writes the key */
    char file[160];
    snprintf(file, sizeof(file), "%s/acme-prod.env", f->dir);
    f->secret = NULL;
    f->stored_calls = 0;
    run_apply();
    assert_int_equal(f->outcome, OL_OUTCOME_UNCHANGED);
    assert_string_equal(f->reason, ""); /* the file holds the current key */
    assert_int_equal(f->stored_calls, 0);

    f->key_id = "AKIAOTHER"; /* stored elsewhere by an earlier run */
    run_apply();
    assert_int_equal(f->outcome, OL_OUTCOME_UNCHANGED);
    assert_non_null(strstr(f->reason, "no new key"));
    assert_non_null(strstr(f->reason, file));
    char *text = slurp(file);
    assert_non_null(strstr(text, "AWS_ACCESS_KEY_ID=AKIANEW\n"));
    free(text);
}

static void apply_fails_with_a_reason_when_the_file_cannot_be_written(void **state) {
    fake *f = *state;
    char blocker[128];
    snprintf(blocker, sizeof(blocker), "%s/blocker", f->dir);
    FILE *fp = fopen(blocker, "w");
    assert_non_null(fp);
    fclose(fp);
    char tmpl[160];
    snprintf(tmpl, sizeof(tmpl), "%s/blocker/{product}.env", f->dir);
    f->opt_path = tmpl;
    run_apply();
    assert_int_equal(f->outcome, OL_OUTCOME_FAILED);
    assert_non_null(strstr(f->reason, "blocker/acme.env"));
    assert_null(strstr(f->reason, SECRET));
    assert_int_equal(f->stored_calls, 0);
}

static void init_rejects_a_bad_template_before_any_request(void **state) {
    fake *f = *state;
    f->opt_path = "{produkt}.env";
    void *st = NULL;
    assert_int_equal(opsline_plugin()->init(NULL, &fake_host, &st), OL_ECONFIG);
    assert_null(st);
    assert_non_null(strstr(f->logs, "produkt"));
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
        cmocka_unit_test(expands_every_placeholder),
        cmocka_unit_test(rejects_bad_templates_naming_the_placeholder),
        cmocka_unit_test_setup_teardown(apply_creates_a_private_file_and_reports_the_secret_stored,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(apply_updates_an_existing_file_keeping_its_lines, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(apply_without_a_new_key_leaves_the_file_alone, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(apply_fails_with_a_reason_when_the_file_cannot_be_written,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(init_rejects_a_bad_template_before_any_request, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
