"""Reference 000's format: ``{workflow_id, tasks: [{id, type, depends_on, config,
data_classification}], retry_policy, compensation_handlers}``, converted to the canonical dict.
"""

from __future__ import annotations

from typing import Any

from orchestrion.definition.conversion import Conversion, SourcePath, task_id_of, unknown_keys

__all__ = ["SwarmLite"]


_SWARM_TOP = frozenset(
    {
        "workflow_id",
        "name",
        "description",
        "version",
        "tasks",
        "retry_policy",
        "compensation_handlers",
    }
)
_SWARM_TASK = frozenset(
    {"id", "name", "description", "type", "depends_on", "config", "data_classification", "timeout"}
)
_SWARM_RETRY = frozenset(
    {"max_attempts", "delay_seconds", "exponential_backoff", "max_delay_seconds"}
)


class SwarmLite:
    """Reference 000: ``workflow_id`` + ``tasks`` of python functions."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.source = data
        self.out = Conversion(
            "swarmlite",
            {},
            node_prefix=("tasks",),
            node_fields={"handler": ("type",), "dependencies": ("depends_on",)},
            workflow_fields={
                (): (),
                ("name",): ("workflow_id",),
                ("dag",): ("tasks",),
                ("dag", "nodes"): ("tasks",),
                ("defaults",): ("retry_policy",),
                ("defaults", "retry"): ("retry_policy",),
                ("defaults", "retry", "max_attempts"): ("retry_policy", "max_attempts"),
                ("defaults", "retry", "initial_delay"): ("retry_policy", "delay_seconds"),
                ("defaults", "retry", "max_delay"): ("retry_policy", "max_delay_seconds"),
                ("defaults", "retry", "multiplier"): ("retry_policy", "exponential_backoff"),
                ("defaults", "retry", "jitter"): ("retry_policy", "exponential_backoff"),
                ("metadata",): ("workflow_id",),
            },
        )

    def convert(self) -> Conversion:
        src, out = self.source, self.out
        unknown_keys(out, src, _SWARM_TOP, ())
        data = out.data
        if "name" in src:
            out.workflow_fields[("name",)] = ("name",)
            data["name"] = src["name"]
        elif "workflow_id" in src:
            data["name"] = src["workflow_id"]
        for key in ("description", "version"):
            if key in src:
                data[key] = src[key]
        if "workflow_id" in src:
            data["metadata"] = {"workflow_id": src["workflow_id"]}
        if "retry_policy" in src:
            data["defaults"] = {"retry": self._retry(src["retry_policy"])}
        tasks = src.get("tasks")
        nodes: Any = tasks
        if isinstance(tasks, list):
            nodes = [self._task(task, i) for i, task in enumerate(tasks)]
            self._compensations(nodes, tasks)
        data["dag"] = {"nodes": nodes}
        return out

    def _task(self, task: Any, index: int) -> Any:
        if not isinstance(task, dict):
            return task  # the model reports "should be a mapping" at tasks[i]
        node_id = task_id_of(task, index)
        unknown_keys(self.out, task, _SWARM_TASK, ("tasks", index), node=node_id)
        node: dict[str, Any] = {}
        for key, value in task.items():
            if key == "type":
                node["handler"] = value
            elif key == "depends_on":
                node["dependencies"] = value if value is not None else []
            elif key == "data_classification":
                node[key] = value.lower() if isinstance(value, str) else value
            elif key == "config":
                node[key] = value if value is not None else {}
            elif key in _SWARM_TASK:
                node[key] = value
        return node

    def _retry(self, policy: Any) -> Any:
        if not isinstance(policy, dict):
            return policy
        unknown_keys(
            self.out, policy, _SWARM_RETRY, ("retry_policy",), field_prefix="retry_policy."
        )
        retry: dict[str, Any] = {}
        if "max_attempts" in policy:
            retry["max_attempts"] = policy["max_attempts"]
        exponential = bool(policy.get("exponential_backoff", True))
        retry["multiplier"] = 2.0 if exponential else 1.0
        # A fixed delay (no exponential backoff) is meant to be exactly that delay.
        retry["jitter"] = "full" if exponential else "none"
        delay = policy.get("delay_seconds")
        if delay is not None:
            retry["initial_delay"] = delay
        if "max_delay_seconds" in policy:
            retry["max_delay"] = policy["max_delay_seconds"]
        elif isinstance(delay, int | float) and not isinstance(delay, bool):
            retry["max_delay"] = max(30.0, float(delay)) if exponential else float(delay)
        return retry

    def _compensations(self, nodes: list[Any], tasks: list[Any]) -> None:
        handlers = self.source.get("compensation_handlers")
        if handlers is None:
            return
        out = self.out
        if not isinstance(handlers, dict):
            out.issue(
                "compensation_handlers must map task ids to function names",
                ("compensation_handlers",),
                field_="compensation_handlers",
            )
            return
        by_id = {
            task_id_of(task, i): i
            for i, task in enumerate(tasks)
            if task_id_of(task, i) is not None
        }
        for task_id, handler in handlers.items():
            where: SourcePath = ("compensation_handlers", task_id)
            index = by_id.get(task_id)
            if index is None:
                out.issue(
                    f"compensation handler for unknown task '{task_id}'",
                    where,
                    field_=f"compensation_handlers.{task_id}",
                    code="unknown_task",
                )
                continue
            if isinstance(handler, str):
                spec: Any = {"handler": "python", "config": {"function": handler}}
            elif isinstance(handler, dict):
                spec = handler
            else:
                out.issue(
                    "a compensation handler is a function name or a {handler, config} mapping",
                    where,
                    node=task_id,
                    field_=f"compensation_handlers.{task_id}",
                )
                continue
            node = nodes[index]
            if isinstance(node, dict):
                node["compensate"] = spec
                out.node_extras[(index, ("compensate",))] = where
                if isinstance(handler, str):
                    # The shorthand is one value: every canonical field points back at it.
                    for inner in (("handler",), ("config",), ("config", "function")):
                        out.node_extras[(index, ("compensate", *inner))] = where
