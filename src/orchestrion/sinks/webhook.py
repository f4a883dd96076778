"""``WebhookSink``: POST each event as JSON to a URL, signed, through the SSRF guard.

Each request carries the event's JSON (``OutboundEvent.body``) and the headers:
``X-Orchestrion-Event`` (the type), ``X-Orchestrion-Delivery`` and ``Idempotency-Key`` (the
event id: a receiver deduplicates on it, since an event may come twice), and with a secret
``X-Orchestrion-Signature: t=<unix seconds>,v1=<hex>`` and ``X-Hub-Signature-256:
sha256=<hex>`` (``governance/webhook_signing.py``). A 2xx answer takes the event; anything
else (another status, a timeout, a refused connection, a URL the guard blocks) is a reason
to try again later.

The connection goes through the policy's URL guard as the http handler's do
(``governance/pinning.py``): the name is resolved and every address checked at connect time,
so a sink URL cannot reach what a workflow's request may not. Redirects are not followed.

A sink's URL is a credential as often as not (a Slack or Teams hook's path, a token in the
query, a user and password): httpx's request line names it at INFO, so while a sink sends,
that line names the sink and its host only, and so do the reasons it records.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar

import httpx

from orchestrion.errors import PolicyViolation
from orchestrion.governance.pinning import PinnedBackend, PinnedTransport
from orchestrion.governance.ssrf import UrlPolicy
from orchestrion.governance.webhook_signing import (
    GITHUB_HEADER,
    SIGNATURE_HEADER,
    github_signature,
    sign,
)
from orchestrion.sinks.base import NOT_SENT, Configured, Outcome, describe
from orchestrion.sinks.config import WebhookSinkConfig, secret_from_env
from orchestrion.sinks.envelope import OutboundEvent

__all__ = ["WebhookSink"]

_USER_AGENT = "orchestrion-webhook/1"
_SENDING: ContextVar[str | None] = ContextVar("orchestrion_webhook_sink", default=None)


def shown_url(url: str | httpx.URL, sink: str) -> str:
    """What a log line or a recorded reason says of a sink's URL: its scheme and host, never
    its user, password, path or query."""
    try:
        parsed = httpx.URL(url) if isinstance(url, str) else url
        port = f":{parsed.port}" if parsed.port is not None else ""
        return f"{parsed.scheme}://{parsed.host}{port}/... (sink {sink})"
    except (httpx.InvalidURL, TypeError, ValueError):
        return f"[a URL] (sink {sink})"


class _SinkUrls(logging.Filter):
    """Rewrites the URL of httpx's lines logged while a webhook sink sends (``_SENDING``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        sink = _SENDING.get()
        if sink is not None:
            # The formatted line, whatever shape masking left its arguments in (a URL, a
            # masked string, or already merged into the message).
            text = record.getMessage()
            record.msg = _URL.sub(lambda m: shown_url(m.group(), sink), text)
            record.args = ()
        return True


_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"']+")
_URL_FILTER = _SinkUrls()


class WebhookSink(Configured[WebhookSinkConfig]):
    """Sends events to one webhook URL (see the module docstring)."""

    def __init__(
        self,
        config: WebhookSinkConfig,
        url_policy: Callable[[], UrlPolicy | None],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._secret = _encoded(secret_from_env(config.secret_env, f"sink '{config.name}'"))
        self._policy = url_policy
        self._clock = clock
        self._client: httpx.AsyncClient | None = None
        logging.getLogger("httpx").addFilter(_URL_FILTER)  # once: the same filter object

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            limits = httpx.Limits(
                max_connections=self.config.concurrency,
                max_keepalive_connections=self.config.concurrency,
            )
            transport = PinnedTransport(
                PinnedBackend(self._policy), verify=True, trust_env=False, limits=limits
            )
            self._client = httpx.AsyncClient(
                transport=transport,
                timeout=self.config.timeout,
                follow_redirects=False,
                trust_env=False,
            )
        return self._client

    def headers(self, event: OutboundEvent) -> dict[str, str]:
        """The request headers of ``event`` (signed when the sink has a secret)."""
        headers = {
            **self.config.headers,
            "Content-Type": "application/json",
            "User-Agent": _USER_AGENT,
            "X-Orchestrion-Event": event.type,
            "X-Orchestrion-Delivery": event.id,
            "Idempotency-Key": event.id,
        }
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign(self._secret, event.body, int(self._clock()))
            headers[GITHUB_HEADER] = github_signature(self._secret, event.body)
        return headers

    async def publish(
        self, events: Sequence[OutboundEvent], *, deadline: float | None = None
    ) -> list[Outcome]:
        """One request per event: an execution's events one after the other, in order,
        different executions' side by side (at most ``concurrency`` requests at once).

        After an event is not taken, the later ones of its execution are not sent (they are
        owed, in order, behind it); after the host could not be reached at all (a refused
        connection, a timeout), nothing more of the page is sent: a host that is down costs
        one timeout per page, not one per event. Past ``deadline`` nothing more is started:
        a webhook slower than the other sinks does not hold their pages.
        """
        policy = self._policy()
        if policy is not None and events:
            try:
                await policy.check(self.config.url)  # a clear refusal, the same for every event
            except PolicyViolation as exc:
                return [self._hidden(f"refused by the URL guard: {exc}")] * len(events)
        gate = asyncio.Semaphore(self.config.concurrency)
        outcomes: list[Outcome] = [None] * len(events)
        by_execution: dict[str, list[int]] = {}
        for index, event in enumerate(events):
            by_execution.setdefault(event.execution_id, []).append(index)
        unreachable: list[str] = []

        async def in_order(indexes: list[int]) -> None:
            earlier: Outcome = None
            for index in indexes:
                if unreachable:
                    outcomes[index] = f"{NOT_SENT} {unreachable[0]}"
                    continue
                if earlier is not None:
                    outcomes[index] = f"{NOT_SENT} an earlier event of its execution was not taken"
                    continue
                if deadline is not None and time.monotonic() > deadline:
                    outcomes[index] = f"{NOT_SENT} the page's time ran out (a slow webhook)"
                    continue
                async with gate:
                    earlier, down = await self._send(events[index])
                outcomes[index] = earlier
                if down and earlier is not None:
                    unreachable.append(earlier)

        await asyncio.gather(*(in_order(indexes) for indexes in by_execution.values()))
        return outcomes

    async def _send(self, event: OutboundEvent) -> tuple[Outcome, bool]:
        """The outcome of one request, and whether the host could not be reached at all."""
        sending = _SENDING.set(self.name)
        try:  # connections go through the guard too (PinnedBackend): DNS may change
            response = await self._http().post(
                self.config.url, content=event.body, headers=self.headers(event)
            )
        except PolicyViolation as exc:
            return self._hidden(f"refused by the URL guard: {exc}"), True
        except (httpx.ConnectError, httpx.TimeoutException) as exc:
            return self._hidden(describe(exc)), True
        except httpx.HTTPError as exc:
            return self._hidden(describe(exc)), False
        finally:
            _SENDING.reset(sending)
        if 200 <= response.status_code < 300:
            return None, False
        return f"HTTP {response.status_code} from the webhook", False

    def _hidden(self, reason: str) -> str:
        """``reason`` without the sink's URL (an error may quote it)."""
        url = self.config.url
        return reason.replace(url, shown_url(url, self.name)) if url in reason else reason

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


def _encoded(secret: str | None) -> bytes | None:
    return None if secret is None else secret.encode()
