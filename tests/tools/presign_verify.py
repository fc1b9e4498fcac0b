#!/usr/bin/env python3
"""Check a SigV4 presigned URL independently, with botocore as the reference signer.

moto 5.2.1 cannot check presigned URLs while it enforces auth: a request without an
Authorization header makes its auth code raise KeyError and answer 500 (see
README.md). So integration tests verify `opsline presign` output here instead:
botocore re-signs the same method, URL and X-Amz-Date/-Expires/-Credential, and the
signatures must be equal. botocore signs the canonical (sorted) query, so the order
of the parameters in the URL does not matter.

CLI:    presign_verify.py URL [--method GET]   (key and secret from AWS_ACCESS_KEY_ID /
        AWS_SECRET_ACCESS_KEY; exit 0 valid, 1 invalid; never prints the secret)
Python: presign_verify.verify(url, key_id, secret, method="GET") -> (ok, reason)
"""

import argparse
import datetime
import os
import sys
import unittest.mock
import urllib.parse

from botocore.auth import S3SigV4QueryAuth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

AUTH_PARAMS = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
    "X-Amz-Security-Token",
)
MAX_EXPIRES = 7 * 24 * 3600  # SigV4 query auth: at most 7 days


def split_url(url):
    parts = urllib.parse.urlsplit(url)
    pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    auth = {k: v for k, v in pairs if k in AUTH_PARAMS}
    rest = [(k, v) for k, v in pairs if k not in AUTH_PARAMS]
    query = urllib.parse.urlencode(rest, quote_via=urllib.parse.quote)
    base = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
    return base, auth


def expected_signature(base_url, auth, key_id, secret, method):
    _, date, region, service, _ = auth["X-Amz-Credential"].split("/")
    signed_at = datetime.datetime.strptime(auth["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
    creds = Credentials(key_id, secret, auth.get("X-Amz-Security-Token"))
    signer_cls = S3SigV4QueryAuth if service == "s3" else SigV4QueryAuth
    signer = signer_cls(creds, service, region, expires=int(auth["X-Amz-Expires"]))
    request = AWSRequest(method=method, url=base_url)
    with unittest.mock.patch("botocore.auth.get_current_datetime", return_value=signed_at):
        signer.add_auth(request)
    _, resigned = split_url(request.url)
    return resigned["X-Amz-Signature"], resigned["X-Amz-SignedHeaders"]


def verify(url, key_id, secret, method="GET", now=None):
    """(True, "ok") when url is a valid, unexpired presigned URL for key_id/secret."""
    base, auth = split_url(url)
    missing = [k for k in AUTH_PARAMS[:6] if k not in auth]
    if missing:
        return False, f"missing query parameters: {', '.join(missing)}"
    if auth["X-Amz-Algorithm"] != "AWS4-HMAC-SHA256":
        return False, f"algorithm {auth['X-Amz-Algorithm']!r} is not AWS4-HMAC-SHA256"
    scope = auth["X-Amz-Credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request":
        return False, f"malformed credential scope {auth['X-Amz-Credential']!r}"
    if scope[0] != key_id:
        return False, f"signed with key {scope[0]}, expected {key_id}"
    if not auth["X-Amz-Date"].startswith(scope[1]):
        return False, "X-Amz-Date and the credential scope date differ"
    expires = int(auth["X-Amz-Expires"])
    if not 1 <= expires <= MAX_EXPIRES:
        return False, f"X-Amz-Expires {expires} is outside 1..{MAX_EXPIRES}"
    signed_at = datetime.datetime.strptime(auth["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
    now = now or datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    if now > signed_at + datetime.timedelta(seconds=expires):
        return False, "the URL has expired"
    want, want_headers = expected_signature(base, auth, key_id, secret, method)
    if auth["X-Amz-SignedHeaders"] != want_headers:
        return False, f"signed headers {auth['X-Amz-SignedHeaders']!r}, expected {want_headers!r}"
    if auth["X-Amz-Signature"] != want:
        return False, "signature does not match"
    return True, "ok"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("url")
    ap.add_argument("--method", default="GET")
    args = ap.parse_args(argv)
    key_id = os.environ.get("AWS_ACCESS_KEY_ID")
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not key_id or not secret:
        print("presign_verify: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set",
              file=sys.stderr)
        return 2
    ok, reason = verify(args.url, key_id, secret, args.method.upper())
    print(f"presign_verify: {reason}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
