/* itemlock: see itemlock.h. */
#define _GNU_SOURCE /* F_OFD_SETLK */
#include "itemlock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"

#define ITEMLOCK_FILE "items.lock"

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

int itemlock_open(const char *dir, int *fd, char **err) {
    char *path = ol__format("%s/%s", dir, ITEMLOCK_FILE);
    *fd = -1;
    if (path == NULL)
        return OL_ENOMEM;
    int f = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0600);
    int rc = 0;
    if (f < 0)
        rc = ol__fail(err, OL_ECONFIG, "cannot open the item lock file %s: %s", path,
                      strerror(errno));
    else
        *fd = f;
    free(path);
    return rc;
}

/* FNV-1a over the name, folded to 62 bits: the lock byte's offset stays a positive off_t. */
uint64_t itemlock_offset(const char *name) {
    uint64_t h = 14695981039346656037ull;
    for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++) {
        h ^= *p;
        h *= 1099511628211ull;
    }
    return (h ^ (h >> 62)) & ((UINT64_C(1) << 62) - 1);
}

static int set_lock(int fd, const char *name, short type) {
    struct flock fl;
    memset(&fl, 0, sizeof(fl)); /* l_pid must be 0 for OFD locks */
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_start = (off_t)itemlock_offset(name);
    fl.l_len = 1;
    return fcntl(fd, F_OFD_SETLK, &fl);
}

int itemlock_try(int fd, const char *name, char **err) {
    if (set_lock(fd, name, F_WRLCK) == 0)
        return 0;
    if (errno == EAGAIN || errno == EACCES)
        return 1;
    return ol__fail(err, OL_ECONFIG, "cannot lock item %s: %s", name, strerror(errno));
}

void itemlock_release(int fd, const char *name) {
    if (fd >= 0)
        (void)set_lock(fd, name, F_UNLCK);
}
