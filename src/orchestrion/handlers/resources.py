"""What handlers are given to work with: the process's shared things and the policy's controls.

``Resources`` is built once per process (the engine's in-process workers, a scale-out worker)
and handed to every attempt through ``NodeContext.resources``. Its fields are typed and
named; none is looked up by a string.

The policy's controls (``Controls``) are required: a process cannot build its resources
without each of them, so a control is never off because someone forgot to install it. A
control the policy turns off is an explicit object that allows everything (``ALLOW_ANY_URL``,
``ALLOW_ANY_PROMPT``, ``python_allowlist=None``), chosen where the controls are built from
the policy (``execution/enforce.py``), or by ``Controls.unrestricted()`` for code that runs
its own definitions with no policy at all (tests, the Python API's handler tests).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from orchestrion.governance.llm_policy import LlmPolicy
from orchestrion.governance.secret_routes import Routing
from orchestrion.templates.rendering import TemplateLimits

if TYPE_CHECKING:
    import httpx

    from orchestrion.handlers.base import NodeContext
    from orchestrion.handlers.registry import HandlerRegistry

__all__ = [
    "ALLOW_ANY_PROMPT",
    "ALLOW_ANY_URL",
    "ChildStarter",
    "ChildWaiter",
    "Children",
    "Controls",
    "LlmGuard",
    "ProgressReport",
    "Resources",
    "UrlGuard",
]

UrlGuard = Callable[[str], Awaitable[None]]
"""``await guard(url)`` raises (``PolicyViolation``) to block a request to ``url``."""

LlmGuard = Callable[[str, list[dict[str, str]]], Awaitable[None]]
"""``await guard(model, messages)`` raises to block a chat completion."""

ChildStarter = Callable[["NodeContext", Any], Awaitable[Any]]
"""``await start(ctx, workflow_config)``: a ``workflow`` node's child execution, started."""

ChildWaiter = Callable[[str], Awaitable[Any]]
"""``await wait(child_execution_id)``: the finished child's node output, or it raises."""

ProgressReport = Callable[[str, str, dict[str, int]], None]
"""``report(execution_id, node_id, counts)``: a map node's live per-item progress."""


async def _allow_any_url(url: str) -> None:
    """The URL guard of a policy that restricts no URL."""


async def _allow_any_prompt(model: str, messages: list[dict[str, str]]) -> None:
    """The LLM guard of a process that adds no check of its own to the policy's."""


ALLOW_ANY_URL: UrlGuard = _allow_any_url
ALLOW_ANY_PROMPT: LlmGuard = _allow_any_prompt


@dataclass(frozen=True, slots=True)
class Controls:
    """The policy's controls over what handlers may do; every one must be given.

    ``python_allowlist`` is the modules the python handler may import from in this process,
    ``None`` for any (a trusted process); ``untrusted_python_allowlist`` is the one untrusted
    work gets even in a trusted process (``for_untrusted_work``).
    """

    url_guard: UrlGuard  # the SSRF guard of the http and llm handlers (a ``UrlPolicy``)
    llm_policy: LlmPolicy
    llm_guard: LlmGuard  # a further check of every chat completion
    routing: Routing  # llm providers, where secrets may go, and the trust they apply to
    python_allowlist: tuple[str, ...] | None
    untrusted_python_allowlist: tuple[str, ...]
    template_limits: TemplateLimits  # of every render of an attempt
    _untrusted: Controls | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Typed, but built by plug-ins and tests too: a control that is not one stops the
        # process here rather than turning itself off at the first attempt.
        problems = [
            name
            for name, ok in (
                ("url_guard", callable(self.url_guard)),
                ("llm_policy", isinstance(self.llm_policy, LlmPolicy)),
                ("llm_guard", callable(self.llm_guard)),
                ("routing", isinstance(self.routing, Routing)),
                ("python_allowlist", _is_allowlist(self.python_allowlist, optional=True)),
                ("untrusted_python_allowlist", _is_allowlist(self.untrusted_python_allowlist)),
                ("template_limits", isinstance(self.template_limits, TemplateLimits)),
            )
            if not ok
        ]
        if problems:
            raise TypeError(f"invalid or missing controls: {', '.join(problems)}")

    @classmethod
    def unrestricted(cls) -> Controls:
        """No policy: any URL, model, prompt and module, no secret routes, default template
        limits. What one's own definitions run under without governance (tests)."""
        return cls(
            url_guard=ALLOW_ANY_URL,
            llm_policy=LlmPolicy(injection_phrases=()),
            llm_guard=ALLOW_ANY_PROMPT,
            routing=Routing(),
            python_allowlist=None,
            untrusted_python_allowlist=(),
            template_limits=TemplateLimits(),
        )

    def for_untrusted_work(self) -> Controls:
        """These controls as untrusted work gets them: the untrusted allowlist, and secrets
        and credentials routed as for untrusted work (``governance/secret_routes.py``)."""
        if self.python_allowlist is not None:
            return self  # an untrusted process: they are already
        if self._untrusted is None:  # made once: every untrusted attempt asks for them
            untrusted = replace(
                self,
                python_allowlist=self.untrusted_python_allowlist,
                routing=self.routing.with_trust(False),
            )
            object.__setattr__(self, "_untrusted", untrusted)
            return untrusted
        return self._untrusted


def _is_allowlist(value: object, *, optional: bool = False) -> bool:
    if value is None:
        return optional
    return isinstance(value, tuple | list | frozenset | set) and all(
        isinstance(entry, str) for entry in value
    )


@dataclass(frozen=True, slots=True)
class Children:
    """How ``workflow`` and ``map`` nodes start child executions and wait for them; given by
    an engine (a process without one cannot run them)."""

    start: ChildStarter
    wait: ChildWaiter


@dataclass(slots=True)
class Resources:
    """Long-lived things handlers share inside one process, and the controls they obey.

    The HTTP pool is made by ``http_factory`` on first use: importing httpx and building a
    client cost tens of milliseconds, which a run without http or llm nodes need not pay.
    ``registry`` is where a ``map`` finds its inner handler (None: the default registry).
    """

    controls: Controls
    http: httpx.AsyncClient | None = None
    http_factory: Callable[[], httpx.AsyncClient] | None = None
    registry: HandlerRegistry | None = None
    children: Children | None = None
    progress: ProgressReport | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.controls, Controls):
            # A guard that is not there must stop the process, not turn a control off.
            raise TypeError(f"Resources needs the policy's Controls, got {self.controls!r}")

    def http_client(self) -> httpx.AsyncClient | None:
        """The shared client (made now if it is the first use), or None when there is none."""
        if self.http is None and self.http_factory is not None:
            self.http = self.http_factory()
        return self.http

    def with_controls(self, controls: Controls) -> Resources:
        """A view with other controls that shares this one's HTTP client (made once, by
        whichever uses it first) and everything else."""
        if controls is self.controls:
            return self
        if self.http is None and self.http_factory is None:
            return replace(self, controls=controls)
        return replace(self, controls=controls, http_factory=self._shared_client)

    def _shared_client(self) -> httpx.AsyncClient:
        client = self.http_client()
        assert client is not None  # it has a client or a factory
        return client

    async def aclose(self) -> None:
        """Close the shared client if one was made; a later use makes a new one."""
        if self.http is not None:
            client, self.http = self.http, None
            await client.aclose()
