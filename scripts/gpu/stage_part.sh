#!/usr/bin/env bash
# On the device, in each call that carries one part of onnxruntime-gpu (docs/gpu.md): keep it
# in $STAGE, outside the working tree, where the next calls on the same warm machine find it.
set -euo pipefail
cd "$(dirname "$0")/../.."
STAGE=${STAGE:-/tmp/mmserve-gpu-stage}
mkdir -p "$STAGE"
cp -v .whl/gpu/ort/* "$STAGE"/
ls -la "$STAGE"
