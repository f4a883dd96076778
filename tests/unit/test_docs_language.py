"""The user-facing docs speak to users: no issue numbers, internal document names or notebook
prose; the image build copies what the wheel needs (the license file)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])

FORBIDDEN = {
    "internal document": re.compile(r"PRODUCT\.md|PREAMBLE|ISSUE\d*\.md"),
    "reference document number": re.compile(r"\b(?:references?|refs?)\.? ?0\d\d\b", re.I),
    "issue number": re.compile(r"\bissue #?\d+|(?<![\w&/\]])#\d+\b", re.I),
    "notebook prose": re.compile(r"\bthis session\b|\bsession's\b|\bthis morning\b", re.I),
}


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_docs_speak_to_users(path: Path) -> None:
    found = [
        f"{path.name}:{number}: {kind}: {line.strip()}"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        for kind, pattern in FORBIDDEN.items()
        if pattern.search(line)
    ]
    assert found == []


def test_the_image_build_copies_the_license() -> None:
    copies = [
        line.split()[1:-1]
        for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()
        if line.startswith("COPY ")
    ]
    assert any("LICENSE" in files for files in copies)
