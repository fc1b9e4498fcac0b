/* itemlock: one item at a time across opsline processes. Two runs on the same machine (a
 * second terminal, a cron job, a CI retry), even with different state directories, would
 * otherwise both find no key for a user and both create one, and a shared .env would keep
 * only one of the secrets. A run that changes things takes an advisory lock per item name
 * before the item starts and drops it when the item ends (its keys stored), so the second
 * run finds the first one's key and creates none.
 *
 * The locks are files <dir>/<item name>.lock (flock; never unlinked, so no lock is ever
 * held on a file another process has just replaced), in $XDG_RUNTIME_DIR/opsline-locks,
 * else /tmp/opsline-locks-<uid>: a directory of the user's own, mode 0700, not a link. */
#ifndef OL_ITEMLOCK_H
#define OL_ITEMLOCK_H

/* The lock directory, made if missing and checked (owned by us, 0700, a real directory).
 * Returns 0 with a malloc'd *dir, or OL_ECONFIG with a malloc'd *err naming it and the fix. */
int itemlock_dir(char **dir, char **err);

/* Take the lock of item name in dir without waiting. Returns 0 with *fd holding it, 1 when
 * another process holds it, or a negative OL_E* code with a malloc'd *err. */
int itemlock_try(const char *dir, const char *name, int *fd, char **err);

/* Drop a lock taken by itemlock_try (fd < 0: none). */
void itemlock_release(int fd);

#endif
