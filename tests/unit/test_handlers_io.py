"""The input, output and noop handlers."""

from __future__ import annotations

import time
from typing import Any

import pytest
from pydantic import ValidationError

from node_context import node_context
from orchestrion.errors import PermanentNodeError
from orchestrion.handlers.base import NodeContext
from orchestrion.handlers.io import (
    INPUT_SPEC,
    NOOP_SPEC,
    OUTPUT_SPEC,
    InputConfig,
    NoopConfig,
    OutputConfig,
)


def make_ctx(**overrides: Any) -> NodeContext:
    return node_context("input", **overrides)


async def test_input_merges_params_over_defaults() -> None:
    config = InputConfig.model_validate({"defaults": {"user_id": 1, "limit": 10}})
    out = await INPUT_SPEC.run(make_ctx(inputs={"user_id": 123}), config)
    assert out == {"user_id": 123, "limit": 10}


async def test_input_without_config_passes_params_through() -> None:
    out = await INPUT_SPEC.run(make_ctx(inputs={"a": [1, 2]}), InputConfig.model_validate({}))
    assert out == {"a": [1, 2]}


async def test_input_missing_required_params_are_named() -> None:
    config = InputConfig.model_validate({"required": ["user_id", "region", "limit"]})
    with pytest.raises(PermanentNodeError) as info:
        await INPUT_SPEC.run(make_ctx(inputs={"limit": 5}), config)
    assert "'user_id'" in str(info.value)
    assert "'region'" in str(info.value)
    assert "limit" not in str(info.value)
    assert info.value.category == "input"
    assert info.value.details == {"missing": ["user_id", "region"]}


async def test_input_required_satisfied_by_default() -> None:
    config = InputConfig.model_validate({"defaults": {"region": "eu"}, "required": ["region"]})
    assert await INPUT_SPEC.run(make_ctx(), config) == {"region": "eu"}


def test_input_config_rejects_unknown_keys() -> None:
    with pytest.raises(ValidationError) as info:
        InputConfig.model_validate({"default": {}})
    assert "default" in str(info.value)


async def test_output_aggregates_dependencies_in_order() -> None:
    ctx = make_ctx(
        dependencies=("get_user", "get_posts"),
        outputs={"get_posts": {"data": [1]}, "get_user": {"data": {"id": 7}}, "other": 1},
    )
    out = await OUTPUT_SPEC.run(ctx, OutputConfig.model_validate({}))
    assert out == {"get_user": {"data": {"id": 7}}, "get_posts": {"data": [1]}}
    assert list(out) == ["get_user", "get_posts"]


async def test_output_skipped_dependency_shows_as_none() -> None:
    ctx = make_ctx(dependencies=("a", "b"), outputs={"a": 1})
    assert await OUTPUT_SPEC.run(ctx, OutputConfig.model_validate({})) == {"a": 1, "b": None}


async def test_output_explicit_value_replaces_aggregate() -> None:
    ctx = make_ctx(dependencies=("a",), outputs={"a": 1})
    assert await OUTPUT_SPEC.run(ctx, OutputConfig.model_validate({"value": {"x": 2}})) == {"x": 2}
    # An explicit null is a value too.
    assert await OUTPUT_SPEC.run(ctx, OutputConfig.model_validate({"value": None})) is None


def test_output_config_rejects_unknown_keys() -> None:
    with pytest.raises(ValidationError) as info:
        OutputConfig.model_validate({"values": 1})
    assert "values" in str(info.value)


async def test_noop_returns_value_and_sleeps() -> None:
    config = NoopConfig.model_validate({"value": {"ok": True}, "sleep": 0.05, "anything": 1})
    started = time.perf_counter()
    assert await NOOP_SPEC.run(make_ctx(), config) == {"ok": True}
    assert time.perf_counter() - started >= 0.04


async def test_noop_defaults_to_none() -> None:
    assert await NOOP_SPEC.run(make_ctx(), NoopConfig.model_validate({})) is None


def test_noop_rejects_negative_sleep() -> None:
    with pytest.raises(ValidationError):
        NoopConfig.model_validate({"sleep": -1})


def test_specs_names() -> None:
    assert (INPUT_SPEC.name, OUTPUT_SPEC.name, NOOP_SPEC.name) == ("input", "output", "noop")
