"""An exception that cannot describe itself still fails its node, with a message saying so,
whatever kind of function raised it (a coroutine, a thread, on the loop) and whether the
error is one of ours or not."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrion.core.states import ExecutionStatus
from orchestrion.engine.facade import Engine
from orchestrion.errors import PermanentNodeError
from orchestrion.handlers.python import function_registry


class Unprintable(Exception):
    """Third-party code does this: a __str__ that reads an attribute never set."""

    def __str__(self) -> str:
        raise RuntimeError("no message")


class UnprintableNodeError(PermanentNodeError):
    def __str__(self) -> str:
        raise RuntimeError("no message")


async def raise_async(ctx: Any) -> Any:
    raise Unprintable


def raise_sync(ctx: Any) -> Any:
    raise Unprintable


def raise_ours(ctx: Any) -> Any:
    raise UnprintableNodeError("x")


NAMES = {
    "t_unprintable_async": (raise_async, {}),
    "t_unprintable_thread": (raise_sync, {}),
    "t_unprintable_quick": (raise_sync, {"blocking": False}),
    "t_unprintable_ours": (raise_ours, {}),
}


@pytest.fixture
def registered() -> Iterator[None]:
    for name, (function, options) in NAMES.items():
        function_registry.register(name, function, replace=True, **options)
    yield
    for name in NAMES:
        function_registry.unregister(name)


@pytest.mark.parametrize("name", sorted(NAMES))
async def test_an_exception_whose_str_raises_fails_its_node(
    registered: None, tmp_path: Path, name: str
) -> None:
    definition = {
        "name": "unprintable",
        "dag": {
            "nodes": [
                {
                    "id": "w",
                    "handler": "python",
                    "retry": {"max_attempts": 1},
                    "config": {"function": name},
                },
            ]
        },
    }
    async with Engine(f"sqlite:///{tmp_path / 'u.db'}") as engine:
        result = await engine.run(definition, timeout=20)
    assert result.status is ExecutionStatus.FAILED
    error = result.nodes["w"].error
    assert error is not None
    expected = "UnprintableNodeError" if name == "t_unprintable_ours" else "Unprintable"
    assert error["type"] == expected
    assert "could not be described" in error["message"], error
