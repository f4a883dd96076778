"""The header helpers of the API's layers answer what Starlette's ``Headers`` would."""

from __future__ import annotations

from email.message import Message
from typing import Any

import pytest
from starlette.datastructures import Headers, MutableHeaders

from orchestrion.api.media import media_type_of
from orchestrion.api.raw_headers import RequestHeaders, add_answer_headers, header

_REQUESTS: list[list[tuple[bytes, bytes]]] = [
    [],
    [(b"host", b"example.org"), (b"content-type", b"application/json")],
    [(b"x-request-id", b"first"), (b"x-request-id", b"second")],
    [(b"origin", b"https://caf\xe9.example"), (b"content-length", b"12")],
]
_NAMES = ["host", "content-type", "x-request-id", "origin", "content-length", "cookie"]


@pytest.mark.parametrize("raw", _REQUESTS)
def test_request_headers_read_as_starlette_reads_them(raw: list[tuple[bytes, bytes]]) -> None:
    scope: dict[str, Any] = {"headers": raw}
    expected = Headers(scope={"headers": list(raw)})
    for name in _NAMES:
        assert header(scope, name.encode()) == expected.get(name)
        assert RequestHeaders(scope).get(name) == expected.get(name)
        assert RequestHeaders(scope).get(name.upper()) == expected.get(name)


_ANSWERS: list[list[tuple[bytes, bytes]]] = [
    [],
    [(b"content-type", b"application/json"), (b"content-length", b"2")],
    [(b"x-request-id", b"a"), (b"cache-control", b"max-age=60"), (b"x-request-id", b"b")],
    [(b"ratelimit-limit", b"5"), (b"x-content-type-options", b"nosniff")],
]


@pytest.mark.parametrize("raw", _ANSWERS)
def test_answer_headers_set_as_mutable_headers_sets_them(raw: list[tuple[bytes, bytes]]) -> None:
    replace = [("X-Request-ID", "id-1"), ("RateLimit-Limit", "1000")]
    default = [("X-Content-Type-Options", "nosniff"), ("Cache-Control", "no-store")]
    expected_message: dict[str, Any] = {"type": "http.response.start", "headers": list(raw)}
    expected = MutableHeaders(scope=expected_message)
    for name, value in replace:
        expected[name] = value
    for name, value in default:
        expected.setdefault(name, value)

    message: dict[str, Any] = {"type": "http.response.start", "headers": tuple(raw)}
    add_answer_headers(
        message,
        replace=[(n.lower().encode(), v.encode()) for n, v in replace],
        default=[(n.lower().encode(), v.encode()) for n, v in default],
    )
    assert message["headers"] == expected.raw


def _by_email(value: str) -> str:
    message = Message()
    message["content-type"] = value
    return message.get_content_type().lower()


@pytest.mark.parametrize(
    "value",
    [
        "application/json",
        "Application/JSON; charset=utf-8",
        "application/merge-patch+json",
        "text/yaml",
        "nonsense",
        "",
        "application/json, text/plain",
        "application/" + "x" * 300,  # longer than the values kept
    ],
)
def test_media_type_of_is_the_parse_of_the_header(value: str) -> None:
    assert media_type_of(value) == _by_email(value)
    assert media_type_of(value) == _by_email(value)  # kept: the same answer again
