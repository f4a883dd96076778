"""Validation pauses the garbage collector only in a process that is Orchestrion's."""

from __future__ import annotations

import gc

import pytest

from orchestrion import load_definition
from orchestrion import settings as settings_module

FLOW = {"name": "x", "dag": {"nodes": [{"id": "a", "handler": "noop"}]}}


def _disables(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    calls: list[bool] = []
    real = gc.disable

    def spy() -> None:
        calls.append(True)
        real()

    monkeypatch.setattr(gc, "disable", spy)
    return calls


def test_an_embedding_program_keeps_its_collector(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings_module.process, "OWNED_PROCESS_DEFAULTS", {})
    calls = _disables(monkeypatch)
    load_definition(FLOW)
    assert calls == [] and gc.isenabled()
    assert not settings_module.owns_process()


def test_an_owned_process_pauses_it_while_checking(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings_module.process, "OWNED_PROCESS_DEFAULTS", {})
    settings_module.claim_process()
    calls = _disables(monkeypatch)
    load_definition(FLOW)
    assert calls and gc.isenabled()  # on again after the check
    assert settings_module.owns_process()
