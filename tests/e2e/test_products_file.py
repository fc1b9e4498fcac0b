#!/usr/bin/env python3
"""End-to-end tests of --products-file against moto with signatures and IAM policies
enforced: JSON Lines give a product its own environments, region, tags, versioning, policy
preset, stage options (checked with boto3) and secret stores (each key in exactly its
product's stores, read back with Python's json and csv modules); every bad line, duplicate, odd file (long
lines, NUL bytes, a directory, a device, a FIFO) is refused with its line number before any
request; --json prints durations in milliseconds.

usage: test_products_file.py  (env: OPSLINE=path/to/opsline)
"""
import csv
import json
import os
import re
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
from opsline_e2e import MotoTestCase, read_env  # noqa: E402

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

    # ---- per-product secret stores -------------------------------------------------------

    def store_contents(self):
        """{item: key id} of each store: the .env files, the bitwarden logins, the CSV rows."""
        dotenv = {n[:-4]: read_env(os.path.join(self.work, n))["AWS_ACCESS_KEY_ID"]
                  for n in os.listdir(self.work) if n.endswith(".env")}
        bw, op = {}, {}
        if os.path.exists(os.path.join(self.work, "bw.json")):
            with open(os.path.join(self.work, "bw.json"), encoding="utf-8") as f:
                bw = {i["name"]: i["login"]["username"] for i in json.load(f)["items"]
                      if i.get("type") == 1}
        if os.path.exists(os.path.join(self.work, "op.csv")):
            with open(os.path.join(self.work, "op.csv"), newline="", encoding="utf-8") as f:
                op = {row[0]: row[2] for row in list(csv.reader(f))[1:]}
        return {"dotenv": dotenv, "bitwarden": bw, "1password": op}

    def apply_stores(self, path):
        r = self.opsline("apply", "--products-file", path, "--json", "--secrets", "bitwarden",
                         "--set", "bitwarden.file=bw.json", "--set", "1password.file=op.csv")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return json.loads(r.stdout)

    def test_secrets_give_each_product_exactly_its_stores(self):
        lines = [
            "pl",  # new names (one moto for all tests); the run's stores: --secrets bitwarden
            json.dumps({"product": "sh", "secrets": ["dotenv"]}),
            json.dumps({"product": "dc", "environments": ["production"],
                        "secrets": ["1password", "dotenv"]}),
        ]
        path = self.write("stores.jsonl", "\n".join(lines) + "\n")
        report = self.apply_stores(path)
        want = {"pl-production": {"bitwarden"}, "pl-staging": {"bitwarden"},
                "sh-production": {"dotenv"}, "sh-staging": {"dotenv"},
                "dc-production": {"1password", "dotenv"}}
        stores = {"dotenv", "bitwarden", "1password"}
        for item in report["items"]:
            got = {s["stage"]: s["outcome"] for s in item["stages"] if s["stage"] in stores}
            self.assertEqual(got, {s: "created" for s in want[item["name"]]}, item["name"])
        self.assertEqual(sorted(i["name"] for i in report["items"]), sorted(want))

        keys = {}
        for name in want:
            ids = self.keys_of(name)
            self.assertEqual(len(ids), 1, name)
            keys[name] = ids[0]
        held = self.store_contents()
        for store in stores:
            self.assertEqual(held[store], {n: keys[n] for n in want if store in want[n]}, store)
        # the secret in a product's store is the key's: it works on its bucket only
        env = self.env_file("sh-production")
        self.assert_key_works_only_on((env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]),
                                      "sh-production", "pl-production")

        # A rerun converges: no key created, every store unchanged, no line for other stores.
        report = self.apply_stores(path)
        self.assertEqual((report["summary"]["created"], report["summary"]["stage_failed"]),
                         (0, 0), report["summary"])
        for item in report["items"]:
            got = {s["stage"] for s in item["stages"] if s["stage"] in stores}
            self.assertEqual(got, want[item["name"]], item["name"])
        self.assertEqual({n: self.keys_of(n) for n in want}, {n: [k] for n, k in keys.items()})
        self.assertEqual(self.store_contents(), held)

        # A product moved to another store gets its existing key there (read back from the
        # store that holds it), not a new one; the old copy is left as it is.
        lines[1] = json.dumps({"product": "sh", "secrets": ["1password"]})
        self.write("stores.jsonl", "\n".join(lines) + "\n")
        report = self.apply_stores(path)
        for item in report["items"]:
            if item["name"].startswith("sh-"):
                got = {s["stage"]: s["outcome"] for s in item["stages"] if s["stage"] in stores}
                self.assertEqual(got, {"1password": "created"}, item["name"])
        self.assertEqual({n: self.keys_of(n) for n in want}, {n: [k] for n, k in keys.items()})
        moved = self.store_contents()
        self.assertEqual(moved["1password"], {n: keys[n] for n in
                                              ("dc-production", "sh-production",
                                               "sh-staging")})
        self.assertEqual(moved["dotenv"], held["dotenv"])

    def test_bad_lines_are_refused_with_their_line_number_before_any_request(self):
        cases = [
            ('{"product": "shop", "region": "mars-1"}', "not 'mars-1'"),
            ('{"product": "shop"', "not valid JSON"),
            ('{"product": "Shop"}', "Shop"),
            ('{"product": "shop", "colour": "red"}', "unknown key 'colour'"),
            ('{"product": "shop", "set": {"bucket.versoning": true}}', "did you mean 'versioning'"),
            ('{"product": "shop", "versioning": "yes"}', "must be a boolean"),
            ('{"product": "shop", "secrets": ["vaultx"]}',
             "\"secrets\": no plugin provides secret store 'vaultx'"),
            ('{"product": "shop", "secrets": []}', "\"secrets\" must be a non-empty list"),
            ('{"product": "shop", "secrets": ["bucket"]}', "not a secret store"),
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
