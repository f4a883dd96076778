"""Runs one node attempt: condition, templates, config schema, handler, in its layers.

The executor is what a worker is, whether it lives in the engine's process (embedded) or in a
worker process (scale-out). It turns everything that can happen into one state-machine event
and never lets an exception escape, except cancellation.

Every attempt takes one path, whether the engine runs it inline (``run_now``: a handler with
nothing to wait for, inside the engine's turn) or in a task of its own (``execute``): the
layers' scopes are entered and their checks run (``execution/layers.py``), the config is
rendered and validated (``_begin``), the handler is called (its ``run_now`` inline, its
``run`` awaited through the layers' ``call``), and the output or error is settled into an
event through the layers' ``output`` (those with work for the handler) and ``error``
(``_settle``, ``_failed``). The inline path allocates no ``Attempt``: only an awaited call
needs one.

The layers are composed once per process, from the resources and secrets the executor is
given (``standard_layers``): none of them is optional but the circuit breaker, which a
process has when it shares circuits with others (scale-out workers).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from orchestrion.core.events import (
    CompensationFailed,
    CompensationSucceeded,
    Event,
    NodeFailed,
    NodeSkipped,
    NodeStarted,
    NodeSucceeded,
    NodeWaiting,
)
from orchestrion.core.reasons import SkipReason
from orchestrion.core.task_kinds import TaskKind
from orchestrion.core.trust_level import Trust
from orchestrion.dispatch.base import EventSink, TaskMessage
from orchestrion.errors import HandlerNotFound
from orchestrion.execution.config_facts import has_template, plain_validate
from orchestrion.execution.enforce import attempt_resources
from orchestrion.execution.failures import classify, is_cancel
from orchestrion.execution.layers import Attempt, Layer, Stack
from orchestrion.execution.log_capture import (
    INLINE_PENDING,
    AttemptLog,
    LogLimits,
    capturing,
    install,
    take_inline,
)
from orchestrion.execution.rendered_inputs import (
    copy_of,
    mentions_secrets,
    recorded_inputs,
    recorded_inputs_json,
)
from orchestrion.execution.scopes import LogContext, TemplateLimitsInForce
from orchestrion.execution.secrets import Scrubbing, SecretFlow, canonical_name
from orchestrion.execution.storable import (
    DEFAULT_ERROR_CHARS,
    bounded_error,
    check_output,
    escaped,
    needs_escape,
)
from orchestrion.execution.timeout import Timeout
from orchestrion.governance.secret_scrub import Scrubber
from orchestrion.handlers.base import LATER, HandlerSpec, NodeContext, Resources, Wait
from orchestrion.handlers.config_context import validation_context
from orchestrion.handlers.registry import HandlerRegistry
from orchestrion.handlers.resources import Controls
from orchestrion.templates.rendering import (
    build_context,
    evaluate_condition,
    render_value,
)
from orchestrion.templates.threads import off_loop
from orchestrion.templates.weight import renders_off_loop

if TYPE_CHECKING:
    # Not at run time: the breakers' module brings prometheus_client, which an embedded
    # engine without circuit breakers need not load.
    from orchestrion.execution.circuit import SharedCircuits

__all__ = ["NodeExecutor", "standard_layers"]

# The template context of an attempt whose config has no template and no ``when:``.
_NO_TEMPLATES: Mapping[str, Any] = MappingProxyType({})

# Configs whose facts are remembered; more start the memory over. Above the node count of
# the definitions a process commonly runs (a 1,000-wide fan-out), so that each node's are
# worked out once, not at every attempt.
_FACTS_MAX = 4096


def standard_layers(
    registry: HandlerRegistry,
    resources: Resources,
    secrets: Mapping[str, str],
    circuits: SharedCircuits | None = None,
) -> list[Layer]:
    """The layers of every attempt of a process, outermost first."""
    layers: list[Layer] = [LogContext(), TemplateLimitsInForce(resources)]
    layers.append(Scrubbing(registry, resources, secrets))
    if circuits is not None:
        from orchestrion.execution.circuit_layer import CircuitBreaking

        layers.append(CircuitBreaking(circuits))
    if secrets:  # a process without secrets has none to keep in place
        layers.append(SecretFlow(registry, resources))
    layers.append(Timeout())
    return layers


class NodeExecutor:
    """Executes ``TaskMessage``s against a handler registry and reports events to a sink.

    ``resources`` carry the policy's controls (a process cannot be built without them);
    ``circuits``, when given, guard calls to downstream hosts with shared circuit breakers;
    ``logs`` bounds and masks the log lines each attempt writes (``log_capture.py``), which
    are reported as ``NodeLogged`` events (None, or no lines allowed: not captured);
    ``error_chars`` bounds an error's message and traceback (``storable.py``).
    ``stable_configs``: each node's config comes as the same object at every attempt (an
    engine's compiled plans, not a worker's decoded messages), so what is stored of a config
    without templates is worked out once per config.
    """

    def __init__(
        self,
        registry: HandlerRegistry,
        resources: Resources,
        secrets: Mapping[str, str] | None = None,
        *,
        circuits: SharedCircuits | None = None,
        logs: LogLimits | None = None,
        stable_configs: bool = False,
        error_chars: int = DEFAULT_ERROR_CHARS,
    ) -> None:
        if not isinstance(resources, Resources):
            raise TypeError(f"NodeExecutor needs the process's Resources, got {resources!r}")
        self.registry = registry
        self.resources = resources
        self.secrets = dict(secrets or {})
        self.error_chars = error_chars
        self.stack = Stack(standard_layers(registry, resources, self.secrets, circuits))
        self._canonical = functools.partial(canonical_name, registry)
        self._scrubbing = next(layer for layer in self.stack.layers if isinstance(layer, Scrubbing))
        self.logs = logs if logs is not None and logs.on else None
        if self.logs is not None:
            install(self.logs)
        # id(config) -> (config, when, handler, its weight, templated): the same node's config
        # comes with each of its attempts (the compiled plan's), so its weight is worked
        # out once; the config is kept so that its id cannot be reused meanwhile.
        # Also whether the config holds any template: one without (and without ``when:``)
        # needs no template context.
        self._weights: dict[int, tuple[Any, str | None, str, bool, bool]] = {}
        # id(config) -> (config, handler, its recorded inputs as JSON, looked at), for configs
        # rendered with nothing to scrub: what is stored of one without templates is the
        # same at every attempt, so it is worked out once (whether it has templates is known
        # from its weight) and each attempt reads its own copy back (JSON None: it has some).
        # Once it has templates and comes again: whether any of them mentions ``secrets``
        # (none: the rendered config is stored as it is, no walk to keep parts as declared),
        # so a templated node that runs once pays nothing for that look.
        self._recorded: dict[int, tuple[Any, str, str | None, bool, bool]] | None = (
            {} if stable_configs else None
        )
        # The controls the last attempt was validated under, with their validation context.
        self._validation: tuple[Controls, dict[str, Any]] | None = None

    # ------------------------------------------------------------------ in a task

    async def execute(self, task: TaskMessage, emit: EventSink) -> None:
        """Run ``task``; report NodeStarted and then exactly one outcome event to ``emit``."""
        tokens = self.stack.enter(task)
        log = captured = None
        if self.logs is not None:
            loop = asyncio.get_running_loop()
            log = AttemptLog(task.execution_id, task.node_id, task.attempt, self.logs, emit, loop)
            captured = capturing.set(log)
        try:
            outcome = await self._run(task, emit)
            if log is not None and (log.lines or log.dropped_lines):  # no call when silent
                logged = log.close()
                if logged is not None:  # the lines go first: stored with or before the outcome
                    emit(task.execution_id, logged)
            emit(task.execution_id, outcome)
        finally:
            if log is not None:
                if not log.closed and (log.lines or log.dropped_lines):
                    # Cancelled (a cancel, a shutdown): the lines it wrote are still reported.
                    logged = log.close()
                    if logged is not None:
                        emit(task.execution_id, logged)
                log.closed = True  # silent: no call; and a thread left behind adds nothing
                assert captured is not None
                capturing.reset(captured)
            elif INLINE_PENDING:
                take_inline()  # capture is off here but on in the process: keep nothing
            self.stack.leave(tokens)

    async def _run(self, task: TaskMessage, emit: EventSink) -> Event:
        """The attempt's outcome; its start (with its rendered inputs, once rendered) is
        reported to ``emit`` before that."""
        started = time.time()
        announce = task.kind == TaskKind.RUN
        try:
            if self._renders_off_loop(task):
                # Rendering may run up to the template time limit: in a thread, so that the
                # event loop goes on (the thread gets the attempt's context: template limits
                # and log fields). A ``run_now`` handler (a condition and its cases) finishes
                # there too: it has no effect outside the engine.
                attempt = await off_loop(self._prepare, task, task.kind == TaskKind.RUN)
            else:
                attempt = self._prepare(task, False)
            if announce:
                announce = False
                inputs = None if attempt is None else attempt.inputs
                emit(task.execution_id, NodeStarted(task.node_id, task.attempt, started, inputs))
            if attempt is None:
                return self._settle(task, None, None)
            if attempt.output is LATER:
                attempt.output = await self.stack.call(attempt)
        except BaseException as exc:
            if announce:  # cancelled or not rendered: it started all the same, without inputs
                emit(task.execution_id, NodeStarted(task.node_id, task.attempt, started))
            if is_cancel(exc):
                raise
            return self._failed(task, exc)
        return self._settle(task, attempt.spec, attempt.output)

    # ------------------------------------------------------------------ inline

    def has_run_now(self, handler: str, config: Mapping[str, Any]) -> bool:
        """Whether an attempt of ``handler`` with the raw ``config`` may be run by
        ``run_now`` (its handler has one, which takes such configs)."""
        try:
            spec = self.registry.get(handler)
        except HandlerNotFound:
            return False
        return spec.run_now is not None and (spec.runs_now is None or spec.runs_now(config))

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
        if spec.runs_now is not None and not spec.runs_now(task.config):
            return False  # not a config its ``run_now`` takes (a python node's function)
        started = time.time()
        tokens = self.stack.enter(task)
        try:
            outcome, inputs = self._now(task, spec)
            # Lines it wrote, if any (a dict test when none did); an attempt that answered
            # LATER did nothing, and runs again as a task.
            logged = take_inline() if INLINE_PENDING else None
            if self.logs is None:
                logged = None  # capture is off here but on in the process: keep nothing
        finally:
            self.stack.leave(tokens)  # the caller's context is its own again
        if outcome is None:
            return False
        emit(task.execution_id, NodeStarted(task.node_id, task.attempt, started, inputs))
        if logged is not None:
            emit(task.execution_id, logged)
        emit(task.execution_id, outcome)
        return True

    def _now(
        self, task: TaskMessage, spec: HandlerSpec
    ) -> tuple[Event | None, dict[str, Any] | None]:
        """The outcome (None: ``LATER``) and the rendered inputs as stored."""
        # No ``Attempt`` here: it is what the awaited call of ``execute`` takes.
        run_now = spec.run_now
        assert run_now is not None  # run_now checked it
        inputs = None
        try:
            begun = self._begin(task, spec)
            if begun is None:
                return self._settle(task, None, None), None
            _, config, ctx, inputs = begun
            output = run_now(ctx, config)
        except BaseException as exc:  # no await here, so no cancel: a function's sys.exit
            return self._failed(task, exc), inputs
        if output is LATER:
            return None, None
        return self._settle(task, spec, output), inputs

    # ------------------------------------------------------------------ the one path

    def _prepare(self, task: TaskMessage, finish: bool) -> Attempt | None:
        """The attempt of ``execute`` up to its handler (None when ``when:`` is false), with
        ``finish`` the output of the handler's ``run_now`` (else ``LATER``)."""
        begun = self._begin(task, None)
        if begun is None:
            return None
        spec, config, ctx, inputs = begun
        run_now = spec.run_now
        output = run_now(ctx, config) if finish and run_now is not None else LATER
        return Attempt(task, spec, config, ctx, output, inputs)

    def _begin(
        self, task: TaskMessage, spec: HandlerSpec | None
    ) -> tuple[HandlerSpec, Any, NodeContext, dict[str, Any] | None] | None:
        """The attempt up to its handler: the layers' checks, ``when:`` (None when it is
        false), the rendered and validated config, its context, and the rendered config as
        stored (``rendered_inputs.py``; None for an empty config, at no cost)."""
        for check in self.stack.checks:
            check(task)
        when = task.when if task.kind == TaskKind.RUN else None
        if when or self._templated(task.config):
            context: Mapping[str, Any] = build_context(
                task.inputs,
                task.outputs,
                secrets=self.secrets,
                execution={"id": task.execution_id, "attempt": task.attempt, "node": task.node_id},
            )
            if when and not evaluate_condition(when, context):
                return None
        else:
            context = _NO_TEMPLATES  # rendering only copies such a config: no names read
        if spec is None:
            spec = self.registry.get(task.handler)
        raw = task.config
        if spec.raw_keys:
            rendered = {
                key: value if key in spec.raw_keys else render_value(value, context)
                for key, value in raw.items()
            }
        else:
            rendered = render_value(raw, context)
        inputs = self._recorded_inputs(task, spec, raw, rendered) if raw else None
        # The stricter of this process's trust and the execution's, for this attempt only
        # (``Trust.of``: only exactly ``trusted`` is trusted; compared here, every attempt).
        resources = (
            self.resources
            if task.trust == Trust.TRUSTED
            else attempt_resources(self.resources, task.trust)
        )
        model = spec.config_model
        config: Any
        if model is None:
            config = rendered
        elif plain_validate(model):  # its own validator, without model_validate's frame
            config = model.__pydantic_validator__.validate_python(
                rendered, context=self._context_of(resources)
            )
        else:
            config = model.model_validate(rendered, context=self._context_of(resources))
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
        return spec, config, ctx, inputs

    def _context_of(self, resources: Resources) -> dict[str, Any]:
        """The validation context of ``resources``' controls: the same for every attempt
        under them (the process's, or untrusted work's), so made once for each."""
        controls = resources.controls
        last = self._validation
        if last is None or last[0] is not controls:
            last = self._validation = (controls, validation_context(controls))
        return last[1]

    def _recorded_inputs(
        self, task: TaskMessage, spec: HandlerSpec, raw: Any, rendered: Any
    ) -> dict[str, Any] | None:
        """``recorded_inputs`` of the attempt; for a config without templates and nothing to
        scrub, worked out once per config (the rendered config is the declared one)."""
        scrubber = self._scrubber(task, spec)
        remembered = self._recorded
        if scrubber is not None or remembered is None:
            return recorded_inputs(raw, rendered, scrubber, spec.name)
        key = id(raw)
        known = remembered.get(key)
        if known is not None and known[0] is raw and known[1] == spec.name:
            if not known[3]:  # templated, seen once: worth a look for ``secrets`` now, once
                if has_template(raw):
                    known = (raw, spec.name, None, True, mentions_secrets(raw))
                else:  # whether it had templates was no longer known when it first came
                    text = recorded_inputs_json(raw, rendered, None, spec.name, secrets=False)
                    known = (raw, spec.name, text, True, False)
                remembered[key] = known
            text = known[2]
            if text is not None:
                stored: dict[str, Any] = copy_of(text)  # a copy of its own, as ever
                return stored
            # It has templates: rendered anew each time.
            return recorded_inputs(raw, rendered, None, spec.name, secrets=known[4])
        # Whether it holds a template was worked out with the attempt's weight (True when
        # no longer known). Without one, nothing renders a secret: no walk to keep parts
        # as declared, and its JSON is what every attempt stores.
        templated = self._templated(raw)
        text = recorded_inputs_json(raw, rendered, None, spec.name, secrets=templated)
        if len(remembered) >= _FACTS_MAX:
            remembered.clear()
        if templated:
            remembered[key] = (raw, spec.name, None, False, True)
        else:
            remembered[key] = (raw, spec.name, text, True, False)
        if text is None:
            return None
        first: dict[str, Any] = copy_of(text)
        return first

    def _scrubber(self, task: TaskMessage, spec: HandlerSpec) -> Scrubber | None:
        """What to scrub from the attempt's rendered config: as from its output (nothing to
        look up without secrets, in a handler that calls no llm provider)."""
        if not self.secrets and spec.name != "llm":
            return None
        return self._scrubbing.scrubber_for(task)

    def _settle(self, task: TaskMessage, spec: HandlerSpec | None, output: Any) -> Event:
        """The event of an attempt of ``spec`` that has its ``output`` (no spec: its
        condition was false)."""
        now = time.time()
        if spec is None:
            return NodeSkipped(task.node_id, task.attempt, now, SkipReason.CONDITION_FALSE)
        if isinstance(output, Wait) and task.kind == TaskKind.RUN:
            data = output.data
            if data is not None and needs_escape(data):
                data = escaped(data)
            return NodeWaiting(task.node_id, task.attempt, now, output.reason, output.wake_at, data)
        if not isinstance(output, Wait):
            try:
                output = check_output(task.node_id, output)
            except Exception as exc:
                return self._failed(task, exc)
        output = self.stack.output(task, output, spec)
        if task.kind == TaskKind.RUN:
            return NodeSucceeded(task.node_id, task.attempt, now, output)
        return CompensationSucceeded(task.node_id, now, output)

    def _failed(self, task: TaskMessage, exc: BaseException) -> Event:
        info = bounded_error(self.stack.error(task, classify(task, exc)), self.error_chars)
        if task.kind == TaskKind.RUN:
            return NodeFailed(task.node_id, task.attempt, time.time(), info)
        return CompensationFailed(task.node_id, time.time(), info)

    def _renders_off_loop(self, task: TaskMessage) -> bool:
        """Whether the attempt renders a template that is not light (``template_weight``)."""
        when = task.when if task.kind == TaskKind.RUN else None
        config = task.config
        known = self._weights.get(id(config))
        if (
            known is not None
            and known[0] is config
            and known[1] == when
            and known[2] == task.handler
        ):
            return known[3]
        templated = has_template(config)
        # Without template markup, a ``when:`` or a condition's cases (bare expressions, in
        # a condition's or a map's config), nothing renders: light, without a second walk.
        heavy = (
            templated
            or bool(when)
            or type(config) is not dict
            or "cases" in config
            or "config" in config
        ) and renders_off_loop(task.handler, config, when, self._canonical)
        if len(self._weights) >= _FACTS_MAX:
            self._weights.clear()
        self._weights[id(config)] = (config, when, task.handler, heavy, templated)
        return heavy

    def _templated(self, config: Any) -> bool:
        """Whether ``config`` holds a template (True when not known: it is looked at with
        the attempt's weight, ``_renders_off_loop``, which every attempt asks first)."""
        known = self._weights.get(id(config))
        return known is None or known[0] is not config or known[4]
