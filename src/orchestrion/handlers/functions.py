"""The functions the ``python`` handler calls by name, and how each asked to be called.

A function is registered with the ``@function`` decorator (``orchestrion.function``). Its
registration says how its attempts run:

- by default an ``async def`` is awaited on the event loop and a ``def`` runs in a worker
  thread of the python nodes' own pool;
- ``blocking=False``: a ``def`` that returns quickly and never waits (no I/O, no lock, no
  sleep) is called on the event loop, without the trip to a thread and back;
- ``inline=True``: a quick function with no effect outside the process (it parses, reshapes,
  validates, decides) runs inside the engine's turn, as the built-in ``noop`` and
  ``condition`` do. Its start and its output are committed with the turn's other records,
  so a chain of such nodes shares one commit instead of paying one per node; a process that
  dies before that commit runs it again, with no trace of the first run. An ``async def``
  that awaits something that is not ready at once is stopped there and run again as a
  usual attempt.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

__all__ = ["FunctionRegistry", "Registration", "function", "function_registry"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Registration:
    """A name's function and how it asked to be called (``FunctionRegistry.saved``)."""

    func: Callable[..., Any]
    on_loop: bool
    inline: bool
    builtin: bool


class FunctionRegistry:
    """Python functions callable from workflows by name.

    Built-in example functions are registered as ``builtin``: a user function of the same
    name replaces them silently, while two user functions with one name are an error.
    """

    def __init__(self) -> None:
        self._functions: dict[str, Callable[..., Any]] = {}
        self._builtin: set[str] = set()
        self._on_loop: set[str] = set()  # registered with blocking=False (or inline)
        self._inline: set[str] = set()  # registered with inline=True
        self._lock = threading.Lock()

    def register(
        self,
        name: str,
        func: Callable[..., Any],
        *,
        replace: bool = False,
        builtin: bool = False,
        blocking: bool | None = None,
        inline: bool = False,
    ) -> None:
        """Register ``func`` under ``name``; a clash with another user function raises.

        ``blocking=False`` declares a sync function safe to call on the event loop: it
        returns quickly and never waits on I/O, a lock or a sleep. ``inline=True`` declares
        it also free of effects outside the process, so it may run inside the engine's turn
        (the module docstring); it is called on the event loop, so ``blocking=True`` with it
        is a contradiction, refused.
        """
        if not callable(func):
            raise TypeError(f"cannot register {func!r} as python function '{name}': not callable")
        if inline and blocking:
            raise ValueError(
                f"python function '{name}': inline=True runs it inside the engine's turn, on"
                " the event loop; it cannot also be blocking=True"
            )
        on_loop = inline or blocking is False
        with self._lock:
            existing = self._functions.get(name)
            if existing is not None and existing is not func:
                if builtin and name not in self._builtin:
                    return  # the user's function keeps the name
                if not builtin and not replace and name not in self._builtin:
                    raise ValueError(
                        f"python function '{name}' is already registered "
                        f"({_describe(existing)}); pass replace=True to override it"
                    )
            self._functions[name] = func
            _mark(self._on_loop, name, on_loop)
            _mark(self._inline, name, inline)
            _mark(self._builtin, name, builtin)

    def unregister(self, name: str) -> None:
        """Forget ``name`` (no error if unknown)."""
        with self._lock:
            self._functions.pop(name, None)
            self._builtin.discard(name)
            self._on_loop.discard(name)
            self._inline.discard(name)

    def get(self, name: str) -> Callable[..., Any] | None:
        return self._functions.get(name)

    def saved(self, name: str) -> Registration | None:
        """How ``name`` is registered, all of it, for ``restore`` (None: it is not)."""
        with self._lock:
            func = self._functions.get(name)
            if func is None:
                return None
            return Registration(
                func, name in self._on_loop, name in self._inline, name in self._builtin
            )

    def restore(self, name: str, saved: Registration | None) -> None:
        """Register ``name`` again as ``saved`` says it was (None: not at all)."""
        if saved is None:
            self.unregister(name)
            return
        with self._lock:
            self._functions[name] = saved.func
            _mark(self._on_loop, name, saved.on_loop)
            _mark(self._inline, name, saved.inline)
            _mark(self._builtin, name, saved.builtin)

    def blocking(self, name: str) -> bool:
        """Whether the sync function registered as ``name`` runs in a worker thread (True
        unless it was registered with ``blocking=False`` or ``inline=True``; a dotted path
        always does)."""
        return name not in self._on_loop

    def inline(self, name: object) -> bool:
        """Whether ``name`` is a function registered with ``inline=True`` (any other value,
        a template or a dotted path included, is not)."""
        return name in self._inline

    def __contains__(self, name: object) -> bool:
        return name in self._functions

    def names(self) -> list[str]:
        return sorted(self._functions)


def _mark(names: set[str], name: str, on: bool) -> None:
    if on:
        names.add(name)
    else:
        names.discard(name)


def _describe(func: Callable[..., Any]) -> str:
    module = getattr(func, "__module__", "?")
    return f"{module}.{getattr(func, '__qualname__', repr(func))}"


function_registry = FunctionRegistry()


@overload
def function(
    name: F, *, replace: bool = False, blocking: bool | None = None, inline: bool = False
) -> F: ...
@overload
def function(
    name: str | None = None,
    *,
    replace: bool = False,
    blocking: bool | None = None,
    inline: bool = False,
) -> Callable[[F], F]: ...
def function(
    name: str | F | None = None,
    *,
    replace: bool = False,
    blocking: bool | None = None,
    inline: bool = False,
) -> F | Callable[[F], F]:
    """Decorator registering a function for the ``python`` handler (name defaults to __name__).

    Usable bare (``@function``) or called (``@function()``, ``@function("name")``).
    ``blocking=False``: a sync function that returns quickly and never waits (no I/O, no
    lock, no sleep) is called on the event loop instead of in a worker thread; one that
    does block then stalls every other node of the process while it runs. ``inline=True``:
    a quick function with no effect outside the process runs inside the engine's turn and
    shares its commit (the module docstring).
    """
    if name is not None and not isinstance(name, str):  # used bare: name is the function
        function_registry.register(
            _name_of(name), name, replace=replace, blocking=blocking, inline=inline
        )
        return name

    def decorate(func: F) -> F:
        function_registry.register(
            name or _name_of(func), func, replace=replace, blocking=blocking, inline=inline
        )
        return func

    return decorate


def _name_of(func: object) -> str:
    """The name ``func`` registers under when none is given: its ``__name__``."""
    if not callable(func):
        raise TypeError(f"cannot register {func!r} as a python function: not callable")
    name = getattr(func, "__name__", None)
    if not isinstance(name, str):  # a functools.partial, a callable object
        raise TypeError(
            f"cannot register {func!r} as a python function: it has no name of its own;"
            " give one, @function('name')"
        )
    return name
