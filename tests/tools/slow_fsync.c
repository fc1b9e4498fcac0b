/* LD_PRELOAD shim: fsync(2) first sleeps SLOW_FSYNC_MS milliseconds (default 10), as on a
 * slow or network disk. With SLOW_FSYNC_ONLY set, only the fsyncs of files whose path ends
 * with it sleep (e.g. "journal.jsonl"); the others are untouched. With SLOW_FSYNC_SKIP=1 those
 * fsyncs then do nothing and report success (SLOW_FSYNC_MS=0 SLOW_FSYNC_SKIP=1: no fsync at
 * all). Measurement and tests only: bench/slow_disk.py, bench/curl_floor.py,
 * MotoTestCase.slow_journal_fsync (opsline_e2e.py). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Nonzero when fd's file is one whose fsyncs sleep. */
static int is_slow(int fd) {
    const char *only = getenv("SLOW_FSYNC_ONLY");
    if (only == NULL || *only == '\0')
        return 1;
    char link[64], path[4096];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof(path) - 1);
    size_t want = strlen(only);
    if (n < 0 || (size_t)n < want)
        return 0;
    path[n] = '\0';
    return strcmp(path + n - want, only) == 0;
}

int fsync(int fd) {
    static int (*real)(int);
    if (real == NULL)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    if (is_slow(fd)) {
        const char *e = getenv("SLOW_FSYNC_MS");
        long ms = e != NULL ? atol(e) : 10;
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        if (ms > 0)
            nanosleep(&ts, NULL);
        const char *skip = getenv("SLOW_FSYNC_SKIP");
        if (skip != NULL && strcmp(skip, "1") == 0)
            return 0;
    }
    return real(fd);
}
