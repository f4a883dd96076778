"""The audit trail's cost on the embedded hot path: each workload with the trail off and on.

    .venv/bin/python bench/audit.py                # w1, w2, w3; 9 alternating pairs each
    .venv/bin/python bench/audit.py --only w3 --repeat 15

Same workloads as bench/run.py (no-op nodes, SQLite file in WAL mode), run in one process,
alternating off and on so that load from elsewhere hits both alike. Reports the median wall
time and the median CPU time of this process (less sensitive to a busy machine) and the
records sealed per run. With the trail on, every transition is HMAC-signed, chained and
inserted into the audit table in the commit's own transaction.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import WORKLOADS

AUDIT_KEYS = {"ORCHESTRION_AUDIT_KEYS": "bench:" + base64.b64encode(b"b" * 32).decode()}


async def _once(
    definitions: list[dict[str, Any]], db: Path, audit: bool
) -> tuple[float, float, int]:
    from orchestrion.engine.facade import Engine
    from orchestrion.governance.runtime import Governance
    from orchestrion.store.audit import AuditFilter

    governance = Governance.load(None, environ=dict(AUDIT_KEYS) if audit else {})
    async with Engine(f"sqlite:///{db}", governance=governance) as engine:
        stored = [await engine.submit(d) for d in {id(d): d for d in definitions}.values()]
        by_name = {s.name: s for s in stored}
        wall, cpu = time.perf_counter(), time.process_time()
        records = await asyncio.gather(
            *(engine.start_execution(by_name[d["name"]]) for d in definitions)
        )
        await asyncio.gather(*(engine.wait(r.id) for r in records))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        head = await engine.store.audit_head()
        sealed = 0 if head is None else head.seq
        if audit:
            assert (await engine.audit.verify()).ok
        assert audit or not await engine.store.list_audit(AuditFilter(limit=1))
    return wall, cpu, sealed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--only", default="w1,w2,w3")
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, pairs={args.repeat}")
    header = f"{'workload':34} {'wall off':>9} {'wall on':>9} {'cpu off':>9} {'cpu on':>9}"
    print(header + f" {'cpu +%':>7} {'records':>8} {'us/rec':>7}")
    print("-" * (len(header) + 25))
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only.split(","):
            title, build, _nodes = WORKLOADS[name]
            runs: dict[bool, list[tuple[float, float, int]]] = {False: [], True: []}
            for i in range(args.repeat):
                for audit in (False, True):
                    db = Path(tmp) / f"{name}-{i}-{audit}.db"
                    runs[audit].append(asyncio.run(_once(build(), db, audit)))
            wall = {a: statistics.median(r[0] for r in runs[a]) for a in runs}
            cpu = {a: statistics.median(r[1] for r in runs[a]) for a in runs}
            sealed = runs[True][0][2]
            extra = (cpu[True] - cpu[False]) / cpu[False] * 100
            per = (cpu[True] - cpu[False]) / sealed * 1e6 if sealed else float("nan")
            print(
                f"{name + ' ' + title:34} {wall[False]:8.4f}s {wall[True]:8.4f}s"
                f" {cpu[False]:8.4f}s {cpu[True]:8.4f}s {extra:+6.1f}% {sealed:8d} {per:7.1f}"
            )


if __name__ == "__main__":
    main()
