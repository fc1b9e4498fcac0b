/* harness: what every unit test repeats, in one place (libuv's test/task.h is the model):
 * the cmocka includes, a temporary directory made and removed, the AWS environment of a
 * test that must never reach a real account, a whole-file read, a port nobody listens on,
 * running a loop until a counter moves, and the teardown that proves a loop is left with
 * no handle open (libuv's MAKE_VALGRIND_HAPPY). Header-only: every helper is static inline,
 * so a test uses what it needs and links nothing more. */
#ifndef OL_TEST_HARNESS_H
#define OL_TEST_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <dirent.h>
#include <sys/stat.h>
#include <uv.h>

/* The access key pair of every test: syntactically valid, accepted by no account. A test
 * asserts that HARNESS_SECRET appears in no log line, request, file or report. */
#define HARNESS_AKID "AKIDEXAMPLETEST00001"
#define HARNESS_SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY1"

/* Credentials from the environment only: no profile, no shared files, no session token, no
 * retry mode of the developer's shell. A test sets what it varies (region, attempts,
 * endpoint) after this. */
static inline void harness_aws_env(void) {
    setenv("AWS_ACCESS_KEY_ID", HARNESS_AKID, 1);
    setenv("AWS_SECRET_ACCESS_KEY", HARNESS_SECRET, 1);
    unsetenv("AWS_SESSION_TOKEN");
    unsetenv("AWS_PROFILE");
    unsetenv("AWS_DEFAULT_PROFILE");
    unsetenv("AWS_RETRY_MODE");
    setenv("AWS_CONFIG_FILE", "/nonexistent/opsline-test-config", 1);
    setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/opsline-test-credentials", 1);
    setenv("AWS_EC2_METADATA_DISABLED", "true", 1); /* never wait for 169.254.169.254 */
}

/* Makes /tmp/opsline-test-<name>-XXXXXX into dir (size bytes). */
static inline void harness_tmpdir(char *dir, size_t size, const char *name) {
    int n = snprintf(dir, size, "/tmp/opsline-test-%s-XXXXXX", name);
    assert_true(n > 0 && (size_t)n < size);
    assert_non_null(mkdtemp(dir));
}

/* Removes path and, for a directory, everything under it (a tree a test made: symlinks
 * are removed, never followed). */
static inline void harness_rmtree(const char *path) {
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        assert_non_null(d);
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            size_t n = strlen(path) + strlen(e->d_name) + 2;
            char *child = malloc(n);
            assert_non_null(child);
            snprintf(child, n, "%s/%s", path, e->d_name);
            harness_rmtree(child);
            free(child);
        }
        closedir(d);
    }
    assert_int_equal(remove(path), 0);
}

/* The whole file, NUL-terminated, malloc'd (its length in *len when len is not NULL), or
 * NULL when it cannot be read. */
static inline char *harness_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (cap - n < 4096) {
            char *tmp = realloc(buf, cap + 65536);
            if (tmp == NULL) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = tmp;
            cap += 65536;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    if (len != NULL)
        *len = n;
    return buf;
}

/* A loopback TCP port that was free a moment ago and has no listener now. */
static inline int harness_unused_port(void) {
    uv_loop_t loop;
    uv_tcp_t tcp;
    struct sockaddr_in addr;
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(uv_tcp_init(&loop, &tcp), 0);
    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &addr), 0);
    assert_int_equal(uv_tcp_bind(&tcp, (const struct sockaddr *)&addr, 0), 0);
    assert_int_equal(uv_tcp_getsockname(&tcp, (struct sockaddr *)&ss, &len), 0);
    uv_close((uv_handle_t *)&tcp, NULL);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static inline void harness_on_guard(uv_timer_t *t) {
    (void)t;
}

/* A repeating timer that wakes uv_run(UV_RUN_ONCE) every ms milliseconds, so that a test
 * waiting for something that never happens fails in harness_run_until instead of hanging.
 * Closed like any handle (harness_loop_close_all, or uv_close by the test). */
static inline void harness_guard_start(uv_loop_t *loop, uv_timer_t *guard, uint64_t ms) {
    assert_int_equal(uv_timer_init(loop, guard), 0);
    assert_int_equal(uv_timer_start(guard, harness_on_guard, ms, ms), 0);
}

/* Runs loop until *counter reaches target; fails the test after 20 s. Needs a guard timer
 * (or other activity) so that each uv_run returns. */
static inline void harness_run_until(uv_loop_t *loop, const unsigned *counter, unsigned target) {
    uint64_t start = uv_now(loop);
    while (*counter < target) {
        assert_true(uv_now(loop) - start < 20000);
        uv_run(loop, UV_RUN_ONCE);
    }
}

/* The check that a test left nothing open: the loop runs dry and closes. */
static inline void harness_loop_close(uv_loop_t *loop) {
    assert_int_equal(uv_run(loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(loop), 0);
}

static inline void harness_close_walk(uv_handle_t *h, void *arg) {
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* libuv's MAKE_VALGRIND_HAPPY: closes every handle still open (the test's own, whose close
 * callbacks free nothing), runs the close callbacks, and closes the loop. */
static inline void harness_loop_close_all(uv_loop_t *loop) {
    uv_walk(loop, harness_close_walk, NULL);
    harness_loop_close(loop);
}

#endif
