/* Tests for host/journal.c: durable JSON-lines records, counts, torn lines, the lock. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <pthread.h>
#include <uv.h>

#include "journal.h"
#include "opsline/opsline.h"

typedef struct fixture {
    char root[64];  /* mkdtemp directory */
    char dir[128];  /* state dir inside it (created by journal_open) */
    char file[160]; /* journal file */
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    snprintf(f->root, sizeof(f->root), "/tmp/ol-journal-XXXXXX");
    if (mkdtemp(f->root) == NULL) {
        free(f);
        return -1;
    }
    snprintf(f->dir, sizeof(f->dir), "%s/state/.opsline", f->root);
    snprintf(f->file, sizeof(f->file), "%s/journal.jsonl", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->root);
    int rc = system(cmd);
    free(f);
    return rc == 0 ? 0 : -1;
}

static journal *open_ok(const fixture *f) {
    journal *j = NULL;
    char *err = NULL;
    int rc = journal_open(f->dir, &j, &err);
    if (rc != 0)
        fprintf(stderr, "journal_open: %d %s\n", rc, err ? err : "(null)");
    assert_int_equal(rc, 0);
    assert_null(err);
    assert_non_null(j);
    return j;
}

static void append_raw(const char *path, const char *text) {
    FILE *fp = fopen(path, "a");
    assert_non_null(fp);
    assert_int_equal(fputs(text, fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
}

static char *read_all(const char *path) {
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    static char buf[8192];
    size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
    buf[n] = '\0';
    fclose(fp);
    return buf;
}

static void creates_private_dir_and_file(void **state) {
    fixture *f = *state;
    journal *j = open_ok(f);
    struct stat st;
    assert_int_equal(stat(f->dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(stat(f->file, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_string_equal(journal_path(j), f->file);
    assert_null(journal_warnings(j));
    journal_close(j);
}

static void appends_one_compact_json_line_per_record(void **state) {
    fixture *f = *state;
    journal *j = open_ok(f);
    assert_int_equal(journal_append(j, "acme-prod", "iam", "access_key_created", "AKIA1", NULL), 0);
    assert_int_equal(
        journal_append(j, "acme-prod", "dotenv", "secret_stored", "AKIA1", "acme-prod.env"), 0);
    journal_close(j);

    char *text = read_all(f->file);
    char *nl = strchr(text, '\n');
    assert_non_null(nl);
    *nl = '\0';
    json_error_t jerr;
    json_t *first = json_loads(text, 0, &jerr);
    assert_non_null(first);
    assert_string_equal(json_string_value(json_object_get(first, "item")), "acme-prod");
    assert_string_equal(json_string_value(json_object_get(first, "stage")), "iam");
    assert_string_equal(json_string_value(json_object_get(first, "event")), "access_key_created");
    assert_string_equal(json_string_value(json_object_get(first, "id")), "AKIA1");
    assert_null(json_object_get(first, "detail"));
    assert_true(json_integer_value(json_object_get(first, "time")) > 1600000000);
    assert_null(strchr(text, ' ')); /* compact */
    json_decref(first);

    json_t *second = json_loads(nl + 1, 0, &jerr);
    assert_non_null(second);
    assert_string_equal(json_string_value(json_object_get(second, "detail")), "acme-prod.env");
    json_decref(second);
}

/* Records of different shapes, interleaved, each carry only their own values, in the same
 * key order, whatever the length of a line. */
static void writes_each_record_with_only_its_own_values(void **state) {
    fixture *f = *state;
    journal *j = open_ok(f);
    char long_item[700];
    memset(long_item, 'l', sizeof long_item - 1);
    long_item[sizeof long_item - 1] = '\0';
    assert_int_equal(journal_append(j, "a-prod", "iam", "access_key_created", "AKIA1", NULL), 0);
    assert_int_equal(journal_append(j, "b-prod", NULL, "x", NULL, NULL), 0);
    assert_int_equal(journal_append(j, long_item, "s", "y", "I", "d\"q"), 0);
    assert_int_equal(journal_append(j, "c-prod", "iam", "access_key_created", "AKIA2", NULL), 0);
    assert_int_equal(journal_append(j, "d-prod", NULL, "x", NULL, NULL), 0);
    assert_int_equal(journal_append(j, "bad\xff", NULL, "x", NULL, NULL), OL_ENOMEM);
    journal_close(j);

    char want_long[900];
    snprintf(want_long, sizeof want_long,
             "\"item\":\"%s\",\"stage\":\"s\",\"event\":\"y\",\"id\":\"I\",\"detail\":\"d\\\"q\"}",
             long_item);
    const char *want[] = {
        "\"item\":\"a-prod\",\"stage\":\"iam\",\"event\":\"access_key_created\",\"id\":\"AKIA1\"}",
        "\"item\":\"b-prod\",\"event\":\"x\"}",
        want_long,
        "\"item\":\"c-prod\",\"stage\":\"iam\",\"event\":\"access_key_created\",\"id\":\"AKIA2\"}",
        "\"item\":\"d-prod\",\"event\":\"x\"}",
    };
    char *text = read_all(f->file);
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        char *nl = strchr(text, '\n');
        assert_non_null(nl);
        *nl = '\0';
        assert_true(strncmp(text, "{\"time\":", 8) == 0);
        char *rest = strchr(text, ',');
        assert_non_null(rest);
        assert_string_equal(rest + 1, want[i]);
        text = nl + 1;
    }
    assert_string_equal(text, ""); /* the refused record left nothing */
}

static void counts_records_by_item_event_and_id(void **state) {
    fixture *f = *state;
    journal *j = open_ok(f);
    assert_int_equal(journal_append(j, "a-prod", "iam", "access_key_requested", NULL, NULL), 0);
    assert_int_equal(journal_append(j, "a-prod", "iam", "access_key_created", "K1", NULL), 0);
    assert_int_equal(journal_append(j, "a-prod", "iam", "access_key_created", "K2", NULL), 0);
    assert_int_equal(journal_append(j, "b-prod", "iam", "access_key_created", "K1", NULL), 0);

    assert_int_equal(journal_count(j, "a-prod", "access_key_created", NULL), 2);
    assert_int_equal(journal_count(j, "a-prod", "access_key_created", "K2"), 1);
    assert_int_equal(journal_count(j, "a-prod", "access_key_created", "K3"), 0);
    assert_int_equal(journal_count(j, "a-prod", "access_key_requested", NULL), 1);
    /* a record without an id never matches a specific id */
    assert_int_equal(journal_count(j, "a-prod", "access_key_requested", "K1"), 0);
    assert_int_equal(journal_count(j, "b-prod", "access_key_created", NULL), 1);
    assert_int_equal(journal_count(j, "c-prod", "access_key_created", NULL), 0);
    assert_true(journal_last_time(j, "a-prod", "access_key_created", "K2") > 1600000000);
    assert_int_equal(journal_last_time(j, "a-prod", "secret_stored", NULL), 0);
    journal_close(j);
}

static void lists_the_items_created_and_not_destroyed_since(void **state) {
    fixture *f = *state;
    journal *j = open_ok(f);
    const char **items = NULL;
    assert_int_equal(journal_items(j, &items), 0);
    assert_null(items);
    assert_int_equal(journal_append(j, "a-prod", "bucket", "stage_created", NULL, NULL), 0);
    assert_int_equal(journal_append(j, "b-prod", "iam", "access_key_requested", NULL, NULL), 0);
    assert_int_equal(journal_append(j, "c-prod", "bucket", "stage_created", NULL, NULL), 0);
    assert_int_equal(journal_append(j, "a-prod", "iam", "stage_created", NULL, NULL), 0);
    assert_int_equal(journal_append(j, "c-prod", "bucket", "stage_deleted", NULL, NULL), 0);
    assert_int_equal(journal_append(j, "d-prod", "bucket", "stage_created", NULL, NULL), 0);
    assert_int_equal(journal_append(j, "d-prod", "bucket", "stage_deleted", NULL, NULL), 0);
    assert_int_equal(journal_append(j, "d-prod", "bucket", "stage_created", NULL, NULL), 0);
    assert_int_equal(journal_items(j, &items), 2); /* b: nothing created; c: destroyed */
    assert_string_equal(items[0], "a-prod");
    assert_string_equal(items[1], "d-prod");
    free(items);
    journal_close(j);
}

static void reloads_records_written_by_an_earlier_run(void **state) {
    fixture *f = *state;
    journal *j = open_ok(f);
    assert_int_equal(journal_append(j, "a-prod", "dotenv", "secret_stored", "K1", "x.env"), 0);
    journal_close(j);

    j = open_ok(f);
    assert_int_equal(journal_count(j, "a-prod", "secret_stored", "K1"), 1);
    assert_int_equal(journal_append(j, "a-prod", "dotenv", "secret_stored", "K1", "x.env"), 0);
    assert_int_equal(journal_count(j, "a-prod", "secret_stored", "K1"), 2);
    journal_close(j);
}

/* Every line of the file is a whole JSON object (a torn one never stays in the middle). */
static size_t assert_every_line_a_record(const char *path) {
    char *text = read_all(path);
    size_t n = 0;
    assert_true(*text == '\0' || text[strlen(text) - 1] == '\n');
    for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n"), n++) {
        json_t *obj = json_loads(line, 0, NULL);
        if (!json_is_object(obj))
            fail_msg("journal line %zu is not a record: %s", n + 1, line);
        json_decref(obj);
    }
    return n;
}

static void removes_a_torn_last_line_and_appends_on_a_fresh_line(void **state) {
    fixture *f = *state;
    journal *j = open_ok(f);
    assert_int_equal(journal_append(j, "a-prod", "iam", "access_key_created", "K1", NULL), 0);
    journal_close(j);
    append_raw(f->file, "{\"time\":1700000000,\"item\":\"a-prod\",\"ev"); /* crash mid-write */

    j = open_ok(f);
    assert_non_null(journal_warnings(j));
    assert_non_null(strstr(journal_warnings(j), ":2: removed a torn last line"));
    assert_int_equal(journal_count(j, "a-prod", "access_key_created", "K1"), 1);
    assert_int_equal(journal_append(j, "a-prod", "iam", "access_key_deleted", "K1", NULL), 0);
    journal_close(j);
    assert_int_equal(assert_every_line_a_record(f->file), 2);

    j = open_ok(f);
    assert_null(journal_warnings(j));
    assert_int_equal(journal_count(j, "a-prod", "access_key_deleted", "K1"), 1);
    assert_int_equal(journal_count(j, "a-prod", "access_key_created", "K1"), 1);
    journal_close(j);
}

static void keeps_a_whole_last_record_that_lost_only_its_newline(void **state) {
    fixture *f = *state;
    journal *j = open_ok(f);
    journal_close(j);
    append_raw(f->file, "{\"time\":1700000000,\"item\":\"a-prod\",\"event\":\"x\",\"id\":\"K1\"}");

    j = open_ok(f);
    assert_null(journal_warnings(j));
    assert_int_equal(journal_count(j, "a-prod", "x", "K1"), 1);
    assert_int_equal(journal_append(j, "a-prod", "iam", "y", NULL, NULL), 0);
    journal_close(j);
    assert_int_equal(assert_every_line_a_record(f->file), 2);
}

static void a_malformed_line_in_the_middle_is_skipped_and_kept(void **state) {
    fixture *f = *state;
    journal *j = open_ok(f);
    journal_close(j);
    append_raw(f->file, "{\"time\":1,\"item\":\"a\",\"event\":\"x\"}\n"
                        "{\"time\":2,\"item\":\"a\",\"ev\n"
                        "{\"time\":3,\"item\":\"a\",\"event\":\"x\"}\n");
    j = open_ok(f);
    assert_non_null(strstr(journal_warnings(j), ":2: skipped malformed journal line"));
    assert_int_equal(journal_count(j, "a", "x", NULL), 2);
    journal_close(j);
    /* Not the journal's to rewrite: only a torn end is removed. */
    assert_non_null(strstr(read_all(f->file), "\"ev\n"));
}

static void forgets_an_item_and_only_that_item(void **state) {
    fixture *f = *state;
    journal *j = open_ok(f);
    assert_int_equal(journal_append(j, "a-prod", "iam", "access_key_created", "K1", NULL), 0);
    assert_int_equal(journal_append(j, "b-prod", "iam", "access_key_created", "K2", NULL), 0);
    journal_forget(j, "a-prod");
    journal_forget(j, "never-seen");
    assert_int_equal(journal_count(j, "a-prod", "access_key_created", NULL), 0);
    assert_int_equal(journal_count(j, "b-prod", "access_key_created", "K2"), 1);
    assert_int_equal(journal_append(j, "a-prod", "dotenv", "secret_stored", "K1", NULL), 0);
    assert_int_equal(journal_count_stage(j, "a-prod", "dotenv", "secret_stored", "K1"), 1);
    journal_close(j);

    j = open_ok(f); /* the file still has everything */
    assert_int_equal(journal_count(j, "a-prod", "access_key_created", "K1"), 1);
    assert_int_equal(journal_count(j, "a-prod", "secret_stored", "K1"), 1);
    journal_close(j);
}

/* Enough items that the table grows several times: every count still finds its item's
 * records and no other's. */
static void counts_each_of_thousands_of_items_apart(void **state) {
    fixture *f = *state;
    enum { N = 5000 };
    char item[32], id[32];
    journal *j = open_ok(f);
    for (int i = 0; i < N; i++) {
        snprintf(item, sizeof(item), "p%05d-production", i);
        snprintf(id, sizeof(id), "AKIA%016d", i);
        assert_int_equal(journal_append(j, item, "iam", "access_key_created", id, NULL), 0);
        if (i % 2 == 0)
            assert_int_equal(journal_append(j, item, "dotenv", "secret_stored", id, NULL), 0);
    }
    journal_close(j);
    j = open_ok(f);
    for (int i = 0; i < N; i++) {
        snprintf(item, sizeof(item), "p%05d-production", i);
        snprintf(id, sizeof(id), "AKIA%016d", i);
        assert_int_equal(journal_count(j, item, "access_key_created", NULL), 1);
        assert_int_equal(journal_count(j, item, "access_key_created", id), 1);
        assert_int_equal(journal_count_stage(j, item, "dotenv", "secret_stored", id), i % 2 == 0);
        if (i % 3 == 0)
            journal_forget(j, item);
    }
    assert_int_equal(journal_count(j, "p00003-production", "access_key_created", NULL), 0);
    assert_int_equal(journal_count(j, "p00004-production", "access_key_created", NULL), 1);
    journal_close(j);
}

static void skips_lines_that_are_not_records(void **state) {
    fixture *f = *state;
    journal *j = open_ok(f); /* creates the directory */
    journal_close(j);
    append_raw(f->file, "[1,2]\n"
                        "{\"time\":1,\"event\":\"x\"}\n"
                        "\n"
                        "{\"time\":5,\"item\":\"a\",\"event\":\"x\",\"id\":\"I\"}\n"
                        "not json\n");
    j = open_ok(f);
    assert_int_equal(journal_count(j, "a", "x", "I"), 1);
    assert_int_equal(journal_last_time(j, "a", "x", NULL), 5);
    const char *w = journal_warnings(j);
    assert_non_null(w);
    assert_non_null(strstr(w, ":1:"));
    assert_non_null(strstr(w, ":2:"));
    assert_null(strstr(w, ":3:")); /* an empty line is not an error */
    assert_non_null(strstr(w, ":5:"));
    journal_close(j);
}

static void refuses_a_second_run_on_the_same_state_dir(void **state) {
    fixture *f = *state;
    journal *j = open_ok(f);
    journal *j2 = NULL;
    char *err = NULL;
    assert_int_equal(journal_open(f->dir, &j2, &err), OL_EEXIST);
    assert_null(j2);
    assert_non_null(err);
    assert_non_null(strstr(err, "another opsline run is using"));
    assert_non_null(strstr(err, f->dir));
    char pid[32];
    snprintf(pid, sizeof(pid), "pid %ld", (long)getpid());
    assert_non_null(strstr(err, pid));
    free(err);
    journal_close(j);

    /* the lock goes with the first handle */
    j = open_ok(f);
    journal_close(j);
}

static void reports_an_unusable_state_dir(void **state) {
    fixture *f = *state;
    char blocker[160];
    snprintf(blocker, sizeof(blocker), "%s/file", f->root);
    append_raw(blocker, "x");
    char dir[200];
    snprintf(dir, sizeof(dir), "%s/sub", blocker);
    journal *j = NULL;
    char *err = NULL;
    assert_int_equal(journal_open(dir, &j, &err), OL_EIO);
    assert_null(j);
    assert_non_null(err);
    assert_non_null(strstr(err, dir));
    free(err);
}

static void rejects_appends_without_item_or_event(void **state) {
    fixture *f = *state;
    journal *j = open_ok(f);
    assert_int_equal(journal_append(j, NULL, "iam", "x", NULL, NULL), OL_EINVAL);
    assert_int_equal(journal_append(j, "a", "iam", NULL, NULL, NULL), OL_EINVAL);
    assert_int_equal(journal_append(j, "a", NULL, "x", NULL, NULL), 0);
    assert_int_equal(journal_count(j, "a", "x", NULL), 1);
    journal_close(j);
}

static void writes_a_durable_record_before_returning(void **state) {
    fixture *f = *state;
    journal *j = open_ok(f);
    assert_int_equal(journal_append_durable(j, "a-prod", "stage", "any_event", "K1", "d"), 0);
    const char *text = read_all(f->file); /* still open: the line is in the file already */
    assert_non_null(strstr(text, "\"event\":\"any_event\""));
    assert_int_equal(journal_count(j, "a-prod", "any_event", "K1"), 1);
    assert_int_equal(journal_count_stage(j, "a-prod", "stage", "any_event", NULL), 1);
    assert_int_equal(journal_append_durable(j, NULL, "s", "x", NULL, NULL), OL_EINVAL);
    assert_int_equal(journal_append_durable(j, "a", "s", NULL, NULL, NULL), OL_EINVAL);
    journal_close(j);
}

/* ---- journal_append_synced: the fsync on the thread pool -------------------------------- */

/* What the callbacks saw, in order: "name:status;" each. */
typedef struct synced_log {
    char text[256];
    journal *j;
    const char *again; /* when set, the first callback appends this item, synced, once */
} synced_log;

typedef struct synced_arg {
    synced_log *log;
    const char *name;
} synced_arg;

static void on_synced(void *arg, int status);

/* A "requested" record for item a->name, synced; on_synced logs its completion. */
static void request(journal *j, synced_arg *a) {
    assert_int_equal(
        journal_append_synced(j, a->name, "iam", "requested", NULL, NULL, on_synced, a), 0);
}

static void on_synced(void *arg, int status) {
    synced_arg *a = arg;
    size_t used = strlen(a->log->text);
    snprintf(a->log->text + used, sizeof(a->log->text) - used, "%s:%d;", a->name, status);
    if (a->log->again != NULL) {
        static synced_arg again_arg;
        again_arg = (synced_arg){a->log, a->log->again};
        a->log->again = NULL;
        request(a->log->j, &again_arg);
    }
}

static journal *open_on_loop(const fixture *f, uv_loop_t *loop) {
    assert_int_equal(uv_loop_init(loop), 0);
    journal *j = open_ok(f);
    journal_attach_loop(j, loop);
    return j;
}

static void close_loop(uv_loop_t *loop) {
    assert_int_equal(uv_run(loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(loop), 0);
}

/* The journal, then the loop (which runs dry first). */
static void close_both(journal *j, uv_loop_t *loop) {
    journal_close(j);
    close_loop(loop);
}

static void calls_back_once_the_synced_record_is_on_disk_never_within_the_call(void **state) {
    fixture *f = *state;
    uv_loop_t loop;
    journal *j = open_on_loop(f, &loop);
    synced_log log = {.j = j};
    synced_arg a = {&log, "a"};
    size_t before = journal_fsyncs(j);
    request(j, &a);
    assert_string_equal(log.text, ""); /* not from within the call */
    assert_non_null(strstr(read_all(f->file), "\"event\":\"requested\"")); /* written at once */
    assert_int_equal(journal_count(j, "a", "requested", NULL), 1);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_string_equal(log.text, "a:0;");
    assert_int_equal(journal_fsyncs(j), before + 1);
    assert_int_equal(journal_flush(j), 0); /* nothing left to sync: no fsync */
    assert_int_equal(journal_fsyncs(j), before + 1);
    close_both(j, &loop);
}

static void records_written_while_an_fsync_runs_share_the_next_one(void **state) {
    fixture *f = *state;
    uv_loop_t loop;
    journal *j = open_on_loop(f, &loop);
    synced_log log = {.j = j};
    synced_arg a[] = {{&log, "a"}, {&log, "b"}, {&log, "c"}};
    size_t before = journal_fsyncs(j);
    for (size_t i = 0; i < 3; i++)
        request(j, &a[i]);
    /* a's fsync started at once; b and c came after it, so one more covers both. */
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_string_equal(log.text, "a:0;b:0;c:0;");
    assert_int_equal(journal_fsyncs(j), before + 2);
    close_both(j, &loop);
}

static void a_callback_may_append_and_wait_again(void **state) {
    fixture *f = *state;
    uv_loop_t loop;
    journal *j = open_on_loop(f, &loop);
    synced_log log = {.j = j, .again = "d"};
    synced_arg a = {&log, "a"};
    request(j, &a);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_string_equal(log.text, "a:0;d:0;");
    assert_int_equal(journal_count(j, "d", "requested", NULL), 1);
    close_both(j, &loop);
}

/* An fsync that waits until the loop has run a timer: proof that the loop is not blocked. */
static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static int gate_open;

static int gated_fsync(int fd) {
    pthread_mutex_lock(&gate_mu);
    while (!gate_open)
        pthread_cond_wait(&gate_cv, &gate_mu);
    pthread_mutex_unlock(&gate_mu);
    return fsync(fd);
}

static void open_gate(uv_timer_t *t) {
    synced_log *log = t->data;
    strcat(log->text, "timer;");
    pthread_mutex_lock(&gate_mu);
    gate_open = 1;
    pthread_cond_signal(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
    uv_close((uv_handle_t *)t, NULL);
}

static void the_loop_runs_while_the_fsync_waits(void **state) {
    fixture *f = *state;
    uv_loop_t loop;
    journal *j = open_on_loop(f, &loop);
    journal_test_set_fsync(j, gated_fsync);
    gate_open = 0;
    synced_log log = {.j = j};
    synced_arg a = {&log, "a"};
    uv_timer_t t;
    assert_int_equal(uv_timer_init(&loop, &t), 0);
    t.data = &log;
    assert_int_equal(uv_timer_start(&t, open_gate, 1, 0), 0);
    request(j, &a);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_string_equal(log.text, "timer;a:0;");
    close_both(j, &loop);
}

static int failing_fsync(int fd) {
    (void)fd;
    errno = EIO;
    return -1;
}

static void a_failed_fsync_is_reported_to_its_waiters_and_once_to_sync_due(void **state) {
    fixture *f = *state;
    uv_loop_t loop;
    journal *j = open_on_loop(f, &loop);
    journal_test_set_fsync(j, failing_fsync);
    synced_log log = {.j = j};
    synced_arg a[] = {{&log, "a"}, {&log, "b"}};
    for (size_t i = 0; i < 2; i++)
        request(j, &a[i]);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    char want[64];
    snprintf(want, sizeof(want), "a:%d;b:%d;", OL_EIO, OL_EIO);
    assert_string_equal(log.text, want);
    /* With nobody waiting, the failure of a background fsync comes back from the next
     * journal_sync_due, once. */
    assert_int_equal(journal_append(j, "c", "iam", "plain", NULL, NULL), 0);
    journal_sync_soon(j);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    journal_test_set_fsync(j, NULL);
    assert_int_equal(journal_sync_due(j, UINT_MAX), OL_EIO); /* UINT_MAX: starts no fsync */
    assert_int_equal(journal_sync_due(j, UINT_MAX), 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    close_both(j, &loop);
}

static void sync_due_fsyncs_off_the_loop_only_when_records_wait_and_it_is_time(void **state) {
    fixture *f = *state;
    uv_loop_t loop;
    journal *j = open_on_loop(f, &loop);
    size_t before = journal_fsyncs(j);
    assert_int_equal(journal_sync_due(j, 0), 0); /* nothing written: no fsync */
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(journal_fsyncs(j), before);
    assert_int_equal(journal_append(j, "a", "iam", "plain", NULL, NULL), 0);
    assert_int_equal(journal_sync_due(j, 0), 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(journal_fsyncs(j), before + 1);
    assert_int_equal(journal_append(j, "b", "iam", "plain", NULL, NULL), 0);
    assert_int_equal(journal_sync_due(j, 60000), 0); /* synced just now: not yet */
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(journal_fsyncs(j), before + 1);
    assert_int_equal(journal_flush(j), 0); /* b is still to sync: on the loop, now */
    assert_int_equal(journal_fsyncs(j), before + 2);
    close_both(j, &loop);
}

static void refuses_a_synced_append_without_a_loop_or_callback(void **state) {
    fixture *f = *state;
    journal *j = open_ok(f);
    synced_log log = {.j = j};
    synced_arg a = {&log, "a"};
    assert_int_equal(journal_append_synced(j, "a", "iam", "requested", NULL, NULL, on_synced, &a),
                     OL_EINVAL);
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    journal_attach_loop(j, &loop);
    assert_int_equal(journal_append_synced(j, "a", "iam", "requested", NULL, NULL, NULL, NULL),
                     OL_EINVAL);
    assert_int_equal(journal_append_synced(j, NULL, "iam", "requested", NULL, NULL, on_synced, &a),
                     OL_EINVAL);
    assert_int_equal(journal_count(j, "a", "requested", NULL), 0);
    assert_string_equal(log.text, "");
    close_both(j, &loop);
}

/* journal_open must refuse, naming the file, and leave what a planted entry points at
 * untouched. alarm(10): a FIFO that hangs the open fails the test instead of stalling it. */
static void refuse_state_file(const fixture *f, const char *name, const char *want) {
    journal *j = NULL;
    char *err = NULL;
    alarm(10);
    int rc = journal_open(f->dir, &j, &err);
    alarm(0);
    assert_int_equal(rc, OL_EINVAL);
    assert_null(j);
    assert_non_null(err);
    assert_non_null(strstr(err, name));
    assert_non_null(strstr(err, want));
    free(err);
}

static void make_state_dir(const fixture *f) {
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
}

static void refuses_a_pid_file_linked_to_another_file_and_leaves_it_whole(void **state) {
    fixture *f = *state;
    char victim[160], pid[160];
    make_state_dir(f);
    snprintf(victim, sizeof(victim), "%s/victim", f->root);
    snprintf(pid, sizeof(pid), "%s/journal.pid", f->dir);
    append_raw(victim, "precious\n");
    assert_int_equal(symlink(victim, pid), 0);
    refuse_state_file(f, "journal.pid", "symbolic link");
    assert_string_equal(read_all(victim), "precious\n");
}

static void refuses_a_journal_that_is_a_link(void **state) {
    fixture *f = *state;
    char victim[160];
    make_state_dir(f);
    snprintf(victim, sizeof(victim), "%s/victim", f->root);
    append_raw(victim, "precious\n");
    assert_int_equal(symlink(victim, f->file), 0);
    refuse_state_file(f, "journal.jsonl", "symbolic link");
    assert_string_equal(read_all(victim), "precious\n");
}

static void refuses_a_journal_or_pid_file_that_is_a_fifo(void **state) {
    fixture *f = *state;
    char pid[160];
    make_state_dir(f);
    assert_int_equal(mkfifo(f->file, 0600), 0);
    refuse_state_file(f, "journal.jsonl", "FIFO");
    assert_int_equal(unlink(f->file), 0);
    snprintf(pid, sizeof(pid), "%s/journal.pid", f->dir);
    assert_int_equal(mkfifo(pid, 0600), 0);
    refuse_state_file(f, "journal.pid", "FIFO");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(creates_private_dir_and_file, setup, teardown),
        cmocka_unit_test_setup_teardown(appends_one_compact_json_line_per_record, setup, teardown),
        cmocka_unit_test_setup_teardown(writes_each_record_with_only_its_own_values, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(counts_records_by_item_event_and_id, setup, teardown),
        cmocka_unit_test_setup_teardown(lists_the_items_created_and_not_destroyed_since, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(reloads_records_written_by_an_earlier_run, setup, teardown),
        cmocka_unit_test_setup_teardown(removes_a_torn_last_line_and_appends_on_a_fresh_line, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(keeps_a_whole_last_record_that_lost_only_its_newline, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_malformed_line_in_the_middle_is_skipped_and_kept, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(forgets_an_item_and_only_that_item, setup, teardown),
        cmocka_unit_test_setup_teardown(counts_each_of_thousands_of_items_apart, setup, teardown),
        cmocka_unit_test_setup_teardown(skips_lines_that_are_not_records, setup, teardown),
        cmocka_unit_test_setup_teardown(refuses_a_second_run_on_the_same_state_dir, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(reports_an_unusable_state_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(rejects_appends_without_item_or_event, setup, teardown),
        cmocka_unit_test_setup_teardown(writes_a_durable_record_before_returning, setup, teardown),
        cmocka_unit_test_setup_teardown(
            calls_back_once_the_synced_record_is_on_disk_never_within_the_call, setup, teardown),
        cmocka_unit_test_setup_teardown(records_written_while_an_fsync_runs_share_the_next_one,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(a_callback_may_append_and_wait_again, setup, teardown),
        cmocka_unit_test_setup_teardown(the_loop_runs_while_the_fsync_waits, setup, teardown),
        cmocka_unit_test_setup_teardown(
            a_failed_fsync_is_reported_to_its_waiters_and_once_to_sync_due, setup, teardown),
        cmocka_unit_test_setup_teardown(
            sync_due_fsyncs_off_the_loop_only_when_records_wait_and_it_is_time, setup, teardown),
        cmocka_unit_test_setup_teardown(refuses_a_synced_append_without_a_loop_or_callback, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            refuses_a_pid_file_linked_to_another_file_and_leaves_it_whole, setup, teardown),
        cmocka_unit_test_setup_teardown(refuses_a_journal_that_is_a_link, setup, teardown),
        cmocka_unit_test_setup_teardown(refuses_a_journal_or_pid_file_that_is_a_fifo, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
