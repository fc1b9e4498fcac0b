#!/usr/bin/env python3
"""Throttle bench: N products under an IAM quota, opsline (no retry flags) against the boto3
peer in adaptive retry mode.

Each side gets a fresh moto (SigV4 and IAM policies enforced) behind a fresh
tests/tools/faultproxy.py with --throttle iam=TPS (IAM's 400 Throttling "Rate exceeded"
above TPS requests/s, burst TPS) and --latency-ms, runs under /usr/bin/time -v, and is
checked as in bench/bench.py. Reported per side: wall, exit code, failed items, IAM
requests sent and throttled, and the quota bound: IAM requests accepted / TPS, the least
time any client needs; wall / bound says how close a side came to it.
"""

import argparse
import json
import os
import re
import shutil
import sys
import tempfile

import bench


def failed_items(side, res, n_items):
    """Items the side itself reports failed (None when it did not say)."""
    with open(os.path.join(res["work"], "stdout"), errors="replace") as f:
        out = f.read()
    if side == "opsline":
        try:
            return json.loads(out)["summary"]["failed"]
        except (ValueError, KeyError):
            return None
    m = re.search(r"peer_boto3: (\d+)/(\d+) items ok", out)
    return int(m.group(2)) - int(m.group(1)) if m else None


def iam_throttled(res):
    """IAM requests the proxy throttled: its Throttling answers (S3 gets SlowDown)."""
    return res.get("faulted_by_kind", {}).get("throttling", 0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--opsline", required=True, help="path to the opsline binary")
    ap.add_argument("-n", type=int, default=200, help="products (items = 2 x N)")
    ap.add_argument("--tps", type=float, default=10, help="IAM requests per second allowed")
    ap.add_argument("--s3-slowdown", type=float, default=0.0,
                    help="also answer this share of S3 requests 503 SlowDown")
    ap.add_argument("--threads", type=int, default=16, help="peer thread pool size")
    ap.add_argument("--concurrency", type=int, default=32, help="opsline --concurrency")
    ap.add_argument("--latency-ms", type=float, default=50)
    ap.add_argument("--iam-timeout", help="opsline: the iam stage's time limit (a pipeline "
                    "file's \"timeout\", e.g. 10s; default 300 s)")
    ap.add_argument("--sides", default="peer,opsline")
    ap.add_argument("--json-out", help="also write every run's numbers here")
    args = ap.parse_args(argv)
    args.opsline = os.path.abspath(args.opsline)
    args.proxy_args = ["--throttle", f"iam={args.tps:g}"]
    if args.s3_slowdown > 0:
        args.proxy_args += ["--s3-slowdown", f"{args.s3_slowdown:g}"]
    args.peer_args = ["--retry-mode", "adaptive"]
    products = [f"tps{i:03d}" for i in range(1, args.n + 1)]
    items = [f"{p}-{e}" for p in products for e in bench.ENVIRONMENTS]
    scratch = tempfile.mkdtemp(prefix="opsline-throttle-bench-")
    if args.iam_timeout:
        pipeline = os.path.join(scratch, "pipeline.json")
        with open(pipeline, "w") as f:
            json.dump({"stages": ["bucket", {"stage": "iam", "timeout": args.iam_timeout},
                                  "policy", "dotenv"]}, f)
        args.opsline_args = ["--pipeline", pipeline]
    rows = []
    try:
        for side in [s for s in args.sides.split(",") if s]:
            bench.log(f"throttle bench: {side}, {len(items)} items, IAM {args.tps:g} TPS ...")
            res = bench.run_side(side, "single", args, products, items, scratch)
            iam = (res["requests"] or {}).get("iam", 0)
            faulted = res["faulted"] or 0
            throttled = iam_throttled(res)
            bound = (iam - throttled) / args.tps
            row = dict(side=side, wall=res["wall"], cpu=res["cpu"], rc=res["rc"],
                       failed=failed_items(side, res, len(items)), iam=iam,
                       throttled=throttled, slowdowns=faulted - throttled, bound=bound,
                       ratio=res["wall"] / bound if bound else None,
                       problems=res["problems"][:5], stderr_tail=res.get("stderr_tail", ""))
            rows.append(row)
            bench.log(f"throttle bench:   wall {res['wall']:.1f} s, rc {res['rc']}, failed "
                      f"{row['failed']}, IAM {iam} ({throttled} throttled)")
    finally:
        if args.json_out:
            with open(args.json_out, "w") as f:
                json.dump({"args": vars(args), "rows": rows}, f, indent=1)
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"throttle bench: {args.n} products = {len(items)} items, IAM quota {args.tps:g} "
          f"requests/s, {args.s3_slowdown:.0%} of S3 requests SlowDown, "
          f"+{args.latency_ms:g} ms per request; boto3 {bench.boto3_version()} "
          f"(adaptive, max_attempts 3, {args.threads} threads); opsline --concurrency "
          f"{args.concurrency}, no retry settings"
          + (f", iam time limit {args.iam_timeout}" if args.iam_timeout else ""))
    print(f"{'side':8} {'wall s':>7} {'cpu s':>6} {'exit':>4} {'failed':>6} {'IAM sent':>8} "
          f"{'throttled':>9} {'S3 503':>6} {'bound s':>7} {'wall/bound':>10}")
    for r in rows:
        ratio = f"{r['ratio']:.2f}" if r["ratio"] else "-"
        print(f"{r['side']:8} {r['wall']:7.1f} {r['cpu']:6.2f} {r['rc']:4d} {str(r['failed']):>6} "
              f"{r['iam']:8d} {r['throttled']:9d} {r['slowdowns']:6d} {r['bound']:7.1f} "
              f"{ratio:>10}")
    print("bound = IAM requests accepted / quota: no client can finish sooner.")
    for r in rows:
        if r["problems"] and r["side"] == "opsline":
            print(f"{r['side']}: {r['problems']}\n{r['stderr_tail']}")
    ok = all(r["rc"] == 0 and not r["problems"] for r in rows if r["side"] == "opsline")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
