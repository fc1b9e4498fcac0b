#!/usr/bin/env python3
"""How opsline's wall time follows the disk's fsync latency.

Builds tests/tools/slow_fsync.c (an LD_PRELOAD shim: every fsync sleeps SLOW_FSYNC_MS first),
starts the `split` stack of bench.py (S3 and IAM on separate emulators behind the fault
proxy with the added latency), and runs `opsline apply` of N new products for every fsync
delay given, `--repeat` times each, the binaries given by --opsline (and --baseline, for
a before/after comparison) alternating. Prints each run and the medians: wall, CPU, and
how much of the wall the fsync delays added over the 0 ms runs.

An item costs three fsyncs: the journal's record before CreateAccessKey, the .env file and
its directory. All three run on the thread pool, none on the loop; the two of the .env
file are under the dotenv store's lock on the directory (another run may merge into the
same file), so items whose files share a directory write them one after the other.

    python3 bench/slow_disk.py --opsline build/opsline [--baseline OLD/opsline]
                               [-n 50] [--delays 0,10,40] [--repeat 3]
"""
import os
import secrets
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "tools"))
from bench import ab_parser, ab_sides, scratch_stack, timed_call  # noqa: E402


def build_shim(out_dir):
    so = os.path.join(out_dir, "slow_fsync.so")
    cc = os.environ.get("CC", "cc")
    src = os.path.join(HERE, "..", "tests", "tools", "slow_fsync.c")
    subprocess.run([cc, "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-o", so, src,
                    "-ldl"], check=True)
    return so


def main():
    ap = ab_parser(__doc__, 50)
    ap.add_argument("--delays", default="0,10,40", help="fsync delays in ms, comma-separated")
    args = ap.parse_args()
    sides = ab_sides(args)
    delays = [int(d) for d in args.delays.split(",")]
    with scratch_stack("opsline-slowdisk-", "split", args.latency_ms) as (scratch, stack):
        shim = build_shim(scratch)
        base_env = stack.client_env(scratch)
        runs = {(side, d): [] for side in sides for d in delays}
        for r in range(args.repeat):
            for d in delays:
                for side, exe in sides.items():
                    work = tempfile.mkdtemp(prefix=f"{side}-{d}ms-{r}-", dir=scratch)
                    products = [f"sd{secrets.token_hex(3)}{i}" for i in range(1, args.n + 1)]
                    env = dict(base_env, LD_PRELOAD=shim, SLOW_FSYNC_MS=str(d))
                    cmd = [exe, "apply", *products, "--state-dir", os.path.join(work, "journal"),
                           "--json"]
                    res = timed_call(stack, cmd, work, work, env)
                    print(f"{side:<9} fsync +{d:>3} ms run {r + 1}: wall {res['wall']:.2f} s, "
                          f"cpu {res['cpu']:.3f} s, rc {res['rc']}", flush=True)
                    if res["rc"] != 0:
                        return 1
                    runs[(side, d)].append(res)
        print(f"\n{args.n} products ({2 * args.n} items), +{args.latency_ms} ms per request, "
              f"split stack; medians of {args.repeat}:")
        for side in sides:
            wall0 = statistics.median(x["wall"] for x in runs[(side, delays[0])])
            for d in delays:
                wall = statistics.median(x["wall"] for x in runs[(side, d)])
                cpu = statistics.median(x["cpu"] for x in runs[(side, d)])
                print(f"  {side:<9} fsync +{d:>3} ms: wall {wall:.2f} s "
                      f"({wall - wall0:+.2f} s over +{delays[0]} ms), cpu {cpu:.3f} s")
        return 0


if __name__ == "__main__":
    sys.exit(main())
