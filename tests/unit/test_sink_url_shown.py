"""What logs and recorded reasons say of a webhook sink's URL (sinks/webhook.py)."""

from __future__ import annotations

import logging

import httpx
import pytest

from orchestrion.sinks.webhook import shown_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.slack.com/services/T0/B0/SECRETPATH", "https://hooks.slack.com/..."),
        ("http://user:SECRETPW@127.0.0.1:8080/x?token=SECRETQ", "http://127.0.0.1:8080/..."),
        ("https://h.example/x#SECRETFRAG", "https://h.example/..."),
        ("http://[::1]:9/SECRET", "http://::1:9/..."),
    ],
)
def test_a_sink_url_is_shown_by_scheme_and_host_only(url: str, shown: str) -> None:
    for given in (url, httpx.URL(url)):
        text = shown_url(given, "ops")
        assert text == f"{shown} (sink ops)"
        assert "SECRET" not in text


def test_httpx_lines_name_the_sink_not_its_url(caplog: pytest.LogCaptureFixture) -> None:
    import orchestrion.sinks.webhook as webhook

    log = logging.getLogger("httpx")
    log.addFilter(webhook._URL_FILTER)
    url = httpx.URL("https://u:SECRETPW@h.example/SECRETPATH")
    token = webhook._SENDING.set("ops")
    try:
        with caplog.at_level(logging.INFO, logger="httpx"):
            log.info('HTTP Request: %s %s "%s"', "POST", url, "HTTP/1.1 500")
            log.info("HTTP Request: POST %s", str(url))  # a string, as masking may leave it
            log.info("HTTP Request: POST https://[email]/SECRETPATH?q=SECRETQ 500")  # merged
    finally:
        webhook._SENDING.reset(token)
    with caplog.at_level(logging.INFO, logger="httpx"):
        log.info("HTTP Request: %s %s", "GET", httpx.URL("https://node.example/kept"))
    *sent, second = (r.getMessage() for r in caplog.records)
    assert len(sent) == 3
    for first in sent:
        assert "SECRET" not in first and "(sink ops)" in first, first
    assert second.endswith("https://node.example/kept")  # an http node's line is not touched
