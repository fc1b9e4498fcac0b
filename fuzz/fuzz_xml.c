/* fuzz_xml: AWS answers (host/aws/xml.c). Every response body opsline reads comes from the
 * network, and through faultproxy or a hostile endpoint (AWS_ENDPOINT_URL) it may be
 * anything: the tree parser with its lookups, and the error decoder (XML and JSON bodies).
 * Checked beyond "no crash": xml_count and xml_text agree on how many matches a path has. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "xml.h"

/* Paths opsline looks up (IAM, S3, STS answers and errors), plus generic ones. */
static const char *const paths[] = {
    "ListAccessKeysResponse/ListAccessKeysResult/AccessKeyMetadata/member/AccessKeyId",
    "ListAccessKeysResponse/ListAccessKeysResult/AccessKeyMetadata/member",
    "ListAccessKeysResponse/ListAccessKeysResult/IsTruncated",
    "GetUserResponse/GetUserResult/User/Arn",
    "GetCallerIdentityResponse/GetCallerIdentityResult/Account",
    "ListAllMyBucketsResult/Buckets/Bucket/Name",
    "ErrorResponse/Error/Code",
    "Response/Errors/Error/Code",
    "Error/Code",
    "Error/Region",
    "a",
    "a/b",
    "a/b/c",
    "",
    "/",
    "a//b",
};

static void check_path(const ol_xml *doc, const char *path) {
    size_t n = xml_count(doc, path);
    for (size_t i = 0; i < n && i < 64; i++)
        if (xml_text(doc, path, i) == NULL)
            abort(); /* counted a match that text cannot return */
    if (n < 64 && xml_text(doc, path, n) != NULL)
        abort(); /* returned a match beyond the count */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ol_xml *doc = xml_parse((const char *)data, size);
    if (doc != NULL) {
        const char *root = xml_root_name(doc);
        if (root == NULL)
            abort(); /* a parsed document has a root element */
        for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
            check_path(doc, paths[i]);
        check_path(doc, root);
        xml_free(doc);
    }
    xml_aws_error e;
    int rc = xml_aws_error_decode((const char *)data, size, &e);
    if (rc == 0 && e.code == NULL)
        abort(); /* "0 when a code was found" */
    xml_aws_error_free(&e);
    if (e.code || e.message || e.request_id || e.region)
        abort();
    return 0;
}
