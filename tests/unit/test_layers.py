"""The layers import downwards only: ``classifier/`` (inference) never imports ``services/`` or
``training/``, and ``cascade_common/`` (errors, model paths) imports no other package of the project.
Read from the source with ast, so an import inside a function counts too."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.source import imported_packages

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN = {
    "classifier": {"services", "training"},
    "cascade_common": {"services", "training", "classifier", "cascade"},
}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_imports_nothing_above_it(package: str) -> None:
    files = sorted((REPO / package).rglob("*.py"))
    assert files, f"no sources under {package}/"
    wrong = {
        str(f.relative_to(REPO)): sorted(imported_packages(f) & FORBIDDEN[package])
        for f in files
        if imported_packages(f) & FORBIDDEN[package]
    }
    assert not wrong, f"{package}/ must not import {sorted(FORBIDDEN[package])}: {wrong}"
