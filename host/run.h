/* run: the state of one pipeline run, shared by the files that drive it: host_api.c (the
 * ol_host table stages call), scheduler.c (items and their stage DAGs, time limits,
 * Ctrl-C), stores.c (secret-store operations, secret_find, flush) and pipeline.c (set-up,
 * prepare checks, the STS preflight, teardown). Nothing outside these files includes it. */
#ifndef OL_RUN_H
#define OL_RUN_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "aws/aws.h"
#include "bag.h"
#include "journal.h"
#include "list.h"
#include "masker.h"
#include "pipeline.h"
#include "report.h"
#include "services.h"

enum { ST_PENDING = 0, ST_RUNNING, ST_DONE, ST_SKIPPED };
enum { OP_NONE = 0, OP_PUT, OP_GET, OP_DEL };

#define FLUSH_TICK_MS 1000u
#define FLUSH_INTERVAL_MS 2000u
#define PARK_MAX 1024u /* items at most waiting on held-back puts */

typedef struct find_ctx find_ctx;

typedef struct stage_run {
    struct ol_item *item;
    size_t index;
    int status;
    ol_outcome outcome;
    char *reason;
    double started, finished;
    ol_timer *timer;        /* the apply's time limit */
    uint64_t rate_base;     /* scheduler_rate_wait_ms when its time limit was (re)armed */
    uint64_t rate_excluded; /* ms its time limit was extended by: waits on AWS's rate */
    int op;                 /* store operation in progress (OP_*) */
    ol_timer *op_timer;
    int replaced;   /* store: held an older key of the item */
    int held;       /* destroy: the store's get found an entry, deletion follows */
    char *verified; /* OL_STORE_VERIFY store: the key id it was read holding, "" none */
} stage_run;

struct ol_stage {
    struct run *run;
    const plan_stage *ps;
    size_t index;
    void *state;
    int initialised;
    size_t ops_pending;  /* store operations started, not completed */
    size_t puts_pending; /* of which puts: what a flush can complete */
    size_t puts_since;   /* puts started since the last flush began: worth a flush */
    uint64_t pending_since;
    int flushing;
    int preparing;
    ol_timer *flush_timer; /* also the time limit of prepare */
};

/* One AWS identity of a run: a profile, its client, and the environments that use it
 * (production and staging may live in different accounts). Items carry their own region;
 * the client's is the profile's default. */
typedef struct run_identity {
    struct run *run;
    const char *profile; /* as planned, borrowed from the plan (NULL: the default chain) */
    aws_client *aws;
    char *region; /* the client's resolved region; outlives the client (items point at it) */
    char *envs;   /* "production, staging", for messages */
    aws_stats stats;
} run_identity;

/* An item's identity lives for the whole run; what it needs while it runs (stages, bag) is
 * allocated when it starts and freed once it has finished, so memory follows the items in
 * progress, not the batch. */
struct ol_item {
    struct run *run;
    size_t index;
    run_identity *ident;
    char *product, *environment, *name, *region;
    size_t product_index;  /* into the plan's products */
    struct ol_stage **own; /* its product's own stage instances (NULL entries: the run's) */
    bag bag;
    stage_run *stages; /* NULL before the item starts and after it has ended */
    list_node live;    /* in run.live while started and not finished, then in run.ended */
    int keep;          /* a stage or store timed out: its late completion may still come, so
                          the stages stay until teardown */
    int started, finished;
    uint64_t start_seq; /* the order it started in: its AWS calls' rank (aws_send_owned) */
    int locked;         /* holds its item lock (itemlock.h) */
    int lock_told;      /* "waiting for another run" printed once */
    int advancing, again;
    size_t remaining;
    size_t store_ops; /* store operations of this item in progress */
    int parked;       /* gave its concurrency slot back while a store holds its put */
    find_ctx *find;
    /* Its AWS calls waiting on AWS's rate (a token of the client-side rate limiter, the
     * backoff after a throttled answer), since when, and the waits that ended (ms). */
    unsigned rate_waits;
    uint64_t rate_wait_since, rate_wait_ms;
    int committing;     /* rotate: the stages' rotate_commit steps are running */
    size_t commit_next; /* rotate: the next stage whose rotate_commit runs */
};

struct find_ctx {
    ol_item *item;
    char **keys;
    size_t n_keys;
    ol_find_cb cb;
    void *arg;
    size_t *order; /* store stage indexes to read, in order: OL_STORE_VERIFY ones first */
    size_t n_order, next, n_verify;
    int checked;  /* the journal's answer was considered after the verify reads */
    int force;    /* secret_read: read every store until one gives the secret back */
    char *found;  /* key id found */
    char *newer;  /* a key created after found that a store took: read on for it */
    char *reason; /* stores that could not be read */
};

typedef struct run {
    const plan *plan;
    uv_loop_t loop;
    uv_timer_t kick;
    uv_signal_t sigint;
    run_identity *idents;
    size_t n_idents;
    uint64_t starts; /* items started so far (ol_item.start_seq) */
    size_t preflights_pending;
    journal *journal;
    services *svc;
    uv_timer_t flush_tick;
    size_t prepares_pending;
    int prepare_failed;
    size_t final_flushes; /* end-of-run flushes still running */
    int ending;           /* every item finished: final flushes, then close */
    struct ol_stage *stages;
    struct ol_stage ***product_stages; /* per product: NULL, or n_stages (NULL: r->stages) */
    struct ol_item *items;
    size_t n_items;
    list_node live;      /* items in progress (parked ones included) */
    masker masker;       /* their secrets, by prefix: what run_mask looks for */
    int mask_all;        /* the masker lacked memory once: every item in progress is looked at */
    list_node ended;     /* finished items whose stages the next kick frees */
    list_node lock_wait; /* items another opsline process holds (itemlock.h), in order */
    int lock_fd;         /* the item lock file (itemlock.h); -1: a read-only command takes
                            no item lock */
    size_t next_item;
    size_t active;
    size_t parked; /* items started that wait only on held-back store puts */
    size_t finished;
    int interrupted;
    int preflight_failed;
    int preflight_config; /* credentials could not be had for want of configuration: exit 2 */
    int creds_rejected;
    aws_stats stats;
    report *report;
} run;

/* host_api.c */
extern const ol_host run_host_api;
void run_log(ol_stage *stage, const ol_item *item, ol_log_level level, const char *fmt, ...)
    OL_PRINTF(4, 5);
/* One line (with its newline) for stderr during the run, through the report so that the
 * progress line never tears it. */
void run_print(const run *r, const char *fmt, ...) OL_PRINTF(2, 3);
/* Masks every secret of the items in progress in text (in place). */
void run_mask(const run *r, char *text);
/* bag_set and bag_free on an item's bag, keeping run.masker up to date. */
int item_bag_set(ol_item *item, const char *key, const char *value, unsigned flags);
void item_bag_free(ol_item *item);
/* Nonzero when text holds a secret of an item in progress. */
int run_reveals_secret(const run *r, const char *text);
const char *run_stage_name(const run *r, size_t s);
/* The instance of stage s that runs item: its product's own, else the run's. */
struct ol_stage *run_item_stage(const ol_item *item, size_t s);
/* The test hooks of host->checkpoint, for the host's own points ("store.after_put"). */
void run_checkpoint(const ol_item *item, const char *point);

/* scheduler.c */
void scheduler_advance(ol_item *item);
void scheduler_kick(run *r);
void scheduler_complete(ol_item *item, size_t s, int status, ol_outcome outcome,
                        const char *reason);
void scheduler_done(ol_stage *stage, ol_item *item, ol_outcome outcome, const char *reason);
void scheduler_interrupt(run *r);
void scheduler_on_sigint(uv_signal_t *h, int signum);
void scheduler_end_run(run *r);
/* Frees what the item needed while it ran (its stages); teardown and the kick call it. */
void scheduler_item_release(ol_item *item);
int scheduler_item_ended(ol_stage *stage, const ol_item *item, const char *what);
/* The aws clients' rate-wait hook (aws_client_set_rate_wait_hook; owner an item, arg the
 * run). */
void scheduler_on_rate_wait(void *owner, int waiting, void *arg);
/* Milliseconds the item's AWS calls have waited on AWS's rate so far, a wait in progress
 * included (the time of several calls waiting together counts once). */
uint64_t scheduler_rate_wait_ms(const ol_item *item);
/* Before arming the time limit of the item's stage (or store operation) sr: its waits on
 * AWS's rate count from now. */
void scheduler_rate_arm(stage_run *sr);
/* A time limit of the item's stage (or store operation) sr has run out: the waits on AWS's
 * rate since sr->rate_base do not count, so the limit is extended by that long (returned, in
 * ms, and rate_base moves on). 0: the limit stands. */
uint64_t scheduler_rate_extension(stage_run *sr);
/* Nonzero when stage s runs for item: a store not among its product's stores does not
 * (plan_stage_applies). */
int run_item_uses(const ol_item *item, size_t s);

/* stores.c */
void stores_apply(ol_item *item, size_t s);
void stores_maybe_flush(run *r);
/* An item whose other stages are done while a store holds its put gives its slot on. */
void stores_park_if_waiting(ol_item *item);
void stores_on_flush_tick(uv_timer_t *t);
void stores_finish_run(run *r);
void stores_done(ol_stage *stage, ol_item *item, int result, const ol_secret *found,
                 const char *reason);
void stores_flush_done(ol_stage *st, int result, const char *reason);
int stores_secret_find(ol_item *item, const char *const *key_ids, size_t n, ol_find_cb cb,
                       void *arg);

/* lifecycle.c: what differs between the commands (ol_mode) in running an item. */
/* A descriptor's 2.1 field, or NULL when the plugin was built before it existed. */
#define DESC_FIELD(d, field)                                                                       \
    ((d)->struct_size >= offsetof(ol_plugin, field) + sizeof((d)->field) ? (d)->field : NULL)
/* The stage's entry point for the run's command, or NULL when it takes no part. */
int (*lifecycle_entry(const run *r, size_t s))(ol_stage *, ol_item *, void *);
/* needs_state for destroy: a stage waits for the stages that need it (reverse order); a
 * store waits for every other stage and runs only when the key-creating ones succeeded. */
int lifecycle_destroy_ready(const ol_item *item, size_t s, const char **failed);
/* A stage without an entry point for the command: completed at once. */
void lifecycle_skip(ol_item *item, size_t s);
/* rotate: after every stage succeeded, runs each rotate_commit in order. Returns 1 while
 * the item still has commit work (it must not finish yet). */
int lifecycle_commit(ol_item *item);
/* A rotate_commit step completed (host->done during the commit phase). */
void lifecycle_commit_done(ol_stage *stage, ol_item *item, ol_outcome outcome, const char *reason);

/* stores.c, per command */
void stores_destroy(ol_item *item, size_t s);
void stores_inspect(ol_item *item, size_t s);
int stores_secret_read(ol_item *item, const char *key_id, ol_find_cb cb, void *arg);

/* pipeline.c */
void pipeline_prepare_done(ol_stage *st, int result, const char *reason);
/* Close every identity's AWS client, adding its counters to r->stats. */
void pipeline_close_clients(run *r);

#endif
