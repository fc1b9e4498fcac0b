/* journal: the append-only, fsync'd record of what opsline created, per state directory
 * (default .opsline/). One JSON object per line (jansson): time, item, stage, event,
 * resource id, detail. Read back at start so a later run (or the same one) can tell, for
 * example, an access key whose secret was stored from one whose secret was lost. Never
 * holds a secret. An exclusive lock (flock) keeps two runs off the same state directory. */
#ifndef OL_JOURNAL_H
#define OL_JOURNAL_H

#include <stddef.h>

#include <uv.h>

typedef struct journal journal;

/* status 0: the record is on disk; OL_EIO: the fsync failed (do not rely on the record). */
typedef void (*journal_synced_cb)(void *arg, int status);

/* Open (creating dir 0700 and file 0600) and load existing records; take the lock.
 * Returns 0; OL_EIO with a malloc'd *err (path and reason) on failure; OL_EEXIST when
 * another opsline run holds the lock (message says so). A malformed line is skipped;
 * journal_warnings() then says which. A last line without its newline that is not a whole
 * record (an append a crash or power loss cut short) is removed from the file, so the
 * journal stays one record per line. The journal file is <state_dir>/journal.jsonl. */
int journal_open(const char *state_dir, journal **out, char **err);

/* Append one record, durable at the next journal_flush: losing it in a crash only makes the
 * next run reconcile more. id and detail may be NULL. Returns 0, OL_EINVAL, OL_ENOMEM or
 * OL_EIO. */
int journal_append(journal *j, const char *item, const char *stage, const char *event,
                   const char *id, const char *detail);

/* Append one record a later run must find even after a crash or power loss at the very next
 * instruction (an intent to create a key, an unknown outcome, where a secret was stored):
 * it is fsync'd before the call returns. The caller decides; one fsync per record is the
 * largest cost of a run, so use it only where losing the record would lose a key or keep an
 * orphan. */
int journal_append_durable(journal *j, const char *item, const char *stage, const char *event,
                           const char *id, const char *detail);

/* The loop whose thread pool runs the fsyncs of journal_append_synced and journal_sync_due
 * (borrowed; without it they return OL_EINVAL or do nothing). Close the journal only after
 * the loop has run out of work: a running fsync holds the journal. */
void journal_attach_loop(journal *j, uv_loop_t *loop);

/* journal_append_durable without blocking the loop: the record is written before this
 * returns (a killed process does not lose it) and cb runs on the loop once it is on disk,
 * never from within this call. One fsync on the thread pool covers every record written
 * before it started, so records appended while one runs share the next. Returns 0 and calls
 * cb exactly once; or OL_EINVAL (no loop, no cb), OL_ENOMEM, OL_EIO (not written, or no
 * fsync could be started), and cb is never called. */
int journal_append_synced(journal *j, const char *item, const char *stage, const char *event,
                          const char *id, const char *detail, journal_synced_cb cb, void *arg);

/* fsync what was appended since the last flush, on the loop's thread. Returns 0 or OL_EIO. */
int journal_flush(journal *j);

/* Starts an fsync on the thread pool for the records not on disk yet, unless one runs (it
 * covers them when they were written before it started, else the next flush or durable
 * record will). */
void journal_sync_soon(journal *j);

/* journal_sync_soon when the last fsync
 * (a flush or a durable append, which covers every record before it) is at least
 * interval_ms old: records that only spare a later run some reads reach the disk at most
 * about that late after a power loss (a killed process loses nothing: they are written).
 * Returns OL_EIO once after an fsync failed with nobody waiting on it, else 0. */
int journal_sync_due(journal *j, unsigned interval_ms);

/* fsyncs of records started since open (on the loop or the pool). */
size_t journal_fsyncs(const journal *j);

/* Tests only: fn replaces fsync(2) for the records' fsyncs (NULL: fsync again). It runs on
 * a pool thread for journal_append_synced and journal_sync_due. */
void journal_test_set_fsync(journal *j, int (*fn)(int fd));

/* Number of records of item with this event and id (id NULL: any id). */
size_t journal_count(const journal *j, const char *item, const char *event, const char *id);

/* The same, counting only records written by stage. */
size_t journal_count_stage(const journal *j, const char *item, const char *stage, const char *event,
                           const char *id);

/* Time (unix seconds) of the latest matching record, or 0. */
long long journal_last_time(const journal *j, const char *item, const char *event, const char *id);

/* Where the item's last record with event (and id, unless NULL) stands among the item's
 * records, 1 for the first, 0 when none: records keep the order they were appended in,
 * across runs, where times can tie. */
size_t journal_last_seq(const journal *j, const char *item, const char *event, const char *id);

/* The items some stage created (a "stage_created" record) after their last destroy (the
 * last "stage_deleted"), in name order: what `opsline status` shows when no product is
 * named (read it before the run forgets items). Returns the count and a malloc'd array of borrowed
 * names (free the array only), or 0 with *out NULL. */
size_t journal_items(const journal *j, const char ***out);

/* The run is done with item: its records leave memory (not the file), so a run's memory
 * follows the items in progress, not the batch. Counts for item are 0 afterwards, until
 * it gets new records. */
void journal_forget(journal *j, const char *item);

/* Skipped malformed lines, one "path:line: ..." per line, or NULL when none (borrowed). The
 * caller logs this as a warning after journal_open. */
const char *journal_warnings(const journal *j);

/* Path of the journal file (borrowed). */
const char *journal_path(const journal *j);

/* fsyncs what is left and closes. Not while an fsync of journal_sync_due or
 * journal_append_synced runs (see journal_attach_loop). */
void journal_close(journal *j);

#endif
