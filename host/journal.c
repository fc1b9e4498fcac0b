/* journal: owns the state directory's journal file (<state_dir>/journal.jsonl): one compact
 * JSON object per line (jansson), appended with O_APPEND; records the caller says must
 * survive a crash (journal_append_durable) are fsync'd before the call returns, the rest at
 * journal_flush. All records are also kept in memory for journal_count / journal_last_time. An
 * exclusive, non-blocking flock on the file keeps a second opsline run off the same state
 * directory; the holder's pid is written next to it (informational only) so the refusal can name
 * it. */
#include "journal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "error.h"
#include "opsline/opsline.h"
#include "privfile.h"

#define JOURNAL_FILE "journal.jsonl"
#define JOURNAL_PID_FILE "journal.pid"

typedef struct record {
    long long time;
    char *item;
    char *stage;
    char *event;
    char *id; /* NULL: none */
} record;

struct journal {
    char *dir;
    char *path;
    int fd;
    record *recs;
    size_t n_recs;
    size_t cap_recs;
    char *warnings; /* NULL: none */
    int dirty;      /* written but not yet fsync'd */
};

static char *dup_or_null(const char *s) {
    return s == NULL ? NULL : strdup(s);
}

static void record_free(record *r) {
    free(r->item);
    free(r->stage);
    free(r->event);
    free(r->id);
}

/* Takes ownership of nothing: copies every string. */
static int records_push(journal *j, long long time, const char *item, const char *stage,
                        const char *event, const char *id) {
    if (j->n_recs == j->cap_recs) {
        size_t cap = j->cap_recs == 0 ? 16 : j->cap_recs * 2;
        record *recs = realloc(j->recs, cap * sizeof(*recs));
        if (recs == NULL)
            return OL_ENOMEM;
        j->recs = recs;
        j->cap_recs = cap;
    }
    record r = {.time = time,
                .item = strdup(item),
                .stage = dup_or_null(stage),
                .event = strdup(event),
                .id = dup_or_null(id)};
    if (r.item == NULL || r.event == NULL || (stage != NULL && r.stage == NULL) ||
        (id != NULL && r.id == NULL)) {
        record_free(&r);
        return OL_ENOMEM;
    }
    j->recs[j->n_recs++] = r;
    return 0;
}

/* Appends a line to j->warnings (several skipped lines give several lines). */
static void add_warning(journal *j, size_t lineno, const char *why) {
    char *w = j->warnings == NULL
                  ? ol__format("%s:%zu: skipped malformed journal line (%s)", j->path, lineno, why)
                  : ol__format("%s\n%s:%zu: skipped malformed journal line (%s)", j->warnings,
                               j->path, lineno, why);
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
 * are required; anything else malformed is skipped with a warning, never fatal, because a
 * crash can tear the last line. */
static int load_line(journal *j, const char *line, size_t len, size_t lineno) {
    if (len == 0)
        return 0;
    json_error_t jerr;
    json_t *obj = json_loadb(line, len, 0, &jerr);
    if (obj == NULL || !json_is_object(obj)) {
        add_warning(j, lineno, obj == NULL ? jerr.text : "not a JSON object");
        json_decref(obj);
        return 0;
    }
    const char *item = json_str_field(obj, "item");
    const char *event = json_str_field(obj, "event");
    const json_t *t = json_object_get(obj, "time");
    int rc = 0;
    if (item == NULL || event == NULL || !json_is_integer(t))
        add_warning(j, lineno, "missing item, event or time");
    else
        rc = records_push(j, (long long)json_integer_value(t), item, json_str_field(obj, "stage"),
                          event, json_str_field(obj, "id"));
    json_decref(obj);
    return rc;
}

/* Reads every record; returns 0 or a negative code. *torn is set when the file does not end
 * in a newline (the next append must start on a fresh line). */
static int load_all(journal *j, int *torn) {
    *torn = 0;
    FILE *f = fdopen(dup(j->fd), "r");
    if (f == NULL)
        return OL_EIO;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    size_t lineno = 0;
    int rc = 0;
    while ((n = getline(&line, &cap, f)) > 0) {
        lineno++;
        size_t len = (size_t)n;
        if (line[len - 1] == '\n')
            len--;
        else
            *torn = 1;
        rc = load_line(j, line, len, lineno);
        if (rc < 0)
            break;
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
    rc = load_all(j, &torn);
    if (rc < 0) {
        ol__fail(err, rc, "cannot read journal %s: %s", j->path,
                 rc == OL_ENOMEM ? "out of memory" : strerror(errno));
        goto fail;
    }
    /* A torn last line stays (it is skipped on every load) but must not swallow the next
     * record: start that one on a fresh line. */
    if (torn && (privfile_write_all(j->fd, "\n", 1) != 0 || fsync(j->fd) != 0)) {
        rc = ol__fail(err, OL_EIO, "cannot repair journal %s: %s", j->path, strerror(errno));
        goto fail;
    }
    *out = j;
    return 0;

fail:
    journal_close(j);
    return rc;
}

/* One record as a line of compact JSON ending in '\n' (malloc'd), fields in the documented
 * order (JSON_PRESERVE_ORDER) so the file reads well by eye. NULL on allocation failure. */
static char *record_line(long long now, const char *item, const char *stage, const char *event,
                         const char *id, const char *detail) {
    json_t *obj = json_object();
    if (obj == NULL)
        return NULL;
    char *text = NULL;
    if (json_object_set_new(obj, "time", json_integer((json_int_t)now)) == 0 &&
        json_object_set_new(obj, "item", json_string(item)) == 0 &&
        (stage == NULL || json_object_set_new(obj, "stage", json_string(stage)) == 0) &&
        json_object_set_new(obj, "event", json_string(event)) == 0 &&
        (id == NULL || json_object_set_new(obj, "id", json_string(id)) == 0) &&
        (detail == NULL || json_object_set_new(obj, "detail", json_string(detail)) == 0))
        text = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(obj);
    if (text == NULL)
        return NULL;
    size_t len = strlen(text);
    char *line = realloc(text, len + 2);
    if (line == NULL) {
        free(text);
        return NULL;
    }
    line[len] = '\n';
    line[len + 1] = '\0';
    return line;
}

static int append(journal *j, int durable, const char *item, const char *stage, const char *event,
                  const char *id, const char *detail) {
    if (j == NULL || item == NULL || event == NULL)
        return OL_EINVAL;
    long long now = (long long)time(NULL);
    char *line = record_line(now, item, stage, event, id, detail);
    if (line == NULL)
        return OL_ENOMEM;
    /* One write of the whole line: with O_APPEND a concurrent reader never sees two records
     * interleaved, and a crash can only tear the last line (skipped on load). */
    int rc = privfile_write_all(j->fd, line, strlen(line));
    free(line);
    if (rc != 0)
        return OL_EIO;
    j->dirty = 1;
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

static int record_matches(const record *r, const char *item, const char *event, const char *id) {
    if (strcmp(r->item, item) != 0 || strcmp(r->event, event) != 0)
        return 0;
    if (id == NULL)
        return 1;
    return r->id != NULL && strcmp(r->id, id) == 0;
}

size_t journal_count(const journal *j, const char *item, const char *event, const char *id) {
    if (j == NULL || item == NULL || event == NULL)
        return 0;
    size_t n = 0;
    for (size_t i = 0; i < j->n_recs; i++)
        n += (size_t)record_matches(&j->recs[i], item, event, id);
    return n;
}

size_t journal_count_stage(const journal *j, const char *item, const char *stage, const char *event,
                           const char *id) {
    if (j == NULL || item == NULL || event == NULL || stage == NULL)
        return 0;
    size_t n = 0;
    for (size_t i = 0; i < j->n_recs; i++)
        n += (size_t)(record_matches(&j->recs[i], item, event, id) && j->recs[i].stage != NULL &&
                      strcmp(j->recs[i].stage, stage) == 0);
    return n;
}

long long journal_last_time(const journal *j, const char *item, const char *event, const char *id) {
    if (j == NULL || item == NULL || event == NULL)
        return 0;
    long long last = 0;
    for (size_t i = 0; i < j->n_recs; i++)
        if (record_matches(&j->recs[i], item, event, id) && j->recs[i].time > last)
            last = j->recs[i].time;
    return last;
}

/* Index + 1 of the last record of item with event, 0 when none. */
static size_t last_index(const journal *j, const char *item, const char *event) {
    size_t last = 0;
    for (size_t i = 0; i < j->n_recs; i++)
        if (record_matches(&j->recs[i], item, event, NULL))
            last = i + 1;
    return last;
}

size_t journal_items(const journal *j, const char ***out) {
    *out = NULL;
    if (j == NULL || j->n_recs == 0)
        return 0;
    const char **names = calloc(j->n_recs, sizeof(char *));
    size_t n = 0;
    for (size_t i = 0; names != NULL && i < j->n_recs; i++) {
        const char *item = j->recs[i].item;
        size_t k = 0;
        while (k < n && strcmp(names[k], item) != 0)
            k++;
        if (k == n && last_index(j, item, "stage_created") > last_index(j, item, "stage_deleted"))
            names[n++] = item;
    }
    if (n == 0) {
        free(names);
        return 0;
    }
    *out = names;
    return n;
}

const char *journal_path(const journal *j) {
    return j->path;
}

const char *journal_warnings(const journal *j) {
    return j->warnings;
}

int journal_flush(journal *j) {
    if (j == NULL || !j->dirty)
        return 0;
    if (fsync(j->fd) != 0)
        return OL_EIO;
    j->dirty = 0;
    return 0;
}

void journal_close(journal *j) {
    if (j == NULL)
        return;
    journal_flush(j);
    if (j->fd >= 0)
        close(j->fd); /* releases the flock */
    for (size_t i = 0; i < j->n_recs; i++)
        record_free(&j->recs[i]);
    free(j->recs);
    free(j->warnings);
    free(j->path);
    free(j->dir);
    free(j);
}
