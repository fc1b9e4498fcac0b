/* filebatch: a secret store that keeps every item's key in one local file the store
 * rewrites whole (an import file for a password manager: bitwarden, 1password). What is
 * the same for every such file lives here; the store brings the format (fb_format): an
 * empty document, parse, get/put/del of one item's entry, serialize.
 *
 * Puts are held back until flush, so a batch costs one read-merge-write of the file, done
 * off the loop (host->work_queue) under the host lock on the file's absolute path; every
 * held put is completed after that one write. Gets and deletes (and puts refused before
 * they reach the file) that arrive together share one read. A file that does not parse or
 * cannot be replaced is refused in prepare, before any request, and is never touched.
 *
 * Use: the store's state starts with a filebatch (the store operations below receive the
 * state, and the format's callbacks may cast fb back to it); its options bind into the
 * filebatch (OL_BIND(my_state, fb.file), fb.name_tmpl, fb.uri_tmpl); init calls
 * filebatch_new, and the descriptor takes filebatch_free, filebatch_prepare,
 * filebatch_flush and &filebatch_store. */
#ifndef OL_SECRETS_FILEBATCH_H
#define OL_SECRETS_FILEBATCH_H

#include <stddef.h>

#include "opsline/opsline.h"
#include "storebuf.h"

#define FB_MAX_FILE (64u * 1024 * 1024) /* larger is not an import file we should rewrite */

typedef enum fb_kind { FB_PUT = 1, FB_GET, FB_DEL } fb_kind;

/* One store operation, from the call that starts it to store_done. */
typedef struct fb_op {
    struct fb_op *next;
    fb_kind kind;
    ol_item *item;
    char *name;  /* the entry's name (name template expanded) */
    char *group; /* put: the group template expanded (see filebatch.group_tmpl), or NULL */
    char *uri;   /* put */
    char *notes; /* put: what the key is for, where, since when (host-allocated) */
    /* put: the key to store; get: the key found (malloc'd; secret wiped before free). */
    char *key_id, *secret, *region, *bucket, *user, *created;
    int done; /* result and reason are final */
    int result;
    char *reason; /* host-allocated, or NULL */
} fb_op;

typedef struct fb_list {
    fb_op *head;
    fb_op **tail;
} fb_list;

typedef struct filebatch filebatch;

/* The file's format. Every callback but check runs off the loop: it may use only the
 * thread-safe host functions (format, free, wipe, read_private_file, write_private_file). */
typedef struct fb_format {
    const char *store;        /* the store's name, in option names: "<store>.file" */
    const char *file_kind;    /* "JSON import file": what option file names */
    const char *file_example; /* "bitwarden.json" */
    const char *name_option;  /* the options binding filebatch.name_tmpl and uri_tmpl */
    const char *uri_option;
    /* The store's own option rules, on the loop in init: log and return OL_ECONFIG. It may
     * set group_option and group_tmpl. May be NULL. */
    int (*check)(filebatch *fb);
    /* An empty document, or NULL when out of memory. */
    void *(*doc_new)(const filebatch *fb);
    /* Parses text (len bytes, host-allocated, taken over: wipe it and host->free it).
     * Returns 0 and *doc, or a code and *why (host-allocated) naming the file and the fix. */
    int (*doc_parse)(const filebatch *fb, char *text, size_t len, void **doc, char **why);
    /* op's entry into op->key_id ... op->created (malloc'd): 0, OL_ENOENT, OL_ENOMEM. */
    int (*doc_get)(const filebatch *fb, const void *doc, fb_op *op);
    /* Stores op's key as the only entry named op->name: 0 or a code. */
    int (*doc_put)(const filebatch *fb, void *doc, const fb_op *op);
    /* Removes every entry named name: 1 when the document changed, else 0. */
    int (*doc_del)(const filebatch *fb, void *doc, const char *name);
    /* The file's new text into out: 0, or OL_ENOMEM (out failing counts too). */
    int (*doc_write)(const filebatch *fb, const void *doc, storebuf *out);
    /* Wipes every string of doc and frees it. doc may be NULL. */
    void (*doc_free)(const filebatch *fb, void *doc);
} fb_format;

struct filebatch {
    const ol_host *host;
    ol_stage *stage;
    const fb_format *fmt;
    /* Options (host->opt_bind into the store's state). */
    const char *file;
    const char *name_tmpl; /* the entry's name; unset: {bucket} */
    const char *uri_tmpl;  /* unset: s3://{bucket} */
    /* A third template expanded for every put (fb_op.group), or NULL (set by check). */
    const char *group_option;
    const char *group_tmpl;
    char *path;     /* file, absolute and normalised: the lock's name */
    fb_list held;   /* puts waiting for flush */
    fb_list queued; /* gets, deletes and refused puts waiting for the file */
    int busy;       /* a job for the queued list is running */
};

/* ol_plugin.init of such a store (call it from init): allocates the store's state of size
 * bytes (zeroed; it starts with its filebatch), binds the options into it, checks them and
 * resolves the file. Returns 0 and *state, or a code after logging why. */
int filebatch_new(size_t size, ol_stage *stage, const ol_host *host, const fb_format *fmt,
                  void **state);
/* ol_plugin.fini of such a store: frees the state and all it holds. */
void filebatch_free(void *state);

/* ol_plugin.prepare, ol_plugin.flush and ol_plugin.store of such a store. */
int filebatch_prepare(ol_stage *stage, void *state);
int filebatch_flush(ol_stage *stage, void *state);
extern const ol_store_ops filebatch_store;

#endif
