"""The nginx template renders for any number of replicas, and nginx itself accepts it."""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tools import nginx
from tools.ports import free_port
from tools.replicas import nginx_binary, self_signed, start_nginx

VALUES = {
    "NGINX_PORT": "127.0.0.1:8080",
    "NGINX_TLS_OFF": "",
    "NGINX_TLS_PORT": "127.0.0.1:8443",
    "NGINX_RATE_PER_CLIENT": "20r/s",
    "NGINX_BURST_PER_CLIENT": "40",
    "NGINX_RATE_PER_KEY": "50r/s",
    "NGINX_BURST_PER_KEY": "100",
    "MMSERVE_MAX_BODY_BYTES": "25000000",
}


def rendered(upstreams: list[str], tmp_path: Path) -> str:
    tls = self_signed(tmp_path) if shutil.which("openssl") else None
    values = {
        **VALUES,
        "NGINX_ACCESS_LOG": str(tmp_path / "access.log"),
        "NGINX_TLS_CERT": str(tls.cert if tls else tmp_path / "cert.pem"),
        "NGINX_TLS_KEY": str(tls.key if tls else tmp_path / "key.pem"),
    }
    return nginx.render(nginx.TEMPLATE.read_text(), upstreams, values)


def test_one_server_line_per_replica(tmp_path: Path) -> None:
    conf = rendered(["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"], tmp_path)
    lines = [line.strip() for line in conf.splitlines()]
    servers = [s.split()[1] for s in lines if s.startswith("server ") and s.endswith(";")]
    assert servers == ["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"]
    assert "${" not in conf
    assert "client_max_body_size 25000000;" in conf


def test_placeholders_are_the_documented_ones() -> None:
    template = nginx.TEMPLATE.read_text()
    names = nginx.placeholders(template)
    assert names == {nginx.UPSTREAM, "NGINX_ACCESS_LOG", *VALUES, "NGINX_TLS_CERT", "NGINX_TLS_KEY"}
    header = template.split("log_format")[0]
    assert all(f"#   {name}" in header for name in names)


def test_a_missing_value_is_an_error() -> None:
    with pytest.raises(ValueError, match="NGINX_PORT"):
        nginx.render(nginx.TEMPLATE.read_text(), ["127.0.0.1:9001"], {})


needs_nginx = pytest.mark.skipif(
    nginx_binary() is None, reason="nginx is not installed (scripts/setup.sh dev installs it)"
)


@needs_nginx
@pytest.mark.parametrize("tls_off", ["", "#"], ids=["https", "compose-default-no-https"])
def test_nginx_accepts_the_rendered_config(tmp_path: Path, tls_off: str) -> None:
    site = tmp_path / "mmserve.conf"
    text = rendered(["127.0.0.1:9001", "127.0.0.1:9002"], tmp_path)
    if tls_off:  # as docker-compose.yml renders it: no certificate exists, none is read
        text = nginx.render(
            nginx.TEMPLATE.read_text(),
            ["127.0.0.1:9001"],
            {
                **VALUES,
                "NGINX_TLS_OFF": "#",
                "NGINX_ACCESS_LOG": str(tmp_path / "access.log"),
                "NGINX_TLS_CERT": "/nonexistent/cert.pem",
                "NGINX_TLS_KEY": "/nonexistent/key.pem",
            },
        )
        assert "ssl_certificate " not in text.replace("#ssl_certificate ", "")
    site.write_text(text)
    conf = tmp_path / "nginx.conf"
    conf.write_text(nginx.main_config(site, tmp_path))
    binary = nginx_binary()
    assert binary is not None
    command = [binary, "-t", "-e", "stderr", "-p", str(tmp_path), "-c", str(conf)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr


@pytest.fixture
def nginx_without_replicas(tmp_path: Path) -> Iterator[str]:
    """nginx in front of three ports where nothing listens, with a 1000-byte body limit."""
    binary = nginx_binary()
    assert binary is not None
    dead = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    proxy = start_nginx(binary, tmp_path, dead, free_port(), max_body_bytes=1000)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proxy.process.poll() is None:
        try:  # a connection, not a request: a request would mark the upstreams failed
            socket.create_connection(("127.0.0.1", proxy.port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    yield proxy.url
    proxy.send_signal(signal.SIGQUIT)
    assert proxy.wait(10) == 0, proxy.log()


@needs_nginx
def test_nginx_retries_a_refused_connection_once_then_answers_like_the_service(
    nginx_without_replicas: str,
) -> None:
    response = httpx.post(f"{nginx_without_replicas}/v1/predict", data={"text": "seven"})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "model_not_ready"
    assert len(response.headers["x-upstream"].split(", ")) == 2  # refused: one retry, no more
    rid = response.json()["error"]["request_id"]
    assert len(rid) == 32


@needs_nginx
def test_nginx_refuses_a_body_over_the_service_limit(nginx_without_replicas: str) -> None:
    response = httpx.post(
        f"{nginx_without_replicas}/v1/predict",
        files={"image": ("big.png", b"x" * 2000)},
        headers={"X-Request-ID": "client-chosen-1"},
    )
    assert response.status_code == 413
    assert response.json()["error"] == {
        "code": "payload_too_large",
        "message": "the request body is over 1000 bytes",
        "field": None,
        "request_id": "client-chosen-1",
    }


class DyingReplica:
    """A replica that dies of every request: it reads the request and resets the connection."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.requests = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                with contextlib.suppress(OSError):
                    if conn.recv(65536):
                        self.requests += 1
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@needs_nginx
def test_nginx_does_not_replay_a_request_that_killed_a_replica(tmp_path: Path) -> None:
    binary = nginx_binary()
    assert binary is not None
    replicas = [DyingReplica(), DyingReplica(), DyingReplica()]
    proxy = start_nginx(binary, tmp_path, [r.address for r in replicas], free_port(), 10**6)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", proxy.port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, proxy.log()
                time.sleep(0.05)
        response = httpx.post(f"{proxy.url}/v1/predict", data={"text": "poison"}, timeout=30)
        assert response.status_code == 503, response.text
        assert sum(r.requests for r in replicas) == 1  # one replica met it; no other did
    finally:
        proxy.send_signal(signal.SIGQUIT)
        proxy.wait(10)
        for replica in replicas:
            replica.listener.close()
