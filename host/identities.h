/* identities: which AWS profile and region each environment of a run uses. Production and
 * staging often live in different accounts: `--profile production=prod-admin,staging=stg`,
 * `--region production=eu-west-1`, or the pipeline file's "profiles" / "regions" objects map
 * an environment to its own; a bare NAME is the run's default. */
#ifndef OL_IDENTITIES_H
#define OL_IDENTITIES_H

#include <jansson.h>

#include "pipeline.h"

/* Nonzero when arg is a per-environment mapping (holds '='), not one name. */
int identities_is_mapping(const char *arg);

/* Fill p->env_profiles / p->env_regions (one entry per p->environments, NULL: the run's) and,
 * from a bare entry of a mapping, p->profile / p->region when not set. The command line wins
 * over the pipeline file (doc, read from doc_path; may be NULL) environment by environment.
 * Returns 0, or OL_EINVAL / OL_ECONFIG with *err naming the input: an environment that is not
 * in the run, a region that is not a region name, an empty profile name. */
int identities_plan(const char *profile_arg, const char *region_arg, const json_t *doc,
                    const char *doc_path, plan *p, char **err);

/* The environments a mapping names (profile_arg's, then region_arg's, each once), for
 * `whoami --profile production=a,staging=b`: appended to p->environments. 0 or OL_ENOMEM. */
int identities_environments(const char *profile_arg, const char *region_arg, plan *p);

/* The identities part of a plan for `whoami`: environments from envs_csv (-e), else the
 * pipeline file's "environments", else the mappings' environments; then identities_plan
 * with the file's "profiles" / "regions" / "region". pipeline_path may be NULL. *p is zeroed
 * first; plan_free it. 0, or OL_EINVAL / OL_ECONFIG / OL_ENOMEM with *err. */
int identities_plan_whoami(const char *profile_arg, const char *region_arg, const char *envs_csv,
                           const char *pipeline_path, plan *p, char **err);

/* The profile and region of the item of product i in environment env of p: the
 * environment's mapping, else the run's (either may be NULL: resolved as the AWS CLI does).
 * The one place an item's identity is decided: a per-product setting (a products file's
 * "profile" or "region" of product i) belongs here, winning over the environment's. */
void identities_of_item(const plan *p, size_t i, const char *env, const char **profile,
                        const char **region);

#endif
