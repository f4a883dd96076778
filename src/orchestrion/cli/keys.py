"""``orchestrion keys``: encryption keys for classified values at rest.

    orchestrion keys generate [--id ID]            # prints a new "id:base64key" to add
    orchestrion keys rotate [--db PATH|URL] [--batch-size N] [--dry-run] [--json]

Rotation: put the new key first in ``ORCHESTRION_ENCRYPTION_KEYS`` (the first one encrypts,
all decrypt), restart the processes, then run ``keys rotate``: every stored envelope is
re-encrypted with the first key, in batches, safely beside running engines. When it reports
nothing left on other keys, remove the old ones from the variable.

Exit codes (as in ``cli/exits.py``): 0 done; 1 values left on other keys (changed during the
run: run again; or unreadable: their key ids are printed); 2 no key ring or a bad option;
3 the store cannot be read.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated

import typer
from rich.markup import escape

from orchestrion.cli.exits import EXIT_FAILED, EXIT_INVALID, EXIT_STORE
from orchestrion.cli.options import DbOption, JsonOption
from orchestrion.cli.terminal import console, err

__all__ = ["keys_app"]

keys_app = typer.Typer(
    name="keys",
    help="Encryption keys of classified values at rest: generate one, rotate to the first.",
    no_args_is_help=True,
)


@keys_app.command()
def generate(
    key_id: Annotated[
        str | None, typer.Option("--id", help="Key id (default: k + the UTC date and time).")
    ] = None,
) -> None:
    """Print a new 256-bit key as an "id:base64key" entry of ORCHESTRION_ENCRYPTION_KEYS."""
    from orchestrion.governance.encryption import KeyRing

    chosen = key_id or time.strftime("k%Y%m%d%H%M%S", time.gmtime())
    if not chosen or any(c in chosen for c in ":, \t"):
        err.print("[bold red]error:[/] a key id must not be empty nor hold ':', ',' or spaces")
        raise typer.Exit(EXIT_INVALID)
    typer.echo(f"{chosen}:{KeyRing.generate_key()}")
    err.print(
        "put it first in ORCHESTRION_ENCRYPTION_KEYS (the first key encrypts), restart, then"
        " run `orchestrion keys rotate`",
        highlight=False,
    )


@keys_app.command()
def rotate(
    db: DbOption = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=100_000, help="Rows per transaction.")
    ] = 500,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be re-encrypted; write nothing.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Re-encrypt every stored value with the first key of ORCHESTRION_ENCRYPTION_KEYS."""
    from orchestrion.cli.local import database_url
    from orchestrion.errors import ConfigurationError, StoreError
    from orchestrion.governance.runtime import Governance
    from orchestrion.settings import load_settings
    from orchestrion.store.rotation import rotate as run_rotation

    try:
        settings = load_settings()
        governance = Governance.from_settings(settings)
    except ConfigurationError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(EXIT_INVALID) from None
    ring = governance.keyring
    variable = governance.policy.encryption.key_env
    if ring is None:
        err.print(f"[bold red]error:[/] {variable} is not set: there is no key to rotate to")
        raise typer.Exit(EXIT_INVALID)
    url = database_url(db) or settings.database_url

    def step(table: str, rows: int) -> None:
        if not as_json:
            err.print(f"  {table}: {rows} row(s) with encrypted values", highlight=False)

    try:
        report = asyncio.run(
            run_rotation(
                url,
                ring,
                batch_size=batch_size,
                dry_run=dry_run,
                progress=step,
                sqlite_synchronous=settings.sqlite_synchronous,
            )
        )
    except ConfigurationError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(EXIT_INVALID) from None
    except StoreError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(EXIT_STORE) from None
    summary = {
        "primary": report.primary,
        "dry_run": dry_run,
        "rows": dict(report.rows),
        "rewritten": dict(report.rewritten),
        "already_current": report.current,
        "changed_meanwhile": report.changed,
        "unreadable": dict(report.unreadable),
    }
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        verb = "would re-encrypt" if dry_run else "re-encrypted"
        moved = sum(report.rewritten.values())
        console.print(
            f"{verb} {moved} value(s) with key '{report.primary}'"
            f" ({', '.join(f'{t}: {n}' for t, n in report.rewritten.items()) or 'none'});"
            f" {report.current} already on it",
            highlight=False,
        )
        if report.changed:
            console.print(
                f"{report.changed} row(s) changed during the run: run again", highlight=False
            )
        for kid, count in report.unreadable.items():
            console.print(
                f"{count} value(s) cannot be decrypted: key {kid!r} is not in {variable}"
                " (or the value was tampered with)",
                highlight=False,
            )
    raise typer.Exit(0 if report.done else EXIT_FAILED)
