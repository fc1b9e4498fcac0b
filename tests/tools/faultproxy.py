#!/usr/bin/env python3
"""A fault-injecting HTTP/1.1 reverse proxy for integration tests (asyncio, stdlib only).

It sits between a client (opsline, boto3, the aws CLI) and moto and, per its
configuration, delays requests, answers throttling errors (S3 503 SlowDown, Query
400 Throttling), 500 InternalError, resets connections or truncates bodies. Requests
are forwarded with the client's own Host header, because SigV4 signs it and moto
recomputes the signature. Client connections are kept alive as HTTP/1.1 says.

Configuration is a JSON object, set from flags at start and changed at run time
through a control endpoint on the same port, so one proxy serves several phases:

    GET  /__proxy/config        the current configuration
    POST /__proxy/config        replace it ({"reset_stats": true} also clears stats)
    GET  /__proxy/stats         counters: requests, forwarded, faulted per kind, ...
    GET  /__proxy/log           every request: arrival time (t) and the time its answer was
                                sent (t_end, monotonic seconds), service, method, path,
                                query, action, parameters, security token present, fault
                                (and what a truncate sent)
    POST /__proxy/advance       {"seconds": S}: move the manual clock (manual_clock: true)
    POST /__proxy/reset         clear stats, the log and rule counters

    {"latency_ms": 50, "seed": 1,
     "rules": [{"fault": "slowdown", "probability": 0.3, "service": "s3"},
               {"fault": "throttling", "first_n": 2},
               {"fault": "slowdown", "rate": 5, "burst": 5}]}

A rule fires on a request that matches its filters (service = the SigV4 credential
scope's service, method, path_prefix) when its trigger says so: probability (seeded
random), first_n (the first N matching requests since the rule was configured), or
rate (token bucket: more than `rate` requests per second, after a burst). The
filter body_contains matches a substring of the request body ("Action=CreateAccessKey"). The first
rule that fires decides the fault. Faults: slowdown, throttling, internal_error,
reset, truncate, wrong_region (S3's 400 AuthorizationHeaderMalformed for a request signed
for another region than the rule's bucket_region), and none.

CLI: faultproxy.py --upstream http://127.0.0.1:PORT [--port 0] [--port-file F]
                   [--latency-ms N] [--seed N] [--fault KIND:TRIGGER[,FILTER...]]...
                   [--throttle SERVICE=RATE]... [--s3-slowdown P]
     e.g. --fault slowdown:probability=0.3,service=s3 --fault throttling:first_n=2
     --throttle iam=10: a service quota of 10 requests/s (token bucket, burst 10); above it
     IAM/STS answer 400 Throttling "Rate exceeded", S3 503 SlowDown, as AWS does.
     --s3-slowdown 0.2: 20% of S3 requests answered 503 SlowDown, whatever the rate.
"""

import argparse
import asyncio
import http.client
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid

FAULTS = ("none", "slowdown", "throttling", "internal_error", "reset", "truncate", "wrong_region")
CONTROL_PREFIX = "/__proxy/"
MAX_HEADER_BYTES = 64 * 1024
MAX_LOG = 100000
# RFC 9110 section 7.6.1: connection-specific fields are not forwarded.
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}


class ConfigError(ValueError):
    pass


class Rule:
    """One fault rule: filters, a trigger, and the trigger's own state."""

    KEYS = {"fault", "probability", "first_n", "rate", "burst", "service", "method", "path_prefix",
            "body_contains", "bucket_region", "always_wrong"}

    def __init__(self, spec):
        unknown = set(spec) - self.KEYS
        if unknown:
            raise ConfigError(f"unknown rule keys: {sorted(unknown)}")
        self.spec = dict(spec)
        self.fault = spec.get("fault")
        if self.fault not in FAULTS:
            raise ConfigError(f"fault must be one of {FAULTS}, not {self.fault!r}")
        triggers = [k for k in ("probability", "first_n", "rate") if k in spec]
        if len(triggers) > 1:
            raise ConfigError(f"a rule has one trigger, not {triggers}")
        self.trigger = triggers[0] if triggers else "always"
        self.probability = float(spec.get("probability", 1.0))
        self.first_n = int(spec.get("first_n", 0))
        self.rate = float(spec.get("rate", 0))
        if self.trigger == "rate" and self.rate <= 0:
            raise ConfigError("rate must be > 0 requests per second")
        self.burst = float(spec.get("burst", max(self.rate, 1.0)))
        self.tokens = self.burst
        self.last_refill = None  # the clock's time at the first matching request
        self.seen = 0

    def matches(self, req):
        if "service" in self.spec and req.service != self.spec["service"]:
            return False
        if "method" in self.spec and req.method != self.spec["method"].upper():
            return False
        if "path_prefix" in self.spec and not req.path.startswith(self.spec["path_prefix"]):
            return False
        # e.g. "Action=CreateAccessKey": picks one Query API action out of many on "/".
        if "body_contains" in self.spec and self.spec["body_contains"].encode() not in req.body:
            return False
        # wrong_region plays S3 for a bucket that lives in bucket_region: only requests
        # signed for another region are refused (unless always_wrong, to test that a
        # client follows a region hint once and not forever).
        if self.fault == "wrong_region" and not self.spec.get("always_wrong"):
            if req.region == self.spec.get("bucket_region"):
                return False
        return True

    def fires(self, rng, now):
        self.seen += 1
        if self.trigger == "probability":
            return rng.random() < self.probability
        if self.trigger == "first_n":
            return self.seen <= self.first_n
        if self.trigger == "rate":
            if self.last_refill is None:
                self.last_refill = now
            self.tokens = min(self.burst, self.tokens + (now - self.last_refill) * self.rate)
            self.last_refill = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return False
            return True
        return True


class Config:
    KEYS = {"latency_ms", "seed", "rules", "reset_stats", "manual_clock"}

    def __init__(self, spec=None):
        spec = dict(spec or {})
        unknown = set(spec) - self.KEYS
        if unknown:
            raise ConfigError(f"unknown config keys: {sorted(unknown)}")
        self.latency_ms = float(spec.get("latency_ms", 0))
        if self.latency_ms < 0:
            raise ConfigError("latency_ms must be >= 0")
        self.seed = spec.get("seed", 0)
        if not isinstance(spec.get("rules", []), list):
            raise ConfigError("rules must be a list")
        self.rules = [Rule(r) for r in spec.get("rules", [])]
        self.rng = random.Random(self.seed)
        # manual_clock: rate triggers see a clock that only POST /__proxy/advance moves, so a
        # test of the token bucket does not depend on how fast this machine sends requests.
        self.manual_clock = bool(spec.get("manual_clock", False))
        self.manual_now = 0.0

    def now(self):
        return self.manual_now if self.manual_clock else time.monotonic()

    def to_json(self):
        return {
            "latency_ms": self.latency_ms,
            "seed": self.seed,
            "rules": [r.spec for r in self.rules],
            "manual_clock": self.manual_clock,
        }

    def choose_fault(self, req):
        for rule in self.rules:
            if rule.matches(req) and rule.fires(self.rng, self.now()):
                return rule.fault
        return "none"


def new_stats():
    return {
        "connections": 0,
        "requests": 0,
        "forwarded": 0,
        "control": 0,
        "upstream_errors": 0,
        "faulted_total": 0,
        "faulted": {f: 0 for f in FAULTS if f != "none"},
        "by_service": {},
    }


class Headers:
    """Header fields in arrival order, looked up case-insensitively (the first field of a
    name wins), as http.client's HTTPMessage offers them, without its email parser's cost
    on every request."""

    def __init__(self, fields):
        self.fields = fields  # [(name, value)]
        self.by_name = {}
        for name, value in fields:
            self.by_name.setdefault(name.lower(), value)

    @classmethod
    def parse(cls, block):
        """Fields from the lines after a request or status line (bytes, CRLF separated,
        ending with an empty line); obsolete line folding joins a line to the one before."""
        fields = []
        for raw in block.decode("latin-1").split("\r\n"):
            if not raw:
                continue
            if raw[0] in " \t" and fields:
                name, value = fields[-1]
                fields[-1] = (name, value + " " + raw.strip())
                continue
            name, sep, value = raw.partition(":")
            if not sep or not name or name != name.strip():
                raise ValueError(f"bad header line {raw[:80]!r}")
            fields.append((name, value.strip()))
        return cls(fields)

    def get(self, name, default=None):
        return self.by_name.get(name.lower(), default)

    def items(self):
        return list(self.fields)


class Request:
    def __init__(self, method, target, version, headers, body):
        self.method = method
        self.target = target
        self.path = urllib.parse.urlsplit(target).path or "/"
        self.version = version
        self.headers = headers  # Headers: case-insensitive, ordered
        self.body = body
        self.service = self.scope_service()
        self.region = self.scope_part(2)
        self._params = None

    def scope_service(self):
        return self.scope_part(3)

    def scope_part(self, index):
        """The service of the SigV4 credential scope, from the Authorization header
        or a presigned URL's X-Amz-Credential (AKID/date/region/service/aws4_request)."""
        cred = ""
        auth = self.headers.get("Authorization", "")
        if "Credential=" in auth:
            cred = auth.split("Credential=", 1)[1].split(",", 1)[0]
        else:
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.target).query)
            cred = query.get("X-Amz-Credential", [""])[0]
        parts = cred.strip().split("/")
        return parts[index] if len(parts) >= 5 else "unknown"

    def params(self):
        """The Query API parameters (IAM, STS: the form body), each value cut to 200
        characters; {} for other requests."""
        if self._params is None:
            if b"Action=" not in self.body:
                self._params = {}
            else:
                query = urllib.parse.parse_qs(self.body.decode("latin-1"))
                self._params = {k: v[0][:200] for k, v in query.items()}
        return self._params

    def action(self):
        """The Query API action (Action=CreateUser in the form body), or None."""
        return self.params().get("Action")

    def has_security_token(self):
        """Temporary credentials: X-Amz-Security-Token as a header or presigned parameter."""
        if self.headers.get("X-Amz-Security-Token"):
            return True
        return "X-Amz-Security-Token=" in urllib.parse.urlsplit(self.target).query

    def keep_alive(self):
        tokens = {t.strip().lower() for t in self.headers.get("Connection", "").split(",")}
        if self.version == "HTTP/1.0":
            return "keep-alive" in tokens
        return "close" not in tokens


class Response:
    def __init__(self, status, reason, headers, body, declared_length=None):
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value), no framing headers
        self.body = body
        # HEAD answers declare the length of a body they do not carry.
        self.declared_length = len(body) if declared_length is None else declared_length


def error_response(fault, service):
    """Error bodies shaped as the service would send them. S3: REST-XML <Error>
    (S3 API Reference, "Error responses"); IAM/STS: Query <ErrorResponse>."""
    request_id = uuid.uuid4().hex
    status, code, message = {
        "slowdown": (503, "SlowDown", "Please reduce your request rate."),
        "throttling": (400, "Throttling", "Rate exceeded"),
        "internal_error": (500, "InternalError", "We encountered an internal error."),
    }[fault]
    if service == "s3" or fault == "slowdown":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message}</Message>"
            f"<RequestId>{request_id}</RequestId><HostId>faultproxy</HostId></Error>"
        )
        headers = [("x-amz-request-id", request_id)]
    else:
        kind = "Receiver" if status >= 500 else "Sender"
        body = (
            "<ErrorResponse><Error>"
            f"<Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message>"
            f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        )
        headers = [("x-amzn-RequestId", request_id)]
    headers.append(("Content-Type", "text/xml"))
    return Response(status, http.client.responses.get(status, ""), headers, body.encode())


def wrong_region_response(req, bucket_region):
    """S3's answer to a request signed for the wrong region: 400
    AuthorizationHeaderMalformed naming the right one in <Region> and in
    x-amz-bucket-region (S3 API Reference, "Error responses"; HEAD has no body)."""
    request_id = uuid.uuid4().hex
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        "<Error><Code>AuthorizationHeaderMalformed</Code>"
        f"<Message>The authorization header is malformed; the region '{req.region}' is wrong; "
        f"expecting '{bucket_region}'</Message><Region>{bucket_region}</Region>"
        f"<RequestId>{request_id}</RequestId></Error>"
    ).encode()
    headers = [("x-amz-request-id", request_id), ("x-amz-bucket-region", bucket_region),
               ("Content-Type", "application/xml")]
    if req.method == "HEAD":
        return Response(400, "Bad Request", headers, b"", declared_length=len(body))
    return Response(400, "Bad Request", headers, body)


def json_response(status, obj):
    body = (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode()
    reason = http.client.responses.get(status, "")
    return Response(status, reason, [("Content-Type", "application/json")], body)


class UpstreamClosed(ConnectionError):
    """The upstream ended the connection before answering."""


class Upstream:
    """One keep-alive connection to the upstream per client connection, on the proxy's own
    event loop (no thread per exchange: the proxy's CPU is part of every benchmark's
    machine budget)."""

    def __init__(self, host, port, timeout):
        self.host, self.port, self.timeout = host, port, timeout
        self.reader = self.writer = None

    def close(self):
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None

    async def exchange(self, req):
        for attempt in (1, 2):  # a kept-alive upstream connection may have gone stale
            reused = self.writer is not None
            if not reused:
                self.reader, self.writer = await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.port, limit=MAX_HEADER_BYTES),
                    self.timeout,
                )
            try:
                return await asyncio.wait_for(self.exchange_once(req), self.timeout)
            except (UpstreamClosed, BrokenPipeError, ConnectionResetError):
                self.close()
                if attempt == 2 or not reused:
                    raise
            except BaseException:
                self.close()
                raise
        raise AssertionError("unreachable")

    async def exchange_once(self, req):
        lines = [f"{req.method} {req.target} HTTP/1.1"]
        for name, value in req.headers.items():
            if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                lines.append(f"{name}: {value}")
        if req.body or req.method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(req.body)}")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + req.body)
        await self.writer.drain()
        while True:
            try:
                head = await self.reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as exc:
                raise UpstreamClosed("upstream closed the connection without an answer") from exc
            status_line, _, rest = head.partition(b"\r\n")
            version, _, tail = status_line.decode("latin-1").partition(" ")
            code, _, reason = tail.partition(" ")
            if not version.startswith("HTTP/") or not code.isdigit():
                raise http.client.BadStatusLine(status_line[:80].decode("latin-1"))
            status = int(code)
            headers = Headers.parse(rest)
            if not 100 <= status < 200:  # interim answers (100 Continue) are skipped
                break
        length = headers.get("Content-Length")
        no_body = req.method == "HEAD" or status in (204, 304)
        if no_body:
            body = b""
        elif "chunked" in headers.get("Transfer-Encoding", "").lower():
            body = await read_chunked(self.reader)
        elif length is not None:
            body = await self.reader.readexactly(int(length))
        else:
            body = await self.reader.read()  # delimited by the end of the connection
        declared = int(length or 0) if no_body else None
        tokens = {t.strip().lower() for t in headers.get("Connection", "").split(",")}
        will_close = (
            "close" in tokens
            or (version == "HTTP/1.0" and "keep-alive" not in tokens)
            or (not no_body and length is None and "chunked" not in
                headers.get("Transfer-Encoding", "").lower())
        )
        fields = [
            (k, v)
            for k, v in headers.items()
            if k.lower() not in HOP_BY_HOP and k.lower() != "content-length"
        ]
        if will_close:
            self.close()
        return Response(status, reason, fields, body, declared)


class Proxy:
    def __init__(self, upstream, config=None, host="127.0.0.1", port=0, timeout=30.0):
        parts = urllib.parse.urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname:
            raise ConfigError(f"upstream must be http://HOST:PORT, not {upstream!r}")
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port or 80
        self.host, self.port, self.timeout = host, port, timeout
        self.config = config or Config()
        self.stats = new_stats()
        self.log = []  # one entry per request, for GET /__proxy/log
        self.server = None
        self.writers = set()

    async def start(self):
        self.server = await asyncio.start_server(
            self.handle_client, self.host, self.port, limit=MAX_HEADER_BYTES
        )
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    async def close(self):
        self.server.close()
        for w in list(self.writers):
            w.close()
        await self.server.wait_closed()

    async def handle_client(self, reader, writer):
        self.stats["connections"] += 1
        self.writers.add(writer)
        upstream = Upstream(self.upstream_host, self.upstream_port, self.timeout)
        try:
            while True:
                req = await read_request(reader, writer)
                if req is None:
                    break
                if not await self.serve(req, writer, upstream):
                    break
        except BadRequest as exc:
            await answer_bad_request(writer, str(exc))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.writers.discard(writer)
            upstream.close()
            if not writer.is_closing():
                writer.close()

    async def serve(self, req, writer, upstream):
        """Answer one request; False when the connection must end."""
        if req.path.startswith(CONTROL_PREFIX):
            self.stats["control"] += 1
            await send_response(writer, self.control(req), req.keep_alive())
            return req.keep_alive()
        self.stats["requests"] += 1
        by_service = self.stats["by_service"]
        by_service[req.service] = by_service.get(req.service, 0) + 1
        fault = self.config.choose_fault(req)
        entry = None
        if len(self.log) < MAX_LOG:
            entry = {"t": time.monotonic(), "service": req.service, "method": req.method,
                     "path": req.path, "query": urllib.parse.urlsplit(req.target).query,
                     "action": req.action(), "params": req.params(),
                     "security_token": req.has_security_token(), "fault": fault}
            self.log.append(entry)
        answered = self.answered(entry)
        if self.config.latency_ms > 0:
            await asyncio.sleep(self.config.latency_ms / 1000.0)
        if fault != "none":
            self.stats["faulted"][fault] += 1
            self.stats["faulted_total"] += 1
        if fault == "reset":
            reset_connection(writer)
            answered()
            return False
        if fault in ("slowdown", "throttling", "internal_error"):
            await send_response(writer, error_response(fault, req.service), req.keep_alive())
            answered()
            return req.keep_alive()
        if fault == "wrong_region":
            rule = next(r for r in self.config.rules if r.fault == "wrong_region")
            resp = wrong_region_response(req, rule.spec.get("bucket_region", "eu-west-1"))
            await send_response(writer, resp, req.keep_alive())
            answered()
            return req.keep_alive()
        try:
            resp = await upstream.exchange(req)
        except (OSError, http.client.HTTPException, ValueError, asyncio.TimeoutError,
                asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            self.stats["upstream_errors"] += 1
            resp = json_response(502, {"error": f"upstream: {type(exc).__name__}: {exc}"})
        else:
            self.stats["forwarded"] += 1
        if fault == "truncate":
            if entry is not None:  # what the client got: tests look for secrets in it
                entry["truncated_body"] = resp.body[: len(resp.body) // 2].decode("latin-1")
            await send_response(writer, resp, req.keep_alive(), truncate=True)
            answered()
            return False
        await send_response(writer, resp, req.keep_alive())
        answered()
        return req.keep_alive()

    @staticmethod
    def answered(entry):
        """A function that stamps entry (may be None) with the time its answer was sent."""
        def stamp():
            if entry is not None:
                entry["t_end"] = time.monotonic()
        return stamp

    def control(self, req):
        what = req.path[len(CONTROL_PREFIX) :]
        if what == "stats" and req.method == "GET":
            return json_response(200, self.stats)
        if what == "log" and req.method == "GET":
            return json_response(200, self.log)
        if what == "advance" and req.method == "POST":
            try:
                seconds = float(json.loads(req.body or b"{}").get("seconds", 0))
            except (ValueError, TypeError, AttributeError) as exc:
                return json_response(400, {"error": f"advance: {exc}"})
            if not self.config.manual_clock or seconds < 0:
                return json_response(400, {"error": "advance needs manual_clock and seconds >= 0"})
            self.config.manual_now += seconds
            return json_response(200, {"now": self.config.manual_now})
        if what == "config" and req.method == "GET":
            return json_response(200, self.config.to_json())
        if what == "config" and req.method in ("POST", "PUT"):
            try:
                spec = json.loads(req.body or b"{}")
                if not isinstance(spec, dict):
                    raise ConfigError("config must be a JSON object")
                self.config = Config(spec)
            except (ValueError, TypeError) as exc:
                return json_response(400, {"error": str(exc)})
            if spec.get("reset_stats"):
                self.stats = new_stats()
                self.log = []
            return json_response(200, self.config.to_json())
        if what == "reset" and req.method == "POST":
            self.stats = new_stats()
            self.log = []
            self.config = Config(self.config.to_json())
            return json_response(200, self.stats)
        return json_response(404, {"error": f"no control endpoint {req.method} {req.path}"})


class BadRequest(Exception):
    pass


async def read_request(reader, writer):
    """Read one request; None on a clean end of the connection between requests."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise BadRequest("connection closed inside the request head") from exc
        return None
    except asyncio.LimitOverrunError as exc:
        raise BadRequest("request head too large") from exc
    line, _, rest = head.partition(b"\r\n")
    try:
        method, target, version = line.decode("latin-1").split(" ")
    except ValueError as exc:
        raise BadRequest(f"bad request line {line[:80]!r}") from exc
    try:
        headers = Headers.parse(rest)
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc
    if headers.get("Expect", "").lower() == "100-continue":
        # We buffer the body, so say "go on" now instead of making the client wait
        # for its 100-continue timeout; the header itself is forwarded unchanged.
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await writer.drain()
    try:
        if "chunked" in headers.get("Transfer-Encoding", "").lower():
            body = await read_chunked(reader)
        else:
            body = await reader.readexactly(int(headers.get("Content-Length", "0") or 0))
    except (ValueError, asyncio.LimitOverrunError) as exc:
        raise BadRequest(f"bad body framing: {exc}") from exc
    return Request(method, target, version, headers, body)


async def read_chunked(reader):
    """RFC 9112 section 7.1 chunked body (libcurl sends it for uploads of unknown size)."""
    parts = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass  # trailer fields are dropped
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


async def send_response(writer, resp, keep_alive, truncate=False):
    lines = [f"HTTP/1.1 {resp.status} {resp.reason}"]
    lines += [f"{k}: {v}" for k, v in resp.headers]
    lines.append(f"Content-Length: {resp.declared_length}")
    # A truncated answer still says keep-alive: the client must notice the short body.
    lines.append("Connection: " + ("keep-alive" if keep_alive else "close"))
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    body = resp.body[: len(resp.body) // 2] if truncate else resp.body
    writer.write(head + body)
    await writer.drain()
    if truncate or not keep_alive:
        writer.close()


async def answer_bad_request(writer, why):
    try:
        await send_response(writer, json_response(400, {"error": why}), False)
    except ConnectionError:
        pass


def reset_connection(writer):
    """Close with RST instead of FIN, as a dropped connection looks to a client."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def parse_fault_flag(text):
    """KIND[:key=value,...] -> rule dict, e.g. slowdown:probability=0.3,service=s3."""
    kind, _, rest = text.partition(":")
    rule = {"fault": kind}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--fault {text!r}: expected key=value, got {item!r}")
        if key in ("probability", "rate", "burst"):
            rule[key] = float(value)
        elif key == "first_n":
            rule[key] = int(value)
        else:
            rule[key] = value
    return rule


def throttle_rules(throttles=(), s3_slowdown=None):
    """The rules of --throttle SERVICE=RATE and --s3-slowdown P, in that order."""
    rules = []
    for spec in throttles:
        service, sep, rate = spec.partition("=")
        try:
            rate = float(rate)
        except ValueError:
            rate = 0.0
        if not sep or not service or rate <= 0:
            raise ConfigError(f"--throttle {spec!r}: expected SERVICE=RATE, e.g. iam=10")
        fault = "slowdown" if service == "s3" else "throttling"
        rules.append({"fault": fault, "rate": rate, "burst": rate, "service": service})
    if s3_slowdown is not None:
        if not 0.0 <= s3_slowdown <= 1.0:
            raise ConfigError(f"--s3-slowdown {s3_slowdown}: expected a share from 0 to 1")
        rules.append({"fault": "slowdown", "probability": s3_slowdown, "service": "s3"})
    return rules


# --- helpers for tests: run the proxy as a child process and drive it ------------


class ProxyProcess:
    """Start faultproxy.py as a subprocess (so a test's blocking clients and the
    proxy's loop never share a thread) and talk to its control endpoint."""

    def __init__(self, upstream, args=(), log_path=None):
        import tempfile

        self.tmp = tempfile.mkdtemp(prefix="faultproxy-")
        port_file = os.path.join(self.tmp, "port")
        log = open(log_path or os.path.join(self.tmp, "proxy.log"), "ab")
        cmd = [sys.executable, os.path.abspath(__file__), "--upstream", upstream]
        cmd += ["--port-file", port_file, "--die-with-parent", *args]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 10
        while not os.path.exists(port_file):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("faultproxy did not start")
            time.sleep(0.02)
        with open(port_file) as f:
            self.port = int(f.read())
        self.url = f"http://127.0.0.1:{self.port}"

    def control(self, method, what, obj=None):
        data = json.dumps(obj).encode() if obj is not None else None
        req = urllib.request.Request(f"{self.url}{CONTROL_PREFIX}{what}", data=data, method=method)
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.load(resp)

    def configure(self, **spec):
        spec.setdefault("reset_stats", True)
        return self.control("POST", "config", spec)

    def stats(self):
        return self.control("GET", "stats")

    def requests(self):
        """Every request since the last reset: t and t_end (monotonic s: arrival, answer
        sent), service, method, path, query, action (Query API), fault."""
        return self.control("GET", "log")

    def advance(self, seconds):
        """Move the manual clock (config manual_clock) of the rate triggers."""
        return self.control("POST", "advance", {"seconds": seconds})

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        import shutil

        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--upstream", default=os.environ.get("AWS_ENDPOINT_URL"))
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port")
    ap.add_argument("--port-file", help="write the port here once listening")
    ap.add_argument("--latency-ms", type=float, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fault", action="append", default=[], metavar="KIND:TRIGGER")
    ap.add_argument("--throttle", action="append", default=[], metavar="SERVICE=RATE",
                    help="throttle SERVICE above RATE requests/s, as AWS does (repeatable)")
    ap.add_argument("--s3-slowdown", type=float, metavar="P",
                    help="answer this share of S3 requests with 503 SlowDown")
    ap.add_argument("--timeout", type=float, default=30.0, help="upstream timeout (s)")
    ap.add_argument(
        "--die-with-parent",
        action="store_true",
        help="exit when the parent process goes away (a killed test leaves no proxy behind)",
    )
    args = ap.parse_args(argv)
    if not args.upstream:
        ap.error("--upstream is required (or AWS_ENDPOINT_URL)")
    try:
        rules = throttle_rules(args.throttle, args.s3_slowdown)
        rules += [parse_fault_flag(f) for f in args.fault]
        config = Config({"latency_ms": args.latency_ms, "seed": args.seed, "rules": rules})
        proxy = Proxy(args.upstream, config, args.host, args.port, args.timeout)
    except (ConfigError, ValueError) as exc:
        print(f"faultproxy: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(serve_forever(proxy, args.port_file, args.die_with_parent))


async def watch_parent(stop):
    parent = os.getppid()
    while not stop.is_set():
        if os.getppid() != parent:
            stop.set()
        await asyncio.sleep(0.5)


async def serve_forever(proxy, port_file, die_with_parent=False):
    port = await proxy.start()
    if port_file:
        tmp = port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(port))
        os.replace(tmp, port_file)  # readers never see a half-written port
    print(f"faultproxy: listening on {proxy.host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watcher = asyncio.create_task(watch_parent(stop)) if die_with_parent else None
    await stop.wait()
    if watcher is not None:
        watcher.cancel()
    await proxy.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
