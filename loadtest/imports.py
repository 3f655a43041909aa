"""The import graph of the product folders: circles between modules and upward arrows.

``python -m tally.loadtest.imports`` parses every module under the repository root (``tests``
excluded) with ``ast``, counts every import (also the ones inside functions: a lazy import
still ties two modules together; not the ones under ``if TYPE_CHECKING:``, which never run)
and prints the import circles (strongly connected
components of more than one module) and every import from a folder to a higher one in
``LAYERS``. Exit status 1 when it finds either. ``tests/unit/test_layout.py`` keeps both at 0.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "tally"
SKIP = frozenset({"tests", ".venv", "docs", "grafana"})

# The data flow, bottom to top: a folder may import its own layer and the ones below it.
# How to reach Kafka and ClickHouse and the contract (wire format, buckets, DDL), the write path
# (client, queue sampler, the exactly-once engine, the aggregator built on it), the machines that
# run it locally (``embedded`` starts the aggregator too), the read path, what is built on reads
# (traces, monitors, the API, the dashboard mounted on it), the local service assembled from all
# of them, and on top the load tests and the ``tally`` command that mounts them.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("kafka", "clickhouse", "schemas"),
    ("ingest",),
    ("sampler",),
    ("engine",),
    ("aggregator",),
    ("embedded",),
    ("read",),
    ("traces",),
    ("monitors",),
    ("api",),
    ("web",),
    ("up",),
    ("loadtest",),
    ("cli",),
)
_RANK = {folder: rank for rank, group in enumerate(LAYERS) for folder in group}


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Every product module by dotted name (``tally.ingest.jobs.run``); packages by folder."""
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[0] in SKIP or any(p.startswith(".") for p in parts):
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join((PACKAGE, *parts))] = path
    return found


def _targets(node: ast.AST, here: str, is_package: bool) -> Iterable[str]:
    """The dotted names an import statement names (relative imports resolved)."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            parent = here.split(".")
            parent = parent[: len(parent) - node.level + (1 if is_package else 0)]
            base = ".".join(p for p in (*parent, base) if p)
        # ``from a.b import c`` names module ``a.b.c`` if there is one, else ``a.b``
        yield from (f"{base}.{alias.name}" for alias in node.names)


def _runtime(tree: ast.AST) -> Iterable[ast.AST]:
    """Every node of ``tree`` except the bodies of ``if TYPE_CHECKING:`` blocks."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the product modules it imports (a name resolves to its longest module)."""
    mods = modules(root)
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        is_package = path.name == "__init__.py"
        for node in _runtime(tree):
            for target in _targets(node, name, is_package):
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target and target != name and target != PACKAGE:
                    edges[name].add(target)
    return edges


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def folder(module: str) -> str:
    """The top folder of a module (``tally.ingest.jobs.run`` -> ``ingest``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def upward(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Imports from a folder to a folder higher in ``LAYERS``, as (importer, imported)."""
    return sorted(
        (source, target)
        for source, targets in edges.items()
        for target in targets
        if folder(source) in _RANK
        and folder(target) in _RANK
        and _RANK[folder(target)] > _RANK[folder(source)]
    )


def unranked(edges: dict[str, set[str]]) -> list[str]:
    """Folders missing from ``LAYERS`` (a new folder must be given its place)."""
    return sorted({folder(m) for m in edges if folder(m) and folder(m) not in _RANK})


def main() -> int:
    """Print circles, upward arrows and unranked folders; 1 if there are any."""
    edges = graph()
    found_circles, found_upward, missing = circles(edges), upward(edges), unranked(edges)
    print(f"{len(edges)} modules, {sum(map(len, edges.values()))} imports")
    print(f"circles: {len(found_circles)}")
    for component in found_circles:
        print("  " + " <-> ".join(component))
    print(f"upward arrows: {len(found_upward)}")
    for source, target in found_upward:
        print(f"  {source} -> {target}")
    if missing:
        print(f"folders missing from LAYERS: {', '.join(missing)}")
    return 1 if found_circles or found_upward or missing else 0


if __name__ == "__main__":
    sys.exit(main())
