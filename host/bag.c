/* bag: the item bag. Small (a handful of keys per item), so a flat array is the right
 * structure; secrets are wiped with OPENSSL_cleanse, which the compiler cannot elide. */
#include "bag.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "opsline/opsline.h"

void bag_init(bag *b) {
    memset(b, 0, sizeof(*b));
}

static void entry_wipe(bag_entry *e) {
    if (e->value != NULL) {
        if (e->flags & OL_BAG_SECRET)
            OPENSSL_cleanse(e->value, e->value_len);
        free(e->value);
        e->value = NULL;
    }
}

static int masked(const bag_entry *e) {
    return e->value != NULL && (e->flags & OL_BAG_SECRET) && e->value_len >= BAG_MASK_MIN;
}

static bag_entry *find(const bag *b, const char *key) {
    for (size_t i = 0; i < b->n; i++)
        if (strcmp(b->entries[i].key, key) == 0)
            return &b->entries[i];
    return NULL;
}

int bag_set(bag *b, const char *key, const char *value, unsigned flags) {
    if (key == NULL || value == NULL || *key == '\0')
        return OL_EINVAL;
    char *v = strdup(value);
    if (v == NULL)
        return OL_ENOMEM;
    bag_entry *e = find(b, key);
    if (e == NULL) {
        if (b->n == b->cap) {
            size_t cap = b->cap ? b->cap * 2 : 8;
            bag_entry *n = realloc(b->entries, cap * sizeof(*n));
            if (n == NULL)
                goto oom;
            b->entries = n;
            b->cap = cap;
        }
        e = &b->entries[b->n];
        memset(e, 0, sizeof(*e));
        e->key = strdup(key);
        if (e->key == NULL)
            goto oom;
        b->n++;
    }
    b->n_masked -= masked(e);
    entry_wipe(e);
    e->value = v;
    e->value_len = strlen(v);
    e->flags = flags;
    b->n_masked += masked(e);
    return 0;
oom:
    if (flags & OL_BAG_SECRET)
        OPENSSL_cleanse(v, strlen(v));
    free(v);
    return OL_ENOMEM;
}

const char *bag_get(const bag *b, const char *key) {
    const bag_entry *e = find(b, key);
    return e ? e->value : NULL;
}

int bag_is_secret(const bag *b, const char *key) {
    const bag_entry *e = find(b, key);
    return e != NULL && (e->flags & OL_BAG_SECRET);
}

void bag_free(bag *b) {
    for (size_t i = 0; i < b->n; i++) {
        entry_wipe(&b->entries[i]);
        free(b->entries[i].key);
    }
    free(b->entries);
    bag_init(b);
}

const char *bag_next_masked(const bag *b, size_t *pos) {
    while (*pos < b->n) {
        const bag_entry *e = &b->entries[(*pos)++];
        if (masked(e))
            return e->value;
    }
    return NULL;
}

size_t bag_mask(const bag *b, char *text) {
    size_t hits = 0;
    for (size_t i = 0; b->n_masked > 0 && i < b->n; i++) {
        const bag_entry *e = &b->entries[i];
        if (!masked(e))
            continue;
        for (char *p = strstr(text, e->value); p; p = strstr(p + e->value_len, e->value)) {
            memset(p, '*', e->value_len);
            hits++;
        }
    }
    return hits;
}
