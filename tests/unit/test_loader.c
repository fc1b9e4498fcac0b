/* Tests for loader: loads the test plugins built by tests/plugins/ (one directory per case
 * under <build>/test-plugins/) and checks each refusal names the file and says why. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "loader.h"

#define CASES OPSLINE_BUILD_DIR "/test-plugins/"

static int setup(void **state) {
    loader *l = NULL;
    if (loader_new(&l) != 0)
        return -1;
    *state = l;
    return 0;
}

static int teardown(void **state) {
    loader_free(*state);
    return 0;
}

/* Load path, expect code, and check the message contains every given fragment. */
static void expect_refusal(loader *l, const char *path, int code, const char *frag1,
                           const char *frag2, const char *frag3) {
    char *err = NULL;
    int rc = loader_load_file(l, path, &err);
    assert_int_equal(rc, code);
    assert_non_null(err);
    const char *frags[] = {path, frag1, frag2, frag3};
    for (size_t i = 0; i < sizeof(frags) / sizeof(frags[0]); i++) {
        if (frags[i] != NULL && strstr(err, frags[i]) == NULL)
            fail_msg("message \"%s\" lacks \"%s\"", err, frags[i]);
    }
    free(err);
    assert_int_equal(loader_count(l), 0);
}

static void loads_a_good_plugin(void **state) {
    loader *l = *state;
    char *err = NULL;
    assert_int_equal(loader_load_file(l, CASES "good/good.so", &err), 0);
    assert_null(err);
    assert_int_equal(loader_count(l), 1);
    const loader_plugin *p = loader_find(l, "good");
    assert_non_null(p);
    assert_ptr_equal(p, loader_at(l, 0));
    assert_string_equal(p->desc->version, "1.2.3");
    assert_int_equal(p->path[0], '/');
    assert_non_null(strstr(p->path, "/good/good.so"));
    assert_null(loader_find(l, "bad"));
    assert_null(loader_at(l, 1));
}

static void loading_the_same_file_twice_is_a_noop(void **state) {
    loader *l = *state;
    char *err = NULL;
    assert_int_equal(loader_load_file(l, CASES "good/good.so", &err), 0);
    assert_int_equal(loader_load_file(l, CASES "good/../good/good.so", &err), 0);
    assert_null(err);
    assert_int_equal(loader_count(l), 1);
}

static void refuses_a_different_abi_major_naming_both_versions(void **state) {
    expect_refusal(*state, CASES "abi_major/abi_major.so", OL_EABI, "ABI 3.0", "supports 2.2",
                   "SDK 2.x");
}

static void refuses_a_newer_abi_minor_naming_both_versions(void **state) {
    expect_refusal(*state, CASES "abi_minor/abi_minor.so", OL_EABI, "ABI 2.3", "supports 2.2",
                   NULL);
}

static void refuses_a_descriptor_smaller_than_abi_2_0(void **state) {
    expect_refusal(*state, CASES "small_struct/small_struct.so", OL_EABI, "12 bytes", "2.0", NULL);
}

static void refuses_a_library_without_the_entry_symbol(void **state) {
    expect_refusal(*state, CASES "no_entry/no_entry.so", OL_EINVAL, "not an opsline plugin",
                   "opsline_plugin", "OL_EXPORT");
}

static void refuses_an_entry_returning_null(void **state) {
    expect_refusal(*state, CASES "null_entry/null_entry.so", OL_EINVAL, "returned NULL", NULL,
                   NULL);
}

static void refuses_a_descriptor_without_apply(void **state) {
    expect_refusal(*state, CASES "null_apply/null_apply.so", OL_EINVAL, "apply", NULL, NULL);
}

static void refuses_a_bad_stage_name(void **state) {
    expect_refusal(*state, CASES "bad_name/bad_name.so", OL_EINVAL, "'Bad Name!'", "a-z", NULL);
}

static void refuses_duplicate_option_names(void **state) {
    expect_refusal(*state, CASES "dup_options/dup_options.so", OL_EINVAL, "'region' twice", NULL,
                   NULL);
}

static void refuses_a_cli_flag_for_an_undeclared_option(void **state) {
    expect_refusal(*state, CASES "bad_cli_flag/bad_cli_flag.so", OL_EINVAL,
                   "('env-file' -> 'path')", "an option the stage declares", NULL);
}

static void refuses_a_cli_flag_listed_twice(void **state) {
    expect_refusal(*state, CASES "dup_cli_flag/dup_cli_flag.so", OL_EINVAL, "'dup_cli_flag'",
                   "cli flag 'env-file' twice", NULL);
}

static void refuses_a_malformed_option_default(void **state) {
    expect_refusal(*state, CASES "bad_default/bad_default.so", OL_EINVAL, "'retries'",
                   "malformed default", NULL);
}

static void refuses_an_unresolved_symbol_with_the_dlerror_text(void **state) {
    expect_refusal(*state, CASES "undefined_symbol/undefined_symbol.so", OL_EINVAL,
                   "undefined symbol", "ol_test_function_nobody_defines", NULL);
}

static void refuses_a_missing_file(void **state) {
    expect_refusal(*state, CASES "good/absent.so", OL_ENOENT, "No such file", NULL, NULL);
}

static void refuses_a_stage_name_from_two_files_naming_both(void **state) {
    loader *l = *state;
    char *err = NULL;
    assert_int_equal(loader_load_dir(l, CASES "dup_stage", 1, &err), OL_EEXIST);
    assert_non_null(err);
    assert_non_null(strstr(err, "dup_stage/a.so"));
    assert_non_null(strstr(err, "dup_stage/b.so"));
    assert_non_null(strstr(err, "'twin'"));
    free(err);
    assert_int_equal(loader_count(l), 1);
}

static void loads_a_directory_in_name_order(void **state) {
    loader *l = *state;
    char *err = NULL;
    assert_int_equal(loader_load_dir(l, CASES "chain", 1, &err), 0);
    assert_int_equal(loader_count(l), 3);
    assert_string_equal(loader_at(l, 0)->desc->name, "first");
    assert_string_equal(loader_at(l, 1)->desc->name, "second");
    assert_string_equal(loader_at(l, 2)->desc->name, "third");
}

static void a_missing_directory_fails_only_when_required(void **state) {
    loader *l = *state;
    char *err = NULL;
    assert_int_equal(loader_load_dir(l, CASES "no-such-dir", 0, &err), 0);
    assert_null(err);
    assert_int_equal(loader_load_dir(l, CASES "no-such-dir", 1, &err), OL_ENOENT);
    assert_non_null(err);
    assert_non_null(strstr(err, "no-such-dir"));
    free(err);
}

static void earlier_search_path_directories_shadow_later_ones(void **state) {
    loader *l = *state;
    char *err = NULL;
    const char *dirs[] = {CASES "shadow"};
    assert_int_equal(setenv("OPSLINE_PLUGIN_PATH", CASES "good:" CASES "chain", 1), 0);
    int rc = loader_load_default(l, dirs, 1, &err);
    unsetenv("OPSLINE_PLUGIN_PATH");
    assert_int_equal(rc, 0);
    assert_null(err);
    assert_string_equal(loader_find(l, "good")->desc->version, "9.9.9");
    assert_non_null(strstr(loader_find(l, "good")->path, "/shadow/good.so"));
    assert_non_null(loader_find(l, "third"));
}

static void a_missing_plugin_dir_option_is_an_error(void **state) {
    char *err = NULL;
    const char *dirs[] = {CASES "no-such-dir"};
    assert_int_equal(loader_load_default(*state, dirs, 1, &err), OL_ENOENT);
    assert_non_null(strstr(err, "no-such-dir"));
    free(err);
}

static void orders_stages_after_what_they_need(void **state) {
    loader *l = *state;
    char *err = NULL;
    assert_int_equal(loader_load_dir(l, CASES "chain", 1, &err), 0);
    const char *names[] = {"third", "first", "second"};
    size_t order[3] = {9, 9, 9};
    assert_int_equal(loader_order(l, names, 3, order, &err), 0);
    assert_null(err);
    assert_int_equal(order[0], 1); /* first */
    assert_int_equal(order[1], 2); /* second */
    assert_int_equal(order[2], 0); /* third */
}

static void ordering_refuses_a_need_missing_from_the_pipeline(void **state) {
    loader *l = *state;
    char *err = NULL;
    assert_int_equal(loader_load_dir(l, CASES "chain", 1, &err), 0);
    const char *names[] = {"third", "second"};
    size_t order[2];
    assert_int_equal(loader_order(l, names, 2, order, &err), OL_EINVAL);
    assert_non_null(strstr(err, "'second' needs stage 'first'"));
    free(err);
}

static void ordering_refuses_a_need_no_plugin_provides(void **state) {
    loader *l = *state;
    char *err = NULL;
    assert_int_equal(loader_load_file(l, CASES "missing_need/missing_need.so", &err), 0);
    const char *names[] = {"missing_need"};
    size_t order[1];
    assert_int_equal(loader_order(l, names, 1, order, &err), OL_EINVAL);
    assert_non_null(strstr(err, "'missing_need' needs stage 'nonexistent'"));
    assert_non_null(strstr(err, "no plugin provides it"));
    free(err);
}

static void ordering_refuses_a_cycle_naming_it(void **state) {
    loader *l = *state;
    char *err = NULL;
    assert_int_equal(loader_load_dir(l, CASES "cycle", 1, &err), 0);
    const char *names[] = {"ping", "pong"};
    size_t order[2];
    assert_int_equal(loader_order(l, names, 2, order, &err), OL_EINVAL);
    assert_non_null(strstr(err, "cycle"));
    assert_non_null(strstr(err, "ping -> pong -> ping"));
    free(err);
}

static void ordering_refuses_an_unknown_stage(void **state) {
    char *err = NULL;
    const char *names[] = {"nope"};
    size_t order[1];
    assert_int_equal(loader_order(*state, names, 1, order, &err), OL_EINVAL);
    assert_non_null(strstr(err, "'nope'"));
    free(err);
}

/* ---- who may change a plugin ------------------------------------------------------------ */

typedef struct ctor_case {
    char dir[64];
    char so[128];
    char marker[128];
} ctor_case;

/* A private copy of the marker plugin in a fresh directory (0755, file 0755). */
static void ctor_case_init(ctor_case *c) {
    snprintf(c->dir, sizeof(c->dir), "/tmp/test_loader.XXXXXX");
    assert_non_null(mkdtemp(c->dir));
    assert_int_equal(chmod(c->dir, 0755), 0);
    snprintf(c->so, sizeof(c->so), "%s/ctor_marker.so", c->dir);
    snprintf(c->marker, sizeof(c->marker), "%s.marker", c->dir);
    unlink(c->marker);
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s' && chmod 0755 '%s'", CASES "ctor/ctor_marker.so",
             c->so, c->so);
    assert_int_equal(system(cmd), 0);
    setenv("OL_TEST_MARKER", c->marker, 1);
}

static void ctor_case_free(ctor_case *c) {
    unlink(c->so);
    rmdir(c->dir);
    unlink(c->marker);
    unsetenv("OL_TEST_MARKER");
}

/* Loading c's directory is refused for why, naming what, and the constructor never ran. */
static void expect_refused_unrun(ctor_case *c, const char *what, const char *why) {
    loader *l = NULL;
    char *err = NULL;
    assert_int_equal(loader_new(&l), 0);
    assert_int_equal(loader_load_dir(l, c->dir, 1, &err), OL_EINVAL);
    assert_non_null(err);
    if (strstr(err, what) == NULL || strstr(err, why) == NULL)
        fail_msg("message \"%s\" lacks \"%s\" or \"%s\"", err, what, why);
    assert_int_equal(loader_count(l), 0);
    assert_int_equal(access(c->marker, F_OK), -1); /* its constructor did not run */
    free(err);
    loader_free(l);
}

static void refuses_a_plugin_others_can_change_before_its_constructor_runs(void **state) {
    (void)state;
    ctor_case c;
    ctor_case_init(&c);
    assert_int_equal(chmod(c.dir, 0777), 0); /* the directory: anyone can swap the file */
    expect_refused_unrun(&c, c.dir, "writable by every user");
    assert_int_equal(chmod(c.dir, 01777), 0); /* sticky is not enough for its own directory */
    expect_refused_unrun(&c, c.dir, "writable by every user");
    assert_int_equal(chmod(c.dir, 0755), 0);
    assert_int_equal(chmod(c.so, 0757), 0); /* the file itself */
    expect_refused_unrun(&c, c.so, "writable by every user");
    assert_int_equal(chmod(c.so, 0755), 0);
    /* Group-writable with a group that is not the owner's own. */
    const struct group *g = getgrnam("daemon");
    if (geteuid() == 0 && g != NULL) {
        assert_int_equal(chown(c.so, 0, g->gr_gid), 0);
        assert_int_equal(chmod(c.so, 0775), 0);
        expect_refused_unrun(&c, c.so, "writable by its group");
        assert_int_equal(chmod(c.so, 0755), 0);
        assert_int_equal(chown(c.so, 65534, 0), 0); /* someone else's file */
        expect_refused_unrun(&c, c.so, "belongs to another user");
        assert_int_equal(chown(c.so, 0, 0), 0);
    }
    /* Now nobody else can change it: it loads, and the constructor's mark appears (the
     * check above could see it). */
    loader *l = NULL;
    char *err = NULL;
    assert_int_equal(loader_new(&l), 0);
    assert_int_equal(loader_load_dir(l, c.dir, 1, &err), 0);
    assert_null(err);
    assert_int_equal(access(c.marker, F_OK), 0);
    loader_free(l);
    ctor_case_free(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(refuses_a_plugin_others_can_change_before_its_constructor_runs),
        cmocka_unit_test_setup_teardown(loads_a_good_plugin, setup, teardown),
        cmocka_unit_test_setup_teardown(loading_the_same_file_twice_is_a_noop, setup, teardown),
        cmocka_unit_test_setup_teardown(refuses_a_different_abi_major_naming_both_versions, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(refuses_a_newer_abi_minor_naming_both_versions, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(refuses_a_descriptor_smaller_than_abi_2_0, setup, teardown),
        cmocka_unit_test_setup_teardown(refuses_a_library_without_the_entry_symbol, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(refuses_an_entry_returning_null, setup, teardown),
        cmocka_unit_test_setup_teardown(refuses_a_descriptor_without_apply, setup, teardown),
        cmocka_unit_test_setup_teardown(refuses_a_bad_stage_name, setup, teardown),
        cmocka_unit_test_setup_teardown(refuses_duplicate_option_names, setup, teardown),
        cmocka_unit_test_setup_teardown(refuses_a_cli_flag_for_an_undeclared_option, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(refuses_a_cli_flag_listed_twice, setup, teardown),
        cmocka_unit_test_setup_teardown(refuses_a_malformed_option_default, setup, teardown),
        cmocka_unit_test_setup_teardown(refuses_an_unresolved_symbol_with_the_dlerror_text, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(refuses_a_missing_file, setup, teardown),
        cmocka_unit_test_setup_teardown(refuses_a_stage_name_from_two_files_naming_both, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(loads_a_directory_in_name_order, setup, teardown),
        cmocka_unit_test_setup_teardown(a_missing_directory_fails_only_when_required, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(earlier_search_path_directories_shadow_later_ones, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_missing_plugin_dir_option_is_an_error, setup, teardown),
        cmocka_unit_test_setup_teardown(orders_stages_after_what_they_need, setup, teardown),
        cmocka_unit_test_setup_teardown(ordering_refuses_a_need_missing_from_the_pipeline, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(ordering_refuses_a_need_no_plugin_provides, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(ordering_refuses_a_cycle_naming_it, setup, teardown),
        cmocka_unit_test_setup_teardown(ordering_refuses_an_unknown_stage, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
