"""The nginx template renders for any number of replicas, and nginx itself accepts it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from service.deploy import nginx
from service.deploy.replicas import nginx_binary

VALUES = {"NGINX_PORT": "127.0.0.1:8080", "MMSERVE_MAX_BODY_BYTES": "25000000"}


def rendered(upstreams: list[str], tmp_path: Path) -> str:
    values = {**VALUES, "NGINX_ACCESS_LOG": str(tmp_path / "access.log")}
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
    assert names == {nginx.UPSTREAM, "NGINX_PORT", "MMSERVE_MAX_BODY_BYTES", "NGINX_ACCESS_LOG"}
    header = template.split("log_format")[0]
    assert all(f"#   {name}" in header for name in names)


def test_a_missing_value_is_an_error() -> None:
    with pytest.raises(ValueError, match="NGINX_PORT"):
        nginx.render(nginx.TEMPLATE.read_text(), ["127.0.0.1:9001"], {})


@pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed (apt-get install nginx)")
def test_nginx_accepts_the_rendered_config(tmp_path: Path) -> None:
    site = tmp_path / "mmserve.conf"
    site.write_text(rendered(["127.0.0.1:9001", "127.0.0.1:9002"], tmp_path))
    conf = tmp_path / "nginx.conf"
    conf.write_text(nginx.main_config(site, tmp_path))
    binary = nginx_binary()
    assert binary is not None
    command = [binary, "-t", "-e", "stderr", "-p", str(tmp_path), "-c", str(conf)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr
