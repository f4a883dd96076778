"""The first hour with the ``orchestrion`` command: what a newcomer types, as real processes.

Each test runs the CLI (and where it talks to a service, a real ``orchestrion serve``) the way
the README tells a user to, and checks what they see: messages, exit codes, log lines.
"""

from __future__ import annotations

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
    chatty = orchestrion("list", "--db", db, env={"ORCHESTRION_LOG_LEVEL": "INFO"})
    assert chatty.returncode == 0
    assert "ORCHESTRION_AUDIT_KEYS is not set" in chatty.stderr  # said, when asked for
    quiet = orchestrion("list", "--db", db, env={"ORCHESTRION_LOG_LEVEL": "ERROR"})
    assert quiet.returncode == 0
    assert quiet.stderr == ""


def _only_id(db: str) -> str:
    import json

    listed = orchestrion("list", "--db", db, "--json")
    return str(json.loads(listed.stdout)[0]["id"])


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
    assert "[red]n v1" in ran.stdout, ran.stdout
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
