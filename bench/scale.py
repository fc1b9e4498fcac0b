#!/usr/bin/env python3
"""Scale bench: one `opsline apply` of N products (2N items) against moto, for each N of
--counts (default 1,000 and 5,000): wall time, CPU (user+sys) per AWS request, and peak RSS
of the opsline process (/usr/bin/time -v), the CPU moto burned meanwhile, and a check of the
result. Then the two targets of a batch run: peak RSS at most 64 MB, and flat in N (the
largest count within 1.5 times the RSS of the smallest).

The emulator is moto with signatures and IAM policies enforced (bench.py's Stack: by default
split-direct, S3 and IAM each on their own moto, no proxy: moto is the slow part and two of
them halve the wall time). The result is checked: exit code 0, every item ok in the JSON
summary, a 0600 .env per item, and for a random sample of items the bucket and exactly the
.env's key in IAM.

usage: bench/scale.py --opsline BUILD/opsline [--counts 1000,5000] [--concurrency 64]
                      [--config split-direct] [--sample 100] [--json-out FILE]
"""
import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402  (Stack, parse_time_v, read_env, log)

RSS_LIMIT_MB = 64.0
FLAT_RATIO = 1.5


def check(stack, out_dir, items, sample):
    problems = []
    for name in items:
        path = os.path.join(out_dir, f"{name}.env")
        if not os.path.exists(path):
            problems.append(f"{name}: no .env")
        elif os.stat(path).st_mode & 0o777 != 0o600:
            problems.append(f"{name}.env: mode is not 0600")
    if problems:
        return problems
    s3, iam = stack.client("s3"), stack.client("iam")
    for name in random.Random(len(items)).sample(items, min(sample, len(items))):
        s3.head_bucket(Bucket=name)
        kid = bench.read_env(os.path.join(out_dir, f"{name}.env")).get("AWS_ACCESS_KEY_ID")
        keys = [k["AccessKeyId"] for k in iam.list_access_keys(UserName=name)["AccessKeyMetadata"]]
        if keys != [kid]:
            problems.append(f"{name}: IAM has keys {keys}, the .env {kid}")
    return problems


def run_one(args, n, scratch):
    work = tempfile.mkdtemp(prefix=f"scale-{n}-", dir=scratch)
    out_dir = os.path.join(work, "out")
    os.makedirs(out_dir)
    products = [f"s{n}x{i:05d}" for i in range(n)]
    items = [f"{p}-{e}" for p in products for e in bench.ENVIRONMENTS]
    products_file = os.path.join(work, "products.txt")
    with open(products_file, "w") as f:
        f.write("\n".join(products) + "\n")
    stack = bench.Stack(args.config, work, 0)
    try:
        env = stack.client_env(work)
        cmd = [args.opsline, "apply", "--products-file", products_file, "--concurrency",
               str(args.concurrency), "--state-dir", os.path.join(work, "journal"), "--json"]
        bench.log(f"scale: {n} products ({2 * n} items) against {args.config} ...")
        res = bench.timed_call(stack, cmd, work, out_dir, env)
        res.update(products=n, items=2 * n)
        res["moto_cpu"] = sum(v for k, v in res["emulator_cpu"].items() if k.startswith("moto"))
        try:
            with open(os.path.join(work, "stdout")) as f:
                doc = json.load(f)
            res["requests"] = doc["aws"]["requests"]
            res["retries"] = doc["aws"]["retries"]
            res["ok"] = doc["summary"]["ok"]
        except (OSError, ValueError, KeyError) as exc:
            res["requests"], res["ok"] = 0, 0
            res["problems"] = [f"no JSON report: {exc}"]
        if res["rc"] != 0 or res.get("ok") != 2 * n:
            res["problems"] = res.get("problems", []) + [f"exit code {res['rc']}, "
                                                         f"{res.get('ok')} ok"]
        else:
            res["problems"] = check(stack, out_dir, items, args.sample)
        bench.keep_stderr_tail(res)
        return res
    finally:
        stack.stop()


def report(results):
    print(f"{'products':>8} {'items':>6} {'wall s':>8} {'cpu s':>7} {'requests':>9} "
          f"{'cpu/req us':>10} {'peak MB':>8} {'moto cpu s':>10}  check")
    for r in results:
        per = 1e6 * r["cpu"] / r["requests"] if r["requests"] else float("nan")
        print(f"{r['products']:>8} {r['items']:>6} {r['wall']:>8.1f} {r['cpu']:>7.2f} "
              f"{r['requests']:>9} {per:>10.1f} {r['rss_mb']:>8.1f} {r['moto_cpu']:>10.1f}  "
              f"{'ok' if not r['problems'] else '; '.join(r['problems'][:3])}")
    small, large = results[0], results[-1]
    ratio = large["rss_mb"] / small["rss_mb"]
    rss_ok = all(r["rss_mb"] <= RSS_LIMIT_MB for r in results)
    flat_ok = ratio <= FLAT_RATIO
    print(f"\npeak RSS: at most {RSS_LIMIT_MB:.0f} MB: {'ok' if rss_ok else 'MISSED'}; "
          f"{large['products']} products / {small['products']}: {ratio:.2f}x "
          f"(target <= {FLAT_RATIO}x): {'ok' if flat_ok else 'MISSED'}")
    return rss_ok and flat_ok and not any(r["problems"] for r in results)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--opsline", required=True)
    ap.add_argument("--counts", default="1000,5000")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--config", default="split-direct", choices=bench.CONFIGS)
    ap.add_argument("--sample", type=int, default=100, help="items checked in IAM and S3")
    ap.add_argument("--json-out")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = ap.parse_args(argv)
    if not os.access(args.opsline, os.X_OK):
        ap.error(f"{args.opsline} is not an executable; build first (make build)")
    if not os.access("/usr/bin/time", os.X_OK):
        ap.error("GNU time (/usr/bin/time) is needed: apt-get install time (bench/run.sh "
                 "installs it)")
    args.opsline = os.path.abspath(args.opsline)
    counts = sorted(int(c) for c in args.counts.split(","))
    scratch = tempfile.mkdtemp(prefix="opsline-scale-bench.")
    started = time.monotonic()
    try:
        results = [run_one(args, n, scratch) for n in counts]
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    ok = report(results)
    print(f"(bench took {time.monotonic() - started:.0f} s; moto {bench.moto_version()}, "
          f"{os.cpu_count()} CPUs, --concurrency {args.concurrency}, {args.config})")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(results, f, indent=2)
    for r in results:
        if r.get("stderr_tail"):
            print(f"\n{r['products']} products, stderr tail:\n{r['stderr_tail']}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
