"""The parts of one engine that its collaborators share."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from orchestrion.core.events import Event

if TYPE_CHECKING:
    from orchestrion.engine.definitions import Definitions
    from orchestrion.engine.facade import Engine
    from orchestrion.engine.loop import EngineLoop
    from orchestrion.engine.ownership import Ownership

__all__ = ["EngineParts", "Forward"]

Forward = Callable[[str, Event], Awaitable[None]]
"""Hands (execution id, event) to the orchestrators through the cluster dispatcher."""


@dataclass(frozen=True, slots=True)
class EngineParts:
    """The engine, its loop, its claims on executions, its definitions, and its way to hand
    an event over to the orchestrators (scale-out)."""

    engine: Engine
    loop: EngineLoop
    ownership: Ownership
    definitions: Definitions
    forward: Forward
