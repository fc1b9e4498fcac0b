#!/usr/bin/env bash
# Runs every fuzz target of a build tree (cmake -DOPSLINE_FUZZ=ON) for a bounded time:
#   fuzz/run.sh BUILD_DIR [SECONDS] [TARGET...]
# Each starts from its seed corpus, fuzz/corpus/<target>/ (read only), and keeps what it
# finds new in BUILD_DIR/fuzz-corpus/<target>/. A crash, leak, sanitizer report, timeout or
# failed check leaves its input in BUILD_DIR/fuzz-artifacts/<target>/ and fails the run;
# reproduce it with `BUILD_DIR/fuzz/fuzz_<target> FILE`, then add the input to the seed
# corpus and a unit test for the fix.
set -uo pipefail
build=${1:?usage: fuzz/run.sh BUILD_DIR [SECONDS] [TARGET...]}
seconds=${2:-30}
shift $(($# < 2 ? $# : 2))
src=$(cd "$(dirname "$0")" && pwd)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(xml ini dotenv products pipeline journal credjson)

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=()
for t in "${targets[@]}"; do
  bin=$build/fuzz/fuzz_$t
  if [ ! -x "$bin" ]; then
    echo "fuzz: $bin is missing; build it with make fuzz" >&2
    exit 2
  fi
  work=$build/fuzz-corpus/$t
  art=$build/fuzz-artifacts/$t
  mkdir -p "$work" "$art"
  log=$build/fuzz-$t.log
  echo "fuzz: $t for ${seconds}s (seed corpus fuzz/corpus/$t, log $log)"
  # -timeout: one input taking 10 s is a hang; -rss_limit_mb bounds a runaway allocation.
  if "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
       -print_final_stats=1 -artifact_prefix="$art/" "$work" "$src/corpus/$t" >"$log" 2>&1; then
    grep -E '^stat::number_of_executed_units|^Done' "$log" | sed "s/^/  /"
  else
    echo "fuzz: $t FAILED; see $log and $art/" >&2
    grep -E 'ERROR|SUMMARY|runtime error|Test unit written' "$log" | head -20 | sed 's/^/  /' >&2
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, ${seconds}s each, no finding"
