/* Tests for identities: per-environment profile and region mappings from the command line and
 * the pipeline file, their checks, and the identity of each item. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "identities.h"
#include "opsline/opsline.h"

/* A plan with the environments of csv (e.g. "production,staging") and one product. */
static void plan_with(plan *p, const char *csv) {
    char *copy = strdup(csv), *save = NULL;
    memset(p, 0, sizeof(*p));
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        p->environments = realloc(p->environments, (p->n_environments + 1) * sizeof(char *));
        assert_non_null(p->environments);
        p->environments[p->n_environments++] = strdup(t);
    }
    free(copy);
}

static void expect_item(const plan *p, size_t e, const char *profile, const char *region) {
    const char *pr, *rg;
    identities_of_item(p, 0, p->environments[e], &pr, &rg);
    if (profile == NULL)
        assert_null(pr);
    else
        assert_string_equal(pr, profile);
    if (region == NULL)
        assert_null(rg);
    else
        assert_string_equal(rg, region);
}

static void maps_each_environment_to_its_profile_and_region(void **state) {
    plan p;
    char *err = NULL;
    (void)state;
    plan_with(&p, "production,staging,dev");
    assert_true(identities_is_mapping("production=a"));
    assert_false(identities_is_mapping("admin"));
    assert_int_equal(identities_plan("production=prod-admin,staging=staging-admin,fallback",
                                     "production=eu-west-1", NULL, NULL, &p, &err),
                     0);
    assert_null(err);
    expect_item(&p, 0, "prod-admin", "eu-west-1");
    expect_item(&p, 1, "staging-admin", NULL);
    expect_item(&p, 2, "fallback", NULL); /* the bare name is the run's default */
    plan_free(&p);
}

static void command_line_wins_over_the_pipeline_file_per_environment(void **state) {
    plan p;
    char *err = NULL;
    (void)state;
    plan_with(&p, "production,staging");
    json_t *doc =
        json_pack("{s:{s:s, s:s, s:s}, s:{s:s}}", "profiles", "production", "file-prod", "staging",
                  "file-staging", "qa", "file-qa", "regions", "staging", "us-east-1");
    assert_int_equal(identities_plan("production=cli-prod", NULL, doc, "p.json", &p, &err), 0);
    expect_item(&p, 0, "cli-prod", NULL);
    expect_item(&p, 1, "file-staging", "us-east-1"); /* "qa": another run's environment */
    json_decref(doc);
    plan_free(&p);
}

static void refuses_unknown_environments_bad_regions_and_bad_files(void **state) {
    plan p;
    char *err = NULL;
    (void)state;
    plan_with(&p, "production,staging");
    assert_int_equal(identities_plan("prodution=x", NULL, NULL, NULL, &p, &err), OL_EINVAL);
    assert_non_null(strstr(err, "'prodution' is not an environment of this run"));
    free(err);
    err = NULL;
    assert_int_equal(identities_plan(NULL, "staging=mars-1", NULL, NULL, &p, &err), OL_EINVAL);
    assert_non_null(strstr(err, "mars-1"));
    free(err);
    err = NULL;
    assert_int_equal(identities_plan("production=", NULL, NULL, NULL, &p, &err), OL_EINVAL);
    free(err);
    err = NULL;
    json_t *doc = json_pack("{s:[s]}", "profiles", "prod");
    assert_int_equal(identities_plan(NULL, NULL, doc, "p.json", &p, &err), OL_ECONFIG);
    assert_non_null(strstr(err, "p.json"));
    assert_non_null(strstr(err, "\"profiles\" must be an object"));
    free(err);
    json_decref(doc);
    plan_free(&p);
}

static void whoami_takes_the_environments_from_the_mapping(void **state) {
    plan p;
    (void)state;
    memset(&p, 0, sizeof(p));
    assert_int_equal(
        identities_environments("production=a,staging=b", "staging=eu-west-1,qa=x", &p), 0);
    assert_int_equal(p.n_environments, 3);
    assert_string_equal(p.environments[0], "production");
    assert_string_equal(p.environments[1], "staging");
    assert_string_equal(p.environments[2], "qa");
    plan_free(&p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(maps_each_environment_to_its_profile_and_region),
        cmocka_unit_test(command_line_wins_over_the_pipeline_file_per_environment),
        cmocka_unit_test(refuses_unknown_environments_bad_regions_and_bad_files),
        cmocka_unit_test(whoami_takes_the_environments_from_the_mapping),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
