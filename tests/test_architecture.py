"""The package's import graph, read from the source with `ast`: no cycles, and imports flow one way.

Every `import splatgen...` / `from splatgen... import` counts, module-level or deferred inside a
function, and type-only imports under `if TYPE_CHECKING:` too (a cycle there is still a cycle in
the design). A `from splatgen.pkg import name` that names a submodule counts as importing it.
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "splatgen"

# Lowest first. A module may import modules of its own layer or a lower one, never a higher one
# (cli -> batch -> report -> train -> {viewer, export, eval, scene, prior, render, objectives, prompts} -> io -> the shared data types).
LAYERS: list[tuple[str, ...]] = [
    ("splatgen.errors", "splatgen.lazy"),
    ("splatgen.scene.gaussians", "splatgen.scene.cameras", "splatgen.scene.frames"),  # the data every layer shares
    ("splatgen.io", "splatgen.gpu"),  # gpu: driver, nvcc and gsplat's kernels (imports only errors)
    ("splatgen.objectives", "splatgen.render", "splatgen.prompts"),
    ("splatgen.prior",),  # the oracle prior renders its target
    ("splatgen.scene",),  # initialisation (PLY, Shap-E through prior.loading), densification
    ("splatgen.export",),  # meshes: renders the asset, writes through io
    ("splatgen.eval",),  # renders assets, CLIP through prior.loading, the tiny CLIP's tokenizer from prior.tiny
    ("splatgen.tiny_models",),
    ("splatgen.viewer",),
    ("splatgen.train",),
    ("splatgen.report",),  # reads the files train and eval write
    ("splatgen.batch",),  # many runs through train(), a gallery through report's helpers
    ("splatgen.cli", "splatgen.__main__"),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str) -> set[str]:
    """The splatgen modules `name` imports (resolved to modules that exist)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {target for target in targets if target in MODULES and target != name}
    return found


GRAPH = {name: imports_of(name) for name in MODULES}


def layer_of(name: str) -> int:
    """The highest layer whose prefix matches most specifically (longest prefix wins)."""
    matches = [
        (len(prefix), index)
        for index, prefixes in enumerate(LAYERS)
        for prefix in prefixes
        if name == prefix or name.startswith(prefix + ".")
    ]
    assert matches, f"{name} is in no layer: add it to LAYERS"
    return max(matches)[1]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search, three colours)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def test_the_graph_is_read():
    assert len(MODULES) > 50
    assert "splatgen.train.step" in GRAPH["splatgen.train.loop"]
    assert "splatgen.train.distill" in GRAPH["splatgen.train.step"]
    assert "splatgen.scene.densify" in GRAPH["splatgen.train.step"]


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle():
    assert find_cycle(GRAPH) is None, " -> ".join(find_cycle(GRAPH))


def test_imports_flow_one_way():
    upward = [
        f"{name} (layer {layer_of(name)}) imports {target} (layer {layer_of(target)})"
        for name, targets in GRAPH.items()
        for target in sorted(targets)
        if layer_of(target) > layer_of(name)
    ]
    assert not upward, "\n".join(upward)
