/* The entry point returns NULL instead of a descriptor. */
#include "opsline/opsline.h"

OL_EXPORT const ol_plugin *opsline_plugin(void);
const ol_plugin *opsline_plugin(void) {
    return NULL;
}
