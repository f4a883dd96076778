"""The dashboard's pages: one shell per view, rendered by Jinja2 with autoescaping.

A shell carries no workflow data, only which view it is and, for an execution or definition
page, the id from its own URL (escaped as any value is); the view's script fetches the rest.
Static files are served from the package with a version in their URL, so a browser never
mixes the scripts of two releases.
"""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from orchestrion import __version__
from orchestrion.web.headers import SecurityHeaders

__all__ = ["mount"]

_HERE = Path(__file__).resolve().parent
_ENV = Environment(
    loader=FileSystemLoader(_HERE / "templates"),
    autoescape=select_autoescape(("html",), default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
# What a page accepts from its URL: an execution id or a definition name (free text, "/"
# included) of printable characters; it reaches the page only as an escaped attribute value.
_ID = re.compile(r"^[^\x00-\x1f\x7f]{1,400}$")

_NO_SCRIPT = (
    "The sign-in did not run: this page's script was not loaded (is JavaScript on?)."
    " Reload the page and sign in again."
)

_VIEWS = {
    "executions": "Executions",
    "execution": "Execution",
    "definitions": "Definitions",
    "definition": "Definition",
    "operations": "Operations",
    "login": "Sign in",
}


def _page(view: str, status: int = 200, **values: str) -> HTMLResponse:
    template = _ENV.get_template(f"{view}.html")
    html = template.render(
        view=view, title=_VIEWS[view], version=__version__, static="/ui/static", **values
    )
    return HTMLResponse(html, status_code=status)


def _checked(value: str) -> str:
    if not _ID.match(value):
        raise HTTPException(404, "no such page")
    return value


def mount(app: FastAPI) -> None:
    """Serve the dashboard under ``/ui/`` of ``app`` (``/`` leads there)."""
    app.add_middleware(SecurityHeaders)
    app.mount("/ui/static", StaticFiles(directory=_HERE / "static"), name="ui-static")

    @app.get("/", include_in_schema=False)
    @app.get("/ui", include_in_schema=False)
    async def home() -> RedirectResponse:
        return RedirectResponse("/ui/", status_code=307)

    @app.get("/ui/", include_in_schema=False)
    async def executions() -> HTMLResponse:
        return _page("executions")

    @app.get("/ui/login", include_in_schema=False)
    async def login() -> HTMLResponse:
        return _page("login")

    # The sign-in form posts here only when its script did not run (not loaded yet, blocked,
    # JavaScript off). Its key field has no name, so nothing of the key is sent; whatever a
    # client posts is not read, let alone shown or logged.
    @app.post("/ui/login", include_in_schema=False)
    async def login_without_script() -> HTMLResponse:
        return _page("login", status=400, error=_NO_SCRIPT)

    @app.get("/ui/executions/{execution_id}", include_in_schema=False)
    async def execution(execution_id: str) -> HTMLResponse:
        return _page("execution", subject=_checked(execution_id))

    @app.get("/ui/definitions", include_in_schema=False)
    async def definitions() -> HTMLResponse:
        return _page("definitions")

    @app.get("/ui/definitions/{name:path}", include_in_schema=False)
    async def definition(name: str) -> HTMLResponse:
        return _page("definition", subject=_checked(name))

    @app.get("/ui/operations", include_in_schema=False)
    async def operations() -> HTMLResponse:
        return _page("operations")
