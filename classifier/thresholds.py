"""Pick a routing threshold from a model's threshold table.

Each row says: routing prompts with ``score >= threshold`` to the large tier sent
``large_share`` of the calibration prompts there and kept ``quality`` (a fraction of
the large tier's own quality).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def pick_threshold(
    table: Sequence[dict[str, Any]], *, large_share: float | None = None, quality: float | None = None
) -> float:
    """The threshold for the lowest large share that reaches ``large_share`` or ``quality``."""
    if (large_share is None) == (quality is None):
        raise ValueError("give exactly one of large_share= or quality=")
    target = large_share if large_share is not None else quality
    assert target is not None
    if not 0.0 <= target <= 1.0:
        raise ValueError(f"target must be in [0, 1], got {target}")
    rows = sorted(table, key=lambda row: row["large_share"])
    key = "large_share" if large_share is not None else "quality"
    for row in rows:
        if row[key] >= target - 1e-9:
            return float(row["threshold"])
    return float(rows[-1]["threshold"])
