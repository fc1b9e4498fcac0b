/* itemlock: one item at a time across opsline processes. Two runs on the same machine (a
 * second terminal, a cron job, a CI retry), even with different state directories, would
 * otherwise both find no key for a user and both create one, and a shared .env would keep
 * only one of the secrets. A run that changes things takes an advisory lock per item name
 * before the item starts and drops it when the item ends (its keys stored), so the second
 * run finds the first one's key and creates none.
 *
 * All the locks live in one file, <dir>/items.lock, never unlinked: an item's lock is an
 * open-file-description record lock (F_OFD_SETLK) on one byte of it, at an offset hashed
 * from the item name (62 bits, so two names sharing a byte is not a practical concern). The
 * kernel drops a run's locks when it exits, however it exits. No file is made per item, so
 * a batch of 10,000 items creates no inode and leaves nothing behind. <dir> is
 * $XDG_RUNTIME_DIR/opsline-locks, else /tmp/opsline-locks-<uid>: a directory of the user's
 * own, mode 0700, not a link. */
#ifndef OL_ITEMLOCK_H
#define OL_ITEMLOCK_H

#include <stdint.h>

/* The lock directory, made if missing and checked (owned by us, 0700, a real directory).
 * Returns 0 with a malloc'd *dir, or OL_ECONFIG with a malloc'd *err naming it and the fix. */
int itemlock_dir(char **dir, char **err);

/* Opens (creating) the lock file in dir. Returns 0 with *fd, or OL_ECONFIG with *err. */
int itemlock_open(const char *dir, int *fd, char **err);

/* The byte of the lock file that stands for item name. */
uint64_t itemlock_offset(const char *name);

/* Take the lock of item name on the lock file fd without waiting. Returns 0 when held, 1
 * when another process (or another open of the file) holds it, or a negative OL_E* code
 * with a malloc'd *err. */
int itemlock_try(int fd, const char *name, char **err);

/* Drop the lock of item name taken by itemlock_try on fd. */
void itemlock_release(int fd, const char *name);

#endif
