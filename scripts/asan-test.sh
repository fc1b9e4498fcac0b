#!/usr/bin/env bash
# Runs the tests of a sanitizer build (cmake -DOPSLINE_SANITIZE=ON) with every sanitizer
# report made fatal and collected:
#   scripts/asan-test.sh BUILD_DIR LABEL_REGEX [JOBS [CTEST_ARGS...]]
#
# The integration and end-to-end tests run the sanitized opsline binary and its sanitized
# plugins from Python, which mostly checks exit codes and output. So a report must not
# depend on the test noticing it: every instrumented process (unit test, opsline, its
# plugins) writes its ASan/LSan/UBSan report to BUILD_DIR/sanitizer-logs/ (log_path), exits
# 86 (a code no test expects, not 1 = "some item failed"), and a run that leaves any report
# there fails, printing the reports.
set -uo pipefail
build=$(cd "${1:?usage: scripts/asan-test.sh BUILD_DIR LABEL_REGEX [JOBS]}" && pwd)
labels=${2:?label regex, e.g. 'unit|integration|e2e'}
jobs=${3:-2}
shift $(($# < 3 ? $# : 3))
logs=$build/sanitizer-logs
rm -rf "$logs"
mkdir -p "$logs"
export ASAN_OPTIONS="detect_leaks=1:exitcode=86:log_path=$logs/asan:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=86:log_path=$logs/ubsan:${UBSAN_OPTIONS:-}"
rc=0
ctest --test-dir "$build" --output-on-failure -L "$labels" -j "$jobs" "$@" || rc=$?
reports=("$logs"/*)
if [ -e "${reports[0]}" ]; then
  for f in "${reports[@]}"; do
    echo "==== sanitizer report $f" >&2
    cat "$f" >&2
  done
  echo "asan: ${#reports[@]} sanitizer report(s) in $logs" >&2
  rc=1
fi
exit $rc
