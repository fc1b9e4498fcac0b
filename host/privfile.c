/* privfile: owns how opsline puts secrets on disk. A write never goes through the target
 * itself: it lands in a fresh 0600 temp file next to it (O_EXCL, random name, so a planted
 * file or link is never reused), is fsync'd and renamed over the target, and the directory
 * is fsync'd so the rename survives a crash (rename(2) is atomic; fsync(2) on the directory
 * is what makes the new entry durable). Reads return the whole file without leaving
 * partial copies of a secret in freed memory. */
#include "privfile.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* Create dir and its missing ancestors, each 0700. Existing directories are left alone. */
static int mkdirs(const char *dir) {
    char *buf = strdup(dir);
    char *p;
    int rc = 0;

    if (buf == NULL)
        return OL_ENOMEM;
    for (p = buf + 1;; p++) {
        char c = *p;
        struct stat st;

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
    free(buf);
    return rc;
}

static int write_all(int fd, const char *data, size_t len) {
    while (len > 0) {
        size_t chunk = len < (size_t)SSIZE_MAX ? len : (size_t)SSIZE_MAX;
        ssize_t n = write(fd, data, chunk);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Open a new temp file "<dir>/.<base>.<16 hex>" exclusively; its name goes to tmp. */
static int open_temp(const char *dir, const char *base, char *tmp, size_t tmp_size) {
    int i;

    for (i = 0; i < PRIVFILE_TMP_TRIES; i++) {
        unsigned char rnd[8];
        char hex[sizeof(rnd) * 2 + 1];
        size_t j;
        int n;
        int fd;

        if (RAND_bytes(rnd, (int)sizeof(rnd)) != 1) {
            errno = EIO;
            return -1;
        }
        for (j = 0; j < sizeof(rnd); j++)
            snprintf(hex + 2 * j, 3, "%02x", rnd[j]);
        n = snprintf(tmp, tmp_size, "%s/.%.*s.%s", dir, PRIVFILE_TMP_BASE_MAX, base, hex);
        if (n < 0 || (size_t)n >= tmp_size) {
            errno = ENAMETOOLONG;
            return -1;
        }
        fd = open(tmp, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd >= 0 || errno != EEXIST)
            return fd;
    }
    return -1;
}

/* fsync the directory so the rename itself is durable. Filesystems that cannot sync a
 * directory say EINVAL; there is nothing more to do on those. */
static int sync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = 0;

    if (fd < 0)
        return -1;
    if (fsync(fd) != 0 && errno != EINVAL)
        rc = -1;
    if (rc != 0) {
        int saved = errno;

        close(fd);
        errno = saved;
        return -1;
    }
    return close(fd);
}

int privfile_write(const char *path, const char *data, size_t len) {
    const char *slash;
    const char *base;
    char *dir = NULL;
    char *tmp = NULL;
    size_t tmp_size;
    int fd = -1;
    int rc;
    int saved;

    if (path == NULL || (data == NULL && len != 0)) {
        errno = EINVAL;
        return OL_EINVAL;
    }
    slash = strrchr(path, '/');
    base = slash != NULL ? slash + 1 : path;
    if (*base == '\0') {
        errno = EINVAL;
        return OL_EINVAL;
    }
    if (slash == NULL)
        dir = strdup(".");
    else if (slash == path)
        dir = strdup("/");
    else
        dir = strndup(path, (size_t)(slash - path));
    if (dir == NULL) {
        errno = ENOMEM;
        return OL_ENOMEM;
    }
    rc = mkdirs(dir);
    if (rc != 0)
        goto fail;

    tmp_size = strlen(dir) + PRIVFILE_TMP_BASE_MAX + 32;
    tmp = malloc(tmp_size);
    if (tmp == NULL) {
        errno = ENOMEM;
        rc = OL_ENOMEM;
        goto fail;
    }
    fd = open_temp(dir, base, tmp, tmp_size);
    if (fd < 0) {
        free(tmp);
        tmp = NULL; /* nothing was created: nothing to unlink */
        rc = code_from_errno();
        goto fail;
    }
    /* The umask cannot add bits, but be explicit: the mode is the point of this file. */
    if (write_all(fd, data, len) != 0 || fchmod(fd, 0600) != 0 || fsync(fd) != 0) {
        rc = code_from_errno();
        goto fail;
    }
    rc = close(fd);
    fd = -1;
    if (rc != 0 || rename(tmp, path) != 0) {
        rc = code_from_errno();
        goto fail;
    }
    free(tmp);
    tmp = NULL;
    rc = sync_dir(dir) == 0 ? 0 : OL_EIO;
    saved = errno;
    free(dir);
    errno = saved;
    return rc;

fail:
    saved = errno;
    if (fd >= 0)
        close(fd);
    if (tmp != NULL) {
        unlink(tmp);
        free(tmp);
    }
    free(dir);
    errno = saved;
    return rc;
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

int privfile_read(const char *path, char **data, size_t *len) {
    struct stat st;
    char *buf = NULL;
    size_t used = 0;
    size_t cap;
    int fd;
    int rc;
    int saved;

    if (path == NULL || data == NULL || len == NULL) {
        errno = EINVAL;
        return OL_EINVAL;
    }
    *data = NULL;
    *len = 0;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? OL_ENOENT : code_from_errno();
    if (fstat(fd, &st) != 0) {
        rc = code_from_errno();
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        errno = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
        rc = OL_EINVAL;
        goto fail;
    }
    if ((uintmax_t)st.st_size > PRIVFILE_MAX_READ) {
        errno = EFBIG;
        rc = OL_ERANGE;
        goto fail;
    }
    cap = (size_t)st.st_size + 1;
    buf = malloc(cap);
    if (buf == NULL) {
        errno = ENOMEM;
        rc = OL_ENOMEM;
        goto fail;
    }
    for (;;) {
        ssize_t n;

        if (used + 1 == cap) {
            /* The file grew since fstat: follow it, within the same bound. */
            if (cap > PRIVFILE_MAX_READ) {
                errno = EFBIG;
                rc = OL_ERANGE;
                goto fail;
            }
            buf = grow_wiped(buf, used, cap * 2);
            cap *= 2;
            if (buf == NULL) {
                errno = ENOMEM;
                rc = OL_ENOMEM;
                goto fail;
            }
        }
        n = read(fd, buf + used, cap - 1 - used);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = code_from_errno();
            goto fail;
        }
        if (n == 0)
            break;
        used += (size_t)n;
    }
    close(fd);
    buf[used] = '\0';
    *data = buf;
    *len = used;
    return 0;

fail:
    saved = errno;
    close(fd);
    if (buf != NULL) {
        OPENSSL_cleanse(buf, used);
        free(buf);
    }
    errno = saved;
    return rc;
}
