"""Workflows that carry personal data, a local HTTP server they call, and the check that
none of the values shows up where it must not (issue #6: logs, and callers without admin).

The values are an e-mail address, a phone number, a card number that passes the Luhn check
and a US social security number. The e-mail goes into a URL path (where httpx's request log
line shows it); the others into a JSON body, since a masker cannot recognise percent-encoded
digits in a query string.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any

from loopback_listener import serving

__all__ = ["GOVERNANCE_YAML", "PII", "assert_no_pii", "echo_server", "failing", "profile"]

PII = {
    "email": "ada.lovelace@example.com",
    "phone": "+44 20 7946 0958",
    "card": "4111 1111 1111 1111",
    "ssn": "123-45-6789",
}

_ALL = "{{ input.email }} {{ input.phone }} card {{ input.card }} id {{ input.ssn }}"

# The service may refuse dotted python paths outside an allowlist: these tests name `logging`
# (a python node that logs its input) and `ipaddress` (one that raises with it).
GOVERNANCE_YAML = """\
version: 1
python:
  allowed_modules: [logging, ipaddress]
"""


def profile(url: str) -> dict[str, Any]:
    """Completes: logs its input, calls ``url``, keeps classified and public outputs."""
    return {
        "name": "pii-profile",
        "dag": {
            "nodes": [
                {"id": "input", "handler": "input", "data_classification": "pii"},
                {
                    "id": "log_input",
                    "handler": "python",
                    "dependencies": ["input"],
                    "config": {"function": "logging:warning", "params": {"msg": f"got {_ALL}"}},
                },
                {
                    "id": "call",
                    "handler": "http",
                    "dependencies": ["input"],
                    "data_classification": "pii",
                    "config": {
                        "url": url + "/customers/{{ input.email }}",
                        "method": "POST",
                        "json": {
                            "phone": "{{ input.phone }}",
                            "card": "{{ input.card }}",
                            "ssn": "{{ input.ssn }}",
                        },
                    },
                },
                {
                    "id": "card",
                    "handler": "noop",
                    "dependencies": ["input"],
                    "data_classification": "pii",
                    "config": {"value": {"email": "{{ input.email }}", "card": "{{ input.card }}"}},
                },
                {"id": "count", "handler": "noop", "config": {"value": "3 items"}},
                {
                    "id": "output",
                    "handler": "output",
                    "dependencies": ["log_input", "call", "card", "count"],
                },
            ]
        },
    }


def failing() -> dict[str, Any]:
    """Fails: one node raises a node error naming the values, one a plain exception."""
    no_retry = {"max_attempts": 1}
    return {
        "name": "pii-failing",
        "dag": {
            "nodes": [
                {"id": "input", "handler": "input"},
                {
                    "id": "bill",
                    "handler": "python",
                    "dependencies": ["input"],
                    "data_classification": "pii",
                    "retry": no_retry,
                    "config": {"function": "fail", "params": {"message": f"cannot bill {_ALL}"}},
                },
                {
                    "id": "parse",
                    "handler": "python",
                    "dependencies": ["input"],
                    "retry": no_retry,
                    "config": {"function": "ipaddress:ip_address", "params": {"address": _ALL}},
                },
            ]
        },
    }


def assert_no_pii(text: str, where: str = "") -> None:
    for kind, value in PII.items():
        assert value not in text, f"unmasked {kind} {value!r} in {where}:\n{text[:4000]}"
    digits = PII["card"].replace(" ", "")
    assert digits not in text, f"unmasked card digits in {where}"


class _Echo(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        answer = json.dumps({"path": self.path, "received": body}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the test server's own access lines are not Orchestrion's logs


@contextmanager
def echo_server() -> Iterator[str]:
    """A loopback HTTP server answering POSTs with what it received; yields its URL."""
    with serving(_Echo) as url:
        yield url
