#!/bin/sh
# Builds sdk/examples/hello the way a third party would: against an installed copy of this
# build (never the source tree), once with CMake (find_package) and once with pkg-config,
# then checks the plugins export only their entry point and that opsline loads one.
#
# usage: test_sdk_example.sh BUILD_DIR SOURCE_DIR
# Exit 0 pass, 1 fail, 77 skip. A skip names a missing prerequisite of the machine (a tool a
# third party would build with); anything opsline itself does wrong is a failure.
set -eu
# shellcheck source=tests/plugins/lib.sh
. "$(dirname "$0")/lib.sh"

need_tools cmake pkg-config make cc nm python3

build=$1
src=$2

install_build

# 1. CMake package, out of tree.
build_with_cmake "$src/sdk/examples/hello" example

# 2. pkg-config, from a copy of the example directory.
build_with_pkg_config "$src/sdk/examples/hello" example
plugindir=$(PKG_CONFIG_PATH=$pcdir pkg-config --variable=plugindir opsline-sdk)
case $plugindir in
*/opsline/plugins) ;;
*) fail "pkg-config plugindir is '$plugindir'" ;;
esac

# 3. Only the entry point is exported.
exports_only_entry_point "$tmp/cmake-build/hello.so" "$tmp/make-build/hello.so"

# 4. The installed opsline loads it.
"$opsline" plugins list --plugin-dir "$tmp/cmake-build" >"$tmp/list.out" 2>&1 ||
    { cat "$tmp/list.out" >&2; fail "opsline plugins list"; }
"$opsline" plugins show hello --plugin-dir "$tmp/cmake-build" >"$tmp/show.out" 2>&1 ||
    { cat "$tmp/show.out" >&2; fail "opsline plugins show hello"; }
grep -q greeting "$tmp/show.out" || { cat "$tmp/show.out" >&2; fail "show lacks greeting"; }
grep -q hello "$tmp/list.out" || { cat "$tmp/list.out" >&2; fail "list lacks hello"; }

# 5. It runs in a pipeline of the installed opsline, after the bundled stages, against moto
#    with signatures and IAM policies enforced. Also proves the installed binary finds its
#    own bundled plugins under the relocated prefix.
moto_start
cat >"$tmp/pipeline.json" <<'JSON'
{"stages": ["bucket", "iam", "policy", "dotenv",
            {"stage": "hello", "options": {"greeting": "bonjour"}}]}
JSON
with_moto "$opsline" apply sdkdemo -e production --pipeline "$tmp/pipeline.json" \
    --plugin-dir "$tmp/cmake-build" --json >"$tmp/apply.json" 2>"$tmp/apply.err" ||
    { cat "$tmp/apply.err" >&2; fail "opsline apply with the example stage"; }
python3 - "$tmp/apply.json" <<'PY' || fail "the hello stage did not run as expected"
import json, sys
report = json.load(open(sys.argv[1]))
stages = {s["stage"]: s["outcome"] for s in report["items"][0]["stages"]}
assert report["items"][0]["ok"], report
assert stages.get("hello") in ("created", "unchanged"), stages
assert stages.get("bucket") == "created", stages
PY
grep -q "bonjour sdkdemo-production" "$tmp/apply.err" ||
    { cat "$tmp/apply.err" >&2; fail "hello did not log its greeting"; }
echo "PASS: SDK example builds with CMake and pkg-config, loads in opsline and runs in a pipeline"
