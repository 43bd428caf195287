"""The package's layers point only down, and no two modules import each other (docs/ARCHITECTURE.md).

Every import is read from the source (function-level imports included, since a late import is still a
dependency), so the test needs nothing installed and fails on the first arrow that points the wrong way.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "curate"

# Lowest first. A module may import its own layer and the layers below it.
LAYERS: list[tuple[str, set[str]]] = [
    ("base", {"curate", "curate.errors", "curate.reasons", "curate.records", "curate.config", "curate.tables"}),
    ("formats", {"curate.io", "curate.urls", "curate.mime", "curate.warc", "curate.html", "curate.crawl",
                 "curate.readers", "curate.shards", "curate.urllists", "curate.inputs", "curate.progress"}),
    ("net", {"curate.netguard", "curate.fetch", "curate.robots", "curate.downloader"}),
    ("image", {"curate.hashing", "curate.imaging", "curate.keypoints", "curate.ocr", "curate.ppocr"}),
    ("filters", {"curate.filters"}),
    ("pipelines", {"curate.pipelines"}),
    # Beside the pipelines, leaves: only the commands import them; the trainer's toy data uses the sample's images.
    ("sample", {"curate.sample"}),
    ("trainer", {"curate.trainer"}),
    ("commands", {"curate.commands", "curate.__main__"}),
]
# Layers that sit side by side: neither may import the other, except for these pairs (importer, imported).
SIDE_BY_SIDE = {"pipelines", "sample", "trainer"}
ALLOWED_ACROSS = {("trainer", "sample")}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _layer(module: str) -> int:
    for rank, (_, members) in enumerate(LAYERS):
        if module in members or any(module.startswith(f"{m}.") for m in members if m != "curate"):
            return rank
    raise AssertionError(f"{module} is in no layer: add it to LAYERS (and to docs/ARCHITECTURE.md)")


def _resolve(name: str) -> str | None:
    """The curate module an import of `name` loads (a name imported from a module resolves to the module)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_in(source: str, module: str, is_package: bool = False) -> set[str]:
    """The curate modules (and top-level link names) that `source`, the text of `module`, imports."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for name in names:
            if name.split(".")[0] in ("pipelines", "filters"):
                found.add(name)  # the top-level folders are links for browsing, not import names
            resolved = _resolve(name) if name.startswith("curate") else None
            if resolved and resolved != module:
                found.add(resolved)
    return found


GRAPH = {module: imports_in(path.read_text(), module, path.name == "__init__.py") for module, path in MODULES.items()}


def test_every_module_has_a_layer() -> None:
    assert len(MODULES) > 60
    for module in MODULES:
        _layer(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module: str) -> None:
    assert not {n for n in GRAPH[module] if n.split(".")[0] in ("pipelines", "filters")}, \
        f"{module} imports the top-level link; import curate.pipelines / curate.filters"
    rank = _layer(module)
    name = LAYERS[rank][0]
    for imported in GRAPH[module]:
        other = _layer(imported)
        other_name = LAYERS[other][0]
        if other_name in SIDE_BY_SIDE and name in SIDE_BY_SIDE and other_name != name:
            assert (name, other_name) in ALLOWED_ACROSS, f"{module} ({name}) imports {imported} ({other_name})"
        else:
            assert other <= rank, f"{module} ({name}) imports {imported} ({other_name}): an arrow pointing up"


def test_no_module_imports_the_commands() -> None:
    for module, imported in GRAPH.items():
        if _layer(module) != len(LAYERS) - 1:
            assert not {n for n in imported if n.startswith("curate.commands")}, module


def test_beam_is_wired_in_the_pipelines_only() -> None:
    """Filters are rules, formats and net are plain code: Beam appears in curate.pipelines and nowhere else."""
    users = set()
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        if any(name.split(".")[0] == "apache_beam" for name in names):
            users.add(module)
    assert users and all(m.startswith("curate.pipelines.") for m in users), sorted(users)


def test_no_import_cycles() -> None:
    """Tarjan's strongly connected components over module imports: every component is one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(GRAPH[node]):
            if nxt.startswith("curate") and nxt in GRAPH:
                # a package's __init__ is loaded by importing any module below it: not a cycle of code
                if node.startswith(f"{nxt}.") or nxt == "curate":
                    continue
                if nxt not in index:
                    visit(nxt)
                    low[node] = min(low[node], low[nxt])
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    assert cycles == []


def test_the_reader_sees_late_relative_and_link_imports() -> None:
    """What the layer test relies on: imports inside functions, relative imports, `import a.b` and the links."""
    source = ("import curate.ocr\n"
              "def f():\n    from curate.commands.cli import main\n    from ..records import ImageRef\n"
              "    from . import common\n    import pipelines.run\n")
    found = imports_in(source, "curate.pipelines.text")
    assert found == {"curate.ocr", "curate.commands.cli", "curate.records", "curate.pipelines", "curate.pipelines.common",
                     "pipelines.run"}
    assert _layer("curate.commands.cli") > _layer("curate.pipelines.run") > _layer("curate.filters.text")
    assert _layer("curate.ocr") > _layer("curate.fetch") > _layer("curate.io") > _layer("curate.records")
