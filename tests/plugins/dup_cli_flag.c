/* Lists the command-line flag --env-file twice. */
#include "fixture.h"

static const ol_option_def options[] = {
    {"dir", OL_OPT_STRING, NULL, "Directory", 0, 0},
};

static const ol_cli_flag cli_flags[] = {{"env-file", "dir"}, {"env-file", "dir"}, {NULL, NULL}};

static const ol_plugin desc = {
    .abi_major = OL_ABI_MAJOR,
    .abi_minor = OL_ABI_MINOR,
    .struct_size = sizeof(ol_plugin),
    .name = "dup_cli_flag",
    .version = "1.0.0",
    OL_OPTIONS(options),
    .apply = fixture_apply,
    .cli_flags = cli_flags,
};

FIXTURE_ENTRY(desc)
