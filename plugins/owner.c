/* owner: the ownership tags shared by the bucket and iam stages (see owner.h). */
#include "owner.h"

#include <stdlib.h>
#include <string.h>

static const char *const reserved[OWNER_N_TAGS] = {OWNER_TAG_MANAGED_BY, OWNER_TAG_PRODUCT,
                                                   OWNER_TAG_ENVIRONMENT};

void owner_tags(const ol_host *host, const ol_item *item, ol_kv out[OWNER_N_TAGS]) {
    out[0] = (ol_kv){OWNER_TAG_MANAGED_BY, OWNER_MANAGED_BY_VALUE};
    out[1] = (ol_kv){OWNER_TAG_PRODUCT, host->item_product(item)};
    out[2] = (ol_kv){OWNER_TAG_ENVIRONMENT, host->item_environment(item)};
}

int owner_tag_reserved(const char *key) {
    for (size_t i = 0; i < OWNER_N_TAGS; i++)
        if (strcmp(key, reserved[i]) == 0)
            return 1;
    return 0;
}

int owner_check_option(ol_stage *stage, const ol_host *host, const ol_kv *tags, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (!owner_tag_reserved(tags[i].name))
            continue;
        host->log(stage, NULL, OL_LOG_ERROR,
                  "option tags: key '%s' is set by opsline itself (ownership tags "
                  "managed-by=opsline, product, environment); remove it from tags",
                  tags[i].name);
        return OL_ECONFIG;
    }
    return 0;
}

int owner_merge(const ol_host *host, const ol_item *item, const ol_kv *tags, size_t n, ol_kv **out,
                size_t *n_out) {
    ol_kv *all = calloc(OWNER_N_TAGS + n, sizeof(*all));
    if (all == NULL)
        return OL_ENOMEM;
    owner_tags(host, item, all);
    for (size_t i = 0; i < n; i++)
        all[OWNER_N_TAGS + i] = tags[i];
    *out = all;
    *n_out = OWNER_N_TAGS + n;
    return 0;
}
