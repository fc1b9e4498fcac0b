/* products: the --products-file. Each line is a product name, or a JSON object (JSON Lines)
 * that names a product and its own settings: environments, region, secret stores, stage
 * options. Every
 * mistake is found with its line number before any request (docs/products-file.md). */
#ifndef OL_PRODUCTS_H
#define OL_PRODUCTS_H

#include <stddef.h>

#include <jansson.h>

#include "pipeline.h"

#define PRODUCTS_FILE_MAX_BYTES (64u << 20) /* a bigger file is refused, not read */
#define PRODUCTS_LINE_MAX_BYTES 65536u

typedef struct products_line {
    char *name;
    size_t lineno;
    char **environments; /* the line's "environments", or NULL: the run's */
    size_t n_environments;
    char *region;   /* the line's "region", or NULL: the run's */
    char **secrets; /* the line's "secrets" (store names), or NULL: the run's stores */
    size_t n_secrets;
    /* The stage options the line sets, {"stage": {"option": value}}: "set", then (by
     * products_plan) the shortcuts; NULL when none. */
    json_t *options;
    /* The line's other keys, {"key": value}: the stages' shortcuts (ol_plugin.cli_flags),
     * resolved by products_plan once the stages are known; NULL when none. */
    json_t *shortcuts;
} products_line;

typedef struct products_file {
    const char *path; /* borrowed */
    products_line *lines;
    size_t n, cap;
    json_t *seen; /* product name -> its line number: finds a duplicate without a scan */
} products_file;

/* Reads and checks path: a regular file (not a directory, FIFO or device) of at most
 * PRODUCTS_FILE_MAX_BYTES, lines of at most PRODUCTS_LINE_MAX_BYTES without NUL bytes,
 * names and settings valid, no product twice. Returns 0, or OL_ECONFIG (the file cannot be
 * read) / OL_EINVAL (its content is wrong) with a malloc'd *err "PATH:LINE: what and how
 * to fix it", or OL_ENOMEM. */
int products_file_read(const char *path, products_file *out, char **err);
void products_file_free(products_file *pf);
/* The line that lists product, 0 when none does. */
size_t products_file_line_of(const products_file *pf, const char *product);

/* The lines' own settings into p, whose stages are built and whose products first...
 * are pf's lines in order: p->product_settings, each overridden stage's options cloned
 * from the plan's (pipeline file, then --set) with the line's on top, each line's
 * "secrets" as the product's stores (every one must be a store stage of p). Moves the
 * lines' environments and region into p. 0, or OL_EINVAL with "PATH:LINE: ..." in *err. */
int products_plan(products_file *pf, size_t first, plan *p, char **err);

#endif
