"""Request and response bodies of the REST API, as pydantic models (docs/API.md).

States are UPPERCASE, times ISO 8601 UTC, durations ``*_ms``. Every model here appears in the
OpenAPI document, so clients and schema-driven tests see exactly what is sent.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

__all__ = [
    "ActionResponse",
    "ChildProgress",
    "CriterionOut",
    "DefinitionDetail",
    "DefinitionPage",
    "DefinitionSummary",
    "EventOut",
    "EventPage",
    "ExecutionDetail",
    "ExecutionPage",
    "ExecutionState",
    "ExecutionSummary",
    "HealthCheck",
    "HealthResponse",
    "LogLineOut",
    "LogPage",
    "NodeDetail",
    "NodeStateName",
    "Problem",
    "ProblemItem",
    "ResultsBody",
    "ResultsResponse",
    "StartExecutionRequest",
    "SubmitResponse",
    "TriggerRequest",
]

ExecutionState = Literal[
    "PENDING", "RUNNING", "WAITING", "PAUSED", "COMPLETED", "FAILED", "CANCELLED"
]
NodeStateName = Literal[
    "PENDING",
    "QUEUED",
    "RUNNING",
    "WAITING",
    "COMPLETED",
    "FAILED",
    "SKIPPED",
    "CANCELLED",
    "COMPENSATED",
]

# A start's objects: any JSON value is taken, its shape checked with the start's other
# problems so one 422 lists them all (api/start_shapes.py); the schema shows the object.
_Object = Annotated[Any, WithJsonSchema({"type": "object"})]
_Overrides = Annotated[
    Any, WithJsonSchema({"type": "object", "additionalProperties": {"type": "object"}})
]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ------------------------------------------------------------------ problems (RFC 9457)


class ProblemItem(_Out):
    """One located problem: a definition issue (node, field, line) or a request field."""

    code: str
    message: str
    node: str | None = None
    field: str | None = None
    line: int | None = None


class Problem(_Out):
    """An RFC 9457 problem document (``application/problem+json``); never a stack trace."""

    type: str = Field(examples=["urn:orchestrion:problem:not-found"])
    title: str
    status: int
    detail: str
    instance: str
    request_id: str | None = None
    errors: list[ProblemItem] | None = None


# ------------------------------------------------------------------ workflows


class SubmitResponse(_Out):
    """A stored definition version and the pending execution made for it."""

    workflow_definition_id: str
    execution_id: str
    name: str
    version: str
    status: ExecutionState
    message: str
    warnings: list[str] = Field(default_factory=list)


class TriggerRequest(BaseModel):
    """Trigger body: input params and per-node config overrides.

    Reference 003's form is accepted too: any other top-level key is a node id mapping to
    config overrides (``{"summarize_posts": {"prompt": "..."}}``).
    """

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {"input_params": {"user_id": 123}},
                {"summarize_posts": {"prompt": "Recent Posts: {{ get_posts.output.data }}"}},
            ]
        },
    )
    __pydantic_extra__: dict[str, _Object] = Field(init=False)

    input_params: _Object = Field(default_factory=dict)
    node_overrides: _Overrides = Field(default_factory=dict)


class StartExecutionRequest(BaseModel):
    """Start a new execution of a stored definition (the newest version by default)."""

    model_config = ConfigDict(extra="forbid")

    version: str | None = None
    input_params: _Object = Field(default_factory=dict)
    node_overrides: _Overrides = Field(default_factory=dict)


class ActionResponse(_Out):
    """The answer to trigger, cancel, retry, pause and resume."""

    execution_id: str
    status: ExecutionState
    message: str


class DecisionRequest(BaseModel):
    """Who decides on a node waiting for approval, and why (recorded with the decision)."""

    model_config = ConfigDict(extra="forbid")

    by: str | None = Field(default=None, max_length=200)
    comment: str | None = Field(default=None, max_length=2000)


class DecisionResponse(ActionResponse):
    """The answer to approve and reject."""

    node_id: str
    approved: bool


class ChildProgress(_Out):
    """The child execution a ``workflow`` node started, and how far it has got."""

    execution_id: str
    status: ExecutionState
    nodes_total: int = Field(description="the child's nodes")
    nodes_done: int = Field(description="its nodes completed or skipped")
    nodes_failed: int = Field(description="its nodes failed")


class NodeDetail(_Out):
    """One node of an execution. ``output`` is left out with ``?include_outputs=false``."""

    state: NodeStateName
    attempt: int
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_ms: float | None = None
    waited_ms: float | None = Field(
        default=None,
        description="how much of duration_ms the attempt spent waiting on a person or a timer",
    )
    error: dict[str, Any] | None = None
    output: Any = None
    wait_reason: str | None = None
    compensation: Literal["done", "failed"] | None = Field(
        default=None,
        description="how its compensation ended: done (the node is COMPENSATED) or failed (the"
        " node stays COMPLETED and error is the compensation's); null when none ran",
    )
    progress: dict[str, int] | None = Field(
        default=None, description="a running map node's items: done, total, failed"
    )
    child: ChildProgress | None = Field(
        default=None,
        description="a workflow node's child execution (the latest it started) and its progress",
    )


class NoticeOut(_Out):
    """A notice a routing rule or an error handling ``halt`` sent (journalled as
    ``execution.notice``)."""

    kind: Literal["escalation", "alert", "approval_required", "halt"]
    rule: int | None = None
    node: str | None = Field(default=None, description="the rule's node, or the halted node")
    teams: list[str] = Field(default_factory=list)
    message: str = ""
    at: datetime | None = None
    delivered: bool = Field(default=False, description="every notice sink confirmed it")


class CriterionOut(_Out):
    """One success criterion of the workflow and how the end of the run judged it."""

    condition: str = Field(examples=["compliance_score >= 0.7"])
    required: bool = Field(
        default=True, description="a required criterion that fails fails the execution"
    )
    passed: bool | None = Field(
        default=None, description="null until evaluated (the run has not ended, or failed first)"
    )
    value: Any = Field(
        default=None,
        description="what the condition evaluated to, when it is a small scalar and reads no "
        "pii or phi output",
    )
    detail: str | None = Field(
        default=None, description="why it failed, or the output fields it read"
    )


class ExecutionDetail(_Out):
    """An execution with every node's state (``state`` and ``status`` are the same value)."""

    id: str
    execution_id: str
    definition_id: str
    workflow: str
    version: str
    state: ExecutionState
    status: ExecutionState
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_ms: float | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)
    error: dict[str, Any] | None = None
    correlation_id: str | None = None
    parent_execution_id: str | None = Field(
        default=None, description="set on a child started by a `workflow` node"
    )
    parent_node_id: str | None = None
    trust: Literal["trusted", "untrusted"] = Field(
        default="untrusted",
        description="untrusted: submitted through the service (or a child of such an "
        "execution); only the policy's python allowlist may run, wherever it is retried",
    )
    node_states: dict[str, NodeStateName]
    nodes: dict[str, NodeDetail]
    success_criteria: list[CriterionOut] = Field(
        default_factory=list,
        description="the workflow's success criteria, as the end of the run judged them",
    )
    notices: list[NoticeOut] = Field(
        default_factory=list,
        description="what the workflow's routing and error handling rules told teams",
    )


class ResultsBody(_Out):
    """Reference 003's ``results`` object."""

    final_status: str = Field(examples=["workflow_completed"])
    aggregated_results: Any = None


class ResultsResponse(_Out):
    """An execution's result (the output node's aggregate), in reference 003's shape."""

    execution_id: str
    status: ExecutionState
    completed: bool
    results: ResultsBody
    result: Any = None
    error: dict[str, Any] | None = None
    message: str


class ExecutionSummary(_Out):
    """One row of the executions list."""

    execution_id: str
    workflow: str | None = None
    version: str | None = None
    definition_id: str
    status: ExecutionState
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    trigger: Literal["api", "schedule", "event", "workflow"] = Field(
        default="api",
        description="what started it: a client, a schedule, an emitted event, a parent execution",
    )
    parent_execution_id: str | None = None


class ExecutionPage(_Out):
    """A page of executions, newest first; pass ``next_cursor`` as ``cursor`` for the next."""

    items: list[ExecutionSummary]
    next_cursor: str | None = None


class CountBucket(_Out):
    """Executions created in [start, start + bucket_seconds), by state."""

    start: datetime
    by_status: dict[ExecutionState, int]


class ExecutionSeries(_Out):
    """Counts by state over time: ``buckets`` equal spans from ``start`` to ``end``."""

    start: datetime
    end: datetime
    bucket_seconds: float
    buckets: list[CountBucket]


class ExecutionCounts(_Out):
    """How many executions match a filter, by state (states with none are left out), and
    with ``buckets`` asked for, the same over time."""

    total: int
    by_status: dict[ExecutionState, int]
    series: ExecutionSeries | None = None


class ValidationReport(_Out):
    """A definition that validates: what it is, and the warnings it raised."""

    valid: Literal[True] = True
    name: str
    version: str | None = None
    nodes: int
    warnings: list[str] = Field(default_factory=list)


# ------------------------------------------------------------------ definitions


class DefinitionSummary(_Out):
    """A stored definition version."""

    id: str
    name: str
    version: str
    created_at: datetime
    nodes: int
    dialect: str
    source_format: str
    trust: Literal["trusted", "untrusted"] = Field(
        default="untrusted",
        description="untrusted: stored through the service; its executions are untrusted, "
        "whichever process runs them",
    )
    status: Literal["available", "active", "deprecated"] = Field(
        default="available",
        description="available: submitted; active: chosen for triggered and scheduled runs "
        "and starts that name no version; deprecated: never chosen again",
    )
    created_by: str | None = Field(default=None, description="who submitted this version")
    status_changed_at: datetime | None = None
    status_changed_by: str | None = None


class DefinitionDetail(DefinitionSummary):
    """A stored definition version and its canonical form."""

    spec: dict[str, Any]
    source: str | None = Field(
        default=None,
        description="with ?include_source=true: the text the version was first submitted "
        "as (YAML or JSON, as sent, at most definitions.max_bytes); null when not asked for, "
        "or when the store holds no text for it",
    )


class DefinitionPage(_Out):
    items: list[DefinitionSummary]


# ------------------------------------------------------------------ events


class EventOut(_Out):
    """One entry of the event journal; ``seq`` increases across all executions."""

    seq: int
    id: str
    type: str = Field(examples=["node.completed"])
    execution_id: str
    node_id: str | None = None
    attempt: int = 0
    at: datetime
    correlation_id: str | None = None
    causation_id: str | None = None
    data: dict[str, Any] | None = None


class EventPage(_Out):
    """Events after ``after``; pass ``next_after`` as ``after`` for the next page."""

    items: list[EventOut]
    next_after: int


class LogLineOut(_Out):
    """One log line a node attempt wrote; ``seq`` increases across all executions."""

    seq: int
    node_id: str
    attempt: int
    at: datetime
    level: str = Field(examples=["INFO"])
    logger: str = Field(examples=["my_package.pricing"])
    message: str


class LogPage(_Out):
    """Log lines after ``after``; pass ``next_after`` as ``after`` for the next page."""

    items: list[LogLineOut]
    next_after: int


class RenderedInputsOut(_Out):
    """One attempt's config as rendered: values read from secrets stay as declared (their
    template); ``{"omitted": ...}`` when it was too large to keep; ``{"masked": ...}`` for a
    classified node and a caller who may not see its data; null when the config was empty
    or did not render."""

    attempt: int
    started_at: datetime
    inputs: Any = None


class RenderedInputsPage(_Out):
    """A node's rendered inputs, one item per attempt that started, oldest first."""

    node_id: str
    items: list[RenderedInputsOut]


# ------------------------------------------------------------------ health


class HealthCheck(_Out):
    """One component's health; ``info`` holds what was measured."""

    status: Literal["ok", "fail"]
    detail: str | None = None
    info: dict[str, Any] = Field(default_factory=dict)


class HealthResponse(_Out):
    """``ok`` when every check passes (200), else ``degraded`` (503)."""

    status: Literal["ok", "degraded"]
    checks: dict[str, HealthCheck]
    version: str
