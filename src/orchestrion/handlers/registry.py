"""Handlers by name: the built-in ones, aliases, and third-party ones from entry points.

Third-party packages register handlers through the ``orchestrion.handlers`` entry point group;
each entry point names a ``HandlerSpec`` or a zero-argument callable returning one (or a list
of them)::

    [project.entry-points."orchestrion.handlers"]
    my_handler = "my_package.handlers:spec"
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from orchestrion.errors import HandlerNotFound
from orchestrion.handlers.base import HandlerSpec

if TYPE_CHECKING:
    from orchestrion.governance.secret_routes import Routing

__all__ = ["ENTRY_POINT_GROUP", "HandlerRegistry", "default_registry"]

ENTRY_POINT_GROUP = "orchestrion.handlers"

logger = logging.getLogger(__name__)


class HandlerRegistry:
    """A mapping from handler names and aliases to ``HandlerSpec``."""

    def __init__(self, specs: Iterable[HandlerSpec] = ()) -> None:
        self._specs: dict[str, HandlerSpec] = {}
        self._names: dict[str, str] = {}
        # Known by name, imported on first lookup: canonical name -> (aliases, what loads it).
        self._lazy: dict[str, tuple[tuple[str, ...], Callable[[], HandlerSpec]]] = {}
        self._discover = False
        # Definitions are checked in worker threads too: one thread loads a lazy handler or
        # the entry points while the others wait for it (a loaded spec is read without it).
        self._loading = threading.RLock()
        self._discovering = False
        # Counts the names added: what was checked against the handlers may be kept until
        # it moves (the API's definitions, api/definition_cache.py).
        self.changes = 0
        for spec in specs:
            self.register(spec)

    def register_lazy(
        self, name: str, aliases: tuple[str, ...], load: Callable[[], HandlerSpec]
    ) -> None:
        """Know ``name`` and ``aliases`` now; call ``load`` for the spec on first lookup.

        The spec ``load`` gives must carry exactly this name and these aliases.
        """
        for each in (name, *aliases):
            owner = self._names.get(each)
            if owner is not None:
                raise ValueError(f"handler name '{each}' is already registered by '{owner}'")
        self._lazy[name] = (aliases, load)
        for each in (name, *aliases):
            self._names[each] = name
        self.changes += 1

    def _load_lazy(self, canonical: str) -> HandlerSpec:
        with self._loading:
            loaded = self._specs.get(canonical)
            if loaded is not None:  # by another thread while this one waited
                return loaded
            aliases, load = self._lazy[canonical]
            spec = load()  # an import error leaves the entry in place, to fail again alike
            if spec.name != canonical or set(spec.aliases) != set(aliases):
                raise RuntimeError(
                    f"handler '{canonical}' loaded as '{spec.name}' with aliases "
                    f"{list(spec.aliases)}, not as registered (aliases {list(aliases)})"
                )
            self._specs[canonical] = spec
            del self._lazy[canonical]
            return spec

    def discover_later(self) -> None:
        """Load the entry-point handlers on first need, not now.

        Reading entry points scans the metadata of every installed distribution (several ms),
        which a run using built-in handlers only need not pay. They are loaded before the
        first lookup of a name the registry does not know, the first listing, and the first
        ``register`` (so a clash with a plug-in is still reported at registration).
        """
        self._discover = True

    def _discovered(self) -> None:
        if self._discover:
            with self._loading:  # re-entered by the thread loading them, as it registers
                if self._discover and not self._discovering:
                    self._discovering = True
                    try:
                        self.load_entry_points()
                    finally:
                        self._discovering = False
                        self._discover = False

    def register(self, spec: HandlerSpec, *, replace: bool = False) -> None:
        """Add ``spec`` under its name and aliases; a clash raises unless ``replace``."""
        self._discovered()
        for name in (spec.name, *spec.aliases):
            owner = self._names.get(name)
            if owner is not None and owner != spec.name and not replace:
                raise ValueError(f"handler name '{name}' is already registered by '{owner}'")
        if (spec.name in self._specs or spec.name in self._lazy) and not replace:
            raise ValueError(f"handler '{spec.name}' is already registered")
        self._lazy.pop(spec.name, None)
        self._specs[spec.name] = spec
        for name in (spec.name, *spec.aliases):
            self._names[name] = spec.name
        self.changes += 1

    def get(self, name: str) -> HandlerSpec:
        canonical = self._names.get(name)
        if canonical is None and self._discover:
            self._discovered()
            canonical = self._names.get(name)
        if canonical is None:
            known = ", ".join(sorted(self._names))
            raise HandlerNotFound(f"unknown handler '{name}' (known: {known})")
        # Looked up several times per attempt: a loaded spec costs one dict read, no call.
        spec = self._specs.get(canonical)
        return spec if spec is not None else self._load_lazy(canonical)

    def canonical_name(self, name: str) -> str:
        return self.get(name).name

    def __contains__(self, name: object) -> bool:
        if name not in self._names and self._discover:
            self._discovered()
        return name in self._names

    def names(self) -> list[str]:
        """Every accepted name, aliases included, sorted."""
        self._discovered()
        return sorted(self._names)

    def secret_routing(self, context: Mapping[str, Any] | None) -> Routing:
        """The secret routing a definition check applies (``definition.catalog``): the one the
        validation ``context`` carries (the governance in force puts it there), else one's
        own definition's, trusted, under the shipped default policy."""
        from orchestrion.governance.secret_routes import ROUTING_KEY, Routing

        routing = context.get(ROUTING_KEY) if context is not None else None
        return routing if isinstance(routing, Routing) else Routing()

    def specs(self) -> list[HandlerSpec]:
        self._discovered()
        for canonical in list(self._lazy):
            self._load_lazy(canonical)
        return list(self._specs.values())

    def copy(self) -> HandlerRegistry:
        """An independent registry with the same handlers (a pending discovery included)."""
        clone = HandlerRegistry()
        clone._specs = dict(self._specs)
        clone._names = dict(self._names)
        clone._lazy = dict(self._lazy)
        clone._discover = self._discover
        clone.changes = self.changes
        return clone

    def load_entry_points(self) -> list[str]:
        """Register every handler published in the entry point group; return their names."""
        loaded: list[str] = []
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                obj = ep.load()
                found = obj() if callable(obj) and not isinstance(obj, HandlerSpec) else obj
                specs = found if isinstance(found, list | tuple) else [found]
                for spec in specs:
                    if not isinstance(spec, HandlerSpec):
                        raise TypeError(f"entry point {ep.name!r} did not give a HandlerSpec")
                    self.register(spec)
                    loaded.append(spec.name)
            except Exception:
                # A broken plug-in must not take the engine down; it is reported and skipped.
                logger.exception("could not load handler entry point %s", ep.name)
        return loaded


_default: HandlerRegistry | None = None


def default_registry() -> HandlerRegistry:
    """The built-in handlers plus every entry-point handler, built once per process; both are
    imported on first need."""
    global _default
    if _default is None:
        from orchestrion.handlers.builtin import register_builtins

        registry = HandlerRegistry()
        register_builtins(registry)
        registry.discover_later()
        _default = registry
    return _default
