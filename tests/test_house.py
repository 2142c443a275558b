"""The house rules, checked on the source: no import cycles (imports inside functions count), no
room below the build layer reads a config, and no room imports an entry point."""

from __future__ import annotations

import ast
from pathlib import Path

import transferlab

PACKAGE = Path(transferlab.__file__).parent
ENTRY_POINTS = {
    "train",
    "evaluate",
    "preview",
    "report.cli",
    "export.cli",
    "predict",
    "rank",
    "advise",
    "train_heads",  # the job runner of hydra/launcher=heads
}
# the modules that may read a DictConfig / call Hydra's instantiate: the config helper, the build
# layer and the entry points
CONFIG_READERS = {
    "config",
    "build",
    "build.parts",
    "build.checkpoint",
    "build.experiment",
    "build.head_sweep",
}


def module_names() -> dict[str, Path]:
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules ``name`` imports, anywhere in the file (functions included)."""
    found = set()
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join(["transferlab", *anchor, *([base] if base else [])])
            targets = [base, *(f"{base}.{a.name}" for a in node.names)]
        else:
            continue
        for target in targets:
            if not target.startswith("transferlab."):
                continue
            mod = target.removeprefix("transferlab.")
            while mod and mod not in known:
                mod = mod.rpartition(".")[0]
            if mod and mod != name and not name.startswith(mod + "."):
                found.add(mod)
    return found


def import_graph() -> dict[str, set[str]]:
    names = module_names()
    return {n: imports_of(n, p, set(names)) for n, p in names.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle_through_a_function_local_import(tmp_path):
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("from transferlab.b import f\n")
    b.write_text("def f():\n    from transferlab.a import g\n")
    graph = {n: imports_of(n, p, {"a", "b"}) for n, p in (("a", a), ("b", b))}
    assert cycles(graph) == [["a", "b"]]


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_no_room_imports_an_entry_point():
    offenders = {
        name: sorted(deps & ENTRY_POINTS)
        for name, deps in import_graph().items()
        if deps & ENTRY_POINTS and name not in ENTRY_POINTS and name != "report"
    }
    assert offenders == {}


def test_only_the_build_layer_and_entry_points_read_configs():
    readers = []
    for name, path in module_names().items():
        text = path.read_text()
        if "DictConfig" in text or "hydra.utils import instantiate" in text:
            readers.append(name)
    assert set(readers) <= CONFIG_READERS | ENTRY_POINTS, sorted(set(readers) - CONFIG_READERS)
