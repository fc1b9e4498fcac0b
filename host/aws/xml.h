/* xml: AWS responses parsed with expat into a small element tree, path lookups over it,
 * and AWS error decoding for S3 (<Error>), Query APIs (<ErrorResponse><Error>, <Errors>
 * <Error>) and JSON APIs (__type, message). ol_xml is the SDK's opaque document type. */
#ifndef OL_AWS_XML_H
#define OL_AWS_XML_H

#include <stddef.h>

#include "opsline/opsline.h"

/* Parse; NULL on malformed input, allocation failure, or input beyond the safety limits
 * (16 MiB, nesting deeper than 64 elements, 200000 elements, any DOCTYPE). buf is borrowed
 * for the call and need not be NUL-terminated. */
ol_xml *xml_parse(const char *buf, size_t len);
/* NULL is a no-op. */
void xml_free(ol_xml *doc);
/* Path from the root element, '/'-separated local names (namespace prefixes ignored); the
 * first segment names the root ("ErrorResponse/Error/Code"). count returns how many elements
 * match; text returns the index-th match in document order (0-based): its character data,
 * "" for an empty element, NULL when there is no such match. Borrowed until xml_free. */
size_t xml_count(const ol_xml *doc, const char *path);
const char *xml_text(const ol_xml *doc, const char *path, size_t index);
/* Name of the root element, or NULL. */
const char *xml_root_name(const ol_xml *doc);

typedef struct xml_aws_error {
    char *code;
    char *message;
    char *request_id;
    char *region; /* S3 <Region> in wrong-region errors, else NULL */
} xml_aws_error;

/* Decode an AWS error body (XML or JSON) into e (malloc'd strings, missing ones NULL).
 * Returns 0 when a code was found, OL_ENOENT otherwise (fields found, e.g. a message, are
 * still set), OL_ENOMEM on allocation failure (all fields NULL). e is always initialised,
 * so xml_aws_error_free(e) is safe after any return. JSON __type values like
 * "com.amazonaws.secretsmanager#ResourceNotFoundException" are reduced to the part after
 * '#' (and before ':', if any). */
int xml_aws_error_decode(const char *body, size_t len, xml_aws_error *e);
/* Frees the strings and resets e to all NULL. */
void xml_aws_error_free(xml_aws_error *e);

#endif
