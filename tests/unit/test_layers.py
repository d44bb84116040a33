"""The layers import downwards only: ``classifier/`` (inference) never imports ``services/`` or
``training/``, and ``cascade_common/`` (errors, model paths) imports no other package of the project.
Read from the source with ast, so an import inside a function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN = {
    "classifier": {"services", "training"},
    "cascade_common": {"services", "training", "classifier", "cascade"},
}


def imported(path: Path) -> set[str]:
    """Top-level package of every absolute import in a file."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_imports_nothing_above_it(package: str) -> None:
    files = sorted((REPO / package).rglob("*.py"))
    assert files, f"no sources under {package}/"
    wrong = {
        str(f.relative_to(REPO)): sorted(imported(f) & FORBIDDEN[package])
        for f in files
        if imported(f) & FORBIDDEN[package]
    }
    assert not wrong, f"{package}/ must not import {sorted(FORBIDDEN[package])}: {wrong}"
