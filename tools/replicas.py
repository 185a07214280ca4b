"""K replicas of ``python -m service serve`` on loopback ports behind Debian's nginx.

The same topology as docker-compose.yml, for tests and for machines without Docker::

    python -m tools.replicas --replicas 3 --port 8080

Each replica is one process (``--workers 1``) in a session of its own, so Ctrl-C reaches only
this script, which then stops the replicas with SIGTERM (they drain in parallel) and nginx last
with SIGQUIT (it finishes what it is proxying). Logs, the rendered config and nginx's pid and
temporary files go to one temporary folder, printed at start.

Tests use :class:`Cluster` directly (``tests/deploy/test_failover.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType

import httpx

from service.helptext import plain
from service.settings import REPO_ROOT, Settings
from tools import nginx
from tools.ports import free_port

NGINX = "nginx"
OPENSSL = "openssl"


class ClusterError(RuntimeError):
    """A replica or nginx did not start, or did not become ready in time."""


def nginx_binary() -> str | None:
    return shutil.which(NGINX) or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )


@dataclass(frozen=True)
class Tls:
    """The certificate chain and private key nginx serves HTTPS with (PEM files)."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class RateLimits:
    """nginx's limit_req settings. The defaults are far above what one machine can serve, so the
    script and the failover test measure the replicas, not the proxy's limits."""

    per_client: str = "10000r/s"
    per_client_burst: int = 10000
    per_key: str = "10000r/s"
    per_key_burst: int = 10000


def self_signed(folder: Path, host: str = "127.0.0.1") -> Tls:
    """A fresh self-signed certificate for ``localhost`` and ``host`` (one day, P-256)."""
    openssl = shutil.which(OPENSSL)
    if openssl is None:
        raise ClusterError("openssl is needed to make a test certificate (apt-get install openssl)")
    tls = Tls(folder / "tls-cert.pem", folder / "tls-key.pem")
    command = [
        openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-days", "1", "-subj", "/CN=localhost", "-keyout", str(tls.key),
        "-out", str(tls.cert), "-addext", f"subjectAltName=DNS:localhost,IP:{host}",
    ]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, timeout=60)
    tls.key.chmod(0o644)  # nginx's workers (user nobody) read it in this throwaway folder
    return tls


@dataclass
class Child:
    """One process of the cluster and the file its output goes to."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    tls_port: int | None = None  # nginx's HTTPS port

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def tls_url(self) -> str:
        if self.tls_port is None:
            raise ClusterError(f"{self.name} serves no HTTPS")
        return f"https://127.0.0.1:{self.tls_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def send_signal(self, sig: signal.Signals) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)

    def wait(self, timeout_s: float) -> int:
        return self.process.wait(timeout_s)


@dataclass
class Cluster:
    """``replicas`` serving processes and nginx in front of them, all on 127.0.0.1."""

    replicas: int = 3
    port: int = 0
    env: Mapping[str, str] = field(default_factory=dict)
    workdir: Path | None = None
    tls: Tls | None = None  # None: a self-signed certificate made at start
    rates: RateLimits = field(default_factory=RateLimits)
    servers: list[Child] = field(default_factory=list, init=False)
    nginx: Child | None = field(default=None, init=False)
    _owns_workdir: bool = field(default=False, init=False)

    @property
    def url(self) -> str:
        if self.nginx is None:
            raise ClusterError("the cluster is not started")
        return self.nginx.url

    def start(self, timeout_s: float = 120.0) -> None:
        binary = nginx_binary()
        if binary is None:
            raise ClusterError("nginx is not installed (Debian: apt-get install nginx)")
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="mmserve-replicas-"))
            self._owns_workdir = True
        # nginx's workers drop root to 'nobody' and must reach their temporary folders.
        self.workdir.chmod(0o755)
        try:
            for index in range(self.replicas):
                self.servers.append(self._start_replica(index))
            deadline = time.monotonic() + timeout_s
            for child in self.servers:
                _wait_ready(child, deadline)
            self.nginx = self._start_nginx(binary)
            _wait_ready(self.nginx, deadline)
        except BaseException:
            self.stop()
            raise

    def _start_replica(self, index: int) -> Child:
        assert self.workdir is not None
        port = free_port()
        command = [sys.executable, "-m", "service", "serve"]
        command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
        # Access logs on: each replica's log then shows every answer it gave, drain included.
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "MMSERVE_ACCESS_LOG": "true", **self.env}
        return spawn(f"replica-{index}", port, command, env, self.workdir)

    def _start_nginx(self, binary: str) -> Child:
        assert self.workdir is not None
        upstreams = [child.address for child in self.servers]
        port = self.port or free_port()
        return start_nginx(
            binary,
            self.workdir,
            upstreams,
            port,
            _max_body_bytes(self.env),
            tls=self.tls,
            rates=self.rates,
        )

    def stop(self, timeout_s: float = 30.0) -> dict[str, int | None]:
        """SIGTERM every replica, wait for their drain, then stop nginx. Returns exit codes."""
        for child in self.servers:
            child.send_signal(signal.SIGTERM)
        codes = {child.name: _wait_or_kill(child, timeout_s) for child in self.servers}
        if self.nginx is not None:
            self.nginx.send_signal(signal.SIGQUIT)
            codes[self.nginx.name] = _wait_or_kill(self.nginx, timeout_s)
        if self._owns_workdir and self.workdir is not None and not os.environ.get("KEEP_LOGS"):
            shutil.rmtree(self.workdir, ignore_errors=True)
        return codes

    def __enter__(self) -> Cluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def spawn(name: str, port: int, command: list[str], env: dict[str, str], workdir: Path) -> Child:
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the script, which stops each in order
        )
    return Child(name, port, process, log_path)


def start_nginx(
    binary: str,
    workdir: Path,
    upstreams: list[str],
    port: int,
    max_body_bytes: int,
    *,
    tls: Tls | None = None,
    tls_port: int | None = None,
    rates: RateLimits | None = None,
    name: str = "nginx",
) -> Child:
    """nginx on 127.0.0.1:``port`` (HTTP) and ``tls_port`` (HTTPS, a free one by default) with
    the repository's template, its files in ``workdir``; a self-signed certificate if no
    ``tls`` is given."""
    tls = tls or self_signed(workdir)
    tls_port = tls_port or free_port()
    rates = rates or RateLimits()
    values = {
        "NGINX_PORT": f"127.0.0.1:{port}",
        "NGINX_TLS_OFF": "",  # HTTPS on
        "NGINX_TLS_PORT": f"127.0.0.1:{tls_port}",
        "NGINX_TLS_CERT": str(tls.cert),
        "NGINX_TLS_KEY": str(tls.key),
        "NGINX_RATE_PER_CLIENT": rates.per_client,
        "NGINX_BURST_PER_CLIENT": str(rates.per_client_burst),
        "NGINX_RATE_PER_KEY": rates.per_key,
        "NGINX_BURST_PER_KEY": str(rates.per_key_burst),
        "MMSERVE_MAX_BODY_BYTES": str(max_body_bytes),
        "NGINX_ACCESS_LOG": str(workdir / f"{name}-access.log"),
    }
    site = workdir / f"{name}.conf"
    site.write_text(nginx.render(nginx.TEMPLATE.read_text(), upstreams, values))
    prefix = workdir / name  # pid and temporary files: one folder per nginx
    prefix.mkdir(mode=0o755, exist_ok=True)
    conf = workdir / f"{name}-main.conf"
    conf.write_text(nginx.main_config(site, prefix))
    command = [binary, "-e", "stderr", "-p", str(prefix), "-c", str(conf)]
    child = spawn(name, port, command, dict(os.environ), workdir)
    child.tls_port = tls_port
    return child


def _max_body_bytes(env: Mapping[str, str]) -> int:
    """The body limit the replicas will read, so that nginx enforces the same one."""
    value = env.get("MMSERVE_LIMITS__MAX_BODY_BYTES")
    return int(value) if value else Settings().limits.max_body_bytes


def _wait_ready(child: Child, deadline: float) -> None:
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise ClusterError(
                f"{child.name} exited with {child.process.returncode}:\n{child.log()[-4000:]}"
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{child.url}/readyz", timeout=2.0).status_code == 200:
                return
        time.sleep(0.2)
    raise ClusterError(f"{child.name} was not ready in time:\n{child.log()[-4000:]}")


def _wait_or_kill(child: Child, timeout_s: float) -> int | None:
    if child.process.poll() is not None:
        return child.process.returncode
    try:
        return child.wait(timeout_s)
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGKILL)
        child.wait(5.0)
        return None


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[list[int]]:
    received: list[int] = []

    def handler(sig: int, frame: FrameType | None) -> None:
        received.append(sig)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.replicas", description=plain(__doc__))
    parser.add_argument("--replicas", type=int, default=2, help="serving processes (default 2)")
    parser.add_argument("--port", type=int, default=8080, help="nginx's port (default 8080)")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="mmserve-replicas-"))  # kept: the logs are there
    cluster = Cluster(replicas=args.replicas, port=args.port, workdir=workdir)
    cluster.start()  # Ctrl-C while starting: KeyboardInterrupt, and start() stops what it began
    assert cluster.nginx is not None
    print(f"nginx on {cluster.url} and {cluster.nginx.tls_url} (certificate: "
          f"{cluster.tls.cert if cluster.tls else workdir / 'tls-cert.pem'}) "
          f"-> {', '.join(c.url for c in cluster.servers)}")  # fmt: skip
    print(f"logs and config in {workdir}; Ctrl-C stops everything", flush=True)
    with _stop_on_signals() as received:
        while not received:
            time.sleep(0.2)
        codes = cluster.stop()
    print("stopped (exit codes): " + ", ".join(f"{name} {code}" for name, code in codes.items()))
    return 0 if all(code == 0 for code in codes.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
