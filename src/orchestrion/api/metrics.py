"""Prometheus metrics of one app, in its own registry (two apps in a process never collide).

Execution and node metrics come from engine records (``Metrics.observe`` is a record-feed
sink), HTTP metrics from the middleware (``observe_http``). Queue depth, nodes in flight and
live executions are computed at scrape time from the node states the records announced.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from orchestrion.api.feed import ExecutionInfo
from orchestrion.core.events import Record
from orchestrion.core.states import FINAL_EXECUTION_STATES, NodeState

__all__ = ["Metrics"]

# Execution records that mean "entered this status"; running/waiting flips are not counted.
_COUNTED = frozenset(
    {
        "execution.started",
        "execution.completed",
        "execution.failed",
        "execution.cancelled",
        "execution.paused",
        "execution.retried",
    }
)
_SETTLED = frozenset({NodeState.COMPLETED, NodeState.FAILED})
_RETRY = "node.retry_scheduled"
_NODE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


def _attempt_duration(record: Record) -> float | None:
    """Seconds an attempt ran, when the record ends one (a failure to be retried included)."""
    if record.started_at is None:
        return None
    if record.type == _RETRY:
        end: float | None = record.at  # the attempt ended now; the node is not finished
    elif record.state in _SETTLED:
        end = record.finished_at
    else:
        return None
    return None if end is None else max(0.0, end - record.started_at)


class Metrics:
    """Every metric of docs/API.md, registered in ``self.registry``."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.executions = Counter(
            "orchestrion_executions",
            "Executions that entered a status",
            ["status"],
            registry=registry,
        )
        self.nodes = Counter(
            "orchestrion_nodes",
            "Node transitions into a state, by handler",
            ["state", "handler"],
            registry=registry,
        )
        self.node_duration = Histogram(
            "orchestrion_node_duration_seconds",
            "Duration of node attempts that completed or failed, by handler",
            ["handler"],
            buckets=_NODE_BUCKETS,
            registry=registry,
        )
        self.retries = Counter(
            "orchestrion_node_retries",
            "Node attempts scheduled for a retry, by handler",
            ["handler"],
            registry=registry,
        )
        self.http_requests = Counter(
            "orchestrion_http_requests",
            "HTTP requests served",
            ["method", "route", "status"],
            registry=registry,
        )
        self.http_duration = Histogram(
            "orchestrion_http_request_duration_seconds",
            "HTTP request duration (until the last byte of the response)",
            ["method", "route"],
            registry=registry,
        )
        # execution id -> node id -> state, for nodes queued or running; live executions
        self._active: dict[str, dict[str, NodeState]] = {}
        self._live: set[str] = set()
        Gauge(
            "orchestrion_queue_depth",
            "Node attempts dispatched and not started yet",
            registry=registry,
        ).set_function(lambda: self._count(NodeState.QUEUED))
        Gauge(
            "orchestrion_nodes_in_flight", "Node attempts running now", registry=registry
        ).set_function(lambda: self._count(NodeState.RUNNING))
        Gauge(
            "orchestrion_executions_live",
            "Executions running, waiting or paused",
            registry=registry,
        ).set_function(lambda: len(self._live))

    def _count(self, state: NodeState) -> int:
        return sum(1 for nodes in self._active.values() for s in nodes.values() if s is state)

    @property
    def queue_depth(self) -> int:
        return self._count(NodeState.QUEUED)

    @property
    def in_flight(self) -> int:
        return self._count(NodeState.RUNNING)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)

    def execution_created(self) -> None:
        """A pending execution was made (not a record: nothing ran yet)."""
        self.executions.labels("pending").inc()

    def observe(self, info: ExecutionInfo, records: list[Record]) -> None:
        """Record-feed sink."""
        execution_id = info.execution_id
        for record in records:
            if record.node is None:
                self._observe_execution(execution_id, record)
                continue
            state = record.state
            if state is None:
                continue
            handler = info.handler(record.node)
            self.nodes.labels(state.value, handler).inc()
            if record.type == _RETRY:
                self.retries.labels(handler).inc()
            duration = _attempt_duration(record)
            if duration is not None:
                self.node_duration.labels(handler).observe(duration)
            if state in (NodeState.QUEUED, NodeState.RUNNING):
                self._active.setdefault(execution_id, {})[record.node] = state
            else:
                nodes = self._active.get(execution_id)
                if nodes is not None:
                    nodes.pop(record.node, None)
                    if not nodes:
                        del self._active[execution_id]

    def _observe_execution(self, execution_id: str, record: Record) -> None:
        status = record.status
        if status is None:
            return
        if record.type in _COUNTED:
            self.executions.labels(status.value).inc()
        if status in FINAL_EXECUTION_STATES:
            self._live.discard(execution_id)
            self._active.pop(execution_id, None)
        else:
            self._live.add(execution_id)

    def observe_http(self, method: str, route: str, status: int, seconds: float) -> None:
        self.http_requests.labels(method, route, str(status)).inc()
        self.http_duration.labels(method, route).observe(seconds)
