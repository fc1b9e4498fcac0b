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
        cmocka_unit_test(many_keys_grow_the_bag),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
