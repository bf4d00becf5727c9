#!/usr/bin/env bash
# Installs the programs outside Rust that hubcast's test suite and CI need. This is the
# one place to add them: .ci/run calls it first, and the README names it.
#
#     bash scripts/install-test-deps.sh
#
# Today the tests need nothing beyond a Rust toolchain with cargo (which this script
# checks for but cannot install); CI also runs `python3` (scripts/check_msrv.py) and
# `timeout`. Idempotent: a program already on PATH is left alone, so on a machine that
# has everything it installs nothing and needs no network. Missing ones are installed
# with apt-get (Debian or Ubuntu, as root); elsewhere it says what to install and fails.
set -euo pipefail

# "command debian-package" pairs: add a test prerequisite here.
NEEDED=(
  "python3 python3"
  "timeout coreutils"
)

if ! command -v cargo >/dev/null; then
  echo "install-test-deps: cargo not found: install a Rust toolchain (https://rustup.rs)" >&2
  exit 1
fi

missing=()
for pair in "${NEEDED[@]}"; do
  read -r cmd package <<<"$pair"
  command -v "$cmd" >/dev/null || missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-test-deps: nothing to install"
  exit 0
fi

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "install-test-deps: please install: ${missing[*]}" >&2
  exit 1
fi
echo "install-test-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
