"""Encryption at rest through real processes: ``orchestrion keys generate``, then
``orchestrion run`` with the key set, and the SQLite file searched byte by byte: the values
of a classified execution are in none of it, while ``orchestrion status`` (another process,
same key) prints them back and one without the key names the key it lacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sealed_values import Secrets, sqlite_bytes

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "orchestrion.cli.app"]


def orchestrion(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().endswith("_PROXY") and not k.startswith("ORCHESTRION_")
    }
    full_env["COLUMNS"] = "200"
    full_env.update(env or {})
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120, env=full_env)


def workflow(fails: bool) -> dict[str, object]:
    nodes: list[dict[str, object]] = [
        {"id": "input", "handler": "input"},
        {
            "id": "echo",
            "handler": "noop",
            "dependencies": ["input"],
            "config": {"value": "{{ input.marker }} {{ input.email }} {{ input.card }}"},
        },
        {
            "id": "each",
            "handler": "map",
            "dependencies": ["input"],
            "config": {
                "items": "{{ input.items }}",
                "handler": "noop",
                "config": {"value": "{{ item }}"},
            },
        },
        {"id": "flag", "handler": "noop", "data_classification": "pii"},
        {"id": "done", "handler": "output", "dependencies": ["echo", "each", "flag"]},
    ]
    if fails:
        # A standard-library function whose error message quotes its argument.
        nodes.append(
            {
                "id": "parse",
                "handler": "python",
                "dependencies": ["input"],
                "retry": {"max_attempts": 1},
                "config": {
                    "function": "ipaddress:ip_address",
                    "params": {"address": "{{ input.iban }} {{ input.marker }}"},
                },
            }
        )
    return {"name": "sealed-cli-fails" if fails else "sealed-cli", "dag": {"nodes": nodes}}


def test_orchestrion_run_leaves_no_value_readable_in_the_file(tmp_path: Path) -> None:
    secrets = Secrets()
    generated = orchestrion("keys", "generate", "--id", "k1")
    assert generated.returncode == 0, generated.stderr
    key = generated.stdout.strip()
    assert key.startswith("k1:")
    env = {"ORCHESTRION_ENCRYPTION_KEYS": key}
    db = tmp_path / "cli.db"
    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps(secrets.inputs()))
    runs = {}
    for fails in (False, True):
        definition = tmp_path / f"wf-{fails}.yaml"
        definition.write_text(yaml.safe_dump(workflow(fails)))
        ran = orchestrion(
            "run",
            str(definition),
            "--db",
            str(db),
            "--inputs-file",
            str(inputs),
            "--json",
            env=env,
        )
        assert ran.returncode == (1 if fails else 0), ran.stderr
        runs[fails] = json.loads(ran.stdout)
    ok, failed = runs[False], runs[True]
    assert ok["nodes"]["input"]["output"] == secrets.inputs()  # the local CLI reads it plain
    assert failed["status"] == "failed"
    assert secrets.marker in failed["nodes"]["parse"]["error"]["message"]

    found = secrets.found_in(sqlite_bytes(db))
    assert not found, f"{found} readable in the SQLite file written by orchestrion run"

    shown = orchestrion("status", ok["execution_id"], "--db", str(db), "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert status["nodes"]["echo"]["output"] == f"{secrets.marker} {secrets.email} {secrets.card}"
    assert status["nodes"]["each"]["output"]["results"] == [secrets.marker, secrets.email]
    blind = orchestrion("status", failed["execution_id"], "--db", str(db), "--json")
    assert blind.returncode != 0
    assert "'k1'" in blind.stdout + blind.stderr
    assert not secrets.found_in(blind.stdout + blind.stderr)
