/* A stage name outside [a-z0-9_-]{1,32}. */
#include "fixture.h"

static const ol_plugin desc = {
    .abi_major = OL_ABI_MAJOR,
    .abi_minor = OL_ABI_MINOR,
    .struct_size = sizeof(ol_plugin),
    .name = "Bad Name!",
    .version = "1.0.0",
    .apply = fixture_apply,
};

FIXTURE_ENTRY(desc)
