"""Instructions per submit + trigger of the API application, counted by callgrind.

    .venv/bin/python bench/api_instructions.py
    PYTHONPATH=<other tree>/src .venv/bin/python bench/api_instructions.py   # another tree

Wall-clock and CPU-time figures move with whatever else the machine runs; instruction counts
do not. This runs ``bench/api_app.py --steady N`` (the application ``serve`` serves, in
process, submit + trigger one at a time, each execution run to its committed end) under
``valgrind --tool=callgrind`` twice, with ``--small`` and ``--large`` operations, and gives
the difference per operation: start-up, warm-up and shut-down cancel out. Each run takes a
few minutes (callgrind runs the interpreter about fifty times slower). Also per operation:
the instructions by the library they ran in (the interpreter, SQLite, libc, pydantic-core,
the json accelerator...), from ``callgrind_annotate``. What uvicorn and the sockets cost a
request comes on top, as in bench/api_app.py.
"""

from __future__ import annotations

import argparse
import collections
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_LINE = re.compile(r"^\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(\S.*)$")


def _count(operations: int, folder: Path) -> tuple[int, collections.Counter[str]]:
    out = folder / f"callgrind.{operations}.out"
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable]
    command += [str(ROOT / "bench" / "api_app.py"), "--steady", str(operations)]
    subprocess.run(command, check=True, capture_output=True)
    total = 0
    for line in out.read_text(errors="replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            total = int(line.split()[1])
            break
    annotated = subprocess.run(
        ["callgrind_annotate", "--inclusive=no", "--threshold=100", str(out)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    by_library: collections.Counter[str] = collections.Counter()
    for line in annotated.splitlines():
        match = _LINE.match(line)
        if match is None or ":" not in match.group(2):
            continue
        where = match.group(2)
        library = re.search(r"\[([^\]]*)\]\s*$", where)
        name = library.group(1).rsplit("/", 1)[-1] if library else "the interpreter (inlined)"
        if name.startswith("libpython"):
            name = "the interpreter"
        by_library[name] += int(match.group(1).replace(",", ""))
    return total, by_library


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=100, help="operations of the first run")
    parser.add_argument("--large", type=int, default=400, help="operations of the second run")
    args = parser.parse_args()
    if args.large <= args.small:
        parser.error("--large must be more than --small")
    with tempfile.TemporaryDirectory(prefix="orchestrion-instructions-") as name:
        folder = Path(name)
        small, small_libraries = _count(args.small, folder)
        large, large_libraries = _count(args.large, folder)
    operations = args.large - args.small
    print(f"submit + trigger: {(large - small) / operations / 1e6:.2f} million instructions")
    libraries = {
        name: (large_libraries[name] - small_libraries[name]) / operations
        for name in large_libraries.keys() | small_libraries.keys()
    }
    for name, each in sorted(libraries.items(), key=lambda item: -item[1]):
        if each >= 5_000:
            print(f"  {each / 1e6:6.2f} million  {name}")


if __name__ == "__main__":
    main()
