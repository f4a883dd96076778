"""An attempt's config as rendered, in the form it may be stored and shown.

Three rules make the rendered config safe to keep with the attempt:

- a value whose template reads ``secrets`` is kept as declared (its template text), never as
  rendered: a secret's value is not stored, whatever its length or transform;
- what is left goes through the attempt's secret scrubber, as outputs and errors do (a
  secret that reached the config another way, an llm provider's key);
- its JSON may be at most ``MAX_RENDERED_BYTES``; a larger one is stored as a marker that
  says how large it was (``{"omitted": "..."}``), nothing half-cut;
- a lone surrogate a template made is kept as its escape (``storable.py``).

For classified executions the journal data holding it is sealed at rest like node outputs
(``store/sealing.py``), and the API masks it as it masks outputs. A node that starts child
executions (``workflow``, ``map``) keeps a marker instead: what it renders is its children's
inputs, and a child may be classified when its parent is not yet known to be (it becomes so
once the child answers, ``store/encrypted.py``); the child keeps them, sealed if it must be.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final

from orchestrion.execution.storable import escaped, json_escaped, needs_escape
from orchestrion.governance.secret_scrub import Scrubber
from orchestrion.json_text import quick_encode

__all__ = [
    "MAX_RENDERED_BYTES",
    "OMITTED_KEY",
    "PARENT_HANDLERS",
    "copy_of",
    "mentions_secrets",
    "recorded_inputs",
    "recorded_inputs_json",
]

MAX_RENDERED_BYTES: Final = 64 * 1024
OMITTED_KEY: Final = "omitted"
PARENT_HANDLERS: Final = frozenset({"workflow", "map"})
_CHILDREN_KEEP_THEM: Final = "this node starts child executions: their inputs are kept with them"
_CHILDREN_MARKER: Final = json.dumps({OMITTED_KEY: _CHILDREN_KEEP_THEM})
_DUMPS: Final = quick_encode(json.JSONEncoder())
# json's own scanner, called without ``json.loads``'s wrapping: every attempt reads one.
_SCAN: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def copy_of(text: str) -> Any:
    """The value of ``text``, as ``json.loads`` gives it, for text this module wrote
    (``json.dumps``: one value, nothing before or after it, so nothing to skip)."""
    return _SCAN(text, 0)[0]


def recorded_inputs(
    raw: Any, rendered: Any, scrubber: Scrubber | None, handler: str = "", *, secrets: bool = True
) -> dict[str, Any] | None:
    """What is stored of config ``raw`` of a ``handler`` node, rendered as ``rendered``
    (None for an empty config). ``secrets=False``: ``raw`` is known not to mention
    ``secrets`` anywhere (``mentions_secrets``), so no part of it is kept as declared."""
    text = recorded_inputs_json(raw, rendered, scrubber, handler, secrets=secrets)
    if text is None:
        return None
    # A copy in plain JSON values: nothing the handler does to its config changes it.
    stored: dict[str, Any] = copy_of(text)
    return stored


def recorded_inputs_json(
    raw: Any, rendered: Any, scrubber: Scrubber | None, handler: str = "", *, secrets: bool = True
) -> str | None:
    """``recorded_inputs`` as JSON text (None for an empty config)."""
    if not raw or not isinstance(raw, dict):
        return None
    if handler in PARENT_HANDLERS:
        return _CHILDREN_MARKER
    # Without a mention of ``secrets`` anywhere, the walk would keep nothing as declared.
    kept = _without_secrets(raw, rendered) if secrets else rendered
    if scrubber is not None:
        kept = scrubber.value(kept)
    text: str | None
    try:
        text = _DUMPS(kept)  # as json.dumps, no ``default``: the common case's cost
    except TypeError:
        text = _as_text(kept)  # a value JSON cannot hold (a set, a date): written as text
    except ValueError:
        text = None
    if text is None:  # a circular value: nothing of it is kept
        return json.dumps({OMITTED_KEY: "the rendered config cannot be written as JSON"})
    if len(text) > MAX_RENDERED_BYTES:
        return json.dumps(
            {
                OMITTED_KEY: f"the rendered config is {len(text)} bytes of JSON, over the"
                f" {MAX_RENDERED_BYTES}-byte limit kept with an attempt"
            }
        )
    if "\\u" in text and json_escaped(text):  # a template may have made a lone surrogate
        value = json.loads(text)
        if needs_escape(value):
            return json.dumps(escaped(value))
    return text


def _as_text(value: Any) -> str | None:
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return None


def _without_secrets(raw: Any, rendered: Any) -> Any:
    """``rendered`` with each part whose declared template reads ``secrets`` as declared."""
    if isinstance(raw, str):
        return raw if "secrets" in raw else rendered
    if isinstance(raw, dict) and isinstance(rendered, dict):
        return {
            key: _without_secrets(raw[key], value) if key in raw else value
            for key, value in rendered.items()
        }
    if isinstance(raw, list) and isinstance(rendered, list) and len(raw) == len(rendered):
        return [_without_secrets(r, v) for r, v in zip(raw, rendered, strict=True)]
    return rendered if not _mentions(raw) else raw


def mentions_secrets(raw: Any) -> bool:
    """Whether config ``raw`` mentions ``secrets`` anywhere (a template may read them)."""
    return _mentions(raw)


def _mentions(raw: Any) -> bool:
    try:
        return "secrets" in json.dumps(raw, default=str)
    except (TypeError, ValueError):
        return True
