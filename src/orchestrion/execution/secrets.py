"""The layers that keep secrets where the policy lets them go, and out of what is stored.

``SecretFlow`` refuses, before anything renders, an attempt whose config reads a secret
outside the request fields, and lets the http handler check, at each hop, where the secrets
its request carries may go (``governance/secret_routes.py``). ``Scrubbing`` replaces secret
values (and their common transforms) that a downstream echoed back in an output or an error:
a backstop, secrets being kept to request fields.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from orchestrion.core.events import ErrorInfo
from orchestrion.core.task_kinds import TaskKind
from orchestrion.definition.secret_flow import node_issues, secrets_sent
from orchestrion.dispatch.base import TaskMessage
from orchestrion.errors import HandlerNotFound, PolicyViolation
from orchestrion.execution.layers import Attempt, Layer, Proceed
from orchestrion.governance.secret_routes import Routing, sending
from orchestrion.governance.secret_scrub import Scrubber
from orchestrion.governance.trust import Trust
from orchestrion.handlers.base import HandlerSpec
from orchestrion.handlers.registry import HandlerRegistry
from orchestrion.handlers.resources import Resources

__all__ = ["Scrubbing", "SecretFlow", "canonical_name"]

_PROVIDER_HANDLERS = frozenset({"llm", "map"})  # the handlers that may call an llm provider


def canonical_name(registry: HandlerRegistry, name: Any) -> str | None:
    """The canonical name of handler ``name`` in ``registry``; None when it has none."""
    try:
        return registry.canonical_name(name) if isinstance(name, str) else None
    except HandlerNotFound:
        return None


def attempt_routing(resources: Resources, task: TaskMessage) -> Routing:
    """The process's routing, at the stricter of its trust and the attempt's."""
    routing = resources.controls.routing
    return routing if Trust.of(task.trust).trusted else routing.with_trust(False)


class SecretFlow(Layer):
    """Where the secrets of an attempt may flow (a process with secrets has this layer)."""

    __slots__ = ("registry", "resources")

    def __init__(self, registry: HandlerRegistry, resources: Resources) -> None:
        self.registry = registry
        self.resources = resources

    def check(self, task: TaskMessage) -> None:
        """Refuse a secret outside the request fields (overrides and definitions stored
        under another policy included: ``definition/secret_flow.py``)."""
        run = task.kind == TaskKind.RUN
        issues = node_issues(
            canonical_name(self.registry, task.handler),
            task.config,
            attempt_routing(self.resources, task),
            when=task.when if run else None,
            path=("config",) if run else ("compensate", "config"),
            canonical=lambda name: canonical_name(self.registry, name),
        )
        if issues:
            first = issues[0]
            where = ".".join(str(p) for p in first.path)
            raise PolicyViolation(f"{where}: {first.message}")

    async def call(self, attempt: Attempt, proceed: Proceed) -> Any:
        # The http handler checks where the secrets its request carries may go, at each hop.
        carried = secrets_sent(attempt.spec.name, attempt.task.config)
        with sending(carried, attempt_routing(self.resources, attempt.task)):
            return await proceed(attempt)


class Scrubbing(Layer):
    """Secrets and the llm providers' keys, replaced in what an attempt reports."""

    __slots__ = ("_scrubber", "registry", "resources", "secrets")

    def __init__(
        self, registry: HandlerRegistry, resources: Resources, secrets: Mapping[str, str]
    ) -> None:
        self.registry = registry
        self.resources = resources
        self.secrets = dict(secrets)
        self._scrubber = Scrubber(self.secrets.values())
        if self._scrubber:
            from orchestrion.governance.secret_logs import hide_in_logs

            hide_in_logs(self.secrets.values())
        self.provider_keys()  # hidden in logs from the start (httpcore logs headers)

    def output(self, task: TaskMessage, output: Any) -> Any:
        scrubber = self.scrubber_for(task)
        return scrubber.value(output) if scrubber is not None else output

    def error(self, task: TaskMessage, info: ErrorInfo) -> ErrorInfo:
        scrubber = self.scrubber_for(task)
        if scrubber is None:
            return info
        message = scrubber.text(info.message)
        tb = scrubber.text(info.traceback) if info.traceback is not None else None
        if message == info.message and tb == info.traceback:
            return info
        return replace(info, message=message, traceback=tb)

    def has_work_for(self, spec: HandlerSpec) -> bool:
        # Nothing to scrub ever, without secrets, from a handler that calls no provider.
        return bool(self._scrubber) or spec.name in _PROVIDER_HANDLERS

    def scrubber_for(self, task: TaskMessage) -> Scrubber | None:
        """What to scrub from the attempt's output and error: the secrets when its config
        reads them; the llm providers' keys when it may call a provider (an echoing
        provider repeats the Authorization header it was sent)."""
        secrets = self._scrubber if self._scrubber and _mentions_secrets(task) else None
        if canonical_name(self.registry, task.handler) not in _PROVIDER_HANDLERS:
            return secrets
        keys = self.provider_keys()
        if not keys:
            return secrets
        if secrets is None:
            return Scrubber(keys)
        return Scrubber([*self.secrets.values(), *keys])

    def provider_keys(self) -> list[str]:
        """The keys of the configured llm providers (and ``OPENAI_API_KEY``), read from the
        environment now as the llm handler reads them at call time."""
        providers = self.resources.controls.routing.providers
        keys = [key for key in (p.key() for p in providers.every()) if key]
        if keys:
            from orchestrion.governance.secret_logs import hide_in_logs

            hide_in_logs(keys)
        return keys


def _mentions_secrets(task: TaskMessage) -> bool:
    return "secrets" in json.dumps(task.config) if task.config else False
