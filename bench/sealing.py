"""The cost of encryption at rest on the embedded hot path: a classified workflow, keys off/on.

    .venv/bin/python bench/sealing.py                  # 500 executions, 7 alternating pairs
    .venv/bin/python bench/sealing.py --executions 1000 --repeat 9

The workflow has an ``input`` node, eight templated ``noop`` nodes reading it and one ``pii``
node, so with keys every stored value of each execution is sealed (inputs, ten outputs, the
result) and read back once (``wait``). Runs alternate without and with keys in one process so
that load from elsewhere hits both alike; reports the median wall and CPU time per execution
(CPU is less sensitive to a busy machine) and the time of one seal and one open.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import tempfile
import time
import timeit
from typing import Any

KEYS = {"ORCHESTRION_ENCRYPTION_KEYS": "bench:" + base64.b64encode(b"k" * 32).decode()}


def workflow() -> dict[str, Any]:
    nodes: list[dict[str, Any]] = [{"id": "input", "handler": "input"}]
    for i in range(8):
        config = {"value": {"who": "{{ input.email }}", "i": i}}
        node = {"id": f"n{i}", "handler": "noop", "dependencies": ["input"], "config": config}
        nodes.append(node)
    nodes.append({"id": "flag", "handler": "noop", "data_classification": "pii"})
    return {"name": "sealing-bench", "dag": {"nodes": nodes}}


async def _once(executions: int, sealed: bool) -> tuple[float, float]:
    from orchestrion.engine.facade import Engine
    from orchestrion.governance.runtime import Governance

    governance = Governance.load(None, environ=dict(KEYS) if sealed else {})
    with tempfile.TemporaryDirectory() as tmp:
        async with Engine(f"sqlite:///{tmp}/b.db", governance=governance) as engine:
            stored = await engine.submit(workflow())
            await engine.run(stored, {"email": "ada@example.org"}, timeout=30)  # warm up
            wall, cpu = time.perf_counter(), time.process_time()
            started = await asyncio.gather(
                *(
                    engine.start_execution(stored, {"email": f"ada{i}@example.org"})
                    for i in range(executions)
                )
            )
            for record in started:
                await engine.wait(record.id, timeout=120)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            return wall / executions, cpu / executions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    from orchestrion.governance.encryption import KeyRing, decrypt_value, encrypt_value

    ring = KeyRing.from_env(KEYS["ORCHESTRION_ENCRYPTION_KEYS"])
    value = {"who": "ada@example.org", "i": 3}
    envelope = encrypt_value(ring, value, "ctx")
    seal = min(timeit.repeat(lambda: encrypt_value(ring, value, "ctx"), number=2000, repeat=5))
    unseal = min(timeit.repeat(lambda: decrypt_value(ring, envelope, "ctx"), number=2000, repeat=5))
    print(f"one seal {seal / 2000 * 1e6:.1f} us, one open {unseal / 2000 * 1e6:.1f} us")

    runs: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    for _ in range(args.repeat):
        for sealed in (False, True):
            runs[sealed].append(asyncio.run(_once(args.executions, sealed)))
    for sealed, label in ((False, "keys off"), (True, "keys on ")):
        wall = statistics.median(w for w, _ in runs[sealed]) * 1e3
        cpu = statistics.median(c for _, c in runs[sealed]) * 1e3
        print(f"{label}: wall {wall:.2f} ms, cpu {cpu:.2f} ms per execution")


if __name__ == "__main__":
    main()
