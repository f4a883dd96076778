"""A JSON encoder's ``encode`` without the per-call set-up: for the texts written per node.

``json.JSONEncoder.encode`` builds json's C encoder afresh for every value it writes (with a
dict of the containers it is inside, to find a cycle), through three Python calls; for the
small values an engine writes with every node (a journal row's data, an attempt's rendered
config, an output) that set-up costs as much as the encoding. ``quick_encode`` builds the C
encoder once, without that dict, and calls it; a value that recurses until Python's limit (a
cycle, or nesting deeper than the limit) is written again by the encoder's own ``encode``, so
it raises what it always raised (``ValueError: Circular reference detected``, or
``RecursionError``). The text is the same, character for character.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from json import encoder as _json_encoder
from typing import Any

__all__ = ["quick_encode"]


def quick_encode(encoder: json.JSONEncoder) -> Callable[[Any], str]:
    """What ``encoder.encode`` does, for a one-line encoder (no ``indent``)."""
    make = getattr(_json_encoder, "c_make_encoder", None)  # not in the type stubs
    if make is None or encoder.indent is not None:
        return encoder.encode  # no C encoder in this Python (or an indented text): as is
    string = (
        _json_encoder.encode_basestring_ascii
        if encoder.ensure_ascii
        else _json_encoder.encode_basestring
    )
    unchecked = make(
        None,  # no markers: a cycle recurses until the limit, then ``encode`` names it
        encoder.default,
        string,
        None,
        encoder.key_separator,
        encoder.item_separator,
        encoder.sort_keys,
        encoder.skipkeys,
        encoder.allow_nan,
    )
    checked = encoder.encode

    def encode(value: Any) -> str:
        if isinstance(value, str):
            return string(value)
        try:
            return "".join(unchecked(value, 0))
        except RecursionError:
            return checked(value)

    return encode
