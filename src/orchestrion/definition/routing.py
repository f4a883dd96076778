"""Routing rules of a definition: conditions on outputs and on the run, and what they do.

::

    routing:
      - condition: "task.document_analysis.outputs.compliance_score < 0.5"
        action: escalate              # a notice to one team, recorded with the execution
        target: compliance_officer
      - condition: "task.risk_calculation.outputs.financial_impact > 1000000"
        action: require_approval      # the tasks after risk_calculation wait for a decision
        approvers: [cfo, cro]         # by a member of one of these teams
      - condition: "workflow.duration > 7200"
        action: alert                 # a notice to these teams
        recipients: [ops_team]
        message: "the assessment is taking long"   # optional, for people

A condition is an expression in the language of ``when:`` and success criteria (see
``definition/criteria.py``): ``task.<id>.outputs.<field>``, ``<id>.output.<field>``, a bare
output field that exactly one task declares in its ``outputs:`` list, ``input.<param>`` and
``workflow.duration`` (seconds since the execution started).

Each rule becomes one node of the plan (``with_routing``): ``routing-<n>`` (n counts rules from
1), of the built-in ``routing`` handler, after the tasks its condition reads. It is evaluated
as soon as they complete. A rule that reads no task watches the run: its node starts with the
execution and evaluates again when ``workflow.duration`` crosses a threshold written in it
(else every ``WATCH_SECONDS``), and is skipped when nothing else is left to run. The children
of the tasks a ``require_approval`` rule reads also wait for its node, so nothing after them
runs before a decision; a rejection fails the node and the execution. Teams (``target``,
``approvers``, ``recipients``) are names from the configuration, checked when an engine takes
the definition in (``team_references``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from orchestrion.definition.criteria import (
    WORKFLOW_FIELDS,
    bare_fields,
    declared_outputs,
    task_ids,
    workflow_attributes,
)
from orchestrion.definition.model import NodeSpec, RetryPolicy, WorkflowSpec
from orchestrion.errors import DefinitionIssue
from orchestrion.templates.rendering import expression_source, is_template, template_info
from orchestrion.templates.secrets import secret_use

__all__ = [
    "ACTIONS",
    "MAX_RULES",
    "ROUTING_HANDLER",
    "WATCH_SECONDS",
    "RouteRule",
    "RoutingRule",
    "duration_bounds",
    "routing_issues",
    "routing_node_id",
    "routing_rules",
    "team_references",
    "with_routing",
]

ROUTING_HANDLER = "routing"
"""The built-in handler of the nodes routing rules become."""

ACTIONS = ("escalate", "require_approval", "alert")

MAX_RULES = 100
"""The most routing rules (and error handling rules) a definition may have."""

WATCH_SECONDS = 60.0
"""How often a rule on the run is evaluated when it names no ``workflow.duration`` threshold."""

_TEAM_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_DURATION_BOUND = re.compile(
    r"\bworkflow\s*\.\s*duration\s*(?:>=|>|==)\s*(\d+(?:\.\d+)?)"
    r"|(\d+(?:\.\d+)?)\s*(?:<=|<|==)\s*workflow\s*\.\s*duration\b"
)

Path = tuple[str | int, ...]


class RoutingRule(BaseModel):
    """One entry of ``routing`` as written."""

    # Built on first use: every run imports this module, few definitions have routing rules.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    condition: str = Field(min_length=1, max_length=2000)
    action: Literal["escalate", "require_approval", "alert"]
    target: str | None = Field(default=None, pattern=_TEAM_PATTERN)
    approvers: tuple[str, ...] = ()
    recipients: tuple[str, ...] = ()
    message: str | None = Field(default=None, max_length=2000)
    name: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=2000)

    @field_validator("approvers", "recipients", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("approvers", "recipients")
    @classmethod
    def _team_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not re.match(_TEAM_PATTERN, name):
                raise ValueError(f"{name!r} is not a team name (letters, digits, . _ -)")
        if len(value) > 50:
            raise ValueError("at most 50 teams")
        return value


@dataclass(frozen=True, slots=True)
class RouteRule:
    """One checked routing rule, ready to become its node.

    ``tasks``: the nodes whose outputs the condition reads (the node runs after them; none: a
    rule on the run); ``fields``: bare output fields and the task that declares each.
    """

    number: int  # 1-based
    action: str
    condition: str
    teams: tuple[str, ...]
    tasks: tuple[str, ...]
    fields: dict[str, str]
    message: str | None = None
    name: str | None = None

    @property
    def node_id(self) -> str:
        return routing_node_id(self.number)

    @property
    def watches(self) -> bool:
        """Whether the rule is on the run (``workflow.duration``), not on task outputs."""
        return not self.tasks


def routing_node_id(number: int) -> str:
    """The id of rule ``number``'s node (1-based)."""
    return f"routing-{number}"


def _teams(model: RoutingRule) -> tuple[str, ...]:
    if model.action == "escalate":
        return (model.target,) if model.target else ()
    return model.approvers if model.action == "require_approval" else model.recipients


def _parse(raw: Any) -> RoutingRule:
    return RoutingRule.model_validate(raw)


def routing_rules(spec: WorkflowSpec) -> list[RouteRule]:
    """The rules of a checked ``spec`` (``routing_issues`` found nothing)."""
    rules: list[RouteRule] = []
    if not spec.routing:
        return rules
    ids = {node.id for node in spec.dag.nodes}
    declared = declared_outputs(spec)
    for index, raw in enumerate(spec.routing):
        model = _parse(raw)
        info = template_info(expression_source(model.condition.strip()))
        fields = {
            name: declared[name][0]
            for name in sorted(bare_fields(info.names, ids))
            if len(declared.get(name, ())) == 1
        }
        named = [t for t in task_ids(model.condition) if t in ids]
        named += sorted(info.names & ids) + sorted(info.node_keys) + list(fields.values())
        rules.append(
            RouteRule(
                number=index + 1,
                action=model.action,
                condition=model.condition.strip(),
                teams=_teams(model),
                tasks=tuple(dict.fromkeys(n for n in named if n in ids)),
                fields=fields,
                message=model.message,
                name=model.name,
            )
        )
    return rules


def routing_issues(spec: WorkflowSpec) -> list[tuple[DefinitionIssue, Path]]:
    """Every problem of ``spec.routing`` that can be known before it runs, with its path."""
    issues: list[tuple[DefinitionIssue, Path]] = []
    for number, node in enumerate(spec.dag.nodes):
        if node.handler == ROUTING_HANDLER:
            message = "handler 'routing' is made from the `routing:` section, not written"
            issue = DefinitionIssue(message, node.id, "handler", None, "reserved_handler")
            issues.append((issue, ("dag", "nodes", number, "handler")))
    if not spec.routing:
        return issues
    if len(spec.routing) > MAX_RULES:
        message = f"at most {MAX_RULES} routing rules, got {len(spec.routing)}"
        issue = DefinitionIssue(message, None, "routing", None, "too_many_rules")
        return [(issue, ("routing",))]
    ids = {node.id for node in spec.dag.nodes}
    declared = declared_outputs(spec)
    for index, raw in enumerate(spec.routing):

        def add(message: str, key: str | None, code: str, i: int = index) -> None:
            where = f"routing[{i}]" + (f".{key}" if key else "")
            path: Path = ("routing", i, key) if key else ("routing", i)
            issues.append(
                (DefinitionIssue(f"routing rule {i + 1}: {message}", None, where, None, code), path)
            )

        if not isinstance(raw, Mapping):
            add("a routing rule must be a mapping", None, "invalid_rule")
            continue
        try:
            model = _parse(raw)
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                loc = error["loc"]
                key = str(loc[0]) if loc else None
                message = error["msg"]
                if error["type"] == "missing":
                    message = f"missing required key '{key}'"
                elif error["type"] == "extra_forbidden":
                    message = f"unknown key '{key}'"
                elif error["type"] == "literal_error":
                    message = f"unknown action {raw.get('action')!r} (known: {', '.join(ACTIONS)})"
                add(message, key, error["type"])
            continue
        needed = {"escalate": "target", "require_approval": "approvers", "alert": "recipients"}
        own = needed[model.action]
        if not _teams(model):
            add(f"action '{model.action}' needs '{own}' (team names)", own, "missing")
        for other in set(needed.values()) - {own}:
            if raw.get(other):
                add(
                    f"'{other}' is not used by action '{model.action}' (it takes '{own}')",
                    other,
                    "unknown_key",
                )
        said = model.message
        if said is not None and is_template(said):
            problem = _message_problem(said)
            if problem is not None:
                add(problem[0], "message", problem[1])
        condition = model.condition.strip()
        info = template_info(expression_source(condition))
        if info.error is not None:
            add(f"condition '{condition}': {info.error}", "condition", "template")
            continue
        if "secrets" in info.names:
            add(f"condition '{condition}' may not read secrets", "condition", "secret_use")
        if info.dynamic_nodes:
            add(
                f"condition '{condition}': name the task it reads (task.<id>.outputs...), "
                "not a computed nodes[...] key",
                "condition",
                "dynamic_reference",
            )
        for task in task_ids(condition):
            if task not in ids:
                add(
                    f"condition '{condition}' names unknown task '{task}'",
                    "condition",
                    "unknown_task",
                )
        for attr in workflow_attributes(condition):
            if attr not in WORKFLOW_FIELDS:
                add(
                    f"condition '{condition}': workflow.{attr} is not known (known: "
                    f"{', '.join(sorted(WORKFLOW_FIELDS))})",
                    "condition",
                    "unknown_name",
                )
        for name in sorted(bare_fields(info.names, ids)):
            owners = declared.get(name, [])
            if len(owners) == 1:
                continue
            if owners:
                options = " or ".join(f"task.{o}.outputs.{name}" for o in owners)
                text = f"output '{name}' is declared by several tasks; write {options}"
            else:
                text = f"'{name}' is no task's declared output; write task.<id>.outputs.{name}"
            add(f"condition '{condition}': {text}", "condition", "unknown_output")
        reads_tasks = any(True for _ in task_ids(condition)) or bool(info.names & ids)
        if (
            model.action == "require_approval"
            and not reads_tasks
            and not any(len(declared.get(n, ())) == 1 for n in bare_fields(info.names, ids))
        ):
            add(
                "require_approval needs a condition on task outputs: it holds back the "
                "tasks after them until a decision",
                "condition",
                "nothing_to_gate",
            )
        taken = routing_node_id(index + 1)
        if taken in ids:
            add(
                f"node id '{taken}' is taken by this rule's node; rename the node",
                None,
                "duplicate_id",
            )
    return issues


def _message_problem(message: str) -> tuple[str, str] | None:
    """Why a rule's templated ``message`` cannot be rendered safely (and the code), or None.

    The message reaches people, the notice, the journal and the log: no secret may go there
    (``definition/secret_flow.py``), as in any field outside an http node's request."""
    info = template_info(message)
    if info.error is not None:
        return f"'message' does not parse: {info.error}", "template_syntax"
    if "secrets" in info.names or secret_use(message).reads:
        return (
            "'message' reads secrets, which may only be used in the headers, json or body "
            "of an http node (a rule's message reaches notices, events and logs)",
            "secret_field",
        )
    return None


def team_references(spec: WorkflowSpec) -> Iterator[tuple[str, str, Path]]:
    """Every team name the definition uses: ``(team, field as written, path)``."""
    for index, raw in enumerate(spec.routing):
        if not isinstance(raw, Mapping):
            continue
        for key in ("target", "approvers", "recipients"):
            value = raw.get(key)
            names = [value] if isinstance(value, str) else value
            if isinstance(names, list | tuple):
                for name in names:
                    if isinstance(name, str):
                        yield name, f"routing[{index}].{key}", ("routing", index, key)
    for index, raw in enumerate(spec.error_handling):
        if not isinstance(raw, Mapping):
            continue
        value = raw.get("notify")
        names = [value] if isinstance(value, str) else value
        if isinstance(names, list | tuple):
            for name in names:
                if isinstance(name, str):
                    yield (
                        name,
                        f"error_handling[{index}].notify",
                        ("error_handling", index, "notify"),
                    )


def duration_bounds(condition: str) -> tuple[float, ...]:
    """The ``workflow.duration`` thresholds written in ``condition``, smallest first."""
    found = set()
    for match in _DURATION_BOUND.finditer(condition):
        found.add(float(match.group(1) or match.group(2)))
    return tuple(sorted(found))


def with_routing(spec: WorkflowSpec) -> WorkflowSpec:
    """``spec`` with one node per routing rule, and the tasks after a gate waiting for it."""
    rules = routing_rules(spec)
    if not rules or any(n.id == rules[0].node_id for n in spec.dag.nodes):
        return spec  # no rules, or expanded already
    gates: dict[str, list[str]] = {}  # task id -> the gates its children wait for
    for rule in rules:
        if rule.action == "require_approval":
            for task in rule.tasks:
                gates.setdefault(task, []).append(rule.node_id)
    nodes: list[NodeSpec] = []
    for node in spec.dag.nodes:
        extra = [g for dep in node.dependencies for g in gates.get(dep, ())]
        if extra:
            deps = tuple(dict.fromkeys((*node.dependencies, *extra)))
            node = node.model_copy(update={"dependencies": deps})
        nodes.append(node)
    for rule in rules:
        nodes.append(_rule_node(rule))
    dag = spec.dag.model_copy(update={"nodes": tuple(nodes)})
    return spec.model_copy(update={"dag": dag})


def _rule_node(rule: RouteRule) -> NodeSpec:
    config: dict[str, Any] = {
        "rule": rule.number,
        "action": rule.action,
        "condition": expression_source(rule.condition),
        "teams": list(rule.teams),
        "fields": dict(rule.fields),
        "tasks": list(rule.tasks),
    }
    if rule.action == "require_approval":
        config["approvers"] = list(rule.teams)  # who may decide (engine/deciders.py)
    if rule.message:
        config["message"] = rule.message
    if rule.watches:
        config["watch"] = list(duration_bounds(rule.condition))
    label = rule.name or f"routing rule {rule.number}: {rule.action}"
    return NodeSpec(
        id=rule.node_id,
        handler=ROUTING_HANDLER,
        name=label,
        description=rule.condition,
        dependencies=rule.tasks,
        config=config,
        retry=RetryPolicy(max_attempts=1),
    )
