"""Facts about a node's config and its handler's config model, looked up once per config.

Each attempt asks whether its config holds a template (one without needs no template
context, and what is stored of it is the same at every attempt) and how to validate it; the
executor remembers the answers per config (``executor.py``).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from orchestrion.templates.rendering import is_template

__all__ = ["has_template", "plain_validate"]

_SCALARS = frozenset({int, float, bool})


@functools.cache
def plain_validate(model: type[BaseModel]) -> bool:
    """Whether ``model`` validates as pydantic's ``model_validate`` does (not overridden):
    then its validator is called directly, as that method calls it."""
    method = getattr(model.model_validate, "__func__", None)
    return method is getattr(BaseModel.model_validate, "__func__", None)


def has_template(value: Any) -> bool:
    """Whether ``value`` (dicts and lists, recursively) holds a template anywhere; another
    kind of mapping counts as holding one (it is looked at as templates are)."""
    if isinstance(value, str):
        return is_template(value)
    if isinstance(value, dict):
        return any(has_template(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(has_template(item) for item in value)
    return value is not None and type(value) not in _SCALARS and isinstance(value, Mapping)
