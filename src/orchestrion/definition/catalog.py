"""What checking a definition needs to know of the handlers, as protocols the caller fills.

The definition layer sits below the handlers and the governance policy, so it does not import
them: whoever checks a definition passes a ``HandlerCatalog`` (the process's handler registry
is one) that names the handlers, gives each one's config model, and says how the policy in
force routes secrets (``SecretRouting``: the governance policy's ``Routing`` is one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from pydantic import BaseModel

__all__ = ["HandlerCatalog", "HandlerEntry", "SecretRouting"]


class HandlerEntry(Protocol):
    """One handler as validation reads it (a ``HandlerSpec`` is one)."""

    @property
    def name(self) -> str:
        """The canonical name."""

    @property
    def aliases(self) -> tuple[str, ...]: ...

    @property
    def config_model(self) -> type[BaseModel] | None:
        """The model a node's config must validate against; None accepts any config."""

    @property
    def raw_keys(self) -> frozenset[str]:
        """Config keys the handler evaluates itself: not rendered, so not checked as templates."""

    @property
    def waits(self) -> bool:
        """Whether it pauses its node for a time or a person (so cannot run per map item)."""


class SecretRouting(Protocol):
    """Where the policy in force lets secrets and provider credentials go."""

    def unroutable(self, name: str) -> str | None:
        """Why secret ``name`` may be sent nowhere at all, or None."""

    def problem(self, name: str, url: str) -> str | None:
        """Why secret ``name`` may not be sent to ``url``, or None when it may."""

    def credential_problems(self, config: Mapping[str, Any]) -> list[tuple[str, str]]:
        """(field, message) for each way an llm config pairs a credential with an endpoint."""

    def provider_names(self) -> Sequence[str]:
        """The llm providers a node may name."""


class HandlerCatalog(Protocol):
    """The handlers a definition may use, and the secret routing its check applies."""

    def get(self, name: str) -> HandlerEntry:
        """The handler called ``name`` (or an alias); raises ``HandlerNotFound``."""

    def canonical_name(self, name: str) -> str:
        """The canonical name of ``name``; raises ``HandlerNotFound``."""

    def __contains__(self, name: object) -> bool: ...

    def names(self) -> list[str]:
        """Every accepted name, aliases included, sorted."""

    def secret_routing(self, context: Mapping[str, Any] | None) -> SecretRouting:
        """The routing that applies under the validation ``context`` (the one given to
        ``check_spec``): the policy's when it carries one, else one's own, trusted."""
