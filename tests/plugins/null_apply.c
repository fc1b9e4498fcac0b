/* A descriptor without apply. */
#include "fixture.h"

static const ol_plugin desc = {
    .abi_major = OL_ABI_MAJOR,
    .abi_minor = OL_ABI_MINOR,
    .struct_size = sizeof(ol_plugin),
    .name = "null_apply",
    .version = "1.0.0",
};

FIXTURE_ENTRY(desc)
