#!/usr/bin/env bash
# Installs what mmserve needs on a fresh Debian machine. Idempotent: a second run only checks.
#   scripts/setup.sh serve   -> the service's Python dependencies
#   scripts/setup.sh dev     -> everything the tests need: Debian tools + export/dev extras
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-dev}"
PIP="python3 -m pip"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

apt_install() {
  local missing=()
  for pair in "$@"; do
    local bin="${pair%%:*}" pkg="${pair##*:}"
    command -v "$bin" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: apt-get install ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

if [ "$what" = "dev" ]; then
  # espeak-ng: spoken test audio; nginx: load-balancer tests; hey: benchmark load generator;
  # chromium: browser test of the web page; sox: audio conversions in tests.
  apt_install espeak-ng:espeak-ng nginx:nginx hey:hey chromium:chromium sox:sox
  # torch first and pinned: an unpinned spec would pull a multi-GB CUDA build.
  python3 -c "import torch" 2>/dev/null || $PIP install -q torch==2.13.0
  $PIP install -q -e '.[dev]'
else
  $PIP install -q -e .
fi
