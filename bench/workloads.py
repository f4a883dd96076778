"""Benchmark workloads as definition builders (shared by bench/run.py and the tests)."""

from __future__ import annotations

from typing import Any

__all__ = ["chain", "diamond", "fan_out", "map_items", "wide_dag"]


def fan_out(width: int = 1000) -> dict[str, Any]:
    """1 root -> ``width`` parallel no-op nodes -> 1 sink."""
    nodes: list[dict[str, Any]] = [{"id": "root", "handler": "noop"}]
    nodes += [{"id": f"n{i}", "handler": "noop", "dependencies": ["root"]} for i in range(width)]
    nodes.append({"id": "sink", "handler": "noop", "dependencies": [f"n{i}" for i in range(width)]})
    return {"name": f"fan-out-{width}", "dag": {"nodes": nodes}}


def chain(length: int = 200, handler: str = "noop") -> dict[str, Any]:
    """``length`` nodes in a line, each passing its predecessor's output on."""
    nodes: list[dict[str, Any]] = [{"id": "c0", "handler": handler, "config": {"value": 0}}]
    for i in range(1, length):
        nodes.append(
            {
                "id": f"c{i}",
                "handler": handler,
                "dependencies": [f"c{i - 1}"],
                "config": {"value": f"{{{{ c{i - 1}.output }}}}"},
            }
        )
    return {"name": f"chain-{length}-{handler}", "dag": {"nodes": nodes}}


def diamond() -> dict[str, Any]:
    """a -> (b, c) -> d."""
    return {
        "name": "diamond",
        "dag": {
            "nodes": [
                {"id": "a", "handler": "noop"},
                {"id": "b", "handler": "noop", "dependencies": ["a"]},
                {"id": "c", "handler": "noop", "dependencies": ["a"]},
                {"id": "d", "handler": "noop", "dependencies": ["b", "c"]},
            ]
        },
    }


def wide_dag(size: int = 100_000) -> dict[str, Any]:
    """``size`` nodes: a binary-tree-like DAG (each node depends on node i // 2)."""
    nodes: list[dict[str, Any]] = [{"id": "n0", "handler": "noop"}]
    nodes += [
        {"id": f"n{i}", "handler": "noop", "dependencies": [f"n{(i - 1) // 2}"]}
        for i in range(1, size)
    ]
    return {"name": f"dag-{size}", "dag": {"nodes": nodes}}


def map_items(count: int = 10_000) -> dict[str, Any]:
    """A ``map`` node running a no-op per item over ``count`` items made upstream."""
    return {
        "name": f"map-{count}",
        "dag": {
            "nodes": [
                {"id": "items", "handler": "noop", "config": {"value": list(range(count))}},
                {
                    "id": "each",
                    "handler": "map",
                    "dependencies": ["items"],
                    "config": {
                        "items": "{{ items.output }}",
                        "handler": "noop",
                        "config": {"value": "{{ item }}"},
                        "concurrency": 100,
                    },
                },
            ]
        },
    }
