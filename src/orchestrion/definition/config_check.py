"""A node's config against its handler's config model, where a template may stand for a value.

A template string is rendered before the handler sees it, so an error at a template value is
not an error yet; unknown keys, missing keys and errors on literal values are.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from orchestrion.definition.graph_check import Path
from orchestrion.templates.rendering import is_template

__all__ = ["config_errors", "config_templates", "describe_pydantic_error"]


def describe_pydantic_error(error: ErrorDetails) -> str:
    """A short message for one pydantic error: ``unknown key 'foo'`` for extra keys."""
    kind = error["type"]
    loc = error["loc"]
    if kind == "extra_forbidden":
        return f"unknown key '{loc[-1]}'" if loc else "unknown key"
    if kind == "missing":
        return f"missing required key '{loc[-1]}'" if loc else "missing required value"
    message = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    return message


def config_templates(
    value: Any, path: Path, skip_keys: frozenset[str]
) -> Iterator[tuple[Path, str]]:
    """Template strings in a node config, skipping the handler's raw (self-evaluated) keys."""
    if isinstance(value, str):
        if is_template(value):
            yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if key not in skip_keys:
                yield from config_templates(item, (*path, key), frozenset())
    elif isinstance(value, list | tuple):
        for k, item in enumerate(value):
            yield from config_templates(item, (*path, k), frozenset())


def config_errors(
    model: type[BaseModel],
    config: dict[str, Any],
    raw_keys: frozenset[str],
    context: Mapping[str, Any] | None = None,
) -> list[ErrorDetails]:
    """Errors of ``config`` against ``model``, ignoring those a template value may fix.

    A template string is rendered before the handler sees it, and ``{{ x }}`` may become any
    type, so an error located at (or inside) a template value is not an error yet. Unknown
    keys, missing keys and errors on literal values are.
    """
    try:
        model.model_validate(config, context=context)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
    else:
        return []
    has_templates = any(True for _ in config_templates(config, (), raw_keys))
    return [
        error
        for error in errors
        if error["type"] == "extra_forbidden"
        or (
            not _under_template(config, error["loc"], raw_keys)
            if error["loc"]
            else not has_templates
        )
    ]


def _under_template(config: Any, loc: tuple[int | str, ...], raw_keys: frozenset[str]) -> bool:
    value = config
    for depth, part in enumerate(loc):
        if depth == 0 and part in raw_keys:
            return False  # raw keys reach the handler unrendered: literal values
        value = _child(value, part)
        if value is _MISSING:
            return False
        if is_template(value):
            return True
    return False


_MISSING = object()


def _child(value: Any, part: int | str) -> Any:
    if isinstance(value, Mapping):
        return value.get(part, _MISSING)
    if isinstance(value, list | tuple) and isinstance(part, int) and 0 <= part < len(value):
        return value[part]
    return _MISSING
