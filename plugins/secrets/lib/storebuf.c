/* storebuf: a growable buffer for secrets, and wiping frees (see storebuf.h). */
#include "storebuf.h"

#include <stdlib.h>
#include <string.h>

void free_wiped(const ol_host *h, void *p, size_t n) {
    if (p == NULL)
        return;
    h->wipe(p, n);
    free(p);
}

void free_wiped_str(const ol_host *h, char *s) {
    if (s != NULL)
        free_wiped(h, s, strlen(s));
}

void storebuf_add(storebuf *b, const char *s, size_t n) {
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap == 0 ? 256 : b->cap;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *d = malloc(cap);
        if (d == NULL) {
            b->failed = 1;
            return;
        }
        if (b->len > 0)
            memcpy(d, b->data, b->len);
        free_wiped(b->host, b->data, b->cap);
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void storebuf_str(storebuf *b, const char *s) {
    storebuf_add(b, s, strlen(s));
}

void storebuf_wipe(storebuf *b) {
    free_wiped(b->host, b->data, b->cap);
    *b = (storebuf)STOREBUF_INIT(b->host);
}

char *storebuf_take(storebuf *b, size_t *len) {
    if (b->failed || b->data == NULL) {
        storebuf_wipe(b);
        return NULL;
    }
    char *s = b->data;
    if (len != NULL)
        *len = b->len;
    *b = (storebuf)STOREBUF_INIT(b->host);
    return s;
}
