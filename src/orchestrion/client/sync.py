"""``Client``: the blocking client of the Orchestrion REST API (``orchestrion serve``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import replace
from types import TracebackType
from typing import Any, TypeVar

import httpx

from orchestrion import __version__
from orchestrion.client import calls, dead_letter_calls, log_calls, sync_transport
from orchestrion.client import schedules as schedule_calls
from orchestrion.client import sinks as sink_calls
from orchestrion.client import versions as version_calls
from orchestrion.client.calls import DefinitionSource, StatusFilter, TimeFilter
from orchestrion.client.emit_models import EmittedEvent
from orchestrion.client.inputs_models import RenderedInputs
from orchestrion.client.log_models import LogLine, LogPage
from orchestrion.client.models import (
    Accepted,
    DeadLetter,
    DeadLetterAction,
    DeadLetterPage,
    Definition,
    DefinitionSummary,
    Event,
    EventPage,
    Execution,
    ExecutionPage,
    ExecutionResults,
    ExecutionSummary,
    Health,
    Submission,
)
from orchestrion.client.retry import RateLimitRetry
from orchestrion.client.schedules import Schedule, ScheduleFiring
from orchestrion.client.sinks import SinkDelivery, SinkStatus
from orchestrion.client.sse import ServerSentEvent, event_from_sse, log_line_from_sse
from orchestrion.client.stream_resume import StreamResume
from orchestrion.core.verbs import ControlVerb

__all__ = ["Client"]

T = TypeVar("T")


class Client:
    """Talks to an Orchestrion server over HTTP; one instance per server, reuse it.

        with Client("http://127.0.0.1:8000", api_key="k1") as client:
            execution = client.run("flow.yaml", {"user_id": 123}, timeout=60)
            print(execution.status, execution.result)

    ``headers`` go on every request (e.g. ``X-Request-Source``, ``X-Client-ID``);
    ``transport`` replaces the network (e.g. an ``httpx.MockTransport``). A call the
    server rate-limits (429) is sent again after its ``Retry-After``, up to
    ``rate_limit_retries`` times (0: never; see ``orchestrion.client.retry``).
    Errors are ``ApiError`` subclasses (see ``orchestrion.client.errors``).
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        rate_limit_retries: int = 10,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = calls.base_url(base_url)
        self.timeout = timeout
        # A 429 is sent again after the server's Retry-After (client/retry.py); 0: never.
        self.rate_limit = RateLimitRetry(retries=rate_limit_retries)
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=calls.default_headers(api_key, headers, __version__),
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _send(self, call: calls.Call[T]) -> T:
        return sync_transport.send(self._http, call, self.base_url, self.rate_limit)

    # ------------------------------------------------------------------ workflows

    def submit(
        self, definition: DefinitionSource, *, idempotency_key: str | None = None
    ) -> Submission:
        """Validate and store a definition and create a PENDING execution of it.

        Dicts (and ``WorkflowSpec``) are sent as JSON, YAML text and ``.yaml`` paths as
        ``application/yaml``. An invalid definition raises ``InvalidDefinition``.
        """
        return self._send(calls.submit(definition, idempotency_key))

    def trigger(
        self,
        execution_id: str,
        input_params: Mapping[str, Any] | None = None,
        node_overrides: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> Accepted:
        """Start a PENDING execution with input params and per-node config overrides."""
        return self._send(
            calls.trigger(execution_id, input_params, node_overrides, idempotency_key)
        )

    def run(
        self,
        definition: DefinitionSource,
        inputs: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
        poll_interval: float = 0.2,
        node_overrides: Mapping[str, Mapping[str, Any]] | None = None,
        idempotency_key: str | None = None,
    ) -> Execution:
        """Submit, trigger and wait: the final execution, its result filled in."""
        submitted = self.submit(definition, idempotency_key=idempotency_key)
        self.trigger(
            submitted.execution_id, inputs, node_overrides, idempotency_key=idempotency_key
        )
        return self.wait(submitted.execution_id, timeout, poll_interval=poll_interval)

    def status(self, execution_id: str, include_outputs: bool = True) -> Execution:
        """The execution and its nodes now (``to_result()`` gives the engine's result type)."""
        return self._send(calls.status(execution_id, include_outputs))

    def results(self, execution_id: str) -> ExecutionResults:
        """The workflow's result and final status (``completed`` once it has finished)."""
        return self._send(calls.results(execution_id))

    def wait(
        self,
        execution_id: str,
        timeout: float | None = None,
        *,
        poll_interval: float = 0.2,
        stream: bool = False,
    ) -> Execution:
        """Block until the execution is final and return it with outputs and result.

        Polls every ``poll_interval`` s, or with ``stream=True`` follows the event stream
        (falling back to polling if it ends early). Raises ``TimeoutError`` after ``timeout``.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        if stream:
            for _ in self._stream(execution_id, None, 5, deadline):
                pass
        while True:
            current = self.status(execution_id, include_outputs=False)
            if current.finished:
                return self._final(execution_id)
            pause = poll_interval
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"execution {execution_id} is still {current.status.value} after {timeout}s"
                    )
                pause = min(pause, left)
            time.sleep(pause)

    def _final(self, execution_id: str) -> Execution:
        execution = self.status(execution_id)
        return replace(execution, result=self.results(execution_id).result)

    def cancel(self, execution_id: str, *, force: bool = False) -> Accepted:
        """Cancel: running nodes are stopped, nothing new starts (``Conflict`` if final). One
        that comes while the execution compensates is recorded and the compensation runs to
        its end, unless ``force``: then it is abandoned too."""
        return self._send(calls.cancel(execution_id, force))

    def emit(
        self,
        event_type: str,
        payload: Mapping[str, Any] | None = None,
        *,
        event_id: str | None = None,
    ) -> EmittedEvent:
        """Send an event: every active workflow with a trigger for ``event_type`` starts
        (filters permitting). The same ``event_id`` again starts nothing twice."""
        return self._send(calls.emit(event_type, payload, event_id))

    def retry(self, execution_id: str, from_node: str | None = None) -> Accepted:
        """Run a failed or cancelled execution again from its failed nodes; with
        ``from_node``, re-run that node and its downstream in any finished execution."""
        return self._send(calls.control(execution_id, ControlVerb.RETRY, from_node))

    def pause(self, execution_id: str) -> Accepted:
        """Pause: running nodes finish, nothing new starts until ``resume`` (a compensation
        is not paused: the answer's message says the pause was only recorded)."""
        return self._send(calls.control(execution_id, ControlVerb.PAUSE))

    def resume(self, execution_id: str) -> Accepted:
        """Continue a paused execution."""
        return self._send(calls.control(execution_id, ControlVerb.RESUME))

    def approve(
        self, execution_id: str, node_id: str, *, by: str | None = None, comment: str | None = None
    ) -> Accepted:
        """Approve a node waiting for approval; ``by`` and ``comment`` are recorded."""
        return self._send(
            calls.decide(execution_id, node_id, approved=True, by=by, comment=comment)
        )

    def reject(
        self, execution_id: str, node_id: str, *, by: str | None = None, comment: str | None = None
    ) -> Accepted:
        """Reject a node waiting for approval; it fails unless ``on_reject: continue``."""
        return self._send(
            calls.decide(execution_id, node_id, approved=False, by=by, comment=comment)
        )

    def list_executions(
        self,
        status: StatusFilter = None,
        workflow: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        *,
        definition_id: str | None = None,
        created_after: TimeFilter = None,
        created_before: TimeFilter = None,
        id_prefix: str | None = None,
        id_suffix: str | None = None,
    ) -> ExecutionPage:
        """One page of executions, newest first; ``status`` may be one value or several;
        ``id_prefix`` keeps those whose id starts with it, ``id_suffix`` those whose id ends
        with it."""
        return self._send(
            calls.list_executions(
                status,
                workflow,
                limit,
                cursor,
                definition_id,
                created_after,
                created_before,
                id_prefix,
                id_suffix,
            )
        )

    def iter_executions(
        self,
        status: StatusFilter = None,
        workflow: str | None = None,
        *,
        page_size: int = 100,
        definition_id: str | None = None,
        created_after: TimeFilter = None,
        created_before: TimeFilter = None,
    ) -> Generator[ExecutionSummary, None, None]:
        """Every matching execution, newest first, following ``next_cursor`` page by page."""
        cursor: str | None = None
        while True:
            page = self.list_executions(
                status,
                workflow,
                page_size,
                cursor,
                definition_id=definition_id,
                created_after=created_after,
                created_before=created_before,
            )
            yield from page.items
            if not page.next_cursor or not page.items:
                return
            cursor = page.next_cursor

    # ------------------------------------------------------------------ definitions

    def sinks(self) -> list[SinkStatus]:
        """The configured event sinks and what each owes (admin)."""
        return self._send(sink_calls.list_sinks())

    def sink_deliveries(
        self, status: str | None = None, sink: str | None = None, limit: int = 100
    ) -> list[SinkDelivery]:
        """Events a sink did not take: ``status`` ``retry`` or ``dead`` (admin)."""
        return self._send(sink_calls.list_deliveries(status, sink, limit))

    def sink_delivery_action(self, delivery_id: int, verb: str) -> SinkDelivery:
        """``retry`` (send it again now) or ``drop`` an event a sink did not take (admin)."""
        return self._send(sink_calls.delivery_action(delivery_id, verb))

    def schedules(self) -> list[Schedule]:
        """The schedules (scheduled triggers of the newest definition versions)."""
        return self._send(schedule_calls.list_schedules())

    def schedule(self, schedule_id: str) -> Schedule:
        """One schedule, with its next tick and recent firings (``NotFound`` if none)."""
        return self._send(schedule_calls.get_schedule(schedule_id))

    def schedule_action(self, schedule_id: str, verb: str) -> Schedule | ScheduleFiring:
        """``pause``, ``resume``, ``delete`` (the schedule after it) or ``trigger`` (fire
        once now: the firing recorded)."""
        return self._send(schedule_calls.schedule_action(schedule_id, verb))

    def list_definitions(
        self, name: str | None = None, *, limit: int | None = None, offset: int | None = None
    ) -> list[DefinitionSummary]:
        """Stored definition versions, optionally of one name."""
        return self._send(calls.list_definitions(name, limit, offset))

    def get_definition(self, name: str, version: str | None = None) -> Definition:
        """A stored definition (its active version unless ``version``), with its spec."""
        return self._send(calls.get_definition(name, version))

    def versions(self, name: str) -> list[DefinitionSummary]:
        """Every version of ``name``, oldest first: status, who created it and when, and
        which one is active."""
        return self._send(version_calls.list_versions(name))

    def activate(self, name: str, version: str) -> DefinitionSummary:
        """Make ``version`` the active one: triggered and scheduled runs, and starts that name
        no version, use it from now on; running executions keep theirs."""
        return self._send(version_calls.version_action(name, version, "activate"))

    def deprecate(self, name: str, version: str) -> DefinitionSummary:
        """Retire ``version``: never the active one again (a start may still name it)."""
        return self._send(version_calls.version_action(name, version, "deprecate"))

    def start_definition(
        self,
        name: str,
        version: str | None = None,
        input_params: Mapping[str, Any] | None = None,
        node_overrides: Mapping[str, Mapping[str, Any]] | None = None,
        idempotency_key: str | None = None,
    ) -> Accepted:
        """Create and start a new execution of a stored definition."""
        return self._send(
            calls.start_definition(name, version, input_params, node_overrides, idempotency_key)
        )

    # ------------------------------------------------------------------ events

    def events(
        self,
        execution_id: str | None = None,
        after: int = 0,
        limit: int | None = None,
        *,
        types: Iterable[str] | None = None,
    ) -> EventPage:
        """Journal events after ``seq`` ``after``: one execution's, or all (filter by type)."""
        return self._send(calls.events(execution_id, after, limit, types))

    def stream_events(
        self,
        execution_id: str | None = None,
        last_event_id: str | int | None = None,
        *,
        reconnects: int = 5,
    ) -> Generator[Event, None, None]:
        """Follow the live event stream (Server-Sent Events) after ``last_event_id``.

        One execution's stream ends after its final event; the global one runs until the
        iterator is closed. A broken connection is resumed from the last event seen, up to
        ``reconnects`` times in a row, then ``ApiConnectionError`` is raised.
        """
        return self._stream(execution_id, last_event_id, reconnects, None)

    def _stream(
        self,
        execution_id: str | None,
        last_event_id: str | int | None,
        reconnects: int,
        deadline: float | None,
    ) -> Generator[Event, None, None]:
        path, _ = calls.stream(execution_id, None)
        return self._sse(path, [], event_from_sse, last_event_id, reconnects, deadline)

    def _sse(
        self,
        path: str,
        params: list[tuple[str, str]],
        parse: Callable[[ServerSentEvent], T | None],
        last_event_id: str | int | None,
        reconnects: int,
        deadline: float | None,
    ) -> Generator[T, None, None]:
        resume = StreamResume(path, self.base_url, last_event_id, reconnects, deadline)
        return sync_transport.read_events(self._http, self.timeout, resume, params, parse)

    def node_inputs(self, execution_id: str, node_id: str) -> list[RenderedInputs]:
        """The node's config as each of its attempts rendered it (values read from secrets
        stay as declared; masked as its output is for the caller's role), oldest first."""
        return self._send(calls.node_inputs(execution_id, node_id))

    def logs(
        self,
        execution_id: str,
        node_id: str | None = None,
        *,
        attempt: int | None = None,
        after: int = 0,
        limit: int | None = None,
    ) -> LogPage:
        """A page of the log lines an execution's node attempts wrote (of one node, one
        attempt when given), oldest first, after ``seq`` ``after``."""
        return self._send(log_calls.node_logs(execution_id, node_id, attempt, after, limit))

    def follow_logs(
        self,
        execution_id: str,
        node_id: str | None = None,
        *,
        attempt: int | None = None,
        after: int = 0,
        reconnects: int = 5,
    ) -> Generator[LogLine, None, None]:
        """Follow the log lines (Server-Sent Events) as attempts write them; it ends once the
        execution is final and every line was sent. A broken connection is resumed from the
        last line seen, up to ``reconnects`` times in a row."""
        path, params = log_calls.log_stream(execution_id, node_id, attempt, after)
        return self._sse(path, params, log_line_from_sse, None, reconnects, None)

    # ------------------------------------------------------------------ dead letter queue

    def list_dead_letters(
        self,
        limit: int = 50,
        after: str | None = None,
        *,
        workflow: str | None = None,
        since: float | None = None,
    ) -> DeadLetterPage:
        """One page of dead letters (admin role): parked tasks (scale-out) oldest first, then
        nodes that failed for good by when they failed. ``workflow`` (a name) and ``since``
        (epoch seconds) keep only such nodes."""
        return self._send(dead_letter_calls.dead_letters(limit, after, workflow, since))

    def iter_dead_letters(self, *, page_size: int = 100) -> Generator[DeadLetter, None, None]:
        """Every dead letter, oldest first, following ``next_after`` page by page."""
        after: str | None = None
        while True:
            page = self.list_dead_letters(page_size, after)
            yield from page.items
            if not page.next_after or not page.items:
                return
            after = page.next_after

    def get_dead_letter(self, entry_id: str) -> DeadLetter:
        """A dead letter with its payload (``NotFound`` for an unknown id)."""
        return self._send(dead_letter_calls.dead_letter(entry_id))

    def retry_dead_letter(self, entry_id: str) -> DeadLetterAction:
        """Retry a dead letter: a node's execution reruns from that node, a parked task goes
        back to its task stream (the same attempt runs again)."""
        return self._send(dead_letter_calls.retry_dead_letter(entry_id))

    def drop_dead_letter(self, entry_id: str) -> DeadLetterAction:
        """Drop a dead letter: a node is recorded as handled (listed no more); a parked task's
        attempt fails (``dead_letter``) and its execution goes on."""
        return self._send(dead_letter_calls.drop_dead_letter(entry_id))

    # ------------------------------------------------------------------ service

    def health(self) -> Health:
        """The server's health report; ``ok`` is False when it answered 503 (degraded)."""
        return self._send(calls.health())

    def metrics(self) -> str:
        """The Prometheus metrics text."""
        return self._send(calls.metrics())
