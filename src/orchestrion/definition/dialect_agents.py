"""Reference 004's format: ``{workflow: {id, name, version, config, triggers, tasks: [{id,
agent, depends_on, config, inputs, outputs}], routing, error_handling, success_criteria}}``,
converted to the canonical dict.
"""

from __future__ import annotations

from typing import Any

from orchestrion.definition.conversion import Conversion, SourcePath, attr, task_id_of, unknown_keys
from orchestrion.templates.rendering import node_expression

__all__ = ["AgentPlatform"]


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


class AgentPlatform:
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
        unknown_keys(out, self.source, _AGENT_TOP, ())
        unknown_keys(out, wf, _AGENT_WORKFLOW, ("workflow",), field_prefix="workflow.")
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
            ids = {task_id_of(task, i) for i, task in enumerate(tasks)} - {None}
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
        unknown_keys(out, config, _AGENT_CONFIG, where, field_prefix="workflow.config.")
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
        node_id = task_id_of(task, index)
        where: SourcePath = ("workflow", "tasks", index)
        unknown_keys(out, task, _AGENT_TASK, where, node=node_id)
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
            unknown_keys(out, entry, _AGENT_INPUT, at, node=node_id, field_prefix=f"inputs[{j}].")
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
                value = "{{ input" + attr(name) + " }}"
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
