"""``orchestrion purge``: retention, on the database directly. Finished executions older than
a duration go, with their node runs and events; the audit records stay, and the purge itself
is audited (count and cutoff) and anchored.

Exit codes as in ``cli/exits.py``: 2 bad input, 3 the database cannot be used.
"""

from __future__ import annotations

import getpass
import json
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from orchestrion.cli.audit_sources import with_log
from orchestrion.cli.exits import EXIT_INVALID
from orchestrion.cli.local import run_async
from orchestrion.cli.options import DbOption, JsonOption
from orchestrion.cli.terminal import console, fail

if TYPE_CHECKING:
    from orchestrion.store.audit_log import AuditLog

__all__ = ["purge"]


def _actor() -> str:
    """Who the audit trail records as purging: this user on this machine."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name in some containers
        return "cli"


def purge(
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than", help="e.g. 30d, 12h (default: retention.days of the governance policy)"
        ),
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete finished executions older than a duration, with their node runs and events.

    Audit records stay; the purge itself is audited (count and cutoff).
    """
    from orchestrion.definition.durations import parse_duration

    async def go(log: AuditLog) -> tuple[int, float]:
        if older_than is not None:
            try:
                seconds = parse_duration(older_than)
            except ValueError as exc:
                fail(EXIT_INVALID, f"--older-than: {exc}")
        else:
            days = log.retention_days
            if days is None:
                fail(
                    EXIT_INVALID,
                    "give --older-than (e.g. 30d): the governance policy sets no retention.days",
                )
            seconds = days * 86400.0
        cutoff = max(0.0, time.time() - seconds)  # nothing finished before 1970
        count = await log.purge(cutoff, actor=_actor())
        await log.checkpoint()  # the purge's record, anchored
        return count, cutoff

    count, cutoff = run_async(with_log(db, go))
    if as_json:
        console.print_json(json.dumps({"purged": count, "finished_before": cutoff}))
        return
    when = datetime.fromtimestamp(cutoff, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    console.print(f"purged {count} execution(s) finished before {when}", highlight=False)
