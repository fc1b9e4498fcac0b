#!/usr/bin/env python3
"""A batch of hundreds of items straight to the fixture's auth-enforcing moto: 150 products
x 2 environments from a products file. Counts are checked with boto3 (users, buckets, one key
per user, every .env file private and distinct), a sample of the stored keys is used, and a
rerun changes nothing. Run through run.sh.
"""
import json
import os
import random
import tempfile
import unittest

from botocore.exceptions import ClientError

from opsline_it import base_env, client, opsline, read_env

N_PRODUCTS = 150
ENVIRONMENTS = ("production", "staging")


def all_pages(call, key, **kw):
    out, marker = [], None
    while True:
        page = call(**kw, **({"Marker": marker} if marker else {}))
        out += page[key]
        if not page.get("IsTruncated"):
            return out
        marker = page["Marker"]


class BatchTest(unittest.TestCase):
    def test_hundreds_of_items_are_created_once_each_and_a_rerun_changes_nothing(self):
        work = tempfile.mkdtemp(prefix="opsline-it-batch.")
        tag = f"b{os.getpid()}"
        products = [f"{tag}p{i}" for i in range(N_PRODUCTS)]
        items = sorted(f"{p}-{e}" for p in products for e in ENVIRONMENTS)
        with open(os.path.join(work, "products.txt"), "w") as f:
            f.write("\n".join(products) + "\n")
        args = ["apply", "--products-file", "products.txt", "--json", "--state-dir",
                os.path.join(work, "state")]
        r = opsline(*args, cwd=work, env=base_env(), timeout=600)
        self.assertEqual(r.returncode, 0, r.stdout[-3000:] + r.stderr[-3000:])
        summary = json.loads(r.stdout)["summary"]
        self.assertEqual((summary["items"], summary["ok"], summary["created"]),
                         (len(items), len(items), 4 * len(items)))

        iam, s3 = client("iam"), client("s3")
        users = {u["UserName"] for u in all_pages(iam.list_users, "Users")}
        self.assertEqual(sorted(u for u in users if u.startswith(tag)), items)
        buckets = {b["Name"] for b in s3.list_buckets()["Buckets"]}
        self.assertEqual(sorted(b for b in buckets if b.startswith(tag)), items)

        stored = {}
        for item in items:
            path = os.path.join(work, f"{item}.env")
            self.assertEqual(os.stat(path).st_mode & 0o777, 0o600, path)
            stored[item] = read_env(path)
            self.assertEqual(stored[item]["S3_BUCKET"], item)
            keys = iam.list_access_keys(UserName=item)["AccessKeyMetadata"]
            self.assertEqual([k["AccessKeyId"] for k in keys],
                             [stored[item]["AWS_ACCESS_KEY_ID"]], item)
        self.assertEqual(len({v["AWS_ACCESS_KEY_ID"] for v in stored.values()}), len(items))
        self.assertEqual(len({v["AWS_SECRET_ACCESS_KEY"] for v in stored.values()}), len(items))

        # A sample of keys: each writes to its own bucket and is refused another's.
        rng = random.Random(12)
        for item in rng.sample(items, 6):
            v = stored[item]
            own = client("s3", v["AWS_ACCESS_KEY_ID"], v["AWS_SECRET_ACCESS_KEY"])
            own.put_object(Bucket=item, Key="sample", Body=item.encode())
            self.assertEqual(s3.get_object(Bucket=item, Key="sample")["Body"].read(),
                             item.encode())
            other = items[(items.index(item) + 1) % len(items)]
            with self.assertRaises(ClientError) as cm:
                own.put_object(Bucket=other, Key="sample", Body=b"x")
            self.assertEqual(cm.exception.response["Error"]["Code"], "AccessDenied")

        r = opsline(*args, cwd=work, env=base_env(), timeout=600)
        self.assertEqual(r.returncode, 0, r.stdout[-3000:] + r.stderr[-3000:])
        summary = json.loads(r.stdout)["summary"]
        self.assertEqual((summary["ok"], summary["unchanged"], summary["created"],
                          summary["updated"]), (len(items), 4 * len(items), 0, 0))
        for item in rng.sample(items, 20):
            keys = iam.list_access_keys(UserName=item)["AccessKeyMetadata"]
            self.assertEqual([k["AccessKeyId"] for k in keys],
                             [stored[item]["AWS_ACCESS_KEY_ID"]], item)


if __name__ == "__main__":
    unittest.main(verbosity=2)
