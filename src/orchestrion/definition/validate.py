"""Graph and content checks of a workflow, after the model has accepted its shape. O(V+E).

Checks: duplicate ids, reserved ids, unknown / self / repeated dependencies, cycles (with the
path of one cycle), unknown handlers (with close matches), handler config against the
handler's ``config_model``, template syntax, template names, template references to nodes
that are not ancestors (for ``config``, ``when`` and ``compensate.config``), and where secrets
and provider credentials may flow (``definition/secret_flow.py``).

Every problem is reported, not just the first. Issues carry the node index and the path inside
the node, so the loader can point at the source line. The graph checks are
``definition/graph_check.py``, a config against its model ``definition/config_check.py``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrion.definition.catalog import HandlerCatalog, HandlerEntry, SecretRouting
from orchestrion.definition.config_check import (
    config_errors,
    config_templates,
    describe_pydantic_error,
)
from orchestrion.definition.criteria import criteria_issues
from orchestrion.definition.graph_check import (
    GraphCheck,
    LocatedIssue,
    Path,
    Reference,
    format_path,
    gc_paused,
    quoted,
)
from orchestrion.definition.model import BRANCHING_HANDLER, NodeSpec, WorkflowSpec
from orchestrion.definition.secret_flow import node_issues
from orchestrion.errors import DefinitionIssue, HandlerNotFound
from orchestrion.templates.rendering import (
    RESERVED_NAMES,
    expression_source,
    is_template,
    template_info,
)

__all__ = [
    "LocatedIssue",
    "check_spec",
    "check_spec_bounded",
    "config_errors",
    "config_templates",
    "describe_pydantic_error",
    "format_path",
    "gc_paused",
    "map_item_problem",
    "validate_spec",
]

_ALWAYS_AVAILABLE = frozenset({"input", "secrets", "execution"})
_CREDENTIAL_HANDLERS = frozenset({"llm", "map"})
_MAP_HANDLER = "map"
_WORKFLOW_HANDLER = "workflow"


def map_item_problem(name: str, entry: HandlerEntry) -> str | None:
    """Why handler ``name`` (``entry``) cannot run per item of a map, or None when it can."""
    if entry.name == _MAP_HANDLER:
        return "a map cannot run `map` per item; run a sub-workflow per item instead"
    if entry.waits:
        return (
            f"handler '{name}' waits for a time or a person, so it cannot run per item "
            "of a map; run a sub-workflow per item (handler: workflow) that holds it"
        )
    return None


def compensation_problem(name: str, entry: HandlerEntry) -> str | None:
    """Why handler ``name`` (``entry``) cannot undo a node, or None when it can: a
    compensation runs to its end as one call, so one that would wait (for a time, a person,
    a child execution) or fan out has nothing to wait with, and would be taken as done."""
    if entry.waits or entry.name in (_MAP_HANDLER, _WORKFLOW_HANDLER):
        return (
            f"handler '{name}' waits or starts other work, so it cannot be a compensation, "
            "which runs as one call to its end; undo the node in a function (handler: python)"
        )
    return None


def validate_spec(
    spec: WorkflowSpec,
    registry: HandlerCatalog,
    *,
    context: Mapping[str, Any] | None = None,
) -> list[DefinitionIssue]:
    """Every graph and content problem of ``spec``; an empty list means it may run."""
    return [located.issue for located in check_spec(spec, registry, context=context)]


def check_spec(
    spec: WorkflowSpec,
    registry: HandlerCatalog,
    *,
    structure_only: Collection[int] = frozenset(),
    context: Mapping[str, Any] | None = None,
) -> list[LocatedIssue]:
    """``validate_spec`` with the location of each issue.

    Nodes whose index is in ``structure_only`` take part in the graph checks (ids,
    dependencies, cycles, references to them) but their handler, config and templates are
    not checked: the loader passes stand-ins for nodes the model already rejected.
    ``context`` is the pydantic validation context of handler configs (the service's
    governance passes its python allowlist there).
    """
    return check_spec_bounded(spec, registry, structure_only=structure_only, context=context)[0]


def check_spec_bounded(
    spec: WorkflowSpec,
    registry: HandlerCatalog,
    *,
    max_issues: int | None = None,
    structure_only: Collection[int] = frozenset(),
    context: Mapping[str, Any] | None = None,
) -> tuple[list[LocatedIssue], int]:
    """``check_spec`` keeping at most ``max_issues`` issues, and how many more it found.

    Past the limit, issues are only counted: their messages (close-match suggestions
    especially) are not worked out.
    """
    checker = _Checker(
        spec=spec,
        registry=registry,
        structure_only=structure_only,
        context=context,
        max_issues=max_issues,
    )
    return checker.run(), checker.unlisted


@dataclass(slots=True, kw_only=True)
class _Checker(GraphCheck):
    """The whole check: the graph checks, then each node's handler, config and templates."""

    registry: HandlerCatalog
    structure_only: Collection[int] = frozenset()
    context: Mapping[str, Any] | None = None
    handlers: dict[str, HandlerEntry] = field(default_factory=dict)
    handler_problems: dict[str, str] = field(default_factory=dict)
    routing: SecretRouting | None = None  # asked of the registry once, on first need

    def run(self) -> list[LocatedIssue]:
        self.nodes = self.spec.dag.nodes
        with gc_paused():
            self._ids()
            self._edges()
            acyclic = self._order()
            skip = self.structure_only
            for i, node in enumerate(self.nodes):
                if i not in skip:
                    self._node_content(i, node)
                    if node.handler == BRANCHING_HANDLER:
                        self._branches(i, node)
                    if self._canonical(node.handler) == _MAP_HANDLER:
                        self._map_item(i, node.config.get("handler"))
            if acyclic:
                self._check_references()
            for message, path, code in criteria_issues(self.spec):
                self._add(message, None, path, code)
        return self.issues

    def _handler(self, name: str, index: int, path: Path) -> HandlerEntry | None:
        try:
            return self.handlers[name]
        except KeyError:
            pass
        if name in self.registry:
            found = self.handlers[name] = self.registry.get(name)
            return found
        problem = self.handler_problems.get(name)
        if problem is None:
            import difflib  # here: only an unknown handler needs it

            known = self.registry.names()
            close = difflib.get_close_matches(name, known, n=3)
            if close:
                problem = f"unknown handler '{name}'; did you mean {quoted(close)}?"
            else:
                problem = f"unknown handler '{name}' (known: {', '.join(known) or 'none'})"
            self.handler_problems[name] = problem
        self._add(problem, index, path, "unknown_handler")
        return None

    def _config(
        self, handler: HandlerEntry, config: dict[str, Any], index: int, path: Path
    ) -> None:
        model = handler.config_model
        if model is None:
            return
        for error in config_errors(model, config, handler.raw_keys, self.context):
            self._add(
                describe_pydantic_error(error),
                index,
                (*path, *error["loc"]),
                f"config.{error['type']}",
            )

    def _node_content(self, i: int, node: NodeSpec) -> None:
        handler = self._handler(node.handler, i, ("handler",))
        if not node.config and node.when is None and node.compensate is None:
            return  # nothing else to check: most nodes of a big graph end here
        raw_keys: frozenset[str] = frozenset()
        if handler is not None:
            self._config(handler, node.config, i, ("config",))
            raw_keys = handler.raw_keys
        templated = False
        for path, source in config_templates(node.config, ("config",), raw_keys):
            self._template(i, path, source, compensation=False)
            templated = True
        if node.when is not None:
            self._template(i, ("when",), expression_source(node.when), compensation=False)
        if node.compensate is not None:
            comp = self._handler(node.compensate.handler, i, ("compensate", "handler"))
            comp_raw: frozenset[str] = frozenset()
            if comp is not None:
                self._config(comp, node.compensate.config, i, ("compensate", "config"))
                comp_raw = comp.raw_keys
                problem = compensation_problem(node.compensate.handler, comp)
                if problem is not None:
                    self._add(problem, i, ("compensate", "handler"), "compensation_handler")
            for path, source in config_templates(
                node.compensate.config, ("compensate", "config"), comp_raw
            ):
                self._template(i, path, source, compensation=True)
        if templated or raw_keys or node.when is not None or node.compensate is not None:
            self._secret_flow(i, node)
        elif handler is not None and handler.name in _CREDENTIAL_HANDLERS:
            self._secret_flow(i, node)  # an llm node's literal base_url and api_key_env

    def _secret_flow(self, i: int, node: NodeSpec) -> None:
        """Secrets only in request fields, sent where the policy allows; no credential
        paired with a node's own endpoint."""
        routing = self.routing
        if routing is None:
            routing = self.routing = self.registry.secret_routing(self.context)
        found = node_issues(
            self._canonical(node.handler),
            node.config,
            routing,
            when=node.when,
            canonical=self._canonical,
        )
        if node.compensate is not None:
            found += node_issues(
                self._canonical(node.compensate.handler),
                node.compensate.config,
                routing,
                path=("compensate", "config"),
                canonical=self._canonical,
            )
        for issue in found:
            self._add(issue.message, i, issue.path, issue.code)

    def _map_item(self, i: int, name: Any) -> None:
        """A map's per-item handler must exist and finish on its own: one that waits for a
        time or a person, or another map, cannot run per item (a sub-workflow can)."""
        if not isinstance(name, str) or is_template(name):
            return
        entry = self._handler(name, i, ("config", "handler"))
        problem = None if entry is None else map_item_problem(name, entry)
        if problem is not None:
            self._add(problem, i, ("config", "handler"), "map_item_handler")

    def _canonical(self, name: Any) -> str | None:
        if not isinstance(name, str):
            return None
        known = self.handlers.get(name)
        if known is not None:
            return known.name
        try:
            return self.registry.canonical_name(name)
        except HandlerNotFound:
            return None

    def _branches(self, i: int, node: NodeSpec) -> None:
        """A condition node may only choose among its own children; its cases are templates."""
        children = {self.nodes[c].id for c in self.children[i]}
        config = node.config
        targets: list[tuple[Path, Any]] = [
            (("config", "default", k), name) for k, name in enumerate(config.get("default") or [])
        ]
        for n, case in enumerate(config.get("cases") or []):
            if not isinstance(case, dict):
                continue
            when = case.get("when")
            if isinstance(when, str):
                path: Path = ("config", "cases", n, "when")
                self._template(i, path, expression_source(when), compensation=False)
            for k, name in enumerate(case.get("then") or []):
                targets.append((("config", "cases", n, "then", k), name))
        for path, name in targets:
            if name not in children:
                self._add(
                    f"condition branch '{name}' is not a child of '{node.id}' "
                    f"(children: {', '.join(sorted(children)) or 'none'})",
                    i,
                    path,
                    "unknown_branch",
                )

    def _template(self, i: int, path: Path, source: str, *, compensation: bool) -> None:
        info = template_info(source)
        if info.error is not None:
            self._add(info.error, i, path, "template_syntax")
            return
        for name in sorted(info.names):
            if name in _ALWAYS_AVAILABLE or name == "nodes":
                continue
            if name in self.index:
                self._reference(name, i, path, compensation)
            else:
                if any(node_id.startswith(name + "-") for node_id in self.index):
                    hint = "; write ids with '-' as nodes['a-b']"
                else:
                    hint = self._suggest(name, [*self.index, *RESERVED_NAMES])
                self._add(
                    f"template references unknown name '{name}'{hint}", i, path, "template_name"
                )
        if "nodes" in info.names:
            for key in sorted(info.node_keys):
                if key in self.index:
                    self._reference(key, i, path, compensation)
                else:
                    hint = self._suggest(key, self.index)
                    self._add(
                        f"template references unknown node '{key}'{hint}", i, path, "template_name"
                    )
        if info.input_output and "input" in self.index:
            self._reference("input", i, path, compensation)

    def _reference(self, target_id: str, i: int, path: Path, compensation: bool) -> None:
        target = self.index[target_id]
        if target == i:
            if not compensation:
                self._add(
                    f"template references node '{target_id}' itself", i, path, "template_reference"
                )
            return
        if target in self.parents[i]:
            return
        self.references.append(Reference(target, i, path, compensation))
