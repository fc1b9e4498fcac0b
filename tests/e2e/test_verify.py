#!/usr/bin/env python3
"""End-to-end tests of the verify stage against moto with signatures and IAM policies
enforced: with the stored key it puts, gets and deletes a probe in the item's bucket and is
denied another bucket; a policy narrowed by hand fails the item naming the missing
permission (and a rotation then keeps the old key); a policy broader than the bucket fails.

usage: test_verify.py  (env: OPSLINE=path/to/opsline)
"""
import json
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
from opsline_e2e import MotoTestCase  # noqa: E402

from botocore.exceptions import ClientError  # noqa: E402


def policy(actions, resources):
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": actions, "Resource": resources}]})


class VerifyTest(MotoTestCase):
    opsline_timeout = 120

    def stages(self, r):
        return {s["stage"]: s for s in json.loads(r.stdout)["items"][0]["stages"]}

    def key_status(self, user):
        meta = self.client("iam").list_access_keys(UserName=user)["AccessKeyMetadata"]
        return {k["AccessKeyId"]: k["Status"] for k in meta}

    def test_verify_passes_for_a_correct_item_and_leaves_no_probe(self):
        r = self.opsline("apply", "good", "-e", "production", "--verify", "--json")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        v = self.stages(r)["verify"]
        self.assertEqual(v["outcome"], "unchanged", v)
        self.assertIn("can put, get and delete in good-production", v["reason"])
        listed = self.client("s3").list_objects_v2(Bucket="good-production")
        self.assertEqual(listed.get("KeyCount", 0), 0, listed)

    def test_a_policy_narrowed_by_hand_fails_naming_the_permission_and_rotate_keeps_the_old_key(self):
        self.apply_ok("narrow", "-e", "production")
        old = self.env_file("narrow-production")["AWS_ACCESS_KEY_ID"]
        self.client("iam").put_user_policy(
            UserName="narrow-production", PolicyName="narrow-production",
            PolicyDocument=policy(["s3:GetObject", "s3:DeleteObject"],
                                  ["arn:aws:s3:::narrow-production/*"]))
        r = self.opsline("rotate", "narrow", "-e", "production", "--verify",
                         "--set", "verify.wait_ms=1000")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("s3:PutObject", r.stderr)
        self.assertIn("the key's policy does not allow s3:PutObject", r.stderr)
        self.assertNotIn("rotated", r.stdout)
        self.assertEqual(self.key_status("narrow-production")[old], "Active")
        # apply restores the policy; rotate then resumes and retires the old key
        self.apply_ok("narrow", "-e", "production")
        r = self.opsline("rotate", "narrow", "-e", "production", "--verify")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        new = self.env_file("narrow-production")["AWS_ACCESS_KEY_ID"]
        self.assertEqual(self.key_status("narrow-production"), {new: "Active"})
        self.assertNotEqual(new, old)

    def test_a_policy_broader_than_the_bucket_fails(self):
        self.apply_ok("wide", "-e", "production")
        self.apply_ok("other", "-e", "production")
        self.client("iam").put_user_policy(
            UserName="wide-production", PolicyName="wide-production",
            PolicyDocument=policy(["s3:*"], ["*"]))
        r = self.opsline("rotate", "wide", "-e", "production", "--verify",
                         "--set", "verify.denied_bucket=other-production")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("may write to bucket other-production", r.stderr)
        with self.assertRaises(ClientError):  # the probe was removed again
            self.client("s3").head_object(Bucket="other-production", Key=".opsline-verify-probe")

    def test_a_bad_option_is_refused_before_any_request(self):
        r = self.assert_refused_before_any_request(
            "apply", "x", "--verify", "--set", "verify.denied_bucket=Not_A_Bucket")
        self.assertIn("denied_bucket", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
