/* xml: owns the parsing of AWS response bodies. expat (namespace-aware, so "iam:Foo" and
 * xmlns defaults reduce to local names) builds a small element tree of name, text and
 * children; lookups walk it by '/'-separated paths from the root. Input is untrusted: size,
 * depth and element count are bounded and any DOCTYPE is refused, since AWS never sends one
 * and a DTD is the door to entity-expansion attacks. Error bodies are decoded here too, for
 * the XML styles (S3, Query, EC2) and for JSON protocols (jansson). */
#include "xml.h"

#include <expat.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* Bounds on hostile input. The largest AWS answers opsline reads (ListObjectsV2, IAM list
 * calls, 1000 entries per page) are well below a megabyte and a few thousand elements. */
#define XML_MAX_INPUT ((size_t)16 * 1024 * 1024)
#define XML_MAX_DEPTH 64
#define XML_MAX_NODES ((size_t)200000)
/* The size of a document's first block of nodes and texts (later ones double): enough for
 * the answers of a batch. */
#define XML_BLOCK ((size_t)4096)

/* expat joins namespace URI and local name with this byte; it cannot occur in a name. */
#define XML_NS_SEP '\x01'

typedef struct xml_node xml_node;
struct xml_node {
    char *name;
    char *text; /* NULL until character data arrives */
    size_t text_len;
    size_t text_cap;
    xml_node *parent;
    xml_node *first_child;
    xml_node *last_child;
    xml_node *next;
};

/* A document's nodes, names and texts live in a few blocks of its own, freed together: an
 * answer of 30 elements costs a block or two instead of a hundred allocations. */
typedef struct xml_block xml_block;
struct xml_block {
    xml_block *prev;
    size_t used, cap;
    _Alignas(max_align_t) char data[];
};

struct ol_xml {
    xml_node *root;
    xml_block *blocks; /* the newest first */
    /* Parse state, unused once parsing is over. */
    XML_Parser parser;
    xml_node *cur;
    size_t depth;
    size_t nodes;
    int failed;
};

#define XML_ALIGN(n) (((n) + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1))

/* n bytes from the document's blocks (a new block when the newest is full), or NULL. */
static void *doc_alloc(ol_xml *doc, size_t n) {
    xml_block *b = doc->blocks;
    n = XML_ALIGN(n);
    if (b == NULL || b->cap - b->used < n) {
        size_t cap = n > XML_BLOCK ? n : XML_BLOCK;
        if (b != NULL && cap < 2 * b->cap)
            cap = 2 * b->cap;
        xml_block *nb = malloc(sizeof(*nb) + cap);
        if (nb == NULL)
            return NULL;
        nb->prev = b;
        nb->used = 0;
        nb->cap = cap;
        doc->blocks = b = nb;
    }
    void *p = b->data + b->used;
    b->used += n;
    return p;
}

/* Answers such as CreateAccessKey carry secrets: every block is wiped before it is freed,
 * texts outgrown and left behind included. */
static void blocks_free(xml_block *b) {
    while (b != NULL) {
        xml_block *prev = b->prev;
        OPENSSL_cleanse(b->data, b->used);
        free(b);
        b = prev;
    }
}

static void parse_fail(ol_xml *doc) {
    doc->failed = 1;
    XML_StopParser(doc->parser, XML_FALSE);
}

static const char *local_name(const char *name) {
    const char *sep = strrchr(name, XML_NS_SEP);
    return sep != NULL ? sep + 1 : name;
}

static void on_start(void *ud, const XML_Char *name, const XML_Char **attrs) {
    ol_xml *doc = ud;
    xml_node *n;

    (void)attrs;
    if (doc->failed)
        return;
    if (doc->depth >= XML_MAX_DEPTH || doc->nodes >= XML_MAX_NODES) {
        parse_fail(doc);
        return;
    }
    const char *local = local_name(name);
    size_t name_len = strlen(local);
    n = doc_alloc(doc, sizeof(*n) + name_len + 1);
    if (n == NULL) {
        parse_fail(doc);
        return;
    }
    memset(n, 0, sizeof(*n));
    n->name = (char *)(n + 1);
    memcpy(n->name, local, name_len + 1);
    n->parent = doc->cur;
    if (doc->cur == NULL) {
        doc->root = n;
    } else if (doc->cur->last_child == NULL) {
        doc->cur->first_child = doc->cur->last_child = n;
    } else {
        doc->cur->last_child->next = n;
        doc->cur->last_child = n;
    }
    doc->cur = n;
    doc->depth++;
    doc->nodes++;
}

static void on_end(void *ud, const XML_Char *name) {
    ol_xml *doc = ud;

    (void)name;
    if (doc->failed || doc->cur == NULL)
        return;
    doc->cur = doc->cur->parent;
    doc->depth--;
}

static void on_text(void *ud, const XML_Char *s, int len) {
    ol_xml *doc = ud;
    xml_node *n = doc->cur;
    size_t need;

    if (doc->failed || n == NULL || len <= 0)
        return;
    need = n->text_len + (size_t)len + 1;
    if (need > n->text_cap) {
        size_t cap = n->text_cap != 0 ? n->text_cap : 32;
        while (cap < need)
            cap *= 2;
        xml_block *b = doc->blocks;
        char *end = n->text != NULL ? n->text + XML_ALIGN(n->text_cap) : NULL;
        if (end != NULL && end == b->data + b->used &&
            XML_ALIGN(cap) - XML_ALIGN(n->text_cap) <= b->cap - b->used) {
            /* The text is the newest thing in the newest block: it grows where it is. */
            b->used += XML_ALIGN(cap) - XML_ALIGN(n->text_cap);
        } else {
            char *p = doc_alloc(doc, cap);
            if (p == NULL) {
                parse_fail(doc);
                return;
            }
            if (n->text_len > 0)
                memcpy(p, n->text, n->text_len); /* the old copy is wiped with its block */
            n->text = p;
        }
        n->text_cap = cap;
    }
    memcpy(n->text + n->text_len, s, (size_t)len);
    n->text_len += (size_t)len;
    n->text[n->text_len] = '\0';
}

/* AWS never sends a DTD; refusing any keeps entity expansion off the table entirely. */
static void on_doctype(void *ud, const XML_Char *name, const XML_Char *sysid, const XML_Char *pubid,
                       int has_internal_subset) {
    (void)name;
    (void)sysid;
    (void)pubid;
    (void)has_internal_subset;
    parse_fail(ud);
}

/* The salt of expat's hash tables (against inputs made to collide), drawn once per process.
 * Left to itself expat draws one per parser, a getrandom(2) call for every answer read. */
static struct {
    pthread_once_t once;
    unsigned long salt;
} hash = {PTHREAD_ONCE_INIT, 0};

static void hash_salt_init(void) {
    /* getrandom(2) as expat itself does, not RAND_bytes: OpenSSL's generator would be set
     * up for this alone (3 M instructions), where no request of a plain run needs it. */
    unsigned long salt = 0;
    if (getrandom(&salt, sizeof(salt), GRND_NONBLOCK) == (ssize_t)sizeof(salt))
        hash.salt = salt; /* 0 (or no entropy yet): expat draws its own */
}

ol_xml *xml_parse(const char *buf, size_t len) {
    ol_xml *doc;
    enum XML_Status st;

    if (buf == NULL || len == 0 || len > XML_MAX_INPUT)
        return NULL;
    doc = calloc(1, sizeof(*doc));
    if (doc == NULL)
        return NULL;
    doc->parser = XML_ParserCreateNS(NULL, XML_NS_SEP);
    if (doc->parser == NULL)
        goto fail;
    pthread_once(&hash.once, hash_salt_init);
    if (hash.salt != 0)
        XML_SetHashSalt(doc->parser, hash.salt);
    XML_SetUserData(doc->parser, doc);
    XML_SetElementHandler(doc->parser, on_start, on_end);
    XML_SetCharacterDataHandler(doc->parser, on_text);
    XML_SetStartDoctypeDeclHandler(doc->parser, on_doctype);
    st = XML_Parse(doc->parser, buf, (int)len, XML_TRUE);
    if (st != XML_STATUS_OK || doc->failed || doc->root == NULL)
        goto fail;
    XML_ParserFree(doc->parser);
    doc->parser = NULL;
    doc->cur = NULL;
    return doc;

fail:
    xml_free(doc);
    return NULL;
}

void xml_free(ol_xml *doc) {
    if (doc == NULL)
        return;
    if (doc->parser != NULL)
        XML_ParserFree(doc->parser);
    blocks_free(doc->blocks);
    free(doc);
}

/* Length of the path segment starting at p (up to '/' or the end). */
static size_t seg_len(const char *p) {
    return strcspn(p, "/");
}

static int seg_eq(const char *name, const char *seg, size_t n) {
    return n != 0 && strncmp(name, seg, n) == 0 && name[n] == '\0';
}

/* Visit, in document order, every node under parent matching the path rest. Calls stop once
 * the want-th match (0-based) is found, storing it in *hit. */
static void walk(const xml_node *parent, const char *rest, size_t *seen, size_t want,
                 const xml_node **hit) {
    size_t n = seg_len(rest);
    const xml_node *c;

    for (c = parent->first_child; c != NULL && *hit == NULL; c = c->next) {
        if (!seg_eq(c->name, rest, n))
            continue;
        if (rest[n] == '\0') {
            if (*seen == want)
                *hit = c;
            (*seen)++;
        } else {
            walk(c, rest + n + 1, seen, want, hit);
        }
    }
}

/* The want-th match of path, or NULL; *count gets the number seen (all of them when
 * want is SIZE_MAX). */
static const xml_node *lookup(const ol_xml *doc, const char *path, size_t want, size_t *count) {
    const xml_node *hit = NULL;
    size_t n;

    *count = 0;
    if (doc == NULL || doc->root == NULL || path == NULL)
        return NULL;
    n = seg_len(path);
    if (!seg_eq(doc->root->name, path, n))
        return NULL;
    if (path[n] == '\0') {
        *count = 1;
        return want == 0 ? doc->root : NULL;
    }
    walk(doc->root, path + n + 1, count, want, &hit);
    return hit;
}

size_t xml_count(const ol_xml *doc, const char *path) {
    size_t count;

    lookup(doc, path, SIZE_MAX, &count);
    return count;
}

const char *xml_text(const ol_xml *doc, const char *path, size_t index) {
    size_t count;
    const xml_node *n;

    if (index == SIZE_MAX)
        return NULL;
    n = lookup(doc, path, index, &count);
    if (n == NULL)
        return NULL;
    return n->text != NULL ? n->text : "";
}

const char *xml_root_name(const ol_xml *doc) {
    return doc != NULL && doc->root != NULL ? doc->root->name : NULL;
}

/* ------------------------------------------------------------------------------------- */

/* Copy the first non-empty text among paths into *out (left NULL when none). */
static int take_text(const ol_xml *doc, const char *const *paths, char **out) {
    for (; *paths != NULL; paths++) {
        const char *t = xml_text(doc, *paths, 0);

        if (t != NULL && *t != '\0') {
            *out = strdup(t);
            return *out != NULL ? 0 : OL_ENOMEM;
        }
    }
    return 0;
}

/* Where each XML error style keeps its fields. S3: "Error Responses" in the S3 API
 * reference (<Error> at the root, <Region> in wrong-region errors). Query APIs (IAM, STS):
 * <ErrorResponse><Error>...</Error><RequestId>. EC2: "Error codes" in the EC2 API
 * reference, <Response><Errors><Error>...</Errors><RequestID> (capital ID). moto's
 * authentication and IAM-policy errors mix the two: <ErrorResponse><Errors><Error>. */
typedef struct error_style {
    const char *root;
    const char *code[3];
    const char *message[3];
    const char *request_id[3];
    const char *region[2];
} error_style;

static const error_style error_styles[] = {
    {"Error",
     {"Error/Code", NULL},
     {"Error/Message", NULL},
     {"Error/RequestId", NULL},
     {"Error/Region", NULL}},
    {"ErrorResponse",
     {"ErrorResponse/Error/Code", "ErrorResponse/Errors/Error/Code", NULL},
     {"ErrorResponse/Error/Message", "ErrorResponse/Errors/Error/Message", NULL},
     {"ErrorResponse/RequestId", "ErrorResponse/Error/RequestId", NULL},
     {NULL}},
    {"Response",
     {"Response/Errors/Error/Code", NULL},
     {"Response/Errors/Error/Message", NULL},
     {"Response/RequestID", "Response/RequestId", NULL},
     {NULL}},
};

static int decode_xml(const char *body, size_t len, xml_aws_error *e) {
    ol_xml *doc = xml_parse(body, len);
    const char *root;
    size_t i;
    int rc = OL_ENOENT;

    if (doc == NULL)
        return OL_ENOENT;
    root = xml_root_name(doc);
    for (i = 0; i < sizeof(error_styles) / sizeof(error_styles[0]); i++) {
        const error_style *s = &error_styles[i];

        if (strcmp(root, s->root) != 0)
            continue;
        if (take_text(doc, s->code, &e->code) != 0 ||
            take_text(doc, s->message, &e->message) != 0 ||
            take_text(doc, s->request_id, &e->request_id) != 0 ||
            take_text(doc, s->region, &e->region) != 0) {
            rc = OL_ENOMEM;
            break;
        }
        rc = e->code != NULL ? 0 : OL_ENOENT;
        break;
    }
    xml_free(doc);
    return rc;
}

/* JSON protocols name the error in "__type" (awsJson1_0/1_1, restJson1). Per the Smithy
 * protocol specs ("Operation error serialization"): keep only what precedes the first ':',
 * then only what follows the first '#'. */
static char *type_to_code(const char *type) {
    size_t n = strcspn(type, ":");
    const char *hash = memchr(type, '#', n);
    const char *start = hash != NULL ? hash + 1 : type;
    char *out;

    n -= (size_t)(start - type);
    out = malloc(n + 1);
    if (out == NULL)
        return NULL;
    memcpy(out, start, n);
    out[n] = '\0';
    return out;
}

static const char *json_str(json_t *root, const char *const *keys) {
    for (; *keys != NULL; keys++) {
        const char *s = json_string_value(json_object_get(root, *keys));

        if (s != NULL && *s != '\0')
            return s;
    }
    return NULL;
}

static int decode_json(const char *body, size_t len, xml_aws_error *e) {
    static const char *const type_keys[] = {"__type", "code", "Code", NULL};
    static const char *const msg_keys[] = {"message", "Message", "errorMessage", NULL};
    json_t *root = json_loadb(body, len, 0, NULL);
    const char *type;
    const char *msg;
    int rc = OL_ENOENT;

    if (root == NULL)
        return OL_ENOENT;
    if (!json_is_object(root))
        goto out;
    type = json_str(root, type_keys);
    msg = json_str(root, msg_keys);
    if (msg != NULL && (e->message = strdup(msg)) == NULL) {
        rc = OL_ENOMEM;
        goto out;
    }
    if (type != NULL) {
        e->code = type_to_code(type);
        if (e->code == NULL)
            rc = OL_ENOMEM;
        else
            rc = e->code[0] != '\0' ? 0 : OL_ENOENT;
    }
out:
    json_decref(root);
    return rc;
}

int xml_aws_error_decode(const char *body, size_t len, xml_aws_error *e) {
    size_t i = 0;
    int rc;

    if (e == NULL)
        return OL_EINVAL;
    memset(e, 0, sizeof(*e));
    if (body == NULL || len == 0)
        return OL_ENOENT;
    while (i < len && strchr(" \t\r\n", body[i]) != NULL && body[i] != '\0')
        i++;
    if (i < len && body[i] == '{')
        rc = decode_json(body, len, e);
    else
        rc = decode_xml(body, len, e);
    if (e->code != NULL && e->code[0] == '\0') {
        free(e->code);
        e->code = NULL;
    }
    if (rc == 0 && e->code == NULL)
        rc = OL_ENOENT;
    if (rc == OL_ENOMEM)
        xml_aws_error_free(e);
    return rc;
}

void xml_aws_error_free(xml_aws_error *e) {
    if (e == NULL)
        return;
    free(e->code);
    free(e->message);
    free(e->request_id);
    free(e->region);
    memset(e, 0, sizeof(*e));
}
