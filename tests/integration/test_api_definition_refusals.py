"""What the API refuses at submission that would otherwise fail at run time: a secret read
outside an http request (a routing rule's message), a map item handler that cannot run per
item. ``/v1/workflow/validate`` and ``POST /v1/workflow`` say the same, and store nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.integration.test_api import assert_problem, serving


def _flow(**extra: Any) -> dict[str, Any]:
    return {
        "name": "refused",
        "dag": {"nodes": [{"id": "a", "handler": "noop", "config": {"outputs": ["x"]}}]},
        **extra,
    }


CASES = [
    (
        _flow(
            routing=[
                {
                    "condition": "x > 1",
                    "action": "alert",
                    "recipients": ["ops"],
                    "message": "token {{ secrets.TOKEN }}",
                }
            ]
        ),
        "routing[0].message",
        "secret_field",
    ),
    *(
        (
            {
                "name": "refused",
                "dag": {
                    "nodes": [
                        {"id": "m", "handler": "map", "config": {"items": [1], "handler": inner}}
                    ]
                },
            },
            "config.handler",
            "map_item_handler",
        )
        for inner in ("approval", "delay", "map")
    ),
]


@pytest.mark.parametrize(("definition", "field", "code"), CASES)
async def test_submit_and_validate_refuse_it_naming_the_field(
    tmp_path: Path, definition: dict[str, Any], field: str, code: str
) -> None:
    async with serving(tmp_path) as api:
        for path in ("/v1/workflow/validate", "/v1/workflow"):
            problem = assert_problem(await api.client.post(path, json=definition), 422)
            found = {(e["field"], e["code"]) for e in problem["errors"]}
            assert (field, code) in found, (path, problem)
        assert (await api.client.get("/v1/definitions")).json()["items"] == []
