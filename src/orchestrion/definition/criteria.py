"""Success criteria read statically: what each condition names, and the checks made at load.

A condition is ``all_tasks_completed`` (alias ``all_nodes_completed``: every node ended
``completed``) or an expression in the language of ``when:`` (bare, or one ``{{ }}``) whose
names are read at the end of the run:

* ``task.<id>.outputs.<field>`` (or ``task['a-b'].outputs``): a node's output;
* ``workflow.duration``: seconds since the execution started;
* ``<id>.output...``, ``nodes['a-b'].output``, ``input.<param>``: as in templates;
* any other name is a *bare output field* (``compliance_score``, ``no_critical_gaps``), found
  by this rule: the task that declares it in its ``outputs:`` list (``workflow:`` format);
  else the workflow's one ``output`` node, when its output has that field; else the one node
  whose output has it.

At load, a field declared by several tasks, an unknown task id, ``<name>.output`` of a name
that is no node, a ``workflow.`` attribute other than ``duration``, a template error, or a use
of ``secrets`` is a definition error. A field declared by no task is looked for when the run
ends; not found there, or found in several outputs, the criterion fails with that reason, as
does one that names a task that did not complete.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from orchestrion.definition.model import DataClassification, WorkflowSpec
from orchestrion.templates.rendering import RESERVED_NAMES, expression_source, template_info

__all__ = [
    "ALL_TASKS_COMPLETED",
    "CriterionPlan",
    "bare_fields",
    "compile_criteria",
    "criteria_issues",
    "declared_outputs",
    "task_ids",
    "workflow_attributes",
]

ALL_TASKS_COMPLETED = frozenset({"all_tasks_completed", "all_nodes_completed"})
"""The built-in criterion: every node of the workflow ended ``completed``."""

TASK = "task"
WORKFLOW = "workflow"
WORKFLOW_FIELDS = frozenset({"duration"})
# Names the sandbox defines itself: never output fields.
_JINJA_GLOBALS = frozenset({"range", "dict", "lipsum", "cycler", "joiner", "namespace", "loop"})
_TASK_IDS = re.compile(r"\btask\s*(?:\.\s*([A-Za-z_][A-Za-z0-9_]*)|\[\s*['\"]([^'\"]+)['\"]\s*\])")
_WORKFLOW_ATTRS = re.compile(r"\bworkflow\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)")
_CLASSIFIED = frozenset({DataClassification.PII, DataClassification.PHI})

Issue = tuple[str, tuple[str | int, ...], str]
"""(message, path in the canonical workflow, code)."""


@dataclass(frozen=True, slots=True)
class CriterionPlan:
    """One criterion as the end of a run evaluates it.

    ``source``: the template source of an expression (None for the built-in); ``fields``:
    its bare output fields, ``bound`` those a task declares (field -> node id); ``tasks``: the
    node ids it names (``task.<id>``, ``<id>.output``, ``nodes['<id>']``); ``reads``: the node
    ids whose outputs it may read, and ``classified`` whether one of them is ``pii``/``phi``
    (its values are then never shown).
    """

    condition: str
    required: bool
    source: str | None
    fields: tuple[str, ...] = ()
    bound: dict[str, str] = field(default_factory=dict)
    tasks: tuple[str, ...] = ()
    reads: frozenset[str] = frozenset()
    classified: bool = False

    @property
    def builtin(self) -> bool:
        return self.source is None


def declared_outputs(spec: WorkflowSpec) -> dict[str, list[str]]:
    """Output field -> the ids of the nodes that declare it (``config.outputs`` names)."""
    found: dict[str, list[str]] = {}
    for node in spec.dag.nodes:
        outputs = node.config.get("outputs")
        if not isinstance(outputs, list):
            continue
        for item in outputs:
            name = item.get("name") if isinstance(item, dict) else item
            if isinstance(name, str) and node.id not in found.setdefault(name, []):
                found[name].append(node.id)
    return found


def task_ids(condition: str) -> Iterator[str]:
    """The ids ``condition`` names as ``task.<id>`` or ``task['<id>']``, in order."""
    for match in _TASK_IDS.finditer(condition):
        yield match.group(1) or match.group(2)


def workflow_attributes(condition: str) -> list[str]:
    """The attributes ``condition`` reads as ``workflow.<name>``."""
    return _WORKFLOW_ATTRS.findall(condition)


def bare_fields(names: frozenset[str], ids: set[str]) -> set[str]:
    """Of the template ``names``, those that are neither node ids nor reserved: output fields."""
    return _bare_fields(names, ids)


def compile_criteria(spec: WorkflowSpec) -> tuple[CriterionPlan, ...]:
    """The criteria of a validated ``spec``, ready to evaluate."""
    if not spec.success_criteria:
        return ()
    ids = {node.id for node in spec.dag.nodes}
    classified = {n.id for n in spec.dag.nodes if n.data_classification in _CLASSIFIED}
    declared = declared_outputs(spec)
    plans: list[CriterionPlan] = []
    for criterion in spec.success_criteria:
        condition = criterion.condition
        if condition in ALL_TASKS_COMPLETED:
            plans.append(CriterionPlan(condition, criterion.required, None))
            continue
        source = expression_source(condition)
        info = template_info(source)
        fields = tuple(sorted(_bare_fields(info.names, ids)))
        bound = {f: declared[f][0] for f in fields if len(declared.get(f, ())) == 1}
        # Every node it reads by id (``task.<id>``, ``<id>.output``, ``nodes['<id>']``): one
        # that did not complete fails the criterion with that reason, not a template error.
        named = [*task_ids(condition), *sorted(info.names & ids), *sorted(info.node_keys)]
        tasks = tuple(dict.fromkeys(task for task in named if task in ids))
        reads: set[str] = set(info.names & ids) | set(info.node_keys) | set(bound.values())
        reads |= set(tasks)
        # Unbound fields and computed `nodes[...]` keys may read any node.
        anywhere = info.dynamic_nodes or len(bound) < len(fields)
        plans.append(
            CriterionPlan(
                condition,
                criterion.required,
                source,
                fields,
                bound,
                tasks,
                frozenset(ids if anywhere else reads),
                bool(classified & (ids if anywhere else reads)),
            )
        )
    return tuple(plans)


def _bare_fields(names: frozenset[str], ids: set[str]) -> set[str]:
    special = RESERVED_NAMES | _JINJA_GLOBALS | {TASK, WORKFLOW}
    return {name for name in names if name not in ids and name not in special}


def criteria_issues(spec: WorkflowSpec) -> list[Issue]:
    """What is wrong with the criteria of ``spec`` that can be known before it runs."""
    issues: list[Issue] = []
    if not spec.success_criteria:
        return issues
    ids = {node.id for node in spec.dag.nodes}
    declared = declared_outputs(spec)
    for i, criterion in enumerate(spec.success_criteria):
        where: tuple[str | int, ...] = ("success_criteria", i, "condition")
        condition = criterion.condition
        if condition in ALL_TASKS_COMPLETED:
            continue
        info = template_info(expression_source(condition))
        if info.error is not None:
            issues.append((f"success criterion '{condition}': {info.error}", where, "template"))
            continue
        if "secrets" in info.names:
            issues.append(
                (f"success criterion '{condition}' may not read secrets", where, "secret_use")
            )
        for task in task_ids(condition):
            if task not in ids:
                issues.append(
                    (
                        f"success criterion '{condition}' names unknown task '{task}'",
                        where,
                        "unknown_task",
                    )
                )
        for attr in _WORKFLOW_ATTRS.findall(condition):
            if attr not in WORKFLOW_FIELDS:
                issues.append(
                    (
                        f"success criterion '{condition}': workflow.{attr} is not known "
                        f"(known: {', '.join(sorted(WORKFLOW_FIELDS))})",
                        where,
                        "unknown_name",
                    )
                )
        for name in sorted(_bare_fields(info.names, ids)):
            if re.search(rf"\b{re.escape(name)}\s*\.\s*output\b", condition):
                issues.append(
                    (
                        f"success criterion '{condition}' reads the output of unknown node "
                        f"'{name}'",
                        where,
                        "unknown_node",
                    )
                )
                continue
            owners = declared.get(name, [])
            if len(owners) > 1:
                options = " or ".join(f"task.{owner}.outputs.{name}" for owner in owners)
                issues.append(
                    (
                        f"success criterion '{condition}': output '{name}' is declared by "
                        f"several tasks ({', '.join(owners)}); write {options}",
                        where,
                        "ambiguous_output",
                    )
                )
    return issues
