"""Where ``orchestrion audit`` reads the trail from: the database (through the audit log, with
the policy's keys), a running server (``--server``, an admin key), or an export file."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from orchestrion.cli.exits import EXIT_INVALID, EXIT_STORE, for_answer
from orchestrion.cli.local import database_url
from orchestrion.cli.terminal import fail

if TYPE_CHECKING:
    from orchestrion.store.audit import AuditRecord
    from orchestrion.store.audit_log import AuditLog

__all__ = ["read_export", "remote_get", "remote_records", "with_log"]

T = TypeVar("T")


async def with_log(db: str | None, use: Callable[[AuditLog], Awaitable[T]]) -> T:
    """Open the store of ``db`` (or the configured one) and the audit log over it."""
    from orchestrion.governance.runtime import Governance
    from orchestrion.settings import load_settings
    from orchestrion.store.audit_log import AuditLog
    from orchestrion.store.factory import open_store

    settings = load_settings()
    governance = Governance.from_settings(settings)
    store = open_store(
        database_url(db) or settings.database_url, sqlite_synchronous=settings.sqlite_synchronous
    )
    await store.open()
    try:
        return await use(AuditLog(governance, lambda: store))
    finally:
        await store.close()


def remote_get(server: str, api_key: str | None, path: str, **params: Any) -> Any:
    """GET ``path`` on a server: its JSON, or the exit code of its refusal (``for_answer``):
    6 (key refused), 5 (not found), 2 (other refusal), 3 (unreachable, failed or 429)."""
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    query = {k: v for k, v in params.items() if v is not None}
    try:
        response = httpx.get(server.rstrip("/") + path, params=query, headers=headers, timeout=60)
    except httpx.HTTPError as exc:
        fail(EXIT_STORE, f"cannot reach {server}: {exc}")
    if response.status_code != 200:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            body = {}
        detail, kind = body.get("detail", response.text), body.get("type")
        code = for_answer(response.status_code, kind if isinstance(kind, str) else None)
        fail(code, f"{server} answered {response.status_code}: {detail}")
    return response.json()


def remote_records(server: str, api_key: str | None, **params: Any) -> list[AuditRecord]:
    """Every record matching ``params``, page by page (``limit`` caps the total)."""
    from orchestrion.store.audit import AuditRecord

    wanted = params.pop("limit", None)
    records: list[AuditRecord] = []
    after = params.pop("after_seq", 0)
    while wanted is None or len(records) < wanted:
        page_size = 1000 if wanted is None else min(1000, wanted - len(records))
        page = remote_get(server, api_key, "/v1/audit", after_seq=after, limit=page_size, **params)
        records.extend(AuditRecord.from_fields(r) for r in page["records"])
        if page["next_after_seq"] is None:
            break
        after = page["next_after_seq"]
    return records


def read_export(path: Path) -> list[AuditRecord]:
    """The records of an ``audit export`` file (JSON lines); exit 2 naming a bad line."""
    from orchestrion import safe_data
    from orchestrion.store.audit import AuditRecord

    records: list[AuditRecord] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        fail(EXIT_INVALID, f"cannot read {path}: {exc}")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            fields = safe_data.loads(line, object_pairs_hook=_unique_keys)
            records.append(AuditRecord.from_fields(fields))
        except (ValueError, KeyError, TypeError) as exc:
            fail(EXIT_INVALID, f"{path}, line {number}: not an audit record ({exc})")
    return records


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are each given once: a line that says two things of one field
    is refused, not read as its last value."""
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise ValueError(f"the key {key!r} is given twice")
        found[key] = value
    return found
