"""``orchestrion run``: submit a workflow (a file, or a stored definition by name) and run it
to the end here, with live progress, or on ``--server``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from orchestrion.cli.inputs import parse_inputs
from orchestrion.cli.local import (
    definition_limits,
    engine,
    import_from_working_directory,
    run_async,
)
from orchestrion.cli.options import ApiKeyOption, DbOption, JsonOption, ServerOption
from orchestrion.cli.outcome import Settled, exit_for, report, settled
from orchestrion.cli.terminal import err, print_warnings

if TYPE_CHECKING:
    from orchestrion.engine.facade import Engine
    from orchestrion.store.base import DefinitionRecord

__all__ = ["run"]


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
    if idempotency_key is not None:
        from orchestrion.cli.exits import EXIT_INVALID
        from orchestrion.cli.terminal import fail
        from orchestrion.core.idempotency import caller_key_problem

        # Refused here as the server refuses it, whether the run is local or not.
        if (problem := caller_key_problem(idempotency_key)) is not None:
            fail(EXIT_INVALID, f"--idempotency-key: {problem}")
    params = parse_inputs(inputs or [], inputs_file)
    decisions = None
    if server:
        from orchestrion.cli import remote

        result, decisions = remote.run(
            server, api_key, file, params, quiet=as_json or quiet, idempotency_key=idempotency_key
        )
    else:
        result, decisions = run_async(
            _run(file, file.exists(), params, db, as_json or quiet, idempotency_key)
        )
    report(result, as_json)
    exit_for(result, db, decisions, server)


async def _run(
    file: Path, is_file: bool, params: dict[str, Any], db: str | None, quiet: bool, key: str | None
) -> Settled:
    from orchestrion.cli.progress import ProgressView
    from orchestrion.definition.loader import LoadedDefinition
    from orchestrion.definition.model import WorkflowSpec
    from orchestrion.handlers.loading import load_definition

    import_from_working_directory()
    loaded = load_definition(file, limits=definition_limits()) if is_file else None
    print_warnings(loaded.warnings if loaded else ())
    if loaded is not None:
        from orchestrion.engine.trigger_checks import check_inputs

        check_inputs(loaded.spec, params)  # exit 2 stores nothing: checked before the submit
    async with engine(db, create=True) as local:
        local.followers.watch()  # its followers run here before the engine stops
        # One's own file runs as trusted as this process; a stored definition (by name, maybe
        # submitted through the service) keeps its own trust level (governance/trust.py).
        source: LoadedDefinition | DefinitionRecord
        if loaded is not None:
            source = loaded
            stored = await local.submit(loaded)
            spec = loaded.spec
        else:
            stored = source = await _stored_definition(local, str(file))
            spec = WorkflowSpec.model_validate(stored.spec)
        ids = tuple(node.id for node in spec.dag.nodes)
        view = ProgressView(err, f"{stored.name} v{stored.version}", ids)
        if not quiet:
            local.add_listener(view.on_records)
            with view:
                record = await local.start_execution(source, params, idempotency_key=key)
                view.execution_id = record.id
                outcome = await settled(local, record.id)
        else:
            record = await local.start_execution(source, params, idempotency_key=key)
            outcome = await settled(local, record.id)
        await _run_followers(local, record.id, quiet)
        return outcome


async def _run_followers(local: Engine, execution_id: str, quiet: bool) -> None:
    """The followers of the execution (workflow.completed/failed triggers), and theirs, run
    to their end here: the engine stops only once nothing it started owes more."""
    from rich.markup import escape

    for result in await local.followers.settle_chains([execution_id]):
        if not quiet:
            err.print(
                f"then {escape(result.workflow)} v{escape(result.version)}"
                f"  {result.execution_id}  {result.status.value.upper()}",
                highlight=False,
                soft_wrap=True,
            )


async def _stored_definition(local: Engine, name: str) -> DefinitionRecord:
    """The newest stored version of ``name`` (``run`` given no file of that name)."""
    from orchestrion.errors import ExecutionError, ExecutionNotFound

    try:
        return await local.store.find_definition(name)
    except ExecutionNotFound:
        raise ExecutionError(
            f"no file '{name}', and no stored workflow definition named '{name}'"
        ) from None
