"""Response bodies of the ``/v1`` API, named by role. Examples show up in ``/docs``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.errors import (
    BadRequest,
    ErrorCode,
    InferenceFailed,
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    Overloaded,
    PayloadTooLarge,
    RequestTimeout,
    ServiceError,
    UnsupportedMediaType,
)
from service.manifest import FusionStrategy, Modality, ModalityRecipes, TensorSpec
from service.settings import Limits, ModelBatching


class ErrorDetail(BaseModel):
    code: ErrorCode = Field(description="Stable machine-readable code, e.g. `invalid_input`.")
    message: str
    field: str | None = Field(
        default=None, description="The form field or parameter at fault, when there is one."
    )
    request_id: str | None = None


class ErrorResponse(BaseModel):
    """The one shape of every error answer."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "error": {
                    "code": UnsupportedMediaType.code,
                    "message": "not a supported image; expected one of PNG, JPEG, WEBP, GIF, "
                    "BMP, TIFF",
                    "field": "image",
                    "request_id": "4b1c0f3e9a7d4e51",
                }
            }
        }
    )

    error: ErrorDetail


class LabelProbability(BaseModel):
    label: str
    probability: float = Field(ge=0, le=1)


class TaskPrediction(BaseModel):
    label: str = Field(description="The most probable label.")
    probability: float = Field(ge=0, le=1)
    top_k: list[LabelProbability] = Field(description="The `top_k` most probable labels.")


class OodAssessment(BaseModel):
    """Whether the inputs look like the data the model was trained and tested on."""

    unsure: bool = Field(
        description="True when `score` is above `threshold`: the inputs look unlike the "
        "training data (or are too unclear to read), so the labels in `tasks` are what the "
        "model says but should not be trusted."
    )
    score: float = Field(
        description="Cosine distance of the fused embedding to the nearest label centroid plus "
        "the probability `task` leaves to its other labels; higher is less familiar."
    )
    threshold: float = Field(
        description="The manifest's threshold for this combination of modalities, chosen on "
        "the test split (see the model's `evaluation.ood`)."
    )
    task: str = Field(description="The task whose probabilities enter the score.")


class Timings(BaseModel):
    """Milliseconds spent in each stage of this request."""

    decode_features: float = Field(description="Decoding uploads and computing features.")
    queue: float = Field(description="Waiting for a batch to start.")
    inference: float = Field(description="The ONNX Runtime run of the batch this request was in.")
    total: float = Field(description="From the request's arrival to its answer.")


class _Answer(BaseModel):
    model: str
    version: str
    request_id: str
    modalities: list[Modality] = Field(description="The modalities this request carried.")
    batch_size: int = Field(description="Rows in the ONNX Runtime run that served this request.")
    timings_ms: Timings


class PredictResponse(_Answer):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "model": "digits-xattn",
                "version": "1",
                "request_id": "4b1c0f3e9a7d4e51",
                "modalities": ["image", "audio", "text"],
                "batch_size": 1,
                "tasks": {
                    "digit": {
                        "label": "7",
                        "probability": 0.981,
                        "top_k": [
                            {"label": "7", "probability": 0.981},
                            {"label": "1", "probability": 0.012},
                            {"label": "9", "probability": 0.004},
                        ],
                    },
                    "consistent": {
                        "label": "yes",
                        "probability": 0.97,
                        "top_k": [
                            {"label": "yes", "probability": 0.97},
                            {"label": "no", "probability": 0.03},
                        ],
                    },
                },
                "ood": {"unsure": False, "score": 0.07, "threshold": 0.29, "task": "digit"},
                "contributions": {"image": 0.41, "audio": 0.33, "text": 0.26},
                "timings_ms": {
                    "decode_features": 1.9,
                    "queue": 0.1,
                    "inference": 0.4,
                    "total": 2.7,
                },
            }
        }
    )

    tasks: dict[str, TaskPrediction] = Field(
        description="One prediction per task of the model that applies to this request. A task "
        "with `min_modalities` above the number of modalities sent is absent: the bundled "
        "models' `consistent` (do the modalities show the same digit?) needs at least two, "
        "as one modality always agrees with itself. `GET /v1/models/{model}` lists each "
        "task's `min_modalities`."
    )
    ood: OodAssessment | None = Field(
        default=None,
        description="The out-of-distribution signal: `unsure` is true for inputs unlike the "
        'training data ("hello world" to a digit model). Null when the model\'s manifest has '
        "no `ood` section or none for this combination of modalities.",
    )
    contributions: dict[Modality, float] | None = Field(
        default=None,
        description="How much each modality weighed in the fused answer (absent ones: 0). "
        "Null when the model does not report it.",
    )


class EmbedResponse(_Answer):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "model": "digits-xattn",
                "version": "1",
                "request_id": "4b1c0f3e9a7d4e51",
                "modalities": ["image", "text"],
                "batch_size": 1,
                "dim": 4,
                "embedding": [0.12, -0.5, 0.33, 0.9],
                "timings_ms": {
                    "decode_features": 1.2,
                    "queue": 0.1,
                    "inference": 0.3,
                    "total": 1.8,
                },
            }
        }
    )

    dim: int
    embedding: list[float] = Field(description="The fused representation of the inputs.")


class TaskInfo(BaseModel):
    name: str
    labels: list[str]
    description: str = ""
    min_modalities: int = Field(
        default=1, description="Answered only for requests with at least this many modalities."
    )


class OodSubsetInfo(BaseModel):
    modalities: list[Modality]
    threshold: float


class OodInfo(BaseModel):
    method: str
    task: str
    rule: str
    subsets: list[OodSubsetInfo] = Field(description="The thresholds; centroids omitted.")


class ModelSummary(BaseModel):
    name: str
    version: str = Field(description="The version `name` resolves to (the latest).")
    versions: list[str] = Field(description="Every loaded version, oldest first.")
    default: bool = Field(description="Whether `/v1/predict` serves this model.")
    modalities: list[Modality]
    tasks: list[str]
    fusion: FusionStrategy
    description: str = ""


class ModelFailure(BaseModel):
    name: str
    version: str
    reason: str


class ModelList(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "default_model": "digits-xattn",
                "models": [
                    {
                        "name": "digits-xattn",
                        "version": "1",
                        "versions": ["1"],
                        "default": True,
                        "modalities": ["image", "audio", "text"],
                        "tasks": ["digit", "consistent"],
                        "fusion": "cross_attention",
                        "description": "Digits from any subset of image, speech and text.",
                    }
                ],
                "failed": [
                    {"name": "broken", "version": "1", "reason": "manifest.json: invalid JSON"}
                ],
            }
        }
    )

    default_model: str | None
    models: list[ModelSummary]
    failed: list[ModelFailure] = Field(description="Model folders that could not be loaded.")


class ExecutionDetail(BaseModel):
    """How the model's ONNX Runtime session runs (see README, GPU)."""

    providers_requested: list[str] = Field(description="The providers setting, e.g. ['auto'].")
    providers_in_use: list[str] = Field(description="What the session got, in priority order.")
    fallback_reason: str | None = Field(
        description="Why no accelerator is in use although 'auto' looked for one; null when "
        "every requested provider is in use."
    )
    device_id: int | None = Field(description="The CUDA device, when CUDA is in use.")
    onnxruntime: str = Field(description="The installed onnxruntime distribution(s).")


class ModelDetail(BaseModel):
    name: str
    version: str
    versions: list[str]
    default: bool
    description: str = ""
    fusion: FusionStrategy
    modalities: list[Modality]
    recipes: ModalityRecipes = Field(description="How each modality's upload becomes features.")
    tasks: list[TaskInfo]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    limits: Limits
    execution_providers: list[str] = Field(description="ONNX Runtime providers in use.")
    execution: ExecutionDetail
    batching: ModelBatching
    warmup_s: float
    evaluation: dict[str, Any] = Field(description="The exporter's evaluation summary.")
    ood: OodInfo | None = Field(
        default=None, description="The out-of-distribution check, when the manifest has one."
    )
    provenance: dict[str, Any]


class HealthResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"example": {"status": "ok", "models": {"digits-xattn": "ready"}}}
    )

    status: Literal["ok", "unavailable", "draining"]
    models: dict[str, str] = Field(
        default_factory=dict, description="Per model: `ready`, or why it is not."
    )


class ReadinessResponse(HealthResponse):
    worker_restarts_last_minute: int | None = Field(
        default=None,
        description="Worker processes restarted after dying in the last minute "
        "(`serve --workers N`; absent for one process). More than a few: a crash loop.",
    )


# The error classes documented on routes, each with a description of when it answers and an
# example message and field; its status and code are the class's own.
_DOCUMENTED_ERRORS: tuple[tuple[type[ServiceError], str, str, str | None], ...] = (
    (
        BadRequest,
        "Malformed request: not valid multipart, or the body ends early.",
        "the multipart body ends before its closing boundary",
        None,
    ),
    (
        ModelNotFound,
        "No such model or version.",
        "no model named 'digits'; the models are: digits-concat, digits-xattn",
        None,
    ),
    (
        PayloadTooLarge,
        "A field, or the whole body, is over its limit (`error.field` names the field).",
        "audio is 42.00 s long; the limit is 30 s",
        "audio",
    ),
    (
        UnsupportedMediaType,
        "A file is not a supported image or audio format, judged from its bytes.",
        "not a supported image; expected one of PNG, JPEG, WEBP, GIF, BMP, TIFF",
        "image",
    ),
    (
        InvalidInput,
        "A field is missing, unknown, empty, corrupt or not usable by this model.",
        "unknown field 'video'; the accepted fields are text, image and audio",
        "video",
    ),
    (
        Overloaded,
        "The model's queue is full; retry after `Retry-After` seconds.",
        "model 'digits-xattn' has 256 requests queued (limit 256); retry shortly",
        None,
    ),
    (InferenceFailed, "Inference failed.", "ONNX Runtime failed: ...", None),
    (
        ModelNotReady,
        "The model failed to load, is still loading, or the service is shutting down.",
        "model 'digits-gated' version '1' failed to load: no manifest.json",
        None,
    ),
    (RequestTimeout, "No answer within the request timeout.", "no answer within 30 s", None),
)
_ERRORS = {error[0].status_code: error for error in _DOCUMENTED_ERRORS}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries for these error statuses: ErrorResponse, one example each."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        error, description, message, field = _ERRORS[status]
        example = {
            "error": {
                "code": error.code,
                "message": message,
                "field": field,
                "request_id": "4b1c0f3e9a7d4e51",
            }
        }
        responses[status] = {
            "model": ErrorResponse,
            "description": description,
            "content": {"application/json": {"example": example}},
        }
    return responses
