"""The ``orchestrion`` command line: the typer app and the console-script entry point
``main``.

Exit codes: ``cli/exits.py``. The commands, in the order ``orchestrion --help`` lists them,
and the modules that hold them: ``cli/commands.py``, which imports a command's module only
when the command is used (or listed by ``--help``). The typer app (``app``) is imported on
first use, as ``orchestrion``'s own names are, so that ``main`` can tune the process first.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrion.cli.root import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    from orchestrion.cli.pipes import guard

    guard()  # first: the logging handler below holds the stderr it is given
    from orchestrion.engine.gc_tuning import pause_collection

    pause_collection()  # until an engine starts: what the imports make lives on (gc_tuning)

    from orchestrion.cli.inputs import check_arguments
    from orchestrion.cli.root import app
    from orchestrion.cli.terminal import log_level
    from orchestrion.governance.log_masking import mask_uncaught_exceptions
    from orchestrion.observability.logging_setup import capture_node_info
    from orchestrion.settings import claim_process

    claim_process()  # this process is Orchestrion's: gc_freeze and mask_all_logs default on
    level = log_level()
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    capture_node_info(level)
    mask_uncaught_exceptions()  # with the policy's masker, once an engine has loaded it
    check_arguments(sys.argv[1:])
    app()


def __getattr__(name: str) -> Any:
    if name == "app":
        from orchestrion.cli.root import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":  # pragma: no cover - `python -m orchestrion.cli.app`
    main()
