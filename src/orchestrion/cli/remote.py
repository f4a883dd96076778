"""The CLI commands against a running server (``--server URL``), on ``orchestrion.client``.

Each function does what its local command does, through the REST API, and returns what the
command renders (an ``ExecutionResult`` or list rows), so output and exit codes are the same:
0 completed, 1 failed or cancelled, 2 invalid definition or request (a state that does not
allow it), 3 the server cannot be reached, failed or limits the rate, 5 unknown id, 6 the API
key is missing, unknown or not allowed the call (``cli/exits.py``'s ``for_answer``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape

from orchestrion.cli.exits import EXIT_INTERRUPTED, EXIT_INVALID, for_answer
from orchestrion.cli.exits import EXIT_STORE as EXIT_UNAVAILABLE
from orchestrion.cli.outcome import Settled
from orchestrion.cli.terminal import err, fail, print_definition_error

if TYPE_CHECKING:
    from orchestrion.cli.progress import ProgressView
    from orchestrion.client import Client, Event, Execution
    from orchestrion.core.events import Record
    from orchestrion.core.result import ExecutionResult
    from orchestrion.core.states import ExecutionStatus

__all__ = [
    "cancel",
    "connected",
    "list_rows",
    "pause",
    "resume",
    "retry",
    "run",
    "settle",
    "status",
]

_POLL = 0.2
_UNCONFIRMED = "(requested; poll"  # the end of a 202 the server could not confirm


@contextmanager
def _connected(server: str, api_key: str | None) -> Iterator[Client]:
    """A client for ``server``; every client error becomes a message and an exit code."""
    from orchestrion.client import (
        ApiConnectionError,
        ApiError,
        Client,
        InvalidDefinition,
        ServerError,
    )

    try:
        client = Client(server, api_key=api_key)
    except ValueError as exc:  # an empty --server URL
        fail(EXIT_INVALID, str(exc))
    try:
        with client:
            yield client
    except InvalidDefinition as exc:
        print_definition_error(exc)
        raise typer.Exit(EXIT_INVALID) from None
    except (ApiConnectionError, ServerError) as exc:
        fail(EXIT_UNAVAILABLE, str(exc))
    except ApiError as exc:  # by what failed: key, approver, id, rate, request (cli/exits.py)
        fail(for_answer(exc.status, exc.type), _describe(exc))
    except OSError as exc:  # the definition file could not be read
        fail(EXIT_INVALID, f"cannot read {exc.filename or 'the definition'}: {exc.strerror}")
    except KeyboardInterrupt:
        err.print("interrupted: the execution goes on on the server")
        raise typer.Exit(EXIT_INTERRUPTED) from None


connected = _connected
"""For other command modules (``orchestrion dlq --server``): the same messages and exit codes."""


def _describe(exc: Any) -> str:
    lines = [str(exc) if exc.status is None else f"{exc} (HTTP {exc.status})"]
    for item in exc.errors:
        where = f"{item['field']}: " if item.get("field") else ""
        lines.append(f"  - {where}{item.get('message', '')}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- run


_MAX_DEPTH = 32


def run(
    server: str,
    api_key: str | None,
    file: Path,
    params: dict[str, Any],
    *,
    quiet: bool,
    idempotency_key: str | None,
) -> Settled:
    """Submit and trigger on the server, follow the execution until it ends or waits for a
    person (its own approval or a child's), and return that result with what to decide."""
    if not file.is_file():
        fail(EXIT_INVALID, f"cannot read {file}: no such file")
    _check_inputs(file, params)
    with _connected(server, api_key) as client:
        submitted = client.submit(file, idempotency_key=idempotency_key)
        for warning in submitted.warnings:
            err.print(f"[yellow]warning:[/] {escape(str(warning))}", highlight=False)
        execution_id = submitted.execution_id
        client.trigger(execution_id, params, idempotency_key=idempotency_key)
        if not quiet:
            _follow(client, execution_id, f"{submitted.name} v{submitted.version}")
        return settle(client, execution_id)


def _check_inputs(file: Path, params: dict[str, Any]) -> None:
    """Inputs the file's workflow refuses, every problem listed (exit 2) before anything is
    sent: the server would store the submitted execution, then refuse its trigger. A file
    this process cannot read as a definition (a handler only the server has) is left to the
    server to judge."""
    from orchestrion.engine.trigger_checks import check_inputs
    from orchestrion.errors import DefinitionError, OrchestrionError
    from orchestrion.handlers.loading import load_definition

    try:
        spec = load_definition(file).spec
    except (OrchestrionError, OSError, ValueError):
        return
    try:
        check_inputs(spec, params)
    except DefinitionError as exc:
        print_definition_error(exc)
        raise typer.Exit(EXIT_INVALID) from None


def settle(client: Client, execution_id: str) -> Settled:
    """Poll until the execution is final, or waits for a decision here or in a child."""
    from orchestrion.core.states import ExecutionStatus

    while True:
        current = client.status(execution_id, include_outputs=False)
        if current.finished:
            return client.wait(execution_id, poll_interval=_POLL).to_result(), []
        if current.status is ExecutionStatus.WAITING:
            decisions = _decisions(client, execution_id)
            if decisions:
                return client.status(execution_id).to_result(), decisions
        time.sleep(_POLL)


def _decisions(client: Client, execution_id: str, depth: int = 0) -> list[tuple[str, str]]:
    """Nodes waiting for a person in the execution and in the children it waits on (a
    ``workflow`` node's ``node.waiting`` event names its child)."""
    from orchestrion.core.reasons import DECIDABLE_WAITS, WaitReason
    from orchestrion.core.record_types import RecordType
    from orchestrion.core.states import NodeState

    current = client.status(execution_id, include_outputs=False)
    found = [
        (execution_id, node_id)
        for node_id, node in current.nodes.items()
        if node.state is NodeState.WAITING and node.wait_reason in DECIDABLE_WAITS
    ]
    if depth >= _MAX_DEPTH or not any(
        node.state is NodeState.WAITING and node.wait_reason == WaitReason.CHILD
        for node in current.nodes.values()
    ):
        return found
    children: list[str] = []
    after = 0
    while True:
        page = client.events(execution_id, after, types=[RecordType.NODE_WAITING])
        for event in page.items:
            child = event.data.get("child_execution_id")
            if isinstance(child, str) and child not in children:
                children.append(child)
        if not page.items or page.next_after <= after:
            break
        after = page.next_after
    for child in children:
        if not client.status(child, include_outputs=False).finished:
            found.extend(_decisions(client, child, depth + 1))
    return found


def _follow(client: Client, execution_id: str, title: str) -> None:
    """Live progress from the event stream, or from polling when the stream is unavailable."""
    from orchestrion.cli.progress import ProgressView
    from orchestrion.client import ApiConnectionError, ApiError
    from orchestrion.core.reasons import WaitReason
    from orchestrion.core.record_types import RecordType

    current = client.status(execution_id, include_outputs=False)
    view = ProgressView(err, title, tuple(current.nodes))
    view.execution_id = execution_id
    with view:
        try:
            with closing(client.stream_events(execution_id)) as events:
                for event in events:
                    record = _record(event)
                    if record is not None:
                        view.on_records(execution_id, [record])
                    if event.type == RecordType.NODE_WAITING and (
                        event.data.get("wait_reason") == WaitReason.CHILD
                        or _decisions(client, execution_id)
                    ):
                        break  # a person decides next, or a child (whose events are not here)
                else:
                    return
        except ApiConnectionError:
            raise
        except ApiError:
            pass  # no event stream on this server: poll instead
        _poll(client, execution_id, view)


def _poll(client: Client, execution_id: str, view: ProgressView) -> None:
    from orchestrion.core.events import Record
    from orchestrion.core.record_types import NODE_RECORD_OF_STATE, RecordType
    from orchestrion.core.states import ExecutionStatus

    seen: dict[str, tuple[str, int, str | None]] = {}
    while True:
        current = client.status(execution_id, include_outputs=False)
        records = []
        for node_id, node in current.nodes.items():
            now = (node.state.value, node.attempt, node.compensation)
            if seen.get(node_id) != now:
                seen[node_id] = now
                failed = node.compensation == "failed"  # its node stays completed
                records.append(
                    Record(
                        type=RecordType.NODE_COMPENSATION_FAILED
                        if failed
                        else NODE_RECORD_OF_STATE[node.state],
                        at=time.time(),
                        node=node_id,
                        attempt=node.attempt,
                        state=node.state,
                        error=node.error,
                    )
                )
        if records:
            view.on_records(execution_id, records)
        if current.finished or (
            current.status is ExecutionStatus.WAITING and _decisions(client, execution_id)
        ):
            return
        time.sleep(_POLL)


def _record(event: Event) -> Record | None:
    """A journal event as the engine record ``ProgressView`` reads (node events only)."""
    from orchestrion.core.events import Record
    from orchestrion.core.record_types import NODE_RECORD_OF_STATE, RecordType

    state = event.node_state
    if state is None:
        return None
    try:
        kind = RecordType(event.type)
    except ValueError:  # a newer server's record: the state it names is what shows
        kind = NODE_RECORD_OF_STATE[state]
    return Record(
        type=kind,
        at=event.at or 0.0,
        node=event.node_id,
        attempt=event.attempt,
        state=state,
        data=event.data,
        error=event.data.get("error"),
    )


# ---------------------------------------------------------------------------- executions


def _with_result(client: Client, execution: Execution) -> Execution:
    from dataclasses import replace

    if execution.finished and execution.result is None:
        return replace(execution, result=client.results(execution.execution_id).result)
    return execution


def status(server: str, api_key: str | None, execution_id: str) -> ExecutionResult:
    """The execution as ``orchestrion status`` shows it, with its result once final."""
    with _connected(server, api_key) as client:
        return _with_result(client, client.status(execution_id)).to_result()


def list_rows(
    server: str,
    api_key: str | None,
    statuses: list[ExecutionStatus] | None,
    workflow: str | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Up to ``limit`` executions, newest first, as the rows ``render_list`` draws."""
    from itertools import islice

    with _connected(server, api_key) as client:
        found = client.iter_executions(statuses, workflow, page_size=min(limit, 500))
        with closing(found):
            return [
                {
                    "id": item.execution_id,
                    "workflow": item.workflow,
                    "version": item.version,
                    "status": item.status.value,
                    "created_at": item.created_at,
                    "started_at": item.started_at,
                    "finished_at": item.finished_at,
                }
                for item in islice(found, limit)
            ]


def cancel(
    server: str, api_key: str | None, execution_id: str, *, force: bool = False
) -> str | None:
    """Cancel the execution on the server; what to say instead of "cancelled" when the
    server only recorded the cancel (the execution was compensating)."""
    from orchestrion.cli.control import compensating_note
    from orchestrion.core.states import ExecutionStatus

    with _connected(server, api_key) as client:
        accepted = client.cancel(execution_id, force=force)
        if accepted.status is ExecutionStatus.CANCELLED:
            return None
        return compensating_note("cancel", client.status(execution_id).error)


def decide(
    server: str,
    api_key: str | None,
    execution_id: str,
    node: str,
    *,
    approved: bool,
    by: str | None,
    comment: str | None,
) -> Settled:
    """Approve or reject on the server; wait until the execution ends or waits again. A
    decision the server handed over without seeing it applied (scale-out, a busy or
    restarting cluster) is not waited for: deciding again would not help (the server refuses
    a second decision while this one is under way), so it says how to check (exit 3)."""
    with _connected(server, api_key) as client:
        if approved:
            answer = client.approve(execution_id, node, by=by, comment=comment)
        else:
            answer = client.reject(execution_id, node, by=by, comment=comment)
        if _UNCONFIRMED in answer.message:
            verb = "approval" if approved else "rejection"
            err.print(
                f"[yellow]not confirmed:[/] {verb} of node '{escape(node)}' sent; the server"
                " has not seen it applied in time (it is carried out when the cluster can)."
                f" Check with: orchestrion status {escape(execution_id)} --server"
                f" {escape(server)} (do not decide again: a second decision is refused while"
                " this one is under way)",
                highlight=False,
            )
            raise typer.Exit(EXIT_UNAVAILABLE)
        return settle(client, execution_id)


def pause(server: str, api_key: str | None, execution_id: str) -> str | None:
    """Pause the execution on the server; what to say instead of "paused" when the server
    only recorded the pause (the execution was compensating)."""
    from orchestrion.cli.control import compensating_note
    from orchestrion.core.states import ExecutionStatus

    with _connected(server, api_key) as client:
        accepted = client.pause(execution_id)
        if accepted.status is ExecutionStatus.PAUSED:
            return None
        return compensating_note("pause", client.status(execution_id).error)


def retry(
    server: str, api_key: str | None, execution_id: str, from_node: str | None = None
) -> Settled:
    """Retry a failed or cancelled execution (or re-run from a node); wait for its end or
    for a person."""
    with _connected(server, api_key) as client:
        client.retry(execution_id, from_node)
        return settle(client, execution_id)


def resume(server: str, api_key: str | None, execution_id: str | None) -> list[Settled]:
    """Resume a paused execution (any other is just waited for); wait for its end or for a
    person."""
    from orchestrion.core.states import ExecutionStatus

    if execution_id is None:
        fail(EXIT_INVALID, "with --server, resume needs an execution id")
    with _connected(server, api_key) as client:
        if client.status(execution_id, include_outputs=False).status is ExecutionStatus.PAUSED:
            client.resume(execution_id)
        return [settle(client, execution_id)]
