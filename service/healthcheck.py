"""``python -m service.healthcheck``: exit 0 when this machine's server answers ``/readyz`` 200.

The container's health check (slim images have no curl). It asks 127.0.0.1 on the configured
port, whatever address the server listens on.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

from service.settings import Settings


def ready(port: int, timeout_s: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=timeout_s) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def main() -> int:
    return 0 if ready(Settings().port) else 1


if __name__ == "__main__":
    sys.exit(main())
