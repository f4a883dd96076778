"""The exit codes of the ``orchestrion`` command line.

0 the execution completed (or the command succeeded), 1 it failed or was cancelled, 2 the
definition or the command's input is invalid (nothing was stored or run), 3 the state store
(or the --server) could not be used, or did not confirm in time a decision it sent on, 4 the
execution waits for a person, 5 no execution (or definition) has the id given, 6 the
--server refused the API key (missing, unknown, its role does not allow the call, or it is
not among a node's approvers), 130 interrupted. A reader of the output that went away
(``| head``) changes none of them: ``cli/pipes.py``.

``for_answer`` maps a server's refusal onto them by what failed, not by the HTTP status
alone: a decision refused because the server has no API keys to tell who decides is no
key's fault (no key would do: 2), and a 429 is a server that cannot be used now (3).
"""

from __future__ import annotations

__all__ = [
    "EXIT_DENIED",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_INVALID",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_STORE",
    "EXIT_WAITING",
    "UNIDENTIFIED_DECIDER",
    "for_answer",
]

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_STORE, EXIT_WAITING = 0, 1, 2, 3, 4
EXIT_NOT_FOUND, EXIT_DENIED = 5, 6
EXIT_INTERRUPTED = 130

# The problem type of a decision refused by a server without API keys (api/problems.py).
UNIDENTIFIED_DECIDER = "urn:orchestrion:problem:approvers-unverifiable"


def for_answer(status: int | None, problem_type: str | None = None) -> int:
    """The exit code of a server's error answer (``status`` None: it could not be reached)."""
    if status is None or status == 429 or status >= 500:
        return EXIT_STORE
    if problem_type == UNIDENTIFIED_DECIDER:
        return EXIT_INVALID
    if status in (401, 403):
        return EXIT_DENIED
    if status == 404:
        return EXIT_NOT_FOUND
    return EXIT_INVALID
