/* Built for a newer minor than the host has: it may use host functions the host lacks. */
#include "fixture.h"

static const ol_plugin desc = {
    .abi_major = OL_ABI_MAJOR,
    .abi_minor = OL_ABI_MINOR + 1,
    .struct_size = sizeof(ol_plugin),
    .name = "abi_minor",
    .version = "1.0.0",
    .apply = fixture_apply,
};

FIXTURE_ENTRY(desc)
