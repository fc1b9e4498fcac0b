#!/usr/bin/env bash
# make bench: `opsline apply` against a boto3 peer (bench/peer_boto3.py), both provisioning
# the same products against moto (SigV4 + IAM enforced) behind tests/tools/faultproxy.py
# adding 50 ms to every request; prints wall, CPU and peak memory of each side, the ratios,
# and the CPU moto burned, to tell when the emulator is the bottleneck. See bench/README.md.
#
# usage: bench/run.sh [BUILDDIR]   (default build; the binary is BUILDDIR/opsline)
# knobs: BENCH_N (50 products), BENCH_THREADS (16, the peer's pool), BENCH_CONCURRENCY (32,
#        opsline --concurrency), BENCH_LATENCY_MS (50), BENCH_REPEAT (3; each figure is the
#        median of the runs), BENCH_CONFIGS (single,split,single-direct,split-direct,
#        single-nolatency,split-nolatency), BENCH_JSON (a file for every run's raw numbers).
#        Extra arguments after BUILDDIR go to bench/bench.py.
# Then the throttle bench (bench/throttle.py): BENCH_THROTTLE_N products (200) under an IAM
# quota of BENCH_THROTTLE_TPS (10) requests/s, opsline against boto3 in adaptive mode;
# BENCH_THROTTLE_S3_SLOWDOWN (0) also answers that share of S3 requests 503 SlowDown;
# BENCH_THROTTLE_N=0 skips it. Before it, bench/curl_floor.py: the same requests through a bare
# libcurl client, alone and with the file work of opsline's durability, against opsline's
# whole run and the peer, BENCH_FLOOR_REPEAT (6) times each (0 skips it).
set -euo pipefail
build=${1:-build}
shift || true
root=$(cd "$(dirname "$0")/.." && pwd)
opsline="$root/$build/opsline"
[ -x "$opsline" ] || opsline="$build/opsline"
if [ ! -x "$opsline" ]; then
  echo "bench: no opsline binary in $build; run make build (or give the build dir)" >&2
  exit 2
fi

# GNU time gives the peak RSS of exactly the measured process (bash's `time` does not).
if [ ! -x /usr/bin/time ]; then
  echo "bench: installing GNU time (/usr/bin/time)" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get install -y -qq time >/dev/null 2>&1 ||
    { $sudo apt-get update -qq >/dev/null && $sudo apt-get install -y -qq time >/dev/null; }
fi

args=(--opsline "$opsline"
  -n "${BENCH_N:-50}"
  --threads "${BENCH_THREADS:-16}"
  --concurrency "${BENCH_CONCURRENCY:-32}"
  --latency-ms "${BENCH_LATENCY_MS:-50}"
  --repeat "${BENCH_REPEAT:-3}"
  --configs "${BENCH_CONFIGS:-single,split,single-direct,split-direct,single-nolatency,split-nolatency}")
[ -z "${BENCH_JSON:-}" ] || args+=(--json-out "$BENCH_JSON")
rc=0
python3 "$root/bench/bench.py" "${args[@]}" "$@" || rc=$?
# What this machine's filesystem charges per durable file operation: part of both sides' CPU.
python3 "$root/bench/fs_cost.py" || true
# What libcurl and the kernel alone need for opsline's requests (and with opsline's file work),
# against opsline's whole run and the peer.
if [ "${BENCH_FLOOR_REPEAT:-6}" != 0 ]; then
  python3 "$root/bench/curl_floor.py" --opsline "$opsline" -n "${BENCH_N:-50}" \
    --repeat "${BENCH_FLOOR_REPEAT:-6}" --latency-ms "${BENCH_LATENCY_MS:-50}" \
    --concurrency "${BENCH_CONCURRENCY:-32}" --threads "${BENCH_THREADS:-16}" || rc=$?
fi
if [ "${BENCH_THROTTLE_N:-200}" != 0 ]; then
  python3 "$root/bench/throttle.py" --opsline "$opsline" -n "${BENCH_THROTTLE_N:-200}" \
    --tps "${BENCH_THROTTLE_TPS:-10}" --s3-slowdown "${BENCH_THROTTLE_S3_SLOWDOWN:-0}" --threads "${BENCH_THREADS:-16}" \
    --concurrency "${BENCH_CONCURRENCY:-32}" --latency-ms "${BENCH_LATENCY_MS:-50}" || rc=$?
fi
exit $rc
