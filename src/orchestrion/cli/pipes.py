"""Standard output and error that their reader may close: ``orchestrion list | head -1``.

When the reader of a pipe goes away, the next write raises ``BrokenPipeError``: click would
turn it into exit code 1, which the command line keeps for a failed execution, and the
interpreter's last flush would print "Exception ignored ... BrokenPipeError". Here the output
is cut short instead, silently: what is written after the reader left goes to ``/dev/null``
(Python's advice in its "Note on SIGPIPE"), the command ends as it would have, with its own
exit code, and a command that would go on printing (``logs --follow``) asks ``gone`` and stops.
"""

from __future__ import annotations

import io
import os
import sys
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

__all__ = ["gone", "guard"]

_closed: set[int] = set()  # the descriptors whose reader went away


class _Pipe(io.FileIO):
    """A descriptor's writes, those after its reader left swallowed."""

    def write(self, data: ReadableBuffer) -> int:
        try:
            written = super().write(data)
        except BrokenPipeError:
            fd = self.fileno()
            _closed.add(fd)
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, fd)  # every later write, from any stream, goes nowhere
            finally:
                os.close(devnull)
            return memoryview(data).nbytes
        return memoryview(data).nbytes if written is None else written


def _guarded(stream: TextIO | None) -> TextIO | None:
    if stream is None:
        return None  # closed when the process started (`2>&-`): rich and click print nothing
    try:
        fd = stream.fileno()
    except (OSError, ValueError, AttributeError):
        return stream  # not a descriptor (a test's capture): nothing to guard
    stream.flush()
    return io.TextIOWrapper(
        io.BufferedWriter(_Pipe(fd, "w", closefd=False)),
        encoding=stream.encoding,
        errors=stream.errors,
        line_buffering=bool(stream.line_buffering),
        write_through=getattr(stream, "write_through", False),
    )


def guard() -> None:
    """Swap ``sys.stdout`` and ``sys.stderr`` for guarded ones: before anything holds them."""
    sys.stdout = _guarded(sys.stdout)
    sys.stderr = _guarded(sys.stderr)


def gone() -> bool:
    """Whether the reader of standard output went away: nothing printed is read any more."""
    return 1 in _closed
