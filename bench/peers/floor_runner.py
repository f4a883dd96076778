"""The SQLite floor as a reference row: plain asyncio, one committed row per transition.

    .venv/bin/python bench/peers/floor_runner.py w1 [--quick]

No engine (bench/floor.py): the least a durable embedded orchestrator can do on this machine.
It has no validation and no notion of waiting for a person, so no w4 or w5.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import _common
from bench.floor import floor_run
from bench.workloads import chain, diamond, fan_out


def w0(tmp: Path, _size: int) -> None:
    hello = {"name": "hello", "dag": {"nodes": [{"id": "hello"}]}}
    asyncio.run(floor_run([hello], tmp / "w0.db"))


def w1(tmp: Path, size: int) -> dict[str, Any]:
    return {"wall_s": asyncio.run(floor_run([fan_out(size)], tmp / "w1.db"))}


def w2(tmp: Path, size: int) -> dict[str, Any]:
    return {"wall_s": asyncio.run(floor_run([chain(size)], tmp / "w2.db"))}


def w3(tmp: Path, size: int) -> dict[str, Any]:
    return {"wall_s": asyncio.run(floor_run([diamond()] * size, tmp / "w3.db"))}


if __name__ == "__main__":
    _common.main(
        "floor",
        lambda: "sqlite " + __import__("sqlite3").sqlite_version,
        {"w0": w0, "w1": w1, "w2": w2, "w3": w3},
        "plain asyncio + sqlite3, WAL, synchronous=NORMAL, one commit per transition",
    )
