/* curl_floor: the HTTP part of a run and nothing else, to measure what libcurl and the kernel
 * alone cost for opsline's requests (bench/curl_floor.py builds and runs it).
 *
 * Reads one request per line from the file given: method, URL, headers (separated by 0x1f)
 * and body, tab-separated. Sends them all through one curl multi handle on a bare epoll loop
 * (curl_multi_socket_action, as opsline drives libcurl), at most MAX_INFLIGHT at once, easy
 * handles reused, responses discarded. Prints the count of answers by status class to stderr;
 * exit 1 when a transfer failed at the transport level.
 *
 * With a directory as second argument (the `floor+durable` side), each CreateAccessKey
 * answer is followed by the file work opsline's durability asks of one new item, done
 * synchronously on this loop (no thread pool, so a lower bound of it): a record appended to
 * a journal and fsync'd (opsline's intent record), eight more records appended without
 * fsync, and a 0600 .env file written to a temp file, fsync'd, renamed into place, and the
 * directory fsync'd (its dotenv store). The journal is fsync'd once more at the end.
 *
 * Not part of opsline: no signing, no parsing, nothing read back, no report. */
#include <curl/curl.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define MAX_INFLIGHT 96
#define MAX_HOST_CONNECTIONS 64L

typedef struct request {
    char *method, *url, *body;
    struct curl_slist *headers;
} request;

static int epfd;
static long long deadline = -1; /* curl's timer, CLOCK_MONOTONIC ms; -1: none */

static long long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static size_t discard(char *p, size_t size, size_t n, void *arg) {
    (void)p;
    (void)arg;
    return size * n;
}

/* A socket curl has not seen before has no sockp yet: it is added to epoll once and marked
 * with curl_multi_assign, so every later change is one EPOLL_CTL_MOD (no failing call). */
static int on_socket(CURL *e, curl_socket_t s, int what, void *arg, void *sockp) {
    (void)e;
    CURLM *m = arg;
    if (what == CURL_POLL_REMOVE) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, s, NULL);
        return 0;
    }
    struct epoll_event ev = {.data.fd = s};
    ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);
    if (sockp != NULL)
        return epoll_ctl(epfd, EPOLL_CTL_MOD, s, &ev) == 0 ? 0 : -1;
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, s, &ev) != 0)
        return -1;
    curl_multi_assign(m, s, &epfd); /* any non-NULL pointer: "registered" */
    return 0;
}

static int on_timer(CURLM *m, long timeout_ms, void *arg) {
    (void)m;
    (void)arg;
    deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
    return 0;
}

static size_t load(const char *path, request **out) {
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        perror(path);
        exit(2);
    }
    size_t n = 0, cap = 0;
    request *r = NULL;
    char *line = NULL;
    size_t line_cap = 0;
    while (getline(&line, &line_cap, f) > 0) {
        line[strcspn(line, "\n")] = '\0';
        char *save = NULL;
        char *method = strtok_r(line, "\t", &save), *url = strtok_r(NULL, "\t", &save);
        char *headers = strtok_r(NULL, "\t", &save), *body = strtok_r(NULL, "\t", &save);
        if (method == NULL || url == NULL)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 1024;
            r = realloc(r, cap * sizeof *r);
            if (r == NULL)
                exit(2);
        }
        r[n] = (request){.method = strdup(method), .url = strdup(url)};
        r[n].body = body != NULL ? strdup(body) : NULL;
        char *hsave = NULL;
        for (char *h = headers ? strtok_r(headers, "\x1f", &hsave) : NULL; h != NULL;
             h = strtok_r(NULL, "\x1f", &hsave))
            r[n].headers = curl_slist_append(r[n].headers, h);
        n++;
    }
    free(line);
    fclose(f);
    *out = r;
    return n;
}

/* The file work of one new item (see the top of the file); 0 or -1. */
static int durable_item(int dirfd, int journal, unsigned long item) {
    char rec[128], name[64], tmp[80], env[160];
    int len = snprintf(rec, sizeof rec,
                       "{\"time\":1796398560,\"item\":\"floor%lu-production\",\"stage\":\"iam\","
                       "\"event\":\"access_key_requested\"}\n",
                       item);
    if (write(journal, rec, (size_t)len) != len || fsync(journal) != 0)
        return -1;
    for (int i = 0; i < 8; i++)
        if (write(journal, rec, (size_t)len) != len)
            return -1;
    snprintf(name, sizeof name, "floor%lu.env", item);
    snprintf(tmp, sizeof tmp, ".%s.tmp", name);
    len = snprintf(env, sizeof env,
                   "AWS_ACCESS_KEY_ID=AKIAFLOORFLOORFLOOR1\nAWS_SECRET_ACCESS_KEY="
                   "0123456789abcdefghij0123456789abcdefghij\nAWS_REGION=eu-north-1\n"
                   "S3_BUCKET=floor%lu-production\n",
                   item);
    int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    int ok = write(fd, env, (size_t)len) == len && fsync(fd) == 0 &&
             renameat(dirfd, tmp, dirfd, name) == 0 && fsync(dirfd) == 0;
    return close(fd) == 0 && ok ? 0 : -1;
}

int main(int argc, char **argv) {
    if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: curl_floor REQUESTS.tsv [DURABLE_DIR]\n");
        return 2;
    }
    int dirfd = -1, journal = -1;
    unsigned long items = 0;
    if (argc == 3) {
        dirfd = open(argv[2], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        journal = dirfd < 0 ? -1
                            : openat(dirfd, "journal.jsonl",
                                     O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        if (journal < 0) {
            perror(argv[2]);
            return 2;
        }
    }
    request *r = NULL;
    size_t n = load(argv[1], &r);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || (epfd = epoll_create1(0)) < 0)
        return 2;
    CURLM *m = curl_multi_init();
    curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, MAX_HOST_CONNECTIONS);
    curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(m, CURLMOPT_SOCKETDATA, m);
    curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, on_timer);
    CURL *spare[MAX_INFLIGHT];
    int n_spare = 0, inflight = 0, running = 0, failed = 0, by_class[6] = {0};
    size_t next = 0;
    while (next < n || inflight > 0) {
        while (next < n && inflight < MAX_INFLIGHT) {
            CURL *e = n_spare > 0 ? spare[--n_spare] : curl_easy_init();
            curl_easy_reset(e);
            curl_easy_setopt(e, CURLOPT_URL, r[next].url);
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r[next].method);
            curl_easy_setopt(e, CURLOPT_HTTPHEADER, r[next].headers);
            curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
            curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
            curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 2048L);
            if (r[next].body != NULL) {
                curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(r[next].body));
                curl_easy_setopt(e, CURLOPT_POSTFIELDS, r[next].body);
                /* marks the item's last request: its answer is followed by the file work */
                if (strncmp(r[next].body, "Action=CreateAccessKey&", 23) == 0)
                    curl_easy_setopt(e, CURLOPT_PRIVATE, r[next].url);
            }
            curl_multi_add_handle(m, e);
            inflight++;
            next++;
        }
        struct epoll_event evs[256];
        long long wait = deadline < 0 ? 1000 : deadline - now_ms();
        int k = epoll_wait(epfd, evs, 256, wait < 0 ? 0 : (int)wait);
        for (int i = 0; i < k; i++) {
            int flags = (evs[i].events & EPOLLIN ? CURL_CSELECT_IN : 0) |
                        (evs[i].events & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
                        (evs[i].events & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0);
            curl_multi_socket_action(m, evs[i].data.fd, flags, &running);
        }
        if (deadline >= 0 && now_ms() >= deadline) {
            deadline = -1;
            curl_multi_socket_action(m, CURL_SOCKET_TIMEOUT, 0, &running);
        }
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            long code = 0;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &code);
            if (msg->data.result != CURLE_OK)
                failed++;
            else if (code >= 100 && code < 600)
                by_class[code / 100]++;
            char *url = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &url);
            if (journal >= 0 && url != NULL && durable_item(dirfd, journal, ++items) != 0) {
                perror("curl_floor: file work");
                return 1;
            }
            curl_multi_remove_handle(m, msg->easy_handle);
            spare[n_spare++] = msg->easy_handle;
            inflight--;
        }
    }
    if (journal >= 0 && (fsync(journal) != 0 || close(journal) != 0 || close(dirfd) != 0)) {
        perror("curl_floor: journal");
        return 1;
    }
    fprintf(stderr, "curl_floor: %zu requests: 2xx %d, 3xx %d, 4xx %d, 5xx %d, failed %d", n,
            by_class[2], by_class[3], by_class[4], by_class[5], failed);
    if (journal >= 0)
        fprintf(stderr, "; file work of %lu items", items);
    fputc('\n', stderr);
    return failed > 0;
}
