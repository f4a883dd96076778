"""Each public module exports exactly the names it means to, and nothing public goes unlisted.

The public modules are those README.md lists under "Public API"; every other module is
internal. For each, ``__all__`` is pinned here, every name in it resolves (lazy ones too),
and every public name the module offers (see ``_member``) is in ``__all__``: a new public
name is a decision, made here and in the docs. A package gathers its API from its modules,
so anything of ours it binds counts; a plain module's imports do not, only what it defines.
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

PUBLIC: dict[str, set[str]] = {
    "orchestrion": {
        "DefinitionError",
        "Engine",
        "ExecutionRecord",
        "ExecutionResult",
        "ExecutionStatus",
        "NodeContext",
        "NodeState",
        "OrchestrionError",
        "PermanentNodeError",
        "TransientNodeError",
        "WorkflowSpec",
        "__version__",
        "arun",
        "function",
        "load_definition",
        "run",
    },
    "orchestrion.handlers": {
        "LATER",
        "Controls",
        "HandlerFunc",
        "HandlerRegistry",
        "HandlerSpec",
        "NodeContext",
        "NodeError",
        "NowFunc",
        "PermanentNodeError",
        "Resources",
        "TransientNodeError",
        "Wait",
        "default_registry",
        "function",
        "run_of",
    },
    "orchestrion.testing": {
        "MemoryStore",
        "arun_in_memory",
        "node_context",
        "registered_functions",
        "run_in_memory",
    },
    "orchestrion.errors": {
        "EXECUTION_CATEGORIES",
        "NODE_CATEGORIES",
        "ErrorCategory",
        "ConfigurationError",
        "ControlPending",
        "DecisionRefused",
        "DecryptionError",
        "DefinitionError",
        "DefinitionIssue",
        "DispatchError",
        "ExecutionError",
        "ExecutionNotFound",
        "HandlerNotFound",
        "IdempotencyConflict",
        "InvalidTransition",
        "NodeError",
        "NotRetryable",
        "OrchestrionError",
        "PermanentNodeError",
        "PolicyViolation",
        "ReservedIdempotencyKey",
        "StoreError",
        "UnstorableValue",
        "TransientNodeError",
        "WireError",
        "no_such_node",
    },
    "orchestrion.settings": {
        "ApiRole",
        "Settings",
        "Team",
        "claim_process",
        "load_secrets",
        "load_settings",
        "owns_process",
        "webhook_secret",
    },
    "orchestrion.client": {
        "Accepted",
        "ApiConnectionError",
        "ApiError",
        "ApiTimeout",
        "AsyncClient",
        "BadRequest",
        "Client",
        "Conflict",
        "DeadLetter",
        "DeadLetterAction",
        "DeadLetterPage",
        "Definition",
        "DefinitionSummary",
        "EmittedEvent",
        "Event",
        "EventPage",
        "Execution",
        "ExecutionPage",
        "ExecutionResults",
        "ExecutionSummary",
        "Forbidden",
        "Health",
        "InvalidDefinition",
        "InvalidRequest",
        "LogLine",
        "LogPage",
        "NotFound",
        "PayloadTooLarge",
        "RateLimited",
        "RenderedInputs",
        "ServerError",
        "ServiceUnavailable",
        "SkippedTrigger",
        "Submission",
        "TriggeredExecution",
        "Unauthorized",
        "UnsupportedMediaType",
    },
}


def _member(module: ModuleType, value: object) -> bool:
    """A class, function or object of ours the module offers: one it defines, or for a
    package (whose ``__init__`` gathers the API of its modules) one it imports."""
    if isinstance(value, ModuleType):
        return False  # a submodule of a package, bound when it was imported
    origin = str(getattr(value, "__module__", ""))
    if hasattr(module, "__path__"):
        return origin.split(".")[0] == "orchestrion"
    return origin == module.__name__


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_exported_names_are_exactly_the_intended_ones(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert len(exported) == len(set(exported)), "a name is listed twice"
    assert set(exported) == PUBLIC[name]
    for member in exported:
        assert getattr(module, member) is not None, member  # lazy names load, too
    unlisted = {
        member
        for member, value in vars(module).items()
        if not member.startswith("_") and _member(module, value) and member not in PUBLIC[name]
    }
    assert not unlisted, f"{name} binds public names it does not export: {sorted(unlisted)}"


@pytest.mark.parametrize("name", ["orchestrion", "orchestrion.handlers", "orchestrion.testing"])
def test_public_modules_load_no_handler_or_engine_they_do_not_need(name: str) -> None:
    """Importing a public module (a plug-in's ``orchestrion.handlers``, a conftest's
    ``orchestrion.testing``) loads neither the engine nor the ``python`` handler yet."""
    code = (
        f"import sys, {name}; "
        "print(sorted(m for m in ('orchestrion.engine.facade', 'orchestrion.handlers.python')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_readme_lists_exactly_the_public_modules() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Public API", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^- `(orchestrion[a-z_.]*)`", section, re.MULTILINE))
    assert listed == set(PUBLIC)
