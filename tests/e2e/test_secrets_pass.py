#!/usr/bin/env python3
"""End-to-end tests of the `pass` secret store: `opsline apply` against moto with signatures
and IAM policies enforced, entries read back with the real `pass` and `gpg` (throwaway keys
made here, in temporary GNUPGHOMEs, with no passphrase), keys checked with boto3.

- `--secrets dotenv,pass`: both keys in both stores, equal, the user's only key, working on
  its bucket and denied on the other; the entry is encrypted to the two recipients of the
  store's .gpg-id and the teammate (another keyring) decrypts it too; no child process of
  opsline (sampled from /proc while a slowed-down `pass` runs) holds a secret on its
  command line or in its environment; a rerun creates no key and rewrites no entry.
- A store that is a git repository gets every entry committed, although the items run
  concurrently (no "index.lock: File exists"); a replaced key's entry too.
- A recipient of .gpg-id without a public key (and then without trust): exit 1, a message
  naming pass and the key, nothing created; fixed, the rerun stores the one key.
- Not initialised store, `pass` not installed: exit 1 with the fix in the message.
- PASSWORD_STORE_SIGNING_KEY: entries go through `pass insert`, which refuses a .gpg-id
  whose signature does not match.
- A store added later is filled from pass (`pass show`), no key created; an entry that
  cannot be written fails the item naming pass, and the rerun fills pass from dotenv.

usage: test_secrets_pass.py  (env: OPSLINE=path/to/opsline, OPSLINE_BUILD_DIR=build dir)
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
from opsline_e2e import OPSLINE, REGION, MotoTestCase, programs, run_watched  # noqa: E402

PASS = shutil.which("pass")
GPG = shutil.which("gpg")


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def gpg(home, *args, input=None, check=True):
    return subprocess.run([GPG, "--batch", *args], env=dict(os.environ, GNUPGHOME=home),
                          input=input, capture_output=True, text=True, check=check)


def new_home():
    # Short path: gpg-agent's socket path must fit in sockaddr_un.
    home = tempfile.mkdtemp(prefix="gpg.", dir="/tmp")
    os.chmod(home, 0o700)
    return home


def make_key(home, uid):
    """A passphrase-less key (%no-protection) in home; returns its fingerprint."""
    params = ("%no-protection\nKey-Type: eddsa\nKey-Curve: ed25519\nSubkey-Type: ecdh\n"
              f"Subkey-Curve: cv25519\nName-Real: {uid}\nName-Email: {uid}@opsline.invalid\n"
              "Expire-Date: 0\n%commit\n")
    gpg(home, "--quiet", "--gen-key", input=params)
    out = gpg(home, "--with-colons", "--list-keys", f"{uid}@opsline.invalid").stdout
    rec = [line.split(":") for line in out.splitlines()]
    return next(rec[i + 1][9] for i, f in enumerate(rec) if f[0] == "pub")


def share_key(src, dst, fpr, trust=True):
    """Import fpr's public key from home src into home dst, trusted (ultimately) or not."""
    pub = gpg(src, "--armor", "--export", fpr).stdout
    gpg(dst, "--quiet", "--import", input=pub)
    if trust:
        gpg(dst, "--quiet", "--import-ownertrust", input=f"{fpr}:6:\n")


@unittest.skipIf(PASS is None or GPG is None, "pass and gnupg are not installed "
                 "(scripts/install-deps.sh installs them)")
class PassStoreTest(MotoTestCase):
    remove_state = True
    remove_work = True
    keys_of_missing_ok = True
    env_drop = ("AWS_", "PASSWORD_STORE_", "GIT_")

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # The operator's keyring (runs opsline) and a teammate's, each with its own key; the
        # operator has the teammate's public key, trusted.
        cls.home = new_home()
        cls.mate_home = new_home()
        cls.me = make_key(cls.home, "operator")
        cls.mate = make_key(cls.mate_home, "teammate")
        share_key(cls.mate_home, cls.home, cls.mate)
        cls.homes = [cls.home, cls.mate_home]

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        for home in cls.homes:
            subprocess.run(["gpgconf", "--kill", "all"], env=dict(os.environ, GNUPGHOME=home),
                           capture_output=True)
            shutil.rmtree(home, ignore_errors=True)

    def setUp(self):
        super().setUp()
        self.store = os.path.join(self.work, "password-store")

    # ---- helpers ---------------------------------------------------------------------------

    def env_fixed(self):
        return {"GNUPGHOME": self.home, "PASSWORD_STORE_DIR": self.store}

    def pass_cmd(self, *args, check=True, **extra):
        return subprocess.run([PASS, *args], env=self.env(**extra), capture_output=True,
                              text=True, timeout=60, check=check)

    def init_store(self, *fprs):
        self.pass_cmd("init", *fprs)
        self.assertTrue(os.path.isfile(os.path.join(self.store, ".gpg-id")))

    def pass_show(self, name):
        """(secret, {field: value}) of an entry, read with `pass show`."""
        r = self.pass_cmd("show", name, check=False)
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        return lines[0], dict(line.split(": ", 1) for line in lines[1:] if ": " in line)

    def wrapper_dir(self, name, body):
        """A directory holding an executable `name` (a shell script); put it first on PATH."""
        d = os.path.join(self.work, f"bin-{name}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, name), "w") as f:
            f.write("#!/bin/sh\n" + body)
        os.chmod(os.path.join(d, name), 0o755)
        return d

    def slow_bin_dir(self):
        """`pass` and `gpg` that sleep before running the real ones, so the /proc sampler
        cannot miss the store's children."""
        self.wrapper_dir("pass", f"sleep 0.3\nexec '{PASS}' \"$@\"\n")
        return self.wrapper_dir("gpg", f"sleep 0.3\nexec '{GPG}' \"$@\"\n")

    # ---- tests -----------------------------------------------------------------------------

    def test_dotenv_and_pass_hold_the_same_working_key_and_no_child_sees_a_secret(self):
        self.init_store(self.me, self.mate)
        env = self.env(PATH=self.slow_bin_dir() + os.pathsep + os.environ["PATH"])
        r, children = run_watched([OPSLINE, "apply", "acme", "--secrets", "dotenv,pass", "-v",
                                   "--json"], self.work, env)
        out, err = r.stdout, r.stderr
        self.assertEqual(r.returncode, 0, out + err)
        report = json.loads(out)
        self.assertTrue(all(item["ok"] for item in report["items"]), report)

        secrets_ = {}
        for envname, other in (("production", "staging"), ("staging", "production")):
            bucket = f"acme-{envname}"
            secret, fields = self.pass_show(f"aws/{bucket}")
            dotenv = self.env_file(bucket)
            self.assertEqual(fields.get("aws_access_key_id"), dotenv["AWS_ACCESS_KEY_ID"])
            self.assertEqual(secret, dotenv["AWS_SECRET_ACCESS_KEY"])
            self.assertEqual(fields.get("region"), REGION)
            self.assertEqual(fields.get("bucket"), bucket)
            self.assertEqual(self.keys_of(bucket), [fields["aws_access_key_id"]])
            self.assert_key_works_only_on((fields["aws_access_key_id"], secret), bucket,
                                          f"acme-{other}")
            path = os.path.join(self.store, "aws", f"{bucket}.gpg")
            self.assertEqual(os.stat(path).st_mode & 0o777, 0o600, path)
            secrets_[bucket] = secret

            # Encrypted to both recipients of .gpg-id: the teammate, whose keyring holds only
            # their own secret key, decrypts it too.
            packets = gpg(self.home, "--list-packets", path, check=False).stdout
            self.assertEqual(packets.count(":pubkey enc packet:"), 2, packets)
            mate = gpg(self.mate_home, "--quiet", "--decrypt", path, check=False)
            self.assertEqual(mate.returncode, 0, mate.stderr)
            self.assertEqual(mate.stdout.splitlines()[0], secret)

        # No child process held a secret in its argv or environment.
        names = {os.path.basename(name).decode(errors="replace")
                 for c in children for name in programs(c)}
        # The encryptions of the two entries: the secret went to these on stdin.
        inserts = [c for c in children
                   if b"--encrypt\0" in c["cmdline"] and b"--output\0-\0" in c["cmdline"]]
        self.assertGreaterEqual(len(inserts), 2, f"no entry's gpg was sampled: {names}")
        self.assertTrue(all(c["environ"] for c in inserts), "environments were not readable")
        for bucket, secret in secrets_.items():
            self.assert_no_child_holds(children, secret.encode(), f"secret of {bucket}")
            self.assertNotIn(secret, out)
            self.assertNotIn(secret, err)
        print(f"\n  sampled {len(children)} children of opsline: {sorted(names)}",
              file=sys.stderr)

        # A rerun creates no key and leaves the entries alone.
        entries = {b: read_bytes(os.path.join(self.store, "aws", f"{b}.gpg"))
                   for b in secrets_}
        before = {b: self.keys_of(b) for b in secrets_}
        r = self.opsline("apply", "acme", "--secrets", "dotenv,pass")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual({b: self.keys_of(b) for b in secrets_}, before)
        for b, data in entries.items():
            self.assertEqual(read_bytes(os.path.join(self.store, "aws", f"{b}.gpg")), data,
                             f"aws/{b} was rewritten by a run that created no key")
            self.assertEqual(self.pass_show(f"aws/{b}")[0], secrets_[b])

    def test_a_store_added_later_is_filled_from_pass_without_a_new_key(self):
        self.init_store(self.me)
        r = self.opsline("apply", "later", "--secrets", "pass")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        before = {e: self.keys_of(f"later-{e}") for e in ("production", "staging")}
        r = self.opsline("apply", "later", "--secrets", "pass,dotenv")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        for envname, keys in before.items():
            bucket = f"later-{envname}"
            self.assertEqual(self.keys_of(bucket), keys)
            secret, fields = self.pass_show(f"aws/{bucket}")
            dotenv = self.env_file(bucket)
            self.assertEqual(keys, [dotenv["AWS_ACCESS_KEY_ID"]])
            self.assertEqual((dotenv["AWS_ACCESS_KEY_ID"], dotenv["AWS_SECRET_ACCESS_KEY"]),
                             (fields["aws_access_key_id"], secret))

    def test_a_failed_write_fails_the_item_and_the_rerun_fills_pass_from_dotenv(self):
        self.init_store(self.me)
        # A gpg that fails to encrypt an entry (the checks before the run still pass).
        broken = self.wrapper_dir("gpg", "prev=\nfor a in \"$@\"; do\n"
                                  "  [ \"$prev\" = --output ] && [ \"$a\" = - ] && "
                                  "{ echo 'gpg: write error: disk full' >&2; exit 2; }\n"
                                  f"  prev=$a\ndone\nexec '{GPG}' \"$@\"\n")
        r = self.opsline("apply", "brk", "-e", "production", "--secrets", "dotenv,pass",
                         env=self.env(PATH=broken + os.pathsep + os.environ["PATH"]))
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("pass: gpg could not encrypt aws/brk-production", r.stdout + r.stderr)
        self.assertIn("disk full", r.stdout + r.stderr)
        keys = self.keys_of("brk-production")
        self.assertEqual(len(keys), 1)
        self.assertFalse(os.path.exists(os.path.join(self.store, "aws", "brk-production.gpg")))

        r = self.opsline("apply", "brk", "-e", "production", "--secrets", "dotenv,pass")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(self.keys_of("brk-production"), keys)
        secret, fields = self.pass_show("aws/brk-production")
        dotenv = self.env_file("brk-production")
        self.assertEqual((fields["aws_access_key_id"], secret),
                         (dotenv["AWS_ACCESS_KEY_ID"], dotenv["AWS_SECRET_ACCESS_KEY"]))

    def test_the_dir_option_wins_over_password_store_dir(self):
        other = os.path.join(self.work, "team-store")
        self.pass_cmd("init", self.me, PASSWORD_STORE_DIR=other)
        r = self.opsline("apply", "optdir", "-e", "production", "--secrets", "pass",
                         "--set", f"pass.dir={other}",
                         env=self.env(PASSWORD_STORE_DIR=os.path.join(self.work, "nowhere")))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertTrue(os.path.isfile(os.path.join(other, "aws", "optdir-production.gpg")))
        r = self.pass_cmd("show", "aws/optdir-production", PASSWORD_STORE_DIR=other)
        fields = dict(line.split(": ", 1) for line in r.stdout.splitlines()[1:])
        self.assertEqual(self.keys_of("optdir-production"), [fields["aws_access_key_id"]])

    def test_a_signed_gpg_id_is_checked_by_pass_itself(self):
        signed = {"PASSWORD_STORE_SIGNING_KEY": self.me}
        self.pass_cmd("init", self.me, **signed)
        self.assertTrue(os.path.isfile(os.path.join(self.store, ".gpg-id.sig")))
        r = self.opsline("apply", "sig", "-e", "production", "--secrets", "pass",
                         env=self.env(**signed))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        secret, fields = self.pass_show("aws/sig-production")
        self.assertEqual(self.keys_of("sig-production"), [fields["aws_access_key_id"]])

        # Someone adds a recipient without signing: pass refuses to encrypt to it.
        with open(os.path.join(self.store, ".gpg-id"), "a") as f:
            f.write(self.mate + "\n")
        r = self.opsline("apply", "sig", "-e", "staging", "--secrets", "pass",
                         env=self.env(**signed))
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("pass insert aws/sig-staging", r.stdout + r.stderr)
        self.assertIn("Signature for", r.stdout + r.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.store, "aws", "sig-staging.gpg")))

    def test_a_git_store_gets_every_entry_committed(self):
        self.init_store(self.me)
        ident = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@opsline.invalid",
                 "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@opsline.invalid"}
        self.pass_cmd("git", "init", **ident)
        for k, v in (("user.name", "t"), ("user.email", "t@opsline.invalid")):
            subprocess.run(["git", "-C", self.store, "config", k, v], check=True)
        products = [f"gitp{i}" for i in range(6)]  # 12 entries written at once
        r = self.opsline("apply", *products, "--secrets", "pass",
                         "--set", "pass.path=team/aws/{product}/{environment}")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertNotIn("index.lock", r.stderr)
        names = [f"team/aws/{p}/{e}" for p in products for e in ("production", "staging")]
        tracked = subprocess.run(["git", "-C", self.store, "ls-files"], capture_output=True,
                                 text=True, check=True).stdout.split()
        for name in names:
            self.assertIn(f"{name}.gpg", tracked)
            secret, fields = self.pass_show(name)
            bucket = name.split("/")[2] + "-" + name.split("/")[3]
            self.assertEqual(self.keys_of(bucket), [fields["aws_access_key_id"]])
            self.assertEqual(fields["bucket"], bucket)
        status = subprocess.run(["git", "-C", self.store, "status", "--porcelain"],
                                capture_output=True, text=True, check=True).stdout
        self.assertEqual(status, "", "entries left uncommitted")
        log = subprocess.run(["git", "-C", self.store, "log", "--format=%s", "--name-only"],
                             capture_output=True, text=True, check=True).stdout
        self.assertRegex(log, "Add given password")
        for name in names:  # every entry went in with a commit of its own or of a group
            self.assertIn(f"{name}.gpg\n", log)

        # A key replaced (the user's key deleted by hand) overwrites its entry, committed.
        bucket = "gitp0-production"
        old = self.pass_show("team/aws/gitp0/production")[1]["aws_access_key_id"]
        self.client("iam").delete_access_key(UserName=bucket, AccessKeyId=old)
        r = self.opsline("apply", "gitp0", "-e", "production", "--secrets", "pass",
                         "--set", "pass.path=team/aws/{product}/{environment}")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        new = self.pass_show("team/aws/gitp0/production")[1]["aws_access_key_id"]
        self.assertNotEqual(new, old)
        self.assertEqual(self.keys_of(bucket), [new])
        status = subprocess.run(["git", "-C", self.store, "status", "--porcelain"],
                                capture_output=True, text=True, check=True).stdout
        self.assertEqual(status, "", "the replaced entry was left uncommitted")

    def test_a_recipient_without_a_usable_key_stops_the_run_and_the_fixed_rerun_stores(self):
        carol_home = new_home()
        type(self).homes.append(carol_home)
        carol = make_key(carol_home, "carol")
        self.init_store(self.me)
        with open(os.path.join(self.store, ".gpg-id"), "a") as f:
            f.write(f"{carol}  # carol, who just joined\n")

        r = self.opsline("apply", "miss", "--secrets", "pass")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("pass", r.stderr)
        self.assertIn(carol, r.stderr)
        self.assertIn("no public gpg key", r.stderr)
        self.assertEqual(self.keys_of("miss-production"), [])
        self.assertFalse(os.path.exists(os.path.join(self.store, "aws")))

        # Imported but not trusted: gpg would not encrypt to it either.
        share_key(carol_home, self.home, carol, trust=False)
        r = self.opsline("apply", "miss", "--secrets", "pass")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn(carol, r.stderr)
        self.assertIn("trust", r.stderr)
        self.assertEqual(self.keys_of("miss-production"), [])

        gpg(self.home, "--quiet", "--import-ownertrust", input=f"{carol}:6:\n")
        r = self.opsline("apply", "miss", "--secrets", "pass")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        for envname in ("production", "staging"):
            secret, fields = self.pass_show(f"aws/miss-{envname}")
            self.assertEqual(self.keys_of(f"miss-{envname}"), [fields["aws_access_key_id"]])
            path = os.path.join(self.store, "aws", f"miss-{envname}.gpg")
            carol_reads = gpg(carol_home, "--quiet", "--decrypt", path, check=False)
            self.assertEqual(carol_reads.returncode, 0, carol_reads.stderr)
            self.assertEqual(carol_reads.stdout.splitlines()[0], secret)

    def test_an_uninitialised_store_or_a_missing_pass_stops_the_run_with_the_fix(self):
        os.makedirs(self.store)
        r = self.opsline("apply", "noinit", "--secrets", "pass")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("pass init", r.stderr)
        self.assertIn(self.store, r.stderr)
        self.assertEqual(self.keys_of("noinit-production"), [])

        self.init_store(self.me)
        nopass = os.path.join(self.work, "bin-without-pass")
        os.makedirs(nopass)
        for tool in ("gpg", "git", "sh"):
            os.symlink(shutil.which(tool), os.path.join(nopass, tool))
        r = self.opsline("apply", "noinit", "--secrets", "pass", env=self.env(PATH=nopass))
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("`pass` is not installed", r.stderr)
        self.assertEqual(self.keys_of("noinit-production"), [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
