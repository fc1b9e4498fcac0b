#!/usr/bin/env python3
"""Whether opsline's CPU per request grows with --concurrency.

Starts the `split` stack of bench.py (S3 and IAM on separate emulators behind the fault
proxy with the added latency) and runs `opsline apply` of N new products at each
--concurrency given, `--repeat` times each, the binaries given by --opsline (and
--baseline, for a before/after comparison) alternating, each run on products of its own.
Prints each run, then per binary and concurrency the median CPU per request, and its ratio
to the first concurrency's: 1.0 when the work per request does not depend on how many
items are in progress. The requests are counted by the fault proxies.

    python3 bench/concurrency_cpu.py --opsline build/opsline [--baseline OLD/opsline]
                                     [-n 150] [--concurrency 32,1024] [--repeat 3]
"""
import os
import secrets
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "tools"))
from bench import ab_parser, ab_sides, scratch_stack, timed_call  # noqa: E402


def main():
    ap = ab_parser(__doc__, 150)
    ap.add_argument("--concurrency", default="32,1024", help="comma-separated")
    args = ap.parse_args()
    sides = ab_sides(args)
    levels = [int(c) for c in args.concurrency.split(",")]
    with scratch_stack("opsline-conccpu-", "split", args.latency_ms) as (scratch, stack):
        env = stack.client_env(scratch)
        runs = {(side, c): [] for side in sides for c in levels}
        for r in range(args.repeat):
            for c in levels:
                for side, exe in sides.items():
                    work = tempfile.mkdtemp(prefix=f"{side}-c{c}-{r}-", dir=scratch)
                    products = [f"cc{secrets.token_hex(3)}{i}" for i in range(1, args.n + 1)]
                    cmd = [exe, "apply", *products, "--concurrency", str(c), "--state-dir",
                           os.path.join(work, "journal"), "--json"]
                    before = sum(stack.requests().values())
                    res = timed_call(stack, cmd, work, work, env)
                    res["requests"] = sum(stack.requests().values()) - before
                    per = res["cpu"] / res["requests"] * 1e6 if res["requests"] else 0.0
                    print(f"{side:<9} --concurrency {c:>4} run {r + 1}: cpu {res['cpu']:.3f} s, "
                          f"{res['requests']} requests, {per:.0f} us per request, "
                          f"wall {res['wall']:.2f} s, rc {res['rc']}", flush=True)
                    if res["rc"] != 0 or not res["requests"]:
                        return 1
                    runs[(side, c)].append(per)
        print(f"\n{args.n} products ({2 * args.n} items), +{args.latency_ms} ms per request, "
              f"split stack; CPU per request, medians of {args.repeat}:")
        for side in sides:
            base = statistics.median(runs[(side, levels[0])])
            for c in levels:
                per = statistics.median(runs[(side, c)])
                print(f"  {side:<9} --concurrency {c:>4}: {per:6.0f} us "
                      f"({per / base:.2f}x the --concurrency {levels[0]} figure)")
        if args.baseline:
            for c in levels:
                a = statistics.median(runs[("opsline", c)])
                b = statistics.median(runs[("baseline", c)])
                print(f"  --concurrency {c:>4}: opsline / baseline {a / b:.2f}x")
        return 0


if __name__ == "__main__":
    sys.exit(main())
