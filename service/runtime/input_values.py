"""The rules every input value meets, whichever API carried it.

Multipart uploads (:mod:`service.uploads`) apply them as the body is split, so a bad value is
refused before it is queued; the V2 protocol's BYTES inputs reach them in
:func:`~service.runtime.extract.extract_row` on the batch thread. One wording for both.
"""

from __future__ import annotations

from service.errors import InvalidInput, PayloadTooLarge
from service.manifest import Modality
from service.settings import Limits


def text_value(value: bytes | bytearray | str, limits: Limits) -> str:
    """``value`` as text: UTF-8, at most ``limits.max_text_chars`` characters."""
    if not isinstance(value, str):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput("text is not valid UTF-8", field="text") from exc
    if len(value) > limits.max_text_chars:
        raise PayloadTooLarge(
            f"text is {len(value)} characters; the limit is {limits.max_text_chars}", field="text"
        )
    return value


def file_value(value: bytes | str, modality: Modality) -> bytes:
    """``value`` as a file's bytes: sent as a file, and not empty."""
    if isinstance(value, str):
        raise InvalidInput(
            f"{modality} must be uploaded as a file, not a text field", field=modality
        )
    if not value:
        raise empty_file(modality)
    return value


def empty_file(modality: Modality, filename: str | None = None) -> InvalidInput:
    named = "" if filename is None else f" {filename[:64]!r}"
    return InvalidInput(f"{modality} file{named} is empty", field=modality)
