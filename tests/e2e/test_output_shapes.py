"""One output shape: the CLI's ``--json`` prints what the API returns for the same execution
(field names, UPPERCASE states, ISO 8601 UTC times, ``*_ms`` durations)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrion.api import create_app
from orchestrion.engine.facade import Engine
from orchestrion.settings import load_settings

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "orchestrion.cli.app"]
FLOW = {
    "name": "shapes",
    "dag": {
        "nodes": [
            {"id": "input", "handler": "input"},
            {"id": "a", "handler": "noop", "dependencies": ["input"], "config": {"value": 1}},
            {"id": "output", "handler": "output", "dependencies": ["a"]},
        ]
    },
}


def _cli(*args: str, cwd: Path) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    done = subprocess.run(
        [*CLI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


async def _api(db: Path, *paths: str) -> list[Any]:
    settings = load_settings(database_url=f"sqlite:///{db}", rate_limit_per_second=0)
    engine = Engine(settings=settings)
    await engine.start()
    app = create_app(engine, settings)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                return [(await client.get(path)).json() for path in paths]
    finally:
        await engine.stop(0)


async def test_cli_json_is_the_api_shape(tmp_path: Path) -> None:
    db = tmp_path / "shapes.db"
    flow = tmp_path / "flow.json"
    flow.write_text(json.dumps(FLOW), encoding="utf-8")
    ran = _cli("run", str(flow), "--db", str(db), "--json", cwd=tmp_path)
    execution_id = ran["execution_id"]
    status = _cli("status", execution_id, "--db", str(db), "--json", cwd=tmp_path)
    listed = _cli("list", "--db", str(db), "--json", cwd=tmp_path)
    upper = _cli("list", "-s", "COMPLETED", "--db", str(db), "--json", cwd=tmp_path)
    detail, page, events = await _api(
        db, f"/v1/workflows/{execution_id}", "/v1/workflows", f"/v1/workflows/{execution_id}/events"
    )

    assert status == ran
    assert ran["status"] == ran["state"] == "COMPLETED"
    assert ran["id"] == execution_id
    assert ran["created_at"].endswith("Z")
    # Every field the CLI prints, the API prints alike (the CLI adds the result).
    assert set(ran) - set(detail) == {"result"}
    for key in set(ran) - {"result", "nodes"}:
        assert ran[key] == detail[key], key
    for node_id, node in ran["nodes"].items():
        assert node == {key: detail["nodes"][node_id][key] for key in node}, node_id

    [row] = listed
    [item] = page["items"]
    assert row == {key: item[key] for key in row}
    assert row["status"] == "COMPLETED" and row["execution_id"] == execution_id
    assert upper == listed  # a filter takes the states as printed

    # Events speak the same language: node states in their data are UPPERCASE too.
    states = [e["data"]["state"] for e in events["items"] if e["node_id"] == "a"]
    assert states == ["QUEUED", "RUNNING", "COMPLETED"]
    assert all(e["at"].endswith("Z") for e in events["items"])
