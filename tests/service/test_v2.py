"""The V2 protocol through the official ``tritonclient.http`` against a running server.

A real uvicorn server (the app's lifespan included) listens on a free loopback port in a
thread; every answer is compared with the multipart ``/v1`` endpoint's for the same sample.
Malformed requests are sent with raw httpx, since the official client refuses to build them.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient
import uvicorn
from fastapi.testclient import TestClient
from tritonclient.utils import InferenceServerException

from service.app import create_app
from service.settings import REPO_ROOT
from tests.service import media
from tests.service.conftest import DEFAULT_MODEL, DirectModel, make_settings

TOLERANCE = 1e-5
TEXT = "seven"


@pytest.fixture(scope="module")
def server_url(model_root: Path) -> Iterator[str]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))  # bound here, so no other process can take the port
    port = listener.getsockname()[1]
    config = uvicorn.Config(create_app(make_settings(model_root)), log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [listener]}, name="v2-server", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the server did not start")
        time.sleep(0.05)
    yield f"127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)
    listener.close()


@pytest.fixture(scope="module")
def triton(server_url: str) -> Iterator[httpclient.InferenceServerClient]:
    client = httpclient.InferenceServerClient(server_url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def http(server_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://{server_url}", timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def sample(speech_seven: bytes) -> dict[str, bytes | str]:
    return {"image": media.png(), "audio": speech_seven, "text": TEXT}


def v1_answer(http: httpx.Client, uploads: Mapping[str, bytes | str]) -> dict[str, Any]:
    files = [
        (name, (None, value.encode()) if isinstance(value, str) else (f"{name}.bin", value))
        for name, value in uploads.items()
    ]
    response = http.post(f"/v1/models/{DEFAULT_MODEL}/predict?top_k=1000", files=files)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def assert_same_as_v1(
    result: httpclient.InferResult, row: int, v1: Mapping[str, Any], direct: DirectModel
) -> None:
    """Every task's probabilities and the contributions equal /v1's for the same upload."""
    manifest = direct.manifest
    for task in manifest.tasks:
        if task.name not in v1["tasks"]:  # /v1 leaves out a task the upload cannot answer
            assert len(v1["modalities"]) < task.min_modalities
            continue
        by_label = {p["label"]: p["probability"] for p in v1["tasks"][task.name]["top_k"]}
        expected = np.array([by_label[label] for label in task.labels])
        got = result.as_numpy(task.output)[row]
        np.testing.assert_allclose(got, expected, atol=TOLERANCE, rtol=0)
    if manifest.contribution_output:
        expected = np.array([v1["contributions"][m] for m in manifest.modality_order])
        got = result.as_numpy(manifest.contribution_output)[row]
        np.testing.assert_allclose(got, expected, atol=TOLERANCE, rtol=0)


def bytes_input(name: str, values: list[bytes | str], binary: bool) -> httpclient.InferInput:
    array = np.array(values, dtype=object)
    tensor = httpclient.InferInput(name, list(array.shape), "BYTES")
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def feature_inputs(feeds: Mapping[str, np.ndarray], binary: bool) -> list[httpclient.InferInput]:
    inputs = []
    for name, array in feeds.items():
        datatype = "INT64" if array.dtype == np.int64 else "FP32"
        tensor = httpclient.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    return inputs


def all_outputs(direct: DirectModel, binary: bool) -> list[httpclient.InferRequestedOutput]:
    return [
        httpclient.InferRequestedOutput(spec.name, binary_data=binary)
        for spec in direct.manifest.outputs
    ]


# -- health and metadata ------------------------------------------------------------------


def test_health(triton: httpclient.InferenceServerClient) -> None:
    assert triton.is_server_live()
    assert triton.is_server_ready()
    assert triton.is_model_ready(DEFAULT_MODEL)
    assert triton.is_model_ready(DEFAULT_MODEL, "1")
    assert not triton.is_model_ready("no-such-model")
    assert not triton.is_model_ready(DEFAULT_MODEL, "999")


def test_server_metadata(triton: httpclient.InferenceServerClient) -> None:
    meta = triton.get_server_metadata()
    assert meta["name"] == "mmserve"
    assert {
        "binary_tensor_data",
        "classification",
        "model_configuration",
        "model_repository",
    } <= set(meta["extensions"])


def test_model_metadata(triton: httpclient.InferenceServerClient, direct: DirectModel) -> None:
    meta = triton.get_model_metadata(DEFAULT_MODEL)
    assert meta["name"] == DEFAULT_MODEL and "1" in meta["versions"]
    inputs = {t["name"]: t for t in meta["inputs"]}
    assert inputs["image"]["datatype"] == "FP32"
    assert inputs["image"]["shape"] == [-1, 1, 32, 32]
    assert inputs["input_ids"]["datatype"] == "INT64"
    assert inputs["input_ids"]["shape"] == [-1, -1]
    assert inputs["image"]["parameters"]["raw_input"] == "image"
    assert meta["parameters"]["raw_inputs"] == "image,audio,text"
    assert [t["name"] for t in meta["outputs"]] == [o.name for o in direct.manifest.outputs]
    assert triton.get_model_metadata(DEFAULT_MODEL, "1") == meta
    with pytest.raises(InferenceServerException, match="no model named"):
        triton.get_model_metadata("no-such-model")


def test_model_config(triton: httpclient.InferenceServerClient) -> None:
    config = triton.get_model_config(DEFAULT_MODEL)
    assert config["max_batch_size"] >= 1
    assert all(i["optional"] for i in config["input"])
    image = next(i for i in config["input"] if i["name"] == "image")
    assert image["data_type"] == "TYPE_FP32" and image["dims"] == [1, 32, 32]
    assert config["dynamic_batching"]["default_queue_policy"]["max_queue_size"] > 0
    assert config["parameters"]["raw_inputs"]["string_value"] == "image,audio,text"


# -- inference: raw BYTES inputs ----------------------------------------------------------


def test_raw_inputs_binary(
    triton: httpclient.InferenceServerClient,
    http: httpx.Client,
    direct: DirectModel,
    sample: dict[str, bytes | str],
) -> None:
    inputs = [bytes_input(name, [value], binary=True) for name, value in sample.items()]
    result = triton.infer(DEFAULT_MODEL, inputs)  # no outputs named: all of them, binary
    assert_same_as_v1(result, 0, v1_answer(http, sample), direct)


@pytest.mark.parametrize("binary_outputs", [True, False])
def test_raw_text_as_json(
    triton: httpclient.InferenceServerClient,
    http: httpx.Client,
    direct: DirectModel,
    binary_outputs: bool,
) -> None:
    # Only text can travel as JSON through tritonclient: JSON BYTES are UTF-8 strings.
    inputs = [bytes_input("text", [TEXT], binary=False)]
    result = triton.infer(DEFAULT_MODEL, inputs, outputs=all_outputs(direct, binary_outputs))
    assert_same_as_v1(result, 0, v1_answer(http, {"text": TEXT}), direct)


def test_raw_batch_rows_with_different_modalities(
    triton: httpclient.InferenceServerClient,
    http: httpx.Client,
    direct: DirectModel,
    sample: dict[str, bytes | str],
) -> None:
    image = sample["image"]
    assert isinstance(image, bytes)
    # Row 0: image and text; row 1: text only (an empty element means "not in this row").
    inputs = [
        bytes_input("image", [[image], [b""]], binary=True),
        bytes_input("text", [[TEXT], ["three"]], binary=True),
    ]
    result = triton.infer(DEFAULT_MODEL, inputs)
    assert result.as_numpy(direct.manifest.outputs[0].name).shape[0] == 2
    assert_same_as_v1(result, 0, v1_answer(http, {"image": image, "text": TEXT}), direct)
    assert_same_as_v1(result, 1, v1_answer(http, {"text": "three"}), direct)


def test_raw_base64_image_in_json(
    http: httpx.Client, direct: DirectModel, sample: dict[str, bytes | str]
) -> None:
    import base64

    image = sample["image"]
    assert isinstance(image, bytes)
    body = {
        "inputs": [
            {
                "name": "image",
                "shape": [1],
                "datatype": "BYTES",
                "parameters": {"content_type": "base64"},
                "data": [base64.b64encode(image).decode()],
            }
        ]
    }
    response = http.post(f"/v2/models/{DEFAULT_MODEL}/infer", json=body)
    assert response.status_code == 200, response.text
    assert "Inference-Header-Content-Length" not in response.headers
    result = httpclient.InferResult.from_response_body(response.content)
    assert_same_as_v1(result, 0, v1_answer(http, {"image": image}), direct)


# -- inference: feature tensors -----------------------------------------------------------


@pytest.mark.parametrize("binary", [True, False])
def test_feature_tensors(
    triton: httpclient.InferenceServerClient,
    http: httpx.Client,
    direct: DirectModel,
    sample: dict[str, bytes | str],
    binary: bool,
) -> None:
    feeds = direct.feeds(sample)  # every graph input, presence included
    result = triton.infer(
        DEFAULT_MODEL, feature_inputs(feeds, binary), outputs=all_outputs(direct, binary)
    )
    assert_same_as_v1(result, 0, v1_answer(http, sample), direct)


def test_feature_batch_without_presence(
    triton: httpclient.InferenceServerClient,
    http: httpx.Client,
    direct: DirectModel,
    sample: dict[str, bytes | str],
) -> None:
    # Two rows of image and padded text; presence derived from the tensors sent.
    short, long_ = direct.feeds({"image": sample["image"], "text": "one"}), direct.feeds(sample)
    ids_short, ids_long = short["input_ids"][0], long_["input_ids"][0]
    width = max(len(ids_short), len(ids_long))
    ids = np.zeros((2, width), np.int64)
    mask = np.zeros((2, width), np.int64)
    for i, row in enumerate((ids_short, ids_long)):
        ids[i, : len(row)], mask[i, : len(row)] = row, 1
    feeds = {
        "image": np.concatenate([short["image"], long_["image"]]),
        "input_ids": ids,
        "attention_mask": mask,
    }
    result = triton.infer(DEFAULT_MODEL, feature_inputs(feeds, binary=True))
    assert_same_as_v1(result, 0, v1_answer(http, {"image": sample["image"], "text": "one"}), direct)
    assert_same_as_v1(result, 1, v1_answer(http, {"image": sample["image"], "text": TEXT}), direct)


def _batch_histogram(http: httpx.Client) -> tuple[float, float]:
    """(batches run, rows in them) so far for the default model."""
    text = http.get("/metrics").text
    values = []
    for part in ("count", "sum"):
        pattern = rf'^mmserve_batch_size_{part}{{model="{DEFAULT_MODEL}"}} (\S+)$'
        found = re.search(pattern, text, re.MULTILINE)
        assert found is not None, pattern
        values.append(float(found.group(1)))
    return values[0], values[1]


def test_rows_of_one_request_share_a_batch(
    triton: httpclient.InferenceServerClient, http: httpx.Client
) -> None:
    count, total = _batch_histogram(http)
    feeds = {"image": np.zeros((3, 1, 32, 32), np.float32)}
    triton.infer(DEFAULT_MODEL, feature_inputs(feeds, binary=True))
    assert _batch_histogram(http) == (count + 1, total + 3)


# -- outputs --------------------------------------------------------------------------------


def test_requested_subset_only(
    triton: httpclient.InferenceServerClient, direct: DirectModel
) -> None:
    task = direct.manifest.tasks[0]
    inputs = [bytes_input("text", [TEXT], binary=True)]
    outputs = [httpclient.InferRequestedOutput(task.output, binary_data=False)]
    result = triton.infer(DEFAULT_MODEL, inputs, outputs=outputs)
    assert [o["name"] for o in result.get_response()["outputs"]] == [task.output]
    assert "data" in result.get_output(task.output)


def test_classification_extension(
    triton: httpclient.InferenceServerClient, direct: DirectModel
) -> None:
    task = direct.manifest.tasks[0]
    inputs = [bytes_input("text", [TEXT], binary=True)]
    outputs = [httpclient.InferRequestedOutput(task.output, class_count=3)]
    result = triton.infer(DEFAULT_MODEL, inputs, outputs=outputs)
    top = result.as_numpy(task.output)
    assert top.shape == (1, 3)
    plain = triton.infer(DEFAULT_MODEL, inputs).as_numpy(task.output)[0]
    score, index, label = top[0][0].decode().split(":")
    assert int(index) == int(plain.argmax()) and label == task.labels[int(index)]
    assert float(score) == pytest.approx(float(plain.max()), abs=1e-6)


# -- errors ---------------------------------------------------------------------------------


def _json_input(name: str, datatype: str, shape: list[int], data: list[Any]) -> dict[str, Any]:
    return {"inputs": [{"name": name, "datatype": datatype, "shape": shape, "data": data}]}


def _binary_request(
    entries: list[dict[str, Any]], binary: bytes, header_length: int | None = None
) -> tuple[bytes, dict[str, str]]:
    header = json.dumps({"inputs": entries}).encode()
    length = len(header) if header_length is None else header_length
    return header + binary, {"Inference-Header-Content-Length": str(length)}


MALFORMED: dict[str, tuple[bytes, dict[str, str], str]] = {
    "wrong shape": (
        json.dumps(_json_input("image", "FP32", [1, 32, 32], [0.0] * 1024)).encode(),
        {},
        "has shape [1, 32, 32]; expected [-1, 1, 32, 32]",
    ),
    "wrong datatype": (
        json.dumps(_json_input("input_ids", "FP32", [1, 2], [1.0, 2.0])).encode(),
        {},
        "has datatype FP32; expected INT64",
    ),
    "unknown input": (
        json.dumps(_json_input("depth", "FP32", [1, 1], [1.0])).encode(),
        {},
        "unknown input 'depth'",
    ),
    "header length larger than body": (
        *_binary_request([], b"", header_length=10_000),
        "but the body has only",
    ),
    "truncated binary data": (
        *_binary_request(
            [
                {
                    "name": "image",
                    "datatype": "FP32",
                    "shape": [1, 1, 32, 32],
                    "parameters": {"binary_data_size": 4096},
                }
            ],
            b"\x00" * 1000,
        ),
        "truncated binary data",
    ),
    "truncated BYTES element": (
        *_binary_request(
            [
                {
                    "name": "text",
                    "datatype": "BYTES",
                    "shape": [1],
                    "parameters": {"binary_data_size": 9},
                }
            ],
            struct.pack("<I", 50) + b"seven",
        ),
        "truncated binary data",
    ),
    "bad JSON": (b'{"inputs": [', {}, "invalid inference request header"),
    "mixed kinds": (
        json.dumps(
            {
                "inputs": [
                    {"name": "text", "datatype": "BYTES", "shape": [1], "data": ["one"]},
                    {"name": "presence", "datatype": "FP32", "shape": [1, 3], "data": [0, 0, 1]},
                ]
            }
        ).encode(),
        {},
        "not both",
    ),
    "unknown output": (
        json.dumps(
            {
                "inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["one"]}],
                "outputs": [{"name": "logits"}],
            }
        ).encode(),
        {},
        "unknown output 'logits'",
    ),
    "undecodable image": (
        json.dumps(_json_input("image", "BYTES", [1], ["not an image"])).encode(),
        {},
        "image",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_requests_are_400(http: httpx.Client, case: str) -> None:
    body, headers, message = MALFORMED[case]
    response = http.post(f"/v2/models/{DEFAULT_MODEL}/infer", content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"error"}
    assert message in response.json()["error"]


def test_unknown_model_and_version_are_404(http: httpx.Client) -> None:
    body = json.dumps(_json_input("text", "BYTES", [1], ["one"])).encode()
    for path in ("/v2/models/nope/infer", f"/v2/models/{DEFAULT_MODEL}/versions/999/infer"):
        response = http.post(path, content=body)
        assert response.status_code == 404
        assert set(response.json()) == {"error"}


def test_unknown_routes_and_methods(http: httpx.Client) -> None:
    response = http.get("/v2/trace/setting")  # Triton's trace extension: not implemented
    assert response.status_code == 404 and set(response.json()) == {"error"}
    response = http.get(f"/v2/models/{DEFAULT_MODEL}/infer")
    assert response.status_code == 405 and response.headers["Allow"] == "POST"
    assert set(response.json()) == {"error"}


def test_full_queue_is_503(model_root: Path) -> None:
    settings = make_settings(model_root, batching={"max_queue": 1, "max_batch_size": 2})
    body = json.dumps(_json_input("text", "BYTES", [2], ["one", "two"])).encode()
    with TestClient(create_app(settings)) as client:
        response = client.post(f"/v2/models/{DEFAULT_MODEL}/infer", content=body)
        metrics = client.get("/metrics").text
    assert response.status_code == 503
    assert "retry shortly" in response.json()["error"]
    assert response.headers["Retry-After"]
    # Counted as every refusal is, whichever API it came through.
    counted = f'mmserve_rejected_requests_total{{model="{DEFAULT_MODEL}",reason="overloaded"}} 1.0'
    assert counted in metrics.splitlines()


def test_client_sees_the_message(triton: httpclient.InferenceServerClient) -> None:
    tensor = httpclient.InferInput("depth", [1, 1], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 1), np.float32))
    with pytest.raises(InferenceServerException, match="unknown input 'depth'") as info:
        triton.infer(DEFAULT_MODEL, [tensor])
    assert info.value.status() == "400"


def test_gzip_request(
    triton: httpclient.InferenceServerClient, http: httpx.Client, direct: DirectModel
) -> None:
    inputs = [bytes_input("text", [TEXT], binary=True)]
    result = triton.infer(DEFAULT_MODEL, inputs, request_compression_algorithm="gzip")
    assert_same_as_v1(result, 0, v1_answer(http, {"text": TEXT}), direct)


# -- the documented examples --------------------------------------------------------------


@pytest.mark.parametrize("document", ["README.md", "docs/v2-protocol.md"])
def test_documented_example_runs(
    document: str,
    server_url: str,
    sample: dict[str, bytes | str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = (REPO_ROOT / document).read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    examples = [block for block in blocks if "tritonclient" in block]
    assert examples, f"{document} has no tritonclient example"
    image, audio = sample["image"], sample["audio"]
    assert isinstance(image, bytes) and isinstance(audio, bytes)
    (tmp_path / "digit.png").write_bytes(image)
    (tmp_path / "seven.wav").write_bytes(audio)
    monkeypatch.chdir(tmp_path)
    for example in examples:
        namespace: dict[str, Any] = {}
        code = compile(example.replace("localhost:8000", server_url), document, "exec")
        exec(code, namespace)
        assert namespace["probabilities"].shape == (1, 10)
