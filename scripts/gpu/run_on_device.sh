#!/usr/bin/env bash
# The GPU check, end to end, in one command on the device (docs/gpu.md):
#
#   scripts/gpu/run_on_device.sh              # on the H200: everything, CUDA vs CPU
#   scripts/gpu/run_on_device.sh --cpu-only   # anywhere: the same steps with the CPU standing
#                                             # in for CUDA and tiny sizes (a rehearsal)
#   STEPS="parity service" scripts/gpu/run_on_device.sh   # a subset of the steps
#
# Steps: install (the wheels of .whl/gpu/ or $WHL, onnxruntime-gpu joined from its parts), env,
# parity (CUDA vs CPU, every bundled model and modality subset), service (serve with CUDA,
# predict), pytest (tests/gpu + tests/service/test_providers.py), bench (python -m service
# bench, CUDA then CPU, 16 workers, c=32/128), big (a ViT-B/32-size CLIP exported here and
# timed on CUDA vs CPU at batch 1-256), then report.md. A failed step is logged and the next
# one runs: one call gives every result it can.
#
# Results go to $OUT (the device tool's folder; default artifacts/gpu-run): run.log,
# checks.json, parity.json, service.json, bench-cuda.json, bench-cpu.json, big-model.json,
# report.md: 8 files, as many as the device tool brings back.
set -uo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
CPU_ONLY=0
[ "${1:-}" = "--cpu-only" ] && CPU_ONLY=1
OUT=${OUT:-$REPO/artifacts/gpu-run}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
SITE=${SITE:-/tmp/mmserve-site}
STAGE=${STAGE:-/tmp/mmserve-gpu-stage}   # parts carried by earlier calls (docs/gpu.md)
WHL=${WHL:-.whl/gpu}                     # what scripts/gpu/fetch_wheels.sh gathered
STEPS=${STEPS:-install env parity service pytest bench big}
# The device tool stops a command at 600 s: steps are cut to end before this, and the results
# so far (checks.json, report.md) are rewritten after every step, so a cut run still reports.
DEADLINE_S=${DEADLINE_S:-570}
export PYTHONUNBUFFERED=1

if [ $CPU_ONLY = 1 ]; then
  ACCEL=CPUExecutionProvider
  PROVIDERS=CPUExecutionProvider
  BIG_ARGS=(--size tiny --batches 1,2,4 --repeats 2 --budget-s 10)
  BENCH_ARGS=(--quick --workers 1 --concurrency 2,4 --soak-requests 100)
else
  ACCEL=CUDAExecutionProvider
  PROVIDERS=CUDAExecutionProvider,CPUExecutionProvider
  BIG_ARGS=(--size base --batches 1,2,4,8,16,32,64,128,256 --repeats 5 --budget-s 45)
  BENCH_ARGS=(--workers 16 --concurrency 32,128 --load-seconds 4 --soak-requests 2000)
fi

exec > >(tee -a "$OUT/run.log") 2>&1
log() { echo "[gpu $(date +%H:%M:%S)] $*"; }
declare -A STATUS
ENV_JSON=$(mktemp)  # folded into checks.json: the device tool brings back at most 8 files
summarize() {  # checks.json (step statuses + env facts) and report.md, from what exists so far
  {
    echo "{"
    echo "  \"cpu_only\": $CPU_ONLY, \"accelerator\": \"$ACCEL\", \"elapsed_s\": $SECONDS,"
    for name in "${!STATUS[@]}"; do echo "  \"step_$name\": \"${STATUS[$name]}\","; done
    echo "  \"env\": $(cat "$ENV_JSON" 2>/dev/null || echo null)"
    echo "}"
  } > "$OUT/checks.json"
  "$PY" -m scripts.gpu.report "$OUT" 2>/dev/null || true
}
step() {  # step NAME LIMIT_S COMMAND...: run it within the deadline, record its exit status
  local name=$1 limit=$2
  shift 2
  case " $STEPS " in *" ${name%%_*} "*) ;; *) STATUS[$name]=skipped; return 0 ;; esac
  local left=$((DEADLINE_S - SECONDS - 15))
  if [ $left -lt 20 ]; then
    STATUS[$name]="not run: no time left"
    log "step $name: no time left"
    return 0
  fi
  [ $left -lt "$limit" ] && limit=$left
  log "step $name (limit ${limit} s): $*"
  local start=$SECONDS
  if declare -F "$1" >/dev/null; then "$@"; else timeout --kill-after=5 "$limit" "$@"; fi
  local rc=$?
  STATUS[$name]="exit $rc in $((SECONDS - start)) s"
  log "step $name: ${STATUS[$name]}"
  summarize
  return $rc
}

install() {
  mkdir -p "$SITE"
  [ -f $WHL/bin/hey ] && chmod +x $WHL/bin/hey  # the copy may drop the mode bits
  if compgen -G "$WHL/wheels/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$SITE" "$WHL"/wheels/*.whl || return 1
  fi
  # Parts carried by this call (.whl/gpu/ort) or kept from earlier calls (the stage).
  local parts=() name
  for name in $( (ls "$WHL/ort"; ls "$STAGE") 2>/dev/null | grep '^ort.tar.xz.part' | sort -u); do
    if [ -f "$WHL/ort/$name" ]; then parts+=("$WHL/ort/$name"); else parts+=("$STAGE/$name"); fi
  done
  if [ ${#parts[@]} -gt 0 ]; then
    local want got
    want=$(cat "$WHL/ort/ort.sha256" "$STAGE"/ort.sha256 2>/dev/null | head -1)
    got=$(cat "${parts[@]}" | sha256sum | cut -d' ' -f1)
    if [ "$want" != "$got" ]; then
      log "onnxruntime parts incomplete or damaged: sha256 $got, want $want; parts: ${parts[*]}"
      return 1
    fi
    # Python's lzma and tarfile: the device image may have no xz.
    cat "${parts[@]}" | "$PY" -c 'import sys, tarfile
with tarfile.open(fileobj=sys.stdin.buffer, mode="r|xz") as tar:
    tar.extractall(sys.argv[1], filter="data")' "$SITE" || return 1
    log "installed $(cat "$WHL/ort/wheel-name" "$STAGE"/wheel-name 2>/dev/null | head -1)"
  elif [ $CPU_ONLY = 0 ]; then
    log "no onnxruntime-gpu parts in $WHL/ort or $STAGE (scripts/gpu/fetch_wheels.sh)"
  fi
}

export PYTHONPATH="$SITE:$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PATH="$(cd "$WHL" 2>/dev/null && pwd)/bin:$PATH"
step install 180 install

env_facts() {
  "$PY" - "$ENV_JSON" <<'EOF'
import json, os, platform, subprocess, sys
import onnxruntime as ort
from service.runtime import providers as ep
facts = {
    "python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count(),
    "onnxruntime": ort.__version__, "onnxruntime_file": ort.__file__,
    "distributions": ep.installed_distributions(),
    "available_providers": ort.get_available_providers(),
}
try:
    import torch
    facts["torch"] = torch.__version__
    facts["torch_cuda"] = torch.version.cuda
    facts["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
except Exception as exc:  # no torch: the facts say so
    facts["torch"] = repr(exc)
smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                      "--format=csv,noheader"], capture_output=True, text=True) \
    if any(os.access(os.path.join(p, "nvidia-smi"), os.X_OK)
           for p in os.environ["PATH"].split(":")) else None
facts["nvidia_smi"] = smi.stdout.strip() if smi else None
json.dump(facts, open(sys.argv[1], "w"), indent=2)
print(json.dumps(facts, indent=2))
EOF
}
step env 60 env_facts

step parity 180 "$PY" -m scripts.gpu.parity --providers "$PROVIDERS" --out "$OUT/parity.json"

step service 120 "$PY" -m scripts.gpu.service_check --providers "$PROVIDERS" \
  --out "$OUT/service.json"

# -W default: the device's own package versions may warn where ours do not (pyproject makes
# warnings errors); -p no:cacheprovider: nothing written into the tree.
step pytest 180 "$PY" -m pytest tests/gpu tests/service/test_providers.py -q -rs \
  -p no:cacheprovider -W default

# One model in the bench's repository: every worker warms every model up at start.
ONE=$(mktemp -d)/models
mkdir -p "$ONE" && ln -s "$REPO/onnx_models/digits-xattn" "$ONE/digits-xattn"
step bench_accel 240 "$PY" -m service bench --json --no-baseline --model-dir "$ONE" \
  --providers "$PROVIDERS" "${BENCH_ARGS[@]}" --out "$OUT/bench-cuda.json"
if [ $CPU_ONLY = 0 ]; then
  step bench_cpu 240 "$PY" -m service bench --json --no-baseline --model-dir "$ONE" \
    --providers CPUExecutionProvider "${BENCH_ARGS[@]}" --out "$OUT/bench-cpu.json"
fi

BIG_PROVIDERS=CPUExecutionProvider
[ $CPU_ONLY = 0 ] && BIG_PROVIDERS=CUDAExecutionProvider,CPUExecutionProvider
step big 300 "$PY" -m scripts.gpu.big_model "${BIG_ARGS[@]}" --providers "$BIG_PROVIDERS" \
  --out-dir "$(mktemp -d)/clip" --json "$OUT/big-model.json"

summarize
log "report: $OUT/report.md"
ls -la "$OUT"
