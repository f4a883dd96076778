"""``orchestrion audit`` (verify, list, export): the audit trail, on the database directly.

    orchestrion audit verify [--db URL] [--expect-head SEQ:HASH] [--anchor FILE] [--json]
    orchestrion audit verify --file trail.jsonl [--expect-head SEQ:HASH] [--anchor FILE]
    orchestrion audit list [--execution ID] [--actor A] [--action PREFIX] [--since T]
                           [--until T] [--after-seq N] [--limit N] [--json]
    orchestrion audit export --output trail.jsonl
    orchestrion audit verify|list|export ... --server URL --api-key KEY   # through a server

With ``--server URL`` (and an admin ``--api-key``), verify, list and export go through a
running server (``GET /v1/audit/verify``, ``GET /v1/audit``) with the server's keys instead.

Keys come from the governance policy's audit key variable (``ORCHESTRION_AUDIT_KEYS`` by
default: ``id:base64key,...``, every key verifies). ``verify`` exits 0 when the chain holds
and 1 naming the first break (seq and kind); an export verifies offline with ``--file``, and
``--expect-head`` checks against a head noted elsewhere (printed by every ``verify``), which
is what catches records removed from the end together with the head kept in the database.
Without any flag, ``verify`` also cross-checks the trail against the journal and against the
signed checkpoints of the policy's ``audit.anchor.file`` (``--anchor`` reads another copy of
them, e.g. one collected from syslog).

Exit codes as in ``cli/exits.py``: 2 bad input or no audit key, 3 the database cannot be used.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.text import Text

from orchestrion.cli.audit_sources import read_export, remote_get, remote_records, with_log
from orchestrion.cli.exits import EXIT_FAILED, EXIT_INVALID
from orchestrion.cli.local import run_async
from orchestrion.cli.options import ApiKeyOption, DbOption, JsonOption, ServerOption, instant
from orchestrion.cli.tables import Column, piped, print_table, when
from orchestrion.cli.terminal import console, err, fail

if TYPE_CHECKING:
    from orchestrion.governance.audit_chain import ChainHead, Verification
    from orchestrion.store.audit import AuditRecord
    from orchestrion.store.audit_log import AuditLog

__all__ = ["audit_app"]

audit_app = typer.Typer(
    name="audit",
    help="The signed audit trail: verify it, list records, export them.",
    no_args_is_help=True,
)

HeadOption = Annotated[
    str | None,
    typer.Option(
        "--expect-head",
        help="SEQ:HASH the chain must end at (from an earlier verify), to catch truncation.",
    ),
]
AnchorOption = Annotated[
    Path | None,
    typer.Option(
        "--anchor",
        help="Checkpoints to check against (default: audit.anchor.file of the policy, for"
        " the database and for --file).",
    ),
]


def _parse_head(text: str | None) -> ChainHead | None:
    from orchestrion.governance.audit_chain import ChainHead

    if text is None:
        return None
    seq, sep, digest = text.partition(":")
    if not sep or not seq.isdigit() or len(digest) != 64:
        fail(EXIT_INVALID, f"--expect-head: expected SEQ:HASH (64 hex digits), got {text!r}")
    return ChainHead(int(seq), digest.lower())


def _report(result: Verification, head: ChainHead | None, as_json: bool) -> None:
    if as_json:
        body = result.to_dict()
        body["head"] = None if head is None else {"seq": head.seq, "hash": head.hash}
        console.print_json(json.dumps(body))
    elif result.ok:
        console.print(
            f"[green]audit trail ok[/]: {result.records} record(s), verified up to seq "
            f"{result.verified_up_to}",
            highlight=False,
        )
        if head is not None:
            console.print(f"head {head.seq}:{head.hash}", highlight=False)
        anchored = result.anchor or {}
        latest = anchored.get("latest")
        if latest:
            newer = result.verified_up_to - int(latest["seq"])
            console.print(
                f"anchored: checkpoint of record {latest['seq']} in {escape(str(anchored['file']))}"
                + (f" ({newer} newer record(s) not anchored yet)" if newer > 0 else ""),
                highlight=False,
            )
        elif anchored:
            console.print(
                f"anchor {escape(str(anchored.get('file')))} checked: no checkpoint in it yet",
                highlight=False,
            )
        else:
            console.print(
                "no anchor checked: none configured (audit.anchor.file) nor given (--anchor),"
                " so records deleted from the end cannot be seen",
                highlight=False,
            )
    else:
        for n, found in enumerate(result.breaks):
            where = "" if found.kind == "anchor" else f" at seq {found.seq}"
            text = f"{where} ({found.kind}): {escape(str(found.message))}"
            if n == 0:
                err.print(
                    f"[bold red]audit trail broken[/]{text}; verified up to seq "
                    f"{result.verified_up_to}",
                    highlight=False,
                )
            else:
                err.print(f"also broken{text}", highlight=False)
    if not result.ok:
        raise typer.Exit(EXIT_FAILED)


@audit_app.command("verify")
def verify_command(
    db: DbOption = None,
    file: Annotated[
        Path | None, typer.Option("--file", help="Verify an export (JSON lines) instead.")
    ] = None,
    expect_head: HeadOption = None,
    anchor: AnchorOption = None,
    as_json: JsonOption = False,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Check every record's signature and link, the trail against the journal and the
    anchor's checkpoints; exit 1 naming the first break."""
    from orchestrion.governance.audit_chain import AuditBreak, ChainHead, Verification

    expected = _parse_head(expect_head)
    if anchor is not None and not anchor.is_file():
        fail(EXIT_INVALID, f"--anchor: no such file {anchor}")
    if server and file is None:
        if anchor is not None:
            fail(EXIT_INVALID, "--anchor checks a local trail: the server reads its own anchor")
        body = remote_get(server, api_key, "/v1/audit/verify")
        breaks = [AuditBreak(b["seq"], b["kind"], b["message"]) for b in body["breaks"]]
        remote = Verification(
            body["ok"], body["verified_up_to"], body["records"], breaks, body.get("anchor")
        )
        stored = body["head"]
        remote_head = None if stored is None else ChainHead(stored["seq"], stored["hash"])
        if remote.ok and expected is not None and remote_head != expected:
            kind = "truncated" if (remote_head or ChainHead()).seq < expected.seq else "edited"
            message = f"the server's head is not the expected head {expected.seq}"
            remote.breaks.append(AuditBreak(remote.verified_up_to + 1, kind, message))
            remote.ok = False
        _report(remote, remote_head, as_json)
        return
    if file is not None:
        from orchestrion.errors import ConfigurationError
        from orchestrion.governance.runtime import Governance
        from orchestrion.settings import load_settings
        from orchestrion.store.audit_log import verification_keys

        try:
            governance = Governance.from_settings(load_settings())
            keys = verification_keys(governance)
        except ConfigurationError as exc:
            fail(EXIT_INVALID, str(exc))
        # The configured checkpoints unless --anchor names a copy: an export cut short is
        # caught by them without a flag, as the trail in the database is.
        anchor_file = anchor if anchor is not None else governance.policy.audit.anchor.file
        from orchestrion.governance.audit_chain import verify

        records = read_export(file)
        # The file alone cannot tell whether its end is the trail's: --expect-head can.
        head = expected
        if head is None and records:
            head = ChainHead(records[-1].seq, records[-1].hash)
        result = verify([r.chain_fields() for r in records], keys, expected_head=head)
        if anchor_file is not None:
            from orchestrion.store.audit_anchor import anchor_breaks, read_anchor

            reading = read_anchor(anchor_file, keys)
            last = max((r.seq for r in records), default=0)
            result.breaks.extend(anchor_breaks(reading, {r.seq: r.hash for r in records}, last))
            result.anchor = reading.to_dict()
            result.ok = not result.breaks
        _report(result, head, as_json)
        return

    async def go(log: AuditLog) -> tuple[Verification, ChainHead | None]:
        from orchestrion.store.audit_log import verify_trail

        keys = log.keys
        anchor_file = str(anchor) if anchor is not None else log.anchor_file
        result, stored = await verify_trail(
            log.store, keys, anchor_file=anchor_file, expected=expected
        )
        return result, None if stored is None else stored.chain

    result, head = run_async(with_log(db, go))
    _report(result, head, as_json)


@audit_app.command("list")
def list_command(
    db: DbOption = None,
    execution: Annotated[str | None, typer.Option("--execution", help="Execution id.")] = None,
    actor: Annotated[str | None, typer.Option(help="e.g. key:1a2b3c4d, engine:...")] = None,
    action: Annotated[str | None, typer.Option(help="Action prefix, e.g. api. or node.")] = None,
    since: Annotated[str | None, typer.Option(help="Epoch seconds or ISO 8601.")] = None,
    until: Annotated[str | None, typer.Option(help="Epoch seconds or ISO 8601.")] = None,
    after_seq: Annotated[int, typer.Option("--after-seq", min=0, max=2**63 - 1)] = 0,
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 100,
    as_json: JsonOption = False,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """List audit records, oldest first."""
    from orchestrion.store.audit import AuditFilter

    if server:
        _show(
            remote_records(
                server,
                api_key,
                execution_id=execution,
                actor=actor,
                action=action,
                since=since,
                until=until,
                after_seq=after_seq,
                limit=limit,
            ),
            as_json,
        )
        return
    flt = AuditFilter(
        execution_id=execution,
        actor=actor,
        action_prefix=action,
        since=instant(since, "--since"),
        until=instant(until, "--until"),
        after_seq=after_seq,
        limit=limit,
    )

    async def go(log: AuditLog) -> list[AuditRecord]:
        return await log.list(flt)

    _show(run_async(with_log(db, go)), as_json)


def _show(records: list[AuditRecord], as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps([r.chain_fields() for r in records]))
        return
    plain = piped(console)
    columns = [
        Column("seq", right=True),
        Column("at"),
        Column("action"),
        Column("actor", cut=True),
        Column("execution"),
        Column("node"),
        Column("outcome", cut=True),
    ]
    rows: list[list[str | Text]] = [
        [
            str(r.seq),
            when(r.at, plain),
            Text(r.action),
            Text(r.actor or ""),
            Text(r.execution_id or ""),
            Text(r.node_id or ""),
            Text(r.outcome or ""),
        ]
        for r in records
    ]
    print_table(console, columns, rows, empty="no audit records")


@audit_app.command("export")
def export_command(
    output: Annotated[Path, typer.Option("--output", "-o", help="The JSON lines file to write.")],
    db: DbOption = None,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Write every record, one JSON object a line, verifiable offline with verify --file."""
    if server:
        records = remote_records(server, api_key)
        try:
            with output.open("w", encoding="utf-8") as out:
                for record in records:
                    out.write(json.dumps(record.chain_fields(), ensure_ascii=False) + "\n")
        except OSError as exc:
            fail(EXIT_INVALID, f"cannot write {output}: {exc}")
        console.print(
            f"exported {len(records)} record(s) to {escape(str(output))}", highlight=False
        )
        return

    async def go(log: AuditLog) -> int:
        count = 0
        with output.open("w", encoding="utf-8") as out:
            async for record in log.records():
                out.write(json.dumps(record.chain_fields(), ensure_ascii=False) + "\n")
                count += 1
        return count

    try:
        count = run_async(with_log(db, go))
    except OSError as exc:
        fail(EXIT_INVALID, f"cannot write {output}: {exc}")
    console.print(f"exported {count} record(s) to {escape(str(output))}", highlight=False)
