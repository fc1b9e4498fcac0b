/* fuzz_journal: the state directory's journal.jsonl, read by journal_open as every run
 * reads it at start (a file a crash, a full disk or a hand edit may have left in any
 * shape). Checked beyond "no crash": after the first open the file is whole lines only (a
 * torn last line is cut away or ended), and a second open of what the first left changes
 * nothing and loads the same records: the repair is done once. The file lives in a private
 * temporary directory, written afresh for every input. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "journal.h"

static char dir[] = "/tmp/opsline-fuzz-journal-XXXXXX";
static char path[sizeof(dir) + 32];

static void put_file(const uint8_t *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(data, 1, size, f) != size || fclose(f) != 0)
        abort(); /* no input, no finding: a green run must have read it */
}

/* The whole file, malloc'd, its size in *n. */
static char *get_file(size_t *n) {
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        abort();
    char *buf = NULL;
    size_t cap = 0;
    *n = 0;
    for (;;) {
        if (*n == cap && (buf = realloc(buf, cap = cap ? cap * 2 : 4096)) == NULL)
            abort();
        size_t got = fread(buf + *n, 1, cap - *n, f);
        *n += got;
        if (got == 0)
            break;
    }
    fclose(f);
    return buf;
}

/* Every item's record count, as a checksum of what was loaded. */
static size_t loaded(journal *j) {
    const char **names = NULL;
    size_t n = journal_items(j, &names), total = n;
    for (size_t i = 0; i < n; i++)
        total += journal_count(j, names[i], "stage_created", NULL) +
                 journal_count(j, names[i], "access_key_created", NULL);
    free(names);
    return total;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (path[0] == '\0') {
        if (mkdtemp(dir) == NULL)
            abort();
        snprintf(path, sizeof(path), "%s/journal.jsonl", dir);
    }
    put_file(data, size);
    journal *j = NULL;
    char *err = NULL;
    if (journal_open(dir, &j, &err) != 0) {
        free(err);
        return 0; /* refused whole (e.g. not valid as a journal at all): nothing to check */
    }
    size_t first = loaded(j);
    journal_close(j);

    size_t n1 = 0, n2 = 0;
    char *after1 = get_file(&n1);
    if (n1 > 0 && after1[n1 - 1] != '\n')
        abort(); /* a torn last line survived the repair */
    j = NULL;
    if (journal_open(dir, &j, &err) != 0)
        abort(); /* what the first open left must open again */
    size_t second = loaded(j);
    journal_close(j);
    char *after2 = get_file(&n2);
    if (n1 != n2 || memcmp(after1, after2, n1) != 0 || first != second)
        abort(); /* the repair is not idempotent, or the records changed */
    free(after1);
    free(after2);
    return 0;
}
