/* masker: which owners (items) have a secret that a text holds, found in time that grows
 * with the text, not with the number of secrets alive. Every secret of BAG_MASK_MIN bytes or
 * more is indexed by its first BAG_MASK_MIN bytes; a text is read window by window, and only
 * the owners of a window that starts one of their secrets are looked at. A run at
 * --concurrency 1024 holds hundreds of keys at once and masks every log line and journal
 * record against all of them: a string search per secret per line was 5% of its CPU. */
#ifndef OL_MASKER_H
#define OL_MASKER_H

#include <stddef.h>
#include <stdint.h>

typedef struct masker_node masker_node;

typedef struct masker {
    masker_node **buckets; /* n_buckets chains, a power of two */
    size_t n_buckets;
    size_t n; /* secrets indexed */
} masker;

void masker_init(masker *m);
void masker_free(masker *m);
/* Indexes a secret of owner (its value, at least BAG_MASK_MIN bytes; not kept). The same
 * owner may have several, and owners may share a prefix. 0 or OL_ENOMEM. */
int masker_add(masker *m, const char *secret, const void *owner);
/* Forgets one secret of owner added with the same value (the value it had then). */
void masker_remove(masker *m, const char *secret, const void *owner);
/* Calls fn(owner, arg) for every indexed secret whose first BAG_MASK_MIN bytes occur in
 * text, once per occurrence; fn may change text in place (mask it). */
void masker_scan(const masker *m, char *text, void (*fn)(const void *owner, char *text, void *arg),
                 void *arg);

#endif
