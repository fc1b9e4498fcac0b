#!/usr/bin/env python3
"""End-to-end tests of the import-file secret stores, bitwarden (Bitwarden unencrypted JSON)
and 1password (1Password CSV), against moto with signatures and IAM policies enforced. The
files are read back with Python's own json and csv modules (independent readers) and must
hold the same key ids and secrets as the .env files, which hold the user's only key.

usage: test_secrets_files.py  (env: OPSLINE=path/to/opsline, OPSLINE_BUILD_DIR=build dir)
"""
import csv
import io
import json
import os
import stat
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
from opsline_e2e import REGION, MotoTestCase, read_env  # noqa: E402

ENVS = ("production", "staging")
HEADER = ["title", "website", "username", "password", "notes"]

# Someone else's export, merged into: every value must survive.
OTHER_BITWARDEN = {
    "encrypted": False,
    "folders": [{"id": "5bcd4c1a-0000-4000-8000-000000000001", "name": "Personal"}],
    "items": [
        {
            "id": "5bcd4c1a-0000-4000-8000-0000000000aa",
            "organizationId": None,
            "folderId": "5bcd4c1a-0000-4000-8000-000000000001",
            "type": 1,
            "reprompt": 0,
            "name": "My bank",
            "notes": "line one\nline \"two\" \u00e9\u2603",
            "favorite": True,
            "fields": [{"name": "pin", "value": "1234", "type": 1, "linkedId": None}],
            "login": {"uris": [{"match": None, "uri": "https://bank.example/"}],
                      "username": "wendy", "password": "p,w\"d\\x", "totp": None},
            "collectionIds": None,
        },
        {
            "id": "5bcd4c1a-0000-4000-8000-0000000000bb",
            "type": 2,
            "name": "acme-production",  # a secure note: same name, not a login, kept
            "notes": "not a login",
            "secureNote": {"type": 0},
            "favorite": False,
        },
    ],
    "x-custom": {"kept": [1, 2, 3], "nested": {"a": None}},
}
OTHER_CSV_ROWS = [
    ["My bank", "https://bank.example/", "wendy", "p,w\"d", "multi\r\nline, with comma"],
    ["Mail", "https://mail.example/", "wendy@example.com", "x y", ""],
]


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def write_csv(path, rows):
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    with open(path, "w", newline="", encoding="utf-8") as f:
        f.write(buf.getvalue())


class FileStoresTest(MotoTestCase):
    moto_prefix = "opsline-e2e-files-moto."
    work_prefix = "opsline-e2e-files-work."
    opsline_errors = "replace"

    def setUp(self):
        super().setUp()
        self.bw = os.path.join(self.work, "vault", "bitwarden.json")
        self.op = os.path.join(self.work, "1password.csv")

    def tearDown(self):
        for name in os.listdir(self.work):
            if name.endswith(".env"):
                secret = read_env(os.path.join(self.work, name)).get("AWS_SECRET_ACCESS_KEY")
                for text in self.outputs:
                    self.assertNotIn(secret, text, "a secret appeared in opsline's output")

    # ---- helpers ---------------------------------------------------------------------------

    def apply(self, products, stores, *extra):
        sets = []
        if "bitwarden" in stores:
            sets += ["--set", f"bitwarden.file={self.bw}"]
        if "1password" in stores:
            sets += ["--set", "1password.file=1password.csv"]  # relative to the working dir
        return self.opsline("apply", *products, "--secrets", stores, *sets, *extra)

    def apply_ok(self, products, stores, *extra):
        r = self.apply(products, stores, *extra)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return r

    def dotenv(self, bucket):
        v = self.env_file(bucket)
        return v["AWS_ACCESS_KEY_ID"], v["AWS_SECRET_ACCESS_KEY"]

    def bitwarden_logins(self):
        with open(self.bw, encoding="utf-8") as f:
            doc = json.load(f)
        return doc, [i for i in doc["items"] if i.get("type") == 1]

    def csv_rows(self):
        rows = read_csv(self.op)
        self.assertEqual([h.lower() for h in rows[0]], HEADER)
        for row in rows[1:]:
            self.assertEqual(len(row), len(rows[0]), row[:1])
        return rows[1:]

    def assert_private(self, path):
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600, path)

    def assert_files_hold(self, buckets, folder=None):
        """Both files hold exactly one entry per bucket, with the .env file's key."""
        doc, logins = self.bitwarden_logins()
        self.assertIs(doc["encrypted"], False)
        folders = {f["id"]: f["name"] for f in doc.get("folders") or []}
        rows = self.csv_rows()
        for bucket in buckets:
            key_id, secret = self.dotenv(bucket)
            self.assertEqual(self.keys_of(bucket), [key_id])
            mine = [i for i in logins if i["name"] == bucket]
            self.assertEqual(len(mine), 1, f"{bucket}: {len(mine)} logins")
            item = mine[0]
            self.assertEqual(item["login"]["username"], key_id)
            self.assertEqual(item["login"]["password"], secret)
            self.assertEqual(item["login"]["uris"][0]["uri"], f"s3://{bucket}")
            self.assertIn(REGION, item["notes"])
            if folder is not None:
                self.assertEqual(folders[item["folderId"]], folder(bucket))
            titled = [r for r in rows if r[0] == bucket]
            self.assertEqual(len(titled), 1, f"{bucket}: {len(titled)} rows")
            self.assertEqual(titled[0][1:4], [f"s3://{bucket}", key_id, secret])
            self.assertIn(f"region: {REGION}", titled[0][4])
        return doc, rows

    def assert_key_works_only_on_its_bucket(self, bucket, other):
        self.assert_key_works_only_on(self.dotenv(bucket), bucket, other, probe="k.txt")

    # ---- tests -----------------------------------------------------------------------------

    def test_both_files_hold_the_env_keys_and_keep_other_entries_and_a_rerun_changes_nothing(
            self):
        os.makedirs(os.path.dirname(self.bw))
        with open(self.bw, "w", encoding="utf-8") as f:
            json.dump(OTHER_BITWARDEN, f, indent=4)
        write_csv(self.op, [["Title", "Website", "Username", "Password", "Notes"]]
                  + OTHER_CSV_ROWS)
        stores = "dotenv,bitwarden,1password"
        self.apply_ok(["acme"], stores, "--set", "bitwarden.folder=AWS/{product}")

        buckets = [f"acme-{e}" for e in ENVS]
        doc, rows = self.assert_files_hold(buckets, folder=lambda b: "AWS/acme")
        for path in (self.bw, self.op):
            self.assert_private(path)
        # Someone else's items, folders and members are the same JSON values.
        self.assertEqual(doc["x-custom"], OTHER_BITWARDEN["x-custom"])
        for other in OTHER_BITWARDEN["items"]:
            self.assertIn(other, doc["items"])
        for folder in OTHER_BITWARDEN["folders"]:
            self.assertIn(folder, doc["folders"])
        self.assertEqual(len(doc["items"]), len(OTHER_BITWARDEN["items"]) + 2)
        self.assertEqual(rows[:2], OTHER_CSV_ROWS)
        self.assertEqual(len(rows), len(OTHER_CSV_ROWS) + 2)
        self.assert_key_works_only_on_its_bucket("acme-production", "acme-staging")
        self.assert_key_works_only_on_its_bucket("acme-staging", "acme-production")

        keys = {b: self.keys_of(b) for b in buckets}
        self.apply_ok(["acme"], stores, "--set", "bitwarden.folder=AWS/{product}")
        self.assertEqual({b: self.keys_of(b) for b in buckets}, keys)
        doc2, rows2 = self.assert_files_hold(buckets, folder=lambda b: "AWS/acme")
        self.assertEqual(len(doc2["items"]), len(doc["items"]))
        self.assertEqual([f["name"] for f in doc2["folders"]].count("AWS/acme"), 1)
        self.assertEqual(rows2, rows)

    def test_fifty_products_in_one_run_give_a_hundred_entries_in_each_valid_file(self):
        products = [f"bulk{i:02d}" for i in range(50)]
        self.apply_ok(products, "dotenv,bitwarden,1password", "--concurrency", "64")
        buckets = [f"{p}-{e}" for p in products for e in ENVS]
        doc, rows = self.assert_files_hold(buckets)
        self.assertEqual(len(doc["items"]), 100)
        self.assertEqual(len(rows), 100)
        self.assertEqual(len({r[2] for r in rows}), 100)
        for path in (self.bw, self.op):
            self.assert_private(path)
            self.assertEqual([n for n in os.listdir(os.path.dirname(path))
                              if n.startswith(os.path.basename(path)) and n !=
                              os.path.basename(path)], [], "a temporary file was left")

    def test_a_bitwarden_file_that_is_not_json_is_refused_untouched_and_filled_once_fixed(self):
        self.apply_ok(["broken"], "dotenv")
        buckets = [f"broken-{e}" for e in ENVS]
        keys = {b: self.keys_of(b) for b in buckets}

        os.makedirs(os.path.dirname(self.bw))
        bad = b'{"encrypted": false, "items": [{"type": 1, "name": "x",}\n'
        with open(self.bw, "wb") as f:
            f.write(bad)
        os.chmod(self.bw, 0o640)
        before = os.stat(self.bw)
        r = self.apply(["broken"], "dotenv,bitwarden")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("bitwarden", r.stderr)
        self.assertIn(self.bw, r.stderr)
        self.assertIn("not valid JSON", r.stderr)
        with open(self.bw, "rb") as f:
            self.assertEqual(f.read(), bad)
        after = os.stat(self.bw)
        self.assertEqual((after.st_ino, after.st_mtime_ns, stat.S_IMODE(after.st_mode)),
                         (before.st_ino, before.st_mtime_ns, 0o640))
        self.assertEqual({b: self.keys_of(b) for b in buckets}, keys)

        with open(self.bw, "w") as f:
            json.dump(OTHER_BITWARDEN, f)
        self.apply_ok(["broken"], "dotenv,bitwarden")
        self.assertEqual({b: self.keys_of(b) for b in buckets}, keys)
        doc, logins = self.bitwarden_logins()
        for bucket in buckets:
            mine = [i for i in logins if i["name"] == bucket]
            self.assertEqual(len(mine), 1)
            self.assertEqual((mine[0]["login"]["username"], mine[0]["login"]["password"]),
                             self.dotenv(bucket))
        self.assertIn(OTHER_BITWARDEN["items"][0], doc["items"])

    def test_each_file_gives_its_keys_back_to_fill_a_store_added_later(self):
        # bitwarden is read back (get) to fill 1password, then 1password to fill bitwarden:
        # the .env files are gone, so no other store can give the secrets.
        for product, first, later in (("fromjson", "bitwarden", "1password"),
                                      ("fromcsv", "1password", "bitwarden")):
            buckets = [f"{product}-{e}" for e in ENVS]
            self.apply_ok([product], f"dotenv,{first}")
            want = {b: self.dotenv(b) for b in buckets}
            keys = {b: self.keys_of(b) for b in buckets}
            for b in buckets:
                os.remove(os.path.join(self.work, f"{b}.env"))
            self.apply_ok([product], f"{first},{later}")
            self.assertEqual({b: self.keys_of(b) for b in buckets}, keys)
            _, logins = self.bitwarden_logins()
            rows = self.csv_rows()
            for b in buckets:
                self.assertEqual([(i["login"]["username"], i["login"]["password"])
                                  for i in logins if i["name"] == b], [want[b]])
                self.assertEqual([tuple(r[2:4]) for r in rows if r[0] == b], [want[b]])

    def test_a_read_only_1password_file_is_refused_with_a_clear_message(self):
        write_csv(self.op, [HEADER] + OTHER_CSV_ROWS)
        os.chmod(self.op, 0o400)
        with open(self.op, "rb") as f:
            before = f.read()
        r = self.apply(["rofile"], "dotenv,1password")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("1password", r.stderr)
        self.assertIn(self.op, r.stderr)
        self.assertIn("read-only", r.stderr)
        with open(self.op, "rb") as f:
            self.assertEqual(f.read(), before)
        self.assertEqual(stat.S_IMODE(os.stat(self.op).st_mode), 0o400)


if __name__ == "__main__":
    unittest.main(verbosity=2)
