/* secretdir: whether a directory may hold a file with a secret in it. The rule is ssh's
 * (StrictModes) applied to the one risk a store's atomic replace does not cover: a directory
 * every user may write. Without the sticky bit any user can rename, delete or replace the
 * file (and read the next secret from a file they planted), so it is refused; with it (/tmp)
 * they cannot touch a file that is not theirs, so it is only worth a warning. A group-writable
 * directory is accepted: shared deploy directories are made so on purpose. */
#ifndef OL_SECRETS_SECRETDIR_H
#define OL_SECRETS_SECRETDIR_H

#include <stddef.h>

/* Checks the directory file (a path) will be written in: its parent, or the nearest
 * ancestor that exists (the missing ones are created 0700). Returns 0 when it is fine, 1
 * with a warning in why, or -1 with the reason for a refusal in why (which names the
 * directory and the fix). why is always NUL-terminated. Thread-safe. */
int secretdir_check(const char *file, char *why, size_t size);

/* The directory a file path is in ("." for a bare name, "/" at the root), malloc'd; NULL
 * when out of memory. Thread-safe. */
char *secretdir_parent(const char *file);

#endif
