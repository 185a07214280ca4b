# syntax=docker/dockerfile:1
# One mmserve replica: `docker build -t mmserve .`, then docker-compose.yml runs N of them
# behind nginx (docs/deployment.md). It serves the models baked in from onnx_models/; to serve
# others without a rebuild, mount a folder of <name>/<version>/ models over /app/onnx_models.
#
# Base images: pin them by digest where a registry is reachable, e.g.
#   --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:<digest>
# (`docker buildx imagetools inspect python:3.11-slim-bookworm` prints it). Both stages must
# share one Python install, because the virtual environment links to its interpreter:
# RUNTIME_IMAGE may only differ from PYTHON_IMAGE by lacking pip (scripts/containers.sh builds
# such a pair from Debian's packages when no registry can be reached).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG RUNTIME_IMAGE=${PYTHON_IMAGE}

# --- build: the service's dependencies in a virtual environment (no torch, no dev tools) ----
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv --without-pip /opt/venv
# Exactly the locked versions and files: every wheel is checked against its sha256 (no sdists,
# so nothing is compiled here). deploy/requirements.lock is made by `uv pip compile` (README).
COPY deploy/requirements.lock /tmp/requirements.lock
RUN python -m pip --python /opt/venv/bin/python install --no-compile --no-deps \
      --only-binary=:all: --require-hashes -r /tmp/requirements.lock
# What the server never loads, measured by listing sys.modules after start-up and a warm-up of
# every model (docs/deployment.md): of scipy only scipy.fft, scipy.special and scipy._lib are
# imported; onnxruntime's Python binding carries the runtime itself, so its separate C library
# (for the C API) and its offline tools go; Pillow's AVIF plug-in decodes a format the service
# refuses; tokenizers' Hub client only downloads tokenizers by name. Test suites, headers, C
# sources and type stubs go too (numpy.testing stays: scipy imports it). 530 MB -> 425 MB.
RUN cd /opt/venv/lib/python3*/site-packages \
 && find . -depth -type d \( -name tests -o -name include \) -path './*/*' -exec rm -rf {} + \
 && find . \( -name '*.pyi' -o -name '*.pxd' -o -name '*.c' -o -name '*.h' \) -delete \
 && rm -rf huggingface_hub hf_xet hf_xet-* huggingface_hub-* \
 && rm -rf scipy/optimize scipy/sparse scipy/linalg scipy/stats scipy/io scipy/spatial \
      scipy/interpolate scipy/integrate scipy/signal scipy/ndimage scipy/cluster scipy/odr \
      scipy/constants scipy/fftpack scipy/differentiate scipy/datasets scipy/misc \
 && rm -rf onnxruntime/tools onnxruntime/quantization onnxruntime/transformers \
      onnxruntime/capi/libonnxruntime.so* \
 && rm -f PIL/_avif.*.so pillow.libs/libavif-*
# Byte-code only for what start-up and the first requests import: the code is loaded and every
# model warmed up once here, as root, so Python writes exactly those .pyc files (the root
# filesystem is read-only at run time, where nothing could be cached).
COPY service /app/service
COPY onnx_models /app/onnx_models
RUN cd /app && PYTHONDONTWRITEBYTECODE= /opt/venv/bin/python -m service.healthcheck --load

# --- runtime ---------------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE} AS runtime
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /app mmserve
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    # One BLAS/OpenMP thread per process: parallelism comes from replicas and the service's
    # own thread pools (MMSERVE_RUNTIME__*); more threads would only contend for the cores.
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 \
    MMSERVE_RUNTIME__INTRA_OP_THREADS=1 MMSERVE_RUNTIME__FEATURE_THREADS=2 \
    MMSERVE_HOST=0.0.0.0 MMSERVE_PORT=8000 MMSERVE_WORKERS=1 \
    MMSERVE_MODEL_DIR=/app/onnx_models
WORKDIR /app
# Code and models belong to root and are read-only for the server's user.
COPY --from=build /app /app
USER mmserve
# An image that cannot serve its models fails here rather than at deployment.
RUN python -m service.healthcheck --load
EXPOSE 8000
HEALTHCHECK --interval=5s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-m", "service.healthcheck"]
STOPSIGNAL SIGTERM
CMD ["python", "-m", "service", "serve"]
