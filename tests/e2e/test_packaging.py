"""What ships: the wheel holds the license, the examples, the workflow schema and the web
dashboard's pages and scripts; the examples the CLI writes out validate and run; no module
reaches into httpx's private API."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "orchestrion.cli.app"]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    env["COLUMNS"] = "200"
    return subprocess.run(
        [*CLI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(out), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (built,) = out.glob("orchestrion-*.whl")
    return built


@pytest.fixture(scope="module")
def wheel_names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def test_the_wheel_carries_the_license(wheel_names: set[str]) -> None:
    licenses = [name for name in wheel_names if name.endswith("/LICENSE")]
    assert licenses, sorted(n for n in wheel_names if "dist-info" in n)
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").lstrip().startswith("Apache License")


def test_the_wheel_carries_every_example_and_the_schema(wheel_names: set[str]) -> None:
    source = ROOT / "src" / "orchestrion" / "examples"
    shipped = {
        p.relative_to(source.parent.parent).as_posix()
        for p in source.rglob("*")
        if p.suffix in (".yaml", ".json")
    }
    assert "orchestrion/examples/demo.yaml" in shipped
    assert {n for n in shipped if "/reference/" in n}
    assert shipped <= wheel_names, sorted(shipped - wheel_names)
    assert "orchestrion/definition/workflow.schema.json" in wheel_names


def test_the_wheel_carries_the_dashboard(wheel_names: set[str]) -> None:
    source = ROOT / "src" / "orchestrion" / "web"
    shipped = {
        p.relative_to(source.parent.parent).as_posix()
        for p in source.rglob("*")
        if p.suffix in (".html", ".js", ".css", ".py")
    }
    assert "orchestrion/web/static/app.js" in shipped
    assert shipped <= wheel_names, sorted(shipped - wheel_names)


def test_the_repository_examples_are_the_shipped_ones() -> None:
    for name in ("demo.yaml", "events", "reference", "patterns"):
        assert (ROOT / "examples" / name).resolve() == (
            ROOT / "src" / "orchestrion" / "examples" / name
        )


def test_examples_writes_files_that_validate_and_the_demo_runs(tmp_path: Path) -> None:
    written = _cli("examples", "ex", cwd=tmp_path)
    assert written.returncode == 0, written.stderr
    assert "orchestrion run ex/demo.yaml" in written.stdout
    files = sorted(p for p in (tmp_path / "ex").rglob("*") if p.is_file())
    assert {p.relative_to(tmp_path / "ex").parts[0] for p in files} == {
        "demo.yaml",
        "events",
        "reference",
        "patterns",
    }
    for path in files:
        checked = _cli("validate", str(path), cwd=tmp_path)
        assert checked.returncode == 0, (path, checked.stdout, checked.stderr)
    ran = _cli("run", "ex/demo.yaml", "--db", str(tmp_path / "x.db"), "--json", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr


def test_examples_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    assert _cli("examples", "ex", cwd=tmp_path).returncode == 0
    (tmp_path / "ex" / "demo.yaml").write_text("mine\n", encoding="utf-8")
    again = _cli("examples", "ex", cwd=tmp_path)
    assert again.returncode == 2
    assert "--force" in again.stderr
    assert (tmp_path / "ex" / "demo.yaml").read_text(encoding="utf-8") == "mine\n"
    forced = _cli("examples", "ex", "--force", cwd=tmp_path)
    assert forced.returncode == 0
    assert (tmp_path / "ex" / "demo.yaml").read_text(encoding="utf-8") != "mine\n"


def test_no_module_imports_private_httpx() -> None:
    offenders = []
    for path in (ROOT / "src" / "orchestrion").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            offenders += [f"{path}: {n}" for n in names if n.startswith("httpx._")]
    assert offenders == []


def test_the_installed_wheel_writes_its_examples_and_prints_its_schema(
    wheel: Path, tmp_path: Path
) -> None:
    """Installed from the wheel alone (no index, no source tree on the path)."""
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet",
         "--target", str(target), str(wheel)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    env["PYTHONPATH"] = str(target)  # ahead of the editable checkout's path entry
    work = tmp_path / "work"
    work.mkdir()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, *args], cwd=work, env=env, capture_output=True, text=True, timeout=120
        )

    where = subprocess.run(
        [sys.executable, "-c", "import orchestrion; print(orchestrion.__file__)"],
        cwd=work, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert where.stdout.startswith(str(target)), where.stdout
    assert run("examples", "ex").returncode == 0
    assert (work / "ex" / "demo.yaml").is_file()
    assert sorted(p.name for p in (work / "ex" / "reference").iterdir()) == sorted(
        p.name for p in (ROOT / "examples" / "reference").iterdir()
    )
    checked = run("validate", "ex/reference/parallel_processing.json")
    assert checked.returncode == 0, checked.stderr
    printed = run("schema")
    assert printed.returncode == 0
    assert json.loads(printed.stdout)["title"] == "Orchestrion workflow"
