"""An execution found by the first or last characters of its id, on a large SQLite file.

    .venv/bin/python bench/id_lookup.py                    # 200,000 executions
    .venv/bin/python bench/id_lookup.py --executions 50000

A file is filled through the store with ``--executions`` one-row executions (ids are UUIDs
of version 7, as the engine makes them), then one id in the middle is looked up by its last
6 and 4 characters and by its first 30 (``ExecutionFilter``'s ``id_suffix`` and
``id_prefix``, what ``orchestrion status 3f2a`` asks), each ``--repeat`` times; beside them,
the query without an index (every row's id compared), run as plain SQL on the same file. The
figures are the mean milliseconds of one lookup.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from orchestrion.core.states import ExecutionStatus
from orchestrion.engine.ids import new_record_id
from orchestrion.store.base import DefinitionRecord, ExecutionFilter, ExecutionRecord
from orchestrion.store.sql.sqlite import SQLiteStore

_SCAN = (
    "SELECT id FROM executions WHERE substr(id, length(id) - :n + 1) = :s"
    " ORDER BY created_at DESC, id DESC LIMIT 6"
)


def _execution(execution_id: str) -> ExecutionRecord:
    return ExecutionRecord(
        id=execution_id,
        definition_id="d",
        status=ExecutionStatus.COMPLETED,
        created_at=time.time(),
    )


async def _measure(executions: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        store = SQLiteStore(Path(folder) / "ids.db")
        await store.open()
        try:
            spec = {"name": "d", "dag": {"nodes": [{"id": "a", "handler": "noop"}]}}
            await store.put_definition(
                DefinitionRecord("d", "d", "1", spec, "h", "json", "canonical", time.time())
            )
            ids: list[str] = []
            for _ in range(executions // 1000):
                batch = [_execution(new_record_id()) for _ in range(1000)]
                ids += [record.id for record in batch]
                await store.create_executions(batch)
            target = ids[len(ids) // 2]
            print(f"{len(ids):,} executions; looking up {target}")
            for name, flt in (
                ("last 6 characters", ExecutionFilter(id_suffix=target[-6:], limit=6)),
                ("last 4 characters", ExecutionFilter(id_suffix=target[-4:], limit=6)),
                ("first 30 characters", ExecutionFilter(id_prefix=target[:30], limit=6)),
            ):
                started = time.perf_counter()
                for _ in range(repeat):
                    page, _ = await store.list_executions(flt)
                took = (time.perf_counter() - started) / repeat
                assert target in {record.id for record in page}
                line = f"{name:>20}: indexed {took * 1e3:7.2f} ms"
                if flt.id_suffix is not None:
                    params = {"n": len(flt.id_suffix), "s": flt.id_suffix}
                    async with store._connection() as conn:
                        started = time.perf_counter()
                        for _ in range(repeat):
                            await conn.rows(_SCAN, params)
                        scan = (time.perf_counter() - started) / repeat
                    line += f", every row read {scan * 1e3:7.2f} ms"
                print(line)
        finally:
            await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--executions", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(_measure(args.executions, args.repeat))


if __name__ == "__main__":
    main()
