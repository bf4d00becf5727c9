#!/usr/bin/env bash
# Installs the programs outside Rust that hubcast's test suite and CI need. This is the
# one place to add them: .ci/run calls it first, and the README names it.
#
#     bash scripts/install-test-deps.sh
#
# Beyond a Rust toolchain with cargo (which this script checks for but cannot install):
#   - chromium (Debian package): tests/browser.rs runs the chat page in headless Chromium;
#   - curl (Debian package): tests/sse.rs reads an event stream with `curl -N`;
#   - kosoku (PyPI, pinned): tests/conformance.rs runs the Autobahn WebSocket cases with it;
#   - prometheus_client (PyPI, pinned): tests/metrics.rs parses the hub's metrics with its
#     parser;
#   - nats-server (Debian package): tests/cluster.rs runs the hubs of a cluster (feature
#     `nats`) against it, killing, freezing and restarting it (the tests look in /usr/sbin
#     too, where Debian installs it);
#   - python3: kosoku runs on it, the conformance test reads kosoku's report with it,
#     tests/resume.rs runs the Python client (clients/python) with it, and CI runs
#     scripts/check_msrv.py;
#   - timeout (coreutils): CI limits each step with it.
# A test that needs one of these skips with a message where it is missing, and fails when
# CI is set (tests/util/programs.rs, `require_program`).
#
# Idempotent: what is already there, at the pinned version for PyPI packages, is left
# alone, so on a machine that has everything it installs nothing and needs no network.
# Debian packages are installed with apt-get (Debian or Ubuntu, as root), PyPI packages with
# python3's pip; elsewhere it says what to install and fails.
set -euo pipefail

# "command debian-package" pairs: add a test prerequisite from Debian here.
NEEDED=(
  "python3 python3"
  "timeout coreutils"
  "chromium chromium"
  "curl curl"
  "nats-server nats-server"
)
# "command package version" triples: add a test prerequisite from PyPI here, pinned, so
# that a new release cannot change what the tests check. A library, which installs no
# command, has "-" for its command.
PYPI=(
  "kosoku kosoku 0.1.0"
  "- prometheus_client 0.26.0"
)

if ! command -v cargo >/dev/null; then
  echo "install-test-deps: cargo not found: install a Rust toolchain (https://rustup.rs)" >&2
  exit 1
fi

missing=()
for pair in "${NEEDED[@]}"; do
  read -r cmd package <<<"$pair"
  # Daemons land in /usr/sbin, which a user's PATH may lack (the tests look there too).
  command -v "$cmd" >/dev/null || [ -x "/usr/sbin/$cmd" ] || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "install-test-deps: please install: ${missing[*]}" >&2
    exit 1
  fi
  echo "install-test-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The installed version of a PyPI package, or nothing.
pypi_version() {
  python3 - "$1" <<'EOF' 2>/dev/null || true
import importlib.metadata, sys
print(importlib.metadata.version(sys.argv[1]))
EOF
}

pip_missing=()
for triple in "${PYPI[@]}"; do
  read -r cmd package version <<<"$triple"
  if { [ "$cmd" != - ] && ! command -v "$cmd" >/dev/null; } \
    || [ "$(pypi_version "$package")" != "$version" ]; then
    pip_missing+=("$package==$version")
  fi
done
if [ ${#pip_missing[@]} -gt 0 ]; then
  echo "install-test-deps: installing ${pip_missing[*]} with $(command -v python3)"
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check \
    "${pip_missing[@]}"
  # pyenv finds new commands only after a rehash (pip usually triggers one).
  if command -v pyenv >/dev/null; then
    pyenv rehash
  fi
  for triple in "${PYPI[@]}"; do
    read -r cmd _ _ <<<"$triple"
    if [ "$cmd" != - ] && ! command -v "$cmd" >/dev/null; then
      echo "install-test-deps: $cmd installed but not on PATH ($PATH)" >&2
      exit 1
    fi
  done
fi

if [ ${#missing[@]} -eq 0 ] && [ ${#pip_missing[@]} -eq 0 ]; then
  echo "install-test-deps: nothing to install"
fi
