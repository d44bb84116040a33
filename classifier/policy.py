"""The calibrated cascade policy: thresholds chosen together by `cascade train calibrate`.

One JSON file, written by the calibration command and read by the gateway (escalation threshold,
second-opinion mode) and the router (routing threshold) at start and whenever it changes
(``escalation.calibration`` in the config). Values in it win over the config's hand-set ones.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from services.core.errors import ModelError

POLICY_SCHEMA_VERSION = 1
SecondOpinionMode = Literal["never", "parallel", "when_unsure"]
SECOND_OPINION_MODES = ("never", "parallel", "when_unsure")


@dataclass(frozen=True, kw_only=True)
class CalibratedPolicy:
    # Route straight to the large tier when the router's score is at or above this (> 1: never).
    router_threshold: float
    # Escalate a small answer whose confidence is below this.
    escalation_threshold: float
    # When to ask the second-opinion tier: never, always in parallel, or only when the first
    # confidence is in [unsure_low, unsure_high).
    second_opinion: SecondOpinionMode = "never"
    unsure_low: float = 0.0
    unsure_high: float = 1.0
    # The models the thresholds were calibrated for; a different model makes the thresholds stale.
    router_model_version: str = ""
    confidence_model_version: str = ""
    # The target it was calibrated to ("quality=0.95", "large-share=0.3", "cost=0.5"), and what was
    # expected on held-out prompts: {"quality": {"value", "low", "high"}, "large_share": ..., ...}.
    target: str = ""
    expected: dict[str, Any] = field(default_factory=dict)
    data: list[str] = field(default_factory=list)
    created: str = ""
    schema_version: int = POLICY_SCHEMA_VERSION

    def __post_init__(self) -> None:
        for name in ("router_threshold", "escalation_threshold", "unsure_low", "unsure_high"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")
        if self.second_opinion not in SECOND_OPINION_MODES:
            raise ValueError(f"second_opinion must be one of {SECOND_OPINION_MODES}, not {self.second_opinion!r}")
        if self.unsure_low > self.unsure_high:
            raise ValueError("unsure_low must not exceed unsure_high")


def save_policy(policy: CalibratedPolicy, path: str | Path) -> None:
    """Write atomically (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(asdict(policy), indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def load_policy(path: str | Path) -> CalibratedPolicy:
    """Read a policy file; raises ModelError when it is missing, unreadable or invalid."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"calibrated policy {path} is unreadable: {exc}") from exc
    if not isinstance(data, dict) or data.get("schema_version") != POLICY_SCHEMA_VERSION:
        raise ModelError(f"calibrated policy {path} is not a schema-{POLICY_SCHEMA_VERSION} policy file")
    try:
        return CalibratedPolicy(**data)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"calibrated policy {path} is invalid: {exc}") from exc
