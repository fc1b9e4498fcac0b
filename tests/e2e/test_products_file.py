#!/usr/bin/env python3
"""End-to-end tests of --products-file against moto with signatures and IAM policies
enforced: JSON Lines give a product its own environments, region, tags, versioning, policy
preset and stage options (checked with boto3); every bad line, duplicate, odd file (long
lines, NUL bytes, a directory, a device, a FIFO) is refused with its line number before any
request; --json prints durations in milliseconds.

usage: test_products_file.py  (env: OPSLINE=path/to/opsline)
"""
import json
import os
import re
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
from opsline_e2e import MotoTestCase  # noqa: E402

from botocore.exceptions import ClientError  # noqa: E402


class ProductsFileTest(MotoTestCase):
    opsline_timeout = 120

    def write(self, name, text, mode="w"):
        path = os.path.join(self.work, name)
        with open(path, mode) as f:
            f.write(text)
        return path

    def policy_actions(self, user):
        doc = self.client("iam").get_user_policy(UserName=user, PolicyName=user)["PolicyDocument"]
        if isinstance(doc, str):
            doc = json.loads(doc)
        actions = set()
        for st in doc["Statement"]:
            a = st["Action"]
            actions |= set(a if isinstance(a, list) else [a])
        return actions

    def test_json_lines_give_each_product_its_own_settings(self):
        lines = [
            "# products of the quarter",
            "plain   # a name line: the run's settings",
            "",
            json.dumps({"product": "shop", "environments": ["production"], "region": "eu-west-1",
                        "tags": {"team": "web", "cost-center": "42"}, "versioning": True,
                        "policy": "read-only"}),
            json.dumps({"product": "docs", "environments": ["staging"],
                        "set": {"bucket.versioning": True}}),
        ]
        path = self.write("products.jsonl", "\n".join(lines) + "\n")
        r = self.opsline("apply", "--products-file", path, "--json")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        report = json.loads(r.stdout)
        names = sorted(i["name"] for i in report["items"])
        self.assertEqual(names, ["docs-staging", "plain-production", "plain-staging",
                                 "shop-production"])
        regions = {i["name"]: i["region"] for i in report["items"]}
        self.assertEqual(regions["shop-production"], "eu-west-1")
        self.assertEqual(regions["plain-staging"], "eu-north-1")

        s3 = self.client("s3")
        buckets = {b["Name"] for b in s3.list_buckets()["Buckets"]}
        self.assertNotIn("shop-staging", buckets)
        self.assertNotIn("docs-production", buckets)
        self.assertEqual(s3.get_bucket_location(Bucket="shop-production")["LocationConstraint"],
                         "eu-west-1")
        self.assertEqual(s3.get_bucket_location(Bucket="plain-production")["LocationConstraint"],
                         "eu-north-1")
        tags = {t["Key"]: t["Value"]
                for t in s3.get_bucket_tagging(Bucket="shop-production")["TagSet"]}
        owner = {"managed-by": "opsline", "product": "shop", "environment": "production"}
        self.assertEqual(tags, {"team": "web", "cost-center": "42", **owner})
        # "tags" is a shortcut of both stages that map it: the user carries them too
        user_tags = {t["Key"]: t["Value"]
                     for t in self.client("iam").list_user_tags(UserName="shop-production")["Tags"]}
        self.assertEqual(user_tags, {"team": "web", "cost-center": "42", **owner})
        # a product without tags gets only the ownership tags
        plain = {t["Key"]: t["Value"]
                 for t in s3.get_bucket_tagging(Bucket="plain-production")["TagSet"]}
        self.assertEqual(plain, {"managed-by": "opsline", "product": "plain",
                                 "environment": "production"})
        self.assertEqual(s3.get_bucket_versioning(Bucket="shop-production").get("Status"),
                         "Enabled")
        self.assertEqual(s3.get_bucket_versioning(Bucket="docs-staging").get("Status"),
                         "Enabled")
        self.assertNotIn("Status", s3.get_bucket_versioning(Bucket="plain-production"))
        shop = self.policy_actions("shop-production")
        self.assertIn("s3:GetObject", shop)
        self.assertNotIn("s3:PutObject", shop)
        self.assertIn("s3:PutObject", self.policy_actions("plain-production"))
        dot = self.env_file("shop-production")
        self.assertEqual(dot.get("AWS_REGION"), "eu-west-1")

        # A rerun with the same file converges: nothing created, nothing failed.
        r = self.opsline("apply", "--products-file", path, "--json")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        summary = json.loads(r.stdout)["summary"]
        self.assertEqual((summary["created"], summary["stage_failed"]), (0, 0), r.stdout)

    def test_bad_lines_are_refused_with_their_line_number_before_any_request(self):
        cases = [
            ('{"product": "shop", "region": "mars-1"}', "not 'mars-1'"),
            ('{"product": "shop"', "not valid JSON"),
            ('{"product": "Shop"}', "Shop"),
            ('{"product": "shop", "colour": "red"}', "unknown key 'colour'"),
            ('{"product": "shop", "set": {"bucket.versoning": true}}', "did you mean 'versioning'"),
            ('{"product": "shop", "versioning": "yes"}', "must be a boolean"),
            ('{"product": "shop", "secrets": ["pass"]}', "per-product secret stores"),
            ('{"product": "shop", "set": {"cdn.ttl": 1}}', "stage 'cdn', which is not"),
            ("acme", "product 'acme' is already on line 1"),
            ("two names", "is not one product name"),
        ]
        for line, fragment in cases:
            with self.subTest(line=line):
                path = self.write("bad.jsonl", "acme\n# a comment\n\n" + line + "\n")
                r = self.assert_refused_before_any_request("apply", "--products-file", path)
                self.assertIn(f"{path}:4: ", r.stderr)
                self.assertIn(fragment, r.stderr)

    def test_long_lines_nul_bytes_and_files_that_are_no_list(self):
        # A 600-character name is one name (not two products cut at 512 bytes), reported with
        # its real length by the stage that checks bucket names.
        path = self.write("long.txt", "a" * 600 + "\n")
        r = self.assert_refused_before_any_request("apply", "--products-file", path,
                                                   "-e", "production")
        self.assertIn("611 characters", r.stderr)
        self.assertIn(f"({path}:1)", r.stderr)
        self.assertNotIn("a" * 601, r.stderr)
        self.assertNotIn("522", r.stderr)

        path = self.write("nul.txt", b"acme\nsh\0op\n", mode="wb")
        r = self.assert_refused_before_any_request("apply", "--products-file", path)
        self.assertIn(f"{path}:2: the line holds a NUL byte", r.stderr)

        r = self.assert_refused_before_any_request("apply", "--products-file", self.work)
        self.assertIn("is a directory", r.stderr)
        self.assertNotIn("no product given", r.stderr)

        r = self.assert_refused_before_any_request("apply", "--products-file", "/dev/zero")
        self.assertIn("/dev/zero is not a regular file", r.stderr)

        fifo = os.path.join(self.work, "fifo")
        os.mkfifo(fifo)
        r = self.assert_refused_before_any_request("apply", "--products-file", fifo)
        self.assertIn("is not a regular file", r.stderr)

        path = self.write("empty.txt", "# nothing yet\n\n")
        r = self.assert_refused_before_any_request("apply", "--products-file", path)
        self.assertIn("no product given", r.stderr)
        self.assertIn("which lists none", r.stderr)

    def test_json_durations_are_milliseconds(self):
        r = self.opsline("apply", "ms", "--json")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        values = re.findall(r'"seconds": ([^,\n}]+)', r.stdout)
        self.assertGreater(len(values), 8)
        for v in values:
            self.assertRegex(v, r"^\d+(\.\d{1,3})?$")
        report = json.loads(r.stdout)
        self.assertEqual({i["outcome"] for i in report["items"]}, {"created"})


if __name__ == "__main__":
    unittest.main(verbosity=2)
