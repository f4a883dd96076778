"""Airflow's side: a DAG of TaskFlow tasks run by ``dag.test()`` on a SQLite metadata database.

    bench/.venvs/airflow/bin/python bench/peers/airflow_runner.py w1 [--quick]

Durable default: ``dag.test()`` (what ``airflow dags test`` runs) executes one DAG run in this
process against the metadata database of a fresh ``AIRFLOW_HOME`` (SQLite, Airflow's default
``sql_alchemy_conn``): every DAG run and task-instance state and every task's return value
(XCom) is committed there. ``airflow db migrate`` runs once per venv into a template home
that each run copies, so no figure (not even w0) includes creating the schema. The DAGs are
written to a file in the dags folder, which ``dag.test()`` parses and syncs as a user's.
A production Airflow is a scheduler, a DAG processor and an API server on PostgreSQL; not
measured here. Idiomatic shapes: a fan-out is a mapped task (``.expand``); a chain passes
each task's return value (XCom) to the next; w3's 200 diamonds are 200 DAG runs one after
another (``dag.test`` runs one). w4 builds and validates a DAG of that many tasks and runs it.
Waiting for a person (Airflow's HITL operators) defers to the triggerer: no w5 here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import _common

# Before airflow is imported: its configuration is read at import.
_TEMPLATE = Path(sys.prefix) / "bench-airflow-home"
_HOME = Path(tempfile.mkdtemp(prefix="bench-airflow-home-"))
_ENV = {
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__DAGS_FOLDER": str(_HOME / "dags"),
    "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
}


def _prepare_home() -> None:
    """Migrate a template home once per venv, then copy it (a few hundred KiB)."""
    if not (_TEMPLATE / "airflow.db").exists():
        partial = _TEMPLATE.with_name(_TEMPLATE.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        env = {**os.environ, **_ENV, "AIRFLOW_HOME": str(partial)}
        subprocess.run(
            [str(Path(sys.prefix) / "bin" / "airflow"), "db", "migrate"],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        (partial / "airflow.cfg").unlink(missing_ok=True)  # written with partial's paths
        partial.rename(_TEMPLATE)
    shutil.copy(_TEMPLATE / "airflow.db", _HOME / "airflow.db")
    (_HOME / "dags").mkdir()


_prepare_home()
os.environ.update(_ENV)
os.environ["AIRFLOW_HOME"] = str(_HOME)

import importlib.util  # noqa: E402

from airflow.sdk import DAG  # noqa: E402

START = datetime(2026, 1, 1, tzinfo=UTC)

# dag.test() runs the DAG as the DAG processor parsed it from the dags folder (it syncs that
# bundle to the database first), so the DAGs live in a file there, as a user's would.
DAG_FILE = """
import os
from datetime import UTC, datetime

from airflow.sdk import DAG, task


@task
def noop(value=None):
    return value


@task
def collect(values):
    return len(list(values))


def _dag(dag_id):
    return DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1, tzinfo=UTC), catchup=False)


def hello(_size):
    with _dag("hello") as dag:
        noop.override(task_id="hello")("hello")
    return dag


def fan_out(width):
    with _dag("fan_out") as dag:
        root = noop.override(task_id="root")(0)
        leaves = noop.override(task_id="leaf").expand(value=list(range(width)))
        root >> leaves
        collect.override(task_id="sink")(leaves)
    return dag


def chain(length):
    with _dag("chain") as dag:
        value = noop.override(task_id="c0")(0)
        for i in range(1, length):
            value = noop.override(task_id=f"c{i}")(value)
    return dag


def diamond(_size):
    with _dag("diamond") as dag:
        a = noop.override(task_id="a")("a")
        b, c = noop.override(task_id="b")(a), noop.override(task_id="c")(a)
        collect.override(task_id="d")([b, c])
    return dag


def tree(size):
    with _dag("tree") as dag:
        outs = [noop.override(task_id="n0")(0)]
        for i in range(1, size):
            outs.append(noop.override(task_id=f"n{i}")(outs[(i - 1) // 2]))
    return dag


for _spec in os.environ["BENCH_AIRFLOW_DAGS"].split(","):
    _name, _size = _spec.split(":")
    globals()[_name] = globals()[_name](int(_size))
"""


def _load(**sizes: int) -> dict[str, DAG]:
    """Write the DAG file for these builders and sizes; import it as the processor will."""
    os.environ["BENCH_AIRFLOW_DAGS"] = ",".join(f"{k}:{v}" for k, v in sizes.items())
    path = _HOME / "dags" / "bench_dags.py"
    path.write_text(DAG_FILE)
    spec = importlib.util.spec_from_file_location("bench_dags", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {name: getattr(module, name) for name in sizes}


def _version() -> str:
    from importlib.metadata import version

    return version("apache-airflow")


def _test(dag: DAG, when: datetime | None = None) -> None:
    run = dag.test(logical_date=when or START)
    assert str(getattr(run.state, "value", run.state)) == "success", run.state


def _timed(name: str, size: int, runs: int = 1) -> dict[str, Any]:
    dags = _load(**{"diamond": 1, name: size})
    _test(dags["diamond"], START - timedelta(days=1))  # warm-up: first session, imports
    started = time.perf_counter()
    for i in range(runs):
        _test(dags[name], START + timedelta(seconds=i))
    return {"wall_s": time.perf_counter() - started}


def w0(_tmp: Path, _size: int) -> None:
    _test(_load(hello=1)["hello"])


def w1(_tmp: Path, size: int) -> dict[str, Any]:
    return _timed("fan_out", size)


def w2(_tmp: Path, size: int) -> dict[str, Any]:
    return _timed("chain", size)


def w3(_tmp: Path, size: int) -> dict[str, Any]:
    return _timed("diamond", 1, runs=size)


def w4(_tmp: Path, size: int) -> dict[str, Any]:
    """Build and validate the DAG (parsing its file, as the processor does), then run it."""
    _test(_load(diamond=1)["diamond"], START - timedelta(days=1))
    started = time.perf_counter()
    dag = _load(tree=size)["tree"]
    dag.validate()
    validate = time.perf_counter() - started
    started = time.perf_counter()
    _test(dag)
    run = time.perf_counter() - started
    return {"wall_s": validate + run, "validate_s": round(validate, 4), "run_s": round(run, 4)}


if __name__ == "__main__":
    try:
        _common.main(
            "airflow",
            _version,
            {"w0": w0, "w1": w1, "w2": w2, "w3": w3, "w4": w4},
            "dag.test() on a SQLite metadata database (task states and XComs committed)",
        )
    finally:
        shutil.rmtree(_HOME, ignore_errors=True)
