"""More than two tiers, without sockets: the tier list in settings, router score bands, the climb."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from classifier.confidence import load_confidence
from classifier.policy import CalibratedPolicy, save_policy
from services.core.calibration import CalibrationFile
from services.core.errors import ModelError
from services.core.settings import CascadeSettings, RouterSettings
from services.gateway import wire
from services.gateway.cascade import Cascade
from services.gateway.domain import Purpose, Reason
from services.gateway.record import RequestRecord
from tests.unit.cascade_fakes import TIER, Answer, Router, Tiers, request, run, shown, words

A, B, C = "The answer is (A).", "The answer is (B).", "The answer is (C)."
PRICES = {"small": (1.0, 1.0), "medium": (4.0, 4.0), "large": (10.0, 10.0), "second": (2.0, 2.0)}
LADDER = ["small", "medium", "large"]


def settings3(*, router: dict | None = None, **over) -> CascadeSettings:
    tiers = {n: {**TIER, "price": {"input_per_mtok": i, "output_per_mtok": o}} for n, (i, o) in PRICES.items()}
    return CascadeSettings(tiers=tiers, router={"tiers": LADDER, **(router or {})}, **over)


def make3(router, tiers, *, confidence="logprob", calibration=None, **over) -> tuple[Cascade, list[RequestRecord]]:
    sink: list[RequestRecord] = []
    cascade = Cascade(
        router=router,
        tiers=tiers,
        record_outcome=sink.append,
        settings=settings3(**over),
        confidence=load_confidence(confidence),
        calibration=calibration,
    )
    return cascade, sink


def ladder(small=0.9, medium=0.9, *, answers=(A, B, C), fail=()) -> Tiers:
    """Three tiers; a tier's token probability is its answer's logprob confidence."""
    small_a, medium_a, large_a = answers
    return Tiers(
        {
            "small": Answer(words(small_a), small),
            "medium": Answer(words(medium_a), medium),
            "large": Answer(words(large_a), 0.9),
            "second": Answer(words(small_a)),
        },
        fail=set(fail),
    )


# --- settings -----------------------------------------------------------------------------------


def test_two_tiers_stay_the_default_and_the_ends_follow_a_given_list():
    default = CascadeSettings()
    assert default.router.tiers == ("small", "large") and default.max_escalations == 1
    s = settings3()
    r = s.router
    assert (r.small_tier, r.large_tier, r.fallback_tier) == ("small", "large", "large")
    assert s.max_escalations == 2 and s.step_thresholds() == (0.5, 0.5)  # up to the top, min_confidence each
    renamed = settings3(router={"tiers": ["small", "medium"]})
    assert (renamed.router.large_tier, renamed.router.fallback_tier) == ("medium", "medium")
    assert settings3(escalation={"max_escalations": 1}).max_escalations == 1


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"router": {"tiers": ["small", "small"]}}, "twice"),
        ({"router": {"tiers": ["small", "nope"]}}, "not configured"),
        ({"router": {"small_tier": "medium"}}, "first and last"),
        ({"router": {"thresholds": [0.5]}}, "wants 2 non-decreasing"),
        ({"router": {"thresholds": [0.7, 0.3]}}, "wants 2 non-decreasing"),
        ({"router": {"thresholds": [0.3, 0.7], "threshold": 0.5}}, "not both"),
        ({"escalation": {"step_min_confidence": [0.5]}}, "wants 2 numbers"),
    ],
)
def test_a_bad_tier_list_is_refused_at_start(over, message):
    with pytest.raises(ValidationError, match=message):
        settings3(**over)


# --- router: score bands ------------------------------------------------------------------------


def banded(score: float, **router) -> str:
    model = SimpleNamespace(score=lambda texts: [score], version="v1")
    from services.router.policy import ThresholdPolicy

    s = RouterSettings(tiers=LADDER, **router)
    return ThresholdPolicy(holder=SimpleNamespace(model=model), settings=s).decide("q").tier  # type: ignore[arg-type]


@pytest.mark.parametrize(("score", "tier"), [(0.1, "small"), (0.3, "medium"), (0.69, "medium"), (0.7, "large")])
def test_router_bands_pick_the_starting_tier(score, tier):
    assert banded(score, thresholds=[0.3, 0.7]) == tier


@pytest.mark.parametrize(("score", "tier"), [(0.49, "small"), (0.5, "large")])
def test_one_threshold_over_three_tiers_starts_cheapest_or_at_the_top(score, tier):
    assert banded(score, threshold=0.5) == tier


def test_a_policy_file_for_another_tier_count_is_refused(tmp_path):
    path = tmp_path / "p.json"
    save_policy(CalibratedPolicy(router_threshold=0.5, escalation_threshold=0.5, router_thresholds=[0.2, 0.4]), path)
    assert CalibrationFile(path, interval_s=0, n_tiers=3).current().router_cuts(3) == (0.2, 0.4)
    with pytest.raises(ModelError, match="for 3 tiers; router.tiers has 2"):
        CalibrationFile(path, interval_s=0, n_tiers=2)


# --- the climb ----------------------------------------------------------------------------------


async def test_unsure_answers_climb_small_medium_large_and_every_attempt_is_paid():
    t = ladder(small=0.1, medium=0.2)
    cascade, sink = make3(Router("small"), t)
    chunks, record = await run(cascade, request())
    assert t.asked == LADDER and shown(chunks) == C
    route = record.route
    assert route.tier == "large" and route.escalated and route.tiers_tried == LADDER
    # The last judgement is the medium answer's: B disagrees with the small answer A it replaced.
    assert route.reason == Reason.DISAGREEMENT and route.agreement == 0.0
    event = wire.outcome(sink[0], store_prompt_text=False)
    assert [(a.tier, a.purpose) for a in event.attempts] == [
        ("small", Purpose.ANSWER),
        ("medium", Purpose.ESCALATION),
        ("large", Purpose.ESCALATION),
    ]
    # 100 input + 2 output tokens per attempt, at 1, 4 and 10 USD per million tokens.
    assert [a.cost_usd for a in event.attempts] == pytest.approx([102e-6, 408e-6, 1020e-6])
    assert event.cost_usd == pytest.approx(1530e-6)


async def test_a_confident_middle_answer_stops_the_climb():
    t = ladder(small=0.1, medium=0.9)
    cascade, _ = make3(Router("small"), t)
    chunks, record = await run(cascade, request())
    assert t.asked == ["small", "medium"] and shown(chunks) == B
    assert record.route.tier == "medium" and record.route.reason == Reason.CONFIDENT


async def test_max_escalations_stops_one_step_up_and_that_answer_is_returned_unjudged():
    t = ladder(small=0.1, medium=0.1)
    cascade, _ = make3(Router("small"), t, escalation={"max_escalations": 1})
    chunks, record = await run(cascade, request())
    assert t.asked == ["small", "medium"] and shown(chunks) == B and record.route.tier == "medium"


async def test_each_step_has_its_own_threshold():
    t = ladder(small=0.6, medium=0.6)  # 0.6 passes the first step (0.5), not the second (0.8)
    cascade, _ = make3(Router("small"), t, escalation={"step_min_confidence": [0.5, 0.8]})
    assert (await run(cascade, request()))[1].route.tier == "small"
    t = ladder(small=0.4, medium=0.6)
    cascade, _ = make3(Router("small"), t, escalation={"step_min_confidence": [0.5, 0.8]})
    _, record = await run(cascade, request())
    assert t.asked == LADDER and record.route.confidence_threshold == 0.8


async def test_calibrated_step_thresholds_win(tmp_path):
    path = tmp_path / "p.json"
    save_policy(
        CalibratedPolicy(router_threshold=0.5, escalation_threshold=0.0, escalation_thresholds=[0.0, 0.95]), path
    )
    t = ladder(small=0.1, medium=0.9)
    cal = CalibrationFile(path, interval_s=0, n_tiers=3)
    cascade, _ = make3(Router("small"), t, calibration=cal, escalation={"calibration": path})
    _, record = await run(cascade, request())
    assert record.route.tier == "small"  # step 0 threshold 0.0: kept
    cascade, _ = make3(Router("medium"), t, calibration=cal, escalation={"calibration": path})
    assert (await run(cascade, request()))[1].route.tier == "large"  # 0.9 < 0.95 at step 1


async def test_the_router_may_start_in_the_middle_and_the_top_is_never_escalated():
    t = ladder(small=0.9, medium=0.1)
    cascade, _ = make3(Router("medium"), t)
    _, record = await run(cascade, request())
    assert t.asked == ["medium", "large"] and record.route.tiers_tried == ["medium", "large"]
    t = ladder()
    cascade, _ = make3(Router("large"), t)
    _, record = await run(cascade, request())
    assert t.asked == ["large"] and record.route.reason == Reason.ROUTED_LARGE


async def test_policies_small_and_large_mean_the_ends_of_the_list():
    for policy, tier in [("small", "small"), ("large", "large")]:
        t = ladder(small=0.1)
        cascade, _ = make3(Router("medium"), t)
        await run(cascade, request(policy))
        assert t.asked == [tier]


async def test_a_higher_answer_is_judged_with_the_earlier_answers_as_others():
    # agreement: the medium answer agrees with the small answer and the second opinion, all A.
    t = ladder(answers=(A, A, C))
    t.answers["second"] = Answer(words(B))  # small A vs second B: disagreement, escalate
    so = {"second_opinion": {"tier": "second", "mode": "parallel"}}
    cascade, _ = make3(Router("small"), t, confidence="agreement", escalation=so)
    chunks, record = await run(cascade, request())
    assert sorted(t.asked) == ["medium", "second", "small"] and shown(chunks) == A
    assert record.route.tier == "medium" and record.route.agreement == pytest.approx(0.5)
    assert record.route.confidence == pytest.approx(0.5) and record.route.reason == Reason.CONFIDENT


async def test_a_failed_middle_tier_escalates_on_to_the_top():
    t = ladder(small=0.1, fail={"medium"})
    cascade, sink = make3(Router("small"), t)
    chunks, record = await run(cascade, request())
    assert t.asked == LADDER and shown(chunks) == C and record.route.reason == Reason.SMALL_ERROR
    event = wire.outcome(sink[0], store_prompt_text=False)
    assert [a.error.code != 0 for a in event.attempts] == [False, True, False]


async def test_the_budget_stops_the_last_step_to_the_top_only():
    budgets = {"budgets": {"*": {"max_large_share": 0.0}}}
    t = ladder(small=0.1, medium=0.1)
    cascade, _ = make3(Router("small"), t, gateway=budgets)
    _, record = await run(cascade, request())
    assert t.asked == ["small", "medium"] and record.route.tier == "medium"
    assert record.route.reason == Reason.BUDGET and record.route.budget_limited


async def test_speculative_climb_retracts_each_replaced_answer():
    cascade, _ = make3(Router("small"), ladder(small=0.1, medium=0.1))
    chunks, _ = await run(cascade, request(speculative=True))
    assert [(c.tier, c.retract) for c in chunks if c.retract or c.text] == [
        ("small", False),
        ("small", False),
        ("medium", True),
        ("medium", False),
        ("medium", False),
        ("large", True),
        ("large", False),
        ("large", False),
    ]
    assert shown(chunks) == C
