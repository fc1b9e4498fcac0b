#!/usr/bin/env python3
"""End-to-end tests of `opsline destroy` against moto with signatures and IAM policies
enforced: what apply made is gone (checked with boto3), the stores' entries too, a second
run reports absent and exits 0; a non-empty bucket, a bucket and a user opsline did not
create are refused with messages that name the fix; ownership is read from the tags when
the journal is lost; confirmation on a terminal.

usage: test_lifecycle_destroy.py  (env: OPSLINE=path/to/opsline)
"""
import json
import os
import pty
import shutil
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
from opsline_e2e import OPSLINE, MotoTestCase, read_env  # noqa: E402

from botocore.exceptions import ClientError  # noqa: E402

OWNER_TAG = {"Key": "managed-by", "Value": "opsline"}


class DestroyTest(MotoTestCase):
    opsline_timeout = 120
    keys_of_missing_ok = True

    def assert_bucket_gone(self, name):
        with self.assertRaises(ClientError) as cm:
            self.client("s3").head_bucket(Bucket=name)
        self.assertEqual(cm.exception.response["Error"]["Code"], "404")

    def assert_user_gone(self, name):
        with self.assertRaises(ClientError) as cm:
            self.client("iam").get_user(UserName=name)
        self.assertEqual(cm.exception.response["Error"]["Code"], "NoSuchEntity")

    def destroy(self, *args):
        return self.opsline("destroy", *args, "--yes")

    def test_destroy_removes_everything_and_a_second_run_reports_absent(self):
        self.apply_ok("acme")
        key = self.env_file("acme-production")["AWS_ACCESS_KEY_ID"]
        r = self.destroy("acme", "--json")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        doc = json.loads(r.stdout)
        self.assertEqual(doc["command"], "destroy")
        for item in doc["items"]:
            outcomes = {s["stage"]: s["outcome"] for s in item["stages"]}
            self.assertEqual(outcomes, {"bucket": "deleted", "iam": "deleted",
                                        "policy": "deleted", "dotenv": "deleted"}, item)
        for env in ("production", "staging"):
            name = f"acme-{env}"
            self.assert_bucket_gone(name)
            self.assert_user_gone(name)
            # it held only opsline's four variables: the file goes with them
            self.assertFalse(os.path.exists(os.path.join(self.work, f"{name}.env")), name)
        with self.assertRaises(ClientError):  # the key went with the user
            self.client("sts", (key, "x" * 40)).get_caller_identity()
        again = self.destroy("acme")
        self.assertEqual(again.returncode, 0, again.stdout + again.stderr)
        self.assertNotIn("deleted", again.stdout)
        self.assertEqual(again.stdout.count(" absent\n"), 8, again.stdout)

    def test_a_env_file_with_other_lines_keeps_them(self):
        path = os.path.join(self.work, "mine-production.env")
        with open(path, "w") as f:
            f.write("# the app's own settings\nLOG_LEVEL=debug\n")
        os.chmod(path, 0o600)
        self.apply_ok("mine", "-e", "production")
        self.assertIn("AWS_ACCESS_KEY_ID", self.env_file("mine-production"))
        r = self.destroy("mine", "-e", "production")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        with open(path) as f:
            self.assertEqual(f.read(), "# the app's own settings\nLOG_LEVEL=debug\n")

    def test_destroy_removes_the_entry_in_every_store(self):
        stores = "dotenv,aws-secretsmanager"
        self.apply_ok("two", "-e", "production", "--secrets", stores)
        sm = self.client("secretsmanager")
        sm.describe_secret(SecretId="opsline/two-production")
        r = self.destroy("two", "-e", "production", "--secrets", stores)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("aws-secretsmanager deleted", " ".join(r.stdout.split()))
        with self.assertRaises(ClientError) as cm:
            sm.get_secret_value(SecretId="opsline/two-production")
        self.assertIn(cm.exception.response["Error"]["Code"],
                      ("ResourceNotFoundException", "InvalidRequestException"))
        self.assertFalse(os.path.exists(os.path.join(self.work, "two-production.env")))
        again = self.destroy("two", "-e", "production", "--secrets", stores)
        self.assertEqual(again.returncode, 0, again.stdout + again.stderr)
        self.assertIn("aws-secretsmanager absent", " ".join(again.stdout.split()))

    def test_a_non_empty_bucket_is_refused_and_emptied_with_empty_bucket(self):
        self.apply_ok("full", "-e", "production", "--set", "bucket.versioning=true")
        s3 = self.client("s3")
        s3.put_object(Bucket="full-production", Key="a.txt", Body=b"1")
        s3.put_object(Bucket="full-production", Key="a.txt", Body=b"2")
        s3.delete_object(Bucket="full-production", Key="a.txt")  # a delete marker
        key = self.env_file("full-production")
        r = self.destroy("full", "-e", "production")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("bucket full-production still holds objects", r.stderr)
        self.assertIn("--empty-bucket", r.stderr)
        s3.head_bucket(Bucket="full-production")  # still there
        # and so is what reaches the data: the user, its key, the key's secret in the .env
        self.assertIn("kept: 'bucket' must be removed first", r.stdout)
        iam = self.client("iam")
        iam.get_user(UserName="full-production")
        keys = iam.list_access_keys(UserName="full-production")["AccessKeyMetadata"]
        self.assertEqual([k["AccessKeyId"] for k in keys], [key["AWS_ACCESS_KEY_ID"]])
        self.assertEqual(self.env_file("full-production"), key)
        r = self.destroy("full", "-e", "production", "--empty-bucket")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assert_bucket_gone("full-production")
        self.assert_user_gone("full-production")

    def test_a_bucket_opsline_did_not_create_is_refused_unless_adopted(self):
        self.client("s3").create_bucket(
            Bucket="foreign-production",
            CreateBucketConfiguration={"LocationConstraint": "eu-north-1"})
        r = self.destroy("foreign", "-e", "production")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("bucket foreign-production was not created by opsline", r.stderr)
        self.assertIn("--adopt", r.stderr)
        self.client("s3").head_bucket(Bucket="foreign-production")
        r = self.destroy("foreign", "-e", "production", "--adopt")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assert_bucket_gone("foreign-production")

    def test_a_user_opsline_did_not_create_is_refused_unless_adopted(self):
        self.client("iam").create_user(UserName="alien-production")
        r = self.destroy("alien", "-e", "production")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("IAM user alien-production was not created by opsline", r.stderr)
        self.client("iam").get_user(UserName="alien-production")
        r = self.destroy("alien", "-e", "production", "--adopt")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assert_user_gone("alien-production")

    def test_the_tags_tell_ownership_when_the_journal_is_lost(self):
        self.apply_ok("lost", "-e", "production")
        shutil.rmtree(os.path.join(self.work, ".opsline"))
        tags = self.client("s3").get_bucket_tagging(Bucket="lost-production")["TagSet"]
        self.assertIn(OWNER_TAG, tags)  # apply's ownership tags
        self.assertIn(OWNER_TAG, self.client("iam").list_user_tags(UserName="lost-production")["Tags"])
        r = self.destroy("lost", "-e", "production")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assert_bucket_gone("lost-production")
        self.assert_user_gone("lost-production")

    def test_without_the_journal_or_a_tag_nothing_is_removed(self):
        self.apply_ok("bare", "-e", "production")
        shutil.rmtree(os.path.join(self.work, ".opsline"))
        self.client("s3").delete_bucket_tagging(Bucket="bare-production")
        self.client("iam").untag_user(UserName="bare-production", TagKeys=["managed-by"])
        r = self.destroy("bare", "-e", "production")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.client("s3").head_bucket(Bucket="bare-production")
        self.client("iam").get_user(UserName="bare-production")
        self.assertEqual(len(self.keys_of("bare-production")), 1)

    def test_destroy_without_a_terminal_needs_yes(self):
        self.apply_ok("keep", "-e", "production")
        r = self.opsline("destroy", "keep", "-e", "production")
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("--yes", r.stderr)
        self.client("s3").head_bucket(Bucket="keep-production")

    def run_on_tty(self, args, answer):
        """opsline args with a terminal as stdin that answers answer; (exit code, stderr)."""
        master, slave = pty.openpty()
        try:
            p = subprocess.Popen([OPSLINE, *args], cwd=self.work, env=self.env(), stdin=slave,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            os.write(master, answer.encode())
            out, err = p.communicate(timeout=self.opsline_timeout)
        finally:
            os.close(master)
            os.close(slave)
        return p.returncode, err

    def test_destroy_on_a_terminal_asks_and_does_nothing_without_yes(self):
        self.apply_ok("ask", "-e", "production")
        code, err = self.run_on_tty(["destroy", "ask", "-e", "production"], "no\n")
        self.assertEqual(code, 1, err)
        self.assertIn("ask-production", err)
        self.assertIn("Type 'yes' to destroy", err)
        self.client("s3").head_bucket(Bucket="ask-production")
        code, err = self.run_on_tty(["destroy", "ask", "-e", "production"], "yes\n")
        self.assertEqual(code, 0, err)
        self.assert_bucket_gone("ask-production")


if __name__ == "__main__":
    unittest.main(verbosity=2)
