"""Policy replay on a four-prompt frame whose quality, cost and large share are worked out by hand."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from classifier.policy import CalibratedPolicy
from training.policy_calibrate import escalation_thresholds, sweep
from training.policy_sim import Replay, simulate_all, simulate_cascade, summarise


def four_prompts() -> Replay:
    # Prompt 0: hard, the router sends it up. 1: easy, small right, second agrees. 2: small wrong,
    # second disagrees. 3: small right but second disagrees, and the large tier is wrong.
    return Replay(
        router=np.array([0.9, 0.1, 0.2, 0.3]),
        conf_alone=np.full(4, 0.5),
        conf_with=np.array([1.0, 1.0, 0.0, 0.0]),
        q_small=np.array([0.0, 1.0, 0.0, 1.0]),
        q_large=np.array([1.0, 1.0, 1.0, 0.0]),
        cost_small=np.full(4, 1.0),
        cost_second=np.full(4, 0.5),
        cost_large=np.full(4, 4.0),
        ms_small=np.full(4, 100.0),
        ms_second=np.full(4, 200.0),
        router_ms=1.0,
        confidence_ms=2.0,
    )


PARALLEL = CalibratedPolicy(router_threshold=0.5, escalation_threshold=0.5, second_opinion="parallel")


def summary(policy: CalibratedPolicy) -> dict[str, float]:
    return summarise(simulate_cascade(four_prompts(), policy), large_quality=0.75)


def test_cascade_with_a_parallel_second_opinion() -> None:
    # Prompt 0 routed (pays 4); 1 kept (1 + 0.5); 2 and 3 escalate on disagreement (1 + 0.5 + 4 each).
    s = summary(PARALLEL)
    assert s["quality"] == pytest.approx(0.75)
    assert s["quality_relative"] == pytest.approx(1.0)
    assert s["cost_per_1k_usd"] == pytest.approx((4 + 1.5 + 5.5 + 5.5) / 4 * 1000)
    assert s["large_share"] == pytest.approx(0.75)
    assert s["second_opinion_share"] == pytest.approx(0.75)
    # router 1 everywhere; 2 (one confidence call) + 100 (second opinion beyond the small tier) where
    # the small tier answers; + 100 (the thrown-away small answer) where it escalates.
    assert s["added_latency_ms"] == pytest.approx((1 + 103 + 203 + 203) / 4)


def test_when_unsure_asks_only_inside_the_band_and_waits_for_the_whole_second_opinion() -> None:
    inside = summary(replace(PARALLEL, second_opinion="when_unsure", unsure_low=0.4, unsure_high=0.6))
    assert inside["cost_per_1k_usd"] == pytest.approx(summary(PARALLEL)["cost_per_1k_usd"])
    assert inside["added_latency_ms"] == pytest.approx((1 + 205 + 305 + 305) / 4)
    outside = summary(replace(PARALLEL, second_opinion="when_unsure", unsure_low=0.6, unsure_high=1.0))
    # Nobody asked: confidence 0.5 is not below 0.5, nothing escalates.
    assert outside["second_opinion_share"] == 0.0
    assert outside["quality"] == pytest.approx(0.75)
    assert outside["cost_per_1k_usd"] == pytest.approx((4 + 1 + 1 + 1) / 4 * 1000)


def test_never_escalates_everything_below_the_threshold() -> None:
    s = summary(replace(PARALLEL, second_opinion="never", escalation_threshold=0.6))
    assert s["large_share"] == pytest.approx(1.0)
    assert s["cost_per_1k_usd"] == pytest.approx((4 + 5 + 5 + 5) / 4 * 1000)


def test_route_small_large_and_random() -> None:
    r = four_prompts()
    out = simulate_all(r, policies=["route", "small", "large", "random"], cascade=PARALLEL, route_threshold=0.25)
    s = {name: summarise(o, large_quality=0.75) for name, o in out.items()}
    assert (s["route"]["quality"], s["route"]["cost_per_1k_usd"], s["route"]["large_share"]) == pytest.approx(
        (0.5, 2500.0, 0.5)
    )
    assert (s["small"]["quality"], s["small"]["cost_per_1k_usd"], s["small"]["large_share"]) == (0.5, 1000.0, 0.0)
    assert (s["large"]["quality"], s["large"]["cost_per_1k_usd"], s["large"]["large_share"]) == (0.75, 4000.0, 1.0)
    # The cascade's share (0.75) escalated at random: 0.5 + 0.75 * (0.75 - 0.5); 1 + 0.75 * 4.
    assert s["random"]["quality"] == pytest.approx(0.6875)
    assert s["random"]["cost_per_1k_usd"] == pytest.approx(4000.0)
    assert s["random"]["large_share"] == pytest.approx(0.75)
    assert s["random"]["added_latency_ms"] == pytest.approx(75.0)
    assert s["route"]["added_latency_ms"] == s["route"]["added_latency_ms"] == pytest.approx(1.0)


def test_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown policies"):
        simulate_all(four_prompts(), policies=["oracle"], cascade=PARALLEL, route_threshold=0.5)


def random_replay(n: int, seed: int) -> Replay:
    rng = np.random.default_rng(seed)
    q_small = (rng.random(n) < 0.4).astype(float)
    return Replay(
        router=rng.random(n),
        conf_alone=rng.random(n).round(1),
        conf_with=np.clip(q_small * 0.6 + rng.random(n) * 0.5, 0, 1),
        q_small=q_small,
        q_large=(rng.random(n) < 0.8).astype(float),
        cost_small=rng.random(n),
        cost_second=rng.random(n),
        cost_large=4 * rng.random(n),
        ms_small=rng.random(n) * 1e3,
        ms_second=rng.random(n) * 1e3,
    )


@pytest.mark.parametrize("mode", ["never", "parallel", "when_unsure"])
def test_the_vectorised_sweep_agrees_with_the_simulation(mode: str) -> None:
    r = random_replay(300, seed=1)
    base = CalibratedPolicy(
        router_threshold=0.7, escalation_threshold=0.0, second_opinion=mode, unsure_low=0.2, unsure_high=0.6
    )
    thresholds = escalation_thresholds(r)
    swept = sweep(r, base, thresholds)
    for i, t in enumerate(thresholds):
        s = summarise(simulate_cascade(r, replace(base, escalation_threshold=float(t))), large_quality=1.0)
        assert (swept["quality"][i], swept["cost"][i], swept["large_share"][i]) == pytest.approx(
            (s["quality"], s["cost_per_1k_usd"], s["large_share"])
        )
