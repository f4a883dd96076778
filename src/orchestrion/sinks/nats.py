"""``NatsSink``: publish each event on NATS subject ``<subject>.<event type>``.

The message is the event's JSON; headers carry ``Nats-Msg-Id`` (the event id: a JetStream
stream on these subjects drops a duplicate within its window) and ``Orchestrion-Event`` (the
type). A page is published then flushed: once the server acknowledged the flush, it has the
page (core NATS then delivers to the subscribers present; capture the subjects in a JetStream
stream to keep them). Uses the ``nats-py`` client (``pip install orchestrion[nats]``).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from typing import Any

from orchestrion.sinks.base import Configured, Outcome, all_failed, close_quietly, describe
from orchestrion.sinks.config import NatsSinkConfig, secret_from_env
from orchestrion.sinks.envelope import OutboundEvent

__all__ = ["NatsSink", "subject_of"]


def subject_of(prefix: str, event_type: str) -> str:
    """The subject of an event: ``prefix.type``, with characters NATS reserves replaced."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in event_type)
    return f"{prefix}.{safe.strip('.') or '_'}"


class NatsSink(Configured[NatsSinkConfig]):
    """Publishes events to NATS (see the module docstring)."""

    def __init__(self, config: NatsSinkConfig) -> None:
        self.config = config
        self._token = secret_from_env(config.token_env, f"sink '{config.name}'")
        self._password = secret_from_env(config.password_env, f"sink '{config.name}'")
        self._client: Any = None
        self._lock = asyncio.Lock()

    def options(self) -> dict[str, Any]:
        """The client's settings from the configuration."""
        options: dict[str, Any] = {
            "servers": list(self.config.servers),
            "connect_timeout": max(1, int(self.config.timeout)),
            # Publishing is retried by the outbox, not buffered here through an outage.
            "allow_reconnect": True,
            "max_reconnect_attempts": 3,
            "name": "orchestrion-events",
        }
        if self._token is not None:
            options["token"] = self._token
        if self.config.user is not None:
            options["user"], options["password"] = self.config.user, self._password
        if self.config.tls:
            options["tls"] = ssl.create_default_context()
        return options

    async def _connected(self) -> Any:
        async with self._lock:
            client = self._client
            if client is not None and client.is_connected:
                return client
            import nats  # the optional dependency, on first use

            if client is not None:
                await close_quietly(client.close, 2.0)
            self._client = await nats.connect(**self.options())
            return self._client

    async def publish(
        self, events: Sequence[OutboundEvent], *, deadline: float | None = None
    ) -> list[Outcome]:
        if not events:
            return []
        try:
            async with asyncio.timeout(self.config.timeout):
                client = await self._connected()
                for event in events:
                    await client.publish(
                        subject_of(self.config.subject, event.type),
                        event.body,
                        headers={"Nats-Msg-Id": event.id, "Orchestrion-Event": event.type},
                    )
                await client.flush(timeout=self.config.timeout)
        except TimeoutError:
            return all_failed(events, f"NATS did not answer in {self.config.timeout:g} s")
        except Exception as exc:  # the client's errors have no common base worth naming
            await self._drop()
            return all_failed(events, describe(exc))
        return [None] * len(events)

    async def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await close_quietly(client.close, 2.0)

    async def close(self) -> None:
        await self._drop()
