"""The ``orchestrion`` command line.

Exit codes: 0 the execution completed (or the command succeeded), 1 it failed or was
cancelled, 2 the definition or the command's input is invalid (nothing was stored or run),
3 the state store (or the --server) could not be used, 4 the execution waits for a person,
5 no execution (or definition) has the id given, 6 the --server refused the API key (missing,
unknown, or its role does not allow the call), 130 interrupted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from orchestrion.cli.journal import NodeTotal
    from orchestrion.core.result import ExecutionResult
    from orchestrion.definition.limits import DefinitionLimits
    from orchestrion.engine.facade import Engine
    from orchestrion.store.base import DefinitionRecord

__all__ = ["app", "main"]

Settled = tuple["ExecutionResult", list[tuple[str, str]]]
"""A result and the (execution, node) decisions it waits for."""

app = typer.Typer(
    name="orchestrion",
    help="Durable workflow orchestration: run DAGs from YAML or JSON.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_STORE, EXIT_WAITING = 0, 1, 2, 3, 4
EXIT_NOT_FOUND, EXIT_DENIED = 5, 6

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="SQLite file or database URL (default: $ORCHESTRION_DATABASE_URL or ./orchestrion.db)",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
ServerOption = Annotated[
    str | None,
    typer.Option(
        "--server",
        envvar="ORCHESTRION_SERVER_URL",
        help="Use a running Orchestrion server at this URL instead of the local database.",
    ),
]
ApiKeyOption = Annotated[
    str | None, typer.Option("--api-key", envvar="ORCHESTRION_API_KEY", help="Server API key.")
]


def _print_version(value: bool) -> None:
    if value:
        from orchestrion import __version__

        typer.echo(f"orchestrion {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the Orchestrion version and exit.",
        ),
    ] = False,
) -> None:
    """Durable workflow orchestration: run DAGs from YAML or JSON."""


def main() -> None:
    """Console-script entry point."""
    from orchestrion.governance.log_masking import mask_uncaught_exceptions
    from orchestrion.settings import claim_process

    claim_process()  # this process is Orchestrion's: gc_freeze and mask_all_logs default on
    logging.basicConfig(level=_log_level(), format="%(levelname)s %(name)s: %(message)s")
    mask_uncaught_exceptions()  # with the policy's masker, once an engine has loaded it
    _check_arguments(sys.argv[1:])
    app()


def _check_arguments(arguments: list[str]) -> None:
    """Exit 2 for an argument that is not UTF-8 (Python hands it over with lone surrogates,
    which no store, URL or JSON document can take), unless it names an existing file."""
    for argument in arguments:
        try:
            argument.encode("utf-8")
        except UnicodeEncodeError:
            if not Path(argument).exists():
                shown = _shown(argument)
                shown = shown if len(shown) <= 80 else shown[:77] + "..."
                err.print(
                    f"[bold red]error:[/] argument '{escape(shown)}' is not UTF-8 text",
                    highlight=False,
                )
                sys.exit(EXIT_INVALID)  # typer is not running yet: no typer.Exit here


def _print_warnings(warnings: Any) -> None:
    """A definition's warnings on stderr, unless ORCHESTRION_LOG_LEVEL asks for less."""
    if logging.getLevelName(_log_level().upper()) > logging.WARNING:
        return
    for warning in warnings:
        err.print(f"[yellow]warning:[/] {escape(str(warning))}", highlight=False)


def _log_level() -> str:
    """ORCHESTRION_LOG_LEVEL when it is set (environment or ``.env``), else WARNING: the
    commands people type are quiet unless asked; the service's default (INFO) is its own."""
    from orchestrion.errors import ConfigurationError
    from orchestrion.settings import load_settings

    try:
        settings = load_settings()
    except (ConfigurationError, ValueError):
        return "WARNING"  # the command that loads the settings names the problem
    return settings.log_level if "log_level" in settings.model_fields_set else "WARNING"


def _database_url(db: str | None, *, create: bool = False) -> str | None:
    """The URL of ``--db`` (a file path or a URL); exit 3 for a SQLite file in a directory
    that does not exist, rather than grow a tree and an empty store from a typo, and, unless
    the command may ``create`` the store (run, serve), for a file that does not exist: a
    mistyped path to read or act on is not a new, empty database."""
    if db is None:
        return None
    url = db if "://" in db else f"sqlite:///{db}"
    if url.startswith("sqlite:///"):
        from orchestrion.errors import ConfigurationError
        from orchestrion.store.sqlite import url_to_sqlite_path

        try:
            folder = Path(url_to_sqlite_path(url)).expanduser().parent
        except ConfigurationError:
            return url  # the store says what is wrong with it
        if not folder.is_dir():
            _fail(EXIT_STORE, f"cannot open SQLite store {db}: directory {folder} does not exist")
        path = Path(url_to_sqlite_path(url)).expanduser()
        if not create and not path.exists():
            _fail(EXIT_STORE, f"no SQLite store at {db}: the file does not exist (check --db)")
    return url


def _parse_inputs(pairs: list[str], inputs_file: Path | None) -> dict[str, Any]:
    """``--inputs-file`` then each ``-i key=value`` (a JSON value, else the text itself).

    Values go through the same checks as an API body (``safe_data``): an argument that is
    not UTF-8, nesting beyond 64 levels, an integer of 5,000 digits or ``NaN`` is exit 2
    naming the input, never a traceback.
    """
    from orchestrion import safe_data

    inputs: dict[str, Any] = {}
    if inputs_file is not None:
        try:
            loaded = safe_data.loads(inputs_file.read_bytes())
        except (OSError, ValueError) as exc:  # UnsafeData and JSONDecodeError included
            _fail(EXIT_INVALID, f"cannot read inputs file {_shown(inputs_file)}: {exc}")
        if not isinstance(loaded, dict):
            _fail(EXIT_INVALID, f"inputs file {_shown(inputs_file)} must hold a JSON object")
        inputs.update(loaded)
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            _fail(EXIT_INVALID, f"bad input {_shown(pair)!r}: use -i key=value")
        try:
            safe_data.check_text(pair)  # an argument that was not UTF-8 holds surrogates
            inputs[key] = safe_data.loads(raw)
        except json.JSONDecodeError:
            inputs[key] = raw
        except safe_data.UnsafeData as exc:
            where = f" {exc.where}" if exc.pointer or exc.line else ""
            _fail(EXIT_INVALID, f"input '{_shown(key)}': {exc.reason}{where}")
    return inputs


def _shown(value: object) -> str:
    """``value`` as printable text: a path or argument that was not UTF-8 still prints."""
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


def _fail(code: int, message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def _run_async(coro: Any) -> Any:
    """Run a coroutine, turning Orchestrion errors into clean messages and exit codes."""
    from orchestrion.cli.handover import graceful_on_sigterm
    from orchestrion.errors import (
        ConfigurationError,
        DefinitionError,
        ExecutionError,
        ExecutionNotFound,
        StoreError,
    )

    try:
        return asyncio.run(graceful_on_sigterm(coro))
    except DefinitionError as exc:
        _print_definition_error(exc)
        raise typer.Exit(EXIT_INVALID) from None
    except ExecutionNotFound as exc:
        _fail(EXIT_NOT_FOUND, str(exc))
    except (ExecutionError, ConfigurationError) as exc:
        _fail(EXIT_INVALID, str(exc))
    except StoreError as exc:
        _fail(EXIT_STORE, str(exc))
    except KeyboardInterrupt:
        err.print("interrupted: unfinished work resumes on the next start (orchestrion resume)")
        raise typer.Exit(130) from None


def _print_definition_error(exc: Any) -> None:
    source = f"{escape(str(exc.source))}: " if exc.source else ""
    count = len(exc.issues)
    err.print(
        f"[bold red]invalid workflow definition[/] {source}"
        f"({count} problem{'s' if count != 1 else ''})",
        highlight=False,
    )
    for issue in exc.issues:
        err.print(f"  [red]-[/] {escape(str(issue))}", highlight=False)


def _definition_limits() -> DefinitionLimits:
    """The definition size limits of one's own files under the policy in force."""
    from orchestrion.errors import ConfigurationError
    from orchestrion.governance.policy import definition_limits, load_policy
    from orchestrion.settings import load_settings

    try:
        loaded = load_policy(load_settings().governance_file)
    except ConfigurationError as exc:
        _fail(EXIT_INVALID, str(exc))
    return definition_limits(loaded, trusted=True)


def _resolve(execution_id: str, db: str | None, server: str | None, api_key: str | None) -> str:
    """The full id of the execution ``execution_id`` names (whole, or a unique prefix)."""
    from orchestrion.cli.ids import resolve

    return resolve(execution_id, db=db, server=server, api_key=api_key)


def _import_from_working_directory() -> None:
    """Local commands import `function: mysteps:step` from where they are started, as
    `python -m` would; the console script's own path holds only its bin directory."""
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)


def _engine(db: str | None, *, resume: bool = True, create: bool = False) -> Engine:
    from orchestrion.engine.facade import Engine

    _import_from_working_directory()

    return Engine(_database_url(db, create=create), resume=resume)


# ---------------------------------------------------------------------------- run


@app.command()
def run(
    file: Annotated[
        Path,
        typer.Argument(
            help="Workflow definition (YAML or JSON), or the name of a stored one "
            "(its newest version; it keeps the trust level it was stored with)."
        ),
    ],
    inputs: Annotated[
        list[str] | None, typer.Option("--input", "-i", help="Input param key=value (JSON values).")
    ] = None,
    inputs_file: Annotated[
        Path | None, typer.Option("--inputs-file", help="JSON file of input params.")
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
    idempotency_key: Annotated[
        str | None, typer.Option("--idempotency-key", help="Return the execution made with it.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No live progress.")] = False,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Run a workflow in this process (embedded mode), or on --server, and show its results."""
    params = _parse_inputs(inputs or [], inputs_file)
    decisions = None
    if server:
        from orchestrion.cli import remote

        result, decisions = remote.run(
            server, api_key, file, params, quiet=as_json or quiet, idempotency_key=idempotency_key
        )
    else:
        result, decisions = _run_async(
            _run(file, file.exists(), params, db, as_json or quiet, idempotency_key)
        )
    _report(result, as_json)
    _exit_for(result, db, decisions, server)


def _exit_for(
    result: ExecutionResult,
    db: str | None,
    decisions: list[tuple[str, str]] | None = None,
    server: str | None = None,
) -> None:
    """Exit 0 completed, 1 failed/cancelled, 4 waiting for a person (with what to do next).

    ``decisions`` lists the waiting nodes, children's included; by default the result's own.
    """
    from orchestrion.cli.handover import print_decisions
    from orchestrion.core.reasons import DECIDABLE_WAITS
    from orchestrion.core.states import ExecutionStatus

    if result.status is ExecutionStatus.WAITING:
        if decisions is None:
            decisions = [
                (result.execution_id, node.node_id)
                for node in result.nodes.values()
                if node.wait_reason in DECIDABLE_WAITS
            ]
        where = f" --server {server}" if server else f" --db {db}" if db else ""
        print_decisions(err, decisions, where)
        raise typer.Exit(EXIT_WAITING)
    raise typer.Exit(EXIT_OK if result.ok else EXIT_FAILED)


async def _settled(engine: Engine, execution_id: str) -> Settled:
    """Wait until the execution ends or waits for a person; what to show and to decide."""
    result = await engine.settle(execution_id)
    decisions = [
        (found.execution_id, found.node_id)
        for found in await engine.pending_decisions(execution_id)
    ]
    return result, decisions


async def _run(
    file: Path, is_file: bool, params: dict[str, Any], db: str | None, quiet: bool, key: str | None
) -> Settled:
    from orchestrion.cli.progress import ProgressView
    from orchestrion.definition.loader import LoadedDefinition
    from orchestrion.definition.model import WorkflowSpec
    from orchestrion.handlers.loading import load_definition

    _import_from_working_directory()
    loaded = load_definition(file, limits=_definition_limits()) if is_file else None
    _print_warnings(loaded.warnings if loaded else ())
    if loaded is not None:
        from orchestrion.engine.trigger_checks import check_inputs

        check_inputs(loaded.spec, params)  # exit 2 stores nothing: checked before the submit
    async with _engine(db, create=True) as engine:
        # One's own file runs as trusted as this process; a stored definition (by name, maybe
        # submitted through the service) keeps its own trust level (governance/trust.py).
        source: LoadedDefinition | DefinitionRecord
        if loaded is not None:
            source = loaded
            stored = await engine.submit(loaded)
            spec = loaded.spec
        else:
            stored = source = await _stored_definition(engine, str(file))
            spec = WorkflowSpec.model_validate(stored.spec)
        ids = tuple(node.id for node in spec.dag.nodes)
        view = ProgressView(err, f"{stored.name} v{stored.version}", ids)
        if not quiet:
            engine.add_listener(view.on_records)
            with view:
                record = await engine.start_execution(source, params, idempotency_key=key)
                view.execution_id = record.id
                return await _settled(engine, record.id)
        record = await engine.start_execution(source, params, idempotency_key=key)
        return await _settled(engine, record.id)


async def _stored_definition(engine: Engine, name: str) -> DefinitionRecord:
    """The newest stored version of ``name`` (``run`` given no file of that name)."""
    from orchestrion.errors import ExecutionError, ExecutionNotFound

    try:
        return await engine.store.find_definition(name)
    except ExecutionNotFound:
        raise ExecutionError(
            f"no file '{name}', and no stored workflow definition named '{name}'"
        ) from None


def _report(
    result: ExecutionResult, as_json: bool, totals: dict[str, NodeTotal] | None = None
) -> None:
    if as_json:
        console.print_json(json.dumps(result.to_dict(), default=str))
        return
    from orchestrion.cli.render import render_result

    render_result(console, result, totals)


# ---------------------------------------------------------------------------- definitions


@app.command()
def validate(
    file: Annotated[Path, typer.Argument(help="Workflow definition (YAML or JSON).")],
    as_json: JsonOption = False,
) -> None:
    """Check a definition without running it; every problem is listed."""
    from orchestrion.errors import DefinitionError
    from orchestrion.handlers.loading import load_definition

    _import_from_working_directory()
    try:
        loaded = load_definition(file, limits=_definition_limits())
    except DefinitionError as exc:
        if as_json:
            console.print_json(
                json.dumps({"valid": False, "issues": [i.to_dict() for i in exc.issues]})
            )
        else:
            _print_definition_error(exc)
        raise typer.Exit(EXIT_INVALID) from None
    spec = loaded.spec
    if as_json:
        console.print_json(
            json.dumps(
                {
                    "valid": True,
                    "name": spec.name,
                    "version": spec.version,
                    "dialect": loaded.dialect,
                    "nodes": len(spec.dag.nodes),
                    "warnings": loaded.warnings,
                }
            )
        )
        return
    _print_warnings(loaded.warnings)
    edges = sum(len(node.dependencies) for node in spec.dag.nodes)
    console.print(
        f"[green]✓[/] {escape(_shown(file))}: workflow '{escape(spec.name)}' is valid "
        f"({len(spec.dag.nodes)} nodes, {edges} edges, {loaded.dialect} format)",
        highlight=False,
    )


@app.command()
def graph(
    file: Annotated[Path, typer.Argument(help="Workflow definition (YAML or JSON).")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="mermaid or dot")] = "mermaid",
) -> None:
    """Print the workflow's graph as Mermaid (default) or Graphviz DOT."""
    from orchestrion.definition.graph import to_dot, to_mermaid
    from orchestrion.errors import DefinitionError
    from orchestrion.handlers.loading import load_definition

    if fmt not in ("mermaid", "dot"):
        _fail(EXIT_INVALID, f"unknown format {fmt!r}: use mermaid or dot")
    try:
        loaded = load_definition(file, limits=_definition_limits())
    except DefinitionError as exc:
        _print_definition_error(exc)
        raise typer.Exit(EXIT_INVALID) from None
    text = to_mermaid(loaded.spec) if fmt == "mermaid" else to_dot(loaded.spec)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


# ---------------------------------------------------------------------------- executions


@app.command()
def status(
    execution_id: Annotated[str, typer.Argument(help="Execution id, or a unique prefix of it.")],
    db: DbOption = None,
    as_json: JsonOption = False,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Show an execution's state, its nodes, attempts, errors and result."""
    execution_id = _resolve(execution_id, db, server, api_key)

    from orchestrion.cli import journal

    async def go() -> tuple[ExecutionResult, list[dict[str, Any]]]:
        async with _engine(db, resume=False) as engine:
            result = await engine.result(execution_id)
            return result, [] if as_json else await journal.local_events(engine, execution_id)

    if server:
        from orchestrion.cli import remote

        result = remote.status(server, api_key, execution_id)
        rows = [] if as_json else journal.remote_events(server, api_key, execution_id)
    else:
        result, rows = _run_async(go())
    _report(result, as_json, journal.node_totals(rows))


@app.command()
def events(
    execution_id: Annotated[str, typer.Argument(help="Execution id, or a unique prefix of it.")],
    db: DbOption = None,
    as_json: JsonOption = False,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Show an execution's journal: every attempt of every node, with its error and timing."""
    from orchestrion.cli import journal

    execution_id = _resolve(execution_id, db, server, api_key)

    async def go() -> list[dict[str, Any]]:
        async with _engine(db, resume=False) as engine:
            return await journal.local_events(engine, execution_id)

    rows = journal.remote_events(server, api_key, execution_id) if server else _run_async(go())
    if as_json:
        console.print_json(json.dumps(rows, default=str))
        return
    journal.render_events(console, rows)


@app.command(name="list")
def list_(
    db: DbOption = None,
    state: Annotated[
        list[str] | None, typer.Option("--status", "-s", help="Filter by status (repeatable).")
    ] = None,
    workflow: Annotated[str | None, typer.Option("--workflow", "-w")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000)] = 20,
    as_json: JsonOption = False,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """List executions, newest first."""
    from orchestrion.core.states import ExecutionStatus
    from orchestrion.store.base import ExecutionFilter

    try:
        statuses = [ExecutionStatus(s.lower()) for s in state] if state else None
    except ValueError:
        _fail(EXIT_INVALID, f"unknown status in {state}: use {[s.value for s in ExecutionStatus]}")

    async def go() -> list[dict[str, Any]]:
        async with _engine(db, resume=False) as engine:
            flt = ExecutionFilter(status=statuses, definition_name=workflow, limit=limit)
            records, _cursor = await engine.list_executions(flt)
            rows = []
            for record in records:
                definition = await engine.store.get_definition(record.definition_id)
                rows.append(
                    {
                        "id": record.id,
                        "workflow": definition.name,
                        "version": definition.version,
                        "status": record.status.value,
                        "created_at": record.created_at,
                        "started_at": record.started_at,
                        "finished_at": record.finished_at,
                    }
                )
            return rows

    if server:
        from orchestrion.cli import remote

        rows = remote.list_rows(server, api_key, statuses, workflow, limit)
    else:
        rows = _run_async(go())
    if as_json:
        from orchestrion.cli.shapes import list_row

        console.print_json(json.dumps([list_row(row) for row in rows]))
        return
    from orchestrion.cli.render import render_list

    render_list(console, rows)


@app.command()
def cancel(
    execution_id: Annotated[str, typer.Argument(help="Execution id, or a unique prefix of it.")],
    db: DbOption = None,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Cancel an execution: running nodes are stopped, nothing new starts."""
    execution_id = _resolve(execution_id, db, server, api_key)

    async def go() -> None:
        async with _engine(db, resume=False) as engine:
            await engine.cancel(execution_id)

    if server:
        from orchestrion.cli import remote

        remote.cancel(server, api_key, execution_id)
    else:
        _run_async(go())
    console.print(f"cancelled {escape(execution_id)}", highlight=False)


@app.command()
def pause(
    execution_id: Annotated[str, typer.Argument(help="Execution id, or a unique prefix of it.")],
    db: DbOption = None,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Pause an execution: running nodes finish, nothing new starts until resume."""
    execution_id = _resolve(execution_id, db, server, api_key)

    async def go() -> None:
        async with _engine(db, resume=False) as engine:
            await engine.pause(execution_id)

    if server:
        from orchestrion.cli import remote

        remote.pause(server, api_key, execution_id)
    else:
        _run_async(go())
    console.print(
        f"paused {escape(execution_id)}; continue with: orchestrion resume {escape(execution_id)}",
        highlight=False,
    )


@app.command()
def retry(
    execution_id: Annotated[str, typer.Argument(help="A failed or cancelled execution.")],
    from_node: Annotated[
        str | None,
        typer.Option("--from-node", help="Re-run this node and its downstream (any final run)."),
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Run a failed execution again from its failed nodes (completed nodes are kept)."""
    execution_id = _resolve(execution_id, db, server, api_key)

    async def go() -> Settled:
        async with _engine(db, resume=False) as engine:
            await engine.retry(execution_id, from_node=from_node)
            return await _settled(engine, execution_id)

    decisions = None
    if server:
        from orchestrion.cli import remote

        result, decisions = remote.retry(server, api_key, execution_id, from_node)
    else:
        result, decisions = _run_async(go())
    _report(result, as_json)
    _exit_for(result, db, decisions, server)


@app.command()
def resume(
    execution_id: Annotated[
        str | None, typer.Argument(help="A paused execution (default: every unfinished one).")
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Continue unfinished executions (after a crash or kill) and paused ones, to the end."""
    if execution_id is not None:
        execution_id = _resolve(execution_id, db, server, api_key)

    async def go() -> list[Settled]:
        from orchestrion.core.states import FINAL_EXECUTION_STATES, ExecutionStatus
        from orchestrion.errors import InvalidTransition

        async with _engine(db) as engine:
            if execution_id is not None:
                record = await engine.store.get_execution(execution_id)
                if record.status is ExecutionStatus.PAUSED:
                    await engine.resume(execution_id)
                elif record.status not in FINAL_EXECUTION_STATES and not engine.is_live(
                    execution_id
                ):
                    raise InvalidTransition(
                        f"execution {execution_id} is not paused (status "
                        f"{record.status.value}) and another process is running it"
                    )
                ids = [execution_id]
            else:
                records = await engine.store.unfinished_executions()
                unfinished = {record.id for record in records}
                ids = []
                for record in records:
                    if record.status is ExecutionStatus.PAUSED:
                        await engine.resume(record.id)
                    if record.parent_execution_id not in unfinished:  # shown with its parent
                        ids.append(record.id)
            return [await _settled(engine, i) for i in ids]

    if server:
        from orchestrion.cli import remote

        settled = remote.resume(server, api_key, execution_id)
    else:
        settled = _run_async(go())
    results = [result for result, _ in settled]
    decisions = [decision for _, found in settled for decision in found]
    if not results:
        console.print("nothing to resume: no unfinished executions")
        return
    for result in results:
        _report(result, as_json)
    _exit_for(_overall(results), db, decisions, server)


def _overall(results: list[ExecutionResult]) -> ExecutionResult:
    """The result whose outcome decides the exit code: a waiting one, else a failed one."""
    from orchestrion.core.states import ExecutionStatus

    for result in results:
        if result.status is ExecutionStatus.WAITING:
            return result
    for result in results:
        if not result.ok:
            return result
    return results[0]


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option("--host", help="Address to listen on (default 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option("--port", min=0, max=65535, help="Port (default 8000; 0 picks one)."),
    ] = None,
    db: DbOption = None,
    log_format: Annotated[
        str | None,
        typer.Option("--log-format", help="json (default) or console.", case_sensitive=False),
    ] = None,
    embedded_workers: Annotated[
        bool,
        typer.Option(
            "--embedded-workers",
            help="Run workflows in this process even when ORCHESTRION_REDIS_URL is set.",
        ),
    ] = False,
) -> None:
    """Serve the REST API and run workflows in this process, until SIGTERM or Ctrl-C.

    With ORCHESTRION_REDIS_URL set (scale-out), the API hands executions to the
    orchestrators instead; --embedded-workers runs them here all the same.
    """
    from orchestrion.cli import early_signals

    early_signals.defer()
    from orchestrion.errors import ConfigurationError
    from orchestrion.settings import load_settings

    if log_format is not None and log_format.lower() not in ("json", "console"):
        _fail(EXIT_INVALID, f"--log-format must be json or console, not {log_format!r}")
    overrides: dict[str, Any] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    if db is not None:
        overrides["database_url"] = _database_url(db, create=True)
    if embedded_workers:
        overrides["redis_url"] = None
    try:
        settings = load_settings(**overrides)
    except ConfigurationError as exc:
        _fail(EXIT_INVALID, str(exc))
    from orchestrion.api.server import serve as run_server

    try:
        started = run_server(
            settings,
            log_format=log_format.lower() if log_format else None,
            stop_requested=early_signals.requested,
        )
    except ConfigurationError as exc:  # the governance policy names its field and line
        _fail(EXIT_INVALID, str(exc))
    if not started:
        raise typer.Exit(EXIT_STORE)


def _decide_command(
    execution_id: str,
    node: str,
    *,
    approved: bool,
    by: str | None,
    comment: str | None,
    db: str | None,
    server: str | None,
    api_key: str | None,
    as_json: bool,
) -> None:
    execution_id = _resolve(execution_id, db, server, api_key)
    if server:
        from orchestrion.cli import remote

        result, decisions = remote.decide(
            server, api_key, execution_id, node, approved=approved, by=by, comment=comment
        )
    else:

        async def go() -> Settled:
            async with _engine(db, resume=False) as engine:
                # A child's decision completes the child: its parents, released by the run
                # that handed over, are driven here to take that result and go on.
                root = await engine.adopt_lineage(execution_id)
                await engine.decide(execution_id, node, approved=approved, by=by, comment=comment)
                return await _settled(engine, root)

        result, decisions = _run_async(go())
    _report(result, as_json)
    _exit_for(result, db, decisions, server)


DecidedBy = Annotated[str | None, typer.Option("--by", help="Who decides (recorded).")]
Comment = Annotated[str | None, typer.Option("--comment", "-m", help="Why (recorded).")]


@app.command()
def approve(
    execution_id: Annotated[str, typer.Argument(help="Execution id, or a unique prefix of it.")],
    node: Annotated[str, typer.Argument(help="The node waiting for approval.")],
    by: DecidedBy = None,
    comment: Comment = None,
    db: DbOption = None,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Approve a node waiting for approval; the execution then carries on (locally: here)."""
    _decide_command(
        execution_id,
        node,
        approved=True,
        by=by,
        comment=comment,
        db=db,
        server=server,
        api_key=api_key,
        as_json=as_json,
    )


@app.command()
def reject(
    execution_id: Annotated[str, typer.Argument(help="Execution id, or a unique prefix of it.")],
    node: Annotated[str, typer.Argument(help="The node waiting for approval.")],
    by: DecidedBy = None,
    comment: Comment = None,
    db: DbOption = None,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Reject a node waiting for approval (it fails, unless its on_reject is continue)."""
    _decide_command(
        execution_id,
        node,
        approved=False,
        by=by,
        comment=comment,
        db=db,
        server=server,
        api_key=api_key,
        as_json=as_json,
    )


@app.command()
def version() -> None:
    """Print the Orchestrion version."""
    from orchestrion import __version__

    console.print(f"orchestrion {__version__}")


# The scale-out processes and tools register their commands on ``app``.
from orchestrion.cli import audit as _audit  # noqa: E402, F401
from orchestrion.cli import authoring as _authoring  # noqa: E402, F401
from orchestrion.cli import dlq as _dlq  # noqa: E402, F401
from orchestrion.cli import keys as _keys  # noqa: E402, F401
from orchestrion.cli import processes as _processes  # noqa: E402, F401
from orchestrion.cli import topology as _topology  # noqa: E402, F401

if __name__ == "__main__":  # pragma: no cover
    # `python -m orchestrion.cli.app`: run the app of the imported module, on which the
    # command modules above registered (this file as __main__ is a second copy).
    from orchestrion.cli.app import main as _main

    _main()
