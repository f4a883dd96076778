"""How a failed HTTP exchange is told: classified node errors, URLs fit for messages.

Connection problems, timeouts, 5xx, 408 and 429 are transient; other 4xx, bad URLs and TLS
failures are permanent. No message quotes what a request carrying secrets sent, nor the
credentials of a URL.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from orchestrion.core.events import retry_after_seconds
from orchestrion.errors import ErrorCategory, NodeError, PermanentNodeError, TransientNodeError
from orchestrion.governance.secret_routes import carrying_secrets

if TYPE_CHECKING:
    import httpx

__all__ = [
    "display_url",
    "error_cause",
    "request_cause",
    "status_error",
    "too_large",
    "transport_error",
]

_EXCERPT_CHARS = 300
_ERRNO_PREFIX = re.compile(r"^\[Errno -?\d+\]\s*")


def display_url(url: httpx.URL | str) -> str:
    """The URL for messages: credentials in the userinfo part are dropped."""
    import httpx

    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
    except httpx.InvalidURL:
        return str(url)
    return str(parsed.copy_with(userinfo=b"")) if parsed.userinfo else str(parsed)


def error_cause(exc: BaseException) -> str:
    """What ``exc`` says, without the ``[Errno n]`` prefix (its type when it says nothing)."""
    text = _ERRNO_PREFIX.sub("", str(exc)).strip()
    return text or type(exc).__name__


def request_cause(exc: BaseException) -> str:
    """The cause of an error about the request itself; such messages quote what was sent
    (h11's "Illegal header value b'...'"), so a request carrying secrets gets the kind only."""
    if carrying_secrets():
        return f"{type(exc).__name__}; details withheld: the request carries secrets"
    return error_cause(exc)


def transport_error(method: str, url: httpx.URL | str, exc: Exception) -> NodeError:
    """Turn an httpx error (or ``httpx.InvalidURL``) into a classified node error."""
    import httpx

    where = f"{method} {display_url(url)} failed"
    cause = error_cause(exc)
    if isinstance(exc, httpx.TimeoutException):
        what = {
            httpx.ConnectTimeout: "timed out connecting",
            httpx.ReadTimeout: "timed out waiting for the response",
            httpx.WriteTimeout: "timed out sending the request",
            httpx.PoolTimeout: "timed out waiting for a free connection",
        }.get(type(exc), "timed out")
        return TransientNodeError(f"{where}: {what}", category=ErrorCategory.TIMEOUT)
    if isinstance(exc, httpx.ConnectError):
        if "CERTIFICATE_VERIFY_FAILED" in cause:
            # A bad certificate stays bad: retrying only delays the failure.
            return PermanentNodeError(
                f"{where}: TLS verification failed ({cause})", category=ErrorCategory.TLS
            )
        return TransientNodeError(
            f"{where}: could not connect ({cause})", category=ErrorCategory.CONNECTION
        )
    if isinstance(exc, httpx.ProxyError):
        return TransientNodeError(
            f"{where}: proxy error ({cause})", category=ErrorCategory.CONNECTION
        )
    if isinstance(exc, httpx.RemoteProtocolError):
        return TransientNodeError(
            f"{where}: the server broke the connection ({cause})", category=ErrorCategory.CONNECTION
        )
    if isinstance(exc, httpx.NetworkError):
        return TransientNodeError(
            f"{where}: network error ({cause})", category=ErrorCategory.CONNECTION
        )
    if isinstance(exc, httpx.LocalProtocolError):
        return PermanentNodeError(
            f"{where}: invalid request ({request_cause(exc)})", category=ErrorCategory.CONFIG
        )
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return PermanentNodeError(
            f"{where}: invalid request ({cause})", category=ErrorCategory.CONFIG
        )
    if isinstance(exc, httpx.DecodingError):
        return PermanentNodeError(
            f"{where}: could not decode the response ({cause})", category=ErrorCategory.RESPONSE
        )
    if isinstance(exc, httpx.TooManyRedirects):
        return PermanentNodeError(f"{where}: {cause}", category=ErrorCategory.REDIRECTS)
    return TransientNodeError(
        f"{where}: {type(exc).__name__} ({cause})", category=ErrorCategory.CONNECTION
    )


def _retry_after(headers: httpx.Headers) -> float | None:
    """The wait the answer asks for, read now: seconds, or an HTTP date from the clock."""
    return retry_after_seconds(headers.get("retry-after"))


def status_error(
    method: str, url: httpx.URL | str, response: httpx.Response, body: bytes
) -> NodeError:
    """The node error for a response whose status the node did not expect."""
    status = response.status_code
    excerpt = body[:_EXCERPT_CHARS].decode("utf-8", "replace").strip()
    reason = f" {response.reason_phrase}" if response.reason_phrase else ""
    message = f"{method} {display_url(url)} returned {status}{reason}"
    if excerpt:
        message += f": {excerpt}"
    details: dict[str, Any] = {"status_code": status, "body_excerpt": excerpt}
    retry_after = _retry_after(response.headers)
    if retry_after is not None:
        details["retry_after"] = retry_after
    if status == 429:
        return TransientNodeError(message, category=ErrorCategory.RATE_LIMITED, details=details)
    if status == 408:
        return TransientNodeError(message, category=ErrorCategory.TIMEOUT, details=details)
    if status >= 500:
        return TransientNodeError(message, category=ErrorCategory.HTTP_5XX, details=details)
    if status >= 400:
        return PermanentNodeError(message, category=ErrorCategory.HTTP_4XX, details=details)
    return PermanentNodeError(message, category=ErrorCategory.UNEXPECTED_STATUS, details=details)


def too_large(method: str, url: httpx.URL, limit: int) -> PermanentNodeError:
    """The error of a response body larger than the node accepts."""
    return PermanentNodeError(
        f"{method} {display_url(url)} failed: response larger than {limit} bytes "
        "(raise max_response_bytes to accept it)",
        category=ErrorCategory.RESPONSE_TOO_LARGE,
    )
