"""Local stand-ins for the credential services the emulator lacks, following their documented
wire formats, for integration tests of opsline's credential sources. Each runs an HTTP server
on a loopback port in a thread of the test process and records what it was asked and what it
handed out (so a test can check that no handed-out secret leaked into opsline's output).

- SsoPortal: the IAM Identity Center portal's GetRoleCredentials,
  GET /federation/credentials?role_name=R&account_id=A with header x-amz-sso_bearer_token;
  answers {"roleCredentials": {"accessKeyId", "secretAccessKey", "sessionToken",
  "expiration": milliseconds since the epoch}}, or 401 for an unknown token.
- ContainerEndpoint: the ECS/EKS container credentials endpoint, GET URI with the
  Authorization header of AWS_CONTAINER_AUTHORIZATION_TOKEN(_FILE); answers
  {"AccessKeyId", "SecretAccessKey", "Token", "Expiration", "RoleArn"}.
- Imds: EC2 instance metadata. IMDSv2: PUT /latest/api/token with
  X-aws-ec2-metadata-token-ttl-seconds gives a token; GET
  /latest/meta-data/iam/security-credentials/ (the role name) and .../ROLE (a JSON document
  with Code, AccessKeyId, SecretAccessKey, Token, Expiration) need X-aws-ec2-metadata-token.
  With v1_only=True it answers like an IMDSv1-only endpoint: the token PUT is refused (405)
  and the GETs answer without a token.
- StsFront: a reverse proxy to moto for STS. moto with authentication on cannot take the
  unsigned AssumeRoleWithWebIdentity that AWS accepts (and the SDKs send); the front checks
  the web identity token itself (it plays the OIDC provider) and signs that one call with the
  fixture's key before passing it on. Everything else is forwarded untouched.

The credentials handed out come from a Minter: temporary credentials of a role from moto's
STS (assume_role), or, with rotate=True, a fresh IAM access key of one of a few users per
hand-out, deleted `grace` seconds after the Expiration announced with it, so that a client
that does not refresh in time is refused by moto.
"""
import http.client
import http.server
import json
import threading
import time
import urllib.parse
import uuid
from datetime import datetime, timezone

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def iso(t):
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Minter:
    """Hands out credentials moto accepts. role_arn: assume that role with (key, secret) for
    each hand-out. rotate_users: IAM users (existing, with their policies) to cycle through,
    one new access key per hand-out, deleted grace seconds after it expires."""

    def __init__(self, endpoint, key, secret, region="eu-north-1", role_arn=None,
                 rotate_users=None, lifetime=3600, grace=2.0):
        self.kw = dict(endpoint_url=endpoint, region_name=region, aws_access_key_id=key,
                       aws_secret_access_key=secret)
        self.role_arn = role_arn
        self.rotate_users = list(rotate_users or [])
        self.lifetime = lifetime
        self.grace = grace
        self.handed = []  # (time, access key id, secret, token)
        self.deleted = []  # (time, access key id)
        self.lock = threading.Lock()
        self.timers = []

    def mint(self):
        with self.lock:
            now = time.time()
            if self.rotate_users:
                user = self.rotate_users[len(self.handed) % len(self.rotate_users)]
                iam = boto3.client("iam", **self.kw)
                k = iam.create_access_key(UserName=user)["AccessKey"]
                ak, sk, token = k["AccessKeyId"], k["SecretAccessKey"], None
                t = threading.Timer(self.lifetime + self.grace, self._delete, (user, ak))
                t.daemon = True
                t.start()
                self.timers.append(t)
            else:
                c = boto3.client("sts", **self.kw).assume_role(
                    RoleArn=self.role_arn, RoleSessionName=f"standin-{len(self.handed)}")
                c = c["Credentials"]
                ak, sk, token = c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"]
            self.handed.append((now, ak, sk, token))
            return ak, sk, token, now + self.lifetime

    def _delete(self, user, ak):
        boto3.client("iam", **self.kw).delete_access_key(UserName=user, AccessKeyId=ak)
        with self.lock:
            self.deleted.append((time.time(), ak))

    def secrets(self):
        """Every secret and token handed out, for leak checks."""
        with self.lock:
            return [s for h in self.handed for s in (h[2], h[3]) if s]

    def stop(self):
        for t in self.timers:
            t.cancel()


class _Server:
    """A ThreadingHTTPServer on 127.0.0.1 with a handler class built by the subclass."""

    def __init__(self):
        self.requests = []  # (method, path, headers dict)
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _any(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                outer.requests.append((self.command, self.path, dict(self.headers)))
                status, ctype, out = outer.answer(self.command, self.path, self.headers, body)
                if isinstance(out, (dict, list)):
                    out = json.dumps(out)
                if isinstance(out, str):
                    out = out.encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_PUT = do_POST = _any

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class SsoPortal(_Server):
    def __init__(self, minter, token, account_id, role_name):
        self.minter, self.token = minter, token
        self.account_id, self.role_name = account_id, role_name
        super().__init__()

    def answer(self, method, path, headers, body):
        u = urllib.parse.urlsplit(path)
        q = urllib.parse.parse_qs(u.query)
        if method != "GET" or u.path != "/federation/credentials":
            return 404, "application/json", {"message": "not found"}
        if headers.get("x-amz-sso_bearer_token") != self.token:
            return 401, "application/json", {"message": "Session token not found or invalid"}
        if q.get("role_name") != [self.role_name] or q.get("account_id") != [self.account_id]:
            return 403, "application/json", {"message": "No access"}
        ak, sk, token, exp = self.minter.mint()
        rc = {"accessKeyId": ak, "secretAccessKey": sk, "expiration": int(exp * 1000)}
        if token:
            rc["sessionToken"] = token
        return 200, "application/json", {"roleCredentials": rc}


class ContainerEndpoint(_Server):
    def __init__(self, minter, auth_token=None, path="/v2/credentials/task"):
        self.minter, self.auth_token, self.path = minter, auth_token, path
        super().__init__()
        self.full_uri = self.url + path

    def answer(self, method, path, headers, body):
        if method != "GET" or path != self.path:
            return 404, "text/plain", "not found"
        if self.auth_token is not None and headers.get("Authorization") != self.auth_token:
            return 401, "application/json", {"code": "AccessDenied"}
        ak, sk, token, exp = self.minter.mint()
        doc = {"AccessKeyId": ak, "SecretAccessKey": sk, "Expiration": iso(exp),
               "RoleArn": "arn:aws:iam::123456789012:role/task"}
        if token:
            doc["Token"] = token
        return 200, "application/json", doc


class Imds(_Server):
    ROLE = "instance-role"

    def __init__(self, minter, v1_only=False):
        self.minter, self.v1_only = minter, v1_only
        self.tokens = set()
        super().__init__()

    def answer(self, method, path, headers, body):
        if path == "/latest/api/token":
            if self.v1_only or method != "PUT":
                return 405, "text/plain", "Method Not Allowed"
            if not headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                return 400, "text/plain", "Missing TTL"
            tok = uuid.uuid4().hex
            self.tokens.add(tok)
            return 200, "text/plain", tok
        if method != "GET":
            return 405, "text/plain", "Method Not Allowed"
        if not self.v1_only and headers.get("X-aws-ec2-metadata-token") not in self.tokens:
            return 401, "text/plain", "Unauthorized"
        base = "/latest/meta-data/iam/security-credentials/"
        if path == base:
            return 200, "text/plain", self.ROLE
        if path == base + self.ROLE:
            ak, sk, token, exp = self.minter.mint()
            doc = {"Code": "Success", "LastUpdated": iso(time.time()), "Type": "AWS-HMAC",
                   "AccessKeyId": ak, "SecretAccessKey": sk, "Expiration": iso(exp)}
            if token:
                doc["Token"] = token
            return 200, "text/plain", doc
        return 404, "text/plain", "Not Found"


class StsFront(_Server):
    def __init__(self, upstream, key, secret, web_identity_token, region="eu-north-1"):
        self.up = urllib.parse.urlsplit(upstream)
        self.creds = Credentials(key, secret)
        self.web_identity_token = web_identity_token
        self.region = region
        self.web_identity_calls = 0
        super().__init__()

    def answer(self, method, path, headers, body):
        fwd = {k: v for k, v in headers.items() if k.lower() not in ("connection",)}
        form = urllib.parse.parse_qs(body.decode())
        if form.get("Action") == ["AssumeRoleWithWebIdentity"]:
            if "Authorization" in headers:
                return 400, "text/xml", "<ErrorResponse><Error><Code>Signed</Code><Message>" \
                    "AssumeRoleWithWebIdentity is sent unsigned</Message></Error></ErrorResponse>"
            if form.get("WebIdentityToken") != [self.web_identity_token]:
                return 400, "text/xml", (
                    "<ErrorResponse><Error><Code>InvalidIdentityToken</Code><Message>The web "
                    "identity token is not valid</Message></Error></ErrorResponse>")
            self.web_identity_calls += 1
            url = f"{self.up.scheme}://{self.up.netloc}{path}"
            req = AWSRequest(method=method, url=url, data=body,
                             headers={"Content-Type": headers.get("Content-Type")})
            SigV4Auth(self.creds, "sts", self.region).add_auth(req)
            fwd = dict(req.headers.items())
        conn = http.client.HTTPConnection(self.up.hostname, self.up.port, timeout=30)
        conn.request(method, path, body=body, headers=fwd)
        r = conn.getresponse()
        out = r.read()
        ctype = r.getheader("Content-Type", "text/xml")
        conn.close()
        return r.status, ctype, out
