/* Tests for itemlock.c: one lock file, a byte per item name, held against other opens of
 * the file (another run) and other processes, dropped on release and when the holder goes,
 * and the lock directory's checks. Each test works in its own directory under /tmp. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "error.h"
#include "itemlock.h"

typedef struct fixture {
    char dir[64];
    char locks[128];
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/ol-itemlock-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    setenv("XDG_RUNTIME_DIR", f->dir, 1);
    snprintf(f->locks, sizeof(f->locks), "%s/opsline-locks", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    char path[256];
    snprintf(path, sizeof(path), "%s/items.lock", f->locks);
    unlink(path);
    rmdir(f->locks);
    rmdir(f->dir);
    free(f);
    return 0;
}

static int open_locks(void) {
    char *dir = NULL, *err = NULL;
    int fd = -1;
    assert_int_equal(itemlock_dir(&dir, &err), 0);
    assert_int_equal(itemlock_open(dir, &fd, &err), 0);
    assert_true(fd >= 0);
    free(dir);
    return fd;
}

static void test_a_held_item_is_refused_to_another_run_and_others_are_not(void **state) {
    (void)state;
    char *err = NULL;
    int a = open_locks(), b = open_locks(); /* two runs: two opens of the file */
    assert_int_equal(itemlock_try(a, "shop-production", &err), 0);
    assert_int_equal(itemlock_try(b, "shop-production", &err), 1);
    assert_int_equal(itemlock_try(b, "shop-staging", &err), 0);
    assert_int_equal(itemlock_try(a, "shop-staging", &err), 1);
    /* released: the other run may take it */
    itemlock_release(a, "shop-production");
    assert_int_equal(itemlock_try(b, "shop-production", &err), 0);
    assert_int_equal(itemlock_try(a, "shop-production", &err), 1);
    /* closing the file drops every lock of that run */
    close(b);
    assert_int_equal(itemlock_try(a, "shop-production", &err), 0);
    assert_int_equal(itemlock_try(a, "shop-staging", &err), 0);
    assert_null(err);
    close(a);
}

static void test_a_killed_holder_leaves_no_lock(void **state) {
    (void)state;
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char *err = NULL;
        char *dir = NULL;
        int fd = -1;
        if (itemlock_dir(&dir, &err) != 0 || itemlock_open(dir, &fd, &err) != 0 ||
            itemlock_try(fd, "app-production", &err) != 0)
            _exit(1);
        if (write(ready[1], "x", 1) != 1)
            _exit(1);
        pause();
        _exit(0);
    }
    close(ready[1]);
    char c;
    assert_int_equal(read(ready[0], &c, 1), 1);
    close(ready[0]);
    char *err = NULL;
    int fd = open_locks();
    assert_int_equal(itemlock_try(fd, "app-production", &err), 1);
    assert_int_equal(itemlock_try(fd, "app-staging", &err), 0);
    kill(pid, SIGKILL);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_int_equal(itemlock_try(fd, "app-production", &err), 0);
    close(fd);
}

static void test_the_lock_file_is_one_file_whatever_the_items(void **state) {
    fixture *f = *state;
    char *err = NULL;
    int fd = open_locks();
    char name[64];
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof(name), "p%04d-production", i);
        assert_int_equal(itemlock_try(fd, name, &err), 0);
    }
    char path[256];
    snprintf(path, sizeof(path), "%s/items.lock", f->locks);
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(st.st_size, 0); /* record locks need no bytes in the file */
    assert_int_equal(lstat(f->locks, &st), 0);
    assert_int_equal(st.st_nlink, 2); /* no per-item files or directories */
    close(fd);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_offsets_are_distinct_and_fit_an_off_t(void **state) {
    (void)state;
    enum { N = 20000 };
    uint64_t *seen = calloc(N, sizeof(*seen));
    assert_non_null(seen);
    char name[64];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "bench%05d-%s", i / 2, i % 2 ? "staging" : "production");
        seen[i] = itemlock_offset(name);
        assert_true(seen[i] < (UINT64_C(1) << 62));
    }
    qsort(seen, N, sizeof(*seen), cmp_u64);
    for (int i = 1; i < N; i++)
        assert_true(seen[i - 1] != seen[i]);
    assert_true(itemlock_offset("a") != itemlock_offset("b"));
    assert_int_equal(itemlock_offset("shop-production"), itemlock_offset("shop-production"));
    free(seen);
}

static void test_a_lock_directory_others_can_enter_is_refused(void **state) {
    fixture *f = *state;
    assert_int_equal(mkdir(f->locks, 0755), 0);
    assert_int_equal(chmod(f->locks, 0755), 0);
    char *dir = NULL, *err = NULL;
    assert_int_equal(itemlock_dir(&dir, &err), OL_ECONFIG);
    assert_non_null(err);
    assert_non_null(strstr(err, f->locks));
    assert_non_null(strstr(err, "0700"));
    free(err);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_a_held_item_is_refused_to_another_run_and_others_are_not, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_killed_holder_leaves_no_lock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_the_lock_file_is_one_file_whatever_the_items, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_offsets_are_distinct_and_fit_an_off_t, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_lock_directory_others_can_enter_is_refused, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
