/* journal: the append-only, fsync'd record of what opsline created, per state directory
 * (default .opsline/). One JSON object per line (jansson): time, item, stage, event,
 * resource id, detail. Read back at start so a later run (or the same one) can tell, for
 * example, an access key whose secret was stored from one whose secret was lost. Never
 * holds a secret. An exclusive lock (flock) keeps two runs off the same state directory. */
#ifndef OL_JOURNAL_H
#define OL_JOURNAL_H

#include <stddef.h>

typedef struct journal journal;

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

/* fsync what was appended since the last flush. Returns 0 or OL_EIO. */
int journal_flush(journal *j);

/* journal_flush, unless the last fsync (a flush or a durable append, which covers every
 * record before it) is less than interval_ms old: records that only spare a later run some
 * reads reach the disk at most that late after a power loss (a killed process loses
 * nothing: they are written). Returns 0 or OL_EIO. */
int journal_flush_due(journal *j, unsigned interval_ms);

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

void journal_close(journal *j);

#endif
