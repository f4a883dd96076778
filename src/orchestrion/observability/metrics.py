"""Prometheus metrics of one app, in its own registry (two apps in a process never collide).

Execution and node metrics come from engine records (``Metrics.observe`` is a record-feed
sink), HTTP metrics from the middleware (``observe_http``). Queue depth, nodes in flight and
live executions are computed at scrape time from the node states the records announced.

In scale-out mode the ``/metrics`` route first reads a snapshot of the cluster from Redis
and hands it to ``observe_cluster``: any object with the fields of ``ClusterSnapshot``
(``orchestrion.cluster.status.Cluster`` is one; metrics know only this shape).
``ClusterCollector`` turns it into gauges at render time: ``orchestrion_redis_up``,
``orchestrion_dlq_size``, task stream depths, live workers and orchestrators, and
``orchestrion_circuit_state``. The last one has the name and meaning of the worker-side gauge
in ``orchestrion.execution.circuit``, which lives in the process-wide default registry; here
it is a collector of this app's registry fed from the shared circuit hashes in Redis, so
nothing is registered twice and every circuit is shown, not only those this process touched.
When Redis cannot be read only ``orchestrion_redis_up 0`` is exposed: stale depths would
look like live ones.

Given a directory (``shared_dir``: the server processes of ``serve --workers N``), the
metrics answer the totals of every process writing there (``observability/shared_metrics.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from orchestrion.core.events import Record
from orchestrion.core.record_types import RecordType
from orchestrion.core.states import FINAL_EXECUTION_STATES, NodeState
from orchestrion.engine.commit_faults import CommitFaults
from orchestrion.handlers import function_threads
from orchestrion.observability.feed import ExecutionInfo
from orchestrion.observability.shared_metrics import SharedMetrics

__all__ = ["ClusterCollector", "ClusterSnapshot", "Metrics", "StreamGauge"]

# Execution records that mean "entered this status"; running/waiting flips are not counted.
_COUNTED = frozenset(
    {
        RecordType.EXECUTION_STARTED,
        RecordType.EXECUTION_COMPLETED,
        RecordType.EXECUTION_FAILED,
        RecordType.EXECUTION_CANCELLED,
        RecordType.EXECUTION_PAUSED,
        RecordType.EXECUTION_RETRIED,
    }
)
_SETTLED = frozenset({NodeState.COMPLETED, NodeState.FAILED})
_RETRY = RecordType.NODE_RETRY_SCHEDULED
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

    def __init__(self, shared_dir: str | None = None) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.shared = SharedMetrics(shared_dir) if shared_dir else None
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
        self._http_series: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        # The labelled series of the record feed, kept as those of HTTP (observe_http).
        self._node_series: dict[tuple[NodeState, str], Any] = {}
        self._duration_series: dict[str, Any] = {}
        self._execution_series: dict[str, Any] = {}
        # execution id -> node id -> state, for nodes queued or running; live executions
        self._active: dict[str, dict[str, NodeState]] = {}
        self._live: set[str] = set()
        if self.shared is not None:
            self.shared.include(
                self.executions,
                self.nodes,
                self.node_duration,
                self.retries,
                self.http_requests,
                self.http_duration,
            )
        self._computed(
            "orchestrion_queue_depth",
            "Node attempts dispatched and not started yet",
            lambda: self._count(NodeState.QUEUED),
        )
        self._computed(
            "orchestrion_nodes_in_flight",
            "Node attempts running now",
            lambda: self._count(NodeState.RUNNING),
        )
        self._computed(
            "orchestrion_executions_live",
            "Executions running, waiting or paused",
            lambda: len(self._live),
        )
        self._faults: Callable[[], CommitFaults | None] = lambda: None
        self._computed(
            "orchestrion_commit_failures",
            "Engine commits that failed since the process started (the turn is reloaded)",
            lambda: self._fault_count(parked=False),
        )
        self._computed(
            "orchestrion_executions_parked",
            "Executions not driven any more: the store refused their state repeatedly",
            lambda: self._fault_count(parked=True),
        )
        self._computed(
            "orchestrion_python_threads_stuck",
            "Python node functions still running after their attempt was cancelled or timed out",
            function_threads.stuck,
        )
        self._computed(
            "orchestrion_python_threads_busy",
            "Python node functions running in a thread now (stuck ones included)",
            function_threads.busy,
        )
        self.cluster = ClusterCollector()
        registry.register(self.cluster)
        self.sinks = SinkCollector()
        registry.register(self.sinks)

    def _computed(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """A gauge worked out at scrape time (in each process, summed, when shared)."""
        if self.shared is not None:
            self.shared.gauge(name, documentation, read)
        else:
            Gauge(name, documentation, registry=self.registry).set_function(read)

    def watch_streams(self, count: Callable[[], int]) -> None:
        """Report ``count()`` as the event streams (Server-Sent Events) open now."""
        self._computed(
            "orchestrion_event_streams_open",
            "Event and log streams (Server-Sent Events) open now",
            count,
        )

    def watch_sinks(self, source: Callable[[], SinkSnapshot | None]) -> None:
        """Read the event sinks' counters from ``source`` (the engine's publisher, when it
        has one) at each scrape."""
        self.sinks.source = source
        if self.shared is not None:
            self.shared.watch_sinks(source)

    def watch_engine(self, source: Callable[[], CommitFaults | None]) -> None:
        """Read the engine's failed commits and parked executions from ``source``."""
        self._faults = source

    def _fault_count(self, *, parked: bool) -> int:
        faults = self._faults()
        if faults is None:
            return 0
        return len(faults.parked) if parked else faults.total

    def observe_cluster(self, snapshot: ClusterSnapshot | None) -> None:
        """The cluster as just read from Redis; None when Redis could not be read."""
        self.cluster.update(snapshot)

    def _count(self, state: NodeState) -> int:
        return sum(1 for nodes in self._active.values() for s in nodes.values() if s is state)

    @property
    def queue_depth(self) -> int:
        return self._count(NodeState.QUEUED)

    @property
    def in_flight(self) -> int:
        return self._count(NodeState.RUNNING)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric (of every process, when shared)."""
        if self.shared is not None:
            return self.shared.render(self.cluster)
        return generate_latest(self.registry)

    def execution_created(self) -> None:
        """A pending execution was made (not a record: nothing ran yet)."""
        self._execution_count("pending").inc()

    def _execution_count(self, status: str) -> Any:
        series = self._execution_series.get(status)
        if series is None:
            series = self._execution_series[status] = self.executions.labels(status)
        return series

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
            series = self._node_series.get((state, handler))
            if series is None:
                series = self._node_series[state, handler] = self.nodes.labels(state.value, handler)
            series.inc()
            if record.type == _RETRY:
                self.retries.labels(handler).inc()
            duration = _attempt_duration(record)
            if duration is not None:
                timing = self._duration_series.get(handler)
                if timing is None:
                    timing = self._duration_series[handler] = self.node_duration.labels(handler)
                timing.observe(duration)
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
            self._execution_count(status.value).inc()
        if status in FINAL_EXECUTION_STATES:
            self._live.discard(execution_id)
            self._active.pop(execution_id, None)
        else:
            self._live.add(execution_id)

    def observe_http(self, method: str, route: str, status: int, seconds: float) -> None:
        # The labelled series of each (method, route, status) once: looking them up through
        # ``labels`` (checks, a lock) was a tenth of what the API's own layers cost a request.
        # One entry per series the registry holds anyway.
        key = (method, route, status)
        series = self._http_series.get(key)
        if series is None:
            series = self._http_series[key] = (
                self.http_requests.labels(method, route, str(status)),
                self.http_duration.labels(method, route),
            )
        series[0].inc()
        series[1].observe(seconds)


class StreamGauge(Protocol):
    """One task stream of a snapshot: its entries and those a worker holds."""

    @property
    def name(self) -> str: ...
    @property
    def length(self) -> int: ...
    @property
    def pending(self) -> int: ...


class ClusterSnapshot(Protocol):
    """What the scale-out gauges read of the cluster: live processes, queues, circuits."""

    @property
    def workers(self) -> Sequence[Mapping[str, Any]]: ...
    @property
    def orchestrators(self) -> Sequence[Mapping[str, Any]]: ...
    @property
    def streams(self) -> Sequence[StreamGauge]: ...
    @property
    def dlq_size(self) -> int: ...
    @property
    def circuits(self) -> Sequence[Mapping[str, Any]]: ...
    def workers_by_handler(self) -> dict[str, int]:
        """Live workers serving each handler."""
        ...


@dataclass(frozen=True, slots=True)
class _NoCluster:
    """An empty snapshot: every gauge, no series (to describe the names up front)."""

    workers: tuple[Mapping[str, Any], ...] = ()
    orchestrators: tuple[Mapping[str, Any], ...] = ()
    streams: tuple[StreamGauge, ...] = ()
    dlq_size: int = 0
    circuits: tuple[Mapping[str, Any], ...] = ()

    def workers_by_handler(self) -> dict[str, int]:
        return {}


# Gauge values of circuit states, as in orchestrion.execution.circuit (worst is highest).
_CIRCUIT_VALUE = {"closed": 0, "half_open": 1, "open": 2}


class SinkCounts(Protocol):
    """What one event sink did (``engine/publishing.py``'s ``SinkStats``)."""

    @property
    def published(self) -> int: ...

    @property
    def failed(self) -> int: ...

    @property
    def dead_lettered(self) -> int: ...


class SinkSnapshot(Protocol):
    """The publisher of outbound events, as the metrics read it."""

    @property
    def stats(self) -> Mapping[str, SinkCounts]: ...

    @property
    def backlog(self) -> int: ...


class SinkCollector(Collector):
    """Counters of the event sinks of this process's publisher; nothing without sinks."""

    def __init__(self) -> None:
        self.source: Callable[[], SinkSnapshot | None] = lambda: None

    def describe(self) -> Iterable[Metric]:
        return list(self._families(None))

    def collect(self) -> Iterable[Metric]:
        snapshot = self.source()
        return list(self._families(snapshot)) if snapshot is not None else []

    @staticmethod
    def _families(snapshot: SinkSnapshot | None) -> Iterator[Metric]:
        stats = snapshot.stats if snapshot is not None else {}
        for name, doc, read in (
            ("orchestrion_sink_events_published", "Events a sink took", "published"),
            ("orchestrion_sink_events_failed", "Event deliveries a sink refused", "failed"),
            (
                "orchestrion_sink_events_dead_lettered",
                "Events kept as dead letters after their last attempt",
                "dead_lettered",
            ),
        ):
            family = CounterMetricFamily(name, doc, labels=["sink"])
            for sink, counts in sorted(stats.items()):
                family.add_metric([sink], getattr(counts, read))
            yield family
        backlog = GaugeMetricFamily(
            "orchestrion_outbox_backlog", "Outbox entries waiting to be published"
        )
        backlog.add_metric([], snapshot.backlog if snapshot is not None else 0)
        yield backlog


class ClusterCollector(Collector):
    """Scale-out gauges from the last cluster snapshot; nothing at all in embedded mode."""

    def __init__(self) -> None:
        self._seen = False  # a snapshot was offered: this app runs in scale-out mode
        self._snapshot: ClusterSnapshot | None = None

    def update(self, snapshot: ClusterSnapshot | None) -> None:
        self._seen = True
        self._snapshot = snapshot

    def describe(self) -> Iterable[Metric]:
        # Every name up front, so the registry refuses a collision at registration time.
        return list(_families(_NoCluster(), redis_up=True))

    def collect(self) -> Iterable[Metric]:
        if not self._seen:
            return []
        return list(_families(self._snapshot, redis_up=self._snapshot is not None))


def _families(snapshot: ClusterSnapshot | None, *, redis_up: bool) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "orchestrion_redis_up",
        "Whether Redis answered the last scrape (1) or not (0)",
        value=1 if redis_up else 0,
    )
    if snapshot is None:
        return
    yield GaugeMetricFamily(
        "orchestrion_dlq_size",
        "Task messages parked in the dead letter queue",
        value=snapshot.dlq_size,
    )
    length = GaugeMetricFamily(
        "orchestrion_task_stream_length",
        "Entries in a task stream (waiting or held by a worker), by stream (handler+capabilities)",
        labels=["stream"],
    )
    pending = GaugeMetricFamily(
        "orchestrion_task_stream_pending",
        "Entries of a task stream a worker has read and not answered yet, by stream",
        labels=["stream"],
    )
    for stream in snapshot.streams:
        length.add_metric([stream.name], stream.length)
        pending.add_metric([stream.name], stream.pending)
    yield length
    yield pending
    yield GaugeMetricFamily(
        "orchestrion_workers_live", "Workers with a live heartbeat", value=len(snapshot.workers)
    )
    by_handler = GaugeMetricFamily(
        "orchestrion_handler_workers_live",
        "Workers with a live heartbeat that serve a handler",
        labels=["handler"],
    )
    for handler, count in snapshot.workers_by_handler().items():
        by_handler.add_metric([handler], count)
    yield by_handler
    yield GaugeMetricFamily(
        "orchestrion_orchestrators_live",
        "Orchestrators with a live heartbeat",
        value=len(snapshot.orchestrators),
    )
    circuits = GaugeMetricFamily(
        "orchestrion_circuit_state",
        "Circuit breaker state shared in Redis (0 closed, 1 half-open, 2 open)",
        labels=["handler", "host"],
    )
    for circuit in snapshot.circuits:
        value = _CIRCUIT_VALUE.get(circuit["state"], 0)
        circuits.add_metric([circuit["handler"], circuit["host"]], value)
    yield circuits
