"""The package shows the flow: no import cycle, each folder imports only from the foundations and the folders
before it in ORDER (docs/architecture.md), nothing imports the command line, and no provider imports its
registry."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

# Data flows this way; a folder may import the foundations (scaler/*.py) and the folders before it.
ORDER = ("policy", "recordings", "sources", "targets", "store", "notify", "decision", "simulate", "runbook",
         "alerts", "server", "live", "cli")


def imports(root: Path) -> dict[str, set[str]]:
    """module -> the scaler modules it imports anywhere (top level, functions, TYPE_CHECKING blocks)."""
    files = {}
    for f in (root / "scaler").rglob("*.py"):
        parts = f.relative_to(root).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f

    def known(name: str) -> str | None:  # scaler.targets.base.KIND -> scaler.targets.base
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in files}
    for module, f in files.items():
        package = module.split(".") if f.name == "__init__.py" else module.split(".")[:-1]
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
                names = [base, *(f"{base}.{a.name}" for a in node.names)]
            else:
                continue
            graph[module] |= {m for n in names if (m := known(n)) is not None and m != module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan): each one is an import cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_in_the_package_and_no_provider_imports_its_registry() -> None:
    graph = imports(ROOT)
    assert cycles(graph) == []
    back = [m for m in graph for folder in ("sources", "targets", "store", "notify")
            if m.startswith(f"scaler.{folder}.") and f"scaler.{folder}.registry" in graph[m]]
    assert back == []


def test_the_cycle_check_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def folder(module: str) -> str:
    """'scaler.decision.kernel.tick' -> 'decision'; a foundation module -> ''."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (ROOT / "scaler" / parts[1]).is_dir()) else ""


def test_every_folder_is_in_the_order_and_imports_only_backwards() -> None:
    graph = imports(ROOT)
    folders = {folder(m) for m in graph} - {""}
    assert folders == set(ORDER)
    rank = {name: i for i, name in enumerate(ORDER)} | {"": -1}
    forward = sorted(f"{m} -> {n}" for m, deps in graph.items() for n in deps
                     if m != "scaler.__main__" and rank[folder(n)] > rank[folder(m)])
    assert forward == []


def test_nothing_outside_the_command_line_imports_it() -> None:
    graph = imports(ROOT)
    assert [m for m, deps in graph.items() if folder(m) != "cli" and m != "scaler.__main__"
            and any(folder(n) == "cli" for n in deps)] == []
