"""What a server shows of itself: no server path in any answer after broken model folders, a
Host allowlist against DNS rebinding, and no redirect that echoes the Host it was sent.

Over real HTTP, against ``python -m service serve`` bound to loopback with default settings.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.service.conftest import DEFAULT_MODEL
from tests.service.live import LiveServer, live_server

ABSOLUTE_PATH = re.compile(r"(?<![\w.~/-])/(?:[\w.@+~-]+/)+[\w.@+~-]*")
BROKEN = ("garbled", "no-model-file", "no-manifest")


@pytest.fixture(scope="module")
def broken_root(model_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default model, working, beside three folders that cannot load."""
    root = tmp_path_factory.mktemp("server-paths-are-private")
    (root / DEFAULT_MODEL).mkdir()
    (root / DEFAULT_MODEL / model_folder.name).symlink_to(model_folder)
    (root / "garbled" / "1").mkdir(parents=True)
    (root / "garbled" / "1" / "manifest.json").write_text("{not json")
    manifest = json.loads((model_folder / "manifest.json").read_text())
    manifest |= {"name": "no-model-file", "version": "1"}
    (root / "no-model-file" / "1").mkdir(parents=True)
    (root / "no-model-file" / "1" / "manifest.json").write_text(json.dumps(manifest))
    (root / "no-manifest" / "1").mkdir(parents=True)
    return root


@pytest.fixture(scope="module")
def server(broken_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    log_path = tmp_path_factory.mktemp("exposure") / "server.log"
    with live_server(broken_root, log_path) as live:
        yield live


def answers(server: LiveServer) -> dict[str, httpx.Response]:
    get, post = httpx.get, httpx.post
    url = server.url
    result = {"/readyz": get(f"{url}/readyz"), "/v1/models": get(f"{url}/v1/models")}
    for name in BROKEN:
        result[f"predict {name}"] = post(f"{url}/v1/models/{name}/predict", data={"text": "1"})
        result[f"model {name}"] = get(f"{url}/v1/models/{name}")
        result[f"v2 {name}"] = get(f"{url}/v2/models/{name}")
        result[f"v2 ready {name}"] = get(f"{url}/v2/models/{name}/ready")
        result[f"v2 infer {name}"] = post(f"{url}/v2/models/{name}/infer", json={"inputs": []})
    return result


def test_no_server_path_in_any_answer(server: LiveServer, broken_root: Path) -> None:
    everything = answers(server)
    assert everything["/readyz"].status_code == 503
    failed = {
        f"{f['name']}/{f['version']}": f["reason"]
        for f in everything["/v1/models"].json()["failed"]
    }
    assert set(failed) == {f"{name}/1" for name in BROKEN}
    assert failed["no-manifest/1"] == "no manifest.json in no-manifest/1"
    assert "no-model-file/1/" in failed["no-model-file/1"]  # relative to the model folder
    assert everything["predict no-model-file"].status_code == 503
    for what, response in everything.items():
        text = response.text
        assert str(broken_root) not in text and "/tmp/" not in text, (what, text)
        assert ABSOLUTE_PATH.search(text) is None, (what, text)
    # The operator still finds the whole story, paths included, in the log.
    assert str(broken_root) in server.log()


@pytest.mark.parametrize("host", ["evil.example", "evil.example:80", "127.0.0.1.evil.example"])
def test_a_foreign_host_is_refused_in_each_apis_shape(server: LiveServer, host: str) -> None:
    response = httpx.get(f"{server.url}/healthz", headers={"Host": host})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "bad_request" and error["field"] == "Host"
    assert host not in response.text
    v2 = httpx.get(f"{server.url}/v2/health/live", headers={"Host": host})
    assert v2.status_code == 400 and isinstance(v2.json()["error"], str)


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST:8000", "127.0.0.1:1", "[::1]:8000"])
def test_loopback_names_are_served_with_any_port(server: LiveServer, host: str) -> None:
    response = httpx.get(f"{server.url}/healthz", headers={"Host": host})
    assert response.status_code == 200, response.text


def test_no_redirect_echoes_the_host(server: LiveServer) -> None:
    for host in ("localhost", "evil.example"):
        response = httpx.get(f"{server.url}/v1/models/", headers={"Host": host})
        assert "location" not in response.headers
        assert response.status_code in (400, 404)
        assert "evil.example" not in response.text
