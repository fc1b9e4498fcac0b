#!/bin/sh
# Builds sdk/examples/hello the way a third party would: against an installed copy of this
# build (never the source tree), once with CMake (find_package) and once with pkg-config,
# then checks the plugins export only their entry point and that opsline loads one.
#
# usage: test_sdk_example.sh BUILD_DIR SOURCE_DIR
# Exit 0 pass, 1 fail, 77 skip. A skip names a missing prerequisite of the machine (a tool a
# third party would build with); anything opsline itself does wrong is a failure.
set -eu

for tool in cmake pkg-config make cc nm python3; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "SKIP: '$tool' is not installed (run make deps)" >&2
        exit 77
    fi
done

build=$1
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# DESTDIR keeps anything installed to an absolute path inside $tmp as well.
prefix=$tmp/prefix
DESTDIR=$tmp/stage cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" ||
    { cat "$tmp/install.log" >&2; fail "cmake --install"; }
root=$tmp/stage$prefix
[ -f "$root/include/opsline/opsline.h" ] || fail "SDK header not installed"

# 1. CMake package, out of tree.
cmake -S "$src/sdk/examples/hello" -B "$tmp/cmake-build" -DCMAKE_PREFIX_PATH="$root" \
    >"$tmp/cmake.log" 2>&1 || { cat "$tmp/cmake.log" >&2; fail "configuring the example"; }
cmake --build "$tmp/cmake-build" >"$tmp/build.log" 2>&1 ||
    { cat "$tmp/build.log" >&2; fail "building the example with CMake"; }

# 2. pkg-config, from a copy of the example directory.
pcdir=$(dirname "$(find "$root" -name opsline-sdk.pc | head -n 1)")
[ -n "$pcdir" ] && [ "$pcdir" != . ] || fail "opsline-sdk.pc not installed"
cp -R "$src/sdk/examples/hello" "$tmp/make-build"
rm -rf "$tmp/make-build/build"
PKG_CONFIG_PATH=$pcdir make -C "$tmp/make-build" >"$tmp/make.log" 2>&1 ||
    { cat "$tmp/make.log" >&2; fail "building the example with pkg-config"; }
plugindir=$(PKG_CONFIG_PATH=$pcdir pkg-config --variable=plugindir opsline-sdk)
case $plugindir in
*/opsline/plugins) ;;
*) fail "pkg-config plugindir is '$plugindir'" ;;
esac

# 3. Only the entry point is exported.
for so in "$tmp/cmake-build/hello.so" "$tmp/make-build/hello.so"; do
    [ -f "$so" ] || fail "$so was not built"
    syms=$(nm -D --defined-only "$so" | awk '{ print $NF }')
    [ "$syms" = opsline_plugin ] || fail "$so exports more than opsline_plugin: $syms"
done

# 4. The installed opsline loads it.
opsline=$root/bin/opsline
[ -x "$opsline" ] || fail "opsline not installed"
"$opsline" plugins list --plugin-dir "$tmp/cmake-build" >"$tmp/list.out" 2>&1 ||
    { cat "$tmp/list.out" >&2; fail "opsline plugins list"; }
"$opsline" plugins show hello --plugin-dir "$tmp/cmake-build" >"$tmp/show.out" 2>&1 ||
    { cat "$tmp/show.out" >&2; fail "opsline plugins show hello"; }
grep -q greeting "$tmp/show.out" || { cat "$tmp/show.out" >&2; fail "show lacks greeting"; }
grep -q hello "$tmp/list.out" || { cat "$tmp/list.out" >&2; fail "list lacks hello"; }

# 5. It runs in a pipeline of the installed opsline, after the bundled stages, against moto
#    with signatures and IAM policies enforced. Also proves the installed binary finds its
#    own bundled plugins under the relocated prefix.
moto_state=$tmp/moto
python3 "$src/tests/tools/moto_fixture.py" start --state-dir "$moto_state" >/dev/null ||
    fail "could not start moto"
trap 'python3 "$src/tests/tools/moto_fixture.py" stop --state-dir "$moto_state" >/dev/null 2>&1; rm -rf "$tmp"' EXIT INT TERM
cat >"$tmp/pipeline.json" <<'JSON'
{"stages": ["bucket", "iam", "policy", "dotenv",
            {"stage": "hello", "options": {"greeting": "bonjour"}}]}
JSON
(
    # shellcheck disable=SC1091
    . "$moto_state/env"
    cd "$tmp"
    AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null \
        "$opsline" apply sdkdemo -e production --pipeline "$tmp/pipeline.json" \
        --plugin-dir "$tmp/cmake-build" --json >"$tmp/apply.json" 2>"$tmp/apply.err"
) || { cat "$tmp/apply.err" >&2; fail "opsline apply with the example stage"; }
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
