/* Unit tests of config_build: the command line and the pipeline file become a plan. Products
 * from argv and --products-file, environments, region, concurrency, --env-file and --set,
 * each with the errors a user can make. The bundled plugins of this build are loaded, so
 * option values are checked as the stages will read them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "loader.h"
#include "options.h"
#include "pipeline.h"

typedef struct fixture {
    loader *l;
    char dir[64];
    char path[128];
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof(*f));
    char *err = NULL;
    assert_non_null(f);
    assert_int_equal(loader_new(&f->l), 0);
    if (loader_load_dir(f->l, OPSLINE_BUILD_DIR "/plugins", 1, &err) != 0)
        fail_msg("loading the bundled plugins: %s", err ? err : "?");
    snprintf(f->dir, sizeof(f->dir), "/tmp/opsline-test-config.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    char cmd[128];
    loader_free(f->l);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* Writes text to a file of the fixture's directory; returns its path (valid until the next
 * call). */
static const char *file_with(fixture *f, const char *name, const char *text) {
    FILE *fp;
    snprintf(f->path, sizeof(f->path), "%s/%s", f->dir, name);
    fp = fopen(f->path, "w");
    assert_non_null(fp);
    assert_int_equal(fputs(text, fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
    return f->path;
}

static const char *const ACME[] = {"acme"};

static const plan_stage *stage(const plan *p, const char *name) {
    for (size_t i = 0; i < p->n_stages; i++)
        if (strcmp(p->stages[i].plugin->desc->name, name) == 0)
            return &p->stages[i];
    fail_msg("stage %s is not in the plan", name);
    return NULL;
}

/* config_build must fail with code and an error mentioning every fragment. */
static void expect_refused(fixture *f, const config_args *a, int code, const char *fragment) {
    plan p;
    char *err = NULL;
    assert_int_equal(config_build(a, f->l, &p, &err), code);
    assert_non_null(err);
    if (strstr(err, fragment) == NULL)
        fail_msg("error '%s' does not mention '%s'", err, fragment);
    free(err);
}

static void defaults_are_both_environments_the_runbook_pipeline_and_32_in_flight(void **state) {
    fixture *f = *state;
    config_args a = {.products = ACME, .n_products = 1};
    plan p;
    char *err = NULL;
    assert_int_equal(config_build(&a, f->l, &p, &err), 0);
    assert_null(err);
    assert_int_equal(p.n_products, 1);
    assert_string_equal(p.products[0], "acme");
    assert_int_equal(p.n_environments, 2);
    assert_string_equal(p.environments[0], "production");
    assert_string_equal(p.environments[1], "staging");
    assert_int_equal(p.n_stages, 4);
    const char *const order[] = {"bucket", "iam", "policy", "dotenv"};
    for (size_t i = 0; i < 4; i++)
        assert_string_equal(p.stages[i].plugin->desc->name, order[i]);
    assert_int_equal(p.concurrency, 32);
    assert_null(p.region);
    assert_string_equal(p.state_dir, ".opsline");
    plan_free(&p);
}

static void products_file_adds_one_name_per_line_without_comments(void **state) {
    fixture *f = *state;
    const char *path = file_with(f, "products.txt",
                                 "# the quarter's products\n"
                                 "\n"
                                 "  shop   # team a\n"
                                 "billing\r\n"
                                 "\t search");
    config_args a = {
        .products = ACME, .n_products = 1, .products_file = path, .environments = "dev"};
    plan p;
    char *err = NULL;
    assert_int_equal(config_build(&a, f->l, &p, &err), 0);
    assert_int_equal(p.n_products, 4);
    const char *const want[] = {"acme", "shop", "billing", "search"};
    for (size_t i = 0; i < 4; i++)
        assert_string_equal(p.products[i], want[i]);
    assert_int_equal(p.n_environments, 1);
    assert_string_equal(p.environments[0], "dev");
    assert_null(p.product_settings);
    plan_free(&p);
}

static void products_file_errors_name_the_file_and_line(void **state) {
    fixture *f = *state;
    config_args a = {.products_file = "/nonexistent/opsline-products.txt"};
    expect_refused(f, &a, OL_ECONFIG, "/nonexistent/opsline-products.txt");
    a.products_file = file_with(f, "two.txt", "acme\nshop billing\n");
    expect_refused(f, &a, OL_EINVAL, "two.txt:2: 'shop billing' is not one product name");
    a.products_file = file_with(f, "sheet.csv", "product,environments,region\nacme,production,\n");
    expect_refused(f, &a, OL_EINVAL,
                   "sheet.csv:1: 'product,environments,region' looks like CSV, which the products "
                   "file does not read: write one product name per line, or one JSON object per "
                   "line");
    a.products_file = file_with(f, "bad.txt", "acme\nShop\n");
    expect_refused(f, &a, OL_EINVAL, "Shop");
    a.products_file = file_with(f, "empty.txt", "# nothing yet\n\n");
    expect_refused(f, &a, OL_EINVAL, "no product given");
}

static void products_file_refuses_duplicates_naming_both_lines(void **state) {
    fixture *f = *state;
    config_args a = {.products_file = file_with(f, "dup.txt",
                                                "acme\nshop\n\n{\"product\": "
                                                "\"acme\"}\n")};
    expect_refused(f, &a, OL_EINVAL, "dup.txt:4: product 'acme' is already on line 1");
    a.products = ACME;
    a.n_products = 1;
    a.products_file = file_with(f, "cli.txt", "# header\nacme\n");
    expect_refused(f, &a, OL_EINVAL, "cli.txt:2: product 'acme' is also given on the command line");
}

static void products_file_may_start_with_a_byte_order_mark(void **state) {
    fixture *f = *state;
    config_args a = {.products_file = file_with(f, "bom.txt",
                                                "\xef\xbb\xbf"
                                                "acme\r\nshop\r\n")};
    plan p;
    char *err = NULL;
    if (config_build(&a, f->l, &p, &err) != 0)
        fail_msg("refused: %s", err);
    assert_int_equal(p.n_products, 2);
    assert_string_equal(p.products[0], "acme");
    plan_free(&p);
}

/* A name longer than any buffer stays one name; NUL bytes, directories, devices and FIFOs
 * are refused instead of being read as products (or read forever). */
static void products_file_reads_whole_lines_and_only_regular_files(void **state) {
    fixture *f = *state;
    char *long_name = malloc(602);
    assert_non_null(long_name);
    memset(long_name, 'a', 600);
    strcpy(long_name + 600, "\n");
    config_args a = {.products_file = file_with(f, "long.txt", long_name), .environments = "dev"};
    plan p;
    char *err = NULL;
    assert_int_equal(config_build(&a, f->l, &p, &err), 0);
    assert_int_equal(p.n_products, 1);
    assert_int_equal(strlen(p.products[0]), 600);
    plan_free(&p);
    free(long_name);

    char *huge = malloc(70000);
    assert_non_null(huge);
    memset(huge, 'b', 69998);
    strcpy(huge + 69998, "\n");
    a.products_file = file_with(f, "huge.txt", huge);
    free(huge);
    expect_refused(f, &a, OL_EINVAL, "huge.txt:1: the line is longer than 65536 bytes");

    snprintf(f->path, sizeof(f->path), "%s/nul.txt", f->dir);
    FILE *fp = fopen(f->path, "w");
    assert_non_null(fp);
    assert_int_equal(fwrite("acme\nsh\0op\n", 1, 12, fp), 12);
    assert_int_equal(fclose(fp), 0);
    a.products_file = f->path;
    expect_refused(f, &a, OL_EINVAL, "nul.txt:2: the line holds a NUL byte");

    a.products_file = f->dir;
    expect_refused(f, &a, OL_ECONFIG, "is a directory");
    a.products_file = "/dev/zero";
    expect_refused(f, &a, OL_ECONFIG, "/dev/zero is not a regular file");
    snprintf(f->path, sizeof(f->path), "%s/fifo", f->dir);
    assert_int_equal(mkfifo(f->path, 0600), 0);
    a.products_file = f->path;
    expect_refused(f, &a, OL_ECONFIG, "is not a regular file");
}

static void json_lines_give_products_their_environments_region_and_options(void **state) {
    fixture *f = *state;
    const char *sets[] = {"bucket.versioning=true"};
    config_args a = {
        .products_file = file_with(
            f, "p.jsonl",
            "# team products\n"
            "plain\n"
            "{\"product\": \"shop\", \"environments\": [\"production\"], \"region\": "
            "\"eu-west-1\", \"tags\": {\"team\": \"web\"}, \"versioning\": false, "
            "\"policy\": \"read-only\", \"set\": {\"bucket.encryption\": \"aws:kms\", "
            "\"bucket.kms_key_id\": \"alias/shop\"}}\n"
            "\n"
            "  {\"product\": \"billing\", \"region\": \"us-east-1\"}  # the # is a comment\n"),
        .environments = "dev,test",
        .sets = sets,
        .n_sets = 1};
    plan p;
    char *err = NULL;
    if (config_build(&a, f->l, &p, &err) != 0)
        fail_msg("refused: %s", err);
    assert_int_equal(p.n_products, 3);
    assert_non_null(p.product_settings);
    assert_non_null(p.product_lines);
    assert_int_equal(p.product_lines[0], 2);
    assert_int_equal(p.product_lines[1], 3);
    assert_int_equal(p.product_lines[2], 5);
    assert_string_equal(p.products_file, a.products_file);
    char *const *envs;
    assert_int_equal(plan_product_environments(&p, 0, &envs), 2);
    assert_string_equal(envs[1], "test");
    assert_int_equal(plan_product_environments(&p, 1, &envs), 1);
    assert_string_equal(envs[0], "production");
    assert_null(p.product_settings[0].region);
    assert_null(p.product_settings[0].stages);
    assert_string_equal(p.product_settings[1].region, "eu-west-1");
    assert_string_equal(p.product_settings[2].region, "us-east-1");
    assert_null(p.product_settings[2].stages);
    /* shop's own bucket options: the line over --set over the defaults */
    const plan_stage *own = &p.product_settings[1].stages[stage(&p, "bucket") - p.stages];
    assert_non_null(own->opts);
    assert_int_equal(options_bool(own->opts, "versioning"), 0);
    const ol_kv *tags;
    assert_int_equal(options_map(own->opts, "tags", &tags), 1);
    assert_string_equal(tags[0].name, "team");
    assert_string_equal(tags[0].value, "web");
    assert_int_equal(options_bool(stage(&p, "bucket")->opts, "versioning"), 1);
    assert_false(options_is_set(stage(&p, "bucket")->opts, "tags"));
    const plan_stage *pol = &p.product_settings[1].stages[stage(&p, "policy") - p.stages];
    assert_string_equal(options_string(pol->opts, "preset"), "read-only");
    assert_string_equal(options_string(stage(&p, "policy")->opts, "preset"), "runbook");
    /* "tags" is a shortcut of every stage that maps it (cli_flags): the user gets them too */
    const plan_stage *user = &p.product_settings[1].stages[stage(&p, "iam") - p.stages];
    assert_int_equal(options_map(user->opts, "tags", &tags), 1);
    assert_string_equal(tags[0].value, "web");
    plan_free(&p);
}

/* Every bad line is refused with its file and line number, before any request. */
static void json_lines_errors_name_the_file_and_line(void **state) {
    fixture *f = *state;
    static const struct {
        const char *line, *fragment;
    } cases[] = {
        {"{\"product\": \"shop\"", "not valid JSON"},
        {"{\"product\": \"shop\", \"product\": \"x\"}", "duplicate object key"},
        {"{}", "no \"product\" name"},
        {"{\"product\": 7}", "no \"product\" name"},
        {"{\"product\": \"\"}", "the product name is empty"},
        {"{\"product\": \"Shop\"}", "Shop"},
        {"{\"product\": \"shop\", \"colour\": \"red\"}", "unknown key 'colour'"},
        {"{\"product\": \"shop\", \"environments\": []}", "non-empty list"},
        {"{\"product\": \"shop\", \"environments\": [\"Prod\"]}", "Prod"},
        {"{\"product\": \"shop\", \"environments\": [\"a\", \"a\"]}", "twice"},
        {"{\"product\": \"shop\", \"region\": \"mars-1\"}", "not 'mars-1'"},
        {"{\"product\": \"shop\", \"region\": 3}", "AWS region name"},
        {"{\"product\": \"shop\", \"secrets\": []}", "\"secrets\" must be a non-empty list"},
        {"{\"product\": \"shop\", \"secrets\": \"dotenv\"}", "non-empty list"},
        {"{\"product\": \"shop\", \"secrets\": [\"dotenv\", 3]}", "must list names"},
        {"{\"product\": \"shop\", \"secrets\": [\"pass\", \"pass\"]}", "'pass' twice"},
        {"{\"product\": \"shop\", \"secrets\": [\"bucket\"]}", "not a secret store"},
        {"{\"product\": \"shop\", \"profile\": \"x\"}", "per-product credentials"},
        {"{\"product\": \"shop\", \"set\": [1]}", "\"set\" must be an object"},
        {"{\"product\": \"shop\", \"set\": {\"versioning\": true}}", "not STAGE.OPTION"},
        {"{\"product\": \"shop\", \"set\": {\"cdn.ttl\": 1}}", "stage 'cdn', which is not"},
        {"{\"product\": \"shop\", \"set\": {\"dotenv.path\": \"x\"}}", "secret store"},
        {"{\"product\": \"shop\", \"set\": {\"bucket.versoning\": true}}",
         "did you mean 'versioning'"},
        {"{\"product\": \"shop\", \"versioning\": \"yes\"}", "must be a boolean"},
        {"{\"product\": \"shop\", \"tags\": {\"a\": 1}}", "not a string"},
        {"{\"product\": \"shop\", \"versioning\": true, \"set\": {\"bucket.versioning\": "
         "true}}",
         "already sets"},
        {"[\"shop\"]", "character '['"},
        {"{\"product\": \"shop\"} {\"product\": \"acme2\"}", "text after the JSON object"},
        {"{\"product\": \"shop\"} junk", "text after the JSON object"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[512], want[256];
        snprintf(text, sizeof(text), "acme\n# comment\n%s\n", cases[i].line);
        config_args a = {.products_file = file_with(f, "bad.jsonl", text)};
        snprintf(want, sizeof(want), "bad.jsonl:3: ");
        expect_refused(f, &a, OL_EINVAL, want);
        expect_refused(f, &a, OL_EINVAL, cases[i].fragment);
    }
}

/* The stores of a plan stage applies to product i (by name), as a comma-separated list. */
static void stores_of(const plan *p, size_t i, char *buf, size_t len) {
    size_t off = 0;
    buf[0] = '\0';
    for (size_t s = 0; s < p->n_stages && off < len; s++)
        if (p->stages[s].is_store && plan_stage_applies(p, i, s))
            off += (size_t)snprintf(buf + off, len - off, "%s%s", off ? "," : "",
                                    p->stages[s].plugin->desc->name);
}

/* "secrets" on a line gives that product exactly those stores; the run's stores stay the
 * others'; a store only a line names joins the plan with the pipeline file's options. */
static void json_lines_give_products_their_own_stores(void **state) {
    fixture *f = *state;
    char pipeline[128];
    snprintf(pipeline, sizeof(pipeline), "%s",
             file_with(f, "p.json",
                       "{\"stages\": [\"bucket\", \"iam\", \"policy\", \"dotenv\", "
                       "{\"stage\": \"1password\", \"options\": {\"file\": \"ops.csv\"}, "
                       "\"timeout\": \"42s\"}], \"secrets\": [\"dotenv\"]}"));
    config_args a = {.pipeline_file = pipeline,
                     .products_file =
                         file_with(f, "stores.jsonl",
                                   "plain\n"
                                   "{\"product\": \"shop\", \"secrets\": [\"pass\", \"dotenv\"]}\n"
                                   "{\"product\": \"docs\", \"secrets\": [\"1password\"]}\n")};
    plan p;
    char *err = NULL, got[256];
    if (config_build(&a, f->l, &p, &err) != 0)
        fail_msg("%s", err);
    stores_of(&p, 0, got, sizeof(got));
    assert_string_equal(got, "dotenv");
    stores_of(&p, 1, got, sizeof(got));
    assert_true(strcmp(got, "dotenv,pass") == 0 || strcmp(got, "pass,dotenv") == 0);
    stores_of(&p, 2, got, sizeof(got));
    assert_string_equal(got, "1password");
    assert_false(stage(&p, "dotenv")->listed_only);
    assert_true(stage(&p, "pass")->listed_only);
    assert_true(stage(&p, "1password")->listed_only);
    assert_int_equal(stage(&p, "1password")->timeout_ms, 42000);
    assert_true(plan_stage_applies(&p, 2, (size_t)(stage(&p, "iam") - p.stages)));
    /* every store runs after the key creator, the products' own too */
    size_t iam = (size_t)(stage(&p, "iam") - p.stages);
    assert_true((size_t)(stage(&p, "pass") - p.stages) > iam);
    assert_true((size_t)(stage(&p, "1password") - p.stages) > iam);
    plan_free(&p);

    /* with --secrets the run's stores are those; a line naming one adds nothing */
    a.pipeline_file = NULL;
    a.secrets = "pass";
    a.products_file = file_with(f, "one.jsonl",
                                "plain\n{\"product\": \"shop\", \"secrets\": "
                                "[\"pass\"]}\n");
    if (config_build(&a, f->l, &p, &err) != 0)
        fail_msg("%s", err);
    stores_of(&p, 0, got, sizeof(got));
    assert_string_equal(got, "pass");
    stores_of(&p, 1, got, sizeof(got));
    assert_string_equal(got, "pass");
    assert_false(stage(&p, "pass")->listed_only);
    plan_free(&p);
}

/* A store no plugin provides, named by a line, is refused with the line before any
 * request; so is a product left with no store at all. */
static void json_lines_stores_are_checked_with_their_line(void **state) {
    fixture *f = *state;
    config_args a = {.products_file =
                         file_with(f, "nostore.jsonl",
                                   "acme\n\n{\"product\": \"shop\", \"secrets\": [\"vaultx\"]}\n")};
    expect_refused(f, &a, OL_ECONFIG,
                   "nostore.jsonl:3: \"secrets\": no plugin provides secret "
                   "store 'vaultx'; loaded stores: ");
    expect_refused(f, &a, OL_ECONFIG, "dotenv");
    /* the run's stores are none: a product without its own would lose its keys */
    char pipeline[128];
    snprintf(pipeline, sizeof(pipeline), "%s",
             file_with(f, "nostores.json", "{\"stages\": [\"bucket\", \"iam\"]}"));
    a.pipeline_file = pipeline;
    a.products_file = file_with(f, "some.jsonl",
                                "{\"product\": \"shop\", \"secrets\": "
                                "[\"dotenv\"]}\nacme\n");
    expect_refused(f, &a, OL_ECONFIG,
                   "some.jsonl:2: stage 'iam' creates access keys but 'acme' "
                   "has no secret store");
    a.products_file = file_with(f, "all.jsonl",
                                "{\"product\": \"shop\", \"secrets\": "
                                "[\"dotenv\"]}\n");
    plan p;
    char *err = NULL;
    if (config_build(&a, f->l, &p, &err) != 0)
        fail_msg("%s", err);
    assert_true(stage(&p, "dotenv")->listed_only);
    assert_true(plan_stage_applies(&p, 0, (size_t)(stage(&p, "dotenv") - p.stages)));
    plan_free(&p);
    /* argv's product with no run store */
    a.products = ACME;
    a.n_products = 1;
    expect_refused(f, &a, OL_ECONFIG, "but product 'acme' has no secret store");
}

static void environments_and_region_come_from_the_flags_before_the_pipeline_file(void **state) {
    fixture *f = *state;
    const char *path = file_with(f, "p.json",
                                 "{\"environments\": [\"qa\", \"prod\"], \"region\": "
                                 "\"eu-west-1\", \"concurrency\": 5, \"stages\": [\"bucket\"]}");
    config_args a = {.products = ACME, .n_products = 1, .pipeline_file = path};
    plan p;
    char *err = NULL;
    assert_int_equal(config_build(&a, f->l, &p, &err), 0);
    assert_int_equal(p.n_environments, 2);
    assert_string_equal(p.environments[0], "qa");
    assert_string_equal(p.region, "eu-west-1");
    assert_int_equal(p.concurrency, 5);
    assert_int_equal(p.n_stages, 1);
    plan_free(&p);

    a.environments = " staging , production,staging";
    a.region = "us-east-1";
    a.concurrency = 200;
    assert_int_equal(config_build(&a, f->l, &p, &err), 0);
    assert_int_equal(p.n_environments, 2);
    assert_string_equal(p.environments[0], "staging");
    assert_string_equal(p.environments[1], "production");
    assert_string_equal(p.region, "us-east-1");
    assert_int_equal(p.concurrency, 200);
    plan_free(&p);
}

static void bad_regions_environments_and_pipeline_files_are_refused(void **state) {
    fixture *f = *state;
    config_args a = {.products = ACME, .n_products = 1, .region = "eu_north_1"};
    expect_refused(f, &a, OL_EINVAL, "region 'eu_north_1' is not an AWS region name");
    a.region = NULL;
    a.environments = "prod_1";
    expect_refused(f, &a, OL_EINVAL, "prod_1");
    a.environments = ",";
    expect_refused(f, &a, OL_EINVAL, "no environment given");
    a.environments = NULL;
    a.pipeline_file = file_with(f, "conc.json", "{\"concurrency\": 0, \"stages\": [\"bucket\"]}");
    expect_refused(f, &a, OL_ECONFIG, "\"concurrency\" must be a number from 1 to 1024");
    a.pipeline_file = file_with(f, "key.json", "{\"stage\": [\"bucket\"]}");
    expect_refused(f, &a, OL_ECONFIG, "unknown key 'stage'");
    a.pipeline_file = file_with(f, "region.json", "{\"region\": 5, \"stages\": [\"bucket\"]}");
    expect_refused(f, &a, OL_ECONFIG, "\"region\" must be a string");
    a.pipeline_file = file_with(f, "twice.json", "{\"stages\": [\"bucket\", \"bucket\"]}");
    expect_refused(f, &a, OL_ECONFIG, "stage 'bucket' is listed twice");
    a.pipeline_file = file_with(f, "none.json", "{\"stages\": [\"bucket\", \"frobnicate\"]}");
    expect_refused(f, &a, OL_ECONFIG, "no plugin provides stage 'frobnicate'");
}

static void set_and_env_file_reach_the_stage_options(void **state) {
    fixture *f = *state;
    const char *const sets[] = {"bucket.versioning=true", "policy.preset=read-only"};
    config_args a = {.products = ACME,
                     .n_products = 1,
                     .sets = sets,
                     .n_sets = 2,
                     .env_file = "{product}/.env.{environment}"};
    plan p;
    char *err = NULL;
    assert_int_equal(config_build(&a, f->l, &p, &err), 0);
    assert_null(err);
    assert_int_equal(options_bool(stage(&p, "bucket")->opts, "versioning"), 1);
    assert_string_equal(options_string(stage(&p, "policy")->opts, "preset"), "read-only");
    assert_string_equal(options_string(stage(&p, "dotenv")->opts, "path"),
                        "{product}/.env.{environment}");
    assert_int_equal(options_bool(stage(&p, "bucket")->opts, "block_public_access"), 1);
    plan_free(&p);
}

static void bad_set_and_env_file_are_refused_naming_what_to_write(void **state) {
    fixture *f = *state;
    const char *set[1];
    config_args a = {.products = ACME, .n_products = 1, .sets = set, .n_sets = 1};
    set[0] = "bucket.versioning";
    expect_refused(f, &a, OL_EINVAL, "write STAGE.OPTION=VALUE");
    set[0] = "versioning=true";
    expect_refused(f, &a, OL_EINVAL, "write STAGE.OPTION=VALUE");
    set[0] = "nosuch.option=1";
    expect_refused(f, &a, OL_EINVAL, "stage 'nosuch' is not in the pipeline");
    set[0] = "bucket.versioning=perhaps";
    {
        plan p;
        char *err = NULL;
        assert_int_not_equal(config_build(&a, f->l, &p, &err), 0);
        assert_non_null(strstr(err, "--set bucket.versioning"));
        assert_non_null(strstr(err, "perhaps"));
        free(err);
    }
    set[0] = "bucket.versionning=true";
    {
        plan p;
        char *err = NULL;
        assert_int_not_equal(config_build(&a, f->l, &p, &err), 0);
        assert_non_null(strstr(err, "versionning"));
        free(err);
    }
    a.n_sets = 0;
    a.env_file = "x.env";
    a.pipeline_file = file_with(f, "nodotenv.json", "{\"stages\": [\"bucket\"]}");
    expect_refused(f, &a, OL_EINVAL,
                   "--env-file sets option 'path' of stage 'dotenv', which is not in the pipeline");
}

static void no_product_is_refused_with_an_example(void **state) {
    fixture *f = *state;
    config_args a = {0};
    expect_refused(f, &a, OL_EINVAL, "e.g. `opsline apply acme`");
}

/* Secret stores: a pipeline that creates keys stores them somewhere, after they exist. */
static void refuses_a_pipeline_that_stores_keys_nowhere(void **state) {
    fixture *f = *state;
    config_args a = {.products = ACME, .n_products = 1};
    a.pipeline_file = file_with(f, "nostore.json", "{\"stages\": [\"bucket\", \"iam\"]}");
    expect_refused(f, &a, OL_ECONFIG, "no secret store");
}

static void orders_every_store_after_the_stage_that_creates_keys(void **state) {
    fixture *f = *state;
    config_args a = {.products = ACME, .n_products = 1, .secrets = "dotenv"};
    a.pipeline_file = file_with(f, "order.json", "{\"stages\": [\"dotenv\", \"iam\"]}");
    plan p;
    char *err = NULL;
    assert_int_equal(config_build(&a, f->l, &p, &err), 0);
    size_t iam = 0, dotenv = 0;
    for (size_t i = 0; i < p.n_stages; i++) {
        if (strcmp(p.stages[i].plugin->desc->name, "iam") == 0)
            iam = i;
        if (strcmp(p.stages[i].plugin->desc->name, "dotenv") == 0)
            dotenv = i;
    }
    assert_true(dotenv > iam);
    assert_true(stage(&p, "dotenv")->is_store);
    assert_true(stage(&p, "iam")->creates_secrets);
    plan_free(&p);
}

static void refuses_a_key_creator_that_needs_a_store(void **state) {
    fixture *f = *state;
    char *err = NULL;
    if (loader_load_dir(f->l, OPSLINE_BUILD_DIR "/test-plugins/creator_needs_store", 1, &err))
        fail_msg("loading the test plugin: %s", err ? err : "?");
    config_args a = {.products = ACME, .n_products = 1, .secrets = "dotenv"};
    a.pipeline_file = file_with(f, "cycle.json", "{\"stages\": [\"creator_needs_store\"]}");
    plan p;
    assert_int_not_equal(config_build(&a, f->l, &p, &err), 0);
    assert_non_null(err);
    assert_non_null(strstr(err, "creator_needs_store"));
    assert_non_null(strstr(err, "dotenv"));
    free(err);
}

static void secrets_select_the_stores_and_refuse_a_stage_that_is_none(void **state) {
    fixture *f = *state;
    config_args a = {.products = ACME, .n_products = 1, .secrets = "bucket"};
    expect_refused(f, &a, OL_EINVAL, "not a secret store");
    a.secrets = "nosuchstore";
    expect_refused(f, &a, OL_ECONFIG, "no plugin provides secret store 'nosuchstore'");
}

/* A pipeline file that cannot be opened says so, with the system's reason, not a JSON
 * position; a FIFO is refused without waiting for a writer (alarm: a hang fails). */
static void a_missing_or_unopenable_pipeline_file_says_cannot_open(void **state) {
    fixture *f = *state;
    char path[160];
    config_args a = {.products = ACME, .n_products = 1, .pipeline_file = path};
    snprintf(path, sizeof(path), "%s/missing.json", f->dir);
    expect_refused(f, &a, OL_ECONFIG, "No such file or directory");
    char want[300];
    snprintf(want, sizeof(want), "cannot open pipeline file %s: No such file or directory", path);
    expect_refused(f, &a, OL_ECONFIG, want);
    snprintf(path, sizeof(path), "%s", f->dir);
    expect_refused(f, &a, OL_ECONFIG, "is a directory");
    snprintf(path, sizeof(path), "%s/fifo.json", f->dir);
    assert_int_equal(mkfifo(path, 0600), 0);
    alarm(10);
    expect_refused(f, &a, OL_ECONFIG, "is a FIFO");
    alarm(0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(a_missing_or_unopenable_pipeline_file_says_cannot_open,
                                        setup, teardown),
        cmocka_unit_test(defaults_are_both_environments_the_runbook_pipeline_and_32_in_flight),
        cmocka_unit_test(products_file_adds_one_name_per_line_without_comments),
        cmocka_unit_test(products_file_errors_name_the_file_and_line),
        cmocka_unit_test(products_file_refuses_duplicates_naming_both_lines),
        cmocka_unit_test(products_file_reads_whole_lines_and_only_regular_files),
        cmocka_unit_test(products_file_may_start_with_a_byte_order_mark),
        cmocka_unit_test(json_lines_give_products_their_environments_region_and_options),
        cmocka_unit_test(json_lines_errors_name_the_file_and_line),
        cmocka_unit_test(json_lines_give_products_their_own_stores),
        cmocka_unit_test(json_lines_stores_are_checked_with_their_line),
        cmocka_unit_test(environments_and_region_come_from_the_flags_before_the_pipeline_file),
        cmocka_unit_test(bad_regions_environments_and_pipeline_files_are_refused),
        cmocka_unit_test(set_and_env_file_reach_the_stage_options),
        cmocka_unit_test(bad_set_and_env_file_are_refused_naming_what_to_write),
        cmocka_unit_test(no_product_is_refused_with_an_example),
        cmocka_unit_test_setup_teardown(refuses_a_pipeline_that_stores_keys_nowhere, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(orders_every_store_after_the_stage_that_creates_keys, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(refuses_a_key_creator_that_needs_a_store, setup, teardown),
        cmocka_unit_test_setup_teardown(secrets_select_the_stores_and_refuse_a_stage_that_is_none,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
