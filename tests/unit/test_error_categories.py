"""Error categories have one source, ``ErrorCategory``: every category the engine and its
handlers record can be named by an ``error_handling`` rule, and none is spelt as a bare
string where it is recorded."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orchestrion.definition.error_rules import error_actions
from orchestrion.errors import NODE_CATEGORIES, ErrorCategory, PermanentNodeError
from orchestrion.handlers.loading import load_definition

SRC = Path(__file__).resolve().parents[2] / "src/orchestrion"
# A category recorded as a literal: category="x", ErrorInfo("x", ...), {"category": "x"}.
_LITERAL = re.compile(r'category="[a-z_0-9]+"|ErrorInfo\(\s*"|"category": "[a-z_0-9]+"')


def test_no_module_records_a_category_as_a_bare_string() -> None:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if _LITERAL.search(line) and "``" not in line:  # docstrings may quote them
                found.append(f"{path.relative_to(SRC)}:{number}: {line.strip()}")
    assert not found, "use ErrorCategory instead:\n" + "\n".join(found)


@pytest.mark.parametrize("category", sorted(NODE_CATEGORIES))
def test_every_node_category_can_be_named_by_an_error_rule(category: str) -> None:
    loaded = load_definition(
        {
            "name": "r",
            "dag": {"nodes": [{"id": "a", "handler": "noop"}]},
            "error_handling": [{"error_type": category, "action": "halt"}],
        }
    )
    [(matched, action)] = error_actions(loaded.spec)["*"]
    assert category in matched
    assert action.kind == "halt"


def test_a_category_compares_and_serialises_as_its_name() -> None:
    error = PermanentNodeError("bad", category=ErrorCategory.CONFIG)
    assert error.category == "config"
    assert f"{ErrorCategory.TIMEOUT}" == "timeout"
    assert ErrorCategory("http_5xx") is ErrorCategory.HTTP_5XX
