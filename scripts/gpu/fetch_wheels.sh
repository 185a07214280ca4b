#!/usr/bin/env bash
# Run HERE (a machine with network), not on the device: gathers what the GPU machine lacks
# into .whl/gpu/ (git-ignored), for scripts/gpu/run_on_device.sh to install there offline.
#
#   scripts/gpu/fetch_wheels.sh                 # cp312 wheels + onnxruntime-gpu, split in parts
#   PART_MIB=45 ORT_WHEEL=path/to.whl scripts/gpu/fetch_wheels.sh   # split a given wheel
#   PYVER=3.11 ORT_SPEC=onnxruntime==1.32.0 PART_MIB=8 scripts/gpu/fetch_wheels.sh  # a rehearsal
#
# Produces:
#   .whl/gpu/wheels/*.whl   the service's dependencies the device image does not have
#   .whl/gpu/bin/hey        the benchmark's load generator (Debian's static Go build)
#   .whl/gpu/ort/ort.tar.xz.partNN + ort.sha256
#                           the onnxruntime-gpu wheel's files as one xz tar (the 244 MiB wheel
#                           is 209 MiB so), cut in PART_MIB pieces: a device call carries at most
#                           64 MiB with the working tree, so the pieces travel one call each
#                           (docs/gpu.md says how) and run_on_device.sh joins them.
set -euo pipefail
cd "$(dirname "$0")/../.."
DEST=${DEST:-.whl/gpu}
PYVER=${PYVER:-3.12}
ORT_SPEC=${ORT_SPEC:-onnxruntime-gpu==1.31.1}
PART_MIB=${PART_MIB:-45}
PIP="python3 -m pip"
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
           --platform manylinux1_x86_64)

# Absent from the device image (docs/gpu.md); pinned to what the service was tested with.
# Everything else the service imports (numpy, scipy, pillow, tokenizers, prometheus-client,
# threadpoolctl, numba, anyio, h11, click, uvloop, httpx, pytest...) is already there.
WHEELS=(
  fastapi==0.165.0 starlette==1.10.0 fastapi-offline==1.7.7
  pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
  pydantic-settings==2.16.3 python-dotenv==1.2.4 python-multipart==0.0.34
  uvicorn==0.55.0 httptools==0.9.0
  librosa==0.11.0 audioread==3.1.0 decorator==5.3.1 pooch==1.9.0 platformdirs==4.14.9
  soxr==1.1.0 soundfile==0.14.0 cffi==2.1.1 pycparser==3.12
)

rm -rf "$DEST/wheels"  # one version of each package: two stop the install
mkdir -p "$DEST/wheels" "$DEST/bin" "$DEST/ort"
$PIP download --quiet --no-deps --only-binary=:all: --python-version "$PYVER" \
  --implementation cp "${PLATFORMS[@]}" -d "$DEST/wheels" "${WHEELS[@]}"
cp "$(command -v hey)" "$DEST/bin/hey"

ort_wheel=${ORT_WHEEL:-}
if [ -z "$ort_wheel" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  $PIP download --quiet --no-deps --only-binary=:all: --python-version "$PYVER" \
    --implementation cp "${PLATFORMS[@]}" -d "$tmp" "$ORT_SPEC"
  ort_wheel=$(ls "$tmp"/*.whl)
fi
unpacked=$(mktemp -d)
python3 -m zipfile -e "$ort_wheel" "$unpacked"
rm -f "$DEST"/ort/ort.tar.xz.part* "$DEST/ort/ort.sha256"
# A wheel is a zip of the files to install: the tar holds them as they will lie in --target.
tar -C "$unpacked" -cf - . | xz -T0 -6 | split -b "${PART_MIB}M" -d -a 2 - "$DEST/ort/ort.tar.xz.part"
rm -rf "$unpacked"
(cd "$DEST/ort" && cat ort.tar.xz.part* | sha256sum | cut -d' ' -f1 > ort.sha256)
basename "$ort_wheel" > "$DEST/ort/wheel-name"
ls -la "$DEST"/wheels "$DEST"/bin "$DEST"/ort
du -sh "$DEST"/wheels "$DEST"/bin "$DEST"/ort
