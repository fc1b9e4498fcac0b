#!/usr/bin/env python3
"""End-to-end tests of the `keepassxc` secret store: `opsline apply` against moto with
signatures and IAM policies enforced, entries read back with the real `keepassxc-cli`, keys
checked with boto3.

- `--secrets dotenv,keepassxc` into a database opsline creates: both stores hold the same
  key, the user's only key, which works on its bucket and is denied on the other; the file is
  KDBX 4 and 0600; no child process (sampled from /proc) holds a secret or the database
  password on its command line or in its environment; a rerun creates no key and no entry.
- keepassxc added to products that already have .env files: no new key, the database filled.
- A replaced key updates the entry (same UUID, old key in its history), never duplicates it.
- An entry at opsline's path that opsline did not make: the item fails naming keepassxc, no
  duplicate; removed, the rerun stores the key without a new one.
- A wrong database password: exit 1, a message naming keepassxc; fixed, the rerun stores
  the key without a new one. A password file and a key file work too.
- keepassxc-cli not installed: exit 1 with the fix in the message, no request sent.

usage: test_secrets_keepassxc.py  (env: OPSLINE=path/to/opsline, OPSLINE_BUILD_DIR=build dir)
"""
import os
import shutil
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
from opsline_e2e import OPSLINE, REGION, ChildWatcher, MotoTestCase  # noqa: E402

from botocore.exceptions import ClientError  # noqa: E402

CLI = shutil.which("keepassxc-cli")
DB_PASSWORD = "correct horse battery staple"


def kx(*args, password=DB_PASSWORD, check=True):
    """keepassxc-cli with the password on stdin; returns the completed process."""
    stdin = "" if password is None else password + "\n"
    return subprocess.run([CLI, *args], input=stdin, capture_output=True, text=True,
                          check=check, env=dict(os.environ, LC_ALL="C.UTF-8"))


def kx_create(path, password=DB_PASSWORD):
    kx("db-create", "-p", path, password=f"{password}\n{password}")


def kx_entries(db, password=DB_PASSWORD):
    out = kx("ls", "-R", "-f", db, password=password).stdout
    return sorted(line for line in out.splitlines() if line and not line.endswith("/")
                  and not line.endswith("[empty]"))


def kx_show(db, path, *attrs, password=DB_PASSWORD):
    args = ["show", "-s"]
    for a in attrs:
        args += ["-a", a]
    return kx(*args, db, path, password=password).stdout.split("\n")


@unittest.skipIf(CLI is None, "keepassxc-cli is not installed (scripts/install-deps.sh "
                 "installs keepassxc)")
class KeepassxcStoreTest(MotoTestCase):
    work_prefix = "opsline-e2e-kx."
    remove_work = True
    keys_of_missing_ok = True

    def setUp(self):
        super().setUp()
        self.db = os.path.join(self.work, "vault", "aws.kdbx")
        # Where the store makes its temporary FIFO and database: empty after every run.
        self.tmpdir = os.path.join(self.work, "tmp")
        os.mkdir(self.tmpdir)

    def env_fixed(self):
        return {"OPSLINE_KEEPASSXC_PASSWORD": DB_PASSWORD, "TMPDIR": self.tmpdir}

    def opsline(self, *args, env=None, watch=False, timeout=300):
        proc = subprocess.Popen([OPSLINE, *args], cwd=self.work, env=env or self.env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        watcher = ChildWatcher(proc.pid) if watch else None
        if watcher:
            watcher.start()
        out, err = proc.communicate(timeout=timeout)
        seen = watcher.stop() if watcher else None
        self.assertEqual(os.listdir(self.tmpdir), [], "temporary files left behind")
        r = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        return (r, seen) if watch else r

    def apply(self, product, secrets, *extra, **kw):
        return self.opsline("apply", product, "--secrets", secrets,
                            "--set", f"keepassxc.database={self.db}", *extra, **kw)

    def assert_kdbx4(self):
        with open(self.db, "rb") as f:
            head = f.read(12)
        self.assertEqual(head[:8], bytes.fromhex("03d9a29a67fb4bb5"))  # KeePass 2 signature
        self.assertEqual(int.from_bytes(head[10:12], "little"), 4, "not KDBX 4")

    def assert_stored(self, product, db=None, password=DB_PASSWORD):
        """Both environments: the entry holds the .env's key, the user's only key."""
        db = db or self.db
        for env in ("production", "staging"):
            name = f"{product}-{env}"
            dot = self.env_file(name)
            user, secret, url, *notes = kx_show(db, f"AWS/{product}/{name}", "UserName",
                                                "Password", "URL", "Notes", password=password)
            self.assertEqual(user, dot["AWS_ACCESS_KEY_ID"])
            self.assertEqual(secret, dot["AWS_SECRET_ACCESS_KEY"])
            self.assertEqual(url, f"s3://{name}")
            self.assertIn(f"region: {REGION}", notes)
            self.assertTrue(any(n.startswith("created: 20") for n in notes), notes)
            self.assertEqual(self.keys_of(name), [user])
        self.assertEqual(kx_entries(db, password), [f"AWS/{product}/{product}-production",
                                                    f"AWS/{product}/{product}-staging"])

    # ---- the main path ------------------------------------------------------------------

    def test_both_stores_hold_the_working_key_and_a_rerun_changes_nothing(self):
        # A password variable whose name the host would not recognise as secret: the store
        # itself must keep it out of its children's environment.
        env = self.env(OPSLINE_TEST_KDBX_PW=DB_PASSWORD)
        del env["OPSLINE_KEEPASSXC_PASSWORD"]
        (r, seen) = self.apply("acme", "dotenv,keepassxc", "--set", "keepassxc.create=true",
                               "--set", "keepassxc.password_env=OPSLINE_TEST_KDBX_PW",
                               env=env, watch=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(os.stat(self.db).st_mode & 0o777, 0o600)
        self.assert_kdbx4()
        self.assertEqual(os.listdir(os.path.dirname(self.db)), ["aws.kdbx"])  # no temp files
        self.assert_stored("acme")
        secrets = [DB_PASSWORD.encode()]
        for env_name, other in (("production", "staging"), ("staging", "production")):
            name = f"acme-{env_name}"
            dot = self.env_file(name)
            secrets.append(dot["AWS_SECRET_ACCESS_KEY"].encode())
            own = self.client("s3", (dot["AWS_ACCESS_KEY_ID"], dot["AWS_SECRET_ACCESS_KEY"]))
            own.put_object(Bucket=name, Key="k.txt", Body=b"x")
            with self.assertRaises(ClientError) as cm:
                own.put_object(Bucket=f"acme-{other}", Key="k.txt", Body=b"x")
            self.assertEqual(cm.exception.response["Error"]["Code"], "AccessDenied")
        clis = [s for s in seen if b"keepassxc-cli" in s["cmdline"]]
        self.assertTrue(clis, "no keepassxc-cli child was seen")
        for secret in secrets:
            self.assert_no_child_holds(seen, secret, "a secret")
        for secret in secrets:
            self.assertNotIn(secret.decode(), r.stdout + r.stderr)

        uuid = kx_show(self.db, "AWS/acme/acme-production", "Uuid")[0]
        keys = {n: self.keys_of(n) for n in ("acme-production", "acme-staging")}
        r = self.apply("acme", "dotenv,keepassxc", "--set",
                       "keepassxc.password_env=OPSLINE_TEST_KDBX_PW", env=env)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual({n: self.keys_of(n) for n in keys}, keys)
        self.assert_stored("acme")
        self.assertEqual(kx_show(self.db, "AWS/acme/acme-production", "Uuid")[0], uuid)

    def test_adding_keepassxc_later_fills_it_from_the_env_files_without_new_keys(self):
        r = self.opsline("apply", "late", "--secrets", "dotenv")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        keys = {n: self.keys_of(n) for n in ("late-production", "late-staging")}
        self.assertTrue(all(len(k) == 1 for k in keys.values()), keys)
        os.makedirs(os.path.dirname(self.db))
        kx_create(self.db)  # the team's existing, empty database (keepassxc-cli: KDBX 3.1)
        r = self.apply("late", "dotenv,keepassxc")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual({n: self.keys_of(n) for n in keys}, keys)
        self.assert_stored("late")
        self.assert_kdbx4()

    def test_a_replaced_key_updates_the_entry_and_never_duplicates_it(self):
        r = self.apply("rot", "dotenv,keepassxc", "--set", "keepassxc.create=true")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        path = "AWS/rot/rot-production"
        uuid = kx_show(self.db, path, "Uuid")[0]
        old = self.keys_of("rot-production")
        # Neither store can give the secret back any more: the entry names a key that is not
        # the user's, the .env file is gone, and so is the journal that says they hold it.
        # The key must be replaced.
        kx("edit", "-u", "AKIAXXXXXXXXXXXXXXXX", self.db, path)
        os.unlink(os.path.join(self.work, "rot-production.env"))
        shutil.rmtree(os.path.join(self.work, ".opsline"))
        r = self.apply("rot", "dotenv,keepassxc", "-e", "production")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        # Without its journal opsline leaves the old key alone (it no longer knows it made
        # it) and creates one more; both stores now hold the new one.
        new = sorted(set(self.keys_of("rot-production")) - set(old))
        self.assertEqual(len(new), 1)
        dot = self.env_file("rot-production")
        self.assertEqual(dot["AWS_ACCESS_KEY_ID"], new[0])
        self.assertEqual(kx_show(self.db, path, "UserName", "Password")[:2],
                         [dot["AWS_ACCESS_KEY_ID"], dot["AWS_SECRET_ACCESS_KEY"]])
        self.assertEqual(kx_entries(self.db), ["AWS/rot/rot-production", "AWS/rot/rot-staging"])
        self.assertEqual(kx_show(self.db, path, "Uuid")[0], uuid)
        # The entry's previous state is in its history, as KeePassXC keeps it (history items
        # are told apart by their second, so the edit above may have folded into the first).
        xml = kx("export", "-f", "xml", self.db).stdout
        hist = xml[xml.index(new[0]):]
        self.assertIn("<History>", hist)
        self.assertTrue("AKIAXXXXXXXXXXXXXXXX" in hist or old[0] in hist, hist)

    def test_an_entry_opsline_did_not_make_is_not_duplicated(self):
        os.makedirs(os.path.dirname(self.db))
        kx_create(self.db)
        kx("mkdir", self.db, "AWS")
        kx("mkdir", self.db, "AWS/hand")
        kx("add", "-u", "someone", self.db, "AWS/hand/hand-production")
        r = self.apply("hand", "dotenv,keepassxc")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("keepassxc", r.stdout + r.stderr)
        self.assertIn("did not create", r.stdout + r.stderr)
        self.assertEqual(kx_entries(self.db), ["AWS/hand/hand-production"])
        keys = {n: self.keys_of(n) for n in ("hand-production", "hand-staging")}
        # The groups are someone else's too: choose another group, then it works.
        r = self.apply("hand", "dotenv,keepassxc", "--set", "keepassxc.group=Cloud/{product}")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual({n: self.keys_of(n) for n in keys}, keys)
        self.assertEqual(kx_entries(self.db), ["AWS/hand/hand-production",
                                               "Cloud/hand/hand-production",
                                               "Cloud/hand/hand-staging"])

    # ---- bad input ----------------------------------------------------------------------

    def test_a_wrong_password_fails_naming_keepassxc_and_a_fixed_rerun_adds_no_key(self):
        os.makedirs(os.path.dirname(self.db))
        kx_create(self.db)
        # Keys exist already (dotenv), then keepassxc is added with the wrong password.
        r = self.opsline("apply", "wpw", "--secrets", "dotenv")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        keys = {n: self.keys_of(n) for n in ("wpw-production", "wpw-staging")}
        r = self.apply("wpw", "dotenv,keepassxc",
                       env=self.env(OPSLINE_KEEPASSXC_PASSWORD="not the password"))
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("keepassxc", r.stderr)
        self.assertIn("wrong password", r.stderr)
        self.assertIn(self.db, r.stderr)
        self.assertNotIn("not the password", r.stdout + r.stderr)
        self.assertEqual(kx_entries(self.db), [])
        self.assertEqual({n: self.keys_of(n) for n in keys}, keys)
        # Fixed through a password file this time.
        pw_file = os.path.join(self.work, "db-password")
        with open(pw_file, "w") as f:
            f.write(DB_PASSWORD + "\n")
        os.chmod(pw_file, 0o600)
        r = self.apply("wpw", "dotenv,keepassxc", "--set", f"keepassxc.password_file={pw_file}",
                       env=self.env(OPSLINE_KEEPASSXC_PASSWORD="not the password"))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual({n: self.keys_of(n) for n in keys}, keys)
        self.assert_stored("wpw")

    def test_a_key_file_alone_opens_the_database_and_names_are_escaped(self):
        key = os.path.join(self.work, "db.key")
        with open(key, "wb") as f:
            f.write(os.urandom(64))
        env = self.env()
        del env["OPSLINE_KEEPASSXC_PASSWORD"]
        # A group name XML must escape, to prove the batch's text is escaped.
        group = 'R&D <"ops">'
        r = self.apply("kf", "dotenv,keepassxc", "--set", f"keepassxc.key_file={key}",
                       "--set", "keepassxc.create=true", "--set",
                       f"keepassxc.group={group}/{{product}}", env=env)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        out = subprocess.run([CLI, "show", "-s", "-a", "UserName", "--no-password", "-k", key,
                              self.db, f"{group}/kf/kf-staging"], capture_output=True,
                             text=True, check=True).stdout.strip()
        self.assertEqual(out, self.env_file("kf-staging")
                         ["AWS_ACCESS_KEY_ID"])

    def test_no_password_at_all_is_a_clear_error_before_any_request(self):
        env = self.env()
        del env["OPSLINE_KEEPASSXC_PASSWORD"]
        r = self.apply("nopw", "dotenv,keepassxc", "--set", "keepassxc.create=true", env=env)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("keepassxc: no password", r.stderr)
        self.assertIn("OPSLINE_KEEPASSXC_PASSWORD", r.stderr)
        self.assertEqual(self.keys_of("nopw-production"), [])
        self.assertFalse(os.path.exists(self.db))

    def test_keepassxc_cli_not_installed_is_a_clear_error_before_any_request(self):
        empty = os.path.join(self.work, "empty-bin")
        os.mkdir(empty)
        r = self.apply("noinst", "dotenv,keepassxc", "--set", "keepassxc.create=true",
                       env=self.env(PATH=empty))
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("keepassxc-cli not found", r.stderr)
        self.assertIn("apt-get install keepassxc", r.stderr)
        self.assertEqual(self.keys_of("noinst-production"), [])
        # Installed again (PATH fixed): the key is created and stored once.
        r = self.apply("noinst", "dotenv,keepassxc", "--set", "keepassxc.create=true")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assert_stored("noinst")


if __name__ == "__main__":
    unittest.main(verbosity=2)
