/* Claims a descriptor smaller than ABI 2.0's. */
#include "fixture.h"

static const ol_plugin desc = {
    .abi_major = OL_ABI_MAJOR,
    .abi_minor = OL_ABI_MINOR,
    .struct_size = 3 * sizeof(uint32_t),
    .name = "small_struct",
    .version = "1.0.0",
    .apply = fixture_apply,
};

FIXTURE_ENTRY(desc)
