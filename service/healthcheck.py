"""``python -m service.healthcheck``: is this replica ready? For container health checks.

Without arguments it asks the server on this machine, ``http://127.0.0.1:<port>/readyz``, and
exits 0 on a 200 (slim images have no curl). With ``--load`` it starts no server: it runs the
app's start-up and shutdown in this process (every model loaded and warmed up), prints each
model's readiness and exits 0 if all are ready. The Dockerfile runs that at build time, so an
image that cannot serve its models fails to build, and the imports are compiled and cached.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import urllib.error
import urllib.request

from service.helptext import plain
from service.settings import Settings


def ready(port: int, timeout_s: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=timeout_s) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


async def load(settings: Settings) -> bool:
    from service.app import create_app

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        repository = app.state.repository
        for name, status in repository.readiness().items():
            print(f"{name}: {status}")
        return bool(repository.ready)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m service.healthcheck", description=plain(__doc__)
    )
    parser.add_argument("--load", action="store_true", help="load the models here, no server")
    args = parser.parse_args(argv)
    # The probe binds nothing and asks over loopback, so the rule that a public bind needs an
    # API key (which /readyz does not) is not its business: the port comes from the environment.
    settings = Settings(host="127.0.0.1")
    ok = asyncio.run(load(settings)) if args.load else ready(settings.port)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
