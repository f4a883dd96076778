"""What an API caller may see of personal data: the masking rules of docs/GOVERNANCE.md.

A caller with the admin role sees everything as stored. So does every caller when no API key
is configured: an open API gives every caller every role (it warns loudly at start), and
masking for a role nobody can prove would be theatre. Otherwise (viewer, operator), with
masking on in the policy, a node is *classified* when its ``data_classification`` is one the
policy masks, or when it holds such data through a child execution (``lineage.py``):

- the output, rendered inputs and log lines of a classified node are replaced whole
  (``{"masked": "<classification>"}``, ``[masked: <classification>]``), and so are the
  message of its errors (``category``, ``type`` and ``transient`` stay) and what its events
  carry beyond what the engine says of them (an approval's message: ``"masked": ...``);
- an execution classified whole through its parent (a child of an execution that holds
  classified data) is shown as if every node were classified: inputs, result, every output,
  error, log line and event data;
- when the execution has classified nodes, the data that flows through it, the execution's
  inputs, the workflow's result and the outputs of its other nodes (every handler is given the
  inputs), is pattern-masked, and an entry of the result named after a classified node is
  replaced whole; so is the execution's error when the node it quotes is classified;
- free text the system writes, other errors and event data (reasons, decision comments;
  events never carry outputs), is always pattern-masked.

Outputs of workflows without such nodes are shown as they are: they are the workflow's data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request

from orchestrion.api.auth import caller_of
from orchestrion.api.context import ApiContext, get_ctx
from orchestrion.api.lineage import Held, Lineage
from orchestrion.engine.reads import EngineReads
from orchestrion.governance.masking import Masker
from orchestrion.governance.runtime import Governance
from orchestrion.store.base import ExecutionRecord

__all__ = ["Disclosure", "ExecutionView", "disclosure", "disclosure_of", "masked_error"]

_CARRIERS = frozenset({"input", "output"})
# Error keys that say what kind of failure it was (as sealing keeps them readable), and the
# failed nodes an execution's error names.
_ERROR_KIND = frozenset({"category", "type", "transient", "nodes"})
# Event data keys that say what happened, not what a handler produced (ids and wait kinds).
_EVENT_FACTS = frozenset(
    {
        *("reason", "delay", "node", "nodes", "child_execution_id", "state", "status"),
        *("attempt", "verb", "kind", "rule", "teams", "key", "at", "failed_at"),
    }
)


def masked_error(error: dict[str, Any], classification: str) -> dict[str, Any]:
    """``error`` with its kind kept and its text (message, details) replaced."""
    shown = {key: value for key, value in error.items() if key in _ERROR_KIND}
    shown["message"] = f"[masked: {classification}]"
    return shown


@dataclass(frozen=True, slots=True)
class ExecutionView:
    """How one execution's data is shown to one caller; ``masker`` None shows it as stored."""

    masker: Masker | None = None
    classified: dict[str, str] = field(default_factory=dict)  # node id -> classification
    carriers: frozenset[str] = frozenset()  # input and output nodes
    classified_inputs: str | None = None  # the classification of a classified input node
    outputs: tuple[str, ...] = ()  # output nodes: one makes the result, several a dict
    whole: str | None = None  # classified whole through its parent: every node is

    def level(self, node_id: str | None) -> str | None:
        """The classification that hides ``node_id``'s data (the execution's when None)."""
        if self.masker is None:
            return None
        if self.whole is not None:
            return self.whole
        return None if node_id is None else self.classified.get(node_id)

    def output(self, node_id: str, value: Any) -> Any:
        if self.masker is None or value is None:  # nothing yet (or skipped): nothing to hide
            return value
        classification = self.level(node_id)
        if classification is not None:
            return {"masked": classification}
        if not self.classified:
            return value
        if node_id in self.carriers:
            return self.aggregate(value)
        # Any node of the execution is given its inputs and may pass them on: pattern-masked.
        return self.masker.mask_value(value)

    def inputs(self, value: dict[str, Any]) -> dict[str, Any]:
        if self.masker is None:
            return value
        if self.whole is not None:
            return {"masked": self.whole}
        if not self.classified:
            return value
        if self.classified_inputs is not None:
            return {"masked": self.classified_inputs}
        masked: dict[str, Any] = self.masker.mask_value(value)
        return masked

    def aggregate(self, value: Any) -> Any:
        """The result (or an output node's output): entries of classified nodes hidden."""
        if self.masker is None or value is None:
            return value
        if self.whole is not None:
            return {"masked": self.whole}
        if not self.classified:
            return value
        if isinstance(value, dict):  # keys masked too, once the entries are chosen
            return self.masker.mask_entries(
                [
                    (
                        key,
                        {"masked": self.classified[key]}
                        if key in self.classified and item is not None
                        else self.masker.mask_value(item),
                    )
                    for key, item in value.items()
                ]
            )
        return self.masker.mask_value(value)

    def result(self, value: Any) -> Any:
        """The workflow's result: hidden whole when its one output node is classified."""
        if (
            self.masker is not None
            and value is not None
            and len(self.outputs) == 1
            and self.outputs[0] in self.classified
        ):
            return {"masked": self.classified[self.outputs[0]]}
        return self.aggregate(value)

    def error(self, node_id: str, error: dict[str, Any] | None) -> dict[str, Any] | None:
        """A node's error: its text hidden when the node is classified (it quotes its data)."""
        if self.masker is None or error is None:
            return error
        classification = self.level(node_id)
        if classification is not None:
            return masked_error(error, classification)
        masked: dict[str, Any] = self.masker.mask_value(error)
        return masked

    def execution_error(self, error: dict[str, Any] | None) -> dict[str, Any] | None:
        """The execution's error: it quotes the first failed node's, hidden like it."""
        if self.masker is None or error is None:
            return error
        nodes = error.get("nodes")
        first = nodes[0] if isinstance(nodes, list) and nodes else None
        classification = self.level(first if isinstance(first, str) else None)
        if classification is not None:
            return masked_error(error, classification)
        masked: dict[str, Any] = self.masker.mask_value(error)
        return masked

    def event_data(self, node_id: str | None, data: dict[str, Any] | None) -> Any:
        """An event's data: for a classified node (or an execution classified whole), what
        the handler put in it (an approval's message) hidden and its errors' text hidden."""
        if self.masker is None or data is None:
            return data
        named = data.get("node")  # an execution's event about a node (a notice, a decision)
        classification = self.level(
            named if node_id is None and isinstance(named, str) else node_id
        )
        if classification is None:
            if node_id is None and isinstance(data.get("error"), dict):
                data = {**data, "error": self.execution_error(data["error"])}
            return self.masker.mask_value(data)
        shown: dict[str, Any] = {}
        hidden = False
        for key, value in data.items():
            if key in ("error", "execution_error") and isinstance(value, dict):
                shown[key] = masked_error(value, classification)
            elif key in _EVENT_FACTS:
                shown[key] = self.masker.mask_value(value)
            else:
                hidden = True
        if hidden:
            shown["masked"] = classification
        return shown

    def notice(self, node_id: Any, message: Any) -> Any:
        """A notice's message: it may quote the error of the node it is about."""
        classification = self.level(node_id if isinstance(node_id, str) else None)
        return self.text(message) if classification is None else f"[masked: {classification}]"

    def text(self, value: Any) -> Any:
        """Free text the system wrote (a notice, a criterion's value): pattern-masked, and
        hidden whole in an execution classified whole."""
        if self.masker is None or value is None:
            return value
        if self.whole is not None:
            return f"[masked: {self.whole}]"
        return self.masker.mask_value(value)


_PLAIN = ExecutionView()


@dataclass(slots=True)
class Disclosure:
    """What the caller of one request may see; ``plain`` for admins and the open API."""

    governance: Governance
    reads: EngineReads
    plain: bool
    _lineage: Lineage | None = None

    @property
    def masker(self) -> Masker | None:
        return None if self.plain else self.governance.masker

    async def execution(self, record: ExecutionRecord) -> ExecutionView:
        """The view of ``record`` (its definition, its parent and its children)."""
        masker = self.masker
        if masker is None:
            return _PLAIN
        if self._lineage is None:
            self._lineage = Lineage(self.reads, self.governance.masks)
        return view_of(masker, await self._lineage.of(record))

    def fresh(self) -> None:
        """Forget what was learnt of executions (a stream's next page: children may start)."""
        self._lineage = None

    def text(self, value: Any) -> Any:
        masker = self.masker
        return value if masker is None else masker.mask_value(value)


def view_of(masker: Masker, held: Held) -> ExecutionView:
    handlers = held.handlers
    classified = held.classified
    carriers = frozenset(n for n, handler in handlers.items() if handler in _CARRIERS)
    inputs = next(
        (classified[n] for n in carriers if n in classified and handlers[n] == "input"), None
    )
    outputs = tuple(n for n, handler in handlers.items() if handler == "output")
    return ExecutionView(masker, classified, carriers, inputs, outputs, held.whole)


async def disclosure(request: Request, ctx: Annotated[ApiContext, Depends(get_ctx)]) -> Disclosure:
    """Dependency: what the caller of this request may see (see the module docstring)."""
    return disclosure_of(request)


def disclosure_of(request: Request) -> Disclosure:
    """What the caller of this request may see, without a dependency (the hot routes)."""
    # The role read here rather than through the ``caller_role`` dependency: every level of
    # FastAPI's dependency tree costs each request tens of microseconds.
    ctx: ApiContext = request.app.state.ctx
    role = caller_of(request.scope, ctx.settings).role
    plain = not ctx.settings.api_keys or role == "admin"
    return Disclosure(ctx.engine.governance, ctx.engine.reads, plain)
