"""Dagster's side: ops in a job, run on a persistent DagsterInstance on a temp dir (SQLite).

    bench/.venvs/dagster/bin/python bench/peers/dagster_runner.py w1 [--quick]

Durable default: ``DagsterInstance.local_temp(<tmp>)``, a regular, fully persistent instance
(SQLite run, event-log and schedule storage under the temp dir); each op's output written by
``FilesystemIOManager``, the IO manager Dagster gives launched runs by default. Executor: in-process
(``execute_in_process``): the job's default for launched runs is the multiprocess executor,
one subprocess per op, which on 2 cores turns a 1,000-op fan-out into 1,000 process starts.
Idiomatic shapes: one op aliased per node; the fan-in passes the list of upstream outputs;
a chain feeds each op the previous output. Runs launched with ``execute_in_process`` do not
run side by side, so w3's 200 diamonds are 200 runs one after another. w4 builds (and so
validates) a job of that many ops and runs it. No person-in-the-loop wait in a run: no w5.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import _common
from dagster import DagsterInstance, FilesystemIOManager, graph, op


def _version() -> str:
    from importlib.metadata import version

    return version("dagster")


@op
def noop() -> int:
    return 0


@op
def passthrough(value: Any) -> Any:
    return value


@op
def gather(values: list[Any]) -> int:
    return len(values)


def _fan_out_job(width: int) -> Any:
    @graph(name=f"fan_out_{width}")
    def fan_out() -> None:
        root = noop.alias("root")()
        leaves = [passthrough.alias(f"n{i}")(root) for i in range(width)]
        gather.alias("sink")(leaves)

    return fan_out.to_job(resource_defs={"io_manager": FilesystemIOManager()})


def _chain_job(length: int) -> Any:
    @graph(name=f"chain_{length}")
    def chain() -> None:
        value = noop.alias("c0")()
        for i in range(1, length):
            value = passthrough.alias(f"c{i}")(value)

    return chain.to_job(resource_defs={"io_manager": FilesystemIOManager()})


def _diamond_job() -> Any:
    @graph(name="diamond")
    def diamond() -> None:
        a = noop.alias("a")()
        b, c = passthrough.alias("b")(a), passthrough.alias("c")(a)
        gather.alias("d")([b, c])

    return diamond.to_job(resource_defs={"io_manager": FilesystemIOManager()})


def _tree_job(size: int) -> Any:
    """bench/workloads.py's wide_dag: node i depends on node (i - 1) // 2."""

    @graph(name=f"dag_{size}")
    def tree() -> None:
        outs = [noop.alias("n0")()]
        for i in range(1, size):
            outs.append(passthrough.alias(f"n{i}")(outs[(i - 1) // 2]))

    return tree.to_job(resource_defs={"io_manager": FilesystemIOManager()})


def _run(job: Any, instance: Any) -> None:
    result = job.execute_in_process(instance=instance)
    assert result.success


def _timed(tmp: Path, build: Any, runs: int = 1) -> dict[str, Any]:
    instance = DagsterInstance.local_temp(str(tmp))
    _run(_diamond_job(), instance)  # warm-up: storage created outside the timed part
    job = build()
    started = time.perf_counter()
    for _ in range(runs):
        _run(job, instance)
    return {"wall_s": time.perf_counter() - started}


def w0(tmp: Path, _size: int) -> None:
    @graph(name="hello")
    def hello() -> None:
        noop.alias("hello")()

    job = hello.to_job(resource_defs={"io_manager": FilesystemIOManager()})
    _run(job, DagsterInstance.local_temp(str(tmp)))


def w1(tmp: Path, size: int) -> dict[str, Any]:
    return _timed(tmp, lambda: _fan_out_job(size))


def w2(tmp: Path, size: int) -> dict[str, Any]:
    return _timed(tmp, lambda: _chain_job(size))


def w3(tmp: Path, size: int) -> dict[str, Any]:
    return _timed(tmp, _diamond_job, runs=size)


def w4(tmp: Path, size: int) -> dict[str, Any]:
    """Build the job (Dagster validates the graph as it builds it), then run it."""
    instance = DagsterInstance.local_temp(str(tmp))
    _run(_diamond_job(), instance)
    started = time.perf_counter()
    job = _tree_job(size)
    validate = time.perf_counter() - started
    started = time.perf_counter()
    _run(job, instance)
    run = time.perf_counter() - started
    return {"wall_s": validate + run, "validate_s": round(validate, 4), "run_s": round(run, 4)}


if __name__ == "__main__":
    _common.main(
        "dagster",
        _version,
        {"w0": w0, "w1": w1, "w2": w2, "w3": w3, "w4": w4},
        "DagsterInstance.local_temp (SQLite storage), FilesystemIOManager, in-process executor",
    )
