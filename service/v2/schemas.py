"""JSON bodies of the protocol, named by role.

The inference request header is validated with these models (strictly: a shape of ``"3"`` is
refused, not converted); the response bodies document ``/docs``. Extra fields in requests are
ignored, as the protocol allows extensions to add their own.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

Parameters = dict[str, Any]
Dimension = Annotated[int, Field(ge=0)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)


class RequestInput(_Request):
    name: str
    shape: list[Dimension]
    datatype: str
    parameters: Parameters = Field(default_factory=dict)
    data: Any = None


class RequestOutput(_Request):
    name: str
    parameters: Parameters = Field(default_factory=dict)


class InferenceRequestHeader(_Request):
    id: str | None = None
    parameters: Parameters = Field(default_factory=dict)
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class MetadataTensor(BaseModel):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1 marks a dynamic axis (the batch axis first).")
    parameters: dict[str, str | int | bool] = Field(default_factory=dict)


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]
    parameters: dict[str, str | int | bool] = Field(default_factory=dict)


class Liveness(BaseModel):
    live: bool


class Readiness(BaseModel):
    ready: bool


class ModelReadiness(BaseModel):
    name: str
    version: str
    ready: bool


class ErrorBody(BaseModel):
    """The one error shape of the ``/v2`` routes."""

    error: str


class RepositoryIndexRequest(_Request):
    ready: bool = Field(default=False, description="Only the versions ready for inference.")


class RepositoryModelRequest(_Request):
    """The body of ``load`` and ``unload``; Triton's ``unload_dependents`` has no effect."""

    parameters: Parameters = Field(default_factory=dict)


class RepositoryIndexEntry(BaseModel):
    name: str
    version: str
    state: str = Field(description="READY, LOADING, UNLOADING or UNAVAILABLE.")
    reason: str = Field(description="Why not READY: unloaded, the load failure, ...")
