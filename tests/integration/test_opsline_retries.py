#!/usr/bin/env python3
"""opsline's retries through the fault proxy in front of the fixture's auth-enforcing moto:
throttling, server errors, resets, truncated answers, backoff delays as the server sees
them, the retry quota, timeouts, wrong-region answers, adaptive mode. Run through run.sh.
"""
import json
import os
import re
import sys
import tempfile
import unittest

import boto3
from botocore.config import Config

from opsline_it import ENDPOINT, KEY, SECRET, Proxy, base_env, client, opsline, read_env

PROXY = Proxy()


setUpModule, tearDownModule = PROXY.start, PROXY.stop


class FaultTest(unittest.TestCase):
    """Through the fault proxy: the same auth-enforcing moto behind injected faults."""

    def configure(self, **spec):
        PROXY.configure(**spec)

    def env(self, **extra):
        return base_env(**{"AWS_ENDPOINT_URL": PROXY.url, **extra})

    def sts_requests(self):
        return PROXY.stats()["requests"]

    def test_throttling_is_retried_until_it_succeeds(self):
        self.configure(rules=[{"fault": "throttling", "first_n": 2}])
        r = opsline("whoami", env=self.env())
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.sts_requests(), 3)

    def test_max_attempts_bounds_the_retries_and_the_error_is_reported(self):
        self.configure(rules=[{"fault": "throttling", "first_n": 10}])
        r = opsline("whoami", env=self.env(AWS_MAX_ATTEMPTS="2"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("Throttling", r.stderr)
        self.assertEqual(self.sts_requests(), 2)

    def test_server_errors_resets_and_truncated_bodies_are_retried(self):
        for fault in ("internal_error", "slowdown", "reset", "truncate"):
            self.configure(rules=[{"fault": fault, "first_n": 2}])
            r = opsline("whoami", env=self.env(AWS_MAX_ATTEMPTS="3"))
            self.assertEqual(r.returncode, 0, f"{fault}: {r.stderr}")
            self.assertEqual(self.sts_requests(), 3, fault)

    def test_a_persistent_fault_gives_up_after_max_attempts(self):
        self.configure(rules=[{"fault": "reset", "probability": 1.0}])
        r = opsline("whoami", env=self.env(AWS_MAX_ATTEMPTS="4"))
        self.assertEqual(r.returncode, 1)
        self.assertEqual(self.sts_requests(), 4)

    def test_a_slow_endpoint_times_out_and_gives_up_cleanly(self):
        # Every answer would arrive (the proxy only delays): exit 1 and "timed out" after
        # exactly two attempts show opsline stopped waiting, with no wall-clock bound.
        self.configure(latency_ms=1500, rules=[])
        r = opsline("whoami", env=self.env(AWS_MAX_ATTEMPTS="2", OPSLINE_TIMEOUT_MS="300"))
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("timed out", r.stderr.lower())
        self.assertEqual(self.sts_requests(), 2)
        self.configure(latency_ms=0, rules=[])

    def test_backoff_delays_grow_to_the_cap_as_the_server_sees_them(self):
        # A fixed jitter (OPSLINE_TEST_RETRY_JITTER) makes each delay J x min(base x 2^(n-1),
        # 20 s): with base 8 s and J = 0.025, 200, 400, then the 20 s cap's 500 twice.
        d = tempfile.mkdtemp()
        self.configure(rules=[{"fault": "slowdown", "first_n": 4, "service": "s3"}])
        r = opsline("apply", f"backoff{os.getpid()}", "-e", "production", "-v",
                    "--state-dir", os.path.join(d, "state"), cwd=d,
                    env=self.env(AWS_MAX_ATTEMPTS="6", OPSLINE_RETRY_BASE_MS="8000",
                                 OPSLINE_TEST_RETRY_JITTER="0.025"))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        logged = re.findall(r"debug: retry: s3 \S+ \S+: \S+ \(HTTP 503, attempt (\d)\); "
                            r"next try in (\d+) ms", r.stderr)
        self.assertEqual(logged, [("1", "200"), ("2", "400"), ("3", "500"), ("4", "500")])
        # The proxy saw the same request five times (four SlowDown, then forwarded), each
        # retry at least its delay after the previous attempt arrived.
        s3 = [e for e in PROXY.requests() if e["service"] == "s3"][:5]
        self.assertEqual([e["fault"] for e in s3], ["slowdown"] * 4 + ["none"])
        self.assertEqual(len({(e["method"], e["path"]) for e in s3}), 1, s3)
        gaps = [(b["t"] - a["t"]) * 1000 for a, b in zip(s3, s3[1:])]
        for gap, (_, delay) in zip(gaps, logged):
            self.assertGreaterEqual(gap, int(delay) - 2, gaps)
        self.assertGreaterEqual(sum(gaps), 200 + 400 + 500 + 500 - 2)
        self.configure(rules=[])

    def test_the_retry_quota_stops_retries_against_a_failing_endpoint(self):
        # S3 always fails; IAM and STS go straight to moto. Without a quota, 30 items x 20
        # attempts would send 600 CreateBucket requests; the standard quota (500 tokens,
        # 5 per retry) allows 100 retries in all.
        d = tempfile.mkdtemp()
        self.configure(rules=[{"fault": "internal_error", "probability": 1.0, "service": "s3"}])
        products = [f"q{os.getpid()}x{i}" for i in range(30)]
        r = opsline("apply", *products, "-e", "production", "--state-dir",
                    os.path.join(d, "state"), "--json", cwd=d,
                    env=self.env(AWS_ENDPOINT_URL_S3=PROXY.url, AWS_ENDPOINT_URL=ENDPOINT,
                                 AWS_MAX_ATTEMPTS="20", OPSLINE_RETRY_BASE_MS="1"))
        self.assertEqual(r.returncode, 1, r.stderr)
        s3_requests = PROXY.stats()["requests"]
        self.assertGreaterEqual(s3_requests, 30 + 100)
        self.assertLessEqual(s3_requests, 30 + 100 + 30)
        report = json.loads(r.stdout)
        reasons = " ".join(st.get("reason", "") for it in report["items"] for st in it["stages"])
        self.assertIn("retry quota", reasons)
        self.configure(rules=[])

    def test_a_lost_create_access_key_answer_leaves_exactly_one_stored_key(self):
        # The proxy forwards CreateAccessKey (the key is created) and cuts the answer in
        # half: the outcome is unknown, and the stage must reconcile instead of retrying.
        # The half that arrives holds most of the lost key's secret: it must not be printed,
        # nor the secret finally stored, whether verbose or --json.
        for flags in (["-v"], ["--json", "-v"]):
            with self.subTest(flags=flags):
                d = tempfile.mkdtemp()
                name = f"lost{os.getpid()}{len(flags)}"
                self.configure(rules=[{"fault": "truncate", "first_n": 1,
                                       "body_contains": "Action=CreateAccessKey"}])
                r = opsline("apply", name, "-e", "production", *flags, "--state-dir",
                            os.path.join(d, "state"), cwd=d, env=self.env())
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                truncated = [e for e in PROXY.requests() if e["fault"] == "truncate"]
                self.assertEqual(len(truncated), 1)
                lost = re.search(r"<SecretAccessKey>([^<]*)", truncated[0]["truncated_body"])
                self.assertIsNotNone(lost, truncated[0]["truncated_body"])
                lost = lost.group(1)
                self.assertGreaterEqual(len(lost), 8)
                user = f"{name}-production"
                stored = read_env(os.path.join(d, f"{user}.env"))
                self.assertEqual(len(stored["AWS_SECRET_ACCESS_KEY"]), 40)
                for secret in (lost, stored["AWS_SECRET_ACCESS_KEY"]):
                    self.assertNotIn(secret, r.stdout)
                    self.assertNotIn(secret, r.stderr)
                    for root, _, files in os.walk(os.path.join(d, "state")):
                        for f in files:
                            with open(os.path.join(root, f), errors="replace") as fh:
                                self.assertNotIn(secret, fh.read())
                iam = client("iam")
                keys = [k["AccessKeyId"]
                        for k in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]]
                self.assertEqual(keys, [stored["AWS_ACCESS_KEY_ID"]])
                own = client("s3", stored["AWS_ACCESS_KEY_ID"], stored["AWS_SECRET_ACCESS_KEY"])
                own.put_object(Bucket=user, Key="k", Body=b"x")
        self.configure(rules=[])

    def test_s3_wrong_region_answers_are_followed_once_transparently(self):
        # The bucket already exists in eu-west-1; opsline runs for eu-north-1. Every S3
        # call is first signed for eu-north-1, told the bucket's region, and resent once.
        d = tempfile.mkdtemp()
        s3 = boto3.client("s3", endpoint_url=ENDPOINT, region_name="eu-west-1",
                          aws_access_key_id=KEY, aws_secret_access_key=SECRET)
        s3.create_bucket(Bucket=f"region{os.getpid()}-production",
                         CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        self.configure(rules=[{"fault": "wrong_region", "bucket_region": "eu-west-1",
                               "service": "s3"}])
        r = opsline("apply", f"region{os.getpid()}", "-e", "production", "-v", "--state-dir",
                    os.path.join(d, "state"), cwd=d, env=self.env())
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        redirects = re.findall(r"debug: redirect: s3 ", r.stderr)
        self.assertGreater(len(redirects), 3)
        self.assertEqual(PROXY.stats()["faulted"]["wrong_region"], len(redirects))

        # A region hint that is wrong again is not followed a second time.
        self.configure(rules=[{"fault": "wrong_region", "bucket_region": "eu-west-1",
                               "always_wrong": True, "service": "s3"}])
        r = opsline("apply", f"region{os.getpid()}", "-e", "staging", "--state-dir",
                    os.path.join(d, "state"), cwd=d, env=self.env())
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertEqual(PROXY.stats()["by_service"]["s3"], 2)
        self.configure(rules=[])

    def send_batch_under_rate_limit(self, mode, tag):
        """12 products against IAM allowing 10 requests/s (an account's IAM quota; low enough
        that standard mode exceeds it on a busy machine too): returns (the run, IAM requests
        per second as the proxy saw them, share of them throttled). IAM, not S3: opsline
        paces S3 per bucket, as S3 throttles per bucket prefix, and IAM per endpoint."""
        d = tempfile.mkdtemp()
        self.configure(rules=[{"fault": "throttling", "rate": 10, "burst": 5, "service": "iam"}])
        products = [f"{tag}{os.getpid()}x{i}" for i in range(12)]
        r = opsline("apply", *products, "-e", "production", "--state-dir",
                    os.path.join(d, "state"), "--json", cwd=d,
                    env=self.env(AWS_RETRY_MODE=mode, AWS_MAX_ATTEMPTS="10",
                                 OPSLINE_RETRY_BASE_MS="50"), timeout=300)
        iam = [e for e in PROXY.requests() if e["service"] == "iam"]
        self.configure(rules=[])
        self.assertGreater(len(iam), 12, r.stderr[-2000:])
        rate = len(iam) / (iam[-1]["t"] - iam[0]["t"])
        throttled = sum(e["fault"] == "throttling" for e in iam) / len(iam)
        return r, rate, throttled

    def test_adaptive_mode_slows_its_sending_rate_and_finishes_under_a_rate_limit(self):
        # Standard mode retries at full speed and keeps hitting the limit (it may give up);
        # adaptive mode measures the throttling and sends more slowly, so fewer are refused.
        _, std_rate, std_throttled = self.send_batch_under_rate_limit("standard", "s")
        r, rate, throttled = self.send_batch_under_rate_limit("adaptive", "a")
        print(f"\n  IAM at the proxy: standard {std_rate:.1f} req/s, {std_throttled:.0%} throttled; "
              f"adaptive {rate:.1f} req/s, {throttled:.0%} throttled", file=sys.stderr)
        self.assertEqual(r.returncode, 0, r.stdout[-2000:] + r.stderr[-2000:])
        self.assertEqual(json.loads(r.stdout)["summary"]["failed"], 0)
        self.assertGreater(std_throttled, 0)
        # Adaptive mode's pace is its own (a token bucket fitted to the throttling), so it is
        # bounded against the quota; standard mode's pace is the machine's, and on a busy
        # one it can fall below adaptive's without adaptive doing anything wrong (seen in CI:
        # 15.6 against 17.3 req/s), so the two rates are not compared. What tells the modes
        # apart on any machine is the share refused, below.
        self.assertLess(rate, 2.5 * 10, (rate, std_rate))
        # A short batch: the first second's overshoot (before the first throttle is measured)
        # weighs on it, so the bound is 0.7 of standard's share, not the long-run half.
        self.assertLess(throttled, std_throttled * 0.7, (throttled, std_throttled))


if __name__ == "__main__":
    unittest.main(verbosity=2)
