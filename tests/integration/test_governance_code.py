"""No arbitrary code through the service (issue #6, item 6), through the real API in-process.

The app's engine is untrusted: a python node naming anything neither registered nor under
``python.allowed_modules`` is refused at submission with a 422 naming the node and the field,
and its module is never imported; names that get past submission (templates, definitions
stored under another policy) fail when the node runs, as policy violations. Templates render
sandboxed within the policy's time and size limits: bombs fail their node quickly, sandbox
escapes run no code.
"""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrion.api.app import create_app
from orchestrion.core.states import ExecutionStatus
from orchestrion.engine.facade import Engine
from orchestrion.settings import load_settings

POLICY = """\
version: 1
python:
  allowed_modules: [textwrap, "json:dumps"]
templates:
  timeout_seconds: 0.5
  max_output_bytes: 100000
"""
FORBIDDEN = [
    "os.system",
    "os:system",
    "  os.system  ",
    "os.path.join",
    "posix.system",
    "subprocess.run",
    "subprocess:Popen",
    "builtins.eval",
    "builtins.exec",
    "builtins.__import__",
    "builtins:open",
    "importlib.import_module",
    "importlib:__import__",
    "pickle.loads",
    "marshal.loads",
    "shutil.rmtree",
    "ctypes.CDLL",
    "sys.exit",
    "json.loads",  # json:dumps is allowed, not the rest of json
    "textwrap.re.compile",  # an allowed module's import of another module
    "textwrap:_whitespace",
    "textwrap.TextWrapper.__init__",
    "orchestrion.handlers.python.resolve_function",
    "orchestrion.handlers.python:importlib.import_module",
    "orchestrion.engine.facade.Engine",
    "gov_code_side_effect:run",  # importing it would write a file
    # Relative and malformed spellings.
    ".os.system",
    "..os:system",
    "os..system",
    "os.system()",
    "__import__('os').system",
    "os.system; rm -rf /",
    "os:",
]


@pytest.fixture
def side_effect(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A module on sys.path whose import leaves a file behind."""
    marker = tmp_path / "imported"
    module = tmp_path / "modules" / "gov_code_side_effect.py"
    module.parent.mkdir()
    module.write_text(f"open({str(marker)!r}, 'w').close()\ndef run():\n    return 1\n")
    monkeypatch.syspath_prepend(str(module.parent))
    return marker


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Engine]]:
    policy = tmp_path / "governance.yaml"
    policy.write_text(POLICY)
    settings = load_settings(
        database_url=f"sqlite:///{tmp_path / 'api.db'}",
        governance_file=policy,
        rate_limit_per_second=0,
        shutdown_grace=0,
    )
    engine = Engine(settings=settings)
    await engine.start()
    try:
        assert engine.governance.trusted  # until the service takes it over
        app = create_app(engine, settings)
        assert not engine.governance.trusted
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                yield client, engine
    finally:
        await engine.stop(0)


def python_node(node_id: str, function: str, **extra: Any) -> dict[str, Any]:
    return {"id": node_id, "handler": "python", "config": {"function": function}, **extra}


def flow(*nodes: dict[str, Any], name: str = "code") -> dict[str, Any]:
    return {"name": name, "dag": {"nodes": list(nodes)}}


def refused(response: httpx.Response, node: str, field: str) -> str:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    errors = response.json()["errors"]
    assert [(e["node"], e["field"]) for e in errors] == [(node, field)], errors
    return str(errors[0]["message"])


async def _run(client: httpx.AsyncClient, definition: dict[str, Any], **trigger: Any) -> Any:
    submitted = await client.post("/v1/workflow", json=definition)
    assert submitted.status_code == 201, submitted.text
    execution_id = submitted.json()["execution_id"]
    started = await client.post(f"/v1/workflow/trigger/{execution_id}", json=trigger)
    assert started.status_code == 202, started.text
    deadline = time.monotonic() + 30
    while True:
        body = (await client.get(f"/v1/workflows/{execution_id}")).json()
        if body["status"] in ("COMPLETED", "FAILED"):
            return body
        assert time.monotonic() < deadline, body
        await _sleep()


async def _sleep() -> None:
    import asyncio

    await asyncio.sleep(0.02)


def _node(body: dict[str, Any], node_id: str) -> dict[str, Any]:
    nodes = body["nodes"]
    if isinstance(nodes, dict):
        return dict(nodes[node_id])
    return dict(next(n for n in nodes if n.get("id", n.get("node_id")) == node_id))


@pytest.mark.parametrize("name", FORBIDDEN)
async def test_forbidden_functions_are_refused_at_submission(
    api: tuple[httpx.AsyncClient, Engine], side_effect: Path, name: str
) -> None:
    client, _ = api
    response = await client.post("/v1/workflow", json=flow(python_node("step", name)))
    message = refused(response, "step", "config.function")
    assert name.strip() in message or "unknown function" in message
    assert not side_effect.exists()  # the module named was never imported
    assert "gov_code_side_effect" not in sys.modules


async def test_forbidden_functions_are_refused_wherever_a_definition_names_one(
    api: tuple[httpx.AsyncClient, Engine],
) -> None:
    client, _ = api
    mapped = {
        "id": "each",
        "handler": "map",
        "config": {"items": [1], "handler": "python", "config": {"function": "os.system"}},
    }
    refused(await client.post("/v1/workflow", json=flow(mapped)), "each", "config.config.function")
    compensated = {"id": "pay", "handler": "noop", "compensate": "subprocess.run"}
    refused(
        await client.post("/v1/workflow", json=flow(compensated)),
        "pay",
        "compensate.config.function",
    )
    yaml_text = (
        "name: y\ndag:\n  nodes:\n    - {id: s, handler: python, config: {function: os.system}}\n"
    )
    response = await client.post(
        "/v1/workflow", content=yaml_text, headers={"Content-Type": "application/yaml"}
    )
    refused(response, "s", "config.function")


async def test_allowed_and_registered_functions_run(api: tuple[httpx.AsyncClient, Engine]) -> None:
    client, _ = api
    definition = flow(
        {
            "id": "short",
            "handler": "python",
            "config": {"function": "textwrap.shorten", "params": {"text": "a b c", "width": 9}},
        },
        {
            "id": "dump",
            "handler": "python",
            "config": {"function": "json:dumps", "params": {"obj": 1}},
        },
        python_node("registered", "clean_dataframe"),  # built-in example: registered
    )
    body = await _run(client, definition)
    assert body["status"] == "COMPLETED", body


async def test_trigger_overrides_may_not_name_forbidden_functions(
    api: tuple[httpx.AsyncClient, Engine],
) -> None:
    client, _ = api
    submitted = await client.post("/v1/workflow", json=flow(python_node("step", "textwrap.dedent")))
    execution_id = submitted.json()["execution_id"]
    response = await client.post(
        f"/v1/workflow/trigger/{execution_id}",
        json={"input_params": {}, "node_overrides": {"step": {"function": "os.system"}}},
    )
    refused(response, "step", "config.function")


async def test_names_known_only_at_run_time_are_checked_when_the_node_runs(
    api: tuple[httpx.AsyncClient, Engine], side_effect: Path
) -> None:
    client, _ = api
    definition = flow(
        {"id": "input", "handler": "input"},
        {
            "id": "step",
            "handler": "python",
            "dependencies": ["input"],
            "config": {"function": "{{ input.fn }}"},
            "retry": {"max_attempts": 3, "initial_delay": 0.01, "retry_on": ["all"]},
        },
    )
    for name in ("os.system", "gov_code_side_effect:run"):
        body = await _run(client, definition, input_params={"fn": name})
        step = _node(body, "step")
        assert body["status"] == "FAILED"
        assert step["error"]["category"] == "policy_violation", step
        assert step["attempt"] == 1  # never retried
    assert not side_effect.exists()


async def test_a_definition_stored_under_a_trusted_engine_is_checked_again(
    tmp_path: Path,
) -> None:
    policy = tmp_path / "governance.yaml"
    policy.write_text(POLICY)
    settings = load_settings(
        database_url=f"sqlite:///{tmp_path / 'api.db'}",
        governance_file=policy,
        rate_limit_per_second=0,
    )
    legacy = flow(
        {"id": "gate", "handler": "approval"},
        python_node("cwd", "os.getcwd", dependencies=["gate"]),
        name="legacy",
    )
    async with Engine(settings=settings) as trusted:  # `orchestrion run`: one's own code
        record = await trusted.start_execution(legacy)
        waiting = await trusted.settle(record.id, timeout=30)
        assert waiting.status is ExecutionStatus.WAITING
    engine = Engine(settings=settings)
    await engine.start()  # resumes the waiting execution
    try:
        app = create_app(engine, settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                # A new execution of the stored definition is refused when it is started...
                started = await client.post("/v1/definitions/legacy/executions", json={})
                refused(started, "cwd", "config.function")
                # ...and the one already under way fails when the node runs.
                approved = await client.post(f"/v1/workflows/{record.id}/nodes/gate/approve")
                assert approved.status_code == 202, approved.text
                result = await engine.wait(record.id, timeout=30)
    finally:
        await engine.stop(0)
    assert result.status is ExecutionStatus.FAILED
    error = result.nodes["cwd"].error
    assert error is not None and error["category"] == "policy_violation"
    assert "os.getcwd" in error["message"]
    assert result.nodes["cwd"].attempt == 1


BOMBS = {
    "repeat": "{{ 'a' * 10**9 }}",
    "nested-ranges": "{% for a in range(10**6) %}{% for b in range(10**6) %}x"
    "{% endfor %}{% endfor %}",
    "range-budget": "{% for a in range(10000) %}{% for b in range(10000) %}"
    "{% endfor %}{% endfor %}",
    "nested-lists": "{% for a in input.big %}{% for b in input.big %}{% for c in input.big %}"
    "{% endfor %}{% endfor %}{% endfor %}",
    "recursive-macro": "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    "branching-macro": "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}"
    "{% endmacro %}{{ f(60) }}",
    "huge-range": "{{ range(10**12) | list }}",
    "power": "{{ 10 ** (10 ** 10) }}",
    "output-size": "{% for i in range(1000) %}{{ 'abcdefghij' * 100 }}{% endfor %}",
    "format-width": "{{ '%999999999d' % 1 }}",
    "center": "{{ 'x' | center(10**9) }}",
    "ljust": "{{ 'x'.ljust(10**9) }}",
    "replace": "{{ ('a' * 90000) | replace('a', 'a' * 90000) }}",
}


async def test_template_bombs_fail_their_node_quickly(
    api: tuple[httpx.AsyncClient, Engine],
) -> None:
    client, _ = api
    nodes: list[dict[str, Any]] = [{"id": "input", "handler": "input"}]
    for name, bomb in BOMBS.items():
        nodes.append(
            {"id": name, "handler": "noop", "dependencies": ["input"], "config": {"value": bomb}}
        )
    # Conditions and outputs render under the same limits.
    nodes.append(
        {"id": "when", "handler": "noop", "dependencies": ["input"], "when": BOMBS["nested-lists"]}
    )
    nodes.append(
        {
            "id": "out",
            "handler": "output",
            "dependencies": ["input"],
            "config": {"value": BOMBS["branching-macro"]},
        }
    )
    started = time.monotonic()
    body = await _run(client, flow(*nodes), input_params={"big": list(range(3000))})
    elapsed = time.monotonic() - started
    assert body["status"] == "FAILED"
    for node_id in [*BOMBS, "when", "out"]:
        node = _node(body, node_id)
        assert node["state"].upper() == "FAILED", node
        assert node["error"]["category"] == "template", node
        assert node["attempt"] == 1
    timed_out = _node(body, "nested-lists")["error"]["message"]
    assert "longer than 0.5s (templates.timeout_seconds)" in timed_out
    assert "templates.max_output_bytes" in _node(body, "output-size")["error"]["message"]
    # Each timed render stops at 0.5 s; nothing is left to run away with the server.
    assert elapsed < 15
    assert (await client.get("/health")).status_code == 200


def escapes(marker: Path) -> dict[str, str]:
    run = f"popen('touch {marker}')"
    return {
        "mro": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "cycler": f"{{{{ cycler.__init__.__globals__.os.{run} }}}}",
        "joiner": f"{{{{ joiner.__init__.__globals__.os.{run} }}}}",
        "namespace": f"{{{{ namespace.__init__.__globals__.os.{run} }}}}",
        "self": "{{ self._TemplateReference__context }}",
        "self-init": "{{ self.__init__.__globals__ }}",
        "lipsum": f"{{{{ lipsum.__globals__['os'].{run} }}}}",
        "range-globals": "{{ range.__globals__ }}",
        "format": "{{ '{0.__class__.__mro__}'.format('x') }}",
        "format-input": "{{ '{0.__init__.__globals__}'.format(input) }}",
        "format-map": "{{ '{x.__class__}'.format_map({'x': 'y'}) }}",
        "percent": "{{ '%s' % ''.__class__ }}",
        "attr": "{{ '' | attr('__class__') | attr('__mro__') }}",
        "attr-globals": "{{ input | attr('__init__') | attr('__globals__') }}",
        "getitem": "{{ ''['__class__'] }}",
        "dict": "{{ {}.__class__.__base__.__subclasses__() }}",
        "secrets": "{{ secrets.__dict__ }}",
        "request": "{{ request.application.__globals__ }}",
        "config": "{{ config.items() }}",
        "loop": "{% for x in [1] %}{{ loop.__class__.__init__.__globals__ }}{% endfor %}",
    }


async def test_sandbox_escapes_submitted_through_the_api_run_no_code(
    api: tuple[httpx.AsyncClient, Engine], tmp_path: Path
) -> None:
    client, _ = api
    marker = tmp_path / "escaped"
    corpus = escapes(marker)
    ran: list[str] = []
    for name, template in corpus.items():
        node = {"id": "t", "handler": "noop", "config": {"value": template}}
        submitted = await client.post("/v1/workflow", json=flow(node, name=f"escape-{name}"))
        if submitted.status_code == 422:
            continue  # refused at submission (an unknown template name): nothing ran
        assert submitted.status_code == 201, submitted.text
        execution_id = submitted.json()["execution_id"]
        await client.post(f"/v1/workflow/trigger/{execution_id}", json={})
        deadline = time.monotonic() + 30
        while True:
            body = (await client.get(f"/v1/workflows/{execution_id}")).json()
            if body["status"] in ("COMPLETED", "FAILED"):
                break
            assert time.monotonic() < deadline
            await _sleep()
        node_state = _node(body, "t")
        if body["status"] != "FAILED" or node_state["error"]["category"] != "template":
            ran.append(f"{name}: {node_state}")
        text = str(node_state)
        assert "<class" not in text and "__builtins__" not in text, (name, text)
    assert ran == []
    assert not marker.exists()


async def test_scale_out_workers_check_functions_and_limit_templates(
    tmp_path: Path, postgres_url: str, redis_server: str, redis_prefix: str
) -> None:
    from orchestrion.cluster.worker import Worker
    from orchestrion.governance.runtime import Governance
    from orchestrion.handlers.registry import default_registry
    from scaleout import scaleout_settings

    policy = tmp_path / "governance.yaml"
    policy.write_text(POLICY)
    settings = scaleout_settings(postgres_url, redis_server, redis_prefix, governance_file=policy)
    # As `orchestrion worker` builds it: untrusted. The orchestrator here is a trusted
    # engine, so the definition gets past submission, as one stored long ago would.
    worker = Worker(
        redis_server,
        settings,
        default_registry(),
        worker_id="gov",
        governance=Governance.from_settings(settings, trusted=False),
    )
    await worker.start()
    try:
        async with Engine(settings=settings) as engine:
            definition = flow(
                {"id": "input", "handler": "input"},
                python_node("cwd", "os.getcwd", dependencies=["input"]),
                python_node("short", "textwrap.dedent", dependencies=["input"]),
                {
                    "id": "bomb",
                    "handler": "noop",
                    "dependencies": ["input"],
                    "config": {"value": BOMBS["nested-lists"]},
                },
            )
            definition["dag"]["nodes"][2]["config"]["params"] = {"text": "  x"}
            result = await engine.run(definition, {"big": list(range(3000))}, timeout=60)
    finally:
        await worker.stop(grace=0)
    cwd = result.nodes["cwd"].error
    assert cwd is not None and cwd["category"] == "policy_violation", cwd
    assert result.nodes["cwd"].attempt == 1
    assert result.nodes["short"].output == "x"
    bomb = result.nodes["bomb"].error
    assert bomb is not None and "longer than 0.5s" in bomb["message"]


async def test_a_definition_that_passed_the_allowlist_is_checked_again_under_another(
    tmp_path: Path,
) -> None:
    from orchestrion.errors import DefinitionError
    from orchestrion.governance.runtime import Governance

    def governance(name: str, allowed: str) -> Governance:
        policy = tmp_path / name
        policy.write_text(f"version: 1\npython:\n  allowed_modules: [{allowed}]\n")
        return Governance.load(policy, environ={}).untrusted()

    node = {"id": "a", "handler": "python", "config": {"function": "textwrap:dedent"}}
    definition = {"name": "allowed-once", "dag": {"nodes": [node]}}
    async with Engine(f"sqlite:///{tmp_path / 'e.db'}") as engine:
        engine.use_governance(governance("wide.yaml", "textwrap"))
        for _ in range(2):  # passed, and remembered as passed
            stored = await engine.submit(definition)
            record, _ = await engine.create_execution(stored.id)
            await engine.trigger(record.id)
        engine.use_governance(governance("narrow.yaml", '"json:dumps"'))
        record, _ = await engine.create_execution(stored.id)
        with pytest.raises(DefinitionError) as refused:
            await engine.trigger(record.id)
        with pytest.raises(DefinitionError):
            await engine.submit(definition)
    assert "textwrap:dedent" in str(refused.value)
