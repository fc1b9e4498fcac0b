/* journal: owns the state directory's journal file (<state_dir>/journal.jsonl): one compact
 * JSON object per line (jansson), appended with O_APPEND; records the caller says must
 * survive a crash are fsync'd before the call returns (journal_append_durable) or, off the
 * loop, before its callback runs (journal_append_synced: one fsync on the thread pool covers
 * every record written before it, so records that arrive together share it); the rest at
 * journal_flush or journal_sync_due. The records are also kept in memory, per item, for
 * journal_count / journal_last_time, until the run is done with the item (journal_forget). An
 * exclusive, non-blocking flock on the file keeps a second opsline run off the same state
 * directory; the holder's pid is written next to it (informational only) so the refusal can name
 * it. */
#include "journal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <uv.h>

#include "error.h"
#include "opsline/opsline.h"
#include "privfile.h"

#define JOURNAL_FILE "journal.jsonl"
#define JOURNAL_PID_FILE "journal.pid"

/* The records are kept in memory per item, in a hash table keyed by the item's name, so a
 * count costs the item's own records, not the whole file's. Stage and event names are
 * interned: a run knows a few dozen of them, and a record is then four words. */
typedef struct record {
    long long time;
    const char *stage; /* interned; NULL: none */
    const char *event; /* interned */
    char *id;          /* NULL: none */
} record;

typedef struct sync_waiter {
    struct sync_waiter *next;
    uint64_t seq; /* the record it waits for */
    journal_synced_cb cb;
    void *arg;
} sync_waiter;

typedef struct item_recs {
    struct item_recs *next; /* the next entry of the same bucket */
    record *recs;
    size_t n, cap;
    char name[]; /* the item's name */
} item_recs;

#define JOURNAL_BUCKETS_MIN 256u

struct journal {
    char *dir;
    char *path;
    int fd;
    item_recs **buckets;
    size_t n_buckets, n_entries;
    char **words; /* interned stage and event names */
    size_t n_words, cap_words;
    char *warnings; /* NULL: none */
    /* Records are numbered as written: those up to synced are on disk. */
    uint64_t written, synced;
    uint64_t synced_ms; /* monotonic time of the last fsync (0: none yet) */
    /* The fsync on the thread pool (journal_append_synced, journal_sync_due): at most one
     * at a time; it covers the records up to sync_target. The waiters, oldest first, each
     * wait for the record it wrote. */
    uv_loop_t *loop;
    uv_work_t sync_req;
    int syncing;
    uint64_t sync_target;
    int sync_errno;  /* set by the pool thread, read in sync_after */
    int sync_failed; /* a background fsync failed and nobody was told yet */
    sync_waiter *waiters, **waiters_tail;
    int (*fsync_fn)(int fd); /* fsync(2); a test's stand-in (journal_test_set_fsync) */
    size_t fsyncs;
    /* A record object per shape (which of stage, id and detail it has), made on first use
     * and refilled for each record: the keys, in their order, are made once, not for every
     * line. */
    json_t *shapes[8];
    char *line; /* the last record's text, reused */
    size_t line_cap;
};

/* FNV-1a, 64-bit. */
static uint64_t name_hash(const char *s) {
    uint64_t h = 14695981039346656037ull;
    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

static item_recs **bucket_of(const journal *j, const char *item) {
    return &j->buckets[name_hash(item) & (j->n_buckets - 1)];
}

static item_recs *entry_find(const journal *j, const char *item) {
    if (j->n_buckets == 0)
        return NULL;
    for (item_recs *e = *bucket_of(j, item); e != NULL; e = e->next)
        if (strcmp(e->name, item) == 0)
            return e;
    return NULL;
}

static int buckets_grow(journal *j) {
    size_t n = j->n_buckets == 0 ? JOURNAL_BUCKETS_MIN : j->n_buckets * 2;
    item_recs **b = calloc(n, sizeof(*b));
    if (b == NULL)
        return OL_ENOMEM;
    for (size_t i = 0; i < j->n_buckets; i++)
        for (item_recs *e = j->buckets[i], *next; e != NULL; e = next) {
            next = e->next;
            item_recs **slot = &b[name_hash(e->name) & (n - 1)];
            e->next = *slot;
            *slot = e;
        }
    free(j->buckets);
    j->buckets = b;
    j->n_buckets = n;
    return 0;
}

static item_recs *entry_get(journal *j, const char *item) {
    item_recs *e = entry_find(j, item);
    if (e != NULL)
        return e;
    if (j->n_entries >= j->n_buckets * 2 && buckets_grow(j) != 0)
        return NULL;
    size_t len = strlen(item);
    if ((e = calloc(1, sizeof(*e) + len + 1)) == NULL)
        return NULL;
    memcpy(e->name, item, len + 1);
    item_recs **slot = bucket_of(j, item);
    e->next = *slot;
    *slot = e;
    j->n_entries++;
    return e;
}

static void entry_free(item_recs *e) {
    for (size_t i = 0; i < e->n; i++)
        free(e->recs[i].id);
    free(e->recs);
    free(e);
}

/* The interned copy of word, or NULL (not known; with add, out of memory). */
static const char *word_find(journal *j, const char *word, int add) {
    for (size_t i = 0; i < j->n_words; i++)
        if (strcmp(j->words[i], word) == 0)
            return j->words[i];
    if (!add)
        return NULL;
    if (j->n_words == j->cap_words) {
        size_t cap = j->cap_words == 0 ? 16 : j->cap_words * 2;
        char **w = realloc(j->words, cap * sizeof(*w));
        if (w == NULL)
            return NULL;
        j->words = w;
        j->cap_words = cap;
    }
    char *copy = strdup(word);
    if (copy != NULL)
        j->words[j->n_words++] = copy;
    return copy;
}

/* Takes ownership of nothing: copies every string. */
static int records_push(journal *j, long long time, const char *item, const char *stage,
                        const char *event, const char *id) {
    item_recs *e = entry_get(j, item);
    if (e == NULL)
        return OL_ENOMEM;
    if (e->n == e->cap) {
        size_t cap = e->cap == 0 ? 4 : e->cap * 2;
        record *recs = realloc(e->recs, cap * sizeof(*recs));
        if (recs == NULL)
            return OL_ENOMEM;
        e->recs = recs;
        e->cap = cap;
    }
    record r = {.time = time,
                .stage = stage != NULL ? word_find(j, stage, 1) : NULL,
                .event = word_find(j, event, 1),
                .id = id != NULL ? strdup(id) : NULL};
    if (r.event == NULL || (stage != NULL && r.stage == NULL) || (id != NULL && r.id == NULL)) {
        free(r.id);
        return OL_ENOMEM;
    }
    e->recs[e->n++] = r;
    return 0;
}

/* Appends a line to j->warnings (several skipped lines give several lines). */
static void add_warning(journal *j, size_t lineno, const char *what, const char *why) {
    char *w = j->warnings == NULL
                  ? ol__format("%s:%zu: %s (%s)", j->path, lineno, what, why)
                  : ol__format("%s\n%s:%zu: %s (%s)", j->warnings, j->path, lineno, what, why);
    if (w == NULL)
        return; /* a lost warning is not worth failing the run for */
    free(j->warnings);
    j->warnings = w;
}

static const char *json_str_field(const json_t *obj, const char *name) {
    const json_t *v = json_object_get(obj, name);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* One line: {"time":..,"item":..,"stage":..,"event":..,"id":..,"detail":..}. item and event
 * are required. Returns 1 (a record), 0 (not one: why says what is wrong, in a buffer of
 * why_size) or a negative code. */
static int load_line(journal *j, const char *line, size_t len, char *why, size_t why_size) {
    json_error_t jerr;
    json_t *obj = json_loadb(line, len, 0, &jerr);
    if (obj == NULL || !json_is_object(obj)) {
        snprintf(why, why_size, "%s", obj == NULL ? jerr.text : "not a JSON object");
        json_decref(obj);
        return 0;
    }
    const char *item = json_str_field(obj, "item");
    const char *event = json_str_field(obj, "event");
    const json_t *t = json_object_get(obj, "time");
    int rc = 1;
    if (item == NULL || event == NULL || !json_is_integer(t)) {
        snprintf(why, why_size, "missing item, event or time");
        rc = 0;
    } else if (records_push(j, (long long)json_integer_value(t), item, json_str_field(obj, "stage"),
                            event, json_str_field(obj, "id")) != 0) {
        rc = OL_ENOMEM;
    }
    json_decref(obj);
    return rc;
}

/* Reads every record; returns 0 or a negative code. A malformed line is skipped with a
 * warning, never fatal. The last line may lack its newline: an append cut short by a crash
 * or power loss. When it still holds a whole record, *torn is set (the next append must
 * start on a fresh line); when it does not, *cut is its offset, where the caller truncates
 * the file, so the fragment does not stay in the middle of the journal for ever. */
static int load_all(journal *j, int *torn, off_t *cut) {
    *torn = 0;
    *cut = -1;
    FILE *f = fdopen(dup(j->fd), "r");
    if (f == NULL)
        return OL_EIO;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    size_t lineno = 0;
    off_t off = 0;
    int rc = 0;
    while ((n = getline(&line, &cap, f)) > 0) {
        lineno++;
        size_t len = (size_t)n;
        int last = line[len - 1] != '\n';
        len -= !last;
        char why[160];
        rc = len == 0 ? 1 : load_line(j, line, len, why, sizeof(why));
        if (rc < 0)
            break;
        if (rc == 0 && last) {
            add_warning(j, lineno,
                        "removed a torn last line, the start of a record a crash cut short", why);
            *cut = off;
        } else if (rc == 0) {
            add_warning(j, lineno, "skipped malformed journal line", why);
        }
        *torn = last && rc == 1;
        rc = 0;
        off += n;
    }
    if (rc == 0 && ferror(f))
        rc = OL_EIO;
    free(line);
    fclose(f);
    return rc;
}

/* Opens a file of the state directory: only a regular file, never through a link (a link
 * planted there would make opsline append to, or truncate, a file elsewhere). On refusal
 * *err names the file and the fix. */
static int state_file_open(const char *path, int oflags, int *fd, char **err) {
    int rc = privfile_open(path, oflags | O_NOFOLLOW, 0600, fd);
    if (rc == OL_EINVAL)
        return ol__fail(err, OL_EINVAL, "state file %s %s", path, privfile_strerror(errno));
    if (rc != 0)
        return ol__fail(err, rc == OL_ENOENT ? OL_EIO : rc, "cannot open %s: %s", path,
                        strerror(errno));
    return rc;
}

/* Names the lock holder in the refusal message of a second run. The file is informational,
 * but it sits in the state directory: a link or FIFO there is refused like any state file. */
static int write_pid(const journal *j, char **err) {
    char *path = ol__format("%s/%s", j->dir, JOURNAL_PID_FILE);
    if (path == NULL)
        return OL_ENOMEM;
    int fd;
    /* No O_TRUNC in the open: truncate only once the file is known to be ours to write. */
    int rc = state_file_open(path, O_WRONLY | O_CREAT, &fd, err);
    if (rc == 0) {
        char buf[32];
        int n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
        if (n > 0 && ftruncate(fd, 0) == 0)
            (void)privfile_write_all(fd, buf, (size_t)n); /* a lost pid is not worth failing */
        close(fd);
    }
    free(path);
    return rc;
}

static long read_pid(const journal *j) {
    char *path = ol__format("%s/%s", j->dir, JOURNAL_PID_FILE);
    if (path == NULL)
        return 0;
    long pid = 0;
    int fd;
    FILE *f = NULL;
    if (privfile_open(path, O_RDONLY | O_NOFOLLOW, 0, &fd) == 0 && (f = fdopen(fd, "r")) == NULL)
        close(fd);
    if (f != NULL) {
        if (fscanf(f, "%ld", &pid) != 1)
            pid = 0;
        fclose(f);
    }
    free(path);
    return pid;
}

static int lock_journal(journal *j, char **err) {
    if (flock(j->fd, LOCK_EX | LOCK_NB) == 0)
        return write_pid(j, err);
    if (errno != EWOULDBLOCK) {
        return ol__fail(err, OL_EIO, "cannot lock %s: %s", j->path, strerror(errno));
    }
    long pid = read_pid(j);
    if (pid > 0)
        return ol__fail(err, OL_EEXIST,
                        "another opsline run is using %s (pid %ld); wait for it to finish or "
                        "use another state directory",
                        j->dir, pid);
    return ol__fail(err, OL_EEXIST,
                    "another opsline run is using %s; wait for it to finish or use another "
                    "state directory",
                    j->dir);
}

int journal_open(const char *state_dir, journal **out, char **err) {
    *out = NULL;
    *err = NULL;
    journal *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return OL_ENOMEM;
    j->fd = -1;
    j->waiters_tail = &j->waiters;
    j->fsync_fn = fsync;
    int rc = OL_ENOMEM;
    j->dir = strdup(state_dir);
    j->path = ol__format("%s/%s", state_dir, JOURNAL_FILE);
    if (j->dir == NULL || j->path == NULL)
        goto fail;

    rc = privfile_mkdirs(state_dir);
    if (rc < 0) {
        ol__fail(err, rc, "cannot create state directory %s: %s", state_dir, strerror(errno));
        goto fail;
    }
    int created = access(j->path, F_OK) != 0;
    rc = state_file_open(j->path, O_RDWR | O_APPEND | O_CREAT, &j->fd, err);
    if (rc < 0)
        goto fail;
    /* The new directory entry must be durable too, or the first record may vanish. */
    if (created && privfile_sync_dir(state_dir) != 0) {
        rc = ol__fail(err, OL_EIO, "cannot fsync state directory %s: %s", state_dir,
                      strerror(errno));
        goto fail;
    }
    rc = lock_journal(j, err);
    if (rc < 0)
        goto fail;

    int torn = 0;
    off_t cut = -1;
    rc = load_all(j, &torn, &cut);
    if (rc < 0) {
        ol__fail(err, rc, "cannot read journal %s: %s", j->path,
                 rc == OL_ENOMEM ? "out of memory" : strerror(errno));
        goto fail;
    }
    /* A torn last line must not swallow the next record: a fragment goes, a whole record
     * gets its newline. */
    if ((cut >= 0 && (ftruncate(j->fd, cut) != 0 || fsync(j->fd) != 0)) ||
        (torn && (privfile_write_all(j->fd, "\n", 1) != 0 || fsync(j->fd) != 0))) {
        rc = ol__fail(err, OL_EIO, "cannot repair journal %s: %s", j->path, strerror(errno));
        goto fail;
    }
    *out = j;
    return 0;

fail:
    journal_close(j);
    return rc;
}

/* The record object with the keys a record of this shape has, in order; NULL when out of
 * memory. Values are placeholders until record_line fills them. */
static json_t *record_shape(journal *j, int has_stage, int has_id, int has_detail) {
    json_t **slot = &j->shapes[has_stage | has_id << 1 | has_detail << 2];
    if (*slot != NULL)
        return *slot;
    json_t *obj = json_object();
    if (obj == NULL || json_object_set_new(obj, "time", json_integer(0)) != 0 ||
        json_object_set_new(obj, "item", json_string("")) != 0 ||
        (has_stage && json_object_set_new(obj, "stage", json_string("")) != 0) ||
        json_object_set_new(obj, "event", json_string("")) != 0 ||
        (has_id && json_object_set_new(obj, "id", json_string("")) != 0) ||
        (has_detail && json_object_set_new(obj, "detail", json_string("")) != 0)) {
        json_decref(obj);
        return NULL;
    }
    return *slot = obj;
}

static int set_text(json_t *obj, const char *key, const char *value) {
    return value == NULL || json_string_set(json_object_get(obj, key), value) == 0 ? 0 : -1;
}

/* The record as one line of compact JSON ending in '\n', fields in the documented order
 * (JSON_PRESERVE_ORDER) so the file reads well by eye, in j->line (valid until the next
 * record); its length, or 0 when out of memory or a value is not UTF-8. */
static size_t record_line(journal *j, long long now, const char *item, const char *stage,
                          const char *event, const char *id, const char *detail) {
    json_t *obj = record_shape(j, stage != NULL, id != NULL, detail != NULL);
    if (obj == NULL || json_integer_set(json_object_get(obj, "time"), (json_int_t)now) != 0 ||
        set_text(obj, "item", item) != 0 || set_text(obj, "stage", stage) != 0 ||
        set_text(obj, "event", event) != 0 || set_text(obj, "id", id) != 0 ||
        set_text(obj, "detail", detail) != 0)
        return 0;
    for (;;) {
        size_t len = json_dumpb(obj, j->line, j->line_cap, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (len == 0)
            return 0;
        if (len < j->line_cap) { /* room for the newline too */
            j->line[len] = '\n';
            return len + 1;
        }
        size_t cap = j->line_cap ? j->line_cap : 256;
        while (cap <= len)
            cap *= 2;
        char *p = realloc(j->line, cap);
        if (p == NULL)
            return 0;
        j->line = p;
        j->line_cap = cap;
    }
}

static int append(journal *j, int durable, const char *item, const char *stage, const char *event,
                  const char *id, const char *detail) {
    if (j == NULL || item == NULL || event == NULL)
        return OL_EINVAL;
    long long now = (long long)time(NULL);
    size_t len = record_line(j, now, item, stage, event, id, detail);
    if (len == 0)
        return OL_ENOMEM;
    /* One write of the whole line: with O_APPEND a concurrent reader never sees two records
     * interleaved, and a crash can only tear the last line (skipped on load). */
    if (privfile_write_all(j->fd, j->line, len) != 0)
        return OL_EIO;
    j->written++;
    if (durable && journal_flush(j) != 0)
        return OL_EIO;
    return records_push(j, now, item, stage, event, id);
}

int journal_append(journal *j, const char *item, const char *stage, const char *event,
                   const char *id, const char *detail) {
    return append(j, 0, item, stage, event, id, detail);
}

int journal_append_durable(journal *j, const char *item, const char *stage, const char *event,
                           const char *id, const char *detail) {
    return append(j, 1, item, stage, event, id, detail);
}

/* The interned event (NULL: no record has it) and whether r matches it and id. */
static int record_matches(const record *r, const char *event, const char *id) {
    if (r->event != event)
        return 0;
    if (id == NULL)
        return 1;
    return r->id != NULL && strcmp(r->id, id) == 0;
}

/* The item's records and the interned event, or NULL when none can match. */
static const item_recs *lookup(const journal *j, const char *item, const char **event) {
    if (j == NULL || item == NULL || *event == NULL)
        return NULL;
    *event = word_find((journal *)j, *event, 0);
    return *event != NULL ? entry_find(j, item) : NULL;
}

size_t journal_count(const journal *j, const char *item, const char *event, const char *id) {
    const item_recs *e = lookup(j, item, &event);
    size_t n = 0;
    for (size_t i = 0; e != NULL && i < e->n; i++)
        n += (size_t)record_matches(&e->recs[i], event, id);
    return n;
}

size_t journal_count_stage(const journal *j, const char *item, const char *stage, const char *event,
                           const char *id) {
    const item_recs *e = stage != NULL ? lookup(j, item, &event) : NULL;
    size_t n = 0;
    for (size_t i = 0; e != NULL && i < e->n; i++)
        n += (size_t)(record_matches(&e->recs[i], event, id) && e->recs[i].stage != NULL &&
                      strcmp(e->recs[i].stage, stage) == 0);
    return n;
}

long long journal_last_time(const journal *j, const char *item, const char *event, const char *id) {
    const item_recs *e = lookup(j, item, &event);
    long long last = 0;
    for (size_t i = 0; e != NULL && i < e->n; i++)
        if (record_matches(&e->recs[i], event, id) && e->recs[i].time > last)
            last = e->recs[i].time;
    return last;
}

size_t journal_last_seq(const journal *j, const char *item, const char *event, const char *id) {
    const item_recs *e = lookup(j, item, &event);
    size_t last = 0;
    for (size_t i = 0; e != NULL && i < e->n; i++)
        if (record_matches(&e->recs[i], event, id))
            last = i + 1;
    return last;
}

/* Index + 1 of the item's last record with event, 0 when none. */
static size_t last_index(const item_recs *e, const char *event) {
    size_t last = 0;
    for (size_t i = 0; i < e->n; i++)
        if (strcmp(e->recs[i].event, event) == 0)
            last = i + 1;
    return last;
}

static int name_cmp(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

size_t journal_items(const journal *j, const char ***out) {
    *out = NULL;
    if (j == NULL || j->n_entries == 0)
        return 0;
    const char **names = calloc(j->n_entries, sizeof(char *));
    size_t n = 0;
    for (size_t b = 0; names != NULL && b < j->n_buckets; b++)
        for (const item_recs *e = j->buckets[b]; e != NULL; e = e->next)
            if (n < j->n_entries && last_index(e, "stage_created") > last_index(e, "stage_deleted"))
                names[n++] = e->name;
    if (n == 0) {
        free(names);
        return 0;
    }
    qsort(names, n, sizeof(*names), name_cmp);
    *out = names;
    return n;
}

void journal_forget(journal *j, const char *item) {
    if (j == NULL || item == NULL || j->n_buckets == 0)
        return;
    for (item_recs **p = bucket_of(j, item); *p != NULL; p = &(*p)->next)
        if (strcmp((*p)->name, item) == 0) {
            item_recs *e = *p;
            *p = e->next;
            entry_free(e);
            j->n_entries--;
            return;
        }
}

const char *journal_path(const journal *j) {
    return j->path;
}

const char *journal_warnings(const journal *j) {
    return j->warnings;
}

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Records up to target are on disk. */
static void synced_up_to(journal *j, uint64_t target) {
    if (target > j->synced)
        j->synced = target;
    j->synced_ms = now_ms();
}

int journal_flush(journal *j) {
    if (j == NULL || j->written == j->synced)
        return 0;
    uint64_t target = j->written;
    j->fsyncs++;
    if (j->fsync_fn(j->fd) != 0)
        return OL_EIO;
    synced_up_to(j, target);
    return 0;
}

/* ---- fsync off the loop ------------------------------------------------------------------ */

static int sync_start(journal *j);

static void sync_work(uv_work_t *req) {
    journal *j = req->data;
    j->sync_errno = j->fsync_fn(j->fd) == 0 ? 0 : errno;
}

/* The fsync is done: the waiters it covers are told, oldest first, 0 when their record is
 * on disk (by this fsync or a journal_flush meanwhile); those whose record came after it
 * started get the next one. A callback may append and wait again: it joins the list after
 * the ones detached here. */
static void sync_after(uv_work_t *req, int status) {
    journal *j = req->data;
    j->syncing = 0;
    if (status == 0 && j->sync_errno == 0)
        synced_up_to(j, j->sync_target);
    else if (j->waiters == NULL)
        j->sync_failed = 1;
    sync_waiter *ready = NULL, **tail = &ready;
    while (j->waiters != NULL && j->waiters->seq <= j->sync_target) {
        sync_waiter *w = j->waiters;
        j->waiters = w->next;
        w->next = NULL;
        *tail = w;
        tail = &w->next;
    }
    if (j->waiters != NULL && sync_start(j) != 0)
        *tail = j->waiters; /* nothing else would ever call them: they fail now */
    if (j->waiters == NULL || !j->syncing) {
        j->waiters = NULL;
        j->waiters_tail = &j->waiters;
    }
    while (ready != NULL) {
        sync_waiter *w = ready;
        ready = w->next;
        w->cb(w->arg, w->seq <= j->synced ? 0 : OL_EIO);
        free(w);
    }
}

/* One fsync on the pool for every record written so far, unless one is running (its
 * completion starts the next). Waiters exist only while one runs. 0, or OL_EIO when the
 * pool refuses. */
static int sync_start(journal *j) {
    if (j->syncing)
        return 0;
    j->sync_target = j->written;
    j->sync_errno = 0;
    j->sync_req.data = j;
    if (uv_queue_work(j->loop, &j->sync_req, sync_work, sync_after) != 0)
        return OL_EIO;
    j->fsyncs++;
    j->syncing = 1;
    return 0;
}

void journal_attach_loop(journal *j, uv_loop_t *loop) {
    j->loop = loop;
}

size_t journal_fsyncs(const journal *j) {
    return j->fsyncs;
}

void journal_test_set_fsync(journal *j, int (*fn)(int fd)) {
    j->fsync_fn = fn != NULL ? fn : fsync;
}

int journal_append_synced(journal *j, const char *item, const char *stage, const char *event,
                          const char *id, const char *detail, journal_synced_cb cb, void *arg) {
    if (j == NULL || j->loop == NULL || cb == NULL)
        return OL_EINVAL;
    sync_waiter *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return OL_ENOMEM;
    int rc = append(j, 0, item, stage, event, id, detail);
    if (rc != 0) {
        free(w);
        return rc;
    }
    w->seq = j->written;
    w->cb = cb;
    w->arg = arg;
    *j->waiters_tail = w;
    j->waiters_tail = &w->next;
    if (sync_start(j) != 0) { /* none ran, so w was the only waiter */
        j->waiters = NULL;
        j->waiters_tail = &j->waiters;
        free(w);
        return OL_EIO;
    }
    return 0;
}

void journal_sync_soon(journal *j) {
    if (j != NULL && j->loop != NULL && j->written > j->synced && sync_start(j) != 0)
        j->sync_failed = 1;
}

int journal_sync_due(journal *j, unsigned interval_ms) {
    if (j == NULL)
        return 0;
    if (j->loop != NULL && now_ms() - j->synced_ms >= interval_ms)
        journal_sync_soon(j);
    if (j->sync_failed) {
        j->sync_failed = 0;
        return OL_EIO;
    }
    return 0;
}

void journal_close(journal *j) {
    if (j == NULL)
        return;
    if (j->syncing) { /* a caller's bug: the pool still holds j; keep it rather than crash */
        j->fsync_fn(j->fd);
        return;
    }
    journal_flush(j);
    if (j->fd >= 0)
        close(j->fd); /* releases the flock */
    for (size_t i = 0; i < j->n_buckets; i++)
        for (item_recs *e = j->buckets[i], *next; e != NULL; e = next) {
            next = e->next;
            entry_free(e);
        }
    free(j->buckets);
    for (size_t i = 0; i < j->n_words; i++)
        free(j->words[i]);
    free(j->words);
    for (size_t i = 0; i < sizeof(j->shapes) / sizeof(j->shapes[0]); i++)
        json_decref(j->shapes[i]);
    free(j->line);
    free(j->warnings);
    free(j->path);
    free(j->dir);
    free(j);
}
