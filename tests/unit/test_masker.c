/* masker: the index of secrets by their first bytes that run_mask reads a text through. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "bag.h"
#include "masker.h"
#include "opsline/opsline.h"

typedef struct seen {
    const void *owners[16];
    size_t n;
} seen;

static void record(const void *owner, char *text, void *arg) {
    seen *s = arg;
    (void)text;
    if (s->n < 16)
        s->owners[s->n++] = owner;
}

static size_t count_of(const seen *s, const void *owner) {
    size_t k = 0;
    for (size_t i = 0; i < s->n; i++)
        k += s->owners[i] == owner;
    return k;
}

static seen scan(const masker *m, const char *text) {
    seen s;
    char buf[256];
    memset(&s, 0, sizeof s);
    snprintf(buf, sizeof buf, "%s", text);
    masker_scan(m, buf, record, &s);
    return s;
}

/* A text is read window by window: an owner is named once for each place one of its
 * secrets starts, at the very start or end of the text too, and an owner sharing another's
 * prefix is named with it; a text without any of them names nobody. */
static void names_the_owners_whose_secret_starts_in_the_text(void **state) {
    int a, b, c;
    masker m;
    (void)state;
    masker_init(&m);
    assert_int_equal(masker_add(&m, "wJalrXUtnFEMI", &a), 0);
    assert_int_equal(masker_add(&m, "wJalOTHER", &b), 0); /* the same first 4 bytes */
    assert_int_equal(masker_add(&m, "9sk3+secret", &c), 0);
    assert_int_equal(m.n, 3);

    seen s = scan(&m, "wJalrXUtnFEMI at the start, 9sk3 at the end: 9sk3");
    assert_int_equal(count_of(&s, &a), 1);
    assert_int_equal(count_of(&s, &b), 1);
    assert_int_equal(count_of(&s, &c), 2);
    assert_int_equal(scan(&m, "nothing of theirs here, nor wJa").n, 0);
    assert_int_equal(scan(&m, "").n, 0);
    assert_int_equal(scan(&m, "wJa").n, 0);
    masker_free(&m);
}

/* A removed secret is no longer looked for; another owner's secret with the same prefix
 * still is, and so is a second secret of the same owner. */
static void forgets_one_secret_of_one_owner(void **state) {
    int a, b;
    masker m;
    (void)state;
    masker_init(&m);
    assert_int_equal(masker_add(&m, "samePREFIX-1", &a), 0);
    assert_int_equal(masker_add(&m, "samePREFIX-2", &b), 0);
    assert_int_equal(masker_add(&m, "otherOfA", &a), 0);
    masker_remove(&m, "samePREFIX-1", &a);
    assert_int_equal(m.n, 2);
    seen s = scan(&m, "same and nothing else");
    assert_int_equal(count_of(&s, &a), 0);
    assert_int_equal(count_of(&s, &b), 1);
    s = scan(&m, "otherOfA");
    assert_int_equal(count_of(&s, &a), 1);
    masker_remove(&m, "samePREFIX-2", &b);
    masker_remove(&m, "otherOfA", &a);
    masker_remove(&m, "otherOfA", &a); /* gone already: nothing happens */
    assert_int_equal(m.n, 0);
    assert_int_equal(scan(&m, "same otherOfA").n, 0);
    masker_free(&m);
}

/* Thousands of secrets (the keys of a run at a large --concurrency) are all found after the
 * index grew, and a secret too short to mask is refused. */
static void finds_every_secret_of_thousands(void **state) {
    enum { N = 3000 };
    static char secrets[N][24];
    static int owners[N];
    masker m;
    (void)state;
    masker_init(&m);
    for (int i = 0; i < N; i++) {
        snprintf(secrets[i], sizeof secrets[i], "%04d-secret-key", i);
        assert_int_equal(masker_add(&m, secrets[i], &owners[i]), 0);
    }
    assert_true(m.n_buckets >= N);
    for (int i = 0; i < N; i += 7) {
        char text[96];
        snprintf(text, sizeof text, "the line holds %.23s here", secrets[i]);
        seen s = scan(&m, text);
        assert_int_equal(count_of(&s, &owners[i]), 1);
    }
    assert_int_equal(masker_add(&m, "abc", &owners[0]), OL_EINVAL);
    masker_free(&m);
    assert_int_equal(m.n, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(names_the_owners_whose_secret_starts_in_the_text),
        cmocka_unit_test(forgets_one_secret_of_one_owner),
        cmocka_unit_test(finds_every_secret_of_thousands),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
