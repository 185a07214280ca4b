#!/usr/bin/env bash
# mmserve's container images, built daemonless with podman from this machine's own Debian
# mirror (no container registry is needed). Used by the container tests (tests/deploy/) and by
# anyone who wants the image without Docker. Idempotent and cached: the base images are built
# once and kept; the app image is rebuilt only when its inputs (Dockerfile, lock file, service/,
# onnx_models/) change.
#
#   scripts/containers.sh setup   Debian packages (podman, buildah, mmdebstrap, runc, ...) if missing
#   scripts/containers.sh base    setup + the base images: Python (build and runtime) and nginx
#   scripts/containers.sh image   base + the app image (default)
#   scripts/containers.sh check   exit 0 if podman can run a container here, else say why
#
# Environment: MMSERVE_IMAGE (default localhost/mmserve:dev) names the app image;
# MMSERVE_DEBIAN_MIRROR overrides the mirror taken from /etc/apt. podman reads its settings
# from deploy/podman/containers.conf (CONTAINERS_CONF), which this script exports.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
export CONTAINERS_CONF="$ROOT/deploy/podman/containers.conf"

SUITE=bookworm
BUILD_BASE=localhost/mmserve-pybuild:$SUITE    # Python + venv + pip: the Dockerfile's build stage
RUN_BASE=localhost/mmserve-pyrun:$SUITE        # Python alone: the Dockerfile's runtime stage
NGINX_IMAGE=localhost/mmserve-nginx:$SUITE     # Debian's nginx with the official image's templates
APP_IMAGE="${MMSERVE_IMAGE:-localhost/mmserve:dev}"
INPUTS_LABEL=org.mmserve.inputs

log() { echo "containers: $*" >&2; }

setup() {
  local pkgs=(podman buildah mmdebstrap runc fuse-overlayfs slirp4netns uidmap tini
              containernetworking-plugins golang-github-containernetworking-plugin-dnsname)
  local missing=()
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  log "apt-get install ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}

# The deb822 or one-line sources this machine's apt uses, for the Debian suite only (not
# third-party repositories): mmdebstrap takes them as "deb <uri> <suite> <components>" lines.
mirror() {
  if [ -n "${MMSERVE_DEBIAN_MIRROR:-}" ]; then echo "$MMSERVE_DEBIAN_MIRROR"; return; fi
  local uri
  uri=$(grep -hoE '(URIs:|deb) +https?://[^ ]*/debian/?( |$)' /etc/apt/sources.list \
        /etc/apt/sources.list.d/* 2>/dev/null | head -1 | awk '{print $2}')
  echo "${uri:-http://deb.debian.org/debian}"
}

image_exists() { podman image exists "$1"; }

# mmdebstrap makes a root filesystem from Debian packages; podman imports it as an image.
debian_image() {
  local tag="$1" variant="$2" include="$3" purge="${4:-}"
  image_exists "$tag" && return 0
  local tmp m hooks=()
  # shellcheck disable=SC2016  # $1 is mmdebstrap's, expanded by its hook shell
  [ -n "$purge" ] && hooks=(--customize-hook="chroot \"\$1\" dpkg --purge --force-depends $purge >/dev/null 2>&1")
  tmp=$(mktemp -d)
  m=$(mirror)
  log "mmdebstrap $tag from $m ($include)"
  # No documentation, manuals or locales: an image has no one to read them.
  mmdebstrap --quiet --variant="$variant" --include="$include" \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
    "${hooks[@]}" \
    "$SUITE" "$tmp/rootfs.tar" \
    "deb $m $SUITE main" "deb $m $SUITE-updates main" \
    "deb ${m%/debian*}/debian-security $SUITE-security main"
  podman import --quiet "$tmp/rootfs.tar" "$tag" >/dev/null
  rm -rf "$tmp"
}

base() {
  setup
  debian_image "$BUILD_BASE" apt python3,python3-venv,python3-pip,python-is-python3,ca-certificates
  # essential + Python: no apt, no pip. passwd for the Dockerfile's useradd; libstdc++ for the
  # wheels (numpy, onnxruntime). Full perl (46 MB,
  # pulled in by the essential set) is removed: nothing in the image runs it.
  debian_image "$RUN_BASE" essential python3,python-is-python3,passwd,libstdc++6 \
    "perl libperl5.36 perl-modules-5.36"
  if ! image_exists "$NGINX_IMAGE"; then
    debian_image localhost/mmserve-nginx-root:$SUITE essential nginx-light,gettext-base,curl
    log "build $NGINX_IMAGE"
    podman build --quiet --format docker --build-arg BASE=localhost/mmserve-nginx-root:$SUITE \
      -t "$NGINX_IMAGE" deploy/podman/nginx >/dev/null
  fi
}

# A digest of everything the app image is made from: a change to any of it rebuilds.
inputs_digest() {
  {
    sha256sum Dockerfile .dockerignore deploy/requirements.lock
    find service onnx_models -type f -not -path '*/__pycache__/*' -not -name '*.pyc' -print0 \
      | sort -z | xargs -0 sha256sum
  } | sha256sum | cut -c1-32
}

image() {
  base
  local digest have
  digest=$(inputs_digest)
  have=$(podman image inspect --format "{{index .Labels \"$INPUTS_LABEL\"}}" "$APP_IMAGE" \
         2>/dev/null || true)
  if [ "$have" = "$digest" ]; then
    log "$APP_IMAGE is up to date"
    return 0
  fi
  log "build $APP_IMAGE"
  # --format docker keeps HEALTHCHECK (the OCI format has no such field). The host's CA
  # bundle lets pip reach PyPI through a TLS-inspecting proxy, if there is one.
  local ca=()
  [ -f /etc/ssl/certs/ca-certificates.crt ] &&
    ca=(-v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
  podman build --format docker --network host "${ca[@]}" \
    --build-arg PYTHON_IMAGE="$BUILD_BASE" --build-arg RUNTIME_IMAGE="$RUN_BASE" \
    --label "$INPUTS_LABEL=$digest" -t "$APP_IMAGE" .
  podman image prune -f >/dev/null  # the previous build's untagged layers
}

# Can podman run a container here? (Tests skip with this reason when it cannot.)
check() {
  command -v podman >/dev/null || { echo "podman is not installed"; return 1; }
  image_exists "$RUN_BASE" || { echo "no base image: run scripts/containers.sh base"; return 1; }
  local out
  # With a published port, as the tests run them: container networking must work too.
  if ! out=$(podman run --rm --publish 127.0.0.1::8000 "$RUN_BASE" true 2>&1); then
    echo "podman cannot run a container here: ${out##*$'\n'}"
    return 1
  fi
}

case "${1:-image}" in
  setup) setup ;;
  base) base ;;
  image) image ;;
  check) check ;;
  *) echo "usage: $0 [setup|base|image|check]" >&2; exit 2 ;;
esac
