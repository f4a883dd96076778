"""No single request stalls ``orchestrion serve``: while the largest definitions the limits
allow, definitions past them and template bombs are sent, ``/health`` is polled from another
thread and every answer must come within ``HEALTH_BOUND`` seconds.

The target is 100 ms; the bound allows for a loaded test machine. It holds for template bombs
that run for the whole template time limit too (in every place a node renders a template):
they render in render threads, not on the event loop. The figures measured are printed
(``pytest -s``) so a run shows the real latencies.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_api_server import Server, until

pytestmark = pytest.mark.slow

# Seconds. The target is 0.1, and an idle machine answers within it; the suite runs files in
# parallel on few cores, where an answer waits its turn for a core for up to about 0.7 s.
# A stalled loop stalls for longer: a template bomb on it for the template time limit (1 s).
HEALTH_BOUND = 0.9

BOMBS = [
    "{{ ((9**9999)**999) is number }}",
    "{{ [['a'*1000]*100]*100 }}",
    "{% set x %}{% for i in range(10000) %}{{ 'a' * 1000 }}{% endfor %}{% endset %}",
    "{{ range(10000) | map('center', 100000) | join }}",
    "{{ '{:{}}'.format(1, 10**8) }}",
    "{{ ([[1] * 1000] * 1000) | sum(start=[]) }}",
    "{{ input.s | list }}",
    "{{ '%*d' % (10**8, 1) }}",
]
# These run until a limit on work done stops them (templates.timeout_seconds, 1 s by default,
# for the first and the last): in a render thread, so /health keeps its bound meanwhile.
MACRO_BOMB = (
    "{% macro m(n) %}{% if n %}{{ m(n - 1) }}{{ m(n - 1) }}{% endif %}{% endmacro %}{{ m(40) }}"
)
LOOP_BOMB = "{% for a in input.s %}{% for b in input.s %}{% endfor %}{% endfor %}"
TIME_BOMBS = [
    MACRO_BOMB,
    "{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}",
    LOOP_BOMB,
]


_PROBE = """
import sys, time, httpx
url, out, stop = sys.argv[1:4]
import pathlib
stop_file = pathlib.Path(stop)
with httpx.Client(base_url=url, timeout=10) as client, open(out, "w") as sink:
    while not stop_file.exists():
        started = time.time()
        try:
            status = client.get("/health").status_code
        except httpx.HTTPError as exc:
            status = repr(exc)
        sink.write(f"{started} {time.time() - started} {status}\\n")
        sink.flush()
        time.sleep(0.01)
"""


class HealthProbe:
    """Polls ``/health`` from its own process (so that the test's own work cannot delay
    it) and keeps every latency, with the wall-clock time it was asked at."""

    def __init__(self, url: str, folder: Path) -> None:
        self.url = url
        self.out = folder / "health-probe.txt"
        self.stop_file = folder / "health-probe.stop"
        self.samples: list[tuple[float, float]] = []  # (when it was asked, latency)
        self.failures: list[str] = []

    def __enter__(self) -> HealthProbe:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _PROBE, self.url, str(self.out), str(self.stop_file)]
        )
        deadline = time.monotonic() + 10
        while not (self.out.exists() and self.out.read_text().count("\n") >= 3):
            assert time.monotonic() < deadline, "the /health probe did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *_: object) -> None:
        self.stop_file.touch()
        self.process.wait(15)
        for line in self.out.read_text().splitlines():
            when, latency, status = line.split(" ", 2)
            self.samples.append((float(when), float(latency)))
            if status != "200":
                self.failures.append(status)

    @property
    def latencies(self) -> list[float]:
        return [latency for _, latency in self.samples]

    def slowest_between(self, start: float, end: float) -> float:
        inside = [lat for when, lat in self.samples if start <= when + lat and when <= end]
        return max(inside, default=0.0)

    def report(self, label: str) -> str:
        values = sorted(self.latencies)
        p95 = values[int(len(values) * 0.95) - 1] if values else 0.0
        return (
            f"{label}: {len(values)} /health answers, median "
            f"{statistics.median(values) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms, "
            f"max {max(values) * 1000:.1f} ms"
        )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = Server(tmp_path, tmp_path / "bounded.db")
    try:
        yield running
    finally:
        assert running.stop() == 0, running.log.read_text()


def _largest_definition() -> dict[str, Any]:
    """10,000 nodes (the limit), each reading its parent through a template: about 1 MB."""
    nodes: list[dict[str, Any]] = [{"id": "n0", "handler": "noop", "config": {"value": 0}}]
    for i in range(1, 10_000):
        nodes.append(
            {
                "id": f"n{i}",
                "handler": "noop",
                "dependencies": [f"n{i - 1}"],
                "config": {"value": f"{{{{ n{i - 1}.output }}}}"},
            }
        )
    return {"name": "largest", "dag": {"nodes": nodes}}


INPUTS = {"s": "x" * 900_000}


def _bombs(name: str, templates: list[str]) -> str:
    nodes = [
        {"id": f"b{i}", "handler": "noop", "config": {"value": template}}
        for i, template in enumerate(templates)
    ]
    return json.dumps({"name": name, "dag": {"nodes": nodes}})


def _time_bombs_everywhere() -> str:
    """A time-limit bomb at every place a node renders a template: a ``when:``, a
    ``condition``'s case, an ``output``'s value, a ``map``'s item config, a noop's config."""
    nodes: list[dict[str, Any]] = [
        {"id": "when", "handler": "noop", "when": LOOP_BOMB, "config": {"value": 1}},
        {
            "id": "case",
            "handler": "condition",
            "config": {"cases": [{"when": MACRO_BOMB, "then": ["chosen"]}]},
        },
        {"id": "chosen", "handler": "noop", "dependencies": ["case"]},
        {"id": "out", "handler": "output", "config": {"value": LOOP_BOMB}},
        {
            "id": "each",
            "handler": "map",
            "config": {
                "items": [1, 2],
                "handler": "noop",
                "config": {"value": "{{ item }}" + MACRO_BOMB},
                "concurrency": 2,
            },
        },
        {"id": "plain", "handler": "noop", "config": {"value": {"s": "{{ input.s }}"}}},
        {"id": "nested", "handler": "noop", "config": {"value": {"deep": [MACRO_BOMB]}}},
    ]
    return json.dumps({"name": "everywhere", "dag": {"nodes": nodes}})


EVERYWHERE_FAILED = ("when", "case", "out", "each", "nested")


def _post(client: httpx.Client, body: str | bytes) -> httpx.Response:
    return client.post("/v1/workflow", content=body, headers={"Content-Type": "application/json"})


def test_health_answers_while_the_largest_work_is_sent(server: Server, tmp_path: Path) -> None:
    largest = json.dumps(_largest_definition(), separators=(",", ":"))
    assert 600_000 < len(largest) <= 1024 * 1024
    dup = [{"id": "a", "handler": "noop"}, {"id": "b", "handler": "noop"}]
    dup[1]["dependencies"] = ["a"] * 500_000
    duplicates = json.dumps({"name": "dup", "dag": {"nodes": dup}})
    many = [{"id": f"n{i}", "handler": "noop"} for i in range(100_000)]
    hundred_thousand = json.dumps({"name": "many", "dag": {"nodes": many}})
    too_many = json.dumps(
        {
            "name": "many",
            "dag": {"nodes": [{"id": f"{i}", "handler": "noop"} for i in range(12_000)]},
        }
    )
    unknown = json.dumps(
        {
            "name": "unknown",
            "dag": {
                "nodes": [
                    {"id": f"n{i}", "handler": "noop", "dependencies": [f"m{j}" for j in range(50)]}
                    for i in range(300)
                ]
            },
        }
    )
    bombs = _bombs("bombs", BOMBS)
    time_bombs = _bombs("time-bombs", TIME_BOMBS)
    everywhere = _time_bombs_everywhere()
    timings: dict[str, tuple[float, float]] = {}
    with (
        httpx.Client(base_url=server.url, timeout=120) as client,
        HealthProbe(server.url, tmp_path) as probe,
    ):
        time.sleep(0.3)  # a few answers before the load
        for label, body, status in (
            ("largest", largest, 201),
            ("duplicates", duplicates, 413),
            ("100k nodes", hundred_thousand, 413),
            ("12k nodes", too_many, 422),
            ("15k unknown deps", unknown, 422),
            ("largest again", largest, 201),
        ):
            started = time.time()
            response = _post(client, body)
            timings[label] = (started, time.time())
            assert response.status_code == status, (label, response.text[:500])
            assert len(response.content) < 50_000, label
        finals: dict[str, dict[str, Any]] = {}
        for label, body in (
            ("template bombs", bombs),
            ("time-limit bombs", time_bombs),
            ("time-limit bombs everywhere", everywhere),
        ):
            started = time.time()
            submitted = _post(client, body)
            assert submitted.status_code == 201, submitted.text
            execution_id = submitted.json()["execution_id"]
            client.post(f"/v1/workflow/trigger/{execution_id}", json={"input_params": INPUTS})
            finals[label] = until(client, execution_id, "FAILED", timeout=60)
            timings[label] = (started, time.time())
        time.sleep(0.3)
    for label, count in (("template bombs", len(BOMBS)), ("time-limit bombs", len(TIME_BOMBS))):
        for i in range(count):
            error = finals[label]["nodes"][f"b{i}"]["error"]
            assert error["category"] == "template", (label, i, error)
            assert "templates.max_output_bytes" in error["message"] or (
                "template integer limit" in error["message"]
                or "templates.timeout_seconds" in error["message"]
                or "range items" in error["message"]
            ), error
    nodes = finals["time-limit bombs everywhere"]["nodes"]
    for node in EVERYWHERE_FAILED:
        error = nodes[node]["error"]
        assert error["category"] in ("template", "map_item"), (node, error)
        assert "templates.timeout_seconds" in error["message"], (node, error)
    assert nodes["plain"]["output"] == {"s": INPUTS["s"]}  # a light template: inline
    print()
    print(probe.report("under load"))
    for label, (start, end) in timings.items():
        slowest = probe.slowest_between(start, end)
        print(
            f"  {label}: {(end - start) * 1000:.0f} ms, slowest /health meanwhile "
            f"{slowest * 1000:.0f} ms"
        )
    assert not probe.failures, probe.failures[:5]
    assert len(probe.latencies) > 20
    for label, (start, end) in timings.items():
        assert probe.slowest_between(start, end) < HEALTH_BOUND, (label, probe.report("too slow"))
