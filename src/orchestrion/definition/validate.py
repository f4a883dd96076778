"""Graph and content checks of a workflow, after the model has accepted its shape. O(V+E).

Checks: duplicate ids, reserved ids, unknown / self / repeated dependencies, cycles (with the
path of one cycle), unknown handlers (with close matches), handler config against the
handler's ``config_model``, template syntax, template names, template references to nodes
that are not ancestors (for ``config``, ``when`` and ``compensate.config``), and where secrets
and provider credentials may flow (``definition/secret_flow.py``).

Every problem is reported, not just the first. Issues carry the node index and the path inside
the node, so the loader can point at the source line.
"""

from __future__ import annotations

import difflib
import gc
from collections import deque
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from orchestrion.definition.catalog import HandlerCatalog, HandlerEntry, SecretRouting
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
    "validate_spec",
]

PathPart = str | int
Path = tuple[PathPart, ...]

# Close-match suggestions compare against every id; past this many ids they cost too much.
_MAX_IDS_FOR_SUGGESTIONS = 5_000
_MAX_SUGGESTIONS = 20  # per check: one answer needs no more, and each costs a full scan
_MAX_NAMED_REPEATS = 5  # a node's repeated dependencies named in its one issue
_ALWAYS_AVAILABLE = frozenset({"input", "secrets", "execution"})
# `input` may name a node (reference 001 does): templates reach it as `input.output`.
_RESERVED_IDS = RESERVED_NAMES - {"input"}
_CREDENTIAL_HANDLERS = frozenset({"llm", "map"})


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for the duration of the block.

    Checking a big graph allocates hundreds of thousands of small lists and sets, which
    triggers full collections that re-scan the (large, long-lived) definition each time and
    multiply the cost; none of these objects form reference cycles.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass(frozen=True, slots=True)
class LocatedIssue:
    """An issue plus where it is: node index in ``dag.nodes`` (None: workflow level) and the
    path inside that node (or the workflow). ``related`` lists other node indexes involved
    (the first occurrence of a duplicate id), so a loader can name their lines too."""

    issue: DefinitionIssue
    index: int | None
    path: Path
    related: tuple[int, ...] = ()


def format_path(path: Iterable[PathPart]) -> str:
    """``("config", "headers", 0)`` -> ``"config.headers[0]"``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def describe_pydantic_error(error: ErrorDetails) -> str:
    """A short message for one pydantic error: ``unknown key 'foo'`` for extra keys."""
    kind = error["type"]
    loc = error["loc"]
    if kind == "extra_forbidden":
        return f"unknown key '{loc[-1]}'" if loc else "unknown key"
    if kind == "missing":
        return f"missing required key '{loc[-1]}'" if loc else "missing required value"
    message = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    return message


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
        spec, registry, structure_only=structure_only, context=context, max_issues=max_issues
    )
    return checker.run(), checker.unlisted


@dataclass(slots=True)
class _Reference:
    """A template in node ``source`` reads the output of node ``target``."""

    target: int
    source: int
    path: Path
    compensation: bool


@dataclass(slots=True)
class _Checker:
    spec: WorkflowSpec
    registry: HandlerCatalog
    structure_only: Collection[int] = frozenset()
    context: Mapping[str, Any] | None = None
    issues: list[LocatedIssue] = field(default_factory=list)
    nodes: Sequence[NodeSpec] = ()
    index: dict[str, int] = field(default_factory=dict)
    parents: list[list[int]] = field(default_factory=list)
    children: list[list[int]] = field(default_factory=list)
    rank: list[int] = field(default_factory=list)
    references: list[_Reference] = field(default_factory=list)
    handlers: dict[str, HandlerEntry] = field(default_factory=dict)
    handler_problems: dict[str, str] = field(default_factory=dict)
    routing: SecretRouting | None = None  # asked of the registry once, on first need
    max_issues: int | None = None
    unlisted: int = 0  # issues found past max_issues
    suggestions: int = 0  # close-match searches made (each compares with every id)

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
                    inner = node.config.get("handler") if node.handler == "map" else None
                    if isinstance(inner, str) and not is_template(inner):
                        self._handler(inner, i, ("config", "handler"))
            if acyclic:
                self._check_references()
        return self.issues

    def _add(
        self,
        message: str,
        index: int | None,
        path: Path,
        code: str,
        related: tuple[int, ...] = (),
    ) -> None:
        if self._full():
            self.unlisted += 1
            return
        node = self.nodes[index].id if index is not None else None
        issue = DefinitionIssue(message, node=node, field=format_path(path) or None, code=code)
        self.issues.append(LocatedIssue(issue, index, path, related))

    # ------------------------------------------------------------------ ids and edges

    def _ids(self) -> None:
        index = self.index
        for i, node in enumerate(self.nodes):
            first = index.setdefault(node.id, i)
            if first != i:
                self._add(
                    f"duplicate node id '{node.id}': nodes #{first + 1} and #{i + 1} both use it",
                    i,
                    ("id",),
                    "duplicate_id",
                    related=(first,),
                )
        for name in sorted(_RESERVED_IDS & index.keys()):
            self._add(
                f"node id '{name}' is reserved for templates ({{{{ {name} }}}}); rename the node",
                index[name],
                ("id",),
                "reserved_id",
            )

    def _edges(self) -> None:
        index = self.index
        parents: list[list[int]] = []
        children: list[list[int]] = [[] for _ in self.nodes]
        for i, node in enumerate(self.nodes):
            deps = node.dependencies
            if len(deps) == 1 and deps[0] != node.id and deps[0] in index:
                # The common case, kept to two lookups.
                parent = index[deps[0]]
                parents.append([parent])
                children[parent].append(i)
                continue
            mine: list[int] = []
            parents.append(mine)
            seen: dict[str, int] = {}  # dependency -> times listed
            first_repeat: int | None = None
            for k, dep in enumerate(deps):
                if dep in seen:
                    seen[dep] += 1
                    first_repeat = k if first_repeat is None else first_repeat
                    continue  # reported once for the node, below
                seen[dep] = 1
                if dep == node.id or dep not in index:
                    self._bad_dependency(i, node.id, k, dep)
                else:
                    parent = index[dep]
                    mine.append(parent)
                    children[parent].append(i)
            if first_repeat is not None:
                self._repeated_dependencies(i, first_repeat, seen)
        self.parents = parents
        self.children = children

    def _bad_dependency(self, i: int, node_id: str, k: int, dep: str) -> None:
        where: Path = ("dependencies", k)
        if dep == node_id:
            self._add(f"node '{node_id}' depends on itself", i, where, "self_dependency")
        else:
            hint = self._suggest(dep, self.index)
            self._add(f"unknown dependency '{dep}'{hint}", i, where, "unknown_dependency")

    def _repeated_dependencies(self, i: int, first: int, seen: dict[str, int]) -> None:
        # One issue per node, however many repeats: the answer stays small.
        repeated = [(dep, times) for dep, times in seen.items() if times > 1]
        named = ", ".join(
            f"'{dep}' ({times} times)" if times > 2 else f"'{dep}'"
            for dep, times in repeated[:_MAX_NAMED_REPEATS]
        )
        if len(repeated) > _MAX_NAMED_REPEATS:
            named += f" and {len(repeated) - _MAX_NAMED_REPEATS} more"
        if len(repeated) == 1 and repeated[0][1] == 2:
            message = f"dependency {named} is listed twice"
        else:
            message = f"dependencies listed more than once: {named}"
        self._add(message, i, ("dependencies", first), "duplicate_dependency")

    def _order(self) -> bool:
        """Kahn's algorithm; on a cycle, report one cycle path and return False."""
        count = len(self.nodes)
        waiting = [len(p) for p in self.parents]
        ready = deque(i for i in range(count) if waiting[i] == 0)
        rank = [-1] * count
        position = 0
        while ready:
            i = ready.popleft()
            rank[i] = position
            position += 1
            for child in self.children[i]:
                waiting[child] -= 1
                if waiting[child] == 0:
                    ready.append(child)
        self.rank = rank
        if position == count:
            return True
        self._report_cycle(rank)
        return False

    def _report_cycle(self, rank: list[int]) -> None:
        # Every node Kahn left behind has a parent that was left behind too, so walking up
        # through such parents must come back to a node already on the walk: a cycle.
        start = next(i for i, r in enumerate(rank) if r < 0)
        on_walk: dict[int, int] = {}
        walk: list[int] = []
        current = start
        while current not in on_walk:
            on_walk[current] = len(walk)
            walk.append(current)
            current = next(p for p in self.parents[current] if rank[p] < 0)
        cycle = walk[on_walk[current] :]  # each entry depends on the next one
        order = list(reversed(cycle))  # execution order: each entry runs before the next
        first = order.index(min(order))
        order = order[first:] + order[:first]
        names = [self.nodes[i].id for i in order]
        head, before = order[0], order[-1]
        dep_position = self.nodes[head].dependencies.index(self.nodes[before].id)
        self._add(
            "cycle: " + " -> ".join([*names, names[0]]),
            head,
            ("dependencies", dep_position),
            "cycle",
        )

    # ------------------------------------------------------------------ handlers, config

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
            known = self.registry.names()
            close = difflib.get_close_matches(name, known, n=3)
            if close:
                problem = f"unknown handler '{name}'; did you mean {_quoted(close)}?"
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

    # ------------------------------------------------------------------ templates

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
        self.references.append(_Reference(target, i, path, compensation))

    def _check_references(self) -> None:
        """Report references to nodes that are not ancestors, walking the graph per target."""
        by_target: dict[int, list[_Reference]] = {}
        for ref in self.references:
            by_target.setdefault(ref.target, []).append(ref)
        for target, refs in by_target.items():
            if len(refs) == 1:
                reachable = self._is_ancestor(target, refs[0].source)
                bad = [] if reachable else refs
            else:
                below = self._descendants(target, max(self.rank[r.source] for r in refs))
                bad = [r for r in refs if r.source not in below]
            for ref in bad:
                self._add(
                    f"template references node '{self.nodes[target].id}' which is not an "
                    f"upstream dependency of '{self.nodes[ref.source].id}'",
                    ref.source,
                    ref.path,
                    "template_reference",
                )

    def _is_ancestor(self, target: int, node: int) -> bool:
        # Nodes ranked before the target cannot have it upstream: prune them.
        floor = self.rank[target]
        seen: set[int] = set()
        stack = [node]
        while stack:
            current = stack.pop()
            for parent in self.parents[current]:
                if parent == target:
                    return True
                if parent not in seen and self.rank[parent] > floor:
                    seen.add(parent)
                    stack.append(parent)
        return False

    def _descendants(self, target: int, ceiling: int) -> set[int]:
        # Nodes ranked after the last referencing node cannot matter: prune them.
        seen: set[int] = set()
        stack = [target]
        while stack:
            current = stack.pop()
            for child in self.children[current]:
                if child not in seen and self.rank[child] <= ceiling:
                    seen.add(child)
                    stack.append(child)
        return seen

    def _full(self) -> bool:
        return self.max_issues is not None and len(self.issues) >= self.max_issues

    def _suggest(self, name: str, candidates: Collection[str]) -> str:
        if len(candidates) > _MAX_IDS_FOR_SUGGESTIONS or self._full():
            return ""
        if self.suggestions >= _MAX_SUGGESTIONS:
            return ""
        self.suggestions += 1
        close = difflib.get_close_matches(name, sorted(set(candidates)), n=3)
        return f"; did you mean {_quoted(close)}?" if close else ""


def _quoted(names: list[str]) -> str:
    return " or ".join(f"'{name}'" for name in names)


def config_templates(
    value: Any, path: Path, skip_keys: frozenset[str]
) -> Iterator[tuple[Path, str]]:
    """Template strings in a node config, skipping the handler's raw (self-evaluated) keys."""
    if isinstance(value, str):
        if is_template(value):
            yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if key not in skip_keys:
                yield from config_templates(item, (*path, key), frozenset())
    elif isinstance(value, list | tuple):
        for k, item in enumerate(value):
            yield from config_templates(item, (*path, k), frozenset())


def config_errors(
    model: type[BaseModel],
    config: dict[str, Any],
    raw_keys: frozenset[str],
    context: Mapping[str, Any] | None = None,
) -> list[ErrorDetails]:
    """Errors of ``config`` against ``model``, ignoring those a template value may fix.

    A template string is rendered before the handler sees it, and ``{{ x }}`` may become any
    type, so an error located at (or inside) a template value is not an error yet. Unknown
    keys, missing keys and errors on literal values are.
    """
    try:
        model.model_validate(config, context=context)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
    else:
        return []
    has_templates = any(True for _ in config_templates(config, (), raw_keys))
    return [
        error
        for error in errors
        if error["type"] == "extra_forbidden"
        or (
            not _under_template(config, error["loc"], raw_keys)
            if error["loc"]
            else not has_templates
        )
    ]


def _under_template(config: Any, loc: tuple[int | str, ...], raw_keys: frozenset[str]) -> bool:
    value = config
    for depth, part in enumerate(loc):
        if depth == 0 and part in raw_keys:
            return False  # raw keys reach the handler unrendered: literal values
        value = _child(value, part)
        if value is _MISSING:
            return False
        if is_template(value):
            return True
    return False


_MISSING = object()


def _child(value: Any, part: int | str) -> Any:
    if isinstance(value, Mapping):
        return value.get(part, _MISSING)
    if isinstance(value, list | tuple) and isinstance(part, int) and 0 <= part < len(value):
        return value[part]
    return _MISSING
