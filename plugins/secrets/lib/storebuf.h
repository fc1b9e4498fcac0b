/* storebuf: what the secret stores share for memory that may hold a secret. Compiled into
 * each store that needs it (plugins/CMakeLists.txt): stores link nothing of the host's.
 *
 * A storebuf is a growable text buffer that never leaves a secret behind: it grows by
 * copying, and every block it lets go is wiped with host->wipe first (realloc would free
 * the old block unwiped). On allocation failure it stays failed and further appends are
 * no-ops, so a caller checks once at the end. */
#ifndef OL_SECRETS_STOREBUF_H
#define OL_SECRETS_STOREBUF_H

#include <stddef.h>

#include "opsline/opsline.h"

typedef struct storebuf {
    const ol_host *host; /* its wipe clears every block before it is freed */
    char *data;          /* NUL-terminated once anything was added; NULL before */
    size_t len, cap;
    int failed; /* an allocation failed */
} storebuf;

/* An empty buffer: storebuf b = STOREBUF_INIT(host); */
#define STOREBUF_INIT(h)                                                                           \
    { .host = (h) }

void storebuf_add(storebuf *b, const char *s, size_t n);
void storebuf_str(storebuf *b, const char *s);
/* Wipes and frees the contents; the buffer is empty (and not failed) again. */
void storebuf_wipe(storebuf *b);
/* Takes the text out (malloc'd; free it with free_wiped), *len its length when len is not
 * NULL. NULL when an allocation failed or nothing was added (the buffer is wiped then). */
char *storebuf_take(storebuf *b, size_t *len);

/* Wipes n bytes at p (NULL: nothing) and frees them (malloc'd memory). */
void free_wiped(const ol_host *h, void *p, size_t n);
/* free_wiped for a NUL-terminated string. */
void free_wiped_str(const ol_host *h, char *s);

#endif
