"""``/metrics`` of ``orchestrion serve --workers N`` answers the totals of the service, whichever
server process takes the scrape: counters summed over the processes (a replaced one's
included), gauges summed over the live ones."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from workers_server import Pinned, WorkersServer

pytestmark = pytest.mark.slow

QUICK = {"name": "quick", "dag": {"nodes": [{"id": "a", "handler": "noop"}]}}
WAITS = {
    "name": "waits",
    "dag": {"nodes": [{"id": "nap", "handler": "delay", "config": {"seconds": 30}}]},
}


def _figures(through: Pinned) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, text, _ = through.call("GET", "/metrics")
    assert status == 200, text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _total(figures: dict, name: str, **labels: str) -> float:
    return sum(
        value
        for (sample, found), value in figures.items()
        if sample == name and labels.items() <= dict(found).items()
    )


def _until(check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_metrics_are_the_totals_of_every_server_process(tmp_path: Path) -> None:
    server = WorkersServer(tmp_path, tmp_path / "m.db")
    try:
        first, second = server.children()
        one, other = Pinned.to(server, first), Pinned.to(server, second)
        missing = "/v1/workflows/no-such-execution"
        for through, count in ((one, 3), (other, 4)):
            for _ in range(count):
                assert through.call("GET", missing)[0] == 404
        done = [one.start(QUICK), other.start(QUICK)]
        for execution_id in done:
            _until(
                lambda eid=execution_id: (
                    one.call("GET", f"/v1/workflows/{eid}")[1]["status"] == "COMPLETED"
                )
            )

        def not_found(figures: dict) -> float:
            return _total(figures, "orchestrion_http_requests_total", method="GET", status="404")

        # (the record feed counts a commit just after it)
        _until(
            lambda: _total(_figures(one), "orchestrion_executions_total", status="completed") == 2
        )
        for through in (one, other):  # the same totals, whichever process answers
            figures = _figures(through)
            assert not_found(figures) == 7
            assert _total(figures, "orchestrion_executions_total", status="completed") == 2
            assert _total(figures, "orchestrion_nodes_total", state="completed") == 2

        # A gauge is the sum over the live processes: one waiting execution driven by each.
        waiting = [one.start(WAITS), other.start(WAITS)]
        _until(lambda: _total(_figures(one), "orchestrion_executions_live") == 2)
        streaming = Pinned.to(server, second)
        streaming.stream(f"/v1/workflows/{waiting[1]}/events/stream")
        _until(lambda: _total(_figures(one), "orchestrion_event_streams_open") == 1)

        # A process that dies takes its gauges with it; what it counted stays counted.
        os.kill(second, signal.SIGKILL)
        other.close()
        streaming.close()
        _until(lambda: len(server.children()) == 2 and second not in server.children())
        _until(lambda: _total(_figures(one), "orchestrion_event_streams_open") == 0, 10)
        figures = _figures(one)
        assert not_found(figures) == 7
        assert _total(figures, "orchestrion_executions_total", status="completed") == 2
        # The execution the dead one drove is taken over: live once, not twice.
        _until(lambda: _total(_figures(one), "orchestrion_executions_live") == 2, 60)
        one.close()
    finally:
        assert server.stop() == 0, server.log.read_text()


def _dirs(folder: Path) -> set[Path]:
    return set(folder.glob("orchestrion-*metrics-*"))


def test_the_metrics_directory_a_killed_parent_left_is_removed_at_the_next_start(
    tmp_path: Path,
) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    # What is not this user's own left-behind directory stays: another user's, a link.
    theirs = tmp / "orchestrion-shared-metrics-theirs"
    theirs.mkdir()
    os.chown(theirs, 65534, 65534)
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "counter_1.db").write_bytes(b"")
    (tmp / "orchestrion-shared-metrics-link").symlink_to(target)
    # One an earlier version made: never locked, maybe still in use, not taken for left.
    (tmp / "orchestrion-metrics-abcd1234").mkdir()
    planted = _dirs(tmp)
    env = {"TMPDIR": str(tmp)}
    first = WorkersServer(tmp_path, tmp_path / "m.db", env=env)
    pids = first.children()
    (left,) = _dirs(tmp) - planted
    first.process.kill()  # SIGKILL: it removes nothing
    first.process.wait()
    _until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids))
    assert left.is_dir()
    second = WorkersServer(tmp_path, tmp_path / "m.db", env=env)
    try:
        assert not left.exists()
        (mine,) = _dirs(tmp) - planted
        assert mine.stat().st_mode & 0o777 == 0o700
        through = Pinned.to(second, second.children()[0])
        assert _figures(through)  # answered from the new directory
        through.close()
    finally:
        assert second.stop() == 0, second.log.read_text()
    assert _dirs(tmp) == planted
    assert (target / "counter_1.db").exists()


def test_an_empty_metrics_file_does_not_fail_the_scrape(tmp_path: Path) -> None:
    # What a process killed between making its file and sizing it leaves: it stays, as a
    # dead process's counters do, and must not fail every scrape from then on.
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    server = WorkersServer(tmp_path, tmp_path / "e.db", env={"TMPDIR": str(tmp)})
    try:
        through = Pinned.to(server, server.children()[0])
        through.start(QUICK)
        _until(
            lambda: (
                _total(_figures(through), "orchestrion_executions_total", status="completed") == 1
            )
        )
        (shared,) = _dirs(tmp)
        (shared / "counter_99999.db").write_bytes(b"")
        (shared / "histogram_99999.db").write_bytes(b"\0\0")
        assert _total(_figures(through), "orchestrion_executions_total", status="completed") == 1
        through.close()
    finally:
        assert server.stop() == 0, server.log.read_text()
