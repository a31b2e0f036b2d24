"""Import-layer contract: every import in the package (module level or inside a function) points down the stack.

The layers, lowest first (a package may import its own modules and any lower layer, never a higher one or a
package of its own layer)::

    errors -> cryomine (the root __init__) -> geometry -> io -> viz -> acquisition -> structures -> simulate -> data -> models -> train
    -> evaluate -> pick | average | discover -> report -> project -> viewer -> cli -> __main__

On top of that, no two modules import each other, directly or through others (no module-level cycles, counting
``TYPE_CHECKING`` and function-level imports too).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "cryomine"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors",),
    ("devices", "resources"),
    ("",),
    ("geometry",),
    ("io",),
    ("viz",),
    ("acquisition",),
    ("structures",),
    ("simulate",),
    ("data",),
    ("models",),
    ("train",),
    ("evaluate",),
    ("pick", "average", "discover"),
    ("report",),
    ("project",),
    ("viewer",),
    ("cli",),
    ("__main__",),
)
LEVEL = {name: i for i, group in enumerate(LAYERS) for name in group}


def _module_name(path: Path) -> str:
    parts = ("cryomine",) + path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module: str) -> list[tuple[str, int]]:
    """``(imported cryomine module, line)`` for every import statement in the file, nested ones included."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "cryomine"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.split(".")[0] != "cryomine":
                continue
            folder = SRC.joinpath(*name.split(".")[1:])
            for a in node.names:  # "from cryomine.x import y": y may be a module
                sub = (folder / a.name).is_dir() or (folder / f"{a.name}.py").is_file()
                out.append((f"{name}.{a.name}" if sub else name, node.lineno))
    return out


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _graph() -> dict[str, list[tuple[str, int]]]:
    return {_module_name(p): _imports(p, _module_name(p)) for p in sorted(SRC.rglob("*.py"))}


def test_every_package_has_a_layer():
    packages = {_package(m) for m in _graph()}
    assert packages <= set(LEVEL), f"packages without a layer: {sorted(packages - set(LEVEL))}"


def test_imports_point_down():
    bad = []
    for module, imports in _graph().items():
        here = _package(module)
        for target, line in imports:
            there = _package(target)
            if there != here and LEVEL[there] >= LEVEL[here]:
                bad.append(f"{module}:{line} imports {target} ({there or 'cryomine'} is not below {here})")
    assert not bad, "\n".join(bad)


def _resolve(target: str, modules: set[str]) -> str | None:
    while target and target not in modules:
        target = target.rpartition(".")[0]
    return target or None


def test_no_module_cycles():
    graph = _graph()
    modules = set(graph)
    edges = {m: {t for t in (_resolve(x, modules) for x, _ in imps) if t and t != m} for m, imps in graph.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for m in sorted(modules):
        if m not in state:
            visit(m, [])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("source", ["from cryomine.cli import app\n", "def f():\n    from ..cli import app\n",
                                    "import cryomine.cli.main\n", "from cryomine import cli\n"])
def test_contract_sees_every_import_form(tmp_path, source):
    """The checker itself: absolute, relative, nested and package imports of cryomine.cli from io are all seen."""
    f = tmp_path / "m.py"
    f.write_text(source)
    targets = [t for t, _ in _imports(f, "cryomine.io.m")]
    assert len(targets) == 1 and _package(targets[0]) == "cli"
    assert LEVEL[_package(targets[0])] > LEVEL["io"]


def test_no_hidden_imports_below_the_cli():
    """Only the CLI defers imports into functions (for start-up time); elsewhere every cryomine import is at the
    top of its module, where the layer contract and the cycle check see it plainly."""
    hidden = []
    for path in sorted(SRC.rglob("*.py")):
        module = _module_name(path)
        if _package(module) == "cli":
            continue
        tree = ast.parse(path.read_text(), str(path))
        top = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in top:
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                if getattr(node, "level", 0) or any(n.split(".")[0] == "cryomine" for n in names):
                    hidden.append(f"{module}:{node.lineno}")
    assert not hidden, "imports inside functions or blocks: " + ", ".join(hidden)
