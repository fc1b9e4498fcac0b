/* Tests for options: defaults, JSON and text values of every type, unknown names with
 * suggestions, type errors, sensitive values kept out of messages, and `plugins show`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "options.h"

static int apply(ol_stage *stage, ol_item *item, void *state) {
    (void)stage;
    (void)item;
    (void)state;
    return 0;
}

static const ol_option_def defs[] = {
    {"encryption", OL_OPT_STRING, "AES256", "Default encryption: AES256, aws:kms or none", 0, 0},
    {"versioning", OL_OPT_BOOL, "true", "Enable versioning", 0, 0},
    {"max_keys", OL_OPT_INT, "2", "Keys per user", 0, 0},
    {"regions", OL_OPT_LIST, "eu-west-1, us-east-1", "Regions", 0, 0},
    {"tags", OL_OPT_OBJECT, "team=ops,cost=a=b", "Tags", 0, 0},
    {"kms_key", OL_OPT_STRING, NULL, "KMS key id", 0, 0},
    {"token", OL_OPT_STRING, "s3cr3t-default", "API token", 1, 0},
};

static const char *const needs[] = {"iam", "bucket", NULL};

static const ol_plugin plugin = {
    .abi_major = OL_ABI_MAJOR,
    .abi_minor = OL_ABI_MINOR,
    .struct_size = sizeof(ol_plugin),
    .name = "bucket",
    .version = "0.1.0",
    .description = "S3 bucket with public access blocked and default encryption",
    .needs = needs,
    .options = defs,
    .n_options = sizeof(defs) / sizeof(defs[0]),
    .option_size = sizeof(ol_option_def),
    .apply = apply,
};

/* For `plugins show`: the defaults column is as wide as `default "AES256"`. */
static const ol_option_def shown_defs[] = {
    {"encryption", OL_OPT_STRING, "AES256", "Default encryption: AES256, aws:kms or none", 0, 0},
    {"versioning", OL_OPT_BOOL, "true", "Enable versioning", 0, 0},
    {"kms_key", OL_OPT_STRING, NULL, "KMS key id", 0, 0},
    {"token", OL_OPT_STRING, "s3cr3t-default", "API token", 1, 0},
    {"labels", OL_OPT_LIST, "a,b", NULL, 0, 0},
};

static const ol_plugin shown = {
    .abi_major = OL_ABI_MAJOR,
    .abi_minor = OL_ABI_MINOR,
    .struct_size = sizeof(ol_plugin),
    .name = "bucket",
    .version = "0.1.0",
    .description = "S3 bucket with public access blocked and default encryption",
    .needs = needs,
    .options = shown_defs,
    .n_options = sizeof(shown_defs) / sizeof(shown_defs[0]),
    .option_size = sizeof(ol_option_def),
    .apply = apply,
};

static const ol_plugin bare = {
    .abi_major = OL_ABI_MAJOR,
    .abi_minor = OL_ABI_MINOR,
    .struct_size = sizeof(ol_plugin),
    .name = "bare",
    .version = "1.0",
    .apply = apply,
};

static json_t *json(const char *text) {
    json_error_t e;
    json_t *j = json_loads(text, 0, &e);
    assert_non_null(j);
    return j;
}

/* Parse text as the options object; expect failure with a message containing frag. */
static void expect_json_error(const char *text, const char *frag, const char *absent) {
    json_t *j = json(text);
    options *o = NULL;
    char *err = NULL;
    int rc = options_parse(&plugin, j, "stage 'bucket' in pipeline.json", &o, &err);
    json_decref(j);
    assert_int_equal(rc, OL_EINVAL);
    assert_null(o);
    assert_non_null(err);
    if (strstr(err, frag) == NULL)
        fail_msg("message \"%s\" lacks \"%s\"", err, frag);
    if (strstr(err, "stage 'bucket' in pipeline.json") == NULL)
        fail_msg("message \"%s\" lacks the stage label", err);
    if (absent != NULL && strstr(err, absent) != NULL)
        fail_msg("message \"%s\" contains \"%s\"", err, absent);
    free(err);
}

static void applies_declared_defaults(void **state) {
    (void)state;
    options *o = NULL;
    char *err = NULL;
    assert_int_equal(options_parse(&plugin, NULL, "bucket", &o, &err), 0);
    assert_null(err);
    assert_string_equal(options_string(o, "encryption"), "AES256");
    assert_true(options_bool(o, "versioning"));
    assert_int_equal(options_int(o, "max_keys"), 2);
    const char *const *list = NULL;
    assert_int_equal(options_list(o, "regions", &list), 2);
    assert_string_equal(list[0], "eu-west-1");
    assert_string_equal(list[1], "us-east-1");
    const ol_kv *map = NULL;
    assert_int_equal(options_map(o, "tags", &map), 2);
    assert_string_equal(map[0].name, "team");
    assert_string_equal(map[0].value, "ops");
    assert_string_equal(map[1].name, "cost");
    assert_string_equal(map[1].value, "a=b");
    assert_null(options_string(o, "kms_key"));
    assert_false(options_is_set(o, "encryption"));
    options_free(o);
}

static void reads_values_of_every_type_from_json(void **state) {
    (void)state;
    json_t *j = json("{\"encryption\": \"aws:kms\", \"versioning\": false, \"max_keys\": 7,"
                     " \"regions\": [\"ap-south-1\"], \"tags\": {\"env\": \"prod\"},"
                     " \"kms_key\": \"alias/x\"}");
    options *o = NULL;
    char *err = NULL;
    assert_int_equal(options_parse(&plugin, j, "bucket", &o, &err), 0);
    json_decref(j);
    assert_string_equal(options_string(o, "encryption"), "aws:kms");
    assert_false(options_bool(o, "versioning"));
    assert_int_equal(options_int(o, "max_keys"), 7);
    const char *const *list = NULL;
    assert_int_equal(options_list(o, "regions", &list), 1);
    assert_string_equal(list[0], "ap-south-1");
    const ol_kv *map = NULL;
    assert_int_equal(options_map(o, "tags", &map), 1);
    assert_string_equal(map[0].name, "env");
    assert_string_equal(map[0].value, "prod");
    assert_string_equal(options_string(o, "kms_key"), "alias/x");
    assert_true(options_is_set(o, "encryption"));
    assert_false(options_is_set(o, "token"));
    options_free(o);
}

static void reads_values_of_every_type_from_text(void **state) {
    (void)state;
    options *o = NULL;
    char *err = NULL;
    assert_int_equal(options_parse(&plugin, NULL, "bucket", &o, &err), 0);
    assert_int_equal(options_set_text(o, "versioning", "off", &err), 0);
    assert_false(options_bool(o, "versioning"));
    assert_int_equal(options_set_text(o, "versioning", "YES", &err), 0);
    assert_true(options_bool(o, "versioning"));
    assert_int_equal(options_set_text(o, "max_keys", "-12", &err), 0);
    assert_int_equal(options_int(o, "max_keys"), -12);
    assert_int_equal(options_set_text(o, "regions", "", &err), 0);
    const char *const *list = NULL;
    assert_int_equal(options_list(o, "regions", &list), 0);
    assert_int_equal(options_set_text(o, "tags", "a=1,b=", &err), 0);
    const ol_kv *map = NULL;
    assert_int_equal(options_map(o, "tags", &map), 2);
    assert_string_equal(map[1].name, "b");
    assert_string_equal(map[1].value, "");
    assert_true(options_is_set(o, "tags"));
    assert_null(err);
    options_free(o);
}

/* A clone is deep: it outlives the original, and a change to it (JSON, as a products-file
 * line sets) leaves the original alone; its messages carry its own label. */
static void a_clone_is_independent_and_takes_json_on_top(void **state) {
    (void)state;
    options *o = NULL, *c = NULL;
    char *err = NULL;
    assert_int_equal(options_parse(&plugin, NULL, "bucket", &o, &err), 0);
    assert_int_equal(options_set_text(o, "max_keys", "7", &err), 0);
    assert_int_equal(options_clone(o, "products.jsonl:3: stage 'bucket'", &c), 0);
    json_t *j = json_pack("{s:b, s:{s:s}}", "versioning", 0, "tags", "team", "web");
    assert_int_equal(options_apply_json(c, j, &err), 0);
    json_decref(j);
    assert_true(options_bool(o, "versioning"));
    assert_false(options_is_set(o, "versioning"));
    const ol_kv *map = NULL;
    assert_int_equal(options_map(o, "tags", &map), 2);
    options_free(o);
    assert_false(options_bool(c, "versioning"));
    assert_true(options_is_set(c, "versioning"));
    assert_true(options_is_set(c, "max_keys"));
    assert_int_equal(options_int(c, "max_keys"), 7);
    assert_int_equal(options_map(c, "tags", &map), 1);
    assert_string_equal(map[0].value, "web");
    const char *const *list = NULL;
    assert_int_equal(options_list(c, "regions", &list), 2);
    assert_string_equal(list[1], "us-east-1");
    assert_string_equal(options_string(c, "token"), "s3cr3t-default");
    j = json_pack("{s:i}", "versoning", 1);
    assert_int_equal(options_apply_json(c, j, &err), OL_EINVAL);
    json_decref(j);
    assert_non_null(strstr(err, "products.jsonl:3: stage 'bucket': unknown option 'versoning'"));
    free(err);
    options_free(c);
}

static void a_bad_text_value_keeps_the_previous_one(void **state) {
    (void)state;
    options *o = NULL;
    char *err = NULL;
    assert_int_equal(options_parse(&plugin, NULL, "stage 'bucket'", &o, &err), 0);
    const char *bad[][2] = {{"max_keys", "12x"},     {"max_keys", "99999999999999999999"},
                            {"versioning", "maybe"}, {"regions", "a,,b"},
                            {"tags", "novalue"},     {"tags", "a=1,a=2"}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(options_set_text(o, bad[i][0], bad[i][1], &err), OL_EINVAL);
        assert_non_null(err);
        assert_non_null(strstr(err, bad[i][0]));
        free(err);
        err = NULL;
    }
    assert_int_equal(options_int(o, "max_keys"), 2);
    assert_true(options_bool(o, "versioning"));
    assert_false(options_is_set(o, "max_keys"));
    options_free(o);
}

static void suggests_the_closest_option_name(void **state) {
    (void)state;
    expect_json_error("{\"encrytion\": \"none\"}", "did you mean 'encryption'?", NULL);
    expect_json_error("{\"encrytion\": \"none\"}",
                      "encryption, versioning, max_keys, regions, tags, kms_key, token", NULL);
}

static void lists_valid_names_when_nothing_is_close(void **state) {
    (void)state;
    expect_json_error("{\"colour\": \"red\"}",
                      "unknown option 'colour'; valid options:", "did you mean");
}

static void suggests_from_text_too(void **state) {
    (void)state;
    options *o = NULL;
    char *err = NULL;
    assert_int_equal(options_parse(&plugin, NULL, "stage 'bucket'", &o, &err), 0);
    assert_int_equal(options_set_text(o, "max_key", "3", &err), OL_EINVAL);
    assert_non_null(strstr(err, "did you mean 'max_keys'?"));
    free(err);
    options_free(o);
}

static void a_stage_without_options_says_so(void **state) {
    (void)state;
    json_t *j = json("{\"x\": 1}");
    options *o = NULL;
    char *err = NULL;
    assert_int_equal(options_parse(&bare, j, "stage 'bare'", &o, &err), OL_EINVAL);
    json_decref(j);
    assert_non_null(strstr(err, "takes no options"));
    free(err);
}

static void rejects_ill_typed_json_values(void **state) {
    (void)state;
    expect_json_error("{\"versioning\": \"yes\"}", "'versioning' must be a boolean", NULL);
    expect_json_error("{\"max_keys\": 1.5}", "'max_keys' must be an integer, got a number", NULL);
    expect_json_error("{\"regions\": \"eu-west-1\"}", "'regions' must be an array of strings",
                      NULL);
    expect_json_error("{\"regions\": [1]}", "one of its values is not a string", NULL);
    expect_json_error("{\"tags\": {\"a\": 1}}", "'tags' must be an object of strings", NULL);
    expect_json_error("[1]", "options must be a JSON object", NULL);
}

static void never_puts_a_sensitive_value_in_a_message(void **state) {
    (void)state;
    static const ol_option_def secret_int[] = {{"pin", OL_OPT_INT, NULL, "PIN", 1, 0}};
    const ol_plugin p = {.abi_major = OL_ABI_MAJOR,
                         .struct_size = sizeof(ol_plugin),
                         .name = "s",
                         .options = secret_int,
                         .n_options = 1,
                         .option_size = sizeof(ol_option_def),
                         .apply = apply};
    options *o = NULL;
    char *err = NULL;
    assert_int_equal(options_parse(&p, NULL, "s", &o, &err), 0);
    assert_int_equal(options_set_text(o, "pin", "hunter2", &err), OL_EINVAL);
    assert_null(strstr(err, "hunter2"));
    assert_non_null(strstr(err, "sensitive"));
    free(err);
    options_free(o);
}

static void rejects_a_malformed_default(void **state) {
    (void)state;
    static const ol_option_def bad[] = {{"flag", OL_OPT_BOOL, "perhaps", "", 0, 0}};
    const ol_plugin p = {.abi_major = OL_ABI_MAJOR,
                         .struct_size = sizeof(ol_plugin),
                         .name = "p",
                         .options = bad,
                         .n_options = 1,
                         .option_size = sizeof(ol_option_def),
                         .apply = apply};
    options *o = NULL;
    char *err = NULL;
    assert_int_equal(options_parse(&p, NULL, "stage 'p'", &o, &err), OL_EINVAL);
    assert_non_null(strstr(err, "'flag' has a malformed default"));
    free(err);
}

static char *describe(const ol_plugin *p, const char *path) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    options_describe(p, path, f);
    assert_int_equal(fclose(f), 0);
    return buf;
}

static void describes_a_stage_for_plugins_show(void **state) {
    (void)state;
    char *text = describe(&shown, "/lib/bucket.so");
    const char *expect[] = {
        "bucket 0.1.0 \xe2\x80\x94 S3 bucket with public access blocked and default encryption\n",
        "file: /lib/bucket.so\n",
        "needs: iam, bucket\n",
        "options:\n",
        "  encryption      string  default \"AES256\"   Default encryption: AES256, aws:kms "
        "or none\n",
        "  versioning      bool    default true       Enable versioning\n",
        "  kms_key         string  (no default)       KMS key id\n",
        "  token           string  default (hidden)   (sensitive) API token\n",
        "  labels          list    default \"a,b\"\n",
    };
    for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++)
        if (strstr(text, expect[i]) == NULL)
            fail_msg("output lacks \"%s\":\n%s", expect[i], text);
    assert_null(strstr(text, "s3cr3t"));
    free(text);
}

static void describes_a_stage_without_needs_or_options(void **state) {
    (void)state;
    char *text = describe(&bare, "/x/bare.so");
    assert_string_equal(text, "bare 1.0\nfile: /x/bare.so\nneeds: (none)\noptions: (none)\n");
    free(text);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(applies_declared_defaults),
        cmocka_unit_test(reads_values_of_every_type_from_json),
        cmocka_unit_test(reads_values_of_every_type_from_text),
        cmocka_unit_test(a_bad_text_value_keeps_the_previous_one),
        cmocka_unit_test(a_clone_is_independent_and_takes_json_on_top),
        cmocka_unit_test(suggests_the_closest_option_name),
        cmocka_unit_test(lists_valid_names_when_nothing_is_close),
        cmocka_unit_test(suggests_from_text_too),
        cmocka_unit_test(a_stage_without_options_says_so),
        cmocka_unit_test(rejects_ill_typed_json_values),
        cmocka_unit_test(never_puts_a_sensitive_value_in_a_message),
        cmocka_unit_test(rejects_a_malformed_default),
        cmocka_unit_test(describes_a_stage_for_plugins_show),
        cmocka_unit_test(describes_a_stage_without_needs_or_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
