#!/usr/bin/env python3
"""End-to-end tests of the progress display against moto (signatures and IAM policies
enforced) behind the fault proxy (latency, so that a run lasts long enough to be watched,
and an IAM fault that makes one item fail). Under a pseudo-terminal (`script`): a status
line on stderr redrawn in place ("\\r" + erase line), never torn by the other lines, red
for failures unless NO_COLOR; without a terminal: plain periodic lines; --quiet: failures
and the summary only. Every run ends with the summary table and each failed item's reason.

usage: test_progress.py  (env: OPSLINE=path/to/opsline)
"""
import os
import re
import shlex
import shutil
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
from opsline_e2e import OPSLINE, MotoTestCase  # noqa: E402
import faultproxy  # noqa: E402

ERASE = "\r\x1b[K"
STATUS = (r"(\d+)/(\d+) done, (\x1b\[31m)?(\d+) failed(\x1b\[0m)?, \d+ in flight, "
          r"[\d.]+ req/s, \d+ throttled, ETA [\d:-]+")
DRAW = re.compile(re.escape(ERASE) + STATUS)
STAGE_LINE = re.compile(r"^([a-z0-9.-]+-(production|staging)) +(bucket|iam|policy|dotenv) +"
                        r"(created|updated|unchanged|failed|skipped)( .*)?$")


@unittest.skipUnless(shutil.which("script"), "needs script(1) for a pseudo-terminal")
class ProgressTest(MotoTestCase):
    opsline_timeout = 180

    def setUp(self):
        super().setUp()
        # Products of their own per test (moto is the class's): T-fail, T-p0 ... T-p6, where
        # T-fail-production fails.
        tag = self.id().rsplit(".", 1)[-1].split("_")[1]
        self.fail = f"{tag}-fail"
        self.products = [self.fail] + [f"{tag}-p{i}" for i in range(7)]
        self.proxy = faultproxy.ProxyProcess(self.endpoint)
        self.proxy.__enter__()
        self.addCleanup(self.proxy.__exit__, None, None, None)
        # Every request waits 40 ms; IAM fails for the user T-fail-production (retries too).
        self.proxy.configure(latency_ms=40, rules=[
            {"fault": "internal_error", "service": "iam",
             "body_contains": f"UserName={self.fail}-production"}])

    def run_env(self, **extra):
        return self.env(AWS_ENDPOINT_URL=self.proxy.url, AWS_MAX_ATTEMPTS="2", TERM="xterm",
                        **extra)

    def apply_args(self, *extra):
        return ["apply", *self.products, "--concurrency", "2", *extra]

    def run_tty(self, args, **env):
        """opsline args under a pseudo-terminal; (exit code, everything the terminal got)."""
        cmd = shlex.join([OPSLINE, *args])
        r = subprocess.run(["script", "-q", "-e", "-c", cmd, "/dev/null"], cwd=self.work,
                           env=self.run_env(**env), capture_output=True,
                           timeout=self.opsline_timeout)
        return r.returncode, r.stdout.decode("utf-8", "replace")

    def assert_summary(self, text):
        self.assertRegex(text, r"\r?\nSummary: 16 item\(s\) in [\d.]+ s; \d+ AWS requests")
        self.assertRegex(text, r"\n  failed +1 +1\r?\n")
        self.assertRegex(text, rf"Failed items:\r?\n  {self.fail}-production +iam: .*InternalError")

    def assert_no_torn_line(self, text):
        # What follows a drawn status line is always the erase that removes it.
        for m in DRAW.finditer(text):
            self.assertTrue(text.startswith(ERASE, m.end()),
                            f"status line torn: {text[m.start():m.end() + 60]!r}")
        # With the status lines removed, every line is whole: a stage line, a log line, or
        # the summary.
        clean = DRAW.sub("", text).replace(ERASE, "")
        for line in clean.replace("\r\n", "\n").split("\n"):
            if STAGE_LINE.match(line) or not line:
                continue
            self.assertRegex(line, r"^(info|warning|error): |^Summary: |^  |^Failed items:$",
                             f"torn or unexpected line {line!r}")

    def test_tty_shows_a_status_line_redrawn_in_place_that_lines_never_tear(self):
        code, text = self.run_tty(self.apply_args())
        self.assertEqual(code, 1, text)
        draws = [m.groups() for m in DRAW.finditer(text)]
        self.assertGreaterEqual(len(draws), 3, text)
        self.assertEqual({d[1] for d in draws}, {"16"})
        done = [int(d[0]) for d in draws]
        self.assertEqual(done, sorted(done), "done never goes back")
        self.assert_no_torn_line(text)
        clean = DRAW.sub("", text).replace(ERASE, "")
        for p in self.products[1:]:
            for e in ("production", "staging"):
                for stage in ("bucket", "iam", "policy", "dotenv"):
                    self.assertRegex(clean, rf"(^|\n){p}-{e} +{stage} +created\r?\n")
        # Red marks failures on a terminal: every draw after the failure has it.
        failed_draws = [d for d in draws if int(d[3]) > 0]
        self.assertTrue(failed_draws, "no status line after the failure")
        for d in failed_draws:
            self.assertEqual((d[2], d[4]), ("\x1b[31m", "\x1b[0m"))
        summary = text[text.index("Summary: "):]
        self.assertNotIn("\x1b", summary)
        self.assert_summary(text)

    def test_no_color_turns_the_colour_off(self):
        code, text = self.run_tty(self.apply_args(), NO_COLOR="1")
        self.assertEqual(code, 1, text)
        draws = [m.groups() for m in DRAW.finditer(text)]
        self.assertTrue([d for d in draws if int(d[3]) > 0], text)
        self.assertNotIn("\x1b[31m", text)
        self.assert_summary(text)

    def test_quiet_prints_failures_and_the_summary_only(self):
        code, text = self.run_tty(self.apply_args("--quiet"))
        self.assertEqual(code, 1, text)
        self.assertNotIn(ERASE, text)
        self.assertNotRegex(text, r"done, \d+ failed")
        self.assertNotRegex(text, r" created\r?\n")
        self.assertRegex(text, rf"{self.fail}-production +iam +failed +")
        self.assert_summary(text)

    def test_without_a_terminal_progress_comes_as_plain_lines(self):
        r = self.opsline(*self.apply_args(), env=self.run_env(OPSLINE_PROGRESS_INTERVAL="0.2"))
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        lines = re.findall(r"^progress: " + STATUS + "$", r.stderr, re.M)
        self.assertGreaterEqual(len(lines), 2, r.stderr)
        self.assertNotIn("\r", r.stdout + r.stderr)
        self.assertNotIn("\x1b", r.stdout + r.stderr)
        self.assert_summary(r.stdout)

        r = self.opsline(*self.apply_args(), env=self.run_env(OPSLINE_PROGRESS_INTERVAL="0"))
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertNotIn("progress:", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
