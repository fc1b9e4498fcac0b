/* fuzz_products: the products file (--products-file: one product per line, '#' comments,
 * or a JSON object per line), read by config_build as `opsline apply --products-file FILE`
 * reads it. Checked beyond "no crash": every product accepted is a valid name, free of
 * blanks and comments, and is a whole line of the file (without its comment, surrounding
 * blanks and a leading UTF-8 byte order mark) or the "product" of a JSON line: a long line
 * must not be cut into several products. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

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
        if (s < end && data[s] == '{') { /* a JSON line: its "product" */
            json_t *o = json_loadb((const char *)data + s, end - s, JSON_DISABLE_EOF_CHECK, NULL);
            const char *product = json_string_value(json_object_get(o, "product"));
            int same = product != NULL && strcmp(product, name) == 0;
            json_decref(o);
            if (same)
                return 1;
        }
        pos = end + 1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    config_args a = {.products_file = fuzz_input_file(data, size)};
    plan p;
    char *err = NULL;
    const uint8_t *body = data; /* a UTF-8 byte order mark is not part of the first line */
    size_t body_size = size;
    if (size >= 3 && memcmp(data, "\xef\xbb\xbf", 3) == 0)
        body += 3, body_size -= 3;
    if (config_build(&a, fuzz_config_loader(), &p, &err) == 0) {
        for (size_t i = 0; i < p.n_products; i++)
            if (p.products[i][0] == '\0' || strpbrk(p.products[i], " \t\r\n#") != NULL ||
                !is_a_line(body, body_size, p.products[i]))
                abort();
        plan_free(&p);
    }
    free(err);
    fuzz_config_build(&a);
    return 0;
}
