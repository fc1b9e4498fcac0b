#!/usr/bin/env python3
"""End-to-end acceptance tests of `opsline apply` against moto with signatures and IAM
policies enforced. Results are checked with boto3 (an independent client), never only with
opsline itself.

usage: test_apply.py  (env: OPSLINE=path/to/opsline, OPSLINE_BUILD_DIR=build dir)
"""
import json
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
from opsline_e2e import OPSLINE, MotoTestCase, read_env  # noqa: E402

from botocore.exceptions import ClientError  # noqa: E402

BUILD_DIR = os.environ.get("OPSLINE_BUILD_DIR", os.path.dirname(OPSLINE))

RUNBOOK_ACTIONS = {
    "s3:ListBucketMultipartUploads", "s3:GetObjectRetention", "s3:DeleteObjectVersion",
    "s3:RestoreObject", "s3:ListBucket", "s3:ListMultipartUploadParts", "s3:PutObject",
    "s3:GetObjectAcl", "s3:GetObject", "s3:PutObjectRetention", "s3:PutObjectVersionAcl",
    "s3:GetObjectVersionAcl", "s3:DeleteObject", "s3:PutObjectAcl", "s3:GetObjectVersion",
}


class ApplyTest(MotoTestCase):
    opsline_timeout = 120

    # ---- the runbook, end to end -----------------------------------------------------------

    def test_apply_creates_the_runbook_resources_and_a_rerun_changes_nothing(self):
        r = self.opsline("apply", "acme")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        s3, iam = self.client("s3"), self.client("iam")
        for env, other in (("production", "staging"), ("staging", "production")):
            name, other_name = f"acme-{env}", f"acme-{other}"
            loc = s3.get_bucket_location(Bucket=name)["LocationConstraint"]
            self.assertEqual(loc, "eu-north-1")
            pab = s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"]
            self.assertEqual(pab, {"BlockPublicAcls": True, "IgnorePublicAcls": True,
                                   "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
            enc = s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]
            algo = enc["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"]
            self.assertEqual(algo, "AES256")
            self.assertNotIn("Status", s3.get_bucket_versioning(Bucket=name))
            self.assertNotIn("LoggingEnabled", s3.get_bucket_logging(Bucket=name))
            iam.get_user(UserName=name)
            with self.assertRaises(ClientError) as cm:
                iam.get_login_profile(UserName=name)
            self.assertEqual(cm.exception.response["Error"]["Code"], "NoSuchEntity")
            self.assertEqual(len(self.keys_of(name)), 1)
            doc = iam.get_user_policy(UserName=name, PolicyName=name)["PolicyDocument"]
            if isinstance(doc, str):
                doc = json.loads(doc)
            actions, resources = set(), set()
            for st in doc["Statement"]:
                self.assertEqual(st["Effect"], "Allow")
                a = st["Action"]
                actions |= set([a] if isinstance(a, str) else a)
                res = st["Resource"]
                resources |= set([res] if isinstance(res, str) else res)
            self.assertEqual(actions, RUNBOOK_ACTIONS)
            self.assertEqual(resources, {f"arn:aws:s3:::{name}", f"arn:aws:s3:::{name}/*"})

            path = os.path.join(self.work, f"{name}.env")
            self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
            v = read_env(path)
            self.assertEqual(v["S3_BUCKET"], name)
            self.assertEqual(v["AWS_REGION"], "eu-north-1")
            self.assertEqual(self.keys_of(name), [v["AWS_ACCESS_KEY_ID"]])
            own = self.client("s3", (v["AWS_ACCESS_KEY_ID"], v["AWS_SECRET_ACCESS_KEY"]))
            own.put_object(Bucket=name, Key="k.txt", Body=b"x")
            self.assertEqual(own.get_object(Bucket=name, Key="k.txt")["Body"].read(), b"x")
            own.delete_object(Bucket=name, Key="k.txt")
            with self.assertRaises(ClientError) as cm:
                own.put_object(Bucket=other_name, Key="k.txt", Body=b"x")
            self.assertEqual(cm.exception.response["Error"]["Code"], "AccessDenied")

        before = {n: self.keys_of(n) for n in ("acme-production", "acme-staging")}
        env_before = open(os.path.join(self.work, "acme-production.env")).read()
        r = self.opsline("apply", "acme", "--json")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        report = json.loads(r.stdout)
        for item in report["items"]:
            self.assertTrue(item["ok"])
            for st in item["stages"]:
                self.assertEqual(st["outcome"], "unchanged", (item["name"], st))
        self.assertEqual(report["summary"]["created"], 0)
        after = {n: self.keys_of(n) for n in ("acme-production", "acme-staging")}
        self.assertEqual(before, after)
        self.assertEqual(env_before, open(os.path.join(self.work, "acme-production.env")).read())

    def test_a_run_killed_after_create_access_key_leaves_no_orphaned_key(self):
        r = self.opsline("apply", "kill", "-e", "production",
                         env=self.env(OPSLINE_TEST_KILL_AT="iam.after_create_access_key"))
        self.assertEqual(r.returncode, -9, r.stdout + r.stderr)
        orphan = self.keys_of("kill-production")
        self.assertEqual(len(orphan), 1)
        self.assertFalse(os.path.exists(os.path.join(self.work, "kill-production.env")))
        r = self.opsline("apply", "kill", "-e", "production")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        keys = self.keys_of("kill-production")
        v = self.env_file("kill-production")
        self.assertEqual(keys, [v["AWS_ACCESS_KEY_ID"]])
        self.assertNotEqual(keys, orphan)
        own = self.client("s3", (v["AWS_ACCESS_KEY_ID"], v["AWS_SECRET_ACCESS_KEY"]))
        own.put_object(Bucket="kill-production", Key="k", Body=b"x")

    def test_a_run_killed_before_create_access_key_answers_leaves_no_orphaned_key(self):
        r = self.opsline("apply", "kill2", "-e", "staging",
                         env=self.env(OPSLINE_TEST_KILL_AT="iam.before_create_access_key"))
        self.assertEqual(r.returncode, -9, r.stdout + r.stderr)
        r = self.opsline("apply", "kill2", "-e", "staging")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        v = self.env_file("kill2-staging")
        self.assertEqual(self.keys_of("kill2-staging"), [v["AWS_ACCESS_KEY_ID"]])

    # ---- secrets ----------------------------------------------------------------------------

    def test_the_secret_is_in_no_log_output_json_or_journal(self):
        r1 = self.opsline("apply", "quiet", "-v", "-e", "production")
        self.assertEqual(r1.returncode, 0, r1.stdout + r1.stderr)
        secret = self.env_file("quiet-production")["AWS_SECRET_ACCESS_KEY"]
        self.assertGreater(len(secret), 20)
        self.assertNotIn(secret, r1.stdout + r1.stderr)
        # A second key appears only after the first is lost: force one with --json.
        os.remove(os.path.join(self.work, "quiet-production.env"))
        iam = self.client("iam")
        for k in self.keys_of("quiet-production"):
            iam.delete_access_key(UserName="quiet-production", AccessKeyId=k)
        r2 = self.opsline("apply", "quiet", "--json", "-v", "-e", "production")
        self.assertEqual(r2.returncode, 0, r2.stdout + r2.stderr)
        secret2 = self.env_file("quiet-production")["AWS_SECRET_ACCESS_KEY"]
        self.assertNotIn(secret2, r2.stdout + r2.stderr)
        json.loads(r2.stdout)
        for root, _, files in os.walk(os.path.join(self.work, ".opsline")):
            for f in files:
                data = open(os.path.join(root, f), errors="replace").read()
                self.assertNotIn(secret, data)
                self.assertNotIn(secret2, data)
        self.assertNotIn(self.admin[1], r1.stdout + r1.stderr + r2.stdout + r2.stderr)

    # ---- bad input: exit 2, nothing sent ----------------------------------------------------

    def assert_refused_before_any_request(self, *args, expect=None, files=None):
        for name, text in (files or {}).items():
            with open(os.path.join(self.work, name), "w") as f:
                f.write(text)
        r = super().assert_refused_before_any_request(*args)
        if expect:
            self.assertIn(expect, r.stderr)
        return r

    def test_bad_names_are_refused_before_any_request(self):
        self.assert_refused_before_any_request("apply", "Acme", expect="Acme")
        self.assert_refused_before_any_request("apply", "a" * 60, expect="63")
        self.assert_refused_before_any_request("apply", "xn--acme", expect="xn--")
        self.assert_refused_before_any_request("apply", "acme", "-e", "prod_1")

    def test_a_malformed_pipeline_file_is_refused_before_any_request(self):
        self.assert_refused_before_any_request(
            "apply", "acme", "--pipeline", "p.json", expect="p.json",
            files={"p.json": '{"stages": ["bucket", "iam",]}'})

    def test_an_unknown_stage_option_is_refused_before_any_request(self):
        r = self.assert_refused_before_any_request(
            "apply", "acme", "--pipeline", "p.json", expect="versionning",
            files={"p.json": json.dumps({"stages": [
                {"stage": "bucket", "options": {"versionning": True}}, "iam", "policy",
                "dotenv"]})})
        self.assertIn("versioning", r.stderr)

    def test_a_broken_plugin_is_refused_before_any_request(self):
        broken = os.path.join(BUILD_DIR, "test-plugins", "abi_major")
        if not os.path.isdir(broken):
            self.skipTest(f"{broken} not built")
        r = self.assert_refused_before_any_request("apply", "acme", "--plugin-dir", broken)
        self.assertIn(".so", r.stderr)

    # ---- wrong credentials: exit 1, nothing created ------------------------------------------

    def test_wrong_credentials_fail_clearly_and_create_nothing(self):
        r = self.opsline("apply", "nocreds", env=self.env(AWS_SECRET_ACCESS_KEY="wrong" * 8))
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("environment", r.stderr)
        self.assertNotIn("wrong" * 8, r.stdout + r.stderr)
        buckets = [b["Name"] for b in self.client("s3").list_buckets()["Buckets"]]
        self.assertNotIn("nocreds-production", buckets)
        users = [u["UserName"] for u in self.client("iam").list_users()["Users"]]
        self.assertNotIn("nocreds-production", users)


if __name__ == "__main__":
    unittest.main(verbosity=2)
