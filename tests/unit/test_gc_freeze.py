"""With the ``gc_freeze`` setting (on in the CLI and the server, off for embedders), the first
engine to start freezes the objects the process started with, once (engine/gc_tuning.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent(
    """
    import asyncio, gc, sys
    from orchestrion.engine.facade import Engine

    async def main(db):
        async with Engine(f"sqlite:///{db}"):
            first = gc.get_freeze_count()
        kept = [[] for _ in range(5000)]  # made after the first start: not start-up objects
        async with Engine(f"sqlite:///{db}"):
            second = gc.get_freeze_count()
        print(first > 0, second < first + len(kept))

    asyncio.run(main(sys.argv[1]))
    """
)


@pytest.mark.parametrize(("setting", "expected"), [("true", "True True"), (None, "False True")])
def test_the_first_engine_freezes_the_startup_objects_once(
    tmp_path: Path, setting: str | None, expected: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRION_")}
    if setting is not None:
        env["ORCHESTRION_GC_FREEZE"] = setting
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "gc.db")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == expected


PAUSED_START = textwrap.dedent(
    """
    import gc
    from orchestrion.engine.gc_tuning import pause_collection, resume_collection

    usual = gc.get_threshold()
    pause_collection()  # as the command line's main does first
    paused = gc.get_threshold()[0]
    # A command that starts no engine (a worker, the reaper) goes on making objects: the
    # first collection brings the usual thresholds back.
    made = [[] for _ in range(150_000)]
    after_first = gc.get_threshold() == usual
    resume_collection()  # an engine starting later changes nothing more
    print(paused, after_first, gc.get_threshold() == usual)
    """
)


def test_the_command_lines_pause_ends_with_the_first_collection() -> None:
    ran = subprocess.run(
        [sys.executable, "-c", PAUSED_START], capture_output=True, text=True, check=True
    )
    assert ran.stdout.split() == ["100000", "True", "True"], ran.stderr


YOUNG = textwrap.dedent(
    """
    import gc
    from orchestrion.engine.gc_tuning import lower_young_threshold, raise_young_threshold

    class Engine:  # a holder, as an engine is
        pass

    def young():
        return gc.get_threshold()[0]

    seen = []
    first, second = Engine(), Engine()
    raise_young_threshold(first, 20_000)
    raise_young_threshold(second, 20_000)
    seen.append(young())
    lower_young_threshold(first)
    seen.append(young())  # the second still runs
    lower_young_threshold(second)
    seen.append(young())  # the last one stopped: as before
    lower_young_threshold(second)  # stopped twice: nothing more
    seen.append(young())

    gc.set_threshold(50_000)  # the program waits longer already: left as it is
    raise_young_threshold(first, 20_000)
    seen.append(young())
    lower_young_threshold(first)
    seen.append(young())

    gc.set_threshold(0)  # the program turned automatic collection off: left off
    raise_young_threshold(first, 20_000)
    seen.append(young())
    lower_young_threshold(first)

    gc.set_threshold(700)
    raise_young_threshold(first, 0)  # the setting's 0: left as it is
    seen.append(young())

    raise_young_threshold(first, 20_000)
    gc.set_threshold(1_000)  # the program's own change while the engine ran: kept
    lower_young_threshold(first)
    seen.append(young())

    gc.set_threshold(700)
    engine = Engine()
    raise_young_threshold(engine, 20_000)
    del engine  # dropped without a stop: the next engine raises it again
    gc.collect()
    gc.set_threshold(700)
    raise_young_threshold(first, 20_000)
    seen.append(young())
    print(*seen)
    """
)


def test_the_young_threshold_is_only_raised_and_put_back_by_the_last_engine() -> None:
    ran = subprocess.run(
        [sys.executable, "-c", YOUNG], capture_output=True, text=True, timeout=60, check=True
    )
    assert ran.stdout.split() == [
        "20000",
        "20000",
        "700",
        "700",
        "50000",
        "50000",
        "0",
        "700",
        "1000",
        "20000",
    ], ran.stderr
