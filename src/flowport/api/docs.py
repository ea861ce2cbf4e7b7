"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), served offline.

FastAPI's own pages load their scripts from a CDN, so ``/docs`` is blank on a
machine without internet. Here every asset comes from the installed
``fastapi-offline`` package (Swagger UI 5, which reads OpenAPI 3.1, and
ReDoc), under ``/docs/assets``: nothing is fetched from elsewhere.
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["ASSETS", "install_docs"]

#: Where the pages' scripts, styles and icon are served.
ASSETS = "/docs/assets"
#: The pages may load from Flowport only: the browser itself refuses anything else (ReDoc's bundle
#: would fetch its "by Redocly" logo from cdn.redoc.ly). Their small inline start-up scripts and styles stay.
_POLICY = (
    "default-src 'self'; img-src 'self' data:; script-src 'self' 'unsafe-inline'; "
    "style-src 'self' 'unsafe-inline'; font-src 'self' data:; worker-src 'self' blob:; "
    "connect-src 'self'; frame-ancestors 'none'"
)


def install_docs(app: FastAPI, openapi_url: str) -> None:
    """Serve Swagger UI at ``/docs`` and ReDoc at ``/redoc`` from local assets only."""
    folder = resources.files("fastapi_offline") / "static"
    app.mount(ASSETS, StaticFiles(directory=str(folder)), name="docs-assets")

    def swagger() -> HTMLResponse:
        return _confined(
            get_swagger_ui_html(
                openapi_url=openapi_url,
                title=f"{app.title} API",
                swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
                swagger_css_url=f"{ASSETS}/swagger-ui.css",
                swagger_favicon_url=f"{ASSETS}/favicon.png",
                # No badge from validator.swagger.io: the page fetches nothing but its own assets.
                swagger_ui_parameters={"validatorUrl": None},
            )
        )

    def redoc() -> HTMLResponse:
        return _confined(
            get_redoc_html(
                openapi_url=openapi_url,
                title=f"{app.title} API",
                redoc_js_url=f"{ASSETS}/redoc.standalone.js",
                redoc_favicon_url=f"{ASSETS}/favicon.png",
                with_google_fonts=False,
            )
        )

    app.add_api_route("/docs", swagger, methods=["GET"], include_in_schema=False)
    app.add_api_route("/redoc", redoc, methods=["GET"], include_in_schema=False)


def _confined(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = _POLICY
    return page
