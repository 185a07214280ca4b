"""podman for the container tests: the images of ``scripts/containers.sh``, containers run as
``deploy/k8s/deployment.yaml`` runs the pod, and why the tests skip where podman cannot run.

Only the environment is a reason to skip (no podman, no Debian mirror for the base images, a
kernel that cannot run containers). A Dockerfile that fails to build fails the tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from service.settings import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "containers.sh"
CONF = REPO_ROOT / "deploy" / "podman" / "containers.conf"
IMAGE = os.environ.get("MMSERVE_IMAGE", "localhost/mmserve:dev")
NGINX_IMAGE = "localhost/mmserve-nginx:bookworm"
USER = "10001:10001"  # the image's mmserve user, as runAsUser/runAsGroup in the k8s manifest


def environment() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONF), "MMSERVE_IMAGE": IMAGE}


def podman(*args: str, timeout: float = 120, check: bool = True) -> str:
    done = subprocess.run(
        ["podman", *args],
        env=environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: exit {done.returncode}\n{done.stderr}")
    return done.stdout.strip()


def script(step: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), step],
        env=environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def why_not() -> str | None:
    """The reason container tests cannot run here, or None when they can."""
    if shutil.which("podman") is None or shutil.which("mmdebstrap") is None:
        return "podman/mmdebstrap are not installed (scripts/containers.sh setup installs them)"
    # The base images come from a Debian mirror: their absence here is the environment's fault.
    base = script("base", timeout=900)
    if base.returncode != 0:
        return f"the base images could not be built: {base.stderr.strip()[-400:]}"
    check = script("check", timeout=120)
    if check.returncode != 0:
        return check.stdout.strip() or check.stderr.strip()[-400:]
    return None


@dataclass
class Container:
    name: str
    url: str

    def logs(self) -> str:
        done = subprocess.run(
            ["podman", "logs", self.name],
            env=environment(),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return done.stdout + done.stderr

    def remove(self) -> None:
        podman("rm", "--force", "--time", "0", self.name, check=False)


def run(
    image: str = IMAGE,
    *,
    volumes: Sequence[str] = (),
    env: dict[str, str] | None = None,
    extra: Sequence[str] = (),
    anonymous: bool = True,
) -> Container:
    """Start a container hardened as the k8s pod: non-root, read-only root filesystem with a
    writable /tmp, no capabilities, no privilege escalation; port 8000 on a free loopback port.

    The image binds 0.0.0.0, where the service refuses to start without an API key unless
    open access is asked for: ``anonymous`` asks for it (the port is published on loopback)."""
    if anonymous:
        env = {"MMSERVE_AUTH__ALLOW_ANONYMOUS": "true"} | (env or {})
    name = f"mmserve-test-{uuid.uuid4().hex[:8]}"
    args = ["run", "--detach", "--name", name, "--user", USER, "--read-only"]
    args += ["--tmpfs", "/tmp:rw,size=1g,mode=1777", "--cap-drop", "ALL"]
    args += ["--security-opt", "no-new-privileges", "--publish", "127.0.0.1::8000"]
    for volume in volumes:
        args += ["--volume", volume]
    for key, value in (env or {}).items():
        args += ["--env", f"{key}={value}"]
    started = Container(name=name, url="")
    try:
        podman(*args, *extra, image)
        host_port = podman("port", name, "8000/tcp").rsplit(":", 1)[1]
    except BaseException:
        started.remove()  # a failed start can leave a created container behind
        raise
    started.url = f"http://127.0.0.1:{host_port}"
    return started


def wait_ready(container: Container, timeout_s: float = 60.0) -> float:
    """Seconds until ``/readyz`` answers 200."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        try:
            if httpx.get(f"{container.url}/readyz", timeout=1.0).status_code == 200:
                return time.monotonic() - start
        except httpx.TransportError:
            pass
        state = podman("inspect", "--format", "{{.State.Status}}", container.name)
        if state not in ("running", "created", "configured"):
            raise AssertionError(f"{container.name} is {state}:\n{container.logs()}")
        time.sleep(0.05)
    raise AssertionError(f"{container.name} not ready in {timeout_s} s:\n{container.logs()}")


def exit_code(name: str) -> int:
    return int(podman("inspect", "--format", "{{.State.ExitCode}}", name))
