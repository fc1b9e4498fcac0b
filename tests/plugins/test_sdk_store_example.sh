#!/bin/sh
# Builds sdk/examples/store-cmd (cmdstore, a third-party secret store that runs a program)
# the way a third party would: against an installed copy of this build, with CMake
# (find_package) and with pkg-config. Then runs it as the only secret store of
# `opsline apply` against moto with signatures and IAM policies enforced, the example's
# dirstore.sh keeping the entries in a directory, and checks with boto3 that the stored
# key is the user's only key, works on its bucket and is denied on the other; that a rerun
# keeps it; that a failing program fails the item with its message and a rerun after the
# fix fills the store with the key dotenv kept (no new key); and that `opsline plugins show
# cmdstore` documents every option.
#
# usage: test_sdk_store_example.sh BUILD_DIR SOURCE_DIR
# Exit 0 pass, 1 fail, 77 skip (a prerequisite is missing: never for an opsline failure).
set -eu
# shellcheck source=tests/plugins/lib.sh
. "$(dirname "$0")/lib.sh"

build=$1
src=$2
example=$src/sdk/examples/store-cmd

need_tools cmake pkg-config make cc nm python3
python3 -c 'import boto3, moto' 2>/dev/null || skip "python3 modules boto3 and moto are needed"

# 1. Install this build.
install_build

# 2. Out of tree with CMake, then with pkg-config from a copy of the example directory.
build_with_cmake "$example" "store example" -DCMAKE_C_FLAGS="-Werror"
build_with_pkg_config "$example" "store example" CFLAGS="-O2 -Wall -Wextra -Werror"
exports_only_entry_point "$tmp/cmake-build/cmdstore.so" "$tmp/make-build/cmdstore.so"
plugins=$tmp/cmake-build

# 3. opsline loads it and documents its options.
"$opsline" plugins show cmdstore --plugin-dir "$plugins" >"$tmp/show.out" 2>&1 ||
    { show "$tmp/show.out"; fail "opsline plugins show cmdstore"; }
for word in command name timeout env "put|get|del"; do
    grep -q -- "$word" "$tmp/show.out" || { show "$tmp/show.out"; fail "show lacks '$word'"; }
done

# 4. A store that cannot run (no such program) stops the run before anything is created.
moto_start
cp "$example/dirstore.sh" "$tmp/store program.sh" # a space: argv, not a shell line
chmod 0755 "$tmp/store program.sh"
entries=$tmp/entries
run_apply() { # run_apply OUT ERR ARGS...: exit status of opsline apply
    out=$1 err=$2
    shift 2
    with_moto "$opsline" apply sdkstore --plugin-dir "$plugins" --secrets cmdstore "$@" \
        >"$out" 2>"$err"
}
status=0
run_apply "$tmp/missing.out" "$tmp/missing.err" \
    --set cmdstore.command="$tmp/no-such-program" || status=$?
[ "$status" -ne 0 ] || { show "$tmp/missing.err"; fail "a missing store program was accepted"; }
grep -q "no-such-program" "$tmp/missing.err" ||
    { show "$tmp/missing.err"; fail "the error does not name the missing program"; }

# 5. The real run, then a rerun that must keep the key.
for run in 1 2; do
    status=0
    run_apply "$tmp/apply$run.json" "$tmp/apply$run.err" --json -v \
        --set "cmdstore.command=$tmp/store program.sh" \
        --set "cmdstore.env=CMDSTORE_DIR=$entries" --set cmdstore.timeout=20 || status=$?
    [ "$status" -eq 0 ] || { show "$tmp/apply$run.err"; fail "opsline apply run $run: $status"; }
    cp -R "$entries" "$tmp/entries$run"
done
[ ! -e "$tmp/sdkstore-production.env" ] || fail "dotenv ran although --secrets cmdstore"

# 6. The program fails (next to dotenv): exit 1, the reason names the store and quotes the
#    program; fixed and rerun, the store is filled with the same key, no new key.
printf '#!/bin/sh\necho "vault is sealed" >&2\nexit 1\n' >"$tmp/sealed.sh"
chmod 0755 "$tmp/sealed.sh"
status=0
with_moto "$opsline" apply sdkfix -e production --plugin-dir "$plugins" \
    --secrets dotenv,cmdstore --set "cmdstore.command=$tmp/sealed.sh" \
    >"$tmp/sealed.out" 2>"$tmp/sealed.err" || status=$?
[ "$status" -eq 1 ] ||
    { show "$tmp/sealed.out" "$tmp/sealed.err"; fail "a failing store: exit $status"; }
grep -q "cmdstore.*vault is sealed" "$tmp/sealed.out" "$tmp/sealed.err" ||
    { show "$tmp/sealed.out" "$tmp/sealed.err"; fail "the reason does not quote the program"; }
with_moto "$opsline" apply sdkfix -e production --plugin-dir "$plugins" \
    --secrets dotenv,cmdstore --set "cmdstore.command=$tmp/store program.sh" \
    --set "cmdstore.env=CMDSTORE_DIR=$entries" >"$tmp/fixed.out" 2>"$tmp/fixed.err" ||
    { show "$tmp/fixed.out" "$tmp/fixed.err"; fail "the rerun after the fix"; }

python3 - "$moto_state/state.json" "$tmp" <<'PY' || fail "the stored keys are not the working keys"
import json, os, sys
import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

state, tmp = json.load(open(sys.argv[1])), sys.argv[2]
endpoint = state.get("endpoint") or f"http://127.0.0.1:{state['port']}"

def client(service, key_id, secret):
    return boto3.client(service, endpoint_url=endpoint, region_name="eu-north-1",
                        aws_access_key_id=key_id, aws_secret_access_key=secret,
                        config=Config(retries={"max_attempts": 1}))

def entry(run, name):
    with open(os.path.join(tmp, f"entries{run}", name)) as f:
        return dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)

iam = client("iam", state["access_key_id"], state["secret_access_key"])
for env, other in (("production", "staging"), ("staging", "production")):
    name = f"sdkstore-{env}"
    e1, e2 = entry(1, name), entry(2, name)
    assert e1["access_key_id"] == e2["access_key_id"], f"{name}: the rerun replaced the key"
    assert e1["secret_access_key"] == e2["secret_access_key"], f"{name}: secret changed"
    assert e1["bucket"] == name and e1["region"] == "eu-north-1", e1.keys()
    keys = [k["AccessKeyId"] for k in iam.list_access_keys(UserName=name)["AccessKeyMetadata"]]
    assert keys == [e1["access_key_id"]], f"{name}: IAM has {keys}, the store one other key"
    s3 = client("s3", e1["access_key_id"], e1["secret_access_key"])
    s3.put_object(Bucket=name, Key="probe", Body=b"x")
    assert s3.get_object(Bucket=name, Key="probe")["Body"].read() == b"x"
    s3.delete_object(Bucket=name, Key="probe")
    try:
        s3.put_object(Bucket=f"sdkstore-{other}", Key="probe", Body=b"x")
        raise AssertionError(f"{name}'s key may write to sdkstore-{other}")
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "AccessDenied", exc.response["Error"]
    for run in (1, 2):
        for path in (f"apply{run}.json", f"apply{run}.err"):
            assert e1["secret_access_key"] not in open(os.path.join(tmp, path)).read(), path
# The failed store was filled on the rerun with the key dotenv kept: no new key.
fixed = entry("", "sdkfix-production")
with open(os.path.join(tmp, "sdkfix-production.env")) as f:
    dotenv = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
assert fixed["access_key_id"] == dotenv["AWS_ACCESS_KEY_ID"], "cmdstore and dotenv differ"
assert fixed["secret_access_key"] == dotenv["AWS_SECRET_ACCESS_KEY"], "secrets differ"
meta = iam.list_access_keys(UserName="sdkfix-production")["AccessKeyMetadata"]
keys = [k["AccessKeyId"] for k in meta]
assert keys == [fixed["access_key_id"]], f"sdkfix-production: IAM has {keys}: a new key was made"
report = json.load(open(os.path.join(tmp, "apply1.json")))
assert all(item["ok"] for item in report["items"]), report
print("stored keys verified")
PY
for f in "$tmp"/entries1/*; do
    mode=$(stat -c %a "$f")
    [ "$mode" = 600 ] || fail "$f has mode $mode"
done
echo "PASS: the store example builds against the installed SDK, is documented by" \
    "'plugins show', and stores working keys through its program in opsline apply"
