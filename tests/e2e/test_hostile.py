#!/usr/bin/env python3
"""The hardening cases, one test each, as a regression suite: what opsline does when the
files it reads or writes, the plugins it loads, the servers it talks to or the names it is
given are hostile or broken. Every refusal is checked to come with exit code 2, a message
that names the input and the fix, and (where the input is known up front) no request at all.

- FIFOs and links at state paths (journal.jsonl, journal.pid), at the AWS credentials and
  config files and at the .env target: refused, without hanging, targets untouched;
- a world-writable directory for a secret file: refused unless sticky (then a warning);
- HTTP answers too large to read (a 100 MB success, a 100 MB error) from a hostile server on
  loopback: abandoned at the cap, never retried; measured as bytes the server got to send
  and as opsline's peak RSS against a small answer's, never as time;
- plugins others can change: refused before their constructor runs; a bundled stage
  replaced from the plugin path: warned about, refused for a secret store;
- presign with bucket names S3 cannot have; a missing pipeline file; var_* options that
  would clobber the shell's or the loader's variables; an inline comment on a replaced line.

usage: test_hostile.py  (env: OPSLINE=path/to/opsline, OPSLINE_BUILD_DIR=build directory)
"""
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
from opsline_e2e import OPSLINE, ConnectionCounter, MotoTestCase, read_env  # noqa: E402

from botocore.exceptions import ClientError  # noqa: E402

BUILD = os.environ.get("OPSLINE_BUILD_DIR", os.path.join(HERE, "..", "..", "build"))
MIB = 1024 * 1024
HOSTILE_BODY = 100 * MIB


class HostileFilesTest(MotoTestCase):
    """Files opsline reads and writes, replaced by FIFOs, links and shared directories."""
    remove_state = True
    remove_work = True
    opsline_timeout = 120

    def refused(self, *args, env=None):
        """opsline apply *args: exit 2 before any request; returns stderr."""
        return self.assert_refused_before_any_request("apply", *args, env=env).stderr

    def assert_no_user(self, user):
        with self.assertRaises(ClientError):
            self.client("iam").get_user(UserName=user)

    def test_fifo_at_the_env_path_is_refused_without_hanging(self):
        os.mkfifo(os.path.join(self.work, "fifo-production.env"))
        err = self.refused("fifo", "-e", "production")
        self.assertIn("fifo-production.env", err)
        self.assertIn("FIFO", err)

    def test_symlinked_journal_pid_is_refused_and_its_target_not_truncated(self):
        victim = os.path.join(self.work, "victim.txt")
        with open(victim, "w") as f:
            f.write("keep me\n")
        os.makedirs(os.path.join(self.work, ".opsline"))
        os.symlink(victim, os.path.join(self.work, ".opsline", "journal.pid"))
        err = self.refused("pidlink", "-e", "production")
        self.assertIn("journal.pid", err)
        self.assertIn("symbolic link", err)
        with open(victim) as f:
            self.assertEqual(f.read(), "keep me\n")

    def test_fifo_or_link_at_the_journal_is_refused(self):
        state = os.path.join(self.work, ".opsline")
        os.makedirs(state)
        os.mkfifo(os.path.join(state, "journal.jsonl"))
        err = self.refused("journalfifo", "-e", "production")
        self.assertIn("journal.jsonl", err)
        self.assertIn("FIFO", err)
        os.unlink(os.path.join(state, "journal.jsonl"))
        victim = os.path.join(self.work, "victim.jsonl")
        with open(victim, "w") as f:
            f.write("")
        os.symlink(victim, os.path.join(state, "journal.jsonl"))
        self.assertIn("symbolic link", self.refused("journallink", "-e", "production"))
        self.assertEqual(os.path.getsize(victim), 0)

    def test_fifo_at_the_aws_credentials_or_config_file_is_refused_without_hanging(self):
        fifo = os.path.join(self.work, "aws-fifo")
        os.mkfifo(fifo)
        for var in ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):
            with self.subTest(var=var):
                counter = ConnectionCounter()
                env = self.env(**{var: fifo, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{counter.port}"})
                del env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
                try:
                    r = self.opsline("whoami", env=env, timeout=60)
                finally:
                    counter.close()
                self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
                self.assertEqual(counter.count, 0, "a request was sent")
                self.assertIn(f"cannot read {fifo}", r.stderr)
                self.assertIn("FIFO", r.stderr)

    def test_config_file_dev_null_still_means_no_config(self):
        r = self.opsline("whoami", env=self.env(AWS_CONFIG_FILE="/dev/null",
                                                AWS_SHARED_CREDENTIALS_FILE="/dev/null"))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_world_writable_env_directory_is_refused_unless_sticky(self):
        shared = os.path.join(self.work, "shared")
        os.mkdir(shared)
        os.chmod(shared, 0o777)
        err = self.refused("open", "-e", "production", "--env-file", "shared/{bucket}.env")
        self.assertIn("writable by every user and not sticky", err)
        self.assertIn("chmod o-w shared,", err)
        os.chmod(shared, 0o1777)
        r = self.apply_ok("open", "-e", "production", "--env-file", "shared/{bucket}.env")
        self.assertIn("writable by every user (sticky", r.stderr)
        v = read_env(os.path.join(shared, "open-production.env"))
        self.assertEqual(self.keys_of("open-production"), [v["AWS_ACCESS_KEY_ID"]])

    def test_world_writable_directory_of_a_file_store_is_refused(self):
        shared = os.path.join(self.work, "shared")
        os.mkdir(shared)
        os.chmod(shared, 0o777)
        r = self.opsline("apply", "fb", "-e", "production", "--secrets", "bitwarden",
                         "--set", "bitwarden.file=shared/bw.json")
        # A store's prepare check stops the run before any request, with exit 1 like every
        # other prepare refusal (test_secrets_recovery).
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("0 AWS requests", r.stdout + r.stderr)
        self.assertIn("not sticky", r.stderr)
        self.assert_no_user("fb-production")

    def test_inline_comment_on_a_replaced_env_line_is_kept(self):
        path = os.path.join(self.work, "inline-production.env")
        with open(path, "w") as f:
            f.write("AWS_REGION=us-east-1 # the app's region\nOTHER=1\n")
        self.apply_ok("inline", "-e", "production")
        with open(path) as f:
            body = f.read()
        self.assertIn("AWS_REGION=eu-north-1 # the app's region\n", body)
        self.assertIn("OTHER=1\n", body)

    def test_every_var_option_refuses_a_variable_the_shell_or_loader_relies_on(self):
        for opt in ("var_access_key_id", "var_secret_access_key", "var_region", "var_bucket"):
            for name in ("PATH", "LD_PRELOAD", "LD_AUDIT", "PROMPT_COMMAND", "PYTHONSTARTUP"):
                with self.subTest(option=opt, name=name):
                    err = self.refused("clobber", "-e", "production",
                                       "--set", f"dotenv.{opt}={name}")
                    self.assertIn(opt, err)
                    self.assertIn("would replace a variable", err)

    def test_missing_pipeline_file_says_cannot_open_it(self):
        missing = os.path.join(self.work, "nope.json")
        err = self.refused("acme", "--pipeline", missing)
        self.assertIn(f"cannot open pipeline file {missing}: No such file or directory", err)
        self.assertNotIn("line -1", err)

    def test_fifo_as_the_pipeline_file_is_refused_by_apply_and_whoami(self):
        fifo = os.path.join(self.work, "pipeline.json")
        os.mkfifo(fifo)
        err = self.refused("acme", "--pipeline", fifo)
        self.assertIn(f"cannot open pipeline file {fifo}", err)
        self.assertIn("FIFO", err)
        r = self.opsline("whoami", "--pipeline", fifo, timeout=60)
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn(f"cannot open pipeline file {fifo}", r.stderr)
        self.assertIn("FIFO", r.stderr)

    def test_presign_refuses_bucket_names_s3_cannot_have(self):
        for bucket in ("UPPER", "a..b", "192.168.1.1", "ab", "a" * 300):
            with self.subTest(bucket=bucket[:20]):
                r = self.assert_refused_before_any_request("presign", f"s3://{bucket}/key")
                self.assertIn(f"bucket name '{bucket}'", r.stderr)


class HostileServer:
    """A loopback HTTP server that answers every request with head and then body_len bytes
    (chunked when chunked), counting requests and the body bytes it managed to send before
    the client went away."""

    def __init__(self, head, body_len, chunked=False):
        self.head, self.body_len, self.chunked = head, body_len, chunked
        self.requests = 0
        self.sent = 0
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = False
        self.threads = []
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def _accept(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self.threads.append(t)

    def _read_request(self, conn):
        data = b""
        while b"\r\n\r\n" not in data:
            more = conn.recv(65536)
            if not more:
                return False
            data += more
        head, _, rest = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            more = conn.recv(65536)
            if not more:
                return False
            rest += more
        return True

    def _serve(self, conn):
        block = b"x" * (64 * 1024)
        try:
            conn.settimeout(30)
            while self._read_request(conn):
                with self.lock:
                    self.requests += 1
                conn.sendall(self.head)
                left = self.body_len
                while left > 0:
                    piece = block[:min(len(block), left)]
                    if self.chunked:
                        piece = b"%x\r\n" % len(piece) + piece + b"\r\n"
                    conn.sendall(piece)
                    with self.lock:
                        self.sent += min(len(block), left)
                    left -= min(len(block), left)
                if self.chunked:
                    conn.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the client went away: what it abandoned is not counted
        finally:
            conn.close()

    def close(self):
        self.stop = True
        self.acceptor.join()
        for t in self.threads:
            t.join(timeout=30)
        self.sock.close()


class HostileServerTest(unittest.TestCase):
    """Answers too large to read. Bounds are ratios to the 100 MB the server offers and to
    opsline's own peak RSS against a small answer in the same run, never times."""

    def whoami(self, server):
        """opsline whoami against server: (exit code, stderr, peak RSS in bytes)."""
        work = tempfile.mkdtemp(prefix="opsline-hostile.")
        self.addCleanup(shutil.rmtree, work, ignore_errors=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update({"AWS_ENDPOINT_URL": f"http://127.0.0.1:{server.port}",
                    "AWS_ACCESS_KEY_ID": "AKIAHOSTILETEST00000",
                    "AWS_SECRET_ACCESS_KEY": "s" * 40, "AWS_REGION": "eu-north-1",
                    "AWS_CONFIG_FILE": os.path.join(work, "none"),
                    "AWS_SHARED_CREDENTIALS_FILE": os.path.join(work, "none"),
                    "OPSLINE_RETRY_BASE_MS": "10"})
        proc = subprocess.Popen([OPSLINE, "whoami"], cwd=work, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        err = proc.stderr.read().decode(errors="replace")
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        proc.stderr.close()
        return proc.returncode, err, usage.ru_maxrss * 1024

    def run_against(self, head, body_len, chunked=False):
        server = HostileServer(head, body_len, chunked)
        try:
            code, err, rss = self.whoami(server)
        finally:
            server.close()
        return server, code, err, rss

    def baseline_rss(self):
        _, code, err, rss = self.run_against(
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", 0)
        self.assertEqual(code, 1, err)
        return rss

    def assert_bounded(self, server, rss, base):
        print(f"\n  requests {server.requests}, body bytes sent {server.sent} of {HOSTILE_BODY}"
              f", peak RSS {rss // 1024} KiB (small answer: {base // 1024} KiB)",
              file=sys.stderr)
        self.assertEqual(server.requests, 1, "the too-large answer was asked for again")
        self.assertLess(server.sent, HOSTILE_BODY * 0.25,
                        f"the server sent {server.sent} of {HOSTILE_BODY} bytes")
        self.assertLess(rss - base, HOSTILE_BODY * 0.25,
                        f"peak RSS {rss} against {base} for a small answer")

    def test_a_100_mb_answer_is_abandoned_at_the_cap(self):
        base = self.baseline_rss()
        head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % HOSTILE_BODY
        server, code, err, rss = self.run_against(head, HOSTILE_BODY)
        self.assertNotEqual(code, 0, err)
        self.assert_bounded(server, rss, base)
        self.assertIn("answer larger than 4194304 bytes", err)

    def test_a_100_mb_chunked_answer_is_abandoned_at_the_cap(self):
        base = self.baseline_rss()
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        server, code, err, rss = self.run_against(head, HOSTILE_BODY, chunked=True)
        self.assertNotEqual(code, 0, err)
        self.assert_bounded(server, rss, base)
        self.assertIn("answer larger than 4194304 bytes", err)

    def test_a_500_with_a_100_mb_body_is_read_once_and_not_retried(self):
        base = self.baseline_rss()
        head = (b"HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n")
        server, code, err, rss = self.run_against(head, HOSTILE_BODY, chunked=True)
        self.assertNotEqual(code, 0, err)
        self.assert_bounded(server, rss, base)
        self.assertIn("answer larger than 65536 bytes (HTTP 500)", err)


class HostilePluginTest(unittest.TestCase):
    """Plugins someone else could change, and plugins replacing bundled stages."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="opsline-plugins.")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        os.chmod(self.dir, 0o755)
        self.marker = self.dir + ".marker"
        self.addCleanup(lambda: os.path.exists(self.marker) and os.unlink(self.marker))

    def plugins(self, **extra):
        env = dict(os.environ, OPSLINE_PLUGIN_PATH=self.dir, OL_TEST_MARKER=self.marker)
        env.pop("OPSLINE_ALLOW_SHADOW", None)
        env.update(extra)
        return subprocess.run([OPSLINE, "plugins", "list"], env=env, capture_output=True,
                              text=True, timeout=60)

    def copy(self, src, mode=0o755):
        dst = os.path.join(self.dir, os.path.basename(src))
        shutil.copyfile(src, dst)
        os.chmod(dst, mode)
        return dst

    def test_a_plugin_in_a_world_writable_directory_is_refused_before_its_constructor(self):
        so = self.copy(os.path.join(BUILD, "test-plugins", "ctor", "ctor_marker.so"))
        os.chmod(self.dir, 0o777)
        r = self.plugins()
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("writable by every user", r.stderr)
        self.assertFalse(os.path.exists(self.marker), "the plugin's constructor ran")
        os.chmod(self.dir, 0o755)
        os.chmod(so, 0o757)
        r = self.plugins()
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn(f"{so} is writable by every user", r.stderr)
        self.assertFalse(os.path.exists(self.marker), "the plugin's constructor ran")
        os.chmod(so, 0o755)  # now it loads, and the mark shows the check could see it
        r = self.plugins()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertTrue(os.path.exists(self.marker))

    def test_a_plugin_replacing_a_bundled_stage_is_warned_about_naming_both(self):
        so = self.copy(os.path.join(BUILD, "plugins", "bucket.so"))
        r = self.plugins()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn(f"warning: stage 'bucket' from {so} replaces the bundled one", r.stderr)
        self.assertIn(os.path.realpath(os.path.join(BUILD, "plugins", "bucket.so")), r.stderr)

    def test_a_plugin_replacing_a_bundled_secret_store_is_refused_unless_allowed(self):
        so = self.copy(os.path.join(BUILD, "plugins", "dotenv.so"))
        r = self.plugins()
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn(f"stage 'dotenv' from {so} would replace the bundled secret store",
                      r.stderr)
        self.assertIn("OPSLINE_ALLOW_SHADOW=dotenv", r.stderr)
        r = self.plugins(OPSLINE_ALLOW_SHADOW="iam,dotenv")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("warning: stage 'dotenv'", r.stderr)
        self.assertIn(so, r.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
