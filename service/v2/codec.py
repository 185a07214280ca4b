"""Inference request and response bodies, with the binary tensor data extension.

A request body is a JSON header, optionally followed by binary tensor data. When it has binary
data, the ``Inference-Header-Content-Length`` header gives the JSON header's length, and each
input sent as binary carries ``parameters.binary_data_size``; the inputs' binary data follow
the header back to back, in the order of the inputs. Numeric tensors are little-endian,
row-major, without padding; a BYTES element is a 4-byte little-endian length and then its
bytes. JSON ``data`` is the row-major flattened list (nested lists are accepted too).

Responses mirror that: outputs asked for as binary (``binary_data`` on the output, or the
request's ``binary_data_output`` for those that do not say) carry ``binary_data_size`` and are
appended after the JSON header, whose length the response's
``Inference-Header-Content-Length`` gives; the others carry ``data``.

Everything here is pure (bytes in, bytes out) and raises
:class:`~service.errors.InvalidInput` naming the input at fault.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
from pydantic import ValidationError

from service.errors import InvalidInput, PayloadTooLarge
from service.settings import MAX_V2_ELEMENTS
from service.v2 import datatypes
from service.v2.bounds import InputsCheck, check_commas, check_datatype, check_shapes
from service.v2.schemas import InferenceRequestHeader, RequestInput, RequestOutput

HEADER_LENGTH: Final = "Inference-Header-Content-Length"
_LENGTH_PREFIX = struct.Struct("<I")
# The kind of numpy array JSON data may parse to, per target kind: ints are fine for floats,
# nothing else converts silently (no strings, no bools into numbers).
_JSON_KINDS: Final = {"b": "b", "i": "iu", "u": "iu", "f": "iuf"}
_ENCODINGS: Final = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
# Inflated a piece at a time, so a body over its limit is refused after at most this much more.
_INFLATE_CHUNK: Final = 1 << 20


@dataclass(frozen=True)
class Tensor:
    """One decoded input. BYTES tensors hold ``bytes`` objects in an object array."""

    name: str
    datatype: str
    array: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)


@dataclass(frozen=True)
class OutputRequest:
    name: str
    binary: bool | None  # None: the request's binary_data_output decides
    classification: int = 0


@dataclass(frozen=True)
class InferenceRequest:
    id: str | None
    inputs: list[Tensor]
    outputs: list[OutputRequest] | None  # None: every output
    binary_output: bool


@dataclass(frozen=True)
class OutputTensor:
    name: str
    array: np.ndarray
    binary: bool
    parameters: dict[str, str] = field(default_factory=dict)


def parse_header_length(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        length = int(value)
    except ValueError:
        raise InvalidInput(f"{HEADER_LENGTH} must be an integer, got {value[:32]!r}") from None
    if length < 0:
        raise InvalidInput(f"{HEADER_LENGTH} must not be negative, got {length}")
    return length


def decompress(
    body: bytes,
    encoding: str | None,
    limit: int,
    *,
    json_length: int | None = None,
    max_elements: int = MAX_V2_ELEMENTS,
    check_inputs: InputsCheck | None = None,
) -> bytes:
    """Undo a request's ``Content-Encoding`` (gzip or deflate), refusing more than ``limit``.

    Inflated a megabyte at a time, and refused as soon as the body expands past ``limit``,
    its JSON header (its first ``json_length`` bytes, all of it when None) holds more commas
    than ``max_elements`` allows, or, with binary data after it, the header once complete
    fails :func:`read_header`: 24 KB of gzip declaring 6 M empty BYTES elements stops after
    its header, not after 24 MB of inflating.
    """
    if encoding is None or encoding.strip().lower() in ("", "identity"):
        return body
    wbits = _ENCODINGS.get(encoding.strip().lower())
    if wbits is None:
        raise InvalidInput(f"unsupported Content-Encoding {encoding[:32]!r}; use gzip or deflate")
    pieces: list[bytes] = []
    size = commas = 0
    for piece in _inflate(body, wbits, encoding):
        if json_length is None or size < json_length:
            head = piece if json_length is None else piece[: json_length - size]
            commas += head.count(b",")
            check_commas(commas, max_elements)
            if json_length is not None and size + len(piece) >= json_length:
                read_header(b"".join([*pieces, head]), max_elements, check_inputs)
        size += len(piece)
        if size > limit:
            raise PayloadTooLarge(
                f"the decompressed body is larger than {limit} bytes (limits.max_body_bytes)"
            )
        pieces.append(piece)
    return b"".join(pieces)


def read_header(
    raw: bytes, max_elements: int, check_inputs: InputsCheck | None
) -> InferenceRequestHeader:
    """Parse and check a JSON header: what it declares (the number of values, shapes, then
    ``check_inputs``: the model's names, datatypes and rows), before any tensor is built."""
    # Every element of JSON ``data`` but the last of its list is followed by a comma, so the
    # commas bound the elements from above (with an allowance for the header's structure);
    # counting them costs ~1 ms a megabyte, parsing them ~90 ms and ~70 MB a million.
    check_commas(raw.count(b","), max_elements)
    header = _parse_header(raw)
    check_shapes(header.inputs, max_elements)
    if check_inputs is not None:
        check_inputs(header.inputs)
    return header


def _inflate(body: bytes, wbits: int, encoding: str) -> Iterator[bytes]:
    inflater = zlib.decompressobj(wbits)
    pending = body
    try:
        while not inflater.eof:
            piece = inflater.decompress(pending, _INFLATE_CHUNK)
            pending = inflater.unconsumed_tail
            if not piece and not pending:
                break  # input used up before the end of the stream: truncated
            yield piece
    except zlib.error as exc:
        raise InvalidInput(f"the {encoding} body cannot be decompressed: {exc}") from exc
    if not inflater.eof:
        raise InvalidInput(f"the {encoding} body is truncated")


def decode_request(
    body: bytes,
    header_length: int | None,
    *,
    max_elements: int = MAX_V2_ELEMENTS,
    check_inputs: InputsCheck | None = None,
) -> InferenceRequest:
    """A whole request body -> its inputs as arrays and the outputs it asks for; the header
    is checked (:func:`read_header`) before any tensor is built from it."""
    if header_length is None:
        header_length = len(body)
    if header_length > len(body):
        raise InvalidInput(
            f"{HEADER_LENGTH} is {header_length} but the body has only {len(body)} bytes"
        )
    header = read_header(body[:header_length], max_elements, check_inputs)
    if header.parameters.get("sequence_id") not in (None, 0, ""):
        raise InvalidInput("sequences (sequence_id) are not supported: every model is stateless")
    binary = memoryview(body)[header_length:]
    inputs: list[Tensor] = []
    offset = 0
    for spec in header.inputs:
        tensor, used = _decode_input(spec, binary[offset:])
        inputs.append(tensor)
        offset += used
    if offset != len(binary):
        raise InvalidInput(
            f"the body has {len(binary) - offset} bytes after the inputs' binary data "
            f"(binary_data_size values add up to {offset})"
        )
    return InferenceRequest(
        id=header.id,
        inputs=inputs,
        outputs=None if header.outputs is None else [_output(o) for o in header.outputs],
        binary_output=_bool_param(header.parameters, "binary_data_output", "the request"),
    )


def encode_response(
    model_name: str, model_version: str, request_id: str | None, outputs: list[OutputTensor]
) -> tuple[bytes, int | None]:
    """-> (body, JSON header length when binary data follows it, else None)."""
    entries: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for output in outputs:
        entry: dict[str, Any] = {
            "name": output.name,
            "datatype": datatypes.from_numpy(output.array.dtype),
            "shape": list(output.array.shape),
        }
        if output.parameters:
            entry["parameters"] = dict(output.parameters)
        if output.binary:
            raw = _to_binary(output.array)
            entry["parameters"] = entry.get("parameters", {}) | {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = _to_json(output.array)
        entries.append(entry)
    answer: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request_id is not None:
        answer["id"] = request_id
    answer["outputs"] = entries
    header = json.dumps(answer, separators=(",", ":")).encode("utf-8")
    if not chunks:
        return header, None
    return b"".join([header, *chunks]), len(header)


def serialize_bytes(elements: np.ndarray) -> bytes:
    """A BYTES tensor -> its binary form: per element, a 4-byte length and the bytes."""
    parts: list[bytes] = []
    for element in elements.ravel():
        data = element if isinstance(element, bytes) else str(element).encode("utf-8")
        parts += [_LENGTH_PREFIX.pack(len(data)), data]
    return b"".join(parts)


def _parse_header(raw: bytes | memoryview) -> InferenceRequestHeader:
    try:
        return InferenceRequestHeader.model_validate_json(bytes(raw))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"])
        where = where.lstrip(".") or "body"
        raise InvalidInput(f"invalid inference request header: {where}: {first['msg']}") from None


def _decode_input(spec: RequestInput, binary: memoryview) -> tuple[Tensor, int]:
    """-> (the tensor, how many bytes of the binary section it used)."""
    where = f"input {spec.name!r}"
    check_datatype(spec)
    if "shared_memory_region" in spec.parameters:
        raise InvalidInput(f"{where}: the shared memory extension is not supported")
    count = math.prod(spec.shape)
    size = _int_param(spec.parameters, "binary_data_size", where)
    if size is not None:
        if size > len(binary):
            raise InvalidInput(
                f"{where}: binary_data_size is {size} bytes but only {len(binary)} bytes of "
                "binary data are left in the body (truncated binary data)",
                field=spec.name,
            )
        array = _from_binary(spec, bytes(binary[:size]), count)
        return Tensor(spec.name, spec.datatype, array.reshape(spec.shape)), size
    if spec.data is None:
        raise InvalidInput(
            f"{where} has neither JSON data nor parameters.binary_data_size", field=spec.name
        )
    array = _from_json(spec, count)
    return Tensor(spec.name, spec.datatype, array.reshape(spec.shape)), 0


def _from_binary(spec: RequestInput, data: bytes, count: int) -> np.ndarray:
    if spec.datatype == datatypes.BYTES:
        return _bytes_array(_split_bytes(data, count, spec.name))
    dtype = datatypes.NUMERIC[spec.datatype]
    if len(data) != count * dtype.itemsize:
        raise InvalidInput(
            f"input {spec.name!r}: binary_data_size is {len(data)} bytes but shape "
            f"{spec.shape} of {spec.datatype} needs {count * dtype.itemsize}",
            field=spec.name,
        )
    return np.frombuffer(data, dtype=dtype).copy()


def _split_bytes(data: bytes, count: int, name: str) -> list[bytes]:
    elements: list[bytes] = []
    offset = 0
    for i in range(count):
        if offset + _LENGTH_PREFIX.size > len(data):
            raise InvalidInput(
                f"input {name!r}: BYTES data ends before element {i} of {count} "
                "(truncated binary data)",
                field=name,
            )
        (length,) = _LENGTH_PREFIX.unpack_from(data, offset)
        offset += _LENGTH_PREFIX.size
        if offset + length > len(data):
            raise InvalidInput(
                f"input {name!r}: BYTES element {i} says {length} bytes but only "
                f"{len(data) - offset} are left (truncated binary data)",
                field=name,
            )
        elements.append(data[offset : offset + length])
        offset += length
    if offset != len(data):
        raise InvalidInput(
            f"input {name!r}: {len(data) - offset} bytes are left after its {count} BYTES "
            "elements; the shape and binary_data_size disagree",
            field=name,
        )
    return elements


def _from_json(spec: RequestInput, count: int) -> np.ndarray:
    if spec.datatype == datatypes.BYTES:
        elements = _json_bytes(spec)
        if len(elements) != count:
            raise _count_mismatch(spec, len(elements), count)
        return _bytes_array(elements)
    dtype = datatypes.NUMERIC[spec.datatype]
    try:
        values = np.asarray(spec.data)
    except (ValueError, OverflowError) as exc:  # ragged nesting, ints beyond 64 bits
        raise InvalidInput(f"input {spec.name!r}: data is not a tensor: {exc}") from None
    if values.size != count:
        raise _count_mismatch(spec, values.size, count)
    if count == 0:
        return np.zeros(count, dtype=dtype)
    if values.dtype.kind not in _JSON_KINDS[dtype.kind]:
        raise InvalidInput(
            f"input {spec.name!r}: data holds {_kind_name(values)} values, not {spec.datatype}",
            field=spec.name,
        )
    if dtype.kind in "iu" and not _fits(values, dtype):
        raise InvalidInput(f"input {spec.name!r}: data is out of {spec.datatype}'s range")
    return values.astype(dtype).ravel()


def _json_bytes(spec: RequestInput) -> list[bytes]:
    """BYTES in JSON are strings (UTF-8), or base64 with ``parameters.content_type``."""
    flat = _flatten(spec.data)
    if not all(isinstance(v, str) for v in flat):
        raise InvalidInput(f"input {spec.name!r}: BYTES data must be strings", field=spec.name)
    strings: list[str] = flat
    if spec.parameters.get("content_type") != "base64":
        return [s.encode("utf-8") for s in strings]
    try:
        return [base64.b64decode(s, validate=True) for s in strings]
    except binascii.Error as exc:
        raise InvalidInput(f"input {spec.name!r}: invalid base64: {exc}") from None


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    return [item for element in data for item in _flatten(element)]


def _bytes_array(elements: list[bytes]) -> np.ndarray:
    array = np.empty(len(elements), dtype=object)
    array[:] = elements
    return array


def _fits(values: np.ndarray, dtype: np.dtype[np.generic]) -> bool:
    info = np.iinfo(dtype)  # type: ignore[type-var]
    return bool(values.min() >= info.min and values.max() <= info.max)


def _kind_name(values: np.ndarray) -> str:
    names = {"b": "boolean", "i": "integer", "u": "integer", "f": "floating-point"}
    return names.get(values.dtype.kind, "non-numeric")


def _count_mismatch(spec: RequestInput, got: int, want: int) -> InvalidInput:
    return InvalidInput(
        f"input {spec.name!r}: data has {got} elements but shape {spec.shape} needs {want}",
        field=spec.name,
    )


def _int_param(parameters: dict[str, Any], key: str, where: str) -> int | None:
    value = parameters.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(f"{where}: parameters.{key} must be a non-negative integer")
    return value


def _bool_param(parameters: dict[str, Any], key: str, where: str) -> bool:
    value = parameters.get(key, False)
    if not isinstance(value, bool):
        raise InvalidInput(f"{where}: parameters.{key} must be true or false")
    return value


def _output(spec: RequestOutput) -> OutputRequest:
    where = f"output {spec.name!r}"
    if "shared_memory_region" in spec.parameters:
        raise InvalidInput(f"{where}: the shared memory extension is not supported")
    binary = _bool_param(spec.parameters, "binary_data", where)
    return OutputRequest(
        name=spec.name,
        binary=binary if "binary_data" in spec.parameters else None,
        classification=_int_param(spec.parameters, "classification", where) or 0,
    )


def _to_binary(array: np.ndarray) -> bytes:
    if array.dtype == np.object_:
        return serialize_bytes(array)
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def _to_json(array: np.ndarray) -> list[Any]:
    if array.dtype == np.object_:
        return [e.decode("utf-8") if isinstance(e, bytes) else str(e) for e in array.ravel()]
    flat: list[Any] = array.ravel().tolist()
    return flat
