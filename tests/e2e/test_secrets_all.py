#!/usr/bin/env python3
"""Cross-store acceptance (issue 6): `opsline apply` against moto with signatures and IAM
policies enforced, the keys read back by each store's own client.

- `--secrets dotenv,keepassxc,pass,aws-secretsmanager` stores both keys of a product in all
  four: the .env file, `keepassxc-cli show -s`, `pass show` (a throwaway gpg key made here,
  in a temporary GNUPGHOME) and boto3's secretsmanager give the same key id and secret,
  which is the user's only key, works on its bucket and is denied on the other.
- During that run every child process of opsline is sampled from /proc: no secret (the new
  keys' secrets, the KeePassXC password, the run's own AWS secret) is on a command line or
  in an environment; none is in stdout or stderr (-v --json) or in the journal.
- A store whose program sleeps 1 s (the SDK example cmdstore) for 20 items adds about one
  sleep to the run, not 20: the bound is measured in the test, never an absolute number.
- The bitwarden and 1password stores added to the same products later are filled with the
  same keys (their files parse) and no key is created.
- A pipeline with no store is refused: exit 2, a clear message, no request sent.

usage: test_secrets_all.py  (env: OPSLINE=path/to/opsline, OPSLINE_BUILD_DIR=build dir;
       OPSLINE_E2E_STORES=dotenv,pass limits the stores of the first test while debugging)
"""
import csv
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
import opsline_e2e  # noqa: E402
from opsline_e2e import OPSLINE, MotoTestCase, programs, read_env  # noqa: E402

ALL_STORES = ["dotenv", "keepassxc", "pass", "aws-secretsmanager"]
STORES = [s for s in os.environ.get("OPSLINE_E2E_STORES", ",".join(ALL_STORES)).split(",") if s]
TOOLS = {"keepassxc": "keepassxc-cli", "pass": "pass"}


class ChildWatcher(opsline_e2e.ChildWatcher):
    """Samples /proc/PID/cmdline and /proc/PID/environ of every descendant of one process
    while it runs. Children of a store live from milliseconds (gpg) to a second
    (keepassxc-cli unlocking), so /proc is scanned in a tight loop. A child between fork
    and exec is still an image of the parent (same command line, same environment): those
    samples are set aside, since what matters is what the program that runs is given."""

    def __init__(self, root):
        super().__init__(root)
        with open(f"/proc/{root}/cmdline", "rb") as f:
            self.root_cmdline = f.read()
        self.seen = set()  # (cmdline, environ) pairs read from one process at one moment

    @staticmethod
    def _read(pid, what):
        with open(f"/proc/{pid}/{what}", "rb") as f:
            return f.read()

    def _scan(self):
        for pid in self._family()[0]:
            try:
                cmdline = self._read(pid, "cmdline")
                environ = self._read(pid, "environ")
                if self._read(pid, "cmdline") != cmdline:
                    continue  # it exec'd between the reads: the pair would be mixed
            except OSError:
                continue
            if cmdline and cmdline != self.root_cmdline:
                self.seen.add((cmdline, environ))

    def samples(self):
        return [{"cmdline": c, "environ": e} for c, e in self.seen]


class SecretsAllTest(MotoTestCase):
    remove_state = True
    remove_work = True

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.kdbx_password = "kx-" + secrets.token_urlsafe(24)
        cls.gnupg = None
        cls.pass_dir = None
        cls.plugin_dir = None
        cls.full_run = None

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        if cls.gnupg:
            subprocess.run(["gpgconf", "--kill", "all"], env=dict(os.environ, GNUPGHOME=cls.gnupg),
                           capture_output=True)
            shutil.rmtree(cls.gnupg, ignore_errors=True)
        full = cls.full_run["work"] if cls.full_run else None
        for d in (cls.pass_dir, cls.plugin_dir, full):
            if d:
                shutil.rmtree(d, ignore_errors=True)

    # ---- helpers ---------------------------------------------------------------------------

    @classmethod
    def gpg_setup(cls):
        """Two throwaway keys (the test's and a teammate's) in a temporary GNUPGHOME and a
        password store encrypted to both: a team .gpg-id."""
        if cls.gnupg:
            return
        # Short path: gpg-agent's socket path must fit in sockaddr_un.
        cls.gnupg = tempfile.mkdtemp(prefix="gpg.", dir="/tmp")
        os.chmod(cls.gnupg, 0o700)
        env = dict(os.environ, GNUPGHOME=cls.gnupg)
        for uid in ("opsline e2e <e2e@opsline.invalid>", "teammate <mate@opsline.invalid>"):
            subprocess.run(["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "",
                            "--quick-gen-key", uid, "default", "default", "never"],
                           env=env, check=True, capture_output=True)
        out = subprocess.run(["gpg", "--batch", "--with-colons", "--list-keys"], env=env,
                             check=True, capture_output=True, text=True).stdout
        # A primary key's fingerprint is the "fpr" record right after its "pub" record.
        rec = [line.split(":") for line in out.splitlines()]
        fprs = [rec[i + 1][9] for i, f in enumerate(rec) if f[0] == "pub"]
        assert len(fprs) == 2, out
        cls.pass_dir = tempfile.mkdtemp(prefix="opsline-e2e-pass.")
        subprocess.run(["pass", "init", *fprs], env=dict(env, PASSWORD_STORE_DIR=cls.pass_dir),
                       check=True, capture_output=True)

    @classmethod
    def cmdstore_plugin(cls):
        """The SDK example store, compiled from the source tree's header."""
        if cls.plugin_dir:
            return cls.plugin_dir
        cc = shutil.which("cc") or shutil.which("gcc")
        if cc is None:
            raise unittest.SkipTest("no C compiler to build sdk/examples/store-cmd")
        d = tempfile.mkdtemp(prefix="opsline-e2e-plugins.")
        subprocess.run([cc, "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-fPIC",
                        "-fvisibility=hidden", "-shared", "-Wl,--no-undefined",
                        "-I", os.path.join(SRC, "sdk", "include"), "-o",
                        os.path.join(d, "cmdstore.so"),
                        os.path.join(SRC, "sdk", "examples", "store-cmd", "cmdstore.c")],
                       check=True)
        cls.plugin_dir = d
        return d

    # ---- all four stores, one run ------------------------------------------------------------

    def full_run_result(self):
        """Runs `apply acme` into every store once (shared by the tests that check it) while
        sampling opsline's children."""
        cls = type(self)
        if cls.full_run is not None:
            return cls.full_run
        for store, tool in TOOLS.items():
            if store in STORES and shutil.which(tool) is None:
                self.skipTest(f"{tool} is not installed (scripts/install-deps.sh installs it)")
        if "pass" in STORES:
            if shutil.which("gpg") is None:
                self.skipTest("gpg is not installed (scripts/install-deps.sh installs it)")
            cls.gpg_setup()
        work = tempfile.mkdtemp(prefix="opsline-e2e-all.")
        kdbx = os.path.join(work, "vault", "team.kdbx")
        args = ["apply", "acme", "--secrets", ",".join(STORES), "-v", "--json"]
        if "keepassxc" in STORES:
            args += ["--set", "keepassxc.create=true", "--set", f"keepassxc.database={kdbx}"]
        env = self.env(work, OPSLINE_KEEPASSXC_PASSWORD=self.kdbx_password)
        if cls.gnupg:
            env.update(GNUPGHOME=cls.gnupg, PASSWORD_STORE_DIR=cls.pass_dir)
        r, children = opsline_e2e.run_watched([OPSLINE, *args], work, env, watcher=ChildWatcher)
        cls.full_run = {"rc": r.returncode, "out": r.stdout, "err": r.stderr, "work": work,
                        "kdbx": kdbx, "env": env, "children": children}
        return cls.full_run

    def read_back(self, run, store, bucket):
        """(key id, secret) of bucket's entry, read by the store's own client."""
        env = run["env"]
        if store == "dotenv":
            path = os.path.join(run["work"], f"{bucket}.env")
            self.assertEqual(os.stat(path).st_mode & 0o777, 0o600, path)
            v = read_env(path)
            self.assertEqual(v["S3_BUCKET"], bucket)
            return v["AWS_ACCESS_KEY_ID"], v["AWS_SECRET_ACCESS_KEY"]
        if store == "keepassxc":
            product = bucket.rsplit("-", 1)[0]
            r = subprocess.run(["keepassxc-cli", "show", "-q", "-s", "-a", "UserName", "-a",
                                "Password", "-a", "URL", run["kdbx"],
                                f"AWS/{product}/{bucket}"],
                               input=self.kdbx_password + "\n", capture_output=True, text=True,
                               env=env, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
            user, password, url = r.stdout.splitlines()[:3]
            self.assertIn(bucket, url)
            return user, password
        if store == "pass":
            r = subprocess.run(["pass", "show", f"aws/{bucket}"], capture_output=True, text=True,
                               env=env, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
            lines = r.stdout.splitlines()
            fields = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
            self.assertEqual(fields.get("bucket"), bucket, r.stdout.replace(lines[0], "<secret>"))
            return fields["aws_access_key_id"], lines[0]
        if store == "aws-secretsmanager":
            value = json.loads(self.client("secretsmanager").get_secret_value(
                SecretId=f"opsline/{bucket}")["SecretString"])
            norm = {re.sub(r"[^a-z]", "", k.lower()): v for k, v in value.items()}
            key_id = next(v for k, v in norm.items() if k.endswith("accesskeyid"))
            secret = next(v for k, v in norm.items() if k.endswith("secretaccesskey"))
            return key_id, secret
        raise AssertionError(f"no reader for store {store}")

    def test_every_store_holds_the_key_that_works_on_its_bucket_only(self):
        run = self.full_run_result()
        self.assertEqual(run["rc"], 0, run["out"] + run["err"])
        report = json.loads(run["out"])
        self.assertTrue(all(item["ok"] for item in report["items"]), report)
        for env, other in (("production", "staging"), ("staging", "production")):
            bucket, other_bucket = f"acme-{env}", f"acme-{other}"
            got = {store: self.read_back(run, store, bucket) for store in STORES}
            keys = set(got.values())
            self.assertEqual(len(keys), 1, {s: k[0] for s, k in got.items()})
            key = keys.pop()
            self.assertEqual(self.keys_of(bucket), [key[0]])
            self.assertGreater(len(key[1]), 20)
            self.assert_key_works_only_on(key, bucket, other_bucket)
        if "pass" in STORES:
            # The team .gpg-id: the entry is encrypted to both keys.
            path = os.path.join(self.pass_dir, "aws", "acme-production.gpg")
            self.assertEqual(os.stat(path).st_mode & 0o777, 0o600, path)
            packets = subprocess.run(["gpg", "--batch", "--list-packets", path],
                                     env=dict(os.environ, GNUPGHOME=self.gnupg),
                                     capture_output=True, text=True).stdout
            self.assertEqual(packets.count(":pubkey enc packet:"), 2, packets)
        if "keepassxc" in STORES:
            self.assertEqual(os.stat(run["kdbx"]).st_mode & 0o777, 0o600)

    def test_no_secret_reaches_a_child_process_the_output_or_the_journal(self):
        run = self.full_run_result()
        self.assertEqual(run["rc"], 0, run["out"] + run["err"])
        secrets_ = {"AWS secret of the run": self.admin[1]}
        if "keepassxc" in STORES:
            secrets_["KeePassXC password"] = self.kdbx_password
        for env in ("production", "staging"):
            store = STORES[0]
            secrets_[f"secret of acme-{env}"] = self.read_back(run, store, f"acme-{env}")[1]
        children = run["children"]
        names = b" ".join(name for c in children for name in programs(c))
        if "keepassxc" in STORES:
            self.assertIn(b"keepassxc-cli", names, "no keepassxc-cli child was ever sampled")
        if "pass" in STORES:
            self.assertTrue(b"pass" in names or b"gpg" in names, "no pass/gpg child was sampled")
        for what, value in secrets_.items():
            v = value.encode()
            self.assert_no_child_holds(children, v, what)
            self.assertNotIn(value, run["out"], f"{what} in stdout (--json)")
            self.assertNotIn(value, run["err"], f"{what} in stderr (-v)")
            state = os.path.join(run["work"], ".opsline")
            self.assertTrue(os.path.exists(os.path.join(state, "journal.jsonl")))
            for root, _, files in os.walk(state):
                for f in files:
                    with open(os.path.join(root, f), "rb") as fh:
                        self.assertNotIn(v, fh.read(), f"{what} in {f}")
        print(f"\n  sampled {len(children)} child processes of opsline: "
              f"{sorted(set(os.path.basename(n.decode()) for n in names.split()))}",
              file=sys.stderr)

    def test_stores_added_later_are_filled_with_the_same_keys_and_no_new_key(self):
        run = self.full_run_result()
        self.assertEqual(run["rc"], 0, run["out"] + run["err"])
        before = {b: self.keys_of(b) for b in ("acme-production", "acme-staging")}
        bw = os.path.join(run["work"], "bitwarden.json")
        op = os.path.join(run["work"], "1password.csv")
        args = ["apply", "acme", "--secrets", ",".join(STORES + ["bitwarden", "1password"]),
                "--set", f"bitwarden.file={bw}", "--set", f"1password.file={op}"]
        if "keepassxc" in STORES:
            args += ["--set", f"keepassxc.database={run['kdbx']}"]
        r = subprocess.run([OPSLINE, *args], cwd=run["work"], env=run["env"],
                           capture_output=True, text=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual({b: self.keys_of(b) for b in before}, before, "a new key was created")
        with open(bw) as f:
            items = {i["name"]: i["login"] for i in json.load(f)["items"]}
        with open(op, newline="") as f:
            rows = {row["title"]: row for row in
                    csv.DictReader(f, restkey="extra") if row.get("title")}
        for bucket in before:
            key = self.read_back(run, STORES[0], bucket)
            self.assertEqual((items[bucket]["username"], items[bucket]["password"]), key)
            self.assertEqual((rows[bucket]["username"], rows[bucket]["password"]), key)
        for path in (bw, op):
            self.assertEqual(os.stat(path).st_mode & 0o777, 0o600, path)

    # ---- a slow store does not make the run slow --------------------------------------------

    def test_a_store_whose_program_sleeps_1s_for_20_items_adds_about_1s(self):
        plugins = self.cmdstore_plugin()
        log = os.path.join(self.work, "calls.log")
        entries = os.path.join(self.work, "entries")
        script = os.path.join(self.work, "slow-store.sh")
        dirstore = os.path.join(SRC, "sdk", "examples", "store-cmd", "dirstore.sh")
        # Each call records how long its own `sleep 1` took: the yardstick, measured under
        # the machine's load of the moment, instead of an absolute number of seconds.
        with open(script, "w") as f:
            f.write("#!/bin/sh\nstart=$(date +%s.%N)\nsleep 1\n"
                    f"echo \"$1 $2 $start $(date +%s.%N)\" >>'{log}'\n"
                    f"exec '{dirstore}' \"$@\"\n")
        os.chmod(script, 0o755)
        fast = [f"fast{i}" for i in range(10)]
        slow = [f"slow{i}" for i in range(10)]

        t0 = time.monotonic()
        r = self.opsline("apply", *fast, "--secrets", "dotenv")
        base = time.monotonic() - t0
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

        t0 = time.monotonic()
        r = self.opsline("apply", *slow, "--secrets", "dotenv,cmdstore", "--plugin-dir", plugins,
                         "--set", f"cmdstore.command={script}",
                         "--set", f"cmdstore.env=CMDSTORE_DIR={entries}")
        wall = time.monotonic() - t0
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

        with open(log) as f:
            calls = [line.split() for line in f]
        puts = [c for c in calls if c[0] == "put"]
        names = sorted(f"{p}-{e}" for p in slow for e in ("production", "staging"))
        self.assertEqual(sorted(c[1] for c in puts), names)
        for name in names:
            with open(os.path.join(entries, name)) as f:
                stored = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
            dotenv = self.env_file(name)
            self.assertEqual(stored["access_key_id"], dotenv["AWS_ACCESS_KEY_ID"])
            self.assertEqual(stored["secret_access_key"], dotenv["AWS_SECRET_ACCESS_KEY"])
        sleeps = sorted(float(c[3]) - float(c[2]) for c in puts)
        one = sleeps[len(sleeps) // 2]
        span = max(float(c[3]) for c in puts) - min(float(c[2]) for c in puts)
        print(f"\n  one sleep {one:.2f} s (median of {len(sleeps)}); the 20 puts spanned "
              f"{span:.2f} s (serial: {sum(sleeps):.1f} s); run with dotenv only {base:.2f} s, "
              f"with the sleeping store too {wall:.2f} s", file=sys.stderr)
        self.assertLess(span, 5 * one, "the store's programs did not run side by side")
        self.assertLess(wall - base, 5 * one,
                        f"the 1 s store added {wall - base:.1f} s to a {base:.1f} s run")

    # ---- no store: refused before any request ----------------------------------------------

    def test_a_pipeline_with_no_store_is_refused_before_any_request(self):
        with open(os.path.join(self.work, "p.json"), "w") as f:
            json.dump({"stages": ["bucket", "iam", "policy"]}, f)
        r = self.assert_refused_before_any_request("apply", "nostore", "--pipeline", "p.json")
        self.assertIn("p.json", r.stderr)
        self.assertIn("store", r.stderr)
        self.assertIn("--secrets", r.stderr)
        users = [u["UserName"] for u in self.client("iam").list_users()["Users"]]
        self.assertNotIn("nostore-production", users)


if __name__ == "__main__":
    unittest.main(verbosity=2)
