"""The import graph of our packages has no cycle, and no module under nodes/ is long.

A cycle between modules works only as long as every import in it happens late enough
(inside a function, or after the names the other side needs), so it breaks on an
innocent reordering, and it makes the modules impossible to read or test one at a time.
The graph is read from the source with `ast`, not from what Python happened to import,
so that imports inside functions and under `if TYPE_CHECKING:` count too: they are the
ones that hide a cycle.
"""
from __future__ import annotations

import ast
from collections import deque
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAX_NODES_LINES = 350


def module_files(root: Path, package: str) -> dict[str, Path]:
    """Module name -> file, for every .py under root/package; a package's __init__.py is
    the package's own module."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imported_names(tree: ast.Module, module: str, is_package: bool) -> list[tuple[str, int]]:
    """(dotted name, line) of everything the module imports, anywhere in it; relative
    imports resolved. `from X import Y` gives X.Y: the caller keeps it if that is a
    module and falls back to X otherwise."""
    names = []
    for node in ast.walk(tree):          # walk: function bodies and if-blocks included
        if isinstance(node, ast.Import):
            names += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:               # relative: from the module's own package, up
                package = module.split(".") if is_package else module.split(".")[:-1]
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            names += [(f"{base}.{alias.name}", node.lineno) for alias in node.names]
    return names


def import_graph(root: Path, package: str) -> dict[str, dict[str, int]]:
    """module -> {module it imports: line of the first such import}, between the modules
    of one top package. A dotted name counts as its longest prefix that is a module."""
    files = module_files(root, package)
    graph: dict[str, dict[str, int]] = {m: {} for m in files}
    for module, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        # in line order: ast.walk visits a function's imports after the module's own
        for name, line in sorted(imported_names(tree, module, path.name == "__init__.py"),
                                 key=lambda name_line: name_line[1]):
            while name and name not in files:
                name = name.rpartition(".")[0]
            if name and name != module:
                graph[module].setdefault(name, line)
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The shortest cycle through each module that is on one, each cycle once, written from
    its first module in sorted order."""
    found = []
    for start in sorted(graph):
        path = _shortest_cycle(graph, start)
        if path is None:
            continue
        first = path.index(min(path))
        path = path[first:-1] + path[:first] + [path[first]]
        if path not in found:
            found.append(path)
    return found


def _shortest_cycle(graph: dict[str, dict[str, int]], start: str) -> list[str] | None:
    """Breadth first from start back to it: [start, ..., start], or None."""
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        here = queue.popleft()
        for nxt in sorted(graph[here]):
            if nxt == start:
                path = [here]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [*reversed(path), start]
            if nxt not in came_from:
                came_from[nxt] = here
                queue.append(nxt)
    return None


def chain(graph: dict[str, dict[str, int]], cycle: list[str]) -> str:
    """nodes.a:12 -> nodes.b:40 -> nodes.a: module:line of the import of the next one."""
    return " -> ".join(f"{a}:{graph[a][b]}" for a, b in zip(cycle, cycle[1:])) + f" -> {cycle[-1]}"


def add_registered_parts(graph: dict[str, dict[str, int]]) -> None:
    """bench/parts.py imports the registered parts by name (importlib), which ast does not
    see as imports; add those edges, so that a part importing bench.run or bench.parts
    shows as the cycle it is at run time."""
    from bench import parts

    lines = (ROOT / "bench" / "parts.py").read_text().splitlines()
    for part in parts.PARTS:
        line = next((i for i, text in enumerate(lines, 1) if f'"{part.module}"' in text), 0)
        graph["bench.parts"].setdefault(part.module, line)


@pytest.mark.parametrize("package", ["bench", "nodes", "replog_client", "replog_cli"])
def test_no_import_cycle(package):
    graph = import_graph(ROOT, package)
    if package == "bench":
        add_registered_parts(graph)
    found = cycles(graph)
    if found:
        pytest.fail(f"{len(found)} import cycle(s) in {package}/ (module:line of the import of "
                    "the next module):\n" + "\n".join(f"  {chain(graph, c)}" for c in found),
                    pytrace=False)


def test_no_long_module_in_nodes():
    lengths = {path.relative_to(ROOT).as_posix(): len(path.read_text().splitlines())
               for path in module_files(ROOT, "nodes").values()}
    long = {name: n for name, n in sorted(lengths.items()) if n > MAX_NODES_LINES}
    if long:
        pytest.fail(f"{len(long)} module(s) under nodes/ longer than {MAX_NODES_LINES} lines:\n"
                    + "\n".join(f"  {n:>5}  {name}" for name, n in long.items()), pytrace=False)


def test_the_graph_sees_every_kind_of_import(tmp_path):
    """The builder on a made-up package: relative, absolute, late and type-only imports,
    `from pkg import submodule`, and a name that is not a module."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "from .a import thing\n",
        "a.py": "def f():\n    from pkg.sub import c\nimport pkg.sub.c\n",   # the first line counts
        "b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.a\n",
        "sub/__init__.py": "",
        "sub/c.py": "from .. import b\nfrom . import d\nfrom pkg import a_name\n",
        "sub/d.py": "import os\nimport pkg.sub.c.attr\n",
    }
    for name, text in files.items():
        (pkg / name).write_text(text)
    graph = import_graph(tmp_path, "pkg")
    assert graph == {
        "pkg": {"pkg.a": 1},
        "pkg.a": {"pkg.sub.c": 2},
        "pkg.b": {"pkg.a": 3},
        "pkg.sub": {},
        "pkg.sub.c": {"pkg.b": 1, "pkg.sub.d": 2, "pkg": 3},
        "pkg.sub.d": {"pkg.sub.c": 2},
    }
    assert cycles(graph) == [
        ["pkg", "pkg.a", "pkg.sub.c", "pkg"],
        ["pkg.a", "pkg.sub.c", "pkg.b", "pkg.a"],
        ["pkg.sub.c", "pkg.sub.d", "pkg.sub.c"],
    ]
    assert chain(graph, ["pkg.sub.c", "pkg.sub.d", "pkg.sub.c"]) == \
        "pkg.sub.c:2 -> pkg.sub.d:2 -> pkg.sub.c"
