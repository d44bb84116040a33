"""The ``gpu`` marker skips where there is no CUDA device, and only there."""

from __future__ import annotations

import pytest

from tests.support import gpu

pytest_plugins = ["pytester"]

MARKED = """
import pytest

@pytest.mark.gpu
def test_on_a_gpu():
    pass

def test_anywhere():
    pass
"""


@pytest.mark.parametrize(("device", "outcomes"), [(None, {"passed": 1, "skipped": 1}), ("GPU 0: H200", {"passed": 2})])
def test_gpu_tests_are_skipped_without_a_cuda_device(pytester, monkeypatch, device, outcomes) -> None:
    monkeypatch.setattr(gpu, "cuda_device", lambda: device)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\nmarkers =\n    gpu: needs a CUDA GPU\n")
    pytester.makepyfile(MARKED)
    result = pytester.runpytest_inprocess("-p", "tests.support.gpu", "-rs")
    result.assert_outcomes(**outcomes)
    if device is None:
        result.stdout.fnmatch_lines(["*needs a CUDA GPU*"])
