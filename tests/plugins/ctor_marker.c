/* A correct stage whose constructor leaves a mark: it creates the file named by
 * OL_TEST_MARKER. The loader's ownership checks must refuse it before dlopen, so the mark
 * tells whether its code ran. */
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "fixture.h"

__attribute__((constructor)) static void leave_mark(void) {
    const char *path = getenv("OL_TEST_MARKER");
    if (path != NULL) {
        int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        if (fd >= 0)
            close(fd);
    }
}

static const ol_plugin desc = {
    .abi_major = OL_ABI_MAJOR,
    .abi_minor = OL_ABI_MINOR,
    .struct_size = sizeof(ol_plugin),
    .name = "ctor_marker",
    .version = "1.0.0",
    .description = "Leaves a mark when loaded",
    .apply = fixture_apply,
};

FIXTURE_ENTRY(desc)
