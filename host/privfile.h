/* privfile: files only their owner may read (secrets: .env files, key stores, exports),
 * written atomically and durably, and read back whole. */
#ifndef OL_PRIVFILE_H
#define OL_PRIVFILE_H

#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#include "opsline/opsline.h"

/* Replace path with exactly len bytes of data, mode 0600, atomically: missing parent
 * directories are created 0700, the data goes to a new temp file in the same directory
 * (O_EXCL, 0600, ".<name>.opsline-tmp", locked with flock until renamed; a random name
 * while another process writes the same path), is fsync'd, then renamed over path, and the
 * directory is fsync'd. A temp file of path that a crash left behind (no lock held) is
 * removed first. Readers see either the old file or the new one, never a mix; on error the temp
 * file is removed and the old file, if any, is untouched. data is borrowed for the call and
 * may be NULL when len is 0.
 *
 * If path is a symbolic link, the link itself is replaced by a regular file and the file it
 * pointed to is left as it was. That is deliberate: a secret is never written through a link
 * someone else may have planted.
 *
 * Returns 0, OL_EINVAL (bad arguments), OL_ENOMEM, or OL_EIO with errno telling why
 * (EACCES, ENOSPC, EISDIR, ...). OL_EIO from the final directory fsync means the new file is
 * in place but not known to be durable. */
int privfile_write(const char *path, const char *data, size_t len);

/* privfile_write that never replaces: when path exists by the time the new file would take
 * its place, nothing changes and the result is OL_EEXIST (errno EEXIST). The check and the
 * placing are one atomic step (renameat2 with RENAME_NOREPLACE, or link(2) where the
 * filesystem lacks it), so of two writers that both found path absent exactly one
 * succeeds, and the other can read what the first wrote and merge into it (under a lock,
 * with privfile_write). A symbolic link at path counts as existing. */
int privfile_create(const char *path, const char *data, size_t len);

/* Open path with open(2)'s oflags and mode, but only if what it names is a regular file:
 * a FIFO cannot hang the open (it is opened O_NONBLOCK, checked with fstat, and only then
 * made blocking), and a directory, FIFO, socket or device is refused (/dev/null excepted: it
 * reads as an empty file, the usual way to say "no such file"). Add O_NOFOLLOW to
 * oflags to refuse a symbolic link at path as well. O_CLOEXEC is always added. Pass O_TRUNC
 * only with O_NOFOLLOW (or on a path nobody else can write): the truncation happens in the
 * open, before the type is known. Returns 0 and *fd, OL_ENOENT, OL_EINVAL (not a regular
 * file; errno says what it is, for privfile_strerror: ELOOP a link, EISDIR a directory,
 * ENXIO a FIFO, socket or device), OL_ENOMEM or OL_EIO with errno set. */
int privfile_open(const char *path, int oflags, mode_t mode, int *fd);

/* fopen(path, "r") for a regular file only (privfile_open with O_RDONLY: links are
 * followed, a FIFO, socket, device or directory is refused). NULL with errno set on failure:
 * ENOENT when path does not exist, EISDIR or ENXIO when it is not a regular file. */
FILE *privfile_fopen(const char *path);

/* A user-facing phrase for an errno from privfile_open or privfile_read, saying what the
 * path is and what to do when it is not a regular file ("is a FIFO, socket or device, not a
 * regular file: ..."), strerror(e) otherwise. Static storage. */
const char *privfile_strerror(int e);

/* Read the whole file into *data (malloc'd, NUL-terminated for convenience; *len excludes
 * the NUL). The caller frees it, after OPENSSL_cleanse if it holds a secret; no partial
 * copies are left behind in freed memory. Returns 0, OL_ENOENT when path does not exist,
 * OL_EINVAL (bad arguments or not a regular file), OL_ERANGE (over 64 MiB), OL_ENOMEM, or
 * OL_EIO with errno set. */
int privfile_read(const char *path, char **data, size_t *len);

/* privfile_read that also refuses a symbolic link at path (OL_EINVAL, errno ELOOP): for
 * files opsline itself owns, where a link can only have been planted. */
int privfile_read_nofollow(const char *path, char **data, size_t *len);

/* The file-system steps privfile_write is made of, for other owners of durable files (the
 * journal). Each returns 0 or a negative code with errno telling why. */

/* Create dir and its missing ancestors, each mode 0700 whatever the umask; existing
 * directories are left as they are. OL_EIO (errno ENOTDIR) when a part is not a directory. */
int privfile_mkdirs(const char *dir);

/* Write all len bytes to fd, retrying short writes and EINTR. OL_EIO on failure. */
int privfile_write_all(int fd, const char *data, size_t len);

/* Give the temp file tmp (fsync'd, open as tmp_fd) the name path if path does not exist:
 * renameat2(RENAME_NOREPLACE), or with by_link (and where the filesystem lacks that flag)
 * link(2) and the temp name's unlink. 0, or -1 with errno (EEXIST: path exists; tmp is then
 * left for the caller to remove). privfile_create's last step, public for its tests. */
int privfile_place_new(const char *tmp, const char *path, int tmp_fd, int by_link);

/* fsync the directory dir so that an entry created or renamed in it is durable.
 * Filesystems that cannot sync a directory say EINVAL: that counts as done. OL_EIO on
 * failure. */
int privfile_sync_dir(const char *dir);

#endif
