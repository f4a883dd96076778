"""Distinctive plain values, workflows that carry them through every kind of node, and raw
readers of every place they could land (SQLite and WAL bytes, PostgreSQL rows, Redis keys).

A classified execution must leave none of them readable in storage; the tests then check
that the engine, the API and the CLI still read the plaintext back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrion.core.result import ExecutionResult
from orchestrion.core.states import ExecutionStatus, NodeState
from orchestrion.engine.facade import Engine
from orchestrion.handlers.base import NodeContext
from orchestrion.handlers.python import function

__all__ = [
    "FLAKY",
    "Secrets",
    "assert_reads_back_plain",
    "child_workflow",
    "classified_workflow",
    "failing_workflow",
    "luhn_card",
    "monitored",
    "pg_dump",
    "redis_dump",
    "run_everything",
    "shape_node",
    "sqlite_bytes",
]

# Attempts per execution of ``sealed_flaky``: the first raises, quoting its input.
FLAKY: dict[str, int] = {}


def luhn_card(prefix: str = "4") -> str:
    """A random 16-digit card number that passes the Luhn check (so maskers see a card)."""
    digits = [int(d) for d in prefix] + [random.randrange(10) for _ in range(15 - len(prefix))]
    total = 0
    for i, digit in enumerate(reversed(digits)):
        doubled = digit * 2 if i % 2 == 0 else digit
        total += doubled - 9 if doubled > 9 else doubled
    return "".join(map(str, digits)) + str((10 - total % 10) % 10)


@dataclass
class Secrets:
    """One set of values per test: none of them can occur in storage by chance."""

    tag: str = field(default_factory=lambda: uuid.uuid4().hex)
    card: str = field(default_factory=luhn_card)
    iban: str = "GB82WEST12345698765432"

    @property
    def marker(self) -> str:
        return f"SECRET-MARKER-{self.tag}"

    @property
    def email(self) -> str:
        return f"ada.{self.tag[:12]}@example.org"

    @property
    def override(self) -> str:
        return f"OVERRIDE-MARKER-{self.tag}"

    @property
    def comment(self) -> str:
        return f"DECISION-MARKER-{self.tag}"

    def all(self) -> list[str]:
        return [self.marker, self.email, self.card, self.iban, self.override, self.comment]

    def inputs(self) -> dict[str, Any]:
        return {
            "marker": self.marker,
            "email": self.email,
            "card": self.card,
            "iban": self.iban,
            "items": [self.marker, self.email],
        }

    def overrides(self) -> dict[str, dict[str, Any]]:
        return {"echo": {"value": f"{self.override} {{{{ input.marker }}}} {{{{ input.email }}}}"}}

    def found_in(self, raw: str | bytes) -> list[str]:
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        return [value for value in self.all() if value in text]


@function("sealed_shape", replace=True)
def sealed_shape(ctx: NodeContext, marker: str, email: str, card: str, iban: str) -> Any:
    return {"who": email, "card": card, "iban": iban, "note": f"shaped {marker}"}


@function("sealed_flaky", replace=True)
def sealed_flaky(ctx: NodeContext, marker: str) -> str:
    FLAKY[ctx.execution_id] = FLAKY.get(ctx.execution_id, 0) + 1
    if FLAKY[ctx.execution_id] == 1:
        raise RuntimeError(f"upstream refused {marker}")  # transient: retried
    return f"second try {marker}"


@function("sealed_boom", replace=True)
def sealed_boom(ctx: NodeContext, email: str) -> None:
    raise ValueError(f"no account for {email}")


def child_workflow() -> dict[str, Any]:
    """Declares nothing classified: it is classified as the child of a classified node."""
    return {
        "name": "sealed-child",
        "dag": {
            "nodes": [
                {"id": "greet", "handler": "noop", "config": {"value": "hello {{ input.who }}"}}
            ]
        },
    }


def shape_node() -> dict[str, Any]:
    """Node ``shape``: ``sealed_shape`` of every input, after node ``input``."""
    return {
        "id": "shape",
        "handler": "python",
        "dependencies": ["input"],
        "config": {
            "function": "sealed_shape",
            "params": {
                "marker": "{{ input.marker }}",
                "email": "{{ input.email }}",
                "card": "{{ input.card }}",
                "iban": "{{ input.iban }}",
            },
        },
    }


def classified_workflow(name: str = "sealed-all") -> dict[str, Any]:
    """The inputs reach every kind of node; only ``score``, which reads none of them, is
    classified (``pii``), and that makes the whole execution classified."""
    nodes: list[dict[str, Any]] = [
        {"id": "input", "handler": "input"},  # public by default: its output is the inputs
        {
            "id": "echo",  # a templated noop, its config overridden at trigger time
            "handler": "noop",
            "dependencies": ["input"],
            "config": {"value": "{{ input.marker }}"},
        },
        shape_node(),
        {
            "id": "flaky",
            "handler": "python",
            "data_classification": "public",  # declared public: sealed all the same
            "dependencies": ["input"],
            "retry": {"max_attempts": 2, "initial_delay": 0.01, "jitter": "none"},
            "config": {"function": "sealed_flaky", "params": {"marker": "{{ input.marker }}"}},
        },
        {
            "id": "each",
            "handler": "map",
            "dependencies": ["input"],
            "config": {
                "items": "{{ input.items }}",
                "handler": "noop",
                "config": {"value": "item {{ item }}"},
            },
        },
        {
            "id": "kid",
            "handler": "workflow",
            "dependencies": ["input"],
            "config": {"workflow": "sealed-child", "inputs": {"who": "{{ input.marker }}"}},
        },
        {
            "id": "review",
            "handler": "approval",
            "dependencies": ["shape"],
            "config": {"message": "check {{ input.marker }} paying with {{ shape.output.card }}"},
        },
        {
            "id": "score",
            "handler": "noop",
            "data_classification": "pii",
            "dependencies": ["review"],
            "config": {"value": 1},
        },
        {
            "id": "done",
            "handler": "output",
            "dependencies": ["echo", "shape", "flaky", "each", "kid", "score"],
        },
    ]
    return {"name": name, "dag": {"nodes": nodes}}


def failing_workflow(name: str = "sealed-fail") -> dict[str, Any]:
    """``charge`` completes, ``boom`` fails quoting the e-mail, and the compensation of
    ``charge`` fails quoting it too (the saga's own error)."""
    quote_email = {"function": "sealed_boom", "params": {"email": "{{ input.email }}"}}
    return {
        "name": name,
        "dag": {
            "nodes": [
                {"id": "input", "handler": "input"},
                {
                    "id": "charge",
                    "handler": "noop",
                    "dependencies": ["input"],
                    "config": {"value": "charged {{ input.card }}"},
                    "compensate": {"handler": "python", "config": quote_email},
                },
                {
                    "id": "boom",
                    "handler": "python",
                    "dependencies": ["charge"],
                    "retry": {"max_attempts": 1},
                    "config": quote_email,
                },
                {"id": "flag", "handler": "noop", "data_classification": "phi"},
            ]
        },
    }


async def run_everything(
    engine: Engine, secrets: Secrets, decider: Engine | None = None
) -> tuple[ExecutionResult, str]:
    """The classified workflow to its end (the approval decided with a comment quoting a
    value, by ``decider``: another process's engine), and a failing one; the first one's
    result and the failed execution's id."""
    await engine.submit(child_workflow())
    record = await engine.start_execution(
        classified_workflow(), secrets.inputs(), overrides=secrets.overrides()
    )
    waiting = await engine.settle(record.id, timeout=30)
    assert waiting.nodes["review"].state is NodeState.WAITING, waiting
    await (decider or engine).decide(
        record.id, "review", approved=True, by="ops", comment=secrets.comment
    )
    result = await engine.wait(record.id, timeout=30)
    assert result.status is ExecutionStatus.COMPLETED, result.error
    failed = await engine.run(failing_workflow(), secrets.inputs(), timeout=30)
    assert failed.status is ExecutionStatus.FAILED
    return result, failed.execution_id


async def assert_reads_back_plain(
    engine: Engine, secrets: Secrets, result: ExecutionResult, failed_id: str
) -> None:
    """What the engine reads from the store is the plaintext, everywhere it was sealed."""
    s = secrets
    nodes = result.nodes
    assert nodes["input"].output == s.inputs()
    assert nodes["echo"].output == f"{s.override} {s.marker} {s.email}"
    assert nodes["shape"].output == {
        "who": s.email,
        "card": s.card,
        "iban": s.iban,
        "note": f"shaped {s.marker}",
    }
    assert nodes["flaky"].output == f"second try {s.marker}" and nodes["flaky"].attempt == 2
    assert nodes["each"].output["results"] == [f"item {s.marker}", f"item {s.email}"]
    assert nodes["kid"].output["result"] == {"greet": f"hello {s.marker}"}
    assert nodes["review"].output["comment"] == s.comment
    assert result.result["shape"]["card"] == s.card
    stored = await engine.store.get_execution(result.execution_id)
    assert stored.inputs == s.inputs()
    assert stored.overrides == s.overrides()
    events = await engine.store.list_events(result.execution_id)
    texts = json.dumps([e.data for e in events])
    assert f"upstream refused {s.marker}" in texts  # the retried attempt's error
    assert f"check {s.marker} paying with {s.card}" in texts  # the approval's message
    runs, _ = await engine.list_executions()
    (kid,) = [r for r in runs if r.parent_execution_id == result.execution_id]
    assert kid.inputs == {"who": s.marker}
    failed = await engine.result(failed_id)
    boom = failed.nodes["boom"].error
    assert boom is not None and boom["message"] == f"ValueError: no account for {s.email}"
    assert s.email in (boom.get("traceback") or "")
    assert s.email in (failed.error or {})["message"]
    saga = await engine.store.list_events(failed_id, types=["node.compensation_failed"])
    assert [e.data["error"]["message"] for e in saga if e.data] == [
        f"ValueError: no account for {s.email}"
    ]


def sqlite_bytes(db: Path) -> bytes:
    """The database file, its WAL and its shared-memory index, as they are on disk."""
    return b"".join(
        path.read_bytes()
        for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm"))
        if path.exists()
    )


async def pg_dump(dsn: str) -> str:
    """Every row of every table, every column cast to text."""
    import asyncpg  # type: ignore[import-untyped]

    from orchestrion.store.sql.postgres import asyncpg_url

    conn = await asyncpg.connect(asyncpg_url(dsn).replace("postgresql+asyncpg", "postgresql"))
    try:
        tables = await conn.fetch(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
        )
        dump: list[str] = []
        for row in tables:
            name = row["table_name"]
            columns = await conn.fetch(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND table_name = $1",
                name,
            )
            cast = ", ".join(f'"{c["column_name"]}"::text' for c in columns)
            for values in await conn.fetch(f'SELECT {cast} FROM "{name}"'):
                dump.append(name + "\t" + "\t".join(str(v) for v in values))
        return "\n".join(dump)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def monitored(redis_url: str) -> AsyncIterator[list[str]]:
    """Every command Redis receives while inside, as text."""
    from redis.asyncio import Redis

    seen: list[str] = []
    client = Redis.from_url(redis_url)

    async def listen() -> None:
        async with client.monitor() as monitor:
            async for command in monitor.listen():
                seen.append(str(command.get("command", "")))

    job = asyncio.create_task(listen())
    await asyncio.sleep(0.2)  # MONITOR is on before anything is sent
    try:
        yield seen
    finally:
        await asyncio.sleep(0.2)
        job.cancel()
        await asyncio.gather(job, return_exceptions=True)
        await client.aclose()


async def redis_dump(url: str, prefix: str) -> str:
    """Every key under ``prefix`` with its content: streams entry by entry, strings, hashes,
    lists, sets and sorted sets."""
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    dump: list[str] = []
    try:
        async for raw_key in client.scan_iter(match=f"{prefix}*", count=1000):
            key = raw_key.decode()
            kind = (await client.type(key)).decode()
            content: Any
            if kind == "stream":
                content = await client.xrange(key)
            elif kind == "string":
                content = await client.get(key)
            elif kind == "hash":
                content = await client.hgetall(key)
            elif kind == "list":
                content = await client.lrange(key, 0, -1)
            elif kind == "set":
                content = await client.smembers(key)
            elif kind == "zset":
                content = await client.zrange(key, 0, -1, withscores=True)
            else:
                content = kind
            dump.append(f"{key} {kind} {content!r}")
    finally:
        await client.aclose()
    return "\n".join(dump)
