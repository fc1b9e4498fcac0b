#!/usr/bin/env python3
"""Throttling survived by default (issue 7): opsline with no retry flags, through the fault
proxy in front of the fixture's auth-enforcing moto, under an IAM quota of 10 requests/s
with 20% of S3 requests answered 503 SlowDown, with every item started at once (under a stage
time limit shorter than the wait for the quota; the items started first finish first), and
against endpoints that are dead (always
500) or throttle forever. Run through run.sh.
"""
import json
import os
import sys
import tempfile
import time
import unittest

from opsline_it import Proxy, base_env, client, opsline

PROXY = Proxy()
IAM_TPS = 10

setUpModule, tearDownModule = PROXY.start, PROXY.stop


def default_env(**extra):
    """A user's environment: no AWS_RETRY_MODE, no AWS_MAX_ATTEMPTS, the default backoff."""
    return base_env(**{"AWS_ENDPOINT_URL": PROXY.url, "OPSLINE_RETRY_BASE_MS": None,
                       "AWS_RETRY_MODE": None, "AWS_MAX_ATTEMPTS": None, **extra})


def reasons(report):
    return [st.get("reason", "") for it in report["items"] for st in it["stages"]
            if st.get("reason")]


class Throttling(unittest.TestCase):
    def apply(self, products, env, timeout=600, extra=()):
        """Runs apply for production and staging; returns (run, report, wall seconds, time
        from launch to the first request the proxy saw)."""
        d = tempfile.mkdtemp()
        t0 = time.monotonic()
        r = opsline("apply", *products, "--state-dir", os.path.join(d, "state"), "--json",
                    *extra, cwd=d, env=env, timeout=timeout)
        wall = time.monotonic() - t0
        log = PROXY.requests()
        start = log[0]["t"] - t0 if log else 0.0
        try:
            report = json.loads(r.stdout)
        except ValueError:
            self.fail(f"no JSON report: {r.stdout[-2000:]} {r.stderr[-2000:]}")
        return r, report, wall, start, log

    def test_a_batch_under_an_iam_quota_and_s3_slowdowns_finishes_near_the_quota_bound(self):
        PROXY.configure(seed=7, rules=[
            {"fault": "throttling", "rate": IAM_TPS, "burst": IAM_TPS, "service": "iam"},
            {"fault": "slowdown", "probability": 0.2, "service": "s3"}])
        products = [f"tps{os.getpid()}x{i}" for i in range(20)]
        r, report, wall, start, log = self.apply(products, default_env())
        iam = [e for e in log if e["service"] == "iam"]
        throttled = sum(e["fault"] == "throttling" for e in iam)
        s3 = [e for e in log if e["service"] == "s3"]
        slowed = sum(e["fault"] == "slowdown" for e in s3)
        bound = len(iam) / IAM_TPS
        print(f"\n  40 items: wall {wall:.1f} s (process start {start:.1f} s); IAM {len(iam)} "
              f"requests ({throttled} throttled), bound {bound:.1f} s, ratio "
              f"{(wall - start) / bound:.2f}; accepted-only bound {(len(iam) - throttled) / IAM_TPS:.1f} s; "
              f"S3 {len(s3)} requests ({slowed} SlowDown)", file=sys.stderr)
        self.assertEqual(r.returncode, 0, "\n".join(reasons(report))[:3000] + r.stderr[-2000:])
        self.assertEqual(report["summary"]["items"], 40)
        self.assertEqual(report["summary"]["failed"], 0)
        self.assertEqual(len(report["items"]), 40)
        # Both kinds of throttling happened and were survived.
        self.assertGreater(throttled, 0)
        self.assertGreater(slowed, 0)
        # Every item is complete: bucket, user with one key, the key stored.
        iam_client, s3_client = client("iam"), client("s3")
        for p in products:
            for env in ("production", "staging"):
                name = f"{p}-{env}"
                s3_client.head_bucket(Bucket=name)
                keys = iam_client.list_access_keys(UserName=name)["AccessKeyMetadata"]
                self.assertEqual(len(keys), 1, name)
                self.assertTrue(iam_client.list_user_policies(UserName=name)["PolicyNames"],
                                name)
        # Close to the quota: at most 1.3 x the time the quota needs for the IAM requests
        # sent, counted from the first request (the process start is not the batch's).
        self.assertLessEqual(wall - start, 1.3 * bound, (wall, start, len(iam)))
        # With few requests wasted: the bound above grows with every throttled request, so
        # they are held to well under the accepted ones (120 here). Cutting from the rate
        # sent, 0.7 per half-second, took 94 and 95 throttled; cutting to what IAM accepted
        # once most answers are throttles, 55 and 56.
        self.assertLessEqual(throttled, 0.65 * (len(iam) - throttled), (len(iam), throttled))
        PROXY.configure()

    def test_the_wait_for_the_iam_quota_does_not_count_against_a_stage_time_limit(self):
        # All 40 items start at once (--concurrency 1024) under the quota of 10/s: their 120
        # IAM requests take about 12 s, so most items' requests wait several seconds for
        # their turn, far longer than the iam stage's time limit of 3 s here (300 s by
        # default: the same happens to a few thousand items at once). The host holds those
        # requests back (its rate limiter, the backoff after Throttling); the stage is not
        # hung, and its time limit does not count that wait.
        PROXY.configure(seed=11, rules=[
            {"fault": "throttling", "rate": IAM_TPS, "burst": IAM_TPS, "service": "iam"}])
        d = tempfile.mkdtemp()
        pipeline = os.path.join(d, "pipeline.json")
        with open(pipeline, "w") as f:
            json.dump({"stages": ["bucket", {"stage": "iam", "timeout": "3s"}, "policy",
                                  "dotenv"]}, f)
        products = [f"slot{os.getpid()}x{i}" for i in range(20)]
        r, report, wall, start, log = self.apply(
            products, default_env(), extra=("--concurrency", "1024", "--pipeline", pipeline))
        iam = [e for e in log if e["service"] == "iam"]
        throttled = sum(e["fault"] == "throttling" for e in iam)
        print(f"\n  40 items at once, iam time limit 3 s: wall {wall:.1f} s, IAM {len(iam)} "
              f"requests ({throttled} throttled)", file=sys.stderr)
        self.assertEqual(r.returncode, 0, "\n".join(reasons(report))[:3000] + r.stderr[-2000:])
        self.assertEqual(report["summary"]["failed"], 0)
        self.assertGreater(throttled, 0)
        # Every item's first request at once: the first burst is throttled, and the rate
        # comes down to IAM's within about a second (108 to 138 throttled when it came down
        # 0.7 per half-second; 64 and 65 now).
        self.assertLessEqual(throttled, 0.75 * (len(iam) - throttled), (len(iam), throttled))
        # The batch took several times the stage's time limit: the limit was tested.
        self.assertGreater(wall - start, 2 * 3)
        iam_client = client("iam")
        for p in products:
            for env in ("production", "staging"):
                keys = iam_client.list_access_keys(UserName=f"{p}-{env}")["AccessKeyMetadata"]
                self.assertEqual(len(keys), 1, p)
        PROXY.configure()

    def test_under_the_quota_the_items_started_first_finish_first(self):
        # 80 items at once under 10 IAM requests/s. Served first come first served, the
        # items advance together (every CreateUser, then every CreateAccessKey, then every
        # PutUserPolicy, give or take the first burst), and few are done before the last
        # third of the run. The rate limiter serves the calls of the items started first
        # first, so items complete one after another at the same overall pace: close to half
        # of them within the first half of the IAM requests.
        PROXY.configure(seed=5, rules=[
            {"fault": "throttling", "rate": IAM_TPS, "burst": IAM_TPS, "service": "iam"}])
        products = [f"rank{os.getpid()}x{i}" for i in range(40)]
        r, report, wall, start, log = self.apply(products, default_env(),
                                                 extra=("--concurrency", "1024"))
        self.assertEqual(r.returncode, 0, "\n".join(reasons(report))[:3000] + r.stderr[-2000:])
        accepted = [e["action"] for e in sorted(log, key=lambda e: e["t"])
                    if e["service"] == "iam" and e["fault"] == "none"]
        throttled = sum(e["service"] == "iam" and e["fault"] == "throttling" for e in log)
        done = [i for i, a in enumerate(accepted) if a == "PutUserPolicy"]
        early = sum(i < len(accepted) // 2 for i in done)
        print(f"\n  80 items at once: {len(accepted)} IAM requests accepted ({throttled} "
              f"throttled), {early} items done within the first half of them", file=sys.stderr)
        self.assertEqual(len(done), 80)
        # First come first served gave 6 and 8 of 80 here (4 to 9 of 40 with half the
        # items); served by start, 29 and 35 of 80.
        order = " ".join(a[6] if a == "CreateAccessKey" else a[0] for a in accepted)
        self.assertGreaterEqual(early, 80 // 5, f"U/A/P = CreateUser/AccessKey/PutUserPolicy: {order}")
        # More items than a fresh endpoint's first flight (64): the rest wait in the rate
        # limiter's queue, where the first throttle's rate reaches them. Let through to the
        # HTTP layer at once, 136 to 160 were throttled; held back, 110 to 116.
        self.assertLessEqual(throttled, 0.55 * len(accepted), throttled)
        PROXY.configure()

    def test_an_endpoint_that_always_answers_500_stops_the_run_quickly_with_the_reason(self):
        PROXY.configure(rules=[{"fault": "internal_error", "probability": 1.0,
                                "service": "iam"}])
        products = [f"dead{os.getpid()}x{i}" for i in range(20)]
        r, report, wall, _, log = self.apply(products, default_env())
        iam = [e for e in log if e["service"] == "iam"]
        why = reasons(report)
        dead = [w for w in why if "answered HTTP 500 InternalError to every one of the last" in w]
        print(f"\n  dead IAM: wall {wall:.1f} s, {len(iam)} IAM requests, "
              f"{len(dead)} of {len(why)} reasons name the dead endpoint; e.g. {dead[:1]}",
              file=sys.stderr)
        self.assertEqual(r.returncode, 1, r.stderr[-2000:])
        self.assertEqual(report["summary"]["failed"], 40)
        self.assertTrue(dead, why)
        self.assertIn(PROXY.url, dead[0])
        self.assertIn("giving up", dead[0])
        # Quickly: fewer requests than three attempts per item; the items that started after
        # the endpoint was found dead sent it nothing.
        self.assertLess(len(iam), 3 * 40)
        users = {e["params"].get("UserName") for e in iam}
        self.assertLess(len(users), 40, users)
        PROXY.configure()

    def test_an_endpoint_that_throttles_everything_is_given_up_after_the_progress_timeout(self):
        PROXY.configure(rules=[{"fault": "throttling", "probability": 1.0, "service": "sts"}])
        r = opsline("whoami", env=default_env(OPSLINE_PROGRESS_TIMEOUT_S="8"), timeout=120)
        log = [e for e in PROXY.requests() if e["service"] == "sts"]
        self.assertEqual(r.returncode, 1, r.stderr[-2000:])
        self.assertIn("Throttling", r.stderr)
        self.assertIn("throttled every request for", r.stderr)
        self.assertIn("OPSLINE_PROGRESS_TIMEOUT_S=8", r.stderr)
        # Retried past the 3 attempts other errors get, paced by the token bucket (its floor
        # is one request per 2 s), and stopped once 8 s passed with no success.
        self.assertGreater(len(log), 3)
        self.assertLess(len(log), 25)
        self.assertLess(log[-1]["t"] - log[0]["t"], 8 + 2 + 1)
        PROXY.configure()

if __name__ == "__main__":
    unittest.main(verbosity=2)
