/* bag: an item's typed key/value store through which stages talk (bucket.name,
 * iam.access_key_id, ...). Values flagged secret are never listed for reports or logs and
 * are wiped from memory when replaced or when the bag is freed. */
#ifndef OL_BAG_H
#define OL_BAG_H

#include <stddef.h>

typedef struct bag_entry {
    char *key;
    char *value;
    size_t value_len;
    unsigned flags; /* OL_BAG_SECRET */
} bag_entry;

/* Secrets shorter than this are not masked: too likely to match ordinary text. */
#define BAG_MASK_MIN 4

typedef struct bag {
    bag_entry *entries;
    size_t n, cap;
    size_t n_masked; /* secret values of at least BAG_MASK_MIN bytes: what bag_mask looks for */
} bag;

void bag_init(bag *b);
/* Copies key and value; replacing a value wipes the old one. 0 or OL_ENOMEM/OL_EINVAL. */
int bag_set(bag *b, const char *key, const char *value, unsigned flags);
/* Borrowed until the key is set again or the bag is freed; NULL when absent. */
const char *bag_get(const bag *b, const char *key);
int bag_is_secret(const bag *b, const char *key);
/* Wipe every secret and free everything. */
void bag_free(bag *b);
/* Replace every occurrence of a secret value of b in text (in place) with '*'. Returns the
 * number of replacements. Costs nothing for a bag without secrets (n_masked 0). */
size_t bag_mask(const bag *b, char *text);
/* The secrets bag_mask looks for, one per call: start with *pos 0; NULL after the last.
 * Borrowed like bag_get's values. */
const char *bag_next_masked(const bag *b, size_t *pos);

#endif
