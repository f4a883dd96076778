"""Where a secret's value may flow in a node: into the request it sends, and nowhere else.

A template reads ``secrets`` (found on its syntax tree: ``orchestrion.templates.secrets``) only
in the request fields of an ``http`` node or its compensation: ``headers`` values, ``json``
and ``body``. Not in the URL or query (URLs are quoted by errors, logs and the node's output),
not in an ``llm`` node (its credential is the provider's, and a prompt is a model's input
that comes back in its output), and not in any other handler, a ``when:`` condition, a
condition's cases, a ``map``'s per-item config or an ``output`` value: each of those ends up
in an output, an error, an event or a log, transformed or not. In a request field a secret
may only be interpolated, ``{{ secrets.NAME }}`` or ``{{ secrets['NAME'] }}`` as a whole
output expression (``SecretUse.computed``): nothing may compute with its value, since the
result of any computation (an error's message or kind, a branch taken) can be made to spell
the secret out. Naming each one also lets the policy say where it may go
(``governance/secret_routes.py``); where the URL is written out, that is checked here,
otherwise by the http handler before it connects.

``node_issues`` is the whole rule, and also applies the policy's credential rules to ``llm``
nodes (``SecretRouting.credential_problems``: ``governance/llm_providers.py``).
The definition check runs it at submission, ``override_issues`` on trigger-time node
overrides, and the executor again on every attempt (a definition stored under an older
policy included), so a node that breaks it fails as ``policy_violation`` before anything
renders.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from orchestrion.definition.catalog import HandlerCatalog, SecretRouting
from orchestrion.errors import DefinitionIssue, HandlerNotFound
from orchestrion.templates.rendering import expression_source, is_template
from orchestrion.templates.secrets import SECRETS_NAME, secret_use

__all__ = [
    "INTERPOLATION_ONLY",
    "REQUEST_FIELDS",
    "FlowIssue",
    "node_issues",
    "override_issues",
    "secrets_sent",
]

INTERPOLATION_ONLY = (
    "secrets may only be interpolated as {{ secrets.NAME }} (or {{ secrets['NAME'] }}), with "
    "literal text around it: no filter, test, operator, comparison, slice, method, loop, "
    "macro, set or condition may use a secret's value, since its result (an error, a branch "
    "taken) would spell the secret out"
)
"""Why a request field's template that computes with a secret is refused."""

REQUEST_FIELDS: Mapping[str, frozenset[str]] = {"http": frozenset({"headers", "json", "body"})}
"""Per handler (canonical name), the config keys that make up the request it sends."""

_CREDENTIAL_HANDLERS = frozenset({"llm", "map"})  # whose config may pair a key with a URL

Path = tuple[str | int, ...]
Canonical = Callable[[Any], str | None]


@dataclass(frozen=True, slots=True)
class FlowIssue:
    """One problem: the path inside the node (``("config", "headers", "X")``) and why."""

    path: Path
    message: str
    code: str = "policy_violation"


def _sources(value: Any, path: Path) -> Iterator[tuple[Path, str]]:
    """Every template string in ``value`` (raw keys included) with its path."""
    if isinstance(value, str):
        if is_template(value):
            yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _sources(item, (*path, key))
    elif isinstance(value, list | tuple):
        for k, item in enumerate(value):
            yield from _sources(item, (*path, k))


def _mentions(value: Any) -> bool:
    """Whether ``value`` may hold a string with the word ``secrets``: a cheap first look (a
    template without the word cannot read the namespace; a key or a repr may say it too,
    and then the full walk decides)."""
    try:
        return SECRETS_NAME in repr(value)
    except Exception:  # an odd object built through the Python API: look properly
        return True


def _condition_cases(config: Mapping[str, Any], path: Path) -> Iterator[tuple[Path, str]]:
    """A condition's cases are bare expressions (``x > 1``) as well as templates."""
    cases = config.get("cases")
    if not isinstance(cases, list):
        return
    for n, case in enumerate(cases):
        when = case.get("when") if isinstance(case, Mapping) else None
        if isinstance(when, str) and not is_template(when):
            yield (*path, "cases", n, "when"), expression_source(when)


def _refused(path: Path, handler: str | None) -> FlowIssue:
    where = f"'{handler}' node" if handler else "node"
    return FlowIssue(
        path,
        f"a template here reads secrets, which may only be used in the headers, json or "
        f"body of an http node (in a {where}'s other fields a secret, however transformed, "
        "would reach an output, an error or a log)",
        "secret_field",
    )


def node_issues(
    handler: str | None,
    config: Mapping[str, Any],
    routing: SecretRouting,
    *,
    when: str | None = None,
    path: Path = ("config",),
    canonical: Canonical = lambda name: name if isinstance(name, str) else None,
) -> list[FlowIssue]:
    """Every secret and credential problem of one node (or compensation) config.

    ``handler`` is the canonical handler name (None when unknown: every secret is refused);
    ``path`` where ``config`` sits in the node; ``canonical`` resolves handler names met
    inside it (a map's inner handler).
    """
    issues: list[FlowIssue] = []
    if handler not in _CREDENTIAL_HANDLERS and not _mentions(config):
        if when is not None and secret_use(expression_source(when)).reads:
            issues.append(_refused(("when",), handler))
        return issues  # the common case: nothing here reads secrets
    request = REQUEST_FIELDS.get(handler or "", frozenset())
    sources = list(_sources(config, path))
    if handler == "condition":
        sources += _condition_cases(config, path)
    for where, source in sources:
        use = secret_use(source)
        if not use.reads:
            continue
        if len(where) <= len(path) or where[len(path)] not in request:
            issues.append(_refused(where, handler))
        elif use.computed:
            issues.append(FlowIssue(where, INTERPOLATION_ONLY, "secret_field"))
        else:
            for name in sorted(use.names):
                issues.extend(_destination_issues(name, where, config, routing))
    if when is not None and secret_use(expression_source(when)).reads:
        issues.append(_refused(("when",), handler))
    issues.extend(_credential_issues(handler, config, routing, path, canonical))
    return issues


def _destination_issues(
    name: str, where: Path, config: Mapping[str, Any], routing: SecretRouting
) -> list[FlowIssue]:
    nowhere = routing.unroutable(name)
    if nowhere is not None:
        return [FlowIssue(where, nowhere)]
    url = config.get("url")
    if isinstance(url, str) and not is_template(url):
        problem = routing.problem(name, url)
        if problem is not None:
            return [FlowIssue(where, problem)]
    return []


def _credential_issues(
    handler: str | None,
    config: Mapping[str, Any],
    routing: SecretRouting,
    path: Path,
    canonical: Canonical,
) -> list[FlowIssue]:
    if handler == "map":
        inner = config.get("config")
        if isinstance(inner, Mapping) and canonical(config.get("handler")) == "llm":
            return _credential_issues("llm", inner, routing, (*path, "config"), canonical)
        return []
    if handler != "llm":
        return []
    issues = [
        FlowIssue((*path, field), message) for field, message in routing.credential_problems(config)
    ]
    provider = config.get("provider")
    known = routing.provider_names()
    if isinstance(provider, str) and not is_template(provider) and provider not in known:
        issues.append(
            FlowIssue(
                (*path, "provider"),
                f"unknown llm provider {provider!r} (configured: {', '.join(known)})",
                "unknown_provider",
            )
        )
    return issues


def secrets_sent(handler: str | None, config: Mapping[str, Any]) -> frozenset[str]:
    """The secrets named in the request fields of ``config`` (what ``sending`` is told)."""
    request = REQUEST_FIELDS.get(handler or "")
    if not request:
        return frozenset()
    names: set[str] = set()
    for key in request:
        for _, source in _sources(config.get(key), (key,)):
            names |= secret_use(source).names
    return frozenset(names)


def override_issues(
    nodes: Iterable[tuple[str, str, Mapping[str, Any], str | None]],
    overrides: Mapping[str, Mapping[str, Any]],
    routing: SecretRouting,
    registry: HandlerCatalog,
) -> list[DefinitionIssue]:
    """The problems trigger-time ``overrides`` bring to the nodes they patch.

    ``nodes`` gives (id, handler, config, when) of each node; only the patched ones are
    checked, with the patch merged over their config as the attempt will see it.
    """

    def canonical(name: Any) -> str | None:
        try:
            return registry.canonical_name(name) if isinstance(name, str) else None
        except HandlerNotFound:
            return None

    issues: list[DefinitionIssue] = []
    for node_id, handler, config, when in nodes:
        patch = overrides.get(node_id)
        if not patch:
            continue
        merged = {**config, **patch}
        found = node_issues(canonical(handler), merged, routing, when=when, canonical=canonical)
        for issue in found:
            field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in issue.path)
            issues.append(
                DefinitionIssue(issue.message, node=node_id, field=field[1:], code=issue.code)
            )
    return issues
