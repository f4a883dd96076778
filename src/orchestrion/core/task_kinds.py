"""What a task message asks a worker to run: the node's handler, or its compensation."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["TaskKind"]


class TaskKind(StrEnum):
    """The ``kind`` of a task message; the value is what travels on the wire."""

    RUN = "run"
    COMPENSATE = "compensate"
