/* host_api: the ol_host table handed to every stage, and the functions behind it that are
 * views on the run (log, options, item identity, bag, AWS requests, journal, services,
 * helpers). Completions that drive the run (done, store_done, flush_done, prepare_done,
 * secret_find) live with the scheduler, the stores and the pipeline. */
#include <openssl/crypto.h>
#include <string.h>

#include <errno.h>
#include <sys/stat.h>

#include "aws/xml.h"
#include "error.h"
#include "privfile.h"
#include "names.h"
#include "run.h"

/* ---- logging --------------------------------------------------------------------------- */

static const char *level_name(ol_log_level level) {
    switch (level) {
    case OL_LOG_ERROR:
        return "error";
    case OL_LOG_WARN:
        return "warning";
    case OL_LOG_INFO:
        return "info";
    default:
        return "debug";
    }
}

static void mask_owner(const void *owner, char *text, void *hits) {
    *(size_t *)hits += bag_mask(&((const ol_item *)owner)->bag, text);
}

/* Masks text and returns how many secrets it held. The masker finds the items that may have
 * a secret in text from its windows, in time that grows with the text and not with the
 * items in progress (hundreds of them hold a key at once at a large --concurrency); if it
 * ever lacked memory, every item in progress is looked at (only those hold secrets: an
 * item's bag is freed when it ends). */
static size_t mask_text(const run *r, char *text) {
    size_t hits = 0;
    if (r->mask_all) {
        const list_node *n;
        list_foreach(n, &r->live) {
            hits += bag_mask(&list_entry(n, ol_item, live)->bag, text);
        }
    } else {
        masker_scan(&r->masker, text, mask_owner, &hits);
    }
    return hits;
}

void run_mask(const run *r, char *text) {
    (void)mask_text(r, text);
}

/* The item's secrets leave (add 0) or enter (add 1) the masker. */
static void index_secrets(ol_item *item, int add) {
    run *r = item->run;
    size_t pos = 0;
    const char *secret;
    while (!r->mask_all && (secret = bag_next_masked(&item->bag, &pos)) != NULL)
        if (!add)
            masker_remove(&r->masker, secret, item);
        else if (masker_add(&r->masker, secret, item) != 0)
            r->mask_all = 1;
}

int item_bag_set(ol_item *item, const char *key, const char *value, unsigned flags) {
    index_secrets(item, 0);
    int rc = bag_set(&item->bag, key, value, flags);
    index_secrets(item, 1);
    return rc;
}

void item_bag_free(ol_item *item) {
    if (item->run != NULL) /* NULL: an item the run never built (it stopped at an error) */
        index_secrets(item, 0);
    bag_free(&item->bag);
}

void run_log(ol_stage *stage, const ol_item *item, ol_log_level level, const char *fmt, ...) {
    run *r = stage ? stage->run : item ? item->run : NULL;
    va_list ap;
    if (r != NULL && level == OL_LOG_DEBUG && !r->plan->verbose)
        return;
    /* Format the whole line before masking: a fixed buffer could cut a secret in two, and
     * the cut-off part would no longer match and be printed. */
    va_start(ap, fmt);
    char *buf = ol__vformat(fmt, ap);
    va_end(ap);
    if (buf == NULL)
        return;
    if (r != NULL)
        run_mask(r, buf);
    char *line =
        ol__format("%s: %s%s%s%s%s\n", level_name(level), item ? item->name : "", item ? " " : "",
                   stage ? stage->ps->plugin->desc->name : "", stage || item ? ": " : "", buf);
    report_log(r ? r->report : NULL, line ? line : "error: out of memory\n");
    free(line);
    free(buf);
}

void run_print(const run *r, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *line = ol__vformat(fmt, ap);
    va_end(ap);
    report_log(r->report, line ? line : "error: out of memory\n");
    free(line);
}

/* ---- options and identity ------------------------------------------------------------- */

static const char *host_opt_string(ol_stage *s, const char *name) {
    return options_string(s->ps->opts, name);
}
static int host_opt_bool(ol_stage *s, const char *name) {
    return options_bool(s->ps->opts, name);
}
static long long host_opt_int(ol_stage *s, const char *name) {
    return options_int(s->ps->opts, name);
}
static size_t host_opt_list(ol_stage *s, const char *name, const char *const **out) {
    return options_list(s->ps->opts, name, out);
}
static size_t host_opt_map(ol_stage *s, const char *name, const ol_kv **out) {
    return options_map(s->ps->opts, name, out);
}
static int host_opt_is_set(ol_stage *s, const char *name) {
    return options_is_set(s->ps->opts, name);
}
static const char *host_item_product(const ol_item *i) {
    return i->product;
}
static const char *host_item_environment(const ol_item *i) {
    return i->environment;
}
static const char *host_item_name(const ol_item *i) {
    return i->name;
}
static const char *host_item_region(const ol_item *i) {
    return i->region;
}
static const char *host_item_get(const ol_item *i, const char *key) {
    return bag_get(&i->bag, key);
}
static int host_item_set(ol_item *i, const char *key, const char *value, unsigned flags) {
    return item_bag_set(i, key, value, flags);
}

/* ---- AWS ------------------------------------------------------------------------------- */

#define AWS_REQUEST_V2_0_SIZE                                                                      \
    (offsetof(ol_aws_request, consistency_ms) + sizeof(((ol_aws_request *)0)->consistency_ms))

static int host_aws_send(ol_item *item, const ol_aws_request *req, ol_aws_cb cb, void *arg) {
    if (item == NULL || req == NULL || req->struct_size < AWS_REQUEST_V2_0_SIZE)
        return OL_EINVAL;
    ol_aws_request copy;
    memset(&copy, 0, sizeof(copy));
    memcpy(&copy, req, req->struct_size < sizeof(copy) ? req->struct_size : sizeof(copy));
    copy.struct_size = sizeof(copy);
    if ((copy.access_key_id == NULL) != (copy.secret_access_key == NULL))
        return OL_EINVAL;
    if (copy.region == NULL)
        copy.region = item->region;
    /* Under a quota, the items started first are served first: they finish one after
     * another instead of all together at the end (progress, ETA, an interrupted run). */
    return aws_send_owned(item->ident->aws, &copy, cb, arg, item, item->start_seq);
}

/* ---- 2.0 helpers ------------------------------------------------------------------------ */

static void host_free(void *p) {
    free(p);
}

static void host_wipe(void *p, size_t n) {
    if (p != NULL && n > 0)
        OPENSSL_cleanse(p, n);
}

static int host_read_private_file(const char *path, size_t max, char **out, size_t *len) {
    if (path == NULL || out == NULL || len == NULL)
        return OL_EINVAL;
    /* What the SDK promises: no symlink, FIFO or device, so a planted link cannot redirect
     * the read and a FIFO cannot hang the run. One open decides, so nothing can be swapped
     * in between a check and the read. */
    int rc = privfile_read_nofollow(path, out, len);
    if (rc == 0 && *len > max) {
        OPENSSL_cleanse(*out, *len);
        free(*out);
        *out = NULL;
        return OL_ERANGE;
    }
    return rc;
}

/* Text a server sent, made safe for one line on a terminal: control characters become
 * \xNN, so an answer cannot forge lines or escape sequences. */
static void put_escaped(char *dst, size_t cap, size_t *off, const char *src) {
    for (const unsigned char *p = (const unsigned char *)src; p && *p && *off + 5 < cap; p++) {
        if (*p < 0x20 || *p == 0x7f)
            *off += (size_t)snprintf(dst + *off, cap - *off, "\\x%02x", *p);
        else
            dst[(*off)++] = (char)*p;
    }
    dst[*off] = '\0';
}

static char *host_aws_reason(const char *action, const ol_aws_response *res) {
    char buf[1024];
    size_t off = 0;
    buf[0] = '\0';
    put_escaped(buf, sizeof(buf), &off, action ? action : "request");
    put_escaped(buf, sizeof(buf), &off, " failed: ");
    if (res == NULL)
        return strdup(buf);
    if (res->result == OL_EAWS || res->error_code != NULL)
        put_escaped(buf, sizeof(buf), &off, res->error_code ? res->error_code : "error");
    else
        put_escaped(buf, sizeof(buf), &off, ol_strerror(res->result));
    if (res->error_message != NULL) {
        put_escaped(buf, sizeof(buf), &off, ": ");
        put_escaped(buf, sizeof(buf), &off, res->error_message);
    }
    char tail[256];
    if (res->status > 0)
        snprintf(tail, sizeof(tail), " (HTTP %ld%s", res->status,
                 res->request_id ? ", request id " : ")");
    else
        snprintf(tail, sizeof(tail), "%s", res->request_id ? " (request id " : "");
    put_escaped(buf, sizeof(buf), &off, tail);
    if (res->request_id != NULL) {
        put_escaped(buf, sizeof(buf), &off, res->request_id);
        put_escaped(buf, sizeof(buf), &off, ")");
    }
    return strdup(buf);
}

static int host_opt_bind(ol_stage *s, void *base) {
    if (s == NULL || base == NULL)
        return OL_EINVAL;
    return options_bind(s->ps->opts, base);
}

static const char *const placeholders[] = {"product", "environment", "bucket", "user", "region"};
#define N_PLACEHOLDERS (sizeof(placeholders) / sizeof(placeholders[0]))

static int host_expand(const ol_item *item, const char *tmpl, char **out, char **why) {
    const char *vals[N_PLACEHOLDERS] = {"p", "e", "b", "u", "r"};
    if (out == NULL || tmpl == NULL)
        return OL_EINVAL;
    *out = NULL;
    if (why)
        *why = NULL;
    if (item != NULL) {
        const char *bucket = bag_get(&item->bag, OL_KEY_BUCKET_NAME);
        const char *user = bag_get(&item->bag, OL_KEY_IAM_USER);
        vals[0] = item->product;
        vals[1] = item->environment;
        vals[2] = bucket ? bucket : item->name;
        vals[3] = user ? user : item->name;
        vals[4] = item->region;
    }
    size_t cap = strlen(tmpl) + 1;
    for (size_t i = 0; i < N_PLACEHOLDERS; i++)
        cap += strlen(vals[i]) * (strlen(tmpl) / 2 + 1);
    char *buf = malloc(cap), *o = buf;
    if (buf == NULL)
        return OL_ENOMEM;
    for (const char *p = tmpl; *p != '\0';) {
        if (*p == '}') {
            if (why)
                *why = ol__format("'%s': unbalanced '}'", tmpl);
            goto bad;
        }
        if (*p != '{') {
            *o++ = *p++;
            continue;
        }
        const char *close = strchr(p, '}');
        size_t n = close ? (size_t)(close - p - 1) : 0, i;
        for (i = 0; close && i < N_PLACEHOLDERS; i++)
            if (strlen(placeholders[i]) == n && memcmp(placeholders[i], p + 1, n) == 0)
                break;
        if (close == NULL || i == N_PLACEHOLDERS) {
            if (why)
                *why = close ? ol__format("'%s': unknown placeholder {%.*s}; use {product}, "
                                          "{environment}, {bucket}, {user} or {region}",
                                          tmpl, (int)(n < 64 ? n : 64), p + 1)
                             : ol__format("'%s': unclosed '{'", tmpl);
            goto bad;
        }
        o += sprintf(o, "%s", vals[i]);
        p = close + 1;
    }
    *o = '\0';
    if (buf[0] == '\0') {
        if (why)
            *why = ol__format("'%s' gives an empty path", tmpl);
        goto bad;
    }
    *out = buf;
    return 0;
bad:
    free(buf);
    return OL_EINVAL;
}

static const char *host_stage_name(const ol_stage *s) {
    return s ? s->ps->plugin->desc->name : NULL;
}

/* ---- 2.0 services ----------------------------------------------------------------------- */

static int host_proc_run(ol_stage *stage, const ol_item *item, const ol_proc_spec *spec,
                         ol_proc_cb cb, void *arg) {
    if (stage == NULL || spec == NULL || spec->argv == NULL)
        return OL_EINVAL;
    run *r = stage->run;
    for (size_t i = 0; spec->argv[i] != NULL; i++)
        if (run_reveals_secret(r, spec->argv[i]))
            goto secret;
    for (size_t i = 0; spec->env != NULL && spec->env[i] != NULL; i++)
        if (run_reveals_secret(r, spec->env[i]))
            goto secret;
    if (r->plan->verbose)
        run_log(stage, item, OL_LOG_DEBUG, "running %s", spec->argv[0]);
    return services_proc_run(r->svc, spec, cb, arg);
secret:
    run_log(stage, item, OL_LOG_ERROR,
            "plugin bug: refused to run %s with a secret on its command line or in its "
            "environment (secrets go on stdin)",
            spec->argv[0]);
    return OL_ESECRET;
}

static int host_work_queue(ol_stage *stage, ol_work_fn work, ol_after_work_cb after, void *arg) {
    return stage ? services_work(stage->run->svc, work, after, arg) : OL_EINVAL;
}

static int host_timer_start(ol_stage *stage, uint64_t ms, ol_timer_cb cb, void *arg,
                            ol_timer **out) {
    return stage ? services_timer_start(stage->run->svc, ms, cb, arg, out) : OL_EINVAL;
}

static int host_lock_acquire(ol_stage *stage, const char *resource, ol_lock_cb cb, void *arg) {
    return stage ? services_lock(stage->run->svc, resource, cb, arg) : OL_EINVAL;
}

/* ---- files and journal ------------------------------------------------------------------ */

static int host_write_private_file(const char *path, const char *data, size_t len) {
    return privfile_write(path, data, len);
}

static int host_create_private_file(const char *path, const char *data, size_t len) {
    return privfile_create(path, data, len);
}

static const char *stage_name(const ol_stage *s) {
    return s ? s->ps->plugin->desc->name : "host";
}

/* Nonzero when text contains a secret of any item in progress. The journal is a file that
 * outlives the run, so a plugin's mistake must not put a secret there. */
int run_reveals_secret(const run *r, const char *text) {
    if (text == NULL)
        return 0;
    char *copy = strdup(text);
    if (copy == NULL)
        return 1;
    int found = mask_text(r, copy) > 0;
    free(copy); /* masked: it holds no secret any more */
    return found;
}

/* 0 when a plugin's record may go to the journal (the journal outlives the run). */
static int journal_admits(ol_item *item, ol_stage *stage, const char *event, const char *id) {
    if (item == NULL || event == NULL)
        return OL_EINVAL;
    if (run_reveals_secret(item->run, event) || run_reveals_secret(item->run, id)) {
        run_log(stage, item, OL_LOG_ERROR, "plugin bug: refused to journal a secret");
        return OL_ESECRET;
    }
    return 0;
}

static int journal_record(ol_item *item, ol_stage *stage, const char *event, const char *id,
                          int durable) {
    int rc = journal_admits(item, stage, event, id);
    if (rc != 0)
        return rc;
    return (durable ? journal_append_durable : journal_append)(item->run->journal, item->name,
                                                               stage_name(stage), event, id, NULL);
}

/* A plugin's wait for a record to reach the disk (host_journal_append_synced). */
typedef struct synced_wait {
    ol_item *item;
    size_t stage; /* index into item->stages */
    ol_synced_cb cb;
    void *arg;
} synced_wait;

/* The record is on disk (status 0) or not (OL_EIO). What the record guards is sent from the
 * plugin's callback, so a stage that stopped running meanwhile (its time limit abandoned it;
 * the item has ended) gets OL_ECANCELED instead of 0: nothing is sent on behalf of a stage
 * already reported failed. */
static void on_journal_synced(void *arg, int status) {
    synced_wait *w = arg;
    const ol_item *item = w->item;
    if (status == 0 && (item->stages == NULL || item->stages[w->stage].status != ST_RUNNING))
        status = OL_ECANCELED;
    ol_synced_cb cb = w->cb;
    void *cb_arg = w->arg;
    free(w);
    cb(cb_arg, status);
}

static int host_journal_append_synced(ol_item *item, ol_stage *stage, const char *event,
                                      const char *id, ol_synced_cb cb, void *arg) {
    int rc = journal_admits(item, stage, event, id);
    if (rc != 0)
        return rc;
    if (stage == NULL || cb == NULL) /* no stage to watch; a NULL cb is refused below */
        return journal_append_synced(item->run->journal, item->name, stage_name(stage), event, id,
                                     NULL, cb, arg);
    synced_wait *w = malloc(sizeof(*w));
    if (w == NULL)
        return OL_ENOMEM;
    *w = (synced_wait){.item = item, .stage = stage->index, .cb = cb, .arg = arg};
    rc = journal_append_synced(item->run->journal, item->name, stage_name(stage), event, id, NULL,
                               on_journal_synced, w);
    if (rc != 0)
        free(w);
    return rc;
}

static int host_journal_append(ol_item *item, ol_stage *stage, const char *event, const char *id) {
    return journal_record(item, stage, event, id, 0);
}

static int host_journal_append_durable(ol_item *item, ol_stage *stage, const char *event,
                                       const char *id) {
    return journal_record(item, stage, event, id, 1);
}

static size_t host_journal_count(const ol_item *item, const char *event, const char *id) {
    return journal_count(item->run->journal, item->name, event, id);
}

/* Test hooks at named points: OPSLINE_TEST_KILL_AT dies there (a crash), and
 * OPSLINE_TEST_INTERRUPT_AT interrupts the run there exactly as a first Ctrl-C does, so a
 * test need not race a signal against the loop. */
static void host_checkpoint(const ol_item *item, const char *point) {
    const char *interrupt_at = getenv("OPSLINE_TEST_INTERRUPT_AT");
    if (item != NULL && point != NULL && interrupt_at != NULL && strcmp(interrupt_at, point) == 0)
        scheduler_interrupt(item->run);
    const char *want = getenv("OPSLINE_TEST_KILL_AT");
    if (want == NULL || point == NULL || strcmp(want, point) != 0)
        return;
    fprintf(stderr, "opsline: test hook: killed at %s (%s)\n", point, item ? item->name : "");
    fflush(NULL);
    raise(SIGKILL);
}

void run_checkpoint(const ol_item *item, const char *point) {
    host_checkpoint(item, point);
}

static int host_aws_name_check(const char *kind, const char *name, char **why) {
    char *err = NULL;
    int rc;
    if (kind == NULL || name == NULL)
        return OL_EINVAL;
    if (strcmp(kind, "s3-bucket") == 0)
        rc = names_check_bucket(name, &err);
    else if (strcmp(kind, "iam-user") == 0)
        rc = names_check_iam_user(name, &err);
    else
        return OL_ENOENT;
    if (rc == 0) {
        free(err);
        return 0;
    }
    if (why != NULL)
        *why = err;
    else
        free(err);
    return OL_EINVAL;
}

static int host_item_name_check(const ol_item *item, const char *kind, char **why) {
    char *err = NULL;
    if (item == NULL || kind == NULL)
        return OL_EINVAL;
    int rc = names_check_item_resource(kind, item->product, item->environment, &err);
    if (rc == 0 || rc == OL_ENOENT) {
        free(err);
        return rc;
    }
    if (why != NULL)
        *why = err;
    else
        free(err);
    return OL_EINVAL;
}

/* ---- 2.1: the lifecycle ----------------------------------------------------------------- */

static ol_mode host_run_mode(const ol_stage *stage) {
    return stage ? (ol_mode)stage->run->plan->mode : OL_MODE_APPLY;
}

static int host_run_flag(const ol_stage *stage, const char *name) {
    static const struct {
        const char *name;
        unsigned flag;
    } flags[] = {{"adopt", PLAN_FLAG_ADOPT},
                 {"empty-bucket", PLAN_FLAG_EMPTY_BUCKET},
                 {"keep-old", PLAN_FLAG_KEEP_OLD}};
    for (size_t i = 0; stage != NULL && name != NULL && i < sizeof(flags) / sizeof(flags[0]); i++)
        if (strcmp(flags[i].name, name) == 0)
            return (stage->run->plan->flags & flags[i].flag) != 0;
    return 0;
}

static size_t host_journal_count_stage(const ol_item *item, const ol_stage *stage,
                                       const char *stage_name_, const char *event, const char *id) {
    if (item == NULL || event == NULL)
        return 0;
    const char *name = stage_name_ ? stage_name_ : stage_name(stage);
    return journal_count_stage(item->run->journal, item->name, name, event, id);
}

static int host_report_fact(ol_stage *stage, ol_item *item, const char *name, const char *value) {
    if (stage == NULL || item == NULL || name == NULL || value == NULL)
        return OL_EINVAL;
    if (run_reveals_secret(item->run, name) || run_reveals_secret(item->run, value)) {
        run_log(stage, item, OL_LOG_ERROR, "plugin bug: refused to report a secret");
        return OL_ESECRET;
    }
    report_fact(item->run->report, item->name, stage_name(stage), name, value);
    return 0;
}

const ol_host run_host_api = {
    .struct_size = sizeof(ol_host),
    .abi_major = OL_ABI_MAJOR,
    .abi_minor = OL_ABI_MINOR,
    .strerror = ol_strerror,
    .log = run_log,
    .opt_string = host_opt_string,
    .opt_bool = host_opt_bool,
    .opt_int = host_opt_int,
    .opt_list = host_opt_list,
    .opt_map = host_opt_map,
    .opt_is_set = host_opt_is_set,
    .item_product = host_item_product,
    .item_environment = host_item_environment,
    .item_name = host_item_name,
    .item_region = host_item_region,
    .item_get = host_item_get,
    .item_set = host_item_set,
    .aws_send = host_aws_send,
    .xml_parse = xml_parse,
    .xml_count = xml_count,
    .xml_text = xml_text,
    .xml_free = xml_free,
    .write_private_file = host_write_private_file,
    .journal_append = host_journal_append,
    .journal_count = host_journal_count,
    .done = scheduler_done,
    .checkpoint = host_checkpoint,
    .format = ol__format,
    .free = host_free,
    .wipe = host_wipe,
    .read_private_file = host_read_private_file,
    .aws_reason = host_aws_reason,
    .opt_bind = host_opt_bind,
    .expand = host_expand,
    .stage_name = host_stage_name,
    .proc_run = host_proc_run,
    .work_queue = host_work_queue,
    .timer_start = host_timer_start,
    .timer_stop = services_timer_stop,
    .lock_acquire = host_lock_acquire,
    .lock_release = services_unlock,
    .store_done = stores_done,
    .flush_done = stores_flush_done,
    .prepare_done = pipeline_prepare_done,
    .secret_find = stores_secret_find,
    .journal_append_durable = host_journal_append_durable,
    .aws_name_check = host_aws_name_check,
    .item_name_check = host_item_name_check,
    .suggest = ol__suggest,
    .run_mode = host_run_mode,
    .run_flag = host_run_flag,
    .journal_count_stage = host_journal_count_stage,
    .report_fact = host_report_fact,
    .secret_read = stores_secret_read,
    .journal_append_synced = host_journal_append_synced,
    .create_private_file = host_create_private_file,
};
