"""Where the tests find the shared benchmark data: ``../shared`` beside the repository root.

A test that needs it asks for the ``routing_data`` fixture, which fails (never skips) when the folder
is missing, so a run without the data says so instead of passing with tests silently left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
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


def write_routing_file(path: Path, rows: Sequence[tuple[str, str, str, float, str]], *, task: str = "t") -> Path:
    """A routing-data Parquet file (the schema of ../shared/data/routing) from
    (prompt_id, prompt, model, score, response) rows, for replay tiers in tests."""
    ids, prompts, models, scores, responses = (list(c) for c in zip(*rows, strict=True))
    n = len(rows)
    table = pa.table(
        {
            "prompt_id": ids,
            "dataset": ["t"] * n,
            "task": [task] * n,
            "subtask": [None] * n,
            "prompt": prompts,
            "model": models,
            "score": pa.array(scores, pa.float32()),
            "response": responses,
        }
    )
    pq.write_table(table, path)
    return path
