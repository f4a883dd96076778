"""A long chain of inline python functions in a process of its own, for the kill -9 test.

    python inline_chain.py DB LOG start   # start the chain, write its id beside DB, run it
    python inline_chain.py DB LOG resume  # a new engine on DB: it resumes the chain; wait

Each node's function appends ``<node> <attempt>`` to LOG (for the test to count runs: a
real inline function has no effect outside the process) and sleeps half a millisecond, so
the chain lasts a few seconds.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from orchestrion import Engine, NodeContext, function

LENGTH = 5000
LOG: Any = None


@function("inline_step", inline=True)
def step(value: int, ctx: NodeContext) -> int:
    LOG.write(f"{ctx.node_id} {ctx.attempt}\n")
    LOG.flush()  # to the OS at once: a kill -9 does not lose it
    time.sleep(0.0005)
    return value + 1


def chain() -> dict[str, Any]:
    nodes: list[dict[str, Any]] = [
        {
            "id": "c0",
            "handler": "python",
            "config": {"function": "inline_step", "params": {"value": 0}},
        }
    ]
    nodes += [
        {
            "id": f"c{i}",
            "handler": "python",
            "dependencies": [f"c{i - 1}"],
            "config": {
                "function": "inline_step",
                "params": {"value": f"{{{{ c{i - 1}.output }}}}"},
            },
        }
        for i in range(1, LENGTH)
    ]
    return {"name": "inline-chain", "dag": {"nodes": nodes}}


async def main(db: Path, mode: str) -> None:
    id_file = db.with_suffix(".id")
    async with Engine(f"sqlite:///{db}") as engine:
        if mode == "start":
            record = await engine.start_execution(chain())
            id_file.write_text(record.id)
        result = await engine.wait(id_file.read_text(), timeout=120)
    print(result.status.value, result.result)


if __name__ == "__main__":
    LOG = open(sys.argv[2], "a", encoding="utf-8")  # noqa: SIM115 - the process's whole life
    asyncio.run(main(Path(sys.argv[1]), sys.argv[3]))
