"""Property-based tests of a real ``orchestrion serve`` (with API keys) against its own
/openapi.json, with every schemathesis check.

Besides "no server error" and the conformance of each answer (status code, content type,
headers, body schema), ``--checks all`` holds the document to its word both ways: a request
the schema allows must not be refused as invalid (positive_data_acceptance), a request it
forbids must be refused (negative_data_rejection), a missing key must give 401
(ignored_auth, missing_required_header), an undeclared method 405 (unsupported_method).
Bounded to a few examples per operation so the run stays under a minute; ``fuzz_api.py``
runs the same for a time budget.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fuzz_api import SCHEMATHESIS, config_file, fuzz, seed, serve
from test_api_server import Server

pytestmark = pytest.mark.slow

if not SCHEMATHESIS.exists() and not shutil.which("schemathesis"):  # pragma: no cover
    if os.environ.get("CI") == "true":
        raise RuntimeError("schemathesis is not installed; in CI the dev extra must be")
    pytest.skip("schemathesis is not installed; pip install -e '.[dev]'", allow_module_level=True)

MAX_EXAMPLES = 6
SEED = "20261206"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = serve(tmp_path_factory.mktemp("schemathesis"))
    try:
        yield running
    finally:
        assert running.stop() == 0, running.log.read_text()


def test_every_operation_passes_every_check(server: Server, tmp_path: Path) -> None:
    config = config_file(tmp_path, seed(server))
    run = fuzz(server, config, "--max-examples", str(MAX_EXAMPLES), "--seed", SEED)
    assert run.returncode == 0, run.output
    tested = re.search(r"Tested: (\d+)", run.output)
    assert tested is not None and int(tested.group(1)) >= 25, run.output
    assert re.search(r"\d+ generated, \d+ passed", run.output), run.output
    assert "Traceback" not in run.server_log
    assert '"status": 500' not in run.server_log
