/* bucket_lifecycle: destroy removes the item's bucket when it is opsline's (managed-by=
 * opsline tag, or the journal, or --adopt) and empty; with --empty-bucket every object
 * version and delete marker goes first (ListObjectVersions, then DeleteObject with the
 * versionId, one at a time), so a versioned bucket can be removed too. For plan and status,
 * bucket.c observes the bucket and runs apply's own bucket_diff; this file names each
 * difference it found (which public-access settings, which tags) and the owner. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opsline/opsline.h"

#include "../lifecycle.h"
#include "bucket_lifecycle.h"

#define VERSIONS_PAGE "1000"

typedef enum bl_state { BL_HEAD, BL_TAGS, BL_LIST, BL_DELETE_OBJECT, BL_DELETE } bl_state;

static const char *const bl_names[] = {[BL_HEAD] = "HeadBucket",
                                       [BL_TAGS] = "GetBucketTagging",
                                       [BL_LIST] = "ListObjectVersions",
                                       [BL_DELETE_OBJECT] = "DeleteObject",
                                       [BL_DELETE] = "DeleteBucket"};

typedef struct bl_object {
    char *key, *version;
} bl_object;

typedef struct bl_run {
    const ol_host *h;
    ol_stage *stage;
    ol_item *item;
    const char *name;
    int mode;
    bl_state state;
    bl_object *objects;
    size_t n_objects, next;
    size_t deleted;
} bl_run;

static void objects_free(bl_run *r) {
    for (size_t i = 0; i < r->n_objects; i++) {
        free(r->objects[i].key);
        free(r->objects[i].version);
    }
    free(r->objects);
    r->objects = NULL;
    r->n_objects = r->next = 0;
}

static void bl_finish(bl_run *r, ol_outcome outcome, const char *reason) {
    r->h->done(r->stage, r->item, outcome, reason);
    objects_free(r);
    free(r);
}

static void bl_fail_aws(bl_run *r, const ol_aws_response *res) {
    const ol_host *h = r->h;
    char *reason = lifecycle_aws_reason(h, res, "%s %s", bl_names[r->state], r->name);
    bl_finish(r, OL_OUTCOME_FAILED, reason ? reason : "out of memory");
    h->free(reason);
}

static void on_answer(void *arg, const ol_aws_response *res);

static void bl_send(bl_run *r, bl_state state, const char *method, const ol_kv *params, size_t n,
                    const char *key) {
    ol_aws_request req = {.struct_size = sizeof(ol_aws_request),
                          .service = "s3",
                          .method = method,
                          .bucket = r->name,
                          .key = key,
                          .params = params,
                          .n_params = n};
    r->state = state;
    int rc = r->h->aws_send(r->item, &req, on_answer, r);
    if (rc < 0) {
        ol_aws_response refused = {.struct_size = sizeof(ol_aws_response), .result = rc};
        bl_fail_aws(r, &refused);
    }
}

static void send_list(bl_run *r) {
    ol_kv params[] = {{"versions", ""}, {"max-keys", VERSIONS_PAGE}};
    bl_send(r, BL_LIST, "GET", params, 2, NULL);
}

/* Versions and delete markers of a ListObjectVersions page into r->objects. */
static int take_objects(bl_run *r, const ol_xml *doc) {
    static const char *const kinds[] = {"ListVersionsResult/Version",
                                        "ListVersionsResult/DeleteMarker"};
    size_t total = 0;
    for (size_t k = 0; k < 2; k++) {
        char p[96];
        snprintf(p, sizeof(p), "%s/Key", kinds[k]);
        total += r->h->xml_count(doc, p);
    }
    objects_free(r);
    r->objects = calloc(total ? total : 1, sizeof(*r->objects));
    if (r->objects == NULL)
        return OL_ENOMEM;
    for (size_t k = 0; k < 2; k++) {
        char pk[96], pv[96];
        snprintf(pk, sizeof(pk), "%s/Key", kinds[k]);
        snprintf(pv, sizeof(pv), "%s/VersionId", kinds[k]);
        size_t n = r->h->xml_count(doc, pk);
        for (size_t i = 0; i < n; i++) {
            const char *key = r->h->xml_text(doc, pk, i);
            const char *ver = r->h->xml_text(doc, pv, i);
            bl_object *o = &r->objects[r->n_objects++];
            o->key = strdup(key ? key : "");
            o->version = strdup(ver ? ver : "null");
            if (o->key == NULL || o->version == NULL)
                return OL_ENOMEM;
        }
    }
    return 0;
}

static void delete_next_object(bl_run *r) {
    if (r->next >= r->n_objects) {
        send_list(r); /* the next page, or an empty one */
        return;
    }
    const bl_object *o = &r->objects[r->next];
    ol_kv params[] = {{"versionId", o->version}};
    bl_send(r, BL_DELETE_OBJECT, "DELETE", params, 1, o->key);
}

static void on_listed(bl_run *r, const ol_aws_response *res) {
    ol_xml *doc = r->h->xml_parse(res->body, res->body_len);
    int rc = doc ? take_objects(r, doc) : OL_EINVAL;
    if (doc != NULL)
        r->h->xml_free(doc);
    if (rc != 0) {
        char why[200];
        snprintf(why, sizeof(why), "ListObjectVersions %s: unreadable answer (%s)", r->name,
                 r->h->strerror(rc));
        bl_finish(r, OL_OUTCOME_FAILED, why);
        return;
    }
    if (r->n_objects == 0) {
        bl_send(r, BL_DELETE, "DELETE", NULL, 0, NULL);
        return;
    }
    if (!r->h->run_flag(r->stage, "empty-bucket")) {
        char why[400];
        snprintf(why, sizeof(why),
                 "bucket %s still holds objects (%zu%s object versions or delete markers, e.g. "
                 "'%.80s'); refused: pass --empty-bucket to delete every version first",
                 r->name, r->n_objects, r->n_objects >= 1000 ? " or more" : "", r->objects[0].key);
        bl_finish(r, OL_OUTCOME_FAILED, why);
        return;
    }
    r->next = 0;
    delete_next_object(r);
}

static void on_destroy(bl_run *r, const ol_aws_response *res) {
    static const char *const owners[] = {"bucket", NULL};
    int gone = res->status == 404 || lifecycle_is_error(res, "NoSuchBucket");
    if (gone && r->state != BL_TAGS && r->state != BL_DELETE_OBJECT) {
        bl_finish(r, r->state == BL_HEAD ? OL_OUTCOME_ABSENT : OL_OUTCOME_DELETED, NULL);
        return;
    }
    if (res->result != 0 && !(r->state == BL_TAGS && lifecycle_is_error(res, "NoSuchTagSet")) &&
        !(r->state == BL_DELETE_OBJECT && gone)) {
        bl_fail_aws(r, res);
        return;
    }
    switch (r->state) {
    case BL_HEAD:
        bl_send(r, BL_TAGS, "GET", &(ol_kv){"tagging", ""}, 1, NULL);
        return;
    case BL_TAGS: {
        ol_xml *doc = res->result == 0 ? r->h->xml_parse(res->body, res->body_len) : NULL;
        int ours =
            lifecycle_tagged(r->h, doc, "Tagging/TagSet/Tag/Key", "Tagging/TagSet/Tag/Value") ||
            lifecycle_journaled(r->h, r->item, owners);
        if (doc != NULL)
            r->h->xml_free(doc);
        if (!ours && !r->h->run_flag(r->stage, "adopt")) {
            const ol_host *h = r->h;
            char *why = lifecycle_not_ours(h, "bucket", r->name);
            bl_finish(r, OL_OUTCOME_FAILED, why ? why : "not created by opsline");
            h->free(why);
            return;
        }
        send_list(r);
        return;
    }
    case BL_LIST:
        on_listed(r, res);
        return;
    case BL_DELETE_OBJECT:
        r->deleted++;
        r->next++;
        delete_next_object(r);
        return;
    case BL_DELETE:
        if (r->deleted > 0)
            r->h->log(r->stage, r->item, OL_LOG_INFO,
                      "deleted %zu object version(s) and delete marker(s) of bucket %s", r->deleted,
                      r->name);
        bl_finish(r, OL_OUTCOME_DELETED, NULL);
        return;
    }
}

static void on_answer(void *arg, const ol_aws_response *res) {
    on_destroy(arg, res);
}

int bucket_lifecycle_destroy(const ol_host *h, ol_stage *stage, ol_item *item) {
    bl_run *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return OL_ENOMEM;
    r->h = h;
    r->stage = stage;
    r->item = item;
    r->name = h->item_name(item);
    r->mode = h->run_mode(stage);
    bl_send(r, BL_HEAD, "HEAD", NULL, 0, NULL);
    return 0;
}

/* ---- plan and status: naming what bucket_diff found ------------------------------------ */

static void drift_add(char *out, size_t size, const char *fmt, const char *a, const char *b) {
    size_t n = strlen(out);
    if (n + 2 >= size)
        return;
    if (n > 0) {
        memcpy(out + n, "; ", 3);
        n += 2;
    }
    snprintf(out + n, size - n, fmt, a, b);
}

static const char *text(const ol_host *h, const ol_xml *doc, const char *path) {
    const char *t = doc != NULL ? h->xml_text(doc, path, 0) : NULL;
    return t != NULL ? t : "";
}

/* Each of the four Block Public Access settings that is not as configured. */
static void explain_pab(const ol_host *h, const bucket_plan_diff *d, char *out, size_t size) {
    static const char *const names[] = {"BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy",
                                        "RestrictPublicBuckets"};
    for (size_t i = 0; i < 4; i++) {
        char path[96];
        snprintf(path, sizeof(path), "PublicAccessBlockConfiguration/%s", names[i]);
        int on = strcmp(text(h, d->pab_doc, path), "true") == 0;
        if (on != (d->block_public != 0))
            drift_add(out, size, "would turn %s %s (public access block)",
                      d->block_public ? "on" : "off", names[i]);
    }
}

int bucket_lifecycle_explain(const ol_host *h, ol_stage *stage, ol_item *item,
                             const bucket_plan_diff *d, char *out, size_t size) {
    static const char *const owners[] = {"bucket", NULL};
    const char *sse = "ServerSideEncryptionConfiguration/Rule/ApplyServerSideEncryptionByDefault/"
                      "SSEAlgorithm";
    out[0] = '\0';
    if (d->writes_pab)
        explain_pab(h, d, out, size);
    if (d->writes_enc)
        drift_add(out, size, "would set default encryption %s (now %s)", d->encryption,
                  *text(h, d->enc_doc, sse) ? text(h, d->enc_doc, sse) : "none");
    if (d->writes_ver)
        drift_add(out, size, "would %s versioning%s",
                  strcmp(d->versioning ? d->versioning : "", "Enabled") == 0 ? "enable" : "suspend",
                  "");
    if (d->writes_log)
        drift_add(out, size, "would %s server access logging%s", d->log_bucket ? "set" : "turn off",
                  "");
    for (size_t i = 0; d->writes_tags && i < d->n_tags; i++) {
        const char *key = d->tags[i].name, *want = d->tags[i].value ? d->tags[i].value : "";
        size_t n = d->tags_doc ? h->xml_count(d->tags_doc, "Tagging/TagSet/Tag/Key") : 0;
        int same = 0;
        for (size_t k = 0; k < n && !same; k++) {
            const char *hk = h->xml_text(d->tags_doc, "Tagging/TagSet/Tag/Key", k);
            const char *hv = h->xml_text(d->tags_doc, "Tagging/TagSet/Tag/Value", k);
            same = hk && hv && strcmp(hk, key) == 0 && strcmp(hv, want) == 0;
        }
        if (!same)
            drift_add(out, size, "would set tag %s=%s", key, want);
    }
    if (d->writes_tags && out[0] == '\0')
        drift_add(out, size, "would remove tags not in the tags option%s%s", "", "");
    int tagged =
        lifecycle_tagged(h, d->tags_doc, "Tagging/TagSet/Tag/Key", "Tagging/TagSet/Tag/Value");
    h->report_fact(stage, item, "bucket", h->item_name(item));
    h->report_fact(stage, item, "owner",
                   tagged                                 ? "opsline (tag)"
                   : lifecycle_journaled(h, item, owners) ? "opsline (journal)"
                                                          : "not opsline");
    return out[0] != '\0';
}
