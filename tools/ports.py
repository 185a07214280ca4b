"""A free loopback port for a server about to start (the benchmark's, the replicas', tests')."""

from __future__ import annotations

import socket


def free_port() -> int:
    # The port may be taken again before the child binds it; on loopback that is rare enough.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
