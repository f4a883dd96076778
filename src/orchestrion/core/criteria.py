"""How one success criterion of an execution ended, as the machine journals it and callers
read it back (the rules that decide it are in ``engine/criteria.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from orchestrion.core.record_types import RecordType

__all__ = ["CRITERIA_EVENT_TYPES", "CriterionResult"]


CRITERIA_EVENT_TYPES = [RecordType.EXECUTION_CRITERIA.value, RecordType.EXECUTION_RETRIED.value]
"""The journal events ``CriterionResult.latest`` reads: evaluations, and retries that void them."""


@dataclass(frozen=True, slots=True)
class CriterionResult:
    """One success criterion: ``passed`` (None until evaluated), what it evaluated to, why."""

    condition: str
    required: bool = True
    passed: bool | None = None
    value: Any = None
    detail: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "condition": self.condition,
            "required": self.required,
            "passed": self.passed,
            "value": self.value,
            "detail": self.detail,
        }

    @classmethod
    def latest(
        cls, declared: Sequence[tuple[str, bool]], events: Sequence[Any]
    ) -> tuple[CriterionResult, ...]:
        """The ``declared`` (condition, required) criteria as the last evaluation among
        ``events`` (journal events of ``CRITERIA_EVENT_TYPES``, oldest first) left them; not
        evaluated when there is none, or a retry came after it."""
        outcomes: list[Any] = []
        if events and events[-1].type == RecordType.EXECUTION_CRITERIA:
            data = events[-1].data
            found = data.get("criteria") if isinstance(data, dict) else None
            outcomes = found if isinstance(found, list) else []
        results = []
        for i, (condition, required) in enumerate(declared):
            got = outcomes[i] if i < len(outcomes) and isinstance(outcomes[i], dict) else None
            if got is None or got.get("condition") != condition:
                results.append(cls(condition, required))  # not evaluated (or another version)
            else:
                results.append(cls.from_dict(got))
        return tuple(results)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CriterionResult:
        """Read back what ``to_dict`` wrote (the journal, the API)."""
        passed, detail = data.get("passed"), data.get("detail")
        return cls(
            condition=str(data.get("condition") or ""),
            required=bool(data.get("required", True)),
            passed=None if passed is None else bool(passed),
            value=data.get("value"),
            detail=None if detail is None else str(detail),
        )
