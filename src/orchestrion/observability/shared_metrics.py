"""The metrics of a service of several server processes (``serve --workers N``), summed.

Each server process keeps its own metrics, but a scrape of ``/metrics`` lands on one of them.
So, as prometheus_client's multiprocess mode has it, the parent gives every process one
directory (``PROMETHEUS_MULTIPROC_DIR``, set before any process imports prometheus_client):
each process's counters and histograms write their values into memory-mapped files of their
own there, and a scrape, whichever process takes it, reads them all (``MultiProcessCollector``)
and answers the totals of the service. The parent removes a dead process's gauges
(``mark_process_dead``); its counters stay counted, so totals never go back.

What ``Metrics`` computes at scrape time from one process's state (queue depth, nodes in
flight, live executions, open streams, stuck threads) has no file to read: here each process
writes those figures into ``livesum`` gauges every ``PUBLISH_SECONDS`` (and the scraping
process just before it answers), so a scrape shows their sum over the live processes, at
most that old. The event sinks' counters are carried into counters by their increments;
the outbox backlog, which only the process holding the publisher lease reads, is the value
that process published last (``livemostrecent``). Only Orchestrion's own metrics are
answered: another library's metrics in the directory are not this endpoint's.
"""

from __future__ import annotations

import asyncio
import glob
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

__all__ = ["PUBLISH_SECONDS", "SHARED_METRICS_DIR", "SharedMetrics", "reserve_files"]

PUBLISH_SECONDS = 1.0
SHARED_METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus_client as it is imported

_M = TypeVar("_M", Counter, Gauge)

_SINK_COUNTERS = (
    ("orchestrion_sink_events_published", "Events a sink took", "published"),
    ("orchestrion_sink_events_failed", "Event deliveries a sink refused", "failed"),
    (
        "orchestrion_sink_events_dead_lettered",
        "Events kept as dead letters after their last attempt",
        "dead_lettered",
    ),
)


# The files a server process writes (prometheus_client's names: kind, pid) and the size it
# gives a new one, as a hole that takes room only once written.
_FILE_KINDS = ("counter", "histogram", "gauge_livesum", "gauge_livemostrecent")
_FILE_BYTES = 1 << 16


def reserve_files(path: str) -> None:
    """Give this process's metrics files their room in ``path`` now (OSError when there is
    none): written later into a full folder, a memory-mapped file kills its process (SIGBUS)."""
    for kind in _FILE_KINDS:
        fd = os.open(os.path.join(path, f"{kind}_{os.getpid()}.db"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.posix_fallocate(fd, 0, max(_FILE_BYTES, os.fstat(fd).st_size))
        finally:
            os.close(fd)


class _Sinks(Protocol):
    """The publisher as read here (``metrics.SinkSnapshot``, and whether it publishes)."""

    @property
    def stats(self) -> Mapping[str, Any]: ...

    @property
    def backlog(self) -> int: ...


class _Own(Collector):
    """The metrics of every process in the directory, Orchestrion's own names only."""

    def __init__(self, path: str, names: set[str]) -> None:
        self._path = path
        self._names = names

    def collect(self) -> Iterable[Metric]:
        # A file too short to say how much of it is used is one its process is making, or
        # was killed making: it holds no value yet, and reading it would fail every scrape.
        files = [f for f in glob.glob(os.path.join(self._path, "*.db")) if _size(f) >= 8]
        found: Iterable[Metric] = MultiProcessCollector.merge(files)  # type: ignore[no-untyped-call]
        return sorted((m for m in found if m.name in self._names), key=lambda m: m.name)


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:  # a dead process's gauges, dropped since the glob
        return 0


class SharedMetrics:
    """This process's part of the metrics every server process of the service writes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._names: set[str] = set()
        self._computed: list[tuple[Gauge, Callable[[], float]]] = []
        self._sinks: Callable[[], _Sinks | None] = lambda: None
        self._sent: dict[tuple[str, str], float] = {}  # (count, sink) -> what was carried over
        self._sink_counters = {
            read: self._own(Counter(name, doc, ["sink"], registry=None))
            for name, doc, read in _SINK_COUNTERS
        }
        self._backlog = self._own(
            Gauge(
                "orchestrion_outbox_backlog",
                "Outbox entries waiting to be published",
                registry=None,
                multiprocess_mode="livemostrecent",
            )
        )

    def _own(self, metric: _M) -> _M:
        self.include(metric)
        return metric

    def include(self, *metrics: Any) -> None:
        """Answer these metrics (made in this process, their values in the directory)."""
        for metric in metrics:
            self._names.update(family.name for family in metric.describe())

    def gauge(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """A gauge computed by ``read`` in each process, summed over the live ones."""
        gauge = Gauge(name, documentation, registry=None, multiprocess_mode="livesum")
        self.include(gauge)
        self._computed.append((gauge, read))

    def watch_sinks(self, source: Callable[[], _Sinks | None]) -> None:
        self._sinks = source

    def publish(self) -> None:
        """Write this process's computed figures where the other processes read them."""
        for gauge, read in self._computed:
            gauge.set(read())
        snapshot = self._sinks()
        if snapshot is None:
            return
        for sink, counts in snapshot.stats.items():
            for field, counter in self._sink_counters.items():
                now = float(getattr(counts, field))
                step = now - self._sent.get((field, sink), 0.0)
                if step > 0:
                    counter.labels(sink).inc(step)
                    self._sent[field, sink] = now
        if getattr(snapshot, "holding", True):  # only the publishing process reads it afresh
            self._backlog.set(snapshot.backlog)

    async def keep_publishing(self) -> None:
        """``publish`` every ``PUBLISH_SECONDS``, until cancelled."""
        while True:
            self.publish()
            await asyncio.sleep(PUBLISH_SECONDS)

    def render(self, *local: Collector) -> bytes:
        """The totals of the service, with ``local`` collectors (read by this process alone,
        the same for every process: the cluster read from Redis)."""
        self.publish()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Own(self.path, self._names))
        for collector in local:
            registry.register(collector)
        return generate_latest(registry)
