#!/usr/bin/env bash
# make bench, second part: the scale bench (bench/scale.py). One `opsline apply` of 1,000 and
# one of 5,000 products (2,000 and 10,000 items) against moto (signatures and IAM policies
# enforced; S3 and IAM on two motos, no proxy): wall time, CPU per AWS request, peak RSS, and
# the two targets (peak RSS <= 64 MB, 5,000 within 1.5x of 1,000). See bench/README.md.
#
# usage: bench/scale.sh [BUILDDIR]   (default build; the binary is BUILDDIR/opsline)
# knobs: SCALE_COUNTS (1000,5000), SCALE_CONCURRENCY (64, opsline --concurrency),
#        SCALE_CONFIG (split-direct; or single-direct, split, single), SCALE_JSON (a file
#        for the raw numbers). Extra arguments after BUILDDIR go to bench/scale.py.
set -euo pipefail
build=${1:-build}
shift || true
root=$(cd "$(dirname "$0")/.." && pwd)
case $build in /*) ;; *) [ -d "$build" ] || build=$root/$build ;; esac
args=(--counts "${SCALE_COUNTS:-1000,5000}" --concurrency "${SCALE_CONCURRENCY:-64}"
  --config "${SCALE_CONFIG:-split-direct}" ${SCALE_JSON:+--json-out "$SCALE_JSON"})
exec python3 "$root/bench/scale.py" --opsline "$build/opsline" "${args[@]}" "$@"
