"""Imports point down only (DESIGN.md "Layers"), read from the source with ``ast``.

Every ``import`` / ``from … import`` of every module counts, including ones inside
functions and under ``TYPE_CHECKING``: a lazy import is still a dependency.

    ground (domain/)            imports nothing of ours
    feeds/, models/, store/     the ground only
    analysis/                   the ground only (selection statistics: pure numpy)
    engine/                     the ground, and the strategy Protocol (strategies.base)
    strategies/                 the ground and models/
    reporting/, inspect_tools/  presentation: anything below the application layer
    app/                        wires everything below it
    CLIs, bench/, testkit/      on top (not checked)
and no cycles between packages.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GROUND = "domain"
LOWER = {GROUND, "feeds", "models", "store", "engine", "strategies", "analysis"}
PRESENTATION = {"reporting", "inspect_tools"}
ALLOWED: dict[str, set[str]] = {
    GROUND: set(),
    "feeds": {GROUND},
    "models": {GROUND},
    "store": {GROUND},
    "analysis": {GROUND},
    "engine": {GROUND, "strategies.base"},  # strategies.base: the Strategy/Context Protocol only
    "strategies": {GROUND, "models"},
    "reporting": LOWER | PRESENTATION,
    "inspect_tools": LOWER | PRESENTATION,
    "app": LOWER | PRESENTATION | {"app"},
}
# Known exceptions, (importing module, imported package): each is another branch's area and
# should be deleted from here once it is fixed.
KNOWN_EXCEPTIONS: set[tuple[str, str]] = {
}


def _project_packages(root: Path = REPO) -> set[str]:
    return {p.name for p in root.iterdir() if p.is_dir() and (p / "__init__.py").exists()}


def _modules(package: str, root: Path = REPO) -> list[Path]:
    return sorted(p for p in (root / package).rglob("*.py") if "__pycache__" not in p.parts)


def _module_name(path: Path, root: Path = REPO) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, root: Path = REPO) -> set[str]:
    """Absolute dotted names this module imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    here = _module_name(path, root).split(".")
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here if is_pkg else here[:-1]
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return out


def _allowed(package: str, target: str) -> bool:
    rules = ALLOWED[package]
    return any(target == rule or target.startswith(rule + ".") for rule in rules)


def _violations(root: Path = REPO) -> list[str]:
    ours = _project_packages(root)
    bad = []
    for package in sorted(set(ALLOWED) & ours):
        for path in _modules(package, root):
            module = _module_name(path, root)
            for name in sorted(_imports(path, root)):
                top = name.split(".")[0]
                if top not in ours or top == package:
                    continue
                if (module, top) in KNOWN_EXCEPTIONS:
                    continue
                if top not in ALLOWED:
                    bad.append(f"{module} imports {name} (package {top} is above every layer)")
                elif not _allowed(package, name):
                    bad.append(f"{module} imports {name}")
    return bad


def test_every_package_is_classified():
    """A new package must be given a layer here (or be a top-level tool like bench/testkit/tests)."""
    tools = {"bench", "testkit", "tests", "cli"}
    assert _project_packages() - tools - set(ALLOWED) == set()


def test_imports_point_down_only():
    bad = _violations()
    assert not bad, "layer violations (DESIGN.md 'Layers'):\n" + "\n".join(bad)


def test_no_package_cycles():
    ours = set(ALLOWED)
    graph: dict[str, set[str]] = {p: set() for p in ours}
    for package in ours:
        for path in _modules(package):
            graph[package] |= {n.split(".")[0] for n in _imports(path)} & ours - {package}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                pytest.fail("package cycle: " + " -> ".join(trail[trail.index(nxt):] + [node, nxt]))
            if nxt not in state:
                visit(nxt, trail + [node])
        state[node] = 2

    for package in sorted(ours):
        if package not in state:
            visit(package, [])


def test_the_checker_can_fail(tmp_path):
    """A function-level import, a relative one and a TYPE_CHECKING one are all seen and judged."""
    for package in ("store", "engine", "domain"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "store" / "db.py").write_text("")
    probe = tmp_path / "store" / "probe.py"
    probe.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import domain.types\n"
                     "def f():\n    from engine.loop import Engine\nfrom .db import init_db\n", encoding="utf-8")
    assert {"engine.loop", "store.db", "domain.types"} <= _imports(probe, tmp_path)
    bad = _violations(tmp_path)
    assert bad and all(v.startswith("store.probe imports engine.loop") for v in bad), bad
