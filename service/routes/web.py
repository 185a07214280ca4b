"""The web client: ``index.html`` at ``/`` and its scripts and styles under ``/static``.

The files live in ``service/static/`` and ship in the wheel (``[tool.setuptools.package-data]``).
They use relative URLs only, so the page also works under a path prefix behind a proxy.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

# Revalidate on every load, so a redeployed page never mixes old and new files; the ETag
# and Last-Modified headers keep it to a 304.
NO_CACHE = {"Cache-Control": "no-cache"}

router = APIRouter(include_in_schema=False)


class RevalidatedStaticFiles(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(NO_CACHE)
        return response


@router.api_route("/", methods=["GET", "HEAD"])
async def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers=NO_CACHE)


def install(app: FastAPI) -> None:
    """Serve the page at ``/`` and its assets at ``/static``."""
    app.include_router(router)
    app.mount("/static", RevalidatedStaticFiles(directory=STATIC_DIR), name="static")
