"""Helpers shared by the end-to-end tests (tests/e2e/test_*.py), which start their own
auth-enforcing moto through moto_fixture, run the opsline binary ($OPSLINE) against it and
check the results with boto3; read_env is also used by the integration tests (opsline_it)
and scripts/demo_check.py.

    class MyTest(opsline_e2e.MotoTestCase):
        def test_x(self):
            r = self.opsline("apply", "acme")          # in self.work, admin env, no config files
            v = read_env(os.path.join(self.work, "acme-production.env"))
            self.assert_key_works_only_on((v["AWS_ACCESS_KEY_ID"], ...), bucket, other)

What differs between the tests is set with class attributes (see MotoTestCase).
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)
import moto_fixture  # noqa: E402

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

OPSLINE = os.environ.get("OPSLINE", "opsline")
REGION = "eu-north-1"


def read_env(path):
    """KEY=value lines of a .env file (quotes removed, comments skipped)."""
    values = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            if line.startswith("export "):
                line = line[len("export "):]
            k, v = line.split("=", 1)
            values[k.strip()] = v.strip().strip('"').strip("'")
    return values


class ConnectionCounter:
    """A loopback listener that counts connections: proves no request was sent."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.count = 0
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
                self.count += 1
                conn.close()
            except OSError:
                pass

    def close(self):
        self.stop = True
        self.thread.join()
        self.sock.close()


SAMPLE_SEP = b"\n--exec--\n"


class ChildWatcher(threading.Thread):
    """Samples /proc/PID/cmdline and /proc/PID/environ of every descendant of one process
    while it runs, in a tight loop (gpg lives for milliseconds). stop() returns one
    {"cmdline": bytes, "environ": bytes} a process (pid and start time), the longest read."""

    def __init__(self, root):
        super().__init__(daemon=True)
        self.root = root
        self.done = threading.Event()
        self.seen = {}  # (pid, start time) -> {"cmdline": bytes, "environ": bytes}

    @staticmethod
    def _stat(pid):
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        fields = data[data.rindex(b")") + 2:].split()
        return int(fields[1]), fields[19]  # ppid, start time

    def _family(self):
        """The pids of the root's descendants (the root left out) and every process's start
        time, from one pass over /proc."""
        parent, start = {}, {}
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    parent[int(name)], start[int(name)] = self._stat(name)
                except (OSError, ValueError, IndexError):
                    pass
        family, grew = {self.root}, True
        while grew:
            grew = False
            for pid, ppid in parent.items():
                if ppid in family and pid not in family:
                    family.add(pid)
                    grew = True
        return family - {self.root}, start

    def _scan(self):
        descendants, start = self._family()
        for pid in descendants:
            entry = self.seen.setdefault((pid, start.get(pid)), {"cmdline": b"", "environ": b""})
            for what in ("cmdline", "environ"):
                try:
                    with open(f"/proc/{pid}/{what}", "rb") as f:
                        data = f.read()
                except OSError:
                    continue
                # Every distinct value, joined by SAMPLE_SEP: a child seen between fork and
                # exec shows opsline's own command line and environment, then the program's.
                if data and data not in entry[what]:
                    entry[what] += (SAMPLE_SEP if entry[what] else b"") + data

    def run(self):
        while not self.done.is_set():
            self._scan()

    def samples(self):
        return list(self.seen.values())

    def stop(self):
        self.done.set()
        self.join()
        return self.samples()


def programs(sample):
    """The argv[0] of every command line a child was seen with (before and after exec)."""
    return [v.split(b"\0")[0] for v in sample["cmdline"].split(SAMPLE_SEP) if v]


def run_watched(args, cwd, env, timeout=300, watcher=ChildWatcher):
    """Runs args while watcher(pid) samples its children; killed if it outlives timeout (the
    TimeoutExpired raised). Returns (CompletedProcess, the watcher's samples)."""
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    w = watcher(proc.pid)
    w.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        children = w.stop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), children


class MotoTestCase(unittest.TestCase):
    """One moto (signatures and IAM policies enforced) for the class, a fresh working
    directory (self.work) for each test. Class attributes:

    moto_prefix, work_prefix  tempfile prefixes of moto's state dir and the working dir
    remove_state              remove moto's state dir after stopping it
    remove_work               remove the working dir after each test (after tearDown)
    env_drop                  prefixes of the caller's variables env() leaves out
    env_fixed                 method returning variables env() adds to every environment
    opsline_timeout           seconds an opsline run may take
    opsline_errors            decoding errors= of opsline's output (None: strict)
    keys_of_missing_ok        keys_of() of a user that does not exist is [] (else raises)
    """
    moto_prefix = "opsline-e2e-moto."
    work_prefix = "opsline-e2e-work."
    remove_state = False
    remove_work = False
    env_drop = ("AWS_",)
    opsline_timeout = 300
    opsline_errors = None
    keys_of_missing_ok = False

    @classmethod
    def setUpClass(cls):
        cls.state = tempfile.mkdtemp(prefix=cls.moto_prefix)
        cls.info = moto_fixture.start(cls.state)
        cls.endpoint = cls.info["endpoint"]
        cls.admin = (cls.info["access_key_id"], cls.info["secret_access_key"])

    @classmethod
    def tearDownClass(cls):
        moto_fixture.stop(cls.state)
        if cls.remove_state:
            shutil.rmtree(cls.state, ignore_errors=True)

    def setUp(self):
        self.work = tempfile.mkdtemp(prefix=self.work_prefix)
        if self.remove_work:
            self.addCleanup(shutil.rmtree, self.work, ignore_errors=True)
        self.outputs = []  # stdout and stderr of every opsline() run

    def env_fixed(self):
        return {}

    def env(self, work=None, key=None, **extra):
        """The caller's environment without env_drop, plus moto's endpoint, the admin's key
        (or key), no AWS config or credentials file (paths in work, which do not exist),
        short retries, env_fixed() and extra."""
        work = work or self.work
        key = key or self.admin
        e = {k: v for k, v in os.environ.items() if not k.startswith(self.env_drop)}
        e.update({
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": key[0],
            "AWS_SECRET_ACCESS_KEY": key[1],
            "AWS_REGION": REGION,
            "AWS_CONFIG_FILE": os.path.join(work, "no-config"),
            "AWS_SHARED_CREDENTIALS_FILE": os.path.join(work, "no-credentials"),
            "OPSLINE_RETRY_BASE_MS": "50",
        })
        e.update(self.env_fixed())
        e.update(extra)
        return e

    def opsline(self, *args, env=None, timeout=None):
        """Runs opsline in self.work (env defaults to env()); its output is kept in
        self.outputs."""
        r = subprocess.run([OPSLINE, *args], cwd=self.work, env=env or self.env(),
                           capture_output=True, text=True, errors=self.opsline_errors,
                           timeout=timeout or self.opsline_timeout)
        self.outputs += [r.stdout, r.stderr]
        return r

    def apply_ok(self, *args):
        r = self.opsline("apply", *args)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return r

    def client(self, service, key=None):
        """A boto3 client of moto with key (id, secret), the admin's by default."""
        key = key or self.admin
        return boto3.client(service, endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=key[0], aws_secret_access_key=key[1],
                            config=Config(retries={"max_attempts": 1}))

    def keys_of(self, user):
        """The user's access key ids, sorted."""
        try:
            meta = self.client("iam").list_access_keys(UserName=user)["AccessKeyMetadata"]
        except ClientError as exc:
            if self.keys_of_missing_ok and exc.response["Error"]["Code"] == "NoSuchEntity":
                return []
            raise
        return sorted(k["AccessKeyId"] for k in meta)

    def env_file(self, name):
        """read_env of name.env in the working dir."""
        return read_env(os.path.join(self.work, f"{name}.env"))

    def assert_key_works_only_on(self, key, bucket, other, probe="probe.txt"):
        """key may put, get and delete in bucket, and is denied a put in other."""
        s3 = self.client("s3", key)
        s3.put_object(Bucket=bucket, Key=probe, Body=b"x")
        self.assertEqual(s3.get_object(Bucket=bucket, Key=probe)["Body"].read(), b"x")
        s3.delete_object(Bucket=bucket, Key=probe)
        with self.assertRaises(ClientError) as cm:
            s3.put_object(Bucket=other, Key=probe, Body=b"x")
        self.assertEqual(cm.exception.response["Error"]["Code"], "AccessDenied")

    def assert_no_child_holds(self, children, secret, what):
        """No sampled child (ChildWatcher) has secret (bytes) on its command line or in its
        environment; what names the secret in a failure."""
        for c in children:
            cmd = c["cmdline"].replace(b"\0", b" ").decode(errors="replace")
            self.assertNotIn(secret, c["cmdline"], f"{what} on the command line of {cmd}")
            self.assertNotIn(secret, c["environ"], f"{what} in the environment of {cmd}")

    def slow_journal_fsync(self, ms):
        """Variables for env() under which every fsync of the journal (journal.jsonl) takes
        ms longer."""
        return self.slow_fsync(ms, "journal.jsonl")

    def slow_fsync(self, ms, only):
        """Variables for env() under which every fsync of a file whose path ends with only
        takes ms longer: the preload shim tests/tools/slow_fsync.c, built in self.work.
        Skips the test when no C compiler is installed."""
        cc = shutil.which("cc") or shutil.which("gcc")
        if cc is None:
            self.skipTest("no C compiler for the fsync shim")
        shim = os.path.join(self.work, "slow_fsync.so")
        subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", shim,
                        os.path.join(HERE, "slow_fsync.c"), "-ldl"], check=True)
        asan = (os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0").lstrip(":")
        return {"LD_PRELOAD": shim, "SLOW_FSYNC_MS": str(ms), "SLOW_FSYNC_ONLY": only,
                "ASAN_OPTIONS": asan}

    def assert_refused_before_any_request(self, *args, env=None):
        """opsline *args against a listener that counts connections: exit 2 and none
        made; returns the completed process."""
        counter = ConnectionCounter()
        try:
            r = self.opsline(*args, env=self.env(
                AWS_ENDPOINT_URL=f"http://127.0.0.1:{counter.port}", **(env or {})))
        finally:
            counter.close()
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertEqual(counter.count, 0, "a request was sent")
        return r
