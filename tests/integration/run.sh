#!/usr/bin/env bash
# Run one integration test command against the moto started by the ctest fixture
# integration.moto_start: sources its env file (endpoint, admin key, region), exports
# where the build and the tools are, then runs the command given.
#
#   run.sh [--build-dir DIR] [--proxy "FAULTPROXY ARGS"] COMMAND [ARGS...]
#
# The build dir comes from --build-dir or $OPSLINE_BUILD_DIR (CMake sets it).
# --proxy puts tests/tools/faultproxy.py between the command and moto, started with
# the given flags (e.g. "--fault throttling:probability=0.3 --seed 1"):
# AWS_ENDPOINT_URL then points at the proxy, MOTO_ENDPOINT_URL at moto, and
# FAULTPROXY_URL at the proxy's control endpoint base (POST $FAULTPROXY_URL/__proxy/config).
#
# Exported for the command: the moto env (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
# AWS_SECRET_ACCESS_KEY, AWS_REGION, MOTO_PORT, MOTO_PID), OPSLINE (the binary),
# OPSLINE_BUILD_DIR, OPSLINE_SOURCE_DIR, OPSLINE_TOOLS_DIR (also on PYTHONPATH),
# MOTO_STATE_DIR, IT_TMPDIR (scratch dir, removed afterwards).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
use_proxy=0
proxy_args=""
while [ $# -gt 0 ]; do
    case "$1" in
    --build-dir) OPSLINE_BUILD_DIR="$2"; shift 2 ;;
    --proxy) use_proxy=1; proxy_args="$2"; shift 2 ;;
    *) break ;;
    esac
done
if [ -z "${OPSLINE_BUILD_DIR:-}" ]; then
    echo "run.sh: set OPSLINE_BUILD_DIR or pass --build-dir DIR" >&2
    exit 2
fi
if [ $# -eq 0 ]; then
    echo "usage: run.sh [--build-dir DIR] [--proxy ARGS] COMMAND [ARGS...]" >&2
    exit 2
fi

OPSLINE_BUILD_DIR="$(cd "$OPSLINE_BUILD_DIR" && pwd)"
MOTO_STATE_DIR="${MOTO_STATE_DIR:-$OPSLINE_BUILD_DIR/it-moto}"
if [ ! -r "$MOTO_STATE_DIR/env" ]; then
    echo "run.sh: no moto env in $MOTO_STATE_DIR (did integration.moto_start run?)" >&2
    exit 1
fi
# The env file holds only `export NAME='value'` lines written by moto_fixture.py.
# shellcheck disable=SC1091
. "$MOTO_STATE_DIR/env"

export OPSLINE_BUILD_DIR MOTO_STATE_DIR
export OPSLINE="$OPSLINE_BUILD_DIR/opsline"
OPSLINE_SOURCE_DIR="$(cd "$here/../.." && pwd)"
export OPSLINE_SOURCE_DIR
export OPSLINE_TOOLS_DIR="$OPSLINE_SOURCE_DIR/tests/tools"
export PYTHONPATH="$OPSLINE_TOOLS_DIR${PYTHONPATH:+:$PYTHONPATH}"
# No __pycache__ in the source tree.
export PYTHONDONTWRITEBYTECODE=1
export MOTO_ENDPOINT_URL="$AWS_ENDPOINT_URL"
# Keep the tests hermetic: no profile or config file of the user's may change them.
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SESSION_TOKEN

IT_TMPDIR="$(mktemp -d "${TMPDIR:-/tmp}/opsline-it.XXXXXX")"
export IT_TMPDIR
proxy_pid=""
cleanup() {
    if [ -n "$proxy_pid" ]; then
        kill "$proxy_pid" 2>/dev/null || true
        wait "$proxy_pid" 2>/dev/null || true
    fi
    rm -rf "$IT_TMPDIR"
}
trap cleanup EXIT

if [ "$use_proxy" = 1 ]; then
    # shellcheck disable=SC2086 # the proxy flags are meant to be word-split
    "${PYTHON3:-python3}" "$OPSLINE_TOOLS_DIR/faultproxy.py" --upstream "$AWS_ENDPOINT_URL" \
        --port-file "$IT_TMPDIR/proxy.port" --die-with-parent $proxy_args \
        >"$IT_TMPDIR/proxy.log" 2>&1 &
    proxy_pid=$!
    for _ in $(seq 100); do
        [ -s "$IT_TMPDIR/proxy.port" ] && break
        kill -0 "$proxy_pid" 2>/dev/null || break
        sleep 0.05
    done
    if [ ! -s "$IT_TMPDIR/proxy.port" ]; then
        echo "run.sh: faultproxy did not start:" >&2
        cat "$IT_TMPDIR/proxy.log" >&2
        exit 1
    fi
    FAULTPROXY_URL="http://127.0.0.1:$(cat "$IT_TMPDIR/proxy.port")"
    export FAULTPROXY_URL AWS_ENDPOINT_URL="$FAULTPROXY_URL"
fi

cd "$here"
set +e
"$@"
rc=$?
set -e
if [ "$rc" -ne 0 ] && [ -n "$proxy_pid" ]; then
    echo "run.sh: command failed ($rc); proxy stats:" >&2
    curl -s "$FAULTPROXY_URL/__proxy/stats" >&2 || true
fi
exit "$rc"
