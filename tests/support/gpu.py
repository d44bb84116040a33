"""The ``gpu`` marker: a test marked ``@pytest.mark.gpu`` runs only where a CUDA device is present.

Registered from tests/conftest.py. "Present" means ``nvidia-smi -L`` lists a GPU (no CUDA library is
imported to find out); elsewhere the test is skipped with that reason shown by ``pytest -rs``.
"""

from __future__ import annotations

import functools
import shutil
import subprocess

import pytest


@functools.cache
def cuda_device() -> str | None:
    """The first GPU ``nvidia-smi -L`` lists, or None."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        listed = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    gpus = [line for line in listed.splitlines() if line.startswith("GPU ")]
    return gpus[0] if gpus else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    marked = [item for item in items if item.get_closest_marker("gpu")]
    if marked and cuda_device() is None:
        skip = pytest.mark.skip(reason="needs a CUDA GPU: nvidia-smi lists none here")
        for item in marked:
            item.add_marker(skip)
