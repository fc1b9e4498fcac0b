/* A stage named STAGE that needs NEED (when defined), built several times: ping needs pong
 * and pong needs ping (a cycle); third needs second needs first (a chain). */
#include "fixture.h"

#ifdef NEED
static const char *const needs[] = {NEED, NULL};
#define NEEDS needs
#else
#define NEEDS NULL
#endif

static const ol_plugin desc = {
    .abi_major = OL_ABI_MAJOR,
    .abi_minor = OL_ABI_MINOR,
    .struct_size = sizeof(ol_plugin),
    .name = STAGE,
    .version = "1.0.0",
    .needs = NEEDS,
    .apply = fixture_apply,
};

FIXTURE_ENTRY(desc)
