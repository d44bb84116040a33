"""Where the tests find the shared benchmark data: ``../shared`` beside the repository root.

A test that needs it asks for the ``routing_data`` fixture, which fails (never skips) when the folder
is missing, so a run without the data says so instead of passing with tests silently left out.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROUTING = REPO.parent / "shared" / "data" / "routing"
MMLU_PRO = ROUTING / "mmlu_pro.parquet"
LLMROUTER = ROUTING / "llmrouter.parquet"


@pytest.fixture(scope="session")
def routing_data() -> Path:
    """The routing data folder (``../shared/data/routing``); the test fails when it is not there."""
    missing = [p.name for p in (MMLU_PRO, LLMROUTER) if not p.exists()]
    if missing:
        pytest.fail(
            f"shared routing data missing in {ROUTING}: {missing}. The tests expect the shared folder beside "
            "the repository (../shared/data/routing, see its README).",
            pytrace=False,
        )
    return ROUTING
