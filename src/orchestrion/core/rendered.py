"""Where an attempt's rendered inputs live in the journal, and the data that leaves it.

A ``node.started`` record's data holds, under ``INPUTS_KEY``, the attempt's config as
rendered (secrets kept out: ``execution/rendered_inputs.py``). The journal's data is also
what the event API and the event sinks send, masked by pattern only; rendered inputs are
node data, shown only where node outputs are, so ``public_data`` leaves them out there.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["INPUTS_KEY", "public_data"]

INPUTS_KEY: Final = "inputs"


def public_data(data: dict[str, Any] | None) -> dict[str, Any] | None:
    """``data`` without the rendered inputs it may carry (the same dict when it has none)."""
    if data is None or INPUTS_KEY not in data:
        return data
    return {key: value for key, value in data.items() if key != INPUTS_KEY}
