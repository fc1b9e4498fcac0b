/* A shared object that is not an opsline plugin: no `opsline_plugin` symbol. */
#include "opsline/opsline.h"

OL_EXPORT int not_a_plugin(void);
int not_a_plugin(void) {
    return 42;
}
