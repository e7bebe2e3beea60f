"""The shape of the package, as the wings issue set it: no import cycles among module-level imports, small
files, a lab folder a reader can scan, lazy subcommands, a short README whose links resolve, and docs pages."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "kl_grad"


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """{module: modules it imports at module level} over kl_grad (relative and absolute ``from`` imports;
    ``from pkg import sub`` counts as importing ``pkg.sub`` when that is a module)."""
    files = {_module(p): p for p in PACKAGE.rglob("*.py")}
    graph = {m: set() for m in files}
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    graph[mod].add(sub if sub in files else target)
            elif isinstance(node, ast.Import):
                graph[mod].update(a.name for a in node.names)
        graph[mod] = {t for t in graph[mod] if t in files and t != mod}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_file_over_300_lines():
    files = [p for folder in ("kl_grad", "tests", "benchmarks", "examples") for p in (ROOT / folder).rglob("*.py")]
    long = {str(p.relative_to(ROOT)): n for p in files if (n := len(p.read_text().splitlines())) > 300}
    assert long == {}


def test_the_lab_folder_is_short():
    entries = [p for p in (PACKAGE / "lab").iterdir() if p.name != "__pycache__"]
    assert len(entries) <= 34, sorted(p.name for p in entries)


def test_no_private_names_imported_across_modules():
    found = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                found += [f"{path.relative_to(ROOT)}: {a.name}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]
    assert found == []


def test_every_wing_has_its_kind_and_no_hub_imports_a_kind_by_name():
    from kl_grad.lab.experiments import KINDS, WINGS

    wings = {w.folder for w in WINGS}
    for wing in WINGS:
        assert (PACKAGE / "lab" / wing.folder / "__init__.py").is_file(), wing
        assert KINDS[wing.kind].config.kind == wing.kind
    graph = import_graph()
    hubs = ["kl_grad.lab.experiments", "kl_grad.lab.report", "kl_grad.lab.cli", "kl_grad.lab.results.reproduce",
            "kl_grad.lab.results.check"]
    for hub in hubs:
        assert not {t for t in graph[hub] if t.split(".")[2:3] and t.split(".")[2] in wings}, hub


@pytest.mark.parametrize("argv, absent", [
    (["--help"], ["kl_grad.lab.train", "kl_grad.lab.auditing", "kl_grad.lab.table", "pandas", "scipy"]),
    (["table", "--help"], ["kl_grad.lab.train", "kl_grad.lab.auditing", "kl_grad.lab.catalogue"]),
    (["audit", "--help"], ["kl_grad.lab.auditing.auditor", "kl_grad.lab.auditing.group_audit", "pandas", "scipy"]),
])
def test_subcommands_load_only_their_wing(argv, absent):
    code = ("import sys; from kl_grad.lab.cli import main\n"
            "try:\n    main(%r)\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in %r if m in sys.modules))" % (argv, absent))
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_the_readme_is_short_and_every_link_resolves():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.encode()) <= 20 * 1024
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if not target.startswith("http"):
                assert (page.parent / target).exists(), f"{page.name} links to a missing {target}"
    linked = set(re.findall(r"\(docs/([\w-]+\.md)\)", readme))
    assert linked == {p.name for p in (ROOT / "docs").glob("*.md")}  # the map names every page
