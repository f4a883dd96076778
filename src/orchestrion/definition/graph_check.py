"""The graph half of a definition check: ids, dependencies, cycles, and which templates read
nodes that are not upstream of them. O(V+E).

``GraphCheck`` holds the state of one check and the issues found so far; ``validate.py``
builds the content checks (handlers, configs, templates) on top of it. Issues carry the node
index and the path inside the node, so the loader can point at the source line.
"""

from __future__ import annotations

import gc
from collections import deque
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from orchestrion.definition.model import NodeSpec, WorkflowSpec
from orchestrion.errors import DefinitionIssue
from orchestrion.templates.rendering import RESERVED_NAMES

__all__ = [
    "GraphCheck",
    "LocatedIssue",
    "Path",
    "PathPart",
    "Reference",
    "format_path",
    "gc_paused",
]

PathPart = str | int
Path = tuple[PathPart, ...]

# Close-match suggestions compare against every id; past this many ids they cost too much.
_MAX_IDS_FOR_SUGGESTIONS = 5_000
_MAX_SUGGESTIONS = 20  # per check: one answer needs no more, and each costs a full scan
_MAX_NAMED_REPEATS = 5  # a node's repeated dependencies named in its one issue
# `input` may name a node (reference 001 does): templates reach it as `input.output`.
_RESERVED_IDS = RESERVED_NAMES - {"input"}


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for the duration of the block, in a process that
    is Orchestrion's (``settings.claim_process``: the CLI and the server).

    Checking a big graph allocates hundreds of thousands of small lists and sets, which
    triggers full collections that re-scan the (large, long-lived) definition each time and
    multiply the cost; none of these objects form reference cycles. The collector is the
    whole process's, so a program that embeds Orchestrion keeps it as it set it.
    """
    from orchestrion.settings import owns_process

    if not owns_process():
        yield
        return
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


@dataclass(slots=True)
class Reference:
    """A template in node ``source`` reads the output of node ``target``."""

    target: int
    source: int
    path: Path
    compensation: bool


@dataclass(slots=True, kw_only=True)
class GraphCheck:
    """One check of one workflow: the graph, the issues so far, and the graph checks."""

    spec: WorkflowSpec
    issues: list[LocatedIssue] = field(default_factory=list)
    nodes: Sequence[NodeSpec] = ()
    index: dict[str, int] = field(default_factory=dict)
    parents: list[list[int]] = field(default_factory=list)
    children: list[list[int]] = field(default_factory=list)
    rank: list[int] = field(default_factory=list)
    references: list[Reference] = field(default_factory=list)
    max_issues: int | None = None
    unlisted: int = 0  # issues found past max_issues
    suggestions: int = 0  # close-match searches made (each compares with every id)

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

    def _full(self) -> bool:
        return self.max_issues is not None and len(self.issues) >= self.max_issues

    def _suggest(self, name: str, candidates: Collection[str]) -> str:
        if len(candidates) > _MAX_IDS_FOR_SUGGESTIONS or self._full():
            return ""
        if self.suggestions >= _MAX_SUGGESTIONS:
            return ""
        self.suggestions += 1
        import difflib  # here: only a definition with a problem needs it

        close = difflib.get_close_matches(name, sorted(set(candidates)), n=3)
        return f"; did you mean {quoted(close)}?" if close else ""

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

    def _check_references(self) -> None:
        """Report references to nodes that are not ancestors, walking the graph per target."""
        by_target: dict[int, list[Reference]] = {}
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


def quoted(names: list[str]) -> str:
    """``'a' or 'b'``: close matches as a suggestion names them."""
    return " or ".join(f"'{name}'" for name in names)
