"""service.errors: ErrorCode lists exactly the codes the service answers with.

A class's code is checked against ErrorCode by mypy; these check the other direction (no
listed code that nothing answers with) and that the schema documents the same list.
"""

from __future__ import annotations

from typing import get_args

from service import errors
from service.schemas import ErrorDetail


def _error_classes() -> set[type[errors.ServiceError]]:
    found: set[type[errors.ServiceError]] = set()
    pending = [errors.ServiceError]
    while pending:
        cls = pending.pop()
        found.add(cls)
        pending.extend(cls.__subclasses__())
    return {cls for cls in found if cls.__module__ == errors.__name__}


def test_every_service_error_code_belongs_to_a_class() -> None:
    assert set(get_args(errors.ServiceErrorCode)) == {cls.code for cls in _error_classes()}


def test_codes_are_unique_to_their_class() -> None:
    codes = [cls.code for cls in _error_classes()]
    assert len(codes) == len(set(codes))


def test_error_code_is_both_lists_and_the_schema_documents_it() -> None:
    both = set(get_args(errors.ServiceErrorCode)) | set(get_args(errors.RoutingErrorCode))
    assert set(get_args(errors.ErrorCode)) == both
    schema = ErrorDetail.model_json_schema()["properties"]["code"]
    assert set(schema["enum"]) == both
