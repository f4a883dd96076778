"""What an API caller may see of personal data: the masking rules of docs/GOVERNANCE.md.

A caller with the admin role sees everything as stored. So does every caller when no API key
is configured: an open API gives every caller every role (it warns loudly at start), and
masking for a role nobody can prove would be theatre. Otherwise (viewer, operator), with
masking on in the policy:

- the output of a node whose ``data_classification`` the policy masks is replaced whole by
  ``{"masked": "<classification>"}``;
- when the workflow has such nodes, the data that flows through it, the execution's inputs,
  the workflow's result and the outputs of its other nodes (every handler is given the inputs),
  is pattern-masked, and an entry of the result named after a classified node is replaced
  whole;
- free text the system writes, node and execution errors and event data (errors, reasons,
  decision comments; events never carry outputs), is always pattern-masked.

Outputs of workflows without such nodes are shown as they are: they are the workflow's data.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request

from orchestrion.api.auth import caller_of
from orchestrion.api.context import ApiContext, get_ctx
from orchestrion.engine.reads import EngineReads
from orchestrion.governance.masking import Masker
from orchestrion.governance.runtime import Governance
from orchestrion.store.base import DefinitionRecord

__all__ = ["Disclosure", "ExecutionView", "disclosure"]

_CARRIERS = frozenset({"input", "output"})
_CACHE_SIZE = 1024


@dataclass(frozen=True, slots=True)
class ExecutionView:
    """How one execution's data is shown to one caller; ``masker`` None shows it as stored."""

    masker: Masker | None = None
    classified: dict[str, str] = field(default_factory=dict)  # node id -> classification
    carriers: frozenset[str] = frozenset()  # input and output nodes
    classified_inputs: str | None = None  # the classification of a classified input node
    outputs: tuple[str, ...] = ()  # output nodes: one makes the result, several a dict

    def output(self, node_id: str, value: Any) -> Any:
        if self.masker is None or value is None:  # nothing yet (or skipped): nothing to hide
            return value
        classification = self.classified.get(node_id)
        if classification is not None:
            return {"masked": classification}
        if not self.classified:
            return value
        if node_id in self.carriers:
            return self.aggregate(value)
        # Any node of the execution is given its inputs and may pass them on: pattern-masked.
        return self.masker.mask_value(value)

    def inputs(self, value: dict[str, Any]) -> dict[str, Any]:
        if self.masker is None or not self.classified:
            return value
        if self.classified_inputs is not None:
            return {"masked": self.classified_inputs}
        masked: dict[str, Any] = self.masker.mask_value(value)
        return masked

    def aggregate(self, value: Any) -> Any:
        """The result (or an output node's output): entries of classified nodes hidden."""
        if self.masker is None or not self.classified:
            return value
        if isinstance(value, dict):
            return {
                key: {"masked": self.classified[key]}
                if key in self.classified and item is not None
                else self.masker.mask_value(item)
                for key, item in value.items()
            }
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

    def text(self, value: Any) -> Any:
        """Free text the system wrote (an error, event data): always pattern-masked."""
        return value if self.masker is None else self.masker.mask_value(value)


_PLAIN = ExecutionView()


@dataclass(slots=True)
class Disclosure:
    """What the caller of one request may see; ``plain`` for admins and the open API."""

    governance: Governance
    reads: EngineReads
    plain: bool

    @property
    def masker(self) -> Masker | None:
        return None if self.plain else self.governance.masker

    async def execution(self, definition_id: str) -> ExecutionView:
        """The view of an execution of this definition."""
        masker = self.masker
        if masker is None:
            return _PLAIN
        classes = _CLASSES.get(definition_id)
        if classes is None:
            classes = _node_classes(await self.reads.definition(definition_id))
            _CLASSES[definition_id] = classes
            if len(_CLASSES) > _CACHE_SIZE:
                _CLASSES.popitem(last=False)
        else:
            _CLASSES.move_to_end(definition_id)
        handlers, classifications = classes
        classified = {
            node_id: level
            for node_id, level in classifications.items()
            if self.governance.masks(level)
        }
        carriers = frozenset(n for n, handler in handlers.items() if handler in _CARRIERS)
        inputs = next(
            (classified[n] for n in carriers if n in classified and handlers[n] == "input"), None
        )
        outputs = tuple(n for n, handler in handlers.items() if handler == "output")
        return ExecutionView(masker, classified, carriers, inputs, outputs)

    def text(self, value: Any) -> Any:
        masker = self.masker
        return value if masker is None else masker.mask_value(value)


# Definitions never change under their id: node handlers and classifications, by id.
_CLASSES: OrderedDict[str, tuple[dict[str, str], dict[str, str]]] = OrderedDict()


def _node_classes(definition: DefinitionRecord) -> tuple[dict[str, str], dict[str, str]]:
    nodes = definition.spec.get("dag", {}).get("nodes", [])
    handlers: dict[str, str] = {}
    classifications: dict[str, str] = {}
    for node in nodes if isinstance(nodes, list) else []:
        if isinstance(node, dict) and isinstance(node.get("id"), str):
            handlers[node["id"]] = str(node.get("handler", ""))
            classifications[node["id"]] = str(node.get("data_classification") or "public")
    return handlers, classifications


async def disclosure(request: Request, ctx: Annotated[ApiContext, Depends(get_ctx)]) -> Disclosure:
    """Dependency: what the caller of this request may see (see the module docstring)."""
    # The role read here rather than through the ``caller_role`` dependency: every level of
    # FastAPI's dependency tree costs each request tens of microseconds.
    role = caller_of(request.scope, ctx.settings).role
    plain = not ctx.settings.api_keys or role == "admin"
    return Disclosure(ctx.engine.governance, ctx.engine.reads, plain)
