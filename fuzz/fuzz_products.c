/* fuzz_products: the products file (--products-file: one product per line, '#' comments),
 * read by config_build as `opsline apply --products-file FILE` reads it. Checked beyond "no
 * crash": every product accepted is a valid name, free of blanks and comments, and is a
 * whole line of the file (without its comment and surrounding blanks): a long line must
 * not be cut into several products. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_config.h"
#include "fuzz_input.h"

static int is_blank(char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Whether some line of data, its comment and surrounding blanks removed, is name. */
static int is_a_line(const uint8_t *data, size_t size, const char *name) {
    size_t n = strlen(name);
    for (size_t pos = 0; pos < size;) {
        const uint8_t *nl = memchr(data + pos, '\n', size - pos);
        size_t end = nl != NULL ? (size_t)(nl - data) : size;
        const uint8_t *hash = memchr(data + pos, '#', end - pos);
        size_t s = pos, e = hash != NULL ? (size_t)(hash - data) : end;
        while (s < e && is_blank((char)data[s]))
            s++;
        while (e > s && is_blank((char)data[e - 1]))
            e--;
        if (e - s == n && memcmp(data + s, name, n) == 0)
            return 1;
        pos = end + 1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    config_args a = {.products_file = fuzz_input_file(data, size)};
    plan p;
    char *err = NULL;
    if (config_build(&a, fuzz_config_loader(), &p, &err) == 0) {
        for (size_t i = 0; i < p.n_products; i++)
            if (p.products[i][0] == '\0' || strpbrk(p.products[i], " \t\r\n#") != NULL ||
                !is_a_line(data, size, p.products[i]))
                abort();
        plan_free(&p);
    }
    free(err);
    fuzz_config_build(&a);
    return 0;
}
