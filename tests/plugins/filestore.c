/* filestore: a test secret store for a host built with no bundled stage. It keeps each
 * item's key in DIR/<item name> ("access_key_id=...\nsecret_access_key=...\n", 0600),
 * written and read on the host's thread pool with the host's private-file helpers, as
 * docs/writing-a-store.md describes (sdk/examples/store-cmd is the full example). */
#include <stdlib.h>
#include <string.h>

#include <opsline/opsline.h>

typedef struct filestore {
    const ol_host *host;
    const char *dir; /* option dir, required */
} filestore;

/* One put or get, freed in its after-work callback (or where starting it fails). */
typedef struct filestore_op {
    ol_stage *stage;
    ol_item *item;
    const ol_host *host;
    char *path;
    char *data; /* the entry: holds the secret, wiped before free */
    size_t len;
    int result;
} filestore_op;

static const ol_option_def filestore_options[] = {
    {"dir", OL_OPT_STRING, NULL, "directory that receives one file per item; required",
     OL_BIND(filestore, dir)},
};

static void op_free(filestore_op *op) {
    if (op->data != NULL)
        op->host->wipe(op->data, op->len);
    op->host->free(op->data);
    op->host->free(op->path);
    free(op);
}

static filestore_op *op_new(ol_stage *stage, ol_item *item, filestore *fs) {
    filestore_op *op = calloc(1, sizeof(*op));
    if (op == NULL)
        return NULL;
    op->stage = stage;
    op->item = item;
    op->host = fs->host;
    op->path = fs->host->format("%s/%s", fs->dir, fs->host->item_name(item));
    if (op->path == NULL) {
        free(op);
        return NULL;
    }
    return op;
}

static int op_queue(filestore_op *op, ol_work_fn work, ol_after_work_cb after) {
    int rc = op->host->work_queue(op->stage, work, after, op);
    if (rc != 0)
        op_free(op); /* the callback never runs */
    return rc;
}

static void put_work(void *arg) {
    filestore_op *op = arg;
    op->result = op->host->write_private_file(op->path, op->data, op->len);
}

static void put_after(void *arg, int status) {
    filestore_op *op = arg;
    int rc = status != 0 ? status : op->result;
    op->host->store_done(op->stage, op->item, rc, NULL, rc == 0 ? NULL : "filestore: write failed");
    op_free(op);
}

static int filestore_put(ol_stage *stage, ol_item *item, void *state, const ol_secret *secret) {
    filestore_op *op = op_new(stage, item, state);
    if (op == NULL)
        return OL_ENOMEM;
    op->data = op->host->format("access_key_id=%s\nsecret_access_key=%s\n", secret->access_key_id,
                                secret->secret_access_key);
    if (op->data == NULL) {
        op_free(op);
        return OL_ENOMEM;
    }
    op->len = strlen(op->data);
    return op_queue(op, put_work, put_after);
}

static void get_work(void *arg) {
    filestore_op *op = arg;
    op->result = op->host->read_private_file(op->path, 4096, &op->data, &op->len);
}

/* Cuts "name=value\n" out of the entry in place; NULL when absent. */
static const char *entry_value(char *data, const char *name) {
    size_t n = strlen(name);
    for (char *line = data; line != NULL && *line != '\0';) {
        char *next = strchr(line, '\n');
        if (next != NULL)
            *next++ = '\0';
        if (strncmp(line, name, n) == 0 && line[n] == '=')
            return line + n + 1;
        line = next;
    }
    return NULL;
}

static void get_after(void *arg, int status) {
    filestore_op *op = arg;
    int rc = status != 0 ? status : op->result;
    if (rc != 0) {
        op->host->store_done(op->stage, op->item, rc, NULL,
                             rc == OL_ENOENT ? NULL : "filestore: read failed");
        op_free(op);
        return;
    }
    ol_secret found = {.struct_size = sizeof(ol_secret)};
    char *copy = op->host->format("%s", op->data);
    if (copy == NULL) {
        op->host->store_done(op->stage, op->item, OL_ENOMEM, NULL, "filestore: out of memory");
        op_free(op);
        return;
    }
    found.access_key_id = entry_value(op->data, "access_key_id");
    found.secret_access_key = entry_value(copy, "secret_access_key");
    if (found.access_key_id == NULL || found.secret_access_key == NULL)
        op->host->store_done(op->stage, op->item, OL_EINVAL, NULL, "filestore: entry is damaged");
    else
        op->host->store_done(op->stage, op->item, 0, &found, NULL);
    op->host->wipe(copy, strlen(copy));
    op->host->free(copy);
    op_free(op);
}

static int filestore_get(ol_stage *stage, ol_item *item, void *state) {
    filestore_op *op = op_new(stage, item, state);
    if (op == NULL)
        return OL_ENOMEM;
    return op_queue(op, get_work, get_after);
}

static void filestore_fini(void *state) {
    free(state);
}

static int filestore_init(ol_stage *stage, const ol_host *host, void **state) {
    filestore *fs = calloc(1, sizeof(*fs));
    if (fs == NULL)
        return OL_ENOMEM;
    fs->host = host;
    int rc = host->opt_bind(stage, fs);
    if (rc == 0 && (fs->dir == NULL || fs->dir[0] == '\0')) {
        host->log(stage, NULL, OL_LOG_ERROR, "no directory: set --set filestore.dir=DIR");
        rc = OL_ECONFIG;
    }
    if (rc != 0) {
        filestore_fini(fs);
        return rc;
    }
    *state = fs;
    return 0;
}

static const ol_store_ops filestore_ops = {
    .struct_size = sizeof(ol_store_ops),
    .put = filestore_put,
    .get = filestore_get,
};

/* --env-file DIR sets the directory: any stage may map a host flag to its own option. */
static const ol_cli_flag filestore_cli_flags[] = {{"env-file", "dir"}, {NULL, NULL}};

static const ol_plugin filestore_plugin = {
    .abi_major = OL_ABI_MAJOR,
    .abi_minor = OL_ABI_MINOR,
    .struct_size = sizeof(ol_plugin),
    .name = "filestore",
    .version = "1.0.0",
    .description = "Test secret store: one 0600 file per item in a directory",
    .flags = OL_STAGE_DEFAULT,
    OL_OPTIONS(filestore_options),
    .init = filestore_init,
    .fini = filestore_fini,
    .store = &filestore_ops,
    .cli_flags = filestore_cli_flags,
};

OL_EXPORT const ol_plugin *opsline_plugin(void);
const ol_plugin *opsline_plugin(void) {
    return &filestore_plugin;
}
