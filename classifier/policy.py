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

from cascade_common.errors import ModelError

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
    # More than two tiers (router.tiers, cheapest first): N-1 non-decreasing router cuts (a score at or
    # above router_thresholds[i] starts on tier i+1 or above) and one escalation threshold per tier
    # below the top. Empty: router_threshold / escalation_threshold at every cut / step (the 2-tier file).
    router_thresholds: list[float] = field(default_factory=list)
    escalation_thresholds: list[float] = field(default_factory=list)
    # The models of the tier list it was calibrated on, cheapest first (informative).
    tiers: list[str] = field(default_factory=list)
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
        for name in ("router_thresholds", "escalation_thresholds"):
            values = getattr(self, name)
            if any(not isinstance(v, int | float) or not math.isfinite(v) or v < 0 for v in values):
                raise ValueError(f"{name} must hold finite numbers >= 0, not {values!r}")
        if list(self.router_thresholds) != sorted(self.router_thresholds):
            raise ValueError("router_thresholds must not decrease")

    def router_cuts(self, n_tiers: int) -> tuple[float, ...]:
        """The N-1 router cuts for ``n_tiers`` tiers; ValueError when the file is for another tier count."""
        return self._per_step("router_thresholds", self.router_threshold, n_tiers)

    def step_thresholds(self, n_tiers: int) -> tuple[float, ...]:
        """The escalation threshold of each step up ``n_tiers`` tiers; ValueError for another tier count."""
        return self._per_step("escalation_thresholds", self.escalation_threshold, n_tiers)

    def _per_step(self, name: str, single: float, n_tiers: int) -> tuple[float, ...]:
        values: list[float] = getattr(self, name)
        if not values:
            return (single,) * (n_tiers - 1)
        if len(values) != n_tiers - 1:
            raise ValueError(f"the policy's {name} are for {len(values) + 1} tiers; router.tiers has {n_tiers}")
        return tuple(values)


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
