"""The nginx template with TLS and rate limits, in front of two real replicas that want keys.

The certificate is made by ``openssl`` here. Over HTTPS a prediction works with HTTP/1.1 and
with HTTP/2 (curl, when it speaks it); a key over its rate and a client over its rate get 429
in the service's error shape with ``Retry-After``, while another key goes on being served.
"""

from __future__ import annotations

import shutil
import signal
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.settings import REPO_ROOT
from tests.logcheck import secret
from tests.service.tiny_model import build_tiny_model
from tools.ports import free_port
from tools.replicas import (
    Child,
    Cluster,
    RateLimits,
    Tls,
    nginx_binary,
    self_signed,
    start_nginx,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed"),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed"),
]

MODEL = "digits-xattn"
KEY_A = secret("tls-test-key-a-8c2e5f1b7d3a9e40")
KEY_B = secret("tls-test-key-b-1f7d3b9e5c2a8e64")
# Per key: 1 request a second and a burst of 3, so a fourth at once is refused. Per client:
# generous, so only the per-key limit is met here (the client limit has its own nginx below).
KEY_LIMITED = RateLimits(per_client="100r/s", per_client_burst=100, per_key="1r/s", per_key_burst=3)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    committed = REPO_ROOT / "onnx_models"
    if (committed / MODEL / "1" / "manifest.json").is_file():
        return committed
    root = tmp_path_factory.mktemp("models")
    build_tiny_model(root, MODEL)
    return root


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def cluster(
    model_dir: Path, tls: Tls, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    env = {
        "MMSERVE_MODEL_DIR": str(model_dir),
        "MMSERVE_API_KEYS": f"a={KEY_A},b={KEY_B}",
        "MMSERVE_RUNTIME__PROVIDERS": "CPUExecutionProvider",
        "MMSERVE_RUNTIME__FEATURE_THREADS": "1",
        "MMSERVE_SHUTDOWN_GRACE_S": "0",
    }
    workdir = tmp_path_factory.mktemp("cluster")
    with Cluster(replicas=2, env=env, tls=tls, rates=KEY_LIMITED, workdir=workdir) as started:
        yield started


def https(tls: Tls) -> httpx.Client:
    return httpx.Client(verify=ssl.create_default_context(cafile=str(tls.cert)), timeout=30)


def assert_rate_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["Retry-After"] == "1"
    error = response.json()["error"]
    assert set(error) == {"code", "message", "field", "request_id"}
    assert error["code"] == "rate_limited" and error["request_id"]


def test_https_predict_over_http_1_1(cluster: Cluster, tls: Tls) -> None:
    assert cluster.nginx is not None
    with https(tls) as client:
        response = client.post(
            f"{cluster.nginx.tls_url}/v1/predict",
            data={"text": "seven"},
            headers={"Authorization": f"Bearer {KEY_A}"},
        )
        assert response.status_code == 200, response.text
        assert response.json()["model"] == MODEL
        assert response.http_version == "HTTP/1.1"
        assert response.headers["Strict-Transport-Security"].startswith("max-age=")
        # Without a key the replica refuses, through the proxy as directly.
        refused = client.post(f"{cluster.nginx.tls_url}/v1/predict", data={"text": "seven"})
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
    time.sleep(1.5)  # let KEY_A's bucket refill for the tests after this one


def curl_supports_http2() -> bool:
    curl = shutil.which("curl")
    if curl is None:
        return False
    features = subprocess.run([curl, "--version"], capture_output=True, text=True).stdout
    return "HTTP2" in features


@pytest.mark.skipif(not curl_supports_http2(), reason="curl without HTTP/2")
def test_https_predict_over_http_2(cluster: Cluster, tls: Tls) -> None:
    assert cluster.nginx is not None
    result = subprocess.run(
        [
            "curl", "-sS", "--http2", "--cacert", str(tls.cert),
            "-H", f"X-API-Key: {KEY_B}", "-F", "text=seven",
            "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
            f"{cluster.nginx.tls_url}/v1/predict",
        ],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == "2 200"
    time.sleep(1.5)


def test_a_key_over_its_rate_gets_429_and_another_key_does_not(cluster: Cluster, tls: Tls) -> None:
    assert cluster.nginx is not None
    url = f"{cluster.nginx.tls_url}/v1/models"
    with https(tls) as client:
        statuses = [client.get(url, headers={"X-API-Key": KEY_A}) for _ in range(8)]
        assert [r.status_code for r in statuses[:3]] == [200, 200, 200]
        assert_rate_limited(statuses[-1])
        # The Bearer form of the same key shares its bucket; another key has its own.
        assert_rate_limited(client.get(url, headers={"Authorization": f"Bearer {KEY_A}"}))
        assert client.get(url, headers={"X-API-Key": KEY_B}).status_code == 200
        # On /v2 the answer has the protocol's shape.
        v2 = client.get(f"{cluster.nginx.tls_url}/v2/models/{MODEL}", headers={"X-API-Key": KEY_A})
        assert v2.status_code == 429 and v2.headers["Retry-After"] == "1"
        assert isinstance(v2.json()["error"], str)
        # Probes are never limited.
        assert all(
            client.get(f"{cluster.nginx.tls_url}/readyz").status_code == 200 for _ in range(8)
        )


@pytest.fixture
def client_limited(cluster: Cluster, tls: Tls, tmp_path: Path) -> Iterator[Child]:
    """A second nginx in front of the same replicas, limiting each client to 1 r/s, burst 2."""
    binary = nginx_binary()
    assert binary is not None
    tmp_path.chmod(0o755)
    rates = RateLimits(per_client="1r/s", per_client_burst=2)
    upstreams = [child.address for child in cluster.servers]
    proxy = start_nginx(
        binary, tmp_path, upstreams, free_port(), 25_000_000, tls=tls, rates=rates, name="limited"
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{proxy.url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.05)
    yield proxy
    proxy.send_signal(signal.SIGQUIT)
    proxy.wait(10)


def test_a_client_over_its_rate_gets_429(client_limited: Child, tls: Tls) -> None:
    with https(tls) as client:
        url = f"{client_limited.tls_url}/v1/models"
        statuses = [client.get(url, headers={"X-API-Key": KEY_B}) for _ in range(6)]
        assert statuses[0].status_code == 200
        assert_rate_limited(statuses[-1])
        # Without a key, too: the per-client limit applies to every request.
        assert_rate_limited(client.get(url))
