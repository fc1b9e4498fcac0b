/* Creates keys (OL_STAGE_CREATES_SECRETS) but needs the dotenv store: a store can only run
 * after keys exist, so the pipeline must be refused before any request. */
#include "fixture.h"

static const char *const needs[] = {"dotenv", NULL};

static const ol_plugin desc = {
    .abi_major = OL_ABI_MAJOR,
    .abi_minor = OL_ABI_MINOR,
    .struct_size = sizeof(ol_plugin),
    .name = "creator_needs_store",
    .version = "1.0.0",
    .needs = needs,
    .flags = OL_STAGE_CREATES_SECRETS,
    .apply = fixture_apply,
};

FIXTURE_ENTRY(desc)
