#!/usr/bin/env python3
"""End-to-end tests of `opsline rotate` against moto with signatures and IAM policies
enforced: the old key stops working (boto3), the new one works and is the one every store
holds (.env and Secrets Manager); --keep-old leaves the old key inactive and the next rotate
deletes it; and opsline killed (SIGKILL) at every step of a rotation, then rotate run
again, leaves exactly one active key, the stored one.

usage: test_lifecycle_rotate.py  (env: OPSLINE=path/to/opsline)
"""
import json
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
from opsline_e2e import MotoTestCase  # noqa: E402

from botocore.exceptions import ClientError  # noqa: E402

STORES = "dotenv,aws-secretsmanager"
# Every point a rotation can die at, in order: before CreateAccessKey (its intent is
# journaled), after it (no store has the key yet), after a store stored it, after the new
# key was proven, after the old key was deactivated, after it was deleted.
KILL_POINTS = ("iam.before_create_access_key", "iam.after_create_access_key", "store.after_put",
               "iam.rotate.before_deactivate", "iam.rotate.before_delete",
               "iam.rotate.after_delete")


class RotateTest(MotoTestCase):
    opsline_timeout = 120

    def key_status(self, user):
        meta = self.client("iam").list_access_keys(UserName=user)["AccessKeyMetadata"]
        return {k["AccessKeyId"]: k["Status"] for k in meta}

    def stored(self, name):
        """(id, secret) in the .env and in Secrets Manager, which must agree."""
        env = self.env_file(name)
        sm = self.client("secretsmanager")
        value = json.loads(sm.get_secret_value(SecretId=f"opsline/{name}")["SecretString"])
        key = (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"])
        self.assertEqual((value["aws_access_key_id"], value["aws_secret_access_key"]), key)
        return key

    def assert_key_refused(self, key):
        with self.assertRaises(ClientError) as cm:
            self.client("sts", key).get_caller_identity()
        self.assertIn(cm.exception.response["Error"]["Code"],
                      ("InvalidClientTokenId", "AccessDenied", "SignatureDoesNotMatch"))

    def assert_one_active_stored_key(self, name, other):
        status = self.key_status(name)
        active = [k for k, s in status.items() if s == "Active"]
        self.assertEqual(len(active), 1, status)
        key = self.stored(name)
        self.assertEqual(active, [key[0]])
        self.assertEqual(len(status), 1, status)  # the old key is gone too
        self.assert_key_works_only_on(key, name, other)
        return key

    def rotate(self, *args, **env):
        return self.opsline("rotate", *args, "--secrets", STORES, env=self.env(**env))

    def test_rotate_replaces_the_key_in_every_store_and_the_old_key_stops_working(self):
        self.apply_ok("acme", "-e", "production", "--secrets", STORES)
        self.apply_ok("acme", "-e", "staging", "--secrets", STORES)
        old = self.stored("acme-production")
        r = self.rotate("acme", "-e", "production", "--json")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        doc = json.loads(r.stdout)
        self.assertEqual(doc["command"], "rotate")
        outcomes = [s["outcome"] for s in doc["items"][0]["stages"] if s["stage"] == "iam"]
        self.assertEqual(outcomes, ["created", "rotated"])
        new = self.assert_one_active_stored_key("acme-production", "acme-staging")
        self.assertNotEqual(new[0], old[0])
        self.assert_key_refused(old)
        self.assertNotIn(new[1], r.stdout + r.stderr)
        self.assertNotIn(old[1], r.stdout + r.stderr)

    def test_keep_old_leaves_it_inactive_and_the_next_rotate_deletes_it(self):
        self.apply_ok("grace", "-e", "production", "--secrets", STORES)
        self.apply_ok("grace", "-e", "staging", "--secrets", STORES)
        first = self.stored("grace-production")
        r = self.rotate("grace", "-e", "production", "--keep-old")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        second = self.stored("grace-production")
        self.assertEqual(self.key_status("grace-production"),
                         {first[0]: "Inactive", second[0]: "Active"})
        # (moto accepts an inactive key, so its refusal is checked once it is deleted)
        r = self.rotate("grace", "-e", "production")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        third = self.assert_one_active_stored_key("grace-production", "grace-staging")
        self.assertNotIn(third[0], (first[0], second[0]))
        self.assert_key_refused(first)
        self.assert_key_refused(second)

    def test_rotate_of_a_user_that_does_not_exist_fails_naming_apply(self):
        r = self.rotate("ghost", "-e", "production")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("opsline apply", r.stderr)

    def test_a_key_opsline_did_not_create_is_never_deleted(self):
        self.apply_ok("shared", "-e", "production", "--secrets", STORES)
        old = self.stored("shared-production")
        foreign = self.client("iam").create_access_key(UserName="shared-production")
        foreign_id = foreign["AccessKey"]["AccessKeyId"]
        r = self.rotate("shared", "-e", "production")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("two access keys opsline may not delete", r.stderr)
        self.assertIn(foreign_id, r.stderr)
        self.assertEqual(self.key_status("shared-production"),
                         {old[0]: "Active", foreign_id: "Active"})
        self.assertEqual(self.stored("shared-production"), old)

    def test_a_rotation_whose_stage_timed_out_during_the_journal_fsync_changes_nothing(self):
        """The journal's fsync before CreateAccessKey outlasts the iam stage's time limit (a
        slow disk, made by a preloaded shim): no new key is requested once it returns, the
        old key stays active and stored, and a plain rotate then completes."""
        products = ("slowrot", "slowrot2")
        for product in products:
            self.apply_ok(product, "--secrets", STORES)
        pairs = [(f"{p}-production", f"{p}-staging") for p in products]
        names = [name for pair in pairs for name in pair]
        old = {name: self.stored(name) for name in names}
        pipeline = os.path.join(self.work, "pipeline.json")
        # One item at a time, four items, each journal fsync 2.5 s: when the first item's
        # fsync returns, the third item's rotation runs, so a request sent then would reach
        # AWS.
        with open(pipeline, "w") as f:
            json.dump({"stages": ["bucket", {"stage": "iam", "timeout": "1s"}, "policy",
                                  "dotenv"], "concurrency": 1}, f)
        r = self.opsline("rotate", *products, "--secrets", STORES, "--pipeline", pipeline,
                         env=self.env(**self.slow_journal_fsync(2500)))
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        for name in names:
            self.assertEqual(self.key_status(name), {old[name][0]: "Active"})
            self.assertEqual(self.stored(name), old[name])
            self.assertIn(f"the new access key for user {name} was not requested (the stage "
                          "had ended); nothing was changed", r.stderr)
        r = self.rotate(*products)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        for name, other in pairs + [pair[::-1] for pair in pairs]:
            new = self.assert_one_active_stored_key(name, other)
            self.assertNotEqual(new[0], old[name][0])

    def test_killed_at_every_step_a_rerun_leaves_one_active_stored_key(self):
        for i, point in enumerate(KILL_POINTS):
            with self.subTest(point=point):
                product = f"kill{i}"
                self.apply_ok(product, "--secrets", STORES)
                name, other = f"{product}-production", f"{product}-staging"
                old = self.stored(name)
                r = self.rotate(product, "-e", "production", OPSLINE_TEST_KILL_AT=point)
                self.assertEqual(r.returncode, -9, f"{point}: {r.stdout}{r.stderr}")
                self.assertIn(f"killed at {point}", r.stderr)
                r = self.rotate(product, "-e", "production")
                self.assertEqual(r.returncode, 0, f"{point}: {r.stdout}{r.stderr}")
                new = self.assert_one_active_stored_key(name, other)
                self.assertNotEqual(new[0], old[0], point)
                self.assert_key_refused(old)

    def test_killed_when_only_the_second_store_held_the_new_key_a_rerun_resumes(self):
        """The two stores' puts run side by side, so the one killed after may be either. Made
        certain here: the rotation that dies stores into Secrets Manager only, the .env keeps
        the old key. The rerun reads the .env first (the first store of the plan); it must
        not settle for the old key when the journal says a newer one was stored elsewhere."""
        self.apply_ok("split", "--secrets", STORES)
        name, other = "split-production", "split-staging"
        old = self.stored(name)
        r = self.opsline("rotate", "split", "-e", "production", "--secrets",
                         "aws-secretsmanager", env=self.env(OPSLINE_TEST_KILL_AT="store.after_put"))
        self.assertEqual(r.returncode, -9, r.stdout + r.stderr)
        self.assertEqual(self.env_file(name)["AWS_ACCESS_KEY_ID"], old[0])
        r = self.rotate("split", "-e", "production")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        new = self.assert_one_active_stored_key(name, other)
        self.assertNotEqual(new[0], old[0])
        self.assert_key_refused(old)


if __name__ == "__main__":
    unittest.main(verbosity=2)
