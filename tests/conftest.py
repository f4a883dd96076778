"""Real PostgreSQL and Redis servers for the upper test tiers, when there are some.

``postgres_url`` is a fresh, empty database schema per test, in a database made for the test
module and dropped after it. Without a server the tests skip, except in CI (``CI=true``),
where they fail. ``ORCHESTRION_TEST_POSTGRES_URL`` names a maintenance database to use
instead of looking on 127.0.0.1:5432.

``redis_server`` is a reachable Redis (127.0.0.1:6379, ``ORCHESTRION_TEST_REDIS_URL``, or a
``redis-server`` started here on a free port), and ``redis_prefix`` a key prefix of the test's
own, deleted afterwards. The same skip-or-fail rule applies.

Reports are made safe to send between parallel workers: see ``pytest_report_to_serializable``.
Test files are handed to the workers longest first: see ``pytest_collection_modifyitems``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest

CANDIDATES = [
    f"postgresql://{user}@127.0.0.1:5432/{db}"
    for user in ("postgres", "root")
    for db in ("test", "postgres")
]


T = TypeVar("T")


def _encodable(value: Any) -> Any:
    if isinstance(value, str):
        # Lone surrogates (from tests feeding malformed text through the service) cannot be
        # written as UTF-8 between pytest-xdist workers; they arrive escaped instead.
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, list | tuple):
        return type(value)(_encodable(item) for item in value)
    if isinstance(value, dict):
        return {_encodable(key): _encodable(item) for key, item in value.items()}
    return value


@pytest.hookimpl(wrapper=True)
def pytest_report_to_serializable(report: Any) -> Any:
    """The report as a worker sends it, with every string encodable as UTF-8."""
    serialized = yield
    return _encodable(serialized)


# The files that take longest, longest first (a full run's per-file sums, from --junitxml):
# started first, so that no worker is left alone on one of them at the end. Several are one
# test or a few (a chaos run, property tests of crashes), which xdist's own order, most tests
# first, put last.
LONG_FILES = (
    "e2e/test_chaos.py",
    "unit/test_machine_properties.py",
    "e2e/test_stored_trust_cli.py",
    "e2e/test_first_hour_cli.py",
    "e2e/test_dead_letter_nodes.py",
    "e2e/test_serve_workers.py",
    "e2e/test_audit_tamper.py",
    "e2e/test_api_server.py",
    "e2e/test_packaging.py",
    "e2e/test_readme.py",
    "e2e/test_handover_server.py",
    "e2e/test_schedules_server.py",
    "e2e/test_rate_limits_server.py",
    "e2e/test_audit_anchor_cli.py",
    "e2e/test_cli_malformed.py",
    "e2e/test_schemathesis.py",
    "e2e/test_audit_server.py",
    "e2e/test_handover_cli.py",
    "e2e/test_scaleout_api_faults.py",
    "e2e/test_bounded_work_server.py",
    "e2e/test_service_restarts.py",
    "e2e/test_cli_pipes.py",
    "e2e/test_saga_cluster.py",
    "e2e/test_cli_tables.py",
)
# Then the tiers, slowest first: the many quick unit files fill the end evenly.
TIERS = ("e2e", "integration", "unit")


def _file_rank(item: pytest.Item) -> tuple[int, int]:
    path = item.path.as_posix()
    for rank, name in enumerate(LONG_FILES):
        if path.endswith("/tests/" + name):
            return 0, rank
    tier = item.path.parent.name
    return 1, TIERS.index(tier) if tier in TIERS else len(TIERS)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Order the files by how long they take, longest first, keeping the order within each.

    ``--dist loadfile`` runs a whole file on one worker, and xdist hands the files out in this
    order when told to keep it (``--no-loadscope-reorder`` in scripts/test); its default, most
    tests first, left the one-test chaos run for last, with the other worker idle. A file
    missing from ``LONG_FILES`` only goes out later than it could.
    """
    items.sort(key=_file_rank)  # stable: the files' own order within a rank, tests' in a file


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on its own loop in a thread, clear of the loop pytest-asyncio manages."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _execute(dsn: str, *statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=3)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def _with_database(dsn: str, database: str) -> str:
    return dsn.rsplit("/", 1)[0] + "/" + database


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The URL of a maintenance database on a reachable server (or skip / fail in CI)."""
    pytest.importorskip("asyncpg")
    configured = os.environ.get("ORCHESTRION_TEST_POSTGRES_URL")
    errors: list[str] = []
    for dsn in [configured] if configured else CANDIDATES:
        try:
            _run(_execute(dsn, "SELECT 1"))
        except Exception as exc:  # refused, timed out, no such role or database
            errors.append(f"{dsn}: {exc}")
            continue
        return dsn
    reason = "no PostgreSQL server reachable (" + "; ".join(errors) + ")"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def postgres_database(postgres_server: str) -> Iterator[str]:
    """A new database for the test module, dropped (with its connections) afterwards."""
    name = f"orchestrion_test_{uuid.uuid4().hex[:12]}"
    _run(_execute(postgres_server, f'CREATE DATABASE "{name}"'))
    try:
        yield _with_database(postgres_server, name)
    finally:
        _run(_execute(postgres_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# What a database's schema is: its tables' columns, indexes, sequences, functions, triggers
# and Alembic revision. Equal to the one read after migrating: nothing changed the schema.
_SCHEMA_FINGERPRINT = """
SELECT md5(coalesce(string_agg(x, ',' ORDER BY x), '')) FROM (
  SELECT 'c:' || table_name || '.' || column_name || ':' || data_type || ':'
         || coalesce(column_default, '') || ':' || is_nullable AS x
    FROM information_schema.columns WHERE table_schema = 'public'
  UNION ALL SELECT 'i:' || indexdef FROM pg_indexes WHERE schemaname = 'public'
  UNION ALL SELECT 's:' || sequencename FROM pg_sequences WHERE schemaname = 'public'
  UNION ALL SELECT 'f:' || p.proname FROM pg_proc p
    JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'
  UNION ALL SELECT 't:' || tgname FROM pg_trigger WHERE NOT tgisinternal
  UNION ALL SELECT 'v:' || version_num FROM public.alembic_version
) AS parts
"""
_migrated: dict[str, str] = {}  # database URL -> its schema's fingerprint once migrated


async def _empty_migrated(dsn: str) -> None:
    """Empty every table of ``dsn`` when its schema is the migrated one; otherwise (a test
    changed or dropped it) make it again: an empty ``public`` schema, migrated anew."""
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=3)
    try:
        unchanged = dsn in _migrated and bool(
            await conn.fetchval("SELECT to_regclass('public.alembic_version')")
        )
        if unchanged and await conn.fetchval(_SCHEMA_FINGERPRINT) == _migrated[dsn]:
            tables = await conn.fetch(
                "SELECT quote_ident(tablename) AS name FROM pg_tables"
                " WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
            )
            sequences = await conn.fetch(
                "SELECT quote_ident(sequencename) AS name FROM pg_sequences"
                " WHERE schemaname = 'public'"
            )
            statements = [
                f"TRUNCATE {', '.join(t['name'] for t in tables)} RESTART IDENTITY CASCADE",
                *(f"ALTER SEQUENCE {s['name']} RESTART" for s in sequences),
            ]
            async with conn.transaction():
                for statement in statements:
                    await conn.execute(statement)
            return
        await conn.execute("DROP SCHEMA public CASCADE")
        await conn.execute("CREATE SCHEMA public")
    finally:
        await conn.close()
    from orchestrion.store.sql.postgres import PostgresStore

    store = PostgresStore(dsn)
    await store.open()
    await store.close()
    conn = await asyncpg.connect(dsn, timeout=3)
    try:
        _migrated[dsn] = await conn.fetchval(_SCHEMA_FINGERPRINT)
    finally:
        await conn.close()


@pytest.fixture
def postgres_url(postgres_database: str) -> str:
    """The module's database at the newest schema with every table empty: nothing left from
    other tests. Emptied rather than made again: migrating it anew for each test took a
    minute of the suite.

    Synchronous, so async fixtures can ask for it with ``request.getfixturevalue``.
    """
    _run(_empty_migrated(postgres_database))
    return postgres_database


# ---------------------------------------------------------------- Redis

REDIS_CANDIDATES = ["redis://127.0.0.1:6379/0"]


async def _redis_ping(url: str) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(url, socket_connect_timeout=2)
    try:
        await client.ping()
    finally:
        await client.aclose()


def _start_redis(workdir: str) -> tuple[str, subprocess.Popen[bytes]] | None:
    """A throw-away redis-server on a free port, when the binary is installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(50):
        try:
            _run(_redis_ping(url))
            return url, proc
        except Exception:
            time.sleep(0.1)
    proc.kill()
    return None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a reachable Redis (started here when only the binary is installed)."""
    pytest.importorskip("redis")
    configured = os.environ.get("ORCHESTRION_TEST_REDIS_URL")
    errors: list[str] = []
    for url in [configured] if configured else REDIS_CANDIDATES:
        try:
            _run(_redis_ping(url))
        except Exception as exc:
            errors.append(f"{url}: {exc}")
            continue
        yield url
        return
    started = _start_redis(str(tmp_path_factory.mktemp("redis")))
    if started is not None:
        url, proc = started
        try:
            yield url
        finally:
            proc.terminate()
            proc.wait(10)
        return
    reason = "no Redis server reachable and no redis-server binary (" + "; ".join(errors) + ")"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


async def _delete_prefix(url: str, prefix: str) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
def redis_prefix(redis_server: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"orchestrion-test-{uuid.uuid4().hex[:12]}"
    yield prefix
    _run(_delete_prefix(redis_server, prefix))
