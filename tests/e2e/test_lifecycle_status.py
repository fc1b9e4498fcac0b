#!/usr/bin/env python3
"""End-to-end test of `opsline status` against moto with signatures and IAM policies
enforced, over a mixed set of products: one as apply left it, one rotated with --keep-old
(two keys, one inactive), one whose bucket was changed by hand, one whose .env was lost,
and one never created. Checks the keys (status, age, last use, which is stored), the
stores that hold the secret and the drift, in --json and in the human output; status
sends no write.

usage: test_lifecycle_status.py  (env: OPSLINE=path/to/opsline)
"""
import json
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
import faultproxy  # noqa: E402
from opsline_e2e import MotoTestCase  # noqa: E402

PRODUCTS = ("fine", "grace", "drifted", "lost", "nothing")


class StatusTest(MotoTestCase):
    opsline_timeout = 120

    runs = 0

    def prod(self, p):
        """The product p of this test (one moto serves the class)."""
        return f"{p}{self.run_no}"

    def name(self, p):
        return f"{self.prod(p)}-production"

    def setUp(self):
        super().setUp()
        StatusTest.runs += 1
        self.run_no = StatusTest.runs
        for p in PRODUCTS[:4]:
            self.apply_ok(self.prod(p), "-e", "production")  # apply tags what it creates
        self.old = self.env_file(self.name("grace"))["AWS_ACCESS_KEY_ID"]
        r = self.opsline("rotate", self.prod("grace"), "-e", "production", "--keep-old")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.client("s3").put_public_access_block(
            Bucket=self.name("drifted"), PublicAccessBlockConfiguration={
                "BlockPublicAcls": False, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True})
        os.remove(os.path.join(self.work, self.name("lost") + ".env"))

    def test_status_shows_keys_stores_and_drift_of_a_mixed_set(self):
        with faultproxy.ProxyProcess(self.endpoint) as proxy:
            r = self.opsline("status", *map(self.prod, PRODUCTS), "-e", "production", "--json",
                             env=self.env(AWS_ENDPOINT_URL=proxy.url))
            log = proxy.requests()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        writes = [e for e in log if (e["method"] not in ("GET", "HEAD") if e["service"] == "s3"
                                     else not (e["action"] or "").startswith(("Get", "List")))]
        self.assertEqual(writes, [])
        doc = json.loads(r.stdout)
        self.assertEqual(doc["command"], "status")
        items = {i["name"]: {s["stage"]: s for s in i["stages"]} for i in doc["items"]}

        fine = items[self.name("fine")]
        key = self.env_file(self.name("fine"))["AWS_ACCESS_KEY_ID"]
        self.assertEqual({s: v["outcome"] for s, v in fine.items()},
                         {"bucket": "ok", "iam": "ok", "policy": "ok", "dotenv": "ok"})
        fact = fine["iam"]["facts"][f"key {key}"]
        self.assertIn("Active", fact)
        self.assertIn("0 days ago", fact)
        self.assertIn("stored", fact)
        self.assertIn("used", fact)  # "never used" or "last used ..."
        self.assertEqual(fine["dotenv"]["facts"]["holds"], key)
        self.assertEqual(fine["iam"]["facts"]["owner"], "opsline (tag)")

        grace = items[self.name("grace")]
        new = self.env_file(self.name("grace"))["AWS_ACCESS_KEY_ID"]
        facts = grace["iam"]["facts"]
        self.assertTrue(facts[f"key {self.old}"].startswith("Inactive"), facts)
        self.assertNotIn("stored", facts[f"key {self.old}"])
        self.assertTrue(facts[f"key {new}"].startswith("Active"), facts)
        self.assertIn("stored", facts[f"key {new}"])
        self.assertEqual(grace["dotenv"]["facts"]["holds"], new)

        drifted = items[self.name("drifted")]
        self.assertEqual(drifted["bucket"]["outcome"], "drift")
        self.assertIn("BlockPublicAcls", drifted["bucket"]["reason"])
        self.assertEqual(drifted["iam"]["outcome"], "ok")

        lost = items[self.name("lost")]
        self.assertEqual(lost["dotenv"]["outcome"], "missing")
        self.assertEqual(lost["dotenv"]["facts"]["holds"], "nothing")
        self.assertEqual(lost["iam"]["outcome"], "drift")

        nothing = items[self.name("nothing")]
        self.assertEqual({v["outcome"] for v in nothing.values()}, {"missing"})
        self.assertEqual(nothing["bucket"]["facts"]["bucket"], "absent")

    def test_the_human_output_lists_the_keys_under_their_item(self):
        r = self.opsline("status", self.prod("grace"), "-e", "production")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn(f"key {self.old}: Inactive", r.stdout)
        self.assertIn("holds: ", r.stdout)


    def test_without_products_status_shows_what_the_journal_says_opsline_created(self):
        r = self.opsline("destroy", self.prod("fine"), "-e", "production", "--yes")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        r = self.opsline("status", "--json")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        names = sorted(i["name"] for i in json.loads(r.stdout)["items"])
        self.assertEqual(names, sorted(self.name(p) for p in ("grace", "drifted", "lost")))

    def test_without_products_or_journal_status_is_a_usage_error(self):
        r = self.opsline("status", "--state-dir", os.path.join(self.work, "none"))
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("name the products", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
