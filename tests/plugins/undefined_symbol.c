/* Calls a function no library provides; linked without -Wl,--no-undefined, so only
 * dlopen(RTLD_NOW) finds out. */
#include "fixture.h"

extern int ol_test_function_nobody_defines(void);

static int apply(ol_stage *stage, ol_item *item, void *state) {
    (void)stage;
    (void)item;
    (void)state;
    return ol_test_function_nobody_defines();
}

static const ol_plugin desc = {
    .abi_major = OL_ABI_MAJOR,
    .abi_minor = OL_ABI_MINOR,
    .struct_size = sizeof(ol_plugin),
    .name = "undefined_symbol",
    .version = "1.0.0",
    .apply = apply,
};

FIXTURE_ENTRY(desc)
