"""Start-up cost: a run without http nodes, YAML or keys does not import what it does not use.

httpx (with the rich and click modules its import pulls in), PyYAML and cryptography cost
tens of milliseconds at start-up (docs/BENCHMARKS.md, W0), and so do the built-in handlers a
workflow does not use, the service's and the command line's libraries, croniter (with
dateutil) for schedules, and the parts of Orchestrion a one-node run has no use for (the
audit trail's anchors, dead letters, event sinks' notices, schedules, error handling rules...);
a fresh interpreter runs a one-node workflow through the Python API and reports which of them
it loaded. The command line imports the module of the command it runs, and not the engine to
print its help.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from orchestrion.cli.commands import COMMANDS

SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys
    from orchestrion.engine.facade import Engine

    async def main(db):
        async with Engine(f"sqlite:///{db}") as engine:
            hello = {"name": "hello", "dag": {"nodes": [{"id": "hello", "handler": "noop"}]}}
            assert (await engine.run(hello)).ok

    asyncio.run(main(sys.argv[1]))
    unused = (
        "httpx", "yaml", "cryptography", "croniter", "dateutil", "sqlalchemy", "alembic",
        "fastapi", "starlette", "uvicorn", "jinja2", "rich", "typer", "click",
        "prometheus_client", "redis", "asyncpg",
    ) + tuple(
        f"orchestrion.{name}"
        for name in (
            "handlers.http", "handlers.llm", "handlers.python", "handlers.agents",
            "handlers.control", "handlers.subworkflow", "api", "cli", "cluster", "web",
            "observability", "store.memory", "store.sql.postgres", "engine.scheduler",
            "core.ticks", "definition.dialect_agents", "definition.dialect_swarmlite",
            "templates.sandbox", "store.audit_anchor", "store.audit_coverage",
            "engine.dead_nodes", "engine.notice_sinks", "sinks.envelope",
            "definition.schedules", "definition.error_rules",
        )
    )
    print(json.dumps(sorted(m for m in unused if m in sys.modules)))
    """
)


def test_a_hello_run_loads_no_library_or_module_it_does_not_use(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRION_")}  # no keys
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "hello.db")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_no_handler_config_reads_its_module_source_to_build() -> None:
    """Field descriptions are given as ``Field(description=...)``, not attribute docstrings.

    With ``use_attribute_docstrings`` pydantic reads and parses the source of the module of
    every such model as the class is built: about 19 ms for the first, at every start.
    """
    from orchestrion.handlers.builtin import INTERNAL_HANDLERS, _load, builtin_specs

    specs = builtin_specs() + [
        _load(name, module, attr) for name, _, module, attr in INTERNAL_HANDLERS
    ]
    parsing = [
        spec.name
        for spec in specs
        if spec.config_model is not None
        and spec.config_model.model_config.get("use_attribute_docstrings")
    ]
    assert parsing == []


CLI_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from orchestrion.cli.app import main

    sys.argv = ["orchestrion", *sys.argv[1:]]
    try:
        main()
    except SystemExit as exc:
        code = exc.code
    print(json.dumps({"code": code, "loaded": sorted(sys.modules)}))
    """
)


def _cli_loads(tmp_path: Path, *arguments: str) -> tuple[int, set[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRION_")}
    done = subprocess.run(
        [sys.executable, "-c", CLI_SCRIPT, *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return report["code"], set(report["loaded"])


def test_a_command_loads_its_own_module_and_not_the_others(tmp_path: Path) -> None:
    """The command line imports the module of the command it runs, not every command's."""
    (tmp_path / "hello.yaml").write_text(
        "name: hello\ndag:\n  nodes:\n    - id: hello\n      handler: noop\n", encoding="utf-8"
    )
    code, loaded = _cli_loads(tmp_path, "validate", "hello.yaml")
    assert code in (0, None)
    modules = {module for _, module, _ in COMMANDS} - {"root", "definitions"}
    others = {f"orchestrion.cli.{module}" for module in modules}
    assert "orchestrion.cli.running" in others
    assert "orchestrion.cli.definitions" in loaded
    assert sorted(others & loaded) == []
    assert "orchestrion.engine.facade" not in loaded  # validating runs nothing


def test_help_lists_every_command_without_the_engine(tmp_path: Path) -> None:
    code, loaded = _cli_loads(tmp_path, "--help")
    assert code == 0
    engine = {"orchestrion.engine.facade", "orchestrion.core.events", "orchestrion.store.base"}
    assert sorted(engine & loaded) == []


def test_no_model_built_at_start_has_a_builtin_type_as_default_factory() -> None:
    """Pydantic reads a default factory's signature as the model is built; for ``list`` or
    ``dict`` that parses their text signature (tokenize, ast) at every start."""
    import importlib

    from pydantic import BaseModel

    modules = (
        "orchestrion.definition.model",
        "orchestrion.settings",
        "orchestrion.governance.policy",
        "orchestrion.governance.llm_providers",
        "orchestrion.governance.secret_routes",
    )
    builtin = (list, dict, set, tuple, frozenset)
    found = [
        f"{model.__module__}.{model.__name__}.{name}"
        for module in modules
        for model in vars(importlib.import_module(module)).values()
        if isinstance(model, type) and issubclass(model, BaseModel)
        for name, field in model.model_fields.items()
        if any(field.default_factory is kind for kind in builtin)
    ]
    assert found == []
