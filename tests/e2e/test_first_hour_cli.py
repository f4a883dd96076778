"""The first hour with the ``orchestrion`` command: what a newcomer types, as real processes.

Each test runs the CLI (and where it talks to a service, a real ``orchestrion serve``) the way
the README tells a user to, and checks what they see: messages, exit codes, log lines.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from test_api_server import Server
from test_cli import orchestrion

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TINY = "name: tiny\ndag:\n  nodes:\n    - {id: a, handler: noop}\n"


def _tiny(folder: Path) -> Path:
    path = folder / "tiny.yaml"
    path.write_text(TINY, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------- warnings, logs


def test_local_commands_do_not_warn_about_keys_the_policy_does_not_require(
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "o.db")
    ran = orchestrion("run", str(_tiny(tmp_path)), "--db", db, "--json")
    assert ran.returncode == 0, ran.stderr
    for args in (("list", "--db", db), ("status", "--db", db, _only_id(db))):
        shown = orchestrion(*args)
        assert shown.returncode == 0, shown.stderr
        assert "is not set" not in shown.stderr, shown.stderr
    assert "is not set" not in ran.stderr

    script = (
        "import orchestrion, sys\n"
        f"r = orchestrion.run({str(_tiny(tmp_path))!r}, database_url='sqlite:///{db}')\n"
        "sys.exit(0 if r.ok else 1)\n"
    )
    embedded = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert embedded.returncode == 0, embedded.stderr
    assert "is not set" not in embedded.stderr, embedded.stderr


def test_the_log_level_setting_is_honoured_by_the_cli(tmp_path: Path) -> None:
    db = str(tmp_path / "o.db")
    sqlite3.connect(db).close()  # an existing (empty) database: the store makes its tables
    chatty = orchestrion("list", "--db", db, env={"ORCHESTRION_LOG_LEVEL": "INFO"})
    assert chatty.returncode == 0
    assert "ORCHESTRION_AUDIT_KEYS is not set" in chatty.stderr  # said, when asked for
    quiet = orchestrion("list", "--db", db, env={"ORCHESTRION_LOG_LEVEL": "ERROR"})
    assert quiet.returncode == 0
    assert quiet.stderr == "no executions\n"  # the list's note (piped, on stderr), no log


def test_a_command_that_reads_or_acts_refuses_a_missing_database_file(tmp_path: Path) -> None:
    """A mistyped --db is not a new, empty database: exit 3, and no file is left behind."""
    missing = tmp_path / "typo.db"
    for argv in (
        ["list"],
        ["status", "abc"],
        ["events", "abc"],
        ["cancel", "abc"],
        ["resume"],
        ["audit", "verify"],
    ):
        result = orchestrion(*argv, "--db", str(missing))
        assert result.returncode == 3, (argv, result.stdout, result.stderr)
        assert "the file does not exist" in result.stderr, (argv, result.stderr)
        assert "Traceback" not in result.stderr
        assert not missing.exists(), argv


def _only_id(db: str) -> str:
    import json

    listed = orchestrion("list", "--db", db, "--json")
    return str(json.loads(listed.stdout)[0]["execution_id"])


def test_serve_logs_json_by_default_without_colour_codes_and_warns_its_operator(
    tmp_path: Path,
) -> None:
    server = Server(tmp_path, tmp_path / "s.db")
    try:
        import httpx

        httpx.get(f"{server.url}/health", timeout=10)
    finally:
        assert server.stop() == 0, server.log.read_text()
    text = server.log.read_text()
    assert "\x1b[" not in text
    lines = server.log_lines()  # every line is JSON: the one documented default
    assert lines
    assert not any("color_message" in line for line in lines)
    warned = [line["message"] for line in lines if line["level"] == "WARNING"]
    assert any("ORCHESTRION_AUDIT_KEYS is not set" in m for m in warned), warned


def test_serve_honours_the_console_format_setting(tmp_path: Path) -> None:
    server = Server(tmp_path, tmp_path / "s.db", {"ORCHESTRION_LOG_FORMAT": "console"})
    assert server.stop() == 0, server.log.read_text()
    text = server.log.read_text()
    assert "listening on http://127.0.0.1" in text
    assert not text.lstrip().startswith("{")
    assert "\x1b[" not in text


# ---------------------------------------------------------------------------- stores, extras


def _without(tmp_path: Path, *packages: str) -> dict[str, str]:
    """An environment in which ``packages`` cannot be imported (as without the extra)."""
    shadow = tmp_path / "shadow"
    for package in packages:
        (shadow / package).mkdir(parents=True)
        (shadow / package / "__init__.py").write_text(
            f"raise ImportError('No module named {package}', name={package!r})\n"
        )
    return {"PYTHONPATH": str(shadow)}


def test_postgres_without_its_extra_prints_the_install_hint_and_exits_3(tmp_path: Path) -> None:
    for package in ("asyncpg", "greenlet"):
        env = _without(tmp_path / package, package)
        for args in (("list",), ("status", "abc"), ("run", str(_tiny(tmp_path)))):
            shown = orchestrion(*args, "--db", "postgresql://127.0.0.1/test", env=env)
            assert shown.returncode == 3, (args, shown.stderr)
            assert "pip install 'orchestrion[postgres]'" in shown.stderr, shown.stderr
            assert "Traceback" not in shown.stderr
            assert len(shown.stderr.strip().splitlines()) <= 2, shown.stderr


def test_the_redis_install_hint_keeps_its_brackets(tmp_path: Path) -> None:
    env = {**_without(tmp_path, "redis"), "ORCHESTRION_REDIS_URL": "redis://127.0.0.1:6379/0"}
    shown = orchestrion("dlq", "list", env=env)
    assert shown.returncode == 3, shown.stderr
    assert "pip install 'orchestrion[scaleout]'" in shown.stderr, shown.stderr


def test_user_text_in_messages_is_not_read_as_markup(tmp_path: Path) -> None:
    folder = tmp_path / "[bold]x"  # a directory name that reads like markup
    shown = orchestrion("list", "--db", str(folder / "o.db"))
    assert shown.returncode == 3
    assert "[bold]x" in " ".join(shown.stderr.split()), shown.stderr

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: n\ndag:\n  nodes:\n    - {id: '[b]a', handler: noop}\n")
    refused = orchestrion("validate", str(bad))
    assert refused.returncode == 2
    assert "node '[b]a'" in refused.stderr, refused.stderr

    flow = tmp_path / "f.yaml"
    flow.write_text("name: '[red]n'\ndag:\n  nodes:\n    - {id: a, handler: noop}\n")
    valid = orchestrion("validate", str(flow))
    assert valid.returncode == 0, valid.stderr
    assert "workflow '[red]n' is valid" in valid.stdout
    db = str(tmp_path / "o.db")
    ran = orchestrion("run", str(flow), "--db", db)
    assert ran.returncode == 0, ran.stderr
    assert "[red]n v1" in ran.stderr, ran.stderr  # the title, as text: piped, on stderr
    listed = orchestrion("list", "--db", db)
    assert "[red]n" in listed.stdout, listed.stdout


def test_a_db_path_in_a_missing_directory_is_refused_with_exit_3(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir"
    for args in (("list",), ("run", str(_tiny(tmp_path))), ("status", "abc")):
        shown = orchestrion(*args, "--db", str(missing / "x.db"))
        assert shown.returncode == 3, (args, shown.stderr)
        assert "does not exist" in shown.stderr
    assert not (tmp_path / "no").exists()


def test_version_option(tmp_path: Path) -> None:
    from orchestrion import __version__

    for args in (("--version",), ("version",)):
        shown = orchestrion(*args)
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.strip() == f"orchestrion {__version__}"


# ---------------------------------------------------------------------------- ids, exit codes


def _run_ids(db: str, flow: Path, count: int) -> list[str]:
    import json

    ids = []
    for _ in range(count):
        ran = orchestrion("run", str(flow), "--db", db, "--json")
        assert ran.returncode == 0, ran.stderr
        ids.append(json.loads(ran.stdout)["execution_id"])
    return ids


def _suffix(ids: list[str]) -> str:
    """The shortest end of ``ids[0]`` that no other id starts or ends with."""
    first = ids[0]
    return next(
        first[-n:]
        for n in range(1, len(first))
        if not any(o.endswith(first[-n:]) or o.startswith(first[-n:]) for o in ids[1:])
    )


def _prefixes(ids: list[str]) -> tuple[str, str | None]:
    """A prefix naming only ``ids[0]``, and one shared by two ids (None when none is)."""
    first = ids[0]
    unique = next(
        first[:n]
        for n in range(1, len(first))
        if not any(o.startswith(first[:n]) or o.endswith(first[:n]) for o in ids[1:])
    )
    shared = None
    for a in ids:
        for b in ids:
            if a != b and a[0] == b[0]:
                shared = a[0]
    return unique, shared


def test_list_never_cuts_an_id_at_80_columns(tmp_path: Path) -> None:
    db = str(tmp_path / "o.db")
    ids = _run_ids(db, _tiny(tmp_path), 2)
    for columns in ("80", "60"):
        listed = orchestrion("list", "--db", db, env={"COLUMNS": columns})
        assert listed.returncode == 0
        for execution_id in ids:
            assert execution_id in listed.stdout, listed.stdout


def test_unique_prefixes_are_accepted_wherever_an_id_is_taken_locally(tmp_path: Path) -> None:
    db = str(tmp_path / "o.db")
    ids = _run_ids(db, _tiny(tmp_path), 3)
    unique, _ = _prefixes(ids)
    shown = orchestrion("status", unique, "--db", db)
    assert shown.returncode == 0, shown.stderr
    assert ids[0] in shown.stdout
    retried = orchestrion("retry", unique, "--from-node", "a", "--db", db)
    assert retried.returncode == 0, retried.stderr
    assert ids[0] in retried.stdout
    resumed = orchestrion("resume", unique, "--db", db)
    assert resumed.returncode == 0, resumed.stderr
    # a finished execution cannot be cancelled: the prefix was found, the state refused
    cancelled = orchestrion("cancel", unique, "--db", db)
    assert "not found" not in cancelled.stderr, cancelled.stderr

    # Ids begin with the time they were made: their last characters tell them apart.
    tail = _suffix(ids)
    assert len(tail) < 12, (tail, ids)
    by_tail = orchestrion("status", tail, "--db", db)
    assert by_tail.returncode == 0, by_tail.stderr
    assert ids[0] in by_tail.stdout
    logged = orchestrion("events", tail, "--db", db)
    assert logged.returncode == 0, logged.stderr

    missing = orchestrion("status", "zzzz", "--db", db)
    assert missing.returncode == 5, missing.stderr
    assert "'zzzz' not found" in missing.stderr
    whole_missing = orchestrion("status", "00000000-0000-4000-8000-000000000000", "--db", db)
    assert whole_missing.returncode == 5, whole_missing.stderr


ODD_PARTS = [".", "%", "_", "é", "a b", "\U0010ffff", "\ud7ff", "x" * 70, "'; drop table"]


def test_other_spellings_of_an_id_find_it_and_odd_ones_find_nothing(tmp_path: Path) -> None:
    db = str(tmp_path / "o.db")
    ids = _run_ids(db, _tiny(tmp_path), 2)
    whole = ids[0]
    bare = whole.replace("-", "")
    for spelling in (
        whole.upper(),
        bare,
        bare.upper(),
        f"{{{whole}}}",
        f"urn:uuid:{whole}",
        f"  {whole} ",
        _suffix(ids).upper(),
    ):
        shown = orchestrion("status", spelling, "--db", db)
        assert shown.returncode == 0, (spelling, shown.stderr)
        assert whole in shown.stdout, spelling
    for odd in ODD_PARTS:
        missing = orchestrion("status", odd, "--db", db)
        assert missing.returncode == 5, (odd, missing.stderr)
        assert "not found" in missing.stderr and "Traceback" not in missing.stderr, odd


def test_an_ambiguous_prefix_lists_the_candidates(tmp_path: Path) -> None:
    db = str(tmp_path / "o.db")
    ids = _run_ids(db, _tiny(tmp_path), 3)
    while _prefixes(ids)[1] is None:  # two ids starting alike; each run gives 1 in 16 odds
        ids += _run_ids(db, _tiny(tmp_path), 1)
    shared = _prefixes(ids)[1]
    assert shared is not None
    shown = orchestrion("status", shared, "--db", db)
    assert shown.returncode == 2, shown.stderr
    assert "ambiguous" in shown.stderr
    for execution_id in ids:
        if execution_id.startswith(shared):
            assert execution_id in shown.stderr


def test_prefixes_and_exit_codes_against_a_real_server(tmp_path: Path) -> None:
    import httpx

    db = tmp_path / "s.db"
    server = Server(tmp_path, db, {"ORCHESTRION_API_KEYS": "adminkey:admin,viewkey:viewer"})
    try:
        admin = {"Authorization": "Bearer adminkey"}
        with httpx.Client(base_url=server.url, headers=admin) as client:
            ids = []
            for _ in range(3):
                made = client.post("/v1/workflow", json={"name": "tiny", "dag": {"nodes": [
                    {"id": "a", "handler": "noop"}]}})  # fmt: skip
                assert made.status_code in (200, 201), made.text
                ids.append(made.json()["execution_id"])
        unique, _ = _prefixes(ids)
        remote = ("--server", server.url)
        shown = orchestrion("status", unique, *remote, env={"ORCHESTRION_API_KEY": "adminkey"})
        assert shown.returncode == 0, shown.stderr
        assert ids[0] in shown.stdout
        tail = _suffix(ids)
        by_tail = orchestrion("status", tail, *remote, env={"ORCHESTRION_API_KEY": "adminkey"})
        assert by_tail.returncode == 0, by_tail.stderr
        assert ids[0] in by_tail.stdout
        missing = orchestrion("status", "zzzz", *remote, env={"ORCHESTRION_API_KEY": "adminkey"})
        assert missing.returncode == 5, missing.stderr
        for odd in ODD_PARTS:
            odd_one = orchestrion("status", odd, *remote, env={"ORCHESTRION_API_KEY": "adminkey"})
            assert odd_one.returncode == 5, (odd, odd_one.stderr)
            assert "not found" in odd_one.stderr, odd
        upper = orchestrion(
            "status", tail.upper(), *remote, env={"ORCHESTRION_API_KEY": "adminkey"}
        )
        assert upper.returncode == 0 and ids[0] in upper.stdout, upper.stderr
        unknown = orchestrion("status", ids[0], *remote, env={"ORCHESTRION_API_KEY": "nope"})
        assert unknown.returncode == 6, unknown.stderr
        no_key = orchestrion("list", *remote)
        assert no_key.returncode == 6, no_key.stderr
        viewer = orchestrion("cancel", ids[0], *remote, env={"ORCHESTRION_API_KEY": "viewkey"})
        assert viewer.returncode == 6, viewer.stderr
        listed = orchestrion("list", *remote, env={"ORCHESTRION_API_KEY": "adminkey"})
        assert all(i in listed.stdout for i in ids), listed.stdout
    finally:
        assert server.stop() == 0, server.log.read_text()


# ---------------------------------------------------------------------------- journal, progress

FLAKY = """\
name: flaky
dag:
  nodes:
    - id: wobbly
      handler: python
      retry: {max_attempts: 3, initial_delay: 400ms, max_delay: 400ms, jitter: none}
      config:
        function: flaky
        params: {failures: 2, value: 7}
"""


def _flaky(folder: Path) -> Path:
    path = folder / "flaky.yaml"
    path.write_text(FLAKY, encoding="utf-8")
    return path


def test_events_shows_every_attempt_and_its_error_and_status_the_total_time(
    tmp_path: Path,
) -> None:
    import json
    import re

    db = str(tmp_path / "o.db")
    (execution_id,) = _run_ids(db, _flaky(tmp_path), 1)
    shown = orchestrion("events", execution_id[:8], "--db", db, env={"COLUMNS": "200"})
    assert shown.returncode == 0, shown.stderr
    assert "#1: flaky: attempt 1 fails on purpose" in shown.stdout, shown.stdout
    assert "#2: flaky: attempt 2 fails on purpose" in shown.stdout
    # events' total: the node's three attempts and the two 0.4 s waits between them
    total = re.search(r"wobbly\s+3\s+(\d+\.\d+)s", shown.stdout)
    assert total is not None and float(total.group(1)) >= 0.8, shown.stdout

    as_json = orchestrion("events", execution_id, "--db", db, "--json")
    rows = json.loads(as_json.stdout)
    started = [r for r in rows if r["type"] == "node.started" and r["node_id"] == "wobbly"]
    assert [r["attempt"] for r in started] == [1, 2, 3]

    status = orchestrion("status", execution_id, "--db", db, env={"COLUMNS": "200"})
    assert status.returncode == 0, status.stderr
    # status's time is the API's duration_ms: the last attempt's, without the waits
    seconds = float(re.search(r"wobbly\s.*?(\d+\.\d+)s", status.stdout).group(1))  # type: ignore[union-attr]
    assert seconds < float(total.group(1)), status.stdout
    assert f"orchestrion events {execution_id}" in status.stderr  # a hint: piped, on stderr

    missing = orchestrion("events", "zzzz", "--db", db)
    assert missing.returncode == 5


def test_events_and_totals_through_a_real_server(tmp_path: Path) -> None:
    import httpx

    server = Server(tmp_path, tmp_path / "s.db")
    try:
        with httpx.Client(base_url=server.url) as client:
            made = client.post(
                "/v1/workflow",
                content=_flaky(tmp_path).read_bytes(),
                headers={"Content-Type": "application/yaml"},
            )
            assert made.status_code in (200, 201), made.text
            execution_id = made.json()["execution_id"]
            assert client.post(f"/v1/workflow/trigger/{execution_id}", json={}).is_success
        remote = ("--server", server.url)
        done = orchestrion("status", execution_id, *remote)
        for _ in range(100):
            if "completed" in done.stdout:
                break
            import time

            time.sleep(0.1)
            done = orchestrion("status", execution_id, *remote)
        shown = orchestrion("events", execution_id[:8], *remote, env={"COLUMNS": "200"})
        assert shown.returncode == 0, shown.stderr
        assert "#1: flaky: attempt 1 fails on purpose" in shown.stdout, shown.stdout
        assert orchestrion("events", "zzzz", *remote).returncode == 5
    finally:
        assert server.stop() == 0, server.log.read_text()


def test_the_live_clock_moves_while_nothing_happens(tmp_path: Path) -> None:
    """On a terminal the progress view's clock runs through a 3 s delay, not only on events."""
    import pty
    import re
    import select
    import time

    flow = tmp_path / "slow.yaml"
    flow.write_text(
        "name: slow\ndag:\n  nodes:\n    - {id: pause, handler: delay, config: {seconds: 3s}}\n"
    )
    controller, terminal = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    env.update({"COLUMNS": "100", "LINES": "30", "TERM": "xterm"})
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrion.cli.app", "run", str(flow), "--db",
         str(tmp_path / "o.db")],
        stdin=terminal, stdout=terminal, stderr=terminal, env=env, close_fds=True,
    )  # fmt: skip
    os.close(terminal)
    seen = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(controller, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        elif process.poll() is not None:
            break
    process.wait(30)
    os.close(controller)
    assert process.returncode == 0, seen.decode(errors="replace")
    clock = {float(v) for v in re.findall(rb"slow v1\s+(\d+\.\d)s", seen)}
    # Events come at the start and after 3 s: readings in between come from the clock alone.
    assert any(0.5 <= value <= 2.5 for value in clock), sorted(clock)


# ---------------------------------------------------------------------------- inputs, imports


def test_a_misspelt_input_is_refused_with_a_suggestion(tmp_path: Path) -> None:
    demo = str(ROOT / "examples" / "demo.yaml")
    db = str(tmp_path / "o.db")
    shown = orchestrion("run", demo, "-i", "topik=churn", "--db", db)
    assert shown.returncode == 2, shown.stderr
    assert "'topik' is not declared" in shown.stderr and "did you mean 'topic'" in shown.stderr
    assert not Path(db).exists()  # exit 2 stores nothing, not even the definition
    # a workflow that declares no inputs takes whatever it is given
    free = orchestrion("run", str(_tiny(tmp_path)), "-i", "anything=1", "--db", db)
    assert free.returncode == 0, free.stderr


def test_the_api_refuses_an_undeclared_input_with_422(tmp_path: Path) -> None:
    import httpx

    server = Server(tmp_path, tmp_path / "s.db")
    try:
        with httpx.Client(base_url=server.url) as client:
            made = client.post(
                "/v1/workflow",
                content=(ROOT / "examples" / "demo.yaml").read_bytes(),
                headers={"Content-Type": "application/yaml"},
            )
            assert made.status_code in (200, 201), made.text
            execution_id = made.json()["execution_id"]
            refused = client.post(
                f"/v1/workflow/trigger/{execution_id}", json={"input_params": {"topik": "x"}}
            )
            assert refused.status_code == 422, refused.text
            assert "did you mean 'topic'" in refused.text
    finally:
        assert server.stop() == 0, server.log.read_text()


def test_a_local_run_imports_functions_from_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "mysteps.py").write_text("def step(**params):\n    return {'ok': 42}\n")
    flow = tmp_path / "steps.yaml"
    flow.write_text(
        "name: steps\ndag:\n  nodes:\n"
        "    - {id: s, handler: python, config: {function: 'mysteps:step'}}\n"
    )
    script = Path(sys.executable).parent / "orchestrion"  # the console script people run
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    ran = subprocess.run(
        [str(script), "run", "steps.yaml", "--db", "o.db", "--json"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert '"ok": 42' in ran.stdout


# ---------------------------------------------------------------------------- the demo script


def test_the_demo_execution_is_found_by_the_status_command_it_suggests(tmp_path: Path) -> None:
    import re

    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    env.pop("DEMO_DB", None)
    env["ORCHESTRION_DATABASE_URL"] = f"sqlite:///{tmp_path / 'default.db'}"
    env["COLUMNS"] = "200"
    demo = subprocess.run(
        [str(ROOT / "scripts" / "demo"), "-q"], capture_output=True, text=True, timeout=300,
        env=env,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stderr
    found = re.search(r"execution ([0-9a-f-]{36}) completed", demo.stdout)
    assert found, demo.stdout
    assert "orchestrion status" in demo.stderr
    shown = orchestrion("status", found.group(1), env={"ORCHESTRION_DATABASE_URL": env[
        "ORCHESTRION_DATABASE_URL"]})  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert found.group(1) in shown.stdout


def test_log_level_error_silences_a_definitions_warnings_too(tmp_path: Path) -> None:
    warned = tmp_path / "warned.yaml"
    warned.write_text(
        "name: warned\ntriggers: [{type: schedule}]\ndag: {nodes: [{id: a, handler: noop}]}\n"
    )
    assert "not enforced yet" in orchestrion("validate", str(warned)).stderr
    quiet = orchestrion("validate", str(warned), env={"ORCHESTRION_LOG_LEVEL": "ERROR"})
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr


def test_run_refuses_the_engines_own_idempotency_keys_locally_too(tmp_path: Path) -> None:
    db = str(tmp_path / "o.db")
    flow = _tiny(tmp_path)
    for key in ("event:x", "Schedule:nightly@1", "child:abc:sub:1"):
        refused = orchestrion("run", str(flow), "--db", db, "--idempotency-key", key)
        assert refused.returncode == 2, (key, refused.stderr)
        assert "--idempotency-key" in refused.stderr and "engine's own" in refused.stderr
    first = orchestrion("run", str(flow), "--db", db, "--idempotency-key", "mine", "--json")
    again = orchestrion("run", str(flow), "--db", db, "--idempotency-key", "mine", "--json")
    assert first.returncode == again.returncode == 0, again.stderr
    assert json.loads(first.stdout)["execution_id"] == json.loads(again.stdout)["execution_id"]
    listed = orchestrion("list", "--db", db, "--json")
    assert len(json.loads(listed.stdout)) == 1, listed.stdout
