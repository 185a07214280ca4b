#!/usr/bin/env bash
# Installs what mmserve needs on a fresh Debian/Ubuntu machine. Idempotent: a second run only checks.
#   scripts/setup.sh serve   -> a virtual environment with the service's Python dependencies
#   scripts/setup.sh dev     -> + torch (CPU build), the export/dev extras and the Debian tools
#                               the tests use
#
# Everything Python goes into one virtual environment, never into the system's Python (Debian
# and Ubuntu refuse that, PEP 668): $VENV when set, else the active one ($VIRTUAL_ENV), else
# .venv in the repository root. The Makefile runs every later command with that environment's
# python. Debian packages are installed with apt-get (through sudo when not root).
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-dev}"
VENV="${VENV:-${VIRTUAL_ENV:-$PWD/.venv}}"
PY="$VENV/bin/python"
TORCH_VERSION=2.13.0
TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {  # apt_install PACKAGE... (only those not installed yet)
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  echo "setup: apt-get install ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

make_venv() {
  [ -x "$PY" ] && return 0
  command -v python3 >/dev/null || apt_install python3
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "setup: mmserve needs Python 3.11 or newer; python3 is $(python3 -V)" >&2; exit 1; }
  # The interpreter itself, not a link to it that may go away (the venv links to what ran it).
  local base
  base=$(python3 -c 'import os, sys; print(os.path.realpath(sys.executable))')
  echo "setup: creating the virtual environment $VENV with $base"
  if ! "$base" -m venv "$VENV" >/dev/null 2>&1; then
    # Debian and Ubuntu ship venv's pip bootstrap (ensurepip) separately, in python3-venv.
    rm -rf "$VENV"
    apt_install python3-venv
    "$base" -m venv "$VENV"
  fi
}

pip_install() {
  "$PY" -m pip install -q "$@"
}

install_torch_cpu() {
  "$PY" -c "import torch" 2>/dev/null && return 0
  # PyPI's torch wheel for Linux is the CUDA build (several GB of nvidia-* wheels); the CPU
  # build lives on PyTorch's own index. Where that index cannot be reached, pip's configured
  # indexes are used (on a machine with a local CPU wheel, pip finds it there).
  if "$PY" -c "import urllib.request as u; u.urlopen('$TORCH_CPU_INDEX/torch/', timeout=5)" \
    >/dev/null 2>&1; then
    echo "setup: torch==$TORCH_VERSION (CPU build) from $TORCH_CPU_INDEX"
    pip_install "torch==$TORCH_VERSION" --index-url "$TORCH_CPU_INDEX"
  else
    echo "setup: $TORCH_CPU_INDEX cannot be reached; torch==$TORCH_VERSION from pip's configured index"
    pip_install "torch==$TORCH_VERSION"
  fi
}

installed() {  # installed serve|dev: pip already ran for this checkout and this pyproject.toml
  [ "$(cat "$VENV/.mmserve-$1" 2>/dev/null)" = "$(stamp)" ]
}
stamp() { echo "$PWD $(sha256sum pyproject.toml | cut -d' ' -f1)"; }

case "$what" in
  serve | dev) ;;
  *) echo "usage: scripts/setup.sh serve|dev" >&2; exit 2 ;;
esac
make_venv
if [ "$what" = "dev" ]; then
  # espeak-ng: spoken test audio (and the README's sample clip); nginx: load-balancer tests;
  # hey: benchmark load generator; chromium: browser test of the web page; sox: audio
  # conversions in tests; curl: the documentation's commands.
  apt_install espeak-ng nginx hey chromium sox curl
  # podman, buildah, mmdebstrap and the base images of the container tests
  # (tests/deploy/test_containers.py); where podman cannot run, those tests skip with the reason.
  scripts/containers.sh base || echo "setup: container base images not built; the container tests will skip"
  install_torch_cpu
  installed dev || { pip_install -e '.[dev]' && stamp >"$VENV/.mmserve-dev"; }
else
  installed serve || installed dev || { pip_install -e . && stamp >"$VENV/.mmserve-serve"; }
fi
