"""An error's message and traceback are bounded like log lines, on a real SQLite file.

A function can raise with a message of any size (one quoting a whole response, say); what
is stored, sent on event streams and shown keeps the start of it, up to
``node_error_max_chars`` characters, and says how many characters were cut.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrion.core.states import ExecutionStatus
from orchestrion.engine.facade import Engine
from orchestrion.handlers.python import function_registry
from orchestrion.settings import load_settings


def shouts(size: int = 0) -> None:
    raise ValueError("E" * size)


def _failing(size: int) -> dict[str, object]:
    node = {"id": "f", "handler": "python", "config": {"function": "t_shouts", "params": {}}}
    node["config"]["params"] = {"size": size}  # type: ignore[index]
    return {"name": "shouts", "dag": {"nodes": [node]}}


@pytest.fixture
def shouting() -> Iterator[None]:
    function_registry.register("t_shouts", shouts, replace=True)
    yield
    function_registry.unregister("t_shouts")


@pytest.mark.parametrize(("limit", "size"), [(None, 900_000), (1000, 5000), (1000, 900)])
async def test_an_error_message_keeps_its_start_and_says_how_much_was_cut(
    tmp_path: Path, shouting: None, limit: int | None, size: int
) -> None:
    extra = {} if limit is None else {"node_error_max_chars": limit}
    settings = load_settings(database_url=f"sqlite:///{tmp_path / 'o.db'}", **extra)
    kept = settings.node_error_max_chars
    async with Engine(settings=settings) as engine:
        result = await engine.run(_failing(size), timeout=30)
        events = await engine.store.list_events(result.execution_id)
    assert result.status is ExecutionStatus.FAILED
    error = result.nodes["f"].error
    assert error is not None
    message = "ValueError: " + "E" * size
    if len(message) <= kept:
        assert error["message"] == message
        return
    cut = len(message) - kept
    assert error["message"] == f"{message[:kept]}… [{cut} characters cut]"
    assert len(error.get("traceback") or "") <= kept + 40
    # Nothing in the journal (what event streams send) holds the whole message.
    assert all(len(str(event.data)) < kept * 3 for event in events)
