"""Error handling rules of a definition: what a node's failure of a given type leads to.

::

    error_handling:
      - error_type: agent_timeout      # or timeout, resource_unavailable, validation_error,
        action: retry                  # or an error category the engine records (http_5xx...)
        max_attempts: 3                # retry: attempts in all, the first included
        backoff: exponential           # exponential (default) or fixed
      - error_type: resource_unavailable
        action: queue                  # wait and try again later, without failing
        wait_strategy: exponential_backoff
        max_wait: 1h                   # the longest wait between two tries (default 5m)
      - error_type: data_validation_error
        action: halt                   # fail the execution now, and notify
        notify: [data_team, workflow_owner]
        tasks: [gap_identification]    # optional: only failures of these nodes

A rule replaces the node's retry policy for the failures it matches: ``retry`` with its own
attempts and backoff; ``queue`` tries again with a growing wait (capped at ``max_wait``) up to
``max_attempts`` (default 100) times, so a resource that comes back in time lets the run go on;
``halt`` does not retry, stops every other node of the execution and fails it at once, with a
notice to the ``notify`` teams. The first rule that matches a failure applies. Error types are
the names in ``ERROR_TYPES`` (each stands for a few categories) or a category itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from orchestrion.definition.durations import Duration
from orchestrion.definition.model import RetryPolicy, WorkflowSpec
from orchestrion.definition.routing import MAX_RULES
from orchestrion.errors import NODE_CATEGORIES, DefinitionIssue

__all__ = [
    "ERROR_TYPES",
    "ErrorAction",
    "ErrorRule",
    "error_actions",
    "error_rule_issues",
]

ERROR_TYPES: dict[str, frozenset[str]] = {
    "timeout": frozenset({"timeout"}),
    "agent_timeout": frozenset({"timeout"}),
    "resource_unavailable": frozenset({"connection", "rate_limited", "http_5xx", "unavailable"}),
    "validation_error": frozenset(
        {"validation", "schema", "input", "output", "response", "bad_response"}
    ),
    "data_validation_error": frozenset(
        {"validation", "schema", "input", "output", "response", "bad_response"}
    ),
    "any": frozenset({"*"}),
}
"""Error types of the reference and the categories of failure each stands for."""

_TEAM = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"

Path = tuple[str | int, ...]


class ErrorRule(BaseModel):
    """One entry of ``error_handling`` as written."""

    # Built on first use: every run imports this module, few definitions have error rules.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    error_type: str = Field(min_length=1, max_length=64)
    action: Literal["retry", "queue", "halt"]
    max_attempts: int | None = Field(default=None, ge=1, le=1000)
    backoff: Literal["exponential", "fixed"] = "exponential"
    wait_strategy: Literal["exponential_backoff", "fixed"] = "exponential_backoff"
    initial_delay: Duration = 1.0
    max_delay: Duration | None = None
    max_wait: Duration | None = None
    notify: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()
    description: str | None = Field(default=None, max_length=2000)

    @field_validator("notify", "tasks", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("notify")
    @classmethod
    def _team_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        import re

        for name in value:
            if not re.match(_TEAM, name):
                raise ValueError(f"{name!r} is not a team name (letters, digits, . _ -)")
        return value


@dataclass(frozen=True, slots=True)
class ErrorAction:
    """What a matching failure leads to: ``retry``/``queue`` (under ``policy``) or ``halt``."""

    rule: int  # 1-based
    error_type: str
    kind: str
    policy: RetryPolicy | None = None
    notify: tuple[str, ...] = ()


def _categories(error_type: str) -> frozenset[str]:
    return ERROR_TYPES.get(error_type, frozenset({error_type}))


def _action(number: int, model: ErrorRule) -> ErrorAction:
    if model.action == "halt":
        return ErrorAction(number, model.error_type, "halt", None, model.notify)
    if model.action == "retry":
        top = model.max_delay if model.max_delay is not None else max(60.0, model.initial_delay)
        policy = RetryPolicy(
            max_attempts=model.max_attempts or 3,
            initial_delay=model.initial_delay,
            max_delay=max(top, model.initial_delay),
            multiplier=2.0 if model.backoff == "exponential" else 1.0,
            jitter="none" if model.backoff == "fixed" else "full",
            retry_on=("all",),
        )
    else:
        wait = model.max_wait if model.max_wait is not None else 300.0
        policy = RetryPolicy(
            max_attempts=model.max_attempts or 100,
            initial_delay=min(model.initial_delay, wait),
            max_delay=wait,
            multiplier=2.0 if model.wait_strategy == "exponential_backoff" else 1.0,
            jitter="none",
            retry_on=("all",),
        )
    return ErrorAction(number, model.error_type, model.action, policy, model.notify)


def error_actions(spec: WorkflowSpec) -> dict[str, list[tuple[frozenset[str], ErrorAction]]]:
    """Node id -> its rules in order, each as (categories it matches, action); ``*`` for
    every node a rule does not restrict. For a checked ``spec``."""
    found: dict[str, list[tuple[frozenset[str], ErrorAction]]] = {}
    for index, raw in enumerate(spec.error_handling):
        model = ErrorRule.model_validate(raw)
        entry = (_categories(model.error_type), _action(index + 1, model))
        for node in model.tasks or ("*",):
            found.setdefault(node, []).append(entry)
    return found


def error_rule_issues(spec: WorkflowSpec) -> list[tuple[DefinitionIssue, Path]]:
    """Every problem of ``spec.error_handling``, with the path of its field."""
    issues: list[tuple[DefinitionIssue, Path]] = []
    if len(spec.error_handling) > MAX_RULES:
        message = f"at most {MAX_RULES} error handling rules, got {len(spec.error_handling)}"
        issue = DefinitionIssue(message, None, "error_handling", None, "too_many_rules")
        return [(issue, ("error_handling",))]
    ids = {node.id for node in spec.dag.nodes}
    for index, raw in enumerate(spec.error_handling):

        def add(message: str, key: str | None, code: str, i: int = index) -> None:
            where = f"error_handling[{i}]" + (f".{key}" if key else "")
            path: Path = ("error_handling", i, key) if key else ("error_handling", i)
            issue = DefinitionIssue(
                f"error handling rule {i + 1}: {message}", None, where, None, code
            )
            issues.append((issue, path))

        if not isinstance(raw, Mapping):
            add("an error handling rule must be a mapping", None, "invalid_rule")
            continue
        try:
            model = ErrorRule.model_validate(raw)
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                loc = error["loc"]
                key = str(loc[0]) if loc else None
                message = error["msg"]
                if error["type"] == "missing":
                    message = f"missing required key '{key}'"
                elif error["type"] == "extra_forbidden":
                    message = f"unknown key '{key}'"
                elif error["type"] == "literal_error" and key == "action":
                    message = f"unknown action {raw.get('action')!r} (known: retry, queue, halt)"
                add(message, key, error["type"])
            continue
        if model.error_type not in ERROR_TYPES and model.error_type not in NODE_CATEGORIES:
            known = ", ".join(sorted(ERROR_TYPES))
            add(
                f"unknown error_type '{model.error_type}' (known: {known}, or a category: "
                f"{', '.join(sorted(NODE_CATEGORIES))})",
                "error_type",
                "unknown_error_type",
            )
        for task in model.tasks:
            if task not in ids:
                add(f"'tasks' names unknown node '{task}'", "tasks", "unknown_node")
        if model.action != "halt" and model.notify:
            add("'notify' is only for action 'halt'", "notify", "unknown_key")
        used = {"retry": ("max_attempts", "backoff", "initial_delay", "max_delay"),
                "queue": ("max_attempts", "wait_strategy", "initial_delay", "max_wait"),
                "halt": ()}[model.action]  # fmt: skip
        for key in ("backoff", "wait_strategy", "max_delay", "max_wait", "max_attempts",
                    "initial_delay"):  # fmt: skip
            if key in raw and key not in used:
                add(f"'{key}' is not used by action '{model.action}'", key, "unknown_key")
        if model.max_delay is not None and model.max_delay < model.initial_delay:
            add("max_delay must be >= initial_delay", "max_delay", "invalid")
    return issues
