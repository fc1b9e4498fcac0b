#!/usr/bin/env python3
"""End-to-end tests of `opsline plan` against moto with signatures and IAM policies
enforced, every request passing through the fault proxy, whose log proves that plan sent
no write: a fresh product is all "would create"; after apply, no changes (exit 0); a
public-access setting turned off with boto3 shows as exactly that change (exit 3) and apply
fixes it; a narrowed policy names the actions; a store that lost the secret is a change.

usage: test_lifecycle_plan.py  (env: OPSLINE=path/to/opsline)
"""
import json
import os
import re
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
import faultproxy  # noqa: E402
from opsline_e2e import MotoTestCase  # noqa: E402

READS = ("Get", "List", "Head")


def is_write(entry):
    """A request that may change something: S3 by method, Query APIs by action."""
    if entry["service"] == "s3":
        return entry["method"] not in ("GET", "HEAD")
    action = entry.get("action") or ""
    return not action.startswith(READS)


class PlanTest(MotoTestCase):
    opsline_timeout = 120

    def setUp(self):
        super().setUp()
        self.proxy = faultproxy.ProxyProcess(self.endpoint)
        self.addCleanup(self.proxy.stop)

    def plan(self, *args):
        """plan --json through the proxy; (exit code, {(item, stage): stage}), after checking
        that not one write was sent."""
        self.proxy.control("POST", "reset")
        r = self.opsline("plan", *args, "--json",
                         env=self.env(AWS_ENDPOINT_URL=self.proxy.url))
        log = self.proxy.requests()
        self.assertTrue(log, "plan sent no request at all")
        writes = [e for e in log if is_write(e)]
        self.assertEqual(writes, [], "plan sent a write request")
        self.assertIn(r.returncode, (0, 3), r.stdout + r.stderr)
        doc = json.loads(r.stdout)
        self.assertEqual(doc["command"], "plan")
        stages = {(i["name"], s["stage"]): s for i in doc["items"] for s in i["stages"]}
        return r.returncode, stages

    def changes(self, stages):
        return {k: s for k, s in stages.items() if s["outcome"] != "no change"}

    def test_a_fresh_product_is_all_creates_and_after_apply_nothing_changes(self):
        code, stages = self.plan("acme")
        self.assertEqual(code, 3)
        self.assertEqual(len(stages), 8)
        for key, s in stages.items():
            self.assertEqual(s["outcome"], "would create", key)
        # nothing was created by the plan (one moto serves the class: look for acme's own)
        names = {b["Name"] for b in self.client("s3").list_buckets()["Buckets"]}
        self.assertFalse(names & {"acme-production", "acme-staging"}, names)
        users = {u["UserName"] for u in self.client("iam").list_users()["Users"]}
        self.assertFalse(users & {"acme-production", "acme-staging"}, users)
        self.apply_ok("acme")
        code, stages = self.plan("acme")
        self.assertEqual(code, 0, stages)
        self.assertEqual(self.changes(stages), {})

    def test_a_public_access_setting_turned_off_is_exactly_one_change_and_apply_fixes_it(self):
        self.apply_ok("pab")
        self.client("s3").put_public_access_block(
            Bucket="pab-production", PublicAccessBlockConfiguration={
                "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": False,
                "RestrictPublicBuckets": True})
        code, stages = self.plan("pab")
        self.assertEqual(code, 3)
        changes = self.changes(stages)
        self.assertEqual(list(changes), [("pab-production", "bucket")], changes)
        reason = changes[("pab-production", "bucket")]["reason"]
        self.assertEqual(changes[("pab-production", "bucket")]["outcome"], "would update")
        self.assertIn("BlockPublicPolicy", reason)
        for other in ("BlockPublicAcls", "IgnorePublicAcls", "RestrictPublicBuckets"):
            self.assertNotIn(other, reason)
        self.apply_ok("pab")
        pab = self.client("s3").get_public_access_block(Bucket="pab-production")
        self.assertTrue(pab["PublicAccessBlockConfiguration"]["BlockPublicPolicy"])
        code, stages = self.plan("pab")
        self.assertEqual(code, 0, self.changes(stages))

    def test_a_narrowed_policy_names_the_actions_apply_would_add(self):
        self.apply_ok("pol", "-e", "production")
        self.client("iam").put_user_policy(
            UserName="pol-production", PolicyName="pol-production",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": ["s3:GetObject", "s3:DeleteObject", "s3:PutBucketAcl"],
                 "Resource": ["arn:aws:s3:::pol-production", "arn:aws:s3:::pol-production/*"]}]}))
        code, stages = self.plan("pol", "-e", "production")
        self.assertEqual(code, 3)
        changes = self.changes(stages)
        self.assertEqual(list(changes), [("pol-production", "policy")], changes)
        reason = changes[("pol-production", "policy")]["reason"]
        self.assertIn("would add", reason)
        self.assertIn("s3:PutObject", reason)
        self.assertIn("would remove s3:PutBucketAcl", reason)
        # kept, so neither added nor removed
        self.assertIsNone(re.search(r"s3:GetObject(,|;|$)", reason), reason)

    def test_a_configured_tag_removed_by_hand_is_a_change(self):
        self.apply_ok("tagged", "-e", "production", "--set", "iam.tags=team=core",
                      "--set", "bucket.tags=team=core")
        self.client("iam").untag_user(UserName="tagged-production", TagKeys=["team"])
        code, stages = self.plan("tagged", "-e", "production", "--set", "iam.tags=team=core",
                                 "--set", "bucket.tags=team=core")
        self.assertEqual(code, 3)
        changes = self.changes(stages)
        self.assertEqual(list(changes), [("tagged-production", "iam")], changes)
        self.assertIn("would set tag team=core", changes[("tagged-production", "iam")]["reason"])

    def test_removed_ownership_tags_are_the_change_apply_makes(self):
        self.apply_ok("owned", "-e", "production")
        self.client("s3").delete_bucket_tagging(Bucket="owned-production")
        self.client("iam").untag_user(UserName="owned-production", TagKeys=["managed-by"])
        code, stages = self.plan("owned", "-e", "production")
        self.assertEqual(code, 3)
        changes = self.changes(stages)
        self.assertEqual(sorted(changes), [("owned-production", "bucket"),
                                           ("owned-production", "iam")], changes)
        for stage in ("bucket", "iam"):
            self.assertIn("would set tag managed-by=opsline",
                          changes[("owned-production", stage)]["reason"])
        self.apply_ok("owned", "-e", "production")
        code, stages = self.plan("owned", "-e", "production")
        self.assertEqual(code, 0, self.changes(stages))

    def test_a_store_that_lost_the_secret_is_a_change(self):
        self.apply_ok("lost", "-e", "production")
        os.remove(os.path.join(self.work, "lost-production.env"))
        code, stages = self.plan("lost", "-e", "production")
        self.assertEqual(code, 3)
        self.assertNotEqual(stages[("lost-production", "dotenv")]["outcome"], "no change")
        self.assertNotEqual(stages[("lost-production", "iam")]["outcome"], "no change")
        self.apply_ok("lost", "-e", "production")
        code, stages = self.plan("lost", "-e", "production")
        self.assertEqual(code, 0, self.changes(stages))


if __name__ == "__main__":
    unittest.main(verbosity=2)
