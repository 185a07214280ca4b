"""All configuration in one pydantic-settings object.

Every field can be set by an environment variable with the ``MMSERVE_`` prefix (nested sections
use ``__``: ``MMSERVE_LIMITS__MAX_UPLOAD_BYTES=5000000``) or by the matching ``serve`` flag.
The app receives the object through ``create_app(settings)``; routes get it as a dependency so
tests can build apps with their own settings.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Limits(BaseModel):
    """What one request may carry. Anything over a limit is refused with a 4xx naming it."""

    max_upload_bytes: int = Field(default=10_000_000, gt=0, description="Per file part.")
    max_body_bytes: int = Field(default=25_000_000, gt=0, description="Whole request body.")
    max_image_pixels: int = Field(default=40_000_000, gt=0)
    max_audio_seconds: float = Field(default=30.0, gt=0)
    max_text_chars: int = Field(default=2_000, gt=0)


class Batching(BaseModel):
    """Overrides of each model's manifest batching; ``None`` keeps the manifest's value."""

    max_batch_size: int | None = Field(default=None, gt=0)
    max_wait_ms: float | None = Field(default=None, ge=0)
    max_queue: int = Field(default=256, gt=0, description="Queued rows per model before 429.")
    request_timeout_s: float = Field(default=30.0, gt=0)


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

    @field_validator("providers", mode="before")
    @classmethod
    def _split_providers(cls, value: object) -> object:
        if isinstance(value, str):
            return [p.strip() for p in value.split(",") if p.strip()]
        return value


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
        env_prefix="MMSERVE_", env_nested_delimiter="__", extra="ignore"
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, gt=0)
    model_dir: Path = REPO_ROOT / "onnx_models"
    default_model: str | None = Field(
        default=None, description="Model served by /v1/predict; default: the first by name."
    )
    # Comma-separated in the environment: MMSERVE_CORS_ORIGINS=https://a.example,https://b.example
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Off by default: a log line per request costs 1-3% of a worker's time under load.
    access_log: bool = False
    shutdown_grace_s: float = Field(default=2.0, ge=0)
    drain_timeout_s: float = Field(default=30.0, ge=0)
    limits: Limits = Limits()
    batching: Batching = Batching()
    runtime: Runtime = Runtime()
    repository: Repository = Repository()

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [o.strip() for o in value.split(",") if o.strip()]
        return value
