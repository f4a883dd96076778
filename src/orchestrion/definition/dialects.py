"""The workflow formats we accept, detected by shape and converted to the canonical dict.

* ``canonical`` (references 001/003): ``{name, dag: {nodes: [...]}}``, passed through.
* ``swarmlite`` (reference 000): ``{workflow_id, tasks: [{id, type, depends_on, config,
  data_classification}], retry_policy, compensation_handlers}``.
* ``agent_platform`` (reference 004): ``{workflow: {id, name, version, config, triggers,
  tasks: [{id, agent, depends_on, config, inputs, outputs}], routing, error_handling,
  success_criteria}}``.

Conversion never raises: what cannot be converted becomes a ``DefinitionIssue`` located by its
source path, and the canonical model then reports the rest. ``Conversion.source_path`` maps a
path in the canonical dict back to the path the user wrote, for line numbers and field names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from orchestrion.errors import DefinitionIssue
from orchestrion.templates.rendering import node_expression

__all__ = [
    "UNKNOWN_FORMAT_MESSAGE",
    "Conversion",
    "Dialect",
    "PathPart",
    "SourcePath",
    "convert",
    "detect_dialect",
]

Dialect = Literal["canonical", "swarmlite", "agent_platform"]
PathPart = str | int
SourcePath = tuple[PathPart, ...]

UNKNOWN_FORMAT_MESSAGE = (
    "cannot tell the workflow format: expected `name`+`dag`, `workflow_id`+`tasks`, or `workflow:`"
)

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(slots=True)
class Conversion:
    """A definition converted to the canonical dict, with the way back to its source paths."""

    dialect: Dialect
    data: dict[str, Any]
    issues: list[tuple[DefinitionIssue, SourcePath]] = field(default_factory=list)
    node_prefix: SourcePath = ("dag", "nodes")
    # canonical node field -> where it is written inside one source node
    node_fields: dict[str, SourcePath] = field(default_factory=dict)
    # (node index, canonical path inside the node) -> absolute source path
    node_extras: dict[tuple[int, SourcePath], SourcePath] = field(default_factory=dict)
    # canonical workflow-level path prefix -> absolute source path
    workflow_fields: dict[SourcePath, SourcePath] = field(default_factory=lambda: {(): ()})
    recognised: bool = True  # False: none of the formats; ``issues`` says so

    def source_path(self, canonical: SourcePath) -> SourcePath:
        """Where the value at ``canonical`` (a path in ``data``) was written in the source."""
        if len(canonical) >= 3 and canonical[:2] == ("dag", "nodes"):
            index = canonical[2]
            if isinstance(index, int):
                rest = canonical[3:]
                for cut in range(len(rest), 0, -1):
                    extra = self.node_extras.get((index, rest[:cut]))
                    if extra is not None:
                        return extra + rest[cut:]
                if rest and isinstance(rest[0], str) and rest[0] in self.node_fields:
                    rest = self.node_fields[rest[0]] + rest[1:]
                return (*self.node_prefix, index, *rest)
        for cut in range(len(canonical), -1, -1):
            mapped = self.workflow_fields.get(canonical[:cut])
            if mapped is not None:
                return mapped + canonical[cut:]
        return canonical

    def node_source_prefix(self, index: int) -> SourcePath:
        return (*self.node_prefix, index)

    def issue(
        self,
        message: str,
        path: SourcePath,
        *,
        node: str | None = None,
        field_: str | None = None,
        code: str = "invalid",
    ) -> None:
        self.issues.append((DefinitionIssue(message, node=node, field=field_, code=code), path))


def detect_dialect(data: dict[str, Any]) -> Dialect | None:
    """Which format ``data`` is written in, by its top-level keys; None if it is none of them."""
    if isinstance(data.get("workflow"), dict):
        return "agent_platform"
    if "workflow_id" in data or ("tasks" in data and "dag" not in data):
        return "swarmlite"
    if "dag" in data or "name" in data:
        return "canonical"
    return None


def convert(data: dict[str, Any]) -> Conversion:
    """Detect the dialect of ``data`` and convert it; unknown shapes give one issue."""
    dialect = detect_dialect(data)
    if dialect == "agent_platform":
        return _AgentPlatform(data).convert()
    if dialect == "swarmlite":
        return _SwarmLite(data).convert()
    if dialect == "canonical":
        return Conversion("canonical", dict(data))
    conversion = Conversion("canonical", {}, recognised=False)
    conversion.issue(UNKNOWN_FORMAT_MESSAGE, (), code="unknown_format")
    return conversion


def _unknown_keys(
    conversion: Conversion,
    mapping: dict[str, Any],
    allowed: frozenset[str],
    path: SourcePath,
    *,
    node: str | None = None,
    field_prefix: str = "",
) -> None:
    for key in mapping:
        if key not in allowed:
            expected = ", ".join(sorted(allowed))
            conversion.issue(
                f"unknown key '{key}' (expected one of: {expected})",
                (*path, key),
                node=node,
                field_=f"{field_prefix}{key}",
                code="extra_forbidden",
            )


def _task_id(task: Any, index: int) -> str | None:
    if isinstance(task, dict) and isinstance(task.get("id"), str):
        return str(task["id"])
    return None


# --------------------------------------------------------------------------- reference 000


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


class _SwarmLite:
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
        _unknown_keys(out, src, _SWARM_TOP, ())
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
        node_id = _task_id(task, index)
        _unknown_keys(self.out, task, _SWARM_TASK, ("tasks", index), node=node_id)
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
        _unknown_keys(
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
            _task_id(task, i): i for i, task in enumerate(tasks) if _task_id(task, i) is not None
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


# --------------------------------------------------------------------------- reference 004


_AGENT_TOP = frozenset({"workflow"})
_AGENT_WORKFLOW = frozenset(
    {
        "id",
        "name",
        "description",
        "version",
        "config",
        "triggers",
        "tasks",
        "routing",
        "error_handling",
        "success_criteria",
    }
)
_AGENT_CONFIG = frozenset({"timeout", "max_retries", "parallel_execution", "audit_enabled"})
_AGENT_TASK = frozenset(
    {"id", "name", "description", "agent", "depends_on", "config", "inputs", "outputs"}
)
_AGENT_INPUT = frozenset(
    {
        "name",
        "type",
        "description",
        "required",
        "default",
        "from_task",
        "field",
        "sources",
        "source",
    }
)
_INPUT_TYPES = {
    "file_list": "array",
    "list": "array",
    "array": "array",
    "string": "string",
    "str": "string",
    "text": "string",
    "numeric": "number",
    "number": "number",
    "float": "number",
    "integer": "integer",
    "int": "integer",
    "boolean": "boolean",
    "bool": "boolean",
    "object": "object",
    "structured_data": "object",
}
_LIFECYCLE = ("triggers", "routing", "error_handling", "success_criteria")


class _AgentPlatform:
    """Reference 004: a ``workflow:`` mapping whose tasks name an ``agent``."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.source = data
        self.wf: dict[str, Any] = data["workflow"]
        self.out = Conversion(
            "agent_platform",
            {},
            node_prefix=("workflow", "tasks"),
            node_fields={
                "handler": ("agent",),
                "dependencies": ("depends_on",),
                "timeout": ("config", "timeout"),
                "priority": ("config", "priority"),
            },
            workflow_fields={
                (): ("workflow",),
                ("name",): ("workflow", "name"),
                ("timeout",): ("workflow", "config", "timeout"),
                ("defaults",): ("workflow", "config", "max_retries"),
                ("concurrency",): ("workflow", "config", "parallel_execution"),
                ("dag",): ("workflow", "tasks"),
                ("dag", "nodes"): ("workflow", "tasks"),
                ("metadata",): ("workflow",),
            },
        )

    def convert(self) -> Conversion:
        out, wf = self.out, self.wf
        _unknown_keys(out, self.source, _AGENT_TOP, ())
        _unknown_keys(out, wf, _AGENT_WORKFLOW, ("workflow",), field_prefix="workflow.")
        data = out.data
        if "name" in wf:
            data["name"] = wf["name"]
        elif "id" in wf:
            data["name"] = wf["id"]
            out.workflow_fields[("name",)] = ("workflow", "id")
        metadata: dict[str, Any] = {}
        if "id" in wf:
            metadata["id"] = wf["id"]
        for key in ("description", "version"):
            if key in wf:
                data[key] = wf[key]
        self._workflow_config(metadata)
        for key in _LIFECYCLE:
            if key in wf:
                data[key] = wf[key] if wf[key] is not None else []
        if metadata:
            data["metadata"] = metadata
        tasks = wf.get("tasks")
        nodes: Any = tasks
        inputs: dict[str, Any] = {}
        if isinstance(tasks, list):
            ids = {_task_id(task, i) for i, task in enumerate(tasks)} - {None}
            nodes = [self._task(task, i, ids, inputs) for i, task in enumerate(tasks)]
        if inputs:
            data["inputs"] = inputs
        data["dag"] = {"nodes": nodes}
        return out

    def _workflow_config(self, metadata: dict[str, Any]) -> None:
        config = self.wf.get("config")
        if config is None:
            return
        out, data = self.out, self.out.data
        where: SourcePath = ("workflow", "config")
        if not isinstance(config, dict):
            out.issue("workflow.config must be a mapping", where, field_="workflow.config")
            return
        _unknown_keys(out, config, _AGENT_CONFIG, where, field_prefix="workflow.config.")
        if "timeout" in config:
            data["timeout"] = config["timeout"]
        retries = config.get("max_retries")
        if retries is not None:
            if isinstance(retries, int) and not isinstance(retries, bool) and retries >= 0:
                # max_retries counts retries; our max_attempts counts the first attempt too.
                data["defaults"] = {"retry": {"max_attempts": retries + 1}}
            else:
                out.issue(
                    f"max_retries must be a whole number >= 0, got {retries!r}",
                    (*where, "max_retries"),
                    field_="workflow.config.max_retries",
                )
        for key in ("parallel_execution", "audit_enabled"):
            if key in config:
                metadata[key] = config[key]
        if config.get("parallel_execution") is False:
            data["concurrency"] = 1

    def _task(self, task: Any, index: int, ids: set[str | None], inputs: dict[str, Any]) -> Any:
        if not isinstance(task, dict):
            return task
        out = self.out
        node_id = _task_id(task, index)
        where: SourcePath = ("workflow", "tasks", index)
        _unknown_keys(out, task, _AGENT_TASK, where, node=node_id)
        node: dict[str, Any] = {}
        for key in ("id", "name", "description"):
            if key in task:
                node[key] = task[key]
        if "agent" in task:
            node["handler"] = task["agent"]
        depends_on = task.get("depends_on")
        node["dependencies"] = depends_on if depends_on is not None else []
        config: dict[str, Any] = {}
        raw_config = task.get("config")
        if isinstance(raw_config, dict):
            for key, value in raw_config.items():
                if key in ("timeout", "priority"):
                    node[key] = value
                else:
                    config[key] = value
        elif raw_config is not None:
            node["config"] = raw_config  # the model reports the type error
        if "inputs" in task:
            if "inputs" in config:
                out.issue(
                    "config.inputs clashes with the task's inputs list",
                    (*where, "config", "inputs"),
                    node=node_id,
                    field_="config.inputs",
                )
            config["inputs"] = self._inputs(task["inputs"], index, node_id, depends_on, ids, inputs)
        if "outputs" in task:
            if "outputs" in config:
                out.issue(
                    "config.outputs clashes with the task's outputs list",
                    (*where, "config", "outputs"),
                    node=node_id,
                    field_="config.outputs",
                )
            config["outputs"] = task["outputs"]
            out.node_extras[(index, ("config", "outputs"))] = (*where, "outputs")
        if "config" not in node:
            node["config"] = config
        return node

    def _inputs(
        self,
        declared: Any,
        index: int,
        node_id: str | None,
        depends_on: Any,
        ids: set[str | None],
        params: dict[str, Any],
    ) -> dict[str, Any]:
        out = self.out
        where: SourcePath = ("workflow", "tasks", index, "inputs")
        if not isinstance(declared, list):
            out.issue("inputs must be a list", where, node=node_id, field_="inputs")
            return {}
        deps = set(depends_on) if isinstance(depends_on, list) else set()
        resolved: dict[str, Any] = {}
        for j, entry in enumerate(declared):
            at: SourcePath = (*where, j)
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                out.issue("each input needs a `name`", at, node=node_id, field_=f"inputs[{j}]")
                continue
            _unknown_keys(out, entry, _AGENT_INPUT, at, node=node_id, field_prefix=f"inputs[{j}].")
            name = entry["name"]
            out.node_extras[(index, ("config", "inputs", name))] = at
            if "from_task" in entry:
                value = self._from_task(entry, at, j, node_id, deps, ids)
            elif "sources" in entry:
                value = self._sources(entry, at, j, node_id, deps, ids)
            elif "source" in entry:
                # An external source the agent itself reads: kept as declared.
                value = {k: v for k, v in entry.items() if k != "name"}
            else:
                value = "{{ input" + _attr(name) + " }}"
                self._declare_param(entry, params, at)
            resolved[name] = value
        return resolved

    def _from_task(
        self,
        entry: dict[str, Any],
        at: SourcePath,
        j: int,
        node_id: str | None,
        deps: set[Any],
        ids: set[str | None],
    ) -> Any:
        source = entry["from_task"]
        where = (*at, "from_task")
        if not self._upstream(source, where, f"inputs[{j}].from_task", node_id, deps, ids):
            # Kept as declared: the definition is rejected anyway, and a template here
            # would only repeat the same problem as a template error.
            return {k: v for k, v in entry.items() if k != "name"}
        path = str(entry["field"]) if entry.get("field") is not None else ""
        return "{{ " + node_expression(source, path) + " }}"

    def _sources(
        self,
        entry: dict[str, Any],
        at: SourcePath,
        j: int,
        node_id: str | None,
        deps: set[Any],
        ids: set[str | None],
    ) -> Any:
        sources = entry["sources"]
        if not isinstance(sources, list):
            self.out.issue(
                "sources must be a list of task ids",
                (*at, "sources"),
                node=node_id,
                field_=f"inputs[{j}].sources",
            )
            return {}
        ok = True
        for k, source in enumerate(sources):
            where = (*at, "sources", k)
            ok &= self._upstream(source, where, f"inputs[{j}].sources[{k}]", node_id, deps, ids)
        if not ok:
            return {k: v for k, v in entry.items() if k != "name"}
        return {str(source): "{{ " + node_expression(source) + " }}" for source in sources}

    def _upstream(
        self,
        source: Any,
        at: SourcePath,
        field_: str,
        node_id: str | None,
        deps: set[Any],
        ids: set[str | None],
    ) -> bool:
        """Whether ``source`` is a task this task declares in ``depends_on``; else an issue."""
        if not isinstance(source, str):
            self.out.issue("a task id must be a string", at, node=node_id, field_=field_)
            return False
        if source not in ids:
            self.out.issue(
                f"input reads from unknown task '{source}'",
                at,
                node=node_id,
                field_=field_,
                code="unknown_task",
            )
            return False
        if source not in deps:
            self.out.issue(
                f"input reads from task '{source}', which is not in depends_on",
                at,
                node=node_id,
                field_=field_,
                code="not_a_dependency",
            )
            return False
        return True

    def _declare_param(self, entry: dict[str, Any], params: dict[str, Any], at: SourcePath) -> None:
        name = entry["name"]
        raw_type = entry.get("type")
        param_type = _INPUT_TYPES.get(str(raw_type).lower(), "any") if raw_type else "any"
        existing = params.get(name)
        if existing is None:
            param: dict[str, Any] = {"type": param_type}
            if "required" in entry:
                param["required"] = entry["required"]
            if "default" in entry:
                param["default"] = entry["default"]
            if "description" in entry:
                param["description"] = entry["description"]
            params[name] = param
            self.out.workflow_fields[("inputs", name)] = at
        elif entry.get("required") is True:
            # Declared by several tasks: required if any of them requires it.
            existing["required"] = True


def _attr(name: str) -> str:
    return f".{name}" if _IDENTIFIER.match(name) else f"[{name!r}]"
