/* hello: a minimal third-party opsline stage, built against the installed SDK only.
 *
 * It runs after the bucket stage and stores "<greeting> <bucket name>" in the item bag as
 * hello.message, where later stages (or the report) can read it. It sends no AWS request,
 * so apply completes at once; a real stage would call host->aws_send and complete from its
 * callback. Either way host->done is called exactly once per apply that returned 0. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <opsline/opsline.h>

#define HELLO_KEY "hello.message"

/* Per-stage state. `greeting` is filled by host->opt_bind from its declaration (OL_BIND
 * below) and stays valid until fini. */
typedef struct hello {
    const ol_host *host; /* valid until fini */
    const char *greeting;
} hello;

static const ol_option_def hello_options[] = {
    {"greeting", OL_OPT_STRING, "hello", "First word of hello.message", OL_BIND(hello, greeting)},
};

static int hello_init(ol_stage *stage, const ol_host *host, void **state) {
    hello *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return OL_ENOMEM;
    h->host = host;
    int rc = host->opt_bind(stage, h);
    if (rc != 0) {
        free(h);
        return rc;
    }
    *state = h;
    return 0;
}

static int hello_apply(ol_stage *stage, ol_item *item, void *state) {
    const hello *h = state;
    const ol_host *host = h->host;
    const char *greeting = h->greeting;
    const char *bucket = host->item_get(item, OL_KEY_BUCKET_NAME);
    if (bucket == NULL) {
        host->done(stage, item, OL_OUTCOME_FAILED, "no bucket.name: run the bucket stage first");
        return 0;
    }
    size_t len = strlen(greeting) + 1 + strlen(bucket) + 1;
    char *message = malloc(len);
    if (message == NULL)
        return OL_ENOMEM; /* failing synchronously: done is not called */
    snprintf(message, len, "%s %s", greeting, bucket);

    const char *before = host->item_get(item, HELLO_KEY);
    ol_outcome outcome = OL_OUTCOME_CREATED;
    if (before != NULL && strcmp(before, message) == 0) {
        outcome = OL_OUTCOME_UNCHANGED;
    } else {
        int rc = host->item_set(item, HELLO_KEY, message, 0); /* copies */
        if (rc < 0) {
            free(message);
            return rc;
        }
    }
    host->log(stage, item, OL_LOG_INFO, "%s", message);
    free(message);
    host->done(stage, item, outcome, NULL);
    return 0;
}

static void hello_fini(void *state) {
    free(state);
}

static const char *const hello_needs[] = {"bucket", NULL};

static const ol_plugin hello_plugin = {
    .abi_major = OL_ABI_MAJOR,
    .abi_minor = OL_ABI_MINOR,
    .struct_size = sizeof(ol_plugin),
    .name = "hello",
    .version = "1.0.0",
    .description = "Example third-party stage: greets each item's bucket",
    .needs = hello_needs,
    OL_OPTIONS(hello_options),
    .init = hello_init,
    .apply = hello_apply,
    .fini = hello_fini,
};

/* The one exported symbol (everything else is hidden by -fvisibility=hidden). */
OL_EXPORT const ol_plugin *opsline_plugin(void);
const ol_plugin *opsline_plugin(void) {
    return &hello_plugin;
}
