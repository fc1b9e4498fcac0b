/* main: process set-up (no core dumps, libcurl global init, line-buffered output, SIGPIPE
 * ignored) around cli_main. */
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include "cli.h"

int main(int argc, char **argv) {
    /* The process holds access keys' secrets: no core file, and no ptrace or /proc/PID/mem
     * reads by other processes of the same user (PR_SET_DUMPABLE 0 covers both). */
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "opsline: could not initialise libcurl\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* A store's program that exits without reading its stdin must fail its operation
     * (EPIPE on the write), not kill opsline. */
    signal(SIGPIPE, SIG_IGN);
    int code = cli_main(argc, argv);
    curl_global_cleanup();
    return code;
}
