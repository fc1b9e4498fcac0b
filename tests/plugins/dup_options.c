/* Declares the same option twice. */
#include "fixture.h"

static const ol_option_def options[] = {
    {"region", OL_OPT_STRING, NULL, "Region", 0, 0},
    {"region", OL_OPT_STRING, NULL, "Region again", 0, 0},
};

static const ol_plugin desc = {
    .abi_major = OL_ABI_MAJOR,
    .abi_minor = OL_ABI_MINOR,
    .struct_size = sizeof(ol_plugin),
    .name = "dup_options",
    .version = "1.0.0",
    .options = options,
    .n_options = 2,
    .option_size = sizeof(ol_option_def),
    .apply = fixture_apply,
};

FIXTURE_ENTRY(desc)
