"""The ``orchestrion`` command line: the typer app assembled from its command modules, and
the console-script entry point ``main``.

Exit codes: ``cli/exits.py``. The commands below register in the order ``orchestrion
--help`` lists them; the modules imported at the end register their own commands and groups.
"""

from __future__ import annotations

import logging
import sys

from orchestrion.cli import control, definitions, emitting, inspection, logs, purge, running
from orchestrion.cli import serve as serving
from orchestrion.cli.inputs import check_arguments
from orchestrion.cli.root import app, version
from orchestrion.cli.terminal import log_level

__all__ = ["app", "main"]

if __name__ == "__main__":  # pragma: no cover
    # `python -m orchestrion.cli.app`: this file as __main__ is a second copy; run the
    # imported module, which assembles the app once, and register nothing twice here.
    from orchestrion.cli.app import main as _main

    _main()
    sys.exit()  # never reached: typer exits; the registrations below must not run twice

app.command()(running.run)
app.command()(definitions.validate)
app.command()(definitions.graph)
app.command()(inspection.status)
app.command()(inspection.events)
app.command()(logs.logs)
app.command(name="list")(inspection.list_)
app.command()(control.cancel)
app.command()(control.pause)
app.command()(control.retry)
app.command()(control.resume)
app.command()(serving.serve)
app.command()(control.approve)
app.command()(control.reject)
app.command()(emitting.emit)
app.command()(version)
app.command()(purge.purge)


def main() -> None:
    """Console-script entry point."""
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


# The scale-out processes and tools register their commands on ``app``.
from orchestrion.cli import audit as _audit  # noqa: E402, F401
from orchestrion.cli import authoring as _authoring  # noqa: E402, F401
from orchestrion.cli import dlq as _dlq  # noqa: E402, F401
from orchestrion.cli import keys as _keys  # noqa: E402, F401
from orchestrion.cli import processes as _processes  # noqa: E402, F401
from orchestrion.cli import schedules as _schedules  # noqa: E402, F401
from orchestrion.cli import sinks as _sinks  # noqa: E402, F401
from orchestrion.cli import topology as _topology  # noqa: E402, F401
from orchestrion.cli import versions as _versions  # noqa: E402, F401
