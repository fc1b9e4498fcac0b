/* config: the command line and the pipeline file become a validated plan. Everything that
 * can be wrong with the input (names, stages, options, needs, region) is found here, before
 * any request is sent. */
#ifndef OL_CONFIG_H
#define OL_CONFIG_H

#include <stddef.h>

#include <jansson.h>

#include "loader.h"
#include "pipeline.h"

typedef struct config_args {
    const char *const *products;
    size_t n_products;
    const char *products_file; /* one product per line, '#' comments */
    const char *environments;  /* "production,staging" or NULL */
    const char *region;
    const char *profile;
    const char *pipeline_file;
    const char *env_file; /* --env-file: sets the options that declare cli "env-file" */
    const char *secrets;  /* "dotenv,keepassxc": the secret stores, or NULL */
    const char *state_dir;
    const char *const *sets; /* "stage.option=value" */
    size_t n_sets;
    long concurrency; /* 0: default */
    int json, verbose, quiet;
    int verify; /* --verify: add the verify stage when the pipeline lacks it */
} config_args;

#define CONFIG_DEFAULT_STAGE_TIMEOUT_MS 300000u
#define CONFIG_DEFAULT_ENVIRONMENTS "production,staging"
#define CONFIG_DEFAULT_CONCURRENCY 32

/* Build *out from args with the plugins in l. Returns 0, or OL_EINVAL / OL_ECONFIG /
 * OL_ENOMEM with a malloc'd *err naming the input and the fix. */
int config_build(const config_args *a, const loader *l, plan *out, char **err);

/* Read and check the top level of a pipeline file (--pipeline): a regular file (a FIFO or
 * device is refused, not read until it ends), JSON with no duplicate keys, an object with
 * only the known keys. Returns 0 or OL_ECONFIG with a malloc'd *err naming the file, line
 * and fix. *doc may be set even on failure: json_decref it either way. */
int config_pipeline_file_read(const char *path, json_t **doc, char **err);

#endif
