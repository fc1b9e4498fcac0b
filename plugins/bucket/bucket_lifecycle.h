/* bucket_lifecycle: the bucket stage's destroy and plan/status (bucket.c's descriptor
 * points at thin wrappers). Each returns 0 and completes with host->done once, or a
 * negative code. */
#ifndef OL_PLUGINS_BUCKET_LIFECYCLE_H
#define OL_PLUGINS_BUCKET_LIFECYCLE_H

#include "opsline/opsline.h"

/* What bucket_diff (bucket.c, the comparison apply acts on) found for an observed bucket,
 * for plan and status to name. Everything borrowed for the call. */
typedef struct bucket_plan_diff {
    unsigned writes_pab, writes_enc, writes_ver, writes_log, writes_tags; /* apply would PUT */
    const ol_xml *pab_doc, *enc_doc, *tags_doc; /* what S3 answered; NULL: not configured */
    int block_public;                           /* the options */
    const char *encryption;
    const char *versioning; /* with writes_ver: "Enabled" or "Suspended" */
    const char *log_bucket; /* NULL: logging off */
    const ol_kv *tags;      /* with writes_tags: the whole tag set apply would write */
    size_t n_tags;
} bucket_plan_diff;

int bucket_lifecycle_destroy(const ol_host *h, ol_stage *stage, ol_item *item);
/* Names each difference of d in out ("would turn on BlockPublicPolicy (public access
 * block); ...") and reports status's facts (bucket, owner). Returns nonzero when apply
 * would change something. */
int bucket_lifecycle_explain(const ol_host *h, ol_stage *stage, ol_item *item,
                             const bucket_plan_diff *d, char *out, size_t size);

#endif
