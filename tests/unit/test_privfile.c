/* Tests for privfile.c: modes, atomic replacement, parent creation, failures that leave the
 * old file and no temp file behind, symlinks, reading back. Each test works in its own
 * fresh directory under /tmp. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "privfile.h"

typedef struct fixture {
    char dir[64];
    char path[512];
} fixture;

static const char *at(fixture *f, const char *rel) {
    snprintf(f->path, sizeof(f->path), "%s/%s", f->dir, rel);
    return f->path;
}

static void remove_tree(const char *path) {
    struct stat st;
    DIR *d;
    struct dirent *ent;

    if (lstat(path, &st) != 0)
        return;
    if (!S_ISDIR(st.st_mode)) {
        unlink(path);
        return;
    }
    chmod(path, 0700);
    d = opendir(path);
    if (d != NULL) {
        while ((ent = readdir(d)) != NULL) {
            char child[1024];

            if (strcmp(ent->d_name, ".") == 0 || strcmp(ent->d_name, "..") == 0)
                continue;
            snprintf(child, sizeof(child), "%s/%s", path, ent->d_name);
            remove_tree(child);
        }
        closedir(d);
    }
    rmdir(path);
}

static size_t count_entries(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *ent;
    size_t n = 0;

    assert_non_null(d);
    while ((ent = readdir(d)) != NULL) {
        if (strcmp(ent->d_name, ".") != 0 && strcmp(ent->d_name, "..") != 0)
            n++;
    }
    closedir(d);
    return n;
}

static mode_t mode_of(const char *path) {
    struct stat st;

    assert_int_equal(lstat(path, &st), 0);
    return st.st_mode & 07777;
}

static void assert_content(const char *path, const char *want) {
    char *data = NULL;
    size_t len = 0;

    assert_int_equal(privfile_read(path, &data, &len), 0);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(data, want, len);
    assert_int_equal(data[len], '\0');
    free(data);
}

static void put(const char *path, const char *s) {
    assert_int_equal(privfile_write(path, s, strlen(s)), 0);
}

static int setup(void **state) {
    fixture *f = calloc(1, sizeof(*f));

    if (f == NULL)
        return -1;
    strcpy(f->dir, "/tmp/test_privfile.XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;

    remove_tree(f->dir);
    free(f);
    return 0;
}

static void writes_mode_0600_even_with_umask_0(void **state) {
    fixture *f = *state;
    mode_t old = umask(0);

    put(at(f, "new"), "secret");
    assert_int_equal(mode_of(f->path), 0600);
    /* An existing, too-open file is replaced by a 0600 one. */
    close(open(at(f, "open"), O_CREAT | O_WRONLY, 0644));
    assert_int_equal(mode_of(f->path), 0644);
    put(f->path, "secret");
    assert_int_equal(mode_of(f->path), 0600);
    umask(old);
    assert_content(at(f, "new"), "secret");
}

static void create_writes_a_new_file_and_never_replaces_one(void **state) {
    fixture *f = *state;
    mode_t old = umask(0);

    assert_int_equal(privfile_create(at(f, "sub/new.env"), "A=1\n", 4), 0);
    assert_int_equal(mode_of(f->path), 0600);
    assert_content(f->path, "A=1\n");
    umask(old);
    /* There now: refused, left as it was, and no temp file stays behind. */
    errno = 0;
    assert_int_equal(privfile_create(f->path, "B=2\n", 4), OL_EEXIST);
    assert_int_equal(errno, EEXIST);
    assert_content(f->path, "A=1\n");
    assert_int_equal(count_entries(at(f, "sub")), 1);
    /* A link, even a dangling one, is something there: never replaced or followed. */
    assert_int_equal(symlink("nowhere", at(f, "sub/link.env")), 0);
    assert_int_equal(privfile_create(f->path, "C=3\n", 4), OL_EEXIST);
    assert_int_equal(access(at(f, "sub/nowhere"), F_OK), -1);
    assert_int_equal(count_entries(at(f, "sub")), 2);
    assert_int_equal(privfile_create(NULL, "x", 1), OL_EINVAL);
}

/* The link(2) way (filesystems without RENAME_NOREPLACE), and the NFS case of a link made
 * although its reply said EEXIST: the temp file then has two names. */
static void place_new_by_link_creates_refuses_and_counts_its_own_link(void **state) {
    fixture *f = *state;
    char tmp[512];

    snprintf(tmp, sizeof(tmp), "%s/.t", f->dir);
    int fd = open(tmp, O_CREAT | O_EXCL | O_WRONLY, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "K=1\n", 4), 4);
    assert_int_equal(privfile_place_new(tmp, at(f, "a.env"), fd, 1), 0);
    assert_int_equal(access(tmp, F_OK), -1); /* the temp name went */
    assert_content(f->path, "K=1\n");
    close(fd);

    /* Something else there: EEXIST, both files untouched. */
    fd = open(tmp, O_CREAT | O_EXCL | O_WRONLY, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "K=2\n", 4), 4);
    errno = 0;
    assert_int_equal(privfile_place_new(tmp, at(f, "a.env"), fd, 1), -1);
    assert_int_equal(errno, EEXIST);
    assert_content(f->path, "K=1\n");
    assert_content(tmp, "K=2\n");

    /* The link exists and is this very file (a retried NFS link): that is success. */
    assert_int_equal(link(tmp, at(f, "b.env")), 0);
    assert_int_equal(privfile_place_new(tmp, at(f, "b.env"), fd, 1), 0);
    assert_int_equal(access(tmp, F_OK), -1);
    assert_content(f->path, "K=2\n");
    close(fd);

    /* The rename way refuses the same. */
    fd = open(tmp, O_CREAT | O_EXCL | O_WRONLY, 0600);
    assert_true(fd >= 0);
    assert_int_equal(privfile_place_new(tmp, at(f, "a.env"), fd, 0), -1);
    assert_int_equal(errno, EEXIST);
    assert_content(f->path, "K=1\n");
    close(fd);
}

static void replaces_content_atomically_by_rename(void **state) {
    fixture *f = *state;
    struct stat before;
    struct stat after;
    char buf[16] = {0};
    int fd;

    put(at(f, "app.env"), "OLD=1\n");
    assert_int_equal(stat(f->path, &before), 0);
    fd = open(f->path, O_RDONLY);
    assert_true(fd >= 0);
    put(f->path, "NEW=2\nMORE=3\n");
    /* A reader holding the old file still sees all of the old content: the new content
     * went to another inode that was renamed in, not written over the old one. */
    assert_int_equal(read(fd, buf, sizeof(buf) - 1), 6);
    assert_string_equal(buf, "OLD=1\n");
    close(fd);
    assert_int_equal(stat(f->path, &after), 0);
    assert_true(before.st_ino != after.st_ino);
    assert_content(f->path, "NEW=2\nMORE=3\n");
    assert_int_equal(count_entries(f->dir), 1); /* no temp file left */
}

static void creates_missing_parents_0700(void **state) {
    fixture *f = *state;
    mode_t old = umask(0);

    assert_int_equal(chmod(f->dir, 0755), 0);
    put(at(f, "a/b/c/key"), "k");
    umask(old);
    assert_content(f->path, "k");
    assert_int_equal(mode_of(at(f, "a")), 0700);
    assert_int_equal(mode_of(at(f, "a/b")), 0700);
    assert_int_equal(mode_of(at(f, "a/b/c")), 0700);
    assert_int_equal(mode_of(f->dir), 0755); /* existing directories are left alone */

    /* Even when the umask would strip owner bits. */
    old = umask(0277);
    put(at(f, "d/e/key"), "k");
    umask(old);
    assert_int_equal(mode_of(at(f, "d")), 0700);
    assert_int_equal(mode_of(at(f, "d/e")), 0700);
    assert_int_equal(mode_of(at(f, "d/e/key")), 0600);
}

/* Runs in a child: as an unprivileged user if we are root, since root writes anywhere. */
static int try_unwritable(const char *dir) {
    char path[512];

    if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
        return 77;
    snprintf(path, sizeof(path), "%s/secret", dir);
    errno = 0;
    if (privfile_write(path, "new", 3) != OL_EIO || errno != EACCES)
        return 1;
    snprintf(path, sizeof(path), "%s/sub/secret", dir);
    errno = 0;
    if (privfile_write(path, "new", 3) != OL_EIO || errno != EACCES)
        return 2;
    return 0;
}

static void fails_with_eio_in_an_unwritable_directory(void **state) {
    fixture *f = *state;
    char ro[128];
    pid_t pid;
    int status;

    assert_int_equal(chmod(f->dir, 0755), 0);
    put(at(f, "ro/secret"), "old");
    snprintf(ro, sizeof(ro), "%s/ro", f->dir);
    assert_int_equal(chmod(ro, 0555), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(try_unwritable(ro));
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) == 77)
        skip(); /* cannot drop privileges here */
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(count_entries(ro), 1);
    assert_content(at(f, "ro/secret"), "old");
}

static void removes_the_temp_file_when_rename_fails(void **state) {
    fixture *f = *state;
    int rc;

    /* A non-empty directory in the way: the temp file is written, the rename fails. */
    put(at(f, "target/inside"), "old");
    errno = 0;
    rc = privfile_write(at(f, "target"), "new", 3);
    assert_int_equal(rc, OL_EIO);
    assert_true(errno == EISDIR || errno == ENOTEMPTY || errno == EEXIST);
    assert_int_equal(count_entries(f->dir), 1);
    assert_content(at(f, "target/inside"), "old");
}

/* What a writer killed between create and rename leaves: the target's temp file, holding
 * the half-written secret, with no process holding its lock. */
static void removes_a_temp_file_a_crashed_writer_left(void **state) {
    fixture *f = *state;
    char tmp[600];

    put(at(f, "app.env"), "OLD=1\n");
    snprintf(tmp, sizeof(tmp), "%s/.app.env.opsline-tmp", f->dir);
    int fd = open(tmp, O_CREAT | O_EXCL | O_WRONLY, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "NEW=", 4), 4);
    close(fd);
    assert_int_equal(count_entries(f->dir), 2);

    put(at(f, "app.env"), "NEW=2\n");
    assert_content(f->path, "NEW=2\n");
    assert_int_equal(count_entries(f->dir), 1);
    assert_int_equal(access(tmp, F_OK), -1);
}

/* A temp file another process is writing (its lock held) is not touched: this write goes to
 * a temp file of its own and still replaces the target. */
static void leaves_the_temp_file_of_a_live_writer_alone(void **state) {
    fixture *f = *state;
    char tmp[600];
    int ready[2], go[2];

    snprintf(tmp, sizeof(tmp), "%s/.app.env.opsline-tmp", f->dir);
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(go), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) { /* the other writer: holds the lock until told to stop */
        char c = 0;
        int fd = open(tmp, O_CREAT | O_EXCL | O_WRONLY, 0600);
        if (fd < 0 || flock(fd, LOCK_EX) != 0 || write(ready[1], "r", 1) != 1)
            _exit(1);
        _exit(read(go[0], &c, 1) == 1 ? 0 : 1);
    }
    char c;
    assert_int_equal(read(ready[0], &c, 1), 1);
    put(at(f, "app.env"), "MINE=1\n");
    assert_content(f->path, "MINE=1\n");
    assert_int_equal(access(tmp, F_OK), 0); /* still there: not ours to remove */
    assert_int_equal(count_entries(f->dir), 2);
    assert_int_equal(write(go[1], "g", 1), 1);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_int_equal(WEXITSTATUS(status), 0);
    close(ready[0]);
    close(ready[1]);
    close(go[0]);
    close(go[1]);
}

static void fails_when_a_parent_is_a_file(void **state) {
    fixture *f = *state;

    put(at(f, "file"), "old");
    errno = 0;
    assert_int_equal(privfile_write(at(f, "file/secret"), "x", 1), OL_EIO);
    assert_int_equal(errno, ENOTDIR);
    assert_content(at(f, "file"), "old");
    assert_int_equal(count_entries(f->dir), 1);
}

static void replaces_a_symlink_not_the_file_it_points_to(void **state) {
    fixture *f = *state;
    char victim[sizeof(((fixture *)0)->path)];
    struct stat st;

    put(at(f, "victim"), "untouched");
    snprintf(victim, sizeof(victim), "%s", f->path);
    assert_int_equal(symlink(victim, at(f, "link")), 0);
    put(f->path, "secret");
    assert_int_equal(lstat(f->path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_content(f->path, "secret");
    assert_content(victim, "untouched");
}

static void reads_back_binary_and_empty_files(void **state) {
    fixture *f = *state;
    static const char bin[] = {'a', '\0', 'b', '\n', (char)0xff};
    char *data = NULL;
    size_t len = 99;

    assert_int_equal(privfile_write(at(f, "bin"), bin, sizeof(bin)), 0);
    assert_int_equal(privfile_read(f->path, &data, &len), 0);
    assert_int_equal(len, sizeof(bin));
    assert_memory_equal(data, bin, sizeof(bin));
    free(data);
    assert_int_equal(privfile_write(at(f, "empty"), NULL, 0), 0);
    assert_content(f->path, "");
}

static void reads_missing_files_as_enoent(void **state) {
    fixture *f = *state;
    char *data = (char *)"x";
    size_t len = 1;

    assert_int_equal(privfile_read(at(f, "missing"), &data, &len), OL_ENOENT);
    assert_null(data);
    assert_int_equal(len, 0);
    assert_int_equal(privfile_read(f->dir, &data, &len), OL_EINVAL);
    assert_null(data);
}

static void writes_a_path_without_a_directory(void **state) {
    fixture *f = *state;
    char cwd[1024];

    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(f->dir), 0);
    put("plain", "here");
    assert_int_equal(chdir(cwd), 0);
    assert_content(at(f, "plain"), "here");
    assert_int_equal(count_entries(f->dir), 1);
}

static void rejects_bad_arguments(void **state) {
    fixture *f = *state;
    char *data;
    size_t len;

    assert_int_equal(privfile_write(NULL, "x", 1), OL_EINVAL);
    assert_int_equal(privfile_write(at(f, "x"), NULL, 1), OL_EINVAL);
    assert_int_equal(privfile_write(at(f, "dir/"), "x", 1), OL_EINVAL);
    assert_int_equal(privfile_write("", "x", 1), OL_EINVAL);
    assert_int_equal(privfile_read(NULL, &data, &len), OL_EINVAL);
    assert_int_equal(count_entries(f->dir), 0);
}

static void mkdirs_creates_every_missing_parent_0700_whatever_the_umask(void **state) {
    fixture *f = *state;
    mode_t old = umask(0);
    mkdir(at(f, "kept"), 0755);
    int rc = privfile_mkdirs(at(f, "kept/a/b"));
    umask(old);
    assert_int_equal(rc, 0);
    struct stat st;
    assert_int_equal(stat(at(f, "kept/a/b"), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(stat(at(f, "kept/a"), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(stat(at(f, "kept"), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0755); /* existing: left as it was */
    assert_int_equal(privfile_mkdirs(at(f, "kept/a/b")), 0);
}

static void mkdirs_refuses_a_file_in_the_way(void **state) {
    fixture *f = *state;
    assert_int_equal(privfile_write(at(f, "plain"), "x", 1), 0);
    errno = 0;
    assert_int_equal(privfile_mkdirs(at(f, "plain/sub")), OL_EIO);
    assert_int_equal(errno, ENOTDIR);
}

static void write_all_writes_every_byte(void **state) {
    fixture *f = *state;
    size_t len = 3 * 1024 * 1024;
    char *data = malloc(len);
    assert_non_null(data);
    for (size_t i = 0; i < len; i++)
        data[i] = (char)(i * 7);
    int fd = open(at(f, "big"), O_CREAT | O_WRONLY | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(privfile_write_all(fd, data, len), 0);
    close(fd);
    char *back = NULL;
    size_t back_len = 0;
    assert_int_equal(privfile_read(at(f, "big"), &back, &back_len), 0);
    assert_int_equal(back_len, len);
    assert_memory_equal(back, data, len);
    free(back);
    free(data);
    assert_int_equal(privfile_write_all(-1, "x", 1), OL_EIO);
}

static void sync_dir_syncs_a_directory_and_fails_on_a_missing_one(void **state) {
    fixture *f = *state;
    assert_int_equal(privfile_sync_dir(f->dir), 0);
    assert_int_equal(privfile_sync_dir(at(f, "missing")), OL_EIO);
}

/* A FIFO at a path opsline reads would block open(2) until some writer came; alarm(10)
 * turns such a hang into a failure instead of a stuck test run. */
static void read_refuses_a_fifo_without_waiting_for_a_writer(void **state) {
    fixture *f = *state;
    char *data = NULL;
    size_t len = 0;

    assert_int_equal(mkfifo(at(f, "fifo"), 0600), 0);
    alarm(10);
    errno = 0;
    assert_int_equal(privfile_read(f->path, &data, &len), OL_EINVAL);
    assert_int_equal(errno, ENXIO);
    assert_null(data);
    assert_int_equal(privfile_read_nofollow(f->path, &data, &len), OL_EINVAL);
    assert_null(privfile_fopen(f->path));
    assert_int_equal(errno, ENXIO);
    alarm(0);
    assert_non_null(strstr(privfile_strerror(ENXIO), "FIFO"));
}

static void read_nofollow_refuses_a_link_that_read_follows(void **state) {
    fixture *f = *state;
    char target[sizeof(((fixture *)0)->path)];
    char *data = NULL;
    size_t len = 0;

    put(at(f, "real"), "content");
    snprintf(target, sizeof(target), "%s", f->path);
    assert_int_equal(symlink(target, at(f, "link")), 0);
    assert_content(f->path, "content");
    errno = 0;
    assert_int_equal(privfile_read_nofollow(f->path, &data, &len), OL_EINVAL);
    assert_int_equal(errno, ELOOP);
    assert_null(data);
    assert_non_null(strstr(privfile_strerror(ELOOP), "symbolic link"));
    assert_int_equal(privfile_read_nofollow(target, &data, &len), 0);
    assert_string_equal(data, "content");
    free(data);
    FILE *fp = privfile_fopen(f->path);
    assert_non_null(fp);
    fclose(fp);
}

/* The journal's pid file case: a link planted at a state file must not let the open
 * truncate or append to the file it points at. */
static void open_with_nofollow_leaves_a_links_target_untouched(void **state) {
    fixture *f = *state;
    char victim[sizeof(((fixture *)0)->path)];
    int fd = 7;

    put(at(f, "victim"), "precious");
    snprintf(victim, sizeof(victim), "%s", f->path);
    assert_int_equal(symlink(victim, at(f, "pid")), 0);
    errno = 0;
    assert_int_equal(privfile_open(f->path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0600, &fd),
                     OL_EINVAL);
    assert_int_equal(errno, ELOOP);
    assert_int_equal(fd, -1);
    assert_content(victim, "precious");
}

static void open_refuses_a_directory_and_opens_a_regular_file_blocking(void **state) {
    fixture *f = *state;
    int fd;

    errno = 0;
    assert_int_equal(privfile_open(f->dir, O_RDONLY, 0, &fd), OL_EINVAL);
    assert_int_equal(errno, EISDIR);
    assert_int_equal(privfile_open(at(f, "new"), O_RDWR | O_CREAT | O_NOFOLLOW, 0600, &fd), 0);
    assert_true(fd >= 0);
    assert_int_equal(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
    assert_true((fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
    close(fd);
    assert_int_equal(privfile_open(at(f, "missing"), O_RDONLY, 0, &fd), OL_ENOENT);
}

/* AWS_CONFIG_FILE=/dev/null means "no file"; /dev/zero would read forever. */
static void dev_null_reads_empty_but_other_devices_are_refused(void **state) {
    (void)state;
    char *data = NULL;
    size_t len = 9;

    assert_int_equal(privfile_read("/dev/null", &data, &len), 0);
    assert_int_equal(len, 0);
    free(data);
    errno = 0;
    assert_int_equal(privfile_read("/dev/zero", &data, &len), OL_EINVAL);
    assert_int_equal(errno, ENXIO);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(writes_mode_0600_even_with_umask_0, setup, teardown),
        cmocka_unit_test_setup_teardown(replaces_content_atomically_by_rename, setup, teardown),
        cmocka_unit_test_setup_teardown(create_writes_a_new_file_and_never_replaces_one, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(place_new_by_link_creates_refuses_and_counts_its_own_link,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(creates_missing_parents_0700, setup, teardown),
        cmocka_unit_test_setup_teardown(fails_with_eio_in_an_unwritable_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(removes_the_temp_file_when_rename_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(removes_a_temp_file_a_crashed_writer_left, setup, teardown),
        cmocka_unit_test_setup_teardown(leaves_the_temp_file_of_a_live_writer_alone, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(fails_when_a_parent_is_a_file, setup, teardown),
        cmocka_unit_test_setup_teardown(replaces_a_symlink_not_the_file_it_points_to, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(reads_back_binary_and_empty_files, setup, teardown),
        cmocka_unit_test_setup_teardown(reads_missing_files_as_enoent, setup, teardown),
        cmocka_unit_test_setup_teardown(writes_a_path_without_a_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(rejects_bad_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(mkdirs_creates_every_missing_parent_0700_whatever_the_umask,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(mkdirs_refuses_a_file_in_the_way, setup, teardown),
        cmocka_unit_test_setup_teardown(write_all_writes_every_byte, setup, teardown),
        cmocka_unit_test_setup_teardown(sync_dir_syncs_a_directory_and_fails_on_a_missing_one,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(read_refuses_a_fifo_without_waiting_for_a_writer, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(read_nofollow_refuses_a_link_that_read_follows, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(open_with_nofollow_leaves_a_links_target_untouched, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(open_refuses_a_directory_and_opens_a_regular_file_blocking,
                                        setup, teardown),
        cmocka_unit_test(dev_null_reads_empty_but_other_devices_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
