"""The import graph of ``golden/``: no cycles, and the golden ViT package in its layer order.

Walks every module's source with ``ast`` (function-local imports included, ``if TYPE_CHECKING:``
blocks excluded because they never run), resolves relative imports against the installed name
``heatvit.golden``, and keeps the edges that land inside ``golden/``."""

import ast
from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
ROOT = "heatvit.golden"


def module_names(root: Path = GOLDEN) -> dict[str, Path]:
    """``{dotted name: file}`` for every module under ``root`` (a package's name -> __init__.py)."""
    out = {}
    for f in sorted(root.rglob("*.py")):
        parts = list(f.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join([ROOT, *parts])] = f
    return out


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST):
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Modules under ``golden/`` that module ``name`` (file ``path``) imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in _import_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            if node.level:
                base = package.split(".")
                if node.level - 1 >= len(base):
                    raise ValueError(f"{path}: relative import beyond the top package")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            # ``from pkg import sub`` needs the submodule (``pkg`` itself is initialized first
            # anyway); ``from mod import attr`` needs ``mod``
            subs = [f"{target}.{a.name}" for a in node.names]
            targets = [s if s in modules else target for s in subs]
        for t in targets:
            # the deepest module under golden/ this name refers to (an attribute import falls
            # back to its module)
            while t and t not in modules:
                t = t.rpartition(".")[0]
            if t and t.startswith(ROOT) and t != name:
                found.add(t)
    return found


def import_graph(root: Path = GOLDEN) -> dict[str, set[str]]:
    modules = module_names(root)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first repeated at the end), or None."""
    state: dict[str, int] = {}                 # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                cyc = visit(m)
                if cyc:
                    return cyc
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            cyc = visit(n)
            if cyc:
                return cyc
    return None


def test_golden_has_no_import_cycle():
    graph = import_graph()
    assert f"{ROOT}.vit.int_forward" in graph and f"{ROOT}.token_selector.int_selector" in graph
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle in golden/: " + " -> ".join(cycle)


VIT_ORDER = ["config", "ops", "selector", "model", "float_forward", "int_forward", "latency", "quantize", "data",
             "torch_ref"]
"""The golden ViT's layers, lowest first: each module imports only modules listed before it."""


def test_vit_package_follows_its_layer_order():
    graph = import_graph()
    vit = f"{ROOT}.vit."
    modules = sorted(n[len(vit):] for n in graph if n.startswith(vit))
    assert sorted(VIT_ORDER) == modules, "update VIT_ORDER with the package's modules"
    for i, name in enumerate(VIT_ORDER):
        for dep in graph[vit + name]:
            if dep.startswith(vit):
                assert VIT_ORDER.index(dep[len(vit):]) < i, f"vit.{name} imports {dep}, a higher layer"


def test_unit_models_do_not_import_the_whole_model():
    graph = import_graph()
    for name, deps in graph.items():
        if name.startswith(f"{ROOT}.token_selector") or name.startswith(f"{ROOT}.nonlinear"):
            bad = sorted(d for d in deps if d == f"{ROOT}.vit" or d.startswith(f"{ROOT}.vit."))
            assert not bad, f"{name} imports the whole-model package: {bad}"


@pytest.mark.parametrize("src, cyclic", [
    ({"a.py": "from . import b\n", "b.py": "def f():\n    from .a import x\n"}, True),
    ({"a.py": "from .b import y\n", "b.py": "import typing\nif typing.TYPE_CHECKING:\n    from .a import x\n"}, False),
    ({"p/__init__.py": "from .q import z\n", "p/q.py": "from .. import a\n", "a.py": "x = 1\n"}, False),
    ({"p/__init__.py": "", "p/q.py": "from ..a import x\n", "a.py": "from .p.q import w\n"}, True),
])
def test_the_walker_finds_cycles(tmp_path, src, cyclic):
    """The walker itself: a cycle through a function-local import and through a subpackage is
    found; a TYPE_CHECKING-only import is not an edge."""
    for rel, text in src.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    (tmp_path / "__init__.py").write_text("")
    assert (find_cycle(import_graph(tmp_path)) is not None) == cyclic
