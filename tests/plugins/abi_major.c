/* Built for a future, incompatible ABI major. */
#include "fixture.h"

static const ol_plugin desc = {
    .abi_major = OL_ABI_MAJOR + 1,
    .abi_minor = 0,
    .struct_size = sizeof(ol_plugin),
    .name = "abi_major",
    .version = "1.0.0",
    .apply = fixture_apply,
};

FIXTURE_ENTRY(desc)
