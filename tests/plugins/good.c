/* A minimal correct stage with one option of every type. */
#include "fixture.h"

#ifndef GOOD_VERSION
#define GOOD_VERSION "1.2.3" /* the shadow case builds it again as 9.9.9 */
#endif

static const ol_option_def options[] = {
    {"greeting", OL_OPT_STRING, "hello", "What to say", 0, 0},
    {"loud", OL_OPT_BOOL, "false", "Shout", 0, 0},
    {"count", OL_OPT_INT, "3", "How many times", 0, 0},
    {"names", OL_OPT_LIST, "a,b", "Who to greet", 0, 0},
    {"tags", OL_OPT_OBJECT, "team=ops", "Tags", 0, 0},
    {"token", OL_OPT_STRING, NULL, "API token", 1, 0},
};

static const ol_plugin desc = {
    .abi_major = OL_ABI_MAJOR,
    .abi_minor = OL_ABI_MINOR,
    .struct_size = sizeof(ol_plugin),
    .name = "good",
    .version = GOOD_VERSION,
    .description = "A well-behaved test stage",
    .options = options,
    .n_options = sizeof(options) / sizeof(options[0]),
    .option_size = sizeof(ol_option_def),
    .apply = fixture_apply,
};

FIXTURE_ENTRY(desc)
