/* LD_PRELOAD shim for bench/slow_disk.py: every fsync(2) first sleeps SLOW_FSYNC_MS
 * milliseconds (default 10), as on a slow or network disk. Measurement only. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>

int fsync(int fd) {
    static int (*real)(int);
    if (real == NULL)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    const char *e = getenv("SLOW_FSYNC_MS");
    long ms = e != NULL ? atol(e) : 10;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    return real(fd);
}
