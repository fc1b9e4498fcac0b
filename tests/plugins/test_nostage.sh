#!/bin/sh
# The host core names no bundled stage: configures and builds a second tree of this source
# with -DOPSLINE_BUNDLED_STAGES=OFF (only the opsline target), checks that `opsline plugins
# list` there shows only the test stages of --plugin-dir (fakekey, which makes up a key per
# item, and filestore, a secret store keeping one file per item), and runs `opsline apply`
# with them against moto (the host's STS preflight goes to moto, with signatures checked):
# exit 0, and the store holds each item's key. Then the default pipeline: with no plugin
# directory there is none (exit 2, before any request); with the test stages, which declare
# OL_STAGE_DEFAULT, `apply` with no --pipeline runs them, and --env-file reaches filestore's
# "dir" option through its cli_flags.
#
# usage: test_nostage.sh BUILD_DIR SOURCE_DIR TEST_STAGE_DIR [CMAKE_ARG...]
# Exit 0 pass, 1 fail, 77 skip (a prerequisite is missing: never for an opsline failure).
set -eu
# shellcheck source=tests/plugins/lib.sh
. "$(dirname "$0")/lib.sh"

build=$1
src=$2
stages=$3
shift 3
tree=$build/nostage

need_tools cmake python3
python3 -c 'import moto' 2>/dev/null || skip "the python3 module moto is needed"
[ -f "$stages/fakekey.so" ] && [ -f "$stages/filestore.so" ] ||
    fail "test stages not built in $stages"

# 1. The host alone. The install prefix is inside the tree, so the host finds no installed
#    stages either: what it loads comes from --plugin-dir only.
cmake -S "$src" -B "$tree" -DOPSLINE_BUNDLED_STAGES=OFF -DOPSLINE_BUILD_TESTS=OFF \
    -DCMAKE_INSTALL_PREFIX="$tree/prefix" "$@" >"$tmp/configure.log" 2>&1 ||
    { show "$tmp/configure.log"; fail "configuring with -DOPSLINE_BUNDLED_STAGES=OFF"; }
cmake --build "$tree" --target opsline -j2 >"$tmp/build.log" 2>&1 ||
    { show "$tmp/build.log"; fail "building opsline with no bundled stage"; }
opsline=$tree/opsline
[ -x "$opsline" ] || fail "$opsline was not built"
[ ! -e "$tree/plugins" ] || fail "a bundled stage was built: $(ls "$tree/plugins")"

# 2. Only the test stages are listed.
env -u OPSLINE_PLUGIN_PATH "$opsline" plugins list --plugin-dir "$stages" >"$tmp/list.out" 2>&1 ||
    { show "$tmp/list.out"; fail "opsline plugins list"; }
names=$(awk '/^[a-z0-9_-]/ { print $1 }' "$tmp/list.out" | sort | tr '\n' ' ')
[ "$names" = "fakekey filestore " ] || { show "$tmp/list.out"; fail "plugins list shows: $names"; }

# 2b. No stage of the default pipeline is loaded: refused before any request, saying so.
status=0
env -u OPSLINE_PLUGIN_PATH "$opsline" apply nostage >"$tmp/none.out" 2>&1 || status=$?
[ "$status" -eq 2 ] || { show "$tmp/none.out"; fail "apply with no stage at all: exit $status"; }
grep -q "no loaded stage belongs to the default pipeline" "$tmp/none.out" ||
    { show "$tmp/none.out"; fail "apply with no stage at all does not say why"; }

# 3. A pipeline of the test stages against moto.
moto_start
cat >"$tmp/pipeline.json" <<JSON
{"stages": ["fakekey", {"stage": "filestore", "options": {"dir": "$tmp/store"}}]}
JSON
status=0
with_moto env -u OPSLINE_PLUGIN_PATH "$opsline" apply nostage --pipeline "$tmp/pipeline.json" \
    --plugin-dir "$stages" --json >"$tmp/apply.json" 2>"$tmp/apply.err" || status=$?
[ "$status" -eq 0 ] || { show "$tmp/apply.err" "$tmp/apply.json"; fail "opsline apply: $status"; }
for env in production staging; do
    entry=$tmp/store/nostage-$env
    [ -f "$entry" ] || { show "$tmp/apply.err"; fail "the store got no entry for nostage-$env"; }
    grep -qx "secret_access_key=fake-secret-of-nostage-$env-0123456789" "$entry" ||
        fail "$entry does not hold the item's secret"
    grep -qx "access_key_id=AKIAFAKEnostage-$(echo "$env" | cut -c1-4)" "$entry" ||
        fail "$entry does not hold the item's key id"
    [ "$(stat -c %a "$entry")" = 600 ] || fail "$entry is not 0600"
done
if grep -q "fake-secret-of" "$tmp/apply.json" "$tmp/apply.err"; then
    fail "a secret reached the report or the log"
fi
# 4. The default pipeline of the test stages, with --env-file mapped by filestore.
status=0
with_moto env -u OPSLINE_PLUGIN_PATH "$opsline" apply deflt --plugin-dir "$stages" \
    --env-file "$tmp/store2" -e production >"$tmp/default.out" 2>&1 || status=$?
[ "$status" -eq 0 ] || { show "$tmp/default.out"; fail "apply with the default pipeline: $status"; }
grep -qx "secret_access_key=fake-secret-of-deflt-production-0123456789" \
    "$tmp/store2/deflt-production" ||
    { show "$tmp/default.out"; fail "--env-file did not reach filestore's dir option"; }
echo "PASS: opsline built with no bundled stage lists and runs only the test stages"
