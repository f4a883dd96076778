"""The canonical workflow definition: one pydantic model that every format and dialect becomes.

Shape (YAML or JSON)::

    name: str
    version: str?                 # stored by (name, version); omitted -> assigned on submit
    description: str?
    inputs: {param: {type?, default?, required?, description?}}?
    defaults: {retry?, timeout?}? # node defaults
    timeout: duration?            # whole execution
    on_failure: compensate | none # run compensation handlers (saga) when the execution fails
    concurrency: int?             # max nodes of one execution running at once
    dag:
      nodes:
        - id, handler, dependencies?, config?, retry?, timeout?, when?, trigger_rule?,
          compensate?, data_classification?, priority?, capabilities?
    success_criteria:             # checked when the run ends (definition/criteria.py)
      - {condition: str, required: bool = true, description?}

Unknown keys are errors at every level (``extra="forbid"``).
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from orchestrion.definition.durations import Duration

__all__ = [
    "BRANCHING_HANDLER",
    "NODE_ID_PATTERN",
    "PRIORITY_NAMES",
    "CompensationSpec",
    "DagSpec",
    "DataClassification",
    "InputParam",
    "NodeDefaults",
    "NodeSpec",
    "RetryPolicy",
    "SuccessCriterion",
    "TriggerRule",
    "WorkflowSpec",
]

NODE_ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_\-]{0,127}$"

# Characters a name or version may not hold: C0 and C1 controls, DEL, line and paragraph
# separators, and the bidirectional marks, embeddings, overrides and isolates that would let
# a name reorder the text shown around it (a header line, a list row).
_UNSHOWABLE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)

BRANCHING_HANDLER = "condition"
"""A node of this handler completes with ``{"branches": [child ids]}``: other children skip."""

PRIORITY_NAMES = {"critical": 100, "high": 75, "medium": 50, "normal": 50, "low": 25}
_PRIORITY_NAMES = PRIORITY_NAMES


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TriggerRule(StrEnum):
    """When a node with several dependencies may run, given how they ended."""

    ALL_SUCCESS = "all_success"
    ALL_DONE = "all_done"
    ONE_SUCCESS = "one_success"
    ONE_FAILED = "one_failed"
    NONE_FAILED = "none_failed"


class DataClassification(StrEnum):
    """Sensitivity of a node's inputs and outputs (drives masking and encryption at rest)."""

    PUBLIC = "public"
    INTERNAL = "internal"
    PII = "pii"
    PHI = "phi"


class RetryPolicy(_Strict):
    """How often and how patiently a failing node is tried again.

    ``max_attempts`` counts every attempt, the first included (1 = never retry). The delay
    before attempt n+1 is ``min(max_delay, initial_delay * multiplier ** (n-1))``, drawn
    uniformly from [0, that] under full jitter. ``retry_on`` lists error categories that are
    retried: ``transient`` (the default: network errors, 5xx answers, timeouts, rate limits,
    and any exception a function raises other than ``PermanentNodeError``; a config, policy
    or template error is never transient) or ``all``, or specific categories such as
    ``timeout``.
    """

    max_attempts: int = Field(default=3, ge=1, le=1000)
    initial_delay: Duration = 0.5
    max_delay: Duration = 30.0
    multiplier: float = Field(default=2.0, ge=1.0, le=100.0)
    jitter: Literal["full", "none"] = "full"
    retry_on: tuple[str, ...] = ("transient",)

    @model_validator(mode="after")
    def _delays_ordered(self) -> RetryPolicy:
        if self.max_delay < self.initial_delay:
            raise ValueError("max_delay must be >= initial_delay")
        return self


class CompensationSpec(_Strict):
    """The handler that undoes a node's effect when the execution fails (saga)."""

    handler: str = "python"
    # Factories are lambdas, not list or dict: pydantic reads a factory's signature as the
    # model is built, and a builtin's means parsing its text signature (a few ms per start).
    config: dict[str, Any] = Field(default_factory=lambda: {})
    timeout: Duration | None = None


class InputParam(_Strict):
    """One declared input parameter of a workflow."""

    type: Literal["string", "number", "integer", "boolean", "object", "array", "any"] = "any"
    default: Any = None
    required: bool = False
    description: str | None = None


class NodeDefaults(_Strict):
    """Defaults applied to every node that does not set its own."""

    retry: RetryPolicy | None = None
    timeout: Duration | None = None


class NodeSpec(_Strict):
    """One node of the DAG: what runs (handler + config), after what, and how it is retried."""

    id: str = Field(pattern=NODE_ID_PATTERN)
    handler: str = Field(min_length=1)
    name: str | None = None
    description: str | None = None
    dependencies: tuple[str, ...] = ()
    config: dict[str, Any] = Field(default_factory=lambda: {})
    retry: RetryPolicy | None = None
    timeout: Duration | None = None
    when: str | None = None
    trigger_rule: TriggerRule = TriggerRule.ALL_SUCCESS
    compensate: CompensationSpec | None = None
    data_classification: DataClassification = DataClassification.PUBLIC
    priority: int = 50  # "normal": higher runs first when a limit or a pause holds nodes back
    capabilities: tuple[str, ...] = ()

    @field_validator("id")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        # Ids with two leading underscores are the names templates cannot address (the
        # sandbox refuses them) and that scripts treat specially ("__proto__").
        if value.startswith("__"):
            raise ValueError(
                f"node id {value!r} starts with '__', which is reserved: rename the node"
            )
        return value

    @field_validator("priority", mode="before")
    @classmethod
    def _priority_names(cls, value: Any) -> Any:
        if isinstance(value, str) and value.lower() in _PRIORITY_NAMES:
            return _PRIORITY_NAMES[value.lower()]
        return value

    @field_validator("compensate", mode="before")
    @classmethod
    def _compensate_shorthand(cls, value: Any) -> Any:
        # `compensate: rollback_fn` is shorthand for a registered python function (the
        # loader has already made a handler's name, `compensate: noop`, that handler).
        if isinstance(value, str):
            return {"handler": "python", "config": {"function": value}}
        return value


class SuccessCriterion(_Strict):
    """What must hold when a run ends (``definition/criteria.py`` says how it reads).

    ``condition`` is ``all_tasks_completed`` or an expression in the language of ``when:``;
    a ``required`` criterion that does not hold fails the execution, another is reported.
    A plain string is shorthand for ``{condition: <it>}``.
    """

    condition: str = Field(min_length=1, max_length=2000)
    required: bool = True
    description: str | None = Field(default=None, max_length=2000)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"condition": value} if isinstance(value, str) else value

    @field_validator("condition")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()


class DagSpec(_Strict):
    """The graph: a list of nodes whose ``dependencies`` name other nodes."""

    nodes: tuple[NodeSpec, ...] = Field(min_length=1)


_ROUTE_WORDS = frozenset({"executions", "versions", "activate", "deprecate"})
"""Path segments after a definition's name that name a route (api/routes/definitions.py)."""


class WorkflowSpec(_Strict):
    """A whole workflow definition in canonical form."""

    name: str = Field(min_length=1, max_length=200)
    version: str | None = Field(default=None, max_length=64)
    description: str | None = None
    inputs: dict[str, InputParam] = Field(default_factory=lambda: {})
    defaults: NodeDefaults = Field(default_factory=NodeDefaults)
    timeout: Duration | None = None
    on_failure: Literal["compensate", "none"] = "compensate"
    concurrency: int | None = Field(default=None, ge=1)
    dag: DagSpec
    # Reference 004 lifecycle sections: parsed and kept with the definition.
    triggers: tuple[dict[str, Any], ...] = ()
    routing: tuple[dict[str, Any], ...] = ()
    error_handling: tuple[dict[str, Any], ...] = ()
    success_criteria: tuple[SuccessCriterion, ...] = ()
    metadata: dict[str, Any] = Field(default_factory=lambda: {})

    @field_validator("version", mode="before")
    @classmethod
    def _version_as_text(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        return value

    @field_validator("name", "version")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        # Both are stored in text columns (PostgreSQL refuses NUL) and shown in lists and
        # headers, where a bidirectional override could disguise the text after them.
        found = _UNSHOWABLE.search(value) if value is not None else None
        if found is not None:
            raise ValueError(
                "must be one line of text, without control characters or bidirectional"
                f" formatting (found U+{ord(found.group()):04X} at position {found.start()})"
            )
        return value

    @field_validator("name")
    @classmethod
    def _addressable(cls, value: str) -> str:
        # The API addresses a definition as /v1/definitions/{name}[/executions|/versions...]
        # with the name's slashes as they are (percent-encoded ones are decoded before
        # routing): a name those routes read as another route could be stored, but never
        # reached again.
        segments = value.split("/")
        if len(segments) > 1 and segments[-1] in _ROUTE_WORDS:
            raise ValueError(
                f"a name may not end in '/{segments[-1]}': the API reads that as its route"
            )
        return value

    def node(self, node_id: str) -> NodeSpec:
        for node in self.dag.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)

    def effective_retry(self, node: NodeSpec) -> RetryPolicy:
        return node.retry or self.defaults.retry or RetryPolicy()

    def effective_timeout(self, node: NodeSpec) -> float | None:
        return node.timeout if node.timeout is not None else self.defaults.timeout
