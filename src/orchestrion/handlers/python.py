"""The ``python`` handler: call a registered function or an importable dotted path.

Register a function with the decorator, then name it in a node's config::

    from orchestrion.handlers.python import function

    @function()                      # or @function("custom_name")
    def clean(rows: list[dict], ctx: NodeContext) -> dict: ...

    {"handler": "python", "config": {"function": "clean", "params": {"rows": [...]}}}

Names resolve through the registry first, then as ``pkg.mod:func`` or ``pkg.mod.func``. Params
are passed as keyword arguments; a parameter named ``ctx`` or ``context`` receives the
``NodeContext``. Sync functions run in a worker thread, async ones on the event loop. A sync
function that returns quickly and never blocks may say so when it is registered
(``@function(blocking=False)``): it is then called on the event loop, without the trip to a
worker thread and back, which costs more than a short function's own work. A quick function
with no effect outside the process may be registered with ``inline=True``: it then runs
inside the engine's turn (``run_python_now``), see ``handlers/functions.py``.

Governance control: ``ctx.resources.controls.python_allowlist`` (or ``python_allowlist`` in
the pydantic validation context) restricts dotted imports to listed modules/functions; ``None``
allows all. Registered functions are always allowed: registering needs code in the process.
Under an allowlist a module outside it is never imported (the check comes first), no
attribute starting with ``_`` is followed, and the path may not pass through a module outside
the allowlist (``allowed_mod.os.system``). Allowing a module allows its public namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import importlib
import inspect
import json
import logging
import pickle
import re
import types
from collections.abc import Callable, Collection, Coroutine, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from orchestrion import safe_data
from orchestrion.errors import ErrorCategory, PermanentNodeError, PolicyViolation
from orchestrion.handlers.base import LATER, HandlerSpec, NodeContext, Wait
from orchestrion.handlers.config_context import ALLOWLIST_KEY
from orchestrion.handlers.function_threads import run_blocking
from orchestrion.handlers.functions import FunctionRegistry, function, function_registry
from orchestrion.json_text import quick_encode

__all__ = [
    "ALLOWLIST_KEY",
    "SPEC",
    "FunctionRegistry",
    "PythonConfig",
    "UnresolvableFunction",
    "function",
    "function_registry",
    "resolve_function",
    "run_python",
]

logger = logging.getLogger(__name__)

_CONTEXT_PARAMS = ("ctx", "context")
_IDENT = r"[A-Za-z_]\w*"
_DOTTED = re.compile(rf"^{_IDENT}(?:\.{_IDENT})*(?::{_IDENT}(?:\.{_IDENT})*)?$")


class UnresolvableFunction(ValueError):
    """A function name that is neither registered nor importable."""


_examples_loaded = False


def _load_examples() -> None:
    # Imported lazily: examples use this module's registry, and config validation may run
    # before anyone asked for the built-in handler list.
    global _examples_loaded
    if not _examples_loaded:
        importlib.import_module("orchestrion.handlers.examples")
        _examples_loaded = True


def _unknown(name: str, why: str = "") -> UnresolvableFunction:
    extra = f" ({why})" if why else ""
    return UnresolvableFunction(
        f"unknown function '{name}': not registered and not an importable dotted path{extra}"
    )


def _split(name: str) -> list[tuple[str, str]]:
    """Candidate (module, attribute path) pairs for a dotted name, longest module first."""
    if ":" in name:
        module, attrs = name.split(":", 1)
        return [(module, attrs)]
    parts = name.split(".")
    return [(".".join(parts[:i]), ".".join(parts[i:])) for i in range(len(parts) - 1, 0, -1)]


def _module_allowed(module: str, allowlist: Collection[str]) -> bool:
    return any(module == entry or module.startswith(entry + ".") for entry in allowlist)


def _not_allowed(name: str, why: str) -> PolicyViolation:
    return PolicyViolation(f"python function '{name}' is not allowed: {why}")


def _check_allowlist(name: str, module: str, attrs: str, allowlist: Collection[str]) -> bool:
    """Raise unless allowed; True when an entry names this very function."""
    if {name, f"{module}:{attrs}", f"{module}.{attrs}"} & set(allowlist):
        return True
    if _module_allowed(module, allowlist):
        return False
    raise _not_allowed(name, f"module '{module}' is not in the allowlist (python.allowed_modules)")


def _check_reached(name: str, value: Any, attr: str, allowlist: Collection[str]) -> None:
    """A module reached through an attribute path must itself be allowed."""
    if isinstance(value, types.ModuleType) and not _module_allowed(value.__name__, allowlist):
        raise _not_allowed(
            name, f"'{attr}' is module '{value.__name__}', which is not in the allowlist"
        )


def _import_module(name: str, module: str) -> Any | None:
    """The module, or None when it (not one of its own imports) does not exist."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing == module or module.startswith(missing + "."):
            return None
        raise _unknown(name, f"importing '{module}' failed: {exc}") from exc
    except Exception as exc:
        # Whatever the module raised while importing, the name cannot be resolved.
        raise _unknown(name, f"importing '{module}' failed: {type(exc).__name__}: {exc}") from exc


def resolve_function(name: str, allowlist: Collection[str] | None = None) -> Callable[..., Any]:
    """The callable for ``name``: registered first, then imported (after the allowlist check).

    Raises ``UnresolvableFunction`` (a ValueError) or ``PolicyViolation``.
    """
    if not _examples_loaded:
        _load_examples()
    found = function_registry.get(name)
    if found is not None:
        return found
    if not _DOTTED.match(name) or ("." not in name and ":" not in name):
        raise _unknown(name)
    for module_name, attrs in _split(name):
        exact = False
        if allowlist is not None:
            exact = _check_allowlist(name, module_name, attrs, allowlist)
        module = _import_module(name, module_name)
        if module is None:
            continue
        target: Any = module
        for attr in attrs.split("."):
            if allowlist is not None and not exact and attr.startswith("_"):
                raise _not_allowed(name, f"private attribute '{attr}'")
            if not hasattr(target, attr):
                raise _unknown(name, f"'{module_name}' has no attribute '{attrs}'")
            target = getattr(target, attr)
            if allowlist is not None and not exact:
                _check_reached(name, target, attr, allowlist)
        if not callable(target):
            raise _unknown(name, f"'{name}' is not callable")
        return target  # type: ignore[no-any-return]
    raise _unknown(name)


class PythonConfig(BaseModel):
    """Config of the ``python`` handler: the function to call and its keyword params."""

    model_config = ConfigDict(extra="forbid")

    function: str = Field(description="a registered function's name, or `package.module:function`")
    params: dict[str, Any] = Field(
        default_factory=dict, description="keyword arguments for the function"
    )

    @field_validator("function")
    @classmethod
    def _check_function(cls, value: str, info: ValidationInfo) -> str:
        value = value.strip()
        if "{{" in value:
            return value  # an unrendered template: resolved when the node runs
        allowlist = None
        context = info.context
        if type(context) is dict or isinstance(context, Mapping):  # dict: no ABC check
            allowlist = context.get(ALLOWLIST_KEY)
        try:
            resolve_function(value, allowlist)
        except PolicyViolation as exc:
            # Its own error type, so the executor reports it as a policy violation (not
            # retried) and the API's problem names it: config.policy_violation.
            raise PydanticCustomError("policy_violation", "{reason}", {"reason": str(exc)}) from exc
        return value


class _Call:
    """How to call one function, worked out once from its signature: which parameter gets
    the context, whether it is a coroutine function, and which keyword arguments bind."""

    __slots__ = ("by_keyword", "ctx_param", "is_async", "required", "signature")

    def __init__(self, func: Callable[..., Any]) -> None:
        sig = _signature(func)
        self.signature = sig
        self.ctx_param = _context_param(func, sig)
        self.is_async = _is_async(func)
        keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        params = sig.parameters.values() if sig is not None else ()
        # None: a **kwargs parameter takes any name.
        self.by_keyword: frozenset[str] | None = frozenset(
            p.name for p in params if p.kind in keyword
        )
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            self.by_keyword = None
        self.required = frozenset(
            p.name
            for p in params
            if p.default is inspect.Parameter.empty
            and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        )

    def check(self, name: str, kwargs: dict[str, Any]) -> None:
        """Raise what ``Signature.bind`` raises when ``kwargs`` do not fit the function."""
        sig = self.signature
        if sig is None:
            return
        # Set methods over the dict itself: comparing with a keys view takes the slow,
        # generic path, several times the cost of the check on every call.
        required, by_keyword = self.required, self.by_keyword
        if (not required or required.issubset(kwargs)) and (
            by_keyword is None or by_keyword.issuperset(kwargs)
        ):
            return
        try:
            sig.bind(**kwargs)
        except TypeError as exc:
            raise PermanentNodeError(
                f"function '{name}' does not accept the given params: {exc}",
                category=ErrorCategory.CONFIG,
            ) from exc


_CALLS: dict[Callable[..., Any], _Call] = {}
_CALLS_MAX = 1024  # distinct functions remembered; more start the memory over


def _call_of(func: Callable[..., Any]) -> _Call:
    try:
        call = _CALLS.get(func)
    except TypeError:  # an unhashable callable object
        return _Call(func)
    if call is None:
        if len(_CALLS) >= _CALLS_MAX:
            _CALLS.clear()
        call = _CALLS[func] = _Call(func)
    return call


def _context_param(func: Callable[..., Any], sig: inspect.Signature | None) -> str | None:
    if sig is None:
        return None
    for name in _CONTEXT_PARAMS:
        param = sig.parameters.get(name)
        if param is not None and param.kind in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            inspect.Parameter.KEYWORD_ONLY,
        ):
            return name
    return None


def _signature(func: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(func)
    except (TypeError, ValueError):
        return None  # some builtins have none; the call itself will complain


def _is_async(func: Callable[..., Any]) -> bool:
    call = getattr(func, "__call__", None)  # noqa: B004 - async callable objects count too
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(call)


# json.dumps(value, allow_nan=False) without its set-up per call: an output that passes
# is written once more by the executor's own check (its lone surrogates escaped).
_STRICT = quick_encode(json.JSONEncoder(allow_nan=False))


def _check_json(name: str, value: Any, node: str) -> None:
    if value is None or type(value) in (str, int, bool):
        return  # the common case: nothing to encode (a float may be NaN)
    try:
        _STRICT(value)
    except (TypeError, ValueError, RecursionError):
        pass  # written again below, to name what JSON cannot hold
    else:
        return
    offending: list[str] = []

    def reject(obj: Any) -> Any:
        offending.append(type(obj).__name__)
        raise TypeError(type(obj).__name__)

    try:
        json.dumps(value, default=reject, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        what = f"a value of type '{offending[0]}'" if offending else f"an invalid value ({exc})"
        raise PermanentNodeError(
            f"function '{name}' of node '{node}' returned {what}{_where(value)}, which is"
            " not JSON-serialisable",
            category=ErrorCategory.OUTPUT,
        ) from exc


def _where(value: Any) -> str:
    """Where in ``value`` the first value JSON cannot hold is (a JSON pointer), if found."""
    try:
        safe_data.check(value, max_depth=None)
    except safe_data.UnsafeData as unsafe:
        return "" if not unsafe.pointer else f" at {unsafe.pointer}"
    except RecursionError:
        return ""
    return ""


def _arguments(
    name: str, func: Callable[..., Any], ctx: NodeContext, config: PythonConfig
) -> tuple[_Call, dict[str, Any]]:
    """How to call ``func`` and its keyword arguments: the params, and ctx if asked for.

    The function gets its own copy of every list and dict, its context's inputs and
    outputs included (those as they are read: ``_CopiedOnRead``): a rendered param may be
    an upstream node's output itself, and changing it in place must change neither what
    later nodes read nor what is stored of it (an inline one's output is committed after
    its successors ran), as after a restart, when outputs are read back from the store."""
    kwargs = {key: _own(value) for key, value in config.params.items()}
    call = _call_of(func)
    ctx_param = call.ctx_param
    # A param of that name given in the config is the user's value, not the context.
    if ctx_param is not None and ctx_param not in kwargs:
        kwargs[ctx_param] = dataclasses.replace(
            ctx, inputs=_CopiedOnRead(ctx.inputs), outputs=_CopiedOnRead(ctx.outputs)
        )
    call.check(name, kwargs)
    return call, kwargs


class _CopiedOnRead(dict[str, Any]):
    """A context's inputs or outputs, each value copied (``_own``) when it is read: a
    function that takes ``ctx`` for its idempotency key or its logger pays nothing for a
    large upstream output it never reads."""

    __slots__ = ()

    def __getitem__(self, key: str) -> Any:
        return _own(dict.__getitem__(self, key))

    def get(self, key: str, default: Any = None) -> Any:
        return _own(dict.get(self, key, default))

    def values(self) -> list[Any]:  # type: ignore[override]
        return [_own(value) for value in dict.values(self)]

    def items(self) -> list[tuple[str, Any]]:  # type: ignore[override]
        return [(key, _own(value)) for key, value in dict.items(self)]

    def copy(self) -> dict[str, Any]:
        return {key: _own(value) for key, value in dict.items(self)}


def _own(value: Any) -> Any:
    """A deep copy of a list or dict ``value`` (anything else is immutable, or not JSON)."""
    if type(value) is not dict and type(value) is not list:
        return value
    try:
        # pickle's C code copies plain data two to three times faster than a walk in Python.
        return pickle.loads(pickle.dumps(value, pickle.HIGHEST_PROTOCOL))
    except Exception:  # something in it that pickle cannot copy: its lists and dicts only
        if type(value) is dict:
            return {key: _own(item) for key, item in value.items()}
        return [_own(item) for item in value]


async def run_python(ctx: NodeContext, config: PythonConfig) -> Any:
    """Resolve, call with ``params`` (and ctx if asked for), return the JSON-able result."""
    name = config.function
    allowlist = ctx.resources.controls.python_allowlist
    try:
        func = resolve_function(name, allowlist)
    except UnresolvableFunction as exc:
        raise PermanentNodeError(str(exc), category=ErrorCategory.CONFIG) from exc
    call, kwargs = _arguments(name, func, ctx, config)
    # No rendered value in the line (the name may come from a classified input).
    logger.debug("calling the python function of node %s", ctx.node_id)
    if call.is_async:
        result = await func(**kwargs)
    elif not function_registry.blocking(name) and function_registry.get(name) is func:
        result = func(**kwargs)  # declared quick: on the loop (see the module docstring)
        if inspect.isawaitable(result):
            result = await result
    else:
        # A thread keeps a slow or blocking function from stalling every other node; the
        # pool is the python nodes' own, so stuck ones hold back nothing else.
        result = await run_blocking(func, **kwargs)
        if inspect.isawaitable(result):
            result = await result
    if isinstance(result, Wait):
        return result
    _check_json(name, result, ctx.node_id)
    return result


def run_python_now(ctx: NodeContext, config: PythonConfig) -> Any:
    """``run_python`` inside the engine's turn, for a function registered with
    ``inline=True`` (``handlers/functions.py``); ``LATER`` for any other function, and for
    an ``async def`` that has to wait: it is stopped there and runs again as a usual
    attempt (it has no effect outside the process)."""
    name = config.function
    func = function_registry.get(name)
    if func is None or not function_registry.inline(name):
        return LATER  # registered otherwise since the node was looked at
    if not _on_event_loop():
        # Its config rendered in a render thread: called on the loop all the same, as
        # declared (a coroutine needs it, and a def may count on it: one thread at a time).
        return LATER
    _, kwargs = _arguments(name, func, ctx, config)
    logger.debug("calling the python function of node %s inline", ctx.node_id)
    # In a context of its own, as a task or a thread would give it: a variable it sets is
    # not the engine's, nor seen by the next node.
    context = contextvars.copy_context()
    result = context.run(func, **kwargs)
    if inspect.iscoroutine(result):
        result = _finish_now(result, context)
    elif inspect.isawaitable(result):
        return LATER  # something to wait for after all: the usual attempt awaits it
    if result is LATER or isinstance(result, Wait):
        return result
    _check_json(name, result, ctx.node_id)
    return result


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _finish_now(coroutine: Coroutine[Any, Any, Any], context: contextvars.Context) -> Any:
    """What ``coroutine`` returns if it ends without waiting for anything, else ``LATER``
    (the coroutine closed where it first waited); it runs in ``context``."""
    try:
        context.run(coroutine.send, None)
    except StopIteration as done:
        return done.value
    with contextlib.suppress(RuntimeError):  # one that awaits again as it is closed
        context.run(coroutine.close)
    return LATER


def _runs_inline(config: Mapping[str, Any]) -> bool:
    """Whether a python node's raw config names a function registered with ``inline=True``."""
    name = config.get("function")
    return type(name) is str and (
        function_registry.inline(name) or function_registry.inline(name.strip())
    )


SPEC = HandlerSpec(
    name="python",
    run=run_python,
    config_model=PythonConfig,
    run_now=run_python_now,
    runs_now=_runs_inline,
    description="Calls a registered Python function or a dotted path (pkg.mod:func) with "
    "keyword params; sync functions run in a thread of their own pool (python_threads) unless "
    "registered with blocking=False, and a function registered with inline=True (quick, no "
    "effect outside the process) runs inside the engine's turn and shares its commit. Python "
    "cannot stop a thread: a function that never "
    "returns keeps its thread after a cancel or timeout (counted in /health); give it timeouts "
    "of its own.",
)
