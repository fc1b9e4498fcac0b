#!/usr/bin/env bash
# Install what opsline needs to build and test on Debian 12, only what is missing.
set -euo pipefail

pkgs=(build-essential cmake pkg-config libuv1-dev libcurl4-openssl-dev libssl-dev
      libjansson-dev libexpat1-dev libcmocka-dev clang-format curl
      keepassxc pass gnupg git
      clang libclang-rt-14-dev llvm)  # make fuzz: clang's libFuzzer, llvm-symbolizer
# A python3 with pip from elsewhere (pyenv, a venv) is as good as Debian's.
command -v python3 >/dev/null && python3 -m pip --version >/dev/null 2>&1 ||
  pkgs+=(python3 python3-pip)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The AWS emulator and the independent clients used by the integration tests.
py=python3
need_py=()
$py -c 'import moto.server' 2>/dev/null || need_py+=('moto[server]')
$py -c 'import boto3' 2>/dev/null || need_py+=(boto3)
command -v aws >/dev/null || need_py+=(awscli)
if [ ${#need_py[@]} -gt 0 ]; then
  echo "install-deps: pip installing ${need_py[*]}"
  $py -m pip install -q "${need_py[@]}" || $py -m pip install -q --break-system-packages "${need_py[@]}"
fi
command -v moto_server >/dev/null || $py -c 'import moto.server' || {
  echo "install-deps: moto_server is not available; install it with: pip install 'moto[server]'" >&2
  exit 1
}
