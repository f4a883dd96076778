"""Whether this process is Orchestrion's own, and the defaults that follows from it.

Four settings change the whole process, not just Orchestrion (the garbage collector, log
record factories): off by default for a program that embeds Orchestrion, on by default once
``claim_process`` says the process is Orchestrion's (the ``orchestrion`` command). They sit
below the environment and ``.env`` among the settings' sources.
"""

from __future__ import annotations

from typing import Any

__all__ = ["OWNED_PROCESS_DEFAULTS", "claim_process", "owns_process"]

OWNED_PROCESS_DEFAULTS: dict[str, Any] = {}
"""The defaults of a process Orchestrion owns; empty until ``claim_process``."""


def claim_process() -> None:
    """This process is Orchestrion's (the command line calls this first): from now on the
    settings that tune the whole process default to on."""
    OWNED_PROCESS_DEFAULTS.update(
        gc_freeze=True,
        gc_young_threshold=20_000,
        mask_all_logs=True,
        capture_node_logs=True,
    )


def owns_process() -> bool:
    """Whether ``claim_process`` was called: Orchestrion may tune process-wide state."""
    return bool(OWNED_PROCESS_DEFAULTS)
