/* Built twice (a.so, b.so): two files providing the same stage name. */
#include "fixture.h"

static const ol_plugin desc = {
    .abi_major = OL_ABI_MAJOR,
    .abi_minor = OL_ABI_MINOR,
    .struct_size = sizeof(ol_plugin),
    .name = "twin",
    .version = "1.0.0",
    .apply = fixture_apply,
};

FIXTURE_ENTRY(desc)
