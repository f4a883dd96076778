"""The ``http`` handler (alias ``call_external_service``): one real HTTP request with httpx.

Failures are classified for the retry policy: connection problems, timeouts, 5xx, 408 and 429
are transient; other 4xx, bad URLs and unparseable bodies are permanent. Proxies come from the
standard ``HTTP_PROXY``/``HTTPS_PROXY``/``NO_PROXY`` variables (``trust_env=True``).

A request whose headers, json or body carry secrets is checked at every hop, before the URL
guard, against where the policy lets those secrets go (``governance/secret_routes.py``), and
its errors never quote what was sent (an invalid header value is named by its kind only).

Every request, and every redirect hop, first passes the URL guard of the policy's controls
(``ctx.resources.controls.url_guard``, an ``async (url) -> None`` that raises to block): the
SSRF guard of the governance policy. A client built with a ``url_policy`` also
connects through ``PinnedBackend``: only to the addresses that policy checked, so a name that
resolves differently the second time (DNS rebinding) cannot slip past the guard.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urljoin, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from orchestrion.errors import ErrorCategory, PermanentNodeError
from orchestrion.governance.secret_routes import check_destination
from orchestrion.governance.ssrf import UrlPolicy
from orchestrion.handlers.base import HandlerSpec, NodeContext
from orchestrion.handlers.http_client import UNREADABLE_LOCATION, build_http_client
from orchestrion.handlers.http_errors import (
    display_url,
    error_cause,
    request_cause,
    status_error,
    too_large,
    transport_error,
)
from orchestrion.handlers.resources import UrlGuard

if TYPE_CHECKING:
    import httpx

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "SPEC",
    "HttpConfig",
    "UrlGuard",
    "build_http_client",
    "display_url",
    "get_url_guard",
    "pinning_policy",
    "run_http",
    "status_error",
    "transport_error",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_RESPONSE_BYTES = 10 * 1024 * 1024
MAX_REDIRECTS = 20
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
QueryValue = str | int | float | bool | None | list[str | int | float | bool]


class HttpConfig(BaseModel):
    """Config of the ``http`` handler."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="http or https URL to call")
    method: str = Field("GET", description="HTTP method")
    headers: dict[str, str | int | float] = Field(
        default_factory=dict, description="request headers"
    )
    query: dict[str, QueryValue] = Field(default_factory=dict, description="query string params")
    params: dict[str, QueryValue] = Field(
        default_factory=dict, description="the same as `query` (give one of the two)"
    )
    json_: Any = Field(
        default=None,
        alias="json",
        description="a JSON request body (give `json` or `body`, not both)",
    )
    body: str | None = Field(None, description="a text request body")
    timeout: float = Field(default=30.0, gt=0, description="seconds for the whole request")
    expected_status: list[int] | None = Field(
        None,
        description=(
            "status codes that count as success; default 2xx (and 3xx when not following redirects)"
        ),
    )
    follow_redirects: bool = Field(
        True, description="follow redirects, each hop checked like the first URL"
    )
    parse: Literal["auto", "json", "text"] = Field(
        "auto",
        description=(
            "how to read the response: `auto` (JSON when the "
            "content type says so), `json` or `text`"
        ),
    )
    max_response_bytes: int = Field(
        default=DEFAULT_MAX_RESPONSE_BYTES,
        gt=0,
        description="a larger response body fails the node",
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        value = value.strip()
        # An unrendered template (definition checked before it runs) is checked after rendering.
        if "{{" in value:
            return value
        import httpx

        try:
            url = httpx.URL(value)
        except httpx.InvalidURL as exc:
            if _legacy_ipv4_host(value):
                # `http://0251.0376.0251.0376/` (octal): httpx refuses it, but resolvers read
                # it as an address; the URL guard decides, and names it, when the node runs.
                return value
            raise ValueError(f"invalid URL '{value}': {exc}") from exc
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"url must be an absolute http:// or https:// URL, got '{value}'")
        return value

    @field_validator("method")
    @classmethod
    def _check_method(cls, value: str) -> str:
        method = value.strip().upper()
        if method not in _METHODS:
            allowed = ", ".join(sorted(_METHODS))
            raise ValueError(f"unsupported method '{value}' (allowed: {allowed})")
        return method

    @field_validator("expected_status")
    @classmethod
    def _check_statuses(cls, value: list[int] | None) -> list[int] | None:
        if value is not None:
            bad = [code for code in value if not 100 <= code <= 599]
            if bad:
                raise ValueError(f"not HTTP status codes: {bad}")
        return value

    @model_validator(mode="after")
    def _check_exclusive(self) -> HttpConfig:
        if self.query and self.params:
            raise ValueError("give either 'query' or 'params', not both")
        if self.json_ is not None and self.body is not None:
            raise ValueError("give either 'json' or 'body', not both")
        return self

    def status_ok(self, status: int) -> bool:
        """Default: 2xx, and 3xx too when redirects are not followed (the caller wants them)."""
        if self.expected_status is not None:
            return status in self.expected_status
        if 200 <= status < 300:
            return True
        return not self.follow_redirects and 300 <= status < 400


def _legacy_ipv4_host(url: str) -> bool:
    """Whether the URL's host is an IPv4 address in a legacy spelling (octal, hex, short)."""
    try:
        host = urlsplit(url).hostname or ""
        socket.inet_aton(host)
    except (ValueError, OSError):
        return False
    return bool(host)


def get_url_guard(ctx: NodeContext) -> UrlGuard:
    """The SSRF guard of the policy's controls (``ALLOW_ANY_URL`` when it restricts none)."""
    return ctx.resources.controls.url_guard


def pinning_policy(ctx: NodeContext) -> UrlPolicy | None:
    """The guard when it is a ``UrlPolicy``: one a connection can be pinned with."""
    guard = ctx.resources.controls.url_guard
    return guard if isinstance(guard, UrlPolicy) else None


def _log_url(url: httpx.URL) -> str:
    # Logs are not scrubbed of secrets by the runtime, and query strings often carry tokens.
    return f"{url.scheme}://{url.netloc.decode('ascii', 'replace')}{url.path}"


async def _read_limited(method: str, response: httpx.Response, limit: int) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(method, response.url, limit)
    chunks: list[bytes] = []
    size = 0
    # Counted after content decoding, so a small gzip bomb cannot exhaust memory either.
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise too_large(method, response.url, limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _is_json_type(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _parse_body(
    method: str, response: httpx.Response, body: bytes, mode: Literal["auto", "json", "text"]
) -> Any:
    text = body.decode(response.encoding or "utf-8", "replace")
    if mode == "text":
        return text
    if mode == "json" or _is_json_type(response.headers.get("content-type", "")):
        if not body.strip():
            return None
        try:
            return json.loads(body)
        except ValueError as exc:
            if mode == "json":
                raise PermanentNodeError(
                    f"{method} {display_url(response.url)} returned a body that is not JSON: {exc}",
                    category=ErrorCategory.RESPONSE,
                ) from exc
            # A server that labels text as JSON should not fail a node that did not ask for JSON.
            return text
    return text


def _build_request(
    client: httpx.AsyncClient, ctx: NodeContext, config: HttpConfig
) -> httpx.Request:
    import httpx

    headers = {key: str(value) for key, value in config.headers.items()}
    if not any(key.lower() == "idempotency-key" for key in headers):
        headers["Idempotency-Key"] = ctx.idempotency_key
    query = config.query or config.params
    try:
        return client.build_request(
            config.method,
            config.url,
            headers=headers,
            params=query or None,
            json=config.json_,
            content=config.body.encode("utf-8") if config.body is not None else None,
            timeout=httpx.Timeout(config.timeout),
        )
    except (httpx.InvalidURL, UnicodeEncodeError, TypeError, ValueError) as exc:
        raise PermanentNodeError(
            f"{config.method} {display_url(config.url)} failed: invalid request "
            f"({request_cause(exc)})",
            category=ErrorCategory.CONFIG,
        ) from exc


async def _exchange(
    client: httpx.AsyncClient, ctx: NodeContext, config: HttpConfig
) -> tuple[httpx.Response, bytes]:
    import httpx

    guard = get_url_guard(ctx)
    check_destination(config.url)
    # Before the request is even built: a URL httpx cannot parse may still be one a resolver
    # reads as a forbidden address, and it is a policy matter, not a typo.
    await guard(config.url)
    request = _build_request(client, ctx, config)
    for hop in range(MAX_REDIRECTS + 1):
        if hop:
            # A redirect keeps custom headers (httpx drops only Authorization across hosts).
            check_destination(str(request.url))
        if hop or str(request.url) != config.url:
            await guard(str(request.url))
        try:
            response = await client.send(request, stream=True, follow_redirects=False)
        except httpx.RemoteProtocolError as exc:
            location = getattr(exc, UNREADABLE_LOCATION, None)
            if location is None:
                raise transport_error(config.method, request.url, exc) from exc
            # `Location: http://0177.0.0.1/` (octal): httpx cannot follow it, but resolvers
            # read it as an address, so it is a policy matter when the guard says so.
            await guard(urljoin(str(request.url), location))
            raise PermanentNodeError(
                f"{config.method} {display_url(request.url)} failed: redirected to an "
                f"invalid URL ({error_cause(exc)})",
                category=ErrorCategory.REDIRECTS,
            ) from exc
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise transport_error(config.method, request.url, exc) from exc
        try:
            if config.follow_redirects and response.next_request is not None:
                request = response.next_request
                continue
            body = await _read_limited(config.method, response, config.max_response_bytes)
            return response, body
        except httpx.HTTPError as exc:
            raise transport_error(config.method, request.url, exc) from exc
        finally:
            await response.aclose()
    raise PermanentNodeError(
        f"{config.method} {display_url(config.url)} failed: more than {MAX_REDIRECTS} redirects",
        category=ErrorCategory.REDIRECTS,
    )


async def run_http(ctx: NodeContext, config: HttpConfig) -> dict[str, Any]:
    """Send the request; return status, headers, parsed body, final URL and elapsed time."""
    started = time.perf_counter()
    shared = ctx.resources.http_client()
    if shared is not None:
        response, body = await _exchange(shared, ctx, config)
    else:
        policy = pinning_policy(ctx)
        async with build_http_client(timeout=config.timeout, url_policy=policy) as client:
            response, body = await _exchange(client, ctx, config)
    elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
    logger.debug(
        "%s %s -> %s in %.1f ms",
        config.method,
        _log_url(response.url),
        response.status_code,
        elapsed_ms,
    )
    if not config.status_ok(response.status_code):
        raise status_error(config.method, response.url, response, body)
    data = _parse_body(config.method, response, body, config.parse)
    return {
        "status_code": response.status_code,
        "headers": dict(response.headers.items()),
        "data": data,
        "response": data,  # reference 001 templates read `.output.response`, 003 `.output.data`
        "url": display_url(response.url),
        "elapsed_ms": elapsed_ms,
    }


SPEC = HandlerSpec(
    name="http",
    run=run_http,
    config_model=HttpConfig,
    aliases=("call_external_service",),
    description="HTTP request with httpx: method, url, headers, query, json or body; "
    "JSON responses parsed; connection errors, timeouts, 429 and 5xx retried (a Retry-After,"
    " in seconds or an HTTP date, is waited for at least, up to the retry policy's"
    " max_delay; a date already past asks for no wait).",
)
