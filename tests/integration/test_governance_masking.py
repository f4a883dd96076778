"""Personal data in a run: no log line shows it, callers without admin see it masked (issue #6).

The API runs in process (httpx over ASGI, a real engine on SQLite, the app's lifespan and its
node transition log), with every log line captured twice: by caplog at DEBUG and through the
server's JSON formatter (which writes the extra fields too).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from orchestrion.api import create_app
from orchestrion.engine.facade import Engine
from orchestrion.handlers.base import NodeContext
from orchestrion.handlers.python import function
from orchestrion.observability.logging_setup import configure_logging
from orchestrion.settings import load_settings
from pii import GOVERNANCE_YAML, PII, assert_no_pii, echo_server, failing, profile

KEYS = "adm-key:admin,op-key:operator,view-key:viewer"
ADMIN = {"Authorization": "Bearer adm-key"}
OPERATOR = {"Authorization": "Bearer op-key"}
VIEWER = {"Authorization": "Bearer view-key"}
MASKED = {"masked": "pii"}


@dataclass
class Served:
    client: httpx.AsyncClient
    app: FastAPI

    async def run(self, definition: dict[str, Any]) -> str:
        submitted = await self.client.post("/v1/workflow", json=definition, headers=OPERATOR)
        assert submitted.status_code == 201, submitted.text
        execution_id = str(submitted.json()["execution_id"])
        triggered = await self.client.post(
            f"/v1/workflow/trigger/{execution_id}", json={"input_params": PII}, headers=OPERATOR
        )
        assert triggered.status_code == 202, triggered.text
        deadline = time.monotonic() + 20
        while True:
            body = (await self.client.get(f"/v1/workflows/{execution_id}", headers=ADMIN)).json()
            if body["status"] in ("COMPLETED", "FAILED"):
                return execution_id
            assert time.monotonic() < deadline, body
            await asyncio.sleep(0.02)

    async def get(self, path: str, who: dict[str, str]) -> Any:
        response = await self.client.get(path, headers=who)
        assert response.status_code == 200, response.text
        return response.json()


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, **overrides: Any) -> AsyncIterator[Served]:
    if "governance_file" not in overrides:  # the service runs allowlisted modules only
        policy = tmp_path / "service-governance.yaml"
        policy.write_text(GOVERNANCE_YAML)
        overrides["governance_file"] = policy
    settings = load_settings(
        database_url=f"sqlite:///{tmp_path / 'pii.db'}",
        rate_limit_per_second=0,
        shutdown_grace=0,
        mask_all_logs=True,  # as `orchestrion serve` has it: every log line of the process
        **overrides,
    )
    engine = Engine(settings=settings)
    await engine.start()
    app = create_app(engine, settings)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                yield Served(client, app)
    finally:
        await engine.stop(0)


@pytest.fixture
def server_log(caplog: pytest.LogCaptureFixture) -> Iterator[io.StringIO]:
    """The server's JSON log lines, with caplog (at DEBUG) still capturing behind them."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    configure_logging("json", "DEBUG", stream=stream)
    root.addHandler(caplog.handler)
    caplog.handler.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
        logging.getLogger("uvicorn.access").disabled = False


def _every_captured_line(caplog: pytest.LogCaptureFixture, stream: io.StringIO) -> str:
    parts = [caplog.text, stream.getvalue()]
    for record in caplog.records:
        parts.append(record.getMessage())
        parts.append(record.exc_text or "")
        parts.append(repr({k: v for k, v in vars(record).items() if k not in ("msg", "args")}))
    return "\n".join(parts)


async def test_a_run_through_the_api_logs_no_personal_data_and_masks_it_for_non_admins(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, server_log: io.StringIO
) -> None:
    with echo_server() as url:
        async with serving(tmp_path, api_keys=KEYS) as api:
            done = await api.run(profile(url))
            failed = await api.run(failing())
            await asyncio.sleep(0.2)  # the transition log is written off the engine loop

            # Admin: everything as stored.
            detail = await api.get(f"/v1/workflows/{done}", ADMIN)
            assert detail["status"] == "COMPLETED", detail
            assert detail["inputs"] == PII
            assert detail["nodes"]["card"]["output"] == {
                "email": PII["email"],
                "card": PII["card"],
            }
            assert detail["nodes"]["call"]["output"]["data"]["received"]["card"] == PII["card"]
            results = await api.get(f"/v1/workflows/{done}/results", ADMIN)
            assert results["result"]["card"]["email"] == PII["email"]

            # Viewer and operator: classified outputs hidden whole, public ones as they are.
            for who in (VIEWER, OPERATOR):
                detail = await api.get(f"/v1/workflows/{done}", who)
                nodes = detail["nodes"]
                assert nodes["card"]["output"] == nodes["call"]["output"] == MASKED
                assert nodes["input"]["output"] == detail["inputs"] == MASKED
                assert nodes["count"]["output"] == "3 items"
                # It reads the pii nodes, so it is pii too (inherited): hidden whole.
                assert nodes["output"]["output"] == MASKED
                results = await api.get(f"/v1/workflows/{done}/results", who)
                assert results["result"] == MASKED  # the output node's output, pii by inheritance
                assert results["results"]["aggregated_results"] == MASKED
                assert_no_pii(json.dumps([detail, results]), "a viewer's execution and results")

            # A failed run: a classified node's error message hidden whole for the viewer (it
            # quotes the node's data), another node's pattern-masked; plain for admin.
            admin_view = await api.get(f"/v1/workflows/{failed}", ADMIN)
            assert PII["email"] in admin_view["nodes"]["bill"]["error"]["message"]
            assert PII["card"] in admin_view["nodes"]["parse"]["error"]["message"]
            viewer_view = await api.get(f"/v1/workflows/{failed}", VIEWER)
            bill = viewer_view["nodes"]["bill"]["error"]["message"]
            assert bill == "[masked: pii]"
            assert (
                viewer_view["nodes"]["bill"]["error"]["category"]
                == admin_view["nodes"]["bill"]["error"]["category"]
            )
            assert "[card]" in viewer_view["nodes"]["parse"]["error"]["message"]
            viewer_results = await api.get(f"/v1/workflows/{failed}/results", VIEWER)
            assert_no_pii(json.dumps([viewer_view, viewer_results]), "a viewer's failed run")

            # Events, paged and streamed.
            for path in (f"/v1/workflows/{failed}/events", "/v1/events?limit=1000"):
                assert_no_pii(json.dumps(await api.get(path, VIEWER)), f"viewer {path}")
                assert PII["email"] in json.dumps(await api.get(path, ADMIN))
            stream = f"/v1/workflows/{failed}/events/stream"
            viewer_sse = (await api.client.get(stream, headers=VIEWER)).text
            assert "node.failed" in viewer_sse and "[email]" in viewer_sse
            assert_no_pii(viewer_sse, "a viewer's event stream")
            admin_sse = (await api.client.get(stream, headers=ADMIN)).text
            assert PII["email"] in admin_sse

    logged = _every_captured_line(caplog, server_log)
    # The lines that would have leaked were written, masked:
    assert "got [email] [phone] card [card] id [ssn]" in logged  # the python node's own line
    assert "/customers/[email]" in logged  # httpx's request line
    assert "cannot bill [email]" in logged  # the node transition log's error field
    assert_no_pii(logged, "the captured log lines")


async def test_open_api_shows_everything(tmp_path: Path) -> None:
    async with serving(tmp_path) as api:
        done = await api.run(failing())
        detail = await api.get(f"/v1/workflows/{done}", {})
        assert PII["email"] in detail["nodes"]["bill"]["error"]["message"]
        assert detail["inputs"] == PII


async def test_masking_off_in_the_policy_shows_everything(tmp_path: Path) -> None:
    policy = tmp_path / "governance.yaml"
    policy.write_text(GOVERNANCE_YAML + "masking:\n  enabled: false\n")
    with echo_server() as url:
        async with serving(tmp_path, api_keys=KEYS, governance_file=policy) as api:
            done = await api.run(profile(url))
            detail = await api.get(f"/v1/workflows/{done}", VIEWER)
    assert detail["nodes"]["card"]["output"]["card"] == PII["card"]


@function("log_customer_through_ctx_logger")
def _log_customer(ctx: NodeContext, customer: dict[str, Any]) -> str:
    ctx.logger.info("customer %s", customer)
    ctx.logger.debug("raw fields", extra={"customer": customer, "card_digits": 4111111111111111})
    try:
        raise LookupError(f"no account for {customer['email']} / {customer['card']}")
    except LookupError:
        ctx.logger.exception("lookup failed")
    return "logged"


async def test_a_local_engine_run_logs_no_personal_data(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, server_log: io.StringIO
) -> None:
    logger_node = {
        "id": "ctx_logger",
        "handler": "python",
        "dependencies": ["input"],
        "config": {
            "function": "log_customer_through_ctx_logger",
            "params": {"customer": "{{ input }}"},
        },
    }
    with echo_server() as url:
        ok = profile(url)
        ok["dag"]["nodes"].append(logger_node)
        # Asked for, as the CLI does: an embedder's logs are masked only when it says so.
        settings = load_settings(mask_all_logs=True)
        async with Engine(f"sqlite:///{tmp_path / 'local.db'}", settings=settings) as engine:
            completed = await engine.run(ok, PII, timeout=20)
            failed = await engine.run(failing(), PII, timeout=20)
    # The Python API is the owner's: outputs and errors as stored.
    assert completed.ok and completed.nodes["card"].output["card"] == PII["card"]
    assert completed.nodes["ctx_logger"].output == "logged"
    error = failed.nodes["bill"].error
    assert error is not None and PII["email"] in error["message"]
    logged = _every_captured_line(caplog, server_log)
    assert "customer {'email': '[email]'" in logged  # the handler's own logger
    assert "LookupError: no account for [email] / [card]" in logged  # its traceback
    assert "got [email] [phone] card [card] id [ssn]" in logged
    assert_no_pii(logged, "the captured log lines of a local run")
