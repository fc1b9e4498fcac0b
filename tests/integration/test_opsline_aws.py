#!/usr/bin/env python3
"""opsline's AWS client against the fixture's auth-enforcing moto, directly and through
the fault proxy: whoami, presign, retries, backoff, the retry quota, timeouts and giving
up cleanly. Run through run.sh (moto env, $OPSLINE, tools on PYTHONPATH).
"""
import json
import os
import re
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.request

import boto3
from botocore.config import Config

import faultproxy
import moto_fixture
import presign_verify

OPSLINE = os.environ["OPSLINE"]
ENDPOINT = os.environ["AWS_ENDPOINT_URL"]
KEY = os.environ["AWS_ACCESS_KEY_ID"]
SECRET = os.environ["AWS_SECRET_ACCESS_KEY"]
PROXY = None


def setUpModule():
    global PROXY
    PROXY = faultproxy.ProxyProcess(ENDPOINT)


def tearDownModule():
    if PROXY is not None:
        PROXY.stop()


def base_env(**extra):
    e = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    e.update({
        "AWS_ENDPOINT_URL": ENDPOINT,
        "AWS_ACCESS_KEY_ID": KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_REGION": "eu-north-1",
        "AWS_DEFAULT_REGION": "eu-north-1",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "OPSLINE_RETRY_BASE_MS": "20",
    })
    e.update(extra)
    return {k: v for k, v in e.items() if v is not None}


def opsline(*args, env=None, cwd=None, timeout=120):
    return subprocess.run([OPSLINE, *args], env=env or base_env(), cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


class WhoamiTest(unittest.TestCase):
    def test_whoami_prints_the_admin_identity(self):
        r = opsline("whoami")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("arn:aws:iam::123456789012:user/admin", r.stdout)
        self.assertIn("environment variables", r.stdout)
        self.assertNotIn(SECRET, r.stdout + r.stderr)

    def test_whoami_json_matches_the_aws_cli(self):
        r = opsline("whoami", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        ours = json.loads(r.stdout)
        cli = subprocess.run(["aws", "sts", "get-caller-identity", "--output", "json"],
                             env=base_env(), capture_output=True, text=True, timeout=60)
        self.assertEqual(cli.returncode, 0, cli.stderr)
        theirs = json.loads(cli.stdout)
        for k in ("Account", "Arn", "UserId"):
            self.assertEqual(ours[k], theirs[k])

    def test_whoami_with_a_wrong_secret_fails_clearly_without_the_secret(self):
        wrong = "Wr0ng" + SECRET[5:]
        r = opsline("whoami", env=base_env(AWS_SECRET_ACCESS_KEY=wrong))
        self.assertEqual(r.returncode, 1)
        self.assertIn("SignatureDoesNotMatch", r.stderr)
        self.assertIn("environment variables", r.stderr)
        self.assertNotIn(wrong, r.stdout + r.stderr)

    def test_whoami_without_credentials_says_what_to_do(self):
        r = opsline("whoami", env=base_env(AWS_ACCESS_KEY_ID=None, AWS_SECRET_ACCESS_KEY=None))
        self.assertEqual(r.returncode, 2)
        self.assertIn("AWS_ACCESS_KEY_ID", r.stderr)

    def test_whoami_reads_a_named_profile_from_the_shared_files(self):
        d = tempfile.mkdtemp()
        with open(os.path.join(d, "credentials"), "w") as f:
            f.write(f"[ci]\naws_access_key_id = {KEY}\naws_secret_access_key = {SECRET}\n")
        with open(os.path.join(d, "config"), "w") as f:
            f.write("[profile ci]\nregion = eu-west-1\n")
        env = base_env(AWS_ACCESS_KEY_ID=None, AWS_SECRET_ACCESS_KEY=None, AWS_REGION=None,
                       AWS_DEFAULT_REGION=None,
                       AWS_PROFILE="ci",
                       AWS_SHARED_CREDENTIALS_FILE=os.path.join(d, "credentials"),
                       AWS_CONFIG_FILE=os.path.join(d, "config"))
        r = opsline("whoami", env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("profile 'ci'", r.stdout)
        self.assertIn("eu-west-1", r.stdout)


class PresignTest(unittest.TestCase):
    """moto cannot check presigned URLs while it enforces auth (tests/tools/README.md), so
    the fetch goes to a second moto without enforcement, and the signature itself is
    checked against botocore as reference signer."""

    @classmethod
    def setUpClass(cls):
        cls.port = moto_fixture.free_port()
        cls.proc = subprocess.Popen(moto_fixture.moto_command(cls.port),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cls.url = f"http://127.0.0.1:{cls.port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(cls.url + "/moto-api/", timeout=1).read()
                break
            except urllib.error.HTTPError:
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        cls.env = base_env(AWS_ENDPOINT_URL=cls.url, AWS_ACCESS_KEY_ID="AKIDPRESIGNTEST",
                           AWS_SECRET_ACCESS_KEY="presign/secret+key")
        cls.s3 = boto3.client("s3", endpoint_url=cls.url, region_name="eu-north-1",
                              aws_access_key_id="AKIDPRESIGNTEST",
                              aws_secret_access_key="presign/secret+key")
        cls.s3.create_bucket(Bucket="presigned",
                             CreateBucketConfiguration={"LocationConstraint": "eu-north-1"})

    @classmethod
    def tearDownClass(cls):
        cls.proc.terminate()
        cls.proc.wait(10)

    def presign(self, *args):
        r = opsline("presign", *args, env=self.env)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.strip()

    def test_a_presigned_get_fetches_an_object_put_with_boto3(self):
        self.s3.put_object(Bucket="presigned", Key="dir/hello world.txt", Body=b"hello\n")
        url = self.presign("s3://presigned/dir/hello world.txt", "--expires", "15m")
        self.assertIn("X-Amz-Expires=900", url)
        with urllib.request.urlopen(url, timeout=10) as resp:
            self.assertEqual(resp.read(), b"hello\n")
        ok, why = presign_verify.verify(url, "AKIDPRESIGNTEST", "presign/secret+key", "GET")
        self.assertTrue(ok, why)

    def test_a_presigned_put_uploads_an_object_boto3_reads(self):
        url = self.presign("s3://presigned/up.bin", "--method", "PUT", "--expires", "1h")
        # An explicit type: urllib's default (form-urlencoded) makes moto's Flask layer
        # swallow the body as form fields.
        req = urllib.request.Request(url, data=b"uploaded", method="PUT",
                                     headers={"Content-Type": "application/octet-stream"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            self.assertEqual(resp.status, 200)
        body = self.s3.get_object(Bucket="presigned", Key="up.bin")["Body"].read()
        self.assertEqual(body, b"uploaded")
        ok, why = presign_verify.verify(url, "AKIDPRESIGNTEST", "presign/secret+key", "PUT")
        self.assertTrue(ok, why)

    def test_a_presigned_url_signed_with_another_secret_does_not_verify(self):
        url = self.presign("s3://presigned/x", "--expires", "60s")
        ok, _ = presign_verify.verify(url, "AKIDPRESIGNTEST", "another-secret", "GET")
        self.assertFalse(ok)

    def test_expiry_beyond_seven_days_or_zero_is_refused(self):
        for bad in ("8d", "604801", "0", "soon"):
            r = opsline("presign", "s3://presigned/x", "--expires", bad, env=self.env)
            self.assertEqual(r.returncode, 2, bad)
            self.assertIn("--expires", r.stderr)
        self.presign("s3://presigned/x", "--expires", "7d")

    def test_malformed_addresses_are_refused(self):
        for bad in ("presigned/x", "s3://presigned", "s3://presigned/", "s3:///x"):
            r = opsline("presign", bad, env=self.env)
            self.assertEqual(r.returncode, 2, bad)


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
        self.configure(latency_ms=1500, rules=[])
        t = time.monotonic()
        r = opsline("whoami", env=self.env(AWS_MAX_ATTEMPTS="2", OPSLINE_TIMEOUT_MS="300"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("timed out", r.stderr.lower())
        self.assertLess(time.monotonic() - t, 30)
        self.configure(latency_ms=0, rules=[])

    def test_backoff_is_logged_with_growing_caps_in_verbose_mode(self):
        d = tempfile.mkdtemp()
        self.configure(rules=[{"fault": "slowdown", "first_n": 3, "service": "s3"}])
        r = opsline("apply", f"backoff{os.getpid()}", "-e", "production", "-v",
                    "--state-dir", os.path.join(d, "state"),
                    env=self.env(AWS_MAX_ATTEMPTS="5"), cwd=d)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        retries = re.findall(r"debug: retry: s3 \S+ \S+: \S+ \(HTTP 503, attempt (\d)\)", r.stderr)
        self.assertEqual(retries, ["1", "2", "3"])

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
        d = tempfile.mkdtemp()
        name = f"lost{os.getpid()}"
        self.configure(rules=[{"fault": "truncate", "first_n": 1,
                               "body_contains": "Action=CreateAccessKey"}])
        r = opsline("apply", name, "-e", "production", "--state-dir",
                    os.path.join(d, "state"), cwd=d, env=self.env())
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(PROXY.stats()["faulted"]["truncate"], 1)
        user = f"{name}-production"
        iam = boto3.client("iam", endpoint_url=ENDPOINT, region_name="eu-north-1",
                           aws_access_key_id=KEY, aws_secret_access_key=SECRET)
        keys = [k["AccessKeyId"] for k in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]]
        stored = {}
        with open(os.path.join(d, f"{user}.env")) as f:
            for line in f:
                if "=" in line and not line.startswith("#"):
                    k, v = line.strip().split("=", 1)
                    stored[k] = v.strip('"')
        self.assertEqual(keys, [stored["AWS_ACCESS_KEY_ID"]])
        s3 = boto3.client("s3", endpoint_url=ENDPOINT, region_name="eu-north-1",
                          aws_access_key_id=stored["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=stored["AWS_SECRET_ACCESS_KEY"],
                          config=Config(retries={"total_max_attempts": 1}))
        s3.put_object(Bucket=user, Key="k", Body=b"x")
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

    def test_adaptive_mode_finishes_a_batch_under_a_request_rate_limit(self):
        d = tempfile.mkdtemp()
        self.configure(rules=[{"fault": "slowdown", "rate": 40, "burst": 10, "service": "s3"}])
        products = [f"a{os.getpid()}x{i}" for i in range(12)]
        r = opsline("apply", *products, "-e", "production", "--state-dir",
                    os.path.join(d, "state"), "--json", cwd=d,
                    env=self.env(AWS_RETRY_MODE="adaptive", AWS_MAX_ATTEMPTS="10",
                                 OPSLINE_RETRY_BASE_MS="50"), timeout=300)
        self.assertEqual(r.returncode, 0, r.stdout[-2000:] + r.stderr[-2000:])
        report = json.loads(r.stdout)
        self.assertEqual(report["summary"]["failed"], 0)
        self.assertGreater(PROXY.stats()["faulted"].get("slowdown", 0), 0)
        self.configure(rules=[])


if __name__ == "__main__":
    unittest.main(verbosity=2)
