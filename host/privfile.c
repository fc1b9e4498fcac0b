/* privfile: owns how opsline puts secrets on disk. A write never goes through the target
 * itself: it lands in a fresh 0600 temp file next to it (O_EXCL, random name, so a planted
 * file or link is never reused), is fsync'd and renamed over the target, and the directory
 * is fsync'd so the rename survives a crash (rename(2) is atomic; fsync(2) on the directory
 * is what makes the new entry durable). privfile_create places the temp file only where
 * nothing is (renameat2 RENAME_NOREPLACE, or link), for writers that merge into shared files
 * without holding a lock across the fsyncs. A temp file a crash left behind is removed by the
 * next write of the same target. Reads return the whole file without leaving
 * partial copies of a secret in freed memory. */
#define _GNU_SOURCE /* renameat2, RENAME_NOREPLACE */
#include "privfile.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#define PRIVFILE_MAX_READ ((size_t)64 * 1024 * 1024)
/* Keep temp names under NAME_MAX even for long targets. */
#define PRIVFILE_TMP_BASE_MAX 64
#define PRIVFILE_TMP_TRIES 16

static int code_from_errno(void) {
    return errno == ENOMEM ? OL_ENOMEM : OL_EIO;
}

/* Returns code with errno set to e: the errno of a failure survives the cleanup after it. */
static int fail_errno(int code, int e) {
    errno = e;
    return code;
}

int privfile_mkdirs(const char *dir) {
    char *buf = strdup(dir);
    if (buf == NULL)
        return fail_errno(OL_ENOMEM, ENOMEM);
    int rc = 0;
    for (char *p = buf + 1;; p++) {
        char c = *p;
        if (c != '/' && c != '\0')
            continue;
        *p = '\0';
        if (mkdir(buf, 0700) == 0) {
            /* The umask may have taken owner bits away; we need exactly 0700. */
            if (chmod(buf, 0700) != 0) {
                rc = code_from_errno();
                break;
            }
        } else {
            int saved = errno;
            struct stat st;
            if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode)) {
                errno = saved == EEXIST ? ENOTDIR : saved;
                rc = OL_EIO;
                break;
            }
        }
        *p = c;
        if (c == '\0')
            break;
    }
    int saved = errno;
    free(buf);
    errno = saved;
    return rc;
}

int privfile_write_all(int fd, const char *data, size_t len) {
    while (len > 0) {
        size_t chunk = len < (size_t)SSIZE_MAX ? len : (size_t)SSIZE_MAX;
        ssize_t n = write(fd, data, chunk);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return OL_EIO;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Filesystems that cannot sync a directory say EINVAL; there is nothing more to do on
 * those. */
int privfile_sync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return OL_EIO;
    if (fsync(fd) != 0 && errno != EINVAL) {
        int saved = errno;
        close(fd);
        return fail_errno(OL_EIO, saved);
    }
    return close(fd) == 0 ? 0 : OL_EIO;
}

/* Open a new temp file "<dir>/.<base>.<16 hex>" exclusively; its name goes to tmp. */
static int open_random_temp(const char *dir, const char *base, char *tmp, size_t tmp_size) {
    for (int i = 0; i < PRIVFILE_TMP_TRIES; i++) {
        unsigned char rnd[8];
        char hex[sizeof(rnd) * 2 + 1];
        if (RAND_bytes(rnd, (int)sizeof(rnd)) != 1) {
            errno = EIO;
            return -1;
        }
        for (size_t j = 0; j < sizeof(rnd); j++)
            snprintf(hex + 2 * j, 3, "%02x", rnd[j]);
        int n = snprintf(tmp, tmp_size, "%s/.%.*s.%s", dir, PRIVFILE_TMP_BASE_MAX, base, hex);
        if (n < 0 || (size_t)n >= tmp_size) {
            errno = ENAMETOOLONG;
            return -1;
        }
        int fd = open(tmp, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd >= 0 || errno != EEXIST)
            return fd;
    }
    return -1;
}

/* Nonzero when path names the file open as fd (not a link, not a file put in its place). */
static int is_open_file(int fd, const char *path) {
    struct stat a, b;
    return fstat(fd, &a) == 0 && lstat(path, &b) == 0 && a.st_dev == b.st_dev &&
           a.st_ino == b.st_ino;
}

/* The temp file at path was left by a writer that died before its rename (kill -9, power
 * loss): it is ours (a regular file of this user) and nobody holds its lock. Removes it and
 * returns 0; -1 when it is not stale (a live writer holds it) or not ours to remove. */
static int remove_stale_temp(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return errno == ENOENT ? 0 : -1; /* gone meanwhile: try again */
    struct stat st;
    int rc = -1;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() &&
        flock(fd, LOCK_EX | LOCK_NB) == 0 && is_open_file(fd, path))
        rc = unlink(path) == 0 || errno == ENOENT ? 0 : -1;
    close(fd);
    return rc;
}

/* The temp file of a write, open and locked (flock) until the caller has renamed it: the
 * same name for the same target, "<dir>/.<base>.opsline-tmp", so a crash between create and
 * rename leaves a file the next write of that target finds, unlocked, and removes. While
 * another process writes the same target, a random name "<dir>/.<base>.<16 hex>" instead. */
static int open_temp(const char *dir, const char *base, char *tmp, size_t tmp_size) {
    int n = snprintf(tmp, tmp_size, "%s/.%.*s.opsline-tmp", dir, PRIVFILE_TMP_BASE_MAX, base);
    if (n < 0 || (size_t)n >= tmp_size) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (int i = 0; i < PRIVFILE_TMP_TRIES; i++) {
        int fd = open(tmp, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd >= 0) {
            /* Another run may have taken it for stale between the open and the lock. */
            if (flock(fd, LOCK_EX | LOCK_NB) == 0 && is_open_file(fd, tmp))
                return fd;
            close(fd);
            continue;
        }
        if (errno != EEXIST || remove_stale_temp(tmp) != 0)
            break;
    }
    return open_random_temp(dir, base, tmp, tmp_size);
}

/* The directory part of path (malloc'd: "." or "/" when path has none) and its last
 * component (borrowed). OL_EINVAL when path ends in '/'. */
static int split_path(const char *path, char **dir, const char **base) {
    const char *slash = strrchr(path, '/');
    *base = slash != NULL ? slash + 1 : path;
    if (**base == '\0')
        return fail_errno(OL_EINVAL, EINVAL);
    if (slash == NULL)
        *dir = strdup(".");
    else if (slash == path)
        *dir = strdup("/");
    else
        *dir = strndup(path, (size_t)(slash - path));
    return *dir != NULL ? 0 : fail_errno(OL_ENOMEM, ENOMEM);
}

/* Write data to a new 0600 temp file in dir, fsync'd; its name (malloc'd) goes to *tmp and
 * its descriptor, still open (its lock held until the rename), to *fd. On failure nothing
 * is left behind and *tmp is NULL. */
static int write_temp(const char *dir, const char *base, const char *data, size_t len, char **tmp,
                      int *fd_out) {
    size_t tmp_size = strlen(dir) + PRIVFILE_TMP_BASE_MAX + 32;
    if ((*tmp = malloc(tmp_size)) == NULL)
        return fail_errno(OL_ENOMEM, ENOMEM);
    int fd = open_temp(dir, base, *tmp, tmp_size);
    if (fd < 0) {
        int saved = errno;
        free(*tmp);
        *tmp = NULL; /* nothing was created: nothing to unlink */
        return fail_errno(saved == ENOMEM ? OL_ENOMEM : OL_EIO, saved);
    }
    /* The umask cannot add bits, but be explicit: the mode is the point of this file. */
    int rc = privfile_write_all(fd, data, len) != 0 || fchmod(fd, 0600) != 0 || fsync(fd) != 0
                 ? code_from_errno()
                 : 0;
    int saved = errno;
    if (rc != 0) {
        unlink(*tmp);
        close(fd);
        free(*tmp);
        *tmp = NULL;
    }
    *fd_out = rc == 0 ? fd : -1;
    errno = saved;
    return rc;
}

/* Put the fsync'd temp file (open as tmp_fd) at path only if nothing is there. */
int privfile_place_new(const char *tmp, const char *path, int tmp_fd, int by_link) {
    if (!by_link) {
        if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0)
            return 0;
        if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
            return -1;
    }
    /* No RENAME_NOREPLACE here (NFS, some FUSE filesystems): link(2) refuses an existing
     * name just as atomically; the temp name then goes. Over NFS a link whose reply was
     * lost is retried and answered EEXIST although it was made: the temp file then has two
     * names, and that is a success. */
    struct stat st;
    if (link(tmp, path) != 0 && !(errno == EEXIST && fstat(tmp_fd, &st) == 0 && st.st_nlink == 2 &&
                                  is_open_file(tmp_fd, path)))
        return -1;
    unlink(tmp);
    return 0;
}

/* privfile_write (create_only 0) and privfile_create (1). */
static int write_into_place(const char *path, const char *data, size_t len, int create_only) {
    if (path == NULL || (data == NULL && len != 0))
        return fail_errno(OL_EINVAL, EINVAL);
    char *dir = NULL;
    const char *base = NULL;
    int rc = split_path(path, &dir, &base);
    if (rc != 0)
        return rc;
    char *tmp = NULL;
    int fd = -1;
    if ((rc = privfile_mkdirs(dir)) == 0 &&
        (rc = write_temp(dir, base, data, len, &tmp, &fd)) == 0) {
        int placed = create_only ? privfile_place_new(tmp, path, fd, 0) : rename(tmp, path);
        if (placed != 0) {
            int saved = errno;
            rc = saved == EEXIST && create_only ? OL_EEXIST : code_from_errno();
            unlink(tmp);
            errno = saved;
        } else {
            rc = privfile_sync_dir(dir);
        }
        /* Closed after the rename: until then the lock says the temp file is in use. A
         * close error after fsync tells nothing new about the data. */
        int saved = errno;
        close(fd);
        errno = saved;
    }
    int saved = errno;
    free(tmp);
    free(dir);
    errno = saved;
    return rc;
}

int privfile_write(const char *path, const char *data, size_t len) {
    return write_into_place(path, data, len, 0);
}

int privfile_create(const char *path, const char *data, size_t len) {
    return write_into_place(path, data, len, 1);
}

/* Grow buf to cap bytes without leaving the old copy in freed memory. */
static char *grow_wiped(char *buf, size_t used, size_t cap) {
    char *p = malloc(cap);
    if (p != NULL && used > 0)
        memcpy(p, buf, used);
    OPENSSL_cleanse(buf, used);
    free(buf);
    return p;
}

/* What st is, when it is not a regular file: the errno privfile_open reports for it. */
static int not_regular_errno(const struct stat *st) {
    return S_ISDIR(st->st_mode) ? EISDIR : ENXIO;
}

/* /dev/null reads as an empty file: AWS_CONFIG_FILE=/dev/null is the usual way to say
 * "no config file", and it cannot hang or flood a read. */
static int is_dev_null(const struct stat *st) {
    struct stat null;
    return S_ISCHR(st->st_mode) && stat("/dev/null", &null) == 0 && S_ISCHR(null.st_mode) &&
           null.st_rdev == st->st_rdev;
}

int privfile_open(const char *path, int oflags, mode_t mode, int *fd) {
    *fd = -1;
    if (path == NULL)
        return fail_errno(OL_EINVAL, EINVAL);
    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever. */
    int f = open(path, oflags | O_NONBLOCK | O_CLOEXEC, mode);
    if (f < 0) {
        if (errno == ENOENT)
            return OL_ENOENT;
        /* O_NOFOLLOW on a link says ELOOP; a FIFO opened O_WRONLY without a reader, ENXIO. */
        return errno == ELOOP || errno == ENXIO ? OL_EINVAL : code_from_errno();
    }
    struct stat st;
    int rc = 0, e = 0;
    if (fstat(f, &st) != 0)
        rc = code_from_errno(), e = errno;
    else if (!S_ISREG(st.st_mode) && !is_dev_null(&st))
        rc = OL_EINVAL, e = not_regular_errno(&st);
    else if (fcntl(f, F_SETFL, fcntl(f, F_GETFL) & ~O_NONBLOCK) != 0)
        rc = code_from_errno(), e = errno;
    if (rc != 0) {
        close(f);
        return fail_errno(rc, e);
    }
    *fd = f;
    return 0;
}

const char *privfile_strerror(int e) {
    switch (e) {
    case ELOOP:
        return "is a symbolic link, which opsline does not follow here: remove it or use the "
               "real file's path";
    case EISDIR:
        return "is a directory, not a regular file: remove it or choose another path";
    case ENXIO:
        return "is a FIFO, socket or device, not a regular file: remove it or choose another "
               "path";
    default:
        return strerror(e);
    }
}

/* Open path for reading and check it is a regular file within the size limit; *size is
 * its size now. Returns 0 or privfile_read's codes, errno set, nothing left open. */
static int open_regular(const char *path, int oflags, int *fd, size_t *size) {
    int rc = privfile_open(path, O_RDONLY | oflags, 0, fd);
    if (rc != 0)
        return rc;
    struct stat st;
    if (fstat(*fd, &st) != 0)
        rc = code_from_errno();
    else if ((uintmax_t)st.st_size > PRIVFILE_MAX_READ)
        rc = OL_ERANGE, errno = EFBIG;
    if (rc != 0) {
        int e = errno;
        close(*fd);
        *fd = -1;
        return fail_errno(rc, e);
    }
    *size = (size_t)st.st_size;
    return 0;
}

/* Read fd to its end into *buf (malloc'd, room for a NUL; *used bytes read), starting with
 * room for size bytes and following a file that grows, within the same bound. On failure
 * *buf holds what was read so far, for the caller to wipe. */
static int read_to_end(int fd, size_t size, char **buf, size_t *used) {
    size_t cap = size + 1;
    *used = 0;
    if ((*buf = malloc(cap)) == NULL)
        return fail_errno(OL_ENOMEM, ENOMEM);
    for (;;) {
        if (*used + 1 == cap) {
            if (cap > PRIVFILE_MAX_READ)
                return fail_errno(OL_ERANGE, EFBIG);
            *buf = grow_wiped(*buf, *used, cap * 2);
            cap *= 2;
            if (*buf == NULL) {
                *used = 0;
                return fail_errno(OL_ENOMEM, ENOMEM);
            }
        }
        ssize_t n = read(fd, *buf + *used, cap - 1 - *used);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return code_from_errno();
        if (n == 0)
            return 0;
        *used += (size_t)n;
    }
}

static int read_whole(const char *path, int oflags, char **data, size_t *len) {
    if (path == NULL || data == NULL || len == NULL)
        return fail_errno(OL_EINVAL, EINVAL);
    *data = NULL;
    *len = 0;
    int fd;
    size_t size = 0;
    int rc = open_regular(path, oflags, &fd, &size);
    if (rc != 0)
        return rc;
    char *buf = NULL;
    size_t used = 0;
    rc = read_to_end(fd, size, &buf, &used);
    int saved = errno;
    close(fd);
    if (rc != 0) {
        if (buf != NULL) {
            OPENSSL_cleanse(buf, used);
            free(buf);
        }
        return fail_errno(rc, saved);
    }
    buf[used] = '\0';
    *data = buf;
    *len = used;
    return 0;
}

int privfile_read(const char *path, char **data, size_t *len) {
    return read_whole(path, 0, data, len);
}

int privfile_read_nofollow(const char *path, char **data, size_t *len) {
    return read_whole(path, O_NOFOLLOW, data, len);
}

FILE *privfile_fopen(const char *path) {
    int fd;
    if (privfile_open(path, O_RDONLY, 0, &fd) != 0)
        return NULL;
    FILE *f = fdopen(fd, "r");
    if (f == NULL) {
        int saved = errno;
        close(fd);
        errno = saved;
    }
    return f;
}
