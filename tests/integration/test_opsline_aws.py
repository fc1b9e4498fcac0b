#!/usr/bin/env python3
"""opsline's AWS client against the fixture's auth-enforcing moto: whoami and presign.
Retries through the fault proxy are in test_opsline_retries.py. Run through run.sh (moto
env, $OPSLINE, tools on PYTHONPATH).
"""
import json
import os
import subprocess
import tempfile
import unittest
import urllib.request

import boto3

import moto_fixture
import presign_verify

from opsline_it import KEY, SECRET, base_env, opsline


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
        moto_fixture.wait_until_answering(cls.proc, cls.port, "(no log)")
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

    def test_a_presigned_url_holds_only_for_the_secret_and_parameters_it_was_signed_for(self):
        url = self.presign("s3://presigned/x", "--expires", "60s")
        ok, why = presign_verify.verify(url, "AKIDPRESIGNTEST", "presign/secret+key", "GET")
        self.assertTrue(ok, why)
        self.assertEqual(presign_verify.verify(url, "AKIDPRESIGNTEST", "another-secret", "GET"),
                         (False, "signature does not match"))
        # opsline signing with another secret gives a URL that the first secret rejects.
        r = opsline("presign", "s3://presigned/x", "--expires", "60s",
                    env=dict(self.env, AWS_SECRET_ACCESS_KEY="another-secret"))
        self.assertEqual(r.returncode, 0, r.stderr)
        other = r.stdout.strip()
        ok, why = presign_verify.verify(other, "AKIDPRESIGNTEST", "another-secret", "GET")
        self.assertTrue(ok, why)
        self.assertNotEqual(other, url)
        self.assertEqual(
            presign_verify.verify(other, "AKIDPRESIGNTEST", "presign/secret+key", "GET"),
            (False, "signature does not match"))
        # Any parameter changed after signing breaks the signature.
        for old, new in (("X-Amz-Expires=60", "X-Amz-Expires=600"), ("/presigned/x?", "/presigned/y?"),
                         ("eu-north-1", "eu-west-1")):
            self.assertIn(old, url)
            tampered = url.replace(old, new, 1)
            self.assertEqual(
                presign_verify.verify(tampered, "AKIDPRESIGNTEST", "presign/secret+key", "GET"),
                (False, "signature does not match"), tampered)
        self.assertEqual(presign_verify.verify(url, "AKIDPRESIGNTEST", "presign/secret+key", "PUT"),
                         (False, "signature does not match"))

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


if __name__ == "__main__":
    unittest.main(verbosity=2)
