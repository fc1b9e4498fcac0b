/* itemlock: see itemlock.h. */
#include "itemlock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"

int itemlock_dir(char **dir, char **err) {
    const char *runtime = getenv("XDG_RUNTIME_DIR");
    *dir = runtime != NULL && runtime[0] == '/'
               ? ol__format("%s/opsline-locks", runtime)
               : ol__format("/tmp/opsline-locks-%lu", (unsigned long)getuid());
    if (*dir == NULL)
        return OL_ENOMEM;
    if (mkdir(*dir, 0700) != 0 && errno != EEXIST)
        return ol__fail(err, OL_ECONFIG, "cannot make the lock directory %s: %s", *dir,
                        strerror(errno));
    struct stat st;
    if (lstat(*dir, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != getuid() ||
        (st.st_mode & 0077) != 0)
        return ol__fail(err, OL_ECONFIG,
                        "the lock directory %s is not a directory of yours with mode 0700 "
                        "(someone else may have made it); remove it, or set XDG_RUNTIME_DIR to "
                        "a private directory",
                        *dir);
    return 0;
}

int itemlock_try(const char *dir, const char *name, int *fd, char **err) {
    char *path = ol__format("%s/%s.lock", dir, name);
    *fd = -1;
    if (path == NULL)
        return OL_ENOMEM;
    int f = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0600);
    if (f < 0) {
        int rc =
            ol__fail(err, OL_ECONFIG, "cannot open the item lock %s: %s", path, strerror(errno));
        free(path);
        return rc;
    }
    free(path);
    if (flock(f, LOCK_EX | LOCK_NB) == 0) {
        *fd = f;
        return 0;
    }
    int e = errno;
    close(f);
    if (e == EWOULDBLOCK)
        return 1;
    return ol__fail(err, OL_ECONFIG, "cannot lock item %s: %s", name, strerror(e));
}

void itemlock_release(int fd) {
    if (fd >= 0)
        close(fd); /* drops the flock */
}
