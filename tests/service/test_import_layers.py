"""The import graph of ``service/``: no cycle, and no import from a layer up to a higher one.

The layers are :data:`service.layers.LAYERS`. Every ``import`` statement counts, inside
functions and ``if TYPE_CHECKING:`` blocks too: a lazy import that climbs a layer is still a
dependency the wrong way, only hidden. The graph is read with ``ast``, importing nothing.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.layers import LAYERS, NOT_THE_SERVICE
from service.settings import REPO_ROOT

PACKAGE = REPO_ROOT / "service"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_tool(module: str) -> bool:
    return any(module == tool or module.startswith(tool + ".") for tool in NOT_THE_SERVICE)


def service_modules() -> dict[str, Path]:
    modules = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
    return {name: path for name, path in modules.items() if not is_tool(name)}


def imported_names(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """Every module name an import statement of ``module`` may refer to, with its line."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            yield base, node.lineno
            for alias in node.names:  # from a package import a submodule
                yield f"{base}.{alias.name}", node.lineno


def import_graph() -> dict[str, dict[str, int]]:
    """module -> {imported service module (or tool): line of the import}."""
    modules = service_modules()
    graph: dict[str, dict[str, int]] = {}
    for module, path in modules.items():
        edges: dict[str, int] = {}
        for name, line in imported_names(module, path):
            if is_tool(name):
                edges[name] = line
                continue
            # "from service.runtime import providers": the submodule when there is one,
            # else the package (a name defined in its __init__).
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name.startswith("service") and name != module:
                edges.setdefault(name, line)
        graph[module] = edges
    return graph


def in_pattern(module: str, pattern: str) -> bool:
    package = pattern.removesuffix(".*")
    if pattern == package:
        return module == pattern
    return module == package or module.startswith(package + ".")


def layers_holding(module: str) -> list[int]:
    return [
        index
        for index, layer in enumerate(LAYERS)
        if any(in_pattern(module, pattern) for pattern in layer.modules)
    ]


def layer_of(module: str) -> int | None:
    holding = layers_holding(module)
    return holding[0] if holding else None


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Every import cycle, each as the modules along it (first repeated last)."""
    found: list[list[str]] = []
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            found.append(path[path.index(module) :] + [module])
            return
        if module in done:
            return
        for target in graph.get(module, {}):
            visit(target, [*path, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    return found


GRAPH = import_graph()


def test_the_graph_is_read() -> None:
    # Guards the reader: a graph without these edges would pass every test below.
    assert "service.settings" in GRAPH["service.app"]
    assert "service.runtime.providers" in GRAPH["service.runtime.session"]  # from a package
    assert "service" in GRAPH["service.app"]  # __version__ from the package itself
    assert "service.process" in GRAPH["service.cli"]  # inside a function


def test_every_module_is_in_exactly_one_layer() -> None:
    for module in GRAPH:
        names = [LAYERS[index].name for index in layers_holding(module)]
        assert len(names) == 1, f"{module} is in layers {names}: give it one in service/layers.py"
    for layer in LAYERS:
        for pattern in layer.modules:
            assert any(in_pattern(module, pattern) for module in GRAPH), (
                f"service/layers.py lists {pattern}, which holds no module"
            )


def test_no_import_cycle() -> None:
    assert cycles(GRAPH) == []


def test_no_import_climbs_a_layer() -> None:
    upward = []
    for module, edges in GRAPH.items():
        for target, line in edges.items():
            here, there = layer_of(module), layer_of(target)
            if here is not None and there is not None and there > here:
                upward.append(
                    f"{module}:{line} ({LAYERS[here].name}) imports {target} ({LAYERS[there].name})"
                )
    assert upward == []


def test_the_service_imports_none_of_its_tools() -> None:
    into_tools = [
        f"{module}:{line} imports {target}"
        for module, edges in GRAPH.items()
        for target, line in edges.items()
        if is_tool(target)
    ]
    assert into_tools == []


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b": 1}, "b": {"a": 2}}, [["a", "b", "a"]]),
        ({"a": {"b": 1}, "b": {"c": 1}, "c": {}}, []),
    ],
)
def test_cycles_are_found(graph: dict[str, dict[str, int]], expected: list[list[str]]) -> None:
    assert cycles(graph) == expected


def test_the_architecture_doc_names_the_layers_in_order() -> None:
    doc = (REPO_ROOT / "docs" / "architecture.md").read_text()
    section = doc.split("## The layers")[1].split("\n## ")[0]
    positions = [section.find(f"**{layer.name}**") for layer in LAYERS]
    assert -1 not in positions, "docs/architecture.md: a layer of service/layers.py is missing"
    assert positions == sorted(positions)
