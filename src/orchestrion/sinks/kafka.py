"""``KafkaSink``: produce each event to a Kafka topic, keyed by execution id.

The record's value is the event's JSON, its key the execution id (so one execution's events
stay in one partition, in order), its headers ``orchestrion-event-id`` and
``orchestrion-event-type``. The producer waits for every in-sync replica (``acks=all``) with
idempotence on, so a retry inside the client does not write twice. Uses ``aiokafka``
(``pip install orchestrion[kafka]``).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Sequence
from typing import Any

from orchestrion.sinks.base import Configured, Outcome, all_failed, close_quietly, describe
from orchestrion.sinks.config import KafkaSinkConfig, secret_from_env
from orchestrion.sinks.envelope import OutboundEvent

__all__ = ["KafkaSink", "record_of"]


def record_of(event: OutboundEvent) -> dict[str, Any]:
    """The producer's arguments for ``event`` (value, key, headers)."""
    return {
        "value": event.body,
        "key": event.execution_id.encode(),
        "headers": [
            ("orchestrion-event-id", event.id.encode()),
            ("orchestrion-event-type", event.type.encode()),
        ],
    }


class KafkaSink(Configured[KafkaSinkConfig]):
    """Produces events to Kafka (see the module docstring). ``producer`` makes the client
    (aiokafka's ``AIOKafkaProducer`` by default; a seam for tests without a broker)."""

    def __init__(self, config: KafkaSinkConfig, producer: Callable[..., Any] | None = None) -> None:
        self.config = config
        self._password = secret_from_env(config.password_env, f"sink '{config.name}'")
        self._make = producer
        self._producer: Any = None

    def options(self) -> dict[str, Any]:
        """The producer's settings from the configuration."""
        options: dict[str, Any] = {
            "bootstrap_servers": list(self.config.bootstrap_servers),
            "client_id": "orchestrion-events",
            "acks": "all",
            "enable_idempotence": True,
            "request_timeout_ms": int(self.config.timeout * 1000),
            "security_protocol": self.config.security_protocol,
        }
        if self.config.security_protocol in ("SSL", "SASL_SSL"):
            # aiokafka takes TLS only with a context: the system's trust store, verified.
            options["ssl_context"] = ssl.create_default_context()
        if self.config.sasl_mechanism is not None:
            options["sasl_mechanism"] = self.config.sasl_mechanism
            options["sasl_plain_username"] = self.config.username
            options["sasl_plain_password"] = self._password
        return options

    async def _started(self) -> Any:
        if self._producer is None:
            make = self._make
            if make is None:
                from aiokafka import AIOKafkaProducer  # the optional dependency

                make = AIOKafkaProducer
            producer = make(**self.options())
            try:
                await producer.start()
            except BaseException:
                await close_quietly(producer.stop, 5.0)
                raise
            self._producer = producer
        return self._producer

    async def publish(
        self, events: Sequence[OutboundEvent], *, deadline: float | None = None
    ) -> list[Outcome]:
        if not events:
            return []
        try:
            async with asyncio.timeout(self.config.timeout):
                producer = await self._started()
                futures = [
                    await producer.send(self.config.topic, **record_of(event)) for event in events
                ]
        except TimeoutError:
            await self._drop()
            return all_failed(events, f"Kafka did not answer in {self.config.timeout:g} s")
        except Exception as exc:
            await self._drop()
            return all_failed(events, describe(exc))
        outcomes: list[Outcome] = []
        for future in futures:
            try:
                async with asyncio.timeout(self.config.timeout):
                    await future
                outcomes.append(None)
            except TimeoutError:
                outcomes.append(f"Kafka did not acknowledge in {self.config.timeout:g} s")
            except Exception as exc:
                outcomes.append(describe(exc))
        return outcomes

    async def _drop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await close_quietly(producer.stop, 5.0)

    async def close(self) -> None:
        await self._drop()
