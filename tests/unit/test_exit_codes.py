"""The exit code of a refusal from ``--server`` is that of what failed, the same for every
command (``remote`` and the audit commands' own requests): the key (6), the id (5), the
request (2), the server (3); never the HTTP status class alone."""

from __future__ import annotations

import pytest

from orchestrion.cli.exits import (
    EXIT_DENIED,
    EXIT_INVALID,
    EXIT_NOT_FOUND,
    EXIT_STORE,
    UNIDENTIFIED_DECIDER,
    for_answer,
)


@pytest.mark.parametrize(
    ("status", "kind", "code"),
    [
        (None, None, EXIT_STORE),  # unreachable
        (401, "urn:orchestrion:problem:unauthorized", EXIT_DENIED),
        (403, "urn:orchestrion:problem:forbidden", EXIT_DENIED),  # the key's role
        (403, "urn:orchestrion:problem:not-an-approver", EXIT_DENIED),  # the key is not listed
        (403, UNIDENTIFIED_DECIDER, EXIT_INVALID),  # no keys on the server: no key would do
        (404, None, EXIT_NOT_FOUND),
        (409, "urn:orchestrion:problem:invalid-transition", EXIT_INVALID),
        (422, "urn:orchestrion:problem:invalid-input", EXIT_INVALID),
        (429, "urn:orchestrion:problem:rate-limited", EXIT_STORE),  # try later, not fix it
        (500, None, EXIT_STORE),
        (503, None, EXIT_STORE),
    ],
)
def test_a_refusal_exits_with_the_code_of_what_failed(
    status: int | None, kind: str | None, code: int
) -> None:
    assert for_answer(status, kind) == code
