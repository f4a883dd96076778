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
