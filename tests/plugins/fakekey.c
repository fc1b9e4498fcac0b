/* fakekey: a test stage that stands for the iam stage in a host built with no bundled
 * stage. It "creates" an access key (OL_STAGE_CREATES_SECRETS) without any AWS request:
 * iam.access_key_id and the secret iam.secret_access_key are made up from the item's name,
 * so a test can tell which item's key a store received. */
#include <string.h>

#include <opsline/opsline.h>

static const ol_host *g_host;

static int fakekey_init(ol_stage *stage, const ol_host *host, void **state) {
    (void)stage;
    g_host = host;
    *state = NULL;
    return 0;
}

static int fakekey_apply(ol_stage *stage, ol_item *item, void *state) {
    const char *name = g_host->item_name(item);
    char *id = g_host->format("AKIAFAKE%.12s", name);
    char *secret = g_host->format("fake-secret-of-%s-0123456789", name);
    int rc = OL_ENOMEM;
    (void)state;
    if (id != NULL && secret != NULL) {
        rc = g_host->item_set(item, OL_KEY_ACCESS_KEY_ID, id, 0);
        if (rc == 0)
            rc = g_host->item_set(item, OL_KEY_SECRET_ACCESS_KEY, secret, OL_BAG_SECRET);
    }
    if (secret != NULL)
        g_host->wipe(secret, strlen(secret));
    g_host->free(id);
    g_host->free(secret);
    if (rc != 0)
        return rc;
    g_host->done(stage, item, OL_OUTCOME_CREATED, NULL);
    return 0;
}

static const ol_plugin fakekey_plugin = {
    .abi_major = OL_ABI_MAJOR,
    .abi_minor = OL_ABI_MINOR,
    .struct_size = sizeof(ol_plugin),
    .name = "fakekey",
    .version = "1.0.0",
    .description = "Test stage: makes up an access key per item (no AWS request)",
    .flags = OL_STAGE_CREATES_SECRETS | OL_STAGE_DEFAULT,
    .init = fakekey_init,
    .apply = fakekey_apply,
};

OL_EXPORT const ol_plugin *opsline_plugin(void);
const ol_plugin *opsline_plugin(void) {
    return &fakekey_plugin;
}
