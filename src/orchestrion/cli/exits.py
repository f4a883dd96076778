"""The exit codes of the ``orchestrion`` command line.

0 the execution completed (or the command succeeded), 1 it failed or was cancelled, 2 the
definition or the command's input is invalid (nothing was stored or run), 3 the state store
(or the --server) could not be used, 4 the execution waits for a person, 5 no execution (or
definition) has the id given, 6 the --server refused the API key (missing, unknown, or its
role does not allow the call), 130 interrupted. A reader of the output that went away
(``| head``) changes none of them: ``cli/pipes.py``.
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
]

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_STORE, EXIT_WAITING = 0, 1, 2, 3, 4
EXIT_NOT_FOUND, EXIT_DENIED = 5, 6
EXIT_INTERRUPTED = 130
