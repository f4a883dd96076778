"""``Metrics`` on a shared directory (``serve --workers N``): what two processes wrote, read
by a third, is their sum; the event sinks' counters are carried over by their increments and
the outbox backlog is the publishing process's.

prometheus_client picks its multiprocess mode when it is imported, so each process here is a
real one started with ``PROMETHEUS_MULTIPROC_DIR`` set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.slow

WRITER = """
import json, sys
from dataclasses import dataclass
from orchestrion.observability.metrics import Metrics

@dataclass
class Counts:
    published: int
    failed: int = 0
    dead_lettered: int = 0

@dataclass
class Publisher:
    stats: dict
    backlog: int
    holding: bool

published, backlog, holding = json.loads(sys.argv[2])
metrics = Metrics(sys.argv[1])
publisher = Publisher({"hook": Counts(published - 2)}, backlog, holding)
metrics.watch_sinks(lambda: publisher)
metrics.watch_streams(lambda: 1)
metrics.shared.publish()
publisher.stats = {"hook": Counts(published)}  # counted on: only the increment is added
metrics.shared.publish()
metrics.observe_http("GET", "/health", 200, 0.01)
"""

READER = """
import sys
from orchestrion.observability.metrics import Metrics
metrics = Metrics(sys.argv[1])
metrics.watch_streams(lambda: 0)  # as every server process does
sys.stdout.write(metrics.render().decode())
"""


def _python(script: str, folder: Path, *args: str) -> str:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    done = subprocess.run(
        [sys.executable, "-c", script, str(folder), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_what_each_process_wrote_is_read_summed_by_any(tmp_path: Path) -> None:
    _python(WRITER, tmp_path, json.dumps([5, 7, False]))  # once the publisher, not now
    _python(WRITER, tmp_path, json.dumps([3, 2, True]))  # publishes now: its backlog counts
    figures = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(_python(READER, tmp_path))
        for sample in family.samples
    }
    assert figures[("orchestrion_sink_events_published_total", (("sink", "hook"),))] == 8
    assert figures[("orchestrion_outbox_backlog", ())] == 2
    labels = (("method", "GET"), ("route", "/health"), ("status", "200"))
    assert figures[("orchestrion_http_requests_total", labels)] == 2
    # Both writers have exited without being marked dead: their streams still count; the
    # reader's own (none open) adds nothing.
    assert figures[("orchestrion_event_streams_open", ())] == 2
    assert not any(name.startswith("orchestrion_circuit") for name, _ in figures)
