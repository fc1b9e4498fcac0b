/* fuzz_config: what the products-file and pipeline-file targets share: the bundled plugins
 * of this build, loaded once, so config_build validates stages and options as `opsline`
 * does. */
#ifndef OL_FUZZ_CONFIG_H
#define OL_FUZZ_CONFIG_H

#include "config.h"

/* The loader with OPSLINE_FUZZ_PLUGIN_DIR loaded; aborts when it cannot be loaded. */
const loader *fuzz_config_loader(void);

/* config_build(a), checked: a success leaves a plan with products, environments and stages
 * and no message; a refusal says why. The plan is freed. */
void fuzz_config_build(const config_args *a);

#endif
