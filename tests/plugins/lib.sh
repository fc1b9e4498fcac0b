# Shared by the tests/plugins/test_*.sh scripts (POSIX sh), sourced right after `set -eu`:
#     . "$(dirname "$0")/lib.sh"
# It makes $tmp, a scratch directory removed on exit together with the moto that
# moto_start may have started (which needs $src, the source tree, set by then).
#
#   fail MSG / skip MSG   print FAIL:/SKIP: MSG, exit 1 / 77
#   show FILE...          the files on stderr
#   need_tools TOOL...    skip unless every tool is on PATH
#   moto_start            a moto with signatures and IAM policies enforced ($moto_state)
#   with_moto CMD...      CMD in $tmp, in a subshell, with moto's endpoint and admin key and
#                         no AWS config or credentials file
#   install_build         installs $build into $tmp: sets $prefix, $root (the installed
#                         tree) and $opsline (its binary)
#   build_with_cmake EXAMPLE WHAT [CMAKE_ARG...]   EXAMPLE into $tmp/cmake-build against
#                         $root with find_package; WHAT names it in a failure
#   build_with_pkg_config EXAMPLE WHAT [MAKE_ARG...]   a copy of EXAMPLE made in
#                         $tmp/make-build with pkg-config; sets $pcdir
#   exports_only_entry_point SO...   fail unless each SO exports opsline_plugin alone
# shellcheck shell=sh disable=SC2154 # $src and $build: set by the script sourcing this

tmp=$(mktemp -d)
moto_state=
cleanup() {
    if [ -n "$moto_state" ]; then
        python3 "$src/tests/tools/moto_fixture.py" stop --state-dir "$moto_state" \
            >/dev/null 2>&1 || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() {
    echo "FAIL: $*" >&2
    exit 1
}
skip() {
    echo "SKIP: $*" >&2
    exit 77
}
show() {
    cat "$@" >&2
}

need_tools() {
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || skip "$tool is not installed"
    done
}

moto_start() {
    moto_state=$tmp/moto
    python3 "$src/tests/tools/moto_fixture.py" start --state-dir "$moto_state" >/dev/null ||
        fail "could not start moto"
}

with_moto() {
    (
        # shellcheck disable=SC1091
        . "$moto_state/env"
        cd "$tmp" || exit
        AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null "$@"
    )
}

install_build() {
    # DESTDIR keeps anything installed to an absolute path inside $tmp as well.
    prefix=$tmp/prefix
    DESTDIR=$tmp/stage cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1 ||
        { show "$tmp/install.log"; fail "cmake --install"; }
    root=$tmp/stage$prefix
    [ -f "$root/include/opsline/opsline.h" ] || fail "SDK header not installed"
    opsline=$root/bin/opsline
    [ -x "$opsline" ] || fail "opsline not installed"
}

build_with_cmake() {
    _example=$1 _what=$2
    shift 2
    cmake -S "$_example" -B "$tmp/cmake-build" -DCMAKE_PREFIX_PATH="$root" "$@" \
        >"$tmp/cmake.log" 2>&1 || { show "$tmp/cmake.log"; fail "configuring the $_what"; }
    cmake --build "$tmp/cmake-build" >"$tmp/build.log" 2>&1 ||
        { show "$tmp/build.log"; fail "building the $_what with CMake"; }
}

build_with_pkg_config() {
    _example=$1 _what=$2
    shift 2
    pcdir=$(dirname "$(find "$root" -name opsline-sdk.pc | head -n 1)")
    [ -n "$pcdir" ] && [ "$pcdir" != . ] || fail "opsline-sdk.pc not installed"
    cp -R "$_example" "$tmp/make-build"
    rm -rf "$tmp/make-build/build"
    PKG_CONFIG_PATH=$pcdir make -C "$tmp/make-build" "$@" >"$tmp/make.log" 2>&1 ||
        { show "$tmp/make.log"; fail "building the $_what with pkg-config"; }
}

exports_only_entry_point() {
    for so in "$@"; do
        [ -f "$so" ] || fail "$so was not built"
        syms=$(nm -D --defined-only "$so" | awk '{ print $NF }')
        [ "$syms" = opsline_plugin ] || fail "$so exports more than opsline_plugin: $syms"
    done
}
