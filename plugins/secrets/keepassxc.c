/* keepassxc: the secret store that keeps each item's access key as an entry of a KeePassXC
 * database (KDBX 4), through keepassxc-cli only (Debian package keepassxc, 2.7.x).
 *
 * Every keepassxc-cli command unlocks the database and runs its key derivation, so puts are
 * held back and written in batches (group commit: a batch starts shortly after its first
 * put, the next one imports while the previous merges, the host's flush waits for them):
 * the batch is written as KeePass 2 XML into a FIFO (never to disk), `keepassxc-cli import`
 * turns it into a temporary database with the same credentials, and, under a lock on the
 * database path, `keepassxc-cli merge -s` merges that into the database.
 * Merge matches groups and entries by UUID, so opsline gives every group and entry it writes
 * a UUID derived from its path (group template / title template): a replaced key updates the
 * same entry (the old values go to the entry's history) and never adds a second one. A path
 * that already existed when the run started is checked with `merge --dry-run` first: when its
 * UUID is not opsline's (someone made that entry or group by hand) the item fails rather than
 * get a duplicate. The merge's change list proves each entry was created or updated.
 *
 * The database password comes from an environment variable, a file or neither (key file
 * only), and reaches keepassxc-cli on stdin only; once read, the variable is wiped from
 * opsline's environment and blanked in every child's. Entries carry custom data, which makes
 * keepassxc-cli write KDBX 4. Reads use `show -s`, deletes `rm`. Buffers that held a secret are
 * wiped before free. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "opsline/opsline.h"

#include "lib/storebuf.h"

#define KX_PROGRAM "keepassxc-cli"
#define KX_INSTALL "install keepassxc (apt-get install keepassxc)"
#define KX_MAX_PASSWORD_FILE 65536
#define KX_OUTPUT_CAP ((size_t)16 << 20)     /* ls and merge list every entry of a batch */
#define KX_REASON_MAX 300                    /* bytes of keepassxc-cli's stderr quoted */
#define KX_MAX_GETS 4                        /* show commands run at once */
#define KX_GATHER_MS 50                      /* a batch starts this long after its first put */
#define KX_GROUP_TIME "2000-01-01T00:00:00Z" /* never newer than a group someone renamed */

typedef struct kx_state kx_state;
typedef struct kx_put kx_put;
typedef struct kx_flush kx_flush;
typedef struct kx_tmp kx_tmp;

/* ---------------------------------------------------------------------------------------
 * XML and base64 into a storebuf (it holds secrets: it wipes what it leaves)
 * ------------------------------------------------------------------------------------- */

/* XML character data: the five entities, line ends as character references (a parser
 * would otherwise fold \r\n). Other control characters cannot appear in XML 1.0 at all. */
static int buf_xml(storebuf *b, const char *s) {
    static const char specials[] = "&<>\"'\n\t";
    static const char *const entities[] = {"&amp;",  "&lt;",  "&gt;", "&quot;",
                                           "&apos;", "&#10;", "&#9;"};
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        const char *special = strchr(specials, c);
        if (special != NULL)
            storebuf_str(b, entities[special - specials]);
        else if (c < 0x20 || c == 0x7f)
            return OL_EINVAL;
        else
            storebuf_add(b, s, 1);
    }
    return 0;
}

static void buf_base64(storebuf *b, const uint8_t *p, size_t n) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        char out[4] = {tab[(v >> 18) & 63], tab[(v >> 12) & 63],
                       i + 1 < n ? tab[(v >> 6) & 63] : '=', i + 2 < n ? tab[v & 63] : '='};
        storebuf_add(b, out, 4);
    }
}

/* ---------------------------------------------------------------------------------------
 * Pure helpers
 * ------------------------------------------------------------------------------------- */

/* A UUID derived from a group or entry path: the same path gives the same UUID in every run,
 * which is what lets merge update opsline's entries in place. Not a security property:
 * two 64-bit FNV-1a hashes with different bases, each finished with splitmix64's mixer,
 * marked as an RFC 9562 version 8 (custom) UUID. */
static uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static void path_uuid(const char *kind, const char *path, uint8_t out[16]) {
    uint64_t h[2] = {0xcbf29ce484222325ULL, 0x84222325cbf29ce4ULL};
    const char *parts[3] = {"opsline/keepassxc/", kind, path};
    for (int k = 0; k < 2; k++) {
        for (int p = 0; p < 3; p++) {
            for (const unsigned char *s = (const unsigned char *)parts[p]; *s; s++) {
                h[k] ^= *s;
                h[k] *= 0x100000001b3ULL;
            }
            h[k] ^= 0xff; /* separator: "ab"+"c" differs from "a"+"bc" */
            h[k] *= 0x100000001b3ULL;
        }
        h[k] = mix64(h[k] + (uint64_t)k);
    }
    for (int i = 0; i < 8; i++) {
        out[i] = (uint8_t)(h[0] >> (56 - 8 * i));
        out[8 + i] = (uint8_t)(h[1] >> (56 - 8 * i));
    }
    out[6] = (uint8_t)((out[6] & 0x0f) | 0x80);
    out[8] = (uint8_t)((out[8] & 0x3f) | 0x80);
}

/* keepassxc-cli prints UUIDs as 32 lowercase hex digits (uuidToHex). */
static void uuid_hex(const uint8_t u[16], char out[33]) {
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        out[2 * i] = hex[u[i] >> 4];
        out[2 * i + 1] = hex[u[i] & 15];
    }
    out[32] = '\0';
}

static void iso_time(int64_t t, char out[32]) {
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Why s cannot name a group path or a title (empty, holding bad, holding a control
 * character), as a static text, or NULL. */
static const char *name_check(const char *s, const char *bad, const char *why_bad) {
    if (s[0] == '\0')
        return "is empty";
    if (strstr(s, bad) != NULL)
        return why_bad;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return "has a control character";
    return NULL;
}

/* Normalises a group path: no leading or trailing '/', no empty segment, no control
 * character. Returns 0 or a static reason. */
static const char *group_check(char *g) {
    size_t n = strlen(g);
    while (n > 0 && g[n - 1] == '/')
        g[--n] = '\0';
    size_t lead = strspn(g, "/");
    memmove(g, g + lead, n - lead + 1);
    return name_check(g, "//", "has an empty group name ('//')");
}

static const char *title_check(const char *t) {
    return name_check(t, "/", "has a '/' (keepassxc-cli paths could not name the entry)");
}

/* keepassxc-cli's stderr on one line: its lines that say something, without the password
 * prompts (they end in ": " with no line end, so an error shares their line), joined with
 * blanks, control characters replaced, cut at KX_REASON_MAX bytes. Malloc'd. */
static char *cli_error_line(const ol_host *h, const char *err, size_t len) {
    static const char *const prompts[] = {
        "Enter password to unlock ",
        "Enter password to encrypt database (optional): ", "Repeat password: ", NULL};
    storebuf b = STOREBUF_INIT(h);
    size_t pos = 0;
    while (pos < len) {
        const char *nl = memchr(err + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - err) : len;
        const char *s = err + pos;
        size_t n = end - pos;
        for (int again = 1; again;) {
            again = 0;
            for (int i = 0; prompts[i] != NULL; i++) {
                size_t pl = strlen(prompts[i]);
                if (n >= pl && memcmp(s, prompts[i], pl) == 0) {
                    /* "Enter password to unlock PATH: " ends at the first ": " after it. */
                    const char *colon = NULL;
                    for (size_t k = pl - 2; k + 1 < n; k++)
                        if (s[k] == ':' && s[k + 1] == ' ') {
                            colon = s + k;
                            break;
                        }
                    if (colon == NULL) {
                        n = 0;
                        break;
                    }
                    n -= (size_t)(colon + 2 - s);
                    s = colon + 2;
                    again = n > 0;
                    break;
                }
            }
        }
        while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\r' || s[n - 1] == '\t'))
            n--;
        if (n > 0 && b.len < KX_REASON_MAX) {
            if (b.len > 0)
                storebuf_add(&b, " ", 1);
            storebuf_add(&b, s, n < KX_REASON_MAX ? n : KX_REASON_MAX);
        }
        pos = end + 1;
    }
    if (b.failed) {
        storebuf_wipe(&b);
        return NULL;
    }
    if (b.data == NULL)
        return strdup("");
    if (b.len > KX_REASON_MAX)
        b.data[KX_REASON_MAX] = '\0';
    for (char *c = b.data; *c; c++)
        if ((unsigned char)*c < 0x20)
            *c = ' ';
    return b.data;
}

/* ---------------------------------------------------------------------------------------
 * State
 * ------------------------------------------------------------------------------------- */

struct kx_put {
    kx_put *next;
    ol_item *item;
    char *item_name;
    char *group, *title, *path; /* path: group/title, as keepassxc-cli names the entry */
    char *url, *notes, *key_id, *region, *bucket, *created;
    char *secret; /* wiped */
    uint8_t uuid[16];
    char hex[33];
    int seen;   /* merge listed it: 1 created or updated, 2 kept the newer one there */
    int merged; /* in the database (an earlier round of the same flush) */
    int result;
    char *reason;
};

/* A path this run wrote (or found to be opsline's): its last modification time, so a second
 * write in the same second is still newer, and the item that owns it. */
typedef struct kx_known {
    char *path; /* entry path, or group path ending in '/' */
    char *item_name;
    int64_t written;
    int verified; /* merged by this run: the UUID there is opsline's */
} kx_known;

typedef struct kx_get kx_get;
struct kx_get {
    kx_get *next;
    kx_state *st;
    ol_item *item;
    char *path;
};

struct kx_state {
    const ol_host *host;
    ol_stage *stage;
    /* options (OL_BIND) */
    const char *database;
    const char *password_env;
    const char *password_file;
    const char *key_file;
    int create;
    const char *group;
    const char *title;
    const char *url;
    long long timeout; /* seconds per keepassxc-cli run */
    /* resolved by prepare */
    char *db;           /* absolute path */
    char *password;     /* wiped; NULL: no password (key file only) */
    char *env_password; /* read from password_env in init (the host then wipes the variable) */
    char *cred;         /* where the credentials come from, for messages */
    char *env_blank;
    const char *env[4];
    char **existing; /* `ls -R -f` lines when the run started */
    size_t n_existing, cap_existing;
    kx_known *known;
    size_t n_known, cap_known;
    /* batching */
    kx_put *pending;    /* newest first */
    kx_flush *flushes;  /* batches in flight: at most one importing, one merging */
    int importing;      /* a batch is before its merge (its import, or waiting for the lock) */
    size_t flush_calls; /* flush() calls not answered yet */
    int answer_scheduled;
    int gather_scheduled;
    size_t dels_running;
    /* gets */
    kx_get *get_queue;
    size_t gets_running;
};

static const ol_option_def kx_options[] = {
    {"database", OL_OPT_STRING, NULL, "path of the KeePassXC database (.kdbx); required",
     OL_BIND(kx_state, database)},
    {"password_env", OL_OPT_STRING, "OPSLINE_KEEPASSXC_PASSWORD",
     "name of the environment variable holding the database password",
     OL_BIND(kx_state, password_env)},
    {"password_file", OL_OPT_STRING, NULL,
     "file holding the database password (first line); wins over password_env",
     OL_BIND(kx_state, password_file)},
    {"key_file", OL_OPT_STRING, NULL,
     "key file of the database, alone (no password set) or with the password",
     OL_BIND(kx_state, key_file)},
    {"create", OL_OPT_BOOL, "false",
     "create the database (KDBX 4, same credentials) when it does not exist",
     OL_BIND(kx_state, create)},
    {"group", OL_OPT_STRING, "AWS/{product}",
     "group of the entry, '/' separating nested groups; placeholders {product}, "
     "{environment}, {bucket}, {user}, {region}",
     OL_BIND(kx_state, group)},
    {"title", OL_OPT_STRING, "{bucket}", "title of the entry (template, no '/')",
     OL_BIND(kx_state, title)},
    {"url", OL_OPT_STRING, "s3://{bucket}", "URL of the entry (template)", OL_BIND(kx_state, url)},
    {"timeout", OL_OPT_INT, "120", "seconds one keepassxc-cli command may take",
     OL_BIND(kx_state, timeout)},
};

static kx_known *known_find(kx_state *st, const char *path) {
    for (size_t i = 0; i < st->n_known; i++)
        if (strcmp(st->known[i].path, path) == 0)
            return &st->known[i];
    return NULL;
}

static int known_set(kx_state *st, const char *path, const char *item_name, int64_t written,
                     int verified) {
    kx_known *k = known_find(st, path);
    if (k != NULL) {
        if (written > k->written)
            k->written = written;
        k->verified |= verified;
        return 0;
    }
    if (st->n_known == st->cap_known) {
        size_t cap = st->cap_known ? st->cap_known * 2 : 64;
        kx_known *n = realloc(st->known, cap * sizeof(*n));
        if (n == NULL)
            return OL_ENOMEM;
        st->known = n;
        st->cap_known = cap;
    }
    k = &st->known[st->n_known];
    k->path = strdup(path);
    k->item_name = item_name ? strdup(item_name) : NULL;
    if (k->path == NULL || (item_name != NULL && k->item_name == NULL)) {
        free(k->path);
        free(k->item_name);
        return OL_ENOMEM;
    }
    k->written = written;
    k->verified = verified;
    st->n_known++;
    return 0;
}

static void known_forget(kx_state *st, const char *path) {
    kx_known *k = known_find(st, path);
    if (k == NULL)
        return;
    free(k->path);
    free(k->item_name);
    *k = st->known[--st->n_known];
}

static int verified(kx_state *st, const char *path) {
    const kx_known *k = known_find(st, path);
    return k != NULL && k->verified;
}

static int existed(const kx_state *st, const char *path) {
    for (size_t i = 0; i < st->n_existing; i++)
        if (strcmp(st->existing[i], path) == 0)
            return 1;
    return 0;
}

static void put_free(const ol_host *h, kx_put *p) {
    if (p == NULL)
        return;
    free(p->item_name);
    free(p->group);
    free(p->title);
    free(p->path);
    free(p->url);
    free(p->notes);
    free(p->key_id);
    free(p->region);
    free(p->bucket);
    free(p->created);
    free_wiped_str(h, p->secret);
    free(p->reason);
    free(p);
}

/* Still to be written by the flush. */
static int live(const kx_put *p) {
    return p->result == 0 && !p->merged;
}

static void put_fail(kx_put *p, int rc, char *reason) {
    if (p->result == 0) {
        p->result = rc;
        p->reason = reason;
    } else {
        free(reason);
    }
}

/* Expands the group and title templates for the item. Returns 0, or a code with *why. */
static int entry_names(kx_state *st, const ol_item *item, char **group, char **title, char **why) {
    const ol_host *h = st->host;
    char *g = NULL, *t = NULL, *w = NULL;
    const char *bad;
    *group = *title = *why = NULL;
    if (h->expand(item, st->group, &g, &w) != 0) {
        *why = h->format("keepassxc: option group '%s': %s", st->group, w ? w : "invalid");
        goto fail;
    }
    if (h->expand(item, st->title, &t, &w) != 0) {
        *why = h->format("keepassxc: option title '%s': %s", st->title, w ? w : "invalid");
        goto fail;
    }
    *group = strdup(g);
    *title = strdup(t);
    if (*group == NULL || *title == NULL)
        goto fail;
    if ((bad = group_check(*group)) != NULL) {
        *why = h->format("keepassxc: group '%s' (option group '%s') %s", g, st->group, bad);
        goto fail;
    }
    if ((bad = title_check(*title)) != NULL) {
        *why = h->format("keepassxc: title '%s' (option title '%s') %s", t, st->title, bad);
        goto fail;
    }
    h->free(g);
    h->free(t);
    return 0;
fail:
    h->free(g);
    h->free(t);
    h->free(w);
    free(*group);
    free(*title);
    *group = *title = NULL;
    return OL_EINVAL;
}

static char *join_path(const char *group, const char *title) {
    size_t gl = strlen(group), tl = strlen(title);
    char *p = malloc(gl + tl + 2);
    if (p != NULL) {
        memcpy(p, group, gl);
        p[gl] = '/';
        memcpy(p + gl + 1, title, tl + 1);
    }
    return p;
}

/* A reason from the host's allocator as a malloc'd string (all reasons here are malloc'd). */
static char *reason_dup(const ol_host *h, char *hosted) {
    char *r = hosted ? strdup(hosted) : NULL;
    h->free(hosted);
    return r;
}

/* ---------------------------------------------------------------------------------------
 * Running keepassxc-cli
 * ------------------------------------------------------------------------------------- */

typedef void (*kx_run_cb)(kx_state *st, void *arg, const ol_proc_result *res);

typedef struct kx_run {
    kx_state *st;
    kx_run_cb cb;
    void *arg;
    char *input; /* the password, once per prompt; wiped */
    size_t input_len;
} kx_run;

static void run_done(void *arg, const ol_proc_result *res) {
    kx_run *r = arg;
    r->cb(r->st, r->arg, res);
    free_wiped(r->st->host, r->input, r->input_len);
    free(r);
}

/* Runs keepassxc-cli with argv (argv[0] is the program) and the password on stdin
 * `prompts` times. Returns 0 and calls cb once, or a negative code. */
static int kx_run_cli(kx_state *st, const ol_item *item, const char *const *argv, int prompts,
                      kx_run_cb cb, void *arg) {
    kx_run *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return OL_ENOMEM;
    r->st = st;
    r->cb = cb;
    r->arg = arg;
    if (st->password != NULL && prompts > 0) {
        size_t pl = strlen(st->password);
        r->input_len = (pl + 1) * (size_t)prompts;
        r->input = malloc(r->input_len + 1);
        if (r->input == NULL) {
            free(r);
            return OL_ENOMEM;
        }
        for (int i = 0; i < prompts; i++) {
            memcpy(r->input + i * (pl + 1), st->password, pl);
            r->input[i * (pl + 1) + pl] = '\n';
        }
    }
    ol_proc_spec spec = {
        .struct_size = sizeof(spec),
        .argv = argv,
        .env = st->env,
        .stdin_data = r->input,
        .stdin_len = r->input_len,
        .output_cap = KX_OUTPUT_CAP,
        .timeout_ms = (unsigned)(st->timeout * 1000),
    };
    int rc = st->host->proc_run(st->stage, item, &spec, run_done, r);
    if (rc != 0) {
        free_wiped(st->host, r->input, r->input_len);
        free(r);
    }
    return rc;
}

/* argv for a command that unlocks the database: keepassxc-cli CMD [flags] [-k KEY]
 * [--no-password] DB [args]. Fills out (at least 16 slots) and returns it. */
static const char **unlock_argv(const kx_state *st, const char **out, const char *cmd,
                                const char *const *flags, const char *const *args) {
    size_t n = 0;
    out[n++] = KX_PROGRAM;
    out[n++] = cmd;
    for (; flags && *flags; flags++)
        out[n++] = *flags;
    if (st->key_file != NULL) {
        out[n++] = "-k";
        out[n++] = st->key_file;
    }
    if (st->password == NULL)
        out[n++] = "--no-password";
    out[n++] = st->db;
    for (; args && *args; args++)
        out[n++] = *args;
    out[n] = NULL;
    return out;
}

/* One line for the user about a keepassxc-cli command that did not succeed. Malloc'd. */
static char *run_reason(const kx_state *st, const char *what, const ol_proc_result *res) {
    const ol_host *h = st->host;
    if (res->result == OL_ENOENT)
        return reason_dup(h,
                          h->format("keepassxc: %s not found in PATH: %s", KX_PROGRAM, KX_INSTALL));
    if (res->result == OL_ETIMEDOUT)
        return reason_dup(h, h->format("keepassxc: %s %s on %s took more than %llds (option "
                                       "keepassxc.timeout)",
                                       KX_PROGRAM, what, st->db, st->timeout));
    if (res->result != 0)
        return reason_dup(h, h->format("keepassxc: %s %s on %s: %s", KX_PROGRAM, what, st->db,
                                       h->strerror(res->result)));
    if (res->term_signal != 0)
        return reason_dup(h, h->format("keepassxc: %s %s on %s was killed by signal %d", KX_PROGRAM,
                                       what, st->db, res->term_signal));
    const char *err = res->err ? res->err : "";
    char *line = cli_error_line(h, err, res->err_len);
    char *r;
    if (strstr(err, "Invalid credentials") != NULL)
        r = h->format("keepassxc: wrong password or key file for %s (%s): fix it and run "
                      "again",
                      st->db, st->cred);
    else if (strstr(err, "Failed to load key file") != NULL)
        r = h->format("keepassxc: %s (option keepassxc.key_file)", line);
    else
        r = h->format("keepassxc: %s %s on %s failed (exit %d): %s", KX_PROGRAM, what, st->db,
                      res->exit_status, line && *line ? line : "no message");
    free(line);
    return reason_dup(h, r);
}

static int run_ok(const ol_proc_result *res) {
    return res->result == 0 && res->term_signal == 0 && res->exit_status == 0;
}

/* Completes the item's get or del whose keepassxc-cli command (what) did not succeed: with
 * absent when its error says missing (no such entry), else with the command's failure. */
static void cli_failed(kx_state *st, ol_item *item, const char *what, const ol_proc_result *res,
                       const char *missing, int absent) {
    const ol_host *h = st->host;
    char *line = res->result == 0 ? cli_error_line(h, res->err, res->err_len) : NULL;
    if (line != NULL && strstr(line, missing) != NULL) {
        h->store_done(st->stage, item, absent, NULL, NULL);
    } else {
        char fallback[64];
        snprintf(fallback, sizeof(fallback), "keepassxc: %s failed", what);
        char *r = run_reason(st, what, res);
        h->store_done(st->stage, item, res->result ? res->result : OL_EIO, NULL, r ? r : fallback);
        free(r);
    }
    free(line);
}

/* ---------------------------------------------------------------------------------------
 * Temporary directory with a FIFO: the XML reaches keepassxc-cli import through it, so the
 * secrets never rest in a file. Created and removed off the loop.
 * ------------------------------------------------------------------------------------- */

struct kx_tmp {
    char *dir, *fifo, *db;
};

/* What follows a step of a task (a batch, prepare) that runs off the loop or through
 * keepassxc-cli import: next(st, arg) when it succeeded; when it failed, fail(arg, rc,
 * reason) (the task's: it takes the malloc'd reason over and ends the task), or next as well
 * when fail is NULL (clean-up steps). */
typedef struct kx_step {
    void (*next)(kx_state *st, void *arg);
    void (*fail)(void *arg, int rc, char *reason);
    void *arg;
} kx_step;

/* A task keeps its first failure: rc (OL_EIO for 0) and reason (malloc'd, taken over). */
static void first_failure(int *task_rc, char **task_reason, int rc, char *reason) {
    if (*task_rc == 0) {
        *task_rc = rc != 0 ? rc : OL_EIO;
        *task_reason = reason;
    } else {
        free(reason);
    }
}

static void step_end(kx_state *st, kx_step step, int rc, char *reason) {
    if (rc != 0 && step.fail != NULL) {
        step.fail(step.arg, rc, reason);
        return;
    }
    free(reason);
    step.next(st, step.arg);
}

typedef struct kx_work {
    kx_state *st;
    kx_tmp *tmp;
    kx_step step;
    int rc;
    char *reason;
} kx_work;

static void tmp_open_work(void *arg) {
    kx_work *w = arg;
    const ol_host *h = w->st->host;
    const char *base = getenv("TMPDIR");
    if (base == NULL || base[0] != '/')
        base = "/tmp";
    char *dir = h->format("%s/opsline-keepassxc.XXXXXX", base);
    if (dir == NULL || mkdtemp(dir) == NULL) {
        w->rc = OL_EIO;
        w->reason = reason_dup(h, h->format("keepassxc: cannot make a private directory in %s: "
                                            "%s",
                                            base, strerror(errno)));
        h->free(dir);
        return;
    }
    w->tmp->dir = reason_dup(h, dir);
    w->tmp->fifo = reason_dup(h, h->format("%s/batch.xml", w->tmp->dir));
    w->tmp->db = reason_dup(h, h->format("%s/batch.kdbx", w->tmp->dir));
    if (w->tmp->dir == NULL || w->tmp->fifo == NULL || w->tmp->db == NULL) {
        w->rc = OL_ENOMEM;
        w->reason = strdup("keepassxc: out of memory");
        return;
    }
    if (mkfifo(w->tmp->fifo, 0600) != 0) {
        w->rc = OL_EIO;
        w->reason = reason_dup(
            h, h->format("keepassxc: cannot make a FIFO in %s: %s", w->tmp->dir, strerror(errno)));
    }
}

static void tmp_close_work(void *arg) {
    kx_work *w = arg;
    kx_tmp *t = w->tmp;
    if (t->fifo != NULL)
        unlink(t->fifo);
    if (t->db != NULL)
        unlink(t->db);
    if (t->dir != NULL)
        rmdir(t->dir);
}

/* Removes the temporary database a failed or earlier import left. */
static void tmp_reset_work(void *arg) {
    kx_work *w = arg;
    if (w->tmp->db != NULL)
        unlink(w->tmp->db);
}

static void work_after(void *arg, int status) {
    kx_work *w = arg;
    int rc = w->rc;
    char *reason = w->reason;
    if (status != 0 && rc == 0) {
        rc = status;
        reason = strdup("keepassxc: the run was stopped");
    }
    kx_state *st = w->st;
    kx_step step = w->step;
    free(w);
    step_end(st, step, rc, reason);
}

static int kx_queue(kx_state *st, kx_tmp *tmp, ol_work_fn fn, kx_step step) {
    kx_work *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return OL_ENOMEM;
    w->st = st;
    w->tmp = tmp;
    w->step = step;
    int rc = st->host->work_queue(st->stage, fn, work_after, w);
    if (rc != 0)
        free(w);
    return rc;
}

static void tmp_free(kx_tmp *t) {
    if (t == NULL)
        return;
    free(t->dir);
    free(t->fifo);
    free(t->db);
    free(t);
}

/* ---------------------------------------------------------------------------------------
 * Import: XML through the FIFO into a new database with the store's credentials
 * ------------------------------------------------------------------------------------- */

typedef struct kx_import {
    kx_state *st;
    kx_tmp *tmp;
    const char *dest;
    storebuf *xml; /* borrowed until the step ends */
    kx_step step;
    atomic_int abort; /* keepassxc-cli ended: stop waiting for it to open the FIFO */
    int writer_rc;
    int waiting; /* completions still to come: the program and the writer */
    int rc;
    char *reason;
} kx_import;

/* Runs on the thread pool. Opens the FIFO for writing once keepassxc-cli has opened it for
 * reading (non-blocking opens fail with ENXIO until then), writes the XML and closes it. A
 * reader that goes away gives EPIPE; SIGPIPE is blocked in this thread and consumed so the
 * host does not die of it. */
static void writer_work(void *arg) {
    kx_import *im = arg;
    sigset_t pipe_set, old;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    int fd = -1, got_pipe = 0;
    struct timespec nap = {0, 2 * 1000 * 1000};
    long long waited_ms = 0, limit_ms = im->st->timeout * 1000;
    im->writer_rc = 0;
    for (;;) {
        fd = open(im->tmp->fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd >= 0)
            break;
        if (errno != ENXIO && errno != EINTR) {
            im->writer_rc = OL_EIO;
            goto out;
        }
        if (atomic_load(&im->abort) || waited_ms > limit_ms) {
            im->writer_rc = OL_ECANCELED;
            goto out;
        }
        nanosleep(&nap, NULL);
        waited_ms += 2;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    size_t off = 0;
    while (off < im->xml->len) {
        ssize_t n = write(fd, im->xml->data + off, im->xml->len - off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            got_pipe = errno == EPIPE;
            im->writer_rc = OL_EIO;
            break;
        }
        off += (size_t)n;
    }
    close(fd);
out:
    if (got_pipe) {
        struct timespec zero = {0, 0};
        sigtimedwait(&pipe_set, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static void import_finish(kx_import *im) {
    if (--im->waiting > 0)
        return;
    if (im->rc == 0 && im->writer_rc != 0) {
        im->rc = OL_EIO;
        im->reason = strdup("keepassxc: keepassxc-cli import did not read the whole batch");
    }
    kx_state *st = im->st;
    kx_step step = im->step;
    int rc = im->rc;
    char *reason = im->reason;
    free(im);
    step_end(st, step, rc, reason);
}

static void import_writer_done(void *arg, int status) {
    kx_import *im = arg;
    if (status != 0)
        im->writer_rc = status;
    import_finish(im);
}

static void import_ran(kx_state *st, void *arg, const ol_proc_result *res) {
    kx_import *im = arg;
    atomic_store(&im->abort, 1);
    if (!run_ok(res)) {
        im->rc = res->result != 0 ? res->result : OL_EIO;
        im->reason = run_reason(st, "import", res);
    }
    import_finish(im);
}

/* Imports xml into dest (which must not exist) with the store's credentials. */
static int kx_import_xml(kx_state *st, kx_tmp *tmp, storebuf *xml, const char *dest, kx_step step) {
    kx_import *im = calloc(1, sizeof(*im));
    if (im == NULL)
        return OL_ENOMEM;
    im->st = st;
    im->tmp = tmp;
    im->dest = dest;
    im->xml = xml;
    im->step = step;
    atomic_init(&im->abort, 0);
    const char *argv[12];
    size_t n = 0;
    argv[n++] = KX_PROGRAM;
    argv[n++] = "import";
    if (st->password != NULL)
        argv[n++] = "-p";
    if (st->key_file != NULL) {
        argv[n++] = "--set-key-file";
        argv[n++] = st->key_file;
    }
    argv[n++] = tmp->fifo;
    argv[n++] = dest;
    argv[n] = NULL;
    int rc = kx_run_cli(st, NULL, argv, 2, import_ran, im);
    if (rc != 0) {
        free(im);
        return rc;
    }
    im->waiting = 2;
    rc = st->host->work_queue(st->stage, writer_work, import_writer_done, im);
    if (rc != 0) {
        /* The program cannot open the FIFO's other end in vain for long: it waits for a
         * writer, so open it once here to let it see end of file. */
        atomic_store(&im->abort, 1);
        int fd = open(tmp->fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd >= 0)
            close(fd);
        im->writer_rc = rc;
        import_finish(im);
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * The batch as KeePass 2 XML
 * ------------------------------------------------------------------------------------- */

static void xml_times(storebuf *b, const char *mod, const char *created, const char *moved) {
    storebuf_str(b, "<Times><LastModificationTime>");
    storebuf_str(b, mod);
    storebuf_str(b, "</LastModificationTime><CreationTime>");
    storebuf_str(b, created);
    storebuf_str(b, "</CreationTime><LastAccessTime>");
    storebuf_str(b, created);
    storebuf_str(b, "</LastAccessTime><ExpiryTime>");
    storebuf_str(b, created);
    storebuf_str(b, "</ExpiryTime><Expires>False</Expires><UsageCount>0</UsageCount>"
                    "<LocationChanged>");
    storebuf_str(b, moved);
    storebuf_str(b, "</LocationChanged></Times>");
}

static int xml_string(storebuf *b, const char *key, const char *value, int protect) {
    storebuf_str(b, "<String><Key>");
    storebuf_str(b, key);
    storebuf_str(b, protect ? "</Key><Value ProtectInMemory=\"True\">" : "</Key><Value>");
    int rc = buf_xml(b, value);
    storebuf_str(b, "</Value></String>");
    return rc;
}

static void xml_open_group(storebuf *b, const char *path, const char *name) {
    uint8_t u[16];
    path_uuid("group", path, u);
    storebuf_str(b, "<Group><UUID>");
    buf_base64(b, u, 16);
    storebuf_str(b, "</UUID><Name>");
    buf_xml(b, name);
    storebuf_str(b, "</Name>");
    /* Old times: merge copies a group's name from the newer side, and a user's renaming of
     * opsline's group must win. */
    xml_times(b, KX_GROUP_TIME, KX_GROUP_TIME, KX_GROUP_TIME);
}

static void xml_head(storebuf *b) {
    storebuf_str(b, "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<KeePassFile>"
                    "<Meta><Generator>opsline</Generator></Meta><Root>");
}

/* Group paths in tree order: '/' sorts before every other character, so a group's
 * subgroups follow it directly ("a", "a/b", "a-c") and each group is opened once. */
static int group_cmp(const char *a, const char *b) {
    for (;; a++, b++) {
        unsigned char x = *a == '/' ? 1 : (unsigned char)*a;
        unsigned char y = *b == '/' ? 1 : (unsigned char)*b;
        if (x != y || x == 0)
            return (int)x - (int)y;
    }
}

static int put_cmp(const void *a, const void *b) {
    const kx_put *x = *(kx_put *const *)a, *y = *(kx_put *const *)b;
    int c = group_cmp(x->group, y->group);
    return c != 0 ? c : strcmp(x->title, y->title);
}

/* Number of leading path segments two group paths share. */
static size_t common_segments(const char *a, const char *b) {
    size_t n = 0, i = 0;
    for (;; i++) {
        int ea = a[i] == '\0' || a[i] == '/', eb = b[i] == '\0' || b[i] == '/';
        if (ea && eb) {
            n++;
            if (a[i] == '\0' || b[i] == '\0')
                return n;
            continue;
        }
        if (a[i] != b[i])
            return n;
    }
}

static size_t count_segments(const char *g) {
    size_t n = 1;
    for (; *g; g++)
        n += *g == '/';
    return n;
}

static void xml_close_groups(storebuf *b, size_t *depth, size_t keep) {
    while (*depth > keep) {
        storebuf_str(b, "</Group>");
        (*depth)--;
    }
}

/* Opens the groups of the path group below the first *depth, which are open already. */
static int xml_open_groups(storebuf *b, const char *group, size_t *depth, size_t segs) {
    if (*depth >= segs)
        return 0;
    const char *s = group;
    for (size_t k = 0; k < *depth; k++)
        s = strchr(s, '/') + 1;
    while (*depth < segs) {
        const char *e = strchr(s, '/');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        size_t plen = (size_t)(s - group) + len;
        char *gpath = strndup(group, plen);
        char *name = strndup(s, len);
        if (gpath == NULL || name == NULL) {
            free(gpath);
            free(name);
            return OL_ENOMEM;
        }
        xml_open_group(b, gpath, name);
        free(gpath);
        free(name);
        (*depth)++;
        s = e ? e + 1 : s + len;
    }
    return 0;
}

/* Moves from the group path open (NULL: the root) with depth groups open to group: closes
 * the groups they do not share, opens the rest of group. */
static int xml_enter_group(storebuf *b, const char *open, const char *group, size_t *depth) {
    size_t keep = open ? common_segments(open, group) : 0;
    size_t segs = count_segments(group);
    if (keep > *depth)
        keep = *depth;
    if (keep > segs)
        keep = segs;
    xml_close_groups(b, depth, keep);
    return xml_open_groups(b, group, depth, segs);
}

/* The entry of p, modified a second after its last write in this run (merge keeps the side
 * modified last); an entry XML cannot carry fails p. */
static int xml_entry(kx_state *st, kx_put *p, int64_t now, storebuf *b) {
    kx_known *k = known_find(st, p->path);
    int64_t t = now;
    if (k != NULL && k->written >= t)
        t = k->written + 1;
    char mod[32];
    iso_time(t, mod);
    storebuf_str(b, "<Entry><UUID>");
    buf_base64(b, p->uuid, 16);
    storebuf_str(b, "</UUID>");
    xml_times(b, mod, mod, mod);
    storebuf_str(b, "<CustomData><Item><Key>opsline</Key><Value>managed by opsline</Value>"
                    "</Item></CustomData>");
    int rc = xml_string(b, "Title", p->title, 0);
    rc |= xml_string(b, "UserName", p->key_id, 0);
    rc |= xml_string(b, "Password", p->secret, 1);
    rc |= xml_string(b, "URL", p->url, 0);
    rc |= xml_string(b, "Notes", p->notes, 0);
    storebuf_str(b, "</Entry>");
    if (rc != 0)
        put_fail(p, OL_EINVAL,
                 strdup("keepassxc: the entry holds a control character XML cannot carry"));
    if (known_set(st, p->path, p->item_name, t, 0) != 0)
        return OL_ENOMEM;
    return 0;
}

/* The entries of the batch (puts still without a result) as one XML document, groups
 * nested, each group and entry with its path's UUID. Entries carry custom data, which makes
 * keepassxc-cli save the database as KDBX 4. */
static int batch_xml(kx_state *st, kx_put **sorted, size_t n, storebuf *b) {
    int64_t now = (int64_t)time(NULL);
    uint8_t root[16];
    path_uuid("root", "", root);
    xml_head(b);
    storebuf_str(b, "<Group><UUID>");
    buf_base64(b, root, 16);
    storebuf_str(b, "</UUID><Name>Root</Name>");
    xml_times(b, KX_GROUP_TIME, KX_GROUP_TIME, KX_GROUP_TIME);
    const char *open = NULL; /* group path open now */
    size_t depth = 0;
    for (size_t i = 0; i < n; i++) {
        kx_put *p = sorted[i];
        if (!live(p))
            continue;
        if (xml_enter_group(b, open, p->group, &depth) != 0)
            return OL_ENOMEM;
        open = p->group;
        if (xml_entry(st, p, now, b) != 0)
            return OL_ENOMEM;
    }
    xml_close_groups(b, &depth, 0);
    storebuf_str(b, "</Group></Root></KeePassFile>\n");
    return b->failed ? OL_ENOMEM : 0;
}

/* ---------------------------------------------------------------------------------------
 * A batch: temp dir, import, lock, (dry run), merge, unlock, clean up, complete. The next
 * batch imports while this one merges; merges are serialised by the lock on the database.
 * ------------------------------------------------------------------------------------- */

struct kx_flush {
    kx_flush *next;
    kx_state *st;
    kx_put **puts; /* sorted by group, title */
    size_t n;
    int imported; /* past its import phase (holds or held the lock) */
    kx_tmp *tmp;
    ol_lock *lock;
    storebuf xml;
    int checked; /* the dry run has been done */
    int retried; /* entries merge kept were sent once more */
    int rc;
    char *reason; /* the batch failed as a whole */
};

static void flush_cycle(kx_state *st);
static void flush_kick(kx_state *st);
static void flush_import(kx_flush *f);
static void flush_merge_ran(kx_state *st, void *arg, const ol_proc_result *res);

/* The import phase is over (or the batch ended without one): another batch may import. */
static void flush_imported_phase_end(kx_flush *f) {
    if (!f->imported) {
        f->imported = 1;
        f->st->importing = 0;
    }
}

static void flush_end(kx_flush *f) {
    kx_state *st = f->st;
    const ol_host *h = st->host;
    storebuf_wipe(&f->xml);
    if (f->lock != NULL)
        h->lock_release(f->lock);
    flush_imported_phase_end(f);
    for (kx_flush **pp = &st->flushes; *pp; pp = &(*pp)->next)
        if (*pp == f) {
            *pp = f->next;
            break;
        }
    for (size_t i = 0; i < f->n; i++) {
        kx_put *p = f->puts[i];
        if (f->rc != 0 && live(p))
            put_fail(p, f->rc, f->reason ? strdup(f->reason) : NULL);
        if (p->result != 0) {
            h->store_done(st->stage, p->item, p->result, NULL,
                          p->reason ? p->reason : "keepassxc: the entry was not stored");
        } else {
            h->log(st->stage, p->item, OL_LOG_DEBUG, "wrote access key %s to %s as %s", p->key_id,
                   st->db, p->path);
            h->store_done(st->stage, p->item, 0, NULL, NULL);
        }
        put_free(st->host, p);
    }
    free(f->puts);
    tmp_free(f->tmp);
    free(f->reason);
    free(f);
    flush_kick(st);
}

static void flush_fail(void *arg, int rc, char *reason);

static void flush_cleaned(kx_state *st, void *arg) {
    (void)st;
    flush_end(arg);
}

/* Removes the temporary directory off the loop, or on it when the run is being stopped
 * (the work queue refuses new work then; a few unlinks are quick). */
static void tmp_close_now(kx_tmp *tmp) {
    kx_work w = {.tmp = tmp};
    tmp_close_work(&w);
}

static void flush_cleanup(kx_flush *f) {
    if (f->tmp == NULL || f->tmp->dir == NULL) {
        flush_end(f);
        return;
    }
    if (kx_queue(f->st, f->tmp, tmp_close_work, (kx_step){flush_cleaned, NULL, f}) != 0) {
        tmp_close_now(f->tmp);
        flush_end(f);
    }
}

static void flush_fail(void *arg, int rc, char *reason) {
    kx_flush *f = arg;
    first_failure(&f->rc, &f->reason, rc, reason);
    flush_cleanup(f);
}

/* One line of merge's change list: "\t<what> <name> [<32 hex>]". Returns the hex (or NULL)
 * and what the line says about it. */
enum { CH_OTHER = 0, CH_CREATED, CH_UPDATED, CH_OLDER };

static const char *change_line(const char *line, size_t len, int *kind) {
    *kind = CH_OTHER;
    while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' '))
        len--;
    if (len < 35 || line[len - 1] != ']' || line[len - 34] != '[')
        return NULL;
    const char *s = line;
    while (*s == '\t' || *s == ' ')
        s++;
    if (strncmp(s, "Creating missing ", 17) == 0)
        *kind = CH_CREATED;
    else if (strncmp(s, "Synchronizing from newer source ", 32) == 0)
        *kind = CH_UPDATED;
    else if (strncmp(s, "Synchronizing from older source ", 32) == 0)
        *kind = CH_OLDER;
    return line + len - 33;
}

/* Calls fn for every change line of merge's output. */
static void each_change(const char *out, size_t len,
                        void (*fn)(kx_flush *f, const char *hex, int kind), kx_flush *f) {
    size_t pos = 0;
    while (pos < len) {
        const char *nl = memchr(out + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - out) : len;
        int kind;
        const char *hex = change_line(out + pos, end - pos, &kind);
        if (hex != NULL)
            fn(f, hex, kind);
        pos = end + 1;
    }
}

/* ---- the dry run: is every path that existed before this run opsline's? ---- */

static int group_prefix_existed(const kx_state *st, const char *group, size_t len) {
    char *g = malloc(len + 2);
    if (g == NULL)
        return 0;
    memcpy(g, group, len);
    g[len] = '/';
    g[len + 1] = '\0';
    int r = existed(st, g) && !verified((kx_state *)st, g);
    free(g);
    return r;
}

/* Does the put touch a path that existed when the run started and has not been shown to be
 * opsline's since? */
static int put_needs_check(const kx_state *st, const kx_put *p) {
    if (existed(st, p->path) && !verified((kx_state *)st, p->path))
        return 1;
    for (const char *s = p->group;; s++) {
        if (*s == '/' || *s == '\0')
            if (group_prefix_existed(st, p->group, (size_t)(s - p->group)))
                return 1;
        if (*s == '\0')
            return 0;
    }
}

static void dry_line(kx_flush *f, const char *hex, int kind) {
    kx_state *st = f->st;
    if (kind != CH_CREATED)
        return;
    for (size_t i = 0; i < f->n; i++) {
        kx_put *p = f->puts[i];
        if (!live(p))
            continue;
        if (memcmp(hex, p->hex, 32) == 0 && existed(st, p->path) && !verified(st, p->path)) {
            put_fail(p, OL_EEXIST,
                     reason_dup(st->host,
                                st->host->format("keepassxc: %s already holds an entry %s that "
                                                 "opsline did not create (another UUID): "
                                                 "rename or remove it, or choose another "
                                                 "keepassxc.title",
                                                 st->db, p->path)));
            continue;
        }
        /* A group of the put's path created anew although the path existed: foreign. */
        for (const char *s = p->group;; s++) {
            if (*s == '/' || *s == '\0') {
                size_t len = (size_t)(s - p->group);
                char *g = strndup(p->group, len);
                uint8_t u[16];
                char h[33];
                if (g != NULL) {
                    path_uuid("group", g, u);
                    uuid_hex(u, h);
                    if (memcmp(hex, h, 32) == 0 && group_prefix_existed(st, p->group, len))
                        put_fail(
                            p, OL_EEXIST,
                            reason_dup(st->host, st->host->format(
                                                     "keepassxc: %s already has a group %s that "
                                                     "opsline did not create (another UUID): "
                                                     "rename it, or choose another keepassxc.group",
                                                     st->db, g)));
                    free(g);
                }
            }
            if (*s == '\0')
                break;
        }
    }
}

static void flush_checked(kx_state *st, void *arg, const ol_proc_result *res) {
    kx_flush *f = arg;
    if (!run_ok(res)) {
        flush_fail(f, res->result ? res->result : OL_EIO, run_reason(st, "merge --dry-run", res));
        return;
    }
    f->checked = 1;
    size_t before = 0, after = 0;
    for (size_t i = 0; i < f->n; i++)
        before += live(f->puts[i]);
    each_change(res->out, res->out_len, dry_line, f);
    for (size_t i = 0; i < f->n; i++)
        after += live(f->puts[i]);
    if (after == 0) {
        flush_cleanup(f);
        return;
    }
    if (after != before) {
        /* Rebuild the batch without the refused entries. */
        storebuf_wipe(&f->xml);
        flush_import(f);
        return;
    }
    /* The same temporary database is good: merge it for real. */
    const char *argv[16];
    const char *flags[] = {"-s", NULL};
    const char *args[] = {f->tmp->db, NULL};
    int rc =
        kx_run_cli(st, NULL, unlock_argv(st, argv, "merge", flags, args), 1, flush_merge_ran, f);
    if (rc != 0)
        flush_fail(f, rc, strdup("keepassxc: cannot run keepassxc-cli merge"));
}

/* ---- the merge ---- */

static void merge_line(kx_flush *f, const char *hex, int kind) {
    for (size_t i = 0; i < f->n; i++) {
        kx_put *p = f->puts[i];
        if (!live(p) || memcmp(hex, p->hex, 32) != 0)
            continue;
        if (kind == CH_CREATED || kind == CH_UPDATED)
            p->seen = 1;
        else if (kind == CH_OLDER && p->seen == 0)
            p->seen = 2;
        return;
    }
}

/* The live puts merge did not create or update, marked to go once more a second later than
 * the last write; the ones it did are merged. Returns how many go again (none after a
 * retry). */
static size_t flush_mark_again(kx_state *st, kx_flush *f) {
    size_t again = 0;
    int64_t now = (int64_t)time(NULL);
    for (size_t i = 0; i < f->n && !f->retried; i++) {
        kx_put *p = f->puts[i];
        if (live(p) && p->seen != 1) {
            known_set(st, p->path, p->item_name, now, 0);
            again++;
        }
    }
    for (size_t i = 0; again > 0 && i < f->n; i++) {
        kx_put *p = f->puts[i];
        if (live(p) && p->seen == 1)
            p->merged = 1;
        p->seen = 0;
    }
    return again;
}

/* The entry of p and its groups are opsline's now. */
static void put_mark_owned(kx_state *st, kx_put *p) {
    p->merged = 1;
    known_set(st, p->path, p->item_name, 0, 1);
    for (const char *s = p->group;; s++) {
        if (*s == '/' || *s == '\0') {
            char *g = malloc((size_t)(s - p->group) + 2);
            if (g != NULL) {
                memcpy(g, p->group, (size_t)(s - p->group));
                g[s - p->group] = '/';
                g[s - p->group + 1] = '\0';
                known_set(st, g, NULL, 0, 1);
                free(g);
            }
        }
        if (*s == '\0')
            break;
    }
}

static void flush_settle_puts(kx_state *st, kx_flush *f) {
    const ol_host *h = st->host;
    for (size_t i = 0; i < f->n; i++) {
        kx_put *p = f->puts[i];
        if (live(p) && p->seen != 1) {
            int older = p->seen == 2;
            put_fail(p, OL_EIO,
                     reason_dup(h, h->format("keepassxc: merge did not update %s in %s%s", p->path,
                                             st->db,
                                             older ? ": the entry there is newer than this run "
                                                     "(clock?); run again"
                                                   : "")));
            continue;
        }
        if (p->result == 0)
            put_mark_owned(st, p);
    }
}

static void flush_merge_ran(kx_state *st, void *arg, const ol_proc_result *res) {
    kx_flush *f = arg;
    if (!run_ok(res)) {
        flush_fail(f, res->result ? res->result : OL_EIO, run_reason(st, "merge", res));
        return;
    }
    /* Every entry written must show up as created or updated in the change list. Merge
     * keeps the side modified last (to the second): an entry edited in this very second
     * (or a clock behind the database's) keeps its values. Those entries go once more,
     * a second later than the last write. */
    each_change(res->out, res->out_len, merge_line, f);
    if (flush_mark_again(st, f) > 0) {
        f->retried = 1;
        f->checked = 1;
        storebuf_wipe(&f->xml);
        flush_import(f);
        return;
    }
    flush_settle_puts(st, f);
    flush_cleanup(f);
}

static void flush_merge(kx_flush *f);

static void flush_locked(void *arg, int status, ol_lock *lock) {
    kx_flush *f = arg;
    if (status != 0) {
        flush_fail(f, status,
                   strdup("keepassxc: the run was stopped before the batch was written"));
        return;
    }
    f->lock = lock;
    flush_imported_phase_end(f);
    /* Puts that came in meanwhile are the next batch: it imports while this one merges. */
    if (f->st->pending != NULL)
        flush_cycle(f->st);
    flush_merge(f);
}

static void flush_imported(kx_state *st, void *arg) {
    kx_flush *f = arg;
    storebuf_wipe(&f->xml); /* keepassxc-cli has it all */
    if (f->lock != NULL) {
        flush_merge(f); /* rebuilt after the dry run, under the lock */
        return;
    }
    int rc = st->host->lock_acquire(st->stage, st->db, flush_locked, f);
    if (rc != 0)
        flush_fail(f, rc, strdup("keepassxc: cannot lock the database path"));
}

/* Under the lock: the dry run when a path existed before the run, then the merge. */
static void flush_merge(kx_flush *f) {
    kx_state *st = f->st;
    int rc, check = 0;
    for (size_t i = 0; i < f->n && !f->checked; i++)
        if (live(f->puts[i]) && put_needs_check(st, f->puts[i]))
            check = 1;
    const char *argv[16];
    const char *args[] = {f->tmp->db, NULL};
    if (check) {
        const char *flags[] = {"-s", "--dry-run", NULL};
        rc = kx_run_cli(st, NULL, unlock_argv(st, argv, "merge", flags, args), 1, flush_checked, f);
    } else {
        const char *flags[] = {"-s", NULL};
        rc = kx_run_cli(st, NULL, unlock_argv(st, argv, "merge", flags, args), 1, flush_merge_ran,
                        f);
    }
    if (rc != 0)
        flush_fail(f, rc, strdup("keepassxc: cannot run keepassxc-cli merge"));
}

static void flush_reset_done(kx_state *st, void *arg) {
    kx_flush *f = arg;
    int rc = batch_xml(st, f->puts, f->n, &f->xml);
    if (rc != 0) {
        flush_fail(f, rc, strdup("keepassxc: out of memory building the batch"));
        return;
    }
    size_t n_live = 0;
    for (size_t i = 0; i < f->n; i++)
        n_live += live(f->puts[i]);
    if (n_live == 0) {
        flush_cleanup(f);
        return;
    }
    rc = kx_import_xml(st, f->tmp, &f->xml, f->tmp->db, (kx_step){flush_imported, flush_fail, f});
    if (rc != 0)
        flush_fail(f, rc, strdup("keepassxc: cannot run keepassxc-cli import"));
}

static void flush_import(kx_flush *f) {
    int rc = kx_queue(f->st, f->tmp, tmp_reset_work, (kx_step){flush_reset_done, flush_fail, f});
    if (rc != 0)
        flush_fail(f, rc, strdup("keepassxc: cannot queue work"));
}

static void flush_tmp_ready(kx_state *st, void *arg) {
    (void)st;
    kx_flush *f = arg;
    flush_import(f);
}

/* Starts a batch of the puts held now, unless one is importing already (it starts the next
 * when its import is done). */
static void flush_cycle(kx_state *st) {
    if (st->importing || st->pending == NULL)
        return;
    size_t n = 0;
    for (kx_put *p = st->pending; p; p = p->next)
        n++;
    kx_flush *f = calloc(1, sizeof(*f));
    kx_put **puts = calloc(n, sizeof(*puts));
    kx_tmp *tmp = calloc(1, sizeof(*tmp));
    if (f == NULL || puts == NULL || tmp == NULL) {
        free(f);
        free(puts);
        free(tmp);
        return; /* the puts stay held; the next put or flush tries again */
    }
    size_t i = 0;
    for (kx_put *p = st->pending; p; p = p->next)
        puts[i++] = p;
    st->pending = NULL;
    qsort(puts, n, sizeof(*puts), put_cmp);
    f->st = st;
    f->xml = (storebuf)STOREBUF_INIT(st->host);
    f->puts = puts;
    f->n = n;
    f->tmp = tmp;
    f->next = st->flushes;
    st->flushes = f;
    st->importing = 1;
    int rc = kx_queue(st, f->tmp, tmp_open_work, (kx_step){flush_tmp_ready, flush_fail, f});
    if (rc != 0)
        flush_fail(f, rc, strdup("keepassxc: cannot queue work"));
}

static void flush_answer(void *arg, int status) {
    kx_state *st = arg;
    (void)status;
    st->answer_scheduled = 0;
    if (st->flushes != NULL || st->pending != NULL || st->get_queue != NULL ||
        st->gets_running > 0 || st->dels_running > 0) {
        flush_kick(st);
        return;
    }
    size_t calls = st->flush_calls;
    st->flush_calls = 0;
    for (size_t i = 0; i < calls; i++)
        st->host->flush_done(st->stage, 0, NULL);
}

/* Starts the next batch when puts are held, and answers the flush calls once nothing is
 * held or being written. The answer also waits for the gets and deletes in flight (the host
 * counts them as work to flush) and comes from a timer, never from inside flush: the host
 * would flush again at once and recurse. */
static void flush_kick(kx_state *st) {
    flush_cycle(st);
    if (st->flush_calls == 0 || st->flushes != NULL || st->pending != NULL)
        return;
    if (st->get_queue != NULL || st->gets_running > 0 || st->dels_running > 0 ||
        st->answer_scheduled)
        return;
    if (st->host->timer_start(st->stage, 0, flush_answer, st, NULL) == 0) {
        st->answer_scheduled = 1;
        return;
    }
    size_t calls = st->flush_calls;
    st->flush_calls = 0;
    for (size_t i = 0; i < calls; i++)
        st->host->flush_done(st->stage, OL_ENOMEM, "keepassxc: cannot start a timer");
}

static void gather_fired(void *arg, int status) {
    kx_state *st = arg;
    st->gather_scheduled = 0;
    if (status == 0)
        flush_cycle(st);
}

/* Group commit: the store does not wait for the host's flush (which comes when every item
 * in progress waits on a store, so nothing else moves meanwhile) but writes a batch shortly
 * after its first put, and the next one as soon as the last has been imported. */
static void gather_soon(kx_state *st) {
    if (st->importing || st->gather_scheduled)
        return;
    if (st->host->timer_start(st->stage, KX_GATHER_MS, gather_fired, st, NULL) == 0)
        st->gather_scheduled = 1;
}

static int kx_flush_op(ol_stage *stage, void *state) {
    kx_state *st = state;
    (void)stage;
    st->flush_calls++;
    flush_kick(st);
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * put, get, del
 * ------------------------------------------------------------------------------------- */

static kx_put *held_put(kx_state *st, const char *path) {
    for (kx_put *p = st->pending; p; p = p->next)
        if (strcmp(p->path, path) == 0)
            return p;
    for (kx_flush *f = st->flushes; f; f = f->next)
        for (size_t i = 0; i < f->n; i++)
            if (strcmp(f->puts[i]->path, path) == 0 && f->puts[i]->result == 0)
                return f->puts[i];
    return NULL;
}

/* The entry's group, title and URL for p's item. On a bad one, frees p, reports the item
 * done and returns 1. */
static int put_name_entry(kx_state *st, ol_stage *stage, kx_put *p, char **url) {
    const ol_host *h = st->host;
    ol_item *item = p->item;
    char *why = NULL;
    int rc = entry_names(st, item, &p->group, &p->title, &why);
    if (rc != 0) {
        put_free(st->host, p);
        h->store_done(stage, item, rc, NULL, why ? why : "keepassxc: bad entry name");
        h->free(why);
        return 1;
    }
    if (h->expand(item, st->url, url, &why) != 0) {
        char *r = h->format("keepassxc: option url '%s': %s", st->url, why ? why : "invalid");
        h->free(why);
        put_free(st->host, p);
        h->store_done(stage, item, OL_EINVAL, NULL, r ? r : "keepassxc: bad url");
        h->free(r);
        return 1;
    }
    return 0;
}

/* Copies the secret and the entry's fields into p (url is the host's, taken over). */
static int put_fill(const ol_host *h, kx_put *p, const ol_secret *secret, char *url) {
    const char *region = secret->region ? secret->region : h->item_region(p->item);
    p->item_name = strdup(h->item_name(p->item));
    p->path = join_path(p->group, p->title);
    p->url = reason_dup(h, url);
    p->key_id = strdup(secret->access_key_id);
    p->secret = strdup(secret->secret_access_key);
    p->region = strdup(region ? region : "");
    p->bucket = secret->bucket ? strdup(secret->bucket) : NULL;
    p->created = secret->created ? strdup(secret->created) : NULL;
    if (p->item_name == NULL || p->path == NULL || p->url == NULL || p->key_id == NULL ||
        p->secret == NULL || p->region == NULL)
        return OL_ENOMEM;
    if (p->created == NULL) {
        char now[32];
        iso_time((int64_t)time(NULL), now);
        p->created = strdup(now);
    }
    p->notes = reason_dup(
        h, h->format("region: %s\ncreated: %s", p->region, p->created ? p->created : ""));
    if (p->notes == NULL)
        return OL_ENOMEM;
    path_uuid("entry", p->path, p->uuid);
    uuid_hex(p->uuid, p->hex);
    return 0;
}

/* Two items must not share one entry: the second would overwrite the first's key. When p's
 * would, frees p, reports its item done and returns 1. */
static int put_refuse_shared(kx_state *st, ol_stage *stage, kx_put *p, const kx_put *held) {
    const ol_host *h = st->host;
    ol_item *item = p->item;
    kx_known *k = known_find(st, p->path);
    const char *owner = held ? held->item_name : k ? k->item_name : NULL;
    if (owner == NULL || strcmp(owner, p->item_name) == 0)
        return 0;
    char *r = h->format("keepassxc: %s and %s would share the entry %s: make "
                        "keepassxc.title or keepassxc.group tell them apart (e.g. "
                        "{bucket})",
                        owner, p->item_name, p->path);
    put_free(st->host, p);
    h->store_done(stage, item, OL_EEXIST, NULL, r ? r : "keepassxc: entry shared");
    h->free(r);
    return 1;
}

/* A newer key for an item whose put is held: the older put is superseded. */
static void put_supersede(kx_state *st, ol_stage *stage, kx_put *held) {
    const ol_host *h = st->host;
    for (kx_put **pp = &st->pending; *pp; pp = &(*pp)->next)
        if (*pp == held) {
            *pp = held->next;
            h->store_done(stage, held->item, OL_ECANCELED, NULL,
                          "keepassxc: superseded by a newer key for the same item");
            put_free(st->host, held);
            break;
        }
}

static int kx_put_op(ol_stage *stage, ol_item *item, void *state, const ol_secret *secret) {
    kx_state *st = state;
    const ol_host *h = st->host;
    kx_put *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return OL_ENOMEM;
    p->item = item;
    if (secret == NULL || secret->access_key_id == NULL || secret->secret_access_key == NULL) {
        put_free(st->host, p);
        h->store_done(stage, item, OL_EINVAL, NULL, "keepassxc: put without an access key");
        return 0;
    }
    char *url = NULL;
    if (put_name_entry(st, stage, p, &url) != 0)
        return 0;
    if (put_fill(h, p, secret, url) != 0) {
        put_free(st->host, p);
        return OL_ENOMEM;
    }
    kx_put *held = held_put(st, p->path);
    if (put_refuse_shared(st, stage, p, held) != 0)
        return 0;
    if (held != NULL && held->item == item)
        put_supersede(st, stage, held);
    p->next = st->pending;
    st->pending = p;
    gather_soon(st);
    h->log(stage, item, OL_LOG_DEBUG, "holding %s for the next flush", p->path);
    return 0;
}

/* ---- get ---- */

static void get_start(kx_state *st);
static void get_run(kx_state *st);

static void get_free(kx_get *g) {
    free(g->path);
    free(g);
}

/* `show -a UserName -a Password -a Notes` prints one value per line; the notes, last, may
 * span lines ("region: ...", "created: ..."). */
static void get_ran(kx_state *st, void *arg, const ol_proc_result *res) {
    kx_get *g = arg;
    const ol_host *h = st->host;
    st->gets_running--;
    if (!run_ok(res)) {
        cli_failed(st, g->item, "show", res, "Could not find entry", OL_ENOENT);
        get_free(g);
        get_start(st);
        return;
    }
    char *out = malloc(res->out_len + 1);
    if (out != NULL && res->out == NULL)
        out[0] = '\0';
    else if (out != NULL)
        memcpy(out, res->out, res->out_len + 1);
    if (out == NULL) {
        h->store_done(st->stage, g->item, OL_ENOMEM, NULL, "keepassxc: out of memory");
        get_free(g);
        get_start(st);
        return;
    }
    char *lines[64];
    size_t n = 0;
    for (char *s = out; s != NULL && n < 64;) {
        lines[n++] = s;
        s = strchr(s, '\n');
        if (s != NULL)
            *s++ = '\0';
    }
    char *user = n > 0 ? lines[0] : NULL;
    char *pass = n > 1 ? lines[1] : NULL;
    const char *region = NULL, *created = NULL;
    for (size_t i = 2; i < n; i++) {
        if (strncmp(lines[i], "region: ", 8) == 0)
            region = lines[i] + 8;
        else if (strncmp(lines[i], "created: ", 9) == 0)
            created = lines[i] + 9;
    }
    if (user == NULL || pass == NULL || *user == '\0' || *pass == '\0') {
        char *r = h->format("keepassxc: the entry %s in %s has no user name (access key id) or "
                            "no password (secret)",
                            g->path, st->db);
        h->store_done(st->stage, g->item, OL_EINVAL, NULL, r ? r : "keepassxc: incomplete entry");
        h->free(r);
    } else {
        ol_secret found = {
            .struct_size = sizeof(found),
            .access_key_id = user,
            .secret_access_key = pass,
            .region = region,
            .bucket = h->item_get(g->item, OL_KEY_BUCKET_NAME),
            .user = h->item_get(g->item, OL_KEY_IAM_USER),
            .created = created,
        };
        h->store_done(st->stage, g->item, 0, &found, NULL);
    }
    free_wiped(h, out, res->out_len);
    get_free(g);
    get_start(st);
}

static void get_start(kx_state *st) {
    get_run(st);
    flush_kick(st);
}

static void get_run(kx_state *st) {
    while (st->get_queue != NULL && st->gets_running < KX_MAX_GETS) {
        kx_get *g = st->get_queue;
        st->get_queue = g->next;
        const char *argv[16];
        const char *flags[] = {"-s", "-a", "UserName", "-a", "Password", "-a", "Notes", NULL};
        const char *args[] = {g->path, NULL};
        st->gets_running++;
        int rc = kx_run_cli(st, g->item, unlock_argv(st, argv, "show", flags, args), 1, get_ran, g);
        if (rc != 0) {
            st->gets_running--;
            st->host->store_done(st->stage, g->item, rc, NULL,
                                 "keepassxc: cannot run keepassxc-cli show");
            get_free(g);
        }
    }
}

/* The item's entry path, for get and del. Returns 0 with *path (malloc'd); 0 with *path
 * NULL when the templates give no valid name (the operation is completed then); or
 * OL_ENOMEM. */
static int op_path(kx_state *st, ol_stage *stage, ol_item *item, char **path) {
    const ol_host *h = st->host;
    char *group = NULL, *title = NULL, *why = NULL;
    *path = NULL;
    int rc = entry_names(st, item, &group, &title, &why);
    if (rc != 0) {
        h->store_done(stage, item, rc, NULL, why ? why : "keepassxc: bad entry name");
        h->free(why);
        return 0;
    }
    *path = join_path(group, title);
    free(group);
    free(title);
    return *path != NULL ? 0 : OL_ENOMEM;
}

static int kx_get_op(ol_stage *stage, ol_item *item, void *state) {
    kx_state *st = state;
    const ol_host *h = st->host;
    char *path;
    int rc = op_path(st, stage, item, &path);
    if (path == NULL)
        return rc;
    kx_put *held = held_put(st, path);
    if (held != NULL && held->item == item) {
        ol_secret found = {.struct_size = sizeof(found),
                           .access_key_id = held->key_id,
                           .secret_access_key = held->secret,
                           .region = held->region,
                           .bucket = held->bucket,
                           .user = h->item_get(item, OL_KEY_IAM_USER),
                           .created = held->created};
        free(path);
        h->store_done(stage, item, 0, &found, NULL);
        return 0;
    }
    kx_get *g = calloc(1, sizeof(*g));
    if (g == NULL) {
        free(path);
        return OL_ENOMEM;
    }
    g->st = st;
    g->item = item;
    g->path = path;
    kx_get **tail = &st->get_queue;
    while (*tail)
        tail = &(*tail)->next;
    *tail = g;
    get_start(st);
    return 0;
}

/* ---- del ---- */

typedef struct kx_del {
    kx_state *st;
    ol_item *item;
    char *path;
    ol_lock *lock;
} kx_del;

static void del_finish(kx_del *d) {
    kx_state *st = d->st;
    free(d->path);
    free(d);
    flush_kick(st);
}

static void del_ran(kx_state *st, void *arg, const ol_proc_result *res) {
    kx_del *d = arg;
    const ol_host *h = st->host;
    h->lock_release(d->lock);
    st->dels_running--;
    if (run_ok(res))
        h->store_done(st->stage, d->item, 0, NULL, NULL);
    else
        cli_failed(st, d->item, "rm", res, "not found", 0);
    del_finish(d);
}

static void del_locked(void *arg, int status, ol_lock *lock) {
    kx_del *d = arg;
    kx_state *st = d->st;
    if (status != 0) {
        st->dels_running--;
        st->host->store_done(st->stage, d->item, status, NULL, "keepassxc: the run was stopped");
        del_finish(d);
        return;
    }
    d->lock = lock;
    const char *argv[16];
    const char *args[] = {d->path, NULL};
    int rc = kx_run_cli(st, d->item, unlock_argv(st, argv, "rm", NULL, args), 1, del_ran, d);
    if (rc != 0) {
        st->host->lock_release(lock);
        st->dels_running--;
        st->host->store_done(st->stage, d->item, rc, NULL,
                             "keepassxc: cannot run keepassxc-cli rm");
        del_finish(d);
    }
}

static int kx_del_op(ol_stage *stage, ol_item *item, void *state) {
    kx_state *st = state;
    const ol_host *h = st->host;
    kx_del *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return OL_ENOMEM;
    int rc = op_path(st, stage, item, &d->path);
    if (d->path == NULL) {
        free(d);
        return rc;
    }
    /* A put still held for this entry is withdrawn. */
    for (kx_put **pp = &st->pending; *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->path, d->path) == 0) {
            kx_put *p = *pp;
            *pp = p->next;
            h->store_done(stage, p->item, OL_ECANCELED, NULL,
                          "keepassxc: the entry was deleted before it was written");
            put_free(st->host, p);
            break;
        }
    known_forget(st, d->path);
    d->st = st;
    d->item = item;
    rc = h->lock_acquire(stage, st->db, del_locked, d);
    if (rc != 0) {
        free(d->path);
        free(d);
        return rc;
    }
    st->dels_running++;
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * prepare: credentials, keepassxc-cli present, database there (or created), and it opens
 * ------------------------------------------------------------------------------------- */

typedef struct kx_prep {
    kx_state *st;
    kx_tmp *tmp;
    storebuf xml;
    char *reason;
    int rc;
    /* filled off the loop */
    int exists;
    char *abs;
    char *pw; /* from password_file */
    int pw_rc;
    char *pw_why;
} kx_prep;

static void prep_finish(kx_prep *p);
static void prep_open(kx_prep *p);

static void prep_fail(void *arg, int rc, char *reason) {
    kx_prep *p = arg;
    first_failure(&p->rc, &p->reason, rc, reason);
    prep_finish(p);
}

static void prep_tmp_closed(kx_state *st, void *arg) {
    (void)st;
    kx_prep *p = arg;
    tmp_free(p->tmp);
    p->tmp = NULL;
    prep_finish(p);
}

static void prep_finish(kx_prep *p) {
    kx_state *st = p->st;
    if (p->tmp != NULL && p->tmp->dir != NULL) {
        if (kx_queue(st, p->tmp, tmp_close_work, (kx_step){prep_tmp_closed, NULL, p}) == 0)
            return;
        tmp_close_now(p->tmp);
    }
    tmp_free(p->tmp);
    p->tmp = NULL;
    storebuf_wipe(&p->xml);
    free(p->abs);
    free_wiped_str(st->host, p->pw);
    free(p->pw_why);
    int rc = p->rc;
    char *reason = p->reason;
    free(p);
    st->host->prepare_done(st->stage, rc,
                           rc != 0 ? (reason ? reason : "keepassxc: prepare failed") : NULL);
    free(reason);
}

/* Off the loop: read the password file, look at the database and its directory. */
static void prep_work(void *arg) {
    kx_prep *p = arg;
    kx_state *st = p->st;
    const ol_host *h = st->host;
    if (st->password_file != NULL) {
        char *data = NULL;
        size_t len = 0;
        p->pw_rc = h->read_private_file(st->password_file, KX_MAX_PASSWORD_FILE, &data, &len);
        if (p->pw_rc == 0) {
            size_t n = 0;
            while (n < len && data[n] != '\n' && data[n] != '\r')
                n++;
            p->pw = strndup(data, n);
            h->wipe(data, len);
            h->free(data);
            if (p->pw == NULL)
                p->pw_rc = OL_ENOMEM;
        } else {
            p->pw_why = reason_dup(h, h->format("keepassxc: cannot read the password file %s "
                                                "(option keepassxc.password_file): %s",
                                                st->password_file, h->strerror(p->pw_rc)));
        }
    }
    struct stat sb;
    p->exists = stat(st->database, &sb) == 0;
    /* The absolute path names the lock and keeps messages unambiguous. */
    const char *slash = strrchr(st->database, '/');
    char *dir = slash ? strndup(st->database, (size_t)(slash - st->database)) : strdup(".");
    const char *base = slash ? slash + 1 : st->database;
    if (dir != NULL && dir[0] == '\0') {
        free(dir);
        dir = strdup("/");
    }
    if (dir == NULL)
        return;
    if (!p->exists && st->create) {
        /* Make missing parent directories, private. */
        for (char *s = dir + 1; *s; s++)
            if (*s == '/') {
                *s = '\0';
                mkdir(dir, 0700);
                *s = '/';
            }
        mkdir(dir, 0700);
    }
    char *real = realpath(dir, NULL);
    if (real != NULL)
        p->abs = reason_dup(h, h->format("%s%s%s", real, strcmp(real, "/") ? "/" : "", base));
    free(real);
    free(dir);
}

static void prep_chmod_work(void *arg) {
    kx_work *w = arg;
    if (chmod(w->st->db, 0600) != 0) {
        w->rc = OL_EIO;
        w->reason =
            reason_dup(w->st->host, w->st->host->format("keepassxc: cannot make %s private: %s",
                                                        w->st->db, strerror(errno)));
    }
}

static void prep_listed(kx_state *st, void *arg, const ol_proc_result *res) {
    kx_prep *p = arg;
    if (!run_ok(res)) {
        prep_fail(p, res->result ? res->result : OL_EIO, run_reason(st, "ls", res));
        return;
    }
    /* Remember every path: a put to one of them is checked before it is merged. */
    size_t pos = 0;
    while (pos < res->out_len) {
        const char *nl = memchr(res->out + pos, '\n', res->out_len - pos);
        size_t end = nl ? (size_t)(nl - res->out) : res->out_len;
        size_t n = end - pos;
        const char *line = res->out + pos;
        pos = end + 1;
        if (n == 0 || (n >= 7 && memcmp(line + n - 7, "[empty]", 7) == 0))
            continue;
        if (st->n_existing == st->cap_existing) {
            size_t cap = st->cap_existing ? st->cap_existing * 2 : 64;
            char **e = realloc(st->existing, cap * sizeof(*e));
            if (e == NULL) {
                prep_fail(p, OL_ENOMEM, strdup("keepassxc: out of memory"));
                return;
            }
            st->existing = e;
            st->cap_existing = cap;
        }
        char *copy = strndup(line, n);
        if (copy == NULL) {
            prep_fail(p, OL_ENOMEM, strdup("keepassxc: out of memory"));
            return;
        }
        st->existing[st->n_existing++] = copy;
    }
    st->host->log(st->stage, NULL, OL_LOG_DEBUG, "%s opens (%zu groups and entries)", st->db,
                  st->n_existing);
    prep_finish(p);
}

static void prep_open(kx_prep *p) {
    kx_state *st = p->st;
    const char *argv[16];
    const char *flags[] = {"-R", "-f", NULL};
    int rc = kx_run_cli(st, NULL, unlock_argv(st, argv, "ls", flags, NULL), 1, prep_listed, p);
    if (rc != 0)
        prep_fail(p, rc, strdup("keepassxc: cannot run keepassxc-cli ls"));
}

static void prep_chmodded(kx_state *st, void *arg) {
    kx_prep *p = arg;
    st->host->log(st->stage, NULL, OL_LOG_INFO, "created %s (KDBX 4)", st->db);
    prep_open(p);
}

static void prep_created(kx_state *st, void *arg) {
    kx_prep *p = arg;
    storebuf_wipe(&p->xml);
    int rc = kx_queue(st, NULL, prep_chmod_work, (kx_step){prep_chmodded, prep_fail, p});
    if (rc != 0)
        prep_fail(p, rc, strdup("keepassxc: cannot queue work"));
}

static void prep_tmp_ready(kx_state *st, void *arg) {
    kx_prep *p = arg;
    /* A new database: the root group carries custom data so that keepassxc-cli writes
     * KDBX 4 from the start. */
    uint8_t u[16];
    char seed[64];
    snprintf(seed, sizeof(seed), "%lld/%ld", (long long)time(NULL), (long)getpid());
    path_uuid("database", seed, u);
    xml_head(&p->xml);
    storebuf_str(&p->xml, "<Group><UUID>");
    buf_base64(&p->xml, u, 16);
    storebuf_str(&p->xml, "</UUID><Name>Root</Name><CustomData><Item><Key>opsline</Key>"
                          "<Value>created by opsline</Value></Item></CustomData></Group></Root>"
                          "</KeePassFile>\n");
    if (p->xml.failed) {
        prep_fail(p, OL_ENOMEM, strdup("keepassxc: out of memory"));
        return;
    }
    int rc = kx_import_xml(st, p->tmp, &p->xml, st->db, (kx_step){prep_created, prep_fail, p});
    if (rc != 0)
        prep_fail(p, rc, strdup("keepassxc: cannot run keepassxc-cli import"));
}

static void prep_version(kx_state *st, void *arg, const ol_proc_result *res) {
    kx_prep *p = arg;
    const ol_host *h = st->host;
    if (res->result == OL_ENOENT || (res->result == 0 && res->exit_status == 127)) {
        prep_fail(p, OL_ENOENT,
                  reason_dup(
                      h, h->format("keepassxc: %s not found in PATH: %s", KX_PROGRAM, KX_INSTALL)));
        return;
    }
    if (!run_ok(res)) {
        prep_fail(p, res->result ? res->result : OL_EIO, run_reason(st, "--version", res));
        return;
    }
    h->log(st->stage, NULL, OL_LOG_DEBUG, "%s %.*s", KX_PROGRAM, (int)strcspn(res->out, "\n"),
           res->out);
    if (p->exists) {
        prep_open(p);
        return;
    }
    if (!st->create) {
        prep_fail(p, OL_ENOENT,
                  reason_dup(h, h->format("keepassxc: the database %s does not exist: create it "
                                          "(keepassxc-cli db-create -p %s) or set "
                                          "keepassxc.create=true",
                                          st->db, st->db)));
        return;
    }
    p->tmp = calloc(1, sizeof(*p->tmp));
    if (p->tmp == NULL) {
        prep_fail(p, OL_ENOMEM, strdup("keepassxc: out of memory"));
        return;
    }
    int rc = kx_queue(st, p->tmp, tmp_open_work, (kx_step){prep_tmp_ready, prep_fail, p});
    if (rc != 0)
        prep_fail(p, rc, strdup("keepassxc: cannot queue work"));
}

extern char **environ;

/* Wipes the value of the environment variable name in place, then unsets it. A child shows
 * its parent's environment block in /proc/PID/environ between fork and exec (and opsline's
 * own shows it all run long): unsetenv alone leaves the bytes there. */
static void env_wipe(const ol_host *h, const char *name) {
    size_t n = strlen(name);
    for (char **e = environ; e != NULL && *e != NULL; e++)
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
            h->wipe(*e + n + 1, strlen(*e + n + 1));
    unsetenv(name);
}

/* Credentials: the password file, else the environment variable, else none (a key file
 * alone). On none usable, fails p and returns 1. */
static int prep_credentials(kx_prep *p) {
    kx_state *st = p->st;
    const ol_host *h = st->host;
    const char *env_pw = st->env_password;
    if (st->password_file != NULL) {
        if (p->pw_rc != 0) {
            char *r = p->pw_why;
            p->pw_why = NULL;
            prep_fail(p, p->pw_rc, r ? r : strdup("keepassxc: cannot read the password file"));
            return 1;
        }
        st->password = p->pw;
        p->pw = NULL;
        st->cred = reason_dup(h, h->format("password from the file %s%s%s", st->password_file,
                                           st->key_file ? " and key file " : "",
                                           st->key_file ? st->key_file : ""));
    } else if (env_pw != NULL && *env_pw != '\0') {
        st->password = st->env_password;
        st->env_password = NULL;
        if (st->password == NULL) {
            prep_fail(p, OL_ENOMEM, strdup("keepassxc: out of memory"));
            return 1;
        }
        st->cred = reason_dup(h, h->format("password from $%s%s%s", st->password_env,
                                           st->key_file ? " and key file " : "",
                                           st->key_file ? st->key_file : ""));
    } else if (st->key_file != NULL) {
        st->cred = reason_dup(h, h->format("key file %s, no password", st->key_file));
    } else {
        prep_fail(p, OL_ECONFIG,
                  reason_dup(h, h->format("keepassxc: no password for %s: set the environment "
                                          "variable %s, or keepassxc.password_file, or "
                                          "keepassxc.key_file",
                                          st->db, st->password_env ? st->password_env : "")));
        return 1;
    }
    if (st->password != NULL && strpbrk(st->password, "\r\n") != NULL) {
        prep_fail(p, OL_ECONFIG,
                  strdup("keepassxc: the database password has a line break, "
                         "which keepassxc-cli cannot read from stdin"));
        return 1;
    }
    return 0;
}

static void prep_looked(void *arg, int status) {
    kx_prep *p = arg;
    kx_state *st = p->st;
    const ol_host *h = st->host;
    if (status != 0) {
        prep_fail(p, status, strdup("keepassxc: the run was stopped"));
        return;
    }
    if (p->abs == NULL) {
        prep_fail(p, OL_ENOENT,
                  reason_dup(h, h->format("keepassxc: the directory of %s (option "
                                          "keepassxc.database) does not exist",
                                          st->database)));
        return;
    }
    st->db = p->abs;
    p->abs = NULL;
    if (prep_credentials(p) != 0)
        return;
    const char *argv[] = {KX_PROGRAM, "--version", NULL};
    int rc = kx_run_cli(st, NULL, argv, 0, prep_version, p);
    if (rc != 0)
        prep_fail(p, rc, strdup("keepassxc: cannot run keepassxc-cli"));
}

static int kx_prepare(ol_stage *stage, void *state) {
    kx_state *st = state;
    kx_prep *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return OL_ENOMEM;
    p->st = st;
    p->xml = (storebuf)STOREBUF_INIT(st->host);
    int rc = st->host->work_queue(stage, prep_work, prep_looked, p);
    if (rc != 0)
        free(p);
    return rc;
}

/* ---------------------------------------------------------------------------------------
 * init, fini, descriptor
 * ------------------------------------------------------------------------------------- */

static void kx_fini(void *state) {
    kx_state *st = state;
    if (st == NULL)
        return;
    while (st->pending != NULL) {
        kx_put *p = st->pending;
        st->pending = p->next;
        put_free(st->host, p);
    }
    while (st->get_queue != NULL) {
        kx_get *g = st->get_queue;
        st->get_queue = g->next;
        get_free(g);
    }
    for (size_t i = 0; i < st->n_existing; i++)
        free(st->existing[i]);
    free(st->existing);
    for (size_t i = 0; i < st->n_known; i++) {
        free(st->known[i].path);
        free(st->known[i].item_name);
    }
    free(st->known);
    free_wiped_str(st->host, st->password);
    free_wiped_str(st->host, st->env_password);
    free(st->cred);
    free(st->db);
    free(st->env_blank);
    free(st);
}

static int check_template(kx_state *st, const char *name, const char *tmpl) {
    const ol_host *h = st->host;
    char *out = NULL, *why = NULL;
    if (tmpl == NULL || h->expand(NULL, tmpl, &out, &why) != 0) {
        h->log(st->stage, NULL, OL_LOG_ERROR, "keepassxc: option %s '%s': %s", name,
               tmpl ? tmpl : "", why ? why : "missing");
        h->free(why);
        return OL_ECONFIG;
    }
    h->free(out);
    return 0;
}

static int env_name_ok(const char *s) {
    if (*s == '\0' || (*s >= '0' && *s <= '9'))
        return 0;
    for (; *s; s++)
        if (!(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= '0' && *s <= '9')))
            return 0;
    return 1;
}

static int init_check_options(kx_state *st) {
    const ol_host *host = st->host;
    if (st->database == NULL || st->database[0] == '\0') {
        host->log(st->stage, NULL, OL_LOG_ERROR,
                  "keepassxc: no database: set keepassxc.database, e.g. --set "
                  "keepassxc.database=aws.kdbx");
        return OL_ECONFIG;
    }
    if (st->timeout < 1 || st->timeout > 3600) {
        host->log(st->stage, NULL, OL_LOG_ERROR,
                  "keepassxc: timeout %lld is out of range: give 1 to 3600 seconds", st->timeout);
        return OL_ECONFIG;
    }
    if (st->password_env != NULL && st->password_env[0] != '\0' && !env_name_ok(st->password_env)) {
        host->log(st->stage, NULL, OL_LOG_ERROR,
                  "keepassxc: password_env '%s' is not an environment variable name",
                  st->password_env);
        return OL_ECONFIG;
    }
    return 0;
}

/* The host wipes secret-named variables from its environment after init: read the
 * password now (prepare decides whether it is used). */
static int init_read_env_password(kx_state *st) {
    const char *env_pw = st->password_env && *st->password_env ? getenv(st->password_env) : NULL;
    if (env_pw == NULL || *env_pw == '\0')
        return 0;
    if ((st->env_password = strdup(env_pw)) == NULL)
        return OL_ENOMEM;
    env_wipe(st->host, st->password_env);
    return 0;
}

/* keepassxc-cli speaks English (its change list is parsed) and UTF-8 (the password is
 * read as UTF-8). The variable holding the password is blanked for the children: they
 * get it on stdin only. */
static int init_child_env(kx_state *st) {
    size_t n = 0;
    st->env[n++] = "LC_ALL=C.UTF-8";
    st->env[n++] = "LANGUAGE=";
    if (st->password_env != NULL && st->password_env[0] != '\0') {
        st->env_blank = reason_dup(st->host, st->host->format("%s=", st->password_env));
        if (st->env_blank == NULL)
            return OL_ENOMEM;
        st->env[n++] = st->env_blank;
    }
    st->env[n] = NULL;
    return 0;
}

static int kx_init(ol_stage *stage, const ol_host *host, void **state) {
    kx_state *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return OL_ENOMEM;
    st->host = host;
    st->stage = stage;
    int rc = host->opt_bind(stage, st);
    if (rc != 0)
        goto fail;
    if ((rc = init_check_options(st)) != 0 || (rc = init_read_env_password(st)) != 0)
        goto fail;
    if (st->key_file != NULL && st->key_file[0] == '\0')
        st->key_file = NULL;
    if (st->password_file != NULL && st->password_file[0] == '\0')
        st->password_file = NULL;
    rc = OL_ECONFIG;
    if (check_template(st, "group", st->group) != 0 ||
        check_template(st, "title", st->title) != 0 || check_template(st, "url", st->url) != 0)
        goto fail;
    if ((rc = init_child_env(st)) != 0)
        goto fail;
    *state = st;
    return 0;
fail:
    kx_fini(st);
    return rc;
}

static const ol_store_ops kx_store = {
    .struct_size = sizeof(ol_store_ops),
    .put = kx_put_op,
    .get = kx_get_op,
    .del = kx_del_op,
};

static const ol_plugin kx_plugin = {
    .abi_major = OL_ABI_MAJOR,
    .abi_minor = OL_ABI_MINOR,
    .struct_size = sizeof(ol_plugin),
    .name = "keepassxc",
    .version = "1.0.0",
    .description = "store each access key as an entry of a KeePassXC database (keepassxc-cli)",
    OL_OPTIONS(kx_options),
    .init = kx_init,
    .fini = kx_fini,
    .prepare = kx_prepare,
    .flush = kx_flush_op,
    .store = &kx_store,
};

OL_EXPORT const ol_plugin *opsline_plugin(void) {
    return &kx_plugin;
}
