/* fuzz_config: the loader and checks shared by fuzz_products and fuzz_pipeline. */
#include "fuzz_config.h"

#include <stdio.h>
#include <stdlib.h>

#include "opsline/opsline.h"

const loader *fuzz_config_loader(void) {
    static loader *l;
    char *err = NULL;
    if (l != NULL)
        return l;
    if (loader_new(&l) != 0 || loader_load_dir(l, OPSLINE_FUZZ_PLUGIN_DIR, 1, &err) != 0) {
        fprintf(stderr, "fuzz: cannot load the plugins of %s: %s\n", OPSLINE_FUZZ_PLUGIN_DIR,
                err ? err : "out of memory");
        abort();
    }
    return l;
}

void fuzz_config_build(const config_args *a) {
    plan p;
    char *err = NULL;
    int rc = config_build(a, fuzz_config_loader(), &p, &err);
    if (rc == 0) {
        if (err != NULL || p.n_products == 0 || p.n_environments == 0 || p.n_stages == 0)
            abort();
        plan_free(&p);
    } else if (err == NULL && rc != OL_ENOMEM) {
        abort(); /* a refusal must say what is wrong */
    }
    free(err);
}
