"""``/docs`` (Swagger UI) and ``/redoc`` served from local files, not a CDN.

FastAPI's own pages load their JavaScript from a CDN, so on a machine without internet access
``/docs`` is blank. The assets come with the ``fastapi-offline`` package (Swagger UI 5, which
renders OpenAPI 3.1 and offers file pickers for the upload fields); only its files are used.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

STATIC_URL = "/docs-static"
# "Try it out" open by default: the page is for trying the API.
SWAGGER_PARAMETERS = {"tryItOutEnabled": True, "defaultModelsExpandDepth": 0}


def _urls(request: Request) -> tuple[str, str]:
    """The OpenAPI document's URL and the assets' folder, under any proxy's root path."""
    root = request.scope.get("root_path", "")
    return f"{root}/openapi.json", f"{root}{STATIC_URL}"


def install(app: FastAPI) -> None:
    """Add ``/docs`` and ``/redoc``; build the app with ``docs_url=None, redoc_url=None``."""
    assets = files("fastapi_offline") / "static"
    app.mount(STATIC_URL, StaticFiles(directory=str(assets)), name="docs-static")
    title = app.title

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        openapi, static = _urls(request)
        return get_swagger_ui_html(
            openapi_url=openapi,
            title=f"{title} - Swagger UI",
            swagger_js_url=f"{static}/swagger-ui-bundle.js",
            swagger_css_url=f"{static}/swagger-ui.css",
            swagger_favicon_url=f"{static}/favicon.png",
            swagger_ui_parameters=SWAGGER_PARAMETERS,
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        openapi, static = _urls(request)
        return get_redoc_html(
            openapi_url=openapi,
            title=f"{title} - ReDoc",
            redoc_js_url=f"{static}/redoc.standalone.js",
            redoc_favicon_url=f"{static}/favicon.png",
            with_google_fonts=False,
        )
