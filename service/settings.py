"""All configuration in one pydantic-settings object.

Every field can be set by an environment variable with the ``MMSERVE_`` prefix (nested sections
use ``__``: ``MMSERVE_LIMITS__MAX_UPLOAD_BYTES=5000000``) or by the matching ``serve`` flag.
The app receives the object through ``create_app(settings)``; routes get it as a dependency so
tests can build apps with their own settings.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.manifest import BatchingSpec

REPO_ROOT = Path(__file__).resolve().parent.parent
# A decoded second of audio costs rate x channels samples whatever the file's size (a few
# bytes of Opus or FLAC silence can declare 255 channels at 768 kHz). 8 channels is 7.1
# surround, and also the most PyAV (18.1) converts safely: it reads a decoded frame's planes
# past the 8th out of bounds (a segfault), so 8 is the ceiling as well as the default.
# 384 kHz is the highest rate studio recorders write. Also the decoders' defaults.
MAX_AUDIO_CHANNELS = 8
MAX_AUDIO_SAMPLE_RATE = 384_000
# Tensor elements one V2 request may declare (all inputs together). The bundled models take
# ~3,100 per row (16 rows a batch: ~50,000); a million JSON numbers parse in ~90 ms and ~70 MB,
# which is what a request may cost at most before the model's own shape rules apply.
MAX_V2_ELEMENTS = 1_000_000
# The bundled model (onnx_models/) that /v1/predict serves when default_model is unset and it
# is served; README and docs show its answers.
BUNDLED_DEFAULT_MODEL = "digits-xattn"


class Limits(BaseModel):
    """What one request may carry. Anything over a limit is refused with a 4xx naming it."""

    max_upload_bytes: int = Field(default=10_000_000, gt=0, description="Per file part.")
    max_body_bytes: int = Field(default=25_000_000, gt=0, description="Whole request body.")
    # The bundled models take 32x32 images, and a model's input is rarely above 1 Mpx: 8 Mpx
    # keeps ordinary photos (JPEGs decode at up to 1/8 scale first, and the limit applies to
    # what is decoded) while a 6000x6000 PNG of a few KB is refused before decoding. Decoding
    # costs about 25 ms per MB here, so 16 MB bounds one image at ~250 ms and ~70 MB peak.
    max_image_pixels: int = Field(
        default=8_000_000, gt=0, description="Pixels decoded (JPEGs: after draft scaling)."
    )
    max_image_decoded_bytes: int = Field(
        default=16_000_000,
        gt=0,
        description="Decoded size: pixels x bytes per pixel (2 for 16-bit grey, 4 for RGB, "
        "RGBA, CMYK and palette images, 1 for grey).",
    )
    max_audio_seconds: float = Field(default=30.0, gt=0)
    max_audio_channels: int = Field(default=MAX_AUDIO_CHANNELS, gt=0, le=MAX_AUDIO_CHANNELS)
    max_audio_sample_rate: int = Field(default=MAX_AUDIO_SAMPLE_RATE, gt=0, description="Hz.")
    # Each limit above may hold while their product does not: 8 channels at 384 kHz for 30 s
    # is 92 M samples (~1 s and ~400 MB to decode). 6 M keeps 30 s of stereo at 96 kHz (the
    # bundled models use 1 s at 16 kHz) and costs ~70 ms and ~25 MB of float32 at most.
    max_audio_samples: int = Field(
        default=6_000_000, gt=0, description="Decoded samples: channels x rate x seconds."
    )
    max_text_chars: int = Field(default=2_000, gt=0)
    # Sixteen ordinary photos (JPEGs decode at 1/8 scale: ~10 ms each) take a tenth of it;
    # sixteen images at the decode limits (~100-250 ms each) pass it.
    max_request_decode_ms: float = Field(
        default=2_000.0,
        gt=0,
        description="CPU time one request's rows may spend decoding, all rows together (a V2 "
        "batch of encoded files); the rows after it is spent are refused.",
    )
    max_v2_elements: int = Field(
        default=MAX_V2_ELEMENTS,
        gt=0,
        description="Tensor elements one V2 request may declare, all inputs together; also "
        "the most numbers (commas) its JSON header may hold, checked before it is parsed.",
    )
    max_urlencoded_bytes: int | None = Field(
        default=None,
        gt=0,
        description="Whole application/x-www-form-urlencoded body (it carries only text); "
        "None: max_text_chars fully percent-encoded (12 bytes a character) plus 64.",
    )

    @property
    def urlencoded_limit(self) -> int:
        # A urlencoded body carries only ``text`` (files need multipart): at worst 4 UTF-8
        # bytes a character, each written %XX, and the field's name.
        if self.max_urlencoded_bytes is not None:
            return self.max_urlencoded_bytes
        return self.max_text_chars * 12 + 64


class Connections(BaseModel):
    """What one client connection may cost a worker (:mod:`service.connections`).

    Each limit is enforced by the HTTP protocol, before the app sees the request: a client
    that breaks one gets an error naming it (or, past the point an answer can be written,
    its connection closed).
    """

    header_timeout_s: float = Field(
        default=10.0, gt=0, description="The whole request head must arrive within this time."
    )
    body_timeout_s: float = Field(
        default=60.0, gt=0, description="The whole body must arrive within this time."
    )
    body_grace_s: float = Field(
        default=5.0, ge=0, description="Time before min_body_rate is enforced."
    )
    min_body_rate: int = Field(
        default=1_000,
        ge=0,
        description="Bytes/s the body must average after body_grace_s; 0: only body_timeout_s.",
    )
    idle_timeout_s: float = Field(
        default=5.0, gt=0, description="An idle keep-alive connection is closed after this."
    )
    max_connections: int = Field(
        default=2_048,
        gt=0,
        description="Open connections per worker; more are answered 503 and closed at once.",
    )
    max_header_bytes: int = Field(
        default=65_536, gt=0, description="Request line and headers together."
    )
    max_headers: int = Field(default=100, gt=0, description="Header fields per request.")


class BatchingOverrides(BaseModel):
    """The operator's batching, the same for every model.

    ``max_batch_size``, ``max_wait_ms`` and ``gpu_max_batch_size`` override each manifest's
    batching (``None`` keeps the manifest's); the queue and request limits exist only here.
    :meth:`for_model` applies them to one model.
    """

    max_batch_size: int | None = Field(default=None, gt=0)
    max_wait_ms: float | None = Field(default=None, ge=0)
    # Provisional: a GPU run's cost grows little with the batch, so bigger batches pay there;
    # the value is to be measured on a GPU (docs/benchmark.md, GPU).
    gpu_max_batch_size: int | None = Field(
        default=64,
        gt=0,
        description="Rows per run for models on a GPU provider, unless max_batch_size is set; "
        "None keeps the manifest's.",
    )
    max_queue: int = Field(default=256, gt=0, description="Queued rows per model before 429.")
    # Each row's decode is bounded by the limits (~250 ms at worst on one core), so 4 rows keep
    # one request's share of a batch thread under ~1 s before other requests' rows get a turn.
    max_request_rows_per_batch: int = Field(
        default=4,
        gt=0,
        description="Rows of one request (a V2 batch of encoded files) that one batch takes; "
        "the rest wait for the next batches, interleaved with other requests.",
    )
    request_timeout_s: float = Field(default=30.0, gt=0)

    def for_model(self, manifest: BatchingSpec, *, on_gpu: bool) -> ModelBatching:
        gpu_size = self.gpu_max_batch_size if on_gpu else None
        return ModelBatching(
            max_batch_size=self.max_batch_size or gpu_size or manifest.max_batch_size,
            max_wait_ms=manifest.max_wait_ms if self.max_wait_ms is None else self.max_wait_ms,
            max_queue=self.max_queue,
            max_request_rows_per_batch=self.max_request_rows_per_batch,
            request_timeout_s=self.request_timeout_s,
        )


class ModelBatching(BaseModel):
    """How one loaded model batches: its manifest's batching with the overrides applied."""

    model_config = ConfigDict(frozen=True)

    max_batch_size: int
    max_wait_ms: float
    max_queue: int = Field(description="Queued rows before 429.")
    max_request_rows_per_batch: int = Field(description="Rows of one request a batch takes.")
    request_timeout_s: float


class Cuda(BaseModel):
    """ONNX Runtime's CUDA provider options that matter for serving (ONNX Runtime's defaults)."""

    device_id: int = Field(default=0, ge=0, description="GPU index every worker's sessions use.")
    gpu_mem_limit_bytes: int | None = Field(
        default=None, gt=0, description="Cap on the CUDA arena per session; None: no cap."
    )
    arena_extend_strategy: Literal["kNextPowerOfTwo", "kSameAsRequested"] = Field(
        default="kNextPowerOfTwo",
        description="How the arena grows: powers of two (fewer allocations) or exactly.",
    )
    cudnn_conv_algo_search: Literal["EXHAUSTIVE", "HEURISTIC", "DEFAULT"] = Field(
        default="EXHAUSTIVE",
        description="cuDNN convolution algorithm search, paid once per input shape (warm-up).",
    )
    do_copy_in_default_stream: bool = Field(
        default=True, description="Copies on the compute stream (ONNX Runtime: keep True)."
    )
    use_tf32: bool = Field(
        default=True, description="TF32 matrix products on Ampere and newer (faster, ~1e-3)."
    )


class Runtime(BaseModel):
    """ONNX Runtime and thread-pool settings (see README: one thread per pool per worker)."""

    providers: Annotated[list[str], NoDecode] = Field(
        default=["auto"],
        description="Ordered execution providers, or 'auto' for the best available.",
    )
    intra_op_threads: int = Field(default=1, ge=0, description="0 lets ONNX Runtime decide.")
    inter_op_threads: int = Field(default=1, ge=0)
    # One per worker: with one worker per core, a second thread only contends for the GIL.
    feature_threads: int = Field(
        default=1,
        gt=0,
        description="Threads per model and worker that decode, extract features and run batches.",
    )
    cuda: Cuda = Cuda()

    @field_validator("providers", mode="before")
    @classmethod
    def _split_providers(cls, value: object) -> object:
        if isinstance(value, str):
            return [p.strip() for p in value.split(",") if p.strip()]
        return value

    @field_validator("providers")
    @classmethod
    def _check_providers(cls, value: list[str]) -> list[str]:
        # Names are checked against the installed build when sessions open (this module
        # must not import onnxruntime); here only what no build could accept.
        if "auto" in value and value != ["auto"]:
            raise ValueError("'auto' cannot be combined with provider names")
        if len(set(value)) != len(value):
            raise ValueError(f"a provider is named twice: {value}")
        bad = [p for p in value if p != "auto" and not p.endswith("ExecutionProvider")]
        if bad:
            raise ValueError(
                f"unknown provider name(s) {bad}: use 'auto' or ONNX Runtime's names, "
                "e.g. CUDAExecutionProvider,CPUExecutionProvider"
            )
        return value or ["auto"]


class Auth(BaseModel):
    """Who may call the service; the keys themselves are ``api_keys`` / ``api_keys_file``."""

    allow_anonymous: bool = Field(
        default=False,
        description="Serve without keys on a non-loopback address (open access is intended).",
    )
    open_metrics: bool = Field(default=False, description="/metrics without a key.")
    open_docs: bool = Field(
        default=False, description="/docs, /redoc, /openapi.json without a key."
    )
    reload_interval_s: float = Field(
        default=1.0, gt=0, description="How often the key file's mtime is checked."
    )


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


def is_loopback(host: str) -> bool:
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name other than localhost: may resolve anywhere
        return False


class Repository(BaseModel):
    """Noticing model folders added, replaced or removed while serving (:mod:`service.reload`)."""

    poll_interval_s: float = Field(
        default=5.0,
        ge=0,
        description="How often each worker compares the model folders with what it serves; "
        "0 turns it off (then only the V2 repository load/unload change what is served).",
    )
    # Set by ``serve --workers N`` (a folder of its own per replica); unset: one process only.
    control_dir: Path | None = Field(
        default=None,
        description="Folder where the workers of one replica share V2 load/unload requests.",
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MMSERVE_",
        env_nested_delimiter="__",
        extra="ignore",
        # A validation error must not print what it refused: an API key may be in it.
        hide_input_in_errors=True,
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, gt=0)
    model_dir: Path = REPO_ROOT / "onnx_models"
    allow_empty_model_dir: bool = Field(
        default=False,
        description="Start even when model_dir holds no <name>/<version>/manifest.json yet.",
    )
    default_model: str | None = Field(
        default=None,
        description=f"Model served by /v1/predict; unset: {BUNDLED_DEFAULT_MODEL} when it is "
        "served, else the first by name (default_model_among).",
    )
    # Comma-separated in the environment: MMSERVE_CORS_ORIGINS=https://a.example,https://b.example
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Off by default: a log line per request costs 1-3% of a worker's time under load.
    access_log: bool = False
    # Any client can cause a warning: each (logger, level, message) passes this many times per
    # window per worker, the last saying the rest are suppressed (service.log_limits). 0: off.
    log_repeat_limit: int = Field(default=3, ge=0)
    log_repeat_window_s: float = Field(default=60.0, gt=0)
    shutdown_grace_s: float = Field(default=2.0, ge=0)
    drain_timeout_s: float = Field(default=30.0, ge=0)
    limits: Limits = Limits()
    connections: Connections = Connections()
    batching: BatchingOverrides = BatchingOverrides()
    runtime: Runtime = Runtime()
    repository: Repository = Repository()
    # MMSERVE_API_KEYS=alice=<key>,<key>; MMSERVE_API_KEYS_FILE lines: "<name> sha256:<hex>".
    api_keys: SecretStr | None = None
    api_keys_file: Path | None = None
    auth: Auth = Auth()
    # Host header values served (any port); empty: the loopback names when bound to loopback,
    # else any. "*" allows any; "*.example.com" a domain and its subdomains.
    allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("cors_origins", "allowed_hosts", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [o.strip() for o in value.split(",") if o.strip()]
        return value

    def default_model_among(self, served: list[str]) -> str | None:
        """The model ``/v1/predict`` serves, given the names served: the setting (served or
        not: then the replica is not ready), else the bundled default, else the first."""
        if self.default_model:
            return self.default_model
        if BUNDLED_DEFAULT_MODEL in served:
            return BUNDLED_DEFAULT_MODEL
        return min(served, default=None)

    @property
    def keys_configured(self) -> bool:
        return bool(self.api_keys and self.api_keys.get_secret_value()) or bool(self.api_keys_file)

    @property
    def trusted_hosts(self) -> list[str]:
        if self.allowed_hosts:
            return self.allowed_hosts
        return list(LOOPBACK_NAMES) if is_loopback(self.host) else ["*"]

    @model_validator(mode="after")
    def _keys_off_loopback(self) -> Self:
        if is_loopback(self.host) or self.keys_configured or self.auth.allow_anonymous:
            return self
        raise ValueError(
            f"host {self.host!r} is reachable from other machines and no API key is set: set "
            "MMSERVE_API_KEYS or MMSERVE_API_KEYS_FILE, or MMSERVE_AUTH__ALLOW_ANONYMOUS=true "
            "if open access is intended"
        )
