/* loader: the stage registry. It dlopens plugin files (RTLD_NOW so an unresolved symbol is
 * reported at load time, not in the middle of a run; RTLD_LOCAL so two plugins never see
 * each other's symbols), checks their descriptor against the ABI this host implements, and
 * keeps them by stage name. It also orders the stages of a pipeline by their `needs`.
 * Every refusal names the file and says how to fix it. */
#include "loader.h"
#include "error.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "options.h"

/* The descriptor as ABI 1.0 defined it: a plugin built against 1.0 must provide at least
 * this much. Later minors append fields after `fini`. */
#define DESC_V2_0_SIZE (offsetof(ol_plugin, store) + sizeof(((ol_plugin *)0)->store))
#define STAGE_NAME_MAX 32

typedef struct loaded {
    loader_plugin pub;
    size_t dir_gen; /* which search-path directory it came from (shadowing) */
} loaded;

struct loader {
    loaded *items;
    size_t n;
    size_t cap;
    size_t dir_gen;     /* bumped per directory by loader_load_default */
    size_t bundled_gen; /* dir_gen of the bundled stages' directory; 0 before it */
};

int loader_new(loader **out) {
    loader *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return OL_ENOMEM;
    *out = l;
    return 0;
}

void loader_free(loader *l) {
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->n; i++) {
        dlclose(l->items[i].pub.handle);
        free(l->items[i].pub.path);
    }
    free(l->items);
    free(l);
}

size_t loader_count(const loader *l) {
    return l->n;
}

const loader_plugin *loader_at(const loader *l, size_t i) {
    return i < l->n ? &l->items[i].pub : NULL;
}

static const loaded *find_loaded(const loader *l, const char *name) {
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->items[i].pub.desc->name, name) == 0)
            return &l->items[i];
    return NULL;
}

const loader_plugin *loader_find(const loader *l, const char *name) {
    const loaded *p = find_loaded(l, name);
    return p != NULL ? &p->pub : NULL;
}

static int valid_stage_name(const char *name) {
    size_t len = strlen(name);
    if (len == 0 || len > STAGE_NAME_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static int check_abi(const ol_plugin *d, const char *path, char **err) {
    if (d->abi_major != OL_ABI_MAJOR)
        return ol__fail(err, OL_EABI,
                        "%s: built for opsline plugin ABI %u.%u, this opsline supports "
                        "%d.%d; rebuild the plugin against opsline's SDK %d.x",
                        path, (unsigned)d->abi_major, (unsigned)d->abi_minor, OL_ABI_MAJOR,
                        OL_ABI_MINOR, OL_ABI_MAJOR);
    if (d->abi_minor > OL_ABI_MINOR)
        return ol__fail(err, OL_EABI,
                        "%s: built for opsline plugin ABI %u.%u, this opsline supports "
                        "%d.%d; upgrade opsline or rebuild the plugin against opsline's "
                        "SDK %d.%d",
                        path, (unsigned)d->abi_major, (unsigned)d->abi_minor, OL_ABI_MAJOR,
                        OL_ABI_MINOR, OL_ABI_MAJOR, OL_ABI_MINOR);
    if (d->struct_size < DESC_V2_0_SIZE)
        return ol__fail(err, OL_EABI,
                        "%s: plugin descriptor is %u bytes, smaller than the %zu bytes "
                        "of opsline plugin ABI %d.0; rebuild the plugin against "
                        "opsline's SDK %d.x",
                        path, (unsigned)d->struct_size, (size_t)DESC_V2_0_SIZE, OL_ABI_MAJOR,
                        OL_ABI_MAJOR);
    return 0;
}

static int check_options(const ol_plugin *d, const char *path, char **err) {
    if (d->n_options > 0 && d->options == NULL)
        return ol__fail(err, OL_EINVAL, "%s: stage '%s' declares %zu options but no option table",
                        path, d->name, d->n_options);
    if (d->n_options > 0 && d->option_size < sizeof(ol_option_def))
        return ol__fail(err, OL_EABI,
                        "%s: stage '%s' has option_size %zu, smaller than the %zu "
                        "bytes of ol_option_def in ABI %d.0; declare options with "
                        "OL_OPTIONS(array)",
                        path, d->name, d->option_size, sizeof(ol_option_def), OL_ABI_MAJOR);
    for (size_t i = 0; i < d->n_options; i++) {
        const ol_option_def *o = options_def(d, i);
        if (o->name == NULL || o->name[0] == '\0')
            return ol__fail(err, OL_EINVAL, "%s: stage '%s': option #%zu has no name", path,
                            d->name, i + 1);
        if (o->type < OL_OPT_STRING || o->type > OL_OPT_OBJECT)
            return ol__fail(err, OL_EINVAL,
                            "%s: stage '%s': option '%s' has unknown type %d; use one "
                            "of the OL_OPT_* types",
                            path, d->name, o->name, (int)o->type);
        for (size_t j = 0; j < i; j++)
            if (strcmp(options_def(d, j)->name, o->name) == 0)
                return ol__fail(err, OL_EINVAL, "%s: stage '%s' declares option '%s' twice", path,
                                d->name, o->name);
    }
    /* Parse the declared defaults once now, so a malformed default is the plugin's error
     * at load time rather than the user's at run time. */
    char *label = ol__format("stage '%s'", d->name);
    if (label == NULL)
        return OL_ENOMEM;
    options *opts = NULL;
    char *why = NULL;
    int rc = options_parse(d, NULL, label, &opts, &why);
    free(label);
    options_free(opts);
    if (rc == OL_ENOMEM)
        return rc;
    if (rc < 0) {
        ol__fail(err, OL_EINVAL, "%s: %s", path, why != NULL ? why : "bad option default");
        free(why);
        return OL_EINVAL;
    }
    return 0;
}

const ol_cli_flag *loader_cli_flags(const ol_plugin *d) {
    if (d->struct_size < offsetof(ol_plugin, cli_flags) + sizeof(d->cli_flags))
        return NULL; /* built against ABI 2.0 */
    return d->cli_flags;
}

const ol_cli_flag *loader_cli_flag(const ol_plugin *d, const char *flag) {
    const ol_cli_flag *f = loader_cli_flags(d);
    for (size_t i = 0; f != NULL && f[i].flag != NULL; i++)
        if (strcmp(f[i].flag, flag) == 0)
            return &f[i];
    return NULL;
}

/* Every cli_flags entry names a flag of [a-z-], once, and an option the stage declares. */
static int check_cli_flags(const ol_plugin *d, const char *path, char **err) {
    const ol_cli_flag *f = loader_cli_flags(d);
    for (size_t i = 0; f != NULL && f[i].flag != NULL; i++) {
        size_t ok = strspn(f[i].flag, "abcdefghijklmnopqrstuvwxyz-");
        int declared = f[i].option == NULL; /* a flag that adds the stage to the pipeline */
        for (size_t k = 0; f[i].option != NULL && k < d->n_options; k++)
            declared |= strcmp(options_def(d, k)->name, f[i].option) == 0;
        if (ok == 0 || f[i].flag[ok] != '\0' || !declared)
            return ol__fail(err, OL_EINVAL,
                            "%s: stage '%s': cli_flags entry #%zu ('%s' -> '%s') needs a flag of "
                            "a-z and '-' and an option the stage declares",
                            path, d->name, i + 1, f[i].flag,
                            f[i].option != NULL ? f[i].option : "(null)");
        if (loader_cli_flag(d, f[i].flag) != &f[i])
            return ol__fail(err, OL_EINVAL, "%s: stage '%s' lists cli flag '%s' twice", path,
                            d->name, f[i].flag);
    }
    return 0;
}

static int check_descriptor(const ol_plugin *d, const char *path, char **err) {
    int rc = check_abi(d, path, err);
    if (rc < 0)
        return rc;
    if (d->name == NULL)
        return ol__fail(err, OL_EINVAL, "%s: plugin descriptor has no stage name", path);
    if (!valid_stage_name(d->name))
        return ol__fail(err, OL_EINVAL,
                        "%s: stage name '%.64s' is invalid; use 1 to %d characters "
                        "of a-z, 0-9, '_' and '-'",
                        path, d->name, STAGE_NAME_MAX);
    if (d->apply == NULL && d->store == NULL)
        return ol__fail(err, OL_EINVAL, "%s: stage '%s' has no apply function; set ol_plugin.apply",
                        path, d->name);
    if (d->apply != NULL && d->store != NULL)
        return ol__fail(err, OL_EINVAL,
                        "%s: stage '%s' is a secret store (store set) and also has "
                        "apply; a store leaves apply NULL",
                        path, d->name);
    if (d->store != NULL &&
        (d->store->struct_size < offsetof(ol_store_ops, del) + sizeof(d->store->del) ||
         d->store->put == NULL || d->store->get == NULL))
        return ol__fail(err, OL_EINVAL,
                        "%s: stage '%s': its ol_store_ops must set struct_size, put "
                        "and get",
                        path, d->name);
    if (d->needs != NULL)
        for (size_t i = 0; d->needs[i] != NULL; i++)
            if (d->needs[i][0] == '\0')
                return ol__fail(err, OL_EINVAL, "%s: stage '%s' has an empty name in its needs",
                                path, d->name);
    if ((rc = check_options(d, path, err)) != 0)
        return rc;
    return check_cli_flags(d, path, err);
}

/* dlerror() usually starts with the file name; drop it since our message already has it. */
static const char *strip_path(const char *msg, const char *path) {
    size_t len = strlen(path);
    if (strncmp(msg, path, len) == 0 && msg[len] == ':' && msg[len + 1] == ' ')
        return msg + len + 2;
    return msg;
}

/* ---- who may change a plugin ------------------------------------------------------------
 * A plugin runs with the user's credentials the moment dlopen runs its constructors, so it
 * is loaded only when nobody else could have changed it: the rule ssh applies to
 * authorized_keys (StrictModes). The file and its directory must belong to root or to us
 * and not be writable by group or others; every directory above them must belong to root
 * or to us and, if every user may write it, be sticky (/tmp). A group-writable file or
 * directory passes when the group is its owner's private group (umask 002 systems give
 * each user a group of their own, with no other member). */

static int private_group(const struct stat *st) {
    const struct passwd *pw = getpwuid(st->st_uid);
    const struct group *gr = getgrgid(st->st_gid);
    return pw != NULL && gr != NULL && strcmp(pw->pw_name, gr->gr_name) == 0 &&
           (gr->gr_mem == NULL || gr->gr_mem[0] == NULL);
}

/* Why what (the plugin file, its directory, or a directory above them) lets someone else
 * change the plugin, or NULL. strict: the file and its own directory. */
static const char *unsafe_because(const struct stat *st, int strict) {
    if (st->st_uid != 0 && st->st_uid != geteuid())
        return "belongs to another user";
    if ((st->st_mode & S_IWOTH) && !(S_ISDIR(st->st_mode) && !strict && (st->st_mode & S_ISVTX)))
        return "is writable by every user";
    if (strict && (st->st_mode & S_IWGRP) && !private_group(st))
        return "is writable by its group";
    return NULL;
}

/* 0 when real (an absolute path without links, from realpath) can only have been changed by
 * root or us; else OL_EINVAL with *err naming what is unsafe and the fix. */
static int check_plugin_owner(const char *path, const char *real, char **err) {
    char *at = strdup(real);
    if (at == NULL)
        return OL_ENOMEM;
    int rc = 0;
    for (int level = 0; rc == 0; level++) {
        struct stat st;
        if (stat(at, &st) != 0) {
            rc = ol__fail(err, OL_EINVAL, "%s: cannot check %s: %s", path, at, strerror(errno));
            break;
        }
        const char *why = unsafe_because(&st, level < 2);
        if (why != NULL) {
            rc = ol__fail(err, OL_EINVAL,
                          "%s: refused before loading: %s %s (mode %04o, uid %ld), so someone "
                          "else could change the code opsline would run; make it yours or "
                          "root's and not writable by others (chown, chmod go-w %s)",
                          path, at, why, (unsigned)(st.st_mode & 07777), (long)st.st_uid, at);
            break;
        }
        char *slash = strrchr(at, '/');
        if (slash == NULL || strcmp(at, "/") == 0)
            break;
        slash[slash == at ? 1 : 0] = '\0';
    }
    free(at);
    return rc;
}

static int open_plugin(const char *path, const char *real, void **handle, const ol_plugin **desc,
                       char **err) {
    int checked = check_plugin_owner(path, real, err);
    if (checked != 0)
        return checked;
    void *h = dlopen(real, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        const char *why = dlerror();
        why = why != NULL ? strip_path(strip_path(why, real), path) : "unknown error";
        return ol__fail(err, OL_EINVAL,
                        "%s: cannot load plugin: %s; check it was built for this "
                        "system and linked with the libraries it uses "
                        "(-Wl,--no-undefined finds missing ones at build time)",
                        path, why);
    }
    /* dlsym returns an object pointer; copying it is the conversion POSIX allows. */
    void *sym = dlsym(h, OL_PLUGIN_ENTRY);
    ol_plugin_entry_fn entry;
    memcpy(&entry, &sym, sizeof(entry));
    if (sym == NULL) {
        dlclose(h);
        return ol__fail(err, OL_EINVAL,
                        "%s: not an opsline plugin (no `%s` symbol); define the entry "
                        "point with OL_EXPORT and build with the opsline SDK",
                        path, OL_PLUGIN_ENTRY);
    }
    const ol_plugin *d = entry();
    if (d == NULL) {
        dlclose(h);
        return ol__fail(err, OL_EINVAL,
                        "%s: `%s` returned NULL; it must return a static ol_plugin "
                        "descriptor",
                        path, OL_PLUGIN_ENTRY);
    }
    int rc = check_descriptor(d, path, err);
    if (rc < 0) {
        dlclose(h);
        return rc;
    }
    *handle = h;
    *desc = d;
    return 0;
}

static int add_plugin(loader *l, const ol_plugin *d, char *real, void *h) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        loaded *items = realloc(l->items, cap * sizeof(*items));
        if (items == NULL)
            return OL_ENOMEM;
        l->items = items;
        l->cap = cap;
    }
    loaded *p = &l->items[l->n++];
    p->pub.desc = d;
    p->pub.path = real;
    p->pub.handle = h;
    p->dir_gen = l->dir_gen;
    return 0;
}

/* Is name in OPSLINE_ALLOW_SHADOW (comma-separated stage names)? */
static int shadow_allowed(const char *name) {
    const char *env = getenv("OPSLINE_ALLOW_SHADOW");
    size_t len = strlen(name);
    for (const char *p = env; p != NULL && *p != '\0'; p += strcspn(p, ",")) {
        p += *p == ',';
        if (strncmp(p, name, len) == 0 && (p[len] == ',' || p[len] == '\0'))
            return 1;
    }
    return 0;
}

/* prev, from an earlier directory of the search path, replaces the bundled stage bundled
 * (at real). Always said on stderr; refused for a stage that handles secret keys (a store,
 * or a stage that creates keys) unless the user named it in OPSLINE_ALLOW_SHADOW: a stray
 * dotenv.so on a plugin path must not silently receive every new secret. */
static int check_shadow(const loaded *prev, const ol_plugin *bundled, const char *real,
                        char **err) {
    const char *name = bundled->name;
    int secret = bundled->store != NULL || (bundled->flags & OL_STAGE_CREATES_SECRETS) != 0;
    if (secret && !shadow_allowed(name))
        return ol__fail(err, OL_EEXIST,
                        "stage '%s' from %s would replace the bundled %s (%s), which handles "
                        "secret keys; remove %s from the plugin path, or set "
                        "OPSLINE_ALLOW_SHADOW=%s if the replacement is intended",
                        name, prev->pub.path, bundled->store ? "secret store" : "stage", real,
                        prev->pub.path, name);
    fprintf(stderr, "warning: stage '%s' from %s replaces the bundled one (%s)\n", name,
            prev->pub.path, real);
    return 0;
}

/* shadow: a stage already loaded from an earlier search-path directory wins (with a warning,
 * or a refusal, when it replaces a bundled stage: check_shadow). */
static int load_file(loader *l, const char *path, int shadow, char **err) {
    char *real = realpath(path, NULL);
    if (real == NULL) {
        int e = errno;
        if (e == ENOMEM)
            return OL_ENOMEM;
        return ol__fail(err, e == ENOENT ? OL_ENOENT : OL_EINVAL, "%s: cannot load plugin: %s",
                        path, strerror(e));
    }
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->items[i].pub.path, real) == 0) {
            free(real);
            return 0;
        }
    void *h = NULL;
    const ol_plugin *d = NULL;
    int rc = open_plugin(path, real, &h, &d, err);
    if (rc < 0 || d == NULL) /* d is set whenever rc is 0; the check keeps analyzers calm */
        goto fail;
    const loaded *prev = find_loaded(l, d->name);
    if (prev != NULL && shadow && prev->dir_gen != l->dir_gen) {
        rc = l->dir_gen == l->bundled_gen ? check_shadow(prev, d, real, err) : 0;
        dlclose(h);
        free(real);
        return rc;
    }
    if (prev != NULL) {
        rc = ol__fail(err, OL_EEXIST,
                      "%s: stage '%s' is already provided by %s; remove one of the two "
                      "files from the plugin path",
                      path, d->name, prev->pub.path);
        dlclose(h);
        goto fail;
    }
    rc = add_plugin(l, d, real, h);
    if (rc < 0) {
        dlclose(h);
        goto fail;
    }
    return 0;
fail:
    free(real);
    return rc;
}

int loader_load_file(loader *l, const char *path, char **err) {
    return load_file(l, path, 0, err);
}

static int is_so(const struct dirent *e) {
    size_t len = strlen(e->d_name);
    return len > 3 && e->d_name[0] != '.' && strcmp(e->d_name + len - 3, ".so") == 0;
}

static int load_dir(loader *l, const char *dir, int required, int shadow, char **err) {
    struct dirent **list = NULL;
    int n = scandir(dir, &list, is_so, alphasort);
    if (n < 0) {
        int e = errno;
        if (e == ENOMEM)
            return OL_ENOMEM;
        if (!required && (e == ENOENT || e == ENOTDIR))
            return 0;
        return ol__fail(err, OL_ENOENT, "plugin directory %s: %s", dir, strerror(e));
    }
    int rc = 0;
    for (int i = 0; i < n; i++) {
        if (rc == 0) {
            char *path = ol__format("%s/%s", dir, list[i]->d_name);
            rc = path != NULL ? load_file(l, path, shadow, err) : OL_ENOMEM;
            free(path);
        }
        free(list[i]);
    }
    free(list);
    return rc;
}

int loader_load_dir(loader *l, const char *dir, int required, char **err) {
    return load_dir(l, dir, required, 0, err);
}

static char *existing_dir(char *dir) {
    struct stat st;
    if (dir != NULL && (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))) {
        free(dir);
        return NULL;
    }
    return dir;
}

/* The plugin directory that belongs to the running executable: <exe dir>/plugins in a build
 * tree, else <exe dir>/../<libdir>/opsline/plugins, so an install relocated with
 * `cmake --install --prefix` still finds its own stages. NULL when neither exists. */
static char *own_plugin_dir(void) {
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (len <= 0)
        return NULL;
    exe[len] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash == NULL)
        return NULL;
    *slash = '\0';
    char *dir = existing_dir(ol__format("%s/plugins", exe));
    if (dir == NULL)
        dir = existing_dir(ol__format("%s/../%s", exe, OPSLINE_PLUGIN_REL_DIR));
    return dir;
}

static int load_next_dir(loader *l, const char *dir, int required, char **err) {
    l->dir_gen++;
    return load_dir(l, dir, required, 1, err);
}

static int load_env_path(loader *l, char **err) {
    const char *env = getenv("OPSLINE_PLUGIN_PATH");
    if (env == NULL || env[0] == '\0')
        return 0;
    char *copy = strdup(env);
    if (copy == NULL)
        return OL_ENOMEM;
    int rc = 0;
    char *save = NULL;
    for (char *dir = strtok_r(copy, ":", &save); dir != NULL && rc == 0;
         dir = strtok_r(NULL, ":", &save))
        rc = load_next_dir(l, dir, 0, err);
    free(copy);
    return rc;
}

/* Earlier directories shadow later ones, as in PATH: a stage built into --plugin-dir
 * replaces the installed one of the same name. Within one directory a duplicate is an
 * error. A build-tree binary uses its own plugins/ instead of the installed ones, so a
 * developer never mixes a fresh host with stale installed stages. */
int loader_load_default(loader *l, const char *const *dirs, size_t n_dirs, char **err) {
    int rc = 0;
    for (size_t i = 0; i < n_dirs && rc == 0; i++)
        rc = load_next_dir(l, dirs[i], 1, err);
    if (rc == 0)
        rc = load_env_path(l, err);
    if (rc < 0)
        return rc;
    char *build = own_plugin_dir();
    l->bundled_gen = l->dir_gen + 1;
    rc = load_next_dir(l, build != NULL ? build : OPSLINE_PLUGIN_INSTALL_DIR, 0, err);
    free(build);
    return rc;
}

static size_t index_of(const char *const *names, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0)
            return i;
    return n;
}

static int check_needs(const loader *l, const char *const *names, size_t n, char **err) {
    for (size_t i = 0; i < n; i++) {
        const loader_plugin *p = loader_find(l, names[i]);
        if (p == NULL)
            return ol__fail(err, OL_EINVAL,
                            "stage '%s' is not provided by any loaded plugin; check "
                            "`opsline plugins list` and --plugin-dir",
                            names[i]);
        if (index_of(names, i, names[i]) < i)
            return ol__fail(err, OL_EINVAL, "stage '%s' is listed twice in the pipeline", names[i]);
        for (size_t k = 0; p->desc->needs != NULL && p->desc->needs[k] != NULL; k++) {
            const char *need = p->desc->needs[k];
            if (index_of(names, n, need) == n)
                return ol__fail(err, OL_EINVAL,
                                "stage '%s' needs stage '%s', which is not in the "
                                "pipeline%s; add '%s' to the pipeline's stages",
                                names[i], need,
                                loader_find(l, need) ? "" : " (and no plugin provides it)", need);
        }
    }
    return 0;
}

/* The needs a stage runs after: its declared ones, every secret store for a stage flagged
 * OL_STAGE_AFTER_STORES, and, for a secret store, every stage of the pipeline that creates
 * secrets (the store must see the key). At most cap written. */
static size_t effective_needs(const loader *l, const char *const *names, size_t n, size_t i,
                              const char **out, size_t cap) {
    const ol_plugin *d = loader_find(l, names[i])->desc;
    size_t k = 0;
    for (size_t j = 0; d->needs != NULL && d->needs[j] != NULL && k < cap; j++)
        out[k++] = d->needs[j];
    for (size_t j = 0; (d->flags & OL_STAGE_AFTER_STORES) && j < n && k < cap; j++)
        if (loader_find(l, names[j])->desc->store != NULL)
            out[k++] = names[j];
    if (d->store == NULL)
        return k;
    for (size_t j = 0; j < n && k < cap; j++)
        if (loader_find(l, names[j])->desc->flags & OL_STAGE_CREATES_SECRETS)
            out[k++] = names[j];
    return k;
}

#define NEEDS_MAX 64

static int needs_pending(const loader *l, const char *const *names, size_t n, size_t i,
                         const unsigned char *done) {
    const char *needs[NEEDS_MAX];
    size_t nn = effective_needs(l, names, n, i, needs, NEEDS_MAX);
    for (size_t k = 0; k < nn; k++)
        if (!done[index_of(names, n, needs[k])])
            return 1;
    return 0;
}

/* Follow unmet needs from a stuck stage until a stage repeats: that loop is the cycle,
 * named in *err. Returns OL_EINVAL, or OL_ENOMEM. */
static int fail_cycle(const loader *l, const char *const *names, size_t n,
                      const unsigned char *done, char **err) {
    size_t start = 0;
    while (done[start])
        start++;
    size_t *seen = calloc(n, sizeof(*seen)); /* 1 + position in the walk, 0: not seen */
    if (seen == NULL)
        return OL_ENOMEM;
    size_t *walk = calloc(n + 1, sizeof(*walk));
    if (walk == NULL) {
        free(seen);
        return OL_ENOMEM;
    }
    size_t len = 0, cur = start;
    while (seen[cur] == 0) {
        seen[cur] = ++len;
        walk[len - 1] = cur;
        const char *needs[NEEDS_MAX];
        size_t nn = effective_needs(l, names, n, cur, needs, NEEDS_MAX);
        for (size_t k = 0; k < nn; k++) {
            size_t j = index_of(names, n, needs[k]);
            if (!done[j]) {
                cur = j;
                break;
            }
        }
    }
    size_t first = seen[cur] - 1;
    size_t size = 1;
    for (size_t i = first; i < len; i++)
        size += strlen(names[walk[i]]) + 4;
    size += strlen(names[cur]);
    char *path = malloc(size);
    if (path != NULL) {
        path[0] = '\0';
        for (size_t i = first; i < len; i++) {
            strcat(path, names[walk[i]]);
            strcat(path, " -> ");
        }
        strcat(path, names[cur]);
    }
    int rc = path != NULL ? ol__fail(err, OL_EINVAL,
                                     "stages need each other in a cycle (%s); remove one of "
                                     "these needs",
                                     path)
                          : OL_ENOMEM;
    free(path);
    free(walk);
    free(seen);
    return rc;
}

/* Kahn's algorithm, taking the first ready stage in the user's order so the result is
 * stable and predictable. n is small (a handful of stages), so O(n^2) is fine. */
size_t loader_needs(const loader *l, const char *const *names, size_t n, size_t i, const char **out,
                    size_t cap) {
    return effective_needs(l, names, n, i, out, cap);
}

int loader_order(const loader *l, const char *const *names, size_t n, size_t *order, char **err) {
    int rc = check_needs(l, names, n, err);
    if (rc < 0)
        return rc;
    unsigned char *done = calloc(n + 1, 1);
    if (done == NULL)
        return OL_ENOMEM;
    size_t placed = 0;
    while (placed < n) {
        size_t i = 0;
        while (i < n && (done[i] || needs_pending(l, names, n, i, done)))
            i++;
        if (i == n) {
            rc = fail_cycle(l, names, n, done, err);
            free(done);
            return rc;
        }
        done[i] = 1;
        order[placed++] = i;
    }
    free(done);
    return 0;
}
