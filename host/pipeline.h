/* pipeline: runs a validated plan. Items (products x environments) run concurrently up to
 * a bound; inside an item, stages run as the DAG of their `needs`. Implements the host API
 * table (ol_host) the stages call, owns the AWS client, the journal and the report. */
#ifndef OL_PIPELINE_H
#define OL_PIPELINE_H

#include <stddef.h>

#include <uv.h>

#include "loader.h"
#include "options.h"

typedef struct plan_stage {
    const loader_plugin *plugin;
    options *opts;
    size_t *needs; /* indexes of the stages this one needs (earlier in plan order) */
    size_t n_needs;
    unsigned timeout_ms; /* longest one apply or store operation may take */
    int is_store;        /* a secret store (plugin->desc->store) */
    int creates_secrets; /* OL_STAGE_CREATES_SECRETS */
    int listed_only;     /* a store only products-file lines name: only their products use it */
} plan_stage;

/* One product's own settings (its line of the products file) over the plan's. */
typedef struct plan_product {
    char **environments; /* NULL: the plan's */
    size_t n_environments;
    char *region; /* NULL: the plan's region */
    /* NULL, or n_stages entries: where opts is not NULL, the stage runs for this product
     * as its own instance with these options (the other fields are the plan stage's). */
    plan_stage *stages;
    /* NULL: the run's stores (those not listed_only); else n_stages flags, set for the store
     * stages its line's "secrets" names: the only stores of its items. */
    unsigned char *stores;
} plan_product;

typedef struct plan {
    char **products;
    size_t n_products;
    plan_product *product_settings; /* NULL, or one per product (zeroed: none) */
    char *products_file;            /* --products-file, or NULL */
    size_t *product_lines;          /* NULL, or per product its line in products_file (0: argv) */
    char **environments;
    size_t n_environments;
    char *region;  /* --region, or NULL for the resolved default */
    char *profile; /* --profile, or NULL */
    /* Per environment (parallel to environments), NULL entries: the run's profile / region
     * (identities.c; the arrays themselves may be NULL). */
    char **env_profiles;
    char **env_regions;
    plan_stage *stages; /* in dependency order */
    size_t n_stages;
    size_t concurrency;
    char *state_dir;
    int json;
    int verbose;
    int quiet;   /* --quiet: failures and the summary only */
    char **only; /* non-NULL: run only the items named here (status from the journal) */
    size_t n_only;
    int mode;       /* ol_mode: the command (apply, plan, destroy, rotate, status) */
    unsigned flags; /* PLAN_FLAG_*: the command's run-wide switches (host->run_flag) */
} plan;

enum {
    PLAN_FLAG_ADOPT = 1u << 0,        /* destroy --adopt */
    PLAN_FLAG_EMPTY_BUCKET = 1u << 1, /* destroy --empty-bucket */
    PLAN_FLAG_KEEP_OLD = 1u << 2      /* rotate --keep-old */
};

/* plan's exit code when the run succeeded and changes are pending (plan: apply would
 * change something; status: drift or something missing). Not 1 (failed) nor 2 (usage). */
#define PIPELINE_EXIT_CHANGES 3

void plan_free(plan *p);

/* The environments of product i: its own, else the plan's. */
size_t plan_product_environments(const plan *p, size_t i, char *const **out);

/* Nonzero when stage s runs for the items of product i: every stage that is not a store;
 * a store when the product's own stores name it, else when it is one of the run's. */
int plan_stage_applies(const plan *p, size_t i, size_t s);

/* Close every handle still open on loop, run it until they are closed, then uv_loop_close:
 * the one teardown of a loop (pipeline_run and the CLI's one-shot commands). */
void pipeline_loop_close(uv_loop_t *loop);

/* Run the plan. Returns the process exit code: 0 every item succeeded, 1 some item failed
 * (or AWS rejected the credentials), 2 configuration error found before any request, 3
 * (plan only) every item succeeded and changes are pending. */
int pipeline_run(const plan *p);

#endif
