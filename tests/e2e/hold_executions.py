"""A process that drives the executions named on its command line, and nothing else, until it
is stopped: one side of a parent and its child driven by two processes (as two survivors of a
crash may take them over). Prints ``ready`` once it drives them all.

Usage: ``python hold_executions.py DATABASE_URL EXECUTION_ID...``
"""

from __future__ import annotations

import asyncio
import sys

from orchestrion.engine.facade import Engine


async def main(url: str, ids: list[str]) -> None:
    async with Engine(url, resume=False) as engine:
        for execution_id in ids:
            if not await engine.adopt(await engine.store.get_execution(execution_id)):
                raise SystemExit(f"execution {execution_id} is driven by another process")
        print("ready", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2:]))
