/* main: process set-up (libcurl global init, line-buffered output) around cli_main. */
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>

#include "cli.h"

int main(int argc, char **argv) {
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
