"""The security headers of every dashboard response: a strict CSP, no framing, no sniffing.

The Content Security Policy allows scripts, styles and connections from the dashboard's own
origin only, and no inline script or style at all (no nonce either: every script is a file
under ``/ui/static``), so a value that slipped into markup still could not run.

Redirects name a path on the same origin only: a ``Location`` built from the request (such
as the trailing-slash redirect of ``/ui/static``, which uses the ``Host`` header) loses its
scheme and host, so no request header can point a browser at another site.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CSP", "SecurityHeaders", "same_origin_location"]

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def same_origin_location(location: str) -> str:
    """``location`` as a path on this origin: scheme and host dropped, never ``//host``."""
    parts = urlsplit(location)
    path = "/" + parts.path.lstrip("/\\")
    return urlunsplit(("", "", path, parts.query, parts.fragment))


class SecurityHeaders:
    """Adds the headers above to every answer under ``prefix`` (and to ``/``)."""

    def __init__(self, app: ASGIApp, prefix: str = "/ui") -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == "/" or path.startswith(self.prefix)):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in _HEADERS.items():
                    headers[name] = value
                if not path.startswith(f"{self.prefix}/static/"):
                    headers["Cache-Control"] = "no-store"
                if "location" in headers:
                    headers["Location"] = same_origin_location(headers["location"])
            await send(message)

        await self.app(scope, receive, with_headers)
