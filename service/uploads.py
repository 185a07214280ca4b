"""One request's multipart body -> ``{modality: bytes | str}``, limits enforced as it streams.

Starlette's own form parser spools files to temporary files without a size limit and reports
limits without naming the field, so the request body is parsed here with ``python_multipart``
directly, chunk by chunk as it arrives:

- only the fields ``text``, ``image`` and ``audio`` are accepted, each at most once;
- a part is refused (413, naming it) as soon as it passes ``limits.max_upload_bytes``, and the
  body as soon as it passes ``limits.max_body_bytes`` (at once when Content-Length says so);
- ``text`` must be UTF-8 and at most ``limits.max_text_chars`` characters;
- as in HTML forms, a part with no bytes and no file name (an input left empty) counts as not
  sent, while a named file with no bytes is refused as empty; when nothing else was sent the
  error names the empty field (``curl -F text=``) rather than asking for fields;
- ``image`` and ``audio`` sent as a typed value instead of a file (``curl -F image=digit.png``,
  no ``@``: curl sends the file *name* as text) are refused with the ``@`` spelled out.

Nothing is read from the server's file system: uploads are bytes, whatever their file names.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MAX_BOUNDARY_LENGTH, MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from service.disconnect import timed_out
from service.errors import BadRequest, InvalidInput, PayloadTooLarge, UnsupportedMediaType
from service.manifest import Modality
from service.runtime.input_values import empty_file, text_value
from service.settings import Limits

if TYPE_CHECKING:  # a TypedDict that exists for type checkers only
    from python_multipart.multipart import MultipartCallbacks

# python_multipart logs a warning for every malformed body before raising; the client gets a
# 400 with the reason, so the log line would only let any client flood the server's log.
logging.getLogger("python_multipart.multipart").setLevel(logging.ERROR)

FIELDS: Final[tuple[Modality, ...]] = ("text", "image", "audio")
URLENCODED: Final = b"application/x-www-form-urlencoded"
Uploads = dict[Modality, bytes | str]
PlainPart = tuple[str, str | None, bytes]  # (field name, file name, data)
# Bodies up to this size (by Content-Length) are read whole and split without the streaming
# parser when they have the plain shape (see split_plain_multipart).
WHOLE_BODY_MAX_BYTES: Final = 1 << 20
_DISPOSITION: Final = re.compile(rb'form-data((?:\s*;\s*[A-Za-z]+="[^"\\]*")*)\s*;?', re.IGNORECASE)
_PARAMETER: Final = re.compile(rb'([A-Za-z]+)="([^"\\]*)"')
# UTF-8 needs at most 4 bytes per character: a longer text part cannot be within the limit.
_UTF8_MAX_BYTES = 4


class _Part:
    def __init__(self, name: Modality, filename: str | None) -> None:
        self.name = name
        self.filename = filename
        self.data = bytearray()


class _Collector:
    """python_multipart callbacks that gather the allowed parts and enforce the limits."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.parts: dict[Modality, _Part] = {}
        self._current: _Part | None = None
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._disposition = b""
        self.complete = False

    def on_part_begin(self) -> None:
        self._current = None
        self._disposition = b""

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if bytes(self._header_name).lower() == b"content-disposition":
            self._disposition = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if b"name" not in options:
            raise BadRequest("a multipart part has no Content-Disposition name")
        filename = options.get(b"filename")
        self.begin(
            options[b"name"].decode("utf-8", "replace"),
            None if filename is None else filename.decode("utf-8", "replace"),
        )

    def begin(self, name: str, filename: str | None) -> None:
        if name not in FIELDS:
            raise InvalidInput(
                f"unknown field {name[:64]!r}; the accepted fields are text, image and audio",
                field=name[:64],
            )
        modality: Modality = name
        if modality in self.parts:
            raise InvalidInput(f"field {name!r} was sent more than once", field=name)
        self.parts[modality] = self._current = _Part(modality, filename)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self._current
        assert part is not None  # python_multipart calls on_headers_finished first
        part.data += data[start:end]
        limit = self._part_limit(part.name)
        if len(part.data) > limit:
            raise PayloadTooLarge(f"{part.name} is larger than {limit} bytes", field=part.name)

    def on_part_end(self) -> None:
        self._current = None

    def on_end(self) -> None:
        self.complete = True

    def _part_limit(self, name: Modality) -> int:
        if name == "text":
            return self.limits.max_text_chars * _UTF8_MAX_BYTES
        return self.limits.max_upload_bytes

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_end": self.on_end,
            "on_part_begin": self.on_part_begin,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
        }


def _media_type(content_type: str | None) -> tuple[bytes, dict[bytes, bytes]]:
    media_type, params = parse_options_header(content_type or "")
    if media_type not in (b"multipart/form-data", URLENCODED):
        shown = f"not {media_type.decode('latin-1')}" if media_type else "with a Content-Type"
        raise UnsupportedMediaType(f"send the inputs as multipart/form-data, {shown}")
    return media_type, params


def _check_declared_length(request: Request, limits: Limits) -> None:
    declared = request.headers.get("content-length")
    if declared is None:
        return
    if not declared.isdigit():
        raise BadRequest("Content-Length is not a number")
    if int(declared) > limits.max_body_bytes:
        raise PayloadTooLarge(
            f"the request body is {declared} bytes; the limit is {limits.max_body_bytes}"
        )


async def _limited(request: Request, limit: int) -> AsyncIterator[bytes]:
    """The body's chunks; over ``limit`` bytes 413, a body that ends early 400 (or 408)."""
    total = 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
            yield chunk
    except ClientDisconnect as exc:
        # timed_out: the server closed a client too slow to send it (service.connections)
        raise timed_out(request.scope) or BadRequest(
            "the client disconnected before the body was complete"
        ) from exc


_SEND_HINT: Final = "send text, an image or a sound, e.g. curl -F text=seven -F image=@digit.png"
# Every image and audio format the service reads starts with bytes that are not printable text
# (PNG \x89, JPEG \xff, RIFF and FLAC sizes with NULs...), so printable text is never a file.
_TYPED_VALUE_MAX_CHARS: Final = 1024
_EXAMPLE_FILES: Final[dict[str, str]] = {"image": "digit.png", "audio": "seven.wav"}


def _finish(parts: dict[Modality, _Part], limits: Limits) -> Uploads:
    uploads: Uploads = {}
    for name, part in parts.items():
        if not part.data:
            if part.filename:
                raise empty_file(name, part.filename)
            continue  # an HTML form's empty input: not sent
        if name == "text":
            uploads[name] = text_value(part.data, limits)
        else:
            uploads[name] = _file_data(name, part)
    if not uploads:
        if parts:  # only empty fields: say which, not that none was sent
            name = next(iter(parts))
            raise InvalidInput(f"the {name} field is empty; {_SEND_HINT}", field=name)
        raise InvalidInput(f"no fields were sent; {_SEND_HINT}")
    return uploads


def not_a_file_message(name: str, value: str | None = None) -> str:
    """The error for ``curl -F image=digit.png``: the file's name was sent instead of the file."""
    example = _EXAMPLE_FILES.get(name, "file")
    if value is None:
        return f"{name} must be a file upload in a multipart/form-data body; {_curl(name, example)}"
    if value and len(value) <= 64 and not any(c.isspace() for c in value):
        example = value
    return f"{name} must be a file upload, not the text {value[:64]!r}; {_curl(name, example)}"


def wrong_method_message(method: str, url: str, docs_url: str) -> str:
    """The 405 for ``GET /v1/predict``: how to send inputs to an upload route instead."""
    return (
        f"{method} is not allowed here: POST a multipart/form-data body with any of the fields "
        f"text, image and audio, e.g. curl -F text=seven -F image=@digit.png {url} "
        f"(or try it in a browser at {docs_url})"
    )


def _curl(name: str, file: str) -> str:
    return f"with curl use -F {name}=@{file}"


def _file_data(name: Modality, part: _Part) -> bytes:
    data = bytes(part.data)
    if part.filename is None and len(data) <= _TYPED_VALUE_MAX_CHARS:
        try:
            value = data.decode("utf-8")
        except UnicodeDecodeError:
            return data
        if value.isprintable():
            raise InvalidInput(not_a_file_message(name, value), field=name)
    return data


async def _read_urlencoded(request: Request, limits: Limits) -> Uploads:
    """``curl -d text=...``: a text-only request needs no multipart.

    Such a body carries only text, so it is capped at ``limits.urlencoded_limit`` bytes (a few
    KB), refused as soon as it passes that and never parsed when larger: a 24 MB ``a=&a=&...``
    would otherwise cost seconds of parsing on the event loop.
    """
    limit = limits.urlencoded_limit
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(_urlencoded_too_large(f"is {declared} bytes", limit))
    body = bytearray()
    async for chunk in _limited(request, limits.max_body_bytes):
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(_urlencoded_too_large(f"is larger than {limit} bytes", limit))
    collector = _Collector(limits)
    # latin-1 maps every byte to one character and back, so percent-decoding yields the raw
    # bytes; UTF-8 is checked later, field by field, with an error that names the field.
    # (parse_qsl on bytes re-encodes its result as ASCII and raised on any non-ASCII text.)
    pairs = parse_qsl(bytes(body).decode("latin-1"), keep_blank_values=True, encoding="latin-1")
    for raw_name, raw_value in pairs:
        name = raw_name.encode("latin-1").decode("utf-8", "replace")
        value = raw_value.encode("latin-1")
        collector.begin(name, None)
        if name != "text":  # curl -d image=digit.png: a file needs multipart
            raise InvalidInput(not_a_file_message(name), field=name)
        collector.on_part_data(value, 0, len(value))
    return _finish(collector.parts, limits)


def _urlencoded_too_large(size: str, limit: int) -> str:
    return (
        f"the urlencoded body {size}; it carries only text, and the limit "
        f"(limits.max_urlencoded_bytes) is {limit}: send files as multipart/form-data"
    )


def split_plain_multipart(body: bytes, boundary: bytes) -> list[PlainPart] | None:
    """``(name, filename, data)`` per part if ``body`` has the plain shape clients send, else None.

    Plain: no preamble, every part opened by ``--boundary`` and CRLF, one ``Name: value``
    header per line with a Content-Disposition name, one closing delimiter. ``bytes.find`` and
    ``split`` do this in a few microseconds where python_multipart's byte-by-byte header state
    machine took about 50 µs of the event loop per request. Anything else (a preamble, folded
    headers, padding after a delimiter, a malformed body) returns None and is parsed by
    python_multipart, which also words the errors.
    """
    opening = b"--" + boundary + b"\r\n"
    closing = b"\r\n--" + boundary + b"--"
    end = body.find(closing)
    if not body.startswith(opening) or end < 0 or body[end + len(closing) :] not in (b"", b"\r\n"):
        return None
    parts = []
    for section in body[len(opening) : end].split(b"\r\n" + opening):
        head, blank_line, data = section.partition(b"\r\n\r\n")
        if not blank_line:
            return None
        disposition = None
        for line in head.split(b"\r\n"):
            field, colon, value = line.partition(b":")
            if not colon or field != field.strip():
                return None
            if field.lower() == b"content-disposition":
                disposition = value.strip()
        options = None if disposition is None else _plain_disposition(disposition)
        if options is None or b"name" not in options:
            return None
        filename = options.get(b"filename")
        parts.append(
            (
                options[b"name"].decode("utf-8", "replace"),
                None if filename is None else filename.decode("utf-8", "replace"),
                data,
            )
        )
    return parts


def _plain_disposition(value: bytes) -> dict[bytes, bytes] | None:
    """``form-data; name="..."; filename="..."`` with plain quoted values, else None.

    python_multipart's parse_options_header took 10 µs per part; escapes, unquoted or
    RFC 2231 values and Windows paths in file names are left to it (None here).
    """
    match = _DISPOSITION.fullmatch(value)
    if match is None:
        return None
    return {key.lower(): val for key, val in _PARAMETER.findall(match.group(1))}


async def _read_whole(chunks: AsyncIterator[bytes]) -> bytes:
    body = bytearray()
    async for chunk in chunks:
        body += chunk
    return bytes(body)


async def _replay(body: bytes) -> AsyncIterator[bytes]:
    yield body


def _collect(parts: list[PlainPart], limits: Limits) -> Uploads:
    collector = _Collector(limits)
    for name, filename, data in parts:
        collector.begin(name, filename)
        collector.on_part_data(data, 0, len(data))
    return _finish(collector.parts, limits)


async def read_uploads(request: Request, limits: Limits) -> Uploads:
    """Parse the request's multipart (or urlencoded) body into the modalities it carries."""
    media_type, params = _media_type(request.headers.get("content-type"))
    _check_declared_length(request, limits)
    if media_type == URLENCODED:
        return await _read_urlencoded(request, limits)
    boundary = params.get(b"boundary")
    if not boundary:
        raise BadRequest("the multipart Content-Type has no boundary")
    if len(boundary) > MAX_BOUNDARY_LENGTH:  # RFC 2046 allows 70; python_multipart refuses more
        raise BadRequest(
            f"the multipart boundary is {len(boundary)} characters; the limit is "
            f"{MAX_BOUNDARY_LENGTH}"
        )
    declared = request.headers.get("content-length")
    chunks = _limited(request, limits.max_body_bytes)
    collector = _Collector(limits)
    try:
        # Built inside the try: python_multipart checks the boundary here too (FormParserError).
        parser = MultipartParser(boundary, collector.callbacks())
        # A small body is read whole and split directly; a large one streams through the
        # parser, so a part over its limit is refused before the rest is read.
        if declared is not None and int(declared) <= WHOLE_BODY_MAX_BYTES:
            body = await _read_whole(chunks)
            if (parts := split_plain_multipart(body, boundary)) is not None:
                return _collect(parts, limits)
            chunks = _replay(body)
        async for chunk in chunks:
            parser.write(chunk)
        parser.finalize()
    except FormParserError as exc:  # the base of every python_multipart parse error
        raise BadRequest(f"malformed multipart body: {exc}") from exc
    if not collector.complete:
        raise BadRequest("the multipart body ends before its closing boundary")
    return _finish(collector.parts, limits)


# The body as OpenAPI describes it (the route reads it itself): three optional form fields,
# two of them files, so that /docs offers a text box and two file pickers.
OPENAPI_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "Any non-empty subset of the three fields.",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "title": "Uploads",
                    "properties": {
                        # Swagger UI's try-it-out puts a field's example (else the word
                        # "string") in the form as a real value and sends it; an empty example
                        # leaves the box empty, and an empty text part counts as not sent.
                        "text": {
                            "type": "string",
                            "description": "UTF-8 text, for example: seven",
                            "examples": [""],
                        },
                        "image": {
                            "type": "string",
                            "format": "binary",
                            "contentMediaType": "application/octet-stream",
                            "description": "PNG, JPEG, WebP, GIF, BMP or TIFF file.",
                        },
                        "audio": {
                            "type": "string",
                            "format": "binary",
                            "contentMediaType": "application/octet-stream",
                            "description": (
                                "WAV, FLAC, OGG/Vorbis, Opus, MP3, M4A/AAC, MP4/MOV or "
                                "WebM/Matroska file (video files: their audio track)."
                            ),
                        },
                    },
                    "additionalProperties": False,
                }
            }
        },
    }
}
