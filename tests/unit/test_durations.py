"""Durations: every accepted spelling becomes float seconds; bad ones say what is expected."""

from __future__ import annotations

import math

import pytest
from pydantic import BaseModel, ValidationError

from orchestrion.definition.durations import Duration, parse_duration


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (30, 30.0),
        (1.5, 1.5),
        (0, 0.0),
        ("30", 30.0),
        ("2.5", 2.5),
        ("250ms", 0.25),
        ("30s", 30.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1h30m", 5400.0),
        ("1m 30s", 90.0),
        (" 10s ", 10.0),
        ("PT5M", 300.0),
        ("PT1H30M", 5400.0),
        ("P1D", 86400.0),
        ("pt10s", 10.0),
    ],
)
def test_accepted_forms(value: object, seconds: float) -> None:
    assert math.isclose(parse_duration(value), seconds)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "abc",
        "10x",
        "s",
        "5m garbage",
        "P",
        "PT",
        -1,
        "-5s",
        float("inf"),
        float("nan"),
        True,
        None,
        [1],
    ],
)
def test_rejected_forms(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


def test_error_names_the_accepted_forms() -> None:
    with pytest.raises(ValueError, match="'30s'"):
        parse_duration("soon")


class _Model(BaseModel):
    timeout: Duration


def test_pydantic_field_uses_the_parser() -> None:
    assert _Model(timeout="2m").timeout == 120.0
    with pytest.raises(ValidationError) as info:
        _Model(timeout="two minutes")
    assert "invalid duration" in str(info.value)
