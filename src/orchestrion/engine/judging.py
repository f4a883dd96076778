"""The engine's side of success criteria: evaluate them when the machine asks, answer it.

The machine asks with ``JudgeCriteria`` when every node is final and none failed
(``core/settlement.py``); the answer is ``CriteriaJudged``, which the machine journals and
turns into the execution's end. Light conditions (``templates/weight.py``) are evaluated in
the same turn, so the end costs no extra commit; others in a render thread, the answer posted
to the loop like a worker's. Embedded and scale-out engines run this same loop, so both judge
the same way; an answer lost with its process is asked again by recovery.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from orchestrion.core.criteria import CriterionResult
from orchestrion.core.events import CriteriaJudged, Event, JudgeCriteria
from orchestrion.definition.criteria import CriterionPlan
from orchestrion.engine.criteria import CriteriaFacts, evaluate, renders_off_loop, unevaluated
from orchestrion.engine.live import LiveExecution
from orchestrion.templates.rendering import TemplateLimits
from orchestrion.templates.threads import off_loop

__all__ = ["CriteriaJudge"]

logger = logging.getLogger(__name__)


class CriteriaJudge:
    """Answers ``JudgeCriteria`` for one engine loop; ``limits`` gives the template limits."""

    def __init__(
        self, limits: Callable[[], TemplateLimits], post: Callable[[str, Event], None]
    ) -> None:
        self._limits = limits
        self._post = post
        self._tasks: set[asyncio.Task[None]] = set()

    def now(self, live: LiveExecution, command: JudgeCriteria) -> CriteriaJudged | None:
        """The answer, when every condition is light; None: ``later`` must answer."""
        plans = live.compiled.criteria
        if renders_off_loop(plans):
            return None
        outcomes = self._evaluate(plans, _facts(live, command), live.record.id)
        return CriteriaJudged(command.at, outcomes, command.round)

    def later(self, live: LiveExecution, command: JudgeCriteria) -> None:
        """Evaluate in a render thread, then post the answer to the loop."""
        task = asyncio.create_task(self._judge(live, command))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _judge(self, live: LiveExecution, command: JudgeCriteria) -> None:
        facts = _facts(live, command)  # read on the loop: the thread sees a copy
        execution_id = live.record.id
        outcomes = await off_loop(self._evaluate, live.compiled.criteria, facts, execution_id)
        self._post(execution_id, CriteriaJudged(time.time(), outcomes, command.round))

    def _evaluate(
        self, plans: tuple[CriterionPlan, ...], facts: CriteriaFacts, execution_id: str
    ) -> tuple[CriterionResult, ...]:
        try:
            return evaluate(plans, facts, self._limits())
        except Exception:  # the machine must get an answer, or the execution never ends
            logger.exception("evaluating the success criteria of %s failed", execution_id)
            return unevaluated(plans, "the criteria could not be evaluated; see the log")


def _facts(live: LiveExecution, command: JudgeCriteria) -> CriteriaFacts:
    record, compiled = live.record, live.compiled
    started = record.started_at
    return CriteriaFacts(
        inputs=dict(record.inputs),
        outputs=dict(live.outputs),
        result_node=compiled.output_nodes[0] if len(compiled.output_nodes) == 1 else None,
        incomplete=command.incomplete,
        duration=None if started is None else max(0.0, command.at - started),
    )
