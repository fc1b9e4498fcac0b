/* fuzz_pipeline: the pipeline file (--pipeline FILE, JSON read with jansson), validated by
 * config_build against the bundled stages: top-level keys, stage entries, options of every
 * declared type, timeouts, secrets, environments, region, concurrency. The first byte
 * picks which command-line settings go with it (--secrets, -e, --set), since they combine
 * with the file setting by setting. */
#include <stdint.h>
#include <stdlib.h>

#include "fuzz_config.h"
#include "fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *const products[] = {"acme", "shop"};
    static const char *const sets[] = {"dotenv.path={product}.env", "bucket.versioning=true"};
    if (size < 1)
        return 0;
    config_args a = {.products = products,
                     .n_products = 2,
                     .pipeline_file = fuzz_input_file(data + 1, size - 1)};
    if (data[0] & 1)
        a.secrets = "dotenv";
    if (data[0] & 2)
        a.environments = "production";
    if (data[0] & 4) {
        a.sets = sets;
        a.n_sets = 2;
    }
    if (data[0] & 8)
        a.env_file = "{bucket}.env";
    fuzz_config_build(&a);
    return 0;
}
