#!/usr/bin/env python3
"""The host's memory follows the items in progress, not the batch: `opsline apply` of 5,000
products (10,000 items) peaks at no more than 1.5 times the resident memory of the same run
with 1,000 products, in the human and the --json report. The pipeline is the test stages
(fakekey makes up a key per item, filestore keeps it in a file per item: see
tests/plugins), so the host's own structures (items, journal index, report, stores) are
what grows; the STS preflight goes to moto. Peak RSS is the child's own (os.wait4).
Scratch files go to /dev/shm where there is one, so thousands of fsyncs cost little.

usage: test_scale_memory.py   (env from tests/integration/run.sh: OPSLINE, OPSLINE_BUILD_DIR)
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

OPSLINE = os.environ.get("OPSLINE", "opsline")
STAGES = os.path.join(os.environ.get("OPSLINE_BUILD_DIR", "build"), "test-plugins", "nostage")
# RSS at 5,000 products over RSS at 1,000: flat in N means close to 1.
MAX_RATIO = 1.5


def scratch_root():
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None


class ScaleMemoryTest(unittest.TestCase):
    def setUp(self):
        if not os.path.exists(os.path.join(STAGES, "fakekey.so")):
            self.skipTest(f"test stages not built in {STAGES}")
        self.work = tempfile.mkdtemp(prefix="opsline-scale.", dir=scratch_root())
        self.addCleanup(shutil.rmtree, self.work, ignore_errors=True)

    def run_batch(self, n, *extra):
        """Runs apply of n products in a fresh directory; returns (peak RSS in KiB, stdout)."""
        d = tempfile.mkdtemp(prefix=f"n{n}.", dir=self.work)
        products = os.path.join(d, "products.txt")
        with open(products, "w") as f:
            f.write("".join(f"scale{i:05d}\n" for i in range(n)))
        pipeline = os.path.join(d, "pipeline.json")
        with open(pipeline, "w") as f:
            json.dump({"stages": ["fakekey", {"stage": "filestore",
                                              "options": {"dir": os.path.join(d, "store")}}]}, f)
        env = dict(os.environ, AWS_CONFIG_FILE=os.path.join(d, "none"),
                   AWS_SHARED_CREDENTIALS_FILE=os.path.join(d, "none"))
        env.pop("OPSLINE_PLUGIN_PATH", None)
        with open(os.path.join(d, "out"), "w+") as out, open(os.path.join(d, "err"), "w+") as err:
            proc = subprocess.Popen([OPSLINE, "apply", "--products-file", products, "--pipeline",
                                     pipeline, "--plugin-dir", STAGES, *extra], cwd=d, env=env,
                                    stdout=out, stderr=err)
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read(), err.read()
        self.assertEqual(proc.returncode, 0, stdout[-2000:] + stderr[-2000:])
        self.assertEqual(len(os.listdir(os.path.join(d, "store"))), 2 * n)
        return usage.ru_maxrss, stdout

    def assert_flat(self, small, large, what):
        print(f"{what}: peak RSS {small / 1024:.1f} MiB at 1,000 products, "
              f"{large / 1024:.1f} MiB at 5,000 ({large / small:.2f}x)", file=sys.stderr)
        self.assertLessEqual(large, MAX_RATIO * small,
                             f"{what}: memory grows with the batch: {small} KiB at 1,000 "
                             f"products, {large} KiB at 5,000")

    def test_peak_memory_at_5000_products_is_within_1_5_times_that_at_1000(self):
        small, _ = self.run_batch(1000)
        large, _ = self.run_batch(5000)  # exit 0: every item ok; a store entry for each
        self.assert_flat(small, large, "human report")

    def test_the_json_report_streams_its_items_and_stays_flat_too(self):
        small, _ = self.run_batch(1000, "--json")
        large, out = self.run_batch(5000, "--json")
        doc = json.loads(out)
        self.assertEqual(len(doc["items"]), 10000)
        self.assertEqual(doc["summary"]["ok"], 10000)
        self.assertEqual(len({i["name"] for i in doc["items"]}), 10000)
        self.assert_flat(small, large, "--json report")


if __name__ == "__main__":
    unittest.main(verbosity=2)
