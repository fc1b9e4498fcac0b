/* masker: a chained hash of secrets' first BAG_MASK_MIN bytes (see masker.h). */
#include "masker.h"

#include <stdlib.h>
#include <string.h>

#include "bag.h"
#include "opsline/opsline.h"

_Static_assert(BAG_MASK_MIN == sizeof(uint32_t), "a secret's prefix is one 32-bit word");

struct masker_node {
    uint32_t prefix;
    const void *owner;
    masker_node *next;
};

/* The first BAG_MASK_MIN (4) bytes as one word. */
static uint32_t prefix_of(const char *s) {
    uint32_t p;
    memcpy(&p, s, sizeof p);
    return p;
}

static size_t slot_of(const masker *m, uint32_t prefix) {
    return (size_t)((prefix * 2654435761u) >> 7) & (m->n_buckets - 1);
}

void masker_init(masker *m) {
    memset(m, 0, sizeof *m);
}

void masker_free(masker *m) {
    for (size_t b = 0; b < m->n_buckets; b++)
        for (masker_node *n = m->buckets[b], *next; n != NULL; n = next) {
            next = n->next;
            free(n);
        }
    free(m->buckets);
    masker_init(m);
}

/* Twice the buckets once there are more secrets than buckets: chains stay about one long. */
static int grow(masker *m) {
    size_t nb = m->n_buckets ? m->n_buckets * 2 : 64;
    masker_node **b = calloc(nb, sizeof *b);
    if (b == NULL)
        return OL_ENOMEM;
    masker old = *m;
    m->buckets = b;
    m->n_buckets = nb;
    for (size_t i = 0; i < old.n_buckets; i++)
        for (masker_node *n = old.buckets[i], *next; n != NULL; n = next) {
            next = n->next;
            size_t s = slot_of(m, n->prefix);
            n->next = m->buckets[s];
            m->buckets[s] = n;
        }
    free(old.buckets);
    return 0;
}

int masker_add(masker *m, const char *secret, const void *owner) {
    if (secret == NULL || strlen(secret) < BAG_MASK_MIN)
        return OL_EINVAL;
    if (m->n >= m->n_buckets && grow(m) != 0)
        return OL_ENOMEM;
    masker_node *n = malloc(sizeof *n);
    if (n == NULL)
        return OL_ENOMEM;
    n->prefix = prefix_of(secret);
    n->owner = owner;
    size_t s = slot_of(m, n->prefix);
    n->next = m->buckets[s];
    m->buckets[s] = n;
    m->n++;
    return 0;
}

void masker_remove(masker *m, const char *secret, const void *owner) {
    if (secret == NULL || strlen(secret) < BAG_MASK_MIN || m->n_buckets == 0)
        return;
    uint32_t prefix = prefix_of(secret);
    for (masker_node **p = &m->buckets[slot_of(m, prefix)]; *p != NULL; p = &(*p)->next)
        if ((*p)->prefix == prefix && (*p)->owner == owner) {
            masker_node *n = *p;
            *p = n->next;
            free(n);
            m->n--;
            return;
        }
}

void masker_scan(const masker *m, char *text, void (*fn)(const void *owner, char *text, void *arg),
                 void *arg) {
    if (m->n == 0 || text == NULL)
        return;
    /* Reads each window afresh: fn may have masked what follows (with '*': the length
     * stays). */
    size_t len = strlen(text);
    for (size_t i = 0; i + BAG_MASK_MIN <= len; i++) {
        uint32_t prefix = prefix_of(text + i);
        for (const masker_node *n = m->buckets[slot_of(m, prefix)]; n != NULL; n = n->next)
            if (n->prefix == prefix)
                fn(n->owner, text, arg);
    }
}
