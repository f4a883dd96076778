"""Property-based tests of a real ``orchestrion serve`` against its own /openapi.json.

Schemathesis generates requests for every operation (valid ones and, to find crashes, invalid
ones), bounded to a few examples each so the whole run stays well under a minute. Every answer
must be free of server errors and conform to the document: documented status code, content
type, headers and body schema. The event streams are left out: they never end by design.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_api_server import Server

pytestmark = pytest.mark.slow

try:
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.checks import (
        content_type_conformance,
        not_a_server_error,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )
except ImportError as exc:  # pragma: no cover - depends on the environment
    if os.environ.get("CI") == "true":
        raise  # in CI the dev extra is installed: a missing tool is a failure, not a skip
    pytest.skip(f"schemathesis is not installed ({exc}); pip install -e '.[dev]'",
                allow_module_level=True)  # fmt: skip

MAX_EXAMPLES = 15
BUDGET_SECONDS = 80

WORKFLOW = {
    "name": "fuzzed",
    "dag": {"nodes": [{"id": "a", "handler": "noop", "config": {"value": 1}}]},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("schemathesis")
    running = Server(folder, folder / "fuzz.db")
    try:
        yield running
    finally:
        assert running.stop() == 0, running.log.read_text()


def test_every_operation_answers_within_its_schema(server: Server) -> None:
    import httpx

    # Something real to find: a definition and a finished execution (ids stay random, too).
    with httpx.Client(base_url=server.url, timeout=10) as client:
        execution_id = client.post("/v1/workflow", json=WORKFLOW).json()["execution_id"]
        assert client.post(f"/v1/workflow/trigger/{execution_id}").status_code == 202

    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
    ]
    failures: list[str] = []
    tested: list[str] = []
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.endswith("/stream"):
            continue
        tested.append(operation.label)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=MAX_EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def run(case: Any) -> None:
                response = case.call(base_url=server.url, timeout=10)
                case.validate_response(response, checks=checks)

            try:
                run()
            except Unsatisfiable:
                # Nothing can be invalid in an operation without parameters or body.
                assert mode is GenerationMode.NEGATIVE, operation.label
            except Exception as exc:
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    took = time.monotonic() - started
    assert len(tested) >= 17, tested
    assert not failures, "\n\n".join(failures)
    assert took < BUDGET_SECONDS, f"took {took:.1f} s"
    log = Path(server.log).read_text()
    assert "Traceback" not in log and '"status": 500' not in log
