"""Malformed files and values given to the ``orchestrion`` command, as real processes: exit
code 2, a message naming the place, and never a traceback."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from malformed import DEEP, HUGE_INT, TEMPLATE_CASES

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "orchestrion.cli.app"]
OK_YAML = "name: fine\ndag:\n  nodes:\n  - id: a\n    handler: noop\n"


def orchestrion(*args: str | bytes, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    env["COLUMNS"] = "200"
    argv = [os.fsencode(a) if isinstance(a, str) else a for a in (*CLI, *args)]
    done = subprocess.run(argv, capture_output=True, timeout=120, env=env, cwd=cwd)
    return subprocess.CompletedProcess(
        done.args,
        done.returncode,
        done.stdout.decode("utf-8", "replace"),
        done.stderr.decode("utf-8", "replace"),
    )


def refused(result: subprocess.CompletedProcess[str], says: str) -> bool:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert says.lower() in result.stderr.lower(), result.stderr
    return True


NODE = '{"id": "a", "handler": "noop", "config": {"value": @}}'
FILES: dict[str, tuple[bytes, str]] = {
    "deep.json": (b'{"name": "x", "dag": ' + DEEP.encode() + b"}", "nested"),
    "deep-config.json": (
        b'{"name": "x", "dag": {"nodes": [' + NODE.replace("@", DEEP).encode() + b"]}}",
        "nested",
    ),
    "huge.json": (
        b'{"name": "x", "dag": {"nodes": [' + NODE.replace("@", HUGE_INT).encode() + b"]}}",
        "/dag/nodes/0/config/value",
    ),
    "nan.json": (
        b'{"name": "x", "dag": {"nodes": [' + NODE.replace("@", "NaN").encode() + b"]}}",
        "NaN",
    ),
    "surrogate.json": (b'{"name": "\\ud800", "dag": {"nodes": []}}', "surrogate"),
    "not-utf8.json": (b'{"name": "\xff"}', "cannot read"),
    "surrogate.yaml": (b'name: "\\ud800"\n', "Unicode"),
    "deep.yaml": (b"name: x\ndag: " + DEEP.encode() + b"\n", "nest"),
    "huge.yaml": (f"{OK_YAML}    config:\n      value: {HUGE_INT}\n".encode(), "digits"),
    "nan.yaml": (f"{OK_YAML}    config:\n      value: .nan\n".encode(), "nan"),
    "bad-date.yaml": (f"{OK_YAML}    config:\n      value: 2020-13-45\n".encode(), "line 7"),
    "name-nul.json": (
        b'{"name": "a\\u0000b", "dag": {"nodes": [{"id": "a", "handler": "noop"}]}}',
        "control characters",
    ),
}


@pytest.mark.parametrize("command", ["validate", "run", "graph"])
@pytest.mark.parametrize("name", sorted(FILES))
def test_malformed_definition_files(tmp_path: Path, command: str, name: str) -> None:
    content, says = FILES[name]
    (tmp_path / name).write_bytes(content)
    extra = ["--db", str(tmp_path / "o.db")] if command == "run" else []
    assert refused(orchestrion(command, name, *extra, cwd=tmp_path), says)


@pytest.mark.parametrize(("template", "says"), TEMPLATE_CASES[:6], ids=lambda v: str(v)[:30])
def test_template_errors_in_a_file(tmp_path: Path, template: str, says: str) -> None:
    text = OK_YAML + "    config:\n      value: '" + template.replace("'", "''") + "'\n"
    (tmp_path / "t.yaml").write_text(text)
    result = orchestrion("validate", "t.yaml", cwd=tmp_path)
    assert refused(result, says)
    assert "node 'a'" in result.stderr and "config.value" in result.stderr


@pytest.mark.parametrize(
    ("argument", "says"),
    [
        ("x=" + "[" * 30_000 + "]" * 30_000, "nested"),  # one argument holds 128 KiB at most
        ("x=" + HUGE_INT, "digits"),
        ("x=NaN", "NaN"),
        ("x=[1, Infinity]", "Infinity"),
        ('x={"a": "\\ud800"}', "surrogate"),
        (b"x=caf\xe9", "not UTF-8"),  # an argument that is not UTF-8
        (b"k\xff=1", "not UTF-8"),
        ("novalue", "key=value"),
    ],
    ids=lambda v: repr(v)[:24],
)
def test_malformed_input_values(tmp_path: Path, argument: str | bytes, says: str) -> None:
    (tmp_path / "ok.yaml").write_text(OK_YAML)
    result = orchestrion("run", "ok.yaml", "--db", str(tmp_path / "o.db"), "-i", argument,
                         cwd=tmp_path)  # fmt: skip
    assert refused(result, says)
    assert not (tmp_path / "o.db").exists()  # refused before anything was stored


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b'{"x": ' + DEEP.encode() + b"}", "nested"),
        (b'{"x": ' + HUGE_INT.encode() + b"}", "digits"),
        (b'{"x": NaN}', "NaN"),
        (b'{"\\udc00": 1}', "surrogate"),
        (b'{"x": "\xff"}', "UTF-8"),
        (b"[1, 2]", "JSON object"),
    ],
    ids=lambda v: repr(v)[:24],
)
def test_malformed_inputs_files(tmp_path: Path, content: bytes, says: str) -> None:
    (tmp_path / "ok.yaml").write_text(OK_YAML)
    (tmp_path / "in.json").write_bytes(content)
    result = orchestrion("run", "ok.yaml", "--db", str(tmp_path / "o.db"),
                         "--inputs-file", "in.json", cwd=tmp_path)  # fmt: skip
    assert refused(result, says)


@pytest.mark.parametrize(
    ("key", "says"), [(b"k\xff", "not UTF-8"), ("clé", "printable ASCII"), ("a b", "ASCII")]
)
def test_an_api_key_that_cannot_be_sent(tmp_path: Path, key: str | bytes, says: str) -> None:
    (tmp_path / "ok.yaml").write_text(OK_YAML)
    result = orchestrion("run", "ok.yaml", "--server", "http://127.0.0.1:9", "--api-key", key,
                         cwd=tmp_path)  # fmt: skip
    assert refused(result, says)


@pytest.mark.parametrize(
    "command",
    [["status", b"\xff"], ["cancel", b"\xff"], ["retry", b"\xff"], ["approve", b"\xff", b"n"],
     ["list", "-w", b"\xff"], ["audit", "list", "--actor", b"\xff"],
     ["status", b"\xff", "--server", "http://127.0.0.1:9"]],
    ids=lambda c: " ".join(map(str, c)),
)  # fmt: skip
def test_arguments_that_are_not_utf8(tmp_path: Path, command: list[str | bytes]) -> None:
    result = orchestrion(*command, "--db", str(tmp_path / "x.db"), cwd=tmp_path)
    assert refused(result, "not UTF-8")
    assert not (tmp_path / "x.db").exists()


@pytest.mark.parametrize(
    "value", ["nan", "inf", "-1", "1e308", "2026-13-01T00:00:00Z", "0001-01-01T00:00:00+14:00x"]
)
def test_audit_time_filters(tmp_path: Path, value: str) -> None:
    result = orchestrion("audit", "list", "--db", str(tmp_path / "a.db"), "--since", value,
                         cwd=tmp_path)  # fmt: skip
    assert refused(result, "--since")


@pytest.mark.parametrize("value", ["1e308", "99999999999999999d", "P99999999999D"])
def test_purge_with_a_huge_duration_stops_at_1970(tmp_path: Path, value: str) -> None:
    sqlite3.connect(tmp_path / "p.db").close()  # exists, holds nothing yet
    result = orchestrion("purge", "--db", str(tmp_path / "p.db"), "--older-than", value,
                         cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "1970-01-01" in result.stdout


def test_a_file_name_that_is_not_utf8_is_shown(tmp_path: Path) -> None:
    (tmp_path / os.fsdecode(b"\xff.yaml")).write_text(OK_YAML)
    result = orchestrion("validate", b"\xff.yaml", cwd=tmp_path)
    assert result.returncode == 0 and "\\udcff.yaml" in result.stdout, result.stderr
