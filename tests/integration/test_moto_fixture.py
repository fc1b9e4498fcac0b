#!/usr/bin/env python3
"""The moto fixture: the environment it hands out, and what the emulator behind it
verifies. These pin down the findings in tests/tools/README.md, so a moto upgrade
that changes them shows up here first.
"""

import datetime
import json
import os
import stat
import tempfile
import unittest
import unittest.mock
import urllib.error
import urllib.request

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

import moto_fixture
import presign_verify

ENDPOINT = os.environ.get("AWS_ENDPOINT_URL", "")
KEY = os.environ.get("AWS_ACCESS_KEY_ID", "")
SECRET = os.environ.get("AWS_SECRET_ACCESS_KEY", "")
REGION = os.environ.get("AWS_REGION", "eu-north-1")
SUFFIX = str(os.getpid())


def client(service, key=None, secret=None, endpoint=None):
    return boto3.client(
        service,
        endpoint_url=endpoint or ENDPOINT,
        region_name=REGION,
        aws_access_key_id=key or KEY,
        aws_secret_access_key=secret or SECRET,
        config=Config(retries={"total_max_attempts": 1}, s3={"addressing_style": "path"}),
    )


def code_of(call):
    try:
        call()
    except ClientError as exc:
        return exc.response["Error"]["Code"]
    return "OK"


class Environment(unittest.TestCase):
    def test_env_file_is_private_and_complete(self):
        path = os.path.join(os.environ["MOTO_STATE_DIR"], "env")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        with open(path) as f:
            names = {line.split("=", 1)[0].split()[1] for line in f}
        for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                     "AWS_REGION", "MOTO_PORT", "MOTO_PID"):
            self.assertIn(name, names)

    def test_run_sh_points_at_the_build(self):
        self.assertTrue(os.environ["OPSLINE"].endswith("/opsline"))
        self.assertTrue(os.path.isdir(os.environ["OPSLINE_BUILD_DIR"]))
        self.assertEqual(os.environ["MOTO_PORT"], ENDPOINT.rsplit(":", 1)[1])


class Authentication(unittest.TestCase):
    def test_admin_key_works_on_sts_iam_and_s3(self):
        self.assertTrue(client("sts").get_caller_identity()["Arn"].endswith(":user/admin"))
        client("iam").list_users()
        client("s3").list_buckets()

    def test_wrong_secret_is_rejected_by_every_service(self):
        bad = SECRET[:-1] + ("A" if SECRET[-1] != "A" else "B")
        self.assertEqual(code_of(lambda: client("sts", secret=bad).get_caller_identity()),
                         "SignatureDoesNotMatch")
        self.assertEqual(code_of(lambda: client("iam", secret=bad).list_users()),
                         "SignatureDoesNotMatch")
        self.assertEqual(code_of(lambda: client("s3", secret=bad).list_buckets()),
                         "SignatureDoesNotMatch")

    def test_unknown_key_is_rejected(self):
        unknown = "AKIA" + "Z" * 16
        self.assertEqual(code_of(lambda: client("sts", key=unknown).get_caller_identity()),
                         "InvalidClientTokenId")
        self.assertEqual(code_of(lambda: client("s3", key=unknown).list_buckets()),
                         "InvalidAccessKeyId")

    def test_request_time_is_not_checked(self):
        # Real AWS refuses a signature more than 15 minutes off (RequestTimeTooSkewed);
        # moto does not, so clock-skew handling cannot be tested against it.
        old = datetime.datetime(2020, 1, 1)
        with unittest.mock.patch("botocore.auth.get_current_datetime", return_value=old):
            self.assertEqual(code_of(lambda: client("sts").get_caller_identity()), "OK")


class Authorization(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        iam = client("iam")
        cls.user = f"limited-{SUFFIX}"
        cls.bucket = f"allowed-{SUFFIX}"
        iam.create_user(UserName=cls.user)
        policy = {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Action": ["s3:CreateBucket", "s3:PutObject"],
            "Resource": [f"arn:aws:s3:::{cls.bucket}", f"arn:aws:s3:::{cls.bucket}/*"]}]}
        iam.put_user_policy(UserName=cls.user, PolicyName="p", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=cls.user)["AccessKey"]
        cls.key, cls.secret = key["AccessKeyId"], key["SecretAccessKey"]

    def limited(self, service):
        return client(service, key=self.key, secret=self.secret)

    def test_new_key_works_at_once(self):
        arn = self.limited("sts").get_caller_identity()["Arn"]
        self.assertTrue(arn.endswith(f":user/{self.user}"))

    def test_s3_policy_is_enforced_per_action_and_resource(self):
        s3 = self.limited("s3")
        cfg = {"LocationConstraint": REGION}
        self.assertEqual(code_of(lambda: s3.create_bucket(
            Bucket=self.bucket, CreateBucketConfiguration=cfg)), "OK")
        self.assertEqual(code_of(lambda: s3.create_bucket(
            Bucket=f"other-{SUFFIX}", CreateBucketConfiguration=cfg)), "AccessDenied")
        self.assertEqual(code_of(lambda: s3.put_object(Bucket=self.bucket, Key="k", Body=b"1")),
                         "OK")
        self.assertEqual(code_of(lambda: s3.delete_object(Bucket=self.bucket, Key="k")),
                         "AccessDenied")

    def test_iam_actions_outside_the_policy_are_denied(self):
        self.assertEqual(code_of(lambda: self.limited("iam").create_user(UserName="x")),
                         "AccessDenied")


class PresignedUrls(unittest.TestCase):
    def test_moto_cannot_check_presigned_urls_under_auth(self):
        # Documents a moto 5.2.1 limitation: no Authorization header -> 500. Use
        # presign_verify.py instead. When this fails, moto learned it: update README.md.
        s3 = client("s3")
        bucket = f"presign-{SUFFIX}"
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        s3.put_object(Bucket=bucket, Key="k", Body=b"data")
        url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"})
        with self.assertRaises(urllib.error.HTTPError) as cm:
            urllib.request.urlopen(url, timeout=10).close()
        self.assertEqual(cm.exception.code, 500)
        self.assertEqual(presign_verify.verify(url, KEY, SECRET), (True, "ok"))

    def test_verifier_rejects_tampering_and_expiry(self):
        url = client("s3").generate_presigned_url(
            "get_object", Params={"Bucket": "b", "Key": "a b+c"}, ExpiresIn=60)
        self.assertEqual(presign_verify.verify(url, KEY, SECRET), (True, "ok"))
        self.assertFalse(presign_verify.verify(url.replace("/b/", "/c/"), KEY, SECRET)[0])
        self.assertFalse(presign_verify.verify(url, KEY, SECRET + "x")[0])
        self.assertFalse(presign_verify.verify(url, KEY, SECRET, method="PUT")[0])
        later = datetime.datetime.utcnow() + datetime.timedelta(seconds=120)
        self.assertEqual(presign_verify.verify(url, KEY, SECRET, now=later),
                         (False, "the URL has expired"))


class PythonApi(unittest.TestCase):
    def test_start_and_stop_a_second_emulator(self):
        with tempfile.TemporaryDirectory() as state:
            info = moto_fixture.start(state)
            try:
                self.assertNotEqual(info["endpoint"], ENDPOINT)
                sts = client("sts", info["access_key_id"], info["secret_access_key"],
                             info["endpoint"])
                self.assertTrue(sts.get_caller_identity()["Arn"].endswith(":user/admin"))
            finally:
                moto_fixture.stop(state)
            self.assertFalse(moto_fixture.is_moto(info["pid"]))
            self.assertFalse(os.path.exists(info["env_file"]))


if __name__ == "__main__":
    unittest.main(verbosity=2)
