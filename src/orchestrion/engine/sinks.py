"""The event sinks of an engine, made from its settings (``sinks/config.py``).

A ``redis_stream`` sink without a URL uses ``ORCHESTRION_REDIS_URL``; a webhook sink goes
through the URL guard of the policy in force (the http handler's), read at each connection.
A configuration that cannot work (a secret's variable unset, a Redis sink with no URL) stops
the engine's start with a message naming the sink.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrion.errors import ConfigurationError

if TYPE_CHECKING:
    from orchestrion.engine.facade import Engine
    from orchestrion.sinks.base import Sink
    from orchestrion.sinks.config import SinksConfig

__all__ = ["make_sinks", "sinks_config"]


def sinks_config(engine: Engine) -> SinksConfig | None:
    """The sinks the engine's settings configure; None without any (then nothing of the
    sinks is even imported: a plain run does not pay for them)."""
    settings = engine.settings
    if settings.sinks_file is None and not settings.sinks:
        return None
    from orchestrion.sinks.config import load_sinks

    config = load_sinks(settings.sinks_file, settings.sinks)
    return config if config.sinks else None


def make_sinks(engine: Engine, config: SinksConfig) -> list[Sink]:
    """One sink per configured entry."""
    from orchestrion.sinks.config import (
        KafkaSinkConfig,
        NatsSinkConfig,
        RedisStreamSinkConfig,
        WebhookSinkConfig,
        secret_from_env,
    )

    sinks: list[Sink] = []
    for entry in config.sinks:
        if isinstance(entry, WebhookSinkConfig):
            from orchestrion.sinks.webhook import WebhookSink

            sinks.append(WebhookSink(entry, lambda: engine.governance.url_policy))
        elif isinstance(entry, RedisStreamSinkConfig):
            from orchestrion.cluster.event_stream import RedisStreamSink

            url = entry.url
            if entry.url_env is not None:
                url = secret_from_env(entry.url_env, f"sink '{entry.name}'")
            url = url or engine.settings.redis_url
            if not url:
                raise ConfigurationError(
                    f"sink '{entry.name}': a redis_stream sink needs 'url', 'url_env' or"
                    " ORCHESTRION_REDIS_URL"
                )
            sinks.append(RedisStreamSink(entry, url))
        elif isinstance(entry, NatsSinkConfig):
            from orchestrion.sinks.nats import NatsSink

            sinks.append(NatsSink(entry))
        elif isinstance(entry, KafkaSinkConfig):
            from orchestrion.sinks.kafka import KafkaSink

            sinks.append(KafkaSink(entry))
    return sinks
