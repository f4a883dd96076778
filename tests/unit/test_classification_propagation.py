"""A node that can read a classified output is classified: inherited, transitively."""

from __future__ import annotations

from typing import Any

from orchestrion.handlers.loading import load_definition


def classes(nodes: list[dict[str, Any]]) -> dict[str, str]:
    spec = load_definition({"name": "p", "dag": {"nodes": nodes}}).spec
    return {node.id: node.data_classification.value for node in spec.dag.nodes}


def test_readers_inherit_the_highest_classification_they_can_read() -> None:
    found = classes(
        [
            {"id": "customer", "handler": "noop", "data_classification": "pii"},
            {"id": "chart", "handler": "noop", "data_classification": "phi"},
            {
                "id": "greet",
                "handler": "noop",
                "dependencies": ["customer"],
                "config": {"value": "{{ customer.output.x }}"},
            },
            {"id": "later", "handler": "noop", "dependencies": ["greet"]},
            {"id": "both", "handler": "noop", "dependencies": ["customer", "chart"]},
            {"id": "alone", "handler": "noop", "config": {"value": 1}},
        ]
    )
    assert found == {
        "customer": "pii",
        "chart": "phi",
        "greet": "pii",
        "later": "pii",
        "both": "phi",
        "alone": "public",
    }


def test_a_declared_classification_is_the_authors_decision() -> None:
    found = classes(
        [
            {"id": "customer", "handler": "noop", "data_classification": "pii"},
            {
                "id": "count",
                "handler": "noop",
                "dependencies": ["customer"],
                "data_classification": "public",
            },
            {"id": "after", "handler": "noop", "dependencies": ["count"]},
        ]
    )
    assert found == {"customer": "pii", "count": "public", "after": "public"}


def test_nothing_classified_leaves_the_definition_as_written() -> None:
    nodes = [
        {"id": "a", "handler": "noop"},
        {"id": "b", "handler": "noop", "dependencies": ["a"]},
    ]
    assert classes(nodes) == {"a": "public", "b": "public"}
