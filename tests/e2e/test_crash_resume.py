#!/usr/bin/env python3
"""Crash resume: `opsline apply` of 200 products (400 items) into two stores (dotenv, a file
per item, and 1password, one CSV file for all) is killed with SIGKILL at random moments,
several times in a row, then run again plainly; against moto with signatures and IAM policies
enforced, checked with boto3 and independent readers (json, csv):

- the plain rerun exits 0 and every item is complete (bucket, user, policy);
- every user has exactly one access key, and it is the one both stores hold (a request whose
  answer the kill swallowed leaves no orphan key, a key whose secret was lost is replaced);
- a sample of the stored keys sign requests moto accepts (the secret is the key's);
- the journal reads line by line: every line a record, a torn last line (as a power loss
  leaves; simulated once) tolerated by the next run and not left in the middle;
- no store is half-written: every .env parses, is 0600, holds the four variables once; the
  CSV parses; no temp file is left next to them.

The kills land mid-run: each waits for the journal to grow by a random number of lines (or,
once, for a random delay from the start). The seed is printed; OPSLINE_CRASH_SEED replays it.

usage: test_crash_resume.py  (env: OPSLINE=path/to/opsline; OPSLINE_CRASH_SEED optional)
"""
import csv
import json
import os
import random
import signal
import stat
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
from opsline_e2e import OPSLINE, MotoTestCase, read_env  # noqa: E402

ENVS = ("production", "staging")
ENV_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "S3_BUCKET")
CSV_HEADER = ["title", "website", "username", "password", "notes"]
# Journal lines a fresh item writes (requested, created, stored x2 stores, 4 stages): the
# kill thresholds are fractions of the lines a whole run writes.
LINES_PER_ITEM = 8


class CrashResumeTest(MotoTestCase):
    moto_prefix = "opsline-e2e-crash-moto."
    work_prefix = "opsline-e2e-crash-work."
    remove_state = True
    remove_work = True
    opsline_timeout = 600

    def setUp(self):
        super().setUp()
        seed = os.environ.get("OPSLINE_CRASH_SEED")
        self.seed = int(seed) if seed else random.SystemRandom().randrange(1 << 32)
        print(f"\ncrash resume seed: {self.seed} (replay with OPSLINE_CRASH_SEED={self.seed})",
              file=sys.stderr, flush=True)
        self.rng = random.Random(self.seed)
        self.journal = os.path.join(self.work, ".opsline", "journal.jsonl")
        self.logs = os.path.join(self.work, ".logs")
        os.mkdir(self.logs)
        self.csv = os.path.join(self.work, "1password.csv")

    # ---- running and killing ----------------------------------------------------------------

    def args(self, products_file):
        return [OPSLINE, "apply", "--products-file", products_file, "--secrets",
                "dotenv,1password", "--set", "1password.file=1password.csv"]

    def journal_lines(self):
        try:
            with open(self.journal, "rb") as f:
                return f.read().count(b"\n")
        except FileNotFoundError:
            return 0

    def run_and_kill(self, args, trigger):
        """Starts args and SIGKILLs it (its whole process group) when trigger() says so.
        Returns "killed" or, if the run ended first, its exit code; and its stderr."""
        with open(os.path.join(self.logs, f"run{len(os.listdir(self.logs))}.err"), "w+") as err:
            proc = subprocess.Popen(args, cwd=self.work, env=self.env(),
                                    stdout=subprocess.DEVNULL, stderr=err,
                                    start_new_session=True)
            deadline = time.monotonic() + self.opsline_timeout
            try:
                while proc.poll() is None and not trigger() and time.monotonic() < deadline:
                    time.sleep(0.01)
                outcome = "killed" if proc.poll() is None else proc.returncode
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            err.seek(0)
            text = err.read()
        self.outputs.append(text)
        return outcome, text

    def after_lines(self, n):
        start = self.journal_lines()
        return lambda: self.journal_lines() >= start + n

    def after_seconds(self, s):
        t = time.monotonic() + s
        return lambda: time.monotonic() >= t

    def tear_journal(self):
        """What a power loss mid-append leaves: a record's first bytes, no newline."""
        line = json.dumps({"time": int(time.time()), "item": "torn-production", "stage": "iam",
                           "event": "access_key_requested"}, separators=(",", ":"))
        with open(self.journal, "ab") as f:
            f.write(line[:len(line) // 2].encode())

    def crash_repeatedly(self, products_file, n_items, kills):
        total = n_items * LINES_PER_ITEM
        outcomes = []
        for k in range(kills):
            if k == 0:
                how = f"{self.rng.uniform(0.2, 3.0):.2f} s after the start"
                trigger = self.after_seconds(float(how.split()[0]))
            else:
                n = self.rng.randint(total // 40, total // 8)
                how = f"{n} more journal lines"
                trigger = self.after_lines(n)
            outcome, err = self.run_and_kill(self.args(products_file), trigger)
            outcomes.append(f"kill {k + 1}: {how}: {outcome}")
            if k == 2:  # the run after the tear
                self.assertIn("removed a torn last line", err, "the torn line went "
                              "unnoticed")
            if k == 1:
                self.tear_journal()
        print("\n".join(outcomes), file=sys.stderr, flush=True)
        killed = sum(1 for o in outcomes if o.endswith("killed"))
        self.assertGreaterEqual(killed, kills - 1, "the runs ended before the kills:\n"
                                + "\n".join(outcomes))
        return outcomes

    # ---- checks ----------------------------------------------------------------------------

    def check_journal(self, stored):
        with open(self.journal, "rb") as f:
            data = f.read()
        for _, secret in stored.values():
            self.assertNotIn(secret.encode(), data, "a secret in the journal")
        self.assertTrue(data.endswith(b"\n"), "the journal ends in a torn line after a clean run")
        for no, line in enumerate(data.split(b"\n")[:-1], 1):
            try:
                rec = json.loads(line)
            except ValueError as exc:
                self.fail(f"journal line {no} is not JSON ({exc}): {line[:120]!r}")
            self.assertIsInstance(rec, dict, f"journal line {no}")
            for field in ("time", "item", "event"):
                self.assertIn(field, rec, f"journal line {no}: {line[:120]!r}")

    def check_files(self, items):
        """Every .env complete and private, no temp file anywhere; returns item -> (id,
        secret)."""
        names = set(os.listdir(self.work))
        expected = {f"{i}.env" for i in items} | {"products.txt", "1password.csv", ".opsline",
                                                  ".logs"}
        self.assertEqual(sorted(names - expected), [], "files left beside the stores")
        self.assertEqual(sorted(os.listdir(os.path.join(self.work, ".opsline"))),
                         ["journal.jsonl", "journal.pid"])
        stored = {}
        for item in items:
            path = os.path.join(self.work, f"{item}.env")
            self.assertTrue(os.path.exists(path), f"{item}: no .env")
            self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600, path)
            with open(path) as f:
                lines = [ln for ln in f.read().split("\n") if ln]
            self.assertEqual(sorted(ln.split("=", 1)[0] for ln in lines), sorted(ENV_VARS), path)
            v = read_env(path)
            self.assertEqual(v["S3_BUCKET"], item)
            self.assertRegex(v["AWS_ACCESS_KEY_ID"], r"^AKIA[A-Z0-9]{16}$", path)
            self.assertRegex(v["AWS_SECRET_ACCESS_KEY"], r"^[A-Za-z0-9/+]{40}$", path)
            stored[item] = (v["AWS_ACCESS_KEY_ID"], v["AWS_SECRET_ACCESS_KEY"])
        self.assertEqual(stat.S_IMODE(os.stat(self.csv).st_mode), 0o600)
        with open(self.csv, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        self.assertEqual([h.lower() for h in rows[0]], CSV_HEADER)
        by_title = {}
        for row in rows[1:]:
            self.assertEqual(len(row), len(CSV_HEADER), row[:1])
            self.assertNotIn(row[0], by_title, f"two rows for {row[0]}")
            by_title[row[0]] = (row[2], row[3])
        self.assertEqual(sorted(by_title), sorted(items))
        for item in items:
            self.assertEqual(by_title[item], stored[item], f"{item}: the stores disagree")
        return stored

    def check_aws(self, items, stored):
        iam, s3 = self.client("iam"), self.client("s3")
        buckets = {b["Name"] for b in s3.list_buckets()["Buckets"]}
        for item in items:
            self.assertIn(item, buckets)
            self.assertEqual(self.keys_of(item), [stored[item][0]], f"{item}: keys")
            self.assertEqual(iam.list_user_policies(UserName=item)["PolicyNames"] != [], True,
                             f"{item}: no inline policy")
        for item in self.rng.sample(items, 5):
            key = self.client("s3", stored[item])
            key.put_object(Bucket=item, Key="probe", Body=b"x")
            self.assertEqual(key.get_object(Bucket=item, Key="probe")["Body"].read(), b"x")
            key.delete_object(Bucket=item, Key="probe")

    def journal_summary(self):
        """What the kills exercised, from the journal: keys requested more than once (an
        answer lost), reconciled, deleted, secrets read back from a store."""
        events = {}
        with open(self.journal) as f:
            for line in f:
                rec = json.loads(line)
                key = (rec["event"], rec.get("detail") == "read back")
                events[key] = events.get(key, 0) + 1
        names = {("access_key_requested", False): "key requests",
                 ("access_key_created", False): "keys created",
                 ("access_key_reconciled", False): "requests reconciled",
                 ("access_key_unknown", False): "outcomes unknown",
                 ("access_key_deleted", False): "keys deleted",
                 ("secret_stored", True): "secrets read back"}
        return "journal: " + ", ".join(f"{events.get(k, 0)} {v}" for k, v in names.items())

    # ---- the test --------------------------------------------------------------------------

    def test_kill_9_at_random_moments_then_a_plain_rerun_completes_every_item(self):
        products = [f"crash{i:03d}" for i in range(200)]
        items = [f"{p}-{e}" for p in products for e in ENVS]
        path = os.path.join(self.work, "products.txt")
        with open(path, "w") as f:
            f.write("\n".join(products) + "\n")
        outcomes = self.crash_repeatedly(path, len(items), kills=4)

        r = subprocess.run(self.args(path), cwd=self.work, env=self.env(), capture_output=True,
                           text=True, timeout=self.opsline_timeout)
        self.outputs += [r.stdout, r.stderr]
        self.assertEqual(r.returncode, 0, f"seed {self.seed}\n" + "\n".join(outcomes) + "\n"
                         + r.stdout[-3000:] + r.stderr[-3000:])
        stored = self.check_files(items)
        self.check_journal(stored)
        print(self.journal_summary(), file=sys.stderr, flush=True)
        self.check_aws(items, stored)
        for _, secret in stored.values():
            for text in self.outputs:
                self.assertNotIn(secret, text, "a secret appeared in opsline's output")


if __name__ == "__main__":
    unittest.main(verbosity=2)
