"""Load a workflow definition against the process's handler registry.

``definition.loader.load_definition`` checks a definition against the handler catalog its
caller passes; this is the public ``orchestrion.load_definition``, which passes the
process-wide registry (built-in and entry-point handlers) unless told otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestrion.definition import loader
from orchestrion.definition.catalog import HandlerCatalog
from orchestrion.definition.limits import DEFAULT_LIMITS, DefinitionLimits
from orchestrion.definition.loader import LoadedDefinition
from orchestrion.handlers import registry as handler_registry

__all__ = ["load_definition"]


def load_definition(
    source: str | Path | dict[str, Any],
    *,
    fmt: str | None = None,
    registry: HandlerCatalog | None = None,
    context: Mapping[str, Any] | None = None,
    limits: DefinitionLimits = DEFAULT_LIMITS,
) -> LoadedDefinition:
    """Load, convert and validate a definition; raise ``DefinitionError`` with every issue.

    ``source`` is a file path (``Path``, or a one-line ``str`` naming a file), a YAML or
    JSON text, or an already parsed dict. ``fmt`` ("yaml" or "json") overrides detection.
    ``registry`` resolves handler names (default: the process-wide registry). ``context`` is
    the validation context of handler configs (see ``definition.validate.check_spec``).
    ``limits`` bounds the definition's size (checked before the work it would cost) and the
    problems listed.
    """
    return loader.load_definition(
        source,
        fmt=fmt,
        registry=handler_registry.default_registry() if registry is None else registry,
        context=context,
        limits=limits,
    )
