"""What a route's URL may carry: the model's name, its version and the upload routes' queries.

Each rule is declared once, here, and read by FastAPI (validation, the 422 and OpenAPI) and by
the fast path (:mod:`service.routes.fastpath`) alike. A query is a pydantic model: the FastAPI
routes take it whole (``Annotated[PredictQuery, Query()]``), and the fast path validates a
plain query string with the same model, so adding a query parameter means adding a field here.
"""

from __future__ import annotations

from typing import Annotated, Final, TypeVar, cast

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.manifest import NAME_PATTERN

ModelName = Annotated[
    str, Path(description="A model name from `GET /v1/models`.", pattern=NAME_PATTERN)
]
# No Path or Query here: a dependency that takes it reads it from the path on V2's versioned
# routes and from the query elsewhere (FastAPI decides by the route's template).
ModelVersion = Annotated[
    str | None,
    Field(description="A model version; when none is named, the latest.", pattern=NAME_PATTERN),
]

TOP_K_DEFAULT, TOP_K_MAX = 3, 1000


class ModelQuery(BaseModel):
    """The query of every route that resolves a model: which version."""

    model_config = ConfigDict(frozen=True)

    version: ModelVersion = None


class PredictQuery(ModelQuery):
    top_k: int = Field(TOP_K_DEFAULT, ge=1, le=TOP_K_MAX, description="Labels listed per task.")


Q = TypeVar("Q", bound=ModelQuery)
_EMPTY: Final[dict[type[ModelQuery], ModelQuery]] = {}


def plain_query(query_string: bytes, query: type[Q]) -> Q | None:
    """``query`` from a query string the fast path can read as FastAPI would, else ``None``.

    ``None`` for anything that needs Starlette's own parsing (percent-encoding, ``+``, a key
    given twice) or that the model refuses: FastAPI then answers it, with its 422 wording.
    Keys the model does not name are ignored, as FastAPI ignores them.
    """
    if not query_string:
        empty = _EMPTY.get(query)
        if empty is None:  # the defaults, built once per query model (they are frozen)
            empty = _EMPTY[query] = query()
        return cast(Q, empty)
    if b"%" in query_string or b"+" in query_string:
        return None
    values: dict[str, str] = {}
    for part in query_string.decode("latin-1").split("&"):
        key, _, value = part.partition("=")
        if key in values:
            return None
        values[key] = value
    try:
        return query.model_validate(values)
    except ValidationError:
        return None
