"""The package root's names load lazily; test_exported_members.py pins which they are."""

from __future__ import annotations

import subprocess
import sys

import orchestrion


def test_import_is_lazy() -> None:
    code = "import sys, orchestrion; print('orchestrion.engine.facade' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_unknown_attribute_is_an_attribute_error() -> None:
    try:
        orchestrion.no_such_thing  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")
