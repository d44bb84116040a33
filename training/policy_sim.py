"""Replay of whole serving policies on recorded answers, exactly as the gateway applies them.

Per prompt we know the router's score, the confidence of the small answer alone and with the
second opinion's answer, every tier's quality (the benchmark score of its answer), what each
tier's answer costs and how long the small and second-opinion tiers take to generate theirs.

Policies:
- ``small`` / ``large``: one tier answers everything; no router, no confidence.
- ``route``: the router sends ``score >= threshold`` to the large tier, the rest to the small tier.
- ``cascade``: the router sends ``score >= router_threshold`` straight to the large tier; otherwise
  the small tier answers, the second opinion is asked per mode (never; parallel: always, beside the
  small tier; when_unsure: when the confidence without it is in ``[unsure_low, unsure_high)``), and
  the answer escalates to the large tier when its confidence is below ``escalation_threshold``.
  It pays every small answer, every second opinion asked and the large answer when it escalates.
- ``random``: the small tier answers and a random share of answers, equal to a cascade's large
  share, escalates; reported as the expectation over the random draw (no sampling noise).

Added latency (ms, beside the answering tier's own generation time): the router's and the
confidence model's in-process medians where they run, the small tier's whole generation time for
an escalated request (its answer is held back and thrown away), and the wait for a second opinion:
all of its generation time when asked after the first confidence (when_unsure, one more confidence
call), only what it takes beyond the small tier when asked in parallel.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from classifier.policy import CalibratedPolicy

POLICIES = ("cascade", "route", "small", "large", "random")


@dataclass(frozen=True, kw_only=True)
class Replay:
    """Per-prompt arrays (one entry per prompt) and the two measured overheads."""

    router: np.ndarray
    conf_alone: np.ndarray
    conf_with: np.ndarray
    q_small: np.ndarray
    q_large: np.ndarray
    cost_small: np.ndarray  # USD
    cost_second: np.ndarray
    cost_large: np.ndarray
    ms_small: np.ndarray  # generation time of the small / second-opinion answer
    ms_second: np.ndarray
    router_ms: float = 0.0
    confidence_ms: float = 0.0

    def take(self, index: np.ndarray) -> Replay:
        """The same replay on a subset (or a resample) of prompts."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return Replay(**{k: v[index] if isinstance(v, np.ndarray) else v for k, v in values.items()})

    def __len__(self) -> int:
        return len(self.router)


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """Per prompt: quality of the returned answer, USD paid, large tier used (share for random),
    second opinion asked, added latency in ms."""

    quality: np.ndarray
    cost: np.ndarray
    large: np.ndarray
    second: np.ndarray
    added_ms: np.ndarray


def second_asked(r: Replay, p: CalibratedPolicy) -> np.ndarray:
    """Where the small tier answers: was the second opinion asked (before the routing cut)?"""
    if p.second_opinion == "never":
        return np.zeros(len(r), dtype=bool)
    if p.second_opinion == "parallel":
        return np.ones(len(r), dtype=bool)
    return (r.conf_alone >= p.unsure_low) & (r.conf_alone < p.unsure_high)


def simulate_cascade(r: Replay, p: CalibratedPolicy) -> Outcome:
    routed = r.router >= p.router_threshold
    asked = second_asked(r, p) & ~routed
    conf = np.where(asked, r.conf_with, r.conf_alone)
    escalated = ~routed & (conf < p.escalation_threshold)
    large = routed | escalated
    cost = np.where(routed, r.cost_large, r.cost_small + asked * r.cost_second + escalated * r.cost_large)
    return Outcome(
        quality=np.where(large, r.q_large, r.q_small),
        cost=cost,
        large=large.astype(np.float64),
        second=asked.astype(np.float64),
        added_ms=r.router_ms + _cascade_added_ms(r, p, routed=routed, asked=asked, escalated=escalated),
    )


def _cascade_added_ms(
    r: Replay, p: CalibratedPolicy, *, routed: np.ndarray, asked: np.ndarray, escalated: np.ndarray
) -> np.ndarray:
    sequential = p.second_opinion == "when_unsure"
    wait = r.ms_second if sequential else np.maximum(r.ms_second - r.ms_small, 0.0)
    confidence_calls = 1.0 + (asked & sequential)
    return ~routed * confidence_calls * r.confidence_ms + asked * wait + escalated * r.ms_small


def simulate_route(r: Replay, threshold: float) -> Outcome:
    large = r.router >= threshold
    return Outcome(
        quality=np.where(large, r.q_large, r.q_small),
        cost=np.where(large, r.cost_large, r.cost_small),
        large=large.astype(np.float64),
        second=np.zeros(len(r)),
        added_ms=np.full(len(r), r.router_ms),
    )


def simulate_single(r: Replay, tier: str) -> Outcome:
    """Every request to one tier (``small`` or ``large``)."""
    is_large = tier == "large"
    zeros = np.zeros(len(r))
    return Outcome(
        quality=r.q_large if is_large else r.q_small,
        cost=r.cost_large if is_large else r.cost_small,
        large=zeros + is_large,
        second=zeros,
        added_ms=zeros,
    )


def simulate_random(r: Replay, share: float) -> Outcome:
    """Expected outcome when a random ``share`` of small answers escalates."""
    return Outcome(
        quality=r.q_small + share * (r.q_large - r.q_small),
        cost=r.cost_small + share * r.cost_large,
        large=np.full(len(r), share),
        second=np.zeros(len(r)),
        added_ms=share * r.ms_small,
    )


def summarise(o: Outcome, *, large_quality: float) -> dict[str, float]:
    quality = float(o.quality.mean())
    return {
        "quality": quality,
        "quality_relative": quality / large_quality if large_quality > 0 else float("nan"),
        "cost_per_1k_usd": float(o.cost.mean() * 1000.0),
        "large_share": float(o.large.mean()),
        "second_opinion_share": float(o.second.mean()),
        "added_latency_ms": float(o.added_ms.mean()),
    }


def simulate_all(
    r: Replay, *, policies: list[str], cascade: CalibratedPolicy, route_threshold: float
) -> dict[str, Outcome]:
    """Outcome of each named policy; ``random`` escalates the cascade's large share."""
    run = {
        "cascade": lambda: simulate_cascade(r, cascade),
        "route": lambda: simulate_route(r, route_threshold),
        "small": lambda: simulate_single(r, "small"),
        "large": lambda: simulate_single(r, "large"),
        "random": lambda: simulate_random(r, float(simulate_cascade(r, cascade).large.mean())),
    }
    unknown = set(policies) - set(run)
    if unknown:
        raise ValueError(f"unknown policies {sorted(unknown)}; known: {POLICIES}")
    return {name: run[name]() for name in policies}
