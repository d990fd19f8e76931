"""No import circle between the add-on's own top-level modules and packages (read from their
source, lazy imports included): each part can be read, and registered, after those it uses.
What the add-on may import from outside (no torch, only the backend's bundle seam) is
import-linter's contract (.importlinter, tests/backend_tests/test_architecture.py)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOT_ADDON = {"backend", "tests", "scripts", "benchmarks", "docs"}


def _addon_files():
    for path in sorted(ROOT.glob("*.py")):
        yield path
    for pkg in sorted(p for p in ROOT.iterdir() if (p / "__init__.py").is_file() and p.name not in NOT_ADDON):
        yield from sorted(pkg.rglob("*.py"))


def _imports(path: Path):
    """(module, relative) for every import in ``path``, lazy ones included; relative ones are
    resolved to their name inside the add-on (``operators.jobs``, ``backend.bundle``)."""
    package = path.relative_to(ROOT).parts[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((alias.name, False) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module, False
        elif isinstance(node, ast.ImportFrom):
            assert node.level - 1 <= len(package), f"{path}: import from above the add-on"
            base = list(package[:len(package) - (node.level - 1)])
            if node.module:
                yield ".".join(base + [node.module]), True
            else:  # from . import a, b
                yield from ((".".join(base + [alias.name]), True) for alias in node.names)


def test_no_import_circle_between_the_addons_parts():
    # Node: a top-level module or package of the add-on (the root __init__ registers them all).
    graph = {}
    for path in _addon_files():
        rel = path.relative_to(ROOT).parts
        if rel == ("__init__.py",):
            continue
        node = Path(rel[0]).stem
        for module, relative in _imports(path):
            target = module.split(".")[0]
            if relative and target != node:
                graph.setdefault(node, set()).add(target)
    seen, stack = set(), []

    def visit(node):
        if node in stack:
            raise AssertionError("import circle: " + " -> ".join(stack[stack.index(node):] + [node]))
        if node in seen:
            return
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            visit(target)
        stack.pop()
        seen.add(node)

    for node in sorted(graph):
        visit(node)
