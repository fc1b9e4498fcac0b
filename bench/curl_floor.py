#!/usr/bin/env python3
"""How far opsline's CPU is above what libcurl and the kernel alone need for its requests.

Builds bench/curl_floor.c (a bare libcurl multi_socket client on epoll), starts the `split`
stack of bench.py (an S3 and an IAM moto, each behind faultproxy.py with the added
latency), and runs, alternately, `--repeat` times each:

- curl_floor: the same requests opsline sends for N new products (per item CreateBucket,
  PutPublicAccessBlock, PutBucketEncryption, PutBucketTagging, CreateUser, PutUserPolicy,
  CreateAccessKey, plus one GetCallerIdentity), with the same header set and body sizes but
  dummy signatures (moto answers 403): the HTTP part of the work and nothing else;
- floor+durable: the same, plus the file work opsline's durability asks of each new item,
  done inline (curl_floor.c with a directory: the fsync'd intent record and eight more
  journal records, the .env written to a temp file, fsync'd, renamed, the directory
  fsync'd), a lower bound of HTTP plus durability for any libcurl client;
- `opsline apply` of N new products, with the bench's options;
- opsline-nofsync: the same apply with fsync(2) made a no-op (tests/tools/slow_fsync.c with
  SLOW_FSYNC_MS=0 SLOW_FSYNC_SKIP=1; opsline calls no fdatasync): what opsline would cost
  without its durability against a power loss, the one thing it could give up for CPU;
- the peer of bench.py (boto3, 16 threads, the 6 writes per item), unless --no-peer: the
  CPU bar (peer / opsline >= 10) next to what the two floors would reach against it.

Each side is timed as bench.py times it (bench.timed_call: CPU from wait4(2), peak RSS
from GNU time); prints each run and the medians. What opsline spends above
the floor is everything but the HTTP: signing, parsing, the journal and its fsyncs, the
store, the report, start-up.

    python3 bench/curl_floor.py --opsline build/opsline [-n 50] [--repeat 6]
"""
import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "tools"))
from bench import peer_command, scratch_stack, timed_call  # noqa: E402
from slow_disk import build_shim  # noqa: E402

S3NS = "http://s3.amazonaws.com/doc/2006-03-01/"


def build_floor(out_dir):
    exe = os.path.join(out_dir, "curl_floor")
    cc = os.environ.get("CC", "cc")
    src = os.path.join(HERE, "curl_floor.c")
    subprocess.run([cc, "-O2", "-Wall", "-Wextra", "-Werror", "-o", exe, src, "-lcurl"],
                   check=True)
    return exe


def requests_tsv(path, env, n):
    """The requests of n new products (2 items each), one per line (see curl_floor.c).
    Returns how many it wrote."""
    s3, iam = env["AWS_ENDPOINT_URL_S3"], env["AWS_ENDPOINT_URL_IAM"]
    tag = "fl" + secrets.token_hex(3)

    def line(url, method, body, service):
        headers = ["X-Amz-Date: 20261203T063440Z"]
        if service == "s3":
            headers.append("X-Amz-Content-Sha256: " + secrets.token_hex(32))
            signed = "host;x-amz-content-sha256;x-amz-date"
        else:
            headers.append("Content-Type: application/x-www-form-urlencoded; charset=utf-8")
            signed = "content-type;host;x-amz-date"
        headers.append(
            "Authorization: AWS4-HMAC-SHA256 Credential=AKIAEXAMPLEEXAMPLE12/20261203/"
            f"eu-north-1/{service}/aws4_request, SignedHeaders={signed}, "
            f"Signature={secrets.token_hex(32)}")
        headers.append("Expect:")
        return "\t".join([method, url, "\x1f".join(headers), body]) + "\n"

    xml = {
        "": f'<CreateBucketConfiguration xmlns="{S3NS}"><LocationConstraint>eu-north-1'
            "</LocationConstraint></CreateBucketConfiguration>",
        "?publicAccessBlock=": f'<PublicAccessBlockConfiguration xmlns="{S3NS}">'
            + "".join(f"<{k}>true</{k}>" for k in ("BlockPublicAcls", "IgnorePublicAcls",
                                                  "BlockPublicPolicy", "RestrictPublicBuckets"))
            + "</PublicAccessBlockConfiguration>",
        "?encryption=": f'<ServerSideEncryptionConfiguration xmlns="{S3NS}"><Rule>'
            "<ApplyServerSideEncryptionByDefault><SSEAlgorithm>AES256</SSEAlgorithm>"
            "</ApplyServerSideEncryptionByDefault><BucketKeyEnabled>false</BucketKeyEnabled>"
            "</Rule></ServerSideEncryptionConfiguration>",
        "?tagging=": f'<Tagging xmlns="{S3NS}"><TagSet><Tag><Key>managed-by</Key><Value>'
            "opsline</Value></Tag><Tag><Key>product</Key><Value>p</Value></Tag><Tag><Key>"
            "environment</Key><Value>production</Value></Tag></TagSet></Tagging>",
    }
    policy = "%7B%22Version%22%3A%222012-10-17%22" * 12  # about the size of the real one
    lines = [line(iam + "/", "POST", "Action=GetCallerIdentity&Version=2011-06-15", "sts")]
    for i in range(1, n + 1):
        for env_name in ("production", "staging"):
            b = f"{tag}{i}-{env_name}"
            lines += [line(f"{s3}/{b}/{sub}", "PUT", body, "s3") for sub, body in xml.items()]
            lines.append(line(iam + "/", "POST",
                              f"Action=CreateUser&Version=2010-05-08&UserName={b}&Path=%2F"
                              "&Tags.member.1.Key=managed-by&Tags.member.1.Value=opsline"
                              "&Tags.member.2.Key=product&Tags.member.2.Value=p"
                              f"&Tags.member.3.Key=environment&Tags.member.3.Value={env_name}",
                              "iam"))
            lines.append(line(iam + "/", "POST",
                              f"Action=PutUserPolicy&Version=2010-05-08&UserName={b}"
                              f"&PolicyName=opsline-bucket-access&PolicyDocument={policy}",
                              "iam"))
            lines.append(line(iam + "/", "POST",
                              f"Action=CreateAccessKey&Version=2010-05-08&UserName={b}", "iam"))
    with open(path, "w") as f:
        f.writelines(lines)
    return len(lines)

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--opsline", required=True)
    ap.add_argument("-n", type=int, default=50, help="products (items = 2 x n)")
    ap.add_argument("--repeat", type=int, default=6)
    ap.add_argument("--latency-ms", type=int, default=50)
    ap.add_argument("--concurrency", type=int, default=32, help="opsline --concurrency")
    ap.add_argument("--threads", type=int, default=16, help="the peer's thread pool")
    ap.add_argument("--no-peer", action="store_true", help="leave the boto3 peer out")
    args = ap.parse_args()
    opsline = os.path.abspath(args.opsline)
    with scratch_stack("opsline-floor-", "split", args.latency_ms) as (scratch, stack):
        exe = build_floor(scratch)
        env = stack.client_env(scratch)
        env_nofsync = dict(env, LD_PRELOAD=build_shim(scratch), SLOW_FSYNC_MS="0",
                           SLOW_FSYNC_SKIP="1")
        runs = {"curl_floor": [], "floor+durable": [], "opsline": [], "opsline-nofsync": []}
        if not args.no_peer:
            runs["peer"] = []
        for r in range(args.repeat):
            work = tempfile.mkdtemp(prefix=f"run{r}-", dir=scratch)
            tsv = os.path.join(work, "requests.tsv")
            n_requests = requests_tsv(tsv, env, args.n)
            def fresh(prefix):  # products no side has created yet
                tag = prefix + secrets.token_hex(3)
                return [f"{tag}{i}" for i in range(1, args.n + 1)]

            apply = [opsline, "apply", "--concurrency", str(args.concurrency), "--json"]
            cmds = {
                "curl_floor": [exe, tsv],
                "floor+durable": [exe, tsv, "."],
                "opsline": [*apply, *fresh("fl"), "--state-dir", os.path.join(work, "journal")],
                "opsline-nofsync": [*apply, *fresh("nf"), "--state-dir",
                                    os.path.join(work, "journal-nofsync")],
                "peer": peer_command(args.threads, ".", fresh("pe")),
            }
            for side in runs:
                cmd = cmds[side]
                side_dir = os.path.join(work, side)
                os.makedirs(side_dir)
                res = timed_call(stack, cmd, side_dir, side_dir,
                                 env_nofsync if side == "opsline-nofsync" else env)
                with open(os.path.join(side_dir, "stderr"), errors="replace") as f:
                    tail = f.read().strip().splitlines()[-1:] if "floor" in side else []
                print(f"{side:<13} run {r + 1}: cpu {res['cpu']:.3f} s, wall {res['wall']:.2f} s, "
                      f"peak {res['rss_mb']:.1f} MB, rc {res['rc']}"
                      + (f" ({tail[0]})" if tail else ""), flush=True)
                if res["rc"] != 0:
                    return 1
                runs[side].append(res)
        med = {side: {k: statistics.median(r[k] for r in rs) for k in ("cpu", "rss_mb")}
               for side, rs in runs.items()}
        fl, fd, op = (med[s]["cpu"] for s in ("curl_floor", "floor+durable", "opsline"))
        print(f"\n{args.n} products, {n_requests} requests, +{args.latency_ms} ms per "
              f"request, split stack; medians of {args.repeat}:")
        label = {
            "curl_floor": "curl_floor (libcurl + kernel, the HTTP alone)",
            "floor+durable": "floor+durable (the HTTP + the file work)",
            "opsline": "opsline apply (everything)",
            "opsline-nofsync": "opsline apply, fsync a no-op",
            "peer": f"peer (boto3, {args.threads} threads, 6 writes/item)",
        }
        for side in runs:
            print(f"  {label[side]:<47}cpu {med[side]['cpu']:.3f} s, "
                  f"peak {med[side]['rss_mb']:.1f} MB")
        print(f"  opsline / floor {op / fl:.2f}x; above the floor: {op - fl:.3f} s "
              f"({(op - fl) / op:.0%} of opsline's CPU); the file work alone: {fd - fl:.3f} s")
        if "peer" in med:
            pe = med["peer"]["cpu"]
            print(f"  peer CPU / opsline {pe / op:.1f}x (bar: >= 10x); / floor+durable "
                  f"{pe / fd:.1f}x; / curl_floor {pe / fl:.1f}x; / opsline-nofsync "
                  f"{pe / med['opsline-nofsync']['cpu']:.1f}x")
            pairs = [p["cpu"] / o["cpu"] for p, o in zip(runs["peer"], runs["opsline"])]
            print("  peer / opsline run by run: " + ", ".join(f"{x:.1f}x" for x in pairs))
        return 0


if __name__ == "__main__":
    sys.exit(main())
