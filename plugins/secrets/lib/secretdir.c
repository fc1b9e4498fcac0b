/* secretdir: the world-writable-directory rule for secret files (see secretdir.h). */
#include "secretdir.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Cuts dir (a copy of a path) to its parent in place; 0 when there is none left. */
static int to_parent(char *dir) {
    char *slash = strrchr(dir, '/');
    if (slash == NULL) {
        if (strcmp(dir, ".") == 0)
            return 0;
        strcpy(dir, ".");
    } else if (slash == dir) {
        if (dir[1] == '\0')
            return 0;
        dir[1] = '\0';
    } else {
        *slash = '\0';
    }
    return 1;
}

char *secretdir_parent(const char *file) {
    char *dir = strdup(file);
    if (dir != NULL)
        to_parent(dir);
    return dir;
}

int secretdir_check(const char *file, char *why, size_t size) {
    why[0] = '\0';
    char *dir = strdup(file);
    if (dir == NULL)
        return 0; /* the write that follows will fail with ENOMEM on its own */
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/')
        dir[--len] = '\0';
    struct stat st;
    int rc = 0;
    while (to_parent(dir)) {
        if (stat(dir, &st) != 0) {
            if (errno == ENOENT)
                continue;
            break; /* unreadable: the write reports it */
        }
        if (!S_ISDIR(st.st_mode) || (st.st_mode & S_IWOTH) == 0)
            break;
        if ((st.st_mode & S_ISVTX) == 0) {
            snprintf(why, size,
                     "directory %s is writable by every user and not sticky, so anyone could "
                     "replace %s and read the secret: chmod o-w %s, or choose a private "
                     "directory",
                     dir, file, dir);
            rc = -1;
        } else {
            snprintf(why, size,
                     "directory %s is writable by every user (sticky, so the file itself is "
                     "safe, but a private directory is better for %s)",
                     dir, file);
            rc = 1;
        }
        break;
    }
    free(dir);
    return rc;
}
