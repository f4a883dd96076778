"""A definition prepared for running: its plan plus what each node's task message needs.

Compiled once per definition version and cached by the engine, so nothing is re-parsed,
re-validated or re-scanned per node at run time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrion.core.plan import Plan
from orchestrion.core.task_kinds import TaskKind
from orchestrion.definition.criteria import CriterionPlan, compile_criteria
from orchestrion.definition.model import WorkflowSpec
from orchestrion.definition.reads import readable_nodes
from orchestrion.dispatch.base import TaskMessage
from orchestrion.store.base import ExecutionRecord

__all__ = ["CompiledWorkflow"]


@dataclass(frozen=True, slots=True)
class CompiledWorkflow:
    """``plan`` plus, per node, the node ids whose outputs its templates and handler may read."""

    definition_id: str
    plan: Plan
    context_nodes: tuple[tuple[str, ...], ...]
    output_nodes: tuple[str, ...]
    sink_nodes: tuple[str, ...]
    criteria: tuple[CriterionPlan, ...] = ()  # the success criteria, ready to evaluate
    # Each node's data classification as the task message carries it (an enum's ``value``
    # is a property: read once here, not at every attempt).
    classifications: tuple[str, ...] = ()

    @classmethod
    def build(cls, definition_id: str, spec: WorkflowSpec) -> CompiledWorkflow:
        plan = Plan.build(spec)
        reads = readable_nodes(plan.spec)  # with the nodes of routing rules
        context = [reads[node.id] for node in plan.nodes]
        outputs = tuple(n.id for n in plan.nodes if n.handler == "output")
        routing = plan.routing or (False,) * len(plan)
        sinks = tuple(
            plan.ids[i] for i, kids in enumerate(plan.children) if not kids and not routing[i]
        )
        criteria = compile_criteria(spec)
        classifications = tuple(node.data_classification.value for node in plan.nodes)
        return cls(definition_id, plan, tuple(context), outputs, sinks, criteria, classifications)

    def task_message(
        self,
        record: ExecutionRecord,
        outputs: dict[str, Any],
        node_id: str,
        attempt: int,
        wait_result: Any = None,
    ) -> TaskMessage:
        """The attempt's task: raw config + trigger-time overrides + the outputs it reads."""
        plan = self.plan
        i = plan.index[node_id]
        node = plan.nodes[i]
        config = node.config
        patch = record.overrides.get(node_id)
        if patch:
            config = {**config, **patch}
        if plan.routing and plan.routing[i]:  # workflow.duration counts from the start
            config = {**config, "started_at": record.started_at}
        reads = self.context_nodes[i]
        if len(reads) == 1:  # one parent (a chain, a fan-out): no comprehension's frame
            read = reads[0]
            readable = {read: outputs[read]} if read in outputs else {}
        else:
            readable = {n: outputs[n] for n in reads if n in outputs}
        return TaskMessage(
            execution_id=record.id,
            node_id=node_id,
            attempt=attempt,
            handler=node.handler,
            config=config,
            inputs=record.inputs,
            outputs=readable,
            dependencies=node.dependencies,
            idempotency_key=f"{record.id}:{node_id}:{attempt}",
            timeout=plan.timeout[i],
            when=node.when,
            classification=self.classifications[i],
            capabilities=node.capabilities,
            priority=node.priority,
            wait_result=wait_result,
            correlation_id=record.correlation_id,
            trust=record.trust,
        )

    def compensation_message(
        self,
        record: ExecutionRecord,
        outputs: dict[str, Any],
        node_id: str,
        attempt: int,
        round_: int = 0,
    ) -> TaskMessage:
        """The node's compensation (of the execution's compensation ``round_``): it also sees
        the node's own output."""
        i = self.plan.index[node_id]
        node = self.plan.nodes[i]
        if node.compensate is None:
            raise ValueError(f"node '{node_id}' has no compensation handler")
        readable = {n: outputs[n] for n in self.context_nodes[i] if n in outputs}
        if node_id in outputs:
            readable[node_id] = outputs[node_id]
        return TaskMessage(
            execution_id=record.id,
            node_id=node_id,
            attempt=attempt,
            handler=node.compensate.handler,
            config=node.compensate.config,
            inputs=record.inputs,
            outputs=readable,
            dependencies=(*node.dependencies, node_id),
            idempotency_key=f"{record.id}:{node_id}:compensate",
            timeout=node.compensate.timeout,
            classification=self.classifications[i],
            kind=TaskKind.COMPENSATE,
            correlation_id=record.correlation_id,
            trust=record.trust,
            compensation_round=round_,
        )

    def result_from(self, outputs: dict[str, Any]) -> Any:
        """The workflow's result: its output node's output, or every sink's output by id."""
        if len(self.output_nodes) == 1:
            return outputs.get(self.output_nodes[0])
        chosen = self.output_nodes or self.sink_nodes
        return {node_id: outputs[node_id] for node_id in chosen if node_id in outputs}
