/* Needs a stage no plugin provides. */
#include "fixture.h"

static const char *const needs[] = {"nonexistent", NULL};

static const ol_plugin desc = {
    .abi_major = OL_ABI_MAJOR,
    .abi_minor = OL_ABI_MINOR,
    .struct_size = sizeof(ol_plugin),
    .name = "missing_need",
    .version = "1.0.0",
    .needs = needs,
    .apply = fixture_apply,
};

FIXTURE_ENTRY(desc)
