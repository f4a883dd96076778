"""The directory of the shared metrics of ``orchestrion serve --workers N``, and those a killed
parent left behind.

The parent makes the directory (``mkdtemp``: mode 0700, a random name no other user could
make or link first) and removes it when it stops. A parent killed by SIGKILL cannot, so it
holds an exclusive ``flock`` on the directory while it lives, which the kernel drops with the
process: a later parent of the same user removes every directory of that name whose lock it
can take. A lock, not a process id: a directory in a ``/tmp`` shared with another PID
namespace would belong to a process id that looks dead from here.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator

__all__ = ["metrics_dir"]

# Not the name directories had before they were locked: a service of that time still running
# beside this one never locks its own, which must not be taken for left behind.
_PREFIX = "orchestrion-shared-metrics-"
# Made under this name and renamed once locked: a parent starting at the same moment never
# takes a directory not locked yet for one left behind.
_NEW = ".orchestrion-shared-metrics-new-"


@contextlib.contextmanager
def metrics_dir() -> Iterator[str]:
    """A new private directory, locked until the end and then removed (OSError when the
    temporary folder cannot hold it)."""
    folder = tempfile.gettempdir()
    _remove_left_behind(folder)
    made = tempfile.mkdtemp(prefix=_NEW, dir=folder)
    fd = os.open(made, os.O_RDONLY | os.O_DIRECTORY)
    path = made
    try:
        # A folder without locks: this directory is never taken for left behind either.
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        named = os.path.join(folder, _PREFIX + os.path.basename(made).removeprefix(_NEW))
        os.rename(made, named)
        path = named
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(fd)


def _remove_left_behind(folder: str) -> None:
    """Remove this user's metrics directories in ``folder`` that no living parent locks."""
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith(_PREFIX) and entry.is_dir(follow_symlinks=False):
                _remove_if_unlocked(entry.path)


def _remove_if_unlocked(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return
    try:
        if os.fstat(fd).st_uid != os.getuid():
            return  # another user's: not ours to judge
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return  # its parent is alive
        shutil.rmtree(path, ignore_errors=True)
    finally:
        os.close(fd)
