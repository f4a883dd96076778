"""constraints.txt pins every dependency that pyproject.toml declares, inside its range.

Set-up, CI and the image install against constraints.txt; a dependency added to pyproject.toml
without refreshing the lock (scripts/lock), or a pin outside the declared range, fails here
rather than on a fresh machine.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def pins() -> dict[str, str]:
    pinned: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep, f"constraints.txt: {line!r} is not pinned with =="
        pinned[canonicalize_name(name)] = version
    return pinned


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    texts = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        texts.extend(extra)
    return [r for r in map(Requirement, texts) if canonicalize_name(r.name) != "orchestrion"]


def test_every_declared_dependency_is_pinned_within_its_range() -> None:
    pinned = pins()
    problems = []
    for requirement in declared():
        version = pinned.get(canonicalize_name(requirement.name))
        if version is None:
            problems.append(f"{requirement.name}: not in constraints.txt")
        elif not requirement.specifier.contains(version, prereleases=True):
            problems.append(f"{requirement.name}=={version} is outside {requirement.specifier}")
    assert not problems, "run scripts/lock: " + "; ".join(problems)


def test_runtime_dependencies_have_an_upper_bound() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    texts = list(project["dependencies"])
    for name in ("postgres", "redis"):
        texts.extend(project["optional-dependencies"][name])
    unbounded = [
        text
        for text in texts
        if not any(spec.operator in ("<", "<=", "==", "~=") for spec in Requirement(text).specifier)
    ]
    assert not unbounded, f"no upper bound: {unbounded}"
