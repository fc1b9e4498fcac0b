/* fixture: shared pieces of the test plugins, each of which gets one thing wrong (or, for
 * good.c and friends, everything right) so test_loader can check the host's refusal. */
#ifndef OL_TEST_FIXTURE_H
#define OL_TEST_FIXTURE_H

#include "opsline/opsline.h"

/* Never called by the loader tests: they only load, validate and order. */
static inline int fixture_apply(ol_stage *stage, ol_item *item, void *state) {
    (void)stage;
    (void)item;
    (void)state;
    return OL_EINVAL;
}

#define FIXTURE_ENTRY(desc)                                                                        \
    OL_EXPORT const ol_plugin *opsline_plugin(void);                                               \
    const ol_plugin *opsline_plugin(void) {                                                        \
        return &(desc);                                                                            \
    }

#endif
