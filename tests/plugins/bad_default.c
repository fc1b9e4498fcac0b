/* An int option whose declared default is not an integer. */
#include "fixture.h"

static const ol_option_def options[] = {
    {"retries", OL_OPT_INT, "lots", "How many retries", 0, 0},
};

static const ol_plugin desc = {
    .abi_major = OL_ABI_MAJOR,
    .abi_minor = OL_ABI_MINOR,
    .struct_size = sizeof(ol_plugin),
    .name = "bad_default",
    .version = "1.0.0",
    .options = options,
    .n_options = 1,
    .option_size = sizeof(ol_option_def),
    .apply = fixture_apply,
};

FIXTURE_ENTRY(desc)
