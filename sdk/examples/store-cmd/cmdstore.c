/* cmdstore: a complete third-party secret store, built against the installed SDK only.
 *
 * It keeps each item's access key with an external program of your choosing, run through
 * the host's subprocess service (host->proc_run), never blocking the loop:
 *
 *     PROGRAM put NAME    the entry on stdin, as key=value lines (below); exit 0 once durable
 *     PROGRAM get NAME    print the entry on stdout in the same form; exit 3: no such entry
 *     PROGRAM del NAME    remove the entry; exit 0 (also when there was none) or 3
 *
 * NAME is the `name` template expanded for the item (default "{bucket}"). The entry:
 *
 *     access_key_id=AKIA...
 *     secret_access_key=...
 *     region=eu-north-1
 *     bucket=acme-production
 *     user=acme-production
 *     created=2026-12-02T10:00:00Z
 *
 * The secret travels on the program's stdin only, never on its command line or in its
 * environment. Every put is completed when its program exits (nothing is held back, so the
 * store needs no flush), and every operation completes exactly once: either it returns a
 * negative code after logging why, or host->store_done is called from the program's
 * completion. Buffers that held a secret are wiped before they are freed. */
#define _POSIX_C_SOURCE 200809L /* strtok_r, access */

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <opsline/opsline.h>

#define CMDSTORE_EXIT_ABSENT 3    /* get/del: the program holds no entry for NAME */
#define CMDSTORE_MAX_OUTPUT 65536 /* an entry is a few hundred bytes */
#define CMDSTORE_MAX_REASON 200   /* bytes of the program's stderr quoted in a reason */

/* Per-stage state. The fields after `host` are filled by host->opt_bind from the option
 * declarations below (OL_BIND) and stay valid until fini. */
typedef struct cmdstore {
    const ol_host *host;
    const char *command;
    const char *name;
    long long timeout; /* seconds */
    ol_map env;
    char **envv; /* env as NULL-terminated "NAME=value" strings, or NULL */
} cmdstore;

static const ol_option_def cmdstore_options[] = {
    {"command", OL_OPT_STRING, NULL,
     "program run as `PROGRAM put|get|del NAME` (a path, or a name looked up in PATH); "
     "required",
     OL_BIND(cmdstore, command)},
    {"name", OL_OPT_STRING, "{bucket}",
     "NAME given to the program; placeholders {product}, {environment}, {bucket}, {user}, "
     "{region}",
     OL_BIND(cmdstore, name)},
    {"timeout", OL_OPT_INT, "30", "seconds one run of the program may take before it is killed",
     OL_BIND(cmdstore, timeout)},
    {"env", OL_OPT_OBJECT, NULL,
     "extra environment for the program, e.g. {\"STORE_DIR\": \"/srv/keys\"}; never a secret",
     OL_BIND(cmdstore, env)},
};

/* One store operation in flight: owned here from the op function until its completion. */
typedef struct cmdstore_op {
    cmdstore *cs;
    ol_stage *stage;
    ol_item *item;
    const char *verb; /* "put", "get", "del" */
    char *name;       /* expanded NAME (host-allocated) */
    char *input;      /* put: the entry (holds the secret) */
    size_t input_len;
    const char *secret; /* put: points into input */
    size_t secret_len;
} cmdstore_op;

static void op_free(cmdstore_op *op) {
    const ol_host *host = op->cs->host;
    if (op->input != NULL) {
        host->wipe(op->input, op->input_len);
        free(op->input);
    }
    host->free(op->name);
    free(op);
}

/* ---- init and fini ------------------------------------------------------------------ */

static int env_name_valid(const char *s) {
    if (*s == '\0' || (*s >= '0' && *s <= '9'))
        return 0;
    for (; *s != '\0'; s++)
        if (!(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= '0' && *s <= '9')))
            return 0;
    return 1;
}

static void cmdstore_fini(void *state) {
    cmdstore *cs = state;
    if (cs == NULL)
        return;
    if (cs->envv != NULL) {
        for (char **e = cs->envv; *e != NULL; e++)
            cs->host->free(*e);
        free(cs->envv);
    }
    free(cs);
}

static int build_env(ol_stage *stage, cmdstore *cs) {
    const ol_host *host = cs->host;
    if (cs->env.n == 0)
        return 0;
    cs->envv = calloc(cs->env.n + 1, sizeof(char *));
    if (cs->envv == NULL)
        return OL_ENOMEM;
    for (size_t i = 0; i < cs->env.n; i++) {
        const ol_kv *kv = &cs->env.items[i];
        if (!env_name_valid(kv->name)) {
            host->log(stage, NULL, OL_LOG_ERROR,
                      "env: '%s' is not an environment variable name (letters, "
                      "digits and _, not starting with a digit)",
                      kv->name);
            return OL_ECONFIG;
        }
        cs->envv[i] = host->format("%s=%s", kv->name, kv->value);
        if (cs->envv[i] == NULL)
            return OL_ENOMEM;
    }
    return 0;
}

static int cmdstore_init(ol_stage *stage, const ol_host *host, void **state) {
    cmdstore *cs = calloc(1, sizeof(*cs));
    char *out = NULL, *why = NULL;
    int rc;
    if (cs == NULL)
        return OL_ENOMEM;
    cs->host = host;
    if ((rc = host->opt_bind(stage, cs)) != 0)
        goto fail;
    rc = OL_ECONFIG;
    if (cs->command == NULL || cs->command[0] == '\0') {
        host->log(stage, NULL, OL_LOG_ERROR,
                  "no program: set the option command, e.g. "
                  "--set cmdstore.command=/usr/local/bin/my-store");
        goto fail;
    }
    if (cs->timeout < 1 || cs->timeout > 3600) {
        host->log(stage, NULL, OL_LOG_ERROR, "timeout %lld is out of range: give 1 to 3600 seconds",
                  cs->timeout);
        goto fail;
    }
    /* With item NULL, expand only checks the template's placeholders. */
    if (host->expand(NULL, cs->name, &out, &why) != 0) {
        host->log(stage, NULL, OL_LOG_ERROR, "name '%s': %s", cs->name,
                  why ? why : "invalid template");
        host->free(why);
        goto fail;
    }
    host->free(out);
    if ((rc = build_env(stage, cs)) != 0)
        goto fail;
    *state = cs;
    return 0;
fail:
    cmdstore_fini(cs);
    return rc;
}

/* ---- prepare: is the program there? (a stat, done off the loop) ------------------- */

typedef struct cmdstore_check {
    ol_stage *stage;
    cmdstore *cs;
    char *reason; /* set by the work function on failure (host->format is thread-safe) */
} cmdstore_check;

static int executable(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

/* Runs on the host's thread pool: may block, may call only the thread-safe host functions. */
static void check_work(void *arg) {
    cmdstore_check *c = arg;
    const ol_host *host = c->cs->host;
    const char *cmd = c->cs->command;
    if (strchr(cmd, '/') != NULL) {
        if (!executable(cmd))
            c->reason = host->format("cmdstore: %s is not an executable file (%s); set "
                                     "cmdstore.command to the store program's path",
                                     cmd, access(cmd, F_OK) == 0 ? "not executable" : "missing");
        return;
    }
    const char *path = getenv("PATH");
    char *copy = host->format("%s", path ? path : "/usr/local/bin:/usr/bin:/bin");
    char *save = NULL;
    int found = 0;
    for (char *dir = copy ? strtok_r(copy, ":", &save) : NULL; dir && !found;
         dir = strtok_r(NULL, ":", &save)) {
        char *full = host->format("%s/%s", *dir ? dir : ".", cmd);
        found = full != NULL && executable(full);
        host->free(full);
    }
    host->free(copy);
    if (!found)
        c->reason = host->format("cmdstore: program '%s' is not in PATH; install it or set "
                                 "cmdstore.command to its full path",
                                 cmd);
}

static void check_after(void *arg, int status) {
    cmdstore_check *c = arg;
    const ol_host *host = c->cs->host;
    if (status == OL_ECANCELED)
        host->prepare_done(c->stage, OL_ECANCELED, "cmdstore: interrupted");
    else if (c->reason != NULL)
        host->prepare_done(c->stage, OL_ECONFIG, c->reason);
    else
        host->prepare_done(c->stage, 0, NULL);
    host->free(c->reason);
    free(c);
}

static int cmdstore_prepare(ol_stage *stage, void *state) {
    cmdstore_check *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return OL_ENOMEM;
    c->stage = stage;
    c->cs = state;
    int rc = c->cs->host->work_queue(stage, check_work, check_after, c);
    if (rc != 0)
        free(c); /* the callback never runs */
    return rc;
}

/* ---- running the program ------------------------------------------------------------ */

static int contains(const char *hay, size_t hay_len, const char *needle, size_t len) {
    for (size_t i = 0; len > 0 && i + len <= hay_len; i++)
        if (memcmp(hay + i, needle, len) == 0)
            return 1;
    return 0;
}

/* The first line of the program's stderr, control characters replaced, cut short; never
 * the put's secret (a program that echoes its input must not leak it into the report). */
static char *stderr_line(const cmdstore_op *op, const ol_proc_result *res) {
    const ol_host *host = op->cs->host;
    char line[CMDSTORE_MAX_REASON + 1];
    size_t n = 0;
    for (size_t i = 0; i < res->err_len && res->err[i] != '\n' && n < CMDSTORE_MAX_REASON; i++)
        line[n++] = (unsigned char)res->err[i] < 0x20 ? ' ' : res->err[i];
    line[n] = '\0';
    if (contains(res->err, res->err_len, op->secret, op->secret_len)) {
        host->wipe(line, sizeof(line));
        return host->format("(its output is not shown: it holds the secret)");
    }
    return host->format("%s", n > 0 ? line : "(no message on stderr)");
}

/* Parses the key=value lines a get printed. Returns 0 with *sec pointing into buf. */
static int parse_entry(char *buf, ol_secret *sec) {
    memset(sec, 0, sizeof(*sec));
    sec->struct_size = sizeof(*sec);
    for (char *line = buf; line != NULL && *line != '\0';) {
        char *next = strchr(line, '\n');
        if (next != NULL)
            *next++ = '\0';
        size_t len = strlen(line);
        if (len > 0 && line[len - 1] == '\r')
            line[len - 1] = '\0';
        char *eq = strchr(line, '=');
        if (eq != NULL) {
            *eq = '\0';
            const char *v = eq + 1;
            if (strcmp(line, "access_key_id") == 0)
                sec->access_key_id = v;
            else if (strcmp(line, "secret_access_key") == 0)
                sec->secret_access_key = v;
            else if (strcmp(line, "region") == 0)
                sec->region = v;
            else if (strcmp(line, "bucket") == 0)
                sec->bucket = v;
            else if (strcmp(line, "user") == 0)
                sec->user = v;
            else if (strcmp(line, "created") == 0)
                sec->created = v;
        }
        line = next;
    }
    return sec->access_key_id && *sec->access_key_id && sec->secret_access_key &&
                   *sec->secret_access_key
               ? 0
               : OL_EINVAL;
}

static void complete_get(cmdstore_op *op, const ol_proc_result *res) {
    const ol_host *host = op->cs->host;
    ol_secret sec;
    char *buf = NULL;
    if (res->out_truncated) {
        char *why = host->format("cmdstore: %s get %s printed more than %d bytes; print only "
                                 "the entry's key=value lines",
                                 op->cs->command, op->name, CMDSTORE_MAX_OUTPUT);
        host->store_done(op->stage, op->item, OL_EINVAL, NULL, why);
        host->free(why);
        return;
    }
    buf = malloc(res->out_len + 1);
    if (buf == NULL) {
        host->store_done(op->stage, op->item, OL_ENOMEM, NULL, "cmdstore: out of memory");
        return;
    }
    memcpy(buf, res->out, res->out_len + 1);
    if (parse_entry(buf, &sec) == 0) {
        host->store_done(op->stage, op->item, 0, &sec, NULL); /* the host copies sec */
    } else {
        char *why = host->format("cmdstore: %s get %s printed no access_key_id= and "
                                 "secret_access_key= lines; fix the program's output",
                                 op->cs->command, op->name);
        host->store_done(op->stage, op->item, OL_EINVAL, NULL, why);
        host->free(why);
    }
    host->wipe(buf, res->out_len + 1);
    free(buf);
}

/* The program ended (or never ran): complete the operation, exactly once, and free it. */
static void op_done(void *arg, const ol_proc_result *res) {
    cmdstore_op *op = arg;
    const ol_host *host = op->cs->host;
    const char *cmd = op->cs->command;
    char *why = NULL, *line = NULL;
    int rc = 0;

    if (res->result == OL_ENOENT) {
        /* Not OL_ENOENT: for get that would mean "no entry" and the host would move on. */
        rc = OL_ECONFIG;
        why = host->format("cmdstore: program '%s' not found; install it or set "
                           "cmdstore.command to its full path",
                           cmd);
    } else if (res->result == OL_ETIMEDOUT) {
        rc = OL_ETIMEDOUT;
        why = host->format("cmdstore: %s %s %s did not finish within %lld s and was killed; "
                           "fix the program or raise cmdstore.timeout",
                           cmd, op->verb, op->name, op->cs->timeout);
    } else if (res->result == OL_ECANCELED) {
        rc = OL_ECANCELED;
        why = host->format("cmdstore: %s %s %s stopped: the run was interrupted", cmd, op->verb,
                           op->name);
    } else if (res->result != 0) {
        rc = OL_EIO;
        why = host->format("cmdstore: could not run %s: %s", cmd, host->strerror(res->result));
    } else if (res->term_signal != 0) {
        rc = OL_EIO;
        why = host->format("cmdstore: %s %s %s was killed by signal %d", cmd, op->verb, op->name,
                           res->term_signal);
    } else if (res->exit_status == CMDSTORE_EXIT_ABSENT && strcmp(op->verb, "put") != 0) {
        rc = strcmp(op->verb, "get") == 0 ? OL_ENOENT : 0; /* del of nothing is done */
    } else if (res->exit_status != 0) {
        rc = OL_EIO;
        line = stderr_line(op, res);
        why = host->format("cmdstore: %s %s %s exited with status %d: %s", cmd, op->verb, op->name,
                           res->exit_status, line ? line : "");
    } else if (strcmp(op->verb, "get") == 0) {
        complete_get(op, res);
        op_free(op);
        return;
    }
    if (rc == 0 || rc == OL_ENOENT)
        host->store_done(op->stage, op->item, rc, NULL, NULL);
    else
        host->store_done(op->stage, op->item, rc, NULL, why ? why : "cmdstore: out of memory");
    host->free(line);
    host->free(why);
    op_free(op);
}

/* Starts `command verb NAME` for the item with stdin_data (may be NULL). On error nothing
 * was started, the reason is logged, op is freed and store_done will not be called. */
static int op_start(cmdstore_op *op) {
    const ol_host *host = op->cs->host;
    char *why = NULL;
    int rc = host->expand(op->item, op->cs->name, &op->name, &why);
    if (rc != 0) {
        host->log(op->stage, op->item, OL_LOG_ERROR, "name '%s': %s", op->cs->name,
                  why ? why : "invalid template");
        host->free(why);
        op_free(op);
        return rc;
    }
    const char *argv[] = {op->cs->command, op->verb, op->name, NULL};
    ol_proc_spec spec = {
        .struct_size = sizeof(spec),
        .argv = argv,
        .env = (const char *const *)op->cs->envv,
        .stdin_data = op->input,
        .stdin_len = op->input_len,
        .output_cap = CMDSTORE_MAX_OUTPUT,
        .timeout_ms = (unsigned)(op->cs->timeout * 1000),
    };
    rc = host->proc_run(op->stage, op->item, &spec, op_done, op);
    if (rc != 0) {
        host->log(op->stage, op->item, OL_LOG_ERROR, "could not run %s %s %s: %s", op->cs->command,
                  op->verb, op->name, host->strerror(rc));
        op_free(op);
    }
    return rc;
}

static cmdstore_op *op_new(ol_stage *stage, ol_item *item, void *state, const char *verb) {
    cmdstore_op *op = calloc(1, sizeof(*op));
    if (op == NULL)
        return NULL;
    op->cs = state;
    op->stage = stage;
    op->item = item;
    op->verb = verb;
    return op;
}

static int value_ok(const char *v) {
    return v == NULL || strpbrk(v, "\r\n") == NULL;
}

/* Appends "key=value\n" when value is set. */
static size_t entry_line(char *dst, const char *key, const char *value) {
    if (value == NULL)
        return 0;
    size_t k = strlen(key), v = strlen(value);
    if (dst != NULL) {
        memcpy(dst, key, k);
        dst[k] = '=';
        memcpy(dst + k + 1, value, v);
        dst[k + 1 + v] = '\n';
    }
    return k + v + 2;
}

static int cmdstore_put(ol_stage *stage, ol_item *item, void *state, const ol_secret *secret) {
    const char *const keys[] = {"access_key_id", "secret_access_key", "region", "bucket", "user",
                                "created"};
    const char *const values[] = {secret->access_key_id, secret->secret_access_key,
                                  secret->region,        secret->bucket,
                                  secret->user,          secret->created};
    const size_t n = sizeof(keys) / sizeof(keys[0]);
    cmdstore *cs = state;
    size_t len = 0;

    if (secret->access_key_id == NULL || secret->secret_access_key == NULL) {
        cs->host->log(stage, item, OL_LOG_ERROR, "put without a key id and secret");
        return OL_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (!value_ok(values[i])) {
            cs->host->log(stage, item, OL_LOG_ERROR, "%s holds a line break", keys[i]);
            return OL_EINVAL;
        }
        len += entry_line(NULL, keys[i], values[i]);
    }
    cmdstore_op *op = op_new(stage, item, state, "put");
    if (op == NULL || (op->input = malloc(len + 1)) == NULL) {
        free(op);
        return OL_ENOMEM;
    }
    op->input_len = len;
    len = 0;
    for (size_t i = 0; i < n; i++) {
        if (i == 1) {
            op->secret = op->input + len + strlen("secret_access_key=");
            op->secret_len = strlen(values[i]);
        }
        len += entry_line(op->input + len, keys[i], values[i]);
    }
    op->input[len] = '\0';
    return op_start(op);
}

static int cmdstore_get(ol_stage *stage, ol_item *item, void *state) {
    cmdstore_op *op = op_new(stage, item, state, "get");
    return op ? op_start(op) : OL_ENOMEM;
}

static int cmdstore_del(ol_stage *stage, ol_item *item, void *state) {
    cmdstore_op *op = op_new(stage, item, state, "del");
    return op ? op_start(op) : OL_ENOMEM;
}

/* ---- the descriptor ----------------------------------------------------------------- */

static const ol_store_ops cmdstore_ops = {
    .struct_size = sizeof(ol_store_ops),
    .put = cmdstore_put,
    .get = cmdstore_get,
    .del = cmdstore_del,
};

static const ol_plugin cmdstore_plugin = {
    .abi_major = OL_ABI_MAJOR,
    .abi_minor = OL_ABI_MINOR,
    .struct_size = sizeof(ol_plugin),
    .name = "cmdstore",
    .version = "1.0.0",
    .description = "Example secret store: keeps each access key with an external program "
                   "(PROGRAM put|get|del NAME, the entry on stdin)",
    OL_OPTIONS(cmdstore_options),
    .init = cmdstore_init,
    .fini = cmdstore_fini,
    .prepare = cmdstore_prepare,
    .store = &cmdstore_ops,
};

/* The one exported symbol (everything else is hidden by -fvisibility=hidden). */
OL_EXPORT const ol_plugin *opsline_plugin(void);
const ol_plugin *opsline_plugin(void) {
    return &cmdstore_plugin;
}
