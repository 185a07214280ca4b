"""``/docs`` try-it-out sends only what the user filled in: no form field comes pre-filled.

Swagger UI fills each form field with its ``default``, else its ``example(s)``, else the word
"string", and sends that value; an image-only try then also sent the text "seven".
"""

from __future__ import annotations

from typing import Any

import httpx

UPLOAD_OPERATIONS = {
    ("/v1/predict", "post"),
    ("/v1/models/{model}/predict", "post"),
    ("/v1/models/{model}/embed", "post"),
}


def _form_fields(openapi: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    fields = {}
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            if "multipart/form-data" in content:
                schema = content["multipart/form-data"]["schema"]
                fields[(path, method)] = schema["properties"]
    return fields


def test_no_form_field_is_pre_filled(server: str) -> None:
    openapi = httpx.get(f"{server}/openapi.json", timeout=10).json()
    forms = _form_fields(openapi)
    assert set(forms) >= UPLOAD_OPERATIONS
    for operation, properties in forms.items():
        assert set(properties) == {"text", "image", "audio"}, operation
        for name, schema in properties.items():
            assert "default" not in schema, (operation, name)
            assert schema.get("example", "") == "", (operation, name)
            assert all(example == "" for example in schema.get("examples", [])), (operation, name)
            if schema.get("format") != "binary":  # Swagger UI's sample for a bare string
                assert schema.get("examples") == [""] or schema.get("example") == "", name
        assert "seven" in properties["text"]["description"]  # the example, shown as text
