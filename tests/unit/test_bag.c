/* Unit tests of the item bag: copies, replacement, secret masking and wiping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "bag.h"
#include "opsline/opsline.h"

static void set_copies_key_and_value(void **state) {
    (void)state;
    bag b;
    char key[] = "bucket.name", value[] = "acme-production";
    bag_init(&b);
    assert_int_equal(bag_set(&b, key, value, 0), 0);
    key[0] = 'X';
    value[0] = 'X';
    assert_string_equal(bag_get(&b, "bucket.name"), "acme-production");
    assert_null(bag_get(&b, "Xucket.name"));
    bag_free(&b);
}

static void set_replaces_an_existing_value(void **state) {
    (void)state;
    bag b;
    bag_init(&b);
    assert_int_equal(bag_set(&b, "k", "one", 0), 0);
    assert_int_equal(bag_set(&b, "k", "two", OL_BAG_SECRET), 0);
    assert_string_equal(bag_get(&b, "k"), "two");
    assert_true(bag_is_secret(&b, "k"));
    assert_int_equal(b.n, 1);
    bag_free(&b);
}

static void set_rejects_null_and_empty_keys(void **state) {
    (void)state;
    bag b;
    bag_init(&b);
    assert_int_equal(bag_set(&b, NULL, "v", 0), OL_EINVAL);
    assert_int_equal(bag_set(&b, "", "v", 0), OL_EINVAL);
    assert_int_equal(bag_set(&b, "k", NULL, 0), OL_EINVAL);
    bag_free(&b);
}

static void mask_hides_every_secret_occurrence_but_not_plain_values(void **state) {
    (void)state;
    bag b;
    char text[] = "id AKIA123 secret wJalrXUtn/K7 and again wJalrXUtn/K7.";
    bag_init(&b);
    bag_set(&b, "iam.access_key_id", "AKIA123", 0);
    bag_set(&b, "iam.secret_access_key", "wJalrXUtn/K7", OL_BAG_SECRET);
    assert_int_equal(bag_mask(&b, text), 2);
    assert_null(strstr(text, "wJalrXUtn/K7"));
    assert_non_null(strstr(text, "AKIA123"));
    bag_free(&b);
}

/* n_masked counts the secrets bag_mask looks for, so that a bag without one costs nothing
 * to mask: a secret replaced by a plain value no longer counts, nor does one too short to
 * mask, and an emptied bag counts none. */
static void counts_the_secrets_to_mask_as_they_come_and_go(void **state) {
    (void)state;
    bag b;
    char text[] = "short abc and plain AKIA123";
    bag_init(&b);
    bag_set(&b, "iam.access_key_id", "AKIA123", 0);
    bag_set(&b, "tiny", "abc", OL_BAG_SECRET);
    assert_int_equal(b.n_masked, 0);
    assert_int_equal(bag_mask(&b, text), 0);
    bag_set(&b, "iam.secret_access_key", "wJalrXUtn/K7", OL_BAG_SECRET);
    bag_set(&b, "other.secret", "0123456789", OL_BAG_SECRET);
    assert_int_equal(b.n_masked, 2);
    bag_set(&b, "iam.secret_access_key", "pdq", OL_BAG_SECRET); /* now too short */
    assert_int_equal(b.n_masked, 1);
    bag_set(&b, "other.secret", "0123456789", 0); /* now plain */
    assert_int_equal(b.n_masked, 0);
    bag_set(&b, "other.secret", "9876543210", OL_BAG_SECRET);
    assert_int_equal(b.n_masked, 1);
    bag_free(&b);
    assert_int_equal(b.n_masked, 0);
}

/* Wiping is checked at the moment the memory is given back: test_bag is linked with
 * -Wl,--wrap=free (tests/CMakeLists.txt), so every free() in bag.c comes here first, and the
 * bytes of the watched value are copied before the real free. */
void __real_free(void *p);

static struct {
    const void *ptr; /* the value to look at when it is freed */
    size_t len;
    char seen[64]; /* its bytes just before free */
    int freed;
} watch;

void __wrap_free(void *p) {
    if (p != NULL && p == watch.ptr) {
        memcpy(watch.seen, p, watch.len);
        watch.freed = 1;
        watch.ptr = NULL;
    }
    __real_free(p);
}

static void watch_value(const char *value) {
    memset(&watch, 0, sizeof(watch));
    watch.ptr = value;
    watch.len = strlen(value);
    assert_true(watch.len < sizeof(watch.seen));
}

static int all_zero(const char *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0)
            return 0;
    return 1;
}

static void replacing_a_secret_wipes_the_old_value_before_freeing_it(void **state) {
    (void)state;
    bag b;
    bag_init(&b);
    assert_int_equal(bag_set(&b, "iam.secret_access_key", "wJalrXUtnFEMI/K7MDENG", OL_BAG_SECRET),
                     0);
    watch_value(bag_get(&b, "iam.secret_access_key"));
    assert_int_equal(bag_set(&b, "iam.secret_access_key", "new-secret", OL_BAG_SECRET), 0);
    assert_true(watch.freed);
    assert_true(all_zero(watch.seen, watch.len));
    assert_string_equal(bag_get(&b, "iam.secret_access_key"), "new-secret");
    bag_free(&b);
}

static void a_secret_replaced_by_a_plain_value_is_wiped_too(void **state) {
    (void)state;
    bag b;
    bag_init(&b);
    assert_int_equal(bag_set(&b, "k", "old-secret-value", OL_BAG_SECRET), 0);
    watch_value(bag_get(&b, "k"));
    assert_int_equal(bag_set(&b, "k", "plain", 0), 0);
    assert_true(watch.freed);
    assert_true(all_zero(watch.seen, watch.len));
    assert_false(bag_is_secret(&b, "k"));
    bag_free(&b);
}

static void freeing_the_bag_wipes_every_secret(void **state) {
    (void)state;
    bag b;
    bag_init(&b);
    assert_int_equal(bag_set(&b, "bucket.name", "acme-production", 0), 0);
    assert_int_equal(bag_set(&b, "iam.secret_access_key", "wJalrXUtnFEMI/K7MDENG", OL_BAG_SECRET),
                     0);
    watch_value(bag_get(&b, "iam.secret_access_key"));
    bag_free(&b);
    assert_true(watch.freed);
    assert_true(all_zero(watch.seen, watch.len));
}

/* The check above can fail: a plain value reaches free() with its bytes intact. */
static void plain_values_are_freed_unwiped_so_the_watch_sees_content(void **state) {
    (void)state;
    bag b;
    bag_init(&b);
    assert_int_equal(bag_set(&b, "bucket.name", "acme-production", 0), 0);
    watch_value(bag_get(&b, "bucket.name"));
    bag_free(&b);
    assert_true(watch.freed);
    assert_memory_equal(watch.seen, "acme-production", watch.len);
}

static void many_keys_grow_the_bag(void **state) {
    (void)state;
    bag b;
    char key[32];
    bag_init(&b);
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        assert_int_equal(bag_set(&b, key, key, 0), 0);
    }
    assert_string_equal(bag_get(&b, "k99"), "k99");
    bag_free(&b);
    assert_int_equal(b.n, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(set_copies_key_and_value),
        cmocka_unit_test(set_replaces_an_existing_value),
        cmocka_unit_test(set_rejects_null_and_empty_keys),
        cmocka_unit_test(mask_hides_every_secret_occurrence_but_not_plain_values),
        cmocka_unit_test(counts_the_secrets_to_mask_as_they_come_and_go),
        cmocka_unit_test(replacing_a_secret_wipes_the_old_value_before_freeing_it),
        cmocka_unit_test(a_secret_replaced_by_a_plain_value_is_wiped_too),
        cmocka_unit_test(freeing_the_bag_wipes_every_secret),
        cmocka_unit_test(plain_values_are_freed_unwiped_so_the_watch_sees_content),
        cmocka_unit_test(many_keys_grow_the_bag),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
