"""What a Python source file imports, read with ast (so an import inside a function counts too)."""

from __future__ import annotations

import ast
from pathlib import Path


def imported_modules(path: Path) -> set[str]:
    """Every absolute import of a file as a dotted name: ``import a.b`` -> a.b; ``from a.b import c`` ->
    a.b and a.b.c (c may be a module)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return names


def imported_packages(path: Path) -> set[str]:
    """Top-level package of every absolute import in a file."""
    return {name.split(".")[0] for name in imported_modules(path)}
