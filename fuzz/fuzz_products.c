/* fuzz_products: the products file (--products-file: one product per line, '#' comments),
 * read by config_build as `opsline apply --products-file FILE` reads it. Checked beyond "no
 * crash": every product accepted is a valid name, free of blanks and comments. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_config.h"
#include "fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    config_args a = {.products_file = fuzz_input_file(data, size)};
    plan p;
    char *err = NULL;
    if (config_build(&a, fuzz_config_loader(), &p, &err) == 0) {
        for (size_t i = 0; i < p.n_products; i++)
            if (p.products[i][0] == '\0' || strpbrk(p.products[i], " \t\r\n#") != NULL)
                abort();
        plan_free(&p);
    }
    free(err);
    fuzz_config_build(&a);
    return 0;
}
