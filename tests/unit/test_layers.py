"""The package layers point down: no package imports one above it or a sibling of its layer.

The order is the one docs/ARCHITECTURE.md draws. Every import counts, including those under
``TYPE_CHECKING`` and inside functions: a type-only upward import is still a dependency the
lower layer cannot be understood without.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "orchestrion"

# Top to bottom. Names in one tuple are siblings: neither may import the other.
LAYERS: list[tuple[str, ...]] = [
    ("cli", "docs", "testing"),
    ("api", "client", "web"),
    ("observability",),
    ("engine",),
    ("cluster",),
    ("execution",),
    ("handlers",),
    ("store", "dispatch", "sinks"),
    ("governance",),
    ("core",),
    ("definition",),
    ("templates",),
    ("settings",),
    ("errors", "instants", "safe_data", "yaml_aliases", "logcontext", "examples", "json_text"),
]

# Upward or sideways imports still to be removed: (importing module, imported module).
KNOWN: set[tuple[str, str]] = set()  # none left: every import points down

# Third-party clients that only one package may use, so a backend is swapped in one place.
HOMES = {"redis": "cluster", "sqlalchemy": "store", "asyncpg": "store", "sqlite3": "store"}
KNOWN_GUESTS: set[tuple[str, str]] = set()  # none left: every backend client is home


@dataclass(frozen=True, slots=True)
class Import:
    importer: str
    imported: str
    line: int


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, name: str | None = None) -> Iterator[Import]:
    """Every import of one source file, wherever it stands in the file."""
    name = name or _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (dynamic := _dynamic_import(node)) is not None:
            yield Import(name, dynamic, node.lineno)
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            # ``from orchestrion.x import y`` may name a module y: count it as x.y when it is one
            targets = [
                f"{module}.{alias.name}" if _is_module(f"{module}.{alias.name}") else module
                for alias in node.names
                # the version is a constant of the root, which imports nothing to give it
                if (module, alias.name) != ("orchestrion", "__version__")
            ]
        else:
            continue
        for target in targets:
            yield Import(name, target, node.lineno)


def _dynamic_import(node: ast.AST) -> str | None:
    """The module of ``import_module("x")`` / ``__import__("x")`` with a literal name."""
    if not isinstance(node, ast.Call) or not node.args:
        return None
    func = node.func
    called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    first = node.args[0]
    if called in ("import_module", "__import__") and isinstance(first, ast.Constant):
        return first.value if isinstance(first.value, str) else None
    return None


def _is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def unit_of(module: str) -> str | None:
    """The layer unit (top-level package or module) a module belongs to; None for the root."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def rank_of(unit: str) -> int:
    for rank, names in enumerate(LAYERS):
        if unit in names:
            return rank
    raise AssertionError(f"orchestrion.{unit} is in no layer: add it to LAYERS")


def violations(found: list[Import]) -> list[Import]:
    """Imports of a unit above the importer's, or of a sibling in the same layer."""
    bad = []
    for imp in found:
        source, target = unit_of(imp.importer), unit_of(imp.imported)
        if source is None or source == target:
            continue  # the package root re-exports the public API from everywhere
        if target is None or rank_of(target) <= rank_of(source):
            bad.append(imp)  # the root is above every layer: it re-exports the engine
    return bad


def all_imports() -> list[Import]:
    """Every import of ours, of our modules by our modules."""
    return [imp for imp in _everything() if imp.imported.split(".")[0] == "orchestrion"]


def _everything() -> list[Import]:
    return [imp for path in sorted(PACKAGE.rglob("*.py")) for imp in imports_of(path)]


def guests(found: list[Import]) -> set[tuple[str, str]]:
    """Uses of a third-party client outside the package that is its home."""
    return {
        (imp.importer, top)
        for imp in found
        if (top := imp.imported.split(".")[0]) in HOMES and unit_of(imp.importer) != HOMES[top]
    }


def test_every_unit_has_a_layer() -> None:
    units = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()}
    units = {u for u in units if not u.startswith(("_", ".")) and u != "py"}
    units.discard("__init__")
    for unit in sorted(units):
        if (PACKAGE / unit).is_dir() and not (PACKAGE / unit / "__init__.py").exists():
            continue
        if (PACKAGE / f"{unit}.py").exists() or (PACKAGE / unit / "__init__.py").exists():
            rank_of(unit)


def test_imports_point_down() -> None:
    bad = [imp for imp in violations(all_imports()) if (imp.importer, imp.imported) not in KNOWN]
    assert not bad, "imports that point up or sideways (see LAYERS):\n" + "\n".join(
        f"  {imp.importer}:{imp.line} imports {imp.imported}" for imp in bad
    )


def test_known_exceptions_still_exist() -> None:
    """An exception that was fixed leaves the list, so the list only shrinks."""
    current = {(imp.importer, imp.imported) for imp in violations(all_imports())}
    assert not KNOWN - current, sorted(KNOWN - current)


def test_an_upward_import_is_caught() -> None:
    upward = Import("orchestrion.core.machine", "orchestrion.engine.facade", 1)
    sideways = Import("orchestrion.store.base", "orchestrion.dispatch.base", 1)
    downward = Import("orchestrion.engine.facade", "orchestrion.core.machine", 1)
    assert violations([upward, sideways, downward]) == [upward, sideways]


def test_imports_of_the_root_and_dynamic_imports_count(tmp_path: Path) -> None:
    source = tmp_path / "probe.py"
    source.write_text(
        "import importlib\n"
        "def f():\n"
        "    from orchestrion import Engine\n"
        "    importlib.import_module('redis')\n"
        "    __import__('orchestrion.engine.facade')\n"
    )
    found = [(imp.imported, imp.line) for imp in imports_of(source, name="orchestrion.core.x")]
    assert ("orchestrion", 3) in found
    assert ("redis", 4) in found
    assert ("orchestrion.engine.facade", 5) in found
    root = Import("orchestrion.core.machine", "orchestrion", 3)
    assert violations([root]) == [root]
    assert guests([Import("orchestrion.store.memory", "redis", 4)])


def test_backend_clients_stay_home() -> None:
    found = guests(_everything())
    strays = [
        f"  {imp.importer}:{imp.line} imports {imp.imported}, which only"
        f" orchestrion.{HOMES[imp.imported.split('.')[0]]} may use (see HOMES)"
        for imp in _everything()
        if (imp.importer, imp.imported.split(".")[0]) in found - KNOWN_GUESTS
    ]
    assert not strays, "backend clients outside their home package:\n" + "\n".join(strays)
    assert not KNOWN_GUESTS - found, sorted(KNOWN_GUESTS - found)
