"""Runs one node attempt: condition, templates, config schema, handler, timeout, classification.

The executor is what a worker is, whether it lives in the engine's process (embedded) or in a
worker process (scale-out). It turns everything that can happen into one state-machine event
and never lets an exception escape, except cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
import traceback
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from orchestrion.core.events import (
    CompensationFailed,
    CompensationSucceeded,
    ErrorInfo,
    Event,
    NodeFailed,
    NodeSkipped,
    NodeStarted,
    NodeSucceeded,
    NodeWaiting,
)
from orchestrion.core.reasons import SkipReason, WaitReason
from orchestrion.core.task_kinds import TaskKind
from orchestrion.definition.secret_flow import node_issues, secrets_sent
from orchestrion.dispatch.base import EventSink, TaskMessage
from orchestrion.errors import HandlerNotFound, NodeError, PolicyViolation
from orchestrion.execution.enforce import attempt_resources
from orchestrion.governance.secret_routes import Routing, sending
from orchestrion.governance.secret_scrub import Scrubber
from orchestrion.governance.trust import Trust
from orchestrion.handlers.base import LATER, HandlerSpec, NodeContext, Resources, Wait
from orchestrion.handlers.config_context import validation_context
from orchestrion.handlers.registry import HandlerRegistry
from orchestrion.logcontext import node_fields
from orchestrion.templates.rendering import (
    build_context,
    evaluate_condition,
    render_value,
    template_limits,
)
from orchestrion.templates.threads import off_loop
from orchestrion.templates.weight import renders_off_loop

if TYPE_CHECKING:
    # Not at run time: the breakers' module brings prometheus_client, which an embedded
    # engine without circuit breakers need not load.
    from orchestrion.execution.circuit import CircuitOpen, SharedCircuits

__all__ = ["NodeExecutor"]

logger = logging.getLogger(__name__)

_MAX_TRACEBACK = 4000

# An attempt up to its handler: the spec, its rendered config, its context, and the output of
# its ``run_now`` when that ran already (else ``LATER``).
_Begun = tuple[HandlerSpec, Any, NodeContext, Any]


class NodeExecutor:
    """Executes ``TaskMessage``s against a handler registry and reports events to a sink."""

    def __init__(
        self,
        registry: HandlerRegistry,
        resources: Resources,
        secrets: Mapping[str, str] | None = None,
        *,
        circuits: SharedCircuits | None = None,
    ) -> None:
        if not isinstance(resources, Resources):
            raise TypeError(f"NodeExecutor needs the process's Resources, got {resources!r}")
        self.registry = registry
        self.resources = resources
        self.circuits = circuits
        self.secrets = dict(secrets or {})
        self._scrubber = Scrubber(self.secrets.values())
        if self._scrubber:
            from orchestrion.governance.secret_logs import hide_in_logs

            hide_in_logs(self.secrets.values())
        self._provider_keys()  # hidden in logs from the start (httpcore logs headers)

    async def execute(self, task: TaskMessage, emit: EventSink) -> None:
        """Run ``task``; report NodeStarted and then exactly one outcome event to ``emit``."""
        node_fields.set(_log_fields(task))
        # The governance policy's template limits hold for every render of this attempt
        # (config, condition, and what handlers such as condition and map render).
        with template_limits(self.resources.controls.template_limits):
            await self._attempt(task, emit)

    async def _attempt(self, task: TaskMessage, emit: EventSink) -> None:
        if task.kind == TaskKind.COMPENSATE:
            emit(task.execution_id, await self._compensate(task))
            return
        emit(task.execution_id, NodeStarted(task.node_id, task.attempt, time.time()))
        emit(task.execution_id, await self._run(task))

    async def _run(self, task: TaskMessage) -> Event:
        node, attempt = task.node_id, task.attempt
        try:
            if self._renders_off_loop(task):
                # Rendering may run up to the template time limit: in a thread, so that the
                # event loop goes on (the thread gets the attempt's context: template limits
                # and log fields). A ``run_now`` handler (a condition and its cases) finishes
                # there too: it has no effect outside the engine.
                begun = await off_loop(self._begin, task, True)
            else:
                begun = self._begin(task, False)
            if begun is None:
                return NodeSkipped(node, attempt, time.time(), SkipReason.CONDITION_FALSE)
            spec, config, ctx, output = begun
            if output is LATER:
                output = await self._call(task, spec, config, ctx)
            elif not isinstance(output, Wait):
                _check_serialisable(node, output)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            return NodeFailed(node, attempt, time.time(), self._classify(task, exc))
        return self._outcome(task, output)

    def _begin(self, task: TaskMessage, finish: bool) -> _Begun | None:
        """The attempt up to its handler: ``when:`` (None when it is false), the rendered
        config, and with ``finish`` the output of the handler's ``run_now`` (else ``LATER``)."""
        context = self._context(task)
        if task.kind == TaskKind.RUN and task.when and not evaluate_condition(task.when, context):
            return None
        spec = self.registry.get(task.handler)
        config, ctx = self._prepare(task, spec, context)
        output = spec.run_now(ctx, config) if finish and spec.run_now is not None else LATER
        return spec, config, ctx, output

    def _renders_off_loop(self, task: TaskMessage) -> bool:
        """Whether the attempt renders a template that is not light (``template_weight``)."""
        when = task.when if task.kind == TaskKind.RUN else None
        return renders_off_loop(task.handler, task.config, when, self._canonical)

    def has_run_now(self, handler: str) -> bool:
        """Whether ``handler``'s attempts may be run by ``run_now`` (it has a ``run_now``)."""
        try:
            return self.registry.get(handler).run_now is not None
        except HandlerNotFound:
            return False

    def run_now(self, task: TaskMessage, emit: EventSink) -> bool:
        """Run ``task`` to its end here and now if its handler has nothing to wait for.

        True when it ran (NodeStarted and its outcome are reported to ``emit`` before this
        returns); False, having done nothing, when the handler has no ``run_now`` or it
        answered ``LATER``: the attempt is then for ``execute``. Nothing here awaits, so no
        timeout can run out and no circuit breaker guards it (such handlers have no
        downstream).
        """
        if task.kind != TaskKind.RUN:
            return False
        try:
            spec = self.registry.get(task.handler)
        except HandlerNotFound:
            return False  # ``execute`` reports it, as a failed attempt
        if spec.run_now is None or self._renders_off_loop(task):
            return False  # not in the caller's turn: ``execute`` renders in a thread
        node, attempt = task.node_id, task.attempt
        started = time.time()
        fields = node_fields.set(_log_fields(task))
        try:
            with template_limits(self.resources.controls.template_limits):
                outcome = self._now(task, spec)
        finally:
            node_fields.reset(fields)  # the caller's log context is its own again
        if outcome is None:
            return False
        emit(task.execution_id, NodeStarted(node, attempt, started))
        emit(task.execution_id, outcome)
        return True

    def _now(self, task: TaskMessage, spec: HandlerSpec) -> Event | None:
        node, attempt = task.node_id, task.attempt
        run_now = spec.run_now
        assert run_now is not None  # run_now checked it
        try:
            context = self._context(task)
            if task.when and not evaluate_condition(task.when, context):
                return NodeSkipped(node, attempt, time.time(), SkipReason.CONDITION_FALSE)
            config, ctx = self._prepare(task, spec, context)
            output = run_now(ctx, config)
            if output is LATER:
                return None
            if not isinstance(output, Wait):
                _check_serialisable(node, output)
        except Exception as exc:  # not BaseException: this runs in the engine's own loop
            return NodeFailed(node, attempt, time.time(), self._classify(task, exc))
        return self._outcome(task, output)

    def _outcome(self, task: TaskMessage, output: Any) -> Event:
        if isinstance(output, Wait):
            return NodeWaiting(
                task.node_id, task.attempt, time.time(), output.reason, output.wake_at, output.data
            )
        return NodeSucceeded(task.node_id, task.attempt, time.time(), self._scrub(task, output))

    async def _compensate(self, task: TaskMessage) -> Event:
        try:
            if self._renders_off_loop(task):
                begun = await off_loop(self._begin, task, False)
            else:
                begun = self._begin(task, False)
            assert begun is not None  # a compensation has no condition
            spec, config, ctx, _ = begun
            output = await self._call(task, spec, config, ctx)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            return CompensationFailed(task.node_id, time.time(), self._classify(task, exc))
        return CompensationSucceeded(task.node_id, time.time(), self._scrub(task, output))

    def _context(self, task: TaskMessage) -> dict[str, Any]:
        if self.secrets:
            self._check_secret_flow(task)
        return build_context(
            task.inputs,
            task.outputs,
            secrets=self.secrets,
            execution={"id": task.execution_id, "attempt": task.attempt, "node": task.node_id},
        )

    def _routing(self, task: TaskMessage) -> Routing:
        """The process's routing, at the stricter of its trust and the attempt's."""
        routing = self.resources.controls.routing
        return routing if Trust.of(task.trust).trusted else routing.with_trust(False)

    def _check_secret_flow(self, task: TaskMessage) -> None:
        """Refuse, before anything renders, a secret outside the request fields (overrides
        and definitions stored under another policy included: ``definition/secret_flow.py``)."""
        try:
            handler: str | None = self.registry.canonical_name(task.handler)
        except HandlerNotFound:
            handler = None
        issues = node_issues(
            handler,
            task.config,
            self._routing(task),
            when=task.when if task.kind == TaskKind.RUN else None,
            path=("config",) if task.kind == TaskKind.RUN else ("compensate", "config"),
            canonical=self._canonical,
        )
        if issues:
            first = issues[0]
            where = ".".join(str(p) for p in first.path)
            raise PolicyViolation(f"{where}: {first.message}")

    def _canonical(self, name: Any) -> str | None:
        try:
            return self.registry.canonical_name(name) if isinstance(name, str) else None
        except HandlerNotFound:
            return None

    def _prepare(
        self, task: TaskMessage, spec: HandlerSpec, context: dict[str, Any]
    ) -> tuple[Any, NodeContext]:
        """The handler's config (rendered, then validated) and the context it is given."""
        raw = task.config
        if spec.raw_keys:
            rendered = {
                key: value if key in spec.raw_keys else render_value(value, context)
                for key, value in raw.items()
            }
        else:
            rendered = render_value(raw, context)
        # The stricter of this process's trust and the execution's, for this attempt only.
        resources = attempt_resources(self.resources, task.trust)
        config = (
            spec.config_model.model_validate(
                rendered, context=validation_context(resources.controls)
            )
            if spec.config_model
            else rendered
        )
        ctx = NodeContext(
            execution_id=task.execution_id,
            node_id=task.node_id,
            attempt=task.attempt,
            idempotency_key=task.idempotency_key,
            inputs=task.inputs,
            outputs=task.outputs,
            dependencies=task.dependencies,
            handler=spec.name,
            resources=resources,
            deadline=time.time() + task.timeout if task.timeout else None,
            classification=task.classification,
            wait_result=task.wait_result,
        )
        return config, ctx

    async def _call(
        self, task: TaskMessage, spec: HandlerSpec, config: Any, ctx: NodeContext
    ) -> Any:
        # Scale-out workers put circuit breakers here; embedded mode pays this one lookup.
        breakers = self.circuits
        if breakers is not None:
            from orchestrion.execution.circuit import target_host

            fields = config.__dict__ if isinstance(config, BaseModel) else config
            target = target_host(spec.name, fields if isinstance(fields, dict) else {})
            # Only calls to a downstream host are guarded: a handler without one (noop,
            # python) has no downstream to protect and would pay two round trips for nothing.
            if target is None:
                breakers = None
            else:
                waiting = await _circuit_before(breakers, spec.name, target, task)
                if waiting is not None:
                    return waiting
        # The http handler checks where the secrets its request carries may go, at each hop.
        carried = secrets_sent(spec.name, task.config) if self.secrets else frozenset()
        try:
            with sending(carried, self._routing(task)):
                if task.timeout:
                    try:
                        async with asyncio.timeout(task.timeout):
                            output = await spec.run(ctx, config)
                    except TimeoutError as exc:
                        raise _NodeTimeout(task.timeout) from exc
                else:
                    output = await spec.run(ctx, config)
        except BaseException as exc:
            # Cancellation is ours, not the downstream's: not recorded (a probe cut short is
            # presumed lost after the probe timeout).
            if breakers is not None and not isinstance(exc, asyncio.CancelledError):
                await _circuit_after(breakers, spec.name, target, not _retryable(exc))
            raise
        if breakers is not None:
            await _circuit_after(breakers, spec.name, target, True)
        if not isinstance(output, Wait):
            _check_serialisable(task.node_id, output)
        return output

    def _classify(self, task: TaskMessage, exc: BaseException) -> ErrorInfo:
        kind = type(exc).__name__
        if isinstance(exc, _NodeTimeout):
            return ErrorInfo("timeout", str(exc), transient=True, type="TimeoutError")
        if isinstance(exc, NodeError):
            return ErrorInfo(exc.category, self._scrub_text(task, str(exc)), exc.transient, kind)
        if isinstance(exc, ValidationError):
            violations = [e["msg"] for e in exc.errors() if e["type"] == "policy_violation"]
            if violations:
                message = self._scrub_text(task, "; ".join(violations))
                return ErrorInfo("policy_violation", message, type="PolicyViolation")
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}"
                for err in exc.errors()
            )
            message = f"invalid config for handler '{task.handler}': {problems}"
            return ErrorInfo("config", self._scrub_text(task, message))
        if isinstance(exc, HandlerNotFound):
            return ErrorInfo("config", str(exc))
        tb = "".join(traceback.format_exception(exc))[-_MAX_TRACEBACK:]
        logger.debug("node %s attempt %s raised %s", task.node_id, task.attempt, kind)
        return ErrorInfo(
            "error",
            self._scrub_text(task, f"{kind}: {exc}"),
            transient=True,
            type=kind,
            traceback=self._scrub_text(task, tb),
        )

    def _scrub(self, task: TaskMessage, output: Any) -> Any:
        """Replace secret values (and their common transforms) a downstream echoed back, so
        they never reach the store: a backstop, secrets being kept to request fields."""
        scrubber = self._scrubber_for(task)
        return scrubber.value(output) if scrubber is not None else output

    def _scrub_text(self, task: TaskMessage, text: str) -> str:
        scrubber = self._scrubber_for(task)
        return scrubber.text(text) if scrubber is not None else text

    def _scrubber_for(self, task: TaskMessage) -> Scrubber | None:
        """What to scrub from the attempt's output and error: the secrets when its config
        reads them; the llm providers' keys when it may call a provider (an echoing
        provider repeats the Authorization header it was sent)."""
        secrets = self._scrubber if self._scrubber and _mentions_secrets(task) else None
        if self._canonical(task.handler) not in _PROVIDER_HANDLERS:
            return secrets
        keys = self._provider_keys()
        if not keys:
            return secrets
        if secrets is None:
            return Scrubber(keys)
        return Scrubber([*self.secrets.values(), *keys])

    def _provider_keys(self) -> list[str]:
        """The keys of the configured llm providers (and ``OPENAI_API_KEY``), read from the
        environment now as the llm handler reads them at call time."""
        providers = self.resources.controls.routing.providers
        keys = [key for key in (p.key() for p in providers.every()) if key]
        if keys:
            from orchestrion.governance.secret_logs import hide_in_logs

            hide_in_logs(keys)
        return keys


def _retryable(exc: BaseException) -> bool:
    """Whether ``_classify`` calls ``exc`` transient: only those count against a circuit.

    A permanent error (a 4xx, a policy violation, bad data) is an answer from a downstream
    that works.
    """
    if isinstance(exc, NodeError):
        return exc.transient
    return not isinstance(exc, ValidationError | HandlerNotFound)


async def _circuit_before(
    breakers: SharedCircuits, handler: str, target: str | None, task: TaskMessage
) -> Wait | None:
    """None when the call may go through; a ``Wait`` for the circuit when it may not.

    Waiting for a circuit is not an attempt: the node waits (a durable timer, the same
    attempt) until the circuit lets a call through, instead of failing fast and spending its
    retries while the downstream recovers; within its timeout, counted from the first
    refusal: past it, the attempt fails with ``circuit_open`` (transient: its retry policy
    applies). A compensation fails fast."""
    from orchestrion.execution.circuit import CircuitOpen

    try:
        await breakers.before(handler, target)
    except CircuitOpen as exc:
        if task.kind != TaskKind.RUN:
            raise  # a transient failure with category circuit_open (see _classify)
        wait = circuit_wait(exc)
        if task.timeout and wait.wake_at is not None:
            since = await _waiting_since(breakers, task)
            if wait.wake_at - since > task.timeout:
                raise
        return wait
    except Exception as exc:
        # The breaker's store is down: fail open, as without breakers, rather than fail
        # every call for a reason that is not the downstream's.
        logger.warning(
            "circuit breaker of %s not consulted: %s: %s", handler, type(exc).__name__, exc
        )
        return None
    woken = task.wait_result if isinstance(task.wait_result, dict) else {}
    if woken.get("reason") == WaitReason.CIRCUIT:
        with contextlib.suppress(Exception):  # it expires on its own
            await breakers.done_waiting(task.idempotency_key)
    return None


async def _waiting_since(breakers: SharedCircuits, task: TaskMessage) -> float:
    now = time.time()
    try:
        return await breakers.waiting_since(task.idempotency_key, now)
    except Exception as exc:  # not recorded: this refusal counts as the first
        logger.warning("circuit wait of %s not recorded: %s", task.idempotency_key, exc)
        return now


async def _circuit_after(
    breakers: SharedCircuits, handler: str, target: str | None, ok: bool
) -> None:
    # The call has happened: failing to record it must not change its outcome (a success
    # turned into a failure would run the call again).
    try:
        await breakers.after(handler, target, ok)
    except Exception as exc:
        logger.warning(
            "circuit breaker of %s not updated: %s: %s", handler, type(exc).__name__, exc
        )


_PROBE_POLL_SECONDS = 1.0  # a half-open circuit's probe may end any moment: look again soon


def circuit_wait(refused: CircuitOpen) -> Wait:
    """The wait of a node whose call ``refused`` was refused by its circuit: until the circuit
    half-opens (open), or a moment later (half-open, its probe in flight), with a little
    jitter so that the nodes waiting on one circuit do not all come back at once."""
    from orchestrion.execution.circuit import CircuitState

    delay = refused.retry_in
    if refused.state is not CircuitState.OPEN:
        delay = min(delay, _PROBE_POLL_SECONDS)
    delay += random.uniform(0.0, 0.1 + delay * 0.1)
    return Wait(
        WaitReason.CIRCUIT,
        time.time() + delay,
        {"handler": refused.handler, "host": refused.host, "circuit": refused.state.value},
    )


class _NodeTimeout(Exception):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"node timed out after {seconds:g}s")


def _log_fields(task: TaskMessage) -> dict[str, Any]:
    """What every log line of the attempt carries (``logcontext.py``)."""
    return {
        "execution_id": task.execution_id,
        "node_id": task.node_id,
        "attempt": task.attempt,
        "correlation_id": task.correlation_id,
    }


_PROVIDER_HANDLERS = frozenset({"llm", "map"})  # the handlers that may call an llm provider


def _mentions_secrets(task: TaskMessage) -> bool:
    return "secrets" in json.dumps(task.config) if task.config else False


def _check_serialisable(node_id: str, output: Any) -> None:
    if output is None or isinstance(output, str | int | float | bool):
        return
    try:
        json.dumps(output)
    except (TypeError, ValueError) as exc:
        from orchestrion.errors import PermanentNodeError

        raise PermanentNodeError(
            f"output of node '{node_id}' is not JSON-serialisable: {exc}", category="output"
        ) from exc
