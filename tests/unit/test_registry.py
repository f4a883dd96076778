"""The handler registry with the built-in handlers, aliases, clashes and entry points."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from orchestrion.errors import HandlerNotFound
from orchestrion.handlers.base import HandlerSpec, NodeContext
from orchestrion.handlers.builtin import BUILTIN_HANDLERS, builtin_specs, register_builtins
from orchestrion.handlers.registry import ENTRY_POINT_GROUP, HandlerRegistry, default_registry


async def _run(ctx: NodeContext, config: Any) -> Any:
    return None


def test_builtin_names_and_aliases_resolve() -> None:
    registry = HandlerRegistry(builtin_specs())
    expected = {
        "input": "input",
        "output": "output",
        "noop": "noop",
        "http": "http",
        "call_external_service": "http",
        "llm": "llm",
        "llm_service": "llm",
        "call_llm_service": "llm",
        "python": "python",
        "policy_analyzer": "policy_analyzer",
        "gap_assessment": "gap_assessment",
        "risk_calculator": "risk_calculator",
        "implementation_planner": "implementation_planner",
        "report_generator": "report_generator",
    }
    for name, canonical in expected.items():
        assert registry.canonical_name(name) == canonical
    for spec in registry.specs():
        assert spec.config_model is not None, spec.name
        assert spec.description, spec.name


def test_default_registry_has_builtins() -> None:
    registry = default_registry()
    assert registry.get("call_external_service").name == "http"
    assert "python" in registry


def test_builtin_specs_register_example_functions() -> None:
    from orchestrion.handlers.python import function_registry

    builtin_specs()
    for name in ("validate_schema", "clean_dataframe", "transform_data", "rollback_finalize"):
        assert name in function_registry


def test_the_builtin_table_names_each_spec_with_its_aliases() -> None:
    """The registry knows built-in names before importing them: the table must match."""
    loaded = {spec.name: set(spec.aliases) for spec in builtin_specs()}
    table = {name: set(aliases) for name, aliases, _module, _attr in BUILTIN_HANDLERS}
    assert table == loaded


def test_a_builtin_handler_is_imported_on_its_first_lookup() -> None:
    registry = HandlerRegistry()
    register_builtins(registry)
    assert "call_external_service" in registry  # known by alias without loading
    assert "human_approval" in registry.names()
    assert registry.get("human_approval").name == "approval"
    assert registry.copy().get("timer").name == "delay"
    with pytest.raises(ValueError, match="'foreach' is already registered by 'map'"):
        registry.register(HandlerSpec(name="mine", run=_run, aliases=("foreach",)))
    with pytest.raises(ValueError, match="handler 'map' is already registered"):
        registry.register(HandlerSpec(name="map", run=_run))
    mine = HandlerSpec(name="map", run=_run, aliases=("foreach",))
    registry.register(mine, replace=True)
    assert registry.get("foreach") is mine
    assert {spec.name for spec in registry.specs()} >= {"http", "llm", "report_generator"}


def test_a_lazy_handler_that_loads_under_other_names_is_refused() -> None:
    registry = HandlerRegistry()
    registry.register_lazy("mine", ("also_mine",), lambda: HandlerSpec(name="mine", run=_run))
    with pytest.raises(RuntimeError, match=r"handler 'mine' loaded as 'mine' with aliases \[\]"):
        registry.get("also_mine")


def test_a_lazy_handler_whose_import_fails_fails_again_on_the_next_lookup() -> None:
    def broken() -> HandlerSpec:
        raise ImportError("no module named 'missing_dependency'")

    registry = HandlerRegistry()
    registry.register_lazy("fragile", (), broken)
    for _ in range(2):
        with pytest.raises(ImportError, match="missing_dependency"):
            registry.get("fragile")


def test_threads_that_look_a_lazy_handler_up_at_once_all_get_it_loaded_once() -> None:
    """Definitions are checked in worker threads: several may meet a handler first at once."""
    loads = []
    gate = threading.Barrier(8)

    def slow() -> HandlerSpec:
        loads.append(1)
        time.sleep(0.05)  # a module import: the other threads arrive meanwhile
        return HandlerSpec(name="slow", aliases=("slow_alias",), run=_run)

    registry = HandlerRegistry()
    registry.register_lazy("slow", ("slow_alias",), slow)

    def look_up(i: int) -> str:
        gate.wait()
        return registry.get("slow" if i % 2 else "slow_alias").name

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(look_up, range(8))) == ["slow"] * 8
    assert len(loads) == 1


def test_replacing_a_lazy_handler_alias_leaves_the_handler_loadable() -> None:
    registry = HandlerRegistry()
    register_builtins(registry)
    mine = HandlerSpec(name="timer", run=_run)
    registry.register(mine, replace=True)
    assert registry.get("timer") is mine
    assert registry.get("delay").name == "delay"


def test_unknown_handler_lists_known_names() -> None:
    registry = HandlerRegistry(builtin_specs())
    with pytest.raises(HandlerNotFound, match=r"unknown handler 'nope'.*call_external_service"):
        registry.get("nope")


def test_alias_clash_is_an_error() -> None:
    registry = HandlerRegistry(builtin_specs())
    with pytest.raises(ValueError, match="'llm_service' is already registered by 'llm'"):
        registry.register(HandlerSpec(name="my_llm", run=_run, aliases=("llm_service",)))
    with pytest.raises(ValueError, match="'http' is already registered"):
        registry.register(HandlerSpec(name="http", run=_run))
    registry.register(HandlerSpec(name="http", run=_run), replace=True)
    assert registry.get("http").run is _run


def _fake_distribution(root: Path, entry_points: str) -> None:
    (root / "t_orch_plugin.py").write_text(
        "from orchestrion.handlers.base import HandlerSpec\n"
        "async def run(ctx, config):\n"
        "    return 'plugged'\n"
        "spec = HandlerSpec(name='t_plugged', run=run, aliases=('t_plugged_alias',))\n"
        "def many():\n"
        "    return [HandlerSpec(name='t_many_a', run=run),\n"
        "            HandlerSpec(name='t_many_b', run=run)]\n"
    )
    info = root / "t_orch_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: t-orch-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{entry_points}")


def test_entry_points_from_an_installed_distribution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _fake_distribution(
        tmp_path,
        "plugged = t_orch_plugin:spec\n"
        "many = t_orch_plugin:many\n"
        "broken = t_orch_plugin_missing_module:spec\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = HandlerRegistry(builtin_specs())
    with caplog.at_level(logging.ERROR, logger="orchestrion.handlers.registry"):
        loaded = registry.load_entry_points()
    assert {"t_plugged", "t_many_a", "t_many_b"} <= set(loaded)
    assert registry.canonical_name("t_plugged_alias") == "t_plugged"
    assert "broken" in caplog.text  # reported and skipped, the rest still loads


def test_entry_points_are_read_on_first_need(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deferred registry finds a plug-in by name, lists it, and reports a clash with it."""
    _fake_distribution(tmp_path, "plugged = t_orch_plugin:spec\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    by_name = HandlerRegistry(builtin_specs())
    by_name.discover_later()
    assert by_name.get("noop").name == "noop"  # a built-in: nothing read yet
    assert by_name._discover
    assert by_name.get("t_plugged_alias").name == "t_plugged"
    assert not by_name._discover

    listing = HandlerRegistry(builtin_specs())
    listing.discover_later()
    clone = listing.copy()
    assert "t_plugged" in listing.names()
    assert "t_plugged" in clone  # the copy discovers on its own
    assert "t_plugged" in [spec.name for spec in clone.specs()]

    racing = HandlerRegistry(builtin_specs())
    racing.discover_later()
    gate = threading.Barrier(8)

    def find(_: int) -> str:
        gate.wait()  # the threads that lose the race wait for the entry points, not fail
        return racing.get("t_plugged").name

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(find, range(8))) == ["t_plugged"] * 8

    clash = HandlerRegistry(builtin_specs())
    clash.discover_later()
    with pytest.raises(ValueError, match="'t_plugged' is already registered"):
        clash.register(HandlerSpec(name="t_plugged", run=_run))
