#!/usr/bin/env python3
"""The fault proxy, exercised with boto3 through it against the fixture's moto.

Run through run.sh (it provides AWS_ENDPOINT_URL and the admin key). Every
request is signed and verified by moto, so these tests also show that the proxy
forwards requests byte-exact enough for SigV4 (Host header, body, query).
"""

import http.client
import json
import os
import subprocess
import sys
import time
import unittest
import unittest.mock

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

import faultproxy

REGION = os.environ.get("AWS_REGION", "eu-north-1")
BUCKET = f"faultproxy-{os.getpid()}"
PROXY = None


def setUpModule():
    global PROXY
    PROXY = faultproxy.ProxyProcess(os.environ["AWS_ENDPOINT_URL"])
    s3 = client("s3", endpoint=os.environ["AWS_ENDPOINT_URL"])
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})


def tearDownModule():
    if PROXY is not None:
        PROXY.stop()


def client(service, attempts=3, endpoint=None):
    return boto3.client(
        service,
        endpoint_url=endpoint or PROXY.url,
        region_name=REGION,
        config=Config(
            retries={"mode": "standard", "total_max_attempts": attempts},
            connect_timeout=5,
            read_timeout=10,
        ),
    )


def fast_retries():
    """boto3's standard mode sleeps up to seconds between attempts; the tests
    care that retries happen, not how long they wait."""
    return unittest.mock.patch(
        "botocore.retries.standard.ExponentialBackoff.delay_amount", return_value=0.01
    )


def error_of(exc):
    err = exc.response["Error"]
    return exc.response["ResponseMetadata"]["HTTPStatusCode"], err.get("Code")


class ProxyTestCase(unittest.TestCase):
    def setUp(self):
        PROXY.configure()  # no faults, stats cleared


class Forwarding(ProxyTestCase):
    def test_signed_query_api_call_passes_moto_signature_check(self):
        arn = client("sts").get_caller_identity()["Arn"]
        self.assertTrue(arn.endswith(":user/admin"), arn)

    def test_large_object_round_trips_unchanged_with_head_length(self):
        s3 = client("s3")
        data = os.urandom(2 * 1024 * 1024 + 3)
        s3.put_object(Bucket=BUCKET, Key="big", Body=data)
        self.assertEqual(s3.get_object(Bucket=BUCKET, Key="big")["Body"].read(), data)
        self.assertEqual(s3.head_object(Bucket=BUCKET, Key="big")["ContentLength"], len(data))

    def test_client_connection_is_kept_alive_across_requests(self):
        s3 = client("s3")
        for _ in range(4):
            s3.list_buckets()
        stats = PROXY.stats()
        self.assertEqual(stats["requests"], 4)
        self.assertEqual(stats["forwarded"], 4)
        self.assertEqual(stats["connections"], 1 + 1)  # boto3's one + the stats call

    def test_wrong_secret_is_still_rejected_through_the_proxy(self):
        sts = boto3.client(
            "sts",
            endpoint_url=PROXY.url,
            region_name=REGION,
            aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key="not-the-secret",
            config=Config(retries={"total_max_attempts": 1}),
        )
        with self.assertRaises(ClientError) as cm:
            sts.get_caller_identity()
        self.assertEqual(error_of(cm.exception)[1], "SignatureDoesNotMatch")

    def test_chunked_request_body_is_read(self):
        conn = http.client.HTTPConnection("127.0.0.1", PROXY.port, timeout=5)
        body = json.dumps({"latency_ms": 7}).encode()
        conn.request("POST", "/__proxy/config", body=iter([body[:5], body[5:]]),
                     encode_chunked=True)
        resp = conn.getresponse()
        self.assertEqual(resp.status, 200)
        self.assertEqual(json.load(resp)["latency_ms"], 7)
        conn.close()

    def test_aws_cli_works_through_the_proxy(self):
        out = subprocess.run(
            ["aws", "sts", "get-caller-identity", "--endpoint-url", PROXY.url,
             "--output", "json"],
            capture_output=True, text=True, timeout=60, check=True,
        )
        self.assertTrue(json.loads(out.stdout)["Arn"].endswith(":user/admin"))


class Latency(ProxyTestCase):
    def test_latency_is_added_to_every_request(self):
        sts = client("sts")
        sts.get_caller_identity()  # connect outside the measurement
        PROXY.configure(latency_ms=250)
        start = time.monotonic()
        sts.get_caller_identity()
        sts.get_caller_identity()
        self.assertGreaterEqual(time.monotonic() - start, 0.5)


class Throttling(ProxyTestCase):
    def test_s3_slowdown_for_first_requests_is_retried_by_boto3(self):
        PROXY.configure(rules=[{"fault": "slowdown", "first_n": 2}])
        with fast_retries():
            resp = client("s3").list_buckets()
        self.assertEqual(resp["ResponseMetadata"]["RetryAttempts"], 2)
        stats = PROXY.stats()
        self.assertEqual(stats["faulted"]["slowdown"], 2)
        self.assertEqual(stats["forwarded"], 1)

    def test_slowdown_is_a_503_s3_error(self):
        PROXY.configure(rules=[{"fault": "slowdown"}])
        with self.assertRaises(ClientError) as cm:
            client("s3", attempts=1).list_buckets()
        self.assertEqual(error_of(cm.exception), (503, "SlowDown"))

    def test_query_throttling_is_a_400_throttling_error_and_retried(self):
        PROXY.configure(rules=[{"fault": "throttling", "first_n": 1, "service": "iam"}])
        with self.assertRaises(ClientError) as cm:
            client("iam", attempts=1).list_users()
        self.assertEqual(error_of(cm.exception), (400, "Throttling"))
        PROXY.configure(rules=[{"fault": "throttling", "first_n": 2, "service": "iam"}])
        with fast_retries():
            resp = client("iam").list_users()
        self.assertEqual(resp["ResponseMetadata"]["RetryAttempts"], 2)

    def test_service_filter_leaves_other_services_alone(self):
        PROXY.configure(rules=[{"fault": "throttling", "service": "iam"}])
        client("s3", attempts=1).list_buckets()
        client("sts", attempts=1).get_caller_identity()
        stats = PROXY.stats()
        self.assertEqual(stats["faulted_total"], 0)
        self.assertEqual(stats["by_service"], {"s3": 1, "sts": 1})

    def test_seeded_probability_faults_a_share_repeatably(self):
        def outcomes():
            PROXY.configure(seed=42, rules=[{"fault": "slowdown", "probability": 0.5}])
            s3, seen = client("s3", attempts=1), []
            for _ in range(20):
                try:
                    s3.list_buckets()
                    seen.append(True)
                except ClientError:
                    seen.append(False)
            return seen

        first = outcomes()
        self.assertEqual(outcomes(), first)
        self.assertTrue(4 <= first.count(False) <= 16, first)
        self.assertEqual(PROXY.stats()["faulted"]["slowdown"], first.count(False))

    def test_requests_above_rate_are_throttled(self):
        # The token bucket runs on the proxy's manual clock, so what passes depends on the
        # count of requests and the time the test lets pass, not on this machine's speed.
        PROXY.configure(manual_clock=True,
                        rules=[{"fault": "throttling", "rate": 2, "burst": 4}])
        sts = client("sts", attempts=1)

        def outcomes(n):
            seen = []
            for _ in range(n):
                try:
                    sts.get_caller_identity()
                    seen.append("ok")
                except ClientError as exc:
                    self.assertEqual(error_of(exc), (400, "Throttling"))
                    seen.append("throttled")
            return seen

        self.assertEqual(outcomes(6), ["ok"] * 4 + ["throttled"] * 2)  # the burst of 4
        PROXY.advance(0.5)  # 2 per second: one token
        self.assertEqual(outcomes(2), ["ok", "throttled"])
        PROXY.advance(10)  # refills to the burst, not beyond
        self.assertEqual(outcomes(5), ["ok"] * 4 + ["throttled"])
        stats = PROXY.stats()
        self.assertEqual(stats["faulted"]["throttling"], 4)
        self.assertEqual(stats["forwarded"], 9)

    def test_the_request_log_records_each_request_in_order(self):
        PROXY.configure(rules=[{"fault": "throttling", "first_n": 1, "service": "iam"}])
        with fast_retries():
            client("iam").list_users()
        client("sts", attempts=1).get_caller_identity()
        log = PROXY.requests()
        self.assertEqual([(e["service"], e["action"], e["fault"]) for e in log],
                         [("iam", "ListUsers", "throttling"), ("iam", "ListUsers", "none"),
                          ("sts", "GetCallerIdentity", "none")])
        times = [e["t"] for e in log]
        self.assertEqual(times, sorted(times))


class BrokenConnections(ProxyTestCase):
    def test_reset_connection_is_a_client_connection_error(self):
        PROXY.configure(rules=[{"fault": "reset"}])
        with self.assertRaises((ConnectionClosedError, EndpointConnectionError)):
            client("sts", attempts=1).get_caller_identity()
        self.assertEqual(PROXY.stats()["faulted"]["reset"], 1)

    def test_single_reset_is_retried_by_boto3(self):
        PROXY.configure(rules=[{"fault": "reset", "first_n": 1}])
        with fast_retries():
            resp = client("sts").get_caller_identity()
        self.assertEqual(resp["ResponseMetadata"]["RetryAttempts"], 1)

    def test_truncated_body_is_a_client_error(self):
        PROXY.configure(rules=[{"fault": "truncate", "service": "sts"}])
        with self.assertRaises(ConnectionClosedError):
            client("sts", attempts=1).get_caller_identity()
        self.assertEqual(PROXY.stats()["faulted"]["truncate"], 1)

    def test_truncated_object_download_fails_on_read(self):
        s3 = client("s3", attempts=1)
        s3.put_object(Bucket=BUCKET, Key="t", Body=b"x" * 10000)
        PROXY.configure(rules=[{"fault": "truncate", "method": "GET"}])
        body = s3.get_object(Bucket=BUCKET, Key="t")["Body"]
        with self.assertRaises(Exception) as cm:
            body.read()
        self.assertIn("IncompleteRead", type(cm.exception).__name__ + str(cm.exception))

    def test_internal_error_is_a_500(self):
        PROXY.configure(rules=[{"fault": "internal_error"}])
        with self.assertRaises(ClientError) as cm:
            client("iam", attempts=1).list_users()
        self.assertEqual(error_of(cm.exception), (500, "InternalError"))


class Control(ProxyTestCase):
    def test_stats_count_requests_and_faults_by_kind(self):
        PROXY.configure(rules=[{"fault": "internal_error", "first_n": 1},
                               {"fault": "slowdown", "first_n": 1}])
        s3 = client("s3", attempts=1)
        for _ in range(3):
            try:
                s3.list_buckets()
            except ClientError:
                pass
        stats = PROXY.stats()
        self.assertEqual(stats["requests"], 3)
        self.assertEqual(stats["forwarded"], 1)
        self.assertEqual(stats["faulted_total"], 2)
        self.assertEqual(stats["faulted"]["internal_error"], 1)
        self.assertEqual(stats["faulted"]["slowdown"], 1)

    def test_bad_config_is_refused_and_old_one_kept(self):
        PROXY.configure(latency_ms=1)
        for bad in ({"rules": [{"fault": "explode"}]}, {"latency": 5},
                    {"rules": [{"fault": "reset", "first_n": 1, "probability": 1}]}):
            with self.assertRaises(Exception) as cm:
                PROXY.control("POST", "config", bad)
            self.assertEqual(getattr(cm.exception, "code", None), 400, bad)
        self.assertEqual(PROXY.control("GET", "config")["latency_ms"], 1)

    def test_command_line_flags_set_the_initial_config(self):
        args = ["--latency-ms", "5", "--seed", "3",
                "--fault", "throttling:first_n=2,service=sts",
                "--fault", "slowdown:probability=0.25"]
        with faultproxy.ProxyProcess(os.environ["AWS_ENDPOINT_URL"], args) as p:
            cfg = p.control("GET", "config")
        self.assertEqual(cfg["latency_ms"], 5)
        self.assertEqual(cfg["seed"], 3)
        self.assertEqual(cfg["rules"], [
            {"fault": "throttling", "first_n": 2, "service": "sts"},
            {"fault": "slowdown", "probability": 0.25},
        ])

    def test_throttle_flags_play_an_iam_quota_and_random_s3_slowdowns(self):
        args = ["--throttle", "iam=2", "--s3-slowdown", "0.5", "--seed", "7"]
        with faultproxy.ProxyProcess(os.environ["AWS_ENDPOINT_URL"], args) as p:
            self.assertEqual(p.control("GET", "config")["rules"], [
                {"fault": "throttling", "rate": 2.0, "burst": 2.0, "service": "iam"},
                {"fault": "slowdown", "probability": 0.5, "service": "s3"},
            ])
            # The same config on the manual clock: what the quota lets through then depends on
            # the count of requests, not on how fast a busy machine sends them (at 2/s a token
            # comes back every 0.5 s, and a loaded CI run once took longer than that).
            p.configure(**{**p.control("GET", "config"), "manual_clock": True})
            # IAM's own answer above its quota: 400, Sender, Throttling, "Rate exceeded".
            iam = client("iam", attempts=1, endpoint=p.url)
            iam.list_users()
            iam.list_users()
            with self.assertRaises(ClientError) as cm:
                iam.list_users()
            self.assertEqual(error_of(cm.exception), (400, "Throttling"))
            self.assertEqual(cm.exception.response["Error"]["Message"], "Rate exceeded")
            self.assertEqual(cm.exception.response["Error"]["Type"], "Sender")
            s3, failed = client("s3", attempts=1, endpoint=p.url), 0
            for _ in range(20):
                try:
                    s3.list_buckets()
                except ClientError as exc:
                    self.assertEqual(error_of(exc), (503, "SlowDown"))
                    failed += 1
            self.assertTrue(4 <= failed <= 16, failed)
            self.assertEqual(p.stats()["faulted"]["slowdown"], failed)

    def test_bad_throttle_flags_are_refused(self):
        for args in (["--throttle", "iam"], ["--throttle", "iam=0"], ["--s3-slowdown", "2"]):
            r = subprocess.run([sys.executable, faultproxy.__file__, "--upstream",
                                "http://127.0.0.1:1", *args], capture_output=True, text=True,
                               timeout=30)
            self.assertEqual(r.returncode, 2, args)
            self.assertIn("faultproxy:", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
