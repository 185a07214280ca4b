# syntax=docker/dockerfile:1
# One mmserve replica: `docker build -t mmserve .`, then docker-compose.yml runs N of them
# behind nginx (docs/deployment.md). It serves the models baked in from onnx_models/; to serve
# others without a rebuild, mount a folder of <name>/<version>/ models over /app/onnx_models.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: the service's dependencies in a virtual environment (no torch, no dev tools) ----
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
COPY pyproject.toml /tmp/pyproject.toml
# Only [project.dependencies]: the code itself is copied into /app below, so that the folder
# layout (and the default model folder next to service/) is the repository's.
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('/tmp/pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && /opt/venv/bin/pip install -r /tmp/requirements.txt

# --- runtime ---------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /app mmserve
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    # One BLAS/OpenMP thread per process: parallelism comes from replicas and the service's
    # own thread pools (MMSERVE_RUNTIME__*); more threads would only contend for the cores.
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 \
    MMSERVE_RUNTIME__INTRA_OP_THREADS=1 MMSERVE_RUNTIME__FEATURE_THREADS=2 \
    # librosa imports numba; a JIT cache made at build time stays in the image.
    NUMBA_CACHE_DIR=/app/.cache/numba \
    MMSERVE_HOST=0.0.0.0 MMSERVE_PORT=8000 MMSERVE_WORKERS=1 \
    MMSERVE_MODEL_DIR=/app/onnx_models
WORKDIR /app
# Code and models belong to root and are read-only for the server's user.
COPY service ./service
COPY onnx_models ./onnx_models
RUN python -m compileall -q service \
 && mkdir -p /app/.cache && chown mmserve:mmserve /app/.cache
USER mmserve
# Warm-up at build, as the server's user: load and warm up every model once. An image that
# cannot serve its models fails here rather than at deployment, and what start-up caches on
# disk is in the image.
RUN python -m service.healthcheck --load
EXPOSE 8000
HEALTHCHECK --interval=5s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-m", "service.healthcheck"]
STOPSIGNAL SIGTERM
CMD ["python", "-m", "service", "serve"]
