/* loader: finds stage plugins (.so), dlopens them RTLD_NOW|RTLD_LOCAL, checks the ABI of
 * their descriptor and keeps a registry by stage name. Refuses, naming the file and both
 * versions, a different ABI major or a newer minor, a missing entry symbol, a bad
 * descriptor (NULL name, struct too small, apply missing, bad option declarations) and a
 * stage name already loaded from another file. */
#ifndef OL_LOADER_H
#define OL_LOADER_H

#include <stddef.h>

#include "opsline/opsline.h"

typedef struct loader_plugin {
    const ol_plugin *desc; /* points into the loaded object */
    char *path;            /* absolute path of the .so */
    void *handle;          /* dlopen handle */
} loader_plugin;

typedef struct loader loader;

int loader_new(loader **out);
void loader_free(loader *l); /* dlclose everything */

/* Load one file. Returns 0, OL_EABI or OL_EINVAL / OL_EEXIST with a malloc'd *err that names
 * the file and the fix. Loading the same file (same realpath) twice is a no-op. */
int loader_load_file(loader *l, const char *path, char **err);

/* Load every "*.so" in dir, in name order. A missing dir is OL_ENOENT only if required. */
int loader_load_dir(loader *l, const char *dir, int required, char **err);

/* The standard search path, in order: dirs given with --plugin-dir (required to exist),
 * OPSLINE_PLUGIN_PATH (colon-separated), the build tree's plugins/ next to the running
 * executable (when run from a build directory), and the install directory
 * (OPSLINE_PLUGIN_INSTALL_DIR). */
int loader_load_default(loader *l, const char *const *dirs, size_t n_dirs, char **err);

/* d's command-line flags (ol_plugin.cli_flags), or NULL: none, or built against ABI 2.0. */
const ol_cli_flag *loader_cli_flags(const ol_plugin *d);
/* d's entry for command-line flag `flag` (each flag is listed at most once), or NULL. */
const ol_cli_flag *loader_cli_flag(const ol_plugin *d, const char *flag);

size_t loader_count(const loader *l);
const loader_plugin *loader_at(const loader *l, size_t i);
const loader_plugin *loader_find(const loader *l, const char *name);

/* Order the named stages so each comes after what it needs. Every need must be among the
 * names; a missing one or a cycle gives OL_EINVAL with *err naming the stage and the need.
 * order receives indexes into names (n entries, caller allocated). */
/* The needs of names[i] within the pipeline names: declared ones plus, for a secret store,
 * every stage that creates secrets. Returns the count (at most cap). */
size_t loader_needs(const loader *l, const char *const *names, size_t n, size_t i, const char **out,
                    size_t cap);

int loader_order(const loader *l, const char *const *names, size_t n, size_t *order, char **err);

#endif
