"""The V2 codec against the official client's own request builder and response parser."""

from __future__ import annotations

import gzip
import json
import struct
import zlib

import numpy as np
import pytest
from tritonclient.http import InferenceServerClient, InferInput, InferRequestedOutput

from service.errors import InvalidInput, PayloadTooLarge
from service.v2.codec import (
    OutputTensor,
    decode_request,
    decompress,
    encode_response,
    parse_header_length,
)


def _input(name: str, array: np.ndarray, datatype: str, binary: bool) -> InferInput:
    tensor = InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def _client_body(inputs: list[InferInput], **kwargs: object) -> tuple[bytes, int | None]:
    body, json_size = InferenceServerClient.generate_request_body(inputs, **kwargs)
    return bytes(body), json_size


@pytest.mark.parametrize("binary", [True, False])
def test_numeric_inputs_round_trip(binary: bool) -> None:
    pixels = np.random.default_rng(0).standard_normal((2, 1, 4, 4)).astype(np.float32)
    ids = np.array([[101, 7, 102], [101, 8, 0]], dtype=np.int64)
    body, size = _client_body(
        [_input("image", pixels, "FP32", binary), _input("input_ids", ids, "INT64", binary)],
        request_id="abc",
    )
    request = decode_request(body, size)
    assert request.id == "abc"
    assert [t.name for t in request.inputs] == ["image", "input_ids"]
    np.testing.assert_array_equal(request.inputs[0].array, pixels)
    assert request.inputs[1].array.dtype == np.int64
    np.testing.assert_array_equal(request.inputs[1].array, ids)
    assert request.outputs is None and request.binary_output  # the client's default


@pytest.mark.parametrize("binary", [True, False])
def test_bytes_inputs_round_trip(binary: bool) -> None:
    texts = np.array([["seven"], ["acht ü"]], dtype=object)
    body, size = _client_body([_input("text", texts, "BYTES", binary)])
    (tensor,) = decode_request(body, size).inputs
    assert tensor.shape == (2, 1)
    assert tensor.array.ravel().tolist() == [b"seven", "acht ü".encode()]


def test_binary_bytes_keep_arbitrary_bytes() -> None:
    blob = bytes(range(256)) * 3
    files = np.array([blob, b""], dtype=object)
    body, size = _client_body([_input("image", files, "BYTES", True)])
    (tensor,) = decode_request(body, size).inputs
    assert tensor.array.tolist() == [blob, b""]


def test_requested_outputs_and_binary_flags() -> None:
    text = np.array([b"one"], dtype=object)
    outputs = [InferRequestedOutput("digit_probs", binary_data=False)]
    outputs.append(InferRequestedOutput("embedding", binary_data=True, class_count=0))
    outputs.append(InferRequestedOutput("consistent_probs", class_count=2))
    body, size = _client_body([_input("text", text, "BYTES", True)], outputs=outputs)
    request = decode_request(body, size)
    assert request.outputs is not None
    assert [(o.name, o.binary, o.classification) for o in request.outputs] == [
        ("digit_probs", False, 0),
        ("embedding", True, 0),
        ("consistent_probs", True, 2),
    ]
    assert not request.binary_output


def test_nested_json_data_is_accepted() -> None:
    header = {
        "inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2], [3.5, 4]]}]
    }
    (tensor,) = decode_request(json.dumps(header).encode(), None).inputs
    np.testing.assert_array_equal(tensor.array, np.array([[1, 2], [3.5, 4]], dtype=np.float32))


def test_base64_bytes_in_json() -> None:
    header = {
        "inputs": [
            {
                "name": "image",
                "shape": [1],
                "datatype": "BYTES",
                "parameters": {"content_type": "base64"},
                "data": ["AAEC/w=="],
            }
        ]
    }
    (tensor,) = decode_request(json.dumps(header).encode(), None).inputs
    assert tensor.array.tolist() == [b"\x00\x01\x02\xff"]


def _one(datatype: str, shape: list[int], data: object, **extra: object) -> bytes:
    entry = {"name": "x", "shape": shape, "datatype": datatype, "data": data, **extra}
    return json.dumps({"inputs": [entry]}).encode()


@pytest.mark.parametrize(
    ("body", "header_length", "message"),
    [
        (b"{not json", None, "invalid inference request header"),
        (b'{"inputs": []}', None, "inputs"),
        (b'{"inputs": [{"name": "x", "shape": ["2"], "datatype": "FP32"}]}', None, "shape"),
        (_one("FP32", [3], [1, 2]), None, "data has 2 elements but shape [3] needs 3"),
        (_one("FP32", [2], ["1", "2"]), None, "non-numeric"),
        (_one("INT64", [2], [1.5, 2]), None, "floating-point values, not INT64"),
        (_one("INT8", [1], [300]), None, "out of INT8's range"),
        (_one("FP32", [2], [[1], [2, 3]]), None, "not a tensor"),
        (_one("FLOAT", [1], [1]), None, "unknown datatype"),
        (_one("BF16", [1], [1]), None, "not supported"),
        (_one("BYTES", [1], [1]), None, "must be strings"),
        (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32"}]}', None, "neither"),
        (_one("FP32", [1], [1]), 500, "but the body has only"),
    ],
)
def test_malformed_requests(body: bytes, header_length: int | None, message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace("[", r"\[").replace("]", r"\]")):
        decode_request(body, header_length)


def _binary_body(entry: dict[str, object], binary: bytes) -> tuple[bytes, int]:
    header = json.dumps({"inputs": [entry]}).encode()
    return header + binary, len(header)


def test_truncated_binary_data() -> None:
    entry = {
        "name": "x",
        "shape": [4],
        "datatype": "FP32",
        "parameters": {"binary_data_size": 16},
    }
    body, size = _binary_body(entry, b"\x00" * 10)
    with pytest.raises(InvalidInput, match="truncated binary data"):
        decode_request(body, size)


def test_binary_size_must_match_shape() -> None:
    entry = {"name": "x", "shape": [3], "datatype": "FP32", "parameters": {"binary_data_size": 8}}
    body, size = _binary_body(entry, b"\x00" * 8)
    with pytest.raises(InvalidInput, match="needs 12"):
        decode_request(body, size)


def test_extra_bytes_after_binary_data() -> None:
    entry = {"name": "x", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": 4}}
    body, size = _binary_body(entry, b"\x00" * 6)
    with pytest.raises(InvalidInput, match="2 bytes after"):
        decode_request(body, size)


def test_truncated_bytes_element() -> None:
    data = struct.pack("<I", 10) + b"abc"
    entry = {
        "name": "x",
        "shape": [1],
        "datatype": "BYTES",
        "parameters": {"binary_data_size": len(data)},
    }
    body, size = _binary_body(entry, data)
    with pytest.raises(InvalidInput, match="truncated binary data"):
        decode_request(body, size)


@pytest.mark.parametrize("value", ["12", None])
def test_header_length_parsing(value: str | None) -> None:
    assert parse_header_length(value) == (None if value is None else 12)


@pytest.mark.parametrize("value", ["-1", "twelve"])
def test_bad_header_length(value: str) -> None:
    with pytest.raises(InvalidInput, match="Inference-Header-Content-Length"):
        parse_header_length(value)


def test_decompress() -> None:
    assert decompress(gzip.compress(b"hello"), "gzip", 100) == b"hello"
    assert decompress(zlib.compress(b"hello"), "deflate", 100) == b"hello"
    with pytest.raises(PayloadTooLarge, match="larger than 10"):
        decompress(gzip.compress(b"x" * 1000), "gzip", 10)
    with pytest.raises(InvalidInput, match="Content-Encoding"):
        decompress(b"x", "br", 10)


@pytest.mark.parametrize("binary", [True, False])
def test_responses_parse_with_the_official_client(binary: bool) -> None:
    probs = np.random.default_rng(1).random((3, 10)).astype(np.float32)
    labels = np.array([[b"0.9:7:seven"], [b"0.5:1:one"], [b"0.4:2:two"]], dtype=object)
    outputs = [
        OutputTensor("digit_probs", probs, binary),
        OutputTensor("top", labels, binary),
        OutputTensor("mask", np.array([1, 2], dtype=np.int64), not binary),
    ]
    body, size = encode_response("m", "1", "rid", outputs)
    result = InferenceServerClient.parse_response_body(body, header_length=size)
    np.testing.assert_array_equal(result.as_numpy("digit_probs"), probs)
    top = [
        [e if isinstance(e, bytes) else e.encode() for e in row] for row in result.as_numpy("top")
    ]
    assert top == labels.tolist()  # the client hands JSON BYTES back as str
    np.testing.assert_array_equal(result.as_numpy("mask"), [1, 2])
    response = result.get_response()
    assert (response["model_name"], response["model_version"], response["id"]) == ("m", "1", "rid")


def test_json_only_response_has_no_header_length() -> None:
    body, size = encode_response("m", "1", None, [OutputTensor("x", np.zeros(2), False)])
    assert size is None
    assert json.loads(body) == {
        "model_name": "m",
        "model_version": "1",
        "outputs": [{"name": "x", "datatype": "FP64", "shape": [2], "data": [0.0, 0.0]}],
    }


def test_sequences_are_refused() -> None:
    body, size = _client_body([_input("x", np.zeros(1, np.float32), "FP32", True)], sequence_id=3)
    with pytest.raises(InvalidInput, match="sequences"):
        decode_request(body, size)
