#!/usr/bin/env python3
"""Request economy and critical path, read from the fault proxy's request log in front of the
fixture's auth-enforcing moto. Every request is held 100 ms by the proxy, so requests that
overlap in time were sent in parallel, and the critical path (the longest chain of requests
each sent after the previous one was answered) counts round trips, not milliseconds.

- a new item sends exactly CreateBucket, PutPublicAccessBlock, PutBucketEncryption,
  PutBucketTagging, CreateUser (with its tags), CreateAccessKey, PutUserPolicy: 7 requests,
  no read, in at most 3 round trips after the STS preflight;
- a rerun of the unchanged item sends reads only and reports every stage unchanged;
- drift (Block Public Access partly turned off with boto3) is fixed by exactly one
  PutPublicAccessBlock and reported updated, naming what changed;
- the ownership tags are on the bucket and the user (boto3).
Run through run.sh.
"""
import json
import os
import tempfile
import unittest

from opsline_it import Proxy, base_env, client, opsline

PROXY = Proxy()
LATENCY_MS = 100

setUpModule, tearDownModule = PROXY.start, PROXY.stop


def operation(e):
    """S3: "METHOD ?subresource" ("PUT ?" for CreateBucket); IAM/STS: the action."""
    if e["service"] == "s3":
        sub = e["query"].split("=", 1)[0].split("&", 1)[0]
        return f'{e["method"]} ?{sub}'
    return e["action"]


def is_write(e):
    if e["service"] == "s3":
        return e["method"] not in ("GET", "HEAD")
    return not e["action"].startswith(("Get", "List"))


def critical_path(entries):
    """The longest chain of requests in which each was sent after the one before it had
    been answered (the proxy's arrival and answer times)."""
    entries = sorted(entries, key=lambda e: e["t"])
    depth = []
    for i, e in enumerate(entries):
        before = [depth[j] for j in range(i) if entries[j]["t_end"] <= e["t"]]
        depth.append(1 + max(before, default=0))
    return max(depth, default=0)


class RequestEconomyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="opsline-it-economy.")
        cls.product = f"econ{os.getpid()}"
        cls.item = f"{cls.product}-production"

    def apply(self):
        """One apply of the item through the proxy; its stage outcomes and the log."""
        PROXY.configure(latency_ms=LATENCY_MS, rules=[])
        PROXY.control("POST", "reset")
        r = opsline("apply", self.product, "-e", "production", "--json", "--state-dir",
                    os.path.join(self.work, "state"), cwd=self.work,
                    env=base_env(AWS_ENDPOINT_URL=PROXY.url))
        self.assertEqual(r.returncode, 0, r.stdout[-3000:] + r.stderr[-3000:])
        report = json.loads(r.stdout)
        items = report["items"]
        item = items[0] if isinstance(items, list) else items[self.item]
        outcomes = {s["stage"]: (s["outcome"], s.get("reason")) for s in item["stages"]}
        log = PROXY.requests()
        for e in log:
            self.assertIn("t_end", e, e)
        self.assertEqual([e["action"] for e in log if e["service"] == "sts"],
                         ["GetCallerIdentity"])
        return outcomes, [e for e in log if e["service"] != "sts"]

    def test_1_a_new_item_sends_one_write_per_step_in_three_round_trips(self):
        outcomes, log = self.apply()
        self.assertEqual(sorted(operation(e) for e in log), sorted([
            "PUT ?", "PUT ?publicAccessBlock", "PUT ?encryption", "PUT ?tagging",
            "CreateUser", "CreateAccessKey", "PutUserPolicy"]), log)
        self.assertTrue(all(is_write(e) for e in log), "a new item reads nothing")
        self.assertLessEqual(critical_path(log), 3, sorted(
            (round(e["t"] - log[0]["t"], 3), round(e["t_end"] - log[0]["t"], 3), operation(e))
            for e in log))
        # The S3 and IAM chains overlap: CreateBucket and CreateUser are both in flight at once.
        first = {operation(e): e for e in log}
        self.assertLess(first["CreateUser"]["t"], first["PUT ?"]["t_end"])
        self.assertLess(first["PUT ?"]["t"], first["CreateUser"]["t_end"])
        self.assertEqual({k: v[0] for k, v in outcomes.items() if k != "dotenv"},
                         {"bucket": "created", "iam": "created", "policy": "created"})

        want = {"managed-by": "opsline", "product": self.product, "environment": "production"}
        tags = client("s3").get_bucket_tagging(Bucket=self.item)["TagSet"]
        self.assertEqual({t["Key"]: t["Value"] for t in tags}, want)
        tags = client("iam").list_user_tags(UserName=self.item)["Tags"]
        self.assertEqual({t["Key"]: t["Value"] for t in tags}, want)
        pab = client("s3").get_public_access_block(Bucket=self.item)
        self.assertTrue(all(pab["PublicAccessBlockConfiguration"].values()))

    def test_2_a_rerun_of_the_unchanged_item_only_reads(self):
        outcomes, log = self.apply()
        writes = [operation(e) for e in log if is_write(e)]
        self.assertEqual(writes, [])
        self.assertNotIn("CreateUser", [e["action"] for e in log])
        self.assertEqual({v[0] for v in outcomes.values()}, {"unchanged"}, outcomes)

    def test_3_drift_is_fixed_with_exactly_one_write(self):
        s3 = client("s3")
        s3.put_public_access_block(Bucket=self.item, PublicAccessBlockConfiguration={
            "BlockPublicAcls": False, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True})
        outcomes, log = self.apply()
        writes = [operation(e) for e in log if is_write(e)]
        self.assertEqual(writes, ["PUT ?publicAccessBlock"])
        self.assertEqual(outcomes["bucket"], ("updated", "changed: public access block"))
        self.assertEqual(outcomes["iam"][0], "unchanged")
        self.assertEqual(outcomes["policy"][0], "unchanged")
        pab = s3.get_public_access_block(Bucket=self.item)["PublicAccessBlockConfiguration"]
        self.assertTrue(all(pab.values()), pab)


if __name__ == "__main__":
    unittest.main(verbosity=2)
