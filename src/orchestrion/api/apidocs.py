"""``/docs``: Swagger UI over the OpenAPI document, from files shipped in the package.

The page shares its origin with the API and the dashboard (and their session cookie), so it
must run nothing the server does not ship: Swagger UI is vendored, pinned and checksummed in
``apidocs_static/`` (its README says how to update it), and the page's Content-Security-Policy
allows scripts, styles and connections from the server's own origin only, as the
dashboard's does (no inline script or style: Swagger UI is started by ``docs-init.js``).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse
from starlette.requests import Request
from starlette.responses import Response

from orchestrion.api.problems import ApiProblem

__all__ = ["CSP", "STATIC", "install"]

STATIC = Path(__file__).with_name("apidocs_static")
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
_FILES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "docs-init.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Orchestrion API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css">
<link rel="icon" type="image/png" href="/docs/static/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script src="/docs/static/docs-init.js"></script>
</body>
</html>
"""


def install(app: FastAPI) -> None:
    """Serve ``/docs`` and its files (plain routes: not part of the API or its document)."""
    app.add_route("/docs", _page, methods=["GET"], include_in_schema=False)
    app.add_route("/docs/static/{name}", _file, methods=["GET"], include_in_schema=False)


async def _page(request: Request) -> Response:
    return HTMLResponse(_PAGE, headers={**_HEADERS, "Cache-Control": "no-store"})


async def _file(request: Request) -> Response:
    name = request.path_params["name"]
    media_type = _FILES.get(name)
    if media_type is None:  # only the files listed: never a path the client composed
        raise ApiProblem(404, f"no such file: {name}")
    return FileResponse(
        STATIC / name,
        media_type=media_type,
        headers={**_HEADERS, "Cache-Control": "public, max-age=86400"},
    )
