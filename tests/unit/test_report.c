/* Unit tests of the run report: human lines (failures on stderr), the summary counts, the
 * JSON document, items that did not finish, and the number of failed items returned. stdout
 * and stderr are captured into temporary files around each call. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aws/aws.h"
#include "opsline/opsline.h"
#include "report.h"

typedef struct capture {
    FILE *out, *err;
    int saved_out, saved_err;
    char *stdout_text, *stderr_text;
} capture;

static void capture_start(capture *c) {
    memset(c, 0, sizeof(*c));
    fflush(stdout);
    fflush(stderr);
    c->out = tmpfile();
    c->err = tmpfile();
    assert_non_null(c->out);
    assert_non_null(c->err);
    c->saved_out = dup(STDOUT_FILENO);
    c->saved_err = dup(STDERR_FILENO);
    assert_true(c->saved_out >= 0 && c->saved_err >= 0);
    assert_true(dup2(fileno(c->out), STDOUT_FILENO) >= 0);
    assert_true(dup2(fileno(c->err), STDERR_FILENO) >= 0);
}

static char *slurp(FILE *f) {
    long n;
    char *text;
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    text = calloc((size_t)n + 1, 1);
    assert_non_null(text);
    assert_int_equal(fread(text, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    return text;
}

static void capture_end(capture *c) {
    fflush(stdout);
    fflush(stderr);
    assert_true(dup2(c->saved_out, STDOUT_FILENO) >= 0);
    assert_true(dup2(c->saved_err, STDERR_FILENO) >= 0);
    close(c->saved_out);
    close(c->saved_err);
    c->stdout_text = slurp(c->out);
    c->stderr_text = slurp(c->err);
}

static void capture_free(capture *c) {
    free(c->stdout_text);
    free(c->stderr_text);
}

static const aws_stats STATS = {.requests = 27, .attempts = 30, .retries = 3, .throttled = 2};

/* Two items: one fully created, one whose iam stage failed and policy was skipped. */
static void record_two_items(report *r) {
    report_stage(r, "acme-production", "bucket", OL_OUTCOME_CREATED, NULL, 0.5);
    report_stage(r, "acme-staging", "bucket", OL_OUTCOME_UNCHANGED, NULL, 0.1);
    report_stage(r, "acme-production", "iam", OL_OUTCOME_UPDATED, "key rotated", 0.2);
    report_stage(r, "acme-staging", "iam", OL_OUTCOME_FAILED, "AccessDenied: CreateUser", 0.3);
    report_stage(r, "acme-staging", "policy", 0, "needs 'iam', which did not succeed", 0.0);
    report_item(r, "acme-staging", "acme", "staging", "eu-north-1");
    report_item(r, "acme-production", "acme", "production", "eu-north-1");
}

static void prints_a_line_per_stage_failures_on_stderr_and_a_summary(void **state) {
    (void)state;
    capture c;
    report *r = report_new(0, 0, 2);
    assert_non_null(r);
    capture_start(&c);
    record_two_items(r);
    size_t failed = report_finish(r, &STATS, 0, 0);
    capture_end(&c);
    report_free(r);

    assert_int_equal(failed, 1);
    assert_non_null(strstr(c.stdout_text, "acme-production                  bucket     created\n"));
    assert_non_null(strstr(c.stdout_text,
                           "acme-production                  iam        updated    key rotated\n"));
    assert_non_null(strstr(c.stdout_text, "acme-staging                     policy     skipped    "
                                          "needs 'iam', which did not succeed\n"));
    assert_string_equal(c.stderr_text, "acme-staging                     iam        failed     "
                                       "AccessDenied: CreateUser\n");
    const char *sum = strstr(c.stdout_text, "\nSummary: 2 item(s) in ");
    assert_non_null(sum);
    assert_non_null(strstr(sum,
                           " s; 27 AWS requests, 3 retries, 2 throttled\n"
                           "  outcome      items  stages\n"
                           "  created          1       1\n"
                           "  updated          0       1\n"
                           "  unchanged        0       1\n"
                           "  failed           1       1\n"
                           "  skipped          -       1\n"
                           "Failed items:\n"
                           "  acme-staging                     iam: AccessDenied: CreateUser\n"));
    /* the reason is on stdout once: in the summary, not as a stage line */
    assert_true(strstr(c.stdout_text, "AccessDenied") > sum);
    assert_null(strstr(strstr(c.stdout_text, "AccessDenied") + 1, "AccessDenied"));
    capture_free(&c);
}

static void quiet_prints_failures_and_the_summary_only(void **state) {
    (void)state;
    capture c;
    report *r = report_new(0, 0, 2);
    assert_non_null(r);
    report_set_quiet(r, 1);
    capture_start(&c);
    record_two_items(r);
    report_finish(r, &STATS, 0, 0);
    capture_end(&c);
    report_free(r);
    assert_null(strstr(c.stdout_text, "created\n"));
    assert_null(strstr(c.stdout_text, "key rotated"));
    assert_true(strncmp(c.stdout_text, "\nSummary: 2 item(s)", 19) == 0);
    assert_non_null(strstr(c.stdout_text, "Failed items:\n  acme-staging "));
    assert_non_null(strstr(c.stderr_text, "iam        failed     AccessDenied"));
    capture_free(&c);
}

static void counts_items_that_never_finished_as_failed_or_not_run(void **state) {
    (void)state;
    capture c;
    report *r = report_new(0, 0, 3);
    assert_non_null(r);
    capture_start(&c);
    report_stage(r, "a-production", "bucket", OL_OUTCOME_CREATED, NULL, 0.1);
    report_item(r, "a-production", "a", "production", "eu-north-1");
    size_t failed = report_finish(r, &STATS, 0, 1);
    capture_end(&c);
    report_free(r);

    assert_int_equal(failed, 2);
    assert_non_null(strstr(c.stdout_text, "Summary: 3 item(s) in "));
    assert_non_null(strstr(c.stdout_text, "  created          1       1\n"));
    assert_non_null(strstr(c.stdout_text, "  not run          2       -\n"));
    assert_null(strstr(c.stdout_text, "Failed items"));
    capture_free(&c);
}

static json_t *stage_of(json_t *item, const char *name) {
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(item, "stages"), i, s) {
        if (strcmp(json_string_value(json_object_get(s, "stage")), name) == 0)
            return s;
    }
    return NULL;
}

static void
json_mode_prints_one_document_with_items_in_finish_order_and_nothing_else(void **state) {
    (void)state;
    capture c;
    json_error_t jerr;
    report *r = report_new(1, 0, 3);
    assert_non_null(r);
    capture_start(&c);
    record_two_items(r);
    size_t failed = report_finish(r, &STATS, 1, 0);
    capture_end(&c);
    report_free(r);

    assert_int_equal(failed, 2); /* one failed, one never reported */
    assert_string_equal(c.stderr_text, "");
    json_t *doc = json_loads(c.stdout_text, 0, &jerr);
    assert_non_null(doc);
    json_t *items = json_object_get(doc, "items");
    assert_int_equal(json_array_size(items), 2);
    json_t *staging = json_array_get(items, 0), *production = json_array_get(items, 1);
    assert_string_equal(json_string_value(json_object_get(staging, "name")), "acme-staging");
    assert_string_equal(json_string_value(json_object_get(staging, "product")), "acme");
    assert_string_equal(json_string_value(json_object_get(staging, "environment")), "staging");
    assert_string_equal(json_string_value(json_object_get(staging, "region")), "eu-north-1");
    assert_true(json_is_false(json_object_get(staging, "ok")));
    assert_true(json_is_true(json_object_get(production, "ok")));
    json_t *iam = stage_of(staging, "iam");
    assert_non_null(iam);
    assert_string_equal(json_string_value(json_object_get(iam, "outcome")), "failed");
    assert_string_equal(json_string_value(json_object_get(iam, "reason")),
                        "AccessDenied: CreateUser");
    json_t *policy = stage_of(staging, "policy");
    assert_non_null(policy);
    assert_string_equal(json_string_value(json_object_get(policy, "outcome")), "skipped");
    assert_null(json_object_get(stage_of(production, "bucket"), "reason"));

    json_t *sum = json_object_get(doc, "summary");
    const struct {
        const char *key;
        json_int_t want;
    } counts[] = {{"items", 3},     {"ok", 1},           {"failed", 1},
                  {"not_run", 1},   {"created", 1},      {"updated", 1},
                  {"unchanged", 1}, {"stage_failed", 1}, {"skipped", 1}};
    for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++)
        assert_int_equal(json_integer_value(json_object_get(sum, counts[i].key)), counts[i].want);
    assert_true(json_is_true(json_object_get(sum, "credentials_rejected")));
    assert_true(json_is_false(json_object_get(sum, "interrupted")));
    json_t *aws = json_object_get(doc, "aws");
    assert_int_equal(json_integer_value(json_object_get(aws, "requests")), 27);
    assert_int_equal(json_integer_value(json_object_get(aws, "attempts")), 30);
    assert_int_equal(json_integer_value(json_object_get(aws, "retries")), 3);
    assert_int_equal(json_integer_value(json_object_get(aws, "throttled")), 2);
    json_decref(doc);
    capture_free(&c);
}

static void an_item_with_only_unchanged_stages_is_ok(void **state) {
    (void)state;
    capture c;
    report *r = report_new(1, 0, 1);
    assert_non_null(r);
    capture_start(&c);
    report_stage(r, "x-production", "bucket", OL_OUTCOME_UNCHANGED, NULL, 0.1);
    report_stage(r, "x-production", "iam", OL_OUTCOME_UNCHANGED, NULL, 0.1);
    report_item(r, "x-production", "x", "production", "eu-north-1");
    size_t failed = report_finish(r, &STATS, 0, 0);
    capture_end(&c);
    report_free(r);
    assert_int_equal(failed, 0);
    json_t *doc = json_loads(c.stdout_text, 0, NULL);
    assert_non_null(doc);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(doc, "summary"), "ok")), 1);
    json_decref(doc);
    capture_free(&c);
}

/* Durations are milliseconds: 0.1 + 0.002 is printed 0.102, never 0.10200000000000001. */
static void json_durations_are_rounded_to_milliseconds(void **state) {
    (void)state;
    capture c;
    report *r = report_new(1, 0, 1);
    assert_non_null(r);
    capture_start(&c);
    report_stage(r, "x-production", "bucket", OL_OUTCOME_CREATED, NULL, 0.1 + 0.002);
    report_stage(r, "x-production", "iam", OL_OUTCOME_CREATED, NULL, 1.23456789);
    report_item(r, "x-production", "x", "production", "eu-north-1");
    report_finish(r, &STATS, 0, 0);
    capture_end(&c);
    report_free(r);
    assert_non_null(strstr(c.stdout_text, "\"seconds\": 0.102\n"));
    assert_non_null(strstr(c.stdout_text, "\"seconds\": 1.235\n"));
    assert_non_null(strstr(c.stdout_text, "\"outcome\": \"created\""));
    json_t *doc = json_loads(c.stdout_text, 0, NULL);
    assert_non_null(doc);
    double total = json_real_value(json_object_get(json_object_get(doc, "summary"), "seconds"));
    assert_true(total >= 0 && total == report_round_ms(total));
    json_decref(doc);
    capture_free(&c);
}

/* The streamed document is exactly what jansson prints for the whole tree. */
static void assert_prints_as_jansson(const char *text) {
    json_error_t jerr;
    json_t *doc = json_loads(text, 0, &jerr);
    if (doc == NULL)
        fail_msg("not JSON (%s): %s", jerr.text, text);
    char *again = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
    assert_non_null(again);
    size_t n = strlen(again);
    assert_int_equal(strlen(text), n + 1);
    assert_memory_equal(text, again, n);
    assert_int_equal(text[n], '\n');
    free(again);
    json_decref(doc);
}

static void
json_mode_prints_each_item_as_it_finishes_in_the_document_jansson_would_print(void **state) {
    (void)state;
    capture c;
    report *r = report_new(1, 0, 3);
    assert_non_null(r);
    capture_start(&c);
    record_two_items(r);
    fflush(stdout);
    long streamed = ftell(c.out);
    report_stage(r, "acme-test", "bucket", OL_OUTCOME_UNCHANGED, "a \"quoted\"\nline", 0.25);
    report_item(r, "acme-test", "acme", "test", "eu-north-1");
    size_t failed = report_finish(r, &STATS, 0, 0);
    capture_end(&c);
    report_free(r);

    assert_int_equal(failed, 1);
    assert_true(streamed > 0); /* the finished items went out before the run ended */
    assert_non_null(strstr(c.stdout_text, "acme-staging"));
    assert_prints_as_jansson(c.stdout_text);
    json_t *doc = json_loads(c.stdout_text, 0, NULL);
    json_t *items = json_object_get(doc, "items");
    assert_int_equal(json_array_size(items), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(items, 2), "name")),
                        "acme-test");
    json_decref(doc);
    capture_free(&c);
}

static void json_mode_with_no_finished_item_prints_an_empty_list(void **state) {
    (void)state;
    capture c;
    report *r = report_new(1, 0, 2);
    assert_non_null(r);
    capture_start(&c);
    size_t failed = report_finish(r, &STATS, 1, 1);
    capture_end(&c);
    report_free(r);
    assert_int_equal(failed, 2);
    assert_prints_as_jansson(c.stdout_text);
    json_t *doc = json_loads(c.stdout_text, 0, NULL);
    assert_int_equal(json_array_size(json_object_get(doc, "items")), 0);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(doc, "summary"), "not_run")), 2);
    json_decref(doc);
    capture_free(&c);
}

static void plan_names_outcomes_as_would_and_counts_the_changes(void **state) {
    (void)state;
    capture c;
    report *r = report_new(0, 0, 1);
    assert_non_null(r);
    report_set_mode(r, OL_MODE_PLAN);
    capture_start(&c);
    report_stage(r, "x-production", "bucket", OL_OUTCOME_UPDATED, "would turn on X", 0.1);
    report_stage(r, "x-production", "iam", OL_OUTCOME_CREATED, NULL, 0.1);
    report_stage(r, "x-production", "policy", OL_OUTCOME_UNCHANGED, NULL, 0.1);
    report_item(r, "x-production", "x", "production", "eu-north-1");
    size_t failed = report_finish(r, &STATS, 0, 0);
    capture_end(&c);
    assert_int_equal(failed, 0);
    assert_int_equal(report_changes(r), 2);
    report_free(r);
    assert_non_null(strstr(c.stdout_text, "bucket     would update  would turn on X\n"));
    assert_non_null(strstr(c.stdout_text, "iam        would create\n"));
    assert_non_null(strstr(c.stdout_text, "policy     no change\n"));
    assert_non_null(strstr(c.stdout_text, "stages: 1 would create, 1 would update, 1 no change, 0 "
                                          "skipped;"));
    capture_free(&c);
}

static void facts_show_under_their_stage_and_in_json(void **state) {
    (void)state;
    capture c;
    report *r = report_new(0, 0, 1);
    assert_non_null(r);
    report_set_mode(r, OL_MODE_STATUS);
    capture_start(&c);
    report_fact(r, "x-production", "iam", "key AKIA1", "Active, stored");
    report_fact(r, "x-production", "bucket", "owner", "opsline (tag)");
    report_stage(r, "x-production", "iam", OL_OUTCOME_UNCHANGED, NULL, 0.1);
    report_stage(r, "x-production", "bucket", OL_OUTCOME_UPDATED, "drifted", 0.1);
    report_item(r, "x-production", "x", "production", "eu-north-1");
    report_finish(r, &STATS, 0, 0);
    capture_end(&c);
    report_free(r);
    const char *iam = strstr(c.stdout_text, "iam        ok\n");
    assert_non_null(iam);
    assert_non_null(strstr(iam, "key AKIA1: Active, stored\n"));
    const char *bucket = strstr(c.stdout_text, "bucket     drift      drifted\n");
    assert_non_null(bucket);
    assert_non_null(strstr(bucket, "owner: opsline (tag)\n"));
    assert_true(strstr(c.stdout_text, "owner:") > iam &&
                strstr(c.stdout_text, "key AKIA1") < bucket);
    capture_free(&c);

    r = report_new(1, 0, 1);
    assert_non_null(r);
    report_set_mode(r, OL_MODE_DESTROY);
    capture_start(&c);
    report_fact(r, "y-production", "iam", "user", "y-production");
    report_stage(r, "y-production", "iam", OL_OUTCOME_DELETED, NULL, 0.1);
    report_stage(r, "y-production", "bucket", OL_OUTCOME_ABSENT, NULL, 0.1);
    report_item(r, "y-production", "y", "production", "eu-north-1");
    report_finish(r, &STATS, 0, 0);
    capture_end(&c);
    report_free(r);
    json_t *doc = json_loads(c.stdout_text, 0, NULL);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "command")), "destroy");
    json_t *item = json_array_get(json_object_get(doc, "items"), 0);
    assert_null(json_object_get(item, "pending_facts"));
    json_t *iam_stage = json_array_get(json_object_get(item, "stages"), 0);
    assert_string_equal(json_string_value(json_object_get(iam_stage, "outcome")), "deleted");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(iam_stage, "facts"), "user")),
        "y-production");
    json_t *sum = json_object_get(doc, "summary");
    assert_int_equal(json_integer_value(json_object_get(sum, "deleted")), 1);
    assert_int_equal(json_integer_value(json_object_get(sum, "absent")), 1);
    assert_true(json_is_true(json_object_get(item, "ok")));
    json_decref(doc);
    capture_free(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(prints_a_line_per_stage_failures_on_stderr_and_a_summary),
        cmocka_unit_test(counts_items_that_never_finished_as_failed_or_not_run),
        cmocka_unit_test(json_mode_prints_one_document_with_items_in_finish_order_and_nothing_else),
        cmocka_unit_test(an_item_with_only_unchanged_stages_is_ok),
        cmocka_unit_test(quiet_prints_failures_and_the_summary_only),
        cmocka_unit_test(json_durations_are_rounded_to_milliseconds),
        cmocka_unit_test(
            json_mode_prints_each_item_as_it_finishes_in_the_document_jansson_would_print),
        cmocka_unit_test(json_mode_with_no_finished_item_prints_an_empty_list),
        cmocka_unit_test(plan_names_outcomes_as_would_and_counts_the_changes),
        cmocka_unit_test(facts_show_under_their_stage_and_in_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
