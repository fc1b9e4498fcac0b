#!/usr/bin/env python3
"""How the host keeps a key's secret across stores and runs, against moto with signatures
and IAM policies enforced, checked with boto3:

- a .env removed by hand is refilled from another store that holds the key (no new key);
- with no store left holding it, the key is replaced and the old one deleted;
- a lost state directory (no journal) does not cause a second key while a store holds it;
- a pipeline that would create keys and store them nowhere is refused before any request;
- a store that cannot work (its prepare check fails) stops the run before any key exists;
- when the bucket stage fails, the created key is still stored;
- two runs at once with different state directories, writing the same .env files, create
  one key per user between them, and the files hold it (item locks across processes).
- two runs sharing one new .env file per product (each with its own variable names): the
  one whose write is held up by a slow fsync finds the file created by the other meanwhile
  and merges into it, and the other did not wait for the slow write (a new file is created
  without the directory lock, and only where none is);
- an iam stage whose time limit passes while the journal's fsync before CreateAccessKey
  still runs (a slow disk, made by a preloaded fsync shim) sends no CreateAccessKey once the
  fsync returns: no key exists that nobody stores, and the rerun creates and stores one.

usage: test_secrets_recovery.py  (env: OPSLINE=path/to/opsline)
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
from opsline_e2e import MotoTestCase  # noqa: E402

from botocore.exceptions import ClientError  # noqa: E402


def read_env(path):
    values = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                k, v = line.split("=", 1)
                values[k] = v.strip('"')
    return values


class Base(MotoTestCase):
    remove_state = True
    remove_work = True
    opsline_timeout = 120

    def env_file(self, item):
        return read_env(os.path.join(self.work, f"{item}.env"))

    def assert_key_works(self, item):
        v = self.env_file(item)
        s3 = self.client("s3", (v["AWS_ACCESS_KEY_ID"], v["AWS_SECRET_ACCESS_KEY"]))
        s3.put_object(Bucket=item, Key="probe", Body=b"x")
        self.assertEqual(s3.get_object(Bucket=item, Key="probe")["Body"].read(), b"x")


class RecoveryTest(Base):
    def test_a_removed_env_file_is_refilled_from_another_store_without_a_new_key(self):
        stores = ("--secrets", "dotenv,aws-secretsmanager", "-e", "production")
        self.apply_ok("refill", *stores)
        before = self.env_file("refill-production")
        keys = self.keys_of("refill-production")
        os.unlink(os.path.join(self.work, "refill-production.env"))
        r = self.apply_ok("refill", *stores)
        self.assertEqual(self.keys_of("refill-production"), keys)
        self.assertEqual(self.env_file("refill-production"), before)
        self.assertEqual(os.stat(os.path.join(self.work, "refill-production.env")).st_mode
                         & 0o777, 0o600)
        self.assertNotIn(before["AWS_SECRET_ACCESS_KEY"], r.stdout + r.stderr)
        self.assert_key_works("refill-production")

    def test_a_key_no_store_holds_any_more_is_replaced_and_the_old_one_deleted(self):
        self.apply_ok("gone", "-e", "production")
        old = self.env_file("gone-production")["AWS_ACCESS_KEY_ID"]
        os.unlink(os.path.join(self.work, "gone-production.env"))
        self.apply_ok("gone", "-e", "production")
        new = self.env_file("gone-production")["AWS_ACCESS_KEY_ID"]
        self.assertNotEqual(new, old)
        self.assertEqual(self.keys_of("gone-production"), [new])
        self.assert_key_works("gone-production")

    def test_a_lost_state_directory_creates_no_second_key_while_the_env_file_holds_one(self):
        self.apply_ok("nojournal", "-e", "production")
        keys = self.keys_of("nojournal-production")
        shutil.rmtree(os.path.join(self.work, ".opsline"))
        r = self.apply_ok("nojournal", "-e", "production")
        self.assertEqual(self.keys_of("nojournal-production"), keys)
        self.assertEqual(self.env_file("nojournal-production")["AWS_ACCESS_KEY_ID"], keys[0])
        # And the run after that is no different (the journal learnt it again).
        self.apply_ok("nojournal", "-e", "production")
        self.assertEqual(self.keys_of("nojournal-production"), keys)
        self.assertIn("nojournal-production", r.stdout)

    def test_a_key_request_whose_stage_timed_out_during_the_journal_fsync_is_not_sent(self):
        pipeline = os.path.join(self.work, "pipeline.json")
        # One item at a time, four items: each journal fsync takes 2.5 s, so each item's iam
        # stage runs out of its 1 s while the record written before CreateAccessKey is on its
        # way to the disk, and the next item starts. When the first item's fsync returns
        # (2.5 s), the third item is running: the run's AWS client is open, and a request
        # sent then would reach AWS.
        with open(pipeline, "w") as f:
            json.dump({"stages": ["bucket", {"stage": "iam", "timeout": "1s"}, "policy",
                                  "dotenv"], "concurrency": 1}, f)
        users = ("late-production", "late-staging", "later-production", "later-staging")
        r = self.opsline("apply", "late", "later", "--pipeline", pipeline,
                         env=self.env(**self.slow_journal_fsync(2500)))
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        for user in users:
            self.assertIn(f"stage 'iam' did not complete within 1.0 s for item {user}", r.stderr)
            # The user was created; the fsync then completed after the time limit, and no key
            # request followed it.
            self.assertEqual(self.keys_of(user), [], r.stderr)
            self.assertFalse(os.path.exists(os.path.join(self.work, f"{user}.env")))
            self.assertIn(f"the access key request for user {user} was not sent (the stage "
                          "had ended); no key created", r.stderr)
        # A plain rerun (no slow disk) creates each user's one key and stores it.
        r = self.opsline("apply", "late", "later", "--pipeline", pipeline)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        for user in users:
            self.assertEqual(self.keys_of(user), [self.env_file(user)["AWS_ACCESS_KEY_ID"]])
            self.assert_key_works(user)

    def two_runs_at_once(self, products, lock_dirs):
        """Both runs start together; with 30 products some users are looked at by both
        before either's CreateAccessKey has answered (without item locks 2 of 30 users got a
        second key, whose secret the shared .env did not keep)."""
        procs = []
        for i, lock_dir in enumerate(lock_dirs):
            os.makedirs(lock_dir, mode=0o700, exist_ok=True)
            env = self.env(XDG_RUNTIME_DIR=lock_dir)
            procs.append(subprocess.Popen(
                [os.environ["OPSLINE"], "apply", *products, "-e", "production", "--state-dir",
                 os.path.join(self.work, f"state{i}")],
                cwd=self.work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True))
        outs = [p.communicate(timeout=self.opsline_timeout) for p in procs]
        for p, (out, err) in zip(procs, outs):
            self.outputs += [out, err]
        return [p.returncode for p in procs], outs

    def test_two_runs_at_once_on_the_same_env_files_create_one_key_per_user(self):
        products = [f"twin{i}" for i in range(30)]
        shared = os.path.join(self.work, "locks")
        codes, outs = self.two_runs_at_once(products, [shared, shared])
        self.assertEqual(codes, [0, 0], outs)
        for p in products:
            item = f"{p}-production"
            keys = self.keys_of(item)
            self.assertEqual(len(keys), 1, (item, keys))
            self.assertEqual(self.env_file(item)["AWS_ACCESS_KEY_ID"], keys[0])
        self.assert_key_works("twin0-production")
        # A later run with either state directory changes nothing.
        r = self.opsline("apply", *products, "-e", "production", "--state-dir",
                         os.path.join(self.work, "state1"), "--json")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        for p in products:
            self.assertEqual(len(self.keys_of(f"{p}-production")), 1)

    def test_a_file_created_by_another_run_during_a_slow_write_is_merged_into(self):
        # Production and staging of "duo" share duo.env, each run with its own variable
        # names. The production run's temp file takes 6 s to fsync; the staging run starts
        # once that temp file exists, finds duo.env absent and creates it, and exits while the
        # production run still waits for its disk. The production run's write then finds
        # duo.env there: it must merge into it, not replace it.
        def args(environment, prefix):
            names = ("access_key_id", "secret_access_key", "region", "bucket")
            sets = [a for n in names for a in ("--set", f"dotenv.var_{n}={prefix}_{n.upper()}")]
            return ["apply", "duo", "-e", environment, "--env-file", "{product}.env", *sets,
                    "--state-dir", os.path.join(self.work, f"state-{environment}")]
        temp = os.path.join(self.work, ".duo.env.opsline-tmp")
        slow = subprocess.Popen([os.environ["OPSLINE"], *args("production", "PROD")],
                                cwd=self.work, env=self.env(**self.slow_fsync(6000, "opsline-tmp")),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            for _ in range(6000):
                if os.path.exists(temp) or slow.poll() is not None:
                    break
                time.sleep(0.01)
            self.assertTrue(os.path.exists(temp), "the production run wrote no temp file")
            fast = self.opsline(*args("staging", "STAGING"))
            self.assertEqual(fast.returncode, 0, fast.stdout + fast.stderr)
            # It did not wait for the production run's slow write (no lock held across it).
            self.assertIsNone(slow.poll(), "the staging run waited for the production write")
            out, err = slow.communicate(timeout=self.opsline_timeout)
        finally:
            if slow.poll() is None:
                slow.kill()
                slow.communicate()
        self.assertEqual(slow.returncode, 0, out + err)
        values = read_env(os.path.join(self.work, "duo.env"))
        for environment, prefix in (("production", "PROD"), ("staging", "STAGING")):
            user = f"duo-{environment}"
            self.assertEqual(self.keys_of(user), [values[f"{prefix}_ACCESS_KEY_ID"]], values.keys())
            self.assertEqual(values[f"{prefix}_BUCKET"], user)
            s3 = self.client("s3", (values[f"{prefix}_ACCESS_KEY_ID"],
                                    values[f"{prefix}_SECRET_ACCESS_KEY"]))
            s3.put_object(Bucket=user, Key="probe", Body=b"x")
        self.assertEqual(os.stat(os.path.join(self.work, "duo.env")).st_mode & 0o777, 0o600)
        self.assertEqual([n for n in os.listdir(self.work) if n.startswith(".duo.env")], [])

    def test_a_pipeline_that_stores_keys_nowhere_is_refused_before_any_request(self):
        pipeline = os.path.join(self.work, "p.json")
        with open(pipeline, "w") as f:
            json.dump({"stages": ["bucket", "iam", "policy"]}, f)
        r = self.opsline("apply", "nostore", "--pipeline", pipeline)
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("no secret store", r.stderr)
        self.assertIn("--secrets", r.stderr)
        with self.assertRaises(ClientError):
            self.client("iam").get_user(UserName="nostore-production")

    def test_a_store_that_cannot_work_stops_the_run_before_any_key_exists(self):
        # The 1password file would go under a path that is a regular file: its check
        # (prepare) fails, naming the store, before any request; fixed, the run works.
        blocker = os.path.join(self.work, "blocker")
        with open(blocker, "w") as f:
            f.write("not a directory\n")
        target = os.path.join(blocker, "team.csv")
        args = ("early", "-e", "production", "--secrets", "dotenv,1password",
                "--set", f"1password.file={target}")
        r = self.opsline("apply", *args)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("1password", r.stderr)
        with self.assertRaises(ClientError):
            self.client("iam").get_user(UserName="early-production")
        os.unlink(blocker)
        self.apply_ok(*args)
        keys = self.keys_of("early-production")
        self.assertEqual(len(keys), 1)
        with open(target) as f:
            self.assertIn(keys[0], f.read())

    def test_the_key_is_stored_even_when_the_bucket_stage_fails(self):
        # Access logs to a bucket that does not exist: the bucket stage fails after the
        # bucket exists; iam runs beside it and its key must still reach the store.
        r = self.opsline("apply", "taken", "-e", "production",
                         "--set", "bucket.logging_target_bucket=no-such-log-bucket-here")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("bucket", r.stdout + r.stderr)
        keys = self.keys_of("taken-production")
        self.assertEqual(len(keys), 1, r.stdout + r.stderr)
        self.assertEqual(self.env_file("taken-production")["AWS_ACCESS_KEY_ID"], keys[0])


class EnvTargetTest(Base):
    """.env targets that would lose or misdirect a secret are refused before any request."""

    def assert_refused(self, args, fragment, user):
        r = self.opsline("apply", *args)
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn(fragment, r.stderr)
        with self.assertRaises(ClientError):
            self.client("iam").get_user(UserName=user)

    def test_two_items_sharing_one_env_file_are_refused(self):
        self.assert_refused(("shared", "--env-file", "one.env"),
                            "would both write one.env", "shared-production")

    def test_a_symlinked_env_file_is_refused_and_its_target_untouched(self):
        victim = os.path.join(self.work, "victim.txt")
        with open(victim, "w") as f:
            f.write("VICTIM_PASSWORD=keep-me\n")
        os.symlink(victim, os.path.join(self.work, "linked-production.env"))
        self.assert_refused(("linked", "-e", "production"), "symbolic link",
                            "linked-production")
        with open(victim) as f:
            self.assertEqual(f.read(), "VICTIM_PASSWORD=keep-me\n")

    def test_a_directory_target_is_refused(self):
        self.assert_refused(("dirtarget", "-e", "production", "--env-file", "{product}/"),
                            "names a directory", "dirtarget-production")

    def test_an_unclosed_quote_in_our_variable_is_refused_and_the_file_untouched(self):
        path = os.path.join(self.work, "quoted-production.env")
        text = 'KEEP=1\nAWS_SECRET_ACCESS_KEY="multi\nKEEP2=2\n'
        with open(path, "w") as f:
            f.write(text)
        self.assert_refused(("quoted", "-e", "production"), "line 2", "quoted-production")
        with open(path) as f:
            self.assertEqual(f.read(), text)

    def test_a_multi_line_value_is_replaced_whole_and_the_file_still_sources(self):
        path = os.path.join(self.work, "multi-production.env")
        with open(path, "w") as f:
            f.write('# app\nAWS_SECRET_ACCESS_KEY="multi\nline"\nAWS_REGION=x # ours\n')
        self.apply_ok("multi", "-e", "production")
        out = subprocess.run(["bash", "-c", f"set -a; . {path}; echo \"$AWS_ACCESS_KEY_ID\""
                              " \"$AWS_SECRET_ACCESS_KEY\""], capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stderr)
        key_id, secret = out.stdout.split()
        self.assertEqual(self.keys_of("multi-production"), [key_id])
        self.assertNotIn("line", secret)
        with open(path) as f:
            body = f.read()
        self.assertIn("# app\n", body)
        self.assertIn("AWS_REGION=eu-north-1 # ours\n", body)

    def test_a_variable_name_the_shell_relies_on_is_refused(self):
        self.assert_refused(("clobber", "-e", "production",
                             "--set", "dotenv.var_secret_access_key=PATH"),
                            "would replace a variable", "clobber-production")


class CoreDumpTest(unittest.TestCase):
    """The process holds secrets: SIGQUIT with an unlimited core size leaves no core file
    (a plain program here does leave one: the check is that the same signal kills opsline
    and no file appears)."""

    def test_no_core_file_when_killed_by_sigquit(self):
        import resource
        import signal
        import socket
        import time
        work = tempfile.mkdtemp(prefix="opsline-core.")
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)  # accepts and never answers: opsline waits on its preflight
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update({"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
                    "AWS_SECRET_ACCESS_KEY": "coreDumpTestSecretValue0123456789",
                    "AWS_ENDPOINT_URL": f"http://127.0.0.1:{listener.getsockname()[1]}",
                    "AWS_CONFIG_FILE": os.path.join(work, "none"),
                    "AWS_SHARED_CREDENTIALS_FILE": os.path.join(work, "none")})

        def unlimited_core():
            resource.setrlimit(resource.RLIMIT_CORE,
                               (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        opsline = os.environ.get("OPSLINE", "opsline")
        p = subprocess.Popen([opsline, "apply", "core", "-e", "production"], cwd=work, env=env,
                             preexec_fn=unlimited_core, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        try:
            time.sleep(1.0)
            p.send_signal(signal.SIGQUIT)
            p.wait(timeout=30)
        finally:
            listener.close()
        self.assertEqual(p.returncode, -signal.SIGQUIT)
        self.assertEqual([f for f in os.listdir(work) if f.startswith("core")], [])
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
