#!/usr/bin/env python3
"""`opsline apply` end to end with the inputs a user gives it: --products-file,
--concurrency, --env-file, --set, a rerun after drift, and bad input refused before any
request. Against the fixture's auth-enforcing moto (through the fault proxy, with no fault,
where the requests themselves are checked); results read back with boto3. Run through run.sh.
"""
import json
import os
import stat
import tempfile
import unittest

from botocore.exceptions import ClientError

from opsline_it import Proxy, base_env, client, opsline, read_env

PROXY = Proxy()
RUNBOOK_ACTIONS = {
    "s3:ListBucketMultipartUploads", "s3:GetObjectRetention", "s3:DeleteObjectVersion",
    "s3:RestoreObject", "s3:ListBucket", "s3:ListMultipartUploadParts", "s3:PutObject",
    "s3:GetObjectAcl", "s3:GetObject", "s3:PutObjectRetention", "s3:PutObjectVersionAcl",
    "s3:GetObjectVersionAcl", "s3:DeleteObject", "s3:PutObjectAcl", "s3:GetObjectVersion",
}
READ_ONLY_ACTIONS = {"s3:ListBucket", "s3:GetBucketLocation", "s3:GetObject",
                     "s3:GetObjectVersion"}
ALL_BLOCKED = {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
               "RestrictPublicBuckets": True}


setUpModule, tearDownModule = PROXY.start, PROXY.stop


def policy_actions(user, name=None):
    doc = client("iam").get_user_policy(UserName=user, PolicyName=name or user)["PolicyDocument"]
    if isinstance(doc, str):
        doc = json.loads(doc)
    actions = set()
    for st in doc["Statement"]:
        a = st["Action"]
        actions |= {a} if isinstance(a, str) else set(a)
    return actions


def item_of(entry):
    """The item a request was for: the bucket of an S3 path, the UserName of an IAM call."""
    if entry["service"] == "s3":
        return entry["path"].strip("/").split("/")[0] or None
    return entry["params"].get("UserName")


class ApplyInputsTest(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="opsline-it-inputs.")
        self.tag = f"i{os.getpid()}"
        PROXY.configure()

    def apply(self, *args, state="state", **env):
        return opsline("apply", *args, "--state-dir", os.path.join(self.work, state),
                       cwd=self.work, env=base_env(AWS_ENDPOINT_URL=PROXY.url, **env),
                       timeout=300)

    def assert_item_works(self, item, env_path):
        """The bucket is configured as the runbook says and the stored key writes to it."""
        s3 = client("s3")
        self.assertEqual(s3.get_public_access_block(Bucket=item)
                         ["PublicAccessBlockConfiguration"], ALL_BLOCKED)
        self.assertEqual(os.stat(env_path).st_mode & 0o777, 0o600)
        v = read_env(env_path)
        self.assertEqual(v["S3_BUCKET"], item)
        keys = client("iam").list_access_keys(UserName=item)["AccessKeyMetadata"]
        self.assertEqual([k["AccessKeyId"] for k in keys], [v["AWS_ACCESS_KEY_ID"]])
        own = client("s3", v["AWS_ACCESS_KEY_ID"], v["AWS_SECRET_ACCESS_KEY"])
        own.put_object(Bucket=item, Key="probe", Body=b"x")
        return v

    # ---- --products-file and --concurrency ------------------------------------------------

    def max_items_in_flight(self):
        """From the proxy's log: the most items whose first..last request overlap. Each item's
        real lifetime contains that span, so this is a lower bound of the true figure."""
        spans = {}
        for e in PROXY.requests():
            item = item_of(e)
            if item and item.startswith(self.tag):
                first, last = spans.get(item, (e["t"], e["t"]))
                spans[item] = (min(first, e["t"]), max(last, e["t"]))
        events = sorted([(a, 1) for a, _ in spans.values()] + [(b, -1) for _, b in spans.values()],
                        key=lambda ev: (ev[0], ev[1]))
        now = best = 0
        for _, step in events:
            now += step
            best = max(best, now)
        return best, len(spans)

    def test_products_file_and_concurrency_create_every_item_and_bound_the_items_in_flight(self):
        products = [f"{self.tag}pf{i}" for i in range(6)]
        path = os.path.join(self.work, "products.txt")
        with open(path, "w") as f:
            f.write("# products of the quarter\n\n")
            for p in products[:3]:
                f.write(f"  {p}   # owned by team {p[-1]}\n")
            f.write("\n".join(products[3:]) + "\n" + products[0] + "\n")  # a duplicate
        # A product listed twice is refused (issue 7), naming both lines, before any request.
        r = self.apply("--products-file", path, "-e", "production")
        self.assertEqual(r.returncode, 2, r.stdout[-3000:] + r.stderr[-3000:])
        self.assertIn(f"{path}:9: product '{products[0]}' is already on line 3", r.stderr)
        with open(path, "w") as f:
            f.write("# products of the quarter\n\n")
            for p in products[:3]:
                f.write(f"  {p}   # owned by team {p[-1]}\n")
            f.write("\n".join(products[3:]) + "\n")
        r = self.apply("--products-file", path, "-e", "production", "--concurrency", "2",
                       "--json")
        self.assertEqual(r.returncode, 0, r.stdout[-3000:] + r.stderr[-3000:])
        report = json.loads(r.stdout)
        self.assertEqual(sorted(i["name"] for i in report["items"]),
                         sorted(f"{p}-production" for p in products))
        self.assertEqual(report["summary"]["ok"], 6)
        in_flight, seen = self.max_items_in_flight()
        self.assertEqual(seen, 6)
        self.assertLessEqual(in_flight, 2)
        for p in products:
            self.assert_item_works(f"{p}-production", os.path.join(self.work,
                                                                   f"{p}-production.env"))

        # One at a time: no two items' requests interleave.
        PROXY.configure()
        more = [f"{self.tag}pg{i}" for i in range(3)]
        r = self.apply(*more, "-e", "staging", "--concurrency", "1")
        self.assertEqual(r.returncode, 0, r.stdout[-3000:] + r.stderr[-3000:])
        in_flight, seen = self.max_items_in_flight()
        self.assertEqual((in_flight, seen), (1, 3))

    def test_products_file_with_a_bad_name_is_refused_naming_the_line(self):
        path = os.path.join(self.work, "products.txt")
        with open(path, "w") as f:
            f.write(f"{self.tag}ok\nNot_A_Name\n")
        r = self.apply("--products-file", path)
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("Not_A_Name", r.stderr)
        self.assertEqual(PROXY.stats()["requests"], 0)

    # ---- --env-file and --set ---------------------------------------------------------------

    def test_env_file_template_places_each_key_where_it_says(self):
        r = self.apply(f"{self.tag}ef", "--env-file", "{product}/.env.{environment}")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        for env in ("production", "staging"):
            path = os.path.join(self.work, f"{self.tag}ef", f".env.{env}")
            v = self.assert_item_works(f"{self.tag}ef-{env}", path)
            self.assertEqual(v["AWS_REGION"], "eu-north-1")
        self.assertFalse(os.path.exists(os.path.join(self.work, f"{self.tag}ef-production.env")))

    def test_set_changes_stage_options_as_aws_shows_them(self):
        item = f"{self.tag}set-production"
        r = self.apply(f"{self.tag}set", "-e", "production", "--set", "bucket.versioning=true",
                       "--set", "policy.preset=read-only")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(client("s3").get_bucket_versioning(Bucket=item).get("Status"), "Enabled")
        self.assertEqual(policy_actions(item), READ_ONLY_ACTIONS)
        v = read_env(os.path.join(self.work, f"{item}.env"))
        own = client("s3", v["AWS_ACCESS_KEY_ID"], v["AWS_SECRET_ACCESS_KEY"])
        client("s3").put_object(Bucket=item, Key="r", Body=b"r")
        self.assertEqual(own.get_object(Bucket=item, Key="r")["Body"].read(), b"r")
        with self.assertRaises(ClientError) as cm:
            own.put_object(Bucket=item, Key="w", Body=b"w")
        self.assertEqual(cm.exception.response["Error"]["Code"], "AccessDenied")

    # ---- drift ------------------------------------------------------------------------------

    def test_a_rerun_after_drift_puts_back_each_setting_and_reports_updated(self):
        item = f"{self.tag}drift-production"
        r = self.apply(f"{self.tag}drift", "-e", "production")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        s3, iam = client("s3"), client("iam")
        s3.delete_bucket_encryption(Bucket=item)
        s3.put_public_access_block(Bucket=item, PublicAccessBlockConfiguration={
            k: False for k in ALL_BLOCKED})
        iam.put_user_policy(UserName=item, PolicyName=item, PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*",
                                                   "Resource": "*"}]}))
        key_before = read_env(os.path.join(self.work, f"{item}.env"))["AWS_ACCESS_KEY_ID"]

        r = self.apply(f"{self.tag}drift", "-e", "production", "--json")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        stages = {s["stage"]: s for s in json.loads(r.stdout)["items"][0]["stages"]}
        self.assertEqual(stages["bucket"]["outcome"], "updated", stages["bucket"])
        self.assertEqual(stages["policy"]["outcome"], "updated", stages["policy"])
        self.assertEqual(stages["iam"]["outcome"], "unchanged", stages["iam"])
        self.assertEqual(stages["dotenv"]["outcome"], "unchanged", stages["dotenv"])

        enc = s3.get_bucket_encryption(Bucket=item)["ServerSideEncryptionConfiguration"]
        self.assertEqual(enc["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"],
                         "AES256")
        self.assertEqual(s3.get_public_access_block(Bucket=item)
                         ["PublicAccessBlockConfiguration"], ALL_BLOCKED)
        self.assertEqual(policy_actions(item), RUNBOOK_ACTIONS)
        self.assertEqual(read_env(os.path.join(self.work, f"{item}.env"))["AWS_ACCESS_KEY_ID"],
                         key_before)

        r = self.apply(f"{self.tag}drift", "-e", "production", "--json")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        outcomes = {s["outcome"] for s in json.loads(r.stdout)["items"][0]["stages"]}
        self.assertEqual(outcomes, {"unchanged"})

    # ---- bad input: exit 2, and the proxy saw no request ------------------------------------

    def assert_refused_before_any_request(self, args, expect, **env):
        PROXY.configure()
        r = self.apply(*args, state="refused", **env)
        self.assertEqual(r.returncode, 2, (args, env, r.stdout, r.stderr))
        self.assertIn(expect, r.stderr, (args, env))
        self.assertEqual(PROXY.requests(), [], (args, env))
        journal = os.path.join(self.work, "refused", "journal.jsonl")
        if os.path.exists(journal):
            with open(journal) as f:
                self.assertEqual(f.read().strip(), "", (args, env))
        self.assertEqual([f for f in os.listdir(self.work) if f.endswith(".env")], [])

    def test_bad_input_is_refused_before_any_request(self):
        item = f"{self.tag}bad"
        cases = [
            (["--region", "eu_north_1"], "eu_north_1", {}),
            ([], "EU-NORTH-1", {"AWS_REGION": "EU-NORTH-1"}),
            ([], "eu-north-", {"AWS_REGION": "eu-north-"}),
            ([], "AWS_MAX_ATTEMPTS", {"AWS_MAX_ATTEMPTS": "0"}),
            ([], "AWS_MAX_ATTEMPTS", {"AWS_MAX_ATTEMPTS": "three"}),
            ([], "AWS_RETRY_MODE", {"AWS_RETRY_MODE": "fast"}),
            ([], "AWS_ENDPOINT_URL_S3", {"AWS_ENDPOINT_URL_S3": "ftp://127.0.0.1:1"}),
            ([], "AWS_ENDPOINT_URL_IAM", {"AWS_ENDPOINT_URL_IAM": "http://"}),
            ([], "AWS_ENDPOINT_URL_STS", {"AWS_ENDPOINT_URL_STS": "not a url"}),
            (["--set", "bucket.versioning"], "bucket.versioning", {}),
            (["--set", "bucket.versioning=perhaps"], "perhaps", {}),
            (["--set", "bucket.versionning=true"], "versionning", {}),
            (["--set", "nosuch.option=1"], "nosuch", {}),
            (["--env-file", "{product}/.env.{colour}"], "colour", {}),
            (["--env-file", ""], "empty path", {}),
            (["--concurrency", "0"], "--concurrency", {}),
        ]
        for args, expect, env in cases:
            with self.subTest(args=args, env=env):
                self.assert_refused_before_any_request([item, *args], expect, **env)


if __name__ == "__main__":
    unittest.main(verbosity=2)
