"""Schemathesis with every check against a real ``orchestrion serve`` with API keys.

Used by test_schemathesis.py (a bounded number of examples, under a minute) and run by hand
for a long time budget, whose figures docs/GOVERNANCE.md records:

    .venv/bin/python tests/e2e/fuzz_api.py --max-time 600

The server gets an admin key (every route, /v1/admin included, is reachable), a definition
and a finished execution so the stateful phase and the control routes have something real
to act on. The event streams are left out: they never end by design.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_api_server import Server

CONFIG = Path(__file__).with_name("schemathesis.toml")
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
ADMIN_KEY = "fuzz-admin-key"
WORKFLOW = {
    "name": "fuzzed",
    "inputs": {"who": {"type": "string", "default": "world"}},
    "dag": {
        "nodes": [
            {"id": "a", "handler": "noop", "config": {"value": "hello {{ input.who }}"}},
            {"id": "b", "handler": "noop", "dependencies": ["a"]},
        ]
    },
}
# Control routes act on this execution instead of random ids (which only find 404s).
_KNOWN_IDS = "^/v1/workflows/\\{execution_id\\}/(pause|resume|retry|nodes/.*)$"


@dataclass
class FuzzRun:
    """What a run printed and how it ended."""

    returncode: int
    output: str
    server_log: str


def serve(folder: Path) -> Server:
    """``orchestrion serve`` with one admin key, rate limiting off (for callers without a
    key too: the auth checks send thousands of those)."""
    env = {
        "ORCHESTRION_API_KEYS": f"{ADMIN_KEY}:admin",
        "ORCHESTRION_RATE_LIMIT_UNAUTHENTICATED_PER_SECOND": "0",
    }
    return Server(folder, folder / "fuzz.db", env)


def seed(server: Server) -> str:
    """A definition and one finished execution; returns the execution id."""
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with httpx.Client(base_url=server.url, timeout=10, headers=headers) as client:
        submitted = client.post("/v1/workflow", json=WORKFLOW)
        submitted.raise_for_status()
        execution_id = str(submitted.json()["execution_id"])
        client.post(f"/v1/workflow/trigger/{execution_id}").raise_for_status()
    return execution_id


def config_file(folder: Path, execution_id: str) -> Path:
    """tests/e2e/schemathesis.toml plus the id of the seeded execution."""
    text = CONFIG.read_text()
    text += (
        "\n[[operations]]\n"
        f"include-path-regex = '{_KNOWN_IDS}'\n"
        f'parameters = {{ "execution_id" = "{execution_id}" }}\n'
    )
    path = folder / "schemathesis.toml"
    path.write_text(text)
    return path


def fuzz(server: Server, config: Path, *budget: str) -> FuzzRun:
    """Run the schemathesis CLI with every check; ``budget``: --max-examples or --max-time."""
    command = [
        str(SCHEMATHESIS),
        "--config-file", str(config),
        "run", f"{server.url}/openapi.json",
        "--checks", "all",
        "--header", f"Authorization: Bearer {ADMIN_KEY}",
        "--exclude-path-regex", "/stream$",
        "--workers", "1",
        "--no-color",
        "--suppress-health-check", "all",
        *budget,
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    # Run in the config's folder: schemathesis keeps a cache (.schemathesis/) where it runs.
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=config.parent, check=False
    )
    return FuzzRun(done.returncode, done.stdout + done.stderr, server.log.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-time", default="600", help="seconds (default 600)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        server = serve(folder)
        try:
            config = config_file(folder, seed(server))
            run = fuzz(server, config, "--max-time", args.max_time)
        finally:
            stopped = server.stop()
        print(run.output)
        tracebacks = run.server_log.count("Traceback")
        print(f"server exit code {stopped}; tracebacks in the server log: {tracebacks}")
        return run.returncode or stopped or int(tracebacks > 0)


if __name__ == "__main__":
    sys.exit(main())
